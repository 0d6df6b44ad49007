/* kps_simplify.c — algebraic simplification: exact identities (x*1, x+(-0.0), x-0, x/1,
 * identity, neg(neg), relu(relu), abs(abs), a cast to the same dtype, a slice of the
 * whole tensor with step 1, a concat of one input), merged transposes, reshapes and clamps, and
 * reduce_sum(matmul(A, B)) computed as a dot product of A's column sums and B's row sums,
 * so the product is never materialized. Depends on ir/ only.
 *
 * Contract. Every rewrite keeps the node's dtype and shape (checked by re-inference).
 * The identities are exact in IEEE arithmetic, which is why x + (+0.0) and x - (-0.0)
 * are NOT rewritten for floats: (-0.0) + (+0.0) is +0.0, not x. Integers are wrapping,
 * so any integer zero is neutral. A constant operand counts only when every element is
 * neutral and it broadcasts without enlarging x (node type == x's type). The
 * reduce_sum(matmul) rewrite is a reassociation, NOT bit-exact for floats: with the
 * interpreter accumulating in double, the column/row sums each round once to the dtype,
 * so the error is about eps(dtype) * sum_k |colsum_k * rowsum_k| — the same order as the
 * original's per-element rounding of the product — and stays within the f32 test
 * tolerance unless the total cancels catastrophically. Integers are exact (mod 2^n).
 * Not done for f16/bf16, whose extra roundings would exceed their tolerance; every
 * other rewrite applies to every integer (signed or not) and float dtype alike.
 *
 * Uses of a replaced node go to the surviving value within the same sweep (node ids are
 * topological, so one forward sweep resolves chains); replaced nodes are removed, other
 * nodes that become dead are left for dce. A root that would be replaced becomes an
 * identity of the survivor under its own name. Sweeps repeat to a fixed point (at most
 * SIMP_MAX_SWEEPS, each linear in the graph plus one sort when nodes were added). On an
 * error the graph still verifies and computes the same values. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272
#define SIMP_MAX_SWEEPS 8

#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
  ST_ARITH,
  ST_IDENTITY,
  ST_PAIR,
  ST_TRANSPOSE,
  ST_RESHAPE,
  ST_CLAMP,
  ST_REDUCE_MATMUL,
  ST_ROOT,
  ST_COUNT
};

static const char *const stat_names[ST_COUNT] = {
    "arithmetic identities removed", "identity nodes removed", "neg/relu/abs pairs removed",
    "transposes merged", "reshapes merged", "clamps merged",
    "reduce_sum(matmul) rewritten", "roots kept as identity"};

typedef struct simp {
  kir_graph *g;
  const kps_context *ctx;
  bool *root;      /* per node id */
  kir_node **roots; /* ctx->roots' nodes, looked up once per pass (roots are never removed) */
  int32_t *repl;   /* per node id: the node that now stands for it */
  bool *removed;   /* replaced, to be compacted away */
  int64_t stats[ST_COUNT];
  int64_t rewrites; /* in the current sweep */
  bool rewired;     /* some input was redirected */
} simp;

/* What a local rewrite decided: to >= 0 replaces the node by node `to`; to == -1 with
 * kind >= 0 means the node was rewritten in place; kind < 0 means no rewrite. */
typedef struct outcome {
  int32_t to;
  int kind;
} outcome;

static const outcome NONE = {-1, -1};

static outcome replace_by(int32_t to, int kind) { return (outcome){to, kind}; }
static outcome in_place(int kind) { return (outcome){-1, kind}; }

/* ---------------------------------------------------------------- helpers ------- */

static const kir_node *input(const kir_graph *g, const kir_node *n, int32_t k) {
  return g->nodes[n->inputs[k]];
}

/* Every float dtype: each op computes in double and rounds once to the dtype, so the
 * exact identities below hold for f16/bf16 as for f32. */
