"""Second derivatives of compiled functions: Hessian-vector products and Hessians.

The methods ``hvp`` and ``hessian`` of :class:`~autograd_c.compiled.CompiledFunction`
and :class:`~autograd_c.compiled.BatchedFunction` (mixed in from here).  They
evaluate the compiled program in C by the forward-over-reverse pattern of
``ag.hvp`` (src/replay_higher.cpp): per row a forward pass, then per
direction a tangent pass and a reverse pass in dual numbers, with every
opcode's rule taken from the adjoint columns of src/ops.h.  No Python runs
per node; batched calls release the GIL and split rows between threads.

Names and argument order follow the compiled gradient API and
``torch.autograd.functional.hvp`` / ``jax.jvp``: the vector ``v`` comes after
the arguments, shaped like them (a tuple with one entry per argument, as
``value_and_grad`` returns gradients), and ``hvp`` returns ``(value, H v)``.
"""
from . import _core

__all__ = []


def _np():
    from .compiled import _np
    return _np()


def _tangent_entry(entry, shape, i, rows=None):
    """One argument's tangent, checked: a float (a number) or a float64
    array shaped like the argument (with rows first for axis 0); None: no
    tangent along that argument."""
    if entry is None:
        return None
    np = _np()
    want = (() if shape < 0 else (shape,)) if rows is None else ((rows,) if shape < 0 else (rows, shape))
    if isinstance(entry, _core.Variable):
        entry = entry.data
    kind = getattr(getattr(entry, "dtype", None), "kind", "f")
    try:
        if isinstance(entry, complex) or kind not in "fiub":
            raise TypeError
        arr = np.asarray(entry, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"v[{i}] must be real numbers shaped like argument {i}, not "
                        f"{type(entry).__name__}") from None
    if arr.shape != want:
        raise ValueError(f"v[{i}] has shape {arr.shape}; argument {i} needs {want}"
                         + (" (its rows first: in_axes is 0)" if rows is not None else ""))
    if rows is None and shape < 0:
        return float(arr)
    return np.require(arr, np.float64, ("C", "A"))     # aligned: C reads it as doubles


def _tangents(v, shapes, axes=None, rows=None):
    """v as one checked entry per argument; a function of one argument may
    take the entry alone."""
    if len(shapes) == 1 and not (isinstance(v, (tuple, list)) and len(v) == 1
                                 and shapes[0] != 1):
        v = (v,)
    if not isinstance(v, (tuple, list)) or len(v) != len(shapes):
        raise TypeError(f"v must have one entry per argument ({len(shapes)}), shaped like it (as "
                        "value_and_grad returns the gradients), or None for no tangent along it")
    return tuple(_tangent_entry(e, s, i, None if axes is None or axes[i] is None else rows)
                 for i, (e, s, ax) in enumerate(zip(v, shapes, axes or (None,) * len(shapes))))


def _split_args(args_and_v, what):
    if not args_and_v:
        raise TypeError(f"{what} takes the function's arguments and then v: f.{what}(*args, v)")
    return tuple(args_and_v[:-1]), args_and_v[-1]


def _hessian_shape(h, shapes):
    """A float for a function of one number, else the (n, n) array."""
    if len(shapes) == 1 and shapes[0] < 0:
        return float(h[0, 0])
    return h


class SecondOrder:
    """``hvp`` and ``hessian`` of one call (mixed into CompiledFunction)."""

    def _second(self, args, v, hess):
        """(program, y, grad, hvp, hess) for one row."""
        np = _np()
        out = {}

        def evaluate(prog):
            self._scalar_output(prog, "hvp" if v is not None else "hessian")
            shapes = prog.meta[0]
            vargs = None if v is None else _tangents(v, shapes)
            n, m = prog.n_inputs, prog.n_outputs
            y, grad = np.empty(m), np.empty(n)
            hv = np.empty(n) if vargs is not None else None
            h = np.empty((n, n)) if hess else None
            _core._eval_second(prog, tuple(args), (None,) * len(args), shapes, vargs,
                               b"\x01" * n if hess else None, 0, 1, 1, y, None, None, grad, None,
                               hv, None, None if h is None else h.reshape(-1))
            out["r"] = (prog, y, grad, hv, h)
            return prog, y, None

        self._run(args, False, second=evaluate)
        return out["r"]

    def hvp(self, *args_and_v):
        """``(value, hvp)``: the value at ``args`` and the Hessian of the
        (scalar) output times ``v``, as ``torch.autograd.functional.hvp``.

        Called as ``f.hvp(*args, v)``: ``v`` has one entry per argument
        shaped like it (a number, or a sequence for a sequence argument), as
        :meth:`value_and_grad` returns gradients, or None for no tangent
        along that argument; a function of one argument may take the entry
        alone.  ``hvp`` is shaped the same way: a tuple with one entry per
        argument.  With ``has_aux`` the value is ``(value, aux)``.  One
        tangent pass and one reverse pass in dual numbers (about three
        gradients' cost).
        """
        from .compiled import _split, _values
        args, v = _split_args(args_and_v, "hvp")
        prog, y, _, hv, _ = self._second(args, v, False)
        return _values(prog.meta[1], y), _split(prog.meta[0], hv)

    def hessian(self, *args):
        """The dense Hessian of the (scalar) output at ``args``, with respect
        to every input in argument order (a sequence argument contributes
        one row and column per item): an ``(n, n)`` array, a float for a
        function of one number.  Symmetric to the last bit: n
        Hessian-vector products, then each pair ``H[j, k]``, ``H[k, j]``
        becomes their mean, as ``ag.hessian``.
        """
        prog, _, _, _, h = self._second(args, None, True)
        return _hessian_shape(h, prog.meta[0])


