"""Acceptance cases, part 3: the seed notebooks' programs that need the APIs
added for issue 3: custom ``autograd_c.Function`` subclasses (seed 004's
DeZero functions, seed 000's "grad routes" as functions) and
``Variable._prev`` / ``Variable._op`` / ``autograd_c.graph_size`` /
``autograd_c.leaves`` (seed 001's micrograd Value).

The Function classes are the notebooks' own, changed only where autograd_c's
Function differs from DeZero's: ``self.inputs`` holds the input values
(floats), so ``self.inputs[0].data`` becomes ``self.inputs[0]``.

Each test names the notebook cell it reproduces; expected numbers are copied
from the notebook output (where a cell prints nothing, or errors because of
a bug in the notebook's own classes, the comment says where the number comes
from).
"""
import math

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=0.0)


# ---------------------------------------------------------------------------
# seed 004: DeZero's functions, as autograd_c.Function subclasses
# ---------------------------------------------------------------------------

class Square(ag.Function):            # step 6, In [6]; step 13, In [205]
    def forward(self, x):
        y = x ** 2
        return y

    def backward(self, gy):
        x = self.inputs[0]
        gx = 2 * x * gy
        return gx


class Exp(ag.Function):               # step 6, In [7]
    def forward(self, x):
        y = np.exp(x)                 # a NumPy float64, as in the notebook
        return y

    def backward(self, gy):
        x = self.inputs[0]
        gx = np.exp(x) * gy
        return gx


class Add(ag.Function):               # step 13, In [282]
    def forward(self, x0, x1):
        y = x0 + x1
        return y

    def backward(self, gy):
        return gy, gy


class Mul(ag.Function):               # step 20, In [417]
    def forward(self, x0, x1):
        y = x0 * x1
        return y

    def backward(self, gy):
        x0, x1 = self.inputs[0], self.inputs[1]
        return gy * x1, gy * x0


class Neg(ag.Function):               # step 22, In [492]
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Sub(ag.Function):               # step 22, In [498]
    def forward(self, x0, x1):
        y = x0 - x1
        return y

    def backward(self, gy):
        return gy, -gy


class Div(ag.Function):               # step 22, In [506]
    def forward(self, x0, x1):
        y = x0 / x1
        return y

    def backward(self, gy):
        x0, x1 = self.inputs[0], self.inputs[1]
        gx0 = gy / x1
        gx1 = gy * (-x0 / x1 ** 2)
        return gx0, gx1


class Pow(ag.Function):               # step 22, In [510]: an __init__ with an argument
    def __init__(self, c):
        self.c = c

    def forward(self, x):
        y = x ** self.c
        return y

    def backward(self, gy):
        x = self.inputs[0]
        c = self.c
        gx = c * x ** (c - 1) * gy
        return gx


def square(x):                        # step 9, In [53]
    return Square()(x)


def exp(x):
    return Exp()(x)


def add(x0, x1):                      # In [284] / In [481]
    return Add()(x0, x1)


def mul(x0, x1):
    return Mul()(x0, x1)


def neg(x):
    return Neg()(x)


def sub(x0, x1):
    return Sub()(x0, x1)


def rsub(x0, x1):
    return Sub()(x1, x0)


def div(x0, x1):
    return Div()(x0, x1)


def rdiv(x0, x1):
    return Div()(x1, x0)


def pow(x, c):                        # noqa: A001 - the notebook's name
    return Pow(c)(x)


def numerical_diff(f, x, eps=1e-4):   # step 1-5, In [2]
    x0 = Variable(x.data - eps)
    x1 = Variable(x.data + eps)
    y0 = f(x0)
    y1 = f(x1)
    return (y1.data - y0.data) / (2 * eps)


