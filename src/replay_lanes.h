/* replay_lanes.h -- the per-lane kernels of ac_eval_second (C++ only, private).
 *
 * src/replay_higher.cpp evaluates a block of up to W rows per pass: slot
 * q's values, tangents, adjoints and adjoint tangents sit at [q * W, q * W
 * + nl) of their buffers ("lanes").  Which slots are reached, have a
 * tangent or are on depends on the program and the wanted inputs, never on
 * the row, so an instruction is decoded once per block and its rule runs
 * in a loop over the lanes with the opcode a constant (one loop per opcode
 * and operand kinds: the rules of src/higher_numbers.h fold to one
 * expression).  No formula here: the values are ops.h's value column, the
 * tangent rules and the contribution templates come from higher_numbers.h,
 * i.e. from src/ops.h.
 *
 * Adjoints add without a branch: the first contribution to a slot in a
 * pass adds to -0.0, which gives it exactly (x + -0.0 == x for every x,
 * signed zeros included); the slot's lanes are set to -0.0 when an
 * instruction is about to touch it for the first time (its state byte,
 * shared by the lanes, says so).
 */
#ifndef AUTOGRAD_C_REPLAY_LANES_H
#define AUTOGRAD_C_REPLAY_LANES_H

#include "higher_numbers.h"

#define SEC_REACHED 1         /* the slot's adjoint is defined */
#define SEC_DOT 2             /* and has a tangent */

/* Lane w of the slots (at most two) one instruction touches: their adjoint
 * lanes and state bytes (the same for every lane, so or-ing is enough). */
struct sec_ctx {
    double *adj_a, *dot_a, *adj_b, *dot_b;
    uint32_t ra;
    uint8_t sa, sb;
    int32_t w;
    bool only_dot;            /* the adjoints are known (a first-order pass): add tangents only */
};

static HI_INLINE void touch(sec_ctx &c, uint32_t r, double v)
{
    if (c.only_dot) return;
    bool is_a = r == c.ra;
    (is_a ? c.adj_a : c.adj_b)[c.w] += v;
    (is_a ? c.sa : c.sb) |= SEC_REACHED;
}

static HI_INLINE void touch(sec_ctx &c, uint32_t r, dual v)
{
    bool is_a = r == c.ra;
    if (!c.only_dot) {
        (is_a ? c.adj_a : c.adj_b)[c.w] += v.v;
        (is_a ? c.sa : c.sb) |= SEC_REACHED;
    }
    (is_a ? c.dot_a : c.dot_b)[c.w] += v.d;
    (is_a ? c.sa : c.sb) |= SEC_DOT;
}

/* lane w as the number type its tangent calls for */
template <class X> struct lane;
template <> struct lane<double> {
    static HI_INLINE double at(const double *v, const double *, int32_t w) { return v[w]; }
};
template <> struct lane<dual> {
    static HI_INLINE dual at(const double *v, const double *d, int32_t w) { return dual(v[w], d[w]); }
};

/* Before an instruction's lanes touch slot r: lanes not yet defined in
 * this pass become -0.0. */
static HI_INLINE void sec_prepare(uint8_t st, bool only_dot, double *adj, double *dot, int32_t nl)
{
    if (!only_dot && !(st & SEC_REACHED))
        for (int32_t w = 0; w < nl; ++w) adj[w] = -0.0;
    if (!(st & SEC_DOT))
        for (int32_t w = 0; w < nl; ++w) dot[w] = -0.0;
}

/* ---- values ---------------------------------------------------------------- */

/* The value ys of a unary, constant or binary instruction in every lane:
 * the value column of ops.h, as rp_forward1 evaluates it for one row. */
static HI_INLINE void sec_value_lanes(int op, int32_t nl, double *ys, const double *va, const double *vb)
{
    int32_t w;
    switch (op) {
#define SEC_UNARY(OP, NAME, F, D) \
    case OP: for (w = 0; w < nl; ++w) { double x = va[w]; ys[w] = (F); } break;
#define SEC_CONST(OP, NAME, F, D) \
    case OP: for (w = 0; w < nl; ++w) { double x = va[w], c = vb[w]; ys[w] = (F); } break;
#define SEC_BINARY(OP, NAME, F, DX, DZ) \
    case OP: for (w = 0; w < nl; ++w) { double x = va[w], z = vb[w]; ys[w] = (F); } break;
    AC_UNARY_OPS(SEC_UNARY)
    AC_CONST_OPS(SEC_CONST)
    AC_BINARY_OPS(SEC_BINARY)
#undef SEC_UNARY
#undef SEC_CONST
#undef SEC_BINARY
    default: for (w = 0; w < nl; ++w) ys[w] = NAN;
    }
}

/* ---- tangents -------------------------------------------------------------- */

/* The tangent ds of a unary (kind 0), constant (1) or binary (2)
 * instruction in every lane, from its operands' values and tangents. */
