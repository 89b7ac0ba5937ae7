/* test_replay.c -- the replay engine (src/replay*.c) against the tape's own sweep.
 *
 * Tapes are recorded by hand (tape_build.h), in the narrow layout and in the
 * wide one (tb_widen_at), and each compiled program is replayed and
 * compared with the tape: forward values with t->val, and Jacobians with
 * ac_sweep (src/tape_sweep.c), which follows PyTorch.
 *   passes off: bit-identical (all NaNs equal; see same_grad for the one
 *               documented exception, the sign of a zero after the tape's
 *               exact fallback sweep);
 *   passes on:  values bit-identical, gradients within TOL_REL of the
 *               sum of the terms' magnitudes (CSE and the hoisted summed
 *               reverse change the order of additions; see close_enough);
 *   batched:    per-row values and gradients bit-identical to ac_eval, for
 *               any block size and thread count; summed gradients within
 *               TOL_REL of the sum of the rows' Jacobians.
 * Run by tests/test_replay_c.py; by hand:
 *   cc -O2 -ffp-contract=off -Isrc -Itests/c tests/c/test_replay.c src/tape*.c src/replay*.c \
 *      -lm -pthread -o /tmp/test_replay
 *   /tmp/test_replay [graphs]      (random graphs, default 3000)
 */
#define _POSIX_C_SOURCE 200809L    /* fork, waitpid, pthreads */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "replay.h"
#include "tape_build.h"
#if !defined(_WIN32)
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#define TOL_REL 1e-12

static int failures, checks;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        ++checks;                                                               \
        if (!(cond)) {                                                          \
            if (failures++ < 40) {                                              \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
                fprintf(stderr, __VA_ARGS__);                                   \
                fputc('\n', stderr);                                            \
            }                                                                   \
        }                                                                       \
    } while (0)

static int same_bits(double a, double b)
{
    if (a != a && b != b) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* The tape's exact fallback sweep (taken when a zero adjoint meets an inf
 * or nan local derivative somewhere in range) initialises an adjoint with
 * its first contribution, where the fast sweep and the replay add it to
 * 0.0: the two differ only when every contribution is -0.0. */
static int same_grad(double a, double b, int tape_exact)
{
    if (tape_exact && a == 0.0 && b == 0.0) return 1;
    return same_bits(a, b);
}

static double max_rel_seen;

/* Equal up to reordered additions (and a product distributed over a sum):
 * |a - b| <= TOL_REL * (scale + |a| + |b|), where scale bounds the sum of
 * the magnitudes of the terms (abs_jacobian), so a result that cancels to
 * near 0 is judged against the terms that cancelled.  Non-finite results
 * must be non-finite on both sides (inf vs nan is allowed: 0 * inf in one
 * row's term is nan, the same term hoisted and summed first is inf). */
static int close_enough(double a, double b, double scale)
{
    double d, bound;
    if (!isfinite(a) || !isfinite(b)) return !isfinite(a) && !isfinite(b) && (a == b || a != a || b != b);
    if (!isfinite(scale)) return 1;
    d = fabs(a - b);
    bound = scale + fabs(a) + fabs(b);
    if (d > 0 && d / bound > max_rel_seen) max_rel_seen = d / bound;
    return d <= TOL_REL * bound + 1e-300;
}

/* ---- random numbers ------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static int rnd_int(int n) { return (int)(rnd() % (uint64_t)n); }
static double rnd_unit(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static const double SPECIAL[] = {0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -0.5, 3.0, -2.0, 1e300, -1e-300,
                                 INFINITY, -INFINITY, NAN, 20.5, -20.5};
#define N_SPECIAL ((int)(sizeof SPECIAL / sizeof SPECIAL[0]))

/* ---- custom Functions ---------------------------------------------------- */

/* Two test Functions: kind 0 is sum_k (k+1) sin(x_k), kind 1 the product. */
#define MAX_NODES 4096
static int custom_kind[MAX_NODES];

static double cf_value(int kind, const double *x, int n)
{
    double y = kind == 0 ? 0.0 : 1.0;
    int k;
    for (k = 0; k < n; ++k) y = kind == 0 ? y + (k + 1) * sin(x[k]) : y * x[k];
    return y;
}

static void cf_grad(int kind, const double *x, int n, double g, double *gx)
{
    int k, i;
    for (k = 0; k < n; ++k) {
        if (kind == 0) {
            gx[k] = g * ((k + 1) * cos(x[k]));
        } else {
            double p = 1.0;
            for (i = 0; i < n; ++i) if (i != k) p *= x[i];
            gx[k] = g * p;
        }
    }
}

/* ac_tape.custom_backward for the tape's own sweep */
static double tape_hook_out[256];
static const double *tape_hook(void *ctx, ac_node i, double g)
{
    ac_tape *t = ctx;
    int64_t k, m = ac_nargs(t, i);
    double x[256];
    for (k = 0; k < m; ++k) x[k] = tb_value(t, ac_arg(t, i, k));
    cf_grad(custom_kind[i], x, (int)m, g, tape_hook_out);
    return tape_hook_out;
}

static ac_ref record_custom(ac_tape *t, int kind, const ac_ref *refs, int n)
{
    double x[256];
    int k;
    for (k = 0; k < n; ++k) x[k] = tb_value(t, refs[k]);
    custom_kind[t->size] = kind;
    return tb_nary_value(t, AC_CUSTOM, refs, n, cf_value(kind, x, n));
}

typedef struct hook_ctx {
    const ac_program *p;
    int fail_at;       /* the call (1-based) that fails; 0: none */
    int calls;
    int stop_at;       /* the poll (1-based) that asks to stop; 0: never */
    int polls;
} hook_ctx;

/* The kind of custom id's Function: a program loaded from bytes has no
 * tape nodes (custom_node -1), and a corrupted one may have any ids. */
static int hook_kind(const hook_ctx *h, int32_t id)
{
    int64_t node = id >= 0 && id < h->p->n_custom ? h->p->custom_node[id] : -1;
    return node >= 0 && node < MAX_NODES ? custom_kind[node] : 0;
}

static int rp_hook_poll(void *ctx)
{
    hook_ctx *h = ctx;
    ++h->polls;
    return h->stop_at && h->polls >= h->stop_at;
}

static int rp_hook_forward(void *ctx, int32_t id, const double *x, int32_t n, double *y)
{
    hook_ctx *h = ctx;
    if (h->fail_at && ++h->calls == h->fail_at) return -1;
    *y = cf_value(hook_kind(h, id), x, n);
    return 0;
}

static int rp_hook_backward(void *ctx, int32_t id, const double *x, int32_t n, double y, double g, double *gx)
{
    hook_ctx *h = ctx;
    (void)y;
    if (h->fail_at && ++h->calls == h->fail_at) return -1;
    cf_grad(hook_kind(h, id), x, n, g, gx);
    return 0;
}

static int32_t rp_custom_index(const ac_program *p, int32_t i)
{
    int32_t k;
    for (k = 0; k < p->n_custom; ++k) if (p->custom_instr[k] == i) return k;
    return -1;
}

/* ---- references from the tape -------------------------------------------- */

/* jac[j * n + k] = d out_j / d input k with ac_sweep; exact[j]: it fell
 * back to the exact sweep. */
static void tape_jacobian(ac_tape *t, const ac_ref *outs, int m, const int32_t *leaf_input, int n,
                          double *jac, int *exact)
{
    double *adj = malloc(((size_t)t->size + 1) * sizeof *adj);
    double *ladj = malloc(((size_t)t->nleaves + 1) * sizeof *ladj);
    int j;
    t->custom_backward = tape_hook;
    t->custom_ctx = t;
    for (j = 0; j < m; ++j) {
        double *row = jac + (size_t)j * n;
        int k;
        for (k = 0; k < n; ++k) row[k] = 0.0;
        exact[j] = 0;
        if (ac_ref_is_leaf(outs[j])) {
            int32_t in = leaf_input[ac_ref_index(outs[j])];
            if (in >= 0) row[in] = 1.0;
        } else {
            ac_sweep_result r;
            int64_t e;
            int rc = ac_sweep(t, adj, ladj, outs[j], 1.0, 0, &r);
            tb_need(rc == 0, "ac_sweep");
            exact[j] = r.exact;
            for (e = r.leaf_lo; e <= r.leaf_hi; ++e) {
                int32_t in = leaf_input[e];
                if (r.exact && !(t->leaf_flags[e] & AC_LEAF_MARK)) continue;
                if (in >= 0) row[in] += ladj[e];
            }
            if (r.exact) ac_clear_marks(t, &r, outs[j]);
        }
    }
    free(adj);
    free(ladj);
}

