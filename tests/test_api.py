"""The public Variable API: construction, constants, attributes, identity
semantics, operators with numbers and NumPy scalars, pickling, detach,
backward on leaves and autograd_c.grad()."""
import copy
import math
import pickle
import sys

import numpy as np
import pytest

import autograd_c as ag
from autograd_c import Variable
from helpers import in_fresh_thread


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=0.0)


def nodes():
    return ag.tape_stats()["nodes"]


# ---------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "data, expected",
    [
        (3, 3.0),
        (-7, -7.0),
        (2.5, 2.5),
        (True, 1.0),
        (False, 0.0),
        (np.float32(1.5), 1.5),
        (np.float64(-2.25), -2.25),
        (np.int64(3), 3.0),
        (np.int8(-3), -3.0),
        (np.bool_(True), 1.0),
        (2**53 + 1, float(2**53 + 1)),
        (10**300, 1e300),
        (float("inf"), math.inf),
    ],
)
def test_construction_converts_to_float(data, expected):
    v = Variable(data)
    assert type(v.data) is float
    assert v.data == expected
    assert v.requires_grad and v.is_leaf
    assert v.grad == 0.0 and type(v.grad) is float


def test_construction_nan_and_negative_zero_are_kept():
    assert math.isnan(Variable(float("nan")).data)
    z = Variable(-0.0).data
    assert z == 0.0 and math.copysign(1.0, z) == -1.0


def test_float32_value_is_the_exact_float32_value():
    v = Variable(np.float32(0.1))
    assert v.data == float(np.float32(0.1))
    assert v.data != 0.1


def test_keyword_arguments():
    v = Variable(data=1.0, requires_grad=False, name="k")
    assert (v.data, v.requires_grad, v.name) == (1.0, False, "k")


# ---------------------------------------------------------------------------
# constants (requires_grad=False)
# ---------------------------------------------------------------------------

def test_constants_are_never_recorded():
    x = Variable(2.0)
    keep = x * 3.0                     # make sure the tape is non-empty
    n = nodes()
    c = Variable(2.0, requires_grad=False)
    k = Variable(5.0, requires_grad=False)
    results = [c + k, c * k, c - 1, 2 ** c, c / k, -c, abs(c), ag.exp(c), c.sin(),
               ag.sum([c, k, 1.0]), ag.dot([c, k], [k, c]), ag.maximum(c, k)]
    assert nodes() == n
    for r in results:
        assert r.requires_grad is False
        assert r.is_leaf is True
        assert r.op == ""
    assert results[0].data == 7.0 and results[1].data == 10.0
    assert results[10].data == 20.0
    del keep


def test_constant_mixed_with_leaf_gives_zero_grad_to_the_constant():
    x = Variable(3.0)
    c = Variable(4.0, requires_grad=False)
    y = x * c + c
    assert y.requires_grad and not y.is_leaf
    y.backward()
    assert x.grad == 4.0
    assert c.grad == 0.0


def test_module_functions_on_plain_numbers_give_constants():
    n = nodes()
    for r, expected in [(ag.exp(0), 1.0), (ag.log(1.0), 0.0), (ag.sqrt(np.float64(4.0)), 2.0),
                        (ag.maximum(1, 2), 2.0), (ag.minimum(1, 2), 1.0),
                        (ag.sum([1, 2.5]), 3.5), (ag.dot([1, 2], [3, 4]), 11.0)]:
        assert type(r) is Variable
        assert r.requires_grad is False
        assert r.data == expected
    assert nodes() == n


# ---------------------------------------------------------------------------
# attributes and conversions
# ---------------------------------------------------------------------------

def test_leaf_attributes():
    x = Variable(2, name="x")
    assert x.data == 2.0 and x.value == 2.0 and x.item() == 2.0
    assert type(x.item()) is float
    assert x.grad == 0.0
    assert x.requires_grad is True
    assert x.is_leaf is True
    assert x.name == "x"
    assert x.op == ""
    assert Variable(1.0).name is None


