/* kir_kernels_nn.c — shape rules and reference kernels of the ONNX-set ops that are not
 * elementwise: argmax/argmin, concat, slice, gather, cast, where, conv and fused_conv,
 * max_pool/avg_pool/max_pool_indices and batch_norm. One typing function per op serves
 * inference and the kernels alike; float math accumulates in double. Depends on libc,
 * libm and the rest of ir/ only; plain loops, speed is not a goal. */
#include <math.h>
#include <string.h>

#include "kir_nn.h"

#define TB 128
#define kerr kir_node_err
#define ATTR_MAX 2147483647 /* strides, pads, dilations and kernel sizes stay below 2^31 */

/* Every op kir_kernels_nn.c does not handle (for the switches below). */
#define KIRK_CASES_NOT_NN                                                                  \
  case KIR_OP_INVALID: case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE:  \
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: case KIR_OP_ADD: case KIR_OP_SUB:   \
  case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM: case KIR_OP_MINIMUM: case KIR_OP_NEG: \
  case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH: case KIR_OP_SIGMOID: \
  case KIR_OP_RELU: case KIR_OP_CLAMP: case KIR_OP_MATMUL: case KIR_OP_ADD_N:               \
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: case KIR_OP_SOFTMAX: \
  case KIR_OP_RESHAPE: case KIR_OP_TRANSPOSE: case KIR_OP_IDENTITY: case KIR_OP_ASSIGN:     \
  case KIR_OP_GROUP: case KIR_OP_NO_OP: case KIR_OP_FUSED_MATMUL: case KIR_OP_TRANSFER:     \
  case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_REDUCE: case KIR_OP_FUSED_SOFTMAX:       \
  case KIR_OP_POW: case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU: \
  case KIR_OP_REDUCE_MIN: case KIR_OP_LOG_SOFTMAX: case KIR_OP_COUNT

/* ---------------------------------------------------------------- context ------- */

typedef struct nn_ctx {
  kir_graph *g;
  const kir_node *n;
  kirk_type_at at;
  const void *ctx;
} nn_ctx;

/* Sliding-window geometry of conv and the pools; unused spatial dims (k < 3) have size,
 * kernel, stride and dilation 1 and no padding, so every kernel loops over 3 dims. */
typedef struct win {
  int32_t k;
  int64_t in[3], kern[3], out[3], stride[3], dil[3], pb[3], pe[3];
} win;

/* What typing learns that the kernel needs. */
typedef struct nn_plan {
  win w;
  int64_t group;
  int32_t axis;
  bool keep, last, ceil_mode, include_pad, col_major;
  int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
} nn_plan;

static const kir_type *in_type(const nn_ctx *c, int32_t k) { return c->at(c->ctx, k); }

static const char *tyf(const kir_type *t, char *b) {
  kir_type_format(t, b, TB);
  return b;
}

static const char *opname(const kir_node *n) { return kir_op_get(n->op)->name; }
static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }
static bool is_int(kiln_dtype t) { return kir_dtype_is_int(t); }
static int64_t numel(const kir_type *t) { return kir_type_numel(t); }
static double ld_f(const kir_tensor *t, int64_t i) { return kir_tensor_get_f(t, i); }
static int64_t ld_i(const kir_tensor *t, int64_t i) { return kir_tensor_get_i(t, i); }

/* ---------------------------------------------------------------- checks -------- */

static kiln_status need_float(const nn_ctx *c, int32_t k) {
  char b[TB];
  const kir_type *t = in_type(c, k);
  if (is_float(t->dtype)) return KILN_OK;
  return kerr(c->g, c->n, KILN_ERR_TYPE, "%s takes a float dtype (f16, bf16, f32 or f64), input %d is %s", opname(c->n),
              (int)k, tyf(t, b));
}

static kiln_status need_numeric(const nn_ctx *c, int32_t k) {
  char b[TB];
  const kir_type *t = in_type(c, k);
  if (is_float(t->dtype) || is_int(t->dtype)) return KILN_OK;
  return kerr(c->g, c->n, KILN_ERR_TYPE, "%s takes a float or integer dtype, input %d is %s",
              opname(c->n), (int)k, tyf(t, b));
}

static kiln_status same_dtype(const nn_ctx *c, int32_t k) {
  char a[TB], b[TB];
  const kir_type *t = in_type(c, k), *t0 = in_type(c, 0);
  if (t->dtype == t0->dtype) return KILN_OK;
  return kerr(c->g, c->n, KILN_ERR_TYPE, "input %d is %s, input 0 is %s: dtypes differ", (int)k,
              tyf(t, a), tyf(t0, b));
}

static kiln_status flag_attr(const nn_ctx *c, const char *name, int64_t dflt, bool *v) {
  int64_t x = kir_attr_int(c->n, name, dflt);
  if (x != 0 && x != 1)
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' must be 0 or 1, got %lld", name,
                (long long)x);
  *v = x != 0;
  return KILN_OK;
}

static kiln_status axis_attr(const nn_ctx *c, int64_t dflt, const kir_type *t, int32_t *axis) {
  char b[TB];
  int64_t v = kir_attr_int(c->n, "axis", dflt);
  if (v < -(int64_t)t->rank || v >= t->rank)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "attribute 'axis' is %lld, out of range for %s",
                (long long)v, tyf(t, b));
  *axis = (int32_t)(v < 0 ? v + t->rank : v);
  return KILN_OK;
}

