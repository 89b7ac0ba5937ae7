"""One machine, many processes (issue 12): a compiled per-sample loss sent to a
ProcessPoolExecutor (pickled in autograd_c's format), the batch split between
two worker processes, gives the one-process summed gradient to 1e-12."""
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import autograd_c as ag
from autograd_c import _core, nn

random.seed(7)
MODEL = nn.MLP(3, [8, 8, 1])
PARAMS = MODEL.parameters()


class Softsign(ag.Function):
    """A custom Function in the loss: it travels by reference to its class."""

    def forward(self, x):
        return x / (1.0 + abs(x))

    def backward(self, gy):
        (x,) = self.inputs
        return gy / (1.0 + abs(x)) ** 2


@ag.compile
def sample_loss(params, x, y):
    score = MODEL(x)
    margin = Softsign()(1 - y * score)
    return margin ** 2 + 1e-4 * ag.dot(params, params)


def _half(job):
    """In a worker process: the summed loss and gradient over its rows."""
    fit, params, X, Y = job
    value, (g, _, _) = fit.value_and_grad(params, X, Y, reduce="sum")
    return value, g, _core._programs_loaded()


def test_split_batch_across_two_processes_matches_one_process():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4001, 3))
    Y = np.sign(rng.normal(size=4001))
    p = np.array([v.data for v in PARAMS])
    fit = sample_loss.vmap(in_axes=(None, 0, 0))
    want_value, (want, _, _) = fit.value_and_grad(p, X, Y, reduce="sum")
    jobs = [(fit, p, X[:1500], Y[:1500]), (fit, p, X[1500:], Y[1500:])]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_half, jobs))
    value = results[0][0] + results[1][0]
    grad = results[0][1] + results[1][1]
    assert all(r[2] >= 1 for r in results)          # the workers loaded the program from bytes
    assert abs(value - want_value) <= 1e-12 * abs(want_value)
    assert np.max(np.abs(grad - want)) <= 1e-12 * np.max(np.abs(want))
    assert np.all(np.abs(grad - want) <= 1e-12 * (np.abs(want) + 1e-3 * np.max(np.abs(want))))
