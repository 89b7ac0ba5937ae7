"""Replay: value and gradient at new inputs from an already recorded graph,
with no Python per node (CasADi's Function, JAX's jitted call).  autograd_c's
own record-once/replay comes with a later issue."""
import time

import pytest

import workloads as W


@pytest.mark.parametrize("name", W.WORKLOADS)
@pytest.mark.parametrize("peer", [p for p in W.PEERS if W.PEERS[p].cls.replays])
def test_replay(benchmark, bench, case, peer, name):
    benchmark.group = f"replay {name}"
    benchmark.extra_info["nodes"] = case.w.nodes
    case.leaves()
    t0 = time.perf_counter()
    if case.records:
        case.forward()
        case.backward()
    else:
        case.compile()
    benchmark.extra_info["record_or_compile_s"] = time.perf_counter() - t0
    bench.check(case.result(), bench.reference(case.w))
    raw = benchmark(case.replay)
    bench.check(case.replay_result(raw), bench.reference(case.w.moved()))
    bench.check(case.replay_result(case.replay(moved=False)), bench.reference(case.w))
    benchmark.extra_info["ns_per_node"] = benchmark.stats.stats.min / case.w.nodes * 1e9
