"""The source layout stays readable: every file of the compiled core says what
it holds, stays a size a reader can take in, and is described in
docs/architecture.md, which the README links."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CORE_FILES = sorted(p for p in SRC.glob("*") if p.suffix in {".pyx", ".pxi", ".pxd", ".h", ".c", ".cpp"})

if not SRC.is_dir():  # pragma: no cover - an installed package without its sources
    pytest.skip("the source tree is not here", allow_module_level=True)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_file_opens_with_what_it_holds(path):
    first = path.read_text().splitlines()[0]
    assert re.match(rf"^(#|/\*) {re.escape(path.name)} -- \S", first), (
        f"{path.name} must open with '{path.name} -- what it holds', not {first!r}")


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_file_is_not_too_long(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 750, f"{path.name} has {lines} lines: split it by concern (docs/architecture.md)"


def test_architecture_names_every_core_file():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [p.name for p in CORE_FILES if p.name not in text]
    assert not missing, f"docs/architecture.md does not mention {missing}"


def test_every_include_is_included():
    core = (SRC / "_core.pyx").read_text()
    included = set(re.findall(r'^include "([^"]+)"', core, re.M))
    assert included == {p.name for p in SRC.glob("*.pxi")}


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    for target in ("docs/architecture.md", "CONTRIBUTING.md"):
        assert f"]({target})" in readme
        assert (ROOT / target).is_file()
