# functions.pxi -- custom Functions (autograd_c.Function) on the tape.
#
# Holds: recording a Function call as one AC_CUSTOM node (_record_function,
# _input_values), and the way back: the C sweep calls _function_backward
# for such a node, which runs the user's backward() with grad disabled and
# the tape frozen (tape_memory.pxi), checks what it returned
# (_function_grads) and keeps the result for the rest of the pass.  Forward
# sweeps ask a Function's jvp (higher.pxi, _function_jvp); create_graph
# passes run its backward on Variables (create_graph.pxi).
# May touch: tape.functions, tape.fn_grads/fn_results/sweep_error.  User
# code runs here: it may raise, record, or touch other threads' leaves.

def _input_values(tuple args, fn):
    """The values of a Function's inputs, checking their types."""
    cdef double x
    values = []
    for j, a in enumerate(args):
        if type(a) is Variable:
            values.append((<Variable>a).value)
        elif _number(a, &x):
            values.append(x)
        else:
            raise TypeError(
                f"{type(fn).__name__}() takes Variables or real numbers, but input {j} is "
                f"{type(a).__name__}")
    return tuple(values)


def _record_function(fn, tuple args, y):
    """Record one AC_CUSTOM node: Function fn applied to args gave y."""
    cdef double value
    if not _number(y, &value):
        raise TypeError(
            f"{type(fn).__name__}.forward() must return a real number, not {type(y).__name__}")
    return _nary(AC_CUSTOM, list(args), 1, type(fn).__name__ + "()", fn, value)


cdef const double *_function_backward(void *ctx, ac_node i, double g) noexcept:
    """ac_tape.custom_backward: called by the C sweep for AC_CUSTOM nodes.
    Runs with grad disabled; an exception is kept for _sweep (backward.pxi) to raise."""
    cdef Tape tape = <Tape>ctx
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    ts.grad_enabled = 0
    try:
        return _call_function(tape, i, g)
    except BaseException as e:
        tape.sweep_error = e
        return NULL
    finally:
        ts.grad_enabled = enabled


cdef int _function_grads(object fn, object result, uint32_t m, double *out) except -1:
    """Check a Function's backward() result and write it to out[0..m)."""
    cdef uint32_t k
    name = type(fn).__name__
    if type(result) is not tuple and type(result) is not list:
        if m != 1:
            if result is None or type(result) is Variable or _number(result, &out[0]):
                raise ValueError(f"{name}.backward() returned 1 gradient for {m} inputs")
            raise TypeError(
                f"{name}.backward() must return a tuple of {m} gradients (one per input), "
                f"not {type(result).__name__}")
        result = (result,)
    if <uint32_t>len(result) != m:
        raise ValueError(
            f"{name}.backward() returned {len(result)} gradients for {m} inputs")
    for k in range(m):
        g = result[k]
        if g is None:
            out[k] = 0.0
        elif type(g) is Variable:
            out[k] = (<Variable>g).value
        elif not _number(g, &out[k]):
            raise TypeError(
                f"{name}.backward() must return real numbers, but gradient {k} is "
                f"{type(g).__name__}")
    return 0


cdef inline double _arg_value(ac_tape *t, ac_ref ref) noexcept:
    if ref & AC_CONST_BIT:
        return t.consts[ref & ~AC_CONST_BIT]
    return _ref_value(t, ref)


cdef const double *_call_function(Tape tape, ac_node i, double g) except NULL:
    """Run the backward of the Function that recorded node i."""
    cdef ac_tape *t = &tape.t
    cdef int64_t k, m = ac_nargs(t, i)
    cdef double *p
    if m > tape.fn_grads_size:
        p = <double *>realloc(tape.fn_grads, m * sizeof(double))
        if p == NULL:
            raise MemoryError()
        tape.fn_grads = p
        tape.fn_grads_size = m
    kept = None if tape.fn_results is None else tape.fn_results.get(i)
    if kept is not None:
        for k in range(m):
            tape.fn_grads[k] = kept[k]
        return tape.fn_grads
    fn = tape.functions[i]
    result = fn._backward_call(tuple([_arg_value(t, ac_arg(t, i, k)) for k in range(m)]),
                               t.val[i], g)
    _function_grads(fn, result, m, tape.fn_grads)
    if tape.fn_results is not None:
        tape.fn_results[i] = tuple([tape.fn_grads[k] for k in range(m)])
    return tape.fn_grads
