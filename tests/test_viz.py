"""autograd_c.to_dot() and autograd_c.draw() (issue 3, part 6, first half).

Needs Variable._prev / Variable._op / autograd_c.graph_size / autograd_c.leaves
from the core, and the package-level exports of to_dot and draw."""
import doctest
import pathlib
import re
import shutil
import subprocess
import sys
import time
import types

import pytest

import autograd_c as ag
from autograd_c import Variable

NODE = re.compile(r'^  (n\d+|summary) \[(shape=note, )?label="((?:[^"\\]|\\.)*)"(.*)\];$')
EDGE = re.compile(r"^  (n\d+|summary) -> (n\d+)( \[style=dashed\])?;$")


def parse(text):
    """{node id: (label, attributes)}, [(from, to, dashed)]; every line accounted for."""
    lines = text.splitlines()
    assert lines[:3] == ["digraph autograd_c {", "  rankdir=LR;",
                         '  node [shape=record, fontname="Helvetica", fontsize=10];']
    assert lines[-1] == "}" and text.endswith("}\n")
    nodes, edges = {}, []
    for line in lines[3:-1]:
        m = NODE.match(line)
        if m:
            assert m.group(1) not in nodes
            nodes[m.group(1)] = (m.group(3), m.group(4))
            continue
        m = EDGE.match(line)
        assert m, f"unexpected line {line!r}"
        edges.append((m.group(1), m.group(2), bool(m.group(3))))
    for a, b, _ in edges:
        assert a in nodes and b in nodes
    return nodes, edges


def fields(label):
    """The fields of a record label '{ f1 | f2 | ... }', unescaped."""
    assert label.startswith("{ ") and label.endswith(" }")
    body = label[2:-2]
    out, cur, i = [], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            cur.append(("\n" if nxt == "n" else nxt, True))
            i += 2
        elif ch == "|":
            out.append(cur)
            cur = []
            i += 1
        else:
            cur.append((ch, False))
            i += 1
    out.append(cur)
    result = []
    for chars in out:                     # strip unescaped spaces at both ends
        while chars and chars[0] == (" ", False):
            chars = chars[1:]
        while chars and chars[-1] == (" ", False):
            chars = chars[:-1]
        result.append("".join(c for c, _ in chars))
    return result


def by_first_field(nodes):
    return {fields(label)[0]: (nid, fields(label), attrs) for nid, (label, attrs) in nodes.items()
            if nid != "summary"}


def neuron():
    a = Variable(2.0, name="a")
    b = Variable(-3.0, name="b")
    c = Variable(10.0, name="c")
    d = a * b; d.name = "d"
    e = d + c; e.name = "e"
    f = ag.tanh(e); f.name = "f"
    return a, b, c, d, e, f


# ---------------------------------------------------------------------------
# to_dot
# ---------------------------------------------------------------------------

def test_exported():
    assert "to_dot" in ag.__all__ and "draw" in ag.__all__
    assert ag.to_dot.__name__ == "to_dot" and ag.draw.__name__ == "draw"


def test_docstring_examples_run():
    module = sys.modules["autograd_c.viz"]
    failures, tried = doctest.testmod(module, verbose=False)
    assert tried >= 10 and failures == 0


def test_small_graph_nodes_edges_labels():
    a, b, c, d, e, f = neuron()
    f.backward()
    text = ag.to_dot(f)
    nodes, edges = parse(text)
    assert len(nodes) == 6 and "summary" not in nodes
    named = by_first_field(nodes)
    assert set(named) == {"a", "b", "c", "d", "e", "f"}
    assert named["f"][1] == ["f", "tanh", "data 0.9993", "grad 1"]
    assert named["e"][1] == ["e", "+", "data 4", "grad 0.001341"]
    assert named["d"][1] == ["d", "*", "data -6", "grad 0.001341"]
    assert named["a"][1] == ["a", "data 2", "grad -0.004023"]
    assert named["b"][1] == ["b", "data -3", "grad 0.002682"]
    assert named["c"][1] == ["c", "data 10", "grad 0.001341"]
    ids = {name: v[0] for name, v in named.items()}
    assert sorted((a_, b_) for a_, b_, _ in edges) == sorted([
        (ids["a"], ids["d"]), (ids["b"], ids["d"]), (ids["d"], ids["e"]),
        (ids["c"], ids["e"]), (ids["e"], ids["f"])])
    assert not any(dashed for *_, dashed in edges)
    # the output is n0, drawn bold; leaves are filled
    assert ids["f"] == "n0" and "penwidth=2" in named["f"][2]
    assert all("style=filled" in named[n][2] for n in "abc")
    assert not any("style=filled" in named[n][2] for n in "def")


