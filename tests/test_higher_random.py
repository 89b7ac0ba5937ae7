"""Higher-order derivatives of random graphs over every op, against torch.func and finite differences.

Hypothesis builds random expression DAGs with the generator of
test_finite_differences (2-4 inputs, up to ~14 nodes, every op in every
form, nodes reused, safe domains so the function is smooth near the point).
For each graph:

* ag.jvp, ag.vjp, ag.hvp, ag.hessian and ag.jacobian (both strategies) equal
  torch.func.jvp, grad and vjp, jvp(grad), hessian, and jacrev / jacfwd on the
  same program in float64, to 1e-10 of the largest number involved (values, gradients,
  second derivatives: a graph amplifies the ulp-level differences of libm
  results by its condition number, see test_finite_differences);
* the Hessian is symmetric to the last bit, and hvp equals H v;
* create_graph: ag.grad(..., create_graph=True), differentiated again with
  ag.grad, gives the same Hessian (two different code paths: recorded
  Variables against the C sweeps' dual numbers);
* every Hessian column matches a 4th-order central difference of autograd_c's
  own gradient (skipped where a kink or the softplus threshold is within the
  stencil, or the graph varies too fast for any step, as in
  test_finite_differences).

CI runs a fixed set of examples (derandomized); set AUTOGRAD_C_HIGHER_EXAMPLES
to run more, with random seeds, when changing the sweeps.
"""
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import autograd_c as ag
from autograd_c import Variable
from test_finite_differences import FD_STEPS, _Autograd, _Floats, _Torch, fd, programs, run

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.func imports jit

