"""Second and third derivatives of every op at the edge points, against PyTorch float64.

For every op in every form (module function, operator, Variable/number on
either side) on the edge grid of test_vs_torch (0, -0.0, 1e-300, 1e300, the
softplus threshold, inf, nan ...):

* create_graph: every partial derivative up to third order, by
  ``ag.grad(..., create_graph=True)`` applied again and again, equals
  ``torch.autograd.grad(..., create_graph=True)`` applied the same way
  (the same relative tolerance as test_vs_torch, nan == nan, infinities
  exact);
* the C sweeps: ``ag.hessian`` (forward-over-reverse, dual numbers) equals
  the same second derivatives, and ``ag.hvp`` / ``ag.jvp`` agree with it and
  with ``torch.func.jvp``.

Where PyTorch's rule is a ``torch.where`` that evaluates both branches
(pow with a Variable exponent: pow_backward_self/pow_backward_exponent), its
double backward sends a zero gradient into the unselected branch and
multiplies it there by an inf (0 * inf = nan): at a zero base or an exponent
of 0, 1 or 2 torch's higher derivatives of ``x ** z`` can be nan where the
masked rule itself is finite.  autograd_c's rules select (ops.h: ``cond ?
0.0 : ...``), so the unselected branch is never differentiated; those points
are checked against the C sweeps and finite values instead (test
``test_pow_masks_select``).  The other deliberate differences, each tested
below: softplus exactly at its threshold (torch's first and second order
rules disagree there: ``x > 20`` against ``x < 20``), and mixed partials that
torch computes differently in the two orders (the Hessian is symmetrised).
"""
import itertools
import math
import operator

import pytest

import autograd_c as ag
from test_vs_torch import BINARY, GRID, UNARY, close, tconst, vid

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.func imports jit

INF, NAN = math.inf, math.nan


def torch_derivs(f, points, order):
    """{(j, k, ...): d^n f / dx_j dx_k ...} up to `order`, by repeated
    torch.autograd.grad(create_graph=True); 0 where nothing flows."""
    ts = [torch.tensor(float(p), dtype=torch.float64, requires_grad=True) for p in points]
    out = {}

    def walk(y, path):
        if len(path) == order:
            return
        if y.requires_grad:
            gs = torch.autograd.grad(y, ts, create_graph=True, allow_unused=True)
        else:
            gs = [None] * len(ts)
        for j, g in enumerate(gs):
            g = torch.zeros((), dtype=torch.float64) if g is None else g
            out[path + (j,)] = g.item()
            walk(g, path + (j,))

    walk(f(*ts), ())
    return out


def ag_derivs(f, points, order):
    """The same with ag.grad(..., create_graph=True)."""
    xs = [ag.Variable(float(p)) for p in points]
    out = {}

    def walk(y, path):
        if len(path) == order:
            return
        if isinstance(y, ag.Variable) and y.requires_grad:
            gs = ag.grad(y, xs, create_graph=True)
        else:
            gs = [ag.Variable(0.0, requires_grad=False)] * len(xs)
        for j, g in enumerate(gs):
            assert isinstance(g, ag.Variable)
            out[path + (j,)] = g.data
            walk(g, path + (j,))

    walk(f(*xs), ())
    return out


def symmetric_target(t, j, k):
    """What a symmetrised Hessian entry should be, given torch's two mixed partials."""
    a, b = t[(j, k)], t[(k, j)]
    if close(a, b):
        return a
    return a if a == b else 0.5 * a + 0.5 * b


def c_sweeps_agree(f, points, t, what):
    """ag.hessian equals torch's second derivatives; ag.hvp along each axis
    equals the Hessian's rows where the other inputs carry no tangent."""
    n = len(points)
    h = np.atleast_2d(ag.hessian(f, points if n > 1 else points[0]))
    bad = []
    for j in range(n):
        for k in range(n):
            want = symmetric_target(t, j, k)
            if not close(h[j, k], want):
                bad.append(f"{what}: hessian[{j},{k}] {h[j, k]!r} != torch {want!r}")
    assert np.array_equal(h, h.T, equal_nan=True), what
    if n == 1:
        value, hv = ag.hvp(f, points[0], 1.0)
        if not close(hv, h[0, 0]):
            bad.append(f"{what}: hvp {hv!r} != hessian {h[0, 0]!r}")
    return bad


# ---------------------------------------------------------------------------
# one-operand functions
# ---------------------------------------------------------------------------

def _unary_pairs():
    for name, tf in UNARY.items():
        yield pytest.param(getattr(ag, name), tf, name, id=name)
    yield pytest.param(operator.neg, torch.neg, "neg", id="neg")


