"""Every documented error, its type and message; and that an error never
disturbs graphs that already exist (their backward() gives the exact same
gradients, the tape counters are unchanged).  Odd call sequences that could
crash the compiled core run in subprocesses."""
import gc
import math
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable


class Graph:
    """A small graph built before each error; check() backprops it again."""

    def __init__(self):
        self.x = Variable(2.0, name="x")
        self.w = Variable(-3.0, name="w")
        self.c = Variable(0.5, requires_grad=False, name="c")
        self.h = self.x * self.w                      # -6
        self.y = ag.sin(self.h) + self.x ** 2 * self.c + ag.sum([self.h, self.x, 1.0])
        self.y.name = "y"
        self.check()

    def check(self):
        self.x.grad = 0.0
        self.w.grad = 0.0
        self.y.backward()
        cos_h = math.cos(-6.0)
        # dy/dx = cos(h) * w + 2 x c + w + 1 ; dy/dw = cos(h) * x + x
        assert self.x.grad == pytest.approx(cos_h * -3.0 + 2.0 + -3.0 + 1.0, rel=1e-14)
        assert self.w.grad == pytest.approx(cos_h * 2.0 + 2.0, rel=1e-14)
        assert self.h.grad == pytest.approx(cos_h + 1.0, rel=1e-14)
        assert self.c.grad == 0.0
        assert ag.grad(self.y, [self.x, self.w]) == [self.x.grad, self.w.grad]
        assert (self.x.data, self.w.data, self.h.data) == (2.0, -3.0, -6.0)


@pytest.fixture
def g():
    graph = Graph()
    yield graph
    graph.check()           # after the test body (and its errors): the graph still works


COUNTERS = ("nodes", "live", "leaves", "constants", "args", "compactions")


@pytest.fixture(autouse=True)
def tape_unchanged_by_errors(monkeypatch):
    """Every pytest.raises block in this file must leave the tape counters as they were."""
    real_raises = pytest.raises

    class Checked:
        def __init__(self, *args, **kwargs):
            self.cm = real_raises(*args, **kwargs)

        def __enter__(self):
            self.before = {k: ag.tape_stats()[k] for k in COUNTERS}
            return self.cm.__enter__()

        def __exit__(self, *exc):
            suppressed = self.cm.__exit__(*exc)
            after = {k: ag.tape_stats()[k] for k in COUNTERS}
            assert after == self.before, "a failed operation changed the tape"
            return suppressed

    monkeypatch.setattr(pytest, "raises", Checked)
    gc.disable()                # no cyclic garbage collection may free recorded Variables mid-test
    try:
        yield
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad, typename",
    [
        ("1.0", "str"),
        (None, "NoneType"),
        ([1.0], "list"),
        ((1.0,), "tuple"),
        (1 + 2j, "complex"),
        (np.array([1.0]), "ndarray"),
        (np.array(1.0), "ndarray"),
        (np.complex128(1.0), "complex128"),
        (object(), "object"),
        (b"1", "bytes"),
        ({}, "dict"),
        (Variable, "type"),
    ],
)
def test_bad_construction_type(g, bad, typename):
    with pytest.raises(TypeError, match=rf"real number.*not {typename}$"):
        Variable(bad)
    with pytest.raises(TypeError, match=rf"not {typename}$"):
        Variable(bad, requires_grad=False)


def test_construction_from_variable_suggests_detach(g):
    for v in (g.x, g.h, g.c):
        with pytest.raises(TypeError, match=r"detach\(\)"):
            Variable(v)


def test_construction_overflow(g):
    with pytest.raises(OverflowError):
        Variable(10**400)
    with pytest.raises(OverflowError):
        Variable(-(10**400), requires_grad=False)


def test_name_must_be_str(g):
    with pytest.raises(TypeError, match="name must be a str or None, not int"):
        Variable(1.0, name=3)
    with pytest.raises(TypeError, match="not bytes"):
        g.x.name = b"x"
    assert g.x.name == "x"
    with pytest.raises(TypeError, match="not int"):
        g.h.name = 1
    assert g.h.name is None


