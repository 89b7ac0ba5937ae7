"""pytest-benchmark suites for autograd_c and its peers.

    pytest benchmarks/ --benchmark-only                  # small sizes, a couple of minutes
    pytest benchmarks/ --benchmark-only --bench-full     # compare.py's full sizes
    pytest benchmarks/ --benchmark-only -k autograd_c    # one peer
    pytest benchmarks/ --benchmark-only --benchmark-save=NAME   # then --benchmark-compare

Not part of the normal test run: the project's pytest configuration has
testpaths = ["tests"], so these files are collected only when benchmarks/ is
named on the command line.  Workloads and peers come from workloads.py (the
same code as compare.py); a peer that is not installed is skipped.  Every
benchmark also checks its answer against autograd_c (1e-9 relative), so a
fast wrong peer cannot pass.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:            # workloads.py, by this file's directory (never the repository root)
    sys.path.insert(0, HERE)
import workloads as W  # noqa: E402

BENCH_SIZES = {"chain": 10_000, "wide": 10_000, "mlp": 100, "batch_small": 1_000, "batch_large": 10_000}


def pytest_addoption(parser):
    parser.addoption("--bench-full", action="store_true",
                     help="benchmarks/: use compare.py's full workload sizes")


def workload_for(peer, name, full):
    if full:
        return W.make_workload(name, quick=False, peer=peer)
    size = BENCH_SIZES[name]
    if peer in W.PEER_SIZES and name in W.PEER_SIZES[peer]:
        size = min(size, W.PEER_SIZES[peer][name][1])
    return W.make_workload(name, size)


_subnormals = {}


def check_subnormals(w):
    """Fails the benchmark if the workload's graph holds subnormal numbers
    (they would time the CPU's slow path, not the peer); cached per size."""
    key = (w.name, w.size)
    if key not in _subnormals:
        _subnormals[key] = W.subnormals(w)
    assert _subnormals[key] is None, _subnormals[key]


def make_case(peer, name, full):
    """The peer's Case for the workload, or a skip when the peer is not
    installed or does not run this workload."""
    info = W.PEERS[peer]
    if not info.runs(name):
        pytest.skip(f"{peer} runs {', '.join(info.workloads)} only")
    if not info.available():
        pytest.skip(f"{peer} is not installed")
    w = workload_for(peer, name, full)
    check_subnormals(w)
    return info.case(w)


_references = {}


def reference(w):
    """autograd_c's (value, checked gradients) on workload w, cached."""
    key = (w.name, w.size, getattr(w, "x0", None), tuple(w.params) if w.kind in ("mlp", "batch") else None,
           w.A[0] if w.name == "wide" else None)
    if key not in _references:
        ac = W.PEERS["autograd_c"].case(w)
        ac.leaves()
        ac.forward()
        ac.backward()
        _references[key] = ac.result()
        ac.release()
    return _references[key]


def rounds_for(seconds, budget=1.0, low=2, high=10):
    """Rounds for pedantic(): about ``budget`` seconds, within [low, high]."""
    return max(low, min(high, int(budget / max(seconds, 1e-9))))


def check(got, want):
    wrong = W.agree(got, want)
    assert wrong is None, wrong


@pytest.fixture(scope="session")
def bench():
    """The helpers the suites share, as one namespace."""
    class Bench:
        pass
    b = Bench()
    b.W, b.reference, b.rounds_for, b.check = W, reference, rounds_for, check
    return b


@pytest.fixture
def case(request, peer, name):
    """The (peer, name) Case; skipped when the peer is not installed."""
    return make_case(peer, name, request.config.getoption("--bench-full"))
