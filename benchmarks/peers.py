"""autograd_c against its peers on bench_core's two workloads, measured in one run.

    python benchmarks/peers.py                   # full sizes (several minutes)
    python benchmarks/peers.py --quick           # smaller graphs (about a minute)
    python benchmarks/peers.py --run torch       # one peer's timings, as JSON
    python benchmarks/peers.py --memory torch    # one peer's bytes/node, as JSON

Every peer runs the same code, bench_core.chain and bench_core.wide, on its own
active number type, written the way that peer's users write it:
  autograd_c  Variable leaves, out.backward()
  micrograd   Value leaves, out.backward() (its recursive topological sort)
  torch       0-d float64 tensors with requires_grad, one thread, out.backward()
  xad         xad.adj_1st Real on an active Tape: registerInput, newRecording,
              registerOutput, out.derivative = 1, computeAdjoints()
Before timing, each adapter's value and first gradients must agree with
autograd_c to 1e-9 on a small graph (n=1000); a peer that disagrees gets no
timings.

Each peer runs in its own subprocess with a time limit, so a slow or crashing
peer costs one row, not the run; a peer that is not installed gets a row
saying so. Each subprocess times plain floats and the peer back to back, round
after round, and keeps the best of each (as bench_core.measure does); rounds
stop when the workload's time budget is spent.

Reported, as in bench_core:
  forward   time to run the workload on the peer's type / time on floats
  backward  time of the reverse pass / time of the float forward
            (with ns per recorded op: chain 3n ops, wide 2n)
  bytes/op  RSS growth while recording a 1,000,000-iteration chain
            (3,000,000 ops) in a fresh interpreter, / op count; micrograd
            records 100,000 iterations and is scaled per op the same way.

micrograd: backward() recurses once per graph level, so at Python's default
recursion limit (1000) it raises RecursionError above ~500 chain iterations or
~1000 wide pairs; both full workloads record "RecursionError".  (On CPython
3.11 it does finish with sys.setrecursionlimit(10**7), but users would have to
know to do that.)  Most of micrograd's forward time is the cyclic garbage
collector: each Value's _backward closure refers back to the Value, so every
op makes a reference cycle and the collector keeps rescanning the growing graph.

AADC (MatLogica) is listed but never run: its Community Edition licence
forbids using it as a performance baseline for another AD library (clause 3.3)
and publishing benchmark results obtained with it (clause 4.1).
"""
import argparse
import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import chain, wide, _rss_bytes  # noqa: E402

X0, Y0 = 0.5, 1.0          # chain's leaves
TIME_LIMIT = 150           # seconds per peer subprocess
CHECK_N = 1000             # size of the correctness check

# Every adapter below runs one workload once: it makes the leaves, then
# reads `clock` around the forward and the reverse pass.  clock is
# time.perf_counter when timing and the RSS reading in the memory probe, so
# one function serves both.  It returns (forward, backward, value, grads),
# where backward is a number or a string naming why the pass failed.


# ---- plain floats (the baseline) ------------------------------------------

def floats_chain(n, clock=time.perf_counter):
    t0 = clock()
    out = chain(X0, Y0, n)
    return clock() - t0, None, out, []


def floats_wide(A, B, clock=time.perf_counter):
    t0 = clock()
    out = wide(A, B)
    return clock() - t0, None, out, []


# ---- autograd_c --------------------------------------------------------------

def autograd_c_chain(n, clock=time.perf_counter):
    from autograd_c import Variable
    x, y = Variable(X0), Variable(Y0)
    t0 = clock()
    out = chain(x, y, n)
    t1 = clock()
    out.backward()
    t2 = clock()
    return t1 - t0, t2 - t1, out.data, [x.grad, y.grad]


def autograd_c_wide(A, B, clock=time.perf_counter):
    from autograd_c import Variable
    a, b = [Variable(v) for v in A], [Variable(v) for v in B]
    t0 = clock()
    out = wide(a, b)
    t1 = clock()
    out.backward()
    t2 = clock()
    return t1 - t0, t2 - t1, out.data, [a[0].grad, b[0].grad]


# ---- micrograd -----------------------------------------------------------------

def _micrograd_backward(out):
    """micrograd's backward() sorts the graph recursively: deep graphs raise."""
    try:
        out.backward()
    except RecursionError:
        return "RecursionError"


def micrograd_chain(n, clock=time.perf_counter):
    from micrograd.engine import Value
    x, y = Value(X0), Value(Y0)
    t0 = clock()
    out = chain(x, y, n)
    t1 = clock()
    failed = _micrograd_backward(out)
    t2 = clock()
    return t1 - t0, failed or t2 - t1, out.data, [x.grad, y.grad]


def micrograd_wide(A, B, clock=time.perf_counter):
    from micrograd.engine import Value
    a, b = [Value(v) for v in A], [Value(v) for v in B]
    t0 = clock()
    out = wide(a, b)
    t1 = clock()
    failed = _micrograd_backward(out)
    t2 = clock()
    return t1 - t0, failed or t2 - t1, out.data, [a[0].grad, b[0].grad]


