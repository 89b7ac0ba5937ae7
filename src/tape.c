/* tape.c -- storage of the Wengert list: growth, trimming, the wide layout.
 * Plain C; see tape.h for the layout and the invariants. */
#include <math.h>
#include <stdlib.h>
#include "tape.h"

#define AC_INITIAL_NODES   1024

int64_t ac_narrow_limit = AC_MAX_NODES;

/* The narrow layout's limits (lowered by ac_narrow_limit, for tests). */
static int64_t ac_narrow_cap(int64_t limit) { return ac_narrow_limit < limit ? ac_narrow_limit : limit; }

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
    t->leaf_flag = AC_NARROW_LEAF;
    t->const_flag = AC_NARROW_CONST;
}

void ac_tape_free(ac_tape *t)
{
    ac_retain_end(&t->retained);    /* the reaper must not touch them any more */
    free(t->code);
    free(t->val);
    free(t->hi);
    free(t->consts);
    free(t->args);
    free(t->wargs);
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
        if (t->hi != NULL) ac_resize(t, (void **)&t->hi, want, sizeof *t->hi);
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
        if (t->wargs != NULL) ac_resize(t, (void **)&t->wargs, want, sizeof *t->wargs);
        else ac_resize(t, (void **)&t->args, want, sizeof *t->args);
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
    if (t->hi != NULL) {            /* back to the narrow layout */
        free(t->hi);
        t->hi = NULL;
        free(t->wargs);
        t->wargs = NULL;
        t->args_capacity = t->args_alloc = 0;
        t->leaf_flag = AC_NARROW_LEAF;
        t->const_flag = AC_NARROW_CONST;
    }
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
    ac_node cap, limit = t->hi != NULL ? AC_WIDE_MAX_NODES : ac_narrow_cap(AC_MAX_NODES);
    if (need <= t->capacity) return 0;
    if (need > limit) return t->hi != NULL ? -3 : -2;
    cap = ac_next_capacity(t->capacity, need, AC_INITIAL_NODES, limit);
    if (need <= t->alloc) {
        if (cap > t->alloc) cap = t->alloc;
        AC_TAKE(t->code, cap);
        AC_TAKE(t->val, cap);
    } else {
        AC_GROW(t->code, cap);
        AC_GROW(t->val, cap);
        if (t->hi != NULL) AC_GROW(t->hi, cap);
        t->alloc = cap;
    }
    t->capacity = cap;
    return 0;
}

int ac_grow_consts(ac_tape *t)
{
    int64_t cap, need = t->nconsts + 1;
    int64_t limit = t->hi != NULL ? AC_WIDE_MAX_CONSTS : ac_narrow_cap(AC_MAX_CONSTS);
    if (need > limit) return t->hi != NULL ? -3 : -2;
    cap = ac_next_capacity(t->consts_capacity, need, 256, limit);
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
        AC_TAKE(t->args, cap);          /* the wide layout has no kept part: see ac_widen */
    } else {
        if (t->wargs != NULL) {
            AC_GROW(t->wargs, cap);
        } else {
            AC_GROW(t->args, cap);
        }
        t->args_alloc = cap;
    }
    t->args_capacity = cap;
    return 0;
}

int ac_reserve_leaves(ac_tape *t, int64_t more)
{
    int64_t cap, limit, need = t->nleaves + more;
    if (need <= t->leaves_capacity) return 0;      /* first: every new leaf entry asks */
    limit = t->hi != NULL ? AC_WIDE_MAX_NODES : ac_narrow_cap(AC_MAX_LEAVES);
    if (need > limit) return t->hi != NULL ? -3 : -2;
    cap = ac_next_capacity(t->leaves_capacity, need, 64, limit);
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

ac_node ac_push_op_wide(ac_tape *t, int op, uint64_t a, uint64_t b, double v)
{
    ac_node i = t->size;
    int k = ac_uses_const(op);
    uint64_t fb = k ? b & AC_FIELD_MASK : ac_narrow_field(b), hb = k ? b >> 28 : b >> 27;
    t->code[i] = ac_pack(op, ac_narrow_field(a), fb);
    t->hi[i] = (uint16_t)(((a >> 27) & 0xff) | ((hb & 0xff) << 8));
    t->val[i] = v;
    t->size = i + 1;
    return i;
}

/* The wide layout: hi (zeros: every narrow word is a valid wide word) and
 * the operand lists as 64-bit references, converted list by list (words no
 * node's list holds, left by a failed recording, are dropped as zeros). */
int ac_widen(ac_tape *t)
{
    uint16_t *hi;
    uint64_t *wargs;
    int64_t n = t->args_capacity > 0 ? t->args_capacity : 1;
    ac_node i;
    if (t->hi != NULL) return 0;
    hi = calloc((size_t)(t->alloc > 0 ? t->alloc : 1), sizeof *hi);
    wargs = calloc((size_t)n, sizeof *wargs);
    if (hi == NULL || wargs == NULL) {
        free(hi);
        free(wargs);
        return -1;
    }
    for (i = 0; i < t->size; ++i) {
        ac_code w = t->code[i];
        if (ac_is_nary(ac_opcode(w))) {
            uint64_t off = ac_offset(w), k, m = t->args[off];
            wargs[off] = m;
            for (k = 1; k <= m; ++k) wargs[off + k] = ac_ref_of_arg32(t->args[off + k]);
        }
    }
    ac_retain_take(&t->retained, t->args, SIZE_MAX);    /* freed here */
    free(t->args);
    t->args = NULL;
    t->wargs = wargs;
    t->args_alloc = t->args_capacity = n;
    t->hi = hi;
    t->leaf_flag = AC_LEAF_BIT;
    t->const_flag = AC_CONST_BIT;
    return 0;
}

#undef AC_TAKE
#undef AC_GROW

size_t ac_tape_bytes(const ac_tape *t)
{
    return (size_t)t->capacity * (sizeof *t->code + sizeof *t->val + (t->hi != NULL ? sizeof *t->hi : 0))
         + (size_t)t->consts_capacity * sizeof *t->consts
         + (size_t)t->args_capacity * (t->wargs != NULL ? sizeof *t->wargs : sizeof *t->args)
         + (size_t)t->leaves_capacity * (sizeof *t->leaf_obj + sizeof *t->leaf_val
                                         + sizeof *t->leaf_version + sizeof *t->leaf_grad
                                         + sizeof *t->leaf_flags);
}
