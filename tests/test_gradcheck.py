"""autograd_c.checking: numerical_grad() and gradcheck() (issue 3, part 5).

Imported from the module (``from autograd_c.checking import ...``) so the
tests run before and after the names are exported from the package; the
export itself and the Function-based cases (a custom backward written wrong)
are in test_gradcheck_functions.py.

Wrong derivatives are built from core ops with detach():
``value(x).detach() + (x - x.detach()) * claimed`` has the value of
``value(x)`` but autograd_c differentiates it as ``claimed`` (a custom
derivative, like a Function whose backward returns ``claimed * gy``).
"""
import math
import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable
from autograd_c.checking import GradcheckError, gradcheck, numerical_grad

from helpers import in_fresh_thread


def custom(value_fn, claimed_fn):
    """f(x) with the value of value_fn(x) and the derivative claimed_fn(x) (a number)."""
    def f(x):
        return value_fn(x).detach() + (x - x.detach()) * claimed_fn(x.data)
    return f


# ---------------------------------------------------------------------------
# numerical_grad
# ---------------------------------------------------------------------------

# (f, point, exact gradient at the point)
CASES = [
    (lambda x: ag.sin(x), [0.7], [math.cos(0.7)]),
    (lambda x: ag.exp(x), [1.3], [math.exp(1.3)]),
    (lambda x: ag.log(x), [0.25], [4.0]),
    (lambda x: ag.tanh(x), [-0.4], [1 - math.tanh(-0.4) ** 2]),
    (lambda x: ag.sqrt(x), [2.0], [0.5 / math.sqrt(2.0)]),
    (lambda x: ag.atan(x), [3.0], [0.1]),
    (lambda x: ag.sigmoid(x), [0.3], [math.exp(-0.3) / (1 + math.exp(-0.3)) ** 2]),
    (lambda x: ag.erf(x), [0.5], [2 / math.sqrt(math.pi) * math.exp(-0.25)]),
    (lambda x, y: x * y, [3.0, -4.0], [-4.0, 3.0]),
    (lambda x, y: x / y, [3.0, -4.0], [-0.25, -3.0 / 16]),
    (lambda x, y: x ** y, [1.5, 2.5], [2.5 * 1.5 ** 1.5, math.log(1.5) * 1.5 ** 2.5]),
    (lambda x, y, z: ag.sum([x * y, y * z, ag.exp(z)]), [1.0, 2.0, -1.0],
     [2.0, 0.0, 2.0 + math.exp(-1.0)]),
]


@pytest.mark.parametrize("f, point, exact", CASES)
def test_numerical_grad_accuracy(f, point, exact):
    num = numerical_grad(f, point)
    assert isinstance(num, list) and len(num) == len(point)
    assert all(type(g) is float for g in num)
    for n, e in zip(num, exact):
        assert abs(n - e) <= 1e-8 * max(1.0, abs(e))
    # and it agrees with autograd_c's own gradient
    leaves = [Variable(v) for v in point]
    for n, a in zip(num, ag.grad(f(*leaves), leaves)):
        assert abs(n - a) <= 1e-8 * max(1.0, abs(a))


def test_numerical_grad_eps_changes_the_estimate():
    # f = x^3 at 1: the central difference is 3 + eps^2 exactly (up to rounding)
    f = lambda x: x ** 3                      # noqa: E731
    assert numerical_grad(f, [1.0], eps=1e-2)[0] == pytest.approx(3.0001, abs=1e-12)
    assert numerical_grad(f, [1.0], eps=1e-1)[0] == pytest.approx(3.01, abs=1e-12)
    assert numerical_grad(f, [1.0])[0] == pytest.approx(3.0, abs=1e-9)


def test_numerical_grad_divides_by_the_step_actually_taken():
    # at 1e6, 1e6 + 1e-6 is not representable: (x+eps) - (x-eps) != 2 eps;
    # dividing by 2 eps would give 1.0000000116 for f(x) = x
    assert (1e6 + 1e-6) - (1e6 - 1e-6) != 2e-6
    assert numerical_grad(lambda x: x, [1e6]) == [1.0]