static HI_INLINE void sec_tangent_lanes(int op, int kind, bool xon, bool zon, int32_t nl,
                                        double *ds, const double *ys,
                                        const double *va, const double *da,
                                        const double *vb, const double *db)
{
    int32_t w;
    if (kind == 2) {
        switch (op) {
#define SEC_CASE(OP, NAME, F, DX, DZ)                                                        \
        case OP:                                                                             \
            if (xon && zon)                                                                  \
                for (w = 0; w < nl; ++w)                                                     \
                    ds[w] = binary_rule_x(OP, da[w], va[w], vb[w], ys[w])                    \
                            + binary_rule_z(OP, db[w], va[w], vb[w], ys[w]);                 \
            else if (xon)                                                                    \
                for (w = 0; w < nl; ++w) ds[w] = binary_rule_x(OP, da[w], va[w], vb[w], ys[w]); \
            else                                                                             \
                for (w = 0; w < nl; ++w) ds[w] = binary_rule_z(OP, db[w], va[w], vb[w], ys[w]); \
            break;
        AC_BINARY_OPS(SEC_CASE)
#undef SEC_CASE
        default: for (w = 0; w < nl; ++w) ds[w] = NAN;
        }
    } else if (kind == 1) {
        switch (op) {
#define SEC_CASE(OP, NAME, F, D) \
        case OP: for (w = 0; w < nl; ++w) ds[w] = const_rule(OP, da[w], va[w], vb[w], ys[w]); break;
        AC_CONST_OPS(SEC_CASE)
#undef SEC_CASE
        default: for (w = 0; w < nl; ++w) ds[w] = NAN;
        }
    } else {
        switch (op) {
#define SEC_CASE(OP, NAME, F, D) \
        case OP: for (w = 0; w < nl; ++w) ds[w] = unary_rule(OP, da[w], va[w], ys[w]); break;
        AC_UNARY_OPS(SEC_CASE)
#undef SEC_CASE
        default: for (w = 0; w < nl; ++w) ds[w] = NAN;
        }
    }
}

/* ---- contributions ----------------------------------------------------------- */

/* One instruction's contributions in every lane, adjoint g of type G
 * (double, or dual when the slot's adjoint has a tangent), operands of
 * types X, Z (dual: on): ga/gd its adjoint lanes, va/da, vb/db the
 * operands' value and tangent lanes, vs/dsl its own. */
template <class G, class X, class Z>
static HI_INLINE void sec_binary_lanes(sec_ctx &c, int op, const double *ga, const double *gd,
                                       const double *va, const double *da, const double *vb,
                                       const double *db, const double *vs, const double *dsl,
                                       uint32_t a, uint32_t b, int32_t nl)
{
    typedef typename hi_join<X, Z>::type Y;
    switch (op) {
#define SEC_CASE(OP, NAME, F, DX, DZ)                                                        \
    case OP:                                                                                 \
        for (c.w = 0; c.w < nl; ++c.w)                                                       \
            binary_contrib<sec_ctx, G, X, Z>(c, OP, lane<G>::at(ga, gd, c.w),                \
                                             lane<X>::at(va, da, c.w), lane<Z>::at(vb, db, c.w), \
                                             lane<Y>::at(vs, dsl, c.w), a, b);               \
        break;
    AC_BINARY_OPS(SEC_CASE)
#undef SEC_CASE
    default: break;
    }
}

template <class G, class X>
static HI_INLINE void sec_const_lanes(sec_ctx &c, int op, const double *ga, const double *gd,
                                      const double *va, const double *da, const double *vb,
                                      const double *vs, const double *dsl, uint32_t a, int32_t nl)
{
    switch (op) {
#define SEC_CASE(OP, NAME, F, D)                                                             \
    case OP:                                                                                 \
        for (c.w = 0; c.w < nl; ++c.w)                                                       \
            const_contrib<sec_ctx, G, X>(c, OP, lane<G>::at(ga, gd, c.w), lane<X>::at(va, da, c.w), \
                                         vb[c.w], lane<X>::at(vs, dsl, c.w), a);             \
        break;
    AC_CONST_OPS(SEC_CASE)
#undef SEC_CASE
    default: break;
    }
}

template <class G, class X>
static HI_INLINE void sec_unary_lanes(sec_ctx &c, int op, const double *ga, const double *gd,
                                      const double *va, const double *da, const double *vs,
                                      const double *dsl, uint32_t a, int32_t nl)
{
    switch (op) {
#define SEC_CASE(OP, NAME, F, D)                                                             \
    case OP:                                                                                 \
        for (c.w = 0; c.w < nl; ++c.w)                                                       \
            unary_contrib<sec_ctx, G, X>(c, OP, lane<G>::at(ga, gd, c.w), lane<X>::at(va, da, c.w), \
                                         lane<X>::at(vs, dsl, c.w), a);                      \
        break;
    AC_UNARY_OPS(SEC_CASE)
#undef SEC_CASE
    default: break;
    }
}

/* The symmetrised Hessians of the block, entry e = j * nh + k at h + e * W:
 * h[j, k] and h[k, j] both become their mean where they differ (symmetric
 * to the last bit, as ag.hessian's _symmetrise).  Without a branch (they
 * differ in the last bits at random, a branch costs a misprediction each
 * time); where both are nan the mean's nan may carry either one's sign
 * bit, as the compiler orders the addition. */
static HI_INLINE void sec_symmetrise_lanes(double *h, int32_t nh, int32_t W, int32_t nl)
{
    for (int32_t j = 0; j < nh; ++j)
        for (int32_t k = j + 1; k < nh; ++k) {
            double *p = h + ((size_t)j * nh + k) * W, *q = h + ((size_t)k * nh + j) * W;
            for (int32_t w = 0; w < nl; ++w) {
                double a = p[w], b = q[w], m = 0.5 * a + 0.5 * b;
                bool differ = a != b;
                p[w] = differ ? m : a;
                q[w] = differ ? m : b;
            }
        }
}

#endif /* AUTOGRAD_C_REPLAY_LANES_H */
