/* replay.h -- record once, replay many: a program compiled from the tape.
 *
 * ac_compile() copies what the chosen outputs (and guards) depend on out of
 * a tape into an ac_program of its own, runs the optimisation passes
 * (dead-node elimination, constant folding, common-subexpression
 * elimination) and never points into the tape afterwards.  The program is
 * then evaluated for new input values, with gradients:
 *   ac_eval()        one row: outputs and the m x n Jacobian;
 *   ac_eval_batch()  B rows, some inputs per row and some shared (JAX's
 *                    vmap in_axes), per-row or summed gradients, threads.
 * Every formula comes from src/ops.h; with the passes off, a replay at the
 * recorded values is bit-identical to the tape's values and ac_sweep().
 * docs/replay.md describes the format, the passes and the sweeps.
 *
 * Plain C, no Python API, no allocation during a sweep of ac_eval (the
 * batched call allocates its buffers before it starts).  AC_CUSTOM nodes
 * (a user's Function) call the ac_hooks the caller supplies.
 */
#ifndef AUTOGRAD_C_REPLAY_H
#define AUTOGRAD_C_REPLAY_H

#include <stdint.h>
#include "tape.h"

/* ---- status ------------------------------------------------------------- */

enum ac_replay_code {
    AC_RP_OK = 0,
    AC_RP_GUARD = 1,      /* a guard flipped: st->guard (the caller's index), st->row */
    AC_RP_HOOK = 2,       /* a custom hook returned nonzero: st->custom, st->row */
    AC_RP_INTERRUPTED = 3,    /* the poll hook asked to stop (Ctrl-C) */
    AC_RP_NEEDS_RULE = 4, /* ac_eval_second: a tangent meets a custom instruction (second order
                             through a Function, whose hooks have no such rule): st->custom, st->row */
    AC_RP_NOMEM = -1,     /* out of memory; nothing was changed */
    AC_RP_INVALID = -2    /* bad arguments or a malformed tape; st->what says which */
};

typedef struct ac_status {
    int code;             /* enum ac_replay_code, also the functions' return value */
    int32_t guard;        /* AC_RP_GUARD: the first guard (in the caller's order) that flipped */
    int32_t custom;       /* AC_RP_HOOK: the custom id whose hook failed */
    int64_t row;          /* the first row it happened in (0 for ac_eval) */
    int64_t index;        /* AC_RP_INVALID: the offending output/guard/node/leaf index, or -1 */
    const char *what;     /* a static sentence for error messages; "" when code is AC_RP_OK */
} ac_status;

/* ---- compiling ---------------------------------------------------------- */

/* A guard: the outcome of a comparison recorded while tracing.  Operands are
 * tape references (ac_ref, tape.h): a node index, AC_LEAF_BIT | leaf entry,
 * or AC_GUARD_CONST for the constant a_value / b_value. */
#define AC_GUARD_CONST AC_CONST_BIT
enum ac_guard_kind {
    AC_GUARD_LT, AC_GUARD_LE, AC_GUARD_GT, AC_GUARD_GE, AC_GUARD_EQ, AC_GUARD_NE,
    AC_GUARD_TRUTH,       /* bool(a): a != 0 (nan is true, as in Python); b unused */
    AC_GUARD_NKINDS
};

typedef struct ac_guard {
    ac_ref a, b;          /* operand references */
    double a_value, b_value;   /* the constants, where a or b is AC_GUARD_CONST */
    int kind;             /* enum ac_guard_kind */
    int expected;         /* the recorded outcome: 1 true, 0 false */
} ac_guard;

enum ac_pass {
    AC_PASS_DCE = 1,      /* keep only what outputs and guards depend on */
    AC_PASS_FOLD = 2,     /* evaluate what depends on constants only */
    AC_PASS_CSE = 4,      /* merge nodes with equal opcode, operands and constant bits */
    AC_PASS_ALL = 7
};