def test_recorded_attributes():
    x = Variable(2.0)
    y = x * 3
    assert y.data == 6.0 and y.value == 6.0 and y.item() == 6.0
    assert y.requires_grad is True
    assert y.is_leaf is False
    assert y.name is None
    assert y.grad == 0.0
    assert y.op == "mul"
    assert (x + 1).op == "add"
    assert (x - x).op == "sub"
    assert (x / 2).op == "div"
    assert (2 / x).op == "div"
    assert (x ** 2).op == "pow"
    assert (-x).op == "neg"
    assert abs(x).op == "abs"
    assert x.tanh().op == "tanh"
    assert ag.sum([x, x]).op == "sum"
    assert ag.dot([x], [x]).op == "dot"
    assert ag.maximum(x, 1).op == "maximum"


def test_name_can_be_set_on_recorded_variables():
    x = Variable(2.0)
    y = x * x
    y.name = "y"
    assert y.name == "y"
    assert repr(y) == "Variable(data=4.0, grad=0.0, name='y')"
    y.name = None
    assert y.name is None


def test_float_int_bool_format():
    v = Variable(2.75)
    assert float(v) == 2.75 and type(float(v)) is float
    assert int(v) == 2 and int(Variable(-2.75)) == -2
    assert bool(v) is True
    assert bool(Variable(0.0)) is False
    assert bool(Variable(-0.0)) is False
    assert bool(Variable(float("nan"))) is True       # value != 0
    assert format(v, ".3f") == "2.750"
    assert f"{v:>8.2f}" == "    2.75"
    assert f"{Variable(1234.5):,.1f}" == "1,234.5"
    assert math.floor(Variable(2.5)) == 2             # through __float__
    with pytest.raises(ValueError):
        int(Variable(float("nan")))


def test_repr_exact_strings():
    assert repr(Variable(2.0)) == "Variable(data=2.0, grad=0.0)"
    assert repr(Variable(2)) == "Variable(data=2.0, grad=0.0)"
    assert repr(Variable(0.1, name="w")) == "Variable(data=0.1, grad=0.0, name='w')"
    assert repr(Variable(3, requires_grad=False)) == "Variable(data=3.0, requires_grad=False)"
    assert (repr(Variable(3, requires_grad=False, name="c"))
            == "Variable(data=3.0, requires_grad=False, name='c')")
    assert repr(Variable(float("nan"))) == "Variable(data=nan, grad=0.0)"
    assert repr(Variable(-float("inf"))) == "Variable(data=-inf, grad=0.0)"
    x = Variable(2.0, name="x")
    y = x * 3
    y.backward()
    assert repr(x) == "Variable(data=2.0, grad=3.0, name='x')"
    assert repr(y) == "Variable(data=6.0, grad=1.0)"
    assert str(x) == repr(x)


# ---------------------------------------------------------------------------
# .data / .value / .grad assignment
# ---------------------------------------------------------------------------

def test_data_assignment_on_leaf_and_constant():
    x = Variable(1.0)
    x.data = 5
    assert x.data == 5.0 and type(x.data) is float
    x.value = np.float32(0.5)
    assert x.data == 0.5
    c = Variable(1.0, requires_grad=False)
    c.data = 3
    assert c.data == 3.0 and c.requires_grad is False


def test_data_assignment_new_graphs_use_new_value_old_graph_raises():
    x = Variable(2.0, name="x")
    w = Variable(3.0)
    old = x * w
    x.data = 5.0
    new = x * w
    assert old.data == 6.0           # the old result keeps its value
    assert new.data == 15.0
    new.backward()
    assert x.grad == 3.0 and w.grad == 5.0
    with pytest.raises(RuntimeError, match="'x'"):
        old.backward()
    # the failed backward() changed no gradient
    assert x.grad == 3.0 and w.grad == 5.0
    # a new graph from the same leaves still works
    (x * x).backward()
    assert x.grad == 3.0 + 10.0


def test_data_assignment_after_backward_keeps_gradient():
    """The usual training step: backward, update .data, read .grad."""
    w = Variable(1.0)
    loss = (w - 3.0) ** 2
    loss.backward()
    assert w.grad == -4.0
    w.data -= 0.1 * w.grad
    assert w.data == pytest.approx(1.4, rel=1e-15)
    assert w.grad == -4.0
    w.grad = 0.0
    loss2 = (w - 3.0) ** 2
    loss2.backward()
    assert w.grad == approx(2 * (1.4 - 3.0))


