/* higher.cpp -- forward mode, forward-over-reverse and create_graph, from the adjoint columns of ops.h.
 *
 * One formula text, several number types.  Every opcode's adjoint column in
 * src/ops.h (in x, z or c, y = the node's value, g = its adjoint) is
 * expanded here with three kinds of numbers:
 *   double  the tangent (forward-mode) rule: the columns are linear in g, so
 *           a node's tangent is its adjoint column with g := the operand's
 *           tangent, summed over the operands that have one (this is how
 *           PyTorch's forward formulas relate to its backward ones);
 *   dual    value + tangent.  The column evaluated with g, x, z and y as
 *           duals is the tangent of the adjoint contribution: autograd
 *           applied to the backward formula, PyTorch's double backward
 *           computed forward-over-reverse.  dual's own operations (+, *,
 *           exp, pow ...) take their tangents from the same columns: a dual
 *           x * y is MUL's two columns with g := x.d and g := y.d;
 *   rec     a number standing for a Python object (a Variable) or a plain
 *           number, whose operations call back into the Cython recorder:
 *           the column evaluated with recs records the backward formula as
 *           ordinary tape nodes (create_graph=True).
 * So each opcode's second-order rule is its first-order line, and the
 * sweeps cannot drift apart.  A term whose factors have no tangent is not a
 * dual at all (the templates below are instantiated per operand kind), so a
 * number without a tangent never multiplies a tangent of 0 (0 * inf).
 *
 * Rules of this file: POD types only, no exceptions, RTTI, new/delete or
 * standard library (the module links as C); failures are return codes and
 * AC_REC_FAILED.  higher.h documents the interface.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "higher.h"
#include "higher_numbers.h"

/* Long sweeps ask the tape's poll hook (Ctrl-C) every 2^20 nodes, as tape.c. */
#define HI_POLL_EVERY ((ac_node)1 << 20)
#define HI_POLL_DUE(t, i)                                                      \
    (HI_UNLIKELY(((i) & (HI_POLL_EVERY - 1)) == 0)                            \
     && (t)->poll != NULL && (t)->poll((t)->custom_ctx))

/* ==== tangent sweep ======================================================= */

/* Operands are read as ac_refs (tape.h), the same in either tape layout:
 * ac_ref_a/ac_ref_b/ac_const_b for a node's own fields, hi_refs for an
 * n-ary node's list.  A tape may widen while create_graph records (between
 * two hook calls): ac_refs stay valid, pointers into the lists do not. */
struct hi_refs {            /* an n-ary node's operand list: count, then refs [1..count] */
    const uint32_t *n32;
    const uint64_t *n64;
    HI_INLINE hi_refs(const ac_tape *t, ac_code w)
        : n32(t->wargs != NULL ? NULL : t->args + ac_offset(w)),
          n64(t->wargs != NULL ? t->wargs + ac_offset(w) : NULL) {}
    HI_INLINE uint64_t count() const { return n64 != NULL ? n64[0] : n32[0]; }
    HI_INLINE ac_ref operator[](uint64_t k) const
    {
        return n64 != NULL ? n64[k] : ac_ref_of_arg32(n32[k]);
    }
};

#define HI_VALUE(r) (ac_ref_is_leaf(r) ? t->leaf_val[ac_ref_index(r)] : t->val[(r)])

static HI_INLINE bool on_ref(const ac_tangents *tg, ac_ref r)
{
    if (ac_ref_is_leaf(r)) {
        int64_t k = ac_ref_index(r);
        return k >= tg->leaf_lo && tg->leaf_on[k - tg->leaf_lo];
    }
    return (ac_node)r >= tg->lo && tg->on[r - tg->lo];
}

static HI_INLINE double dot_ref(const ac_tangents *tg, ac_ref r)     /* where on_ref */
{
    if (ac_ref_is_leaf(r)) return tg->leaf_dot[ac_ref_index(r) - tg->leaf_lo];
    return tg->dot[r - tg->lo];
}

/* A const-or-operand reference of an n-ary node: its value, and whether it has a tangent */
static HI_INLINE double arg_value(const ac_tape *t, ac_ref r)
{
    return (r & AC_CONST_BIT) ? t->consts[r & ~AC_CONST_BIT] : HI_VALUE(r);
}

