/* kcg_cuda_kernels.c — the CUDA C of one kernel per step: elementwise ops and fused
 * chains, add_n, copies, transpose, reductions, softmax, a tiled matmul for what cuBLASLt
 * does not run, and GEMM epilogues, with the reference interpreter's semantics. Uses ir/
 * types and the C target's text helpers only; never a model string unescaped. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kcg_cuda_internal.h"

/* ---------------------------------------------------------------- dtypes -------- */

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }
static bool is_int(kiln_dtype t) { return kir_dtype_is_int(t); }
static bool is_uns(kiln_dtype t) { return kir_dtype_is_unsigned(t); }
static bool is_half(kiln_dtype t) { return t == KILN_F16 || t == KILN_BF16; }

/* Element type in the generated code (the prelude's typedefs); f16/bf16 are bit patterns. */
static const char *ctype(kiln_dtype t) {
  switch (t) {
  case KILN_F32: return "float";
  case KILN_F64: return "double";
  case KILN_I32: return "k_i32";
  case KILN_I64: return "k_i64";
  case KILN_BOOL: return "k_u8";
  case KILN_U8: return "k_u8";
  case KILN_I8: return "k_i8";
  case KILN_U16: return "k_u16";
  case KILN_I16: return "k_i16";
  case KILN_U32: return "k_u32";
  case KILN_U64: return "k_u64";
  case KILN_F16: case KILN_BF16: return "k_u16";
  case KILN_DTYPE_INVALID: break;
  }
  return "k_u8";
}

