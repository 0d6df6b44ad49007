/* kiln_ops_nn.c — the op builders of kiln.h for the ONNX-era ops (pow .. batch_norm,
 * placeholder_with_default): same contract as kiln_ops.c — stage only the attributes
 * given, append, infer, roll back on any failure. Uses ir/ through kiln_internal.h. */
#include <stdio.h>
#include <string.h>

#include "kiln_internal.h"

kiln_status kiln_placeholder_with_default(kiln_graph *g, const char *name,
                                          const kiln_tensor *value, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_PLACEHOLDER, name, out);
  if (st == KILN_OK && !value) st = fe_bad_arg(&b, "value is NULL");
  if (st == KILN_OK) st = fe_add(&b, NULL, 0);
  if (st != KILN_OK) return st;
  const kir_tensor *v = fe_tensor(value);
  st = kir_attr_set_int(g->ir, b.n, "dtype", (int64_t)v->type.dtype);
  if (st == KILN_OK) st = fe_set_ints(&b, "shape", v->type.dims, v->type.rank);
  if (st == KILN_OK) st = kir_attr_set_tensor(g->ir, b.n, "default", v);
  return fe_finish(&b, st);
}

/* ---------------------------------------------------------------- elementwise --- */

kiln_status kiln_pow(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out) {
  kiln_node *in[2] = {a, b};
  return fe_simple(g, name, KIR_OP_POW, in, 2, out);
}
kiln_status kiln_abs(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_ABS, &x, 1, out);
}
kiln_status kiln_erf(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out) {
  return fe_simple(g, name, KIR_OP_ERF, &x, 1, out);
}

kiln_status kiln_leaky_relu(kiln_graph *g, const char *name, kiln_node *x, double alpha,
                            kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_LEAKY_RELU, name, out);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  return fe_finish(&b, kir_attr_set_float(g->ir, b.n, "alpha", alpha));
}

kiln_status kiln_gelu(kiln_graph *g, const char *name, kiln_node *x, bool tanh_approximation,
                      kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_GELU, name, out);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  if (tanh_approximation) st = kir_attr_set_int(g->ir, b.n, "approximate", 1);
  return fe_finish(&b, st);
}

kiln_status kiln_where(kiln_graph *g, const char *name, kiln_node *cond, kiln_node *x,
                       kiln_node *y, kiln_node **out) {
  kiln_node *in[3] = {cond, x, y};
  return fe_simple(g, name, KIR_OP_WHERE, in, 3, out);
}

kiln_status kiln_cast(kiln_graph *g, const char *name, kiln_node *x, kiln_dtype dtype,
                      kiln_node **out) {
  return fe_unary_int_attr(g, name, KIR_OP_CAST, x, "dtype", (int64_t)dtype, out);
}

/* ---------------------------------------------------------------- reductions ---- */

kiln_status kiln_reduce_min(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out) {
  return fe_reduce(g, name, KIR_OP_REDUCE_MIN, x, axes, n_axes, keep_dims, out);
}

kiln_status kiln_log_softmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                             kiln_node **out) {
  return fe_unary_int_attr(g, name, KIR_OP_LOG_SOFTMAX, x, "axis", axis, out);
}

static kiln_status fe_arg(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                          int64_t axis, bool keep_dims, bool select_last, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  /* keep_dims and axis are always written: their ONNX defaults (1, 0) are easy to
   * misremember, so the stored graph says what it does. */
  st = kir_attr_set_int(g->ir, b.n, "axis", axis);
  if (st == KILN_OK) st = kir_attr_set_int(g->ir, b.n, "keep_dims", keep_dims ? 1 : 0);
  if (st == KILN_OK && select_last) st = kir_attr_set_int(g->ir, b.n, "select_last_index", 1);
  return fe_finish(&b, st);
}

kiln_status kiln_argmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                        bool keep_dims, bool select_last, kiln_node **out) {
  return fe_arg(g, name, KIR_OP_ARGMAX, x, axis, keep_dims, select_last, out);
}
kiln_status kiln_argmin(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                        bool keep_dims, bool select_last, kiln_node **out) {
  return fe_arg(g, name, KIR_OP_ARGMIN, x, axis, keep_dims, select_last, out);
}

/* ---------------------------------------------------------------- shape --------- */

kiln_status kiln_concat(kiln_graph *g, const char *name, kiln_node *const *xs, int n,
                        int64_t axis, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_CONCAT, name, out);
  if (st == KILN_OK && (n < 1 || !xs)) st = fe_bad_arg(&b, "needs at least one input");
  if (st == KILN_OK) st = fe_add(&b, xs, n);
  if (st != KILN_OK) return st;
  return fe_finish(&b, kir_attr_set_int(g->ir, b.n, "axis", axis));
}

kiln_status kiln_slice(kiln_graph *g, const char *name, kiln_node *x, const int64_t *starts,
                       const int64_t *ends, const int64_t *axes, const int64_t *steps, int n,
                       kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, KIR_OP_SLICE, name, out);
  if (st == KILN_OK && (n < 0 || n > KILN_MAX_RANK))
    st = fe_bad_arg(&b, "n must be between 0 and the maximum rank");
  if (st == KILN_OK && n > 0 && (!starts || !ends)) st = fe_bad_arg(&b, "starts or ends is NULL");
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  st = fe_set_ints(&b, "starts", starts, n);
  if (st == KILN_OK) st = fe_set_ints(&b, "ends", ends, n);
  if (st == KILN_OK && axes) st = fe_set_ints(&b, "axes", axes, n);
  if (st == KILN_OK && steps) st = fe_set_ints(&b, "steps", steps, n);
  return fe_finish(&b, st);
}

