"""autograd_c.engine / autograd_c.nn / autograd_c.datasets as a drop-in for micrograd.

micrograd's own engine tests run unchanged (but for the imports) in
test_micrograd_engine.py; graph pictures (_prev / _op) in test_micrograd_graph.py.
Here:
  * make_moons equals scikit-learn's, bit for bit (recorded in tests/data/sklearn_make_moons.json);
  * micrograd's demo training loop, its text unchanged but for the imports
    (tests/data/micrograd_demo.py), gives micrograd's losses, accuracies and
    parameters to 1e-9: all 100 steps against tests/data/micrograd_demo_reference.json,
    and the first two live, side by side with micrograd when it is installed;
  * the same random.seed gives the same weights as micrograd's MLP; parameters(),
    zero_grad(), reprs, activations; a neuron is one dot node plus one activation node.
"""
import doctest
import json
import math
import pathlib
import random
import subprocess
import sys

import pytest

import autograd_c as ag
from autograd_c import datasets, engine, nn
from autograd_c.datasets import make_moons
from autograd_c.engine import Value
from autograd_c.nn import MLP, Layer, Module, Neuron

DATA = pathlib.Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
import micrograd_demo  # noqa: E402  (tests/data/micrograd_demo.py)

TOL = 1e-9


def _json(name):
    return json.loads((DATA / name).read_text())


def _close(a, b, tol=TOL):
    return abs(a - b) <= tol


# ---------------------------------------------------------------------------
# make_moons == sklearn.datasets.make_moons
# ---------------------------------------------------------------------------

SKLEARN = _json("sklearn_make_moons.json")


def _sklearn_kwargs(case):
    np = pytest.importorskip("numpy")
    kwargs = dict(case["kwargs"])
    if isinstance(kwargs.get("n_samples"), list):
        kwargs["n_samples"] = tuple(kwargs["n_samples"])
    state = kwargs.get("random_state")
    if state == "RandomState(5)":
        kwargs["random_state"] = np.random.RandomState(5)
    elif state == "int64(9)":
        kwargs["random_state"] = np.int64(9)
    return kwargs


@pytest.mark.parametrize("case", SKLEARN["cases"], ids=[c["name"] for c in SKLEARN["cases"]])
def test_make_moons_is_sklearns_bit_for_bit(case):
    np = pytest.importorskip("numpy")
    kwargs = _sklearn_kwargs(case)
    if case["global_seed"] is not None:
        np.random.seed(case["global_seed"])
    X, y = make_moons(**kwargs)
    assert str(X.dtype) == case["X_dtype"] and str(y.dtype) == case["y_dtype"]
    assert X.shape == (len(case["y"]), 2) and y.shape == (len(case["y"]),)
    assert X.tolist() == case["X"]          # exact float equality, every coordinate
    assert y.tolist() == case["y"]
    if case["global_seed"] is not None:     # consumed exactly as much of the global stream
        assert float(np.random.random()) == case["next_global_draw"]


def test_make_moons_random_state_int_ignores_global_state():
    np = pytest.importorskip("numpy")
    np.random.seed(0)
    X1, y1 = make_moons(20, noise=0.2, random_state=7)
    np.random.seed(1)
    X2, y2 = make_moons(20, noise=0.2, random_state=7)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    X3, _ = make_moons(20, noise=0.2, random_state=8)
    assert not np.array_equal(X1, X3)


def test_make_moons_shapes_and_labels_without_noise_lie_on_the_moons():
    np = pytest.importorskip("numpy")
    X, y = make_moons(n_samples=11, shuffle=False)
    assert y.tolist() == [0] * 5 + [1] * 6
    outer, inner = X[y == 0], X[y == 1]
    assert np.allclose(outer[:, 0] ** 2 + outer[:, 1] ** 2, 1.0)
    assert np.allclose((inner[:, 0] - 1) ** 2 + (inner[:, 1] - 0.5) ** 2, 1.0)
    assert outer[0].tolist() == [1.0, 0.0] and inner[0].tolist() == [0.0, 0.5]


