"""The functional API (ag.jvp, vjp, hvp, hessian, jacobian): types, shapes, errors, side effects.

Values against torch.func on random graphs are in test_higher_random.py and
at the edge points in test_higher_edges.py; here: what goes in and comes
out, torch.autograd.functional's conventions, custom Functions, and that a
call records nothing that outlives it and touches no .grad, whatever f and
the tape do meanwhile (compaction, reset, threads).
"""
import array
import math
import threading

import pytest

import autograd_c as ag
from autograd_c import Variable
from helpers import in_fresh_thread

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.func imports jit


def f2(x, y):
    return x * x * y + ag.sin(y)


def t2(x, y):
    return x * x * y + torch.sin(y)


def tt(*values):
    return tuple(torch.tensor(float(v), dtype=torch.float64) for v in values)


# ---------------------------------------------------------------------------
# types and shapes
# ---------------------------------------------------------------------------

def test_a_single_number_gives_floats():
    value, d = ag.jvp(lambda x: x ** 3, 2.0)            # v defaults to 1.0
    assert (value, d) == (8.0, 12.0) and type(value) is float and type(d) is float
    assert ag.vjp(lambda x: x ** 3, 2.0) == (8.0, 12.0)
    assert ag.hvp(lambda x: x ** 3, 2.0) == (8.0, 12.0)
    assert ag.hessian(lambda x: x ** 3, 2.0) == 12.0
    assert ag.jacobian(lambda x: x ** 3, 2.0) == 12.0
    assert ag.jacobian(lambda x: [x, x * x], 3) .tolist() == [1.0, 6.0]


@pytest.mark.parametrize("inputs", [[1.5, -0.5], (1.5, -0.5), np.array([1.5, -0.5]),
                                    array.array("d", [1.5, -0.5]), [Variable(1.5), -0.5],
                                    [np.float32(1.5), -0.5], np.array([1.5, -0.5], dtype=np.float32)])
def test_sequences_give_arrays_matching_torch_autograd_functional(inputs):
    x = tt(1.5, -0.5)
    v = [0.25, 2.0]
    value, jv = ag.jvp(f2, inputs, v)
    assert type(value) is float and type(jv) is float      # one output
    t_value, t_jv = torch.autograd.functional.jvp(t2, x, tt(*v))
    assert math.isclose(value, t_value.item(), rel_tol=1e-15)
    assert math.isclose(jv, t_jv.item(), rel_tol=1e-14)
    _, vj = ag.vjp(f2, inputs, 1.0)
    _, t_vj = torch.autograd.functional.vjp(t2, x, torch.tensor(1.0, dtype=torch.float64))
    assert isinstance(vj, np.ndarray) and vj.shape == (2,)
    assert np.allclose(vj, [t.item() for t in t_vj], rtol=1e-14, atol=0)
    _, hv = ag.hvp(f2, inputs, v)
    _, t_hv = torch.autograd.functional.hvp(t2, x, tt(*v))
    assert hv.shape == (2,) and np.allclose(hv, [t.item() for t in t_hv], rtol=1e-14, atol=0)
    h = ag.hessian(f2, inputs)
    t_h = torch.autograd.functional.hessian(t2, x)
    assert h.shape == (2, 2)
    assert np.allclose(h, [[t_h[j][k].item() for k in range(2)] for j in range(2)], rtol=1e-14)
    jac = ag.jacobian(lambda x, y: [f2(x, y), x - y, ag.exp(x)], inputs)
    assert jac.shape == (3, 2)


def test_jacobian_shape_is_output_shape_plus_input_shape():
    assert ag.jacobian(lambda x, y: x * y, [2.0, 3.0]).shape == (2,)
    assert ag.jacobian(lambda x: [x, 2 * x, 3 * x], 1.0).shape == (3,)
    assert ag.jacobian(lambda x, y: (x * y,), [2.0, 3.0]).shape == (1, 2)
    assert ag.jacobian(lambda x, y: [x * y, x], [2.0, 3.0]).tolist() == [[3.0, 2.0], [1.0, 0.0]]
    v, j = ag.jvp(lambda x, y: (x * y, x + y), [2.0, 3.0], [1.0, 0.0])
    assert v.tolist() == [6.0, 5.0] and j.tolist() == [3.0, 1.0]


