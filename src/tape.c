/* tape.c -- storage, reverse sweep and compaction of the Wengert list.
 * Plain C; see tape.h for the layout and the invariants. */
#include <stdlib.h>
#include "tape.h"

#define AC_INITIAL_NODES   1024
#define AC_SHRINK_ABOVE    ((ac_node)1 << 20)   /* a cleared tape larger than this gives memory back */

/* Operands are the node indices a node reads: none for a leaf, operand a
 * for one-operand and constant ops, a and b for binary ops, the non-constant
 * references of an n-ary list.  The opcode enum orders the groups. */
#define AC_FIRST_BINARY  AC_ADD
#define AC_FIRST_CONST   AC_ADDC
static inline int ac_uses_const(int op) { return op >= AC_FIRST_CONST && op < AC_FIRST_BINARY; }

#define AC_FOR_EACH_OPERAND(t, w, N, BODY)                                        \
    do {                                                                          \
        int op_ = ac_opcode(w);                                                   \
        if (op_ >= AC_FIRST_BINARY) {                                             \
            ac_node N = ac_operand_a(w); BODY;                                    \
            N = ac_operand_b(w); BODY;                                            \
        } else if (op_ > AC_DOT) {                                                \
            ac_node N = ac_operand_a(w); BODY;                                    \
        } else if (op_ != AC_LEAF) {                                              \
            const uint32_t *refs_ = (t)->args + ac_offset(w);                     \
            uint32_t k_, m_ = refs_[0];                                           \
            for (k_ = 1; k_ <= m_; ++k_) {                                        \
                if (!(refs_[k_] & AC_REF_CONST)) { ac_node N = refs_[k_]; BODY; } \
            }                                                                     \
        }                                                                         \
    } while (0)

/* ---- storage ------------------------------------------------------------ */

/* realloc for arrays: checks the multiplication, leaves *p alone on failure */
static int ac_resize(void **p, int64_t count, size_t item)
{
    void *q;
    if (count < 1) count = 1;
    if ((uint64_t)count > SIZE_MAX / item) return -1;
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
    free(t->code);
    free(t->val);
    free(t->consts);
    free(t->args);
    free(t->leaf_obj);
    free(t->leaf_node);
    free(t->leaf_version);
    free(t->leaf_grad);
    free(t->leaf_flags);
    ac_tape_init(t);
}

void ac_tape_clear(ac_tape *t)
{
    t->size = 0;
    t->nconsts = 0;
    t->nargs = 0;
    t->nleaves = 0;
    memset(t->const_cache, 0, sizeof t->const_cache);
    if (t->capacity > AC_SHRINK_ABOVE) {
        free(t->code); t->code = NULL;
        free(t->val); t->val = NULL;
        t->capacity = 0;
    }
    if (t->consts_capacity > AC_SHRINK_ABOVE) {
        free(t->consts); t->consts = NULL;
        t->consts_capacity = 0;
    }
    if (t->args_capacity > AC_SHRINK_ABOVE) {
        free(t->args); t->args = NULL;
        t->args_capacity = 0;
    }
}

static int64_t ac_next_capacity(int64_t have, int64_t need, int64_t initial, int64_t limit)
{
    int64_t cap = have > 0 ? have : initial;
    while (cap < need) cap = cap > limit / 2 ? limit : cap * 2;
    return cap > limit ? limit : cap;
}

int ac_grow_nodes(ac_tape *t, ac_node need)
{
    ac_node cap;
    if (need <= t->capacity) return 0;
    if (need > AC_MAX_NODES) return -2;
    cap = ac_next_capacity(t->capacity, need, AC_INITIAL_NODES, AC_MAX_NODES);
    if (ac_resize((void **)&t->code, cap, sizeof *t->code) < 0) return -1;
    if (ac_resize((void **)&t->val, cap, sizeof *t->val) < 0) return -1;
    t->capacity = cap;
    return 0;
}

