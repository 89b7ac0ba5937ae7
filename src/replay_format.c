/* replay_format.c -- an ac_program as bytes, and back (issue 12).
 *
 * The program section of a pickled compiled function (docs/replay.md, "The
 * serialised format"): the primary arrays of an ac_program, little-endian,
 * with no padding, and the opcodes written by NAME (the ops.h enum
 * identifier without "AC_"), through a table at the start of the section:
 * an instruction's opcode byte indexes that table.  A later build that
 * renumbers, adds or removes opcodes therefore reads an old section right
 * or refuses it; it can never run one opcode as another.
 *
 * Reading trusts nothing: every count is checked against the bytes left
 * before anything is allocated, every name is looked up, and the result
 * goes through ac_program_finish (operands below results, slots in range,
 * custom table, guards) before the caller sees it.  The envelope (magic,
 * version, checksum) and the Python-side metadata are the glue's
 * (src/replay_pickle.pxi).  Touches only the program and the buffers given.
 */
#include <stdlib.h>
#include <string.h>
#include "replay_ir.h"

/* ---- opcode and guard-kind names --------------------------------------- */

#define RP_NAME_ENTRY(OP, ...) [OP] = #OP,
static const char *const rp_op_ids[AC_NUM_OPS] = {
    [AC_SUM] = "AC_SUM", [AC_DOT] = "AC_DOT", [AC_CUSTOM] = "AC_CUSTOM",
    AC_UNARY_OPS(RP_NAME_ENTRY)
    AC_CONST_OPS(RP_NAME_ENTRY)
    AC_BINARY_OPS(RP_NAME_ENTRY)
};
#undef RP_NAME_ENTRY

/* Guard kinds have fixed codes in the format, whatever enum ac_guard_kind says. */
static const int rp_guard_codes[AC_GUARD_NKINDS] = {
    [AC_GUARD_LT] = 0, [AC_GUARD_LE] = 1, [AC_GUARD_GT] = 2, [AC_GUARD_GE] = 3,
    [AC_GUARD_EQ] = 4, [AC_GUARD_NE] = 5, [AC_GUARD_TRUTH] = 6
};

const char *ac_op_id(int op)
{
    return op >= 0 && op < AC_NUM_OPS && rp_op_ids[op] ? rp_op_ids[op] + 3 : NULL;   /* without "AC_" */
}

/* ---- writing ------------------------------------------------------------ */

typedef struct rp_out {
    uint8_t *buf;      /* NULL: only count */
    int64_t at;
} rp_out;

static void rp_put(rp_out *o, uint64_t v, int bytes)
{
    int k;
    if (o->buf)
        for (k = 0; k < bytes; ++k) o->buf[o->at + k] = (uint8_t)(v >> (8 * k));
    o->at += bytes;
}

static void rp_put_f64(rp_out *o, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, 8);
    rp_put(o, bits, 8);
}

static void rp_put_i32s(rp_out *o, const int32_t *v, int64_t n)
{
    int64_t k;
    for (k = 0; k < n; ++k) rp_put(o, (uint32_t)v[k], 4);
}

