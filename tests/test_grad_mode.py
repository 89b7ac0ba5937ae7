"""Grad mode (no_grad, enable_grad, set_grad_enabled, is_grad_enabled) and
anomaly detection (detect_anomaly): context managers, decorators, nesting,
restoring after exceptions, thread-locality."""
import math
import threading

import pytest

import autograd_c as ag
from autograd_c import Variable
from autograd_c._core import _is_anomaly_enabled


@pytest.fixture(autouse=True)
def modes_restored():
    assert ag.is_grad_enabled() is True
    assert _is_anomaly_enabled() is False
    yield
    ok = ag.is_grad_enabled() and not _is_anomaly_enabled()
    ag._core._set_grad_enabled(True)
    ag._core._set_anomaly(False)
    assert ok, "a test left grad mode off or anomaly mode on"


def nodes():
    return ag.tape_stats()["nodes"]


def recorded(v):
    return v.requires_grad and not v.is_leaf


# ---------------------------------------------------------------------------
# no_grad / enable_grad / set_grad_enabled
# ---------------------------------------------------------------------------

def test_default_is_enabled_and_records():
    x = Variable(2.0)
    assert ag.is_grad_enabled() is True
    assert recorded(x * 3)


def test_no_grad_context():
    x = Variable(2.0)
    keep = x * 1.0
    n = nodes()
    with ag.no_grad() as ctx:
        assert ag.is_grad_enabled() is False
        ys = [x * 3, x + x, ag.exp(x), ag.sum([x, keep]), ag.dot([x], [x]), -x, x ** 2,
              ag.maximum(x, keep), keep * 2]
    assert ctx is not None
    assert nodes() == n
    for y in ys:
        assert y.requires_grad is False and y.is_leaf
    assert ys[0].data == 6.0 and ys[3].data == 4.0
    assert ag.is_grad_enabled() is True
    assert recorded(x * 3)
    with pytest.raises(RuntimeError):
        ys[0].backward()


def test_no_grad_does_not_touch_leaves_or_existing_graphs():
    x = Variable(2.0)
    y = x * x
    with ag.no_grad():
        assert x.requires_grad is True            # leaves stay leaves
        y.backward()                              # backward still works inside
        z = y * 2                                 # but ops on recorded values are constants
    assert x.grad == 4.0
    assert z.requires_grad is False and z.data == 8.0


def test_enable_grad_inside_no_grad():
    x = Variable(2.0)
    with ag.no_grad():
        with ag.enable_grad():
            assert ag.is_grad_enabled() is True
            y = x * 3
        assert ag.is_grad_enabled() is False
        z = x * 3
    assert recorded(y) and not recorded(z)
    y.backward()
    assert x.grad == 3.0


def test_nesting_and_reusing_one_instance():
    ng = ag.no_grad()
    with ng:
        with ng:
            assert ag.is_grad_enabled() is False
            with ag.enable_grad():
                assert ag.is_grad_enabled() is True
                with ag.set_grad_enabled(False):
                    assert ag.is_grad_enabled() is False
                assert ag.is_grad_enabled() is True
            assert ag.is_grad_enabled() is False
        assert ag.is_grad_enabled() is False
    assert ag.is_grad_enabled() is True


@pytest.mark.parametrize("make", [ag.no_grad, ag.enable_grad, lambda: ag.set_grad_enabled(False),
                                  lambda: ag.set_grad_enabled(True)])
@pytest.mark.parametrize("outer", [True, False])
def test_restored_after_exception(make, outer):
    ag._core._set_grad_enabled(outer)
    try:
        with pytest.raises(KeyError):
            with make():
                raise KeyError("boom")
        assert ag.is_grad_enabled() is outer
    finally:
        ag._core._set_grad_enabled(True)


def test_decorators():
    x = Variable(2.0)

    @ag.no_grad()
    def f(v):
        """doc of f"""
        return ag.is_grad_enabled(), v * 2

    @ag.enable_grad()
    def h(v):
        return v * 2

    assert f.__name__ == "f" and f.__doc__ == "doc of f"      # functools.wraps
    mode, y = f(x)
    assert mode is False and y.requires_grad is False
    assert ag.is_grad_enabled() is True
    with ag.no_grad():
        z = h(x)
        assert ag.is_grad_enabled() is False
    assert recorded(z)


