/* replay_batch.c -- ac_eval_batch: many rows of a compiled program, in blocks, on threads.
 *
 * Rows are evaluated W at a time ("a block"): every slot that varies by row
 * holds W doubles side by side (slot-major), so each instruction is
 * dispatched once per block and its loop over the W rows is plain
 * arithmetic the compiler vectorises.  Slots that do not vary (constants,
 * shared inputs and what depends on them only) are "uniform": computed
 * once per call, before the blocks ("hoisting").  With summed gradients
 * their reverse also runs once, after the blocks, on adjoints summed over
 * the rows (the reverse is linear in the adjoint).
 *
 * Reads the program and the caller's arrays; allocates its buffers before
 * any row is evaluated; calls only the ac_hooks.  Formulas come from the
 * X-macro tables of src/ops.h, as in replay_sweep.h.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* posix_memalign, pthreads */
#endif
#include <stdlib.h>
#include <string.h>
#include "replay_sweep.h"

#if !defined(_WIN32) || defined(__MINGW32__)
#define RP_HAVE_PTHREADS 1
#include <pthread.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RP_RESTRICT __restrict__
#else
#define RP_RESTRICT
#endif

/* The block kernels are compiled twice where the toolchain can pick one at
 * load time (GCC, x86-64, glibc's ifunc): for AVX2 and for the baseline
 * (SSE2).  AVX2 does four rows per instruction instead of two, measured
 * 1.9x faster on the MLP loss; the results are the same bits (no FMA: the
 * "avx2" target does not enable it, and the build uses -ffp-contract=off;
 * libm calls are the same calls). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && !defined(RP_NO_CLONES)
#define RP_KERNEL __attribute__((target_clones("avx2", "default"))) static
#else
#define RP_KERNEL static
#endif

/* ---- the plan: which slots vary by row ----------------------------------- */

typedef struct rp_plan {
    const ac_program *p;
    const ac_batch *b;
    const ac_hooks *hooks;
    int per_row;              /* per-row gradients: every input varies, nothing is reversed once */
    int want_grad;
    int32_t W;                /* rows per block */
    int32_t stride;           /* doubles between two slots' lanes (W rounded up to 8) */
    int32_t n_batched;        /* columns of x */
    uint8_t *uniform;         /* [n_slots] */
    uint8_t *active;          /* [n_slots] depends on some input */
    int32_t *lane;            /* [n_slots] varying: its lane buffer; uniform with lanes: its accumulator; -1 */
    int32_t *column;          /* [n_inputs] column in x, or index in shared */
    int32_t n_lanes;          /* varying slots */
    int32_t n_acc;            /* uniform slots whose adjoint gathers row contributions */
    int32_t *hoisted;         /* uniform instructions, ascending */
    int32_t n_hoisted;
    int32_t *varying;         /* varying instructions, ascending */
    int32_t n_varying;
    int32_t n_nary_args;      /* operand references of varying n-ary instructions */
    int32_t max_arity;
    double *uval;             /* [n_slots] values of the uniform slots */
    uint8_t *guard_flipped;   /* [n_guards] a uniform guard that flipped (it flips on every row) */
} rp_plan;

static void rp_plan_free(rp_plan *pl)
{
    free(pl->uniform); free(pl->active); free(pl->lane); free(pl->column);
    free(pl->hoisted); free(pl->varying); free(pl->uval); free(pl->guard_flipped);
}

static int rp_operand_count(const ac_program *p, int32_t i)
{
    if (rp_is_nary(p->op[i])) return p->b[i];
    return rp_is_binary(p->op[i]) || rp_is_const_op(p->op[i]) ? 2 : 1;
}

static int32_t rp_operand(const ac_program *p, int32_t i, int k)
{
    if (rp_is_nary(p->op[i])) return p->args[p->a[i] + k];
    return k == 0 ? p->a[i] : p->b[i];
}

