# tape_memory.pxi -- each thread's Tape and the memory it holds.
#
# Holds: the Tape class and its fields: creation and
# teardown, reset when no recorded Variable is alive, growth (_make_room),
# mark-compact of what live Variables reach (_compact), the adjoint buffer
# backward() borrows, and the busy and pinned states that keep it consistent
# while Python code runs inside the core (_enter_busy, _pin, _check_*).  Also the thread -> tape mapping
# and the test hooks that force compaction.
# May touch: the C tape (tape.h) and the live-Variable registry; it calls into
# variable.pxi for leaves (_detach) and introspection.pxi for _drop_objmap
# and _forget_pass.
# Memory rules are described in docs/architecture.md ("Memory").

# Memory budget.  A tape's footprint is what it holds in bytes: 16 per node,
# CONST_BYTES per constant (8 in the pool, counted as a node's worth so the
# hot path can charge it), 4 per operand-list word, and LEAF_ENTRY_BYTES per
# leaf entry (29 in the leaf table plus the leaf object the entry keeps
# alive).  Compaction runs before the footprint passes the budget: twice the
# footprint that survived the previous compaction, never below the floor.
cdef int64_t _compaction_floor_bytes = 16 << 20
cdef enum:
    NODE_BYTES = 16
    CONST_BYTES = 16
    LEAF_ENTRY_BYTES = 128

# backward() and grad() each keep their adjoint buffer for the next call
# while the tape holds its graph, so a large graph does not fault a fresh
# buffer in (8 bytes a node) on every pass.  A reset frees buffers above
# ADJ_KEEP_MAX adjoints (8 MB); a compaction frees those far larger than the
# tape it leaves.
cdef enum:
    ADJ_KEEP_MAX = 1 << 20

# Python code can run in the middle of the core's work (a Function's
# backward, a finalizer the garbage collector calls at an allocation, the
# __del__ of something dropped).  Two states keep the tape consistent for it
# (docs/architecture.md, "Re-entrancy"):
#   busy (t.busy)      a sweep reads the arrays: recording, compaction,
#                      backward() and leaf assignments on this tape raise
#   pinned (pinned)    node indices are held: recording is fine, but
#                      compaction and reset wait until it ends


# ---------------------------------------------------------------------------
# Tape: one per thread
# ---------------------------------------------------------------------------

