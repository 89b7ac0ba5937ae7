/* tape_compact.c -- mark-compact of the tape: what live Variables reach stays.
 * Plain C; the loops that read operands are in tape_compact.h, compiled here
 * once per layout (tape_layout.h).  See tape.h for the layouts and
 * docs/architecture.md ("Memory") for when compaction runs and what it may
 * skip. */
#include <stdlib.h>
#include "tape.h"

#define AC_WIDE 0
#include "tape_compact.h"
#undef AC_WIDE
#define AC_WIDE 1
#include "tape_compact.h"
#undef AC_WIDE

uint64_t *ac_stale_nodes(const ac_tape *t, const uint8_t *stale_leaf, int *failed)
{
    uint64_t *bits = calloc((size_t)(t->size / 64 + 1), sizeof *bits);
    *failed = bits == NULL;
    if (bits == NULL) return NULL;
    if (t->hi != NULL) ac_stale_bits_wide(t, stale_leaf, bits);
    else ac_stale_bits_narrow(t, stale_leaf, bits);
    return bits;
}

void ac_compact_free(ac_compactor *cp)
{
    free(cp->keep);
    free(cp->rank);
    free(cp->new_consts);
    memset(cp, 0, sizeof *cp);
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
    reachable = t->hi != NULL ? ac_count_reachable_wide(t) : ac_count_reachable_narrow(t);
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
    /* marks are all set; this moves them */
    if (t->hi != NULL) ac_move_marks_wide(t, cp->keep, &const_refs);
    else ac_move_marks_narrow(t, cp->keep, &const_refs);
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

void ac_compact_finish(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap)
{
    double *old_consts = t->consts;

    /* Surviving constants are re-added to the new pool through a fresh dedup
     * cache; the pool has room for every reference, so it never grows. */
    ac_retain_take(&t->retained, old_consts, SIZE_MAX);    /* freed below */
    t->consts = cp->new_consts;
    t->consts_capacity = t->consts_alloc = cp->new_consts_capacity;
    t->nconsts = 0;
    cp->new_consts = NULL;
    memset(t->const_cache, 0, sizeof t->const_cache);
    if (t->hi != NULL) ac_slide_wide(t, cp, leaf_remap, old_consts);
    else ac_slide_narrow(t, cp, leaf_remap, old_consts);
    free(old_consts);
}
