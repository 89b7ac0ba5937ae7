"""autograd_c against its peers on the same workloads, measured in one run.

    python benchmarks/compare.py              # full sizes (about 10 minutes)
    python benchmarks/compare.py --quick      # small graphs, few rounds (under 2 minutes)
    python benchmarks/compare.py --peers torch,xad --workloads mlp
    python benchmarks/compare.py --measure torch chain     # one subprocess's JSON

Workloads and peers are defined once, in benchmarks/workloads.py (read its
docstring for each workload and for how each peer runs it).  Peers: plain
Python floats (no derivatives: the floor), autograd_c, autograd_c compiled
(ag.compile: traced once, replayed in C), micrograd, PyTorch (0-d float64
tensors, one thread), XAD (xad.adj_1st), CasADi (SX graph and its gradient
Function; Function.map with JIT on the batches), JAX (jit(value_and_grad),
float64; jit(value_and_grad(sum(vmap))) on the batches).  The batch
workloads (1,000 and 100,000 rows of micrograd's per-sample MLP loss, summed
gradient) are the replay case; micrograd, PyTorch and XAD run the 1,000 rows
only (one graph of 64 million scalar nodes is minutes for them).  On the MLP,
autograd_c runs two ways: its fastest idiomatic code (nn.MLP, ag.sum/ag.dot,
optim.SGD), which every "x autograd_c" ratio refers to, and as a micrograd
drop-in (peer autograd_c_dropin: micrograd's demo code with the imports
changed), so that neither autograd_c nor its peers are flattered.  AADC is listed
and never run: its Community Edition licence forbids using it as a
performance baseline for another AD library (clause 3.3) and publishing
results obtained with it (clause 4.1).

Every (peer, workload) pair runs in its own subprocess with a time limit, so
a slow or crashing peer costs one row; a time-out, a crash, a RecursionError
or a wrong answer is recorded as that row's result.  In the subprocess:

  1. The peer goes first, in the fresh interpreter: after a tiny warm-up
     graph, the RSS growth while recording the workload (its forward()) is
     its memory; divided by the workload's node count it is "bytes/node".
  2. autograd_c runs the same workload; the peer's loss and checked
     gradients must agree with autograd_c's to 1e-9 (relative), or the row
     says WRONG and has no timings.  (A peer whose backward fails at this
     size, micrograd's RecursionError, is checked at size 1,000 with a
     raised recursion limit.)  On the MLP, the losses of the first two
     training steps must agree as well.
  3. Rounds, interleaved: plain floats, autograd_c, the peer, back to back,
     until the time budget is spent; each phase keeps its best round.  The
     machine drifts by tens of percent from minute to minute, so ratios are
     always taken between phases measured in the same subprocess, in the same
     rounds: "x autograd_c" and "/ floats" are robust, absolute ns less so.

Columns (times are per node of the workload's scalar graph, the same count
for every peer; see workloads.py):
  forward    recording the graph by running the Python code (CasADi: building
             the SX graph, its Function, one evaluation)
  backward   the reverse pass (CasADi: casadi.gradient, Function, evaluation)
  replay     value and gradient at new inputs from the recorded graph, no
             Python per node (autograd_c's compiled function, CasADi Function
             call, JAX jitted call); the ratio compares it with autograd_c's
             forward + backward (recording the graph again)
  compile    the first call of the peers that replay without recording
             (autograd_c compiled: tracing, the passes, one evaluation; JAX:
             tracing and XLA; CasADi on the batches: building and JIT),
             elapsed (wall-clock) time: CasADi's JIT compiler is a child
             process whose CPU time the measuring process does not see
  2 threads  autograd_c compiled on the batches: the same replay with
             threads=2 and, in the same rounds, with 1 thread, both in
             wall-clock time (CPU time adds the threads up); give the run the
             CPUs (docs/replay.md) for a scaling figure
  bytes/node RSS growth while recording, per node
MLP training step: forward + backward + SGD update of all 337 parameters, ms.

Clock: by default every phase is timed in CPU time of the measuring process
(time.process_time: user + system time of all its threads), not wall-clock
time: the machines these numbers come from are shared, and time spent
waiting for a core is nobody's cost, but it biases wall-clock ratios (a peer
that needs seconds per round rarely finds a quiet window, autograd_c's
milliseconds often do).  On a quiet machine the two agree for
single-threaded work; --clock wall gives elapsed time.

Before the run, workloads.subnormals() checks every workload at the sizes
timed for subnormal values or adjoints (which slow floating point down on
x86); any it finds are printed and noted under the table.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:            # workloads.py, found by this file's directory (never the repository root)
    sys.path.insert(0, HERE)
import workloads as W  # noqa: E402

TIME_LIMIT = {"full": 300, "quick": 40}       # seconds per subprocess
BUDGET = {"full": 20.0, "quick": 1.0}         # seconds of timing rounds per subprocess
MAX_ROUNDS = {"full": 40, "quick": 3}
MIN_ROUNDS = {"full": 3, "quick": 1}
LOOP_TIME = 0.02                              # replay and step are repeated for at least this long
CHECKED_STEPS = 2                             # training steps compared with autograd_c's before timing
# One extra row in full runs: JAX on the full-size chain, to show where tracing stops.
JAX_FULL_CHAIN_LIMIT = 120


# ---------------------------------------------------------------------------
# In the subprocess
# ---------------------------------------------------------------------------

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]            # set by --clock; see "Clock" in the module docstring


def _timed(fn):
    t0 = clock()
    fn()
    return clock() - t0


def _loop(fn, timer=None):
    """Mean time per call over a loop lasting at least LOOP_TIME."""
    timer = timer or clock
    calls, t0 = 0, timer()
    while True:
        fn()
        calls += 1
        elapsed = timer() - t0
        if elapsed >= LOOP_TIME:
            return elapsed / calls


def _warm_up(peer):
    """A tiny graph first, so first-use allocations are not counted as memory."""
    if peer == "jax":
        return
    case = W.PEERS[peer].case(W.make_workload("chain", 10))
    case.leaves()
    case.forward()
    if case.backward:
        case.backward()
    case.release()


def record_memory(case):
    """Time and RSS growth of the first forward() of ``case`` in this (fresh)
    process, after a tiny warm-up graph: (seconds, bytes per node)."""
    _warm_up(case.peer)
    gc.collect()
    case.leaves()
    before = W.rss_bytes()
    seconds = _timed(case.forward)
    return seconds, (W.rss_bytes() - before) / case.w.nodes


def _reference(w):
    """autograd_c's (value, checked gradients) on workload w."""
    ac = W.PEERS["autograd_c"].case(w)
    ac.leaves()
    ac.forward()
    ac.backward()
    return ac.result()


