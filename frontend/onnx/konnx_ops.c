/* konnx_ops.c — the ONNX operator table (sorted, one handler per op_type) and the
 * handlers for elementwise, linear algebra, reductions, softmax and the shape ops, each
 * covering the op's versions from opset 7 to 17. Statically needed inputs (shapes, axes,
 * bounds) must be constants by import time. Depends on ir/ only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "konnx_internal.h"

typedef konnx_ctx C;
typedef Onnx__NodeProto N;

/* ---------------------------------------------------------------- elementwise ---- */

static kiln_status emit1(C *c, const N *n, kir_op op, int32_t a, kir_node **out) {
  kiln_status s = konnx_emit_out(c, n, 0, op, &a, 1, out);
  return s;
}

static kiln_status unary(C *c, const N *n, kir_op op) {
  int32_t a;
  kir_node *x;
  kiln_status s = konnx_in(c, n, 0, &a);
  if (s == KILN_OK) s = emit1(c, n, op, a, &x);
  return s == KILN_OK ? konnx_finish(c, x) : s;
}

static kiln_status binary(C *c, const N *n, kir_op op) {
  int32_t in[2];
  kir_node *x;
  kiln_status s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, op, in, 2, &x);
  return s == KILN_OK ? konnx_finish(c, x) : s;
}

#define UNARY(fn, op) \
  static kiln_status fn(C *c, const N *n) { return unary(c, n, op); }
#define BINARY(fn, op) \
  static kiln_status fn(C *c, const N *n) { return binary(c, n, op); }
UNARY(op_neg, KIR_OP_NEG)
UNARY(op_abs, KIR_OP_ABS)
UNARY(op_exp, KIR_OP_EXP)
UNARY(op_log, KIR_OP_LOG)
UNARY(op_sqrt, KIR_OP_SQRT)
UNARY(op_tanh, KIR_OP_TANH)
UNARY(op_sigmoid, KIR_OP_SIGMOID)
UNARY(op_relu, KIR_OP_RELU)
UNARY(op_erf, KIR_OP_ERF)
UNARY(op_identity, KIR_OP_IDENTITY)
BINARY(op_add, KIR_OP_ADD)
BINARY(op_sub, KIR_OP_SUB)
BINARY(op_mul, KIR_OP_MUL)
BINARY(op_div, KIR_OP_DIV)

/* Pow's exponent may have another dtype: it is cast to the base's. */
static kiln_status op_pow(C *c, const N *n) {
  int32_t in[2];
  kir_node *x;
  kiln_status s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s != KILN_OK) return s;
  kiln_dtype base = konnx_type(c, in[0])->dtype;
  if (konnx_type(c, in[1])->dtype != base) {
    if ((s = konnx_emit_sub(c, n, "exponent", KIR_OP_CAST, &in[1], 1, &x)) != KILN_OK) return s;
    if ((s = kir_attr_set_int(c->g, x, "dtype", base)) != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK) return s;
    in[1] = x->id;
  }
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_POW, in, 2, &x)) != KILN_OK) return s;
  return konnx_finish(c, x);
}

/* Max, Min, Sum: a chain of binary nodes (one input: identity); Mean divides the sum. */
static kiln_status chain(C *c, const N *n, kir_op op, bool mean) {
  if (n->n_input == 0) return konnx_err(c, KILN_ERR_GRAPH, "needs at least one input");
  if (n->n_input > KIR_MAX_INPUTS) return konnx_err(c, KILN_ERR_LIMIT, "%zu inputs (limit %d)", n->n_input, KIR_MAX_INPUTS);
  int32_t acc, k = (int32_t)n->n_input;
  kir_node *x;
  kiln_status s = konnx_in(c, n, 0, &acc);
  if (s != KILN_OK) return s;
  if (k == 1) {
    if ((s = emit1(c, n, KIR_OP_IDENTITY, acc, &x)) != KILN_OK) return s;
    return konnx_finish(c, x);
  }
  for (int32_t i = 1; i < k; i++) {
    int32_t in[2] = {acc, 0};
    char role[32];
    if ((s = konnx_in(c, n, i, &in[1])) != KILN_OK) return s;
    snprintf(role, sizeof role, "%s%d", mean ? "sum" : "step", i);
    s = i == k - 1 && !mean ? konnx_emit_out(c, n, 0, op, in, 2, &x) : konnx_emit_sub(c, n, role, op, in, 2, &x);
    if (s != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK) return s;
    acc = x->id;
  }
  if (!mean) return KILN_OK;
  int32_t in[2] = {acc, 0};
  if ((s = konnx_scalar(c, n, "count", konnx_type(c, acc)->dtype, k, &in[1])) != KILN_OK) return s;
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_DIV, in, 2, &x)) != KILN_OK) return s;
  return konnx_finish(c, x);
}