kiln_status kiln_gather(kiln_graph *g, const char *name, kiln_node *data, kiln_node *indices,
                        int64_t axis, kiln_node **out) {
  fe_op b;
  kiln_node *in[2] = {data, indices};
  kiln_status st = fe_prepare(&b, g, KIR_OP_GATHER, name, out);
  if (st == KILN_OK) st = fe_add(&b, in, 2);
  if (st != KILN_OK) return st;
  if (axis != 0) st = kir_attr_set_int(g->ir, b.n, "axis", axis);
  return fe_finish(&b, st);
}

/* ---------------------------------------------------------------- nn ------------ */

/* *k = spatial rank of x [N, C, d1..dk]; KILN_ERR_ARGUMENT when it is not 1..3. */
static kiln_status fe_spatial(fe_op *b, const kiln_node *x, int *k) {
  *k = fe_node(x)->type.rank - 2;
  if (*k >= 1 && *k <= 3) return KILN_OK;
  char ty[96], msg[160];
  kir_type_format(&fe_node(x)->type, ty, sizeof ty);
  snprintf(msg, sizeof msg, "input is %s; it needs rank 3 to 5 ([N, C, d1..dk])", ty);
  return fe_bad_arg(b, msg);
}

/* Writes a k-entry attribute when any entry differs from dflt; 0 entries stand for
 * dflt when zero_is_default. */
static kiln_status fe_set_spatial(fe_op *b, const char *attr, const int64_t *v, int k,
                                  int64_t dflt, bool zero_is_default) {
  int64_t vals[6];
  bool any = false;
  for (int i = 0; i < k; i++) {
    vals[i] = zero_is_default && v[i] == 0 ? dflt : v[i];
    any |= vals[i] != dflt;
  }
  return any ? fe_set_ints(b, attr, vals, k) : KILN_OK;
}

kiln_status kiln_conv(kiln_graph *g, const char *name, kiln_node *x, kiln_node *w,
                      kiln_node *bias, const kiln_conv_params *params, kiln_node **out) {
  fe_op b;
  kiln_conv_params p;
  memset(&p, 0, sizeof p);
  if (params) p = *params;
  kiln_node *in[3] = {x, w, bias};
  kiln_status st = fe_prepare(&b, g, KIR_OP_CONV, name, out);
  if (st == KILN_OK) st = fe_add(&b, in, bias ? 3 : 2);
  if (st != KILN_OK) return st;
  int k;
  st = fe_spatial(&b, x, &k);
  if (st == KILN_OK) st = fe_set_spatial(&b, "strides", p.strides, k, 1, true);
  if (st == KILN_OK) st = fe_set_spatial(&b, "pads", p.pads, 2 * k, 0, false);
  if (st == KILN_OK) st = fe_set_spatial(&b, "dilations", p.dilations, k, 1, true);
  if (st == KILN_OK && p.group != 0 && p.group != 1)
    st = kir_attr_set_int(g->ir, b.n, "group", p.group);
  return fe_finish(&b, st);
}

static kiln_status fe_pool(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                           const kiln_pool_params *p, kiln_node **out) {
  fe_op b;
  kiln_status st = fe_prepare(&b, g, op, name, out);
  if (st == KILN_OK && !p) st = fe_bad_arg(&b, "params is NULL (the kernel size is required)");
  if (st == KILN_OK) st = fe_add(&b, &x, 1);
  if (st != KILN_OK) return st;
  int k;
  st = fe_spatial(&b, x, &k);
  if (st == KILN_OK) st = fe_set_ints(&b, "kernel", p->kernel, k);
  if (st == KILN_OK) st = fe_set_spatial(&b, "strides", p->strides, k, 1, true);
  if (st == KILN_OK) st = fe_set_spatial(&b, "pads", p->pads, 2 * k, 0, false);
  if (st == KILN_OK) st = fe_set_spatial(&b, "dilations", p->dilations, k, 1, true);
  if (st == KILN_OK && p->ceil_mode) st = kir_attr_set_int(g->ir, b.n, "ceil_mode", 1);
  if (st == KILN_OK && p->count_include_pad) {
    if (op == KIR_OP_AVG_POOL)
      st = kir_attr_set_int(g->ir, b.n, "count_include_pad", 1);
    else
      st = fe_bad_arg(&b, "count_include_pad applies to avg_pool only");
  }
  return fe_finish(&b, st);
}

kiln_status kiln_max_pool(kiln_graph *g, const char *name, kiln_node *x,
                          const kiln_pool_params *params, kiln_node **out) {
  return fe_pool(g, name, KIR_OP_MAX_POOL, x, params, out);
}
kiln_status kiln_avg_pool(kiln_graph *g, const char *name, kiln_node *x,
                          const kiln_pool_params *params, kiln_node **out) {
  return fe_pool(g, name, KIR_OP_AVG_POOL, x, params, out);
}

kiln_status kiln_batch_norm(kiln_graph *g, const char *name, kiln_node *x, kiln_node *scale,
                            kiln_node *bias, kiln_node *mean, kiln_node *var, double epsilon,
                            kiln_node **out) {
  fe_op b;
  kiln_node *in[5] = {x, scale, bias, mean, var};
  kiln_status st = fe_prepare(&b, g, KIR_OP_BATCH_NORM, name, out);
  if (st == KILN_OK) st = fe_add(&b, in, 5);
  if (st != KILN_OK) return st;
  return fe_finish(&b, kir_attr_set_float(g->ir, b.n, "epsilon", epsilon));
}
