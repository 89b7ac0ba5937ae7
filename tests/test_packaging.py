"""The package's shape: an unbuilt checkout says how to build it; build products stay out of git."""
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_without_compiled_core_says_how_to_build(tmp_path):
    pkg = tmp_path / "autograd_c"
    pkg.mkdir()
    for source in (ROOT / "autograd_c").glob("*.py"):
        shutil.copy(source, pkg)
    run = subprocess.run(
        [sys.executable, "-S", "-c", "import autograd_c"],  # -S: no site-packages
        cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0
    assert "ImportError" in run.stderr
    assert "compiled core" in run.stderr and "pip install ." in run.stderr


def test_no_build_products_tracked_in_git():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    bad = [f for f in tracked if f.endswith((".so", ".pyd", ".o")) or f.startswith("build/")
           or ".egg-info" in f or (f.endswith(".c") and f != "src/tape.c")]
    assert bad == []


def test_public_names_are_exported():
    import autograd_c as ag
    for name in ag.__all__:
        assert getattr(ag, name).__doc__, name


def test_compiled_core_needs_no_cxx_runtime():
    """src/higher.cpp is C++ for its number types only: no exceptions, RTTI or
    standard library, so the module links as C and needs nothing from
    libstdc++ (a wheel must not depend on the C++ runtime)."""
    import autograd_c._core as core
    if not sys.platform.startswith("linux") or shutil.which("nm") is None:
        return
    undefined = subprocess.run(["nm", "-u", "-D", core.__file__], capture_output=True,
                               text=True).stdout.split()
    cxx = [s for s in undefined if s.startswith(("_Z", "__cxa_", "__gxx_")) and s != "__cxa_finalize"
           and not s.startswith("__cxa_finalize@")]
    assert cxx == []
    if shutil.which("readelf"):
        needed = subprocess.run(["readelf", "-d", core.__file__], capture_output=True, text=True).stdout
        assert "libstdc++" not in needed
