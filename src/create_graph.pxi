# create_graph.pxi -- create_graph=True: the backward pass recorded as ordinary tape nodes.
#
# Holds: _GraphWalk, which walks a graph from its output down and evaluates
# each reached node's adjoint column with recorder numbers
# (ac_record_adjoint in src/higher.cpp), whose operations call back into
# the recorder here (_walk_binary, _walk_unary), so gradients are Variables
# that can be differentiated again; a Function node runs its backward on
# Variables.  _backward_graph (backward(create_graph=True)),
# _accumulate_graph_grad (a leaf's .grad as a Variable) and _grad_graph
# (grad(..., create_graph=True)) hand out the results.
# May touch: the tape, pinned (not busy) during a walk: it records, and so
# may user code meanwhile; compaction waits, so the node indices held stay
# right, and the tape's arrays are read afresh after every recording.
# Leaves' grad_value/grad_obj, recorded Variables' .grad (as backward()).


cdef object _record_binary(int op, object left, object right):
    """left op right recorded as Python's operator would (one of the five
    binary opcodes ac_rec_hooks.binary passes)."""
    if op == AC_ADD:
        return _binary(AC_ADD, AC_ADDC, AC_ADDC, left, right)
    if op == AC_SUB:
        return _binary(AC_SUB, AC_ADDC, AC_RSUBC, left, right)
    if op == AC_MUL:
        return _binary(AC_MUL, AC_MULC, AC_MULC, left, right)
    if op == AC_DIV:
        return _binary(AC_DIV, AC_DIVC, AC_RDIVC, left, right)
    return _binary(AC_POW, AC_POWC, AC_RPOWC, left, right)


cdef int _walk_binary(void *ctx, int op, const ac_rec *a, const ac_rec *b, ac_rec *out) noexcept:
    """ac_rec_hooks.binary of a _GraphWalk."""
    cdef _GraphWalk walk = <_GraphWalk>ctx
    if walk.error is not None:
        return -1                  # a failure earlier in this formula: record nothing more
    try:
        walk.keep(_record_binary(op, walk.obj(a), walk.obj(b)), out)
        return 0
    except BaseException as e:
        walk.error = e
        return -1


cdef int _walk_unary(void *ctx, int op, const ac_rec *a, ac_rec *out) noexcept:
    """ac_rec_hooks.unary of a _GraphWalk."""
    cdef _GraphWalk walk = <_GraphWalk>ctx
    if walk.error is not None:
        return -1
    try:
        walk.keep(_unary(op, walk.obj(a)), out)
        return 0
    except BaseException as e:
        walk.error = e
        return -1


