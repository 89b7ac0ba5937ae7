"""Compiled functions: record a computation once, replay it in C for new inputs.

Two ways in:

* ``ag.compile(fn)`` traces ``fn`` on its first call, as ``jax.jit`` and
  ``torch.compile`` do: the function runs once on Variables, its operations
  are recorded, compiled (dead-node elimination, constant folding,
  common-subexpression elimination) and from then on every call replays the
  program in C, with no Python per node.  It traces again when the number
  or lengths of the arguments change, and when the inputs of a call flip a
  comparison the trace made (a *guard*: ``if x > 0:``, ``max(a, b)``,
  ``bool(v)``), keeping a few traces.
* ``ag.compile_graph(outputs, inputs)`` compiles a graph already recorded:
  the leaves in ``inputs`` become the arguments.

Leaves a function uses that are not among its arguments become constants
at the values they have when it is traced (or, for ``compile_graph``, when
the graph was recorded): pass a model's parameters as an argument to have
them as inputs.

A compiled function ``f`` evaluates one row (``f(*args)``,
``f.value_and_grad``, ``f.jacobian``, ``f.backward``, and second
derivatives ``f.hvp``, ``f.hessian`` from compiled_second.py) or, through
``f.vmap(in_axes)``, many rows of NumPy arrays at once, with per-row or
summed gradients, Hessian-vector products and Hessians, on several threads.
Called with a Variable that requires grad while grad recording is on, ``f``
runs its Python function (the result is a recorded graph; a compiled graph
raises TypeError): a number there would silently cut the graph.  Arguments are numbers, leaf
Variables, or lists, tuples and 1-D arrays of them; the function receives
a Variable for each number and a list of Variables for each sequence.
"""
import collections
import functools
import numbers

from . import _core
from ._core import ConcretizationError, GuardError, tracing
from .compiled_second import BatchedSecondOrder, SecondOrder

__all__ = ["compile", "compile_graph", "CompiledFunction", "BatchedFunction", "tracing",
           "ConcretizationError", "GuardError"]


def _np():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is in every extra
        raise ImportError("compiled functions take and return NumPy arrays: pip install numpy") from None
    return numpy


# ---------------------------------------------------------------------------
# outputs: what the function returned, and the results' shapes
# ---------------------------------------------------------------------------

def _is_scalar(o):
    return isinstance(o, (_core.Variable, numbers.Real)) or (
        hasattr(o, "dtype") and getattr(o, "shape", None) == ())


def _flat_outputs(out, has_aux):
    """(list of output Variables/numbers, output structure)."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("with has_aux=True the function must return a pair (value, aux), not "
                            f"{type(out).__name__}")
        value, aux = out
        if not _is_scalar(value):
            raise TypeError(f"with has_aux=True the value must be one Variable or number, not "
                            f"{type(value).__name__}")
        if _is_scalar(aux):
            return [value, aux], ("aux", -1)
        aux = list(aux)
        return [value] + aux, ("aux", len(aux))
    if _is_scalar(out):
        return [out], ("scalar",)
    if isinstance(out, (list, tuple)) or getattr(out, "ndim", None) == 1:
        items = list(out)
        if not items:
            raise ValueError("the function returned an empty sequence: nothing to compile")
        return items, ("vector", len(items))
    raise TypeError(f"a compiled function must return a Variable or number, or a list or tuple of "
                    f"them, not {type(out).__name__}")


def _values(structure, y):
    """The function's value(s) from the output array y (one row, or rows x m)."""
    kind = structure[0]
    one = y.ndim == 1
    if kind == "scalar":
        return float(y[0]) if one else y[:, 0]
    if kind == "vector":
        return y
    value = float(y[0]) if one else y[:, 0]
    if structure[1] < 0:
        aux = float(y[1]) if one else y[:, 1]
    else:
        aux = y[1:] if one else y[:, 1:]
    return value, aux