/* A required or optional ints attribute; wrong kind is a graph error. */
static kiln_status ints_attr(const nn_ctx *c, const char *name, bool required, const int64_t **v,
                             int32_t *cnt) {
  const kir_attr *a = kir_attr_find(c->n, name);
  *v = NULL;
  *cnt = 0;
  if (!a && required)
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' is missing", name);
  if (!a) return KILN_OK;
  if (a->kind != KIR_ATTR_INTS)
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' is %s, expected ints", name,
                kir_attr_kind_name(a->kind));
  *v = a->u.ints.v;
  *cnt = a->u.ints.n;
  return KILN_OK;
}

/* ---------------------------------------------------------------- argmax/argmin - */

static kiln_status arg_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const kir_type *x = in_type(c, 0);
  char b[TB];
  kiln_status s = need_numeric(c, 0);
  if (!s) s = axis_attr(c, 0, x, &p->axis);
  if (!s) s = flag_attr(c, "keep_dims", 1, &p->keep);
  if (!s) s = flag_attr(c, "select_last_index", 0, &p->last);
  if (s) return s;
  if (x->dims[p->axis] == 0)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "%s over axis %d of size 0 in %s", opname(c->n),
                (int)p->axis, tyf(x, b));
  *out = (kir_type){KILN_I64, 0, {0}};
  for (int32_t d = 0; d < x->rank; d++)
    if (d != p->axis || p->keep) out->dims[out->rank++] = d == p->axis ? 1 : x->dims[d];
  return KILN_OK;
}

/* a ranks above b: NaN is the largest value, equal to itself. */
static bool f_above(double a, double b) { return (isnan(a) && !isnan(b)) || a > b; }
static bool f_same(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

/* Whether element v replaces the best so far (first or, with last, last on ties). */
static bool arg_better(const kir_tensor *x, int64_t v, int64_t best, bool is_max, bool last) {
  if (is_float(x->type.dtype)) {
    double a = ld_f(x, v), b = ld_f(x, best);
    return is_max ? f_above(a, b) || (last && f_same(a, b))
                  : f_above(b, a) || (last && f_same(a, b));
  }
  int64_t a = ld_i(x, v), b = ld_i(x, best);
  if (kir_dtype_is_unsigned(x->type.dtype)) { /* u64 >= 2^63 loads negative */
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    return is_max ? ua > ub || (last && a == b) : ua < ub || (last && a == b);
  }
  return is_max ? a > b || (last && a == b) : a < b || (last && a == b);
}

static void k_arg(const nn_plan *p, const kir_tensor *x, bool is_max, kir_tensor *o) {
  const kir_type *t = &x->type;
  int64_t outer = 1, inner = 1, len = t->dims[p->axis];
  for (int32_t d = 0; d < p->axis; d++) outer *= t->dims[d];
  for (int32_t d = p->axis + 1; d < t->rank; d++) inner *= t->dims[d];
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = a * len * inner + i, best = 0;
      for (int64_t l = 1; l < len; l++)
        if (arg_better(x, base + l * inner, base + best * inner, is_max, p->last)) best = l;
      kirk_st_i(o, a * inner + i, best);
    }
}

/* ---------------------------------------------------------------- concat -------- */

static kiln_status concat_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const kir_type *t0 = in_type(c, 0);
  char a[TB], b[TB];
  if (!kir_attr_find(c->n, "axis"))
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute 'axis' is missing");
  kiln_status s = axis_attr(c, 0, t0, &p->axis);
  if (s) return s;
  *out = *t0;
  for (int32_t k = 1; k < c->n->n_inputs; k++) {
    const kir_type *t = in_type(c, k);
    bool ok = t->rank == t0->rank;
    if ((s = same_dtype(c, k))) return s;
    for (int32_t d = 0; ok && d < t->rank; d++) ok = d == p->axis || t->dims[d] == t0->dims[d];
    if (!ok)
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "input %d is %s, input 0 is %s: dims must agree "
                  "except along axis %d", (int)k, tyf(t, a), tyf(t0, b), (int)p->axis);
    if (out->dims[p->axis] > INT64_MAX - t->dims[p->axis])
      return kerr(c->g, c->n, KILN_ERR_OVERFLOW, "concatenated axis %d overflows", (int)p->axis);
    out->dims[p->axis] += t->dims[p->axis];
  }
  return KILN_OK;
}

static void k_concat(const nn_plan *p, int32_t n_in, const kir_tensor *const *in, kir_tensor *o) {
  const kir_type *t = &o->type;
  size_t es = kiln_dtype_size(t->dtype);
  int64_t outer = 1, inner = (int64_t)es, pos = 0;
  for (int32_t d = 0; d < p->axis; d++) outer *= t->dims[d];
  for (int32_t d = p->axis + 1; d < t->rank; d++) inner *= t->dims[d];
  for (int64_t a = 0; a < outer; a++)
    for (int32_t k = 0; k < n_in; k++) {
      int64_t chunk = in[k]->type.dims[p->axis] * inner;
      if (chunk > 0)
        memcpy((char *)o->data + pos, (const char *)in[k]->data + a * chunk, (size_t)chunk);
      pos += chunk;
    }
}

