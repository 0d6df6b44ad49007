/* kcg_c_kernels.c — the C text of one kernel function per step: elementwise ops with
 * broadcasting, matmul (cblas for floats, loops for integers), fused matmul epilogues,
 * fused elementwise chains (one loop; also as the prologue of fused reductions and
 * softmax), reductions, softmax, transpose, reshape/identity, add_n. Semantics follow the reference
 * interpreter (ir/kir_kernels.c). Uses ir/ types only; never emits a model string. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kcg_c_internal.h"

/* ---------------------------------------------------------------- helpers ------- */


static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }
static bool is_int(kiln_dtype t) { return kir_dtype_is_int(t); }
static bool is_uns(kiln_dtype t) { return kir_dtype_is_unsigned(t); }
static bool is_half(kiln_dtype t) { return t == KILN_F16 || t == KILN_BF16; }
/* The unsigned type integer arithmetic wraps in (at least 32 bits: narrower operands
 * would promote to int, where a product can overflow). */
static const char *utype(kiln_dtype t) { return kir_dtype_bits(t) == 64 ? "uint64_t" : "uint32_t"; }
/* Suffix of <math.h> functions in the dtype's precision: expf / exp. */
static const char *fsfx(kiln_dtype t) { return t == KILN_F32 ? "f" : ""; }

const char *kcg_ctype(kiln_dtype t) {
  switch (t) {
  case KILN_F32: return "float";
  case KILN_F64: return "double";
  case KILN_I32: return "int32_t";
  case KILN_I64: return "int64_t";
  case KILN_BOOL: return "uint8_t";
  case KILN_U8: return "uint8_t";
  case KILN_I8: return "int8_t";
  case KILN_U16: return "uint16_t";
  case KILN_I16: return "int16_t";
  case KILN_U32: return "uint32_t";
  case KILN_U64: return "uint64_t";
  case KILN_F16: case KILN_BF16: return "uint16_t"; /* the bit pattern */
  case KILN_DTYPE_INVALID: break;
  }
  return "uint8_t";
}

bool kcg_is_half(kiln_dtype t) { return is_half(t); }
const char *kcg_utype(kiln_dtype t) { return utype(t); }

const char *kcg_ld(kiln_dtype t) {
  return t == KILN_F16 ? "kcg_f16_to_d(" : t == KILN_BF16 ? "kcg_bf16_to_d(" : "(double)(";
}

const char *kcg_st(kiln_dtype t) {
  switch (t) {
  case KILN_F16: return "kcg_f16_from_d(";
  case KILN_BF16: return "kcg_bf16_from_d(";
  case KILN_F32: return "(float)(";
  case KILN_F64: return "(double)(";
  case KILN_I32: case KILN_I64: case KILN_BOOL: case KILN_U8: case KILN_I8: case KILN_U16:
  case KILN_I16: case KILN_U32: case KILN_U64: case KILN_DTYPE_INVALID:
    break;
  }
  return "(";
}

const char *kcg_vtype(kiln_dtype t) { return is_half(t) ? "double" : kcg_ctype(t); }

static void contiguous_strides(const kir_type *t, int64_t *st) {
  int64_t s = 1;
  for (int32_t d = t->rank - 1; d >= 0; d--) {
    st[d] = s;
    s *= t->dims[d];
  }
}

/* Element strides of `in` seen through shape `out` (0 on broadcast dims). */
static void bcast_strides(const kir_type *in, const kir_type *out, int64_t *st) {
  int64_t s = 1;
  for (int32_t d = out->rank - 1; d >= 0; d--) {
    int32_t k = d - (out->rank - in->rank);
    st[d] = (k < 0 || in->dims[k] == 1) ? 0 : s;
    if (k >= 0) s *= in->dims[k];
  }
}

bool kcg_same_shape(const kir_type *a, const kir_type *b) {
  if (a->rank != b->rank) return false;
  for (int32_t d = 0; d < a->rank; d++)
    if (a->dims[d] != b->dims[d]) return false;
  return true;
}

/* True when `in` broadcasts to `out` without changing it. */
static bool bcast_into(const kir_type *in, const kir_type *out) {
  if (in->rank > out->rank) return false;
  int32_t off = out->rank - in->rank;
  for (int32_t k = 0; k < in->rank; k++)
    if (in->dims[k] != 1 && in->dims[k] != out->dims[k + off]) return false;
  return true;
}

/* "for (int64_t iD = 0; iD < N; iD++) " */
static void put_loop(kcg_buf *b, int32_t d, int64_t n) {
  kcg_printf(b, "for (int64_t i%d = 0; i%d < %lld; i%d++) ", (int)d, (int)d, (long long)n, (int)d);
}

/* Index "i0 * 12 + i2" over dims [0, rank) with the given strides; "0" when none. */
static void put_index(kcg_buf *b, int32_t rank, const int64_t *st) {
  bool any = false;
  for (int32_t d = 0; d < rank; d++) {
    if (st[d] == 0) continue;
    if (st[d] == 1) kcg_printf(b, "%si%d", any ? " + " : "", (int)d);
    else kcg_printf(b, "%si%d * %lld", any ? " + " : "", (int)d, (long long)st[d]);
    any = true;
  }
  if (!any) kcg_printf(b, "0");
}

void kcg_put_loop(kcg_buf *b, int32_t d, int64_t n) { put_loop(b, d, n); }
void kcg_put_index(kcg_buf *b, int32_t rank, const int64_t *st) { put_index(b, rank, st); }
void kcg_contiguous_strides(const kir_type *t, int64_t *st) { contiguous_strides(t, st); }
void kcg_bcast_strides(const kir_type *in, const kir_type *out, int64_t *st) {
  bcast_strides(in, out, st);
}
bool kcg_bcast_into(const kir_type *in, const kir_type *out) { return bcast_into(in, out); }

kiln_status kcg_node_err(kir_graph *g, const kir_node *n, kiln_status s, const char *fmt, ...) {
  char esc[KCG_ESC_BUF], msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kir_seterr(g, s, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), msg);
}

/* ---------------------------------------------------------------- threads ------- */

/* Loops over at least this many elements are split over the cores with OpenMP; below it
 * the fork/join (a few microseconds) costs more than it saves. */
#define PAR_MIN_ELEMS 65536

/* Before a nest of perfectly nested loops with trip counts dims[0..n): an OpenMP
 * "parallel for" over the fewest leading loops that give every core work (collapse(c));
 * nothing when the work is small. Guarded by _OPENMP: without -fopenmp (a standalone
 * build) it is plain serial C.
 * simd: the body is an elementwise loop nest that must stay vectorized. GCC outlines a
 * parallel loop into a function where the kernel's restrict qualifiers no longer hold,
 * and then does not vectorize it; "parallel for simd" over the whole nest (c == n) says
 * the iterations are independent (they are: each reads its inputs at its own index, and
 * an output that shares memory with an input is exactly over it, read before written),
 * and such a nest is collapsed whole.
 * No oversubscription: the steps run one after another and a parallel loop ends (joins)
 * before its step returns, so these threads never run while OpenBLAS's do (a GEMM is a
 * step of its own); both pools default to one thread per core. */
void kcg_put_par(kcg_buf *b, int64_t work, const int64_t *dims, int32_t n, bool simd) {
  if (work < PAR_MIN_ELEMS) return;
  int64_t trips = 1;
  for (int32_t c = 1; c <= n; c++) {
    trips *= dims[c - 1];
    if (trips < 4) continue;
    if (simd) c = n;
    kcg_printf(b, "#ifdef _OPENMP\n#pragma omp parallel for%s schedule(static)", simd ? " simd" : "");
    if (c > 1) kcg_printf(b, " collapse(%d)", (int)c);
    kcg_printf(b, "\n#endif\n");
    return;
  }
}

static void put_par(kcg_buf *b, int64_t work, const int64_t *dims, int32_t n, bool simd) {
  kcg_put_par(b, work, dims, n, simd);
}

/* put_par for the loops over the dims of t where keep[d] == keep_value (keep NULL: all). */
static void put_par_dims(kcg_buf *b, const kir_type *t, const bool *keep, bool keep_value,
                         bool simd) {
  int64_t dims[KILN_MAX_RANK];
  int32_t n = 0;
  for (int32_t d = 0; d < t->rank; d++)
    if (!keep || keep[d] == keep_value) dims[n++] = t->dims[d];
  put_par(b, kir_type_numel(t), dims, n, simd);
}

/* ---------------------------------------------------------------- expressions --- */

