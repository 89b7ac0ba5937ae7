/* tape.h -- the Wengert list: one thread's recorded operations in C arrays.
 *
 * Invariant: a node's index is its creation order, and every operand of a
 * node has a smaller index.  The tape is therefore already in topological
 * order; the reverse sweep is a countdown from the output node.
 *
 * Per node the tape holds 16 bytes: a packed code word and the forward value
 * (18 in the wide layout, below).  Adjoints exist only during a sweep, in
 * buffers the caller provides.
 * Constant operands (x * 0.5) live in a deduplicated side pool addressed by
 * operand b, and the operand lists of n-ary nodes (sum, dot) in a side
 * array of 32-bit references, so neither costs an extra word per node.
 *
 * Leaves (user-made Variables) are not nodes.  The first time a leaf is used
 * on a tape it gets an entry in the tape's leaf table, and operands refer to
 * it as a leaf reference (AC_LEAF_BIT | entry).  The sweep never visits
 * leaves; their adjoints gather in a separate buffer indexed by entry.
 *
 * This file and tape*.c hold plain C only: no Python API.  Leaf objects are
 * opaque pointers whose references the Cython layer (src/_core.pyx and its
 * .pxi includes; see docs/architecture.md) owns.
 */
#ifndef AUTOGRAD_C_TAPE_H
#define AUTOGRAD_C_TAPE_H

#include <stdint.h>
#include <string.h>
#include "ops.h"

#if defined(__GNUC__) || defined(__clang__)
#define AC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AC_LIKELY(x) __builtin_expect(!!(x), 1)
#define AC_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define AC_UNLIKELY(x) (x)
#define AC_LIKELY(x) (x)
#define AC_ALWAYS_INLINE inline
#endif