static bool is_float(kiln_dtype t) {
  return t == KILN_F32 || t == KILN_F64 || t == KILN_F16 || t == KILN_BF16;
}
/* Every integer dtype: all wrap at their width, so the ring identities hold for each. */
static bool is_int(kiln_dtype t) {
  return t == KILN_I32 || t == KILN_I64 || t == KILN_I8 || t == KILN_I16 || t == KILN_U8 ||
         t == KILN_U16 || t == KILN_U32 || t == KILN_U64;
}
/* The reduce_sum(matmul) reassociation rounds three more times: at f16/bf16 precision
 * that exceeds their tolerance, so it is kept to f32/f64 (and the exact integers). */
static bool reassociates(kiln_dtype t) { return is_int(t) || t == KILN_F32 || t == KILN_F64; }

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get((int32_t)op);
  return i ? i->name : "invalid";
}

static kiln_status nomem(kir_graph *g, const char *what) {
  return kir_seterr(g, KILN_ERR_NOMEM, "simplify: out of memory %s", what);
}

/* Looks the roots up by name on the first sweep only: on big graphs each lookup is a
 * few cache misses, and nodes keep their identity through compaction and sorting (a
 * root is never removed, and appended nodes get fresh names), so later sweeps read the
 * new ids from the saved nodes. */
static kiln_status mark_roots(simp *s) {
  kir_graph *g = s->g;
  const kps_context *ctx = s->ctx;
  bool first = !s->roots;
  if (first && ctx->n_roots > 0 && !(s->roots = kir_malloc((size_t)ctx->n_roots * sizeof *s->roots)))
    return nomem(g, "");
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    const char *name = ctx->roots[r];
    int32_t id = first ? kps_root_id(g, ctx, r) : -1;
    kir_node *n = !first ? s->roots[r] : id >= 0 ? g->nodes[id] : NULL;
    if (!n) {
      char esc[KPS_ESC];
      return kir_seterr(g, KILN_ERR_ARGUMENT, "simplify: root '%s' is not a node of the graph",
                        kir_escape(name ? name : "(null)", esc, sizeof esc));
    }
    s->roots[r] = n;
    s->root[n->id] = true;
  }
  return KILN_OK;
}

static kiln_status check_typed(kir_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->type.dtype != KILN_DTYPE_INVALID || kir_op_has(n->op, KIR_F_NO_OUTPUT)) continue;
    char esc[KPS_ESC];
    return kir_seterr(g, KILN_ERR_GRAPH, "node '%s' (%s) has no type; run infer-shapes before simplify",
                      kir_escape(n->name, esc, sizeof esc), op_name(n->op));
  }
  return KILN_OK;
}

/* After an in-place rewrite of n (whose earlier state is saved / old_in0), checks by
 * re-inference that the type is unchanged; otherwise undoes it: a Kiln bug. */
static kiln_status confirm(kir_graph *g, kir_node *n, const kir_node *saved, int32_t old_in0) {
  kiln_status st = kir_infer_node(g, n);
  if (st == KILN_OK && kir_type_equal(&n->type, &saved->type)) return KILN_OK;
  *n = *saved;
  n->inputs[0] = old_in0;
  char esc[KPS_ESC];
  return kir_seterr(g, KILN_ERR_INTERNAL, "simplify: rewriting node '%s' (%s) changed its type",
                    kir_escape(n->name, esc, sizeof esc), op_name(n->op));
}

/* ---------------------------------------------------------------- x*1, x+0 ------ */

typedef enum neutral { NEUTRAL_ONE, NEUTRAL_ADD, NEUTRAL_SUB } neutral;

/* True when x op c == x exactly for this element c: 1 for mul/div; for floats -0.0 for
 * add and +0.0 for sub (the only zeros that keep the sign of a zero x); any 0 for ints. */
static bool elem_neutral(const kir_tensor *t, int64_t i, neutral k) {
  if (is_int(t->type.dtype)) {
    int64_t v = kir_tensor_get_i(t, i);
    return k == NEUTRAL_ONE ? v == 1 : v == 0;
  }
  double v = kir_tensor_get_f(t, i);
  if (k == NEUTRAL_ONE) return v == 1.0;
  return v == 0.0 && (signbit(v) != 0) == (k == NEUTRAL_ADD);
}