def _backward(case):
    """The reverse pass's time, or the name of the exception that stopped it."""
    try:
        return _timed(case.backward)
    except RecursionError:
        return "RecursionError"


def _small_check(peer, name):
    """Check at CHECK_SIZE with a raised recursion limit (micrograd's deep graphs)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        w = W.make_workload(name, W.CHECK_SIZE)
        results = []
        for p in (peer, "autograd_c"):
            case = W.PEERS[p].case(w)
            case.leaves()
            case.forward()
            case.backward()
            results.append(case.result())
        return W.agree(*results)
    finally:
        sys.setrecursionlimit(old)


def measure(peer, name, quick, size=None):
    """Memory, check and interleaved timing rounds of one peer on one workload;
    runs in a fresh subprocess (see the module docstring)."""
    mode = "quick" if quick else "full"
    w = W.make_workload(name, size, quick, peer)
    info = W.PEERS[peer]
    row = {"peer": peer, "workload": name, "size": w.size, "nodes": w.nodes,
           "version": info.version(), "status": "ok"}
    case = info.case(w)
    ac = case if peer == "autograd_c" else W.PEERS["autograd_c"].case(w)
    floats = W.PEERS["floats"].case(w)

    # 1. the peer first, in the fresh process: memory (and a first timing)
    best = {}
    if case.records:
        best["forward"], row["bytes_per_node"] = record_memory(case)
        if info.module == "autograd_c":          # autograd_c and its drop-in: the graph as recorded
            import autograd_c
            row["tape_nodes"] = autograd_c.tape_stats()["nodes"]
        backward = _backward(case)
        if isinstance(backward, str):
            row["backward_error"] = backward
        else:
            best["backward"] = backward
    else:
        case.leaves()
        t0 = time.perf_counter()           # wall: a JIT compiler may run in a child process
        case.compile()
        row["compile_s"] = time.perf_counter() - t0
    got = None if "backward_error" in row else case.result()
    replayed = case.replay_result(case.replay(moved=True)) if case.replays else None
    threaded = None
    if hasattr(case, "threaded") and w.kind == "batch":
        threaded = case.replay_result(case.threaded())
    case.release()

    # 2. the check against autograd_c
    gc.collect()
    ac.leaves()
    best["ac_forward"] = _timed(ac.forward)
    best["ac_backward"] = _timed(ac.backward)
    want = ac.result()
    ac.release()
    wrong = W.agree(got, want) if got is not None else _small_check(peer, name)
    if not wrong and replayed is not None:
        moved = _reference(w.moved())
        wrong = W.agree(replayed, moved)
        wrong = wrong and f"replay at new inputs: {wrong}"
        if not wrong and threaded is not None:
            wrong = W.agree(threaded, moved)
            wrong = wrong and f"replay on 2 threads: {wrong}"
    if wrong:
        row["status"] = f"WRONG: {wrong}"
        return row

    # 3. interleaved rounds: floats, autograd_c, the peer
    trainer = ac_trainer = None
    if name == "mlp" and case.trains:
        trainer = info.case(w)
        ac_trainer = trainer if peer == "autograd_c" else W.PEERS["autograd_c"].case(w)
        if trainer is not ac_trainer:      # the training steps agree too (both start from w.params)
            for k in range(CHECKED_STEPS):
                wrong = W.agree((trainer.step(), []), (ac_trainer.step(), []))
                if wrong:
                    row["status"] = f"WRONG: training step {k}: {wrong}"
                    return row

    rounds_of = {}                        # every round's time per key, for the medians

    def keep(key, t):
        if t is not None:
            best[key] = min(best.get(key, float("inf")), t)
            rounds_of.setdefault(key, []).append(t)

    start, rounds = time.perf_counter(), 0
    while rounds < MAX_ROUNDS[mode]:
        rounds += 1
        gc.collect()
        floats.leaves()
        keep("floats", _timed(floats.forward))
        floats.release()
        gc.collect()
        if peer != "autograd_c":
            ac.leaves()
            keep("ac_forward", _timed(ac.forward))
            keep("ac_backward", _timed(ac.backward))
            ac.release()
            if ac_trainer is not None:
                keep("ac_step", _loop(ac_trainer.step))
            gc.collect()
        case.leaves()
        if case.records:
            keep("forward", _timed(case.forward))
            if "backward_error" not in row:
                keep("backward", _timed(case.backward))
                last = case.result()
        if case.replays:
            keep("replay", _loop(case.replay))
        if threaded is not None:
            keep("replay_wall", _loop(case.replay, time.perf_counter))
            keep("replay_2t_wall", _loop(case.threaded, time.perf_counter))
        case.release()
        if trainer is not None:
            keep("step", _loop(trainer.step))
            if peer == "autograd_c":
                best["ac_step"] = best["step"]
        if rounds >= MIN_ROUNDS[mode] and time.perf_counter() - start > BUDGET[mode]:
            break
    if peer == "autograd_c":            # its rounds ran as the peer: one set of numbers
        for phase in ("forward", "backward"):
            best[phase] = best[f"ac_{phase}"] = min(best[phase], best[f"ac_{phase}"])
    elif case.records and "backward_error" not in row:
        wrong = W.agree(last, want)            # the answer must not drift over the rounds either
        if wrong:
            row["status"] = f"WRONG in a later round: {wrong}"
    row["rounds"] = rounds
    row.update({f"{k}_s": v for k, v in best.items()})
    row.update({f"{k}_median_s": sorted(v)[len(v) // 2] for k, v in rounds_of.items()})
    return row


# ---------------------------------------------------------------------------
# In the parent
# ---------------------------------------------------------------------------

def run_subprocess(args, limit, script=__file__):
    """Runs ``script`` (this one unless told) with ``args`` in a fresh
    interpreter; its last stdout line is JSON.  Failures come back as
    {"status": ...}.  bench_scale.py uses it too."""
    cmd = [sys.executable, os.path.abspath(script)] + args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {limit} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"crashed (exit {proc.returncode}): {last[:200]}"}
    return json.loads(lines[-1])


def check_subnormals(peers, workloads, quick, log=sys.stderr):
    """workloads.subnormals() at every size this run times: a list of
    sentences naming each workload whose graph holds subnormal numbers."""
    found = []
    for name in workloads:
        sizes = {W.size_for(p, name, quick) for p in peers if W.PEERS[p].runs(name)}
        if name == "chain" and not quick and "jax" in peers:
            sizes.add(W.SIZES["chain"][0])
        for size in sorted(sizes):
            problem = W.subnormals(W.make_workload(name, size))
            if problem:
                print(f"WARNING: {problem}", file=log, flush=True)
                found.append(problem)
    return found


def run_all(peers, workloads, quick, clock_name="cpu", log=sys.stderr):
    mode = "quick" if quick else "full"
    rows = []
    for name in workloads:
        for peer in peers:
            if peer == "floats" or not W.PEERS[peer].runs(name):
                continue                  # floats: measured in every subprocess
            info = W.PEERS[peer]
            base = {"peer": peer, "workload": name}
            t0 = time.perf_counter()
            if not info.available():
                row = {**base, "status": f"not installed (pip install {info.module})"}
            else:
                args = ["--measure", peer, name, "--clock", clock_name] + (["--quick"] if quick else [])
                row = {**base, **run_subprocess(args, TIME_LIMIT[mode])}
            rows.append(row)
            print(f"  {name:6s} {peer:11s} {row['status']:40.40s} {time.perf_counter() - t0:6.1f} s",
                  file=log, flush=True)
        if name == "chain" and not quick and "jax" in peers and W.PEERS["jax"].available():
            size = W.SIZES["chain"][0]
            t0 = time.perf_counter()
            row = {"peer": "jax", "workload": "chain", "size": size, "nodes": 3 * size, "extra": True,
                   **run_subprocess(["--measure", "jax", "chain", "--size", str(size), "--clock", clock_name],
                                    JAX_FULL_CHAIN_LIMIT)}
            rows.append(row)
            print(f"  chain  jax (full size) {row['status']:40.40s} {time.perf_counter() - t0:6.1f} s",
                  file=log, flush=True)
    return rows


def _ns(seconds, nodes):
    v = seconds / nodes * 1e9
    return f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def _x(ratio):
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def _best_median(r, key, n):
    """'best (median)' ns/node of a phase."""
    text = _ns(r[f"{key}_s"], n)
    if f"{key}_median_s" in r:
        text += f" ({_ns(r[f'{key}_median_s'], n)})"
    return text


def _secs(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.1f} s"


REPLAYING = ("autograd_c_replay", "jax", "casadi")


def _replay_table(by):
    """Replay: each peer's replay against autograd_c compiled's, both as ratios
    to autograd_c's recording (forward + backward) in their own subprocess."""
    lines = ["", "Replay: value and gradient at new inputs from one recording, no Python per node "
             "(the batches: summed over the rows, parameters shared). ns per scalar node (per node per "
             "row on the batches); x autograd_c compiled: the peer's replay / autograd_c's recording "
             "forward + backward in its subprocess, over the same ratio of autograd_c compiled; the first "
             "call traces and compiles (elapsed time).", "",
             "| workload | peer | replay ns/node, best (median) | x autograd_c compiled | first call |",
             "|---|---|---:|---:|---:|"]
    for name in W.WORKLOADS:
        ours = by.get((name, "autograd_c_replay"), {})
        base = (ours["replay_s"] / (ours["ac_forward_s"] + ours["ac_backward_s"])
                if ours.get("status") == "ok" and "replay_s" in ours else None)
        for peer in REPLAYING:
            r = by.get((name, peer))
            if r is None or r.get("status") != "ok" or "replay_s" not in r:
                continue
            n = r["nodes"]
            rel = r["replay_s"] / (r["ac_forward_s"] + r["ac_backward_s"])
            ratio = _x(rel / base) if base else "-"
            first = _secs(r["compile_s"]) if "compile_s" in r else "-"
            lines.append(f"| {name} | {W.PEERS[peer].label_for(name)} | {_best_median(r, 'replay', n)} "
                         f"| {ratio} | {first} |")
            if "replay_2t_wall_s" in r:
                med = (f", median {_x(r['replay_wall_median_s'] / r['replay_2t_wall_median_s'])}"
                       if "replay_2t_wall_median_s" in r else "")
                lines.append(f"| {name} | autograd_c compiled, 2 threads (elapsed time) | "
                             f"{_best_median(r, 'replay_2t_wall', n)} | {_x(r['replay_wall_s'] / r['replay_2t_wall_s'])} "
                             f"faster than 1 thread (best{med}; 1 thread {_best_median(r, 'replay_wall', n)}, "
                             f"elapsed) | |")
    return lines


