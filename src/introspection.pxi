# introspection.pxi -- grad modes and looking at recorded graphs.
#
# Holds: this thread's grad and anomaly switches (autograd_c.modes wraps
# them); leaves() and graph_size(); micrograd's graph fields (Variable._prev,
# Variable._op, Variable.op) and the node objects they hand out: one Variable
# per node through tape.objmap, constants per use through tape.const_objs,
# with the adjoints of the latest backward() where they are known.
# May touch: marks on the tape (always cleared before returning), objmap and
# const_objs.  Nothing here records or changes a gradient.

def _set_grad_enabled(bint flag):
    """Set this thread's grad mode; returns the previous one."""
    cdef ac_thread_state *ts = ac_this_thread()
    previous = bool(ts.grad_enabled)
    ts.grad_enabled = flag
    return previous


def is_grad_enabled():
    """True unless this thread is inside no_grad() / set_grad_enabled(False)."""
    return bool(ac_this_thread().grad_enabled)


def _set_anomaly(bint flag):
    """Set this thread's anomaly mode; returns the previous one."""
    cdef ac_thread_state *ts = ac_this_thread()
    previous = bool(ts.anomaly)
    ts.anomaly = flag
    return previous


def _is_anomaly_enabled():
    return bool(ac_this_thread().anomaly)


cdef Tape _reach(Variable v, ac_sweep_result *reach):
    """Mark what v depends on, or None for a leaf or constant.  The caller
    clears the marks before any Python code can run (a finalizer could
    compact or sweep, which use the marks)."""
    cdef Tape tape
    if v.kind < K_NODE:
        return None
    tape = _owning_tape(v)
    _check_not_busy(tape, "walk a graph")
    ac_mark_reachable(&tape.t, v.index, reach)
    return tape


def leaves(v):
    """The leaf Variables v depends on, each once, in order of first use.

    Examples
    --------
    >>> import autograd_c as ag
    >>> a, b, c = ag.Variable(1.0), ag.Variable(2.0), ag.Variable(3.0)
    >>> [x.data for x in ag.leaves(a * b + a)]
    [1.0, 2.0]
    """
    cdef Variable var
    cdef Tape tape
    cdef ac_sweep_result reach
    cdef int64_t k, n = 0
    cdef int64_t *entries = NULL
    if not isinstance(v, Variable):
        raise TypeError(f"leaves() takes a Variable, not {type(v).__name__}")
    var = v
    if var.kind == K_LEAF:
        return [var]
    if var.kind < K_NODE:
        return []
    tape = _reach(var, &reach)           # may raise: before anything is allocated
    entries = <int64_t *>malloc((tape.t.nleaves + 1) * sizeof(int64_t))
    if entries == NULL:
        ac_clear_marks(&tape.t, &reach, var.index)
        raise MemoryError()
    for k in range(reach.leaf_lo, reach.leaf_hi + 1):     # C only while the marks are set
        if tape.t.leaf_flags[k] & AC_LEAF_MARK and (<Variable>tape.t.leaf_obj[k]).kind != K_RELEASED:
            entries[n] = k
            n += 1
    ac_clear_marks(&tape.t, &reach, var.index)
    _pin(tape)                 # the leaf table stays as it is while the list is made
    try:
        found = {}
        for k in range(n):
            leaf = <object>tape.t.leaf_obj[entries[k]]
            found.setdefault(id(leaf), leaf)     # a leaf re-used after .data = ... has two entries
    finally:
        _unpin(tape)
        free(entries)
    return list(found.values())


def graph_size(v):
    """How many recorded operations v depends on, v included (0 for a leaf or constant).

    Examples
    --------
    >>> import autograd_c as ag
    >>> x = ag.Variable(2.0)
    >>> ag.graph_size((x * x).exp() + 1)
    3
    """
    cdef Variable var
    cdef Tape tape
    cdef ac_sweep_result reach
    cdef ac_node i, count = 0
    if not isinstance(v, Variable):
        raise TypeError(f"graph_size() takes a Variable, not {type(v).__name__}")
    var = v
    tape = _reach(var, &reach)
    if tape is None:
        return 0
    for i in range(reach.lo, var.index + 1):
        count += ac_is_marked(&tape.t, i)
    ac_clear_marks(&tape.t, &reach, var.index)
    return count


_MICROGRAD_SYMBOLS = {
    AC_ADD: "+", AC_ADDC: "+", AC_SUB: "-", AC_RSUBC: "-", AC_MUL: "*", AC_MULC: "*",
    AC_DIV: "/", AC_DIVC: "/", AC_RDIVC: "/", AC_RELU: "ReLU",
}


cdef str _op_name(Variable v):
    """Variable.op: the operation that produced v ('' for leaves and constants)."""
    if v.kind != K_NODE:
        return ""
    cdef int op = ac_opcode((<Tape>v.owner).t.code[v.index])
    if op == AC_CUSTOM:
        fn = (<Tape>v.owner).functions.get(v.index)   # absent only mid-compaction
        return "function" if fn is None else type(fn).__name__
    return ac_op_name(op).decode()


cdef object _micrograd_op(Variable v):
    """Variable._op: micrograd's name of the operation ('+', '*', '**2', 'ReLU', ...)."""
    cdef Tape tape
    cdef ac_code w
    cdef int op
    if v.kind != K_NODE:
        return ""
    tape = <Tape>v.owner
    w = tape.t.code[v.index]
    op = ac_opcode(w)
    if op == AC_POWC:
        c = tape.t.consts[ac_const_b(&tape.t, v.index)]
        return f"**{int(c) if c.is_integer() and -1e16 < c < 1e16 else c}"
    symbol = _MICROGRAD_SYMBOLS.get(op)
    return _op_name(v) if symbol is None else symbol


