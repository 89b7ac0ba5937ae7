"""Acceptance cases, part 2: the seed notebooks' programs (/work/shared/seeds/)
that tests/test_seeds_core.py does not already reproduce, written with the
core API only (the custom-Function programs are in test_seed_functions.py).

Each test names the notebook cell it reproduces; expected numbers are copied
from the notebook output.  Where a cell prints nothing (or errors because of
a bug in the notebook's own classes) the comment says where the number comes
from instead.
"""
import math

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=0.0)


# ---------------------------------------------------------------------------
# seed 003: "Automatic Gradient Computation - Reverse Mode" (linear regression)
# ---------------------------------------------------------------------------

# In [11]: the loss printed for epochs 0..44 (the notebook output stops there)
SEED003_LOSSES = [
    300.1559001591283, 285.44535907353605, 271.2088599879437, 257.44640290235145,
    244.15798781675892, 231.34361473116684, 219.00328364557475, 207.13699455998363,
    195.74474747439248, 184.82654238880122, 174.38237930320975, 164.41225821761833,
    154.91617913202657, 145.89414204643492, 137.34614696084307, 129.27219387525116,
    121.67228278965922, 114.54641370406704, 107.8945866184748, 101.71680153288244,
    96.01305844729002, 90.78335736169747, 86.02769827610484, 81.74608119051206,
    77.93850610491918, 74.60497301932622, 71.74548193373316, 69.36003284814001,
    67.44862576254674, 66.01126067695338, 65.04793759135987, 64.5586565057663,
    63.731999268942545, 63.24944218334905, 62.42950894652532, 61.95367586093179,
    61.1404666241081, 60.6713575385146, 59.864872301690916, 59.40248721609737,
    58.60272597927365, 58.14706489368013, 57.3540276568564, 56.9050905712629,
    56.118777334439194,
]

# In [13]: the predictions printed after training, f"{round(m*x + c, 2):6.2f}"
SEED003_PREDICTIONS = [
    -48.89, -46.89, -44.90, -42.90, -40.91, -38.92, -36.92, -34.93, -32.93, -30.94,
    -28.94, -26.95, -24.95, -22.96, -20.97, -18.97, -16.98, -14.98, -12.99, -10.99,
    -9.00, -7.01, -5.01, -3.02, -1.02, 0.97, 2.97, 4.96, 6.95, 8.95,
    10.94, 12.94, 14.93, 16.93, 18.92, 20.92, 22.91, 24.90, 26.90, 28.89,
    30.89,
]


def test_seed003_linear_regression_training_loop():
    # In [8]: ground truths (the random draw printed "2 -9")
    M, C = 2, -9
    X = [x for x in range(-20, 21)]
    Y = [M * x + C for x in X]
    assert Y[:3] == [-49, -47, -45] and Y[-1] == 31
    # In [9]/[10]: m, c drawn by random.random(), printed
    m = Variable(0.764340511813275)
    c = Variable(0.2950141610814745)

    # In [11]
    lr = 0.001
    epochs = 2000
    printed = []
    for epoch in range(epochs):
        loss = 0
        for x, y in zip(X, Y):
            yHat = (m * x) + c
            loss += (y - yHat) ** 2
        loss /= len(X)
        m.grad = 0                       # loss.zero_grad()
        c.grad = 0
        loss.backward()

        # `for param in loss.parameters()` walks the expression TREE, so it
        # yields m and c once per use, i.e. len(X) = 41 times each: the clipped
        # step is applied 41 times per epoch.  It also yields every recorded
        # node, the loss itself first (its grad is 1): the notebook steps
        # loss.data by -lr * clip(1) before printing it.
        gm = max(-1, min(1, m.grad))
        gc = max(-1, min(1, c.grad))
        for _ in range(len(X)):
            m.data -= lr * gm
            c.data -= lr * gc
        printed.append(loss.data - lr * max(-1, min(1, loss.grad)))
        if epoch == 0:
            # d loss / d m and d c at the initial point (m, c): closed form
            n = len(X)
            r = [y - (0.764340511813275 * x + 0.2950141610814745) for x, y in zip(X, Y)]
            assert m.grad == pytest.approx(-2 / n * sum(ri * x for ri, x in zip(r, X)), rel=1e-12)
            assert c.grad == pytest.approx(-2 / n * sum(r), rel=1e-12)

    assert printed[:45] == [pytest.approx(v, rel=1e-12, abs=0.0) for v in SEED003_LOSSES]
    assert printed[-1] < 0.2          # still oscillating (clipped steps), but near zero

    # In [12]: print(m.data, c.data)
    assert m.data == pytest.approx(1.9943405118131659, abs=1e-12)
    assert c.data == pytest.approx(-8.999999999999597, abs=1e-12)
    # converged to the true slope and intercept (to the clipped step size 41 * lr)
    assert abs(m.data - M) < 41 * lr and abs(c.data - C) < 1e-9

    # In [13]: inference
    lines = [f"{idx:2d}: {round((m.data * x) + c.data, 2):6.2f}, {y:5d}"
             for idx, (x, y) in enumerate(zip(X, Y))]
    assert lines[0] == " 0: -48.89,   -49"
    assert lines[20] == "20:  -9.00,    -9"
    assert lines[40] == "40:  30.89,    31"
    assert [round((m.data * x) + c.data, 2) for x in X] == SEED003_PREDICTIONS