def test_seed004_step6_square_exp_square():
    # In [8] / In [9]: A = Square(); B = Exp(); C = Square(); y = C(B(A(x)))
    A = Square()
    B = Exp()
    C = Square()
    x = Variable(0.5)
    a = A(x)
    b = B(a)
    y = C(b)
    assert a.data == 0.25
    assert b.data == approx(math.exp(0.25))
    assert y.data == approx(math.exp(0.5))
    assert isinstance(y.data, float) and y.requires_grad and not y.is_leaf
    y.backward()
    assert x.grad == approx(3.297442541400256)          # printed by In [9]
    assert y.grad == 1.0
    assert b.grad == approx(2 * math.exp(0.25))         # C.backward(1.0)
    assert a.grad == approx(2 * math.exp(0.5))          # B.backward(b.grad)


def test_seed004_step9_helper_functions_and_numerical_diff():
    # In [53] / In [57]: y = square(exp(square(x)))
    x = Variable(0.5)
    y = square(exp(square(x)))
    y.backward()
    assert x.grad == approx(3.297442541400256)
    # step 1-5: numerical_diff (the notebook prints nothing; these are what its
    # own NumPy classes give, as printed in the DeZero book's step 4)
    assert numerical_diff(Square(), Variable(2.0)) == approx(4.000000000004)
    num = numerical_diff(lambda v: square(exp(square(v))), Variable(0.5))
    assert num == approx(3.2974426293330694)
    assert abs(x.grad - num) < 1e-7


def test_seed004_step10_square_tests():
    # In [72]: class SquareTest(unittest.TestCase)
    x = Variable(np.float64(2.0))
    assert square(x).data == 4.0                        # test_forward
    x = Variable(np.float64(3.0))
    y = square(x)
    y.backward()
    assert x.grad == 6.0                                # test_backward
    rng = np.random.default_rng(10)                     # test_gradient_check
    for value in rng.random(5):
        x = Variable(value)
        y = square(x)
        y.backward()
        num_grad = numerical_diff(square, x)
        assert np.allclose(x.grad, num_grad)
        assert x.grad == approx(2 * value)


def test_seed004_step12_13_add_two_inputs():
    # In [284]: y = add(x0, x1) -> 5
    x0 = Variable(np.int64(2))
    x1 = Variable(np.int64(3))
    y = add(x0, x1)
    assert y.data == 5.0
    # In [124]: z = add(square(x), square(y))
    x = Variable(2.0)
    y = Variable(3.0)
    z = add(square(x), square(y))
    z.backward()
    assert z.data == 13.0
    assert x.grad == 4.0
    assert y.grad == 6.0


def test_seed004_step14_same_variable_twice_and_cleargrad():
    # In [131]: y = add(x, x)  -> y 6.0, x.grad 2.0 (In [127] printed the bug, 1.0)
    x = Variable(3.0)
    y = add(x, x)
    assert y.data == 6.0
    y.backward()
    assert x.grad == 2.0
    # In [133]: a second graph without clearing accumulates: 2.0 then 5.0
    x = Variable(3.0)
    y = add(x, x)
    y.backward()
    assert x.grad == 2.0
    y = add(add(x, x), x)
    y.backward()
    assert x.grad == 5.0
    # In [137]: x.cleargrad() (self.grad = None) in between: 2.0 then 3.0
    x = Variable(3.0)
    y = add(x, x)
    y.backward()
    assert x.grad == 2.0
    x.grad = None                                        # cleargrad()
    y = add(add(x, x), x)
    y.backward()
    assert x.grad == 3.0


def test_seed004_step16_generations():
    # step 16 orders the functions by generation so that a node is processed
    # after everything using it; the notebook shows the graph only as images:
    # a = square(x); y = add(square(a), square(a)) (DeZero prints 32.0, 64.0)
    x = Variable(2.0)
    a = square(x)
    y = add(square(a), square(a))
    y.backward()
    assert y.data == 32.0
    assert a.grad == 16.0
    assert x.grad == 64.0


