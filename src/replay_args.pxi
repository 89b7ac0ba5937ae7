# replay_args.pxi -- the arguments of compiled functions: shapes, values, rows, gradients.
#
# Holds: what autograd_c/compiled.py calls on every call of a compiled
# function: _arg_shapes (the trace cache key), _flatten_arg / _flatten_args
# (numbers, Variables, sequences and 1-D arrays of any real dtype or layout
# into the program's input vector), _batch_args (the axis-0 arguments of a
# batched call as float64 arrays of whole, aligned double strides, copied
# only when they are not), and _add_leaf_grads (f.backward: gradients into
# the .grad of leaf Variable arguments).  Anything else is a TypeError or
# ValueError naming the argument: the C code trusts what it is given.
# May touch: leaves' gradients (_add_leaf_grads), after checking every one.

def _arg_shapes(tuple args):
    """Per argument -1 (a number or Variable) or its length (a sequence or
    1-D array); TypeError/ValueError for anything else.  The trace cache key."""
    cdef Py_ssize_t i
    cdef double x
    shapes = []
    for i in range(len(args)):
        a = args[i]
        if type(a) is Variable:
            if (<Variable>a).kind == K_NODE:
                raise TypeError(
                    f"argument {i} is a recorded Variable; a compiled function takes numbers, leaf "
                    "Variables or sequences of them (pass v.data for its value)")
            shapes.append(-1)
        elif type(a) is list or type(a) is tuple:
            shapes.append(len(a))
        elif _number(a, &x):
            shapes.append(-1)
        else:
            shape = getattr(a, "shape", None)
            if shape is None or not hasattr(a, "dtype"):
                raise TypeError(
                    f"argument {i} is {type(a).__name__}; a compiled function takes real numbers, "
                    "Variables, or lists, tuples or 1-D NumPy arrays of them")
            if len(shape) == 0:
                shapes.append(-1)
            elif len(shape) == 1:
                shapes.append(shape[0])
            else:
                raise ValueError(
                    f"argument {i} is an array of shape {tuple(shape)}; one call takes numbers and "
                    "1-D arrays (use f.vmap(in_axes=...) for rows of a 2-D array)")
    return tuple(shapes)


cdef int _flatten_arg(object a, Py_ssize_t shape, double *out, Py_ssize_t argno) except -1:
    """Write argument a's values (a number or a sequence of `shape` numbers)
    to out."""
    cdef Py_ssize_t k, n
    cdef const double[:] v
    cdef object item
    if shape < 0:
        if type(a) is Variable:
            out[0] = (<Variable>a).value
            return 0
        if _number(a, out):
            return 0
        shape_of = getattr(a, "shape", None)
        if shape_of is not None and len(shape_of) == 0:
            return _flatten_arg(_float_array(a, argno).reshape(1), 1, out, argno)
        raise TypeError(f"argument {argno} must be a real number, not {type(a).__name__}")
    if type(a) is list or type(a) is tuple:
        n = len(a)
        if n != shape:
            raise ValueError(f"argument {argno} has {n} items; it had {shape} when traced")
        for k in range(n):
            item = (<list>a)[k] if type(a) is list else (<tuple>a)[k]
            if type(item) is Variable:
                if (<Variable>item).kind == K_NODE:
                    raise TypeError(f"argument {argno}[{k}] is a recorded Variable; pass its .data")
                out[k] = (<Variable>item).value
            elif not _number(item, &out[k]):
                raise TypeError(f"argument {argno}[{k}] must be a real number or a Variable, not "
                                f"{type(item).__name__}")
        return 0
    try:
        v = a
    except (ValueError, TypeError, BufferError):
        v = _float_array(a, argno)
    if v.ndim != 1 or v.shape[0] != shape:
        raise ValueError(f"argument {argno} has shape {tuple(getattr(a, 'shape', ()))}; expected ({shape},)")
    if shape > 0 and (<size_t>&v[0] % sizeof(double) != 0 or v.strides[0] % <Py_ssize_t>sizeof(double) != 0):
        for k in range(shape):          # a buffer at an odd address: a double load there is UB
            memcpy(&out[k], <const char *>&v[0] + k * v.strides[0], sizeof(double))
        return 0
    for k in range(shape):
        out[k] = v[k]
    return 0