/* Unsigned type integer arithmetic wraps in (narrower types would promote to int). */
static const char *utype(kiln_dtype t) { return kir_dtype_bits(t) == 64 ? "k_u64" : "k_u32"; }
/* Type a value is computed in: double for f16/bf16. */
static const char *vtype(kiln_dtype t) { return is_half(t) ? "double" : ctype(t); }
/* Opening of a load widened to double, closed by ")". */
static const char *ld_open(kiln_dtype t) {
  return t == KILN_F16 ? "k_f16_ld(" : t == KILN_BF16 ? "k_bf16_ld(" : "(double)(";
}
/* Opening of a load as the compute type (vtype), closed by ")". */
static const char *lv_open(kiln_dtype t) { return is_half(t) ? ld_open(t) : "("; }
/* Opening of a store of a double (or vtype) value to dtype t, closed by ")". */
static const char *st_open(kiln_dtype t) {
  switch (t) {
  case KILN_F16: return "k_f16_st(";
  case KILN_BF16: return "k_bf16_st(";
  case KILN_F32: return "(float)(";
  case KILN_F64: return "(double)(";
  case KILN_I32: case KILN_I64: case KILN_BOOL: case KILN_U8: case KILN_I8: case KILN_U16:
  case KILN_I16: case KILN_U32: case KILN_U64: case KILN_DTYPE_INVALID:
    break;
  }
  return "(";
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Smallest power of two >= n, within [32, 1024]: threads of a block-per-row kernel. */
static int32_t pow2_block(int64_t n) {
  int32_t b = 32;
  while (b < 1024 && b < n) b *= 2;
  return b;
}

/* A double as CUDA C: hex-float literal, or the prelude's K_INF / K_NAN. */
static void put_double(kcg_buf *b, double v) {
  if (isnan(v)) kcg_printf(b, "K_NAN");
  else if (isinf(v)) kcg_printf(b, v > 0 ? "K_INF" : "(-K_INF)");
  else kcg_printf(b, v < 0 ? "(%a)" : "%a", v);
}

static void put_ilit(kcg_buf *b, kiln_dtype t, int64_t v) {
  if (t == KILN_U64) kcg_printf(b, "%lluULL", (unsigned long long)(uint64_t)v);
  else if (v == INT64_MIN) kcg_printf(b, "(-9223372036854775807LL - 1)");
  else kcg_printf(b, "%lldLL", (long long)v);
}

/* ---------------------------------------------------------------- expressions --- */

/* "x < (T)BOUND ? (T)BOUND : " (compared in the dtype when it holds the bound exactly,
 * else in double, as the interpreter compares); nothing for a NaN bound. */
static void put_clamp_side(kcg_buf *b, kiln_dtype c, const char *xa, double bound, char cmp) {
  if (isnan(bound)) return;
  const char *T = ctype(c);
  bool in_dtype = c == KILN_F64 || (double)(float)bound == bound;
  if (in_dtype) kcg_printf(b, "%s %c (%s)", xa, cmp, T);
  else kcg_printf(b, "(double)%s %c ", xa, cmp);
  put_double(b, bound);
  kcg_printf(b, " ? (%s)", T);
  put_double(b, bound);
  kcg_printf(b, " : ");
}

/* Float expression of op on xa (and xb) computed in c (f32 or f64). false: no CUDA
 * kernel for op (the ops the place pass keeps on the CPU). */
static bool put_fexpr(kcg_buf *b, kir_op op, kiln_dtype c, const char *xa, const char *xb,
                      double lo, double hi) {
  const char *T = ctype(c), *f = c == KILN_F32 ? "f" : "d";
  switch (op) {
  case KIR_OP_ADD: kcg_printf(b, "__%sadd_rn(%s, %s)", f, xa, xb); return true;
  case KIR_OP_SUB: kcg_printf(b, "__%ssub_rn(%s, %s)", f, xa, xb); return true;
  case KIR_OP_MUL: kcg_printf(b, "__%smul_rn(%s, %s)", f, xa, xb); return true;
  case KIR_OP_DIV: kcg_printf(b, "__%sdiv_rn(%s, %s)", f, xa, xb); return true;
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM:
    /* f32: PTX max/min.NaN (equal to the compare-and-select below on every value; only a
     * ±0 pair may come out with the other zero's sign) */
    if (c == KILN_F32) {
      kcg_printf(b, "k_f%s_nan(%s, %s)", op == KIR_OP_MAXIMUM ? "max" : "min", xa, xb);
      return true;
    }
    kcg_printf(b, "(isnan(%s) || isnan(%s)) ? (%s)K_NAN : (%s %c %s ? %s : %s)", xa, xb, T, xa,
               op == KIR_OP_MAXIMUM ? '>' : '<', xb, xa, xb);
    return true;
  case KIR_OP_NEG: kcg_printf(b, "-%s", xa); return true;
  case KIR_OP_EXP: kcg_printf(b, "exp(%s)", xa); return true;
  case KIR_OP_LOG: kcg_printf(b, "log(%s)", xa); return true;
  case KIR_OP_SQRT: kcg_printf(b, "__%ssqrt_rn(%s)", f, xa); return true;
  case KIR_OP_TANH: kcg_printf(b, "tanh(%s)", xa); return true;
  case KIR_OP_SIGMOID: kcg_printf(b, "__ddiv_rn(1.0, __dadd_rn(1.0, exp(-%s)))", xa); return true;
  case KIR_OP_RELU:
    if (c == KILN_F32) kcg_printf(b, "k_fmax_nan(%s, 0.0f)", xa); /* NaN stays NaN; -0 may become +0 */
    else kcg_printf(b, "%s < (%s)0 ? (%s)0 : %s", xa, T, T, xa);
    return true;
  case KIR_OP_CLAMP:
    put_clamp_side(b, c, xa, lo, '<');
    put_clamp_side(b, c, xa, hi, '>');
    kcg_printf(b, "%s", xa);
    return true;
  case KIR_OP_POW: case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  KCG_CASES_NOT_ELEMENTWISE:
    break;
  }
  return false;
}

/* Integer clamp bounds as the interpreter derives them: the smallest integer >= lo and
 * the largest <= hi, saturated to the dtype's range; NaN = no bound. */
static void put_iclamp(kcg_buf *b, kiln_dtype t, const char *xa, double lo, double hi) {
  const char *T = ctype(t);
  int64_t ilo = kcg_sat_int(isnan(lo) ? -INFINITY : ceil(lo), t);
  int64_t ihi = kcg_sat_int(isnan(hi) ? INFINITY : floor(hi), t);
  /* A bound at the dtype's limit is no bound (and a pointless comparison). */
  if (ilo != kcg_sat_int(-INFINITY, t)) {
    kcg_printf(b, "%s < (%s)", xa, T);
    put_ilit(b, t, ilo);
    kcg_printf(b, " ? (%s)", T);
    put_ilit(b, t, ilo);
    kcg_printf(b, " : ");
  }
  if (ihi != kcg_sat_int(INFINITY, t)) {
    kcg_printf(b, "(%s)", T);
    put_ilit(b, t, ihi);
    kcg_printf(b, " < %s ? (%s)", xa, T);
    put_ilit(b, t, ihi);
    kcg_printf(b, " : ");
  }
  kcg_printf(b, "%s", xa);
}

/* Integer expression, wrapping through unsigned arithmetic. Division is a statement (see
 * put_int_div). false: no integer form. */
static bool put_iexpr(kcg_buf *b, kir_op op, kiln_dtype t, const char *xa, const char *xb,
                      double lo, double hi) {
  const char *T = ctype(t), *U = utype(t);
  switch (op) {
  case KIR_OP_ADD: kcg_printf(b, "(%s)((%s)%s + (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_SUB: kcg_printf(b, "(%s)((%s)%s - (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_MUL: kcg_printf(b, "(%s)((%s)%s * (%s)%s)", T, U, xa, U, xb); return true;
  case KIR_OP_MAXIMUM: kcg_printf(b, "%s < %s ? %s : %s", xa, xb, xb, xa); return true;
  case KIR_OP_MINIMUM: kcg_printf(b, "%s < %s ? %s : %s", xb, xa, xb, xa); return true;
  case KIR_OP_NEG: kcg_printf(b, "(%s)((%s)0 - (%s)%s)", T, U, U, xa); return true;
  case KIR_OP_RELU:
    if (is_uns(t)) kcg_printf(b, "%s", xa); /* the identity */
    else kcg_printf(b, "%s < (%s)0 ? (%s)0 : %s", xa, T, T, xa);
    return true;
  case KIR_OP_CLAMP: put_iclamp(b, t, xa, lo, hi); return true;
  case KIR_OP_DIV: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH:
  case KIR_OP_SIGMOID: case KIR_OP_POW: case KIR_OP_ABS: case KIR_OP_LEAKY_RELU:
  case KIR_OP_ERF: case KIR_OP_GELU:
  KCG_CASES_NOT_ELEMENTWISE:
    break;
  }
  return false;
}

/* ---------------------------------------------------------------- kernel text --- */

static kiln_status no_kernel(kcg_cuda_kernel *k, const char *what) {
  return kcg_node_err(k->g, k->n, KILN_ERR_UNSUPPORTED, "%s on %s has no CUDA kernel", what,
                      kiln_dtype_name(k->n->type.dtype));
}

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get(op);
  return i ? i->name : "invalid";
}

/* Pointer expression for operand o as T (const or not). */
static void put_addr(kcg_buf *b, const kcg_cuda_operand *o, const char *T, bool cst) {
  const char *c = cst ? "const " : "";
  switch (o->where) {
  case KCG_CUDA_ARENA:
    kcg_printf(b, "(%s%s *)(%svoid *)(arena + %lld)", c, T, c, (long long)o->offset);
    return;
  case KCG_CUDA_WEIGHTS:
    kcg_printf(b, "(const %s *)(const void *)(weights + %lld)", T, (long long)o->offset);
    return;
  case KCG_CUDA_IO: kcg_printf(b, "(%s%s *)io[%d]", c, T, (int)o->index); return;
  }
  kcg_printf(b, "(%s%s *)0", c, T);
}

/* The kernel's opening: comment, signature, and pointers a<i> for the inputs marked in
 * use (NULL: all) and y for the output. */
static void put_open(kcg_cuda_kernel *k, const bool *use, kcg_buf *b) {
  const char *R = k->restrict_ok ? "__restrict__ " : "";
  const char *after = k->n->op == KIR_OP_CONV || k->n->op == KIR_OP_FUSED_CONV ? " epilogue after cuDNN's conv"
                                                                              : " epilogue after the GEMM";
  kcg_put_step_comment(k->g, k->n, k->step, k->epilogue_only ? after : "", b);
  kcg_printf(b, "extern \"C\" __global__ void __launch_bounds__(%d) kiln_k%d(unsigned char *arena, "
             "const unsigned char *weights, void *const *io) {\n"
             "  (void)arena; (void)weights; (void)io;\n", (int)k->block, (int)k->step);
  for (int32_t i = 0; i < k->n->n_inputs; i++) {
    if (use && !use[i]) continue;
    const char *T = ctype(k->g->nodes[k->n->inputs[i]]->type.dtype);
    kcg_printf(b, "  const %s *%sa%d = ", T, R, (int)i);
    put_addr(b, &k->in[i], T, true);
    kcg_printf(b, ";\n");
  }
  kcg_printf(b, "  %s *%sy = ", ctype(k->n->type.dtype), R);
  put_addr(b, &k->out, ctype(k->n->type.dtype), false);
  kcg_printf(b, ";\n");
}

static void put_close(kcg_buf *b) { kcg_printf(b, "}\n\n"); }

/* Index type of a kernel whose indices stay below extent: 32-bit when a grid-stride step
 * past it cannot overflow. */
static const char *idx_type(int64_t extent) {
  return extent >= 0 && extent <= INT32_MAX - KCG_CUDA_MAX_GRID * 1024 ? "k_i32" : "k_i64";
}

/* The largest element count the kernel indexes: the node's, its inputs', and t's. */
static int64_t extent_of(const kcg_cuda_kernel *k, const kir_type *t) {
  int64_t m = kir_type_numel(&k->n->type), e = t ? kir_type_numel(t) : 0;
  if (e > m) m = e;
  for (int32_t i = 0; i < k->n->n_inputs; i++) {
    e = kir_type_numel(&k->g->nodes[k->n->inputs[i]]->type);
    if (e > m) m = e;
  }
  return m < 0 ? INT64_MAX : m;
}

/* One thread per element up to KCG_CUDA_FLAT_GRID blocks of `block` threads; past that
 * each thread takes several (the kernels loop grid-stride): two million threads keep
 * any current GPU's memory busy, and per-thread work before the loop is paid less often. */
static void launch_flat(kcg_cuda_kernel *k, int64_t work) {
  k->block = KCG_CUDA_BLOCK;
  k->grid = clamp64((work + KCG_CUDA_BLOCK - 1) / KCG_CUDA_BLOCK, 1, KCG_CUDA_FLAT_GRID);
}

/* "for (I v = global thread; v < n; v += all threads) {" */
static void put_gs_loop(kcg_buf *b, const char *I, const char *v, int64_t n) {
  kcg_printf(b, "  for (%s %s = (%s)blockIdx.x * (%s)blockDim.x + (%s)threadIdx.x; %s < (%s)%lld; "
             "%s += (%s)gridDim.x * (%s)blockDim.x) {\n", I, v, I, I, I, v, I, (long long)n, v, I, I);
}

/* ---------------------------------------------------------------- index plans --- */
/* An iteration shape t (some dims reduced), the element strides of each operand over
 * t's dims, and t coalesced: size-1 dims dropped and neighbours merged where every used
 * operand's strides allow it, so the generated code divides as little as possible. */
typedef struct kplan {
  kir_type t;
  int32_t n_op;
  int64_t (*st)[KILN_MAX_RANK]; /* per operand */
  bool *use;                    /* per operand: indexed through coordinates */
  bool red[KILN_MAX_RANK];
  int32_t rank; /* groups */
  int64_t dims[KILN_MAX_RANK];
  int32_t last[KILN_MAX_RANK]; /* the group's innermost dim of t */
  bool gred[KILN_MAX_RANK];
  const char *I;
} kplan;

static kiln_status plan_init(kcg_cuda_kernel *k, kplan *p, const kir_type *t, const bool *red,
                             int32_t n_op) {
  memset(p, 0, sizeof *p);
  p->t = *t;
  p->n_op = n_op;
  for (int32_t d = 0; d < t->rank; d++) p->red[d] = red && red[d];
  size_t n = (size_t)(n_op > 0 ? n_op : 1);
  p->st = kir_calloc(n, sizeof *p->st);
  p->use = kir_calloc(n, sizeof *p->use);
  if (p->st && p->use) return KILN_OK;
  kir_free(p->st);
  kir_free(p->use);
  p->st = NULL;
  p->use = NULL;
  return kcg_node_err(k->g, k->n, KILN_ERR_NOMEM, "out of memory for the CUDA kernel");
}

static void plan_free(kplan *p) {
  kir_free(p->st);
  kir_free(p->use);
  p->st = NULL;
  p->use = NULL;
}

/* Operand i reads input `in` broadcast to t. */
static void plan_bcast(kplan *p, int32_t i, const kir_type *in) {
  kcg_bcast_strides(in, &p->t, p->st[i]);
  p->use[i] = true;
}

static bool mergeable(const kplan *p, int32_t outer, int32_t inner) {
  for (int32_t i = 0; i < p->n_op; i++)
    if (p->use[i] && p->st[i][outer] != p->st[i][inner] * p->t.dims[inner]) return false;
  return true;
}

static void plan_coalesce(kplan *p, int64_t extent) {
  int32_t prev = -1;
  p->rank = 0;
  for (int32_t d = 0; d < p->t.rank; d++) {
    if (p->t.dims[d] == 1) continue;
    if (prev >= 0 && p->gred[p->rank - 1] == p->red[d] && mergeable(p, prev, d)) {
      p->dims[p->rank - 1] *= p->t.dims[d];
      p->last[p->rank - 1] = d;
    } else {
      p->dims[p->rank] = p->t.dims[d];
      p->last[p->rank] = d;
      p->gred[p->rank] = p->red[d];
      p->rank++;
    }
    prev = d;
  }
  p->I = idx_type(extent);
}

/* Whether some used operand moves along group g. */
static bool group_needed(const kplan *p, int32_t g) {
  for (int32_t i = 0; i < p->n_op; i++)
    if (p->use[i] && p->st[i][p->last[g]] != 0) return true;
  return false;
}

/* Declares the coordinates PFX<g> of the groups with gred == red, decomposed from the
 * flat index `flat` (row-major over those groups); only the needed ones. */
static void put_coords(kcg_buf *b, const kplan *p, bool red, const char *flat, const char *pfx,
                       const char *ind) {
  int32_t list[KILN_MAX_RANK], m = 0, jmin = -1;
  for (int32_t g = 0; g < p->rank; g++)
    if (p->gred[g] == red) list[m++] = g;
  for (int32_t j = m - 1; j >= 0; j--)
    if (group_needed(p, list[j])) jmin = j;
  if (jmin < 0) return;
  if (m == 1) {
    kcg_printf(b, "%sconst %s %s%d = %s;\n", ind, p->I, pfx, (int)list[0], flat);
    return;
  }
  kcg_printf(b, "%s%s %s_rem = %s;\n", ind, p->I, pfx, flat);
  for (int32_t j = m - 1; j > jmin; j--) {
    long long D = (long long)p->dims[list[j]];
    if (group_needed(p, list[j]))
      kcg_printf(b, "%sconst %s %s%d = %s_rem %% %lld;\n", ind, p->I, pfx, (int)list[j], pfx, D);
    kcg_printf(b, "%s%s_rem /= %lld;\n", ind, pfx, D);
  }
  if (jmin == 0) kcg_printf(b, "%sconst %s %s%d = %s_rem;\n", ind, p->I, pfx, (int)list[0], pfx);
  else
    kcg_printf(b, "%sconst %s %s%d = %s_rem %% %lld;\n", ind, p->I, pfx, (int)list[jmin], pfx,
               (long long)p->dims[list[jmin]]);
}

/* Operand i's element index over the coordinates ("0" when it moves along none). */
static void put_index(kcg_buf *b, const kplan *p, int32_t i, const char *kpfx, const char *rpfx) {
  bool any = false;
  for (int32_t g = 0; g < p->rank; g++) {
    int64_t s = p->st[i][p->last[g]];
    if (s == 0) continue;
    const char *pf = p->gred[g] ? rpfx : kpfx;
    if (s == 1) kcg_printf(b, "%s%s%d", any ? " + " : "", pf, (int)g);
    else kcg_printf(b, "%s%s%d * %lld", any ? " + " : "", pf, (int)g, (long long)s);
    any = true;
  }
  if (!any) kcg_printf(b, "0");
}

/* ---------------------------------------------------------------- chains -------- */

/* Where operand i is read: the flat index when it has t's shape (flat set), else its
 * broadcast index over the coordinates. */
static void put_load(kcg_buf *b, const kcg_cuda_kernel *k, const kplan *p, int32_t i,
                     const char *flat, const char *kpfx, const char *rpfx) {
  kiln_dtype dt = k->g->nodes[k->n->inputs[i]]->type.dtype;
  kcg_printf(b, "%sa%d[", lv_open(dt), (int)i);
  if (flat && kcg_same_shape(&k->g->nodes[k->n->inputs[i]]->type, &p->t)) kcg_printf(b, "%s", flat);
  else put_index(b, p, i, kpfx, rpfx);
  kcg_printf(b, "])");
}

/* "v = STEP(v, cS);" for epilogue step s: in the dtype for f64 and the ops exact_in_f32
 * lists, else in double rounded to the dtype after the step, as the interpreter does;
 * f16/bf16 (v a double) rounded to the type after every step. */
static kiln_status put_step(kcg_cuda_kernel *k, const kir_epilogue *e, int32_t s, const char *xb,
                            const char *ind, kcg_buf *b) {
  kir_op op = (kir_op)e->op[s];
  kiln_dtype t = k->n->type.dtype;
  bool native = t == KILN_F64 || (t == KILN_F32 && kcg_exact_in_f32(op)), ok;
  char xbd[40];
  if (xb) snprintf(xbd, sizeof xbd, "(double)%s", xb);
  if (is_half(t)) kcg_printf(b, "%sv = %s(", ind, t == KILN_F16 ? "k_f16_rnd" : "k_bf16_rnd");
  else kcg_printf(b, "%sv = (%s)(", ind, ctype(t));
  if (native)
    ok = xb && e->swap[s] ? put_fexpr(b, op, t, xb, "v", NAN, NAN)
         : put_fexpr(b, op, t, "v", xb, e->clamp_min[s], e->clamp_max[s]);
  else
    ok = xb && e->swap[s] ? put_fexpr(b, op, KILN_F64, xbd, "(double)v", NAN, NAN)
         : put_fexpr(b, op, KILN_F64, "(double)v", xb ? xbd : NULL, e->clamp_min[s], e->clamp_max[s]);
  kcg_printf(b, ");\n");
  if (!ok) return no_kernel(k, op_name(op));
  return KILN_OK;
}

/* Whether epilogue step s reads one element (a scalar or all-ones shape: index 0). */
static bool single_operand(const kcg_cuda_kernel *k, const kir_epilogue *e, int32_t s) {
  return e->operand[s] >= 0 && kir_type_numel(&k->g->nodes[k->n->inputs[e->operand[s]]]->type) == 1;
}

/* Declares uS for every step reading one element, before the grid-stride loop: a
 * constant the chain uses at every element is loaded once per thread, not once per
 * element (a 50-op chain of scalar constants is otherwise bound by those loads). */
static void put_hoisted(kcg_cuda_kernel *k, const kir_epilogue *e, kcg_buf *b) {
  for (int32_t s = 0; s < e->n; s++) {
    if (!single_operand(k, e, s)) continue;
    int32_t i = (int32_t)e->operand[s];
    kcg_printf(b, "  const %s u%d = %sa%d[0]);\n", vtype(k->n->type.dtype), (int)s,
               lv_open(k->g->nodes[k->n->inputs[i]]->type.dtype), (int)i);
  }
  k->hoisted = true;
}

/* The epilogue steps on the local `v`, each binary step's operand loaded first (unless
 * put_hoisted declared it). */
static kiln_status put_steps(kcg_cuda_kernel *k, const kir_epilogue *e, const kplan *p,
                             const char *flat, const char *kpfx, const char *rpfx,
                             const char *ind, kcg_buf *b) {
  for (int32_t s = 0; s < e->n; s++) {
    char xb[16];
    snprintf(xb, sizeof xb, "u%d", (int)s);
    if (e->operand[s] >= 0 && !(k->hoisted && single_operand(k, e, s))) {
      kcg_printf(b, "%sconst %s %s = ", ind, vtype(k->n->type.dtype), xb);
      put_load(b, k, p, (int32_t)e->operand[s], flat, kpfx, rpfx);
      kcg_printf(b, ";\n");
    }
    kiln_status st = put_step(k, e, s, e->operand[s] >= 0 ? xb : NULL, ind, b);
    if (st) return st;
  }
  return KILN_OK;
}

/* Declares `V v`, the chain's value at the current element: input 0, then every step. */
static kiln_status put_chain(kcg_cuda_kernel *k, const kir_epilogue *e, const kplan *p,
                             const char *flat, const char *kpfx, const char *rpfx,
                             const char *ind, kcg_buf *b) {
  kcg_printf(b, "%s%s v = ", ind, vtype(k->n->type.dtype));
  put_load(b, k, p, 0, flat, kpfx, rpfx);
  kcg_printf(b, ";\n");
  return put_steps(k, e, p, flat, kpfx, rpfx, ind, b);
}

/* The inputs a fused kernel reads (*decl, kir_calloc): the epilogue's operands, and
 * input 0 for a chain (whose value starts as input 0). */
static kiln_status chain_decl(kcg_cuda_kernel *k, const kir_epilogue *e, bool chain, bool **decl) {
  int32_t n = k->n->n_inputs;
  *decl = kir_calloc((size_t)(n > 0 ? n : 1), sizeof **decl);
  if (!*decl) return kcg_node_err(k->g, k->n, KILN_ERR_NOMEM, "out of memory for the CUDA kernel");
  (*decl)[0] = chain;
  for (int32_t s = 0; s < e->n; s++)
    if (e->operand[s] >= 0 && e->operand[s] < n) (*decl)[e->operand[s]] = true;
  return KILN_OK;
}

/* Checks that the epilogue's operands broadcast into `into` and have the node's dtype. */
static kiln_status check_operands(kcg_cuda_kernel *k, const kir_epilogue *e, const kir_type *into) {
  for (int32_t s = 0; s < e->n; s++) {
    if (e->operand[s] < 0) continue;
    const kir_type *ct = &k->g->nodes[k->n->inputs[e->operand[s]]]->type;
    if (!kcg_bcast_into(ct, into) || ct->dtype != k->n->type.dtype)
      return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "epilogue operand %d does not broadcast to %s",
                          (int)e->operand[s], "the node's shape");
  }
  return KILN_OK;
}

/* A plain elementwise op as a one-step chain: input 0, then op with input 1. */
typedef struct one_step {
  int64_t op, operand, swap;
  double lo, hi;
  kir_epilogue e;
} one_step;

static void one_step_init(one_step *o, const kir_node *n) {
  o->op = n->op;
  o->operand = n->n_inputs > 1 ? 1 : -1;
  o->swap = 0;
  o->lo = kir_attr_float(n, "min", NAN);
  o->hi = kir_attr_float(n, "max", NAN);
  o->e = (kir_epilogue){1, &o->op, &o->operand, &o->swap, &o->lo, &o->hi};
}

/* Decodes the epilogue and the chain's shape t (the broadcast of every input). */
static kiln_status chain_prepare(kcg_cuda_kernel *k, kir_epilogue *e, kir_type *t) {
  kir_graph *g = k->g;
  const kir_node *n = k->n;
  kiln_status s = kir_epilogue_get(g, n, e);
  if (s) return s;
  if (!is_float(n->type.dtype)) return no_kernel(k, op_name(n->op));
  *t = g->nodes[n->inputs[0]]->type;
  for (int32_t i = 1; i < n->n_inputs; i++) {
    kir_type bt;
    if (!kir_broadcast(t, &g->nodes[n->inputs[i]]->type, &bt))
      return kcg_node_err(g, n, KILN_ERR_SHAPE, "input %d does not broadcast with the others", (int)i);
    *t = bt;
  }
  for (int32_t i = 0; i < n->n_inputs; i++)
    if (g->nodes[n->inputs[i]]->type.dtype != n->type.dtype)
      return kcg_node_err(g, n, KILN_ERR_TYPE, "input %d is not %s", (int)i, kiln_dtype_name(n->type.dtype));
  t->dtype = n->type.dtype;
  return KILN_OK;
}

/* ---------------------------------------------------------------- elementwise --- */

/* Integer division: by zero sets the error word and stores 0; INT_MIN / -1 wraps. */
static void put_int_div(kcg_cuda_kernel *k, kcg_buf *b) {
  kiln_dtype t = k->n->type.dtype;
  const char *T = ctype(t), *U = utype(t);
  kcg_printf(b, "    if (x1 == (%s)0) {\n      atomicCAS(&kiln_error, 0u, %uu);\n      y[i] = (%s)0;\n"
             "    } else {\n", T, (unsigned)k->step + 1u, T);
  if (is_uns(t)) kcg_printf(b, "      y[i] = (%s)(x0 / x1);\n    }\n", T);
  else kcg_printf(b, "      y[i] = x1 == (%s)-1 ? (%s)((%s)0 - (%s)x0) : (%s)(x0 / x1);\n    }\n", T, T,
                  U, U, T);
}

static kiln_status put_int_body(kcg_cuda_kernel *k, const kplan *p, kcg_buf *b) {
  kiln_dtype t = k->n->type.dtype;
  for (int32_t i = 0; i < k->n->n_inputs; i++) {
    kcg_printf(b, "    const %s x%d = ", ctype(t), (int)i);
    put_load(b, k, p, i, "i", "c", "c");
    kcg_printf(b, ";\n");
  }
  if (k->n->op == KIR_OP_DIV) {
    put_int_div(k, b);
    return KILN_OK;
  }
  kcg_printf(b, "    y[i] = ");
  bool ok = put_iexpr(b, k->n->op, t, "x0", k->n->n_inputs > 1 ? "x1" : NULL,
                      kir_attr_float(k->n, "min", NAN), kir_attr_float(k->n, "max", NAN));
  kcg_printf(b, ";\n");
  return ok ? KILN_OK : no_kernel(k, op_name(k->n->op));
}

/* Elements per thread per trip of an unrolled float chain (ew_body). */
#define EW_UNROLL 4

/* Whether a float chain can run unrolled: input 0 has t's shape and every other input it
 * reads either has t's shape too (read at the flat index) or is a single element. */
static bool ew_unrollable(const kcg_cuda_kernel *k, const kir_epilogue *e, const bool *decl,
                          const kplan *p) {
  if (!e || !is_float(k->n->type.dtype)) return false;
  for (int32_t i = 0; i < k->n->n_inputs; i++) {
    if (decl && !decl[i]) continue;
    const kir_type *t = &k->g->nodes[k->n->inputs[i]]->type;
    if (!kcg_same_shape(t, &p->t) && (i == 0 || kir_type_numel(t) != 1)) return false;
  }
  return true;
}

/* The chain, EW_UNROLL elements a grid-stride apart per trip: every thread first loads
 * its EW_UNROLL values of input 0, then runs the chain on each and stores it. Loads in
 * flight before the arithmetic hide the memory latency a one-element loop exposes (a
 * 50-op chain otherwise waits for each load, then computes, then waits again). */
static kiln_status ew_unrolled(kcg_cuda_kernel *k, const kir_epilogue *e, kplan *p, int64_t numel,
                               kcg_buf *b) {
  const char *I = p->I, *V = vtype(k->n->type.dtype);
  long long n = (long long)numel;
  kcg_printf(b, "  const %s S = (%s)gridDim.x * (%s)blockDim.x;\n", I, I, I);
  kcg_printf(b, "  for (%s i0 = (%s)blockIdx.x * (%s)blockDim.x + (%s)threadIdx.x; i0 < (%s)%lld; "
             "i0 += (%s)%d * S) {\n", I, I, I, I, I, n, I, EW_UNROLL);
  kcg_printf(b, "    %s x[%d];\n#pragma unroll\n    for (int u = 0; u < %d; u++) {\n", V, EW_UNROLL, EW_UNROLL);
  kcg_printf(b, "      const %s i = i0 + (%s)u * S;\n      x[u] = i < (%s)%lld ? ", I, I, I, n);
  put_load(b, k, p, 0, "i", "c", "c");
  kcg_printf(b, " : (%s)0;\n    }\n#pragma unroll\n    for (int u = 0; u < %d; u++) {\n", V, EW_UNROLL);
  /* With every other operand hoisted the steps read no memory: the chains of all
   * EW_UNROLL elements run unguarded (a lane past the end computes on 0 and is not
   * stored), so the compiler can interleave them; else each stops at the end. */
  bool pure = true;
  for (int32_t st = 0; st < e->n; st++) pure = pure && (e->operand[st] < 0 || single_operand(k, e, st));
  kcg_printf(b, "      const %s i = i0 + (%s)u * S;\n", I, I);
  if (!pure) kcg_printf(b, "      if (i >= (%s)%lld) break;\n", I, n);
  else kcg_printf(b, "      (void)i;\n");
  kcg_printf(b, "      %s v = x[u];\n", V);
  kiln_status s = put_steps(k, e, p, "i", "c", "c", "      ", b);
  if (!pure) {
    kcg_printf(b, "      y[i] = %sv);\n    }\n  }\n", st_open(k->n->type.dtype));
    return s;
  }
  kcg_printf(b, "      x[u] = v;\n    }\n#pragma unroll\n    for (int u = 0; u < %d; u++) {\n", EW_UNROLL);
  kcg_printf(b, "      const %s i = i0 + (%s)u * S;\n      if (i < (%s)%lld) y[i] = %sx[u]);\n    }\n  }\n",
             I, I, I, n, st_open(k->n->type.dtype));
  return s;
}

/* One thread per element of t: a plain elementwise op (e NULL) or a fused chain. */
static kiln_status ew_body(kcg_cuda_kernel *k, const kir_epilogue *e, const bool *decl, kplan *p,
                           kcg_buf *b) {
  const kir_node *n = k->n;
  int64_t numel = kir_type_numel(&p->t);
  one_step os;
  put_open(k, decl, b);
  if (numel == 0) { put_close(b); return KILN_OK; }
  if (is_float(n->type.dtype) && !e) {
    one_step_init(&os, n);
    e = &os.e;
  }
  if (e) put_hoisted(k, e, b);
  if (ew_unrollable(k, e, decl, p)) {
    kiln_status s = ew_unrolled(k, e, p, numel, b);
    put_close(b);
    return s;
  }
  put_gs_loop(b, p->I, "i", numel);
  put_coords(b, p, false, "i", "c", "    ");
  kiln_status s;
  if (!is_float(n->type.dtype)) {
    s = put_int_body(k, p, b);
  } else {
    s = put_chain(k, e, p, "i", "c", "c", "    ", b);
    kcg_printf(b, "    y[i] = %sv);\n", st_open(n->type.dtype));
  }
  kcg_printf(b, "  }\n");
  put_close(b);
  return s;
}

/* The plan of an elementwise kernel over t: every input it reads (decl NULL: all)
 * broadcast, the ones of t's shape read at the flat index. */
static kiln_status ew_plan(kcg_cuda_kernel *k, const kir_type *t, const bool *decl, kplan *p) {
  kiln_status s = plan_init(k, p, t, NULL, k->n->n_inputs);
  if (s) return s;
  for (int32_t i = 0; i < k->n->n_inputs; i++) {
    const kir_type *in = &k->g->nodes[k->n->inputs[i]]->type;
    if (decl && !decl[i]) continue;
    plan_bcast(p, i, in);
    if (kcg_same_shape(in, t)) p->use[i] = false; /* flat: no coordinates */
  }
  plan_coalesce(p, extent_of(k, t));
  return KILN_OK;
}

static kiln_status emit_elementwise(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  kiln_dtype t = n->type.dtype;
  for (int32_t i = 0; i < n->n_inputs; i++) {
    const kir_type *in = &k->g->nodes[n->inputs[i]]->type;
    if (!kcg_bcast_into(in, &n->type) || in->dtype != t)
      return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "input %d does not broadcast to the output", (int)i);
  }
  if (!is_float(t) && !is_int(t)) return no_kernel(k, op_name(n->op));
  if (!is_float(t) && kir_op_has(n->op, KIR_F_FLOAT_ONLY)) return no_kernel(k, op_name(n->op));
  kplan p;
  kiln_status s = ew_plan(k, &n->type, NULL, &p);
  if (s) return s;
  launch_flat(k, kir_type_numel(&n->type));
  s = ew_body(k, NULL, NULL, &p, b);
  plan_free(&p);
  return s;
}

static kiln_status emit_fused_elementwise(kcg_cuda_kernel *k, kcg_buf *b) {
  kir_epilogue e;
  kir_type t;
  kplan p;
  kiln_status s = chain_prepare(k, &e, &t);
  if (s) return s;
  if (!kcg_same_shape(&t, &k->n->type))
    return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "the chain's shape is not the node's");
  bool *decl = NULL;
  if ((s = chain_decl(k, &e, true, &decl))) return s;
  if ((s = ew_plan(k, &t, decl, &p))) {
    kir_free(decl);
    return s;
  }
  launch_flat(k, kir_type_numel(&t));
  s = ew_body(k, &e, decl, &p, b);
  plan_free(&p);
  kir_free(decl);
  return s;
}