def test_seed004_step18_intermediate_grads():
    # In [191]: t = add(x0, x1); y = add(x0, t)
    x0 = Variable(1.0)
    x1 = Variable(1.0)
    t = add(x0, x1)
    y = add(x0, t)
    y.backward()
    assert (y.grad, t.grad) == (1.0, 1.0)
    assert (x0.grad, x1.grad) == (2.0, 1.0)


class CountingSquare(Square):
    calls = {"forward": 0, "backward": 0}

    def forward(self, x):
        CountingSquare.calls["forward"] += 1
        return super().forward(x)

    def backward(self, gy):
        CountingSquare.calls["backward"] += 1
        return super().backward(gy)


def test_seed004_step18_config_switch():
    # In [211]: Config.enable_backprop = True (for ML) / False (for inference)
    CountingSquare.calls.update(forward=0, backward=0)
    sq = lambda v: CountingSquare()(v)                 # noqa: E731
    previous = ag.is_grad_enabled()
    try:
        ag.set_grad_enabled(True)
        x = Variable(1.0)
        y = sq(sq(sq(x)))
        y.backward()
        assert x.grad == 8.0
        assert CountingSquare.calls == {"forward": 3, "backward": 3}
        ag.set_grad_enabled(False)
        x = Variable(1.0)
        y = sq(sq(sq(x)))
        assert y.data == 1.0
        assert y.requires_grad is False                 # nothing recorded
        assert CountingSquare.calls == {"forward": 6, "backward": 3}
        with pytest.raises(RuntimeError):
            y.backward()
        assert CountingSquare.calls["backward"] == 3
    finally:
        ag.set_grad_enabled(previous)


def test_seed004_step18_no_grad():
    # In [217]: with using_config('enable_backprop', False): y = square(x)
    with ag.set_grad_enabled(False):
        x = Variable(2.0)
        y = square(x)
    assert y.data == 4.0 and y.requires_grad is False
    # In [219]: with no_grad(): y = square(x)
    with ag.no_grad():
        x = Variable(2.0)
        y = square(x)
    assert y.data == 4.0 and y.requires_grad is False
    # a Function on constants only gives a constant too
    assert square(Variable(2.0, requires_grad=False)).requires_grad is False
    assert square(2.0).requires_grad is False
    # recording is back after the block
    y = square(x)
    y.backward()
    assert x.grad == 4.0


def test_seed004_step20_mul():
    # In [398]: y = a * b -> variable(6.0)
    a = Variable(3.0)
    b = Variable(2.0)
    assert mul(a, b).data == 6.0
    # In [419]: y = add(mul(a, b), c)  (the cell errors in the notebook because
    # its Variable was redefined without `generation`; intended: 7.0, 2.0, 3.0)
    a = Variable(3.0)
    b = Variable(2.0)
    c = Variable(1.0)
    y = add(mul(a, b), c)
    y.backward()
    assert y.data == 7.0
    assert a.grad == 2.0
    assert b.grad == 3.0
    assert c.grad == 1.0


def test_seed004_step21_numbers_as_inputs():
    # In [465]: y = x + np.array(3.0) -> variable(5.0)
    x = Variable(np.float64(2.0))
    y = add(x, np.float64(3.0))
    assert y.data == 5.0
    # In [483]: y = x + 3.0 -> 5.0 (errors in the notebook)
    y = add(x, 3.0)
    assert y.data == 5.0
    y.backward()
    assert x.grad == 1.0
    # In [487]: y = 3.0 * x + 1.0 -> 7.0 intended (the notebook errors: TypeError)
    x = Variable(2.0)
    y = add(mul(3.0, x), 1.0)
    assert y.data == 7.0
    y.backward()
    assert x.grad == 3.0


