"""A dead graph's memory kept for the next recording, and compaction passes skipped (issue 13).

Split from test_memory.py.  When a large graph dies its arrays are kept a
moment (tape_retain.c) so the next recording faults no fresh pages in, and
given back to the OS when no graph follows; a compaction pass runs only when
something may have become unreachable (Tape.maybe_garbage).  Bodies run in
fresh threads (each has its own tape).
"""
import os
import subprocess
import sys
import time

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread
from test_memory import small_floor, stats  # noqa: F401 - small_floor is a fixture


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return None


def _minor_faults():
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except OSError:
        return None


def _record_chain(x, n):
    y = x
    for _ in range(n):
        y = y * 0.999999 + x
    return y


CAN_RETAIN = sys.platform.startswith("linux")


@pytest.mark.skipif(bool(os.environ.get("AUTOGRAD_C_SANITIZER")),
                    reason="RSS is not the program's own under a sanitizer")
def test_large_graph_memory_returned_after_deletion():
    """When a large graph dies its arrays are kept for the next recording
    (stats "retained", not "bytes"), and about a second later the reaper
    thread gives their memory back to the OS (issue 13)."""
    def body():
        x = ag.Variable(0.5)
        base = stats()["bytes"]
        rss0 = _rss_bytes()
        y = _record_chain(x, 1_100_000)  # 2.2M nodes
        s = stats()
        assert s["nodes"] == 2_200_000
        assert s["bytes"] >= 16 * 2_200_000
        y.backward()
        assert x.grad == pytest.approx((1 - 0.999999 ** 1_100_001) / (1 - 0.999999), rel=1e-7)
        peak_bytes = stats()["bytes"]    # the adjoint buffer included
        rss_peak = _rss_bytes()
        del y
        s = stats()
        assert s["nodes"] == 0
        assert s["bytes"] <= max(base, 1 << 20), f"tape still holds {s['bytes']} bytes"
        if CAN_RETAIN:
            assert s["retained"] >= 24 * 2_200_000      # nodes and adjoints, for the next recording
        deadline = time.monotonic() + 10.0
        while stats()["retained"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats()["retained"] == 0
        rss1 = _rss_bytes()
        if rss0 is not None:
            # most of the tape's memory went back to the OS
            assert rss_peak - rss1 >= peak_bytes // 2, (rss0, rss_peak, rss1, peak_bytes)
        # and a loop afterwards starts small again
        for _ in range(10):
            y = x * 2.0 + 1.0
        assert stats()["bytes"] < 1 << 20

    in_fresh_thread(body)


@pytest.mark.skipif(not CAN_RETAIN, reason="a dead graph's memory is kept only on Linux")
def test_next_recording_reuses_the_dead_graphs_memory():
    """Recording the same large graph right after the first died faults
    almost no fresh page in: the arrays and adjoint buffer were kept."""
    def body():
        x = ag.Variable(0.5)
        y = _record_chain(x, 1_500_000)  # 3M nodes: 48 MB of nodes, 24 MB or more of adjoints
        y.backward()
        first = x.grad
        del y
        kept = stats()["retained"]
        assert kept >= 24 * 3_000_000
        x.grad = 0.0
        f0 = _minor_faults()
        y = _record_chain(x, 1_500_000)
        y.backward()
        faults = _minor_faults() - f0
        assert x.grad == first
        assert stats()["retained"] < kept // 4       # taken back: what this graph did not need
        if not os.environ.get("AUTOGRAD_C_SANITIZER"):     # its allocator's faults count too
            assert faults < 24 * 3_000_000 // 4096 // 10, f"{faults} page faults"
        return True

    previous = _core._set_retain_seconds(60.0)     # however slow the machine
    try:
        assert in_fresh_thread(body)
    finally:
        _core._set_retain_seconds(previous)


def test_memory_a_small_next_graph_does_not_reach_goes_back():
    """A small graph recorded right after a large one died, and kept alive,
    takes back only what it uses: the rest of the dead graph's memory goes
    back to the OS when the deadline passes."""
    def body():
        x = ag.Variable(0.5)
        y = _record_chain(x, 1_500_000)
        y.backward()
        big = stats()["bytes"]
        del y
        small = _record_chain(x, 10)     # kept alive from here on
        rss_kept = _rss_bytes()
        deadline = time.monotonic() + 10.0
        while stats()["retained"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats()["retained"] == 0
        assert stats()["bytes"] < 1 << 20
        if rss_kept is not None and CAN_RETAIN:
            assert rss_kept - _rss_bytes() >= big // 2, (rss_kept, _rss_bytes(), big)
        x.grad = 0.0
        small.backward()
        return x.grad

    previous = _core._set_retain_seconds(0.2)
    try:
        grad = in_fresh_thread(body)
    finally:
        _core._set_retain_seconds(previous)
    assert grad == pytest.approx((1 - 0.999999 ** 11) / (1 - 0.999999), rel=1e-9)


def test_recording_after_the_memory_went_back():
    """A tape whose kept arrays were given back records again from small
    arrays, with the same values and gradients."""
    def body():
        x = ag.Variable(0.5)
        y = _record_chain(x, 600_000)
        y.backward()
        first = (y.data, x.grad)
        del y
        _core._release_retained()        # as if the second had passed
        assert stats()["retained"] == 0
        x.grad = 0.0
        y = _record_chain(x, 600_000)
        assert stats()["capacity"] <= 2 * 1_200_000
        y.backward()
        assert (y.data, x.grad) == first
        z = _record_chain(x, 10)         # and a small graph beside it
        z.backward()
        return True

    assert in_fresh_thread(body)


def test_tapes_of_finished_threads_leave_nothing_for_the_reaper():
    """A thread whose tape kept a dead graph's arrays ends: the tape takes
    them back from the reaper before freeing them (nothing may be given
    back twice, or after it was freed)."""
    previous = _core._set_retain_seconds(0.05)
    try:
        for _ in range(4):
            in_fresh_thread(lambda: _record_chain(ag.Variable(0.5), 600_000).backward())
        time.sleep(0.3)                  # the reaper wakes with nothing (alive) to release
        y = _record_chain(ag.Variable(0.5), 600_000)
        y.backward()
    finally:
        _core._set_retain_seconds(previous)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gives_back_what_its_parent_kept():
    """fork() while a dead graph's arrays are kept: the child releases them
    (it has no reaper thread) and records on its own."""
    code = r"""
import os, sys, time
import autograd_c as ag
from autograd_c import _core
_core._set_retain_seconds(60.0)
x = ag.Variable(0.5)
y = x
for _ in range(600_000):
    y = y * 0.999999 + x
y.backward()
del y
assert ag.tape_stats()["retained"] > 0
pid = os.fork()
if pid == 0:
    ok = ag.tape_stats()["retained"] == 0
    z = x * 2.0
    for _ in range(600_000):
        z = z * 0.999999 + x
    z.backward()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert ag.tape_stats()["retained"] > 0
print("ok")
"""
    from helpers import run_python                 # its time limit stretches under a sanitizer
    rc, out, err = run_python(code, timeout=120)
    assert rc == 0 and out.strip() == "ok", out + err


# ---------------------------------------------------------------------------
# compaction skips passes that cannot free anything
# ---------------------------------------------------------------------------

def _chain(x, y, n):
    for _ in range(n):
        y = y * 0.999999 + x
    return y


def test_a_growing_graph_is_never_walked(small_floor):
    """A chain keeps every node reachable: no temporary dies unused, so the
    budget doubles without a marking pass (issue 13), and the gradient is
    that of a tape that never reached its budget."""
    def body():
        x = ag.Variable(0.5)
        y = _chain(x, x, 100_000)                   # 200,000 nodes, 20x the floor
        s = stats()
        assert s["nodes"] == 200_000
        assert s["compaction_passes"] == 0 and s["compactions_skipped"] >= 4
        y.backward()
        return x.grad

    grad = in_fresh_thread(body)
    expected = (1 - 0.999999 ** 100_001) / (1 - 0.999999)
    assert grad == pytest.approx(expected, rel=1e-9)


def test_a_dead_temporary_makes_the_next_pass_run(small_floor):
    """A Variable that dies unused leaves its node unreachable: the next
    time the budget is reached, a pass runs and drops it."""
    def body():
        x = ag.Variable(0.5)
        y = _chain(x, x, 10_000)
        dead = y * 3.0 + 1.0                        # two nodes, the last a sink ...
        del dead                                    # ... which dies unused
        passes = stats()["compaction_passes"]
        y = _chain(x, y, 20_000)
        s = stats()
        assert s["compaction_passes"] > passes
        assert s["nodes"] == 2 * 30_000             # the two dead nodes are gone
        y.backward()
        return x.grad

    expected = (1 - 0.999999 ** 30_001) / (1 - 0.999999)
    assert in_fresh_thread(body) == pytest.approx(expected, rel=1e-9)


def test_a_node_object_dying_unused_makes_the_next_pass_run(small_floor):
    """A node object made by _prev dies unused: its node may be a sink
    (here it is not), so the next pass runs rather than being skipped."""
    def body():
        x = ag.Variable(0.5)
        y = _chain(x, x, 10_000)
        parents = list(y._prev)                     # node objects for y's operands
        del parents
        passes = stats()["compaction_passes"]
        y = _chain(x, y, 20_000)
        assert stats()["compaction_passes"] > passes
        assert stats()["nodes"] == 60_000           # nothing was garbage
        y.backward()
        return x.grad

    expected = (1 - 0.999999 ** 30_001) / (1 - 0.999999)
    assert in_fresh_thread(body) == pytest.approx(expected, rel=1e-9)


def test_a_layer_failing_midway_makes_the_next_pass_run(small_floor):
    """detect_anomaly stops a layer after some of its nodes are on the tape,
    with no Variable for them: the next pass must run and drop them."""
    def body():
        x = ag.Variable(0.5)
        w = [[ag.Variable(1.0)], [ag.Variable(float("inf"))]]
        b = [ag.Variable(0.0), ag.Variable(0.0)]
        with ag.detect_anomaly():
            with pytest.raises(FloatingPointError):
                _core._dense(w, b, [x], None)       # the second neuron's value is inf
        orphans = stats()["nodes"]
        assert orphans >= 1
        y = _chain(x, x, 20_000)
        s = stats()
        assert s["compaction_passes"] >= 1
        assert s["nodes"] == 40_000                 # the layer's nodes are gone
        y.backward()
        return x.grad

    expected = (1 - 0.999999 ** 20_001) / (1 - 0.999999)
    assert in_fresh_thread(body) == pytest.approx(expected, rel=1e-9)