static bool all_neutral(const kir_node *c, kiln_dtype dt, neutral k) {
  const kir_tensor *t = c->op == KIR_OP_CONSTANT ? kir_attr_tensor(c, "value") : NULL;
  if (!t || !t->data || t->type.dtype != dt || !(is_int(dt) || is_float(dt))) return false;
  int64_t ne = kir_type_numel(&t->type);
  if (ne < 0) return false;
  for (int64_t i = 0; i < ne; i++)
    if (!elem_neutral(t, i, k)) return false;
  return true;
}

/* x op c with c neutral on the right (and on the left for commutative ops). */
static outcome binary_identity(const kir_graph *g, const kir_node *n) {
  if (n->n_inputs != 2) return NONE;
  const kir_node *a = input(g, n, 0), *b = input(g, n, 1);
  kiln_dtype dt = n->type.dtype;
  bool a_keeps = kir_type_equal(&a->type, &n->type), b_keeps = kir_type_equal(&b->type, &n->type);
  neutral k = n->op == KIR_OP_ADD ? NEUTRAL_ADD : n->op == KIR_OP_SUB ? NEUTRAL_SUB : NEUTRAL_ONE;
  if (a_keeps && all_neutral(b, dt, k)) return replace_by(a->id, ST_ARITH);
  bool commutes = n->op == KIR_OP_ADD || n->op == KIR_OP_MUL;
  if (commutes && b_keeps && all_neutral(a, dt, k)) return replace_by(b->id, ST_ARITH);
  return NONE;
}

/* ---------------------------------------------------------------- unary pairs --- */

static outcome unary_pair(const kir_graph *g, const kir_node *n) {
  const kir_node *in = input(g, n, 0);
  if (in->op != n->op || in->n_inputs != 1 || !kir_type_equal(&in->type, &n->type)) return NONE;
  if (n->op == KIR_OP_RELU || n->op == KIR_OP_ABS) /* relu(relu(x)) = relu(x), abs likewise */
    return replace_by(in->id, ST_PAIR);
  const kir_node *x = input(g, in, 0);                       /* neg(neg(x)) = x, exactly */
  return kir_type_equal(&x->type, &n->type) ? replace_by(x->id, ST_PAIR) : NONE;
}

/* An identity pinned to another device than its input is an explicit copy: kept. */
static outcome identity_node(const kir_graph *g, const kir_node *n) {
  const kir_node *in = input(g, n, 0);
  if (n->device[0] && strcmp(n->device, in->device) != 0) return NONE;
  if (n->assigned_device[0] && strcmp(n->assigned_device, in->assigned_device) != 0) return NONE;
  return kir_type_equal(&in->type, &n->type) ? replace_by(in->id, ST_IDENTITY) : NONE;
}

/* cast to its input's dtype, concat of one input, and a slice with every step 1 that
 * keeps the whole shape (with step 1 an unchanged length means start 0 and end the dim),
 * are their input, whatever the dtype. */
static bool steps_all_one(const kir_node *n) {
  int32_t count = 0;
  const int64_t *v = kir_attr_ints(n, "steps", &count);
  for (int32_t i = 0; v && i < count; i++)
    if (v[i] != 1) return false;
  return true;
}

static outcome noop_shape_op(const kir_graph *g, const kir_node *n) {
  if (n->n_inputs != 1) return NONE;
  const kir_node *in = input(g, n, 0);
  if (!kir_type_equal(&in->type, &n->type)) return NONE;
  if (n->op == KIR_OP_SLICE && !steps_all_one(n)) return NONE;
  return replace_by(in->id, ST_IDENTITY);
}

/* ---------------------------------------------------------------- transposes ---- */

/* n's permutation (absent = reversed axes); false if malformed. */
static bool perm_of(const kir_node *n, int32_t rank, int64_t *p) {
  int32_t count = 0;
  const int64_t *v = kir_attr_ints(n, "perm", &count);
  if (v && count != rank) return false;
  for (int32_t i = 0; i < rank; i++) {
    p[i] = v ? v[i] : rank - 1 - i;
    if (p[i] < 0 || p[i] >= rank) return false;
  }
  return true;
}

