"""Scale: no recursion anywhere, big graphs, a node used a million times.

A 10,000,000-op chain backprops (and zero_grad(), grad(), compaction and
deletion work on it); a 50,000,000-node graph builds and backprops (slow);
100,000 nested calls of every unary op give the gradient forward-mode
arithmetic gives; a random graph spanning several growth steps of every
tape array matches PyTorch; a node used 1,000,000 times gets the sum of
its uses.

Bodies that count nodes run in a fresh thread, which has its own empty tape.
"""
import math
import random
import threading

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread


def geometric_sum(c, n):
    """sum_{k=0}^{n} c**k for a double c close to 1, accurately: 1 - c is exact."""
    return -math.expm1((n + 1) * math.log1p(c - 1.0)) / (1.0 - c)


# ---------------------------------------------------------------------------
# long chains
# ---------------------------------------------------------------------------

def test_ten_million_op_chain():
    """y <- y * c + x, 5,000,000 times: 10,000,000 recorded ops in one chain,
    and x used 5,000,001 times.  dy/dx = sum_{k=0}^{n} c^k."""
    n, c = 5_000_000, 1.0 - 1e-7

    def body():
        x = ag.Variable(0.5)
        y = x
        for _ in range(n):
            y = y * c + x
        assert ag.tape_stats()["nodes"] == 2 * n
        expected = geometric_sum(c, n)
        assert y.data == pytest.approx(0.5 * expected, rel=1e-9)
        y.backward()
        assert x.grad == pytest.approx(expected, rel=1e-9)
        # the other whole-graph walks do not recurse either
        assert ag.grad(y, [x]) == [x.grad]
        y.zero_grad()
        assert x.grad == 0.0
        _core._compact()                 # everything reachable: nothing moves
        assert ag.tape_stats()["nodes"] == 2 * n
        y.backward(2.0)
        assert x.grad == pytest.approx(2.0 * expected, rel=1e-9)
        del y
        assert ag.tape_stats()["nodes"] == 0

    in_fresh_thread(body)


def test_ten_million_additions_exact():
    """y <- y + x ten million times: the gradient is an exact integer."""
    def body():
        x = ag.Variable(0.25)
        y = x
        for _ in range(10_000_000):
            y = y + x
        assert y.data == 0.25 * 10_000_001
        y.backward()
        assert x.grad == 10_000_001.0

    in_fresh_thread(body)


@pytest.mark.slow
def test_fifty_million_node_graph():
    """50,000,001 nodes (~0.8 GB of tape plus 0.4 GB of adjoints)."""
    n, c = 25_000_000, 1.0 - 1e-8

    def body():
        x = ag.Variable(2.0)
        y = x
        for _ in range(n):
            y = y * c + x
        s = ag.tape_stats()
        assert s["nodes"] == 2 * n
        assert s["bytes"] >= 16 * s["nodes"]
        expected = geometric_sum(c, n)
        assert y.data == pytest.approx(2.0 * expected, rel=1e-8)
        y.backward()
        assert x.grad == pytest.approx(expected, rel=1e-8)
        del y
        s = ag.tape_stats()
        assert s["nodes"] == 0 and s["bytes"] < 1 << 20

    in_fresh_thread(body)


# ---------------------------------------------------------------------------
# 100,000 nested calls of every unary op
# ---------------------------------------------------------------------------

HALF_PI = math.pi / 2
SQRT_PI_2 = math.sqrt(math.pi) / 2
LOG2 = math.log(2.0)


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


# name: (start, one step on Variables, one step on floats -> (value, d value / d input))
# Each step keeps the iterate bounded and its derivative away from 0 and inf,
# so after 100,000 steps the gradient is still a meaningful number.
UNARY_CHAINS = {
    "neg": (0.7, lambda y: -y, lambda v: (-v, -1.0)),
    "abs": (-0.5, lambda y: -abs(y), lambda v: (-abs(v), 1.0 if v < 0 else -1.0)),
    "exp": (-1.0, lambda y: ag.exp(y) - 1.0, lambda v: (math.exp(v) - 1.0, math.exp(v))),
    "log": (1.0, lambda y: ag.log(y + 1.0), lambda v: (math.log(v + 1.0), 1.0 / (v + 1.0))),
    "log1p": (1.0, lambda y: ag.log1p(y), lambda v: (math.log1p(v), 1.0 / (1.0 + v))),
    "expm1": (-1.0, lambda y: ag.expm1(y), lambda v: (math.expm1(v), math.exp(v))),
    "sqrt": (1.0, lambda y: ag.sqrt(2.0 * y + 1.0) - 1.0,
             lambda v: (math.sqrt(2.0 * v + 1.0) - 1.0, 1.0 / math.sqrt(2.0 * v + 1.0))),
    "sin": (1.0, lambda y: ag.sin(y), lambda v: (math.sin(v), math.cos(v))),
    "cos": (1.0, lambda y: ag.cos(y - HALF_PI),
            lambda v: (math.cos(v - HALF_PI), -math.sin(v - HALF_PI))),
    "tan": (0.001, lambda y: ag.tan(y), lambda v: (math.tan(v), 1.0 + math.tan(v) ** 2)),
    "atan": (1.0, lambda y: ag.atan(y), lambda v: (math.atan(v), 1.0 / (1.0 + v * v))),
    "tanh": (1.0, lambda y: ag.tanh(y), lambda v: (math.tanh(v), 1.0 - math.tanh(v) ** 2)),
    "sigmoid": (1.0, lambda y: 4.0 * ag.sigmoid(y) - 2.0,
                lambda v: (4.0 * _sig(v) - 2.0, 4.0 * _sig(v) * (1.0 - _sig(v)))),
    "relu": (0.5, lambda y: ag.relu(y) * 1.00001, lambda v: (max(v, 0.0) * 1.00001, 1.00001)),
    "softplus": (-1.0, lambda y: 2.0 * (ag.softplus(y) - LOG2),
                 lambda v: (2.0 * (math.log1p(math.exp(v)) - LOG2), 2.0 * _sig(v))),
    "erf": (1.0, lambda y: ag.erf(y) * SQRT_PI_2,
            lambda v: (math.erf(v) * SQRT_PI_2, math.exp(-v * v))),
}
DEPTH = 100_000


