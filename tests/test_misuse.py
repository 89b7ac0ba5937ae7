"""Issue 8, section 6: smaller defects -- what a user gets wrong, or does in an
unusual order, and what they should then see (checked against PyTorch and
micrograd where they define the behaviour).

Each test failed before the fix of issue 8 (the optimiser, grad-mode and
nn.Layer ones in the Python layer, the others in the compiled core).
"""
import gc
import math
import tracemalloc

import pytest

import autograd_c as ag
from autograd_c import nn
from autograd_c.optim import SGD, Adam
from helpers import in_fresh_thread

NAN, INF = math.nan, math.inf


# ---------------------------------------------------------------------------
# optimisers: hyperparameters (Python layer, fixed)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda ps: Adam(ps, lr=NAN),
    lambda ps: Adam(ps, eps=NAN),
    lambda ps: Adam(ps, weight_decay=NAN),
    lambda ps: Adam(ps, betas=(NAN, 0.999)),
    lambda ps: Adam(ps, betas=(0.9, NAN)),
    lambda ps: Adam(ps, betas=(INF, 0.999)),
    lambda ps: Adam(ps, betas=(0.9, INF)),
    lambda ps: Adam(ps, lr=-INF),
    lambda ps: Adam(ps, eps=-INF),
    lambda ps: SGD(ps, lr=NAN),
    lambda ps: SGD(ps, lr=0.1, momentum=NAN),
    lambda ps: SGD(ps, lr=0.1, weight_decay=NAN),
    lambda ps: SGD(ps, lr=-INF),
    lambda ps: SGD(ps, lr=0.1, momentum=-INF),
], ids=["adam-lr-nan", "adam-eps-nan", "adam-wd-nan", "adam-beta1-nan", "adam-beta2-nan",
        "adam-beta1-inf", "adam-beta2-inf", "adam-lr--inf", "adam-eps--inf", "sgd-lr-nan",
        "sgd-momentum-nan", "sgd-wd-nan", "sgd-lr--inf", "sgd-momentum--inf"])
def test_optimiser_refuses_nan_hyperparameters(make):
    """nan (and -inf, and inf betas) hyperparameters raise ValueError at
    construction, as torch.optim.Adam does (torch's SGD lets nan through and
    then turns every parameter into nan; we refuse it there too)."""
    p = ag.Variable(1.0)
    with pytest.raises(ValueError, match="Invalid|betas"):
        make([p])


@pytest.mark.parametrize("make", [
    lambda ps: Adam(ps, lr=INF),
    lambda ps: Adam(ps, eps=INF),
    lambda ps: Adam(ps, weight_decay=INF),
    lambda ps: SGD(ps, lr=INF),
    lambda ps: SGD(ps, lr=0.1, momentum=INF),
    lambda ps: SGD(ps, lr=0.1, weight_decay=INF),
])
def test_optimiser_accepts_inf_where_torch_does(make):
    """torch.optim accepts +inf for lr, eps, weight_decay and momentum."""
    make([ag.Variable(1.0)])


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_optimiser_params_are_fixed(cls):
    """params is a tuple fixed at construction: extending or replacing it
    fails with a clear error instead of crashing the C kernel."""
    p, q = ag.Variable(1.0), ag.Variable(2.0)
    opt = cls([p, q], lr=0.1)
    assert opt.params == (p, q)
    with pytest.raises(AttributeError):
        opt.params.append(ag.Variable(3.0))
    with pytest.raises(TypeError):
        opt.params[0] = 1.5
    with pytest.raises(AttributeError, match="fixed at construction"):
        opt.params = [p]
    p.grad, q.grad = 1.0, -1.0
    opt.step()
    assert p.data < 1.0 and q.data > 2.0


# ---------------------------------------------------------------------------
# grad mode and nn (Python layer, fixed)
# ---------------------------------------------------------------------------

def test_reused_set_grad_enabled_object():
    """A set_grad_enabled(False) object used in two with-blocks disables
    recording in both and restores the previous mode after each, as
    torch.set_grad_enabled does (before: the second block recorded and its
    exit raised IndexError)."""
    def body():
        x = ag.Variable(2.0)
        s = ag.set_grad_enabled(False)
        with s:
            assert not ag.is_grad_enabled()
            assert not (x * x).requires_grad
        assert ag.is_grad_enabled()
        with s:
            assert not ag.is_grad_enabled()
            assert not (x * x).requires_grad
        assert ag.is_grad_enabled()
        with s, s:                       # nested reuse
            assert not ag.is_grad_enabled()
        assert ag.is_grad_enabled()
        with ag.no_grad():
            t = ag.set_grad_enabled(True)
            with t:
                assert ag.is_grad_enabled()
            assert not ag.is_grad_enabled()
            with t:
                assert ag.is_grad_enabled()
            assert not ag.is_grad_enabled()
        assert ag.is_grad_enabled()

        @s                               # and as a decorator after the blocks
        def f():
            return ag.is_grad_enabled()
        assert f() is False and ag.is_grad_enabled()
        return True

    assert in_fresh_thread(body)