int ac_grow_consts(ac_tape *t)
{
    int64_t cap;
    if (t->nconsts >= AC_MAX_CONSTS) return -1;
    cap = ac_next_capacity(t->consts_capacity, t->nconsts + 1, 256, AC_MAX_CONSTS);
    if (ac_resize((void **)&t->consts, cap, sizeof *t->consts) < 0) return -1;
    t->consts_capacity = cap;
    return 0;
}

int ac_reserve_args(ac_tape *t, int64_t more)
{
    int64_t cap, need = t->nargs + more;
    if (need <= t->args_capacity) return 0;
    if (need > ((int64_t)1 << 56)) return -1;
    cap = ac_next_capacity(t->args_capacity, need, 1024, (int64_t)1 << 56);
    if (ac_resize((void **)&t->args, cap, sizeof *t->args) < 0) return -1;
    t->args_capacity = cap;
    return 0;
}

int ac_reserve_leaves(ac_tape *t, int64_t more)
{
    int64_t cap, need = t->nleaves + more;
    if (need <= t->leaves_capacity) return 0;
    cap = ac_next_capacity(t->leaves_capacity, need, 64, AC_MAX_NODES);
    if (need > cap) return -1;
    if (ac_resize((void **)&t->leaf_obj, cap, sizeof *t->leaf_obj) < 0) return -1;
    if (ac_resize((void **)&t->leaf_node, cap, sizeof *t->leaf_node) < 0) return -1;
    if (ac_resize((void **)&t->leaf_version, cap, sizeof *t->leaf_version) < 0) return -1;
    if (ac_resize((void **)&t->leaf_grad, cap, sizeof *t->leaf_grad) < 0) return -1;
    if (ac_resize((void **)&t->leaf_flags, cap, sizeof *t->leaf_flags) < 0) return -1;
    t->leaves_capacity = cap;
    return 0;
}

size_t ac_tape_bytes(const ac_tape *t)
{
    return (size_t)t->capacity * (sizeof *t->code + sizeof *t->val)
         + (size_t)t->consts_capacity * sizeof *t->consts
         + (size_t)t->args_capacity * sizeof *t->args
         + (size_t)t->leaves_capacity * (sizeof *t->leaf_obj + sizeof *t->leaf_node + sizeof *t->leaf_version
                                          + sizeof *t->leaf_grad + sizeof *t->leaf_flags);
}

/* ---- reverse sweep ------------------------------------------------------ */

/* The adjoint rule of every opcode, once, for both sweeps below.  TOUCH(n, v)
 * is what a sweep does with contribution v to operand n; g, y and the
 * operand values come from the node at hand. */
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
    case AC_DOT: {   /* refs come in pairs (x_j, z_j); d/dx_j = z_j */         \
        const uint32_t *refs = args + ac_offset(w);                            \
        uint32_t k, m = refs[0];                                               \
        for (k = 1; k < m; k += 2) {                                           \
            uint32_t rx = refs[k], rz = refs[k + 1];                           \
            double x = (rx & AC_REF_CONST) ? consts[rx & AC_REF_INDEX_MASK] : val[rx]; \
            double z = (rz & AC_REF_CONST) ? consts[rz & AC_REF_INDEX_MASK] : val[rz]; \
            if (!(rx & AC_REF_CONST)) TOUCH(rx, g * z);                        \
            if (!(rz & AC_REF_CONST)) TOUCH(rz, g * x);                        \
        }                                                                      \
        break;                                                                 \
    }                                                                          \
    default:                                                                   \
        break;                                                                 \
    }

#define AC_UNARY_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = val[a], y = val[i]; (void)x; (void)y; TOUCH(a, (D)); break; }
#define AC_CONST_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = val[a], c = consts[b], y = val[i]; (void)x; (void)c; (void)y; \
               TOUCH(a, (D)); break; }
#define AC_BINARY_CASE(TOUCH, OP, DX, DZ)                                      \
    case OP: { double x = val[a], z = val[b], y = val[i]; (void)x; (void)z; (void)y; \
               double dx = (DX), dz = (DZ); TOUCH(a, dx); TOUCH(b, dz); break; }

