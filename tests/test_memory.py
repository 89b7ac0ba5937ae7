"""Memory follows Python: the tape holds O(nodes reachable from live Variables).

These tests watch ``autograd_c.tape_stats()`` while ordinary loops run:
training (backward + ``p.data -= lr * p.grad``), evaluation without backward,
a training loop that keeps every loss, and two graphs recorded interleaved.
With a small compaction floor (so mark-compact really runs), the tape must
stay bounded by a small multiple of one iteration's graph plus the floor,
must not grow from the first half of the loop to the second, and gradients
must be exactly those of a fresh, never-compacted tape.

Every test body runs in a fresh thread: each thread has its own tape, so
absolute node counts do not depend on what other test modules left alive on
the main thread's tape.
"""
import gc
import math
import random
import sys

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread

FLOOR = 10_000          # compaction floor used by the loop tests (default is 2**20)
ITERATIONS = 2_000


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture
def small_floor():
    """Compact from FLOOR nodes on; restore the previous floor afterwards."""
    previous = _core._set_compaction_floor(FLOOR)
    try:
        yield FLOOR
    finally:
        _core._set_compaction_floor(previous)


def stats():
    return ag.tape_stats()


class Peak:
    """Running maxima of tape counters, per loop half."""

    KEYS = ("nodes", "capacity", "leaves", "constants", "args")

    def __init__(self, iterations):
        self.half = iterations // 2
        self.first = dict.fromkeys(self.KEYS, 0)
        self.second = dict.fromkeys(self.KEYS, 0)

    def sample(self, it):
        s = ag.tape_stats()
        side = self.first if it < self.half else self.second
        for k in self.KEYS:
            side[k] = max(side[k], s[k])

    def overall(self, key):
        return max(self.first[key], self.second[key])


def assert_bounded(peak, graph_size, compactions, label):
    """The checks every loop shares."""
    bound = FLOOR + 4 * graph_size
    created = ITERATIONS * graph_size
    assert created > 20 * bound, "the loop must create far more nodes than the bound"
    assert peak.overall("nodes") <= bound, (
        f"{label}: tape reached {peak.overall('nodes')} nodes; bound {bound} "
        f"(one iteration = {graph_size} nodes, {created} created in total)")
    # not growing: the second half does not go above the first (beyond the
    # few entries by which the phase of the compactions can shift)
    for key in Peak.KEYS:
        assert peak.second[key] <= peak.first[key] * 1.02 + 8, (
            f"{label}: {key} grows: first half max {peak.first[key]}, second {peak.second[key]}")
    # side tables stay bounded too
    assert peak.overall("capacity") <= 4 * bound
    assert peak.overall("leaves") <= bound
    assert peak.overall("constants") <= 2 * bound
    # compaction really ran, about as often as the floor implies
    assert compactions >= created // (2 * bound), (
        f"{label}: only {compactions} compactions for {created} nodes")


# a small regression problem that a 1-4-1 tanh MLP cannot fit exactly,
# so the loss and gradients stay well away from 0 for the whole loop
DATA = [(x / 4.0 - 1.0, math.sin(3.0 * x / 4.0) + (0.3 if x % 2 else -0.3)) for x in range(9)]
N_PARAMS = 13          # w1[4], b1[4], w2[4], b2


def mlp_loss(p, tanh=ag.tanh):
    total = 0.0
    for x, t in DATA:
        h = [tanh(p[j] * x + p[4 + j]) for j in range(4)]
        out = p[8] * h[0] + p[9] * h[1] + p[10] * h[2] + p[11] * h[3] + p[12]
        total = total + (out - t) ** 2
    return total / len(DATA)


def mlp_loss_float(p):
    total = 0.0
    for x, t in DATA:
        h = [math.tanh(p[j] * x + p[4 + j]) for j in range(4)]
        out = p[8] * h[0] + p[9] * h[1] + p[10] * h[2] + p[11] * h[3] + p[12]
        total = total + (out - t) ** 2
    return total / len(DATA)


def initial_params(seed=0):
    rng = random.Random(seed)
    return [rng.uniform(-1.0, 1.0) for _ in range(N_PARAMS)]


def graph_size(build):
    """Nodes one call of build() records on an empty tape."""
    assert stats()["nodes"] == 0
    out = build()
    n = stats()["nodes"]
    del out
    assert stats()["nodes"] == 0
    return n