/* ---------------------------------------------------------------- add_n, copies - */

static kiln_status emit_add_n(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  kiln_dtype t = n->type.dtype;
  for (int32_t i = 0; i < n->n_inputs; i++)
    if (!kir_type_equal(&k->g->nodes[n->inputs[i]]->type, &n->type))
      return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "add_n input %d differs in type or shape", (int)i);
  if (!is_float(t) && !is_int(t)) return no_kernel(k, "add_n");
  int64_t numel = kir_type_numel(&n->type);
  launch_flat(k, numel);
  put_open(k, NULL, b);
  if (numel > 0) {
    put_gs_loop(b, idx_type(numel), "i", numel);
    kcg_printf(b, is_float(t) ? "    double acc = 0.0;\n" : "    k_u64 acc = 0;\n");
    for (int32_t i = 0; i < n->n_inputs; i++) {
      if (is_float(t)) kcg_printf(b, "    acc = __dadd_rn(acc, %sa%d[i]));\n", ld_open(t), (int)i);
      else kcg_printf(b, "    acc += (k_u64)a%d[i];\n", (int)i);
    }
    if (is_float(t)) kcg_printf(b, "    y[i] = %sacc);\n  }\n", st_open(t));
    else kcg_printf(b, "    y[i] = (%s)(%s)acc;\n  }\n", ctype(t), utype(t));
  }
  put_close(b);
  return KILN_OK;
}