#define AC_UNARY_CASE_AC_ADD_TO(OP, NAME, F, D) AC_UNARY_CASE(AC_ADD_TO, OP, D)
#define AC_CONST_CASE_AC_ADD_TO(OP, NAME, F, D) AC_CONST_CASE(AC_ADD_TO, OP, D)
#define AC_BINARY_CASE_AC_ADD_TO(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_ADD_TO, OP, DX, DZ)
#define AC_UNARY_CASE_AC_CHECK_NAN(OP, NAME, F, D) AC_UNARY_CASE(AC_CHECK_NAN, OP, D)
#define AC_CONST_CASE_AC_CHECK_NAN(OP, NAME, F, D) AC_CONST_CASE(AC_CHECK_NAN, OP, D)
#define AC_BINARY_CASE_AC_CHECK_NAN(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_CHECK_NAN, OP, DX, DZ)
#define AC_UNARY_CASE_AC_MARKED_ADD(OP, NAME, F, D) AC_UNARY_CASE(AC_MARKED_ADD, OP, D)
#define AC_CONST_CASE_AC_MARKED_ADD(OP, NAME, F, D) AC_CONST_CASE(AC_MARKED_ADD, OP, D)
#define AC_BINARY_CASE_AC_MARKED_ADD(OP, NAME, F, DX, DZ) AC_BINARY_CASE(AC_MARKED_ADD, OP, DX, DZ)

/* Fast sweep.  Adds every contribution; the adjoint array is zeroed lazily,
 * a block at a time below the lowest node touched so far, so it never
 * needs a full clear and the loop ends at the lowest node the output
 * depends on.  A node whose adjoint is exactly 0 is skipped: its
 * contributions are 0 * (local derivative), which only matter when that
 * derivative is inf or nan.  If it is, the node may or may not be
 * reachable from the output, and only an exact reachability sweep can give
 * PyTorch's answer (nan if reachable, nothing if not): return 0 and let
 * ac_sweep run the exact sweep. */
#define AC_ZERO_BLOCK 512
#if defined(__GNUC__) || defined(__clang__)
#define AC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define AC_UNLIKELY(x) (x)
#endif
#define AC_ADD_TO(n, v)                                                        \
    do {                                                                       \
        ac_node n_ = (n);                                                      \
        double v_ = (v);                                                       \
        if (AC_UNLIKELY(n_ < zeroed)) {                                        \
            ac_node from_ = n_ > AC_ZERO_BLOCK ? n_ - AC_ZERO_BLOCK : 0;       \
            memset(adj + from_, 0, (size_t)(zeroed - from_) * sizeof *adj);    \
            zeroed = from_;                                                    \
        }                                                                      \
        if (n_ < low) low = n_;                                                \
        adj[n_] += v_;                                                         \
    } while (0)
/* on bailing out, give back what leaves received so far */
#define AC_CHECK_NAN(n, v)                                                     \
    do {                                                                       \
        double v_ = (v);                                                       \
        (void)(n);                                                             \
        if (v_ != v_) {                                                        \
            if (*result & AC_SWEPT_DELIVERED) ac_undo_delivery(t, adj, i + 1, root); \
            return 0;                                                          \
        }                                                                      \
    } while (0)

static int ac_sweep_fast(ac_tape *t, double *adj, ac_node root, double seed, int deliver,
                         int *result, ac_node *lo)
{
    const ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts;
    const uint32_t *args = t->args;
    const uint8_t *leaf_flags = t->leaf_flags;
    double *leaf_grad = t->leaf_grad;
    ac_node low = root, zeroed = root, i;   /* adj[zeroed..root) is cleared */

    *result = deliver ? AC_SWEPT_DELIVERED : 0;
    adj[root] = seed;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        ac_node a = ac_operand_a(w), b = ac_operand_b(w);
        double g = adj[i];
        if (op == AC_LEAF) {          /* every user is above: g is final */
            if (leaf_flags[a] != AC_LEAF_CURRENT) {
                *result |= AC_SWEPT_DETACHED;
            } else if (deliver) {
                adj[i] = leaf_grad[a];
                leaf_grad[a] += g;
            }
            continue;
        }
        if (g != 0.0) {
            AC_PROPAGATE(AC_ADD_TO)
        } else {
            AC_PROPAGATE(AC_CHECK_NAN)
        }
    }
    *lo = low;
    return 1;
}