# ---------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "op, typename",
    [
        (lambda v: v + "a", "str"),
        (lambda v: "a" + v, "str"),
        (lambda v: v - None, "NoneType"),
        (lambda v: None - v, "NoneType"),
        (lambda v: v * [1.0], None),          # list * int repetition message
        (lambda v: v / 1j, "complex"),
        (lambda v: 1j / v, "complex"),
        (lambda v: v ** "2", "str"),
        (lambda v: "2" ** v, "str"),
        (lambda v: v * np.array([1.0, 2.0]), None),
        (lambda v: v + np.complex64(1), None),
        (lambda v: v // 2, "int"),
        (lambda v: v % 2, "int"),
        (lambda v: v @ v, "Variable"),
    ],
)
def test_bad_operand_types(g, op, typename):
    for v in (g.x, g.h, g.c):
        with pytest.raises(TypeError) as info:
            op(v)
        if typename is not None:
            assert typename in str(info.value)


def test_operator_overflow_from_huge_int(g):
    with pytest.raises(OverflowError):
        g.h + 10**400
    with pytest.raises(OverflowError):
        10**400 * g.x


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan",
                                  "atan", "tanh", "sigmoid", "relu", "softplus", "erf", "abs"])
def test_module_functions_bad_types(g, name):
    f = getattr(ag, name)
    with pytest.raises(TypeError, match=rf"{name}\(\) takes Variables or real numbers.*not str"):
        f("1.0")
    with pytest.raises(TypeError, match="not NoneType"):
        f(None)
    with pytest.raises(TypeError, match="not ndarray"):
        f(np.array([1.0]))


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_bad_types(g, name):
    f = getattr(ag, name)
    with pytest.raises(TypeError, match=rf"{name}\(\).*not str"):
        f(g.x, "a")
    with pytest.raises(TypeError, match=rf"{name}\(\).*not str"):
        f("a", g.x)
    with pytest.raises(TypeError, match="not NoneType"):
        f(None, 1.0)
    with pytest.raises(TypeError, match="not list"):
        f(1.0, [g.x])


def test_sum_bad_item_names_index(g):
    with pytest.raises(TypeError, match=r"sum\(\) takes Variables or real numbers, but item 2 is str"):
        ag.sum([g.x, 1.0, "a", g.h])
    with pytest.raises(TypeError, match="item 0 is NoneType"):
        ag.sum(iter([None, g.x]))
    with pytest.raises(TypeError, match="item 1 is complex"):
        ag.sum((g.h, 1j))
    with pytest.raises(TypeError):
        ag.sum(5)                          # not iterable
    with pytest.raises(TypeError):
        ag.sum(None)


def test_dot_bad_item_names_index(g):
    with pytest.raises(TypeError, match=r"dot\(\) takes Variables or real numbers, but item 1 is str"):
        ag.dot([g.x, "a"], [1.0, 2.0])
    with pytest.raises(TypeError, match="item 2 is NoneType"):
        ag.dot([1.0, 2.0, 3.0], [g.h, g.x, None])
    with pytest.raises(TypeError, match="item 0 is list"):
        ag.dot([[1.0]], [g.x])


def test_dot_length_mismatch(g):
    with pytest.raises(ValueError, match="equal length, got 1 and 2"):
        ag.dot([g.x], [g.w, g.h])
    with pytest.raises(ValueError, match="got 3 and 0"):
        ag.dot(iter([1, 2, 3]), [])


def test_sum_generator_raising_midway(g):
    def items():
        yield g.x
        yield g.h
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        ag.sum(items())


def test_float_subclass_raising_in_conversion(g):
    class Bad(float):
        def __float__(self):
            raise ZeroDivisionError("no float")
    for f in (lambda: g.h * Bad(1.0), lambda: Variable(Bad(1.0)),
              lambda: ag.sum([g.x, Bad(1.0)]), lambda: ag.exp(Bad(1.0))):
        with pytest.raises(ZeroDivisionError, match="no float"):
            f()


# ---------------------------------------------------------------------------
# attributes
# ---------------------------------------------------------------------------

