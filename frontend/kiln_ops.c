/* kiln_ops.c — every op builder of kiln.h: resolve the name, append the node, set its
 * attributes (only those given, so graphs stay minimal and deterministic), infer its
 * type; any failure rolls the graph back. Uses ir/ through kiln_internal.h only. */
#include <string.h>

#include "kiln_internal.h"

/* Attribute setters need a non-NULL array even for an empty list (a scalar's shape). */
static const int64_t fe_no_ints[1] = {0};

kiln_status fe_simple(kiln_graph *g, const char *name, kir_op op,
                             kiln_node *const *in, int32_t n, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK) st = fe_add(&b, in, n);
  if (st != KILN_OK) return st;
  return fe_finish(&b, KILN_OK);
}

kiln_status fe_bad_arg(fe_op *b, const char *what) {
  char esc[FE_ESC];
  return kir_seterr(b->g->ir, KILN_ERR_ARGUMENT, "%s '%s': %s",
                    kir_op_get(b->op)->name, kir_escape(b->name, esc, sizeof esc), what);
}

/* dims/rank describing a shape attribute: rank in [0, KILN_MAX_RANK], dims given. */
kiln_status fe_check_dims(fe_op *b, const int64_t *dims, int rank) {
  if (rank < 0) return fe_bad_arg(b, "negative rank");
  if (rank > KILN_MAX_RANK) {
    char esc[FE_ESC];
    return kir_seterr(b->g->ir, KILN_ERR_LIMIT, "%s '%s': rank %d is above the limit %d",
                      kir_op_get(b->op)->name, kir_escape(b->name, esc, sizeof esc), rank,
                      KILN_MAX_RANK);
  }
  if (rank > 0 && !dims) return fe_bad_arg(b, "dims is NULL");
  return KILN_OK;
}

kiln_status fe_set_ints(fe_op *b, const char *attr, const int64_t *v, int n) {
  return kir_attr_set_ints(b->g->ir, b->n, attr, n > 0 ? v : fe_no_ints, n);
}

/* ---------------------------------------------------------------- sources ------- */

kiln_status kiln_constant(kiln_graph *g, const char *name, const kiln_tensor *value,
                          kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_CONSTANT, name, out);
  if (st == KILN_OK && !value) st = fe_bad_arg(&b, "value is NULL");
  if (st == KILN_OK) st = fe_add(&b, NULL, 0);
  if (st != KILN_OK) return st;
  return fe_finish(&b, kir_attr_set_tensor(g->ir, b.n, "value", fe_tensor(value)));
}

/* dtype and shape attributes shared by placeholder and the random sources. */
static kiln_status fe_source(fe_op *b, kiln_dtype dtype, const int64_t *dims, int rank) {
  kiln_status st = fe_check_dims(b, dims, rank);
  if (st == KILN_OK) st = fe_add(b, NULL, 0);
  if (st != KILN_OK) return st;
  st = kir_attr_set_int(b->g->ir, b->n, "dtype", (int64_t)dtype);
  if (st == KILN_OK) st = fe_set_ints(b, "shape", dims, rank);
  return st;
}

kiln_status kiln_placeholder(kiln_graph *g, const char *name, kiln_dtype dtype,
                             const int64_t *dims, int rank, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_PLACEHOLDER, name, out);
  if (st == KILN_OK) st = fe_source(&b, dtype, dims, rank);
  return fe_finish(&b, st);
}

kiln_status kiln_variable(kiln_graph *g, const char *name, kiln_node *init, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_VARIABLE, &init, 1, out);
}

static kiln_status fe_random(kiln_graph *g, const char *name, kir_op op, kiln_dtype dtype,
                             const int64_t *dims, int rank, const char *an, double a,
                             const char *bn, double bv, uint64_t seed, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK) st = fe_source(&b, dtype, dims, rank);
  if (st == KILN_OK) st = kir_attr_set_int(g->ir, b.n, "seed", (int64_t)seed);
  if (st == KILN_OK) st = kir_attr_set_float(g->ir, b.n, an, a);
  if (st == KILN_OK) st = kir_attr_set_float(g->ir, b.n, bn, bv);
  return fe_finish(&b, st);
}

kiln_status kiln_random_normal(kiln_graph *g, const char *name, kiln_dtype dtype,
                               const int64_t *dims, int rank, double mean, double stddev,
                               uint64_t seed, kiln_node **out) {
  return fe_random(g, name, KIR_OP_RANDOM_NORMAL, dtype, dims, rank, "mean", mean, "stddev",
                   stddev, seed, out);
}