/* transpose(transpose(x, p1), p2) = transpose(x, q) with q[j] = p1[p2[j]]. */
static kiln_status merge_transpose(kir_graph *g, kir_node *n, outcome *out) {
  const kir_node *in = input(g, n, 0);
  if (in->op != KIR_OP_TRANSPOSE || in->n_inputs != 1) return KILN_OK;
  const kir_node *x = input(g, in, 0);
  int32_t rank = n->type.rank;
  int64_t p1[KILN_MAX_RANK], p2[KILN_MAX_RANK], q[KILN_MAX_RANK];
  if (x->type.rank != rank || rank > KILN_MAX_RANK) return KILN_OK;
  if (!perm_of(in, rank, p1) || !perm_of(n, rank, p2)) return KILN_OK;
  bool ident = true;
  for (int32_t j = 0; j < rank; j++) {
    q[j] = p1[p2[j]];
    ident = ident && q[j] == j;
  }
  if (ident) {
    if (kir_type_equal(&x->type, &n->type)) *out = replace_by(x->id, ST_TRANSPOSE);
    return KILN_OK;
  }
  kir_node saved = *n;
  n->inputs[0] = x->id;
  n->n_attrs = 0; /* a fresh attribute array: the old one stays intact for undo */
  n->attrs = NULL;
  kiln_status st = kir_attr_set_ints(g, n, "perm", q, rank);
  if (st != KILN_OK) {
    *n = saved;
    n->inputs[0] = in->id;
    return st;
  }
  st = confirm(g, n, &saved, in->id);
  if (st == KILN_OK) *out = in_place(ST_TRANSPOSE);
  return st;
}

/* ---------------------------------------------------------------- reshapes ------ */

/* reshape(reshape(x)) reads x directly; a reshape to x's own shape is x. */
static kiln_status merge_reshape(kir_graph *g, kir_node *n, outcome *out) {
  const kir_node *in = input(g, n, 0);
  if (in->op == KIR_OP_RESHAPE && in->n_inputs == 1) {
    const kir_node *x = input(g, in, 0);
    if (kir_type_equal(&x->type, &n->type)) {
      *out = replace_by(x->id, ST_RESHAPE);
      return KILN_OK;
    }
    kir_node saved = *n;
    n->inputs[0] = x->id;
    kiln_status st = confirm(g, n, &saved, in->id);
    if (st == KILN_OK) *out = in_place(ST_RESHAPE);
    return st;
  }
  if (kir_type_equal(&in->type, &n->type)) *out = replace_by(in->id, ST_RESHAPE);
  return KILN_OK;
}

/* ---------------------------------------------------------------- clamps -------- */

typedef struct bounds {
  double lo, hi; /* -inf / +inf when absent */
  bool has_lo, has_hi;
} bounds;

/* A NaN bound means "no bound" to the kernels, so it reads as absent here too. */
static bounds bounds_of(const kir_node *n) {
  double lo = kir_attr_float(n, "min", NAN), hi = kir_attr_float(n, "max", NAN);
  bounds b = {isnan(lo) ? -INFINITY : lo, isnan(hi) ? INFINITY : hi, !isnan(lo), !isnan(hi)};
  return b;
}

/* Integer kernels clamp to [ceil(lo), floor(hi)] (then to the dtype's range). */
static bool interval_nonempty(double lo, double hi, kiln_dtype dt) {
  return is_int(dt) ? ceil(lo) <= floor(hi) : lo <= hi;
}

/* clamp(clamp(x, I1), I2) = clamp(x, I1 ∩ I2) when both intervals and their intersection
 * are non-empty: clamping is the projection onto an interval, rounding to the dtype is
 * monotone, and x is exactly representable, so the composition agrees element for
 * element (NaN stays NaN in both). Crossed or disjoint bounds are left alone. */
