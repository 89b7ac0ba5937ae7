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
 * This file holds the plan (which slots vary), the per-thread buffers, the
 * loop over a thread's blocks and the reductions; the per-instruction block
 * kernels are in replay_kernels.c.  Reads the program and the caller's
 * arrays; allocates its buffers before any row is evaluated; calls only the
 * ac_hooks.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* posix_memalign */
#endif
#include <stdlib.h>
#include <string.h>
#include "replay_block.h"


/* ---- the plan: which slots vary by row ----------------------------------- */

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
 * On the MLP loss (docs/replay.md) 128 rows ran 1.36x faster than 32 and
 * 1.09x faster than 64; 256 and 512 were no faster. */
#define RP_BLOCK_BYTES (512 * 1024)

static int32_t rp_default_block(const rp_plan *pl, int64_t rows, int nthreads)
{
    double row_bytes = 8.0 * (2.0 * pl->n_lanes) + 8.0;
    int64_t per_thread = (rows + (nthreads > 1 ? nthreads : 1) - 1) / (nthreads > 1 ? nthreads : 1);
    int32_t W = AC_REPLAY_DEFAULT_BLOCK;
    while (W > 16 && W * row_bytes > RP_BLOCK_BYTES) W /= 2;
    while (W > 8 && W / 2 >= per_thread) W /= 2;     /* few rows: no wider than they need */
    return W;
}

/* ---- per-thread state ---------------------------------------------------- */

static void rp_thread_free(rp_thread *th)
{
    if (th->own_mem) free(th->mem);
    th->mem = NULL;
}

static int rp_alloc64(void **q, size_t bytes)
{
#if defined(_WIN32) && !defined(__MINGW32__)
    *q = malloc(bytes);
    return *q == NULL;
#else
    return posix_memalign(q, 64, bytes);
#endif
}

/* Carve `count` items of `item` bytes from the thread's block, 64-byte aligned. */
static void *rp_carve(char **at, size_t count, size_t item)
{
    void *q = *at;
    *at += (count * item + 63) & ~(size_t)63;
    return q;
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
    return th->acc + ((size_t)j * pl->n_acc + (size_t)pl->lane[s]) * RP_ACC;
}