kiln_status kiln_random_uniform(kiln_graph *g, const char *name, kiln_dtype dtype,
                                const int64_t *dims, int rank, double low, double high,
                                uint64_t seed, kiln_node **out) {
  return fe_random(g, name, KIR_OP_RANDOM_UNIFORM, dtype, dims, rank, "low", low, "high",
                   high, seed, out);
}

/* ---------------------------------------------------------------- elementwise --- */

static kiln_status fe_binary(kiln_graph *g, const char *name, kir_op op, kiln_node *a,
                             kiln_node *b, kiln_node **out) {
  kiln_node *in[2] = {a, b};
  return fe_simple(g, name, op, in, 2, out);
}

kiln_status kiln_add(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_ADD, a, b, out);
}
kiln_status kiln_sub(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_SUB, a, b, out);
}
kiln_status kiln_mul(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_MUL, a, b, out);
}
kiln_status kiln_div(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_DIV, a, b, out);
}
kiln_status kiln_maximum(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_MAXIMUM, a, b, out);
}
kiln_status kiln_minimum(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  return fe_binary(g, name, KIR_OP_MINIMUM, a, b, out);
}

kiln_status kiln_neg(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_NEG, &x, 1, out);
}
kiln_status kiln_exp(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_EXP, &x, 1, out);
}
kiln_status kiln_log(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_LOG, &x, 1, out);
}
kiln_status kiln_sqrt(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_SQRT, &x, 1, out);
}
kiln_status kiln_tanh(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_TANH, &x, 1, out);
}
kiln_status kiln_sigmoid(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_SIGMOID, &x, 1, out);
}
kiln_status kiln_relu(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_RELU, &x, 1, out);
}

kiln_status kiln_clamp(kiln_graph *g, const char *name, kiln_node *x, bool has_min,
                       double min, bool has_max, double max, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_CLAMP, name, out);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  if (has_min) st = kir_attr_set_float(g->ir, b.n, "min", min);
  if (st == KILN_OK && has_max) st = kir_attr_set_float(g->ir, b.n, "max", max);
  return fe_finish(&b, st);
}

/* ---------------------------------------------------------------- linear algebra - */

kiln_status kiln_matmul(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b,
                        bool transpose_a, bool transpose_b, kiln_node **out) {
  fe_op o;
  kiln_node *in[2] = {a, b};
  kiln_status st = fe_prepare(&o, g, KIR_OP_MATMUL, name, out);
  if (st == KILN_OK) st = fe_add(&o, in, 2);
  if (st != KILN_OK) return st;
  if (transpose_a) st = kir_attr_set_int(g->ir, o.n, "transpose_a", 1);
  if (st == KILN_OK && transpose_b) st = kir_attr_set_int(g->ir, o.n, "transpose_b", 1);
  return fe_finish(&o, st);
}

kiln_status kiln_add_n(kiln_graph *g, const char *name, kiln_node *const *xs, int n,
                       kiln_node **out) {
  return fe_simple(g, name, KIR_OP_ADD_N, xs, n, out);
}

/* ---------------------------------------------------------------- reductions ---- */

kiln_status fe_reduce(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                             const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK && (n_axes < 0 || (n_axes > 0 && !axes)))
    st = fe_bad_arg(&b, "axes is NULL or n_axes is negative");
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  if (n_axes > 0) st = fe_set_ints(&b, "axes", axes, n_axes);
  if (st == KILN_OK && keep_dims) st = kir_attr_set_int(g->ir, b.n, "keep_dims", 1);
  return fe_finish(&b, st);
}

kiln_status kiln_reduce_sum(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out) {
  return fe_reduce(g, name, KIR_OP_REDUCE_SUM, x, axes, n_axes, keep_dims, out);
}
kiln_status kiln_reduce_mean(kiln_graph *g, const char *name, kiln_node *x,
                             const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out) {
  return fe_reduce(g, name, KIR_OP_REDUCE_MEAN, x, axes, n_axes, keep_dims, out);
}
kiln_status kiln_reduce_max(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out) {
  return fe_reduce(g, name, KIR_OP_REDUCE_MAX, x, axes, n_axes, keep_dims, out);
}

kiln_status fe_unary_int_attr(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                              const char *attr, int64_t v, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  return fe_finish(&b, kir_attr_set_int(g->ir, b.n, attr, v));
}

kiln_status kiln_softmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                         kiln_node **out) {
  return fe_unary_int_attr(g, name, KIR_OP_SOFTMAX, x, "axis", axis, out);
}

/* ---------------------------------------------------------------- shape --------- */

