/* replay_program.c -- the ac_program format: its checks, derived arrays, and freeing.
 *
 * A program is its primary arrays (sizes, op/a/b/args, consts, outputs,
 * guards, custom tables), which a serialiser writes as they are, plus the
 * per-output reverse ranges (rev_end, mask_at, masks), derived from them
 * here.  ac_program_finish checks that the primary arrays describe a valid
 * program (every slot in range, operands below results) before deriving,
 * so a program read back from bytes can never make a sweep read or write
 * outside its buffers.  Touches only the program.
 */
#include <stdlib.h>
#include <string.h>
#include "replay_ir.h"

/* Mark in `mark` (over instructions below `end`) what instruction slot
 * `from` reaches; returns the count. */
static int64_t rp_reach(const ac_program *p, uint8_t *mark, int32_t from, int32_t end)
{
    int32_t base = p->n_inputs + p->n_consts, i;
    int64_t count = 0;
    if (from < base) return 0;
    mark[from - base] = 1;
    for (i = end - 1; i >= 0; --i) {
        if (!mark[i]) continue;
        ++count;
        if (rp_is_nary(p->op[i])) {
            int64_t k;
            for (k = p->a[i]; k < (int64_t)p->a[i] + p->b[i]; ++k)
                if (p->args[k] >= base) mark[p->args[k] - base] = 1;
        } else {
            if (p->a[i] >= base) mark[p->a[i] - base] = 1;
            if (rp_is_binary(p->op[i]) && p->b[i] >= base) mark[p->b[i] - base] = 1;
        }
    }
    return count;
}

/* Each output's reverse range and, where the output does not reach every
 * instruction below it, its bitmap. */
static int rp_derive_masks(ac_program *p)
{
    int32_t base = p->n_inputs + p->n_consts, j;
    int64_t words_cap = 0;
    uint8_t *mark = calloc((size_t)p->n_instr + 1, 1);
    if (mark == NULL) return -1;
    free(p->masks);
    p->masks = NULL;
    p->n_mask_words = 0;
    for (j = 0; j < p->n_outputs; ++j) {
        int32_t s = p->outputs[j], end = s >= base ? s - base + 1 : 0, i;
        int64_t words = ((int64_t)end + 63) / 64;
        p->rev_end[j] = end;
        p->mask_at[j] = -1;
        if (rp_reach(p, mark, s, end) < end) {
            if (p->n_mask_words + words > words_cap) {
                int64_t cap = 2 * words_cap > p->n_mask_words + words ? 2 * words_cap : p->n_mask_words + words;
                uint64_t *q = (uint64_t)cap > SIZE_MAX / 8 ? NULL : realloc(p->masks, (size_t)cap * 8);
                if (q == NULL) { free(mark); return -1; }
                p->masks = q;
                words_cap = cap;
            }
            p->mask_at[j] = p->n_mask_words;
            memset(p->masks + p->n_mask_words, 0, (size_t)words * 8);
            for (i = 0; i < end; ++i)
                if (mark[i]) p->masks[p->n_mask_words + i / 64] |= (uint64_t)1 << (i % 64);
            p->n_mask_words += words;
        }
        memset(mark, 0, (size_t)end);
    }
    free(mark);
    return 0;
}

