"""Property-based tests (hypothesis): random DAGs over every op and operator,
compared with PyTorch float64 (finite differences where torch is absent).

A drawn program starts from 2-4 leaves and appends operations whose operands
are any earlier result (so subexpressions are shared), leaves or constants:
all unary functions, + - * / ** with Variables and numbers on either side,
maximum/minimum, sum, dot, abs, relu, custom Functions.  Between operations
it may record unrelated graphs (kept or dropped), force a compaction, lower
the compaction floor or run gc.collect().  Leaf values and constants include
0, -0.0, +-inf and nan.  The output is the sum of the last result and one
earlier one; its value, ag.grad() and backward() must agree with torch.

Profiles (AUTOGRAD_C_HYPOTHESIS=name): "ci" (default: derandomized, a fixed
set of examples, well under 60 s) and "dev" (random, 2,000 examples).
"""
import gc
import math
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import autograd_c as ag  # noqa: E402
from autograd_c import _core  # noqa: E402
from helpers import in_fresh_thread  # noqa: E402

try:
    import torch
except ImportError:          # finite differences instead
    torch = None

settings.register_profile("ci", derandomize=True, max_examples=120, deadline=None,
                          suppress_health_check=list(HealthCheck), database=None)
settings.register_profile("dev", max_examples=2000, deadline=None,
                          suppress_health_check=list(HealthCheck))
PROFILE = settings.get_profile(os.environ.get("AUTOGRAD_C_HYPOTHESIS", "ci"))

INF, NAN = math.inf, math.nan
SPECIAL = [0.0, -0.0, INF, -INF, NAN]
UNARY = ["neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "atan",
         "tanh", "sigmoid", "relu", "softplus", "erf"]
BINARY = ["+", "-", "*", "/", "**"]

values = st.one_of(st.floats(-3.0, 3.0, allow_nan=False).filter(lambda v: v == 0.0 or abs(v) > 1e-3),
                   st.sampled_from([0.5, 1.0, 2.0, -1.0]),
                   st.sampled_from(SPECIAL))
constants = st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 3.0, -1.5, 0.3, INF, -INF, NAN])


@st.composite
def programs(draw, special=True):
    vals = values if special else st.floats(-3.0, 3.0, allow_nan=False)
    consts = constants if special else st.sampled_from([0.5, 1.0, 2.0, 3.0, -1.5, 0.3])
    leaves = draw(st.lists(vals, min_size=2, max_size=4))
    n = len(leaves)
    prog = []
    for _ in range(draw(st.integers(1, 14))):
        pick = st.integers(0, n - 1)
        kind = draw(st.sampled_from(["unary", "binary", "binary", "binary", "maxmin", "sum", "dot",
                                     "fn", "junk", "compact", "floor", "gc"]))
        if kind == "unary":
            prog.append(("unary", draw(st.sampled_from(UNARY)), draw(pick)))
        elif kind == "binary":
            form = draw(st.sampled_from(["VV", "Vc", "cV"]))
            prog.append(("binary", draw(st.sampled_from(BINARY)), form, draw(pick), draw(pick),
                         draw(consts)))
        elif kind == "maxmin":
            prog.append(("maxmin", draw(st.sampled_from(["maximum", "minimum"])),
                         draw(st.sampled_from(["VV", "Vc", "cV"])), draw(pick), draw(pick),
                         draw(consts)))
        elif kind in ("sum", "dot"):
            k = draw(st.integers(1, 4))
            items = [("v", draw(pick)) if draw(st.booleans()) else ("c", draw(consts))
                     for _ in range(k if kind == "sum" else 2 * k)]
            if all(t == "c" for t, _ in items):
                items[0] = ("v", draw(pick))
            prog.append((kind, items))
        elif kind == "fn":
            prog.append(("fn", draw(st.sampled_from(["cube", "mul"])), draw(pick), draw(pick)))
        else:
            prog.append((kind, draw(st.integers(0, 3))))
            continue
        n += 1
    out_extra = draw(st.integers(0, n - 1))
    return leaves, prog, out_extra


