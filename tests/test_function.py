"""autograd_c.Function: user-defined differentiable functions.

Values and gradients against finite differences and torch.autograd.Function;
one instance called many times; numbers as inputs; nesting; 100,000-node
chains; every way backward() can go wrong (bad return values, exceptions,
also in the exact-sweep fallback), reentrancy from inside a Function's
backward (run in subprocesses: a crash must show up as a failed test, not
a dead pytest), detect_anomaly, threads and memory.
"""
import concurrent.futures
import gc
import json
import math
import os
import subprocess
import sys
import threading
import traceback
import weakref

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread

np = pytest.importorskip("numpy")


# ---------------------------------------------------------------------------
# Functions used throughout
# ---------------------------------------------------------------------------

class Square(ag.Function):
    def forward(self, x):
        return x * x

    def backward(self, gy):
        (x,) = self.inputs
        return 2.0 * x * gy


class Mul(ag.Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, gy * a


class Tern(ag.Function):
    """a * sin(b) + c ** 3"""

    def forward(self, a, b, c):
        return a * math.sin(b) + c ** 3

    def backward(self, gy):
        a, b, c = self.inputs
        return gy * math.sin(b), gy * a * math.cos(b), gy * 3.0 * c * c


class Exp(ag.Function):
    """Uses self.output in backward."""

    def forward(self, x):
        return math.exp(x)

    def backward(self, gy):
        return self.output * gy


class Flaky(ag.Function):
    """x * x whose backward raises while `fail` is set."""

    def __init__(self, fail=True, exc=None):
        self.fail = fail
        self.exc = exc if exc is not None else ValueError("flaky backward")
        self.calls = 0

    def forward(self, x):
        return x * x

    def backward(self, gy):
        self.calls += 1
        if self.fail:
            raise self.exc
        (x,) = self.inputs
        return 2.0 * x * gy


def fd_grad(f, xs, h=1e-6):
    """Central differences of f (floats -> float) at xs."""
    out = []
    for i in range(len(xs)):
        up = list(xs)
        dn = list(xs)
        up[i] += h
        dn[i] -= h
        out.append((f(*up) - f(*dn)) / (2 * h))
    return out


def close(a, b, rel=1e-12, abs_=1e-300):
    if math.isnan(b):
        return math.isnan(a)
    return a == b or abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


# the reference expression, written once for floats, autograd_c and torch
def expr_float(a, b, c):
    m = a * b
    t = m * math.sin(math.exp(c)) + (a * a) ** 3
    return t * a + b * 3.0 - math.tanh(c * c) + math.exp(a - b)


def expr_ag(a, b, c):
    m = Mul()(a, b)
    t = Tern()(m, ag.exp(c), Square()(a))
    return t * a + Mul()(b, 3.0) - ag.tanh(Square()(c)) + Exp()(a - b)


# ---------------------------------------------------------------------------
# values and gradients
# ---------------------------------------------------------------------------

POINTS = [(0.3, -0.7, 0.4), (-1.1, 0.5, -0.2), (0.9, 1.3, 0.05), (0.0, 2.0, -0.6)]


@pytest.mark.parametrize("point", POINTS)
def test_expression_value_and_gradients_vs_finite_differences(point):
    xs = [ag.Variable(v) for v in point]
    y = expr_ag(*xs)
    assert close(y.data, expr_float(*point), rel=1e-14)
    y.backward()
    ref = fd_grad(expr_float, list(point))
    for x, r in zip(xs, ref):
        assert x.grad == pytest.approx(r, rel=1e-6, abs=1e-7)


def test_unary_function_exact_gradient():
    for v in (-3.0, -0.5, 0.0, 0.25, 7.0):
        x = ag.Variable(v)
        y = Square()(x)
        assert y.data == v * v
        assert y.requires_grad and not y.is_leaf
        y.backward()
        assert x.grad == 2.0 * v


def test_backward_seed_reaches_function():
    seen = []

    class Probe(ag.Function):
        def forward(self, x):
            return 3.0 * x

        def backward(self, gy):
            seen.append(gy)
            return 3.0 * gy

    x = ag.Variable(2.0)
    y = Probe()(x) * 5.0
    y.backward(0.5)
    assert seen == [2.5]
    assert x.grad == 7.5


@pytest.mark.parametrize("point", POINTS)
def test_expression_vs_torch_function(point):
    torch = pytest.importorskip("torch")

    class TMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, gy):
            a, b = ctx.saved_tensors
            return gy * b, gy * a

    class TTern(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, c):
            ctx.save_for_backward(a, b, c)
            return a * torch.sin(b) + c ** 3

        @staticmethod
        def backward(ctx, gy):
            a, b, c = ctx.saved_tensors
            return gy * torch.sin(b), gy * a * torch.cos(b), gy * 3.0 * c * c

    class TSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            return 2.0 * x * gy

    class TExp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.exp(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, gy):
            (y,) = ctx.saved_tensors
            return y * gy

    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in point]
    a, b, c = ts
    m = TMul.apply(a, b)
    t = TTern.apply(m, torch.exp(c), TSquare.apply(a))
    three = torch.tensor(3.0, dtype=torch.float64)
    ty = t * a + TMul.apply(b, three) - torch.tanh(TSquare.apply(c)) + TExp.apply(a - b)
    ty.backward()

    xs = [ag.Variable(v) for v in point]
    y = expr_ag(*xs)
    y.backward()
    assert close(y.data, ty.item())
    for x, tx in zip(xs, ts):
        assert close(x.grad, tx.grad.item()), (x.grad, tx.grad.item())