def test_grad_assignment():
    x = Variable(2.0)
    y = x * x
    y.backward()
    assert x.grad == 4.0
    x.grad = 10
    assert x.grad == 10.0 and type(x.grad) is float
    y.backward()
    assert x.grad == 14.0
    x.grad = None                     # None zeroes, like PyTorch's set_to_none
    assert x.grad == 0.0
    y.backward()
    assert x.grad == 4.0
    x.grad = np.float32(0.5)
    assert x.grad == 0.5
    c = Variable(1.0, requires_grad=False)
    c.grad = 2.0
    assert c.grad == 2.0


def test_grad_assignment_on_recorded_variable_is_overwritten_by_next_backward():
    x = Variable(2.0)
    y = x * x
    z = y * 3
    y.grad = 100.0
    assert y.grad == 100.0
    z.backward()
    assert y.grad == 3.0
    assert x.grad == 12.0             # the assigned y.grad did not feed into the sweep


def test_interior_grad_is_adjoint_of_latest_pass():
    x = Variable(2.0)
    y = x * x
    z = y * 3
    w = x + 1
    z.backward()
    assert (y.grad, z.grad, w.grad, x.grad) == (3.0, 1.0, 0.0, 12.0)
    w.backward()
    assert (y.grad, z.grad, w.grad, x.grad) == (0.0, 0.0, 1.0, 13.0)
    z.backward(2.0)
    assert (y.grad, z.grad, w.grad, x.grad) == (6.0, 2.0, 0.0, 37.0)


# ---------------------------------------------------------------------------
# identity semantics: ==, hash, sets, dicts
# ---------------------------------------------------------------------------

def test_equality_is_identity():
    a = Variable(1.0)
    b = Variable(1.0)
    assert a == a
    assert not (a == b)
    assert a != b
    assert not (a != a)
    assert not (a == 1.0)
    assert a != 1.0
    assert (a == b) is False and isinstance(a == a, bool)


def test_sets_and_dict_keys():
    a = Variable(1.0)
    b = Variable(1.0)
    y = a * 1.0
    s = {a, b, y, a}
    assert len(s) == 3
    assert a in s and b in s and y in s
    assert Variable(1.0) not in s
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    assert hash(a) == hash(a)
    y.backward()
    assert d[a] == "a" and a.grad == 1.0
    a.data = 7.0                      # hash does not depend on the value
    assert d[a] == "a" and a in s


def test_list_index_and_count_use_identity():
    a, b = Variable(1.0), Variable(1.0)
    assert [a, b].index(b) == 1
    assert [a, b, a].count(a) == 2


# ---------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------

def test_comparisons_with_numbers_and_variables():
    x = Variable(2.0)
    y = Variable(3.0)
    z = x * 1.5                        # recorded, value 3.0
    assert (x < y) is True and (x <= y) is True
    assert (x > y) is False and (x >= y) is False
    assert (y <= z) is True and (y >= z) is True and (y < z) is False
    assert (x < 3) is True and (x <= 2) is True and (x > 1.5) is True and (x >= 2.0) is True
    assert (3 > x) is True and (2 >= x) is True and (1.5 < x) is True and (2.0 <= x) is True
    assert (np.float64(2.5) > x) is True
    assert (x < np.float32(2.5)) is True
    assert (Variable(float("nan")) < 1) is False
    assert (Variable(float("nan")) >= 1) is False


def test_comparisons_do_not_record():
    x = Variable(2.0)
    keep = x * 1.0
    n = nodes()
    for _ in range(10):
        x < 3, x >= keep
    assert nodes() == n


def test_sorting_and_builtin_max():
    vs = [Variable(3.0), Variable(1.0), Variable(2.0)]
    assert [v.data for v in sorted(vs)] == [1.0, 2.0, 3.0]
    assert max(vs) is vs[0]
    assert min(vs) is vs[1]


