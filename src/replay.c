/* replay.c -- ac_compile: from the tape to an ac_program.
 *
 * Reads the tape (never writes it, never keeps a pointer into it), builds
 * the intermediate form of replay_ir.h, runs the passes of
 * replay_passes.c, and emits the flat program (whose checks and derived
 * arrays are in replay_program.c).  The sweeps that evaluate a program live
 * in replay_eval.c (one row) and replay_batch.c (many rows).
 */
#include <stdlib.h>
#include <string.h>
#include "replay_ir.h"

/* ---- small helpers ------------------------------------------------------- */

/* malloc for arrays: checks the multiplication; NULL on failure */
static void *rp_alloc(int64_t count, size_t item)
{
    if (count < 1) count = 1;
    if ((uint64_t)count > SIZE_MAX / item) return NULL;
    return malloc((size_t)count * item);
}

static void *rp_zalloc(int64_t count, size_t item)
{
    if (count < 1) count = 1;
    if ((uint64_t)count > SIZE_MAX / item) return NULL;
    return calloc((size_t)count, item);
}

static uint64_t rp_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static void rp_ir_free(rp_ir *ir)
{
    free(ir->op); free(ir->a); free(ir->b); free(ir->node); free(ir->repl); free(ir->live);
    free(ir->args);
    free(ir->consts); free(ir->cbits); free(ir->cslot);
    free(ir->outputs);
    free(ir->guard_a); free(ir->guard_b);
    free(ir->guard_kind); free(ir->guard_expected); free(ir->guard_dropped);
    memset(ir, 0, sizeof *ir);
}

/* ---- the constant pool --------------------------------------------------- */

static int rp_ctable_grow(rp_ir *ir)
{
    int64_t cap = ir->ctable_cap ? 2 * ir->ctable_cap : 256, k;
    uint64_t *bits = rp_alloc(cap, sizeof *bits);
    int32_t *slot = rp_zalloc(cap, sizeof *slot);
    if (bits == NULL || slot == NULL) {
        free(bits); free(slot);
        return -1;
    }
    for (k = 0; k < ir->nconsts; ++k) {    /* re-insert every constant */
        uint64_t b;
        int64_t h;
        memcpy(&b, &ir->consts[k], sizeof b);
        h = (int64_t)(rp_mix(b) & (uint64_t)(cap - 1));
        while (slot[h]) h = (h + 1) & (cap - 1);
        bits[h] = b;
        slot[h] = (int32_t)(k + 1);
    }
    free(ir->cbits); free(ir->cslot);
    ir->cbits = bits;
    ir->cslot = slot;
    ir->ctable_cap = cap;
    return 0;
}

rp_ref rp_const(rp_ir *ir, double c, int *failed)
{
    uint64_t bits;
    int64_t h;
    memcpy(&bits, &c, sizeof bits);
    if (2 * (ir->nconsts + 1) > ir->ctable_cap && rp_ctable_grow(ir) < 0) goto fail;
    h = (int64_t)(rp_mix(bits) & (uint64_t)(ir->ctable_cap - 1));
    while (ir->cslot[h]) {
        if (ir->cbits[h] == bits) return RP_CONST | (rp_ref)(ir->cslot[h] - 1);
        h = (h + 1) & (ir->ctable_cap - 1);
    }
    if (ir->nconsts >= RP_MAX_INDEX) goto fail;
    if (ir->nconsts == ir->consts_cap) {
        int64_t cap = ir->consts_cap ? 2 * ir->consts_cap : 64;
        double *q = ir->consts;
        if ((uint64_t)cap > SIZE_MAX / sizeof *q) goto fail;
        q = realloc(q, (size_t)cap * sizeof *q);
        if (q == NULL) goto fail;
        ir->consts = q;
        ir->consts_cap = cap;
    }
    ir->consts[ir->nconsts] = c;
    ir->cbits[h] = bits;
    ir->cslot[h] = (int32_t)(ir->nconsts + 1);
    return RP_CONST | (rp_ref)ir->nconsts++;
fail:
    *failed = 1;
    return 0;
}

