"""autograd_c._core._dense: a whole dense layer, act(b + w . x) per row, as
one dot node (bias included, summed b + w0*x0 + w1*x1 + ...) plus one
activation node per output."""
import math
import random

import pytest

import autograd_c as ag
from autograd_c import _core
from helpers import in_fresh_thread

ACTS = [None, "relu", "tanh", "sigmoid"]
AG_ACT = {None: lambda s: s, "relu": ag.relu, "tanh": ag.tanh, "sigmoid": ag.sigmoid}
MG_OP = {"relu": "ReLU", "tanh": "tanh", "sigmoid": "sigmoid"}


def layer(nout, nin, seed):
    rng = random.Random(seed)
    rows = [[ag.Variable(rng.uniform(-1, 1)) for _ in range(nin)] for _ in range(nout)]
    biases = [ag.Variable(rng.uniform(-1, 1)) for _ in range(nout)]
    xs = [rng.uniform(-2, 2) for _ in range(nin)]
    return rows, biases, xs


def micrograd_sum(row, b, xs):
    """micrograd's Neuron: sum((wi * xi for wi, xi in zip(w, x)), b)"""
    s = b
    for w, x in zip(row, xs):
        s = s + w * x
    return s


def act_value(act, s):
    """The activation of the library applied to the float s (a constant)."""
    return AG_ACT[act](ag.Variable(s, requires_grad=False)).data if act else s


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("nout, nin, seed", [(1, 1, 0), (3, 2, 1), (5, 7, 2), (2, 40, 3)])
def test_values_are_micrograd_order_sums(act, nout, nin, seed):
    rows, biases, xs = layer(nout, nin, seed)
    outs = _core._dense(rows, biases, xs, act)
    assert isinstance(outs, list) and len(outs) == nout
    for out, row, b in zip(outs, rows, biases):
        s = micrograd_sum([w.data for w in row], b.data, xs)
        assert out.data == act_value(act, s)          # exactly: same order, same formula
        assert out.requires_grad and not out.is_leaf


def test_values_where_order_matters():
    # summing in another order (or with an FMA) gives a different double here
    w = [ag.Variable(v) for v in (1.0, 1e-16, 1e-16)]
    b = ag.Variable(1e16)
    xs = [-1e16, 3.0, 3.0]
    (out,) = _core._dense([w], [b], xs, None)
    assert out.data == micrograd_sum([1.0, 1e-16, 1e-16], 1e16, xs)
    w2 = [ag.Variable(0.1), ag.Variable(0.2), ag.Variable(0.3)]
    xs2 = [0.7, 0.11, 0.13]
    (out2,) = _core._dense([w2], [ag.Variable(0.05)], xs2, None)
    assert out2.data == ((0.05 + 0.1 * 0.7) + 0.2 * 0.11) + 0.3 * 0.13


def test_negative_zero_bias_sum():
    # a neuron is one dot node, whose formula sums from 0.0 like dot(), sum()
    # and torch (so a replay recomputes the same bits): an all -0.0 neuron is
    # +0.0 (micrograd's sum(..., b) would give -0.0; the values are equal)
    (out,) = _core._dense([[ag.Variable(-0.0)]], [ag.Variable(-0.0)], [1.0], None)
    assert math.copysign(1.0, out.data) == math.copysign(1.0, 0.0 + -0.0 + (-0.0) * 1.0)
    assert math.copysign(1.0, out.data) == math.copysign(1.0, ag.dot([-0.0, -0.0], [1.0, 1.0]).data)


