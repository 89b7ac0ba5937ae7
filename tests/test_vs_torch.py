"""Every op of autograd_c against PyTorch float64: forward values and gradients.

PyTorch (float64, CPU) is the oracle for values *and* for the edge-case
policy (0, -0.0, +-inf, nan, ties, points where a derivative is infinite).
Each test builds the same expression twice -- once with autograd_c
Variables, once with float64 tensors -- and compares the output and the
gradient with respect to every Variable input.

Tolerance (see close()): relative 1e-12 of the torch value, down to the
smallest normal double.  Both sides evaluate every op with one libm call or
one correctly rounded IEEE operation on the same inputs, so they agree to a
few ulps *relative to the result*, also for results near 0 (sin(1e-300),
exp(-800) = 0 exactly, 1e-300 * 2.5 ...).  The common alternative
1e-12 * max(1, |b|) is an absolute 1e-12 below 1, under which 0, 1e-300 and
-1e-300 would all be "equal" and a third of the edge grid would be checked
for nothing.  Only subnormal results (|b| < 2.2e-308, which carry fewer
significant bits) get an absolute allowance, 1e-12 * DBL_MIN.  The sign of
a zero is not compared: torch itself is not consistent about it (a leaf's
first gradient of -0.0 stays -0.0 in torch, 0.0 + -0.0 = 0.0 in
autograd_c's accumulator).  Where the two sides add many terms in different
orders (sum, dot) the tolerance is relative to the sum of |terms|, which is
what the rounding error scales with.

Deliberate choices of the torch counterpart (documented where they matter):
* `c / x` for a number c is compared with torch.div(tensor(c), x).  Python's
  `c / tensor` in torch is `x.reciprocal() * c`, which rounds differently and
  overflows where c / x does not (1e-300 / x at x = 1e-300 gives a gradient
  of -inf in torch, -1e300 here): autograd_c deliberately records a true
  division.
* Every power (`x ** c`, `c ** x`, `x ** z`) has ONE value formula in
  autograd_c, torch's scalar-exponent kernel (sqrt for 0.5, 1/sqrt for -0.5,
  x*x for 2 ..., ops.h ac_powc), so that requires_grad never changes a value.
  `x ** c` is compared with torch.pow(x, c) for a Python scalar c; the forms
  with a Variable exponent with that kernel's value and torch's
  derivatives.yaml rules for pow (torch's tensor ** tensor kernel calls
  pow() instead, which differs at -0.0 and -inf).
* maximum/minimum with a number compare with torch.maximum(x, tensor(c)).
"""
import functools
import math
import operator

import pytest

import autograd_c as ag
from autograd_c import Variable

torch = pytest.importorskip("torch")
F = torch.nn.functional

INF = math.inf
NAN = math.nan
REL = 1e-12
DBL_MIN = 2.2250738585072014e-308


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def close(a, b, rel=REL, scale=0.0):
    """a (autograd_c) equals b (torch) up to rounding.

    nan == nan; infinities must be equal with equal sign; otherwise
    |a - b| <= rel * max(|b|, scale, DBL_MIN).  `scale` is for results of
    long sums (pass the sum of |terms|).
    """
    a, b = float(a), float(b)
    if math.isnan(b) or math.isnan(a):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(b) or math.isinf(a):
        return a == b
    return abs(a - b) <= rel * max(abs(b), scale, DBL_MIN)


def tvar(v):
    """A float64 torch leaf that requires grad."""
    return torch.tensor(float(v), dtype=torch.float64, requires_grad=True)


def tconst(v):
    return torch.tensor(float(v), dtype=torch.float64)


def tgrad(t):
    """torch leaf gradient as a float; None (never reached) is 0.0, as in autograd_c."""
    return 0.0 if t.grad is None else t.grad.item()


def vid(v):
    """Readable pytest id for a grid value."""
    if isinstance(v, float) and v == 0.0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return repr(v)


def assert_matches(what, y, ty, leaves, tleaves, ag_grads=None):
    """Compare the output value and the gradient of every leaf."""
    assert close(y.data, ty.item()), f"{what}: value {y.data!r} != torch {ty.item()!r}"
    grads = [x.grad for x in leaves] if ag_grads is None else ag_grads
    for k, (g, t) in enumerate(zip(grads, tleaves)):
        assert close(g, tgrad(t)), f"{what}: grad[{k}] {g!r} != torch {tgrad(t)!r}"


# The edge grid, for every op: unary functions on each value, binary ops on
# every ordered pair (16 * 16), in each form.
GRID = [0.0, -0.0, 1.0, -1.0, 2.0, -2.5, 0.5, 1e-300, -1e-300, 1e300, 20.0, 21.0, -800.0,
        INF, -INF, NAN]


# ---------------------------------------------------------------------------
# unary functions, as module functions and as methods
# ---------------------------------------------------------------------------