void rp_resolve_operands(rp_ir *ir, int64_t i)
{
    int op = ir->op[i];
    if (rp_is_nary(op)) {
        rp_ref *refs = ir->args + ir->a[i];
        int64_t k;
        for (k = 0; k < (int64_t)ir->b[i]; ++k) refs[k] = rp_resolve(ir, refs[k]);
    } else {
        ir->a[i] = rp_resolve(ir, ir->a[i]);
        if (op >= RP_FIRST_BINARY) ir->b[i] = rp_resolve(ir, ir->b[i]);
    }
}

int64_t rp_count_kept(const rp_ir *ir)
{
    int64_t i, n = 0;
    for (i = 0; i < ir->n; ++i) n += rp_kept(ir, i);
    return n;
}

/* ---- reading the tape ---------------------------------------------------- */

/* The tape is read through tape.h's accessors (ac_ref_a, ac_arg, ...), so a
 * tape in either layout compiles; references are ac_refs. */

/* A reference on the tape: node r below `below`, or a leaf entry. */
static int rp_valid_ref(const ac_tape *t, ac_ref r, ac_node below)
{
    if (r & AC_CONST_BIT) return 0;
    if (ac_ref_is_leaf(r)) return ac_ref_index(r) < t->nleaves;
    return (ac_node)r < below;
}

/* Node i is well formed: a known opcode, operands below it, constants and
 * operand lists inside their arrays. */
static int rp_valid_node(const ac_tape *t, ac_node i)
{
    ac_code w = t->code[i];
    int op = ac_opcode(w);
    if (op >= AC_NUM_OPS) return 0;
    if (rp_is_nary(op)) {
        uint64_t off = ac_offset(w);
        int64_t m, k;
        if ((int64_t)off >= t->nargs) return 0;
        m = ac_nargs(t, i);
        if (m < 0 || m > t->nargs - (int64_t)off - 1) return 0;
        if (op == AC_DOT && (m & 1)) return 0;
        for (k = 0; k < m; ++k) {
            ac_ref r = ac_arg(t, i, k);
            if (r & AC_CONST_BIT) {
                if ((int64_t)(r & ~AC_CONST_BIT) >= t->nconsts) return 0;
            } else if (!rp_valid_ref(t, r, i)) {
                return 0;
            }
        }
        return 1;
    }
    if (!rp_valid_ref(t, ac_ref_a(t, i), i)) return 0;
    if (rp_is_binary(op)) return rp_valid_ref(t, ac_ref_b(t, i), i);
    if (rp_is_const_op(op)) return ac_const_b(t, i) < t->nconsts;
    return 1;
}

/* Mark keep[i] for every node in [0, hi] that the roots (already marked)
 * depend on, checking each node reached; with all != 0 keep every node. */
static int rp_mark_tape(const ac_tape *t, uint8_t *keep, ac_node hi, int all, ac_status *st)
{
    ac_node i;
    for (i = hi; i >= 0; --i) {
        int op;
        if (all) keep[i] = 1;
        if (!keep[i]) continue;
        if (!rp_valid_node(t, i)) return rp_fail(st, AC_RP_INVALID, i, "the tape holds a malformed node");
        op = ac_opcode(t->code[i]);
        if (rp_is_nary(op)) {
            int64_t k, m = ac_nargs(t, i);
            for (k = 0; k < m; ++k) {
                ac_ref r = ac_arg(t, i, k);
                if (!(r & (AC_CONST_BIT | AC_LEAF_BIT))) keep[r] = 1;
            }
        } else {
            ac_ref ra = ac_ref_a(t, i);
            if (!ac_ref_is_leaf(ra)) keep[ra] = 1;
            if (rp_is_binary(op)) {
                ac_ref rb = ac_ref_b(t, i);
                if (!ac_ref_is_leaf(rb)) keep[rb] = 1;
            }
        }
    }
    return 0;
}

/* A tape reference as an IR reference. */
static rp_ref rp_from_tape(rp_ir *ir, const ac_tape *t, const int32_t *leaf_input,
                           const int32_t *node_instr, ac_ref r, int *failed)
{
    if (ac_ref_is_leaf(r)) {
        int64_t k = ac_ref_index(r);
        if (leaf_input != NULL && leaf_input[k] >= 0) return RP_INPUT | (rp_ref)leaf_input[k];
        return rp_const(ir, t->leaf_val[k], failed);
    }
    return RP_INSTR | (rp_ref)node_instr[r];
}

