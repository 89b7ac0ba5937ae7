"""micrograd-compatible neural-network building blocks: Module, Neuron, Layer, MLP.

A drop-in for ``micrograd.nn`` (Andrej Karpathy, MIT)::

    from autograd_c.engine import Value          # was: from micrograd.engine import Value
    from autograd_c.nn import Neuron, Layer, MLP  # was: from micrograd.nn import ...

Constructors, attributes (``w``, ``b``, ``nonlin``, ``neurons``, ``layers``),
``parameters()``, ``zero_grad()`` and reprs are micrograd's, and weights are
drawn from Python's :mod:`random` exactly as micrograd draws them (one
``random.uniform(-1, 1)`` per weight, neuron by neuron, layer by layer; biases
start at 0), so the same ``random.seed`` gives the same model.

What differs is the cost: a neuron is ONE dot-product node on the tape (bias
included, summed in micrograd's order ``b + w0*x0 + w1*x1 + ...``) plus one
activation node, computed by one call into C, where micrograd records 2n
Python-level operations.  Neurons also accept ``activation='tanh'`` or
``'sigmoid'`` besides micrograd's ReLU-or-linear switch.

Examples
--------
>>> import random
>>> from autograd_c.nn import MLP
>>> random.seed(0)
>>> model = MLP(2, [16, 16, 1])
>>> len(model.parameters())
337
>>> model.layers[-1]
Layer of [LinearNeuron(16)]
"""
import random

from . import _core
from . import dot
from .engine import Value

__all__ = ["Module", "Neuron", "Layer", "MLP"]

# activation name -> (repr prefix, the Variable method applying it)
_ACTIVATIONS = {
    None: ("Linear", None),
    "relu": ("ReLU", Value.relu),
    "tanh": ("Tanh", Value.tanh),
    "sigmoid": ("Sigmoid", Value.sigmoid),
}


def _check_activation(activation):
    if activation == "linear":
        return None
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be one of 'relu', 'tanh', 'sigmoid', 'linear' or None, "
            f"got {activation!r}")
    return activation


class Module:
    """Base class: a model is anything with ``parameters()``; ``zero_grad()`` comes free.

    Examples
    --------
    >>> from autograd_c.engine import Value
    >>> from autograd_c.nn import Module
    >>> class Scale(Module):
    ...     def __init__(self):
    ...         self.k = Value(3.0)
    ...     def __call__(self, x):
    ...         return self.k * x
    ...     def parameters(self):
    ...         return [self.k]
    >>> m = Scale()
    >>> m(2.0).backward()
    >>> m.k.grad
    2.0
    >>> m.zero_grad()
    >>> m.k.grad
    0.0
    """

    def zero_grad(self):
        """Set ``.grad`` of every parameter to 0 (call it before each ``backward()``)."""
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        """The list of trainable Values (the base class has none)."""
        return []