def _float_array(a, argno):
    """a as a float64 NumPy array: real dtypes convert (a copy), others raise."""
    np = sys.modules.get("numpy")
    if np is None:
        import numpy as np
    dtype = getattr(a, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind not in ("f", "i", "u", "b"):
        raise TypeError(f"argument {argno} has dtype {dtype}; compiled functions take real numbers "
                        "(float, int or bool arrays)")
    return np.ascontiguousarray(a, dtype=np.float64)


def _batch_args(tuple args, tuple axes):
    """The arguments of a batched call, checked: (arguments with each axis-0
    one a float64 array whose strides are whole, aligned doubles -- real
    dtypes and odd layouts copied --, per-row shapes, rows).  Shared
    arguments are left as they are (_flatten_arg checks them)."""
    cdef Py_ssize_t i, rows = -1, n
    cdef const double[:] v1
    cdef const double[:, :] v2
    cdef bint ok
    np = sys.modules.get("numpy")
    if np is None:
        import numpy as np
    norm = list(args)
    shapes = list(_arg_shapes(tuple([a if ax is None else 0.0 for a, ax in zip(args, axes)])))
    for i in range(len(args)):
        if axes[i] is None:
            continue
        a = args[i]
        if type(a) is not np.ndarray:
            a = np.asarray(a)
        ok = False
        try:
            if a.ndim == 1:
                v1 = a
                ok = (v1.strides[0] % <Py_ssize_t>sizeof(double) == 0
                      and (v1.shape[0] == 0 or <size_t>&v1[0] % sizeof(double) == 0))
            elif a.ndim == 2:
                v2 = a
                ok = (v2.strides[0] % <Py_ssize_t>sizeof(double) == 0
                      and v2.strides[1] % <Py_ssize_t>sizeof(double) == 0
                      and (v2.shape[0] == 0 or v2.shape[1] == 0 or <size_t>&v2[0, 0] % sizeof(double) == 0))
        except (ValueError, TypeError, BufferError):
            ok = False
        if a.ndim not in (1, 2):
            raise ValueError(f"argument {i} (axis 0) must be 1-D (a number per row) or 2-D (a "
                             f"sequence per row), not shape {a.shape}")
        if not ok:
            if a.dtype.kind not in ("f", "i", "u", "b"):
                raise TypeError(f"argument {i} (axis 0) must be an array of real numbers, not dtype "
                                f"{a.dtype}")
            a = np.require(a, np.float64, ("C", "A"))   # aligned: ascontiguousarray keeps an odd address
        n = a.shape[0]
        if rows < 0:
            rows = n
        elif n != rows:
            raise ValueError(f"argument {i} has {n} rows, an earlier one {rows}")
        norm[i] = a
        shapes[i] = -1 if a.ndim == 1 else a.shape[1]
    return tuple(norm), tuple(shapes), rows


def _flatten_args(tuple args, tuple shapes, double[::1] out):
    """Every argument's values, in order, into out (the program's inputs)."""
    cdef Py_ssize_t i, at = 0, count
    for i in range(len(args)):
        count = 1 if shapes[i] < 0 else shapes[i]
        if at + count > out.shape[0]:
            raise ValueError("internal: more values than inputs")
        _flatten_arg(args[i], shapes[i], &out[at] if count else NULL, i)
        at += count
    if at != out.shape[0]:
        raise ValueError("internal: fewer values than inputs")
    return out


def _add_leaf_grads(tuple args, tuple shapes, const double[::1] g):
    """backward() of a compiled function: add g (one value per input, in
    order) into .grad of each argument that is a leaf Variable (alone or in
    a sequence); other arguments are skipped.  Every leaf is checked before
    any gradient changes."""
    cdef Py_ssize_t i, k, at, count
    cdef Variable v
    cdef list leaves = []
    at = 0
    for i in range(len(args)):
        count = 1 if shapes[i] < 0 else shapes[i]
        a = args[i]
        if shapes[i] < 0:
            if type(a) is Variable and (<Variable>a).kind == K_LEAF:
                leaves.append((a, at))
        elif type(a) is list or type(a) is tuple:
            for k in range(count):
                item = a[k]
                if type(item) is Variable and (<Variable>item).kind == K_LEAF:
                    leaves.append((item, at + k))
        at += count
    for leaf, k in leaves:
        _check_settable(<Variable>leaf, "add gradients")
    for leaf, k in leaves:
        v = <Variable>leaf
        v.grad_value += g[k]
    return len(leaves)
