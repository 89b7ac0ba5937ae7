"""create_graph=True: gradients as Variables, differentiable again; DeZero's and Newton's examples.

backward(create_graph=True) and grad(..., create_graph=True) record the
backward pass as ordinary tape nodes (create_graph.pxi): these tests check
the API around it (what .grad holds, accumulation, seeds, custom Functions,
errors) and its robustness (compaction and finalizers during the pass,
threads, stale leaves).  Every op's derivatives to third order against
torch are in test_higher_edges.py and test_higher_random.py.
"""
import gc
import math

import pytest

import autograd_c as ag
from autograd_c import Variable
from helpers import in_fresh_thread, run_python_json

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


# ---------------------------------------------------------------------------
# DeZero's and Newton's examples
# ---------------------------------------------------------------------------

# DeZero (step 33, "Newton's method with double backprop") minimises
# f(x) = x**4 - 2 x**2 from x = 2 and prints x at each of 10 iterations.
# These are the numbers it prints (its seeds in /work/shared/seeds stop
# before that step; they equal plain-float Newton with the analytic
# derivatives, checked below).
DEZERO_NEWTON = [2.0, 1.4545454545454546, 1.1510467893775467, 1.0253259289766978,
                 1.0009084519430513, 1.0000012353089454, 1.000000000002289, 1.0, 1.0, 1.0]


def test_dezero_newton_double_backprop():
    x = Variable(2.0)
    seen = []
    for i in range(10):
        seen.append(x.data)
        y = x ** 4 - 2 * x ** 2
        y.backward(create_graph=True)
        gx = x.grad
        assert isinstance(gx, Variable)
        x.grad = None                      # DeZero's x.cleargrad()
        gx.backward()
        gx2 = x.grad
        x.data -= gx.data / gx2
        x.grad = None
    assert seen == DEZERO_NEWTON
    # the same iteration with the analytic derivatives in plain floats
    v, plain = 2.0, []
    for i in range(10):
        plain.append(v)
        v -= (4 * v ** 3 - 4 * v) / (12 * v ** 2 - 4)
    assert all(math.isclose(a, b, rel_tol=1e-15) for a, b in zip(seen, plain))


def rosenbrock(*x):
    return ag.sum([100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
                   for i in range(len(x) - 1)])


@pytest.mark.parametrize("start", [[0.0, 2.0], [-1.2, 1.0], [-1.2, 1.0, -1.2, 1.0, -1.2, 1.0]])
def test_newton_on_rosenbrock_converges(start):
    """Newton's method with ag.hessian and ag.vjp (the gradient), against the
    same iteration with the analytic gradient and Hessian in NumPy."""
    x = np.array(start)
    xa = np.array(start)
    for step in range(40):
        _, g = ag.vjp(rosenbrock, x)
        h = ag.hessian(rosenbrock, x)
        ga, ha = _rosenbrock_derivatives(xa)
        assert np.allclose(g, ga, rtol=1e-12, atol=1e-9) and np.allclose(h, ha, rtol=1e-12, atol=1e-9)
        x = x - np.linalg.solve(h, g)
        xa = xa - np.linalg.solve(ha, ga)
        if np.max(np.abs(x - 1.0)) < 1e-14:
            break
    assert np.allclose(x, 1.0, rtol=0, atol=1e-12), x
    assert step < 30


def _rosenbrock_derivatives(x):
    n = len(x)
    g = np.zeros(n)
    h = np.zeros((n, n))
    for i in range(n - 1):
        r = x[i + 1] - x[i] ** 2
        g[i] += -400.0 * x[i] * r - 2.0 * (1.0 - x[i])
        g[i + 1] += 200.0 * r
        h[i, i] += 1200.0 * x[i] ** 2 - 400.0 * x[i + 1] + 2.0
        h[i, i + 1] += -400.0 * x[i]
        h[i + 1, i] += -400.0 * x[i]
        h[i + 1, i + 1] += 200.0
    return g, h


