"""Builds the compiled core autograd_c._core (Cython + plain C); metadata lives in pyproject.toml.

Environment switches:
  AUTOGRAD_C_DEBUG=1     bounds and initialisation checks on, -O0 -g
  AUTOGRAD_C_ANNOTATE=1  write Cython's HTML annotation next to the generated C (build/cython)
"""
import os
from pathlib import Path
import sys

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:
    sys.exit("Building autograd_c needs Cython>=3: `pip install .` installs it for the build.")

DEBUG = os.environ.get("AUTOGRAD_C_DEBUG") == "1"

if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    # No -ffast-math: the gradients rely on IEEE inf/nan semantics.
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
    compile_args += ["-Wno-unused-function"]
    # src/higher.cpp is C++ only for its number types (templates, operator
    # overloading): no exceptions, RTTI or standard library, so the module
    # links as C and needs no libstdc++ (tests/test_packaging.py checks).
    compile_args += ["-fno-exceptions"]

extension = Extension(
    "autograd_c._core",
    sources=["src/_core.pyx", "src/tape.c", "src/higher.cpp"],
    include_dirs=["src"],
    language="c",       # link with the C compiler driver: nothing from libstdc++ is used
    depends=["src/tape.h", "src/ops.h", "src/thread_state.h", "src/tape.pxd", "src/higher.h"]
    + sorted(str(p) for p in Path("src").glob("*.pxi")),
    extra_compile_args=compile_args,
)

setup(
    ext_modules=cythonize(
        [extension],
        include_path=["src"],
        build_dir="build/cython",
        annotate=os.environ.get("AUTOGRAD_C_ANNOTATE") == "1",
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": False,
            "initializedcheck": DEBUG,
            "nonecheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