static kiln_status op_max(C *c, const N *n) { return chain(c, n, KIR_OP_MAXIMUM, false); }
static kiln_status op_min(C *c, const N *n) { return chain(c, n, KIR_OP_MINIMUM, false); }
static kiln_status op_sum(C *c, const N *n) { return chain(c, n, KIR_OP_ADD, false); }
static kiln_status op_mean(C *c, const N *n) { return chain(c, n, KIR_OP_ADD, true); }

static kiln_status op_leaky_relu(C *c, const N *n) {
  double alpha;
  int32_t a;
  kir_node *x;
  kiln_status s = konnx_attr_float(c, n, "alpha", 0.01, &alpha);
  if (s == KILN_OK) s = konnx_in(c, n, 0, &a);
  if (s == KILN_OK) s = emit1(c, n, KIR_OP_LEAKY_RELU, a, &x);
  if (s == KILN_OK) s = kir_attr_set_float(c->g, x, "alpha", alpha);
  return s == KILN_OK ? konnx_finish(c, x) : s;
}

static kiln_status op_gelu(C *c, const N *n) {
  char ap[16];
  int32_t a;
  kir_node *x;
  kiln_status s = konnx_attr_string(c, n, "approximate", "none", ap, sizeof ap);
  if (s != KILN_OK) return s;
  if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0)
    return konnx_err(c, KILN_ERR_FORMAT, "attribute 'approximate' = '%s' (none or tanh)", ap);
  if ((s = konnx_in(c, n, 0, &a)) == KILN_OK) s = emit1(c, n, KIR_OP_GELU, a, &x);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, x, "approximate", strcmp(ap, "tanh") == 0);
  return s == KILN_OK ? konnx_finish(c, x) : s;
}

/* ---------------------------------------------------------------- clip ----------- */

/* A static scalar bound, or a node when it is computed at run time. */
static kiln_status clip_bound(C *c, const N *n, int32_t i, int32_t *id, bool *is_static, double *v) {
  kiln_status s = konnx_opt_in(c, n, i, id);
  *is_static = false;
  if (s != KILN_OK || *id < 0) return s;
  const kir_tensor *t = konnx_static(c, *id);
  if (t && kir_type_numel(&t->type) != 1)
    return konnx_err(c, KILN_ERR_SHAPE, "input %d ('%s') must be a scalar", i, i == 1 ? "min" : "max");
  if (t) *v = kir_tensor_get_f(t, 0), *is_static = true;
  return KILN_OK;
}

static kiln_status clip_dynamic(C *c, const N *n, int32_t x, int32_t lo, int32_t hi) {
  kir_node *y = NULL;
  kiln_status s = KILN_OK;
  if (lo >= 0) {
    int32_t in[2] = {x, lo};
    s = hi >= 0 ? konnx_emit_sub(c, n, "min", KIR_OP_MAXIMUM, in, 2, &y) : konnx_emit_out(c, n, 0, KIR_OP_MAXIMUM, in, 2, &y);
    if (s != KILN_OK || (s = konnx_finish(c, y)) != KILN_OK) return s;
    x = y->id;
  }
  if (hi >= 0) {
    int32_t in[2] = {x, hi};
    if ((s = konnx_emit_out(c, n, 0, KIR_OP_MINIMUM, in, 2, &y)) != KILN_OK) return s;
    s = konnx_finish(c, y);
  }
  return s;
}