def test_grad_function_through_functions():
    a, b, c = (ag.Variable(v) for v in POINTS[0])
    y = expr_ag(a, b, c)
    g = ag.grad(y, [a, b, c, a])
    ref = fd_grad(expr_float, list(POINTS[0]))
    assert g[0] == g[3]
    for gi, r in zip(g, ref):
        assert gi == pytest.approx(r, rel=1e-6, abs=1e-7)
    assert (a.grad, b.grad, c.grad) == (0.0, 0.0, 0.0)
    # an interior Function node as an input: its adjoint
    x = ag.Variable(1.5)
    s = Square()(x)
    out = Exp()(s) * 2.0 + s
    gs, gx = ag.grad(out, [s, x])
    assert close(gs, 2.0 * math.exp(2.25) + 1.0)
    assert close(gx, gs * 3.0)


def test_many_inputs_function():
    class Weighted(ag.Function):
        def forward(self, *xs):
            return math.fsum((k + 1) * x for k, x in enumerate(xs))

        def backward(self, gy):
            return tuple((k + 1) * gy for k in range(len(self.inputs)))

    xs = [ag.Variable(float(k) / 7) for k in range(1000)]
    Square()(xs[0]).backward()        # a 1-input call first: the gradient buffer must grow
    xs[0].grad = 0.0
    y = Weighted()(*xs)
    y.backward()
    assert [x.grad for x in xs] == [float(k + 1) for k in range(1000)]


# ---------------------------------------------------------------------------
# one instance, many calls; many Functions in one graph
# ---------------------------------------------------------------------------

def test_one_instance_many_calls_sees_each_calls_values():
    seen = []

    class Rec(ag.Function):
        def forward(self, x, k):
            return x * k

        def backward(self, gy):
            x, k = self.inputs
            assert self.output == x * k      # output of the same call
            seen.append((x, k, self.output))
            return gy * k, None

    f = Rec()
    xs = [ag.Variable(0.5 + j) for j in range(6)]
    ys = [f(x, float(j + 2)) for j, x in enumerate(xs)]
    total = ag.sum(ys) + f(ys[0], 10.0)      # the instance applied to its own output too
    assert f.inputs == (ys[0].data, 10.0)    # the latest call's values until backward runs
    total.backward()
    expected = {(0.5 + j, float(j + 2), (0.5 + j) * (j + 2)) for j in range(6)}
    expected.add((ys[0].data, 10.0, ys[0].data * 10.0))
    assert len(seen) == 7 and set(seen) == expected
    assert xs[0].grad == 2.0 * 11.0
    for j in range(1, 6):
        assert xs[j].grad == float(j + 2)


