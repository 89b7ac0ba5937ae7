/* tape_sweep.c -- the reverse sweep, detect_anomaly's search, reachability marks.
 * Plain C; the loops are in tape_sweep.h, compiled here once per layout
 * (tape_layout.h), and these entry points dispatch on the tape's layout. */
#include <math.h>
#include <stdlib.h>
#include "tape.h"

#define AC_WIDE 0
#include "tape_sweep.h"
#undef AC_WIDE
#define AC_WIDE 1
#include "tape_sweep.h"
#undef AC_WIDE

void ac_undo_delivery(ac_tape *t, const double *saved, int64_t lo, int64_t hi)
{
    if (hi >= lo) memcpy(t->leaf_grad + lo, saved + lo, (size_t)(hi + 1 - lo) * sizeof *saved);
}

int ac_sweep(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
             int deliver, ac_sweep_result *r)
{
    int fast = t->hi != NULL ? ac_sweep_fast_wide(t, adj, leaf_adj, root, seed, deliver, r)
                             : ac_sweep_fast_narrow(t, adj, leaf_adj, root, seed, deliver, r);
    if (fast != 0) return fast > 0 ? 0 : -1;
    return t->hi != NULL ? ac_sweep_exact_wide(t, adj, leaf_adj, root, seed, r)
                         : ac_sweep_exact_narrow(t, adj, leaf_adj, root, seed, r);
}

ac_node ac_find_anomaly(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed)
{
    return t->hi != NULL ? ac_find_anomaly_wide(t, adj, leaf_adj, root, seed)
                         : ac_find_anomaly_narrow(t, adj, leaf_adj, root, seed);
}

void ac_mark_reachable(ac_tape *t, ac_node root, ac_sweep_result *r)
{
    if (t->hi != NULL) ac_mark_reachable_wide(t, root, r);
    else ac_mark_reachable_narrow(t, root, r);
}

void ac_clear_marks(ac_tape *t, const ac_sweep_result *r, ac_node root)
{
    ac_node i;
    int64_t k;
    for (i = r->lo; i <= root; ++i) t->code[i] &= ~AC_MARK;
    for (k = r->leaf_lo; k <= r->leaf_hi; ++k) t->leaf_flags[k] &= (uint8_t)~AC_LEAF_MARK;
}
