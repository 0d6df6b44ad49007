/* kir_kernels.c — reference kernels: one plain, obviously correct implementation of every
 * op in ops.def (kir_eval_node; the ONNX-set ops that are not elementwise live in
 * kir_kernels_nn.c), the float elementwise semantics (kir_apply_unary/binary),
 * fused-epilogue decoding and the deterministic random generator. The oracle of every
 * backend and the engine of constant folding; speed is not a goal. Depends on libc, libm
 * and the rest of ir/ only. Every kernel re-checks the shapes it indexes with, so a stale
 * or hand-made n->type gives an error, never an out-of-bounds access. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kir.h"
#include "kir_internal.h"
#include "kir_nn.h"

#define kerr kir_node_err

static const char *tfmt(const kir_type *t, char *buf, size_t n) {
  kir_type_format(t, buf, n);
  return buf;
}

/* ---------------------------------------------------------------- elements ------ */

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }
static bool is_int(kiln_dtype t) { return kir_dtype_is_int(t); }
static bool is_uns(kiln_dtype t) { return kir_dtype_is_unsigned(t); }

/* uint64 -> int64 two's complement, without implementation-defined conversions. */
static int64_t wrap64(uint64_t u) {
  return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* a < b, as unsigned for the unsigned dtypes (a u64 >= 2^63 loads as a negative int64). */
static bool lt(int64_t a, int64_t b, bool uns) { return uns ? (uint64_t)a < (uint64_t)b : a < b; }

/* v truncated toward zero and saturated to integer dtype t (NaN -> 0), as get_i gives it. */
static int64_t sat_int(double v, kiln_dtype t) {
  uint64_t buf = 0;
  kir_tensor tmp = {{t, 0, {0}}, &buf};
  kir_tensor_set_f(&tmp, 0, v);
  return kir_tensor_get_i(&tmp, 0);
}

void kirk_st_i(kir_tensor *t, int64_t i, int64_t v) { kir_tensor_set_i(t, i, v); }

/* Stores v rounded to the dtype (integers: truncated, saturated to the dtype). */
void kirk_st_f(kir_tensor *t, int64_t i, double v) { kir_tensor_set_f(t, i, v); }

static double ld_f(const kir_tensor *t, int64_t i) { return kir_tensor_get_f(t, i); }
static int64_t ld_i(const kir_tensor *t, int64_t i) { return kir_tensor_get_i(t, i); }

/* ---------------------------------------------------------------- elementwise --- */

/* Every op that is neither unary nor binary elementwise (for the switches below). */
#define KIR_CASES_NOT_ELEMENTWISE                                                     \
  case KIR_OP_INVALID: case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER:                 \
  case KIR_OP_VARIABLE: case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM:        \
  case KIR_OP_MATMUL: case KIR_OP_ADD_N: case KIR_OP_REDUCE_SUM:                      \
  case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: case KIR_OP_SOFTMAX:               \
  case KIR_OP_RESHAPE: case KIR_OP_TRANSPOSE: case KIR_OP_IDENTITY: case KIR_OP_ASSIGN: \
  case KIR_OP_GROUP: case KIR_OP_NO_OP: case KIR_OP_FUSED_MATMUL: case KIR_OP_TRANSFER:     \
  case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_REDUCE: case KIR_OP_FUSED_SOFTMAX:        \
  case KIR_OP_REDUCE_MIN: case KIR_OP_LOG_SOFTMAX: case KIR_OP_ARGMAX: case KIR_OP_ARGMIN:  \
  case KIR_OP_CONCAT: case KIR_OP_SLICE: case KIR_OP_GATHER: case KIR_OP_CAST:              \
  case KIR_OP_WHERE: case KIR_OP_CONV: case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL:          \
  case KIR_OP_BATCH_NORM: case KIR_OP_FUSED_CONV: case KIR_OP_MAX_POOL_INDICES:             \
  case KIR_OP_COUNT
#define KIR_CASES_BINARY                                                              \
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV:                 \
  case KIR_OP_MAXIMUM: case KIR_OP_MINIMUM: case KIR_OP_POW
#define KIR_CASES_UNARY                                                               \
  case KIR_OP_NEG: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT:                \
  case KIR_OP_TANH: case KIR_OP_SIGMOID: case KIR_OP_RELU: case KIR_OP_CLAMP:          \
  case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU

/* x/2 * (1 + erf(x/sqrt 2)), or (tanh) x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). */
static double gelu(double x, bool tanh_form) {
  if (tanh_form)
    return 0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
}

/* NaN-propagating comparisons; written with < and > so NaN bounds mean "no bound".
 * leaky_relu's alpha and gelu's approximate ride in lo (NaN: the default). */
double kir_apply_unary(kir_op op, double x, double lo, double hi) {
  switch (op) {
  case KIR_OP_NEG: return -x;
  case KIR_OP_EXP: return exp(x);
  case KIR_OP_LOG: return log(x);
  case KIR_OP_SQRT: return sqrt(x);
  case KIR_OP_TANH: return tanh(x);
  case KIR_OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case KIR_OP_RELU: return x < 0 ? 0.0 : x;
  case KIR_OP_CLAMP: return x < lo ? lo : x > hi ? hi : x;
  case KIR_OP_ABS: return fabs(x);
  case KIR_OP_LEAKY_RELU: return x < 0 ? (isnan(lo) ? 0.01 : lo) * x : x;
  case KIR_OP_ERF: return erf(x);
  case KIR_OP_GELU: return gelu(x, lo == 1.0);
  KIR_CASES_BINARY:
  KIR_CASES_NOT_ELEMENTWISE:
    return NAN;
  }
  return NAN;
}

double kir_apply_binary(kir_op op, double a, double b) {
  switch (op) {
  case KIR_OP_ADD: return a + b;
  case KIR_OP_SUB: return a - b;
  case KIR_OP_MUL: return a * b;
  case KIR_OP_DIV: return a / b;
  case KIR_OP_MAXIMUM: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
  case KIR_OP_MINIMUM: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
  case KIR_OP_POW: return pow(a, b);
  KIR_CASES_UNARY:
  KIR_CASES_NOT_ELEMENTWISE:
    return NAN;
  }
  return NAN;
}

/* a^b wrapping; a negative b (signed dtypes only) gives 1/a^|b| truncated: 0 unless a
 * is 1 or -1. */
static int64_t int_pow(int64_t a, int64_t b, bool uns) {
  if (b < 0 && !uns) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  uint64_t r = 1, base = (uint64_t)a, e = (uint64_t)b;
  for (; e; e >>= 1, base *= base)
    if (e & 1) r *= base;
  return wrap64(r);
}

/* Integer binary op in wrapping two's complement (the store truncates to the width);
 * uns: unsigned compare and divide. false: division by zero. */
static bool int_binary(kir_op op, int64_t a, int64_t b, bool uns, int64_t *r) {
  uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
  switch (op) {
  case KIR_OP_ADD: *r = wrap64(ua + ub); return true;
  case KIR_OP_SUB: *r = wrap64(ua - ub); return true;
  case KIR_OP_MUL: *r = wrap64(ua * ub); return true;
  case KIR_OP_DIV:
    if (b == 0) return false;
    if (uns) *r = wrap64(ua / ub);
    else *r = b == -1 ? wrap64(0 - ua) : a / b; /* INT_MIN / -1 wraps to INT_MIN */
    return true;
  case KIR_OP_MAXIMUM: *r = lt(a, b, uns) ? b : a; return true;
  case KIR_OP_MINIMUM: *r = lt(b, a, uns) ? b : a; return true;
  case KIR_OP_POW: *r = int_pow(a, b, uns); return true;
  KIR_CASES_UNARY:
  KIR_CASES_NOT_ELEMENTWISE:
    *r = 0;
    return true;
  }
  *r = 0;
  return true;
}

/* Integer clamp bounds: the smallest integer >= lo and the largest <= hi, saturated to
 * the dtype's range (so x < lo ⇔ x < ceil(lo) for integer x); NaN = no bound. */
static void int_bounds(kiln_dtype t, double lo, double hi, int64_t *ilo, int64_t *ihi) {
  *ilo = sat_int(isnan(lo) ? -INFINITY : ceil(lo), t);
  *ihi = sat_int(isnan(hi) ? INFINITY : floor(hi), t);
}

/* Integer unary op (float-only ops never reach here); relu and abs of an unsigned value
 * are the identity, neg wraps. */
static int64_t int_unary(kir_op op, int64_t x, int64_t lo, int64_t hi, bool uns) {
  switch (op) {
  case KIR_OP_NEG: return wrap64(0 - (uint64_t)x);
  case KIR_OP_RELU: return !uns && x < 0 ? 0 : x;
  case KIR_OP_CLAMP: return lt(x, lo, uns) ? lo : lt(hi, x, uns) ? hi : x;
  case KIR_OP_ABS: return !uns && x < 0 ? wrap64(0 - (uint64_t)x) : x;
  case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH:
  case KIR_OP_SIGMOID: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  KIR_CASES_BINARY:
  KIR_CASES_NOT_ELEMENTWISE:
    return 0;
  }
  return 0;
}

/* ---------------------------------------------------------------- shapes -------- */

static int64_t numel(const kir_type *t) { return kir_type_numel(t); }

/* True when `in` broadcasts to `out` without changing it. */
bool kirk_bcast_into(const kir_type *in, const kir_type *out) {
  if (in->rank > out->rank) return false;
  int32_t off = out->rank - in->rank;
  for (int32_t k = 0; k < in->rank; k++)
    if (in->dims[k] != 1 && in->dims[k] != out->dims[k + off]) return false;
  return true;
}

/* Element strides of `in` seen through shape `out` (0 on broadcast dims). */
void kirk_bcast_strides(const kir_type *in, const kir_type *out, int64_t *st) {
  int64_t s = 1;
  for (int32_t d = out->rank - 1; d >= 0; d--) {
    int32_t k = d - (out->rank - in->rank);
    st[d] = (k < 0 || in->dims[k] == 1) ? 0 : s;
    if (k >= 0) s *= in->dims[k];
  }
}

/* Offset in a broadcast input of the output element with flat index `flat`. */
int64_t kirk_bcast_offset(int64_t flat, const kir_type *out, const int64_t *st) {
  int64_t off = 0;
  for (int32_t d = out->rank - 1; d >= 0; d--) {
    off += (flat % out->dims[d]) * st[d];
    flat /= out->dims[d];
  }
  return off;
}

void kirk_contiguous_strides(const kir_type *t, int64_t *st) {
  int64_t s = 1;
  for (int32_t d = t->rank - 1; d >= 0; d--) {
    st[d] = s;
    s *= t->dims[d];
  }
}

/* A type is usable when its dtype is valid and its byte size computes. */
static bool type_ok(const kir_type *t) {
  return t->dtype > KILN_DTYPE_INVALID && t->dtype < KILN_DTYPE_COUNT && t->rank >= 0 &&
         t->rank <= KILN_MAX_RANK && kir_type_nbytes(t) >= 0;
}

kiln_status kirk_new_out(kir_graph *g, const kir_node *n, const kir_type *t, kir_tensor **o) {
  *o = kir_tensor_new(t);
  if (!*o) return kerr(g, n, KILN_ERR_NOMEM, "out of memory for its result");
  return KILN_OK;
}

/* The node's stored type must be what the kernel computed from its inputs. */
kiln_status kirk_check_result(kir_graph *g, const kir_node *n, const kir_type *want) {
  char a[128], b[128];
  if (kir_type_equal(&n->type, want)) return KILN_OK;
  return kerr(g, n, KILN_ERR_SHAPE, "stored type %s differs from the computed %s",
              tfmt(&n->type, a, sizeof a), tfmt(want, b, sizeof b));
}

/* Arithmetic ops: every input has the node's dtype, never bool, floats when float-only. */
static kiln_status check_arith(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                               int32_t count) {
  kiln_dtype t = n->type.dtype;
  for (int32_t i = 0; i < count; i++)
    if (in[i]->type.dtype != t)
      return kerr(g, n, KILN_ERR_TYPE, "input %d is %s, the node is %s", (int)i,
                  kiln_dtype_name(in[i]->type.dtype), kiln_dtype_name(t));
  if (!is_float(t) && !is_int(t))
    return kerr(g, n, KILN_ERR_TYPE, "%s is not defined on %s", kir_op_get(n->op)->name,
                kiln_dtype_name(t));
  if (!is_float(t) && kir_op_has(n->op, KIR_F_FLOAT_ONLY))
    return kerr(g, n, KILN_ERR_TYPE, "%s needs a float dtype (f16, bf16, f32 or f64), got %s",
                kir_op_get(n->op)->name, kiln_dtype_name(t));
  return KILN_OK;
}

/* Reads an optional ints attribute; wrong kind is a graph error. */
static kiln_status opt_ints(kir_graph *g, const kir_node *n, const char *name,
                            const int64_t **v, int32_t *count, bool *present) {
  const kir_attr *a = kir_attr_find(n, name);
  *present = a != NULL;
  *v = NULL;
  *count = 0;
  if (!a) return KILN_OK;
  if (a->kind != KIR_ATTR_INTS)
    return kerr(g, n, KILN_ERR_GRAPH, "attribute '%s' is %s, expected ints", name,
                kir_attr_kind_name(a->kind));
  *v = a->u.ints.v;
  *count = a->u.ints.n;
  return KILN_OK;
}

/* Normalizes axis (negative counts from the end) into [0, rank). */
static kiln_status norm_axis(kir_graph *g, const kir_node *n, int64_t axis, int32_t rank,
                             int32_t *out) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    return kerr(g, n, KILN_ERR_SHAPE, "axis %lld out of range for rank %d", (long long)axis,
                (int)rank);
  *out = (int32_t)a;
  return KILN_OK;
}