def test_newton_with_create_graph_on_rosenbrock():
    """The DeZero way (gradient and Hessian from create_graph passes) reaches
    the same minimum as the C sweeps."""
    xs = [Variable(0.0), Variable(2.0)]
    for step in range(20):
        grads = ag.grad(rosenbrock(*xs), xs, create_graph=True)
        h = np.array([ag.grad(g, xs) for g in grads])
        step_ = np.linalg.solve(h, [g.data for g in grads])
        for x, d in zip(xs, step_):
            x.data -= d
    assert [x.data for x in xs] == [1.0, 1.0]


# ---------------------------------------------------------------------------
# gradients as Variables
# ---------------------------------------------------------------------------

def test_grad_to_any_order():
    x = Variable(0.7)
    g = x ** 5
    for k, want in enumerate([5 * 0.7 ** 4, 20 * 0.7 ** 3, 60 * 0.7 ** 2, 120 * 0.7, 120.0]):
        (g,) = ag.grad(g, [x], create_graph=True)
        assert math.isclose(g.data, want, rel_tol=1e-14)
    (g,) = ag.grad(g, [x], create_graph=True)      # the sixth derivative: a constant
    assert g.data == 0.0 and not g.requires_grad


def test_fourth_derivative_of_a_composite_matches_torch():
    def f(lib, x, w):
        return lib.tanh(x * w) * lib.exp(-x) + lib.sin(x) ** 3 / (1 + w * w)

    x, w = Variable(0.3), Variable(-1.2)
    tx = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(-1.2, dtype=torch.float64, requires_grad=True)
    g, tg = f(ag, x, w), f(torch, tx, tw)
    for order in range(4):
        (g, _) = ag.grad(g, [x, w], create_graph=True)
        (tg, _) = torch.autograd.grad(tg, [tx, tw], create_graph=True)
        assert math.isclose(g.data, tg.item(), rel_tol=1e-12), order


def test_leaf_grad_is_a_variable_when_it_has_a_graph():
    x = Variable(3.0)
    (x * x * x).backward(create_graph=True)
    gx = x.grad
    assert isinstance(gx, Variable) and gx.data == 27.0 and gx.requires_grad
    assert x.grad is gx                             # the same object each time
    assert ag.grad(gx, [x]) == [18.0]
    # a gradient that depends on no Variable is a float, as a tensor without grad_fn
    w = Variable(2.0)
    (3.0 * w).backward(create_graph=True)
    assert w.grad == 3.0 and type(w.grad) is float


def test_create_graph_passes_accumulate_as_recorded_operations():
    x = Variable(2.0)
    (x * x).backward(create_graph=True)            # 2x
    (x * x * x).backward(create_graph=True)        # + 3x**2
    g = x.grad
    assert isinstance(g, Variable) and g.data == 16.0
    assert ag.grad(g, [x]) == [2.0 + 12.0]
    # a float already there (first-order passes) is added as a constant
    y = Variable(2.0)
    (y * 5.0).backward()
    (y * y).backward(create_graph=True)
    assert isinstance(y.grad, Variable) and y.grad.data == 9.0
    assert ag.grad(y.grad, [y]) == [2.0]


def test_a_first_order_pass_makes_the_gradient_a_float_again():
    x = Variable(2.0)
    (x * x).backward(create_graph=True)
    assert isinstance(x.grad, Variable)
    (x * 3.0).backward()
    assert x.grad == 7.0 and type(x.grad) is float
    x.grad = None
    assert x.grad == 0.0


def test_grad_can_be_assigned_a_variable_and_cleared():
    x, w = Variable(1.0), Variable(4.0)
    g = w * w
    x.grad = g
    assert x.grad is g
    x.grad = None
    assert x.grad == 0.0
    x.grad = Variable(2.5, requires_grad=False)     # a constant: its value
    assert x.grad == 2.5 and type(x.grad) is float


