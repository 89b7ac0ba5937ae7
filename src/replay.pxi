# replay.pxi -- compiled functions: the Cython side of record once, replay many.
#
# Holds: src/replay.h as Cython sees it; _compile (a traced or recorded
# graph -> an ac_program with its Function table and guard records); the
# _Program object that owns one compiled program and evaluates it (one row
# with ac_eval, many with ac_eval_batch, the GIL released), the hooks that
# run a custom Function's forward/backward (they take the GIL and keep the
# user's exception), the poll hook (Ctrl-C), and status codes turned into
# exceptions.  Tracing is tracing.pxi; the arguments of a call (shapes,
# values, batched arrays, gradients into leaves) are replay_args.pxi.
# May touch: the tape while compiling (pinned: it only gains leaf entries for
# outputs and guard operands).

from libc.stdint cimport int32_t

cdef extern from "replay.h" nogil:
    cdef enum:
        AC_RP_OK, AC_RP_GUARD, AC_RP_HOOK, AC_RP_INTERRUPTED, AC_RP_NOMEM, AC_RP_INVALID
        AC_PASS_ALL
    ctypedef struct ac_status:
        int code
        int32_t guard
        int32_t custom
        int64_t row
        int64_t index
        const char *what
    ac_ref AC_GUARD_CONST
    ctypedef struct ac_guard:
        ac_ref a                    # tape references (ac_ref: either layout), or AC_GUARD_CONST
        ac_ref b
        double a_value
        double b_value
        int kind
        int expected
    ctypedef struct ac_compile_stats:
        int64_t tape_nodes, extracted, after_fold, after_cse, after_dce, guards_folded, scalar_nodes
    ctypedef struct ac_program:
        int32_t n_inputs, n_consts, n_instr, n_slots, n_outputs, n_guards, n_custom
        int64_t n_args
        int32_t *guard_a
        int32_t *guard_b
        int32_t *guard_index
        int64_t *custom_node
    ctypedef struct ac_hooks:
        int (*forward)(void *ctx, int32_t id, const double *x, int32_t n, double *y) noexcept nogil
        int (*backward)(void *ctx, int32_t id, const double *x, int32_t n, double y, double g,
                        double *gx) noexcept nogil
        int (*poll)(void *ctx) noexcept nogil
        void *ctx
    ctypedef struct ac_workspace:
        double *val
        int32_t grad_outputs
    ctypedef struct ac_batch:
        int64_t rows
        const uint8_t *batched
        const double *x
        const double *shared
        const double *weight
        double *y
        double *y_sum
        double *grad_rows
        double *grad_sum
        int nthreads
        int block
        const double *const *x_cols
        const int64_t *x_stride
        int32_t grad_outputs
    int ac_compile(const ac_tape *t, const ac_ref *outputs, int32_t n_outputs,
                   const int32_t *leaf_input, int32_t n_inputs, const ac_guard *guards,
                   int32_t n_guards, unsigned passes, ac_program *p, ac_compile_stats *stats,
                   ac_status *st)
    void ac_program_free(ac_program *p)
    int ac_workspace_init(ac_workspace *ws, const ac_program *p)
    void ac_workspace_free(ac_workspace *ws)
    int ac_eval(const ac_program *p, ac_workspace *ws, const ac_hooks *hooks, const double *x,
                double *y, double *jac, ac_status *st)
    int ac_eval_batch(const ac_program *p, const ac_batch *b, const ac_hooks *hooks, ac_status *st)

import time as _time

# ---------------------------------------------------------------------------
# compiling
# ---------------------------------------------------------------------------

cdef ac_ref _root_ref(Tape tape, object o, list keep) except? 0xffffffffffffffff:
    """The tape reference (an ac_ref, whatever the tape's layout) of an
    output or guard operand: a node, or a leaf entry (made now if the leaf
    has none on this tape; a number or constant gets a fresh leaf that is
    not an input, so it compiles to a constant)."""
    cdef double x
    if type(o) is Variable:
        if (<Variable>o).kind == K_NODE:
            return <ac_ref>_node_ref(tape, <Variable>o)
        if (<Variable>o).kind == K_LEAF:
            return _as_ac_ref(tape, _operand(tape, o, K_LEAF))
        x = (<Variable>o).value
    elif not _number(o, &x):
        raise TypeError(f"a compiled function's outputs must be Variables or real numbers, not "
                        f"{type(o).__name__}")
    c = Variable(x)
    keep.append(c)
    return _as_ac_ref(tape, _operand(tape, c, K_LEAF))


