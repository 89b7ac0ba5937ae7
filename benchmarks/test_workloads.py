"""The workloads themselves (no timing): the subnormal check against a
brute-force reverse pass, and the chain's adjoints staying O(1).

Runs with ``pytest benchmarks/test_workloads.py`` (``--benchmark-only`` skips
it, as it skips every test without the benchmark fixture)."""
import math

import pytest

import workloads as W


class Node:
    """A scalar that records every operation, for a brute-force reverse pass:
    every value and every adjoint of the graph, constants excluded."""
    tape = []

    def __init__(self, value, parents=()):
        self.value, self.parents, self.adjoint = value, parents, 0.0
        Node.tape.append(self)

    @staticmethod
    def lift(v):
        return v if isinstance(v, Node) else None

    def __add__(self, other):
        o = Node.lift(other)
        if o is None:
            return Node(self.value + other, ((self, 1.0),))
        return Node(self.value + o.value, ((self, 1.0), (o, 1.0)))

    __radd__ = __add__

    def __mul__(self, other):
        o = Node.lift(other)
        if o is None:
            return Node(self.value * other, ((self, other),))
        return Node(self.value * o.value, ((self, o.value), (o, self.value)))

    __rmul__ = __mul__

    def __rsub__(self, other):
        return Node(other - self.value, ((self, -1.0),))


def relu(a):
    return Node(a.value if a.value > 0 else 0.0, ((a, 1.0 if a.value > 0 else 0.0),))


def brute_force(w):
    """(smallest non-zero |value|, smallest non-zero |adjoint|) by recording
    the workload's own code on Node and sweeping back over every node."""
    Node.tape = []
    if w.name == "chain":
        out = W.chain(Node(w.x0), Node(w.y0), w.size)
    elif w.name == "wide":
        out = W.wide([Node(v) for v in w.A], [Node(v) for v in w.B])
    else:
        params = [Node(v) for v in w.params]
        loss = W.batch_loss if w.kind == "batch" else W.mlp_loss
        out = loss(W.mlp_layers(params), [[Node(v) for v in row] for row in w.X], w.Y, relu)
    out.adjoint = 1.0
    for node in reversed(Node.tape):
        for parent, local in node.parents:
            parent.adjoint += node.adjoint * local
    values = [abs(n.value) for n in Node.tape if n.value != 0]
    adjoints = [abs(n.adjoint) for n in Node.tape if n.adjoint != 0]
    Node.tape = []
    return min(values), max(values), min(adjoints), max(adjoints)


@pytest.mark.parametrize("name, size", [("chain", 1), ("chain", 2), ("chain", 7), ("chain", 1000),
                                        ("wide", 500), ("mlp", 3), ("mlp", 40),
                                        ("batch_small", 3), ("batch_large", 40)])
def test_magnitudes_match_a_brute_force_reverse_pass(name, size):
    w = W.make_workload(name, size)
    m = W.magnitudes(w)
    lo_v, hi_v, lo_a, hi_a = brute_force(w)
    assert m.lo["value"] == pytest.approx(lo_v, rel=1e-12)
    assert m.hi["value"] == pytest.approx(hi_v, rel=1e-12)
    assert m.lo["adjoint"] == pytest.approx(lo_a, rel=1e-9)
    assert m.hi["adjoint"] == pytest.approx(hi_a, rel=1e-9)


def test_the_old_chain_is_flagged():
    """The check can fail: y = y*0.9999 + x*0.0001 has subnormal adjoints past ~7M iterations."""
    saved = W.CHAIN_A, W.CHAIN_B
    try:
        W.CHAIN_A = W.CHAIN_B = 0.9999
        assert W.subnormals(W.make_workload("chain", 100_000)) is None
        report = W.subnormals(W.make_workload("chain", 7_200_000))
        assert report and "adjoint" in report, report
    finally:
        W.CHAIN_A, W.CHAIN_B = saved


def test_chain_adjoints_stay_near_one():
    m = W.magnitudes(W.make_workload("chain", 3_000_001))
    assert 0.9998 < m.lo["adjoint"] and m.hi["value"] < 200, (m.lo, m.hi)
    assert W.subnormals(W.make_workload("chain", 3_000_001)) is None


@pytest.mark.parametrize("name", W.WORKLOADS)
def test_the_timed_workloads_have_no_subnormals(name):
    for quick in (False, True):
        for peer in W.PEERS:
            assert W.subnormals(W.make_workload(name, quick=quick, peer=peer)) is None


def test_a_subnormal_leaf_is_flagged():
    w = W.make_workload("wide", 10)
    w.A = list(w.A)
    w.A[3] = 5e-324
    assert "value" in W.subnormals(w)
    assert math.isfinite(W.magnitudes(w).hi["value"])