def test_labels_before_backward_and_without_names():
    x = Variable(0.5)
    y = ag.exp(x) * x
    nodes, edges = parse(ag.to_dot(y))
    labels = sorted(fields(label) for label, _ in nodes.values())
    assert labels == sorted([["*", "data 0.8244", "grad 0"],
                             ["exp", "data 1.649", "grad 0"],
                             ["data 0.5", "grad 0"]])
    assert len(edges) == 3                       # x -> exp, x -> *, exp -> *


def test_constants_are_drawn_dashed_without_grad():
    x = Variable(2.0, name="x")
    y = x * 3
    nodes, edges = parse(ag.to_dot(y))
    assert len(nodes) == 3 and len(edges) == 2
    (const,) = [(fields(lab), attrs) for lab, attrs in nodes.values()
                if fields(lab)[0] == "const"]
    assert const == (["const", "data 3"], ", style=dashed")
    # micrograd-style op strings
    assert fields(parse(ag.to_dot(x ** 2))[0]["n0"][0]) == ["**2", "data 4", "grad 0"]
    assert fields(parse(ag.to_dot(ag.relu(x)))[0]["n0"][0]) == ["ReLU", "data 2", "grad 0"]


def test_node_used_twice_appears_once():
    # seed 001, In [13]: m = n + n
    n = Variable(4.0, name="n")
    m = n + n
    nodes, edges = parse(ag.to_dot(m))
    assert len(nodes) == 2 and len(edges) == 1
    # a shared subexpression: g = d * d + d
    a, b = Variable(2.0, name="a"), Variable(3.0, name="b")
    d = a * b; d.name = "d"
    sq = d * d; sq.name = "sq"
    g = sq + d; g.name = "g"
    nodes, edges = parse(ag.to_dot(g))
    named = by_first_field(nodes)
    assert set(named) == {"a", "b", "d", "sq", "g"}
    ids = {name: v[0] for name, v in named.items()}
    assert sorted((x, y) for x, y, _ in edges) == sorted([
        (ids["sq"], ids["g"]), (ids["d"], ids["g"]), (ids["d"], ids["sq"]),
        (ids["a"], ids["d"]), (ids["b"], ids["d"])])
    # ... also when nothing in Python holds the shared node any more
    def build():
        t = a * b
        return t * t + t
    nodes, edges = parse(ag.to_dot(build()))
    assert len(nodes) == 5 and len(edges) == 5
    assert sorted(fields(label)[0] for label, _ in nodes.values()) == [
        "*", "*", "+", "a", "b"]


def test_ids_are_visiting_order_and_text_is_reproducible():
    *_, f = neuron()
    text = ag.to_dot(f)
    assert text == ag.to_dot(f)
    nodes, _ = parse(text)
    assert list(nodes) == [f"n{i}" for i in range(len(nodes))]
    assert "id(" not in text and not re.search(r"n\d{6,}", text)
    # breadth-first: the output's operand is n1
    assert fields(nodes["n1"][0])[0] == "e"


def test_a_leaf_or_a_constant_alone():
    nodes, edges = parse(ag.to_dot(Variable(1.5, name="x")))
    assert list(nodes) == ["n0"] and edges == []
    assert fields(nodes["n0"][0]) == ["x", "data 1.5", "grad 0"]
    nodes, edges = parse(ag.to_dot(Variable(7.0, requires_grad=False)))
    assert fields(nodes["n0"][0]) == ["const", "data 7"] and edges == []