def test_setting_data_on_recorded_result(g):
    with pytest.raises(AttributeError, match="recorded"):
        g.h.data = 1.0
    with pytest.raises(AttributeError, match="recorded"):
        g.y.value = 1.0
    assert g.h.data == -6.0


def test_setting_data_to_bad_type_changes_nothing(g):
    for bad, typename in (("3", "str"), (None, "NoneType"), (np.array([1.0]), "ndarray")):
        with pytest.raises(TypeError, match=f"not {typename}"):
            g.x.data = bad
    assert g.x.data == 2.0
    with pytest.raises(OverflowError):
        g.w.data = 10**400
    assert g.w.data == -3.0


def test_requires_grad_on_recorded(g):
    with pytest.raises(RuntimeError, match="leaves"):
        g.h.requires_grad = False
    assert g.h.requires_grad is True


def test_reinit_recorded_variable(g):
    with pytest.raises(RuntimeError, match="re-initialised"):
        g.h.__init__(5.0)
    assert g.h.data == -6.0


def test_grad_setter_bad_type(g):
    with pytest.raises(TypeError):
        g.x.grad = [1.0]
    with pytest.raises((TypeError, ValueError)):
        g.x.grad = "abc"


# ---------------------------------------------------------------------------
# backward() and grad()
# ---------------------------------------------------------------------------

def test_backward_on_constants(g):
    c = Variable(1.0, requires_grad=False)
    with ag.no_grad():
        under_no_grad = g.x * 2
    for v in (c, c * 2 + 1, g.h.detach(), under_no_grad, ag.exp(1.0)):
        with pytest.raises(RuntimeError, match="does not require grad"):
            v.backward()


def test_backward_bad_gradient_type(g):
    g.x.grad = g.w.grad = 0.0
    with pytest.raises(TypeError):
        g.y.backward(None)
    with pytest.raises(TypeError):
        g.y.backward([1.0])
    with pytest.raises(TypeError):
        g.x.backward(None)
    assert (g.x.grad, g.w.grad) == (0.0, 0.0)


def test_grad_bad_arguments(g):
    with pytest.raises(TypeError, match="output must be a Variable, not float"):
        ag.grad(1.0, [g.x])
    with pytest.raises(TypeError, match="output must be a Variable, not list"):
        ag.grad([g.y], [g.x])
    with pytest.raises(TypeError, match="input 1 is float"):
        ag.grad(g.y, [g.x, 2.0])
    with pytest.raises(TypeError, match="input 0 is str"):
        ag.grad(g.y, ["x"])
    with pytest.raises(TypeError):
        ag.grad(g.y, g.x)                  # not a list: a Variable is not iterable
    with pytest.raises(RuntimeError, match="constant"):
        ag.grad(g.c, [g.x])


def test_backward_after_named_leaf_changed(g):
    g.x.grad = g.w.grad = 0.0
    a = Variable(1.5, name="alpha")
    b = Variable(2.0)
    out = a * b + g.y
    a.data = 4.0
    with pytest.raises(RuntimeError, match=r"leaf 'alpha'.*assigned a new value"):
        out.backward()
    with pytest.raises(RuntimeError, match="'alpha'"):
        ag.grad(out, [b])
    assert (a.grad, b.grad) == (0.0, 0.0)
    assert g.x.grad == 0.0 and g.w.grad == 0.0        # the failed sweep delivered nothing


def test_backward_after_unnamed_leaf_changed(g):
    a = Variable(1.5)
    out = a * g.x
    g.x.grad = 0.0
    a.data = 4.0
    with pytest.raises(RuntimeError, match=r"^a leaf of this graph was assigned"):
        out.backward()
    assert g.x.grad == 0.0


def test_failed_backward_after_previous_backward_keeps_gradients(g):
    g.x.grad = 0.0
    a = Variable(1.5, name="a")
    out = a * g.x
    out.backward()
    assert (a.grad, g.x.grad) == (2.0, 1.5)
    a.data = 0.0
    with pytest.raises(RuntimeError, match="'a'"):
        out.backward()
    assert (a.grad, g.x.grad) == (2.0, 1.5)