def test_instance_applied_to_itself_chain_order():
    seen = []

    class Rec(ag.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            seen.append(self.inputs[0])
            return 2.0 * self.inputs[0] * gy

    sq = Rec()
    x = ag.Variable(1.1)
    y = sq(sq(sq(x)))
    y.backward()
    # the sweep runs from the output down: latest call first
    assert seen == [(1.1 * 1.1) * (1.1 * 1.1), 1.1 * 1.1, 1.1]
    assert close(x.grad, 8.0 * 1.1 ** 7, rel=1e-14)


def test_function_used_many_times_in_one_graph():
    sq = Square()
    x = ag.Variable(0.75)
    y = ag.Variable(-1.25)
    terms = [sq(x * k + y) for k in range(1, 51)]
    out = ag.sum(terms) + Mul()(sq(x), sq(x)) + Mul()(x, x)
    out.backward()
    gx = sum(2 * (0.75 * k - 1.25) * k for k in range(1, 51)) + 4 * 0.75 ** 3 + 2 * 0.75
    gy = sum(2 * (0.75 * k - 1.25) for k in range(1, 51))
    assert close(x.grad, gx, rel=1e-13)
    assert close(y.grad, gy, rel=1e-13)


def test_same_leaf_as_both_inputs():
    x = ag.Variable(3.0)
    Mul()(x, x).backward()
    assert x.grad == 6.0


# ---------------------------------------------------------------------------
# numbers, no_grad, constants
# ---------------------------------------------------------------------------

def test_number_inputs_are_constants():
    calls = []

    class M(Mul):
        def backward(self, gy):
            calls.append(self.inputs)
            return super().backward(gy)

    x = ag.Variable(2.0)
    y = M()(x, 3) * 1.0 + M()(np.float64(4.0), x)
    y.backward()
    assert x.grad == 7.0
    assert sorted(calls) == [(2.0, 3.0), (4.0, 2.0)]
    consts = [p for p in M()(x, 5.0)._prev if not p.requires_grad]
    assert [c.data for c in consts] == [5.0]


def test_only_numbers_gives_constant_and_no_backward():
    calls = []

    class M(Mul):
        def backward(self, gy):
            calls.append(1)
            return super().backward(gy)

    def body():
        y = M()(2.0, 3)
        assert y.data == 6.0 and not y.requires_grad and y.is_leaf and y.op == ""
        c = ag.Variable(5.0, requires_grad=False)
        z = M()(c, c)
        assert z.data == 25.0 and not z.requires_grad
        with pytest.raises(RuntimeError):
            z.backward()
        return ag.tape_stats()["nodes"]

    assert in_fresh_thread(body) == 0
    assert calls == []


def test_no_grad_calls_forward_and_gives_constant():
    calls = []

    class Count(Square):
        def forward(self, x):
            calls.append(x)
            return super().forward(x)

    def body():
        x = ag.Variable(3.0)
        with ag.no_grad():
            y = Count()(x)
        with ag.set_grad_enabled(False):
            z = Count()(x, ) * 2
        assert (y.data, z.data) == (9.0, 18.0)
        assert not y.requires_grad and not z.requires_grad
        assert ag.tape_stats()["nodes"] == 0
        # and when enabled again, it is recorded
        w = Count()(x)
        assert w.requires_grad and ag.graph_size(w) == 1
        return True

    assert in_fresh_thread(body)
    assert calls == [3.0, 3.0, 3.0]


def test_zero_incoming_gradient_skips_backward():
    f = Flaky(fail=True)          # would raise if called
    x = ag.Variable(-2.0)
    y = Square()(x) + ag.relu(f(x)) * 0.0 + ag.relu(-Square()(x)) * 7.0
    y.backward()
    assert f.calls == 0
    assert x.grad == -4.0


def test_forward_and_input_errors_record_nothing():
    class NoForward(ag.Function):
        pass

    class BadOut(ag.Function):
        def forward(self, x):
            return "1.0"

    class Raises(ag.Function):
        def forward(self, x):
            raise ZeroDivisionError("in forward")

    def body():
        x = ag.Variable(1.0)
        keep = x * 1.0
        n = ag.tape_stats()["nodes"]
        with pytest.raises(TypeError, match="at least one input"):
            Square()()
        with pytest.raises(TypeError, match="Square"):
            Square()("2")
        with pytest.raises(TypeError, match="Square"):
            Square()([x])
        with pytest.raises(NotImplementedError):
            NoForward()(x)
        with pytest.raises(TypeError, match="BadOut.forward"):
            BadOut()(x)
        with pytest.raises(ZeroDivisionError, match="in forward"):
            Raises()(x)
        assert ag.tape_stats()["nodes"] == n
        with pytest.raises(NotImplementedError):
            (NoBackward()(x) * 2).backward()
        assert x.grad == 0.0
        keep.backward()
        return x.grad

    class NoBackward(ag.Function):
        def forward(self, x):
            return x

    assert in_fresh_thread(body) == 1.0


def test_op_names_and_repr():
    x = ag.Variable(1.0)
    y = Square()(x)
    assert y.op == "Square" and y._op == "Square"
    assert repr(Square()) == "Square()"
    assert "grad=" in repr(y)


# ---------------------------------------------------------------------------
# nesting and depth
# ---------------------------------------------------------------------------

def test_nested_functions():
    class SinOfSquare(ag.Function):
        """forward uses another Function on floats (a constant result, nothing recorded)"""

        def forward(self, x):
            return math.sin(Square()(x).data)

        def backward(self, gy):
            (x,) = self.inputs
            inner = Square()(x)             # grad is off here: a constant
            assert not inner.requires_grad
            return gy * math.cos(inner.data) * 2.0 * x

    def body():
        x = ag.Variable(0.8)
        n0 = ag.tape_stats()["nodes"]
        y = Exp()(SinOfSquare()(Mul()(Square()(x), 0.5)))
        assert ag.tape_stats()["nodes"] == n0 + 4
        assert ag.graph_size(y) == 4
        y.backward()
        f = lambda v: math.exp(math.sin((0.5 * v * v) ** 2))
        assert close(y.data, f(0.8))
        assert x.grad == pytest.approx(fd_grad(f, [0.8])[0], rel=1e-7)
        return True

    assert in_fresh_thread(body)


def test_deep_chain_of_functions_no_recursion():
    calls = [0]

    class Inc(ag.Function):
        def forward(self, x):
            return x + 1.0

        def backward(self, gy):
            calls[0] += 1
            return gy

    def body():
        n = 100_000
        inc = Inc()
        depth = len(traceback.extract_stack())
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(depth + 60)       # any recursion per node would fail
        try:
            x = ag.Variable(0.5)
            y = x
            for _ in range(n):
                y = inc(y)
            z = y * 2.0
            z.backward()
            g = ag.grad(z, [x])
        finally:
            sys.setrecursionlimit(old)
        assert y.data == 0.5 + n
        assert x.grad == 2.0 and g == [2.0]
        assert calls[0] == 2 * n
        assert ag.graph_size(z) == n + 1
        return True

    assert in_fresh_thread(body)


# ---------------------------------------------------------------------------
# what backward() may return
# ---------------------------------------------------------------------------

def returning(value):
    class R(ag.Function):
        def forward(self, *xs):
            return sum(xs)

        def backward(self, gy):
            return value

    R.__name__ = "R"
    return R


@pytest.mark.parametrize("value, expected", [
    (None, [0.0]),
    (2.5, [2.5]),
    (3, [3.0]),
    (True, [1.0]),
    ((4.0,), [4.0]),
    ([4.5], [4.5]),
    ((None,), [0.0]),
    (np.float64(1.25), [1.25]),
    (np.float32(0.5), [0.5]),
    (np.int64(-2), [-2.0]),
    (float("inf"), [float("inf")]),
])
def test_backward_return_values_one_input(value, expected):
    x = ag.Variable(1.0)
    returning(value)()(x).backward()
    assert [x.grad] == expected


@pytest.mark.parametrize("value, expected", [
    ((1.0, None), [1.0, 0.0]),
    ([None, 2], [0.0, 2.0]),
    ((np.float64(0.5), np.float32(0.25)), [0.5, 0.25]),
    ((None, None), [0.0, 0.0]),
])
def test_backward_return_values_two_inputs(value, expected):
    a, b = ag.Variable(1.0), ag.Variable(2.0)
    returning(value)()(a, b).backward()
    assert [a.grad, b.grad] == expected


@pytest.mark.parametrize("value, nin, exc", [
    ((1.0, 2.0), 1, ValueError),
    ((), 1, ValueError),
    ((1.0,), 2, ValueError),
    ([1.0, 2.0, 3.0], 2, ValueError),
    ((1.0, 2.0, 3.0), 2, ValueError),
    ("1.0", 1, TypeError),
    (1 + 2j, 1, TypeError),
    (object(), 1, TypeError),
    ({"a": 1.0}, 1, TypeError),
    (((1.0,),), 1, TypeError),
    ((1.0, "x"), 2, TypeError),
    (np.array([1.0, 2.0]), 2, TypeError),
    ((x for x in (1.0, 2.0)), 2, TypeError),
    (3.0, 2, (TypeError, ValueError)),      # a bare float for two inputs
])
def test_backward_bad_return_values(value, nin, exc):
    leaves = [ag.Variable(float(k + 1)) for k in range(nin)]
    for leaf in leaves:
        leaf.grad = 0.5
    y = returning(value)()(*leaves) * 2.0 + ag.sum(leaves)
    with pytest.raises(exc, match="R.backward"):
        y.backward()
    assert [leaf.grad for leaf in leaves] == [0.5] * nin
    # the tape works afterwards
    z = leaves[0] * 3.0
    z.backward()
    assert leaves[0].grad == 3.5


# ---------------------------------------------------------------------------
# a backward that raises
# ---------------------------------------------------------------------------

def _failing_graph(f):
    """Leaves a, b, c, d with non-zero grads; y where the sweep delivers to
    a, b and c through builtin ops before it reaches the Function node f."""
    a, b, c, d = (ag.Variable(v) for v in (1.5, -2.0, 0.5, 3.0))
    a.grad, b.grad, c.grad, d.grad = 10.0, 20.0, 30.0, 40.0
    fy = f(a * d)                      # recorded first: reached last
    y = fy * 2.0 + a * b + ag.exp(c) + c * a
    return (a, b, c, d), y


def _expected_grads():
    a, b, c, d = 1.5, -2.0, 0.5, 3.0
    # y = 2 (a d)^2 + a b + e^c + c a
    return [4 * a * d * d + b + c, a, math.exp(c) + a, 4 * a * a * d]


def test_raising_backward_propagates_and_restores_leaf_grads():
    class Boom(Exception):
        pass

    err = Boom("user error")
    f = Flaky(exc=err)
    (a, b, c, d), y = _failing_graph(f)
    before = [v.grad for v in (a, b, c, d)]
    with pytest.raises(Boom) as info:
        y.backward()
    assert info.value is err
    frames = [fr.name for fr in traceback.extract_tb(info.value.__traceback__)]
    assert "backward" in frames
    src = [fr.line for fr in traceback.extract_tb(info.value.__traceback__)]
    assert "raise self.exc" in src
    assert [v.grad for v in (a, b, c, d)] == before
    # a second failure changes nothing either
    with pytest.raises(Boom):
        y.backward()
    assert [v.grad for v in (a, b, c, d)] == before
    # fix it: the same graph works, grads add to what they were
    f.fail = False
    y.backward()
    for v, b0, g in zip((a, b, c, d), before, _expected_grads()):
        assert close(v.grad, b0 + g, rel=1e-14)
    # other graphs work too
    z = a * c
    z.backward()
    assert close(a.grad, before[0] + _expected_grads()[0] + 0.5, rel=1e-14)
    assert f.calls == 3


def test_raising_base_exception_propagates():
    class Stop(BaseException):
        pass

    f = Flaky(exc=Stop())
    (a, b, c, d), y = _failing_graph(f)
    with pytest.raises(Stop):
        y.backward()
    assert [v.grad for v in (a, b, c, d)] == [10.0, 20.0, 30.0, 40.0]
    with pytest.raises(Stop):
        ag.grad(y, [a])
    f.fail = False
    assert ag.grad(y, [a, d]) == [pytest.approx(_expected_grads()[0]),
                                  pytest.approx(_expected_grads()[3])]


def test_raising_backward_with_past_leaf_entries():
    """Leaf entries that are no longer the leaf's current one (requires_grad
    re-set after recording) get their gradient at the end: a failure must
    not hand them anything."""
    f = Flaky()
    (a, b, c, d), y = _failing_graph(f)
    a.requires_grad = True           # ends a's current entry; value unchanged
    b.requires_grad = True
    assert a.grad == 10.0
    with pytest.raises(ValueError):
        y.backward()
    assert [v.grad for v in (a, b, c, d)] == [10.0, 20.0, 30.0, 40.0]
    f.fail = False
    y.backward()
    for v, b0, g in zip((a, b, c, d), (10.0, 20.0, 30.0, 40.0), _expected_grads()):
        assert close(v.grad, b0 + g, rel=1e-14)


def test_raising_backward_under_detect_anomaly_and_grad():
    f = Flaky()
    (a, b, c, d), y = _failing_graph(f)
    with ag.detect_anomaly():
        with pytest.raises(ValueError):
            y.backward()
    assert [v.grad for v in (a, b, c, d)] == [10.0, 20.0, 30.0, 40.0]
    with pytest.raises(ValueError):
        ag.grad(y, [a, b])
    f.fail = False
    g = ag.grad(y, [a, b, c, d])
    for gi, e in zip(g, _expected_grads()):
        assert close(gi, e, rel=1e-14)


def _exact_sweep_graph(f, function_above_nan):
    """y depends on f(x * 1.0) and on a * b; an unreachable node with a nan
    partial derivative (sqrt at 0) lies in the sweep's range, so the fast
    sweep gives up and the exact sweep runs.  With function_above_nan the
    Function node is reached by the fast sweep first (and called there)."""
    x, a, b, u = (ag.Variable(v) for v in (0.5, 2.0, -3.0, 0.0))
    x.grad, a.grad, b.grad, u.grad = 1.0, 2.0, 3.0, 4.0
    xin = x * 1.0
    if function_above_nan:
        dead = ag.sqrt(u) * 1.0
        fy = f(xin)
    else:
        fy = f(xin)
        dead = ag.sqrt(u) * 1.0
    y = fy * 2.0 + a * b
    return (x, a, b, u), y, dead


# function_above_nan=True (the Function runs in the fast sweep, then the exact
# sweep takes over) cannot fail in the exact sweep: its result is kept from the
# fast sweep (test_exact_sweep_fallback_calls_backward_once).
@pytest.mark.parametrize("function_above_nan", [False])
def test_raising_backward_in_exact_sweep_leaves_no_marks(function_above_nan):
    def body():
        f = Flaky(fail=not function_above_nan)
        if function_above_nan:
            # succeed in the fast sweep, fail in the exact one
            orig = f.backward

            def second_call_fails(gy):
                if f.calls == 1:
                    f.fail = True
                return orig(gy)

            f.backward = second_call_fails
        (x, a, b, u), y, dead = _exact_sweep_graph(f, function_above_nan)
        other_leaf = ag.Variable(7.0)
        other_leaf.grad = 5.0
        other = other_leaf * other_leaf + u
        with pytest.raises(ValueError, match="flaky"):
            y.backward()
        assert [v.grad for v in (x, a, b, u)] == [1.0, 2.0, 3.0, 4.0]
        if not function_above_nan:
            with pytest.raises(ValueError, match="flaky"):
                ag.grad(y, [x, a])
        # no marks left behind: every walk of the graph is right
        assert ag.graph_size(y) == 5
        assert ag.graph_size(other) == 2 and ag.graph_size(dead) == 2
        assert set(ag.leaves(y)) == {x, a, b} and len(ag.leaves(y)) == 3
        assert set(ag.leaves(other)) == {other_leaf, u}
        f.fail = False
        if function_above_nan:
            del f.backward
        assert ag.grad(y, [x, a, b, u]) == [2.0, -3.0, 2.0, 0.0]
        y.backward()
        assert [v.grad for v in (x, a, b, u)] == [1.0 + 2.0, 2.0 - 3.0, 3.0 + 2.0, 4.0]
        y.zero_grad()
        assert [v.grad for v in (x, a, b, u)] == [0.0, 0.0, 0.0, 4.0]
        assert other_leaf.grad == 5.0
        other.backward()
        assert (other_leaf.grad, u.grad) == (19.0, 5.0)
        dead.backward()
        assert math.isinf(u.grad)
        return True

    assert in_fresh_thread(body)


def test_exact_sweep_fallback_calls_backward_once():
    f = Flaky(fail=False)
    (x, a, b, u), y, dead = _exact_sweep_graph(f, function_above_nan=True)
    y.backward()
    assert x.grad == 1.0 + 2.0
    assert f.calls == 1


def test_reassigned_leaf_behind_zero_adjoint_function_raises():
    x = ag.Variable(1.0)
    c = ag.Variable(3.0)
    y = Square()(x) * 0.0 + c
    x.data = 5.0
    # with a builtin op in the Function's place this raises (see the check below)
    with pytest.raises(RuntimeError, match="new value"):
        y.backward()


def test_reassigned_leaf_behind_zero_adjoint_builtin_raises():
    """The reference behaviour the test above expects of Functions."""
    x = ag.Variable(1.0)
    c = ag.Variable(3.0)
    y = ag.exp(x) * 0.0 + c
    x.data = 5.0
    with pytest.raises(RuntimeError, match="new value"):
        y.backward()


def test_reassigned_leaf_through_function_raises():
    x = ag.Variable(1.0)
    y = Square()(x) * 2.0
    x.data = 5.0
    with pytest.raises(RuntimeError, match="new value"):
        y.backward()
    assert x.grad == 0.0


# ---------------------------------------------------------------------------
# reentrancy: inside a Function's backward.  Each probe runs in a subprocess.
# ---------------------------------------------------------------------------

PROBE = r'''
import gc, json, math, pickle, sys, threading
import autograd_c as ag
from autograd_c import _core

ACTION = sys.argv[1]
x = ag.Variable(1.5)
w = ag.Variable(-0.5)
x.grad, w.grad = 10.0, 20.0
other_leaf = ag.Variable(2.0)
other = other_leaf * 3.0                 # recorded before y: a smaller node index
inter = [x * float(k) for k in range(50)]
opt = ag.optim.SGD([other_leaf], lr=0.1)
adam = ag.optim.Adam([other_leaf])
state = {"armed": True, "info": None}

class Inner(ag.Function):
    def forward(self, a):
        return 2.0 * a
    def backward(self, gy):
        return 2.0 * gy

def bigger():
    z = ag.Variable(0.25)
    for _ in range(30000):
        z = z * 1.0
    return z

def act():
    global inter
    if ACTION == "record_enable_grad":
        with ag.enable_grad():
            return x * 2.0
    if ACTION == "record_set_grad_enabled":
        with ag.set_grad_enabled(True):
            return ag.exp(w) + x
    if ACTION == "record_function":
        with ag.enable_grad():
            return Inner()(x)
    if ACTION == "record_sum":
        with ag.enable_grad():
            return ag.sum([x, w, 1.0])
    if ACTION == "record_dot":
        with ag.enable_grad():
            return ag.dot([x, w], [w, 2.0])
    if ACTION == "record_dense":
        with ag.enable_grad():
            return _core._dense([[w]], [x], [1.0], "tanh")
    if ACTION == "no_grad_ops":
        r = x * 2.0 + ag.exp(w) + Inner()(x) + ag.sum([x, w])
        assert not r.requires_grad and r.data == 3.0 + math.exp(-0.5) + 3.0 + 1.0
        return r
    if ACTION == "backward_other":
        other.backward()
    if ACTION == "backward_self":
        y.backward()
    if ACTION == "backward_bigger":
        BIG.backward()
    if ACTION == "backward_bigger_caught":
        try:
            BIG.backward()
        except RuntimeError as e:
            state["info"] = str(e)
        return None
    if ACTION == "grad_other":
        return ag.grad(other, [other_leaf])
    if ACTION == "grad_bigger":
        return ag.grad(BIG, [x])
    if ACTION == "zero_grad_node":
        y.zero_grad()
    if ACTION == "zero_grad_leaf":
        x.zero_grad()
    if ACTION == "leaves":
        return ag.leaves(y)
    if ACTION == "graph_size":
        return ag.graph_size(y)
    if ACTION == "set_data":
        x.data = 3.0
    if ACTION == "set_value":
        x.value = 3.0
    if ACTION == "set_data_unrelated_leaf":
        other_leaf.data = 5.0
    if ACTION == "set_grad":
        x.grad = 0.0
    if ACTION == "set_grad_unrelated_leaf":
        other_leaf.grad = 1.0
    if ACTION == "set_requires_grad":
        x.requires_grad = False
    if ACTION == "sgd_step":
        opt.step()
    if ACTION == "adam_step":
        adam.step()
    if ACTION == "optimizer_zero_grad":
        opt.zero_grad()
    if ACTION == "compact":
        _core._compact()
    if ACTION == "leaf_backward":
        x.backward()
    if ACTION == "reinit_leaf":
        x.__init__(x.data)
    if ACTION == "create_delete":
        vs = [ag.Variable(float(k)) for k in range(2000)]
        cs = [ag.Variable(1.0, requires_grad=False) * k for k in range(100)]
        del vs, cs
        inter = None                     # recorded Variables die mid-sweep
        gc.collect()
        return None
    if ACTION == "prev":
        seen, todo = set(), [y]
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo.extend(v._prev)
        state["info"] = [len(seen), sorted(p.data for p in f_out._prev)]
        assert f_out in y._prev or any(f_out in p._prev for p in y._prev)
        return None
    if ACTION == "introspect":
        state["info"] = [ag.tape_stats()["nodes"], y.op, y._op, repr(y), float(f_out),
                         y.detach().data, ag.is_grad_enabled(), ag.leaves(x) == [x],
                         ag.graph_size(x)]
        return None
    if ACTION == "pickle_leaf":
        return pickle.loads(pickle.dumps(x)).data
    if ACTION == "thread_records":
        box = {}
        def work():
            a = ag.Variable(2.0)
            (a * a * a).backward()
            box["g"] = a.grad
        t = threading.Thread(target=work)
        t.start(); t.join()
        assert box["g"] == 12.0
        return None
    if ACTION == "nothing":
        return None
    return None

class F(ag.Function):
    def forward(self, a):
        return a * a
    def backward(self, gy):
        if state["armed"]:
            act()
        (a,) = self.inputs
        return 2.0 * a * gy

f_out = F()(x * 2.0)                     # reached after w and x got their share below
y = f_out + w * 4.0 + x * 3.0
if ACTION in ("backward_bigger", "backward_bigger_caught", "grad_bigger"):
    BIG = bigger()

result = {"outcome": "ok", "error": None, "message": ""}
try:
    y.backward()
except BaseException as e:
    result["outcome"] = "raised"
    result["error"] = type(e).__name__
    result["message"] = str(e)
    del e
result["grads"] = [x.grad, w.grad]
result["info"] = state["info"]

# the tape is usable afterwards: the same graph and new ones
state["armed"] = False
result["post_error"] = None
try:
    gx, gw = x.grad, w.grad
    y.backward()
    result["again"] = [x.grad - gx, w.grad - gw]
    result["graph_size"] = ag.graph_size(y)
    result["leaves"] = len(ag.leaves(y))
    z = x * w
    result["grad_new"] = ag.grad(z, [x, w])
    y.zero_grad()
    result["zeroed"] = [x.grad, w.grad]
    result["other"] = ag.grad(other, [other_leaf])
except Exception as e:
    result["post_error"] = repr(e)
print(json.dumps(result))
'''

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ag.__file__)))