class _SecondOutputs:
    """The result buffers of a batched second-order call, filled by runs of rows."""

    def __init__(self, np, rows, prog, per_row, want_hvp, h_on):
        m, n = prog.n_outputs, prog.n_inputs
        nh = 0 if h_on is None else sum(h_on)
        self.np, self.m, self.n, self.nh = np, m, n, nh
        self.y = np.empty((rows, m))
        self.y_sum = np.zeros(m)
        self.hvp_rows = np.empty((rows, n)) if want_hvp and per_row else None
        self.hvp_sum = np.zeros(n) if want_hvp and not per_row else None
        self.hess_rows = np.empty((rows, nh, nh)) if h_on is not None and per_row else None
        self.hess_sum = np.zeros((nh, nh)) if h_on is not None and not per_row else None
        self.h_on = h_on
        self.vargs = None           # the tangents, checked (set by the caller)

    def run(self, prog, args, axes, shapes, start, end, threads):
        np, m, n, nh = self.np, self.m, self.n, self.nh
        sums = [self.y_sum, self.hvp_sum, self.hess_sum]
        if start:
            sums = [None if s is None else np.zeros_like(s) for s in sums]
        rows = lambda a, width: None if a is None else a.reshape(-1)[start * width:end * width]
        flat = lambda a: None if a is None else a.reshape(-1)
        _core._eval_second(prog, args, axes, shapes, self.vargs,
                           None if self.h_on is None else bytes(self.h_on), start, end, threads,
                           rows(self.y, m), flat(sums[0]), None, None, rows(self.hvp_rows, n),
                           flat(sums[1]), rows(self.hess_rows, nh * nh), flat(sums[2]))
        if start:
            for mine, part in zip((self.y_sum, self.hvp_sum, self.hess_sum), sums):
                if mine is not None:
                    mine += part

    def mean(self, rows):
        scale = 1.0 / rows if rows else float("nan")
        for s in (self.y_sum, self.hvp_sum, self.hess_sum):
            if s is not None:
                s *= scale


class BatchedSecondOrder:
    """``hvp`` and ``hessian`` over rows (mixed into BatchedFunction)."""

    def _second(self, args, v, hessian, reduce):
        from .compiled import _REDUCE
        if reduce not in _REDUCE:
            raise ValueError(f"reduce must be None, 'sum' or 'mean', not {reduce!r}")

        def make(np, rows, prog, args, axes, shapes):
            self.compiled._scalar_output(prog, "hvp" if v is not None else "hessian")
            vargs = None if v is None else _tangents(v, shapes, axes, rows)
            h_on = None
            if hessian:
                h_on = []
                for s, ax in zip(shapes, axes):
                    h_on += [1 if reduce is None or ax is None else 0] * (1 if s < 0 else s)
                if not any(h_on):
                    raise ValueError("a summed Hessian is with respect to the shared arguments "
                                     "(in_axes None), and this call has none")
            out = _SecondOutputs(np, rows, prog, reduce is None, v is not None, h_on)
            out.vargs = vargs
            return out

        return self._run_out(args, reduce, make)

    def hvp(self, *args_and_v, reduce=None):
        """Hessian-vector products over the rows.

        Called as ``fb.hvp(*args, v, reduce=None)``; ``v`` has one entry per
        argument as in :meth:`CompiledFunction.hvp`, with rows first for
        the arguments with axis 0 (their tangents per row), or None.

        reduce None: ``(values, hvps)``, per row: values ``(rows,)`` and per
        argument ``(rows,) + argument shape``, as ``vmap(hvp)``.  'sum' /
        'mean': ``(value, hvp)`` of the sum (mean) of the rows' values, the
        product with respect to the shared arguments (None for the
        arguments with rows), as a Newton-CG step over parameters needs.
        With ``has_aux`` the value is ``(value, aux)``, aux per row.
        """
        from .compiled import _split, _values
        args, v = _split_args(args_and_v, "hvp")
        prog, out, axes = self._second(args, v, False, reduce)
        structure, shapes = prog.meta[1], prog.meta[0]
        if reduce is None:
            return _values(structure, out.y), _split(shapes, out.hvp_rows)
        value = float(out.y_sum[0])
        if structure[0] == "aux":
            value = (value, _values(structure, out.y)[1])
        return value, _split(shapes, out.hvp_sum, [ax is not None for ax in axes])

    def hessian(self, *args, reduce=None):
        """Hessians over the rows: reduce None gives ``(rows, n, n)``, each
        row's Hessian with respect to all its inputs in argument order;
        'sum' / 'mean' the ``(ns, ns)`` Hessian of the sum (mean) of the
        rows' values with respect to the shared arguments' ns inputs.
        Symmetric to the last bit."""
        prog, out, _ = self._second(args, None, True, reduce)
        return out.hess_rows if reduce is None else out.hess_sum