@pytest.mark.parametrize("f, tf, name", list(_unary_pairs()))
def test_unary_to_third_order(f, tf, name):
    bad = []
    for x0 in GRID:
        t = torch_derivs(tf, [x0], 3)
        a = ag_derivs(f, [x0], 3)
        if name == "softplus" and x0 == 20.0:
            # torch's softplus double backward masks with x < 20 while its
            # backward takes the smooth branch at x == 20: the second
            # derivative of torch's own first derivative there is
            # sigmoid'(20), which autograd_c gives (torch: 0)
            s = 1.0 / (1.0 + math.exp(-20.0))
            assert close(a[(0, 0)], (1.0 - s) * s)
            assert close(ag.hessian(f, x0), (1.0 - s) * s)
            continue
        for path in t:
            if not close(a[path], t[path]):
                bad.append(f"{name}({vid(x0)}) d{len(path)}: {a[path]!r} != torch {t[path]!r}")
        bad += c_sweeps_agree(f, [x0], t, f"{name}({vid(x0)})")
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# two-operand ops, in each form
# ---------------------------------------------------------------------------

def _forms(name, a, b):
    f, t_vv, t_vn, t_nv = BINARY[name]
    if name == "pow":
        t_vv, t_vn, t_nv = torch.pow, torch.pow, torch.pow
    yield "vv", (lambda x, z: f(x, z)), (lambda x, z: t_vv(x, z)), [a, b]
    yield "vn", (lambda x: f(x, b)), (lambda x: t_vn(x, b)), [a]
    yield "nv", (lambda z: f(a, z)), (lambda z: t_nv(a, z)), [b]


def _where_leaks(name, form, a, b):
    """torch's where() rules of pow with a Variable exponent (module docstring)."""
    return name == "pow" and form != "vn" and (a == 0.0 or b in (0.0, 1.0, 2.0))


def _pow_kernel_differs(name, form, a, b):
    """torch's tensor ** tensor kernel calls pow(), ops.h's the scalar
    kernel (sqrt at 0.5 ...): their values differ at a base of -inf (see
    test_vs_torch), and so do derivatives at a base of -0.0."""
    return name == "pow" and form != "vn" and a in (-INF,) or (
        name == "pow" and form != "vn" and math.copysign(1.0, a) < 0 and a == 0.0)


@pytest.mark.parametrize("a", GRID, ids=lambda v: "a=" + vid(v))
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_to_third_order(name, a):
    bad = []
    for b in GRID:
        for form, f, tf, points in _forms(name, a, b):
            if _where_leaks(name, form, a, b) or _pow_kernel_differs(name, form, a, b):
                continue
            t = torch_derivs(tf, points, 3)
            got = ag_derivs(f, points, 3)
            what = f"{name}({vid(a)}, {vid(b)}) [{form}]"
            for path in t:
                if not close(got[path], t[path]):
                    bad.append(f"{what} d{path}: {got[path]!r} != torch {t[path]!r}")
            bad += c_sweeps_agree(f, points, t, what)
    assert not bad, "\n".join(bad)


def test_pow_masks_select():
    """Where torch's where() leaks nan (module docstring), autograd_c's masked
    rules give the selected branch's derivative, and the create_graph pass
    and the C sweeps agree wherever both are finite.  (Where they are not,
    a zero base with a negative exponent: forward-over-reverse meets the
    mask's selected 0 as a tangent, reverse-over-reverse as a gradient, and
    inf or nan come out in different places, as between torch.func.hessian
    and torch.autograd.grad.)"""
    for a, b in itertools.product(GRID, GRID):
        for form, f, tf, points in _forms("pow", a, b):
            if not _where_leaks("pow", form, a, b):
                continue
            got = ag_derivs(f, points, 2)
            h = np.atleast_2d(ag.hessian(f, points if len(points) > 1 else points[0]))
            for j in range(len(points)):
                for k in range(len(points)):
                    want = symmetric_target(got, j, k)
                    if math.isfinite(want) and math.isfinite(h[j, k]):
                        assert close(h[j, k], want), (a, b, form, j, k, h[j, k], want)
    # d/dz x**z and its derivatives are masked to 0 at x == 0, z >= 0
    x, z = ag.Variable(0.0), ag.Variable(2.0)
    dx, dz = ag.grad(x ** z, [x, z], create_graph=True)
    assert (dx.data, dz.data) == (0.0, 0.0)
    assert not dz.requires_grad              # a constant: nothing to differentiate
    # d2/dx2 x**1 is 0 everywhere, the inner x**0's mask
    assert ag.hessian(lambda x, z: x ** z, [0.0, 1.0])[0, 0] == 0.0
    assert ag.hessian(lambda x: x ** 1, 0.0) == 0.0


