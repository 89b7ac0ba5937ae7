/* tape_compact.h -- the loops of mark-compact, written once for both layouts.
 *
 * Included twice by tape_compact.c, with tape_layout.h's macros for the
 * narrow and the wide layout (AC_WIDE 0, 1); each function becomes
 * name_narrow and name_wide (AC_L).  tape_compact.c holds what does not
 * read operands and the entry points, which pick a layout per call.
 */
#include "tape_layout.h"

/* Nodes whose value depends on a stale leaf entry: see ac_stale_nodes. */
static void AC_L(ac_stale_bits)(const ac_tape *t, const uint8_t *stale_leaf, uint64_t *bits)
{
    ac_node i;
    L_HI_OF(t);
    for (i = 0; i < t->size; ++i) {    /* upward: operands are decided before their users */
        ac_code w = t->code[i];
        int stale = 0;
        AC_FOR_EACH_OPERAND(t, i, w, ref, {
            stale |= L_IS_LEAF(ref) ? stale_leaf[L_INDEX(ref)] != 0 : ac_bit(bits, (ac_node)ref);
        });
        if (stale) bits[i >> 6] |= (uint64_t)1 << (i & 63);
    }
}

/* Propagate the roots' marks down without moving them; the number of
 * nodes reached.  Leaf entries are not marked here. */
static ac_node AC_L(ac_count_reachable)(ac_tape *t)
{
    ac_code *code = t->code;
    ac_node i, reachable = 0;
    L_HI_OF(t);
    for (i = t->size - 1; i >= 0; --i) {
        ac_code w = code[i];
        if (!(w & AC_MARK)) continue;
        ++reachable;
        AC_FOR_EACH_OPERAND(t, i, w, ref, {
            if (!L_IS_LEAF(ref)) code[ref] |= AC_MARK;
        });
    }
    return reachable;
}

/* With every mark set: move the node marks into keep (clearing them), mark
 * the leaf entries surviving nodes use, and count the constant references
 * they hold. */
static void AC_L(ac_move_marks)(ac_tape *t, uint64_t *keep, int64_t *const_refs)
{
    ac_code *code = t->code;
    ac_node i;
    L_HI_OF(t);
    for (i = t->size - 1; i >= 0; --i) {   /* downward: users before operands */
        ac_code w = code[i];
        int op = ac_opcode(w);
        if (!(w & AC_MARK)) continue;
        code[i] = w & ~AC_MARK;
        keep[i >> 6] |= (uint64_t)1 << (i & 63);
        AC_FOR_EACH_OPERAND(t, i, w, ref, {
            if (L_IS_LEAF(ref)) t->leaf_flags[L_INDEX(ref)] |= AC_LEAF_MARK;
        });
        if (ac_uses_const(op)) {
            *const_refs += 1;
        } else if (ac_is_nary(op)) {
            const L_ARG *refs = L_ARGS(t) + ac_offset(w);
            L_ARG k;
            for (k = 1; k <= refs[0]; ++k) *const_refs += L_ARG_IS_CONST(refs[k]);
        }
    }
}

static L_REF AC_L(ac_remap_ref)(const ac_compactor *cp, const int64_t *leaf_remap, L_REF r)
{
    return L_IS_LEAF(r) ? (L_REF)L_LEAF(leaf_remap[L_INDEX(r)]) : (L_REF)ac_rank(cp, (ac_node)r);
}

/* Slide the surviving nodes down, remapping operands and rebuilding the
 * operand lists in place and the constant pool (see ac_compact_finish). */
static void AC_L(ac_slide)(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap,
                           const double *old_consts)
{
    ac_code *code = t->code;
    double *val = t->val;
    int64_t new_nargs = 0;
    ac_node i, j = 0;
    L_HI_OF(t);
    for (i = 0; i < t->size; ++i) {
        ac_code w, out;
        int op;
        if (!ac_bit(cp->keep, i)) continue;
        w = code[i];
        op = ac_opcode(w);
        if (ac_is_nary(op)) {
            const L_ARG *refs = L_ARGS(t) + ac_offset(w);
            L_ARG *dst = L_ARGS(t) + new_nargs, k, m = refs[0];
            dst[0] = m;    /* dst <= refs: copying upward never overwrites an unread ref */
            for (k = 1; k <= m; ++k) {
                L_ARG r = refs[k];
                dst[k] = L_ARG_IS_CONST(r)
                    ? (L_ARG)L_MAKE_CONST(ac_const_index(t, old_consts[L_ARG_CONST(r)]))
                    : (L_ARG)AC_L(ac_remap_ref)(cp, leaf_remap, (L_REF)r);
            }
            out = ac_pack_offset(op, (uint64_t)new_nargs);
            if (t->hi != NULL) t->hi[j] = 0;
            new_nargs += (int64_t)m + 1;
        } else {
            /* read node i's operands before node j's high byte is written (j <= i) */
            L_REF ra = AC_L(ac_remap_ref)(cp, leaf_remap, L_A(i, w));
            if (op >= AC_FIRST_BINARY) {
                L_REF rb = AC_L(ac_remap_ref)(cp, leaf_remap, L_B(i, w));
                out = L_PACK(t, j, op, ra, rb);
            } else {
                int64_t c = ac_uses_const(op) ? ac_const_index(t, old_consts[L_CONST_B(i, w)]) : 0;
                out = L_PACK_CONST(t, j, op, ra, c);
            }
        }
        code[j] = out;
        val[j] = val[i];
        ++j;
    }
    t->size = j;
    t->nargs = new_nargs;
}
