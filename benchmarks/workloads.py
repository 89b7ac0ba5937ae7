"""The benchmark workloads, and for every peer the code that runs them.

One module, shared by ``compare.py`` (the peer comparison), the pytest-benchmark
suites (``test_bench_*.py``) and ``bench_core.py`` (the core's quick benchmark),
so that every entry point times the same graphs.

Workloads (``make_workload(name, size)``):

  chain  ``y = y*a + x*0.0001``, ``size`` times, from leaves x=0.5, y=1.0, the
         multiplier ``a`` alternating 0.9999 and 1/0.9999: 3*size scalar
         operations, each depending on the previous one (a graph ``size``
         levels deep).  The alternation keeps every adjoint within a factor
         1/0.9999 of 1 at any length (with ``a`` = 0.9999 throughout, the early
         adjoints 0.9999**k become subnormal past ~7M iterations and slow
         every backward down); values grow by about 1e-4 per iteration (1,700
         at 10^8 nodes).  Gradients checked: dy/dx, dy/dy0.
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
  batch_small, batch_large
         the same MLP's per-sample loss ``relu(1 - y*score)`` summed over
         ``size`` rows (1,000 and 100,000 make-moons samples; no L2 term):
         the replay case, where a compiled per-sample loss runs over rows with
         the parameters shared (``jax.vmap`` with ``in_axes``).  Recording
         peers record all rows as one graph.  ``size`` is the number of rows;
         644 scalar nodes per row (643 in the loss, one add of the sum).

Node counts: a workload's ``nodes`` is the number of scalar operations in its
plain scalar formulation (the graph micrograd builds: 3*size for chain,
2*size for wide, 65,077 for the 100-sample MLP).  Every peer's times and
bytes are divided by that same number, so "ns per node" compares like with
like even where a peer records fewer, bigger nodes (autograd_c's ``dot``,
CasADi's matrix products, JAX's arrays).

Subnormal numbers (magnitudes below 2.2e-308) make floating-point arithmetic
up to ~100x slower on x86, so a workload that produced them would time the
CPU's microcode, not the AD tool.  ``subnormals(workload)`` computes every
value and every adjoint of the workload's scalar graph in plain floats and
NumPy (independently of any peer) and names the smallest non-zero magnitudes;
``compare.py``, ``bench_core.py``, ``bench_scale.py`` and the pytest suites
run it at the sizes they time and flag any subnormal.

Peers (``PEERS``): each has one ``Case`` class; ``PEERS[name].case(workload)``
returns an object with the phases the timers call:

  leaves()    make fresh inputs and parameters (not timed)
  forward()   record the graph (the "forward" time)
  backward()  the reverse pass (the "backward" time)
  result()    (value, [checked gradients]) after backward() or compile()
  compile()   the peers that replay without recording (JAX, autograd_c's
              ag.compile, CasADi on the batches): the first call, traced and compiled
  output()    the forward value as a float
  replay(moved)  value and gradient from the recorded graph, without running
              the Python code again (CasADi, JAX), at the workload's inputs
              (moved=False) or at ``workload.moved()``'s (moved=True); its
              raw result goes through replay_result() -> (value, grads)
  step()      one SGD training step (mlp only; state persists between calls)
  threaded()  autograd_c's compiled batches only: replay() on 2 threads

Peers that are not installed raise ImportError from ``case()``.
"""
import copy
import math
import os
import random
import sys

X0, Y0 = 0.5, 1.0          # chain's leaves
MLP_SHAPE = (2, (16, 16, 1))
MLP_SEED = 1337
ALPHA = 1e-4               # L2 weight of micrograd's demo
LR = 0.1                   # SGD learning rate of the training step
TOLERANCE = 1e-9           # relative agreement required of every peer

# full and --quick sizes; JAX traces the scalar graphs op by op in Python
# (about 1 ms per chain iteration, plus an XLA compile that grows with the
# graph), so it gets smaller chain and wide graphs.
SIZES = {"chain": (200_000, 10_000), "wide": (200_000, 10_000), "mlp": (100, 100),
         "batch_small": (1_000, 1_000), "batch_large": (100_000, 10_000)}
