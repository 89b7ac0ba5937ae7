# _core.pyx -- the compiled core of autograd_c: Variable, the per-thread Tape,
# recording, the reverse sweep and memory management.
#
# Layers (see ../DESIGN.md in the shared docs and src/tape.h):
#   ops.h      one line per opcode: forward value and local adjoint
#   tape.c     the Wengert list in C arrays, the sweep, mark-compact
#   this file  Variable objects, thread-local tapes, leaf bookkeeping,
#              argument checking and every Python-visible name
# Nothing here sits between the arithmetic slots and the C arrays except
# type checks and field reads; Python objects are only touched where a
# Variable is created, destroyed or handed its gradient.
cimport cython
from cpython.object cimport PyObject, PyTypeObject, destructor
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.float cimport PyFloat_CheckExact, PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_CheckExact, PyLong_Check
from libc.math cimport isfinite, isnan, NAN, pow
from libc.math cimport sqrt as sqrt_c
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t

from tape cimport *

import sys
import threading

cdef extern from "Python.h":
    double PyLong_AsDouble(object o) except? -1.0
    unsigned long PyThread_get_thread_ident()

# Variable.kind
cdef enum:
    K_CONST = 0      # a number: requires_grad=False, made under no_grad, or from constants only
    K_LEAF = 1       # a user-made Variable that requires grad; lives outside the tape
    K_NODE = 2       # a recorded result: (tape, index) on its thread's tape
    K_RELEASED = 3   # a recorded result whose graph was released (see Tape._compact)

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
        self._drop_objmap()
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

        self._drop_objmap()        # it holds node indices, and released Variables below
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

    # -- sweeping ------------------------------------------------------------

    cdef int _sweep(self, double *adj, ac_node root, double seed, int deliver,
                    ac_sweep_result *swept) except -1:
        """ac_sweep, with the tape frozen while a Function's backward runs."""
        cdef int rc
        self.adj_root = -1
        # A Function's backward runs once per pass, even when the exact sweep
        # redoes the fast one or detect_anomaly searches again: results are kept.
        self.fn_results = {} if self.functions else None
        self._freeze()
        try:
            rc = ac_sweep(&self.t, adj, adj + root + 1, root, seed, deliver, swept)
        finally:
            self._thaw()
        if rc < 0:
            self._raise_sweep_error()
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

    cdef const double *_call_function(self, ac_node i, double g) except NULL:
        """Run the backward of the Function that recorded node i."""
        cdef ac_tape *t = &self.t
        cdef const uint32_t *refs = t.args + ac_offset(t.code[i])
        cdef uint32_t k, m = refs[0]
        cdef double *p
        if m > self.fn_grads_size:
            p = <double *>realloc(self.fn_grads, m * sizeof(double))
            if p == NULL:
                raise MemoryError()
            self.fn_grads = p
            self.fn_grads_size = m
        kept = None if self.fn_results is None else self.fn_results.get(i)
        if kept is not None:
            for k in range(m):
                self.fn_grads[k] = kept[k]
            return self.fn_grads
        fn = self.functions[i]
        fn.inputs = tuple([_arg_value(t, refs[k]) for k in range(1, m + 1)])
        fn.output = t.val[i]
        result = fn.backward(g)
        _function_grads(fn, result, m, self.fn_grads)
        if self.fn_results is not None:
            self.fn_results[i] = tuple([self.fn_grads[k] for k in range(m)])
        return self.fn_grads

    # -- node objects, for _prev -------------------------------------------

    cdef void _drop_objmap(self) noexcept:
        free(self.objmap)
        self.objmap = NULL
        self.objmap_size = 0
        self.adj_root = -1            # the adjoints are indexed by node too

    cdef object _node_object(self, ac_node i):
        """The Variable of node i: the live one, or a new one if none is alive.
        One object per node, so graph walkers see a node reached twice as one."""
        cdef PyObject *p
        cdef Variable v
        if self.objmap == NULL or i >= self.objmap_size:
            free(self.objmap)
            self.objmap = <PyObject **>calloc(self.t.size + 1, sizeof(PyObject *))
            if self.objmap == NULL:
                self.objmap_size = 0
                raise MemoryError()
            self.objmap_size = self.t.size
            p = self.live_head
            while p != NULL:
                self.objmap[(<Variable>p).index] = p
                p = (<Variable>p).next
        if self.objmap[i] != NULL:
            return <object>self.objmap[i]
        v = _new_node(self, i, self.t.val[i])
        if self.adj_lo <= i <= self.adj_root:
            v.grad_value = self.spare_adj[i]     # as if it had been alive during backward()
        self.objmap[i] = <PyObject *>v
        return v

    cdef object _const_object(self, double c, ac_node node, int position):
        """A constant Variable for one use of a constant (as micrograd makes
        one Value per use), the same object each time that use is asked for."""
        key = (node, position)
        v = self.const_objs.get(key)
        if v is None:
            v = _new_constant(c)
            self.const_objs[key] = v
        return v

    cdef object _ref_object(self, uint32_t ref, ac_node node, int position):
        if ref & AC_REF_CONST:
            return self._const_object(self.t.consts[ref & ~AC_REF_CONST], node, position)
        if ref & AC_LEAF_REF:
            return <object>self.t.leaf_obj[ref & ~AC_LEAF_REF]
        return self._node_object(ref)


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


cdef inline double _arg_value(ac_tape *t, uint32_t ref) noexcept:
    if ref & AC_REF_CONST:
        return t.consts[ref & ~AC_REF_CONST]
    return _ref_value(t, ref)


cdef const double *_function_backward(void *ctx, ac_node i, double g) noexcept:
    """ac_tape.custom_backward: called by the C sweep for AC_CUSTOM nodes.
    Runs with grad disabled; an exception is kept for Tape._sweep to raise."""
    cdef Tape tape = <Tape>ctx
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int enabled = ts.grad_enabled
    ts.grad_enabled = 0
    try:
        return tape._call_function(i, g)
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


# ---------------------------------------------------------------------------
# Variable
# ---------------------------------------------------------------------------

