"""Data-parallel gradients on Dask: 1 against 2 worker processes, and the driver's cost per step.

    python benchmarks/bench_dask.py                  # 1,000,000 rows, 11 rounds (about a minute)
    python benchmarks/bench_dask.py --quick          # 200,000 rows, 5 rounds
    python benchmarks/bench_dask.py --smoke          # 20,000 rows, 2 rounds: does it run
    setsid sh -c 'echo -20 > /proc/self/autogroup; exec python benchmarks/bench_dask.py'
                                                     # its fair share of a shared machine

The workload is micrograd's moons classifier trained data-parallel: the
per-sample loss of MLP(2, [16, 16, 1]) (1,351 scalar nodes a row, 337
parameters), compiled once and replayed over every row by
``autograd_c.dask.value_and_grad`` (the mean loss and its gradient: one
training step's worth of work).  Two LocalClusters run side by side, one
with 1 worker process and one with 2 (one thread each), each holding the
same rows in 8 partitions (persisted); rounds interleave them, alternating
which goes first, so drift on a shared machine hits both alike; every
figure is the best round and the median round.  Also measured in the same
rounds: the same step in this process (``vmap(...).value_and_grad``, 1 and
2 threads), for scale.

The driver's overhead per step is the wall time of the same step over 8
one-row partitions on the 2-worker cluster (scheduling, sending the
parameters, the round trip, the reduction, with nothing to compute), and
its parts measured alone: hashing the compiled function (how a step finds
the copy the workers already have), pickling the parameters, adding up 8
gradients.  The compiled function is sent once: the script counts the
programs each worker process has loaded from bytes before and after all
rounds.

The machine's load (``os.getloadavg``) is printed before and after: other
users' jobs on 2 cores make 2 workers no faster than 1, and the table says
so rather than hides it.
"""
import argparse
import logging
import os
import pickle
import random
import statistics
import sys
import time

import numpy as np

import autograd_c as ag
from autograd_c import _core, nn
from autograd_c.compiled import _content_hash

try:
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster
    from distributed import futures_of

    from autograd_c import dask as agd
except ImportError:  # pragma: no cover - the [dask] extra
    sys.exit("bench_dask.py needs Dask: pip install 'autograd_c[dask]'")