# success: x.grad = 10 + 3 + 8 * 1.5 = 25, w.grad = 20 + 4
OK_GRADS = [25.0, 24.0]
BEFORE = [10.0, 20.0]


def _run_probe_process(action):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", PROBE, action], capture_output=True,
                          text=True, env=env, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


_PROBES = {}


def run_probe(action):
    """The result of probe `action`; the first call starts every probe, four at a time."""
    if not _PROBES:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        for a in ALL_ACTIONS:
            _PROBES[a] = pool.submit(_run_probe_process, a)
        pool.shutdown(wait=False)
    rc, out, err = _PROBES[action].result()
    assert rc == 0, f"probe {action!r} died (exit {rc}): {err[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


def check_after(r):
    # the same graph again (action disabled), new graphs, zero_grad
    assert r["post_error"] is None, r
    assert r["again"] == [15.0, 4.0]
    assert r["graph_size"] == 6 and r["leaves"] == 2
    assert r["other"] == [3.0]
    assert r["grad_new"] == [-0.5, 1.5]
    assert r["zeroed"] == [0.0, 0.0]


MUST_RAISE = [
    "record_enable_grad", "record_set_grad_enabled", "record_function", "record_sum",
    "record_dot", "record_dense", "backward_other", "backward_self", "grad_other",
    "zero_grad_node", "zero_grad_leaf", "leaves", "graph_size", "set_data", "set_value",
    "set_data_unrelated_leaf", "set_grad", "set_grad_unrelated_leaf", "set_requires_grad",
    "sgd_step", "adam_step", "optimizer_zero_grad", "compact",
]