/* ---------------------------------------------------------------- slice --------- */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ONNX Slice along one dim of size dim: negative bounds count from the end, then clamp
 * ([0, dim] forward, [0, dim-1] / [-1, dim-1] backward); the first index and the size. */
static void slice_dim(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first,
                      int64_t *size) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  *first = 0;
  *size = 0;
  if (dim == 0) return;
  if (step > 0) {
    start = clamp64(start, 0, dim);
    end = clamp64(end, 0, dim);
    if (end > start) *size = (int64_t)((uint64_t)(end - start - 1) / (uint64_t)step) + 1;
  } else {
    start = clamp64(start, 0, dim - 1);
    end = clamp64(end, -1, dim - 1);
    if (start > end) *size = (int64_t)((uint64_t)(start - end - 1) / (0 - (uint64_t)step)) + 1;
  }
  *first = start;
}

/* starts, ends, axes, steps: equal counts, axes distinct and in range, steps non-zero. */
static kiln_status slice_lists(const nn_ctx *c, const int64_t *v[4], int32_t *count,
                               int32_t axis_of[KILN_MAX_RANK]) {
  static const char *const names[4] = {"starts", "ends", "axes", "steps"};
  const kir_type *x = in_type(c, 0);
  int32_t cnt[4];
  bool seen[KILN_MAX_RANK] = {false};
  char b[TB];
  for (int i = 0; i < 4; i++) {
    kiln_status s = ints_attr(c, names[i], i < 2, &v[i], &cnt[i]);
    if (s) return s;
    if (i > 0 && (i < 2 || v[i]) && cnt[i] != cnt[0])
      return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' has %d entries, 'starts' has %d",
                  names[i], (int)cnt[i], (int)cnt[0]);
  }
  *count = cnt[0];
  for (int32_t i = 0; i < cnt[0]; i++) {
    int64_t a = v[2] ? v[2][i] : i;
    if (a < -(int64_t)x->rank || a >= x->rank || seen[a < 0 ? a + x->rank : a])
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "attribute 'axes' entry %d (%lld) is out of range "
                  "or repeated for %s", (int)i, (long long)a, tyf(x, b));
    axis_of[i] = (int32_t)(a < 0 ? a + x->rank : a);
    seen[axis_of[i]] = true;
    if (v[3] && v[3][i] == 0)
      return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute 'steps' entry %d is 0", (int)i);
  }
  return KILN_OK;
}

static kiln_status slice_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const int64_t *v[4];
  int32_t count = 0, axis_of[KILN_MAX_RANK];
  kiln_status s = slice_lists(c, v, &count, axis_of);
  if (s) return s;
  *out = *in_type(c, 0);
  for (int32_t d = 0; d < out->rank; d++) {
    p->start[d] = 0;
    p->step[d] = 1;
  }
  for (int32_t i = 0; i < count; i++) {
    int32_t d = axis_of[i];
    p->step[d] = v[3] ? v[3][i] : 1;
    slice_dim(out->dims[d], v[0][i], v[1][i], p->step[d], &p->start[d], &out->dims[d]);
  }
  return KILN_OK;
}

static void k_slice(const nn_plan *p, const kir_tensor *x, kir_tensor *o) {
  const kir_type *t = &o->type;
  int64_t st[KILN_MAX_RANK], ne = numel(t);
  size_t es = kiln_dtype_size(t->dtype);
  kirk_contiguous_strides(&x->type, st);
  for (int64_t i = 0; i < ne; i++) {
    int64_t rem = i, off = 0;
    for (int32_t d = t->rank - 1; d >= 0; d--) {
      off += (p->start[d] + (rem % t->dims[d]) * p->step[d]) * st[d];
      rem /= t->dims[d];
    }
    memcpy((char *)o->data + i * (int64_t)es, (const char *)x->data + off * (int64_t)es, es);
  }
}

/* ---------------------------------------------------------------- gather -------- */

static kiln_status gather_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const kir_type *x = in_type(c, 0), *ix = in_type(c, 1);
  char a[TB], b[TB];
  if (ix->dtype != KILN_I32 && ix->dtype != KILN_I64)
    return kerr(c->g, c->n, KILN_ERR_TYPE, "indices must be i32 or i64, got %s", tyf(ix, a));
  if (x->rank < 1)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "gather needs data of rank >= 1, got %s", tyf(x, a));
  kiln_status s = axis_attr(c, 0, x, &p->axis);
  if (s) return s;
  if (x->rank - 1 + ix->rank > KILN_MAX_RANK)
    return kerr(c->g, c->n, KILN_ERR_LIMIT, "gather of %s by %s has rank %d, above %d",
                tyf(x, a), tyf(ix, b), (int)(x->rank - 1 + ix->rank), KILN_MAX_RANK);
  *out = (kir_type){x->dtype, 0, {0}};
  for (int32_t d = 0; d < p->axis; d++) out->dims[out->rank++] = x->dims[d];
  for (int32_t d = 0; d < ix->rank; d++) out->dims[out->rank++] = ix->dims[d];
  for (int32_t d = p->axis + 1; d < x->rank; d++) out->dims[out->rank++] = x->dims[d];
  return KILN_OK;
}

