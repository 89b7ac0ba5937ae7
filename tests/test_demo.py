"""`python -m autograd_c demo` (issue 3, part 6): micrograd's moons problem
trained with autograd_c's layers and SGD gives micrograd's own numbers, shows
progress, and saves the picture on request."""
import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("numpy")
from autograd_c import demo  # noqa: E402

REFERENCE = json.loads(
    (pathlib.Path(__file__).parent / "data" / "micrograd_demo_reference.json").read_text())


def test_training_gives_micrographs_losses_and_accuracies_at_every_step():
    model, (X, y), history, seconds = demo.train(steps=100, progress=False)
    assert X == REFERENCE["X"]
    steps = [entry for entry in REFERENCE["history"] if entry[0] >= 0]
    assert len(history) == len(steps) == 100
    for (loss, accuracy), (k, ref_loss, ref_accuracy) in zip(history, steps):
        assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12), f"step {k}"
        assert accuracy == ref_accuracy, f"step {k}"
    final = [p.data for p in model.parameters()]
    assert final == pytest.approx(REFERENCE["final_parameters"], rel=1e-9, abs=1e-12)


def test_training_by_replay_reaches_the_recording_demos_losses():
    """demo --replay: the per-sample loss compiled once and replayed over the
    batch gives the recording demo's loss and accuracy at every step (and
    micrograd's, which the recording demo matches), to 1e-9."""
    model, (X, y), history, seconds = demo.train_replay(steps=100, progress=False)
    steps = [entry for entry in REFERENCE["history"] if entry[0] >= 0]
    assert len(history) == 100
    for (loss, accuracy), (k, ref_loss, ref_accuracy) in zip(history, steps):
        assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12), f"step {k}"
        assert accuracy == ref_accuracy, f"step {k}"
    final = [p.data for p in model.parameters()]
    assert final == pytest.approx(REFERENCE["final_parameters"], rel=1e-9, abs=1e-12)


def test_replay_demo_on_a_larger_problem_with_threads():
    done = run_demo("--replay", "--samples", "5000", "--threads", "2", "--steps", "20", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "20 steps in" in done.stdout and "samples/s" in done.stdout and "by replay" in done.stdout
    done = run_demo("--threads", "2", "--steps", "2", "--quiet")
    assert done.returncode == 2 and "--threads needs --replay" in done.stderr


def run_demo(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "autograd_c", "demo", *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_command_line_summary():
    done = run_demo("--steps", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "5 steps in" in done.stdout and "steps/s" in done.stdout and "accuracy" in done.stdout


def test_progress_bar_or_plain_progress(monkeypatch, capsys):
    demo.train(steps=3, progress=True)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "loss" in text and ("accuracy" in text)
    monkeypatch.setitem(sys.modules, "tqdm", None)        # tqdm missing: lines, and a hint
    demo.train(steps=3, progress=True)
    text = capsys.readouterr().out
    assert 'pip install "autograd_c[demo]"' in text
    assert "step   0  loss" in text and "step   2  loss" in text


def test_bad_arguments_are_reported():
    done = run_demo("--steps", "0")
    assert done.returncode == 2 and "--steps must be at least 1" in done.stderr
    done = subprocess.run([sys.executable, "-m", "autograd_c", "demonstrate"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage" in done.stderr


def test_plot_saves_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "demo.png"
    done = run_demo("--steps", "3", "--quiet", "--plot", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    model, data, history, _ = demo.train(steps=2, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match=r'autograd_c\[demo\]'):
        demo.plot(model, data, history, "unused.png")
