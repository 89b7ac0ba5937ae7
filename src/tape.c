/* tape.c -- storage and reverse sweep of the Wengert list.
 * Plain C; see tape.h for the layout and the invariants. */
#include <math.h>
#include <stdlib.h>
#include "tape.h"

#define AC_INITIAL_NODES   1024

/* ---- storage ------------------------------------------------------------ */

/* realloc for arrays: checks the multiplication, leaves *p alone on failure.
 * A block handed to tape_retain.c is taken back first: the reaper must never
 * see a block move or go. */
static int ac_resize(ac_tape *t, void **p, int64_t count, size_t item)
{
    void *q;
    if (count < 1) count = 1;
    if ((uint64_t)count > SIZE_MAX / item) return -1;
    ac_retain_take(&t->retained, *p, SIZE_MAX);
    q = realloc(*p, (size_t)count * item);
    if (q == NULL) return -1;
    *p = q;
    return 0;
}

void ac_tape_init(ac_tape *t)
{
    memset(t, 0, sizeof *t);
}

void ac_tape_free(ac_tape *t)
{
    ac_retain_end(&t->retained);    /* the reaper must not touch them any more */
    free(t->code);
    free(t->val);
    free(t->consts);
    free(t->args);
    free(t->leaf_obj);
    free(t->leaf_val);
    free(t->leaf_version);
    free(t->leaf_grad);
    free(t->leaf_flags);
    {
        ac_custom_hook hook = t->custom_backward;
        ac_poll_hook poll = t->poll;
        void *ctx = t->custom_ctx;
        ac_tape_init(t);
        t->custom_backward = hook;
        t->poll = poll;
        t->custom_ctx = ctx;
    }
}

/* Give back capacity a compaction left unused: arrays more than four times
 * larger than what they hold shrink to twice that.  A shrinking realloc that
 * fails leaves an array larger than `want`, still a valid size. */
static int64_t ac_trim_to(int64_t alloc, int64_t used, int64_t floor)
{
    int64_t want = 2 * used > floor ? 2 * used : floor;
    return alloc > 4 * used && alloc > want ? want : alloc;
}

/* Arrays below their floor are left alone: the initial sizes for a
 * compaction, AC_SHRINK_ABOVE when a graph dies (only large arrays are
 * kept for the next recording, and at most 4x what the graph held). */
static void ac_trim(ac_tape *t, int large_only)
{
    int64_t want = ac_trim_to(t->alloc, t->size, large_only ? AC_SHRINK_ABOVE : AC_INITIAL_NODES);
    if (want < t->alloc) {
        ac_resize(t, (void **)&t->code, want, sizeof *t->code);
        ac_resize(t, (void **)&t->val, want, sizeof *t->val);
        t->alloc = want;
        if (t->capacity > want) t->capacity = want;
    }
    want = ac_trim_to(t->consts_alloc, t->nconsts, large_only ? AC_SHRINK_ABOVE : 256);
    if (want < t->consts_alloc) {
        ac_resize(t, (void **)&t->consts, want, sizeof *t->consts);
        t->consts_alloc = want;
        if (t->consts_capacity > want) t->consts_capacity = want;
    }
    want = ac_trim_to(t->args_alloc, t->nargs, large_only ? AC_SHRINK_ABOVE : 1024);
    if (want < t->args_alloc) {
        ac_resize(t, (void **)&t->args, want, sizeof *t->args);
        t->args_alloc = want;
        if (t->args_capacity > want) t->args_capacity = want;
    }
    want = ac_trim_to(t->leaves_alloc, t->nleaves, large_only ? AC_SHRINK_ABOVE : 64);
    if (want < t->leaves_alloc) {
        ac_resize(t, (void **)&t->leaf_obj, want, sizeof *t->leaf_obj);
        ac_resize(t, (void **)&t->leaf_val, want, sizeof *t->leaf_val);
        ac_resize(t, (void **)&t->leaf_version, want, sizeof *t->leaf_version);
        ac_resize(t, (void **)&t->leaf_grad, want, sizeof *t->leaf_grad);
        ac_resize(t, (void **)&t->leaf_flags, want, sizeof *t->leaf_flags);
        t->leaves_alloc = want;
        if (t->leaves_capacity > want) t->leaves_capacity = want;
    }
}

