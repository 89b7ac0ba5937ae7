# higher.pxi -- the functional API's sweeps (jvp, vjp, hvp, hessian, jacobian) over one recording of f.
#
# Holds: _record (f applied once to fresh leaf Variables) and _Recording,
# whose methods run the C sweeps of src/higher.cpp over that recording and
# record nothing: jvp (one tangent sweep), vjp (one reverse sweep from
# several seeded outputs), hvp (a tangent sweep, then forward-over-reverse),
# hessian (n of those, made symmetric), jacobian (n tangent sweeps or m
# reverse sweeps); the hook that asks a Function node for its tangent.
# A second-order sweep that meets a Function differentiates the Function's
# recorded backward instead (create_graph.pxi).
# May touch: the tape, busy during the C sweeps (a Function's jvp or
# backward may run there, and must not record).  autograd_c/functional.py
# is the Python layer (input and output shapes, NumPy).

# ---------------------------------------------------------------------------
# the functional API: sweeps over one recording of f
# ---------------------------------------------------------------------------

def _record(f, values):
    """Call f on fresh leaf Variables with the given values (grad mode on)
    and keep the recording for the sweeps of autograd_c.functional."""
    cdef _Recording r = _Recording.__new__(_Recording)
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    cdef Tape tape = _thread_tape()
    cdef Variable leaf
    r.tape = tape
    r.epoch = tape.epoch
    r.lo = tape.t.size            # nothing recorded before f can depend on its fresh inputs
    r.leaf_lo = tape.t.nleaves
    r.leaves = [_new_input(x) for x in values]
    ts.grad_enabled = 1
    try:
        out = f(*r.leaves)
    finally:
        ts.grad_enabled = enabled
    r.sequence = type(out) is list or type(out) is tuple
    r.outputs = list(out) if r.sequence else [out]
    for j, o in enumerate(r.outputs):
        if type(o) is not Variable and not _is_number(o):
            raise TypeError(
                f"f must return a Variable, a number or a list/tuple of them, but "
                f"{'output ' + str(j) if r.sequence else 'it'} is {type(o).__name__}")
    for j, x in enumerate(r.leaves):
        leaf = x
        if leaf.kind != K_LEAF or leaf.version != 1:
            raise RuntimeError(
                f"f changed its input {j} (assigned .data or requires_grad): the functional "
                "API differentiates f at the values it was given")
    return r


cdef Variable _new_input(double x):
    """A fresh leaf, as Variable(x) makes it (version 1), without the call."""
    cdef Variable v = _new_constant(x)
    v.kind = K_LEAF
    v.version = 1
    return v


