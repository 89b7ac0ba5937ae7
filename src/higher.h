/* higher.h -- higher-order sweeps over the tape (src/higher.cpp), as C sees them.
 *
 * Three sweeps, all expanding the adjoint columns of src/ops.h:
 *   ac_tangent_sweep   forward mode: every node's tangent (directional
 *                      derivative) from its operands' tangents; the rule of a
 *                      node is its adjoint column with g := the operand's
 *                      tangent (the columns are linear in g).
 *   ac_reverse_sweep   reverse mode from one or several seeded outputs; with
 *                      tangents given, forward-over-reverse: every adjoint is
 *                      a dual number (adjoint, its tangent), the adjoint
 *                      columns evaluated in dual arithmetic, which gives
 *                      Hessian-vector products (ADOL-C's hess_vec pattern).
 *   ac_record_adjoint  one node's adjoint columns evaluated with recorder
 *                      numbers (ac_rec), whose operations call back into the
 *                      Cython recorder: create_graph=True.
 * Only what can carry a derivative takes part: a node or leaf entry is
 * "on" when it depends on a leaf entry given a tangent, and a term whose
 * factor has no tangent is not formed at all (PyTorch: an undefined tangent
 * is skipped, not multiplied by 0), so a constant inf never meets a 0.
 *
 * Node arrays cover the nodes [lo, root] only, node i at [i - lo]; leaf
 * arrays the leaf entries [leaf_lo, nleaves), entry k at [k - leaf_lo].
 * Nothing below lo (leaf_lo) can depend on the leaves given tangents, which
 * is what the caller promises; contributions to it are dropped.
 *
 * Plain C interface, no Python API, no allocation; the C++ behind it uses
 * no exceptions, RTTI or standard library (only POD number types).
 */
#ifndef AUTOGRAD_C_HIGHER_H
#define AUTOGRAD_C_HIGHER_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AC_CUSTOM node i in a tangent sweep: out = its tangent, given each
 * reference's tangent (tangents[k], 0 where on[k] is 0: no tangent, or a
 * constant).  Called only when some operand is on.  0, or -1 on failure
 * (the caller keeps the error; the sweep stops). */
typedef int (*ac_jvp_hook)(void *ctx, ac_node i, const double *tangents, const uint8_t *on,
                           double *out);

typedef struct ac_tangents {
    ac_node lo;               /* nodes below lo have no tangent */
    ac_node from;             /* sweep from here: no node in [lo, from) has a tangent (they get
                                 on = 0); lo unless the caller knows where the inputs are first used */
    int64_t leaf_lo;          /* nor leaf entries below leaf_lo */
    const double *leaf_dot;   /* [nleaves - leaf_lo] tangent of each leaf entry ... */
    const uint8_t *leaf_on;   /* ... and 1 where it has one */
    double *dot;              /* [hi - lo + 1] out: each node's tangent ... */
    uint8_t *on;              /* ... and 1 where it has one (dot is undefined elsewhere) */
    double *scratch;          /* room for the tangents of the longest AC_CUSTOM operand list */
    uint8_t *scratch_on;      /* and as many flags */
    ac_jvp_hook custom_jvp;   /* AC_CUSTOM nodes (a user's Function) */
    void *ctx;
} ac_tangents;

/* Tangents of the nodes lo..hi.  0, or -1 if the custom hook failed or the
 * tape's poll hook asked to stop (interrupt). */
int ac_tangent_sweep(const ac_tape *t, ac_node hi, ac_tangents *tg);

/* first[k - leaf_lo] = the lowest node in [lo, hi] with leaf entry k (k in
 * [leaf_lo, leaf_lo + nl)) as an operand, or hi + 1: where a tangent sweep
 * along that entry alone can start. */
void ac_first_uses(const ac_tape *t, ac_node lo, ac_node hi, int64_t leaf_lo, int64_t nl,
                   ac_node *first);

/* node_state bits of ac_reverse_sweep */
#define AC_ADJ_REACHED 1      /* the node is reachable from a seeded output: adj holds its adjoint */
#define AC_ADJ_DOT     2      /* its adjoint has a tangent: adj_dot holds it */

