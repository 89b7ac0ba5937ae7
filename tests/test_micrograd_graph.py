"""_prev / _op: micrograd's graphviz code (draw_dot) draws autograd_c graphs.

micrograd's notebooks picture a graph by walking ``v._prev`` from the output
(``trace``) and labelling op nodes with ``v._op`` (``draw_dot``).  The helpers
below do the same walk (iteratively, so deep graphs work too) and draw into a
stub Digraph, so graphviz is not needed.  The spec (COMMON.md, "APIs being
added for issue 3"): ``_prev`` is the set of Variables a result was computed
from, empty for leaves and constants; the same node reached through two
parents is the SAME object, and a Variable you hold comes back as itself;
``_op`` is micrograd's op string ('+', '*', '**2', 'ReLU', ...) or the op name.
"""
import collections
import random

import pytest

import autograd_c as ag
from autograd_c.engine import Value
from autograd_c.nn import MLP


def trace(root):
    """micrograd's trace(): every node reachable through _prev, and every (child, parent) edge."""
    nodes, edges = set(), set()
    stack = [root]
    while stack:
        v = stack.pop()
        if v in nodes:
            continue
        nodes.add(v)
        for child in v._prev:
            edges.add((child, v))
            stack.append(child)
    return nodes, edges


class StubDigraph:
    """The part of graphviz.Digraph that draw_dot uses, recording the calls."""

    def __init__(self, format=None, graph_attr=None):
        self.nodes, self.edges = {}, []

    def node(self, name, label, shape=None):
        assert name not in self.nodes, f"node {name} drawn twice"
        self.nodes[name] = label

    def edge(self, tail, head):
        self.edges.append((tail, head))


def draw_dot(root, Digraph=StubDigraph):
    """micrograd's draw_dot(): a record node per Value, an op node per result, edges between."""
    dot = Digraph(format="svg", graph_attr={"rankdir": "LR"})
    nodes, edges = trace(root)
    for n in nodes:
        uid = str(id(n))
        dot.node(name=uid, label="{ data %.4f | grad %.4f }" % (n.data, n.grad), shape="record")
        if n._op:
            dot.node(name=uid + n._op, label=n._op)
            dot.edge(uid + n._op, uid)
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    return dot


def ids(values):
    return {id(v) for v in values}


# ---------------------------------------------------------------------------
# _op strings
# ---------------------------------------------------------------------------

x_, y_ = 1.5, -2.5


@pytest.mark.parametrize("make, op, plain", [
    (lambda x, y: x + y, "+", "add"),
    (lambda x, y: x + 2.0, "+", "add"),
    (lambda x, y: 2.0 + x, "+", "add"),
    (lambda x, y: x * y, "*", "mul"),
    (lambda x, y: x * 3.0, "*", "mul"),
    (lambda x, y: 3.0 * x, "*", "mul"),
    (lambda x, y: x - y, "-", "sub"),
    (lambda x, y: 2.0 - x, "-", "sub"),
    (lambda x, y: x / y, "/", "div"),
    (lambda x, y: x / 2.0, "/", "div"),
    (lambda x, y: 2.0 / x, "/", "div"),
    (lambda x, y: x ** 2, "**2", "pow"),
    (lambda x, y: x ** -1, "**-1", "pow"),
    (lambda x, y: x ** 0.5, "**0.5", "pow"),
    (lambda x, y: x.relu(), "ReLU", "relu"),
    (lambda x, y: ag.relu(x), "ReLU", "relu"),
    (lambda x, y: x.exp(), "exp", "exp"),
    (lambda x, y: x.tanh(), "tanh", "tanh"),
    (lambda x, y: x.sigmoid(), "sigmoid", "sigmoid"),
    (lambda x, y: -x, "neg", "neg"),
    (lambda x, y: x ** y, "pow", "pow"),
    (lambda x, y: ag.sum([x, y, 1.0]), "sum", "sum"),
    (lambda x, y: ag.dot([x, y], [y, 2.0]), "dot", "dot"),
    (lambda x, y: ag.maximum(x, y), "maximum", "maximum"),
], ids=["add", "add_c", "radd_c", "mul", "mul_c", "rmul_c", "sub", "rsub_c", "div", "div_c",
        "rdiv_c", "pow2", "pow-1", "pow0.5", "relu", "ag.relu", "exp", "tanh",
        "sigmoid", "neg", "pow_var", "sum", "dot", "maximum"])
def test_op_strings_are_micrograds_and_op_keeps_the_plain_name(make, op, plain):
    v = make(Value(x_), Value(y_))
    assert v._op == op
    assert v.op == plain


