"""micrograd drop-in: ``from autograd_c.engine import Value``.

micrograd (Andrej Karpathy, MIT) spells its scalar ``micrograd.engine.Value``.
Here ``Value`` is simply :class:`autograd_c.Variable` under that name, so code
written for micrograd runs unchanged once its import line says
``autograd_c.engine``::

    from autograd_c.engine import Value      # was: from micrograd.engine import Value

Everything micrograd's ``Value`` offers works the same way: ``Value(data)``,
``.data`` (assignable on leaves, so ``p.data -= lr * p.grad`` works), ``.grad``
(accumulates over ``backward()`` calls until set to 0), ``.backward()``,
``.relu()``, ``+ - * /`` with Values or numbers on either side, ``**`` with a
number exponent, and ``_prev`` / ``_op`` for graph pictures (micrograd's
``draw_dot``).  On top of that it has every :class:`~autograd_c.Variable`
feature (``tanh``, ``exp``, ``log``, ``no_grad``, ...).

The differences are the ones a compiled tape brings: ``.data`` and ``.grad`` are
always Python floats (micrograd keeps ints and NumPy scalars as given), the
repr says ``Variable(...)``, ``-``, ``/`` and ``**`` are one node each rather
than micrograd's compositions of ``+``, ``*`` and ``**-1`` (so ``a / b`` is
correctly rounded instead of ``a * b**-1``), and ``backward()`` never recurses,
so graphs of millions of nodes work.

Examples
--------
>>> from autograd_c.engine import Value
>>> a = Value(-4.0)
>>> b = Value(2.0)
>>> c = (a * b + b**3).relu()
>>> c.backward()
>>> a.grad, b.grad
(0.0, 0.0)
>>> d = a * b + b**3
>>> d.backward()
>>> a.grad, b.grad
(2.0, 8.0)
"""
from . import Variable as Value

__all__ = ["Value"]