void ac_tape_trim(ac_tape *t) { ac_trim(t, 0); }

void ac_tape_clear(ac_tape *t)
{
    ac_retain_end(&t->retained);    /* whatever a previous graph did not take back */
    ac_trim(t, 1);
    t->size = 0;
    t->nconsts = 0;
    t->nargs = 0;
    t->nleaves = 0;
    t->ndetached = 0;
    t->capacity = t->alloc;
    t->consts_capacity = t->consts_alloc;
    t->args_capacity = t->args_alloc;
    t->leaves_capacity = t->leaves_alloc;
    memset(t->const_cache, 0, sizeof t->const_cache);
}

int ac_tape_retain(ac_tape *t, void *const *extra, const size_t *lo, const size_t *hi, int nextra)
{
    void *blocks[AC_RETAIN_BLOCKS];
    size_t from[AC_RETAIN_BLOCKS], to[AC_RETAIN_BLOCKS];
    int n = 0, k;
#define AC_HAND_OVER(P, ALLOC)                                                 \
    if ((ALLOC) > AC_SHRINK_ABOVE) {                                           \
        blocks[n] = (P);                                                       \
        from[n] = 0;                                                           \
        to[n++] = (size_t)(ALLOC) * sizeof *(P);                               \
    }
    AC_HAND_OVER(t->code, t->alloc)
    AC_HAND_OVER(t->val, t->alloc)
    AC_HAND_OVER(t->consts, t->consts_alloc)
    AC_HAND_OVER(t->args, t->args_alloc)
    AC_HAND_OVER(t->leaf_obj, t->leaves_alloc)
    AC_HAND_OVER(t->leaf_val, t->leaves_alloc)
    AC_HAND_OVER(t->leaf_version, t->leaves_alloc)
    AC_HAND_OVER(t->leaf_grad, t->leaves_alloc)
    AC_HAND_OVER(t->leaf_flags, t->leaves_alloc)
#undef AC_HAND_OVER
    for (k = 0; k < nextra && n < AC_RETAIN_BLOCKS; ++k) {
        blocks[n] = extra[k];
        from[n] = lo[k];
        to[n++] = hi[k];
    }
    if (n == 0) return 0;
    if (ac_retain(&t->retained, blocks, from, to, n) < 0) return -1;
    if (t->alloc > AC_SHRINK_ABOVE) t->capacity = 0;
    if (t->consts_alloc > AC_SHRINK_ABOVE) t->consts_capacity = 0;
    if (t->args_alloc > AC_SHRINK_ABOVE) t->args_capacity = 0;
    if (t->leaves_alloc > AC_SHRINK_ABOVE) t->leaves_capacity = 0;
    return 0;
}

void ac_tape_free_large(ac_tape *t)
{
    ac_retain_end(&t->retained);
    if (t->alloc > AC_SHRINK_ABOVE) {
        free(t->code); t->code = NULL;
        free(t->val); t->val = NULL;
        t->capacity = t->alloc = 0;
    }
    if (t->consts_alloc > AC_SHRINK_ABOVE) {
        free(t->consts); t->consts = NULL;
        t->consts_capacity = t->consts_alloc = 0;
    }
    if (t->args_alloc > AC_SHRINK_ABOVE) {
        free(t->args); t->args = NULL;
        t->args_capacity = t->args_alloc = 0;
    }
    if (t->leaves_alloc > AC_SHRINK_ABOVE) {
        free(t->leaf_obj); t->leaf_obj = NULL;
        free(t->leaf_val); t->leaf_val = NULL;
        free(t->leaf_version); t->leaf_version = NULL;
        free(t->leaf_grad); t->leaf_grad = NULL;
        free(t->leaf_flags); t->leaf_flags = NULL;
        t->leaves_capacity = t->leaves_alloc = 0;
    }
}

static int64_t ac_next_capacity(int64_t have, int64_t need, int64_t initial, int64_t limit)
{
    int64_t cap = have > 0 ? have : initial;
    while (cap < need) cap = cap > limit / 2 ? limit : cap * 2;
    return cap > limit ? limit : cap;
}