/* ---------------------------------------------------------------- elementwise kernels */

static kiln_status k_binary(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                            kir_tensor **out) {
  char a[128], b[128];
  kir_type bt;
  kiln_status s = check_arith(g, n, in, 2);
  if (s) return s;
  if (!kir_broadcast(&in[0]->type, &in[1]->type, &bt))
    return kerr(g, n, KILN_ERR_SHAPE, "inputs %s and %s do not broadcast",
                tfmt(&in[0]->type, a, sizeof a), tfmt(&in[1]->type, b, sizeof b));
  if ((s = kirk_check_result(g, n, &bt)) || (s = kirk_new_out(g, n, &n->type, out))) return s;
  kir_tensor *o = *out;
  int64_t sa[KILN_MAX_RANK], sb[KILN_MAX_RANK], ne = numel(&o->type);
  kirk_bcast_strides(&in[0]->type, &o->type, sa);
  kirk_bcast_strides(&in[1]->type, &o->type, sb);
  for (int64_t i = 0; i < ne; i++) {
    int64_t ia = kirk_bcast_offset(i, &o->type, sa), ib = kirk_bcast_offset(i, &o->type, sb);
    if (is_float(o->type.dtype)) {
      kirk_st_f(o, i, kir_apply_binary(n->op, ld_f(in[0], ia), ld_f(in[1], ib)));
      continue;
    }
    int64_t r;
    if (!int_binary(n->op, ld_i(in[0], ia), ld_i(in[1], ib), is_uns(o->type.dtype), &r)) {
      kir_tensor_free(o);
      *out = NULL;
      return kerr(g, n, KILN_ERR_EXEC, "integer division by zero at element %lld", (long long)i);
    }
    kirk_st_i(o, i, r);
  }
  return KILN_OK;
}