/* "x < BOUND ? (T)BOUND : " for one clamp bound (none when NaN). */
static void put_clamp_side(kcg_buf *b, kiln_dtype c, const char *xa, double bound, char cmp) {
  if (isnan(bound)) return;
  bool in_dtype = c == KILN_F64 || (double)(float)bound == bound;
  kcg_printf(b, in_dtype ? "%s %c (%s)" : "(double)%s %c ", xa, cmp, kcg_ctype(c));
  kcg_put_double(b, bound);
  kcg_printf(b, " ? (%s)", kcg_ctype(c));
  kcg_put_double(b, bound);
  kcg_printf(b, " : ");
}

/* gelu in double: x/2 * (1 + erf(x/sqrt 2)), or with tanh(sqrt(2/pi) (x + 0.044715 x^3)). */
static void put_gelu(kcg_buf *b, const char *xa, bool approx) {
  kcg_printf(b, "0.5 * (double)%s * (1.0 + ", xa);
  if (approx) {
    kcg_printf(b, "tanh(");
    kcg_put_double(b, sqrt(2.0 / 3.14159265358979323846));
    kcg_printf(b, " * ((double)%s + 0.044715 * (double)%s * (double)%s * (double)%s)))", xa, xa, xa, xa);
  } else {
    kcg_printf(b, "erf((double)%s * ", xa);
    kcg_put_double(b, 1.0 / sqrt(2.0));
    kcg_printf(b, "))");
  }
}

/* Float expression of an elementwise op on operands xa (and xb), computed in dtype c
 * (f32 or f64). lo/hi: clamp bounds, NaN = none. false: not an elementwise op. */
static bool put_fexpr(kcg_buf *b, kir_op op, kiln_dtype c, const char *xa, const char *xb,
                      double lo, double hi) {
  const char *T = kcg_ctype(c), *f = fsfx(c);
  switch (op) {
  case KIR_OP_ADD: kcg_printf(b, "%s + %s", xa, xb); return true;
  case KIR_OP_SUB: kcg_printf(b, "%s - %s", xa, xb); return true;
  case KIR_OP_MUL: kcg_printf(b, "%s * %s", xa, xb); return true;
  case KIR_OP_DIV: kcg_printf(b, "%s / %s", xa, xb); return true;
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM:
    kcg_printf(b, "(isnan(%s) || isnan(%s)) ? (%s)NAN : (%s %c %s ? %s : %s)", xa, xb, T, xa,
               op == KIR_OP_MAXIMUM ? '>' : '<', xb, xa, xb);
    return true;
  case KIR_OP_NEG: kcg_printf(b, "-%s", xa); return true;
  case KIR_OP_EXP: kcg_printf(b, "exp%s(%s)", f, xa); return true;
  case KIR_OP_LOG: kcg_printf(b, "log%s(%s)", f, xa); return true;
  case KIR_OP_SQRT: kcg_printf(b, "sqrt%s(%s)", f, xa); return true;
  case KIR_OP_TANH: kcg_printf(b, "tanh%s(%s)", f, xa); return true;
  case KIR_OP_SIGMOID:
    kcg_printf(b, "(%s)1 / ((%s)1 + exp%s(-%s))", T, T, f, xa);
    return true;
  case KIR_OP_RELU: kcg_printf(b, "%s < 0 ? (%s)0 : %s", xa, T, xa); return true;
  case KIR_OP_CLAMP:
    /* Compared against the exact bound, as the interpreter does (in double); a bound
     * that the dtype holds exactly gives the same answer compared in the dtype, which
     * vectorizes at full width. */
    put_clamp_side(b, c, xa, lo, '<');
    put_clamp_side(b, c, xa, hi, '>');
    kcg_printf(b, "%s", xa);
    return true;
  case KIR_OP_ABS: kcg_printf(b, "fabs%s(%s)", f, xa); return true;
  /* pow, erf, gelu and leaky_relu are written in double whatever c is (float operands
   * promote), so the value is the interpreter's: the op in double, rounded on store. */
  case KIR_OP_POW: kcg_printf(b, "pow((double)%s, (double)%s)", xa, xb); return true;
  case KIR_OP_ERF: kcg_printf(b, "erf((double)%s)", xa); return true;
  case KIR_OP_LEAKY_RELU:
    kcg_printf(b, "%s < 0 ? ", xa);
    kcg_put_double(b, isnan(lo) ? 0.01 : lo);
    kcg_printf(b, " * (double)%s : (double)%s", xa, xa);
    return true;
  case KIR_OP_GELU: put_gelu(b, xa, !isnan(lo) && lo != 0); return true;
  KCG_CASES_NOT_ELEMENTWISE:
    break;
  }
  return false;
}

/* v truncated toward zero and saturated to integer dtype t (NaN -> 0), as the
 * interpreter's kir_tensor_set_f stores it, as a value (unsigned: its bit pattern). */
int64_t kcg_sat_int(double v, kiln_dtype t) {
  uint64_t buf = 0;
  kir_tensor tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.type.dtype = t;
  tmp.data = &buf;
  kir_tensor_set_f(&tmp, 0, v);
  return kir_tensor_get_i(&tmp, 0);
}

/* Integer clamp bounds exactly as the interpreter derives them: the smallest integer
 * >= lo and the largest <= hi, saturated to the dtype's range; NaN = no bound. */
static void int_bounds(kiln_dtype t, double lo, double hi, int64_t *ilo, int64_t *ihi) {
  *ilo = kcg_sat_int(isnan(lo) ? -INFINITY : ceil(lo), t);
  *ihi = kcg_sat_int(isnan(hi) ? INFINITY : floor(hi), t);
}

/* An integer constant of dtype t as C (v: its value; for u64 the bit pattern). */
static void put_ilit(kcg_buf *b, kiln_dtype t, int64_t v) {
  if (t == KILN_U64) kcg_printf(b, "UINT64_C(%llu)", (unsigned long long)(uint64_t)v);
  else if (v == INT64_MIN) kcg_printf(b, "INT64_MIN");
  else kcg_printf(b, "INT64_C(%lld)", (long long)v);
}

/* Integer expression (wrapping through unsigned arithmetic); division is a statement
 * (see put_store), not an expression. false: no integer form. */
