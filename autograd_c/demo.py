"""`python -m autograd_c demo`: train micrograd's moons classifier with autograd_c.

MLP(2, [16, 16, 1]) on 100 make-moons points, SVM max-margin loss plus 1e-4 L2,
SGD with the learning rate decaying from 1.0 to 0.1 over 100 steps: micrograd's
demo, written with autograd_c's layers (one C call per layer) and optimiser.

With --replay the per-sample loss is recorded once (ag.compile) and every
step replays it in C over the whole batch, the parameters shared, the mean
loss and its gradient in one call (train_replay); --samples and --threads
make it a larger problem.
"""
import argparse
import random
import sys
import time

import autograd_c as ag
from autograd_c import nn, optim

EXTRA_HINT = 'install the demo extras: pip install "autograd_c[demo]"'


ALPHA = 1e-4        # the L2 weight of micrograd's demo


def moons(n_samples=100, noise=0.1, seed=1337):
    """The make-moons data as lists: X (rows [x0, x1]) and y (-1 or 1)."""
    try:
        import numpy as np
    except ImportError:
        raise SystemExit(f"the demo needs NumPy for its data; {EXTRA_HINT}") from None
    from autograd_c.datasets import make_moons

    np.random.seed(seed)
    X, y = make_moons(n_samples=n_samples, noise=noise)
    return X.tolist(), [2.0 * label - 1.0 for label in y.tolist()]


def loss_and_accuracy(model, X, y, alpha=1e-4):
    """Mean hinge loss + alpha * L2 of the parameters, and the accuracy."""
    scores = [model(row) for row in X]
    data_loss = ag.sum([(1.0 - yi * si).relu() for yi, si in zip(y, scores)]) * (1.0 / len(X))
    params = model.parameters()
    loss = data_loss + alpha * ag.dot(params, params)
    correct = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores))
    return loss, correct / len(X)


def train(steps=100, seed=1337, progress=True, samples=100):
    """Train; returns (model, data, history of (loss, accuracy), seconds)."""
    X, y = moons(n_samples=samples, seed=seed)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    opt = optim.SGD(model.parameters(), lr=1.0)
    history = []
    bar = _progress_bar(steps, progress)
    start = time.perf_counter()
    for k in range(steps):
        loss, accuracy = loss_and_accuracy(model, X, y)
        opt.zero_grad()
        loss.backward()
        opt.lr = 1.0 - 0.9 * k / steps
        opt.step()
        history.append((loss.data, accuracy))
        bar(k, loss.data, accuracy)
    seconds = time.perf_counter() - start
    bar(None, None, None)
    return model, (X, y), history, seconds


def train_replay(steps=100, seed=1337, progress=True, samples=100, threads=1):
    """Train the same model by replay: the per-sample loss (hinge + the L2
    term, so its mean is the demo's loss) compiled once with the parameters
    and one sample as inputs, then replayed over all samples per step with
    the parameters shared; backward() adds the mean's gradient into the
    parameters' .grad and the optimiser steps as usual.  Returns what
    train() returns."""
    import numpy as np
    X, y = moons(n_samples=samples, seed=seed)
    X, y = np.array(X), np.array(y)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    params = model.parameters()
    opt = optim.SGD(params, lr=1.0)

    @ag.compile(has_aux=True)
    def sample_loss(params, x, yi):
        score = model(x)
        return (1.0 - yi * score).relu() + ALPHA * ag.dot(params, params), score

    batch = sample_loss.vmap(in_axes=(None, 0, 0), threads=threads)
    history = []
    bar = _progress_bar(steps, progress)
    start = time.perf_counter()
    for k in range(steps):
        opt.zero_grad()
        loss, scores = batch.backward(params, X, y, reduce="mean")
        opt.lr = 1.0 - 0.9 * k / steps
        opt.step()
        accuracy = float(np.mean((y > 0) == (scores > 0)))
        history.append((loss, accuracy))
        bar(k, loss, accuracy)
    seconds = time.perf_counter() - start
    bar(None, None, None)
    return model, (X, y), history, seconds


def _progress_bar(steps, enabled):
    """A callback showing loss and accuracy: tqdm if installed, else a line every 10 steps."""
    if not enabled:
        return lambda k, loss, accuracy: None
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"(no progress bar: tqdm is not installed; {EXTRA_HINT})")

        def plain(k, loss, accuracy):
            if k is not None and (k % 10 == 0 or k == steps - 1):
                print(f"step {k:3d}  loss {loss:.6f}  accuracy {accuracy:.0%}")
        return plain
    bar = tqdm(total=steps, desc="training", unit="step")

    def update(k, loss, accuracy):
        if k is None:
            bar.close()
            return
        bar.set_postfix(loss=f"{loss:.4f}", accuracy=f"{accuracy:.0%}", refresh=False)
        bar.update(1)
    return update


def plot(model, data, history, path):
    """Save the decision boundary and the loss curve to path (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(f"--plot needs matplotlib; {EXTRA_HINT}") from None
    X, y = data
    xs = [row[0] for row in X]
    ys = [row[1] for row in X]
    h = 0.05
    gx = [min(xs) - 1 + h * i for i in range(int((max(xs) - min(xs) + 2) / h) + 1)]
    gy = [min(ys) - 1 + h * j for j in range(int((max(ys) - min(ys) + 2) / h) + 1)]
    with ag.no_grad():
        grid = [[model([a, b]).data > 0 for a in gx] for b in gy]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.contourf(gx, gy, grid, cmap=plt.cm.Spectral, alpha=0.8)
    left.scatter(xs, ys, c=y, s=40, cmap=plt.cm.Spectral, edgecolors="k")
    left.set_title(f"decision boundary (accuracy {history[-1][1]:.0%})")
    right.plot([loss for loss, _ in history])
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_title("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograd_c demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the data and the weights")
    parser.add_argument("--plot", metavar="PATH", help="save the decision boundary and loss curve (PNG)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--replay", action="store_true",
                        help="record the per-sample loss once and replay it in C every step")
    parser.add_argument("--samples", type=int, default=100, help="make-moons points (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the replay (with --replay)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.samples < 2:
        parser.error("--samples must be at least 2")
    if not 1 <= args.threads <= 256:
        parser.error("--threads must be from 1 to 256")
    if args.replay:
        model, data, history, seconds = train_replay(args.steps, args.seed, not args.quiet,
                                                     args.samples, args.threads)
    else:
        if args.threads != 1:
            parser.error("--threads needs --replay")
        model, data, history, seconds = train(args.steps, args.seed, progress=not args.quiet,
                                              samples=args.samples)
    loss, accuracy = history[-1]
    print(f"{args.steps} steps in {seconds:.2f} s ({args.steps / seconds:.0f} steps/s, "
          f"{args.steps * args.samples / seconds:,.0f} samples/s"
          f"{', by replay' if args.replay else ''}): final loss {loss:.6f}, accuracy {accuracy:.0%}")
    if args.plot:
        plot(model, data, history, args.plot)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