static kiln_status op_clip(C *c, const N *n) {
  int32_t x, lo = -1, hi = -1;
  double vlo = -INFINITY, vhi = INFINITY;
  bool slo = true, shi = true;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s != KILN_OK) return s;
  if (c->opset < 11) {
    if ((s = konnx_attr_float(c, n, "min", -INFINITY, &vlo)) != KILN_OK) return s;
    if ((s = konnx_attr_float(c, n, "max", INFINITY, &vhi)) != KILN_OK) return s;
  } else {
    if ((s = clip_bound(c, n, 1, &lo, &slo, &vlo)) != KILN_OK) return s;
    if ((s = clip_bound(c, n, 2, &hi, &shi, &vhi)) != KILN_OK) return s;
    if (lo < 0) slo = true;
    if (hi < 0) shi = true;
  }
  if (!slo || !shi) return clip_dynamic(c, n, x, lo, hi);
  kir_node *y;
  if ((s = emit1(c, n, KIR_OP_CLAMP, x, &y)) != KILN_OK) return s;
  if (!(isinf(vlo) && vlo < 0)) s = kir_attr_set_float(c->g, y, "min", vlo); /* -inf: no bound */
  if (s == KILN_OK && !(isinf(vhi) && vhi > 0)) s = kir_attr_set_float(c->g, y, "max", vhi);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* ---------------------------------------------------------------- matmul, gemm --- */

static kiln_status op_matmul(C *c, const N *n) {
  int32_t in[2];
  kir_node *x;
  kiln_status s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s != KILN_OK) return s;
  kir_type ta = *konnx_type(c, in[0]), tb = *konnx_type(c, in[1]);
  if (ta.rank == 0 || tb.rank == 0)
    return konnx_err(c, KILN_ERR_SHAPE, "operands must have rank >= 1 (got %d and %d)", ta.rank, tb.rank);
  if (ta.rank == 1) {
    int64_t d[2] = {1, ta.dims[0]};
    if ((s = konnx_reshape(c, n, 0, "a_2d", in[0], d, 2, &in[0])) != KILN_OK) return s;
  }
  if (tb.rank == 1) {
    int64_t d[2] = {tb.dims[0], 1};
    if ((s = konnx_reshape(c, n, 0, "b_2d", in[1], d, 2, &in[1])) != KILN_OK) return s;
  }
  bool squeeze = ta.rank == 1 || tb.rank == 1;
  s = squeeze ? konnx_emit_sub(c, n, "matmul", KIR_OP_MATMUL, in, 2, &x) : konnx_emit_out(c, n, 0, KIR_OP_MATMUL, in, 2, &x);
  if (s != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK || !squeeze) return s;
  kir_type r = x->type;
  int64_t d[KILN_MAX_RANK];
  int32_t k = 0;
  for (int32_t i = 0; i < r.rank; i++)
    if (!((ta.rank == 1 && i == r.rank - 2) || (tb.rank == 1 && i == r.rank - 1))) d[k++] = r.dims[i];
  return konnx_reshape(c, n, 0, NULL, x->id, d, k, NULL);
}