static bool put_iexpr(kcg_buf *b, kir_op op, kiln_dtype t, const char *xa, const char *xb,
                      double lo, double hi) {
  const char *T = kcg_ctype(t), *U = utype(t);
  int64_t ilo, ihi, mn = kcg_sat_int(-INFINITY, t), mx = kcg_sat_int(INFINITY, t);
  bool uns = is_uns(t);
  switch (op) {
  /* The operands are of type T, so every comparison below is signed or unsigned as T
   * is (narrow ones promote to int, keeping their value). */
  case KIR_OP_ADD: kcg_printf(b, "(%s)((%s)%s + (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_SUB: kcg_printf(b, "(%s)((%s)%s - (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_MUL: kcg_printf(b, "(%s)((%s)%s * (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_MAXIMUM: kcg_printf(b, "%s < %s ? %s : %s", xa, xb, xb, xa); return true;
  case KIR_OP_MINIMUM: kcg_printf(b, "%s < %s ? %s : %s", xb, xa, xb, xa); return true;
  case KIR_OP_NEG: kcg_printf(b, "(%s)((%s)0 - (%s)%s)", T, U, U, xa); return true;
  case KIR_OP_RELU:
    if (uns) kcg_printf(b, "%s", xa); /* the identity */
    else kcg_printf(b, "%s < 0 ? (%s)0 : %s", xa, T, xa);
    return true;
  case KIR_OP_CLAMP:
    /* A bound at the dtype's limit is no bound (and would be an always-false test). */
    int_bounds(t, lo, hi, &ilo, &ihi);
    if (ilo != mn) {
      kcg_printf(b, "%s < (%s)", xa, T);
      put_ilit(b, t, ilo);
      kcg_printf(b, " ? (%s)", T);
      put_ilit(b, t, ilo);
      kcg_printf(b, " : ");
    }
    if (ihi != mx) {
      kcg_printf(b, "(%s)", T);
      put_ilit(b, t, ihi);
      kcg_printf(b, " < %s ? (%s)", xa, T);
      put_ilit(b, t, ihi);
      kcg_printf(b, " : ");
    }
    kcg_printf(b, "%s", xa);
    return true;
  case KIR_OP_ABS:
    if (uns) kcg_printf(b, "%s", xa); /* the identity */
    else kcg_printf(b, "(%s)(%s < 0 ? (%s)0 - (%s)%s : (%s)%s)", T, xa, U, U, xa, U, xa);
    return true;
  case KIR_OP_POW:
    if (uns) kcg_printf(b, "(%s)(%s)kcg_upow(%s, %s)", T, U, xa, xb);
    else kcg_printf(b, "(%s)(%s)kcg_ipow(%s, %s)", T, U, xa, xb);
    return true;
  case KIR_OP_DIV: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH:
  case KIR_OP_SIGMOID: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  KCG_CASES_NOT_ELEMENTWISE:
    break;
  }
  return false;
}

/* ---------------------------------------------------------------- signature ----- */

static void put_signature(kcg_buf *b, const kir_graph *g, const kir_node *n, int32_t step,
                          bool restrict_ok) {
  const char *R = restrict_ok ? "restrict " : "";
  kcg_printf(b, "static int k%d_%s(", (int)step, kir_op_get(n->op)->name);
  if (n->op == KIR_OP_ADD_N) {
    kcg_printf(b, "const %s *const *a, ", kcg_ctype(n->type.dtype));
  } else {
    for (int32_t i = 0; i < n->n_inputs; i++)
      kcg_printf(b, "const %s *%s a%d, ", kcg_ctype(g->nodes[n->inputs[i]]->type.dtype),
                 restrict_ok ? "restrict" : "", (int)i);
  }
  kcg_printf(b, "%s *%sy", kcg_ctype(n->type.dtype), R);
  if (kcg_c_step_scratch(g, n) > 0) kcg_printf(b, ", %s *restrict col", kcg_ctype(n->type.dtype));
  kcg_printf(b, ") {\n");
}

/* ---------------------------------------------------------------- elementwise --- */

/* Loads a0..a{k-1} into x0.. at their broadcast index and stores op(x0, x1) into y[yi]. */
static kiln_status put_ew_body(kir_graph *g, const kir_node *n, const int64_t st[][KILN_MAX_RANK],
                               bool flat, const char *yi, kcg_buf *b) {
  kiln_dtype t = n->type.dtype;
  const char *T = kcg_ctype(t);
  bool half = is_half(t);
  for (int32_t i = 0; i < n->n_inputs; i++) {
    /* f16/bf16: the operands widened to double (exact); the result rounded once. */
    kcg_printf(b, "    const %s x%d = %sa%d[", kcg_vtype(t), (int)i, half ? kcg_ld(t) : "", (int)i);
    if (flat) kcg_printf(b, "i");
    else put_index(b, n->type.rank, st[i]);
    kcg_printf(b, half ? "]);\n" : "];\n");
  }
  if (is_int(t) && n->op == KIR_OP_DIV) {
    kcg_printf(b, "    if (x1 == 0) return 1;\n");
    if (is_uns(t)) kcg_printf(b, "    y[%s] = (%s)(x0 / x1);\n", yi, T);
    else kcg_printf(b, "    y[%s] = x1 == -1 ? (%s)((%s)0 - (%s)x0) : (%s)(x0 / x1);\n", yi, T,
                    utype(t), utype(t), T);
    return KILN_OK;
  }
  double lo = kir_attr_float(n, "min", NAN), hi = kir_attr_float(n, "max", NAN);
  if (n->op == KIR_OP_LEAKY_RELU) lo = kir_attr_float(n, "alpha", 0.01);
  if (n->op == KIR_OP_GELU) lo = (double)kir_attr_int(n, "approximate", 0);
  const char *xb = n->n_inputs > 1 ? "x1" : NULL;
  kcg_printf(b, "    y[%s] = %s", yi, half ? kcg_st(t) : "");
  bool ok = half ? put_fexpr(b, n->op, KILN_F64, "x0", xb, lo, hi)
            : is_float(t) ? put_fexpr(b, n->op, t, "x0", xb, lo, hi)
            : is_int(t) ? put_iexpr(b, n->op, t, "x0", xb, lo, hi) : false;
  if (!ok)
    return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "%s on %s has no C kernel",
                    kir_op_get(n->op)->name, kiln_dtype_name(t));
  kcg_printf(b, half ? ");\n" : ";\n");
  return KILN_OK;
}

static kiln_status emit_elementwise(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *out = &n->type;
  int64_t st[2][KILN_MAX_RANK], ost[KILN_MAX_RANK];
  bool flat = true;
  for (int32_t i = 0; i < n->n_inputs; i++) {
    const kir_type *in = &g->nodes[n->inputs[i]]->type;
    if (!bcast_into(in, out)) {
      char tin[96], tout[96];
      kir_type_format(in, tin, sizeof tin);
      kir_type_format(out, tout, sizeof tout);
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "input %d %s does not broadcast to %s", (int)i, tin, tout);
    }
    bcast_strides(in, out, st[i]);
    flat = flat && kcg_same_shape(in, out);
  }
  bool par = is_float(out->dtype); /* an integer division returns from inside the loop */
  if (flat) {
    int64_t numel = kir_type_numel(out);
    if (par) put_par(b, numel, &numel, 1, true);
    kcg_printf(b, "  for (int64_t i = 0; i < %lld; i++) {\n", (long long)numel);
    kiln_status s = put_ew_body(g, n, (const int64_t(*)[KILN_MAX_RANK])st, true, "i", b);
    kcg_printf(b, "  }\n");
    return s;
  }
  contiguous_strides(out, ost);
  if (par) put_par_dims(b, out, NULL, false, true);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < out->rank; d++) put_loop(b, d, out->dims[d]);
  kcg_printf(b, "{\n    const int64_t o = ");
  put_index(b, out->rank, ost);
  kcg_printf(b, ";\n");
  kiln_status s = put_ew_body(g, n, (const int64_t(*)[KILN_MAX_RANK])st, false, "o", b);
  kcg_printf(b, "  }\n");
  return s;
}

/* ---------------------------------------------------------------- matmul -------- */

typedef struct mm_shape {
  int64_t m, k, n;
  bool ta, tb;
  int64_t sa[KILN_MAX_RANK], sb[KILN_MAX_RANK]; /* batch strides in matrices, via out */
  int32_t nbatch;                               /* out rank - 2 */
} mm_shape;

typedef enum mm_bad { MM_OK, MM_RANK, MM_SHAPES, MM_BIG } mm_bad;

/* The product's dimensions and batch strides; reads g only. */
static mm_bad mm_shape_calc(const kir_graph *g, const kir_node *n, mm_shape *p) {
  const kir_type *a = &g->nodes[n->inputs[0]]->type, *bt = &g->nodes[n->inputs[1]]->type;
  const kir_type *out = &n->type;
  if (a->rank < 2 || bt->rank < 2 || out->rank < 2) return MM_RANK;
  p->ta = kir_attr_int(n, "transpose_a", 0) != 0;
  p->tb = kir_attr_int(n, "transpose_b", 0) != 0;
  int64_t am = a->dims[a->rank - 2], ak = a->dims[a->rank - 1];
  int64_t bk = bt->dims[bt->rank - 2], bn = bt->dims[bt->rank - 1];
  p->m = p->ta ? ak : am;
  p->k = p->ta ? am : ak;
  p->n = p->tb ? bk : bn;
  p->nbatch = out->rank - 2;
  kir_type ab = *a, bb = *bt, ob = *out;
  ab.rank -= 2;
  bb.rank -= 2;
  ob.rank -= 2;
  if ((p->tb ? bn : bk) != p->k || out->dims[out->rank - 2] != p->m ||
      out->dims[out->rank - 1] != p->n || !bcast_into(&ab, &ob) || !bcast_into(&bb, &ob))
    return MM_SHAPES;
  if (p->m > INT32_MAX || p->n > INT32_MAX || p->k > INT32_MAX) return MM_BIG;
  bcast_strides(&ab, &ob, p->sa);
  bcast_strides(&bb, &ob, p->sb);
  for (int32_t d = 0; d < p->nbatch; d++) {
    p->sa[d] *= p->m * p->k;
    p->sb[d] *= p->k * p->n;
  }
  return MM_OK;
}

static kiln_status mm_shape_of(kir_graph *g, const kir_node *n, mm_shape *p) {
  switch (mm_shape_calc(g, n, p)) {
  case MM_OK: return KILN_OK;
  case MM_RANK: return kcg_node_err(g, n, KILN_ERR_SHAPE, "matmul needs rank >= 2 inputs");
  case MM_SHAPES:
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "matmul operand shapes do not give the node's shape");
  case MM_BIG: return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "matmul dimension above 2^31-1");
  }
  return KILN_ERR_INTERNAL;
}