static int rp_plan_build(rp_plan *pl, const ac_program *p, const ac_batch *b)
{
    int32_t base = p->n_inputs + p->n_consts, i, k, s, ns = 0;
    int32_t n = p->n_slots;
    pl->uniform = calloc((size_t)n + 1, 1);
    pl->active = calloc((size_t)n + 1, 1);
    pl->lane = malloc(((size_t)n + 1) * sizeof *pl->lane);
    pl->column = malloc(((size_t)p->n_inputs + 1) * sizeof *pl->column);
    pl->hoisted = malloc(((size_t)p->n_instr + 1) * sizeof *pl->hoisted);
    pl->varying = malloc(((size_t)p->n_instr + 1) * sizeof *pl->varying);
    pl->uval = malloc(((size_t)n + 1) * sizeof *pl->uval);
    pl->guard_flipped = calloc((size_t)p->n_guards + 1, 1);
    if (!pl->uniform || !pl->active || !pl->lane || !pl->column || !pl->hoisted || !pl->varying
        || !pl->uval || !pl->guard_flipped)
        return -1;

    for (s = 0; s < p->n_inputs; ++s) {
        int per_row_input = b->batched == NULL || b->batched[s];
        pl->column[s] = per_row_input ? pl->n_batched++ : ns++;
        pl->uniform[s] = !(per_row_input || pl->per_row);
        pl->active[s] = 1;
    }
    for (s = p->n_inputs; s < base; ++s) pl->uniform[s] = 1;
    for (i = 0; i < p->n_instr; ++i) {
        int u = 1, act = 0, m = rp_operand_count(p, i);
        for (k = 0; k < m; ++k) {
            int32_t o = rp_operand(p, i, k);
            if (k == 1 && rp_is_const_op(p->op[i])) break;   /* the constant */
            u &= pl->uniform[o];
            act |= pl->active[o];
        }
        pl->uniform[base + i] = (uint8_t)u;
        pl->active[base + i] = (uint8_t)act;
        if (u) {
            pl->hoisted[pl->n_hoisted++] = i;
        } else {
            pl->varying[pl->n_varying++] = i;
            if (rp_is_nary(p->op[i])) pl->n_nary_args += p->b[i];
            if (p->op[i] == AC_CUSTOM && p->b[i] > pl->max_arity) pl->max_arity = p->b[i];
        }
    }
    for (s = 0; s < n; ++s) pl->lane[s] = pl->uniform[s] ? -1 : pl->n_lanes++;
    /* uniform slots that gather adjoints from the rows: operands of varying
     * instructions, and outputs */
    if (pl->want_grad && !pl->per_row) {
        for (k = 0; k < pl->n_varying; ++k) {
            int32_t vi = pl->varying[k], m = rp_operand_count(p, vi), q;
            for (q = 0; q < m; ++q) {
                int32_t o = rp_operand(p, vi, q);
                if (pl->uniform[o] && pl->active[o] && pl->lane[o] < 0) pl->lane[o] = pl->n_acc++;
            }
        }
        for (k = 0; k < p->n_outputs; ++k) {
            int32_t o = p->outputs[k];
            if (pl->uniform[o] && pl->active[o] && pl->lane[o] < 0) pl->lane[o] = pl->n_acc++;
        }
    }
    return 0;
}

/* Rows per block: AC_REPLAY_DEFAULT_BLOCK, halved (down to 16) while a
 * thread's block buffers would pass RP_BLOCK_BYTES, so they stay in L2.
 * On the MLP loss (docs/replay.md) 128 rows ran 1.3x faster than 32 and
 * 1.1x faster than 64; 256 was no faster. */
#define RP_BLOCK_BYTES (512 * 1024)

static int32_t rp_default_block(const rp_plan *pl)
{
    double row_bytes = 8.0 * (2.0 * pl->n_lanes + (double)pl->p->n_outputs * pl->n_acc) + 8.0;
    int32_t W = AC_REPLAY_DEFAULT_BLOCK;
    while (W > 16 && W * row_bytes > RP_BLOCK_BYTES) W /= 2;
    return W;
}

/* ---- per-thread state ---------------------------------------------------- */