/* The error bound's scale: absJ[k] = sum over paths from output j to input
 * k of |product of local derivatives|, at the forward values val of a
 * replay (an upper bound of the magnitudes a reordered sum adds up; a
 * reordering changes a gradient by at most ~depth * eps * absJ). */
#define ABS_ADD(dst, d) do { double t_ = gabs * fabs(d); if (t_ != t_) t_ = gabs == 0.0 ? 0.0 : INFINITY; \
                             aa[dst] += t_; } while (0)
#define ABS_UNARY(OP, NAME, F, D) case OP: { double x = val[a], y = val[s], g = 1.0; (void)x; (void)y; \
                                             ABS_ADD(a, (D)); break; }
#define ABS_CONST(OP, NAME, F, D) case OP: { double x = val[a], c = val[b], y = val[s], g = 1.0; \
                                             (void)x; (void)c; (void)y; ABS_ADD(a, (D)); break; }
#define ABS_BINARY(OP, NAME, F, DX, DZ) case OP: { double x = val[a], z = val[b], y = val[s], g = 1.0; \
                                             (void)x; (void)z; (void)y; ABS_ADD(a, (DX)); ABS_ADD(b, (DZ)); break; }

static void abs_jacobian(const ac_program *p, const double *val, int j, double *absj)
{
    int32_t base = p->n_inputs + p->n_consts, i, k;
    double *aa = calloc((size_t)p->n_slots + 1, sizeof *aa), gx[256], xs[256];
    aa[p->outputs[j]] = 1.0;
    for (i = p->rev_end[j] - 1; i >= 0; --i) {
        int32_t a = p->a[i], b = p->b[i], s = base + i;
        double gabs = aa[s];
        const int32_t *r = p->args + a;
        if (p->mask_at[j] >= 0 && !((p->masks[p->mask_at[j] + i / 64] >> (i % 64)) & 1)) continue;
        switch (p->op[i]) {
        AC_UNARY_OPS(ABS_UNARY)
        AC_CONST_OPS(ABS_CONST)
        AC_BINARY_OPS(ABS_BINARY)
        case AC_SUM: for (k = 0; k < b; ++k) ABS_ADD(r[k], 1.0); break;
        case AC_DOT: for (k = 0; k + 1 < b; k += 2) { ABS_ADD(r[k], val[r[k + 1]]); ABS_ADD(r[k + 1], val[r[k]]); } break;
        case AC_CUSTOM:
            for (k = 0; k < b; ++k) xs[k] = val[r[k]];
            cf_grad(custom_kind[p->custom_node[rp_custom_index(p, i)]], xs, b, 1.0, gx);
            for (k = 0; k < b; ++k) ABS_ADD(r[k], gx[k]);
            break;
        }
    }
    for (k = 0; k < p->n_inputs; ++k) absj[k] = aa[k];
    free(aa);
}

/* ---- a compiled graph under test ------------------------------------------ */

typedef struct graph {
    ac_tape t;
    ac_ref outs[16];
    int m;
    int32_t leaf_input[256];
    int n;                      /* inputs */
    ac_guard guards[8];
    int ng;
} graph;

static void graph_init(graph *g)
{
    memset(g, 0, sizeof *g);
    ac_tape_init(&g->t);
    memset(custom_kind, 0, sizeof custom_kind);
}

/* a leaf that is input position n (or a constant if input == 0) */
static ac_ref graph_leaf(graph *g, double v, int input)
{
    ac_ref r = tb_leaf(&g->t, v);
    g->leaf_input[ac_ref_index(r)] = input ? g->n++ : -1;
    return r;
}

/* the inputs at their recorded values */
static void recorded_inputs(const graph *g, double *x)
{
    int64_t e;
    for (e = 0; e < g->t.nleaves; ++e)
        if (g->leaf_input[e] >= 0) x[g->leaf_input[e]] = g->t.leaf_val[e];
}

static int compile(graph *g, unsigned passes, ac_program *p, ac_compile_stats *stats)
{
    ac_status st;
    int rc = ac_compile(&g->t, g->outs, g->m, g->leaf_input, g->n, g->guards, g->ng, passes, p, stats, &st);
    CHECK(rc == 0, "ac_compile: %d %s (index %lld)", rc, st.what, (long long)st.index);
    return rc;
}

/* Replay at the recorded inputs vs the tape, passes off and on. */
static void check_against_tape(graph *g, const char *what)
{
    int m = g->m, n = g->n, j, k, pass;
    double x[256], y[16], *jac = malloc(sizeof(double) * (size_t)(m * n + 1));
    double *ref = malloc(sizeof(double) * (size_t)(m * n + 1));
    double *absj = malloc(sizeof(double) * (size_t)(m * n + 1));
    int exact[16];
    hook_ctx hc = {0};
    ac_hooks hooks = {rp_hook_forward, rp_hook_backward, rp_hook_poll, &hc};

    recorded_inputs(g, x);
    tape_jacobian(&g->t, g->outs, m, g->leaf_input, n, ref, exact);
    for (pass = 0; pass < 2; ++pass) {
        ac_program p;
        ac_workspace ws;
        ac_status st;
        int rc;
        if (compile(g, pass ? AC_PASS_ALL : 0, &p, NULL)) continue;
        hc.p = &p;
        tb_need(ac_workspace_init(&ws, &p) == 0, "workspace");
        rc = ac_eval(&p, &ws, &hooks, x, y, jac, &st);
        CHECK(rc == 0, "%s: ac_eval %d %s", what, rc, st.what);
        for (j = 0; j < m; ++j) {
            double want = tb_value(&g->t, g->outs[j]);
            CHECK(same_bits(y[j], want), "%s (passes %d): output %d is %.17g, the tape says %.17g",
                  what, pass, j, y[j], want);
            for (k = 0; k < n; ++k) {
                double a = jac[j * n + k], b = ref[j * n + k];
                if (pass == 0)
                    CHECK(same_grad(a, b, exact[j]), "%s: d out%d / d in%d is %.17g, ac_sweep says %.17g",
                          what, j, k, a, b);
                else
                    CHECK(close_enough(a, b, absj[j * n + k]),
                          "%s (passes on): d out%d / d in%d is %.17g, ac_sweep says %.17g", what, j, k, a, b);
            }
            if (pass == 0) abs_jacobian(&p, ws.val, j, absj + j * n);
        }
        ac_workspace_free(&ws);
        ac_program_free(&p);
    }
    free(jac);
    free(ref);
    free(absj);
}

/* ---- every opcode on a grid of values ------------------------------------- */

static void test_every_opcode(void)
{
    static const double V[] = {0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 0.5, 1e300, -1e-300, INFINITY,
                               -INFINITY, NAN, 20.5, -20.5, 1e-8};
    static const double C[] = {0.0, -0.0, 1.0, 2.0, 0.5, 3.0, -1.0, -2.0, -0.5, 2.5, INFINITY, NAN, -INFINITY};
    int nv = (int)(sizeof V / sizeof V[0]), nc = (int)(sizeof C / sizeof C[0]), op, i, k;
    char what[64];
    graph *g = malloc(sizeof *g);

    for (op = AC_NEG; op < AC_NUM_OPS; ++op) {
        int groups = op < AC_ADDC ? 1 : op < AC_ADD ? nc : nv;
        for (k = 0; k < groups; ++k) {
            graph_init(g);
            for (i = 0; i < nv && g->m < 16; ++i) {
                ac_ref x = graph_leaf(g, V[i], 1), y;
                if (op < AC_ADDC) y = tb_unary(&g->t, op, x);
                else if (op < AC_ADD) y = tb_constop(&g->t, op, x, C[k]);
                else y = tb_binary(&g->t, op, x, i % 3 == 0 ? x : graph_leaf(g, V[k], 1));
                /* a second use of x and a node operand */
                g->outs[g->m++] = tb_binary(&g->t, AC_MUL, y, x);
            }
            snprintf(what, sizeof what, "%s #%d", ac_op_name(op), k);
            check_against_tape(g, what);
            ac_tape_free(&g->t);
        }
    }
    free(g);
}

/* ---- n-ary nodes, constants, shared subexpressions ----------------------- */