kiln_status kiln_reshape(kiln_graph *g, const char *name, kiln_node *x, const int64_t *dims,
                         int rank, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_RESHAPE, name, out);
  if (st == KILN_OK) st = fe_check_dims(&b, dims, rank);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  return fe_finish(&b, fe_set_ints(&b, "shape", dims, rank));
}

kiln_status kiln_transpose(kiln_graph *g, const char *name, kiln_node *x, const int64_t *perm,
                           int rank, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_TRANSPOSE, name, out);
  if (st == KILN_OK && perm) st = fe_check_dims(&b, perm, rank);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  if (perm) st = fe_set_ints(&b, "perm", perm, rank);
  return fe_finish(&b, st);
}

kiln_status kiln_identity(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_IDENTITY, &x, 1, out);
}

/* ---------------------------------------------------------------- state, control - */

static kiln_status fe_check_variable(fe_op *b, const kiln_node *var) {
  char esc[FE_ESC], esc2[FE_ESC];
  const kir_node *v = fe_node(var);
  if (!v || !fe_owns(b->g, v) || v->op == KIR_OP_VARIABLE) return KILN_OK; /* fe_add says */
  return kir_seterr(b->g->ir, KILN_ERR_GRAPH, "assign '%s': input 0 '%s' is a %s, not a variable",
                    kir_escape(b->name, esc, sizeof esc), kir_escape(v->name, esc2, sizeof esc2),
                    kir_op_get(v->op)->name);
}

kiln_status kiln_assign(kiln_graph *g, const char *name, kiln_node *var, kiln_node *value,
                        kiln_node **out) {
  fe_op b;
  kiln_node *in[2] = {var, value};
  kiln_status st = fe_prepare(&b, g, KIR_OP_ASSIGN, name, out);
  if (st == KILN_OK) st = fe_check_variable(&b, var);
  if (st == KILN_OK) st = fe_add(&b, in, 2);
  if (st != KILN_OK) return st;
  return fe_finish(&b, KILN_OK);
}

kiln_status kiln_group(kiln_graph *g, const char *name, kiln_node *const *deps, int n,
                       kiln_node **out) {
  return fe_simple(g, name, KIR_OP_GROUP, deps, n, out);
}

kiln_status kiln_no_op(kiln_graph *g, const char *name, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_NO_OP, NULL, 0, out);
}

/* "<var>/Assign" (made unique, not under the current name scope: it belongs to the
 * variable, as in TensorFlow). */
static kiln_status fe_init_assign(kiln_graph *g, kir_node *var, kiln_node **out) {
  fe_op b;
  char base[KIR_MAX_NAME + 1];
  size_t len = strlen(var->name);
  if (len + 7 > KIR_MAX_NAME) len = KIR_MAX_NAME - 7; /* fe_prepare_raw reports it */
  memcpy(base, var->name, len);
  memcpy(base + len, "/Assign", 8);
  kiln_node *in[2] = {fe_handle(var), fe_handle(g->ir->nodes[var->inputs[0]])};
  kiln_status st = fe_prepare_raw(&b, g, KIR_OP_ASSIGN, base, false, false, out);
  if (st == KILN_OK) st = fe_add(&b, in, 2);
  if (st != KILN_OK) return st;
  return fe_finish(&b, KILN_OK);
}

static kiln_status fe_init_group(kiln_graph *g, int32_t first, kiln_node *const *deps,
                                 int32_t n, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare_raw(&b, g, KIR_OP_GROUP, "init", false, true, out);
  b.first = first; /* a failure removes the assigns too */
  if (st == KILN_OK) st = fe_add(&b, deps, n);
  if (st != KILN_OK) return st;
  return fe_finish(&b, KILN_OK);
}

kiln_status kiln_global_variables_initializer(kiln_graph *g, kiln_node **out) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!out) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "global_variables_initializer: out is NULL");
  *out = NULL;
  int32_t n_vars = 0, first = g->ir->n_nodes;
  for (int32_t i = 0; i < first; i++) n_vars += g->ir->nodes[i]->op == KIR_OP_VARIABLE;
  kiln_node **assigns = kir_calloc((size_t)(n_vars ? n_vars : 1), sizeof *assigns);
  if (!assigns) return kir_seterr(g->ir, KILN_ERR_NOMEM, "global_variables_initializer: out of memory");
  kiln_status st = KILN_OK;
  for (int32_t i = 0, k = 0; i < first && st == KILN_OK; i++)
    if (g->ir->nodes[i]->op == KIR_OP_VARIABLE) st = fe_init_assign(g, g->ir->nodes[i], &assigns[k++]);
  if (st == KILN_OK) st = fe_init_group(g, first, assigns, n_vars, out);
  if (st != KILN_OK) fe_rollback(g, first);
  kir_free(assigns);
  return st;
}