# ---------------------------------------------------------------------------
# seed 004: DeZero steps 1-22, the parts that need no custom Function class
# ---------------------------------------------------------------------------

def numerical_diff(f, x, eps=1e-4):
    # step 1-5, In [2], with autograd_c's Variable
    x0 = Variable(x.data - eps)
    x1 = Variable(x.data + eps)
    y0 = f(x0)
    y1 = f(x1)
    return (y1.data - y0.data) / (2 * eps)


def square(x):
    return x ** 2


def test_seed004_numerical_diff():
    # step 1-5, In [2] defines numerical_diff but prints nothing; the numbers
    # are what the notebook's own (NumPy) classes give, as printed in the
    # DeZero book's step 4.
    assert numerical_diff(square, Variable(2.0)) == approx(4.000000000004)
    composite = lambda x: square(ag.exp(square(x)))        # noqa: E731
    num = numerical_diff(composite, Variable(0.5))
    assert num == approx(3.2974426293330694)
    # In [9]: backprop gives 3.297442541400256; the two agree to ~1e-8
    x = Variable(0.5)
    composite(x).backward()
    assert x.grad == approx(3.297442541400256)
    assert abs(x.grad - num) < 1e-7
    assert x.grad != num                                  # they are different methods


def test_seed004_step10_square_tests():
    # In [72]: class SquareTest(unittest.TestCase)
    # test_forward
    x = Variable(np.float64(2.0))
    assert square(x).data == 4.0
    # test_backward
    x = Variable(np.float64(3.0))
    y = square(x)
    y.backward()
    assert x.grad == 6.0
    # test_gradient_check: x = Variable(np.random.rand(1)) -- a seeded draw here
    rng = np.random.default_rng(10)
    for value in rng.random(5):
        x = Variable(value)
        y = square(x)
        y.backward()
        num_grad = numerical_diff(square, x)
        assert np.allclose(x.grad, num_grad)
        assert x.grad == approx(2 * value)


def test_seed004_step18_config_switch():
    # In [211]: Config.enable_backprop = True / False, a global switch
    previous = ag.is_grad_enabled()
    try:
        ag.set_grad_enabled(True)                  # Config.enable_backprop = True
        x = Variable(1.0)                          # np.ones(...) in the notebook
        y = square(square(square(x)))
        y.backward()
        assert y.data == 1.0
        assert x.grad == 8.0                       # d x^8 / dx at 1
        ag.set_grad_enabled(False)                 # Config.enable_backprop = False
        x = Variable(1.0)
        y = square(square(square(x)))
        assert y.data == 1.0
        assert y.requires_grad is False and y.op == ""
        with pytest.raises(RuntimeError):
            y.backward()
    finally:
        ag.set_grad_enabled(previous)
    assert ag.is_grad_enabled() is previous


def test_seed004_step18_using_config_and_no_grad():
    # In [217]: with using_config('enable_backprop', False): y = square(x)
    with ag.set_grad_enabled(False):
        x = Variable(2.0)
        y = square(x)
    assert y.data == 4.0 and y.requires_grad is False
    assert ag.is_grad_enabled() is True           # the old value comes back
    # In [219]: def no_grad(): return using_config('enable_backprop', False)
    def no_grad():
        return ag.set_grad_enabled(False)
    with no_grad():
        x = Variable(2.0)
        y = square(x)
    assert y.data == 4.0 and y.requires_grad is False
    assert ag.is_grad_enabled() is True
    # and outside the block recording is back on
    y = square(x)
    y.backward()
    assert x.grad == 4.0


