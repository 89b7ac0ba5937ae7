"""Compiled functions pickle (issue 12): round trips give the same bits, the
Python function travels by reference, and no corrupted, truncated or
future payload loads (docs/replay.md, "The serialised format")."""
import math
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import _core

HEADER = struct.Struct("<8sHHIQ")


class Scaled(ag.Function):
    """A Function with state of its own: pickled by reference to its class, with its attributes."""

    def __init__(self, k):
        self.k = k

    def forward(self, x):
        return self.k * math.sin(x)

    def backward(self, gy):
        return gy * self.k * math.cos(self.inputs[0])


@ag.compile
def branchy(x, ws):
    if x > 0:
        return ag.tanh(ag.dot(ws, [x, x * x])) + x ** 2
    return Scaled(3.0)(x) * ws[0] - ag.exp(ws[1])


def plain(w, x, y):
    return (ag.dot(w, x) - y) ** 2


def reseal(body):
    """Header + body with a correct length and checksum (so the structural checks are what is tested)."""
    return HEADER.pack(b"\x89AGCPRG\n", 1, 0, zlib.crc32(body), len(body)) + body


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_traced_function_round_trip_is_bit_identical_on_every_trace():
    f = ag.compile(branchy._fn)
    f(0.5, [1.0, 2.0])
    f(-0.5, [1.0, 2.0])                         # second trace: the other branch, with a Function
    f(0.5, [1.0, 2.0, 3.0][:2])
    assert f.traces == 2
    g = roundtrip(f)
    assert g.traces == 2 and g.stats == f.stats
    for x in (0.7, -1.3, 0.0, -0.0, 1e300, float("nan")):
        for ws in ([1.0, 2.0], [-3.0, 0.25]):
            a, b = f.value_and_grad(x, ws), g.value_and_grad(x, ws)
            assert np.array_equal(a[0], b[0], equal_nan=True)
            assert a[1][0] == b[1][0] or (math.isnan(a[1][0]) and math.isnan(b[1][0]))
            assert np.array_equal(a[1][1], b[1][1], equal_nan=True)
    assert g.traces == 2                         # both branches came along: no retrace needed


def test_unpickled_function_retraces_through_its_module_reference():
    branchy(0.5, [1.0, 2.0])
    g = roundtrip(branchy)
    assert repr(g).startswith("<compiled branchy") and type(g._fn).__name__ == "_ByReference"
    n = g.traces
    assert g(-2.0, [1.0, 2.0]) == pytest.approx(3.0 * math.sin(-2.0) - math.exp(2.0))
    assert g.traces == n + 1                   # the other branch, traced with the imported function


def test_a_lambda_pickles_its_traces_only_and_then_raises_guard_error():
    f = ag.compile(lambda x: ag.sqrt(x) if x > 0 else -x)
    assert f(4.0) == 2.0
    g = roundtrip(f)
    assert g(9.0) == 3.0
    with pytest.raises(ag.GuardError, match="unpickled"):
        g(-1.0)


def test_vmap_and_compile_graph_round_trip():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=50)
    fit = ag.compile(plain).vmap(in_axes=(None, 0, 0), threads=2)
    w = np.array([0.5, -1.0, 2.0])
    want = fit.value_and_grad(w, X, Y, reduce="mean")
    got = roundtrip(fit)
    assert got.threads == 2 and got.in_axes == (None, 0, 0)
    have = got.value_and_grad(w, X, Y, reduce="mean")
    assert have[0] == want[0] and np.array_equal(have[1][0], want[1][0])

    x, v = ag.Variable(2.0), ag.Variable(3.0)
    with ag.tracing() as tr:
        y = ag.exp(x * v) / v if x > 1 else x
    h = ag.compile_graph([y, x * v], [x, v], guards=tr.guards)
    h2 = roundtrip(h)
    assert np.array_equal(h2.jacobian(0.5 + 1, 2.0)[0], h.jacobian(1.5, 2.0)[0])
    with pytest.raises(ag.GuardError):
        h2(0.5, 2.0)


def test_has_aux_and_function_state_survive():
    f = ag.compile(lambda x: (Scaled(2.5)(x) * x, x + 1), has_aux=True)
    want = f.value_and_grad(0.3)
    got = roundtrip(f).value_and_grad(0.3)
    assert got == want
    prog = f._last
    assert type(roundtrip(prog).functions[0]) is Scaled and roundtrip(prog).functions[0].k == 2.5


def test_opcodes_are_written_by_name_and_unknown_names_are_refused():
    f = ag.compile(lambda x: ag.tanh(x) * 2.0 + ag.exp(x))
    f(0.1)
    blob = _core._program_dump(f._last)
    assert b"TANH" in blob and b"EXP" in blob and b"MULC" in blob
    body = blob[HEADER.size:].replace(b"TANH", b"TANQ")
    with pytest.raises(ValueError, match="opcode this build does not know"):
        _core._program_load(reseal(body))


