"""autograd_c.dask on a LocalCluster of 2 worker processes (issue 12): the same
loss and gradient as one process, the compiled function sent once, clear
errors for bad partitions and dying workers, and nothing applied when a step
fails.  Skipped without dask[distributed]."""
import logging
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import autograd_c as ag  # noqa: E402
from autograd_c import _core  # noqa: E402
from autograd_c import dask as agd  # noqa: E402


class ExitOn777(ag.Function):
    """Kills the worker process that evaluates a row holding 777 (a worker dying mid-step)."""

    def forward(self, x):
        if x == 777.0:
            os._exit(3)
        return x

    def backward(self, gy):
        return gy


def loss(w, b, x, y):
    return (ag.tanh(ag.dot(w, x) + b) - y) ** 2


def dying_loss(w, x, y):
    return (ag.dot(w, x) - ExitOn777()(y)) ** 2


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(3001, 3)), rng.normal(size=3001)
    return X, Y, da.from_array(X, chunks=(700, 3)).persist(), da.from_array(Y, chunks=700).persist()


def close(a, b):
    return np.all(np.abs(np.asarray(a) - np.asarray(b)) <= 1e-12 * (np.abs(b) + np.max(np.abs(b))))


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_equals_one_process(client, data, reduce):
    X, Y, Xd, Yd = data
    fit = ag.compile(loss).vmap(in_axes=(None, None, 0, 0))
    w, b = np.array([0.5, -1.0, 2.0]), 0.25
    want = fit.value_and_grad(w, b, X, Y, reduce=reduce)
    got = agd.value_and_grad(client, fit, w, b, Xd, Yd, reduce=reduce)
    assert close(got[0], want[0]) and close(got[1][0], want[1][0]) and close(got[1][1], want[1][1])
    assert got[1][2] is None and got[1][3] is None
    # NumPy rows are split like the first dask array; uneven chunks of the other are realigned
    got2 = agd.value_and_grad(client, fit, w, b, Xd, Yd.rechunk(1000), reduce=reduce)
    assert close(got2[1][0], want[1][0])


def test_backward_adds_into_leaf_grads_like_one_process(client, data):
    X, Y, Xd, Yd = data
    ws = [ag.Variable(0.3), ag.Variable(-0.2), ag.Variable(0.1)]
    b = ag.Variable(0.0)
    fit = ag.compile(loss).vmap(in_axes=(None, None, 0, 0))
    want = fit.backward(ws, b, X, Y, reduce="mean")
    want_grads = [v.grad for v in ws] + [b.grad]
    for v in ws + [b]:
        v.grad = 0.0
    got = agd.backward(client, fit, ws, b, Xd, Yd)
    assert close(got, want) and close([v.grad for v in ws] + [b.grad], want_grads)


def test_the_function_is_sent_once_and_reused(client, data):
    X, Y, Xd, Yd = data
    fit = ag.compile(lambda w, x, y: (ag.dot(w, x) - y) ** 2).vmap(in_axes=(None, 0, 0))
    w = np.zeros(3)
    fit.value_and_grad(w, X[:2], Y[:2])                     # traced here, on the driver
    before = client.run(_core._programs_loaded)
    for step in range(5):
        _, (g, _, _) = agd.value_and_grad(client, fit, w, Xd, Yd)
        w = w - 0.1 * g
    after = client.run(_core._programs_loaded)
    loads = [after[k] - before.get(k, 0) for k in after]
    assert max(loads) == 1 and sum(loads) >= 1      # once per worker process that ran a task, not per step
    assert agd.send(client, fit)[1] is agd.send(client, fit)[1]


def test_nan_rows_are_values_not_errors(client, data):
    X, Y, Xd, Yd = data
    Y2 = Y.copy()
    Y2[5] = np.nan
    fit = ag.compile(loss).vmap(in_axes=(None, None, 0, 0))
    value, (g, gb, _, _) = agd.value_and_grad(client, fit, np.ones(3), 0.0, Xd, da.from_array(Y2, chunks=700))
    assert np.isnan(value) and np.isnan(gb) and np.all(np.isnan(g))


