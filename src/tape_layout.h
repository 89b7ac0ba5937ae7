/* tape_layout.h -- the two tape layouts as macros, for loops written once.
 *
 * tape_sweep.h and tape_compact.h hold every loop that reads operands from
 * the code words.  Each is included twice, with AC_WIDE 0 (the narrow
 * layout) and 1 (the wide one; tape.h describes both), and names its
 * functions through AC_L(name): name_narrow or name_wide.  So the narrow
 * loops are the ones the tape always ran, with no test of the layout per
 * node, and the wide ones the same text over 64-bit references.
 *
 * In a loop, an operand is an L_REF: a node index, or a leaf reference
 * (L_IS_LEAF, entry L_INDEX); a node index needs no decoding in either
 * layout.  L_A/L_B read node i's operands from its word w (after L_HI_OF(t)
 * in the function), L_CONST_B a constant op's pool index; n-ary lists are
 * L_ARG words at L_ARGS(t) + offset: a count, then references or constants
 * (L_ARG_IS_CONST, pool index L_ARG_CONST).  L_PACK* write node j's word
 * (and high byte) from references.
 */
#undef AC_L
#undef L_REF
#undef L_HI_OF
#undef L_A
#undef L_B
#undef L_CONST_B
#undef L_IS_LEAF
#undef L_INDEX
#undef L_LEAF
#undef L_ARG
#undef L_ARGS
#undef L_ARG_IS_CONST
#undef L_ARG_CONST
#undef L_MAKE_CONST
#undef L_PACK
#undef L_PACK_CONST

#if AC_WIDE
#define AC_L(name)          name##_wide
#define L_REF               uint64_t
#define L_HI_OF(t)          const uint16_t *hi_ = (t)->hi
#define L_A(i, w)           ac_ref_of_wide(ac_field_a(w), hi_[i] & 0xffu)
#define L_B(i, w)           ac_ref_of_wide(ac_field_b(w), (unsigned)hi_[i] >> 8)
#define L_CONST_B(i, w)     (ac_field_b(w) | ((uint64_t)(hi_[i] >> 8) << 28))
#define L_IS_LEAF(r)        (((r) & AC_LEAF_BIT) != 0)
#define L_INDEX(r)          ((int64_t)((r) & AC_REF_INDEX))
#define L_LEAF(k)           (AC_LEAF_BIT | (uint64_t)(k))
#define L_ARG               uint64_t
#define L_ARGS(t)           ((t)->wargs)
#define L_ARG_IS_CONST(r)   (((r) & AC_CONST_BIT) != 0)
#define L_ARG_CONST(r)      ((int64_t)((r) & ~AC_CONST_BIT))
#define L_MAKE_CONST(k)     (AC_CONST_BIT | (uint64_t)(k))
#define L_PACK(t, j, op, ra, rb)                                               \
    ((t)->hi[j] = (uint16_t)((((ra) >> 27) & 0xff) | (((rb) >> 27) & 0xff) << 8), \
     ac_pack((op), ac_narrow_field(ra), ac_narrow_field(rb)))
#define L_PACK_CONST(t, j, op, ra, k)                                          \
    ((t)->hi[j] = (uint16_t)((((ra) >> 27) & 0xff) | (((uint64_t)(k) >> 28) & 0xff) << 8), \
     ac_pack((op), ac_narrow_field(ra), (uint64_t)(k) & AC_FIELD_MASK))
#else
#define AC_L(name)          name##_narrow
#define L_REF               uint32_t
#define L_HI_OF(t)          (void)0
#define L_A(i, w)           ((uint32_t)ac_field_a(w))
#define L_B(i, w)           ((uint32_t)ac_field_b(w))
#define L_CONST_B(i, w)     ac_field_b(w)
#define L_IS_LEAF(r)        (((r) & AC_NARROW_LEAF) != 0)
#define L_INDEX(r)          ((int64_t)((r) & AC_NARROW_INDEX))
#define L_LEAF(k)           (AC_NARROW_LEAF | (uint32_t)(k))
#define L_ARG               uint32_t
#define L_ARGS(t)           ((t)->args)
#define L_ARG_IS_CONST(r)   (((r) & AC_NARROW_CONST) != 0)
#define L_ARG_CONST(r)      ((int64_t)((r) & ~AC_NARROW_CONST))
#define L_MAKE_CONST(k)     (AC_NARROW_CONST | (uint32_t)(k))
#define L_PACK(t, j, op, ra, rb)        ac_pack((op), (ra), (rb))
#define L_PACK_CONST(t, j, op, ra, k)   ac_pack((op), (ra), (uint64_t)(k))
#endif

/* Run BODY with R bound to each operand reference of node i, word w (node
 * indices and leaf references alike; constants are not operands). */
#ifndef AC_FOR_EACH_OPERAND
#define AC_FOR_EACH_OPERAND(t, i, w, R, BODY)                                  \
    do {                                                                       \
        int op_ = ac_opcode(w);                                                \
        if (op_ >= AC_FIRST_BINARY) {                                          \
            L_REF R = L_A(i, w); BODY;                                         \
            R = L_B(i, w); BODY;                                               \
        } else if (op_ > AC_LAST_NARY) {                                       \
            L_REF R = L_A(i, w); BODY;                                         \
        } else {                                                               \
            const L_ARG *refs_ = L_ARGS(t) + ac_offset(w);                     \
            L_ARG k_, m_ = refs_[0];                                           \
            for (k_ = 1; k_ <= m_; ++k_) {                                     \
                if (!L_ARG_IS_CONST(refs_[k_])) { L_REF R = refs_[k_]; BODY; } \
            }                                                                  \
        }                                                                      \
    } while (0)
#endif
