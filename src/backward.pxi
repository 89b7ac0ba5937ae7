# backward.pxi -- the reverse sweep and the hand-over of gradients.
#
# Holds: _sweep (the C sweep; callers hold the tape busy, so a Function's
# backward or a finalizer that runs meanwhile cannot change it), _deliver (leaf gradients after a sweep, the stale-leaf rule),
# detect_anomaly's backward check, _keep_adjoints (recorded Variables' .grad),
# and the bodies of Variable.backward(), Variable.zero_grad() and grad().
# May touch: the adjoint buffer from Tape._adjoints, leaf_grad and leaf flags,
# live Variables' grad_value.  A failed backward() leaves every leaf gradient
# as it was before the call.

cdef int _sweep(Tape tape, double *adj, ac_node root, double seed, int deliver,
                ac_sweep_result *swept) except -1:
    """ac_sweep.  The caller holds the tape busy (_enter_busy) and has set
    tape.fn_results, so a Function's backward runs once per pass even when
    the exact sweep redoes the fast one or detect_anomaly searches again."""
    if ac_sweep(&tape.t, adj, adj + root + 1, root, seed, deliver, swept) < 0:
        tape._raise_sweep_error()
    return 0


cdef int _poll_interrupt(void *ctx) noexcept:
    """ac_tape.poll: between blocks of a long sweep, run Python's signal
    handlers (Ctrl-C raises KeyboardInterrupt there); stop if one raised."""
    try:
        PyErr_CheckSignals()
    except BaseException as e:
        (<Tape>ctx).sweep_error = e
        return 1
    return 0


cdef int _deliver(Tape tape, double *leaf_adj, ac_sweep_result *swept, ac_node root,
                  dict wanted, list out) except -1:
    """Finish handing the leaf entries the sweep reached their gradients:
    current entries keep theirs in leaf_grad, past entries pass theirs to the
    leaf object; for grad(), they go to out[wanted[id(leaf)]] instead.

    First, a past entry whose leaf was assigned a new value since it was
    recorded makes backward() fail, with every gradient as it was: the
    gradient would be for a value that no longer exists.  (After a fast
    sweep, an entry whose gradient did not change may be unreachable from
    the output; only then is reachability computed, to tell the two apart.)
    """
    cdef ac_tape *t = &tape.t
    cdef int64_t k
    cdef ac_sweep_result reach
    cdef bint exact = swept.exact, delivered = swept.delivered, reach_known = False
    cdef bint changed
    if delivered and t.ndetached == 0:
        return 0                            # everything went to leaf_grad; nothing can be stale
    try:
        for k in range(swept.leaf_lo, swept.leaf_hi + 1):
            if t.leaf_flags[k] & AC_LEAF_CURRENT:
                continue
            if exact and not t.leaf_flags[k] & AC_LEAF_MARK:
                continue                    # not reached
            if not _is_stale(t, k):
                continue
            if not exact:
                # delivered: leaf_adj holds the old leaf_grad (0 for a past entry)
                changed = t.leaf_grad[k] != 0.0 if delivered else leaf_adj[k] != 0.0
                if not changed:
                    if not reach_known:
                        ac_mark_reachable(t, root, &reach)
                        reach_known = True
                    if not t.leaf_flags[k] & AC_LEAF_MARK:
                        continue            # not part of this graph
            if delivered:
                ac_undo_delivery(t, leaf_adj, swept.leaf_lo, swept.leaf_hi)
            _raise_stale(t, k)

        for k in range(swept.leaf_lo, swept.leaf_hi + 1):
            # A past entry hands its gradient to the leaf object, unless the leaf no
            # longer requires grad (as torch's AccumulateGrad skips such a leaf).
            if delivered:
                if not t.leaf_flags[k] & AC_LEAF_CURRENT:
                    if (<Variable>t.leaf_obj[k]).kind == K_LEAF:
                        (<Variable>t.leaf_obj[k]).grad_value += t.leaf_grad[k]
                    t.leaf_grad[k] = 0.0
                continue
            if exact and not t.leaf_flags[k] & AC_LEAF_MARK:
                continue
            if wanted is not None:
                slot = wanted.get(id(<object>t.leaf_obj[k]))
                if slot is not None:
                    out[slot] += leaf_adj[k]
            elif t.leaf_flags[k] & AC_LEAF_CURRENT:
                t.leaf_grad[k] += leaf_adj[k]
            elif (<Variable>t.leaf_obj[k]).kind == K_LEAF:
                (<Variable>t.leaf_obj[k]).grad_value += leaf_adj[k]
    finally:
        if reach_known:
            ac_clear_marks(t, &reach, root)
        if exact:
            for k in range(swept.leaf_lo, swept.leaf_hi + 1):
                t.leaf_flags[k] &= ~AC_LEAF_MARK
    return 0


