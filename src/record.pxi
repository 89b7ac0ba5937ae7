# record.pxi -- recording operations on this thread's tape.
#
# Holds: operand checks and number coercion (_number, _real), which tape an
# operation goes to (_tape_for, _owning_tape), leaf entries (_operand,
# _new_leaf_entry), the constant pool (_const), and the recorders: _binary,
# _unary, _nary (sum, dot, custom Functions), _compare; then the public
# functions (exp, log, ..., maximum, minimum, sum, dot).
# Every value comes from src/ops.h, the formula the sweep differentiates.
# May touch: the tape's arrays, through _reserve first (it may compact and
# renumber nodes, so operand indices are read after it).  Converting a
# number may run Python code (a float subclass's __float__): numbers are
# converted before any Variable is read or anything is recorded.

# ---------------------------------------------------------------------------
# operand checks
# ---------------------------------------------------------------------------

cdef inline int _number(object o, double *out) except -1:
    """1 and the value if o is an accepted number, else 0."""
    if PyFloat_CheckExact(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if PyLong_CheckExact(o):
        out[0] = PyLong_AsDouble(o)
        return 1
    return _number_slow(o, out)


cdef int _number_slow(object o, double *out) except -1:
    if PyFloat_Check(o) or PyLong_Check(o):          # float/int subclasses, bool
        out[0] = float(o)
        return 1
    np = sys.modules.get("numpy")                    # a NumPy scalar implies NumPy is imported
    if np is not None and isinstance(o, (np.floating, np.integer, np.bool_)):
        out[0] = float(o)
        return 1
    return 0


cdef int _raise_not_number(object o, str where) except -1:
    raise TypeError(
        f"{where} takes Variables or real numbers (int, float, bool, NumPy real scalar), "
        f"not {type(o).__name__}")


cdef Tape _owning_tape(Variable v):
    """The tape of a recorded Variable, which must be this thread's."""
    cdef void *mine = ac_this_thread().tape
    if v.kind == K_RELEASED:
        raise RuntimeError(
            "the graph of this Variable was released because a leaf it depends on was "
            "assigned a new value (leaf.data = ...) after it was recorded; record the "
            "expression again from the current values")
    if <void *>v.owner != mine:
        raise RuntimeError(
            f"this Variable was recorded by thread {(<Tape>v.owner).thread_name!r} and cannot be "
            f"used from thread {threading.current_thread().name!r}: each thread records its own "
            "tape. Use v.detach() or v.data to pass values between threads")
    return <Tape>v.owner


cdef inline Tape _tape_for(object a, int ka, object b, int kb):
    """This thread's tape, checking that recorded operands belong to it.
    (A released Variable is welcome from anywhere: only its value is used.)"""
    cdef Tape tape = _thread_tape()
    if ka == K_NODE and (<Variable>a).owner != <PyObject *>tape:
        _owning_tape(<Variable>a)
    if kb == K_NODE and (<Variable>b).owner != <PyObject *>tape:
        _owning_tape(<Variable>b)
    return tape


cdef inline int64_t _operand(Tape tape, object o, int kind) except -1:
    """The operand of a recorded Variable (its node), of a leaf
    (tape.t.leaf_flag | its entry in this tape's leaf table, made on first
    use), or of a released Variable (a leaf entry that refuses backward()),
    in the tape's layout (tape.h: it holds until the operation's node is
    pushed).  Never negative."""
    cdef Variable v = <Variable>o
    if kind == K_NODE:
        if v.kind == K_NODE:
            v.used = 1            # if the operation fails before its node is pushed, see _recording_failed
            return v.index
        kind = v.kind             # released by the compaction that made room
    if kind == K_RELEASED:
        return _new_leaf_entry(tape, v, AC_LEAF_RELEASED)
    if v.cache_tape == &tape.t:
        return tape.t.leaf_flag | <uint64_t>v.index
    if v.cache_tape != NULL and v.cache_tape.busy:
        # Its current entry is on a tape whose backward pass is running (in
        # another thread): that pass may still undo its gradients, so the
        # entry stays current there and this one is a past entry.
        return _new_leaf_entry(tape, v, 0)
    return _new_leaf_entry(tape, v, AC_LEAF_CURRENT)


cdef inline ac_ref _as_ac_ref(Tape tape, int64_t r) noexcept:
    """A node index or leaf reference in the tape's current layout (what
    _operand returns) as an ac_ref, the form C readers of either layout take
    (tape.h)."""
    return <ac_ref>r if tape.t.hi != NULL else ac_ref_of_narrow(<uint64_t>r)


cdef int64_t _new_leaf_entry(Tape tape, Variable leaf, uint8_t flags) except -1:
    """A new leaf-table entry for leaf: its current one (AC_LEAF_CURRENT),
    a past one (0), or one standing for a released Variable's value."""
    cdef int64_t k = tape.t.nleaves
    cdef int rc = ac_reserve_leaves(&tape.t, 1)
    if rc < 0:
        _recording_failed(tape)
        _raise_growth_error(rc, "leaf table", "leaf entries")
    if flags & AC_LEAF_CURRENT:
        _detach(leaf)      # its entry on another tape becomes a past one
    Py_INCREF(leaf)
    tape.t.leaf_obj[k] = <void *>leaf
    tape.t.leaf_val[k] = leaf.value
    tape.t.leaf_version[k] = leaf.version
    tape.t.leaf_grad[k] = 0.0
    tape.t.leaf_flags[k] = flags
    tape.t.nleaves = k + 1
    if flags & AC_LEAF_CURRENT:
        leaf.cache_tape = &tape.t
        leaf.index = k
    else:
        tape.t.ndetached += 1
    tape.limit -= LEAF_ENTRY_BYTES // NODE_BYTES     # the entry counts in the budget
    return tape.t.leaf_flag | <uint64_t>k


cdef int _raise_growth_error(int rc, str what, str unit) except -1:
    """A tape array could not grow (rc from ac_grow_*/ac_reserve_*)."""
    if rc == -3:
        raise MemoryError(
            f"the {what} of this thread's tape is full ({unit} past the wide layout's limit); "
            "drop references to graphs you no longer need, or split the computation")
    if rc == -2:       # _make_room widens the tape before an operation could get here
        raise MemoryError(f"the {what} of this thread's tape reached the narrow layout's limit "
                          "in the middle of an operation (please report this)")
    raise MemoryError(f"out of memory growing the {what} of this thread's tape")


cdef inline void _recording_failed(Tape tape) noexcept:
    """An operation fails after some of its operands were marked used (or
    a leaf entry was made for it), and its node will not be pushed: that
    operand's node may be a sink no death will report, so the next
    compaction must run (see Tape.maybe_garbage)."""
    tape.maybe_garbage += 1


cdef inline int64_t _const(Tape tape, double c) except -1:
    cdef int64_t before = tape.t.nconsts
    cdef int64_t k = ac_const_index(&tape.t, c)
    if k < 0:
        _recording_failed(tape)
        _raise_growth_error(<int>k, "constant pool", "distinct constants")
    if tape.t.nconsts != before:
        tape.limit -= CONST_BYTES // NODE_BYTES     # a new constant counts in the budget
    return k


cdef int _anomaly(int op, double y, tuple inputs) except -1:
    shown = ", ".join(repr(x) for x in inputs)
    raise FloatingPointError(
        f"detect_anomaly: {ac_op_name(op).decode()}({shown}) produced {y!r}")


# ---------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------

cdef inline object _binary(int op, int op_xc, int op_cx, object left, object right):
    """left <op> right.  op_xc records `node op constant`, op_cx `constant op node`."""
    cdef double x, z, y
    cdef int ka, kb
    cdef Tape tape
    cdef uint64_t ia, ib
    cdef ac_node i
    cdef ac_thread_state *ts
    # Numbers first: converting one may run Python code (a float subclass's
    # __float__), which must not run between reading a Variable and recording.
    if type(left) is not Variable:
        if not _number(left, &x):
            return NotImplemented
        ka = K_CONST
    if type(right) is not Variable:
        if not _number(right, &z):
            return NotImplemented
        kb = K_CONST
    if type(left) is Variable:
        x = (<Variable>left).value
        ka = (<Variable>left).kind
    if type(right) is Variable:
        z = (<Variable>right).value
        kb = (<Variable>right).kind

    # The value comes from the formula of the op that is (or would be, with
    # grad enabled) recorded; ops.h gives the constant forms the same values,
    # so requires_grad never changes a result.
    if kb == K_CONST and ka != K_CONST:
        y = ac_const_value(op_xc, x, -z if op == AC_SUB else z)
    elif ka == K_CONST and kb != K_CONST:
        y = ac_const_value(op_cx, z, x)
    else:
        y = ac_binary_value(op, x, z)
    ts = ac_this_thread()
    if ts.anomaly and not isfinite(y):
        _anomaly(op, y, (x, z))
    if (ka | kb) == K_CONST or not ts.grad_enabled:
        return _untracked(y, left, ka, right, kb, "arithmetic under no_grad()")

    tape = _tape_for(left, ka, right, kb)
    _reserve(tape, 1)
    if ka and kb:
        ia = <uint64_t>_operand(tape, left, ka)
        ib = <uint64_t>_operand(tape, right, kb)
        i = ac_push_op(&tape.t, op, ia, ib, y)
    elif ka:
        ia = <uint64_t>_operand(tape, left, ka)
        # x - c is recorded as x + (-c): IEEE defines subtraction that way
        i = ac_push_op(&tape.t, op_xc, ia, <uint64_t>_const(tape, -z if op == AC_SUB else z), y)
    else:
        ib = <uint64_t>_operand(tape, right, kb)
        i = ac_push_op(&tape.t, op_cx, ib, <uint64_t>_const(tape, x), y)
    return _new_node(tape, i, y)


cdef object _unary(int op, object arg):
    cdef double x, y
    cdef int ka = K_CONST
    cdef Tape tape
    cdef uint64_t ia
    cdef ac_thread_state *ts
    if type(arg) is Variable:
        x = (<Variable>arg).value
        ka = (<Variable>arg).kind
    elif _number(arg, &x):
        ka = K_CONST
    else:
        _raise_not_number(arg, ac_op_name(op).decode() + "()")
    y = ac_unary_value(op, x)
    ts = ac_this_thread()
    if ts.anomaly and not isfinite(y):
        _anomaly(op, y, (x,))
    if ka == K_CONST or not ts.grad_enabled:
        return _untracked(y, arg, ka, None, K_CONST, "a function under no_grad()")
    tape = _tape_for(arg, ka, None, K_CONST)
    _reserve(tape, 1)
    ia = <uint64_t>_operand(tape, arg, ka)
    return _new_node(tape, ac_push_op(&tape.t, op, ia, 0, y), y)


cdef object _nary(int op, list items, int width, str where, object fn=None, double given=0.0):
    """One n-ary node over items: AC_SUM (width 1), AC_DOT (width 2, pairs
    interleaved x0, z0, x1, z1, ...) or AC_CUSTOM (width 1: the inputs of
    Function fn, whose forward gave the value `given`)."""
    cdef Py_ssize_t n = len(items), j
    cdef double y = 0.0, v
    cdef double *values = NULL
    cdef uint8_t *kinds = NULL
    cdef bint any_grad = False
    cdef Tape tape
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int64_t offset
    cdef uint64_t ref
    cdef object o

    if n >= AC_NARROW_CONST:
        raise ValueError(f"{where} takes at most {AC_NARROW_CONST - 1:,} items, got {n:,}")
    values = <double *>malloc((n + 1) * sizeof(double))
    kinds = <uint8_t *>malloc(n + 1)
    if values == NULL or kinds == NULL:
        free(values)
        free(kinds)
        raise MemoryError()
    try:
        for j in range(n):       # numbers first, as in _binary: conversion may run Python code
            o = items[j]
            if type(o) is not Variable:
                if not _number(o, &values[j]):
                    raise TypeError(
                        f"{where} takes Variables or real numbers, but item {j // width} is "
                        f"{type(o).__name__}")
                kinds[j] = K_CONST
        for j in range(n):
            o = items[j]
            if type(o) is Variable:
                values[j] = (<Variable>o).value
                kinds[j] = (<Variable>o).kind
            any_grad |= kinds[j] != K_CONST
        if op == AC_CUSTOM:
            y = given
        elif width == 1:
            for j in range(n):
                y += values[j]
        else:
            for j in range(0, n, 2):
                y += values[j] * values[j + 1]
        if ts.anomaly and not isfinite(y):
            if op == AC_CUSTOM:
                shown = ", ".join([repr(values[j]) for j in range(n)])
                raise FloatingPointError(
                    f"detect_anomaly: {type(fn).__name__}.forward({shown}) produced {y!r}")
            _anomaly(op, y, ())
        if not any_grad or not ts.grad_enabled:
            if ts.trace != NULL and any_grad:
                for j in range(n):
                    if kinds[j] != K_CONST:
                        _check_untracked(items[j], kinds[j], None, K_CONST, where + " under no_grad()")
            return _new_constant(y)

        tape = _thread_tape()
        for j in range(n):
            if kinds[j] == K_NODE:
                _tape_for(items[j], kinds[j], None, K_CONST)
        # the operand list counts in the memory budget (may compact or widen)
        tape._make_room(1, n + 1)
        if ac_reserve_args(&tape.t, n + 1) < 0:
            raise MemoryError("out of memory growing the operand lists of the tape")
        offset = tape.t.nargs
        ac_set_word(&tape.t, offset, n)
        # One loop per layout (the tape cannot widen in this operation: see
        # _make_room), so a narrow list costs no layout test per word.
        if tape.t.wargs == NULL:
            for j in range(n):
                if kinds[j] == K_CONST:
                    ref = AC_NARROW_CONST | <uint64_t>_const(tape, values[j])
                else:
                    ref = <uint64_t>_operand(tape, items[j], kinds[j])
                tape.t.args[offset + 1 + j] = <uint32_t>ref
        else:
            for j in range(n):
                if kinds[j] == K_CONST:
                    ref = AC_CONST_BIT | <uint64_t>_const(tape, values[j])
                else:
                    ref = <uint64_t>_operand(tape, items[j], kinds[j])
                tape.t.wargs[offset + 1 + j] = ref
        tape.t.nargs = offset + 1 + n
        tape.limit -= ((n + 1) * _arg_bytes(tape)) // NODE_BYTES
        result = _new_node(tape, ac_push_nary(&tape.t, op, offset, y), y)
        if op == AC_CUSTOM:       # after the node is complete: nothing runs in between
            tape.functions[(<Variable>result).index] = fn
        return result
    finally:
        free(values)
        free(kinds)


cdef object _compare(object a, object b, int how):
    cdef double x, z
    cdef bint r
    if type(a) is Variable:
        x = (<Variable>a).value
    elif not _number(a, &x):
        return NotImplemented
    if type(b) is Variable:
        z = (<Variable>b).value
    elif not _number(b, &z):
        return NotImplemented
    if how == 0:
        r = x < z
    elif how == 1:
        r = x <= z
    elif how == 2:
        r = x > z
    else:
        r = x >= z
    if ac_this_thread().trace != NULL:
        _trace_guard(a, b, how, r)       # a branch on it must be replayed the same way
    return r


# ---------------------------------------------------------------------------
# module functions
# ---------------------------------------------------------------------------

def exp(x):
    """e ** x"""
    return _unary(AC_EXP, x)

def log(x):
    """Natural logarithm (nan below 0, -inf at 0)."""
    return _unary(AC_LOG, x)

def log1p(x):
    """log(1 + x), accurate near 0."""
    return _unary(AC_LOG1P, x)

def expm1(x):
    """exp(x) - 1, accurate near 0."""
    return _unary(AC_EXPM1, x)

def sqrt(x):
    """Square root (nan below 0)."""
    return _unary(AC_SQRT, x)

def sin(x):
    """Sine."""
    return _unary(AC_SIN, x)

def cos(x):
    """Cosine."""
    return _unary(AC_COS, x)

def tan(x):
    """Tangent."""
    return _unary(AC_TAN, x)

def atan(x):
    """Arctangent."""
    return _unary(AC_ATAN, x)

def tanh(x):
    """Hyperbolic tangent."""
    return _unary(AC_TANH, x)

def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _unary(AC_SIGMOID, x)

def relu(x):
    """max(x, 0); gradient 0 at 0, as PyTorch."""
    return _unary(AC_RELU, x)

def softplus(x):
    """log(1 + exp(x)), linear above 20 as torch.nn.functional.softplus."""
    return _unary(AC_SOFTPLUS, x)

def erf(x):
    """The error function."""
    return _unary(AC_ERF, x)

def abs(x):
    """|x|; gradient 0 at 0, as PyTorch."""
    return _unary(AC_ABS, x)


def maximum(a, b):
    """The larger of a and b (nan if either is nan); at a tie each gets half the gradient, as torch.maximum."""
    r = _binary(AC_MAX, AC_MAXC, AC_RMAXC, a, b)
    if r is NotImplemented:
        _raise_not_number(b if isinstance(a, Variable) or _is_number(a) else a, "maximum()")
    return r


def minimum(a, b):
    """The smaller of a and b (nan if either is nan); at a tie each gets half the gradient, as torch.minimum."""
    r = _binary(AC_MIN, AC_MINC, AC_RMINC, a, b)
    if r is NotImplemented:
        _raise_not_number(b if isinstance(a, Variable) or _is_number(a) else a, "minimum()")
    return r


cdef bint _is_number(object o) except -1:
    cdef double x
    return _number(o, &x)


def sum(iterable):
    """Sum of Variables and numbers as ONE node (O(n) tape work, one Python call).

    Examples
    --------
    >>> import autograd_c as ag
    >>> xs = [ag.Variable(float(i)) for i in range(4)]
    >>> s = ag.sum(xs)
    >>> s.backward(); [x.grad for x in xs]
    [1.0, 1.0, 1.0, 1.0]
    """
    return _nary(AC_SUM, list(iterable), 1, "sum()")   # a private copy: nothing can change it meanwhile


def dot(xs, ys):
    """sum(x * y for x, y in zip(xs, ys)) as ONE node: a neuron's w . x in one call.

    Raises ValueError if the lengths differ.
    """
    xs = xs if type(xs) is list else list(xs)
    ys = ys if type(ys) is list else list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"dot() needs sequences of equal length, got {len(xs)} and {len(ys)}")
    items = [None] * (2 * len(xs))
    items[0::2] = xs
    items[1::2] = ys
    return _nary(AC_DOT, items, 2, "dot()")
