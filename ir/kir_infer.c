/* kir_infer.c — shape and dtype inference for every op in ops.def, with the checks
 * that make a node well-formed (arity, attribute schema, dtypes, shapes, sizes).
 * Writes only n->type, and only on success. Depends on kir.h and libc only. */
#include "kir_internal.h"
#include "kir_nn.h"

#include <string.h>

#define TYBUF 128

typedef struct infer_ctx {
  kir_graph *g;
  kir_node *n;
  const kir_type *in[2]; /* types of the first two inputs, when present */
} infer_ctx;

static const char *tyfmt(const kir_type *t, char *buf) {
  kir_type_format(t, buf, TYBUF);
  return buf;
}

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }

static const char *opname(const kir_node *n) {
  const kir_op_info *i = kir_op_get((int32_t)n->op);
  return i ? i->name : "invalid op";
}

static const kir_type *input_type(const infer_ctx *c, int32_t k) {
  return &c->g->nodes[c->n->inputs[k]]->type;
}

/* Float dtypes only for KIR_F_FLOAT_ONLY ops; no bool for arithmetic. */
static kiln_status check_dtype_for_op(const infer_ctx *c, kiln_dtype t, bool arithmetic) {
  if (kir_op_has(c->n->op, KIR_F_FLOAT_ONLY) && !is_float(t))
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "%s takes a float dtype (f16, bf16, f32 or f64), got %s", opname(c->n),
                        kiln_dtype_name(t));
  if (arithmetic && t == KILN_BOOL)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "%s does no arithmetic on bool", opname(c->n));
  return KILN_OK;
}

static kiln_status check_flag(const infer_ctx *c, const char *attr) {
  int64_t v = kir_attr_int(c->n, attr, 0);
  if (v != 0 && v != 1)
    return kir_node_err(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' must be 0 or 1, got %lld",
                        attr, (long long)v);
  return KILN_OK;
}

/* ---------------------------------------------------------------- sources ------- */

/* A dtype attribute holding a valid dtype. */
static kiln_status attr_dtype(const infer_ctx *c, kiln_dtype *out) {
  int64_t v = kir_attr_int(c->n, "dtype", 0);
  if (v <= KILN_DTYPE_INVALID || v >= KILN_DTYPE_COUNT)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "attribute 'dtype' is not a dtype: %lld",
                        (long long)v);
  *out = (kiln_dtype)v;
  return KILN_OK;
}

/* A shape attribute: rank <= KILN_MAX_RANK, every dim >= 0. */
static kiln_status attr_shape(const infer_ctx *c, kir_type *t) {
  int32_t count = 0;
  const int64_t *dims = kir_attr_ints(c->n, "shape", &count);
  if (count > KILN_MAX_RANK)
    return kir_node_err(c->g, c->n, KILN_ERR_LIMIT, "shape has rank %d, above %d", (int)count,
                        KILN_MAX_RANK);
  for (int32_t i = 0; i < count; i++) {
    if (dims[i] < 0)
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "shape dim %d is negative (%lld)", (int)i,
                          (long long)dims[i]);
    t->dims[i] = dims[i];
  }
  t->rank = count;
  return KILN_OK;
}

static kiln_status infer_constant(const infer_ctx *c, kir_type *out) {
  const kir_tensor *t = kir_attr_tensor(c->n, "value");
  char b[TYBUF];
  if (!t || t->type.dtype <= KILN_DTYPE_INVALID || t->type.dtype >= KILN_DTYPE_COUNT ||
      t->type.rank < 0 || t->type.rank > KILN_MAX_RANK || kir_type_numel(&t->type) < 0)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "constant value has a bad type %s",
                        t ? tyfmt(&t->type, b) : "(none)");
  *out = t->type;
  return KILN_OK;
}

/* The optional default (the value when nothing is fed) must have the placeholder's type. */
static kiln_status infer_placeholder(const infer_ctx *c, kir_type *out) {
  kiln_status s = attr_dtype(c, &out->dtype);
  if (s == KILN_OK) s = attr_shape(c, out);
  const kir_tensor *d = kir_attr_tensor(c->n, "default");
  char x[TYBUF], y[TYBUF];
  if (s != KILN_OK || !d || kir_type_equal(&d->type, out)) return s;
  return kir_node_err(c->g, c->n, d->type.dtype != out->dtype ? KILN_ERR_TYPE : KILN_ERR_SHAPE,
                      "attribute 'default' is %s, the placeholder is %s", tyfmt(&d->type, x),
                      tyfmt(out, y));
}