def _softplus(t):
    return F.softplus(t, beta=1, threshold=20)


UNARY = {  # name -> torch equivalent
    "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
    "sqrt": torch.sqrt, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "atan": torch.atan, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
    "softplus": _softplus, "erf": torch.erf, "abs": torch.abs,
}


def _unary_forms():
    for name, tf in UNARY.items():
        yield pytest.param(getattr(ag, name), tf, id=f"{name}-func")
        yield pytest.param(operator.methodcaller(name), tf, id=f"{name}-method")
    yield pytest.param(abs, torch.abs, id="abs-builtin")
    yield pytest.param(operator.neg, torch.neg, id="neg-operator")


# No exclusions: every function is compared on the whole grid, including
# points outside its domain (log(-1), sqrt(-inf) -> nan), poles (log(0) ->
# -inf with gradient inf), overflow (exp(1e300)), underflow (exp(-800)),
# softplus on both sides of its threshold (20, 21) and nan.
@pytest.mark.parametrize("x0", GRID, ids=vid)
@pytest.mark.parametrize("f, tf", list(_unary_forms()))
def test_unary(f, tf, x0):
    _one_leaf_matches("unary", f, tf, x0)


def _one_leaf_matches(label, f, tf, x0):
    """f on a leaf at x0: value and gradient equal tf on a torch leaf."""
    x = Variable(x0)
    y = f(x)
    y.backward()
    t = tvar(x0)
    ty = tf(t)
    ty.backward()
    assert_matches(label, y, ty, [x], [t])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_on_numbers_gives_constant(name):
    # module functions accept plain numbers and give a constant with torch's value
    for x0 in (0.5, -2.5, 21.0):
        y = getattr(ag, name)(x0)
        assert isinstance(y, Variable) and not y.requires_grad
        assert close(y.data, UNARY[name](tconst(x0)).item())


# ---------------------------------------------------------------------------
# binary operators and maximum / minimum
# ---------------------------------------------------------------------------

BINARY = {  # name -> (autograd_c, torch Variable-Variable, torch Variable-number, torch number-Variable)
    "add": (operator.add, torch.add, lambda t, c: t + c, lambda c, t: c + t),
    "sub": (operator.sub, torch.sub, lambda t, c: t - c, lambda c, t: c - t),
    "mul": (operator.mul, torch.mul, lambda t, c: t * c, lambda c, t: c * t),
    "div": (operator.truediv, torch.div, lambda t, c: t / c,
            lambda c, t: torch.div(tconst(c), t)),      # not c / t: see module docstring
    "pow": (operator.pow, torch.pow, torch.pow, torch.pow),
    "maximum": (ag.maximum, torch.maximum, lambda t, c: torch.maximum(t, tconst(c)),
                lambda c, t: torch.maximum(tconst(c), t)),
    "minimum": (ag.minimum, torch.minimum, lambda t, c: torch.minimum(t, tconst(c)),
                lambda c, t: torch.minimum(tconst(c), t)),
}

# x ** c records a constant-exponent node: its value and its gradient both
# follow torch's scalar-exponent kernels (ops.h ac_powc: sqrt, rsqrt,
# reciprocal, products), which differ from pow() at -inf and -0.0.


def _torch_pow(form, a, b):
    """Value and gradients of a ** b as autograd_c defines pow (module
    docstring), computed with torch: the scalar-exponent kernel's value,
    its gradient for the base, and derivatives.yaml's rule for the exponent
    (0 where base == 0 and exponent >= 0, else value * log(base))."""
    tb = tvar(a)
    value = torch.pow(tb, float(b))
    value.backward()
    d_exponent = torch.where(torch.tensor((a == 0) & (b >= 0)), tconst(0.0),
                             value.detach() * torch.log(tconst(a))).item()
    if form == "vv":
        return [value.item(), tgrad(tb), d_exponent]
    return [value.item(), d_exponent]


def _binary_mismatches(name, form, a, b):
    """'' if autograd_c matches torch on (a, b), else a description."""
    f, t_vv, t_vn, t_nv = BINARY[name]
    if name == "pow" and form != "vn":
        xa, xb = Variable(a), Variable(b)
        y = xa ** xb if form == "vv" else a ** xb
        y.backward()
        got = [y.data, xa.grad, xb.grad] if form == "vv" else [y.data, xb.grad]
        want = _torch_pow(form, a, b)
        if all(close(g, w) for g, w in zip(got, want)):
            return ""
        return f"{name}({a!r}, {b!r}) [{form}]: value, grads {got} != torch {want}"
    if form == "vv":       # Variable op Variable
        xa, xb, ta, tb = Variable(a), Variable(b), tvar(a), tvar(b)
        y, ty, leaves, tleaves = f(xa, xb), t_vv(ta, tb), [xa, xb], [ta, tb]
    elif form == "vn":     # Variable op number
        xa, ta = Variable(a), tvar(a)
        y, ty, leaves, tleaves = f(xa, b), t_vn(ta, b), [xa], [ta]
    else:                  # number op Variable
        xb, tb = Variable(b), tvar(b)
        y, ty, leaves, tleaves = f(a, xb), t_nv(a, tb), [xb], [tb]
    y.backward()
    ty.backward()
    got = [y.data] + [x.grad for x in leaves]
    want = [ty.item()] + [tgrad(t) for t in tleaves]
    if all(close(g, w) for g, w in zip(got, want)):
        return ""
    return f"{name}({a!r}, {b!r}) [{form}]: value, grads {got} != torch {want}"