static kiln_status merge_clamp(kir_graph *g, kir_node *n, outcome *out) {
  const kir_node *in = input(g, n, 0);
  kiln_dtype dt = n->type.dtype;
  if (in->op != KIR_OP_CLAMP || in->n_inputs != 1 || !kir_type_equal(&in->type, &n->type))
    return KILN_OK;
  bounds b1 = bounds_of(in), b2 = bounds_of(n);
  double lo = fmax(b1.lo, b2.lo), hi = fmin(b1.hi, b2.hi);
  if (!interval_nonempty(b1.lo, b1.hi, dt) || !interval_nonempty(b2.lo, b2.hi, dt) ||
      !interval_nonempty(lo, hi, dt))
    return KILN_OK;
  kir_node saved = *n;
  n->inputs[0] = input(g, in, 0)->id;
  n->n_attrs = 0;
  n->attrs = NULL;
  kiln_status st = KILN_OK;
  if (b1.has_lo || b2.has_lo) st = kir_attr_set_float(g, n, "min", lo);
  if (st == KILN_OK && (b1.has_hi || b2.has_hi)) st = kir_attr_set_float(g, n, "max", hi);
  if (st != KILN_OK) {
    *n = saved;
    n->inputs[0] = in->id;
    return st;
  }
  st = confirm(g, n, &saved, in->id);
  if (st == KILN_OK) *out = in_place(ST_CLAMP);
  return st;
}

/* ---------------------------------------------------------------- the sweep ----- */

/* Decides (and for in-place rewrites, performs) the local rewrite of n. Only the ops
 * below have rewrites; every other op is left as it is, so this is not a switch. */
static kiln_status local_rewrite(kir_graph *g, kir_node *n, outcome *out) {
  *out = NONE;
  kir_op op = n->op;
  if (op == KIR_OP_CAST || op == KIR_OP_SLICE || op == KIR_OP_CONCAT) {
    *out = noop_shape_op(g, n);
    return KILN_OK;
  }
  if (!is_int(n->type.dtype) && !is_float(n->type.dtype)) return KILN_OK;
  if (op == KIR_OP_MUL || op == KIR_OP_ADD || op == KIR_OP_SUB || op == KIR_OP_DIV)
    *out = binary_identity(g, n);
  else if ((op == KIR_OP_NEG || op == KIR_OP_RELU || op == KIR_OP_ABS) && n->n_inputs == 1)
    *out = unary_pair(g, n);
  else if (op == KIR_OP_IDENTITY && n->n_inputs == 1)
    *out = identity_node(g, n);
  else if (op == KIR_OP_TRANSPOSE && n->n_inputs == 1)
    return merge_transpose(g, n, out);
  else if (op == KIR_OP_RESHAPE && n->n_inputs == 1)
    return merge_reshape(g, n, out);
  else if (op == KIR_OP_CLAMP && n->n_inputs == 1)
    return merge_clamp(g, n, out);
  return KILN_OK;
}

/* A root keeps its name: it becomes identity(to) (it has inputs, so no allocation). */
static void make_root_identity(kir_node *n, int32_t to) {
  n->op = KIR_OP_IDENTITY;
  n->inputs[0] = to;
  n->n_inputs = 1;
  n->n_attrs = 0;
  n->attrs = NULL;
}

static void apply_outcome(simp *s, kir_node *n, outcome o) {
  if (o.kind < 0) return;
  if (o.to < 0) { /* in place */
    s->stats[o.kind]++;
    s->rewrites++;
    return;
  }
  s->repl[n->id] = o.to;
  if (!s->root[n->id]) {
    s->removed[n->id] = true;
  } else if (n->op != KIR_OP_IDENTITY) {
    make_root_identity(n, o.to);
    s->stats[ST_ROOT]++;
  } else {
    return; /* a root identity stays; only its users move to the survivor */
  }
  s->stats[o.kind]++;
  s->rewrites++;
}

static void resolve_inputs(simp *s, kir_node *n) {
  for (int32_t k = 0; k < n->n_inputs; k++) {
    int32_t r = s->repl[n->inputs[k]];
    if (r == n->inputs[k]) continue;
    n->inputs[k] = r;
    s->rewired = true;
  }
}

