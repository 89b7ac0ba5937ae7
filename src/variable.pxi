# variable.pxi -- the Variable type users hold, and its allocation.
#
# Holds: the Variable class and its fields: construction, .data/.grad
# and the other attributes, the arithmetic slots (each one line into
# record.pxi), functions as methods; then the recycling pool that allocates
# and frees Variable objects (a hand-installed tp_dealloc), the leaf
# bookkeeping helpers (_set_value, _detach, _set_leaf_grad) and the factories
# _new_constant / _new_node.
# May touch: Variable fields, the leaf fields of a tape (leaf_grad,
# leaf_flags) and the live-Variable registry; backward, introspection and
# recording live in their own files.

# ---------------------------------------------------------------------------
# Variable
# ---------------------------------------------------------------------------

@cython.final
cdef class Variable:
    """A real number that records the operations applied to it.

    Parameters
    ----------
    data : int, float, bool or NumPy real scalar
        The value.
    requires_grad : bool, default True
        False makes a constant: it never enters the tape and has no gradient.
    name : str, optional
        A label for printing and graph pictures.

    Examples
    --------
    >>> from autograd_c import Variable
    >>> x = Variable(2.0)
    >>> y = x * x + 3 * x
    >>> y.backward()
    >>> x.grad
    7.0
    """
    # No Python-object fields: the two references below are counted by hand
    # (see _variable_dealloc), so recycling a Variable costs no None fills.
    # grad_value and version lead: a backward() reads and writes just these
    # two on every leaf, so they should share a cache line.
    cdef double value             # the forward value
    cdef double grad_value        # leaf: accumulated gradient; recorded: adjoint of the latest backward()
    cdef uint32_t version         # K_LEAF: bumped by every .data assignment
    cdef uint8_t kind             # K_CONST, K_LEAF, K_NODE or K_RELEASED
    cdef uint8_t grad_unknown     # K_NODE made after a backward() whose adjoint for it is not
                                  # known any more (see _kept_adjoint): .grad is None
    cdef uint8_t used             # K_NODE: taken as an operand by an operation (so its node
                                  # is not a sink; see Tape.maybe_garbage)
    cdef ac_node index            # K_NODE: its node; K_LEAF: its current entry in cache_tape's leaf table
    cdef PyObject *owner          # K_NODE / K_RELEASED: strong reference to the recording Tape
    cdef ac_tape *cache_tape      # K_LEAF: tape holding this leaf's current entry, or NULL
    cdef PyObject *prev           # K_NODE: the tape's registry of live Variables
    cdef PyObject *next
    cdef PyObject *label          # strong reference to the name (a str), or NULL
    cdef PyObject *grad_obj       # K_LEAF: strong reference to the accumulated gradient when it
                                  # is a recorded Variable (create_graph=True), else NULL; its
                                  # value is then grad_value (see the grad property)

    __array_ufunc__ = None        # NumPy defers `np.float64(2) * v` to Variable.__rmul__

    def __init__(self, data, requires_grad=True, name=None):
        cdef int flag
        if self.kind >= K_NODE:
            raise RuntimeError("a recorded Variable cannot be re-initialised")
        if isinstance(data, Variable):
            raise TypeError(
                "Variable(data) takes a number, not a Variable; use v.detach() for a constant "
                "copy or Variable(v.data) for a new leaf")
        if type(requires_grad) is tuple:
            # micrograd's Value(data, _children=(), _op=''): a leaf
            if len(requires_grad):
                raise TypeError(
                    "Value(data, _children) with children is micrograd's internal form; "
                    "autograd_c records operations itself: build the expression with operators")
            if name is not None and not isinstance(name, str):
                raise TypeError(f"_op must be a str, not {type(name).__name__}")
            flag, name = 1, None
        else:
            flag = _requires_grad_flag(requires_grad)
            _check_label(name)
        x = _real(data, "Variable data")
        _check_leaf_settable(self, "re-initialise a Variable")
        _set_value(self, x)
        self.kind = K_LEAF if flag else K_CONST
        _set_label(self, name)

    # -- attributes ---------------------------------------------------------

    @property
    def data(self):
        """The value, a float.  Assignable on leaves and constants."""
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "v.data")
        return self.value

    @data.setter
    def data(self, value):
        if self.kind >= K_NODE:
            raise AttributeError(
                "data of a recorded (non-leaf) Variable cannot be set; "
                "set the leaves it came from and record the expression again")
        _check_settable(self, "assign .data")
        _set_value(self, _real(value, "Variable data"))

    @property
    def value(self):
        """Alias of :attr:`data`."""
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "v.value")
        return self.value

    @value.setter
    def value(self, value):
        self.data = value

    @property
    def grad(self):
        """d(output)/d(self): a float, 0.0 before any backward().

        Leaves accumulate it over backward() calls until zeroed; a recorded
        Variable shows the adjoint of the latest backward() pass.  After
        ``backward(create_graph=True)`` a leaf's gradient that depends on
        Variables is itself a recorded Variable, differentiable again
        (later create_graph passes add to it as recorded operations); a
        first-order backward() that adds to it makes it a float again.
        Assign None or 0 to clear it.
        """
        cdef double pending = 0.0
        if self.cache_tape != NULL:
            pending = self.cache_tape.leaf_grad[self.index]
        if self.grad_obj != NULL:
            if pending == 0.0 and _same_number((<Variable>self.grad_obj).value, self.grad_value):
                return <object>self.grad_obj
            _drop_grad_graph(self)    # a first-order pass added to it: a float again
        if self.cache_tape != NULL:
            # nothing pending: the value as set (a -0.0 stays -0.0)
            return self.grad_value if pending == 0.0 else self.grad_value + pending
        if self.grad_unknown:
            return None
        return self.grad_value

    @grad.setter
    def grad(self, value):
        cdef Variable g
        _check_settable(self, "assign .grad")
        if type(value) is Variable:
            g = value
            _set_leaf_grad(self, g.value)
            if g.kind == K_LEAF or g.kind == K_NODE:     # a gradient with a graph
                _incref(<PyObject *>g)
                self.grad_obj = <PyObject *>g
            return
        _set_leaf_grad(self, 0.0 if value is None else _real(value, "grad"))

    @property
    def requires_grad(self):
        """True unless this is a constant."""
        return self.kind != K_CONST

    @requires_grad.setter
    def requires_grad(self, flag):
        if self.kind >= K_NODE:
            raise RuntimeError(
                "requires_grad can only be changed on leaves; "
                "use v.detach() for a constant copy of a recorded Variable")
        cdef int requires = _requires_grad_flag(flag)
        _check_settable(self, "change requires_grad")
        _detach(self)
        self.kind = K_LEAF if requires else K_CONST

    @property
    def is_leaf(self):
        """True for Variables made by the user (and constants), False for recorded results."""
        return self.kind <= K_LEAF

    @property
    def name(self):
        """An optional label (str or None)."""
        return None if self.label == NULL else <object>self.label

    @name.setter
    def name(self, value):
        _set_label(self, value)

    @property
    def op(self):
        """Name of the operation that produced this Variable ('' for leaves and constants)."""
        return _op_name(self)

    @property
    def _prev(self):
        """The set of Variables self was computed from, as micrograd's Value._prev:
        leaves, recorded results and constants (as constant Variables).  A
        node reached through two parents comes back as the same object."""
        return _prev_of(self)

    @property
    def _op(self):
        """The operation as micrograd names it ('+', '*', '**2', 'ReLU', ...);
        other operations by name, '' for leaves and constants."""
        return _micrograd_op(self)

    def item(self):
        """The value as a Python float."""
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "v.item()")
        return self.value

    def detach(self):
        """A constant with the same value, outside every graph."""
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "v.detach()")
        return _new_constant(self.value)

    # While a function is traced for ag.compile (src/tracing.pxi), a value
    # read refuses and a truth test becomes a guard.
    def __float__(self):
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "float(v)")
        return self.value

    def __int__(self):
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "int(v)")
        return int(self.value)

    def __bool__(self):
        cdef bint r = self.value != 0.0
        if ac_this_thread().trace != NULL:
            _trace_guard(self, None, GUARD_TRUTH, r)
        return r

    def __hash__(self):
        # identity hash: Variables are usable as set members and dict keys
        cdef Py_hash_t h = <Py_hash_t>(<size_t><void *>self >> 4)
        return -2 if h == -1 else h

    def __repr__(self):
        name = "" if self.label == NULL else f", name={<object>self.label!r}"
        if self.kind == K_CONST:
            return f"Variable(data={self.value!r}, requires_grad=False{name})"
        return f"Variable(data={self.value!r}, grad={self.grad!r}{name})"

    def __format__(self, spec):
        if ac_this_thread().trace != NULL:
            _check_concrete(self, "formatting (f-string, format())")
        return format(self.value, spec)

    def __reduce__(self):
        if self.kind >= K_NODE:
            raise TypeError(
                "a recorded Variable cannot be pickled or copied (its graph lives in a "
                "thread's tape); pickle v.detach() or v.data instead")
        return (_rebuild, (self.value, self.kind == K_LEAF, self.name, float(self.grad or 0.0)))

    # -- gradients ----------------------------------------------------------

    def backward(self, gradient=1.0, create_graph=False):
        """Add d(self)/d(leaf) * gradient into ``.grad`` of every leaf self depends on.

        Gradients accumulate: calling backward() twice adds twice, until
        the leaves are zeroed (``zero_grad()`` or ``leaf.grad = 0``).  The
        graph is kept, so backward() can be called again.  Recorded
        Variables' ``.grad`` then show this pass's adjoints.

        With ``create_graph=True`` the backward pass is itself recorded
        as operations on the tape (as PyTorch and DeZero do), so a leaf's
        ``.grad`` becomes a Variable that can be differentiated again, to
        any order; ``gradient`` may then be a Variable too.  The leaf then
        holds a graph that holds the leaf: clear ``.grad`` (``x.grad =
        None``) when done, or use ``ag.grad(..., create_graph=True)``,
        which touches no ``.grad``.  Custom Functions take part only with
        ``differentiable_backward = True`` (see :class:`Function`).

        Examples
        --------
        Newton's method for f(x) = x**4 - 2 x**2, as in DeZero:

        >>> import autograd_c as ag
        >>> x = ag.Variable(2.0)
        >>> for i in range(8):
        ...     y = x ** 4 - 2 * x ** 2
        ...     y.backward(create_graph=True)
        ...     gx = x.grad
        ...     x.grad = None
        ...     gx.backward()
        ...     x.data -= gx.data / x.grad
        ...     x.grad = None
        >>> x.data
        1.0

        Raises
        ------
        RuntimeError
            If self does not require grad, belongs to another thread's tape,
            or a leaf of its graph was assigned a new value after recording.
        """
        if create_graph:
            _backward_graph(self, gradient)
        else:
            _backward(self, gradient)

    def zero_grad(self):
        """Set ``.grad`` to 0 on self and on every leaf self depends on."""
        _zero_grad(self)

    # -- arithmetic ---------------------------------------------------------

    def __add__(self, other):
        return _binary(AC_ADD, AC_ADDC, AC_ADDC, self, other)

    def __radd__(self, other):
        return _binary(AC_ADD, AC_ADDC, AC_ADDC, other, self)

    def __sub__(self, other):
        return _binary(AC_SUB, AC_ADDC, AC_RSUBC, self, other)

    def __rsub__(self, other):
        return _binary(AC_SUB, AC_ADDC, AC_RSUBC, other, self)

    def __mul__(self, other):
        return _binary(AC_MUL, AC_MULC, AC_MULC, self, other)

    def __rmul__(self, other):
        return _binary(AC_MUL, AC_MULC, AC_MULC, other, self)

    def __truediv__(self, other):
        return _binary(AC_DIV, AC_DIVC, AC_RDIVC, self, other)

    def __rtruediv__(self, other):
        return _binary(AC_DIV, AC_DIVC, AC_RDIVC, other, self)

    def __pow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(AC_POW, AC_POWC, AC_RPOWC, self, other)

    def __rpow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(AC_POW, AC_POWC, AC_RPOWC, other, self)

    def __neg__(self):
        return _unary(AC_NEG, self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _unary(AC_ABS, self)

    def __lt__(self, other):
        return _compare(self, other, 0)

    def __le__(self, other):
        return _compare(self, other, 1)

    def __gt__(self, other):
        return _compare(self, other, 2)

    def __ge__(self, other):
        return _compare(self, other, 3)

    # -- functions as methods ----------------------------------------------

    def exp(self):
        """e ** self"""
        return _unary(AC_EXP, self)

    def log(self):
        """Natural logarithm (nan below 0, -inf at 0)."""
        return _unary(AC_LOG, self)

    def log1p(self):
        """log(1 + self), accurate near 0."""
        return _unary(AC_LOG1P, self)

    def expm1(self):
        """exp(self) - 1, accurate near 0."""
        return _unary(AC_EXPM1, self)

    def sqrt(self):
        """Square root (nan below 0)."""
        return _unary(AC_SQRT, self)

    def sin(self):
        """Sine."""
        return _unary(AC_SIN, self)

    def cos(self):
        """Cosine."""
        return _unary(AC_COS, self)

    def tan(self):
        """Tangent."""
        return _unary(AC_TAN, self)

    def atan(self):
        """Arctangent."""
        return _unary(AC_ATAN, self)

    def tanh(self):
        """Hyperbolic tangent."""
        return _unary(AC_TANH, self)

    def sigmoid(self):
        """1 / (1 + exp(-self))."""
        return _unary(AC_SIGMOID, self)

    def relu(self):
        """max(self, 0); gradient 0 at 0, as PyTorch."""
        return _unary(AC_RELU, self)

    def softplus(self):
        """log(1 + exp(self)), linear above 20 as torch.nn.functional.softplus."""
        return _unary(AC_SOFTPLUS, self)

    def erf(self):
        """The error function."""
        return _unary(AC_ERF, self)

    def abs(self):
        """|self|; gradient 0 at 0, as PyTorch."""
        return _unary(AC_ABS, self)


# ---------------------------------------------------------------------------
# Variable allocation: a recycling pool in front of the type's own allocator
# ---------------------------------------------------------------------------
# Creating and destroying a Variable is most of the cost of a recorded op.
# Cython's @freelist would clear the object with memset and re-initialise it
# through two calls into libpython; instead dead Variables wait in _spare,
# and a reused one only gets its reference count back (ac_revive) before
# the creator sets every field.  tp_dealloc is installed by hand for the
# same reason: a Cython __dealloc__ saves and restores the error state.

cdef extern from *:
    """
    /* What PyObject_Init does for an object of a static type whose memory
     * is reused, minus the tracemalloc hook (tracemalloc keeps the
     * object's first allocation traceback).  Debug and free-threaded
     * builds keep their bookkeeping through the real call. */
    static inline void ac_revive(PyObject *o)
    {
    #if defined(Py_TRACE_REFS) || defined(Py_REF_DEBUG) || defined(Py_GIL_DISABLED)
        (void)PyObject_Init(o, Py_TYPE(o));
    #else
        Py_SET_REFCNT(o, 1);
    #endif
    }
    """
    void ac_revive(PyObject *o)

cdef extern from "Python.h":
    void _decref "Py_DECREF"(PyObject *o)
    void _xdecref "Py_XDECREF"(PyObject *o)
    void _incref "Py_INCREF"(PyObject *o)

cdef enum:
    SPARE_MAX = 4096
cdef PyObject *_spare[SPARE_MAX]
cdef int _nspare = 0

cdef destructor _free_variable = (<PyTypeObject *>Variable).tp_dealloc

cdef void _variable_dealloc(PyObject *o) noexcept:
    """tp_dealloc of Variable: unregister a recorded Variable (resetting its
    tape if it was the last), then park the object in _spare.  Only casts
    touch o: a typed local would take a reference to a dying object."""
    global _nspare
    cdef PyObject *owner = (<Variable>o).owner
    cdef PyObject *label = (<Variable>o).label
    if (<Variable>o).kind == K_NODE:
        if (<Variable>o).index < (<Tape>owner).objmap_size:
            (<Tape>owner).objmap[(<Variable>o).index] = NULL
        if not (<Variable>o).used:
            (<Tape>owner).maybe_garbage += 1     # its node may be garbage now
        _unlink(<Tape>owner, <Variable>o)        # (after: gcc keeps live's decrement and test in memory)
        if (<Tape>owner).live == 0:
            (<Tape>owner)._reset()
    cdef PyObject *grad_obj = (<Variable>o).grad_obj
    (<Variable>o).owner = NULL
    (<Variable>o).label = NULL
    (<Variable>o).grad_obj = NULL
    if _nspare < SPARE_MAX:
        _spare[_nspare] = o
        _nspare += 1
    else:
        _free_variable(o)
    _xdecref(owner)      # last: these may free a Tape, which frees leaves
    _xdecref(label)
    _xdecref(grad_obj)

(<PyTypeObject *>Variable).tp_dealloc = _variable_dealloc


# Variable objects that could not be allocated (MemoryError), ever.  A
# recorder makes a node's Variable after pushing the node, so a failure may
# leave a node that no death will report as garbage: a tape whose count of
# these changed since its last compaction pass does not skip the next one
# (see Tape.maybe_garbage).
cdef Py_ssize_t _alloc_failures = 0


cdef Variable _fresh_variable():
    """Variable.__new__ (Variable is not a GC type: allocating one runs no
    Python code), counting a failure in _alloc_failures."""
    global _alloc_failures
    _alloc_failures += 1
    v = Variable.__new__(Variable)
    _alloc_failures -= 1
    return v


cdef inline Variable _alloc_variable():
    """A Variable object whose fields the caller sets, all of them."""
    global _nspare
    cdef Variable v
    if _nspare == 0:
        return _fresh_variable()
    _nspare -= 1
    ac_revive(_spare[_nspare])
    v = <Variable>_spare[_nspare]      # the cast takes a second reference ...
    _decref(_spare[_nspare])           # ... so drop the one ac_revive gave
    return v


cdef double _real(object o, str what) except? -1.0:
    """o as a double, or TypeError naming its type."""
    cdef double x
    if not _number(o, &x):
        raise TypeError(
            f"{what} must be a real number (int, float, bool or a NumPy real scalar), "
            f"not {type(o).__name__}")
    return x


cdef void _set_value(Variable v, double x) noexcept:
    _detach(v)             # the next use records a new leaf entry with the new value
    v.value = x
    v.version += 1


cdef inline void _detach(Variable v) noexcept:
    """End a leaf's current tape entry: take its pending gradient, mark the
    entry a past one (see ac_tape.leaf_grad) and forget it."""
    cdef ac_tape *t = v.cache_tape
    if t == NULL:
        return
    v.grad_value += t.leaf_grad[v.index]
    t.leaf_grad[v.index] = 0.0
    t.leaf_flags[v.index] &= ~AC_LEAF_CURRENT
    t.ndetached += 1
    v.cache_tape = NULL


cdef inline bint _same_number(double a, double b) noexcept:
    return a == b or (a != a and b != b)


cdef void _drop_grad_graph(Variable v) noexcept:
    """Forget the Variable a leaf's gradient was held as (grad_value stays)."""
    cdef PyObject *old = v.grad_obj
    v.grad_obj = NULL
    _xdecref(old)          # last: dropping a Variable may run code


cdef inline void _set_leaf_grad(Variable v, double g) noexcept:
    """Set .grad; for a leaf that includes what its current entry holds."""
    cdef PyObject *old = v.grad_obj
    v.grad_value = g
    v.grad_unknown = 0
    if v.cache_tape != NULL:
        v.cache_tape.leaf_grad[v.index] = 0.0
    v.grad_obj = NULL
    _xdecref(old)          # last: dropping a Variable may run code


cdef inline bint _is_stale(ac_tape *t, int64_t k) noexcept:
    """A past leaf entry whose leaf has been assigned a new value since, or
    one standing for a released Variable: no gradient may flow through it."""
    return (not t.leaf_flags[k] & AC_LEAF_CURRENT
            and (t.leaf_flags[k] & AC_LEAF_RELEASED
                 or (<Variable>t.leaf_obj[k]).version != t.leaf_version[k]))


cdef int _requires_grad_flag(object flag) except -1:
    """requires_grad as 0 or 1: a bool, a NumPy bool, or the ints 0 and 1
    (as torch, a string or None is an error, not a truth value)."""
    if flag is True or flag is False:
        return flag is True
    if type(flag) is int and (flag == 0 or flag == 1):
        return flag
    np = sys.modules.get("numpy")
    if np is not None and type(flag) is np.bool_:
        return 1 if flag else 0
    raise TypeError(f"requires_grad must be a bool, not {type(flag).__name__}")


cdef int _check_label(object name) except -1:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    return 0


cdef int _set_label(Variable v, object name) except -1:
    cdef PyObject *old = v.label
    _check_label(name)
    if name is None:
        v.label = NULL
    else:
        _incref(<PyObject *>name)
        v.label = <PyObject *>name
    _xdecref(old)
    return 0


def _rebuild(value, requires_grad, name, grad):
    cdef Variable v = Variable(value, requires_grad, name)
    v.grad_value = grad
    return v


cdef Variable _new_constant(double y):
    cdef Variable v = _alloc_variable()
    v.value = y
    v.grad_value = 0.0
    v.owner = NULL
    v.index = -1
    v.cache_tape = NULL
    v.version = 0
    v.kind = K_CONST
    v.grad_unknown = 0
    v.used = 0
    v.prev = NULL
    v.next = NULL
    v.label = NULL
    v.grad_obj = NULL
    return v


cdef inline Variable _new_node(Tape tape, ac_node i, double y):
    cdef Variable v = _alloc_variable()
    v.value = y
    v.grad_value = 0.0
    _incref(<PyObject *>tape)
    v.owner = <PyObject *>tape
    v.index = i
    v.cache_tape = NULL
    v.version = 0
    v.kind = K_NODE
    v.grad_unknown = 0
    v.used = 0
    v.label = NULL
    v.grad_obj = NULL
    v.prev = NULL
    v.next = tape.live_head
    if tape.live_head != NULL:
        (<Variable>tape.live_head).prev = <PyObject *>v
    tape.live_head = <PyObject *>v
    tape.live += 1
    return v