/* Growth to capacity `cap` of an array group whose allocation is `alloc`:
 * within the allocation, the entries are taken back from tape_retain.c;
 * beyond it, the arrays are reallocated.  AC_TAKE and AC_GROW run per array. */
#define AC_TAKE(P, CAP) ac_retain_take(&t->retained, (P), (size_t)(CAP) * sizeof *(P))
#define AC_GROW(P, CAP) if (ac_resize(t, (void **)&(P), (CAP), sizeof *(P)) < 0) return -1

int ac_grow_nodes(ac_tape *t, ac_node need)
{
    ac_node cap;
    if (need <= t->capacity) return 0;
    if (need > AC_MAX_NODES) return -2;
    cap = ac_next_capacity(t->capacity, need, AC_INITIAL_NODES, AC_MAX_NODES);
    if (need <= t->alloc) {
        if (cap > t->alloc) cap = t->alloc;
        AC_TAKE(t->code, cap);
        AC_TAKE(t->val, cap);
    } else {
        AC_GROW(t->code, cap);
        AC_GROW(t->val, cap);
        t->alloc = cap;
    }
    t->capacity = cap;
    return 0;
}

int ac_grow_consts(ac_tape *t)
{
    int64_t cap, need = t->nconsts + 1;
    if (t->nconsts >= AC_MAX_CONSTS) return -1;
    cap = ac_next_capacity(t->consts_capacity, need, 256, AC_MAX_CONSTS);
    if (need <= t->consts_alloc) {
        if (cap > t->consts_alloc) cap = t->consts_alloc;
        AC_TAKE(t->consts, cap);
    } else {
        AC_GROW(t->consts, cap);
        t->consts_alloc = cap;
    }
    t->consts_capacity = cap;
    return 0;
}

int ac_reserve_args(ac_tape *t, int64_t more)
{
    int64_t cap, need = t->nargs + more;
    if (need <= t->args_capacity) return 0;
    if (need > ((int64_t)1 << 56)) return -1;
    cap = ac_next_capacity(t->args_capacity, need, 1024, (int64_t)1 << 56);
    if (need <= t->args_alloc) {
        if (cap > t->args_alloc) cap = t->args_alloc;
        AC_TAKE(t->args, cap);
    } else {
        AC_GROW(t->args, cap);
        t->args_alloc = cap;
    }
    t->args_capacity = cap;
    return 0;
}

int ac_reserve_leaves(ac_tape *t, int64_t more)
{
    int64_t cap, need = t->nleaves + more;
    if (need <= t->leaves_capacity) return 0;
    if (need > AC_MAX_LEAVES) return -2;
    cap = ac_next_capacity(t->leaves_capacity, need, 64, AC_MAX_LEAVES);
    if (need <= t->leaves_alloc) {
        if (cap > t->leaves_alloc) cap = t->leaves_alloc;
        AC_TAKE(t->leaf_obj, cap);
        AC_TAKE(t->leaf_val, cap);
        AC_TAKE(t->leaf_version, cap);
        AC_TAKE(t->leaf_grad, cap);
        AC_TAKE(t->leaf_flags, cap);
    } else {
        AC_GROW(t->leaf_obj, cap);
        AC_GROW(t->leaf_val, cap);
        AC_GROW(t->leaf_version, cap);
        AC_GROW(t->leaf_grad, cap);
        AC_GROW(t->leaf_flags, cap);
        t->leaves_alloc = cap;
    }
    t->leaves_capacity = cap;
    return 0;
}

#undef AC_TAKE
#undef AC_GROW

size_t ac_tape_bytes(const ac_tape *t)
{
    return (size_t)t->capacity * (sizeof *t->code + sizeof *t->val)
         + (size_t)t->consts_capacity * sizeof *t->consts
         + (size_t)t->args_capacity * sizeof *t->args
         + (size_t)t->leaves_capacity * (sizeof *t->leaf_obj + sizeof *t->leaf_val
                                         + sizeof *t->leaf_version + sizeof *t->leaf_grad
                                         + sizeof *t->leaf_flags);
}

/* ---- reverse sweep ------------------------------------------------------ */

