/* replay_passes.c -- the optimisation passes of ac_compile, one function each.
 *
 * Each pass walks the intermediate form of replay_ir.h in tape order and
 * either replaces an instruction (repl[i] = an earlier instruction or a
 * constant) or marks what stays; nothing is renumbered here.  AC_CUSTOM
 * instructions (a user's Function, maybe impure) are never folded or merged.
 */
#include <stdlib.h>
#include <string.h>
#include "replay_ir.h"

/* ---- constant folding ---------------------------------------------------- */

/* Instruction i's value if every operand is a constant; 0 if one is not. */
static int rp_fold_value(const rp_ir *ir, int64_t i, double *y)
{
    int op = ir->op[i];
    if (rp_is_nary(op)) {
        const rp_ref *refs = ir->args + ir->a[i];
        int64_t k, m = ir->b[i];
        double acc = 0.0;     /* the order of the sweeps: 0.0 + t0 + t1 + ... */
        for (k = 0; k < m; ++k)
            if (RP_TAG(refs[k]) != RP_CONST) return 0;
        if (op == AC_SUM)
            for (k = 0; k < m; ++k) acc += rp_const_of(ir, refs[k]);
        else
            for (k = 0; k + 1 < m; k += 2) acc += rp_const_of(ir, refs[k]) * rp_const_of(ir, refs[k + 1]);
        *y = acc;
        return 1;
    }
    if (RP_TAG(ir->a[i]) != RP_CONST) return 0;
    if (rp_is_binary(op)) {
        if (RP_TAG(ir->b[i]) != RP_CONST) return 0;
        *y = ac_binary_value(op, rp_const_of(ir, ir->a[i]), rp_const_of(ir, ir->b[i]));
    } else if (rp_is_const_op(op)) {
        *y = ac_const_value(op, rp_const_of(ir, ir->a[i]), rp_const_of(ir, ir->b[i]));
    } else {
        *y = ac_unary_value(op, rp_const_of(ir, ir->a[i]));
    }
    return 1;
}

/* Replace every instruction whose operands are all constants (after the
 * instructions below it were folded) by its value, computed with the same
 * formulas as the sweeps.  Guards on constants only are decided here: one
 * that holds is dropped, one that contradicts its recorded outcome makes
 * the compilation fail. */
int rp_pass_fold(rp_ir *ir, ac_status *st)
{
    int64_t i;
    int32_t j;
    int failed = 0;
    for (i = 0; i < ir->n; ++i) {
        double y;
        if (!rp_kept(ir, i)) continue;
        rp_resolve_operands(ir, i);
        if (ir->op[i] == AC_CUSTOM || !rp_fold_value(ir, i, &y)) continue;
        ir->repl[i] = rp_const(ir, y, &failed);
        if (failed) return rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
    }
    for (j = 0; j < ir->n_guards; ++j) {
        rp_ref a = rp_resolve(ir, ir->guard_a[j]), b = rp_resolve(ir, ir->guard_b[j]);
        if (RP_TAG(a) != RP_CONST || RP_TAG(b) != RP_CONST) continue;
        if (rp_guard_holds(ir->guard_kind[j], rp_const_of(ir, a), rp_const_of(ir, b)) != ir->guard_expected[j])
            return rp_fail(st, AC_RP_INVALID, j, "a guard on constants contradicts its recorded outcome");
        ir->guard_dropped[j] = 1;
    }
    return 0;
}

/* ---- common-subexpression elimination ------------------------------------ */

static uint64_t rp_hash_instr(const rp_ir *ir, int64_t i)
{
    uint64_t h = 0x9E3779B97F4A7C15ull * (uint64_t)(ir->op[i] + 1);
    if (rp_is_nary(ir->op[i])) {
        const rp_ref *refs = ir->args + ir->a[i];
        int64_t k;
        h ^= ir->b[i];
        for (k = 0; k < (int64_t)ir->b[i]; ++k) h = (h ^ refs[k]) * 0x100000001B3ull;
    } else {
        h = (h ^ ir->a[i]) * 0x100000001B3ull;
        h = (h ^ ir->b[i]) * 0x100000001B3ull;
    }
    return h ^ (h >> 29);
}

static int rp_same_instr(const rp_ir *ir, int64_t i, int64_t j)
{
    if (ir->op[i] != ir->op[j] || ir->b[i] != ir->b[j]) return 0;
    if (rp_is_nary(ir->op[i]))
        return memcmp(ir->args + ir->a[i], ir->args + ir->a[j], (size_t)ir->b[i] * sizeof *ir->args) == 0;
    return ir->a[i] == ir->a[j];
}

/* Replace each instruction by an earlier one with the same opcode and the
 * same operands (constants are pooled by bits, so equal constants are the
 * same operand).  Tape order means the earlier one is always the survivor. */
int rp_pass_cse(rp_ir *ir, ac_status *st)
{
    int64_t cap = 16, i;
    int32_t *table;
    while (cap < 2 * ir->n) cap *= 2;
    table = calloc((size_t)cap, sizeof *table);
    if (table == NULL) return rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
    for (i = 0; i < ir->n; ++i) {
        int64_t h;
        if (!rp_kept(ir, i)) continue;
        rp_resolve_operands(ir, i);
        if (ir->op[i] == AC_CUSTOM) continue;
        h = (int64_t)(rp_hash_instr(ir, i) & (uint64_t)(cap - 1));
        while (table[h] && !rp_same_instr(ir, i, table[h] - 1)) h = (h + 1) & (cap - 1);
        if (table[h]) ir->repl[i] = RP_INSTR | (rp_ref)(table[h] - 1);
        else table[h] = (int32_t)(i + 1);
    }
    free(table);
    return 0;
}

/* ---- dead-node elimination ----------------------------------------------- */

static void rp_mark_live(rp_ir *ir, rp_ref r)
{
    r = rp_resolve(ir, r);
    if (RP_TAG(r) == RP_INSTR) ir->live[RP_INDEX(r)] = 1;
}

/* live[i] = 1 for what an output or a remaining guard depends on, after
 * the replacements of the passes before. */
int rp_pass_dce(rp_ir *ir, ac_status *st)
{
    int64_t i, k;
    int32_t j;
    (void)st;
    memset(ir->live, 0, (size_t)ir->n);
    for (j = 0; j < ir->n_outputs; ++j) rp_mark_live(ir, ir->outputs[j]);
    for (j = 0; j < ir->n_guards; ++j) {
        if (ir->guard_dropped[j]) continue;
        rp_mark_live(ir, ir->guard_a[j]);
        rp_mark_live(ir, ir->guard_b[j]);
    }
    for (i = ir->n - 1; i >= 0; --i) {
        if (!ir->live[i]) continue;
        rp_resolve_operands(ir, i);
        if (rp_is_nary(ir->op[i])) {
            for (k = 0; k < (int64_t)ir->b[i]; ++k) rp_mark_live(ir, ir->args[ir->a[i] + k]);
        } else {
            rp_mark_live(ir, ir->a[i]);
            if (rp_is_binary(ir->op[i])) rp_mark_live(ir, ir->b[i]);
        }
    }
    return 0;
}