int ac_tangent_sweep(const ac_tape *t, ac_node hi, ac_tangents *tg)
{
    const ac_node lo = tg->lo;
    ac_node i, from = tg->from > lo ? (tg->from <= hi ? tg->from : hi + 1) : lo;
    memset(tg->on, 0, (size_t)(from - lo));
    for (i = from; i <= hi; ++i) {
        ac_code w = t->code[i];
        int op = ac_opcode(w);
        ac_ref a = ac_ref_a(t, i), b = ac_ref_b(t, i);
        double y = t->val[i], d = 0.0;
        bool on = false;
        if (HI_POLL_DUE(t, i)) return -1;
        switch (op) {
#define HI_UNARY(OP, NAME, F, D)                                               \
        case OP:                                                               \
            if ((on = on_ref(tg, a))) {                                        \
                double g = dot_ref(tg, a), x = HI_VALUE(a);                    \
                (void)x;                                                       \
                d = (D);                                                       \
            }                                                                  \
            break;
        AC_UNARY_OPS(HI_UNARY)
#undef HI_UNARY
#define HI_CONST(OP, NAME, F, D)                                               \
        case OP:                                                               \
            if ((on = on_ref(tg, a))) {                                        \
                double g = dot_ref(tg, a), x = HI_VALUE(a), c = t->consts[ac_const_b(t, i)]; \
                (void)x; (void)c;                                              \
                d = (D);                                                       \
            }                                                                  \
            break;
        AC_CONST_OPS(HI_CONST)
#undef HI_CONST
#define HI_BINARY(OP, NAME, F, DX, DZ)                                         \
        case OP: {                                                             \
            bool xon = on_ref(tg, a), zon = on_ref(tg, b);                     \
            double x = HI_VALUE(a), z = HI_VALUE(b);                           \
            (void)x; (void)z;                                                  \
            if (xon) { double g = dot_ref(tg, a); d = (DX); }                  \
            if (zon) { double g = dot_ref(tg, b); d = xon ? d + (DZ) : (DZ); } \
            on = xon || zon;                                                   \
            break;                                                             \
        }
        AC_BINARY_OPS(HI_BINARY)
#undef HI_BINARY
        case AC_SUM: {
            hi_refs refs(t, w);
            uint64_t k, m = refs.count();
            for (k = 1; k <= m; ++k) {
                if (!(refs[k] & AC_CONST_BIT) && on_ref(tg, refs[k])) {
                    d = on ? d + dot_ref(tg, refs[k]) : dot_ref(tg, refs[k]);
                    on = true;
                }
            }
            break;
        }
        case AC_DOT: {   /* pairs (x_j, z_j): x_j' * z_j + x_j * z_j' */
            hi_refs refs(t, w);
            uint64_t k, m = refs.count();
            for (k = 1; k < m; k += 2) {
                ac_ref rx = refs[k], rz = refs[k + 1];
                bool xon = !(rx & AC_CONST_BIT) && on_ref(tg, rx);
                bool zon = !(rz & AC_CONST_BIT) && on_ref(tg, rz);
                if (xon) {
                    double term = dot_ref(tg, rx) * arg_value(t, rz);
                    d = on ? d + term : term;
                    on = true;
                }
                if (zon) {
                    double term = dot_ref(tg, rz) * arg_value(t, rx);
                    d = on ? d + term : term;
                    on = true;
                }
            }
            break;
        }
        case AC_CUSTOM: {
            hi_refs refs(t, w);
            uint64_t k, m = refs.count();
            for (k = 1; k <= m; ++k) {
                bool kon = !(refs[k] & AC_CONST_BIT) && on_ref(tg, refs[k]);
                tg->scratch_on[k - 1] = (uint8_t)kon;
                tg->scratch[k - 1] = kon ? dot_ref(tg, refs[k]) : 0.0;
                on = on || kon;
            }
            if (on && tg->custom_jvp(tg->ctx, i, tg->scratch, tg->scratch_on, &d) != 0) return -1;
            break;
        }
        default:
            break;
        }
        (void)y;
        tg->on[i - lo] = (uint8_t)on;
        if (on) tg->dot[i - lo] = d;
    }
    return 0;
}

