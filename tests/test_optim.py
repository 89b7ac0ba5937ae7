"""autograd_c.optim.SGD and Adam against torch.optim, step by step.

The same small MLP (2 -> 3 tanh -> 1, mean squared error over four points)
is built with autograd_c (the dense kernel) and with float64 torch scalars
in the same summation order, from the same initial weights; after every
one of 20 steps every parameter must agree to 1e-10.
"""
import math
import random

import pytest

import autograd_c as ag
from autograd_c import _core
from autograd_c.optim import SGD, Adam

X = [(0.5, -1.0), (-0.3, 0.8), (1.2, 0.1), (-0.7, -0.4)]
Y = [0.3, -0.5, 0.9, -0.1]
STEPS = 20


def init_weights(seed=0):
    rng = random.Random(seed)
    w1 = [[rng.uniform(-1, 1) for _ in range(2)] for _ in range(3)]
    b1 = [rng.uniform(-0.5, 0.5) for _ in range(3)]
    w2 = [[rng.uniform(-1, 1) for _ in range(3)]]
    b2 = [rng.uniform(-0.5, 0.5)]
    return w1, b1, w2, b2


class AgModel:
    def __init__(self, seed=0):
        w1, b1, w2, b2 = init_weights(seed)
        self.w1 = [[ag.Variable(v) for v in row] for row in w1]
        self.b1 = [ag.Variable(v) for v in b1]
        self.w2 = [[ag.Variable(v) for v in row] for row in w2]
        self.b2 = [ag.Variable(v) for v in b2]

    def params(self):
        return [p for row in self.w1 for p in row] + self.b1 + \
               [p for row in self.w2 for p in row] + self.b2

    def loss(self):
        terms = []
        for x, t in zip(X, Y):
            h = _core._dense(self.w1, self.b1, list(x), "tanh")
            (o,) = _core._dense(self.w2, self.b2, h, None)
            d = o - t
            terms.append(d * d)
        return ag.sum(terms) * 0.25


class TorchModel:
    def __init__(self, torch, seed=0):
        self.torch = torch
        w1, b1, w2, b2 = init_weights(seed)
        t = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        self.w1 = [[t(v) for v in row] for row in w1]
        self.b1 = [t(v) for v in b1]
        self.w2 = [[t(v) for v in row] for row in w2]
        self.b2 = [t(v) for v in b2]

    def params(self):
        return [p for row in self.w1 for p in row] + self.b1 + \
               [p for row in self.w2 for p in row] + self.b2

    @staticmethod
    def dense(rows, biases, x, act):
        out = []
        for row, b in zip(rows, biases):
            s = b
            for w, xi in zip(row, x):
                s = s + w * xi
            out.append(act(s) if act else s)
        return out

    def loss(self):
        torch = self.torch
        total = None
        for x, t in zip(X, Y):
            h = self.dense(self.w1, self.b1, x, torch.tanh)
            (o,) = self.dense(self.w2, self.b2, h, None)
            d = o - t
            total = d * d if total is None else total + d * d
        return total * 0.25


def assert_params_equal(ag_params, t_params, step, tol=1e-10):
    for k, (p, q) in enumerate(zip(ag_params, t_params)):
        ref = q.item()
        assert abs(p.data - ref) <= tol * max(1.0, abs(ref)), \
            f"step {step}, parameter {k}: {p.data!r} vs torch {ref!r}"


def train_both(make_ag_opt, make_t_opt, steps=STEPS, between=None):
    torch = pytest.importorskip("torch")
    am = AgModel()
    tm = TorchModel(torch)
    aopt = make_ag_opt(am.params())
    topt = make_t_opt(tm.params())
    for step in range(steps):
        aopt.zero_grad()
        topt.zero_grad()
        la = am.loss()
        lt = tm.loss()
        assert la.data == pytest.approx(lt.item(), rel=1e-13)
        la.backward()
        lt.backward()
        for p, q in zip(am.params(), tm.params()):
            assert p.grad == pytest.approx(q.grad.item(), rel=1e-11, abs=1e-15)
        aopt.step()
        topt.step()
        assert_params_equal(am.params(), tm.params(), step)
        if between is not None:
            between(step, am, tm, aopt, topt)
    return am, tm


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01),
]


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    am, _ = train_both(lambda ps: SGD(ps, **cfg), lambda ps: torch.optim.SGD(ps, **cfg))
    # training did something
    assert am.loss().data < AgModel().loss().data


ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.01),
    dict(lr=0.05, betas=(0.3, 0.5), eps=1e-3, weight_decay=0.1),
    dict(lr=0.01, betas=(0.0, 0.0)),
]


@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    am, _ = train_both(lambda ps: Adam(ps, **cfg), lambda ps: torch.optim.Adam(ps, **cfg))
    assert am.loss().data < AgModel().loss().data


