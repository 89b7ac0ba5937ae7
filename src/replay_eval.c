/* replay_eval.c -- ac_eval: one row of a compiled program, values and Jacobian.
 *
 * The scalar sweeps: a forward pass over every instruction, the guards,
 * then per output a reverse pass over the instructions that output reaches
 * (and that depend on an input).  Touches only the program (read) and the
 * caller's workspace; allocates nothing after ac_workspace_init.
 */
#include <stdlib.h>
#include <string.h>
#include "replay_sweep.h"

int ac_workspace_init(ac_workspace *ws, const ac_program *p)
{
    int32_t arity = rp_max_custom_arity(p);
    memset(ws, 0, sizeof *ws);
    ws->prog = p;
    ws->val = malloc(((size_t)p->n_slots + 1) * sizeof *ws->val);
    ws->adj = malloc(((size_t)p->n_slots + 1) * sizeof *ws->adj);
    ws->active = malloc((size_t)p->n_instr + 1);
    ws->scratch = malloc((2 * (size_t)arity + 2) * sizeof *ws->scratch);
    if (!ws->val || !ws->adj || !ws->active || !ws->scratch) {
        ac_workspace_free(ws);
        return AC_RP_NOMEM;
    }
    memcpy(ws->val + p->n_inputs, p->consts, (size_t)p->n_consts * sizeof *ws->val);
    rp_activity(p, NULL, ws->active);
    return AC_RP_OK;
}

void ac_workspace_free(ac_workspace *ws)
{
    free(ws->val);
    free(ws->adj);
    free(ws->active);
    free(ws->scratch);
    memset(ws, 0, sizeof *ws);
}

/* adj = d(output j)/d(slot) for every slot the output depends on. */
static int rp_reverse_output(const ac_program *p, ac_workspace *ws, const ac_hooks *hooks, int32_t j,
                             int32_t *failed_at)
{
    int32_t base = p->n_inputs + p->n_consts, end = p->rev_end[j], i;
    const double *val = ws->val;
    double *adj = ws->adj;
    const uint8_t *active = ws->active;
    memset(adj, 0, ((size_t)base + (size_t)end) * sizeof *adj);
    adj[p->outputs[j]] = 1.0;
    if (p->mask_at[j] < 0) {
        for (i = end - 1; i >= 0; --i) {
            if (!active[i]) continue;
            if (RP_UNLIKELY(rp_reverse1(p, val, adj, i, base, hooks, ws->scratch))) goto failed;
        }
    } else {
        for (i = end - 1; i >= 0; --i) {
            if (!active[i] || !rp_reaches(p, j, i)) continue;
            if (RP_UNLIKELY(rp_reverse1(p, val, adj, i, base, hooks, ws->scratch))) goto failed;
        }
    }
    return 0;
failed:
    *failed_at = i;
    return 1;
}

int ac_eval(const ac_program *p, ac_workspace *ws, const ac_hooks *hooks,
            const double *x, double *y, double *jac, ac_status *st)
{
    int32_t base = p->n_inputs + p->n_consts, i, j, k;
    int32_t mg = ws->grad_outputs > 0 && ws->grad_outputs < p->n_outputs ? ws->grad_outputs : p->n_outputs;
    double *val = ws->val;

    rp_status_ok(st);
    if (ws->prog != p)
        return rp_fail(st, AC_RP_INVALID, -1, "the workspace was made for another program");
    if (p->n_custom > 0 && (hooks == NULL || hooks->forward == NULL || (jac != NULL && hooks->backward == NULL)))
        return rp_fail(st, AC_RP_INVALID, -1, "the program calls Functions but no hooks were given");
    if (p->n_inputs > 0) memcpy(val, x, (size_t)p->n_inputs * sizeof *val);

    for (i = 0; i < p->n_instr; ++i) {
        if (RP_UNLIKELY(rp_forward1(p, val, i, base, hooks, ws->scratch))) {
            st->custom = rp_custom_id(p, i);
            rp_fail(st, AC_RP_HOOK, -1, "a Function's forward failed");
            goto failed;
        }
        if (RP_UNLIKELY((i & (AC_REPLAY_POLL_EVERY - 1)) == AC_REPLAY_POLL_EVERY - 1) && rp_poll(hooks)) {
            rp_fail(st, AC_RP_INTERRUPTED, -1, "interrupted");
            goto failed;
        }
    }
    for (k = 0; k < p->n_guards; ++k) {
        if (rp_guard_holds(p->guard_kind[k], val[p->guard_a[k]], val[p->guard_b[k]]) != p->guard_expected[k]) {
            st->guard = p->guard_index[k];
            rp_fail(st, AC_RP_GUARD, -1, "a guard recorded while tracing flipped");
            goto failed;
        }
    }
    if (y != NULL)
        for (j = 0; j < p->n_outputs; ++j) y[j] = val[p->outputs[j]];
    if (jac != NULL) {
        for (j = 0; j < mg; ++j) {
            if (RP_UNLIKELY(rp_reverse_output(p, ws, hooks, j, &i))) {
                st->custom = rp_custom_id(p, i);
                rp_fail(st, AC_RP_HOOK, -1, "a Function's backward failed");
                goto failed;
            }
            if (p->rev_end[j] > AC_REPLAY_POLL_EVERY / 4 && rp_poll(hooks)) {
                rp_fail(st, AC_RP_INTERRUPTED, -1, "interrupted");
                goto failed;
            }
            memcpy(jac + (int64_t)j * p->n_inputs, ws->adj, (size_t)p->n_inputs * sizeof *jac);
        }
    }
    return AC_RP_OK;
failed:
    rp_fill_nan(y, p->n_outputs);
    rp_fill_nan(jac, (int64_t)mg * p->n_inputs);
    return st->code;
}
