"""The benchmark workloads, and for every peer the code that runs them.

One module, shared by ``compare.py`` (the peer comparison), the pytest-benchmark
suites (``test_bench_*.py``) and ``bench_core.py`` (the core's quick benchmark),
so that every entry point times the same graphs.

Workloads (``make_workload(name, size)``):

  chain  ``y = y*0.9999 + x*0.0001``, ``size`` times, from leaves x=0.5, y=1.0:
         3*size scalar operations, each depending on the previous one (a graph
         ``size`` levels deep).  Gradients checked: dy/dx, dy/dy0.
  wide   ``sum(a*b for a, b in zip(A, B))`` over ``size`` pairs of leaves drawn
         with ``random.Random(0)``: 2*size operations (Python's ``sum`` starts
         from 0, so every term costs a multiply and an add).  Gradients
         checked: d/dA[0], d/dB[0].
  mlp    micrograd's demo (its ``demo.ipynb``): ``MLP(2, [16, 16, 1])`` with
         ReLU hidden layers, weights ``random.uniform(-1, 1)`` drawn after
         ``random.seed(1337)`` in micrograd's order (layer by layer, neuron by
         neuron, nin weights each; biases 0), on 100 make-moons samples (noise
         0.1, ``np.random.seed(1337)``, labels -1/+1); loss = mean SVM
         max-margin loss ``relu(1 - y*score)`` + 1e-4 * sum of squared
         parameters.  ``size`` is the number of samples (100).  Gradients
         checked: the first, the middle and the last parameter.  The training
         step is forward + backward + SGD (lr 0.1) on all 337 parameters.

Node counts: a workload's ``nodes`` is the number of scalar operations in its
plain scalar formulation (the graph micrograd builds: 3*size for chain,
2*size for wide, 65,077 for the 100-sample MLP).  Every peer's times and
bytes are divided by that same number, so "ns per node" compares like with
like even where a peer records fewer, bigger nodes (autograd_c's ``dot``,
CasADi's matrix products, JAX's arrays).

Peers (``PEERS``): each has one ``Case`` class; ``PEERS[name].case(workload)``
returns an object with the phases the timers call:

  leaves()    make fresh inputs and parameters (not timed)
  forward()   record the graph (the "forward" time)
  backward()  the reverse pass (the "backward" time)
  result()    (value, [checked gradients]) after backward() or compile()
  compile()   JAX only: the first call of jit(value_and_grad), traced and compiled
  output()    the forward value as a float
  replay(moved)  value and gradient from the recorded graph, without running
              the Python code again (CasADi, JAX), at the workload's inputs
              (moved=False) or at ``workload.moved()``'s (moved=True); its
              raw result goes through replay_result() -> (value, grads)
  step()      one SGD training step (mlp only; state persists between calls)

Peers that are not installed raise ImportError from ``case()``.
"""
import copy
import math
import os
import random

X0, Y0 = 0.5, 1.0          # chain's leaves
MLP_SHAPE = (2, (16, 16, 1))
MLP_SEED = 1337
ALPHA = 1e-4               # L2 weight of micrograd's demo
LR = 0.1                   # SGD learning rate of the training step
TOLERANCE = 1e-9           # relative agreement required of every peer

# full and --quick sizes; JAX traces the scalar graphs op by op in Python
# (about 1 ms per chain iteration, plus an XLA compile that grows with the
# graph), so it gets smaller chain and wide graphs.
SIZES = {"chain": (200_000, 10_000), "wide": (200_000, 10_000), "mlp": (100, 100)}
PEER_SIZES = {"jax": {"chain": (5_000, 500), "wide": (5_000, 500)}}
CHECK_SIZE = 1_000          # size of the small check for peers whose backward fails at full size


def size_for(peer, workload, quick):
    full, small = PEER_SIZES.get(peer, {}).get(workload, SIZES[workload])
    return small if quick else full


