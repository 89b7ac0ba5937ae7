"""Every Python example in the README runs, and prints what the README shows."""
import importlib.util
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _examples():
    blocks = BLOCK.findall(README.read_text())
    for i, (lang, code) in enumerate(blocks):
        if lang == "python":
            shown = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
            yield code, shown


def test_readme_has_examples():
    assert len(list(_examples())) >= 1


def test_readme_examples_run_and_print_what_is_shown():
    for code, shown in _examples():
        if "dask" in code and importlib.util.find_spec("distributed") is None:
            continue                      # the [dask] extra is not installed
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        if shown is not None:
            assert run.stdout == shown


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    command = text.split("<!-- the test command: .ci/run runs exactly this line -->")[1]
    command = BLOCK.search(command).group(2).strip()
    assert command.startswith("pip install") and "pytest" in command
    assert "the test command" in ci   # .ci/run reads the command from the README