def test_outputs_that_are_inputs_constants_or_outside_values():
    w = Variable(5.0)                                 # a leaf f closes over: a constant here
    w.grad = 0.25
    outs = lambda x, y: [x, 7.0, w * x, y * 0.0 + w, Variable(2.0, requires_grad=False)]
    assert ag.jacobian(outs, [1.0, 2.0]).tolist() == [[1, 0], [0, 0], [5, 0], [0, 0], [0, 0]]
    assert ag.jacobian(outs, [1.0, 2.0], strategy="forward-mode").tolist() == \
        [[1, 0], [0, 0], [5, 0], [0, 0], [0, 0]]
    value, vj = ag.vjp(outs, [1.0, 2.0], [1, 1, 1, 1, 1])
    assert value.tolist() == [1.0, 7.0, 5.0, 5.0, 2.0] and vj.tolist() == [6.0, 0.0]
    assert w.grad == 0.25                              # untouched
    assert ag.hessian(lambda x, y: x, [1.0, 2.0]).tolist() == [[0, 0], [0, 0]]
    assert ag.hvp(lambda x, y: 3.0, [1.0, 2.0], [1.0, 1.0])[1].tolist() == [0.0, 0.0]


def test_unused_inputs_get_zeros():
    h = ag.hessian(lambda x, y, z: x * x * z, [1.0, 2.0, 3.0])
    assert h.tolist() == [[6.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]


def test_hessian_is_symmetric_to_the_last_bit():
    def f(*x):
        return ag.sum([ag.exp(x[i] * x[j]) * ag.sin(x[j] - x[i] / 3) for i in range(4) for j in range(4)])

    h = ag.hessian(f, [0.1, -0.7, 1.3, 0.4])
    assert np.array_equal(h, h.T)


def test_hvp_and_hessian_of_the_extended_rosenbrock():
    def rosen(*x):
        return ag.sum([100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
                       for i in range(len(x) - 1)])

    x0 = np.linspace(-1.2, 1.1, 100)
    h = ag.hessian(rosen, x0)
    t_h = torch.func.hessian(lambda t: sum(100.0 * (t[i + 1] - t[i] ** 2) ** 2 + (1.0 - t[i]) ** 2
                                           for i in range(99)))(torch.tensor(x0))
    assert np.allclose(h, t_h.numpy(), rtol=1e-13, atol=1e-10)
    v = np.cos(np.arange(100.0))
    assert np.allclose(ag.hvp(rosen, x0, v)[1], h @ v, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="callable"):
        ag.jvp(3.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        ag.hessian(lambda: Variable(1.0), [])
    with pytest.raises(ValueError, match="1-D"):
        ag.jvp(f2, np.ones((2, 2)), [1.0])
    with pytest.raises(TypeError, match="real numbers, not str"):
        ag.jvp(f2, [1.0, "2"], [1.0, 1.0])
    with pytest.raises(TypeError, match="real numbers, not complex"):
        ag.jvp(lambda x: x, 1j)
    with pytest.raises(ValueError, match="v has 1 numbers, expected 2"):
        ag.jvp(f2, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="omitted only for a single number"):
        ag.hvp(f2, [1.0, 2.0])
    with pytest.raises(ValueError, match="omitted only"):
        ag.vjp(lambda x: [x, x], 1.0)
    with pytest.raises(ValueError, match="single Variable"):
        ag.hvp(lambda x: [x, x], 1.0)
    with pytest.raises(ValueError, match="single Variable"):
        ag.hessian(lambda x, y: (x, y), [1.0, 2.0])
    with pytest.raises(ValueError, match="strategy"):
        ag.jacobian(f2, [1.0, 2.0], strategy="sideways")
    with pytest.raises(TypeError, match="output 1 is str"):
        ag.jacobian(lambda x: [x, "x"], 1.0)
    with pytest.raises(TypeError, match="it is NoneType"):
        ag.jvp(lambda x: None, 1.0)
    with pytest.raises(ZeroDivisionError):
        ag.jvp(lambda x: 1 // 0, 1.0)


def test_array_inputs_complex_unaligned_and_strided():
    # complex arrays would lose their imaginary part in a float conversion: refused
    with pytest.raises(TypeError, match="dtype complex128"):
        ag.jvp(f2, np.array([1.0 + 2j, 2.0]), [1.0, 1.0])
    with pytest.raises(TypeError, match="dtype complex128"):
        ag.hvp(f2, [1.0, 2.0], np.array([1.0 + 0j, 1.0]))
    # a float64 buffer at an odd address (UBSan: misaligned loads) and a strided view
    # give the same numbers as a plain list
    raw = b"\x00" + np.array([1.0, 2.0, 3.0]).tobytes()
    odd = np.frombuffer(raw, dtype=np.float64, offset=1, count=3)
    assert not odd.flags.aligned
    f3 = lambda a, b, c: a * b * c + ag.sin(a)
    strided = np.array([1.0, 9.0, 2.0, 9.0, 3.0, 9.0])[::2]
    want = ag.hvp(f3, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    for x in (odd, strided):
        got = ag.hvp(f3, x, x)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])
    assert np.array_equal(ag.hessian(f3, odd), ag.hessian(f3, [1.0, 2.0, 3.0]))


def test_f_must_not_change_its_inputs():
    def f(x):
        x.data = 2.0
        return x * x

    with pytest.raises(RuntimeError, match="changed its input 0"):
        ag.jvp(f, 1.0)


def test_custom_function_rules():
    calls = []

    class Sq(ag.Function):
        differentiable_backward = True

        def forward(self, x):
            return x * x

        def backward(self, gy):
            (x,) = self.inputs
            calls.append("backward")
            return gy * 2 * x

    class SqJvp(Sq):
        def jvp(self, dx):
            (x,) = self.inputs
            calls.append("jvp")
            return 2 * x * dx

    for cls in (Sq, SqJvp):
        calls.clear()
        assert ag.jvp(lambda x: cls()(x) * 3.0, 1.5, 2.0) == (6.75, 18.0)
        assert calls == (["jvp"] if cls is SqJvp else ["backward"])   # default: from backward(1)
        assert ag.jacobian(lambda x, y: [cls()(x) * y], [1.5, 2.0],
                           strategy="forward-mode").tolist() == [[6.0, 2.25]]
        # second order through the Function: its backward, recorded
        value, hv = ag.hvp(lambda x, y: cls()(x) * y, [1.5, 2.0], [1.0, 0.0])
        assert value == 4.5 and hv.tolist() == [4.0, 3.0]
        assert ag.hessian(lambda x, y: cls()(x) * y, [1.5, 2.0]).tolist() == [[4.0, 3.0], [3.0, 0.0]]

    class FloatSq(ag.Function):                      # no differentiable_backward
        def forward(self, x):
            return x * x

        def backward(self, gy):
            (x,) = self.inputs
            return gy * 2 * x

    # where it depends on no input (a closed-over leaf), no second-order rule is needed
    w = Variable(3.0)
    assert ag.hvp(lambda x: x * x * FloatSq()(w), 1.5, 1.0) == (20.25, 18.0)
    assert ag.hessian(lambda x, y: x * y * FloatSq()(w), [1.5, 2.0]).tolist() == [[0, 9], [9, 0]]
    with pytest.raises(RuntimeError, match="FloatSq"):
        ag.hessian(lambda x, y: FloatSq()(x) * y, [1.5, 2.0])

    class BadJvp(Sq):
        def jvp(self, dx):
            return "fast"

    with pytest.raises(TypeError, match="BadJvp.jvp.. must return a real number"):
        ag.jvp(lambda x: BadJvp()(x), 1.0)


def test_function_errors_propagate_and_leave_nothing_busy():
    class Fails(ag.Function):
        def forward(self, x):
            return x

        def backward(self, gy):
            raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        ag.jvp(lambda x: Fails()(x), 1.0)
    with pytest.raises(KeyError, match="nope"):
        ag.vjp(lambda x: Fails()(x), 1.0)
    x = Variable(1.0)
    (x * x).backward()                                # the tape is not left busy
    assert x.grad == 2.0


# ---------------------------------------------------------------------------
# side effects: nothing recorded that outlives the call, no .grad touched
# ---------------------------------------------------------------------------

def test_nothing_outlives_the_call():
    def run():
        w = Variable(3.0)
        loss = w * w
        loss.backward()
        stats = ag.tape_stats()
        for api in (lambda: ag.jvp(f2, [1.0, 2.0], [1.0, 1.0]), lambda: ag.vjp(f2, [1.0, 2.0]),
                    lambda: ag.hvp(f2, [1.0, 2.0], [1.0, 1.0]), lambda: ag.hessian(f2, [1.0, 2.0]),
                    lambda: ag.jacobian(lambda x, y: [x * w, y], [1.0, 2.0])):
            api()
        after = ag.tape_stats()
        return w.grad, loss.grad, stats["live"], after["live"]

    w_grad, loss_grad, live_before, live_after = in_fresh_thread(run)
    assert (w_grad, loss_grad) == (6.0, 1.0) and live_after == live_before


def test_works_under_no_grad():
    with ag.no_grad():
        assert ag.jvp(lambda x: x * x, 3.0) == (9.0, 6.0)
        assert ag.hessian(lambda x: x ** 3, 2.0) == 12.0
    assert ag.is_grad_enabled()


def test_correct_across_a_compaction_or_reset_during_f():
    def with_compaction():
        previous = ag._core._set_compaction_floor(64)
        try:
            keep = Variable(1.0) * 2.0               # alive: the tape compacts, not resets

            def f(x, y):
                junk = [x * float(i) for i in range(500)]   # garbage: compacted away
                del junk
                return f2(x, y)

            out = ag.hessian(f, [1.5, -0.5]), ag.jvp(f, [1.5, -0.5], [1.0, 2.0])[1]
            assert ag.tape_stats()["compactions"] > 0
            del keep
            return out
        finally:
            ag._core._set_compaction_floor(previous)

    def with_reset():
        state = {"old": Variable(2.0) * 3.0}        # the only live Variable before f

        def f(x, y):
            state.clear()                           # the tape resets under f's first ops
            return f2(x, y)

        return ag.hessian(f, [1.5, -0.5]), ag.jvp(f, [1.5, -0.5], [1.0, 2.0])[1]

    want = (ag.hessian(f2, [1.5, -0.5]), ag.jvp(f2, [1.5, -0.5], [1.0, 2.0])[1])
    for run in (with_compaction, with_reset):
        h, jv = in_fresh_thread(run)
        assert np.array_equal(h, want[0]) and jv == want[1]


def test_threads_each_use_their_own_tape():
    results, errors = [], []

    def work(k):
        try:
            for _ in range(20):
                results.append((k, float(ag.hvp(f2, [1.0 + k, 2.0], [1.0, 0.0])[1][0])))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(v == 2 * 2.0 for k, v in results)      # d2/dx2 (x*x*y) = 2y


def test_large_inputs():
    n = 2000
    x0 = np.linspace(-1, 1, n)
    value, jv = ag.jvp(lambda *x: ag.dot(x, x), x0, np.ones(n))
    assert math.isclose(jv, 2 * x0.sum(), rel_tol=1e-12, abs_tol=1e-12)
    _, g = ag.vjp(lambda *x: ag.dot(x, x), x0)
    assert np.array_equal(g, 2 * x0)


def test_docstring_examples_run():
    import doctest
    import autograd_c.function
    import autograd_c.functional
    for module in (autograd_c.functional, autograd_c.function):
        result = doctest.testmod(module)
        assert result.attempted >= 8 and result.failed == 0, module.__name__
    # the compiled functions' examples (doctest's finder does not see Cython functions)
    runner = doctest.DocTestRunner()
    finder = doctest.DocTestFinder()
    for obj in (ag.grad, ag.Variable.backward):
        for test in finder.find(obj, obj.__name__, globs={"ag": ag}):
            runner.run(test)
    assert runner.tries >= 8 and runner.failures == 0