@cython.final
cdef class Tape:
    """The Wengert list of one thread (internal; users never handle it).

    Owns the C arrays (``t``), a strong reference to every leaf recorded in
    it (the leaf table) and a registry of the live recorded Variables: the
    roots from which compaction finds what is still reachable.
    """
    cdef ac_tape t
    cdef PyObject *live_head      # registry: doubly linked through Variable.prev/next
    cdef Py_ssize_t live          # recorded Variables alive (K_NODE)
    cdef int64_t budget           # compact before the footprint passes this many bytes
    cdef ac_node limit            # recording takes the slow path (_make_room) at this many
                                  # nodes: min(capacity, what the budget allows); 0 while busy
    cdef Py_ssize_t compactions   # passes that moved nodes
    cdef Py_ssize_t passes        # marking passes run (some find every node reachable)
    cdef Py_ssize_t skipped       # passes skipped: nothing could have become unreachable
    # Events since the last pass (or reset) that may have left a node
    # unreachable: a recorded Variable died whose node no operation had taken
    # as an operand, or a recording failed midway.  While it is 0 (and no leaf
    # entry is a past one, which could make a graph stale), every node is
    # still reachable, so a pass would free nothing.  Why this suffices: the
    # highest unreachable node is an operand of no node (its users would be
    # unreachable too, and higher), so when it became unreachable its last
    # Variable died while its node was a sink.
    cdef Py_ssize_t maybe_garbage
    cdef Py_ssize_t alloc_failures_seen   # _alloc_failures at the last pass or reset
    cdef int pinned               # nested _pin calls: compaction and reset wait (t.busy:
                                  # nested _enter_busy calls, nothing may change the tape)
    cdef bint reset_pending       # the last live Variable died while busy or pinned
    cdef double *spare_adj        # backward()'s adjoint buffer, kept between calls (_adjoints)
    cdef int64_t spare_adj_size   # adjoints it holds for this tape (the rest of spare_adj_alloc
    cdef int64_t spare_adj_alloc  # is with tape_retain.c since the last graph died)
    cdef double *grad_adj         # grad()'s, so that grad() leaves backward()'s adjoints alone
    cdef int64_t grad_adj_size
    cdef int64_t grad_adj_alloc
    cdef unsigned long thread_id
    cdef object thread_name
    cdef dict functions           # node index -> the Function object of each AC_CUSTOM node
    cdef double *fn_grads         # a Function's gradients, handed to the sweep
    cdef Py_ssize_t fn_grads_size
    cdef object sweep_error       # the exception a Function's backward raised mid-sweep
    cdef dict fn_results          # node -> gradients its Function's backward gave in this pass
    cdef PyObject **objmap        # node -> its live Variable (borrowed) or NULL; for _prev
    cdef ac_node objmap_size      # nodes objmap covers; NULL objmap: not built
    cdef dict const_objs          # (node, operand position) -> a constant Variable, for _prev
    # The latest backward() pass, so that node objects made later (_prev)
    # show its adjoints (introspection.pxi, _kept_adjoint):
    cdef ac_node kept_root        # its output node; -1: no pass since the last reset/compaction
    cdef ac_node kept_lo          # the lowest node it reached
    cdef double *kept_adj         # its adjoints (spare_adj, or a create_graph pass's own buffer), or NULL
    cdef bint kept_valid          # kept_adj holds them (zero_grad() may have made them unknown)
    cdef bint kept_owned          # kept_adj is a create_graph pass's buffer, freed by _forget_pass
    cdef ac_node known_from       # nodes below this existed before the last compaction, when
                                  # a pass was known: their adjoint is unknown (.grad None)
    cdef uint64_t epoch           # counts the events that renumber nodes (compaction, reset), so a
                                  # caller holding indices across Python code can tell

    def __cinit__(self):
        ac_tape_init(&self.t)
        self.t.custom_backward = _function_backward
        self.t.poll = _poll_interrupt
        self.t.custom_ctx = <void *>self
        self.functions = {}
        self.const_objs = {}
        self.kept_root = -1
        self.live_head = NULL
        self.budget = _compaction_floor_bytes
        self.limit = 0

    def __dealloc__(self):
        cdef ac_thread_state *ts = ac_this_thread()
        if ts.tape == <void *>self:
            ts.tape = NULL
        self._release_leaves()
        ac_tape_free(&self.t)
        _forget_pass(self)
        free(self.spare_adj)
        free(self.grad_adj)
        free(self.fn_grads)
        free(self.objmap)

    cdef void _release_leaves(self) noexcept:
        """Drop the leaf table; leaves whose current entry is here take
        their pending gradient and forget the entry."""
        cdef int64_t k, n = self.t.nleaves
        cdef void **objs = self.t.leaf_obj
        self.t.nleaves = 0          # first: a leaf dealloc below must see an empty table
        for k in range(n):
            if self.t.leaf_flags[k] & AC_LEAF_CURRENT:
                _detach(<Variable>objs[k])
            Py_DECREF(<object>objs[k])
        self.t.ndetached = 0

    cdef void _reset(self) noexcept:
        """No recorded Variable is alive: forget everything in O(leaves).
        Deferred while the tape is busy or pinned (_leave_busy, _unpin)."""
        cdef int64_t k, n = self.t.nleaves
        cdef void **dropped
        if self.t.busy or self.pinned:
            self.reset_pending = True
            return
        self.reset_pending = False
        dropped = <void **>malloc((n + 1) * sizeof(void *))
        if dropped == NULL:
            self._release_leaves()         # no memory to defer the releases: drop them in place
            n = 0
        else:
            for k in range(n):
                if self.t.leaf_flags[k] & AC_LEAF_CURRENT:
                    _detach(<Variable>self.t.leaf_obj[k])
                dropped[k] = self.t.leaf_obj[k]
            self.t.nleaves = 0
            self.t.ndetached = 0
        ac_tape_clear(&self.t)
        self.maybe_garbage = 0
        self.alloc_failures_seen = _alloc_failures
        _drop_objmap(self)
        _forget_pass(self)
        self.known_from = 0
        self.budget = _compaction_floor_bytes
        self._retain()
        self.epoch += 1
        self._set_limit()
        old_consts, old_functions = self.const_objs, self.functions
        if self.const_objs:
            self.const_objs = {}
        if self.functions:
            self.functions = {}
        # last, on a consistent empty tape: dropping these may run finalizers
        # (a label's or a Function's __del__), which may record on this tape
        for k in range(n):
            Py_DECREF(<object>dropped[k])
        free(dropped)
        del old_consts, old_functions

    cdef int64_t _footprint(self) noexcept:
        """Bytes the tape holds (see _compaction_floor_bytes)."""
        return (self.t.size * _node_bytes(self) + self.t.nconsts * CONST_BYTES
                + self.t.nargs * _arg_bytes(self) + self.t.nleaves * LEAF_ENTRY_BYTES)

    cdef void _set_limit(self) noexcept:
        """Where _reserve's one compare sends recording to the slow path:
        when the node arrays are full or the footprint reaches the budget
        (unless pinned, when the tape just grows).  In the narrow layout, also
        before an operation could find no room for its new leaf entries (up
        to 2) or constant (1): each lowers the limit by its cost as it is
        added (8 and 1), so the slow path widens the tape between
        operations, never in the middle of one (see _make_room)."""
        cdef int64_t room = self.t.capacity - self.t.size
        if not self.pinned:                # pinned: no compaction, the tape just grows
            room = min(room, (self.budget - self._footprint()) // _node_bytes(self))
        if self.t.hi == NULL:
            room = min(room, (_narrow_cap(AC_MAX_LEAVES) - self.t.nleaves - 2) * (LEAF_ENTRY_BYTES // NODE_BYTES),
                       _narrow_cap(AC_MAX_CONSTS) - self.t.nconsts - 1)
        if self.t.busy:
            self.limit = 0                 # every recording attempt reaches _make_room, which refuses
        else:
            self.limit = self.t.size + max(0, room)

    cdef int _compact_and_reschedule(self, ac_node nodes, int64_t words,
                                     bint force=False) except -1:
        """Compact, then set the budget to twice what survived plus what the
        caller is about to add.  The pass is skipped when it could free
        nothing (see maybe_garbage): a graph that only grows is never walked."""
        _check_not_busy(self, "record operations")
        if self.pinned:
            raise RuntimeError("cannot compact now: this thread's tape is being walked")
        if (force or self.maybe_garbage or self.t.ndetached
                or self.alloc_failures_seen != _alloc_failures):
            self._compact()
        else:
            self.skipped += 1
        self.budget = max(2 * (self._footprint() + nodes * _node_bytes(self) + words * _arg_bytes(self)),
                          _compaction_floor_bytes)
        self._set_limit()
        return 0

    cdef double *_adjoints(self, int64_t n, bint for_grad) except NULL:
        """The buffer for n adjoints of backward() (or of grad()), kept for
        the next call.  A new one is sized for the tape's capacity (at most
        2n), so a growing graph reallocates it as rarely as its node arrays;
        after a graph died, the next graph takes back what it needs of the
        part that went to tape_retain.c."""
        cdef double **buf = &self.grad_adj if for_grad else &self.spare_adj
        cdef int64_t *size = &self.grad_adj_size if for_grad else &self.spare_adj_size
        cdef int64_t *alloc = &self.grad_adj_alloc if for_grad else &self.spare_adj_alloc
        cdef int64_t want
        if not for_grad:
            _forget_pass(self)             # this pass overwrites the previous one's adjoints
        if n <= size[0]:
            return buf[0]
        if n <= alloc[0]:
            want = min(alloc[0], max(n, 2 * size[0]))
            ac_retain_take(&self.t.retained, buf[0], want * sizeof(double))
            size[0] = want
            return buf[0]
        self._free_adjoints(for_grad)      # its contents are not needed: no realloc copy
        want = max(n, min(2 * n, self.t.capacity + self.t.nleaves + 1))
        buf[0] = <double *>malloc(want * sizeof(double))
        if buf[0] == NULL and want > n:
            want = n
            buf[0] = <double *>malloc(want * sizeof(double))
        if buf[0] == NULL:
            raise MemoryError(f"out of memory allocating adjoints for {n:,} nodes")
        size[0] = alloc[0] = want
        return buf[0]

    cdef void _free_adjoints(self, bint for_grad) noexcept:
        cdef double **buf = &self.grad_adj if for_grad else &self.spare_adj
        if not for_grad and self.kept_adj == self.spare_adj:
            _forget_pass(self)
        ac_retain_take(&self.t.retained, buf[0], <size_t>-1)   # the reaper must not see it go
        free(buf[0])
        buf[0] = NULL
        if for_grad:
            self.grad_adj_size = self.grad_adj_alloc = 0
        else:
            self.spare_adj_size = self.spare_adj_alloc = 0

    cdef void _trim_adjoints(self, int64_t keep) noexcept:
        """Free the adjoint buffers larger than keep adjoints."""
        if self.spare_adj_alloc > keep:
            self._free_adjoints(False)
        if self.grad_adj_alloc > keep:
            self._free_adjoints(True)

    cdef void _retain(self) noexcept:
        """The graph died: keep its large arrays and adjoint buffers for the
        next recording, which would otherwise fault all that memory in
        again: arrays above AC_SHRINK_ABOVE entries (buffers above
        ADJ_KEEP_MAX adjoints) go to tape_retain.c, which gives back to the
        OS what the next graph has not taken back about a second later.
        Where that is not available, free them now."""
        cdef void *extra[2]
        cdef size_t lo[2]
        cdef size_t hi[2]
        cdef int n = 0
        if self.spare_adj_alloc > ADJ_KEEP_MAX:
            extra[n] = self.spare_adj
            lo[n] = 0
            hi[n] = self.spare_adj_alloc * sizeof(double)
            n += 1
        if self.grad_adj_alloc > ADJ_KEEP_MAX:
            extra[n] = self.grad_adj
            lo[n] = 0
            hi[n] = self.grad_adj_alloc * sizeof(double)
            n += 1
        if ac_tape_retain(&self.t, extra, lo, hi, n) == 0:
            if self.spare_adj_alloc > ADJ_KEEP_MAX:
                self.spare_adj_size = 0
            if self.grad_adj_alloc > ADJ_KEEP_MAX:
                self.grad_adj_size = 0
        else:
            ac_tape_free_large(&self.t)
            self._trim_adjoints(ADJ_KEEP_MAX)

    cdef int _make_room(self, ac_node n, int64_t words=0) except -1:
        """Slow path of _reserve: room for n nodes and an operand list of
        `words` words; compacts first if the budget would be passed, and
        widens a narrow tape that could not take them, or the leaf entries
        and constants they may bring (one per word, or 2 for a node without
        a list), so that no operation ever finds the narrow layout full
        halfway through."""
        cdef int rc
        cdef int64_t refs = words + 2
        _check_not_busy(self, "record operations")
        if (self._footprint() + n * _node_bytes(self) + words * _arg_bytes(self) > self.budget
                and not self.pinned):
            self._compact_and_reschedule(n, words)
        if self.t.hi == NULL and (self.t.size + n > _narrow_cap(AC_MAX_NODES)
                                  or self.t.nleaves + refs > _narrow_cap(AC_MAX_LEAVES)
                                  or self.t.nconsts + refs > _narrow_cap(AC_MAX_CONSTS)):
            if ac_widen(&self.t) < 0:
                raise MemoryError(
                    f"out of memory switching the tape of this thread to its wide layout, past "
                    f"{self.t.size:,} nodes")
            self._set_limit()
        if self.t.size + n > self.t.capacity:
            rc = ac_grow_nodes(&self.t, self.t.size + n)
            if rc == -3:
                raise MemoryError(
                    f"the autograd tape of this thread is full ({AC_WIDE_MAX_NODES:,} nodes); "
                    "drop references to graphs you no longer need, or split the computation")
            if rc < 0:
                raise MemoryError(f"out of memory growing the autograd tape past {self.t.size:,} nodes")
        self._set_limit()
        return 0

    cdef void _release(self, Variable v) noexcept:
        """Detach a live Variable from its stale graph (see _compact)."""
        v.kind = K_RELEASED
        _unlink(self, v)

    cdef int _compact(self) except -1:
        """Mark-compact: keep only nodes reachable from live Variables.

        Graphs that depend on a leaf whose value changed after recording
        (``leaf.data = ...``) are released first: backward() through them
        would raise anyway (see _deliver), so keeping every training
        step's loss in a list does not keep every step's graph.

        The C part (marking, moving, remapping the live Variables) runs no
        Python code; the maps of Functions and constant objects are rebuilt
        after it with the tape pinned (a finalizer may record, not compact),
        and what the tape no longer holds is released last.
        """
        cdef ac_tape *t = &self.t
        cdef int64_t k, n = t.nleaves, kept_leaves = 0, ndropped = 0
        cdef uint8_t *stale = NULL
        cdef uint64_t *stale_nodes = NULL
        cdef int failed = 0
        cdef bint any_stale = False
        cdef PyObject *p
        cdef PyObject *following
        cdef Variable v, leaf
        cdef ac_compactor cp
        cdef int64_t *leaf_remap = NULL
        cdef void **dropped = NULL
        cdef int begun

        self.passes += 1
        _drop_objmap(self)        # it holds node indices, and released Variables below
        if self.kept_root >= 0:   # the pass's adjoints are indexed by node: lost from here
            self.known_from = t.size
        _forget_pass(self)
        for k in range(n):
            if _is_stale(t, k):
                any_stale = True
                break
        if any_stale:
            stale = <uint8_t *>malloc(n)
            if stale != NULL:
                for k in range(n):
                    stale[k] = _is_stale(t, k)
                stale_nodes = ac_stale_nodes(t, stale, &failed)
                free(stale)

        p = self.live_head
        while p != NULL:
            v = <Variable>p
            following = v.next
            if stale_nodes != NULL and ac_bit(stale_nodes, v.index):
                self._release(v)
            else:
                ac_set_mark(t, v.index)
            p = following
        free(stale_nodes)
        begun = ac_compact_begin(t, &cp)
        if begun == 0:
            self.maybe_garbage = 0     # every node is reachable
            self.alloc_failures_seen = _alloc_failures
        if begun <= 0:
            return 0        # everything is reachable, or no memory to compact (the tape just grows)
        leaf_remap = <int64_t *>malloc((n + 1) * sizeof(int64_t))
        dropped = <void **>malloc((n + 1) * sizeof(void *))
        if leaf_remap == NULL or dropped == NULL:
            for k in range(n):
                t.leaf_flags[k] &= ~AC_LEAF_MARK
            ac_compact_free(&cp)
            free(leaf_remap)
            free(dropped)
            return 0

        for k in range(n):
            leaf = <Variable>t.leaf_obj[k]
            if t.leaf_flags[k] & AC_LEAF_MARK:      # a surviving node uses this entry
                if t.leaf_flags[k] & AC_LEAF_CURRENT:
                    leaf.index = kept_leaves      # the leaf's cached entry moves
                t.leaf_obj[kept_leaves] = t.leaf_obj[k]
                t.leaf_val[kept_leaves] = t.leaf_val[k]
                t.leaf_version[kept_leaves] = t.leaf_version[k]
                t.leaf_grad[kept_leaves] = t.leaf_grad[k]
                t.leaf_flags[kept_leaves] = t.leaf_flags[k] & ~AC_LEAF_MARK
                leaf_remap[k] = kept_leaves
                kept_leaves += 1
            else:
                if t.leaf_flags[k] & AC_LEAF_CURRENT:
                    _detach(leaf)
                leaf_remap[k] = -1
                dropped[ndropped] = t.leaf_obj[k]
                ndropped += 1
        t.nleaves = kept_leaves
        t.ndetached = 0
        for k in range(kept_leaves):
            t.ndetached += not t.leaf_flags[k] & AC_LEAF_CURRENT
        ac_compact_finish(t, &cp, leaf_remap)
        self.epoch += 1
        p = self.live_head
        while p != NULL:
            v = <Variable>p
            v.index = ac_rank(&cp, v.index)
            p = v.next
        ac_tape_trim(t)
        self._trim_adjoints(max(<int64_t>ADJ_KEEP_MAX, 2 * (t.capacity + t.nleaves + 1)))
        self.maybe_garbage = 0         # what survived is what live Variables reach
        self.alloc_failures_seen = _alloc_failures
        self.compactions += 1
        # The tape is consistent from here on.  New maps first, so what a
        # finalizer records while the old entries move over (at indices no
        # surviving node has) lands in them.
        old_functions, old_consts = self.functions, self.const_objs
        self.functions, self.const_objs = {}, {}
        _pin(self)
        try:
            for i, fn in old_functions.items():
                if ac_bit(cp.keep, i):
                    self.functions[ac_rank(&cp, i)] = fn
            for key, c in old_consts.items():
                if ac_bit(cp.keep, key[0]):
                    self.const_objs[(ac_rank(&cp, key[0]), key[1])] = c
        finally:
            ac_compact_free(&cp)
            free(leaf_remap)
            _unpin(self)
        del old_functions, old_consts     # may run a dropped Function's __del__
        for k in range(ndropped):
            Py_DECREF(<object>dropped[k])  # leaves no surviving node uses
        free(dropped)
        return 0

    cdef int _raise_sweep_error(self) except -1:
        err = self.sweep_error
        self.sweep_error = None
        raise err                    # keeps the traceback from the user's backward


cdef inline int64_t _node_bytes(Tape tape) noexcept:
    """Footprint of a node: 16 bytes, 18 in the wide layout (tape.h)."""
    return NODE_BYTES if tape.t.hi == NULL else NODE_BYTES + 2


cdef inline int64_t _arg_bytes(Tape tape) noexcept:
    """Footprint of an operand-list word: 4 bytes, 8 in the wide layout."""
    return 4 if tape.t.wargs == NULL else 8


cdef inline int64_t _narrow_cap(int64_t limit) noexcept:
    """The narrow layout's limit on nodes, leaf entries or constants
    (lowered by _set_narrow_limit for tests)."""
    return min(limit, ac_narrow_limit)


cdef inline void _enter_busy(Tape tape) noexcept:
    """Begin a sweep over this tape's arrays: until _leave_busy, recording on
    it, compaction, backward() and leaf assignments raise, and a reset
    waits.  Calls nest."""
    tape.t.busy += 1
    tape.limit = 0


cdef inline void _leave_busy(Tape tape) noexcept:
    tape.t.busy -= 1
    if tape.t.busy == 0:
        _settle(tape)


cdef inline void _pin(Tape tape) noexcept:
    """Begin a stretch that holds node indices: recording may go on, but
    compaction and reset wait until _unpin.  Calls nest."""
    tape.pinned += 1
    tape._set_limit()


cdef inline void _unpin(Tape tape) noexcept:
    tape.pinned -= 1
    _settle(tape)


cdef void _settle(Tape tape) noexcept:
    """Busy and pinned states ended: the usual limit, and a reset if due."""
    if tape.t.busy or tape.pinned:
        return
    tape._set_limit()
    if tape.reset_pending and tape.live == 0:
        tape._reset()


cdef str _busy_message(Tape tape, str what):
    return (f"cannot {what} inside a Function's backward() or a finalizer that runs during a "
            "backward pass over this thread's tape, which must not change until the pass ends "
            "(to differentiate a gradient, record it: backward(create_graph=True) or "
            "grad(..., create_graph=True))")


cdef inline int _check_not_busy(Tape tape, str what) except -1:
    if tape.t.busy:
        raise RuntimeError(_busy_message(tape, what))
    return 0


cdef int _check_settable(Variable v, str what) except -1:
    """Refuse what would change a leaf (or this thread's tape) while a
    tape that uses it is busy."""
    _check_idle(what)
    return _check_leaf_settable(v, what)


cdef int _check_leaf_settable(Variable v, str what) except -1:
    if v.cache_tape != NULL and v.cache_tape.busy:
        raise RuntimeError(
            f"cannot {what} on this leaf now: a backward pass over a graph that uses it is "
            "running a Function's backward() (in another thread); wait for it to finish")
    return 0


cdef int _check_idle(str what) except -1:
    """Refuse what would change this thread's tape while it is busy."""
    cdef void *p = ac_this_thread().tape
    if p != NULL:
        _check_not_busy(<Tape>p, what)
    return 0


cdef object _tape_owner = threading.local()   # keeps each thread's Tape alive with its thread


cdef Tape _new_thread_tape():
    cdef Tape tape = Tape()      # may run the garbage collector, whose finalizers may record ...
    cdef void *made = ac_this_thread().tape
    if made != NULL:
        return <Tape>made        # ... and so make this thread's tape first
    tape.thread_id = PyThread_get_thread_ident()
    ac_this_thread().tape = <void *>tape    # before the Python calls below, for the same reason
    _tape_owner.tape = tape
    tape.thread_name = threading.current_thread().name
    return tape


cdef inline Tape _thread_tape():
    cdef void *p = ac_this_thread().tape
    if p == NULL:
        return _new_thread_tape()
    return <Tape>p


cdef inline int _reserve(Tape tape, ac_node n) except -1:
    """Room for n more nodes; may compact, which renumbers nodes, so read
    operand indices only after this."""
    if tape.t.size + n <= tape.limit:
        return 0
    return tape._make_room(n)


cdef inline void _unlink(Tape tape, Variable v) noexcept:
    if v.prev != NULL:
        (<Variable>v.prev).next = v.next
    else:
        tape.live_head = v.next
    if v.next != NULL:
        (<Variable>v.next).prev = v.prev
    v.prev = NULL
    v.next = NULL
    tape.live -= 1


def tape_stats():
    """Counters of this thread's tape: nodes, capacity, live recorded
    Variables, leaf entries, constants, operand-list words, bytes held for
    the graph, bytes of a dead graph kept for the next recording,
    whether the tape is in its wide layout ("wide": past 134,217,727 nodes,
    18 bytes a node instead of 16), compactions so far (passes that moved
    nodes), marking passes run and passes skipped because they could free
    nothing."""
    cdef Tape tape = _thread_tape()
    return {
        "nodes": tape.t.size,
        "capacity": tape.t.capacity,
        "live": tape.live,
        "leaves": tape.t.nleaves,
        "constants": tape.t.nconsts,
        "args": tape.t.nargs,
        "bytes": (ac_tape_bytes(&tape.t)
                  + (tape.spare_adj_size + tape.grad_adj_size) * sizeof(double)),
        "retained": ac_retained_bytes(&tape.t.retained),
        "wide": tape.t.hi != NULL,
        "compactions": tape.compactions,
        "compaction_passes": tape.passes,
        "compactions_skipped": tape.skipped,
        "footprint": tape._footprint(),
        "budget": tape.budget,
    }


def _set_compaction_floor(Py_ssize_t nodes):
    """Tests only: compact from a footprint of this many nodes' worth of bytes
    on (default 2**20 nodes, 16 MB); returns the previous floor in nodes."""
    global _compaction_floor_bytes
    cdef Tape tape = _thread_tape()
    previous = _compaction_floor_bytes // NODE_BYTES
    _compaction_floor_bytes = max(nodes, 16) * NODE_BYTES
    tape.budget = max(2 * tape._footprint(), _compaction_floor_bytes)
    tape._set_limit()
    return previous


def _compact():
    """Tests only: compact this thread's tape now (a full pass, even where
    it could free nothing)."""
    _thread_tape()._compact_and_reschedule(0, 0, True)


def _set_retain_seconds(double seconds):
    """Tests only: how long a dead graph's large arrays are kept for the
    next recording before their memory goes back to the OS (default 1.0;
    0 frees them at once); returns the previous value."""
    global ac_retain_seconds
    previous = ac_retain_seconds
    ac_retain_seconds = seconds
    return previous


def _release_retained():
    """Tests only: give every kept block's memory back to the OS now, as the
    reaper does when their time is up."""
    ac_release_retained_now()


def _set_narrow_limit(Py_ssize_t n):
    """Tests only: tapes switch to the wide layout when they would pass n
    nodes, leaf entries or constants (default and at most 134,217,727, the
    narrow layout's limit); returns the previous value."""
    global ac_narrow_limit
    previous = ac_narrow_limit
    ac_narrow_limit = max(16, min(n, <Py_ssize_t>AC_MAX_NODES))
    return previous