/* Applies unary op to every element of src into dst (same shape and dtype). */
static void apply_unary_all(kir_op op, const kir_tensor *src, kir_tensor *dst, double lo,
                            double hi) {
  int64_t ne = numel(&dst->type);
  if (is_float(dst->type.dtype)) {
    for (int64_t i = 0; i < ne; i++) kirk_st_f(dst, i, kir_apply_unary(op, ld_f(src, i), lo, hi));
    return;
  }
  int64_t ilo, ihi;
  int_bounds(dst->type.dtype, lo, hi, &ilo, &ihi);
  bool uns = is_uns(dst->type.dtype);
  for (int64_t i = 0; i < ne; i++) kirk_st_i(dst, i, int_unary(op, ld_i(src, i), ilo, ihi, uns));
}

static kiln_status k_unary(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                           kir_tensor **out) {
  kiln_status s = check_arith(g, n, in, 1);
  if (s || (s = kirk_check_result(g, n, &in[0]->type)) || (s = kirk_new_out(g, n, &n->type, out)))
    return s;
  double lo = NAN, hi = NAN;
  if (n->op == KIR_OP_CLAMP) {
    lo = kir_attr_float(n, "min", NAN);
    hi = kir_attr_float(n, "max", NAN);
  } else if (n->op == KIR_OP_LEAKY_RELU) {
    lo = kir_attr_float(n, "alpha", 0.01);
  } else if (n->op == KIR_OP_GELU) {
    lo = (double)kir_attr_int(n, "approximate", 0);
  }
  apply_unary_all(n->op, in[0], *out, lo, hi);
  return KILN_OK;
}

