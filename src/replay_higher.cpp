/* replay_higher.cpp -- second order on a compiled program: ac_eval_second.
 *
 * Hessian-vector products and dense Hessians of a program's first output,
 * one row or many (some inputs per row, some shared), on threads, by the
 * forward-over-reverse pattern of src/higher.cpp over the program's slots
 * instead of the tape: per block of rows (up to 64, src/replay_lanes.h) a
 * forward pass (the value column of ops.h, as rp_forward1 in ac_eval), the
 * guards, then per direction a tangent pass and a reverse pass whose
 * adjoints are dual numbers, each instruction decoded once per block and
 * its rule run over the block's lanes.  Every opcode's rules
 * come from the contribution templates of src/higher_numbers.h, i.e. from
 * the adjoint columns of src/ops.h: no formula of its own.  As in
 * higher.cpp, only what a seeded output reaches propagates, and a term
 * whose factors carry no tangent is never a dual (an input without a
 * tangent is "off", not a tangent of 0, so an inf partial derivative along
 * it never meets a 0).
 *
 * A Hessian takes a first-order reverse pass, then per wanted input (a
 * column) a tangent pass from the input's first use and a reverse pass of
 * the adjoints' tangents only, then each pair H[j,k], H[k,j] becomes their mean, as
 * ag.hessian: symmetric to the last bit, per row and summed.  AC_CUSTOM
 * instructions (a user's Function) run their forward and first-order
 * backward hooks; where a tangent meets one (second order through it) the
 * evaluation stops with AC_RP_NEEDS_RULE: the hooks carry no jvp.
 *
 * Plain C interface (replay.h), no Python API; POD C++ for the number
 * types only (no exceptions, RTTI or standard library).
 */
#include <stdlib.h>
#include <string.h>
#include "replay_lanes.h"
extern "C" {
#include "replay_block.h"
}

/* Rows per block: a slot's W values (lanes) sit side by side, so each
 * instruction is decoded once per block and its rule runs in a plain loop
 * over the lanes.  Which slots are reached, have a tangent or are on does
 * not depend on the row (only on the program and the wanted inputs), so a
 * block takes the branches of each of its rows at once. */
#define SEC_MAX_LANES 64
#define SEC_LANE_BUDGET (1 << 16)   /* slots x lanes per buffer (4 buffers: 2 MiB) */

/* One thread's rows and buffers. */
struct sec_task {
    const ac_program *p;
    const ac_second *s;
    const ac_hooks *hooks;
    const int32_t *column;    /* [n] input k: its column (batched) or index in shared */
    int32_t nh;               /* inputs with h_on */
    const int32_t *h_index;   /* [nh] those inputs */
    const int32_t *first_use; /* [n] the first instruction reading input k (n_instr: none) */
    int *stop_below;          /* tasks above this index stop (a lower one failed) */
    int index, owned_poll;
    int32_t W;                /* lanes: slot q's values are [q * W, q * W + nl) */
    int32_t nl;               /* rows in the current block */
    int64_t row0, row1;
    /* buffers (one block) */
    double *val, *dot, *adj, *adj_dot;  /* [n_slots * W] */
    double *rowval;           /* [n_slots] one row's forward pass */
    double *vlanes;           /* [n * W] the block's tangents (hvp) */
    double *scratch;
    uint8_t *on, *state, *active;
    double *y_sum, *grad_sum, *hvp_sum, *hess_sum, *hess_rows;  /* hess_rows: [W * nh * nh] */
    void *block;
    int64_t since_poll;
    ac_status st;
};

/* ---- the passes of one block --------------------------------------------- */

/* Tangents of every slot: inputs with want[k] get v (want NULL: only
 * input `only`, tangent 1; none for -1); the others and the constants are off.  A custom
 * instruction with an operand on is on, with an unknown tangent (nan): the
 * reverse pass refuses it if the output reaches it. */