/* Opens the batch loops and declares pa, pb, py for the current batch element. */
static void mm_open_batch(const kir_node *n, const mm_shape *p, kcg_buf *b) {
  int64_t ost[KILN_MAX_RANK];
  kir_type ob = n->type;
  ob.rank -= 2;
  contiguous_strides(&ob, ost);
  for (int32_t d = 0; d < p->nbatch; d++) ost[d] *= p->m * p->n;
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < p->nbatch; d++) put_loop(b, d, n->type.dims[d]);
  kcg_printf(b, "{\n    const %s *pa = a0 + (", kcg_ctype(n->type.dtype));
  put_index(b, p->nbatch, p->sa);
  kcg_printf(b, ");\n    const %s *pb = a1 + (", kcg_ctype(n->type.dtype));
  put_index(b, p->nbatch, p->sb);
  kcg_printf(b, ");\n    %s *py = y + (", kcg_ctype(n->type.dtype));
  put_index(b, p->nbatch, ost);
  kcg_printf(b, ");\n");
}

/* One row (M == 1) or one column (N == 1): a GEMV, which OpenBLAS runs several times
 * faster than a GEMM of the same shape (no packing; with B stored [N, K], as
 * kcg_compile_cpu stores constant weights of one-row products, it walks contiguous
 * rows). y[1, N] = a[1, K] @ B: B^T a, with B as [K, N] (Trans) or [N, K] (NoTrans).
 * y[M, 1] = A @ b[K, 1]: A as [M, K] (NoTrans) or [K, M] (Trans). The vector is
 * contiguous in every case (a length-K row or column of a 1-wide matrix). */
static bool mm_gemv(const mm_shape *p, bool f32, kcg_buf *b) {
  char c = f32 ? 's' : 'd';
  const char *one = f32 ? "1.0f" : "1.0", *zero = f32 ? "0.0f" : "0.0";
  long long M = p->m, N = p->n, K = p->k;
  if (p->m == 1) {
    if (p->tb) kcg_printf(b, "    cblas_%cgemv(CblasRowMajor, CblasNoTrans, %lld, %lld, %s, pb, %lld, pa, 1, %s, py, 1);\n",
                          c, N, K, one, K, zero);
    else kcg_printf(b, "    cblas_%cgemv(CblasRowMajor, CblasTrans, %lld, %lld, %s, pb, %lld, pa, 1, %s, py, 1);\n",
                    c, K, N, one, N, zero);
    return true;
  }
  if (p->n == 1) {
    if (p->ta) kcg_printf(b, "    cblas_%cgemv(CblasRowMajor, CblasTrans, %lld, %lld, %s, pa, %lld, pb, 1, %s, py, 1);\n",
                          c, K, M, one, M, zero);
    else kcg_printf(b, "    cblas_%cgemv(CblasRowMajor, CblasNoTrans, %lld, %lld, %s, pa, %lld, pb, 1, %s, py, 1);\n",
                    c, M, K, one, K, zero);
    return true;
  }
  return false;
}

static bool small_gemm_shape(const mm_shape *p, kiln_dtype t) {
  return t == KILN_F32 && p->m >= 2 && p->m <= KCG_SMALL_M && p->k > 0 && p->tb && !p->ta;
}

bool kcg_c_small_gemm(const kir_graph *g, const kir_node *n) {
  if (n->op != KIR_OP_MATMUL && n->op != KIR_OP_FUSED_MATMUL) return false;
  mm_shape p;
  return mm_shape_calc(g, n, &p) == MM_OK && small_gemm_shape(&p, n->type.dtype);
}

/* y[M, N] = a[M, K] times w[N, K] transposed, 2 <= M <= 8 (a product of a few rows with
 * constant weights: a small batch through an MLP). OpenBLAS's sgemm packs both operands
 * on every call, which costs more than the product at these sizes (MLP 784-512-512-10,
 * batch 2: 218 us against 47 us for batch 1's GEMV); here each row of w is read once
 * and multiplied into the M rows of a, which stay in L1, with vector accumulators of
 * the widest width -march gives (GNU vector extensions; a scalar loop for the rest and
 * for other compilers), two rows of w at a time for M <= 4. One thread: the runtime's
 * OpenMP workers sleep between parallel loops (OMP_WAIT_POLICY=PASSIVE), and waking
 * them costs more than this product. Fused multiply-adds (intrinsics where -march has
 * them; the rest of the program is compiled with -ffp-contract=off): the sum's order
 * already differs from the reference's, as OpenBLAS's does. */
void kcg_c_put_small_gemm(kcg_buf *b) {
  kcg_printf(b,
    "#if defined(__GNUC__)\n"
    "#if defined(__AVX512F__)\n"
    "#include <immintrin.h>\n#define KCG_VL 16\n"
    "#define KCG_FMA(acc, x, y) ((kcg_vf)_mm512_fmadd_ps((__m512)(x), (__m512)(y), (__m512)(acc)))\n"
    "#elif defined(__AVX__) && defined(__FMA__)\n"
    "#include <immintrin.h>\n#define KCG_VL 8\n"
    "#define KCG_FMA(acc, x, y) ((kcg_vf)_mm256_fmadd_ps((__m256)(x), (__m256)(y), (__m256)(acc)))\n"
    "#else\n#define KCG_VL 4\n#define KCG_FMA(acc, x, y) ((acc) + (x) * (y))\n#endif\n"
    "typedef float kcg_vf __attribute__((vector_size(KCG_VL * sizeof(float))));\n"
    "static inline float kcg_vsum(kcg_vf v) {\n"
    "  float s = 0;\n  for (int l = 0; l < KCG_VL; l++) s += v[l];\n  return s;\n}\n"
    "#define KCG_SMALL_ATTR static inline __attribute__((always_inline))\n"
    "#else\n#define KCG_SMALL_ATTR static inline\n#endif\n\n"
    "KCG_SMALL_ATTR void kcg_sgemm_small(const int64_t M, const int64_t N, const int64_t K,\n"
    "                                    const float *restrict a, const float *restrict w,\n"
    "                                    float *restrict y) {\n"
    "  const int64_t step = M <= 4 ? 2 : 1;\n"
    "  int64_t n = 0;\n"
    "  for (; n + step <= N; n += step) {\n"
    "    float s[2][8];\n"
    "    int64_t k = 0;\n"
    "#if defined(__GNUC__)\n"
    "    kcg_vf acc[2][8];\n"
    "    for (int64_t j = 0; j < step; j++)\n"
    "      for (int64_t m = 0; m < M; m++) acc[j][m] = (kcg_vf){0};\n"
    "    for (; k + KCG_VL <= K; k += KCG_VL) {\n"
    "      kcg_vf wv[2];\n"
    "      for (int64_t j = 0; j < step; j++) memcpy(&wv[j], w + (n + j) * K + k, sizeof wv[j]);\n"
    "      for (int64_t m = 0; m < M; m++) {\n"
    "        kcg_vf av;\n"
    "        memcpy(&av, a + m * K + k, sizeof av);\n"
    "        for (int64_t j = 0; j < step; j++) acc[j][m] = KCG_FMA(acc[j][m], av, wv[j]);\n"
    "      }\n"
    "    }\n"
    "    for (int64_t j = 0; j < step; j++)\n"
    "      for (int64_t m = 0; m < M; m++) s[j][m] = kcg_vsum(acc[j][m]);\n"
    "#else\n"
    "    for (int64_t j = 0; j < step; j++)\n"
    "      for (int64_t m = 0; m < M; m++) s[j][m] = 0;\n"
    "#endif\n"
    "    for (; k < K; k++)\n"
    "      for (int64_t j = 0; j < step; j++)\n"
    "        for (int64_t m = 0; m < M; m++) s[j][m] += a[m * K + k] * w[(n + j) * K + k];\n"
    "    for (int64_t j = 0; j < step; j++)\n"
    "      for (int64_t m = 0; m < M; m++) y[m * N + n + j] = s[j][m];\n"
    "  }\n"
    "  for (; n < N; n++)\n"
    "    for (int64_t m = 0; m < M; m++) {\n"
    "      float t = 0;\n"
    "      for (int64_t k = 0; k < K; k++) t += a[m * K + k] * w[n * K + k];\n"
    "      y[m * N + n] = t;\n"
    "    }\n"
    "}\n\n");
}

