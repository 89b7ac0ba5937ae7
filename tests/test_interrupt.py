"""Issue 8: Ctrl-C during a long backward() must interrupt it.

A child interpreter builds a chain of N nodes (``functools.reduce`` over
``operator.pow`` with the exponent 1.0000001: the build runs in C at ~65 ns
a node, and each node's adjoint calls libm ``pow``, ~23 ns a node in the
sweep), tells the parent it is starting ``backward()``, and the parent sends
SIGINT 0.25 s later.  Expected after the fix:

* backward() (or ag.grad()) raises KeyboardInterrupt within 1 s of the signal,
* the leaf's gradient is exactly what it was before the call,
* the tape stays usable: the same backward() then completes with the right
  gradient, and a new graph works.

Before the fix of issue 8 the sweep ran to the end and the
KeyboardInterrupt came afterwards, with the gradient already changed.

Sizes: 3 * 10**7 nodes in the default run (build ~2 s, sweep ~0.7 s, 0.5 GB
of tape; ~4 s in all on an idle machine); 10**8 nodes, the size the issue
names, is marked slow and runs only with AUTOGRAD_C_HUGE=1 (build ~6.6 s,
sweep ~2.3 s, ~3 GB; ~12 s per test on an idle machine), since this
project's default run includes slow tests.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import autograd_c as ag

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ag.__file__)))

CHILD = r'''
import functools, itertools, json, operator, sys, time
import autograd_c as ag
N, HOW = int(sys.argv[1]), sys.argv[2]
C = 1.0000001
x = ag.Variable(0.5)
x.grad = 10.0
t0 = time.time()
y = functools.reduce(operator.pow, itertools.repeat(C, N), x)
build = time.time() - t0
res = {"build": build, "nodes": ag.tape_stats()["nodes"]}
print("GO", flush=True)
t1 = time.time()
try:
    if HOW == "backward":
        y.backward()
    else:
        res["grad_result"] = ag.grad(y, [x])
    res["outcome"] = "returned"
except KeyboardInterrupt:
    res["outcome"] = "KeyboardInterrupt"
res["raised_at"] = time.time()
res["sweep_until_raise"] = res["raised_at"] - t1
res["grad_after"] = x.grad
# the tape is usable: the same graph again, uninterrupted, and a new one
x.grad = 0.0
t2 = time.time()
y.backward()
res["full_sweep"] = time.time() - t2
res["grad_full"] = x.grad
v = ag.Variable(3.0)
res["fresh"] = ag.grad(v * v, [v])
print(json.dumps(res), flush=True)
'''


def interrupted_backward(n, how):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(n), how], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "GO", (line, proc.stderr.read()[-2000:])
        time.sleep(0.25)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    res["latency"] = res["raised_at"] - sent
    return res


def check(res, n):
    # the chain's derivative: prod of C * x_k**(C-1) along the chain
    assert res["nodes"] == n
    assert res["full_sweep"] > 0.5, (
        f"the sweep took {res['full_sweep']:.2f} s: too short to tell an interrupt from completion")
    assert res["outcome"] == "KeyboardInterrupt", res
    assert res["latency"] < 1.0, f"KeyboardInterrupt came {res['latency']:.2f} s after SIGINT"
    assert res["grad_after"] == 10.0, "an interrupted backward() changed the gradient"
    assert math.isfinite(res["grad_full"]) and res["grad_full"] > 0.0
    assert res["fresh"] == [6.0]


HUGE = pytest.mark.skipif(os.environ.get("AUTOGRAD_C_HUGE") != "1",
                          reason="10**8 nodes (~12 s, ~3 GB): set AUTOGRAD_C_HUGE=1")


def test_sigint_interrupts_backward():
    """3 * 10**7 nodes (see the module docstring for the timings)."""
    n = 30_000_000
    check(interrupted_backward(n, "backward"), n)


@pytest.mark.slow
@HUGE
@pytest.mark.parametrize("how", ["backward", "grad"])
def test_sigint_interrupts_backward_over_100_million_nodes(how):
    """10**8 nodes, as the issue asks: backward() and ag.grad()."""
    n = 100_000_000
    check(interrupted_backward(n, how), n)
