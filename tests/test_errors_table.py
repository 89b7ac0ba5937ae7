"""Walks the misuse table of docs/errors.md.

Each row of the table gives a piece of code (run in the namespace built by
`namespace()` below: leaves x = 1.5 and w = -0.5, y = x * x * w + exp(w)
recorded from them, a layer, helpers), the exception it raises today and the
one it should raise ("-": none, and the helper in the code checks the
result).  For every row the test checks the expected outcome and then that
the earlier graph still gives its gradients, and that leaves' .grad were not
touched.  Rows whose "Today" differs from "Expected" are xfail(strict) until
the core is fixed; the fixer updates the "Today" column with the fix.
"""
import decimal
import fractions
import math
import os
import pickle
import re
import threading

import pytest

import autograd_c as ag
from autograd_c import _core, nn
from helpers import in_fresh_thread

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "errors.md")


class UserError(Exception):
    """What the user's own code raises; it must come out unchanged."""


def read_table():
    rows = []
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\|\s*(\d+)\s*\|(.*)\|\s*`(.+)`\s*\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*$", line)
            if m:
                rows.append((int(m.group(1)), m.group(2).strip(), m.group(3), m.group(4), m.group(5)))
    return rows


ROWS = read_table()


class RaisingFloat(float):
    def __float__(self):
        raise UserError("__float__ failed")


class LyingFloat(float):
    def __float__(self):
        return "1.0"


class SubFloat(float):
    def __float__(self):
        return SubFloat(1.5)


class IndexOnly:
    def __index__(self):
        return 3


class Twice(ag.Function):
    def forward(self, a):
        return 2.0 * a

    def backward(self, gy):
        return 2.0 * gy


class TooMany(Twice):
    def backward(self, gy):
        return gy, gy


class ReturnsStr(Twice):
    def backward(self, gy):
        return "1"


class Raises(Twice):
    def backward(self, gy):
        raise UserError("backward failed")


class Records(Twice):
    def backward(self, gy):
        with ag.enable_grad():
            self.leaf * 2.0
        return gy


class StrForward(Twice):
    def forward(self, a):
        return "2"


def namespace():
    x, w = ag.Variable(1.5, name="x"), ag.Variable(-0.5, name="w")
    y = x * x * w + ag.exp(w)
    layer = nn.Layer(2, 3, activation="tanh")
    np = pytest.importorskip("numpy")

    def check_value(v, want):
        assert v.data == want or (want != want and v.data != v.data), (v.data, want)

    def must_require_grad(v):
        assert v.requires_grad, "a leaf that does not require grad"

    def check_empty(out):
        assert out == []

    def anomaly(f):
        with ag.detect_anomaly():
            return f()

    def no_grad_result():
        with ag.no_grad():
            return x * 2.0

    def foreign():
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("v", ag.Variable(2.0) * 3.0))
        t.start()
        t.join()
        return box["v"]

    def fresh_leaf():
        return ag.Variable(1.0)

    def stale():
        a = ag.Variable(2.0)
        r = a * a
        a.data = 3.0
        return r

    def released():
        a = ag.Variable(2.0)
        r = a * 3.0 + 1.0
        a.data = 5.0
        _core._compact()
        return r

    def bad_function(cls):
        f = cls()
        f.leaf = x
        return f(w) * 1.0

    return dict(locals(), ag=ag, nn=nn, math=math, pickle=pickle, fractions=fractions,
                decimal=decimal, RaisingFloat=RaisingFloat, LyingFloat=LyingFloat,
                SubFloat=SubFloat, IndexOnly=IndexOnly, Twice=Twice, TooMany=TooMany,
                ReturnsStr=ReturnsStr, Raises=Raises, Records=Records, StrForward=StrForward)


def outcome(code):
    ns = namespace()
    grads_before = (ns["x"].grad, ns["w"].grad)
    try:
        exec(code, ns)
        got = "-"
    except UserError:
        got = "UserError"
    except Exception as e:  # noqa: BLE001 - the table names the type
        got = type(e).__name__
    # the earlier graph is intact and leaves' gradients untouched
    x, w, y = ns["x"], ns["w"], ns["y"]
    intact = (ag.grad(y, [x, w]) == [2 * 1.5 * -0.5, 1.5 * 1.5 + math.exp(-0.5)]
              and (x.grad, w.grad) == grads_before)
    return got, intact


def test_table_is_complete():
    assert len(ROWS) >= 40
    assert [r[0] for r in ROWS] == list(range(1, len(ROWS) + 1))


def params():
    for num, what, code, today, expected in ROWS:
        marks = []
        if today != expected:
            marks = [pytest.mark.xfail(strict=True, reason=f"issue 8: {what} ({today} today)")]
        yield pytest.param(code, expected, marks=marks, id=f"{num}-{what}")


@pytest.mark.parametrize("code,expected", list(params()))
def test_misuse(code, expected):
    got, intact = in_fresh_thread(outcome, code)
    assert got == expected, f"`{code}` gave {got}, expected {expected}"
    assert intact, f"after `{code}`, the earlier graph or leaves' gradients changed"
