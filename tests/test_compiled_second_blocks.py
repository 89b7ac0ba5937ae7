"""Batched second order on compiled functions evaluates blocks of rows.

src/replay_higher.cpp runs each pass of f.vmap(...).hvp / .hessian over a
block of up to 64 rows at once (fewer for large programs, one for programs
that call Functions).  The block is layout, not arithmetic: every row's
numbers must be the bits of that row evaluated alone (f.hessian / f.hvp on
one row), and with one thread the sums must be the rows' results added in
row order.  Checked at row counts around the block size, on 1 and 2
threads, with nan/inf rows inside a block, a guard flipping mid-block, and
a program large enough to get narrower blocks.
"""
import math

import pytest

import autograd_c as ag

np = pytest.importorskip("numpy")

P0 = [0.3, -0.7, 1.1, 0.4]


def per_sample(p, x, y):
    """Every opcode group: unary, constant, binary, sum and dot."""
    a, b, c, d = p
    h = ag.tanh(a * x + b) * ag.sigmoid(c * y) + ag.exp(d * x) / (1 + y * y)
    k = ag.sum([a * h, b * x, c * ag.log(1 + x * x)]) + ag.dot([a, b], [x * h, y])
    return (k - y) ** 2 + ag.maximum(a, x) * ag.abs(d - y) + 2.0 ** (b * x) + (a * c) ** 2


def rows_of(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.5, 1.5, count), rng.uniform(-1.5, 1.5, count)


def in_order(parts):
    """The rows' results added in row order from 0.0, as one thread sums them."""
    acc = 0.0
    for part in parts:
        acc = acc + part
    return acc


@pytest.mark.parametrize("rows", [0, 1, 2, 63, 64, 65, 130, 200])
@pytest.mark.parametrize("threads", [1, 2])
def test_rows_are_the_bits_of_single_rows(rows, threads):
    f = ag.compile(per_sample)
    f.hessian(P0, 0.5, 0.5)         # traced: an empty batch cannot trace
    X, Y = rows_of(rows, seed=rows)
    fb = f.vmap((None, 0, 0), threads=threads)
    single_h = [np.asarray(f.hessian(P0, float(x), float(y))) for x, y in zip(X, Y)]
    vp = [0.5, -1.0, 0.25, 2.0]
    vx = np.linspace(-1, 1, rows)
    single_hv = [f.hvp(P0, float(x), float(y), (vp, float(t), None)) for x, y, t in zip(X, Y, vx)]

    per_row = fb.hessian(P0, X, Y)
    assert per_row.shape == (rows, 6, 6)
    for r in range(rows):
        assert np.array_equal(per_row[r], single_h[r]), r
    values, (hp, hx, hy) = fb.hvp(P0, X, Y, (vp, vx, None))
    for r in range(rows):
        want_value, (want_p, want_x, want_y) = single_hv[r]
        assert values[r] == want_value
        assert np.array_equal(hp[r], want_p) and hx[r] == want_x and hy[r] == want_y, r

    summed = fb.hessian(P0, X, Y, reduce="sum")
    total, (hp_sum, none_x, none_y) = fb.hvp(P0, X, Y, (vp, None, None), reduce="sum")
    assert none_x is None and none_y is None
    want_h = in_order(h[:4, :4] for h in single_h) if rows else np.zeros((4, 4))
    want_hv = [f.hvp(P0, float(x), float(y), (vp, None, None))[1][0] for x, y in zip(X, Y)]
    want_hv = in_order(np.asarray(v) for v in want_hv) if rows else np.zeros(4)
    if threads == 1:
        assert np.array_equal(summed, want_h)
        assert np.array_equal(hp_sum, want_hv)
        assert total == in_order(f(P0, float(x), float(y)) for x, y in zip(X, Y))
    else:   # two partial sums, added at the end
        assert np.allclose(summed, want_h, rtol=1e-13, atol=1e-13)
        assert np.allclose(hp_sum, want_hv, rtol=1e-13, atol=1e-13)
    assert np.array_equal(summed, summed.T)


