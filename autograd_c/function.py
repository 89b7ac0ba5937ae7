"""Custom differentiable functions: the user writes the forward value and the
backward rule; autograd_c records one node for each call.

The node lives on the tape like any other operation.  Only during
``backward()`` does the C sweep call back into Python, and only for these
nodes, and only where gradient flows (an incoming gradient of exactly 0
skips the call).
"""
import threading

from . import _core

__all__ = ["Function"]

_thread = threading.local()


def _calls_in_progress():
    """This thread's Function calls in progress: [(fn, inputs, output), ...]."""
    try:
        return _thread.calls
    except AttributeError:
        _thread.calls = []
        return _thread.calls


class Function:
    """Base class of custom differentiable functions, as in DeZero and
    ``torch.autograd.Function``.

    Subclass it with ``forward(self, *xs)``, which gets the input values
    as floats and returns the output value, and ``backward(self, gy)``,
    which gets d(loss)/d(output) and returns d(loss)/d(input): a float for
    one input, a tuple of floats (``None`` meaning 0) for several.  In
    both, ``self.inputs`` is the tuple of input values and ``self.output``
    the output value of the call being differentiated, so one instance
    can be called many times.

    ``backward`` runs inside ``y.backward()`` with grad recording off; it
    must not record operations or assign ``.data``/``.grad``.  An exception
    it raises comes out of ``y.backward()`` with its traceback, leaves'
    gradients are left as they were before that call, and the graph can be
    used again.  Do not keep Variables on the instance: the tape holds the
    instance while its node is alive.

    Higher order.  Forward mode (``ag.jvp``, ``ag.jacobian``, the first
    half of ``ag.hvp``) asks ``jvp(self, *tangents)``, which by default is
    derived from ``backward(1.0)``; override it for a cheaper rule.
    Second derivatives through a Function (``create_graph=True``,
    ``ag.hvp``, ``ag.hessian``) differentiate its backward: write backward
    with autograd_c operations (``ag.sigmoid(x)``, not ``math.exp``) and set
    the class attribute ``differentiable_backward = True``; in those
    passes ``self.inputs``, ``self.output`` and ``gy`` are Variables (as in
    DeZero), in first-order passes floats.  Without it such passes raise
    ``RuntimeError`` naming the Function.

    Examples
    --------
    >>> import math
    >>> import autograd_c as ag
    >>> class Exp(ag.Function):
    ...     def forward(self, x):
    ...         return math.exp(x)
    ...     def backward(self, gy):
    ...         return self.output * gy
    >>> x = ag.Variable(1.0)
    >>> y = Exp()(x) * 2
    >>> y.backward()
    >>> round(x.grad, 6)
    5.436564

    Differentiable twice, with a forward rule:

    >>> class Sin(ag.Function):
    ...     differentiable_backward = True
    ...     def forward(self, x):
    ...         return math.sin(x)
    ...     def backward(self, gy):
    ...         (x,) = self.inputs
    ...         return gy * ag.cos(x)
    ...     def jvp(self, dx):
    ...         (x,) = self.inputs
    ...         return dx * math.cos(x)
    >>> value, hv = ag.hvp(lambda v: Sin()(v), 0.5, 1.0)
    >>> round(hv, 6) == round(-math.sin(0.5), 6)
    True
    """

    #: True if backward() is written with autograd_c operations, so that
    #: create_graph passes (and hvp/hessian) can differentiate it.
    differentiable_backward = False

    # inputs and output are per thread: one instance may be in use in
    # several threads' forward or backward calls at once.  A thread's calls
    # in progress are a stack in one module-level threading.local, so an
    # instance holds no per-thread state of its own (one instance per call,
    # the `Softplus()(x)` pattern, costs a few hundred bytes); between calls
    # the values of the latest call are kept on the instance.
    @property
    def inputs(self):
        """The input values (floats) of the call being computed or differentiated."""
        return self._values()[0]

    @inputs.setter
    def inputs(self, values):
        self.__dict__["_autograd_c_last"] = (values, self._values()[1])

    @property
    def output(self):
        """The output value (a float) of the call being differentiated."""
        return self._values()[1]

    @output.setter
    def output(self, value):
        self.__dict__["_autograd_c_last"] = (self._values()[0], value)

    def _values(self):
        """(inputs, output) of this thread's innermost call of self in
        progress, else of the latest call."""
        for fn, inputs, output in reversed(_calls_in_progress()):
            if fn is self:
                return inputs, output
        return self.__dict__.get("_autograd_c_last", ((), None))

    def __call__(self, *inputs):
        """Apply the function: a Variable (a constant one if no input
        requires grad, or under no_grad)."""
        if not inputs:
            raise TypeError(f"{type(self).__name__}() needs at least one input")
        values = _core._input_values(inputs, self)
        calls = _calls_in_progress()
        calls.append((self, values, None))
        try:
            y = self.forward(*values)
        finally:
            calls.pop()
        result = _core._record_function(self, inputs, y)
        self.__dict__["_autograd_c_last"] = (values, float(y))   # (result.data would refuse while tracing)
        return result

    def _forward_call(self, inputs):
        """Called by a compiled function's replay for a node this Function recorded."""
        calls = _calls_in_progress()
        calls.append((self, inputs, None))
        try:
            return self.forward(*inputs)
        finally:
            calls.pop()

    def _backward_call(self, inputs, output, gy):
        """Called by the core's sweep for a node this Function recorded."""
        calls = _calls_in_progress()
        calls.append((self, inputs, output))
        try:
            return self.backward(gy)
        finally:
            calls.pop()

    def _jvp_call(self, inputs, output, tangents):
        """Called by the core's forward sweeps for a node this Function recorded."""
        calls = _calls_in_progress()
        calls.append((self, inputs, output))
        try:
            return self.jvp(*tangents)
        finally:
            calls.pop()

    def jvp(self, *tangents):
        """The output's tangent given each input's tangent (forward mode).

        The default derives it from ``backward(1.0)``: the sum of gradient
        times tangent over the inputs with a nonzero tangent.  Override it
        with the function's own rule (``self.inputs`` are the call's input
        values) to save the backward call.
        """
        grads = self.backward(1.0)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(tangents):
            raise ValueError(
                f"{type(self).__name__}.backward() returned {len(grads)} gradients for "
                f"{len(tangents)} inputs")
        total = 0.0
        for g, t in zip(grads, tangents):
            if t != 0.0 and g is not None:
                total += float(g) * t
        return total

    def forward(self, *xs):
        """The output value for input values xs (floats).  Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, *xs)")

    def backward(self, gy):
        """d(loss)/d(inputs) given gy = d(loss)/d(output).  Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define backward(self, gy)")

    def __repr__(self):
        return f"{type(self).__name__}()"