@cython.final
cdef class Variable:
    """A real number that records the operations applied to it.

    Parameters
    ----------
    data : int, float, bool or NumPy real scalar
        The value.
    requires_grad : bool, default True
        False makes a constant: it never enters the tape and has no gradient.
    name : str, optional
        A label for printing and graph pictures.

    Examples
    --------
    >>> from autograd_c import Variable
    >>> x = Variable(2.0)
    >>> y = x * x + 3 * x
    >>> y.backward()
    >>> x.grad
    7.0
    """
    # No Python-object fields: the two references below are counted by hand
    # (see _variable_dealloc), so recycling a Variable costs no None fills.
    # grad_value and version lead: a backward() reads and writes just these
    # two on every leaf, so they should share a cache line.
    cdef double value             # the forward value
    cdef double grad_value        # leaf: accumulated gradient; recorded: adjoint of the latest backward()
    cdef uint32_t version         # K_LEAF: bumped by every .data assignment
    cdef uint8_t kind             # K_CONST, K_LEAF, K_NODE or K_RELEASED
    cdef ac_node index            # K_NODE: its node; K_LEAF: its current entry in cache_tape's leaf table
    cdef PyObject *owner          # K_NODE / K_RELEASED: strong reference to the recording Tape
    cdef ac_tape *cache_tape      # K_LEAF: tape holding this leaf's current entry, or NULL
    cdef PyObject *prev           # K_NODE: the tape's registry of live Variables
    cdef PyObject *next
    cdef PyObject *label          # strong reference to the name (a str), or NULL

    __array_ufunc__ = None        # NumPy defers `np.float64(2) * v` to Variable.__rmul__

    def __init__(self, data, requires_grad=True, name=None):
        if self.kind >= K_NODE:
            raise RuntimeError("a recorded Variable cannot be re-initialised")
        if isinstance(data, Variable):
            raise TypeError(
                "Variable(data) takes a number, not a Variable; use v.detach() for a constant "
                "copy or Variable(v.data) for a new leaf")
        _check_label(name)
        x = _real(data, "Variable data")
        _check_leaf_settable(self, "re-initialise a Variable")
        _set_value(self, x)
        self.kind = K_LEAF if requires_grad else K_CONST
        _set_label(self, name)

    # -- attributes ---------------------------------------------------------

    @property
    def data(self):
        """The value, a float.  Assignable on leaves and constants."""
        return self.value

    @data.setter
    def data(self, value):
        if self.kind >= K_NODE:
            raise AttributeError(
                "data of a recorded (non-leaf) Variable cannot be set; "
                "set the leaves it came from and record the expression again")
        _check_settable(self, "assign .data")
        _set_value(self, _real(value, "Variable data"))

    @property
    def value(self):
        """Alias of :attr:`data`."""
        return self.value

    @value.setter
    def value(self, value):
        self.data = value

    @property
    def grad(self):
        """d(output)/d(self) as a float, 0.0 before any backward().

        Leaves accumulate it over backward() calls until zeroed; a recorded
        Variable shows the adjoint of the latest backward() pass.
        """
        if self.cache_tape != NULL:
            return self.grad_value + self.cache_tape.leaf_grad[self.index]
        return self.grad_value

    @grad.setter
    def grad(self, value):
        _check_settable(self, "assign .grad")
        _set_leaf_grad(self, 0.0 if value is None else _real(value, "grad"))

    @property
    def requires_grad(self):
        """True unless this is a constant."""
        return self.kind != K_CONST

    @requires_grad.setter
    def requires_grad(self, flag):
        if self.kind >= K_NODE:
            raise RuntimeError(
                "requires_grad can only be changed on leaves; "
                "use v.detach() for a constant copy of a recorded Variable")
        _check_settable(self, "change requires_grad")
        _detach(self)
        self.kind = K_LEAF if flag else K_CONST

    @property
    def is_leaf(self):
        """True for Variables made by the user (and constants), False for recorded results."""
        return self.kind <= K_LEAF

    @property
    def name(self):
        """An optional label (str or None)."""
        return None if self.label == NULL else <object>self.label

    @name.setter
    def name(self, value):
        _set_label(self, value)

    @property
    def op(self):
        """Name of the operation that produced this Variable ('' for leaves and constants)."""
        if self.kind != K_NODE:
            return ""
        cdef int op = ac_opcode((<Tape>self.owner).t.code[self.index])
        if op == AC_CUSTOM:
            return type((<Tape>self.owner).functions[self.index]).__name__
        return ac_op_name(op).decode()

    @property
    def _prev(self):
        """The set of Variables self was computed from, as micrograd's Value._prev:
        leaves, recorded results and constants (as constant Variables).  A
        node reached through two parents comes back as the same object."""
        cdef Tape tape
        cdef ac_code w
        cdef int op
        cdef const uint32_t *refs
        cdef uint32_t k
        if self.kind != K_NODE:
            return set()
        tape = _owning_tape(self)
        w = tape.t.code[self.index]
        op = ac_opcode(w)
        if ac_is_nary(op):
            refs = tape.t.args + ac_offset(w)
            return {tape._ref_object(refs[k], self.index, k) for k in range(1, refs[0] + 1)}
        prev = {tape._ref_object(<uint32_t>ac_operand_a(w), self.index, 1)}
        if op >= AC_ADD:
            prev.add(tape._ref_object(<uint32_t>ac_operand_b(w), self.index, 2))
        elif op >= AC_ADDC and op != AC_POWC:     # micrograd: x**c has x alone as child, c in _op
            prev.add(tape._const_object(tape.t.consts[ac_operand_b(w)], self.index, 2))
        return prev

    @property
    def _op(self):
        """The operation as micrograd names it ('+', '*', '**2', 'ReLU', ...);
        other operations by name, '' for leaves and constants."""
        cdef Tape tape
        cdef ac_code w
        cdef int op
        if self.kind != K_NODE:
            return ""
        tape = <Tape>self.owner
        w = tape.t.code[self.index]
        op = ac_opcode(w)
        if op == AC_POWC:
            c = tape.t.consts[ac_operand_b(w)]
            return f"**{int(c) if c.is_integer() and -1e16 < c < 1e16 else c}"
        symbol = _MICROGRAD_SYMBOLS.get(op)
        return self.op if symbol is None else symbol

    def item(self):
        """The value as a Python float."""
        return self.value

    def detach(self):
        """A constant with the same value, outside every graph."""
        return _new_constant(self.value)

    def __float__(self):
        return self.value

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return self.value != 0.0

    def __hash__(self):
        # identity hash: Variables are usable as set members and dict keys
        cdef Py_hash_t h = <Py_hash_t>(<size_t><void *>self >> 4)
        return -2 if h == -1 else h

    def __repr__(self):
        name = "" if self.label == NULL else f", name={<object>self.label!r}"
        if self.kind == K_CONST:
            return f"Variable(data={self.value!r}, requires_grad=False{name})"
        return f"Variable(data={self.value!r}, grad={self.grad!r}{name})"

    def __format__(self, spec):
        return format(self.value, spec)

    def __reduce__(self):
        if self.kind >= K_NODE:
            raise TypeError(
                "a recorded Variable cannot be pickled or copied (its graph lives in a "
                "thread's tape); pickle v.detach() or v.data instead")
        return (_rebuild, (self.value, self.kind == K_LEAF, self.name, self.grad))

    # -- gradients ----------------------------------------------------------

    def backward(self, gradient=1.0):
        """Add d(self)/d(leaf) * gradient into ``.grad`` of every leaf self depends on.

        Gradients accumulate: calling backward() twice adds twice, until
        the leaves are zeroed (``zero_grad()`` or ``leaf.grad = 0``).  The
        graph is kept, so backward() can be called again.  Recorded
        Variables' ``.grad`` then show this pass's adjoints.

        Raises
        ------
        RuntimeError
            If self does not require grad, belongs to another thread's tape,
            or a leaf of its graph was assigned a new value after recording.
        """
        cdef double seed = _real(gradient, "backward() gradient")
        cdef Tape tape
        cdef ac_node root
        cdef double *adj
        cdef ac_sweep_result swept
        _check_settable(self, "call backward()")      # before any buffer is touched
        if self.kind == K_CONST:
            raise RuntimeError(
                "backward() on a Variable that does not require grad: it is a constant "
                "(requires_grad=False, computed under no_grad(), or from constants only)")
        if self.kind == K_LEAF:
            self.grad_value += seed
            return
        tape = _owning_tape(self)
        root = self.index
        adj = tape._adjoints(root + 1 + tape.t.nleaves)
        try:
            # detect_anomaly inspects the gradients before any is handed over
            tape._sweep(adj, root, seed, not ac_this_thread().anomaly, &swept)
            if ac_this_thread().anomaly:
                _check_backward(tape, adj, &swept, root, seed)
            _deliver(tape, adj + root + 1, &swept, root, None, None)
            _keep_adjoints(tape, adj, swept.lo, root)
            if adj == tape.spare_adj:
                tape.adj_lo = swept.lo
                tape.adj_root = root
        finally:
            tape.fn_results = None
            tape._done_with_adjoints(adj)

    def zero_grad(self):
        """Set ``.grad`` to 0 on self and on every leaf self depends on."""
        cdef Tape tape
        cdef ac_node root
        cdef ac_sweep_result reach
        cdef int64_t k
        cdef PyObject *p
        if self.kind != K_NODE:
            self.grad = 0.0
            return
        tape = _owning_tape(self)
        _check_not_sweeping(tape, "call zero_grad()")
        tape.adj_root = -1
        root = self.index
        ac_mark_reachable(&tape.t, root, &reach)
        for k in range(reach.leaf_lo, reach.leaf_hi + 1):
            if tape.t.leaf_flags[k] & AC_LEAF_MARK:
                _set_leaf_grad(<Variable>tape.t.leaf_obj[k], 0.0)
        p = tape.live_head
        while p != NULL:
            if reach.lo <= (<Variable>p).index <= root and ac_is_marked(&tape.t, (<Variable>p).index):
                (<Variable>p).grad_value = 0.0
            p = (<Variable>p).next
        ac_clear_marks(&tape.t, &reach, root)

    # -- arithmetic ---------------------------------------------------------

    def __add__(self, other):
        return _binary(AC_ADD, AC_ADDC, AC_ADDC, self, other)

    def __radd__(self, other):
        return _binary(AC_ADD, AC_ADDC, AC_ADDC, other, self)

    def __sub__(self, other):
        return _binary(AC_SUB, AC_ADDC, AC_RSUBC, self, other)

    def __rsub__(self, other):
        return _binary(AC_SUB, AC_ADDC, AC_RSUBC, other, self)

    def __mul__(self, other):
        return _binary(AC_MUL, AC_MULC, AC_MULC, self, other)

    def __rmul__(self, other):
        return _binary(AC_MUL, AC_MULC, AC_MULC, other, self)

    def __truediv__(self, other):
        return _binary(AC_DIV, AC_DIVC, AC_RDIVC, self, other)

    def __rtruediv__(self, other):
        return _binary(AC_DIV, AC_DIVC, AC_RDIVC, other, self)

    def __pow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(AC_POW, AC_POWC, AC_RPOWC, self, other)

    def __rpow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(AC_POW, AC_POWC, AC_RPOWC, other, self)

    def __neg__(self):
        return _unary(AC_NEG, self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _unary(AC_ABS, self)

    def __lt__(self, other):
        return _compare(self, other, 0)

    def __le__(self, other):
        return _compare(self, other, 1)

    def __gt__(self, other):
        return _compare(self, other, 2)

    def __ge__(self, other):
        return _compare(self, other, 3)

    # -- functions as methods ----------------------------------------------

    def exp(self):
        """e ** self"""
        return _unary(AC_EXP, self)

    def log(self):
        """Natural logarithm (nan below 0, -inf at 0)."""
        return _unary(AC_LOG, self)

    def log1p(self):
        """log(1 + self), accurate near 0."""
        return _unary(AC_LOG1P, self)

    def expm1(self):
        """exp(self) - 1, accurate near 0."""
        return _unary(AC_EXPM1, self)

    def sqrt(self):
        """Square root (nan below 0)."""
        return _unary(AC_SQRT, self)

    def sin(self):
        """Sine."""
        return _unary(AC_SIN, self)

    def cos(self):
        """Cosine."""
        return _unary(AC_COS, self)

    def tan(self):
        """Tangent."""
        return _unary(AC_TAN, self)

    def atan(self):
        """Arctangent."""
        return _unary(AC_ATAN, self)

    def tanh(self):
        """Hyperbolic tangent."""
        return _unary(AC_TANH, self)

    def sigmoid(self):
        """1 / (1 + exp(-self))."""
        return _unary(AC_SIGMOID, self)

    def relu(self):
        """max(self, 0); gradient 0 at 0, as PyTorch."""
        return _unary(AC_RELU, self)

    def softplus(self):
        """log(1 + exp(self)), linear above 20 as torch.nn.functional.softplus."""
        return _unary(AC_SOFTPLUS, self)

    def erf(self):
        """The error function."""
        return _unary(AC_ERF, self)

    def abs(self):
        """|self|; gradient 0 at 0, as PyTorch."""
        return _unary(AC_ABS, self)


# ---------------------------------------------------------------------------
# Variable allocation: a recycling pool in front of the type's own allocator
# ---------------------------------------------------------------------------
# Creating and destroying a Variable is most of the cost of a recorded op.
# Cython's @freelist would clear the object with memset and re-initialise it
# through two calls into libpython; instead dead Variables wait in _spare,
# and a reused one only gets its reference count back (ac_revive) before
# the creator sets every field.  tp_dealloc is installed by hand for the
# same reason: a Cython __dealloc__ saves and restores the error state.

cdef extern from *:
    """
    /* What PyObject_Init does for an object of a static type whose memory
     * is reused, minus the tracemalloc hook (tracemalloc keeps the
     * object's first allocation traceback).  Debug and free-threaded
     * builds keep their bookkeeping through the real call. */
    static inline void ac_revive(PyObject *o)
    {
    #if defined(Py_TRACE_REFS) || defined(Py_REF_DEBUG) || defined(Py_GIL_DISABLED)
        (void)PyObject_Init(o, Py_TYPE(o));
    #else
        Py_SET_REFCNT(o, 1);
    #endif
    }
    """
    void ac_revive(PyObject *o)

cdef extern from "Python.h":
    void _decref "Py_DECREF"(PyObject *o)
    void _xdecref "Py_XDECREF"(PyObject *o)
    void _incref "Py_INCREF"(PyObject *o)

cdef enum:
    SPARE_MAX = 4096
cdef PyObject *_spare[SPARE_MAX]
cdef int _nspare = 0

cdef destructor _free_variable = (<PyTypeObject *>Variable).tp_dealloc

cdef void _variable_dealloc(PyObject *o) noexcept:
    """tp_dealloc of Variable: unregister a recorded Variable (resetting its
    tape if it was the last), then park the object in _spare.  Only casts
    touch o: a typed local would take a reference to a dying object."""
    global _nspare
    cdef PyObject *owner = (<Variable>o).owner
    cdef PyObject *label = (<Variable>o).label
    if (<Variable>o).kind == K_NODE:
        if (<Variable>o).index < (<Tape>owner).objmap_size:
            (<Tape>owner).objmap[(<Variable>o).index] = NULL
        _unlink(<Tape>owner, <Variable>o)
        if (<Tape>owner).live == 0:
            (<Tape>owner)._reset()
    (<Variable>o).owner = NULL
    (<Variable>o).label = NULL
    if _nspare < SPARE_MAX:
        _spare[_nspare] = o
        _nspare += 1
    else:
        _free_variable(o)
    _xdecref(owner)      # last: these may free a Tape, which frees leaves
    _xdecref(label)

(<PyTypeObject *>Variable).tp_dealloc = _variable_dealloc


cdef inline Variable _alloc_variable():
    """A Variable object whose fields the caller sets, all of them."""
    global _nspare
    cdef Variable v
    if _nspare == 0:
        return Variable.__new__(Variable)
    _nspare -= 1
    ac_revive(_spare[_nspare])
    v = <Variable>_spare[_nspare]      # the cast takes a second reference ...
    _decref(_spare[_nspare])           # ... so drop the one ac_revive gave
    return v


_MICROGRAD_SYMBOLS = {
    AC_ADD: "+", AC_ADDC: "+", AC_SUB: "-", AC_RSUBC: "-", AC_MUL: "*", AC_MULC: "*",
    AC_DIV: "/", AC_DIVC: "/", AC_RDIVC: "/", AC_RELU: "ReLU",
}


cdef double _real(object o, str what) except? -1.0:
    """o as a double, or TypeError naming its type."""
    cdef double x
    if not _number(o, &x):
        raise TypeError(
            f"{what} must be a real number (int, float, bool or a NumPy real scalar), "
            f"not {type(o).__name__}")
    return x


cdef void _set_value(Variable v, double x) noexcept:
    _detach(v)             # the next use records a new leaf entry with the new value
    v.value = x
    v.version += 1


cdef inline void _detach(Variable v) noexcept:
    """End a leaf's current tape entry: take its pending gradient, mark the
    entry a past one (see ac_tape.leaf_grad) and forget it."""
    cdef ac_tape *t = v.cache_tape
    if t == NULL:
        return
    v.grad_value += t.leaf_grad[v.index]
    t.leaf_grad[v.index] = 0.0
    t.leaf_flags[v.index] &= ~AC_LEAF_CURRENT
    t.ndetached += 1
    v.cache_tape = NULL


cdef inline void _set_leaf_grad(Variable v, double g) noexcept:
    """Set .grad; for a leaf that includes what its current entry holds."""
    v.grad_value = g
    if v.cache_tape != NULL:
        v.cache_tape.leaf_grad[v.index] = 0.0


cdef inline bint _is_stale(ac_tape *t, int64_t k) noexcept:
    """A past leaf entry whose leaf has been assigned a new value since."""
    return (not t.leaf_flags[k] & AC_LEAF_CURRENT
            and (<Variable>t.leaf_obj[k]).version != t.leaf_version[k])


cdef int _check_label(object name) except -1:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    return 0


cdef int _set_label(Variable v, object name) except -1:
    cdef PyObject *old = v.label
    _check_label(name)
    if name is None:
        v.label = NULL
    else:
        _incref(<PyObject *>name)
        v.label = <PyObject *>name
    _xdecref(old)
    return 0


def _rebuild(value, requires_grad, name, grad):
    cdef Variable v = Variable(value, requires_grad, name)
    v.grad_value = grad
    return v


cdef Variable _new_constant(double y):
    cdef Variable v = _alloc_variable()
    v.value = y
    v.grad_value = 0.0
    v.owner = NULL
    v.index = -1
    v.cache_tape = NULL
    v.version = 0
    v.kind = K_CONST
    v.prev = NULL
    v.next = NULL
    v.label = NULL
    return v


cdef inline Variable _new_node(Tape tape, ac_node i, double y):
    cdef Variable v = _alloc_variable()
    v.value = y
    v.grad_value = 0.0
    _incref(<PyObject *>tape)
    v.owner = <PyObject *>tape
    v.index = i
    v.cache_tape = NULL
    v.version = 0
    v.kind = K_NODE
    v.label = NULL
    v.prev = NULL
    v.next = tape.live_head
    if tape.live_head != NULL:
        (<Variable>tape.live_head).prev = <PyObject *>v
    tape.live_head = <PyObject *>v
    tape.live += 1
    return v


# ---------------------------------------------------------------------------
# operand checks
# ---------------------------------------------------------------------------

cdef inline int _number(object o, double *out) except -1:
    """1 and the value if o is an accepted number, else 0."""
    if PyFloat_CheckExact(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if PyLong_CheckExact(o):
        out[0] = PyLong_AsDouble(o)
        return 1
    return _number_slow(o, out)


cdef int _number_slow(object o, double *out) except -1:
    if PyFloat_Check(o) or PyLong_Check(o):          # float/int subclasses, bool
        out[0] = float(o)
        return 1
    np = sys.modules.get("numpy")                    # a NumPy scalar implies NumPy is imported
    if np is not None and isinstance(o, (np.floating, np.integer, np.bool_)):
        out[0] = float(o)
        return 1
    return 0


cdef int _raise_not_number(object o, str where) except -1:
    raise TypeError(
        f"{where} takes Variables or real numbers (int, float, bool, NumPy real scalar), "
        f"not {type(o).__name__}")


cdef Tape _owning_tape(Variable v):
    """The tape of a recorded Variable, which must be this thread's."""
    cdef void *mine = ac_this_thread().tape
    if v.kind == K_RELEASED:
        raise RuntimeError(
            "the graph of this Variable was released because a leaf it depends on was "
            "assigned a new value (leaf.data = ...) after it was recorded; record the "
            "expression again from the current values")
    if <void *>v.owner != mine:
        raise RuntimeError(
            f"this Variable was recorded by thread {(<Tape>v.owner).thread_name!r} and cannot be "
            f"used from thread {threading.current_thread().name!r}: each thread records its own "
            "tape. Use v.detach() or v.data to pass values between threads")
    return <Tape>v.owner


cdef inline Tape _tape_for(object a, int ka, object b, int kb):
    """This thread's tape, checking that recorded operands belong to it."""
    cdef Tape tape = _thread_tape()
    if ka >= K_NODE and (<Variable>a).owner != <PyObject *>tape or ka == K_RELEASED:
        _owning_tape(<Variable>a)
    if kb >= K_NODE and (<Variable>b).owner != <PyObject *>tape or kb == K_RELEASED:
        _owning_tape(<Variable>b)
    return tape


cdef inline ac_node _operand(Tape tape, object o, int kind) except -1:
    """The operand reference of a recorded Variable (its node) or of a leaf
    (AC_LEAF_REF | its entry in this tape's leaf table, made on first use)."""
    cdef Variable v = <Variable>o
    if kind == K_NODE:
        if v.kind != K_NODE:      # released by the compaction that made room
            _owning_tape(v)
        return v.index
    if v.cache_tape == &tape.t:
        return AC_LEAF_REF | v.index
    return _new_leaf_entry(tape, v)


cdef ac_node _new_leaf_entry(Tape tape, Variable leaf) except -1:
    cdef int64_t k = tape.t.nleaves
    cdef int rc = ac_reserve_leaves(&tape.t, 1)
    if rc == -2:
        raise MemoryError(f"the leaf table of this thread's tape is full ({AC_MAX_LEAVES:,} entries)")
    if rc < 0:
        raise MemoryError("out of memory growing the leaf table")
    _detach(leaf)          # its entry on another thread's tape becomes a past one
    Py_INCREF(leaf)
    tape.t.leaf_obj[k] = <void *>leaf
    tape.t.leaf_val[k] = leaf.value
    tape.t.leaf_version[k] = leaf.version
    tape.t.leaf_grad[k] = 0.0
    tape.t.leaf_flags[k] = AC_LEAF_CURRENT
    tape.t.nleaves = k + 1
    leaf.cache_tape = &tape.t
    leaf.index = k
    return AC_LEAF_REF | k


cdef inline int64_t _const(Tape tape, double c) except -1:
    cdef int64_t k = ac_const_index(&tape.t, c)
    if k < 0:
        raise MemoryError("out of memory growing the constant pool of the tape")
    return k


cdef int _anomaly(int op, double y, tuple inputs) except -1:
    shown = ", ".join(repr(x) for x in inputs)
    raise FloatingPointError(
        f"detect_anomaly: {ac_op_name(op).decode()}({shown}) produced {y!r}")


# ---------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------

cdef inline object _binary(int op, int op_xc, int op_cx, object left, object right):
    """left <op> right.  op_xc records `node op constant`, op_cx `constant op node`."""
    cdef double x, z, y
    cdef int ka, kb
    cdef Tape tape
    cdef ac_node ia, ib
    cdef ac_code code
    cdef ac_thread_state *ts
    # Numbers first: converting one may run Python code (a float subclass's
    # __float__), which must not run between reading a Variable and recording.
    if type(left) is not Variable:
        if not _number(left, &x):
            return NotImplemented
        ka = K_CONST
    if type(right) is not Variable:
        if not _number(right, &z):
            return NotImplemented
        kb = K_CONST
    if type(left) is Variable:
        x = (<Variable>left).value
        ka = (<Variable>left).kind
    if type(right) is Variable:
        z = (<Variable>right).value
        kb = (<Variable>right).kind

    # The value comes from the formula of the op that will be recorded, so a
    # constant exponent uses ac_powc, exactly as its adjoint does.
    if kb == K_CONST and ka != K_CONST:
        y = ac_const_value(op_xc, x, -z if op == AC_SUB else z)
    elif ka == K_CONST and kb != K_CONST:
        y = ac_const_value(op_cx, z, x)
    else:
        y = ac_binary_value(op, x, z)
    ts = ac_this_thread()
    if ts.anomaly and not isfinite(y):
        _anomaly(op, y, (x, z))
    if (ka | kb) == K_CONST or not ts.grad_enabled:
        return _new_constant(y)

    tape = _tape_for(left, ka, right, kb)
    _reserve(tape, 1)
    if ka and kb:
        ia = _operand(tape, left, ka)
        ib = _operand(tape, right, kb)
        code = ac_pack(op, <uint64_t>ia, <uint64_t>ib)
    elif ka:
        ia = _operand(tape, left, ka)
        # x - c is recorded as x + (-c): IEEE defines subtraction that way
        code = ac_pack(op_xc, <uint64_t>ia, <uint64_t>_const(tape, -z if op == AC_SUB else z))
    else:
        ib = _operand(tape, right, kb)
        code = ac_pack(op_cx, <uint64_t>ib, <uint64_t>_const(tape, x))
    return _new_node(tape, ac_push(&tape.t, code, y), y)


cdef object _unary(int op, object arg):
    cdef double x, y
    cdef int ka
    cdef Tape tape
    cdef ac_node ia
    cdef ac_thread_state *ts
    if type(arg) is Variable:
        x = (<Variable>arg).value
        ka = (<Variable>arg).kind
    elif _number(arg, &x):
        ka = K_CONST
    else:
        _raise_not_number(arg, ac_op_name(op).decode() + "()")
    y = ac_unary_value(op, x)
    ts = ac_this_thread()
    if ts.anomaly and not isfinite(y):
        _anomaly(op, y, (x,))
    if ka == K_CONST or not ts.grad_enabled:
        return _new_constant(y)
    tape = _tape_for(arg, ka, None, K_CONST)
    _reserve(tape, 1)
    ia = _operand(tape, arg, ka)
    return _new_node(tape, ac_push(&tape.t, ac_pack(op, <uint64_t>ia, 0), y), y)


cdef object _nary(int op, list items, int width, str where, object fn=None, double given=0.0):
    """One n-ary node over items: AC_SUM (width 1), AC_DOT (width 2, pairs
    interleaved x0, z0, x1, z1, ...) or AC_CUSTOM (width 1: the inputs of
    Function fn, whose forward gave the value `given`)."""
    cdef Py_ssize_t n = len(items), j
    cdef double y = 0.0, v
    cdef double *values = NULL
    cdef uint8_t *kinds = NULL
    cdef bint any_grad = False
    cdef Tape tape
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int64_t offset
    cdef uint32_t ref
    cdef object o

    if n >= AC_REF_CONST:
        raise ValueError(f"{where} takes at most {AC_REF_CONST - 1:,} items, got {n:,}")
    values = <double *>malloc((n + 1) * sizeof(double))
    kinds = <uint8_t *>malloc(n + 1)
    if values == NULL or kinds == NULL:
        free(values)
        free(kinds)
        raise MemoryError()
    try:
        for j in range(n):       # numbers first, as in _binary: conversion may run Python code
            o = items[j]
            if type(o) is not Variable:
                if not _number(o, &values[j]):
                    raise TypeError(
                        f"{where} takes Variables or real numbers, but item {j // width} is "
                        f"{type(o).__name__}")
                kinds[j] = K_CONST
        for j in range(n):
            o = items[j]
            if type(o) is Variable:
                values[j] = (<Variable>o).value
                kinds[j] = (<Variable>o).kind
            any_grad |= kinds[j] != K_CONST
        if op == AC_CUSTOM:
            y = given
        elif width == 1:
            for j in range(n):
                y += values[j]
        else:
            for j in range(0, n, 2):
                y += values[j] * values[j + 1]
        if ts.anomaly and not isfinite(y):
            if op == AC_CUSTOM:
                shown = ", ".join([repr(values[j]) for j in range(n)])
                raise FloatingPointError(
                    f"detect_anomaly: {type(fn).__name__}.forward({shown}) produced {y!r}")
            _anomaly(op, y, ())
        if not any_grad or not ts.grad_enabled:
            return _new_constant(y)

        tape = _thread_tape()
        for j in range(n):
            if kinds[j] >= K_NODE:
                _tape_for(items[j], kinds[j], None, K_CONST)
        if tape.t.nargs + n + 1 > tape.args_compact_at:
            # operand lists of data-heavy dot()/sum() grow faster than the node count
            tape._compact_and_reschedule(1, n + 1)
        _reserve(tape, 1)
        if ac_reserve_args(&tape.t, n + 1) < 0:
            raise MemoryError("out of memory growing the operand lists of the tape")
        offset = tape.t.nargs
        tape.t.args[offset] = <uint32_t>n
        for j in range(n):
            if kinds[j] == K_CONST:
                ref = AC_REF_CONST | <uint32_t>_const(tape, values[j])
            else:
                ref = <uint32_t>_operand(tape, items[j], kinds[j])
            tape.t.args[offset + 1 + j] = ref
        tape.t.nargs = offset + 1 + n
        if op == AC_CUSTOM:
            tape.functions[tape.t.size] = fn
        return _new_node(tape, ac_push(&tape.t, ac_pack_offset(op, <uint64_t>offset), y), y)
    finally:
        free(values)
        free(kinds)


cdef object _compare(object a, object b, int how):
    cdef double x, z
    if type(a) is Variable:
        x = (<Variable>a).value
    elif not _number(a, &x):
        return NotImplemented
    if type(b) is Variable:
        z = (<Variable>b).value
    elif not _number(b, &z):
        return NotImplemented
    if how == 0:
        return x < z
    if how == 1:
        return x <= z
    if how == 2:
        return x > z
    return x >= z


# ---------------------------------------------------------------------------
# sweeping
# ---------------------------------------------------------------------------

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
            name = (<Variable>t.leaf_obj[k]).name
            label = "" if name is None else f" {name!r}"
            raise RuntimeError(
                f"a leaf{label} of this graph was assigned a new value (leaf.data = ...) after "
                "the graph was recorded, so its gradient would be for a value that no longer "
                "exists; record the expression again from the current values")

        for k in range(swept.leaf_lo, swept.leaf_hi + 1):
            if delivered:
                if not t.leaf_flags[k] & AC_LEAF_CURRENT:
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
            else:
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
    tape._freeze()                  # the search meets Functions again (their results are kept)
    try:
        found = ac_find_anomaly(t, adj, leaf_adj, root, seed)
    finally:
        tape._thaw()
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
        inputs = f"{_ref_value(t, ac_operand_a(code))!r}, {_ref_value(t, ac_operand_b(code))!r}"
    elif op >= AC_ADDC:
        inputs = f"{_ref_value(t, ac_operand_a(code))!r}, {t.consts[ac_operand_b(code)]!r}"
    else:
        inputs = f"{_ref_value(t, ac_operand_a(code))!r}"
    raise FloatingPointError(
        f"detect_anomaly: the backward of {ac_op_name(op).decode()}({inputs}) produced a "
        f"non-finite gradient (the result was {t.val[found]!r})")


cdef inline double _ref_value(ac_tape *t, ac_node ref) noexcept:
    if ref & AC_LEAF_REF:
        return t.leaf_val[ref & ~AC_LEAF_REF]
    return t.val[ref]


cdef void _keep_adjoints(Tape tape, double *adj, ac_node lo, ac_node root) noexcept:
    """Each live recorded Variable keeps its adjoint from this pass as .grad
    (0 if the output does not depend on it), so the buffer can go."""
    cdef PyObject *p = tape.live_head
    cdef ac_node i
    while p != NULL:
        i = (<Variable>p).index
        (<Variable>p).grad_value = adj[i] if lo <= i <= root else 0.0
        p = (<Variable>p).next


# ---------------------------------------------------------------------------
# module functions
# ---------------------------------------------------------------------------

def exp(x):
    """e ** x"""
    return _unary(AC_EXP, x)

def log(x):
    """Natural logarithm (nan below 0, -inf at 0)."""
    return _unary(AC_LOG, x)

def log1p(x):
    """log(1 + x), accurate near 0."""
    return _unary(AC_LOG1P, x)

def expm1(x):
    """exp(x) - 1, accurate near 0."""
    return _unary(AC_EXPM1, x)

def sqrt(x):
    """Square root (nan below 0)."""
    return _unary(AC_SQRT, x)

def sin(x):
    """Sine."""
    return _unary(AC_SIN, x)

def cos(x):
    """Cosine."""
    return _unary(AC_COS, x)

def tan(x):
    """Tangent."""
    return _unary(AC_TAN, x)

def atan(x):
    """Arctangent."""
    return _unary(AC_ATAN, x)

def tanh(x):
    """Hyperbolic tangent."""
    return _unary(AC_TANH, x)

def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _unary(AC_SIGMOID, x)

def relu(x):
    """max(x, 0); gradient 0 at 0, as PyTorch."""
    return _unary(AC_RELU, x)

def softplus(x):
    """log(1 + exp(x)), linear above 20 as torch.nn.functional.softplus."""
    return _unary(AC_SOFTPLUS, x)

def erf(x):
    """The error function."""
    return _unary(AC_ERF, x)

def abs(x):
    """|x|; gradient 0 at 0, as PyTorch."""
    return _unary(AC_ABS, x)


def maximum(a, b):
    """The larger of a and b (nan if either is nan); at a tie each gets half the gradient, as torch.maximum."""
    r = _binary(AC_MAX, AC_MAXC, AC_MAXC, a, b)
    if r is NotImplemented:
        _raise_not_number(b if isinstance(a, Variable) or _is_number(a) else a, "maximum()")
    return r


def minimum(a, b):
    """The smaller of a and b (nan if either is nan); at a tie each gets half the gradient, as torch.minimum."""
    r = _binary(AC_MIN, AC_MINC, AC_MINC, a, b)
    if r is NotImplemented:
        _raise_not_number(b if isinstance(a, Variable) or _is_number(a) else a, "minimum()")
    return r


cdef bint _is_number(object o) except -1:
    cdef double x
    return _number(o, &x)


def sum(iterable):
    """Sum of Variables and numbers as ONE node (O(n) tape work, one Python call).

    Examples
    --------
    >>> import autograd_c as ag
    >>> xs = [ag.Variable(float(i)) for i in range(4)]
    >>> s = ag.sum(xs)
    >>> s.backward(); [x.grad for x in xs]
    [1.0, 1.0, 1.0, 1.0]
    """
    return _nary(AC_SUM, list(iterable), 1, "sum()")   # a private copy: nothing can change it meanwhile


def dot(xs, ys):
    """sum(x * y for x, y in zip(xs, ys)) as ONE node: a neuron's w . x in one call.

    Raises ValueError if the lengths differ.
    """
    xs = xs if type(xs) is list else list(xs)
    ys = ys if type(ys) is list else list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"dot() needs sequences of equal length, got {len(xs)} and {len(ys)}")
    items = [None] * (2 * len(xs))
    items[0::2] = xs
    items[1::2] = ys
    return _nary(AC_DOT, items, 2, "dot()")


def grad(output, inputs):
    """d(output)/d(input) for each input, as a list of floats.

    Unlike backward(), touches no ``.grad``.  An input that output does
    not depend on gets 0.0.

    Examples
    --------
    >>> import autograd_c as ag
    >>> x, y = ag.Variable(3.0), ag.Variable(4.0)
    >>> ag.grad(x * y, [x, y])
    [4.0, 3.0]
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
    _check_idle("call grad()")                     # before any buffer is touched
    result = [0.0] * len(inputs)
    if out.kind == K_CONST:
        raise RuntimeError("grad() of a Variable that does not require grad (a constant)")
    if out.kind == K_LEAF:
        return [1.0 if x is out else 0.0 for x in inputs]
    tape = _owning_tape(out)
    root = out.index
    adj = tape._adjoints(root + 1 + tape.t.nleaves)
    try:
        tape._sweep(adj, root, 1.0, 0, &swept)
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
        tape._done_with_adjoints(adj)
    return result


# ---------------------------------------------------------------------------
# modes and introspection (the Python layer wraps these)
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# graph introspection
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# custom Functions (the Python class is autograd_c.Function)
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# nn kernel: a whole dense layer in one call
# ---------------------------------------------------------------------------

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


cdef inline uint32_t _ref_of(Tape tape, Variable v) except? 0xffffffff:
    """The n-ary operand reference of any Variable (constants go to the pool)."""
    if v.kind == K_CONST:
        return AC_REF_CONST | <uint32_t>_const(tape, v.value)
    return <uint32_t>_operand(tape, v, v.kind)


def _dense(list rows, list biases, x, activation):
    """act(b_j + w_j . x) for each row w_j of weights: one dot node (bias
    included, summed as b + w0*x0 + w1*x1 + ...) and one activation node
    per output.  rows: lists of Variables; x: Variables or numbers.
    Returns a list of Variables."""
    cdef Py_ssize_t nout = len(rows), nin, j, k, width
    cdef int act = _activation_op(activation)
    cdef list xs = x if type(x) is list else list(x)
    cdef list row, out
    cdef double *xv = NULL
    cdef uint8_t *xk = NULL
    cdef uint32_t *xref = NULL
    cdef uint32_t *args
    cdef double y
    cdef bint record = False
    cdef Tape tape
    cdef ac_thread_state *ts = ac_this_thread()
    cdef int64_t offset
    cdef uint32_t one
    cdef ac_node first
    cdef Variable w

    if len(biases) != nout:
        raise ValueError(f"{nout} weight rows but {len(biases)} biases")
    nin = len(xs)
    width = 2 * nin + 2                  # operand references per dot node
    if width >= AC_REF_CONST:
        raise ValueError(f"a layer takes at most {AC_REF_CONST // 2 - 2:,} inputs")
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
    xv = <double *>malloc((nin + 1) * sizeof(double))
    xk = <uint8_t *>malloc(nin + 1)
    xref = <uint32_t *>malloc((nin + 1) * sizeof(uint32_t))
    if xv == NULL or xk == NULL or xref == NULL:
        free(xv); free(xk); free(xref)
        raise MemoryError()
    try:
        for k in range(nin):           # numbers first: converting one may run Python code
            if type(xs[k]) is not Variable:
                if not _number(xs[k], &xv[k]):
                    raise TypeError(
                        f"a layer takes Variables or real numbers, but input {k} is "
                        f"{type(xs[k]).__name__}")
                xk[k] = K_CONST
        for k in range(nin):
            if type(xs[k]) is Variable:
                xv[k] = (<Variable>xs[k]).value
                xk[k] = (<Variable>xs[k]).kind
                record |= xk[k] != K_CONST
        out = [None] * nout
        if not record or not ts.grad_enabled:
            for j in range(nout):
                row = rows[j]
                y = (<Variable>biases[j]).value
                for k in range(nin):
                    y += (<Variable>row[k]).value * xv[k]
                out[j] = _new_constant(y if act < 0 else ac_unary_value(act, y))
            return out

        tape = _thread_tape()
        for k in range(nin):
            if xk[k] >= K_NODE:
                _tape_for(xs[k], xk[k], None, K_CONST)
        for j in range(nout):
            row = rows[j]
            for k in range(nin):
                if (<Variable>row[k]).kind >= K_NODE:
                    _tape_for(row[k], (<Variable>row[k]).kind, None, K_CONST)
            if (<Variable>biases[j]).kind >= K_NODE:
                _tape_for(biases[j], (<Variable>biases[j]).kind, None, K_CONST)
        if tape.t.nargs + nout * (width + 1) > tape.args_compact_at:
            tape._compact_and_reschedule(2 * nout, nout * (width + 1))
        _reserve(tape, 2 * nout)
        if ac_reserve_args(&tape.t, nout * (width + 1)) < 0:
            raise MemoryError("out of memory growing the operand lists of the tape")
        # operand references only now: compaction above renumbers nodes
        for k in range(nin):
            xref[k] = (AC_REF_CONST | <uint32_t>_const(tape, xv[k]) if xk[k] == K_CONST
                       else <uint32_t>_operand(tape, xs[k], xk[k]))
        one = AC_REF_CONST | <uint32_t>_const(tape, 1.0)
        first = tape.t.size
        for j in range(nout):
            row = rows[j]
            w = <Variable>biases[j]
            offset = tape.t.nargs
            args = tape.t.args
            args[offset] = <uint32_t>width
            args[offset + 1] = _ref_of(tape, w)
            args[offset + 2] = one
            y = w.value                    # b, then each w*x: micrograd's order
            for k in range(nin):
                w = <Variable>row[k]
                args[offset + 3 + 2 * k] = _ref_of(tape, w)
                args[offset + 4 + 2 * k] = xref[k]
                y += w.value * xv[k]
            tape.t.nargs = offset + 1 + width
            if ts.anomaly and not isfinite(y):
                _anomaly(AC_DOT, y, ())
            ac_push(&tape.t, ac_pack_offset(AC_DOT, <uint64_t>offset), y)
            if act >= 0:
                y = ac_unary_value(act, tape.t.val[tape.t.size - 1])
                if ts.anomaly and not isfinite(y):
                    _anomaly(act, y, (tape.t.val[tape.t.size - 1],))
                ac_push(&tape.t, ac_pack(act, <uint64_t>(tape.t.size - 1), 0), y)
        # Variables last: every node is on the tape before any object is made
        for j in range(nout):
            k = first + (2 * j + 1 if act >= 0 else j)
            out[j] = _new_node(tape, k, tape.t.val[k])
        return out
    finally:
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


cdef int _check_step(list params) except -1:
    """Every parameter can be updated: checked before any is, so a failed
    step changes nothing."""
    cdef Py_ssize_t j
    for j in range(len(params)):
        if (<Variable>params[j]).kind != K_LEAF:
            raise TypeError(
                f"parameter {j} no longer requires grad (requires_grad was set to False); "
                "an optimiser updates leaves that require grad")
        _check_settable(<Variable>params[j], "step an optimiser")
    return 0


def _sgd_step(list params, double[::1] buf, double lr, double momentum, double weight_decay,
              bint first):
    """torch.optim.SGD's update (no dampening, no Nesterov) on leaf Variables."""
    cdef Py_ssize_t j
    cdef Variable v
    cdef double g
    _check_step(params)
    for j in range(len(params)):
        v = <Variable>params[j]
        g = _leaf_grad(v)
        if weight_decay != 0.0:
            g = g + weight_decay * v.value
        if momentum != 0.0:
            buf[j] = g if first else momentum * buf[j] + g
            g = buf[j]
        _set_value(v, v.value + (-lr) * g)


def _adam_step(list params, double[::1] m, double[::1] s, long step, double lr,
               double beta1, double beta2, double eps, double weight_decay):
    """torch.optim.Adam's update (no AMSGrad) at step number `step` (from 1)."""
    cdef Py_ssize_t j
    cdef Variable v
    cdef double g, step_size, denom_scale
    _check_step(params)
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