def test_seed_can_be_a_variable():
    x, v = Variable(1.5), Variable(2.0)
    (x * x).backward(v, create_graph=True)         # v * 2x
    g = x.grad
    assert g.data == 6.0
    assert ag.grad(g, [x, v]) == [4.0, 3.0]
    (gx,) = ag.grad(ag.sin(x), [x], create_graph=True)
    assert math.isclose(gx.data, math.cos(1.5), rel_tol=1e-15)


def test_grad_of_interior_nodes_and_of_the_output_itself():
    x = Variable(0.5)
    h = x * x
    y = ag.exp(h)
    gh, gy, gx = ag.grad(y, [h, y, x], create_graph=True)
    assert math.isclose(gh.data, math.exp(0.25), rel_tol=1e-15)
    assert gy.data == 1.0 and not gy.requires_grad
    assert math.isclose(gx.data, math.exp(0.25) * 1.0, rel_tol=1e-15)
    assert math.isclose(ag.grad(gh, [x])[0], math.exp(0.25) * 1.0, rel_tol=1e-15)


def test_recorded_reverse_pass_is_made_of_ordinary_ops():
    x = Variable(1.25)
    (g,) = ag.grad(ag.sin(x) * x, [x], create_graph=True)
    assert g.op in ("add", "mul") and g._prev
    assert ag.graph_size(g) >= 3
    assert "cos" in ag.to_dot(g)
    assert [v is x for v in ag.leaves(g)] == [True]


def test_only_what_the_output_reaches_takes_part():
    """As the first-order sweep (and PyTorch): an unrelated node with an inf
    local derivative never turns a gradient into nan."""
    x, w = Variable(2.0), Variable(0.0)
    unrelated = ag.log(w) * ag.sqrt(w)             # -inf * 0, never reached
    gx, gw = ag.grad(x * x, [x, w], create_graph=True)
    assert gx.data == 4.0 and gw.data == 0.0
    assert ag.grad(gx, [x, w]) == [2.0, 0.0]
    del unrelated


def test_zero_gradient_semantics_match_torch():
    # relu at 0 passes 0 whatever comes in; pow's exponent mask multiplies
    for fa, ft in [(lambda v: ag.relu(v) * ag.log(v), lambda t: torch.relu(t) * torch.log(t)),
                   (lambda v: v ** 2.0 * ag.sqrt(v), lambda t: torch.pow(t, 2.0) * torch.sqrt(t))]:
        x = Variable(0.0)
        t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
        (g,) = ag.grad(fa(x), [x], create_graph=True)
        (tg,) = torch.autograd.grad(ft(t), [t], create_graph=True)
        assert (math.isnan(g.data) and math.isnan(tg.item())) or g.data == tg.item()
        gg = ag.grad(g, [x])[0] if g.requires_grad else 0.0
        (tgg,) = torch.autograd.grad(tg, [t], allow_unused=True)
        tgg = 0.0 if tgg is None else tgg.item()
        assert (math.isnan(gg) and math.isnan(tgg)) or gg == tgg


def test_recorded_variables_show_the_pass_adjoints():
    x = Variable(2.0)
    h = x * 3.0
    y = h * h
    y.backward(create_graph=True)
    assert h.grad == 12.0 and y.grad == 1.0
    assert ag.grad(x.grad, [x]) == [18.0]


# ---------------------------------------------------------------------------
# custom Functions
# ---------------------------------------------------------------------------

class Cube(ag.Function):
    differentiable_backward = True

    def forward(self, x):
        return x ** 3

    def backward(self, gy):
        (x,) = self.inputs
        return gy * 3 * x ** 2


class FloatCube(ag.Function):
    def forward(self, x):
        return x ** 3

    def backward(self, gy):
        (x,) = self.inputs
        return gy * 3 * x ** 2


