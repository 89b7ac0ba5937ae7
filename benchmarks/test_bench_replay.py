"""Replay: value and gradient at new inputs from one recording, with no
Python per node: autograd_c's compiled functions (``ag.compile``), CasADi's
Function (``Function.map`` with JIT on the batches), JAX's jitted call
(``jit(vmap(...))`` on the batches).  The first call (tracing, compiling) is
in ``extra_info``; every answer is checked against autograd_c's recording,
at the recorded inputs and at moved ones, before and after timing.

    pytest benchmarks/test_bench_replay.py --benchmark-only
    pytest benchmarks/test_bench_replay.py --benchmark-only -k batch --bench-full   # 1,000 and 100,000 rows
"""
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


@pytest.mark.parametrize("name", [n for n in W.WORKLOADS if n.startswith("batch")])
@pytest.mark.parametrize("peer", ["autograd_c_replay"])
def test_replay_on_two_threads(benchmark, bench, case, peer, name):
    """The batches on 2 threads (elapsed time: pytest-benchmark's clock)."""
    benchmark.group = f"replay {name}"
    benchmark.extra_info["nodes"] = case.w.nodes
    case.compile()
    raw = benchmark(case.threaded)
    bench.check(case.replay_result(raw), bench.reference(case.w.moved()))
    benchmark.extra_info["ns_per_node"] = benchmark.stats.stats.min / case.w.nodes * 1e9