void ac_first_uses(const ac_tape *t, ac_node lo, ac_node hi, int64_t leaf_lo, int64_t nl,
                   ac_node *first)
{
    ac_node i;
    int64_t k;
    for (k = 0; k < nl; ++k) first[k] = hi + 1;
#define HI_FIRST(r)                                                            \
    do {                                                                       \
        ac_ref r_ = (r);                                                       \
        if (ac_ref_is_leaf(r_)) {                                              \
            int64_t e_ = ac_ref_index(r_) - leaf_lo;                           \
            if (e_ >= 0 && e_ < nl && first[e_] > i) first[e_] = i;            \
        }                                                                      \
    } while (0)
    for (i = lo; i <= hi; ++i) {
        ac_code w = t->code[i];
        int op = ac_opcode(w);
        if (op >= AC_ADD) {
            HI_FIRST(ac_ref_a(t, i));
            HI_FIRST(ac_ref_b(t, i));
        } else if (op > AC_LAST_NARY) {
            HI_FIRST(ac_ref_a(t, i));
        } else {
            hi_refs refs(t, w);
            for (uint64_t m = 1, n = refs.count(); m <= n; ++m)
                if (!(refs[m] & AC_CONST_BIT)) HI_FIRST(refs[m]);
        }
    }
#undef HI_FIRST
}

/* ==== reverse sweep: first order, or forward-over-reverse ================ */

struct reverse_ctx {
    ac_adjoints *a;
    ac_node lo, low;          /* low: the lowest node reached so far */
    int64_t leaf_lo;
    bool only_dot;            /* tangents_only: the adjoints are known, add only tangents */
};

/* The first contribution to a node sets its adjoint, later ones add. */
static HI_INLINE void touch(reverse_ctx &rc, ac_ref r, double v)
{
    if (rc.only_dot) return;
    if (ac_ref_is_leaf(r)) {
        int64_t k = ac_ref_index(r) - rc.leaf_lo;
        if (k >= 0) rc.a->leaf_adj[k] += v;
        return;
    }
    if ((ac_node)r < rc.lo) return;
    ac_node j = (ac_node)r - rc.lo;
    if (rc.a->state[j] & AC_ADJ_REACHED) {
        rc.a->adj[j] += v;
    } else {
        rc.a->state[j] = AC_ADJ_REACHED;
        rc.a->adj[j] = v;
        if ((ac_node)r < rc.low) rc.low = (ac_node)r;
    }
}

static HI_INLINE void touch(reverse_ctx &rc, ac_ref r, dual v)
{
    if (ac_ref_is_leaf(r)) {
        int64_t k = ac_ref_index(r) - rc.leaf_lo;
        if (k >= 0) {
            if (!rc.only_dot) rc.a->leaf_adj[k] += v.v;
            rc.a->leaf_adj_dot[k] += v.d;
        }
        return;
    }
    if ((ac_node)r < rc.lo) return;
    ac_node j = (ac_node)r - rc.lo;
    uint8_t st = rc.a->state[j];
    if (rc.only_dot) {             /* reached already: the first-order sweep went this way */
        if (st & AC_ADJ_DOT) rc.a->adj_dot[j] += v.d;
        else rc.a->adj_dot[j] = v.d;
        rc.a->state[j] = st | AC_ADJ_DOT;
        return;
    }
    if (!(st & AC_ADJ_REACHED)) {
        rc.a->adj[j] = v.v;
        rc.a->adj_dot[j] = v.d;
        if ((ac_node)r < rc.low) rc.low = (ac_node)r;
    } else if (!(st & AC_ADJ_DOT)) {
        rc.a->adj[j] += v.v;
        rc.a->adj_dot[j] = v.d;
    } else {
        rc.a->adj[j] += v.v;
        rc.a->adj_dot[j] += v.d;
    }
    rc.a->state[j] = AC_ADJ_REACHED | AC_ADJ_DOT;
}

/* x as the number type its tangent calls for */
#define HI_ARG(on, v, r) ((on) ? dual((v), dot_ref(tg, (r))) : dual((v)))

