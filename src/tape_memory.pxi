# tape_memory.pxi -- each thread's Tape and the memory it holds.
#
# Holds: the Tape class and its fields: creation and
# teardown, reset when no recorded Variable is alive, growth (_make_room),
# mark-compact of what live Variables reach (_compact), the adjoint buffer
# backward() borrows, and the "busy" state while a Function's backward runs
# (_freeze/_thaw and the _check_* guards).  Also the thread -> tape mapping
# and the test hooks that force compaction.
# May touch: the C tape (tape.h) and the live-Variable registry; it calls into
# variable.pxi for leaves (_detach) and introspection.pxi for _drop_objmap.
# Memory rules are described in docs/architecture.md ("Memory").

# Compaction runs when the tape outgrows twice its size after the previous
# compaction, and never below this many nodes (16 MB of tape).
cdef ac_node _compaction_floor = 1 << 20

# backward() keeps its adjoint buffer for the next call up to this many
# nodes (8 MB); larger buffers are returned at once, so a big graph holds
# 16 bytes a node, not 24, between passes.
cdef enum:
    ADJ_KEEP_MAX = 1 << 20


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
    cdef ac_node compact_at       # compact before the tape grows past this many nodes ...
    cdef int64_t args_compact_at  # ... or this many words of n-ary operand lists
    cdef ac_node limit            # min(capacity, compact_at): the one check on the hot path
    cdef Py_ssize_t compactions
    cdef double *spare_adj        # a kept adjoint buffer (see ADJ_KEEP_MAX), or NULL
    cdef ac_node spare_adj_size
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
    cdef ac_node adj_lo, adj_root # spare_adj[adj_lo..adj_root] holds the latest backward()'s
                                  # adjoints (adj_root -1: it does not), for _node_object

    def __cinit__(self):
        ac_tape_init(&self.t)
        self.t.custom_backward = _function_backward
        self.t.custom_ctx = <void *>self
        self.functions = {}
        self.const_objs = {}
        self.adj_root = -1
        self.live_head = NULL
        self.compact_at = _compaction_floor
        self.args_compact_at = _compaction_floor
        self.limit = 0

    def __dealloc__(self):
        cdef ac_thread_state *ts = ac_this_thread()
        if ts.tape == <void *>self:
            ts.tape = NULL
        self._release_leaves()
        ac_tape_free(&self.t)
        free(self.spare_adj)
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
        """No recorded Variable is alive: forget everything in O(leaves)."""
        self._release_leaves()
        ac_tape_clear(&self.t)
        _drop_objmap(self)
        self.compact_at = _compaction_floor
        self.args_compact_at = _compaction_floor
        self.limit = 0
        # last: dropping these may run finalizers, which may record on this tape
        if self.const_objs:
            self.const_objs = {}
        if self.functions:
            self.functions = {}

    cdef int _compact_and_reschedule(self, ac_node nodes, int64_t args) except -1:
        """Compact, then schedule the next compaction at twice what survived."""
        _check_not_sweeping(self, "record operations")
        self._compact()
        self.compact_at = max(2 * (self.t.size + nodes), _compaction_floor)
        self.args_compact_at = max(2 * (self.t.nargs + args), _compaction_floor)
        self.limit = min(self.t.capacity, self.compact_at)
        return 0

    cdef double *_adjoints(self, ac_node n) except NULL:
        """A buffer for n adjoints; hand it back with _done_with_adjoints."""
        cdef double *p
        if n <= self.spare_adj_size:
            return self.spare_adj
        if n <= ADJ_KEEP_MAX:
            p = <double *>realloc(self.spare_adj, n * sizeof(double))
            if p != NULL:
                self.spare_adj = p
                self.spare_adj_size = n
                return p
        p = <double *>malloc(n * sizeof(double))
        if p == NULL:
            raise MemoryError(f"out of memory allocating adjoints for {n:,} nodes")
        return p

    cdef void _done_with_adjoints(self, double *p) noexcept:
        if p != self.spare_adj:
            free(p)

    cdef int _make_room(self, ac_node n) except -1:
        """Slow path of _reserve: compact if due, then grow."""
        cdef int rc
        _check_not_sweeping(self, "record operations")
        if self.t.size + n > self.compact_at:
            self._compact_and_reschedule(n, 0)
        if self.t.size + n > self.t.capacity:
            rc = ac_grow_nodes(&self.t, self.t.size + n)
            if rc == -2:
                raise MemoryError(
                    f"the autograd tape of this thread is full ({AC_MAX_NODES:,} nodes); "
                    "drop references to graphs you no longer need, or split the computation")
            if rc < 0:
                raise MemoryError(f"out of memory growing the autograd tape past {self.t.size:,} nodes")
        self.limit = min(self.t.capacity, self.compact_at)
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

        _drop_objmap(self)        # it holds node indices, and released Variables below
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
        # The old dicts are dropped only when this method returns: dropping a
        # Function may run a finalizer, which may record on this tape.
        old_functions, old_consts = self.functions, self.const_objs
        self.functions = {ac_rank(&cp, i): fn for i, fn in old_functions.items()
                          if ac_bit(cp.keep, i)}
        self.const_objs = {(ac_rank(&cp, key[0]), key[1]): c for key, c in old_consts.items()
                           if ac_bit(cp.keep, key[0])}

        p = self.live_head
        while p != NULL:
            v = <Variable>p
            v.index = ac_rank(&cp, v.index)
            p = v.next
        ac_compact_free(&cp)
        free(leaf_remap)
        ac_tape_trim(t)
        self.limit = 0              # capacity may have shrunk; the caller reschedules
        self.compactions += 1
        for k in range(ndropped):
            Py_DECREF(<object>dropped[k])
        free(dropped)
        return 0

    cdef void _freeze(self) noexcept:
        """While a Function's backward may run: refuse changes to this tape."""
        self.t.sweeping = 1
        self.limit = 0               # every recording attempt reaches _make_room, which refuses

    cdef void _thaw(self) noexcept:
        self.t.sweeping = 0
        self.limit = min(self.t.capacity, self.compact_at)

    cdef int _raise_sweep_error(self) except -1:
        err = self.sweep_error
        self.sweep_error = None
        raise err                    # keeps the traceback from the user's backward


