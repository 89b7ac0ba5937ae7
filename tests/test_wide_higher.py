"""Higher order and compiled functions on a wide tape (issue 13).

Every path that reads the tape's operand words outside the first-order
sweeps -- higher.cpp's tangent and forward-over-reverse sweeps (jvp, vjp,
hvp, hessian, jacobian), create_graph's walk and ac_record_adjoint, a
Function's jvp, replay's compile from the tape (ag.compile, compile_graph,
guards, the stale-input check) -- must give, bit for bit, what it gives on
the narrow layout.  `_core._set_narrow_limit` makes a tape of a few thousand
nodes wide (test_wide_layout.py has the first-order paths and the real
crossing past 2^27 nodes); each case runs once narrow and once wide, in
fresh threads (a fresh tape starts narrow), and the results must be equal.
Three moments of widening are covered: before the call (the graph was
already wide), during the recording the call makes, and in the middle of a
create_graph walk.
"""
import math

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread

np = pytest.importorskip("numpy")

LIMIT = 1_000
STEPS = 90          # ~16 nodes a step: ~1,500 nodes, past LIMIT


class Square(ag.Function):
    differentiable_backward = True

    def forward(self, a):
        return a * a

    def backward(self, gy):
        return 2.0 * self.inputs[0] * gy


SEEN = []           # whether the tape was wide, at each note_layout()


def note_layout():
    SEEN.append(ag.tape_stats()["wide"])


def chain(x, y, steps=STEPS):
    """Every operand kind: leaves, nodes, constants, n-ary lists (sum, dot
    with constants), a Function; values stay bounded.  Notes the layout at
    its end (the functional API drops its recording before it returns)."""
    z = x * 0.5 + y
    for i in range(steps):
        a = ag.sin(z) * 0.7 + ag.tanh(y * z)
        b = ag.sum([a, x, 0.25]) / (1.5 + ag.exp(-ag.abs(z)))
        z = ag.dot([a, b, x], [0.3, y, 0.01 * (i % 5)]) + Square()(x) * 0.01 - ag.sigmoid(b) ** 2
    note_layout()
    return z


def _plain(r):
    """Results as nested lists of floats (arrays, Variables) for ==."""
    if isinstance(r, np.ndarray):
        return r.tolist()
    if isinstance(r, ag.Variable):
        return r.data
    if isinstance(r, (list, tuple)):
        return [_plain(v) for v in r]
    return r


def both(body):
    """body() in a fresh thread on a narrow tape, then on a tape that widens
    past LIMIT nodes: (narrow result, wide result).  The layout is checked
    wherever body or chain calls note_layout()."""
    out = []
    for limit in (10 ** 9, LIMIT):
        previous = _core._set_narrow_limit(limit)
        del SEEN[:]
        try:
            out.append((in_fresh_thread(lambda: _plain(body())), list(SEEN)))
        finally:
            _core._set_narrow_limit(previous)
    (narrow, seen_n), (wide, seen_w) = out
    assert seen_n and not any(seen_n), "the narrow run must stay narrow"
    assert any(seen_w), "the second run must have crossed into the wide layout"
    return narrow, wide


def _already_wide():
    """A live graph past LIMIT nodes (with its own leaves): with the low
    limit the tape is wide before the call under test."""
    u = ag.Variable(0.3)
    return chain(u, ag.Variable(-0.2))


# ---------------------------------------------------------------------------
# the functional API: higher.cpp's sweeps
# ---------------------------------------------------------------------------

def functional_results():
    p = [0.7, -0.4]
    return [ag.jvp(chain, p, [0.25, 2.0]), ag.vjp(chain, p, 1.5), ag.hvp(chain, p, [1.0, -0.5]),
            ag.hessian(chain, p), ag.jacobian(lambda x, y: [chain(x, y), x * y], p),
            ag.jacobian(lambda x, y: [chain(x, y), x * y], p, strategy="forward-mode")]


@pytest.mark.parametrize("moment", ["during", "before"])
def test_functional_api_on_a_wide_tape_matches_narrow(moment):
    def body():
        keep = _already_wide() if moment == "before" else None
        r = functional_results()
        del keep
        return r

    narrow, wide = both(body)
    assert wide == narrow
    value, d = narrow[0]
    assert math.isfinite(value) and math.isfinite(d)
    # the hessian is symmetric and its first row is hvp along e_0
    h = narrow[3]
    assert math.isclose(h[0][1], h[1][0], rel_tol=1e-12, abs_tol=1e-15)


