"""Thread-local switches: grad mode (no_grad, enable_grad, set_grad_enabled)
and anomaly detection.  Each is a context manager that saves the previous
state on entry and restores it on exit, and a decorator doing the same
around every call (for a generator function: around every step)."""
import functools
import inspect

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

        def under_flag(call, *args, **kwargs):
            previous = set_flag(value)
            try:
                return call(*args, **kwargs)
            finally:
                set_flag(previous)

        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def generator_wrapper(*args, **kwargs):
                return (yield from _each_step(func(*args, **kwargs), under_flag))
            return generator_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return under_flag(func, *args, **kwargs)

        return wrapper


def _each_step(gen, under_flag):
    """Drive generator gen, running each of its steps through under_flag."""
    try:
        response = under_flag(gen.send, None)
        while True:
            try:
                request = yield response
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                response = under_flag(gen.throw, exc)
            else:
                response = under_flag(gen.send, request)
    except StopIteration as stop:
        return stop.value


class _NoArgumentSwitch(_Switch):
    """A switch that also works as a bare decorator: @no_grad as well as @no_grad()."""

    def __new__(cls, func=None):
        if func is None:
            return super().__new__(cls)
        if not callable(func):
            raise TypeError(f"{cls.__name__}() takes no arguments; use @{cls.__name__} or "
                            f"'with {cls.__name__}():'")
        return cls()(func)


class no_grad(_NoArgumentSwitch):
    """Compute values without recording: results are constants.

    Thread-local, like PyTorch's.  Use as ``with no_grad():`` or ``@no_grad()``.

    >>> import autograd_c as ag
    >>> x = ag.Variable(1.0)
    >>> with ag.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __init__(self, func=None):
        super().__init__(False)


class enable_grad(_NoArgumentSwitch):
    """Record again, e.g. inside a no_grad() block.  Thread-local.

    >>> import autograd_c as ag
    >>> with ag.no_grad(), ag.enable_grad():
    ...     ag.is_grad_enabled()
    True
    """

    def __init__(self, func=None):
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
        self._switched = True                 # the mode saved by the call above is pending

    def __enter__(self):
        # The first block after the call uses the mode saved by the call; a
        # reused object switches again and saves the mode of the moment, as
        # torch.set_grad_enabled does.
        if self._switched:
            self._switched = False
            return self
        return super().__enter__()

    def __call__(self, func):
        if self._switched:                    # as a decorator it only acts around calls
            self._switched = False
            self._set(self._saved.pop())
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
