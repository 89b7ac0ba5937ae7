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
    """Mark what v depends on (the caller clears the marks), or None for a
    leaf or constant."""
    cdef Tape tape
    if v.kind < K_NODE:
        return None
    tape = _owning_tape(v)
    _check_not_sweeping(tape, "walk a graph")
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
    cdef int64_t k
    if not isinstance(v, Variable):
        raise TypeError(f"leaves() takes a Variable, not {type(v).__name__}")
    var = v
    if var.kind == K_LEAF:
        return [var]
    tape = _reach(var, &reach)
    if tape is None:
        return []
    found = {}
    for k in range(reach.leaf_lo, reach.leaf_hi + 1):
        if tape.t.leaf_flags[k] & AC_LEAF_MARK:
            leaf = <object>tape.t.leaf_obj[k]
            found.setdefault(id(leaf), leaf)     # a leaf re-used after .data = ... has two entries
    ac_clear_marks(&tape.t, &reach, var.index)
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
        return type((<Tape>v.owner).functions[v.index]).__name__
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
        c = tape.t.consts[ac_operand_b(w)]
        return f"**{int(c) if c.is_integer() and -1e16 < c < 1e16 else c}"
    symbol = _MICROGRAD_SYMBOLS.get(op)
    return _op_name(v) if symbol is None else symbol


cdef set _prev_of(Variable v):
    """Variable._prev: the operands v was computed from, as micrograd's Value._prev."""
    cdef Tape tape
    cdef ac_code w
    cdef int op
    cdef const uint32_t *refs
    cdef uint32_t k
    if v.kind != K_NODE:
        return set()
    tape = _owning_tape(v)
    w = tape.t.code[v.index]
    op = ac_opcode(w)
    if ac_is_nary(op):
        refs = tape.t.args + ac_offset(w)
        return {_ref_object(tape, refs[k], v.index, k) for k in range(1, refs[0] + 1)}
    prev = {_ref_object(tape, <uint32_t>ac_operand_a(w), v.index, 1)}
    if op >= AC_ADD:
        prev.add(_ref_object(tape, <uint32_t>ac_operand_b(w), v.index, 2))
    elif op >= AC_ADDC and op != AC_POWC:     # micrograd: x**c has x alone as child, c in _op
        prev.add(_const_object(tape, tape.t.consts[ac_operand_b(w)], v.index, 2))
    return prev


cdef void _drop_objmap(Tape tape) noexcept:
    free(tape.objmap)
    tape.objmap = NULL
    tape.objmap_size = 0
    tape.adj_root = -1            # the adjoints are indexed by node too

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
    if tape.adj_lo <= i <= tape.adj_root:
        v.grad_value = tape.spare_adj[i]     # as if it had been alive during backward()
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

cdef object _ref_object(Tape tape, uint32_t ref, ac_node node, int position):
    if ref & AC_REF_CONST:
        return _const_object(tape, tape.t.consts[ref & ~AC_REF_CONST], node, position)
    if ref & AC_LEAF_REF:
        return <object>tape.t.leaf_obj[ref & ~AC_LEAF_REF]
    return _node_object(tape, ref)