cdef inline int _check_not_sweeping(Tape tape, str what) except -1:
    if tape.t.sweeping:
        raise RuntimeError(
            f"cannot {what} inside a Function's backward(): it runs during a backward pass "
            "over this thread's tape, which must not change until the pass ends "
            "(higher-order gradients are not supported)")
    return 0


cdef int _check_settable(Variable v, str what) except -1:
    """Refuse what would change a leaf (or this thread's tape) while a
    backward pass that may use it is calling a Function's backward()."""
    _check_idle(what)
    return _check_leaf_settable(v, what)


cdef int _check_leaf_settable(Variable v, str what) except -1:
    if v.cache_tape != NULL and v.cache_tape.sweeping:
        raise RuntimeError(
            f"cannot {what} on this leaf now: a backward pass over a graph that uses it is "
            "running a Function's backward() (in another thread); wait for it to finish")
    return 0


cdef int _check_idle(str what) except -1:
    """Refuse what would change this thread's tape while a backward pass runs."""
    cdef void *p = ac_this_thread().tape
    if p != NULL:
        _check_not_sweeping(<Tape>p, what)
    return 0


cdef object _tape_owner = threading.local()   # keeps each thread's Tape alive with its thread


cdef Tape _new_thread_tape():
    cdef Tape tape = Tape()
    tape.thread_id = PyThread_get_thread_ident()
    tape.thread_name = threading.current_thread().name
    _tape_owner.tape = tape
    ac_this_thread().tape = <void *>tape
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
    Variables, leaf entries, constants, operand-list words, bytes held and
    compactions so far."""
    cdef Tape tape = _thread_tape()
    return {
        "nodes": tape.t.size,
        "capacity": tape.t.capacity,
        "live": tape.live,
        "leaves": tape.t.nleaves,
        "constants": tape.t.nconsts,
        "args": tape.t.nargs,
        "bytes": ac_tape_bytes(&tape.t) + tape.spare_adj_size * sizeof(double),
        "compactions": tape.compactions,
    }


def _set_compaction_floor(Py_ssize_t nodes):
    """Tests only: compact from this many nodes on (default 2**20); returns the previous floor."""
    global _compaction_floor
    cdef Tape tape = _thread_tape()
    previous = _compaction_floor
    _compaction_floor = max(nodes, 16)
    tape.compact_at = max(2 * tape.t.size, _compaction_floor)
    tape.args_compact_at = max(2 * tape.t.nargs, _compaction_floor)
    tape.limit = min(tape.t.capacity, tape.compact_at)
    return previous


def _compact():
    """Tests only: compact this thread's tape now."""
    _thread_tape()._compact_and_reschedule(0, 0)