/* One varying instruction, its operands resolved to pointers into this
 * thread's buffers.  x/z (and nv[k]) point at W lanes, or at the single
 * value of a uniform slot (form bit 0 / bit 1, nu[k] = 1).  Adjoint
 * destinations are lanes; NULL where no adjoint is needed. */
typedef struct rp_step {
    uint8_t op, form;
    int32_t instr, n;
    double *y, *gy;
    const double *x, *z;
    double *gx, *gz;
    const double **nv;
    const uint8_t *nu;
    double **ng;
} rp_step;

typedef struct rp_thread {
    const rp_plan *pl;
    int64_t row0, row1;
    double *vval, *vadj;      /* [n_lanes * stride] */
    double *acc;              /* [m * n_acc * stride] uniform adjoints, per output, per lane */
    double *gsum;             /* [m * n_inputs] partial summed gradient of the varying inputs */
    double *ysum;             /* [m] */
    rp_step *fwd;             /* [n_varying] */
    rp_step *rev;             /* [m * n_varying]: output j's steps, descending, at j * n_varying */
    int32_t *n_rev;           /* [m] */
    const double **nv;
    uint8_t *nu;
    double **ng;              /* [m * n_nary_args] */
    double *scratch;
    ac_status st;
} rp_thread;

static void *rp_aligned(size_t count)
{
    void *q = NULL;
    size_t bytes = (count + 1) * sizeof(double);
    bytes = (bytes + 63) & ~(size_t)63;
#if defined(_WIN32) && !defined(__MINGW32__)
    q = malloc(bytes);
#else
    if (posix_memalign(&q, 64, bytes) != 0) q = NULL;
#endif
    if (q) memset(q, 0, bytes);
    return q;
}

static void rp_thread_free(rp_thread *th)
{
    free(th->vval); free(th->vadj); free(th->acc); free(th->gsum); free(th->ysum);
    free(th->fwd); free(th->rev); free(th->n_rev); free(th->nv); free(th->nu); free(th->ng);
    free(th->scratch);
}

/* Value pointer of slot s: lanes, or the uniform value. */
static const double *rp_val_ptr(const rp_plan *pl, rp_thread *th, int32_t s)
{
    return pl->uniform[s] ? &pl->uval[s] : th->vval + (size_t)pl->lane[s] * pl->stride;
}

/* Adjoint lanes of slot s for output j, or NULL. */
static double *rp_adj_ptr(const rp_plan *pl, rp_thread *th, int32_t j, int32_t s)
{
    if (!pl->uniform[s]) return th->vadj + (size_t)pl->lane[s] * pl->stride;
    if (pl->lane[s] < 0) return NULL;
    return th->acc + ((size_t)j * pl->n_acc + (size_t)pl->lane[s]) * pl->stride;
}

