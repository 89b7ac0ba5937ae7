/* tape_build.h -- record tapes by hand in C, the way src/_core.pyx records them.
 *
 * Shared by tests/c/test_replay.c and benchmarks/c/bench_replay.c.  Each
 * helper computes the node's value with the recorder's formulas (ops.h's
 * ac_*_value; n-ary nodes as 0.0 + t0 + t1 + ..., as _nary does) and
 * pushes it with the tape.h API.  References are the tape's (ac_ref): a node
 * index, AC_LEAF_BIT | leaf entry, or (in n-ary lists) AC_CONST_BIT | pool
 * index.
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

/* Tests of the wide layout: the tape switches to it (ac_widen) just before
 * it records node number tb_widen_at (-1: never).  The references below
 * (ac_ref) do not depend on the layout. */
static ac_node tb_widen_at = -1;

/* A new leaf entry holding v. */
static ac_ref tb_leaf(ac_tape *t, double v)
{
    int64_t k;
    tb_need(ac_reserve_leaves(t, 1) == 0, "ac_reserve_leaves");
    k = t->nleaves++;
    t->leaf_obj[k] = NULL;
    t->leaf_val[k] = v;
    t->leaf_version[k] = 0;
    t->leaf_grad[k] = 0.0;
    t->leaf_flags[k] = 0;
    return AC_LEAF_BIT | (ac_ref)k;
}

static double tb_value(const ac_tape *t, ac_ref r)
{
    if (r & AC_CONST_BIT) return t->consts[r & ~AC_CONST_BIT];
    if (ac_ref_is_leaf(r)) return t->leaf_val[ac_ref_index(r)];
    return t->val[r];
}

/* Room for one more node (and the switch to the wide layout, when due). */
static void tb_room(ac_tape *t)
{
    if (t->size == tb_widen_at && t->hi == NULL) tb_need(ac_widen(t) == 0, "ac_widen");
    tb_need(ac_grow_nodes(t, t->size + 1) == 0, "ac_grow_nodes");
}

static ac_ref tb_unary(ac_tape *t, int op, ac_ref a)
{
    double y = ac_unary_value(op, tb_value(t, a));
    tb_room(t);
    return (ac_ref)ac_push_op(t, op, ac_layout_ref(t, a), 0, y);
}

static ac_ref tb_constop(ac_tape *t, int op, ac_ref a, double c)
{
    int64_t k = ac_const_index(t, c);
    double y;
    tb_need(k >= 0, "ac_const_index");
    y = ac_const_value(op, tb_value(t, a), c);
    tb_room(t);
    return (ac_ref)ac_push_op(t, op, ac_layout_ref(t, a), (uint64_t)k, y);
}

static ac_ref tb_binary(ac_tape *t, int op, ac_ref a, ac_ref b)
{
    double y = ac_binary_value(op, tb_value(t, a), tb_value(t, b));
    tb_room(t);
    return (ac_ref)ac_push_op(t, op, ac_layout_ref(t, a), ac_layout_ref(t, b), y);
}

/* A constant as an n-ary operand reference. */
static ac_ref tb_cref(ac_tape *t, double c)
{
    int64_t k = ac_const_index(t, c);
    tb_need(k >= 0, "ac_const_index");
    return AC_CONST_BIT | (ac_ref)k;
}

/* AC_SUM, AC_DOT (refs are pairs), or AC_CUSTOM with the given value. */
static ac_ref tb_nary_value(ac_tape *t, int op, const ac_ref *refs, int n, double y)
{
    int64_t off;
    int k;
    tb_room(t);
    tb_need(ac_reserve_args(t, n + 1) == 0, "ac_reserve_args");
    off = t->nargs;
    ac_set_word(t, off, (uint64_t)n);
    for (k = 0; k < n; ++k) ac_set_word(t, off + 1 + k, ac_layout_ref(t, refs[k]));
    t->nargs = off + 1 + n;
    return (ac_ref)ac_push_nary(t, op, off, y);
}

static ac_ref tb_nary(ac_tape *t, int op, const ac_ref *refs, int n)
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
 * constants (AC_CONST_BIT | k).  Note _dense sums b + w0*x0 + ..., the dot
 * formula 0.0 + b*1 + ...; they differ only in the sign of a zero. */
static ac_ref tb_neuron(ac_tape *t, ac_ref b, const ac_ref *w, const ac_ref *x, int nin, int relu)
{
    ac_ref refs[2 * 64 + 2];
    ac_ref d;
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
