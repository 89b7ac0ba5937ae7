/* replay_sweep.h -- private to the replay evaluators (replay_eval.c, replay_batch.c).
 *
 * One instruction's forward value and reverse contributions on a value
 * array of the program's slots, instantiated from the X-macro tables of
 * src/ops.h (never a formula of its own).  The reverse mirrors ac_sweep in
 * src/tape.c term by term: contributions are computed with the same
 * expressions and added to the operands' adjoints in the same order, so a
 * replay with the passes off is bit-identical to the tape's sweep.
 */
#ifndef AUTOGRAD_C_REPLAY_SWEEP_H
#define AUTOGRAD_C_REPLAY_SWEEP_H

#include "replay_ir.h"

#if defined(__GNUC__) || defined(__clang__)
#define RP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RP_INLINE static inline __attribute__((always_inline))
#else
#define RP_UNLIKELY(x) (x)
#define RP_INLINE static inline
#endif

/* The custom id of instruction i (ids ascend with instructions). */
static inline int32_t rp_custom_id(const ac_program *p, int32_t i)
{
    int32_t lo = 0, hi = p->n_custom - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (p->custom_instr[mid] < i) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static inline int rp_reaches(const ac_program *p, int32_t j, int32_t i)
{
    const uint64_t *m;
    if (p->mask_at[j] < 0) return 1;
    m = p->masks + p->mask_at[j];
    return (int)((m[i >> 6] >> (i & 63)) & 1);
}

/* Largest operand count of an AC_CUSTOM instruction (sizes scratch). */
static inline int32_t rp_max_custom_arity(const ac_program *p)
{
    int32_t k, n = 0;
    for (k = 0; k < p->n_custom; ++k)
        if (p->b[p->custom_instr[k]] > n) n = p->b[p->custom_instr[k]];
    return n;
}

/* ---- forward ------------------------------------------------------------ */

#define RP_FWD_UNARY(OP, NAME, F, D) \
    case OP: { double x = val[a]; val[s] = (F); return 0; }
#define RP_FWD_CONST(OP, NAME, F, D) \
    case OP: { double x = val[a], c = val[b]; val[s] = (F); return 0; }
#define RP_FWD_BINARY(OP, NAME, F, DX, DZ) \
    case OP: { double x = val[a], z = val[b]; val[s] = (F); return 0; }

/* val[base + i] = instruction i's value.  Returns 0, or 1 if a custom hook
 * failed.  scratch holds an AC_CUSTOM instruction's operands. */
RP_INLINE int rp_forward1(const ac_program *p, double *val, int32_t i, int32_t base,
                          const ac_hooks *hooks, double *scratch)
{
    int32_t a = p->a[i], b = p->b[i], s = base + i;
    (void)b;
    switch (p->op[i]) {
    AC_UNARY_OPS(RP_FWD_UNARY)
    AC_CONST_OPS(RP_FWD_CONST)
    AC_BINARY_OPS(RP_FWD_BINARY)
    case AC_SUM: {
        const int32_t *r = p->args + a;
        double y = 0.0;       /* 0.0 + x0 + x1 + ...: the recorder's order (as torch.sum) */
        int32_t k;
        for (k = 0; k < b; ++k) y += val[r[k]];
        val[s] = y;
        return 0;
    }
    case AC_DOT: {
        const int32_t *r = p->args + a;
        double y = 0.0;
        int32_t k;
        for (k = 0; k + 1 < b; k += 2) y += val[r[k]] * val[r[k + 1]];
        val[s] = y;
        return 0;
    }
    case AC_CUSTOM: {
        const int32_t *r = p->args + a;
        int32_t k;
        for (k = 0; k < b; ++k) scratch[k] = val[r[k]];
        return hooks->forward(hooks->ctx, rp_custom_id(p, i), scratch, b, &val[s]) != 0;
    }
    }
    return 0;
}

/* ---- reverse ------------------------------------------------------------ */

#define RP_REV_UNARY(OP, NAME, F, D) \
    case OP: { double x = val[a], y = val[s]; (void)x; (void)y; adj[a] += (D); return 0; }
#define RP_REV_CONST(OP, NAME, F, D) \
    case OP: { double x = val[a], c = val[b], y = val[s]; (void)x; (void)c; (void)y; \
               adj[a] += (D); return 0; }
#define RP_REV_BINARY(OP, NAME, F, DX, DZ) \
    case OP: { double x = val[a], z = val[b], y = val[s]; (void)x; (void)z; (void)y; \
               double dx = (DX), dz = (DZ); adj[a] += dx; adj[b] += dz; return 0; }

/* Add instruction i's contributions, given its adjoint adj[base + i], to
 * its operands' adjoints.  Returns 0, or 1 if a custom hook failed.  A zero
 * adjoint still passes g * (local derivative) on, so a 0 * inf is nan here
 * exactly where the tape's sweep gives nan. */
RP_INLINE int rp_reverse1(const ac_program *p, const double *val, double *adj, int32_t i,
                          int32_t base, const ac_hooks *hooks, double *scratch)
{
    int32_t a = p->a[i], b = p->b[i], s = base + i;
    double g = adj[s];
    (void)b;
    switch (p->op[i]) {
    AC_UNARY_OPS(RP_REV_UNARY)
    AC_CONST_OPS(RP_REV_CONST)
    AC_BINARY_OPS(RP_REV_BINARY)
    case AC_SUM: {
        const int32_t *r = p->args + a;
        int32_t k;
        for (k = 0; k < b; ++k) adj[r[k]] += g;
        return 0;
    }
    case AC_DOT: {     /* pairs (x_k, z_k): d/dx_k = z_k, d/dz_k = x_k */
        const int32_t *r = p->args + a;
        int32_t k;
        for (k = 0; k + 1 < b; k += 2) {
            double x = val[r[k]], z = val[r[k + 1]];
            adj[r[k]] += g * z;
            adj[r[k + 1]] += g * x;
        }
        return 0;
    }
    case AC_CUSTOM: {      /* the user's backward, only where gradient flows */
        const int32_t *r = p->args + a;
        int32_t k;
        if (g == 0.0) {
            for (k = 0; k < b; ++k) adj[r[k]] += 0.0;
            return 0;
        }
        for (k = 0; k < b; ++k) scratch[k] = val[r[k]];
        if (hooks->backward(hooks->ctx, rp_custom_id(p, i), scratch, b, val[s], g, scratch + b) != 0)
            return 1;
        for (k = 0; k < b; ++k) adj[r[k]] += scratch[b + k];
        return 0;
    }
    }
    return 0;
}

/* Nonzero where the program's instruction i depends on one of the inputs
 * flagged in `from` (NULL: any input); fills active[n_instr]. */
static inline void rp_activity(const ac_program *p, const uint8_t *from, uint8_t *active)
{
    int32_t base = p->n_inputs + p->n_consts, i, k;
#define RP_ACTIVE(sl) ((sl) < p->n_inputs ? (from == NULL || from[sl]) : ((sl) >= base && active[(sl) - base]))
    for (i = 0; i < p->n_instr; ++i) {
        int on = 0;
        if (rp_is_nary(p->op[i])) {
            for (k = 0; k < p->b[i] && !on; ++k) on = RP_ACTIVE(p->args[p->a[i] + k]);
        } else {
            on = RP_ACTIVE(p->a[i]);
            if (rp_is_binary(p->op[i])) on |= RP_ACTIVE(p->b[i]);
        }
        active[i] = (uint8_t)on;
    }
#undef RP_ACTIVE
}

/* The caller's poll hook: nonzero asks to stop. */
static inline int rp_poll(const ac_hooks *hooks)
{
    return hooks != NULL && hooks->poll != NULL && hooks->poll(hooks->ctx) != 0;
}

/* Fill n doubles with nan (the outputs of a failed evaluation). */
static inline void rp_fill_nan(double *v, int64_t n)
{
    int64_t k;
    if (v != NULL)
        for (k = 0; k < n; ++k) v[k] = NAN;
}

static inline void rp_status_ok(ac_status *st)
{
    memset(st, 0, sizeof *st);
    st->index = -1;
    st->what = "";
}

#endif /* AUTOGRAD_C_REPLAY_SWEEP_H */