cdef int _check_backward(Tape tape, double *adj, ac_sweep_result *swept, ac_node root,
                         double seed) except -1:
    """detect_anomaly for backward(): if the sweep produced an inf or nan,
    raise FloatingPointError naming the first operation whose backward made one."""
    cdef ac_tape *t = &tape.t
    cdef double *leaf_adj = adj + root + 1
    cdef ac_node i, found
    cdef int64_t k
    cdef bint bad = not isfinite(seed)
    for i in range(swept.lo, root + 1):
        bad |= not isfinite(adj[i])
    for k in range(swept.leaf_lo, swept.leaf_hi + 1):
        if not swept.exact or t.leaf_flags[k] & AC_LEAF_MARK:
            bad |= not isfinite(leaf_adj[k])
    if not bad:
        return 0
    if swept.exact:
        for k in range(swept.leaf_lo, swept.leaf_hi + 1):
            t.leaf_flags[k] &= ~AC_LEAF_MARK
    if not isfinite(seed):
        raise FloatingPointError(f"detect_anomaly: backward() was given the gradient {seed!r}")
    found = ac_find_anomaly(t, adj, leaf_adj, root, seed)   # meets Functions again: results are kept
    if found == -2:
        tape._raise_sweep_error()
    if found < 0:
        raise FloatingPointError("detect_anomaly: backward() produced a non-finite gradient")
    code = t.code[found]
    op = ac_opcode(code)
    if op == AC_CUSTOM:
        raise FloatingPointError(
            f"detect_anomaly: {type(tape.functions[found]).__name__}.backward() produced a "
            f"non-finite gradient (its output was {t.val[found]!r})")
    if ac_is_nary(op):
        inputs = ""
    elif op >= AC_ADD:
        inputs = f"{_ref_value(t, ac_ref_a(t, found))!r}, {_ref_value(t, ac_ref_b(t, found))!r}"
    elif op >= AC_ADDC:
        inputs = f"{_ref_value(t, ac_ref_a(t, found))!r}, {t.consts[ac_const_b(t, found)]!r}"
    else:
        inputs = f"{_ref_value(t, ac_ref_a(t, found))!r}"
    raise FloatingPointError(
        f"detect_anomaly: the backward of {ac_op_name(op).decode()}({inputs}) produced a "
        f"non-finite gradient (the result was {t.val[found]!r})")


cdef inline double _ref_value(ac_tape *t, ac_ref ref) noexcept:
    if ref & AC_LEAF_BIT:
        return t.leaf_val[ref & AC_REF_INDEX]
    return t.val[ref]


cdef void _keep_adjoints(Tape tape, double *adj, ac_node lo, ac_node root) noexcept:
    """Each live recorded Variable keeps its adjoint from this pass as .grad
    (0 if the output does not depend on it), so the buffer can go."""
    cdef PyObject *p = tape.live_head
    cdef ac_node i
    while p != NULL:
        i = (<Variable>p).index
        (<Variable>p).grad_value = adj[i] if lo <= i <= root else 0.0
        (<Variable>p).grad_unknown = 0
        p = (<Variable>p).next


cdef int _raise_stale(ac_tape *t, int64_t k) except -1:
    """backward() reached leaf entry k, which no longer stands for a value."""
    cdef Variable v = <Variable>t.leaf_obj[k]
    if t.leaf_flags[k] & AC_LEAF_RELEASED:
        raise RuntimeError(
            "this graph uses a Variable whose own graph was released because a leaf it depended "
            "on was assigned a new value (leaf.data = ...) after it was recorded; its value is "
            "still usable, but no gradient flows through it: record the expression again from "
            "the current values")
    label = "" if v.label == NULL else f" {<object>v.label!r}"
    raise RuntimeError(
        f"a leaf{label} of this graph was assigned a new value (leaf.data = ...) after "
        "the graph was recorded, so its gradient would be for a value that no longer "
        "exists; record the expression again from the current values")


cdef int _backward(Variable v, object gradient) except -1:
    """Variable.backward(): seed v with `gradient`, sweep, hand leaves their gradients."""
    cdef double seed = _real(gradient, "backward() gradient")     # may run Python code: first
    cdef Tape tape
    cdef ac_node root
    cdef double *adj
    cdef ac_sweep_result swept
    _check_settable(v, "call backward()")
    _refuse_while_tracing("backward()")
    if v.kind == K_CONST:
        raise RuntimeError(
            "backward() on a Variable that does not require grad: it is a constant "
            "(requires_grad=False, computed under no_grad(), or from constants only)")
    if v.kind == K_LEAF:
        v.grad_value += seed
        return 0
    tape = _owning_tape(v)
    fn_results = {} if tape.functions else None    # may run a finalizer (which may compact)
    # Busy from here: the tape cannot change, so the root index and the
    # buffer sizes read below stay right.
    _enter_busy(tape)
    try:
        tape.fn_results = fn_results
        if v.kind != K_NODE:
            _owning_tape(v)                        # released meanwhile: says so
        root = v.index
        adj = tape._adjoints(root + 1 + tape.t.nleaves, False)
        # detect_anomaly inspects the gradients before any is handed over
        _sweep(tape, adj, root, seed, not ac_this_thread().anomaly, &swept)
        if ac_this_thread().anomaly:
            _check_backward(tape, adj, &swept, root, seed)
        _deliver(tape, adj + root + 1, &swept, root, None, None)
        _keep_adjoints(tape, adj, swept.lo, root)
        _remember_pass(tape, adj, swept.lo, root)
    finally:
        tape.fn_results = None
        _leave_busy(tape)
    return 0