static int rp_thread_init(rp_thread *th, const rp_plan *pl)
{
    const ac_program *p = pl->p;
    int32_t m = p->n_outputs, base = p->n_inputs + p->n_consts, k, j, at = 0;
    size_t W = (size_t)pl->stride, bytes = 0, M = (size_t)m;
    char *cut = NULL;
    int pass;
    /* one block: measure it (pass 0), then carve it (pass 1) */
    for (pass = 0; pass < 2; ++pass) {
        char *start = cut;
        th->vval = rp_carve(&cut, (size_t)pl->n_lanes * W, sizeof *th->vval);
        th->vadj = rp_carve(&cut, (size_t)pl->n_lanes * W, sizeof *th->vadj);
        th->acc = rp_carve(&cut, M * (size_t)pl->n_acc * RP_ACC, sizeof *th->acc);
        th->gsum = rp_carve(&cut, M * (size_t)p->n_inputs, sizeof *th->gsum);
        th->ysum = rp_carve(&cut, M, sizeof *th->ysum);
        th->n_rev = rp_carve(&cut, M, sizeof *th->n_rev);
        th->fwd = rp_carve(&cut, (size_t)pl->n_varying, sizeof *th->fwd);
        th->rev = rp_carve(&cut, M * (size_t)pl->n_varying, sizeof *th->rev);
        th->nv = rp_carve(&cut, (size_t)pl->n_nary_args, sizeof *th->nv);
        th->nu = rp_carve(&cut, (size_t)pl->n_nary_args, sizeof *th->nu);
        th->ng = rp_carve(&cut, M * (size_t)pl->n_nary_args, sizeof *th->ng);
        th->scratch = rp_carve(&cut, 2 * (size_t)pl->max_arity + 2, sizeof *th->scratch);
        if (pass == 0) {
            bytes = (size_t)(cut - start) + 64;
            th->mem = pl->pool_owned ? rp_pool_buffer(th->index, bytes) : NULL;
            th->own_mem = th->mem == NULL;
            if (th->own_mem && rp_alloc64(&th->mem, bytes) != 0) {
                th->mem = NULL;
                return -1;
            }
            cut = th->mem;
        }
    }
    /* what accumulates starts at 0 (acc, gsum, ysum and n_rev are adjacent) */
    memset(th->acc, 0, (size_t)((char *)th->fwd - (char *)th->acc));
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
    for (j = 0; j < pl->mg; ++j) {
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

/* Record how this thread's rows ended, and stop the threads after it
 * (their rows come later), or every thread (interrupted). */
static void rp_thread_fail(rp_thread *th, int code, int64_t row, int32_t guard, int32_t custom, const char *what)
{
    int seen = RP_LOAD(&th->pl->stop_below), want = code == AC_RP_INTERRUPTED ? -1 : th->index;
    th->st.code = code;
    th->st.row = row;
    th->st.guard = guard;
    th->st.custom = custom;
    th->st.what = what;
    while (want < seen && !RP_CAS(&th->pl->stop_below, &seen, want)) {}
}

/* An earlier thread failed, or the caller interrupted: leave.  Thread 0
 * (the calling thread) asks the poll hook every poll_blocks blocks. */
static int rp_should_stop(rp_thread *th, int64_t block)
{
    rp_plan *pl = th->pl;
    if (th->index > RP_LOAD(&pl->stop_below)) {
        th->st.code = RP_STOPPED;
        return 1;
    }
    if (th->index == 0 && block > 0 && block % pl->poll_blocks == 0 && rp_poll(pl->hooks)) {
        rp_thread_fail(th, AC_RP_INTERRUPTED, 0, 0, 0, "interrupted");
        return 1;
    }
    return 0;
}

static void rp_run_rows(rp_thread *th)
{
    rp_plan *pl = th->pl;
    const ac_program *p = pl->p;
    const ac_batch *b = pl->b;
    int32_t m = p->n_outputs, mg = pl->mg, nin = p->n_inputs, W = pl->W, k, j, r, n, g = 0;
    size_t stride = (size_t)pl->stride;
    int64_t r0;

    for (r0 = th->row0; r0 < th->row1; r0 += W) {
        if (rp_should_stop(th, (r0 - th->row0) / W)) return;
        n = th->row1 - r0 < W ? (int32_t)(th->row1 - r0) : W;
        /* inputs */
        for (k = 0; k < nin; ++k) {
            double *RP_RESTRICT dst;
            if (pl->uniform[k]) continue;
            dst = th->vval + (size_t)pl->lane[k] * stride;
            if (b->batched == NULL || b->batched[k]) {
                int32_t c = pl->column[k];
                int64_t step = b->x_cols ? b->x_stride[c] : pl->n_batched;
                const double *src = b->x_cols ? b->x_cols[c] + r0 * step : b->x + r0 * step + c;
                for (r = 0; r < n; ++r) dst[r] = src[(int64_t)r * step];
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
        for (j = 0; j < mg; ++j) {
            int32_t s = p->outputs[j];
            const rp_step *rev = th->rev + (size_t)j * pl->n_varying;
            double *seed;
            memset(th->vadj, 0, (size_t)pl->n_lanes * stride * sizeof *th->vadj);
            seed = rp_adj_ptr(pl, th, j, s);
            if (seed != NULL) {
                if (pl->uniform[s])
                    for (r = 0; r < n; ++r) seed[r % RP_ACC] += b->weight ? b->weight[r0 + r] : 1.0;
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
                    for (r = 0; r < n; ++r) b->grad_rows[((r0 + r) * mg + j) * nin + k] = ga[r];
                acc = th->gsum[(size_t)j * nin + k];
                for (r = 0; r < n; ++r) acc += ga[r];
                th->gsum[(size_t)j * nin + k] = acc;
            }
        }
    }
}

/* One thread's task: its buffers, then its rows. */
static void rp_thread_task(void *arg)
{
    rp_thread *th = arg;
    if (rp_thread_init(th, th->pl) < 0) {
        rp_thread_fail(th, AC_RP_NOMEM, th->row0, 0, 0, "out of memory for the batch buffers");
        return;
    }
    rp_run_rows(th);
}

/* ---- ac_eval_batch -------------------------------------------------------- */

static int rp_check_batch(const ac_program *p, const ac_batch *b, const ac_hooks *hooks, ac_status *st)
{
    int32_t k, nb = 0;
    if (b->rows < 0) return rp_fail(st, AC_RP_INVALID, -1, "a negative number of rows");
    if (b->block < 0 || b->block > AC_REPLAY_MAX_BLOCK)
        return rp_fail(st, AC_RP_INVALID, -1, "block must be 0 (the default) or 1 to AC_REPLAY_MAX_BLOCK");
    for (k = 0; k < p->n_inputs; ++k) nb += b->batched == NULL || b->batched[k] != 0;
    if (b->rows > 0 && nb > 0 && b->x == NULL && b->x_cols == NULL)
        return rp_fail(st, AC_RP_INVALID, -1, "per-row inputs but no x");
    if (b->x_cols != NULL && b->x_stride == NULL) return rp_fail(st, AC_RP_INVALID, -1, "x_cols without x_stride");
    if (b->grad_outputs < 0) return rp_fail(st, AC_RP_INVALID, -1, "a negative grad_outputs");
    if (nb < p->n_inputs && b->shared == NULL) return rp_fail(st, AC_RP_INVALID, -1, "shared inputs but no shared");
    if (p->n_custom > 0 && (hooks == NULL || hooks->forward == NULL
                            || ((b->grad_rows || b->grad_sum) && hooks->backward == NULL)))
        return rp_fail(st, AC_RP_INVALID, -1, "the program calls Functions but no hooks were given");
    return 0;
}

static void rp_fill_batch_nan(const ac_program *p, const ac_batch *b)
{
    int64_t m = p->n_outputs, n = p->n_inputs;
    int64_t mg = b->grad_outputs > 0 && b->grad_outputs < m ? b->grad_outputs : m;
    rp_fill_nan(b->y, b->rows * m);
    rp_fill_nan(b->y_sum, m);
    rp_fill_nan(b->grad_rows, b->rows * mg * n);
    rp_fill_nan(b->grad_sum, mg * n);
}

/* Summed mode, after the rows: the reverse of the uniform instructions,
 * once per output, on the adjoints the rows gathered. */
static int rp_hoisted_reverse(const rp_plan *pl, rp_thread *ths, int nth, double *adj, double *scratch,
                              ac_status *st)
{
    const ac_program *p = pl->p;
    const ac_batch *b = pl->b;
    int32_t nin = p->n_inputs, base = nin + p->n_consts, j, s, k;
    int t;
    for (j = 0; j < pl->mg; ++j) {
        memset(adj, 0, (size_t)p->n_slots * sizeof *adj);
        for (s = 0; s < p->n_slots; ++s) {
            if (!pl->uniform[s] || pl->lane[s] < 0) continue;
            for (t = 0; t < nth; ++t) {
                const double *lanes = ths[t].acc + ((size_t)j * pl->n_acc + pl->lane[s]) * RP_ACC;
                double sum = 0.0;
                int32_t r;
                for (r = 0; r < RP_ACC; ++r) sum += lanes[r];
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
    pl.mg = b->grad_outputs > 0 && b->grad_outputs < m ? b->grad_outputs : m;
    pl.pool_owned = rp_pool_acquire();
    if (rp_plan_build(&pl, p, b) < 0) goto nomem;
    pl.W = b->block > 0 ? b->block : rp_default_block(&pl, b->rows, b->nthreads);
    pl.stride = ((pl.W + 7) & ~7) + 8;   /* + one cache line: lanes of different slots never 4 KiB apart */
    blocks = (b->rows + pl.W - 1) / pl.W;
    nth = b->nthreads > 1 ? b->nthreads : 1;
    if (nth > blocks) nth = blocks > 0 ? (int)blocks : 1;
    chunk = (blocks + nth - 1) / nth * pl.W;

    adj = malloc(((size_t)p->n_slots + 1) * sizeof *adj);
    scratch = malloc((2 * (size_t)rp_max_custom_arity(p) + 2) * sizeof *scratch);
    ths = calloc((size_t)nth, sizeof *ths);
    if (!adj || !scratch || !ths) goto nomem;
    pl.stop_below = nth;
    pl.poll_blocks = AC_REPLAY_POLL_EVERY / ((int64_t)pl.W * (pl.n_varying + 1)) + 1;
    for (t = 0; t < nth; ++t) {
        ths[t].pl = &pl;
        ths[t].index = t;
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

    /* the rows: each thread its own buffers and a contiguous range */
    rp_parallel(rp_thread_task, ths, sizeof *ths, nth, pl.pool_owned);
    for (t = 0; t < nth; ++t)
        if (ths[t].st.code == AC_RP_NOMEM) goto nomem;
    for (t = 0; t < nth; ++t) {
        /* threads hold ascending rows: the first failure is the earliest */
        if (ths[t].st.code != AC_RP_OK && ths[t].st.code != RP_STOPPED) {
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
        for (j = 0; j < pl.mg; ++j)
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
    if (pl.pool_owned) rp_pool_release();
    free(ths);
    free(adj);
    free(scratch);
    rp_plan_free(&pl);
    return code;
}