@pytest.mark.parametrize("name", sorted(UNARY_CHAINS))
def test_deep_unary_chain(name):
    start, step, step_float = UNARY_CHAINS[name]
    depth = DEPTH + 1 if name == "neg" else DEPTH     # an odd count makes neg's gradient -1
    x = ag.Variable(start)
    y = x
    for _ in range(depth):
        y = step(y)
    v, d = start, 1.0
    for _ in range(depth):
        v, dv = step_float(v)
        d *= dv
    assert math.isfinite(d) and d != 0.0 and abs(d) > 1e-12
    assert y.data == pytest.approx(v, rel=1e-12, abs=1e-300)
    y.backward()
    assert x.grad == pytest.approx(d, rel=1e-9)
    assert ag.grad(y, [x]) == [x.grad]


def test_deep_unary_chain_exact_cases():
    """Chains whose gradient is exactly known."""
    x = ag.Variable(0.7)
    y = x
    for _ in range(DEPTH + 1):
        y = -y
    y.backward()
    assert (y.data, x.grad) == (-0.7, -1.0)

    x = ag.Variable(3.0)
    y = x
    for _ in range(DEPTH):
        y = ag.relu(y)
    y.backward()
    assert (y.data, x.grad) == (3.0, 1.0)

    x = ag.Variable(-3.0)                    # relu at a negative input: the gradient dies
    y = x
    for _ in range(DEPTH):
        y = ag.relu(y) + x * 0.0
    y.backward()
    assert x.grad == 0.0


# ---------------------------------------------------------------------------
# a random graph spanning several growth steps of every tape array
# ---------------------------------------------------------------------------

N_RANDOM_NODES = 30_000
N_RANDOM_LEAVES = 600


class _AgLib:
    tanh, sin, atan, sigmoid = ag.tanh, ag.sin, ag.atan, ag.sigmoid

    @staticmethod
    def leaf(v):
        return ag.Variable(v)

    @staticmethod
    def nsum(xs):
        return ag.sum(xs)

    @staticmethod
    def ndot(xs, cs):
        return ag.dot(xs, cs)


def _torch_lib(torch):
    class _TorchLib:
        tanh, sin, atan, sigmoid = torch.tanh, torch.sin, torch.atan, torch.sigmoid

        @staticmethod
        def leaf(v):
            return torch.tensor(v, dtype=torch.float64, requires_grad=True)

        @staticmethod
        def nsum(xs):
            return sum(xs[1:], xs[0])

        @staticmethod
        def ndot(xs, cs):
            return sum((x * c for x, c in zip(xs[1:], cs[1:])), xs[0] * cs[0])
    return _TorchLib


def random_graph(lib, seed, n_nodes=N_RANDOM_NODES, garbage=False):
    """A random DAG over N_RANDOM_LEAVES leaves, with many distinct constants
    and n-ary nodes; every intermediate result is kept in `nodes`.  With
    garbage=True, dead nodes with fresh constants are recorded in between."""
    rng = random.Random(seed)
    leaves = [lib.leaf(rng.uniform(-1.0, 1.0)) for _ in range(N_RANDOM_LEAVES)]
    nodes = list(leaves)

    def pick():
        if rng.random() < 0.1:
            return leaves[rng.randrange(len(leaves))]
        return nodes[max(len(nodes) - 1 - int(rng.expovariate(1 / 40)), 0)]

    for i in range(n_nodes):
        r = rng.random()
        u = pick()
        if r < 0.2:
            v = u * rng.uniform(-1.5, 1.5)
        elif r < 0.35:
            v = (u + pick()) * 0.5
        elif r < 0.5:
            v = u * pick()
        elif r < 0.6:
            v = lib.tanh(u)
        elif r < 0.7:
            v = lib.sin(u)
        elif r < 0.75:
            v = lib.atan(u)
        elif r < 0.8:
            v = lib.sigmoid(u)
        elif r < 0.85:
            v = u - pick()
        elif r < 0.9:
            v = u / (1.5 + pick() * pick())
        elif r < 0.95:
            k = rng.randint(2, 8)
            v = lib.nsum([pick() for _ in range(k)]) * (1.0 / k)
        else:
            k = rng.randint(2, 8)
            v = lib.ndot([pick() for _ in range(k)], [rng.uniform(-1.0, 1.0) for _ in range(k)])
        nodes.append(v)
        if garbage:
            # dead: a distinct constant, an n-ary node, a fresh leaf entry
            u * (i + 0.5)
            ag.dot([u, 1.0 + i], [0.25 * i, v])
            ag.Variable(float(i)) * u
    picks = [nodes[rng.randrange(len(nodes))] for _ in range(500)] + nodes[-50:]
    out = lib.nsum(picks)
    return leaves, nodes, out