def test_decorator_restores_after_exception():
    @ag.no_grad()
    def boom():
        assert ag.is_grad_enabled() is False
        raise ValueError("x")

    with pytest.raises(ValueError):
        boom()
    assert ag.is_grad_enabled() is True


def test_decorated_function_is_reentrant():
    @ag.no_grad()
    def rec(n):
        assert ag.is_grad_enabled() is False
        if n:
            rec(n - 1)
            assert ag.is_grad_enabled() is False

    rec(5)
    assert ag.is_grad_enabled() is True


def test_set_grad_enabled_plain_call_takes_effect_immediately():
    x = Variable(2.0)
    try:
        result = ag.set_grad_enabled(False)
        assert ag.is_grad_enabled() is False
        assert (x * 2).requires_grad is False
        ag.set_grad_enabled(True)
        assert ag.is_grad_enabled() is True
        assert recorded(x * 2)
        assert result is not None
    finally:
        ag._core._set_grad_enabled(True)


def test_set_grad_enabled_context_restores_previous_mode():
    try:
        ag.set_grad_enabled(False)
        with ag.set_grad_enabled(True):
            assert ag.is_grad_enabled() is True
        assert ag.is_grad_enabled() is False
        with ag.set_grad_enabled(False):
            assert ag.is_grad_enabled() is False
        assert ag.is_grad_enabled() is False
    finally:
        ag._core._set_grad_enabled(True)
    with ag.set_grad_enabled(False):
        assert ag.is_grad_enabled() is False
    assert ag.is_grad_enabled() is True


def test_set_grad_enabled_accepts_truthy_values():
    with ag.set_grad_enabled(0):
        assert ag.is_grad_enabled() is False
    with ag.set_grad_enabled(1):
        assert ag.is_grad_enabled() is True


def test_set_grad_enabled_decorator_does_not_change_mode_at_decoration():
    @ag.set_grad_enabled(False)
    def off():
        return ag.is_grad_enabled()

    assert ag.is_grad_enabled() is True          # decoration left the mode alone
    assert off() is False
    assert ag.is_grad_enabled() is True
    with ag.no_grad():
        @ag.set_grad_enabled(True)
        def on():
            return ag.is_grad_enabled()
        assert ag.is_grad_enabled() is False
        assert on() is True
        assert ag.is_grad_enabled() is False


def test_grad_mode_is_thread_local():
    seen = {}
    go = threading.Event()
    done = threading.Event()

    def worker():
        go.wait(5)
        seen["enabled"] = ag.is_grad_enabled()
        seen["recorded"] = recorded(Variable(1.0) * 2)
        with ag.no_grad():
            done.set()
            seen["inner"] = ag.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    with ag.no_grad():
        go.set()
        done.wait(5)
        assert ag.is_grad_enabled() is False   # the worker's no_grad is its own
    t.join()
    assert seen == {"enabled": True, "recorded": True, "inner": False}
    assert ag.is_grad_enabled() is True


def test_no_grad_decorator_on_generator_function():
    x = Variable(2.0)

    @ag.no_grad()
    def gen():
        yield x * 2
        yield x * 3

    assert [y.requires_grad for y in gen()] == [False, False]


def test_no_grad_bare_decorator():
    @ag.no_grad
    def f():
        return ag.is_grad_enabled()

    assert f() is False


