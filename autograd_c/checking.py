"""Gradient checking: autograd_c's gradients against central differences.

:func:`numerical_grad` estimates d f / d input for every input by central
differences; :func:`gradcheck` compares those estimates with the gradients
autograd_c computes (useful for a custom :class:`autograd_c.Function` whose
``backward`` you wrote by hand) and reports the worst mismatch.

>>> import autograd_c as ag
>>> ag.gradcheck(lambda x, y: ag.sin(x) * y, [0.5, 2.0])
True
"""
import inspect
import math
import numbers
from collections.abc import Mapping, Set

from ._core import Variable
from ._core import grad as _grad
from .modes import enable_grad, no_grad

__all__ = ["GradcheckError", "gradcheck", "numerical_grad"]

_MAX_ROWS = 10          # inputs listed in a failure report


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when analytic and numeric gradients differ.

    The message reports the worst mismatch; the same facts are attributes:
    ``index`` (position of the input), ``name`` (the input Variable's name or
    None), ``analytic``, ``numeric``, ``abs_error``, ``rel_error`` (relative
    to ``|numeric|``) and ``tolerance`` (``atol + rtol * |numeric|``).
    ``index`` is None when f's own value is not finite.

    >>> import autograd_c as ag
    >>> wrong = lambda x: ag.sin(x).detach() + (x - x.detach())   # d/dx claimed 1
    >>> try:
    ...     ag.gradcheck(wrong, [0.5])
    ... except ag.GradcheckError as err:
    ...     print(err.index, round(err.analytic, 3), round(err.numeric, 3))
    0 1.0 0.878
    """

    def __init__(self, message, *, index=None, name=None, analytic=None, numeric=None,
                 abs_error=None, rel_error=None, tolerance=None):
        super().__init__(message)
        self.index = index
        self.name = name
        self.analytic = analytic
        self.numeric = numeric
        self.abs_error = abs_error
        self.rel_error = rel_error
        self.tolerance = tolerance


# ---------------------------------------------------------------------------
# argument checking
# ---------------------------------------------------------------------------

def _real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, Variable)


def _inputs(inputs, who):
    """(values, names) of the inputs: a sequence of Variables or numbers (or one)."""
    if isinstance(inputs, Variable) or _real(inputs):
        inputs = [inputs]
    elif isinstance(inputs, (str, bytes, Mapping, Set)):
        raise TypeError(
            f"{who}(): inputs must be a list or tuple of Variables or numbers (one per "
            f"argument of f), not {type(inputs).__name__}")
    else:
        try:
            inputs = list(inputs)
        except TypeError:
            raise TypeError(
                f"{who}(): inputs must be a list or tuple of Variables or numbers (one per "
                f"argument of f), not {type(inputs).__name__}") from None
    if not inputs:
        raise ValueError(f"{who}(): inputs is empty; pass one value per argument of f")
    values, names = [], []
    for i, x in enumerate(inputs):
        if isinstance(x, Variable):
            values.append(x.data)
            names.append(x.name)
        elif _real(x):
            values.append(float(x))
            names.append(None)
        else:
            raise TypeError(
                f"{who}(): inputs[{i}] must be a Variable or a real number, "
                f"not {type(x).__name__}")
        if not math.isfinite(values[-1]):
            raise ValueError(
                f"{who}(): inputs[{i}] is {values[-1]!r}; derivatives can only be estimated "
                f"at finite points")
    return values, names


def _check_callable(f, who):
    if not callable(f):
        raise TypeError(
            f"{who}(): f must be a callable (the function to differentiate), not "
            f"{type(f).__name__}; call it as {who}(f, inputs)")


def _check_arity(f, n, who):
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):      # some builtins have no signature: just call them
        return
    try:
        signature.bind(*range(n))
    except TypeError as exc:
        raise TypeError(
            f"{who}(): f is called with {n} positional argument(s), one per input, "
            f"but it does not accept them: {exc}") from None


def _tolerance(x, what, who, *, positive=False):
    if not _real(x):
        raise TypeError(f"{who}(): {what} must be a real number, not {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        need = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{who}(): {what} must be {need}, not {x!r}")
    return x


def _value(out, who):
    """f's result as a float: a Variable or a real number."""
    if isinstance(out, Variable):
        return out.data
    if _real(out):
        return float(out)
    raise TypeError(
        f"{who}(): f must return a Variable or a real number, but it returned "
        f"{type(out).__name__}")