def test_function_with_differentiable_backward():
    x = Variable(1.5)
    (g,) = ag.grad(Cube()(x) * x, [x], create_graph=True)     # 4 x**3
    assert g.data == 4 * 1.5 ** 3
    assert ag.grad(g, [x]) == [12 * 1.5 ** 2]
    y = Cube()(x)
    y.backward(create_graph=True)
    assert isinstance(x.grad, Variable) and ag.grad(x.grad, [x]) == [9.0]
    # first-order passes give the Function floats, as always
    x.grad = None
    Cube()(x).backward()
    assert x.grad == 3 * 1.5 ** 2


def test_function_without_differentiable_backward_is_refused_by_name():
    x = Variable(1.5)
    x.grad = 1.0
    with pytest.raises(RuntimeError, match="FloatCube.backward.*differentiable_backward = True"):
        (FloatCube()(x) * x).backward(create_graph=True)
    assert x.grad == 1.0                           # untouched
    with pytest.raises(RuntimeError, match="FloatCube"):
        ag.hvp(lambda v: FloatCube()(v), 2.0, 1.0)
    # where no gradient flows into it, it is not called
    (g,) = ag.grad(FloatCube()(x) * 0.0 + x * x, [x], create_graph=True)
    assert g.data == 3.0


def test_function_backward_errors_leave_gradients_alone():
    class Broken(ag.Function):
        differentiable_backward = True

        def forward(self, x):
            return 2 * x

        def backward(self, gy):
            raise ValueError("boom")

    x = Variable(1.0)
    x.grad = 5.0
    with pytest.raises(ValueError, match="boom"):
        (Broken()(x) * x).backward(create_graph=True)
    assert x.grad == 5.0
    # the tape is usable afterwards
    (g,) = ag.grad(x * x, [x], create_graph=True)
    assert g.data == 2.0


# ---------------------------------------------------------------------------
# robustness: compaction, finalizers, threads, stale leaves
# ---------------------------------------------------------------------------

def _chain(x, n):
    y = x
    for i in range(n):
        y = ag.sin(y) * 0.5 + y * 0.25
    return y


def test_compaction_waits_while_a_pass_holds_node_indices():
    def run():
        previous = ag._core._set_compaction_floor(64)
        try:
            x = Variable(0.3)
            garbage = [x * 2.0 for _ in range(200)]
            del garbage
            y = _chain(x, 200)
            before = ag.tape_stats()["compactions"]
            (g,) = ag.grad(y, [x], create_graph=True)   # records far past the budget
            assert ag.tape_stats()["compactions"] == before
            (gg,) = ag.grad(g, [x])
            after_first = [g.data, gg]
            ag._core._compact()                         # allowed again once the pass ended
            (g2,) = ag.grad(y, [x], create_graph=True)
            return after_first, [g2.data, ag.grad(g2, [x])[0]]
        finally:
            ag._core._set_compaction_floor(previous)

    first, second = in_fresh_thread(run)
    assert first == second


def test_a_finalizer_may_record_during_a_pass():
    log = []

    class Noisy:
        def __init__(self, v):
            self.v = v

        def __del__(self):
            y = self.v * 2.0                       # a Variable in the create_graph pass:
            log.append((type(y).__name__, float(y)))   # recorded on this thread's tape

    class Dropper(ag.Function):
        differentiable_backward = True

        def forward(self, x):
            return x * x

        def backward(self, gy):
            (x,) = self.inputs
            holder = Noisy(x)                      # dies here, mid-pass
            del holder
            gc.collect()
            return gy * 2 * x

    def run():
        x = Variable(1.5)
        (g,) = ag.grad(Dropper()(x) * x, [x], create_graph=True)
        return g.data, ag.grad(g, [x])[0]

    assert in_fresh_thread(run) == (3 * 1.5 ** 2, 6 * 1.5)
    assert ("Variable", 3.0) in log