/* y = alpha * op(A) @ op(B) + beta * C. */
static kiln_status op_gemm(C *c, const N *n) {
  int64_t ta, tb;
  double alpha, beta;
  int32_t in[2], cc;
  kir_node *x;
  kiln_status s = konnx_attr_int(c, n, "transA", 0, &ta);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "transB", 0, &tb);
  if (s == KILN_OK) s = konnx_attr_float(c, n, "alpha", 1.0, &alpha);
  if (s == KILN_OK) s = konnx_attr_float(c, n, "beta", 1.0, &beta);
  if (s == KILN_OK) s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s == KILN_OK) s = konnx_opt_in(c, n, 2, &cc);
  if (s != KILN_OK) return s;
  if (konnx_type(c, in[0])->rank != 2 || konnx_type(c, in[1])->rank != 2)
    return konnx_err(c, KILN_ERR_SHAPE, "A and B must have rank 2 (got %d and %d)", konnx_type(c, in[0])->rank,
                     konnx_type(c, in[1])->rank);
  if (cc >= 0 && beta == 0) cc = -1;
  bool last = alpha == 1 && cc < 0;
  s = last ? konnx_emit_out(c, n, 0, KIR_OP_MATMUL, in, 2, &x) : konnx_emit_sub(c, n, "matmul", KIR_OP_MATMUL, in, 2, &x);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, x, "transpose_a", ta != 0);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, x, "transpose_b", tb != 0);
  if (s != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK || last) return s;
  kir_type mm = x->type;
  int32_t acc = x->id, k[2];
  if (alpha != 1) {
    if ((s = konnx_scalar(c, n, "alpha", mm.dtype, alpha, &k[1])) != KILN_OK) return s;
    k[0] = acc;
    s = cc < 0 ? konnx_emit_out(c, n, 0, KIR_OP_MUL, k, 2, &x) : konnx_emit_sub(c, n, "scaled", KIR_OP_MUL, k, 2, &x);
    if (s != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK || cc < 0) return s;
    acc = x->id;
  }
  if (beta != 1) {
    k[0] = cc;
    if ((s = konnx_scalar(c, n, "beta", konnx_type(c, cc)->dtype, beta, &k[1])) != KILN_OK) return s;
    if ((s = konnx_emit_sub(c, n, "beta_c", KIR_OP_MUL, k, 2, &x)) != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK)
      return s;
    cc = x->id;
  }
  k[0] = acc, k[1] = cc;
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_ADD, k, 2, &x)) != KILN_OK || (s = konnx_finish(c, x)) != KILN_OK) return s;
  if (!kir_type_equal(&x->type, &mm)) {
    char a[64], b[64];
    kir_type_format(konnx_type(c, cc), a, sizeof a);
    kir_type_format(&mm, b, sizeof b);
    return konnx_err(c, KILN_ERR_SHAPE, "C %s does not broadcast to A @ B %s", a, b);
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- reductions ----- */

/* Normalizes axes against rank into out (sorted order kept), refusing repeats. */
static kiln_status norm_axes(C *c, const char *what, const int64_t *axes, int32_t k, int32_t rank, int64_t *out) {
  for (int32_t i = 0; i < k; i++) {
    int32_t a;
    kiln_status s = konnx_axis(c, what, axes[i], rank, &a);
    if (s != KILN_OK) return s;
    for (int32_t j = 0; j < i; j++)
      if (out[j] == a) return konnx_err(c, KILN_ERR_SHAPE, "%s repeats axis %lld", what, (long long)axes[i]);
    out[i] = a;
  }
  return KILN_OK;
}

/* axes_input: the first opset where axes is an input rather than an attribute. */
static kiln_status reduce(C *c, const N *n, kir_op op, int64_t axes_input) {
  int64_t keep, noop = 0, axes[KILN_MAX_RANK], norm[KILN_MAX_RANK];
  int32_t x, k = 0;
  bool present = false;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "keepdims", 1, &keep);
  if (s != KILN_OK) return s;
  int32_t rank = konnx_type(c, x)->rank;
  if (c->opset >= axes_input) {
    if ((s = konnx_attr_int(c, n, "noop_with_empty_axes", 0, &noop)) != KILN_OK) return s;
    present = n->n_input > 1 && n->input[1] && n->input[1][0];
    if (present && (s = konnx_static_ints(c, n, 1, "axes", axes, KILN_MAX_RANK, &k)) != KILN_OK) return s;
  } else {
    const int64_t *v;
    if ((s = konnx_attr_ints(c, n, "axes", &v, &k, &present)) != KILN_OK) return s;
    if (k > KILN_MAX_RANK) return konnx_err(c, KILN_ERR_SHAPE, "attribute 'axes' has %d entries for rank %d", k, rank);
    if (k) memcpy(axes, v, sizeof(int64_t) * (size_t)k);
  }
  if ((s = norm_axes(c, present && c->opset >= axes_input ? "input 'axes'" : "attribute 'axes'", axes, k, rank, norm)) != KILN_OK)
    return s;
  kir_node *y;
  if (k == 0 && noop) return unary(c, n, KIR_OP_IDENTITY);
  if ((s = emit1(c, n, op, x, &y)) != KILN_OK) return s;
  if (k > 0) s = kir_attr_set_ints(c->g, y, "axes", norm, k);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "keep_dims", keep != 0);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

static kiln_status op_reduce_sum(C *c, const N *n) { return reduce(c, n, KIR_OP_REDUCE_SUM, 13); }
static kiln_status op_reduce_mean(C *c, const N *n) { return reduce(c, n, KIR_OP_REDUCE_MEAN, 18); }
static kiln_status op_reduce_max(C *c, const N *n) { return reduce(c, n, KIR_OP_REDUCE_MAX, 18); }
static kiln_status op_reduce_min(C *c, const N *n) { return reduce(c, n, KIR_OP_REDUCE_MIN, 18); }

static kiln_status arg(C *c, const N *n, kir_op op) {
  int64_t axis, keep, last;
  int32_t x, a;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "axis", 0, &axis);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "keepdims", 1, &keep);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "select_last_index", 0, &last);
  if (s == KILN_OK) s = konnx_axis(c, "attribute 'axis'", axis, konnx_type(c, x)->rank, &a);
  if (s == KILN_OK) s = emit1(c, n, op, x, &y);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "axis", a);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "keep_dims", keep != 0);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "select_last_index", last != 0);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