static int rp_thread_init(rp_thread *th, const rp_plan *pl)
{
    const ac_program *p = pl->p;
    int32_t m = p->n_outputs, base = p->n_inputs + p->n_consts, k, j, at = 0;
    size_t W = (size_t)pl->stride;
    th->pl = pl;
    th->vval = rp_aligned((size_t)pl->n_lanes * W);
    th->vadj = rp_aligned((size_t)pl->n_lanes * W);
    th->acc = rp_aligned((size_t)m * (size_t)pl->n_acc * W);
    th->gsum = calloc((size_t)m * (size_t)p->n_inputs + 1, sizeof *th->gsum);
    th->ysum = calloc((size_t)m + 1, sizeof *th->ysum);
    th->fwd = malloc(((size_t)pl->n_varying + 1) * sizeof *th->fwd);
    th->rev = malloc(((size_t)m * (size_t)pl->n_varying + 1) * sizeof *th->rev);
    th->n_rev = calloc((size_t)m + 1, sizeof *th->n_rev);
    th->nv = malloc(((size_t)pl->n_nary_args + 1) * sizeof *th->nv);
    th->nu = malloc((size_t)pl->n_nary_args + 1);
    th->ng = malloc(((size_t)m * (size_t)pl->n_nary_args + 1) * sizeof *th->ng);
    th->scratch = malloc((2 * (size_t)pl->max_arity + 2) * sizeof *th->scratch);
    if (!th->vval || !th->vadj || !th->acc || !th->gsum || !th->ysum || !th->fwd || !th->rev
        || !th->n_rev || !th->nv || !th->nu || !th->ng || !th->scratch)
        return -1;
    rp_status_ok(&th->st);

    for (k = 0; k < pl->n_varying; ++k) {
        int32_t i = pl->varying[k];
        rp_step *sp = &th->fwd[k];
        memset(sp, 0, sizeof *sp);
        sp->op = p->op[i];
        sp->instr = i;
        sp->y = th->vval + (size_t)pl->lane[base + i] * W;
        if (rp_is_nary(sp->op)) {
            int32_t q;
            sp->n = p->b[i];
            sp->nv = th->nv + at;
            sp->nu = th->nu + at;
            for (q = 0; q < sp->n; ++q) {
                int32_t o = p->args[p->a[i] + q];
                th->nv[at + q] = rp_val_ptr(pl, th, o);
                th->nu[at + q] = pl->uniform[o];
            }
            at += sp->n;
        } else {
            sp->x = rp_val_ptr(pl, th, p->a[i]);
            sp->form = pl->uniform[p->a[i]];
            if (rp_is_binary(sp->op) || rp_is_const_op(sp->op)) {
                sp->z = rp_val_ptr(pl, th, p->b[i]);
                sp->form |= (uint8_t)(pl->uniform[p->b[i]] << 1);
            }
        }
    }
    if (!pl->want_grad) return 0;
    for (j = 0; j < m; ++j) {
        rp_step *rev = th->rev + (size_t)j * pl->n_varying;
        double **ng = th->ng + (size_t)j * pl->n_nary_args;
        int32_t n = 0;
        for (k = pl->n_varying - 1; k >= 0; --k) {
            const rp_step *f = &th->fwd[k];
            int32_t i = f->instr;
            rp_step *sp;
            if (i >= p->rev_end[j] || !rp_reaches(p, j, i)) continue;
            sp = &rev[n++];
            *sp = *f;
            sp->gy = th->vadj + (size_t)pl->lane[base + i] * W;
            if (rp_is_nary(sp->op)) {
                int32_t q, off = (int32_t)(f->nv - th->nv);
                sp->ng = ng + off;
                for (q = 0; q < sp->n; ++q) sp->ng[q] = rp_adj_ptr(pl, th, j, p->args[p->a[i] + q]);
            } else {
                sp->gx = rp_adj_ptr(pl, th, j, p->a[i]);
                if (rp_is_binary(sp->op)) sp->gz = rp_adj_ptr(pl, th, j, p->b[i]);
            }
        }
        th->n_rev[j] = n;
    }
    return 0;
}

/* ---- block kernels ------------------------------------------------------- */

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
#define RP_BR_LOOP(DST, D, SX, SZ)                                              \
    for (r = 0; r < n; ++r) {                                                   \
        double g = G[r], x = RP_AT(X, SX), z = RP_AT(Z, SZ), y = Y[r];          \
        (void)x; (void)z; (void)y; DST[r] += (D); }
/* a block of its own per destination: x * x has GX == GZ */
#define RP_BR_SIDE(DST, D)                                                      \
    if (DST) {                                                                  \
        double *RP_RESTRICT O = (DST);                                          \
        if (form == 0) { RP_BR_LOOP(O, D, 1, 1) }                               \
        else if (form == 1) { RP_BR_LOOP(O, D, 0, 1) }                          \
        else { RP_BR_LOOP(O, D, 1, 0) }                                         \
    }
#define RP_BR_BINARY(OP, NAME, F, DX, DZ)                                       \
    case OP: RP_BR_SIDE(GX, DX) RP_BR_SIDE(GZ, DZ) return 0;

