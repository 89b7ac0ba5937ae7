"""Acceptance cases: the numbers printed in the seed notebooks
(/work/shared/seeds/) that only need the core API.  Each test names the
notebook cell it reproduces; the expected numbers are copied from the
notebook output.  Custom Function classes are left for later."""
import math

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=0.0)


# ---------------------------------------------------------------------------
# seed 000: "Creating our own Auto Differentiation (AutoGrad) framework"
# ---------------------------------------------------------------------------

def test_seed000_sum_times_c():
    # In [76]: res = (a + b) * c
    a, b, c = Variable(2), Variable(3), Variable(4)
    res = (a + b) * c
    assert res.value == 20
    res.backward()
    assert (a.grad, b.grad, c.grad) == (4.0, 4.0, 5.0)


def test_seed000_variable_used_twice_and_intermediate_grad():
    # In [77]: c = a + b; res = a * c
    a, b = Variable(4), Variable(3)
    c = a + b
    res = a * c
    assert res.value == 28
    res.backward()
    assert (a.grad, b.grad, c.grad) == (11.0, 4.0, 4.0)
    # In [78]: a.grad = b.grad = c.grad = 0; c.backProp()
    a.grad = b.grad = c.grad = 0
    c.backward()
    assert (a.grad, b.grad) == (1.0, 1.0)


def test_seed000_backward_twice_accumulates_then_zero():
    # In [81] / In [83]: res = (a + b) * a
    a, b = Variable(4), Variable(3)
    res = (a + b) * a
    res.backward()
    assert (a.grad, b.grad) == (11.0, 4.0)
    res.backward()
    assert (a.grad, b.grad) == (22.0, 8.0)
    res.zero_grad()            # zeroGradsRecursively()
    res.backward()
    assert (a.grad, b.grad) == (11.0, 4.0)


def test_seed000_requires_grad_false():
    # In [85]: a = Variable(4, True); b = Variable(3, False)
    a = Variable(4, True)
    b = Variable(3, False)
    res = (a + b) * a
    res.backward()
    assert a.grad == 11.0
    assert b.grad == 0.0


def test_seed000_power():
    # In [89]: res = a ** b
    a, b = Variable(4), Variable(3)
    res = a ** b
    res.backward()
    assert a.grad == 48.0
    assert b.grad == approx(88.722839111673)


def test_seed000_division():
    # In [90]: res = a / b
    a, b = Variable(4), Variable(3)
    (a / b).backward()
    assert a.grad == approx(0.3333333333333333)
    assert b.grad == approx(-0.4444444444444444)
    # In [100]: res = (a / b) * 2
    a, b = Variable(4), Variable(3)
    ((a / b) * 2).backward()
    assert a.grad == approx(0.6666666666666666)
    assert b.grad == approx(-0.8888888888888888)


def test_seed000_exp_times_three():
    # In [91]: res = a.__exp__() * 3  (b unused)
    a, b = Variable(2), Variable(3)
    res = a.exp() * 3
    res.backward()
    assert a.grad == approx(22.16716829679195)
    assert b.grad == 0.0


def test_seed000_numbers_mixed_in():
    # In [93]: res = (a ** 2) * 2 * a
    a = Variable(4)
    ((a ** 2) * 2 * a).backward()
    assert a.grad == 96.0
    # In [94]: res = 2 ** (3 * b)
    b = Variable(3)
    (2 ** (3 * b)).backward()
    assert b.grad == approx(1064.674069340076)
    # In [95] / In [99]: res = (16 / a).__exp__()
    a = Variable(4)
    ag.exp(16 / a).backward()
    assert a.grad == approx(-54.59815003314423)


def test_seed000_zero_grads_recursively_with_radd():
    # In [98]: res = (3 + a) * a ; backward ; zero ; backward
    a = Variable(4)
    res = (3 + a) * a
    res.backward()
    assert a.grad == 11.0
    res.zero_grad()
    res.backward()
    assert a.grad == 11.0