def moons(n, seed=0):
    """n points of two interleaved half circles with noise, labels -1 / +1."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    X = np.where(upper[:, None], np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return X + rng.normal(scale=0.1, size=X.shape), np.where(upper, -1.0, 1.0)


def moons_block(n, seed):
    """One partition: the columns x0, x1, y."""
    X, y = moons(n, seed)
    return np.c_[X, y]


random.seed(1337)
MODEL = nn.MLP(2, [16, 16, 1])
PARAMS = MODEL.parameters()


def sample_loss(params, x, yi):
    """The loss of one sample (micrograd's demo: hinge loss plus L2)."""
    return (1 - yi * MODEL(x)).relu() + 1e-4 * ag.dot(params, params)


def stats(times):
    return min(times), statistics.median(times)


def ms(x):
    return f"{1e3 * x:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="200,000 rows, 5 rounds")
    ap.add_argument("--smoke", action="store_true", help="20,000 rows, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rounds = 200_000, 5
    if args.smoke:
        args.rows, args.rounds = 20_000, 2

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)", flush=True)
    chunk = -(-args.rows // args.partitions)
    sizes = [min(chunk, args.rows - k * chunk) for k in range(args.partitions)]
    X = np.concatenate([moons(n, k)[0] for k, n in enumerate(sizes)])    # what the workers make
    y = np.concatenate([moons(n, k)[1] for k, n in enumerate(sizes)])
    batch = ag.compile(sample_loss).vmap(in_axes=(None, 0, 0))
    batch2 = ag.compile(sample_loss).vmap(in_axes=(None, 0, 0), threads=2)
    batch.value_and_grad(PARAMS, X[:2], y[:2])        # trace with the model's leaves as inputs
    batch2.value_and_grad(PARAMS, X[:2], y[:2])
    p = np.array([v.data for v in PARAMS])
    want_value, (want, _, _) = batch.value_and_grad(p, X, y, reduce="mean")

    opts = dict(processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR)
    with LocalCluster(n_workers=1, **opts) as c1, Client(c1, set_as_default=False) as one, \
            LocalCluster(n_workers=2, **opts) as c2, Client(c2, set_as_default=False) as two:
        data = {}
        for name, client in (("1 worker", one), ("2 workers", two)):
            # the rows are made on the workers (as data read there would be), not sent from here
            # (one block of [x, y] per partition, so a partition's X and y live on the same worker)
            rows = client.persist(da.concatenate([da.from_delayed(dask.delayed(moons_block)(n, k), shape=(n, 3),
                                                                  dtype=float) for k, n in enumerate(sizes)]))
            Xd, yd = client.persist(rows[:, :2]), client.persist(rows[:, 2])
            tiny_X = client.persist(da.from_array(X[:args.partitions], chunks=(1, 2)))
            tiny_y = client.persist(da.from_array(y[:args.partitions], chunks=1))
            client.wait_for_workers(1 if client is one else 2)
            while True:                                 # until every block is held
                holders = [client.who_has(a) for a in (Xd, yd)]
                if all(len(h) == args.partitions and all(h.values()) for h in holders):
                    break
                time.sleep(0.05)
            print(f"{name}: partitions of X and y per worker: " + ", ".join(
                f"{sum(w in v for v in holders[0].values())} and {sum(w in v for v in holders[1].values())}"
                for w in client.scheduler_info()["workers"]), flush=True)
            agd.send(client, batch)                     # before the counts: the one send
            before = client.run(_core._programs_loaded)
            value, (g, _, _) = agd.value_and_grad(client, batch, p, Xd, yd)   # warm up, and check
            err = max(abs(value - want_value) / abs(want_value), np.max(np.abs(g - want)) / np.max(np.abs(want)))
            assert err < 1e-10, (name, err)         # only the order of the additions differs
            print(f"{name}: loss and gradient equal this process's to {err:.1e} (relative)", flush=True)
            data[name] = (client, Xd, yd, tiny_X, tiny_y, before)

        cases = {"1 worker": [], "2 workers": [], "2 workers, a task per partition": [],
                 "this process, 1 thread": [],
                 "this process, 2 threads": [], "overhead": []}
        for r in range(args.rounds):
            order = ["1 worker", "2 workers"] if r % 2 == 0 else ["2 workers", "1 worker"]
            for name in order:
                client, Xd, yd, _, _, _ = data[name]
                t = time.perf_counter()
                agd.value_and_grad(client, batch, p, Xd, yd)
                cases[name].append(time.perf_counter() - t)
            client, Xd, yd, _, _, _ = data["2 workers"]
            agd._GROUP_BY_WORKER = False
            t = time.perf_counter()
            agd.value_and_grad(client, batch, p, Xd, yd)
            cases["2 workers, a task per partition"].append(time.perf_counter() - t)
            agd._GROUP_BY_WORKER = True
            for name, b in (("this process, 1 thread", batch), ("this process, 2 threads", batch2)):
                t = time.perf_counter()
                b.value_and_grad(p, X, y, reduce="mean")
                cases[name].append(time.perf_counter() - t)
            client, _, _, tiny_X, tiny_y, _ = data["2 workers"]
            for _ in range(5):
                t = time.perf_counter()
                agd.value_and_grad(client, batch, p, tiny_X, tiny_y)
                cases["overhead"].append(time.perf_counter() - t)
        loads = {name: (data[name][5], data[name][0].run(_core._programs_loaded)) for name in data}

    # the driver's parts, alone
    parts = {}
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        _content_hash(batch)
    parts["hash the compiled function (find the workers' copy)"] = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        pickle.dumps(p, protocol=5)
    parts[f"pickle the parameters ({p.size} doubles)"] = (time.perf_counter() - t) / reps
    grads = [np.random.default_rng(k).normal(size=p.size) for k in range(args.partitions)]
    t = time.perf_counter()
    for _ in range(reps):
        total = grads[0].copy()
        for g in grads[1:]:
            total = total + g
    parts[f"add up {args.partitions} gradients"] = (time.perf_counter() - t) / reps
    size = len(pickle.dumps(batch, protocol=5))

    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nFull-batch mean loss and gradient, MLP(2, [16, 16, 1]) per-sample loss (1,351 scalar nodes),"
          f" {args.rows:,} rows in {args.partitions} partitions, {args.rounds} interleaved rounds\n")
    print("| case | best | median | rows / s (best) |")
    print("|---|---|---|---|")
    for name in ("1 worker", "2 workers", "2 workers, a task per partition", "this process, 1 thread",
                 "this process, 2 threads"):
        best, med = stats(cases[name])
        print(f"| {name} | {ms(best)} | {ms(med)} | {args.rows / best / 1e6:.1f} M |")
    b1, m1 = stats(cases["1 worker"])
    b2, m2 = stats(cases["2 workers"])
    print(f"\n2 workers over 1: {b1 / b2:.2f}x (best), {m1 / m2:.2f}x (median); target 1.6x")
    print("\nDriver overhead per step (same step over "
          f"{args.partitions} one-row partitions, 2 workers): best {ms(min(cases['overhead']))}, "
          f"median {ms(statistics.median(cases['overhead']))}; its parts alone:")
    for what, sec in parts.items():
        print(f"- {what}: {ms(sec)}")
    steps = {"1 worker": args.rounds + 1, "2 workers": 7 * args.rounds + 1}
    print(f"\nThe compiled function ({size:,} bytes pickled) is sent once: programs each worker process "
          "has loaded from bytes (in all, and during the steps):")
    for name, (before, after) in loads.items():
        print(f"- {name}, {steps[name]} steps: " + ", ".join(
            f"{after[w]} in all, {after[w] - before.get(w, 0)} during the steps" for w in after))


if __name__ == "__main__":
    main()