static kiln_status op_argmax(C *c, const N *n) { return arg(c, n, KIR_OP_ARGMAX); }
static kiln_status op_argmin(C *c, const N *n) { return arg(c, n, KIR_OP_ARGMIN); }

/* ---------------------------------------------------------------- softmax -------- */

/* Product of dims [from, to); false on overflow. */
static bool dims_product(const kir_type *t, int32_t from, int32_t to, int64_t *p) {
  *p = 1;
  for (int32_t i = from; i < to; i++) {
    if (t->dims[i] && *p > INT64_MAX / t->dims[i]) return false;
    *p *= t->dims[i];
  }
  return true;
}

/* Before opset 13 the input is coerced to 2-D at axis (default 1); from 13 one axis (-1). */
static kiln_status softmax(C *c, const N *n, kir_op op) {
  int64_t axis;
  int32_t x, a;
  kir_node *y;
  bool old = c->opset < 13;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "axis", old ? 1 : -1, &axis);
  if (s != KILN_OK) return s;
  kir_type t = *konnx_type(c, x);
  if ((s = konnx_axis(c, "attribute 'axis'", axis, t.rank, &a)) != KILN_OK) return s;
  if (!old || a == t.rank - 1) {
    if ((s = emit1(c, n, op, x, &y)) == KILN_OK) s = kir_attr_set_int(c->g, y, "axis", a);
    return s == KILN_OK ? konnx_finish(c, y) : s;
  }
  int64_t d[2];
  if (!dims_product(&t, 0, a, &d[0]) || !dims_product(&t, a, t.rank, &d[1]))
    return konnx_err(c, KILN_ERR_OVERFLOW, "coercing the input to 2-D overflows");
  if ((s = konnx_reshape(c, n, 0, "2d", x, d, 2, &x)) != KILN_OK) return s;
  if ((s = konnx_emit_sub(c, n, "softmax", op, &x, 1, &y)) != KILN_OK) return s;
  if ((s = kir_attr_set_int(c->g, y, "axis", 1)) != KILN_OK || (s = konnx_finish(c, y)) != KILN_OK) return s;
  return konnx_reshape(c, n, 0, NULL, y->id, t.dims, t.rank, NULL);
}

static kiln_status op_softmax(C *c, const N *n) { return softmax(c, n, KIR_OP_SOFTMAX); }
static kiln_status op_log_softmax(C *c, const N *n) { return softmax(c, n, KIR_OP_LOG_SOFTMAX); }

/* ---------------------------------------------------------------- shape ops ------ */

static kiln_status op_transpose(C *c, const N *n) {
  const int64_t *perm;
  int32_t k, x;
  bool present;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_ints(c, n, "perm", &perm, &k, &present);
  if (s != KILN_OK) return s;
  int32_t rank = konnx_type(c, x)->rank;
  if (present) {
    if (k != rank) return konnx_err(c, KILN_ERR_SHAPE, "attribute 'perm' has %d entries for rank %d", k, rank);
    bool seen[KILN_MAX_RANK] = {false};
    for (int32_t i = 0; i < k; i++) {
      if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]])
        return konnx_err(c, KILN_ERR_SHAPE, "attribute 'perm' is not a permutation of 0..%d (entry %d is %lld)",
                         rank - 1, i, (long long)perm[i]);
      seen[perm[i]] = true;
    }
  }
  if ((s = emit1(c, n, KIR_OP_TRANSPOSE, x, &y)) != KILN_OK) return s;
  if (present) s = kir_attr_set_ints(c->g, y, "perm", perm, k);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* Resolves Reshape's 0 (copy, unless allowzero) and -1 (inferred) entries. */