def test_random_graph_over_several_growth_steps_matches_torch():
    torch = pytest.importorskip("torch")

    def body():
        leaves, nodes, out = random_graph(_AgLib, 11)
        s = ag.tape_stats()
        # past several doublings of every array (initial sizes: 1024 nodes,
        # 256 constants, 1024 operand words, 64 leaf entries)
        assert s["nodes"] > 32 * 1024
        assert s["constants"] > 32 * 256
        assert s["args"] > 16 * 1024
        assert s["leaves"] == N_RANDOM_LEAVES
        out.backward()
        return out.data, [v.grad for v in leaves]

    value, grads = in_fresh_thread(body)
    t_leaves, _, t_out = random_graph(_torch_lib(torch), 11)
    t_out.backward()
    t_grads = [0.0 if v.grad is None else v.grad.item() for v in t_leaves]
    assert value == pytest.approx(t_out.item(), rel=1e-12)
    scale = max(abs(g) for g in t_grads)
    assert scale > 0.1
    bad = [(i, g, t) for i, (g, t) in enumerate(zip(grads, t_grads))
           if not abs(g - t) <= 1e-12 * scale]
    assert bad == []
    assert sum(g != 0.0 for g in grads) > N_RANDOM_LEAVES // 2


def test_random_graph_same_gradients_through_many_compactions():
    """The same random graph recorded with dead nodes (new constants, n-ary
    lists, leaf entries) interleaved and a tiny compaction floor gives
    bit-for-bit the gradients of a clean recording."""
    def clean():
        leaves, nodes, out = random_graph(_AgLib, 5, n_nodes=15_000)
        out.backward()
        return out.data, [v.grad for v in leaves], [n.data for n in nodes[::97]]

    def compacted():
        previous = _core._set_compaction_floor(1_000)
        try:
            leaves, nodes, out = random_graph(_AgLib, 5, n_nodes=15_000, garbage=True)
            s = ag.tape_stats()
            assert s["compactions"] >= 5
            out.backward()
            return out.data, [v.grad for v in leaves], [n.data for n in nodes[::97]]
        finally:
            _core._set_compaction_floor(previous)

    assert in_fresh_thread(compacted) == in_fresh_thread(clean)


# ---------------------------------------------------------------------------
# a node used 1,000,000 times
# ---------------------------------------------------------------------------

N_USES = 1_000_000
COEFS = [float(i % 11 - 4) for i in range(N_USES)]
COEF_SUM = sum(COEFS)          # an exact integer


def test_leaf_used_a_million_times_builtin_sum():
    x = ag.Variable(1.25)
    s = sum(x * c for c in COEFS)          # 2,000,000 nodes: (((0 + x c0) + x c1) + ...)
    assert s.data == 1.25 * COEF_SUM
    s.backward()
    assert x.grad == COEF_SUM


def test_leaf_used_a_million_times_ag_sum():
    x = ag.Variable(1.25)
    s = ag.sum([x * c for c in COEFS])     # 1,000,000 products and ONE sum node
    assert s.op == "sum"
    assert s.data == 1.25 * COEF_SUM
    s.backward()
    assert x.grad == COEF_SUM


def test_interior_node_used_a_million_times():
    x = ag.Variable(0.3)
    z = ag.sin(x)
    cos_x = math.cos(0.3)
    # through a million products
    s = ag.sum([z * c for c in COEFS])
    assert ag.grad(s, [x, z]) == [cos_x * COEF_SUM, COEF_SUM]
    # the same node a million times in one sum's operand list
    s = ag.sum([z] * N_USES)
    assert s.data == pytest.approx(N_USES * math.sin(0.3), rel=1e-9)
    assert ag.grad(s, [x, z]) == [cos_x * N_USES, float(N_USES)]
    # and in a dot product, on both sides
    s = ag.dot([z] * N_USES, COEFS)
    assert ag.grad(s, [x]) == [cos_x * COEF_SUM]
    s = ag.dot([z] * 1000, [z] * 1000)     # 1000 z^2: d/dx = 2000 z cos(x)
    assert ag.grad(s, [x]) == [pytest.approx(2000 * math.sin(0.3) * cos_x, rel=1e-12)]
    # a leaf directly, a million times
    s = ag.sum([x] * N_USES)
    s.backward()
    assert x.grad == float(N_USES)