/* Instruction counts before and after each pass (equal when a pass is off). */
typedef struct ac_compile_stats {
    int64_t tape_nodes;   /* tape nodes up to the highest output or guard operand */
    int64_t extracted;    /* instructions copied out: the reachable nodes with DCE, else all */
    int64_t after_fold;
    int64_t after_cse;
    int64_t after_dce;    /* = the program's n_instr */
    int64_t guards_folded;    /* guards on constants only, always true, dropped */
    int64_t scalar_nodes;     /* the program in micrograd's count: a k-pair dot is 2k-1 nodes */
} ac_compile_stats;

/* The compiled program: flat arrays, no pointer besides the array bases, so
 * it serialises as it is.  Values live in one array of n_slots doubles:
 *   [0, n_inputs)                      inputs, in the caller's order
 *   [n_inputs, n_inputs + n_consts)    constants (consts[]), distinct bits
 *   [base, base + n_instr)             instruction i's result, base = n_inputs + n_consts
 * Instructions are in topological order (every operand slot is below the
 * result's).  Operand fields by opcode group:
 *   unary          a = operand slot
 *   constant op    a = operand slot, b = the constant's slot
 *   binary         a, b = operand slots
 *   AC_SUM         args[a .. a+b)  operand slots (b of them)
 *   AC_DOT         args[a .. a+b)  pairs x0, z0, x1, z1, ...  (b even)
 *   AC_CUSTOM      args[a .. a+b)  the Function's inputs; its custom id k
 *                  has custom_instr[k] == i (ids ascend with i)
 * Instructions that some output reaches come first (in tape order), then
 * those only guards need (and, with DCE off, unused ones). */
typedef struct ac_program {
    int32_t n_inputs, n_consts, n_instr, n_slots;
    int32_t n_outputs, n_guards, n_custom;
    int64_t n_args;

    uint8_t *op;              /* [n_instr] enum ac_opcode */
    int32_t *a, *b;           /* [n_instr] operand fields, see above */
    int32_t *args;            /* [n_args] operand lists of n-ary instructions */
    double *consts;           /* [n_consts] constant values */

    int32_t *outputs;         /* [n_outputs] slot of each output */

    uint8_t *guard_kind;      /* [n_guards] enum ac_guard_kind */
    uint8_t *guard_expected;  /* [n_guards] 1 or 0 */
    int32_t *guard_a, *guard_b;   /* [n_guards] operand slots (b = a for TRUTH) */
    int32_t *guard_index;     /* [n_guards] the guard's index in the caller's list */

    int32_t *custom_instr;    /* [n_custom] instruction of each custom id */
    int64_t *custom_node;     /* [n_custom] the tape node it was compiled from */

    /* Derived by ac_program_finish (not part of a serialised program): */
    int32_t *rev_end;         /* [n_outputs] output j reaches only instructions below rev_end[j] */
    int64_t *mask_at;         /* [n_outputs] -1: j reaches every instruction below rev_end[j];
                                 else j's reach is the bitmap masks[mask_at[j] ...] */
    uint64_t *masks;          /* [n_mask_words] */
    int64_t n_mask_words;
} ac_program;

/* Compile outputs[0..n_outputs) (tape references: node indices or
 * AC_LEAF_BIT | entry) of tape t, in either layout.  leaf_input[k] (k < t->nleaves) is the input position of leaf
 * entry k, or -1: that leaf becomes a constant at its recorded value
 * t->leaf_val[k]; NULL makes every leaf a constant.  Several entries may
 * share an input (their gradients add).  Guards keep their operands alive.
 * passes: a mask of enum ac_pass.  stats may be NULL.  On failure p is left
 * empty (ac_program_free is still safe) and st says why. */
int ac_compile(const ac_tape *t, const ac_ref *outputs, int32_t n_outputs,
               const int32_t *leaf_input, int32_t n_inputs,
               const ac_guard *guards, int32_t n_guards,
               unsigned passes, ac_program *p, ac_compile_stats *stats, ac_status *st);
void ac_program_free(ac_program *p);       /* frees every array (malloc'd); p becomes empty */

/* Check the primary arrays of p (everything above "Derived") and compute
 * the derived ones.  ac_compile calls it; a loader of a serialised program
 * fills the primary arrays with malloc'd memory, sets the derived pointers
 * to NULL and calls it: a program that passes cannot make a sweep read or
 * write outside its buffers (every slot in range, operands below results,
 * a custom table matching the AC_CUSTOM instructions).  Returns 0, or
 * AC_RP_INVALID / AC_RP_NOMEM with st->what and st->index (the
 * instruction, output or guard at fault). */
