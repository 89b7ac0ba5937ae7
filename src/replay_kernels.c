/* replay_kernels.c -- the block kernels of the batched replay: one instruction over W rows.
 *
 * Each kernel is a switch over the opcode whose cases are loops over the
 * rows of a block, instantiated from the X-macro tables of src/ops.h (no
 * formula of its own), in the per-row order of rp_forward1 / rp_reverse1
 * (replay_sweep.h), so every row gets the bits ac_eval gives it.  Operands
 * that are the same for every row are read once (the loop variants below).
 * Touches only the step's lanes and the thread's scratch; calls the hooks.
 */
#include <stdlib.h>   /* (defines __GLIBC__ where there is one) */
#include "replay_block.h"

/* The block kernels are compiled twice where the toolchain can pick one at
 * load time (GCC, x86-64, glibc's ifunc): for AVX2 and for the baseline
 * (SSE2).  AVX2 does four rows per instruction instead of two, measured
 * 1.9x faster on the MLP loss; the results are the same bits (no FMA: the
 * "avx2" target does not enable it, and the build uses -ffp-contract=off;
 * libm calls are the same calls). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && !defined(RP_NO_CLONES)
#define RP_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define RP_KERNEL
#endif

/* Operand access in a loop over rows r: lanes (S = 1) or one value (S = 0). */
#define RP_AT(P, S) ((P)[(S) ? r : 0])

#define RP_BF_UNARY(OP, NAME, F, D) \
    case OP: for (r = 0; r < n; ++r) { double x = X[r]; Y[r] = (F); } return 0;
#define RP_BF_CONST(OP, NAME, F, D) \
    case OP: { double c = *Z; for (r = 0; r < n; ++r) { double x = X[r]; Y[r] = (F); } return 0; }
#define RP_BF_LOOP(F, SX, SZ) \
    for (r = 0; r < n; ++r) { double x = RP_AT(X, SX), z = RP_AT(Z, SZ); Y[r] = (F); }
#define RP_BF_BINARY(OP, NAME, F, DX, DZ)                                   \
    case OP:                                                                \
        if (form == 0) { RP_BF_LOOP(F, 1, 1) }                              \
        else if (form == 1) { RP_BF_LOOP(F, 0, 1) }                         \
        else { RP_BF_LOOP(F, 1, 0) }                                        \
        return 0;

/* Forward of one varying instruction over rows [0, n) of the block.
 * Returns 0, or 1 + the row whose custom hook failed. */
RP_KERNEL int rp_block_forward(const rp_plan *pl, rp_thread *th, const rp_step *sp, int32_t n)
{
    double *RP_RESTRICT Y = sp->y;
    const double *RP_RESTRICT X = sp->x;
    const double *RP_RESTRICT Z = sp->z;
    int form = sp->form;
    int32_t r, k;
    switch (sp->op) {
    AC_UNARY_OPS(RP_BF_UNARY)
    AC_CONST_OPS(RP_BF_CONST)
    AC_BINARY_OPS(RP_BF_BINARY)
    case AC_SUM:
        for (r = 0; r < n; ++r) Y[r] = 0.0;
        for (k = 0; k < sp->n; ++k) {
            const double *RP_RESTRICT V = sp->nv[k];
            if (sp->nu[k]) { double u = *V; for (r = 0; r < n; ++r) Y[r] += u; }
            else for (r = 0; r < n; ++r) Y[r] += V[r];
        }
        return 0;
    case AC_DOT:
        for (r = 0; r < n; ++r) Y[r] = 0.0;
        for (k = 0; k + 1 < sp->n; k += 2) {
            const double *RP_RESTRICT A = sp->nv[k], *RP_RESTRICT B = sp->nv[k + 1];
            switch (sp->nu[k] | sp->nu[k + 1] << 1) {
            case 0: for (r = 0; r < n; ++r) Y[r] += A[r] * B[r]; break;
            case 1: { double u = *A; for (r = 0; r < n; ++r) Y[r] += u * B[r]; break; }
            case 2: { double u = *B; for (r = 0; r < n; ++r) Y[r] += A[r] * u; break; }
            default: { double u = *A * *B; for (r = 0; r < n; ++r) Y[r] += u; break; }
            }
        }
        return 0;
    case AC_CUSTOM: {
        const ac_hooks *h = pl->hooks;
        int32_t id = rp_custom_id(pl->p, sp->instr);
        for (r = 0; r < n; ++r) {
            for (k = 0; k < sp->n; ++k) th->scratch[k] = sp->nu[k] ? *sp->nv[k] : sp->nv[k][r];
            if (h->forward(h->ctx, id, th->scratch, sp->n, &Y[r]) != 0) return 1 + r;
        }
        return 0;
    }
    }
    return 0;
}