BATCH_NODES_PER_ROW = 644    # micrograd's count of relu(1 - y*score) (643) and one add of the sum
PEER_SIZES = {"jax": {"chain": (5_000, 500), "wide": (5_000, 500)}}
CHECK_SIZE = 1_000          # size of the small check for peers whose backward fails at full size


def size_for(peer, workload, quick):
    full, small = PEER_SIZES.get(peer, {}).get(workload, SIZES[workload])
    return small if quick else full


# ---------------------------------------------------------------------------
# The workloads, written once for any scalar type
# ---------------------------------------------------------------------------

CHAIN_A, CHAIN_B, CHAIN_C = 0.9999, 1 / 0.9999, 0.0001   # multipliers of y (alternating), of x


def chain(x, y, n):
    a, b, c = CHAIN_A, CHAIN_B, CHAIN_C
    for _ in range(n >> 1):
        y = y * a + x * c
        y = y * b + x * c
    if n & 1:
        y = y * a + x * c
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


def sample_loss(layers, x, y, relu):
    """One row of the batch workloads: micrograd's MLP on x, hinge loss."""
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        x = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
        if i != last:
            x = [relu(a) for a in x]
    return relu(1 - y * x[0])


def batch_loss(layers, X, Y, relu):
    """sample_loss summed over the rows (Python's sum: one add per row)."""
    return sum(sample_loss(layers, x, y, relu) for x, y in zip(X, Y))


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
        self.kind = "batch" if name.startswith("batch") else name
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
        elif self.kind == "batch":
            self.X, self.Y = make_moons(size)
            self.params = mlp_init()
            self.nodes = BATCH_NODES_PER_ROW * size
            k = len(self.params)
            self.checked = [0, k // 2, k - 1]
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
# Subnormal check: every value and adjoint of the scalar graph, in floats
# ---------------------------------------------------------------------------

SMALLEST_NORMAL = sys.float_info.min      # 2.2250738585072014e-308


class Magnitudes:
    """The smallest and largest non-zero magnitude seen, of values and of adjoints."""

    def __init__(self):
        self.lo = {"value": math.inf, "adjoint": math.inf}
        self.hi = {"value": 0.0, "adjoint": 0.0}

    def add(self, kind, v):
        """v: a float or a NumPy array."""
        import numpy as np
        a = np.abs(np.asarray(v, dtype=float)).ravel()
        a = a[a != 0]
        if a.size:
            self.lo[kind] = min(self.lo[kind], float(a.min()))
            self.hi[kind] = max(self.hi[kind], float(a.max()))


def _chain_magnitudes(w, m):
    """The chain: values y_k, y_k*a_k, x*c; adjoints d y_n / d y_k (the
    products of the later multipliers), which the products and x*c share,
    and x's, their sum times c.  Two float loops (about a second at 10^8 nodes)."""
    a, b, c = CHAIN_A, CHAIN_B, CHAIN_C
    x, y, n = w.x0, w.y0, w.size
    xc = x * c
    lo, hi = min(abs(x), abs(y), abs(xc)), max(abs(x), abs(y), abs(xc))
    for _ in range(n >> 1):
        t = y * a
        y = t + xc
        u = y * b
        y = u + xc
        for v in (t, y, u):            # y_k+1 and the two products of this pair
            v = abs(v)
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
    if n & 1:
        t = y * a
        y = t + xc
        lo, hi = min(lo, abs(t), abs(y)), max(hi, abs(t), abs(y))
    for v in (lo, hi):
        m.add("value", v)
    adj, alo, ahi, gx = 1.0, 1.0, 1.0, 0.0
    for k in range(n - 1, -1, -1):     # backward: adj = d y_n / d y_k
        gx += adj * c
        adj *= a if k % 2 == 0 else b
        if adj < alo:
            alo = adj
        elif adj > ahi:
            ahi = adj
    for v in (alo, ahi, gx):           # gx: x's adjoint
        m.add("adjoint", v)


def _wide_magnitudes(w, m):
    """wide: leaves A, B, products, the running sum; every sum and product
    has adjoint 1, A's leaves B's values and vice versa."""
    import numpy as np
    A, B = np.array(w.A), np.array(w.B)
    m.add("value", A)
    m.add("value", B)
    m.add("value", A * B)
    m.add("value", np.cumsum(A * B))
    m.add("adjoint", 1.0)
    m.add("adjoint", A)
    m.add("adjoint", B)


def _mlp_magnitudes(w, m, chunk=20_000):
    """mlp_loss's graph, micrograd's scalar form, in NumPy over chunks of
    samples: every product w*x, every partial sum b + w0*x0 + ..., every ReLU,
    the loss terms and their sums, and the adjoint of each (a neuron's
    products and partial sums share the adjoint of its output).  The batch
    workloads' batch_loss is the same graph without the mean and the L2 term
    (each row's loss has adjoint 1)."""
    batch = w.kind == "batch"
    import numpy as np
    layers = mlp_layers(w.params)
    Ws = [np.array([wt for wt, _ in layer]) for layer in layers]    # nout x nin
    bs = [np.array([b for _, b in layer]) for layer in layers]
    P = np.array(w.params)
    X, Y = np.array(w.X), np.array(w.Y)
    n, last = len(Y), len(layers) - 1
    m.add("value", P)                  # leaves, the L2 term's squares and their running sum
    if not batch:
        m.add("value", np.cumsum(P * P))
        m.add("value", P * P)
        m.add("adjoint", ALPHA)        # of the squares and the running sum; 1 for the rest
    m.add("adjoint", 1.0)
    grads = [np.zeros_like(Wi) for Wi in Ws]
    grads_b = [np.zeros_like(bi) for bi in bs]
    loss_sum = 0.0
    for start in range(0, n, chunk):
        h = X[start:start + chunk]
        y = Y[start:start + chunk]
        m.add("value", h)
        inputs, pres = [], []
        for i, (Wi, bi) in enumerate(zip(Ws, bs)):
            prods = h[:, None, :] * Wi[None, :, :]                    # samples x nout x nin
            partial = bi[None, :, None] + np.cumsum(prods, axis=2)
            m.add("value", prods)
            m.add("value", partial)
            inputs.append(h)
            pre = partial[:, :, -1]
            pres.append(pre)
            h = np.maximum(pre, 0.0) if i != last else pre
            m.add("value", h)
        s = h[:, 0]
        neg = -y * s
        u = 1 + neg
        losses = np.maximum(u, 0.0)
        running = loss_sum + np.cumsum(losses)
        loss_sum = float(running[-1]) if running.size else loss_sum
        for v in (neg, u, losses, running):
            m.add("value", v)
        # backward: d loss / d losses = 1/n (batches: 1), through relu(1 + -y*s) to the score
        g = np.where(u > 0, 1.0 if batch else 1.0 / n, 0.0)
        m.add("adjoint", g)
        adj = (-y * g)[:, None]                                       # d loss / d pre of the last layer
        for i in range(last, -1, -1):
            if i != last:
                adj = adj * (pres[i] > 0)
            m.add("adjoint", adj)      # the neuron's output, partial sums and products
            grads[i] += adj.T @ inputs[i]
            grads_b[i] += adj.sum(axis=0)
            adj = adj @ Ws[i]          # d loss / d inputs of layer i
            m.add("adjoint", adj)
    alpha = 0.0 if batch else ALPHA
    if not batch:
        data_loss = loss_sum * (1.0 / n)
        m.add("value", data_loss)
        m.add("value", data_loss + ALPHA * float(np.sum(P * P)))
    for gi, gb, Wi, bi in zip(grads, grads_b, Ws, bs):                # leaves: data + 2 alpha p
        m.add("adjoint", gi + 2 * alpha * Wi)
        m.add("adjoint", gb + 2 * alpha * bi)


def magnitudes(w):
    """Smallest and largest non-zero magnitudes of the values and adjoints of
    workload w's scalar graph (leaves and operations; the constants'
    adjoints, which most peers never compute, are left out)."""
    m = Magnitudes()
    {"chain": _chain_magnitudes, "wide": _wide_magnitudes, "mlp": _mlp_magnitudes,
     "batch": _mlp_magnitudes}[w.kind](w, m)
    return m


def subnormals(w):
    """None if no value or adjoint of w's scalar graph is subnormal, else a
    sentence saying which (for tables and warnings)."""
    m = magnitudes(w)
    bad = [f"smallest {kind} {m.lo[kind]:.3g}" for kind in ("value", "adjoint")
           if m.lo[kind] < SMALLEST_NORMAL]
    if not bad:
        return None
    return f"{w.name} at size {w.size:,}: subnormal numbers ({', '.join(bad)}); its timings measure them"


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
        if self.w.kind in ("mlp", "batch"):
            self.fn = mlp_loss if self.w.kind == "mlp" else batch_loss
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
        kind = self.w.kind
        self.out = self._mlp() if kind == "mlp" else self._batch() if kind == "batch" else self.fn(*self.args)

    def backward(self):
        self.out.backward()

    def output(self):
        return self.out.data

    def result(self):
        return self.out.data, [v.grad for v in self.watch]


def _seeded_model(MLP):
    """MLP(*MLP_SHAPE) drawn after random.seed(MLP_SEED), leaving Python's
    random state as it was; checks that it drew workloads.mlp_init()'s numbers."""
    state = random.getstate()
    random.seed(MLP_SEED)
    try:
        model = MLP(MLP_SHAPE[0], list(MLP_SHAPE[1]))
    finally:
        random.setstate(state)
    if [p.data for p in model.parameters()] != mlp_init():
        raise AssertionError(f"{MLP.__module__}.MLP drew different parameters than workloads.mlp_init")
    return model


class AutogradCCase(ValueCase):
    """autograd_c: Variable leaves, out.backward().  The MLP the fastest
    idiomatic way, as ``python -m autograd_c demo`` trains it: autograd_c.nn.MLP
    (one call into C per layer: a dot node per neuron, bias included, and its
    ReLU), inputs as plain floats, ag.sum for the data loss, ag.dot for the L2
    term; the training step updates with optim.SGD (the update in C)."""
    peer = "autograd_c"
    module = "autograd_c"

    def __init__(self, workload):
        super().__init__(workload)
        import autograd_c
        self.ag = autograd_c
        self.opt = None

    def leaves(self):
        if self.w.kind not in ("mlp", "batch"):
            self.scalar_leaves(self.ag.Variable)
            return
        from autograd_c.nn import MLP
        self.model = _seeded_model(MLP)
        self.params = self.model.parameters()
        for p, v in zip(self.params, self.w.params):     # moved() workloads differ from the draw
            p.data = v
        self.watch = [self.params[i] for i in self.w.checked]

    def _mlp(self):
        ag, model = self.ag, self.model
        scores = [model(x) for x in self.w.X]
        losses = [(1.0 - y * s).relu() for y, s in zip(self.w.Y, scores)]
        return ag.sum(losses) * (1.0 / len(losses)) + ALPHA * ag.dot(self.params, self.params)

    def _batch(self):
        model = self.model
        return self.ag.sum([(1.0 - y * model(x)).relu() for x, y in zip(self.w.X, self.w.Y)])

    def step(self):
        if self.opt is None:
            from autograd_c import optim
            self.leaves()
            self.opt = optim.SGD(self.params, lr=LR)
        loss = self._mlp()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.data


class MicrogradCase(ValueCase):
    """micrograd: Value leaves, out.backward(); the MLP is micrograd.nn.MLP
    and the demo's loss code, inputs wrapped in Value as the demo does.

    micrograd's backward() sorts the graph with a recursive depth-first
    search, one Python frame per graph level: at the default recursion limit
    (1000) it raises RecursionError from ~500 chain iterations (two levels
    each on the path the search follows) or ~1,000 wide pairs.  (With
    sys.setrecursionlimit raised it finishes on CPython 3.11, but users
    would have to know to do that.)  Most of its forward time is the cyclic
    garbage collector: every Value's _backward closure refers back to the
    Value, so each op makes a reference cycle and the collector keeps
    rescanning the growing graph."""
    peer = "micrograd"
    module = "micrograd"
    engine, nn = "micrograd.engine", "micrograd.nn"

    def __init__(self, workload):
        super().__init__(workload)
        import importlib
        self.Value = importlib.import_module(self.engine).Value
        self.MLP = importlib.import_module(self.nn).MLP
        self.model = None

    def leaves(self):
        if self.w.kind not in ("mlp", "batch"):
            self.scalar_leaves(self.Value)
            return
        self._make_model()

    def _make_model(self):
        self.model = _seeded_model(self.MLP)
        params = self.model.parameters()
        for p, v in zip(params, self.w.params):
            p.data = v
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

    def _batch(self):
        Value, model = self.Value, self.model
        return sum((1 + -yi * model(list(map(Value, xrow)))).relu() for xrow, yi in zip(self.w.X, self.w.Y))

    def step(self):
        # the demo's training loop body (fixed learning rate)
        if self.model is None:
            self._make_model()
        loss = self._mlp()
        self.model.zero_grad()
        loss.backward()
        for p in self.model.parameters():
            p.data -= LR * p.grad
        return loss.data


class DropInCase(MicrogradCase):
    """autograd_c as a micrograd drop-in: MicrogradCase's code (micrograd's
    demo, inputs wrapped in Value, Python's sum, the update in a Python loop)
    with the imports changed to autograd_c.engine and autograd_c.nn.  On
    chain and wide it is autograd_c's own code (Value is Variable), so it
    runs the MLP only (``Peer.workloads``)."""
    peer = "autograd_c_dropin"
    module = "autograd_c"
    engine, nn = "autograd_c.engine", "autograd_c.nn"


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
        if self.w.kind not in ("mlp", "batch"):
            self.scalar_leaves(self._leaf)
            return
        self.params = [self._leaf(v) for v in self.w.params]
        self.layers = mlp_layers(self.params)
        self.watch = [self.params[i] for i in self.w.checked]

    def forward(self):
        if self.w.kind in ("mlp", "batch"):
            loss = mlp_loss if self.w.kind == "mlp" else batch_loss
            self.out = loss(self.layers, self.w.X, self.w.Y, self.torch.relu)
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
        self.values = list(workload.params) if workload.kind in ("mlp", "batch") else None

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
        if self.w.kind not in ("mlp", "batch"):
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
        if self.w.kind in ("mlp", "batch"):
            loss = mlp_loss if self.w.kind == "mlp" else batch_loss
            self.out = loss(self.layers, self.w.X, self.w.Y, self._relu)
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
    the way JAX users write it, with jnp arrays (W @ h + b, jax.nn.relu); the
    batches are jit(value_and_grad(sum of vmap(per_sample, in_axes=(None, 0, 0)))).
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

            def per_sample(params, x, y):          # the batch workloads' row, vmapped below
                h = x
                for i, (W, b) in enumerate(params):
                    h = W @ h + b
                    if i != last:
                        h = jax.nn.relu(h)
                return jax.nn.relu(1 - y * h[0])

            def total(params, X, Y):
                return jnp.sum(jax.vmap(per_sample, in_axes=(None, 0, 0))(params, X, Y))

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

            self.vg = jax.jit(jax.value_and_grad(total if w.kind == "batch" else loss))
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


class CasadiBatchCase(Case):
    """CasADi on the batches: the per-sample loss as an SX Function of
    (p, x, y) with its gradient in p, ``Function.map`` over the rows with p
    shared and both outputs summed (``map(name, "serial", rows, [0], [0, 1])``),
    JIT-compiled with -O3 (``jit=True``, the "shell" compiler): the fastest
    form found.  Without JIT it is about 11x slower at 1,000 rows; the
    "thread" map (2 threads) was 13x slower at 1,000 rows and aborted the
    process at 100,000 in CasADi 3.8.2.  compile = building, JIT and the
    first call; replay = later calls."""
    peer = "casadi"
    module = "casadi"
    records = False
    replays = True
    trains = False

    def __init__(self, workload):
        super().__init__(workload)
        import casadi
        import numpy as np
        self.ca, self.np = casadi, np
        self.XT = np.array(workload.X).T.copy()
        self.YT = np.array(workload.Y).reshape(1, -1)
        self.p0, self.p1 = np.array(workload.params), np.array(workload.moved().params)

    def leaves(self):
        pass

    def compile(self):
        ca, w = self.ca, self.w
        nin, nouts = MLP_SHAPE
        sizes = [nin] + list(nouts)
        p, x, y = ca.SX.sym("p", len(w.params)), ca.SX.sym("x", nin), ca.SX.sym("y")
        h, k = x, 0
        for i in range(len(nouts)):
            m = sizes[i + 1] * (sizes[i] + 1)
            wb = ca.reshape(p[k:k + m], sizes[i] + 1, sizes[i + 1]).T     # rows: w..., b
            k += m
            h = ca.mtimes(wb[:, :sizes[i]], h) + wb[:, sizes[i]]
            if i != len(nouts) - 1:
                h = ca.fmax(h, 0)
        loss = ca.fmax(1 - y * h, 0)
        opts = {"jit": True, "compiler": "shell", "jit_options": {"flags": ["-O3"], "verbose": False}}
        f = ca.Function("f", [p, x, y], [loss, ca.gradient(loss, p)], opts)
        self.mapped = f.map("rows", "serial", w.size, [0], [0, 1], {})
        self.value, self.grads = self.replay_result(self.replay(moved=False))

    def result(self):
        return self.value, self.grads

    def output(self):
        return self.value

    def replay(self, moved=True):
        return self.mapped(self.p1 if moved else self.p0, self.XT, self.YT)

    def replay_result(self, raw):
        grad = raw[1].full().ravel()
        return float(raw[0]), [float(grad[i]) for i in self.w.checked]


class AutogradCReplayCase(Case):
    """autograd_c's compiled functions (``ag.compile``): the workload's code
    traced once, then replayed in C at new inputs, no Python per node.
    compile = the first call (trace, compile, one evaluation); replay = a
    later call with new input values (value and gradient).

      chain, wide  ``ag.compile`` of chain(x, y, n) / wide(A, B), inputs as
                   floats / float64 arrays
      mlp          micrograd's demo loss written micrograd's way (its loss
                   code on the drop-in ``autograd_c.engine.Value`` and
                   ``autograd_c.nn.MLP``), the 337 parameters as the input;
                   step = training by replay: the per-sample loss (hinge +
                   L2) over the 100 rows with the parameters shared
                   (``vmap(in_axes=(None, 0, 0))``), ``backward(...,
                   reduce="mean")``, ``optim.SGD``
      batches      the per-sample loss on ``nn.MLP``, ``vmap(in_axes=(None,
                   0, 0)).value_and_grad(..., reduce="sum")``; threaded() the
                   same with ``threads=2``."""
    peer = "autograd_c_replay"
    module = "autograd_c"
    records = False
    replays = True

    def __init__(self, workload):
        super().__init__(workload)
        import autograd_c
        self.ag = autograd_c
        self.trainer = None

    def leaves(self):
        pass

    def compile(self):
        import numpy as np
        ag, w = self.ag, self.w
        moved = w.moved()
        if w.kind == "chain":
            n = w.size
            self.cf = ag.compile(lambda x, y: chain(x, y, n))
            self.a0, self.a1 = (w.x0, w.y0), (moved.x0, moved.y0)
            self.call = self.cf.value_and_grad
            self.unpack = lambda g: [g[0], g[1]]
        elif w.kind == "wide":
            self.cf = ag.compile(wide)
            self.a0 = (np.array(w.A), np.array(w.B))
            self.a1 = (np.array(moved.A), np.array(moved.B))
            self.call = self.cf.value_and_grad
            self.unpack = lambda g: [float(g[0][0]), float(g[1][0])]
        elif w.kind == "mlp":
            from autograd_c.engine import Value
            from autograd_c.nn import MLP
            model = _seeded_model(MLP)
            X, Y = w.X, w.Y

            def loss(params):             # MicrogradCase._mlp: micrograd's demo code
                inputs = [list(map(Value, xrow)) for xrow in X]
                scores = list(map(model, inputs))
                losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(Y, scores)]
                data_loss = sum(losses) * (1.0 / len(losses))
                reg_loss = ALPHA * sum((p * p for p in params))
                return data_loss + reg_loss

            self.cf = ag.compile(loss)
            self.a0, self.a1 = (model.parameters(),), (np.array(moved.params),)
            self.call = self.cf.value_and_grad
            self.unpack = lambda g: [float(g[0][i]) for i in w.checked]
        else:
            from autograd_c.nn import MLP
            model = _seeded_model(MLP)
            self.cf = ag.compile(lambda params, x, y: (1.0 - y * model(x)).relu())
            one = self.cf.vmap(in_axes=(None, 0, 0))
            two = self.cf.vmap(in_axes=(None, 0, 0), threads=2)
            X, Y = np.array(w.X), np.array(w.Y)
            self.a0, self.a1 = (model.parameters(), X, Y), (np.array(moved.params), X, Y)
            self.call = lambda *a: one.value_and_grad(*a, reduce="sum")
            self.call2 = lambda *a: two.value_and_grad(*a, reduce="sum")
            self.unpack = lambda g: [float(g[0][i]) for i in w.checked]
        # the first call traces with a0 (the parameters' own Variables: they are the inputs)
        self.value, self.grads = self.replay_result(self.call(*self.a0))
        self.a0 = tuple(np.array(w.params) if isinstance(a, list) else a for a in self.a0)

    def result(self):
        return self.value, self.grads

    def output(self):
        return self.value

    def replay(self, moved=True):
        return self.call(*(self.a1 if moved else self.a0))

    def threaded(self):
        return self.call2(*self.a1)

    def replay_result(self, raw):
        return float(raw[0]), self.unpack(raw[1])

    def step(self):
        if self.trainer is None:
            import numpy as np
            from autograd_c import nn, optim
            ag, w = self.ag, self.w
            model = _seeded_model(nn.MLP)
            params = model.parameters()
            for p, v in zip(params, w.params):
                p.data = v
            sample = ag.compile(lambda ps, x, y: (1.0 - y * model(x)).relu() + ALPHA * ag.dot(ps, ps))
            self.trainer = (sample.vmap(in_axes=(None, 0, 0)), params, optim.SGD(params, lr=LR),
                            np.array(w.X), np.array(w.Y))
        batch, params, opt, X, Y = self.trainer
        opt.zero_grad()
        loss = batch.backward(params, X, Y, reduce="mean")
        opt.step()
        return loss