int ac_program_finish(ac_program *p, ac_status *st);

/* ---- serialising (replay_format.c) -------------------------------------- */

/* The program section of a pickled compiled function (docs/replay.md, "The
 * serialised format"): the primary arrays, little-endian, opcodes by name.
 * ac_program_write returns the section's size in bytes and, with buf !=
 * NULL, writes it there (call it once with NULL to size the buffer).
 * ac_program_read parses buf[0..len), checks every count against the bytes
 * there, maps the opcode names (refusing unknown ones) and runs
 * ac_program_finish: 0 with *used = the bytes read, or AC_RP_INVALID /
 * AC_RP_NOMEM with st->what (p is then empty).  ac_op_id gives an opcode's
 * name in the format ("ADDC": the ops.h enum identifier without "AC_"),
 * NULL for an unknown opcode. */
int64_t ac_program_write(const ac_program *p, uint8_t *buf);
int ac_program_read(ac_program *p, const uint8_t *buf, int64_t len, int64_t *used, ac_status *st);
const char *ac_op_id(int op);

/* ---- evaluating --------------------------------------------------------- */

/* AC_CUSTOM hooks.  forward: y = f_id(x[0..n)).  backward: gx[k] = g *
 * d f_id / d x_k at x (y is f's value there); called only where g != 0, as
 * the tape's sweep does.  Return 0, or nonzero to stop the evaluation with
 * AC_RP_HOOK.  ac_eval_batch may call them from several threads at once:
 * the hooks serialise (the Cython layer takes the GIL).  A batched call may
 * evaluate a custom node whose inputs are all shared once per call and call
 * backward once with the adjoint summed over rows.
 *
 * poll (may be NULL): asked now and then during a long evaluation, about
 * every AC_REPLAY_POLL_EVERY instruction-rows, always from the calling
 * thread (the Cython layer checks for signals there); nonzero stops the
 * evaluation with AC_RP_INTERRUPTED, every thread within a block. */
typedef struct ac_hooks {
    int (*forward)(void *ctx, int32_t id, const double *x, int32_t n, double *y);
    int (*backward)(void *ctx, int32_t id, const double *x, int32_t n, double y, double g,
                    double *gx);
    int (*poll)(void *ctx);
    void *ctx;
} ac_hooks;

#define AC_REPLAY_POLL_EVERY ((int64_t)1 << 22)

/* One thread's buffers for ac_eval.  After a call, val holds the forward
 * value of every slot and adj the adjoints of the last output swept. */
typedef struct ac_workspace {
    const ac_program *prog;
    double *val;              /* [n_slots] */
    double *adj;              /* [n_slots] */
    uint8_t *active;          /* [n_instr] 1: the result depends on some input */
    double *scratch;          /* custom operands and their gradients */
    int32_t grad_outputs;     /* set by the caller after init: ac_eval's jac covers outputs
                                 [0, grad_outputs) only (0, the default: all) */
} ac_workspace;

int ac_workspace_init(ac_workspace *ws, const ac_program *p);   /* 0 or AC_RP_NOMEM */
void ac_workspace_free(ac_workspace *ws);

/* One row: y[j] (j < n_outputs) at inputs x[0..n_inputs); with jac != NULL
 * also jac[j * n_inputs + k] = d y_j / d x_k for j < ws->grad_outputs (all
 * outputs when it is 0).  Guards are checked after the
 * forward sweep; on a nonzero return y and jac are filled with nan.
 * hooks may be NULL when the program has no AC_CUSTOM instruction (and
 * no poll is wanted). */
int ac_eval(const ac_program *p, ac_workspace *ws, const ac_hooks *hooks,
            const double *x, double *y, double *jac, ac_status *st);