static void mm_float(const kir_node *n, const mm_shape *p, kcg_buf *b) {
  bool f32 = n->type.dtype == KILN_F32;
  if (p->k == 0) { /* empty sum: zeros, and no BLAS call with a zero leading dimension */
    kcg_printf(b, "    memset(py, 0, sizeof(*py) * %lld);\n", (long long)(p->m * p->n));
    return;
  }
  if (mm_gemv(p, f32, b)) return;
  if (small_gemm_shape(p, n->type.dtype)) {
    kcg_printf(b, "    kcg_sgemm_small(%lld, %lld, %lld, pa, pb, py);\n", (long long)p->m,
               (long long)p->n, (long long)p->k);
    return;
  }
  kcg_printf(b, "    cblas_%cgemm(CblasRowMajor, %s, %s, %lld, %lld, %lld, %s, pa, %lld, pb, %lld, "
             "%s, py, %lld);\n", f32 ? 's' : 'd', p->ta ? "CblasTrans" : "CblasNoTrans",
             p->tb ? "CblasTrans" : "CblasNoTrans", (long long)p->m, (long long)p->n,
             (long long)p->k, f32 ? "1.0f" : "1.0", (long long)(p->ta ? p->m : p->k),
             (long long)(p->tb ? p->k : p->n), f32 ? "0.0f" : "0.0", (long long)p->n);
}

static void mm_int(const kir_node *n, const mm_shape *p, kcg_buf *b) {
  const char *T = kcg_ctype(n->type.dtype), *U = utype(n->type.dtype);
  long long M = p->m, K = p->k, N = p->n;
  kcg_printf(b, "    for (int64_t m = 0; m < %lld; m++)\n      for (int64_t n = 0; n < %lld; n++) {\n",
             M, N);
  kcg_printf(b, "        uint64_t acc = 0;\n        for (int64_t k = 0; k < %lld; k++)\n", K);
  kcg_printf(b, "          acc += (uint64_t)pa[");
  if (p->ta) kcg_printf(b, "k * %lld + m", M);
  else kcg_printf(b, "m * %lld + k", K);
  kcg_printf(b, "] * (uint64_t)pb[");
  if (p->tb) kcg_printf(b, "n * %lld + k", K);
  else kcg_printf(b, "k * %lld + n", N);
  kcg_printf(b, "];\n        py[m * %lld + n] = (%s)(%s)acc;\n      }\n", N, T, U);
}

static kiln_status emit_matmul(kir_graph *g, const kir_node *n, kcg_buf *b) {
  mm_shape p;
  kiln_status s = mm_shape_of(g, n, &p);
  if (s) return s;
  kiln_dtype t = n->type.dtype;
  if ((!is_float(t) && !is_int(t)) || is_half(t))
    return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "%s on %s has no C kernel",
                    kir_op_get(n->op)->name, kiln_dtype_name(t));
  mm_open_batch(n, &p, b);
  if (p.m > 0 && p.n > 0) {
    if (is_float(t)) mm_float(n, &p, b);
    else mm_int(n, &p, b);
  } else {
    kcg_printf(b, "    (void)pa; (void)pb; (void)py;\n");
  }
  kcg_printf(b, "  }\n");
  return KILN_OK;
}

/* Whether op computed in f32 gives bit for bit what the interpreter gives (the op in
 * double, rounded to f32). add, sub, mul, div and sqrt: yes, because double has at
 * least 2*24+2 significand bits, so rounding the correctly rounded double result to
 * float equals the correctly rounded float result (double rounding is innocuous:
 * Figueroa, "When is double rounding innocuous?", SIGNUM 1995); IEEE 754 requires all
 * five correctly rounded, and the compiler is run with -ffp-contract=off so no FMA
 * merges two steps. neg, relu, maximum, minimum and clamp select or negate a value, so
 * they are exact in any precision (clamp compares in double unless the bound is a
 * float, see put_clamp_side). exp, log, tanh and sigmoid: no (libm's float versions
 * are not the rounded double ones), so those stay in double. */
bool kcg_exact_in_f32(kir_op op) {
  switch (op) {
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_SQRT:
  case KIR_OP_NEG: case KIR_OP_RELU: case KIR_OP_MAXIMUM: case KIR_OP_MINIMUM: case KIR_OP_CLAMP:
  case KIR_OP_ABS:
    return true;
  case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_TANH: case KIR_OP_SIGMOID:
  case KIR_OP_POW: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  KCG_CASES_NOT_ELEMENTWISE:
    break;
  }
  return false;
}

/* "IND v = EXPR;\n" for epilogue step s on the T local v with operand xb (a T local, or
 * NULL): in T itself for f64 and for the ops exact_in_f32 lists, else in double and
 * rounded to T after the step, as the interpreter does. */
static kiln_status put_step(kir_graph *g, const kir_node *n, const kir_epilogue *e, int32_t s,
                            const char *xb, const char *ind, kcg_buf *b) {
  kir_op op = (kir_op)e->op[s];
  kiln_dtype t = n->type.dtype;
  const char *T = kcg_ctype(t);
  bool native = t == KILN_F64 || (t == KILN_F32 && kcg_exact_in_f32(op)), ok;
  char xbd[40];
  if (xb) snprintf(xbd, sizeof xbd, "(double)%s", xb);
  /* f16/bf16: v is a double holding a value of the type; each step rounds to it. */
  if (is_half(t)) kcg_printf(b, "%sv = %s(", ind, t == KILN_F16 ? "kcg_f16_rnd" : "kcg_bf16_rnd");
  else kcg_printf(b, "%sv = (%s)(", ind, T);
  if (native)
    ok = xb && e->swap[s] ? put_fexpr(b, op, t, xb, "v", NAN, NAN)
         : put_fexpr(b, op, t, "v", xb, e->clamp_min[s], e->clamp_max[s]);
  else
    ok = xb && e->swap[s] ? put_fexpr(b, op, KILN_F64, xbd, "(double)v", NAN, NAN)
         : put_fexpr(b, op, KILN_F64, "(double)v", xb ? xbd : NULL, e->clamp_min[s],
                     e->clamp_max[s]);
  if (!ok) return kcg_node_err(g, n, KILN_ERR_GRAPH, "epilogue step %d is not elementwise", (int)s);
  kcg_printf(b, ");\n");
  return KILN_OK;
}

/* One epilogue step on `v` (a T local); see put_step. */
static kiln_status put_epilogue_step(kir_graph *g, const kir_node *n, const kir_epilogue *e,
                                     int32_t s, const int64_t *ost, kcg_buf *b) {
  const char *T = kcg_ctype(n->type.dtype);
  char xb[32] = "";
  if (e->operand[s] >= 0) {
    int32_t oi = (int32_t)e->operand[s];
    const kir_type *ct = &g->nodes[n->inputs[oi]]->type;
    int64_t st[KILN_MAX_RANK];
    if (!bcast_into(ct, &n->type) || ct->dtype != n->type.dtype)
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "epilogue operand %d does not broadcast to the product",
                      (int)oi);
    bcast_strides(ct, &n->type, st);
    kcg_printf(b, "    const %s c%d = a%d[", T, (int)s, (int)oi);
    if (kcg_same_shape(ct, &n->type)) put_index(b, n->type.rank, ost);
    else put_index(b, n->type.rank, st);
    kcg_printf(b, "];\n");
    snprintf(xb, sizeof xb, "c%d", (int)s);
  }
  return put_step(g, n, e, s, xb[0] ? xb : NULL, "    ", b);
}

kiln_status kcg_c_put_epilogue(kir_graph *g, const kir_node *n, const kir_epilogue *e,
                               const int64_t *ost, kcg_buf *b) {
  for (int32_t i = 0; i < e->n; i++) {
    kiln_status s = put_epilogue_step(g, n, e, i, ost, b);
    if (s) return s;
  }
  return KILN_OK;
}

static kiln_status emit_fused_matmul(kir_graph *g, const kir_node *n, kcg_buf *b) {
  kir_epilogue e;
  kiln_status s = kir_epilogue_get(g, n, &e);
  if (s || (s = emit_matmul(g, n, b))) return s;
  if (!is_float(n->type.dtype))
    return kcg_node_err(g, n, KILN_ERR_TYPE, "fused_matmul needs f32 or f64");
  if (e.n == 0 || kir_type_numel(&n->type) == 0) return KILN_OK;
  int64_t ost[KILN_MAX_RANK];
  contiguous_strides(&n->type, ost);
  kcg_printf(b, "  /* epilogue: one pass over the product */\n  ");
  for (int32_t d = 0; d < n->type.rank; d++) put_loop(b, d, n->type.dims[d]);
  kcg_printf(b, "{\n    const int64_t o = ");
  put_index(b, n->type.rank, ost);
  kcg_printf(b, ";\n    %s v = y[o];\n", kcg_ctype(n->type.dtype));
  for (int32_t i = 0; i < e.n; i++)
    if ((s = put_epilogue_step(g, n, &e, i, ost, b))) return s;
  kcg_printf(b, "    y[o] = v;\n  }\n");
  return KILN_OK;
}

