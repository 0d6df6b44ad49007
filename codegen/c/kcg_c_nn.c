/* kcg_c_nn.c — the C text of the ONNX-set kernels that are not elementwise: argmax and
 * argmin, concat, slice, gather, cast, where, batch_norm, max/avg pooling (and the max
 * indices), conv and fused_conv (im2col + cblas GEMM, 1x1 convs straight to GEMM,
 * depthwise convs as a direct loop). Semantics follow ops.def and the reference
 * interpreter; uses ir/ types only and never emits a model string. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kcg_c_internal.h"

#define err kcg_node_err

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }
static bool is_half(kiln_dtype t) { return kcg_is_half(t); }
static const kir_type *in_type(const kir_graph *g, const kir_node *n, int32_t i) {
  return &g->nodes[n->inputs[i]]->type;
}

/* A negative axis counts from the end; false when out of [0, rank). */
static bool norm_axis(int64_t *ax, int32_t rank) {
  if (*ax < 0) *ax += rank;
  return *ax >= 0 && *ax < rank;
}

static int64_t prod(const kir_type *t, int32_t from, int32_t to) {
  int64_t p = 1;
  for (int32_t d = from; d < to; d++) p *= t->dims[d];
  return p;
}

static void void_all(const kir_node *n, kcg_buf *b) {
  for (int32_t i = 0; i < n->n_inputs; i++) kcg_printf(b, "  (void)a%d;\n", (int)i);
  kcg_printf(b, "  (void)y;\n");
}

/* ---------------------------------------------------------------- argmax/argmin - */

/* "v beats best" with NaN as the largest value; last: ties go to the later index. */
static void put_better(kcg_buf *b, bool max, bool last, bool fl) {
  const char *v = max ? "v" : "bv", *w = max ? "bv" : "v"; /* v beats bv  <=>  V > W */
  if (!fl) kcg_printf(b, "%s %s %s", v, last ? ">=" : ">", w);
  else if (last) kcg_printf(b, "isnan(%s) || (!isnan(%s) && %s >= %s)", v, w, v, w);
  else kcg_printf(b, "isnan(%s) ? !isnan(%s) : (!isnan(%s) && %s > %s)", v, w, w, v, w);
}

static kiln_status emit_arg(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *in = in_type(g, n, 0);
  int64_t ax = kir_attr_int(n, "axis", 0);
  if (!norm_axis(&ax, in->rank))
    return err(g, n, KILN_ERR_SHAPE, "axis %lld for rank %d", (long long)kir_attr_int(n, "axis", 0),
               (int)in->rank);
  int64_t outer = prod(in, 0, (int32_t)ax), len = in->dims[ax], inner = prod(in, (int32_t)ax + 1, in->rank);
  if (kir_type_numel(&n->type) != outer * inner)
    return err(g, n, KILN_ERR_SHAPE, "output size is not the input's without axis %lld", (long long)ax);
  if (outer * inner == 0) { void_all(n, b); return KILN_OK; }
  if (len == 0) return err(g, n, KILN_ERR_SHAPE, "%s over an empty axis", kir_op_get(n->op)->name);
  /* f16/bf16 compare as doubles; integers in their own type (unsigned as unsigned). */
  const char *T = kcg_ctype(in->dtype), *V = kcg_vtype(in->dtype);
  const char *LD = is_half(in->dtype) ? kcg_ld(in->dtype) : "", *RP = is_half(in->dtype) ? ")" : "";
  long long L = len, I = inner;
  kcg_put_par(b, outer * len * inner, (const int64_t[]){outer, inner}, 2, false);
  kcg_printf(b, "  for (int64_t o = 0; o < %lld; o++)\n    for (int64_t i = 0; i < %lld; i++) {\n",
             (long long)outer, I);
  kcg_printf(b, "      const %s *x = a0 + o * %lld + i;\n      %s bv = %sx[0]%s;\n      int64_t best = 0;\n",
             T, L * I, V, LD, RP);
  kcg_printf(b, "      for (int64_t j = 1; j < %lld; j++) {\n        const %s v = %sx[j * %lld]%s;\n        if (",
             L, V, LD, I, RP);
  put_better(b, n->op == KIR_OP_ARGMAX, kir_attr_int(n, "select_last_index", 0) != 0, is_float(in->dtype));
  kcg_printf(b, ") { bv = v; best = j; }\n      }\n      y[o * %lld + i] = best;\n    }\n", I);
  return KILN_OK;
}

/* ---------------------------------------------------------------- concat -------- */

static kiln_status emit_concat(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *out = &n->type;
  int64_t ax = kir_attr_int(n, "axis", 0), off = 0;
  if (!norm_axis(&ax, out->rank))
    return err(g, n, KILN_ERR_SHAPE, "axis %lld for rank %d", (long long)kir_attr_int(n, "axis", 0),
               (int)out->rank);
  int64_t outer = prod(out, 0, (int32_t)ax), inner = prod(out, (int32_t)ax + 1, out->rank);
  for (int32_t i = 0; i < n->n_inputs; i++) {
    const kir_type *t = in_type(g, n, i);
    bool ok = t->rank == out->rank;
    for (int32_t d = 0; ok && d < t->rank; d++) ok = d == ax || t->dims[d] == out->dims[d];
    if (!ok) return err(g, n, KILN_ERR_SHAPE, "input %d does not fit the output's shape", (int)i);
    off += t->dims[ax];
  }
  if (off != out->dims[ax]) return err(g, n, KILN_ERR_SHAPE, "inputs do not add up along the axis");
  off = 0;
  for (int32_t i = 0; i < n->n_inputs; i++) {
    int64_t len = in_type(g, n, i)->dims[ax] * inner;
    if (len > 0 && outer > 0)
      kcg_printf(b, "  for (int64_t o = 0; o < %lld; o++)\n    memcpy(y + o * %lld + %lld, a%d + o * %lld, "
                 "sizeof(*y) * %lld);\n", (long long)outer, (long long)(out->dims[ax] * inner),
                 (long long)(off * inner), (int)i, (long long)len, (long long)len);
    else kcg_printf(b, "  (void)a%d;\n", (int)i);
    off += in_type(g, n, i)->dims[ax];
  }
  if (outer == 0 || out->dims[ax] * inner == 0) kcg_printf(b, "  (void)y;\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- slice --------- */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ONNX Slice on one axis of size dim: the first index taken, and how many. */
static int64_t slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = clamp64(start, 0, dim);
    end = clamp64(end, 0, dim);
    *first = start;
    return end > start ? (end - start - 1) / step + 1 : 0;
  }
  start = clamp64(start, 0, dim - 1);
  end = clamp64(end, -1, dim - 1);
  *first = start;
  return start > end ? (start - end - 1) / -step + 1 : 0;
}