def test_seed000_subtraction():
    # In [101]: c = a - b; res = a * c
    a, b = Variable(5), Variable(3)
    c = a - b
    res = a * c
    assert res.value == 10
    res.backward()
    assert (a.grad, b.grad) == (7.0, -5.0)


def test_seed000_finite_difference_check():
    # In [102]: f = 21 * x**3 at x = 3.2 against a central difference
    eps = 0.001
    x = Variable(3.2)
    f = 21 * (x ** 3)
    f1 = (21 * (x + eps) ** 3 - 21 * (x - eps) ** 3) / (2 * eps)
    f.backward()
    assert x.grad == approx(645.1200000000001)
    assert f1.value == pytest.approx(645.1200210000252, rel=1e-9)
    assert x.grad == pytest.approx(f1.value, rel=1e-7)


# ---------------------------------------------------------------------------
# seed 001: micrograd-style Value with tanh
# ---------------------------------------------------------------------------

def test_seed001_tanh_neuron():
    # In [126] / In [129]: f = tanh(a*b + c)
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b
    e = d + c
    f = e.tanh()
    assert (d.data, e.data) == (-6.0, 4.0)
    assert f.data == approx(0.999329299739067)
    assert f.op == "tanh"
    f.backward()
    assert f.grad == 1.0
    assert e.grad == approx(0.0013409506830258655)
    assert d.grad == approx(0.0013409506830258655)
    assert c.grad == approx(0.0013409506830258655)
    assert a.grad == approx(-0.0040228520490775965)
    assert b.grad == approx(0.002681901366051731)


def test_seed001_node_used_twice():
    # In [13]-[17]: m = n + n
    n = Variable(4.0, name="n")
    m = n + n
    assert m.data == 8.0
    assert (n.grad, m.grad) == (0.0, 0.0)
    m.backward()
    assert (n.grad, m.grad) == (2.0, 1.0)


def test_seed001_tanh_from_exp_matches():
    # In [3] / In [9]: g = (exp(2e) - 1) / (exp(2e) + 1)
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b
    e = d + c
    two_e = 2 * e
    f = two_e.exp()
    f_minus = f - 1
    f_plus = f + 1
    g = f_minus / f_plus
    assert two_e.data == 8.0
    assert f.data == approx(2980.9579870417283)
    assert f_minus.data == approx(2979.9579870417283)
    assert f_plus.data == approx(2981.9579870417283)
    assert g.data == approx(0.999329299739067)
    g.backward()
    assert c.grad == approx(0.001340950683026065)
    assert a.grad == approx(-0.004022852049078195)
    assert b.grad == approx(0.00268190136605213)
    assert d.grad == approx(0.001340950683026065)
    assert e.grad == approx(0.001340950683026065)
    assert two_e.grad == approx(0.0006704753415130325)
    assert f.grad == pytest.approx(2.2491942000779598e-07, rel=1e-9)   # difference of two terms
    assert f_minus.grad == approx(0.0003353501304664781)
    assert f_plus.grad == approx(-0.0003351252110464703)
    # the same gradients as the tanh op, up to rounding
    a2, b2 = Variable(2), Variable(-3)
    ag.tanh(a2 * b2 + 10.0).backward()
    assert a.grad == pytest.approx(a2.grad, rel=1e-10)
    assert b.grad == pytest.approx(b2.grad, rel=1e-10)


# ---------------------------------------------------------------------------
# seed 002: NumberWithGrad
# ---------------------------------------------------------------------------

def test_seed002_chain():
    # In [5]
    a = Variable(3)
    b = a * 4
    c = b + 3
    c.backward()
    assert a.grad == 4.0
    assert b.grad == 1.0


def test_seed002_two_paths():
    # In [8]: e = (b + 3) + b * 5, b = 4a
    a = Variable(3)
    b = a * 4
    c = b + 3
    d = b * 5
    e = c + d
    e.backward()
    assert a.grad == 24.0


def test_seed002_product_of_two_paths():
    # In [6]-[8]: e = (4a + 3) * (a + 2)
    a = Variable(3)
    b = a * 4
    c = b + 3
    d = a + 2
    e = c * d
    e.backward()
    assert a.grad == 35.0