/* B rows.  Inputs with batched[k] != 0 take one value per row from x (a
 * row-major B x nb matrix, nb = their count, columns in input order); the
 * others are shared and read from shared[] (in input order).  batched ==
 * NULL: every input is per row.
 *   y         [B x m] per-row outputs, or NULL
 *   y_sum     [m] sum over rows of weight[r] * y[r][j], or NULL
 *   grad_rows [B x m x n] per-row Jacobians (all inputs), or NULL
 *   grad_sum  [m x n] sum over rows of weight[r] * (row r's Jacobian), or
 *             NULL: the gradient of the weighted sum of the outputs, with
 *             respect to every input (a per-row input's column included)
 *   weight    [B] the adjoint seed of each row (1/B gives a mean), or NULL for 1
 * grad_rows seeds each row with its weight too.  nthreads rows are split
 * into nthreads contiguous ranges (POSIX threads; one thread without them).
 * block: rows per block, 0 for the default (AC_REPLAY_DEFAULT_BLOCK, less
 * for large programs).  On a nonzero return every
 * given output array is filled with nan, and st->row is the first row that
 * flipped a guard or failed a hook. */
typedef struct ac_batch {
    int64_t rows;
    const uint8_t *batched;
    const double *x;
    const double *shared;
    const double *weight;
    double *y, *y_sum, *grad_rows, *grad_sum;
    int nthreads;
    int block;
    /* Optional, 0/NULL by default (fields added after the first release): */
    const double *const *x_cols;   /* instead of x: per-row input column c (c-th per-row input in
                                      input order) of row r is x_cols[c][r * x_stride[c]], so
                                      several arrays of any row stride need no copy */
    const int64_t *x_stride;       /* [nb] with x_cols: doubles between two rows of column c */
    int32_t grad_outputs;          /* differentiate outputs [0, grad_outputs) only (0: all): the
                                      others are values only ("aux" outputs); grad_rows is then
                                      B x grad_outputs x n and grad_sum grad_outputs x n */
} ac_batch;

int ac_eval_batch(const ac_program *p, const ac_batch *b, const ac_hooks *hooks, ac_status *st);

/* ---- second order (src/replay_higher.cpp) ------------------------------ */

/* B rows of Hessian-vector products and Hessians of output 0 (the others
 * are values only).  Inputs as in ac_batch: batched[k] != 0 (NULL: every
 * input) takes row r's value from x_cols[c][r * x_stride[c]], c counting
 * the batched inputs in order; the others come from shared[] in order.
 *   v_on      [n] or NULL (no products): input k has a tangent; then
 *   v_cols, v_stride  the batched inputs' tangents (as x_cols; columns of
 *             inputs without a tangent are not read), v_shared the shared
 *             ones' (indexed as shared)
 *   h_on      [n] or NULL (no Hessian): the nh inputs whose second
 *             derivatives are wanted (rows and columns of the Hessian)
 *   y [B x m], y_sum [m]             values, per row and summed
 *   grad_rows [B x n], grad_sum [n]  gradients of output 0
 *   hvp_rows [B x n], hvp_sum [n]    H v, with respect to every input
 *   hess_rows [B x nh x nh], hess_sum [nh x nh]   symmetric to the last bit
 * Any output pointer may be NULL.  Sums add rows in order, per thread, then
 * the threads' sums in order.  nthreads as ac_batch.  On a nonzero return
 * every given output is nan; AC_RP_NEEDS_RULE means a custom instruction
 * the output reaches has a tangent on an operand or on its adjoint (its
 * hooks give first derivatives only). */
typedef struct ac_second {
    int64_t rows;
    const uint8_t *batched;
    const double *const *x_cols;
    const int64_t *x_stride;
    const double *shared;
    const uint8_t *v_on;
    const double *const *v_cols;
    const int64_t *v_stride;
    const double *v_shared;
    const uint8_t *h_on;
    double *y, *y_sum, *grad_rows, *grad_sum, *hvp_rows, *hvp_sum, *hess_rows, *hess_sum;
    int nthreads;
} ac_second;

#ifdef __cplusplus
extern "C"
#endif
int ac_eval_second(const ac_program *p, const ac_second *s, const ac_hooks *hooks, ac_status *st);

#define AC_REPLAY_DEFAULT_BLOCK 128  /* rows per block at most by default (docs/replay.md) */
#define AC_REPLAY_MAX_BLOCK 1024

#endif /* AUTOGRAD_C_REPLAY_H */