static void test_nary_and_sharing(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, y, z, c, s, d, refs[16], e1, e2;
    int v;
    for (v = 0; v < N_SPECIAL; ++v) {
        graph_init(g);
        x = graph_leaf(g, 1.5, 1);
        y = graph_leaf(g, SPECIAL[v], 1);
        z = graph_leaf(g, -0.25, 0);            /* not an input: a constant */
        c = tb_cref(&g->t, 2.0);
        refs[0] = x; refs[1] = c; refs[2] = y; refs[3] = tb_cref(&g->t, -0.0); refs[4] = x; refs[5] = z;
        s = tb_nary(&g->t, AC_SUM, refs, 6);
        refs[0] = x; refs[1] = c; refs[2] = c; refs[3] = y; refs[4] = x; refs[5] = y;
        refs[6] = c; refs[7] = c; refs[8] = x; refs[9] = x; refs[10] = s; refs[11] = z;
        d = tb_nary(&g->t, AC_DOT, refs, 12);
        e1 = tb_binary(&g->t, AC_MUL, s, d);     /* shared: e1 twice */
        e2 = tb_binary(&g->t, AC_MUL, s, d);     /* a duplicate for CSE */
        g->outs[g->m++] = tb_binary(&g->t, AC_ADD, tb_binary(&g->t, AC_ADD, e1, e1), e2);
        g->outs[g->m++] = d;
        g->outs[g->m++] = y;                    /* an input as an output */
        g->outs[g->m++] = z;                    /* a constant as an output */
        refs[0] = x; refs[1] = y;
        g->outs[g->m++] = tb_nary(&g->t, AC_SUM, refs, 0);   /* an empty sum */
        check_against_tape(g, "n-ary");
        ac_tape_free(&g->t);
    }
    free(g);
}

/* Passes: counts and what they remove. */
static void test_passes(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, k1, k2, a, b, f, unused, refs[4];
    ac_program p;
    ac_compile_stats s;
    graph_init(g);
    x = graph_leaf(g, 0.7, 1);
    k1 = graph_leaf(g, 2.0, 0);
    k2 = graph_leaf(g, 3.0, 0);
    f = tb_binary(&g->t, AC_MUL, k1, k2);                 /* folds to 6 */
    f = tb_unary(&g->t, AC_EXP, tb_constop(&g->t, AC_ADDC, f, -5.0));   /* exp(1) */
    a = tb_binary(&g->t, AC_MUL, x, f);
    b = tb_binary(&g->t, AC_MUL, x, f);                   /* CSE: same as a */
    unused = tb_unary(&g->t, AC_SIN, x);                  /* dead */
    (void)unused;
    refs[0] = a; refs[1] = b; refs[2] = tb_cref(&g->t, 1.0);
    g->outs[g->m++] = tb_nary(&g->t, AC_SUM, refs, 3);
    check_against_tape(g, "passes");
    if (compile(g, AC_PASS_ALL, &p, &s) == 0) {
        CHECK(s.tape_nodes == 7 && s.extracted == 6, "extract: %lld %lld", (long long)s.tape_nodes, (long long)s.extracted);
        CHECK(s.after_fold == 3, "after_fold %lld", (long long)s.after_fold);
        CHECK(s.after_cse == 2, "after_cse %lld", (long long)s.after_cse);
        CHECK(s.after_dce == 2 && p.n_instr == 2, "after_dce %lld", (long long)s.after_dce);
        ac_program_free(&p);
    }
    if (compile(g, 0, &p, &s) == 0) {
        CHECK(s.extracted == 7 && p.n_instr == 7, "no passes keeps everything: %d", p.n_instr);
        ac_program_free(&p);
    }
    if (compile(g, AC_PASS_FOLD | AC_PASS_DCE, &p, &s) == 0) {
        CHECK(p.n_instr == 3, "fold+dce: %d", p.n_instr);
        ac_program_free(&p);
    }
    ac_tape_free(&g->t);
    free(g);
}

/* Several outputs: an output's reverse never visits what only another one
 * needs, so an inf there cannot turn into nan; the one it reaches does. */
static void test_no_leak_between_outputs(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, z, r;
    int pass;
    graph_init(g);
    x = graph_leaf(g, 0.0, 1);
    z = tb_unary(&g->t, AC_SQRT, x);                       /* d/dx = inf at 0 */
    g->outs[g->m++] = tb_constop(&g->t, AC_MULC, x, 2.0);  /* out 0: 2x */
    g->outs[g->m++] = z;                                   /* out 1: sqrt(x) */
    r = tb_constop(&g->t, AC_MULC, z, 0.0);
    g->outs[g->m++] = tb_binary(&g->t, AC_ADD, r, x);      /* out 2: 0 * sqrt(x) + x: nan */
    check_against_tape(g, "leak");
    for (pass = 0; pass < 2; ++pass) {
        ac_program p;
        ac_workspace ws;
        ac_status st;
        double in = 0.0, y[3], jac[3];
        if (compile(g, pass ? AC_PASS_ALL : 0, &p, NULL)) continue;
        ac_workspace_init(&ws, &p);
        ac_eval(&p, &ws, NULL, &in, y, jac, &st);
        CHECK(jac[0] == 2.0, "out 0: %g", jac[0]);
        CHECK(isinf(jac[1]), "out 1: %g", jac[1]);
        CHECK(isnan(jac[2]), "out 2: %g", jac[2]);
        ac_workspace_free(&ws);
        ac_program_free(&p);
    }
    ac_tape_free(&g->t);
    free(g);
}

/* ---- guards ---------------------------------------------------------------- */

static ac_guard guard(ac_ref a, ac_ref b, double bv, int kind, int expected)
{
    ac_guard gd;
    memset(&gd, 0, sizeof gd);
    gd.a = a;
    gd.b = b;
    gd.b_value = bv;
    gd.kind = kind;
    gd.expected = expected;
    return gd;
}

