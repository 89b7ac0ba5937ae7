"""Speed of second-order derivatives: hvp against backward(), torch and JAX, as ratios in one run.

    python benchmarks/bench_higher.py            # about 2 minutes
    python benchmarks/bench_higher.py --quick    # fewer rounds and smaller graphs
    python benchmarks/bench_higher.py --smoke    # tiny graphs, one round: does it run
    python benchmarks/bench_higher.py --only 3   # one table

Three tables (every contender is checked against autograd_c before its time
counts; rounds interleave the contenders, so drift on a shared machine hits
them alike; each cell is the best round and the median round):

1. hvp against one backward() on the same recorded graph: the C sweeps
   only (a tangent sweep and a forward-over-reverse sweep, against the
   first-order sweep), on the extended Rosenbrock function of 20,000 inputs
   (140,000 nodes) and micrograd's demo loss (MLP(2, [16, 16, 1]) over 100
   moons, 337 inputs, 65,000 scalar nodes).
2. End to end on the same scalar graph (recording f, then the derivative):
   ag.hvp against torch.autograd.functional.hvp and torch.func's
   jvp(grad(f)) on 0-d float64 tensors, with one backward() of each library
   and H v by create_graph (grad of grad(f) . v) beside them.
3. The dense Hessian of the extended Rosenbrock function of 100 inputs:
   ag.hessian against torch.func.hessian and
   torch.autograd.functional.hessian on 0-d tensors, and JAX's
   jit(hessian(f)) (its first call, which traces and compiles, reported
   separately) when JAX is installed.
4. Compiled functions (f = ag.compile(...)): f.hvp and f.hessian on one
   row (the extended Rosenbrock of 100 inputs, one array argument) against
   ag.hvp / ag.hessian, torch and JAX jit(hvp) / jit(hessian); and batched
   over 1,000 rows of a per-sample loss (a 2-3-1 tanh network, 13 shared
   parameters): the summed Hessian and hvp over the parameters, and the
   per-row Hessians over every input, on 1 and 2 threads, against ag.hessian
   / ag.hvp of the summed loss, torch.func on the loss vectorised over the
   rows (1-D tensors) and JAX jit(hessian) / jit(hvp) / jit(vmap(hessian)).
"""
import argparse
import gc
import math
import os
import statistics
import sys
import time
import warnings

import numpy as np

import autograd_c as ag
from autograd_c import _core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import make_moons, mlp_init, mlp_layers, mlp_loss  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

try:
    import torch
except ImportError:  # pragma: no cover - optional peer
    torch = None
try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover - optional peer
    jax = None


# ---------------------------------------------------------------------------
# the functions, written once for every scalar type
# ---------------------------------------------------------------------------

def rosenbrock(x, lib_sum=sum):
    """The extended Rosenbrock function of len(x) inputs (scalar code)."""
    return lib_sum([100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
                    for i in range(len(x) - 1)])


def rosen_ag(*x):
    return rosenbrock(x, ag.sum)


def mlp_ag(X, Y):
    def f(*params):
        return mlp_loss(mlp_layers(list(params)), X, Y, ag.relu)
    return f


def mlp_torch(X, Y):
    def f(*params):
        return mlp_loss(mlp_layers(list(params)), X, Y, torch.relu)
    return f


def rosen_torch(*x):
    return rosenbrock(x)


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def interleaved(contenders, rounds, min_time=0.02):
    if rounds <= 1:
        min_time = 0.0
    """{name: (best, median)} seconds per call; each round runs every
    contender back to back, repeating a fast one until it took min_time."""
    times = {name: [] for name in contenders}
    reps = {}
    for name, fn in contenders.items():          # calibrate repetitions (and warm up)
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        reps[name] = max(1, int(min_time / max(dt, 1e-9)))
    for _ in range(rounds):
        for name, fn in contenders.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}


def ms(t):
    return f"{t * 1e3:,.3f}" if t < 1 else f"{t * 1e3:,.0f}"


def row(label, t, base, note=""):
    best, median = t
    return (f"| {label} | {ms(best)} | {ms(median)} | {best / base[0]:,.2f}x / "
            f"{median / base[1]:,.2f}x |{note}")


def check(name, got, want, tol=1e-9):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
    if not err <= tol:
        raise SystemExit(f"{name} disagrees with autograd_c: relative error {err:.3g}")


