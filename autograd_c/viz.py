r"""Pictures of computation graphs: Graphviz DOT text, and rendered files.

:func:`to_dot` returns the DOT text of the graph a Variable was computed
from (no dependencies); :func:`draw` renders it to SVG, PNG or PDF through
the optional ``graphviz`` Python package (``pip install "autograd_c[draw]"``)
and the Graphviz ``dot`` program.

Large graphs are summarised: only the ``max_nodes`` nodes nearest the output
(breadth-first) are drawn, plus one node saying how many were left out.

>>> import autograd_c as ag
>>> x = ag.Variable(2.0, name="x")
>>> print(ag.to_dot(x * 3), end="")
digraph autograd_c {
  rankdir=LR;
  node [shape=record, fontname="Helvetica", fontsize=10];
  n0 [label="{ * | data 6 | grad 0 }", penwidth=2];
  n1 [label="{ x | data 2 | grad 0 }", style=filled, fillcolor="#dde8f7"];
  n2 [label="{ const | data 3 }", style=dashed];
  n1 -> n0;
  n2 -> n0;
}
"""
import os
from collections import deque

from ._core import Variable

__all__ = ["to_dot", "draw"]

_EXTRA = 'pip install "autograd_c[draw]"'
_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_TEXT = {".dot": "dot", ".gv": "dot"}
_RECORD_SPECIALS = set('\\"{}|<>')


def _escape(text, spaces=False):
    """text as a field of a record label inside a double-quoted DOT string
    (spaces=True keeps runs of spaces and leading/trailing ones)."""
    out = []
    for ch in text:
        if ch == " " and spaces:
            out.append("\\ ")
            continue
        if ch == "\n":
            out.append("\\n")
        elif ch < " " or ch == "\x7f":
            out.append("\\\\" + repr(ch)[2:-1])     # e.g. a tab shows as the text \t
        elif ch in _RECORD_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _number(x):
    return f"{x:.4g}"


def _kind(node):
    """'op', 'leaf' or 'const'."""
    if not (node.is_leaf if hasattr(node, "is_leaf") else not node._prev):
        return "op"
    return "leaf" if getattr(node, "requires_grad", True) else "const"


_RANK = {"leaf": 0, "const": 1, "op": 2}


def _sort_key(node):
    return (_RANK[_kind(node)], getattr(node, "_op", ""), getattr(node, "name", None) or "",
            repr(node.data))


def _operands(node):
    """node._prev as a list in a reproducible order (set order follows addresses)."""
    prev = node._prev
    if len(prev) <= 1:
        return list(prev)
    if len(prev) > 10_000:             # a huge n-ary node: only a few can be shown anyway
        return list(prev)
    return sorted(prev, key=_sort_key)


def _label(node, kind):
    fields = []
    name = getattr(node, "name", None)
    if name is None:
        name = getattr(node, "label", None) or None      # micrograd's Value.label
    if name is not None:
        fields.append(_escape(str(name), spaces=True))
    if kind == "const":
        fields.append("const")
    elif kind == "op":
        fields.append(_escape(getattr(node, "_op", "") or "?"))
    fields.append(f"data {_number(node.data)}")
    if kind != "const":
        fields.append(f"grad {_number(node.grad)}")
    return "{ " + " | ".join(fields) + " }"


def _totals(root):
    """(operations, leaves) root depends on: graph_size/leaves for a Variable, else a walk."""
    if isinstance(root, Variable):
        from . import graph_size, leaves          # not at import time: the package imports us
        return graph_size(root), len(leaves(root))
    ops = nleaves = 0                               # another micrograd-like object: walk it
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        kind = _kind(node)
        ops += kind == "op"
        nleaves += kind == "leaf"
        for p in node._prev:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    return ops, nleaves