static kiln_status k_add_n(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                           kir_tensor **out) {
  kiln_status s = check_arith(g, n, in, n->n_inputs);
  if (s) return s;
  for (int32_t k = 0; k < n->n_inputs; k++)
    if ((s = kirk_check_result(g, n, &in[k]->type))) return s;
  if ((s = kirk_new_out(g, n, &n->type, out))) return s;
  int64_t ne = numel(&n->type);
  for (int64_t i = 0; i < ne; i++) {
    double f = 0;
    uint64_t u = 0;
    for (int32_t k = 0; k < n->n_inputs; k++) {
      if (is_float(n->type.dtype)) f += ld_f(in[k], i);
      else u += (uint64_t)ld_i(in[k], i);
    }
    if (is_float(n->type.dtype)) kirk_st_f(*out, i, f);
    else kirk_st_i(*out, i, wrap64(u));
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- matmul -------- */

typedef struct mm_plan {
  int64_t m, k, n;
  bool ta, tb;
  kir_type abatch, bbatch, batch;
  kir_type out;
} mm_plan;

static kir_type batch_of(const kir_type *t) {
  kir_type b = {t->dtype, t->rank - 2, {0}};
  for (int32_t d = 0; d < b.rank; d++) b.dims[d] = t->dims[d];
  return b;
}

static kiln_status mm_make_plan(kir_graph *g, const kir_node *n, const kir_type *a,
                                const kir_type *b, mm_plan *p) {
  char x[128], y[128];
  if (a->rank < 2 || b->rank < 2)
    return kerr(g, n, KILN_ERR_SHAPE, "matmul needs rank >= 2, got %s and %s",
                tfmt(a, x, sizeof x), tfmt(b, y, sizeof y));
  p->ta = kir_attr_int(n, "transpose_a", 0) != 0;
  p->tb = kir_attr_int(n, "transpose_b", 0) != 0;
  int64_t am = a->dims[a->rank - 2], ak = a->dims[a->rank - 1];
  int64_t bk = b->dims[b->rank - 2], bn = b->dims[b->rank - 1];
  p->m = p->ta ? ak : am;
  p->k = p->ta ? am : ak;
  p->n = p->tb ? bk : bn;
  int64_t k2 = p->tb ? bn : bk;
  p->abatch = batch_of(a);
  p->bbatch = batch_of(b);
  if (p->k != k2 || !kir_broadcast(&p->abatch, &p->bbatch, &p->batch))
    return kerr(g, n, KILN_ERR_SHAPE, "matmul of %s (transpose_a=%d) and %s (transpose_b=%d) "
                "does not agree", tfmt(a, x, sizeof x), (int)p->ta, tfmt(b, y, sizeof y), (int)p->tb);
  p->out = p->batch;
  p->out.dtype = a->dtype;
  p->out.rank = p->batch.rank + 2;
  p->out.dims[p->batch.rank] = p->m;
  p->out.dims[p->batch.rank + 1] = p->n;
  return KILN_OK;
}

/* o = op(A) @ op(B), double (floats) or wrapping int64 (integers) accumulation. */
static void mm_compute(const mm_plan *p, const kir_tensor *A, const kir_tensor *B, kir_tensor *o) {
  int64_t sa[KILN_MAX_RANK], sb[KILN_MAX_RANK], nb = numel(&p->batch);
  int64_t m = p->m, k = p->k, n = p->n;
  bool fl = is_float(o->type.dtype);
  kirk_bcast_strides(&p->abatch, &p->batch, sa);
  kirk_bcast_strides(&p->bbatch, &p->batch, sb);
  for (int64_t bi = 0; bi < nb; bi++) {
    int64_t ao = kirk_bcast_offset(bi, &p->batch, sa) * m * k;
    int64_t bo = kirk_bcast_offset(bi, &p->batch, sb) * k * n;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double f = 0;
        uint64_t u = 0;
        for (int64_t q = 0; q < k; q++) {
          int64_t ia = ao + (p->ta ? q * m + i : i * k + q);
          int64_t ib = bo + (p->tb ? j * k + q : q * n + j);
          if (fl) f += ld_f(A, ia) * ld_f(B, ib);
          else u += (uint64_t)ld_i(A, ia) * (uint64_t)ld_i(B, ib);
        }
        int64_t oi = (bi * m + i) * n + j;
        if (fl) kirk_st_f(o, oi, f);
        else kirk_st_i(o, oi, wrap64(u));
      }
  }
}

static kiln_status k_matmul(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                            kir_tensor **out) {
  mm_plan p;
  kiln_status s = check_arith(g, n, in, 2);
  if (s || (s = mm_make_plan(g, n, &in[0]->type, &in[1]->type, &p)) ||
      (s = kirk_check_result(g, n, &p.out)) || (s = kirk_new_out(g, n, &n->type, out)))
    return s;
  mm_compute(&p, in[0], in[1], *out);
  return KILN_OK;
}

/* ---------------------------------------------------------------- fused matmul -- */

kiln_status kir_epilogue_get(kir_graph *g, const kir_node *n, kir_epilogue *e) {
  static const char *const names[5] = {"epilogue", "operand", "swap", "clamp_min", "clamp_max"};
  const kir_attr *a[5];
  if (!g) return KILN_ERR_ARGUMENT;
  if (!n || !e) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_epilogue_get: NULL node or result");
  for (int i = 0; i < 5; i++) {
    a[i] = kir_attr_find(n, names[i]);
    kir_attr_kind want = i < 3 ? KIR_ATTR_INTS : KIR_ATTR_FLOATS;
    if (!a[i] || a[i]->kind != want)
      return kerr(g, n, KILN_ERR_GRAPH, "fused epilogue attribute '%s' is missing or not %s",
                  names[i], kir_attr_kind_name(want));
  }
  int32_t cnt = a[0]->u.ints.n;
  /* fused_matmul's and fused_conv's operands follow A and B (x and w); the chain ops'
   * follow x0 */
  int64_t first = n->op == KIR_OP_FUSED_MATMUL || n->op == KIR_OP_FUSED_CONV ? 2 : 1;
  if (a[1]->u.ints.n != cnt || a[2]->u.ints.n != cnt || a[3]->u.floats.n != cnt ||
      a[4]->u.floats.n != cnt)
    return kerr(g, n, KILN_ERR_GRAPH, "fused epilogue counts differ (epilogue %d, operand %d, "
                "swap %d, clamp_min %d, clamp_max %d)", (int)cnt, (int)a[1]->u.ints.n,
                (int)a[2]->u.ints.n, (int)a[3]->u.floats.n, (int)a[4]->u.floats.n);
  for (int32_t s = 0; s < cnt; s++) {
    int64_t op = a[0]->u.ints.v[s], opnd = a[1]->u.ints.v[s], sw = a[2]->u.ints.v[s];
    const kir_op_info *info = op > 0 && op < KIR_OP_COUNT ? kir_op_get((int32_t)op) : NULL;
    if (!info || !(info->flags & KIR_F_ELEMENTWISE))
      return kerr(g, n, KILN_ERR_GRAPH, "epilogue step %d: op %lld is not an elementwise op",
                  (int)s, (long long)op);
    bool binary = (info->flags & KIR_F_BINARY) != 0;
    if (binary && (opnd < first || opnd >= n->n_inputs))
      return kerr(g, n, KILN_ERR_GRAPH, "epilogue step %d (%s): operand %lld not in [%d, %d)",
                  (int)s, info->name, (long long)opnd, (int)first, (int)n->n_inputs);
    if (!binary && opnd != -1)
      return kerr(g, n, KILN_ERR_GRAPH, "epilogue step %d (%s): unary step has operand %lld, "
                  "expected -1", (int)s, info->name, (long long)opnd);
    if (sw != 0 && sw != 1)
      return kerr(g, n, KILN_ERR_GRAPH, "epilogue step %d (%s): swap %lld is not 0 or 1",
                  (int)s, info->name, (long long)sw);
  }
  e->n = cnt;
  e->op = a[0]->u.ints.v;
  e->operand = a[1]->u.ints.v;
  e->swap = a[2]->u.ints.v;
  e->clamp_min = a[3]->u.floats.v;
  e->clamp_max = a[4]->u.floats.v;
  return KILN_OK;
}

/* One epilogue step over o in place. Each element is computed in double and rounded to
 * the dtype after every step, so a fused node gives exactly what the unfused chain of
 * nodes gives in this interpreter. */
void kirk_epilogue_step(const kir_epilogue *e, int32_t s, const kir_tensor *const *in,
                          kir_tensor *o) {
  kir_op op = (kir_op)e->op[s];
  if (e->operand[s] < 0) {
    apply_unary_all(op, o, o, e->clamp_min[s], e->clamp_max[s]);
    return;
  }
  const kir_tensor *c = in[e->operand[s]];
  int64_t st[KILN_MAX_RANK], ne = numel(&o->type);
  kirk_bcast_strides(&c->type, &o->type, st);
  for (int64_t i = 0; i < ne; i++) {
    double acc = ld_f(o, i), v = ld_f(c, kirk_bcast_offset(i, &o->type, st));
    kirk_st_f(o, i, e->swap[s] ? kir_apply_binary(op, v, acc) : kir_apply_binary(op, acc, v));
  }
}

static kiln_status k_fused_matmul(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                                  kir_tensor **out) {
  char a[128], b[128];
  kir_epilogue e;
  mm_plan p;
  kiln_status s = check_arith(g, n, in, n->n_inputs);
  if (s || (s = kir_epilogue_get(g, n, &e)) ||
      (s = mm_make_plan(g, n, &in[0]->type, &in[1]->type, &p)) ||
      (s = kirk_check_result(g, n, &p.out)))
    return s;
  for (int32_t i = 2; i < n->n_inputs; i++)
    if (!kirk_bcast_into(&in[i]->type, &p.out))
      return kerr(g, n, KILN_ERR_SHAPE, "epilogue operand %d (%s) does not broadcast to the "
                  "product %s", (int)i, tfmt(&in[i]->type, a, sizeof a), tfmt(&p.out, b, sizeof b));
  if ((s = kirk_new_out(g, n, &n->type, out))) return s;
  mm_compute(&p, in[0], in[1], *out);
  for (int32_t i = 0; i < e.n; i++) kirk_epilogue_step(&e, i, in, *out);
  return KILN_OK;
}

/* ---------------------------------------------------------------- reductions ---- */

typedef struct red_plan {
  bool red[KILN_MAX_RANK];
  int64_t count; /* elements reduced into each output element */
  kir_type out;
} red_plan;

static kiln_status red_make_plan(kir_graph *g, const kir_node *n, kir_op kind, const kir_type *in,
                                 red_plan *p) {
  const int64_t *axes;
  int32_t cnt;
  bool present;
  kiln_status s = opt_ints(g, n, "axes", &axes, &cnt, &present);
  if (s) return s;
  memset(p->red, 0, sizeof p->red);
  for (int32_t d = 0; d < in->rank && !present; d++) p->red[d] = true;
  for (int32_t i = 0; i < cnt; i++) {
    int32_t ax = 0;
    if ((s = norm_axis(g, n, axes[i], in->rank, &ax))) return s;
    if (p->red[ax]) return kerr(g, n, KILN_ERR_SHAPE, "axis %lld appears twice", (long long)axes[i]);
    p->red[ax] = true;
  }
  bool keep = kir_attr_int(n, "keep_dims", 0) != 0;
  p->count = 1;
  p->out = (kir_type){in->dtype, 0, {0}};
  for (int32_t d = 0; d < in->rank; d++) {
    if (p->red[d]) p->count *= in->dims[d];
    if (!p->red[d] || keep) p->out.dims[p->out.rank++] = p->red[d] ? 1 : in->dims[d];
  }
  if (p->count == 0 && (kind == KIR_OP_REDUCE_MAX || kind == KIR_OP_REDUCE_MIN))
    return kerr(g, n, KILN_ERR_SHAPE, "%s over an empty axis", kir_op_get(kind)->name);
  return KILN_OK;
}

/* Input offsets of the `count` reduced elements behind output element o, in input order. */
typedef struct red_iter {
  int32_t nk, nr;
  int32_t kept[KILN_MAX_RANK], reduced[KILN_MAX_RANK];
  int64_t st[KILN_MAX_RANK];
  const kir_type *in;
} red_iter;

static int64_t decompose(int64_t flat, const int32_t *axes, int32_t na, const red_iter *it) {
  int64_t off = 0;
  for (int32_t i = na - 1; i >= 0; i--) {
    int64_t dim = it->in->dims[axes[i]];
    off += (flat % dim) * it->st[axes[i]];
    flat /= dim;
  }
  return off;
}

static double red_float(kir_op op, const kir_tensor *x, const red_iter *it, int64_t base,
                        int64_t count) {
  double acc = op == KIR_OP_REDUCE_MAX ? -INFINITY : op == KIR_OP_REDUCE_MIN ? INFINITY : 0.0;
  for (int64_t r = 0; r < count; r++) {
    double v = ld_f(x, base + decompose(r, it->reduced, it->nr, it));
    if (op == KIR_OP_REDUCE_MAX) acc = kir_apply_binary(KIR_OP_MAXIMUM, acc, v);
    else if (op == KIR_OP_REDUCE_MIN) acc = kir_apply_binary(KIR_OP_MINIMUM, acc, v);
    else acc += v;
  }
  return op == KIR_OP_REDUCE_MEAN ? acc / (double)count : acc;
}

static int64_t red_int(kir_op op, const kir_tensor *x, const red_iter *it, int64_t base,
                       int64_t count) {
  uint64_t sum = 0;
  bool uns = is_uns(x->type.dtype);
  int64_t mx = 0, mn = 0; /* count >= 1 for max and min (checked by the plan) */
  for (int64_t r = 0; r < count; r++) {
    int64_t v = ld_i(x, base + decompose(r, it->reduced, it->nr, it));
    sum += (uint64_t)v;
    if (r == 0 || lt(mx, v, uns)) mx = v;
    if (r == 0 || lt(v, mn, uns)) mn = v;
  }
  return op == KIR_OP_REDUCE_MAX ? mx : op == KIR_OP_REDUCE_MIN ? mn : wrap64(sum);
}

/* out = reduction `kind` of x as planned by p. */
static void reduce_into(kir_op kind, const kir_tensor *x, const red_plan *p, kir_tensor *out) {
  red_iter it = {0, 0, {0}, {0}, {0}, &x->type};
  kirk_contiguous_strides(&x->type, it.st);
  for (int32_t d = 0; d < x->type.rank; d++) {
    if (p->red[d]) it.reduced[it.nr++] = d;
    else it.kept[it.nk++] = d;
  }
  int64_t no = numel(&p->out);
  for (int64_t o = 0; o < no; o++) {
    int64_t base = decompose(o, it.kept, it.nk, &it);
    if (is_float(out->type.dtype)) kirk_st_f(out, o, red_float(kind, x, &it, base, p->count));
    else kirk_st_i(out, o, red_int(kind, x, &it, base, p->count));
  }
}

static kiln_status k_reduce(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                            kir_tensor **out) {
  red_plan p;
  kiln_status s = check_arith(g, n, in, 1);
  if (s || (s = red_make_plan(g, n, n->op, &in[0]->type, &p)) ||
      (s = kirk_check_result(g, n, &p.out)) ||
      (s = kirk_new_out(g, n, &n->type, out)))
    return s;
  reduce_into(n->op, in[0], &p, *out);
  return KILN_OK;
}

/* ---------------------------------------------------------------- softmax ------- */

/* Stable softmax (or, log: x - max - log(sum exp(x - max))) of the `len` elements at
 * base, base+stride, ... */
static void softmax_line(const kir_tensor *x, kir_tensor *o, int64_t base, int64_t len,
                         int64_t stride, bool log_form) {
  double mx = -INFINITY, sum = 0;
  for (int64_t l = 0; l < len; l++) mx = kir_apply_binary(KIR_OP_MAXIMUM, mx, ld_f(x, base + l * stride));
  for (int64_t l = 0; l < len; l++) sum += exp(ld_f(x, base + l * stride) - mx);
  for (int64_t l = 0; l < len; l++) {
    double v = ld_f(x, base + l * stride) - mx;
    kirk_st_f(o, base + l * stride, log_form ? v - log(sum) : exp(v) / sum);
  }
}

/* o = softmax of x over axis ax (o may be x: each line is read before it is written). */
static void softmax_all(const kir_tensor *x, kir_tensor *y, int32_t ax, bool log_form) {
  const kir_type *t = &x->type;
  int64_t outer = 1, inner = 1, len = t->dims[ax];
  for (int32_t d = 0; d < ax; d++) outer *= t->dims[d];
  for (int32_t d = ax + 1; d < t->rank; d++) inner *= t->dims[d];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++)
      softmax_line(x, y, o * len * inner + i, len, inner, log_form);
}

