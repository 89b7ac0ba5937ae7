"""Helpers shared by the test modules (pytest puts tests/ on sys.path)."""
import os
import threading


def in_fresh_thread(fn, *args, **kwargs):
    """Run fn in a new thread, hence on a new, empty tape (other tests, or
    pytest's saved tracebacks, may keep recorded Variables of the main thread
    alive); return its result or re-raise its exception here."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"fresh-{fn.__name__}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# scripts/asan.sh and scripts/valgrind.sh set AUTOGRAD_C_SANITIZER: everything
# runs 5-50x slower there, so subprocess timeouts stretch
SANITIZER = os.environ.get("AUTOGRAD_C_SANITIZER", "")
TIMEOUT_SCALE = 20 if SANITIZER else 1


def run_python(source, *args, timeout=120, env=None):
    """Run `source` in a fresh interpreter that imports this checkout's
    autograd_c; return (returncode, stdout, stderr).  For code that may crash
    the interpreter: a segfault or an abort shows up as a returncode, not as
    a dead pytest."""
    import os
    import subprocess
    import sys

    import autograd_c

    root = os.path.dirname(os.path.dirname(os.path.abspath(autograd_c.__file__)))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", source, *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout * TIMEOUT_SCALE)
    return proc.returncode, proc.stdout, proc.stderr


def run_python_json(source, *args, timeout=120, env=None):
    """run_python, asserting a clean exit; the JSON document on the last line of stdout."""
    import json

    rc, out, err = run_python(source, *args, timeout=timeout, env=env)
    assert rc == 0, f"the interpreter exited with {rc}:\n{err[-3000:]}"
    lines = out.strip().splitlines()
    assert lines, f"no output; stderr:\n{err[-3000:]}"
    return json.loads(lines[-1])


class Prefetch:
    """Run a fixed set of interpreter jobs in parallel, started on the first
    request: `jobs` maps a key to (source, args); `result(key)` returns
    run_python's (returncode, stdout, stderr) for that job.  For parametrized
    tests that each need a subprocess, so the whole set costs the time of
    the slowest few instead of the sum."""

    def __init__(self, jobs, workers=None, timeout=300):
        self.jobs = jobs
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.timeout = timeout
        self.futures = None

    def result(self, key):
        import concurrent.futures
        if self.futures is None:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
            self.futures = {k: pool.submit(run_python, src, *args, timeout=self.timeout)
                            for k, (src, args) in self.jobs.items()}
            pool.shutdown(wait=False)
        return self.futures[key].result()

    def json(self, key):
        import json
        rc, out, err = self.result(key)
        assert rc == 0, f"the interpreter exited with {rc}:\n{err[-3000:]}"
        return json.loads(out.strip().splitlines()[-1])
