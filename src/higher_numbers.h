/* higher_numbers.h -- the number types of the higher-order sweeps (C++ only, private).
 *
 * The adjoint columns of src/ops.h as functions of doubles (the tangent
 * rules), the dual number (value, tangent) whose operations take their
 * tangents from the same columns, and the per-opcode contribution templates
 * that evaluate a node's columns with double or dual operands and hand each
 * contribution to touch(ctx, operand, value).  Included by src/higher.cpp
 * (sweeps over the tape) and src/replay_higher.cpp (sweeps over a compiled
 * program's slots): one formula per opcode, whatever the layout.  POD types
 * only, no exceptions, RTTI or standard library.
 */
#ifndef AUTOGRAD_C_HIGHER_NUMBERS_H
#define AUTOGRAD_C_HIGHER_NUMBERS_H

#include <math.h>
#include <stdint.h>
#include "ops.h"

#if defined(__GNUC__) || defined(__clang__)
#define HI_INLINE inline __attribute__((always_inline))
#define HI_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define HI_INLINE inline
#define HI_UNLIKELY(x) (x)
#endif

/* ==== the columns of ops.h as functions of doubles ======================= */
/* With op a constant these fold to one expression after inlining. */

static HI_INLINE double unary_rule(int op, double g, double x, double y)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: return (D);
    AC_UNARY_OPS(HI_CASE)
#undef HI_CASE
    default: return NAN;
    }
}

static HI_INLINE double const_rule(int op, double g, double x, double c, double y)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: return (D);
    AC_CONST_OPS(HI_CASE)
#undef HI_CASE
    default: return NAN;
    }
}

static HI_INLINE double binary_rule_x(int op, double g, double x, double z, double y)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, DX, DZ) case OP: return (DX);
    AC_BINARY_OPS(HI_CASE)
#undef HI_CASE
    default: return NAN;
    }
}

static HI_INLINE double binary_rule_z(int op, double g, double x, double z, double y)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, DX, DZ) case OP: return (DZ);
    AC_BINARY_OPS(HI_CASE)
#undef HI_CASE
    default: return NAN;
    }
}

/* ==== dual numbers ======================================================== */

struct dual {
    double v, d;              /* value, tangent */
    dual() = default;
    dual(double value) : v(value), d(0.0) {}      /* a number in a formula: `c ? 0.0 : g` */
    dual(double value, double tangent) : v(value), d(tangent) {}
};

/* Each operation is the primitive of the same name: its value formula, and
 * its adjoint column with g := the tangent for its tangent. */
static HI_INLINE dual unary_dual(int op, dual x)
{
    double y = ac_unary_value(op, x.v);
    return dual(y, unary_rule(op, x.d, x.v, y));
}

static HI_INLINE dual const_dual(int op, dual x, double c)
{
    double y = ac_const_value(op, x.v, c);
    return dual(y, const_rule(op, x.d, x.v, c, y));
}

static HI_INLINE dual binary_dual(int op, dual x, dual z)
{
    double y = ac_binary_value(op, x.v, z.v);
    return dual(y, binary_rule_x(op, x.d, x.v, z.v, y) + binary_rule_z(op, z.d, x.v, z.v, y));
}

static HI_INLINE dual operator-(dual x) { return unary_dual(AC_NEG, x); }
static HI_INLINE dual exp(dual x) { return unary_dual(AC_EXP, x); }
static HI_INLINE dual log(dual x) { return unary_dual(AC_LOG, x); }
static HI_INLINE dual sin(dual x) { return unary_dual(AC_SIN, x); }
static HI_INLINE dual cos(dual x) { return unary_dual(AC_COS, x); }
static HI_INLINE dual ac_sigmoid(dual x) { return unary_dual(AC_SIGMOID, x); }