MUST_WORK = ["nothing", "no_grad_ops", "create_delete", "prev", "introspect", "pickle_leaf",
             "thread_records"]

ALL_ACTIONS = MUST_RAISE + MUST_WORK + ["backward_bigger", "backward_bigger_caught", "grad_bigger",
                                        "reinit_leaf", "leaf_backward"]


@pytest.mark.parametrize("action", MUST_RAISE)
def test_reentrant_action_raises_runtime_error(action):
    r = run_probe(action)
    assert r["outcome"] == "raised" and r["error"] == "RuntimeError", r
    assert "Function's backward" in r["message"], r
    assert r["grads"] == BEFORE
    check_after(r)


@pytest.mark.parametrize("action", MUST_WORK)
def test_reentrant_action_works(action):
    r = run_probe(action)
    assert r["outcome"] == "ok", r
    assert r["grads"] == OK_GRADS
    check_after(r)
    if action == "prev":
        # six nodes (x*2, f_out, w*4, x*3, two adds), leaves x and w, constants 2, 4, 3
        assert r["info"] == [11, [3.0]]
    if action == "introspect":
        nodes, op, mg_op, rep, fval, ydata, enabled, leaves_x, size_x = r["info"]
        assert (op, mg_op, fval, ydata, enabled, leaves_x, size_x) == \
            ("add", "+", 9.0, 11.5, False, True, 0)
        assert rep.startswith("Variable(data=11.5")