def test_comparison_with_unsupported_type_raises():
    with pytest.raises(TypeError):
        Variable(1.0) < "a"
    with pytest.raises(TypeError):
        None >= Variable(1.0)


# ---------------------------------------------------------------------------
# operators: rebinding, unary, numbers on either side
# ---------------------------------------------------------------------------

def test_augmented_assignment_rebinds():
    c = Variable(1.0)
    original = c
    c += 1
    assert c is not original
    assert original.data == 1.0 and original.is_leaf
    assert c.data == 2.0 and not c.is_leaf and c.op == "add"
    c *= 3
    c -= 1
    c /= 5
    c **= 2
    assert c.data == approx(1.0)
    c.backward()
    assert original.grad == approx(2 * 1.0 * 3 / 5)


def test_unary_operators():
    x = Variable(-2.0)
    assert +x is x
    n = -x
    assert n.data == 2.0 and n.op == "neg"
    a = abs(x)
    assert a.data == 2.0 and a.op == "abs"
    (n + a).backward()
    assert x.grad == -2.0
    c = Variable(-3.0, requires_grad=False)
    assert (-c).requires_grad is False and abs(c).data == 3.0


@pytest.mark.parametrize(
    "expr, value, grad",
    [
        (lambda x: x + 2, 5.0, 1.0),
        (lambda x: 2 + x, 5.0, 1.0),
        (lambda x: x - 2, 1.0, 1.0),
        (lambda x: 2 - x, -1.0, -1.0),
        (lambda x: x * 2, 6.0, 2.0),
        (lambda x: 2 * x, 6.0, 2.0),
        (lambda x: x / 2, 1.5, 0.5),
        (lambda x: 6 / x, 2.0, -6.0 / 9.0),
        (lambda x: x ** 2, 9.0, 6.0),
        (lambda x: 2 ** x, 8.0, 8.0 * math.log(2.0)),
        (lambda x: x ** x, 27.0, 27.0 * (math.log(3.0) + 1.0)),
        (lambda x: True * x, 3.0, 1.0),
    ],
)
def test_numbers_on_either_side(expr, value, grad):
    x = Variable(3.0)
    y = expr(x)
    assert type(y) is Variable
    assert y.data == approx(value)
    y.backward()
    assert x.grad == approx(grad)


def test_pow_with_modulo_is_not_supported():
    with pytest.raises(TypeError):
        pow(Variable(2.0), 2, 3)


# ---------------------------------------------------------------------------
# NumPy interplay
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("scalar", [np.float64(2.0), np.float32(2.0), np.int64(2), np.int32(2)])
def test_numpy_scalar_on_the_left_gives_variable(scalar):
    x = Variable(3.0)
    y = scalar * x
    assert type(y) is Variable
    assert y.data == 6.0
    z = scalar + x
    assert type(z) is Variable and z.data == 5.0
    w = scalar - x
    assert type(w) is Variable and w.data == -1.0
    q = scalar / x
    assert type(q) is Variable and q.data == approx(2 / 3)
    p = scalar ** x
    assert type(p) is Variable and p.data == 8.0
    (y + z + w + q + p).backward()
    assert x.grad == approx(2.0 + 1.0 - 1.0 - 2.0 / 9.0 + 8.0 * math.log(2.0))


@pytest.mark.parametrize("scalar", [np.float64(2.0), np.float32(2.0), np.int64(2), np.bool_(True)])
def test_numpy_scalar_on_the_right_gives_variable(scalar):
    x = Variable(3.0)
    y = x * scalar
    assert type(y) is Variable
    assert y.data == 3.0 * float(scalar)
    y.backward()
    assert x.grad == float(scalar)


def test_numpy_arrays_are_rejected():
    x = Variable(1.0)
    n = nodes()
    with pytest.raises(TypeError):
        x * np.array([1.0])
    with pytest.raises(TypeError):
        np.array([1.0]) * x
    with pytest.raises(TypeError):
        x + np.array(1.0)                  # 0-d arrays too
    with pytest.raises(TypeError):
        np.exp(x)                          # no ufuncs on Variables
    assert nodes() == n