/* Exact sweep: only nodes reachable from the output propagate, as in
 * PyTorch, found with the mark bit as the sweep goes.  The first
 * contribution to a node initialises its adjoint; unreached nodes in range
 * get 0.  Marks are cleared on the way. */
#define AC_MARKED_ADD(n, v)                                                    \
    do {                                                                       \
        ac_node n_ = (n);                                                      \
        double v_ = (v);                                                       \
        if (code[n_] & AC_MARK) {                                              \
            adj[n_] += v_;                                                     \
        } else {                                                               \
            code[n_] |= AC_MARK;                                               \
            adj[n_] = v_;                                                      \
            if (n_ < low) low = n_;                                            \
        }                                                                      \
    } while (0)

static void ac_sweep_exact(ac_tape *t, double *adj, ac_node root, double seed, int *result, ac_node *lo)
{
    ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts;
    const uint32_t *args = t->args;
    ac_node low = root, i;

    adj[root] = seed;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        ac_node a = ac_operand_a(w), b = ac_operand_b(w);
        double g;
        if (!(w & AC_MARK)) {
            adj[i] = 0.0;
            continue;
        }
        code[i] = w & ~AC_MARK;
        g = adj[i];
        if (op == AC_LEAF && t->leaf_flags[a] != AC_LEAF_CURRENT) *result |= AC_SWEPT_DETACHED;
        AC_PROPAGATE(AC_MARKED_ADD)
    }
    *lo = low;
}

int ac_sweep(ac_tape *t, double *adj, ac_node root, double seed, int deliver, ac_node *lo)
{
    int result;
    if (!ac_sweep_fast(t, adj, root, seed, deliver, &result, lo)) {
        result = 0;    /* the exact sweep leaves delivery to the caller */
        ac_sweep_exact(t, adj, root, seed, &result, lo);
    }
    return result;
}

int64_t ac_first_leaf_at(const ac_tape *t, ac_node node)
{
    int64_t lo = 0, hi = t->nleaves, mid;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if ((ac_node)t->leaf_node[mid] < node) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void ac_undo_delivery(ac_tape *t, const double *adj, ac_node lo, ac_node root)
{
    int64_t k;
    for (k = ac_first_leaf_at(t, lo); k < t->nleaves && (ac_node)t->leaf_node[k] <= root; ++k)
        if (t->leaf_flags[k] == AC_LEAF_CURRENT) t->leaf_grad[k] = adj[t->leaf_node[k]];
}

ac_node ac_mark_reachable(ac_tape *t, ac_node root)
{
    ac_code *code = t->code;
    ac_node low = root, i;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        if (!(w & AC_MARK)) continue;
        AC_FOR_EACH_OPERAND(t, w, n, { code[n] |= AC_MARK; if (n < low) low = n; });
    }
    return low;
}

void ac_clear_marks(ac_tape *t, ac_node lo, ac_node hi)
{
    ac_node i;
    for (i = lo; i <= hi; ++i) t->code[i] &= ~AC_MARK;
}

int64_t ac_count_marks(const ac_tape *t, ac_node lo, ac_node hi)
{
    int64_t n = 0;
    ac_node i;
    for (i = lo; i <= hi; ++i) n += (t->code[i] & AC_MARK) != 0;
    return n;
}

/* ---- compaction --------------------------------------------------------- */

