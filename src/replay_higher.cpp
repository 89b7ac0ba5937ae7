/* replay_higher.cpp -- second order on a compiled program: ac_eval_second.
 *
 * Hessian-vector products and dense Hessians of a program's first output,
 * one row or many (some inputs per row, some shared), on threads, by the
 * forward-over-reverse pattern of src/higher.cpp over the program's slots
 * instead of the tape: per row a forward pass (values, rp_forward1, the
 * same code as ac_eval), the guards, then per direction a tangent pass and
 * a reverse pass whose adjoints are dual numbers.  Every opcode's rules
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
#include "higher_numbers.h"
extern "C" {
#include "replay_block.h"
}

#define SEC_REACHED 1         /* the slot's adjoint is defined */
#define SEC_DOT 2             /* and has a tangent */

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
    int64_t row0, row1;
    /* buffers (one block) */
    double *val, *dot, *adj, *adj_dot, *scratch;
    uint8_t *on, *state, *active;
    double *y_sum, *grad_sum, *hvp_sum, *hess_sum, *hess_row;
    void *block;
    int64_t since_poll;
    ac_status st;
};

/* ---- touch: a contribution to a slot's adjoint ------------------------- */

struct sec_ctx {
    double *adj, *adj_dot;
    uint8_t *state;
    bool only_dot;            /* the adjoints are known (a first-order pass): add tangents only */
};

/* The first contribution to a slot sets its adjoint, later ones add
 * (inputs start reached at 0, so theirs add from 0 as the tape's leaves). */
static HI_INLINE void touch(sec_ctx &c, uint32_t r, double v)
{
    if (c.only_dot) return;
    if (c.state[r] & SEC_REACHED) {
        c.adj[r] += v;
    } else {
        c.state[r] = SEC_REACHED;
        c.adj[r] = v;
    }
}

static HI_INLINE void touch(sec_ctx &c, uint32_t r, dual v)
{
    uint8_t st = c.state[r];
    if (c.only_dot) {
        c.adj_dot[r] = (st & SEC_DOT) ? c.adj_dot[r] + v.d : v.d;
        c.state[r] = st | SEC_DOT;
        return;
    }
    if (!(st & SEC_REACHED)) {
        c.adj[r] = v.v;
        c.adj_dot[r] = v.d;
    } else if (!(st & SEC_DOT)) {
        c.adj[r] += v.v;
        c.adj_dot[r] = v.d;
    } else {
        c.adj[r] += v.v;
        c.adj_dot[r] += v.d;
    }
    c.state[r] = SEC_REACHED | SEC_DOT;
}

/* ---- the passes of one row ---------------------------------------------- */

/* Tangents of every slot: inputs with want[k] get v[k] (want NULL: only
 * input `only`, tangent 1; none for -1); the others and the constants are off.  A custom
 * instruction with an operand on is on, with an unknown tangent (nan): the
 * reverse pass refuses it if the output reaches it. */
static void sec_tangents(sec_task *tk, const uint8_t *want, const double *v, int32_t only)
{
    const ac_program *p = tk->p;
    int32_t n = p->n_inputs, base = n + p->n_consts, i, k;
    int32_t from = want == NULL && only >= 0 ? tk->first_use[only] : 0;   /* nothing below has one */
    const double *val = tk->val;
    double *dot = tk->dot;
    uint8_t *on = tk->on;
    for (k = 0; k < n; ++k) {
        on[k] = (uint8_t)(want != NULL ? want[k] != 0 : k == only);
        if (on[k]) dot[k] = want != NULL ? v[k] : 1.0;
    }
    memset(on + n, 0, (size_t)p->n_consts + (size_t)from);
    for (i = from; i < p->n_instr; ++i) {
        int32_t a = p->a[i], b = p->b[i], s = base + i;
        int op = p->op[i];
        double d = 0.0, y = val[s];
        bool o = false;
        if (op >= RP_FIRST_BINARY) {
            bool xon = on[a] != 0, zon = on[b] != 0;
            if (xon) d = binary_rule_x(op, dot[a], val[a], val[b], y);
            if (zon) d = xon ? d + binary_rule_z(op, dot[b], val[a], val[b], y)
                             : binary_rule_z(op, dot[b], val[a], val[b], y);
            o = xon || zon;
        } else if (op >= RP_FIRST_CONST) {
            if ((o = on[a] != 0)) d = const_rule(op, dot[a], val[a], val[b], y);
        } else if (op >= RP_FIRST_UNARY) {
            if ((o = on[a] != 0)) d = unary_rule(op, dot[a], val[a], y);
        } else if (op == AC_SUM) {
            const int32_t *r = p->args + a;
            for (k = 0; k < b; ++k)
                if (on[r[k]]) {
                    d = o ? d + dot[r[k]] : dot[r[k]];
                    o = true;
                }
        } else if (op == AC_DOT) {      /* pairs (x_k, z_k): x_k' z_k + x_k z_k' */
            const int32_t *r = p->args + a;
            for (k = 0; k + 1 < b; k += 2) {
                if (on[r[k]]) {
                    double term = dot[r[k]] * val[r[k + 1]];
                    d = o ? d + term : term;
                    o = true;
                }
                if (on[r[k + 1]]) {
                    double term = dot[r[k + 1]] * val[r[k]];
                    d = o ? d + term : term;
                    o = true;
                }
            }
        } else {                        /* AC_CUSTOM: no jvp hook */
            const int32_t *r = p->args + a;
            for (k = 0; k < b && !o; ++k) o = on[r[k]] != 0;
            d = NAN;
        }
        on[s] = (uint8_t)o;
        if (o) dot[s] = d;
    }
}