def reference_grads(values):
    """Loss and gradients from scratch: fresh leaves on an empty tape that
    never compacts (default floor is far above one graph)."""
    assert stats()["nodes"] == 0 and stats()["compactions"] == 0
    params = [ag.Variable(v) for v in values]
    loss = mlp_loss(params)
    loss.backward()
    result = (loss.data, [p.grad for p in params])
    del loss
    assert stats()["nodes"] == 0 and stats()["compactions"] == 0
    return result


# ---------------------------------------------------------------------------
# (a) training loop
# ---------------------------------------------------------------------------

def test_training_loop_tape_bounded_and_grads_exact(small_floor):
    def body():
        params = [ag.Variable(v) for v in initial_params()]
        g = graph_size(lambda: mlp_loss(params))
        peak = Peak(ITERATIONS)
        c0 = stats()["compactions"]
        snapshots = []          # (values, loss, grads) of iterations to re-check
        loss = None
        for it in range(ITERATIONS):
            before = stats()["compactions"]
            values = [p.data for p in params]
            loss = mlp_loss(params)          # the previous loss is still alive here
            peak.sample(it)
            compacted_mid_build = stats()["compactions"] > before
            loss.backward()
            if compacted_mid_build or it % 200 == 0:
                snapshots.append((values, loss.data, [p.grad for p in params],
                                  stats()["compactions"] - c0))
            for p in params:
                p.data -= 0.05 * p.grad
                p.grad = 0.0
            peak.sample(it)
        compactions = stats()["compactions"] - c0
        assert_bounded(peak, g, compactions, "training loop")

        # the loop trained: the loss went down (and stayed far from 0)
        assert snapshots[-1][1] < 0.7 * snapshots[0][1]
        assert snapshots[-1][1] > 1e-3

        # the last loss depends on leaves updated after it was recorded:
        # compaction releases it, leaving an empty tape
        _core._compact()
        assert stats()["nodes"] == 0
        assert stats()["leaves"] == 0
        return snapshots

    snapshots = in_fresh_thread(body)
    mid_build = [s for s in snapshots if s[3] >= 3]
    assert len(mid_build) >= 20, "too few iterations checked after several compactions"

    # gradients after compactions (including compactions that ran while the
    # loss was being recorded) are the numbers a fresh tape gives, bit for bit
    def check():
        for values, loss_value, grads, _ in snapshots:
            ref_loss, ref_grads = reference_grads(values)
            assert loss_value == ref_loss
            assert grads == ref_grads
            assert loss_value == pytest.approx(mlp_loss_float(values), rel=1e-12)

    in_fresh_thread(check)


def test_training_loop_grads_match_torch(small_floor):
    torch = pytest.importorskip("torch")

    def body():
        params = [ag.Variable(v) for v in initial_params(1)]
        loss = None
        checked = 0
        for it in range(400):
            before = stats()["compactions"]
            values = [p.data for p in params]
            loss = mlp_loss(params)
            loss.backward()
            if stats()["compactions"] > before or it % 50 == 0:
                tp = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
                tl = mlp_loss(tp, tanh=torch.tanh)
                tl.backward()
                assert loss.data == pytest.approx(tl.item(), rel=1e-12)
                for p, t in zip(params, tp):
                    assert p.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-15)
                checked += 1
            for p in params:
                p.data -= 0.05 * p.grad
                p.grad = 0.0
        assert stats()["compactions"] >= 3
        return checked

    assert in_fresh_thread(body) >= 5


# ---------------------------------------------------------------------------
# (b) evaluation without backward
# ---------------------------------------------------------------------------