template <class G>
static HI_INLINE void node_contrib(const ac_tape *t, reverse_ctx &rc, const ac_tangents *tg,
                                   ac_code w, ac_node i, G g)
{
    int op = ac_opcode(w);
    ac_ref a = ac_ref_a(t, i), b = ac_ref_b(t, i);
    double x = HI_VALUE(a), y = t->val[i];
    if (op < AC_ADDC) {                                /* one operand */
        if (tg != NULL && on_ref(tg, a))
            unary_contrib<reverse_ctx, G, dual>(rc, op, g, dual(x, dot_ref(tg, a)), dual(y, tg->dot[i - tg->lo]), a);
        else
            unary_contrib<reverse_ctx, G, double>(rc, op, g, x, y, a);
    } else if (op < AC_ADD) {                          /* operand and constant */
        double c = t->consts[ac_const_b(t, i)];
        if (tg != NULL && on_ref(tg, a))
            const_contrib<reverse_ctx, G, dual>(rc, op, g, dual(x, dot_ref(tg, a)), c, dual(y, tg->dot[i - tg->lo]), a);
        else
            const_contrib<reverse_ctx, G, double>(rc, op, g, x, c, y, a);
    } else {                                           /* two operands */
        double z = HI_VALUE(b);
        bool xon = tg != NULL && on_ref(tg, a), zon = tg != NULL && on_ref(tg, b);
        if (xon || zon) {
            dual yd(y, tg->dot[i - tg->lo]);
            if (xon && zon)
                binary_contrib<reverse_ctx, G, dual, dual>(rc, op, g, dual(x, dot_ref(tg, a)), dual(z, dot_ref(tg, b)), yd, a, b);
            else if (xon)
                binary_contrib<reverse_ctx, G, dual, double>(rc, op, g, dual(x, dot_ref(tg, a)), z, yd, a, b);
            else
                binary_contrib<reverse_ctx, G, double, dual>(rc, op, g, x, dual(z, dot_ref(tg, b)), yd, a, b);
        } else {
            binary_contrib<reverse_ctx, G, double, double>(rc, op, g, x, z, y, a, b);
        }
    }
}

/* AC_DOT: pairs (x_j, z_j), d/dx_j = z_j and d/dz_j = x_j, as tape.c */
template <class G>
static HI_INLINE void dot_contrib(const ac_tape *t, reverse_ctx &rc, const ac_tangents *tg,
                                  hi_refs refs, G g)
{
    uint64_t k, m = refs.count();
    for (k = 1; k < m; k += 2) {
        ac_ref rx = refs[k], rz = refs[k + 1];
        double x = arg_value(t, rx), z = arg_value(t, rz);
        bool xon = tg != NULL && !(rx & AC_CONST_BIT) && on_ref(tg, rx);
        bool zon = tg != NULL && !(rz & AC_CONST_BIT) && on_ref(tg, rz);
        if (!(rx & AC_CONST_BIT)) {
            if (zon) touch(rc, rx, g * dual(z, dot_ref(tg, rz)));
            else touch(rc, rx, g * z);
        }
        if (!(rz & AC_CONST_BIT)) {
            if (xon) touch(rc, rz, g * dual(x, dot_ref(tg, rx)));
            else touch(rc, rz, g * x);
        }
    }
}

template <class G>
static HI_INLINE void sum_contrib(reverse_ctx &rc, hi_refs refs, G g)
{
    uint64_t k, m = refs.count();
    for (k = 1; k <= m; ++k)
        if (!(refs[k] & AC_CONST_BIT)) touch(rc, refs[k], g);
}