cdef set _prev_of(Variable v):
    """Variable._prev: the operands v was computed from, as micrograd's Value._prev."""
    cdef Tape tape
    cdef ac_code w
    cdef int op
    cdef int64_t k, m
    cdef ac_ref *refs = NULL
    if v.kind != K_NODE:
        return set()
    tape = _owning_tape(v)
    # Making the operand objects allocates (the garbage collector may run a
    # finalizer, which may record): the tape is pinned so no node moves, and
    # the operand references are copied first, as recording may move args.
    _pin(tape)
    try:
        w = tape.t.code[v.index]
        op = ac_opcode(w)
        if ac_is_nary(op):
            m = ac_nargs(&tape.t, v.index)
            refs = <ac_ref *>malloc((m + 1) * sizeof(ac_ref))
            if refs == NULL:
                raise MemoryError()
            for k in range(m):
                refs[k] = ac_arg(&tape.t, v.index, k)
            return {_ref_object(tape, refs[k - 1], v.index, k) for k in range(1, m + 1)}
        prev = {_ref_object(tape, ac_ref_a(&tape.t, v.index), v.index, 1)}
        if op >= AC_ADD:
            prev.add(_ref_object(tape, ac_ref_b(&tape.t, v.index), v.index, 2))
        elif op >= AC_ADDC and op != AC_POWC:     # micrograd: x**c has x alone as child, c in _op
            prev.add(_const_object(tape, tape.t.consts[ac_const_b(&tape.t, v.index)], v.index, 2))
        return prev
    finally:
        free(refs)
        _unpin(tape)


cdef void _drop_objmap(Tape tape) noexcept:
    free(tape.objmap)
    tape.objmap = NULL
    tape.objmap_size = 0

cdef object _node_object(Tape tape, ac_node i):
    """The Variable of node i: the live one, or a new one if none is alive.
    One object per node, so graph walkers see a node reached twice as one."""
    cdef PyObject *p
    cdef Variable v
    if tape.objmap == NULL or i >= tape.objmap_size:
        free(tape.objmap)
        tape.objmap = <PyObject **>calloc(tape.t.size + 1, sizeof(PyObject *))
        if tape.objmap == NULL:
            tape.objmap_size = 0
            raise MemoryError()
        tape.objmap_size = tape.t.size
        p = tape.live_head
        while p != NULL:
            tape.objmap[(<Variable>p).index] = p
            p = (<Variable>p).next
    if tape.objmap[i] != NULL:
        return <object>tape.objmap[i]
    v = _new_node(tape, i, tape.t.val[i])
    # as if it had been alive during the latest backward(): that pass's
    # adjoint, or None where it cannot be known
    v.grad_unknown = not _kept_adjoint(tape, i, &v.grad_value)
    tape.objmap[i] = <PyObject *>v
    return v

cdef object _const_object(Tape tape, double c, ac_node node, int position):
    """A constant Variable for one use of a constant (as micrograd makes
    one Value per use), the same object each time that use is asked for."""
    key = (node, position)
    v = tape.const_objs.get(key)
    if v is None:
        v = _new_constant(c)
        tape.const_objs[key] = v
    return v

cdef object _ref_object(Tape tape, ac_ref ref, ac_node node, int position):
    if ref & AC_CONST_BIT:
        return _const_object(tape, tape.t.consts[ref & ~AC_CONST_BIT], node, position)
    if ref & AC_LEAF_BIT:
        return <object>tape.t.leaf_obj[ref & AC_REF_INDEX]
    return _node_object(tape, <ac_node>ref)


# ---------------------------------------------------------------------------
# the latest backward()'s adjoints, for node objects made after it
# ---------------------------------------------------------------------------

cdef void _remember_pass(Tape tape, double *adj, ac_node lo, ac_node root) noexcept:
    """backward() over root just finished with these adjoints (adj[lo..root],
    the tape's kept buffer spare_adj, which stays until the next pass)."""
    _forget_pass(tape)
    tape.kept_root = root
    tape.kept_lo = lo
    tape.kept_adj = adj
    tape.kept_valid = True


cdef void _forget_pass(Tape tape) noexcept:
    if tape.kept_owned:
        free(tape.kept_adj)                  # a create_graph pass's own buffer
        tape.kept_owned = False
    tape.kept_adj = NULL
    tape.kept_root = -1
    tape.kept_valid = False


cdef void _forget_adjoints_reached(Tape tape, ac_sweep_result *reach, ac_node root) noexcept:
    """zero_grad() from root (marks set): the kept adjoints it reaches are 0 now."""
    cdef ac_node i
    if tape.kept_root < 0 or not tape.kept_valid:
        return
    for i in range(max(reach.lo, tape.kept_lo), min(root, tape.kept_root) + 1):
        if ac_is_marked(&tape.t, i):
            tape.kept_adj[i] = 0.0


cdef bint _kept_adjoint(Tape tape, ac_node i, double *out) except -1:
    """The latest backward()'s adjoint of node i into out; False if unknown."""
    out[0] = 0.0
    if tape.kept_root < 0:
        return i >= tape.known_from          # no pass since: 0, unless it predates a compaction
    if i > tape.kept_root:
        return True                          # recorded after the pass
    if not tape.kept_valid:
        return False
    if i >= tape.kept_lo:
        out[0] = tape.kept_adj[i]
    return True