# ---------------------------------------------------------------------------
# seed 004: DeZero steps 1-22 (the parts that need no custom Function class)
# ---------------------------------------------------------------------------

def test_seed004_square_exp_square():
    # In [9]: y = square(exp(square(x))) at x = 0.5
    x = Variable(np.array(0.5).item())
    y = ag.exp(x ** 2) ** 2
    y.backward()
    assert x.grad == approx(3.297442541400256)
    # numerical_diff from step 4 agrees
    eps = 1e-4
    num = ((ag.exp((x.data + eps) ** 2) ** 2).data
           - (ag.exp((x.data - eps) ** 2) ** 2).data) / (2 * eps)
    assert x.grad == pytest.approx(num, rel=1e-6)


def test_seed004_numpy_scalar_input():
    # the same with the NumPy scalar the notebook uses (np.float64)
    x = Variable(np.float64(0.5))
    y = ag.exp(x ** 2) ** 2
    y.backward()
    assert x.grad == approx(3.297442541400256)


def test_seed004_sum_of_squares():
    # In [124]: z = x^2 + y^2
    x, y = Variable(2.0), Variable(3.0)
    z = x ** 2 + y ** 2
    z.backward()
    assert z.data == 13.0
    assert (x.grad, y.grad) == (4.0, 6.0)


def test_seed004_same_variable_twice():
    # In [131]: y = add(x, x)
    x = Variable(3.0)
    y = x + x
    assert y.data == 6.0
    y.backward()
    assert x.grad == 2.0


def test_seed004_accumulation_and_cleargrad():
    # In [133]: without clearing, the second graph adds to the first
    x = Variable(3.0)
    (x + x).backward()
    assert x.grad == 2.0
    ((x + x) + x).backward()
    assert x.grad == 5.0
    # In [137]: cleargrad() in between
    x = Variable(3.0)
    (x + x).backward()
    assert x.grad == 2.0
    x.grad = 0                    # cleargrad()
    ((x + x) + x).backward()
    assert x.grad == 3.0


def test_seed004_intermediate_grads():
    # In [191]: t = x0 + x1; y = x0 + t
    x0, x1 = Variable(1.0), Variable(1.0)
    t = x0 + x1
    y = x0 + t
    y.backward()
    assert (y.grad, t.grad) == (1.0, 1.0)
    assert (x0.grad, x1.grad) == (2.0, 1.0)


def test_seed004_no_grad_mode():
    # In [219]: with no_grad(): y = square(x)
    with ag.no_grad():
        x = Variable(2.0)
        y = x ** 2
    assert y.data == 4.0
    assert y.requires_grad is False
    with pytest.raises(RuntimeError):
        y.backward()


def test_seed004_operators_with_numbers():
    # In [398]: y = a * b + c ; In [465]-[512]: mixed constants, neg, sub, pow
    a, b, c = Variable(3.0), Variable(2.0), Variable(1.0)
    y = a * b + c
    y.backward()
    assert y.data == 7.0
    assert (a.grad, b.grad, c.grad) == (2.0, 3.0, 1.0)
    x = Variable(2.0)
    assert (x + 3.0).data == 5.0
    assert (x + np.float64(3.0)).data == 5.0
    assert (3.0 * x + 1.0).data == 7.0
    assert (-x).data == -2.0
    assert (2.0 - x).data == 0.0
    assert (x - 1.0).data == 1.0
    assert (x ** 3).data == 8.0
    y = 3.0 * x + 1.0
    y.backward()
    assert x.grad == 3.0


def test_seed004_division():
    # step 22 Div: gx0 = gy / x1, gx1 = gy * (-x0 / x1 ** 2)
    x0, x1 = Variable(3.0), Variable(2.0)
    (x0 / x1).backward()
    assert x0.grad == 0.5
    assert x1.grad == -0.75
    x = Variable(2.0)
    (3.0 / x).backward()
    assert x.grad == -0.75