int ac_reverse_sweep(ac_tape *t, ac_node root, ac_adjoints *a)
{
    const ac_tangents *tg = a->tangents;
    reverse_ctx rc;
    ac_node i;
    rc.a = a;
    rc.lo = a->lo;
    rc.low = root;
    rc.leaf_lo = a->leaf_lo;
    rc.only_dot = tg != NULL && a->tangents_only;
    for (i = root; i >= a->lo; --i) {       /* seeds may lie anywhere in [lo, root] */
        uint8_t *st = &a->state[i - a->lo];
        if (*st & AC_ADJ_REACHED) rc.low = i;
        if (rc.only_dot) *st &= (uint8_t)~AC_ADJ_DOT;
    }
    for (i = root; i >= rc.low; --i) {
        ac_node j = i - a->lo;
        uint8_t st = a->state[j];
        ac_code w;
        int op;
        double g;
        if (HI_POLL_DUE(t, i)) return -1;
        if (!(st & AC_ADJ_REACHED)) continue;
        if (tg != NULL) {
            /* what depends on no input hands nothing down that reaches one
             * (a Function there needs no second-order rule); with the
             * adjoints known, a node without a tangent (it has one iff an
             * operand has) and whose adjoint has none adds nothing either */
            if (a->active != NULL && !a->active[j]) continue;
            if (rc.only_dot && !(st & AC_ADJ_DOT) && !tg->on[i - tg->lo]) continue;
        }
        w = t->code[i];
        op = ac_opcode(w);
        g = a->adj[j];
        if (op == AC_CUSTOM) {
            hi_refs refs(t, w);
            const double *gin;
            uint64_t k, m = refs.count();
            if (tg != NULL) {           /* a second-order rule is needed where a tangent meets it */
                bool needs = (st & AC_ADJ_DOT) != 0 || tg->on[i - tg->lo];
                if (needs) {
                    a->custom_node = i;
                    return -2;
                }
                if (rc.only_dot) continue;     /* its first-order part is known */
            }
            if (g == 0.0) {             /* no call; zeros still reach the operands */
                for (k = 1; k <= m; ++k)
                    if (!(refs[k] & AC_CONST_BIT)) touch(rc, refs[k], 0.0);
                continue;
            }
            gin = t->custom_backward(t->custom_ctx, i, g);
            if (gin == NULL) return -1;
            refs = hi_refs(t, t->code[i]);     /* the hook may have moved the lists */
            for (k = 1; k <= m; ++k)
                if (!(refs[k] & AC_CONST_BIT)) touch(rc, refs[k], gin[k - 1]);
            continue;
        }
        if (st & AC_ADJ_DOT) {
            dual gd(g, a->adj_dot[j]);
            if (op == AC_SUM) sum_contrib(rc, hi_refs(t, w), gd);
            else if (op == AC_DOT) dot_contrib(t, rc, tg, hi_refs(t, w), gd);
            else node_contrib(t, rc, tg, w, i, gd);
        } else {
            if (op == AC_SUM) sum_contrib(rc, hi_refs(t, w), g);
            else if (op == AC_DOT) dot_contrib(t, rc, tg, hi_refs(t, w), g);
            else node_contrib(t, rc, tg, w, i, g);
        }
    }
    return 0;
}

/* ==== recorder numbers: create_graph ===================================== */

/* A number of the backward formula while create_graph records it: an
 * ac_rec (a Variable, a tape operand, or a plain number).  Operations on
 * plain numbers stay numbers (the same formulas as the recorder's constant
 * path); any other operation is recorded through the hooks.  A failed hook
 * makes AC_REC_FAILED, which every later operation passes on. */
struct rec {
    ac_rec r;
    rec() = default;
    rec(double value)
    {
        r.v = value;
        r.obj = NULL;
        r.ref = 0;
        r.kind = AC_REC_NUMBER;
        r.hooks = NULL;
    }
    rec(const ac_rec &from) : r(from) {}
};

static HI_INLINE rec rec_failed()
{
    rec f(NAN);
    f.r.kind = AC_REC_FAILED;
    return f;
}

static rec rec_binary(int op, const rec &x, const rec &z)
{
    const ac_rec_hooks *h;
    rec out;
    if (x.r.kind == AC_REC_FAILED || z.r.kind == AC_REC_FAILED) return rec_failed();
    if (x.r.kind == AC_REC_NUMBER && z.r.kind == AC_REC_NUMBER)
        return rec(ac_binary_value(op, x.r.v, z.r.v));
    h = x.r.kind != AC_REC_NUMBER ? x.r.hooks : z.r.hooks;
    if (h->binary(h->ctx, op, &x.r, &z.r, &out.r) != 0) return rec_failed();
    out.r.hooks = h;
    return out;
}