# ---------------------------------------------------------------------------
# 1. hvp against backward() on the same recorded graph
# ---------------------------------------------------------------------------

def sweeps_table(rounds, quick, smoke=False):
    n = 50 if smoke else 2_000 if quick else 20_000
    samples = 2 if smoke else 20 if quick else 100
    X, Y = make_moons(samples)
    cases = [(f"extended Rosenbrock, {n:,} inputs", rosen_ag, list(np.linspace(-1.2, 1.2, n))),
             (f"micrograd demo loss, {samples} moons, 337 inputs", mlp_ag(X, Y), mlp_init())]
    lines = ["| graph | nodes | backward() ms (best / median) | hvp sweeps ms | hvp / backward "
             "(best / median round) |", "|---|---:|---:|---:|---:|"]
    for label, f, x0 in cases:
        rec = _core._record(f, x0)
        y = rec.outputs[0]
        nodes = ag.graph_size(y)
        v = np.cos(np.arange(len(x0), dtype=float))
        grad, hv = np.zeros(len(x0)), np.zeros(len(x0))
        rec.hvp(v, grad, hv)
        check("hvp vs hessian-free reference", hv, ag.hvp(f, x0, v)[1])
        t = interleaved({"backward": y.backward, "hvp": lambda: rec.hvp(v, grad, hv)}, rounds)
        b, h = t["backward"], t["hvp"]
        lines.append(f"| {label} | {nodes:,} | {ms(b[0])} / {ms(b[1])} | {ms(h[0])} / {ms(h[1])} "
                     f"| **{h[0] / b[0]:.2f}x** / {h[1] / b[1]:.2f}x |")
        del rec, y
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 2. end to end, against torch on the same scalar graph
# ---------------------------------------------------------------------------

def end_to_end_table(rounds, quick, smoke=False):
    n = 10 if smoke else 100 if quick else 200
    samples = 1 if smoke else 5 if quick else 10
    X, Y = make_moons(samples)
    cases = [(f"extended Rosenbrock, {n} inputs", rosen_ag, rosen_torch,
              list(np.linspace(-1.2, 1.2, n))),
             (f"micrograd demo loss, {samples} moons, 337 inputs", mlp_ag(X, Y), mlp_torch(X, Y),
              mlp_init())]
    out = []
    for label, f, f_t, x0 in cases:
        v = np.cos(np.arange(len(x0), dtype=float))
        _, want = ag.hvp(f, x0, v)
        contenders = {}

        def ag_backward():
            xs = [ag.Variable(a) for a in x0]
            f(*xs).backward()

        def ag_create_graph():              # H v as grad(grad(f) . v), the reverse pass recorded
            xs = [ag.Variable(a) for a in x0]
            gs = ag.grad(f(*xs), xs, create_graph=True)
            return ag.grad(ag.dot(gs, list(v)), xs)

        check("autograd_c create_graph", ag_create_graph(), want)
        contenders["autograd_c: record + backward()"] = ag_backward
        contenders["autograd_c: ag.hvp"] = lambda: ag.hvp(f, x0, v)
        contenders["autograd_c: grad(create_graph=True), then grad"] = ag_create_graph
        if torch is not None:
            tv = tuple(torch.tensor(a, dtype=torch.float64) for a in v)

            def torch_backward():
                ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in x0]
                f_t(*ts).backward()

            def torch_hvp():
                ts = tuple(torch.tensor(a, dtype=torch.float64) for a in x0)
                return torch.autograd.functional.hvp(f_t, ts, tv)[1]

            argnums = tuple(range(len(x0)))

            def torch_func_hvp():
                ts = tuple(torch.tensor(a, dtype=torch.float64) for a in x0)
                return torch.func.jvp(lambda *a: torch.func.grad(f_t, argnums=argnums)(*a), ts, tv)[1]

            def torch_create_graph():
                ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in x0]
                gs = torch.autograd.grad(f_t(*ts), ts, create_graph=True)
                return torch.autograd.grad(sum(g * c for g, c in zip(gs, tv)), ts)

            check("torch create_graph", [t.item() for t in torch_create_graph()], want)
            check("torch.autograd.functional.hvp", [t.item() for t in torch_hvp()], want)
            check("torch.func jvp(grad)", [t.item() for t in torch_func_hvp()], want)
            contenders["PyTorch 0-d: record + backward()"] = torch_backward
            contenders["PyTorch 0-d: torch.autograd.functional.hvp"] = torch_hvp
            contenders["PyTorch 0-d: torch.func.jvp(grad(f))"] = torch_func_hvp
            contenders["PyTorch 0-d: grad(create_graph=True), then grad"] = torch_create_graph
        t = interleaved(contenders, rounds)
        base = t["autograd_c: ag.hvp"]
        nodes = ag.graph_size(f(*[ag.Variable(a) for a in x0]))
        out.append(f"**{label}** ({nodes:,} autograd_c nodes)\n")
        out.append("| | ms (best) | ms (median) | vs ag.hvp (best / median) |")
        out.append("|---|---:|---:|---:|")
        for name, tt in t.items():
            out.append(row(name, tt, base))
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# 3. dense Hessian of the 100-input extended Rosenbrock
# ---------------------------------------------------------------------------

