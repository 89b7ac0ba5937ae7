"""Optimisers that update leaf Variables in C, with torch.optim's arithmetic.

>>> import autograd_c as ag
>>> w = ag.Variable(3.0)
>>> opt = ag.optim.SGD([w], lr=0.1)
>>> for _ in range(3):
...     opt.zero_grad()
...     (w * w).backward()
...     opt.step()
>>> round(w.data, 6)
1.536
"""
import numbers
from array import array

from . import _core

__all__ = ["Optimizer", "SGD", "Adam"]


def _number(value, what):
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, not {type(value).__name__}")
    return float(value)


def _non_negative(value, what):
    """value as a float >= 0 (inf allowed, as torch.optim allows it); nan is
    refused, which torch.optim.Adam does and torch.optim.SGD does not."""
    x = _number(value, what)
    if not x >= 0.0:                     # false for nan too
        raise ValueError(f"Invalid {what}: {x!r} (must be a number >= 0)")
    return x


class Optimizer:
    """Base class: holds the parameters (distinct leaf Variables).

    ``params`` is a tuple fixed at construction: the C kernels keep one
    state slot per parameter, by position, so the list cannot change
    afterwards.  Make a new optimiser for a different set of parameters.
    """

    def __init__(self, params):
        # the kernels take a list; this one is private, so it keeps the
        # length and the types _check_params verified
        self._param_list = _core._check_params(params, type(self).__name__)
        self._params = tuple(self._param_list)

    @property
    def params(self):
        """The parameters, a tuple of distinct leaf Variables (fixed at construction)."""
        return self._params

    @params.setter
    def params(self, value):
        raise AttributeError(
            f"{type(self).__name__}.params is fixed at construction (its state has one slot "
            "per parameter); make a new optimiser for other parameters")

    def zero_grad(self):
        """Set every parameter's ``.grad`` to 0."""
        for p in self.params:
            p.grad = 0.0

    def step(self):
        """Update every parameter from its ``.grad``."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({len(self.params)} parameters)"


def _check_state(params, state):
    """The kernels index state by position with bounds checks off."""
    if len(state) != len(params):
        raise RuntimeError("optimiser state does not match its parameters")


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` without dampening or Nesterov.

    ``g = grad + weight_decay * p``; with momentum, ``buf = momentum * buf + g``
    (``buf = g`` on the first step) and ``g = buf``; then ``p -= lr * g``.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params)
        self.lr = _non_negative(lr, "lr")
        self.momentum = _non_negative(momentum, "momentum")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self._buf = array("d", bytes(8 * len(self._param_list)))
        self._steps = 0

    def step(self):
        """One update of every parameter."""
        _check_state(self._param_list, self._buf)
        _core._sgd_step(self._param_list, self._buf, self.lr, self.momentum, self.weight_decay,
                        self._steps == 0)
        self._steps += 1


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` without AMSGrad (L2 ``weight_decay`` added to the gradient)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _non_negative(lr, "lr")
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of numbers, not {betas!r}") from None
        self.betas = (_number(beta1, "betas[0]"), _number(beta2, "betas[1]"))
        self.eps = _non_negative(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        if not all(0.0 <= b < 1.0 for b in self.betas):     # refuses nan and inf too
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        n = len(self._param_list)
        self._m = array("d", bytes(8 * n))
        self._v = array("d", bytes(8 * n))
        self._steps = 0

    def step(self):
        """One update of every parameter."""
        _check_state(self._param_list, self._m)
        _core._adam_step(self._param_list, self._m, self._v, self._steps + 1, self.lr, self.betas[0],
                         self.betas[1], self.eps, self.weight_decay)
        self._steps += 1
