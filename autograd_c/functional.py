"""Derivatives of functions, as ``torch.autograd.functional``: jvp, vjp, hvp, hessian, jacobian.

Each function calls ``f`` once, on fresh leaf Variables holding the input
values (with grad recording on), then runs sweeps in C over that one
recording: no new node is recorded and no ``.grad`` is touched.

* ``jvp``: one tangent (forward-mode) sweep;
* ``vjp``: one reverse sweep from all outputs at once;
* ``hvp``: a tangent sweep, then a forward-over-reverse sweep (the adjoints
  as dual numbers), as ADOL-C's ``hess_vec``; about three backward passes;
* ``hessian``: ``n`` such products over the same recording, made symmetric;
* ``jacobian``: ``m`` reverse sweeps (``strategy="reverse-mode"``, the
  default, as PyTorch) or ``n`` tangent sweeps (``"forward-mode"``).

``f`` takes the inputs as separate Variables (``f(x0, x1, ...)``) and
returns a Variable, a number, or a list or tuple of them.  ``inputs`` is a
number (then results are floats where PyTorch would give 0-d tensors) or a
sequence or 1-D NumPy array of numbers (results are NumPy arrays).
Results follow ``torch.autograd.functional`` in names, argument order and
shapes: a Jacobian is ``output shape + input shape``.  Second derivatives
through a custom Function need ``differentiable_backward = True`` on it
(see :class:`autograd_c.Function`).

``f`` may be a compiled function: one made by ``ag.compile`` runs its
Python function on the Variables (recorded as usual); one made by
``ag.compile_graph`` has none, so its program gives the derivatives (its
arguments must then be numbers, one per input).
"""
import array
import math

from . import _core

__all__ = ["jvp", "vjp", "hvp", "hessian", "jacobian"]


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is in the test extra
        raise ImportError(
            "autograd_c.functional returns NumPy arrays for sequence inputs or outputs; "
            "install NumPy (pip install numpy) or pass a single number") from None
    return numpy


def _as_number(x, what):
    if isinstance(x, (str, bytes, complex)):
        raise TypeError(f"{what} must be real numbers, not {type(x).__name__}")
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be real numbers, not {type(x).__name__}") from None


def _is_scalar(x):
    if isinstance(x, (list, tuple, array.array)):
        return False
    shape = getattr(x, "shape", None)
    if shape is not None:
        if len(shape) > 1:
            raise ValueError(f"expected a number or a 1-D sequence, got an array of shape {shape}")
        return len(shape) == 0
    return not hasattr(x, "__len__")


def _as_vector(x, what):
    """(a buffer of doubles, is it a single number)"""
    if _is_scalar(x):
        return _buffer([_as_number(x, what)]), True
    if hasattr(x, "__array__"):
        np = _numpy()
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":      # complex would lose its imaginary part silently
            raise TypeError(f"{what} must be real numbers, not an array of dtype {a.dtype}")
        # aligned too: a buffer at an odd address is copied, never read as doubles in place
        return np.require(a, dtype=float, requirements=("C", "A")), False
    try:
        return array.array("d", x), False          # converts in C (floats, ints, Variables)
    except TypeError:
        for item in x:
            _as_number(item, what)                   # names the offending item's type
        raise


def _vector_like(v, n, scalar, what):
    """v given for something of n numbers (a single number if scalar)."""
    if v is None:
        if n != 1:
            raise ValueError(f"{what} can be omitted only for a single number")
        return _buffer([1.0])
    values, v_scalar = _as_vector(v, what)
    if len(values) != n or (v_scalar and not scalar and n != 1):
        raise ValueError(f"{what} has {len(values)} numbers, expected {n}")
    return values


def _buffer(values):
    return array.array("d", values)


def _zeros(n):
    return array.array("d", bytes(8 * n))


def _shaped(buf, scalar):
    """A float for a single number, else a NumPy array."""
    if scalar:
        return float(buf[0])
    return _numpy().array(buf, dtype=float)


