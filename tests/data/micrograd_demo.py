"""micrograd's demo training loop (demo.ipynb), as text that differs only in its import lines.

The loop below is micrograd's demo notebook (Andrej Karpathy, MIT licence,
https://github.com/karpathy/micrograd): make-moons data, MLP(2, [16, 16, 1]),
SVM max-margin loss + 1e-4 L2, SGD with a decaying learning rate.  Only two
things are changed: the import lines are a parameter, and the per-step
``print`` becomes a call to ``record``.  The plotting cells are left out.

Running the same text with micrograd's imports and with autograd_c's shows
whether autograd_c is a drop-in: tests/test_micrograd_dropin.py compares the two
(live for a few steps, and against tests/data/micrograd_demo_reference.json,
written by make_micrograd_reference.py, for all 100).
"""

MICROGRAD_IMPORTS = """\
from micrograd.engine import Value
from micrograd.nn import Neuron, Layer, MLP
from sklearn.datasets import make_moons, make_blobs
"""

AUTOGRAD_C_IMPORTS = """\
from autograd_c.engine import Value
from autograd_c.nn import Neuron, Layer, MLP
from autograd_c.datasets import make_moons
"""

DEMO_SOURCE = """\
import random
import numpy as np
{imports}
np.random.seed(1337)
random.seed(1337)

# make up a dataset
X, y = make_moons(n_samples=100, noise=0.1)

y = y*2 - 1 # make y be -1 or 1

# initialize a model
model = MLP(2, [16, 16, 1]) # 2-layer neural network
initial_parameters = [p.data for p in model.parameters()]

# loss function
def loss(batch_size=None):

    # inline DataLoader :)
    if batch_size is None:
        Xb, yb = X, y
    else:
        ri = np.random.permutation(X.shape[0])[:batch_size]
        Xb, yb = X[ri], y[ri]
    inputs = [list(map(Value, xrow)) for xrow in Xb]

    # forward the model to get scores
    scores = list(map(model, inputs))

    # svm "max-margin" loss
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(yb, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    # L2 regularization
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss

    # also get accuracy
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores)]
    return total_loss, sum(accuracy) / len(accuracy)

total_loss, acc = loss()
record(-1, total_loss, acc)

# optimization
for k in range(steps):

    # forward
    total_loss, acc = loss()

    # backward
    model.zero_grad()
    total_loss.backward()

    # update (sgd)
    learning_rate = 1.0 - 0.9*k/100
    for p in model.parameters():
        p.data -= learning_rate * p.grad

    record(k, total_loss, acc)
"""


def run(imports, steps=100, make_moons=None):
    """Run the demo with the given import lines for `steps` steps.

    Returns a dict: X, y (the data as lists), initial_parameters and
    final_parameters (floats, in parameters() order), and history: one
    [k, loss, accuracy] per record() call (k = -1 is the loss() call before the
    loop).  make_moons, if given, replaces the imported one (micrograd's
    reference run uses autograd_c.datasets when scikit-learn is absent).
    """
    history = []

    def record(k, total_loss, acc):
        history.append([k, float(total_loss.data), float(acc)])

    source = DEMO_SOURCE.format(imports=imports)
    if make_moons is not None:
        source = source.replace("from sklearn.datasets import make_moons, make_blobs\n", "")
    namespace = {"record": record, "steps": steps, "__name__": "micrograd_demo"}
    if make_moons is not None:
        namespace["make_moons"] = make_moons
    exec(compile(source, "<micrograd demo>", "exec"), namespace)
    return {
        "X": namespace["X"].tolist(),
        "y": namespace["y"].tolist(),
        "initial_parameters": [float(v) for v in namespace["initial_parameters"]],
        "final_parameters": [float(p.data) for p in namespace["model"].parameters()],
        "history": history,
    }