def test_header_errors_are_clear():
    f = ag.compile(lambda x: x * x)
    f(1.0)
    blob = _core._program_dump(f._last)
    assert _core._program_load(blob).n_inputs == 1
    newer = HEADER.pack(b"\x89AGCPRG\n", 2, 0, zlib.crc32(blob[24:]), len(blob) - 24) + blob[24:]
    with pytest.raises(ValueError, match="newer autograd_c"):
        _core._program_load(newer)
    with pytest.raises(ValueError, match="magic"):
        _core._program_load(b"\x89PNG\r\n\x1a\n" + blob[8:])
    with pytest.raises(ValueError, match="truncated"):
        _core._program_load(blob[:-1])
    with pytest.raises(ValueError, match="checksum"):
        _core._program_load(blob[:30] + bytes([blob[30] ^ 1]) + blob[31:])
    with pytest.raises(ValueError, match="bytes"):
        _core._program_load("not bytes")
    with pytest.raises(ValueError, match="Function"):
        _core._program_load(blob, (object(),))


def test_function_table_must_match():
    f = ag.compile(lambda x: Scaled(1.0)(x))
    f(0.2)
    blob = _core._program_dump(f._last)
    with pytest.raises(ValueError, match="calls 1 Functions, the table has 0"):
        _core._program_load(blob, ())


def test_every_truncation_and_random_flips_raise_value_error():
    f = ag.compile(lambda x, w: ag.relu(w[0] * x + w[1]) if x > 0 else ag.dot(w, [x, 1.0]))
    f(0.5, [1.0, -2.0])
    blob = _core._program_dump(f._last)
    for n in range(len(blob)):
        with pytest.raises(ValueError, match="cannot load"):
            _core._program_load(blob[:n])
    rng = random.Random(12)
    for _ in range(2000):
        bad = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(bad))
            bad[at] ^= rng.randint(1, 255)
        with pytest.raises(ValueError, match="cannot load"):
            _core._program_load(bytes(bad))


FUZZ = """
import random, struct, zlib, math, numpy as np
import autograd_c as ag
from autograd_c import _core
from test_pickle import Scaled
H = struct.Struct("<8sHHIQ")
def reseal(body):
    return H.pack(b"\\x89AGCPRG\\n", 1, 0, zlib.crc32(body), len(body)) + body
sources = []
f = ag.compile(lambda x, w: ag.relu(w[0] * x + w[1]) + ag.tanh(x) * (w[0] - 0.5) if x > 0
               else ag.dot(w, [x, 1.0]) + Scaled(2.0)(x))
f(0.5, [1.0, -2.0]); f(-0.5, [1.0, -2.0])
for shapes, progs in f._traces.items():
    for p in progs:
        sources.append((_core._program_dump(p), tuple(p.functions)))
rng = random.Random(int(__import__("sys").argv[1]))
loaded = refused = 0
for i in range(N):
    blob, fns = sources[i % len(sources)]
    body = bytearray(blob[24:])
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(body))
        body[at] = rng.choice([0, 1, 0xff, 0x7f, 0x80, rng.randrange(256), body[at] ^ (1 << rng.randrange(8))])
    if rng.random() < 0.2:
        body = body[:rng.randrange(len(body))]
    try:
        p = _core._program_load(reseal(bytes(body)), fns)
    except ValueError as e:
        assert "cannot load a compiled function" in str(e), e
        refused += 1
        continue
    loaded += 1
    if p.n_inputs > 100000:
        continue
    x = np.array([0.5, 1.0, -2.0, 0.1][:p.n_inputs] + [0.3] * max(0, p.n_inputs - 4))
    y = np.empty(p.n_outputs)
    jac = np.empty(p.n_grad * p.n_inputs)
    try:
        p.eval(x, y, jac)
    except (ag.GuardError, ValueError, TypeError, ZeroDivisionError, OverflowError, IndexError):
        pass
print(loaded, refused)
"""


def test_resealed_corruptions_never_crash_in_a_subprocess(tmp_path):
    """Corrupt the body and fix the checksum, so the C and Cython checks see
    the corruption: every payload is refused with ValueError or loads a
    program that evaluates without crashing (in a subprocess: a hole in the
    checks would crash the interpreter)."""
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ.replace("N)", "3000)"))
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    run = subprocess.run([sys.executable, str(script), "7"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded, refused = map(int, run.stdout.split())
    assert refused > 1000 and loaded + refused == 3000


def test_without_its_python_function_a_copy_says_why_it_cannot_trace():
    f = ag.compile(lambda x: x * 2.0)
    f(1.0)
    g = roundtrip(f)
    with pytest.raises(TypeError, match="shaped"):
        g([1.0, 2.0])                                 # a new argument shape needs a trace
    state = branchy.__getstate__()
    state["fn"] = ("no_such_module_for_autograd_c", "branchy")
    from autograd_c.compiled import CompiledFunction
    h = CompiledFunction.__new__(CompiledFunction)
    h.__setstate__(state)
    with pytest.raises(RuntimeError, match="importing no_such_module_for_autograd_c.branchy failed"):
        h(1.0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown pickled state"):
        h.__setstate__({"format": 2})


def test_dask_token_is_a_content_hash():
    f = ag.compile(plain)
    f([1.0, 2.0], [0.5, 0.5], 1.0)
    assert f.__dask_tokenize__() == f.__dask_tokenize__()
    b = f.vmap(in_axes=(None, 0, 0))
    assert b.__dask_tokenize__() != f.vmap(in_axes=(None, 0, None)).__dask_tokenize__()