def _split(shapes, g, batched=None):
    """Per argument, its part of the last axis of g: a float for a scalar
    argument of a 1-D g, else an array; None for batched arguments."""
    parts, at = [], 0
    for i, s in enumerate(shapes):
        count = 1 if s < 0 else s
        if batched is not None and batched[i]:
            parts.append(None)
        elif s < 0:
            parts.append(float(g[at]) if g.ndim == 1 else g[..., at])
        else:
            parts.append(g[..., at:at + count])
        at += count
    return tuple(parts)


def _records_through(args):
    """Whether some argument (or item of a sequence argument) is a Variable
    that requires grad: a call with it must give a graph, not a number."""
    for a in args:
        items = a if isinstance(a, (list, tuple)) else (a,)
        for item in items:
            if isinstance(item, _core.Variable) and item.requires_grad:
                return True
    return False


def _leaf_for(a, value):
    """The Variable standing for argument value a in a trace: a leaf
    Variable argument itself (its gradient is then the argument's), else a
    new leaf holding the value (already checked and converted)."""
    if isinstance(a, _core.Variable) and a.is_leaf and a.requires_grad:
        return a
    return _core.Variable(float(value))


# ---------------------------------------------------------------------------
# CompiledFunction
# ---------------------------------------------------------------------------

class CompiledFunction(SecondOrder):
    """A function compiled for replay; made by :func:`compile` or :func:`compile_graph`.

    Calls take the arguments of the traced function: numbers, leaf
    Variables, or lists, tuples and 1-D NumPy arrays of them.  Results are
    floats for scalars and NumPy arrays for sequences.

    Attributes
    ----------
    stats : dict or None
        Node counts of the program used last: ``tape_nodes`` (recorded),
        ``extracted`` (what the outputs and guards reach), ``after_fold``,
        ``after_cse``, ``after_dce`` (= ``instructions``), ``scalar_nodes``
        (micrograd's count: a dot of k pairs is 2k - 1 nodes), ``guards``,
        ``inputs``, ``constants``, ``functions``, ``compile_seconds``.
        None before the first trace.
    traces : int
        How many traces are kept.
    """

    def __init__(self, fn=None, *, has_aux=False, retrace=True, max_traces=8):
        if fn is not None and not callable(fn):
            raise TypeError(f"ag.compile takes a function, not {type(fn).__name__}")
        if not isinstance(max_traces, int) or max_traces < 1:
            raise ValueError(f"max_traces must be a positive int, not {max_traces!r}")
        self._fn = fn
        self._has_aux = bool(has_aux)
        self._retrace = bool(retrace) and fn is not None
        self._max_traces = max_traces
        self._traces = collections.OrderedDict()     # argument shapes -> [programs], last used first
        self._last = None
        if fn is not None:
            functools.update_wrapper(self, fn, updated=())

    def __repr__(self):
        what = getattr(self._fn, "__qualname__", None) or "a recorded graph"
        return f"<compiled {what}: {self.traces} trace(s)>"

    @property
    def stats(self):
        """Node counts before and after each pass of the program used last (see the class)."""
        return None if self._last is None else self._last.stats

    @property
    def traces(self):
        """How many traces are kept."""
        return sum(len(v) for v in self._traces.values())

    # -- the traces ---------------------------------------------------------

    def _keep(self, shapes, prog):
        progs = self._traces.setdefault(shapes, [])
        if progs and progs[0].meta[1] != prog.meta[1]:
            raise TypeError(f"the function returned {prog.meta[1]} when traced again, but "
                            f"{progs[0].meta[1]} before: a compiled function's outputs must keep "
                            "their structure")
        progs.insert(0, prog)
        self._traces.move_to_end(shapes)
        while self.traces > self._max_traces:
            oldest = next(iter(self._traces))
            self._traces[oldest].pop()
            if not self._traces[oldest]:
                del self._traces[oldest]
        self._last = prog

    def _used(self, shapes, prog):
        progs = self._traces[shapes]
        if progs[0] is not prog:
            progs.remove(prog)
            progs.insert(0, prog)
        self._last = prog

    def _trace(self, args, shapes):
        """Run the Python function on Variables and compile what it recorded."""
        values = _core._flatten_args(args, shapes, _np().empty(sum(1 if s < 0 else s for s in shapes)))
        inputs, traced, at = [], [], 0
        for a, s in zip(args, shapes):
            if s < 0:
                v = _leaf_for(a, values[at])
                traced.append(v)
                inputs.append(v)
                at += 1
            else:
                items = a if isinstance(a, (list, tuple)) else [None] * s
                vs = [_leaf_for(item, values[at + k]) for k, item in enumerate(items)]
                traced.append(vs)
                inputs.extend(vs)
                at += s
        tr = _core._Trace(inputs)
        tr.start()
        try:
            try:
                out = self._fn(*traced)
            finally:
                tr.stop()
            outputs, structure = _flat_outputs(out, self._has_aux)
            prog = _core._compile(outputs, inputs, tr.guards, tr, 1 if structure[0] != "vector" else 0)
        finally:
            tr.close()
        prog.meta = (shapes, structure)
        self._keep(shapes, prog)
        return prog

    # -- one row --------------------------------------------------------------

    def _run(self, args, grads, second=None):
        """(program, y, jac) for one row; jac is n_grad x n_inputs, or None.
        second(prog) instead evaluates second derivatives (compiled_second.py)."""
        np = _np()
        shapes = _core._arg_shapes(args)
        progs = self._traces.get(shapes)
        if progs:
            x = _core._flatten_args(args, shapes, np.empty(progs[0].n_inputs))
            for prog in list(progs):
                try:
                    return self._eval(prog, x, grads, second)
                except GuardError:
                    if not self._retrace:
                        raise
        elif self._fn is None:
            raise TypeError(f"this compiled graph takes arguments shaped {self._shapes_text()} "
                            f"(-1: a number, k: a sequence of k), not {shapes}")
        prog = self._trace(args, shapes)
        x = _core._flatten_args(args, shapes, np.empty(prog.n_inputs))
        try:
            return self._eval(prog, x, grads, second)
        except GuardError as e:   # pragma: no cover - a trace holds at its own inputs
            raise RuntimeError("a fresh trace rejected its own inputs (does a custom Function's "
                               "forward give different values for the same inputs?)") from e

    def _eval(self, prog, x, grads, second=None):
        np = _np()
        if second is not None:
            result = second(prog)
            self._used(prog.meta[0], prog)
            return result
        y = np.empty(prog.n_outputs)
        jac = np.empty((prog.n_grad, prog.n_inputs)) if grads else None
        prog.eval(x, y, None if jac is None else jac.reshape(-1))
        self._used(prog.meta[0], prog)
        return prog, y, jac

    def _shapes_text(self):
        return " or ".join(str(s) for s in self._traces) or "?"

    def _scalar_output(self, prog, what):
        if prog.meta[1][0] == "vector":
            raise TypeError(f"{what} needs a function with one output (or has_aux=True); this one "
                            f"returns {prog.meta[1][1]}: use f.jacobian for all their gradients")

    def __call__(self, *args):
        """The function's value(s) at ``args``: a float, an array for several
        outputs, or ``(value, aux)`` with ``has_aux``.  Inside another traced
        function it runs the Python function instead (inlined in that trace),
        and so it does when an argument is a Variable that requires grad while
        grad recording is on (``ag.grad``, ``backward()``, ``ag.hessian``
        ...): the result is then the recorded graph, as ``jax.jit`` inside
        ``jax.grad``.  A compiled graph has no Python function to run: called
        so, it raises TypeError rather than return a number that would
        silently cut the graph."""
        if self._fn is not None and _core._tracing_now():
            return self._fn(*args)
        if _core.is_grad_enabled() and _records_through(args):
            if self._fn is None:
                raise TypeError(
                    "a compiled graph (ag.compile_graph) was called with a Variable that requires grad "
                    "while grad recording is on: it returns numbers, so gradients through the call "
                    "would be silently lost. Use f.value_and_grad / f.backward / f.hvp for its "
                    "derivatives, pass numbers (v.data) or call it under ag.no_grad(), or compile the "
                    "Python function with ag.compile (then such a call records it)")
            return self._fn(*args)
        prog, y, _ = self._run(args, False)
        return _values(prog.meta[1], y)

    def value_and_grad(self, *args):
        """``(value, grads)``: the value and its gradient with respect to every
        argument, as a tuple with one entry per argument (a float for a
        scalar argument, an array for a sequence), like
        ``jax.value_and_grad(f, argnums=(0, 1, ...))``.  With ``has_aux``:
        ``((value, aux), grads)``."""
        prog, y, jac = self._run(args, True)
        self._scalar_output(prog, "value_and_grad")
        return _values(prog.meta[1], y), _split(prog.meta[0], jac[0])

    def jacobian(self, *args):
        """The Jacobian of the outputs (the value only, with ``has_aux``): per
        argument an array of shape ``(m,) + argument shape`` for m outputs,
        or the gradient's shape for a single output."""
        prog, y, jac = self._run(args, True)
        if prog.meta[1][0] != "vector":
            return _split(prog.meta[0], jac[0])
        return _split(prog.meta[0], jac)

    def backward(self, *args):
        """Evaluate and add the gradient into ``.grad`` of every leaf Variable
        among the arguments (alone or in a list), as ``loss.backward()`` does;
        returns what calling the function returns.  Then step an optimiser."""
        prog, y, jac = self._run(args, True)
        self._scalar_output(prog, "backward")
        _core._add_leaf_grads(args, prog.meta[0], jac[0])
        return _values(prog.meta[1], y)

    def vmap(self, in_axes=0, *, threads=1):
        """A :class:`BatchedFunction`: this function over the rows of arrays.

        Parameters
        ----------
        in_axes : 0, None, or a tuple of them (one per argument)
            As in ``jax.vmap``: 0 takes one row per evaluation from that
            argument (a 1-D array for a scalar argument, a 2-D array of rows
            for a sequence), None shares the argument between all rows.
        threads : int, default 1
            Rows are split between this many threads (the GIL is released).
        """
        return BatchedFunction(self, in_axes, threads)


