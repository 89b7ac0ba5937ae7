"""Writes micrograd_demo_reference.json: micrograd's own numbers for its 100-step demo.

Running real micrograd for 100 steps takes about a minute, too slow for the
test suite, so its losses, accuracies and parameters are recorded once here;
tests/test_micrograd_dropin.py replays the demo on autograd_c and compares
(and also runs micrograd live for two steps).  The data come from
scikit-learn's make_moons when it is installed (as in micrograd's notebook),
else from autograd_c.datasets.make_moons (tested equal to scikit-learn's).
For a reference independent of autograd_c, run it where micrograd and
scikit-learn are installed:

    python -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy micrograd==0.1.0
    /tmp/skl/bin/python tests/data/make_micrograd_reference.py

JSON floats are written with repr, which round-trips float64 exactly.
"""
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micrograd_demo  # noqa: E402


def main():
    from importlib.metadata import version

    import numpy as np
    try:
        import sklearn
        make_moons, source = None, f"sklearn {sklearn.__version__}"
    except ImportError:
        sys.path.insert(0, str(HERE.parent.parent))
        from autograd_c.datasets import make_moons
        source = "autograd_c.datasets"
    t0 = time.perf_counter()
    result = micrograd_demo.run(micrograd_demo.MICROGRAD_IMPORTS, steps=100, make_moons=make_moons)
    seconds = time.perf_counter() - t0
    result = {
        "generated_by": "tests/data/make_micrograd_reference.py",
        "micrograd": version("micrograd"),
        "numpy": np.__version__,
        "make_moons": source,
        "python": sys.version.split()[0],
        "seconds": round(seconds, 1),
        **result,
    }
    path = HERE / "micrograd_demo_reference.json"
    path.write_text(json.dumps(result) + "\n")
    print(f"wrote {path} ({seconds:.0f} s); final loss {result['history'][-1][1]!r}, "
          f"accuracy {result['history'][-1][2]!r}")


if __name__ == "__main__":
    main()