/* reshape / identity that the plan does not alias: an element copy. */
static kiln_status emit_copy(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_type *in = &k->g->nodes[k->n->inputs[0]]->type;
  int64_t numel = kir_type_numel(&k->n->type);
  if (in->dtype != k->n->type.dtype || kir_type_numel(in) != numel || numel < 0)
    return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "input and output sizes differ");
  launch_flat(k, numel);
  put_open(k, NULL, b);
  if (numel > 0) {
    put_gs_loop(b, idx_type(numel), "i", numel);
    kcg_printf(b, "    y[i] = a0[i];\n  }\n");
  }
  put_close(b);
  return KILN_OK;
}

static kiln_status emit_transpose(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  const kir_type *in = &k->g->nodes[n->inputs[0]]->type;
  int32_t cnt = 0;
  const int64_t *pv = kir_attr_ints(n, "perm", &cnt);
  bool present = kir_attr_find(n, "perm") != NULL, seen[KILN_MAX_RANK] = {false};
  int64_t ist[KILN_MAX_RANK];
  if ((present && cnt != in->rank) || in->rank != n->type.rank || in->dtype != n->type.dtype)
    return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "perm has %d entries for rank %d", (int)cnt, (int)in->rank);
  kplan p;
  kiln_status s = plan_init(k, &p, &n->type, NULL, 1);
  if (s) return s;
  kcg_contiguous_strides(in, ist);
  for (int32_t d = 0; d < in->rank && !s; d++) {
    int64_t q = present ? pv[d] : in->rank - 1 - d;
    if (q < 0 || q >= in->rank || seen[q] || n->type.dims[d] != in->dims[q])
      s = kcg_node_err(k->g, n, KILN_ERR_SHAPE, "perm entry %d (%lld) is not a permutation", (int)d,
                       (long long)q);
    else seen[q] = true, p.st[0][d] = in->dims[q] == 1 ? 0 : ist[q];
  }
  p.use[0] = true;
  int64_t numel = kir_type_numel(&n->type);
  if (!s) {
    plan_coalesce(&p, extent_of(k, NULL));
    launch_flat(k, numel);
    put_open(k, NULL, b);
    if (numel > 0) {
      put_gs_loop(b, p.I, "i", numel);
      put_coords(b, &p, false, "i", "c", "    ");
      kcg_printf(b, "    y[i] = a0[");
      put_index(b, &p, 0, "c", "c");
      kcg_printf(b, "];\n  }\n");
    }
    put_close(b);
  }
  plan_free(&p);
  return s;
}