/* ---------------------------------------------------------------- reductions ---- */

kiln_status kcg_reduced_axes(kir_graph *g, const kir_node *n, const kir_type *in, bool *red) {
  int32_t cnt = 0;
  const int64_t *axes = kir_attr_ints(n, "axes", &cnt);
  bool present = kir_attr_find(n, "axes") != NULL;
  for (int32_t d = 0; d < KILN_MAX_RANK; d++) red[d] = !present && d < in->rank;
  for (int32_t i = 0; present && i < cnt; i++) {
    int64_t ax = axes[i] < 0 ? axes[i] + in->rank : axes[i];
    if (ax < 0 || ax >= in->rank || red[ax])
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "bad or repeated axis %lld for rank %d",
                      (long long)axes[i], (int)in->rank);
    red[ax] = true;
  }
  return KILN_OK;
}

/* Integer max/min accumulate in int64 (signed) or uint64 (unsigned) from the dtype's
 * limit; sums wrap in uint64 and are truncated on store. */
static void put_red_init(kir_op kind, const kir_node *n, kcg_buf *b) {
  bool fl = is_float(n->type.dtype), uns = is_uns(n->type.dtype);
  if (kind == KIR_OP_REDUCE_MAX)
    kcg_printf(b, fl ? "double acc = -INFINITY;\n" : uns ? "uint64_t acc = 0;\n" : "int64_t acc = INT64_MIN;\n");
  else if (kind == KIR_OP_REDUCE_MIN)
    kcg_printf(b, fl ? "double acc = INFINITY;\n" : uns ? "uint64_t acc = UINT64_MAX;\n" : "int64_t acc = INT64_MAX;\n");
  else kcg_printf(b, fl ? "double acc = 0.0;\n" : "uint64_t acc = 0;\n");
}

/* x: the element, a T local (a double for f16/bf16). */
static void put_red_step(kir_op kind, const kir_node *n, kcg_buf *b) {
  bool fl = is_float(n->type.dtype);
  const char *W = is_uns(n->type.dtype) ? "uint64_t" : "int64_t";
  char c = kind == KIR_OP_REDUCE_MAX ? '>' : '<';
  if (kind != KIR_OP_REDUCE_MAX && kind != KIR_OP_REDUCE_MIN)
    kcg_printf(b, fl ? "acc += (double)x;\n" : "acc += (uint64_t)x;\n");
  else if (fl)
    kcg_printf(b, "acc = (isnan(acc) || isnan((double)x)) ? NAN : ((double)x %c acc ? (double)x : acc);\n", c);
  else kcg_printf(b, "acc = (%s)x %c acc ? (%s)x : acc;\n", W, c, W);
}

static kiln_status emit_reduce(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *in = &g->nodes[n->inputs[0]]->type;
  bool red[KILN_MAX_RANK];
  int64_t ist[KILN_MAX_RANK], ost[KILN_MAX_RANK] = {0}, count = 1, s = 1;
  kiln_status st = kcg_reduced_axes(g, n, in, red);
  if (st) return st;
  if (!is_float(n->type.dtype) && !is_int(n->type.dtype))
    return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "%s on %s", kir_op_get(n->op)->name,
                    kiln_dtype_name(n->type.dtype));
  contiguous_strides(in, ist);
  for (int32_t d = in->rank - 1; d >= 0; d--) {
    if (red[d]) count *= in->dims[d];
    else { ost[d] = s; s *= in->dims[d]; }
  }
  if (count == 0 && (n->op == KIR_OP_REDUCE_MAX || n->op == KIR_OP_REDUCE_MIN))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "%s over an empty axis", kir_op_get(n->op)->name);
  const char *T = kcg_ctype(n->type.dtype);
  put_par_dims(b, in, red, false, false);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < in->rank; d++) if (!red[d]) put_loop(b, d, in->dims[d]);
  kcg_printf(b, "{\n    ");
  put_red_init(n->op, n, b);
  kcg_printf(b, "    ");
  for (int32_t d = 0; d < in->rank; d++) if (red[d]) put_loop(b, d, in->dims[d]);
  kiln_dtype t = n->type.dtype;
  bool half = is_half(t);
  kcg_printf(b, "{\n      const %s x = %sa0[", kcg_vtype(t), half ? kcg_ld(t) : "");
  put_index(b, in->rank, ist);
  kcg_printf(b, half ? "]);\n      " : "];\n      ");
  put_red_step(n->op, n, b);
  kcg_printf(b, "    }\n    y[");
  put_index(b, in->rank, ost);
  if (n->op == KIR_OP_REDUCE_MEAN) kcg_printf(b, "] = %sacc / %lld.0);\n  }\n", kcg_st(t), (long long)count);
  else if (is_float(t)) kcg_printf(b, "] = %sacc);\n  }\n", kcg_st(t));
  else kcg_printf(b, "] = (%s)(%s)acc;\n  }\n", T, utype(t));
  return KILN_OK;
}

/* ---------------------------------------------------------------- softmax ------- */

static void put_softmax_lines(const kir_node *n, int64_t ax, const char *src, kcg_buf *b);

/* softmax and log_softmax (x - max - log(sum(exp(x - max))), in double, rounded). */
static kiln_status emit_softmax(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *t = &n->type;
  int64_t ax = kir_attr_int(n, "axis", -1);
  if (ax < 0) ax += t->rank;
  if (ax < 0 || ax >= t->rank || !is_float(t->dtype))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "softmax axis %lld for %d-D %s input",
                    (long long)kir_attr_int(n, "axis", -1), (int)t->rank, kiln_dtype_name(t->dtype));
  put_softmax_lines(n, ax, "a0", b);
  return KILN_OK;
}

/* Softmax over axis ax of the values at `src` ("a0", or "y" when they are already there)
 * into y. */
static void put_softmax_lines(const kir_node *n, int64_t ax, const char *src, kcg_buf *b) {
  const kir_type *t = &n->type;
  int64_t outer = 1, inner = 1, len = t->dims[ax];
  for (int32_t d = 0; d < ax; d++) outer *= t->dims[d];
  for (int32_t d = (int32_t)ax + 1; d < t->rank; d++) inner *= t->dims[d];
  const char *T = kcg_ctype(t->dtype);
  long long L = len, I = inner;
  put_par(b, outer * len * inner, (const int64_t[]){outer, inner}, 2, false);
  kcg_printf(b, "  for (int64_t o = 0; o < %lld; o++)\n    for (int64_t i = 0; i < %lld; i++) {\n",
             (long long)outer, I);
  kcg_printf(b, "      const %s *x = %s + o * %lld + i;\n      %s *z = y + o * %lld + i;\n", T, src,
             L * I, T, L * I);
  const char *LD = kcg_ld(t->dtype), *ST = kcg_st(t->dtype);
  (void)T;
  kcg_printf(b, "      double m = -INFINITY, s = 0.0;\n");
  kcg_printf(b, "      for (int64_t j = 0; j < %lld; j++) {\n        const double v = %sx[j * %lld]);\n"
             "        m = (isnan(m) || isnan(v)) ? NAN : (v > m ? v : m);\n      }\n", L, LD, I);
  kcg_printf(b, "      for (int64_t j = 0; j < %lld; j++) s += exp(%sx[j * %lld]) - m);\n", L, LD, I);
  if (n->op == KIR_OP_LOG_SOFTMAX)
    kcg_printf(b, "      const double ls = log(s);\n      for (int64_t j = 0; j < %lld; j++) "
               "z[j * %lld] = %s%sx[j * %lld]) - m - ls);\n", L, I, ST, LD, I);
  else
    kcg_printf(b, "      for (int64_t j = 0; j < %lld; j++) z[j * %lld] = %sexp(%sx[j * %lld]) - m) / s);\n",
               L, I, ST, LD, I);
  kcg_printf(b, "    }\n");
}

/* ---------------------------------------------------------------- fused chains -- */

