#!/usr/bin/env bash
# scripts/asan.sh -- the test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/asan.sh                      # whole suite
#   scripts/asan.sh tests/test_api.py -x # any pytest arguments
#
# Builds autograd_c._core with -fsanitize=address,undefined (debug: -O0 -g,
# bounds checks on) in a copy of the working tree under build/asan/ with its
# own virtual environment, so the normal in-place build is never touched, then
# runs pytest with the ASan runtime preloaded (python itself is not
# instrumented) and PYTHONMALLOC=malloc, so that every Python object --
# Variables included -- gets ASan's redzones.
#
# Reports go to build/asan/logs/asan.<pid> (one per process: the tests start
# subprocesses).  At the end the script prints every error report and every
# leak whose stack passes through autograd_c (_core, tape.c, higher.cpp); leaks of the
# interpreter itself (CPython frees little at exit) are counted, not shown.
# Exit status: pytest's, or 1 if a report involves autograd_c.
#
# Environment:
#   ASAN_WORK=DIR     where to build (default: build/asan in the repository)
#   ASAN_TORCH=0      do not install torch in the ASan venv (its tests skip)
#   ASAN_REBUILD=0    reuse the last build
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${ASAN_WORK:-$root/build/asan}
logs=$work/logs
mkdir -p "$work"

if [ "${ASAN_REBUILD:-1}" = 1 ] || [ ! -d "$work/tree" ]; then
    echo "== copying the working tree to $work/tree"
    rm -rf "$work/tree"
    mkdir -p "$work/tree"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/tree")
fi

if [ ! -x "$work/venv/bin/python" ]; then
    echo "== creating $work/venv"
    python3 -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q --upgrade pip
    "$work/venv/bin/python" -m pip install -q "Cython>=3.0" "setuptools>=77" "numpy>=2.0" \
        pytest hypothesis micrograd matplotlib graphviz tqdm
    if [ "${ASAN_TORCH:-1}" = 1 ]; then
        "$work/venv/bin/python" -m pip install -q torch==2.13.0
    fi
fi
py=$work/venv/bin/python

cd "$work/tree"
if [ "${ASAN_REBUILD:-1}" = 1 ] || ! ls autograd_c/_core*.so >/dev/null 2>&1; then
    echo "== building autograd_c._core with ASan + UBSan"
    rm -rf build autograd_c/_core*.so
    san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    # CXXFLAGS too: setuptools compiles src/higher.cpp with those, not with CFLAGS
    AUTOGRAD_C_DEBUG=1 CFLAGS="$san -g" CXXFLAGS="$san -g" LDFLAGS="$san" "$py" setup.py -q build_ext --inplace
fi

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
rm -rf "$logs"
mkdir -p "$logs"

# detect_leaks: reported at each process's exit and filtered below.
# alloc_dealloc_mismatch=0: CPython and NumPy mix allocators legitimately.
# halt_on_error=1: the first invalid access ends the process (a test then fails).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:alloc_dealloc_mismatch=0:detect_odr_violation=0:strict_init_order=1:log_path=$logs/asan:log_exe_name=0:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
export LSAN_OPTIONS="report_objects=0:max_leaks=200:exitcode=0"   # leaks are judged below, not by exit status
export PYTHONMALLOC=malloc
export AUTOGRAD_C_SANITIZER=asan   # tests stretch subprocess timeouts and skip RSS measurements
export PYTHONFAULTHANDLER=1

echo "== pytest under ASan + UBSan (logs in $logs)"
set +e
LD_PRELOAD="$libasan $libubsan" "$py" -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e

echo
echo "== sanitizer reports"
"$py" - "$logs" <<'PY'
import glob, os, re, sys
logs = sys.argv[1]
# frames of autograd_c's extension (numpy has a `_core` package too)
ours = re.compile(r"autograd_c[/.]_core|autograd_c_5_core|\b_core\.(c|pyx):|\btape\.[ch]:|\bops\.h:|\bhigher\.(cpp|h):")
errors = core_leaks = other_leaks = 0
for path in sorted(glob.glob(os.path.join(logs, "*"))):
    text = open(path, errors="replace").read()
    # one report per "=====" header (ASan) or "runtime error" line (UBSan)
    for block in re.split(r"\n(?==+\n==\d+==)", text):
        if "runtime error:" in block or "ERROR: AddressSanitizer" in block:
            errors += 1
            print(f"--- {os.path.basename(path)}\n{block.strip()[:6000]}\n")
    for leak in re.split(r"\n(?=(?:Direct|Indirect) leak of)", text):
        if not leak.startswith(("Direct leak", "Indirect leak")):
            continue
        if ours.search(leak):
            core_leaks += 1
            print(f"--- leak through autograd_c in {os.path.basename(path)}\n{leak.strip()[:4000]}\n")
        else:
            other_leaks += 1
print(f"sanitizer errors: {errors}; leaks through autograd_c: {core_leaks}; "
      f"other leaks (the interpreter's own): {other_leaks}; logs: {len(os.listdir(logs))} files")
sys.exit(1 if errors or core_leaks else 0)
PY
report=$?
exit $(( status != 0 ? status : report ))