def test_variables_of_another_thread_are_refused():
    x = Variable(1.0)
    y = x * x
    with pytest.raises(RuntimeError, match="thread"):
        in_fresh_thread(lambda: ag.grad(y, [x], create_graph=True))


def test_stale_leaf_is_refused_as_by_backward():
    x = Variable(1.0)
    y = x * x
    x.data = 2.0
    with pytest.raises(RuntimeError, match="assigned a new value"):
        y.backward(create_graph=True)
    with pytest.raises(RuntimeError, match="assigned a new value"):
        ag.grad(y, [x], create_graph=True)


def test_constant_output_is_refused():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ag.grad(Variable(1.0, requires_grad=False), [Variable(1.0)], create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Variable(1.0, requires_grad=False).backward(create_graph=True)


def test_a_leaf_gradient_graph_is_released_when_cleared():
    def run():
        x = Variable(2.0)
        (x * x * x).backward(create_graph=True)
        live = ag.tape_stats()["live"]
        assert live >= 1                           # x.grad keeps its graph alive
        x.grad = None
        return ag.tape_stats()["live"], ag.tape_stats()["nodes"]

    assert in_fresh_thread(run) == (0, 0)


def test_deep_chains_do_not_recurse():
    def run():
        x = Variable(0.3)
        y = x
        for _ in range(10_000):
            y = ag.sin(y) * 0.5 + y * 0.5          # 40,000 nodes
        (g,) = ag.grad(y, [x], create_graph=True)
        (gg,) = ag.grad(g, [x])
        # the same chain in plain floats: y' and y'' by forward recurrences
        v, d, dd = 0.3, 1.0, 0.0
        for _ in range(10_000):
            v, d, dd = (math.sin(v) * 0.5 + v * 0.5, (math.cos(v) * 0.5 + 0.5) * d,
                        (math.cos(v) * 0.5 + 0.5) * dd - math.sin(v) * 0.5 * d * d)
        return g.data, gg, d, dd

    g, gg, d, dd = in_fresh_thread(run)
    assert math.isclose(g, d, rel_tol=1e-9) and math.isclose(gg, dd, rel_tol=1e-9, abs_tol=1e-300)


DELIVERY_CHILD = r"""
import json, autograd_c as ag
from autograd_c import Variable
ag._core._set_compaction_floor(64)
zs = [Variable(float(i)) for i in range(600)]
junk = [z * 2.0 for z in zs]               # 600 leaf entries before the xs' (arrays of 1,024)
xs = [Variable(1.0 + i / 10) for i in range(20)]
ag.sum([x * x for x in xs]).backward(create_graph=True)       # x.grad = 2x
del junk                                    # the zs' entries can go at a compaction
before = ag.tape_stats()["compactions"]
# + 3x**2 * 820: the pass records past the budget (pinned: no compaction), then
# the deliveries record grad + new, and the first compacts: 20 entries stay, the
# leaf arrays shrink, and entry numbers read before would point past them
ag.sum([x * x * x * (1.0 + j) for x in xs for j in range(40)]).backward(create_graph=True)
print(json.dumps({"compacted": ag.tape_stats()["compactions"] > before,
                  "rows": [(x.data, x.grad.data, ag.grad(x.grad, [x])[0]) for x in xs]}))
"""


def test_compaction_while_leaf_gradients_are_delivered():
    """Delivering gradients that have graphs records (leaf.grad + new): the
    tape may compact then, renumbering leaf entries and shrinking the leaf
    table; every gradient still reaches its own leaf (in a subprocess: a
    wrong entry number reads freed memory)."""
    result = run_python_json(DELIVERY_CHILD)
    assert result["compacted"]
    for v, g, gg in result["rows"]:
        assert math.isclose(g, 2 * v + 3 * v * v * 820, rel_tol=1e-14)
        assert math.isclose(gg, 2 + 6 * v * 820, rel_tol=1e-14)