#define RP_BR_UNARY(OP, NAME, F, D)                                             \
    case OP: if (GX) { double *RP_RESTRICT O = GX; for (r = 0; r < n; ++r) {    \
        double g = G[r], x = X[r], y = Y[r]; (void)x; (void)y; O[r] += (D); } } \
        return 0;
#define RP_BR_CONST(OP, NAME, F, D)                                             \
    case OP: if (GX) { double *RP_RESTRICT O = GX; double c = *Z;               \
        for (r = 0; r < n; ++r) {                                               \
        double g = G[r], x = X[r], y = Y[r]; (void)x; (void)y; (void)c; O[r] += (D); } } \
        return 0;
#define RP_BR_TERM(D, SX, SZ)                                                   \
    double g = G[r], x = RP_AT(X, SX), z = RP_AT(Z, SZ), y = Y[r];              \
    (void)x; (void)z; (void)y;
/* into a varying operand's lanes */
#define RP_BR_LOOP(O, D, SX, SZ)                                                \
    for (r = 0; r < n; ++r) { RP_BR_TERM(D, SX, SZ) O[r] += (D); }
/* into a uniform operand's accumulators (see RP_ACC_ADD) */
#define RP_BR_ACC(O, D, SX, SZ)                                                 \
    {                                                                           \
        double a_[2 * RP_ACC];                                                  \
        int32_t r0_, l_;                                                        \
        for (l_ = 0; l_ < 2 * RP_ACC; ++l_) a_[l_] = 0.0;                       \
        for (r0_ = 0; r0_ + 2 * RP_ACC <= n; r0_ += 2 * RP_ACC)                 \
            for (l_ = 0; l_ < 2 * RP_ACC; ++l_) { r = r0_ + l_; { RP_BR_TERM(D, SX, SZ) a_[l_] += (D); } } \
        for (l_ = 0; l_ < RP_ACC; ++l_) O[l_] += a_[l_] + a_[l_ + RP_ACC];      \
        for (r = r0_; r < n; ++r) { RP_BR_TERM(D, SX, SZ) O[r % RP_ACC] += (D); } \
    }
/* one operand's side; a block of its own per destination: x * x has GX == GZ.
 * U is the form bit of this operand: where it is set, the operand is uniform */
#define RP_BR_SIDE(DST, D, U)                                                   \
    if (DST) {                                                                  \
        double *RP_RESTRICT O = (DST);                                          \
        if (form == 0) { RP_BR_LOOP(O, D, 1, 1) }                               \
        else if (form == 1) { if ((U) == 1) RP_BR_ACC(O, D, 0, 1) else RP_BR_LOOP(O, D, 0, 1) } \
        else { if ((U) == 2) RP_BR_ACC(O, D, 1, 0) else RP_BR_LOOP(O, D, 1, 0) } \
    }
#define RP_BR_BINARY(OP, NAME, F, DX, DZ)                                       \
    case OP: RP_BR_SIDE(GX, DX, 1) RP_BR_SIDE(GZ, DZ, 2) return 0;

/* v (an expression in r) summed over the rows into accumulators O: in
 * 2 * RP_ACC register lanes first (independent chains, so the adds do not
 * wait on each other or on memory), then into O's RP_ACC lanes. */