def test_evaluation_without_backward_tape_bounded(small_floor):
    def body():
        params = [ag.Variable(v) for v in initial_params(2)]

        def model(x):
            h = [ag.tanh(params[j] * x + params[4 + j]) for j in range(4)]
            return ag.sigmoid(params[8] * h[0] + params[9] * h[1] + params[10] * h[2]
                              + params[11] * h[3] + params[12])

        def evaluate(k):
            x = math.sin(0.37 * k)
            s = 0.0
            for j in range(8):
                s = s + model(x + 0.1 * j)
            return s

        g = graph_size(lambda: evaluate(0))
        peak = Peak(ITERATIONS)
        c0 = stats()["compactions"]
        out = None
        for it in range(ITERATIONS):
            out = evaluate(it)            # the previous result is alive while this one is built
            peak.sample(it)
            if it % 97 == 0:              # values are right, compaction or not
                with ag.no_grad():
                    assert out.data == evaluate(it).data
        assert_bounded(peak, g, stats()["compactions"] - c0, "evaluation")

        # after a compaction exactly one evaluation's graph is left: the
        # live result's (leaf entries included)
        _core._compact()
        assert stats()["nodes"] == g
        assert stats()["leaves"] == N_PARAMS
        assert stats()["live"] == 1
        # and it still backprops to the gradients of a fresh tape
        grads = ag.grad(out, params)
        return grads, [p.data for p in params], ITERATIONS - 1

    grads, values, last = in_fresh_thread(body)

    def ref():
        params = [ag.Variable(v) for v in values]
        x = math.sin(0.37 * last)
        s = 0.0
        for j in range(8):
            xj = x + 0.1 * j
            h = [ag.tanh(params[k] * xj + params[4 + k]) for k in range(4)]
            s = s + ag.sigmoid(params[8] * h[0] + params[9] * h[1] + params[10] * h[2]
                               + params[11] * h[3] + params[12])
        return ag.grad(s, params)

    assert grads == in_fresh_thread(ref)
    assert any(v != 0.0 for v in grads)


# ---------------------------------------------------------------------------
# (c) training loop that keeps every loss
# ---------------------------------------------------------------------------