static void sec_tangents(sec_task *tk, const uint8_t *want, const double *v, int32_t only)
{
    const ac_program *p = tk->p;
    int32_t n = p->n_inputs, base = n + p->n_consts, i, k, w, W = tk->W, nl = tk->nl;
    int32_t from = want == NULL && only >= 0 ? tk->first_use[only] : 0;   /* nothing below has one */
    const double *val = tk->val;
    double *dot = tk->dot;
    uint8_t *on = tk->on;
#define SEC_LANES(q) ((size_t)(q) * W)
    for (k = 0; k < n; ++k) {
        on[k] = (uint8_t)(want != NULL ? want[k] != 0 : k == only);
        if (on[k])
            for (w = 0; w < nl; ++w) dot[SEC_LANES(k) + w] = want != NULL ? v[SEC_LANES(k) + w] : 1.0;
    }
    memset(on + n, 0, (size_t)p->n_consts + (size_t)from);
    for (i = from; i < p->n_instr; ++i) {
        int32_t a = p->a[i], b = p->b[i], s = base + i;
        int op = p->op[i];
        double *ds = dot + SEC_LANES(s);
        bool o = false;
        if (op >= RP_FIRST_BINARY) {
            bool xon = on[a] != 0, zon = on[b] != 0;
            if ((o = xon || zon))
                sec_tangent_lanes(op, 2, xon, zon, nl, ds, val + SEC_LANES(s), val + SEC_LANES(a),
                                  dot + SEC_LANES(a), val + SEC_LANES(b), dot + SEC_LANES(b));
        } else if (op >= RP_FIRST_CONST) {
            if ((o = on[a] != 0))
                sec_tangent_lanes(op, 1, true, false, nl, ds, val + SEC_LANES(s), val + SEC_LANES(a),
                                  dot + SEC_LANES(a), val + SEC_LANES(b), NULL);
        } else if (op >= RP_FIRST_UNARY) {
            if ((o = on[a] != 0))
                sec_tangent_lanes(op, 0, true, false, nl, ds, val + SEC_LANES(s), val + SEC_LANES(a),
                                  dot + SEC_LANES(a), NULL, NULL);
        } else if (op == AC_SUM) {
            const int32_t *r = p->args + a;
            for (k = 0; k < b; ++k)
                if (on[r[k]]) {
                    const double *dr = dot + SEC_LANES(r[k]);
                    if (o) for (w = 0; w < nl; ++w) ds[w] = ds[w] + dr[w];
                    else for (w = 0; w < nl; ++w) ds[w] = dr[w];
                    o = true;
                }
        } else if (op == AC_DOT) {      /* pairs (x_k, z_k): x_k' z_k + x_k z_k' */
            const int32_t *r = p->args + a;
            for (k = 0; k + 1 < b; k += 2)
                for (int h = 0; h < 2; ++h) {
                    int32_t t = r[k + h], u = r[k + 1 - h];    /* t's tangent times u */
                    if (!on[t]) continue;
                    const double *dt = dot + SEC_LANES(t), *vu = val + SEC_LANES(u);
                    if (o) for (w = 0; w < nl; ++w) ds[w] = ds[w] + dt[w] * vu[w];
                    else for (w = 0; w < nl; ++w) ds[w] = dt[w] * vu[w];
                    o = true;
                }
        } else {                        /* AC_CUSTOM: no jvp hook */
            const int32_t *r = p->args + a;
            for (k = 0; k < b && !o; ++k) o = on[r[k]] != 0;
            if (o) for (w = 0; w < nl; ++w) ds[w] = NAN;
        }
        on[s] = (uint8_t)o;
    }
}

/* Point c at slots a and b (b may be a) before an instruction's lanes
 * touch them. */
static HI_INLINE void sec_aim(sec_ctx &c, uint8_t *state, double *adj, double *adj_dot, int32_t W,
                              uint32_t a, uint32_t b, int32_t nl)
{
    c.ra = a;
    c.adj_a = adj + SEC_LANES(a);
    c.dot_a = adj_dot + SEC_LANES(a);
    c.adj_b = adj + SEC_LANES(b);
    c.dot_b = adj_dot + SEC_LANES(b);
    c.sa = state[a];
    c.sb = state[b];
    sec_prepare(c.sa, c.only_dot, c.adj_a, c.dot_a, nl);
    if (b != a) sec_prepare(c.sb, c.only_dot, c.adj_b, c.dot_b, nl);
}

static HI_INLINE void sec_done(const sec_ctx &c, uint8_t *state, uint32_t a, uint32_t b)
{
    if (b != a) state[b] = c.sb;
    state[a] = c.sa;
}