static kiln_status k_softmax(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                             kir_tensor **out) {
  const kir_type *t = &in[0]->type;
  int32_t ax = 0;
  kiln_status s = check_arith(g, n, in, 1);
  if (s || (s = norm_axis(g, n, kir_attr_int(n, "axis", -1), t->rank, &ax)) ||
      (s = kirk_check_result(g, n, t)) || (s = kirk_new_out(g, n, &n->type, out)))
    return s;
  softmax_all(in[0], *out, ax, n->op == KIR_OP_LOG_SOFTMAX);
  return KILN_OK;
}

/* ---------------------------------------------------------------- fused chains -- */

/* The chain's shape: the broadcast of every input. */
static kiln_status chain_shape(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                               kir_type *t) {
  char a[128], b[128];
  *t = in[0]->type;
  for (int32_t i = 1; i < n->n_inputs; i++) {
    kir_type bt;
    if (!kir_broadcast(t, &in[i]->type, &bt))
      return kerr(g, n, KILN_ERR_SHAPE, "input %d %s does not broadcast with %s", (int)i,
                  tfmt(&in[i]->type, a, sizeof a), tfmt(t, b, sizeof b));
    *t = bt;
  }
  return KILN_OK;
}

/* *o = x0 broadcast to t, then every epilogue step, each rounded to the dtype: what the
 * unfused chain of nodes computes. */