cdef ac_node _node_ref(Tape tape, Variable v) except -1:
    if v.owner != <PyObject *>tape:
        _owning_tape(v)                  # raises: another thread's, or released
    return v.index


cdef int _set_guard(ac_guard *g, Tape tape, tuple rec, list keep) except -1:
    """ac_guard from a guard record of tracing.pxi."""
    kind, outcome, a, b, av, bv = rec[0], rec[1], rec[2], rec[3], rec[4], rec[5]
    g.kind = kind
    g.expected = 1 if outcome else 0
    g.a_value = av
    g.b_value = bv
    g.a = AC_GUARD_CONST if a is None else _root_ref(tape, a, keep)
    g.b = AC_GUARD_CONST if b is None or kind == GUARD_TRUTH else _root_ref(tape, b, keep)
    return 0


def _compile(list outputs, list inputs, list guards, _Trace trace=None, int n_grad=0):
    """A _Program computing ``outputs`` (Variables or numbers recorded on this
    thread's tape) from the leaf Variables ``inputs`` (in input order).
    ``guards``: guard records (tracing.pxi).  With ``trace`` (still pinned),
    only leaf entries made during it are inputs (what was recorded before
    is constant); without, every entry of an input leaf is, and one
    recorded with an older value of it (before ``leaf.data = ...``) is
    refused.  ``n_grad``: outputs the gradient methods differentiate (the
    rest are auxiliary values), 0 for all."""
    cdef Tape tape = _thread_tape()
    cdef Py_ssize_t m = len(outputs), n = len(inputs), ng = len(guards), j
    cdef ac_ref *outs = NULL
    cdef int32_t *leaf_input = NULL
    cdef ac_guard *gs = NULL
    cdef int64_t k, start
    cdef ac_status st
    cdef _Program prog
    cdef Variable leaf
    cdef list keep = []
    cdef dict positions = {}
    _check_not_busy(tape, "compile a function")
    for j in range(n):
        leaf = inputs[j]
        if leaf.kind != K_LEAF:
            raise TypeError(f"input {j} must be a leaf Variable (made by the user, requiring grad)")
        if id(leaf) in positions:
            raise ValueError(f"the same Variable is input {positions[id(leaf)]} and input {j}")
        positions[id(leaf)] = j
    if m == 0:
        raise ValueError("a compiled function needs at least one output")
    prog = _Program.__new__(_Program)
    _pin(tape)         # leaf entries may be added below; nothing may renumber
    try:
        # room for a leaf entry per output and guard operand: a narrow tape
        # too full for them widens now (pinned: no compaction)
        tape._make_room(0, m + 2 * ng)
        outs = <ac_ref *>malloc(m * sizeof(ac_ref))
        gs = <ac_guard *>calloc(ng + 1, sizeof(ac_guard))
        if outs == NULL or gs == NULL:
            raise MemoryError()
        for j in range(m):
            outs[j] = _root_ref(tape, outputs[j], keep)
        for j in range(ng):
            _set_guard(&gs[j], tape, guards[j], keep)
        # every entry exists now: which are inputs
        leaf_input = <int32_t *>malloc((tape.t.nleaves + 1) * sizeof(int32_t))
        if leaf_input == NULL:
            raise MemoryError()
        start = trace.leaf_start if trace is not None else 0
        stale = []
        for k in range(tape.t.nleaves):
            leaf_input[k] = -1
            if k < start:
                continue
            pos = positions.get(id(<object>tape.t.leaf_obj[k]))
            if pos is None:
                continue
            if tape.t.leaf_version[k] != (<Variable>tape.t.leaf_obj[k]).version:
                if trace is not None:
                    raise ValueError(
                        f"input {pos} was assigned a new value (.data = ...) while the function was "
                        "traced; a compiled function's inputs come from its arguments")
                stale.append((k, pos))
                continue
            leaf_input[k] = pos
        if stale:
            _refuse_stale(tape, outs, m, gs, ng, stale)
        t0 = _time.perf_counter()
        if ac_compile(&tape.t, outs, <int32_t>m, leaf_input, <int32_t>n, gs, <int32_t>ng, AC_PASS_ALL,
                      &prog.p, &prog.cstats, &st) != AC_RP_OK:
            if st.code == AC_RP_NOMEM:
                raise MemoryError(f"compiling: {st.what.decode()}")
            raise RuntimeError(f"compiling failed: {st.what.decode()} (index {st.index})")
        prog.compile_seconds = _time.perf_counter() - t0
        prog.functions = [tape.functions[prog.p.custom_node[k]] for k in range(prog.p.n_custom)]
    finally:
        free(outs)
        free(gs)
        free(leaf_input)
        _unpin(tape)
    prog.guards = [(_GUARD_SYMBOLS[rec[0]], bool(rec[1]), rec[4], rec[5], rec[6], rec[7]) for rec in guards]
    prog.n_grad = n_grad if 0 < n_grad < m else <int>m
    return prog


