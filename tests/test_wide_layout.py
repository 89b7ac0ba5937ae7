"""The wide tape layout: a thread's tape past 2^27 - 1 nodes (issue 13).

A tape starts narrow (16 bytes a node, operands of 28 bits) and switches to
the wide layout (18 bytes a node, 35-bit operands, 64-bit operand lists)
when it would pass the narrow limit on nodes, leaf entries or constants
(src/tape.h).  `_core._set_narrow_limit(n)` lowers that limit, so the tests
here cross it with graphs of a few thousand nodes and check, bit for bit,
that values and gradients are those of the same graph recorded narrow:
every operation kind, leaves, constants, n-ary nodes, Functions, compaction,
introspection and detect_anomaly.  The real crossing, a graph past 2^27
nodes (15 to 40 s and 3.5 GB), runs with AUTOGRAD_C_HUGE=1.

Bodies run in fresh threads: each has its own tape, which starts narrow.
"""
import math
import os

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread
from test_scale import _AgLib, N_RANDOM_LEAVES, random_graph

LIMIT = 1_000


@pytest.fixture
def low_limit():
    previous = _core._set_narrow_limit(LIMIT)
    try:
        yield LIMIT
    finally:
        _core._set_narrow_limit(previous)


def _random_graph_results(seed, garbage=False, floor=None):
    """Values and gradients of test_scale's random graph (30,000 nodes, 600
    leaves, many constants and n-ary nodes), recorded in a fresh thread."""
    def body():
        previous = _core._set_compaction_floor(floor) if floor else None
        try:
            leaves, nodes, out = random_graph(_AgLib, seed, n_nodes=8_000, garbage=garbage)
            wide = ag.tape_stats()["wide"]
            out.backward()
            grads = [v.grad for v in leaves]
            inner = [n.data for n in nodes[::37]]
            nodes_grad = [n.grad for n in nodes[-200:]]
            return wide, out.data, grads, inner, nodes_grad, ag.tape_stats()["compactions"]
        finally:
            if floor:
                _core._set_compaction_floor(previous)

    return in_fresh_thread(body)


def test_a_graph_crossing_the_limit_gives_the_narrow_results(low_limit):
    narrow_limit = _core._set_narrow_limit(10 ** 9)      # as high as it goes: narrow
    try:
        narrow = _random_graph_results(3)
    finally:
        _core._set_narrow_limit(narrow_limit)
    wide = _random_graph_results(3)
    assert not narrow[0] and wide[0], "the second recording must have crossed into the wide layout"
    assert wide[1:] == narrow[1:]


def test_compaction_in_the_wide_layout_gives_the_clean_results(low_limit):
    """Dead nodes (with fresh constants, operand lists and leaf entries) between
    the live ones and a small compaction floor: the tape compacts repeatedly
    while wide, and every value and gradient is as in a clean recording."""
    clean = _random_graph_results(5)
    compacted = _random_graph_results(5, garbage=True, floor=2_000)
    assert compacted[0] and compacted[5] >= 3
    assert compacted[1:5] == clean[1:5]


@pytest.mark.parametrize("what", ["nodes", "leaves", "constants", "operand lists"])
def test_each_limit_widens_the_tape_between_operations(low_limit, what):
    """The tape widens when nodes, leaf entries or constants would pass the
    narrow limit; an operation never finds the narrow layout full halfway
    through (every operation's operands stay right)."""
    def body():
        x = ag.Variable(0.5)
        total = x * 1.0
        expected = 0.5
        for i in range(3 * LIMIT):
            if what == "nodes":
                total = total + x
                expected += 0.5
            elif what == "leaves":           # a fresh leaf each time: one leaf entry each
                total = total + ag.Variable(float(i % 7)) * x
                expected += (i % 7) * 0.5
            elif what == "constants":        # a distinct constant each time
                total = total + x * (i + 0.25)
                expected += 0.5 * (i + 0.25)
            else:                            # n-ary nodes over leaves and constants
                total = ag.sum([total, ag.dot([x, ag.Variable(2.0)], [float(i % 3), x])])
                expected += 0.5 * (i % 3) + 2.0 * 0.5
        assert ag.tape_stats()["wide"]
        total.backward()
        return total.data, expected, x.grad

    value, expected, grad = in_fresh_thread(body)
    assert value == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(grad)


