/* tape_sweep.h -- the reverse sweeps, written once for both tape layouts.
 *
 * Included twice by tape_sweep.c, after tape_layout.h's macros for the
 * narrow layout and then the wide one (AC_WIDE 0, 1): each function here
 * becomes name_narrow and name_wide (AC_L), and tape_sweep.c's public
 * entry points pick one per call by the tape's layout.  The macros and
 * helpers that do not depend on the layout are defined once (the guarded
 * part); those that read references use L_* at their point of use.
 */
#include "tape_layout.h"

#ifndef AC_TAPE_SWEEP_SHARED
#define AC_TAPE_SWEEP_SHARED

/* The adjoint rule of every opcode, written once for both sweeps below.
 * TOUCH(r, v) is what a sweep does with contribution v to operand r;
 * VALUE(r) reads an operand's forward value; g is the node's adjoint. */
#define AC_VALUE(r) (L_IS_LEAF(r) ? leaf_val[L_INDEX(r)] : val[(r)])

#define AC_UNARY_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = AC_VALUE(a), y = val[i]; (void)x; (void)y;           \
               TOUCH(a, (D)); break; }
#define AC_CONST_CASE(TOUCH, OP, D)                                            \
    case OP: { double x = AC_VALUE(a), c = consts[L_CONST_B(i, w)], y = val[i]; \
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
        const L_ARG *refs = args + ac_offset(w);                               \
        L_ARG k, m = refs[0];                                                  \
        for (k = 1; k <= m; ++k)                                               \
            if (!L_ARG_IS_CONST(refs[k])) TOUCH(refs[k], g);                   \
        break;                                                                 \
    }                                                                          \
    case AC_CUSTOM: {   /* the user's backward, only where gradient flows */   \
        const L_ARG *refs = args + ac_offset(w);                               \
        L_ARG k, m = refs[0];                                                  \
        const double *gin;                                                     \
        if (g == 0.0) {     /* no call; zeros still reach the operands */      \
            for (k = 1; k <= m; ++k)                                           \
                if (!L_ARG_IS_CONST(refs[k])) TOUCH(refs[k], 0.0);             \
            break;                                                             \
        }                                                                      \
        gin = t->custom_backward(t->custom_ctx, i, g);                         \
        if (gin == NULL) goto failed;                                          \
        for (k = 1; k <= m; ++k)                                               \
            if (!L_ARG_IS_CONST(refs[k])) TOUCH(refs[k], gin[k - 1]);          \
        break;                                                                 \
    }                                                                          \
    case AC_DOT: {   /* refs come in pairs (x_j, z_j); d/dx_j = z_j */         \
        const L_ARG *refs = args + ac_offset(w);                               \
        L_ARG k, m = refs[0];                                                  \
        for (k = 1; k < m; k += 2) {                                           \
            L_ARG rx = refs[k], rz = refs[k + 1];                              \
            double x = L_ARG_IS_CONST(rx) ? consts[L_ARG_CONST(rx)] : AC_VALUE(rx); \
            double z = L_ARG_IS_CONST(rz) ? consts[L_ARG_CONST(rz)] : AC_VALUE(rz); \
            if (!L_ARG_IS_CONST(rx)) TOUCH(rx, g * z);                         \
            if (!L_ARG_IS_CONST(rz)) TOUCH(rz, g * x);                         \
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


#define AC_ADD_TO(r, v)                                                        \
    do {                                                                       \
        L_REF r_ = (L_REF)(r);                                                 \
        double v_ = (v);                                                       \
        if (L_IS_LEAF(r_)) {                                                   \
            int64_t k_ = L_INDEX(r_);                                          \
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

/* Exact sweep: only what is reachable from the output propagates, as in
 * PyTorch, found with the marks as the sweep goes.  The first contribution
 * to a node or leaf entry initialises its adjoint; unreached nodes in range
 * get 0.  Node marks are cleared on the way; leaf marks stay for the caller. */
#define AC_MARKED_ADD(r, v)                                                    \
    do {                                                                       \
        L_REF r_ = (L_REF)(r);                                                 \
        double v_ = (v);                                                       \
        if (L_IS_LEAF(r_)) {                                                   \
            int64_t k_ = L_INDEX(r_);                                          \
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

/* detect_anomaly's backward check: the exact sweep again, stopping at the
 * first node whose finite adjoint gives an operand an inf or nan. */
#define AC_ANOMALY_ADD(r, v)                                                   \
    do {                                                                       \
        double w_ = (v);                                                       \
        if (!isfinite(w_) && isfinite(g)) { found = i; goto done; }            \
        AC_MARKED_ADD(r, w_);                                                  \
    } while (0)

#endif /* AC_TAPE_SWEEP_SHARED */

static int AC_L(ac_sweep_fast)(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
                         int deliver, ac_sweep_result *res)
{
    const ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const L_ARG *args = L_ARGS(t);
    L_HI_OF(t);
    double *leaf_dst = deliver ? t->leaf_grad : leaf_adj;
    ac_node low = root, zeroed = root, i;   /* adj[zeroed..root) is cleared */
    ac_leaf_window lw = {0, 0, INT64_MAX, -1};

    adj[root] = seed;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        L_REF a = L_A(i, w), b = L_B(i, w);
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

static int AC_L(ac_sweep_exact)(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
                          ac_sweep_result *res)
{
    ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const L_ARG *args = L_ARGS(t);
    L_HI_OF(t);
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
        L_REF a = L_A(i, w), b = L_B(i, w);
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

static ac_node AC_L(ac_find_anomaly)(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed)
{
    ac_code *code = t->code;
    const double *val = t->val, *consts = t->consts, *leaf_val = t->leaf_val;
    const L_ARG *args = L_ARGS(t);
    L_HI_OF(t);
    uint8_t *leaf_flags = t->leaf_flags;
    ac_node low = root, i, found = -1;
    ac_sweep_result marks = {root, INT64_MAX, -1, 1, 0}, *res = &marks;

    adj[root] = seed;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        int op = ac_opcode(w);
        L_REF a = L_A(i, w), b = L_B(i, w);
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

static void AC_L(ac_mark_reachable)(ac_tape *t, ac_node root, ac_sweep_result *r)
{
    ac_code *code = t->code;
    uint8_t *leaf_flags = t->leaf_flags;
    L_HI_OF(t);
    ac_node low = root, i;
    r->leaf_lo = INT64_MAX;
    r->leaf_hi = -1;
    r->exact = 1;
    code[root] |= AC_MARK;
    for (i = root; i >= low; --i) {
        ac_code w = code[i];
        if (!(w & AC_MARK)) continue;
        AC_FOR_EACH_OPERAND(t, i, w, ref, {
            if (L_IS_LEAF(ref)) {
                int64_t k = L_INDEX(ref);
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
