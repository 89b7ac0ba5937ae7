"""Issue 8, section 4: the adjoint an interior node shows must not depend on
unrelated state.

After ``y.backward()``, a recorded Variable that was alive during the pass
shows its adjoint as ``.grad``.  A node reached afterwards through ``_prev``
(or drawn by ``to_dot``) gets a Variable made on demand; before the fix of issue 8 it showed the
adjoint only if its index on the thread's tape is below 2**20 (the kept
adjoint buffer) and only until an unrelated ``ag.grad()`` reuses that buffer
-- otherwise 0.0, a wrong number.

Target (the PyTorch user's expectation): the exact adjoint of the latest
backward() when it is known, ``None`` when it is not (as PyTorch's ``.grad``
of a non-leaf without ``retain_grad``); never a wrong 0.
"""
import functools
import itertools
import operator

import pytest

import autograd_c as ag
from helpers import in_fresh_thread



def interior(y):
    """The one input of y that requires grad, as _prev gives it."""
    (p,) = [v for v in y._prev if v.requires_grad]
    return p


def build(big):
    """y = 3 * h with h = f(x) made and dropped: h lives only on the tape.
    big: h's index is past 2**20 (a chain of 2**20 + 10 additions)."""
    x = ag.Variable(0.5)
    if big:
        h = functools.reduce(operator.add, itertools.repeat(1.0, (1 << 20) + 10), x)
    else:
        h = x * x
    y = h * 3.0
    del h
    return x, y


def assert_adjoint(v, want):
    assert v.grad is None or v.grad == want, f"interior .grad is {v.grad!r}, want {want} or None"


def test_interior_adjoint_small_graph():
    """Already right: a small graph's interior node shows its adjoint."""
    def body():
        x, y = build(big=False)
        y.backward()
        assert_adjoint(interior(y), 3.0)
        return True

    assert in_fresh_thread(body)


def test_interior_adjoint_past_two_to_the_twenty():
    """The interior node has index 2**20 + 10: .grad was 0.0 before the fix."""
    def body():
        x, y = build(big=True)
        y.backward()
        assert x.grad == 3.0
        assert_adjoint(interior(y), 3.0)
        return True

    assert in_fresh_thread(body)


@pytest.mark.parametrize("big", [False, True], ids=["small", "big"])
def test_interior_adjoint_after_unrelated_grad(big):
    """An unrelated ag.grad() between backward() and the walk: before the fix the
    interior node shows 0.0 (the buffer was reused)."""
    def body():
        x, y = build(big)
        y.backward()
        w = ag.Variable(1.0)
        assert ag.grad(w * 2.0, [w]) == [2.0]
        assert_adjoint(interior(y), 3.0)
        return True

    assert in_fresh_thread(body)


def test_interior_adjoint_never_zero_over_a_walk():
    """Walking a whole graph after backward(): every interior node whose
    true adjoint is nonzero shows it (or None) even after an unrelated
    ag.grad() in the middle of the walk."""
    def body():
        x = ag.Variable(0.7)
        y = x
        for k in range(1, 30):
            y = y * 1.5 + float(k)
        y = y * 2.0
        y.backward()
        seen, todo, first = set(), [y], True
        while todo:
            v = todo.pop()
            if v in seen or not v.requires_grad or v.is_leaf:
                continue
            seen.add(v)
            if first:
                first = False
                w = ag.Variable(1.0)
                ag.grad(w * w, [w])
            assert v.grad is None or v.grad != 0.0, f"{v!r} shows a zero adjoint"
            todo.extend(v._prev)
        assert len(seen) == 59
        return True

    assert in_fresh_thread(body)
