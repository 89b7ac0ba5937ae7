/* replay_block.h -- private to the batched replay (replay_batch.c, replay_kernels.c).
 *
 * The per-call plan of ac_eval_batch (which slots vary by row, where each
 * one's lanes are), one thread's buffers, and the block kernels' interface.
 * A block holds W rows; a varying slot's W values sit side by side ("lanes"),
 * slot after slot.
 */
#ifndef AUTOGRAD_C_REPLAY_BLOCK_H
#define AUTOGRAD_C_REPLAY_BLOCK_H

#include "replay_sweep.h"

#if defined(__GNUC__) || defined(__clang__)
#define RP_RESTRICT __restrict__
#else
#define RP_RESTRICT
#endif

/* One ac_eval_batch call's analysis, shared read-only by its threads.
 * "Uniform" slots have one value for every row (constants, shared inputs,
 * what depends on them only); the others vary and get lanes. */
typedef struct rp_plan {
    const ac_program *p;
    const ac_batch *b;
    const ac_hooks *hooks;
    int per_row;              /* per-row gradients: every input varies, nothing is reversed once */
    int want_grad;
    int32_t mg;               /* outputs differentiated: [0, mg) (ac_batch.grad_outputs) */
    int32_t W;                /* rows per block */
    int32_t stride;           /* doubles between two slots' lanes (W rounded up to 8) */
    int32_t n_batched;        /* columns of x */
    uint8_t *uniform;         /* [n_slots] */
    uint8_t *active;          /* [n_slots] depends on some input */
    int32_t *lane;            /* [n_slots] varying: its lane buffer; uniform with lanes: its accumulator; -1 */
    int32_t *column;          /* [n_inputs] column in x, or index in shared */
    int32_t n_lanes;          /* varying slots */
    int32_t n_acc;            /* uniform slots whose adjoint gathers row contributions */
    int32_t *hoisted;         /* uniform instructions, ascending */
    int32_t n_hoisted;
    int32_t *varying;         /* varying instructions, ascending */
    int32_t n_varying;
    int32_t n_nary_args;      /* operand references of varying n-ary instructions */
    int32_t max_arity;
    double *uval;             /* [n_slots] values of the uniform slots */
    uint8_t *guard_flipped;   /* [n_guards] a uniform guard that flipped (it flips on every row) */
    int64_t poll_blocks;      /* thread 0 polls every this many blocks */
    int pool_owned;           /* this call owns the worker pool and its buffers */
    int stop_below;           /* threads numbered above it stop (atomic): the lowest thread that
                                 failed, -1 once interrupted, n_threads while all is well */
} rp_plan;

/* One varying instruction, its operands resolved to pointers into this
 * thread's buffers.  x/z (and nv[k]) point at W lanes, or at the single
 * value of a uniform slot (form bit 0 / bit 1, nu[k] = 1).  Adjoint
 * destinations are lanes, or a uniform slot's RP_ACC accumulators; NULL
 * where no adjoint is needed. */
typedef struct rp_step {
    uint8_t op, form;
    int32_t instr, n;
    double *y, *gy;
    const double *x, *z;
    double *gx, *gz;
    const double **nv;
    const uint8_t *nu;
    double **ng;
} rp_step;

/* One thread's rows [row0, row1), buffers and resolved steps. */
/* Lanes of a uniform slot's adjoint accumulator: row r adds into lane
 * r % RP_ACC, so the kernels' loops stay vector loops and the
 * accumulators stay small (summed once per call). */
#define RP_ACC 8

typedef struct rp_thread {
    rp_plan *pl;
    int index;                /* its number: rows are split in thread order */
    void *mem;                /* one block holding every array below */
    int own_mem;              /* 1: mem is malloc'd for this call; 0: the pool keeps it */
    int64_t row0, row1;
    double *vval, *vadj;      /* [n_lanes * stride] */
    double *acc;              /* [m * n_acc * RP_ACC] uniform adjoints, per output, per lane */
    double *gsum;             /* [m * n_inputs] partial summed gradient of the varying inputs */
    double *ysum;             /* [m] */
    rp_step *fwd;             /* [n_varying] */
    rp_step *rev;             /* [m * n_varying]: output j's steps, descending, at j * n_varying */
    int32_t *n_rev;           /* [m] */
    const double **nv;       /* [n_nary_args] operand values of the n-ary steps */
    uint8_t *nu;              /* [n_nary_args] 1: that operand is uniform */
    double **ng;              /* [m * n_nary_args] their adjoint destinations, per output */
    double *scratch;          /* a custom node's operands and gradients */
    ac_status st;             /* how this thread's rows ended */
} rp_thread;

/* One varying instruction over rows [0, n) of the block (replay_kernels.c).
 * Return 0, or 1 + the row whose custom hook failed. */
int rp_block_forward(const rp_plan *pl, rp_thread *th, const rp_step *sp, int32_t n);
int rp_block_reverse(const rp_plan *pl, rp_thread *th, const rp_step *sp, int32_t n);

/* A thread's status when it stopped because an earlier one failed. */
#define RP_STOPPED 100

/* Relaxed atomic access to rp_plan.stop_below. */
#if defined(__GNUC__) || defined(__clang__)
#define RP_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define RP_CAS(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#else
#define RP_LOAD(p) (*(volatile int *)(p))
#define RP_CAS(p, expected, desired) (*(volatile int *)(p) = (desired), 1)
#endif

/* The worker pool (replay_pool.c).  rp_pool_acquire: 1 if the caller now
 * owns the pool (release it with rp_pool_release), 0 if another call does.
 * rp_pool_buffer: task t's kept buffer of at least `bytes` (64-byte
 * aligned, contents undefined), for the owner only; NULL if it cannot (or
 * should not) keep one that large.  rp_parallel: fn on items[0 .. n) (each
 * `size` bytes), item 0 on the calling thread and the others at the same
 * time on the pool's workers (owned) or on threads of their own; returns
 * when all are done. */
int rp_pool_acquire(void);
void rp_pool_release(void);
void *rp_pool_buffer(int t, size_t bytes);
void rp_parallel(void (*fn)(void *), void *items, size_t size, int n, int owned);

#endif /* AUTOGRAD_C_REPLAY_BLOCK_H */