@cython.final
cdef class _GraphWalk:
    """One create_graph pass: from the output down to the lowest node it
    reaches, each reached node's adjoint (a Variable or a number) is handed
    to its operands through its adjoint column, evaluated with recorder
    numbers, and contributions to one operand are added (recorded too), as
    PyTorch's engine does with create_graph=True.

    Only what the output reaches is visited, each node once, after all its
    users (index order), exactly as the first-order exact sweep.  While it
    runs the tape is pinned, not busy: recording is what it does, and user
    code (a Function's backward, a finalizer) may record too; compaction
    waits, so the node indices held here stay right, and the tape's arrays
    are read afresh after every recording.
    """
    cdef Tape tape
    cdef ac_rec_hooks hooks
    cdef list arena                  # objects made while one node's formulas were evaluated
    cdef object error                # what a recording raised (the hooks return -1)
    cdef ac_rec *adj                 # [root - base + 1] node adjoints, node i at [i - base]
                                     # (AC_REC_OBJECT: owned references)
    cdef ac_node base                # the lowest node the output reaches
    cdef ac_rec *leaf_adj            # [nleaves] leaf entry adjoints (likewise)
    cdef double *values              # [root + 1] adjoint values, for .grad of recorded Variables
    cdef ac_node root, low
    cdef int64_t nleaves
    cdef dict wanted_nodes           # node -> None, filled with its adjoint (an object) as it passes

    def __cinit__(self):
        self.arena = []
        self.hooks.binary = _walk_binary
        self.hooks.unary = _walk_unary
        self.hooks.ctx = <void *>self

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef ac_node i
        cdef int64_t k
        cdef ac_rec *adj = self.adj
        cdef ac_rec *leaf_adj = self.leaf_adj
        cdef ac_node n = self.root - self.base + 1
        self.adj = NULL
        self.leaf_adj = NULL
        if adj != NULL:
            for i in range(n):
                if adj[i].kind == AC_REC_OBJECT:
                    Py_DECREF(<object>adj[i].obj)
            free(adj)
        if leaf_adj != NULL:
            for k in range(self.nleaves):
                if leaf_adj[k].kind == AC_REC_OBJECT:
                    Py_DECREF(<object>leaf_adj[k].obj)
            free(leaf_adj)
        free(self.values)
        self.values = NULL

    cdef object obj(self, const ac_rec *r):
        """A recorder number as the object an operation takes."""
        if r.kind == AC_REC_NUMBER:
            return r.v
        if r.kind == AC_REC_OBJECT:
            return <object>r.obj
        if r.kind == AC_REC_OPERAND:
            return self.operand(r.ref)
        raise RuntimeError("internal error: a recorder number without a value")

    cdef object operand(self, ac_ref ref):
        """The Variable of a tape operand: a leaf, or the node's Variable."""
        cdef ac_tape *t = &self.tape.t
        cdef int64_t k
        if ref & AC_LEAF_BIT:
            k = ref & AC_REF_INDEX
            if _is_stale(t, k):
                _raise_stale(t, k)
            return <object>t.leaf_obj[k]
        return _walk_node_object(self.tape, <ac_node>ref)

    cdef int keep(self, object r, ac_rec *out) except -1:
        """A recorded result as a recorder number (a constant result as a number)."""
        cdef Variable v = r
        out.v = v.value
        out.ref = 0
        out.obj = NULL
        out.hooks = NULL
        if v.kind == K_CONST:
            out.kind = AC_REC_NUMBER
            return 0
        self.arena.append(v)
        out.kind = AC_REC_OBJECT
        out.obj = <void *>v
        out.hooks = &self.hooks
        return 0

    cdef int add(self, ac_ref ref, ac_rec c) except -1:
        """Add contribution c to the adjoint of operand ref."""
        cdef ac_rec *slot
        cdef ac_rec total, old
        if c.kind == AC_REC_OPERAND:
            self.keep(self.operand(c.ref), &c)
        if ref & AC_LEAF_BIT:
            slot = &self.leaf_adj[ref & AC_REF_INDEX]
        else:
            slot = &self.adj[ref - self.base]
            if <ac_node>ref < self.low:
                self.low = <ac_node>ref
        if slot.kind == AC_REC_NONE:
            slot[0] = c
            if c.kind == AC_REC_OBJECT:
                Py_INCREF(<object>c.obj)
            return 0
        if ac_record_binary(AC_ADD, slot, &c, &self.hooks, &total) < 0:
            self._raise()
        if total.kind == AC_REC_OBJECT:
            Py_INCREF(<object>total.obj)
        old = slot[0]
        slot[0] = total
        if old.kind == AC_REC_OBJECT:
            Py_DECREF(<object>old.obj)
        return 0

    cdef int _raise(self) except -1:
        err = self.error
        self.error = None
        raise err

    cdef int run(self, Tape tape, ac_node root, object seed) except -1:
        """Walk from node root, whose adjoint is seed (a Variable or a number)."""
        cdef ac_tape *t = &tape.t
        cdef ac_thread_state *ts = ac_this_thread()
        cdef int enabled = ts.grad_enabled
        cdef ac_node i
        cdef ac_rec g
        cdef ac_rec out[2]
        cdef ac_code w
        cdef int op
        cdef int64_t k, m
        cdef ac_ref rx, rz, ra, rb
        cdef Py_ssize_t visited = 0
        cdef ac_sweep_result reach
        self.tape = tape
        self.root = root
        self.low = root
        self.nleaves = t.nleaves
        # only [base, root] can be reached: the marks are set and cleared with
        # no Python code in between (the first-order sweeps use them too)
        ac_mark_reachable(t, root, &reach)
        ac_clear_marks(t, &reach, root)
        self.base = reach.lo
        self.adj = <ac_rec *>calloc(root - self.base + 1, sizeof(ac_rec))
        self.leaf_adj = <ac_rec *>calloc(self.nleaves + 1, sizeof(ac_rec))
        self.values = <double *>calloc(root + 1, sizeof(double))
        if self.adj == NULL or self.leaf_adj == NULL or self.values == NULL:
            raise MemoryError(f"out of memory allocating adjoints for {root + 1:,} nodes")
        memset(&g, 0, sizeof(ac_rec))
        if type(seed) is Variable and (<Variable>seed).kind != K_CONST:
            self.keep(seed, &g)
        else:
            g.kind = AC_REC_NUMBER
            g.v = float(seed)
        self.add(<ac_ref>root, g)
        _pin(tape)
        ts.grad_enabled = 1            # the pass is recorded, whatever the caller's mode
        try:
            i = root
            while i >= self.low:
                if self.adj[i - self.base].kind == AC_REC_NONE:
                    i -= 1
                    continue
                visited += 1
                if visited & 1023 == 0:
                    PyErr_CheckSignals()
                g = self.adj[i - self.base]    # the slot keeps the reference until the node is done
                self.values[i] = g.v
                w = t.code[i]
                op = ac_opcode(w)
                # operands are read as ac_refs through tape.h's accessors, afresh
                # after each recording: recording moves the operand lists, and
                # may switch the tape to its wide layout (tape.h)
                if op == AC_SUM:
                    m = ac_nargs(t, i)
                    for k in range(m):
                        rx = ac_arg(t, i, k)
                        if not rx & AC_CONST_BIT:
                            self.add(rx, g)
                elif op == AC_DOT:
                    m = ac_nargs(t, i)
                    for k in range(0, m - 1, 2):
                        rx = ac_arg(t, i, k)
                        rz = ac_arg(t, i, k + 1)
                        if not rx & AC_CONST_BIT:
                            self._add_product(rx, &g, rz)
                        if not rz & AC_CONST_BIT:
                            self._add_product(rz, &g, rx)
                elif op == AC_CUSTOM:
                    self._function(i, &g)
                else:
                    ra = ac_ref_a(t, i)
                    rb = ac_ref_b(t, i) if op >= AC_ADD else 0
                    if ac_record_adjoint(t, i, &g, &self.hooks, out) < 0:
                        self._raise()
                    self.add(ra, out[0])
                    if op >= AC_ADD:
                        self.add(rb, out[1])
                if self.wanted_nodes is not None and i in self.wanted_nodes:
                    self.wanted_nodes[i] = self._total(&self.adj[i - self.base])
                # done with node i: its adjoint, and what its formulas made
                if self.adj[i - self.base].kind == AC_REC_OBJECT:
                    Py_DECREF(<object>self.adj[i - self.base].obj)
                self.adj[i - self.base].kind = AC_REC_NONE
                self.arena.clear()
                i -= 1
        finally:
            ts.grad_enabled = enabled
            _unpin(tape)
            self.arena.clear()
        return 0

    cdef int _add_product(self, ac_ref target, ac_rec *g, ac_ref other) except -1:
        """AC_DOT: g times the other factor of a pair goes to target."""
        cdef ac_rec z, prod
        cdef ac_tape *t = &self.tape.t
        memset(&z, 0, sizeof(ac_rec))
        if other & AC_CONST_BIT:
            z.kind = AC_REC_NUMBER
            z.v = t.consts[other & ~AC_CONST_BIT]
        else:
            self.keep(self.operand(other), &z)
        if ac_record_binary(AC_MUL, g, &z, &self.hooks, &prod) < 0:
            self._raise()
        return self.add(target, prod)

    cdef int _function(self, ac_node i, ac_rec *g) except -1:
        """A Function node: its backward, run on Variables, is recorded."""
        cdef ac_tape *t = &self.tape.t
        cdef int64_t k, m = ac_nargs(t, i)
        cdef ac_ref ref
        cdef ac_rec c
        memset(&c, 0, sizeof(ac_rec))
        fn = self.tape.functions[i]
        name = type(fn).__name__
        refs = [ac_arg(t, i, k) for k in range(m)]     # a copy: recording moves the lists
        if g.kind == AC_REC_NUMBER and g.v == 0.0:      # no gradient flows: no call, as backward()
            c.kind = AC_REC_NUMBER
            c.v = 0.0
            for ref in refs:
                if not <ac_ref>ref & AC_CONST_BIT:
                    self.add(<ac_ref>ref, c)
            return 0
        if not getattr(fn, "differentiable_backward", False):
            raise RuntimeError(
                f"create_graph=True (and hvp/hessian through a Function) needs the derivative of "
                f"{name}.backward(), which computes with floats: write backward() with "
                f"autograd_c operations and set differentiable_backward = True on {name}; in "
                "create_graph passes self.inputs, self.output and gy are then Variables")
        inputs = tuple([t.consts[<ac_ref>r & ~AC_CONST_BIT] if <ac_ref>r & AC_CONST_BIT
                        else self.operand(<ac_ref>r) for r in refs])
        result = fn._backward_call(inputs, _walk_node_object(self.tape, i), self.obj(g))
        if type(result) is not tuple and type(result) is not list:
            if m != 1:
                raise ValueError(f"{name}.backward() returned 1 gradient for {m} inputs")
            result = (result,)
        if len(result) != m:
            raise ValueError(f"{name}.backward() returned {len(result)} gradients for {m} inputs")
        for k in range(m):
            gk = result[k]
            if gk is None:
                c.kind = AC_REC_NUMBER
                c.v = 0.0
            elif type(gk) is Variable:
                self.keep(gk, &c)
            elif _number(gk, &c.v):
                c.kind = AC_REC_NUMBER
            else:
                raise TypeError(
                    f"{name}.backward() must return Variables or real numbers, but gradient {k} "
                    f"is {type(gk).__name__}")
            ref = refs[k]
            if not ref & AC_CONST_BIT:
                self.add(ref, c)
        return 0

    cdef object _total(self, ac_rec *r):
        """An adjoint as what the user gets: a Variable (a constant one for a number)."""
        if r.kind == AC_REC_OBJECT:
            return <object>r.obj
        if r.kind == AC_REC_NUMBER:
            return _new_constant(r.v)
        if r.kind == AC_REC_OPERAND:
            return self.operand(r.ref)
        return _new_constant(0.0)

    cdef int check_leaves(self) except -1:
        """As backward(): a reached leaf entry that no longer stands for its value refuses."""
        cdef int64_t k
        for k in range(self.nleaves):
            if self.leaf_adj[k].kind != AC_REC_NONE and _is_stale(&self.tape.t, k):
                _raise_stale(&self.tape.t, k)
        return 0


