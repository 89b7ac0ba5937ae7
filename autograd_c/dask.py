"""Data-parallel gradients on a Dask cluster: a compiled per-sample loss over a ``dask.array``.

``value_and_grad(client, batched, *args)`` is ``batched.value_and_grad(*args,
reduce=...)`` with the rows on the cluster: each partition of rows is
replayed on the worker that holds it (``BatchedFunction.value_and_grad(...,
reduce="sum")``), and the driver adds the partitions' values and gradients
up, in partition order.  ``backward`` adds the gradient into ``.grad`` of
the leaf Variables among the shared arguments, as ``batched.backward``
does.  A training loop on a cluster therefore reads like the one-process
loop::

    from dask.distributed import Client, LocalCluster
    from autograd_c import dask as agd

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # or Client("tcp://scheduler:8786")
    fit = per_sample_loss.vmap(in_axes=(None, 0, 0))                  # params shared, rows of X and y
    for step in range(100):
        loss, (g, _, _) = agd.value_and_grad(client, fit, w, X, y)    # X, y: dask arrays
        w -= 0.1 * g

The compiled function is pickled (autograd_c's checked binary format) and
sent to every worker once per cluster (``client.scatter(broadcast=True)``
of its bytes, remembered by their SHA-256) and unpickled once per worker
process (a cache keyed by that hash), not with every step; what a step
sends is the shared arguments (the parameters) and small tasks, and what
comes back is one value and one gradient per partition.

Each worker gets one task per step, over the partitions it holds.  Keep
a partition's arrays on the same worker (slice ``X`` and ``y`` from one
array or dataframe, and ``persist`` them once): otherwise Dask moves blocks
between workers every step.

A step is applied whole or not at all: these functions never modify their
arguments, and ``backward`` touches ``.grad`` only after every partition's
result has arrived.  A worker that dies, a partition whose rows are not
what the array promised (wrong shape, a non-numeric dtype) or an
exception in the loss raises on the driver and leaves the parameters and
their gradients as they were.  NaN and inf are values, not errors: they
propagate into the loss and the gradient, as in one process.

Needs ``dask[distributed]`` (``pip install autograd_c[dask]``).
"""
import collections
import hashlib
import pickle
import threading
import weakref

import numpy as np

from . import _core
from .compiled import BatchedFunction, CompiledFunction, _split

try:
    import dask
    import dask.array as da
    from distributed import futures_of
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("autograd_c.dask needs Dask: pip install 'autograd_c[dask]' "
                      "(or 'dask[distributed]')") from e

__all__ = ["value_and_grad", "backward", "send"]

_REDUCE = ("sum", "mean")
_SCATTER_SHARED_BYTES = 1 << 20      # larger shared arguments are scattered, smaller go in the tasks
_sent = weakref.WeakKeyDictionary()      # driver: client -> {content hash: future of the pickled bytes}
_placements = weakref.WeakKeyDictionary()   # driver: client -> {block keys: worker of each}
_loaded = collections.OrderedDict()      # worker: content hash -> the unpickled function (the last few)
_loaded_lock = threading.Lock()
_LOADED_KEEP = 8
_GROUP_BY_WORKER = True                  # False: a task per partition (benchmarks/bench_dask.py compares)


def send(client, batched):
    """Send a compiled function to every worker, once: returns its handle.

    The function is pickled (autograd_c's checked format) and the bytes are
    scattered to every worker (``broadcast``) the first time; later calls
    with an equal function (same traces, same ``in_axes``: compared by the
    SHA-256 of its pickle) return the same handle, so steps send nothing
    but its hash.  Each worker process unpickles the bytes once and keeps
    the function in a cache keyed by that hash, so it is loaded once per
    worker process however often Dask moves or re-delivers the bytes.
    :func:`value_and_grad` and :func:`backward` call it; call it yourself
    to send the function before the first step.

    Parameters
    ----------
    client : distributed.Client
    batched : BatchedFunction
        ``f.vmap(in_axes)`` of a compiled per-sample function.

    Returns
    -------
    (str, distributed.Future)
        The hash and the future of the pickled bytes on the cluster.
    """
    blob = pickle.dumps(batched, protocol=4)
    digest = hashlib.sha256(blob).hexdigest()
    try:
        cache = _sent.setdefault(client, {})
    except TypeError:                    # pragma: no cover - a client that cannot be weakly referenced
        cache = {}
    future = cache.get(digest)
    if future is None or future.status in ("error", "cancelled", "lost"):
        key = f"autograd_c-compiled-{digest}"
        future = client.scatter({key: blob}, broadcast=True, hash=False)[key]
        cache[digest] = future
    return digest, future