/* Every index is checked before anything is copied. */
static kiln_status k_gather(const nn_ctx *c, const nn_plan *p, const kir_tensor *x,
                            const kir_tensor *ix, kir_tensor *o) {
  int64_t outer = 1, inner = (int64_t)kiln_dtype_size(x->type.dtype), len = x->type.dims[p->axis];
  int64_t ni = numel(&ix->type);
  for (int64_t j = 0; j < ni; j++) {
    int64_t v = ld_i(ix, j);
    if (v < -len || v >= len)
      return kerr(c->g, c->n, KILN_ERR_EXEC, "index %lld (indices element %lld) is out of range "
                  "for axis %d of size %lld", (long long)v, (long long)j, (int)p->axis,
                  (long long)len);
  }
  for (int32_t d = 0; d < p->axis; d++) outer *= x->type.dims[d];
  for (int32_t d = p->axis + 1; d < x->type.rank; d++) inner *= x->type.dims[d];
  char *dst = o->data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t j = 0; j < ni; j++, dst += inner) {
      int64_t v = ld_i(ix, j);
      if (inner > 0)
        memcpy(dst, (const char *)x->data + (a * len + (v < 0 ? v + len : v)) * inner,
               (size_t)inner);
    }
  return KILN_OK;
}

/* ---------------------------------------------------------------- cast, where --- */

static kiln_status cast_type(const nn_ctx *c, kir_type *out) {
  int64_t v = kir_attr_int(c->n, "dtype", 0);
  if (v <= KILN_DTYPE_INVALID || v >= KILN_DTYPE_COUNT)
    return kerr(c->g, c->n, KILN_ERR_TYPE, "attribute 'dtype' is not a dtype: %lld", (long long)v);
  *out = *in_type(c, 0);
  out->dtype = (kiln_dtype)v;
  return KILN_OK;
}

/* int -> int wraps to the target (unsigned sources read as unsigned, for float
 * targets); float -> int truncates toward zero and saturates, NaN -> 0; -> bool is != 0
 * (NaN -> 1); -> float rounds to nearest even (see kir_tensor_set_f/set_i/set_u). */
static void k_cast(const kir_tensor *x, kir_tensor *o) {
  int64_t ne = numel(&o->type);
  kiln_dtype from = x->type.dtype;
  for (int64_t i = 0; i < ne; i++) {
    if (is_float(from)) kir_tensor_set_f(o, i, ld_f(x, i));
    else if (kir_dtype_is_unsigned(from)) kir_tensor_set_u(o, i, (uint64_t)ld_i(x, i));
    else kir_tensor_set_i(o, i, ld_i(x, i));
  }
}

static kiln_status where_type(const nn_ctx *c, kir_type *out) {
  const kir_type *cond = in_type(c, 0), *x = in_type(c, 1), *y = in_type(c, 2);
  char a[TB], b[TB], d[TB];
  kir_type t;
  if (cond->dtype != KILN_BOOL)
    return kerr(c->g, c->n, KILN_ERR_TYPE, "condition must be bool, got %s", tyf(cond, a));
  if (x->dtype != y->dtype)
    return kerr(c->g, c->n, KILN_ERR_TYPE, "inputs 1 and 2 differ in dtype: %s and %s",
                tyf(x, a), tyf(y, b));
  if (!kir_broadcast(x, y, &t) || !kir_broadcast(&t, cond, out))
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "inputs %s, %s and %s do not broadcast", tyf(cond, a),
                tyf(x, b), tyf(y, d));
  return KILN_OK;
}

static void k_where(const kir_tensor *const *in, kir_tensor *o) {
  int64_t st[3][KILN_MAX_RANK], ne = numel(&o->type);
  size_t es = kiln_dtype_size(o->type.dtype);
  for (int k = 0; k < 3; k++) kirk_bcast_strides(&in[k]->type, &o->type, st[k]);
  for (int64_t i = 0; i < ne; i++) {
    bool take_x = ((const uint8_t *)in[0]->data)[kirk_bcast_offset(i, &o->type, st[0])] != 0;
    int k = take_x ? 1 : 2;
    int64_t src = kirk_bcast_offset(i, &o->type, st[k]);
    memcpy((char *)o->data + i * (int64_t)es, (const char *)in[k]->data + src * (int64_t)es, es);
  }
}

/* ---------------------------------------------------------------- windows ------- */

static kiln_status spatial_rank(const nn_ctx *c, const kir_type *x, win *w) {
  char b[TB];
  if (x->rank < 3 || x->rank > 5)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "%s needs input of rank 3 to 5 ([N, C, d1..dk]), "
                "got %s", opname(c->n), tyf(x, b));
  w->k = x->rank - 2;
  for (int32_t i = 0; i < 3; i++) {
    w->in[i] = w->kern[i] = w->out[i] = w->stride[i] = w->dil[i] = 1;
    w->pb[i] = w->pe[i] = 0;
  }
  for (int32_t i = 0; i < w->k; i++) w->in[i] = x->dims[2 + i];
  return KILN_OK;
}

/* Ints attribute of `want` entries each in [lo, ATTR_MAX]; absent: every entry dflt. */
static kiln_status win_ints(const nn_ctx *c, const char *name, bool required, int32_t want,
                            int64_t lo, int64_t dflt, int64_t *v) {
  const int64_t *a;
  int32_t cnt;
  kiln_status s = ints_attr(c, name, required, &a, &cnt);
  if (s) return s;
  if (a && cnt != want)
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' has %d entries, expected %d for %d "
                "spatial dims", name, (int)cnt, (int)want, (int)(name[0] == 'p' ? want / 2 : want));
  for (int32_t i = 0; i < want; i++) {
    v[i] = a ? a[i] : dflt;
    if (v[i] < lo || v[i] > ATTR_MAX)
      return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute '%s' entry %d is %lld; it must be "
                  "between %lld and %d", name, (int)i, (long long)v[i], (long long)lo, ATTR_MAX);
  }
  return KILN_OK;
}

