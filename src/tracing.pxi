# tracing.pxi -- recording a Python function for replay: guards and concrete values.
#
# Holds: the _Trace object.  ag.compile records the user's function inside
# one (autograd_c/compiled.py); ag.tracing() hands one out as a context
# manager.  While it is on, this thread's ac_thread_state.trace points at it
# and the tape is pinned (no compaction or reset: node and leaf-entry
# indices stay what they were until the trace is compiled).  Every
# comparison or truth test of a Variable that may depend on the inputs is
# recorded as a guard (_trace_guard), and turning such a Variable into a
# Python value (float(v), v.data, formatting, no_grad arithmetic, detach)
# raises ConcretizationError (_check_concrete).  The compiler that turns a
# trace into a program is in replay.pxi.
# May touch: this thread's ac_thread_state.trace, the tape's pin count, and
# the leaf entries of the inputs (each trace starts them afresh).  The value
# reads and comparisons of variable.pxi and record.pxi call in here only
# when a trace is on; the recording path never does.

class ConcretizationError(TypeError):
    """A traced function turned a Variable that depends on its inputs into a
    Python value (``float(v)``, ``v.data``, ``v.item()``, ``int(v)``,
    formatting, NumPy conversion, ``v.detach()``, arithmetic under
    ``no_grad()``), or ran ``backward()``/``grad()``.

    ``ag.compile`` records the function once and replays the recording in C
    for new inputs; a Python number taken from a Variable would stay what it
    was while tracing, so the replay could not follow it.  Keep the value a
    Variable (``ag.relu``, ``ag.maximum``, ``ag.abs`` ... replay exactly);
    comparisons such as ``if x > 0:`` are allowed: they become guards.  Like
    JAX's ``ConcretizationTypeError``, it is a ``TypeError``.
    """


class GuardError(RuntimeError):
    """A replay whose inputs flip a branch taken while tracing.

    Raised by compiled functions that cannot trace again: those made by
    ``ag.compile_graph``, and ``ag.compile(..., retrace=False)``.  (A
    function compiled from Python code with ``retrace=True``, the default,
    traces the other branch instead.)

    Attributes
    ----------
    guard : int
        The guard's number: comparisons count from 0 in the order the trace
        made them.
    row : int
        The first row (of a batched call; 0 otherwise) that flips it.
    comparison : str
        The comparison, e.g. ``'>'`` or ``'bool'``.
    where : str
        ``file:line`` of the code that made it.
    recorded, now : tuple of float
        The two operands' values while tracing and in this replay.
    """

    def __init__(self, message, guard=-1, row=0, comparison="", where="", recorded=(), now=()):
        super().__init__(message)
        self.guard, self.row, self.comparison, self.where = guard, row, comparison, where
        self.recorded, self.now = recorded, now


# guard kinds, numbered as enum ac_guard_kind in replay.h (_compare's `how` is the first four)
_GUARD_SYMBOLS = ("<", "<=", ">", ">=", "==", "!=", "bool")
cdef enum:
    GUARD_TRUTH = 6

_PACKAGE_DIR = __file__.rpartition("/")[0] + "/" if "/" in __file__ else ""