int64_t ac_program_write(const ac_program *p, uint8_t *buf)
{
    rp_out o = {buf, 0};
    int16_t code[AC_NUM_OPS];
    int32_t n_names = 0, i;
    int op;
    for (op = 0; op < AC_NUM_OPS; ++op) code[op] = -1;
    for (i = 0; i < p->n_instr; ++i)
        if (code[p->op[i]] < 0) code[p->op[i]] = (int16_t)n_names++;
    /* the opcode table: the names of the opcodes used, in order of first use */
    rp_put(&o, (uint32_t)n_names, 4);
    {
        int32_t written = 0;
        for (i = 0; i < p->n_instr && written < n_names; ++i) {
            op = p->op[i];
            if (code[op] == written) {
                const char *name = ac_op_id(op);
                size_t len = strlen(name), k;
                rp_put(&o, (uint8_t)len, 1);
                for (k = 0; k < len; ++k) rp_put(&o, (uint8_t)name[k], 1);
                ++written;
            }
        }
    }
    rp_put(&o, (uint32_t)p->n_inputs, 4);
    rp_put(&o, (uint32_t)p->n_consts, 4);
    rp_put(&o, (uint32_t)p->n_instr, 4);
    rp_put(&o, (uint32_t)p->n_outputs, 4);
    rp_put(&o, (uint32_t)p->n_guards, 4);
    rp_put(&o, (uint32_t)p->n_custom, 4);
    rp_put(&o, (uint64_t)p->n_args, 8);
    for (i = 0; i < p->n_instr; ++i) rp_put(&o, (uint8_t)code[p->op[i]], 1);
    rp_put_i32s(&o, p->a, p->n_instr);
    rp_put_i32s(&o, p->b, p->n_instr);
    rp_put_i32s(&o, p->args, p->n_args);
    for (i = 0; i < p->n_consts; ++i) rp_put_f64(&o, p->consts[i]);
    rp_put_i32s(&o, p->outputs, p->n_outputs);
    for (i = 0; i < p->n_guards; ++i)
        rp_put(&o, (uint8_t)(p->guard_kind[i] < AC_GUARD_NKINDS ? rp_guard_codes[p->guard_kind[i]] : 255), 1);
    for (i = 0; i < p->n_guards; ++i) rp_put(&o, p->guard_expected[i], 1);
    rp_put_i32s(&o, p->guard_a, p->n_guards);
    rp_put_i32s(&o, p->guard_b, p->n_guards);
    rp_put_i32s(&o, p->guard_index, p->n_guards);
    rp_put_i32s(&o, p->custom_instr, p->n_custom);
    return o.at;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct rp_in {
    const uint8_t *buf;
    int64_t len, at;
} rp_in;

static int rp_have(const rp_in *in, int64_t count, int64_t size)
{
    return count >= 0 && count <= (in->len - in->at) / size;
}

static uint64_t rp_get(rp_in *in, int bytes)      /* the caller checked rp_have */
{
    uint64_t v = 0;
    int k;
    for (k = 0; k < bytes; ++k) v |= (uint64_t)in->buf[in->at + k] << (8 * k);
    in->at += bytes;
    return v;
}

/* n int32 values into a fresh array (at least one element, so never NULL). */
static int32_t *rp_get_i32s(rp_in *in, int64_t n)
{
    int32_t *v = malloc(((size_t)n + 1) * sizeof *v);
    int64_t k;
    if (v == NULL) return NULL;
    for (k = 0; k < n; ++k) v[k] = (int32_t)(uint32_t)rp_get(in, 4);
    return v;
}

static int rp_bad(ac_program *p, ac_status *st, int code, int64_t index, const char *what)
{
    ac_program_free(p);
    return rp_fail(st, code, index, what);
}

#define RP_NEED(count, size) \
    do { if (!rp_have(&in, (count), (size))) return rp_bad(p, st, AC_RP_INVALID, in.at, "the program section is truncated"); } while (0)
#define RP_ALLOC(ptr) \
    do { if ((ptr) == NULL) return rp_bad(p, st, AC_RP_NOMEM, -1, "out of memory loading a program"); } while (0)

int ac_program_read(ac_program *p, const uint8_t *buf, int64_t len, int64_t *used, ac_status *st)
{
    rp_in in = {buf, len, 0};
    uint8_t map[256];
    uint32_t n_names, k;
    int64_t i, n_instr, n_args;
    memset(p, 0, sizeof *p);
    memset(st, 0, sizeof *st);
    st->index = -1;
    st->what = "";
    if (len < 0) return rp_fail(st, AC_RP_INVALID, -1, "a negative length");
    RP_NEED(1, 4);
    n_names = (uint32_t)rp_get(&in, 4);
    if (n_names > 256)
        return rp_bad(p, st, AC_RP_INVALID, in.at, "the opcode table is too long");
    for (k = 0; k < n_names; ++k) {
        char name[64];
        uint32_t n;
        int op, found = -1;
        RP_NEED(1, 1);
        n = (uint32_t)rp_get(&in, 1);
        RP_NEED(n, 1);
        if (n >= sizeof name) return rp_bad(p, st, AC_RP_INVALID, k, "an opcode name is too long");
        memcpy(name, in.buf + in.at, n);
        name[n] = 0;
        in.at += n;
        for (op = 0; op < AC_NUM_OPS; ++op)
            if (strcmp(ac_op_id(op), name) == 0) found = op;
        if (found < 0)
            return rp_bad(p, st, AC_RP_INVALID, k,
                          "the program uses an opcode this build does not know (written by a newer version?)");
        map[k] = (uint8_t)found;
    }
    RP_NEED(6, 4);
    p->n_inputs = (int32_t)(uint32_t)rp_get(&in, 4);
    p->n_consts = (int32_t)(uint32_t)rp_get(&in, 4);
    p->n_instr = (int32_t)(uint32_t)rp_get(&in, 4);
    p->n_outputs = (int32_t)(uint32_t)rp_get(&in, 4);
    p->n_guards = (int32_t)(uint32_t)rp_get(&in, 4);
    p->n_custom = (int32_t)(uint32_t)rp_get(&in, 4);
    RP_NEED(1, 8);
    p->n_args = (int64_t)rp_get(&in, 8);
    if (p->n_inputs < 0 || p->n_consts < 0 || p->n_instr < 0 || p->n_outputs < 0 || p->n_guards < 0
        || p->n_custom < 0 || p->n_args < 0 || p->n_args > INT32_MAX
        || (int64_t)p->n_inputs + p->n_consts + p->n_instr > INT32_MAX)
        return rp_bad(p, st, AC_RP_INVALID, -1, "the program's sizes are out of range");
    p->n_slots = p->n_inputs + p->n_consts + p->n_instr;
    n_instr = p->n_instr;
    n_args = p->n_args;
    /* every array's bytes must be there before anything is allocated */
    RP_NEED(n_instr, 9);
    RP_ALLOC(p->op = malloc((size_t)n_instr + 1));
    for (i = 0; i < n_instr; ++i) {
        uint32_t c = (uint32_t)rp_get(&in, 1);
        if (c >= n_names) return rp_bad(p, st, AC_RP_INVALID, i, "an instruction's opcode is not in the opcode table");
        p->op[i] = map[c];
    }
    RP_ALLOC(p->a = rp_get_i32s(&in, n_instr));
    RP_ALLOC(p->b = rp_get_i32s(&in, n_instr));
    RP_NEED(n_args, 4);
    RP_ALLOC(p->args = rp_get_i32s(&in, n_args));
    RP_NEED(p->n_consts, 8);
    RP_ALLOC(p->consts = malloc(((size_t)p->n_consts + 1) * sizeof(double)));
    for (i = 0; i < p->n_consts; ++i) {
        uint64_t bits = rp_get(&in, 8);
        memcpy(&p->consts[i], &bits, 8);
    }
    RP_NEED(p->n_outputs, 4);
    RP_ALLOC(p->outputs = rp_get_i32s(&in, p->n_outputs));
    RP_NEED(p->n_guards, 14);
    RP_ALLOC(p->guard_kind = malloc((size_t)p->n_guards + 1));
    RP_ALLOC(p->guard_expected = malloc((size_t)p->n_guards + 1));
    for (i = 0; i < p->n_guards; ++i) {
        uint32_t c = (uint32_t)rp_get(&in, 1);
        int kind;
        for (kind = 0; kind < AC_GUARD_NKINDS && rp_guard_codes[kind] != (int)c; ++kind) {}
        if (kind == AC_GUARD_NKINDS) return rp_bad(p, st, AC_RP_INVALID, i, "a guard has an unknown kind");
        p->guard_kind[i] = (uint8_t)kind;
    }
    for (i = 0; i < p->n_guards; ++i) p->guard_expected[i] = (uint8_t)rp_get(&in, 1);
    RP_ALLOC(p->guard_a = rp_get_i32s(&in, p->n_guards));
    RP_ALLOC(p->guard_b = rp_get_i32s(&in, p->n_guards));
    RP_ALLOC(p->guard_index = rp_get_i32s(&in, p->n_guards));
    RP_NEED(p->n_custom, 4);
    RP_ALLOC(p->custom_instr = rp_get_i32s(&in, p->n_custom));
    RP_ALLOC(p->custom_node = malloc(((size_t)p->n_custom + 1) * sizeof(int64_t)));
    for (i = 0; i < p->n_custom; ++i) p->custom_node[i] = -1;     /* no tape behind a loaded program */
    for (i = 0; i < p->n_guards; ++i)
        if (p->guard_index[i] < 0) return rp_bad(p, st, AC_RP_INVALID, i, "a guard is malformed");
    if (ac_program_finish(p, st) != AC_RP_OK) {
        int code = st->code;
        int64_t index = st->index;
        const char *what = st->what;
        return rp_bad(p, st, code, index, what);
    }
    *used = in.at;
    return AC_RP_OK;
}