class _GraphCall:
    """A compiled graph (``ag.compile_graph``) given to these functions: it
    has no Python function to record, so its program gives the derivatives
    (its Jacobian in C; hvp and hessian by its compiled second-order
    sweeps).  Its arguments must all be numbers, one per input."""

    def __init__(self, f, inputs, what):
        values, self.scalar_in = _as_vector(inputs, "inputs")
        if len(values) == 0:
            raise ValueError("inputs is empty: f needs at least one input")
        self.f, self.args = f, tuple(float(x) for x in values)
        prog, self.y, self.jac = f._run(self.args, True)
        if prog.meta[1][0] == "aux":
            raise TypeError(f"{what} needs a compiled graph without has_aux (its value and aux "
                            "would be two outputs): compile it with has_aux=False")
        self.sequence = prog.meta[1][0] == "vector"
        self.m, self.n = self.jac.shape

    def value(self):
        return _shaped(_buffer(self.y), not self.sequence)


def _graph(f, what):
    """Whether f is a compiled graph (see _GraphCall)."""
    from .compiled import CompiledFunction
    return isinstance(f, CompiledFunction) and f._fn is None


def _record(f, inputs):
    if not callable(f):
        raise TypeError(f"f must be callable, not {type(f).__name__}")
    values, scalar_in = _as_vector(inputs, "inputs")
    if len(values) == 0:
        raise ValueError("inputs is empty: f needs at least one input")
    return _core._record(f, values), scalar_in


def _single_output(rec, name):
    if rec.sequence and len(rec.outputs) != 1:
        raise ValueError(
            f"{name} needs f to return a single Variable (a scalar function), "
            f"not {len(rec.outputs)} outputs")


def jvp(f, inputs, v=None):
    """The value of ``f`` and its directional derivative: (f(x), J v).

    One forward (tangent) sweep in C over one recording of ``f``.

    Parameters
    ----------
    f : callable
        ``f(x0, x1, ...)`` with each input as a Variable; returns a
        Variable, a number, or a list/tuple of them.
    inputs : number or sequence of numbers
        The point x.
    v : number or sequence of numbers, optional
        The direction, shaped like ``inputs`` (may be omitted for a single
        number: 1.0).

    Returns
    -------
    value, jvp : float or numpy.ndarray
        f(x) and J v, each a float for a single output, else an array of
        the m outputs.

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.jvp(lambda x, y: x * y + ag.sin(x), [0.0, 2.0], [1.0, 0.0])
    (0.0, 3.0)
    >>> ag.jvp(lambda x, y: [x * y, x - y], [1.0, 2.0], [1.0, 1.0])
    (array([ 2., -1.]), array([3., 0.]))
    >>> ag.jvp(lambda x: x ** 3, 2.0)
    (8.0, 12.0)
    """
    if _graph(f, "jvp()"):
        g = _GraphCall(f, inputs, "jvp()")
        tangents = _numpy().asarray(_vector_like(v, g.n, g.scalar_in, "v"))
        return g.value(), _shaped(_buffer(g.jac @ tangents), not g.sequence)
    rec, scalar_in = _record(f, inputs)
    tangents = _vector_like(v, len(rec.leaves), scalar_in, "v")
    out = _zeros(len(rec.outputs))
    rec.jvp(tangents, out)
    return _shaped(_buffer(rec.values()), not rec.sequence), _shaped(out, not rec.sequence)


def vjp(f, inputs, v=None):
    """The value of ``f`` and a vector-Jacobian product: (f(x), v^T J).

    One reverse sweep in C from all outputs at once (only what they reach
    propagates, as in PyTorch).

    Parameters
    ----------
    f : callable
        As in :func:`jvp`.
    inputs : number or sequence of numbers
        The point x.
    v : number or sequence of numbers, optional
        One weight per output (may be omitted when f returns one Variable).

    Returns
    -------
    value : float or numpy.ndarray
        f(x).
    vjp : float or numpy.ndarray
        v^T J, shaped like ``inputs``.

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.vjp(lambda x, y: [x * y, x + y], [2.0, 3.0], [1.0, 10.0])
    (array([6., 5.]), array([13., 12.]))
    """
    if _graph(f, "vjp()"):
        g = _GraphCall(f, inputs, "vjp()")
        seeds = _numpy().asarray(_vector_like(v, g.m, not g.sequence, "v"))
        return g.value(), _shaped(_buffer(seeds @ g.jac), g.scalar_in)
    rec, scalar_in = _record(f, inputs)
    seeds = _vector_like(v, len(rec.outputs), not rec.sequence, "v")
    out = _zeros(len(rec.leaves))
    rec.vjp(seeds, out)
    return _shaped(_buffer(rec.values()), not rec.sequence), _shaped(out, scalar_in)