static kiln_status infer_random(const infer_ctx *c, kir_type *out) {
  kiln_status s = attr_dtype(c, &out->dtype);
  if (s != KILN_OK) return s;
  if (!is_float(out->dtype))
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "%s makes a float dtype (f16, bf16, f32 or f64), not %s", opname(c->n),
                        kiln_dtype_name(out->dtype));
  return attr_shape(c, out);
}

/* ---------------------------------------------------------------- elementwise --- */

static kiln_status infer_binary(const infer_ctx *c, kir_type *out) {
  const kir_type *a = c->in[0], *b = c->in[1];
  char x[TYBUF], y[TYBUF];
  if (a->dtype != b->dtype)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "inputs %s and %s differ in dtype",
                        tyfmt(a, x), tyfmt(b, y));
  kiln_status s = check_dtype_for_op(c, a->dtype, true);
  if (s != KILN_OK) return s;
  if (!kir_broadcast(a, b, out))
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "inputs %s and %s do not broadcast",
                        tyfmt(a, x), tyfmt(b, y));
  return KILN_OK;
}

static kiln_status infer_unary(const infer_ctx *c, kir_type *out) {
  kiln_status s = check_dtype_for_op(c, c->in[0]->dtype, true);
  if (s == KILN_OK && c->n->op == KIR_OP_GELU) s = check_flag(c, "approximate");
  if (s != KILN_OK) return s;
  *out = *c->in[0];
  return KILN_OK;
}

/* ---------------------------------------------------------------- matmul -------- */

/* Shape of op(A) @ op(B) with batch dims broadcast; also used by fused_matmul. */
static kiln_status matmul_shape(const infer_ctx *c, kir_type *out) {
  const kir_type *a = c->in[0], *b = c->in[1];
  char x[TYBUF], y[TYBUF];
  kiln_status s = check_flag(c, "transpose_a");
  if (s == KILN_OK) s = check_flag(c, "transpose_b");
  if (s != KILN_OK) return s;
  if (a->dtype != b->dtype)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "inputs %s and %s differ in dtype",
                        tyfmt(a, x), tyfmt(b, y));
  if ((s = check_dtype_for_op(c, a->dtype, true)) != KILN_OK) return s;
  if (a->rank < 2 || b->rank < 2)
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "%s needs rank >= 2, got %s and %s",
                        opname(c->n), tyfmt(a, x), tyfmt(b, y));
  bool ta = kir_attr_int(c->n, "transpose_a", 0), tb = kir_attr_int(c->n, "transpose_b", 0);
  int64_t m = a->dims[a->rank - (ta ? 1 : 2)], ka = a->dims[a->rank - (ta ? 2 : 1)];
  int64_t kb = b->dims[b->rank - (tb ? 1 : 2)], nn = b->dims[b->rank - (tb ? 2 : 1)];
  if (ka != kb)
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE,
                        "inner dims differ: %s and %s (transpose_a=%d, transpose_b=%d)",
                        tyfmt(a, x), tyfmt(b, y), (int)ta, (int)tb);
  kir_type ba = *a, bb = *b;
  ba.rank -= 2;
  bb.rank -= 2;
  if (!kir_broadcast(&ba, &bb, out))
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "batch dims of %s and %s do not broadcast",
                        tyfmt(a, x), tyfmt(b, y));
  out->dims[out->rank++] = m;
  out->dims[out->rank++] = nn;
  return KILN_OK;
}

static kiln_status infer_add_n(const infer_ctx *c, kir_type *out) {
  const kir_type *t0 = c->in[0];
  char x[TYBUF], y[TYBUF];
  for (int32_t k = 1; k < c->n->n_inputs; k++) {
    const kir_type *t = input_type(c, k);
    if (t->dtype != t0->dtype)
      return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "input %d is %s, input 0 is %s", (int)k,
                          tyfmt(t, x), tyfmt(t0, y));
    if (!kir_type_equal(t, t0))
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "input %d is %s, input 0 is %s", (int)k,
                          tyfmt(t, x), tyfmt(t0, y));
  }
  kiln_status s = check_dtype_for_op(c, t0->dtype, true);
  if (s == KILN_OK) *out = *t0;
  return s;
}

/* ---------------------------------------------------------------- reductions ---- */