@pytest.mark.parametrize("action", ["backward_bigger", "backward_bigger_caught", "grad_bigger"])
def test_reentrant_backward_on_larger_graph_does_not_crash(action):
    r = run_probe(action)
    if action == "backward_bigger_caught":
        assert r["outcome"] == "ok" and r["grads"] == OK_GRADS
        assert "Function's backward" in r["info"]
    else:
        assert r["outcome"] == "raised" and r["error"] == "RuntimeError"
        assert r["grads"] == BEFORE
    check_after(r)


def test_reentrant_leaf_reinit():
    r = run_probe("reinit_leaf")
    if r["outcome"] == "raised":
        assert r["grads"] == BEFORE, r
    else:
        assert r["grads"] == OK_GRADS, r


def test_reentrant_leaf_backward_raises():
    r = run_probe("leaf_backward")
    assert r["outcome"] == "raised" and r["error"] == "RuntimeError", r
    assert r["grads"] == BEFORE


def test_reentrant_leaf_backward_does_not_crash():
    r = run_probe("leaf_backward")
    assert r["outcome"] in ("ok", "raised")
    check_after(r)


def test_anomaly_search_does_not_run_a_functions_backward_again():
    """detect_anomaly's search for the culprit reuses the gradients the
    Function gave in the sweep: its backward runs once, so it cannot record
    (or do anything else) a second time."""
    def body():
        x = ag.Variable(1.0)
        kept, calls = [], [0]

        class InfSecond(ag.Function):
            def forward(self, a):
                return a

            def backward(self, gy):
                calls[0] += 1
                if calls[0] == 2:
                    with ag.enable_grad():
                        try:
                            kept.append(x * 2.0)
                        except RuntimeError as e:
                            kept.append(e)
                return math.inf

        y = InfSecond()(x) * 3.0
        n = ag.tape_stats()["nodes"]
        with ag.detect_anomaly():
            with pytest.raises(FloatingPointError, match="InfSecond"):
                y.backward()
        return calls[0], n, ag.tape_stats()["nodes"], [type(k).__name__ for k in kept]

    calls, n0, n1, kept = in_fresh_thread(body)
    assert calls == 1 and kept == [] and n1 == n0