@pytest.mark.parametrize("which, cfg", [("sgd", c) for c in SGD_CONFIGS] +
                         [("adam", c) for c in ADAM_CONFIGS], ids=str)
def test_update_arithmetic_with_given_gradients(which, cfg):
    """The optimiser's arithmetic alone: both sides get the same gradients,
    including 0, tiny and huge ones."""
    torch = pytest.importorskip("torch")
    cls, tcls = (SGD, torch.optim.SGD) if which == "sgd" else (Adam, torch.optim.Adam)
    rng = random.Random(7)
    n = 60
    values = [rng.uniform(-2, 2) for _ in range(n)]
    ps = [ag.Variable(v) for v in values]
    qs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    opt, topt = cls(ps, **cfg), tcls(qs, **cfg)
    special = [0.0, 1e-30, -1e-300, 1e10, -3.5e8, 5e-324]
    for step in range(STEPS):
        for k, (p, q) in enumerate(zip(ps, qs)):
            g = special[(k + step) % len(special)] if k % 5 == 0 else rng.uniform(-3, 3)
            p.grad = g
            q.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        topt.step()
        for k, (p, q) in enumerate(zip(ps, qs)):
            ref = q.item()
            assert abs(p.data - ref) <= 1e-13 * max(1.0, abs(ref)), (step, k, p.data, ref)


def test_lr_changed_and_parameters_reassigned_between_steps():
    torch = pytest.importorskip("torch")

    def between(step, am, tm, aopt, topt):
        if step == 5:
            aopt.lr = 0.02
            for g in topt.param_groups:
                g["lr"] = 0.02
        if step in (7, 12):
            # re-assign some parameters, as a user clipping or re-initialising would
            for k, (p, q) in enumerate(zip(am.params(), tm.params())):
                if k % 3 == 0:
                    v = max(-0.5, min(0.5, p.data)) + 0.125
                    p.data = v
                    with torch.no_grad():
                        q.copy_(torch.tensor(v, dtype=torch.float64))

    for cls, tcls, cfg in [(SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                           (Adam, torch.optim.Adam, dict(lr=0.03, weight_decay=0.01))]:
        train_both(lambda ps: cls(ps, **cfg), lambda ps: tcls(ps, **cfg), between=between)


@pytest.mark.parametrize("kind", ["sgd", "sgd_momentum_wd", "adam", "adam_wd"])
def test_step_without_backward_uses_zero_gradients(kind):
    torch = pytest.importorskip("torch")
    cfg = {"sgd": (SGD, torch.optim.SGD, dict(lr=0.1)),
           "sgd_momentum_wd": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
           "adam": (Adam, torch.optim.Adam, dict(lr=0.1)),
           "adam_wd": (Adam, torch.optim.Adam, dict(lr=0.1, weight_decay=0.1))}[kind]
    cls, tcls, kw = cfg
    am, tm = AgModel(), TorchModel(torch)
    aopt, topt = cls(am.params(), **kw), tcls(tm.params(), **kw)
    before = [p.data for p in am.params()]
    for step in range(3):
        for q in tm.params():
            q.grad = torch.zeros((), dtype=torch.float64)
        aopt.step()
        topt.step()
        assert_params_equal(am.params(), tm.params(), step)
    moved = [p.data != b for p, b in zip(am.params(), before)]
    assert all(moved) if "wd" in kind else not any(moved)
    # then real steps, still in agreement (momentum / moment buffers included)
    for step in range(3, 8):
        aopt.zero_grad()
        topt.zero_grad()
        am.loss().backward()
        tm.loss().backward()
        aopt.step()
        topt.step()
        assert_params_equal(am.params(), tm.params(), step)


def test_step_inside_no_grad_is_the_same():
    results = []
    for use_no_grad in (False, True):
        m = AgModel()
        opt = Adam(m.params(), lr=0.05)
        for _ in range(5):
            opt.zero_grad()
            m.loss().backward()
            if use_no_grad:
                with ag.no_grad():
                    opt.step()
            else:
                opt.step()
        results.append([p.data for p in m.params()])
    assert results[0] == results[1]


def test_zero_grad_and_grads_kept_by_step():
    m = AgModel()
    opt = SGD(m.params(), lr=0.1)
    loss = m.loss()
    loss.backward()
    g1 = [p.grad for p in m.params()]
    assert any(g != 0.0 for g in g1)
    loss.backward()                    # accumulates (contribution by contribution: ulps may differ)
    assert [p.grad for p in m.params()] == pytest.approx([2 * g for g in g1], rel=1e-14)
    opt.zero_grad()
    assert all(p.grad == 0.0 for p in m.params())
    loss.backward()
    assert [p.grad for p in m.params()] == g1
    before = [p.data for p in m.params()]
    opt.step()
    # step changes values by -lr * grad, and leaves the gradients alone (as torch)
    assert [p.grad for p in m.params()] == g1
    assert [p.data for p in m.params()] == [b + (-0.1) * g for b, g in zip(before, g1)]
    # the old graph used the previous values: backward through it is refused
    with pytest.raises(RuntimeError, match="new value"):
        loss.backward()
    assert [p.grad for p in m.params()] == g1
    opt.zero_grad()
    m.loss().backward()
    assert all(math.isfinite(p.grad) for p in m.params())


def test_parameter_on_several_graphs_and_optimizers():
    w = ag.Variable(3.0)
    opt1 = SGD([w], lr=0.1)
    opt2 = SGD([w], lr=0.1)
    for opt in (opt1, opt2):
        opt.zero_grad()
        (w * w).backward()
        opt.step()
    assert w.data == pytest.approx(3.0 * 0.8 * 0.8, rel=1e-15)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SGD, Adam])