def test_numerical_grad_eps_too_small_for_the_point():
    with pytest.raises(ValueError, match=r"eps=1e-06 is too small for inputs\[0\] = 1e\+20"):
        numerical_grad(lambda x: x, [1e20])


def test_numerical_grad_inputs_of_every_kind():
    x = Variable(2.0, name="x")
    c = Variable(3.0, requires_grad=False)
    h = x * 5.0                                      # a recorded Variable: its value is used
    f = lambda a, b, d, e, g: a * b * d + e * g      # noqa: E731
    num = numerical_grad(f, [x, c, h, 4, np.float64(0.5)])
    assert num == pytest.approx([30.0, 20.0, 6.0, 0.5, 4.0], rel=1e-8)
    # a lone Variable or number is one input
    assert numerical_grad(lambda a: a * a, x) == pytest.approx([4.0], rel=1e-9)
    assert numerical_grad(lambda a: a * a, 3) == pytest.approx([6.0], rel=1e-9)
    # a generator is a sequence too
    assert numerical_grad(lambda a, b: a - b, (v for v in (1.0, 2.0))) == pytest.approx(
        [1.0, -1.0], rel=1e-9)


def test_numerical_grad_f_returning_a_number_or_a_constant():
    assert numerical_grad(lambda x: 7, [1.0]) == [0.0]
    assert numerical_grad(lambda x: math.sin(x), [0.5]) == pytest.approx(
        [math.cos(0.5)], rel=1e-8)                   # float(Variable): plain math works
    assert numerical_grad(lambda x: Variable(2.0, requires_grad=False), [1.0]) == [0.0]


def test_numerical_grad_touches_nothing_and_records_nothing():
    x = Variable(0.5, name="x")
    x.grad = 7.0
    y = Variable(2.0)
    seen = []

    def f(a, b):
        seen.append((ag.is_grad_enabled(), a is x, b is y, a.name))
        return ag.sin(a) * b

    num = numerical_grad(f, [x, y])
    assert num == pytest.approx([2 * math.cos(0.5), math.sin(0.5)], rel=1e-8)
    assert (x.data, x.grad, y.data, y.grad) == (0.5, 7.0, 2.0, 0.0)
    # f saw fresh Variables (carrying the inputs' names), under no_grad, 2 calls per input
    assert seen == [(False, False, False, "x")] * 4
    assert ag.is_grad_enabled()

    def nodes_recorded():
        before = ag.tape_stats()["nodes"]
        keep = Variable(1.0) * 2.0                   # keeps the tape from resetting
        numerical_grad(lambda a, b: ag.exp(a * b) + a, [1.0, 2.0])
        return ag.tape_stats()["nodes"] - before, keep.data

    assert in_fresh_thread(nodes_recorded) == (1, 2.0)


def test_numerical_grad_non_finite_values_come_back_as_is():
    # sqrt near 0: f(-eps) is nan
    assert math.isnan(numerical_grad(ag.sqrt, [0.0])[0])
    # log at 0 from both sides: f(+eps) finite, f(-eps) nan
    assert math.isnan(numerical_grad(ag.log, [0.0])[0])
    # overflow on one side only: exp(709.782712893) is finite, exp(709.782713893) is not
    assert math.isfinite(math.exp(709.782712893))
    assert numerical_grad(ag.exp, [709.782712893])[0] == math.inf


# ---------------------------------------------------------------------------
# gradcheck: passing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("f, point, exact", CASES)
def test_gradcheck_passes_on_correct_functions(f, point, exact):
    assert gradcheck(f, point) is True
    assert gradcheck(f, [Variable(v, name=f"v{i}") for i, v in enumerate(point)]) is True


def test_gradcheck_passes_on_a_deep_expression():
    def f(x, y):
        h = x
        for _ in range(50):
            h = ag.tanh(h * y + 0.1) + ag.softplus(h) * 0.01
        return ag.log1p(h ** 2) + ag.maximum(x, y)
    assert gradcheck(f, [0.3, 0.9]) is True