# ---------------------------------------------------------------------------
# detect_anomaly
# ---------------------------------------------------------------------------

class NanForward(ag.Function):
    def forward(self, x):
        return math.nan

    def backward(self, gy):
        return gy


class InfForward(ag.Function):
    def forward(self, x, y):
        return math.inf

    def backward(self, gy):
        return gy, gy


class InfBackward(ag.Function):
    def forward(self, x):
        return 2.0 * x

    def backward(self, gy):
        return math.inf


class NanBackward(ag.Function):
    def forward(self, x, y):
        return x + y

    def backward(self, gy):
        return gy, math.nan


def test_detect_anomaly_forward():
    def body():
        x = ag.Variable(1.0)
        n = ag.tape_stats()["nodes"]
        with ag.detect_anomaly():
            with pytest.raises(FloatingPointError, match=r"NanForward\.forward\(1\.0\) produced nan"):
                NanForward()(x)
            with pytest.raises(FloatingPointError, match=r"InfForward\.forward\(1\.0, 2\.0\)"):
                InfForward()(x, 2.0)
            with pytest.raises(FloatingPointError, match="NanForward"):
                NanForward()(3.0)               # constants too
        assert ag.tape_stats()["nodes"] == n
        # outside detect_anomaly: IEEE values, recorded
        assert math.isnan(NanForward()(x).data)
        return True

    assert in_fresh_thread(body)


@pytest.mark.parametrize("cls, nin", [(InfBackward, 1), (NanBackward, 2)])
def test_detect_anomaly_backward(cls, nin):
    xs = [ag.Variable(0.5 + k) for k in range(nin)]
    for v in xs:
        v.grad = 1.0
    y = ag.sum([cls()(*xs) * 2.0] + [v * 3.0 for v in xs])
    with ag.detect_anomaly():
        with pytest.raises(FloatingPointError, match=cls.__name__ + r"\.backward\(\)"):
            y.backward()
    assert [v.grad for v in xs] == [1.0] * nin
    y.backward()            # without detect_anomaly: IEEE
    assert not math.isfinite(xs[-1].grad)


def test_detect_anomaly_finite_function_passes():
    x = ag.Variable(0.3)
    with ag.detect_anomaly():
        y = Exp()(Square()(x))
        y.backward()
    assert close(x.grad, 2 * 0.3 * math.exp(0.09), rel=1e-15)


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------

class SyncSquare(ag.Function):
    """x * x whose backward, on its first call in each thread, waits until both
    threads are inside a backward (so both calls have been set up) before it
    reads self.inputs."""

    barrier = None
    local = threading.local()

    def forward(self, x):
        return x * x

    def backward(self, gy):
        if not getattr(SyncSquare.local, "synced", False):
            SyncSquare.local.synced = True
            SyncSquare.barrier.wait(timeout=10)
        (x,) = self.inputs
        return 2.0 * x * gy


