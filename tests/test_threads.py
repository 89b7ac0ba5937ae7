"""Threads: one tape per thread, shared leaves, thread-local modes.

A recorded Variable belongs to the thread that recorded it: using it in an
op or backward() from another thread raises RuntimeError naming both
threads, while reading its value works.  Leaves may be shared: each thread
records its own entry for them, and gradients from every thread add up in
the leaf.  no_grad / set_grad_enabled / detect_anomaly are per thread.
Events make the interleavings deterministic.
"""
import math
import sys
import threading

import pytest

import autograd_c as ag
from autograd_c import _core

WAIT = 30  # seconds; a deadlock fails the test instead of hanging the suite


def run_threads(*targets, names=None):
    """Start one thread per target, join them all, re-raise the first error."""
    errors = []

    def wrap(fn):
        def target():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
        return target

    threads = [threading.Thread(target=wrap(fn), name=(names[i] if names else None))
               for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "thread did not finish (deadlock?)"
    if errors:
        raise errors[0]


def in_thread(fn, name=None):
    box = []
    run_threads(lambda: box.append(fn()), names=[name] if name else None)
    return box[0]


# ---------------------------------------------------------------------------
# a recorded Variable used from another thread
# ---------------------------------------------------------------------------

OPS_ON_FOREIGN = {
    "add": lambda y, x: y + 1.0,
    "radd": lambda y, x: 1.0 + y,
    "mul_leaf": lambda y, x: x * y,
    "sub": lambda y, x: y - x,
    "rtruediv": lambda y, x: 2.0 / y,
    "pow": lambda y, x: y ** 2,
    "rpow": lambda y, x: 2.0 ** y,
    "neg": lambda y, x: -y,
    "abs": lambda y, x: abs(y),
    "tanh_method": lambda y, x: y.tanh(),
    "sin_function": lambda y, x: ag.sin(y),
    "maximum": lambda y, x: ag.maximum(y, x),
    "sum": lambda y, x: ag.sum([x, y, 1.0]),
    "dot": lambda y, x: ag.dot([x, 2.0], [1.0, y]),
    "grad": lambda y, x: ag.grad(y, [x]),
    "zero_grad": lambda y, x: y.zero_grad(),
}


def test_recorded_variable_from_another_thread():
    x = ag.Variable(2.0)
    y = x * x + 1.0                     # recorded by the main thread
    main_name = threading.current_thread().name
    worker_name = "ag-worker"
    seen = {}

    def worker():
        # reading values works
        assert y.data == 5.0
        assert y.value == 5.0 and float(y) == 5.0 and y.item() == 5.0
        assert (y > 4.0) and not (y < 4.0)
        assert y.requires_grad and not y.is_leaf
        d = y.detach()
        assert (d * 2.0).data == 10.0
        # every op and every sweep raises, and records nothing here
        for name, op in OPS_ON_FOREIGN.items():
            with pytest.raises(RuntimeError, match="thread") as info:
                op(y, x)
            seen[name] = str(info.value)
        with pytest.raises(RuntimeError, match="thread") as info:
            y.backward()
        seen["backward"] = str(info.value)
        assert ag.tape_stats()["nodes"] == 0
        assert x.grad == 0.0
        # the shared leaf itself works here
        z = x * 3.0 + y.detach()
        assert z.data == 11.0
        z.backward()
        assert x.grad == 3.0

    run_threads(worker, names=[worker_name])
    # the message names both threads
    for name, msg in seen.items():
        assert repr(main_name) in msg and repr(worker_name) in msg, (name, msg)
    # the graph is intact in its own thread, and the worker's gradient stayed in x
    assert y.data == 5.0
    y.backward()
    assert x.grad == 3.0 + 4.0


def test_variable_from_finished_thread():
    x = ag.Variable(3.0)
    rc = sys.getrefcount(x)
    y = in_thread(lambda: ag.exp(x * 0.0) * x, name="finished-worker")
    assert y.data == 3.0
    with pytest.raises(RuntimeError, match="finished-worker"):
        y.backward()
    with pytest.raises(RuntimeError, match="finished-worker"):
        y * 2.0
    # the finished thread's tape lives on for y, holding x ...
    assert sys.getrefcount(x) == rc + 1
    del y
    # ... and is gone with it
    assert sys.getrefcount(x) == rc
    y = x * 2.0                      # x works normally here
    y.backward()
    assert x.grad == 2.0


def test_foreign_variable_in_no_grad_is_a_value():
    """Under no_grad nothing is recorded, so values of another thread's
    Variables may be used (the result is a constant)."""
    x = ag.Variable(1.5)
    y = x * 2.0

    def worker():
        with ag.no_grad():
            r = y * 2.0
        assert r.data == 6.0 and not r.requires_grad

    run_threads(worker)


# ---------------------------------------------------------------------------
# shared leaves
# ---------------------------------------------------------------------------

def test_leaves_from_main_used_by_other_threads():
    a = ag.Variable(1.5)
    b = ag.Variable(-2.0)
    results = {}

    def worker(k):
        def body():
            y = a * b * k + ag.sin(a) * 0.0
            results[k] = (y.data, ag.grad(y, [a, b]))
        return body

    run_threads(*(worker(k) for k in (1, 2, 3)))
    for k in (1, 2, 3):
        assert results[k] == (1.5 * -2.0 * k, [-2.0 * k, 1.5 * k])
    assert a.grad == 0.0 and b.grad == 0.0     # grad() touches no .grad


def test_leaf_grad_pending_in_another_threads_tape():
    """backward() in a worker that is still alive leaves the gradient in the
    worker's tape entry for the leaf; reading and zeroing .grad from the
    main thread must see it."""
    x = ag.Variable(1.0)
    ready, go, done = threading.Event(), threading.Event(), threading.Event()

    def worker():
        y = x * 5.0
        y.backward()
        ready.set()
        assert go.wait(WAIT)
        y.backward()
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert ready.wait(WAIT)
        assert x.grad == 5.0
        x.grad = 0.0
        assert x.grad == 0.0
        go.set()
        assert done.wait(WAIT)
        assert x.grad == 5.0
    finally:
        go.set()
        t.join(WAIT)
    assert x.grad == 5.0


def test_zero_grad_zeroes_leaf_shared_with_another_thread():
    x = ag.Variable(1.0)
    z = x * 2.0                         # main thread's entry for x
    ready, go = threading.Event(), threading.Event()

    def worker():
        y = x * 5.0                     # the worker's entry becomes x's current one
        y.backward()
        ready.set()
        assert go.wait(WAIT)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert ready.wait(WAIT)
        assert x.grad == 5.0
        z.zero_grad()                   # "zeros leaves reachable from z": x is one
        assert x.grad == 0.0
    finally:
        go.set()
        t.join(WAIT)


def test_leaf_assigned_in_another_thread_invalidates_graph():
    x = ag.Variable(2.0)
    recorded, assigned = threading.Event(), threading.Event()
    seen = []

    def worker():
        y = x * x
        recorded.set()
        assert assigned.wait(WAIT)
        with pytest.raises(RuntimeError):
            y.backward()
        seen.append(y.data)
        y2 = x * x                      # recording again uses the new value
        y2.backward()
        seen.append(x.grad)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert recorded.wait(WAIT)
        x.data = 3.0
        assigned.set()
    finally:
        assigned.set()
        t.join(WAIT)
    assert seen == [4.0, 6.0]


# ---------------------------------------------------------------------------
# four threads at once
# ---------------------------------------------------------------------------

N_THREADS = 4
N_ITER = 5_000


def poly(a, b, w):
    """f = a^2 w + 3ab + b w^2 + w^3 (integer-valued at integer inputs)."""
    return a * a * w + 3.0 * a * b + b * w * w + w ** 3


def poly_value(a, b, w):
    return a * a * w + 3 * a * b + b * w * w + w ** 3


def poly_grads(a, b, w):
    return 2 * a * w + 3 * b, 3 * a + w * w, a * a + 2 * b * w + 3 * w * w


def test_four_threads_build_and_backprop_concurrently():
    a = ag.Variable(2.0, name="a")      # shared leaves, made by the main thread
    b = ag.Variable(-3.0, name="b")
    rc_a, rc_b = sys.getrefcount(a), sys.getrefcount(b)
    barrier = threading.Barrier(N_THREADS)
    totals = {}
    order = []                          # which thread ran each iteration, in time order
    old_switch = sys.getswitchinterval()
    old_floor = _core._set_compaction_floor(256)   # every thread's tape compacts
    sys.setswitchinterval(1e-5)                      # and threads switch often

    def worker(tid):
        def body():
            w = ag.Variable(0.0)       # each thread's own leaf
            u = ag.Variable(0.25 * tid)
            sum_a = sum_b = 0.0
            mismatches = []
            barrier.wait(WAIT)
            for it in range(N_ITER):
                wv = float(it % 7 + tid - 3)
                w.data = wv
                f = poly(a, b, w) + ag.tanh(u * w)       # tanh term: own leaves only
                f.backward()
                ga, gb, gw = poly_grads(2.0, -3.0, wv)
                t = math.tanh(0.25 * tid * wv)
                expect_w = gw + 0.25 * tid * (1 - t * t)
                if (f.data != pytest.approx(poly_value(2.0, -3.0, wv) + t, rel=1e-15, abs=1e-15)
                        or w.grad != pytest.approx(expect_w, rel=1e-14, abs=1e-15)
                        or u.grad != pytest.approx(wv * (1 - t * t), rel=1e-14, abs=1e-15)):
                    mismatches.append((it, f.data, w.grad, u.grad))
                w.grad = 0.0
                u.grad = 0.0
                sum_a += ga
                sum_b += gb
                order.append(tid)             # f stays alive into the next iteration:
                                              # the tape never resets, it compacts
            stats = ag.tape_stats()
            totals[tid] = (sum_a, sum_b, stats["compactions"], mismatches)
            del f
        return body

    try:
        run_threads(*(worker(tid) for tid in range(N_THREADS)))
    finally:
        sys.setswitchinterval(old_switch)
        _core._set_compaction_floor(old_floor)

    switches = sum(1 for p, q in zip(order, order[1:]) if p != q)
    assert switches >= 20, f"threads barely interleaved ({switches} switches)"
    for tid in range(N_THREADS):
        sum_a, sum_b, compactions, mismatches = totals[tid]
        assert mismatches == [], f"thread {tid}: wrong values/gradients {mismatches[:3]}"
        assert compactions > 0, f"thread {tid}: its tape never compacted"
    # shared leaves hold every thread's contributions (integers: exact in any order)
    assert a.grad == sum(t[0] for t in totals.values())
    assert b.grad == sum(t[1] for t in totals.values())
    assert a.grad != 0.0 and b.grad != 0.0
    # the threads' tapes died with them, releasing the shared leaves
    assert sys.getrefcount(a) == rc_a
    assert sys.getrefcount(b) == rc_b


def test_each_thread_has_its_own_tape_stats():
    main_before = ag.tape_stats()
    built1, built2, checked = threading.Event(), threading.Event(), threading.Event()
    report = {}

    def first():
        x = ag.Variable(1.0)
        assert ag.tape_stats()["nodes"] == 0
        y = x
        for _ in range(1_000):
            y = y * 1.0001
        report["t1_built"] = ag.tape_stats()
        built1.set()
        assert built2.wait(WAIT)
        report["t1_after_t2"] = ag.tape_stats()
        y.backward()
        report["t1_grad"] = x.grad
        checked.set()

    def second():
        assert built1.wait(WAIT)
        report["t2_fresh"] = ag.tape_stats()
        x = ag.Variable(2.0)
        ys = [ag.dot([x, x], [3.0, 4.0]) for _ in range(10)]
        report["t2_built"] = ag.tape_stats()
        built2.set()
        assert checked.wait(WAIT)
        report["t2_end"] = ag.tape_stats()
        del ys

    run_threads(first, second)
    assert report["t1_built"]["nodes"] == 1_000        # leaves are not nodes
    assert report["t1_built"]["live"] == 1
    assert report["t2_fresh"]["nodes"] == 0 and report["t2_fresh"]["live"] == 0
    assert report["t2_built"]["nodes"] == 10 and report["t2_built"]["live"] == 10
    assert report["t2_built"]["args"] == 10 * 5      # count + 4 refs per dot
    assert report["t1_after_t2"] == report["t1_built"]
    assert report["t2_end"] == report["t2_built"]
    assert report["t1_grad"] == pytest.approx(1.0001 ** 1_000, rel=1e-12)
    after = ag.tape_stats()
    for key in ("nodes", "live", "leaves", "compactions"):
        assert after[key] == main_before[key]


# ---------------------------------------------------------------------------
# thread-local modes
# ---------------------------------------------------------------------------

def test_no_grad_is_thread_local():
    x = ag.Variable(2.0)
    entered, checked, main_checked = threading.Event(), threading.Event(), threading.Event()
    report = {}

    def in_no_grad():
        with ag.no_grad():
            entered.set()
            assert checked.wait(WAIT) and main_checked.wait(WAIT)
            report["t1_enabled"] = ag.is_grad_enabled()
            r = x * 3.0
            report["t1_result"] = (r.data, r.requires_grad)
        report["t1_enabled_after"] = ag.is_grad_enabled()

    def recording():
        assert entered.wait(WAIT)            # the other thread is inside no_grad now
        report["t2_enabled"] = ag.is_grad_enabled()
        r = x * 3.0
        report["t2_result"] = (r.data, r.requires_grad, r.is_leaf)
        report["t2_grad"] = ag.grad(r, [x])
        checked.set()

    threads = [threading.Thread(target=f) for f in (in_no_grad, recording)]
    for t in threads:
        t.start()
    try:
        assert entered.wait(WAIT)            # and the main thread still records
        assert ag.is_grad_enabled()
        assert (x * 3.0).requires_grad
    finally:
        main_checked.set()
        for t in threads:
            t.join(WAIT)
    assert ag.is_grad_enabled()
    assert report["t1_enabled"] is False
    assert report["t1_result"] == (6.0, False)
    assert report["t1_enabled_after"] is True
    assert report["t2_enabled"] is True
    assert report["t2_result"] == (6.0, True, False)
    assert report["t2_grad"] == [3.0]


def test_main_thread_no_grad_does_not_reach_new_threads():
    x = ag.Variable(2.0)
    report = {}

    def worker():
        report["enabled"] = ag.is_grad_enabled()
        report["requires_grad"] = (x * x).requires_grad
        ag.set_grad_enabled(False)          # and a worker's switch stays in the worker
        report["off"] = (x * x).requires_grad

    with ag.no_grad():
        run_threads(worker)
        assert not ag.is_grad_enabled()
        assert not (x * x).requires_grad
    assert ag.is_grad_enabled()
    assert (x * x).requires_grad
    assert report == {"enabled": True, "requires_grad": True, "off": False}


def test_set_grad_enabled_decorator_is_thread_local():
    x = ag.Variable(2.0)
    inside, probed = threading.Event(), threading.Event()
    report = {}

    @ag.set_grad_enabled(False)
    def decorated():
        inside.set()
        assert probed.wait(WAIT)
        return (x * 2.0).requires_grad

    def other():
        assert inside.wait(WAIT)
        report["other"] = (ag.is_grad_enabled(), (x * 2.0).requires_grad)
        probed.set()

    def first():
        report["decorated"] = decorated()
        report["after"] = ag.is_grad_enabled()

    run_threads(first, other)
    assert report == {"decorated": False, "other": (True, True), "after": True}


def test_detect_anomaly_is_thread_local():
    x = ag.Variable(-1.0)
    inside, probed = threading.Event(), threading.Event()
    report = {}

    def anomalous():
        with ag.detect_anomaly():
            inside.set()
            assert probed.wait(WAIT)
            with pytest.raises(FloatingPointError, match="log"):
                ag.log(x)
        report["raised"] = True

    def plain():
        assert inside.wait(WAIT)
        r = ag.log(x)                        # nan, no exception in this thread
        report["nan"] = r.data != r.data
        probed.set()

    run_threads(anomalous, plain)
    assert report == {"raised": True, "nan": True}