def hessian_table(rounds, quick, smoke=False):
    n = 10 if smoke else 100
    x0 = np.linspace(-1.2, 1.2, n)
    want = ag.hessian(rosen_ag, x0)
    contenders = {"autograd_c: ag.hessian": lambda: ag.hessian(rosen_ag, x0)}
    notes = {}
    if torch is not None:
        xt = torch.tensor(x0)
        argnums = tuple(range(n))

        def f_vec(t):                      # scalar code on the 0-d elements t[i]
            return rosenbrock([t[i] for i in range(n)])

        th = torch.func.hessian(f_vec)
        check("torch.func.hessian", th(xt).numpy(), want)
        contenders["PyTorch 0-d: torch.func.hessian"] = lambda: th(xt)
        ts = tuple(torch.tensor(a) for a in x0)
        h = torch.autograd.functional.hessian(rosen_torch, ts)
        check("torch.autograd.functional.hessian",
              [[h[j][k].item() for k in range(n)] for j in range(n)], want)
        contenders["PyTorch 0-d: torch.autograd.functional.hessian"] = \
            lambda: torch.autograd.functional.hessian(rosen_torch, ts)
    if jax is not None:
        def f_jax(x):
            return rosenbrock([x[i] for i in range(n)])

        xj = jnp.asarray(x0)
        t0 = time.perf_counter()
        hj = jax.jit(jax.hessian(f_jax))
        first = np.asarray(hj(xj).block_until_ready())
        notes["JAX: jit(hessian(f))"] = f" first call (trace + compile) {time.perf_counter() - t0:.2f} s"
        check("JAX jit(hessian)", first, want)
        contenders["JAX: jit(hessian(f))"] = lambda: hj(xj).block_until_ready()
    t = interleaved(contenders, rounds)
    base = t["autograd_c: ag.hessian"]
    lines = ["| | ms (best) | ms (median) | vs ag.hessian (best / median) |",
             "|---|---:|---:|---:|"]
    for name, tt in t.items():
        lines.append(row(name, tt, base, notes.get(name, "")))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 4. compiled functions: one row, and batched over rows
# ---------------------------------------------------------------------------

def per_sample(p, x0, x1, y, tanh):
    """Squared error of a 2-3-1 tanh network with parameters p (13) at one sample."""
    h = [tanh(p[3 * j] * x0 + p[3 * j + 1] * x1 + p[3 * j + 2]) for j in range(3)]
    out = p[9] * h[0] + p[10] * h[1] + p[11] * h[2] + p[12]
    return (out - y) ** 2


