"""Cost per node against graph size: autograd_c from 10^3 to 10^8 tape nodes.

    python benchmarks/bench_scale.py             # 10^3 .. 10^8 nodes (about 15 minutes, 7 GB of RAM)
    python benchmarks/bench_scale.py --quick     # 10^3 .. 10^6 nodes, under a minute
    python benchmarks/bench_scale.py --sizes 1e5,1e7 --workloads chain --processes 3
    python benchmarks/bench_scale.py --from-json benchmarks/results/scale.json   # re-render

For each workload and each size, several fresh interpreters (full: 5, 3 at
10^8; --quick: 3) each record the workload, backpropagate it and drop it,
round after round (at least 2 rounds, more while under a second), and run
the same code in plain Python floats as many times (once before autograd_c's
rounds, the rest after them: autograd_c's rounds run back to back, see
measure()).  The table gives, per tape node: the best round and the median
round of all processes, the first recording of each process (median), which
pays for fresh memory, and the forward time over the plain-float time of the
same code.

Workloads (benchmarks/workloads.py, the code compare.py times):
  chain  y = y*a + x*0.0001, a alternating 0.9999 and 1/0.9999: 3 tape nodes
         per iteration, a graph as deep as it is long.  The loop keeps only
         the current Variable, so a 10^8-node graph is 10^8 tape nodes and a
         handful of Python objects.
  mlp    micrograd's demo MLP(2, [16, 16, 1]) on a make-moons batch grown to
         reach the node count, written the fastest idiomatic way (nn.MLP: one
         dot node and one ReLU node per neuron; ag.sum, ag.dot): 68 tape nodes
         per sample, against the 644 scalar operations per sample of the same
         loss in plain floats (micrograd's loops), which is why its "forward /
         floats" is below 1.  The batch's scores and losses (two Variables per
         sample) are held until the loss is built, as the idiomatic code does.
Both are checked for subnormal values and adjoints at every size run
(workloads.subnormals: about 40 s of NumPy and float loops at 10^8 nodes).

Times are CPU time of the measuring process (time.process_time: user +
system, so page faults count), not wall time: the machines these run on are
shared, and a process waiting for a core is not autograd_c's cost.  Both are
kept in the JSON; the table notes the median wall / CPU ratio of each size
(1.00 on a quiet machine).

Sizes are tape nodes as autograd_c records them (a 10^8-node chain is
33,333,333 iterations).  Memory, from the first round of each process
(median): "RSS" is the growth of resident memory while recording, "peak" the
highest resident memory during forward and backward above the level before
(the adjoint buffer of backward() included), "tape" the tape's own count of
the bytes it holds (capacity included).  RSS moves by pages and allocator
arenas, so below 10^5 nodes its per-node figures are noise and not shown.
"""
import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:            # workloads.py, by this file's directory (never the repository root)
    sys.path.insert(0, HERE)
import workloads as W  # noqa: E402
from compare import run_subprocess  # noqa: E402

SCALE_WORKLOADS = ("chain", "mlp")
FULL_SIZES = tuple(10 ** k for k in range(3, 9))
QUICK_SIZES = tuple(10 ** k for k in range(3, 7))
ROUND_BUDGET = {"full": 1.0, "quick": 0.5}     # seconds of rounds per process (at least MIN_ROUNDS)
MIN_ROUNDS, MAX_ROUNDS = 2, 30
RSS_FLOOR = 100_000                              # nodes below which RSS per node is not reported
TWO_20, TWO_27 = 2 ** 20, 2 ** 27


def processes_for(nodes, quick):
    if quick:
        return 3
    return 3 if nodes >= 10 ** 8 else 5


# ---------------------------------------------------------------------------
# In the subprocess
# ---------------------------------------------------------------------------