cdef object _walk_node_object(Tape tape, ac_node i):
    """The Variable of node i during a create_graph pass (_node_object), never
    recomputing a previous pass's adjoints for its .grad: that is a sweep,
    which would run Functions' backward mid-pass.  Where they were not kept
    (graphs above 2^20 nodes) they become unknown (.grad None)."""
    if tape.kept_adj == NULL:
        tape.kept_valid = False
    return _node_object(tape, i)


cdef int _check_graph_output(Variable v, str what) except -1:
    if v.kind == K_CONST:
        raise RuntimeError(
            f"{what} of a Variable that does not require grad: it is a constant "
            "(requires_grad=False, computed under no_grad(), or from constants only)")
    return 0


cdef object _seed_object(object gradient, str what):
    """A seed: a Variable (kept), or a number."""
    if type(gradient) is Variable:
        return gradient
    return _real(gradient, what)


cdef int _backward_graph(Variable v, object gradient) except -1:
    """Variable.backward(create_graph=True)."""
    cdef object seed = _seed_object(gradient, "backward() gradient")
    cdef Tape tape
    cdef _GraphWalk walk
    cdef int64_t k
    cdef ac_node i
    _check_settable(v, "call backward()")
    _check_graph_output(v, "backward()")
    if v.kind == K_LEAF:
        _accumulate_graph_grad(v, seed)
        return 0
    tape = _owning_tape(v)
    walk = _GraphWalk()
    # Pinned until every result is read by node and leaf-entry index: making
    # the result objects allocates, and a finalizer may record meanwhile.
    _pin(tape)
    try:
        walk.run(tape, v.index, seed)
        walk.check_leaves()
        delivered = [(<object>tape.t.leaf_obj[k], walk._total(&walk.leaf_adj[k]))
                     for k in range(walk.nleaves)
                     if walk.leaf_adj[k].kind != AC_REC_NONE
                     and (<Variable>tape.t.leaf_obj[k]).kind == K_LEAF]
        # recorded Variables show this pass's adjoints as .grad, as after backward()
        _keep_adjoints(tape, walk.values, walk.low, walk.root)
        _forget_pass(tape)
        tape.kept_root = walk.root
        tape.kept_lo = walk.low
        if walk.root + 1 <= ADJ_KEEP_MAX:
            tape.kept_adj = walk.values      # the tape frees it (_forget_pass)
            tape.kept_owned = True
            walk.values = NULL
            tape.kept_valid = True
    finally:
        _unpin(tape)
    for leaf, g in delivered:               # records: the tape may compact from here
        _accumulate_graph_grad(leaf, g)
    return 0