@pytest.mark.parametrize("kwargs, error", [
    (dict(n_samples=0), ValueError),
    (dict(n_samples=(1, 2, 3)), ValueError),
    (dict(n_samples="ten"), ValueError),
    (dict(noise=-0.1), ValueError),
    (dict(random_state="seed"), ValueError),
    (dict(random_state=1.5), ValueError),
])
def test_make_moons_rejects_bad_arguments(kwargs, error):
    pytest.importorskip("numpy")
    with pytest.raises(error):
        make_moons(**kwargs)


def test_make_moons_without_numpy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)   # `import numpy` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "autograd_c\[demo\]"'):
        make_moons()


def test_engine_nn_datasets_import_without_numpy():
    code = ("import sys; sys.modules['numpy'] = None\n"
            "import autograd_c.engine, autograd_c.nn, autograd_c.datasets, random\n"
            "random.seed(0); m = autograd_c.nn.MLP(2, [3, 1])\n"
            "print(m([1.0, 2.0]).op, len(m.parameters()))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["dot", "13"]


# ---------------------------------------------------------------------------
# micrograd's demo loop, imports changed: micrograd's numbers
# ---------------------------------------------------------------------------

REFERENCE = _json("micrograd_demo_reference.json")


@pytest.fixture(scope="module")
def demo_run():
    pytest.importorskip("numpy")
    return micrograd_demo.run(micrograd_demo.AUTOGRAD_C_IMPORTS, steps=100)


def test_demo_reference_is_micrograds_known_result():
    # micrograd's notebook ends with "step 99 loss 0.010978370135492717, accuracy 100.0%"
    assert REFERENCE["history"][-1] == [99, 0.010978370135492717, 1.0]
    assert len(REFERENCE["history"]) == 101 and len(REFERENCE["final_parameters"]) == 337


def test_demo_data_and_initial_model_are_micrograds_exactly(demo_run):
    assert demo_run["X"] == REFERENCE["X"]          # sklearn's make_moons, same seed
    assert demo_run["y"] == REFERENCE["y"]
    assert demo_run["initial_parameters"] == REFERENCE["initial_parameters"]


def test_demo_loss_and_accuracy_match_micrograd_at_every_step(demo_run):
    ours, theirs = demo_run["history"], REFERENCE["history"]
    assert [h[0] for h in ours] == [h[0] for h in theirs] == list(range(-1, 100))
    for (k, loss, acc), (_, ref_loss, ref_acc) in zip(ours, theirs):
        assert _close(loss, ref_loss), (k, loss, ref_loss)
        assert acc == ref_acc, (k, acc, ref_acc)
    # the loop really trained: loss fell from ~0.9 to ~0.01, accuracy reached 100%
    assert ours[0][1] > 0.5 and ours[-1][1] < 0.02 and ours[-1][2] == 1.0


def test_demo_final_parameters_match_micrograd(demo_run):
    ours, theirs = demo_run["final_parameters"], REFERENCE["final_parameters"]
    assert len(ours) == len(theirs) == 337
    worst = max(abs(a - b) for a, b in zip(ours, theirs))
    assert worst <= TOL, worst
    moved = sum(a != b for a, b in zip(ours, REFERENCE["initial_parameters"]))
    assert moved >= 300          # training changed (nearly) every parameter


def test_demo_first_steps_side_by_side_with_live_micrograd():
    pytest.importorskip("micrograd")
    pytest.importorskip("numpy")
    try:
        import sklearn  # noqa: F401  (micrograd's notebook takes the data from scikit-learn)
        moons = None
    except ImportError:
        moons = make_moons   # equal to scikit-learn's (test_make_moons_is_sklearns_bit_for_bit)
    theirs = micrograd_demo.run(micrograd_demo.MICROGRAD_IMPORTS, steps=2, make_moons=moons)
    ours = micrograd_demo.run(micrograd_demo.AUTOGRAD_C_IMPORTS, steps=2)
    assert ours["X"] == theirs["X"] and ours["y"] == theirs["y"]
    assert ours["initial_parameters"] == theirs["initial_parameters"]
    assert len(ours["history"]) == len(theirs["history"]) == 3
    for (k, loss, acc), (k2, ref_loss, ref_acc) in zip(ours["history"], theirs["history"]):
        assert k == k2 and _close(loss, ref_loss) and acc == ref_acc, (k, loss, ref_loss)
    worst = max(abs(a - b) for a, b in zip(ours["final_parameters"], theirs["final_parameters"]))
    assert worst <= TOL
    # and the live run agrees with the stored reference (same micrograd, same data).  Not
    # bit for bit: micrograd's backward() walks Python sets of Values, ordered by id(),
    # so the order gradients are summed in (and the last bit) varies from run to run.
    for live, stored in zip(theirs["history"], REFERENCE["history"][:3]):
        assert live[0] == stored[0] and _close(live[1], stored[1]) and live[2] == stored[2]


# ---------------------------------------------------------------------------
# models: micrograd's weights, structure, reprs
# ---------------------------------------------------------------------------

def test_value_is_variable():
    assert Value is ag.Variable
    assert engine.__all__ == ["Value"]
    assert set(nn.__all__) == {"Module", "Neuron", "Layer", "MLP"}


def _expected_mlp_draws(seed, nin, nouts):
    """micrograd's MLP init, spelled out: per layer, per neuron, nin uniforms then a 0 bias."""
    random.seed(seed)
    params = []
    for a, b in zip([nin] + nouts, nouts):
        for _ in range(b):
            params += [random.uniform(-1, 1) for _ in range(a)] + [0.0]
    return params, random.random()


def test_same_seed_same_weights_as_micrograds_draws():
    expected, next_draw = _expected_mlp_draws(1337, 2, [16, 16, 1])
    random.seed(1337)
    model = MLP(2, [16, 16, 1])
    assert [p.data for p in model.parameters()] == expected
    assert random.random() == next_draw      # consumed exactly micrograd's draws


def test_same_seed_same_weights_as_real_micrograd():
    mg_nn = pytest.importorskip("micrograd.nn")
    for seed, nin, nouts in [(1337, 2, [16, 16, 1]), (5, 3, [4, 4, 2]), (0, 1, [1])]:
        random.seed(seed)
        theirs = mg_nn.MLP(nin, nouts)
        their_next = random.random()
        random.seed(seed)
        ours = MLP(nin, nouts)
        assert random.random() == their_next
        assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
        assert repr(ours) == repr(theirs)
    random.seed(3)
    theirs = mg_nn.Neuron(4, nonlin=False), mg_nn.Layer(3, 2)
    random.seed(3)
    ours = Neuron(4, nonlin=False), Layer(3, 2)
    for o, t in zip(ours, theirs):
        assert repr(o) == repr(t)
        assert [p.data for p in o.parameters()] == [p.data for p in t.parameters()]


def test_mlp_structure_and_parameter_order():
    random.seed(0)
    model = MLP(2, [16, 16, 1])
    params = model.parameters()
    assert len(params) == 337
    assert [len(layer.neurons) for layer in model.layers] == [16, 16, 1]
    assert [layer.neurons[0].nonlin for layer in model.layers] == [True, True, False]
    n = model.layers[1].neurons[3]
    assert len(n.w) == 16 and n.b.data == 0.0 and all(-1 <= w.data <= 1 for w in n.w)
    assert n.parameters() == n.w + [n.b]
    assert all(isinstance(p, Value) and p.is_leaf for p in params)
    assert len({id(p) for p in params}) == 337
    # parameters() is layer by layer, neuron by neuron, weights then bias
    assert params[:3] == model.layers[0].neurons[0].w + [model.layers[0].neurons[0].b]
    assert params[-1] is model.layers[-1].neurons[0].b


def test_reprs_are_micrograds():
    random.seed(0)
    assert repr(MLP(2, [2, 1])) == (
        "MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(2)]]")
    assert repr(Layer(3, 2, nonlin=False)) == "Layer of [LinearNeuron(3), LinearNeuron(3)]"
    assert repr(Neuron(5)) == "ReLUNeuron(5)"
    assert repr(Neuron(5, activation="tanh")) == "TanhNeuron(5)"
    assert repr(Neuron(5, activation="sigmoid")) == "SigmoidNeuron(5)"


def test_module_base_and_zero_grad():
    assert Module().parameters() == []
    Module().zero_grad()                      # nothing to do, no error
    random.seed(1)
    model = MLP(3, [4, 2], activation="tanh")        # tanh: no dead units, every grad != 0
    out = model([0.5, -1.5, 2.0])
    (out[0] * out[1] + out[0]).backward()
    assert all(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_sgd_update_spelled_the_micrograd_way():
    random.seed(2)
    n = Neuron(2, nonlin=False)
    w0, w1 = (w.data for w in n.w)
    y = n([3.0, -2.0])                        # y = b + 3 w0 - 2 w1
    n.zero_grad()
    y.backward()
    assert [p.grad for p in n.parameters()] == [3.0, -2.0, 1.0]
    for p in n.parameters():
        p.data -= 0.1 * p.grad
    assert [p.data for p in n.parameters()] == [w0 - 0.1 * 3.0, w1 - 0.1 * -2.0, 0.0 - 0.1 * 1.0]


def test_neuron_sums_in_micrograds_order():
    # b + w0*x0 + w1*x1 + w2*x2 from the left: ((1 + 1e16) + 1) - 1e16 == 0.0 in float64;
    # summing w.x first and adding b last would give 1.0
    n = Neuron(3, nonlin=False)
    for w in n.w:
        w.data = 1.0
    n.b.data = 1.0
    x = [1e16, 1.0, -1e16]
    assert n(x).data == ((1.0 + 1e16) + 1.0) - 1e16 == 0.0
    try:
        import micrograd.nn as mg_nn
    except ImportError:
        return
    m = mg_nn.Neuron(3, nonlin=False)
    for w in m.w:
        w.data = 1.0
    m.b.data = 1.0
    assert m(x).data == n(x).data


def test_neuron_values_and_gradients_match_float_formulas():
    random.seed(4)
    x = [0.3, -1.2, 2.5, 0.7]
    for activation, f, df in [
        ("relu", lambda s: max(s, 0.0), lambda s, y: 1.0 if s > 0 else 0.0),
        ("tanh", math.tanh, lambda s, y: 1.0 - y * y),
        ("sigmoid", lambda s: 1.0 / (1.0 + math.exp(-s)), lambda s, y: (1.0 - y) * y),
        (None, lambda s: s, lambda s, y: 1.0),
    ]:
        n = Neuron(4, activation=activation) if activation else Neuron(4, nonlin=False)
        n.b.data = 0.25
        s = n.b.data
        for w, xi in zip(n.w, x):
            s += w.data * xi
        y = n(x)
        assert _close(y.data, f(s), 1e-15), activation
        y.backward()
        slope = df(s, f(s))
        for w, xi in zip(n.w, x):
            assert _close(w.grad, slope * xi, 1e-15), activation
        assert _close(n.b.grad, slope, 1e-15)


def test_neuron_inputs_may_be_values_numbers_or_numpy():
    np = pytest.importorskip("numpy")
    random.seed(6)
    n = Neuron(2)
    xs = [Value(0.5), Value(-0.25)]
    y1 = n(xs).data
    assert n([0.5, -0.25]).data == y1
    assert n(np.array([0.5, -0.25])).data == y1
    assert n(iter([0.5, -0.25])).data == y1
    out = n(xs)
    out.backward()
    assert xs[0].grad == (n.w[0].data if y1 > 0 else 0.0)


def test_activation_overrides_nonlin_and_nonlin_switches():
    n = Neuron(2, nonlin=False, activation="relu")
    assert n.nonlin is True and n.activation == "relu"
    n = Neuron(2, nonlin=True, activation="linear")
    assert n.nonlin is False and n.activation is None and repr(n) == "LinearNeuron(2)"
    n = Neuron(2, activation="tanh")
    n.nonlin = False                                   # micrograd-style switch still works
    assert repr(n) == "LinearNeuron(2)" and n([1.0, 1.0]).op == "dot"
    n.nonlin = True
    assert repr(n) == "ReLUNeuron(2)" and n([1.0, 1.0]).op == "relu"
    n.activation = "sigmoid"
    assert repr(n) == "SigmoidNeuron(2)" and n([1.0, 1.0]).op == "sigmoid" and n.nonlin
    with pytest.raises(ValueError, match="activation"):
        Neuron(2, activation="gelu")
    with pytest.raises(ValueError, match="activation"):
        n.activation = "Tanh"
    assert n.activation == "sigmoid"


def test_mlp_activation_applies_to_hidden_layers_only():
    model = MLP(2, [3, 3, 1], activation="tanh")
    assert [layer.neurons[0].activation for layer in model.layers] == ["tanh", "tanh", None]
    assert model([0.1, 0.2]).op == "dot"
    assert model.layers[0]([0.1, 0.2])[0].op == "tanh"
    with pytest.raises(TypeError, match="nonlin"):
        MLP(2, [3, 1], nonlin=False)


def test_layer_of_one_returns_the_value_itself():
    layer = Layer(3, 1)
    out = layer([1.0, 2.0, 3.0])
    assert isinstance(out, Value)
    outs = Layer(3, 2)([1.0, 2.0, 3.0])
    assert isinstance(outs, list) and len(outs) == 2


def test_a_neuron_is_one_dot_node_plus_one_activation_node():
    random.seed(8)
    anchor = Value(1.0) * 2.0                 # keeps the tape from resetting between counts
    relu_neuron, linear_neuron = Neuron(10), Neuron(10, nonlin=False)
    layer, model = Layer(10, 7), MLP(2, [16, 16, 1])
    x = [Value(float(i)) for i in range(10)]

    def nodes_added(fn):
        before = ag.tape_stats()["nodes"]
        out = fn()
        return ag.tape_stats()["nodes"] - before, out

    n, y = nodes_added(lambda: relu_neuron(x))
    assert n == 2 and y.op == "relu"
    n, y = nodes_added(lambda: linear_neuron(x))
    assert n == 1 and y.op == "dot"
    n, ys = nodes_added(lambda: layer(x))
    assert n == 14
    n, y = nodes_added(lambda: model([0.5, -0.5]))
    assert n == 2 * 16 + 2 * 16 + 1
    assert anchor.data == 2.0


def test_value_relu_and_pow_with_numbers():
    for x, y, g in [(-2.0, 0.0, 0.0), (0.0, 0.0, 0.0), (3.0, 3.0, 1.0)]:
        v = Value(x)
        r = v.relu()
        r.backward()
        assert (r.data, v.grad) == (y, g)
    for base, exp, y, g in [(3.0, 2, 9.0, 6.0), (2.0, -1, 0.5, -0.25), (4.0, 0.5, 2.0, 0.25),
                            (-2.0, 3, -8.0, 12.0), (5.0, 0, 1.0, 0.0)]:
        v = Value(base)
        p = v ** exp
        p.backward()
        assert (p.data, v.grad) == (y, g), (base, exp)


def test_micrograd_style_expressions_with_python_sum_and_numpy_scalars():
    np = pytest.importorskip("numpy")
    a, b = Value(2.0), Value(-3.0)
    total = sum((p * p for p in [a, b]))      # starts from int 0, as in micrograd's L2 term
    assert total.data == 13.0
    margin = (1 + -np.int64(-1) * a).relu()   # the demo's (1 + -yi*scorei).relu() with a NumPy label
    assert isinstance(margin, Value) and margin.data == 3.0
    loss = (total + margin) * (1.0 / 2)
    loss.backward()
    assert (a.grad, b.grad) == ((2 * 2.0 + 1.0) / 2, (2 * -3.0) / 2)
    assert (a > 0) is True and (b > 0) is False


@pytest.mark.parametrize("module", [engine, nn, datasets], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    if module is datasets:
        pytest.importorskip("numpy")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_public_name_has_a_docstring_with_an_example():
    for obj in [engine, nn, Module, Neuron, Layer, MLP, make_moons]:
        assert obj.__doc__ and ">>>" in obj.__doc__, obj
