"""Graph introspection: Variable._prev / _op (micrograd's names, so its
draw_dot works), autograd_c.leaves and autograd_c.graph_size.

Node identity matters: micrograd's trace() keeps a set of visited nodes, so
a node reached through two parents must come back as the same object, and
a Variable the user holds must come back as itself.
"""
import math
import struct
import threading

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread


def trace(root):
    """micrograd's draw_dot trace, iteratively (graphs here can be deep)."""
    nodes, edges = set(), set()
    todo = [root]
    while todo:
        v = todo.pop()
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                todo.append(child)
    return nodes, edges


def by_value(objs):
    return sorted((o.data, o.requires_grad, o._op) for o in objs)


class Mul(ag.Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, gy * a


# ---------------------------------------------------------------------------
# _prev and _op
# ---------------------------------------------------------------------------

def test_prev_of_leaves_and_constants_is_empty():
    x = ag.Variable(1.0)
    c = ag.Variable(2.0, requires_grad=False)
    with ag.no_grad():
        k = x * 3.0
    for v in (x, c, k):
        assert v._prev == set() and v._op == ""


def test_prev_returns_held_variables_themselves():
    x, y = ag.Variable(2.0), ag.Variable(3.0)
    a = x * y
    b = a + x
    assert b._prev == {a, x}
    assert any(p is a for p in b._prev) and any(p is x for p in b._prev)
    assert (x * x)._prev == {x}
    assert a._prev == {x, y}


@pytest.mark.parametrize("make, op, prev", [
    (lambda x, y: x + y, "+", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: x + 1, "+", [(1.0, False, ""), (2.0, True, "")]),
    (lambda x, y: 1.5 + x, "+", [(1.5, False, ""), (2.0, True, "")]),
    (lambda x, y: x - y, "-", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: x - 1, "+", [(-1.0, False, ""), (2.0, True, "")]),   # micrograd: x + (-1)
    (lambda x, y: 5 - x, "-", [(2.0, True, ""), (5.0, False, "")]),
    (lambda x, y: x * y, "*", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: x * 4, "*", [(2.0, True, ""), (4.0, False, "")]),
    (lambda x, y: x / y, "/", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: x / 4, "/", [(2.0, True, ""), (4.0, False, "")]),
    (lambda x, y: 4 / x, "/", [(2.0, True, ""), (4.0, False, "")]),
    # micrograd: a constant exponent is in _op, not a child
    (lambda x, y: x ** 2, "**2", [(2.0, True, "")]),
    (lambda x, y: x ** 2.0, "**2", [(2.0, True, "")]),
    (lambda x, y: x ** -1, "**-1", [(2.0, True, "")]),
    (lambda x, y: x ** 0.5, "**0.5", [(2.0, True, "")]),
    (lambda x, y: x ** -2.5, "**-2.5", [(2.0, True, "")]),
    (lambda x, y: x ** y, "pow", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: 3 ** x, "pow", [(2.0, True, ""), (3.0, False, "")]),
    (lambda x, y: x.relu(), "ReLU", [(2.0, True, "")]),
    (lambda x, y: ag.relu(x), "ReLU", [(2.0, True, "")]),
    (lambda x, y: x.exp(), "exp", [(2.0, True, "")]),
    (lambda x, y: x.tanh(), "tanh", [(2.0, True, "")]),
    (lambda x, y: ag.sigmoid(x), "sigmoid", [(2.0, True, "")]),
    (lambda x, y: -x, "neg", [(2.0, True, "")]),
    (lambda x, y: abs(x), "abs", [(2.0, True, "")]),
    (lambda x, y: ag.maximum(x, y), "maximum", [(2.0, True, ""), (3.0, True, "")]),
    (lambda x, y: ag.sum([x, y, 7.0, x]), "sum", [(2.0, True, ""), (3.0, True, ""), (7.0, False, "")]),
    (lambda x, y: ag.dot([x, 2.5], [y, x]), "dot", [(2.0, True, ""), (2.5, False, ""), (3.0, True, "")]),
    (lambda x, y: Mul()(x, 6.0), "Mul", [(2.0, True, ""), (6.0, False, "")]),
])
def test_op_and_prev_of_each_operation(make, op, prev):
    x, y = ag.Variable(2.0), ag.Variable(3.0)
    v = make(x, y)
    assert v._op == op
    assert by_value(v._prev) == prev
    for p in v._prev:
        if p.requires_grad:
            assert p is x or p is y


def test_plain_op_names_unchanged():
    x = ag.Variable(2.0)
    assert [(x + 1).op, (x * x).op, (x ** 2).op, x.relu().op, Mul()(x, x).op] == \
        ["add", "mul", "pow", "relu", "Mul"]


def test_op_of_huge_constant_exponent():
    x = ag.Variable(1.0)
    assert (x ** 1e300)._op == "**1e+300"


def test_same_node_through_two_parents_is_one_object():
    def body():
        x, y = ag.Variable(0.5), ag.Variable(-1.5)
        a = x * y
        out = a.exp() + a.sin() * 3.0
        del a                                    # only the output is held
        parents = {p._op: p for p in out._prev}
        assert sorted(parents) == ["*", "exp"]
        e, m = parents["exp"], parents["*"]
        (s,) = [p for p in m._prev if p.requires_grad]
        assert s._op == "sin"
        (a1,) = e._prev
        (a2,) = s._prev
        assert a1 is a2 and a1._op == "*" and a1._prev == {x, y}
        # asking again gives the same objects while they are held
        assert next(iter(e._prev)) is a1
        return True

    assert in_fresh_thread(body)


# ---------------------------------------------------------------------------
# draw_dot's trace with exact counts
# ---------------------------------------------------------------------------

def _g_simple():
    x, y = ag.Variable(2.0), ag.Variable(3.0)
    return x * y + x, 4, 4


def _g_shared():
    x, y = ag.Variable(0.5), ag.Variable(-1.5)
    a = x * y
    # x, y, a, exp, sin, 3.0, sin*3, out
    return a.exp() + a.sin() * 3.0, 8, 8


def _g_function():
    x = ag.Variable(1.25)
    # x, 3.0, Mul, out
    return Mul()(x, 3.0) * x, 4, 4


def _g_pow():
    x = ag.Variable(1.5)
    # x, 3.0 (base), x**2, 3**x, out (micrograd keeps a constant exponent in _op)
    return x ** 2 + 3 ** x, 5, 5


def _g_neuron():
    w0, w1, b = ag.Variable(0.1), ag.Variable(-0.2), ag.Variable(0.3)
    (out,) = _core._dense([[w0, w1]], [b], [0.5, 2.0], "tanh")
    # tanh, dot, b, w0, w1, constants 1.0 (the bias factor), 0.5 and 2.0
    return out, 8, 7


def _g_sum_leaves():
    xs = [ag.Variable(float(k)) for k in range(5)]
    s = ag.sum(xs + [xs[0]])
    # 5 leaves, the sum, the relu
    return s.relu(), 7, 6


def _g_chain():
    x, k, c = ag.Variable(1.0), ag.Variable(1.0001), ag.Variable(0.5)
    y = x
    for _ in range(10_000):
        y = y * k + c
    return y, 20_000 + 3, 20_000 * 2


GRAPHS = [_g_simple, _g_shared, _g_function, _g_pow, _g_neuron, _g_sum_leaves, _g_chain]


@pytest.mark.parametrize("make", GRAPHS, ids=lambda f: f.__name__)
def test_trace_counts(make):
    def body():
        out, n_nodes, n_edges = make()
        nodes, edges = trace(out)
        assert (len(nodes), len(edges)) == (n_nodes, n_edges)
        assert out in nodes
        assert len(nodes) - sum(not v.is_leaf for v in nodes) == \
            len(ag.leaves(out)) + sum(not v.requires_grad for v in nodes)
        assert sum(not v.is_leaf for v in nodes) == ag.graph_size(out)
        # again, now with every node object held: the same objects come back
        nodes2, edges2 = trace(out)
        assert nodes2 == nodes and edges2 == edges
        return True

    assert in_fresh_thread(body)


def test_trace_of_shared_graph_after_backward_shows_adjoints():
    x, y = ag.Variable(0.5), ag.Variable(-1.5)
    a = x * y
    held_sin = a.sin()
    out = a.exp() + held_sin * 3.0
    del a
    out.backward()
    nodes, _ = trace(out)
    av = -0.75
    grads = {}
    for v in nodes:
        if not v.requires_grad:
            assert v.grad == 0.0            # constants
        elif not v.is_leaf:
            grads.setdefault(v._op, []).append(v.grad)
    assert grads["+"] == [1.0] and grads["exp"] == [1.0] and grads["sin"] == [3.0]
    assert held_sin.grad == 3.0
    mul_grads = sorted(grads["*"])          # sin*3 -> 1.0; x*y -> exp(a) + 3 cos(a)
    assert mul_grads == sorted([1.0, math.exp(av) + 3 * math.cos(av)])
    assert x.grad == pytest.approx((math.exp(av) + 3 * math.cos(av)) * -1.5, rel=1e-15)


def recorded(nodes):
    return {v for v in nodes if v.requires_grad}


def test_prev_after_compaction_and_more_recording():
    def body():
        x, y = ag.Variable(0.5), ag.Variable(-1.5)
        junk = [x * float(k) for k in range(500)]
        a = x * y
        junk2 = [y + float(k) for k in range(500)]
        out = a.exp() + a.sin() * 3.0
        del a
        nodes1, edges1 = trace(out)
        vals1 = by_value(nodes1)
        del junk, junk2
        _core._compact()
        assert ag.tape_stats()["nodes"] == 5
        nodes2, edges2 = trace(out)
        # recorded nodes and leaves come back as the held objects (constants: see
        # test_held_constant_object_survives_compaction)
        assert recorded(nodes2) == recorded(nodes1) and by_value(nodes2) == vals1
        assert len(edges2) == len(edges1)
        # drop the held node objects: new ones are made, same shape and values
        del nodes1, edges1, nodes2, edges2
        nodes3, edges3 = trace(out)
        assert (len(nodes3), len(edges3)) == (8, 8) and by_value(nodes3) == vals1
        # record more: the new node's _prev holds `out` itself
        z = out * 2.0
        t = ag.tanh(z)
        w = t + out
        assert out in z._prev and z in t._prev and w._prev == {t, out}
        del t
        nodes4, _ = trace(w)
        assert nodes3 <= nodes4 and len(nodes4) == 8 + 4   # z, 2.0, tanh, w
        # with automatic compactions while recording
        old = _core._set_compaction_floor(64)
        try:
            for k in range(300):
                tmp = out * float(k)
        finally:
            _core._set_compaction_floor(old)
        nodes5, _ = trace(w)
        assert recorded(nodes5) == recorded(nodes4) and by_value(nodes5) == by_value(nodes4)
        w.backward()
        gz = 1 - math.tanh(z.data) ** 2
        assert z.grad == pytest.approx(gz, rel=1e-15)
        assert out.grad == pytest.approx(2 * gz + 1, rel=1e-15)
        return True

    assert in_fresh_thread(body)


def test_prev_after_backward_on_objects_made_later():
    def body():
        x = ag.Variable(2.0)
        a = x * x
        b = a * 3.0
        c = ag.exp(b * 0.1)
        del a, b
        c.backward()
        (b1,) = [p for p in c._prev]      # b * 0.1
        (b0,) = [p for p in b1._prev if p.requires_grad]
        (a0,) = [p for p in b0._prev if p.requires_grad]
        e = c.data
        assert b1.grad == e and b0.grad == pytest.approx(0.1 * e, rel=1e-15)
        assert a0.grad == pytest.approx(0.3 * e, rel=1e-15)
        assert x.grad == pytest.approx(1.2 * e, rel=1e-15)
        return True

    assert in_fresh_thread(body)


def _slot(c):
    bits = struct.unpack("<Q", struct.pack("<d", c))[0]
    return ((bits * 0x9E3779B97F4A7C15) % 2 ** 64) >> 56


def test_trace_of_equal_constants_does_not_depend_on_unrelated_constants():
    other = next(k / 8 for k in range(1, 100_000) if k / 8 != 2.0 and _slot(k / 8) == _slot(2.0))

    def body():
        x = ag.Variable(1.0)
        plain = x * 2.0 + x * 2.0
        a = x * 2.0
        unrelated = x * other
        b = x * 2.0
        mixed = a + b
        return len(trace(plain)[0]), len(trace(mixed)[0])

    n_plain, n_mixed = in_fresh_thread(body)
    assert n_plain == n_mixed


def test_held_constant_object_survives_compaction():
    def body():
        x = ag.Variable(0.5)
        junk = [x * float(k) for k in range(100)]
        y = x * 3.0
        (c,) = [p for p in y._prev if not p.requires_grad]
        del junk
        _core._compact()
        (c2,) = [p for p in y._prev if not p.requires_grad]
        return c2 is c

    assert in_fresh_thread(body)


def test_released_variable_introspection_does_not_crash():
    def body():
        x = ag.Variable(1.0)
        keep = x * 1.0
        y = ag.exp(x) * 2.0
        x.data = 3.0
        _core._compact()             # releases y's graph
        with pytest.raises(RuntimeError, match="released"):
            y.backward()
        assert isinstance(y._prev, set) and isinstance(y._op, str)
        with pytest.raises(RuntimeError):
            ag.graph_size(y)
        with pytest.raises(RuntimeError):
            ag.leaves(y)
        return True

    assert in_fresh_thread(body)


def test_prev_of_variable_from_other_thread_raises():
    box = {}

    def make():
        x = ag.Variable(1.0)
        box["y"] = x * 2.0

    t = threading.Thread(target=make)
    t.start()
    t.join()
    with pytest.raises(RuntimeError, match="thread"):
        box["y"]._prev
    with pytest.raises(RuntimeError, match="thread"):
        ag.leaves(box["y"])
    with pytest.raises(RuntimeError, match="thread"):
        ag.graph_size(box["y"])
    box.clear()


# ---------------------------------------------------------------------------
# leaves and graph_size
# ---------------------------------------------------------------------------

def test_leaves_and_size_of_leaves_and_constants():
    x = ag.Variable(1.0)
    c = ag.Variable(1.0, requires_grad=False)
    assert ag.leaves(x) == [x] and ag.leaves(x)[0] is x
    assert ag.leaves(c) == []
    assert ag.graph_size(x) == 0 and ag.graph_size(c) == 0
    with ag.no_grad():
        k = x * x
    assert ag.leaves(k) == [] and ag.graph_size(k) == 0
    assert ag.leaves(x + c - c) == [x]


def test_leaves_shared_subgraphs_and_order():
    def body():
        z, w, x, unused = (ag.Variable(v) for v in (1.0, 2.0, 3.0, 4.0))
        u0 = unused * 2.0
        a = z * w
        b = a.exp() + a.sin() + x * x + z
        ls = ag.leaves(b)
        assert len(ls) == 3 and ls[0] is z and ls[1] is w and ls[2] is x
        # a, exp, sin, add, x*x, add, add
        assert ag.graph_size(b) == 7
        assert ag.graph_size(a) == 1 and ag.leaves(a) == [z, w]
        assert ag.leaves(u0) == [unused] and ag.graph_size(u0) == 1
        # repeated calls agree (no marks left behind)
        assert ag.graph_size(b) == 7 and len(ag.leaves(b)) == 3
        b.backward()
        assert (z.grad, w.grad, x.grad, unused.grad) == pytest.approx(
            (2.0 * (math.exp(2.0) + math.cos(2.0)) + 1.0, math.exp(2.0) + math.cos(2.0),
             6.0, 0.0), rel=1e-15)
        return True

    assert in_fresh_thread(body)


def test_graph_size_interleaved_graphs():
    x, y = ag.Variable(1.0), ag.Variable(2.0)
    g1, g2 = x, y
    for k in range(100):
        g1 = g1 * 1.01
        g2 = g2 + float(k)
        junk = g1 * g2
    assert ag.graph_size(g1) == 100 and ag.graph_size(g2) == 100
    assert ag.graph_size(junk) == 201
    assert ag.leaves(g1) == [x] and ag.leaves(g2) == [y]
    assert set(ag.leaves(junk)) == {x, y}


def test_leaves_after_data_reassignment():
    def body():
        x, y = ag.Variable(1.0), ag.Variable(2.0)
        old = x * y
        x.data = 5.0
        new = x * 3.0
        both = old + new
        assert ag.leaves(old) == [x, y]
        assert ag.leaves(both) == [x, y] and ag.graph_size(both) == 3
        assert ag.leaves(new) == [x]
        with pytest.raises(RuntimeError, match="new value"):
            both.backward()
        new.backward()
        assert x.grad == 3.0
        return True

    assert in_fresh_thread(body)


def test_leaves_and_size_with_functions_and_nary_nodes():
    xs = [ag.Variable(float(k)) for k in range(10)]
    s = ag.sum(xs[:5])
    d = ag.dot(xs[5:], [1.0] * 5)
    f = Mul()(s, d)
    out = f + Mul()(xs[0], 2.0)
    assert ag.graph_size(out) == 5
    assert ag.leaves(out) == xs
    with ag.no_grad():
        assert ag.graph_size(Mul()(xs[0], xs[1])) == 0


def test_million_node_chain_walks():
    # a deep chain: no recursion in graph_size/leaves (their speed is for benchmarks/)
    def body():
        x = ag.Variable(1.0)
        y = x
        for _ in range(1_000_000):
            y = y * 1.0
        return ag.graph_size(y), ag.leaves(y) == [x]

    n, ok = in_fresh_thread(body)
    assert n == 1_000_000 and ok


def test_many_leaves():
    def body():
        xs = [ag.Variable(float(k)) for k in range(200_000)]
        s = ag.sum(xs) + ag.sum(xs[::2])
        ls = ag.leaves(s)
        return ag.graph_size(s), len(ls), all(a is b for a, b in zip(ls, xs))

    assert in_fresh_thread(body) == (3, 200_000, True)


@pytest.mark.parametrize("bad", [1.0, 2, None, "x", [ag.Variable(1.0)], (1.0,)])
def test_leaves_and_graph_size_type_errors(bad):
    with pytest.raises(TypeError, match="leaves"):
        ag.leaves(bad)
    with pytest.raises(TypeError, match="graph_size"):
        ag.graph_size(bad)