# One test per (op, form, left operand); the right operand runs over the
# grid inside (16 * 16 pairs per op and form would be 5,400 tests).
@pytest.mark.parametrize("a", GRID, ids=lambda v: "a=" + vid(v))
@pytest.mark.parametrize("form", ["vv", "vn", "nv"])
@pytest.mark.parametrize("name", list(BINARY))
def test_binary(name, form, a):
    bad = [m for b in GRID for m in [_binary_mismatches(name, form, a, b)] if m]
    assert not bad, "\n".join(bad)


def test_close_helper():
    # the oracle's comparison itself: strict enough to see edge-value bugs
    assert close(NAN, NAN) and close(INF, INF) and close(-INF, -INF)
    assert not close(INF, -INF) and not close(NAN, 0.0) and not close(0.0, NAN)
    assert not close(1e308, INF) and not close(INF, 1e308)
    assert close(1.4142135623730951, 1.414213562373095)          # 1 ulp
    assert close(0.0, -0.0)                                      # zero signs not compared
    assert not close(1e-300, 0.0) and not close(0.0, -1e-300)    # relative down to DBL_MIN
    assert not close(1e-300, 1.0000001e-300)
    assert close(1.0 + 1e-13, 1.0) and not close(1.0 + 1e-11, 1.0)
    assert close(1e-3, 0.0, scale=1e10) and not close(1e-3, 0.0, scale=1e8)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_number_types(name):
    # ints, bools and NumPy scalars as the number operand behave as the float
    np = pytest.importorskip("numpy")
    f = BINARY[name][0]
    for num, as_float in [(3, 3.0), (True, 1.0), (np.float64(-2.5), -2.5), (np.int64(2), 2.0),
                          (np.float32(0.5), 0.5)]:
        for left in (True, False):
            x, xf = Variable(1.75), Variable(1.75)
            y = f(x, num) if left else f(num, x)
            yf = f(xf, as_float) if left else f(as_float, xf)
            assert isinstance(y, Variable), (name, type(num), left)
            y.backward()
            yf.backward()
            # bit-identical (nan for (-2.5) ** 1.75)
            assert close(y.data, yf.data, rel=0.0) and close(x.grad, xf.grad, rel=0.0), \
                (name, type(num), left)


POW_EXPONENTS = [0, 1, 2, 3, 0.5, -0.5, -1, -2, 2.5, 0.0, 2.0, -1.0, 4, -3, 1.5]


def _powc_cases():
    for c in POW_EXPONENTS:
        for x0 in GRID:
            yield pytest.param(x0, c, id=f"x={vid(x0)}-c={c!r}")


@pytest.mark.parametrize("x0, c", list(_powc_cases()))
def test_pow_number_exponent(x0, c):
    # ints and floats as exponents: x ** 0 (gradient 0 even at nan/inf, as
    # torch), x ** 1, negative bases with integer exponents, 0 ** negative
    x = Variable(x0)
    y = x ** c
    y.backward()
    t = tvar(x0)
    ty = torch.pow(t, c)
    ty.backward()
    assert_matches("pow", y, ty, [x], [t])


def test_pow_value_matches_its_own_gradient_formula():
    # The gradient of x ** -0.5 at -0.0 is -inf
    # (from 1/sqrt(-0.0) = -inf, as torch), so the value must be -inf as
    # well (torch: -inf); pow(-0.0, -0.5) is +inf.
    x = Variable(-0.0)
    y = x ** -0.5
    y.backward()
    assert x.grad == -INF
    assert torch.pow(tvar(-0.0), -0.5).item() == -INF
    assert y.data == -INF


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_max_min_ties_split_gradient(name):
    f, tf = getattr(ag, name), getattr(torch, name)
    for v in (2.0, 0.0, -0.0, INF, -INF):
        a, b = Variable(v), Variable(v)
        y = f(a, b)
        y.backward(3.0)
        assert (a.grad, b.grad) == (1.5, 1.5)
        ta, tb = tvar(v), tvar(v)
        tf(ta, tb).backward(tconst(3.0))
        assert (tgrad(ta), tgrad(tb)) == (1.5, 1.5)
    # 0.0 and -0.0 compare equal: a tie, in both libraries
    a, b = Variable(0.0), Variable(-0.0)
    f(a, b).backward()
    assert (a.grad, b.grad) == (0.5, 0.5)
    # a tie with a constant: the Variable gets half
    a = Variable(2.0)
    f(a, 2.0).backward()
    assert a.grad == 0.5
    f(2, a).backward()
    assert a.grad == 1.0