#ifdef __cplusplus     /* src/higher.cpp calls the C functions below */
extern "C" {
#endif

typedef int64_t ac_node;    /* a node index; -1 where there is none */
typedef uint64_t ac_code;   /* a node's opcode, mark bit and operands, packed */

/* References.  Outside the loops of tape_sweep.h and tape_compact.h, an
 * operand is an ac_ref: a node index, AC_LEAF_BIT | leaf entry, or (in
 * n-ary operand lists only) AC_CONST_BIT | constant-pool index.  The
 * recorder hands these to ac_push_* and ac_set_arg, readers get them from
 * ac_ref_a/ac_ref_b/ac_arg; the tape stores them in one of two layouts. */
typedef uint64_t ac_ref;
#define AC_LEAF_BIT        ((ac_ref)1 << 62)
#define AC_CONST_BIT       ((ac_ref)1 << 63)
#define AC_REF_INDEX       (AC_LEAF_BIT - 1)
static inline int ac_ref_is_leaf(ac_ref r) { return (r & AC_LEAF_BIT) != 0; }
static inline int64_t ac_ref_index(ac_ref r) { return (int64_t)(r & AC_REF_INDEX); }

/* Code word, in both layouts:
 *   bits 0-6    opcode (enum ac_opcode)
 *   bit  7      mark: "reached" during a sweep or a reachability pass
 *   bits 8-35   operand a's field
 *   bits 36-63  operand b's field, or a constant-pool index for constant ops
 * n-ary nodes use bits 8-63 together as an offset into their operand list.
 *
 * Narrow layout (hi == NULL; every tape starts in it): a field is a node
 * index below 2^27, or AC_NARROW_LEAF | leaf entry; a constant op's pool
 * index is below 2^28; operand lists are 32-bit (`args`): a count, then
 * references as fields, or AC_NARROW_CONST | pool index.  16 bytes a node;
 * up to AC_MAX_NODES nodes and AC_MAX_LEAVES leaf entries.
 *
 * Wide layout (hi != NULL): entered by ac_widen when a tape would pass
 * those limits (or ac_narrow_limit, a test knob).  The fields keep the low
 * 27 bits of an index and the leaf flag (of a pool index: 28 bits), and
 * hi[i] the next 8 bits, a's in its low byte and b's in its high byte;
 * operand lists are 64-bit ac_refs (`wargs`).  18 bytes a node; up to
 * AC_WIDE_MAX_NODES nodes and leaf entries.  Existing narrow words are
 * valid wide words with hi = 0, so widening only adds hi and widens the
 * operand lists.  A tape stays wide until it resets. */
#define AC_MARK            ((ac_code)0x80)
#define AC_FIELD_BITS      28
#define AC_FIELD_MASK      ((ac_code)((1u << AC_FIELD_BITS) - 1))
#define AC_NARROW_LEAF     (1u << 27)
#define AC_NARROW_INDEX    (AC_NARROW_LEAF - 1)
#define AC_NARROW_CONST    0x80000000u
#define AC_MAX_NODES       ((ac_node)AC_NARROW_INDEX)  /* narrow: 134,217,727 nodes ... */
#define AC_MAX_LEAVES      ((int64_t)AC_NARROW_INDEX)  /* ... and as many leaf entries */
#define AC_MAX_CONSTS      ((int64_t)AC_FIELD_MASK)
#define AC_WIDE_MAX_NODES  (((ac_node)1 << 35) - 1)     /* wide: 34,359,738,367 */
#define AC_WIDE_MAX_CONSTS (((int64_t)1 << 36) - 1)

static inline ac_code ac_pack(int op, uint64_t a, uint64_t b)
{
    return (ac_code)op | ((ac_code)a << 8) | ((ac_code)b << 36);
}
static inline ac_code ac_pack_offset(int op, uint64_t offset) { return (ac_code)op | (offset << 8); }
static inline int ac_opcode(ac_code c) { return (int)(c & 0x7f); }
static inline uint64_t ac_field_a(ac_code c) { return (c >> 8) & AC_FIELD_MASK; }
static inline uint64_t ac_field_b(ac_code c) { return c >> 36; }
static inline uint64_t ac_offset(ac_code c) { return c >> 8; }

/* narrow field <-> reference */
static inline uint64_t ac_narrow_field(ac_ref r)
{
    return (r & AC_NARROW_INDEX) | ((r >> 35) & AC_NARROW_LEAF);
}
static inline uint32_t ac_narrow_arg(ac_ref r)
{
    return (uint32_t)((r & 0x7fffffffu) | ((r >> 35) & AC_NARROW_LEAF) | ((r >> 32) & AC_NARROW_CONST));
}
static inline ac_ref ac_ref_of_narrow(uint64_t f)
{
    return (f & AC_NARROW_INDEX) | ((f & AC_NARROW_LEAF) << 35);
}
/* wide field (27 bits and the leaf flag) and high byte -> reference */
static inline ac_ref ac_ref_of_wide(uint64_t f, unsigned hi8)
{
    return ac_ref_of_narrow(f) | ((ac_ref)hi8 << 27);
}
static inline ac_ref ac_ref_of_arg32(uint32_t r)
{
    return (r & AC_NARROW_CONST) ? (AC_CONST_BIT | (r & ~AC_NARROW_CONST)) : ac_ref_of_narrow(r);
}

/* leaf_flags bits */
#define AC_LEAF_CURRENT    1   /* the leaf caches this entry: its gradient goes to leaf_grad */
#define AC_LEAF_MARK       2   /* "reached", like AC_MARK on nodes */
#define AC_LEAF_RELEASED   4   /* stands for a released Variable's value: backward() refuses it */

#define AC_CONST_CACHE_BITS 8
#define AC_CONST_CACHE      (1 << AC_CONST_CACHE_BITS)

/* AC_CUSTOM nodes keep their adjoint rule in Python (a user's Function).
 * The sweep asks this hook for node i's contributions to its operand list
 * given the node's adjoint g: one double per reference, constants included.
 * NULL means the hook failed (the caller keeps the error); the sweep stops. */
typedef const double *(*ac_custom_hook)(void *ctx, ac_node i, double g);

/* Asked between blocks of a long sweep: nonzero stops it, which then fails
 * as a failing custom hook does (every leaf_grad and mark as before). */
typedef int (*ac_poll_hook)(void *ctx);

/* The opcode enum orders the groups: n-ary, one operand, constant, binary. */
#define AC_LAST_NARY     AC_CUSTOM    /* opcodes up to this one keep operand lists */
#define AC_FIRST_CONST   AC_ADDC
#define AC_FIRST_BINARY  AC_ADD
static inline int ac_is_nary(int op) { return op <= AC_LAST_NARY; }
static inline int ac_uses_const(int op) { return op >= AC_FIRST_CONST && op < AC_FIRST_BINARY; }

/* Parts of a dead graph's large arrays, kept for the next recording until a
 * deadline (tape_retain.c): block k's bytes [lo[k], hi[k]).  The owner
 * writes `registered`, the blocks and their ranges; the rest belongs to
 * tape_retain.c's lock while registered. */
#define AC_RETAIN_BLOCKS 12
typedef struct ac_retained {
    struct ac_retained *prev, *next;  /* the reaper's list */
    double since, deadline;           /* monotonic seconds */
    int state;                        /* kept, or released (pages given back) */
    int registered;                   /* handed over and not ended by the owner */
    int nblocks;
    void *block[AC_RETAIN_BLOCKS];
    size_t lo[AC_RETAIN_BLOCKS], hi[AC_RETAIN_BLOCKS];
} ac_retained;

/* Every array has a capacity, the entries the tape may write, and an
 * allocated size (*_alloc, at least the capacity).  They differ after a
 * graph died: the entries between them are kept with tape_retain.c and
 * taken back as a new graph grows into them (see ac_retain). */
typedef struct ac_tape {
    ac_code *code;            /* [capacity] opcode and operands of each node */
    double *val;              /* [capacity] forward value of each node */
    uint16_t *hi;             /* [capacity] wide layout: high index bits of a and b; or NULL */
    ac_node size;             /* nodes recorded */
    ac_node capacity, alloc;

    double *consts;           /* constant operands, deduplicated through const_cache */
    int64_t nconsts, consts_capacity, consts_alloc;
    uint32_t const_cache[AC_CONST_CACHE];   /* hash of a constant's bits -> pool index + 1
                                               (pool indices past 2^32 - 2 are not cached) */

    uint32_t *args;           /* n-ary operand lists, narrow: a count, then that many fields */
    uint64_t *wargs;          /* the same in the wide layout (args is NULL then) */
    int64_t nargs, args_capacity, args_alloc;

    /* Leaf table, in order of first use.  Entry k: the leaf object
     * leaf_obj[k] (a strong reference owned by the Cython layer), its value
     * leaf_val[k] and version counter leaf_version[k] when recorded.  While
     * the entry is the leaf's current one (AC_LEAF_CURRENT), backward() adds
     * the leaf's gradient into leaf_grad[k] -- a sequential write instead of
     * a visit to every leaf object -- and the leaf adds leaf_grad[k] to its
     * own gradient when read, or takes it for good when the entry stops
     * being current.  Past entries hand gradients to the object directly. */
    void **leaf_obj;
    double *leaf_val;
    uint32_t *leaf_version;
    double *leaf_grad;
    uint8_t *leaf_flags;
    int64_t nleaves, leaves_capacity, leaves_alloc;
    int64_t ndetached;        /* entries that are not their leaf's current one */

    ac_custom_hook custom_backward;   /* set by the owner when it records AC_CUSTOM nodes */
    ac_poll_hook poll;                /* set by the owner: interrupt long sweeps (or NULL) */
    void *custom_ctx;                 /* the hooks' context */
    uint64_t leaf_flag;       /* AC_NARROW_LEAF, or AC_LEAF_BIT in the wide layout ... */
    uint64_t const_flag;      /* ... and AC_NARROW_CONST or AC_CONST_BIT: see ac_layout_ref */
    int busy;                 /* nonzero while the owner reads or rewrites the tape: nothing may change it */
    ac_retained retained;     /* array parts kept after the graph died (tape_retain.c) */
} ac_tape;

/* Set-up and storage.  Growth functions return 0, or -1 when memory (or the
 * index space) runs out; they never free what is already recorded. */
void ac_tape_init(ac_tape *t);
void ac_tape_free(ac_tape *t);             /* frees the arrays (ending any retention first);
                                              keeps the hooks */
void ac_tape_clear(ac_tape *t);            /* forget every node; large arrays shrink to at
                                              most 4x what they held; memory is kept */
void ac_tape_trim(ac_tape *t);             /* give back capacity far above what is held */
/* After ac_tape_clear: hand every array above AC_SHRINK_ABOVE entries,
 * and the given extra blocks (bytes [lo, hi) of each), to tape_retain.c;
 * those arrays' capacities drop to 0, and growth takes their entries back.
 * Returns 0, or -1 where that is unavailable: then the caller frees them
 * (ac_tape_free_large) and the extra blocks. */
#define AC_SHRINK_ABOVE ((int64_t)1 << 20)
int ac_tape_retain(ac_tape *t, void *const *extra, const size_t *lo, const size_t *hi, int nextra);
void ac_tape_free_large(ac_tape *t);       /* free arrays above AC_SHRINK_ABOVE entries */
/* Growth: 0, -1 when memory runs out, -2 when the narrow layout is full
 * (the caller widens the tape and asks again), -3 past the wide layout's
 * limits. */
int ac_grow_nodes(ac_tape *t, ac_node need);
int ac_grow_consts(ac_tape *t);
int ac_reserve_args(ac_tape *t, int64_t more);
int ac_reserve_leaves(ac_tape *t, int64_t more);
/* Switch to the wide layout (see the code word above): 0, or -1 when memory
 * runs out (nothing changed).  ac_narrow_limit (default AC_MAX_NODES) is
 * where growth of nodes or leaf entries asks for it: tests lower it so that
 * small tapes cross into the wide layout. */
int ac_widen(ac_tape *t);
extern int64_t ac_narrow_limit;
size_t ac_tape_bytes(const ac_tape *t);    /* bytes of the arrays' capacities (what is kept for
                                              the next graph not included) */

/* Keeping a dead graph's memory (tape_retain.c).  ac_retain: the owner
 * hands over bytes [lo[k], hi[k]) of n blocks, which it keeps allocated but
 * will not touch; when the deadline passes (ac_retain_seconds after this,
 * moved later by growth: see tape_retain.c) their whole pages go back to the
 * OS and read as zeros.  Returns 0, or -1 where this is unavailable (not
 * Linux, no thread).  ac_retain_take: the owner will use block's bytes
 * below upto (zeros if they were given back).  ac_retain_end: the owner
 * takes everything back (before it frees or resizes a block).
 * ac_retained_bytes: bytes handed over and not given back yet. */
extern double ac_retain_seconds;
int ac_retain(ac_retained *r, void *const *blocks, const size_t *lo, const size_t *hi, int n);
void ac_retain_take(ac_retained *r, const void *block, size_t upto);
void ac_retain_end(ac_retained *r);
size_t ac_retained_bytes(ac_retained *r);
void ac_release_retained_now(void);        /* tests: every deadline passes now */

/* Index of constant c in the pool, adding it unless an equal constant (same
 * bits) is in the dedup cache; ac_grow_consts's negative code when the pool
 * cannot grow. */
static inline int64_t ac_const_index(ac_tape *t, double c)
{
    uint64_t bits, seen;
    uint32_t h, slot;
    memcpy(&bits, &c, sizeof bits);
    h = (uint32_t)((bits * 0x9E3779B97F4A7C15ull) >> (64 - AC_CONST_CACHE_BITS));
    slot = t->const_cache[h];
    if (slot) {
        memcpy(&seen, &t->consts[slot - 1], sizeof seen);
        /* a hit is the common case, and with 32-bit slots the compiler sees
         * it is never negative: the recorder's error test leaves this path */
        if (AC_LIKELY(seen == bits)) return (int64_t)slot - 1;
    }
    if (t->nconsts == t->consts_capacity) {
        int rc = ac_grow_consts(t);
        if (rc < 0) return rc;       /* see ac_grow_consts */
    }
    t->consts[t->nconsts] = c;
    if (t->nconsts < (int64_t)UINT32_MAX)      /* the cache is only a cache */
        t->const_cache[h] = (uint32_t)(t->nconsts + 1);
    return t->nconsts++;
}

/* ---- recording: the caller has made room (ac_grow_nodes, ac_reserve_args) *
 *
 * Recorders hand operands over in the tape's current layout: a node index,
 * t->leaf_flag | leaf entry, t->const_flag | pool index (in operand lists);
 * ac_layout_ref turns an ac_ref into that form.  A tape widens only between
 * operations (the Cython layer's _make_room), so the form an operation
 * starts with holds until its node is pushed; in the narrow layout these
 * are the words stored, with nothing to convert. */
static inline uint64_t ac_layout_ref(const ac_tape *t, ac_ref r)
{
    return t->hi != NULL ? r : ac_narrow_arg(r);
}

/* A node with operand a and b: an operand of a binary op, a constant-pool
 * index of a constant op, 0 for one operand.  The wide layout's push is out
 * of line (tape.c) and returns from here, so the narrow path recording
 * takes is the plain store it was before the wide layout, plus one test of
 * hi; an inlined wide branch made every narrow push pay for it (issue 13). */
ac_node ac_push_op_wide(ac_tape *t, int op, uint64_t a, uint64_t b, double v);
static AC_ALWAYS_INLINE ac_node ac_push_op(ac_tape *t, int op, uint64_t a, uint64_t b, double v)
{
    ac_node i = t->size;
    if (AC_UNLIKELY(t->hi != NULL)) return ac_push_op_wide(t, op, a, b, v);
    t->code[i] = ac_pack(op, a, b);
    t->val[i] = v;
    t->size = i + 1;
    return i;
}

/* An n-ary node whose operand list (already written) starts at offset. */
static inline ac_node ac_push_nary(ac_tape *t, int op, int64_t offset, double v)
{
    ac_node i = t->size;
    t->code[i] = ac_pack_offset(op, (uint64_t)offset);
    if (AC_UNLIKELY(t->hi != NULL)) t->hi[i] = 0;
    t->val[i] = v;
    t->size = i + 1;
    return i;
}

/* Operand-list word at pos: a count (the first word of a list; narrow lists
 * hold fewer than 2^31 references, which the recorders check), or a
 * reference in the tape's layout. */
static inline void ac_set_word(ac_tape *t, int64_t pos, uint64_t w)
{
    if (AC_UNLIKELY(t->wargs != NULL)) t->wargs[pos] = w;
    else t->args[pos] = (uint32_t)w;
}

/* ---- reading a node's operands (outside the sweeps) --------------------- */

/* Operand a of node i (any group but n-ary), b of a binary node, the pool
 * index of a constant op; an n-ary node's count and operand k (0-based). */
static inline ac_ref ac_ref_a(const ac_tape *t, ac_node i)
{
    uint64_t f = ac_field_a(t->code[i]);
    return t->hi != NULL ? ac_ref_of_wide(f, t->hi[i] & 0xffu) : ac_ref_of_narrow(f);
}
static inline ac_ref ac_ref_b(const ac_tape *t, ac_node i)
{
    uint64_t f = ac_field_b(t->code[i]);
    return t->hi != NULL ? ac_ref_of_wide(f, (unsigned)t->hi[i] >> 8) : ac_ref_of_narrow(f);
}
static inline int64_t ac_const_b(const ac_tape *t, ac_node i)
{
    uint64_t f = ac_field_b(t->code[i]);
    return (int64_t)(t->hi != NULL ? f | ((uint64_t)(t->hi[i] >> 8) << 28) : f);
}
static inline int64_t ac_nargs(const ac_tape *t, ac_node i)
{
    uint64_t off = ac_offset(t->code[i]);
    return t->wargs != NULL ? (int64_t)t->wargs[off] : (int64_t)t->args[off];
}
static inline ac_ref ac_arg(const ac_tape *t, ac_node i, int64_t k)
{
    uint64_t off = ac_offset(t->code[i]) + 1 + (uint64_t)k;
    return t->wargs != NULL ? t->wargs[off] : ac_ref_of_arg32(t->args[off]);
}

static inline int ac_is_marked(const ac_tape *t, ac_node i) { return (t->code[i] & AC_MARK) != 0; }
static inline void ac_set_mark(ac_tape *t, ac_node i) { t->code[i] |= AC_MARK; }

/* ---- reverse sweep ------------------------------------------------------ */

typedef struct ac_sweep_result {
    ac_node lo;               /* the lowest node reached */
    int64_t leaf_lo, leaf_hi; /* leaf entries touched lie in [leaf_lo, leaf_hi]; empty if hi < lo */
    int exact;                /* 1: reached leaf entries carry AC_LEAF_MARK, for the caller to clear */
    int delivered;            /* 1: leaf contributions went into leaf_grad; leaf_adj holds
                                 leaf_grad's previous values on [leaf_lo, leaf_hi] */
} ac_sweep_result;

/* Sweep from the output node `root` (adjoint `seed`) down to the lowest node
 * it depends on.  Afterwards adj[i], for r->lo <= i <= root, is
 * d(output)/d(node i) and leaf_adj[k], for k in [r->leaf_lo, r->leaf_hi],
 * d(output)/d(leaf entry k); both 0 where the output does not depend on
 * them (in exact mode, unreached leaf entries are the unmarked ones and
 * their leaf_adj is undefined).  PyTorch's semantics: only what is reachable
 * from the output propagates, so an unrelated graph sharing the tape never
 * leaks a nan in.  Pure C, no allocation.  adj must hold root + 1
 * doubles, leaf_adj t->nleaves.
 *
 * With deliver != 0 the fast sweep adds leaf contributions straight into
 * leaf_grad (saving the values it had in leaf_adj) and sets r->delivered;
 * the exact sweep never does.
 *
 * AC_CUSTOM nodes call t->custom_backward, only for a nonzero adjoint (so
 * a user's backward runs only where gradient flows).  If it fails, or
 * t->poll asks to stop, the sweep returns -1 with every leaf_grad and mark
 * as before; else 0. */
int ac_sweep(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
              int deliver, ac_sweep_result *r);
/* Put back the leaf_grad values a delivering sweep saved, entries lo..hi. */
void ac_undo_delivery(ac_tape *t, const double *saved, int64_t lo, int64_t hi);

/* For detect_anomaly: the first node, in sweep order, whose finite adjoint
 * gives one of its operands an inf or nan contribution; -1 if none, -2 if
 * the custom hook failed.  Uses the buffers as scratch; leaves no marks. */
ac_node ac_find_anomaly(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed);

/* Mark every node and leaf entry reachable from node `root`, without
 * computing adjoints; fills r like ac_sweep in exact mode.  The caller
 * clears the marks with ac_clear_marks(t, r, root). */
void ac_mark_reachable(ac_tape *t, ac_node root, ac_sweep_result *r);
void ac_clear_marks(ac_tape *t, const ac_sweep_result *r, ac_node root);

/* ---- compaction (mark-compact of the reachable subgraph) ---------------- */

typedef struct ac_compactor {
    uint64_t *keep;           /* bit i: node i survives */
    ac_node *rank;            /* rank[w]: surviving nodes below node 64*w */
    ac_node kept;             /* surviving nodes in total */
    double *new_consts;       /* the rebuilt constant pool, allocated up front */
    int64_t new_consts_capacity;
} ac_compactor;

/* Nodes whose value depends on a stale leaf entry (stale_leaf[k] != 0): a
 * bitmap over the tape, or NULL with *failed = 1 when memory runs out. */
uint64_t *ac_stale_nodes(const ac_tape *t, const uint8_t *stale_leaf, int *failed);
static inline int ac_bit(const uint64_t *bits, ac_node i) { return (int)((bits[i >> 6] >> (i & 63)) & 1); }

/* Begin: the caller has marked the roots.  Propagate marks downward, move
 * them into the keep bitmap (clearing every node mark; used leaf entries get
 * AC_LEAF_MARK), count, and allocate all that finishing needs.  Returns 1 if
 * some node can go, 0 if every node is reachable (nothing is allocated then
 * and no mark remains), -1 on memory failure (no mark remains, nothing else
 * changed).  After a 1, ac_compact_finish cannot fail. */
int ac_compact_begin(ac_tape *t, ac_compactor *cp);

/* Portable popcount that compiles to a few ALU ops (the builtin becomes a
 * libgcc call unless the build targets a CPU with POPCNT). */
static inline int ac_popcount(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

/* New index of a surviving node i. */
static inline ac_node ac_rank(const ac_compactor *cp, ac_node i)
{
    uint64_t below = cp->keep[i >> 6] & ((((uint64_t)1) << (i & 63)) - 1);
    return cp->rank[i >> 6] + (ac_node)ac_popcount(below);
}

/* Finish: slide surviving nodes down in order, remap operands (leaf
 * references through leaf_remap: the caller has compacted the leaf table),
 * rebuild the constant pool and operand lists. */
void ac_compact_finish(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap);
void ac_compact_free(ac_compactor *cp);

#ifdef __cplusplus
}
#endif

#endif /* AUTOGRAD_C_TAPE_H */