/* Output size along spatial dim i; ceil mode drops a window that starts in the end pad. */
static kiln_status win_dim(const nn_ctx *c, const kir_type *x, win *w, int32_t i) {
  char b[TB];
  if (w->in[i] > INT64_MAX / 4)
    return kerr(c->g, c->n, KILN_ERR_LIMIT, "spatial dim %d of %s is too large", (int)i, tyf(x, b));
  int64_t ext = w->dil[i] * (w->kern[i] - 1) + 1, avail = w->in[i] + w->pb[i] + w->pe[i];
  if (ext > avail)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "kernel extent %lld (kernel %lld, dilation %lld) is "
                "larger than the padded input (%lld) along spatial dim %d of %s: output dim < 1",
                (long long)ext, (long long)w->kern[i], (long long)w->dil[i], (long long)avail,
                (int)i, tyf(x, b));
  int64_t s = w->stride[i];
  w->out[i] = (avail - ext) / s + 1;
  return KILN_OK;
}

/* strides, pads and dilations (kernel already set), then the output dims. */
static kiln_status win_make(const nn_ctx *c, const kir_type *x, win *w, bool ceil_mode) {
  int64_t pads[6];
  int32_t k = w->k;
  kiln_status s = win_ints(c, "strides", false, k, 1, 1, w->stride);
  if (!s) s = win_ints(c, "pads", false, 2 * k, 0, 0, pads);
  if (!s) s = win_ints(c, "dilations", false, k, 1, 1, w->dil);
  for (int32_t i = 0; !s && i < k; i++) {
    w->pb[i] = pads[i];
    w->pe[i] = pads[k + i];
    s = win_dim(c, x, w, i);
    int64_t span = w->in[i] + w->pb[i] + w->pe[i] - w->dil[i] * (w->kern[i] - 1) - 1;
    if (!s && ceil_mode && span % w->stride[i] != 0) {
      w->out[i]++;
      if ((w->out[i] - 1) * w->stride[i] >= w->in[i] + w->pb[i]) w->out[i]--;
    }
  }
  return s;
}

/* ---------------------------------------------------------------- conv ---------- */

static kiln_status conv_channels(const nn_ctx *c, const kir_type *x, const kir_type *wt,
                                 nn_plan *p) {
  char a[TB], b[TB];
  int64_t C = x->dims[1], M = wt->dims[0];
  p->group = kir_attr_int(c->n, "group", 1);
  if (p->group < 1)
    return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute 'group' is %lld; it must be >= 1",
                (long long)p->group);
  if (C % p->group || M % p->group)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "attribute 'group' (%lld) does not divide the input "
                "channels (C = %lld) and the output channels (M = %lld)", (long long)p->group,
                (long long)C, (long long)M);
  if (wt->dims[1] != C / p->group)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "weight %s has %lld channels per group; input %s "
                "with group %lld needs C/group = %lld", tyf(wt, a), (long long)wt->dims[1],
                tyf(x, b), (long long)p->group, (long long)(C / p->group));
  return KILN_OK;
}

/* conv's bias, or fused_conv's epilogue operands. */
static kiln_status conv_extra(const nn_ctx *c, const kir_type *out) {
  char a[TB], b[TB];
  kiln_status s = KILN_OK;
  if (c->n->op == KIR_OP_CONV && c->n->n_inputs == 3) {
    const kir_type *bt = in_type(c, 2);
    if ((s = same_dtype(c, 2))) return s;
    if (bt->rank != 1 || bt->dims[0] != out->dims[1])
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "bias %s must be [M] = [%lld]", tyf(bt, a),
                  (long long)out->dims[1]);
  }
  if (c->n->op != KIR_OP_FUSED_CONV) return KILN_OK;
  kir_epilogue e;
  if ((s = kir_epilogue_get(c->g, c->n, &e))) return s;
  for (int32_t k = 2; k < c->n->n_inputs; k++) {
    if ((s = same_dtype(c, k))) return s;
    if (!kirk_bcast_into(in_type(c, k), out))
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "epilogue operand %d (%s) does not broadcast to "
                  "the conv's output %s", (int)k, tyf(in_type(c, k), a), tyf(out, b));
  }
  return KILN_OK;
}

static kiln_status conv_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const kir_type *x = in_type(c, 0), *wt = in_type(c, 1);
  char a[TB], b[TB];
  kiln_status s = need_float(c, 0);
  if (!s) s = same_dtype(c, 1);
  if (!s) s = spatial_rank(c, x, &p->w);
  if (s) return s;
  if (wt->rank != x->rank)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "weight %s must have the rank of input %s",
                tyf(wt, a), tyf(x, b));
  if ((s = conv_channels(c, x, wt, p))) return s;
  for (int32_t i = 0; i < p->w.k; i++) {
    p->w.kern[i] = wt->dims[2 + i];
    if (p->w.kern[i] < 1 || p->w.kern[i] > ATTR_MAX)
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "weight %s has kernel dim %d of size %lld",
                  tyf(wt, a), (int)i, (long long)p->w.kern[i]);
  }
  if ((s = win_make(c, x, &p->w, false))) return s;
  *out = (kir_type){x->dtype, x->rank, {x->dims[0], wt->dims[0]}};
  for (int32_t i = 0; i < p->w.k; i++) out->dims[2 + i] = p->w.out[i];
  return conv_extra(c, out);
}