def test_numpy_scalar_gradient_seed_and_grad_assignment():
    x = Variable(np.float32(2.0))
    y = x * x
    y.backward(np.float64(0.5))
    assert x.grad == 2.0
    assert type(x.grad) is float


# ---------------------------------------------------------------------------
# pickling and copying
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dup", [lambda v: pickle.loads(pickle.dumps(v)),
                                 lambda v: pickle.loads(pickle.dumps(v, protocol=0)),
                                 copy.copy, copy.deepcopy])
def test_pickle_and_copy_of_leaf_and_constant(dup):
    x = Variable(2.5, name="x")
    x.grad = 1.25
    x2 = dup(x)
    assert x2 is not x
    assert (x2.data, x2.requires_grad, x2.name, x2.grad, x2.is_leaf) == (2.5, True, "x", 1.25, True)
    c = Variable(-1.0, requires_grad=False)
    c2 = dup(c)
    assert (c2.data, c2.requires_grad, c2.name, c2.grad) == (-1.0, False, None, 0.0)
    # the copy is an independent leaf
    (x2 * 2).backward()
    assert x2.grad == 3.25 and x.grad == 1.25


@pytest.mark.parametrize("dup", [lambda v: pickle.loads(pickle.dumps(v)), copy.copy, copy.deepcopy])
def test_pickle_and_copy_keep_gradient_after_backward(dup):
    x = Variable(2.0, name="x")
    y = x * 3
    y.backward()
    assert x.grad == 3.0
    assert dup(x).grad == 3.0


def test_pickle_of_list_with_shared_leaf():
    x = Variable(1.0)
    a, b = pickle.loads(pickle.dumps([x, x]))
    assert a is b


def test_recorded_variables_cannot_be_pickled_or_copied():
    x = Variable(2.0)
    y = x * x
    for f in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="detach"):
            f(y)
    y.backward()
    assert x.grad == 4.0


# ---------------------------------------------------------------------------
# detach
# ---------------------------------------------------------------------------

def test_detach():
    x = Variable(2.0, name="x")
    y = x * x
    for v in (x, y):
        d = v.detach()
        assert d is not v
        assert d.data == v.data
        assert d.requires_grad is False and d.is_leaf is True
        assert d.name is None and d.grad == 0.0
    n = nodes()
    z = y.detach() * 3
    assert z.requires_grad is False
    assert nodes() == n
    mixed = y.detach() * x             # the detached part is a constant
    mixed.backward()
    assert x.grad == 4.0


# ---------------------------------------------------------------------------
# backward() on leaves, gradient seeds
# ---------------------------------------------------------------------------

def test_backward_on_leaf_adds_gradient():
    x = Variable(3.0)
    x.backward()
    assert x.grad == 1.0
    x.backward(2.5)
    assert x.grad == 3.5
    x.backward(gradient=-1)
    assert x.grad == 2.5


def test_backward_with_gradient_seed():
    x = Variable(3.0)
    y = x * x
    y.backward(0.5)
    assert x.grad == 3.0
    assert y.grad == 0.5
    y.backward(gradient=2)
    assert x.grad == 15.0


def test_zero_grad_on_graph_zeroes_leaves_and_interior():
    x = Variable(3.0)
    w = Variable(2.0)
    other = Variable(1.0)
    (other * 1.0).backward()
    y = x * w
    z = y + x
    z.backward()
    assert (x.grad, w.grad, y.grad) == (3.0, 3.0, 1.0)
    z.zero_grad()
    assert (x.grad, w.grad, y.grad, z.grad) == (0.0, 0.0, 0.0, 0.0)
    assert other.grad == 1.0          # not reachable from z
    z.backward()
    assert (x.grad, w.grad) == (3.0, 3.0)


def test_zero_grad_on_leaf_and_constant():
    x = Variable(1.0)
    x.grad = 5.0
    x.zero_grad()
    assert x.grad == 0.0
    c = Variable(1.0, requires_grad=False)
    c.grad = 5.0
    c.zero_grad()
    assert c.grad == 0.0