static kiln_status local_sweep(simp *s) {
  kir_graph *g = s->g;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    resolve_inputs(s, n);
    outcome o;
    kiln_status st = local_rewrite(g, n, &o);
    if (st != KILN_OK) return st;
    apply_outcome(s, n, o);
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- reduce_sum(matmul) */

/* True when s sums its rank-2 input over both axes. */
static bool sums_all_2d(const kir_graph *g, const kir_node *s) {
  if (input(g, s, 0)->type.rank != 2) return false;
  int32_t count = 0;
  const int64_t *axes = kir_attr_ints(s, "axes", &count);
  if (!axes) return true;
  bool seen[2] = {false, false};
  for (int32_t i = 0; i < count; i++) {
    int64_t a = axes[i] < 0 ? axes[i] + 2 : axes[i];
    if (a < 0 || a > 1) return false;
    seen[a] = true;
  }
  return count == 2 && seen[0] && seen[1];
}

/* Liveness (reachable from roots and placeholders, or everything without roots) and
 * use counts among live nodes, so a product whose other users are dead still counts as
 * used once. */
static void count_live_uses(const kir_graph *g, const kps_context *ctx, const bool *root,
                            bool *live, int32_t *uses) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    live[i] = ctx->n_roots <= 0 || root[i] || g->nodes[i]->op == KIR_OP_PLACEHOLDER;
  for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
    if (!live[i]) continue;
    const kir_node *n = g->nodes[i];
    for (int32_t k = 0; k < n->n_inputs; k++) {
      live[n->inputs[k]] = true;
      uses[n->inputs[k]]++;
    }
  }
}

static bool reduce_matmul_candidate(const kir_graph *g, const kir_node *s, const bool *root,
                                    const bool *live, const int32_t *uses) {
  if (s->op != KIR_OP_REDUCE_SUM || s->n_inputs != 1 || !live[s->id]) return false;
  const kir_node *m = input(g, s, 0);
  if (m->op != KIR_OP_MATMUL || m->n_inputs != 2 || root[m->id] || uses[m->id] != 1) return false;
  kiln_dtype dt = m->type.dtype;
  if (!reassociates(dt) || s->type.dtype != dt) return false;
  const kir_node *a = input(g, m, 0), *b = input(g, m, 1);
  return a->type.rank == 2 && b->type.rank == 2 && sums_all_2d(g, s);
}

/* base + suffix, or base + suffix + ".k", the first that is not a node name yet. */
static const char *fresh_name(const kir_graph *g, const char *base, const char *suffix,
                              char *buf, size_t n) {
  if (strlen(base) + strlen(suffix) + 16 > KIR_MAX_NAME) base = "simplify";
  snprintf(buf, n, "%s%s", base, suffix);
  for (int32_t k = 1; kir_graph_find(g, buf) && k <= g->n_nodes + 1; k++)
    snprintf(buf, n, "%s%s.%d", base, suffix, (int)k);
  return buf;
}

/* Appends op(inputs) named after s, typed, on s's requested device; on error nothing
 * is appended. */
static kiln_status append(kir_graph *g, const kir_node *s, kir_op op, const char *suffix,
                          const int32_t *in, int32_t n_in, const char *ints_name,
                          const int64_t *ints, int32_t n_ints, kir_node **out) {
  char name[KIR_MAX_NAME + 1];
  kir_node *n = kir_node_add(g, op, fresh_name(g, s->name, suffix, name, sizeof name), in, n_in);
  if (!n) return g->status != KILN_OK ? g->status : nomem(g, "adding a node");
  n->device = s->device; /* arena strings of the same graph: they live as long */
  n->assigned_device = s->assigned_device;
  n->placement_reason = s->placement_reason;
  kiln_status st = ints_name ? kir_attr_set_ints(g, n, ints_name, ints, n_ints) : KILN_OK;
  if (st == KILN_OK) st = kir_infer_node(g, n);
  if (st != KILN_OK) kir_graph_pop_node(g);
  else *out = n;
  return st;
}