class Peer:
    """A peer: its name (for --peers), its label in tables (``labels``
    overrides it per workload), its Case class, the module it needs and the
    workloads it runs (default: all)."""

    def __init__(self, name, label, cls, module=None, workloads=None, labels=None, batch_cls=None):
        self.name, self.label, self.cls, self.module = name, label, cls, module
        self.workloads = tuple(workloads or SIZES)
        self.labels = labels or {}
        self.batch_cls = batch_cls          # its Case class for the batch workloads, if another

    def label_for(self, workload):
        return self.labels.get(workload, self.label)

    def runs(self, workload):
        return workload in self.workloads

    def case(self, workload):
        if workload.kind == "batch" and self.batch_cls is not None:
            return self.batch_cls(workload)
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


SMALL = ("chain", "wide", "mlp", "batch_small")     # peers too slow for 100,000 rows of scalar graphs

PEERS = {p.name: p for p in [
    Peer("floats", "plain floats (no AD)", FloatsCase),
    Peer("autograd_c", "autograd_c", AutogradCCase, "autograd_c",
         labels={"mlp": "autograd_c, idiomatic (nn.MLP, ag.sum/ag.dot, optim.SGD)"}),
    Peer("autograd_c_replay", "autograd_c compiled (ag.compile, replayed in C)", AutogradCReplayCase,
         "autograd_c", labels={"mlp": "autograd_c compiled (micrograd's loss code; step: training by replay)",
                               "batch_small": "autograd_c compiled (vmap, 1 thread; 2 threads: see below)",
                               "batch_large": "autograd_c compiled (vmap, 1 thread; 2 threads: see below)"}),
    Peer("autograd_c_dropin", "autograd_c drop-in (micrograd's code, imports changed)", DropInCase,
         "autograd_c", workloads=("mlp",)),
    Peer("micrograd", "micrograd", MicrogradCase, "micrograd", workloads=SMALL),
    Peer("torch", "PyTorch, 0-d float64 tensors, 1 thread", TorchCase, "torch", workloads=SMALL),
    Peer("xad", "XAD (xad.adj_1st)", XadCase, "xad", workloads=SMALL),
    Peer("casadi", "CasADi (SX, Function)", CasadiCase, "casadi", batch_cls=CasadiBatchCase,
         labels={"batch_small": "CasADi (SX, Function.map, JIT)", "batch_large": "CasADi (SX, Function.map, JIT)"}),
    Peer("jax", "JAX, jit(value_and_grad), x64", JaxCase, "jax",
         labels={"batch_small": "JAX, jit(value_and_grad(sum(vmap)))", "batch_large": "JAX, jit(value_and_grad(sum(vmap)))"}),
]}

NOT_RUN = {
    "AADC": "not run (licence: Community Edition clauses 3.3, 4.1 forbid benchmarking against it)",
}