/* Normalizes axis v against rank (negative counts from the end). */
static kiln_status norm_axis(const infer_ctx *c, int64_t v, int32_t rank, int32_t *axis) {
  char x[TYBUF];
  if (v < -(int64_t)rank || v >= rank)
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "axis %lld is out of range for %s",
                        (long long)v, tyfmt(c->in[0], x));
  *axis = (int32_t)(v < 0 ? v + rank : v);
  return KILN_OK;
}

/* Marks the reduced axes in `red`; absent axes means all of them. */
static kiln_status reduce_axes(const infer_ctx *c, bool red[KILN_MAX_RANK]) {
  int32_t count = 0, rank = c->in[0]->rank;
  const int64_t *axes = kir_attr_ints(c->n, "axes", &count);
  for (int32_t i = 0; i < KILN_MAX_RANK; i++) red[i] = !axes && i < rank;
  for (int32_t i = 0; axes && i < count; i++) {
    int32_t ax = 0;
    kiln_status s = norm_axis(c, axes[i], rank, &ax);
    if (s != KILN_OK) return s;
    if (red[ax])
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "axis %lld is listed twice",
                          (long long)axes[i]);
    red[ax] = true;
  }
  return KILN_OK;
}

/* Reduction `kind` (reduce_sum/mean/max/min) of c->in[0]; also used by fused_reduce. */
static kiln_status reduce_shape(const infer_ctx *c, kir_op kind, kir_type *out) {
  const kir_type *t = c->in[0];
  char x[TYBUF];
  bool red[KILN_MAX_RANK];
  kiln_status s = check_dtype_for_op(c, t->dtype, true);
  if (s == KILN_OK) s = check_flag(c, "keep_dims");
  if (s == KILN_OK) s = reduce_axes(c, red);
  if (s != KILN_OK) return s;
  bool keep = kir_attr_int(c->n, "keep_dims", 0);
  out->dtype = t->dtype;
  for (int32_t i = 0; i < t->rank; i++) {
    if (red[i] && t->dims[i] == 0 && (kind == KIR_OP_REDUCE_MAX || kind == KIR_OP_REDUCE_MIN))
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "%s over axis %d of size 0 in %s",
                          kir_op_get(kind)->name, (int)i, tyfmt(t, x));
    if (!red[i]) out->dims[out->rank++] = t->dims[i];
    else if (keep) out->dims[out->rank++] = 1;
  }
  return KILN_OK;
}

static kiln_status infer_reduce(const infer_ctx *c, kir_type *out) {
  return reduce_shape(c, c->n->op, out);
}

static kiln_status infer_softmax(const infer_ctx *c, kir_type *out) {
  int32_t ax = 0;
  kiln_status s = check_dtype_for_op(c, c->in[0]->dtype, true);
  if (s == KILN_OK) s = norm_axis(c, kir_attr_int(c->n, "axis", -1), c->in[0]->rank, &ax);
  if (s == KILN_OK) *out = *c->in[0];
  return s;
}

/* ---------------------------------------------------------------- shape ops ----- */

/* Product of the known dims of a reshape target, and the position of the -1. */
static kiln_status reshape_known(const infer_ctx *c, const int64_t *dims, int32_t count,
                                 int64_t *known, int32_t *wild) {
  *known = 1;
  *wild = -1;
  for (int32_t i = 0; i < count; i++) {
    if (dims[i] == -1 && *wild < 0) {
      *wild = i;
      continue;
    }
    if (dims[i] < 0)
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "reshape dim %d is %lld%s", (int)i,
                          (long long)dims[i], dims[i] == -1 ? " (a second -1)" : "");
    if (dims[i] != 0 && *known > INT64_MAX / dims[i])
      return kir_node_err(c->g, c->n, KILN_ERR_OVERFLOW, "reshape target size overflows");
    *known *= dims[i];
  }
  return KILN_OK;
}

static kiln_status infer_reshape(const infer_ctx *c, kir_type *out) {
  int32_t count = 0, wild;
  const int64_t *dims = kir_attr_ints(c->n, "shape", &count);
  int64_t known, numel = kir_type_numel(c->in[0]);
  char x[TYBUF];
  if (count > KILN_MAX_RANK)
    return kir_node_err(c->g, c->n, KILN_ERR_LIMIT, "reshape to rank %d, above %d", (int)count,
                        KILN_MAX_RANK);
  kiln_status s = reshape_known(c, dims, count, &known, &wild);
  if (s != KILN_OK) return s;
  out->dtype = c->in[0]->dtype;
  out->rank = count;
  for (int32_t i = 0; i < count; i++) out->dims[i] = dims[i];
  if (wild >= 0 && known != 0 && numel % known == 0) out->dims[wild] = numel / known;
  else if (wild >= 0 || known != numel)
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "cannot reshape %s (%lld elements) to the "
                        "shape attribute (%d dims%s)", tyfmt(c->in[0], x), (long long)numel,
                        (int)count, wild >= 0 ? ", one -1" : "");
  return KILN_OK;
}