/* What is needed to undo one reduce_sum rewrite. */
typedef struct undo {
  kir_node *s;
  kir_node saved;
  int32_t old_in0;
} undo;

/* The new nodes (three, or four with keep_dims); on failure the ones made are popped. */
static kiln_status build_dot(kir_graph *g, const kir_node *s, const kir_node *m, int32_t *src) {
  const kir_node *a = input(g, m, 0), *b = input(g, m, 1);
  bool ta = kir_attr_int(m, "transpose_a", 0) != 0, tb = kir_attr_int(m, "transpose_b", 0) != 0;
  int64_t ax_a = ta ? 1 : 0, ax_b = tb ? 0 : 1; /* sum A over M, B over N: both give [K] */
  int32_t start = g->n_nodes;
  kir_node *ra = NULL, *rb = NULL, *d = NULL, *r = NULL;
  kiln_status st = append(g, s, KIR_OP_REDUCE_SUM, "/colsum_a", &a->id, 1, "axes", &ax_a, 1, &ra);
  if (st == KILN_OK)
    st = append(g, s, KIR_OP_REDUCE_SUM, "/rowsum_b", &b->id, 1, "axes", &ax_b, 1, &rb);
  if (st == KILN_OK) {
    int32_t pair[2] = {ra->id, rb->id};
    st = append(g, s, KIR_OP_MUL, "/dot", pair, 2, NULL, NULL, 0, &d);
  }
  r = d;
  if (st == KILN_OK && kir_attr_int(s, "keep_dims", 0)) {
    int64_t shape[2] = {1, d->type.dims[0]};
    st = append(g, s, KIR_OP_RESHAPE, "/dot_2d", &d->id, 1, "shape", shape, 2, &r);
  }
  if (st == KILN_OK) *src = r->id;
  else while (g->n_nodes > start) kir_graph_pop_node(g);
  return st;
}

/* reduce_sum(matmul(A, B)) = reduce_sum(colsum(A) * rowsum(B)): s reads the new chain. */
static kiln_status rewrite_reduce_matmul(kir_graph *g, kir_node *s, undo *u) {
  const kir_node *m = input(g, s, 0);
  int32_t src = -1;
  kiln_status st = build_dot(g, s, m, &src);
  if (st != KILN_OK) return st;
  bool keep = kir_attr_int(s, "keep_dims", 0) != 0;
  int64_t axes[2] = {0, 1};
  u->s = s;
  u->saved = *s;
  u->old_in0 = s->inputs[0];
  s->inputs[0] = src;
  s->n_attrs = 0;
  s->attrs = NULL;
  st = kir_attr_set_ints(g, s, "axes", axes, keep ? 2 : 1);
  if (st == KILN_OK && keep) st = kir_attr_set_int(g, s, "keep_dims", 1);
  if (st != KILN_OK) {
    *s = u->saved;
    s->inputs[0] = u->old_in0;
    return st;
  }
  return confirm(g, s, &u->saved, u->old_in0);
}

static void undo_all(kir_graph *g, undo *u, int32_t n_undo, int32_t n_nodes_before) {
  for (int32_t i = n_undo - 1; i >= 0; i--) {
    *u[i].s = u[i].saved;
    u[i].s->inputs[0] = u[i].old_in0;
  }
  while (g->n_nodes > n_nodes_before) kir_graph_pop_node(g);
}

static int32_t count_candidates(const simp *s, const bool *live, const int32_t *uses) {
  int32_t c = 0;
  for (int32_t i = 0; i < s->g->n_nodes; i++)
    c += reduce_matmul_candidate(s->g, s->g->nodes[i], s->root, live, uses);
  return c;
}

static kiln_status rewrite_candidates(simp *s, const bool *live, const int32_t *uses, undo *u,
                                      int32_t *n_undo) {
  kir_graph *g = s->g;
  int32_t n = g->n_nodes; /* nodes appended below are not candidates */
  for (int32_t i = 0; i < n; i++) {
    kir_node *node = g->nodes[i];
    if (!reduce_matmul_candidate(g, node, s->root, live, uses)) continue;
    kiln_status st = rewrite_reduce_matmul(g, node, &u[*n_undo]);
    if (st != KILN_OK) return st;
    (*n_undo)++;
  }
  return KILN_OK;
}

