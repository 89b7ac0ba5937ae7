"""The C tests of the replay engine (tests/c/test_replay.c), built and run here.

They compare every compiled program with the tape's own sweep (src/tape.c):
bit-identical with the passes off, within a stated bound with them on, batched
and threaded replay against one row at a time.  Built with the C compiler
Python itself was built with (as setuptools does) and the flags of setup.py;
skipped without a compiler.  AUTOGRAD_C_SANITIZE=1 also runs them under
AddressSanitizer and UndefinedBehaviorSanitizer (a slower build).
"""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["tests/c/test_replay.c", "src/tape.c", "src/tape_sweep.c", "src/tape_compact.c", "src/tape_retain.c",
          "src/replay.c", "src/replay_passes.c", "src/replay_program.c", "src/replay_format.c",
          "src/replay_eval.c", "src/replay_batch.c", "src/replay_pool.c"]
KERNELS = "src/replay_kernels.c"   # built twice: with the AVX2 variant, and portable only
FLAGS = ["-std=c99", "-ffp-contract=off", "-pthread", "-Wall", "-Wextra", "-Werror",
         "-Wno-unused-function", "-Isrc", "-Itests/c"]
GRAPHS = "3000"     # random graphs per run (about a second)


def _compiler():
    """The C compiler command, as a list, or None when there is none."""
    if sys.platform == "win32":
        return None     # MSVC's command line differs; the C tests run on POSIX
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cmd = shlex.split(cc)
    return cmd if cmd and shutil.which(cmd[0]) else None


def _compile_all(cc, jobs):
    """Compile (source, object, flags) jobs two at a time; the first error or None."""
    running = []
    for source, obj, flags in jobs:
        running.append(subprocess.Popen(cc + flags + FLAGS + ["-c", source, "-o", str(obj)], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        if len(running) == 2:
            out = running.pop(0)
            if out.wait() != 0:
                return out.stdout.read()
    for out in running:
        if out.wait() != 0:
            return out.stdout.read()
    return None


@pytest.fixture(scope="module")
def executables(tmp_path_factory):
    """test_replay built twice: with the kernel variants picked at load time
    (AVX2 where the CPU has it) and with the portable kernels only."""
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler")
    tmp = tmp_path_factory.mktemp("replay_c")
    objs = [tmp / (Path(s).stem + ".o") for s in COMMON]
    jobs = [(s, o, ["-O3"]) for s, o in zip(COMMON, objs)]
    jobs += [(KERNELS, tmp / "kernels.o", ["-O3"]), (KERNELS, tmp / "kernels_base.o", ["-O3", "-DRP_NO_CLONES"])]
    error = _compile_all(cc, jobs)
    assert error is None, error
    exes = {}
    for name, batch in (("dispatched", "kernels.o"), ("baseline", "kernels_base.o")):
        exe = tmp / ("test_replay_" + name)
        linked = subprocess.run(cc + [*map(str, objs), str(tmp / batch), "-o", str(exe), "-lm", "-pthread"],
                                capture_output=True, text=True)
        assert linked.returncode == 0, linked.stderr
        exes[name] = exe
    return exes


def _run(exe, graphs=GRAPHS, env=None):
    done = subprocess.run([str(exe), graphs], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failures" in done.stdout, done.stdout
    return done.stdout


@pytest.mark.parametrize("kernels", ["dispatched", "baseline"])
def test_replay_c(executables, kernels):
    print(_run(executables[kernels]))


@pytest.mark.skipif(os.environ.get("AUTOGRAD_C_SANITIZE") != "1",
                    reason="set AUTOGRAD_C_SANITIZE=1 to run the C tests under ASan and UBSan")
def test_replay_c_sanitized(tmp_path):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "test_replay_asan"
    built = subprocess.run(cc + ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                                 "-fno-omit-frame-pointer", *FLAGS, *COMMON, KERNELS, "-o", str(exe), "-lm"],
                           cwd=ROOT, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip("the compiler cannot build with sanitizers here: " + built.stderr[-300:])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    print(_run(exe, "1000", env))