/* Slot r gets lane w's contribution f(w). */
template <class F>
static HI_INLINE void sec_touch_lanes(sec_ctx &c, uint8_t *state, double *adj, double *adj_dot,
                                      int32_t W, uint32_t r, int32_t nl, F f)
{
    sec_aim(c, state, adj, adj_dot, W, r, r, nl);
    for (c.w = 0; c.w < nl; ++c.w) touch(c, r, f(c.w));
    sec_done(c, state, r, r);
}

/* Instruction i's contributions in every lane of the block. */
template <class G>
static HI_INLINE void sec_step(const ac_program *p, sec_ctx &c, uint8_t *state, double *adj,
                               double *adj_dot, const double *val, const double *dot,
                               const uint8_t *on, int32_t W, int32_t i, int32_t s, int32_t nl)
{
    int op = p->op[i];
    uint32_t a = (uint32_t)p->a[i], b = (uint32_t)p->b[i];
    const double *ga = adj + SEC_LANES(s), *gd = adj_dot + SEC_LANES(s);
    const double *vs = val + SEC_LANES(s), *dsl = dot + SEC_LANES(s);
    const double *va = val + SEC_LANES(a), *da = dot + SEC_LANES(a);
    if (op >= RP_FIRST_BINARY) {
        bool xon = on[a] != 0, zon = on[b] != 0;
        const double *vb = val + SEC_LANES(b), *db = dot + SEC_LANES(b);
        sec_aim(c, state, adj, adj_dot, W, a, b, nl);
        if (xon && zon)
            sec_binary_lanes<G, dual, dual>(c, op, ga, gd, va, da, vb, db, vs, dsl, a, b, nl);
        else if (xon)
            sec_binary_lanes<G, dual, double>(c, op, ga, gd, va, da, vb, db, vs, dsl, a, b, nl);
        else if (zon)
            sec_binary_lanes<G, double, dual>(c, op, ga, gd, va, da, vb, db, vs, dsl, a, b, nl);
        else
            sec_binary_lanes<G, double, double>(c, op, ga, gd, va, da, vb, db, vs, dsl, a, b, nl);
        sec_done(c, state, a, b);
    } else if (op >= RP_FIRST_CONST) {
        const double *vb = val + SEC_LANES(b);
        sec_aim(c, state, adj, adj_dot, W, a, a, nl);
        if (on[a]) sec_const_lanes<G, dual>(c, op, ga, gd, va, da, vb, vs, dsl, a, nl);
        else sec_const_lanes<G, double>(c, op, ga, gd, va, da, vb, vs, dsl, a, nl);
        sec_done(c, state, a, a);
    } else if (op >= RP_FIRST_UNARY) {
        sec_aim(c, state, adj, adj_dot, W, a, a, nl);
        if (on[a]) sec_unary_lanes<G, dual>(c, op, ga, gd, va, da, vs, dsl, a, nl);
        else sec_unary_lanes<G, double>(c, op, ga, gd, va, da, vs, dsl, a, nl);
        sec_done(c, state, a, a);
    } else if (op == AC_SUM) {
        const int32_t *r = p->args + a;
        for (uint32_t k = 0; k < b; ++k)
            sec_touch_lanes(c, state, adj, adj_dot, W, (uint32_t)r[k], nl,
                            [&](int32_t w) { return lane<G>::at(ga, gd, w); });
    } else {                            /* AC_DOT: d/dx_k = z_k, d/dz_k = x_k */
        const int32_t *r = p->args + a;
        for (uint32_t k = 0; k + 1 < b; k += 2)
            for (int h = 0; h < 2; ++h) {
                uint32_t t = (uint32_t)r[k + h], u = (uint32_t)r[k + 1 - h];  /* t gets g * u */
                const double *vu = val + SEC_LANES(u), *du = dot + SEC_LANES(u);
                if (on[u])
                    sec_touch_lanes(c, state, adj, adj_dot, W, t, nl, [&](int32_t w) {
                        return lane<G>::at(ga, gd, w) * lane<dual>::at(vu, du, w); });
                else
                    sec_touch_lanes(c, state, adj, adj_dot, W, t, nl, [&](int32_t w) {
                        return lane<G>::at(ga, gd, w) * vu[w]; });
            }
    }
}

/* Adjoints (and their tangents) of output 0 after sec_tangents: the
 * inputs' adjoints are the gradient, their tangents H v.  only_dot: the
 * adjoints are those of a previous pass (first order, the same seed) and
 * only their tangents are swept, through the slots that have or receive
 * one (a Hessian's columns after the first cost what depends on their
 * input, as ag.hessian's tangents_only).  0, 1 if a hook failed (st->row
 * the lane), 2 if a custom instruction needs a second-order rule
 * (st->custom set either way). */
