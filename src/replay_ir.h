/* replay_ir.h -- private to the replay compiler (replay.c, replay_passes.c).
 *
 * The intermediate form between the tape and an ac_program: instructions in
 * tape order whose operands are tagged references (an instruction, an
 * input, or a constant of a bit-deduplicated pool), so the passes can
 * replace an instruction by an earlier one (CSE) or by a constant (folding)
 * without renumbering anything.  Renumbering into slots happens once, when
 * the program is emitted.
 */
#ifndef AUTOGRAD_C_REPLAY_IR_H
#define AUTOGRAD_C_REPLAY_IR_H

#include <stdint.h>
#include "replay.h"

/* The opcode enum orders the groups: n-ary, unary, constant, binary. */
#define RP_FIRST_UNARY   AC_NEG
#define RP_FIRST_CONST   AC_ADDC
#define RP_FIRST_BINARY  AC_ADD
static inline int rp_is_nary(int op) { return op <= AC_CUSTOM; }
static inline int rp_is_const_op(int op) { return op >= RP_FIRST_CONST && op < RP_FIRST_BINARY; }
static inline int rp_is_binary(int op) { return op >= RP_FIRST_BINARY && op < AC_NUM_OPS; }

typedef uint32_t rp_ref;
#define RP_INSTR      0u
#define RP_INPUT      (1u << 30)
#define RP_CONST      (2u << 30)
#define RP_TAG(r)     ((r) & (3u << 30))
#define RP_INDEX(r)   ((int64_t)((r) & ((1u << 30) - 1)))
#define RP_MAX_INDEX  ((int64_t)(1 << 30) - 1)

typedef struct rp_ir {
    /* instructions */
    int64_t n, cap;
    uint8_t *op;
    rp_ref *a, *b;            /* as in ac_program, but references; n-ary: a = offset, b = count */
    int64_t *node;            /* tape node each came from */
    rp_ref *repl;             /* RP_INSTR | i while kept; else what replaced it */
    uint8_t *live;            /* scratch for marking passes */
    rp_ref *args;
    int64_t nargs, args_cap;

    /* constants, deduplicated by bit pattern */
    double *consts;
    int64_t nconsts, consts_cap;
    uint64_t *cbits;          /* open-addressing table of constant bits ... */
    int32_t *cslot;           /* ... and their pool index + 1 (0: empty) */
    int64_t ctable_cap;

    int32_t n_inputs;
    rp_ref *outputs;
    int32_t n_outputs;

    rp_ref *guard_a, *guard_b;
    uint8_t *guard_kind, *guard_expected, *guard_dropped;
    int32_t n_guards;
} rp_ir;

static inline int rp_kept(const rp_ir *ir, int64_t i) { return ir->repl[i] == (RP_INSTR | (rp_ref)i); }
static inline rp_ref rp_resolve(const rp_ir *ir, rp_ref r)
{
    return RP_TAG(r) == RP_INSTR ? ir->repl[RP_INDEX(r)] : r;
}
static inline double rp_const_of(const rp_ir *ir, rp_ref r) { return ir->consts[RP_INDEX(r)]; }

/* The constant with the bits of c: its reference, or 0 with *failed = 1. */
rp_ref rp_const(rp_ir *ir, double c, int *failed);

/* Rewrite instruction i's operands through repl (what earlier passes replaced). */
void rp_resolve_operands(rp_ir *ir, int64_t i);
/* Number of kept instructions. */
int64_t rp_count_kept(const rp_ir *ir);

/* The passes (replay_passes.c).  Each returns 0, or AC_RP_NOMEM /
 * AC_RP_INVALID with st filled. */
int rp_pass_fold(rp_ir *ir, ac_status *st);
int rp_pass_cse(rp_ir *ir, ac_status *st);
int rp_pass_dce(rp_ir *ir, ac_status *st);

/* Status helpers shared by the replay files. */
static inline int rp_fail(ac_status *st, int code, int64_t index, const char *what)
{
    st->code = code;
    st->index = index;
    st->what = what;
    return code;
}

static inline int rp_guard_holds(int kind, double x, double z)
{
    switch (kind) {
    case AC_GUARD_LT: return x < z;
    case AC_GUARD_LE: return x <= z;
    case AC_GUARD_GT: return x > z;
    case AC_GUARD_GE: return x >= z;
    case AC_GUARD_EQ: return x == z;
    case AC_GUARD_NE: return x != z;
    default: return x != 0.0;   /* AC_GUARD_TRUTH: nan is true, as bool(float('nan')) */
    }
}

#endif /* AUTOGRAD_C_REPLAY_IR_H */