/* ---------------------------------------------------------------- reductions ---- */

/* How a reduction accumulates: floats in double, integer sums wrapping in k_u64,
 * integer max in k_i64 or k_u64. */
typedef struct red_kind {
  kir_op op; /* reduce_sum, reduce_mean or reduce_max */
  kiln_dtype t;
  const char *acc; /* accumulator type */
} red_kind;

static void put_red_init(const red_kind *r, kcg_buf *b) {
  if (is_float(r->t)) kcg_printf(b, "double acc = %s;\n", r->op == KIR_OP_REDUCE_MAX ? "-K_INF" : "0.0");
  else if (r->op == KIR_OP_REDUCE_MAX && !is_uns(r->t)) kcg_printf(b, "k_i64 acc = (-9223372036854775807LL - 1);\n");
  else kcg_printf(b, "k_u64 acc = 0;\n");
}

/* The accumulator combined with x (A and X are expressions of the accumulator type). */
static void put_red_comb(const red_kind *r, const char *A, const char *X, kcg_buf *b) {
  if (r->op != KIR_OP_REDUCE_MAX) {
    if (is_float(r->t)) kcg_printf(b, "__dadd_rn(%s, %s)", A, X);
    else kcg_printf(b, "%s + %s", A, X);
  } else if (is_float(r->t)) {
    kcg_printf(b, "(isnan(%s) || isnan(%s)) ? K_NAN : (%s > %s ? %s : %s)", A, X, A, X, A, X);
  } else {
    kcg_printf(b, "%s > %s ? %s : %s", A, X, A, X);
  }
}

/* "y[o] = FINAL;" from `acc`. */
static void put_red_store(const red_kind *r, int64_t count, const char *ind, kcg_buf *b) {
  if (r->op == KIR_OP_REDUCE_MEAN)
    kcg_printf(b, "%sy[o] = %s__ddiv_rn(acc, %lld.0));\n", ind, st_open(r->t), (long long)count);
  else if (is_float(r->t)) kcg_printf(b, "%sy[o] = %sacc);\n", ind, st_open(r->t));
  else kcg_printf(b, "%sy[o] = (%s)(%s)acc;\n", ind, ctype(r->t), utype(r->t));
}

/* Tree reduction of each thread's `var` over the block's `nt` threads in sh[]; every
 * thread ends with the result in var. */
static void put_block_reduce(const red_kind *r, int32_t nt, const char *var, const char *ind,
                             kcg_buf *b) {
  kcg_printf(b, "%ssh[threadIdx.x] = %s;\n%s__syncthreads();\n", ind, var, ind);
  kcg_printf(b, "%sfor (int h = %d; h > 0; h >>= 1) {\n%s  if ((int)threadIdx.x < h) sh[threadIdx.x] = ",
             ind, (int)nt / 2, ind);
  put_red_comb(r, "sh[threadIdx.x]", "sh[threadIdx.x + h]", b);
  kcg_printf(b, ";\n%s  __syncthreads();\n%s}\n", ind, ind);
  kcg_printf(b, "%s%s = sh[0];\n%s__syncthreads();\n", ind, var, ind);
}

/* The element x of the reduction at coordinates ck / cr: the input (plain) or the
 * chain's value (fused), then folded into acc. */
static kiln_status put_red_elem(kcg_cuda_kernel *k, const red_kind *r, const kir_epilogue *e,
                                const kplan *p, const char *ind, kcg_buf *b) {
  if (e) {
    kiln_status s = put_chain(k, e, p, NULL, "ck", "cr", ind, b);
    if (s) return s;
    kcg_printf(b, "%sconst %s x = %sv;\n", ind, r->acc, is_float(r->t) ? "(double)" : "");
  } else if (is_float(r->t)) {
    kcg_printf(b, "%sconst double x = %sa0[", ind, ld_open(r->t));
    put_index(b, p, 0, "ck", "cr");
    kcg_printf(b, "]);\n");
  } else {
    kcg_printf(b, "%sconst %s x = (%s)a0[", ind, r->acc, r->acc);
    put_index(b, p, 0, "ck", "cr");
    kcg_printf(b, "];\n");
  }
  kcg_printf(b, "%sacc = ", ind);
  put_red_comb(r, "acc", "x", b);
  kcg_printf(b, ";\n");
  return KILN_OK;
}

/* Reduction with one thread per output (the reduced elements in the interpreter's order)
 * or, when the innermost dims are reduced and long, one block per output (coalesced
 * reads, shared-memory tree). */
static kiln_status red_body(kcg_cuda_kernel *k, const red_kind *r, const kir_epilogue *e,
                            const bool *decl, const kplan *p, int64_t outs, int64_t count,
                            kcg_buf *b) {
  bool block = p->rank > 0 && p->gred[p->rank - 1] && count >= 32;
  int32_t nt = block ? pow2_block(count) : KCG_CUDA_BLOCK;
  kiln_status s = KILN_OK;
  if (block) {
    k->block = nt;
    k->grid = clamp64(outs, 1, KCG_CUDA_MAX_GRID);
  } else {
    launch_flat(k, outs);
  }
  put_open(k, decl, b);
  if (outs == 0) { put_close(b); return KILN_OK; }
  const char *I = p->I;
  if (block) {
    kcg_printf(b, "  __shared__ %s sh[%d];\n", r->acc, (int)nt);
    kcg_printf(b, "  for (%s o = (%s)blockIdx.x; o < (%s)%lld; o += (%s)gridDim.x) {\n", I, I, I,
               (long long)outs, I);
  } else {
    put_gs_loop(b, I, "o", outs);
  }
  put_coords(b, p, false, "o", "ck", "    ");
  kcg_printf(b, "    ");
  put_red_init(r, b);
  if (count > 0) {
    if (block) kcg_printf(b, "    for (%s r = (%s)threadIdx.x; r < (%s)%lld; r += (%s)%d) {\n", I, I, I,
                          (long long)count, I, (int)nt);
    else kcg_printf(b, "    for (%s r = 0; r < (%s)%lld; r++) {\n", I, I, (long long)count);
    put_coords(b, p, true, "r", "cr", "      ");
    s = put_red_elem(k, r, e, p, "      ", b);
    kcg_printf(b, "    }\n");
  }
  if (block) {
    put_block_reduce(r, nt, "acc", "    ", b);
    kcg_printf(b, "    if (threadIdx.x == 0) {\n");
    put_red_store(r, count, "      ", b);
    kcg_printf(b, "    }\n");
  } else {
    put_red_store(r, count, "    ", b);
  }
  kcg_printf(b, "  }\n");
  put_close(b);
  return s;
}

/* Plain (e NULL: input 0 over t) or fused (the chain over t) reduction of kind op. */
static kiln_status emit_red(kcg_cuda_kernel *k, kir_op op, const kir_epilogue *e, const kir_type *t,
                            const bool *decl, kcg_buf *b) {
  const kir_node *n = k->n;
  red_kind r = {op, n->type.dtype, NULL};
  bool red[KILN_MAX_RANK];
  int64_t count = 1, outs = 1;
  kiln_status s = kcg_reduced_axes(k->g, k->n, t, red);
  if (s) return s;
  if (op != KIR_OP_REDUCE_SUM && op != KIR_OP_REDUCE_MEAN && op != KIR_OP_REDUCE_MAX)
    return no_kernel(k, op_name(op));
  if ((!is_float(r.t) && !is_int(r.t)) || (op == KIR_OP_REDUCE_MEAN && !is_float(r.t)))
    return no_kernel(k, op_name(op));
  r.acc = is_float(r.t) ? "double" : op == KIR_OP_REDUCE_MAX && !is_uns(r.t) ? "k_i64" : "k_u64";
  for (int32_t d = 0; d < t->rank; d++) {
    if (red[d]) count *= t->dims[d];
    else outs *= t->dims[d];
  }
  if (count == 0 && op == KIR_OP_REDUCE_MAX)
    return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "%s over an empty axis", op_name(op));
  if (outs != kir_type_numel(&n->type) || t->dtype != n->type.dtype)
    return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "the reduction's size is not the node's");
  kplan p;
  if ((s = plan_init(k, &p, t, red, n->n_inputs))) return s;
  for (int32_t i = 0; i < n->n_inputs; i++)
    if (!decl || decl[i]) plan_bcast(&p, i, &k->g->nodes[n->inputs[i]]->type);
  plan_coalesce(&p, extent_of(k, t));
  s = red_body(k, &r, e, decl, &p, outs, count, b);
  plan_free(&p);
  return s;
}

static kiln_status emit_reduce(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_type *in = &k->g->nodes[k->n->inputs[0]]->type;
  if (in->dtype != k->n->type.dtype)
    return kcg_node_err(k->g, k->n, KILN_ERR_TYPE, "input is %s, the node %s", kiln_dtype_name(in->dtype),
                        kiln_dtype_name(k->n->type.dtype));
  return emit_red(k, k->n->op, NULL, in, NULL, b);
}