def test_op_string_formats_the_exponent_like_micrograd():
    mg = pytest.importorskip("micrograd.engine")
    for c in [2, -1, 0.5, -0.25, 10]:
        assert (Value(1.5) ** c)._op == (mg.Value(1.5) ** c)._op == f"**{c}"


def test_function_subclass_name_is_its_op():
    class Square(ag.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            return 2.0 * self.inputs[0] * gy

    x = Value(3.0)
    y = Square()(x)
    assert y._op == "Square"
    assert ids(y._prev) == {id(x)}


# ---------------------------------------------------------------------------
# _prev
# ---------------------------------------------------------------------------

def test_leaves_and_constants_have_no_prev_and_no_op():
    for v in [Value(2.0), Value(2.0, requires_grad=False), ag.exp(1.0)]:
        assert v._prev == set() and v._op == ""
    with ag.no_grad():
        c = Value(2.0) * 3.0
    assert c._prev == set() and c._op == ""


def test_prev_of_binary_ops_holds_the_operands_themselves():
    x, y = Value(x_), Value(y_)
    for v in [x + y, x * y, x - y, x / y, x ** y, ag.maximum(x, y)]:
        assert isinstance(v._prev, set)
        assert ids(v._prev) == {id(x), id(y)}, v._op
    s = x * y
    t = s.relu()
    (only,) = t._prev
    assert only is s                       # a Variable you hold comes back as itself


def test_prev_of_a_leaf_used_twice_is_that_leaf_once():
    x = Value(3.0)
    assert ids((x * x)._prev) == {id(x)}   # micrograd: set((x, x)) == {x}
    assert ids(ag.sum([x, x, x])._prev) == {id(x)}


def test_prev_with_numbers_holds_the_variable_and_at_most_constants():
    x = Value(x_)
    for v, c in [(x * 2.0, 2.0), (x + 5.0, 5.0), (x ** 2, 2.0), (7.0 / x, 7.0)]:
        prev = v._prev
        assert id(x) in ids(prev), v._op
        others = [p for p in prev if p is not x]
        assert len(others) <= 1
        for p in others:                   # micrograd shows the number as a Value node
            assert isinstance(p, Value) and not p.requires_grad and p.data == c
            assert p._prev == set() and p._op == ""


def test_prev_of_nary_nodes():
    a, b, c = Value(1.0), Value(2.0), Value(3.0)
    assert ids(ag.sum([a, b, c])._prev) == ids([a, b, c])
    d = ag.dot([a, b], [b, c])
    assert {id(p) for p in d._prev if p.requires_grad} == ids([a, b, c])


def _diamond(x, y):
    """out = relu(s) + s**2 with s = x*y; nothing but out stays referenced."""
    s = x * y
    return s.relu() + s * s


def test_a_node_reached_through_two_parents_is_one_object():
    x, y = Value(2.0), Value(3.0)
    out = _diamond(x, y)                   # s, relu(s) and s*s are no longer referenced
    (t, u) = sorted(out._prev, key=lambda v: v._op)
    assert (t._op, u._op) == ("*", "ReLU")
    (s_via_u,) = u._prev
    (s_via_t,) = t._prev                   # s*s: the same s twice -> once
    assert s_via_t is s_via_u
    assert s_via_t.data == 6.0 and ids(s_via_t._prev) == ids([x, y])
    nodes, edges = trace(out)
    assert len(nodes) == 6 and len(edges) == 6     # x, y, s, relu(s), s*s, out


def test_repeated_prev_calls_return_the_same_objects():
    x, y = Value(2.0), Value(3.0)
    out = _diamond(x, y)
    first = out._prev
    assert ids(out._prev) == ids(first)
    inner_first = [next(iter(v._prev)) for v in first]
    inner_again = [next(iter(v._prev)) for v in out._prev]
    assert ids(inner_first) == ids(inner_again)


def test_a_node_found_through_prev_is_a_working_variable():
    x, y = Value(2.0), Value(3.0)
    out = _diamond(x, y)
    s = next(iter(next(v for v in out._prev if v._op == "ReLU")._prev))
    assert not s.is_leaf and s.requires_grad and s.op == "mul"
    s.backward()                           # d(x*y)/dx = y, d/dy = x
    assert (x.grad, y.grad) == (3.0, 2.0)
    w = s * 10.0                           # and records further
    assert w.data == 60.0 and next(p for p in w._prev if p.requires_grad) is s


# ---------------------------------------------------------------------------
# the same pictures as micrograd
# ---------------------------------------------------------------------------

def _expression(V):
    """Only +, * and relu between Values: micrograd records these as one node each too."""
    a, b, c = V(-4.0), V(2.0), V(1.5)
    e = a * b + c
    f = e.relu() * e + a * c
    g = f * f + e
    return g, (a, b, c)


def _summary(nodes, edges, with_grad=False):
    def key(v):
        return (v._op, float(v.data)) + ((float(v.grad),) if with_grad else ())
    return (collections.Counter(key(v) for v in nodes),
            collections.Counter((key(c), key(p)) for c, p in edges))


def test_trace_matches_micrograds_graph():
    mg = pytest.importorskip("micrograd.engine")
    ours, _ = _expression(Value)
    theirs, _ = _expression(mg.Value)
    n1, e1 = trace(ours)
    n2, e2 = trace(theirs)
    assert (len(n1), len(e1)) == (len(n2), len(e2)) == (11, 14)
    assert _summary(n1, e1) == _summary(n2, e2)


def test_trace_of_the_expression_without_micrograd():
    g, (a, b, c) = _expression(Value)
    nodes, edges = trace(g)
    assert len(nodes) == 11 and len(edges) == 14
    ops = collections.Counter(v._op for v in nodes)
    assert ops == {"": 3, "*": 4, "+": 3, "ReLU": 1}
    assert ids(v for v in nodes if v._op == "") == ids([a, b, c])


def test_draw_dot_after_backward_shows_micrograds_grads():
    mg = pytest.importorskip("micrograd.engine")
    ours, _ = _expression(Value)
    theirs, _ = _expression(mg.Value)
    ours.backward()
    theirs.backward()
    n1, e1 = trace(ours)
    n2, e2 = trace(theirs)
    assert _summary(n1, e1, with_grad=True) == _summary(n2, e2, with_grad=True)


def test_draw_dot_after_backward_labels_every_node_with_its_adjoint():
    x, y = Value(2.0), Value(3.0)
    out = _diamond(x, y)                   # out = relu(s) + s*s, s = 6
    out.backward()
    dot = draw_dot(out)
    labels = sorted(label for label in dot.nodes.values() if label.startswith("{"))
    # d out/d s = 1 + 2s = 13; d/dx = 13 y = 39, d/dy = 13 x = 26; relu(s), s*s, out: 1
    assert labels == sorted([
        "{ data 2.0000 | grad 39.0000 }", "{ data 3.0000 | grad 26.0000 }",
        "{ data 6.0000 | grad 13.0000 }", "{ data 6.0000 | grad 1.0000 }",
        "{ data 36.0000 | grad 1.0000 }", "{ data 42.0000 | grad 1.0000 }"])


def test_draw_dot_runs_and_draws_one_op_node_per_result():
    x, y = Value(2.0), Value(3.0)
    out = _diamond(x, y)
    dot = draw_dot(out)
    nodes, edges = trace(out)
    results = [v for v in nodes if v._op]
    assert len(dot.nodes) == len(nodes) + len(results) == 6 + 4
    assert len(dot.edges) == len(edges) + len(results) == 6 + 4
    assert sorted(label for label in dot.nodes.values() if not label.startswith("{")) == \
        ["*", "*", "+", "ReLU"]
    for tail, head in dot.edges:           # every edge joins drawn nodes
        assert tail in dot.nodes and head in dot.nodes


def test_draw_dot_of_an_mlp_output():
    random.seed(1337)
    model = MLP(2, [4, 4, 1])
    inputs = [Value(0.5), Value(-1.0)]
    out = model(inputs)
    out.backward()
    dot = draw_dot(out)
    nodes, edges = trace(out)
    recorded = [v for v in nodes if v._op]
    assert len(recorded) == ag.graph_size(out) == 2 * 4 + 2 * 4 + 1
    assert ids(v for v in nodes if v.requires_grad and v.is_leaf) == ids(ag.leaves(out))
    assert ids(ag.leaves(out)) == ids(model.parameters()) | ids(inputs)
    assert collections.Counter(v._op for v in recorded) == {"dot": 9, "ReLU": 8}
    assert len(dot.nodes) == len(nodes) + len(recorded)


def test_trace_of_a_deep_chain_is_complete():
    x = Value(1.0)
    y = x
    for _ in range(20_000):
        y = y * 1.0001 + x
    nodes, edges = trace(y)
    recorded = [v for v in nodes if v._op]
    assert len(recorded) == 40_000 == ag.graph_size(y)
    assert sum(1 for v in nodes if v.requires_grad and v.is_leaf) == 1