static kiln_status infer_transpose(const infer_ctx *c, kir_type *out) {
  const kir_type *t = c->in[0];
  int32_t count = 0;
  const int64_t *perm = kir_attr_ints(c->n, "perm", &count);
  bool seen[KILN_MAX_RANK] = {false};
  char x[TYBUF];
  if (perm && count != t->rank)
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "perm has %d entries for %s", (int)count,
                        tyfmt(t, x));
  *out = *t;
  for (int32_t i = 0; i < t->rank; i++) {
    int64_t p = perm ? perm[i] : t->rank - 1 - i;
    if (p < 0 || p >= t->rank || seen[p])
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE,
                          "perm is not a permutation of 0..%d (entry %d is %lld)",
                          (int)t->rank - 1, (int)i, (long long)p);
    seen[p] = true;
    out->dims[i] = t->dims[p];
  }
  return KILN_OK;
}

/* A transfer's destination is a normalized device name: "cpu:N" or "cuda:N". */
static bool device_name_ok(const char *d) {
  const char *p = !strncmp(d, "cpu:", 4) ? d + 4 : !strncmp(d, "cuda:", 5) ? d + 5 : NULL;
  if (!p || !*p || strlen(p) > 4) return false;
  for (; *p; p++)
    if (*p < '0' || *p > '9') return false;
  return true;
}

static kiln_status infer_transfer(const infer_ctx *c, kir_type *out) {
  const char *d = kir_attr_string(c->n, "device");
  char esc[KIR_ESC_BUF];
  if (!d || !device_name_ok(d))
    return kir_node_err(c->g, c->n, KILN_ERR_GRAPH,
                        "attribute 'device' must be \"cpu:N\" or \"cuda:N\", got '%s'",
                        kir_escape(d ? d : "", esc, sizeof esc));
  *out = *c->in[0];
  return KILN_OK;
}

static kiln_status infer_assign(const infer_ctx *c, kir_type *out) {
  const kir_node *var = c->g->nodes[c->n->inputs[0]];
  const kir_type *vt = c->in[0], *val = c->in[1];
  char x[TYBUF], y[TYBUF], esc[KIR_ESC_BUF];
  if (var->op != KIR_OP_VARIABLE)
    return kir_node_err(c->g, c->n, KILN_ERR_GRAPH, "assign target '%s' is a %s, not a variable",
                        kir_escape(var->name, esc, sizeof esc), opname(var));
  if (vt->dtype != val->dtype)
    return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "assigns %s to variable of type %s",
                        tyfmt(val, x), tyfmt(vt, y));
  if (!kir_type_equal(vt, val))
    return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "assigns %s to variable of type %s",
                        tyfmt(val, x), tyfmt(vt, y));
  *out = *vt;
  return KILN_OK;
}

/* ---------------------------------------------------------------- fused --------- */

static kiln_status infer_fused_matmul(const infer_ctx *c, kir_type *out) {
  kir_epilogue e;
  char x[TYBUF], y[TYBUF];
  kiln_status s = matmul_shape(c, out);
  if (s == KILN_OK) s = kir_epilogue_get(c->g, c->n, &e);
  if (s != KILN_OK) return s;
  for (int32_t k = 2; k < c->n->n_inputs; k++) {
    const kir_type *t = input_type(c, k);
    kir_type b;
    if (t->dtype != out->dtype)
      return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "epilogue operand %d is %s, product is %s",
                          (int)k, tyfmt(t, x), tyfmt(out, y));
    if (!kir_broadcast(out, t, &b) || !kir_type_equal(&b, out))
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE,
                          "epilogue operand %d (%s) does not broadcast to the product %s",
                          (int)k, tyfmt(t, x), tyfmt(out, y));
  }
  return KILN_OK;
}

/* The chain of a fused_elementwise/reduce/softmax: one dtype, the broadcast of every
 * input, a well-formed epilogue. */