static kiln_status reshape_dims(C *c, const kir_type *t, int64_t *d, int32_t k, bool allowzero) {
  int32_t infer = -1;
  int64_t known = 1, numel = kir_type_numel(t);
  for (int32_t i = 0; i < k; i++) {
    if (d[i] == 0 && !allowzero) {
      if (i >= t->rank) return konnx_err(c, KILN_ERR_SHAPE, "shape entry %d is 0 but the input has rank %d", i, t->rank);
      d[i] = t->dims[i];
    }
    if (d[i] == -1) {
      if (infer >= 0) return konnx_err(c, KILN_ERR_SHAPE, "shape has more than one -1");
      infer = i;
      continue;
    }
    if (d[i] < 0) return konnx_err(c, KILN_ERR_SHAPE, "shape entry %d is %lld", i, (long long)d[i]);
    if (d[i] && known > INT64_MAX / d[i]) return konnx_err(c, KILN_ERR_OVERFLOW, "shape's element count overflows");
    known *= d[i];
  }
  if (infer >= 0) {
    if (known == 0 || numel % known)
      return konnx_err(c, KILN_ERR_SHAPE, "cannot infer the -1 entry: %lld elements into a multiple of %lld",
                       (long long)numel, (long long)known);
    d[infer] = numel / known;
    known = numel;
  }
  if (known != numel)
    return konnx_err(c, KILN_ERR_SHAPE, "shape has %lld elements, the input %lld", (long long)known, (long long)numel);
  return KILN_OK;
}

static kiln_status op_reshape(C *c, const N *n) {
  int64_t d[KILN_MAX_RANK], allowzero;
  int32_t x, k;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "allowzero", 0, &allowzero);
  if (s == KILN_OK) s = konnx_static_ints(c, n, 1, "shape", d, KILN_MAX_RANK, &k);
  if (s == KILN_OK) s = reshape_dims(c, konnx_type(c, x), d, k, allowzero != 0);
  return s == KILN_OK ? konnx_reshape(c, n, 0, NULL, x, d, k, NULL) : s;
}

static kiln_status op_flatten(C *c, const N *n) {
  int64_t axis, d[2];
  int32_t x;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "axis", 1, &axis);
  if (s != KILN_OK) return s;
  kir_type t = *konnx_type(c, x);
  if (axis < -(int64_t)t.rank || axis > t.rank)
    return konnx_err(c, KILN_ERR_SHAPE, "attribute 'axis' = %lld is out of range for rank %d", (long long)axis, t.rank);
  if (axis < 0) axis += t.rank;
  if (!dims_product(&t, 0, (int32_t)axis, &d[0]) || !dims_product(&t, (int32_t)axis, t.rank, &d[1]))
    return konnx_err(c, KILN_ERR_OVERFLOW, "flattening overflows");
  return konnx_reshape(c, n, 0, NULL, x, d, 2, NULL);
}

/* Squeeze/Unsqueeze axes: an attribute before opset 13, an input from 13. */
static kiln_status squeeze_axes(C *c, const N *n, int64_t *axes, int32_t *k, bool *present) {
  if (c->opset >= 13) {
    *present = n->n_input > 1 && n->input[1] && n->input[1][0];
    *k = 0;
    return *present ? konnx_static_ints(c, n, 1, "axes", axes, KILN_MAX_RANK, k) : KILN_OK;
  }
  const int64_t *v;
  kiln_status s = konnx_attr_ints(c, n, "axes", &v, k, present);
  if (s == KILN_OK && *k > KILN_MAX_RANK) return konnx_err(c, KILN_ERR_LIMIT, "attribute 'axes' has %d entries", *k);
  if (s == KILN_OK && *k) memcpy(axes, v, sizeof(int64_t) * (size_t)*k);
  return s;
}

static kiln_status op_squeeze(C *c, const N *n) {
  int64_t axes[KILN_MAX_RANK], norm[KILN_MAX_RANK], d[KILN_MAX_RANK];
  int32_t x, k, r = 0;
  bool present;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = squeeze_axes(c, n, axes, &k, &present);
  if (s != KILN_OK) return s;
  kir_type t = *konnx_type(c, x);
  if ((s = norm_axes(c, "axes", axes, k, t.rank, norm)) != KILN_OK) return s;
  bool drop[KILN_MAX_RANK] = {false};
  for (int32_t i = 0; i < k; i++) {
    if (t.dims[norm[i]] != 1)
      return konnx_err(c, KILN_ERR_SHAPE, "axis %lld has size %lld, not 1", (long long)axes[i], (long long)t.dims[norm[i]]);
    drop[norm[i]] = true;
  }
  for (int32_t i = 0; i < t.rank; i++)
    if (!(k ? drop[i] : t.dims[i] == 1)) d[r++] = t.dims[i];
  return konnx_reshape(c, n, 0, NULL, x, d, r, NULL);
}