def value_and_grad(client, batched, *args, reduce="mean"):
    """The loss over every row of the dask arrays and its gradient, on the cluster.

    Parameters
    ----------
    client : distributed.Client
    batched : BatchedFunction
        ``f.vmap(in_axes)`` of a compiled per-sample function with one
        output (no ``has_aux``).
    *args
        One per argument of ``f``: axis-0 arguments are ``dask.array``
        arrays (1-D for a number per row, 2-D for a sequence per row; a
        ``dask.dataframe`` or NumPy array is converted), all with the same
        rows; they are split by the first one's row chunks.  Shared
        arguments (axis None) are numbers, sequences, NumPy arrays or leaf
        Variables (their values are sent).
    reduce : 'mean' or 'sum', default 'mean'
        The loss is the mean (sum) over all rows.

    Returns
    -------
    (float, tuple)
        The loss and, per argument, its gradient (a float for a scalar
        argument, an array for a sequence) or None for the axis-0
        arguments: what ``batched.value_and_grad(*args, reduce=reduce)``
        returns in one process (equal up to the order of the additions).

    Raises
    ------
    RuntimeError
        A worker died during the step (Dask's ``KilledWorker``).
    ValueError, TypeError
        Bad arguments (on the driver) or a partition whose rows do not fit
        (raised on the worker, naming the partition).
    """
    value, grad, shapes, axes = _step(client, batched, args, reduce)
    return value, _split(shapes, grad, [ax is not None for ax in axes])


def backward(client, batched, *args, reduce="mean"):
    """The loss over every row on the cluster, its gradient added into ``.grad``.

    As :func:`value_and_grad`, but like ``batched.backward``: the gradient
    with respect to the leaf Variables among the shared arguments (alone or
    in lists) is added into their ``.grad``, once every partition has
    answered (nothing is added if any fails).  Then step an optimiser.

    Returns
    -------
    float
        The loss.
    """
    value, grad, shapes, axes = _step(client, batched, args, reduce)
    shared = tuple(a if ax is None else None for a, ax in zip(args, axes))
    _core._add_leaf_grads(shared, shapes, grad)
    return value


# ---------------------------------------------------------------------------
# the driver's side
# ---------------------------------------------------------------------------

