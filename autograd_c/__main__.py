"""`python -m autograd_c`: a small graph, its gradients, a finite-difference
check, and the time one large graph takes.

`python -m autograd_c demo [--plot out.png]` trains micrograd's moons
classifier instead (see autograd_c/demo.py)."""
import math
import sys
import time

import autograd_c as ag


def f(x, y, exp=ag.exp, sin=ag.sin):
    """The demo function; works on Variables and (with math's exp/sin) on floats."""
    return sin(x) * y + exp(x / y) - y ** 2


def central_difference(fn, args, i, h=1e-6):
    lo, hi = list(args), list(args)
    lo[i] -= h
    hi[i] += h
    return (fn(*hi) - fn(*lo)) / (2 * h)


def main():
    print(f"autograd_c {ag.__version__}: scalar reverse-mode autodiff with a compiled tape\n")

    x, y = ag.Variable(0.5, name="x"), ag.Variable(2.0, name="y")
    out = f(x, y)
    out.backward()
    print("f(x, y) = sin(x) * y + exp(x / y) - y**2   at x = 0.5, y = 2.0")
    print(f"  f      = {out.data:.12f}   ({ag.tape_stats()['nodes']} tape nodes)")
    on_floats = lambda a, b: f(a, b, math.exp, math.sin)  # noqa: E731
    worst = 0.0
    for i, leaf in enumerate((x, y)):
        numeric = central_difference(on_floats, (x.data, y.data), i)
        worst = max(worst, abs(leaf.grad - numeric))
        print(f"  df/d{leaf.name}  = {leaf.grad:.12f}   finite difference {numeric:.12f}")
    print(f"  largest difference {worst:.1e}: {'ok' if worst < 1e-6 else 'MISMATCH'}\n")

    n = 1_000_000
    a, b = ag.Variable(0.5), ag.Variable(1.0)
    t0 = time.perf_counter()
    chain = b
    for _ in range(n):
        chain = chain * 0.999999 + a * 1e-6
    t1 = time.perf_counter()
    chain.backward()
    t2 = time.perf_counter()
    nodes = ag.tape_stats()["nodes"]
    print(f"y = y*0.999999 + x*1e-6, {n:,} times: {nodes:,} nodes recorded in {(t1 - t0) * 1e3:.0f} ms,")
    print(f"  backward() in {(t2 - t1) * 1e3:.1f} ms ({(t2 - t1) / nodes * 1e9:.1f} ns per node); "
          f"dy/dx = {a.grad:.6f}")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["demo"]:
        from autograd_c.demo import main as demo_main
        sys.exit(demo_main(sys.argv[2:]))
    if sys.argv[1:]:
        sys.exit("usage: python -m autograd_c [demo [--steps N] [--plot PATH] [--quiet]]")
    sys.exit(main())
