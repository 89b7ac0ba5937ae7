# tape.pxd -- the C core as Cython sees it (src/tape.h, src/ops.h, src/thread_state.h).
# Everything here is plain C: no Python objects, nogil-safe unless noted.
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint16_t, uint8_t

cdef extern from "ops.h" nogil:
    cdef enum:
        AC_SUM, AC_DOT, AC_CUSTOM     # n-ary: operand lists in args
        # one node operand
        AC_NEG, AC_ABS, AC_EXP, AC_LOG, AC_LOG1P, AC_EXPM1, AC_SQRT, AC_SIN, AC_COS
        AC_TAN, AC_ATAN, AC_TANH, AC_SIGMOID, AC_RELU, AC_SOFTPLUS, AC_ERF
        # a node operand and a constant
        AC_ADDC, AC_RSUBC, AC_MULC, AC_DIVC, AC_RDIVC, AC_POWC, AC_RPOWC, AC_MAXC, AC_RMAXC
        AC_MINC, AC_RMINC
        # two node operands
        AC_ADD, AC_SUB, AC_MUL, AC_DIV, AC_POW, AC_MAX, AC_MIN
        AC_NUM_OPS
    double ac_unary_value(int op, double x)
    double ac_const_value(int op, double x, double c)
    double ac_binary_value(int op, double x, double z)
    const char *ac_op_name(int op)

cdef extern from "tape.h":
    ctypedef int64_t ac_node          # node index = creation order = topological order
    # called by the sweep with the GIL held (so not nogil): runs a Function's backward
    ctypedef const double *(*ac_custom_hook)(void *ctx, ac_node i, double g) noexcept
    # called with the GIL between blocks of a long sweep: nonzero stops it (Ctrl-C)
    ctypedef int (*ac_poll_hook)(void *ctx) noexcept