/* Flat offset of (i0, i1, i2) in a [d0, d1, d2] block. */
static int64_t at3(const int64_t *d, int64_t i0, int64_t i1, int64_t i2) {
  return (i0 * d[1] + i1) * d[2] + i2;
}

/* Input position of kernel tap j at output index o along dim i; false in the padding. */
static bool tap(const win *w, int32_t i, int64_t o, int64_t j, int64_t *pos) {
  *pos = o * w->stride[i] - w->pb[i] + j * w->dil[i];
  return *pos >= 0 && *pos < w->in[i];
}

/* Element i of a float tensor (conv is float-only): inlined, as conv is the hot loop of
 * every CNN the interpreter checks. */
static inline double fget(const kir_tensor *t, int64_t i) {
  return t->type.dtype == KILN_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

/* Sum over one group's channels and the kernel for output (n, m, o). */
static double conv_point(const win *w, const kir_tensor *x, const kir_tensor *wt, int64_t xbase,
                         int64_t wbase, int64_t cg, const int64_t *o) {
  int64_t isz = w->in[0] * w->in[1] * w->in[2], ksz = w->kern[0] * w->kern[1] * w->kern[2];
  double acc = 0;
  for (int64_t j0 = 0; j0 < w->kern[0]; j0++)
    for (int64_t j1 = 0; j1 < w->kern[1]; j1++)
      for (int64_t j2 = 0; j2 < w->kern[2]; j2++) {
        int64_t p0, p1, p2;
        if (!tap(w, 0, o[0], j0, &p0) || !tap(w, 1, o[1], j1, &p1) || !tap(w, 2, o[2], j2, &p2))
          continue;
        int64_t xo = at3(w->in, p0, p1, p2), wo = at3(w->kern, j0, j1, j2);
        for (int64_t ci = 0; ci < cg; ci++)
          acc += fget(x, xbase + ci * isz + xo) * fget(wt, wbase + ci * ksz + wo);
      }
  return acc;
}

static void k_conv(const nn_plan *p, const kir_tensor *x, const kir_tensor *wt,
                   const kir_tensor *bias, kir_tensor *o) {
  const win *w = &p->w;
  int64_t N = x->type.dims[0], C = x->type.dims[1], M = wt->type.dims[0];
  int64_t cg = C / p->group, mg = M / p->group, idx = 0;
  int64_t isz = w->in[0] * w->in[1] * w->in[2], ksz = w->kern[0] * w->kern[1] * w->kern[2];
  for (int64_t n = 0; n < N; n++)
    for (int64_t m = 0; m < M; m++) {
      int64_t xbase = (n * C + (m / mg) * cg) * isz, wbase = m * cg * ksz;
      for (int64_t o0 = 0; o0 < w->out[0]; o0++)
        for (int64_t o1 = 0; o1 < w->out[1]; o1++)
          for (int64_t o2 = 0; o2 < w->out[2]; o2++) {
            const int64_t oi[3] = {o0, o1, o2};
            double acc = conv_point(w, x, wt, xbase, wbase, cg, oi);
            kirk_st_f(o, idx++, bias ? acc + ld_f(bias, m) : acc);
          }
    }
}

/* ---------------------------------------------------------------- pools --------- */

/* With a dilation above 1 a window may hold only padding; such a window has no value. */
static kiln_status pool_windows_nonempty(const nn_ctx *c, const win *w) {
  for (int32_t i = 0; i < w->k; i++) {
    if (w->dil[i] == 1) continue; /* pads < kernel: every window reaches the input */
    for (int64_t o = 0; o < w->out[i]; o++) {
      int64_t p0 = o * w->stride[i] - w->pb[i];
      int64_t j = p0 >= 0 ? 0 : (-p0 + w->dil[i] - 1) / w->dil[i];
      if (j < w->kern[i] && p0 + j * w->dil[i] < w->in[i]) continue;
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "window %lld along spatial dim %d covers only "
                  "padding", (long long)o, (int)i);
    }
  }
  return KILN_OK;
}

static kiln_status pool_checks(const nn_ctx *c, const kir_type *x, const win *w) {
  char b[TB];
  for (int32_t i = 0; i < w->k; i++) {
    if (w->in[i] == 0)
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "spatial dim %d of %s is 0: every window would "
                  "be padding", (int)i, tyf(x, b));
    if (w->pb[i] >= w->kern[i] || w->pe[i] >= w->kern[i])
      return kerr(c->g, c->n, KILN_ERR_GRAPH, "attribute 'pads' (%lld, %lld) along spatial dim "
                  "%d must be smaller than the kernel (%lld)", (long long)w->pb[i],
                  (long long)w->pe[i], (int)i, (long long)w->kern[i]);
  }
  return pool_windows_nonempty(c, w);
}

