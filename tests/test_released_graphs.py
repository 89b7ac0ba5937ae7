"""Issue 8, section 3: a released graph must not break plain arithmetic.

Compaction releases the graphs that depend on a leaf assigned a new value
after recording (``p.data -= lr * p.grad``): backward() through them would
raise anyway.  A Variable whose graph was released still has a known value,
so everything that only needs the value -- arithmetic, functions, sum/dot,
Functions, layers, comparisons, ``.data``, printing -- must keep working; only
backward()/grad() through the released part may refuse, with the clear
"assigned a new value" RuntimeError (PyTorch's error for a modified saved
tensor).  Before the fix of issue 8 arithmetic on it raised RuntimeError ("the graph of this
Variable was released"), so a running total kept for logging breaks after
the first compaction.
"""
import math
import random

import pytest

import autograd_c as ag
from autograd_c import _core, nn
from helpers import in_fresh_thread

STALE = "new value|modified|released"


@pytest.fixture
def floor_2000():
    previous = _core._set_compaction_floor(2000)
    try:
        yield
    finally:
        _core._set_compaction_floor(previous)


def _train_with_running_total(steps):
    random.seed(0)
    model = nn.MLP(2, [4, 1])
    opt = ag.optim.SGD(model.parameters(), lr=0.01)
    running = 0.0
    plain = 0.0
    for _ in range(steps):
        x = [random.uniform(-1, 1), random.uniform(-1, 1)]
        loss = (model(x) - 1.0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = running + loss          # a running total, kept for logging
        plain += loss.data
    return running, plain


def test_running_total_survives_compactions(floor_2000):
    """`running = running + loss` over a training loop: with a compaction
    every ~70 steps (floor 2,000 nodes) it must run all 1,000 steps and
    equal the plain-float running total exactly; backward() through it then
    raises the "assigned a new value" RuntimeError (its graph saw leaves
    that changed), and leaves' gradients are unchanged by that attempt."""
    def body():
        running, plain = _train_with_running_total(1000)
        assert ag.tape_stats()["compactions"] >= 5
        assert running.data == plain
        with pytest.raises(RuntimeError, match=STALE):
            running.backward()
        return True

    assert in_fresh_thread(body)


def _released():
    """A Variable whose graph was released (its leaf changed, then a compaction)."""
    a = ag.Variable(2.0)
    r = a * 3.0 + 1.0                     # 7.0
    a.data = 5.0
    _core._compact()
    assert r.data == 7.0
    return r


class Twice(ag.Function):
    def forward(self, x):
        return 2.0 * x

    def backward(self, gy):
        return 2.0 * gy


USES = {
    "add": (lambda r, x: r + x, lambda x: 7.0 + x, 1.0),
    "radd": (lambda r, x: x + r, lambda x: x + 7.0, 1.0),
    "sub": (lambda r, x: r - x, lambda x: 7.0 - x, -1.0),
    "mul": (lambda r, x: r * x, lambda x: 7.0 * x, 7.0),
    "div": (lambda r, x: x / r, lambda x: x / 7.0, 1.0 / 7.0),
    "pow": (lambda r, x: x ** r, lambda x: x ** 7.0, 7.0 * 1.5 ** 6),
    "rpow": (lambda r, x: r ** x, lambda x: 7.0 ** x, 7.0 ** 1.5 * math.log(7.0)),
    "exp": (lambda r, x: ag.exp(r) * x, lambda x: math.exp(7.0) * x, math.exp(7.0)),
    "neg": (lambda r, x: -r + x, lambda x: -7.0 + x, 1.0),
    "maximum": (lambda r, x: ag.maximum(r, x), lambda x: 7.0, 0.0),
    "sum": (lambda r, x: ag.sum([r, x, 1.0]), lambda x: 8.0 + x, 1.0),
    "dot": (lambda r, x: ag.dot([r, x], [x, 2.0]), lambda x: 7.0 * x + 2 * x, 9.0),
    "function": (lambda r, x: Twice()(r) + x, lambda x: 14.0 + x, 1.0),
}


@pytest.mark.parametrize("use", sorted(USES))
def test_released_variable_in_arithmetic(use):
    """Every operation on a released Variable r (value 7) with a live leaf
    x = 1.5 gives the right value.  The gradient of the result with respect
    to x is either right (r treated as the constant it now is) or refused
    with the "assigned a new value" RuntimeError; nothing else."""
    def body():
        r = _released()
        x = ag.Variable(1.5)
        f, value, dx = USES[use]
        y = f(r, x)
        assert y.data == pytest.approx(value(1.5), rel=1e-15)
        try:
            g = ag.grad(y, [x])
        except RuntimeError as e:
            assert any(w in str(e) for w in ("new value", "modified")), str(e)
        else:
            assert g == [pytest.approx(dx, rel=1e-15)]
        return True

    assert in_fresh_thread(body)


def test_released_variable_value_only_uses():
    """What already works on a released Variable: its value, printing,
    comparisons, detach(), float()."""
    def body():
        r = _released()
        assert r.data == 7.0 and float(r) == 7.0 and r.item() == 7.0
        assert r > 6.5 and r < 7.5 and r == r
        assert r.detach().data == 7.0
        assert "7.0" in repr(r)
        return True

    assert in_fresh_thread(body)


def test_released_variable_in_a_layer():
    """A released Variable as an nn.Layer input: the layer's value is right."""
    def body():
        r = _released()
        random.seed(1)
        layer = nn.Layer(2, 3, activation="tanh")
        out = layer([r, 0.5])
        for n, o in zip(layer.neurons, out):
            want = math.tanh(n.b.data + n.w[0].data * 7.0 + n.w[1].data * 0.5)
            assert o.data == pytest.approx(want, rel=1e-15)
        return True

    assert in_fresh_thread(body)


def test_backward_through_released_graph_raises():
    """backward() of the released Variable itself raises a RuntimeError
    that says why (this already holds and must stay)."""
    def body():
        r = _released()
        with pytest.raises(RuntimeError, match=STALE):
            r.backward()
        return True

    assert in_fresh_thread(body)