def test_zero_grad_zeroes_leaf_used_in_another_thread():
    import threading
    x = Variable(2.0)
    y = x * x
    keep = []

    def worker():
        z = x * 3
        z.backward()
        keep.append(z)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert x.grad == 3.0
    y.zero_grad()                     # x is reachable from y
    assert x.grad == 0.0


def test_zero_grad_after_requires_grad_toggle():
    x = Variable(2.0)
    y = x * x
    x.requires_grad = False
    x.requires_grad = True
    z = x * 3
    z.backward()
    assert x.grad == 3.0
    y.zero_grad()
    assert x.grad == 0.0


def test_requires_grad_setter():
    x = Variable(2.0)
    x.requires_grad = False
    assert (x * x).requires_grad is False
    x.requires_grad = True
    y = x * x
    y.backward()
    assert x.grad == 4.0
    with pytest.raises(RuntimeError):
        y.requires_grad = False


# ---------------------------------------------------------------------------
# autograd_c.grad()
# ---------------------------------------------------------------------------

def test_grad_basic_and_does_not_touch_grad():
    x = Variable(3.0)
    w = Variable(4.0)
    h = x * w
    y = h * x                          # x^2 w
    y.backward()
    before = (x.grad, w.grad, h.grad, y.grad)
    assert before == (24.0, 9.0, 3.0, 1.0)
    assert ag.grad(y, [x, w]) == [24.0, 9.0]
    assert (x.grad, w.grad, h.grad, y.grad) == before


def test_grad_repeated_interior_unrelated_inputs():
    x = Variable(3.0)
    w = Variable(4.0)
    unrelated = Variable(1.0)
    h = x * w
    y = h * x
    other = unrelated * 2              # recorded, but y does not depend on it
    c = Variable(5.0, requires_grad=False)
    g = ag.grad(y, [x, x, h, unrelated, other, c, y, w, x])
    assert g == [24.0, 24.0, 3.0, 0.0, 0.0, 0.0, 1.0, 9.0, 24.0]
    assert all(type(v) is float for v in g)


def test_grad_of_leaf_output():
    x = Variable(3.0)
    w = Variable(1.0)
    assert ag.grad(x, [x, w, x]) == [1.0, 0.0, 1.0]
    assert x.grad == 0.0


def test_grad_accepts_any_iterable_and_empty():
    x = Variable(3.0)
    y = x * x
    assert ag.grad(y, (x,)) == [6.0]
    assert ag.grad(y, iter([x])) == [6.0]
    assert ag.grad(y, []) == []


def test_grad_of_later_node_does_not_see_other_graphs():
    a = Variable(2.0)
    b = Variable(5.0)
    ya = a * a
    yb = b * b * a
    assert ag.grad(ya, [a, b, yb]) == [4.0, 0.0, 0.0]
    assert ag.grad(yb, [a, b, ya]) == [25.0, 20.0, 0.0]


def test_leaf_used_as_both_operands():
    x = Variable(3.0)
    (x * x).backward()
    assert x.grad == 6.0
    x.grad = 0
    (x + x).backward()
    assert x.grad == 2.0
    x.grad = 0
    (x - x).backward()
    assert x.grad == 0.0
    x.grad = 0
    (x / x).backward()
    assert x.grad == 0.0


def test_refcounts_return_to_baseline():
    in_fresh_thread(_refcounts_return_to_baseline)


def _refcounts_return_to_baseline():
    x = Variable(2.0, name="leaf-name")
    name = x.name
    base_x = sys.getrefcount(x)
    base_name = sys.getrefcount(name)
    for _ in range(3):
        y = x * x + x
        y.backward()
        ag.grad(y, [x])
        del y
    assert nodes() == 0
    assert sys.getrefcount(x) == base_x
    assert sys.getrefcount(name) == base_name


def test_tape_resets_when_no_recorded_variable_is_alive():
    in_fresh_thread(_tape_resets)


def _tape_resets():
    assert ag.tape_stats()["nodes"] == 0
    x = Variable(1.0)
    y = x * 2
    z = y + 1
    assert ag.tape_stats()["live"] >= 2
    del y, z
    s = ag.tape_stats()
    assert s["nodes"] == 0 and s["live"] == 0 and s["leaves"] == 0