/* The primary arrays describe a program the sweeps can run safely. */
static int rp_check_program(const ac_program *p, ac_status *st)
{
    int64_t base, i, k, customs = 0;
    if (p->n_inputs < 0 || p->n_consts < 0 || p->n_instr < 0 || p->n_outputs < 0 || p->n_guards < 0
        || p->n_custom < 0 || p->n_args < 0 || p->n_args > INT32_MAX
        || (int64_t)p->n_inputs + p->n_consts + p->n_instr != p->n_slots)
        return rp_fail(st, AC_RP_INVALID, -1, "the program's sizes are inconsistent");
    if ((p->n_instr && (!p->op || !p->a || !p->b)) || (p->n_args && !p->args) || (p->n_consts && !p->consts)
        || (p->n_outputs && !p->outputs) || (p->n_custom && (!p->custom_instr || !p->custom_node))
        || (p->n_guards && (!p->guard_kind || !p->guard_expected || !p->guard_a || !p->guard_b || !p->guard_index)))
        return rp_fail(st, AC_RP_INVALID, -1, "the program lacks an array");
    base = (int64_t)p->n_inputs + p->n_consts;
    for (i = 0; i < p->n_instr; ++i) {
        int op = p->op[i];
        int64_t a = p->a[i], b = p->b[i], self = base + i;
        if (op >= AC_NUM_OPS) return rp_fail(st, AC_RP_INVALID, i, "an instruction has an unknown opcode");
        if (rp_is_nary(op)) {
            if (a < 0 || b < 0 || a + b > p->n_args || (op == AC_DOT && (b & 1)))
                return rp_fail(st, AC_RP_INVALID, i, "an instruction's operand list is out of range");
            for (k = a; k < a + b; ++k)
                if (p->args[k] < 0 || p->args[k] >= self)
                    return rp_fail(st, AC_RP_INVALID, i, "an instruction's operand is not below it");
            if (op == AC_CUSTOM) {
                if (customs >= p->n_custom || p->custom_instr[customs] != i)
                    return rp_fail(st, AC_RP_INVALID, i, "the custom table does not match the instructions");
                ++customs;
            }
        } else {
            if (a < 0 || a >= self) return rp_fail(st, AC_RP_INVALID, i, "an instruction's operand is not below it");
            if (rp_is_binary(op) && (b < 0 || b >= self))
                return rp_fail(st, AC_RP_INVALID, i, "an instruction's operand is not below it");
            if (rp_is_const_op(op) && (b < p->n_inputs || b >= base))
                return rp_fail(st, AC_RP_INVALID, i, "a constant operand is not a constant slot");
        }
    }
    if (customs != p->n_custom) return rp_fail(st, AC_RP_INVALID, -1, "the custom table does not match the instructions");
    for (k = 0; k < p->n_outputs; ++k)
        if (p->outputs[k] < 0 || p->outputs[k] >= p->n_slots)
            return rp_fail(st, AC_RP_INVALID, k, "an output is not a slot of the program");
    for (k = 0; k < p->n_guards; ++k)
        if (p->guard_kind[k] >= AC_GUARD_NKINDS || p->guard_expected[k] > 1 || p->guard_a[k] < 0
            || p->guard_a[k] >= p->n_slots || p->guard_b[k] < 0 || p->guard_b[k] >= p->n_slots)
            return rp_fail(st, AC_RP_INVALID, k, "a guard is malformed");
    return 0;
}

int ac_program_finish(ac_program *p, ac_status *st)
{
    int code;
    memset(st, 0, sizeof *st);
    st->index = -1;
    st->what = "";
    code = rp_check_program(p, st);
    if (code) return code;
    if (p->rev_end == NULL) p->rev_end = malloc(((size_t)p->n_outputs + 1) * sizeof *p->rev_end);
    if (p->mask_at == NULL) p->mask_at = malloc(((size_t)p->n_outputs + 1) * sizeof *p->mask_at);
    if (p->rev_end == NULL || p->mask_at == NULL || rp_derive_masks(p) < 0)
        return rp_fail(st, AC_RP_NOMEM, -1, "out of memory finishing the program");
    return 0;
}

void ac_program_free(ac_program *p)
{
    free(p->op); free(p->a); free(p->b); free(p->args); free(p->consts);
    free(p->outputs); free(p->rev_end); free(p->mask_at); free(p->masks);
    free(p->guard_kind); free(p->guard_expected); free(p->guard_a); free(p->guard_b);
    free(p->guard_index);
    free(p->custom_instr); free(p->custom_node);
    memset(p, 0, sizeof *p);
}