@pytest.mark.parametrize("threads", [1, 2])
def test_nan_and_inf_rows_inside_a_block_stay_in_their_rows(threads):
    f = ag.compile(lambda p, x, y: p[0] * ag.sqrt(x) * y + p[1] * ag.log(x) * y * y + p[0] * p[1] * x)
    X = np.linspace(0.1, 3.0, 150)
    Y = np.linspace(-2.0, 2.0, 150)
    for r, x in ((5, math.nan), (6, math.inf), (70, 0.0), (71, -0.0), (72, -1.0), (149, -math.inf)):
        X[r] = x
    Y[90] = math.nan
    fb = f.vmap((None, 0, 0), threads=threads)
    P = [0.7, -1.3]
    per_row = fb.hessian(P, X, Y)
    _, (hp, hx, hy) = fb.hvp(P, X, Y, ([1.0, 0.5], np.ones(len(X)), -np.ones(len(X))))
    for r in range(len(X)):
        want = f.hessian(P, float(X[r]), float(Y[r]))
        assert np.array_equal(per_row[r], want, equal_nan=True), (r, per_row[r], want)
        _, (wp, wx, wy) = f.hvp(P, float(X[r]), float(Y[r]), ([1.0, 0.5], 1.0, -1.0))
        assert np.array_equal(hp[r], wp, equal_nan=True), r
        assert np.array_equal([hx[r], hy[r]], [wx, wy], equal_nan=True), r
    assert not all(np.all(np.isfinite(h)) for h in per_row)
    summed = fb.hessian(P, X, Y, reduce="sum")
    if threads == 1:
        want = in_order(np.asarray(f.hessian(P, float(x), float(y)))[:2, :2] for x, y in zip(X, Y))
        assert np.array_equal(summed, want, equal_nan=True)


def guarded(p, x):
    if x > 0:
        return p[0] * p[0] * x ** 3 + p[1] * x
    return ag.exp(p[0] * x) * p[1]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_guard_flipping_mid_block_reports_its_row_or_retraces(threads):
    X = np.linspace(0.2, 2.0, 130)
    X[70] = -0.5
    X[100] = -1.0
    P = [0.3, 1.2]
    strict = ag.compile(guarded, retrace=False)
    strict.hessian(P, 1.0)
    with pytest.raises(ag.GuardError) as e:
        strict.vmap((None, 0), threads=threads).hessian(P, X)
    assert e.value.row == 70
    with pytest.raises(ag.GuardError) as e:
        strict.vmap((None, 0), threads=threads).hvp(P, X, ([1.0, 0.0], None), reduce="sum")
    assert e.value.row == 70
    f = ag.compile(guarded)
    fb = f.vmap((None, 0), threads=threads)
    per_row = fb.hessian(P, X)
    for r, x in enumerate(X):
        assert np.array_equal(per_row[r], f.hessian(P, float(x))), r
    summed = fb.hessian(P, X, reduce="sum")
    assert np.allclose(summed, per_row[:, :2, :2].sum(0), rtol=1e-13)


def test_a_large_program_gets_narrower_blocks_and_the_same_bits():
    def chain(p, x):
        acc = x
        for k in range(1500):      # about 6,000 slots: blocks of 8 rows
            acc = ag.tanh(acc * p[k % 3] + 0.01 * k) + x * 1e-3
        return acc * p[0]

    f = ag.compile(chain)
    X = np.linspace(-1, 1, 21)
    P = [0.9, 1.1, -0.8]
    fb = f.vmap((None, 0), threads=2)
    per_row = fb.hessian(P, X)
    _, (hp, hx) = fb.hvp(P, X, ([1.0, -1.0, 0.5], np.full(len(X), 2.0)))
    for r, x in enumerate(X):
        assert np.array_equal(per_row[r], f.hessian(P, float(x))), r
        _, (wp, wx) = f.hvp(P, float(x), ([1.0, -1.0, 0.5], 2.0))
        assert np.array_equal(hp[r], wp) and hx[r] == wx, r


class Square(ag.Function):
    def forward(self, x):
        return x * x

    def backward(self, gy):
        x, = self.inputs
        return 2 * x * gy


def test_functions_off_the_second_order_path_run_row_by_row():
    """A Function only the first-order part reaches: blocks of one row, its hooks per row."""
    f = ag.compile(lambda p, x, y: p[0] * p[1] * x + Square()(y) * p[0])
    X = np.linspace(0.5, 1.5, 70)
    Y = np.linspace(2, 3, 70)
    P = [0.5, 2.0]
    fb = f.vmap((None, 0, 0), threads=2)
    with pytest.raises(NotImplementedError, match=r"Square \(row 0\)"):
        fb.hessian(P, X, Y)     # the Function's output times p[0]: d2/dp0 dy goes through it
    g = ag.compile(lambda p, x, y: p[0] * p[1] * x + Square()(y))
    gb = g.vmap((None, 0, 0), threads=2)
    summed = gb.hessian(P, X, Y, reduce="sum")
    assert np.allclose(summed, [[0.0, X.sum()], [X.sum(), 0.0]], rtol=1e-12, atol=0)
    values, (hp, _, _) = gb.hvp(P, X, Y, ([1.0, 1.0], None, None))
    for r in range(len(X)):
        want_value, (want_p, _, _) = g.hvp(P, float(X[r]), float(Y[r]), ([1.0, 1.0], None, None))
        assert values[r] == want_value and np.array_equal(hp[r], want_p), r
