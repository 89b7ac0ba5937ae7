"""Thread-local switches: grad mode (no_grad, enable_grad, set_grad_enabled)
and anomaly detection.  Each works as a context manager and as a decorator,
saves the previous state on entry and restores it on exit."""
import functools

from ._core import _set_anomaly, _set_grad_enabled

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "detect_anomaly"]


class _Switch:
    """Base: subclasses set self._flag and self._setter."""

    _setter = staticmethod(_set_grad_enabled)

    def __init__(self, flag):
        self._flag = bool(flag)
        self._previous = []

    def __enter__(self):
        self._previous.append(self._setter(self._flag))
        return self

    def __exit__(self, *exc):
        self._setter(self._previous.pop())
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__.__new__(self.__class__)._init_like(self):
                return func(*args, **kwargs)

        return wrapper

    def _init_like(self, other):
        _Switch.__init__(self, other._flag)
        return self


class no_grad(_Switch):
    """Compute values without recording: results are constants.

    Thread-local, like PyTorch's.  Use as ``with no_grad():`` or ``@no_grad()``.

    >>> import autograd_c as ag
    >>> x = ag.Variable(1.0)
    >>> with ag.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __init__(self):
        super().__init__(False)


class enable_grad(_Switch):
    """Record again inside a no_grad() block.  Thread-local."""

    def __init__(self):
        super().__init__(True)


class set_grad_enabled(_Switch):
    """Turn recording on or off; takes effect at once, and as a context
    manager restores the previous mode on exit.  Thread-local.

    >>> import autograd_c as ag
    >>> with ag.set_grad_enabled(False):
    ...     ag.is_grad_enabled()
    False
    """

    def __init__(self, mode):
        super().__init__(mode)
        self._previous.append(_set_grad_enabled(self._flag))

    def __enter__(self):
        return self

    def _init_like(self, other):
        _Switch.__init__(self, other._flag)
        return self


class detect_anomaly(_Switch):
    """Raise FloatingPointError at the first operation that produces a nan or
    inf, naming the operation and its inputs.  Off by default (IEEE results
    are returned as they are).  Thread-local.

    >>> import autograd_c as ag
    >>> with ag.detect_anomaly():
    ...     ag.log(ag.Variable(-1.0))
    Traceback (most recent call last):
    ...
    FloatingPointError: detect_anomaly: log(-1.0) produced nan
    """

    _setter = staticmethod(_set_anomaly)

    def __init__(self, enabled=True):
        super().__init__(enabled)