def hvp(f, inputs, v=None):
    """The value of a scalar ``f`` and a Hessian-vector product: (f(x), H v).

    A tangent sweep along v, then one forward-over-reverse sweep (every
    adjoint a dual number), over one recording of ``f`` (ADOL-C's
    ``hess_vec``): about the cost of three backward passes.

    Parameters
    ----------
    f : callable
        As in :func:`jvp`, returning one Variable.
    inputs : number or sequence of numbers
        The point x.
    v : number or sequence of numbers, optional
        The vector, shaped like ``inputs`` (may be omitted for a single
        number: 1.0).

    Returns
    -------
    value : float
        f(x).
    hvp : float or numpy.ndarray
        H v, shaped like ``inputs``.

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.hvp(lambda x, y: x ** 2 * y, [1.0, 3.0], [1.0, 0.0])
    (3.0, array([6., 2.]))
    """
    if _graph(f, "hvp()"):
        g = _GraphCall(f, inputs, "hvp()")
        vec = tuple(_vector_like(v, g.n, g.scalar_in, "v"))
        _, y, _, out, _ = f._second(g.args, vec, False)
        return float(y[0]), _shaped(out, g.scalar_in)
    rec, scalar_in = _record(f, inputs)
    _single_output(rec, "hvp()")
    vec = _vector_like(v, len(rec.leaves), scalar_in, "v")
    grad, out = _zeros(len(rec.leaves)), _zeros(len(rec.leaves))
    rec.hvp(vec, grad, out)
    return rec.values()[0], _shaped(out, scalar_in)


def hessian(f, inputs):
    """The Hessian of a scalar ``f`` at ``inputs``: n x n, symmetric.

    n Hessian-vector products (one per input) over one recording of ``f``;
    each pair H[j, k], H[k, j] is then replaced by its mean, so the result is
    symmetric to the last bit.

    Parameters
    ----------
    f : callable
        As in :func:`jvp`, returning one Variable.
    inputs : number or sequence of numbers
        The point x.

    Returns
    -------
    float or numpy.ndarray
        A float for a single number, else an (n, n) array.

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.hessian(lambda x, y: x ** 2 * y + ag.exp(y), [1.0, 0.0])
    array([[0., 2.],
           [2., 1.]])
    """
    if _graph(f, "hessian()"):
        g = _GraphCall(f, inputs, "hessian()")
        h = f._second(g.args, None, True)[4]
        return float(h[0, 0]) if g.scalar_in else h
    rec, scalar_in = _record(f, inputs)
    _single_output(rec, "hessian()")
    n = len(rec.leaves)
    out = _zeros(n * n)
    rec.hessian(out)
    if scalar_in:
        return float(out[0])
    return _numpy().array(out, dtype=float).reshape(n, n)


def jacobian(f, inputs, strategy="reverse-mode"):
    """The Jacobian of ``f`` at ``inputs``: d output_o / d input_j.

    Parameters
    ----------
    f : callable
        As in :func:`jvp`.
    inputs : number or sequence of numbers
        The point x.
    strategy : {"reverse-mode", "forward-mode"}
        One reverse sweep per output (the default, as PyTorch) or one
        tangent sweep per input; pick the side with fewer sweeps.

    Returns
    -------
    float or numpy.ndarray
        Shaped output shape + input shape: (m, n); (n,) for a single
        output, (m,) for a single input, a float for both.

    Examples
    --------
    >>> import autograd_c as ag
    >>> ag.jacobian(lambda x, y: [x * y, x + y, ag.exp(x)], [0.0, 2.0])
    array([[2., 0.],
           [1., 1.],
           [1., 0.]])
    """
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f"strategy must be 'reverse-mode' or 'forward-mode', not {strategy!r}")
    if _graph(f, "jacobian()"):
        g = _GraphCall(f, inputs, "jacobian()")
        if g.scalar_in and not g.sequence:
            return float(g.jac[0, 0])
        return g.jac.copy() if g.sequence and not g.scalar_in else g.jac.reshape(-1).copy()
    rec, scalar_in = _record(f, inputs)
    m, n = len(rec.outputs), len(rec.leaves)
    out = _zeros(m * n)
    rec.jacobian(strategy == "forward-mode", out)
    if scalar_in and not rec.sequence:
        return float(out[0])
    result = _numpy().array(out, dtype=float)
    if rec.sequence and not scalar_in:
        return result.reshape(m, n)
    return result