static kiln_status chain_eval(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                              const kir_epilogue *e, const kir_type *t, kir_tensor **o) {
  kiln_status s = kirk_new_out(g, n, t, o);
  if (s) return s;
  int64_t st[KILN_MAX_RANK], ne = numel(t);
  kirk_bcast_strides(&in[0]->type, t, st);
  for (int64_t i = 0; i < ne; i++) kirk_st_f(*o, i, ld_f(in[0], kirk_bcast_offset(i, t, st)));
  for (int32_t k = 0; k < e->n; k++) kirk_epilogue_step(e, k, in, *o);
  return KILN_OK;
}

/* The reduction a fused_reduce performs: its "reduce" attribute, a reduce op's number. */
static kiln_status fused_reduce_kind(kir_graph *g, const kir_node *n, kir_op *kind) {
  int64_t r = kir_attr_int(n, "reduce", 0);
  if (r != KIR_OP_REDUCE_SUM && r != KIR_OP_REDUCE_MEAN && r != KIR_OP_REDUCE_MAX &&
      r != KIR_OP_REDUCE_MIN)
    return kerr(g, n, KILN_ERR_GRAPH, "attribute 'reduce' (%lld) is not reduce_sum, "
                "reduce_mean, reduce_max or reduce_min", (long long)r);
  *kind = (kir_op)r;
  return KILN_OK;
}

/* The chain's value, then (fused_reduce) a reduction or (fused_softmax) a softmax of it. */
static kiln_status chain_finish(kir_graph *g, const kir_node *n, kir_tensor *v, kir_tensor **out) {
  kiln_status s = KILN_OK;
  if (n->op == KIR_OP_FUSED_SOFTMAX) {
    int32_t ax = 0;
    if ((s = norm_axis(g, n, kir_attr_int(n, "axis", -1), v->type.rank, &ax))) return s;
    softmax_all(v, v, ax, false);
  }
  if (n->op != KIR_OP_FUSED_REDUCE) {
    *out = v;
    return KILN_OK;
  }
  kir_op kind = KIR_OP_REDUCE_SUM;
  red_plan p;
  if ((s = fused_reduce_kind(g, n, &kind)) || (s = red_make_plan(g, n, kind, &v->type, &p)) ||
      (s = kirk_check_result(g, n, &p.out)) || (s = kirk_new_out(g, n, &n->type, out)))
    return s;
  reduce_into(kind, v, &p, *out);
  return KILN_OK;
}

static kiln_status k_fused_chain(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                                 kir_tensor **out) {
  kir_epilogue e;
  kir_type t;
  kir_tensor *v = NULL;
  kiln_status s = check_arith(g, n, in, n->n_inputs);
  if (s || (s = kir_epilogue_get(g, n, &e)) || (s = chain_shape(g, n, in, &t))) return s;
  t.dtype = n->type.dtype;
  if (n->op != KIR_OP_FUSED_REDUCE && (s = kirk_check_result(g, n, &t))) return s;
  if ((s = chain_eval(g, n, in, &e, &t, &v))) return s;
  s = chain_finish(g, n, v, out);
  if (s || *out != v) kir_tensor_free(v);
  return s;
}

/* ---------------------------------------------------------------- shape ops ----- */

