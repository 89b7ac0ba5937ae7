"""One training step of micrograd's demo MLP: forward, backward and an SGD
update (lr 0.1) of all 337 parameters.  The parameters persist between
rounds, so the benchmark trains the model."""
import pytest

import workloads as W

STEPS = 2     # checked steps before timing


@pytest.fixture(scope="module")
def ac_losses(bench):
    """autograd_c's losses over the first STEPS steps: every peer must follow them."""
    ac = W.PEERS["autograd_c"].case(W.make_workload("mlp", 100))
    return [ac.step() for _ in range(STEPS)]


@pytest.mark.parametrize("name", ["mlp"])
@pytest.mark.parametrize("peer", [p for p in W.PEERS if W.PEERS[p].cls.trains])
def test_step(benchmark, bench, case, ac_losses, peer, name):
    benchmark.group = "training step mlp"
    benchmark.extra_info["nodes"] = case.w.nodes
    losses = [case.step() for _ in range(STEPS)]
    for got, want in zip(losses, ac_losses):
        assert W.agree((got, []), (want, [])) is None, (losses, ac_losses)
    assert losses[-1] < losses[0]                      # SGD on this loss makes progress
    benchmark.pedantic(case.step, rounds=bench.rounds_for(benchmark_time(case)))
    assert case.step() < losses[-1]


def benchmark_time(case):
    import time
    t0 = time.perf_counter()
    case.step()
    return time.perf_counter() - t0
