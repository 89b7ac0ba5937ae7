"""Second derivatives of compiled functions: f.hvp, f.hessian and their batched forms.

Oracles: torch.func float64 on the same program, and ag.hvp / ag.hessian on
a fresh recording (the tape's sweeps: another walker over the same ops.h
rules).  Random graphs come from test_finite_differences' generator (every
op in every form, shared nodes, sums and dots); the batched forms are
checked against single rows, per row and summed, on 1 and 2 threads.
Also: edge points (0, -0.0, inf, nan) against ag.hessian, symmetry to the
last bit, guards that flip in a batch, custom Functions, and the
functional API and autograd given compiled functions (issue 11's bug: a
compiled function called with the functional API's Variables returned a
number, so ag.hessian was silently 0).
"""
import math

import pytest
from hypothesis import given, strategies as st

import autograd_c as ag
from autograd_c import Variable
from test_finite_differences import programs, run, _Autograd
from test_higher_random import SETTINGS, _is_differentiable, agrees, functions, tensors

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.func imports jit


def torch_hessian(f_t, values):
    n = len(values)
    h = torch.func.hessian(f_t, argnums=tuple(range(n)))(*tensors(values))
    return np.array([[h[j][k].item() for k in range(n)] for j in range(n)])


def symmetric(h):
    return np.where(h == h.T, h, 0.5 * h + 0.5 * h.T)


# ---------------------------------------------------------------------------
# random graphs over every op
# ---------------------------------------------------------------------------

@SETTINGS
@given(programs(), st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4))
def test_random_graphs_against_torch_func_and_the_tape(case, direction):
    program, values = case
    if not _is_differentiable(program, values):
        return
    n = len(values)
    v = direction[:n]
    f_ag, f_t = functions(program)
    f = ag.compile(f_ag)
    t_hess = torch_hessian(f_t, values)
    x = tensors(values)
    _, t_hv = torch.func.jvp(lambda *a: torch.stack(torch.func.grad(f_t, argnums=tuple(range(n)))(*a)),
                             x, tensors(v))
    value = f(*values)
    scale = max([abs(value)] + list(np.abs(t_hess).ravel()))
    if not math.isfinite(scale):
        return

    hess = f.hessian(*values) if n > 1 else np.array([[f.hessian(*values)]])
    assert np.array_equal(hess, hess.T)                       # symmetric to the last bit
    tape = ag.hessian(f_ag, values)
    want = symmetric(t_hess)
    for j in range(n):
        for k in range(n):
            assert agrees(hess[j, k], want[j, k], scale), (j, k, hess, t_hess, program)
            assert agrees(hess[j, k], tape[j, k], scale), (j, k, hess, tape, program)

    hv_value, hv = f.hvp(*values, tuple(v))
    tape_value, tape_hv = ag.hvp(f_ag, values, v)
    assert agrees(hv_value, tape_value, scale)
    for j in range(n):
        assert agrees(hv[j], t_hv[j].item(), scale), (j, hv, t_hv, program)
        assert agrees(hv[j], tape_hv[j], scale), (j, hv, tape_hv, program)


