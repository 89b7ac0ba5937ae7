"""Part 7 of issue 3: the type stubs describe the compiled module exactly,
the package is marked typed, and every public name has a docstring."""
import ast
import importlib
import inspect
import pathlib

import pytest

import autograd_c as ag
from autograd_c import _core

PACKAGE = pathlib.Path(ag.__file__).parent
STUB = PACKAGE / "_core.pyi"
PUBLIC_MODULES = ["autograd_c", "autograd_c.optim", "autograd_c.nn", "autograd_c.engine",
                  "autograd_c.function", "autograd_c.modes", "autograd_c.checking",
                  "autograd_c.viz", "autograd_c.datasets", "autograd_c.compiled",
                  "autograd_c.functional"]


def stub_tree():
    return ast.parse(STUB.read_text())


def test_package_is_marked_typed():
    assert (PACKAGE / "py.typed").exists()


def test_stub_lists_every_function_of_the_compiled_module():
    stubbed = {node.name for node in stub_tree().body if isinstance(node, ast.FunctionDef)}
    compiled = {name for name, obj in vars(_core).items()
                if callable(obj) and not isinstance(obj, type)
                and getattr(obj, "__module__", "autograd_c._core") == "autograd_c._core"
                and not name.startswith("__")}
    assert compiled - stubbed == set(), "functions missing from _core.pyi"
    assert stubbed - compiled == set(), "_core.pyi names functions the module lacks"


def test_stub_lists_every_member_of_variable():
    (cls,) = [n for n in stub_tree().body if isinstance(n, ast.ClassDef) and n.name == "Variable"]
    stubbed = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    actual = {name for name in vars(_core.Variable)
              if not (name.startswith("__") and name.endswith("__"))} | {
        name for name in vars(_core.Variable)
        if name.startswith("__") and name.endswith("__") and name in {
            "__init__", "__float__", "__int__", "__bool__", "__hash__", "__format__", "__add__",
            "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
            "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__", "__lt__",
            "__le__", "__gt__", "__ge__"}}
    assert actual - stubbed == set(), "Variable members missing from _core.pyi"
    assert stubbed - actual == set(), "_core.pyi names Variable members that do not exist"


def test_stub_signatures_match_the_compiled_functions():
    """Parameter names and defaults of each stubbed function are the real ones."""
    for node in stub_tree().body:
        if not isinstance(node, ast.FunctionDef):
            continue
        real = getattr(_core, node.name)
        try:
            sig = inspect.signature(real)
        except (TypeError, ValueError):       # pragma: no cover - Cython without binding
            continue
        assert [a.arg for a in node.args.args] == list(sig.parameters), node.name


def public_names():
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        assert names is not None, f"{modname} has no __all__"
        yield module, modname, names


@pytest.mark.parametrize("modname", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(modname):
    module = importlib.import_module(modname)
    assert (module.__doc__ or "").strip(), f"{modname} has no module docstring"
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        assert (obj.__doc__ or "").strip(), f"{modname}.{name} has no docstring"
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if member.startswith("_") or not (callable(value) or isinstance(value, property)):
                    continue
                assert (value.__doc__ or "").strip(), f"{modname}.{name}.{member} has no docstring"
