"""Writes sklearn_make_moons.json: scikit-learn's make_moons output for a few cases.

autograd_c must not depend on scikit-learn, so its output is recorded once here
and tests/test_micrograd_dropin.py checks autograd_c.datasets.make_moons against
the recording.  Run it in a throwaway environment that has scikit-learn:

    python -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
    /tmp/skl/bin/python tests/data/make_sklearn_moons_reference.py

JSON floats are written with repr, which round-trips float64 exactly.
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.datasets import make_moons

# name, global seed (None: random_state is used), make_moons kwargs, random_state spelled as text
CASES = [
    ("demo_global_1337", 1337, dict(n_samples=100, noise=0.1)),
    ("odd_int_state", None, dict(n_samples=7, random_state=0)),
    ("tuple_noshuffle", None, dict(n_samples=(3, 5), shuffle=False, noise=0.3, random_state=42)),
    ("one_sample_randomstate", None, dict(n_samples=1, noise=0.2, random_state="RandomState(5)")),
    ("global_no_randomness", 3, dict(n_samples=10, shuffle=False)),
    ("numpy_int_state", None, dict(n_samples=50, noise=0.05, random_state="int64(9)")),
]


def _state(text):
    if text == "RandomState(5)":
        return np.random.RandomState(5)
    if text == "int64(9)":
        return np.int64(9)
    return text


def main():
    out = {"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": []}
    for name, global_seed, kwargs in CASES:
        call = dict(kwargs)
        if "random_state" in call:
            call["random_state"] = _state(call["random_state"])
        if global_seed is not None:
            np.random.seed(global_seed)
        X, y = make_moons(**call)
        case = {
            "name": name,
            "global_seed": global_seed,
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "X": X.tolist(),
            "y": y.tolist(),
            "X_dtype": str(X.dtype),
            "y_dtype": str(y.dtype),
        }
        if global_seed is not None:
            # the next draw shows how much of the global stream make_moons consumed
            case["next_global_draw"] = float(np.random.random())
        out["cases"].append(case)
    path = pathlib.Path(__file__).with_name("sklearn_make_moons.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