def test_training_loop_keeping_every_loss(small_floor):
    def body():
        params = [ag.Variable(v) for v in initial_params(3)]
        g = graph_size(lambda: mlp_loss(params))
        peak = Peak(ITERATIONS)
        c0 = stats()["compactions"]
        losses, values = [], []
        for it in range(ITERATIONS):
            loss = mlp_loss(params)
            losses.append(loss)
            values.append(loss.data)
            peak.sample(it)
            loss.backward()
            for p in params:
                p.data -= 0.05 * p.grad
                p.grad = 0.0
            peak.sample(it)
        del loss
        compactions = stats()["compactions"] - c0
        assert_bounded(peak, g, compactions, "training loop keeping losses")

        # every kept loss still reads its value ...
        assert [v.data for v in losses] == values
        assert [float(v) for v in losses] == values
        assert values[-1] < values[0]
        # ... but none backprops: a leaf changed after each was recorded.
        # Failed backward() calls leave the parameters' grads alone.
        released = 0
        for v in losses:
            with pytest.raises(RuntimeError) as info:
                v.backward()
            released += "released" in str(info.value)
        assert all(p.grad == 0.0 for p in params)
        # compaction released (rather than kept) nearly all of them
        assert released >= ITERATIONS - (FLOOR // g + 2)
        # after one more compaction nothing is reachable
        _core._compact()
        assert stats()["nodes"] == 0
        assert stats()["live"] == 0
        with pytest.raises(RuntimeError):
            losses[-1].backward()
        with pytest.raises(RuntimeError):
            ag.grad(losses[0], params)
        # results of released graphs still work in new ops, but no gradient
        # flows through them
        shifted = losses[0] + 1.0
        assert shifted.data == values[0] + 1.0
        with pytest.raises(RuntimeError, match="released"):
            shifted.backward()
        # values are still readable after everything
        assert losses[123].data == values[123]
        # the parameters themselves still work normally
        fresh = mlp_loss(params)
        fresh.backward()
        assert any(p.grad != 0.0 for p in params)

    in_fresh_thread(body)


# ---------------------------------------------------------------------------
# (d) two graphs recorded interleaved
# ---------------------------------------------------------------------------

COEF_A = [0.25 + 0.125 * (k % 5) for k in range(40)]
COEF_B = [0.5 + 0.0625 * (k % 7) for k in range(40)]


def horner_float(x, coefs):
    """Value and derivative of the polynomial p <- p * x + c (p0 = x)."""
    p, dp = x, 1.0
    for c in coefs:
        p, dp = p * x + c, dp * x + p
    return p, dp


def test_interleaved_graphs_tape_bounded(small_floor):
    def body():
        x = ag.Variable(0.5)
        y = ag.Variable(0.75)

        def build_pair():
            a, b = x, y
            for ca, cb in zip(COEF_A, COEF_B):    # ops alternate between the graphs
                a = a * x + ca
                b = b * y + cb
            return a, b

        g = graph_size(lambda: build_pair())
        peak = Peak(ITERATIONS)
        c0 = stats()["compactions"]
        older_b = None
        value_a, grad_a = horner_float(0.5, COEF_A)
        value_b, grad_b = horner_float(0.75, COEF_B)
        for it in range(ITERATIONS):
            a, b = build_pair()
            peak.sample(it)
            # backprop the older graph of the pair (a was started first) ...
            a.backward()
            assert a.data == value_a
            assert x.grad == pytest.approx(grad_a, rel=1e-13)
            assert y.grad == 0.0
            x.grad = 0.0
            # ... and the b graph of the previous iteration, whose nodes are
            # interleaved with two iterations of other nodes and survived
            # the compactions in between
            if older_b is not None:
                older_b.backward()
                assert older_b.data == value_b
                assert y.grad == pytest.approx(grad_b, rel=1e-13)
                assert x.grad == 0.0
                y.grad = 0.0
            older_b = b
            del a, b
        assert_bounded(peak, g, stats()["compactions"] - c0, "interleaved graphs")
        # after compaction only older_b's graph is left: 2 nodes per coefficient (leaves are not nodes)
        _core._compact()
        assert stats()["nodes"] == 2 * len(COEF_B)
        older_b.backward()
        assert y.grad == pytest.approx(grad_b, rel=1e-13)

    in_fresh_thread(body)


# ---------------------------------------------------------------------------
# correctness across compaction
# ---------------------------------------------------------------------------

def test_variable_kept_across_many_compactions(small_floor):
    def body():
        x, y = ag.Variable(0.3), ag.Variable(-1.2)
        anchor = x * 1.0                   # keeps the tape from resetting
        for _ in range(5_000):             # dead nodes below the kept graph
            x * y
        mid = ag.sin(x * y) + ag.exp(y)
        keeper = mid * ag.tanh(x) + y ** 3
        n_before = stats()["nodes"]
        assert n_before > 5_000
        ref = ag.grad(keeper, [x, y, mid])
        value = keeper.data
        # analytic: keeper = (sin(xy) + e^y) tanh(x) + y^3
        xv, yv = 0.3, -1.2
        m = math.sin(xv * yv) + math.exp(yv)
        dk_dx = yv * math.cos(xv * yv) * math.tanh(xv) + m * (1 - math.tanh(xv) ** 2)
        dk_dy = (xv * math.cos(xv * yv) + math.exp(yv)) * math.tanh(xv) + 3 * yv ** 2
        assert ref[0] == pytest.approx(dk_dx, rel=1e-13)
        assert ref[1] == pytest.approx(dk_dy, rel=1e-13)
        assert ref[2] == pytest.approx(math.tanh(xv), rel=1e-13)

        # compact now: the dead nodes go, the kept graph slides down
        del anchor
        c0 = stats()["compactions"]
        _core._compact()
        assert stats()["compactions"] == c0 + 1
        assert stats()["nodes"] < 20         # just the keeper's graph
        assert ag.grad(keeper, [x, y, mid]) == ref
        # then many more compactions, with live garbage interleaved
        junk = None
        z = ag.Variable(2.0)
        for i in range(30_000):
            junk = (junk if i % 50 else z) * 1.0001 + x    # a growing chain, dropped every 50
            ag.tanh(z) * y
        assert stats()["compactions"] >= c0 + 10
        assert keeper.data == value
        assert keeper.op == "add"
        assert mid.op == "add"
        assert ag.grad(keeper, [x, y, mid]) == ref
        keeper.backward()
        assert [x.grad, y.grad, mid.grad] == ref
        assert keeper.grad == 1.0
        return True

    assert in_fresh_thread(body)


def test_backward_between_compaction_and_new_nodes(small_floor):
    """A loss recorded, then compacted (nodes renumbered) before backward()."""
    def body():
        params = [ag.Variable(v) for v in initial_params(4)]
        keep = params[0] * 2.0
        for _ in range(3):
            for _ in range(2_000):        # dead nodes before the loss
                params[1] * params[2]
            loss = mlp_loss(params)
            for _ in range(2_000):        # dead nodes after it
                params[3] + 1.0
            _core._compact()
            loss.backward()
            got = [p.grad for p in params]
            for p in params:
                p.grad = 0.0
            del loss
        assert keep.data == 2.0 * params[0].data
        return [p.data for p in params], got

    values, got = in_fresh_thread(body)
    assert in_fresh_thread(reference_grads, values)[1] == got


# ---------------------------------------------------------------------------
# releasing everything
# ---------------------------------------------------------------------------

def test_tape_empties_and_releases_leaves_when_all_variables_die():
    def body():
        a, b = ag.Variable(1.5), ag.Variable(-0.5)
        gc.collect()
        rc_a, rc_b = sys.getrefcount(a), sys.getrefcount(b)
        y = a
        for _ in range(1_000):
            y = ag.tanh(y * b + a)
        z = ag.sum([y, a, b]) * ag.dot([a, b], [b, a])
        s = stats()
        assert s["nodes"] > 2_000
        assert s["live"] == 2
        assert sys.getrefcount(a) > rc_a       # the tape holds the leaves it records
        assert sys.getrefcount(b) > rc_b
        z.backward()
        del y
        assert stats()["nodes"] == s["nodes"]  # z still needs its graph
        del z
        s = stats()
        assert (s["nodes"], s["live"], s["leaves"], s["constants"], s["args"]) == (0, 0, 0, 0, 0)
        assert sys.getrefcount(a) == rc_a
        assert sys.getrefcount(b) == rc_b
        assert a.grad != 0.0 and b.grad != 0.0   # gradients outlive the tape

        # a leaf recorded many times with different values (many leaf entries)
        losses = []
        for k in range(100):
            a.data = 0.01 * k
            losses.append(a * b)
        assert stats()["leaves"] >= 100
        assert sys.getrefcount(a) >= rc_a + 100
        losses.clear()
        assert stats()["nodes"] == 0
        assert sys.getrefcount(a) == rc_a
        assert sys.getrefcount(b) == rc_b

    in_fresh_thread(body)


def test_compaction_releases_leaves_of_dead_graphs():
    def body():
        a, b, c = ag.Variable(1.0), ag.Variable(2.0), ag.Variable(3.0)
        rc = [sys.getrefcount(a), sys.getrefcount(b), sys.getrefcount(c)]
        keeper = b * c
        dead = a * b + a
        del dead
        assert sys.getrefcount(a) > rc[0]
        _core._compact()
        # a was only in the dead graph: released; b and c are still recorded
        assert sys.getrefcount(a) == rc[0]
        assert sys.getrefcount(b) == rc[1] + 1
        assert sys.getrefcount(c) == rc[2] + 1
        assert stats()["nodes"] == 1 and stats()["leaves"] == 2   # keeper's node; b and c entries
        keeper.backward()
        assert (a.grad, b.grad, c.grad) == (0.0, 3.0, 2.0)
        del keeper
        assert [sys.getrefcount(a), sys.getrefcount(b), sys.getrefcount(c)] == rc

    in_fresh_thread(body)


def test_leaf_deleted_by_user_still_gets_gradient_through_live_graph():
    def body():
        a = ag.Variable(4.0)
        grads = []
        y = a * a
        del a                  # only the tape references the leaf now
        y.backward()           # no crash; the gradient goes to the (unreachable) leaf
        assert stats()["leaves"] == 1
        del y
        assert stats()["leaves"] == 0 and stats()["nodes"] == 0
        return True

    assert in_fresh_thread(body)


# ---------------------------------------------------------------------------
# bytes
# ---------------------------------------------------------------------------

def test_large_graph_memory_returned_by_compaction():
    def body():
        x = ag.Variable(0.5)
        small = x * 3.0                  # stays alive: the tape cannot just reset
        y = x
        for _ in range(1_100_000):
            y = y * 0.999999 + x
        peak_bytes = stats()["bytes"]
        assert peak_bytes >= 16 * 2_200_000
        del y
        _core._compact()
        assert stats()["nodes"] == 1                 # small's node (leaves are not nodes)
        small.backward()
        assert x.grad == 3.0
        assert stats()["bytes"] < peak_bytes // 4, (
            f"{stats()['bytes']} bytes held for {stats()['nodes']} nodes")

    in_fresh_thread(body)