def compile(fn=None, *, has_aux=False, retrace=True, max_traces=8):
    """Compile a Python function for replay: traced on its first call, replayed in C after.

    Parameters
    ----------
    fn : callable
        Takes numbers (as Variables) and sequences (as lists of Variables)
        and returns a Variable or number, a list or tuple of them (several
        outputs: see ``jacobian``), or with ``has_aux`` a pair ``(value,
        aux)``.  May be given later: ``@ag.compile(has_aux=True)``.
    has_aux : bool, default False
        ``fn`` returns ``(value, aux)``: gradients are of ``value`` only and
        ``aux`` (a Variable or a sequence) comes back with the results, as
        JAX's ``has_aux``.
    retrace : bool, default True
        When a call's inputs flip a guard (a comparison the trace made), trace
        again; False raises :class:`GuardError` instead.
    max_traces : int, default 8
        Traces kept (for different argument lengths and branches); the least
        recently used goes first.

    Returns
    -------
    CompiledFunction

    Examples
    --------
    >>> import autograd_c as ag
    >>> @ag.compile
    ... def f(x, y):
    ...     return ag.tanh(x * y) + x ** 2
    >>> round(f(0.5, 2.0), 6)
    1.011594
    >>> value, (gx, gy) = f.value_and_grad(0.5, 2.0)
    >>> round(gx, 6), round(gy, 6)
    (1.839949, 0.209987)
    """
    if fn is None:
        return lambda f: CompiledFunction(f, has_aux=has_aux, retrace=retrace, max_traces=max_traces)
    return CompiledFunction(fn, has_aux=has_aux, retrace=retrace, max_traces=max_traces)