def test_bad_parameter_lists(cls):
    x = ag.Variable(1.0)
    y = ag.Variable(2.0)
    kw = dict(lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        cls([], **kw)
    with pytest.raises(ValueError, match="empty"):
        cls(iter([]), **kw)
    with pytest.raises(TypeError, match="leaf"):
        cls([x, x * y], **kw)
    with pytest.raises(TypeError, match="constant"):
        cls([x, ag.Variable(1.0, requires_grad=False)], **kw)
    with pytest.raises(TypeError, match="float"):
        cls([x, 1.0], **kw)
    with pytest.raises(ValueError, match="more than once"):
        cls([x, y, x], **kw)
    with pytest.raises(TypeError):
        cls(x, **kw)                  # not an iterable
    with ag.no_grad():
        c = x * y                     # a constant result
    with pytest.raises(TypeError, match="constant"):
        cls([c], **kw)
    opt = cls((p for p in (x, y)), **kw)     # any iterable
    assert opt.params == (x, y)
    assert repr(opt) == f"{cls.__name__}(2 parameters)"


@pytest.mark.parametrize("make, exc", [
    (lambda ps: SGD(ps, lr="fast"), TypeError),
    (lambda ps: SGD(ps, lr=None), TypeError),
    (lambda ps: SGD(ps, lr=[0.1]), TypeError),
    (lambda ps: SGD(ps, lr=-0.1), ValueError),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), ValueError),
    (lambda ps: SGD(ps, lr=0.1, momentum="x"), TypeError),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), ValueError),
    (lambda ps: Adam(ps, lr="a"), TypeError),
    (lambda ps: Adam(ps, lr=-1e-3), ValueError),
    (lambda ps: Adam(ps, betas=0.9), TypeError),
    (lambda ps: Adam(ps, betas=(0.9,)), TypeError),
    (lambda ps: Adam(ps, betas=(0.9, 0.99, 0.5)), TypeError),
    (lambda ps: Adam(ps, betas=("a", "b")), TypeError),
    (lambda ps: Adam(ps, betas=(None, 0.9)), TypeError),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError),
    (lambda ps: Adam(ps, eps=-1e-8), ValueError),
    (lambda ps: Adam(ps, eps="x"), TypeError),
    (lambda ps: Adam(ps, weight_decay=-0.1), ValueError),
])
def test_bad_hyperparameters(make, exc):
    with pytest.raises(exc):
        make([ag.Variable(1.0)])


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr="0.1"),
    lambda ps: SGD(ps, lr=0.1, momentum="0.9"),
    lambda ps: Adam(ps, lr=b"0.01"),
    lambda ps: Adam(ps, betas=("0.9", "0.999")),
    lambda ps: Adam(ps, eps="1e-8"),
])
def test_numeric_strings_rejected(make):
    with pytest.raises(TypeError, match="real number"):
        make([ag.Variable(1.0)])


def test_numpy_hyperparameters_accepted():
    np = pytest.importorskip("numpy")
    w = ag.Variable(1.0)
    opt = Adam([w], lr=np.float64(0.1), betas=np.array([0.9, 0.999]), eps=np.float32(1e-8))
    w.grad = 1.0
    opt.step()
    assert w.data == pytest.approx(0.9, rel=1e-6)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_parameter_made_constant_after_construction(cls):
    a, b = ag.Variable(1.0), ag.Variable(2.0)
    opt = cls([a, b], lr=0.1)
    b.requires_grad = False
    a.grad = 1.0
    with pytest.raises(TypeError, match="parameter 1"):
        opt.step()


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_failed_step_changes_nothing(cls):
    a, b = ag.Variable(1.0), ag.Variable(2.0)
    opt = cls([a, b], lr=0.1)
    b.requires_grad = False
    a.grad = 1.0
    with pytest.raises(TypeError):
        opt.step()
    assert a.data == 1.0
    assert getattr(opt, "_steps", 0) == 0
