"""Issue 8, section 5: values must not depend on requires_grad.

One formula per op, for constants too: ``x ** c`` computed from two constants
goes through libm ``pow`` while the recorded path uses the torch-matching
rule of src/ops.h (``sqrt`` for 0.5, ``x*x*x`` for 3, ...), so
``(-inf) ** 0.5``, ``(-0.0) ** 0.5`` and ``x ** 3`` (last bit) differ between
``requires_grad=True`` and ``False``.  ``maximum``/``minimum`` of -0.0 and
0.0 swap their operands when one is a constant, so the sign of the zero
depends on which operand requires grad.  And ``d(x**z)/dz`` at ``x == 0,
z >= 0`` with a non-finite incoming gradient gives 0 where torch gives nan
(the adjoint rule skips the multiply).

Each test collects every point of its grid that disagrees and fails on the
first report; after the fix every form of an op gives the same bits.
"""
import itertools
import math
import struct

import pytest

import autograd_c as ag

INF, NAN = math.inf, math.nan
BASES = [-INF, -3.7, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.1, 2.0, 3.7, 1e155, INF, NAN]
EXPONENTS = [-INF, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 2.5, 0.3, 7.0, INF, NAN]


def bits(v):
    """Bitwise identity, with every nan equal."""
    return "nan" if v != v else struct.pack("<d", v)


def pow_forms(x, c):
    """x ** c in every form a user can write it: name -> value."""
    out = {}
    for rx in (True, False):
        out[f"V({x},rg={rx}) ** {c}"] = (ag.Variable(x, requires_grad=rx) ** c).data
        for rc in (True, False):
            out[f"V(rg={rx}) ** V(rg={rc})"] = (ag.Variable(x, requires_grad=rx)
                                               ** ag.Variable(c, requires_grad=rc)).data
    for rc in (True, False):
        out[f"{x} ** V(rg={rc})"] = (x ** ag.Variable(c, requires_grad=rc)).data
    with ag.no_grad():
        out["no_grad V ** c"] = (ag.Variable(x) ** c).data
        out["no_grad V ** V"] = (ag.Variable(x) ** ag.Variable(c)).data
    return out


def disagreements(forms_of, grid):
    bad = []
    for args in grid:
        forms = forms_of(*args)
        distinct = {}
        for name, v in forms.items():
            distinct.setdefault(bits(v), []).append(name)
        if len(distinct) > 1:
            bad.append((args, {repr(forms[names[0]]): names for names in distinct.values()}))
    return bad


def test_pow_value_does_not_depend_on_requires_grad():
    """x ** c gives the same bits whether x and c are Variables that require
    grad, constant Variables, numbers, or computed under no_grad."""
    bad = disagreements(pow_forms, itertools.product(BASES, EXPONENTS))
    assert not bad, f"{len(bad)} points disagree, e.g. {bad[:4]}"


def test_pow_recorded_value_matches_torch():
    """The recorded number-exponent form already matches torch's
    `tensor ** python_number` (the rule the other forms should adopt)."""
    torch = pytest.importorskip("torch")
    bad = []
    for x, c in itertools.product(BASES, EXPONENTS):
        got = (ag.Variable(x) ** c).data
        want = (torch.tensor(x, dtype=torch.float64) ** c).item()
        if bits(got) != bits(want) and not (got == 0.0 and want == 0.0):
            bad.append((x, c, got, want))
    assert not bad, bad[:5]


def minmax_forms(x, z):
    out = {}
    for name, f in (("maximum", ag.maximum), ("minimum", ag.minimum)):
        for rx, rz in itertools.product((True, False), repeat=2):
            out[f"{name}(V(rg={rx}), V(rg={rz}))"] = f(ag.Variable(x, requires_grad=rx),
                                                       ag.Variable(z, requires_grad=rz)).data
        out[f"{name}(V, number)"] = f(ag.Variable(x), z).data
        out[f"{name}(number, V)"] = f(x, ag.Variable(z)).data
    return out


def test_max_min_signed_zero_does_not_depend_on_requires_grad():
    """maximum(-0.0, 0.0) gives the same zero whichever operand requires
    grad or is a number (before the fix the constant path swapped the operands)."""
    def forms(x, z):
        f = minmax_forms(x, z)
        return {k: v for k, v in f.items() if k.startswith("maximum")}

    def forms_min(x, z):
        f = minmax_forms(x, z)
        return {k: v for k, v in f.items() if k.startswith("minimum")}

    grid = [(-0.0, 0.0), (0.0, -0.0), (1.0, 1.0), (NAN, 1.0), (1.0, NAN), (-INF, INF)]
    bad = disagreements(forms, grid) + disagreements(forms_min, grid)
    assert not bad, bad


# ---------------------------------------------------------------------------
# adjoints with a non-finite incoming gradient, against torch
# ---------------------------------------------------------------------------

SEEDS = [NAN, INF, -INF, 0.0, 1.0, -2.0]
POINTS = [(0.0, 2.0), (0.0, 0.0), (0.0, 0.5), (-0.0, 3.0), (2.0, 0.0), (0.0, -1.0), (3.0, 2.0),
          (-2.0, 3.0), (INF, 0.0), (1.0, INF)]


def same(a, b):
    if a != a or b != b:
        return a != a and b != b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def pow_grads(x, z, g, form):
    """(dx, dz) of x ** z with incoming gradient g, autograd_c and torch."""
    torch = pytest.importorskip("torch")
    t = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)  # noqa: E731
    ax, az, tx, tz = ag.Variable(x), ag.Variable(z), t(x), t(z)
    if form == "V**V":
        (ax ** az).backward(g)
        (tx ** tz).backward(torch.tensor(g, dtype=torch.float64))
        return (ax.grad, az.grad), (tx.grad.item(), tz.grad.item())
    if form == "V**c":
        (ax ** z).backward(g)
        (tx ** z).backward(torch.tensor(g, dtype=torch.float64))
        return (ax.grad,), (tx.grad.item(),)
    (x ** az).backward(g)                    # c ** V
    torch.pow(torch.tensor(x, dtype=torch.float64), tz).backward(torch.tensor(g, dtype=torch.float64))
    return (az.grad,), (tz.grad.item(),)


def pow_grad_mismatches(seeds):
    bad = []
    for (x, z), g, form in itertools.product(POINTS, seeds, ["V**V", "V**c", "c**V"]):
        got, want = pow_grads(x, z, g, form)
        if not all(same(a, b) for a, b in zip(got, want)):
            bad.append((form, x, z, g, got, want))
    return bad


def test_pow_adjoints_match_torch_for_finite_seeds():
    """With a finite incoming gradient pow's adjoints already match torch at
    these special points."""
    bad = pow_grad_mismatches([s for s in SEEDS if math.isfinite(s)])
    assert not bad, bad[:6]


def test_pow_adjoints_match_torch_for_non_finite_seeds():
    """d(x**z)/dz at x == 0, z >= 0 with a nan/inf incoming gradient is nan
    in torch (grad * 0); autograd_c returns 0 (and the same for 0 ** V)."""
    bad = pow_grad_mismatches([s for s in SEEDS if not math.isfinite(s)])
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:6]}"