def compile_graph(outputs, inputs, *, guards=None, has_aux=False):
    """Compile a recorded graph: ``outputs`` as functions of the leaves ``inputs``.

    Parameters
    ----------
    outputs : Variable, or a list or tuple of Variables
        Recorded on this thread.  Several outputs give a Jacobian; with
        ``has_aux``, a pair ``(value, aux)``.
    inputs : list
        The arguments of the compiled function, each a leaf Variable or a
        list of leaf Variables (an argument that is a sequence).  Every other
        leaf the graph uses becomes a constant at the value it was recorded
        with.
    guards : list, optional
        ``tr.guards`` of an ``ag.tracing()`` block the graph was recorded in:
        a call whose inputs flip one of those comparisons raises
        :class:`GuardError`.  A graph recorded outside such a block carries
        no record of the branches its code took.

    Returns
    -------
    CompiledFunction

    Examples
    --------
    >>> import autograd_c as ag
    >>> x, w = ag.Variable(2.0), ag.Variable(3.0)
    >>> y = ag.exp(x * w) / w
    >>> f = ag.compile_graph(y, [x, w])
    >>> round(f(0.0, 1.0), 6)
    1.0
    """
    if isinstance(inputs, _core.Variable):
        inputs = [inputs]
    flat, shapes = [], []
    for j, item in enumerate(inputs):
        if isinstance(item, _core.Variable):
            flat.append(item)
            shapes.append(-1)
        elif isinstance(item, (list, tuple)):
            flat.extend(item)
            shapes.append(len(item))
        else:
            raise TypeError(f"inputs[{j}] must be a leaf Variable or a list of them, not "
                            f"{type(item).__name__}")
    outs, structure = _flat_outputs(outputs, has_aux)
    prog = _core._compile(outs, flat, list(guards or ()), None, 1 if structure[0] != "vector" else 0)
    prog.meta = (tuple(shapes), structure)
    f = CompiledFunction(None, has_aux=has_aux)
    f._keep(tuple(shapes), prog)
    return f