/* The adjoint rule of every opcode, written once for both sweeps below.
 * TOUCH(r, v) is what a sweep does with contribution v to operand r;
 * VALUE(r) reads an operand's forward value; g is the node's adjoint. */
#define AC_VALUE(r) (ac_is_leaf_ref(r) ? leaf_val[(r) & AC_INDEX_MASK] : val[(r)])

#define AC_UNARY_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = AC_VALUE(a), y = val[i]; (void)x; (void)y;           \
               TOUCH(a, (D)); break; }
#define AC_CONST_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = AC_VALUE(a), c = consts[b], y = val[i];              \
               (void)x; (void)c; (void)y; TOUCH(a, (D)); break; }
#define AC_BINARY_CASE(TOUCH, OP, DX, DZ)                                      \
    case OP: { double x = AC_VALUE(a), z = AC_VALUE(b), y = val[i];            \
               (void)x; (void)z; (void)y;                                      \
               double dx = (DX), dz = (DZ); TOUCH(a, dx); TOUCH(b, dz); break; }

#define AC_PROPAGATE(TOUCH)                                                    \
    switch (op) {                                                              \
    AC_UNARY_OPS(AC_UNARY_CASE_##TOUCH)                                        \
    AC_CONST_OPS(AC_CONST_CASE_##TOUCH)                                        \
    AC_BINARY_OPS(AC_BINARY_CASE_##TOUCH)                                      \
    case AC_SUM: {                                                             \
        const uint32_t *refs = args + ac_offset(w);                            \
        uint32_t k, m = refs[0];                                               \
        for (k = 1; k <= m; ++k)                                               \
            if (!(refs[k] & AC_REF_CONST)) TOUCH(refs[k], g);                  \
        break;                                                                 \
    }                                                                          \
    case AC_CUSTOM: {   /* the user's backward, only where gradient flows */   \
        const uint32_t *refs = args + ac_offset(w);                            \
        uint32_t k, m = refs[0];                                               \
        const double *gin;                                                     \
        if (g == 0.0) {     /* no call; zeros still reach the operands */      \
            for (k = 1; k <= m; ++k)                                           \
                if (!(refs[k] & AC_REF_CONST)) TOUCH(refs[k], 0.0);            \
            break;                                                             \
        }                                                                      \
        gin = t->custom_backward(t->custom_ctx, i, g);                         \
        if (gin == NULL) goto failed;                                          \
        for (k = 1; k <= m; ++k)                                               \
            if (!(refs[k] & AC_REF_CONST)) TOUCH(refs[k], gin[k - 1]);         \
        break;                                                                 \
    }                                                                          \
    case AC_DOT: {   /* refs come in pairs (x_j, z_j); d/dx_j = z_j */         \
        const uint32_t *refs = args + ac_offset(w);                            \
        uint32_t k, m = refs[0];                                               \
        for (k = 1; k < m; k += 2) {                                           \
            uint32_t rx = refs[k], rz = refs[k + 1];                           \
            double x = (rx & AC_REF_CONST) ? consts[rx & ~AC_REF_CONST] : AC_VALUE(rx); \
            double z = (rz & AC_REF_CONST) ? consts[rz & ~AC_REF_CONST] : AC_VALUE(rz); \
            if (!(rx & AC_REF_CONST)) TOUCH(rx, g * z);                        \
            if (!(rz & AC_REF_CONST)) TOUCH(rz, g * x);                        \
        }                                                                      \
        break;                                                                 \
    }                                                                          \
    default:                                                                   \
        break;                                                                 \
    }

#define AC_UNARY_CASE_AC_ADD_TO(OP, NAME, F, D) AC_UNARY_CASE(AC_ADD_TO, OP, D)
#define AC_CONST_CASE_AC_ADD_TO(OP, NAME, F, D) AC_CONST_CASE(AC_ADD_TO, OP, D)
#define AC_BINARY_CASE_AC_ADD_TO(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_ADD_TO, OP, DX, DZ)
#define AC_UNARY_CASE_AC_PASS_ZERO(OP, NAME, F, D) AC_UNARY_CASE(AC_PASS_ZERO, OP, D)
#define AC_CONST_CASE_AC_PASS_ZERO(OP, NAME, F, D) AC_CONST_CASE(AC_PASS_ZERO, OP, D)
#define AC_BINARY_CASE_AC_PASS_ZERO(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_PASS_ZERO, OP, DX, DZ)
#define AC_UNARY_CASE_AC_ANOMALY_ADD(OP, NAME, F, D) AC_UNARY_CASE(AC_ANOMALY_ADD, OP, D)
#define AC_CONST_CASE_AC_ANOMALY_ADD(OP, NAME, F, D) AC_CONST_CASE(AC_ANOMALY_ADD, OP, D)
#define AC_BINARY_CASE_AC_ANOMALY_ADD(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_ANOMALY_ADD, OP, DX, DZ)
#define AC_UNARY_CASE_AC_MARKED_ADD(OP, NAME, F, D) AC_UNARY_CASE(AC_MARKED_ADD, OP, D)
#define AC_CONST_CASE_AC_MARKED_ADD(OP, NAME, F, D) AC_CONST_CASE(AC_MARKED_ADD, OP, D)
#define AC_BINARY_CASE_AC_MARKED_ADD(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_MARKED_ADD, OP, DX, DZ)

/* Long sweeps stop at every node index that is a multiple of AC_POLL_EVERY
 * to ask the owner's poll hook whether to go on, so Ctrl-C interrupts a
 * backward() over 10^8 nodes within milliseconds: one test of the loop
 * index per node, no extra state. */
#define AC_POLL_EVERY ((ac_node)1 << 20)
#define AC_POLL_DUE(t, i)                                                      \
    (AC_UNLIKELY(((i) & (AC_POLL_EVERY - 1)) == 0)                            \
     && (t)->poll != NULL && (t)->poll((t)->custom_ctx))

/* Fast sweep.  Adds every contribution.  Adjoint buffers are zeroed
 * lazily, a block at a time just outside the range touched so far, so they
 * never need a full clear and the loop ends at the lowest node the output
 * depends on.  A node whose adjoint is 0 passes zeros on (so a node below it
 * is still visited); its contributions are 0 * (local derivative), which
 * only matter when that derivative is inf or nan.  If one is, the node may
 * or may not be reachable from the output, and only an exact reachability
 * sweep can give PyTorch's answer (nan if reachable, nothing if not): return
 * 0 for ac_sweep to run the exact sweep instead. */
#define AC_ZERO_BLOCK 512

/* Leaf contributions go to leaf_dst: leaf_grad itself when delivering,
 * else the leaf_adj buffer.  The window [zlo, zhi) of entries prepared so far
 * grows a block at a time; preparing means zeroing leaf_adj, or, when
 * delivering, saving leaf_grad's values into leaf_adj so that the delivery
 * can be undone exactly (ac_undo_delivery).  [lo, hi] is what was touched. */
typedef struct ac_leaf_window {
    int64_t zlo, zhi, lo, hi;
} ac_leaf_window;

static void ac_prepare_leaves(double *leaf_adj, const double *leaf_grad, int deliver,
                              int64_t from, int64_t to)
{
    if (deliver) memcpy(leaf_adj + from, leaf_grad + from, (size_t)(to - from) * sizeof *leaf_adj);
    else memset(leaf_adj + from, 0, (size_t)(to - from) * sizeof *leaf_adj);
}

static void ac_widen_leaf_window(ac_leaf_window *lw, double *leaf_adj, const double *leaf_grad,
                                 int deliver, int64_t k, int64_t n)
{
    int64_t from, to;
    if (lw->zhi <= lw->zlo) lw->zlo = lw->zhi = k;
    if (k < lw->zlo) {
        from = k > AC_ZERO_BLOCK ? k - AC_ZERO_BLOCK : 0;
        ac_prepare_leaves(leaf_adj, leaf_grad, deliver, from, lw->zlo);
        lw->zlo = from;
    }
    if (k >= lw->zhi) {
        to = k + AC_ZERO_BLOCK < n ? k + AC_ZERO_BLOCK : n;
        ac_prepare_leaves(leaf_adj, leaf_grad, deliver, lw->zhi, to);
        lw->zhi = to;
    }
}

void ac_undo_delivery(ac_tape *t, const double *saved, int64_t lo, int64_t hi)
{
    if (hi >= lo) memcpy(t->leaf_grad + lo, saved + lo, (size_t)(hi + 1 - lo) * sizeof *saved);
}

#define AC_ADD_TO(r, v)                                                        \
    do {                                                                       \
        uint32_t r_ = (uint32_t)(r);                                           \
        double v_ = (v);                                                       \
        if (ac_is_leaf_ref(r_)) {                                              \
            int64_t k_ = r_ & AC_INDEX_MASK;                                   \
            if (AC_UNLIKELY(k_ < lw.zlo || k_ >= lw.zhi))                      \
                ac_widen_leaf_window(&lw, leaf_adj, t->leaf_grad, deliver, k_, t->nleaves); \
            if (k_ < lw.lo) lw.lo = k_;                                        \
            if (k_ > lw.hi) lw.hi = k_;                                        \
            leaf_dst[k_] += v_;                                                \
        } else {                                                               \
            if (AC_UNLIKELY((ac_node)r_ < zeroed)) {                           \
                ac_node from_ = r_ > AC_ZERO_BLOCK ? r_ - AC_ZERO_BLOCK : 0;   \
                memset(adj + from_, 0, (size_t)(zeroed - from_) * sizeof *adj); \
                zeroed = from_;                                                \
            }                                                                  \
            if ((ac_node)r_ < low) low = r_;                                   \
            adj[r_] += v_;                                                     \
        }                                                                      \
    } while (0)
/* A zero adjoint still passes zeros on: a node it reaches may have an inf
 * or nan local derivative further down (abs(sqrt(x) * 2) at x = 0). */
#define AC_PASS_ZERO(r, v)                                                     \
    do {                                                                       \
        double z_ = (v);                                                       \
        if (z_ != z_) goto inexact;                                            \
        AC_ADD_TO(r, z_);                                                      \
    } while (0)

static int ac_sweep_fast(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
                         int deliver, ac_sweep_result *res)
{
    const ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const uint32_t *args = t->args;
    double *leaf_dst = deliver ? t->leaf_grad : leaf_adj;
    ac_node low = root, zeroed = root, i;   /* adj[zeroed..root) is cleared */
    ac_leaf_window lw = {0, 0, INT64_MAX, -1};

    adj[root] = seed;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        ac_node a = ac_operand_a(w), b = ac_operand_b(w);
        double g = adj[i];
        if (AC_POLL_DUE(t, i)) goto failed;
        if (g != 0.0) {
            AC_PROPAGATE(AC_ADD_TO)
        } else {
            AC_PROPAGATE(AC_PASS_ZERO)
        }
    }
    res->lo = low;
    res->leaf_lo = lw.lo;
    res->leaf_hi = lw.hi;
    res->exact = 0;
    res->delivered = deliver;
    return 1;
inexact:
    if (deliver) ac_undo_delivery(t, leaf_adj, lw.lo, lw.hi);
    return 0;
failed:
    if (deliver) ac_undo_delivery(t, leaf_adj, lw.lo, lw.hi);
    return -1;
}

/* Exact sweep: only what is reachable from the output propagates, as in
 * PyTorch, found with the marks as the sweep goes.  The first contribution
 * to a node or leaf entry initialises its adjoint; unreached nodes in range
 * get 0.  Node marks are cleared on the way; leaf marks stay for the caller. */
#define AC_MARKED_ADD(r, v)                                                    \
    do {                                                                       \
        uint32_t r_ = (uint32_t)(r);                                           \
        double v_ = (v);                                                       \
        if (ac_is_leaf_ref(r_)) {                                              \
            int64_t k_ = r_ & AC_INDEX_MASK;                                   \
            if (leaf_flags[k_] & AC_LEAF_MARK) {                               \
                leaf_adj[k_] += v_;                                            \
            } else {                                                           \
                leaf_flags[k_] |= AC_LEAF_MARK;                                \
                leaf_adj[k_] = v_;                                             \
                if (k_ < res->leaf_lo) res->leaf_lo = k_;                      \
                if (k_ > res->leaf_hi) res->leaf_hi = k_;                      \
            }                                                                  \
        } else if (code[r_] & AC_MARK) {                                       \
            adj[r_] += v_;                                                     \
        } else {                                                               \
            code[r_] |= AC_MARK;                                               \
            adj[r_] = v_;                                                      \
            if ((ac_node)r_ < low) low = r_;                                   \
        }                                                                      \
    } while (0)

static int ac_sweep_exact(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
                          ac_sweep_result *res)
{
    ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const uint32_t *args = t->args;
    uint8_t *leaf_flags = t->leaf_flags;
    ac_node low = root, i;

    res->leaf_lo = INT64_MAX;
    res->leaf_hi = -1;
    res->exact = 1;
    res->delivered = 0;
    adj[root] = seed;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        ac_node a = ac_operand_a(w), b = ac_operand_b(w);
        double g;
        if (AC_POLL_DUE(t, i)) goto failed;
        if (!(w & AC_MARK)) {
            adj[i] = 0.0;
            continue;
        }
        code[i] = w & ~AC_MARK;
        g = adj[i];
        AC_PROPAGATE(AC_MARKED_ADD)
    }
    res->lo = low;
    return 0;
failed:     /* leave no mark behind: nodes below i, and every leaf entry reached */
    res->lo = low;
    ac_clear_marks(t, res, i);
    res->leaf_hi = -1;
    return -1;
}

/* detect_anomaly's backward check: the exact sweep again, stopping at the
 * first node whose finite adjoint gives an operand an inf or nan. */
#define AC_ANOMALY_ADD(r, v)                                                   \
    do {                                                                       \
        double w_ = (v);                                                       \
        if (!isfinite(w_) && isfinite(g)) { found = i; goto done; }            \
        AC_MARKED_ADD(r, w_);                                                  \
    } while (0)

ac_node ac_find_anomaly(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed)
{
    ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const uint32_t *args = t->args;
    uint8_t *leaf_flags = t->leaf_flags;
    ac_node low = root, i, found = -1;
    ac_sweep_result marks = {root, INT64_MAX, -1, 1, 0}, *res = &marks;

    adj[root] = seed;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        ac_node a = ac_operand_a(w), b = ac_operand_b(w);
        double g;
        if (AC_POLL_DUE(t, i)) goto failed;
        if (!(w & AC_MARK)) continue;
        g = adj[i];
        AC_PROPAGATE(AC_ANOMALY_ADD)
    }
    goto done;
failed:
    found = -2;
done:
    marks.lo = low;
    ac_clear_marks(t, &marks, root);
    return found;
}