# ---------------------------------------------------------------------------
# forward mode against torch.func.jvp
# ---------------------------------------------------------------------------
# ag.jvp uses the adjoint columns with g := the tangent, so forward and
# reverse Jacobians are the same numbers.  torch's forward formulas are
# other expressions where they differ from its backward ones; at these
# points they round or overflow differently: div with a zero or overflowing
# denominator ((x' - z' y) / z against x'/z - z' (x/z)/z), an inf tangent
# through maximum/minimum's masks (torch: other' + (self' - other') * mask,
# 0 * inf = nan; autograd_c selects), and a nan operand of maximum/minimum
# (torch's forward rule takes the other operand's tangent, its backward
# gives both the gradient; autograd_c keeps the backward rule).

def _jvp_differs(name, form, a, b, ta, tb):
    if name == "div":
        z = b if form != "vn" else b
        return z == 0.0 or abs(z) < 1e-100 or abs(z) > 1e100 or math.isinf(z)
    if name in ("maximum", "minimum"):
        return math.isnan(a) or math.isnan(b) or math.isinf(ta) or math.isinf(tb)
    return _pow_kernel_differs(name, form, a, b)


def torch_jvp(f, points, tangents):
    """torch.func.jvp through torch's dual tensors (the same forward formulas,
    7x less overhead per call)."""
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        y = f(*[fwAD.make_dual(tconst(p), tconst(t)) for p, t in zip(points, tangents)])
        value, tangent = fwAD.unpack_dual(y)
        return value, (torch.zeros((), dtype=torch.float64) if tangent is None else tangent)


def test_torch_jvp_helper_is_torch_func_jvp():
    for f, points, tangents in [(torch.mul, (2.0, 3.0), (1.0, -1.0)), (torch.exp, (0.5,), (2.0,)),
                                (lambda x: torch.pow(x, 2.5), (1.5,), (1.0,))]:
        want = torch.func.jvp(f, tuple(tconst(p) for p in points),
                              tuple(tconst(t) for t in tangents))
        got = torch_jvp(f, points, tangents)
        assert [v.item() for v in got] == [v.item() for v in want]


def test_jvp_matches_torch_func():
    bad = []
    for name, tf in list(UNARY.items()) + [("neg", torch.neg)]:
        f = operator.neg if name == "neg" else getattr(ag, name)
        for x0, t0 in itertools.product(GRID, (-2.0, 0.0, INF)):
            y, want = torch_jvp(tf, (x0,), (t0,))
            value, got = ag.jvp(f, x0, t0)
            if not (close(value, y.item()) and close(got, want.item())):
                bad.append(f"jvp {name}({x0!r}; {t0!r}): {got!r} != torch {want.item()!r}")
    for name in BINARY:
        for a, b in itertools.product(GRID, GRID):
            for ta, tb in ((1.0, -3.0), (INF, 0.0)):     # nonzero, inf and 0 tangents
                for form, f, tf, points in _forms(name, a, b):
                    tans = {"vv": [ta, tb], "vn": [ta], "nv": [tb]}[form]
                    if _jvp_differs(name, form, a, b, ta, tb) or (form != "vv" and ta == INF):
                        continue          # (the inf tangent in one form is enough)
                    y, want = torch_jvp(tf, points, tans)
                    value, got = ag.jvp(f, points if len(points) > 1 else points[0],
                                        tans if len(tans) > 1 else tans[0])
                    if not (close(value, y.item()) and close(got, want.item())):
                        bad.append(f"jvp {name}({a!r}, {b!r}) [{form}] ({ta}, {tb}): "
                                   f"{got!r} != torch {want.item()!r}")
    assert not bad, "\n".join(bad[:20]) + f"\n({len(bad)} in all)"


@pytest.mark.parametrize("name", list(BINARY))
def test_forward_and_reverse_jacobians_of_an_op_are_the_same_numbers(name):
    """Everywhere on the grid, edge points included: one formula text.
    (Through a chain of ops the two modes meet a selected 0 in different
    orders -- forward mode multiplies it on, reverse mode selects after
    the product -- so 0 * inf can be nan in one and 0 in the other, as
    between torch.func.jacfwd and jacrev.)"""
    f = BINARY[name][0]
    for a, b in itertools.product(GRID, GRID):
        fwd = ag.jacobian(lambda x, z: [f(x, z), f(z, x), f(x, x), f(x, 1.5), f(1.5, z)],
                          [a, b], strategy="forward-mode")
        rev = ag.jacobian(lambda x, z: [f(x, z), f(z, x), f(x, x), f(x, 1.5), f(1.5, z)],
                          [a, b], strategy="reverse-mode")
        assert np.array_equal(fwd, rev, equal_nan=True), (name, a, b, fwd, rev)