def test_hvp_agrees_with_finite_differences_of_the_wide_gradient():
    """A check against an independent method on the wide tape itself."""
    def body():
        keep = _already_wide()
        p = [0.7, -0.4]
        v = [1.0, -0.5]
        _, hv = ag.hvp(chain, p, v)
        eps = 1e-6
        plus = ag.vjp(chain, [p[0] + eps * v[0], p[1] + eps * v[1]], 1.0)[1]
        minus = ag.vjp(chain, [p[0] - eps * v[0], p[1] - eps * v[1]], 1.0)[1]
        assert ag.tape_stats()["wide"]
        del keep
        return hv.tolist(), ((plus - minus) / (2 * eps)).tolist()

    previous = _core._set_narrow_limit(LIMIT)
    try:
        hv, fd = in_fresh_thread(body)
    finally:
        _core._set_narrow_limit(previous)
    for a, b in zip(hv, fd):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------------------
# create_graph: the walk and ac_record_adjoint
# ---------------------------------------------------------------------------

def create_graph_results(steps=STEPS):
    x, y = ag.Variable(0.7), ag.Variable(-0.4)
    z = chain(x, y, steps)
    was_wide = ag.tape_stats()["wide"]
    dx, dy = ag.grad(z, [x, y], create_graph=True)
    (dxx, dxy) = ag.grad(dx, [x, y], create_graph=True)
    dxxx = ag.grad(dxx, [x])
    z2 = dx * dy + z
    z2.backward(create_graph=True)
    gx = x.grad
    (gxx,) = ag.grad(gx, [x])
    note_layout()
    return _plain([was_wide if steps == 40 else None, z, dx, dy, dxx, dxy, dxxx, gx, gxx])


@pytest.mark.parametrize("steps", [STEPS, 40])
def test_create_graph_on_a_wide_tape_matches_narrow(steps):
    """With STEPS the graph is wide before the walk; with 40 (~650 nodes) it
    is narrow, and the walk's own recording crosses LIMIT halfway: operands
    read after that are read in the wide layout."""
    narrow, wide = both(lambda: create_graph_results(steps))
    if narrow[0] is not None:
        assert narrow[0] is False and wide[0] is False, "the graph itself must stay narrow"
    assert wide == narrow
    assert all(math.isfinite(v) for v in narrow[1:6])


# ---------------------------------------------------------------------------
# compiled functions: replay's compile from the tape
# ---------------------------------------------------------------------------

def traced(x, y):
    z = chain(x, y)
    if x > 0.5:              # a guard: a comparison of a leaf and a number
        z = z + x
    if z < y:                # a guard between two nodes' values
        z = z * 2.0
    return z


def compile_results():
    cf = ag.compile(traced)
    r = [cf(0.7, -0.4), cf.value_and_grad(0.8, -0.3), cf.jacobian(0.9, -0.35)]
    try:
        cf(0.2, -0.4)            # flips the first guard: retraced
        r.append(cf(0.2, -0.4))
    except ag.GuardError:
        r.append("guard")
    r.append(cf.traces)
    x, y = ag.Variable(0.7), ag.Variable(-0.4)
    z = chain(x, y)
    g = ag.compile_graph([z, z * y], [x, y])
    r += [g(0.6, -0.1), g.jacobian(0.6, -0.1)]
    note_layout()
    return _plain(r)


@pytest.mark.parametrize("moment", ["during", "before"])
def test_compile_on_a_wide_tape_matches_narrow(moment):
    def body():
        keep = _already_wide() if moment == "before" else None
        r = compile_results()
        del keep
        return r

    narrow, wide = both(body)
    assert wide == narrow


def test_compile_graph_refuses_a_stale_input_on_a_wide_tape():
    """The stale-input check walks the tape from the roots (both layouts)."""
    def body():
        x, y = ag.Variable(0.7), ag.Variable(-0.4)
        z = chain(x, y)
        x.data = 0.9                       # z's entry for x is a past one now
        w = z + x
        with pytest.raises(ValueError, match="input 0 with a value it had before"):
            ag.compile_graph([w], [x, y])
        return w.data

    narrow, wide = both(body)
    assert wide == narrow