static void test_guards(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, y, d, side;
    ac_program p;
    ac_workspace ws;
    ac_status st;
    ac_compile_stats s;
    double in[2], out[1], jac[2];
    int rc, pass;

    graph_init(g);
    x = graph_leaf(g, 3.0, 1);
    y = graph_leaf(g, 1.0, 1);
    d = tb_binary(&g->t, AC_SUB, x, y);
    side = tb_unary(&g->t, AC_EXP, y);                     /* only a guard needs it */
    g->outs[g->m++] = tb_binary(&g->t, AC_MUL, d, d);
    g->guards[g->ng++] = guard(d, AC_GUARD_CONST, 0.0, AC_GUARD_GT, 1);      /* x - y > 0 */
    g->guards[g->ng++] = guard(x, 0, 0.0, AC_GUARD_TRUTH, 1);                /* bool(x) */
    g->guards[g->ng++] = guard(x, AC_GUARD_CONST, 10.0, AC_GUARD_LE, 1);     /* x <= 10 */
    g->guards[g->ng++] = guard(side, x, 0.0, AC_GUARD_LT, 1);                /* exp(y) < x */
    for (pass = 0; pass < 2; ++pass) {
        if (compile(g, pass ? AC_PASS_ALL : 0, &p, &s)) continue;
        CHECK(p.n_guards == 4, "guards kept: %d", p.n_guards);
        CHECK(p.n_instr == 3, "the guard keeps exp(y) alive: %d instructions", p.n_instr);
        CHECK(p.rev_end[0] <= 2, "guard-only instructions come last: rev_end %d", p.rev_end[0]);
        ac_workspace_init(&ws, &p);
        in[0] = 3.0; in[1] = 1.0;
        rc = ac_eval(&p, &ws, NULL, in, out, jac, &st);
        CHECK(rc == 0 && out[0] == 4.0 && jac[0] == 4.0 && jac[1] == -4.0, "recorded point: %d %g", rc, out[0]);
        in[0] = 0.0; in[1] = 1.0;
        rc = ac_eval(&p, &ws, NULL, in, out, jac, &st);
        CHECK(rc == AC_RP_GUARD && st.guard == 0 && isnan(out[0]) && isnan(jac[0]), "x-y>0 flips: %d %d", rc, st.guard);
        in[0] = 0.0; in[1] = -1.0;
        rc = ac_eval(&p, &ws, NULL, in, out, jac, &st);
        CHECK(rc == AC_RP_GUARD && st.guard == 1, "bool(x) flips: %d %d", rc, st.guard);
        in[0] = 11.0; in[1] = 1.0;
        rc = ac_eval(&p, &ws, NULL, in, out, NULL, &st);
        CHECK(rc == AC_RP_GUARD && st.guard == 2, "x <= 10 flips: %d %d", rc, st.guard);
        in[0] = 2.0; in[1] = 1.0;
        rc = ac_eval(&p, &ws, NULL, in, out, NULL, &st);
        CHECK(rc == AC_RP_GUARD && st.guard == 3, "exp(y) < x flips: %d %d", rc, st.guard);
        ac_workspace_free(&ws);

        {   /* batched: the first row that flips, and the first guard in that row */
            double X[12] = {3, 1,  4, 1,  2, 1,  11, 1,  0, 1,  0, 1};
            double Y[6], G[12], GS[2];
            ac_batch b;
            int threads, block;
            for (threads = 1; threads <= 3; ++threads)
                for (block = 1; block <= 8; block *= 2) {
                    memset(&b, 0, sizeof b);
                    b.rows = 6; b.x = X; b.y = Y; b.grad_rows = G; b.grad_sum = GS;
                    b.nthreads = threads; b.block = block;
                    rc = ac_eval_batch(&p, &b, NULL, &st);
                    CHECK(rc == AC_RP_GUARD && st.row == 2 && st.guard == 3,
                          "batch: %d row %lld guard %d", rc, (long long)st.row, st.guard);
                    CHECK(isnan(Y[0]) && isnan(GS[0]) && isnan(G[0]), "batch outputs are nan after a flip");
                    b.rows = 2;
                    rc = ac_eval_batch(&p, &b, NULL, &st);
                    CHECK(rc == 0 && Y[0] == 4.0 && Y[1] == 9.0 && GS[0] == 10.0 && GS[1] == -10.0,
                          "batch without a flip: %d %g %g", rc, Y[1], GS[0]);
                }
            /* a guard on shared inputs only flips on every row: row 0 */
            {
                uint8_t batched[2] = {0, 1};
                double shared[1] = {0.5}, X2[3] = {1, 1, 1};
                memset(&b, 0, sizeof b);
                b.rows = 3; b.batched = batched; b.x = X2; b.shared = shared; b.y = Y; b.grad_sum = GS;
                b.nthreads = 2; b.block = 1;
                rc = ac_eval_batch(&p, &b, NULL, &st);
                CHECK(rc == AC_RP_GUARD && st.row == 0 && st.guard == 0, "uniform guard: %d row %lld guard %d",
                      rc, (long long)st.row, st.guard);
            }
        }
        ac_program_free(&p);
    }
    /* guards on constants: folded away, or a contradiction */
    {
        ac_ref k = graph_leaf(g, 2.0, 0);
        g->guards[g->ng++] = guard(k, AC_GUARD_CONST, 1.0, AC_GUARD_GT, 1);
        if (compile(g, AC_PASS_ALL, &p, &s) == 0) {
            CHECK(s.guards_folded == 1 && p.n_guards == 4, "constant guard folded: %lld", (long long)s.guards_folded);
            CHECK(p.guard_index[3] == 3, "guard_index keeps the caller's numbering");
            ac_program_free(&p);
        }
        g->guards[g->ng - 1].expected = 0;
        rc = ac_compile(&g->t, g->outs, g->m, g->leaf_input, g->n, g->guards, g->ng, AC_PASS_ALL, &p, &s, &st);
        CHECK(rc == AC_RP_INVALID && st.index == 4, "a contradicting constant guard fails: %d", rc);
    }
    ac_tape_free(&g->t);
    free(g);
}

/* ---- custom Functions and failing hooks ------------------------------------ */

static void test_custom(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, y, c1, c2, refs[4];
    ac_program p;
    ac_workspace ws;
    ac_status st;
    hook_ctx hc = {0};
    ac_hooks hooks = {rp_hook_forward, rp_hook_backward, rp_hook_poll, &hc};
    double in[2] = {0.3, -1.2}, out[2], jac[4];
    int rc;

    graph_init(g);
    x = graph_leaf(g, 0.3, 1);
    y = graph_leaf(g, -1.2, 1);
    refs[0] = x; refs[1] = tb_cref(&g->t, 2.0); refs[2] = y;
    c1 = record_custom(&g->t, 0, refs, 3);
    refs[0] = c1; refs[1] = x;
    c2 = record_custom(&g->t, 1, refs, 2);
    refs[0] = c1; refs[1] = x;
    record_custom(&g->t, 1, refs, 2);                   /* the same call again: never merged */
    g->outs[g->m++] = tb_binary(&g->t, AC_ADD, c2, g->t.size - 1);
    g->outs[g->m++] = tb_unary(&g->t, AC_TANH, c1);
    check_against_tape(g, "custom");
    if (compile(g, AC_PASS_ALL, &p, NULL) == 0) {
        CHECK(p.n_custom == 3, "customs are not merged: %d", p.n_custom);
        hc.p = &p;
        ac_workspace_init(&ws, &p);
        rc = ac_eval(&p, &ws, NULL, in, out, NULL, &st);
        CHECK(rc == AC_RP_INVALID, "no hooks: %d", rc);
        hc.fail_at = 2;
        rc = ac_eval(&p, &ws, &hooks, in, out, jac, &st);
        CHECK(rc == AC_RP_HOOK && st.custom == 1 && isnan(out[0]), "forward hook fails: %d %d", rc, st.custom);
        hc.fail_at = 4; hc.calls = 0;
        rc = ac_eval(&p, &ws, &hooks, in, out, jac, &st);
        CHECK(rc == AC_RP_HOOK && isnan(jac[0]), "backward hook fails: %d", rc);
        {
            ac_batch b;
            double X[10] = {0.3, -1.2, 0.1, 0.2, 0.5, 0.5, -1, 2, 3, 4}, Y[10], GS[4];
            memset(&b, 0, sizeof b);
            b.rows = 5; b.x = X; b.y = Y; b.block = 2;
            /* forward only, 3 customs per row, 2 rows per block: call 8 is
             * the first custom of row 3 */
            hc.fail_at = 8; hc.calls = 0;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == AC_RP_HOOK && st.row == 3 && st.custom == 0 && isnan(Y[0]),
                  "batched forward hook failure: %d row %lld", rc, (long long)st.row);
            /* with gradients, block 0 makes calls 1-6 forward, then backward
             * of custom 2 for rows 0 and 1: call 8 is row 1 */
            b.grad_sum = GS;
            hc.fail_at = 8; hc.calls = 0;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == AC_RP_HOOK && st.row == 1 && st.custom == 2 && isnan(GS[0]),
                  "batched backward hook failure: %d row %lld custom %d", rc, (long long)st.row, st.custom);
        }
        ac_workspace_free(&ws);
        ac_program_free(&p);
    }
    ac_tape_free(&g->t);
    free(g);
}

/* ---- interrupting a long batch ---------------------------------------------- */

static void test_interrupt(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, w, y;
    ac_program p;
    ac_status st;
    hook_ctx hc = {0};
    ac_hooks hooks = {rp_hook_forward, rp_hook_backward, rp_hook_poll, &hc};
    int64_t B = 100000, r;
    double *X = malloc(sizeof(double) * (size_t)B), *Y = malloc(sizeof(double) * (size_t)B), GS[2], sh = 0.5;
    uint8_t batched[2] = {1, 0};
    int k, threads, rc;
    ac_batch b;
    graph_init(g);
    x = graph_leaf(g, 0.5, 1);
    w = graph_leaf(g, 0.5, 1);
    y = x;
    for (k = 0; k < 100; ++k) y = tb_binary(&g->t, AC_ADD, tb_binary(&g->t, AC_MUL, y, w), x);
    g->outs[g->m++] = y;
    for (r = 0; r < B; ++r) X[r] = 1e-6 * (double)r;
    if (compile(g, AC_PASS_ALL, &p, NULL) == 0) {
        for (threads = 1; threads <= 2; ++threads) {
            memset(&b, 0, sizeof b);
            b.rows = B; b.batched = batched; b.x = X; b.shared = &sh; b.y = Y; b.grad_sum = GS;
            b.nthreads = threads;
            hc.polls = 0; hc.stop_at = 0;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == 0 && hc.polls >= 2, "a long batch polls: %d, %d polls", rc, hc.polls);
            hc.polls = 0; hc.stop_at = 1;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == AC_RP_INTERRUPTED && hc.polls == 1 && isnan(Y[B - 1]) && isnan(GS[0]),
                  "poll stops it (%d threads): %d after %d polls", threads, rc, hc.polls);
        }
        ac_program_free(&p);
    }
    ac_tape_free(&g->t);
    free(g);
    free(X);
    free(Y);
}

/* ---- the worker pool: concurrent callers, fork ------------------------------- */