uint64_t *ac_stale_nodes(const ac_tape *t, const uint8_t *stale_leaf, int *failed)
{
    ac_node i;
    uint64_t *bits = calloc((size_t)(t->size / 64 + 1), sizeof *bits);
    *failed = bits == NULL;
    if (bits == NULL) return NULL;
    for (i = 0; i < t->size; ++i) {    /* upward: operands are decided before their users */
        ac_code w = t->code[i];
        int stale = 0;
        if (ac_opcode(w) == AC_LEAF)
            stale = stale_leaf[ac_operand_a(w)] != 0;
        else
            AC_FOR_EACH_OPERAND(t, w, n, { stale |= ac_bit(bits, n); });
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

int ac_compact_begin(ac_tape *t, ac_compactor *cp)
{
    ac_code *code = t->code;
    int64_t words = t->size / 64 + 1, w, const_refs = 0;
    ac_node i, running = 0;

    memset(cp, 0, sizeof *cp);
    cp->keep = calloc((size_t)words, sizeof *cp->keep);
    cp->rank = malloc((size_t)words * sizeof *cp->rank);
    if (cp->keep == NULL || cp->rank == NULL) {
        ac_clear_marks(t, 0, t->size - 1);
        ac_compact_free(cp);
        return -1;
    }
    for (i = t->size - 1; i >= 0; --i) {   /* downward: users before operands */
        ac_code c = code[i];
        int op = ac_opcode(c);
        if (!(c & AC_MARK)) continue;
        code[i] = c & ~AC_MARK;
        cp->keep[i >> 6] |= (uint64_t)1 << (i & 63);
        AC_FOR_EACH_OPERAND(t, c, n, { code[n] |= AC_MARK; });
        if (ac_uses_const(op)) {
            const_refs += 1;
        } else if (op == AC_SUM || op == AC_DOT) {
            const uint32_t *refs = t->args + ac_offset(c);
            uint32_t k;
            for (k = 1; k <= refs[0]; ++k) const_refs += (refs[k] & AC_REF_CONST) != 0;
        }
    }
    for (w = 0; w < words; ++w) {
        cp->rank[w] = running;
        running += (ac_node)ac_popcount(cp->keep[w]);
    }
    cp->kept = running;
    cp->new_consts_capacity = const_refs > 0 ? const_refs : 1;
    cp->new_consts = malloc((size_t)cp->new_consts_capacity * sizeof *cp->new_consts);
    if (cp->new_consts == NULL) {
        ac_compact_free(cp);
        return -1;
    }
    return 0;
}

void ac_compact_finish(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap)
{
    ac_code *code = t->code;
    double *val = t->val, *old_consts = t->consts;
    int64_t new_nargs = 0;
    ac_node i, j = 0;

    /* Surviving constants are re-added to the new pool through a fresh dedup
     * cache; the pool has room for every reference, so it never grows. */
    t->consts = cp->new_consts;
    t->consts_capacity = cp->new_consts_capacity;
    t->nconsts = 0;
    cp->new_consts = NULL;
    memset(t->const_cache, 0, sizeof t->const_cache);

    for (i = 0; i < t->size; ++i) {
        ac_code w, out;
        int op;
        if (!ac_kept(cp, i)) continue;
        w = code[i];
        op = ac_opcode(w);
        if (op == AC_LEAF) {
            out = ac_pack(op, (uint64_t)leaf_remap[ac_operand_a(w)], 0);
        } else if (op == AC_SUM || op == AC_DOT) {
            const uint32_t *refs = t->args + ac_offset(w);
            uint32_t *dst = t->args + new_nargs, k, m = refs[0];
            dst[0] = m;    /* dst <= refs: copying upward never overwrites an unread ref */
            for (k = 1; k <= m; ++k) {
                uint32_t r = refs[k];
                dst[k] = (r & AC_REF_CONST)
                    ? (AC_REF_CONST | (uint32_t)ac_const_index(t, old_consts[r & AC_REF_INDEX_MASK]))
                    : (uint32_t)ac_rank(cp, r);
            }
            out = ac_pack_offset(op, (uint64_t)new_nargs);
            new_nargs += (int64_t)m + 1;
        } else if (op >= AC_FIRST_BINARY) {
            out = ac_pack(op, (uint64_t)ac_rank(cp, ac_operand_a(w)), (uint64_t)ac_rank(cp, ac_operand_b(w)));
        } else {
            uint64_t b = ac_uses_const(op) ? (uint64_t)ac_const_index(t, old_consts[ac_operand_b(w)]) : 0;
            out = ac_pack(op, (uint64_t)ac_rank(cp, ac_operand_a(w)), b);
        }
        code[j] = out;
        val[j] = val[i];
        ++j;
    }

    t->size = j;
    t->nargs = new_nargs;
    free(old_consts);
}
