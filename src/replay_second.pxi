# replay_second.pxi -- compiled functions' second order: the Cython side of ac_eval_second.
#
# Holds: src/replay.h's ac_second as Cython sees it, and _eval_second, which
# evaluates a _Program's Hessian-vector products and Hessians for one row or
# rows [row0, row1) of batched arguments (the arguments and their tangents
# turned into columns as eval_batch does), with the GIL released, and turns
# a failed status into the exception replay.pxi raises for gradients (a
# GuardError naming the row, the user's exception from a hook) or, where
# second derivatives would go through a custom Function, a
# NotImplementedError naming it.  Called by autograd_c/compiled_second.py.
# May touch: nothing but the buffers it is given.

cdef extern from "replay.h" nogil:
    cdef enum:
        AC_RP_NEEDS_RULE
    ctypedef struct ac_second:
        int64_t rows
        const uint8_t *batched
        const double *const *x_cols
        const int64_t *x_stride
        const double *shared
        const uint8_t *v_on
        const double *const *v_cols
        const int64_t *v_stride
        const double *v_shared
        const uint8_t *h_on
        double *y
        double *y_sum
        double *grad_rows
        double *grad_sum
        double *hvp_rows
        double *hvp_sum
        double *hess_rows
        double *hess_sum
        int nthreads
    int ac_eval_second(const ac_program *p, const ac_second *s, const ac_hooks *hooks, ac_status *st)


cdef int _columns(tuple args, tuple axes, tuple shapes, Py_ssize_t n, Py_ssize_t row0,
                  Py_ssize_t row1, uint8_t *batched, uint8_t *on, double *shared,
                  const double **cols, int64_t *strides, list views) except -1:
    """Per input: batched[k] (axis 0) and its column (cols/strides, rows from
    row0) or its value in shared (in order).  With `on` (tangents), an
    argument may be None: its inputs have no tangent (on = 0)."""
    cdef Py_ssize_t i, c, count, pos = 0, nb = 0, ns = 0
    cdef const double[:] v1
    cdef const double[:, :] v2
    for i in range(len(args)):
        count = 1 if shapes[i] < 0 else shapes[i]
        if pos + count > n:
            raise ValueError("internal: arguments do not match the program")
        a = args[i]
        for c in range(count):
            batched[pos + c] = axes[i] is not None
            if on != NULL:
                on[pos + c] = a is not None
        if axes[i] is None:
            if a is not None:
                _flatten_arg(a, shapes[i], shared + ns, i)
            ns += count
        elif a is None:
            nb += count
        elif shapes[i] < 0:
            v1 = a
            views.append(v1)
            cols[nb] = &v1[row0] if row1 > row0 else NULL
            strides[nb] = v1.strides[0] // <Py_ssize_t>sizeof(double)
            nb += 1
        else:
            v2 = a
            views.append(v2)
            for c in range(count):
                cols[nb] = &v2[row0, c] if row1 > row0 else NULL
                strides[nb] = v2.strides[0] // <Py_ssize_t>sizeof(double)
                nb += 1
        pos += count
    if pos != n:
        raise ValueError("internal: arguments do not match the program")
    return 0


def _eval_second(_Program prog, tuple args, tuple axes, tuple shapes, tuple vargs, bytes h_on,
                 Py_ssize_t row0, Py_ssize_t row1, int threads, double[::1] y=None,
                 double[::1] y_sum=None, double[::1] grad_rows=None, double[::1] grad_sum=None,
                 double[::1] hvp_rows=None, double[::1] hvp_sum=None, double[::1] hess_rows=None,
                 double[::1] hess_sum=None):
    """Rows [row0, row1) of the arguments (as _Program.eval_batch; all axes
    None and one row for a single call).  vargs: per argument its tangent
    shaped like it (rows for axis 0), or None for none; vargs None: no
    products.  h_on: n bytes, 1 for the inputs the Hessian is of, or None.
    The output buffers are flat, for these rows (see ac_second)."""
    cdef Py_ssize_t n = prog.p.n_inputs
    cdef uint8_t *batched = <uint8_t *>calloc(n + 1, 1)
    cdef uint8_t *v_on = <uint8_t *>calloc(n + 1, 1)
    cdef double *shared = <double *>calloc(2 * n + 2, sizeof(double))
    cdef const double **cols = <const double **>calloc(2 * n + 2, sizeof(double *))
    cdef int64_t *strides = <int64_t *>calloc(2 * n + 2, sizeof(int64_t))
    cdef ac_second s
    cdef ac_status st
    cdef ac_hooks hooks
    cdef _HookCtx ctx
    cdef int rc
    cdef list views = []
    ctx.error = NULL
    try:
        if batched == NULL or v_on == NULL or shared == NULL or cols == NULL or strides == NULL:
            raise MemoryError()
        if h_on is not None and len(h_on) != n:
            raise ValueError("internal: h_on does not match the program")
        _columns(args, axes, shapes, n, row0, row1, batched, NULL, shared, cols, strides, views)
        memset(&s, 0, sizeof(s))
        if vargs is not None:
            _columns(vargs, axes, shapes, n, row0, row1, batched, v_on, shared + n + 1,
                     cols + n + 1, strides + n + 1, views)
            s.v_on = v_on
            s.v_cols = <const double *const *>(cols + n + 1)
            s.v_stride = strides + n + 1
            s.v_shared = shared + n + 1
        s.rows = row1 - row0
        s.batched = batched
        s.x_cols = <const double *const *>cols
        s.x_stride = strides
        s.shared = shared
        s.h_on = <const uint8_t *>(<char *>h_on) if h_on is not None else NULL
        s.y = _ptr(y)
        s.y_sum = _ptr(y_sum)
        s.grad_rows = _ptr(grad_rows)
        s.grad_sum = _ptr(grad_sum)
        s.hvp_rows = _ptr(hvp_rows)
        s.hvp_sum = _ptr(hvp_sum)
        s.hess_rows = _ptr(hess_rows)
        s.hess_sum = _ptr(hess_sum)
        s.nthreads = threads
        prog._hooks(&hooks, &ctx)
        if prog.p.n_custom == 0 or threads > 1:     # worker threads' hooks take the GIL
            with nogil:
                rc = ac_eval_second(&prog.p, &s, &hooks, &st)
        else:
            rc = ac_eval_second(&prog.p, &s, &hooks, &st)
        if rc != AC_RP_OK:
            if rc == AC_RP_NEEDS_RULE:
                fn = prog.functions[st.custom]
                raise NotImplementedError(
                    f"compiled second derivatives go through the custom Function "
                    f"{type(fn).__name__} (row {row0 + st.row}), whose hooks give first derivatives "
                    "only: use ag.hvp / ag.hessian on the Python function (they use the Function's "
                    "jvp and differentiable_backward), or write it with autograd_c operations")
            if rc == AC_RP_GUARD:
                prog._raise_guard_row(&st, batched, shared, cols, strides, row0)
            prog._raise(&st, &ctx, NULL, row0 + st.row)
    finally:
        free(batched)
        free(v_on)
        free(shared)
        free(cols)
        free(strides)
        _xdecref(ctx.error)
    return None
