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
    """

    # inputs and output are per thread: one instance may be in use in
    # several threads' backward passes at once.
    @property
    def inputs(self):
        """The input values (floats) of the call being computed or differentiated."""
        return getattr(self._per_thread(), "inputs", ())

    @inputs.setter
    def inputs(self, values):
        self._per_thread().inputs = values

    @property
    def output(self):
        """The output value (a float) of the call being differentiated."""
        return getattr(self._per_thread(), "output", None)

    @output.setter
    def output(self, value):
        self._per_thread().output = value

    def _per_thread(self):
        state = self.__dict__.get("_autograd_c_state")
        if state is None:
            state = self.__dict__.setdefault("_autograd_c_state", threading.local())
        return state

    def __call__(self, *inputs):
        """Apply the function: a Variable (a constant one if no input
        requires grad, or under no_grad)."""
        if not inputs:
            raise TypeError(f"{type(self).__name__}() needs at least one input")
        self.inputs = _core._input_values(inputs, self)
        y = self.forward(*self.inputs)
        result = _core._record_function(self, inputs, y)
        self.output = result.data
        return result

    def forward(self, *xs):
        """The output value for input values xs (floats).  Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, *xs)")

    def backward(self, gy):
        """d(loss)/d(inputs) given gy = d(loss)/d(output).  Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define backward(self, gy)")

    def __repr__(self):
        return f"{type(self).__name__}()"