# ---------------------------------------------------------------------------
# BatchedFunction
# ---------------------------------------------------------------------------

_REDUCE = (None, "sum", "mean")


class _Outputs:
    """The result buffers of a batched call, filled by runs of rows."""

    def __init__(self, np, rows, m, n, mg, grads, per_row, values_per_row):
        self.np, self.m, self.n, self.mg = np, m, n, mg
        self.y = np.empty((rows, m)) if values_per_row else None
        self.y_sum = np.zeros(m)
        self.grad_rows = np.empty((rows, mg, n)) if grads and per_row else None
        self.grad_sum = np.zeros((mg, n)) if grads and not per_row else None

    def run(self, prog, args, axes, shapes, start, end, threads):
        """Rows [start, end): per-row results into their rows, sums added."""
        np, m, n, mg = self.np, self.m, self.n, self.mg
        y_sum = self.y_sum if start == 0 else np.zeros(m)
        grad_sum = self.grad_sum if start == 0 or self.grad_sum is None else np.zeros((mg, n))
        prog.eval_batch(args, axes, shapes, start, end, threads,
                        None if self.y is None else self.y.reshape(-1)[start * m:end * m], y_sum,
                        None if self.grad_rows is None else self.grad_rows.reshape(-1)[start * mg * n:end * mg * n],
                        None if grad_sum is None else grad_sum.reshape(-1))
        if start:
            self.y_sum += y_sum
            if grad_sum is not None:
                self.grad_sum += grad_sum

    def mean(self, rows):
        scale = 1.0 / rows if rows else float("nan")
        self.y_sum *= scale
        if self.grad_sum is not None:
            self.grad_sum *= scale


