/* tape_build.h -- record tapes by hand in C, the way src/_core.pyx records them.
 *
 * Shared by tests/c/test_replay.c and benchmarks/c/bench_replay.c.  Each
 * helper computes the node's value with the recorder's formulas (ops.h's
 * ac_*_value; n-ary nodes as 0.0 + t0 + t1 + ..., as _nary does) and
 * pushes it with the tape.h API.  References are the tape's: a node index,
 * AC_LEAF_REF | leaf entry, or (in n-ary lists) AC_REF_CONST | pool index.
 * Out of memory aborts: these are tests.
 */
#ifndef TAPE_BUILD_H
#define TAPE_BUILD_H

#include <stdio.h>
#include <stdlib.h>
#include "tape.h"

static void tb_need(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "tape_build: %s failed\n", what);
        abort();
    }
}

/* A new leaf entry holding v. */
static uint32_t tb_leaf(ac_tape *t, double v)
{
    int64_t k;
    tb_need(ac_reserve_leaves(t, 1) == 0, "ac_reserve_leaves");
    k = t->nleaves++;
    t->leaf_obj[k] = NULL;
    t->leaf_val[k] = v;
    t->leaf_version[k] = 0;
    t->leaf_grad[k] = 0.0;
    t->leaf_flags[k] = 0;
    return AC_LEAF_REF | (uint32_t)k;
}

static double tb_value(const ac_tape *t, uint32_t r)
{
    if (r & AC_REF_CONST) return t->consts[r & ~AC_REF_CONST];
    if (ac_is_leaf_ref(r)) return t->leaf_val[r & AC_INDEX_MASK];
    return t->val[r];
}

static uint32_t tb_push(ac_tape *t, ac_code c, double y)
{
    tb_need(ac_grow_nodes(t, t->size + 1) == 0, "ac_grow_nodes");
    return (uint32_t)ac_push(t, c, y);
}

static uint32_t tb_unary(ac_tape *t, int op, uint32_t a)
{
    return tb_push(t, ac_pack(op, a, 0), ac_unary_value(op, tb_value(t, a)));
}

static uint32_t tb_constop(ac_tape *t, int op, uint32_t a, double c)
{
    int64_t k = ac_const_index(t, c);
    tb_need(k >= 0, "ac_const_index");
    return tb_push(t, ac_pack(op, a, (uint64_t)k), ac_const_value(op, tb_value(t, a), c));
}

static uint32_t tb_binary(ac_tape *t, int op, uint32_t a, uint32_t b)
{
    return tb_push(t, ac_pack(op, a, b), ac_binary_value(op, tb_value(t, a), tb_value(t, b)));
}

/* A constant as an n-ary operand reference. */
static uint32_t tb_cref(ac_tape *t, double c)
{
    int64_t k = ac_const_index(t, c);
    tb_need(k >= 0, "ac_const_index");
    return AC_REF_CONST | (uint32_t)k;
}

/* AC_SUM, AC_DOT (refs are pairs), or AC_CUSTOM with the given value. */
static uint32_t tb_nary_value(ac_tape *t, int op, const uint32_t *refs, int n, double y)
{
    int64_t off;
    int k;
    tb_need(ac_reserve_args(t, n + 1) == 0, "ac_reserve_args");
    off = t->nargs;
    t->args[off] = (uint32_t)n;
    for (k = 0; k < n; ++k) t->args[off + 1 + k] = refs[k];
    t->nargs = off + 1 + n;
    return tb_push(t, ac_pack_offset(op, (uint64_t)off), y);
}

static uint32_t tb_nary(ac_tape *t, int op, const uint32_t *refs, int n)
{
    double y = 0.0;
    int k;
    if (op == AC_SUM)
        for (k = 0; k < n; ++k) y += tb_value(t, refs[k]);
    else
        for (k = 0; k + 1 < n; k += 2) y += tb_value(t, refs[k]) * tb_value(t, refs[k + 1]);
    return tb_nary_value(t, op, refs, n, y);
}

/* One neuron as nn.Layer records it (_dense): a dot node over (b, 1.0),
 * (w0, x0), (w1, x1), ..., then relu unless linear.  x refs may be
 * constants (AC_REF_CONST | k).  Note _dense sums b + w0*x0 + ..., the dot
 * formula 0.0 + b*1 + ...; they differ only in the sign of a zero. */
static uint32_t tb_neuron(ac_tape *t, uint32_t b, const uint32_t *w, const uint32_t *x, int nin, int relu)
{
    uint32_t refs[2 * 64 + 2];
    uint32_t d;
    int k;
    tb_need(nin <= 64, "tb_neuron width");
    refs[0] = b;
    refs[1] = tb_cref(t, 1.0);
    for (k = 0; k < nin; ++k) {
        refs[2 + 2 * k] = w[k];
        refs[3 + 2 * k] = x[k];
    }
    d = tb_nary(t, AC_DOT, refs, 2 * nin + 2);
    return relu ? tb_unary(t, AC_RELU, d) : d;
}

#endif /* TAPE_BUILD_H */