cdef extern from "tape.h" nogil:
    ctypedef uint64_t ac_code         # opcode | mark | operand a | operand b
    ctypedef uint64_t ac_ref          # a node index, AC_LEAF_BIT | leaf entry, AC_CONST_BIT | pool index

    ac_code AC_MARK
    ac_node AC_MAX_NODES              # the narrow layout's limits ...
    int64_t AC_MAX_LEAVES
    int64_t AC_MAX_CONSTS
    ac_node AC_WIDE_MAX_NODES         # ... and the wide layout's (nodes and leaf entries)
    int64_t AC_WIDE_MAX_CONSTS
    ac_ref AC_LEAF_BIT                # reference flag: a leaf-table index, not a node
    ac_ref AC_CONST_BIT               # n-ary reference flag: a constant-pool index
    ac_ref AC_REF_INDEX               # the index bits of a reference
    uint32_t AC_NARROW_CONST          # 2^31: n-ary lists hold fewer references than this
    uint8_t AC_LEAF_CURRENT           # leaf_flags: the leaf caches this entry
    uint8_t AC_LEAF_MARK              # leaf_flags: reached
    uint8_t AC_LEAF_RELEASED          # leaf_flags: a released Variable's value (no gradient)

    ctypedef struct ac_retained:      # array parts kept after a graph died (tape_retain.c)
        pass

    ctypedef struct ac_tape:
        ac_code *code                 # [capacity] opcode and operands per node
        double *val                   # [capacity] forward value per node
        uint16_t *hi                  # wide layout: high index bits per node; NULL if narrow
        ac_node size
        ac_node capacity
        double *consts                # constant operands
        int64_t nconsts
        uint32_t *args                # n-ary operand lists (narrow): count, then references
        uint64_t *wargs               # the same, wide layout
        int64_t nargs
        void **leaf_obj               # leaf table: Variable objects (strong references)
        double *leaf_val              #   value when recorded
        uint32_t *leaf_version        #   the leaf's version when recorded
        double *leaf_grad             #   gradient not yet handed to the leaf object
        uint8_t *leaf_flags           #   AC_LEAF_CURRENT | AC_LEAF_MARK | AC_LEAF_RELEASED
        int64_t nleaves
        int64_t ndetached             # entries not current for their leaf
        ac_custom_hook custom_backward    # adjoints of AC_CUSTOM nodes (a user's Function)
        ac_poll_hook poll                 # asked between blocks of long sweeps: stop?
        void *custom_ctx                  # the hooks' context (the Tape object)
        uint64_t leaf_flag            # operands in the current layout: t.leaf_flag | leaf entry,
        uint64_t const_flag           # t.const_flag | pool index (n-ary lists)
        int busy                      # nonzero: the owner is reading or rewriting the tape
        ac_retained retained          # array parts kept since the last graph died

    ctypedef struct ac_sweep_result:
        ac_node lo                    # lowest node reached
        int64_t leaf_lo               # leaf entries touched lie in [leaf_lo, leaf_hi]
        int64_t leaf_hi
        int exact                     # reached leaf entries carry AC_LEAF_MARK
        int delivered                 # leaf gradients went into leaf_grad; leaf_adj saved the old ones

    ctypedef struct ac_compactor:
        uint64_t *keep                # bit i: node i survives
        ac_node kept

    ac_code ac_pack(int op, uint64_t a, uint64_t b)
    ac_code ac_pack_offset(int op, uint64_t offset)
    int ac_opcode(ac_code c)
    bint ac_is_nary(int op)
    uint64_t ac_offset(ac_code c)

    void ac_tape_init(ac_tape *t)
    void ac_tape_free(ac_tape *t)
    void ac_tape_clear(ac_tape *t)
    void ac_tape_trim(ac_tape *t)
    int64_t AC_SHRINK_ABOVE           # arrays above this many entries are "large"
    int ac_tape_retain(ac_tape *t, void **extra, const size_t *lo, const size_t *hi, int nextra)
    void ac_tape_free_large(ac_tape *t)
    double ac_retain_seconds          # what the next graph does not take back goes after this
    void ac_retain_take(ac_retained *r, const void *block, size_t upto)
    size_t ac_retained_bytes(ac_retained *r)
    void ac_release_retained_now()
    int ac_grow_nodes(ac_tape *t, ac_node need)
    int ac_reserve_args(ac_tape *t, int64_t more)
    int ac_reserve_leaves(ac_tape *t, int64_t more)
    size_t ac_tape_bytes(const ac_tape *t)
    int64_t ac_const_index(ac_tape *t, double c)
    int ac_widen(ac_tape *t)
    int64_t ac_narrow_limit           # nodes and leaf entries past which the tape widens (tests)

    # recording, with operands in the tape's layout (t.leaf_flag, t.const_flag)
    ac_node ac_push_op(ac_tape *t, int op, uint64_t a, uint64_t b, double v)
    ac_node ac_push_nary(ac_tape *t, int op, int64_t offset, double v)
    void ac_set_word(ac_tape *t, int64_t pos, uint64_t w)
    # reading a node's operands
    ac_ref ac_ref_of_narrow(uint64_t f)   # a narrow-layout operand field as an ac_ref
    ac_ref ac_ref_a(const ac_tape *t, ac_node i)
    ac_ref ac_ref_b(const ac_tape *t, ac_node i)
    int64_t ac_const_b(const ac_tape *t, ac_node i)
    int64_t ac_nargs(const ac_tape *t, ac_node i)
    ac_ref ac_arg(const ac_tape *t, ac_node i, int64_t k)

    bint ac_is_marked(const ac_tape *t, ac_node i)
    void ac_set_mark(ac_tape *t, ac_node i)
    int ac_sweep(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed,
                  int deliver, ac_sweep_result *r)
    void ac_undo_delivery(ac_tape *t, const double *saved, int64_t lo, int64_t hi)
    ac_node ac_find_anomaly(ac_tape *t, double *adj, double *leaf_adj, ac_node root, double seed)
    void ac_mark_reachable(ac_tape *t, ac_node root, ac_sweep_result *r)
    void ac_clear_marks(ac_tape *t, const ac_sweep_result *r, ac_node root)

    uint64_t *ac_stale_nodes(const ac_tape *t, const uint8_t *stale_leaf, int *failed)
    bint ac_bit(const uint64_t *bits, ac_node i)
    int ac_compact_begin(ac_tape *t, ac_compactor *cp)
    ac_node ac_rank(const ac_compactor *cp, ac_node i)
    void ac_compact_finish(ac_tape *t, ac_compactor *cp, const int64_t *leaf_remap)
    void ac_compact_free(ac_compactor *cp)