def _step(client, batched, args, reduce):
    """(loss, flat gradient over every input, per-argument shapes, axes)."""
    if isinstance(batched, CompiledFunction):
        raise TypeError("pass f.vmap(in_axes) (a BatchedFunction): it says which arguments have rows")
    if not isinstance(batched, BatchedFunction):
        raise TypeError(f"expected a BatchedFunction (f.vmap(in_axes)), not {type(batched).__name__}")
    if batched.compiled._has_aux:
        raise TypeError("compile the per-sample loss without has_aux for autograd_c.dask: the aux "
                        "values would all travel to the driver")
    if reduce not in _REDUCE:
        raise ValueError(f"reduce must be 'mean' or 'sum', not {reduce!r}")
    axes = batched.in_axes if isinstance(batched.in_axes, tuple) else (batched.in_axes,) * len(args)
    if len(axes) != len(args):
        raise TypeError(f"in_axes has {len(axes)} entries for {len(args)} arguments")
    if all(ax is None for ax in axes):
        raise ValueError("at least one argument needs axis 0 (the rows)")
    arrays = _row_arrays(args, axes)
    chunks = next(a for a in arrays if a is not None).chunks[0]
    shared = tuple(_shared_value(a) if ax is None else None for a, ax in zip(args, axes))
    expect = tuple(None if a is None else (a.ndim, a.shape[1] if a.ndim == 2 else None) for a in arrays)
    _trace_on_driver(client, batched, args, shared, arrays)
    digest, blob = send(client, batched)
    if sum(getattr(s, "nbytes", 8) for s in shared) > _SCATTER_SHARED_BYTES:
        shared = client.scatter([shared], broadcast=True, hash=False)[0]   # once per worker, not per task
    blocks = [b for b in (None if a is None else _block_futures(client, a) for a in arrays) if b is not None]
    parts, at = [], 0
    for k, rows in enumerate(chunks):
        if rows:
            parts.append((k, at, rows))
        at += rows
    if at == 0:
        raise ValueError("the arrays have no rows")
    # one task per worker, over the partitions it holds: fewer round trips than a task each
    groups = _by_worker(client, blocks[0], parts) if _GROUP_BY_WORKER else [(None, [i]) for i in range(len(parts))]
    futures = [client.submit(_partitions, digest, blob, shared, expect, [parts[i] for i in idx],
                             *[b[parts[i][0]] for i in idx for b in blocks],
                             workers=None if w is None else [w], allow_other_workers=w is not None,
                             pure=False)
               for w, idx in groups]
    try:
        grouped = client.gather(futures)
    except Exception as e:
        client.cancel(futures)
        _placements.pop(client, None)
        if type(e).__name__ == "KilledWorker":
            raise RuntimeError(
                f"a Dask worker died while evaluating a partition ({e}); nothing was applied: the "
                "parameters and their .grad are as they were before this call") from e
        raise
    results = [None] * len(parts)
    for (_, idx), out in zip(groups, grouped):
        for i, r in zip(idx, out):
            results[i] = r
    value, grad, shapes = 0.0, None, results[0][2]
    for v, g, _ in results:                  # in partition order: the same sum every time
        value += v
        grad = g.copy() if grad is None else grad + g
    if reduce == "mean":
        value *= 1.0 / at
        grad *= 1.0 / at
    return value, grad, shapes, axes


def _row_arrays(args, axes):
    """Per argument, a dask array (axis 0: rows aligned with the first) or None."""
    out, first = [], None
    for i, (a, ax) in enumerate(zip(args, axes)):
        if ax is None:
            out.append(None)
            continue
        if hasattr(a, "to_dask_array"):          # a dask DataFrame or Series
            a = a.to_dask_array(lengths=True)
        elif not isinstance(a, da.Array):
            a = np.asarray(a)
            a = da.from_array(a, chunks=(first.chunks[0],) + a.shape[1:] if first is not None else "auto")
        if a.ndim not in (1, 2):
            raise ValueError(f"argument {i} (axis 0) must be 1-D (a number per row) or 2-D (a sequence "
                             f"per row), not shape {a.shape}")
        if a.dtype.kind not in "fiub":
            raise TypeError(f"argument {i} (axis 0) must hold real numbers, not dtype {a.dtype}")
        if any(c != c for c in a.chunks[0]):
            raise ValueError(f"argument {i} has unknown chunk sizes: call .compute_chunk_sizes() on it "
                             "(or to_dask_array(lengths=True) on a dataframe), once, before training")
        if a.ndim == 2 and len(a.chunks[1]) > 1:
            a = a.rechunk({1: -1})                # a row's values in one block
        if first is None:
            first = a
        elif a.shape[0] != first.shape[0]:
            raise ValueError(f"argument {i} has {a.shape[0]} rows, an earlier one {first.shape[0]}")
        elif a.chunks[0] != first.chunks[0]:
            a = a.rechunk({0: first.chunks[0]})
        out.append(a)
    return out


def _block_futures(client, a):
    """The futures of a's blocks, in row order: those of a persisted array
    (no work), else the blocks computed now (persist the arrays once before
    training, or every step computes them again)."""
    keys = [k for k in _flat(a.__dask_keys__())]
    held = {f.key: f for f in futures_of(a)}
    if all(k in held for k in keys):
        return [held[k] for k in keys]
    return client.compute(list(a.to_delayed().ravel()))


def _by_worker(client, futures, parts):
    """[(worker, [indices into parts])]: the partitions grouped by the worker
    holding their first block (asked once per set of blocks; a stale answer
    only costs a transfer, as tasks may run elsewhere)."""
    keys = tuple(futures[k].key for k, _, _ in parts)
    cache = _placements.setdefault(client, {})
    where = cache.get(keys)
    if where is None:
        who = client.who_has([futures[k] for k, _, _ in parts])
        where = [min(who.get(key) or [None], key=str) for key in keys]
        if None not in where:
            if len(cache) > 64:
                cache.clear()
            cache[keys] = where
    groups = collections.OrderedDict()
    for i, w in enumerate(where):
        groups.setdefault(w if w is not None else ("unplaced", i), []).append(i)   # not yet held: a task each
    return [(w if isinstance(w, str) else None, idx) for w, idx in groups.items()]