# ---- PyTorch: 0-d float64 tensors, one thread ------------------------------------

def _torch_leaf(v):
    import torch
    return torch.tensor(v, dtype=torch.float64, requires_grad=True)


def torch_chain(n, clock=time.perf_counter):
    x, y = _torch_leaf(X0), _torch_leaf(Y0)
    t0 = clock()
    out = chain(x, y, n)
    t1 = clock()
    out.backward()
    t2 = clock()
    return t1 - t0, t2 - t1, out.item(), [x.grad.item(), y.grad.item()]


def torch_wide(A, B, clock=time.perf_counter):
    a, b = [_torch_leaf(v) for v in A], [_torch_leaf(v) for v in B]
    t0 = clock()
    out = wide(a, b)
    t1 = clock()
    out.backward()
    t2 = clock()
    return t1 - t0, t2 - t1, out.item(), [a[0].grad.item(), b[0].grad.item()]


# ---- XAD: first-order adjoint mode -----------------------------------------------

_xad_tape = None


def _xad_recording(leaves):
    """The one active tape, cleared for reuse (XAD's advice), leaves registered."""
    global _xad_tape
    from xad.adj_1st import Tape
    if _xad_tape is None:
        _xad_tape = Tape()
        _xad_tape.activate()
    _xad_tape.clearAll()
    for v in leaves:
        _xad_tape.registerInput(v)
    _xad_tape.newRecording()
    return _xad_tape


def _xad_backward(tape, out):
    tape.registerOutput(out)
    out.derivative = 1.0
    tape.computeAdjoints()


def xad_chain(n, clock=time.perf_counter):
    from xad.adj_1st import Real
    x, y = Real(X0), Real(Y0)
    tape = _xad_recording([x, y])
    t0 = clock()
    out = chain(x, y, n)
    t1 = clock()
    _xad_backward(tape, out)
    t2 = clock()
    return t1 - t0, t2 - t1, out.value, [x.derivative, y.derivative]


def xad_wide(A, B, clock=time.perf_counter):
    from xad.adj_1st import Real
    a, b = [Real(v) for v in A], [Real(v) for v in B]
    tape = _xad_recording(a + b)
    t0 = clock()
    out = wide(a, b)
    t1 = clock()
    _xad_backward(tape, out)
    t2 = clock()
    return t1 - t0, t2 - t1, out.value, [a[0].derivative, b[0].derivative]


# ---- the registry ------------------------------------------------------------------

# name -> (module that must import, chain adapter, wide adapter)
PEERS = {
    "floats": (None, floats_chain, floats_wide),
    "autograd_c": ("autograd_c", autograd_c_chain, autograd_c_wide),
    "micrograd": ("micrograd.engine", micrograd_chain, micrograd_wide),
    "torch": ("torch", torch_chain, torch_wide),
    "xad": ("xad.adj_1st", xad_chain, xad_wide),
}
NOT_RUN = {
    "aadc": "not run: its licence forbids benchmarking it against another AD library "
            "(Community Edition, clauses 3.3 and 4.1)",
}
MEMORY_ITERATIONS = {"micrograd": 100_000}   # the others: 1,000,000 (full)


def _inputs(n):
    rng = random.Random(0)
    return [rng.random() for _ in range(n)], [rng.random() for _ in range(n)]


@contextlib.contextmanager
def _recursion_limit(limit):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def check(peer):
    """Value and first gradients of both workloads agree with autograd_c (n=CHECK_N).

    The recursion limit is raised for the check only, so that micrograd's
    recursive backward() can be checked at all."""
    _, chain_fn, wide_fn = PEERS[peer]
    A, B = _inputs(CHECK_N)
    with _recursion_limit(100_000):
        cases = [("chain", chain_fn(CHECK_N), autograd_c_chain(CHECK_N)),
                 ("wide", wide_fn(A, B), autograd_c_wide(A, B))]
    for name, (_, _, value, grads), (_, _, ref_value, ref_grads) in cases:
        for got, want in zip([value] + grads, [ref_value] + ref_grads):
            if not abs(got - want) <= 1e-9 * abs(want) + 1e-15:
                return f"{name}: got {got!r}, autograd_c gives {want!r}"
    return None


def time_workload(run, run_floats, ops, rounds, budget):
    """Best of up to `rounds` rounds (floats then the peer, back to back),
    stopping once `budget` seconds are spent."""
    best = {"float": float("inf"), "forward": float("inf"), "backward": float("inf")}
    failure = None
    start = time.perf_counter()
    for _ in range(rounds):
        gc.collect()
        best["float"] = min(best["float"], run_floats()[0])
        gc.collect()
        forward, backward, _, _ = run()
        best["forward"] = min(best["forward"], forward)
        if isinstance(backward, str):
            failure = backward
        elif backward is not None:
            best["backward"] = min(best["backward"], backward)
        if time.perf_counter() - start > budget:
            break
    result = {"float_ms": best["float"] * 1e3, "forward_ratio": best["forward"] / best["float"]}
    if failure:
        result["backward"] = failure
    elif best["backward"] < float("inf"):
        result["backward_ratio"] = best["backward"] / best["float"]
        result["backward_ns_per_op"] = best["backward"] / ops * 1e9
    return result