def test_gradcheck_constant_outputs_have_zero_gradients():
    outside = Variable(5.0)
    assert gradcheck(lambda x: 3.0, [1.0]) is True
    assert gradcheck(lambda x: Variable(2.0, requires_grad=False), [1.0]) is True
    assert gradcheck(lambda x: x.detach() * 0 + 1, [1.0]) is True
    assert gradcheck(lambda x: outside * 2, [1.0]) is True      # depends on another leaf
    assert gradcheck(lambda x, y: x, [1.0, 2.0]) is True        # returns an input itself
    assert outside.grad == 0.0


def test_gradcheck_same_variable_twice():
    x = Variable(1.5)
    # f(a, b) = a * b at (x, x): each input is its own variable, gradients (x, x)
    assert gradcheck(lambda a, b: a * b, [x, x]) is True


def test_gradcheck_leaves_the_users_variables_alone():
    x = Variable(0.5, name="x")
    y = Variable(2.0)
    x.grad = 7.0
    h = x * y
    h.backward()
    assert (x.grad, y.grad) == (9.0, 0.5)
    seen = []

    def f(a, b):
        seen.append((ag.is_grad_enabled(), a is x or a is h, b is y))
        return ag.sin(a) * b

    assert gradcheck(f, [x, y]) is True
    assert gradcheck(f, [h, y]) is True                  # a recorded Variable as a point
    assert (x.data, x.grad, y.data, y.grad) == (0.5, 9.0, 2.0, 0.5)
    assert (h.data, h.grad) == (1.0, 1.0)
    # one recorded call, then 2 unrecorded calls per input, on fresh Variables
    assert seen == ([(True, False, False)] + [(False, False, False)] * 4) * 2
    # the wrong-derivative path leaves them alone too
    wrong = lambda a, b: custom(ag.sin, lambda v: 1.0)(a) * b      # noqa: E731
    assert gradcheck(wrong, [x, y], raise_exception=False) is False
    assert (x.data, x.grad, y.data, y.grad) == (0.5, 9.0, 2.0, 0.5)


def test_gradcheck_under_no_grad_still_records_the_analytic_pass():
    f_wrong = custom(ag.sin, lambda v: math.sin(v))      # claims d sin = sin
    with ag.no_grad():
        assert gradcheck(lambda x: ag.sin(x) * x, [0.8]) is True
        assert gradcheck(f_wrong, [0.5], raise_exception=False) is False
        assert ag.is_grad_enabled() is False             # and the mode is restored
    assert ag.is_grad_enabled() is True


def test_gradcheck_in_another_thread():
    def run():
        return gradcheck(lambda x, y: ag.exp(x) / y, [0.2, 3.0])
    assert in_fresh_thread(run) is True


# ---------------------------------------------------------------------------
# gradcheck: failing, and what the report says
# ---------------------------------------------------------------------------

def test_gradcheck_reports_a_wrong_derivative():
    # claims d sin(x)/dx = sin(x): at 0.5 analytic sin(0.5), numeric cos(0.5)
    f = custom(ag.sin, math.sin)
    assert f(Variable(0.5)).data == math.sin(0.5)              # the value is right
    x = Variable(0.5, name="x")
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, [x])
    err = info.value
    assert isinstance(err, AssertionError)
    a, n = math.sin(0.5), math.cos(0.5)
    assert (err.index, err.name) == (0, "x")
    assert err.analytic == pytest.approx(a, rel=1e-15)
    assert err.numeric == pytest.approx(n, rel=1e-8)
    assert err.abs_error == pytest.approx(n - a, rel=1e-8)
    assert err.rel_error == pytest.approx((n - a) / n, rel=1e-8)
    assert err.tolerance == pytest.approx(1e-5 + 1e-3 * n, rel=1e-8)
    msg = str(err)
    assert "input 0 ('x') at 0.5" in msg
    assert f"analytic (autograd_c)           = {a:.12g}" in msg
    assert f"numeric (central differences)   = {n:.12g}" in msg
    assert "abs error |analytic - numeric|  = 0.398157" in msg
    assert "rel error (of |numeric|)        = 0.453698" in msg
    assert "tolerance atol + rtol*|numeric| = 0.000887583" in msg
    assert "eps=1e-06, atol=1e-05, rtol=0.001" in msg
    assert "failed for 1 of 1 input(s)" in msg
    # without a name the input is still identified
    with pytest.raises(GradcheckError, match=r"Worst mismatch: input 0 at 0\.5\n") as info:
        gradcheck(f, [0.5])
    assert info.value.name is None
    # raise_exception=False
    assert gradcheck(f, [0.5], raise_exception=False) is False