# ---------------------------------------------------------------------------
# n-ary sum and dot
# ---------------------------------------------------------------------------

def _terms_scale(values):
    return math.fsum(abs(v) for v in values)


def test_sum_mixed_items():
    x1, x2 = Variable(0.3), Variable(-1.7)
    k = Variable(2.5, requires_grad=False)
    items = [x1, 2.0, x2, x1, k, 3, True, x2 * x1]
    y = ag.sum(items)
    y.backward()
    t1, t2 = tvar(0.3), tvar(-1.7)
    titems = [t1, tconst(2.0), t2, t1, tconst(2.5), tconst(3), tconst(1.0), t2 * t1]
    ty = torch.sum(torch.stack(titems))
    ty.backward()
    assert close(y.data, ty.item(), scale=_terms_scale([t.item() for t in titems]))
    assert close(x1.grad, tgrad(t1)) and close(x2.grad, tgrad(t2))
    assert x1.grad == 2.0 + -1.7        # used twice directly, once through x2 * x1


def test_sum_many_and_generator():
    vals = [((k * 7919) % 1000) / 37.0 - 13.0 for k in range(1000)]
    xs = [Variable(v) for v in vals]
    y = ag.sum(x * x for x in xs)             # a generator, 1000 interior items
    y.backward()
    ts = [tvar(v) for v in vals]
    ty = torch.sum(torch.stack([t * t for t in ts]))
    ty.backward()
    assert close(y.data, ty.item(), scale=_terms_scale([v * v for v in vals]))
    for x, t in zip(xs, ts):
        assert close(x.grad, tgrad(t))


@pytest.mark.parametrize("edge", [INF, -INF, NAN], ids=vid)
def test_sum_edge_values(edge):
    x = Variable(1.0)
    y = ag.sum([x, edge, x])
    y.backward()
    t = tvar(1.0)
    ty = torch.sum(torch.stack([t, tconst(edge), t]))
    ty.backward()
    assert_matches("sum", y, ty, [x], [t])
    # inf - inf inside the sum: nan value, the gradient is still 2 (torch too)
    x = Variable(INF)
    y = ag.sum([x, -INF, x])
    y.backward()
    t = tvar(INF)
    ty = torch.sum(torch.stack([t, tconst(-INF), t]))
    ty.backward()
    assert_matches("sum", y, ty, [x], [t])


def test_sum_empty_is_constant_zero():
    y = ag.sum([])
    assert y.data == 0.0 and not y.requires_grad
    assert torch.sum(torch.zeros(0, dtype=torch.float64)).item() == 0.0


def test_dot_mixed_items():
    # well-conditioned: all products positive, so rounding order cannot matter
    # beyond a few ulps of the result
    a, b, c = Variable(0.75), Variable(1.25), Variable(2.0)
    xs = [a, b, 3.0, a, c]
    ys = [b, 2.0, c, a, Variable(0.5, requires_grad=False)]
    y = ag.dot(xs, ys)
    y.backward()
    ta, tb, tc_ = tvar(0.75), tvar(1.25), tvar(2.0)
    txs = torch.stack([ta, tb, tconst(3.0), ta, tc_])
    tys = torch.stack([tb, tconst(2.0), tc_, ta, tconst(0.5)])
    ty = torch.dot(txs, tys)
    ty.backward()
    assert_matches("dot", y, ty, [a, b, c], [ta, tb, tc_])
    assert a.grad == 1.25 + 2 * 0.75 and b.grad == 0.75 + 2.0 and c.grad == 3.0 + 0.5


def test_dot_long():
    n = 500
    xv = [1.0 + (k % 17) / 16.0 for k in range(n)]
    yv = [0.5 + (k % 13) / 7.0 for k in range(n)]
    xs, ys = [Variable(v) for v in xv], [Variable(v) for v in yv]
    y = ag.dot(xs, ys)
    y.backward()
    txs, tys = [tvar(v) for v in xv], [tvar(v) for v in yv]
    ty = torch.dot(torch.stack(txs), torch.stack(tys))
    ty.backward()
    assert close(y.data, ty.item(), scale=_terms_scale([p * q for p, q in zip(xv, yv)]))
    for x, t in zip(xs + ys, txs + tys):
        assert x.grad == tgrad(t)          # one product each: exact


@pytest.mark.parametrize("x0, c", [(0.0, INF), (-0.0, NAN), (INF, 0.0), (2.0, -INF), (1e300, 1e300)],
                         ids=lambda v: vid(v))