# ---------------------------------------------------------------------------
# the two estimates
# ---------------------------------------------------------------------------

def _central_differences(f, values, names, eps, who):
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for each i, without recording."""
    result = []
    with no_grad():
        for i, x in enumerate(values):
            up, down = x + eps, x - eps
            step = up - down                  # the step actually taken, after rounding
            if step == 0.0:
                raise ValueError(
                    f"{who}(): eps={eps!r} is too small for inputs[{i}] = {x!r} "
                    f"(x + eps rounds to x); use a larger eps")
            args = [Variable(v, name=nm) for v, nm in zip(values, names)]
            args[i] = Variable(up, name=names[i])
            f_up = _value(f(*args), who)
            args[i] = Variable(down, name=names[i])
            f_down = _value(f(*args), who)
            result.append((f_up - f_down) / step)
    return result


def _analytic(f, values, names, who):
    """(f(x), [d f / d x_i]) computed by autograd_c on fresh leaves."""
    with enable_grad():
        leaves = [Variable(v, name=nm) for v, nm in zip(values, names)]
        out = f(*leaves)
        value = _value(out, who)
        if isinstance(out, Variable) and out.requires_grad:
            return value, _grad(out, leaves)
    return value, [0.0] * len(values)        # f did not depend on a recorded Variable


def numerical_grad(f, inputs, eps=1e-6):
    """Estimate the gradient of ``f`` at ``inputs`` by central differences.

    Parameters
    ----------
    f : callable
        Takes ``len(inputs)`` positional arguments (Variables) and returns a
        Variable or a number.  It is evaluated under :func:`autograd_c.no_grad`,
        on new Variables holding the perturbed values, so nothing is recorded
        and the given Variables' ``.data`` and ``.grad`` are not touched.
    inputs : sequence of Variables or numbers
        The point (only the values are used).  A single Variable or number
        is taken as one input.
    eps : float, default 1e-6
        The (absolute) step: ``(f(x + eps) - f(x - eps)) / (2 eps)`` in each
        coordinate, with the step actually taken after rounding.

    Returns
    -------
    list of float
        One derivative per input.  nan or inf where f is not finite nearby.

    Examples
    --------
    >>> import autograd_c as ag
    >>> g = ag.numerical_grad(lambda x, y: x * y + ag.exp(x), [0.0, 3.0])
    >>> [round(d, 6) for d in g]
    [4.0, 0.0]
    """
    _check_callable(f, "numerical_grad")
    values, names = _inputs(inputs, "numerical_grad")
    _check_arity(f, len(values), "numerical_grad")
    eps = _tolerance(eps, "eps", "numerical_grad", positive=True)
    return _central_differences(f, values, names, eps, "numerical_grad")


def _label(i, name):
    return f"input {i} ({name!r})" if name is not None else f"input {i}"


def _g(x):
    return f"{x:.12g}"


def gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Check autograd_c's gradient of ``f`` against central differences.

    For each input the analytic gradient ``a`` (autograd_c, on fresh leaves
    holding the input values: the given Variables' ``.grad`` is not touched)
    and the numeric estimate ``n`` (:func:`numerical_grad`) must satisfy
    ``|a - n| <= atol + rtol * |n|``.  Non-finite values (of f at the point,
    or of either gradient) are reported as failures: gradients cannot be
    checked where f is not finite or not differentiable.

    Parameters
    ----------
    f : callable
        Takes ``len(inputs)`` positional arguments (Variables) and returns a
        Variable or a number (a result that does not depend on the inputs
        has gradient 0).
    inputs : sequence of Variables or numbers
        The point; each input's gradient is checked.
    eps : float, default 1e-6
        Step of the central differences.
    atol, rtol : float, default 1e-5 and 1e-3
        Absolute and relative (to ``|n|``) tolerance.
    raise_exception : bool, default True
        On a mismatch raise :class:`GradcheckError` (its message reports the
        worst mismatch: input, analytic and numeric values, absolute and
        relative error, and the tolerance); if False return False instead.

    Returns
    -------
    bool
        True if every gradient matches.

    Raises
    ------
    TypeError, ValueError
        For bad arguments (whatever raise_exception says).

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.gradcheck(lambda x, y: x ** 2 * ag.tanh(y), [1.5, -0.3])
    True
    >>> wrong = lambda x: ag.sin(x).detach() + (x - x.detach())   # d/dx claimed 1
    >>> ag.gradcheck(wrong, [0.5], raise_exception=False)
    False
    """
    who = "gradcheck"
    _check_callable(f, who)
    values, names = _inputs(inputs, who)
    _check_arity(f, len(values), who)
    eps = _tolerance(eps, "eps", who, positive=True)
    atol = _tolerance(atol, "atol", who)
    rtol = _tolerance(rtol, "rtol", who)

    value, analytic = _analytic(f, values, names, who)
    settings = f"eps={eps:g}, atol={atol:g}, rtol={rtol:g}"
    if not math.isfinite(value):
        if not raise_exception:
            return False
        raise GradcheckError(
            f"gradcheck failed: f({', '.join(map(_g, values))}) = {value!r}; gradients can only be "
            f"checked where f is finite ({settings})")
    numeric = _central_differences(f, values, names, eps, who)

    rows, worst, worst_key = [], None, None
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        finite = math.isfinite(a) and math.isfinite(n)
        err = abs(a - n) if finite else math.inf
        tol = atol + rtol * abs(n) if math.isfinite(n) else math.nan
        rel = err / abs(n) if finite and n != 0 else (0.0 if err == 0 else math.inf)
        ok = finite and err <= tol
        # rank: non-finite first, then by how many tolerances the error spans
        key = (not finite, err / tol if tol > 0 else (0.0 if err == 0 else math.inf))
        rows.append((i, names[i], values[i], a, n, err, rel, tol, ok))
        if not ok and (worst is None or key > worst_key):
            worst, worst_key = rows[-1], key
    if worst is None:
        return True
    if not raise_exception:
        return False

    i, name, x, a, n, err, rel, tol, _ = worst
    failed = sum(not r[-1] for r in rows)
    lines = [
        f"gradcheck failed for {failed} of {len(rows)} input(s) ({settings}).",
        f"Worst mismatch: {_label(i, name)} at {_g(x)}",
        f"  analytic (autograd_c)           = {_g(a)}",
        f"  numeric (central differences)   = {_g(n)}",
    ]
    if math.isfinite(a) and math.isfinite(n):
        lines += [
            f"  abs error |analytic - numeric|  = {err:.6g}",
            f"  rel error (of |numeric|)        = {rel:.6g}",
            f"  tolerance atol + rtol*|numeric| = {tol:.6g}",
        ]
    else:
        which = [side for side, g in (("analytic", a), ("numeric", n)) if not math.isfinite(g)]
        lines.append(
            f"  not finite: the {' and '.join(which)} gradient{'s' if len(which) > 1 else ''}; "
            f"gradients cannot be checked here (f may not "
            f"be differentiable at this point, e.g. sqrt or log at 0 or a kink, or it "
            f"overflows within eps of it)")
    if len(rows) > 1:
        lines.append("All inputs (mismatches first):")
        lines.append(f"  {'input':<16} {'analytic':>14} {'numeric':>14} {'abs error':>10}")
        shown = sorted(rows, key=lambda r: r[-1])[:_MAX_ROWS]
        for r in shown:
            lines.append(f"  {_label(r[0], r[1]):<16} {r[3]:>14.8g} {r[4]:>14.8g} "
                         f"{r[5]:>10.3g}  {'ok' if r[-1] else 'MISMATCH'}")
        if len(rows) > len(shown):
            lines.append(f"  ... {len(rows) - len(shown)} more")
    raise GradcheckError("\n".join(lines), index=i, name=name, analytic=a, numeric=n,
                         abs_error=err, rel_error=rel, tolerance=tol)