cdef int _refuse_stale(Tape tape, ac_ref *outs, Py_ssize_t m, ac_guard *gs, Py_ssize_t ng,
                       list stale) except -1:
    """Raise if a root reaches a leaf entry recorded with an older value of
    an input (the version rule of backward())."""
    cdef ac_sweep_result reach
    cdef ac_tape *t = &tape.t
    cdef Py_ssize_t j
    cdef ac_ref r
    cdef int64_t k, hit = -1
    cdef uint8_t *is_stale = <uint8_t *>calloc(t.nleaves + 1, 1)
    cdef ac_ref *roots = <ac_ref *>malloc((m + 2 * ng + 1) * sizeof(ac_ref))
    cdef Py_ssize_t nroots = 0
    try:
        if is_stale == NULL or roots == NULL:
            raise MemoryError()
        for pair in stale:
            is_stale[<int64_t>pair[0]] = 1
        for j in range(m):
            roots[nroots] = outs[j]
            nroots += 1
        for j in range(ng):
            roots[nroots] = gs[j].a
            roots[nroots + 1] = gs[j].b
            nroots += 2
        for j in range(nroots):        # C only from here to the last clear
            r = roots[j]
            if r == AC_GUARD_CONST:
                continue
            if r & AC_LEAF_BIT:
                if is_stale[r & AC_REF_INDEX]:
                    hit = r & AC_REF_INDEX
                    break
                continue
            ac_mark_reachable(t, <ac_node>r, &reach)
            for k in range(reach.leaf_lo, reach.leaf_hi + 1):
                if t.leaf_flags[k] & AC_LEAF_MARK and is_stale[k]:
                    hit = k
            ac_clear_marks(t, &reach, <ac_node>r)
            if hit >= 0:
                break
    finally:
        free(is_stale)
        free(roots)
    if hit >= 0:
        pos = [p for e, p in stale if e == hit][0]
        raise ValueError(
            f"the graph uses input {pos} with a value it had before a later assignment "
            "(leaf.data = ...): it would be replayed with one value for both uses; record the "
            "graph again from the current values")
    return 0


# ---------------------------------------------------------------------------
# hooks: custom Functions, interrupts
# ---------------------------------------------------------------------------

cdef struct _HookCtx:
    PyObject *functions       # borrowed: the _Program's list, id -> Function
    PyObject *error           # owned: the exception a hook raised, or NULL


cdef void _keep_error(_HookCtx *c, object e) noexcept:
    if c.error == NULL:
        _incref(<PyObject *>e)
        c.error = <PyObject *>e


cdef int _hook_forward(void *ctx, int32_t id, const double *x, int32_t n, double *y) noexcept nogil:
    with gil:
        return _run_forward(<_HookCtx *>ctx, id, x, n, y)


cdef int _run_forward(_HookCtx *c, int32_t id, const double *x, int32_t n, double *y) noexcept:
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    ts.grad_enabled = 0
    try:
        fn = (<list>c.functions)[id]
        r = fn._forward_call(tuple([x[k] for k in range(n)]))
        if not _number(r, y):
            raise TypeError(f"{type(fn).__name__}.forward() must return a real number, not "
                            f"{type(r).__name__}")
        return 0
    except BaseException as e:
        _keep_error(c, e)
        return 1
    finally:
        ts.grad_enabled = enabled