/* x as the number type its tangent calls for */
#define SEC_ARG(sl) dual(val[sl], dot[sl])

/* Instruction i's contributions with adjoint g (double, or dual when it
 * has a tangent). */
template <class G>
static HI_INLINE void sec_step(const ac_program *p, sec_ctx &c, const double *val, const double *dot,
                               const uint8_t *on, int32_t i, int32_t s, G g)
{
    int op = p->op[i];
    uint32_t a = (uint32_t)p->a[i], b = (uint32_t)p->b[i];
    if (op >= RP_FIRST_BINARY) {
        bool xon = on[a] != 0, zon = on[b] != 0;
        if (xon && zon)
            binary_contrib<sec_ctx, G, dual, dual>(c, op, g, SEC_ARG(a), SEC_ARG(b), SEC_ARG(s), a, b);
        else if (xon)
            binary_contrib<sec_ctx, G, dual, double>(c, op, g, SEC_ARG(a), val[b], SEC_ARG(s), a, b);
        else if (zon)
            binary_contrib<sec_ctx, G, double, dual>(c, op, g, val[a], SEC_ARG(b), SEC_ARG(s), a, b);
        else
            binary_contrib<sec_ctx, G, double, double>(c, op, g, val[a], val[b], val[s], a, b);
    } else if (op >= RP_FIRST_CONST) {
        if (on[a]) const_contrib<sec_ctx, G, dual>(c, op, g, SEC_ARG(a), val[b], SEC_ARG(s), a);
        else const_contrib<sec_ctx, G, double>(c, op, g, val[a], val[b], val[s], a);
    } else if (op >= RP_FIRST_UNARY) {
        if (on[a]) unary_contrib<sec_ctx, G, dual>(c, op, g, SEC_ARG(a), SEC_ARG(s), a);
        else unary_contrib<sec_ctx, G, double>(c, op, g, val[a], val[s], a);
    } else if (op == AC_SUM) {
        const int32_t *r = p->args + a;
        for (uint32_t k = 0; k < b; ++k) touch(c, (uint32_t)r[k], g);
    } else {                            /* AC_DOT: d/dx_k = z_k, d/dz_k = x_k */
        const int32_t *r = p->args + a;
        for (uint32_t k = 0; k + 1 < b; k += 2) {
            uint32_t rx = (uint32_t)r[k], rz = (uint32_t)r[k + 1];
            if (on[rz]) touch(c, rx, g * SEC_ARG(rz));
            else touch(c, rx, g * val[rz]);
            if (on[rx]) touch(c, rz, g * SEC_ARG(rx));
            else touch(c, rz, g * val[rx]);
        }
    }
}

/* Adjoints (and their tangents) of output 0 after sec_tangents: the
 * inputs' adjoints are the gradient, their tangents H v.  only_dot: the
 * adjoints are those of a previous pass (first order, the same seed) and
 * only their tangents are swept, through the slots that have or receive
 * one (a Hessian's columns after the first cost what depends on their
 * input, as ag.hessian's tangents_only).  0, 1 if a hook failed, 2 if a
 * custom instruction needs a second-order rule (st->custom set either way). */