class Neuron(Module):
    """One neuron: ``activation(w . x + b)``, recorded as one dot node plus one activation node.

    Parameters
    ----------
    nin : int
        Number of inputs.  Draws ``nin`` weights with ``random.uniform(-1, 1)``
        (micrograd's draw); the bias starts at 0.
    nonlin : bool, default True
        micrograd's switch: True applies ReLU, False leaves the neuron linear.
    activation : {'relu', 'tanh', 'sigmoid', 'linear'} or None, default None
        When given, overrides ``nonlin``.  None means "decided by nonlin".

    Attributes
    ----------
    w : list of Value
        The weights.
    b : Value
        The bias.
    nonlin : bool
        Whether an activation is applied (assigning it switches between ReLU and linear, as in micrograd).
    activation : str or None
        'relu', 'tanh', 'sigmoid' or None (linear); assignable.

    Examples
    --------
    >>> import random
    >>> from autograd_c.nn import Neuron
    >>> random.seed(1)
    >>> n = Neuron(3)
    >>> n
    ReLUNeuron(3)
    >>> y = n([1.0, -2.0, 0.5])   # relu(b + w0*1.0 + w1*-2.0 + w2*0.5)
    >>> y.op
    'relu'
    >>> Neuron(3, activation='tanh')
    TanhNeuron(3)
    """

    def __init__(self, nin, nonlin=True, activation=None):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.activation = ("relu" if nonlin else None) if activation is None else activation

    @property
    def activation(self):
        """'relu', 'tanh', 'sigmoid' or None (linear); assignable."""
        return self._activation

    @activation.setter
    def activation(self, name):
        name = _check_activation(name)
        self._activation = name
        self._apply = _ACTIVATIONS[name][1]

    @property
    def nonlin(self):
        """True if an activation is applied; setting it picks ReLU (True) or linear (False)."""
        return self._activation is not None

    @nonlin.setter
    def nonlin(self, flag):
        self.activation = "relu" if flag else None

    def __call__(self, x):
        """``activation(b + w0*x0 + w1*x1 + ...)`` for a sequence x of Values or numbers."""
        act = dot([self.b, *self.w], [1.0, *x])
        return act if self._apply is None else self._apply(act)

    def parameters(self):
        """The weights, then the bias: ``self.w + [self.b]``."""
        return self.w + [self.b]

    def __repr__(self):
        return f"{_ACTIVATIONS[self._activation][0]}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons reading the same inputs.

    Parameters
    ----------
    nin, nout : int
        Inputs per neuron and number of neurons.
    **kwargs
        Passed to every :class:`Neuron` (``nonlin``, ``activation``).

    Calling a layer returns a list of ``nout`` Values, or the Value itself when
    ``nout == 1`` (micrograd's convention).

    Examples
    --------
    >>> import random
    >>> from autograd_c.nn import Layer
    >>> random.seed(2)
    >>> layer = Layer(2, 3)
    >>> layer
    Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)]
    >>> len(layer([0.5, -1.0]))
    3
    >>> len(layer.parameters())
    9
    """

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x):
        out = self._forward(x)
        return out[0] if len(out) == 1 else out

    def _forward(self, x):
        """The outputs of all neurons for the input list x: one call into C
        (``_core._dense``) when the neurons share an activation, as the
        constructor makes them."""
        neurons = self.neurons
        if not neurons:
            return []                         # micrograd: Layer(nin, 0)(x) == []
        activation = neurons[0]._activation
        for n in neurons:
            if n._activation != activation:
                x = list(x)
                return [n(x) for n in neurons]
        return _core._dense([n.w for n in neurons], [n.b for n in neurons], x, activation)

    def parameters(self):
        """Every neuron's parameters, neuron by neuron (weights then bias)."""
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron: ReLU hidden layers and a linear output layer.

    Parameters
    ----------
    nin : int
        Number of inputs.
    nouts : list of int
        Width of each layer; the last one is the output layer.
    **kwargs
        Passed to every layer's neurons, except ``activation``, which applies
        to the hidden layers only (the output layer stays linear):
        ``MLP(2, [8, 1], activation='tanh')`` is a tanh network.

    Weights are drawn as micrograd draws them, so after the same
    ``random.seed`` this model and ``micrograd.nn.MLP(nin, nouts)`` hold the same
    numbers.

    Examples
    --------
    >>> import random
    >>> from autograd_c.nn import MLP
    >>> random.seed(1337)
    >>> model = MLP(2, [4, 1])
    >>> model
    MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(4)]]
    >>> score = model([0.5, -1.0])
    >>> model.zero_grad()
    >>> score.backward()
    >>> for p in model.parameters():
    ...     p.data -= 0.1 * p.grad
    """

    def __init__(self, nin, nouts, **kwargs):
        if "nonlin" in kwargs:
            raise TypeError("MLP() sets nonlin itself (hidden layers ReLU, output linear); "
                            "use activation='tanh' etc. to change the hidden layers")
        activation = kwargs.pop("activation", None)
        sz = [nin] + list(nouts)
        last = len(sz) - 2
        self.layers = [
            Layer(sz[i], sz[i + 1], nonlin=i != last,
                  **({"activation": activation} if i != last and activation is not None else {}),
                  **kwargs)
            for i in range(len(sz) - 1)
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        """Every layer's parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