def test_labels_are_escaped():
    name = 'we{ir}d "n|a<m>e"  \\ x'
    x = Variable(1.0, name=name)
    y = x * x
    y.name = "line1\nline2\ttab"
    text = ag.to_dot(y)
    nodes, edges = parse(text)                    # every quote inside a label is escaped
    assert len(nodes) == 2 and len(edges) == 1
    firsts = {fields(label)[0] for label, _ in nodes.values()}
    assert firsts == {name, "line1\nline2\\ttab"}
    assert sorted(fields(label)[1:] for label, _ in nodes.values()) == [
        ["*", "data 1", "grad 0"], ["data 1", "grad 0"]]
    # special values
    z = Variable(float("nan"), name="z") * float("inf")
    assert "data nan" in ag.to_dot(z)


def test_tiny_and_huge_numbers_are_formatted_compactly():
    x = Variable(1e-300, name="x")
    y = x * 1e300
    y.backward()
    named = by_first_field(parse(ag.to_dot(y))[0])
    assert named["x"][1] == ["x", "data 1e-300", "grad 1e+300"]


def test_million_node_chain_is_summarised_quickly():
    x = Variable(0.5, name="x")
    h = x
    for _ in range(1_000_000):
        h = ag.sin(h)
    assert ag.graph_size(h) == 1_000_000
    t0 = time.perf_counter()
    text = ag.to_dot(h)
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0
    nodes, edges = parse(text)
    assert len(nodes) == 201                      # max_nodes + the summary
    assert len(text) < 30_000
    label, _ = nodes["summary"]
    assert label == r"... 999,801 more nodes not shown\n(999,800 operations, 1 leaf)"
    assert [e for e in edges if e[0] == "summary"] == [("summary", "n199", True)]
    assert sum(not dashed for *_, dashed in edges) == 199
    # a smaller budget
    nodes, edges = parse(ag.to_dot(h, max_nodes=10))
    assert len(nodes) == 11
    assert nodes["summary"][0] == r"... 999,991 more nodes not shown\n(999,990 operations, 1 leaf)"


def test_wide_graph_is_summarised():
    xs = [Variable(float(i)) for i in range(50_000)]
    s = ag.sum(xs)
    t0 = time.perf_counter()
    text = ag.to_dot(s)
    assert time.perf_counter() - t0 < 3.0
    nodes, edges = parse(text)
    assert len(nodes) == 201
    assert nodes["summary"][0] == r"... 49,801 more nodes not shown\n(0 operations, 49,801 leaves)"
    assert sorted(e for e in edges if e[2]) == [("summary", "n0", True)]
    assert sum(1 for e in edges if not e[2]) == 199


def test_bad_arguments():
    x = Variable(1.0)
    with pytest.raises(TypeError, match="to_dot\\(\\) takes a Variable, not float"):
        ag.to_dot(3.0)
    with pytest.raises(ValueError, match="max_nodes must be at least 1, not 0"):
        ag.to_dot(x, max_nodes=0)
    with pytest.raises(TypeError, match="max_nodes must be an int, not float"):
        ag.to_dot(x, max_nodes=2.5)
    with pytest.raises(TypeError, match="max_nodes must be an int, not bool"):
        ag.to_dot(x, max_nodes=True)


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------