static kiln_status pool_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  const kir_type *x = in_type(c, 0);
  kir_op op = c->n->op;
  kiln_status s = op == KIR_OP_AVG_POOL ? need_float(c, 0) : need_numeric(c, 0);
  if (!s) s = spatial_rank(c, x, &p->w);
  if (!s) s = win_ints(c, "kernel", true, p->w.k, 1, 1, p->w.kern);
  if (!s) s = flag_attr(c, "ceil_mode", 0, &p->ceil_mode);
  if (!s && op == KIR_OP_AVG_POOL) s = flag_attr(c, "count_include_pad", 0, &p->include_pad);
  if (!s && op == KIR_OP_MAX_POOL_INDICES) s = flag_attr(c, "storage_order", 0, &p->col_major);
  if (!s) s = win_make(c, x, &p->w, p->ceil_mode);
  if (!s) s = pool_checks(c, x, &p->w);
  if (s) return s;
  *out = *x;
  if (op == KIR_OP_MAX_POOL_INDICES) out->dtype = KILN_I64;
  for (int32_t i = 0; i < p->w.k; i++) out->dims[2 + i] = p->w.out[i];
  return KILN_OK;
}

/* Spatial index of the row-major offset off (storage_order 1: column-major). */
static int64_t spatial_index(const nn_plan *p, int64_t off) {
  const int64_t *d = p->w.in;
  int64_t q2 = off % d[2], q1 = (off / d[2]) % d[1], q0 = off / (d[1] * d[2]);
  return p->col_major ? q0 + q1 * d[0] + q2 * d[0] * d[1] : off;
}

/* One window of channel block `base`: the max (and its index) or the average. */
typedef struct pool_acc {
  bool any;
  int64_t best, count; /* best: input offset within the channel block */
  double sum;
} pool_acc;

static void pool_take(const kir_tensor *x, int64_t base, int64_t off, bool is_max, pool_acc *a) {
  if (!is_max) a->sum += ld_f(x, base + off);
  else if (!a->any || arg_better(x, base + off, base + a->best, true, false)) a->best = off;
  a->any = true;
  a->count++;
}

/* Taps inside input plus pads (avg_pool's count_include_pad divisor). */
static int64_t padded_taps(const win *w, const int64_t *o) {
  int64_t cnt = 1;
  for (int32_t i = 0; i < 3; i++) {
    int64_t n = 0;
    for (int64_t j = 0; j < w->kern[i]; j++) {
      int64_t q = o[i] * w->stride[i] - w->pb[i] + j * w->dil[i];
      n += q >= -w->pb[i] && q < w->in[i] + w->pe[i];
    }
    cnt *= n;
  }
  return cnt;
}

static void pool_point(const nn_plan *p, kir_op op, const kir_tensor *x, int64_t nc,
                       const int64_t *o, kir_tensor *out, int64_t oi) {
  const win *w = &p->w;
  int64_t isz = w->in[0] * w->in[1] * w->in[2], base = nc * isz;
  pool_acc a = {false, 0, 0, 0};
  for (int64_t j0 = 0; j0 < w->kern[0]; j0++)
    for (int64_t j1 = 0; j1 < w->kern[1]; j1++)
      for (int64_t j2 = 0; j2 < w->kern[2]; j2++) {
        int64_t q[3];
        if (!tap(w, 0, o[0], j0, &q[0]) || !tap(w, 1, o[1], j1, &q[1]) ||
            !tap(w, 2, o[2], j2, &q[2]))
          continue;
        pool_take(x, base, at3(w->in, q[0], q[1], q[2]), op != KIR_OP_AVG_POOL, &a);
      }
  if (op == KIR_OP_AVG_POOL)
    kirk_st_f(out, oi, a.sum / (double)(p->include_pad ? padded_taps(w, o) : a.count));
  else if (op == KIR_OP_MAX_POOL_INDICES) kirk_st_i(out, oi, base + spatial_index(p, a.best));
  else if (is_float(x->type.dtype)) kirk_st_f(out, oi, ld_f(x, base + a.best));
  else kirk_st_i(out, oi, ld_i(x, base + a.best));
}

static void k_pool(const nn_plan *p, kir_op op, const kir_tensor *x, kir_tensor *o) {
  const win *w = &p->w;
  int64_t nc = x->type.dims[0] * x->type.dims[1], idx = 0;
  for (int64_t b = 0; b < nc; b++)
    for (int64_t o0 = 0; o0 < w->out[0]; o0++)
      for (int64_t o1 = 0; o1 < w->out[1]; o1++)
        for (int64_t o2 = 0; o2 < w->out[2]; o2++) {
          const int64_t oi[3] = {o0, o1, o2};
          pool_point(p, op, x, b, oi, o, idx++);
        }
}

/* ---------------------------------------------------------------- batch_norm ---- */

static kiln_status bn_type(const nn_ctx *c, kir_type *out) {
  const kir_type *x = in_type(c, 0);
  char a[TB], b[TB];
  kiln_status s = need_float(c, 0);
  if (s) return s;
  if (x->rank < 2)
    return kerr(c->g, c->n, KILN_ERR_SHAPE, "batch_norm needs x of rank >= 2 ([N, C, ...]), got "
                "%s", tyf(x, a));
  for (int32_t k = 1; k < 5; k++) {
    const kir_type *t = in_type(c, k);
    if ((s = same_dtype(c, k))) return s;
    if (t->rank != 1 || t->dims[0] != x->dims[1])
      return kerr(c->g, c->n, KILN_ERR_SHAPE, "input %d is %s; it must be [C] = [%lld] for x %s",
                  (int)k, tyf(t, a), (long long)x->dims[1], tyf(x, b));
  }
  *out = *x;
  return KILN_OK;
}

