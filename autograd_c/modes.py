"""Thread-local switches: grad mode (no_grad, enable_grad, set_grad_enabled)
and anomaly detection.  Each is a context manager that saves the previous
state on entry and restores it on exit, and a decorator doing the same
around every call."""
import functools

from ._core import _set_anomaly, _set_grad_enabled

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "detect_anomaly"]


class _Switch:
    """A thread-local flag set to `value` inside a with-block or a decorated call."""

    _set = staticmethod(_set_grad_enabled)   # sets this thread's flag, returns the previous one

    def __init__(self, value):
        self._value = bool(value)
        self._saved = []                      # a stack, so one instance can be nested

    def __enter__(self):
        self._saved.append(self._set(self._value))
        return self

    def __exit__(self, *exc):
        self._set(self._saved.pop())
        return False

    def __call__(self, func):
        set_flag, value = self._set, self._value

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            previous = set_flag(value)
            try:
                return func(*args, **kwargs)
            finally:
                set_flag(previous)

        return wrapper


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
    """Record again, e.g. inside a no_grad() block.  Thread-local.

    >>> import autograd_c as ag
    >>> with ag.no_grad(), ag.enable_grad():
    ...     ag.is_grad_enabled()
    True
    """

    def __init__(self):
        super().__init__(True)


class set_grad_enabled(_Switch):
    """Turn recording on or off.  Takes effect when called; as a context
    manager or decorator the previous mode comes back afterwards.
    Thread-local.

    >>> import autograd_c as ag
    >>> with ag.set_grad_enabled(False):
    ...     ag.is_grad_enabled()
    False
    >>> ag.is_grad_enabled()
    True
    """

    def __init__(self, mode):
        super().__init__(mode)
        self._saved.append(self._set(self._value))

    def __enter__(self):
        return self

    def __call__(self, func):
        self._set(self._saved.pop())          # as a decorator it only acts around calls
        return super().__call__(func)


class detect_anomaly(_Switch):
    """Raise FloatingPointError at the first operation that produces a nan or
    an inf, naming the operation and its inputs.  Off by default: results
    follow IEEE arithmetic (log(-1) is nan, 1/0 is inf).  Thread-local.

    >>> import autograd_c as ag
    >>> with ag.detect_anomaly():
    ...     ag.log(ag.Variable(-1.0))
    Traceback (most recent call last):
    ...
    FloatingPointError: detect_anomaly: log(-1.0) produced nan
    """

    _set = staticmethod(_set_anomaly)

    def __init__(self, enabled=True):
        super().__init__(enabled)