/* Loads input k at the current element of the chain's shape t: flat index i, or the
 * broadcast index over i0..i{rank-1}. */
static void put_operand(const kir_graph *g, const kir_node *n, int32_t k, const kir_type *t,
                        bool flat, kcg_buf *b) {
  int64_t st[KILN_MAX_RANK];
  kcg_printf(b, "a%d[", (int)k);
  if (flat) {
    kcg_printf(b, "i");
  } else {
    bcast_strides(&g->nodes[n->inputs[k]]->type, t, st);
    put_index(b, t->rank, st);
  }
  kcg_printf(b, "]");
}

/* Declares `T v`, the chain's value at the current element: x0, then every epilogue step
 * (put_step: each rounded to T after the step, as the interpreter does). */
static kiln_status put_chain_value(kir_graph *g, const kir_node *n, const kir_epilogue *e,
                                   const kir_type *t, bool flat, const char *ind, kcg_buf *b) {
  kiln_dtype dt = n->type.dtype;
  const char *V = kcg_vtype(dt), *LD = is_half(dt) ? kcg_ld(dt) : "", *RP = is_half(dt) ? ")" : "";
  kcg_printf(b, "%s%s v = %s", ind, V, LD);
  put_operand(g, n, 0, t, flat, b);
  kcg_printf(b, "%s;\n", RP);
  for (int32_t s = 0; s < e->n; s++) {
    bool bin = e->operand[s] >= 0;
    char xb[32];
    snprintf(xb, sizeof xb, "c%d", (int)s);
    if (bin) {
      kcg_printf(b, "%sconst %s %s = %s", ind, V, xb, LD);
      put_operand(g, n, (int32_t)e->operand[s], t, flat, b);
      kcg_printf(b, "%s;\n", RP);
    }
    kiln_status st = put_step(g, n, e, s, bin ? xb : NULL, ind, b);
    if (st) return st;
  }
  return KILN_OK;
}

/* Decodes the epilogue and computes the chain's shape t (the broadcast of every input);
 * flat when every input already has that shape. */
static kiln_status chain_prepare(kir_graph *g, const kir_node *n, kir_epilogue *e, kir_type *t,
                                 bool *flat) {
  kiln_status s = kir_epilogue_get(g, n, e);
  if (s) return s;
  if (!is_float(n->type.dtype))
    return kcg_node_err(g, n, KILN_ERR_TYPE, "%s needs f32 or f64", kir_op_get(n->op)->name);
  *t = g->nodes[n->inputs[0]]->type;
  for (int32_t i = 1; i < n->n_inputs; i++) {
    kir_type bt;
    if (!kir_broadcast(t, &g->nodes[n->inputs[i]]->type, &bt))
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "input %d does not broadcast with the others", (int)i);
    *t = bt;
  }
  *flat = true;
  for (int32_t i = 0; i < n->n_inputs; i++)
    *flat = *flat && kcg_same_shape(&g->nodes[n->inputs[i]]->type, t);
  return KILN_OK;
}

/* fused_elementwise: y = the chain; fused_softmax: y = the chain, then softmax in place. */
static kiln_status emit_fused_chain(kir_graph *g, const kir_node *n, kcg_buf *b) {
  kir_epilogue e;
  kir_type t;
  bool flat;
  int64_t ost[KILN_MAX_RANK], ax = kir_attr_int(n, "axis", -1);
  kiln_status s = chain_prepare(g, n, &e, &t, &flat);
  if (s) return s;
  if (!kcg_same_shape(&t, &n->type))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "the chain's shape is not the node's");
  if (ax < 0) ax += t.rank;
  if (n->op == KIR_OP_FUSED_SOFTMAX && (ax < 0 || ax >= t.rank))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "softmax axis %lld for rank %d",
                    (long long)kir_attr_int(n, "axis", -1), (int)t.rank);
  if (flat) {
    int64_t numel = kir_type_numel(&t);
    put_par(b, numel, &numel, 1, true);
    kcg_printf(b, "  for (int64_t i = 0; i < %lld; i++) {\n", (long long)numel);
    s = put_chain_value(g, n, &e, &t, true, "    ", b);
    kcg_printf(b, is_half(n->type.dtype) ? "    y[i] = %sv);\n  }\n" : "    y[i] = v;\n  }\n%s",
               is_half(n->type.dtype) ? kcg_st(n->type.dtype) : "");
  } else {
    contiguous_strides(&t, ost);
    put_par_dims(b, &t, NULL, false, true);
    kcg_printf(b, "  ");
    for (int32_t d = 0; d < t.rank; d++) put_loop(b, d, t.dims[d]);
    kcg_printf(b, "{\n    const int64_t o = ");
    put_index(b, t.rank, ost);
    kcg_printf(b, ";\n");
    s = put_chain_value(g, n, &e, &t, false, "    ", b);
    kcg_printf(b, is_half(n->type.dtype) ? "    y[o] = %sv);\n  }\n" : "    y[o] = v;\n  }\n%s",
               is_half(n->type.dtype) ? kcg_st(n->type.dtype) : "");
  }
  if (!s && n->op == KIR_OP_FUSED_SOFTMAX) put_softmax_lines(n, ax, "y", b);
  return s;
}

/* fused_reduce: the chain's value is computed where the reduction reads it; no
 * intermediate buffer. */
static kiln_status emit_fused_reduce(kir_graph *g, const kir_node *n, kcg_buf *b) {
  kir_epilogue e;
  kir_type t;
  bool flat, red[KILN_MAX_RANK];
  int64_t ost[KILN_MAX_RANK] = {0}, count = 1, sz = 1, r = kir_attr_int(n, "reduce", 0);
  kiln_status s = chain_prepare(g, n, &e, &t, &flat);
  if (s || (s = kcg_reduced_axes(g, n, &t, red))) return s;
  if (r != KIR_OP_REDUCE_SUM && r != KIR_OP_REDUCE_MEAN && r != KIR_OP_REDUCE_MAX &&
      r != KIR_OP_REDUCE_MIN)
    return kcg_node_err(g, n, KILN_ERR_GRAPH, "attribute 'reduce' (%lld) is not a reduction", (long long)r);
  kir_op kind = (kir_op)r;
  for (int32_t d = t.rank - 1; d >= 0; d--) {
    if (red[d]) count *= t.dims[d];
    else { ost[d] = sz; sz *= t.dims[d]; }
  }
  if (count == 0 && (kind == KIR_OP_REDUCE_MAX || kind == KIR_OP_REDUCE_MIN))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "%s over an empty axis", kir_op_get(kind)->name);
  if (sz != kir_type_numel(&n->type))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "the reduction's size is not the node's");
  const char *T = kcg_ctype(n->type.dtype);
  put_par_dims(b, &t, red, false, false);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < t.rank; d++) if (!red[d]) put_loop(b, d, t.dims[d]);
  kcg_printf(b, "{\n    ");
  put_red_init(kind, n, b);
  kcg_printf(b, "    ");
  for (int32_t d = 0; d < t.rank; d++) if (red[d]) put_loop(b, d, t.dims[d]);
  kcg_printf(b, "{\n");
  if ((s = put_chain_value(g, n, &e, &t, false, "      ", b))) return s;
  kcg_printf(b, "      const %s x = v;\n      ", kcg_vtype(n->type.dtype));
  put_red_step(kind, n, b);
  kcg_printf(b, "    }\n    y[");
  put_index(b, t.rank, ost);
  (void)T;
  if (kind == KIR_OP_REDUCE_MEAN)
    kcg_printf(b, "] = %sacc / %lld.0);\n  }\n", kcg_st(n->type.dtype), (long long)count);
  else kcg_printf(b, "] = %sacc);\n  }\n", kcg_st(n->type.dtype));
  return KILN_OK;
}

/* ---------------------------------------------------------------- shape ops ----- */

