#!/usr/bin/env bash
# scripts/valgrind.sh -- tests under valgrind memcheck, debug build.
#
#   scripts/valgrind.sh                  # the default subset (below)
#   scripts/valgrind.sh tests/test_api.py -k backward   # any pytest arguments
#
# Builds autograd_c._core with AUTOGRAD_C_DEBUG=1 (-O0 -g, bounds checks on)
# in a copy of the working tree under build/valgrind/ with its own virtual
# environment (no torch: its tests skip), then runs pytest under memcheck
# with PYTHONMALLOC=malloc (so every Python object is a malloc block memcheck
# can see) and CPython's suppressions.  Subprocesses that tests start are
# traced too (--trace-children), each into its own log.
#
# The default subset: memcheck runs code 20-50x slower, so the whole suite
# (~30 s natively, with graphs of 10-50 million nodes, torch comparisons,
# hypothesis and RSS measurements) would take hours.  The subset keeps every
# test module that drives the core's own code paths -- recording, sweeps,
# compaction, leaf tables, Functions, threads, modes, introspection, layers,
# optimisers, errors -- and leaves out: test_scale.py (tens of millions of
# nodes), test_vs_torch.py, test_finite_differences.py, test_properties.py
# and test_gradcheck*.py (numeric grids: the same core paths, thousands of
# times), test_memory_rss.py, test_memory_reuse.py and test_interrupt.py
# (timing, page faults and RSS are meaningless under valgrind), test_demo.py and test_viz.py (matplotlib,
# graphviz), test_reentrancy.py's finalizer storms (hundreds of
# subprocesses), tests marked slow, and four tests too slow under valgrind
# (test_deep_chain_of_functions_no_recursion and test_million_node_chain_walks:
# a million nodes each; test_four_threads_build_and_backprop_concurrently: a
# join timeout; test_operand_released_during_conversion_does_not_crash: a 60 s
# subprocess recording 2**20 operations).
#
# At the end the script prints every memcheck error (invalid read/write, use
# of uninitialised values, invalid free) and every definite leak whose stack
# passes through autograd_c; the others (CPython's uninitialised-looking
# bytes from os.urandom, glibc's SSE string scans reading past a block, the
# interpreter's and NumPy's blocks still allocated at exit) are counted, not
# shown.  Exit status: pytest's, or 1 if memcheck
# found an error or a definite leak through autograd_c.
#
# Environment:
#   VALGRIND_WORK=DIR   where to build (default: build/valgrind in the repository)
#   VALGRIND_REBUILD=0  reuse the last build
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${VALGRIND_WORK:-$root/build/valgrind}
logs=$work/logs
mkdir -p "$work"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }

if [ "${VALGRIND_REBUILD:-1}" = 1 ] || [ ! -d "$work/tree" ]; then
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
        pytest hypothesis micrograd
fi
py=$work/venv/bin/python

cd "$work/tree"
if [ "${VALGRIND_REBUILD:-1}" = 1 ] || ! ls autograd_c/_core*.so >/dev/null 2>&1; then
    echo "== debug build of autograd_c._core"
    rm -rf build autograd_c/_core*.so
    AUTOGRAD_C_DEBUG=1 "$py" setup.py -q build_ext --inplace
fi

if [ $# -eq 0 ]; then
    set -- tests/test_api.py tests/test_seeds_core.py tests/test_seed_functions.py \
        tests/test_seed_programs.py tests/test_function.py tests/test_grad_mode.py \
        tests/test_introspection.py tests/test_dense.py tests/test_memory.py \
        tests/test_micrograd_graph.py tests/test_micrograd_dropin.py tests/test_threads.py \
        tests/test_errors.py tests/test_optim.py tests/test_released_graphs.py \
        tests/test_node_adjoints.py tests/test_errors_table.py tests/test_misuse.py \
        tests/test_value_consistency.py tests/test_reentrancy.py \
        tests/test_wide_layout.py tests/test_wide_higher.py \
        -m "not slow" \
        -k "not storm and not deep_chain_of_functions_no_recursion and not four_threads_build
            and not million_node_chain_walks and not operand_released_during_conversion"
fi

supp=()
for f in /usr/lib/valgrind/python3.supp "$root/scripts/valgrind-python.supp"; do
    [ -f "$f" ] && supp+=("--suppressions=$f")
done

rm -rf "$logs"
mkdir -p "$logs"
export PYTHONMALLOC=malloc
export AUTOGRAD_C_SANITIZER=valgrind   # tests stretch subprocess timeouts and skip RSS measurements
echo "== pytest under valgrind memcheck (logs in $logs)"
set +e
valgrind --tool=memcheck --trace-children=yes --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=30 --log-file="$logs/vg.%p" "${supp[@]}" \
    "$py" -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e

echo
echo "== memcheck reports"
"$py" - "$logs" <<'PY'
import glob, os, re, sys
# frames of autograd_c's extension (numpy has a `_core` package too)
ours = re.compile(r"autograd_c[/.]_core|autograd_c_5_core|\b_core\.(c|pyx):|\btape\.[ch]:|\bops\.h:")
errors = other_errors = core_leaks = other_leaks = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "vg.*"))):
    lines = open(path, errors="replace").read().splitlines()
    blocks, cur = [], []
    for line in lines:                 # a report is a run of "==pid== " lines up to a blank one
        body = re.sub(r"^==\d+== ?", "", line)
        if body.strip():
            cur.append(body)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    for b in blocks:
        head = b[0]
        text = "\n".join(b)
        if re.match(r"(Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
                     r"Syscall param|Mismatched free|Source and destination overlap)", head):
            # CPython's import machinery, reached from the module's init (Cython
            # imports collections.abc there), reads bytes memcheck thinks uninitialised
            frames = [l for l in b if ours.search(l)]
            if frames and "__pyx_pymod_exec" not in frames[-1]:
                errors += 1
                print(f"--- {os.path.basename(path)}\n{text[:5000]}\n")
            else:
                other_errors += 1     # CPython's and glibc's own (urandom bytes, SSE string scans)
        elif "definitely lost" in head and "loss record" in head:
            if ours.search(text) and "_tracemalloc.c" not in text:   # tracemalloc's own tracebacks
                core_leaks += 1
                print(f"--- leak through autograd_c in {os.path.basename(path)}\n{text[:4000]}\n")
            else:
                other_leaks += 1
print(f"memcheck errors through autograd_c: {errors}; elsewhere (not shown): {other_errors}; "
      f"definite leaks through autograd_c: {core_leaks}; elsewhere: {other_leaks}")
sys.exit(1 if errors or core_leaks else 0)
PY
report=$?
exit $(( status != 0 ? status : report ))