def test_dot_edge_values(x0, c):
    x, w = Variable(x0), Variable(1.5)
    y = ag.dot([x, w], [c, w])
    y.backward()
    tx, tw = tvar(x0), tvar(1.5)
    ty = torch.dot(torch.stack([tx, tw]), torch.stack([tconst(c), tw]))
    ty.backward()
    assert_matches("dot", y, ty, [x, w], [tx, tw])


# ---------------------------------------------------------------------------
# composite expressions: micrograd's test_engine.py, written once for both
# ---------------------------------------------------------------------------

def micrograd_sanity(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    return y, {"z": z, "q": q, "h": h}


def micrograd_more_ops(a, b):
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return g, {"c": c, "d": d, "e": e, "f": f}


def _run_torch(build, values):
    ts = [tvar(v) for v in values]
    ty, tmid = build(*ts)
    for t in tmid.values():
        t.retain_grad()
    ty.backward()
    return ts, ty, tmid


@pytest.mark.parametrize("build, values", [
    (micrograd_sanity, [-4.0]),
    (micrograd_sanity, [3.0]),
    (micrograd_sanity, [-2.0 / 3.0]),            # z = 0: relu at its kink
    (micrograd_more_ops, [-4.0, 2.0]),
    (micrograd_more_ops, [1.5, -0.25]),
    (micrograd_more_ops, [3.0, 3.0]),
], ids=["sanity", "sanity-pos", "sanity-kink", "more_ops", "more_ops-2", "more_ops-3"])
def test_micrograd_expressions(build, values):
    xs = [Variable(v) for v in values]
    y, mid = build(*xs)
    via_grad = ag.grad(y, xs)                    # before backward: touches no .grad
    assert all(x.grad == 0.0 for x in xs)
    y.backward()
    ts, ty, tmid = _run_torch(build, values)
    assert_matches("backward", y, ty, xs, ts)
    assert_matches("grad()", y, ty, xs, ts, ag_grads=via_grad)
    # interior Variables show this pass's adjoint, like torch's retain_grad()
    for key, v in mid.items():
        assert close(v.grad, tmid[key].grad.item()), key
        assert close(v.data, tmid[key].item()), key
    # grad() with respect to interior Variables
    for key, g in zip(mid, ag.grad(y, list(mid.values()))):
        assert close(g, tmid[key].grad.item()), key


def test_micrograd_exact_numbers():
    # the numbers micrograd's README prints for test_more_ops
    a, b = Variable(-4.0), Variable(2.0)
    g, _ = micrograd_more_ops(a, b)
    g.backward()
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


# ---------------------------------------------------------------------------
# reuse: one node used many times, a leaf as both operands, shared constants
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("x0", [1.1, -0.7, 2.0, 0.0, -1.0], ids=vid)
def test_node_used_many_times(x0):
    def build(x):
        y = x
        for _ in range(19):
            y = y * x                    # x ** 20 as a chain: x has 20 users
        t = x + 1
        out = t * t + t / t + (t.sin() if isinstance(t, Variable) else torch.sin(t))
        fan = t
        for k in range(200):
            fan = fan + t * k            # t has 200 more users
        return y + out + fan * 1e-3, {"t": t}

    x = Variable(x0)
    y, mid = build(x)
    y.backward()
    ts, ty, tmid = _run_torch(build, [x0])
    assert_matches("reuse", y, ty, [x], ts)
    assert close(mid["t"].grad, tmid["t"].grad.item())


SELF_OPS = {
    "x*x": (lambda x: x * x, lambda t: t * t),
    "x/x": (lambda x: x / x, lambda t: t / t),
    "x-x": (lambda x: x - x, lambda t: t - t),
    "x+x": (lambda x: x + x, lambda t: t + t),
    "x**x": (lambda x: x ** x, lambda t: t ** t),
    "maximum(x,x)": (lambda x: ag.maximum(x, x), lambda t: torch.maximum(t, t)),
    "minimum(x,x)": (lambda x: ag.minimum(x, x), lambda t: torch.minimum(t, t)),
    "sum([x,x])": (lambda x: ag.sum([x, x]), lambda t: torch.sum(torch.stack([t, t]))),
    "dot([x],[x])": (lambda x: ag.dot([x], [x]), lambda t: torch.dot(t.reshape(1), t.reshape(1))),
}


@pytest.mark.parametrize("x0", [2.0, -2.5, 0.5, 0.0, -0.0, 1e-300, 1e300, INF, -INF, NAN], ids=vid)
@pytest.mark.parametrize("name", list(SELF_OPS))
def test_leaf_as_both_operands(name, x0):
    f, tf = SELF_OPS[name]
    _one_leaf_matches(name, f, tf, x0)


@pytest.mark.parametrize("x0", [3.0, 0.0, -3.0, 0.5], ids=vid)
def test_same_constant_reused(x0):
    # the constant 3 is pooled once and used by every constant opcode;
    # x0 = 3 makes maximum/minimum a tie, x0 = 0 makes 3 / x infinite
    x = Variable(x0)
    terms = [x * 3, 3 * x, x ** 3, 3 ** x, x / 3, 3 / x, x - 3, 3 - x, x + 3, 3 + x,
             ag.maximum(x, 3), ag.minimum(3, x), ag.sum([x, 3, 3]), ag.dot([x, 3], [3, x])]
    y = functools.reduce(operator.add, terms)
    y.backward()
    t = tvar(x0)
    tterms = [t * 3, 3 * t, t ** 3, torch.pow(3, t), t / 3, torch.div(tconst(3), t), t - 3, 3 - t,
              t + 3, 3 + t, torch.maximum(t, tconst(3)), torch.minimum(tconst(3), t),
              torch.sum(torch.stack([t, tconst(3), tconst(3)])),
              torch.dot(torch.stack([t, tconst(3)]), torch.stack([tconst(3), t]))]
    ty = functools.reduce(operator.add, tterms)
    ty.backward()
    for term, tterm in zip(terms, tterms):
        assert close(term.data, tterm.item())
    scale = _terms_scale([v.item() for v in tterms])
    assert close(y.data, ty.item(), scale=scale)
    assert close(x.grad, tgrad(t), scale=scale)


def test_signed_zero_and_nan_constants_are_distinct():
    # the constant pool is keyed by bits: 0.0 / -0.0 and nan must stay distinct
    x = Variable(1.5)
    outs = [x / 0.0, x / -0.0, x * 0.0 + x, x * -0.0 + x, x + NAN, x - NAN, ag.maximum(x, -0.0)]
    t = tvar(1.5)
    touts = [t / 0.0, t / -0.0, t * 0.0 + t, t * -0.0 + t, t + NAN, t - NAN,
             torch.maximum(t, tconst(-0.0))]
    for y, ty in zip(outs, touts):
        (g,) = ag.grad(y, [x])
        (tg,) = torch.autograd.grad(ty, [t])
        assert close(y.data, ty.item()) and close(g, tg.item()), (y, ty, g, tg)
    assert ag.grad(outs[0], [x]) == [INF] and ag.grad(outs[1], [x]) == [-INF]


def test_many_distinct_constants():
    # thousands of constants: collisions in the constant cache must not mix them up
    consts = [((k * 2654435761) % 100003) / 997.0 - 50.0 for k in range(3000)] + [0.0, -0.0, 1e-300, -1e300]
    x = Variable(1.25)
    terms = [x * c for c in consts] + [x - c for c in consts]
    y = ag.sum(terms)
    g_sum = ag.grad(y, [x])[0]
    t = tvar(1.25)
    tterms = [t * c for c in consts] + [t - c for c in consts]
    ty = torch.sum(torch.stack(tterms))
    ty.backward()
    assert close(y.data, ty.item(), scale=_terms_scale([v.item() for v in tterms]))
    assert close(g_sum, tgrad(t), scale=_terms_scale(consts) + len(consts))
    # each term on its own: exact
    for c, term in list(zip(consts, terms))[-300:]:
        assert term.data == 1.25 * c and ag.grad(term, [x]) == [c]


# ---------------------------------------------------------------------------
# nan propagation: a nan partial with zero adjoint, reachable or not
# ---------------------------------------------------------------------------

class _M:
    """Namespace giving build functions one spelling for both libraries."""

    def __init__(self, lib):
        self.lib = lib

    def __getattr__(self, name):
        if self.lib is ag:
            return getattr(ag, name)
        return {"softplus": _softplus, "relu": torch.relu}.get(name) or getattr(torch, name)


AGM, TM = _M(ag), _M(torch)

def _nan_case(name, build, values, marks=()):
    return pytest.param(build, values, marks=marks, id=name)


NAN_CASES = [
    # build(m, *leaves) -> (output, unused interior nodes); leaf values
    # reachable, zero adjoint, infinite local derivative -> nan, as torch
    _nan_case("-abs(sqrt(x)) at 0", lambda m, x: (-m.abs(m.sqrt(x)), []), [0.0]),
    _nan_case("relu(log(w)) at 0", lambda m, w: (m.relu(m.log(w)), []), [0.0]),
    _nan_case("0*log(x) + x at 0", lambda m, x: (0 * m.log(x) + x, []), [0.0]),
    _nan_case("sqrt(x)*0 at 0", lambda m, x: (m.sqrt(x) * 0, []), [0.0]),
    _nan_case("sqrt(x)*z at 0,0", lambda m, x, z: (m.sqrt(x) * z, []), [0.0, 0.0]),
    _nan_case("exp(x)*0 at 1000", lambda m, x: (m.exp(x) * 0, []), [1000.0]),
    _nan_case("log(x)-log(x) at 0", lambda m, x: (m.log(x) - m.log(x), []), [0.0]),
    _nan_case("l=log(x); l-l at 0", lambda m, x: ((lambda l: l - l)(m.log(x)), []), [0.0]),
    _nan_case("l=sin(x); l-l at 0", lambda m, x: ((lambda l: l - l)(m.sin(x)), []), [0.0]),
    _nan_case("relu(-x)*exp(y) at 1,inf", lambda m, x, y: (m.relu(-x) * m.exp(y), []), [1.0, INF]),
    # the zero adjoint has to travel through a node with a finite partial
    # before it meets the infinite one
    _nan_case("abs(sqrt(x)*2) at 0", lambda m, x: (m.abs(m.sqrt(x) * 2), []), [0.0]),
    _nan_case("relu(log(x)+1) at 0", lambda m, x: (m.relu(m.log(x) + 1), []), [0.0]),
    _nan_case("relu(-exp(x))*1 at 1000", lambda m, x: (m.relu(-m.exp(x)) * 1, []), [1000.0]),
    # ... the same, with another path reaching below the chain (passes: the
    # sweep then visits the infinite partial with its zero adjoint)
    _nan_case("abs(sqrt(x)*2)+x at 0", lambda m, x: (m.abs(m.sqrt(x) * 2) + x, []), [0.0]),
    # x * 0 with x = inf: nan value, but the partial for x is 0 * 1 = 0
    _nan_case("x*0 + 1 at inf", lambda m, x: (x * 0 + 1, []), [INF]),
    _nan_case("x*y at inf,0", lambda m, x, y: (x * y, []), [INF, 0.0]),
    # UNREACHABLE nan partial: u = log(x) at 0 is recorded, but the output
    # does not depend on it; torch never sees u, so no nan may leak
    _nan_case("unused log(x) before", lambda m, x: (lambda u: (x * 2, [u]))(m.log(x)), [0.0]),
    _nan_case("unused log(x) after", lambda m, x: (lambda o: (o, [m.log(x)]))(x * 2), [0.0]),
    _nan_case("unused sqrt chain",
              lambda m, x, w: (lambda u: (w * 3 + x * 5, [u, u * 7]))(m.relu(m.sqrt(x))), [0.0, 1.5]),
    # the unreachable nan node sits below a leaf the fast sweep has already
    # delivered a gradient to: falling back to the exact sweep must not
    # deliver it twice
    _nan_case("unused between leaves",
              lambda m, x, w: (lambda u: (w * 2 + x * 5, [u]))(m.log(x)), [0.0, 3.0]),
    # a reachable nan partial and an unreachable one together
    _nan_case("reachable+unused",
              lambda m, x, w: (lambda u: (m.relu(m.log(w)) + x, [u]))(m.log(x)), [0.0, 0.0]),
]


@pytest.mark.parametrize("build, values", NAN_CASES)
def test_nan_propagation(build, values):
    xs = [Variable(v) for v in values]
    for x in xs:
        x.grad = 0.25                    # pre-existing gradient: backward adds to it
    y, unused = build(AGM, *xs)
    via_grad = ag.grad(y, xs)
    assert all(x.grad == 0.25 for x in xs), "grad() must not touch .grad"
    ts = [tvar(v) for v in values]
    ty, _ = build(TM, *ts)
    ty.backward()
    assert close(y.data, ty.item())
    for g, t in zip(via_grad, ts):
        assert close(g, tgrad(t)), f"grad(): {g!r} != torch {tgrad(t)!r}"
    y.backward()
    for x, t in zip(xs, ts):
        assert close(x.grad, 0.25 + tgrad(t)), f"backward: {x.grad!r} != 0.25 + torch {tgrad(t)!r}"
    for u in unused:
        assert u.grad == 0.0              # not reached by this pass
    # grad() also answers for the unused interior nodes: 0.0
    assert ag.grad(y, unused) == [0.0] * len(unused)
    # and a second pass adds the same again
    y.backward()
    for x, t in zip(xs, ts):
        assert close(x.grad, 0.25 + 2 * tgrad(t))


def test_nan_partial_reached_through_interior_input_of_grad():
    # grad() w.r.t. an interior node with a zero adjoint vs torch.autograd.grad
    x = Variable(0.0)
    s = ag.sqrt(x)
    y = -ag.abs(s)
    gs, gx = ag.grad(y, [s, x])
    t = tvar(0.0)
    ts = torch.sqrt(t)
    ty = -torch.abs(ts)
    tgs, tgx = torch.autograd.grad(ty, [ts, t])
    assert close(gs, tgs.item()) and close(gx, tgx.item())
    assert gs == 0.0 and math.isnan(gx)


# ---------------------------------------------------------------------------
# backward twice, gradient seeds
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, values", [
    (micrograd_more_ops, [-4.0, 2.0]),
    (lambda x, y: (ag.sin(x) * y + ag.exp(x / y) if isinstance(x, Variable)
                   else torch.sin(x) * y + torch.exp(x / y), {}), [0.3, -1.2]),
], ids=["more_ops", "sin-exp"])
def test_backward_twice_adds_twice(build, values):
    xs = [Variable(v) for v in values]
    y, mid = build(*xs)
    y.backward()
    y.backward()
    ts = [tvar(v) for v in values]
    ty, tmid = build(*ts)
    for t in tmid.values():
        t.retain_grad()
    ty.backward(retain_graph=True)
    once = {k: t.grad.item() for k, t in tmid.items()}
    ty.backward()
    for x, t in zip(xs, ts):
        assert close(x.grad, tgrad(t))
    # deliberate difference: an interior Variable shows the adjoint of the
    # *latest* pass, where torch's retain_grad() accumulates over passes
    for k, v in mid.items():
        assert close(v.grad, once[k]) and close(2 * v.grad, tmid[k].grad.item())
    # zero_grad() then one pass: back to single
    y.zero_grad()
    y.backward()
    ts1 = [tvar(v) for v in values]
    build(*ts1)[0].backward()
    for x, t in zip(xs, ts1):
        assert close(x.grad, tgrad(t))


