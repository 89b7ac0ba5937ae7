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
    link_args = []
else:
    # No -ffast-math: the gradients rely on IEEE inf/nan semantics.  No
    # contraction of a * b + c into an FMA either: replay must compute the
    # same bits as the recorder (src/replay.h), whatever -march a build uses.
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
    # src/higher.cpp is C++ only for its number types (templates, operator
    # overloading): no exceptions, RTTI or standard library, so the module
    # links as C and needs no libstdc++ (tests/test_packaging.py checks).
    compile_args += ["-Wno-unused-function", "-ffp-contract=off", "-pthread", "-fno-exceptions"]
    link_args = ["-pthread"]

REPLAY_SOURCES = ["src/replay.c", "src/replay_passes.c", "src/replay_program.c", "src/replay_format.c",
                  "src/replay_eval.c", "src/replay_batch.c", "src/replay_kernels.c", "src/replay_pool.c",
                  "src/replay_higher.cpp"]
REPLAY_HEADERS = ["src/replay.h", "src/replay_ir.h", "src/replay_sweep.h", "src/replay_block.h",
                  "src/replay_lanes.h"]

extension = Extension(
    "autograd_c._core",
    sources=["src/_core.pyx", "src/tape.c", "src/tape_sweep.c", "src/tape_compact.c", "src/tape_retain.c",
             "src/higher.cpp"] + REPLAY_SOURCES,
    include_dirs=["src"],
    language="c",       # link with the C compiler driver: nothing from libstdc++ is used
    depends=["src/tape.h", "src/tape_layout.h", "src/tape_sweep.h", "src/tape_compact.h", "src/ops.h",
             "src/thread_state.h", "src/tape.pxd", "src/higher.h", "src/higher_numbers.h"] + REPLAY_HEADERS
    + sorted(str(p) for p in Path("src").glob("*.pxi")),
    extra_compile_args=compile_args,
    extra_link_args=link_args,
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