def test_gradcheck_reports_the_worst_of_several_mismatches():
    def f(a, b, c, d):
        # b's derivative is off by 10%, d's by 50%, a and c are right
        return (a * 2.0 + custom(lambda v: v * 3.0, lambda v: 3.3)(b) + ag.exp(c)
                + custom(lambda v: v * 4.0, lambda v: 6.0)(d))
    names = [Variable(1.0, name="a"), Variable(1.0, name="b"), 0.5, Variable(1.0, name="d")]
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, names)
    err = info.value
    assert (err.index, err.name) == (3, "d")
    assert err.analytic == 6.0 and err.numeric == pytest.approx(4.0, rel=1e-8)
    msg = str(err)
    assert "failed for 2 of 4 input(s)" in msg
    table = msg.split("All inputs (mismatches first):\n")[1].splitlines()
    assert [r.split()[-1] for r in table[1:]] == ["MISMATCH", "MISMATCH", "ok", "ok"]
    assert table[1].startswith("  input 1 ('b')") and table[2].startswith("  input 3 ('d')")


def test_gradcheck_long_report_is_truncated():
    n = 25
    f = lambda *xs: ag.sum(custom(lambda v: v, lambda v: 1.5)(x) for x in xs)   # noqa: E731
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, [1.0] * n)
    msg = str(info.value)
    assert "failed for 25 of 25 input(s)" in msg
    assert msg.count("MISMATCH") == 10 and "... 15 more" in msg


def test_gradcheck_tolerance_is_atol_plus_rtol_times_numeric():
    # numeric gradient 1000 (value 1000 x), analytic claimed c
    def f_claiming(c):
        return lambda x: x.detach() * 1000.0 + (x - x.detach()) * c
    # default tolerance: 1e-5 + 1e-3 * 1000 = 1.00001
    assert gradcheck(f_claiming(1000.99), [1.0]) is True
    assert gradcheck(f_claiming(999.01), [1.0]) is True
    assert gradcheck(f_claiming(1001.01), [1.0], raise_exception=False) is False
    assert gradcheck(f_claiming(998.99), [1.0], raise_exception=False) is False
    # rtol is relative to |numeric|, not |analytic|: numeric 1000, analytic 1990
    assert gradcheck(f_claiming(1990.0), [1.0], atol=0.0, rtol=1.0) is True
    # ... numeric 10, analytic 1000 (error 990 > 1 * 10)
    g = lambda x: x.detach() * 10.0 + (x - x.detach()) * 1000.0     # noqa: E731
    assert gradcheck(g, [1.0], atol=0.0, rtol=1.0, raise_exception=False) is False
    # atol alone
    assert gradcheck(f_claiming(1000.5), [1.0], atol=0.6, rtol=0.0) is True
    assert gradcheck(f_claiming(1000.5), [1.0], atol=0.4, rtol=0.0, raise_exception=False) is False


def test_gradcheck_a_tiny_wrong_derivative_needs_tight_tolerances():
    f = custom(ag.exp, lambda v: math.exp(v) * (1 + 1e-6))
    assert gradcheck(f, [0.0]) is True                       # within rtol=1e-3
    with pytest.raises(GradcheckError):
        gradcheck(f, [0.0], atol=0.0, rtol=1e-8)