@pytest.mark.parametrize("seed, x0", [
    pytest.param(seed, x0, id=f"seed={vid(seed)}-x={vid(x0)}")
    for seed in [2.5, -1.0, 0.0, 1e300, INF, NAN] for x0 in [0.7, 0.0]])
def test_gradient_seed(seed, x0):
    # at x = 0, sqrt has an infinite derivative: seed 0 -> nan, as torch
    # (seed 0 makes every adjoint 0, and the zeros must still reach sqrt)
    def build(m, x, w):
        return m.sqrt(x) * w + m.tanh(w) * x

    x, w = Variable(x0), Variable(1.5)
    y = build(AGM, x, w)
    y.backward(gradient=seed)
    tx, tw = tvar(x0), tvar(1.5)
    ty = build(TM, tx, tw)
    ty.backward(gradient=tconst(seed))
    assert_matches(f"seed={seed}", y, ty, [x, w], [tx, tw])


def test_backward_on_leaf_adds_seed():
    x = Variable(2.0)
    x.backward()
    x.backward(gradient=2.5)
    t = tvar(2.0)
    t.backward()
    t.backward(tconst(2.5))
    assert x.grad == tgrad(t) == 3.5


# ---------------------------------------------------------------------------
# pow: one formula whatever requires grad (issue 8)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("x0", GRID, ids=vid)
@pytest.mark.parametrize("z0", [0.5, -0.5, 2.0, 3.0, -1.0, -2.0, 0.0, 1.5, -3.0], ids=vid)
def test_pow_value_never_depends_on_requires_grad(x0, z0):
    values = set()
    for base_rg in (True, False):
        for exp in ("number", "var", "const var"):
            x = Variable(x0, requires_grad=base_rg)
            z = z0 if exp == "number" else Variable(z0, requires_grad=exp == "var")
            values.add(repr((x ** z).data))
            with ag.no_grad():
                values.add(repr((x ** z).data))
    # and c ** x: the same formula with the base a number
    for rg in (True, False):
        values.add(repr((x0 ** Variable(z0, requires_grad=rg)).data))
    assert len(values) == 1, values
    assert values == {repr(torch.pow(tconst(x0), z0).item())}


