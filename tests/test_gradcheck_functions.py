"""gradcheck() on custom autograd_c.Function subclasses, and the package-level
names (issue 3, part 5).  Needs autograd_c.Function and the exports of
numerical_grad / gradcheck / GradcheckError from autograd_c."""
import doctest
import math
import sys

import pytest

import autograd_c as ag
from autograd_c import Variable


class Square(ag.Function):
    def forward(self, x):
        return x ** 2

    def backward(self, gy):
        (x,) = self.inputs
        return 2 * x * gy


class WrongSquare(ag.Function):
    """The classic slip: forgets the factor 2."""
    def forward(self, x):
        return x ** 2

    def backward(self, gy):
        (x,) = self.inputs
        return x * gy


class Hypot(ag.Function):
    def forward(self, x, y):
        return math.hypot(x, y)

    def backward(self, gy):
        x, y = self.inputs
        r = self.output
        return gy * x / r, gy * y / r


class WrongHypot(Hypot):
    """Right for x, wrong for y (uses x twice)."""
    def backward(self, gy):
        x, y = self.inputs
        r = self.output
        return gy * x / r, gy * x / r


class Boom(Exception):
    pass


class RaisingBackward(ag.Function):
    def forward(self, x):
        return 3 * x

    def backward(self, gy):
        raise Boom("from backward")


def test_exported_from_the_package():
    assert callable(ag.gradcheck) and ag.gradcheck.__name__ == "gradcheck"
    assert ag.numerical_grad.__name__ == "numerical_grad"
    assert issubclass(ag.GradcheckError, AssertionError)
    for name in ("gradcheck", "numerical_grad", "GradcheckError"):
        assert name in ag.__all__
    # the submodule stays importable by name even though ag.gradcheck is the function
    from autograd_c.checking import GradcheckError, gradcheck, numerical_grad
    assert (gradcheck, numerical_grad, GradcheckError) == (
        ag.gradcheck, ag.numerical_grad, ag.GradcheckError)


def test_docstring_examples_run():
    module = sys.modules["autograd_c.checking"]
    failures, tried = doctest.testmod(module, verbose=False)
    assert tried >= 6 and failures == 0


def test_correct_functions_pass():
    assert ag.gradcheck(lambda x: Square()(x), [1.5]) is True
    assert ag.gradcheck(lambda x, y: Hypot()(x, y), [3.0, -4.0]) is True
    # a Function instance is itself a callable taking the inputs
    assert ag.gradcheck(Hypot(), [0.3, 0.4]) is True
    assert ag.gradcheck(lambda x: Square()(ag.sin(Square()(x))), [0.7]) is True


def test_a_wrong_backward_is_reported():
    x = Variable(1.5, name="x")
    with pytest.raises(ag.GradcheckError) as info:
        ag.gradcheck(lambda v: WrongSquare()(v), [x])
    err = info.value
    assert (err.index, err.name) == (0, "x")
    assert err.analytic == 1.5                       # x * gy
    assert err.numeric == pytest.approx(3.0, rel=1e-8)
    assert err.abs_error == pytest.approx(1.5, rel=1e-8)
    assert err.rel_error == pytest.approx(0.5, rel=1e-8)
    assert "input 0 ('x') at 1.5" in str(err)
    assert "analytic (autograd_c)           = 1.5\n" in str(err)
    assert x.grad == 0.0 and x.data == 1.5
    assert ag.gradcheck(lambda v: WrongSquare()(v), [x], raise_exception=False) is False
    # a wrong backward hidden deep inside an expression is found too
    f = lambda a, b: ag.tanh(a * b) + WrongSquare()(a + 1)             # noqa: E731
    with pytest.raises(ag.GradcheckError) as info:
        ag.gradcheck(f, [0.2, 0.5])
    assert info.value.index == 0


def test_the_wrong_partial_of_a_two_input_function_is_named():
    with pytest.raises(ag.GradcheckError) as info:
        ag.gradcheck(lambda x, y: WrongHypot()(x, y), [Variable(3.0, name="x"),
                                                        Variable(-4.0, name="y")])
    err = info.value
    assert (err.index, err.name) == (1, "y")
    assert err.analytic == pytest.approx(0.6, rel=1e-12)
    assert err.numeric == pytest.approx(-0.8, rel=1e-8)
    assert "failed for 1 of 2 input(s)" in str(err)


def test_numerical_grad_of_a_function():
    assert ag.numerical_grad(WrongSquare(), [1.5]) == pytest.approx([3.0], rel=1e-8)
    assert ag.numerical_grad(Hypot(), [3.0, 4.0]) == pytest.approx([0.6, 0.8], rel=1e-8)


def test_an_exception_in_backward_propagates():
    with pytest.raises(Boom, match="from backward"):
        ag.gradcheck(lambda x: RaisingBackward()(x), [1.0])
    # numerical_grad never calls backward
    assert ag.numerical_grad(lambda x: RaisingBackward()(x), [1.0]) == pytest.approx([3.0])
    assert ag.is_grad_enabled() is True