@cython.final
cdef class _Trace:
    """The state of one trace on this thread (internal; see ag.tracing).

    ``inputs`` is the list of distinct leaf Variables that will be the
    compiled function's inputs, in input order, or None when they are not
    known yet (``ag.tracing()``: every leaf and recorded Variable counts as
    possibly depending on them).
    """
    cdef Tape tape
    cdef dict positions           # id(input leaf) -> input position; None: unknown inputs
    cdef readonly list input_leaves
    cdef readonly list guards     # guard records, see _trace_guard
    cdef int64_t leaf_start       # leaf entries below this were made before the trace: constants
    cdef ac_node node_start       # nodes below this were recorded before it
    cdef void *previous           # the thread's trace before this one (nested traces)
    cdef unsigned long thread_id
    cdef bint on, pinned
    cdef list versions            # the inputs' versions at the start

    def __init__(self, inputs=None):
        self.guards = []
        self.input_leaves = None if inputs is None else list(inputs)
        self.positions = None
        if inputs is not None:
            self.positions = {}
            for j, leaf in enumerate(self.input_leaves):
                if type(leaf) is not Variable or (<Variable>leaf).kind != K_LEAF:
                    raise TypeError(f"input {j} of a trace must be a leaf Variable")
                if id(leaf) in self.positions:
                    raise ValueError(f"the same Variable is input {self.positions[id(leaf)]} and input {j}")
                self.positions[id(leaf)] = j

    def start(self):
        """Begin: pin this thread's tape, give the inputs fresh leaf entries,
        and make this the thread's trace."""
        cdef Variable leaf
        cdef ac_thread_state *ts
        if self.on or self.pinned:
            raise RuntimeError("this trace has already started")
        tape = _thread_tape()
        _check_not_busy(tape, "trace a function")
        if self.input_leaves is not None:
            for leaf in self.input_leaves:
                _check_settable(leaf, "trace with this leaf as an input")
        self.tape = tape
        _pin(tape)
        self.pinned = True
        self.leaf_start = tape.t.nleaves
        self.node_start = tape.t.size
        self.versions = []
        if self.input_leaves is not None:
            for leaf in self.input_leaves:
                if leaf.cache_tape == &tape.t:
                    _detach(leaf)        # its next use makes an entry at or above leaf_start
                self.versions.append(leaf.version)
        ts = ac_this_thread()
        self.previous = ts.trace
        self.thread_id = PyThread_get_thread_ident()
        ts.trace = <void *>self
        self.on = True
        return self

    def stop(self):
        """End recording: the thread's previous trace (usually none) is back."""
        cdef ac_thread_state *ts
        if not self.on:
            return
        if PyThread_get_thread_ident() != self.thread_id:
            raise RuntimeError("a trace must be stopped by the thread that started it")
        ts = ac_this_thread()
        ts.trace = self.previous
        self.previous = NULL
        self.on = False

    def close(self):
        """Unpin the tape (after compiling: indices may change from here)."""
        self.stop()
        if self.pinned:
            self.pinned = False
            _unpin(self.tape)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if self.on and PyThread_get_thread_ident() == self.thread_id:
            ac_this_thread().trace = self.previous
        if self.pinned and self.tape is not None:
            self.tape.pinned -= 1       # no settling here: a pending reset waits for the next one
            self.tape._set_limit()

    cdef bint _may_depend(self, Variable v) noexcept:
        """v is a leaf or recorded Variable of this trace (cheap, conservative)."""
        if v.kind == K_LEAF:
            return self.positions is None or id(v) in self.positions
        if v.kind == K_NODE:
            return <PyObject *>self.tape == v.owner and (self.positions is None or v.index >= self.node_start)
        return False

    cdef int _depends(self, Variable v) except -1:
        """1 if v's value depends on an input of this trace (exact for recorded
        Variables: a walk of v's graph), else 0."""
        cdef ac_sweep_result reach
        cdef int64_t k, n = 0, lo
        cdef int64_t *entries
        cdef ac_tape *t
        if not self._may_depend(v):
            return 0
        if v.kind == K_LEAF or self.positions is None or self.tape.t.busy:
            return 1
        t = &self.tape.t
        entries = <int64_t *>malloc((t.nleaves + 1) * sizeof(int64_t))
        if entries == NULL:
            return 1
        ac_mark_reachable(t, v.index, &reach)
        lo = max(reach.leaf_lo, self.leaf_start)
        for k in range(lo, reach.leaf_hi + 1):        # C only while the marks are set
            if t.leaf_flags[k] & AC_LEAF_MARK:
                entries[n] = k
                n += 1
        ac_clear_marks(t, &reach, v.index)
        try:
            for k in range(n):
                if id(<object>t.leaf_obj[entries[k]]) in self.positions:
                    return 1
            return 0
        finally:
            free(entries)