def _status(key):
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _timed(fn):
    """(CPU seconds, wall seconds) of fn(): see CPU time in the module docstring."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def _floats_round(floats):
    """One timed run of the workload in plain floats: (CPU s, wall s, value)."""
    gc.collect()
    floats.leaves()
    t, wall = _timed(floats.forward)
    value = floats.output()
    floats.release()
    return t, wall, value


def measure(name, size, quick):
    """Rounds of floats, forward and backward on workload ``name`` at ``size``
    (iterations or samples) in this fresh process; returns a JSON-able dict.

    autograd_c's rounds run back to back, as a training loop records one
    graph after another: a dead graph's large arrays are kept for the next
    recording for about a second before they go back to the OS
    (docs/architecture.md, "Memory"), so plain-float runs in between (up to
    37 s at 10^8 MLP nodes) would time fresh memory in every round.  The
    first round is the first recording of the process (fresh memory: the
    "first" columns); the plain-float rounds run one before autograd_c's
    (its value checks them) and the rest after."""
    import autograd_c as ag
    w = W.make_workload(name, size)
    floats = W.PEERS["floats"].case(w)
    ac = W.PEERS["autograd_c"].case(w)

    tiny = W.PEERS["autograd_c"].case(W.make_workload(name, 2))   # first-use costs out of the way
    tiny.leaves()
    tiny.forward()
    tiny.backward()
    tiny.release()

    out = {"workload": name, "size": size, "scalar_nodes": w.nodes, "rounds": []}
    budget = ROUND_BUDGET["quick" if quick else "full"]
    t_floats, w_floats, expected = _floats_round(floats)
    float_rounds = [(t_floats, w_floats)]
    start = time.perf_counter()
    while len(out["rounds"]) < MAX_ROUNDS:
        first = not out["rounds"]
        gc.collect()
        ac.leaves()
        if first:
            nodes_before = ag.tape_stats()["nodes"]
            rss_before = _status("VmRSS")
            peak_reset = _reset_peak()
        t_forward, w_forward = _timed(ac.forward)
        if first:
            stats = ag.tape_stats()
            out["nodes"] = stats["nodes"] - nodes_before
            out["rss_bytes"] = _status("VmRSS") - rss_before
            out["tape_bytes"] = stats["bytes"]
            out["tape_stats"] = stats
        t_backward, w_backward = _timed(ac.backward)
        if first:
            out["peak_bytes"] = _status("VmHWM") - rss_before if peak_reset else None
        value, grads = ac.result()
        ac.release()
        wrong = W.agree((value, []), (expected, []))
        if wrong:
            out["status"] = f"WRONG: autograd_c's value disagrees with the floats': {wrong}"
            return out
        if first:
            out["value"], out["grads"] = value, grads
        elif W.agree((value, grads), (out["value"], out["grads"]), tol=0.0):
            out["status"] = "WRONG: the answer changed between rounds"
            return out
        out["rounds"].append({"forward_s": t_forward, "backward_s": t_backward,
                              "forward_wall_s": w_forward, "backward_wall_s": w_backward})
        if len(out["rounds"]) >= MIN_ROUNDS and time.perf_counter() - start > budget:
            break
    while len(float_rounds) < len(out["rounds"]):
        t_floats, w_floats, value = _floats_round(floats)
        float_rounds.append((t_floats, w_floats))
    for rd, (t_floats, w_floats) in zip(out["rounds"], float_rounds):
        rd["floats_s"], rd["floats_wall_s"] = t_floats, w_floats
    out["status"] = "ok"
    out["version"] = W.PEERS["autograd_c"].version()
    return out


# ---------------------------------------------------------------------------
# In the parent
# ---------------------------------------------------------------------------

def tape_nodes_per_unit(name):
    """(tape nodes per iteration or sample, fixed extra nodes) of the
    workload as autograd_c records it, from two tiny recordings."""
    import autograd_c as ag
    counts = []
    for size in (1, 2):
        case = W.PEERS["autograd_c"].case(W.make_workload(name, size))
        case.leaves()
        before = ag.tape_stats()["nodes"]
        case.forward()
        counts.append(ag.tape_stats()["nodes"] - before)
        case.release()
    per_unit = counts[1] - counts[0]
    return per_unit, counts[0] - per_unit


def size_for_nodes(name, nodes, per_unit, extra):
    """Iterations (chain) or samples (mlp) that record about ``nodes`` tape nodes."""
    return max(1, round((nodes - extra) / per_unit))


def run_process(name, size, quick, limit):
    return run_subprocess(["--measure", name, str(size)] + (["--quick"] if quick else []), limit,
                          script=__file__)


def summarize(name, target, size, runs, subnormal):
    """One table row from the processes' results."""
    row = {"workload": name, "target": target, "size": size, "processes": len(runs), "subnormal": subnormal}
    bad = [r["status"] for r in runs if r.get("status") != "ok"]
    if bad:
        row["status"] = bad[0]
        return row
    if any(r["grads"] != runs[0]["grads"] or r["value"] != runs[0]["value"] for r in runs):
        row["status"] = "WRONG: the processes disagree"
        return row
    row["status"] = "ok"
    row["nodes"] = runs[0]["nodes"]
    row["scalar_nodes"] = runs[0]["scalar_nodes"]
    row["version"] = runs[0].get("version")
    n = row["nodes"]
    rounds = [rd for r in runs for rd in r["rounds"]]
    for phase in ("floats", "forward", "backward"):
        times = [rd[f"{phase}_s"] for rd in rounds]
        row[f"{phase}_best_ns"] = min(times) / n * 1e9
        row[f"{phase}_median_ns"] = statistics.median(times) / n * 1e9
    row["first_forward_median_ns"] = statistics.median(r["rounds"][0]["forward_s"] for r in runs) / n * 1e9
    row["first_backward_median_ns"] = statistics.median(r["rounds"][0]["backward_s"] for r in runs) / n * 1e9
    row["forward_over_floats"] = row["forward_best_ns"] / row["floats_best_ns"]
    row["forward_over_floats_median"] = statistics.median(rd["forward_s"] / rd["floats_s"] for rd in rounds)
    row["rounds"] = len(rounds)
    row["wall_over_cpu"] = statistics.median(
        rd[f"{phase}_wall_s"] / rd[f"{phase}_s"] for rd in rounds for phase in ("floats", "forward", "backward")
        if rd[f"{phase}_s"] > 0)
    for key in ("rss_bytes", "peak_bytes", "tape_bytes"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[f"{key}_per_node"] = statistics.median(values) / n if values else None
    row["runs"] = runs
    return row


def run_all(workloads, sizes, quick, processes=None, log=sys.stderr):
    rows = []
    for name in workloads:
        per_unit, extra = tape_nodes_per_unit(name)
        for target in sizes:
            size = size_for_nodes(name, target, per_unit, extra)
            t0 = time.perf_counter()
            subnormal = W.subnormals(W.make_workload(name, size))
            if subnormal:
                print(f"WARNING: {subnormal}", file=log, flush=True)
            count = processes or processes_for(target, quick)
            limit = 120 + target * 5e-6                  # generous: 620 s at 10^8 nodes
            runs = []
            for k in range(count):
                t1 = time.perf_counter()
                runs.append(run_process(name, size, quick, limit))
                if time.perf_counter() - t1 > 10:
                    print(f"    process {k + 1}/{count}: {runs[-1].get('status')} "
                          f"[{time.perf_counter() - t1:.0f} s]", file=log, flush=True)
                if runs[-1].get("status") != "ok":
                    break
            row = summarize(name, target, size, runs, subnormal)
            rows.append(row)
            if row["status"] == "ok":
                what = (f"forward {row['forward_best_ns']:6.1f} ns/node (median {row['forward_median_ns']:.1f}), "
                        f"backward {row['backward_best_ns']:5.1f}, floats {row['floats_best_ns']:5.1f}")
            else:
                what = row["status"]
            print(f"  {name:5s} {target:>11,} nodes  {what}  [{time.perf_counter() - t0:5.1f} s]",
                  file=log, flush=True)
    return rows


def _ns(v):
    return "-" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _bytes(v, nodes):
    if v is None or nodes < 0.99 * RSS_FLOOR:
        return "-"
    return f"{v:.1f}"


def _power(n):
    k = round(math.log10(n))
    return f"10^{k}" if 10 ** k == n else f"{n:,}"


def format_markdown(rows, meta):
    lines = [
        "# Cost per node against graph size",
        "",
        f"{meta['date']}; {meta['cpu']} ({meta['cores']} cores); Python {meta['python']}; "
        f"{meta['platform']}; autograd_c {meta.get('version') or '?'}.  Command: `{meta['command']}`."
        + (f"  Load average (5 min): {meta['load_start']} at the start, {meta['load']} at the end."
           if meta.get("load_start") is not None else ""),
        "",
        "CPU ns per tape node (process_time: user + system, page faults included; the machine is shared, "
        "and \"wall / CPU\" gives the median ratio of wall-clock to CPU time, 1.00 when the process had a core "
        "to itself): best round / median round over all rounds of all fresh processes / median of the "
        "later rounds (each process's rounds after its first); "
        "\"first\": the first recording in each process (median over processes); forward / floats: best "
        "forward over best plain-float run of the same code.  Bytes per tape node (median over processes): "
        "RSS growth while recording, peak RSS above the start during forward + backward, the tape's own "
        f"count.  RSS figures below {RSS_FLOOR:,} nodes are noise and not shown.",
    ]
    for name in SCALE_WORKLOADS:
        mine = [r for r in rows if r["workload"] == name]
        if not mine:
            continue
        unit = "iterations" if name == "chain" else "samples"
        lines += ["", f"**{name}**" + (" (nn.MLP, idiomatic; plain floats run micrograd's scalar loops)"
                                       if name == "mlp" else ""), "",
                  f"| tape nodes | {unit} | processes x rounds | floats ns/node | forward ns/node best / median / later "
                  "| first forward | forward / floats | backward ns/node best / median / later | first backward "
                  "| RSS B/node | peak B/node | tape B/node | wall / CPU |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mine:
            if r["status"] != "ok":
                lines.append(f"| {_power(r['target'])} | {r['size']:,} | {r['processes']} | {r['status']} "
                             "| | | | | | | | | |")
                continue
            n = r["nodes"]
            lines.append(
                f"| {n:,} | {r['size']:,} | {r['processes']} x {r['rounds'] // r['processes']} "
                f"| {_ns(r['floats_best_ns'])} "
                f"| {_ns(r['forward_best_ns'])} / {_ns(r['forward_median_ns'])} / {_ns(_later(r, 'forward'))} "
                f"| {_ns(r['first_forward_median_ns'])} "
                f"| {r['forward_over_floats']:.2f}x "
                f"| {_ns(r['backward_best_ns'])} / {_ns(r['backward_median_ns'])} / {_ns(_later(r, 'backward'))} "
                f"| {_ns(r['first_backward_median_ns'])} "
                f"| {_bytes(r['rss_bytes_per_node'], n)} | {_bytes(r['peak_bytes_per_node'], n)} "
                f"| {r['tape_bytes_per_node']:.1f} | {r.get('wall_over_cpu', float('nan')):.2f} |")
    notes = []
    for r in rows:
        if r.get("subnormal"):
            notes.append(f"**{r['subnormal']}**")
    if not notes:
        notes.append("No value or adjoint of either workload is subnormal at any size run "
                     "(workloads.subnormals, in floats, before the measurements).")
    mlp = [r for r in rows if r["workload"] == "mlp" and r["status"] == "ok"]
    if mlp:
        r = mlp[-1]
        notes.append(f"mlp: {r['nodes'] / r['size']:.0f} tape nodes per sample; the scalar graph of the same loss "
                     f"(micrograd's) has {r['scalar_nodes'] / r['size']:.0f} per sample ({r['scalar_nodes']:,} "
                     f"at {r['size']:,} samples), so per scalar node its times are "
                     f"{r['scalar_nodes'] / r['nodes']:.1f}x smaller.")
    notes.append(f"Sizes aim at powers of ten; the rows give the tape nodes recorded.  {TWO_20:,} = 2^20: "
                 "arrays up to this many entries stay with a tape when its graph dies, larger ones are kept "
                 f"for the next recording about a second (docs/architecture.md, \"Memory\").  {TWO_27:,} = 2^27: "
                 "past 134,217,727 nodes a tape switches to its wide layout (18 bytes a node instead of 16).")
    if any(r["rounds"] == 2 * r["processes"] for r in rows if r["status"] == "ok"):
        notes.append("Where a process ran 2 rounds, half of all rounds are first recordings, which fault fresh "
                     "memory in (\"first\" columns), so the median lies between the first and the later rounds.")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _later(row, phase):
    """Median ns per node of the rounds after each process's first (nan if none)."""
    times = [rd[f"{phase}_s"] for r in row["runs"] for rd in r["rounds"][1:]]
    return statistics.median(times) / row["nodes"] * 1e9 if times else float("nan")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    styles = {"chain": "-", "mlp": "--"}
    colors = {"forward": "#4c72b0", "backward": "#dd8452", "floats": "#55a868"}
    for name in SCALE_WORKLOADS:
        mine = [r for r in rows if r["workload"] == name and r["status"] == "ok"]
        if not mine:
            continue
        x = [r["nodes"] for r in mine]
        for phase, label in (("forward", "forward"), ("backward", "backward"), ("floats", "plain floats")):
            best = [r[f"{phase}_best_ns"] for r in mine]
            median = [r[f"{phase}_median_ns"] for r in mine]
            left.plot(x, best, styles[name], marker="o", color=colors[phase], label=f"{name} {label}")
            left.fill_between(x, best, median, color=colors[phase], alpha=0.15, linewidth=0)
        right.plot(x, [r["tape_bytes_per_node"] for r in mine], styles[name], marker="s", color="#8172b3",
                   label=f"{name}: tape's count")
        big = [r for r in mine if r["nodes"] >= 0.99 * RSS_FLOOR and r.get("peak_bytes_per_node") is not None]
        if big:
            right.plot([r["nodes"] for r in big], [r["peak_bytes_per_node"] for r in big], styles[name],
                       marker="^", color="#c44e52", label=f"{name}: peak RSS")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tape nodes")
        ax.grid(which="major", alpha=0.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
        for at, text in ((TWO_20, "2^20"), (TWO_27, "2^27")):
            ax.axvline(at, color="grey", linestyle=":", linewidth=1)
            ax.text(at, 0.98, f" {text}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="grey")
    left.set_ylabel("CPU ns per tape node (line: best round; band: to the median)")
    left.set_title("time per node")
    right.set_ylabel("bytes per tape node")
    right.set_title("memory per node")
    left.legend(fontsize=7, ncol=2)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load": round(os.getloadavg()[1], 1)}


def _rounded(obj):
    """Floats to 6 significant digits (the JSON's per-round times), recursively."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def write_outputs(rows, meta, out, no_chart=False):
    text = format_markdown(rows, meta)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:      # one line per row: the per-round data makes it long
        f.write('{"meta": ' + json.dumps(meta) + ',\n "rows": [\n'
                + ",\n".join(json.dumps(_rounded(r), separators=(",", ":")) for r in rows) + "]}\n")
    chart = ""
    if not no_chart:
        try:
            plot(rows, out + ".png")
            chart = f"Chart: [{os.path.basename(out)}.png]({os.path.basename(out)}.png).  "
        except ImportError:
            print("no chart: pip install matplotlib", file=sys.stderr)
    with open(out + ".md", "w") as f:
        f.write(text + f"\n{chart}Total run time {meta['seconds']:.0f} s.\n")
    print(f"wrote {out}.md, .json" + (", .png" if chart else ""), file=sys.stderr)


def _sizes(text):
    return [int(float(s)) for s in text.split(",") if s.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10^3 .. 10^6 nodes, 3 processes each (under a minute)")
    parser.add_argument("--sizes", type=_sizes, help="comma-separated tape-node counts, e.g. 1e3,1e6")
    parser.add_argument("--workloads", default=",".join(SCALE_WORKLOADS), help="chain, mlp or both")
    parser.add_argument("--processes", type=int, help="fresh processes per size (default 5; 3 at 10^8 or --quick)")
    parser.add_argument("--out", help="write OUT.md, OUT.json and OUT.png (default: benchmarks/results/scale, "
                        "or .../scale-quick with --quick)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--from-json", metavar="FILE", help="re-render FILE.md and FILE.png from a saved FILE.json")
    parser.add_argument("--measure", nargs=2, metavar=("WORKLOAD", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args.quick)))
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        write_outputs(saved["rows"], saved["meta"], os.path.splitext(args.from_json)[0], args.no_chart)
        return 0

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for name in workloads:
        if name not in SCALE_WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(SCALE_WORKLOADS)}")
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    t0 = time.perf_counter()
    load_start = round(os.getloadavg()[1], 1)
    rows = run_all(workloads, sizes, args.quick, args.processes)
    meta = machine()
    meta["quick"] = args.quick
    meta["load_start"] = load_start
    meta["command"] = " ".join(["python benchmarks/bench_scale.py"] + list(sys.argv[1:] if argv is None else argv))
    meta["version"] = next((r["version"] for r in rows if r.get("version")), None)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    out = args.out or os.path.join(HERE, "results", "scale-quick" if args.quick else "scale")
    write_outputs(rows, meta, out, args.no_chart)
    print(f"total {meta['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