def compiled_table(rounds, quick, smoke=False):
    n = 10 if smoke else 100
    rows = 20 if smoke else 1_000
    x0 = np.linspace(-1.2, 1.2, n)
    v = np.cos(np.arange(n, dtype=float))
    rosen_c = ag.compile(lambda x: rosenbrock(x, ag.sum))
    want_hv, want_h = ag.hvp(rosen_ag, x0, v)[1], ag.hessian(rosen_ag, x0)
    check("compiled hvp", rosen_c.hvp(x0, v)[1][0], want_hv, 1e-12)
    check("compiled hessian", rosen_c.hessian(x0), want_h, 1e-12)
    one = {"autograd_c: f.hvp (compiled)": lambda: rosen_c.hvp(x0, v),
           "autograd_c: f.value_and_grad (compiled; first order, for scale)":
           lambda: rosen_c.value_and_grad(x0),
           "autograd_c: ag.hvp (records f)": lambda: ag.hvp(rosen_ag, x0, v)}
    hess = {"autograd_c: f.hessian (compiled)": lambda: rosen_c.hessian(x0),
            "autograd_c: ag.hessian (records f)": lambda: ag.hessian(rosen_ag, x0)}
    notes = {}
    if torch is not None:
        ts, tv = tuple(torch.tensor(a) for a in x0), tuple(torch.tensor(a) for a in v)
        check("torch hvp", [t.item() for t in torch.autograd.functional.hvp(rosen_torch, ts, tv)[1]],
              want_hv)
        one["PyTorch 0-d: torch.autograd.functional.hvp"] = \
            lambda: torch.autograd.functional.hvp(rosen_torch, ts, tv)
        xt = torch.tensor(x0)
        th = torch.func.hessian(lambda t: rosenbrock([t[i] for i in range(n)]))
        hess["PyTorch 0-d: torch.func.hessian"] = lambda: th(xt)
    rng = np.random.default_rng(0)
    X0, X1 = rng.uniform(-1, 1, rows), rng.uniform(-1, 1, rows)
    Y = np.tanh(X0 - 2 * X1)
    P = list(rng.uniform(-1, 1, 13))
    vp = np.sin(np.arange(13, dtype=float))
    f = ag.compile(lambda p, a, b, y: per_sample(p, a, b, y, ag.tanh))
    batched = {t: f.vmap((None, 0, 0, 0), threads=t) for t in (1, 2)}

    def loss_ag(*p):
        return ag.sum([per_sample(p, X0[r], X1[r], Y[r], ag.tanh) for r in range(rows)])

    want_bh = ag.hessian(loss_ag, P)
    want_bhv = ag.hvp(loss_ag, P, vp)[1]
    check("batched summed hessian", batched[2].hessian(P, X0, X1, Y, reduce="sum"), want_bh, 1e-11)
    check("batched summed hvp", batched[2].hvp(P, X0, X1, Y, (vp, None, None, None),
                                               reduce="sum")[1][0], want_bhv, 1e-11)
    bh = {f"autograd_c: vmap(...).hessian(reduce='sum'), {t} thread(s)":
          (lambda t=t: batched[t].hessian(P, X0, X1, Y, reduce="sum")) for t in (1, 2)}
    bh["autograd_c: ag.hessian of the summed loss (records it)"] = lambda: ag.hessian(loss_ag, P)
    bhv = {f"autograd_c: vmap(...).hvp(reduce='sum'), {t} thread(s)":
           (lambda t=t: batched[t].hvp(P, X0, X1, Y, (vp, None, None, None), reduce="sum"))
           for t in (1, 2)}
    bhv["autograd_c: vmap(...).value_and_grad(reduce='sum'), 1 thread (first order, for scale)"] = \
        lambda: batched[1].value_and_grad(P, X0, X1, Y, reduce="sum")
    bhv["autograd_c: ag.hvp of the summed loss (records it)"] = lambda: ag.hvp(loss_ag, P, vp)
    rowh = {f"autograd_c: vmap(...).hessian(), {t} thread(s)":
            (lambda t=t: batched[t].hessian(P, X0, X1, Y)) for t in (1, 2)}
    if torch is not None:
        Xt0, Xt1, Yt, Pt, vt = (torch.tensor(a) for a in (X0, X1, Y, np.array(P), vp))

        def loss_t(p):
            return per_sample(p, Xt0, Xt1, Yt, torch.tanh).sum()

        check("torch.func.hessian (rows vectorised)", torch.func.hessian(loss_t)(Pt).numpy(), want_bh)
        bh["PyTorch: torch.func.hessian, rows as 1-D tensors"] = lambda: torch.func.hessian(loss_t)(Pt)
        bhv["PyTorch: torch.func.jvp(grad), rows as 1-D tensors"] = \
            lambda: torch.func.jvp(torch.func.grad(loss_t), (Pt,), (vt,))[1]
        bhv["PyTorch: torch.autograd.functional.hvp, rows as 1-D tensors"] = \
            lambda: torch.autograd.functional.hvp(loss_t, Pt, vt)[1]
    if jax is not None:
        xj, vj = jnp.asarray(x0), jnp.asarray(v)
        f_jax = lambda x: rosenbrock([x[i] for i in range(n)])    # noqa: E731
        jhvp = jax.jit(lambda x, t: jax.jvp(jax.grad(f_jax), (x,), (t,))[1])
        jh = jax.jit(jax.hessian(f_jax))
        Xj0, Xj1, Yj, Pj, vpj = (jnp.asarray(a) for a in (X0, X1, Y, np.array(P), vp))
        loss_j = lambda p: per_sample(p, Xj0, Xj1, Yj, jnp.tanh).sum()   # noqa: E731
        jbh = jax.jit(jax.hessian(loss_j))
        jbhv = jax.jit(lambda p, t: jax.jvp(jax.grad(loss_j), (p,), (t,))[1])
        jrow = jax.jit(jax.vmap(jax.hessian(lambda p, a, b, y: per_sample(p, a, b, y, jnp.tanh),
                                            argnums=(0, 1, 2, 3)), in_axes=(None, 0, 0, 0)))
        for name, fn, table, want in (
                ("JAX: jit(hvp)", lambda: jhvp(xj, vj).block_until_ready(), one, want_hv),
                ("JAX: jit(hessian)", lambda: jh(xj).block_until_ready(), hess, want_h),
                ("JAX: jit(hessian), rows vectorised", lambda: jbh(Pj).block_until_ready(), bh, want_bh),
                ("JAX: jit(hvp), rows vectorised", lambda: jbhv(Pj, vpj).block_until_ready(), bhv,
                 want_bhv),
                ("JAX: jit(vmap(hessian))", lambda: jax.block_until_ready(jrow(Pj, Xj0, Xj1, Yj)),
                 rowh, None)):
            t0 = time.perf_counter()
            got = fn()
            notes[name] = f" first call {time.perf_counter() - t0:.2f} s"
            if want is not None:
                check(name, np.asarray(got), want, 1e-10)
            table[name] = fn
    out = []
    for title, table in ((f"one row: H v, extended Rosenbrock of {n} inputs", one),
                         (f"one row: dense Hessian, extended Rosenbrock of {n} inputs", hess),
                         (f"{rows:,} rows, 13 shared parameters: Hessian of the summed loss", bh),
                         (f"{rows:,} rows: H v of the summed loss over the parameters", bhv),
                         (f"{rows:,} rows: per-row Hessians over every input (16 x 16)", rowh)):
        t = interleaved(table, rounds)
        base = next(iter(t.values()))
        out.append(f"**{title}**\n")
        out.append("| | ms (best) | ms (median) | vs the first row (best / median) |")
        out.append("|---|---:|---:|---:|")
        for name, tt in t.items():
            out.append(row(name, tt, base, notes.get(name, "")))
        out.append("")
    return "\n".join(out)


