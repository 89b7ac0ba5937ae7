"""One training step of micrograd's demo, on micrograd and on autograd_c, side by side.

    python benchmarks/bench_micrograd_step.py            # 7 rounds, about 10 s
    python benchmarks/bench_micrograd_step.py --quick    # 3 rounds

The step is micrograd's demo.ipynb loop body, written exactly as micrograd writes
it (loss() over all 100 make-moons points with MLP(2, [16, 16, 1]), SVM
max-margin loss + 1e-4 L2, model.zero_grad(), total_loss.backward(),
p.data -= learning_rate * p.grad).  The same text runs on
  micrograd            from micrograd.engine import Value; from micrograd.nn import MLP
  autograd_c drop-in   from autograd_c.engine import Value; from autograd_c.nn import MLP
and, when autograd_c.optim exists, a third row solves the same problem the fast
autograd_c way: inputs as plain floats, ag.sum for the data loss, ag.dot for the
L2 term, autograd_c.optim.SGD for zero_grad()/step().

Shared machines drift by tens of percent from minute to minute, so every round
times one step of each row back to back (interleaved); the table shows the best
round of each row and the median over rounds, and the speed-up over micrograd
computed both ways (best / best and the median of per-round ratios).

Garbage collection: a micrograd graph is tens of thousands of reference cycles
(each Value's _backward closure refers to the Value), so CPython's cyclic
collector runs many times inside micrograd's step and takes most of its time.
Each timed step starts after an untimed gc.collect() (the previous step's garbage
is not charged to it; in a real training loop it would be, making micrograd
slower still).  The "gc off" micrograd row disables the collector during the
step: micrograd's pure compute, the most conservative baseline.  autograd_c
creates no cycles and runs with the collector on.
"""
import argparse
import gc
import random
import statistics
import sys
import time

# the installed autograd_c: nothing here puts the repository root on sys.path
from autograd_c.datasets import make_moons


def make_data():
    """micrograd's demo data: np.random.seed(1337); make_moons(100, noise=0.1); y in {-1, 1}."""
    import numpy as np
    np.random.seed(1337)
    X, y = make_moons(n_samples=100, noise=0.1)
    y = y*2 - 1 # make y be -1 or 1
    return X, y


def micrograd_style(Value, MLP, X, y):
    """Returns step(k): one iteration of micrograd's demo loop, micrograd's text verbatim."""
    import numpy as np
    random.seed(1337)
    model = MLP(2, [16, 16, 1]) # 2-layer neural network

    # loss function
    def loss(batch_size=None):

        # inline DataLoader :)
        if batch_size is None:
            Xb, yb = X, y
        else:
            ri = np.random.permutation(X.shape[0])[:batch_size]
            Xb, yb = X[ri], y[ri]
        inputs = [list(map(Value, xrow)) for xrow in Xb]

        # forward the model to get scores
        scores = list(map(model, inputs))

        # svm "max-margin" loss
        losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(yb, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        # L2 regularization
        alpha = 1e-4
        reg_loss = alpha * sum((p*p for p in model.parameters()))
        total_loss = data_loss + reg_loss

        # also get accuracy
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores)]
        return total_loss, sum(accuracy) / len(accuracy)

    def step(k):
        # forward
        total_loss, acc = loss()

        # backward
        model.zero_grad()
        total_loss.backward()

        # update (sgd)
        learning_rate = 1.0 - 0.9*k/100
        for p in model.parameters():
            p.data -= learning_rate * p.grad

        return float(total_loss.data), float(acc)

    return step


def autograd_c_style(X, y):
    """Returns step(k): the same problem written the fast autograd_c way, as
    `python -m autograd_c demo` trains it (autograd_c.demo.loss_and_accuracy)."""
    from autograd_c import demo, optim
    from autograd_c.nn import MLP

    random.seed(1337)
    model = MLP(2, [16, 16, 1])
    opt = optim.SGD(model.parameters(), lr=1.0)
    rows = X.tolist()                 # inputs stay plain floats: constants, never recorded
    labels = [float(v) for v in y]

    def step(k):
        total_loss, acc = demo.loss_and_accuracy(model, rows, labels)
        opt.lr = 1.0 - 0.9 * k / 100
        opt.zero_grad()
        total_loss.backward()
        opt.step()
        return total_loss.data, acc

    return step


def _time_step(step, k, gc_off):
    gc.collect()                      # the previous step's garbage is not this step's cost
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        out = step(k)
        return time.perf_counter() - t0, out
    finally:
        gc.enable()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--rounds", type=int, help="number of interleaved rounds")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)

    try:
        import micrograd.engine
        import micrograd.nn
    except ImportError:
        print("micrograd is not installed (pip install micrograd): nothing to compare with")
        return 1
    import autograd_c.engine
    import autograd_c.nn

    X, y = make_data()
    MG, MG_NOGC = "micrograd", "micrograd, gc off during the step"
    rows = {   # name: (step function, run with the cyclic garbage collector disabled?)
        MG: (micrograd_style(micrograd.engine.Value, micrograd.nn.MLP, X, y), False),
        MG_NOGC: (micrograd_style(micrograd.engine.Value, micrograd.nn.MLP, X, y), True),
        "autograd_c drop-in (imports changed)": (
            micrograd_style(autograd_c.engine.Value, autograd_c.nn.MLP, X, y), False),
    }
    try:
        rows["autograd_c idiomatic (ag.sum, ag.dot, optim.SGD)"] = (autograd_c_style(X, y), False)
    except (ImportError, AttributeError) as exc:
        print(f"(no idiomatic row: {exc})")
        print()

    times = {name: [] for name in rows}
    losses = {name: [] for name in rows}
    for k in range(rounds):
        for name, (step, gc_off) in rows.items():
            seconds, (loss, acc) = _time_step(step, k, gc_off)
            times[name].append(seconds)
            losses[name].append((loss, acc))

    # every row computed the same thing: step k's loss agrees with micrograd's
    ref = losses[MG]
    for name in rows:
        worst = max(abs(a[0] - b[0]) for a, b in zip(losses[name], ref))
        same_acc = all(a[1] == b[1] for a, b in zip(losses[name], ref))
        if worst > 1e-9 or not same_acc:
            print(f"WARNING: {name} disagrees with micrograd (loss differs by {worst:.3g}, "
                  f"accuracies equal: {same_acc})")

    def speedup(base, ts):
        best = min(times[base]) / min(ts)
        median = statistics.median(b / t for b, t in zip(times[base], ts))
        return " / ".join(f"{r:.0f}x" if r >= 10 else f"{r:.2g}x" for r in (best, median))

    print(f"micrograd's demo, one training step (forward, backward, update): 100 points, "
          f"MLP(2, [16, 16, 1]), {rounds} interleaved rounds")
    print("speed-ups: best round / median of per-round ratios.  micrograd's graph is full of "
          "reference cycles,")
    print("so CPython's cyclic gc runs during its step; 'gc off' times its pure compute "
          "(the conservative baseline).")
    print()
    print("| implementation | best ms/step | median ms/step | vs micrograd | vs micrograd, gc off |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts) * 1e3:.1f} | {statistics.median(ts) * 1e3:.1f} | "
              f"{speedup(MG, ts)} | {speedup(MG_NOGC, ts)} |")
    print()
    print(f"loss after {rounds} steps: " + ", ".join(
        f"{name} {losses[name][-1][0]:.12f}" for name in rows if name != MG_NOGC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
