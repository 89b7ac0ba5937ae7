"""Toy data sets for demos, without scikit-learn.

:func:`make_moons` returns exactly what ``sklearn.datasets.make_moons`` returns
for the same arguments and random state, so micrograd's demo notebook runs with
its ``from sklearn.datasets import make_moons`` line changed to
``from autograd_c.datasets import make_moons`` and gets the same points.

NumPy is needed here (only here): ``pip install "autograd_c[demo]"``.
"""
import numbers

__all__ = ["make_moons"]


def _numpy():
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is installed where the tests run
        raise ImportError(
            'autograd_c.datasets needs NumPy; install it with pip install "autograd_c[demo]" '
            "(or pip install numpy)") from exc
    return numpy


def _random_state(seed, np):
    """The NumPy random source sklearn's check_random_state would pick for seed."""
    if seed is None or seed is np.random:
        return np.random  # the module-level functions draw from the global RandomState
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state must be None, an int or a numpy.random.RandomState, got {seed!r}")


def make_moons(n_samples=100, *, shuffle=True, noise=None, random_state=None):
    """Two interleaving half circles: a small 2-D binary classification problem.

    Same signature, same algorithm and same output as
    ``sklearn.datasets.make_moons``: for the same arguments and the same random
    state (NumPy's global state when ``random_state`` is None) the arrays are
    identical, bit for bit.

    Parameters
    ----------
    n_samples : int or (int, int), default 100
        Total number of points, split as ``n // 2`` on the outer (label 0)
        moon and the rest on the inner (label 1) moon; or the two counts.
    shuffle : bool, default True
        Shuffle the points (one ``shuffle`` of the index order).
    noise : float or None, default None
        Standard deviation of Gaussian noise added to every coordinate.
    random_state : None, int or numpy.random.RandomState
        None draws from NumPy's global random state (``np.random.seed``).

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, 2), float64
        The points.
    y : numpy.ndarray of shape (n_samples,), intp
        The label (0 or 1) of each point.

    Examples
    --------
    >>> from autograd_c.datasets import make_moons
    >>> X, y = make_moons(n_samples=6, random_state=0)
    >>> X.shape, y.tolist()
    ((6, 2), [1, 0, 0, 1, 0, 1])
    >>> X, y = make_moons(n_samples=100, noise=0.1, random_state=1)
    >>> y = y * 2 - 1    # micrograd's demo wants labels -1 and 1
    """
    np = _numpy()
    if isinstance(n_samples, numbers.Integral):
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        n_out = n_samples // 2
        n_in = n_samples - n_out
    else:
        try:
            n_out, n_in = n_samples
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"n_samples must be an int or a pair of ints, got {n_samples!r}") from exc
        if not (isinstance(n_out, numbers.Integral) and isinstance(n_in, numbers.Integral)
                and n_out >= 0 and n_in >= 0):
            raise ValueError(
                f"n_samples must be an int or a pair of non-negative ints, got {n_samples!r}")
    if noise is not None and not noise >= 0:
        raise ValueError(f"noise must be None or a number >= 0, got {noise!r}")
    rng = _random_state(random_state, np)

    # Outer moon: the upper half of the unit circle, angle 0 .. pi.
    # Inner moon: that half circle mirrored (1 - cos, 1 - sin) and lowered by 0.5.
    # (1 - sin) - 0.5 is kept in this order: it is what sklearn computes, to the bit.
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.empty((n_out + n_in, 2))
    X[:n_out, 0] = np.cos(t_out)
    X[:n_out, 1] = np.sin(t_out)
    X[n_out:, 0] = 1 - np.cos(t_in)
    X[n_out:, 1] = 1 - np.sin(t_in) - 0.5
    y = np.zeros(n_out + n_in, dtype=np.intp)
    y[n_out:] = 1

    if shuffle:
        order = np.arange(n_out + n_in)
        rng.shuffle(order)
        X, y = X[order], y[order]
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y
