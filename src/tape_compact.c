/* tape_compact.c -- mark-compact of the tape: what live Variables reach stays.
 * Plain C; see tape.h for the layout and docs/architecture.md ("Memory") for
 * when it runs and what it may skip. */
#include <stdlib.h>
#include "tape.h"

uint64_t *ac_stale_nodes(const ac_tape *t, const uint8_t *stale_leaf, int *failed)
{
    ac_node i;
    uint64_t *bits = calloc((size_t)(t->size / 64 + 1), sizeof *bits);
    *failed = bits == NULL;
    if (bits == NULL) return NULL;
    for (i = 0; i < t->size; ++i) {    /* upward: operands are decided before their users */
        ac_code w = t->code[i];
        int stale = 0;
        AC_FOR_EACH_OPERAND(t, w, ref, {
            stale |= ac_is_leaf_ref(ref) ? stale_leaf[ref & AC_INDEX_MASK] != 0 : ac_bit(bits, ref);
        });
        if (stale) bits[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    return bits;
}

void ac_compact_free(ac_compactor *cp)
{
    free(cp->keep);
    free(cp->rank);
    free(cp->new_consts);
    memset(cp, 0, sizeof *cp);
}

/* Propagate marks from the roots down; count the marked nodes and the
 * constant references they hold.  With keep != NULL, also move the node
 * marks into keep (clearing them). */
static ac_node ac_propagate_marks(ac_tape *t, uint64_t *keep, int64_t *const_refs)
{
    ac_code *code = t->code;
    ac_node i, kept = 0;
    for (i = t->size - 1; i >= 0; --i) {   /* downward: users before operands */
        ac_code c = code[i];
        int op = ac_opcode(c);
        if (!(c & AC_MARK)) continue;
        ++kept;
        if (keep != NULL) {
            code[i] = c & ~AC_MARK;
            keep[i >> 6] |= (uint64_t)1 << (i & 63);
        }
        AC_FOR_EACH_OPERAND(t, c, ref, {
            if (ac_is_leaf_ref(ref)) t->leaf_flags[ref & AC_INDEX_MASK] |= AC_LEAF_MARK;
            else code[ref] |= AC_MARK;
        });
        if (ac_uses_const(op)) {
            *const_refs += 1;
        } else if (ac_is_nary(op)) {
            const uint32_t *refs = t->args + ac_offset(c);
            uint32_t k;
            for (k = 1; k <= refs[0]; ++k) *const_refs += (refs[k] & AC_REF_CONST) != 0;
        }
    }
    return kept;
}

static void ac_clear_all_marks(ac_tape *t)
{
    ac_node i;
    int64_t k;
    for (i = 0; i < t->size; ++i) t->code[i] &= ~AC_MARK;
    for (k = 0; k < t->nleaves; ++k) t->leaf_flags[k] &= (uint8_t)~AC_LEAF_MARK;
}

int ac_compact_begin(ac_tape *t, ac_compactor *cp)
{
    int64_t words = t->size / 64 + 1, w, const_refs = 0;
    ac_node running = 0, reachable;

    memset(cp, 0, sizeof *cp);
    /* A first pass without the bitmap: often everything is reachable (one
     * growing graph), and then nothing needs allocating or moving. */
    {
        ac_code *code = t->code;
        ac_node i;
        reachable = 0;
        for (i = t->size - 1; i >= 0; --i) {
            if (!(code[i] & AC_MARK)) continue;
            ++reachable;
            AC_FOR_EACH_OPERAND(t, code[i], ref, {
                if (!ac_is_leaf_ref(ref)) code[ref] |= AC_MARK;
            });
        }
    }
    if (reachable == t->size) {
        ac_clear_all_marks(t);
        return 0;
    }
    cp->keep = calloc((size_t)words + 1, sizeof *cp->keep);
    cp->rank = malloc(((size_t)words + 1) * sizeof *cp->rank);
    if (cp->keep == NULL || cp->rank == NULL) {
        ac_clear_all_marks(t);
        ac_compact_free(cp);
        return -1;
    }
    ac_propagate_marks(t, cp->keep, &const_refs);   /* marks are all set; this moves them */
    for (w = 0; w <= words; ++w) {
        cp->rank[w] = running;
        running += (ac_node)ac_popcount(cp->keep[w]);
    }
    cp->kept = running;
    cp->new_consts_capacity = const_refs > 0 ? const_refs : 1;
    cp->new_consts = malloc((size_t)cp->new_consts_capacity * sizeof *cp->new_consts);
    if (cp->new_consts == NULL) {
        ac_clear_all_marks(t);
        ac_compact_free(cp);
        return -1;
    }
    return 1;
}

static uint32_t ac_remap_ref(const ac_compactor *cp, const int64_t *leaf_remap, uint32_t r)
{
    return ac_is_leaf_ref(r) ? (uint32_t)(AC_LEAF_REF | (uint32_t)leaf_remap[r & AC_INDEX_MASK])
                             : (uint32_t)ac_rank(cp, r);
}

void ac_compact_finish(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap)
{
    ac_code *code = t->code;
    double *val = t->val, *old_consts = t->consts;
    int64_t new_nargs = 0;
    ac_node i, j = 0;

    /* Surviving constants are re-added to the new pool through a fresh dedup
     * cache; the pool has room for every reference, so it never grows. */
    ac_retain_take(&t->retained, old_consts, SIZE_MAX);    /* freed below */
    t->consts = cp->new_consts;
    t->consts_capacity = t->consts_alloc = cp->new_consts_capacity;
    t->nconsts = 0;
    cp->new_consts = NULL;
    memset(t->const_cache, 0, sizeof t->const_cache);

    for (i = 0; i < t->size; ++i) {
        ac_code w, out;
        int op;
        if (!ac_bit(cp->keep, i)) continue;
        w = code[i];
        op = ac_opcode(w);
        if (ac_is_nary(op)) {
            const uint32_t *refs = t->args + ac_offset(w);
            uint32_t *dst = t->args + new_nargs, k, m = refs[0];
            dst[0] = m;    /* dst <= refs: copying upward never overwrites an unread ref */
            for (k = 1; k <= m; ++k) {
                uint32_t r = refs[k];
                dst[k] = (r & AC_REF_CONST)
                    ? (AC_REF_CONST | (uint32_t)ac_const_index(t, old_consts[r & ~AC_REF_CONST]))
                    : ac_remap_ref(cp, leaf_remap, r);
            }
            out = ac_pack_offset(op, (uint64_t)new_nargs);
            new_nargs += (int64_t)m + 1;
        } else if (op >= AC_FIRST_BINARY) {
            out = ac_pack(op, ac_remap_ref(cp, leaf_remap, (uint32_t)ac_operand_a(w)),
                          ac_remap_ref(cp, leaf_remap, (uint32_t)ac_operand_b(w)));
        } else {
            uint64_t b = ac_uses_const(op) ? (uint64_t)ac_const_index(t, old_consts[ac_operand_b(w)]) : 0;
            out = ac_pack(op, ac_remap_ref(cp, leaf_remap, (uint32_t)ac_operand_a(w)), b);
        }
        code[j] = out;
        val[j] = val[i];
        ++j;
    }
    t->size = j;
    t->nargs = new_nargs;
    free(old_consts);
}