static kiln_status emit_transpose(kir_graph *g, const kir_node *n, kcg_buf *b) {
  const kir_type *in = &g->nodes[n->inputs[0]]->type;
  int32_t cnt = 0;
  const int64_t *pv = kir_attr_ints(n, "perm", &cnt);
  bool present = kir_attr_find(n, "perm") != NULL, seen[KILN_MAX_RANK] = {false};
  int64_t ist[KILN_MAX_RANK], pst[KILN_MAX_RANK], ost[KILN_MAX_RANK];
  if ((present && cnt != in->rank) || in->rank != n->type.rank)
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "perm has %d entries for rank %d", (int)cnt, (int)in->rank);
  contiguous_strides(in, ist);
  contiguous_strides(&n->type, ost);
  for (int32_t d = 0; d < in->rank; d++) {
    int64_t p = present ? pv[d] : in->rank - 1 - d;
    if (p < 0 || p >= in->rank || seen[p] || n->type.dims[d] != in->dims[p])
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "perm entry %d (%lld) is not a permutation", (int)d,
                      (long long)p);
    seen[p] = true;
    pst[d] = in->dims[p] == 1 ? 0 : ist[p];
  }
  put_par_dims(b, &n->type, NULL, false, true);
  kcg_printf(b, "  ");
  for (int32_t d = 0; d < n->type.rank; d++) put_loop(b, d, n->type.dims[d]);
  kcg_printf(b, "{\n    y[");
  put_index(b, n->type.rank, ost);
  kcg_printf(b, "] = a0[");
  put_index(b, n->type.rank, pst);
  kcg_printf(b, "];\n  }\n");
  return KILN_OK;
}

static kiln_status emit_copy(kir_graph *g, const kir_node *n, kcg_buf *b) {
  int64_t nb = kir_type_nbytes(&n->type);
  if (nb < 0 || nb != kir_type_nbytes(&g->nodes[n->inputs[0]]->type))
    return kcg_node_err(g, n, KILN_ERR_SHAPE, "input and output sizes differ");
  /* memmove: the plan may place the output over its input. */
  if (nb > 0) kcg_printf(b, "  memmove(y, a0, %lld);\n", (long long)nb);
  else kcg_printf(b, "  (void)y; (void)a0;\n");
  return KILN_OK;
}

static kiln_status emit_add_n(kir_graph *g, const kir_node *n, kcg_buf *b) {
  kiln_dtype t = n->type.dtype;
  for (int32_t i = 0; i < n->n_inputs; i++)
    if (!kcg_same_shape(&g->nodes[n->inputs[i]]->type, &n->type))
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "add_n input %d differs in shape", (int)i);
  if (!is_float(t) && !is_int(t))
    return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "add_n on %s", kiln_dtype_name(t));
  int64_t numel = kir_type_numel(&n->type);
  put_par(b, numel * n->n_inputs, &numel, 1, false);
  kcg_printf(b, "  for (int64_t i = 0; i < %lld; i++) {\n", (long long)numel);
  kcg_printf(b, is_float(t) ? "    double acc = 0.0;\n" : "    uint64_t acc = 0;\n");
  if (is_float(t))
    kcg_printf(b, "    for (int j = 0; j < %d; j++) acc += %sa[j][i]);\n", (int)n->n_inputs, kcg_ld(t));
  else kcg_printf(b, "    for (int j = 0; j < %d; j++) acc += (uint64_t)a[j][i];\n", (int)n->n_inputs);
  if (is_float(t)) kcg_printf(b, "    y[i] = %sacc);\n  }\n", kcg_st(t));
  else kcg_printf(b, "    y[i] = (%s)(%s)acc;\n  }\n", kcg_ctype(t), utype(t));
  return KILN_OK;
}

/* ---------------------------------------------------------------- dispatch ------ */

static kiln_status not_compiled(kir_graph *g, const kir_node *n) {
  if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
    return kcg_node_err(g, n, KILN_ERR_UNSUPPORTED, "variables cannot be compiled; freeze the graph first");
  return kcg_node_err(g, n, KILN_ERR_INTERNAL, "%s is not a step", kir_op_get(n->op) ? kir_op_get(n->op)->name : "invalid op");
}

static kiln_status emit_body(kir_graph *g, const kir_node *n, kcg_buf *b) {
  switch (n->op) {
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: case KIR_OP_NEG: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT:
  case KIR_OP_TANH: case KIR_OP_SIGMOID: case KIR_OP_RELU: case KIR_OP_CLAMP: case KIR_OP_POW:
  case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
    return emit_elementwise(g, n, b);
  case KIR_OP_MATMUL: return emit_matmul(g, n, b);
  case KIR_OP_FUSED_MATMUL: return emit_fused_matmul(g, n, b);
  case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_SOFTMAX: return emit_fused_chain(g, n, b);
  case KIR_OP_FUSED_REDUCE: return emit_fused_reduce(g, n, b);
  case KIR_OP_ADD_N: return emit_add_n(g, n, b);
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: case KIR_OP_REDUCE_MIN:
    return emit_reduce(g, n, b);
  case KIR_OP_SOFTMAX: case KIR_OP_LOG_SOFTMAX: return emit_softmax(g, n, b);
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: case KIR_OP_CONCAT: case KIR_OP_SLICE:
  case KIR_OP_GATHER: case KIR_OP_CAST: case KIR_OP_WHERE: case KIR_OP_CONV:
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_BATCH_NORM: case KIR_OP_FUSED_CONV:
  case KIR_OP_MAX_POOL_INDICES:
    return kcg_c_emit_nn(g, n, b);
  case KIR_OP_TRANSPOSE: return emit_transpose(g, n, b);
  case KIR_OP_RESHAPE: case KIR_OP_IDENTITY: case KIR_OP_TRANSFER: return emit_copy(g, n, b);
  case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE: case KIR_OP_ASSIGN:
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: case KIR_OP_GROUP: case KIR_OP_NO_OP:
  case KIR_OP_INVALID: case KIR_OP_COUNT:
    return not_compiled(g, n);
  }
  return not_compiled(g, n);
}

void kcg_put_step_comment(const kir_graph *g, const kir_node *n, int32_t step, const char *note,
                          kcg_buf *b) {
  char ty[96];
  int32_t nf = 0;
  const char *const *from = kir_op_has(n->op, KIR_F_FUSED) ? kir_attr_strings(n, "fused_from", &nf) : NULL;
  kcg_printf(b, "/* step %d: %s%s [", (int)step, kir_op_get(n->op)->name, note);
  if (from && nf > 0) {
    for (int32_t i = 0; i < nf; i++) {
      if (i) kcg_printf(b, ", ");
      kcg_put_name(b, from[i]);
    }
  } else {
    kcg_put_name(b, n->name);
  }
  kcg_printf(b, "] ");
  for (int32_t i = 0; i < n->n_inputs; i++) {
    kir_type_format(&g->nodes[n->inputs[i]]->type, ty, sizeof ty);
    kcg_printf(b, "%s%s", i ? " x " : "", ty);
  }
  kir_type_format(&n->type, ty, sizeof ty);
  kcg_printf(b, " -> %s */\n", ty);
}

/* Input i's dtype as the kernel expects it: the node's own, except cast (any), where's
 * condition (bool), gather's indices (i32/i64) and the i64-valued argmax, argmin and
 * max_pool_indices (their data input any but bool). */
static bool input_dtype_ok(const kir_node *n, int32_t i, kiln_dtype it) {
  kir_op op = n->op;
  if (op == KIR_OP_CAST) return it != KILN_DTYPE_INVALID;
  if (op == KIR_OP_WHERE) return i == 0 ? it == KILN_BOOL : it == n->type.dtype;
  if (op == KIR_OP_GATHER)
    return i == 1 ? (it == KILN_I32 || it == KILN_I64) : it == n->type.dtype;
  if (op == KIR_OP_ARGMAX || op == KIR_OP_ARGMIN || op == KIR_OP_MAX_POOL_INDICES)
    return n->type.dtype == KILN_I64 && (is_float(it) || is_int(it)); /* every one but bool */
  return it == n->type.dtype;
}

kiln_status kcg_c_emit_kernel(kir_graph *g, const kir_node *n, int32_t step, bool restrict_ok,
                              kcg_buf *b) {
  if (!kir_op_get(n->op)) return kcg_node_err(g, n, KILN_ERR_GRAPH, "invalid op %d", (int)n->op);
  for (int32_t i = 0; i < n->n_inputs; i++) {
    kiln_dtype it = g->nodes[n->inputs[i]]->type.dtype;
    if (!input_dtype_ok(n, i, it))
      return kcg_node_err(g, n, KILN_ERR_TYPE, "input %d is %s, which %s of %s does not take", (int)i,
                      kiln_dtype_name(it), kir_op_get(n->op)->name, kiln_dtype_name(n->type.dtype));
  }
  kcg_put_step_comment(g, n, step, "", b);
  put_signature(b, g, n, step, restrict_ok);
  kiln_status s = emit_body(g, n, b);
  kcg_printf(b, "  return 0;\n}\n\n");
  return s;
}