@cython.final
cdef class _Recording:
    """One call of f on fresh leaves, for autograd_c.functional.

    Every method runs C sweeps over the recorded graph of f's outputs (no
    node is recorded, no .grad touched) and writes into the buffers it is
    given; output o and input j index them as in f's arguments and results.
    """
    cdef Tape tape
    cdef readonly list leaves        # the inputs: fresh leaf Variables
    cdef readonly list outputs       # f's outputs: Variables or numbers
    cdef readonly bint sequence      # f returned a list or tuple
    cdef uint64_t epoch              # tape.epoch when lo and leaf_lo were valid
    cdef ac_node lo                  # no node below lo depends on the inputs
    cdef int64_t leaf_lo             # no input has a leaf entry below leaf_lo
    cdef object error                # what a Function's jvp raised in a tangent sweep
    # per call (_prepare), all in one block:
    cdef void *block
    cdef size_t block_size
    cdef Py_ssize_t n, m
    cdef ac_node hi                  # the highest output node (>= lo), or lo - 1
    cdef int64_t nleaves
    cdef int64_t *entry              # [n] input j's leaf entry (>= leaf_lo), or -1
    cdef ac_node *out_node           # [m] output o's node (>= lo), or -1
    cdef int64_t *out_input          # [m] j if output o is input j itself, else -1
    cdef ac_node *first              # [nl] the first node using each leaf entry (for columns)
    cdef uint8_t *active             # [span] 1 where a node depends on some input
    cdef bint first_known
    cdef ac_tangents tg
    cdef ac_adjoints ad

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        _give_block(self.block, self.block_size)
        self.block = NULL
        memset(&self.tg, 0, sizeof(ac_tangents))
        memset(&self.ad, 0, sizeof(ac_adjoints))
        self.entry = NULL
        self.out_node = NULL
        self.out_input = NULL
        self.first = NULL
        self.first_known = False
        self.active = NULL

    def values(self):
        """The outputs' values, as floats."""
        return [float(o) for o in self.outputs]

    cdef _Recording _with_outputs(self, list outputs):
        """The same inputs and recording, other outputs (recorded since)."""
        cdef _Recording r = _Recording.__new__(_Recording)
        r.tape = self.tape
        r.leaves = self.leaves
        r.outputs = outputs
        r.sequence = True
        r.epoch = self.epoch
        r.lo = self.lo
        r.leaf_lo = self.leaf_lo
        return r

    cdef int _begin(self, bint tangents, bint adjoints, bint second) except -1:
        """Make the tape busy, then _prepare: node indices are read while
        nothing can renumber the tape (the caller calls _leave_busy)."""
        cdef dict position = None
        if <void *>self.tape != ac_this_thread().tape:
            raise RuntimeError("a recording of the functional API is used in the thread that made it")
        _check_not_busy(self.tape, "differentiate a recording")
        for o in self.outputs:              # allocations (a finalizer may run) come first
            if type(o) is Variable and (<Variable>o).kind == K_LEAF:
                position = {id(x): k for k, x in enumerate(self.leaves)}
                break
        _enter_busy(self.tape)
        try:
            self._prepare(tangents, adjoints, second, position)
        except BaseException:
            _leave_busy(self.tape)
            raise
        return 0

    cdef int _prepare(self, bint tangents, bint adjoints, bint second, dict position) except -1:
        """Locate inputs and outputs on the tape as it is now (a compaction
        may have renumbered it) and lay out the sweeps' buffers in one block
        (reused from the previous call when it is large enough).  Busy: no
        Python object is made here but on errors."""
        cdef Tape tape = self.tape
        cdef Variable v
        cdef Py_ssize_t j, o, width = 1
        cdef ac_node span
        cdef int64_t nl
        cdef size_t words, nbytes
        cdef double *d
        cdef uint8_t *b
        self._free()
        if tape.epoch != self.epoch:      # renumbered: search from the start
            self.lo = 0
            self.leaf_lo = 0
            self.epoch = tape.epoch
        self.n = len(self.leaves)
        self.m = len(self.outputs)
        self.nleaves = tape.t.nleaves
        # first pass: where the outputs are, so the block can be sized
        self.hi = self.lo - 1
        for o in range(self.m):
            if type(self.outputs[o]) is not Variable:
                continue
            v = self.outputs[o]
            if v.kind == K_NODE:
                if v.owner != <PyObject *>tape:
                    _owning_tape(v)          # raises: another thread's graph
                if v.index >= self.lo:
                    self.hi = max(self.hi, v.index)
            elif v.kind == K_RELEASED:
                _owning_tape(v)              # raises
        span = max(self.hi - self.lo + 1, 0)
        nl = self.nleaves - self.leaf_lo
        if tangents and tape.functions:
            for i in tape.functions:         # the longest operand list of a Function node
                if self.lo <= i <= self.hi:
                    width = max(width, ac_nargs(&tape.t, i))
        words = self.n + 2 * self.m
        nbytes = 0
        if tangents:
            words += 2 * nl + span + width
            nbytes += nl + span + width
        if adjoints:
            words += span + nl + (span + nl if second else 0)
            nbytes += 2 * span if second else span
        self.block = _take_block((words + 1) * sizeof(double) + nbytes, &self.block_size)
        if self.block == NULL:
            raise MemoryError(f"out of memory allocating sweep buffers for {span:,} nodes")
        d = <double *>self.block
        b = <uint8_t *>(d + words + 1)
        self.entry = <int64_t *>d; d += self.n
        self.out_node = <ac_node *>d; d += self.m
        self.out_input = <int64_t *>d; d += self.m
        if tangents:
            self.tg.lo = self.lo
            self.tg.sweep_from = self.lo
            self.tg.leaf_lo = self.leaf_lo
            self.first = <ac_node *>d; d += nl
            self.tg.leaf_dot = d; d += nl
            self.tg.dot = d; d += span
            self.tg.scratch = d; d += width
            self.tg.leaf_on = b; b += nl
            self.tg.on = b; b += span
            self.tg.scratch_on = b; b += width
            self.tg.custom_jvp = _function_jvp
            self.tg.ctx = <void *>self
        if adjoints:
            self.ad.lo = self.lo
            self.ad.leaf_lo = self.leaf_lo
            self.ad.adj = d; d += span
            self.ad.leaf_adj = d; d += nl
            if second:
                self.ad.adj_dot = d; d += span
                self.ad.leaf_adj_dot = d; d += nl
            self.ad.state = b; b += span
            self.ad.tangents = &self.tg if second else NULL
            self.ad.active = NULL
            if second:
                self.active = b; b += span
        # inputs' leaf entries; outputs' nodes, or the input an output is
        for j in range(self.n):
            v = self.leaves[j]
            self.entry[j] = -1
            if v.version != 1 or v.kind != K_LEAF:
                raise RuntimeError(f"input {j} of the recording was changed after f returned")
            if v.cache_tape == &tape.t and v.index >= self.leaf_lo:
                self.entry[j] = v.index
        for o in range(self.m):
            self.out_node[o] = -1
            self.out_input[o] = -1
            if type(self.outputs[o]) is not Variable:
                continue
            v = self.outputs[o]
            if v.kind == K_NODE and v.index >= self.lo:
                self.out_node[o] = v.index
            elif v.kind == K_LEAF:
                self.out_input[o] = position.get(id(v), -1)
        return 0

    cdef int _tangent_sweep(self, const double *v, Py_ssize_t only=-1) except -1:
        """Tangents of every node for input tangents v[0..n), or for a tangent
        of 1 on input `only` alone (a column of a Jacobian or Hessian: the
        other inputs have no tangent, rather than a tangent of 0, so an inf
        partial derivative along them cannot make a nan of 0 * inf)."""
        cdef Py_ssize_t j
        cdef int64_t nl = self.nleaves - self.leaf_lo
        self.tg.sweep_from = self.lo
        if only >= 0 and self.entry[only] >= 0:
            # one input alone: nothing below its first use has a tangent
            if not self.first_known:
                ac_first_uses(&self.tape.t, self.lo, self.hi, self.leaf_lo, nl, self.first)
                self.first_known = True
            self.tg.sweep_from = self.first[self.entry[only] - self.leaf_lo]
        memset(<void *>self.tg.leaf_on, 0, nl)
        for j in range(self.n):
            if self.entry[j] >= 0 and (only < 0 or j == only):
                (<uint8_t *>self.tg.leaf_on)[self.entry[j] - self.leaf_lo] = 1
                (<double *>self.tg.leaf_dot)[self.entry[j] - self.leaf_lo] = 1.0 if only >= 0 else v[j]
        self.error = None
        if ac_tangent_sweep(&self.tape.t, self.hi, &self.tg) < 0:
            self._raise_error()
        return 0

    cdef int _reverse_sweep(self, const double *seeds, Py_ssize_t only, bint second,
                            bint tangents_only=False) except -1:
        """Adjoints from the outputs seeded with seeds[o] (or output `only`
        with 1.0); with tangents_only, the adjoints of the previous sweep
        from the same seeds are kept and only their tangents swept.
        Returns 0, or 1 if a Function needs a second-order rule."""
        cdef Py_ssize_t o
        cdef ac_node i, root = -1
        cdef int64_t nl = self.nleaves - self.leaf_lo
        self.ad.tangents_only = tangents_only
        self.ad.tangents = &self.tg if second else NULL
        if second:
            memset(self.ad.leaf_adj_dot, 0, nl * sizeof(double))
        if tangents_only:
            for o in range(self.m):
                if self.out_node[o] >= 0 and (only < 0 or o == only):
                    root = max(root, self.out_node[o])
            return self._run_reverse(root)
        memset(self.ad.state, 0, self.hi - self.lo + 1)
        memset(self.ad.leaf_adj, 0, nl * sizeof(double))
        for o in range(self.m):
            i = self.out_node[o]
            if i < 0 or (only >= 0 and o != only):
                continue
            if self.ad.state[i - self.lo]:
                self.ad.adj[i - self.lo] += 1.0 if only >= 0 else seeds[o]
            else:
                self.ad.state[i - self.lo] = AC_ADJ_REACHED
                self.ad.adj[i - self.lo] = 1.0 if only >= 0 else seeds[o]
            root = max(root, i)
        return self._run_reverse(root)

    cdef int _run_reverse(self, ac_node root) except -1:
        cdef int rc
        if root < 0:
            return 0
        self.tape.fn_results = {} if self.tape.functions else None
        try:
            rc = ac_reverse_sweep(&self.tape.t, root, &self.ad)
        finally:
            self.tape.fn_results = None
        if rc == -2:
            return 1
        if rc < 0:
            self.tape._raise_sweep_error()
        return 0

    cdef int _raise_error(self) except -1:
        err = self.error if self.error is not None else self.tape.sweep_error
        self.error = None
        self.tape.sweep_error = None
        raise err

    cdef inline double _leaf_result(self, double *buf, Py_ssize_t j) noexcept:
        return buf[self.entry[j] - self.leaf_lo] if self.entry[j] >= 0 else 0.0

    def jvp(self, const double[::1] v, double[::1] out):
        """out[o] = sum_j d output_o / d input_j * v[j]: one tangent sweep."""
        cdef Py_ssize_t o, j
        cdef ac_node i
        self._begin(True, False, False)
        try:
            if self.hi >= self.lo:
                self._tangent_sweep(&v[0])
            for o in range(self.m):
                i = self.out_node[o]
                j = self.out_input[o]
                out[o] = (v[j] if j >= 0 else
                          self.tg.dot[i - self.lo] if i >= 0 and self.tg.on[i - self.lo] else 0.0)
        finally:
            _leave_busy(self.tape)

    def vjp(self, const double[::1] seeds, double[::1] out):
        """out[j] = sum_o seeds[o] * d output_o / d input_j: one reverse sweep."""
        cdef Py_ssize_t o, j
        self._begin(False, True, False)
        try:
            if self.hi >= self.lo:
                self._reverse_sweep(&seeds[0], -1, False)
            for j in range(self.n):
                out[j] = self._leaf_result(self.ad.leaf_adj, j) if self.hi >= self.lo else 0.0
            for o in range(self.m):
                if self.out_input[o] >= 0:
                    out[self.out_input[o]] += seeds[o]
        finally:
            _leave_busy(self.tape)

    def jacobian(self, bint forward, double[::1] out):
        """out[o * n + j] = d output_o / d input_j: n tangent sweeps
        (forward, each along one input) or m reverse sweeps."""
        cdef Py_ssize_t o, j, k
        cdef ac_node i
        self._begin(forward, not forward, False)
        try:
            for k in range(self.m * self.n):
                out[k] = 0.0
            if forward and self.hi >= self.lo:
                for j in range(self.n):
                    self._tangent_sweep(NULL, j)
                    for o in range(self.m):
                        i = self.out_node[o]
                        if i >= 0 and self.tg.on[i - self.lo]:
                            out[o * self.n + j] = self.tg.dot[i - self.lo]
            elif not forward:
                for o in range(self.m):
                    if self.out_node[o] < 0:
                        continue
                    self._reverse_sweep(NULL, o, False)
                    for j in range(self.n):
                        out[o * self.n + j] = self._leaf_result(self.ad.leaf_adj, j)
            for o in range(self.m):
                if self.out_input[o] >= 0:
                    out[o * self.n + self.out_input[o]] = 1.0
        finally:
            _leave_busy(self.tape)

    def hvp(self, const double[::1] v, double[::1] grad, double[::1] out):
        """For a one-output recording: grad[j] = d output / d input_j and
        out[j] = sum_k d2 output / d input_j d input_k * v[k], by one tangent
        sweep and one forward-over-reverse sweep."""
        cdef Py_ssize_t j
        cdef int needs_graph = 0
        self._begin(True, True, True)
        try:
            for j in range(self.n):
                grad[j] = 0.0
                out[j] = 0.0
            if self.out_input[0] >= 0:
                grad[self.out_input[0]] = 1.0
            if self.hi >= self.lo:
                self._tangent_sweep(&v[0])
                self.ad.active = self.tg.on          # every input has a tangent
                needs_graph = self._reverse_sweep(NULL, 0, True)
                if not needs_graph:
                    for j in range(self.n):
                        grad[j] = self._leaf_result(self.ad.leaf_adj, j)
                        out[j] = self._leaf_result(self.ad.leaf_adj_dot, j)
        finally:
            _leave_busy(self.tape)
        if needs_graph:      # through a Function: differentiate its recorded backward instead
            grads = self._gradient_graph()
            self._with_outputs(grads).jvp(v, out)
            for j in range(self.n):
                grad[j] = (<Variable>grads[j]).value

    def hessian(self, double[::1] out):
        """out[j * n + k] = d2 output / d input_j d input_k for a one-output
        recording: for each input j, a tangent sweep along it alone and a
        forward-over-reverse sweep (row j: the tangents of the gradient);
        then made symmetric to the last bit (each pair becomes one number)."""
        cdef Py_ssize_t j, k
        cdef int needs_graph = 0
        cdef double *ones = <double *>malloc((len(self.leaves) + 1) * sizeof(double))
        if ones == NULL:
            raise MemoryError()
        for k in range(len(self.leaves)):
            ones[k] = 1.0
        try:
            self._begin(True, True, True)
        except BaseException:
            free(ones)
            raise
        try:
            for k in range(self.n * self.n):
                out[k] = 0.0
            if self.hi >= self.lo:
                # the adjoints once (first order), then per input j only their
                # tangents, through the nodes that depend on input j
                self._reverse_sweep(NULL, 0, False)
                self._tangent_sweep(ones)            # what depends on some input
                memcpy(self.active, self.tg.on, self.hi - self.lo + 1)
                self.ad.active = self.active
                for j in range(self.n):
                    if self.entry[j] < 0:
                        continue         # f does not use input j: its row is 0
                    self._tangent_sweep(NULL, j)
                    needs_graph = self._reverse_sweep(NULL, 0, True, True)
                    if needs_graph:
                        break
                    for k in range(self.n):
                        out[j * self.n + k] = self._leaf_result(self.ad.leaf_adj_dot, k)
        finally:
            _leave_busy(self.tape)
            free(ones)
        if needs_graph:
            self._with_outputs(self._gradient_graph()).jacobian(True, out)
        _symmetrise(out, self.n)

    cdef list _gradient_graph(self):
        """The gradient as recorded Variables (create_graph), for Functions."""
        if type(self.outputs[0]) is not Variable:
            return [_new_constant(0.0) for _ in self.leaves]
        return _grad_graph(self.outputs[0], self.leaves, 1.0)