@pytest.mark.parametrize("g", [math.inf, -math.inf, math.nan], ids=vid)
def test_pow_masked_derivatives_meet_nonfinite_gradients_as_in_torch(g):
    # torch multiplies the incoming gradient by d(x**z)/dz masked to 0 at
    # x == 0, z >= 0 (so inf or nan gives nan), but selects 0 for d/dx at a
    # zero exponent (0 whatever the gradient)
    x, z = Variable(0.0), Variable(2.0)
    tx, tz = tvar(0.0), tvar(2.0)
    (x ** z).backward(g)
    torch.pow(tx, tz).backward(tconst(g))
    assert close(z.grad, tgrad(tz)) and math.isnan(z.grad)
    assert close(x.grad, tgrad(tx))
    z = Variable(1.0)
    (0.0 ** z).backward(g)
    tz = tvar(1.0)
    torch.pow(tconst(0.0), tz).backward(tconst(g))
    assert close(z.grad, tgrad(tz)) and math.isnan(z.grad)
    for exponent in (0, Variable(0.0)):
        x = Variable(3.0)
        (x ** exponent).backward(g)
        tx = tvar(3.0)
        torch.pow(tx, 0.0 if exponent == 0 else tconst(0.0)).backward(tconst(g))
        assert close(x.grad, tgrad(tx)) and x.grad == 0.0