cdef int _zero_grad(Variable v) except -1:
    """Variable.zero_grad(): zero v's .grad and that of every leaf v depends on."""
    cdef Tape tape
    cdef ac_node root, i
    cdef ac_sweep_result reach
    cdef int64_t k
    cdef PyObject *p
    cdef Variable leaf
    if v.kind != K_NODE:
        v.grad = 0.0
        return 0
    tape = _owning_tape(v)
    _check_not_busy(tape, "call zero_grad()")
    _enter_busy(tape)
    root = v.index
    ac_mark_reachable(&tape.t, root, &reach)
    for k in range(reach.leaf_lo, reach.leaf_hi + 1):
        leaf = <Variable>tape.t.leaf_obj[k]
        if tape.t.leaf_flags[k] & AC_LEAF_MARK and leaf.kind == K_LEAF:
            _set_leaf_grad(leaf, 0.0)
    p = tape.live_head
    while p != NULL:
        if reach.lo <= (<Variable>p).index <= root and ac_is_marked(&tape.t, (<Variable>p).index):
            (<Variable>p).grad_value = 0.0
        p = (<Variable>p).next
    _forget_adjoints_reached(tape, &reach, root)
    ac_clear_marks(&tape.t, &reach, root)
    _leave_busy(tape)
    return 0


def grad(output, inputs, create_graph=False):
    """d(output)/d(input) for each input, as a list of floats.

    Unlike backward(), touches no ``.grad``.  An input that output does
    not depend on gets 0.0.

    With ``create_graph=True`` the gradients are Variables: the backward
    pass is recorded as operations on the tape, so they can be
    differentiated again, to any order, as with
    ``torch.autograd.grad(..., create_graph=True)`` (a gradient that
    depends on no Variable is a constant Variable).

    Examples
    --------
    >>> import autograd_c as ag
    >>> x, y = ag.Variable(3.0), ag.Variable(4.0)
    >>> ag.grad(x * y, [x, y])
    [4.0, 3.0]
    >>> (dx,) = ag.grad(x ** 3, [x], create_graph=True)    # 3 x**2
    >>> (ddx,) = ag.grad(dx, [x], create_graph=True)       # 6 x
    >>> dx.data, ddx.data, ag.grad(ddx, [x])
    (27.0, 18.0, [6.0])
    """
    cdef Variable out, v
    cdef Tape tape
    cdef double *adj
    cdef ac_node root
    cdef ac_sweep_result swept
    cdef Py_ssize_t j
    if not isinstance(output, Variable):
        raise TypeError(f"grad() output must be a Variable, not {type(output).__name__}")
    inputs = list(inputs)
    for j, x in enumerate(inputs):
        if not isinstance(x, Variable):
            raise TypeError(f"grad() inputs must be Variables, but input {j} is {type(x).__name__}")
    out = output
    _check_idle("call grad()")
    _refuse_while_tracing("ag.grad()")
    if create_graph:
        return _grad_graph(out, inputs, 1.0)
    result = [0.0] * len(inputs)
    if out.kind == K_CONST:
        raise RuntimeError("grad() of a Variable that does not require grad (a constant)")
    if out.kind == K_LEAF:
        return [1.0 if x is out else 0.0 for x in inputs]
    tape = _owning_tape(out)
    fn_results = {} if tape.functions else None
    _enter_busy(tape)                   # as in _backward
    try:
        tape.fn_results = fn_results
        if out.kind != K_NODE:
            _owning_tape(out)
        root = out.index
        adj = tape._adjoints(root + 1 + tape.t.nleaves, True)
        _sweep(tape, adj, root, 1.0, 0, &swept)
        if ac_this_thread().anomaly:
            _check_backward(tape, adj, &swept, root, 1.0)
        wanted = {}
        for j, x in enumerate(inputs):
            v = x
            if v.kind == K_LEAF:
                wanted[id(v)] = j
            elif v.kind == K_NODE and v.owner == <PyObject *>tape and swept.lo <= v.index <= root:
                result[j] = adj[v.index]
        _deliver(tape, adj + root + 1, &swept, root, wanted, result)
        # several inputs may be the same leaf
        for j, x in enumerate(inputs):
            v = x
            if v.kind == K_LEAF and wanted[id(v)] != j:
                result[j] = result[wanted[id(v)]]
    finally:
        tape.fn_results = None
        _leave_busy(tape)
    return result