@SETTINGS
@given(programs(), st.integers(0, 2 ** 32 - 1))
def test_random_graphs_batched(case, seed):
    """Each program as a per-row function of its first input, the others
    shared: per-row and summed Hessians and hvps, 1 and 2 threads, against
    single compiled rows and the tape."""
    program, values = case
    if not _is_differentiable(program, values):
        return
    n = len(values)
    f_ag, _ = functions(program)
    rng = np.random.default_rng(seed)
    rows = 5
    X = values[0] + rng.uniform(-0.05, 0.05, rows)       # near the point: inside the domains
    shared = values[1:]
    f = ag.compile(lambda x, *p: f_ag(x, *p))
    axes = (0,) + (None,) * (n - 1)
    singles = [f.hessian(float(x), *shared) for x in X]
    singles = [np.atleast_2d(h) for h in singles]
    if not all(np.all(np.isfinite(h)) for h in singles):
        return
    scale = max(1.0, max(float(np.abs(h).max()) for h in singles))
    for threads in (1, 2):
        fb = f.vmap(axes, threads=threads)
        per_row = fb.hessian(X, *shared)
        assert per_row.shape == (rows, n, n)
        for r in range(rows):
            assert np.array_equal(per_row[r], per_row[r].T)
            tape = np.atleast_2d(ag.hessian(f_ag, [float(X[r])] + list(shared)))
            assert np.allclose(per_row[r], singles[r], rtol=1e-12, atol=1e-12 * scale)
            assert np.allclose(per_row[r], tape, rtol=1e-10, atol=1e-10 * scale)
        if n > 1:
            summed = fb.hessian(X, *shared, reduce="sum")
            assert np.array_equal(summed, summed.T)
            want = sum(h[1:, 1:] for h in singles)
            assert np.allclose(summed, want, rtol=1e-12, atol=1e-12 * scale * rows)
            mean = fb.hessian(X, *shared, reduce="mean")
            assert np.allclose(mean, want / rows, rtol=1e-12, atol=1e-12 * scale)
        vx = rng.uniform(-1, 1, rows)
        vp = tuple(rng.uniform(-1, 1, n - 1))
        vals, hvs = fb.hvp(X, *shared, (vx,) + vp)
        for r in range(rows):
            full = np.concatenate([[vx[r]], vp])
            got = np.array([hvs[0][r]] + [hvs[k][r] for k in range(1, n)])
            assert np.allclose(got, singles[r] @ full, rtol=1e-10, atol=1e-10 * scale * n)
            assert vals[r] == f(float(X[r]), *shared)
        if n > 1:
            total, hv_sum = fb.hvp(X, *shared, (None,) + vp, reduce="sum")
            assert hv_sum[0] is None
            want = sum(h[1:, 1:] @ np.array(vp) for h in singles)
            assert np.allclose([hv_sum[k] for k in range(1, n)], want, rtol=1e-10,
                               atol=1e-10 * scale * rows * n)
            assert total == pytest.approx(sum(vals), rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------
# a per-sample function through every opcode group
# ---------------------------------------------------------------------------

def every_op(p, x):
    a, b, c, d = p
    u = ag.exp(a * x * 0.3) + ag.log1p(b * b) + ag.sqrt(ag.abs(a) + 1) - ag.sin(b) * ag.cos(x)
    u = u + ag.tanh(a - x) * ag.sigmoid(b) + ag.atan(a / (1 + b * b)) + ag.softplus(c) + ag.erf(b)
    u = u + ag.relu(a - 0.1) + ag.maximum(a, x) - ag.minimum(c, 0.25) + 2 ** (a * 0.1) + (b * b + 1) ** c
    u = u + ag.expm1(c * 0.01) / (2 - x) + ag.tan(d * 0.1) + ag.log(b * b + 2) * 3 - 1 / (d * d + 1)
    t = a * d                                      # a shared node, used many times
    u = u + t * t + ag.sin(t) * t - t / (1 + t * t) + ag.maximum(0.5, d) + ag.minimum(d, x)
    return u + ag.sum([a, b, t]) * x + ag.dot([a, b, c], [x, d, t]) + (c - 3.0) ** 2 + 4.0 / (b - 3)


def every_op_torch(p, x):
    a, b, c, d = p
    F = torch.nn.functional
    u = torch.exp(a * x * 0.3) + torch.log1p(b * b) + torch.sqrt(torch.abs(a) + 1) - torch.sin(b) * torch.cos(x)
    u = u + torch.tanh(a - x) * torch.sigmoid(b) + torch.atan(a / (1 + b * b)) + F.softplus(c) + torch.erf(b)
    u = u + torch.relu(a - 0.1) + torch.maximum(a, x) - torch.minimum(c, torch.tensor(0.25, dtype=torch.float64))
    u = u + torch.pow(2, a * 0.1) + (b * b + 1) ** c
    u = u + torch.expm1(c * 0.01) / (2 - x) + torch.tan(d * 0.1) + torch.log(b * b + 2) * 3 - 1 / (d * d + 1)
    t = a * d
    u = u + t * t + torch.sin(t) * t - t / (1 + t * t) + torch.maximum(torch.tensor(0.5, dtype=torch.float64), d)
    u = u + torch.minimum(d, x)
    return u + (a + b + t) * x + (a * x + b * d + c * t) + (c - 3.0) ** 2 + 4.0 / (b - 3)


P0 = [0.7, -0.4, 0.9, 1.3]
X0 = np.array([0.35, -0.2, 0.9, 0.05, -0.6, 0.45, 0.15])


def torch_row_hessian(p, x):
    h = torch.func.hessian(lambda q, xx: every_op_torch(q, xx), argnums=(0, 1))(
        torch.tensor(p, dtype=torch.float64), torch.tensor(x, dtype=torch.float64))
    top = torch.cat([h[0][0], h[0][1].reshape(4, 1)], 1)
    bottom = torch.cat([h[1][0].reshape(1, 4), h[1][1].reshape(1, 1)], 1)
    return torch.cat([top, bottom], 0).numpy()


@pytest.mark.parametrize("threads", [1, 2])
def test_every_op_batched_against_torch_func(threads):
    f = ag.compile(every_op)
    fb = f.vmap((None, 0), threads=threads)
    per_row = fb.hessian(P0, X0)
    assert per_row.shape == (len(X0), 5, 5)
    want = [symmetric(torch_row_hessian(P0, x)) for x in X0]
    for r, x in enumerate(X0):
        assert np.array_equal(per_row[r], per_row[r].T)
        assert np.allclose(per_row[r], want[r], rtol=1e-10, atol=1e-10)
        assert np.array_equal(per_row[r], f.hessian(P0, float(x)))      # one row: the same sweeps
        tape = ag.hessian(lambda a, b, c, d, xx: every_op([a, b, c, d], xx), P0 + [float(x)])
        assert np.allclose(per_row[r], tape, rtol=1e-12, atol=1e-12)
    for reduce, scale in (("sum", 1.0), ("mean", 1.0 / len(X0))):
        h = fb.hessian(P0, X0, reduce=reduce)
        assert h.shape == (4, 4) and np.array_equal(h, h.T)
        assert np.allclose(h, scale * sum(w[:4, :4] for w in want), rtol=1e-10, atol=1e-10)
    v = [0.3, -1.0, 0.5, 2.0]
    vx = np.linspace(-1, 1, len(X0))
    values, (hp, hx) = fb.hvp(P0, X0, (v, vx))
    full = [np.concatenate([v, [vx[r]]]) for r in range(len(X0))]
    assert hp.shape == (len(X0), 4) and hx.shape == (len(X0),)
    for r in range(len(X0)):
        got = np.concatenate([hp[r], [hx[r]]])
        assert np.allclose(got, want[r] @ full[r], rtol=1e-10, atol=1e-10)
        assert values[r] == f(P0, float(X0[r]))
    total, (hp_sum, none) = fb.hvp(P0, X0, (v, None), reduce="mean")
    assert none is None
    assert np.allclose(hp_sum, sum(w[:4, :4] for w in want) @ v / len(X0), rtol=1e-10, atol=1e-10)
    assert total == pytest.approx(float(np.mean(values)), rel=1e-13)


def test_threads_give_the_same_rows_and_symmetric_sums():
    f = ag.compile(every_op)
    X = np.linspace(-0.9, 0.9, 1001)
    one, two = f.vmap((None, 0), threads=1), f.vmap((None, 0), threads=2)
    assert np.array_equal(one.hessian(P0, X), two.hessian(P0, X))
    s1, s2 = one.hessian(P0, X, reduce="sum"), two.hessian(P0, X, reduce="sum")
    assert np.array_equal(s2, s2.T) and np.allclose(s1, s2, rtol=1e-13)
    _, a = one.hvp(P0, X, ([1.0, 0, 0, -1], None), reduce="sum")
    _, b = two.hvp(P0, X, ([1.0, 0, 0, -1], None), reduce="sum")
    assert np.allclose(a[0], b[0], rtol=1e-13)


# ---------------------------------------------------------------------------
# edge points: the same numbers as the tape's ag.hessian, nan and inf included
# ---------------------------------------------------------------------------

EDGE_FUNCTIONS = [
    lambda x, y: ag.sqrt(x) * y,
    lambda x, y: ag.relu(x) * y + ag.abs(y) * x,
    lambda x, y: x ** 2 * y ** 3 + ag.exp(x * y),
    lambda x, y: ag.maximum(x, y) * ag.minimum(x, y),
    lambda x, y: x ** y,
    lambda x, y: ag.log(x) + 1 / y,
    lambda x, y: ag.softplus(x) * ag.sigmoid(y) + ag.tanh(x * y),
    lambda x, y: (x * y) / (x + y),
    lambda x, y: 2.0 ** x + y ** 0.5,
]
EDGE_POINTS = [0.0, -0.0, 1.0, -1.5, math.inf, -math.inf, math.nan, 20.0]


@pytest.mark.parametrize("k", range(len(EDGE_FUNCTIONS)))
def test_edge_points_match_the_tape(k):
    fn = EDGE_FUNCTIONS[k]
    f = ag.compile(fn)
    pts = [(x, y) for x in EDGE_POINTS for y in EDGE_POINTS]
    X = np.array([p[0] for p in pts])
    Y = np.array([p[1] for p in pts])
    per_row = f.vmap((0, 0)).hessian(X, Y)
    for r, (x, y) in enumerate(pts):
        want = ag.hessian(fn, [x, y])
        got = f.hessian(x, y)
        assert np.array_equal(got, want, equal_nan=True), (x, y, got, want)
        assert np.array_equal(per_row[r], want, equal_nan=True), (x, y, per_row[r], want)
        _, hv = f.hvp(x, y, (1.0, -0.5))
        assert np.array_equal(np.array(hv), ag.hvp(fn, [x, y], [1.0, -0.5])[1], equal_nan=True)


def test_one_number_argument_and_an_output_that_is_an_input():
    f = ag.compile(lambda x: x ** 3)
    assert f.hessian(2.0) == 12.0 and f.hvp(2.0, 0.5) == (8.0, (6.0,))   # as value_and_grad
    g = ag.compile(lambda x, y: x)
    assert np.array_equal(g.hessian(1.0, 2.0), np.zeros((2, 2)))
    assert g.hvp(1.0, 2.0, (1.0, 1.0)) == (1.0, (0.0, 0.0))
    c = ag.compile(lambda x: x * 0 + 3.0)
    assert c.hessian(1.0) == 0.0


# ---------------------------------------------------------------------------
# guards, custom Functions, has_aux, errors
# ---------------------------------------------------------------------------

def test_rows_that_flip_a_guard_are_retraced_or_raise():
    def fn(p, x):
        if x > 0:
            return p[0] * p[0] * x ** 3 + p[1] * x
        return ag.exp(p[0] * x) * p[1]

    f = ag.compile(fn)
    X = np.array([0.5, 1.0, -0.5, -1.0, 2.0])
    P = [0.3, 1.2]
    per_row = f.vmap((None, 0)).hessian(P, X)
    for r, x in enumerate(X):
        assert np.allclose(per_row[r], ag.hessian(lambda a, b, xx: fn([a, b], xx), P + [float(x)]),
                           rtol=1e-13, atol=1e-13)
    assert f.traces == 2
    summed = f.vmap((None, 0), threads=2).hessian(P, X, reduce="sum")
    assert np.allclose(summed, per_row[:, :2, :2].sum(0), rtol=1e-13)
    strict = ag.compile(fn, retrace=False)
    strict.hessian(P, 1.0)
    with pytest.raises(ag.GuardError) as e:
        strict.vmap((None, 0)).hessian(P, X)
    assert e.value.row == 2
    with pytest.raises(ag.GuardError):
        strict.hvp(P, -1.0, ([1.0, 0.0], 1.0))


class Cube(ag.Function):
    def forward(self, x):
        return x ** 3

    def backward(self, gy):
        x, = self.inputs
        return 3 * x * x * gy


def test_custom_functions_raise_naming_the_function_where_second_order_meets_them():
    f = ag.compile(lambda x, y: Cube()(x) * y)
    with pytest.raises(NotImplementedError, match="Cube"):
        f.hessian(2.0, 3.0)
    with pytest.raises(NotImplementedError, match="Cube"):
        f.vmap((0, None), threads=2).hvp(np.array([1.0, 2.0]), 3.0, (None, 1.0), reduce="sum")
    # no tangent meets it: first order through its backward hook is enough
    g = ag.compile(lambda x, y: Cube()(x) + y * y)
    assert np.array_equal(g.vmap((0, None)).hessian(np.array([1.0, 2.0]), 3.0, reduce="sum"), [[4.0]])


def test_has_aux_and_vector_outputs():
    f = ag.compile(lambda x, y: (x * x * y, x + y), has_aux=True)
    (value, aux), hv = f.hvp(1.0, 2.0, (1.0, 0.0))
    assert (value, aux, hv) == (2.0, 3.0, (4.0, 2.0))
    (values, auxes), hvs = f.vmap((0, None)).hvp(np.array([1.0, 2.0]), 2.0, (np.ones(2), 0.0))
    assert list(values) == [2.0, 8.0] and list(auxes) == [3.0, 4.0] and list(hvs[0]) == [4.0, 4.0]
    v = ag.compile(lambda x, y: [x * y, x])
    with pytest.raises(TypeError, match="one output"):
        v.hessian(1.0, 2.0)


def test_bad_tangents_get_clear_errors():
    f = ag.compile(lambda p, x: p[0] * p[1] * x)
    f(np.ones(2), 1.0)
    with pytest.raises(TypeError, match="f.hvp"):
        f.hvp()
    with pytest.raises(TypeError, match="one entry per argument"):
        f.hvp([1.0, 2.0], 1.0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"v\[0\] has shape"):
        f.hvp([1.0, 2.0], 1.0, ([1.0, 2.0, 3.0], 1.0))
    with pytest.raises(ValueError, match="rows first"):
        f.vmap((None, 0)).hvp([1.0, 2.0], np.ones(3), ([1.0, 0.0], 1.0))
    with pytest.raises(ValueError, match="shared arguments"):
        f.vmap((0, 0)).hessian(np.ones((3, 2)), np.ones(3), reduce="sum")
    with pytest.raises(TypeError, match="real numbers"):
        f.hvp([1.0, 2.0], 1.0, (np.array([1j, 0]), 1.0))
    raw = np.zeros(3 * 8 + 1, dtype=np.uint8)[1:].view(np.float64)     # at an odd address
    raw[:] = [0.5, -1.0, 2.0]
    want = f.vmap((None, 0)).hvp([1.0, 2.0], np.ones(3), ([0.0, 0.0], raw.copy()))[1][0]
    assert np.array_equal(f.vmap((None, 0)).hvp([1.0, 2.0], np.ones(3), ([0.0, 0.0], raw))[1][0], want)
    with pytest.raises(ValueError, match="reduce"):
        f.vmap((None, 0)).hessian([1.0, 2.0], np.ones(3), reduce="max")


# ---------------------------------------------------------------------------
# compiled functions given to the functional API and to autograd
# ---------------------------------------------------------------------------

def test_functional_api_on_compiled_functions_is_not_silently_zero():
    f = ag.compile(lambda a, b: a * a * b)
    assert np.array_equal(ag.hessian(f, [1.0, 2.0]), [[4.0, 2.0], [2.0, 0.0]])
    assert ag.hvp(f, [1.0, 2.0], [1.0, 0.0])[1].tolist() == [4.0, 2.0]
    assert ag.jvp(f, [1.0, 2.0], [1.0, 1.0]) == (2.0, 5.0)
    assert ag.vjp(f, [1.0, 2.0])[1].tolist() == [4.0, 1.0]
    assert ag.jacobian(f, [1.0, 2.0]).tolist() == [4.0, 1.0]
    x, w = Variable(2.0), Variable(3.0)
    g = ag.compile_graph(x * x * w + ag.exp(x), [x, w])
    want = ag.hessian(lambda a, b: a * a * b + ag.exp(a), [1.0, 2.0])
    assert np.allclose(ag.hessian(g, [1.0, 2.0]), want, rtol=1e-15)
    assert np.allclose(ag.hvp(g, [1.0, 2.0], [0.5, 1.0])[1], want @ [0.5, 1.0], rtol=1e-15)
    assert np.allclose(ag.jvp(g, [1.0, 2.0], [1.0, 1.0])[1], math.e + 4 + 1, rtol=1e-15)
    assert np.allclose(ag.vjp(g, [1.0, 2.0])[1], [4 + math.e, 1.0], rtol=1e-15)
    cube = ag.compile_graph(x ** 3, [x])
    assert ag.hessian(cube, 2.0) == 12.0 and ag.hvp(cube, 2.0) == (8.0, 12.0)
    several = ag.compile_graph([x * w, x + w], [x, w])
    assert ag.jacobian(several, [1.0, 2.0]).tolist() == [[2.0, 1.0], [1.0, 1.0]]


def test_compiled_functions_called_with_variables_record_or_raise():
    f = ag.compile(lambda a, b: a * a * b)
    f(1.0, 2.0)                                      # traced and replayed
    y = Variable(1.5)
    z = f(y, 2.0) * y                                # a graph through f, not a number
    z.backward()
    assert y.grad == 3 * 1.5 ** 2 * 2
    (g,) = ag.grad(f(y, 2.0), [y], create_graph=True)
    assert ag.grad(g, [y])[0] == 4.0
    with ag.no_grad():
        assert f(y, 2.0) == 4.5                      # no graph wanted: the replay's number
    assert f(Variable(1.5, requires_grad=False), 2.0) == 4.5
    x = Variable(2.0)
    graph = ag.compile_graph(x * x, [x])
    with pytest.raises(TypeError, match="silently"):
        graph(y)
    assert graph(3.0) == 9.0
    with pytest.raises(TypeError, match="silently"):
        f.vmap((None, 0))(y, np.ones(2))


class Loud(ag.Function):
    def forward(self, x):
        return 2.0 * x

    def backward(self, gy):
        raise ZeroDivisionError("from Loud.backward")


def test_a_hook_that_raises_comes_out_and_the_function_stays_usable():
    f = ag.compile(lambda x, y: Loud()(x) + y * y)
    with pytest.raises(ZeroDivisionError, match="Loud.backward"):
        f.vmap((0, None), threads=2).hessian(np.arange(40.0), 3.0)      # first order meets it
    with pytest.raises(ZeroDivisionError, match="Loud.backward"):
        f.hvp(1.0, 3.0, (None, 1.0))
    g = ag.compile(lambda x, y: x * y * y)
    assert g.vmap((0, None), threads=2).hessian(np.arange(40.0), 3.0, reduce="sum").tolist() == [[1560.0]]   # sum of 2x


def test_ctrl_c_interrupts_a_long_hessian(tmp_path):
    """Within one row too: a Hessian of 3,000 inputs over 60,000 instructions
    (several seconds) stops within a second of SIGINT."""
    import subprocess
    import sys
    script = tmp_path / "interrupt.py"
    script.write_text(
        "import os, signal, threading, time\n"
        "import numpy as np, autograd_c as ag\n"
        "n = 3000\n"
        "f = ag.compile(lambda x: ag.sum([ag.tanh(x[k % n] * x[(k * 7 + 1) % n] + k * 1e-3)\n"
        "                                 for k in range(20000)]))\n"
        "x = np.linspace(-1, 1, n)\n"
        "f(x)\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        "    f.hessian(x)\n"
        "    print('finished', time.perf_counter() - t0)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', time.perf_counter() - t0)\n"
        "print(f.hvp(x, np.ones(n))[1][0].shape)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split("\n")[:2]
    assert first.startswith("interrupted"), done.stdout       # before the work finished
    assert second == "(3000,)"
