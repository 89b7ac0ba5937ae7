"""Smoke tests of the benchmark scripts at tiny sizes (no timing is checked):
they run as their users run them, in subprocesses, and produce their tables.

Runs with ``pytest benchmarks/test_scripts.py`` (``--benchmark-only`` skips
it, as it skips every test without the benchmark fixture)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script, *args, cwd):
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_bench_scale_tiny_run_writes_its_table_and_json(tmp_path):
    out = tmp_path / "scale"
    text = run("bench_scale.py", "--quick", "--sizes", "1e3,3e3", "--processes", "2", "--no-chart",
               "--out", str(out), cwd=tmp_path)
    assert "| tape nodes |" in text and "**chain**" in text and "**mlp**" in text
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    assert [(r["workload"], r["status"]) for r in rows] == [("chain", "ok")] * 2 + [("mlp", "ok")] * 2
    chain = rows[0]
    assert chain["nodes"] == 999 and chain["processes"] == 2 and chain["subnormal"] is None
    assert 0 < chain["forward_best_ns"] <= chain["forward_median_ns"]
    assert rows[2]["nodes"] % 68 == 5          # nn.MLP: 68 tape nodes a sample, 5 for the loss


def test_compare_measures_the_drop_in_against_the_idiomatic_step(tmp_path):
    row = json.loads(run("compare.py", "--measure", "autograd_c_dropin", "mlp", "--quick", cwd=tmp_path)
                     .strip().splitlines()[-1])
    assert row["status"] == "ok", row
    assert row["step_s"] > 0 and row["ac_step_s"] > 0 and row["tape_nodes"] > 6_000


@pytest.mark.parametrize("script", ["bench_core.py", "bench_micrograd_step.py"])
def test_script_runs_from_another_directory(tmp_path, script):
    if script == "bench_micrograd_step.py":
        pytest.importorskip("micrograd")
    assert "|" in run(script, "--quick", cwd=tmp_path)


def test_compare_measures_compiled_replay_on_the_batches(tmp_path):
    row = json.loads(run("compare.py", "--measure", "autograd_c_replay", "batch_small", "--quick", cwd=tmp_path)
                     .strip().splitlines()[-1])
    assert row["status"] == "ok", row
    assert row["replay_s"] > 0 and row["replay_wall_s"] > 0 and row["replay_2t_wall_s"] > 0
    assert 0 < row["compile_s"] < 5


def test_compare_replay_table_and_chart(tmp_path):
    out = tmp_path / "q"
    text = run("compare.py", "--quick", "--peers", "autograd_c_replay,jax", "--workloads", "mlp",
               "--out", str(out), cwd=tmp_path)
    assert "| mlp | autograd_c compiled" in text and "x autograd_c compiled" in text
    assert "micrograd / this" in text
    if (tmp_path / "q.png").exists():
        assert (tmp_path / "q_replay.png").exists()


def test_bench_higher_smoke_run(tmp_path):
    pytest.importorskip("numpy")
    text = run("bench_higher.py", "--smoke", cwd=tmp_path)
    assert "hvp / backward" in text and "ag.hessian" in text