# ---------------------------------------------------------------------------
# n-ary nodes: operand lists and constants are tape memory too
# ---------------------------------------------------------------------------

def test_evaluation_loop_with_dot_over_data_keeps_side_tables_bounded(small_floor):
    def body():
        rng = random.Random(5)
        weights = [ag.Variable(rng.uniform(-1.0, 1.0)) for _ in range(100)]
        rows = [[rng.uniform(-1.0, 1.0) for _ in range(100)] for _ in range(50)]
        first = ag.dot(weights, rows[0])
        per_iteration = stats()["args"]          # 1 count + 200 references
        del first
        assert stats()["nodes"] == 0
        peak = Peak(ITERATIONS * 10)
        out = None
        for it in range(ITERATIONS * 10):
            out = ag.dot(weights, rows[it % 50])     # the previous result stays alive meanwhile
            peak.sample(it)
        assert out.data == pytest.approx(
            math.fsum(w.data * r for w, r in zip(weights, rows[it % 50])), rel=1e-12)
        bound = 4 * (FLOOR + per_iteration)
        assert peak.overall("nodes") <= bound
        assert peak.overall("args") <= bound, f"operand lists reached {peak.overall('args')} words"
        assert peak.overall("constants") <= bound, (
            f"constant pool reached {peak.overall('constants')} entries")

    in_fresh_thread(body)