static kiln_status emit_fused_reduce(kcg_cuda_kernel *k, kcg_buf *b) {
  kir_epilogue e;
  kir_type t;
  bool *decl = NULL;
  kiln_status s = chain_prepare(k, &e, &t);
  if (s || (s = chain_decl(k, &e, true, &decl))) return s;
  s = emit_red(k, (kir_op)kir_attr_int(k->n, "reduce", 0), &e, &t, decl, b);
  kir_free(decl);
  return s;
}

/* ---------------------------------------------------------------- softmax ------- */

/* "for (k_i64 j = threadIdx.x; j < LEN; j += NT) {" with e the element's index. */
static void put_row_loop(kcg_buf *b, int64_t len, int64_t inner, int32_t nt) {
  kcg_printf(b, "    for (k_i64 j = (k_i64)threadIdx.x; j < %lldLL; j += %d) {\n", (long long)len, (int)nt);
  if (inner == 1) kcg_printf(b, "      const k_i64 e = base + j;\n");
  else kcg_printf(b, "      const k_i64 e = base + j * %lldLL;\n", (long long)inner);
}

/* Softmax of each row (the elements along axis ax) of `src` into y, one block per row:
 * max, then the sum of exp(x - max), then exp(x - max) / sum, all in double. */
static void put_softmax_rows(kcg_cuda_kernel *k, const kir_type *t, int64_t ax, const char *src,
                             int32_t nt, kcg_buf *b) {
  const red_kind mx = {KIR_OP_REDUCE_MAX, KILN_F64, "double"}, sum = {KIR_OP_REDUCE_SUM, KILN_F64, "double"};
  kiln_dtype dt = k->n->type.dtype;
  int64_t len = t->dims[ax], inner = 1;
  for (int32_t d = (int32_t)ax + 1; d < t->rank; d++) inner *= t->dims[d];
  kcg_printf(b, "    double m = -K_INF, s = 0.0;\n");
  put_row_loop(b, len, inner, nt);
  kcg_printf(b, "      const double x = %s%s[e]);\n      m = ", ld_open(dt), src);
  put_red_comb(&mx, "m", "x", b);
  kcg_printf(b, ";\n    }\n");
  put_block_reduce(&mx, nt, "m", "    ", b);
  put_row_loop(b, len, inner, nt);
  kcg_printf(b, "      s = __dadd_rn(s, exp(__dsub_rn(%s%s[e]), m)));\n    }\n", ld_open(dt), src);
  put_block_reduce(&sum, nt, "s", "    ", b);
  put_row_loop(b, len, inner, nt);
  kcg_printf(b, "      y[e] = %s__ddiv_rn(exp(__dsub_rn(%s%s[e]), m)), s));\n    }\n", st_open(dt),
             ld_open(dt), src);
}

/* softmax (e NULL) or fused_softmax: the chain's value is first stored in y (rounded to
 * the dtype, as the interpreter's chain), then y's rows are normalized in place. */
static kiln_status softmax_body(kcg_cuda_kernel *k, const kir_epilogue *e, const bool *decl,
                                const kplan *p, kcg_buf *b) {
  const kir_type *t = &p->t;
  int64_t ax = kir_attr_int(k->n, "axis", -1), outer = 1, inner = 1;
  if (ax < 0) ax += t->rank;
  if (ax < 0 || ax >= t->rank)
    return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "softmax axis %lld for rank %d",
                        (long long)kir_attr_int(k->n, "axis", -1), (int)t->rank);
  for (int32_t d = 0; d < ax; d++) outer *= t->dims[d];
  for (int32_t d = (int32_t)ax + 1; d < t->rank; d++) inner *= t->dims[d];
  int64_t len = t->dims[ax], rows = outer * inner;
  int32_t nt = pow2_block(len);
  k->block = nt;
  k->grid = clamp64(rows, 1, KCG_CUDA_MAX_GRID);
  put_open(k, decl, b);
  kiln_status s = KILN_OK;
  if (kir_type_numel(t) > 0) {
    kcg_printf(b, "  __shared__ double sh[%d];\n", (int)nt);
    kcg_printf(b, "  for (k_i64 q = (k_i64)blockIdx.x; q < %lldLL; q += (k_i64)gridDim.x) {\n", (long long)rows);
    if (inner == 1) kcg_printf(b, "    const k_i64 base = q * %lldLL;\n", (long long)len);
    else kcg_printf(b, "    const k_i64 base = q / %lldLL * %lldLL + q %% %lldLL;\n", (long long)inner,
                    (long long)(len * inner), (long long)inner);
    if (e) {
      put_row_loop(b, len, inner, nt);
      put_coords(b, p, false, "e", "c", "      ");
      s = put_chain(k, e, p, "e", "c", "c", "      ", b);
      kcg_printf(b, "      y[e] = %sv);\n    }\n    __syncthreads();\n", st_open(k->n->type.dtype));
    }
    put_softmax_rows(k, t, ax, e ? "y" : "a0", nt, b);
    kcg_printf(b, "  }\n");
  }
  put_close(b);
  return s;
}

static kiln_status emit_softmax(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_type *in = &k->g->nodes[k->n->inputs[0]]->type;
  if (!is_float(k->n->type.dtype)) return no_kernel(k, "softmax");
  if (!kir_type_equal(in, &k->n->type))
    return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "softmax input and output types differ");
  kplan p;
  kiln_status s = plan_init(k, &p, in, NULL, 1);
  if (s) return s;
  plan_coalesce(&p, extent_of(k, NULL));
  s = softmax_body(k, NULL, NULL, &p, b);
  plan_free(&p);
  return s;
}

static kiln_status emit_fused_softmax(kcg_cuda_kernel *k, kcg_buf *b) {
  kir_epilogue e;
  kir_type t;
  kplan p;
  bool *decl = NULL;
  kiln_status s = chain_prepare(k, &e, &t);
  if (s) return s;
  if (!kcg_same_shape(&t, &k->n->type))
    return kcg_node_err(k->g, k->n, KILN_ERR_SHAPE, "the chain's shape is not the node's");
  if ((s = chain_decl(k, &e, true, &decl))) return s;
  if (!(s = ew_plan(k, &t, decl, &p))) {
    s = softmax_body(k, &e, decl, &p, b);
    plan_free(&p);
  }
  kir_free(decl);
  return s;
}

/* ---------------------------------------------------------------- matmul -------- */

typedef struct mm_shape {
  int64_t m, k, n, batch;
  bool ta, tb;
  kir_type ab, bb, ob; /* batch dims of A, B and the output */
} mm_shape;

/* The product's dimensions; false when the operands do not give the node's type. */
static bool mm_calc(const kir_graph *g, const kir_node *n, mm_shape *p) {
  if (n->n_inputs < 2) return false;
  const kir_type *a = &g->nodes[n->inputs[0]]->type, *bt = &g->nodes[n->inputs[1]]->type;
  const kir_type *out = &n->type;
  if (a->rank < 2 || bt->rank < 2 || out->rank < 2 || a->dtype != out->dtype || bt->dtype != out->dtype)
    return false;
  p->ta = kir_attr_int(n, "transpose_a", 0) != 0;
  p->tb = kir_attr_int(n, "transpose_b", 0) != 0;
  int64_t am = a->dims[a->rank - 2], ak = a->dims[a->rank - 1];
  int64_t bk = bt->dims[bt->rank - 2], bn = bt->dims[bt->rank - 1];
  p->m = p->ta ? ak : am;
  p->k = p->ta ? am : ak;
  p->n = p->tb ? bk : bn;
  p->ab = *a;
  p->bb = *bt;
  p->ob = *out;
  p->ab.rank -= 2;
  p->bb.rank -= 2;
  p->ob.rank -= 2;
  p->batch = kir_type_numel(&p->ob);
  return (p->tb ? bn : bk) == p->k && out->dims[out->rank - 2] == p->m &&
         out->dims[out->rank - 1] == p->n && kcg_bcast_into(&p->ab, &p->ob) &&
         kcg_bcast_into(&p->bb, &p->ob) && p->batch >= 0;
}

/* One stride (in elements) between consecutive matrices of an operand with batch dims
 * ib seen through ob: mat when it has every batch matrix, 0 when it has one; false when
 * it broadcasts along some batch dims only. */
static bool mm_uniform(const kir_type *ib, const kir_type *ob, int64_t mat, int64_t *stride) {
  int64_t st[KILN_MAX_RANK], ost[KILN_MAX_RANK];
  bool all_c = true, all_0 = true;
  kcg_bcast_strides(ib, ob, st);
  kcg_contiguous_strides(ob, ost);
  for (int32_t d = 0; d < ob->rank; d++) {
    if (ob->dims[d] <= 1) continue;
    all_c = all_c && st[d] == ost[d];
    all_0 = all_0 && st[d] == 0;
  }
  if (!all_c && !all_0) return false;
  *stride = all_0 ? 0 : mat;
  return true;
}

/* A [n] vector (any leading 1s) of dtype t: what cuBLASLt's bias epilogue adds. */
static bool bias_vector(const kir_type *c, int64_t n, kiln_dtype t) {
  if (c->rank < 1 || c->dtype != t || c->dims[c->rank - 1] != n) return false;
  for (int32_t d = 0; d + 1 < c->rank; d++)
    if (c->dims[d] != 1) return false;
  return true;
}

/* Which of fused_matmul's epilogue cuBLASLt runs: all of it when it is add(bias[n]),
 * relu, or add(bias[n]) then relu; otherwise none (the kernel runs it all). */
static void gemm_epilogue(const kir_graph *g, const kir_node *n, const kir_epilogue *e,
                          kcg_cuda_gemm *gm, int32_t *bias_input, bool *rest) {
  int32_t s = 0;
  if (e->n == 0) return;
  if (e->op[0] == KIR_OP_ADD && e->operand[0] >= 2 && e->operand[0] < n->n_inputs &&
      bias_vector(&g->nodes[n->inputs[e->operand[0]]]->type, gm->n, gm->dtype)) {
    gm->has_bias = true;
    *bias_input = (int32_t)e->operand[0];
    s = 1;
  }
  if (s < e->n && e->op[s] == KIR_OP_RELU && e->operand[s] < 0) {
    gm->relu = true;
    s++;
  }
  if (s == e->n) return;
  gm->has_bias = gm->relu = false;
  *bias_input = -1;
  *rest = true;
}

