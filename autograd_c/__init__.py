"""autograd_c: scalar reverse-mode automatic differentiation with a compiled tape.

Every operation on :class:`Variable` objects is appended to a thread-local
Wengert list held in C arrays; ``backward()`` is one iterative reverse sweep
in C.  The graph lives exactly as long as Python can reach it.

>>> import autograd_c as ag
>>> x = ag.Variable(2.0)
>>> y = ag.sin(x) * x
>>> y.backward()
>>> round(x.grad, 6)
0.077004
"""
try:
    from . import _core
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py
    raise ImportError(
        "autograd_c's compiled core (autograd_c._core) is not built. Install the package with "
        "`pip install .` from the project root (or build it in place with "
        "`python setup.py build_ext --inplace`); it needs a C compiler."
    ) from exc

from ._core import (
    Variable,
    abs,
    atan,
    cos,
    dot,
    erf,
    exp,
    expm1,
    grad,
    graph_size,
    is_grad_enabled,
    leaves,
    log,
    log1p,
    maximum,
    minimum,
    relu,
    sigmoid,
    sin,
    softplus,
    sqrt,
    sum,
    tan,
    tanh,
    tape_stats,
)
from . import optim
from .checking import GradcheckError, gradcheck, numerical_grad
from .compiled import ConcretizationError, GuardError, compile, compile_graph, tracing
from .function import Function
from .functional import hessian, hvp, jacobian, jvp, vjp
from .modes import detect_anomaly, enable_grad, no_grad, set_grad_enabled
from .viz import draw, to_dot

__version__ = "0.1.0"

__all__ = [
    "ConcretizationError",
    "Function",
    "GradcheckError",
    "GuardError",
    "Variable",
    "abs",
    "atan",
    "compile",
    "compile_graph",
    "cos",
    "detect_anomaly",
    "dot",
    "draw",
    "enable_grad",
    "erf",
    "exp",
    "expm1",
    "grad",
    "gradcheck",
    "graph_size",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "jacobian",
    "jvp",
    "leaves",
    "log",
    "log1p",
    "maximum",
    "minimum",
    "no_grad",
    "numerical_grad",
    "optim",
    "relu",
    "set_grad_enabled",
    "sigmoid",
    "sin",
    "softplus",
    "sqrt",
    "sum",
    "tan",
    "tanh",
    "tape_stats",
    "to_dot",
    "tracing",
    "vjp",
]