static int rp_alloc_instructions(rp_ir *ir, int64_t n, int64_t nargs)
{
    ir->cap = n;
    ir->op = rp_alloc(n, sizeof *ir->op);
    ir->a = rp_alloc(n, sizeof *ir->a);
    ir->b = rp_alloc(n, sizeof *ir->b);
    ir->node = rp_alloc(n, sizeof *ir->node);
    ir->repl = rp_alloc(n, sizeof *ir->repl);
    ir->live = rp_zalloc(n, sizeof *ir->live);
    ir->args = rp_alloc(nargs, sizeof *ir->args);
    ir->args_cap = nargs;
    if (!ir->op || !ir->a || !ir->b || !ir->node || !ir->repl || !ir->live || !ir->args) return -1;
    return 0;
}

/* Copy the kept nodes of [0, hi] into ir, in tape order. */
static int rp_extract(rp_ir *ir, const ac_tape *t, const uint8_t *keep, ac_node hi,
                      const int32_t *leaf_input, int32_t *node_instr, ac_status *st)
{
    int64_t n = 0, nargs = 0;
    ac_node i;
    int failed = 0;
    for (i = 0; i <= hi; ++i) {
        if (!keep[i]) continue;
        ++n;
        if (rp_is_nary(ac_opcode(t->code[i]))) nargs += ac_nargs(t, i);
    }
    if (n > RP_MAX_INDEX || nargs > INT32_MAX)
        return rp_fail(st, AC_RP_INVALID, -1, "the graph is too large to compile");
    if (rp_alloc_instructions(ir, n, nargs) < 0)
        return rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
    for (i = 0; i <= hi; ++i) {
        int op;
        int64_t j;
        if (!keep[i]) continue;
        op = ac_opcode(t->code[i]);
        j = ir->n++;
        node_instr[i] = (int32_t)j;
        ir->op[j] = (uint8_t)op;
        ir->node[j] = i;
        ir->repl[j] = RP_INSTR | (rp_ref)j;
        if (rp_is_nary(op)) {
            int64_t k, m = ac_nargs(t, i);
            ir->a[j] = (rp_ref)ir->nargs;
            ir->b[j] = (rp_ref)m;
            for (k = 0; k < m; ++k) {
                ac_ref r = ac_arg(t, i, k);
                ir->args[ir->nargs++] = (r & AC_CONST_BIT)
                    ? rp_const(ir, t->consts[r & ~AC_CONST_BIT], &failed)
                    : rp_from_tape(ir, t, leaf_input, node_instr, r, &failed);
            }
        } else {
            ir->a[j] = rp_from_tape(ir, t, leaf_input, node_instr, ac_ref_a(t, i), &failed);
            if (rp_is_binary(op))
                ir->b[j] = rp_from_tape(ir, t, leaf_input, node_instr, ac_ref_b(t, i), &failed);
            else if (rp_is_const_op(op))
                ir->b[j] = rp_const(ir, t->consts[ac_const_b(t, i)], &failed);
            else
                ir->b[j] = 0;
        }
        if (failed) return rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
    }
    return 0;
}

/* Outputs and guards as IR references (after rp_extract). */
static int rp_roots(rp_ir *ir, const ac_tape *t, const ac_ref *outputs, const int32_t *leaf_input,
                    const ac_guard *guards, const int32_t *node_instr, ac_status *st)
{
    int32_t j;
    int failed = 0;
    for (j = 0; j < ir->n_outputs; ++j)
        ir->outputs[j] = rp_from_tape(ir, t, leaf_input, node_instr, outputs[j], &failed);
    for (j = 0; j < ir->n_guards; ++j) {
        const ac_guard *g = &guards[j];
        ir->guard_a[j] = g->a == AC_GUARD_CONST ? rp_const(ir, g->a_value, &failed)
                                                : rp_from_tape(ir, t, leaf_input, node_instr, g->a, &failed);
        if (g->kind == AC_GUARD_TRUTH)
            ir->guard_b[j] = ir->guard_a[j];
        else
            ir->guard_b[j] = g->b == AC_GUARD_CONST ? rp_const(ir, g->b_value, &failed)
                                                    : rp_from_tape(ir, t, leaf_input, node_instr, g->b, &failed);
        ir->guard_kind[j] = (uint8_t)g->kind;
        ir->guard_expected[j] = g->expected != 0;
        ir->guard_dropped[j] = 0;
    }
    return failed ? rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph") : 0;
}