cdef extern from "thread_state.h" nogil:
    ctypedef struct ac_thread_state:
        void *tape                    # borrowed: this thread's Tape, or NULL
        int grad_enabled
        int anomaly
        void *trace                   # borrowed: the _Trace being recorded on this thread, or NULL
    ac_thread_state *ac_this_thread()

cdef extern from "higher.h":
    # called with the GIL by ac_tangent_sweep for AC_CUSTOM nodes (a Function's jvp)
    ctypedef int (*ac_jvp_hook)(void *ctx, ac_node i, const double *tangents, const uint8_t *on,
                                double *out) noexcept

    ctypedef struct ac_tangents:
        ac_node lo                    # nodes below lo have no tangent
        ac_node sweep_from "from"     # the sweep starts here (no tangent in [lo, from))
        int64_t leaf_lo               # nor leaf entries below leaf_lo
        const double *leaf_dot        # [nleaves - leaf_lo] tangents of leaf entries
        const uint8_t *leaf_on        #   1 where an entry has one
        double *dot                   # [hi - lo + 1] out: node tangents
        uint8_t *on                   #   1 where a node has one
        double *scratch               # AC_CUSTOM operand tangents (longest operand list)
        uint8_t *scratch_on
        ac_jvp_hook custom_jvp
        void *ctx

    uint8_t AC_ADJ_REACHED            # ac_adjoints.state bits
    uint8_t AC_ADJ_DOT

    ctypedef struct ac_adjoints:
        ac_node lo                    # nodes below lo are not swept
        int64_t leaf_lo               # contributions to entries below leaf_lo are dropped
        uint8_t *state                # [root - lo + 1] AC_ADJ_* bits (caller zeroes, seeds)
        double *adj                   # [root - lo + 1] adjoints
        double *adj_dot               #   and their tangents (forward-over-reverse), or NULL
        double *leaf_adj              # [nleaves - leaf_lo] zeroed by the caller
        double *leaf_adj_dot          #   and their tangents, or NULL
        const ac_tangents *tangents   # forward-over-reverse; NULL for first order
        int tangents_only             # adjoints known: sweep only their tangents (Hessian columns)
        const uint8_t *active         # 1 where a node depends on some input (NULL: any may)
        ac_node custom_node           # out: the AC_CUSTOM node that needs a second-order rule

    cdef enum:
        AC_REC_NONE, AC_REC_NUMBER, AC_REC_OBJECT, AC_REC_OPERAND, AC_REC_FAILED

    ctypedef struct ac_rec:
        double v                      # value
        void *obj                     # AC_REC_OBJECT: a Python object (borrowed)
        uint32_t ref                  # AC_REC_OPERAND: a tape operand reference
        int kind                      # AC_REC_*
        const void *hooks             # the recorder (set by the C++ side)

    ctypedef struct ac_rec_hooks:
        int (*binary)(void *ctx, int op, const ac_rec *a, const ac_rec *b, ac_rec *out) noexcept
        int (*unary)(void *ctx, int op, const ac_rec *a, ac_rec *out) noexcept
        void *ctx

    # called with the GIL (hooks run Python code), so not nogil
    int ac_tangent_sweep(const ac_tape *t, ac_node hi, ac_tangents *tg)
    void ac_first_uses(const ac_tape *t, ac_node lo, ac_node hi, int64_t leaf_lo, int64_t nl,
                       ac_node *first)
    int ac_reverse_sweep(ac_tape *t, ac_node root, ac_adjoints *a)
    int ac_record_adjoint(const ac_tape *t, ac_node i, const ac_rec *g, const ac_rec_hooks *hooks,
                          ac_rec out[2])
    int ac_record_binary(int op, const ac_rec *a, const ac_rec *b, const ac_rec_hooks *hooks,
                         ac_rec *out)