@pytest.mark.parametrize("act", ACTS)
def test_gradients_vs_torch(act):
    torch = pytest.importorskip("torch")
    nout, nin = 4, 5
    rows, biases, xs = layer(nout, nin, 11)
    rng = random.Random(5)
    coef = [rng.uniform(-1, 1) for _ in range(nout)]
    xleaves = [ag.Variable(v) for v in xs]
    xin = [x * 1.0 for x in xleaves]                  # recorded inputs: gradient flows through
    outs = _core._dense(rows, biases, xin, act)
    loss = ag.dot(outs, coef)
    loss.backward()

    W = torch.tensor([[w.data for w in row] for row in rows], dtype=torch.float64, requires_grad=True)
    B = torch.tensor([b.data for b in biases], dtype=torch.float64, requires_grad=True)
    Xt = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    pre = W @ Xt + B
    post = {None: lambda t: t, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid}[act](pre)
    tl = (post * torch.tensor(coef, dtype=torch.float64)).sum()
    tl.backward()
    assert loss.data == pytest.approx(tl.item(), rel=1e-12)
    for j in range(nout):
        assert outs[j].data == pytest.approx(post[j].item(), rel=1e-12)
        assert biases[j].grad == pytest.approx(B.grad[j].item(), rel=1e-12, abs=1e-300)
        for k in range(nin):
            assert rows[j][k].grad == pytest.approx(W.grad[j, k].item(), rel=1e-12, abs=1e-300)
    for k in range(nin):
        assert xleaves[k].grad == pytest.approx(Xt.grad[k].item(), rel=1e-12)


def test_relu_at_zero_and_negative_gives_zero_gradient():
    w = ag.Variable(1.0)
    b = ag.Variable(-2.0)
    (at_zero,) = _core._dense([[w]], [b], [2.0], "relu")
    assert at_zero.data == 0.0
    at_zero.backward()
    assert (w.grad, b.grad) == (0.0, 0.0)
    (neg,) = _core._dense([[w]], [b], [1.0], "relu")
    neg.backward()
    assert (w.grad, b.grad) == (0.0, 0.0)
    (pos,) = _core._dense([[w]], [b], [3.0], "relu")
    pos.backward()
    assert (w.grad, b.grad) == (3.0, 1.0)


@pytest.mark.parametrize("act", ACTS)
def test_graph_shape(act):
    def body():
        rows, biases, xs = layer(3, 4, 2)
        x0 = ag.Variable(0.5)
        xin = [x0 * 2.0] + xs[1:]
        outs = _core._dense(rows, biases, xin, act)
        for out, row, b in zip(outs, rows, biases):
            per = 1 if act is None else 2
            assert ag.graph_size(out) == per + 1            # + the x0 * 2.0 node
            dot = out if act is None else next(iter(out._prev))
            if act is not None:
                assert out._op == MG_OP[act] and out._prev == {dot}
            assert dot._op == "dot" and dot.op == "dot"
            prev = dot._prev
            assert set(row) <= prev and b in prev and xin[0] in prev
            consts = sorted(p.data for p in prev if not p.requires_grad)
            assert consts == sorted(set([1.0] + xs[1:]))
            assert set(ag.leaves(out)) == set(row) | {b, x0}
        return ag.tape_stats()["nodes"]

    assert in_fresh_thread(body) == 1 + 3 * (1 if act is None else 2)


def test_inputs_mixing_numbers_and_variables():
    np = pytest.importorskip("numpy")
    w = [ag.Variable(v) for v in (0.5, -1.0, 2.0, 0.25, 3.0)]
    b = ag.Variable(0.125)
    xv = ag.Variable(1.5)
    xs = [2, xv, np.float64(-0.5), True, xv * xv]
    (out,) = _core._dense([w], [b], xs, "tanh")
    s = 0.125 + 0.5 * 2 + -1.0 * 1.5 + 2.0 * -0.5 + 0.25 * 1.0 + 3.0 * 2.25
    assert out.data == ag.tanh(ag.Variable(s, requires_grad=False)).data
    out.backward()
    d = 1 - out.data ** 2
    assert xv.grad == pytest.approx(d * (-1.0 + 3.0 * 2 * 1.5), rel=1e-14)
    assert [v.grad for v in w] == pytest.approx([d * 2, d * 1.5, d * -0.5, d * 1.0, d * 2.25],
                                                rel=1e-14)
    assert b.grad == pytest.approx(d, rel=1e-14)
    # a tuple or a generator of inputs
    (out2,) = _core._dense([w], [b], tuple(xs), "tanh")
    (out3,) = _core._dense([w], [b], (v for v in xs), "tanh")
    assert out2.data == out3.data == out.data


def test_shared_weights_accumulate():
    w = ag.Variable(0.5)
    b = ag.Variable(0.0)
    outs = _core._dense([[w, w], [w, w]], [b, b], [1.0, 2.0], None)
    ag.sum(outs).backward()
    assert w.grad == 6.0 and b.grad == 2.0


