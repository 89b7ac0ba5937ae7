# kernels.pxi -- whole-layer and whole-optimiser kernels in C.
#
# Holds: _dense (a dense layer act(b + W.x) recorded straight into the tape's
# arrays, one dot node and one activation node per neuron) for autograd_c.nn,
# and _sgd_step / _adam_step (torch.optim's arithmetic on leaf Variables) for
# autograd_c.optim.
# May touch: the tape's arrays (after _reserve/ac_reserve_args), leaf values
# through _set_value.  Inputs are user lists: converting an item may run
# Python code, so every check and conversion happens before recording.

cdef int _activation_op(object activation) except -2:
    if activation is None:
        return -1
    if activation == "relu":
        return AC_RELU
    if activation == "tanh":
        return AC_TANH
    if activation == "sigmoid":
        return AC_SIGMOID
    raise ValueError(f"activation must be None, 'relu', 'tanh' or 'sigmoid', not {activation!r}")


cdef inline int64_t _ref_of(Tape tape, Variable v) except -1:
    """The n-ary operand of any Variable, in the tape's layout (constants
    go to the pool)."""
    if v.kind == K_CONST:
        return <int64_t>(tape.t.const_flag | <uint64_t>_const(tape, v.value))
    return _operand(tape, v, v.kind)


cdef int _check_layer(list rows, list biases, Py_ssize_t nout, Py_ssize_t nin) except -1:
    """rows must be nout lists of nin Variables, biases nout Variables.
    Returns 1 if any of them requires grad, else 0."""
    cdef Py_ssize_t j, k
    cdef list row
    cdef bint record = False
    if len(rows) != nout or len(biases) != nout:
        raise ValueError(f"{len(rows)} weight rows but {len(biases)} biases")
    for j in range(nout):
        row = rows[j]
        if len(row) != nin:
            raise ValueError(f"a neuron with {len(row)} weights was given {nin} inputs")
        for k in range(nin):
            if type(row[k]) is not Variable:
                raise TypeError(f"layer weights must be Variables, not {type(row[k]).__name__}")
            record |= (<Variable>row[k]).kind != K_CONST
        if type(biases[j]) is not Variable:
            raise TypeError(f"layer biases must be Variables, not {type(biases[j]).__name__}")
        record |= (<Variable>biases[j]).kind != K_CONST
    return record