bool kcg_cuda_gemm_plan(kir_graph *g, const kir_node *n, kcg_cuda_gemm *gm, int32_t *bias_input,
                        bool *rest) {
  mm_shape p;
  *bias_input = -1;
  *rest = false;
  if (n->op != KIR_OP_MATMUL && n->op != KIR_OP_FUSED_MATMUL) return false;
  if (!mm_calc(g, n, &p) || (n->type.dtype != KILN_F32 && n->type.dtype != KILN_F64)) return false;
  if (p.m < 1 || p.n < 1 || p.k < 1 || p.batch < 1) return false;
  memset(gm, 0, sizeof *gm);
  if (!mm_uniform(&p.ab, &p.ob, p.m * p.k, &gm->stride_a) ||
      !mm_uniform(&p.bb, &p.ob, p.k * p.n, &gm->stride_b))
    return false;
  gm->dtype = n->type.dtype;
  gm->m = p.m;
  gm->n = p.n;
  gm->k = p.k;
  gm->batch = p.batch;
  gm->trans_a = p.ta;
  gm->trans_b = p.tb;
  gm->stride_d = p.m * p.n;
  if (n->op != KIR_OP_FUSED_MATMUL) return true;
  kir_epilogue e;
  if (kir_epilogue_get(g, n, &e) != KILN_OK) return false; /* the kernel path reports it */
  gemm_epilogue(g, n, &e, gm, bias_input, rest);
  return true;
}

/* "pa[...]" of the tile loads: A's element (row, k0 + tc), B's (k0 + tr, col). */
static void put_mm_tile_loads(const kcg_cuda_kernel *k, const mm_shape *p, const char *A, kcg_buf *b) {
  kiln_dtype t = k->n->type.dtype;
  const char *L = is_float(t) ? ld_open(t) : "(k_u64)(";
  long long M = p->m, K = p->k, N = p->n;
  kcg_printf(b, "      ta[tr][tc] = row < %lldLL && k0 + tc < %lldLL ? %spa[", M, K, L);
  if (p->ta) kcg_printf(b, "(k0 + tc) * %lldLL + row", M);
  else kcg_printf(b, "row * %lldLL + k0 + tc", K);
  kcg_printf(b, "]) : (%s)0;\n      tb[tr][tc] = k0 + tr < %lldLL && col < %lldLL ? %spb[", A, K, N, L);
  if (p->tb) kcg_printf(b, "col * %lldLL + k0 + tr", K);
  else kcg_printf(b, "(k0 + tr) * %lldLL + col", N);
  kcg_printf(b, "]) : (%s)0;\n", A);
}

/* The product's value at (bi, row, col), then the epilogue (fused_matmul), stored. */
static kiln_status put_mm_store(kcg_cuda_kernel *k, const mm_shape *p, const kir_epilogue *e,
                                const kplan *ep, kcg_buf *b) {
  kiln_dtype t = k->n->type.dtype;
  kcg_printf(b, "    if (row < %lldLL && col < %lldLL) {\n      const k_i64 o = ", (long long)p->m,
             (long long)p->n);
  if (p->ob.rank > 0) kcg_printf(b, "bi * %lldLL + ", (long long)(p->m * p->n));
  kcg_printf(b, "row * %lldLL + col;\n", (long long)p->n);
  kiln_status s = KILN_OK;
  if (!is_float(t)) {
    kcg_printf(b, "      y[o] = (%s)(%s)acc;\n", ctype(t), utype(t));
  } else if (!e) {
    kcg_printf(b, "      y[o] = %sacc);\n", st_open(t));
  } else {
    if (is_half(t)) kcg_printf(b, "      double v = %s(acc);\n", t == KILN_F16 ? "k_f16_rnd" : "k_bf16_rnd");
    else kcg_printf(b, "      %s v = (%s)acc;\n", ctype(t), ctype(t));
    put_coords(b, ep, false, "o", "c", "      ");
    s = put_steps(k, e, ep, "o", "c", "c", "      ", b);
    kcg_printf(b, "      y[o] = %sv);\n", st_open(t));
  }
  kcg_printf(b, "    }\n");
  return s;
}

/* The loop over 16x16 output tiles: shared-memory tiles of A and B, the sum over k in
 * order (as the interpreter: double for floats, wrapping k_u64 for integers). */
static kiln_status put_mm_tiles(kcg_cuda_kernel *k, const mm_shape *p, const kplan *bp,
                                const kir_epilogue *e, const kplan *ep, kcg_buf *b) {
  kiln_dtype t = k->n->type.dtype;
  const char *A = is_float(t) ? "double" : "k_u64", *T = ctype(t);
  int64_t tm = (p->m + 15) / 16, tn = (p->n + 15) / 16;
  kcg_printf(b, "  __shared__ %s ta[16][17], tb[16][17];\n", A);
  kcg_printf(b, "  const int tr = (int)threadIdx.x / 16, tc = (int)threadIdx.x %% 16;\n");
  kcg_printf(b, "  for (k_i64 tile = (k_i64)blockIdx.x; tile < %lldLL; tile += (k_i64)gridDim.x) {\n",
             (long long)(p->batch * tm * tn));
  if (p->ob.rank > 0)
    kcg_printf(b, "    const k_i64 bi = tile / %lldLL, tt = tile %% %lldLL;\n", (long long)(tm * tn),
               (long long)(tm * tn));
  else kcg_printf(b, "    const k_i64 tt = tile;\n");
  kcg_printf(b, "    const k_i64 row = tt / %lldLL * 16 + tr, col = tt %% %lldLL * 16 + tc;\n",
             (long long)tn, (long long)tn);
  put_coords(b, bp, false, "bi", "cb", "    ");
  kcg_printf(b, "    const %s *pa = a0 + (", T);
  put_index(b, bp, 0, "cb", "cb");
  kcg_printf(b, ");\n    const %s *pb = a1 + (", T);
  put_index(b, bp, 1, "cb", "cb");
  kcg_printf(b, ");\n    %s acc = 0;\n", A);
  kcg_printf(b, "    for (k_i64 k0 = 0; k0 < %lldLL; k0 += 16) {\n", (long long)p->k);
  put_mm_tile_loads(k, p, A, b);
  kcg_printf(b, "      __syncthreads();\n      const int kn = %lldLL - k0 < 16 ? (int)(%lldLL - k0) : 16;\n",
             (long long)p->k, (long long)p->k);
  if (is_float(t))
    kcg_printf(b, "      for (int q = 0; q < kn; q++) acc = __dadd_rn(acc, __dmul_rn(ta[tr][q], tb[q][tc]));\n");
  else kcg_printf(b, "      for (int q = 0; q < kn; q++) acc += ta[tr][q] * tb[q][tc];\n");
  kcg_printf(b, "      __syncthreads();\n    }\n");
  kiln_status s = put_mm_store(k, p, e, ep, b);
  kcg_printf(b, "  }\n");
  return s;
}

/* The batch plan: A and B (element strides) over the output's batch dims. */
static kiln_status mm_batch_plan(kcg_cuda_kernel *k, const mm_shape *p, kplan *bp) {
  kiln_status s = plan_init(k, bp, &p->ob, NULL, 2);
  if (s) return s;
  plan_bcast(bp, 0, &p->ab);
  plan_bcast(bp, 1, &p->bb);
  for (int32_t d = 0; d < p->ob.rank; d++) {
    bp->st[0][d] *= p->m * p->k;
    bp->st[1][d] *= p->k * p->n;
  }
  plan_coalesce(bp, INT64_MAX);
  return KILN_OK;
}

/* matmul / fused_matmul as a generated kernel (integers, f16/bf16, and float products
 * cuBLASLt cannot take: empty dims, batch dims broadcast only in part). */
static kiln_status emit_mm_tiled(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  kiln_dtype t = n->type.dtype;
  mm_shape p;
  kir_epilogue e;
  bool fused = n->op == KIR_OP_FUSED_MATMUL, *decl = NULL;
  kplan bp, ep;
  if (!mm_calc(k->g, n, &p))
    return kcg_node_err(k->g, n, KILN_ERR_SHAPE, "matmul operand shapes do not give the node's shape");
  if ((!is_float(t) && !is_int(t)) || (fused && !is_float(t))) return no_kernel(k, op_name(n->op));
  kiln_status s = fused ? kir_epilogue_get(k->g, n, &e) : KILN_OK;
  if (s || (fused && (s = check_operands(k, &e, &n->type)))) return s;
  if (fused && (s = chain_decl(k, &e, false, &decl))) return s;
  if (fused) decl[0] = decl[1] = false; /* A and B are not read at the output's index */
  if ((s = mm_batch_plan(k, &p, &bp))) {
    kir_free(decl);
    return s;
  }
  s = fused ? ew_plan(k, &n->type, decl, &ep) : plan_init(k, &ep, &n->type, NULL, 0);
  if (!s) {
    if (decl) decl[0] = decl[1] = true;
    int64_t tiles = p.batch * ((p.m + 15) / 16) * ((p.n + 15) / 16);
    k->block = KCG_CUDA_BLOCK;
    k->grid = clamp64(tiles, 1, KCG_CUDA_MAX_GRID);
    put_open(k, decl, b);
    if (tiles > 0) s = put_mm_tiles(k, &p, &bp, fused ? &e : NULL, &ep, b);
    put_close(b);
    plan_free(&ep);
  }
  plan_free(&bp);
  kir_free(decl);
  return s;
}

/* fused_matmul after its cuBLASLt GEMM: y = epilogue(y), in place, one thread an element. */
static kiln_status emit_gemm_epilogue(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  kiln_dtype t = n->type.dtype;
  kir_epilogue e;
  bool *decl = NULL;
  kplan p;
  kiln_status s = kir_epilogue_get(k->g, n, &e);
  if (s || (s = check_operands(k, &e, &n->type)) || (s = chain_decl(k, &e, false, &decl))) return s;
  if (!is_float(t)) s = no_kernel(k, op_name(n->op));
  if (!s && !(s = ew_plan(k, &n->type, decl, &p))) {
    int64_t numel = kir_type_numel(&n->type);
    launch_flat(k, numel);
    put_open(k, decl, b);
    if (numel > 0) {
      put_gs_loop(b, p.I, "o", numel);
      put_coords(b, &p, false, "o", "c", "    ");
      kcg_printf(b, "    %s v = %sy[o]);\n", vtype(t), lv_open(t));
      s = put_steps(k, &e, &p, "o", "c", "c", "    ", b);
      kcg_printf(b, "    y[o] = %sv);\n  }\n", st_open(t));
    }
    put_close(b);
    plan_free(&p);
  }
  kir_free(decl);
  return s;
}