static rec rec_unary(int op, const rec &x)
{
    const ac_rec_hooks *h = x.r.hooks;
    rec out;
    if (x.r.kind == AC_REC_FAILED) return rec_failed();
    if (x.r.kind == AC_REC_NUMBER) return rec(ac_unary_value(op, x.r.v));
    if (h->unary(h->ctx, op, &x.r, &out.r) != 0) return rec_failed();
    out.r.hooks = h;
    return out;
}

/* A double on either side converts to a plain number (rec(double)). */
static HI_INLINE rec operator+(const rec &x, const rec &z) { return rec_binary(AC_ADD, x, z); }
static HI_INLINE rec operator-(const rec &x, const rec &z) { return rec_binary(AC_SUB, x, z); }
static HI_INLINE rec operator*(const rec &x, const rec &z) { return rec_binary(AC_MUL, x, z); }
static HI_INLINE rec operator/(const rec &x, const rec &z) { return rec_binary(AC_DIV, x, z); }
static HI_INLINE rec ac_powc(const rec &x, const rec &z) { return rec_binary(AC_POW, x, z); }
static HI_INLINE rec operator-(const rec &x) { return rec_unary(AC_NEG, x); }
static HI_INLINE rec exp(const rec &x) { return rec_unary(AC_EXP, x); }
static HI_INLINE rec log(const rec &x) { return rec_unary(AC_LOG, x); }
static HI_INLINE rec sin(const rec &x) { return rec_unary(AC_SIN, x); }
static HI_INLINE rec cos(const rec &x) { return rec_unary(AC_COS, x); }
static HI_INLINE rec ac_sigmoid(const rec &x) { return rec_unary(AC_SIGMOID, x); }
HI_COMPARE(const rec &, const rec &, a.r.v, b.r.v)

static HI_INLINE rec operand_rec(const ac_tape *t, ac_ref ref, const ac_rec_hooks *hooks)
{
    rec x(HI_VALUE(ref));
    x.r.kind = AC_REC_OPERAND;
    x.r.ref = ref;
    x.r.hooks = hooks;
    return x;
}

int ac_record_adjoint(const ac_tape *t, ac_node i, const ac_rec *g_in, const ac_rec_hooks *hooks,
                      ac_rec out[2])
{
    /* everything node i needs is read here, before the first recording */
    ac_code w = t->code[i];
    int op = ac_opcode(w);
    ac_ref a = ac_ref_a(t, i), b = ac_ref_b(t, i);
    rec g(*g_in), x = operand_rec(t, a, hooks), y = operand_rec(t, (ac_ref)i, hooks);
    rec dx = rec_failed(), dz(0.0);
    if (g.r.kind != AC_REC_NUMBER) g.r.hooks = hooks;
    if (op < AC_ADDC) {
        switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: dx = (D); break;
        AC_UNARY_OPS(HI_CASE)
#undef HI_CASE
        default: break;
        }
    } else if (op < AC_ADD) {
        double c = t->consts[ac_const_b(t, i)];
        switch (op) {
#define HI_CASE(OP, NAME, F, D) case OP: dx = (D); break;
        AC_CONST_OPS(HI_CASE)
#undef HI_CASE
        default: break;
        }
    } else {
        rec z = operand_rec(t, b, hooks);
        switch (op) {   /* after a failure nothing more is recorded */
#define HI_CASE(OP, NAME, F, DX, DZ)                                           \
        case OP: dx = (DX); if (dx.r.kind != AC_REC_FAILED) dz = (DZ); break;
        AC_BINARY_OPS(HI_CASE)
#undef HI_CASE
        default: break;
        }
    }
    out[0] = dx.r;
    out[1] = dz.r;
    return dx.r.kind == AC_REC_FAILED || dz.r.kind == AC_REC_FAILED ? -1 : 0;
}

int ac_record_binary(int op, const ac_rec *a, const ac_rec *b, const ac_rec_hooks *hooks,
                     ac_rec *out)
{
    rec x(*a), z(*b), r;
    if (x.r.kind != AC_REC_NUMBER) x.r.hooks = hooks;
    if (z.r.kind != AC_REC_NUMBER) z.r.hooks = hooks;
    r = rec_binary(op, x, z);
    *out = r.r;
    return r.r.kind == AC_REC_FAILED ? -1 : 0;
}