def test_functions_introspection_and_anomaly_on_a_wide_tape(low_limit):
    class Square(ag.Function):
        def forward(self, a):
            return a * a

        def backward(self, gy):
            return 2.0 * self.inputs[0] * gy

    def body():
        x = ag.Variable(1.5)
        y = x
        for _ in range(LIMIT + 10):
            y = y * 1.0
        assert ag.tape_stats()["wide"]
        s = Square()(y) + ag.sum([y, 2.0]) + ag.dot([y], [3.0])
        s.backward()
        assert x.grad == 2.0 * 1.5 + 1.0 + 3.0
        assert ag.grad(s, [x]) == [x.grad]
        # micrograd's _prev and _op read the operands back
        prev = s._prev
        assert len(prev) == 2 and s._op == "+"
        assert {p.data for p in prev} == {1.5 * 1.5 + 1.5 + 2.0, 3.0 * 1.5}
        assert ag.leaves(s) == [x]
        z = y * 2.5
        assert {p.data for p in z._prev} == {1.5, 2.5} and z._op == "*"
        # detect_anomaly names the operation and its operands
        with ag.detect_anomaly():
            bad = ag.sqrt(y - 1.5)
            with pytest.raises(FloatingPointError, match=r"sqrt\(0\.0\)"):
                bad.backward()
        return True

    assert in_fresh_thread(body)


def test_the_tape_returns_to_the_narrow_layout_when_it_resets(low_limit):
    def body():
        x = ag.Variable(0.5)
        y = x
        for _ in range(2 * LIMIT):
            y = y + x
        assert ag.tape_stats()["wide"]
        del y
        s = ag.tape_stats()
        assert s["nodes"] == 0 and not s["wide"]
        z = x * 3.0
        assert not ag.tape_stats()["wide"]
        z.backward()
        return x.grad

    assert in_fresh_thread(body) == 3.0


HUGE = pytest.mark.skipif(os.environ.get("AUTOGRAD_C_HUGE") != "1",
                          reason="2^27 + 2^20 nodes (~15 to 40 s, ~3.5 GB): set AUTOGRAD_C_HUGE=1")


@pytest.mark.slow
@HUGE
def test_a_graph_past_2_27_nodes():
    """A chain of 2^27 + 2^20 nodes: past the narrow layout's 134,217,727.
    Every 1024th step leaves a dead node, so a compaction at the end moves
    nodes across the 2^27 boundary; the gradient is checked before and
    after, against the closed form.  Then, with the graph alive, every
    higher-order and compile path runs on graphs whose node indices are past
    2^27 (high index bits in use) and must give what it gives on a fresh,
    narrow tape."""
    import test_wide_higher as wh
    steps = (2 ** 27 + 2 ** 20) // 2
    c = 1.0 - 1e-9

    def battery():
        return [wh._plain(wh.functional_results()), wh.create_graph_results(), wh.compile_results()]

    narrow = in_fresh_thread(battery)

    def body():
        x = ag.Variable(0.5)
        y = x
        for i in range(steps):
            y = y * c + x
            if i & 1023 == 0:
                y * 2.0                              # dead: compaction drops it
        s = ag.tape_stats()
        assert s["wide"] and s["nodes"] > 2 ** 27
        tail = ag.sum([y, y * 0.5, x])               # an operand list past 2^27
        tail.backward()
        first = x.grad
        x.grad = 0.0
        _core._compact()
        assert ag.tape_stats()["nodes"] < s["nodes"] + 3
        tail.backward()
        assert ag.tape_stats()["nodes"] > 2 ** 27 and ag.tape_stats()["wide"]
        return first, x.grad, ag.tape_stats()["nodes"], battery()

    first, second, nodes, wide = in_fresh_thread(body)
    assert wide == narrow
    # d tail / dx = 1.5 * dy/dx + 1, dy/dx = sum_{k=0}^{steps} c^k
    dy = -math.expm1((steps + 1) * math.log1p(-1e-9)) / 1e-9
    assert first == pytest.approx(1.5 * dy + 1.0, rel=1e-9)
    assert second == first
    assert nodes > 2 ** 27