def _dense(list rows, list biases, x, activation):
    """act(b_j + w_j . x) for each row w_j of weights: one dot node (bias
    included, summed as b + w0*x0 + w1*x1 + ...) and one activation node
    per output.  rows: lists of Variables; x: Variables or numbers.
    Returns a list of Variables."""
    cdef Py_ssize_t nout, nin, j, k, width
    cdef int act = _activation_op(activation)
    cdef list xs = list(x)       # a private copy: converting an item may run code that changes x
    cdef list row, out
    cdef double *xv = NULL
    cdef uint8_t *xk = NULL
    cdef uint64_t *xref = NULL
    cdef uint32_t *args32
    cdef double y
    cdef bint record = False
    cdef Tape tape
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int64_t offset
    cdef uint64_t one
    cdef ac_node first
    cdef Py_ssize_t passes
    cdef Variable w
    cdef bint marking = False            # operands marked used, Variables not all made yet

    nin = len(xs)
    width = 2 * nin + 2                  # operand references per dot node
    if width >= AC_NARROW_CONST:
        raise ValueError(f"a layer takes at most {AC_NARROW_CONST // 2 - 2:,} inputs")
    xv = <double *>malloc((nin + 1) * sizeof(double))
    xk = <uint8_t *>malloc(nin + 1)
    xref = <uint64_t *>malloc((nin + 1) * sizeof(uint64_t))
    if xv == NULL or xk == NULL or xref == NULL:
        free(xv); free(xk); free(xref)
        raise MemoryError()
    try:
        # Python code may run at: converting an input (its __float__), any
        # allocation (the garbage collector's finalizers) and a compaction.
        # Each may change rows and biases, so they are checked after the last
        # of these, and from there to the last node recorded nothing runs.
        for k in range(nin):
            if type(xs[k]) is not Variable:
                if not _number(xs[k], &xv[k]):
                    raise TypeError(
                        f"a layer takes Variables or real numbers, but input {k} is "
                        f"{type(xs[k]).__name__}")
                xk[k] = K_CONST
        nout = len(rows)
        out = [None] * nout
        tape = _thread_tape()
        for k in range(nin):
            if type(xs[k]) is Variable:
                xv[k] = (<Variable>xs[k]).value
                xk[k] = (<Variable>xs[k]).kind
                record |= xk[k] != K_CONST
        record |= _check_layer(rows, biases, nout, nin)
        if not record or not ts.grad_enabled:
            if ts.trace != NULL and record:
                for k in range(nin):
                    _check_untracked(xs[k], xk[k], None, K_CONST, "a layer under no_grad()")
                for j in range(nout):
                    _check_untracked(biases[j], (<Variable>biases[j]).kind, None, K_CONST,
                                     "a layer under no_grad()")
                    for w in rows[j]:
                        _check_untracked(w, w.kind, None, K_CONST, "a layer under no_grad()")
            for j in range(nout):
                row = rows[j]
                y = (<Variable>biases[j]).value
                for k in range(nin):
                    y += (<Variable>row[k]).value * xv[k]
                out[j] = _new_constant(y if act < 0 else ac_unary_value(act, y))
            return out

        for k in range(nin):
            if xk[k] == K_NODE:
                _tape_for(xs[k], xk[k], None, K_CONST)
        for j in range(nout):
            row = rows[j]
            for k in range(nin):
                if (<Variable>row[k]).kind == K_NODE:
                    _tape_for(row[k], (<Variable>row[k]).kind, None, K_CONST)
            if (<Variable>biases[j]).kind == K_NODE:
                _tape_for(biases[j], (<Variable>biases[j]).kind, None, K_CONST)
        passes = tape.passes
        tape._make_room(2 * nout, nout * (width + 1))
        if ac_reserve_args(&tape.t, nout * (width + 1)) < 0:
            raise MemoryError("out of memory growing the operand lists of the tape")
        if tape.passes != passes:
            _check_layer(rows, biases, nout, nin)     # a finalizer may have changed them
        # operands only now: compaction above renumbers nodes.  The layout
        # stays as _make_room left it until the last node is pushed, so a
        # narrow tape gets its 32-bit words written directly.
        marking = True
        for k in range(nin):
            xref[k] = (tape.t.const_flag | <uint64_t>_const(tape, xv[k]) if xk[k] == K_CONST
                       else <uint64_t>_operand(tape, xs[k], xk[k]))
        one = tape.t.const_flag | <uint64_t>_const(tape, 1.0)
        first = tape.t.size
        for j in range(nout):
            row = rows[j]
            w = <Variable>biases[j]
            offset = tape.t.nargs
            y = 0.0 + w.value              # b, then each w*x (micrograd's order), from 0.0 as
                                           # the dot node's own formula sums
            if tape.t.wargs == NULL:
                args32 = tape.t.args + offset
                args32[0] = <uint32_t>width
                args32[1] = <uint32_t>_ref_of(tape, w)
                args32[2] = <uint32_t>one
                for k in range(nin):
                    w = <Variable>row[k]
                    args32[3 + 2 * k] = <uint32_t>_ref_of(tape, w)
                    args32[4 + 2 * k] = <uint32_t>xref[k]
                    y += w.value * xv[k]
            else:
                ac_set_word(&tape.t, offset, width)
                ac_set_word(&tape.t, offset + 1, <uint64_t>_ref_of(tape, w))
                ac_set_word(&tape.t, offset + 2, one)
                for k in range(nin):
                    w = <Variable>row[k]
                    ac_set_word(&tape.t, offset + 3 + 2 * k, <uint64_t>_ref_of(tape, w))
                    ac_set_word(&tape.t, offset + 4 + 2 * k, xref[k])
                    y += w.value * xv[k]
            tape.t.nargs = offset + 1 + width
            if ts.anomaly and not isfinite(y):
                _anomaly(AC_DOT, y, ())
            ac_push_nary(&tape.t, AC_DOT, offset, y)
            if act >= 0:
                y = ac_unary_value(act, tape.t.val[tape.t.size - 1])
                if ts.anomaly and not isfinite(y):
                    _anomaly(act, y, (tape.t.val[tape.t.size - 1],))
                ac_push_op(&tape.t, act, <uint64_t>(tape.t.size - 1), 0, y)
        tape.limit -= (nout * (width + 1) * _arg_bytes(tape)) // NODE_BYTES
        # Variables last: every node is on the tape before any object is made
        for j in range(nout):
            k = first + (2 * j + 1 if act >= 0 else j)
            out[j] = _new_node(tape, k, tape.t.val[k])
        marking = False
        return out
    finally:
        if marking:       # failed midway: nodes without Variables, operands marked used
            _recording_failed(tape)
        free(xv)
        free(xk)
        free(xref)