static kiln_status chain_shape(const infer_ctx *c, kir_type *out) {
  char x[TYBUF], y[TYBUF];
  kir_epilogue e;
  *out = *c->in[0];
  kiln_status s = check_dtype_for_op(c, out->dtype, true);
  for (int32_t k = 1; s == KILN_OK && k < c->n->n_inputs; k++) {
    const kir_type *t = input_type(c, k);
    kir_type b;
    if (t->dtype != out->dtype)
      return kir_node_err(c->g, c->n, KILN_ERR_TYPE, "input %d is %s, input 0 is %s", (int)k,
                          tyfmt(t, x), tyfmt(c->in[0], y));
    if (!kir_broadcast(out, t, &b))
      return kir_node_err(c->g, c->n, KILN_ERR_SHAPE, "input %d (%s) does not broadcast with %s",
                          (int)k, tyfmt(t, x), tyfmt(out, y));
    *out = b;
  }
  if (s == KILN_OK) s = kir_epilogue_get(c->g, c->n, &e);
  return s;
}

static kiln_status infer_fused_chain(const infer_ctx *c, kir_type *out) {
  kir_type t;
  kiln_status s = chain_shape(c, &t);
  if (s != KILN_OK) return s;
  infer_ctx inner = *c; /* the reduction or softmax sees the chain's value as input 0 */
  inner.in[0] = &t;
  if (c->n->op == KIR_OP_FUSED_SOFTMAX) return infer_softmax(&inner, out);
  if (c->n->op != KIR_OP_FUSED_REDUCE) {
    *out = t;
    return KILN_OK;
  }
  int64_t r = kir_attr_int(c->n, "reduce", 0);
  if (r != KIR_OP_REDUCE_SUM && r != KIR_OP_REDUCE_MEAN && r != KIR_OP_REDUCE_MAX &&
      r != KIR_OP_REDUCE_MIN)
    return kir_node_err(c->g, c->n, KILN_ERR_GRAPH, "attribute 'reduce' (%lld) is not "
                        "reduce_sum, reduce_mean, reduce_max or reduce_min", (long long)r);
  return reduce_shape(&inner, (kir_op)r, out);
}

/* ---------------------------------------------------------------- dispatch ------ */

/* Input k's type, for the ONNX-set ops typed in kir_kernels_nn.c. */
static const kir_type *node_type_at(const void *ctx, int32_t k) {
  return input_type((const infer_ctx *)ctx, k);
}

static kiln_status infer_op(const infer_ctx *c, kir_type *out) {
  switch (c->n->op) {
  case KIR_OP_CONSTANT: return infer_constant(c, out);
  case KIR_OP_PLACEHOLDER: return infer_placeholder(c, out);
  case KIR_OP_VARIABLE: *out = *c->in[0]; return KILN_OK;
  case KIR_OP_RANDOM_NORMAL:
  case KIR_OP_RANDOM_UNIFORM: return infer_random(c, out);
  case KIR_OP_ADD:
  case KIR_OP_SUB:
  case KIR_OP_MUL:
  case KIR_OP_DIV:
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM:
  case KIR_OP_POW: return infer_binary(c, out);
  case KIR_OP_NEG:
  case KIR_OP_EXP:
  case KIR_OP_LOG:
  case KIR_OP_SQRT:
  case KIR_OP_TANH:
  case KIR_OP_SIGMOID:
  case KIR_OP_RELU:
  case KIR_OP_CLAMP:
  case KIR_OP_ABS:
  case KIR_OP_LEAKY_RELU:
  case KIR_OP_ERF:
  case KIR_OP_GELU: return infer_unary(c, out);
  case KIR_OP_MATMUL: return matmul_shape(c, out);
  case KIR_OP_ADD_N: return infer_add_n(c, out);
  case KIR_OP_REDUCE_SUM:
  case KIR_OP_REDUCE_MEAN:
  case KIR_OP_REDUCE_MAX:
  case KIR_OP_REDUCE_MIN: return infer_reduce(c, out);
  case KIR_OP_SOFTMAX: return infer_softmax(c, out);
  case KIR_OP_RESHAPE: return infer_reshape(c, out);
  case KIR_OP_TRANSPOSE: return infer_transpose(c, out);
  case KIR_OP_IDENTITY: *out = *c->in[0]; return KILN_OK;
  case KIR_OP_ASSIGN: return infer_assign(c, out);
  case KIR_OP_GROUP:
  case KIR_OP_NO_OP: out->dtype = KILN_DTYPE_INVALID; return KILN_OK;
  case KIR_OP_FUSED_MATMUL: return infer_fused_matmul(c, out);
  case KIR_OP_TRANSFER: return infer_transfer(c, out);
  case KIR_OP_FUSED_ELEMENTWISE:
  case KIR_OP_FUSED_REDUCE:
  case KIR_OP_FUSED_SOFTMAX: return infer_fused_chain(c, out);
  case KIR_OP_LOG_SOFTMAX: return infer_softmax(c, out);
  case KIR_OP_ARGMAX:
  case KIR_OP_ARGMIN:
  case KIR_OP_CONCAT:
  case KIR_OP_SLICE:
  case KIR_OP_GATHER:
  case KIR_OP_CAST:
  case KIR_OP_WHERE:
  case KIR_OP_CONV:
  case KIR_OP_MAX_POOL:
  case KIR_OP_AVG_POOL:
  case KIR_OP_BATCH_NORM:
  case KIR_OP_FUSED_CONV:
  case KIR_OP_MAX_POOL_INDICES: return kirk_nn_type(c->g, c->n, node_type_at, c, out);
  case KIR_OP_INVALID:
    return kir_node_err(c->g, c->n, KILN_ERR_GRAPH, "invalid op number %d", (int)c->n->op);
  case KIR_OP_COUNT: break;
  }
  return kir_node_err(c->g, c->n, KILN_ERR_GRAPH, "invalid op number %d", (int)c->n->op);
}