EXAMPLES = int(os.environ.get("AUTOGRAD_C_HIGHER_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize="AUTOGRAD_C_HIGHER_EXAMPLES" not in os.environ,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow])
REL = 1e-10


def functions(program, n_outputs=1):
    """The program as f(*inputs) for autograd_c and for torch; with several
    outputs, the last node and the latest interior nodes that depend on an
    input."""
    def f_ag(*xs):
        vals = run(program, list(xs), _Autograd())
        return vals[-1] if n_outputs == 1 else [vals[k] for k in picks(vals)]

    def f_t(*ts):
        vals = run(program, list(ts), _Torch())
        out = vals[-1] if n_outputs == 1 else [vals[k] for k in picks(vals)]
        return out if n_outputs == 1 else torch.stack([torch.as_tensor(v, dtype=torch.float64)
                                                       for v in out])

    def picks(vals):
        ks = [k for k in range(len(vals) - 1, -1, -1)
              if program[k][0] != "leaf"][:n_outputs]
        return ks + [len(vals) - 1] * (n_outputs - len(ks))

    return f_ag, f_t


def tensors(values):
    return tuple(torch.tensor(v, dtype=torch.float64) for v in values)


def agrees(a, b, scale):
    a, b = float(a), float(b)
    return abs(a - b) <= REL * max(scale, abs(b), 1.0)


def _is_differentiable(program, values):
    out = run(program, [Variable(v) for v in values], _Autograd())[-1]
    return isinstance(out, Variable) and out.requires_grad


def _fd_column(program, values, j, rel=1e-6):
    """d(gradient)/d x_j by finite differences of autograd_c's own gradient,
    or None where a kink is near or no step resolves it (see _fd_grads)."""
    def gradient(xs, branches):
        f = _Floats()
        run(program, xs, f)
        branches.append(tuple(f.branches))
        vs = [Variable(x) for x in xs]
        return ag.grad(run(program, vs, _Autograd())[-1], vs)

    vals = run(program, values, _Floats())
    if any(node[:2] == ("bin", "pow") and vals[node[3]] == 0.0 for node in program):
        # x ** z at z == 0 exactly: pow's mask (as torch's) makes d/dz of its
        # d/dx 0 there, while the gradient around the point is smooth
        return [None] * len(values)
    base = []
    gradient(values, base)
    cols = []
    for i in range(len(values)):
        seen = []
        ests = [fd(lambda xs: gradient(xs, seen)[i], values, j, h * max(1.0, abs(values[j])))
                for h in FD_STEPS]
        err, est = min((abs(a - b), b) for a, b in zip(ests, ests[1:]))
        ok = all(s == base[0] for s in seen) and math.isfinite(est) and err <= rel * max(1.0, abs(est))
        cols.append(est if ok else None)
    return cols


@SETTINGS
@given(programs(), st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4))
def test_random_graphs_against_torch_func(case, direction):
    program, values = case
    if not _is_differentiable(program, values):
        return
    n = len(values)
    v = direction[:n]
    f_ag, f_t = functions(program)
    args = tuple(range(n))
    x = tensors(values)

    value, jv = ag.jvp(f_ag, values, v)
    t_value, t_jv = torch.func.jvp(f_t, x, tensors(v))
    grad = torch.func.grad(f_t, argnums=args)(*x)
    grad = [g.item() for g in grad]
    t_hess = torch.func.hessian(f_t, argnums=args)(*x)
    t_hess = np.array([[t_hess[j][k].item() for k in range(n)] for j in range(n)])
    _, t_hv = torch.func.jvp(lambda *a: torch.stack(torch.func.grad(f_t, argnums=args)(*a)),
                             x, tensors(v))
    scale = max([abs(value), abs(t_jv.item())] + [abs(g) for g in grad]
                + list(np.abs(t_hess).ravel()))
    if not math.isfinite(scale):
        return
    assert agrees(value, t_value.item(), scale)
    assert agrees(jv, t_jv.item(), scale), (jv, t_jv.item(), program)

    _, vjp = ag.vjp(f_ag, values, 1.0)
    for j in range(n):
        assert agrees(vjp[j], grad[j], scale), (j, vjp[j], grad[j], program)

    # ag.hessian is symmetric to the last bit: where the two mixed partials
    # differ (by rounding, or by a mask at a point: pow at a zero exponent
    # gives d/dz of its d/dx as 0, in torch too) each pair is their mean
    hess = ag.hessian(f_ag, values)
    assert np.array_equal(hess, hess.T)
    sym = np.where(t_hess == t_hess.T, t_hess, 0.5 * t_hess + 0.5 * t_hess.T)
    for j in range(n):
        for k in range(n):
            assert agrees(hess[j, k], sym[j, k], scale), (j, k, hess, t_hess, program)

    hv_value, hv = ag.hvp(f_ag, values, v)
    assert hv_value == value
    for j in range(n):
        assert agrees(hv[j], t_hv[j].item(), scale), (j, hv, t_hv, program)
        if np.array_equal(sym, t_hess):
            assert agrees(hv[j], float(np.dot(hess[j], v)), scale)

    # create_graph: the gradient as Variables, differentiated again
    xs = [Variable(a) for a in values]
    gs = ag.grad(f_ag(*xs), xs, create_graph=True)
    for j, g in enumerate(gs):
        assert agrees(g.data, grad[j], scale)
        row = ag.grad(g, xs) if g.requires_grad else [0.0] * n
        for k in range(n):
            assert agrees(row[k], t_hess[j, k], scale), (j, k, row, t_hess, program)


@SETTINGS
@given(programs())
def test_random_graphs_jacobians(case):
    program, values = case
    if not _is_differentiable(program, values):
        return
    n = len(values)
    f_ag, f_t = functions(program, n_outputs=3)
    x = tensors(values)
    want = torch.func.jacrev(f_t, argnums=tuple(range(n)))(*x)
    want = np.array([[want[j][o].item() for j in range(n)] for o in range(3)])
    outs = f_t(*x)
    scale = max([1.0] + [abs(o.item()) for o in outs] + list(np.abs(want).ravel()))
    if not math.isfinite(scale):
        return
    fwd = torch.func.jacfwd(f_t, argnums=tuple(range(n)))(*x)
    fwd = np.array([[fwd[j][o].item() for j in range(n)] for o in range(3)])
    for strategy, oracle in (("reverse-mode", want), ("forward-mode", fwd)):
        got = ag.jacobian(f_ag, values, strategy=strategy)
        assert got.shape == (3, n)
        assert np.all(np.abs(got - oracle) <= REL * np.maximum(scale, np.abs(oracle))), \
            (strategy, got, oracle, program)
    w = [1.0, -2.0, 0.5]
    value, vjp = ag.vjp(f_ag, values, w)
    t_value, t_vjp_fn = torch.func.vjp(f_t, *x)
    t_vjp = [t.item() for t in t_vjp_fn(torch.tensor(w, dtype=torch.float64))]
    assert np.allclose(value, t_value.numpy(), rtol=REL, atol=REL * scale)
    assert np.allclose(vjp, t_vjp, rtol=0, atol=REL * scale * 4), (vjp, t_vjp, program)


@SETTINGS
@given(programs())
def test_random_hessians_against_finite_differences_of_the_gradient(case):
    program, values = case
    if not _is_differentiable(program, values):
        return
    f_ag, _ = functions(program)
    hess = ag.hessian(f_ag, values)
    for j in range(len(values)):
        for i, want in enumerate(_fd_column(program, values, j)):
            if want is not None:
                got = hess[i, j]
                assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (i, j, got, want, program)
