"""Backward: one reverse pass over the recorded workload (CasADi: its
symbolic gradient, Function and evaluation)."""
import time

import pytest

import workloads as W


@pytest.mark.parametrize("name", W.WORKLOADS)
@pytest.mark.parametrize("peer", [p for p in W.PEERS if W.PEERS[p].cls.records and p != "floats"])
def test_backward(benchmark, bench, case, peer, name):
    benchmark.group = f"backward {name}"
    benchmark.extra_info["nodes"] = case.w.nodes

    def setup():
        case.release()
        case.leaves()
        case.forward()

    t0 = time.perf_counter()
    setup()
    try:
        case.backward()
    except RecursionError:
        if peer != "micrograd":
            raise
        pytest.xfail(f"micrograd's recursive backward() raises RecursionError on a {case.w.nodes:,}-node "
                     f"{name} graph")
    rounds = bench.rounds_for(time.perf_counter() - t0)       # setup included: rounds cost both
    bench.check(case.result(), bench.reference(case.w))
    benchmark.pedantic(case.backward, setup=setup, rounds=rounds)
    bench.check(case.result(), bench.reference(case.w))
    benchmark.extra_info["ns_per_node"] = benchmark.stats.stats.min / case.w.nodes * 1e9