static kiln_status op_unsqueeze(C *c, const N *n) {
  int64_t axes[KILN_MAX_RANK], norm[KILN_MAX_RANK], d[KILN_MAX_RANK];
  int32_t x, k;
  bool present;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = squeeze_axes(c, n, axes, &k, &present);
  if (s != KILN_OK) return s;
  kir_type t = *konnx_type(c, x);
  if (!present || k == 0) return konnx_err(c, KILN_ERR_GRAPH, "axes are required");
  int32_t r = t.rank + k;
  if (r > KILN_MAX_RANK) return konnx_err(c, KILN_ERR_LIMIT, "output rank %d (limit %d)", r, KILN_MAX_RANK);
  if ((s = norm_axes(c, "axes", axes, k, r, norm)) != KILN_OK) return s;
  bool ins[KILN_MAX_RANK] = {false};
  for (int32_t i = 0; i < k; i++) ins[norm[i]] = true;
  for (int32_t i = 0, j = 0; i < r; i++) d[i] = ins[i] ? 1 : t.dims[j++];
  return konnx_reshape(c, n, 0, NULL, x, d, r, NULL);
}

/* ---------------------------------------------------------------- the table ------ */

kiln_status konnx_op_concat(C *c, const N *n);
kiln_status konnx_op_slice(C *c, const N *n);
kiln_status konnx_op_gather(C *c, const N *n);
kiln_status konnx_op_cast(C *c, const N *n);
kiln_status konnx_op_where(C *c, const N *n);

typedef struct op_entry {
  const char *name;
  konnx_op_fn fn;
} op_entry;

/* Sorted by name (strcmp); konnx_supported_ops lists these. */
static const op_entry ops[] = {
    {"Abs", op_abs},
    {"Add", op_add},
    {"ArgMax", op_argmax},
    {"ArgMin", op_argmin},
    {"AveragePool", konnx_op_avg_pool},
    {"BatchNormalization", konnx_op_batch_norm},
    {"Cast", konnx_op_cast},
    {"Clip", op_clip},
    {"Concat", konnx_op_concat},
    {"Constant", konnx_op_constant},
    {"ConstantOfShape", konnx_op_constant_of_shape},
    {"Conv", konnx_op_conv},
    {"Div", op_div},
    {"Dropout", konnx_op_dropout},
    {"Erf", op_erf},
    {"Exp", op_exp},
    {"Flatten", op_flatten},
    {"Gather", konnx_op_gather},
    {"Gelu", op_gelu},
    {"Gemm", op_gemm},
    {"GlobalAveragePool", konnx_op_global_avg_pool},
    {"GlobalMaxPool", konnx_op_global_max_pool},
    {"Identity", op_identity},
    {"LeakyRelu", op_leaky_relu},
    {"Log", op_log},
    {"LogSoftmax", op_log_softmax},
    {"MatMul", op_matmul},
    {"Max", op_max},
    {"MaxPool", konnx_op_max_pool},
    {"Mean", op_mean},
    {"Min", op_min},
    {"Mul", op_mul},
    {"Neg", op_neg},
    {"Pad", konnx_op_pad},
    {"Pow", op_pow},
    {"ReduceMax", op_reduce_max},
    {"ReduceMean", op_reduce_mean},
    {"ReduceMin", op_reduce_min},
    {"ReduceSum", op_reduce_sum},
    {"Relu", op_relu},
    {"Reshape", op_reshape},
    {"Shape", konnx_op_shape},
    {"Sigmoid", op_sigmoid},
    {"Size", konnx_op_size},
    {"Slice", konnx_op_slice},
    {"Softmax", op_softmax},
    {"Sqrt", op_sqrt},
    {"Squeeze", op_squeeze},
    {"Sub", op_sub},
    {"Sum", op_sum},
    {"Tanh", op_tanh},
    {"Transpose", op_transpose},
    {"Unsqueeze", op_unsqueeze},
    {"Where", konnx_op_where},
};
#define N_OPS ((int)(sizeof ops / sizeof ops[0]))

static int cmp_entry(const void *k, const void *e) { return strcmp(k, ((const op_entry *)e)->name); }

konnx_op_fn konnx_find_op(const char *op_type) {
  const op_entry *e = bsearch(op_type, ops, N_OPS, sizeof ops[0], cmp_entry);
  return e ? e->fn : NULL;
}

const char *const *konnx_supported_ops(void) {
  static const char *names[N_OPS + 1];
  if (!names[0])
    for (int i = 0; i < N_OPS; i++) names[i] = ops[i].name;
  return names;
}