def test_bad_partitions_and_arguments_raise_clearly(client, data):
    X, Y, Xd, Yd = data
    fit = ag.compile(loss).vmap(in_axes=(None, None, 0, 0))
    w = np.ones(3)
    # a partition whose rows are not what the array promised: found on the worker
    lie = dask.delayed(lambda: np.ones((700, 2)))()
    parts = [da.from_delayed(lie if k == 1 else dask.delayed(X[700 * k:700 * k + 700]), shape=(700, 3),
                             dtype=float) for k in range(4)]
    bad = da.concatenate(parts + [Xd[2800:]])
    with pytest.raises(ValueError, match=r"partition 1 \(rows 700 to 1399\) of argument 2 has shape \(700, 2\)"):
        agd.value_and_grad(client, fit, w, 0.0, bad, Yd)
    strings = dask.delayed(lambda: np.array(["a"] * 700, dtype=object))()
    text = da.concatenate([da.from_delayed(strings, shape=(700,), dtype=float), Yd[700:]])
    with pytest.raises(TypeError, match="partition 0 .* dtype object"):
        agd.value_and_grad(client, fit, w, 0.0, Xd, text)
    with pytest.raises(TypeError, match="real numbers"):
        agd.value_and_grad(client, fit, w, 0.0, Xd, Yd.astype(object))
    with pytest.raises(ValueError, match="3001 rows, an earlier one 3000"):
        agd.value_and_grad(client, fit, w, 0.0, Xd[:3000], Yd)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        agd.value_and_grad(client, fit, w, 0.0, Xd[Xd[:, 0] > 0], Yd)
    with pytest.raises(TypeError, match="vmap"):
        agd.value_and_grad(client, fit.compiled, w, 0.0, Xd, Yd)


def test_a_dying_worker_raises_on_the_driver_and_changes_nothing(client, data):
    X, Y, Xd, Yd = data
    Y2 = Y.copy()
    Y2[2000] = 777.0                                      # kills the worker that meets it
    Yd2 = da.from_array(Y2, chunks=700).persist()
    fit = ag.compile(dying_loss).vmap(in_axes=(None, 0, 0))
    ws = [ag.Variable(0.5), ag.Variable(-1.0), ag.Variable(2.0)]
    fit.value_and_grad(np.ones(3), X[:2], Y[:2])
    for v in ws:
        v.grad = 1.5
    with pytest.raises(RuntimeError, match="worker died .* nothing was applied"):
        agd.backward(client, fit, ws, Xd, Yd2)
    assert [v.data for v in ws] == [0.5, -1.0, 2.0] and [v.grad for v in ws] == [1.5] * 3
    client.wait_for_workers(2, timeout=60)              # the nanny restarts it; the cluster works on
    want = fit.value_and_grad(np.ones(3), X, Y, reduce="mean")
    got = agd.value_and_grad(client, fit, np.ones(3), Xd, Yd)
    assert close(got[0], want[0]) and close(got[1][0], want[1][0])


def test_training_from_an_untraced_function_follows_the_one_process_run(client):
    """The first call traces on the driver with the caller's leaf Variables as
    the inputs (not copies of their values), so training moves the model."""
    import random

    from autograd_c import nn, optim
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1200, 2))
    y = np.sign(X[:, 0] * X[:, 1] + 0.1)
    losses = []
    for where in ("here", "dask"):
        random.seed(3)
        model = nn.MLP(2, [6, 1])
        params = model.parameters()

        def sample_loss(params, x, yi):
            return (1 - yi * model(x)).relu() + 1e-4 * ag.dot(params, params)

        batch = ag.compile(sample_loss).vmap(in_axes=(None, 0, 0))
        opt = optim.SGD(params, lr=0.5)
        Xd, yd = da.from_array(X, chunks=(400, 2)).persist(), da.from_array(y, chunks=400).persist()
        run = []
        for _ in range(4):
            opt.zero_grad()
            run.append(batch.backward(params, X, y, reduce="mean") if where == "here"
                       else agd.backward(client, batch, params, Xd, yd))
            opt.step()
        losses.append(run)
    assert losses[0][-1] < losses[0][0] - 0.01
    assert close(losses[1], losses[0])