int ac_sweep(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
             int deliver, ac_sweep_result *r)
{
    int fast = ac_sweep_fast(t, adj, leaf_adj, root, seed, deliver, r);
    if (fast != 0) return fast > 0 ? 0 : -1;
    return ac_sweep_exact(t, adj, leaf_adj, root, seed, r);
}

void ac_mark_reachable(ac_tape *t, ac_node root, ac_sweep_result *r)
{
    ac_code *code = t->code;
    uint8_t *leaf_flags = t->leaf_flags;
    ac_node low = root, i;
    r->leaf_lo = INT64_MAX;
    r->leaf_hi = -1;
    r->exact = 1;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        if (!(w & AC_MARK)) continue;
        AC_FOR_EACH_OPERAND(t, w, ref, {
            if (ac_is_leaf_ref(ref)) {
                int64_t k = ref & AC_INDEX_MASK;
                leaf_flags[k] |= AC_LEAF_MARK;
                if (k < r->leaf_lo) r->leaf_lo = k;
                if (k > r->leaf_hi) r->leaf_hi = k;
            } else {
                code[ref] |= AC_MARK;
                if ((ac_node)ref < low) low = ref;
            }
        });
    }
    r->lo = low;
}

void ac_clear_marks(ac_tape *t, const ac_sweep_result *r, ac_node root)
{
    ac_node i;
    int64_t k;
    for (i = r->lo; i <= root; ++i) t->code[i] &= ~AC_MARK;
    for (k = r->leaf_lo; k <= r->leaf_hi; ++k) t->leaf_flags[k] &= (uint8_t)~AC_LEAF_MARK;
}