def test_draw_without_graphviz_names_the_extra(monkeypatch, tmp_path):
    *_, f = neuron()
    monkeypatch.setitem(sys.modules, "graphviz", None)      # import graphviz -> ImportError
    with pytest.raises(ImportError, match=r'pip install "autograd_c\[draw\]"'):
        ag.draw(f, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_draw_without_graphviz_via_import_hook(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "graphviz" or name.startswith("graphviz."):
            raise ModuleNotFoundError("No module named 'graphviz'", name="graphviz")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "graphviz", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    *_, f = neuron()
    with pytest.raises(ImportError, match=r"autograd_c\[draw\]") as info:
        ag.draw(f, str(tmp_path / "g.png"))
    assert isinstance(info.value.__cause__, ImportError)


def test_draw_dot_text_needs_no_graphviz(monkeypatch, tmp_path):
    *_, f = neuron()
    monkeypatch.setitem(sys.modules, "graphviz", None)
    for name in ("g.dot", "g.gv"):
        path = tmp_path / name
        assert ag.draw(f, path) == str(path)
        assert path.read_text() == ag.to_dot(f)
    ag.draw(f, tmp_path / "small.dot", max_nodes=2)
    assert parse((tmp_path / "small.dot").read_text())[0].keys() == {"n0", "n1", "summary"}


def test_draw_needs_a_known_format(tmp_path):
    *_, f = neuron()
    with pytest.raises(ValueError, match=r"cannot tell the format from .*g\.jpeg.*\.svg"):
        ag.draw(f, tmp_path / "g.jpeg")
    with pytest.raises(ValueError, match="cannot tell the format"):
        ag.draw(f, tmp_path / "noextension")
    with pytest.raises(TypeError, match="format must be"):
        ag.draw(f, tmp_path / "g.svg", format=3)


class FakeGraphviz(types.ModuleType):
    """Stands in for the graphviz package: records what draw() asks for."""

    class ExecutableNotFound(RuntimeError):
        pass

    def __init__(self, missing_dot=False):
        super().__init__("graphviz")
        self.calls = []
        fake = self

        class Source:
            def __init__(self, source, *args, **kwargs):
                self.source = source

            def pipe(self, format=None, **kwargs):
                if missing_dot:
                    raise FakeGraphviz.ExecutableNotFound("failed to execute 'dot'")
                fake.calls.append((self.source, format))
                return f"<rendered {format}>".encode()

        self.Source = Source


def test_draw_renders_through_graphviz_source(monkeypatch, tmp_path):
    fake = FakeGraphviz()
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    *_, f = neuron()
    for ext, fmt in ((".svg", "svg"), (".png", "png"), (".pdf", "pdf"), (".SVG", "svg")):
        path = tmp_path / f"g{ext}"
        assert ag.draw(f, path) == str(path)
        assert path.read_bytes() == f"<rendered {fmt}>".encode()
        assert fake.calls[-1] == (ag.to_dot(f), fmt)
    path = tmp_path / "picture.img"
    ag.draw(f, str(path), format="png")              # explicit format, any name
    assert path.read_bytes() == b"<rendered png>"
    ag.draw(f, tmp_path / "g.svg", max_nodes=3)
    assert fake.calls[-1][0] == ag.to_dot(f, max_nodes=3)


def test_draw_without_the_dot_program(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", FakeGraphviz(missing_dot=True))
    *_, f = neuron()
    with pytest.raises(RuntimeError, match=r"`dot` program .* install Graphviz"):
        ag.draw(f, tmp_path / "g.svg")


def test_draw_without_the_dot_program_real_package(monkeypatch, tmp_path):
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))                # no `dot` to be found
    *_, f = neuron()
    with pytest.raises(RuntimeError, match=r"`dot` program"):
        ag.draw(f, tmp_path / "g.svg")


def test_draw_with_graphviz(tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    a, b, c, d, e, f = neuron()
    f.backward()
    svg = pathlib.Path(ag.draw(f, tmp_path / "g.svg")).read_text()
    assert "<svg" in svg and "tanh" in svg and "data 0.9993" in svg and "grad &#45;0.004023" in svg
    png = pathlib.Path(ag.draw(f, tmp_path / "g.png")).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pdf = pathlib.Path(ag.draw(f, tmp_path / "g.pdf")).read_bytes()
    assert pdf.startswith(b"%PDF")
    # Graphviz itself reads back the same nodes and edges, names unescaped
    x = Variable(1.0, name='we{ir}d "n|a<m>e"')
    plain = subprocess.run(["dot", "-Tplain"], input=ag.to_dot(ag.exp(x) * x),
                           capture_output=True, text=True, check=True).stdout
    assert plain.count("\nnode ") == 3 and plain.count("\nedge ") == 3