def _cell(row, key, ref_key, nodes):
    if f"{key}_s" not in row:
        return "-"
    return f"{_ns(row[key + '_s'], nodes)} ({_x(row[key + '_s'] / row[ref_key + '_s'])})"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or cpu
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load": round(os.getloadavg()[1], 1)}


def format_markdown(rows, meta):
    by = {(r["workload"], r["peer"]): r for r in rows if not r.get("extra")}
    lines = [
        "# autograd_c and its peers",
        "",
        f"{meta['date']}; {meta['cpu']} ({meta['cores']} cores); Python {meta['python']}; "
        f"{meta['platform']}.  Command: `{meta['command']}`."
        + (f"  Load average (5 min): {meta['load_start']} at the start, {meta['load']} at the end."
           if meta.get("load_start") is not None else ""),
        "",
        "Versions: " + ", ".join(f"{p} {v}" for p, v in meta["versions"].items() if v) + ".",
        "",
        f"Times are {'CPU time of the measuring process' if meta.get('clock', 'wall') == 'cpu' else 'wall-clock time'}"
        ". ns/node: best round's time / the workload's scalar node count (same count for every peer). "
        "(Nx): ratio to autograd_c measured in the same subprocess; replay's ratio is to autograd_c's "
        "forward + backward. / floats: forward time / plain-float time of the same code.",
        "",
        "| workload | peer | nodes | forward ns/node (x autograd_c) | forward / floats "
        "| backward ns/node (x autograd_c) | replay ns/node (x autograd_c fwd+bwd) | compile "
        "| bytes/node (x autograd_c) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in W.WORKLOADS:
        ac = by.get((name, "autograd_c"), {})
        ac_bytes = ac.get("bytes_per_node")
        if ac.get("status") == "ok":
            n = ac["nodes"]
            lines.append(f"| {name} | {W.PEERS['floats'].label} | {n:,} | {_cell(ac, 'floats', 'ac_forward', n)} "
                         f"| 1x | - | - | - | - |")
        for peer in W.PEERS:
            r = by.get((name, peer))
            if r is None or peer == "floats":
                continue
            label = W.PEERS[peer].label_for(name)
            if r["status"] != "ok":
                nodes = f"{r['nodes']:,}" if r.get("nodes") else ""
                lines.append(f"| {name} | {label} | {nodes} | {r['status']} | | | | | |")
                continue
            n = r["nodes"]
            fwd = _cell(r, "forward", "ac_forward", n)
            over_floats = _x(r["forward_s"] / r["floats_s"]) if "forward_s" in r else "-"
            bwd = r.get("backward_error") or _cell(r, "backward", "ac_backward", n)
            replay = "-"
            if "replay_s" in r:
                replay = f"{_ns(r['replay_s'], n)} ({_x(r['replay_s'] / (r['ac_forward_s'] + r['ac_backward_s']))})"
            compile_ = _secs(r["compile_s"]) if "compile_s" in r else "-"
            mem = "-"
            if "bytes_per_node" in r:
                mem = f"{r['bytes_per_node']:,.1f}" if r["bytes_per_node"] < 100 else f"{r['bytes_per_node']:,.0f}"
                if ac_bytes and ac_bytes > 0:
                    mem += f" ({_x(r['bytes_per_node'] / ac_bytes)})"
            lines.append(f"| {name} | {label} | {n:,} | {fwd} | {over_floats} | {bwd} | {replay} | {compile_} | {mem} |")
    for peer, why in W.NOT_RUN.items():
        lines.append(f"| all | {peer} | | {why} | | | | | |")

    lines += _replay_table(by)

    steps = {r["peer"]: r for r in rows if r["workload"] == "mlp" and r.get("status") == "ok" and "step_s" in r}
    if steps:
        # each ratio is taken in the row's own subprocess, against autograd_c's idiomatic step
        # timed in the same rounds; the drop-in column divides two such ratios
        dropin = steps.get("autograd_c_dropin")
        micro = steps.get("micrograd")
        lines += ["", "MLP training step (forward + backward + SGD on 337 parameters, 100 samples); "
                  "autograd_c three ways: idiomatic (nn.MLP, ag.sum/ag.dot loss, optim.SGD: one call into C per "
                  "layer, the update in C), as a micrograd drop-in (micrograd's demo code, imports changed: "
                  "inputs wrapped in Value, Python's sum, the update in a Python loop) and by replay (the "
                  "per-sample loss compiled once, replayed over the 100 rows with the parameters shared, "
                  "backward(reduce='mean') and optim.SGD). Each ratio is taken against autograd_c idiomatic "
                  "in the row's own subprocess; the other columns divide two such ratios:", "",
                  "| peer | ms per step, best (median) | x autograd_c idiomatic | x autograd_c drop-in | micrograd / this |",
                  "|---|---:|---:|---:|---:|"]
        for peer in W.PEERS:
            r = steps.get(peer)
            if r is None:
                continue
            ratio = r["step_s"] / r["ac_step_s"]
            vs_dropin = _x(ratio / (dropin["step_s"] / dropin["ac_step_s"])) if dropin else "-"
            vs_micro = _x((micro["step_s"] / micro["ac_step_s"]) / ratio) if micro else "-"
            med = f" ({r['step_median_s'] * 1e3:,.3f})" if "step_median_s" in r else ""
            lines.append(f"| {W.PEERS[peer].label_for('mlp')} | {r['step_s'] * 1e3:,.3f}{med} | {_x(ratio)} "
                         f"| {vs_dropin} | {vs_micro} |")

    notes = []
    for r in rows:
        if r.get("tape_nodes") and r["tape_nodes"] != r["nodes"]:
            how = ("autograd_c (idiomatic) records it as {:,} tape nodes: nn.MLP makes a dot node (bias "
                   "included) and an activation node per neuron, ag.sum and ag.dot one node each"
                   if r["peer"] == "autograd_c" else
                   "the drop-in records {:,} tape nodes: nn.MLP's, plus micrograd's loss code node by node")
            notes.append(f"{r['workload']}: {how.format(r['tape_nodes'])}; ns/node and bytes/node still divide "
                         f"by the scalar graph's {r['nodes']:,} nodes.")
        if r["workload"] == "mlp" and r["peer"] == "autograd_c" and r.get("status") == "ok":
            notes.append("Plain floats run the MLP's scalar code (mlp_loss, micrograd's loops); autograd_c's "
                         "nn.MLP does each neuron's inner loop in C, which is why its forward beats them.")
        if r.get("extra"):
            notes.append(f"JAX on the full-size chain ({r['nodes']:,} nodes): {r['status']}"
                         + (f", first call {r['compile_s']:.0f} s" if "compile_s" in r else "") + ".")
    smaller = {}
    for r in rows:
        if r.get("size") and not r.get("extra") and r["size"] != W.size_for("autograd_c", r["workload"], meta["quick"]):
            cost = f", first call {r['compile_s'] / r['nodes'] * 1e3:.1f} ms per node" if "compile_s" in r else ""
            smaller.setdefault(r["peer"], []).append(
                f"{r['workload']} at size {r['size']:,} ({r['nodes']:,} nodes{cost})")
    for peer, what in smaller.items():
        notes.append(f"{peer} runs {' and '.join(what)}: tracing the scalar graph in Python and compiling it "
                     "is too slow for the full sizes; its ratios are to autograd_c at the same size, in the "
                     "same process.")
    if any(r.get("backward_error") == "RecursionError" for r in rows):
        notes.append("RecursionError: micrograd's backward() sorts the graph recursively, one frame per "
                     "graph level; at Python's default limit it fails above ~500 chain iterations or "
                     "~1,000 wide terms (its results were checked at size 1,000 with a raised limit).")
    if meta.get("subnormal"):
        notes += [f"**{problem}**" for problem in meta["subnormal"]]
    elif "subnormal" in meta:
        notes.append("No value or adjoint of any workload's scalar graph is subnormal at the sizes run "
                     "(checked in floats by workloads.subnormals before the run).")
    notes.append("bytes/node: RSS growth while recording, in a fresh process; CasADi's includes its Function's "
                 "work vectors; JAX's is not measured (tracing and XLA compilation dominate it).")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {("mlp", "autograd_c"): "autograd_c\nidiomatic", ("mlp", "autograd_c_dropin"): "autograd_c\ndrop-in"}
    short.update({(name, "autograd_c_replay"): "autograd_c\ncompiled" for name in W.WORKLOADS})
    fig, axes = plt.subplots(1, len(W.WORKLOADS), figsize=(6 * len(W.WORKLOADS), 5), sharey=True)
    phases = [("forward", "forward"), ("backward", "backward"), ("replay", "replay (value+grad)")]
    colors = {"forward": "#4c72b0", "backward": "#dd8452", "replay": "#55a868"}
    width = 0.27
    for ax, name in zip(axes, W.WORKLOADS):
        by = {r["peer"]: r for r in rows if r["workload"] == name and not r.get("extra")}
        peers = [p for p in W.PEERS if W.PEERS[p].runs(name)]
        labels = []
        for i, peer in enumerate(peers):
            r = by.get("autograd_c" if peer == "floats" else peer, {})
            ref_nodes = by.get("autograd_c", {}).get("nodes")
            label = short.get((name, peer), peer)
            labels.append(label if r.get("nodes") in (None, ref_nodes) else f"{label}\n({r['nodes']:,} nodes)")
            below = ax.get_xaxis_transform()        # x in data, y in axes coordinates
            if r.get("status") != "ok":
                ax.text(i, 0.03, (r.get("status") or "not run")[:24], rotation=90, ha="center", va="bottom",
                        fontsize=7, transform=below)
                continue
            for j, (key, _) in enumerate(phases):
                k = "floats_s" if peer == "floats" and key == "forward" else f"{key}_s"
                if peer == "floats" and key != "forward":
                    continue
                if k in r:
                    ax.bar(i + (j - 1) * width, r[k] / r["nodes"] * 1e9, width, color=colors[key])
                elif key == "backward" and r.get("backward_error"):
                    ax.text(i, 0.03, r["backward_error"], rotation=90, ha="center", va="bottom", fontsize=7,
                            transform=below)
        ax.set_yscale("log")
        ax.set_xticks(range(len(peers)))
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ref = by.get("autograd_c", {})
        ax.set_title(f"{name} ({ref.get('nodes', 0):,} nodes)")
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].set_ylabel("ns per node (log scale; lower is better)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k, _ in phases]
    fig.legend(handles, [label for _, label in phases], loc="upper center", ncol=3)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replay_ratios(rows):
    """For the replay chart: {case: [(label, time / autograd_c compiled's)]},
    each ratio taken against autograd_c's recording in its own subprocess
    (see _replay_table); 2 threads against 1 thread in elapsed time."""
    by = {(r["workload"], r["peer"]): r for r in rows if not r.get("extra") and r.get("status") == "ok"}
    cases = {}
    for name in W.WORKLOADS:
        ours = by.get((name, "autograd_c_replay"))
        if not ours or "replay_s" not in ours:
            continue
        base = ours["replay_s"] / (ours["ac_forward_s"] + ours["ac_backward_s"])
        items = [("autograd_c compiled", 1.0)]
        if "replay_2t_wall_s" in ours:
            items.append(("autograd_c compiled, 2 threads", ours["replay_2t_wall_s"] / ours["replay_wall_s"]))
        for peer in ("jax", "casadi"):
            r = by.get((name, peer))
            if r and "replay_s" in r:
                items.append((W.PEERS[peer].label_for(name), r["replay_s"] / (r["ac_forward_s"] + r["ac_backward_s"]) / base))
        items.append(("autograd_c recording (forward + backward)", 1.0 / base))
        cases[f"{name}: value and gradient ({ours['nodes']:,} nodes)"] = items
    ours = by.get(("mlp", "autograd_c_replay"))
    if ours and "step_s" in ours:
        base = ours["step_s"] / ours["ac_step_s"]
        items = [("autograd_c by replay", 1.0)]
        for peer in ("jax", "casadi", "autograd_c", "autograd_c_dropin", "micrograd"):
            r = by.get(("mlp", peer))
            if r and "step_s" in r:
                items.append((W.PEERS[peer].label_for("mlp"), r["step_s"] / r["ac_step_s"] / base))
        cases["mlp: one training step"] = items
    return cases


def plot_replay(rows, path):
    """Bars of replay_ratios, log scale: how many times autograd_c compiled's time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = replay_ratios(rows)
    if not cases:
        return False
    fig, axes = plt.subplots(len(cases), 1, figsize=(9, 1.0 + 0.42 * sum(len(v) for v in cases.values())
                                                      + 0.5 * len(cases)), squeeze=False)
    for ax, (title, items) in zip(axes[:, 0], cases.items()):
        labels = [label for label, _ in items][::-1]
        values = [v for _, v in items][::-1]
        colors = ["#55a868" if label.startswith("autograd_c compiled") or label == "autograd_c by replay"
                  else "#8c8c8c" for label in labels]
        ax.barh(range(len(values)), values, color=colors)
        for i, v in enumerate(values):
            ax.text(v, i, f" {_x(v)}", va="center", fontsize=8)
        ax.set_yticks(range(len(values)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 8)
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time / autograd_c compiled's time (log scale; lower is faster)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(rows, meta, out, no_chart=False):
    """Prints the Markdown and writes OUT.md, OUT.json and (unless no_chart) OUT.png."""
    text = format_markdown(rows, meta)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    name = os.path.basename(out)
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    chart = ""
    if not no_chart:
        try:
            plot(rows, out + ".png")
            chart = f"Chart: [{name}.png]({name}.png).  "
            if plot_replay(rows, out + "_replay.png"):
                chart += f"Replay: [{name}_replay.png]({name}_replay.png).  "
        except ImportError:
            print("no chart: pip install matplotlib", file=sys.stderr)
    with open(out + ".md", "w") as f:
        f.write(text + f"\n{chart}Total run time {meta['seconds']:.0f} s.\n")
    print(f"wrote {out}.md, .json" + (", .png" if chart else ""), file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small graphs, few rounds (< 2 minutes)")
    parser.add_argument("--peers", default=",".join(W.PEERS), help="comma-separated peers (default: all)")
    parser.add_argument("--workloads", default=",".join(W.WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--out", help="write OUT.md, OUT.json and OUT.png (default: "
                        "benchmarks/results/latest, or .../quick with --quick)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--from-json", metavar="FILE", help="re-render FILE.md and FILE.png from a saved FILE.json")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu (default): CPU time of the measuring process; wall: elapsed time")
    parser.add_argument("--measure", nargs=2, metavar=("PEER", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, metavar=("PEER", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]

    if args.measure:
        print(json.dumps(measure(*args.measure, args.quick, args.size)))
        return 0
    if args.memory:
        peer, name = args.memory
        case = W.PEERS[peer].case(W.make_workload(name, args.size, args.quick, peer))
        seconds, per_node = record_memory(case)
        print(json.dumps({"peer": peer, "workload": name, "size": case.w.size, "nodes": case.w.nodes,
                          "forward_s": seconds, "bytes_per_node": per_node, "status": "ok"}))
        return 0

    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        write_outputs(saved["rows"], saved["meta"], os.path.splitext(args.from_json)[0], args.no_chart)
        return 0

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for p in peers:
        if p not in W.PEERS:
            parser.error(f"unknown peer {p!r}; choose from {', '.join(W.PEERS)}")
    if "autograd_c" not in peers:
        peers.insert(0, "autograd_c")
    t0 = time.perf_counter()
    load_start = round(os.getloadavg()[1], 1)
    subnormal = check_subnormals(peers, workloads, args.quick)
    rows = run_all(peers, workloads, args.quick, args.clock)
    meta = machine()
    meta["subnormal"] = subnormal
    meta["quick"] = args.quick
    meta["clock"] = args.clock
    meta["load_start"] = load_start
    meta["command"] = " ".join(["python benchmarks/compare.py"] + list(sys.argv[1:] if argv is None else argv))
    meta["versions"] = {}
    for r in rows:
        if r.get("version") and W.PEERS[r["peer"]].module not in meta["versions"]:
            meta["versions"][W.PEERS[r["peer"]].module] = r["version"]
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    out = args.out or os.path.join(HERE, "results", "quick" if args.quick else "latest")
    write_outputs(rows, meta, out, args.no_chart)
    print(f"total {meta['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