def _flat(keys):
    for k in keys:
        if isinstance(k, list):
            yield from _flat(k)
        else:
            yield k


def _trace_on_driver(client, batched, args, shared, arrays):
    """Trace the function here (on the first row) if it has no trace for
    these argument shapes: the workers get the trace, and need not import
    the Python function (they cannot, for one defined in a script).  The
    shared arguments are the caller's own, so leaf Variables among them are
    the inputs (as in one process), not copies of their values."""
    c = batched.compiled
    shapes = list(_core._arg_shapes(tuple(0.0 if a is not None else s for s, a in zip(shared, arrays))))
    for i, a in enumerate(arrays):
        if a is not None:
            shapes[i] = -1 if a.ndim == 1 else a.shape[1]
    if c._traces.get(tuple(shapes)):
        return
    if c._fn is None:
        raise TypeError(f"this compiled graph takes arguments shaped {c._shapes_text()}, not "
                        f"{tuple(shapes)} per row")
    firsts = iter(client.gather(client.compute([a[:1] for a in arrays if a is not None])))
    row = tuple(s if a is None else next(firsts) for s, a in zip(args, arrays))
    batched._run(row, False, None)


def _shared_value(a):
    """A shared argument as it travels: Variables become their values."""
    if isinstance(a, _core.Variable):
        return a.data
    if isinstance(a, (list, tuple)) and any(isinstance(v, _core.Variable) for v in a):
        return np.array([v.data if isinstance(v, _core.Variable) else v for v in a], dtype=np.float64)
    return a


# ---------------------------------------------------------------------------
# the workers' side
# ---------------------------------------------------------------------------

def _function(digest, blob):
    """The worker's copy of the function with this hash: unpickled once per process."""
    with _loaded_lock:
        batched = _loaded.get(digest)
        if batched is None:
            batched = pickle.loads(blob)
            _loaded[digest] = batched
            while len(_loaded) > _LOADED_KEEP:
                _loaded.popitem(last=False)
        else:
            _loaded.move_to_end(digest)
    return batched


def _partitions(digest, blob, shared, expect, parts, *blocks):
    """On a worker: [(summed loss, summed gradient over every input, shapes)]
    for each partition (k, first row, rows) in parts; blocks: each
    partition's blocks of the axis-0 arguments, partition after partition."""
    batched = _function(digest, blob)
    nb = sum(e is not None for e in expect)
    return [_partition(batched, shared, expect, k, start, rows, blocks[j * nb:(j + 1) * nb])
            for j, (k, start, rows) in enumerate(parts)]


def _partition(batched, shared, expect, k, start, rows, blocks):
    """One partition: (summed loss, summed gradient over every input, shapes)."""
    args, blocks = [], iter(blocks)
    for i, (s, e) in enumerate(zip(shared, expect)):
        if e is None:
            args.append(s)
            continue
        p = next(blocks)
        p = np.asarray(p)
        ndim, cols = e
        if p.ndim != ndim or p.shape[0] != rows or (ndim == 2 and p.shape[1] != cols):
            want = f"({rows},)" if ndim == 1 else f"({rows}, {cols})"
            raise ValueError(f"partition {k} (rows {start} to {start + rows - 1}) of argument {i} has "
                             f"shape {p.shape}, but the array says {want}")
        if p.dtype.kind not in "fiub":
            raise TypeError(f"partition {k} (rows {start} to {start + rows - 1}) of argument {i} holds "
                            f"dtype {p.dtype}, not real numbers")
        args.append(p)
    try:
        prog, _, y_sum, _, grad_sum, _ = batched._run(tuple(args), True, "sum")
        batched.compiled._scalar_output(prog, "autograd_c.dask")
    except Exception as e:
        if hasattr(e, "add_note"):
            e.add_note(f"in partition {k} (rows {start} to {start + rows - 1}), on a Dask worker")
        raise
    return float(y_sum[0]), grad_sum[0].copy(), prog.meta[0]