cdef int _hook_backward(void *ctx, int32_t id, const double *x, int32_t n, double y, double g,
                        double *gx) noexcept nogil:
    with gil:
        return _run_backward(<_HookCtx *>ctx, id, x, n, y, g, gx)


cdef int _run_backward(_HookCtx *c, int32_t id, const double *x, int32_t n, double y, double g,
                       double *gx) noexcept:
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    ts.grad_enabled = 0
    try:
        fn = (<list>c.functions)[id]
        result = fn._backward_call(tuple([x[k] for k in range(n)]), y, g)
        _function_grads(fn, result, <uint32_t>n, gx)
        return 0
    except BaseException as e:
        _keep_error(c, e)
        return 1
    finally:
        ts.grad_enabled = enabled


cdef int _hook_poll(void *ctx) noexcept nogil:
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as e:
            _keep_error(<_HookCtx *>ctx, e)
            return 1
    return 0


# ---------------------------------------------------------------------------
# _Program: one compiled program
# ---------------------------------------------------------------------------

cdef enum:
    WS_KEEP = 4        # idle ac_eval workspaces a _Program keeps (one per concurrent caller)


@cython.final
cdef class _Program:
    """One compiled program (internal; autograd_c.compiled.CompiledFunction
    holds these).  Everything that defines it is here: the C program, the
    Functions its custom nodes call (by custom id), the guard records and,
    in ``meta``, the Python layer's description of its arguments and
    outputs -- what a pickle of it needs (issue 12)."""
    cdef ac_program p
    cdef ac_compile_stats cstats
    cdef readonly list functions      # custom id -> Function
    cdef readonly list guards         # guard index -> (symbol, outcome, a, b, file, line)
    cdef readonly double compile_seconds
    cdef readonly int n_grad          # outputs the gradients are of: [0, n_grad)
    cdef public object meta           # the Python layer's: argument shapes, output structure
    cdef ac_workspace *spare[WS_KEEP]
    cdef int n_spare

    def __dealloc__(self):
        cdef int k
        for k in range(self.n_spare):
            ac_workspace_free(self.spare[k])
            free(self.spare[k])
        ac_program_free(&self.p)

    def __reduce__(self):
        # the bytes (replay_pickle.pxi) and, beside them, the Functions by reference to their class
        return (_program_load, (_program_dump(self), tuple(self.functions)))

    @property
    def n_inputs(self):
        return self.p.n_inputs

    @property
    def n_outputs(self):
        return self.p.n_outputs

    @property
    def stats(self):
        """Instruction counts before and after each pass, and what the program holds."""
        s = self.cstats
        return {"tape_nodes": s.tape_nodes, "extracted": s.extracted, "after_fold": s.after_fold,
                "after_cse": s.after_cse, "after_dce": s.after_dce, "instructions": self.p.n_instr,
                "scalar_nodes": s.scalar_nodes, "constants": self.p.n_consts, "inputs": self.p.n_inputs,
                "outputs": self.p.n_outputs, "guards": self.p.n_guards,
                "guards_folded": s.guards_folded, "functions": self.p.n_custom,
                "compile_seconds": self.compile_seconds}

    cdef ac_workspace *_take_ws(self) except NULL:
        cdef ac_workspace *ws
        if self.n_spare > 0:
            self.n_spare -= 1
            return self.spare[self.n_spare]
        ws = <ac_workspace *>malloc(sizeof(ac_workspace))
        if ws == NULL or ac_workspace_init(ws, &self.p) != AC_RP_OK:
            free(ws)
            raise MemoryError("out of memory for a replay workspace")
        return ws

    cdef void _give_ws(self, ac_workspace *ws) noexcept:
        if self.n_spare < WS_KEEP:
            self.spare[self.n_spare] = ws
            self.n_spare += 1
        else:
            ac_workspace_free(ws)
            free(ws)

    def eval(self, const double[::1] x, double[::1] y, double[::1] jac=None, bint grads=False):
        """One row: y[j] for every output; with jac (n_grad x n_inputs) also
        the Jacobian of the first n_grad outputs."""
        cdef ac_workspace *ws
        cdef ac_status st
        cdef ac_hooks hooks
        cdef _HookCtx ctx
        cdef int rc
        cdef double *jp = NULL
        if x.shape[0] != self.p.n_inputs or y.shape[0] != self.p.n_outputs:
            raise ValueError("internal: wrong buffer sizes")
        if jac is not None:
            if jac.shape[0] != <Py_ssize_t>self.n_grad * self.p.n_inputs:
                raise ValueError("internal: wrong Jacobian size")
            if jac.shape[0] > 0:
                jp = &jac[0]
        ws = self._take_ws()
        ws.grad_outputs = self.n_grad
        self._hooks(&hooks, &ctx)
        try:
            if self.p.n_custom == 0:
                with nogil:
                    rc = ac_eval(&self.p, ws, &hooks, &x[0] if x.shape[0] else NULL, &y[0], jp, &st)
            else:
                rc = ac_eval(&self.p, ws, &hooks, &x[0] if x.shape[0] else NULL, &y[0], jp, &st)
            if rc != AC_RP_OK:
                self._raise(&st, &ctx, ws.val, 0)
        finally:
            self._give_ws(ws)
            _xdecref(ctx.error)
        return None

    cdef void _hooks(self, ac_hooks *hooks, _HookCtx *ctx) noexcept:
        ctx.functions = <PyObject *>self.functions
        ctx.error = NULL
        hooks.forward = _hook_forward
        hooks.backward = _hook_backward
        hooks.poll = _hook_poll
        hooks.ctx = <void *>ctx

    def eval_batch(self, tuple args, tuple axes, tuple shapes, Py_ssize_t row0, Py_ssize_t row1,
                   int threads, double[::1] y=None, double[::1] y_sum=None,
                   double[::1] grad_rows=None, double[::1] grad_sum=None):
        """Rows [row0, row1) of the batched arguments.  args: per argument, a
        value (axis None: a number or a sequence, shaped as shapes[i] says)
        or a float64 array whose rows are the rows (axis 0: 1-D for a scalar
        argument, 2-D for a vector one, strides in whole doubles).  The
        output buffers are flat, for these rows only (grad_* of the first
        n_grad outputs)."""
        cdef Py_ssize_t n = self.p.n_inputs, i, c, count, pos = 0, nb = 0, ns = 0
        cdef uint8_t *batched = NULL
        cdef double *shared = NULL
        cdef const double **cols = NULL
        cdef int64_t *strides = NULL
        cdef const double[:] v1
        cdef const double[:, :] v2
        cdef ac_batch b
        cdef ac_status st
        cdef ac_hooks hooks
        cdef _HookCtx ctx
        cdef int rc
        cdef list views = []
        batched = <uint8_t *>calloc(n + 1, 1)
        shared = <double *>malloc((n + 1) * sizeof(double))
        cols = <const double **>calloc(n + 1, sizeof(double *))
        strides = <int64_t *>calloc(n + 1, sizeof(int64_t))
        ctx.error = NULL
        try:
            if batched == NULL or shared == NULL or cols == NULL or strides == NULL:
                raise MemoryError()
            for i in range(len(args)):
                count = 1 if shapes[i] < 0 else shapes[i]
                if pos + count > n:
                    raise ValueError("internal: arguments do not match the program")
                if axes[i] is None:
                    _flatten_arg(args[i], shapes[i], shared + ns, i)
                    ns += count
                else:
                    if shapes[i] < 0:
                        v1 = args[i]
                        views.append(v1)
                        cols[nb] = &v1[row0] if row1 > row0 else NULL
                        strides[nb] = v1.strides[0] // <Py_ssize_t>sizeof(double)
                        nb += 1
                    else:
                        v2 = args[i]
                        views.append(v2)
                        for c in range(count):
                            cols[nb] = &v2[row0, c] if row1 > row0 else NULL
                            strides[nb] = v2.strides[0] // <Py_ssize_t>sizeof(double)
                            nb += 1
                    for c in range(count):
                        batched[pos + c] = 1
                pos += count
            if pos != n:
                raise ValueError("internal: arguments do not match the program")
            memset(&b, 0, sizeof(b))
            b.rows = row1 - row0
            b.batched = batched
            b.x_cols = <const double *const *>cols
            b.x_stride = strides
            b.shared = shared
            b.y = _ptr(y)
            b.y_sum = _ptr(y_sum)
            b.grad_rows = _ptr(grad_rows)
            b.grad_sum = _ptr(grad_sum)
            b.nthreads = threads
            b.grad_outputs = self.n_grad
            self._hooks(&hooks, &ctx)
            if self.p.n_custom == 0 or threads > 1:     # worker threads' hooks need the GIL
                with nogil:
                    rc = ac_eval_batch(&self.p, &b, &hooks, &st)
            else:
                rc = ac_eval_batch(&self.p, &b, &hooks, &st)
            if rc != AC_RP_OK:
                if rc == AC_RP_GUARD:
                    self._raise_guard_row(&st, batched, shared, cols, strides, row0)
                self._raise(&st, &ctx, NULL, row0 + st.row)
        finally:
            free(batched)
            free(shared)
            free(cols)
            free(strides)
            _xdecref(ctx.error)
        return None

    cdef int _raise_guard_row(self, ac_status *st, uint8_t *batched, double *shared,
                              const double **cols, int64_t *strides, Py_ssize_t row0) except -1:
        """A guard flipped at row st.row: evaluate that row alone to report
        the values compared."""
        cdef Py_ssize_t n = self.p.n_inputs, k, c = 0, s = 0
        cdef ac_workspace *ws
        cdef ac_status st1
        cdef ac_hooks hooks
        cdef _HookCtx ctx
        cdef double *x = <double *>malloc((n + 1) * sizeof(double))
        cdef double *yv = <double *>malloc((self.p.n_outputs + 1) * sizeof(double))
        if x == NULL or yv == NULL:
            free(x)
            free(yv)
            raise MemoryError()
        for k in range(n):
            if batched[k]:
                x[k] = cols[c][st.row * strides[c]]
                c += 1
            else:
                x[k] = shared[s]
                s += 1
        ws = self._take_ws()
        self._hooks(&hooks, &ctx)
        try:
            ac_eval(&self.p, ws, &hooks, x, yv, NULL, &st1)
            self._raise(st, &ctx, ws.val, row0 + st.row)
        finally:
            self._give_ws(ws)
            _xdecref(ctx.error)
            free(x)
            free(yv)
        return 0

    cdef int _raise(self, ac_status *st, _HookCtx *ctx, const double *val, int64_t row) except -1:
        """The exception for a failed evaluation."""
        cdef int g
        if st.code == AC_RP_GUARD:
            raise self._guard_error(st.guard, row, val)
        if (st.code == AC_RP_HOOK or st.code == AC_RP_INTERRUPTED) and ctx.error != NULL:
            err = <object>ctx.error
            raise err
        if st.code == AC_RP_NOMEM:
            raise MemoryError(f"replay: {st.what.decode()}")
        raise RuntimeError(f"replay failed: {st.what.decode()} (status {st.code})")

    cdef object _guard_error(self, int32_t index, int64_t row, const double *val):
        cdef int32_t g
        symbol, outcome, a, b, filename, line = self.guards[index]
        now = ()
        if val != NULL:
            for g in range(self.p.n_guards):
                if self.p.guard_index[g] == index:
                    now = (val[self.p.guard_a[g]], val[self.p.guard_b[g]])
        source = _source_line(filename, line)
        shown = f"bool({a!r})" if symbol == "bool" else f"{a!r} {symbol} {b!r}"
        if now:
            current = f"bool({now[0]!r})" if symbol == "bool" else f"{now[0]!r} {symbol} {now[1]!r}"
            current = f"{current} is {not outcome}"
        else:
            current = f"it is {not outcome}"
        where = f"{filename}:{line}"
        at_row = f" at row {row}" if row else ""
        return GuardError(
            f"guard {index} flipped{at_row}: the comparison `{source or symbol}` ({where}) gave "
            f"{shown} -> {outcome} when the function was traced, and now {current}. This compiled "
            "function cannot trace again (it was made from a graph, with retrace=False, or unpickled "
            "without a Python function it could import by name): compile "
            "the Python function with ag.compile to follow both branches, or use ops that replay "
            "exactly (ag.relu, ag.maximum, ag.minimum, ag.abs)",
            guard=index, row=row, comparison=symbol, where=where, recorded=(a, b), now=now)


cdef inline double *_ptr(double[::1] a) noexcept:
    if a is None or a.shape[0] == 0:
        return NULL
    return &a[0]


def _source_line(filename, line):
    """The stripped source line, or '' (linecache reads the file once)."""
    import linecache
    return linecache.getline(filename, line).strip() if line else ""