/* Inputs must exist, and carry a value unless the node is a group. */
static kiln_status check_inputs(kir_graph *g, const kir_node *n) {
  char esc[KIR_ESC_BUF];
  for (int32_t k = 0; k < n->n_inputs; k++) {
    int32_t in = n->inputs[k];
    if (in < 0 || in >= g->n_nodes || in == n->id)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d refers to %s node %d", (int)k,
                          in == n->id ? "its own" : "missing", (int)in);
    const kir_node *src = g->nodes[in];
    if (n->op == KIR_OP_GROUP) continue;
    if (kir_op_has(src->op, KIR_F_NO_OUTPUT))
      return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d '%s' is a %s, which has no output",
                          (int)k, kir_escape(src->name, esc, sizeof esc), opname(src));
    if (src->type.dtype == KILN_DTYPE_INVALID)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d '%s' has no type yet", (int)k,
                          kir_escape(src->name, esc, sizeof esc));
  }
  return KILN_OK;
}

/* The result must have a representable, allowed byte size. */
static kiln_status check_size(kir_graph *g, const kir_node *n, const kir_type *t) {
  char x[TYBUF];
  if (t->dtype == KILN_DTYPE_INVALID) return KILN_OK;
  int64_t numel = kir_type_numel(t), size = (int64_t)kiln_dtype_size(t->dtype);
  if (numel < 0 || numel > INT64_MAX / size)
    return kir_node_err(g, n, KILN_ERR_OVERFLOW, "size of %s overflows", tyfmt(t, x));
  if (numel * size > KIR_MAX_TENSOR_BYTES)
    return kir_node_err(g, n, KILN_ERR_LIMIT, "%s is %lld bytes, above the %lld-byte limit",
                        tyfmt(t, x), (long long)(numel * size), (long long)KIR_MAX_TENSOR_BYTES);
  return KILN_OK;
}

kiln_status kir_infer_node(kir_graph *g, kir_node *n) {
  if (!g || !n) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_infer_node: NULL argument");
  kiln_status s = kir_check_arity(g, n);
  if (s == KILN_OK) s = check_inputs(g, n);
  if (s == KILN_OK) s = kir_check_schema(g, n);
  if (s != KILN_OK) return s;
  infer_ctx c = {g, n, {NULL, NULL}};
  for (int32_t k = 0; k < 2 && k < n->n_inputs; k++) c.in[k] = input_type(&c, k);
  kir_type t;
  memset(&t, 0, sizeof t);
  s = infer_op(&c, &t);
  if (s == KILN_OK) s = check_size(g, n, &t);
  if (s == KILN_OK) n->type = t;
  return s;
}

kiln_status kir_infer_shapes(kir_graph *g) {
  if (!g) return KILN_ERR_ARGUMENT;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kiln_status s = kir_infer_node(g, g->nodes[i]);
    if (s != KILN_OK) return s;
  }
  kir_clearerr(g);
  return KILN_OK;
}