/* ---- checking the arguments ---------------------------------------------- */

static int rp_valid_root(const ac_tape *t, ac_ref r)
{
    if (r & AC_CONST_BIT) return 0;
    if (ac_ref_is_leaf(r)) return ac_ref_index(r) < t->nleaves;
    return (ac_node)r < t->size;
}

static int rp_check_args(const ac_tape *t, const ac_ref *outputs, int32_t n_outputs,
                         const int32_t *leaf_input, int32_t n_inputs,
                         const ac_guard *guards, int32_t n_guards, ac_status *st)
{
    int64_t k;
    if (n_outputs < 0 || n_inputs < 0 || n_guards < 0 || n_inputs > RP_MAX_INDEX)
        return rp_fail(st, AC_RP_INVALID, -1, "negative or too large count of outputs, inputs or guards");
    if ((n_outputs > 0 && outputs == NULL) || (n_guards > 0 && guards == NULL))
        return rp_fail(st, AC_RP_INVALID, -1, "missing outputs or guards array");
    for (k = 0; k < n_outputs; ++k)
        if (!rp_valid_root(t, outputs[k]))
            return rp_fail(st, AC_RP_INVALID, k, "an output is neither a node nor a leaf entry of the tape");
    for (k = 0; k < n_guards; ++k) {
        const ac_guard *g = &guards[k];
        if (g->kind < 0 || g->kind >= AC_GUARD_NKINDS)
            return rp_fail(st, AC_RP_INVALID, k, "a guard has an unknown comparison kind");
        if (g->a != AC_GUARD_CONST && !rp_valid_root(t, g->a))
            return rp_fail(st, AC_RP_INVALID, k, "a guard operand is not on the tape");
        if (g->kind != AC_GUARD_TRUTH && g->b != AC_GUARD_CONST && !rp_valid_root(t, g->b))
            return rp_fail(st, AC_RP_INVALID, k, "a guard operand is not on the tape");
    }
    if (leaf_input != NULL)
        for (k = 0; k < t->nleaves; ++k)
            if (leaf_input[k] < -1 || leaf_input[k] >= n_inputs)
                return rp_fail(st, AC_RP_INVALID, k, "a leaf entry maps to an input position out of range");
    return 0;
}

/* ---- emitting the program ------------------------------------------------ */

/* Slot of an IR reference, given the new instruction numbering. */
static int32_t rp_slot(const rp_ir *ir, const int32_t *new_instr, const int32_t *new_const,
                       int32_t base, rp_ref r)
{
    int64_t k = RP_INDEX(r);
    switch (RP_TAG(r)) {
    case RP_INPUT: return (int32_t)k;
    case RP_CONST: return ir->n_inputs + new_const[k];
    default: return base + new_instr[k];
    }
}

static int64_t rp_scalar_nodes(const ac_program *p)
{
    int32_t i;
    int64_t n = 0;
    for (i = 0; i < p->n_instr; ++i) {
        if (p->op[i] == AC_SUM) n += p->b[i] > 1 ? p->b[i] - 1 : 0;
        else if (p->op[i] == AC_DOT) n += p->b[i] > 0 ? p->b[i] - 1 : 0;
        else n += 1;
    }
    return n;
}