static kiln_status check_same_dtype(kir_graph *g, const kir_node *n, const kir_tensor *x) {
  if (x->type.dtype == n->type.dtype) return KILN_OK;
  return kerr(g, n, KILN_ERR_TYPE, "input is %s, the node is %s", kiln_dtype_name(x->type.dtype),
              kiln_dtype_name(n->type.dtype));
}

/* Copies the bytes of x into a new tensor of the node's type (same element count). */
static kiln_status copy_as(kir_graph *g, const kir_node *n, const kir_tensor *x, kir_tensor **out) {
  kiln_status s = kirk_new_out(g, n, &n->type, out);
  if (s) return s;
  int64_t nb = kir_type_nbytes(&n->type);
  if (nb > 0) memcpy((*out)->data, x->data, (size_t)nb);
  return KILN_OK;
}

/* Resolves the reshape attribute (one -1 allowed) against the input's element count. */
static kiln_status reshape_target(kir_graph *g, const kir_node *n, const kir_type *in, kir_type *t) {
  const int64_t *v;
  int32_t cnt;
  bool present;
  kiln_status s = opt_ints(g, n, "shape", &v, &cnt, &present);
  if (s) return s;
  if (!present || cnt > KILN_MAX_RANK)
    return kerr(g, n, KILN_ERR_GRAPH, "attribute 'shape' is missing or longer than %d", KILN_MAX_RANK);
  int32_t hole = -1;
  int64_t known = 1, total = numel(in);
  *t = (kir_type){in->dtype, cnt, {0}};
  for (int32_t i = 0; i < cnt; i++) {
    t->dims[i] = v[i];
    if (v[i] == -1 && hole < 0) { hole = i; continue; }
    if (v[i] < 0 || (v[i] > 0 && known > INT64_MAX / v[i]))
      return kerr(g, n, KILN_ERR_SHAPE, "bad reshape dim %lld", (long long)v[i]);
    known *= v[i];
  }
  if (hole >= 0 && known > 0 && total % known == 0) t->dims[hole] = total / known;
  if ((hole >= 0 && (known == 0 || total % known != 0)) || (hole < 0 && known != total))
    return kerr(g, n, KILN_ERR_SHAPE, "cannot reshape %lld elements", (long long)total);
  return KILN_OK;
}

static kiln_status k_reshape(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                             kir_tensor **out) {
  kir_type t;
  kiln_status s = check_same_dtype(g, n, in[0]);
  if (s || (s = reshape_target(g, n, &in[0]->type, &t)) || (s = kirk_check_result(g, n, &t)))
    return s;
  return copy_as(g, n, in[0], out);
}

static kiln_status k_identity(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                              kir_tensor **out) {
  kiln_status s = kirk_check_result(g, n, &in[0]->type);
  return s ? s : copy_as(g, n, in[0], out);
}

static kiln_status transpose_perm(kir_graph *g, const kir_node *n, int32_t rank, int32_t *perm) {
  const int64_t *v;
  int32_t cnt;
  bool present, seen[KILN_MAX_RANK] = {false};
  kiln_status s = opt_ints(g, n, "perm", &v, &cnt, &present);
  if (s) return s;
  if (present && cnt != rank)
    return kerr(g, n, KILN_ERR_SHAPE, "perm has %d entries for rank %d", (int)cnt, (int)rank);
  for (int32_t i = 0; i < rank; i++) {
    int64_t p = present ? v[i] : rank - 1 - i;
    if (p < 0 || p >= rank || seen[p])
      return kerr(g, n, KILN_ERR_SHAPE, "perm entry %d (%lld) is not a permutation of 0..%d",
                  (int)i, (long long)p, (int)rank - 1);
    seen[p] = true;
    perm[i] = (int32_t)p;
  }
  return KILN_OK;
}