static void k_batch_norm(const kir_node *n, const kir_tensor *const *in, kir_tensor *o) {
  const kir_type *t = &o->type;
  double eps = kir_attr_float(n, "epsilon", 1e-5);
  int64_t inner = 1, C = t->dims[1], ne = numel(t);
  for (int32_t d = 2; d < t->rank; d++) inner *= t->dims[d];
  for (int64_t i = 0; i < ne; i++) {
    int64_t ch = (i / inner) % C;
    double v = (ld_f(in[0], i) - ld_f(in[3], ch)) / sqrt(ld_f(in[4], ch) + eps);
    kirk_st_f(o, i, v * ld_f(in[1], ch) + ld_f(in[2], ch));
  }
}

/* ---------------------------------------------------------------- dispatch ------ */

bool kirk_nn_op(kir_op op) {
  switch (op) {
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: case KIR_OP_CONCAT: case KIR_OP_SLICE:
  case KIR_OP_GATHER: case KIR_OP_CAST: case KIR_OP_WHERE: case KIR_OP_CONV:
  case KIR_OP_FUSED_CONV: case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL:
  case KIR_OP_MAX_POOL_INDICES: case KIR_OP_BATCH_NORM: return true;
  KIRK_CASES_NOT_NN: return false;
  }
  return false;
}

static kiln_status nn_type(const nn_ctx *c, nn_plan *p, kir_type *out) {
  switch (c->n->op) {
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: return arg_type(c, p, out);
  case KIR_OP_CONCAT: return concat_type(c, p, out);
  case KIR_OP_SLICE: return slice_type(c, p, out);
  case KIR_OP_GATHER: return gather_type(c, p, out);
  case KIR_OP_CAST: return cast_type(c, out);
  case KIR_OP_WHERE: return where_type(c, out);
  case KIR_OP_CONV: case KIR_OP_FUSED_CONV: return conv_type(c, p, out);
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_MAX_POOL_INDICES:
    return pool_type(c, p, out);
  case KIR_OP_BATCH_NORM: return bn_type(c, out);
  KIRK_CASES_NOT_NN: break;
  }
  return kerr(c->g, c->n, KILN_ERR_INTERNAL, "%s is not an op of kir_kernels_nn.c",
              kir_op_get(c->n->op) ? opname(c->n) : "invalid op");
}

kiln_status kirk_nn_type(kir_graph *g, const kir_node *n, kirk_type_at at, const void *ctx,
                         kir_type *out) {
  nn_ctx c = {g, n, at, ctx};
  nn_plan p;
  memset(&p, 0, sizeof p);
  return nn_type(&c, &p, out);
}

static const kir_type *tensor_type_at(const void *ctx, int32_t k) {
  return &((const kir_tensor *const *)ctx)[k]->type;
}

/* conv, then every epilogue step in place, each rounded to the dtype (as fused_matmul). */
static kiln_status fused_conv_run(const nn_ctx *c, const nn_plan *p, const kir_tensor *const *in,
                                  kir_tensor *o) {
  kir_epilogue e;
  kiln_status s = kir_epilogue_get(c->g, c->n, &e);
  if (s) return s;
  k_conv(p, in[0], in[1], NULL, o);
  for (int32_t i = 0; i < e.n; i++) kirk_epilogue_step(&e, i, in, o);
  return KILN_OK;
}

static kiln_status nn_run(const nn_ctx *c, const nn_plan *p, const kir_tensor *const *in,
                          kir_tensor *o) {
  switch (c->n->op) {
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: k_arg(p, in[0], c->n->op == KIR_OP_ARGMAX, o); break;
  case KIR_OP_CONCAT: k_concat(p, c->n->n_inputs, in, o); break;
  case KIR_OP_SLICE: k_slice(p, in[0], o); break;
  case KIR_OP_GATHER: return k_gather(c, p, in[0], in[1], o);
  case KIR_OP_CAST: k_cast(in[0], o); break;
  case KIR_OP_WHERE: k_where(in, o); break;
  case KIR_OP_CONV: k_conv(p, in[0], in[1], c->n->n_inputs == 3 ? in[2] : NULL, o); break;
  case KIR_OP_FUSED_CONV: return fused_conv_run(c, p, in, o);
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_MAX_POOL_INDICES:
    k_pool(p, c->n->op, in[0], o);
    break;
  case KIR_OP_BATCH_NORM: k_batch_norm(c->n, in, o); break;
  KIRK_CASES_NOT_NN:
    return kerr(c->g, c->n, KILN_ERR_INTERNAL, "no kernel in kir_kernels_nn.c");
  }
  return KILN_OK;
}

kiln_status kirk_nn_eval(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                         kir_tensor **out) {
  nn_ctx c = {g, n, tensor_type_at, in};
  nn_plan p;
  kir_type t;
  memset(&p, 0, sizeof p);
  kiln_status s = nn_type(&c, &p, &t);
  if (s || (s = kirk_check_result(g, n, &t)) || (s = kirk_new_out(g, n, &t, out))) return s;
  if ((s = nn_run(&c, &p, in, *out))) {
    kir_tensor_free(*out);
    *out = NULL;
  }
  return s;
}