# The sweeps' buffers of the latest call, kept for the next one (a loop of
# jvp/hvp calls then touches the same pages instead of fresh ones).
cdef void *_spare_block = NULL
cdef size_t _spare_block_size = 0
cdef enum:
    BLOCK_KEEP_MAX = 32 << 20


cdef void *_take_block(size_t size, size_t *got) noexcept:
    global _spare_block
    cdef void *p
    if _spare_block != NULL and _spare_block_size >= size:
        p = _spare_block
        _spare_block = NULL
        got[0] = _spare_block_size
        return p
    got[0] = size
    return malloc(size)


cdef void _give_block(void *p, size_t size) noexcept:
    global _spare_block, _spare_block_size
    if p == NULL:
        return
    if size <= BLOCK_KEEP_MAX and (_spare_block == NULL or _spare_block_size < size):
        free(_spare_block)
        _spare_block = p
        _spare_block_size = size
    else:
        free(p)


cdef void _symmetrise(double[::1] h, Py_ssize_t n) noexcept:
    """h[j, k] and h[k, j] both become their mean (kept when they are equal):
    symmetric to the last bit, since a + b == b + a in IEEE arithmetic."""
    cdef Py_ssize_t j, k
    cdef double a, b
    for j in range(n):
        for k in range(j + 1, n):
            a = h[j * n + k]
            b = h[k * n + j]
            if a != b:
                a = 0.5 * a + 0.5 * b
                h[j * n + k] = a
                h[k * n + j] = a


cdef int _function_jvp(void *ctx, ac_node i, const double *tangents, const uint8_t *on,
                       double *out) noexcept:
    """ac_tangents.custom_jvp: a Function node's tangent from its jvp()
    (which by default derives it from backward(1.0)).  Grad mode is off."""
    cdef _Recording r = <_Recording>ctx
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    cdef ac_tape *t = &r.tape.t
    cdef int64_t k, m = ac_nargs(t, i)
    ts.grad_enabled = 0
    try:
        fn = r.tape.functions[i]
        inputs = tuple([_arg_value(t, ac_arg(t, i, k)) for k in range(m)])
        result = fn._jvp_call(inputs, t.val[i], tuple([tangents[k] for k in range(m)]))
        if type(result) is Variable:
            out[0] = (<Variable>result).value
        elif not _number(result, out):
            raise TypeError(
                f"{type(fn).__name__}.jvp() must return a real number, not {type(result).__name__}")
        return 0
    except BaseException as e:
        r.error = e
        return -1
    finally:
        ts.grad_enabled = enabled