def test_released_graph_refuses_backward_but_keeps_its_value(g):
    """A graph released by compaction (a leaf changed after recording) keeps
    working in arithmetic, where only its value is needed; backward() through
    it raises, as PyTorch does for a modified leaf (issue 8)."""
    floor = ag._core._set_compaction_floor(16)
    try:
        a = Variable(1.0, name="a")
        stale = a * 3
        a.data = 2.0
        for _ in range(200):               # enough recording to compact
            t = g.x * 1.0
        del t
        ag._core._compact()
        for f in (stale.backward, lambda: ag.grad(stale, [a])):
            with pytest.raises(RuntimeError, match="released|assigned a new value"):
                f()
        results = [stale * 2, ag.exp(stale), ag.sum([stale, g.x]), ag.maximum(stale, g.x)]
        assert [r.data for r in results] == [6.0, math.exp(3.0), 3.0 + g.x.data,
                                             max(3.0, g.x.data)]
        for r in results:
            with pytest.raises(RuntimeError, match="released"):
                r.backward()
        assert stale.data == 3.0
        assert repr(stale) == "Variable(data=3.0, grad=0.0)"
    finally:
        ag._core._set_compaction_floor(floor)


def test_other_thread_errors_leave_both_tapes_intact(g):
    result = {}

    def worker():
        try:
            for f in (g.y.backward, lambda: g.h * g.x, lambda: ag.sum([g.x, g.h]),
                      lambda: ag.grad(g.y, [g.x]), g.y.zero_grad, lambda: ag.exp(g.h)):
                try:
                    f()
                    result.setdefault("no error", []).append(f)
                except RuntimeError as e:
                    assert "thread" in str(e)
            result["stats"] = ag.tape_stats()
            z = g.x * g.w                  # leaves are shared: fine
            z.backward()
            result["grads"] = (g.x.grad, g.w.grad)
        except BaseException as e:     # noqa: BLE001
            result["error"] = e

    g.x.grad = g.w.grad = 0.0
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert "error" not in result and "no error" not in result
    s = result["stats"]
    assert (s["nodes"], s["leaves"], s["live"]) == (0, 0, 0)
    assert result["grads"] == (-3.0, 2.0)


def test_zero_grad_on_constants_and_leaves_never_fails(g):
    g.c.grad = 3.0
    g.c.zero_grad()
    g.x.zero_grad()
    assert (g.c.grad, g.x.grad) == (0.0, 0.0)
    assert g.w.grad != 0.0            # only the leaf itself was zeroed
    v = Variable.__new__(Variable)
    v.zero_grad()
    assert v.grad == 0.0


# ---------------------------------------------------------------------------
# trying to crash the core: each script runs in its own interpreter
# ---------------------------------------------------------------------------

def run_isolated(code, timeout=60):
    prelude = "import autograd_c as ag\nfrom autograd_c import Variable as V\n"
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"
    return r.stdout