static int sec_reverse(sec_task *tk, bool only_dot)
{
    const ac_program *p = tk->p;
    int32_t n = p->n_inputs, base = n + p->n_consts, out = p->outputs[0], i, k, w;
    int32_t W = tk->W, nl = tk->nl;
    sec_ctx c = {NULL, NULL, NULL, NULL, 0, 0, 0, 0, only_dot};
    double *adj = tk->adj, *adj_dot = tk->adj_dot;
    uint8_t *state = tk->state;
    if (only_dot) {
        for (i = 0; i < p->n_slots; ++i) state[i] &= (uint8_t)~SEC_DOT;
    } else {
        memset(state, 0, (size_t)p->n_slots);
    }
    for (k = 0; k < n; ++k) {
        state[k] = SEC_REACHED | SEC_DOT;
        for (w = 0; w < nl; ++w) {
            if (!only_dot) tk->adj[SEC_LANES(k) + w] = 0.0;
            tk->adj_dot[SEC_LANES(k) + w] = 0.0;
        }
    }
    if (out < n) {
        for (w = 0; w < nl; ++w) tk->adj[SEC_LANES(out) + w] = 1.0;   /* the output is an input itself */
        return 0;
    }
    if (out < base) return 0;       /* a constant */
    if (!only_dot) {
        state[out] = SEC_REACHED;
        for (w = 0; w < nl; ++w) tk->adj[SEC_LANES(out) + w] = 1.0;
    }
    for (i = out - base; i >= 0; --i) {
        int32_t s = base + i;
        uint8_t st = state[s];
        if (!(st & SEC_REACHED) || !tk->active[i]) continue;
        if (only_dot && !(st & SEC_DOT) && !tk->on[s]) continue;   /* adds no tangent */
        if (p->op[i] == AC_CUSTOM) {    /* programs with Functions run one row per block */
            const int32_t *r = p->args + p->a[i];
            int32_t b = p->b[i];
            double g = tk->adj[SEC_LANES(s)];
            tk->st.custom = rp_custom_id(p, i);
            if (tk->on[s] || (st & SEC_DOT)) return 2;
            if (only_dot) continue;     /* its first-order part is known */
            if (g == 0.0) {
                for (k = 0; k < b; ++k)
                    sec_touch_lanes(c, state, adj, adj_dot, W, (uint32_t)r[k], 1,
                                    [](int32_t) { return 0.0; });
                continue;
            }
            for (k = 0; k < b; ++k) tk->scratch[k] = tk->val[SEC_LANES(r[k])];
            if (tk->hooks->backward(tk->hooks->ctx, tk->st.custom, tk->scratch, b, tk->val[SEC_LANES(s)],
                                    g, tk->scratch + b) != 0)
                return 1;
            for (k = 0; k < b; ++k) {
                double gk = tk->scratch[b + k];
                sec_touch_lanes(c, state, adj, adj_dot, W, (uint32_t)r[k], 1,
                                [gk](int32_t) { return gk; });
            }
            continue;
        }
        if (st & SEC_DOT)
            sec_step<dual>(p, c, state, adj, adj_dot, tk->val, tk->dot, tk->on, W, i, s, nl);
        else
            sec_step<double>(p, c, state, adj, adj_dot, tk->val, tk->dot, tk->on, W, i, s, nl);
    }
    return 0;
}