static int rp_alloc_program(ac_program *p)
{
    int32_t n = p->n_instr, m = p->n_outputs, g = p->n_guards;
    p->op = rp_alloc(n, 1);
    p->a = rp_alloc(n, sizeof *p->a);
    p->b = rp_alloc(n, sizeof *p->b);
    p->args = rp_alloc(p->n_args, sizeof *p->args);
    p->consts = rp_alloc(p->n_consts, sizeof *p->consts);
    p->outputs = rp_alloc(m, sizeof *p->outputs);
    p->guard_kind = rp_alloc(g, 1);
    p->guard_expected = rp_alloc(g, 1);
    p->guard_a = rp_alloc(g, sizeof *p->guard_a);
    p->guard_b = rp_alloc(g, sizeof *p->guard_b);
    p->guard_index = rp_alloc(g, sizeof *p->guard_index);
    p->custom_instr = rp_alloc(p->n_custom, sizeof *p->custom_instr);
    p->custom_node = rp_alloc(p->n_custom, sizeof *p->custom_node);
    if (!p->op || !p->a || !p->b || !p->args || !p->consts || !p->outputs || !p->guard_kind || !p->guard_expected || !p->guard_a || !p->guard_b
        || !p->guard_index || !p->custom_instr || !p->custom_node)
        return -1;
    return 0;
}

/* Number the instructions that stay (`final`): those some output reaches
 * first, then the rest, each group in tape order. */
static void rp_number(const rp_ir *ir, const uint8_t *final, uint8_t *reach, int32_t *new_instr,
                      int32_t *n_instr)
{
    int64_t i, k;
    int32_t next = 0;
    int32_t j;
    for (j = 0; j < ir->n_outputs; ++j)
        if (RP_TAG(ir->outputs[j]) == RP_INSTR) reach[RP_INDEX(ir->outputs[j])] = 1;
    for (i = ir->n - 1; i >= 0; --i) {
        if (!final[i] || !reach[i]) continue;
        if (rp_is_nary(ir->op[i])) {
            for (k = 0; k < (int64_t)ir->b[i]; ++k) {
                rp_ref r = ir->args[ir->a[i] + k];
                if (RP_TAG(r) == RP_INSTR) reach[RP_INDEX(r)] = 1;
            }
        } else {
            if (RP_TAG(ir->a[i]) == RP_INSTR) reach[RP_INDEX(ir->a[i])] = 1;
            if (rp_is_binary(ir->op[i]) && RP_TAG(ir->b[i]) == RP_INSTR) reach[RP_INDEX(ir->b[i])] = 1;
        }
    }
    for (i = 0; i < ir->n; ++i)
        if (final[i] && reach[i]) new_instr[i] = next++;
    for (i = 0; i < ir->n; ++i)
        if (final[i] && !reach[i]) new_instr[i] = next++;
    *n_instr = next;
}