def _two_threads(get_fn, n=10):
    SyncSquare.barrier = threading.Barrier(2)
    results = {}

    def work(v):
        try:
            fn = get_fn()
            x = ag.Variable(v)
            s = ag.sum([fn(x) for _ in range(n)])
            s.backward()
            results[v] = x.grad
        except BaseException as e:  # noqa: BLE001
            results[v] = repr(e)

    ts = [threading.Thread(target=work, args=(v,)) for v in (1.0, 2.0)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def test_function_class_used_in_two_threads_at_once():
    results = _two_threads(SyncSquare)
    assert results == {1.0: 20.0, 2.0: 40.0}


def test_function_instance_used_in_two_threads_at_once():
    shared = SyncSquare()
    results = _two_threads(lambda: shared)
    assert results == {1.0: 20.0, 2.0: 40.0}


def test_function_node_from_another_thread():
    box = {}

    def make():
        x = ag.Variable(2.0)
        box["y"] = Square()(x)
        box["x"] = x

    t = threading.Thread(target=make)
    t.start()
    t.join()
    with pytest.raises(RuntimeError, match="thread"):
        Square()(box["y"])
    with pytest.raises(RuntimeError, match="thread"):
        box["y"].backward()
    # its leaf is shareable
    z = Square()(box["x"])
    z.backward()
    assert box["x"].grad == 4.0
    box.clear()


def test_shared_leaf_assigned_by_other_thread_during_function_backward():
    entered, done = threading.Event(), threading.Event()

    class Waits(ag.Function):
        def forward(self, a):
            return 2.0 * a

        def backward(self, gy):
            entered.set()
            done.wait(10)
            return 2.0 * gy

    x = ag.Variable(1.0)
    x.grad = 10.0
    out = {}

    def a():
        z = Waits()(x * 1.0) + x * 7.0      # x gets 7 before the Function is reached
        try:
            z.backward()
            out["a"] = "ok"
        except RuntimeError:
            out["a"] = "raised"

    def b():
        entered.wait(10)
        try:
            x.data = 3.0
            out["b"] = "ok"
        except RuntimeError:
            out["b"] = "raised"
        done.set()

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if out["a"] == "raised":
        assert x.grad == 10.0          # as before the failed backward()
    else:
        assert x.grad == 19.0


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def test_function_instance_released_with_its_graph():
    def body():
        x = ag.Variable(1.0)
        f = Square()
        ref = weakref.ref(f)
        y = f(x) * 2.0 + f(x)
        del f
        assert ref() is not None          # the tape holds it while the node lives
        y.backward()
        assert x.grad == 6.0
        del y
        gc.collect()
        assert ref() is None
        assert ag.tape_stats()["nodes"] == 0
        # after a failing backward too (the traceback references the instance)
        g = Flaky()
        ref = weakref.ref(g)
        y = g(x)
        try:
            y.backward()
        except ValueError:
            pass
        del g, y
        gc.collect()
        assert ref() is None
        assert ag.tape_stats()["nodes"] == 0
        return True

    assert in_fresh_thread(body)


def test_function_instances_after_compaction():
    class Scale(ag.Function):
        def __init__(self, k):
            self.k = k

        def forward(self, x):
            return self.k * x

        def backward(self, gy):
            return self.k * gy

    def check(keep, x):
        for k, y in keep:
            assert y.op == "add"
            assert ag.grad(y, [x]) == [float(k)]     # each graph calls its own instance

    def body():
        x = ag.Variable(1.0)
        keep = []
        refs = []
        for k in range(1, 41):
            f = Scale(float(k))
            refs.append(weakref.ref(f))
            y = f(x * 1.0) + 0.0
            if k % 4 == 0:
                keep.append((k, y))
        del f, y
        n0 = ag.tape_stats()["nodes"]
        _core._compact()
        assert ag.tape_stats()["nodes"] == 3 * len(keep) < n0
        alive = [k for k, r in enumerate(refs, 1) if r() is not None]
        assert alive == [k for k, _ in keep]
        check(keep, x)
        # more recording and automatic compactions with a small floor
        c0 = ag.tape_stats()["compactions"]
        old = _core._set_compaction_floor(64)
        try:
            for k in range(200):
                tmp = Scale(0.5)(x) * 2.0
            assert ag.tape_stats()["compactions"] >= c0 + 2
        finally:
            _core._set_compaction_floor(old)
        check(keep, x)
        assert ag.grad(tmp, [x]) == [1.0]
        del tmp
        keep.clear()
        gc.collect()
        assert ag.tape_stats()["nodes"] == 0
        assert all(r() is None for r in refs)
        return True

    assert in_fresh_thread(body)


FINALIZER_PROBE = r'''
import json
import autograd_c as ag
from autograd_c import _core
out = []
keep = None

class F(ag.Function):
    def forward(self, x):
        return 2.0 * x
    def backward(self, gy):
        return 2.0 * gy
    def __del__(self):
        # user code run when the tape drops this instance
        if keep is not None and not out:
            out.append(keep * 5.0)

x = ag.Variable(1.0)
junk = [F()(x * 1.0) for _ in range(2000)]
keep = ag.exp(x) * 3.0            # recorded after the junk: compaction renumbers it
del junk                          # the instances live on in the tape only
_core._compact()
r = out[0]
print(json.dumps([ag.graph_size(r), ag.grad(r, [x])[0], r.data, keep.data]))
'''


def test_function_finalizer_during_compaction():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", FINALIZER_PROBE], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    size, g, rdata, kdata = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rdata == kdata * 5.0
    assert size == 3
    assert g == pytest.approx(15.0 * math.e, rel=1e-15)


def test_nodes_return_to_zero_after_function_graphs():
    def body():
        x = ag.Variable(0.5)
        for _ in range(3):
            y = expr_ag(x, x * 2.0, 1.0)
            y.backward()
        del y
        return ag.tape_stats()

    s = in_fresh_thread(body)
    assert s["nodes"] == 0 and s["live"] == 0 and s["args"] == 0