class BatchedFunction(BatchedSecondOrder):
    """A compiled function over rows, made by :meth:`CompiledFunction.vmap`.

    Arguments with axis 0 are NumPy arrays (or anything ``numpy.asarray``
    makes a real array of) whose rows are the rows: 1-D for a scalar
    argument, 2-D for a sequence.  Arguments with axis None are shared by
    every row.  Rows run in blocks through the same compiled program, on
    ``threads`` threads, without the GIL.  Rows whose inputs take other
    branches than the trace are evaluated with the trace of their branch
    (traced when first met), in runs of consecutive rows.
    """

    def __init__(self, compiled, in_axes=0, threads=1):
        if not isinstance(compiled, CompiledFunction):
            raise TypeError("vmap needs a compiled function")
        if in_axes is not None and not isinstance(in_axes, (int, tuple, list)) or isinstance(in_axes, bool):
            raise TypeError(f"in_axes must be 0, None or a tuple of them, not {in_axes!r}")
        for a in (in_axes if isinstance(in_axes, (tuple, list)) else [in_axes]):
            if a is not None and (isinstance(a, bool) or a != 0):
                raise ValueError(f"in_axes entries must be 0 (rows) or None (shared), not {a!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
            raise ValueError(f"threads must be an int from 1 to 256, not {threads!r}")
        self.compiled = compiled
        self.in_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        self.threads = threads

    def __repr__(self):
        return f"<batched {self.compiled!r}, in_axes={self.in_axes!r}, threads={self.threads}>"

    def _prepare(self, args):
        """(arguments with rows as float64 arrays, axes, per-row shapes, rows)."""
        axes = self.in_axes if isinstance(self.in_axes, tuple) else (self.in_axes,) * len(args)
        if len(axes) != len(args):
            raise TypeError(f"in_axes has {len(axes)} entries for {len(args)} arguments")
        if all(a is None for a in axes):
            raise ValueError("vmap needs at least one argument with axis 0 (the rows)")
        norm, shapes, rows = _core._batch_args(args, axes)
        return norm, axes, shapes, rows

    def _row(self, args, axes, r):
        return tuple(a if ax is None else (float(a[r]) if a.ndim == 1 else a[r]) for a, ax in zip(args, axes))

    def _run(self, args, grads, reduce):
        """Evaluate every row: (program, y, y_sum, grad_rows, grad_sum, axes);
        y is None in reduced modes without aux outputs, grad_* None without grads."""
        if reduce not in _REDUCE:
            raise ValueError(f"reduce must be None, 'sum' or 'mean', not {reduce!r}")

        def make(np, rows, prog, args, axes, shapes):
            m, n, mg = prog.n_outputs, prog.n_inputs, prog.n_grad
            return _Outputs(np, rows, m, n, mg, grads, reduce is None,
                            reduce is None or prog.meta[1][0] == "aux")

        prog, out, axes = self._run_out(args, reduce, make)
        return prog, out.y, out.y_sum, out.grad_rows, out.grad_sum, axes

    def _run_out(self, args, reduce, make):
        """Evaluate every row into make(np, rows, program, args, axes,
        shapes) (an object with run(...) and mean(rows)): (program, it, axes)."""
        np = _np()
        c = self.compiled
        args, axes, shapes, rows = self._prepare(args)
        if not c._traces.get(shapes):
            if c._fn is None:
                raise TypeError(f"this compiled graph takes arguments shaped {c._shapes_text()}, "
                                f"not {shapes} per row")
            if rows == 0:
                raise ValueError("cannot trace the function on an empty batch")
            c._trace(self._row(args, axes, 0), shapes)
        prog = c._traces[shapes][0]
        out = make(np, rows, prog, args, axes, shapes)
        start, fresh = 0, None
        while True:
            for prog in list(c._traces[shapes]):
                end = self._segment(prog, args, axes, shapes, start, rows, out)
                if end is not None:
                    c._used(shapes, prog)
                    fresh = None
                    break
                if prog is fresh:
                    raise RuntimeError("a fresh trace rejected its own inputs (does a custom "
                                       "Function's forward give different values for the same "
                                       "inputs?)")
            else:
                fresh = c._trace(self._row(args, axes, start), shapes)
                continue
            start = end
            if start >= rows:
                break
        if reduce == "mean":
            out.mean(rows)
        return prog, out, axes

    def _segment(self, prog, args, axes, shapes, start, rows, out):
        """Rows from start on with prog: the row it stopped at (rows, or the
        first row that flips one of its guards), or None if it flips at start."""
        end = rows
        try:
            out.run(prog, args, axes, shapes, start, end, self.threads)
        except GuardError as e:
            if not self.compiled._retrace:
                raise
            if e.row == start:
                return None
            end = e.row               # the rows before it hold every guard
            out.run(prog, args, axes, shapes, start, end, self.threads)
        return end

    def __call__(self, *args):
        """The value(s) of every row: an array of ``rows`` values (``rows x m``
        for several outputs; ``(values, aux)`` with ``has_aux``).  A shared
        argument that is a Variable requiring grad (grad recording on) is a
        TypeError: the numbers returned would cut its graph (use
        ``value_and_grad`` or ``backward``)."""
        if _core.is_grad_enabled() and _records_through(args):
            raise TypeError(
                "a batched compiled function was called with a Variable that requires grad while grad "
                "recording is on: it returns numbers, so gradients through the call would be silently "
                "lost. Use .value_and_grad(..., reduce=...) or .backward(...) for the gradients, or "
                "pass numbers (v.data) or call it under ag.no_grad()")
        prog, y, _, _, _, _ = self._run(args, False, None)
        return _values(prog.meta[1], y)

    def value_and_grad(self, *args, reduce=None):
        """Values and gradients over the rows.

        Parameters
        ----------
        reduce : None, 'sum' or 'mean'
            None: per-row values (``rows``) and per-row gradients (per
            argument ``(rows,) + argument shape``), as
            ``vmap(value_and_grad(f))``.  'sum' / 'mean': the sum (mean) of
            the rows' values as a float and its gradient with respect to the
            shared arguments (None for the arguments with rows), as
            ``value_and_grad(lambda p: vmap(f, in_axes)(p, ...).mean())``:
            the training case.  With ``has_aux`` the value is ``(value,
            aux)`` and aux is per row.
        """
        prog, y, y_sum, grad_rows, grad_sum, axes = self._run(args, True, reduce)
        self.compiled._scalar_output(prog, "value_and_grad")
        structure, shapes = prog.meta[1], prog.meta[0]
        if reduce is None:
            return _values(structure, y), _split(shapes, grad_rows[:, 0, :])
        value = float(y_sum[0])
        if structure[0] == "aux":
            value = (value, _values(structure, y)[1])
        return value, _split(shapes, grad_sum[0], [ax is not None for ax in axes])

    def jacobian(self, *args):
        """Per-row Jacobians: per argument ``(rows, m) + argument shape`` for m
        outputs (``(rows,) + argument shape`` for one)."""
        prog, y, _, grad_rows, _, _ = self._run(args, True, None)
        if prog.meta[1][0] != "vector":
            return _split(prog.meta[0], grad_rows[:, 0, :])
        return _split(prog.meta[0], grad_rows)

    def backward(self, *args, reduce="sum"):
        """The summed (or mean) value over the rows, with its gradient added
        into ``.grad`` of the leaf Variables among the shared arguments, as
        ``loss.backward()`` would; returns the value (``(value, aux)`` with
        ``has_aux``).  Then step an optimiser."""
        if reduce is None:
            raise ValueError("backward needs reduce='sum' or 'mean'")
        prog, y, y_sum, _, grad_sum, axes = self._run(args, True, reduce)
        self.compiled._scalar_output(prog, "backward")
        shared = tuple(a if ax is None else None for a, ax in zip(args, axes))
        _core._add_leaf_grads(shared, prog.meta[0], grad_sum[0])
        value = float(y_sum[0])
        if prog.meta[1][0] == "aux":
            return value, _values(prog.meta[1], y)[1]
        return value