def run_one(peer, quick):
    """Times one peer (in this process); returns a row as a dict."""
    module, chain_fn, wide_fn = PEERS[peer]
    try:
        if module:
            __import__(module)
    except ImportError as e:
        return {"peer": peer, "status": f"not installed ({e})"}
    if peer == "torch":
        import torch
        torch.set_num_threads(1)
    if peer != "floats":
        wrong = check(peer)
        if wrong:
            return {"peer": peer, "status": f"WRONG: {wrong}"}
    n = 20_000 if quick else 200_000
    rounds, budget = (5, 5) if quick else (7, 20)
    A, B = _inputs(n)
    return {
        "peer": peer,
        "status": "ok",
        "n": n,
        "chain": time_workload(lambda: chain_fn(n), lambda: floats_chain(n), 3 * n, rounds, budget),
        "wide": time_workload(lambda: wide_fn(A, B), lambda: floats_wide(A, B), 2 * n, rounds, budget),
    }


def memory_one(peer, quick):
    """RSS growth per op while recording a chain (in this fresh process)."""
    module, chain_fn, _ = PEERS[peer]
    if module:
        __import__(module)
    if peer == "torch":
        import torch
        torch.set_num_threads(1)
    chain_fn(10)                      # warm up: first-use allocations are not the graph's
    gc.collect()
    iterations = MEMORY_ITERATIONS.get(peer, 1_000_000) // (10 if quick else 1)
    grown, _, _, _ = chain_fn(iterations, clock=_rss_bytes)
    return {"peer": peer, "iterations": iterations, "bytes_per_op": grown / (3 * iterations)}


def _subprocess(flag, peer, quick):
    cmd = [sys.executable, os.path.abspath(__file__), flag, peer] + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {TIME_LIMIT} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"crashed (exit {proc.returncode}): {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_peers(quick=False):
    """One row per peer, each timed and memory-probed in its own subprocess."""
    rows = []
    for peer in PEERS:
        row = {"peer": peer, **_subprocess("--run", peer, quick)}
        if row.get("status") == "ok" and peer != "floats":
            memory = _subprocess("--memory", peer, quick)
            row["memory"] = memory.get("bytes_per_op", memory.get("status"))
            row["memory_iterations"] = memory.get("iterations")
        rows.append(row)
    for peer, why in NOT_RUN.items():
        rows.append({"peer": peer, "status": why})
    return rows


def _cell(workload, part):
    if part == "forward":
        return f"{workload['forward_ratio']:.1f}x"
    if "backward" in workload:
        return workload["backward"]
    return f"{workload['backward_ratio']:.2f}x ({workload['backward_ns_per_op']:.0f} ns/op)"


def format_table(rows):
    lines = ["| peer | chain forward / floats | chain backward / float fwd "
             "| wide forward / floats | wide backward / float fwd | bytes/op |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['peer']} | {row['status']} | | | | |")
        elif row["peer"] == "floats":
            lines.append(f"| plain floats | 1x ({row['chain']['float_ms']:.1f} ms) | - "
                         f"| 1x ({row['wide']['float_ms']:.1f} ms) | - | - |")
        else:
            memory = row["memory"]
            memory = f"{memory:.0f}" if isinstance(memory, float) else memory
            lines.append(f"| {row['peer']} | {_cell(row['chain'], 'forward')} "
                         f"| {_cell(row['chain'], 'backward')} | {_cell(row['wide'], 'forward')} "
                         f"| {_cell(row['wide'], 'backward')} | {memory} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller graphs and fewer rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--run", choices=list(PEERS), help="time one peer here; print JSON")
    parser.add_argument("--memory", choices=list(PEERS), help="memory probe of one peer; print JSON")
    args = parser.parse_args(argv)

    if args.run:
        print(json.dumps(run_one(args.run, args.quick)))
        return 0
    if args.memory:
        print(json.dumps(memory_one(args.memory, args.quick)))
        return 0

    rows = run_peers(args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    n = next((r["n"] for r in rows if r.get("n")), None)
    print(f"autograd_c and peers ({'quick' if args.quick else 'full'}; chain of {n:,} iterations, "
          f"wide of {n:,} pairs; best of rounds, each peer in its own subprocess)")
    print()
    print(format_table(rows))
    print()
    print("bytes/op: RSS growth while recording a chain, per recorded op (3 per iteration); "
          + ", ".join(f"{r['peer']} {r['memory_iterations']:,} iterations"
                      for r in rows if r.get("memory_iterations")) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
