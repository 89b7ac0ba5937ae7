/* ops.h -- every opcode's forward value and local adjoint rule, in one table.
 *
 * The recorder (src/record.pxi) computes values with ac_*_value(); the reverse
 * sweep (src/tape.c) applies ac_*_adjoint().  Both read the X-macro tables
 * below, so an opcode's forward and backward formulas live on one line and
 * cannot drift apart.  Higher orders read the same line (src/higher.cpp):
 * the adjoint column with g := an operand's tangent is the forward-mode
 * rule, and the column evaluated in dual numbers (or with recorded
 * Variables, for create_graph) is its derivative, so an opcode's second and
 * third derivatives need no line of their own.  The replay engine
 * (src/replay_sweep.h) expands the same tables.
 *
 * Names in the formulas:
 *   x  value of operand a          z  value of operand b, or the constant c
 *   y  the node's own value        g  the node's adjoint (d out / d node)
 *
 * NaN and domain policy: plain IEEE doubles, never a trap (log(-1) -> nan,
 * 1/0 -> inf).  Where PyTorch's derivatives.yaml special-cases a point
 * (pow at a zero exponent or zero base, relu/abs at 0, max/min at ties) the
 * formulas below follow it, so values and gradients match torch float64 at
 * 0, +-inf and nan too, including how a mask meets an inf or nan incoming
 * adjoint g: where torch selects 0 (relu, max/min, pow's base at a zero
 * exponent) the result is 0 whatever g is; where it multiplies g by a
 * masked derivative (pow's exponent at a zero base) it is nan.
 * tests/test_vs_torch.py checks this on a grid.
 */
#ifndef AUTOGRAD_C_OPS_H
#define AUTOGRAD_C_OPS_H

#include <math.h>

/* ---- helpers whose exact form matters for edge cases ------------------- */

/* The helpers that adjoint columns call are written once for every number
 * type.  C (tape.c, the Cython module) sees plain functions of doubles.  C++
 * (src/higher.cpp, which evaluates the same adjoint columns in dual numbers
 * for forward-over-reverse sweeps and in recorded Variables for
 * create_graph) sees templates over the argument types, instantiated with
 * double, dual or a recorder number; comparisons there compare values.
 * Value helpers of a primitive (ac_relu, ac_sigmoid, ac_softplus, ac_powc,
 * ac_max, ac_min) stay functions of doubles: a primitive's derivative comes
 * from its adjoint column, never from the branches of its value helper
 * (pow's special cases would lose d/dexponent), so higher.cpp overloads
 * the ones adjoint columns call (ac_sigmoid, ac_powc) from the columns. */
#ifdef __cplusplus
#define AC_GENERIC1 template <class AC_N1> static inline
#define AC_GENERIC2 template <class AC_N1, class AC_N2> static inline
#define AC_GENERIC3 template <class AC_N1, class AC_N2, class AC_N3> static inline
#define AC_RESULT auto       /* the common type of what is returned */
#else
#define AC_GENERIC1 static inline
#define AC_GENERIC2 static inline
#define AC_GENERIC3 static inline
#define AC_RESULT double
#define AC_N1 double
#define AC_N2 double
#define AC_N3 double
#endif

/* sign(x) with sign(0) = sign(nan) = 0, as torch.sgn on real numbers.  A
 * plain number for every argument type: it is piecewise constant, so its
 * derivative is 0 (torch's sgn_backward gives zeros), never 0 * inf. */
AC_GENERIC1 double ac_sgn(AC_N1 x) { return (double)((x > 0.0) - (x < 0.0)); }

/* clamp_min(x, 0): keeps nan and -0.0, as torch.relu */
static inline double ac_relu(double x) { return x < 0.0 ? 0.0 : x; }

static inline double ac_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* torch.nn.functional.softplus with beta=1, threshold=20.  Below the
 * threshold the adjoint is g * sigmoid(x), which torch writes g * e / (e + 1)
 * with e = exp(x): the same number to an ulp, but differentiated again it
 * is sigmoid's own rule (1 - s) * s, torch's softplus double backward,
 * instead of a quotient rule that cancels for large x. */
static inline double ac_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }
AC_GENERIC2 AC_RESULT ac_softplus_adjoint(AC_N1 g, AC_N2 x)
{
    return x > 20.0 ? g : g * ac_sigmoid(x);
}