static kiln_status k_transpose(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                               kir_tensor **out) {
  const kir_type *t = &in[0]->type;
  int32_t perm[KILN_MAX_RANK];
  kir_type ot = {t->dtype, t->rank, {0}};
  kiln_status s = check_same_dtype(g, n, in[0]);
  if (s || (s = transpose_perm(g, n, t->rank, perm))) return s;
  for (int32_t i = 0; i < t->rank; i++) ot.dims[i] = t->dims[perm[i]];
  if ((s = kirk_check_result(g, n, &ot)) || (s = kirk_new_out(g, n, &n->type, out))) return s;
  int64_t ist[KILN_MAX_RANK], ne = numel(&ot);
  size_t es = kiln_dtype_size(t->dtype);
  kirk_contiguous_strides(t, ist);
  for (int64_t o = 0; o < ne; o++) {
    int64_t rem = o, off = 0;
    for (int32_t d = ot.rank - 1; d >= 0; d--) {
      off += (rem % ot.dims[d]) * ist[perm[d]];
      rem /= ot.dims[d];
    }
    memcpy((char *)(*out)->data + o * (int64_t)es, (const char *)in[0]->data + off * (int64_t)es, es);
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- sources ------- */

static kiln_status k_constant(kir_graph *g, const kir_node *n, kir_tensor **out) {
  const kir_tensor *v = kir_attr_tensor(n, "value");
  if (!v) return kerr(g, n, KILN_ERR_GRAPH, "constant has no tensor attribute 'value'");
  if (!type_ok(&v->type)) return kerr(g, n, KILN_ERR_GRAPH, "constant value has an invalid type");
  kiln_status s = kirk_check_result(g, n, &v->type);
  if (s) return s;
  *out = kir_tensor_clone(v);
  return *out ? KILN_OK : kerr(g, n, KILN_ERR_NOMEM, "out of memory for its result");
}

/* kir_random_fill — the algorithm, which every stage must reproduce bit for bit:
 *   state = seed; next() = splitmix64: state += 0x9E3779B97F4A7C15;
 *     z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) *
 *     0x94D049BB133111EB; return z ^ (z >> 31)      (all arithmetic mod 2^64)
 *   u() = (next() >> 11) * 2^-53                      (uniform double in [0, 1))
 *   random_uniform: element i = a + (b - a) * u()     (a = low, b = high), in order.
 *   random_normal: elements in pairs (2j, 2j+1): u1 = u(), u2 = u(),
 *     r = sqrt(-2 * log(1 - u1)), t = 2 * pi * u2 (pi = 3.14159265358979323846),
 *     element 2j = a + b * r * cos(t), element 2j+1 = a + b * r * sin(t) (a = mean,
 *     b = stddev); an odd last element uses only the cos half of its pair.
 *   Values are computed in double and rounded to the dtype (f32: round to nearest, so an
 *   f32 uniform may equal b when the interval is wide); integer dtypes get the value
 *   truncated toward zero. The libm functions log/sqrt/cos/sin are assumed correctly
 *   rounded to within 1 ulp in double, which f32 rounding hides. */
static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1.0p-53; }

void kir_random_fill(kir_tensor *t, kir_op op, uint64_t seed, double a, double b) {
  if (!t || !type_ok(&t->type) || (op != KIR_OP_RANDOM_NORMAL && op != KIR_OP_RANDOM_UNIFORM))
    return; /* any other op: t is left as it is */
  int64_t ne = numel(&t->type);
  uint64_t state = seed;
  if (op == KIR_OP_RANDOM_UNIFORM) {
    for (int64_t i = 0; i < ne; i++) kirk_st_f(t, i, a + (b - a) * uniform01(&state));
    return;
  }
  for (int64_t i = 0; i < ne; i += 2) {
    double u1 = uniform01(&state), u2 = uniform01(&state);
    double r = sqrt(-2.0 * log(1.0 - u1)), th = 2.0 * 3.14159265358979323846 * u2;
    kirk_st_f(t, i, a + b * r * cos(th));
    if (i + 1 < ne) kirk_st_f(t, i + 1, a + b * r * sin(th));
  }
}

static kiln_status k_random(kir_graph *g, const kir_node *n, kir_tensor **out) {
  if (!is_float(n->type.dtype))
    return kerr(g, n, KILN_ERR_TYPE, "%s needs a float dtype (f16, bf16, f32 or f64), got %s",
                kir_op_get(n->op)->name, kiln_dtype_name(n->type.dtype));
  kiln_status s = kirk_new_out(g, n, &n->type, out);
  if (s) return s;
  bool normal = n->op == KIR_OP_RANDOM_NORMAL;
  double a = kir_attr_float(n, normal ? "mean" : "low", 0.0);
  double b = kir_attr_float(n, normal ? "stddev" : "high", 1.0);
  kir_random_fill(*out, n->op, (uint64_t)kir_attr_int(n, "seed", 0), a, b);
  return KILN_OK;
}

/* ---------------------------------------------------------------- dispatch ------ */

static kiln_status stateful(kir_graph *g, const kir_node *n) {
  return kerr(g, n, KILN_ERR_UNSUPPORTED, "%s has no value outside a run with feeds and state",
              kir_op_get(n->op)->name);
}

static kiln_status dispatch(kir_graph *g, const kir_node *n, const kir_tensor *const *in,
                            kir_tensor **out) {
  switch (n->op) {
  case KIR_OP_CONSTANT: return k_constant(g, n, out);
  case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE: case KIR_OP_ASSIGN: return stateful(g, n);
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: return k_random(g, n, out);
  KIR_CASES_BINARY: return k_binary(g, n, in, out);
  KIR_CASES_UNARY: return k_unary(g, n, in, out);
  case KIR_OP_MATMUL: return k_matmul(g, n, in, out);
  case KIR_OP_ADD_N: return k_add_n(g, n, in, out);
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX:
  case KIR_OP_REDUCE_MIN:
    return k_reduce(g, n, in, out);
  case KIR_OP_SOFTMAX: return k_softmax(g, n, in, out);
  case KIR_OP_RESHAPE: return k_reshape(g, n, in, out);
  case KIR_OP_TRANSPOSE: return k_transpose(g, n, in, out);
  case KIR_OP_IDENTITY:
  case KIR_OP_TRANSFER: return k_identity(g, n, in, out);
  case KIR_OP_GROUP: case KIR_OP_NO_OP: *out = NULL; return KILN_OK;
  case KIR_OP_FUSED_MATMUL: return k_fused_matmul(g, n, in, out);
  case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_REDUCE: case KIR_OP_FUSED_SOFTMAX:
    return k_fused_chain(g, n, in, out);
  case KIR_OP_LOG_SOFTMAX: return k_softmax(g, n, in, out);
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: case KIR_OP_CONCAT: case KIR_OP_SLICE:
  case KIR_OP_GATHER: case KIR_OP_CAST: case KIR_OP_WHERE: case KIR_OP_CONV:
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_BATCH_NORM: case KIR_OP_FUSED_CONV:
  case KIR_OP_MAX_POOL_INDICES: return kirk_nn_eval(g, n, in, out);
  case KIR_OP_INVALID: case KIR_OP_COUNT: break;
  }
  return kerr(g, n, KILN_ERR_GRAPH, "invalid op %d", (int)n->op);
}

/* Arity, input presence and types, and the node's own type, before any kernel runs. */
static kiln_status check_node(kir_graph *g, const kir_node *n, const kir_tensor *const *in) {
  const kir_op_info *info = kir_op_get(n->op);
  if (!info) return kerr(g, n, KILN_ERR_GRAPH, "invalid op %d", (int)n->op);
  if (n->n_inputs < info->min_inputs || (info->max_inputs >= 0 && n->n_inputs > info->max_inputs))
    return kerr(g, n, KILN_ERR_GRAPH, "%s has %d inputs", info->name, (int)n->n_inputs);
  if (n->op == KIR_OP_PLACEHOLDER || n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
    return stateful(g, n);
  if (n->n_inputs > 0 && !in && !(info->flags & KIR_F_NO_OUTPUT))
    return kerr(g, n, KILN_ERR_ARGUMENT, "no input values given");
  for (int32_t i = 0; i < n->n_inputs; i++) {
    if (info->flags & KIR_F_NO_OUTPUT) break; /* group: inputs only order it */
    if (!in[i]) return kerr(g, n, KILN_ERR_GRAPH, "input %d has no value", (int)i);
    if (!type_ok(&in[i]->type) || (kir_type_nbytes(&in[i]->type) > 0 && !in[i]->data))
      return kerr(g, n, KILN_ERR_GRAPH, "input %d has an invalid tensor", (int)i);
  }
  if (!(info->flags & KIR_F_NO_OUTPUT) && !type_ok(&n->type))
    return kerr(g, n, KILN_ERR_GRAPH, "has no valid inferred type (run shape inference)");
  return KILN_OK;
}

kiln_status kir_eval_node(kir_graph *g, const kir_node *n, const kir_tensor *const *inputs,
                          kir_tensor **out) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!n || !out) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_eval_node: NULL node or output");
  kir_tensor *o = NULL;
  kiln_status s = check_node(g, n, inputs);
  if (s || (s = dispatch(g, n, inputs, &o))) return s;
  *out = o;
  return KILN_OK;
}