def versions():
    parts = [f"autograd_c {ag.__version__}", f"Python {sys.version.split()[0]}"]
    if torch is not None:
        parts.append(f"PyTorch {torch.__version__}")
    if jax is not None:
        parts.append(f"JAX {jax.__version__}")
    return ", ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller graphs")
    parser.add_argument("--smoke", action="store_true", help="tiny graphs, one round (a test)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", type=int, choices=(1, 2, 3, 4), help="run one table")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.smoke else 5 if args.quick else 15)
    few = 1 if args.smoke else max(3, rounds // 3)
    print(f"# bench_higher ({versions()}; {rounds} interleaved rounds)\n")
    if args.only in (None, 1):
        print("## 1. hvp against one backward() on the same recorded graph (C sweeps only)\n")
        print(sweeps_table(rounds, args.quick, args.smoke), "\n")
    if args.only in (None, 2):
        print("## 2. End to end on the same scalar graph (record f, then the derivative)\n")
        print(end_to_end_table(few, args.quick, args.smoke))
    if args.only in (None, 3):
        print(f"## 3. Dense Hessian of the extended Rosenbrock function, "
              f"{10 if args.smoke else 100} inputs\n")
        print(hessian_table(few, args.quick, args.smoke))
    if args.only in (None, 4):
        print(f"\n## 4. Compiled functions: f.hvp and f.hessian, one row and batched\n")
        print(f"load average before: {os.getloadavg()[0]:.2f}\n")
        print(compiled_table(rounds, args.quick, args.smoke))
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