static int sec_fail(sec_task *tk, int code, int64_t row, const char *what)
{
    int seen = __atomic_load_n(tk->stop_below, __ATOMIC_RELAXED);
    int want = code == AC_RP_INTERRUPTED ? -1 : tk->index;
    while (want < seen && !__atomic_compare_exchange_n(tk->stop_below, &seen, want, 0,
                                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    tk->st.row = row;
    return rp_fail(&tk->st, code, -1, what);
}

/* The calling thread asks the poll hook now and then (about every
 * AC_REPLAY_POLL_EVERY instruction-passes, within a block too: a Hessian of
 * a large program is long).  Nonzero: interrupted, every task stops. */
static int sec_poll(sec_task *tk, int64_t r, int64_t passes)
{
    tk->since_poll += passes * (int64_t)tk->p->n_instr * tk->nl;
    if (!tk->owned_poll || tk->since_poll < AC_REPLAY_POLL_EVERY) return 0;
    tk->since_poll = 0;
    if (!rp_poll(tk->hooks)) return 0;
    return sec_fail(tk, AC_RP_INTERRUPTED, r, "interrupted");
}

/* Row r's values and guards into rowval.  0, or the failure's code (st
 * filled, not yet reported). */
static int sec_forward_row(sec_task *tk, int64_t r)
{
    const ac_program *p = tk->p;
    const ac_second *s = tk->s;
    int32_t n = p->n_inputs, base = n + p->n_consts, i, k;
    double *val = tk->rowval;
    for (k = 0; k < n; ++k) {
        int32_t c = tk->column[k];
        val[k] = s->batched != NULL && s->batched[k] ? s->x_cols[c][r * s->x_stride[c]] : s->shared[c];
    }
    for (i = 0; i < p->n_instr; ++i)
        if (RP_UNLIKELY(rp_forward1(p, val, i, base, tk->hooks, tk->scratch))) {
            tk->st.custom = rp_custom_id(p, i);
            return AC_RP_HOOK;
        }
    for (k = 0; k < p->n_guards; ++k)
        if (rp_guard_holds(p->guard_kind[k], val[p->guard_a[k]], val[p->guard_b[k]]) != p->guard_expected[k]) {
            tk->st.guard = p->guard_index[k];
            return AC_RP_GUARD;
        }
    return 0;
}

/* Rows [r0, r0 + count) of a program without Functions (W > 1): values
 * instruction by instruction over the lanes (the constants' lanes are
 * filled once), then the guards row by row.  Returns the rows before the
 * first that fails a guard (count if none; *code AC_RP_GUARD, st->guard). */
static int32_t sec_forward_lanes(sec_task *tk, int64_t r0, int32_t count, int *code)
{
    const ac_program *p = tk->p;
    const ac_second *s = tk->s;
    int32_t n = p->n_inputs, base = n + p->n_consts, W = tk->W, i, k, w;
    double *val = tk->val;
    for (k = 0; k < n; ++k) {
        int32_t c = tk->column[k];
        double *dst = val + SEC_LANES(k);
        if (s->batched != NULL && s->batched[k]) {
            const double *col = s->x_cols[c];
            int64_t stride = s->x_stride[c];
            for (w = 0; w < count; ++w) dst[w] = col[(r0 + w) * stride];
        } else {
            for (w = 0; w < count; ++w) dst[w] = s->shared[c];
        }
    }
    for (i = 0; i < p->n_instr; ++i) {
        int op = p->op[i];
        int32_t a = p->a[i], b = p->b[i];
        double *ys = val + SEC_LANES(base + i);
        if (op >= RP_FIRST_UNARY) {
            sec_value_lanes(op, count, ys, val + SEC_LANES(a), op >= RP_FIRST_CONST ? val + SEC_LANES(b) : NULL);
        } else {        /* AC_SUM, AC_DOT: 0.0 + ..., in the recorder's order (as rp_forward1) */
            const int32_t *r = p->args + a;
            for (w = 0; w < count; ++w) ys[w] = 0.0;
            if (op == AC_SUM) {
                for (k = 0; k < b; ++k) {
                    const double *vr = val + SEC_LANES(r[k]);
                    for (w = 0; w < count; ++w) ys[w] += vr[w];
                }
            } else {
                for (k = 0; k + 1 < b; k += 2) {
                    const double *vx = val + SEC_LANES(r[k]), *vz = val + SEC_LANES(r[k + 1]);
                    for (w = 0; w < count; ++w) ys[w] += vx[w] * vz[w];
                }
            }
        }
    }
    for (w = 0; w < count; ++w)
        for (k = 0; k < p->n_guards; ++k)
            if (rp_guard_holds(p->guard_kind[k], val[SEC_LANES(p->guard_a[k]) + w],
                               val[SEC_LANES(p->guard_b[k]) + w]) != p->guard_expected[k]) {
                tk->st.guard = p->guard_index[k];
                *code = AC_RP_GUARD;
                return w;
            }
    return count;
}

/* Rows [r0, r0 + count): values and guards row by row (a row that fails
 * ends the block there: the rows before it are finished first, so the
 * earliest failure is the one reported), then the wanted products, each
 * pass over every row of the block. */
static int sec_block(sec_task *tk, int64_t r0, int32_t count)
{
    const ac_program *p = tk->p;
    const ac_second *s = tk->s;
    int32_t n = p->n_inputs, m = p->n_outputs, nh = tk->nh, W = tk->W, j, k, w, nl;
    int fwd_code = 0;
    bool swept = false;
    int rc;
    if (W > 1) {
        nl = sec_forward_lanes(tk, r0, count, &fwd_code);
    } else {                            /* one row (a program with Functions: their hooks) */
        nl = (fwd_code = sec_forward_row(tk, r0)) != 0 ? 0 : 1;
        if (nl) memcpy(tk->val, tk->rowval, (size_t)p->n_slots * sizeof(double));
    }
    for (w = 0; w < nl; ++w)
        for (j = 0; j < m; ++j) {
            double y = tk->val[SEC_LANES(p->outputs[j]) + w];
            if (s->y) s->y[(r0 + w) * m + j] = y;
            tk->y_sum[j] += y;
        }
    tk->nl = nl;
#define SEC_REVERSE(only_dot)                                                  \
    do {                                                                       \
        rc = sec_reverse(tk, only_dot);                                        \
        if (rc == 1) return sec_fail(tk, AC_RP_HOOK, r0, "a Function's backward failed"); \
        if (rc == 2) return sec_fail(tk, AC_RP_NEEDS_RULE, r0,                 \
                                     "a Function needs a second-order rule"); \
        swept = true;                                                          \
    } while (0)
    if (nl > 0 && s->v_on != NULL) {
        double *v = tk->vlanes;        /* the block's tangents */
        for (k = 0; k < n; ++k) {
            int32_t c = tk->column[k];
            if (!s->v_on[k]) continue;
            for (w = 0; w < nl; ++w)
                v[SEC_LANES(k) + w] = s->batched != NULL && s->batched[k]
                                      ? s->v_cols[c][(r0 + w) * s->v_stride[c]] : s->v_shared[c];
        }
        sec_tangents(tk, s->v_on, v, -1);
        SEC_REVERSE(false);
        for (w = 0; w < nl; ++w)
            for (k = 0; k < n; ++k) {
                double hv = tk->adj_dot[SEC_LANES(k) + w];
                if (s->hvp_rows) s->hvp_rows[(r0 + w) * n + k] = hv;
                tk->hvp_sum[k] += hv;
            }
    }
    if (nl > 0 && nh > 0) {
        double *h = tk->hess_rows;      /* entry e of the block's Hessians at e * W */
        size_t hs = (size_t)nh * nh;
        sec_tangents(tk, NULL, NULL, -1);       /* the adjoints once (first order) */
        SEC_REVERSE(false);
        for (j = 0; j < nh; ++j) {              /* then per input only their tangents */
            if (sec_poll(tk, r0, 2)) return 1;
            sec_tangents(tk, NULL, NULL, tk->h_index[j]);
            SEC_REVERSE(true);
            for (k = 0; k < nh; ++k)
                memcpy(h + SEC_LANES(j * nh + k), tk->adj_dot + SEC_LANES(tk->h_index[k]),
                       (size_t)nl * sizeof *h);
        }
        sec_symmetrise_lanes(h, nh, W, nl);
        for (size_t e = 0; e < hs; ++e) {
            const double *he = h + SEC_LANES(e);
            double acc = tk->hess_sum[e];
            for (w = 0; w < nl; ++w) acc += he[w];      /* row order, as row by row */
            tk->hess_sum[e] = acc;
            if (s->hess_rows)
                for (w = 0; w < nl; ++w) s->hess_rows[(r0 + w) * hs + e] = he[w];
        }
    }
    if (nl > 0 && (s->grad_rows != NULL || s->grad_sum != NULL)) {
        if (!swept) {
            sec_tangents(tk, NULL, NULL, -1);   /* nothing on: first order */
            SEC_REVERSE(false);
        }
        for (w = 0; w < nl; ++w)
            for (k = 0; k < n; ++k) {
                double gk = tk->adj[SEC_LANES(k) + w];
                if (s->grad_rows) s->grad_rows[(r0 + w) * n + k] = gk;
                tk->grad_sum[k] += gk;
            }
    }
#undef SEC_REVERSE
    if (fwd_code == AC_RP_HOOK) return sec_fail(tk, AC_RP_HOOK, r0 + nl, "a Function's forward failed");
    if (fwd_code == AC_RP_GUARD)
        return sec_fail(tk, AC_RP_GUARD, r0 + nl, "a guard recorded while tracing flipped");
    return sec_poll(tk, r0, 1 + (s->v_on != NULL) * 3 + (nh > 0) * 3);
}
#undef SEC_LANES

static void sec_task_run(void *arg)
{
    sec_task *tk = (sec_task *)arg;
    for (int64_t r = tk->row0; r < tk->row1; r += tk->W) {
        if (tk->index > __atomic_load_n(tk->stop_below, __ATOMIC_RELAXED)) {
            tk->st.code = RP_STOPPED;
            return;
        }
        int32_t count = tk->row1 - r < tk->W ? (int32_t)(tk->row1 - r) : tk->W;
        if (sec_block(tk, r, count) != 0) return;
    }
}

/* ---- the call ------------------------------------------------------------ */

static void sec_fill_nan(const ac_program *p, const ac_second *s, int32_t nh)
{
    int64_t B = s->rows, n = p->n_inputs;
    rp_fill_nan(s->y, B * p->n_outputs);
    rp_fill_nan(s->y_sum, p->n_outputs);
    rp_fill_nan(s->grad_rows, B * n);
    rp_fill_nan(s->grad_sum, n);
    rp_fill_nan(s->hvp_rows, B * n);
    rp_fill_nan(s->hvp_sum, n);
    rp_fill_nan(s->hess_rows, B * nh * nh);
    rp_fill_nan(s->hess_sum, (int64_t)nh * nh);
}

int ac_eval_second(const ac_program *p, const ac_second *s, const ac_hooks *hooks, ac_status *st)
{
    int32_t n = p->n_inputs, m = p->n_outputs, nh = 0, k, nb = 0, ns = 0, W;
    int32_t *column = NULL, *h_index = NULL, *first_use = NULL, i;
    uint8_t *from = NULL;
    sec_task *tasks = NULL;
    int nth, t, owned, stop_below, code = AC_RP_OK;
    int64_t chunk;
    size_t doubles, bytes;

    rp_status_ok(st);
    if (s->rows < 0 || m < 1)
        return rp_fail(st, AC_RP_INVALID, -1, "rows must be >= 0 and the program needs an output");
    if (p->n_custom > 0 && (hooks == NULL || hooks->forward == NULL || hooks->backward == NULL))
        return rp_fail(st, AC_RP_INVALID, -1, "the program calls Functions but no hooks were given");
    column = (int32_t *)malloc(((size_t)n + 1) * sizeof *column);
    h_index = (int32_t *)malloc(((size_t)n + 1) * sizeof *h_index);
    from = (uint8_t *)malloc((size_t)n + 1);
    first_use = (int32_t *)malloc(((size_t)n + 1) * sizeof *first_use);
    if (!column || !h_index || !from || !first_use) goto nomem;
    for (k = 0; k < n; ++k) first_use[k] = p->n_instr;
    for (i = p->n_instr - 1; i >= 0; --i) {
        if (rp_is_nary(p->op[i])) {
            for (int32_t q = 0; q < p->b[i]; ++q)
                if (p->args[p->a[i] + q] < n) first_use[p->args[p->a[i] + q]] = i;
        } else {
            if (p->a[i] < n) first_use[p->a[i]] = i;
            if (rp_is_binary(p->op[i]) && p->b[i] < n) first_use[p->b[i]] = i;
        }
    }
    for (k = 0; k < n; ++k) {
        column[k] = s->batched != NULL && s->batched[k] ? nb++ : ns++;
        if (s->h_on != NULL && s->h_on[k]) h_index[nh++] = k;
        /* what the results are with respect to: every input, or the Hessian's */
        from[k] = (uint8_t)(s->v_on != NULL || s->grad_rows != NULL || s->grad_sum != NULL
                            || (s->h_on != NULL && s->h_on[k]));
    }
    nth = s->nthreads > 1 ? s->nthreads : 1;
    if (nth > s->rows) nth = s->rows > 0 ? (int)s->rows : 1;
    chunk = (s->rows + nth - 1) / nth;
    tasks = (sec_task *)calloc((size_t)nth, sizeof *tasks);
    if (!tasks) goto nomem;
    /* lanes: one if the program calls Functions (their hooks take one row),
     * else as many as the buffers' budget allows (a large program or
     * Hessian gets fewer; results do not depend on it) */
    W = SEC_MAX_LANES;
    if (p->n_custom > 0) W = 1;
    while (W > 1 && ((int64_t)W * p->n_slots > SEC_LANE_BUDGET
                     || (int64_t)W * ((int64_t)nh * nh + n) > SEC_LANE_BUDGET))
        W /= 2;
    doubles = (4 * (size_t)W + 1) * (size_t)p->n_slots + 2 * (size_t)rp_max_custom_arity(p) + 2
              + (size_t)m + 2 * (size_t)n + (size_t)nh * nh + (size_t)W * ((size_t)nh * nh + n);
    bytes = doubles * sizeof(double) + 3 * (size_t)p->n_slots + 8;
    stop_below = nth;
    for (t = 0; t < nth; ++t) {
        sec_task *tk = &tasks[t];
        double *d;
        uint8_t *u;
        tk->block = calloc(1, bytes);
        if (!tk->block) goto nomem;
        d = (double *)tk->block;
        tk->val = d; d += (size_t)W * p->n_slots;
        tk->dot = d; d += (size_t)W * p->n_slots;
        tk->adj = d; d += (size_t)W * p->n_slots;
        tk->adj_dot = d; d += (size_t)W * p->n_slots;
        tk->rowval = d; d += p->n_slots;
        tk->scratch = d; d += 2 * (size_t)rp_max_custom_arity(p) + 2;
        tk->y_sum = d; d += m;
        tk->grad_sum = d; d += n;
        tk->hvp_sum = d; d += n;
        tk->hess_sum = d; d += (size_t)nh * nh;
        tk->hess_rows = d; d += (size_t)W * nh * nh;
        tk->vlanes = d; d += (size_t)W * n;
        u = (uint8_t *)d;
        tk->on = u; u += p->n_slots;
        tk->state = u; u += p->n_slots;
        tk->active = u;
        memcpy(tk->rowval + n, p->consts, (size_t)p->n_consts * sizeof(double));
        for (k = 0; k < p->n_consts; ++k)       /* the constants' lanes (W > 1) */
            for (int32_t w = 0; w < W; ++w) tk->val[(size_t)(n + k) * W + w] = p->consts[k];
        tk->W = W;
        rp_activity(p, from, tk->active);
        tk->p = p;
        tk->s = s;
        tk->hooks = hooks;
        tk->column = column;
        tk->nh = nh;
        tk->h_index = h_index;
        tk->first_use = first_use;
        tk->stop_below = &stop_below;
        tk->index = t;
        tk->owned_poll = t == 0;
        tk->row0 = t * chunk < s->rows ? t * chunk : s->rows;
        tk->row1 = (t + 1) * chunk < s->rows ? (t + 1) * chunk : s->rows;
        rp_status_ok(&tk->st);
    }
    owned = rp_pool_acquire();
    rp_parallel(sec_task_run, tasks, sizeof *tasks, nth, owned);
    if (owned) rp_pool_release();
    for (t = 0; t < nth; ++t)
        if (tasks[t].st.code != AC_RP_OK && tasks[t].st.code != RP_STOPPED) {
            *st = tasks[t].st;      /* tasks hold ascending rows: the first failure is the earliest */
            code = st->code;
            sec_fill_nan(p, s, nh);
            goto done;
        }
    /* the sums, in task order */
#define SEC_SUM(out, field, count)                                             \
    if (s->out)                                                                \
        for (k = 0; k < (count); ++k) {                                        \
            double acc = 0.0;                                                  \
            for (t = 0; t < nth; ++t) acc += tasks[t].field[k];                \
            s->out[k] = acc;                                                   \
        }
    SEC_SUM(y_sum, y_sum, m)
    SEC_SUM(grad_sum, grad_sum, n)
    SEC_SUM(hvp_sum, hvp_sum, n)
    SEC_SUM(hess_sum, hess_sum, nh * nh)
#undef SEC_SUM
    goto done;
nomem:
    code = rp_fail(st, AC_RP_NOMEM, -1, "out of memory for a second-order replay");
    sec_fill_nan(p, s, nh);
done:
    if (tasks)
        for (t = 0; t < nth; ++t) free(tasks[t].block);
    free(tasks);
    free(column);
    free(h_index);
    free(first_use);
    free(from);
    return code;
}