#if !defined(_WIN32)
typedef struct pool_job {
    const ac_program *p;
    const double *X;
    int64_t rows;
    double want[2];     /* grad_sum of the whole batch */
    int bad;
} pool_job;

static void *pool_caller(void *arg)
{
    pool_job *job = arg;
    int k;
    for (k = 0; k < 200; ++k) {
        ac_batch b;
        ac_status st;
        double gs[2];
        memset(&b, 0, sizeof b);
        b.rows = job->rows; b.x = job->X; b.grad_sum = gs; b.nthreads = 2; b.block = 8;
        if (ac_eval_batch(job->p, &b, NULL, &st) != 0 || memcmp(gs, job->want, sizeof gs) != 0) job->bad++;
    }
    return NULL;
}

/* Two threads calling ac_eval_batch at once (one gets the pool, the other
 * starts threads of its own), and a child process after fork(): each gets
 * the same bits as a lone call. */
static void test_pool(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, w;
    ac_program p;
    ac_status st;
    ac_batch b;
    double X[2 * 100];
    pool_job jobs[2];
    pthread_t other;
    int k;
    pid_t child;
    graph_init(g);
    x = graph_leaf(g, 0.5, 1);
    w = graph_leaf(g, 1.5, 1);
    g->outs[g->m++] = tb_unary(&g->t, AC_TANH, tb_binary(&g->t, AC_MUL, tb_unary(&g->t, AC_SIN, x), w));
    for (k = 0; k < 200; ++k) X[k] = 0.01 * k - 0.7;
    if (compile(g, AC_PASS_ALL, &p, NULL)) return;
    for (k = 0; k < 2; ++k) {
        memset(&b, 0, sizeof b);
        jobs[k].p = &p; jobs[k].X = X; jobs[k].rows = 100 - 40 * k; jobs[k].bad = 0;
        b.rows = jobs[k].rows; b.x = X; b.grad_sum = jobs[k].want; b.nthreads = 2; b.block = 8;
        CHECK(ac_eval_batch(&p, &b, NULL, &st) == 0, "pool: %s", st.what);
    }
    CHECK(pthread_create(&other, NULL, pool_caller, &jobs[1]) == 0, "pthread_create");
    pool_caller(&jobs[0]);
    pthread_join(other, NULL);
    CHECK(jobs[0].bad == 0 && jobs[1].bad == 0, "concurrent callers: %d %d wrong", jobs[0].bad, jobs[1].bad);
    fflush(NULL);
    child = fork();
    if (child == 0) {       /* the child's pool is empty; it starts workers of its own */
        jobs[0].bad = 0;
        pool_caller(&jobs[0]);
        _exit(jobs[0].bad != 0);
    } else if (child > 0) {
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "batch in a forked child: status %d", status);
    }
    ac_program_free(&p);
    ac_tape_free(&g->t);
    free(g);
}
#else
static void test_pool(void) {}
#endif

/* ---- bad input ------------------------------------------------------------- */

static void test_errors(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref x, bad_out;
    int32_t bad_leaf[1] = {5};
    ac_program p;
    ac_status st;
    ac_guard gd;
    int rc;
    graph_init(g);
    x = graph_leaf(g, 1.0, 1);
    g->outs[g->m++] = tb_unary(&g->t, AC_EXP, x);
    bad_out = 7;
    rc = ac_compile(&g->t, &bad_out, 1, g->leaf_input, 1, NULL, 0, AC_PASS_ALL, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID && st.index == 0, "output out of range: %d", rc);
    bad_out = AC_LEAF_BIT | 3;
    rc = ac_compile(&g->t, &bad_out, 1, g->leaf_input, 1, NULL, 0, AC_PASS_ALL, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID, "leaf output out of range: %d", rc);
    rc = ac_compile(&g->t, g->outs, 1, bad_leaf, 1, NULL, 0, AC_PASS_ALL, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID, "input position out of range: %d", rc);
    gd = guard(x, AC_GUARD_CONST, 0.0, 99, 1);
    rc = ac_compile(&g->t, g->outs, 1, g->leaf_input, 1, &gd, 1, AC_PASS_ALL, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID, "unknown guard kind: %d", rc);
    g->t.code[0] = ac_pack(AC_NUM_OPS + 3, 0, 0);        /* a corrupt node */
    rc = ac_compile(&g->t, g->outs, 1, g->leaf_input, 1, NULL, 0, AC_PASS_ALL, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID && p.op == NULL, "malformed node: %d", rc);
    g->t.code[0] = ac_pack(AC_EXP, 0, 0);                /* an operand that is not below it */
    rc = ac_compile(&g->t, g->outs, 1, g->leaf_input, 1, NULL, 0, 0, &p, NULL, &st);
    CHECK(rc == AC_RP_INVALID, "self-reference: %d", rc);
    ac_tape_free(&g->t);
    free(g);
}

/* Two leaf entries that are the same input: their gradients add. */
/* The wide layout's encoding: references up to its limits survive every
 * push and read (the sweeps decode them with the same ac_ref_of_wide). */
static void test_wide_references(void)
{
    ac_tape t;
    int i;
    ac_tape_init(&t);
    tb_need(ac_widen(&t) == 0 && ac_grow_nodes(&t, 4000) == 0 && ac_reserve_args(&t, 4000) == 0, "set-up");
    for (i = 0; i < 1000; ++i) {
        ac_ref a = (ac_ref)(rnd() % (uint64_t)AC_WIDE_MAX_NODES), b = (ac_ref)(rnd() % (uint64_t)AC_WIDE_MAX_NODES);
        int64_t k = (int64_t)(rnd() % (uint64_t)AC_WIDE_MAX_CONSTS);
        ac_node n;
        if (rnd_int(2)) a |= AC_LEAF_BIT;
        if (rnd_int(2)) b |= AC_LEAF_BIT;
        if (i == 0) { a = AC_LEAF_BIT | (ac_ref)AC_WIDE_MAX_NODES; b = (ac_ref)AC_WIDE_MAX_NODES; k = AC_WIDE_MAX_CONSTS; }
        n = ac_push_op(&t, AC_MUL, ac_layout_ref(&t, a), ac_layout_ref(&t, b), 1.0);
        CHECK(ac_ref_a(&t, n) == a && ac_ref_b(&t, n) == b, "binary %d: %llx %llx", i,
              (unsigned long long)ac_ref_a(&t, n), (unsigned long long)ac_ref_b(&t, n));
        n = ac_push_op(&t, AC_MULC, ac_layout_ref(&t, b), (uint64_t)k, 1.0);
        CHECK(ac_ref_a(&t, n) == b && ac_const_b(&t, n) == k, "constant op %d", i);
        n = ac_push_op(&t, AC_EXP, ac_layout_ref(&t, a), 0, 1.0);
        CHECK(ac_ref_a(&t, n) == a && ac_opcode(t.code[n]) == AC_EXP, "unary %d", i);
        ac_set_word(&t, t.nargs, 3);
        ac_set_word(&t, t.nargs + 1, ac_layout_ref(&t, a));
        ac_set_word(&t, t.nargs + 2, ac_layout_ref(&t, AC_CONST_BIT | (ac_ref)k));
        ac_set_word(&t, t.nargs + 3, ac_layout_ref(&t, b));
        n = ac_push_nary(&t, AC_SUM, t.nargs, 1.0);
        t.nargs += 4;
        CHECK(ac_nargs(&t, n) == 3 && ac_arg(&t, n, 0) == a && ac_arg(&t, n, 1) == (AC_CONST_BIT | (ac_ref)k)
              && ac_arg(&t, n, 2) == b, "operand list %d", i);
    }
    /* narrow references keep their meaning in the wide layout */
    ac_tape_free(&t);
    ac_tape_init(&t);
    {
        ac_ref x = tb_leaf(&t, 2.0), y = tb_leaf(&t, 3.0), refs[3], s;
        ac_ref p = tb_binary(&t, AC_MUL, x, y);
        refs[0] = p; refs[1] = tb_cref(&t, 0.5); refs[2] = y;
        s = tb_nary(&t, AC_SUM, refs, 3);
        tb_need(ac_widen(&t) == 0, "ac_widen");
        CHECK(ac_ref_a(&t, (ac_node)p) == x && ac_ref_b(&t, (ac_node)p) == y, "a narrow node, widened");
        CHECK(ac_nargs(&t, (ac_node)s) == 3 && ac_arg(&t, (ac_node)s, 0) == p && ac_arg(&t, (ac_node)s, 2) == y
              && tb_value(&t, ac_arg(&t, (ac_node)s, 1)) == 0.5, "a narrow operand list, widened");
    }
    ac_tape_free(&t);
}