# ---------------------------------------------------------------------------
# a graph released by the compaction that runs inside an op using it
# ---------------------------------------------------------------------------

COMPACT_AT = 1_000


def _stale_op_at_compaction(op_kind):
    previous = _core._set_compaction_floor(COMPACT_AT)
    try:
        a = ag.Variable(1.0)
        b = ag.Variable(3.0)
        y = a * 2.0
        a.data = 5.0                  # y's graph is stale, not yet released
        keeper = b * 7.0              # an unrelated live graph
        # an op compacts when its node (16 bytes) would take the tape's
        # footprint past its budget; fill with dead nodes up to the last
        # footprint that does not
        fill = (lambda: ag.sin(b)) if op_kind == "unary" else (lambda: b * 1.0)
        fill()
        c0 = stats()["compactions"]
        while stats()["budget"] - stats()["footprint"] >= 32:
            fill()
            assert stats()["compactions"] == c0, "compacted while filling"
        fill()
        assert stats()["compactions"] == c0, "compacted while filling"
        assert 0 <= stats()["budget"] - stats()["footprint"] < 16
        errors = 0
        try:
            if op_kind == "binary":
                z = y + 1.0
            elif op_kind == "unary":
                z = ag.sin(y)
            else:
                z = ag.sum([y, 1.0])
        except RuntimeError:
            errors += 1
            z = None
        assert stats()["compactions"] == c0 + 1, "the op did not compact"
        if z is not None:
            try:
                z.backward()
            except RuntimeError:
                errors += 1
        # either the op or backward() must refuse; no gradient may reach
        # b, which z never depended on
        assert b.grad == 0.0, f"gradient leaked into an unrelated leaf: b.grad = {b.grad}"
        assert a.grad == 0.0
        assert errors == 1
        del keeper
    finally:
        _core._set_compaction_floor(previous)


@pytest.mark.parametrize("op_kind", ["binary", "unary", "nary"])
def test_op_on_stale_graph_that_compaction_releases_mid_op(op_kind):
    in_fresh_thread(_stale_op_at_compaction, op_kind)


def test_op_on_stale_graph_without_compaction_raises_at_backward():
    def body():
        a, b = ag.Variable(1.0), ag.Variable(3.0)
        y = a * 2.0
        a.data = 5.0
        z = y + b                      # recorded: y's graph is not released yet
        assert z.data == 5.0
        with pytest.raises(RuntimeError, match="new value"):
            z.backward()
        assert (a.grad, b.grad) == (0.0, 0.0)
        _core._compact()               # now it is released: its value still works ...
        w = y + 1.0
        assert w.data == 3.0
        with pytest.raises(RuntimeError, match="released"):
            w.backward()               # ... but no gradient flows through it
        with pytest.raises(RuntimeError):
            z.backward()
        assert y.data == 2.0 and z.data == 5.0
        assert (a.grad, b.grad) == (0.0, 0.0)

    in_fresh_thread(body)