class Cube(ag.Function):
    def forward(self, x):
        return x * x * x

    def backward(self, gy):
        (x,) = self.inputs
        return gy * (3.0 * (x * x))


class Mul(ag.Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, gy * a


def run_ag(leaves, prog, out_extra, junk):
    xs = [ag.Variable(v) for v in leaves]
    nodes = list(xs)
    for ins in prog:
        kind = ins[0]
        if kind == "unary":
            a = nodes[ins[2]]
            nodes.append(-a if ins[1] == "neg" else getattr(ag, ins[1])(a))
        elif kind in ("binary", "maxmin"):
            _, op, form, i, j, c = ins
            a = nodes[i]
            b = nodes[j] if form == "VV" else c
            if form == "cV":
                a, b = c, a
            if kind == "maxmin":
                nodes.append(getattr(ag, op)(a, b))
            else:
                nodes.append({"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                              "/": lambda: a / b, "**": lambda: a ** b}[op]())
        elif kind in ("sum", "dot"):
            items = [nodes[v] if t == "v" else v for t, v in ins[1]]
            if kind == "sum":
                nodes.append(ag.sum(items))
            else:
                h = len(items) // 2
                nodes.append(ag.dot(items[:h], items[h:]))
        elif kind == "fn":
            _, f, i, j = ins
            nodes.append(Cube()(nodes[i]) if f == "cube" else Mul()(nodes[i], nodes[j]))
        elif kind == "junk":                  # an unrelated recording, kept or dropped
            u = ag.Variable(1.25)
            r = ag.exp(u * float(ins[1] + 1)) + u
            if ins[1] % 2:
                junk.append((r, u, float(ins[1] + 1)))
        elif kind == "compact":
            _core._compact()
        elif kind == "floor":
            _core._set_compaction_floor([16, 64, 256, 1 << 20][ins[1]])
        elif kind == "gc":
            gc.collect()
    out = ag.sum([nodes[-1], nodes[out_extra]])
    return xs, out


def torch_functions():
    """Cube and Mul as torch Functions with autograd_c's documented rule: a
    Function's backward runs only where gradient flows (an incoming gradient
    of exactly 0 gives zeros, even where the local derivative is inf)."""
    class TCube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            return torch.zeros_like(x) if gy.item() == 0.0 else gy * (3.0 * (x * x))

    class TMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, gy):
            a, b = ctx.saved_tensors
            if gy.item() == 0.0:
                return torch.zeros_like(a), torch.zeros_like(b)
            return gy * b, gy * a

    return TCube.apply, TMul.apply


def run_torch(leaves, prog, out_extra):
    cube, mul = torch_functions()
    T = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    xs = [T(v).requires_grad_() for v in leaves]
    nodes = list(xs)
    for ins in prog:
        kind = ins[0]
        if kind == "unary":
            a = nodes[ins[2]]
            f = {"neg": torch.neg, "relu": torch.relu, "softplus": torch.nn.functional.softplus,
                 "log1p": torch.log1p, "expm1": torch.expm1}.get(ins[1]) or getattr(torch, ins[1])
            nodes.append(f(a))
        elif kind in ("binary", "maxmin"):
            _, op, form, i, j, c = ins
            a = nodes[i]
            b = nodes[j] if form == "VV" else c
            if kind == "maxmin":
                f = torch.maximum if op == "maximum" else torch.minimum
                nodes.append(f(a, T(c)) if form == "Vc" else f(T(c), a) if form == "cV" else f(a, b))
            elif form == "cV":
                nodes.append({"+": lambda: c + a, "-": lambda: c - a, "*": lambda: c * a,
                              "/": lambda: torch.div(T(c), a), "**": lambda: torch.pow(T(c), a)}[op]())
            else:
                nodes.append({"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                              "/": lambda: a / b, "**": lambda: a ** b}[op]())
        elif kind in ("sum", "dot"):
            items = [nodes[v] if t == "v" else T(v) for t, v in ins[1]]
            if kind == "sum":
                acc = items[0]
                for it in items[1:]:
                    acc = acc + it
                nodes.append(acc)
            else:
                h = len(items) // 2
                acc = None
                for p, q in zip(items[:h], items[h:]):
                    acc = p * q if acc is None else acc + p * q
                nodes.append(acc)
        elif kind == "fn":
            _, f, i, j = ins
            nodes.append(cube(nodes[i]) if f == "cube" else mul(nodes[i], nodes[j]))
    out = nodes[-1] + nodes[out_extra]
    grads = torch.autograd.grad(out, xs, allow_unused=True)
    return out.item(), [0.0 if g is None else g.item() for g in grads]


def run_fd(leaves, prog, out_extra):
    """Finite differences (only when torch is absent): value and central differences."""
    def f(vals):
        _, out = run_ag(vals, prog, out_extra, [])
        return out.data
    y = f(leaves)
    grads = []
    for k, v in enumerate(leaves):
        h = 1e-6 * max(1.0, abs(v))
        up, down = list(leaves), list(leaves)
        up[k] += h
        down[k] -= h
        grads.append((f(up) - f(down)) / (2 * h))
    return y, grads


def same(got, want, rel):
    if want != want or got != got:
        return want != want and got != got
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= rel * max(1.0, abs(want))


def check_program(leaves, prog, out_extra):
    def body():
        junk = []
        floor = _core._set_compaction_floor(1 << 20)
        try:
            xs, out = run_ag(leaves, prog, out_extra, junk)
            g = ag.grad(out, xs)
            out.backward()
            g2 = [x.grad for x in xs]
        finally:
            _core._set_compaction_floor(floor)
        if torch is not None:
            y, want = run_torch(leaves, prog, out_extra)
            rel_v, rel_g = 1e-9, 1e-7
        else:
            if not all(math.isfinite(v) for v in leaves) or not math.isfinite(out.data):
                return True
            y, want = run_fd(leaves, prog, out_extra)
            rel_v, rel_g = 1e-12, 1e-4
        assert same(out.data, y, rel_v), (out.data, y)
        for k, (a, b, w) in enumerate(zip(g, g2, want)):
            assert same(a, b, 0.0) or (a == b), f"ag.grad and backward() differ for leaf {k}: {a} {b}"
            if torch is None and not math.isfinite(w):
                continue
            assert same(a, w, rel_g), f"leaf {k}: grad {a}, reference {w}"
        for r, u, m in junk:           # the unrelated graphs are intact too
            assert r.data == math.exp(1.25 * m) + 1.25
            assert ag.grad(r, [u])[0] == pytest.approx(m * math.exp(1.25 * m) + 1.0, rel=1e-14)
        return True

    assert in_fresh_thread(body)


@settings(PROFILE)
@given(programs(special=False))
def test_random_dags_finite(p):
    """Finite leaves and constants: values and gradients match torch."""
    check_program(*p)


@settings(PROFILE)
@given(programs(special=True))
def test_random_dags_with_special_values(p):
    """0, -0.0, +-inf and nan among the leaves and constants: nan/inf propagate as in torch."""
    check_program(*p)


# Found by test_random_dags_with_special_values before the fix of issue 8:
# x0 = 0, n = (-x0) ** x0, out = dot([n, 0, 0], [inf, 0, 0]) + x0.  torch:
# d out/d x0 = nan (inf * 0 through the exponent's adjoint at a zero base);
# autograd_c gave 1.0.
POW_ZERO_BASE = ([0.0, 0.0],
                 [("junk", 0), ("unary", "neg", 0), ("binary", "**", "VV", 0, 0, 0.0),
                  ("dot", [("v", 3), ("c", 0.0), ("c", 0.0), ("c", INF), ("c", 0.0), ("c", 0.0)])],
                 0)


@pytest.mark.skipif(torch is None, reason="needs torch")
def test_pow_zero_base_in_a_dag():
    """A non-finite adjoint reaching pow's exponent at a zero base gives nan, as torch."""
    check_program(*POW_ZERO_BASE)