typedef struct ac_adjoints {
    ac_node lo;               /* nodes below lo are not swept */
    int64_t leaf_lo;          /* contributions to leaf entries below leaf_lo are dropped */
    uint8_t *state;           /* [root - lo + 1] AC_ADJ_* bits; the caller zeroes it and seeds */
    double *adj;              /* [root - lo + 1] adjoints (defined where AC_ADJ_REACHED) */
    double *adj_dot;          /* [root - lo + 1] their tangents (where AC_ADJ_DOT), or NULL */
    double *leaf_adj;         /* [nleaves - leaf_lo] zeroed by the caller; adjoints add up here */
    double *leaf_adj_dot;     /* [nleaves - leaf_lo] zeroed; their tangents, or NULL */
    const ac_tangents *tangents;  /* forward-over-reverse: the tangent sweep's result; NULL: first order */
    const uint8_t *active;    /* [root - lo + 1] 1 where a node depends on some input (NULL: any
                                 may); forward-over-reverse skips the others: nothing they hand
                                 down can reach an input */
    int tangents_only;        /* 1: state and adj hold a finished first-order sweep from the same
                                 seeds; only the tangents are swept (leaf_adj_dot zeroed by the
                                 caller), through the nodes where a tangent is: the columns of a
                                 Hessian after the first cost what depends on their input */
    ac_node custom_node;      /* out: the AC_CUSTOM node a second-order sweep met, see below */
} ac_adjoints;

/* Sweep from root (the highest seeded node) down to lo.  Seeds: the caller
 * sets state, adj (and adj_dot with AC_ADJ_DOT) of each output node; only
 * what seeded outputs reach propagates, as in PyTorch (an unrelated node's
 * 0 * inf never makes a nan).  AC_CUSTOM nodes call t->custom_backward
 * where their adjoint is nonzero, as ac_sweep does.  In forward-over-reverse
 * nodes that are not active are skipped.  Returns 0; -1 if the custom hook
 * failed or the poll hook asked to stop; -2 in forward-over-reverse when an
 * active AC_CUSTOM node needs its second-order rule (its adjoint or an
 * operand has a tangent): a->custom_node says which, and the caller
 * differentiates through the Function with create_graph instead. */
int ac_reverse_sweep(ac_tape *t, ac_node root, ac_adjoints *a);

/* ---- recorder numbers (create_graph) ------------------------------------ */

enum ac_rec_kind {
    AC_REC_NONE = 0,          /* nothing yet (an adjoint no contribution reached) */
    AC_REC_NUMBER,            /* a plain number v: no graph */
    AC_REC_OBJECT,            /* obj: a Python object (a Variable), value v, held by the caller */
    AC_REC_OPERAND,           /* ref: a tape operand (an ac_ref: node index or AC_LEAF_BIT | entry), value
                                 v; becomes an object only when an operation needs it */
    AC_REC_FAILED             /* a hook failed; every operation on it fails too */
};

struct ac_rec_hooks;

typedef struct ac_rec {
    double v;                 /* the value (comparisons in formulas compare these) */
    void *obj;                /* AC_REC_OBJECT: borrowed */
    ac_ref ref;               /* AC_REC_OPERAND */
    int kind;                 /* enum ac_rec_kind */
    const struct ac_rec_hooks *hooks;   /* how to record (NULL for numbers) */
} ac_rec;

/* Record one operation; at least one operand is an object or an operand.
 * binary: op is AC_ADD, AC_SUB, AC_MUL, AC_DIV or AC_POW (the Cython layer
 * picks the constant form when one side is a number); unary: a one-operand
 * opcode.  *out becomes an AC_REC_OBJECT the caller keeps alive until it has
 * consumed the node's contributions.  0, or -1 (the error is the ctx's). */
typedef struct ac_rec_hooks {
    int (*binary)(void *ctx, int op, const ac_rec *a, const ac_rec *b, ac_rec *out);
    int (*unary)(void *ctx, int op, const ac_rec *a, ac_rec *out);
    void *ctx;
} ac_rec_hooks;

/* Node i (a one-operand, constant or binary opcode; not n-ary) with adjoint
 * *g: out[0] = its contribution to operand a, out[1] to operand b (binary
 * opcodes), evaluated with recorder numbers, so every operation on a Variable
 * is recorded on the tape.  Reads node i before the first hook call and
 * never after (recording may move the tape's arrays).  0, or -1 if a hook
 * failed. */
int ac_record_adjoint(const ac_tape *t, ac_node i, const ac_rec *g, const ac_rec_hooks *hooks,
                      ac_rec out[2]);

/* *out = a op b for a binary opcode op (AC_ADD to accumulate adjoints,
 * AC_MUL for AC_DOT's contributions) with recorder numbers: a number when
 * both are numbers, else recorded.  0, or -1 if the hook failed. */
int ac_record_binary(int op, const ac_rec *a, const ac_rec *b, const ac_rec_hooks *hooks,
                     ac_rec *out);

#ifdef __cplusplus
}
#endif

#endif /* AUTOGRAD_C_HIGHER_H */