static int sec_reverse(sec_task *tk, bool only_dot)
{
    const ac_program *p = tk->p;
    int32_t n = p->n_inputs, base = n + p->n_consts, out = p->outputs[0], i, k;
    sec_ctx c = {tk->adj, tk->adj_dot, tk->state, only_dot};
    if (only_dot) {
        for (i = 0; i < p->n_slots; ++i) tk->state[i] &= (uint8_t)~SEC_DOT;
    } else {
        memset(tk->state, 0, (size_t)p->n_slots);
    }
    for (k = 0; k < n; ++k) {
        tk->state[k] = SEC_REACHED | SEC_DOT;
        if (!only_dot) tk->adj[k] = 0.0;
        tk->adj_dot[k] = 0.0;
    }
    if (out < n) {
        tk->adj[out] = 1.0;         /* the output is an input itself */
        return 0;
    }
    if (out < base) return 0;       /* a constant */
    if (!only_dot) {
        tk->state[out] = SEC_REACHED;
        tk->adj[out] = 1.0;
    }
    for (i = out - base; i >= 0; --i) {
        int32_t s = base + i;
        uint8_t st = tk->state[s];
        if (!(st & SEC_REACHED) || !tk->active[i]) continue;
        if (only_dot && !(st & SEC_DOT) && !tk->on[s]) continue;   /* adds no tangent */
        if (p->op[i] == AC_CUSTOM) {
            const int32_t *r = p->args + p->a[i];
            int32_t b = p->b[i];
            double g = tk->adj[s];
            tk->st.custom = rp_custom_id(p, i);
            if (tk->on[s] || (st & SEC_DOT)) return 2;
            if (only_dot) continue;     /* its first-order part is known */
            if (g == 0.0) {
                for (k = 0; k < b; ++k) touch(c, (uint32_t)r[k], 0.0);
                continue;
            }
            for (k = 0; k < b; ++k) tk->scratch[k] = tk->val[r[k]];
            if (tk->hooks->backward(tk->hooks->ctx, tk->st.custom, tk->scratch, b, tk->val[s], g,
                                    tk->scratch + b) != 0)
                return 1;
            for (k = 0; k < b; ++k) touch(c, (uint32_t)r[k], tk->scratch[b + k]);
            continue;
        }
        if (st & SEC_DOT)
            sec_step(p, c, tk->val, tk->dot, tk->on, i, s, dual(tk->adj[s], tk->adj_dot[s]));
        else
            sec_step(p, c, tk->val, tk->dot, tk->on, i, s, tk->adj[s]);
    }
    return 0;
}

/* h[j, k] and h[k, j] both become their mean: symmetric to the last bit
 * (as ag.hessian's _symmetrise). */
static void sec_symmetrise(double *h, int32_t n)
{
    for (int32_t j = 0; j < n; ++j)
        for (int32_t k = j + 1; k < n; ++k) {
            double a = h[j * n + k], b = h[k * n + j];
            if (a != b) {
                a = 0.5 * a + 0.5 * b;
                h[j * n + k] = a;
                h[k * n + j] = a;
            }
        }
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
 * AC_REPLAY_POLL_EVERY instruction-passes, within a row too: a Hessian of
 * a large program is long).  Nonzero: interrupted, every task stops. */
static int sec_poll(sec_task *tk, int64_t r, int64_t passes)
{
    tk->since_poll += passes * (int64_t)tk->p->n_instr;
    if (!tk->owned_poll || tk->since_poll < AC_REPLAY_POLL_EVERY) return 0;
    tk->since_poll = 0;
    if (!rp_poll(tk->hooks)) return 0;
    return sec_fail(tk, AC_RP_INTERRUPTED, r, "interrupted");
}