# ---------------------------------------------------------------------------
# optimiser kernels (the classes are in autograd_c.optim)
# ---------------------------------------------------------------------------

cdef inline double _leaf_grad(Variable v) noexcept:
    if v.cache_tape != NULL:
        return v.grad_value + v.cache_tape.leaf_grad[v.index]
    return v.grad_value


def _check_params(params, str where):
    """params as a list of distinct leaf Variables."""
    params = list(params)
    if not params:
        raise ValueError(f"{where} got an empty parameter list")
    seen = set()
    for j, p in enumerate(params):
        if type(p) is not Variable or (<Variable>p).kind != K_LEAF:
            what = type(p).__name__ if type(p) is not Variable else (
                "a constant (requires_grad=False)" if (<Variable>p).kind == K_CONST
                else "a recorded result, not a leaf")
            raise TypeError(f"{where}: parameter {j} must be a leaf Variable, but it is {what}")
        if id(p) in seen:
            raise ValueError(f"{where}: parameter {j} appears more than once")
        seen.add(id(p))
    return params


cdef int _check_step(tuple params, Py_ssize_t state_size) except -1:
    """Every parameter can be updated: checked before any is, so a failed
    step changes nothing.  params is a private tuple; state_size is how many
    parameters the optimiser's state arrays hold."""
    cdef Py_ssize_t j
    if len(params) > state_size:
        raise ValueError(
            f"the optimiser has state for {state_size} parameters but was given {len(params)}")
    for j in range(len(params)):
        if type(params[j]) is not Variable:
            raise TypeError(f"parameter {j} must be a leaf Variable, not {type(params[j]).__name__}")
        if (<Variable>params[j]).kind != K_LEAF:
            raise TypeError(
                f"parameter {j} no longer requires grad (requires_grad was set to False); "
                "an optimiser updates leaves that require grad")
        _check_settable(<Variable>params[j], "step an optimiser")
    return 0


def _sgd_step(params, double[::1] buf, double lr, double momentum, double weight_decay,
              bint first):
    """torch.optim.SGD's update (no dampening, no Nesterov) on leaf Variables."""
    cdef Py_ssize_t j
    cdef Variable v
    cdef double g
    params = tuple(params)          # a private copy: nothing can change it from here
    _check_step(params, buf.shape[0])
    for j in range(len(params)):
        v = <Variable>params[j]
        g = _leaf_grad(v)
        if weight_decay != 0.0:
            g = g + weight_decay * v.value
        if momentum != 0.0:
            buf[j] = g if first else momentum * buf[j] + g
            g = buf[j]
        _set_value(v, v.value + (-lr) * g)


def _adam_step(params, double[::1] m, double[::1] s, long step, double lr,
               double beta1, double beta2, double eps, double weight_decay):
    """torch.optim.Adam's update (no AMSGrad) at step number `step` (from 1)."""
    cdef Py_ssize_t j
    cdef Variable v
    cdef double g, step_size, denom_scale
    params = tuple(params)          # a private copy: nothing can change it from here
    _check_step(params, min(m.shape[0], s.shape[0]))
    step_size = lr / (1.0 - pow(beta1, <double>step))
    denom_scale = sqrt_c(1.0 - pow(beta2, <double>step))
    for j in range(len(params)):
        v = <Variable>params[j]
        g = _leaf_grad(v)
        if weight_decay != 0.0:
            g = g + weight_decay * v.value
        m[j] = m[j] + (1.0 - beta1) * (g - m[j])          # torch: exp_avg.lerp_(grad, 1 - beta1)
        s[j] = s[j] * beta2 + (1.0 - beta2) * g * g
        _set_value(v, v.value + (-step_size) * (m[j] / (sqrt_c(s[j]) / denom_scale + eps)))