def test_seed004_step22_more_operators():
    # In [494]: y = -x -> variable(-2.0)
    x = Variable(2.0)
    y = neg(x)
    assert y.data == -2.0
    y.backward()
    assert x.grad == -1.0
    # In [504]: y1 = 2.0 - x; y2 = x - 1.0 -> variable(0.0), variable(1.0)
    x = Variable(2.0)
    y1 = rsub(x, 2.0)
    y2 = sub(x, 1.0)
    assert (y1.data, y2.data) == (0.0, 1.0)
    y1.backward()
    assert x.grad == -1.0
    x.grad = None
    y2.backward()
    assert x.grad == 1.0
    # In [506]: Div, gx0 = gy / x1, gx1 = gy * (-x0 / x1 ** 2)
    x0, x1 = Variable(3.0), Variable(2.0)
    y = div(x0, x1)
    y.backward()
    assert y.data == 1.5
    assert (x0.grad, x1.grad) == (0.5, -0.75)
    x = Variable(2.0)
    y = rdiv(x, 3.0)                                     # 3.0 / x
    y.backward()
    assert y.data == 1.5 and x.grad == -0.75
    # In [512]: y = x ** 3 -> variable(8.0), with Pow(c) keeping c in __init__
    x = Variable(2.0)
    y = pow(x, 3)
    assert y.data == 8.0
    y.backward()
    assert x.grad == 12.0


def test_seed004_function_instance_reused():
    # DeZero reuses instances (A = Square(); A(x) ...); numerical_diff above
    # calls one Square() twice.  Each call's backward sees that call's inputs.
    sq = Square()
    x = Variable(3.0)
    h = sq(x)
    y = sq(h)
    assert (h.data, y.data) == (9.0, 81.0)
    y.backward()
    assert h.grad == 18.0                                # 2 * 9, not 2 * 3
    assert x.grad == 108.0                               # 4 x^3


# ---------------------------------------------------------------------------
# seed 000: In [96] keeps a backprop *function* per operation (grad routes);
# the same operations as autograd_c.Function subclasses
# ---------------------------------------------------------------------------

class VAdd(ag.Function):
    def forward(self, a, b):
        return a + b

    def backward(self, route_val):
        return route_val, route_val


class VMul(ag.Function):
    def forward(self, a, b):
        return a * b

    def backward(self, route_val):
        a, b = self.inputs
        return route_val * b, route_val * a


class VSub(ag.Function):
    def forward(self, a, b):
        return a - b

    def backward(self, route_val):
        return route_val, -route_val


class VDiv(ag.Function):
    def forward(self, a, b):
        return a / b

    def backward(self, route_val):
        a, b = self.inputs
        return route_val * (1 / b), route_val * (-a / (b ** 2))


class VRaise(ag.Function):
    def forward(self, a, b):
        return a ** b

    def backward(self, route_val):
        a, b = self.inputs
        return (route_val * (b * (a ** (b - 1))),
                route_val * (math.log(a) * (a ** b)))


class VUnary(ag.Function):
    def forward(self, a):
        return -a

    def backward(self, route_val):
        return -route_val


class VExp(ag.Function):
    def forward(self, a):
        return math.e ** a

    def backward(self, route_val):
        (a,) = self.inputs
        return route_val * math.e ** a


def test_seed000_grad_routes_as_functions():
    # In [89]: res = a ** b
    a, b = Variable(4), Variable(3)
    VRaise()(a, b).backward()
    assert a.grad == 48.0
    assert b.grad == approx(88.722839111673)
    # In [93]: res = (a ** 2) * 2 * a
    a = Variable(4)
    VMul()(VMul()(VRaise()(a, 2), 2), a).backward()
    assert a.grad == 96.0
    # In [94]: res = 2 ** (3 * b)
    b = Variable(3)
    VRaise()(2, VMul()(3, b)).backward()
    assert b.grad == approx(1064.674069340076)
    # In [98]: res = (3 + a) * a; backProp; zeroGradsRecursively; backProp
    a = Variable(4)
    res = VMul()(VAdd()(3, a), a)
    assert res.data == 28.0
    res.backward()
    assert a.grad == 11.0
    res.zero_grad()
    res.backward()
    assert a.grad == 11.0
    # In [99]: res = (16 / a).__exp__()
    a = Variable(4)
    VExp()(VDiv()(16, a)).backward()
    assert a.grad == approx(-54.59815003314423)
    # In [100]: res = (a / b) * 2
    a, b = Variable(4), Variable(3)
    VMul()(VDiv()(a, b), 2).backward()
    assert a.grad == approx(0.6666666666666666)
    assert b.grad == approx(-0.8888888888888888)
    # In [101]: c = a - b; res = a * c
    a, b = Variable(5), Variable(3)
    c = VSub()(a, b)
    res = VMul()(a, c)
    assert res.data == 10.0
    res.backward()
    assert (a.grad, b.grad) == (7.0, -5.0)
    assert c.grad == 5.0
    # vUnary: -a
    a = Variable(5)
    VUnary()(a).backward()
    assert a.grad == -1.0