static void test_shared_input(void)
{
    graph *g = malloc(sizeof *g);
    ac_ref a, b;
    ac_program p;
    ac_workspace ws;
    ac_status st;
    double in = 1.5, y, jac;
    graph_init(g);
    a = graph_leaf(g, 1.5, 1);
    b = tb_leaf(&g->t, 1.5);
    g->leaf_input[ac_ref_index(b)] = 0;
    g->outs[g->m++] = tb_binary(&g->t, AC_MUL, tb_unary(&g->t, AC_SIN, a), b);
    if (compile(g, AC_PASS_ALL, &p, NULL) == 0) {
        ac_workspace_init(&ws, &p);
        ac_eval(&p, &ws, NULL, &in, &y, &jac, &st);
        CHECK(fabs(jac - (cos(1.5) * 1.5 + sin(1.5))) < 1e-15, "shared input: %.17g", jac);
        ac_workspace_free(&ws);
        ac_program_free(&p);
    }
    ac_tape_free(&g->t);
    free(g);
}

/* ---- a program from bytes: ac_program_finish --------------------------------- */

static void random_graph(graph *g, int special_percent, int with_custom);

static void *dup_array(const void *src, size_t bytes)
{
    void *q = malloc(bytes + 1);
    if (bytes) memcpy(q, src, bytes);
    return q;
}

/* The primary arrays of src, copied, as a loader would fill them. */
static void program_copy(const ac_program *src, ac_program *dst)
{
    memset(dst, 0, sizeof *dst);
    dst->n_inputs = src->n_inputs; dst->n_consts = src->n_consts; dst->n_instr = src->n_instr;
    dst->n_slots = src->n_slots; dst->n_outputs = src->n_outputs; dst->n_guards = src->n_guards;
    dst->n_custom = src->n_custom; dst->n_args = src->n_args;
    dst->op = dup_array(src->op, (size_t)src->n_instr);
    dst->a = dup_array(src->a, 4 * (size_t)src->n_instr);
    dst->b = dup_array(src->b, 4 * (size_t)src->n_instr);
    dst->args = dup_array(src->args, 4 * (size_t)src->n_args);
    dst->consts = dup_array(src->consts, 8 * (size_t)src->n_consts);
    dst->outputs = dup_array(src->outputs, 4 * (size_t)src->n_outputs);
    dst->guard_kind = dup_array(src->guard_kind, (size_t)src->n_guards);
    dst->guard_expected = dup_array(src->guard_expected, (size_t)src->n_guards);
    dst->guard_a = dup_array(src->guard_a, 4 * (size_t)src->n_guards);
    dst->guard_b = dup_array(src->guard_b, 4 * (size_t)src->n_guards);
    dst->guard_index = dup_array(src->guard_index, 4 * (size_t)src->n_guards);
    dst->custom_instr = dup_array(src->custom_instr, 4 * (size_t)src->n_custom);
    dst->custom_node = dup_array(src->custom_node, 8 * (size_t)src->n_custom);
}

/* Evaluate a program that passed the checks, one row and a batch: the
 * sanitizer build checks that nothing outside its buffers is touched. */
static void eval_accepted(ac_program *p, hook_ctx *hc)
{
    ac_workspace ws;
    ac_status st;
    ac_hooks hooks = {rp_hook_forward, rp_hook_backward, rp_hook_poll, hc};
    static double x[256], y[16], jac[16 * 256], X[4 * 256], Y[64], G[16 * 256];
    ac_batch b;
    hc->p = p;
    if (p->n_inputs <= 256 && p->n_outputs <= 16 && ac_workspace_init(&ws, p) == 0) {
        ac_eval(p, &ws, &hooks, x, y, jac, &st);
        ac_workspace_free(&ws);
        memset(&b, 0, sizeof b);
        b.rows = 3; b.x = X; b.y = Y; b.grad_sum = G; b.block = 2;
        ac_eval_batch(p, &b, &hooks, &st);
    }
}

/* Corrupt one field of a copy: ac_program_finish rejects it, or the
 * program it accepts evaluates without touching memory outside its buffers
 * (the sanitizer build checks that). */
static void corrupt_and_check(const ac_program *good, hook_ctx *hc)
{
    static const int32_t odd[] = {-1, 0, 1, 2, 7, 100, INT32_MAX, INT32_MIN};
    ac_program p;
    ac_status st;
    int32_t v = odd[rnd_int(8)];
    int field = rnd_int(10);
    program_copy(good, &p);
    switch (field) {
    case 0: if (p.n_instr) p.op[rnd_int(p.n_instr)] = (uint8_t)rnd_int(256); break;
    case 1: if (p.n_instr) p.a[rnd_int(p.n_instr)] = v; break;
    case 2: if (p.n_instr) p.b[rnd_int(p.n_instr)] = v; break;
    case 3: if (p.n_args) p.args[rnd_int((int)p.n_args)] = v; break;
    case 4: if (p.n_outputs) p.outputs[rnd_int(p.n_outputs)] = v; break;
    /* counts: a loader allocates what the counts say, so only smaller
     * counts (over longer arrays) or inconsistent ones can be tried here */
    case 5: p.n_instr -= rnd_int(2); p.n_slots -= rnd_int(2); break;
    case 6: if (p.n_consts) { p.n_consts -= 1; p.n_slots -= rnd_int(2); } break;
    case 7: if (p.n_custom) p.custom_instr[rnd_int(p.n_custom)] = v; else p.n_custom = -1; break;
    case 8: p.n_args = v < 0 ? v : p.n_args - (p.n_args > 0); break;
    default: if (p.n_instr) p.op[rnd_int(p.n_instr)] = (uint8_t)rnd_int(AC_NUM_OPS); break;
    }
    if (ac_program_finish(&p, &st) == 0) {
        eval_accepted(&p, hc);
    } else {
        CHECK(st.code == AC_RP_INVALID && st.what[0], "finish: %d", st.code);
    }
    ac_program_free(&p);
}

static void test_program_finish(int count)
{
    graph *g = malloc(sizeof *g);
    int i, k;
    hook_ctx hc = {0};
    for (i = 0; i < count; ++i) {
        ac_program good, copy;
        ac_status st;
        random_graph(g, 10, 1);
        if (compile(g, i % 2 ? AC_PASS_ALL : 0, &good, NULL) == 0) {
            program_copy(&good, &copy);       /* a faithful copy finishes to the same program */
            CHECK(ac_program_finish(&copy, &st) == 0, "finish of a copy: %s", st.what);
            CHECK(copy.n_mask_words == good.n_mask_words, "masks");
            for (k = 0; k < good.n_outputs; ++k)
                CHECK(copy.rev_end[k] == good.rev_end[k] && copy.mask_at[k] == good.mask_at[k], "rev_end");
            ac_program_free(&copy);
            for (k = 0; k < 5; ++k) corrupt_and_check(&good, &hc);
            ac_program_free(&good);
        }
        ac_tape_free(&g->t);
    }
    free(g);
}

/* ---- a program as bytes: ac_program_write / ac_program_read ------------------- */

static int same_array(const void *a, const void *b, size_t bytes)
{
    return bytes == 0 || memcmp(a, b, bytes) == 0;
}

/* Written and read back, a program has the same primary arrays; every
 * truncation is refused; random byte changes are refused or give a program
 * that evaluates within its buffers. */