def test_gradcheck_non_finite_gradients_fail_clearly():
    # sqrt at 0: analytic inf, numeric nan
    with pytest.raises(GradcheckError, match="not finite: the analytic and numeric gradients") as info:
        gradcheck(ag.sqrt, [0.0])
    assert info.value.index == 0 and info.value.analytic == math.inf
    assert "differentiable" in str(info.value)
    # log at 0: f itself is -inf
    with pytest.raises(GradcheckError, match=r"f\(0\) = -inf; gradients can only be checked "
                                             r"where f is finite") as info:
        gradcheck(ag.log, [0.0])
    assert info.value.index is None
    with pytest.raises(GradcheckError, match=r"f\(-1, 2\) = nan"):
        gradcheck(lambda x, y: ag.log(x) * y, [-1.0, 2.0])
    assert gradcheck(ag.log, [0.0], raise_exception=False) is False
    # finite value, finite analytic, numeric overflows within eps
    with pytest.raises(GradcheckError, match="not finite: the numeric gradient;"):
        gradcheck(ag.exp, [709.782712893])
    # relu at its kink: analytic 0, numeric 0.5 -- an ordinary mismatch
    with pytest.raises(GradcheckError) as info:
        gradcheck(ag.relu, [0.0])
    assert (info.value.analytic, info.value.numeric) == (0.0, pytest.approx(0.5))


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("check", [numerical_grad, gradcheck])
def test_bad_arguments(check):
    f = lambda x: x * 2                                  # noqa: E731
    who = check.__name__
    with pytest.raises(TypeError, match=rf"{who}\(\): f must be a callable \(the function to "
                                        rf"differentiate\), not int; call it as {who}\(f, inputs\)"):
        check(3, [1.0])
    with pytest.raises(TypeError, match=rf"{who}\(\): f must be a callable.*not list"):
        check([1.0], f)                                  # arguments swapped
    with pytest.raises(TypeError, match=r"inputs must be a list or tuple of Variables or "
                                        r"numbers \(one per argument of f\), not str"):
        check(f, "1.0")
    with pytest.raises(TypeError, match="not dict"):
        check(f, {"x": 1.0})
    with pytest.raises(TypeError, match="not set"):
        check(f, {1.0})
    with pytest.raises(TypeError, match="not NoneType"):
        check(f, None)
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a Variable or a real number, "
                                        r"not str"):
        check(lambda a, b: a, [1.0, "2"])
    with pytest.raises(TypeError, match=r"not complex"):
        check(f, [1j])
    with pytest.raises(ValueError, match=r"inputs is empty"):
        check(f, [])
    with pytest.raises(ValueError, match=r"inputs\[0\] is nan"):
        check(f, [math.nan])
    with pytest.raises(ValueError, match=r"inputs\[1\] is inf"):
        check(lambda a, b: a, [0.0, Variable(math.inf)])
    with pytest.raises(TypeError, match=r"f is called with 2 positional argument\(s\), one per "
                                        r"input, but it does not accept them: too many"):
        check(f, [1.0, 2.0])
    with pytest.raises(TypeError, match=r"missing a required argument: 'b'"):
        check(lambda a, b: a * b, [1.0])
    with pytest.raises(TypeError, match=r"f must return a Variable or a real number, but it "
                                        r"returned list"):
        check(lambda a: [a], [1.0])
    with pytest.raises(TypeError, match=r"returned NoneType"):
        check(lambda a: None, [1.0])
    for eps in (0, -1e-6, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"eps must be a finite number > 0"):
            check(f, [1.0], eps=eps)
    with pytest.raises(TypeError, match=r"eps must be a real number, not str"):
        check(f, [1.0], eps="1e-6")


def test_gradcheck_bad_tolerances():
    f = lambda x: x * 2                                  # noqa: E731
    with pytest.raises(ValueError, match=r"atol must be a finite number >= 0, not -1.0"):
        gradcheck(f, [1.0], atol=-1)
    with pytest.raises(ValueError, match=r"rtol must be a finite number >= 0, not nan"):
        gradcheck(f, [1.0], rtol=math.nan)
    with pytest.raises(TypeError, match=r"rtol must be a real number, not NoneType"):
        gradcheck(f, [1.0], rtol=None)
    # bad arguments raise even with raise_exception=False
    with pytest.raises(TypeError):
        gradcheck(f, "x", raise_exception=False)
    # zero tolerances are allowed (an exact check)
    assert gradcheck(lambda x: x * 2, [1.0], atol=0, rtol=0) is True


def test_errors_raised_by_f_propagate_unchanged():
    class Boom(Exception):
        pass

    def f(x):
        raise Boom("from f")

    with pytest.raises(Boom, match="from f"):
        gradcheck(f, [1.0])
    with pytest.raises(Boom, match="from f"):
        numerical_grad(f, [1.0])
    assert ag.is_grad_enabled() is True                  # the modes were restored