def tracing():
    """A context in which this thread records comparisons as guards, as
    ``ag.compile`` does while it traces a function.

    Inside it, every comparison or truth test of a leaf or recorded
    Variable (``if x > 0:``, ``max(a, b)``, ``bool(v)``) is recorded as a
    guard, and reading a Variable's value (``float(v)``, ``v.data``,
    formatting, ``no_grad`` arithmetic) raises
    :class:`ConcretizationError`.  Give the trace's ``guards`` to
    :func:`compile_graph`: a replay whose inputs flip one then raises
    :class:`GuardError` instead of returning the other branch's numbers.

    Examples
    --------
    >>> import autograd_c as ag
    >>> x = ag.Variable(2.0)
    >>> with ag.tracing() as tr:
    ...     y = x * x if x > 0 else -x
    >>> f = ag.compile_graph(y, [x], guards=tr.guards)
    >>> f(3.0)
    9.0
    """
    return _Trace(None)


cdef tuple _caller_location():
    """(file, line) of the innermost frame outside this package (Cython
    functions make no frames, so that is the code that compared)."""
    f = sys._getframe(0)
    while f is not None and _PACKAGE_DIR and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    if f is None:
        return ("?", 0)
    return (f.f_code.co_filename, f.f_lineno)


cdef int _trace_guard(object a, object b, int kind, bint outcome) except -1:
    """A comparison (or, for GUARD_TRUTH, bool(a)) made while tracing:
    record it as a guard if an operand may depend on the inputs.  A guard
    record: (kind, outcome, a, b, a value, b value, file, line), a and b the
    Variables compared (None for a number)."""
    cdef _Trace tr = <_Trace>ac_this_thread().trace
    cdef double x = 0.0, z = 0.0
    cdef bint ta = type(a) is Variable and tr._may_depend(<Variable>a)
    cdef bint tb = kind != GUARD_TRUTH and type(b) is Variable and tr._may_depend(<Variable>b)
    if not (ta or tb):
        return 0
    if type(a) is Variable:
        x = (<Variable>a).value
    else:
        _number(a, &x)
    if kind != GUARD_TRUTH:
        if type(b) is Variable:
            z = (<Variable>b).value
        else:
            _number(b, &z)
    filename, line = _caller_location()
    tr.guards.append((kind, outcome, a if ta else None, b if tb else None, x, z, filename, line))
    return 0


cdef int _check_concrete(Variable v, str what) except -1:
    """Called with a trace on: refuse to turn v into a Python value when it
    depends on the inputs."""
    cdef _Trace tr = <_Trace>ac_this_thread().trace
    if tr._depends(v):
        filename, line = _caller_location()
        raise ConcretizationError(
            f"{what} needs the value of a Variable that depends on the inputs of the function "
            f"being traced ({filename}:{line}): a replay computes new values in C and cannot follow "
            "a Python number taken here. Keep it a Variable (ag.relu, ag.maximum, ag.abs ... replay "
            "exactly); comparisons such as `if x > 0:` are fine, they become guards. Read values "
            "outside the compiled function, or return them as outputs")
    return 0


cdef int _check_untracked(object a, int ka, object b, int kb, str what) except -1:
    """An operation that records nothing (under no_grad) while tracing: its
    result would be a constant in the replay, so its operands must not
    depend on the inputs."""
    if ka != K_CONST and type(a) is Variable:
        _check_concrete(<Variable>a, what)
    if kb != K_CONST and type(b) is Variable:
        _check_concrete(<Variable>b, what)
    return 0


cdef Variable _untracked(double y, object a, int ka, object b, int kb, str what):
    """The constant result of an operation that records nothing (constant
    operands, or grad disabled).  While tracing, a result computed under
    no_grad from Variables that depend on the inputs would be a constant in
    the replay: refused.  (Out of line, so the recording path stays as it
    was: the recorders only swap _new_constant for this on their constant
    branch.)"""
    if (ka | kb) != K_CONST and ac_this_thread().trace != NULL:
        _check_untracked(a, ka, b, kb, what)
    return _new_constant(y)


cdef int _refuse_while_tracing(str what) except -1:
    if ac_this_thread().trace != NULL:
        raise ConcretizationError(
            f"{what} while tracing a function for ag.compile: its gradients would be Python "
            "numbers the replay cannot follow; ask the compiled function for them instead "
            "(f.value_and_grad, f.backward)")
    return 0


def _tracing_now():
    """True while this thread is tracing (ag.compile inlines nested compiled calls)."""
    return ac_this_thread().trace != NULL