static void test_program_bytes(int count)
{
    graph *g = malloc(sizeof *g);
    int i, k;
    hook_ctx hc = {0};
    for (i = 0; i < count; ++i) {
        ac_program good, back;
        ac_status st;
        int64_t size, used = -1, cut;
        uint8_t *buf, *bad;
        random_graph(g, 10, 1);
        if (compile(g, i % 2 ? AC_PASS_ALL : 0, &good, NULL) != 0) {
            ac_tape_free(&g->t);
            continue;
        }
        size = ac_program_write(&good, NULL);
        buf = malloc((size_t)size + 1);
        bad = malloc((size_t)size + 1);
        CHECK(ac_program_write(&good, buf) == size, "write size");
        CHECK(ac_program_read(&back, buf, size, &used, &st) == 0 && used == size, "read: %s", st.what);
        CHECK(back.n_inputs == good.n_inputs && back.n_consts == good.n_consts && back.n_instr == good.n_instr
              && back.n_outputs == good.n_outputs && back.n_guards == good.n_guards
              && back.n_custom == good.n_custom && back.n_args == good.n_args, "counts");
        CHECK(same_array(back.op, good.op, (size_t)good.n_instr) && same_array(back.a, good.a, 4 * (size_t)good.n_instr)
              && same_array(back.b, good.b, 4 * (size_t)good.n_instr)
              && same_array(back.args, good.args, 4 * (size_t)good.n_args)
              && same_array(back.consts, good.consts, 8 * (size_t)good.n_consts)
              && same_array(back.outputs, good.outputs, 4 * (size_t)good.n_outputs)
              && same_array(back.guard_kind, good.guard_kind, (size_t)good.n_guards)
              && same_array(back.guard_expected, good.guard_expected, (size_t)good.n_guards)
              && same_array(back.guard_a, good.guard_a, 4 * (size_t)good.n_guards)
              && same_array(back.guard_b, good.guard_b, 4 * (size_t)good.n_guards)
              && same_array(back.guard_index, good.guard_index, 4 * (size_t)good.n_guards)
              && same_array(back.custom_instr, good.custom_instr, 4 * (size_t)good.n_custom)
              && back.n_mask_words == good.n_mask_words, "arrays read back");
        ac_program_free(&back);
        for (cut = 0; cut < size; cut += 1 + cut / 8)
            CHECK(ac_program_read(&back, buf, cut, &used, &st) == AC_RP_INVALID && st.what[0], "truncated at %lld",
                  (long long)cut);
        for (k = 0; k < 20; ++k) {
            int flips = 1 + rnd_int(4), f;
            memcpy(bad, buf, (size_t)size);
            for (f = 0; f < flips; ++f) bad[rnd_int((int)size)] = (uint8_t)rnd_int(256);
            if (ac_program_read(&back, bad, size, &used, &st) == 0) {
                eval_accepted(&back, &hc);
                ac_program_free(&back);
            } else {
                CHECK(st.code == AC_RP_INVALID && st.what[0], "corrupted: %d", st.code);
            }
        }
        free(buf);
        free(bad);
        ac_program_free(&good);
        ac_tape_free(&g->t);
    }
    free(g);
}

/* ---- random graphs ------------------------------------------------------------ */

static double random_value(int special_percent)
{
    if (rnd_int(100) < special_percent) return SPECIAL[rnd_int(N_SPECIAL)];
    return (rnd_unit() - 0.5) * 6.0;
}

/* A random operand: a leaf or an earlier node, recent ones more often. */
static ac_ref random_operand(graph *g, const ac_ref *leaves, int nl)
{
    if (g->t.size == 0 || rnd_int(100) < 30) return leaves[rnd_int(nl)];
    if (rnd_int(2)) return (ac_ref)(g->t.size - 1 - rnd_int(g->t.size < 4 ? (int)g->t.size : 4));
    return (ac_ref)rnd_int((int)g->t.size);
}

static void random_graph(graph *g, int special_percent, int with_custom)
{
    ac_ref leaves[8], refs[16];
    int nl = 1 + rnd_int(6), nn = 1 + rnd_int(50), i, k;
    graph_init(g);
    tb_widen_at = rnd_int(2) ? -1 : rnd_int(nn + 1);     /* half the graphs end in the wide layout */
    for (i = 0; i < nl; ++i) leaves[i] = graph_leaf(g, random_value(special_percent), rnd_int(100) < 80);
    for (i = 0; i < nn; ++i) {
        int kind = rnd_int(100);
        if (kind < 28) {
            tb_unary(&g->t, AC_NEG + rnd_int(AC_ADDC - AC_NEG), random_operand(g, leaves, nl));
        } else if (kind < 50) {
            double c = rnd_int(2) ? SPECIAL[rnd_int(N_SPECIAL)] : random_value(0);
            if (rnd_int(100) >= special_percent && !isfinite(c)) c = 1.5;
            tb_constop(&g->t, AC_ADDC + rnd_int(AC_ADD - AC_ADDC), random_operand(g, leaves, nl), c);
        } else if (kind < 85) {
            tb_binary(&g->t, AC_ADD + rnd_int(AC_NUM_OPS - AC_ADD), random_operand(g, leaves, nl),
                      random_operand(g, leaves, nl));
        } else if (kind < 97 || !with_custom) {
            int n = rnd_int(8), op = rnd_int(2) ? AC_SUM : AC_DOT;
            if (op == AC_DOT) n &= ~1;
            for (k = 0; k < n; ++k)
                refs[k] = rnd_int(5) == 0 ? tb_cref(&g->t, random_value(special_percent)) : random_operand(g, leaves, nl);
            tb_nary(&g->t, op, refs, n);
        } else {
            int n = 1 + rnd_int(4);
            for (k = 0; k < n; ++k)
                refs[k] = rnd_int(5) == 0 ? tb_cref(&g->t, random_value(0)) : random_operand(g, leaves, nl);
            record_custom(&g->t, rnd_int(2), refs, n);
        }
    }
    g->m = 1 + rnd_int(3);
    for (i = 0; i < g->m; ++i)
        g->outs[i] = rnd_int(20) == 0 ? leaves[rnd_int(nl)] : (ac_ref)(g->t.size - 1 - rnd_int((int)g->t.size));
    tb_widen_at = -1;
}