static int rp_emit(rp_ir *ir, unsigned passes, ac_program *p, ac_status *st)
{
    uint8_t *final = rp_zalloc(ir->n, 1), *reach = rp_zalloc(ir->n, 1), *used = rp_zalloc(ir->nconsts, 1);
    int32_t *new_instr = rp_alloc(ir->n, sizeof *new_instr);
    int32_t *new_const = rp_alloc(ir->nconsts, sizeof *new_const);
    int32_t *order = NULL, n_instr = 0, base, j;
    int64_t i, k, nargs = 0, ncustom = 0, nconst = 0;
    int code = AC_RP_NOMEM;

    if (!final || !reach || !used || !new_instr || !new_const) goto done;
    for (j = 0; j < ir->n_outputs; ++j) ir->outputs[j] = rp_resolve(ir, ir->outputs[j]);
    for (j = 0; j < ir->n_guards; ++j) {
        ir->guard_a[j] = rp_resolve(ir, ir->guard_a[j]);
        ir->guard_b[j] = rp_resolve(ir, ir->guard_b[j]);
    }
    for (i = 0; i < ir->n; ++i) {
        if (!rp_kept(ir, i) || ((passes & AC_PASS_DCE) && !ir->live[i])) continue;
        rp_resolve_operands(ir, i);
        final[i] = 1;
    }
    rp_number(ir, final, reach, new_instr, &n_instr);

    /* constants the program uses, in pool order */
#define RP_USE(r) do { if (RP_TAG(r) == RP_CONST) used[RP_INDEX(r)] = 1; } while (0)
    for (i = 0; i < ir->n; ++i) {
        if (!final[i]) continue;
        if (rp_is_nary(ir->op[i])) {
            for (k = 0; k < (int64_t)ir->b[i]; ++k) RP_USE(ir->args[ir->a[i] + k]);
            nargs += ir->b[i];
            ncustom += ir->op[i] == AC_CUSTOM;
        } else {
            RP_USE(ir->a[i]);
            if (!rp_is_nary(ir->op[i]) && ir->op[i] >= RP_FIRST_CONST) RP_USE(ir->b[i]);
        }
    }
    for (j = 0; j < ir->n_outputs; ++j) RP_USE(ir->outputs[j]);
    for (j = 0; j < ir->n_guards; ++j) {
        if (ir->guard_dropped[j]) continue;
        RP_USE(ir->guard_a[j]);
        RP_USE(ir->guard_b[j]);
    }
#undef RP_USE
    for (k = 0; k < ir->nconsts; ++k)
        if (used[k]) new_const[k] = (int32_t)nconst++;

    if ((int64_t)ir->n_inputs + nconst + n_instr >= INT32_MAX) {
        code = rp_fail(st, AC_RP_INVALID, -1, "the graph is too large to compile");
        goto done;
    }
    p->n_inputs = ir->n_inputs;
    p->n_consts = (int32_t)nconst;
    p->n_instr = n_instr;
    p->n_slots = ir->n_inputs + (int32_t)nconst + n_instr;
    p->n_outputs = ir->n_outputs;
    p->n_args = nargs;
    p->n_custom = (int32_t)ncustom;
    p->n_guards = 0;
    for (j = 0; j < ir->n_guards; ++j) p->n_guards += !ir->guard_dropped[j];
    if (rp_alloc_program(p) < 0) goto done;
    base = p->n_inputs + p->n_consts;

    for (k = 0; k < ir->nconsts; ++k)
        if (used[k]) p->consts[new_const[k]] = ir->consts[k];
    order = rp_alloc(n_instr, sizeof *order);
    if (order == NULL) goto done;
    for (i = 0; i < ir->n; ++i)
        if (final[i]) order[new_instr[i]] = (int32_t)i;
    nargs = 0;
    ncustom = 0;
    for (j = 0; j < n_instr; ++j) {
        int64_t s = order[j];
        int op = ir->op[s];
        p->op[j] = (uint8_t)op;
        if (rp_is_nary(op)) {
            p->a[j] = (int32_t)nargs;
            p->b[j] = (int32_t)ir->b[s];
            for (k = 0; k < (int64_t)ir->b[s]; ++k)
                p->args[nargs++] = rp_slot(ir, new_instr, new_const, base, ir->args[ir->a[s] + k]);
            if (op == AC_CUSTOM) {
                p->custom_instr[ncustom] = j;
                p->custom_node[ncustom++] = ir->node[s];
            }
        } else {
            p->a[j] = rp_slot(ir, new_instr, new_const, base, ir->a[s]);
            p->b[j] = op >= RP_FIRST_CONST ? rp_slot(ir, new_instr, new_const, base, ir->b[s]) : 0;
        }
    }
    for (j = 0; j < ir->n_outputs; ++j)
        p->outputs[j] = rp_slot(ir, new_instr, new_const, base, ir->outputs[j]);
    k = 0;
    for (j = 0; j < ir->n_guards; ++j) {
        if (ir->guard_dropped[j]) continue;
        p->guard_kind[k] = ir->guard_kind[j];
        p->guard_expected[k] = ir->guard_expected[j];
        p->guard_a[k] = rp_slot(ir, new_instr, new_const, base, ir->guard_a[j]);
        p->guard_b[k] = rp_slot(ir, new_instr, new_const, base, ir->guard_b[j]);
        p->guard_index[k] = j;
        ++k;
    }
    code = ac_program_finish(p, st);
done:
    if (code == AC_RP_NOMEM && st->code == 0) rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
    free(final); free(reach); free(used); free(new_instr); free(new_const); free(order);
    return code;
}

/* ---- ac_compile ---------------------------------------------------------- */