#define RP_ACC_ADD(O, V)                                                        \
    {                                                                           \
        double a_[2 * RP_ACC];                                                  \
        int32_t r0_, l_;                                                        \
        for (l_ = 0; l_ < 2 * RP_ACC; ++l_) a_[l_] = 0.0;                       \
        for (r0_ = 0; r0_ + 2 * RP_ACC <= n; r0_ += 2 * RP_ACC)                 \
            for (l_ = 0; l_ < 2 * RP_ACC; ++l_) { r = r0_ + l_; a_[l_] += (V); } \
        for (l_ = 0; l_ < RP_ACC; ++l_) O[l_] += a_[l_] + a_[l_ + RP_ACC];      \
        for (r = r0_; r < n; ++r) O[r % RP_ACC] += (V);                         \
    }

/* Reverse of one varying instruction over rows [0, n): add its
 * contributions to its operands' adjoint lanes, per row in the order of
 * rp_reverse1.  A uniform operand's destination (summed gradients only;
 * per-row gradients have no uniform operand that needs one) is its
 * RP_ACC accumulators, which gather every row of the call.  Returns 0, or
 * 1 + the row whose custom hook failed. */
RP_KERNEL int rp_block_reverse(const rp_plan *pl, rp_thread *th, const rp_step *sp, int32_t n)
{
    const double *RP_RESTRICT G = sp->gy;
    const double *RP_RESTRICT Y = sp->y;
    const double *RP_RESTRICT X = sp->x;
    const double *RP_RESTRICT Z = sp->z;
    int form = sp->form;
    int32_t r, k;
    switch (sp->op) {
    case AC_SUM:
        for (k = 0; k < sp->n; ++k) {
            double *RP_RESTRICT D = sp->ng[k];
            if (D == NULL) continue;
            if (sp->nu[k]) RP_ACC_ADD(D, G[r])
            else for (r = 0; r < n; ++r) D[r] += G[r];
        }
        return 0;
    case AC_DOT:    /* pair (a, b): a gets g * b, then b gets g * a */
        for (k = 0; k + 1 < sp->n; k += 2) {
            const double *RP_RESTRICT A = sp->nv[k], *RP_RESTRICT B = sp->nv[k + 1];
            int ua = sp->nu[k], ub = sp->nu[k + 1];
            if (sp->ng[k]) {        /* separate blocks: x * x has DA == DB */
                double *RP_RESTRICT DA = sp->ng[k];
                if (ua && ub) { double u = *B; RP_ACC_ADD(DA, G[r] * u) }
                else if (ua) RP_ACC_ADD(DA, G[r] * B[r])
                else if (ub) { double u = *B; for (r = 0; r < n; ++r) DA[r] += G[r] * u; }
                else for (r = 0; r < n; ++r) DA[r] += G[r] * B[r];
            }
            if (sp->ng[k + 1]) {
                double *RP_RESTRICT DB = sp->ng[k + 1];
                if (ua && ub) { double u = *A; RP_ACC_ADD(DB, G[r] * u) }
                else if (ub) RP_ACC_ADD(DB, G[r] * A[r])
                else if (ua) { double u = *A; for (r = 0; r < n; ++r) DB[r] += G[r] * u; }
                else for (r = 0; r < n; ++r) DB[r] += G[r] * A[r];
            }
        }
        return 0;
    case AC_CUSTOM: {
        const ac_hooks *h = pl->hooks;
        int32_t id = rp_custom_id(pl->p, sp->instr);
        double *xs = th->scratch, *gx = th->scratch + sp->n;
        for (r = 0; r < n; ++r) {
            if (G[r] != 0.0) {
                for (k = 0; k < sp->n; ++k) xs[k] = sp->nu[k] ? *sp->nv[k] : sp->nv[k][r];
                if (h->backward(h->ctx, id, xs, sp->n, Y[r], G[r], gx) != 0) return 1 + r;
            } else {        /* no call; zeros still reach the operands */
                for (k = 0; k < sp->n; ++k) gx[k] = 0.0;
            }
            for (k = 0; k < sp->n; ++k)
                if (sp->ng[k]) sp->ng[k][sp->nu[k] ? r % RP_ACC : r] += gx[k];
        }
        return 0;
    }
    default: {
        double *GX = sp->gx, *GZ = sp->gz;
        switch (sp->op) {
        AC_UNARY_OPS(RP_BR_UNARY)
        AC_CONST_OPS(RP_BR_CONST)
        AC_BINARY_OPS(RP_BR_BINARY)
        }
        return 0;
    }
    }
}