/* x - c is x + (-c), as the recorder writes it */
static HI_INLINE dual operator+(dual x, double c) { return const_dual(AC_ADDC, x, c); }
static HI_INLINE dual operator+(double c, dual x) { return const_dual(AC_ADDC, x, c); }
static HI_INLINE dual operator-(dual x, double c) { return const_dual(AC_ADDC, x, -c); }
static HI_INLINE dual operator-(double c, dual x) { return const_dual(AC_RSUBC, x, c); }
static HI_INLINE dual operator*(dual x, double c) { return const_dual(AC_MULC, x, c); }
static HI_INLINE dual operator*(double c, dual x) { return const_dual(AC_MULC, x, c); }
static HI_INLINE dual operator/(dual x, double c) { return const_dual(AC_DIVC, x, c); }
static HI_INLINE dual operator/(double c, dual x) { return const_dual(AC_RDIVC, x, c); }
static HI_INLINE dual ac_powc(dual x, double c) { return const_dual(AC_POWC, x, c); }
static HI_INLINE dual ac_powc(double c, dual x) { return const_dual(AC_RPOWC, x, c); }

static HI_INLINE dual operator+(dual x, dual z) { return binary_dual(AC_ADD, x, z); }
static HI_INLINE dual operator-(dual x, dual z) { return binary_dual(AC_SUB, x, z); }
static HI_INLINE dual operator*(dual x, dual z) { return binary_dual(AC_MUL, x, z); }
static HI_INLINE dual operator/(dual x, dual z) { return binary_dual(AC_DIV, x, z); }
static HI_INLINE dual ac_powc(dual x, dual z) { return binary_dual(AC_POW, x, z); }

/* comparisons in formulas (masks, ties, branches) compare values */
#define HI_COMPARE(T1, T2, V1, V2)                                             \
    static HI_INLINE bool operator<(T1 a, T2 b) { return V1 < V2; }            \
    static HI_INLINE bool operator<=(T1 a, T2 b) { return V1 <= V2; }          \
    static HI_INLINE bool operator>(T1 a, T2 b) { return V1 > V2; }            \
    static HI_INLINE bool operator>=(T1 a, T2 b) { return V1 >= V2; }          \
    static HI_INLINE bool operator==(T1 a, T2 b) { return V1 == V2; }          \
    static HI_INLINE bool operator!=(T1 a, T2 b) { return V1 != V2; }
HI_COMPARE(dual, dual, a.v, b.v)
HI_COMPARE(dual, double, a.v, b)
HI_COMPARE(double, dual, a, b.v)

/* The type of a node's value: it has a tangent iff one of its operands has. */
template <class A, class B> struct hi_join { typedef dual type; };
template <> struct hi_join<double, double> { typedef double type; };

/* One node's contributions, instantiated for each combination of which of
 * g, x, z carry a tangent (double: none, dual: one).  A contribution is a
 * dual exactly when its formula involves a factor with a tangent.  They take
 * values and hand each contribution to touch(ctx, operand, value): nothing
 * here knows the tape, so a sweep over another layout (a replay program's
 * slots) instantiates them with its own context type and touch overloads.
 * Ref, the operand's type, is the caller's (deduced): the tape's sweeps pass
 * 64-bit ac_refs, which must not be narrowed (a wide tape's leaf flag is
 * bit 62), a replay program its 32-bit slots. */
template <class Ctx, class G, class X, class Ref>
static HI_INLINE void unary_contrib(Ctx &rc, int op, G g, X x, X y, Ref a)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: touch(rc, a, (D)); break;
    AC_UNARY_OPS(HI_CASE)
#undef HI_CASE
    default: break;
    }
}

template <class Ctx, class G, class X, class Ref>
static HI_INLINE void const_contrib(Ctx &rc, int op, G g, X x, double c, X y, Ref a)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: touch(rc, a, (D)); break;
    AC_CONST_OPS(HI_CASE)
#undef HI_CASE
    default: break;
    }
}

template <class Ctx, class G, class X, class Z, class Ref>
static HI_INLINE void binary_contrib(Ctx &rc, int op, G g, X x, Z z,
                                     typename hi_join<X, Z>::type y, Ref a, Ref b)
{
    switch (op) {
#define HI_CASE(OP, NAME, F, DX, DZ) case OP: touch(rc, a, (DX)); touch(rc, b, (DZ)); break;
    AC_BINARY_OPS(HI_CASE)
#undef HI_CASE
    default: break;
    }
}


#endif /* AUTOGRAD_C_HIGHER_NUMBERS_H */
