"""Forward recording: run each workload's Python code on the peer's type
(plain floats: the same code without derivatives, the floor)."""
import time

import pytest

import workloads as W


@pytest.mark.parametrize("name", W.WORKLOADS)
@pytest.mark.parametrize("peer", [p for p in W.PEERS if W.PEERS[p].cls.records])
def test_forward(benchmark, bench, case, peer, name):
    benchmark.group = f"forward {name}"
    benchmark.extra_info["nodes"] = case.w.nodes

    def setup():
        case.release()
        case.leaves()

    t0 = time.perf_counter()
    setup()
    case.forward()                                     # warm-up, and the round count
    rounds = bench.rounds_for(time.perf_counter() - t0)
    benchmark.pedantic(case.forward, setup=setup, rounds=rounds)
    want = bench.reference(case.w)[0]
    assert W.agree((case.output(), []), (want, [])) is None, (case.output(), want)
    benchmark.extra_info["ns_per_node"] = benchmark.stats.stats.min / case.w.nodes * 1e9