/* x ** c: the one power formula of every pow opcode (x ** c, c ** x and
 * x ** z alike), so a value never depends on which operands require grad.
 * It is PyTorch's rule for a scalar exponent, which evaluates these
 * exponents with sqrt / reciprocal / products instead of pow(); torch's
 * tensor ** tensor kernel calls pow() and so differs at -0.0 and -inf
 * (pow(-inf, 0.5) is +inf, sqrt(-inf) is nan) and in the last bit of x**3.
 * Exponents 1 and 0 give exactly what pow() gives (x, and 1 for every x,
 * nan included), without the call: the derivative of x ** 2 needs x ** 1,
 * the second derivative x ** 0. */
static inline double ac_powc(double x, double c)
{
    if (c == 2.0) return x * x;
    if (c == 1.0) return x;
    if (c == 0.0) return 1.0;
    if (c == 0.5) return sqrt(x);
    if (c == 3.0) return x * x * x;
    if (c == -1.0) return 1.0 / x;
    if (c == -2.0) return 1.0 / (x * x);
    if (c == -0.5) return 1.0 / sqrt(x);
    return pow(x, c);
}

/* maximum/minimum propagate nan and, at a tie (0.0 and -0.0), give the
 * first operand, as torch.maximum / torch.minimum */
static inline double ac_max(double x, double z) { return x != x ? x : (z != z ? z : (x >= z ? x : z)); }
static inline double ac_min(double x, double z) { return x != x ? x : (z != z ? z : (x <= z ? x : z)); }

/* torch splits the adjoint evenly at a tie and gives it all to the larger
 * (smaller) operand otherwise; with a nan operand both receive g.  The mask
 * selects (0 whatever g is), as torch's masked_fill. */
AC_GENERIC3 AC_RESULT ac_max_adjoint(AC_N1 g, AC_N2 mine, AC_N3 other)
{
    return mine < other ? 0.0 : (mine == other ? g / 2.0 : g);
}
AC_GENERIC3 AC_RESULT ac_min_adjoint(AC_N1 g, AC_N2 mine, AC_N3 other)
{
    return mine > other ? 0.0 : (mine == other ? g / 2.0 : g);
}

#undef AC_GENERIC1
#undef AC_GENERIC2
#undef AC_GENERIC3
#undef AC_RESULT
#ifndef __cplusplus
#undef AC_N1
#undef AC_N2
#undef AC_N3
#endif

#define AC_TWO_OVER_SQRT_PI 1.12837916709551257390

/* ---- opcodes ----------------------------------------------------------- */

/* y = f(x): one node operand */
#define AC_UNARY_OPS(X)                                                         \
    /* opcode        name        y =                 adjoint of x            */ \
    X(AC_NEG,        "neg",      -x,                 -g)                        \
    X(AC_ABS,        "abs",      fabs(x),            g * ac_sgn(x))             \
    X(AC_EXP,        "exp",      exp(x),             g * y)                     \
    X(AC_LOG,        "log",      log(x),             g / x)                     \
    X(AC_LOG1P,      "log1p",    log1p(x),           g / (x + 1.0))             \
    X(AC_EXPM1,      "expm1",    expm1(x),           g * (y + 1.0))             \
    X(AC_SQRT,       "sqrt",     sqrt(x),            g / (2.0 * y))             \
    X(AC_SIN,        "sin",      sin(x),             g * cos(x))                \
    X(AC_COS,        "cos",      cos(x),             g * -sin(x))               \
    X(AC_TAN,        "tan",      tan(x),             g * (1.0 + y * y))         \
    X(AC_ATAN,       "atan",     atan(x),            g / (x * x + 1.0))         \
    X(AC_TANH,       "tanh",     tanh(x),            g * (1.0 - y * y))         \
    X(AC_SIGMOID,    "sigmoid",  ac_sigmoid(x),      g * (1.0 - y) * y)         \
    X(AC_RELU,       "relu",     ac_relu(x),         y <= 0.0 ? 0.0 : g)        \
    X(AC_SOFTPLUS,   "softplus", ac_softplus(x),     ac_softplus_adjoint(g, x)) \
    X(AC_ERF,        "erf",      erf(x),             AC_TWO_OVER_SQRT_PI * exp(-(x * x)) * g)

/* y = f(x, c): one node operand and a constant c, kept in the constant pool.
 * x - c is recorded as ADDC with -c (IEEE defines x - c as x + (-c)). */