/* Batched replay vs ac_eval row by row. */
static void check_batched(graph *g, const char *what)
{
    int m = g->m, n = g->n, B = 1 + rnd_int(150), j, k, r, pass;
    double *X = malloc(sizeof(double) * (size_t)(B * n + 1));
    double *rowy = malloc(sizeof(double) * (size_t)(B * m + 1)), *rowj = malloc(sizeof(double) * (size_t)(B * m * n + 1));
    double *Y = malloc(sizeof(double) * (size_t)(B * m + 1)), *G = malloc(sizeof(double) * (size_t)(B * m * n + 1));
    double *GS = malloc(sizeof(double) * (size_t)(m * n + 1)), *W = malloc(sizeof(double) * (size_t)B);
    double *sumj = malloc(sizeof(double) * (size_t)(m * n + 1)), *scale = malloc(sizeof(double) * (size_t)(m * n + 1));
    double *rowabs = malloc(sizeof(double) * (size_t)(B * m * n + 1));
    double *Xb = malloc(sizeof(double) * (size_t)(B * n + 1)), shared[256], x0[256], YS[16], ysum[16];
    uint8_t batched[256];
    hook_ctx hc = {0};
    ac_hooks hooks = {rp_hook_forward, rp_hook_backward, rp_hook_poll, &hc};

    recorded_inputs(g, x0);
    for (k = 0; k < n; ++k) batched[k] = (uint8_t)rnd_int(2);
    for (r = 0; r < B; ++r)
        for (k = 0; k < n; ++k)
            X[r * n + k] = r == 0 || !batched[k] ? x0[k] : x0[k] * (1.0 + 0.3 * (rnd_unit() - 0.5)) + 0.1 * (rnd_unit() - 0.5);
    for (r = 0; r < B; ++r) W[r] = rnd_int(2) ? 1.0 : rnd_unit();

    for (pass = 0; pass < 2; ++pass) {
        ac_program p;
        ac_workspace ws;
        ac_status st;
        ac_batch b;
        int rc, threads, nb;
        if (compile(g, pass ? AC_PASS_ALL : 0, &p, NULL)) continue;
        hc.p = &p;
        ac_workspace_init(&ws, &p);
        for (r = 0; r < B; ++r) {
            rc = ac_eval(&p, &ws, &hooks, X + r * n, rowy + r * m, rowj + (size_t)r * m * n, &st);
            CHECK(rc == 0, "%s: row %d: %d", what, r, rc);
            for (j = 0; j < m; ++j) abs_jacobian(&p, ws.val, j, rowabs + ((size_t)r * m + j) * n);
        }
        /* per-row mode: bit-identical to ac_eval, any block and thread count */
        for (threads = 1; threads <= 3; ++threads) {
            static const int blocks[] = {1, 3, 8, 64, 0};
            memset(&b, 0, sizeof b);
            b.rows = B; b.x = X; b.y = Y; b.grad_rows = G;
            b.nthreads = threads; b.block = blocks[rnd_int(5)];
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == 0, "%s: batch %d %s", what, rc, st.what);
            for (r = 0; r < B * m; ++r)
                CHECK(same_bits(Y[r], rowy[r]), "%s (passes %d, %d threads, block %d): y[%d] %.17g vs %.17g",
                      what, pass, threads, b.block, r, Y[r], rowy[r]);
            for (r = 0; r < B * m * n; ++r)
                CHECK(same_bits(G[r], rowj[r]), "%s (passes %d, %d threads, block %d): grad_rows[%d] %.17g vs %.17g",
                      what, pass, threads, b.block, r, G[r], rowj[r]);
        }
        /* summed mode with some inputs shared: the weighted sum of the rows.
         * Xb: the per-row columns; shared: the others, in input order. */
        nb = 0;
        for (k = 0; k < n; ++k) nb += batched[k];
        for (r = 0; r < B; ++r) {
            int c = 0;
            for (k = 0; k < n; ++k) if (batched[k]) Xb[r * nb + c++] = X[r * n + k];
        }
        {
            int c = 0;
            for (k = 0; k < n; ++k) if (!batched[k]) shared[c++] = x0[k];
        }
        for (j = 0; j < m; ++j) {
            ysum[j] = 0.0;
            for (r = 0; r < B; ++r) ysum[j] += W[r] * rowy[r * m + j];
            for (k = 0; k < n; ++k) {
                double s = 0.0, a = 0.0;
                for (r = 0; r < B; ++r) {
                    s += W[r] * rowj[((size_t)r * m + j) * n + k];
                    a += W[r] * rowabs[((size_t)r * m + j) * n + k];
                }
                sumj[j * n + k] = s;
                scale[j * n + k] = a;
            }
        }
        for (threads = 1; threads <= 2; ++threads) {
            memset(&b, 0, sizeof b);
            b.rows = B; b.batched = batched; b.x = Xb; b.shared = shared; b.y = Y; b.y_sum = YS;
            b.grad_sum = GS; b.weight = W; b.nthreads = threads; b.block = 1 + rnd_int(70);
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == 0, "%s: summed batch %d %s", what, rc, st.what);
            for (r = 0; r < B * m; ++r)
                CHECK(same_bits(Y[r], rowy[r]), "%s (summed, passes %d): y[%d] %.17g vs %.17g", what, pass, r, Y[r], rowy[r]);
            for (j = 0; j < m; ++j) {
                double ya = 0.0;
                for (r = 0; r < B; ++r) ya += fabs(W[r] * rowy[r * m + j]);
                CHECK(close_enough(YS[j], ysum[j], ya), "%s: y_sum %.17g vs %.17g", what, YS[j], ysum[j]);
                for (k = 0; k < n; ++k)
                    CHECK(close_enough(GS[j * n + k], sumj[j * n + k], scale[j * n + k]),
                          "%s (summed, passes %d, %d threads, block %d, shared %d): grad_sum[%d][%d] %.17g vs %.17g",
                          what, pass, threads, b.block, !batched[k], j, k, GS[j * n + k], sumj[j * n + k]);
            }
        }
        /* the per-row columns from separate strided arrays (x_cols), and
         * only the first output differentiated (grad_outputs = 1): the same
         * bits as the summed run above, and per row as ac_eval's first
         * Jacobian row */
        if (nb > 0) {
            double *cols[256], *colmem = malloc(sizeof(double) * (size_t)(3 * B * nb + 1)), *G1;
            int64_t strides[256];
            int c;
            double YS2[16], *GS2 = malloc(sizeof(double) * (size_t)(m * n + 1));
            for (c = 0; c < nb; ++c) {
                strides[c] = 1 + c % 3;
                cols[c] = colmem + (size_t)3 * B * c;
                for (r = 0; r < B; ++r) cols[c][r * strides[c]] = Xb[r * nb + c];
            }
            memset(&b, 0, sizeof b);
            b.rows = B; b.batched = batched; b.x_cols = (const double *const *)cols; b.x_stride = strides;
            b.shared = shared; b.y_sum = YS2; b.grad_sum = GS2; b.weight = W; b.nthreads = 2;
            b.block = 1 + rnd_int(70); b.grad_outputs = 1;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == 0, "%s: x_cols batch %d %s", what, rc, st.what);
            for (j = 0; j < m; ++j) {
                double ya = 0.0;
                for (r = 0; r < B; ++r) ya += fabs(W[r] * rowy[r * m + j]);
                CHECK(close_enough(YS2[j], ysum[j], ya), "%s: x_cols y_sum %.17g vs %.17g", what, YS2[j], ysum[j]);
            }
            for (k = 0; k < n; ++k)
                CHECK(close_enough(GS2[k], sumj[k], scale[k]), "%s (x_cols, grad_outputs 1): grad_sum[0][%d] %.17g vs %.17g",
                      what, k, GS2[k], sumj[k]);
            G1 = malloc(sizeof(double) * (size_t)(B * n + 1));
            memset(&b, 0, sizeof b);
            b.rows = B; b.batched = batched; b.x_cols = (const double *const *)cols; b.x_stride = strides;
            b.shared = shared; b.y = Y; b.grad_rows = G1; b.nthreads = 1 + rnd_int(2); b.grad_outputs = 1;
            rc = ac_eval_batch(&p, &b, &hooks, &st);
            CHECK(rc == 0, "%s: x_cols per-row batch %d %s", what, rc, st.what);
            for (r = 0; r < B; ++r)
                for (k = 0; k < n; ++k)
                    CHECK(same_bits(G1[r * n + k], rowj[(size_t)r * m * n + k]),
                          "%s (x_cols, grad_outputs 1): grad_rows[%d][%d] %.17g vs %.17g", what, r, k,
                          G1[r * n + k], rowj[(size_t)r * m * n + k]);
            /* ac_eval with grad_outputs = 1: the first Jacobian row only */
            ws.grad_outputs = 1;
            rc = ac_eval(&p, &ws, &hooks, X, rowy, G1, &st);
            CHECK(rc == 0, "%s: ac_eval grad_outputs %d", what, rc);
            for (k = 0; k < n; ++k)
                CHECK(same_bits(G1[k], rowj[k]), "%s: ac_eval grad_outputs 1: jac[0][%d]", what, k);
            ws.grad_outputs = 0;
            free(G1); free(GS2); free(colmem);
        }
        /* per-row gradients with some inputs shared (copied into every row):
         * bit-identical to ac_eval again */
        memset(&b, 0, sizeof b);
        b.rows = B; b.batched = batched; b.x = Xb; b.shared = shared; b.y = Y; b.grad_rows = G;
        b.nthreads = 1 + rnd_int(3); b.block = 1 + rnd_int(70);
        rc = ac_eval_batch(&p, &b, &hooks, &st);
        CHECK(rc == 0, "%s: per-row batch with shared inputs %d %s", what, rc, st.what);
        for (r = 0; r < B * m; ++r)
            CHECK(same_bits(Y[r], rowy[r]), "%s (per row, shared): y[%d] %.17g vs %.17g", what, r, Y[r], rowy[r]);
        for (r = 0; r < B * m * n; ++r)
            CHECK(same_bits(G[r], rowj[r]), "%s (per row, shared, passes %d): grad_rows[%d] %.17g vs %.17g",
                  what, pass, r, G[r], rowj[r]);
        ac_workspace_free(&ws);
        ac_program_free(&p);
    }
    free(X); free(rowy); free(rowj); free(Y); free(G); free(GS); free(W); free(sumj); free(scale); free(Xb); free(rowabs);
}

static void test_random_graphs(int count)
{
    graph *g = malloc(sizeof *g);
    int i;
    char what[64];
    for (i = 0; i < count; ++i) {
        int special = i % 3 == 0 ? 0 : 15;
        random_graph(g, special, 1);
        snprintf(what, sizeof what, "random graph %d", i);
        check_against_tape(g, what);
        if (special == 0 || i % 10 == 1) check_batched(g, what);
        ac_tape_free(&g->t);
    }
    free(g);
}

int main(int argc, char **argv)
{
    int graphs = argc > 1 ? atoi(argv[1]) : 3000, wide;
    for (wide = 0; wide < 2; ++wide) {     /* every tape narrow, then every tape wide */
        tb_widen_at = wide ? 0 : -1;
        test_every_opcode();
        test_nary_and_sharing();
        test_passes();
        test_no_leak_between_outputs();
        test_guards();
        test_custom();
        test_interrupt();
        test_errors();
        test_shared_input();
    }
    tb_widen_at = -1;
    test_wide_references();
    test_pool();
    test_random_graphs(graphs);       /* half of them cross into the wide layout */
    test_program_finish(graphs / 3);
    test_program_bytes(graphs / 3);
    printf("%d checks, %d failures; largest |difference| / (scale + |a| + |b|) where order may differ: %.3g\n",
           checks, failures, max_rel_seen);
    return failures != 0;
}