/* Rewrites every candidate, then restores topological order; on any failure every
 * rewrite of this phase is undone, so the graph stays valid. s->root is current. */
static kiln_status reduce_matmul_phase(simp *s) {
  kir_graph *g = s->g;
  int32_t n = g->n_nodes, n_undo = 0, n_cand = 0;
  bool *live = kir_calloc((size_t)n, sizeof *live);
  int32_t *uses = kir_calloc((size_t)n, sizeof *uses);
  undo *u = NULL;
  kiln_status st = live && uses ? KILN_OK : nomem(g, "");
  if (st == KILN_OK) {
    count_live_uses(g, s->ctx, s->root, live, uses);
    n_cand = count_candidates(s, live, uses);
  }
  if (st == KILN_OK && n_cand > 0) {
    u = kir_calloc((size_t)n_cand, sizeof *u);
    st = u ? rewrite_candidates(s, live, uses, u, &n_undo) : nomem(g, "");
  }
  if (st == KILN_OK && n_undo > 0) st = kir_graph_toposort(g);
  if (st != KILN_OK) {
    undo_all(g, u, n_undo, n);
  } else {
    s->stats[ST_REDUCE_MATMUL] += n_undo;
    s->rewrites += n_undo;
  }
  kir_free(live);
  kir_free(uses);
  kir_free(u);
  return st;
}

/* ---------------------------------------------------------------- the pass ------ */

/* Drops the replaced nodes; root flags follow the renumbering (compact keeps order). */
static kiln_status compact_removed(simp *s, int32_t n) {
  bool any = false;
  for (int32_t i = 0; i < n; i++) any = any || s->removed[i];
  if (!any) return KILN_OK;
  for (int32_t i = 0; i < n; i++) s->removed[i] = !s->removed[i]; /* now: keep */
  kiln_status st = kir_graph_compact(s->g, s->removed);
  if (st != KILN_OK) return st;
  int32_t j = 0;
  for (int32_t i = 0; i < n; i++)
    if (s->removed[i]) s->root[j++] = s->root[i];
  return KILN_OK;
}

static kiln_status sweep(simp *s) {
  kir_graph *g = s->g;
  int32_t n = g->n_nodes;
  if (n == 0) return KILN_OK;
  s->root = kir_calloc((size_t)n, sizeof *s->root);
  s->removed = kir_calloc((size_t)n, sizeof *s->removed);
  s->repl = kir_malloc((size_t)n * sizeof *s->repl);
  kiln_status st = s->root && s->removed && s->repl ? mark_roots(s) : nomem(g, "");
  for (int32_t i = 0; st == KILN_OK && i < n; i++) s->repl[i] = i;
  if (st == KILN_OK) st = local_sweep(s);
  if (st == KILN_OK) st = compact_removed(s, n);
  if (st == KILN_OK) st = reduce_matmul_phase(s);
  kir_free(s->root);
  kir_free(s->removed);
  kir_free(s->repl);
  s->root = s->removed = NULL;
  s->repl = NULL;
  return st;
}

kiln_status kps_simplify(kir_graph *g, const kps_context *ctx, kps_result *res) {
  simp s;
  memset(&s, 0, sizeof s);
  s.g = g;
  s.ctx = ctx;
  kiln_status st = check_typed(g);
  for (int32_t k = 0; st == KILN_OK && k < SIMP_MAX_SWEEPS; k++) {
    s.rewrites = 0;
    st = sweep(&s);
    if (s.rewrites == 0) break;
  }
  kir_free(s.roots);
  res->n_stats = ST_COUNT;
  for (int32_t i = 0; i < ST_COUNT; i++) res->stats[i] = (kps_stat){stat_names[i], s.stats[i]};
  res->changed = s.rewired;
  for (int32_t i = 0; i < ST_COUNT; i++) res->changed = res->changed || s.stats[i] > 0;
  return st;
}