/* Reverse of one varying instruction over rows [0, n): add its
 * contributions to its operands' adjoint lanes, per row in the order of
 * rp_reverse1.  Returns 0, or 1 + the row whose custom hook failed. */
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
            if (D) for (r = 0; r < n; ++r) D[r] += G[r];
        }
        return 0;
    case AC_DOT:
        for (k = 0; k + 1 < sp->n; k += 2) {
            const double *RP_RESTRICT A = sp->nv[k], *RP_RESTRICT B = sp->nv[k + 1];
            if (sp->ng[k]) {        /* separate blocks: x * x has DA == DB */
                double *RP_RESTRICT DA = sp->ng[k];
                if (sp->nu[k + 1]) { double u = *B; for (r = 0; r < n; ++r) DA[r] += G[r] * u; }
                else for (r = 0; r < n; ++r) DA[r] += G[r] * B[r];
            }
            if (sp->ng[k + 1]) {
                double *RP_RESTRICT DB = sp->ng[k + 1];
                if (sp->nu[k]) { double u = *A; for (r = 0; r < n; ++r) DB[r] += G[r] * u; }
                else for (r = 0; r < n; ++r) DB[r] += G[r] * A[r];
            }
        }
        return 0;
    case AC_CUSTOM: {
        const ac_hooks *h = pl->hooks;
        int32_t id = rp_custom_id(pl->p, sp->instr);
        double *xs = th->scratch, *gx = th->scratch + sp->n;
        for (r = 0; r < n; ++r) {
            if (G[r] == 0.0) {
                for (k = 0; k < sp->n; ++k) if (sp->ng[k]) sp->ng[k][r] += 0.0;
                continue;
            }
            for (k = 0; k < sp->n; ++k) xs[k] = sp->nu[k] ? *sp->nv[k] : sp->nv[k][r];
            if (h->backward(h->ctx, id, xs, sp->n, Y[r], G[r], gx) != 0) return 1 + r;
            for (k = 0; k < sp->n; ++k) if (sp->ng[k]) sp->ng[k][r] += gx[k];
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

/* ---- the rows of one thread ---------------------------------------------- */

/* The first (row, guard) of the block that flips a guard: row index in the
 * block, or -1. */
static int32_t rp_block_guards(const rp_plan *pl, rp_thread *th, int32_t n, int32_t *which)
{
    const ac_program *p = pl->p;
    int32_t g, r, first = n;
    for (g = 0; g < p->n_guards; ++g) {
        const double *A = rp_val_ptr(pl, th, p->guard_a[g]), *B = rp_val_ptr(pl, th, p->guard_b[g]);
        int ua = pl->uniform[p->guard_a[g]], ub = pl->uniform[p->guard_b[g]];
        int kind = p->guard_kind[g], want = p->guard_expected[g];
        if (ua && ub) {
            if (pl->guard_flipped[g] && first > 0) { first = 0; *which = g; }
            continue;
        }
        for (r = 0; r < first; ++r) {
            if (rp_guard_holds(kind, A[ua ? 0 : r], B[ub ? 0 : r]) != want) {
                first = r;
                *which = g;
                break;
            }
        }
    }
    return first < n ? first : -1;
}

static void rp_thread_fail(rp_thread *th, int code, int64_t row, int32_t guard, int32_t custom, const char *what)
{
    th->st.code = code;
    th->st.row = row;
    th->st.guard = guard;
    th->st.custom = custom;
    th->st.what = what;
}

static void rp_run_rows(rp_thread *th)
{
    const rp_plan *pl = th->pl;
    const ac_program *p = pl->p;
    const ac_batch *b = pl->b;
    int32_t m = p->n_outputs, nin = p->n_inputs, W = pl->W, k, j, r, n, g = 0;
    size_t stride = (size_t)pl->stride;
    int64_t r0;

    for (r0 = th->row0; r0 < th->row1; r0 += W) {
        n = th->row1 - r0 < W ? (int32_t)(th->row1 - r0) : W;
        /* inputs */
        for (k = 0; k < nin; ++k) {
            double *RP_RESTRICT dst;
            if (pl->uniform[k]) continue;
            dst = th->vval + (size_t)pl->lane[k] * stride;
            if (b->batched == NULL || b->batched[k]) {
                const double *src = b->x + r0 * pl->n_batched + pl->column[k];
                for (r = 0; r < n; ++r) dst[r] = src[(int64_t)r * pl->n_batched];
            } else {
                double u = b->shared[pl->column[k]];
                for (r = 0; r < n; ++r) dst[r] = u;
            }
        }
        /* forward, guards, outputs */
        for (k = 0; k < pl->n_varying; ++k) {
            int bad = rp_block_forward(pl, th, &th->fwd[k], n);
            if (RP_UNLIKELY(bad)) {
                rp_thread_fail(th, AC_RP_HOOK, r0 + bad - 1, 0, rp_custom_id(p, th->fwd[k].instr),
                               "a Function's forward failed");
                return;
            }
        }
        if (p->n_guards > 0) {
            int32_t row = rp_block_guards(pl, th, n, &g);
            if (row >= 0) {
                rp_thread_fail(th, AC_RP_GUARD, r0 + row, p->guard_index[g], 0,
                               "a guard recorded while tracing flipped");
                return;
            }
        }
        for (j = 0; j < m; ++j) {
            int32_t s = p->outputs[j];
            const double *v = rp_val_ptr(pl, th, s);
            int u = pl->uniform[s];
            double acc = th->ysum[j];
            for (r = 0; r < n; ++r) {
                double yr = v[u ? 0 : r];
                if (b->y) b->y[(r0 + r) * m + j] = yr;
                acc += (b->weight ? b->weight[r0 + r] : 1.0) * yr;
            }
            th->ysum[j] = acc;
        }
        if (!pl->want_grad) continue;
        /* reverse, one output at a time */
        for (j = 0; j < m; ++j) {
            int32_t s = p->outputs[j];
            const rp_step *rev = th->rev + (size_t)j * pl->n_varying;
            double *seed;
            memset(th->vadj, 0, (size_t)pl->n_lanes * stride * sizeof *th->vadj);
            seed = rp_adj_ptr(pl, th, j, s);
            if (seed != NULL) {
                if (pl->uniform[s])
                    for (r = 0; r < n; ++r) seed[r] += b->weight ? b->weight[r0 + r] : 1.0;
                else
                    for (r = 0; r < n; ++r) seed[r] = b->weight ? b->weight[r0 + r] : 1.0;
            }
            for (k = 0; k < th->n_rev[j]; ++k) {
                int bad = rp_block_reverse(pl, th, &rev[k], n);
                if (RP_UNLIKELY(bad)) {
                    rp_thread_fail(th, AC_RP_HOOK, r0 + bad - 1, 0, rp_custom_id(p, rev[k].instr),
                                   "a Function's backward failed");
                    return;
                }
            }
            for (k = 0; k < nin; ++k) {
                const double *ga;
                double acc;
                if (pl->uniform[k]) continue;
                ga = th->vadj + (size_t)pl->lane[k] * stride;
                if (b->grad_rows)
                    for (r = 0; r < n; ++r) b->grad_rows[((r0 + r) * m + j) * nin + k] = ga[r];
                acc = th->gsum[(size_t)j * nin + k];
                for (r = 0; r < n; ++r) acc += ga[r];
                th->gsum[(size_t)j * nin + k] = acc;
            }
        }
    }
}

#ifdef RP_HAVE_PTHREADS
static void *rp_thread_main(void *arg)
{
    rp_run_rows((rp_thread *)arg);
    return NULL;
}
#endif

/* ---- ac_eval_batch -------------------------------------------------------- */

static int rp_check_batch(const ac_program *p, const ac_batch *b, const ac_hooks *hooks, ac_status *st)
{
    int32_t k, nb = 0;
    if (b->rows < 0) return rp_fail(st, AC_RP_INVALID, -1, "a negative number of rows");
    if (b->block < 0 || b->block > AC_REPLAY_MAX_BLOCK)
        return rp_fail(st, AC_RP_INVALID, -1, "block must be 0 (the default) or 1 to AC_REPLAY_MAX_BLOCK");
    for (k = 0; k < p->n_inputs; ++k) nb += b->batched == NULL || b->batched[k] != 0;
    if (b->rows > 0 && nb > 0 && b->x == NULL) return rp_fail(st, AC_RP_INVALID, -1, "per-row inputs but no x");
    if (nb < p->n_inputs && b->shared == NULL) return rp_fail(st, AC_RP_INVALID, -1, "shared inputs but no shared");
    if (p->n_custom > 0 && (hooks == NULL || hooks->forward == NULL
                            || ((b->grad_rows || b->grad_sum) && hooks->backward == NULL)))
        return rp_fail(st, AC_RP_INVALID, -1, "the program calls Functions but no hooks were given");
    return 0;
}

static void rp_fill_batch_nan(const ac_program *p, const ac_batch *b)
{
    int64_t m = p->n_outputs, n = p->n_inputs;
    rp_fill_nan(b->y, b->rows * m);
    rp_fill_nan(b->y_sum, m);
    rp_fill_nan(b->grad_rows, b->rows * m * n);
    rp_fill_nan(b->grad_sum, m * n);
}

/* Summed mode, after the rows: the reverse of the uniform instructions,
 * once per output, on the adjoints the rows gathered. */
static int rp_hoisted_reverse(const rp_plan *pl, rp_thread *ths, int nth, double *adj, double *scratch,
                              ac_status *st)
{
    const ac_program *p = pl->p;
    const ac_batch *b = pl->b;
    int32_t m = p->n_outputs, nin = p->n_inputs, base = nin + p->n_consts, j, s, k;
    int t;
    for (j = 0; j < m; ++j) {
        memset(adj, 0, (size_t)p->n_slots * sizeof *adj);
        for (s = 0; s < p->n_slots; ++s) {
            if (!pl->uniform[s] || pl->lane[s] < 0) continue;
            for (t = 0; t < nth; ++t) {
                const double *lanes = ths[t].acc + ((size_t)j * pl->n_acc + pl->lane[s]) * pl->stride;
                double sum = 0.0;
                int32_t r;
                for (r = 0; r < pl->W; ++r) sum += lanes[r];
                adj[s] += sum;
            }
        }
        for (k = pl->n_hoisted - 1; k >= 0; --k) {
            int32_t i = pl->hoisted[k];
            if (!pl->active[base + i] || i >= p->rev_end[j] || !rp_reaches(p, j, i)) continue;
            if (rp_reverse1(p, pl->uval, adj, i, base, pl->hooks, scratch)) {
                st->custom = rp_custom_id(p, i);
                return rp_fail(st, AC_RP_HOOK, -1, "a Function's backward failed");
            }
        }
        for (k = 0; k < nin; ++k)
            if (pl->uniform[k]) b->grad_sum[(size_t)j * nin + k] = adj[k];
    }
    return 0;
}

int ac_eval_batch(const ac_program *p, const ac_batch *b, const ac_hooks *hooks, ac_status *st)
{
    rp_plan pl;
    rp_thread *ths = NULL;
    double *adj = NULL, *scratch = NULL;
    int32_t base = p->n_inputs + p->n_consts, m = p->n_outputs, nin = p->n_inputs, k, j;
    int64_t blocks, chunk;
    int nth, t, code = AC_RP_OK;

    rp_status_ok(st);
    memset(&pl, 0, sizeof pl);
    code = rp_check_batch(p, b, hooks, st);
    if (code) return code;
    pl.p = p;
    pl.b = b;
    pl.hooks = hooks;
    pl.per_row = b->grad_rows != NULL;
    pl.want_grad = b->grad_rows != NULL || b->grad_sum != NULL;
    if (rp_plan_build(&pl, p, b) < 0) goto nomem;
    pl.W = b->block > 0 ? b->block : rp_default_block(&pl);
    pl.stride = (pl.W + 7) & ~7;
    blocks = (b->rows + pl.W - 1) / pl.W;
    nth = b->nthreads > 1 ? b->nthreads : 1;
#ifndef RP_HAVE_PTHREADS
    nth = 1;
#endif
    if (nth > blocks) nth = blocks > 0 ? (int)blocks : 1;
    chunk = (blocks + nth - 1) / nth * pl.W;

    adj = malloc(((size_t)p->n_slots + 1) * sizeof *adj);
    scratch = malloc((2 * (size_t)rp_max_custom_arity(p) + 2) * sizeof *scratch);
    ths = calloc((size_t)nth, sizeof *ths);
    if (!adj || !scratch || !ths) goto nomem;
    for (t = 0; t < nth; ++t) {
        if (rp_thread_init(&ths[t], &pl) < 0) goto nomem;
        ths[t].row0 = t * chunk < b->rows ? t * chunk : b->rows;
        ths[t].row1 = (t + 1) * chunk < b->rows ? (t + 1) * chunk : b->rows;
    }

    /* the uniform slots, once */
    for (k = 0; k < nin; ++k)
        if (pl.uniform[k]) pl.uval[k] = b->shared[pl.column[k]];
    memcpy(pl.uval + nin, p->consts, (size_t)p->n_consts * sizeof *pl.uval);
    for (k = 0; k < pl.n_hoisted; ++k) {
        if (rp_forward1(p, pl.uval, pl.hoisted[k], base, hooks, scratch)) {
            st->custom = rp_custom_id(p, pl.hoisted[k]);
            code = rp_fail(st, AC_RP_HOOK, 0, "a Function's forward failed");
            goto done;
        }
    }
    for (k = 0; k < p->n_guards; ++k) {
        int32_t ga = p->guard_a[k], gb = p->guard_b[k];
        if (pl.uniform[ga] && pl.uniform[gb])
            pl.guard_flipped[k] = rp_guard_holds(p->guard_kind[k], pl.uval[ga], pl.uval[gb]) != p->guard_expected[k];
    }

    /* the rows */
#ifdef RP_HAVE_PTHREADS
    if (nth > 1) {
        pthread_t *tid = malloc((size_t)nth * sizeof *tid);
        int started = 1;
        if (tid == NULL) goto nomem;
        for (t = 1; t < nth; ++t) {
            if (pthread_create(&tid[t], NULL, rp_thread_main, &ths[t]) != 0) break;
            ++started;
        }
        rp_run_rows(&ths[0]);
        for (t = 1; t < started; ++t) pthread_join(tid[t], NULL);
        for (t = started; t < nth; ++t) rp_run_rows(&ths[t]);   /* no thread: run here */
        free(tid);
    } else
#endif
    {
        for (t = 0; t < nth; ++t) rp_run_rows(&ths[t]);
    }
    for (t = 0; t < nth; ++t) {
        if (ths[t].st.code != AC_RP_OK) {      /* threads hold ascending rows: the first failure is the earliest */
            *st = ths[t].st;
            st->index = -1;
            code = st->code;
            goto done;
        }
    }

    /* reductions, in thread order */
    if (b->y_sum)
        for (j = 0; j < m; ++j) {
            double acc = 0.0;
            for (t = 0; t < nth; ++t) acc += ths[t].ysum[j];
            b->y_sum[j] = acc;
        }
    if (b->grad_sum) {
        for (j = 0; j < m; ++j)
            for (k = 0; k < nin; ++k) {
                double acc = 0.0;
                if (pl.uniform[k]) continue;
                for (t = 0; t < nth; ++t) acc += ths[t].gsum[(size_t)j * nin + k];
                b->grad_sum[(size_t)j * nin + k] = acc;
            }
        if (!pl.per_row) {
            code = rp_hoisted_reverse(&pl, ths, nth, adj, scratch, st);
            if (code) goto done;
        }
    }
    goto done;
nomem:
    code = rp_fail(st, AC_RP_NOMEM, -1, "out of memory for the batch buffers");
done:
    if (code != AC_RP_OK) rp_fill_batch_nan(p, b);
    if (ths)
        for (t = 0; t < nth; ++t) rp_thread_free(&ths[t]);
    free(ths);
    free(adj);
    free(scratch);
    rp_plan_free(&pl);
    return code;
}