def test_odd_sequences_do_not_crash():
    out = run_isolated("""
        import gc, pickle, threading
        def expect(exc, f):
            try:
                f()
            except exc:
                return
            raise AssertionError(f"no {exc.__name__}")

        # Variable.__new__ without __init__: a constant 0.0
        v = V.__new__(V)
        assert (v.data, v.grad, v.requires_grad, v.is_leaf, v.op, v.name) == (0.0, 0.0, False, True, "", None)
        assert repr(v) == "Variable(data=0.0, requires_grad=False)"
        expect(RuntimeError, v.backward)
        w = v * 2; assert w.requires_grad is False
        pickle.loads(pickle.dumps(v)); v.zero_grad(); v.detach()
        v.__init__(3.0); y = v * v; y.backward(); assert v.grad == 6.0

        # backward twice, zero_grad everywhere, grad setters in between
        x = V(2.0); c = V(1.0, requires_grad=False)
        y = x * x * c
        y.backward(); y.backward(); assert x.grad == 8.0
        y.zero_grad(); y.zero_grad(); x.zero_grad(); c.zero_grad()
        y.grad = 5; x.grad = None; y.backward(); assert (x.grad, y.grad) == (4.0, 1.0)

        # re-initialising a leaf that is in a graph makes that graph stale
        x = V(2.0, name="x"); y = x * x
        x.__init__(5.0)
        expect(RuntimeError, y.backward)
        (x * x).backward(); assert x.grad == 10.0
        x.__init__(1.0, requires_grad=False)
        assert (x * x).requires_grad is False

        # deleting leaves and intermediates mid-way
        x = V(2.0); h = x * 3; y = h * h; del x, h; gc.collect()
        y.backward(); assert y.grad == 1.0
        x = V(2.0); y = (x * 3) * x; del y; gc.collect()
        assert ag.tape_stats()["nodes"] == 0

        # empty and huge n-ary nodes
        for e in (ag.sum([]), ag.sum(()), ag.sum(iter([])), ag.dot([], []), ag.dot((), iter(()))):
            assert e.data == 0.0 and e.requires_grad is False
        xs = [V(1.0) for _ in range(200000)]
        s = ag.sum(xs); s.backward(); assert s.data == 200000.0 and xs[-1].grad == 1.0
        d = ag.dot(xs, xs); d.backward(); assert d.data == 200000.0 and xs[7].grad == 3.0
        one = V(0.5)
        s = ag.sum([one] * 100000); s.backward(); assert one.grad == 100000.0
        del xs, s, d

        # ops on Variables whose graph was released
        ag._core._set_compaction_floor(16)
        a = V(1.0); stale = a * 2; a.data = 3.0
        z = V(1.0)
        for i in range(300): z * i
        ag._core._compact()
        for f in (stale.backward, lambda: ag.grad(stale, [a, stale])):
            expect(RuntimeError, f)
        for r in (stale + stale, ag.dot([stale], [stale])):     # values still work ...
            assert r.data == (4.0 if r.op == "add" else 4.0)
            expect(RuntimeError, r.backward)                     # ... gradients do not
        stale.zero_grad(); stale.grad = 1.0
        assert (stale.data, stale.op, stale.is_leaf) == (2.0, "", False)
        expect(TypeError, lambda: pickle.dumps(stale))
        del stale; gc.collect()

        # a Variable recorded by a thread that has ended
        out = []
        t = threading.Thread(target=lambda: out.append(z * 3)); t.start(); t.join(); del t
        gc.collect()
        expect(RuntimeError, out[0].backward)
        expect(RuntimeError, lambda: out[0] * 2)
        assert out[0].data == 3.0 and out[0].op == "mul"
        out.clear(); gc.collect()
        y = z * z; y.backward(); assert z.grad == 2.0

        # many failed n-ary calls
        before = ag.tape_stats()
        for i in range(2000):
            expect(ValueError, lambda: ag.dot([z] * 3, [1, 2]))
            expect(TypeError, lambda: ag.sum([z, "a"]))
            expect(TypeError, lambda: ag.sum([y, y, None]))
        after = ag.tape_stats(); assert after == before, (before, after)

        # churn through the Variable pool
        del y
        xs = [V(float(i)) for i in range(5000)]
        ys = [x * x for x in xs]
        del xs
        s = ag.sum(ys); s.backward(); assert s.data == 41654167500.0
        del ys, s
        assert ag.tape_stats()["nodes"] == 0
        print("ok")
    """)
    assert out.strip() == "ok"


def test_sum_of_list_mutated_during_conversion_does_not_crash():
    run_isolated("""
        class Evil(float):
            def __float__(self):
                items.clear()
                return 1.0
        x = V(1.0)
        items = [x, Evil(1.0), x]
        try:
            ag.sum(items)
        except Exception:
            pass
    """)


def test_operand_released_during_conversion_does_not_crash():
    run_isolated("""
        class Evil(float):
            def __float__(self):
                x.data = 5.0                  # y's graph becomes stale ...
                for i in range(1 << 20):      # ... and a compaction releases it
                    w * 1.0
                return 1.0
        x = V(1.0); w = V(3.0)
        pad = [w * 1.0 for i in range(100000)]
        y = x * 2
        del pad
        try:
            s = y * Evil(1.0)
            (s * 2).backward()
        except RuntimeError:
            pass
    """)