def test_empty_layer_returns_empty_list():
    """nn.Layer(3, 0)(x) returns [], as micrograd's Layer does."""
    layer = nn.Layer(3, 0)
    assert layer([1.0, 2.0, 3.0]) == []
    assert layer([ag.Variable(1.0), 2.0, 3.0]) == []
    assert layer.parameters() == []
    micrograd = pytest.importorskip("micrograd.nn")
    assert micrograd.Layer(3, 0)([1.0, 2.0, 3.0]) == []


# ---------------------------------------------------------------------------
# core (src/*.pxi)
# ---------------------------------------------------------------------------

def test_leaf_switched_to_constant_after_recording_gets_no_grad():
    """A leaf switched to requires_grad=False after it was recorded no longer
    accumulates .grad, as in PyTorch (AccumulateGrad skips a tensor that no
    longer requires grad).  Its gradient was 0 and stays 0; other leaves
    still get theirs."""
    x, w = ag.Variable(2.0), ag.Variable(3.0)
    y = x * x * w
    x.requires_grad = False
    y.backward()
    assert w.grad == 4.0
    assert x.grad == 0.0


def test_micrograd_positional_children_is_not_a_constant():
    """micrograd's Value(data, _children=(), _op='') takes children
    positionally; Value(2.0, ()) must not silently make a constant.  Either
    it is a leaf that requires grad (micrograd's meaning), or a TypeError
    says that requires_grad must be a bool."""
    from autograd_c.engine import Value
    try:
        v = Value(2.0, ())
    except TypeError as e:
        assert "requires_grad" in str(e)
        return
    assert v.requires_grad
    (v * v).backward()
    assert v.grad == 4.0


@pytest.mark.parametrize("flag", ["no", "", 1.5, [], None], ids=repr)
def test_requires_grad_must_be_a_bool(flag):
    """requires_grad="no" (truthy) counted as True; torch raises TypeError:
    "argument 'requires_grad' must be bool, not str".  Expected: TypeError
    for anything but a bool (or a NumPy bool)."""
    with pytest.raises(TypeError, match="requires_grad"):
        ag.Variable(1.0, requires_grad=flag)


def test_requires_grad_accepts_bools():
    np = pytest.importorskip("numpy")
    assert ag.Variable(1.0, requires_grad=True).requires_grad
    assert not ag.Variable(1.0, requires_grad=False).requires_grad
    assert not ag.Variable(1.0, requires_grad=np.bool_(False)).requires_grad


class Softplus(ag.Function):
    def forward(self, x):
        return math.log1p(math.exp(x))

    def backward(self, gy):
        (x,) = self.inputs
        return gy / (1.0 + math.exp(-x))


def _bytes_per_node(shared, n=20_000):
    def body():
        x = ag.Variable(0.3)
        f = Softplus()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            outs = [(f if shared else Softplus())(x) for _ in range(n)]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(outs) == n
        return (after - before) / n
    return in_fresh_thread(body)


def test_function_instance_per_call_is_cheap():
    """The README's `Softplus()(x)` pattern (one instance per call) costs a
    threading.local per node, ~1.3 KB (Python allocations) against ~160 B
    for a shared instance.  Expected: at most 400 B more per node than a
    shared instance (an instance and its attribute dict)."""
    shared = _bytes_per_node(True)
    per_call = _bytes_per_node(False)
    assert shared < 400, shared
    assert per_call - shared <= 400, (per_call, shared)


def test_function_instance_per_call_gradients():
    """Whatever the storage, one instance per call gives each node its own inputs."""
    xs = [ag.Variable(float(k) / 4) for k in range(-8, 9)]
    ys = [Softplus()(x) for x in xs]
    s = ag.sum(ys)
    s.backward()
    for x, y in zip(xs, ys):
        assert y.data == pytest.approx(math.log1p(math.exp(x.data)), rel=1e-15)
        assert x.grad == pytest.approx(1.0 / (1.0 + math.exp(-x.data)), rel=1e-15)


def test_grad_assignment_keeps_negative_zero():
    """x.grad = -0.0 reads back -0.0, as in PyTorch (a leaf with an entry on
    the tape used to return grad_value + leaf_grad[k] = -0.0 + 0.0 = 0.0)."""
    x = ag.Variable(1.0)
    y = x * 2.0                       # x now has a current entry in the tape's leaf table
    x.grad = -0.0
    assert math.copysign(1.0, x.grad) == -1.0
    assert y.data == 2.0


def test_grad_assignment_keeps_negative_zero_without_entry():
    x = ag.Variable(1.0)
    x.grad = -0.0
    assert math.copysign(1.0, x.grad) == -1.0