static kiln_status emit_slice(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *in = in_type(g, n, 0), *out = &n->type;
  int32_t ns = 0, ne = 0, na = 0, nst = 0;
  const int64_t *st = kir_attr_ints(n, "starts", &ns), *en = kir_attr_ints(n, "ends", &ne);
  const int64_t *axes = kir_attr_ints(n, "axes", &na), *steps = kir_attr_ints(n, "steps", &nst);
  bool has_axes = kir_attr_find(n, "axes") != NULL, has_steps = kir_attr_find(n, "steps") != NULL;
  int64_t first[KILN_MAX_RANK] = {0}, step[KILN_MAX_RANK], ist[KILN_MAX_RANK], ost[KILN_MAX_RANK];
  if (ns != ne || (has_axes && na != ns) || (has_steps && nst != ns) || in->rank != out->rank)
    return err(g, n, KILN_ERR_SHAPE, "starts, ends, axes and steps disagree in length");
  for (int32_t d = 0; d < in->rank; d++) step[d] = 1;
  int64_t cnt[KILN_MAX_RANK];
  for (int32_t d = 0; d < in->rank; d++) cnt[d] = in->dims[d];
  for (int32_t i = 0; i < ns; i++) {
    int64_t ax = has_axes ? axes[i] : i, sp = has_steps ? steps[i] : 1;
    if (!norm_axis(&ax, in->rank) || sp == 0 || sp == INT64_MIN)
      return err(g, n, KILN_ERR_SHAPE, "entry %d: axis %lld or step %lld is not valid", (int)i,
                 (long long)(has_axes ? axes[i] : i), (long long)sp);
    step[ax] = sp;
    cnt[ax] = slice_axis(in->dims[ax], st[i], en[i], sp, &first[ax]);
  }
  for (int32_t d = 0; d < in->rank; d++)
    if (cnt[d] != out->dims[d])
      return err(g, n, KILN_ERR_SHAPE, "axis %d takes %lld elements, the output has %lld", (int)d,
                 (long long)cnt[d], (long long)out->dims[d]);
  if (kir_type_numel(out) == 0) { void_all(n, b); return KILN_OK; }
  kcg_contiguous_strides(in, ist);
  kcg_contiguous_strides(out, ost);
  int64_t base = 0;
  for (int32_t d = 0; d < in->rank; d++) {
    base += first[d] * ist[d];
    ist[d] = out->dims[d] == 1 ? 0 : ist[d] * step[d];
  }
  kcg_put_par(b, kir_type_numel(out), out->dims, out->rank, false);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < out->rank; d++) kcg_put_loop(b, d, out->dims[d]);
  kcg_printf(b, "{\n    y[");
  kcg_put_index(b, out->rank, ost);
  kcg_printf(b, "] = a0[%lld + ", (long long)base);
  kcg_put_index(b, out->rank, ist);
  kcg_printf(b, "];\n  }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- gather -------- */

/* An index out of range returns 1 (the entry reports the step; the runtime names it
 * KILN_RT_ERR_EXEC) before anything is read with it. */
static kiln_status emit_gather(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *data = in_type(g, n, 0), *idx = in_type(g, n, 1);
  int64_t ax = kir_attr_int(n, "axis", 0);
  if (!norm_axis(&ax, data->rank))
    return err(g, n, KILN_ERR_SHAPE, "axis %lld for rank %d", (long long)kir_attr_int(n, "axis", 0),
               (int)data->rank);
  int64_t outer = prod(data, 0, (int32_t)ax), dim = data->dims[ax];
  int64_t inner = prod(data, (int32_t)ax + 1, data->rank), ni = kir_type_numel(idx);
  if (kir_type_numel(&n->type) != outer * ni * inner || n->type.rank != data->rank - 1 + idx->rank)
    return err(g, n, KILN_ERR_SHAPE, "output shape is not data[:axis] + indices + data[axis+1:]");
  if (outer * ni == 0) { void_all(n, b); return KILN_OK; }
  kcg_printf(b, "  for (int64_t o = 0; o < %lld; o++)\n    for (int64_t j = 0; j < %lld; j++) {\n",
             (long long)outer, (long long)ni);
  kcg_printf(b, "      int64_t k = (int64_t)a1[j];\n      if (k < 0) k += %lld;\n"
             "      if (k < 0 || k >= %lld) return 1;\n", (long long)dim, (long long)dim);
  if (inner > 0)
    kcg_printf(b, "      memcpy(y + (o * %lld + j) * %lld, a0 + (o * %lld + k) * %lld, sizeof(*y) * %lld);\n",
               (long long)ni, (long long)inner, (long long)dim, (long long)inner, (long long)inner);
  kcg_printf(b, "    }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- cast ---------- */

/* The cast of `x` (a local of the source's value type: double for f16/bf16) with the
 * interpreter's rules: float -> int truncates toward zero and saturates, NaN -> 0;
 * -> bool is != 0 (NaN -> 1); int -> int wraps modulo 2^bits of the target; -> f16/bf16
 * rounds correctly (a 64-bit integer through kcg_*64_odd, so without double rounding). */
static void put_cast(kcg_buf *b, kiln_dtype from, kiln_dtype to) {
  const char *T = kcg_ctype(to);
  if (to == KILN_BOOL) { kcg_printf(b, "(uint8_t)(x != 0)"); return; }
  if (is_half(to)) {
    const char *src = from == KILN_I64 ? "kcg_i64_odd(x)" : from == KILN_U64 ? "kcg_u64_odd(x)" : "(double)x";
    kcg_printf(b, "%s%s)", kcg_st(to), src);
    return;
  }
  if (is_float(to)) { kcg_printf(b, "(%s)x", T); return; }
  if (!is_float(from)) { /* integer or bool -> integer: modulo 2^bits */
    kcg_printf(b, "(%s)(uint64_t)x", T);
    return;
  }
  int bits = kir_dtype_bits(to);
  if (kir_dtype_is_unsigned(to)) {
    kcg_printf(b, "isnan(x) ? (%s)0 : (double)x <= 0.0 ? (%s)0 : (double)x >= 0x1p%d ? (%s)%s : (%s)x",
               T, T, bits, T, bits == 64 ? "UINT64_MAX" : bits == 32 ? "UINT32_MAX" : bits == 16 ? "UINT16_MAX" : "UINT8_MAX", T);
    return;
  }
  const char *mn = bits == 64 ? "INT64_MIN" : bits == 32 ? "INT32_MIN" : bits == 16 ? "INT16_MIN" : "INT8_MIN";
  const char *mx = bits == 64 ? "INT64_MAX" : bits == 32 ? "INT32_MAX" : bits == 16 ? "INT16_MAX" : "INT8_MAX";
  kcg_printf(b, "isnan(x) ? (%s)0 : (double)x <= -0x1p%d ? (%s)%s : (double)x >= 0x1p%d ? (%s)%s : (%s)x",
             T, bits - 1, T, mn, bits - 1, T, mx, T);
}

static kiln_status emit_cast(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *in = in_type(g, n, 0);
  int64_t numel = kir_type_numel(&n->type);
  if (numel != kir_type_numel(in) || n->type.dtype == KILN_DTYPE_INVALID)
    return err(g, n, KILN_ERR_SHAPE, "cast changes the element count");
  if (numel == 0) { void_all(n, b); return KILN_OK; }
  kcg_put_par(b, numel, &numel, 1, false);
  bool hin = is_half(in->dtype);
  kcg_printf(b, "  for (int64_t i = 0; i < %lld; i++) {\n    const %s x = %sa0[i]%s;\n    y[i] = ",
             (long long)numel, kcg_vtype(in->dtype), hin ? kcg_ld(in->dtype) : "", hin ? ")" : "");
  put_cast(b, in->dtype, n->type.dtype);
  kcg_printf(b, ";\n  }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- where --------- */

static kiln_status emit_where(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *out = &n->type;
  int64_t st[3][KILN_MAX_RANK], ost[KILN_MAX_RANK];
  for (int32_t i = 0; i < 3; i++) {
    if (!kcg_bcast_into(in_type(g, n, i), out))
      return err(g, n, KILN_ERR_SHAPE, "input %d does not broadcast to the output", (int)i);
    kcg_bcast_strides(in_type(g, n, i), out, st[i]);
  }
  if (kir_type_numel(out) == 0) { void_all(n, b); return KILN_OK; }
  kcg_contiguous_strides(out, ost);
  kcg_put_par(b, kir_type_numel(out), out->dims, out->rank, false);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < out->rank; d++) kcg_put_loop(b, d, out->dims[d]);
  kcg_printf(b, "{\n    y[");
  kcg_put_index(b, out->rank, ost);
  kcg_printf(b, "] = a0[");
  kcg_put_index(b, out->rank, st[0]);
  kcg_printf(b, "] ? a1[");
  kcg_put_index(b, out->rank, st[1]);
  kcg_printf(b, "] : a2[");
  kcg_put_index(b, out->rank, st[2]);
  kcg_printf(b, "];\n  }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- batch_norm ---- */

static kiln_status emit_batch_norm(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *x = in_type(g, n, 0);
  if (x->rank < 2 || !kir_type_equal(x, &n->type) || !is_float(x->dtype))
    return err(g, n, KILN_ERR_SHAPE, "batch_norm needs a float [N, C, ...] input");
  int64_t c = x->dims[1], outer = x->dims[0], inner = prod(x, 2, x->rank);
  for (int32_t i = 1; i < 5; i++) {
    const kir_type *p = in_type(g, n, i);
    if (p->rank != 1 || p->dims[0] != c)
      return err(g, n, KILN_ERR_SHAPE, "parameter input %d is not of shape [%lld]", (int)i, (long long)c);
  }
  if (kir_type_numel(x) == 0) { void_all(n, b); return KILN_OK; }
  const char *T = kcg_ctype(x->dtype);
  kcg_put_par(b, kir_type_numel(x), (const int64_t[]){outer, c}, 2, false);
  kcg_printf(b, "  for (int64_t i0 = 0; i0 < %lld; i0++)\n    for (int64_t c = 0; c < %lld; c++) {\n",
             (long long)outer, (long long)c);
  const char *LD = kcg_ld(x->dtype), *ST = kcg_st(x->dtype);
  kcg_printf(b, "      const double m = %sa3[c]), sd = sqrt(%sa4[c]) + ", LD, LD);
  kcg_put_double(b, kir_attr_float(n, "epsilon", 1e-5));
  kcg_printf(b, "), sc = %sa1[c]), bi = %sa2[c]);\n", LD, LD);
  kcg_printf(b, "      const %s *xp = a0 + (i0 * %lld + c) * %lld;\n      %s *yp = y + (i0 * %lld + c) * %lld;\n",
             T, (long long)c, (long long)inner, T, (long long)c, (long long)inner);
  kcg_printf(b, "      for (int64_t i = 0; i < %lld; i++) yp[i] = %s(%sxp[i]) - m) / sd * sc + bi);\n    }\n",
             (long long)inner, ST, LD);
  return KILN_OK;
}

/* ---------------------------------------------------------------- geometry ------ */

/* The spatial dims of a conv or pool, always three: x [N, C, d1..dk] puts its k dims in
 * the last k slots and the first 3 - k are 1 (kernel 1, stride 1, no pads), so one loop
 * nest serves 1-D, 2-D and 3-D. */
typedef struct sp_geom {
  int64_t n, c;
  int64_t in[3], out[3], ker[3], str[3], dil[3], pb[3], pe[3];
} sp_geom;

static int64_t vol(const int64_t *d) { return d[0] * d[1] * d[2]; }

/* attr `name` (k entries, or 2k for pads) into slots; dflt when absent. */
static bool sp_attr(const kir_node *n, const char *name, int32_t k, int32_t per, int64_t dflt,
                    int64_t *lo, int64_t *hi) {
  int32_t cnt = 0;
  const int64_t *v = kir_attr_ints(n, name, &cnt);
  bool present = kir_attr_find(n, name) != NULL;
  if (present && cnt != k * per) return false;
  for (int32_t j = 0; j < 3; j++) {
    int32_t r = j - (3 - k);
    lo[j] = r < 0 || !present ? (per == 2 ? 0 : dflt) : v[r];
    if (hi) hi[j] = r < 0 || !present ? 0 : v[k + r];
  }
  return true;
}

/* Reads x (input 0), kernel dims, the attributes and the node's output dims into p;
 * kernel NULL: a conv's, from w (input 1). NULL, or what is wrong. */
static const char *sp_geom_of(const kir_graph *g, const kir_node *n, const int64_t *kernel,
                              int32_t nk, sp_geom *p) {
  const kir_type *x = in_type(g, n, 0), *o = &n->type;
  int32_t k = x->rank - 2;
  if (k < 1 || k > 3 || o->rank != x->rank || (kernel && nk != k) ||
      (!kernel && in_type(g, n, 1)->rank != x->rank))
    return "needs a [N, C, d1..dk] input, k = 1..3, and a kernel of k dims";
  p->n = x->dims[0];
  p->c = x->dims[1];
  bool ok = sp_attr(n, "strides", k, 1, 1, p->str, NULL) && sp_attr(n, "dilations", k, 1, 1, p->dil, NULL) &&
            sp_attr(n, "pads", k, 2, 0, p->pb, p->pe);
  if (!ok) return "strides, dilations or pads do not have k (pads 2k) entries";
  for (int32_t j = 0; j < 3; j++) {
    int32_t r = j - (3 - k);
    p->in[j] = r < 0 ? 1 : x->dims[2 + r];
    p->out[j] = r < 0 ? 1 : o->dims[2 + r];
    p->ker[j] = r < 0 ? 1 : kernel ? kernel[r] : in_type(g, n, 1)->dims[2 + r];
    if (p->str[j] < 1 || p->dil[j] < 1 || p->pb[j] < 0 || p->pe[j] < 0 || p->ker[j] < 1)
      return "a kernel, stride, dilation or pad is out of range";
  }
  if (o->dims[0] != p->n) return "output batch differs from the input's";
  return NULL;
}

/* "const int64_t xJ = oJ * S - P + kJ * D;" for the three slots. */
static void put_coord(kcg_buf *b, const sp_geom *p, int32_t j, const char *ind) {
  kcg_printf(b, "%sconst int64_t x%d = o%d * %lld - %lld + k%d * %lld;\n", ind, (int)j, (int)j,
             (long long)p->str[j], (long long)p->pb[j], (int)j, (long long)p->dil[j]);
}

/* ---------------------------------------------------------------- pools --------- */

/* The smallest value of dtype t as C (a window with no element keeps it). */
static const char *dtype_lowest(kiln_dtype t) {
  switch (t) {
  case KILN_F32: case KILN_F64: case KILN_F16: case KILN_BF16: return "-INFINITY";
  case KILN_I8: return "INT8_MIN";
  case KILN_I16: return "INT16_MIN";
  case KILN_I32: return "INT32_MIN";
  case KILN_I64: return "INT64_MIN";
  case KILN_U8: case KILN_U16: case KILN_U32: case KILN_U64: case KILN_BOOL:
  case KILN_DTYPE_INVALID:
    break;
  }
  return "0";
}

/* bv and v: doubles for f16/bf16 (exact), else of the element type. */
static void put_pool_init(const kir_node *n, kiln_dtype t, kcg_buf *b) {
  const char *V = kcg_vtype(t);
  if (n->op == KIR_OP_AVG_POOL) kcg_printf(b, "      double s = 0.0; int64_t cnt = 0, cntp = 0;\n");
  else kcg_printf(b, "      %s bv = (%s)%s; int64_t bi = -1;\n", V, V, dtype_lowest(t));
}

/* The window body at (x0, x1, x2). max: NaN wins (and stays); the first max on ties. */
static void put_pool_body(const kir_node *n, const sp_geom *p, kiln_dtype t, kcg_buf *b) {
  const char *in = "x0 >= 0 && x0 < %lld && x1 >= 0 && x1 < %lld && x2 >= 0 && x2 < %lld";
  const char *V = kcg_vtype(t), *LD = is_half(t) ? kcg_ld(t) : "", *RP = is_half(t) ? ")" : "";
  if (n->op == KIR_OP_AVG_POOL) {
    kcg_printf(b, "            cntp += x0 >= -%lld && x0 < %lld && x1 >= -%lld && x1 < %lld && x2 >= -%lld && x2 < %lld;\n",
               (long long)p->pb[0], (long long)(p->in[0] + p->pe[0]), (long long)p->pb[1],
               (long long)(p->in[1] + p->pe[1]), (long long)p->pb[2], (long long)(p->in[2] + p->pe[2]));
  }
  kcg_printf(b, "            if (!(");
  kcg_printf(b, in, (long long)p->in[0], (long long)p->in[1], (long long)p->in[2]);
  kcg_printf(b, ")) continue;\n            const %s v = %sxp[(x0 * %lld + x1) * %lld + x2]%s;\n", V,
             LD, (long long)p->in[1], (long long)p->in[2], RP);
  if (n->op == KIR_OP_AVG_POOL) {
    kcg_printf(b, "            s += (double)v;\n            cnt++;\n");
    return;
  }
  bool colmajor = n->op == KIR_OP_MAX_POOL_INDICES && kir_attr_int(n, "storage_order", 0) != 0;
  kcg_printf(b, "            if (bi < 0 || %s) {\n              bv = v;\n              bi = ",
             is_float(t) ? "(isnan(v) ? !isnan(bv) : v > bv)" : "v > bv");
  if (colmajor) kcg_printf(b, "x0 + %lld * (x1 + %lld * x2);\n", (long long)p->in[0], (long long)p->in[1]);
  else kcg_printf(b, "(x0 * %lld + x1) * %lld + x2;\n", (long long)p->in[1], (long long)p->in[2]);
  kcg_printf(b, "            }\n");
}

static void put_pool_store(const kir_node *n, const sp_geom *p, kiln_dtype t, kcg_buf *b) {
  const char *ST = kcg_st(t);
  kcg_printf(b, "      y[nc * %lld + (o0 * %lld + o1) * %lld + o2] = ", (long long)vol(p->out),
             (long long)p->out[1], (long long)p->out[2]);
  if (n->op == KIR_OP_MAX_POOL) kcg_printf(b, is_half(t) ? "%sbv);\n" : "bv;\n%s", is_half(t) ? ST : "");
  else if (n->op == KIR_OP_MAX_POOL_INDICES)
    kcg_printf(b, "bi < 0 ? -1 : nc * %lld + bi;\n", (long long)vol(p->in));
  else if (kir_attr_int(n, "count_include_pad", 0)) kcg_printf(b, "%ss / (double)cntp); (void)cnt;\n", ST);
  else kcg_printf(b, "%ss / (double)cnt); (void)cntp;\n", ST);
}

static kiln_status emit_pool(kir_graph *g, const kir_node *n, kcg_buf *b) {
  int32_t nk = 0;
  const int64_t *kernel = kir_attr_ints(n, "kernel", &nk);
  sp_geom p;
  const char *why = sp_geom_of(g, n, kernel, nk, &p);
  if (why) return err(g, n, KILN_ERR_SHAPE, "%s", why);
  kiln_dtype t = in_type(g, n, 0)->dtype;
  if (n->type.dims[1] != p.c) return err(g, n, KILN_ERR_SHAPE, "output channels differ from the input's");
  if (n->op == KIR_OP_AVG_POOL && !is_float(t)) return err(g, n, KILN_ERR_TYPE, "avg_pool needs a float dtype");
  if (t == KILN_BOOL) return err(g, n, KILN_ERR_UNSUPPORTED, "%s on bool has no C kernel", kir_op_get(n->op)->name);
  int64_t nc = p.n * p.c;
  if (nc * vol(p.out) == 0) { void_all(n, b); return KILN_OK; }
  kcg_put_par(b, nc * vol(p.out) * vol(p.ker), (const int64_t[]){nc, p.out[0], p.out[1]}, 3, false);
  kcg_printf(b, "  for (int64_t nc = 0; nc < %lld; nc++)\n", (long long)nc);
  kcg_printf(b, "    for (int64_t o0 = 0; o0 < %lld; o0++)\n      for (int64_t o1 = 0; o1 < %lld; o1++)\n"
             "        for (int64_t o2 = 0; o2 < %lld; o2++) {\n", (long long)p.out[0],
             (long long)p.out[1], (long long)p.out[2]);
  kcg_printf(b, "      const %s *xp = a0 + nc * %lld;\n", kcg_ctype(t), (long long)vol(p.in));
  put_pool_init(n, t, b);
  for (int32_t j = 0; j < 3; j++) {
    kcg_printf(b, "      %*sfor (int64_t k%d = 0; k%d < %lld; k%d++) {\n", 2 * j, "", (int)j, (int)j,
               (long long)p.ker[j], (int)j);
    put_coord(b, &p, j, "        ");
  }
  put_pool_body(n, &p, t, b);
  kcg_printf(b, "          }\n        }\n      }\n");
  put_pool_store(n, &p, t, b);
  kcg_printf(b, "    }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- conv ---------- */

typedef enum conv_kind { CONV_GEMM, CONV_POINTWISE, CONV_DEPTHWISE } conv_kind;

typedef struct conv_plan {
  sp_geom p;
  int64_t m, grp, cg, mg, kvol, kk, ovol, ivol;
  conv_kind kind;
} conv_plan;

/* NULL, or what is wrong with n's shapes. */
static const char *conv_plan_of(const kir_graph *g, const kir_node *n, conv_plan *c) {
  const char *why = sp_geom_of(g, n, NULL, 0, &c->p);
  if (why) return why;
  const kir_type *w = in_type(g, n, 1);
  c->m = w->dims[0];
  c->cg = w->dims[1];
  c->grp = kir_attr_int(n, "group", 1);
  if (c->grp < 1 || c->p.c != c->grp * c->cg || c->m % c->grp != 0 || n->type.dims[1] != c->m)
    return "x, w and group do not agree on channels ([N, C, ...], [M, C/group, ...])";
  if (n->op == KIR_OP_CONV && n->n_inputs == 3) {
    const kir_type *bias = in_type(g, n, 2);
    if (bias->rank != 1 || bias->dims[0] != c->m) return "bias is not of shape [M]";
  }
  c->mg = c->m / c->grp;
  c->kvol = vol(c->p.ker);
  c->kk = c->cg * c->kvol;
  c->ovol = vol(c->p.out);
  c->ivol = vol(c->p.in);
  if (c->mg > INT32_MAX || c->ovol > INT32_MAX || c->kk > INT32_MAX) return "a GEMM dimension is above 2^31-1";
  bool unit = c->kvol == 1;
  for (int32_t j = 0; j < 3; j++)
    unit = unit && c->p.str[j] == 1 && c->p.pb[j] == 0 && c->p.out[j] == c->p.in[j];
  c->kind = c->cg == 1 && c->mg == 1 ? CONV_DEPTHWISE : unit ? CONV_POINTWISE : CONV_GEMM;
  return NULL;
}

int64_t kcg_c_step_scratch(const kir_graph *g, const kir_node *n) {
  conv_plan c;
  if ((n->op != KIR_OP_CONV && n->op != KIR_OP_FUSED_CONV) || n->n_inputs < 2 ||
      conv_plan_of(g, n, &c) || c.kind != CONV_GEMM || c.p.n * c.m == 0)
    return 0;
  return c.kk * c.ovol * kiln_dtype_size(n->type.dtype);
}

int64_t kcg_c_scratch_bytes(const kir_graph *g, const kps_memplan *plan) {
  int64_t most = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    /* a conv placed on a GPU runs through cuDNN: no im2col scratch in cpu:0's arena */
    if (!kcg_c_is_step(g->nodes[i], plan) || !kcg_c_on_cpu(g->nodes[i])) continue;
    int64_t s = kcg_c_step_scratch(g, g->nodes[i]);
    if (s > most) most = s;
  }
  return (most + 63) / 64 * 64;
}

int64_t kcg_c_scratch_offset(const kir_graph *g, const kps_memplan *plan) {
  int64_t off = plan->arena_bytes - kcg_c_scratch_bytes(g, plan);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    int32_t a = plan->arena_of ? plan->arena_of[i] : -1;
    bool other = a >= 0 && a < plan->n_arenas && strcmp(plan->arenas[a].device, "cpu:0") != 0;
    if (plan->loc[i] == KPS_LOC_ARENA && !other && plan->offset[i] + plan->size[i] > off) return -1;
  }
  return off; /* the end of cpu:0's arena; values in a GPU's arena are elsewhere */
}

/* The ow loop bounds for kernel column k2: the outputs whose input column
 * ow * S + off (off = k2 * D - P) is inside [0, I). */
static void put_ow_range(kcg_buf *b, const sp_geom *p, const char *ind) {
  long long S = p->str[2], I = p->in[2], O = p->out[2];
  kcg_printf(b, "%sconst int64_t off = k2 * %lld - %lld;\n", ind, (long long)p->dil[2], (long long)p->pb[2]);
  kcg_printf(b, "%sint64_t lo = off >= 0 ? 0 : (-off + %lld) / %lld, hi = %lld - off <= 0 ? 0 : (%lld - off + %lld) / %lld;\n",
             ind, S - 1, S, I, I, S - 1, S);
  kcg_printf(b, "%sif (hi > %lld) hi = %lld;\n%sif (lo > hi) lo = hi;\n", ind, O, O, ind);
}

/* Bias and epilogue over output channels [ch0, ch0 + nch) of image i0, in cache. */
static kiln_status put_conv_post(kir_graph *g, const kir_node *n, const kir_epilogue *e,
                                 const char *ch0, int64_t nch, const char *ind, kcg_buf *b) {
  bool bias = n->op == KIR_OP_CONV && n->n_inputs == 3;
  if (!bias && e->n == 0) return KILN_OK;
  int64_t ost[KILN_MAX_RANK];
  const char *T = kcg_ctype(n->type.dtype);
  kcg_contiguous_strides(&n->type, ost);
  kcg_printf(b, "%sfor (int64_t i1 = %s; i1 < %s + %lld; i1++) ", ind, ch0, ch0, (long long)nch);
  for (int32_t d = 2; d < n->type.rank; d++) kcg_put_loop(b, d, n->type.dims[d]);
  kcg_printf(b, "{\n    const int64_t o = ");
  kcg_put_index(b, n->type.rank, ost);
  kcg_printf(b, ";\n    %s v = y[o];\n", T);
  if (bias) kcg_printf(b, "    v = (%s)(v + a2[i1]);\n", T);
  kiln_status s = kcg_c_put_epilogue(g, n, e, ost, b);
  kcg_printf(b, "    y[o] = v;\n  %s}\n", ind);
  return s;
}

/* col[r][o] = x[c, window r at output o] (0 in the padding), r = (c, k0, k1, k2).
 * Serial on purpose: after an OpenMP loop libgomp's threads spin-wait for a while, and
 * on the GEMM right after they take the cores OpenBLAS's threads need (measured: a
 * ResNet 3x3 conv ran 5x slower on 2 cores with a parallel im2col than without). */
static void put_im2col(const conv_plan *c, const char *T, kcg_buf *b) {
  const sp_geom *p = &c->p;
  kcg_printf(b, "      for (int64_t r = 0; r < %lld; r++) {\n", (long long)c->kk);
  kcg_printf(b, "        const int64_t ci = r / %lld, k0 = r / %lld %% %lld, k1 = r / %lld %% %lld, k2 = r %% %lld;\n",
             (long long)c->kvol, (long long)(p->ker[1] * p->ker[2]), (long long)p->ker[0],
             (long long)p->ker[2], (long long)p->ker[1], (long long)p->ker[2]);
  kcg_printf(b, "        const %s *xc = xg + ci * %lld;\n        %s *cr = col + r * %lld;\n", T,
             (long long)c->ivol, T, (long long)c->ovol);
  kcg_printf(b, "        for (int64_t o0 = 0; o0 < %lld; o0++) {\n", (long long)p->out[0]);
  put_coord(b, p, 0, "          ");
  kcg_printf(b, "          for (int64_t o1 = 0; o1 < %lld; o1++) {\n", (long long)p->out[1]);
  put_coord(b, p, 1, "            ");
  kcg_printf(b, "            %s *restrict cp = cr + (o0 * %lld + o1) * %lld;\n", T, (long long)p->out[1],
             (long long)p->out[2]);
  kcg_printf(b, "            if (x0 < 0 || x0 >= %lld || x1 < 0 || x1 >= %lld) {\n"
             "              memset(cp, 0, sizeof(*cp) * %lld);\n              continue;\n            }\n",
             (long long)p->in[0], (long long)p->in[1], (long long)p->out[2]);
  kcg_printf(b, "            const %s *restrict xr = xc + (x0 * %lld + x1) * %lld;\n", T, (long long)p->in[1],
             (long long)p->in[2]);
  put_ow_range(b, p, "            ");
  kcg_printf(b, "            for (int64_t ow = 0; ow < lo; ow++) cp[ow] = 0;\n"
             "            for (int64_t ow = lo; ow < hi; ow++) cp[ow] = xr[ow * %lld + off];\n"
             "            for (int64_t ow = hi; ow < %lld; ow++) cp[ow] = 0;\n", (long long)p->str[2],
             (long long)p->out[2]);
  kcg_printf(b, "          }\n        }\n      }\n");
}

/* Per image and group: (im2col, or x itself for a 1x1 conv) then one GEMM
 * y[Mg, O] = w[Mg, Cg*K] @ col[Cg*K, O], then bias/epilogue on the block. */
static kiln_status emit_conv_gemm(kir_graph *g, const kir_node *n, const conv_plan *c,
                                  const kir_epilogue *e, kcg_buf *b) {
  bool f32 = n->type.dtype == KILN_F32;
  const char *T = kcg_ctype(n->type.dtype);
  long long Mg = c->mg, O = c->ovol, KK = c->kk;
  kcg_printf(b, "  for (int64_t i0 = 0; i0 < %lld; i0++)\n    for (int64_t gi = 0; gi < %lld; gi++) {\n",
             (long long)c->p.n, (long long)c->grp);
  kcg_printf(b, "      const %s *xg = a0 + (i0 * %lld + gi * %lld) * %lld;\n      %s *yg = y + (i0 * %lld + gi * %lld) * %lld;\n",
             T, (long long)c->p.c, (long long)c->cg, (long long)c->ivol, T, (long long)c->m, Mg, O);
  if (KK == 0) {
    kcg_printf(b, "      (void)xg; (void)a1;\n      memset(yg, 0, sizeof(*yg) * %lld);\n", Mg * O);
  } else {
    if (c->kind == CONV_GEMM) put_im2col(c, T, b);
    kcg_printf(b, "      cblas_%cgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, %lld, %lld, %lld, %s, "
               "a1 + gi * %lld, %lld, %s, %lld, %s, yg, %lld);\n", f32 ? 's' : 'd', Mg, O, KK,
               f32 ? "1.0f" : "1.0", Mg * KK, KK, c->kind == CONV_GEMM ? "col" : "xg", O,
               f32 ? "0.0f" : "0.0", O);
  }
  char ch0[64];
  snprintf(ch0, sizeof ch0, "gi * %lld", Mg);
  kiln_status s = put_conv_post(g, n, e, ch0, Mg, "      ", b);
  kcg_printf(b, "    }\n");
  return s;
}

/* group == C == M: each channel its own 1-channel filter; a direct loop whose inner
 * loop (along the last spatial dim) the compiler vectorizes. */
static kiln_status emit_conv_depthwise(kir_graph *g, const kir_node *n, const conv_plan *c,
                                       const kir_epilogue *e, kcg_buf *b) {
  const sp_geom *p = &c->p;
  const char *T = kcg_ctype(n->type.dtype);
  kcg_put_par(b, p->n * c->m * c->ovol * c->kvol, (const int64_t[]){p->n, c->m}, 2, false);
  kcg_printf(b, "  for (int64_t i0 = 0; i0 < %lld; i0++)\n    for (int64_t gi = 0; gi < %lld; gi++) {\n",
             (long long)p->n, (long long)c->m);
  kcg_printf(b, "      const %s *xc = a0 + (i0 * %lld + gi) * %lld;\n      const %s *wc = a1 + gi * %lld;\n"
             "      %s *yc = y + (i0 * %lld + gi) * %lld;\n", T, (long long)p->c, (long long)c->ivol, T,
             (long long)c->kvol, T, (long long)c->m, (long long)c->ovol);
  kcg_printf(b, "      for (int64_t o0 = 0; o0 < %lld; o0++)\n        for (int64_t o1 = 0; o1 < %lld; o1++) {\n",
             (long long)p->out[0], (long long)p->out[1]);
  kcg_printf(b, "          %s *restrict yr = yc + (o0 * %lld + o1) * %lld;\n          for (int64_t ow = 0; ow < %lld; ow++) yr[ow] = 0;\n",
             T, (long long)p->out[1], (long long)p->out[2], (long long)p->out[2]);
  kcg_printf(b, "          for (int64_t k0 = 0; k0 < %lld; k0++) {\n", (long long)p->ker[0]);
  put_coord(b, p, 0, "            ");
  kcg_printf(b, "            if (x0 < 0 || x0 >= %lld) continue;\n", (long long)p->in[0]);
  kcg_printf(b, "            for (int64_t k1 = 0; k1 < %lld; k1++) {\n", (long long)p->ker[1]);
  put_coord(b, p, 1, "              ");
  kcg_printf(b, "              if (x1 < 0 || x1 >= %lld) continue;\n", (long long)p->in[1]);
  kcg_printf(b, "              const %s *restrict xr = xc + (x0 * %lld + x1) * %lld;\n", T, (long long)p->in[1],
             (long long)p->in[2]);
  kcg_printf(b, "              for (int64_t k2 = 0; k2 < %lld; k2++) {\n", (long long)p->ker[2]);
  kcg_printf(b, "                const %s wv = wc[(k0 * %lld + k1) * %lld + k2];\n", T,
             (long long)p->ker[1], (long long)p->ker[2]);
  put_ow_range(b, p, "                ");
  kcg_printf(b, "                for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * %lld + off];\n",
             (long long)p->str[2]);
  kcg_printf(b, "              }\n            }\n          }\n        }\n");
  kiln_status s = put_conv_post(g, n, e, "gi", 1, "      ", b);
  kcg_printf(b, "    }\n");
  return s;
}

static kiln_status emit_conv(kir_graph *g, const kir_node *n, kcg_buf *b) {
  conv_plan c;
  kir_epilogue e;
  memset(&e, 0, sizeof e);
  const char *why = conv_plan_of(g, n, &c);
  if (why) return err(g, n, KILN_ERR_SHAPE, "%s", why);
  if (!is_float(n->type.dtype)) return err(g, n, KILN_ERR_TYPE, "%s needs f32 or f64", kir_op_get(n->op)->name);
  if (is_half(n->type.dtype))
    return err(g, n, KILN_ERR_UNSUPPORTED, "%s on %s has no C kernel", kir_op_get(n->op)->name,
               kiln_dtype_name(n->type.dtype));
  if (n->op == KIR_OP_FUSED_CONV) {
    kiln_status s = kir_epilogue_get(g, n, &e);
    if (s) return s;
  }
  if (c.p.n * c.m * c.ovol == 0) {
    void_all(n, b);
    if (kcg_c_step_scratch(g, n) > 0) kcg_printf(b, "  (void)col;\n");
    return KILN_OK;
  }
  if (c.kind == CONV_DEPTHWISE) return emit_conv_depthwise(g, n, &c, &e, b);
  return emit_conv_gemm(g, n, &c, &e, b);
}

/* ---------------------------------------------------------------- dispatch ------ */

kiln_status kcg_c_emit_nn(kir_graph *g, const kir_node *n, kcg_buf *b) {
  switch (n->op) {
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: return emit_arg(g, n, b);
  case KIR_OP_CONCAT: return emit_concat(g, n, b);
  case KIR_OP_SLICE: return emit_slice(g, n, b);
  case KIR_OP_GATHER: return emit_gather(g, n, b);
  case KIR_OP_CAST: return emit_cast(g, n, b);
  case KIR_OP_WHERE: return emit_where(g, n, b);
  case KIR_OP_BATCH_NORM: return emit_batch_norm(g, n, b);
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_MAX_POOL_INDICES: return emit_pool(g, n, b);
  case KIR_OP_CONV: case KIR_OP_FUSED_CONV: return emit_conv(g, n, b);
  case KIR_OP_INVALID: case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE:
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: case KIR_OP_ADD: case KIR_OP_SUB:
  case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM: case KIR_OP_MINIMUM: case KIR_OP_NEG:
  case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH: case KIR_OP_SIGMOID:
  case KIR_OP_RELU: case KIR_OP_CLAMP: case KIR_OP_MATMUL: case KIR_OP_ADD_N:
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: case KIR_OP_SOFTMAX:
  case KIR_OP_RESHAPE: case KIR_OP_TRANSPOSE: case KIR_OP_IDENTITY: case KIR_OP_ASSIGN:
  case KIR_OP_GROUP: case KIR_OP_NO_OP: case KIR_OP_FUSED_MATMUL: case KIR_OP_TRANSFER:
  case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_REDUCE: case KIR_OP_FUSED_SOFTMAX:
  case KIR_OP_POW: case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  case KIR_OP_REDUCE_MIN: case KIR_OP_LOG_SOFTMAX: case KIR_OP_COUNT:
    break;
  }
  return err(g, n, KILN_ERR_INTERNAL, "%s is not an nn kernel", kir_op_get(n->op) ? kir_op_get(n->op)->name : "invalid op");
}