def test_seed004_step19_name():
    # In [222]: Variable(data, name=None) -- "I have a name from now on"
    x = Variable(np.float64(1.0), name="x")
    assert x.name == "x"
    assert Variable(1.0).name is None
    y = square(x)
    y.name = "y"
    assert y.name == "y" and "name='y'" in repr(y)


def test_seed004_step21_numpy_scalars_on_either_side():
    # In [465]: y = x + np.array(3.0)  -> variable(5.0)   (a NumPy scalar here)
    x = Variable(np.float64(2.0))
    y = x + np.float64(3.0)
    assert y.data == 5.0
    y = np.float64(3.0) + x
    assert y.data == 5.0 and y.requires_grad
    # In [487]: y = 3.0 * x + 1.0 (errors in the notebook; 7.0 intended)
    y = np.float64(3.0) * x + np.float64(1.0)
    assert y.data == 7.0
    y.backward()
    assert x.grad == 3.0


# ---------------------------------------------------------------------------
# seed 001: micrograd-style Value
# ---------------------------------------------------------------------------

def test_seed001_labels_set_after_recording():
    # In [126]: d = a*b; d.label = 'd'  ...  print(d, e, f)
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b; d.name = "d"
    e = d + c; e.name = "e"
    f = e.tanh(); f.name = "f"
    # Value d(data = -6) Value e(data = 4.0) Value f(data = 0.999329299739067)
    assert [(v.name, v.data) for v in (d, e, f)] == [
        ("d", -6.0), ("e", 4.0), ("f", approx(0.999329299739067))]
    assert repr(f) == "Variable(data=0.999329299739067, grad=0.0, name='f')"
    f.backward()
    assert repr(e) == "Variable(data=4.0, grad=0.0013409506830258655, name='e')"


def test_seed001_output_grad_set_by_hand_then_backward():
    # In [13]-[17]: m = n + n; m.grad = 1.0; print(n.grad, m.grad); m.backward()
    n = Variable(4.0, name="n")
    m = n + n; m.name = "m"
    assert (m.data, n.data) == (8.0, 4.0)
    assert (n.grad, m.grad) == (0.0, 0.0)
    m.grad = 1.0
    assert (n.grad, m.grad) == (0.0, 1.0)       # In [16]: 0.0 1.0
    m.backward()
    assert (n.grad, m.grad) == (2.0, 1.0)       # In [17]: "after backprop" n 2.0, m 1.0


def test_seed001_tanh_from_exp_micrograd_routes():
    # In [3] / In [9]: the same expression built exactly the way micrograd
    # builds it: f - 1 is f + (-1) (__sub__ = self + (-other)) and
    # x / y is x * y**-1 (__truediv__).
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b
    e = d + c
    two_e = 2 * e
    f = two_e.exp()
    f_minus = f + (-1)
    f_plus = f + 1
    inv = f_plus ** -1
    g = f_minus * inv
    # the "Gradients before backprop" listing: values
    assert (d.data, e.data, two_e.data) == (-6.0, 4.0, 8.0)
    assert f.data == approx(2980.9579870417283)
    assert f_minus.data == approx(2979.9579870417283)
    assert f_plus.data == approx(2981.9579870417283)
    assert inv.data == approx(0.0003353501304664781)
    assert g.data == approx(0.999329299739067)
    g.backward()
    # "Gradients after backprop"
    assert c.grad == approx(0.001340950683026065)
    assert a.grad == approx(-0.004022852049078195)
    assert b.grad == approx(0.00268190136605213)
    assert d.grad == approx(0.001340950683026065)
    assert e.grad == approx(0.001340950683026065)
    assert two_e.grad == approx(0.0006704753415130325)
    assert f.grad == pytest.approx(2.2491942000779598e-07, rel=1e-9)   # difference of two terms
    assert f_minus.grad == approx(0.0003353501304664781)
    assert f_plus.grad == approx(-0.0003351252110464703)
    # d g / d inv = f_minus
    assert inv.grad == approx(2979.9579870417283)
    assert math.isclose(a.grad, -3 * (1 - math.tanh(4.0) ** 2), rel_tol=1e-10)
