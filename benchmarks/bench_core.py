"""Core speed and memory of autograd_c, as ratios measured in one run.

    python benchmarks/bench_core.py            # full sizes (about a minute)
    python benchmarks/bench_core.py --quick    # smaller graphs, fewer rounds

The peers (micrograd, PyTorch, XAD, CasADi, JAX) are compared by
benchmarks/compare.py; the pytest-benchmark suites are benchmarks/test_bench_*.py.

Workloads (benchmarks/workloads.py; the same code runs on plain floats, the
baseline, and on Variables):
  chain  y = y*a + x*0.0001, a alternating 0.9999 and 1/0.9999, 200,000
         times: 600,000 recorded ops
  wide   sum(a*b for a, b in zip(A, B)) over 200,000 pairs: 400,000 recorded ops
Both are checked for subnormal values and adjoints at the sizes run
(workloads.subnormals); a warning is printed if any are found.

Reported:
  forward   time to run the code on Variables / time on floats
  backward  time of one backward() over that graph / time of the float forward
  memory    bytes of RSS per tape node held by a 3,000,000-node chain, after
            recording and after backward() (measured in a fresh subprocess)

Absolute times on shared machines drift by tens of percent from minute to
minute, so each round times the float code, the Variable code and the
backward pass back to back; the table shows the median round's ratios and
the spread over all rounds.
"""
import argparse
import gc
import json
import statistics
import os
import subprocess
import sys
import time

import autograd_c as ag
from autograd_c import Variable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:            # workloads.py, by this file's directory (never the repository root)
    sys.path.insert(0, HERE)
from workloads import X0, Y0, chain, make_workload, rss_bytes as _rss_bytes, subnormals, wide  # noqa: E402


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(name, float_args, var_args_factory, fn, rounds):
    """Each round runs fn on floats, fn on Variables, then backward(), back to
    back.  The ratios compare the best round of each (the least disturbed
    measurement of both); the per-round ratios give their spread."""
    floats, forwards, backwards, per_round = [], [], [], []
    nodes = 0
    for _ in range(rounds):
        gc.collect()
        t_float, _ = _timed(fn, *float_args)
        var_args = var_args_factory()
        t_forward, out = _timed(fn, *var_args)
        nodes = ag.tape_stats()["nodes"]
        t_backward, _ = _timed(out.backward)
        del out, var_args
        floats.append(t_float)
        forwards.append(t_forward)
        backwards.append(t_backward)
        per_round.append((t_forward / t_float, t_backward / t_float))
    return {
        "workload": name,
        "nodes": nodes,
        "float_ms": min(floats) * 1e3,
        "forward_ratio": min(forwards) / min(floats),
        "backward_ratio": min(backwards) / min(floats),
        "backward_ns_per_node": min(backwards) / nodes * 1e9,
        "forward_median_round": statistics.median(r[0] for r in per_round),
        "backward_median_round": statistics.median(r[1] for r in per_round),
    }


def memory_probe(iterations):
    """Runs in a fresh interpreter: RSS growth per node of a long chain."""
    x, y = Variable(X0), Variable(Y0)
    y = y * 1.0  # create the tape before the baseline reading
    gc.collect()
    before = _rss_bytes()
    y = chain(x, y, iterations)
    nodes = ag.tape_stats()["nodes"]
    recorded = _rss_bytes()
    y.backward()
    swept = _rss_bytes()
    return {
        "nodes": nodes,
        "bytes_per_node_recorded": (recorded - before) / nodes,
        "bytes_per_node_after_backward": (swept - before) / nodes,
        "tape_bytes_per_node": ag.tape_stats()["bytes"] / nodes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller graphs and fewer rounds")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return 0

    n = 20_000 if args.quick else 200_000
    rounds = 3 if args.quick else 9
    probe_size = 100_000 if args.quick else 1_000_000
    for name, size in (("chain", n), ("wide", n), ("chain", probe_size)):
        problem = subnormals(make_workload(name, size))
        if problem:
            print(f"WARNING: {problem}", file=sys.stderr)
    w = make_workload("wide", n)
    A, B = w.A, w.B
    results = [
        measure("chain", (X0, Y0, n), lambda: (Variable(X0), Variable(Y0), n), chain, rounds),
        measure("wide", (A, B), lambda: ([Variable(a) for a in A], [Variable(b) for b in B]), wide, rounds),
    ]
    probe = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-probe", str(probe_size)],
        capture_output=True, text=True, check=True)
    memory = json.loads(probe.stdout)

    if args.json:
        print(json.dumps({"speed": results, "memory": memory}, indent=2))
        return 0
    print(f"autograd_c core benchmark ({'quick' if args.quick else 'full'}; best of {rounds} rounds, "
          "median round in brackets)")
    print()
    print("| workload | tape nodes | floats (ms) | forward / floats | backward / float forward | backward ns/node |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['workload']} | {r['nodes']:,} | {r['float_ms']:.1f} | {r['forward_ratio']:.2f}x "
              f"[{r['forward_median_round']:.2f}] | {r['backward_ratio']:.2f}x "
              f"[{r['backward_median_round']:.2f}] | {r['backward_ns_per_node']:.1f} |")
    print()
    print(f"memory, {memory['nodes']:,}-node chain: {memory['bytes_per_node_recorded']:.1f} bytes/node "
          f"recorded, {memory['bytes_per_node_after_backward']:.1f} after backward() "
          f"(tape's own count: {memory['tape_bytes_per_node']:.1f} bytes/node of capacity)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