/* One row: values, guards, then the wanted products. */
static int sec_row(sec_task *tk, int64_t r)
{
    const ac_program *p = tk->p;
    const ac_second *s = tk->s;
    int32_t n = p->n_inputs, m = p->n_outputs, base = n + p->n_consts, nh = tk->nh, i, j, k;
    double *val = tk->val;
    bool swept = false;
    int rc;
    for (k = 0; k < n; ++k) {
        int32_t c = tk->column[k];
        val[k] = s->batched != NULL && s->batched[k] ? s->x_cols[c][r * s->x_stride[c]] : s->shared[c];
    }
    for (i = 0; i < p->n_instr; ++i)
        if (RP_UNLIKELY(rp_forward1(p, val, i, base, tk->hooks, tk->scratch))) {
            tk->st.custom = rp_custom_id(p, i);
            return sec_fail(tk, AC_RP_HOOK, r, "a Function's forward failed");
        }
    for (k = 0; k < p->n_guards; ++k)
        if (rp_guard_holds(p->guard_kind[k], val[p->guard_a[k]], val[p->guard_b[k]]) != p->guard_expected[k]) {
            tk->st.guard = p->guard_index[k];
            return sec_fail(tk, AC_RP_GUARD, r, "a guard recorded while tracing flipped");
        }
    for (j = 0; j < m; ++j) {
        if (s->y) s->y[r * m + j] = val[p->outputs[j]];
        tk->y_sum[j] += val[p->outputs[j]];
    }
#define SEC_REVERSE(only_dot)                                                  \
    do {                                                                       \
        rc = sec_reverse(tk, only_dot);                                        \
        if (rc == 1) return sec_fail(tk, AC_RP_HOOK, r, "a Function's backward failed"); \
        if (rc == 2) return sec_fail(tk, AC_RP_NEEDS_RULE, r,                  \
                                     "a Function needs a second-order rule"); \
        swept = true;                                                          \
    } while (0)
    if (s->v_on != NULL) {
        double *v = tk->hess_row;       /* the row's tangents, before the Hessian uses it */
        for (k = 0; k < n; ++k) {
            int32_t c = tk->column[k];
            if (s->v_on[k])
                v[k] = s->batched != NULL && s->batched[k] ? s->v_cols[c][r * s->v_stride[c]] : s->v_shared[c];
        }
        sec_tangents(tk, s->v_on, v, -1);
        SEC_REVERSE(false);
        for (k = 0; k < n; ++k) {
            if (s->hvp_rows) s->hvp_rows[r * n + k] = tk->adj_dot[k];
            tk->hvp_sum[k] += tk->adj_dot[k];
        }
    }
    if (nh > 0) {
        double *h = tk->hess_row;
        sec_tangents(tk, NULL, NULL, -1);       /* the adjoints once (first order) */
        SEC_REVERSE(false);
        for (j = 0; j < nh; ++j) {              /* then per input only their tangents */
            if (sec_poll(tk, r, 2)) return 1;
            sec_tangents(tk, NULL, NULL, tk->h_index[j]);
            SEC_REVERSE(true);
            for (k = 0; k < nh; ++k) h[j * nh + k] = tk->adj_dot[tk->h_index[k]];
        }
        sec_symmetrise(h, nh);
        if (s->hess_rows) memcpy(s->hess_rows + r * nh * nh, h, (size_t)nh * nh * sizeof *h);
        for (k = 0; k < nh * nh; ++k) tk->hess_sum[k] += h[k];
    }
    if (s->grad_rows != NULL || s->grad_sum != NULL) {
        if (!swept) {
            sec_tangents(tk, NULL, NULL, -1);   /* nothing on: first order */
            SEC_REVERSE(false);
        }
        for (k = 0; k < n; ++k) {
            if (s->grad_rows) s->grad_rows[r * n + k] = tk->adj[k];
            tk->grad_sum[k] += tk->adj[k];
        }
    }
#undef SEC_REVERSE
    return sec_poll(tk, r, 1 + (s->v_on != NULL) * 3 + (nh > 0) * 3);
}

static void sec_task_run(void *arg)
{
    sec_task *tk = (sec_task *)arg;
    for (int64_t r = tk->row0; r < tk->row1; ++r) {
        if (tk->index > __atomic_load_n(tk->stop_below, __ATOMIC_RELAXED)) {
            tk->st.code = RP_STOPPED;
            return;
        }
        if (sec_row(tk, r) != 0) return;
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
    int32_t n = p->n_inputs, m = p->n_outputs, nh = 0, k, nb = 0, ns = 0;
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
    doubles = 4 * (size_t)p->n_slots + 2 * (size_t)rp_max_custom_arity(p) + 2
              + (size_t)m + 2 * (size_t)n + 2 * (size_t)nh * nh + (size_t)n;
    bytes = doubles * sizeof(double) + 3 * (size_t)p->n_slots + 8;
    stop_below = nth;
    for (t = 0; t < nth; ++t) {
        sec_task *tk = &tasks[t];
        double *d;
        uint8_t *u;
        tk->block = calloc(1, bytes);
        if (!tk->block) goto nomem;
        d = (double *)tk->block;
        tk->val = d; d += p->n_slots;
        tk->dot = d; d += p->n_slots;
        tk->adj = d; d += p->n_slots;
        tk->adj_dot = d; d += p->n_slots;
        tk->scratch = d; d += 2 * (size_t)rp_max_custom_arity(p) + 2;
        tk->y_sum = d; d += m;
        tk->grad_sum = d; d += n;
        tk->hvp_sum = d; d += n;
        tk->hess_sum = d; d += (size_t)nh * nh;
        tk->hess_row = d; d += (size_t)nh * nh + n;
        u = (uint8_t *)d;
        tk->on = u; u += p->n_slots;
        tk->state = u; u += p->n_slots;
        tk->active = u;
        memcpy(tk->val + n, p->consts, (size_t)p->n_consts * sizeof(double));
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