def test_empty_layers():
    b = ag.Variable(0.3)
    assert _core._dense([], [], [1.0, 2.0], "tanh") == []
    (out,) = _core._dense([[]], [b], [], "sigmoid")
    assert out.data == ag.sigmoid(ag.Variable(0.3, requires_grad=False)).data
    out.backward()
    assert b.grad == pytest.approx(out.data * (1 - out.data), rel=1e-15)


@pytest.mark.parametrize("bad", ["softmax", "Tanh", "ReLU", "", "relu ", 0, 1, False, "none"])
def test_bad_activation(bad):
    rows, biases, xs = layer(2, 2, 0)
    with pytest.raises(ValueError, match="activation"):
        _core._dense(rows, biases, xs, bad)


def test_length_mismatches():
    rows, biases, xs = layer(3, 2, 0)
    with pytest.raises(ValueError, match="biases"):
        _core._dense(rows, biases[:2], xs, None)
    with pytest.raises(ValueError, match="biases"):
        _core._dense(rows, biases + [ag.Variable(0.0)], xs, None)
    with pytest.raises(ValueError, match="inputs"):
        _core._dense(rows, biases, xs + [1.0], None)
    with pytest.raises(ValueError, match="inputs"):
        _core._dense(rows, biases, xs[:1], "relu")
    ragged = [rows[0], rows[1][:1], rows[2]]
    with pytest.raises(ValueError, match="1 weights"):
        _core._dense(ragged, biases, xs, "tanh")


def test_type_errors():
    rows, biases, xs = layer(2, 2, 0)
    with pytest.raises(TypeError):
        _core._dense(rows, biases, [1.0, "2"], None)
    with pytest.raises(TypeError):
        _core._dense(rows, biases, [1.0, None], None)
    with pytest.raises(TypeError):
        _core._dense(rows, [biases[0], "b"], xs, None)
    with pytest.raises(TypeError):
        _core._dense([tuple(r) for r in rows], biases, xs, None)
    with pytest.raises(TypeError):
        _core._dense(None, biases, xs, None)
    with pytest.raises(TypeError):
        _core._dense(rows, biases, None, None)


@pytest.mark.parametrize("act", ACTS)
def test_under_no_grad(act):
    def body():
        rows, biases, xs = layer(3, 4, 9)
        xv = [ag.Variable(v) for v in xs]
        ref = [o.data for o in _core._dense(rows, biases, xv, act)]
        n = ag.tape_stats()["nodes"]
        with ag.no_grad():
            outs = _core._dense(rows, biases, xv, act)
        assert [o.data for o in outs] == ref
        assert all(not o.requires_grad for o in outs)
        assert ag.tape_stats()["nodes"] == n
        return True

    assert in_fresh_thread(body)


def test_two_layers_chain_gradients_vs_finite_differences():
    rng = random.Random(3)
    w1 = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(4)]
    b1 = [rng.uniform(-1, 1) for _ in range(4)]
    w2 = [[rng.uniform(-1, 1) for _ in range(4)]]
    b2 = [rng.uniform(-1, 1)]
    x = [0.3, -0.8, 1.1]

    def f(flat):
        k = 0
        W1 = [[0.0] * 3 for _ in range(4)]
        for r in range(4):
            for c in range(3):
                W1[r][c] = flat[k]
                k += 1
        h = [math.tanh(micrograd_sum(W1[r], b1[r], x)) for r in range(4)]
        return 1 / (1 + math.exp(-micrograd_sum(w2[0], b2[0], h)))

    flat = [v for row in w1 for v in row]
    W1v = [[ag.Variable(v) for v in row] for row in w1]
    h = _core._dense(W1v, [ag.Variable(v) for v in b1], x, "tanh")
    (out,) = _core._dense([[ag.Variable(v) for v in w2[0]]], [ag.Variable(b2[0])], h, "sigmoid")
    assert out.data == pytest.approx(f(flat), rel=1e-15)
    out.backward()
    eps = 1e-6
    for k in range(len(flat)):
        up, dn = list(flat), list(flat)
        up[k] += eps
        dn[k] -= eps
        fd = (f(up) - f(dn)) / (2 * eps)
        assert W1v[k // 3][k % 3].grad == pytest.approx(fd, rel=1e-6, abs=1e-9)