def test_seed000_requires_grad_false_with_functions():
    # In [85]: a = Variable(4, True); b = Variable(3, False); res = (a + b) * a
    a = Variable(4, True)
    b = Variable(3, False)
    res = VMul()(VAdd()(a, b), a)
    res.backward()
    assert a.grad == 11.0
    assert b.grad == 0.0


# ---------------------------------------------------------------------------
# seed 001: micrograd's Value._prev / Value._op, via Variable._prev / ._op
# ---------------------------------------------------------------------------

def _neuron():
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b; d.name = "d"
    e = d + c; e.name = "e"
    f = e.tanh(); f.name = "f"
    return a, b, c, d, e, f


def test_seed001_prev_and_op():
    a, b, c, d, e, f = _neuron()
    # In [127]: f._prev -> {Value e(data = 4.0)}
    assert f._prev == {e}
    (only,) = f._prev
    assert only is e
    # In [128]: f._op -> 'tanh'
    assert f._op == "tanh"
    assert (d._op, e._op) == ("*", "+")
    assert d._prev == {a, b} and e._prev == {d, c}
    assert a._prev == set() and a._op == ""
    assert ag.graph_size(f) == 3
    assert set(ag.leaves(f)) == {a, b, c} and len(ag.leaves(f)) == 3


def test_seed001_node_used_twice_prev():
    # In [5] / In [14]: m = n + n; m._prev -> {Value n(data = 4.0)}
    n = Variable(4.0, name="n")
    m = n + n; m.name = "m"
    assert m._prev == {n}
    assert len(m._prev) == 1
    assert m._op == "+"


def test_seed001_tanh_from_exp_graph():
    # In [3] / In [9]: the graph micrograd builds for g = (f - 1) / (f + 1);
    # build_topo lists 14 Values (3 leaves, 3 constants: 2, -1, 1; 8 operations)
    a = Variable(2, name="a")
    b = Variable(-3, name="b")
    c = Variable(10.0, name="c")
    d = a * b
    e = d + c
    two_e = 2 * e
    f = two_e.exp()
    inv = (f + 1) ** -1
    g = (f + (-1)) * inv
    assert inv._op == "**-1"
    assert two_e._op == "*" and f._op == "exp"
    (const,) = [p for p in two_e._prev if p is not e]
    assert const.data == 2.0 and const.requires_grad is False
    # micrograd's build_topo, run on autograd_c's graph
    topo, visited = [], set()

    def build_topo(v):
        if v not in visited:
            visited.add(v)
            for child in v._prev:
                build_topo(child)
            topo.append(v)

    build_topo(g)
    assert len(topo) == 14
    assert topo[-1] is g
    listing = [2, 10.0, 2, -3, -6, 4.0, 8.0, 2980.9579870417283, -1, 2979.9579870417283,
               1, 2981.9579870417283, 0.0003353501304664781, 0.999329299739067]
    assert sorted(v.data for v in topo) == [approx(x) for x in sorted(listing)]
    assert ag.graph_size(g) == 8
    assert set(ag.leaves(g)) == {a, b, c}