# ---------------------------------------------------------------------------
# detect_anomaly
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ag.log(Variable(-1.0)), r"^detect_anomaly: log\(-1\.0\) produced nan$"),
        (lambda: Variable(1.0) / Variable(0.0), r"^detect_anomaly: div\(1\.0, 0\.0\) produced inf$"),
        (lambda: 1 / Variable(0.0), r"^detect_anomaly: div\(1\.0, 0\.0\) produced inf$"),
        (lambda: Variable(-1.0) / 0, r"^detect_anomaly: div\(-1\.0, 0\.0\) produced -inf$"),
        (lambda: ag.exp(Variable(1000.0)), r"^detect_anomaly: exp\(1000\.0\) produced inf$"),
        (lambda: Variable(1000.0).exp(), r"exp\(1000\.0\) produced inf"),
        (lambda: ag.sqrt(Variable(-1.0)), r"^detect_anomaly: sqrt\(-1\.0\) produced nan$"),
        (lambda: ag.log(Variable(0.0)), r"log\(0\.0\) produced -inf"),
        (lambda: Variable(-8.0) ** 0.5, r"pow\(-8\.0, 0\.5\) produced nan"),
        (lambda: Variable(0.0) ** -1, r"pow\(0\.0, -1\.0\) produced inf"),
        (lambda: Variable(1e300) * Variable(1e300), r"mul\(1e\+300, 1e\+300\) produced inf"),
        (lambda: Variable(float("inf")) - Variable(float("inf")), r"sub\(inf, inf\) produced nan"),
        (lambda: ag.maximum(Variable(float("nan")), 1.0), r"maximum\(nan, 1\.0\) produced nan"),
        (lambda: ag.sum([Variable(1e308), Variable(1e308)]), r"sum\(.*\) produced inf"),
        (lambda: ag.dot([Variable(1e200)], [1e200]), r"dot\(.*\) produced inf"),
        (lambda: ag.log(-1.0), r"log\(-1\.0\) produced nan"),        # constants too
    ],
)
def test_detect_anomaly_raises_naming_op_and_inputs(make, message):
    x = Variable(2.0)
    keep = x * 3 + 1                       # a live graph whose tape must not change
    before = ag.tape_stats()
    with ag.detect_anomaly():
        with pytest.raises(FloatingPointError, match=message):
            make()
        assert ag.tape_stats()["nodes"] == before["nodes"]
        assert ag.tape_stats()["live"] == before["live"]
        ok = x * 2                         # finite results are still recorded
    assert recorded(ok)
    keep.backward()
    assert x.grad == 3.0


def test_outside_detect_anomaly_ieee_results_come_back():
    with ag.detect_anomaly():
        pass
    assert math.isnan(ag.log(Variable(-1.0)).data)
    assert ag.exp(Variable(1000.0)).data == math.inf
    assert (1 / Variable(0.0)).data == math.inf
    assert (Variable(-1.0) / 0).data == -math.inf
    assert math.isnan(ag.sqrt(Variable(-1.0)).data)
    assert ag.log(Variable(0.0)).data == -math.inf


def test_detect_anomaly_restored_after_exception_and_nesting():
    with pytest.raises(FloatingPointError):
        with ag.detect_anomaly():
            ag.log(Variable(-1.0))
    assert _is_anomaly_enabled() is False
    assert math.isnan(ag.log(Variable(-1.0)).data)

    with ag.detect_anomaly():
        with ag.detect_anomaly(False):
            assert _is_anomaly_enabled() is False
            assert math.isnan(ag.log(Variable(-1.0)).data)
            with ag.detect_anomaly():
                with pytest.raises(FloatingPointError):
                    ag.log(Variable(-1.0))
            assert math.isnan(ag.sqrt(Variable(-1.0)).data)
        with pytest.raises(FloatingPointError):
            ag.sqrt(Variable(-1.0))
    assert _is_anomaly_enabled() is False


def test_detect_anomaly_decorator():
    @ag.detect_anomaly()
    def f(v):
        return ag.log(v)

    assert _is_anomaly_enabled() is False
    assert f(Variable(1.0)).data == 0.0
    with pytest.raises(FloatingPointError, match=r"log\(-2\.0\) produced nan"):
        f(Variable(-2.0))
    assert _is_anomaly_enabled() is False
    assert math.isnan(ag.log(Variable(-2.0)).data)

    @ag.detect_anomaly(False)
    def g(v):
        return ag.log(v)

    with ag.detect_anomaly():
        assert math.isnan(g(Variable(-2.0)).data)
        with pytest.raises(FloatingPointError):
            ag.log(Variable(-2.0))


def test_detect_anomaly_under_no_grad():
    with ag.no_grad(), ag.detect_anomaly():
        with pytest.raises(FloatingPointError, match="exp"):
            ag.exp(Variable(1e4))
    assert ag.is_grad_enabled() and not _is_anomaly_enabled()


def test_detect_anomaly_allows_finite_results_and_backward():
    x = Variable(0.5)
    with ag.detect_anomaly():
        y = ag.log(x) * ag.sqrt(x) + ag.exp(x)
        y.backward()
    expected = math.sqrt(0.5) / 0.5 + math.log(0.5) / (2 * math.sqrt(0.5)) + math.exp(0.5)
    assert x.grad == pytest.approx(expected, rel=1e-14)


def test_detect_anomaly_is_thread_local():
    seen = {}

    def worker():
        seen["anomaly"] = _is_anomaly_enabled()
        seen["value"] = ag.log(Variable(-1.0)).data

    with ag.detect_anomaly():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["anomaly"] is False and math.isnan(seen["value"])