/* conv's bias after cuDNN's convolution: y[b, m, ...] += bias[m], in place, one thread
 * an element (fused_conv's epilogue uses emit_gemm_epilogue). */
static kiln_status emit_conv_bias(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  kiln_dtype t = n->type.dtype;
  if ((t != KILN_F32 && t != KILN_F64) || n->n_inputs != 3 || n->type.rank < 3)
    return no_kernel(k, "conv bias");
  int64_t numel = kir_type_numel(&n->type), inner = 1, m = n->type.dims[1];
  for (int32_t d = 2; d < n->type.rank; d++) inner *= n->type.dims[d];
  const bool decl[3] = {false, false, true};
  launch_flat(k, numel);
  put_open(k, decl, b);
  if (numel > 0 && m > 0 && inner > 0) {
    put_gs_loop(b, idx_type(numel), "o", numel);
    kcg_printf(b, "    y[o] = %sy[o] + a2[o / %lldLL %% %lldLL]);\n  }\n", st_open(t), (long long)inner,
               (long long)m);
  }
  put_close(b);
  return KILN_OK;
}

/* ---------------------------------------------------------------- dispatch ------ */

kiln_status kcg_cuda_emit_kernel(kcg_cuda_kernel *k, kcg_buf *b) {
  const kir_node *n = k->n;
  k->grid = 1;
  k->block = 32;
  if (!kir_op_get(n->op)) return kcg_node_err(k->g, n, KILN_ERR_GRAPH, "invalid op %d", (int)n->op);
  if (k->epilogue_only && n->op == KIR_OP_CONV) return emit_conv_bias(k, b);
  if (k->epilogue_only) return emit_gemm_epilogue(k, b);
  switch (n->op) {
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: case KIR_OP_NEG: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT:
  case KIR_OP_TANH: case KIR_OP_SIGMOID: case KIR_OP_RELU: case KIR_OP_CLAMP:
    return emit_elementwise(k, b);
  case KIR_OP_MATMUL: case KIR_OP_FUSED_MATMUL: return emit_mm_tiled(k, b);
  case KIR_OP_FUSED_ELEMENTWISE: return emit_fused_elementwise(k, b);
  case KIR_OP_FUSED_REDUCE: return emit_fused_reduce(k, b);
  case KIR_OP_FUSED_SOFTMAX: return emit_fused_softmax(k, b);
  case KIR_OP_ADD_N: return emit_add_n(k, b);
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: return emit_reduce(k, b);
  case KIR_OP_SOFTMAX: return emit_softmax(k, b);
  case KIR_OP_TRANSPOSE: return emit_transpose(k, b);
  case KIR_OP_RESHAPE: case KIR_OP_IDENTITY: return emit_copy(k, b);
  /* CPU only for now (kps_device_has_kernel): no CUDA kernel. */
  case KIR_OP_POW: case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
  case KIR_OP_REDUCE_MIN: case KIR_OP_LOG_SOFTMAX: case KIR_OP_ARGMAX: case KIR_OP_ARGMIN:
  case KIR_OP_CONCAT: case KIR_OP_SLICE: case KIR_OP_GATHER: case KIR_OP_CAST: case KIR_OP_WHERE:
  case KIR_OP_CONV: case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_BATCH_NORM:
  case KIR_OP_FUSED_CONV: case KIR_OP_MAX_POOL_INDICES: case KIR_OP_RANDOM_NORMAL:
  case KIR_OP_RANDOM_UNIFORM:
    return no_kernel(k, op_name(n->op));
  case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE: case KIR_OP_ASSIGN:
  case KIR_OP_GROUP: case KIR_OP_NO_OP: case KIR_OP_TRANSFER: case KIR_OP_INVALID: case KIR_OP_COUNT:
    break;
  }
  return kcg_node_err(k->g, n, KILN_ERR_INTERNAL, "%s is not a CUDA step", op_name(n->op));
}

/* ---------------------------------------------------------------- prelude ------- */

/* f16/bf16 <-> double with the interpreter's results (ir/kir_types.c): a double rounded
 * once to the format (nearest even, overflow to infinity, NaN to a quiet NaN of its
 * sign), here on the double's bits; widening is exact. p: fraction bits, bias: the
 * exponent bias. */
static void put_half_helpers(kcg_buf *b) {
  kcg_printf(b,
    "__device__ __forceinline__ k_u16 k_half_from_d(double v, int p, int bias) {\n"
    "  const k_u64 u = (k_u64)__double_as_longlong(v);\n"
    "  const unsigned sign = (unsigned)(u >> 48) & 0x8000u, emax = 2u * (unsigned)bias + 1u;\n"
    "  const int ex = (int)((u >> 52) & 0x7ffu), e = ex - 1023;\n"
    "  const k_u64 frac = u & 0xfffffffffffffULL;\n"
    "  if (ex == 0x7ff) return (k_u16)(sign | (emax << p) | (frac ? 1u << (p - 1) : 0u));\n"
    "  if (ex == 0 || e < -bias - p - 1) return (k_u16)sign; /* below half the least subnormal */\n"
    "  if (e > bias) return (k_u16)(sign | (emax << p));\n"
    "  const k_u64 m = frac | (1ULL << 52);\n"
    "  const int shift = e >= 1 - bias ? 52 - p : 52 - p + (1 - bias - e);\n"
    "  k_u64 keep = m >> shift;\n"
    "  const k_u64 rest = m & ((1ULL << shift) - 1ULL), half = 1ULL << (shift - 1);\n"
    "  if (rest > half || (rest == half && (keep & 1ULL))) keep++;\n"
    "  k_u64 bits = e >= 1 - bias ? ((k_u64)(e + bias) << p) + keep - (1ULL << p) : keep;\n"
    "  if (bits >= ((k_u64)emax << p)) bits = (k_u64)emax << p;\n"
    "  return (k_u16)(sign | (unsigned)bits);\n"
    "}\n"
    "__device__ __forceinline__ double k_half_to_d(k_u16 h, int p, int bias) {\n"
    "  const unsigned emax = 2u * (unsigned)bias + 1u, ef = ((unsigned)h >> p) & emax;\n"
    "  const k_u64 f = (k_u64)((unsigned)h & ((1u << p) - 1u)), sign = (k_u64)(h & 0x8000u) << 48;\n"
    "  if (ef == emax) return __longlong_as_double((long long)(sign | 0x7ff0000000000000ULL | (f << (52 - p))));\n"
    "  if (ef == 0u) {\n"
    "    const double mag = (double)f * __longlong_as_double((long long)((k_u64)(1023 + 1 - bias - p) << 52));\n"
    "    return sign ? -mag : mag;\n"
    "  }\n"
    "  return __longlong_as_double((long long)(sign | ((k_u64)((int)ef - bias + 1023) << 52) | (f << (52 - p))));\n"
    "}\n"
    "__device__ __forceinline__ k_u16 k_f16_st(double v) { return k_half_from_d(v, 10, 15); }\n"
    "__device__ __forceinline__ double k_f16_ld(k_u16 h) { return k_half_to_d(h, 10, 15); }\n"
    "__device__ __forceinline__ k_u16 k_bf16_st(double v) { return k_half_from_d(v, 7, 127); }\n"
    "__device__ __forceinline__ double k_bf16_ld(k_u16 h) { return k_half_to_d(h, 7, 127); }\n"
    "__device__ __forceinline__ double k_f16_rnd(double v) { return k_f16_ld(k_f16_st(v)); }\n"
    "__device__ __forceinline__ double k_bf16_rnd(double v) { return k_bf16_ld(k_bf16_st(v)); }\n\n");
}

/* Guarded, so translation units can be concatenated (the tests compile many graphs'
 * kernels in one NVRTC call, their kernel names prefixed). */
void kcg_cuda_put_prelude(kcg_buf *b, bool half) {
  kcg_printf(b,
    "#ifndef KILN_CUDA_PRELUDE\n#define KILN_CUDA_PRELUDE\n"
    "typedef signed char k_i8;\ntypedef unsigned char k_u8;\n"
    "typedef short k_i16;\ntypedef unsigned short k_u16;\n"
    "typedef int k_i32;\ntypedef unsigned int k_u32;\n"
    "typedef long long k_i64;\ntypedef unsigned long long k_u64;\n"
    "#define K_INF __longlong_as_double(0x7ff0000000000000LL)\n"
    "#define K_NAN __longlong_as_double(0x7ff8000000000000LL)\n"
    "/* f32 maximum / minimum that return NaN when either input is NaN (sm_80+): one\n"
    " * instruction, where compare-and-select with NaN tests takes five */\n"
    "__device__ __forceinline__ float k_fmax_nan(float a, float b) {\n"
    "  float r; asm(\"max.NaN.f32 %%0, %%1, %%2;\" : \"=f\"(r) : \"f\"(a), \"f\"(b)); return r;\n}\n"
    "__device__ __forceinline__ float k_fmin_nan(float a, float b) {\n"
    "  float r; asm(\"min.NaN.f32 %%0, %%1, %%2;\" : \"=f\"(r) : \"f\"(a), \"f\"(b)); return r;\n}\n\n"
    "/* set to the failing step + 1 by a kernel that meets integer division by zero */\n"
    "extern \"C\" {\n__device__ unsigned int %s;\n}\n#endif\n\n", KCG_CUDA_ERROR_SYMBOL);
  if (!half) return;
  kcg_printf(b, "#ifndef KILN_CUDA_HALF\n#define KILN_CUDA_HALF\n");
  put_half_helpers(b);
  kcg_printf(b, "#endif\n\n");
}