int ac_compile(const ac_tape *t, const ac_ref *outputs, int32_t n_outputs,
               const int32_t *leaf_input, int32_t n_inputs,
               const ac_guard *guards, int32_t n_guards,
               unsigned passes, ac_program *p, ac_compile_stats *stats, ac_status *st)
{
    rp_ir ir;
    ac_compile_stats local;
    uint8_t *keep = NULL;
    int32_t *node_instr = NULL;
    ac_node hi = -1;
    int64_t k;
    int code;

    memset(&ir, 0, sizeof ir);
    memset(p, 0, sizeof *p);
    memset(st, 0, sizeof *st);
    st->what = "";
    st->index = -1;
    if (stats == NULL) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (t == NULL) return rp_fail(st, AC_RP_INVALID, -1, "no tape");
    code = rp_check_args(t, outputs, n_outputs, leaf_input, n_inputs, guards, n_guards, st);
    if (code) return code;

    /* the highest node any root names; roots marked in keep */
    for (k = 0; k < n_outputs; ++k)
        if (!ac_ref_is_leaf(outputs[k]) && (ac_node)outputs[k] > hi) hi = (ac_node)outputs[k];
    for (k = 0; k < n_guards; ++k) {
        ac_ref r[2] = {guards[k].a, guards[k].kind == AC_GUARD_TRUTH ? AC_GUARD_CONST : guards[k].b};
        int s;
        for (s = 0; s < 2; ++s)
            if (r[s] != AC_GUARD_CONST && !ac_ref_is_leaf(r[s]) && (ac_node)r[s] > hi) hi = (ac_node)r[s];
    }
    keep = rp_zalloc(hi + 1, 1);
    node_instr = rp_alloc(hi + 1, sizeof *node_instr);
    ir.n_inputs = n_inputs;
    ir.n_outputs = n_outputs;
    ir.n_guards = n_guards;
    ir.outputs = rp_alloc(n_outputs, sizeof *ir.outputs);
    ir.guard_a = rp_alloc(n_guards, sizeof *ir.guard_a);
    ir.guard_b = rp_alloc(n_guards, sizeof *ir.guard_b);
    ir.guard_kind = rp_alloc(n_guards, 1);
    ir.guard_expected = rp_alloc(n_guards, 1);
    ir.guard_dropped = rp_alloc(n_guards, 1);
    if (!keep || !node_instr || !ir.outputs || !ir.guard_a || !ir.guard_b || !ir.guard_kind
        || !ir.guard_expected || !ir.guard_dropped) {
        code = rp_fail(st, AC_RP_NOMEM, -1, "out of memory compiling the graph");
        goto done;
    }
    for (k = 0; k < n_outputs; ++k)
        if (!ac_ref_is_leaf(outputs[k])) keep[outputs[k]] = 1;
    for (k = 0; k < n_guards; ++k) {
        if (guards[k].a != AC_GUARD_CONST && !ac_ref_is_leaf(guards[k].a)) keep[guards[k].a] = 1;
        if (guards[k].kind != AC_GUARD_TRUTH && guards[k].b != AC_GUARD_CONST && !ac_ref_is_leaf(guards[k].b))
            keep[guards[k].b] = 1;
    }

    stats->tape_nodes = hi + 1;
    code = rp_mark_tape(t, keep, hi, !(passes & AC_PASS_DCE), st);
    if (code) goto done;
    code = rp_extract(&ir, t, keep, hi, leaf_input, node_instr, st);
    if (code) goto done;
    code = rp_roots(&ir, t, outputs, leaf_input, guards, node_instr, st);
    if (code) goto done;
    stats->extracted = ir.n;

    if (passes & AC_PASS_FOLD) {
        code = rp_pass_fold(&ir, st);
        if (code) goto done;
    }
    stats->after_fold = rp_count_kept(&ir);
    if (passes & AC_PASS_CSE) {
        code = rp_pass_cse(&ir, st);
        if (code) goto done;
    }
    stats->after_cse = rp_count_kept(&ir);
    if (passes & AC_PASS_DCE) {
        code = rp_pass_dce(&ir, st);
        if (code) goto done;
    }
    for (k = 0; k < n_guards; ++k) stats->guards_folded += ir.guard_dropped[k];
    code = rp_emit(&ir, passes, p, st);
    if (code) goto done;
    stats->after_dce = p->n_instr;
    stats->scalar_nodes = rp_scalar_nodes(p);
done:
    free(keep);
    free(node_instr);
    rp_ir_free(&ir);
    if (code) ac_program_free(p);
    return code;
}