#define AC_CONST_OPS(X)                                                         \
    /* opcode        name        y =                 adjoint of x            */ \
    X(AC_ADDC,       "add",      x + c,              g)                         \
    X(AC_RSUBC,      "sub",      c - x,              -g)                        \
    X(AC_MULC,       "mul",      x * c,              g * c)                     \
    X(AC_DIVC,       "div",      x / c,              g / c)                     \
    X(AC_RDIVC,      "div",      c / x,              -g * (y / x))              \
    X(AC_POWC,       "pow",      ac_powc(x, c),      c == 0.0 ? 0.0 : g * (c * ac_powc(x, c - 1.0))) \
    X(AC_RPOWC,      "pow",      ac_powc(c, x),      g * ((c == 0.0 && x >= 0.0) ? 0.0 : y * log(c))) \
    X(AC_MAXC,       "maximum",  ac_max(x, c),       ac_max_adjoint(g, x, c))   \
    X(AC_RMAXC,      "maximum",  ac_max(c, x),       ac_max_adjoint(g, x, c))   \
    X(AC_MINC,       "minimum",  ac_min(x, c),       ac_min_adjoint(g, x, c))   \
    X(AC_RMINC,      "minimum",  ac_min(c, x),       ac_min_adjoint(g, x, c))

/* y = f(x, z): two node operands */
#define AC_BINARY_OPS(X)                                                        \
    /* opcode      name       y =             adjoint of x             adjoint of z */ \
    X(AC_ADD,      "add",     x + z,          g,                       g)              \
    X(AC_SUB,      "sub",     x - z,          g,                       -g)             \
    X(AC_MUL,      "mul",     x * z,          g * z,                   g * x)          \
    X(AC_DIV,      "div",     x / z,          g / z,                   -g * ((x / z) / z)) \
    X(AC_POW,      "pow",     ac_powc(x, z),  z == 0.0 ? 0.0 : g * (z * ac_powc(x, z - 1.0)), \
                                              g * ((x == 0.0 && z >= 0.0) ? 0.0 : y * log(x))) \
    X(AC_MAX,      "maximum", ac_max(x, z),   ac_max_adjoint(g, x, z), ac_max_adjoint(g, z, x)) \
    X(AC_MIN,      "minimum", ac_min(x, z),   ac_min_adjoint(g, x, z), ac_min_adjoint(g, z, x))

#define AC_ENUM_ENTRY(OP, ...) OP,
enum ac_opcode {
    AC_SUM = 0,      /* n-ary: payload is an offset into the tape's operand lists */
    AC_DOT,          /* n-ary: pairs of operands, value = sum of products */
    AC_CUSTOM,       /* n-ary: a user's Function; its value and adjoints come from Python */
    AC_UNARY_OPS(AC_ENUM_ENTRY)
    AC_CONST_OPS(AC_ENUM_ENTRY)
    AC_BINARY_OPS(AC_ENUM_ENTRY)
    AC_NUM_OPS
};
#undef AC_ENUM_ENTRY

/* ---- forward values ----------------------------------------------------- */

static inline double ac_unary_value(int op, double x)
{
    switch (op) {
#define AC_CASE(OP, NAME, F, D) case OP: return (F);
    AC_UNARY_OPS(AC_CASE)
#undef AC_CASE
    }
    return NAN;
}

static inline double ac_const_value(int op, double x, double c)
{
    switch (op) {
#define AC_CASE(OP, NAME, F, D) case OP: return (F);
    AC_CONST_OPS(AC_CASE)
#undef AC_CASE
    }
    return NAN;
}

static inline double ac_binary_value(int op, double x, double z)
{
    switch (op) {
#define AC_CASE(OP, NAME, F, DX, DZ) case OP: return (F);
    AC_BINARY_OPS(AC_CASE)
#undef AC_CASE
    }
    return NAN;
}

static inline const char *ac_op_name(int op)
{
    switch (op) {
    case AC_SUM: return "sum";
    case AC_DOT: return "dot";
    case AC_CUSTOM: return "function";
#define AC_CASE(OP, NAME, ...) case OP: return NAME;
    AC_UNARY_OPS(AC_CASE)
    AC_CONST_OPS(AC_CASE)
    AC_BINARY_OPS(AC_CASE)
#undef AC_CASE
    }
    return "?";
}

#endif /* AUTOGRAD_C_OPS_H */