# ---------------------------------------------------------------------------
# The workloads, written once for any scalar type
# ---------------------------------------------------------------------------

def chain(x, y, n):
    for _ in range(n):
        y = y * 0.9999 + x * 0.0001
    return y


def wide(A, B):
    return sum(a * b for a, b in zip(A, B))


def mlp_loss(layers, X, Y, relu):
    """micrograd's demo loss on any scalar type: ``layers`` is a list of layers,
    each a list of neurons ``(weights, bias)``; X rows and Y labels are floats
    (or the peer's constants); ``relu`` is the peer's ReLU."""
    last = len(layers) - 1
    scores = []
    for x in X:
        for i, layer in enumerate(layers):
            x = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
            if i != last:
                x = [relu(a) for a in x]
        scores.append(x[0])
    losses = [relu(1 + -yi * si) for yi, si in zip(Y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = ALPHA * sum(p * p for layer in layers for w, b in layer for p in w + [b])
    return data_loss + reg_loss


def make_moons(n_samples=100, noise=0.1, seed=MLP_SEED):
    """sklearn.datasets.make_moons(n_samples, noise=noise) after np.random.seed(seed),
    re-implemented (sklearn is not a dependency): two interleaved half circles,
    shuffled, plus Gaussian noise.  Returns X as a list of [x0, x1] floats and
    y as a list of -1.0/+1.0 (micrograd's demo maps 0/1 to -1/+1)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                   np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    X = X + rng.normal(scale=noise, size=X.shape)
    return X.tolist(), [float(2 * v - 1) for v in y]


def mlp_init(shape=MLP_SHAPE, seed=MLP_SEED):
    """The flat parameter list in micrograd's order (for each layer, for each
    neuron: nin weights then the bias), drawn as micrograd.nn.MLP draws them."""
    rng = random.Random(seed)
    nin, nouts = shape
    sizes = [nin] + list(nouts)
    flat = []
    for i in range(len(nouts)):
        for _ in range(sizes[i + 1]):
            flat += [rng.uniform(-1, 1) for _ in range(sizes[i])] + [0.0]
    return flat


def mlp_layers(flat, shape=MLP_SHAPE):
    """Split a flat parameter list (of anything) into layers of (weights, bias)."""
    nin, nouts = shape
    sizes = [nin] + list(nouts)
    layers, k = [], 0
    for i in range(len(nouts)):
        layer = []
        for _ in range(sizes[i + 1]):
            layer.append((list(flat[k:k + sizes[i]]), flat[k + sizes[i]]))
            k += sizes[i] + 1
        layers.append(layer)
    return layers


def mlp_nodes(n_samples, shape=MLP_SHAPE):
    """Scalar operations in mlp_loss (the graph micrograd records)."""
    nin, nouts = shape
    sizes = [nin] + list(nouts)
    per_sample = 3                                  # -y*s, 1 + ., relu
    params = 0
    for i in range(len(nouts)):
        hidden = i != len(nouts) - 1
        per_sample += sizes[i + 1] * (2 * sizes[i] + hidden)   # muls, adds, relu
        params += sizes[i + 1] * (sizes[i] + 1)
    # sum of losses (from 0), * 1/n, p*p, their sum (from 0), * alpha, data + reg
    return n_samples * per_sample + n_samples + 1 + 2 * params + 1 + 1


class Workload:
    """One workload at one size: its inputs as floats and its node count."""

    def __init__(self, name, size):
        self.name, self.size = name, size
        if name == "chain":
            self.x0, self.y0 = X0, Y0
            self.nodes = 3 * size
        elif name == "wide":
            rng = random.Random(0)
            self.A = [rng.random() for _ in range(size)]
            self.B = [rng.random() for _ in range(size)]
            self.nodes = 2 * size
        elif name == "mlp":
            self.X, self.Y = make_moons(size)
            self.params = mlp_init()
            self.nodes = mlp_nodes(size)
            k = len(self.params)
            self.checked = [0, k // 2, k - 1]      # parameters whose gradients are compared
        else:
            raise ValueError(f"unknown workload {name!r}")

    def __repr__(self):
        return f"Workload({self.name!r}, {self.size})"

    def moved(self, factor=1 + 1e-3):
        """The same workload with its leaves (the MLP: its parameters) scaled
        by ``factor``: the "new inputs" that replay() evaluates."""
        other = copy.copy(self)
        if self.name == "chain":
            other.x0, other.y0 = self.x0 * factor, self.y0 * factor
        elif self.name == "wide":
            other.A, other.B = [v * factor for v in self.A], [v * factor for v in self.B]
        else:
            other.params = [v * factor for v in self.params]
        return other


def make_workload(name, size=None, quick=False, peer=None):
    return Workload(name, size if size is not None else size_for(peer, name, quick))


WORKLOADS = tuple(SIZES)


def agree(got, want, tol=TOLERANCE):
    """None if (value, grads) agree with the reference to ``tol`` (relative),
    else a message naming the first disagreement."""
    labels = ["value"] + [f"gradient {i}" for i in range(len(want[1]))]
    for label, g, w in zip(labels, [got[0]] + list(got[1]), [want[0]] + list(want[1])):
        g, w = float(g), float(w)
        if not (abs(g - w) <= tol * max(abs(w), 1e-300) or (math.isnan(g) and math.isnan(w))):
            return f"{label}: got {g!r}, expected {w!r}"
    if len(got[1]) != len(want[1]):
        return f"{len(got[1])} gradients, expected {len(want[1])}"
    return None


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------

class Case:
    """One workload on one peer (see the module docstring for the phases)."""
    peer = None
    records = True       # has forward() and backward() (JAX: compile() and replay() only)
    replays = False      # has replay()
    trains = True        # has step() for the mlp

    def __init__(self, workload):
        self.w = workload

    def release(self):
        """Drop the graph and the leaves (between rounds)."""
        for k in ("out", "args", "watch", "leaves_", "fg", "f", "g_out"):
            self.__dict__.pop(k, None)

    # chain and wide on scalar peers ------------------------------------------------
    def scalar_leaves(self, make):
        w = self.w
        if w.name == "chain":
            x, y = make(w.x0), make(w.y0)
            self.args, self.watch = (x, y, w.size), [x, y]
            self.fn = chain
        else:
            a, b = [make(v) for v in w.A], [make(v) for v in w.B]
            self.args, self.watch = (a, b), [a[0], b[0]]
            self.fn = wide
        return list(self.watch) if w.name == "chain" else a + b


class FloatsCase(Case):
    """Plain Python floats: no derivatives, the floor."""
    peer = "floats"
    trains = False

    def leaves(self):
        if self.w.name == "mlp":
            self.fn = mlp_loss
            self.args = (mlp_layers(self.w.params), self.w.X, self.w.Y, _float_relu)
        else:
            self.scalar_leaves(float)

    def forward(self):
        self.out = self.fn(*self.args)

    backward = None

    def output(self):
        return self.out

    def result(self):
        return self.out, []


def _float_relu(a):
    return a if a > 0 else 0.0


class ValueCase(Case):
    """A peer whose numbers are objects with .data, .grad and .backward()
    (autograd_c and micrograd): the forward, backward and readings they share."""

    def forward(self):
        self.out = self._mlp() if self.w.name == "mlp" else self.fn(*self.args)

    def backward(self):
        self.out.backward()

    def output(self):
        return self.out.data

    def result(self):
        return self.out.data, [v.grad for v in self.watch]


class AutogradCCase(ValueCase):
    """autograd_c: Variable leaves, out.backward(); the MLP written the fast
    way (one ag.dot per neuron, bias included, ag.sum and ag.dot for the sums)."""
    peer = "autograd_c"
    module = "autograd_c"

    def __init__(self, workload):
        super().__init__(workload)
        import autograd_c
        self.ag = autograd_c
        self.params = None

    def leaves(self):
        ag = self.ag
        if self.w.name != "mlp":
            self.scalar_leaves(ag.Variable)
            return
        self.params = [ag.Variable(v) for v in self.w.params]
        self._mlp_setup()

    def _mlp_setup(self):
        layers = mlp_layers(self.params)
        self.rows = [[[b] + w for w, b in layer] for layer in layers]
        self.watch = [self.params[i] for i in self.w.checked]

    def _mlp(self):
        ag = self.ag
        rows, last = self.rows, len(self.rows) - 1
        scores = []
        for x in self.w.X:
            for i, layer in enumerate(rows):
                xe = [1.0] + x
                x = [ag.dot(r, xe) for r in layer]
                if i != last:
                    x = [a.relu() for a in x]
            scores.append(x[0])
        losses = [(1 - y * s).relu() for y, s in zip(self.w.Y, scores)]
        return ag.sum(losses) * (1.0 / len(losses)) + ALPHA * ag.dot(self.params, self.params)

    def step(self):
        if self.params is None:
            self.leaves()
        loss = self._mlp()
        loss.backward()
        for p in self.params:
            p.data -= LR * p.grad
            p.grad = 0.0
        return loss.data


class MicrogradCase(ValueCase):
    """micrograd: Value leaves, out.backward(); the MLP is micrograd.nn.MLP
    and the demo's loss code, inputs wrapped in Value as the demo does.

    micrograd's backward() sorts the graph with a recursive depth-first
    search, one Python frame per graph level: at the default recursion limit
    (1000) it raises RecursionError from ~500 chain iterations (two levels
    each on the path the search follows) or ~1,000 wide pairs.  (With sys.setrecursionlimit raised it finishes
    on CPython 3.11, but users would have to know to do that.)  Most of its
    forward time is the cyclic garbage collector: every Value's _backward
    closure refers back to the Value, so each op makes a reference cycle and
    the collector keeps rescanning the growing graph."""
    peer = "micrograd"
    module = "micrograd"

    def __init__(self, workload):
        super().__init__(workload)
        from micrograd.engine import Value
        self.Value = Value
        self.model = None

    def leaves(self):
        if self.w.name != "mlp":
            self.scalar_leaves(self.Value)
            return
        self._make_model()

    def _make_model(self):
        from micrograd.nn import MLP
        state = random.getstate()
        random.seed(MLP_SEED)
        self.model = MLP(MLP_SHAPE[0], list(MLP_SHAPE[1]))
        random.setstate(state)
        params = self.model.parameters()
        if [p.data for p in params] != self.w.params:
            raise AssertionError("micrograd.nn.MLP drew different parameters than workloads.mlp_init")
        self.watch = [params[i] for i in self.w.checked]

    def _mlp(self):
        # the demo's loss() with the whole batch
        Value, model = self.Value, self.model
        inputs = [list(map(Value, xrow)) for xrow in self.w.X]
        scores = list(map(model, inputs))
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(self.w.Y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        reg_loss = ALPHA * sum((p * p for p in model.parameters()))
        return data_loss + reg_loss

    def step(self):
        if self.model is None:
            self._make_model()
        loss = self._mlp()
        self.model.zero_grad()
        loss.backward()
        for p in self.model.parameters():
            p.data -= LR * p.grad
        return loss.data


class TorchCase(Case):
    """PyTorch: 0-d float64 tensors with requires_grad, one thread,
    out.backward(); the MLP is mlp_loss written on those tensors, torch.relu."""
    peer = "torch"
    module = "torch"

    def __init__(self, workload):
        super().__init__(workload)
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        self.params = None

    def _leaf(self, v):
        return self.torch.tensor(v, dtype=self.torch.float64, requires_grad=True)

    def leaves(self):
        if self.w.name != "mlp":
            self.scalar_leaves(self._leaf)
            return
        self.params = [self._leaf(v) for v in self.w.params]
        self.layers = mlp_layers(self.params)
        self.watch = [self.params[i] for i in self.w.checked]

    def forward(self):
        if self.w.name == "mlp":
            self.out = mlp_loss(self.layers, self.w.X, self.w.Y, self.torch.relu)
        else:
            self.out = self.fn(*self.args)

    def backward(self):
        self.out.backward()

    def output(self):
        return self.out.item()

    def result(self):
        return self.out.item(), [v.grad.item() for v in self.watch]

    def step(self):
        if self.params is None:
            self.leaves()
        loss = mlp_loss(self.layers, self.w.X, self.w.Y, self.torch.relu)
        loss.backward()
        with self.torch.no_grad():
            for p in self.params:
                p -= LR * p.grad
                p.grad = None
        return loss.item()


class XadCase(Case):
    """XAD 1.5 (xad.adj_1st): Real leaves registered on the one active Tape,
    cleared for reuse as XAD recommends; newRecording(), then registerOutput,
    out.derivative = 1, computeAdjoints().  ReLU is xad.math.max(a, 0.0).
    Real.value is read-only, so a training step makes new Reals from the
    updated floats (as XAD's own examples do)."""
    peer = "xad"
    module = "xad"
    _tape = None

    def __init__(self, workload):
        super().__init__(workload)
        import xad.adj_1st as adj
        import xad.math as xmath
        self.Real, self.max = adj.Real, xmath.max
        if XadCase._tape is None:
            XadCase._tape = adj.Tape()
            XadCase._tape.activate()
        self.tape = XadCase._tape
        self.values = list(workload.params) if workload.name == "mlp" else None

    def _relu(self, a):
        return self.max(a, 0.0)

    def leaves(self):
        # The previous round's Reals must die before new inputs are registered:
        # input Reals of an earlier recording freed after that silently corrupt
        # the new recording's adjoints (seen with XAD 1.5.2).
        self.release()
        for k in ("params", "layers"):
            self.__dict__.pop(k, None)
        tape = self.tape
        tape.clearAll()
        if self.w.name != "mlp":
            for v in self.scalar_leaves(self.Real):
                tape.registerInput(v)
        else:
            self.params = [self.Real(v) for v in self.values]
            for p in self.params:
                tape.registerInput(p)
            self.layers = mlp_layers(self.params)
            self.watch = [self.params[i] for i in self.w.checked]
        tape.newRecording()

    def forward(self):
        if self.w.name == "mlp":
            self.out = mlp_loss(self.layers, self.w.X, self.w.Y, self._relu)
        else:
            self.out = self.fn(*self.args)

    def backward(self):
        self.tape.registerOutput(self.out)
        self.out.derivative = 1.0
        self.tape.computeAdjoints()

    def output(self):
        return self.out.value

    def result(self):
        return self.out.value, [v.derivative for v in self.watch]

    def step(self):
        self.leaves()
        self.forward()
        self.backward()
        self.values = [v - LR * p.derivative for v, p in zip(self.values, self.params)]
        return self.out.value


class CasadiCase(Case):
    """CasADi SX: the workload code runs on SX symbols (chain, wide) or is
    written with SX matrices (the MLP: mtimes, fmax, sumsqr).
    forward  = build the SX graph, make its Function, evaluate it;
    backward = casadi.gradient of the SX graph, a Function of value and
               gradient, evaluate it;
    replay   = call that Function on new inputs (CasADi's virtual machine,
               no Python per node);
    step     = replay + SGD on the parameter vector (numpy)."""
    peer = "casadi"
    module = "casadi"
    replays = True

    def __init__(self, workload):
        super().__init__(workload)
        import casadi
        import numpy as np
        self.ca, self.np = casadi, np
        w = workload
        self.x0, self.x1 = self._vector(w), self._vector(w.moved())
        if w.name == "chain":
            self.watch_idx = [0, 1]
        elif w.name == "wide":
            self.watch_idx = [0, w.size]
        else:
            self.watch_idx = list(w.checked)
        self.p = None

    def leaves(self):
        ca, w = self.ca, self.w
        n = 2 if w.name == "chain" else 2 * w.size if w.name == "wide" else len(w.params)
        self.sym = ca.SX.sym("v", n)
        self.elems = ca.vertsplit(self.sym) if w.name != "mlp" else None

    def _graph(self):
        ca, w, e = self.ca, self.w, self.elems
        if w.name == "chain":
            return chain(e[0], e[1], w.size)
        if w.name == "wide":
            return wide(e[:w.size], e[w.size:])
        nin, nouts = MLP_SHAPE
        sizes = [nin] + list(nouts)
        h = ca.DM(self.np.array(w.X).T)                  # 2 x samples
        k = 0
        for i in range(len(nouts)):
            m = sizes[i + 1] * (sizes[i] + 1)
            wb = ca.reshape(self.sym[k:k + m], sizes[i] + 1, sizes[i + 1]).T   # rows: w..., b
            k += m
            h = ca.mtimes(wb[:, :sizes[i]], h) + ca.repmat(wb[:, sizes[i]], 1, len(w.X))
            if i != len(nouts) - 1:
                h = ca.fmax(h, 0)
        losses = ca.fmax(1 - ca.DM(w.Y).T * h, 0)
        return ca.sum2(losses) * (1.0 / len(w.X)) + ALPHA * ca.sumsqr(self.sym)

    def forward(self):
        ca = self.ca
        self.out = self._graph()
        self.f = ca.Function("f", [self.sym], [self.out])
        self.value = float(self.f(self.x0))

    def backward(self):
        ca = self.ca
        g = ca.gradient(self.out, self.sym)
        self.fg = ca.Function("fg", [self.sym], [self.out, g])
        value, grad = self.fg(self.x0)
        self.value, self.grad = float(value), grad.full().ravel()

    def result(self):
        return self.value, [self.grad[i] for i in self.watch_idx]

    def _vector(self, w):
        if w.name == "chain":
            return self.np.array([w.x0, w.y0])
        return self.np.array(w.A + w.B if w.name == "wide" else w.params)

    def output(self):
        return self.value

    def replay(self, moved=True):
        return self.fg(self.x1 if moved else self.x0)

    def replay_result(self, raw):
        grad = raw[1].full().ravel()
        return float(raw[0]), [float(grad[i]) for i in self.watch_idx]

    def step(self):
        if self.p is None:
            self.leaves()
            self.forward()
            self.backward()
            self.p = self.np.array(self.w.params)
        loss, g = self.fg(self.p)
        self.p = self.p - LR * g.full().ravel()
        return float(loss)


class JaxCase(Case):
    """JAX (CPU, float64 via jax_enable_x64, one thread): jit(value_and_grad).
    chain and wide are the scalar code traced op by op (the same graph as
    everyone else's; sizes are smaller, see PEER_SIZES); the MLP is written
    the way JAX users write it, with jnp arrays (W @ h + b, jax.nn.relu).
    compile = the first call (trace + XLA compile + run), reported apart;
    replay  = later calls on new inputs; step = a jitted SGD step."""
    peer = "jax"
    module = "jax"
    records = False
    replays = True

    def __init__(self, workload):
        super().__init__(workload)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
        import jax
        import jax.numpy as jnp
        import numpy as np
        jax.config.update("jax_enable_x64", True)
        self.jax, self.jnp, self.np = jax, jnp, np
        w = workload
        if w.name == "chain":
            loss = lambda x, y: chain(x, y, w.size)            # noqa: E731
            self.vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            inputs = lambda w: (np.float64(w.x0), np.float64(w.y0))   # noqa: E731
            self.unpack = lambda g: [float(g[0]), float(g[1])]
        elif w.name == "wide":
            # jnp.unstack: one op splitting the arrays into scalars (list(A) would
            # trace n slices whose gradients compile three times slower)
            loss = lambda A, B: wide(jnp.unstack(A), jnp.unstack(B))   # noqa: E731
            self.vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            inputs = lambda w: (np.array(w.A), np.array(w.B))          # noqa: E731
            self.unpack = lambda g: [float(g[0][0]), float(g[1][0])]
        else:
            nin, nouts = MLP_SHAPE
            sizes = [nin] + list(nouts)

            def inputs(w):
                params, k = [], 0
                for i in range(len(nouts)):
                    m = sizes[i + 1] * (sizes[i] + 1)
                    wb = np.array(w.params[k:k + m]).reshape(sizes[i + 1], sizes[i] + 1)
                    params.append((wb[:, :-1].copy(), wb[:, -1].copy()))
                    k += m
                return params, np.array(w.X), np.array(w.Y)

            last = len(nouts) - 1

            def loss(params, X, Y):
                h = X
                for i, (W, b) in enumerate(params):
                    h = h @ W.T + b
                    if i != last:
                        h = jax.nn.relu(h)
                data_loss = jnp.mean(jax.nn.relu(1 - Y * h[:, 0]))
                return data_loss + ALPHA * sum(jnp.sum(W * W) + jnp.sum(b * b) for W, b in params)

            def step(params, X, Y):
                value, grads = jax.value_and_grad(loss)(params, X, Y)
                return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

            self.vg = jax.jit(jax.value_and_grad(loss))
            self.jstep = jax.jit(step)
            self.unpack = lambda g: [float(v) for v in np.concatenate(
                [np.column_stack([W, b]).ravel() for W, b in g])[w.checked]]
            self.state = None
        self.inputs, self.other = inputs(w), inputs(w.moved())

    def leaves(self):
        pass

    def compile(self):
        value, grads = self.jax.block_until_ready(self.vg(*self.inputs))
        self.value, self.grads = float(value), self.unpack(grads)

    def result(self):
        return self.value, self.grads

    def output(self):
        return self.value

    def replay(self, moved=True):
        return self.jax.block_until_ready(self.vg(*(self.other if moved else self.inputs)))

    def replay_result(self, raw):
        return float(raw[0]), self.unpack(raw[1])

    def step(self):
        if self.state is None:
            self.state = self.inputs[0]
        value, self.state = self.jax.block_until_ready(self.jstep(self.state, *self.inputs[1:]))
        return float(value)


class Peer:
    def __init__(self, name, label, cls, module=None):
        self.name, self.label, self.cls, self.module = name, label, cls, module

    def case(self, workload):
        return self.cls(workload)

    def version(self):
        if self.module is None:
            return None
        from importlib import metadata
        try:
            return metadata.version(self.module)
        except metadata.PackageNotFoundError:
            return getattr(__import__(self.module), "__version__", "?")

    def available(self):
        if self.module is None:
            return True
        import importlib.util
        return importlib.util.find_spec(self.module) is not None


PEERS = {p.name: p for p in [
    Peer("floats", "plain floats (no AD)", FloatsCase),
    Peer("autograd_c", "autograd_c", AutogradCCase, "autograd_c"),
    Peer("micrograd", "micrograd", MicrogradCase, "micrograd"),
    Peer("torch", "PyTorch, 0-d float64 tensors, 1 thread", TorchCase, "torch"),
    Peer("xad", "XAD (xad.adj_1st)", XadCase, "xad"),
    Peer("casadi", "CasADi (SX, Function)", CasadiCase, "casadi"),
    Peer("jax", "JAX, jit(value_and_grad), x64", JaxCase, "jax"),
]}

NOT_RUN = {
    "AADC": "not run (licence: Community Edition clauses 3.3, 4.1 forbid benchmarking against it)",
}