cdef int _accumulate_graph_grad(Variable leaf, object g) except -1:
    """Add gradient g (a Variable or a number) to a leaf's .grad as a
    recorded operation when either has a graph, as PyTorch's
    AccumulateGrad does with create_graph=True."""
    cdef double pending = 0.0
    cdef Variable new
    current = leaf.grad                  # a Variable, or a float (pending included)
    if type(g) is Variable and (<Variable>g).kind == K_CONST:
        g = (<Variable>g).value
    if type(current) is not Variable:
        if type(g) is not Variable:
            _set_leaf_grad(leaf, current + g)
            return 0
        total = g if current == 0.0 else _record_binary(AC_ADD, current, g)
    else:
        total = _record_binary(AC_ADD, current, g)
    new = total
    _set_leaf_grad(leaf, new.value)
    if new.kind != K_CONST:
        _incref(<PyObject *>new)
        leaf.grad_obj = <PyObject *>new
    return 0


cdef list _grad_graph(Variable out, list inputs, object seed):
    """grad(out, inputs, create_graph=True): the gradients as Variables."""
    cdef Tape tape
    cdef _GraphWalk walk
    cdef Variable v
    cdef int64_t k
    cdef Py_ssize_t j
    _check_graph_output(out, "grad()")
    if out.kind == K_LEAF:
        return [(seed if type(seed) is Variable else _new_constant(seed)) if x is out
                else _new_constant(0.0) for x in inputs]
    tape = _owning_tape(out)
    walk = _GraphWalk()
    _pin(tape)           # as in _backward_graph: nodes are known by index from here
    try:
        walk.wanted_nodes = {}
        for x in inputs:
            v = x
            if v.kind == K_NODE and v.owner == <PyObject *>tape and v.index <= out.index:
                walk.wanted_nodes[v.index] = None
        walk.run(tape, out.index, seed)
        walk.check_leaves()
        wanted = {id(x): None for x in inputs if (<Variable>x).kind == K_LEAF}
        for k in range(walk.nleaves):  # a leaf may have several entries: their adjoints add up
            if walk.leaf_adj[k].kind == AC_REC_NONE:
                continue
            key = id(<object>tape.t.leaf_obj[k])
            if key in wanted:
                g = walk._total(&walk.leaf_adj[k])
                wanted[key] = g if wanted[key] is None else _record_binary(AC_ADD, wanted[key], g)
        result = []
        for x in inputs:
            v = x
            g = None
            if v.kind == K_LEAF:
                g = wanted[id(v)]
            elif v is out:
                g = seed
            elif v.kind == K_NODE and v.owner == <PyObject *>tape:
                g = walk.wanted_nodes.get(v.index)
            if g is None:
                g = _new_constant(0.0)
            elif type(g) is not Variable:
                g = _new_constant(g)
            result.append(g)
    finally:
        _unpin(tape)
    return result