def _plural(n, word):
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def to_dot(v, max_nodes=200):
    r"""Graphviz DOT text of the graph ``v`` was computed from.

    One record node per Variable, labelled ``name | op | data | grad``
    (the name only if it has one, no op for leaves; constants show
    ``const`` and their value), with edges from operands to the operation
    that used them, left to right (``rankdir=LR``).  ``v`` is drawn bold,
    leaves filled, constants dashed.  A Variable used several times appears
    once.  Nodes are numbered n0 (``v``), n1, ... in breadth-first order from
    ``v``, so the same graph gives the same text.

    The walk is iterative and stops after ``max_nodes`` nodes; what is left
    out is summarised by one extra node ("... N more nodes not shown") with
    dashed edges to the drawn nodes whose operands were cut.

    Parameters
    ----------
    v : Variable
        The output (any Variable; a leaf gives a single node).
    max_nodes : int, default 200
        The most Variables drawn.

    Returns
    -------
    str

    Examples
    --------
    >>> import autograd_c as ag
    >>> a, b = ag.Variable(2.0, name="a"), ag.Variable(-3.0, name="b")
    >>> y = ag.tanh(a * b + 10.0); y.name = "y"
    >>> y.backward()
    >>> text = ag.to_dot(y)
    >>> text.count("->")
    5
    >>> print(text.splitlines()[3])
      n0 [label="{ y | tanh | data 0.9993 | grad 1 }", penwidth=2];
    >>> x = ag.Variable(0.5)
    >>> h = x
    >>> for _ in range(10_000):
    ...     h = ag.sin(h)
    >>> print(ag.to_dot(h, max_nodes=3).splitlines()[-3])
      summary [shape=note, label="... 9,998 more nodes not shown\n(9,997 operations, 1 leaf)"];
    """
    if not (isinstance(v, Variable) or (hasattr(v, "_prev") and hasattr(v, "data"))):
        raise TypeError(f"to_dot() takes a Variable, not {type(v).__name__}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int):
        raise TypeError(f"max_nodes must be an int, not {type(max_nodes).__name__}")
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, not {max_nodes}")

    ids = {id(v): 0}
    order = [v]                # keeps every drawn node alive, so their ids stay unique
    queue = deque([v])
    edges = []
    cut = []                   # drawn nodes with operands that were not drawn
    while queue:
        node = queue.popleft()
        me = ids[id(node)]
        was_cut = False
        for p in _operands(node):
            k = id(p)
            if k not in ids:
                if len(order) >= max_nodes:
                    was_cut = True
                    continue
                ids[k] = len(order)
                order.append(p)
                queue.append(p)
            edges.append((ids[k], me))
        if was_cut:
            cut.append(me)

    lines = [
        "digraph autograd_c {",
        "  rankdir=LR;",
        '  node [shape=record, fontname="Helvetica", fontsize=10];',
    ]
    kinds = []
    for i, node in enumerate(order):
        kind = _kind(node)
        kinds.append(kind)
        style = ""
        if i == 0:
            style = ", penwidth=2"
        elif kind == "leaf":
            style = ', style=filled, fillcolor="#dde8f7"'
        elif kind == "const":
            style = ", style=dashed"
        lines.append(f'  n{i} [label="{_label(node, kind)}"{style}];')
    lines.extend(f"  n{a} -> n{b};" for a, b in edges)
    if cut:
        ops, nleaves = _totals(v)
        more_ops = max(ops - kinds.count("op"), 0)
        more_leaves = max(nleaves - kinds.count("leaf"), 0)
        parts = [_plural(more_ops, "operation"), _plural(more_leaves, "leaf").replace(
            "leafs", "leaves")]
        text = (f"... {more_ops + more_leaves:,} more nodes not shown\\n"
                f"({', '.join(parts)})")
        lines.append(f'  summary [shape=note, label="{text}"];')
        lines.extend(f"  summary -> n{i} [style=dashed];" for i in cut)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(v, path, format=None, max_nodes=200):
    """Render the graph of ``v`` (see :func:`to_dot`) to a file.

    Parameters
    ----------
    v : Variable
    path : str or os.PathLike
        The file to write (overwritten).  Its extension gives the format:
        ``.svg``, ``.png`` or ``.pdf`` are rendered by Graphviz; ``.dot``
        or ``.gv`` get the DOT text itself (no Graphviz needed).
    format : str, optional
        A Graphviz output format (``"svg"``, ``"png"``, ``"pdf"``, ...) to
        use whatever the extension.
    max_nodes : int, default 200
        As for :func:`to_dot`.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ImportError
        The ``graphviz`` Python package is not installed
        (``pip install "autograd_c[draw]"``).
    RuntimeError
        Graphviz's ``dot`` program is not installed (https://graphviz.org).

    Examples
    --------
    >>> import autograd_c as ag, os, tempfile
    >>> x = ag.Variable(2.0, name="x")
    >>> path = os.path.join(tempfile.mkdtemp(), "graph.dot")
    >>> ag.draw(x * x + 1, path) == path
    True

    With graphviz installed, ``ag.draw(y, "graph.svg")`` writes an SVG file.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    ext = os.path.splitext(path)[1].lower()
    if format is None:
        if ext in _TEXT:
            format = "dot"
        elif ext in _RENDERED:
            format = _RENDERED[ext]
        else:
            raise ValueError(
                f"draw() cannot tell the format from {path!r}: use a .svg, .png, .pdf or .dot "
                f"path, or pass format='svg' (or any Graphviz output format)")
    elif not isinstance(format, str) or not format:
        raise TypeError(f"format must be a Graphviz format name such as 'svg', not {format!r}")
    text = to_dot(v, max_nodes=max_nodes)
    if format in ("dot", "gv") and ext in _TEXT:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path
    try:
        import graphviz
    except ImportError as exc:
        raise ImportError(
            f"autograd_c.draw() needs the optional 'graphviz' Python package: "
            f"{_EXTRA} (or pip install graphviz), and Graphviz's `dot` program "
            f"(https://graphviz.org/download/). autograd_c.to_dot() gives the DOT text "
            f"without it.") from exc
    try:
        data = graphviz.Source(text).pipe(format=format)
    except graphviz.ExecutableNotFound as exc:
        raise RuntimeError(
            "autograd_c.draw() found the graphviz Python package but not Graphviz's `dot` "
            "program on PATH; install Graphviz (https://graphviz.org/download/, e.g. "
            "`apt install graphviz`, `brew install graphviz` or `conda install graphviz`), "
            "or write DOT text with a .dot path / autograd_c.to_dot()") from exc
    with open(path, "wb") as fh:
        fh.write(data)
    return path
