/* kt_gen.c — the seeded random graph generator (see kt_gen.h). It grows a pool of values
 * op by op, keeping every value finite and away from NaN by construction: a rough bound
 * on each value's magnitude is tracked and tamed (tanh/clamp) before it can overflow;
 * log/sqrt/float div only see values built to be positive; integer divisors are made
 * nonzero with maximum(x, 1) / minimum(x, -1); pow, conv, pooling, gather and
 * batch_norm get operands valid by construction (see "onnx ops"). Depends on ir/ only. */
#include "kt_gen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_NUMEL 400  /* default cap on a value's elements: thousands of graphs per second */
#define LIM_F 16.0     /* float magnitude above which a value is tamed before use */
#define LIM_I 1000.0   /* integers wrap by definition; tamed only to keep values varied */

typedef struct val {
  int32_t id; /* -1: generation failed (status in gen) */
  double bound;
} val;

typedef struct gen {
  kir_graph *g;
  const kt_gen_opts *o;
  uint64_t rng;
  kiln_status st; /* sticky: the first failure */
  val *pool;
  int32_t n_pool, cap_pool;
  int32_t counter;
  int64_t max_numel;
  int32_t window; /* 0: operands from the whole pool; N: from its last N values */
  int32_t *extra; /* extra fetch roots (bool chains, assigns) */
  int32_t n_extra, cap_extra;
  int32_t *assigns;
  int32_t n_assigns, cap_assigns;
} gen;

static const val BAD = {-1, 0};

/* ---------------------------------------------------------------- randomness ---- */

static uint64_t rnd(gen *G) {
  uint64_t z = (G->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double runif(gen *G, double lo, double hi) {
  return lo + (hi - lo) * ((double)(rnd(G) >> 11) / 9007199254740992.0);
}

/* Uniform in [lo, hi], inclusive. */
static int32_t rint_(gen *G, int32_t lo, int32_t hi) {
  return lo + (int32_t)(rnd(G) % (uint64_t)(hi - lo + 1));
}

static bool chance(gen *G, double p) { return runif(G, 0, 1) < p; }

static bool is_float(kiln_dtype t) {
  return t == KILN_F32 || t == KILN_F64 || t == KILN_F16 || t == KILN_BF16;
}
/* The dtypes added after the first four: u8..u64, i8, i16, f16, bf16. They take the
 * elementwise, reduction, shape and cast ops only (see op_ok), no matmul/conv/pools/
 * batch_norm/softmax/pow/random sources, and are never variables. */
static bool is_new(kiln_dtype t) { return t >= KILN_U8 && t <= KILN_BF16; }
static bool is_unsigned(kiln_dtype t) {
  return t == KILN_U8 || t == KILN_U16 || t == KILN_U32 || t == KILN_U64;
}

static kiln_dtype old_dtype(gen *G) {
  double u = runif(G, 0, 1);
  return u < 0.7 ? KILN_F32 : u < 0.8 ? KILN_F64 : u < 0.9 ? KILN_I32 : KILN_I64;
}

/* One of the four first dtypes, or (about one draw in ten) one of the eight new ones. */
static kiln_dtype rand_dtype(gen *G) {
  static const kiln_dtype NEW[] = {KILN_U8, KILN_I8,  KILN_U16, KILN_I16,
                                   KILN_U32, KILN_U64, KILN_F16, KILN_BF16};
  if (chance(G, 0.1)) return NEW[rint_(G, 0, 7)];
  return old_dtype(G);
}

/* ---------------------------------------------------------------- growable arrays */

static bool grow(gen *G, void **p, int32_t *cap, int32_t need, size_t elt) {
  if (need <= *cap) return true;
  int32_t nc = *cap ? *cap * 2 : 64;
  while (nc < need) nc *= 2;
  void *q = kir_realloc(*p, (size_t)*cap * elt, (size_t)nc * elt);
  if (!q) {
    G->st = KILN_ERR_NOMEM;
    return false;
  }
  *p = q;
  *cap = nc;
  return true;
}

static void push_id(gen *G, int32_t **arr, int32_t *n, int32_t *cap, int32_t id) {
  if (id < 0 || !grow(G, (void **)arr, cap, *n + 1, sizeof **arr)) return;
  (*arr)[(*n)++] = id;
}

static val pool_add(gen *G, val v) {
  if (v.id < 0 || !grow(G, (void **)&G->pool, &G->cap_pool, G->n_pool + 1, sizeof *G->pool))
    return BAD;
  G->pool[G->n_pool++] = v;
  return v;
}

/* ---------------------------------------------------------------- nodes --------- */

/* The type of v; a dummy for a failed value, so emitters need no checks (mk refuses it). */
static const kir_type *T(const gen *G, val v) {
  static const kir_type none = {KILN_F32, 0, {0}};
  return v.id >= 0 ? &G->g->nodes[v.id]->type : &none;
}

static void failed(gen *G, kiln_status s) {
  if (s != KILN_OK && G->st == KILN_OK) G->st = s;
}

/* Adds a node named "<op>_<counter>"; NULL after any failure. */
static kir_node *mk(gen *G, kir_op op, const int32_t *in, int32_t n) {
  if (G->st != KILN_OK) return NULL;
  for (int32_t k = 0; k < n; k++)
    if (in[k] < 0) return NULL;
  char name[48];
  snprintf(name, sizeof name, "%s_%d", kir_op_get(op)->name, (int)G->counter++);
  kir_node *nd = kir_node_add(G->g, op, name, in, n);
  if (!nd) failed(G, G->g->status != KILN_OK ? G->g->status : KILN_ERR_NOMEM);
  return nd;
}

static const char *const PINS[] = {"cpu:0", "cuda:0", "/device:GPU:0", "/cpu:0"};

/* Infers the node's type (every generated node must type-check) and wraps it. */
static val fin(gen *G, kir_node *nd, double bound) {
  if (!nd || G->st != KILN_OK) return BAD;
  if (G->o->pins && chance(G, 0.08)) {
    nd->device = kir_graph_strdup(G->g, PINS[rint_(G, 0, 3)]);
    if (!nd->device) nd->device = "";
  }
  kiln_status s = kir_infer_node(G->g, nd);
  failed(G, s);
  return s == KILN_OK ? (val){nd->id, bound} : BAD;
}

static void attr(gen *G, kiln_status s) { failed(G, s); }

static val un(gen *G, kir_op op, val a, double bound) {
  return fin(G, mk(G, op, &a.id, 1), bound);
}

static val bin(gen *G, kir_op op, val a, val b, double bound) {
  int32_t in[2] = {a.id, b.id};
  return fin(G, mk(G, op, in, 2), bound);
}

static val clamp(gen *G, val a, bool has_lo, double lo, bool has_hi, double hi) {
  kir_node *nd = mk(G, KIR_OP_CLAMP, &a.id, 1);
  if (nd && has_lo) attr(G, kir_attr_set_float(G->g, nd, "min", lo));
  if (nd && has_hi) attr(G, kir_attr_set_float(G->g, nd, "max", hi));
  double b = a.bound;
  if (has_lo && has_hi) b = fmin(b, fmax(fabs(lo), fabs(hi)));
  return fin(G, nd, b);
}

/* ---------------------------------------------------------------- shapes -------- */

static int64_t numel(const kir_type *t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

static kir_type rand_shape(gen *G, kiln_dtype dt) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  double u = runif(G, 0, 1);
  t.rank = u < 0.1 ? 0 : u < 0.35 ? 1 : u < 0.7 ? 2 : u < 0.9 ? 3 : 4;
  for (int32_t i = 0; i < t.rank; i++) t.dims[i] = rint_(G, 1, 5);
  for (int32_t i = 0; numel(&t) > G->max_numel; i = (i + 1) % t.rank) t.dims[i] = 1;
  return t;
}

/* A shape that broadcasts with a (dims kept, set to 1, dropped, expanded or prepended).
 * With `into`, the broadcast result is exactly a's shape (for assign values). */
static kir_type compat_shape(gen *G, const kir_type *a, bool into) {
  kir_type b;
  memset(&b, 0, sizeof b);
  b.dtype = a->dtype;
  int32_t drop = chance(G, 0.3) ? rint_(G, 0, a->rank) : 0;
  if (!into && drop == 0 && a->rank < KILN_MAX_RANK && a->rank < 4 && chance(G, 0.15))
    b.dims[b.rank++] = rint_(G, 1, 3);
  for (int32_t i = drop; i < a->rank; i++) {
    int64_t d = a->dims[i];
    if (chance(G, 0.3)) d = 1;
    else if (!into && d == 1 && chance(G, 0.3)) d = rint_(G, 2, 4);
    b.dims[b.rank++] = d;
  }
  kir_type out;
  if (!kir_broadcast(a, &b, &out) || numel(&out) > G->max_numel) return *a;
  return b;
}

/* ---------------------------------------------------------------- sources ------- */

static void fill(kir_tensor *t, uint64_t seed, double lo, double hi) {
  gen tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.rng = seed;
  int64_t n = kir_type_numel(&t->type);
  for (int64_t i = 0; i < n; i++) {
    double v = runif(&tmp, lo, hi);
    switch (t->type.dtype) {
    case KILN_F32: ((float *)t->data)[i] = (float)v; break;
    case KILN_F64: ((double *)t->data)[i] = v; break;
    case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)floor(v); break;
    case KILN_I64: ((int64_t *)t->data)[i] = (int64_t)floor(v); break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = v >= (lo + hi) / 2; break;
    case KILN_F16: ((uint16_t *)t->data)[i] = kir_f16_from_double(v); break;
    case KILN_BF16: ((uint16_t *)t->data)[i] = kir_bf16_from_double(v); break;
    case KILN_I8: ((int8_t *)t->data)[i] = (int8_t)floor(v); break;
    case KILN_I16: ((int16_t *)t->data)[i] = (int16_t)floor(v); break;
    /* unsigned: the magnitude, so a value drawn in [-r, r] lies in [0, r] */
    case KILN_U8: ((uint8_t *)t->data)[i] = (uint8_t)floor(fabs(v)); break;
    case KILN_U16: ((uint16_t *)t->data)[i] = (uint16_t)floor(fabs(v)); break;
    case KILN_U32: ((uint32_t *)t->data)[i] = (uint32_t)floor(fabs(v)); break;
    case KILN_U64: ((uint64_t *)t->data)[i] = (uint64_t)floor(fabs(v)); break;
    case KILN_DTYPE_INVALID: break;
    }
  }
}

static double range_of(kiln_dtype dt) { return is_float(dt) ? 2.0 : 5.0; }

static val constant_filled(gen *G, const kir_type *t, double lo, double hi) {
  kir_node *nd = mk(G, KIR_OP_CONSTANT, NULL, 0);
  if (!nd) return BAD;
  kir_tensor *v = kir_tensor_new(t);
  if (!v) {
    failed(G, KILN_ERR_NOMEM);
    return BAD;
  }
  fill(v, rnd(G), lo, hi);
  attr(G, kir_attr_set_tensor(G->g, nd, "value", v));
  kir_tensor_free(v);
  return fin(G, nd, fmax(fabs(lo), fabs(hi)));
}

/* A scalar constant of dtype dt holding v. */
static val scalar(gen *G, kiln_dtype dt, double v) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  return constant_filled(G, &t, v, v);
}

static void shape_attr(gen *G, kir_node *nd, const kir_type *t) {
  if (!nd) return;
  attr(G, kir_attr_set_int(G->g, nd, "dtype", t->dtype));
  attr(G, kir_attr_set_ints(G->g, nd, "shape", t->dims, t->rank));
}

static val random_source(gen *G, const kir_type *t) {
  bool normal = chance(G, 0.5);
  kir_node *nd = mk(G, normal ? KIR_OP_RANDOM_NORMAL : KIR_OP_RANDOM_UNIFORM, NULL, 0);
  shape_attr(G, nd, t);
  if (!nd) return BAD;
  attr(G, kir_attr_set_int(G->g, nd, "seed", rint_(G, 0, 1000000)));
  double a = 0, b = 1;
  if (chance(G, 0.6)) attr(G, kir_attr_set_float(G->g, nd, normal ? "mean" : "low", a = runif(G, -1, 0)));
  if (chance(G, 0.6)) attr(G, kir_attr_set_float(G->g, nd, normal ? "stddev" : "high", b = runif(G, 0.1, 1.5)));
  return fin(G, nd, normal ? fabs(a) + 7 * b : fmax(fabs(a), fabs(b)));
}

/* A new source value of type t: placeholder, constant, or (floats) a seeded random. */
static val source(gen *G, const kir_type *t) {
  double u = runif(G, 0, 1), r = range_of(t->dtype);
  if (u < 0.4) {
    kir_node *nd = mk(G, KIR_OP_PLACEHOLDER, NULL, 0);
    shape_attr(G, nd, t);
    return fin(G, nd, r);
  }
  if (u < 0.8 || !is_float(t->dtype) || is_new(t->dtype)) return constant_filled(G, t, -r, r);
  return random_source(G, t);
}

/* ---------------------------------------------------------------- helpers ------- */

static val tame(gen *G, val v, double lim) {
  if (v.id < 0 || v.bound <= lim) return v;
  if (!is_float(T(G, v)->dtype)) return clamp(G, v, true, -8, true, 8);
  if (chance(G, 0.5)) return un(G, KIR_OP_TANH, v, 1);
  return clamp(G, v, true, -4, true, 4);
}

static double lim_of(const gen *G, val v) {
  return v.id >= 0 && is_float(T(G, v)->dtype) ? LIM_F : LIM_I;
}

/* A float value >= 0.25, built from v (for log, sqrt, division). */
static val positive(gen *G, val v) {
  switch (rint_(G, 0, 2)) {
  case 0: return un(G, KIR_OP_EXP, un(G, KIR_OP_TANH, v, 1), M_E);
  case 1: {
    val r = un(G, KIR_OP_RELU, tame(G, v, LIM_F), 0);
    r.bound = v.bound > LIM_F ? 4 : v.bound;
    return bin(G, KIR_OP_ADD, r, scalar(G, T(G, v)->dtype, runif(G, 0.5, 2)), r.bound + 2);
  }
  default: return un(G, KIR_OP_SIGMOID, un(G, KIR_OP_TANH, v, 1), 1);
  }
}

/* Index of a pool value: any, or one of the last G->window. */
static int32_t pool_index(gen *G) {
  int32_t lo = G->window > 0 && G->n_pool > G->window ? G->n_pool - G->window : 0;
  return rint_(G, lo, G->n_pool - 1);
}

/* A value of v's dtype that broadcasts with v: from the pool or a new source. */
static val partner(gen *G, val a, bool into) {
  const kir_type *ta = T(G, a);
  for (int32_t tries = 0; tries < 4 && G->n_pool > 0 && chance(G, 0.6); tries++) {
    val c = G->pool[pool_index(G)];
    const kir_type *tc = T(G, c);
    kir_type out;
    if (tc->dtype != ta->dtype || !kir_broadcast(ta, tc, &out) || numel(&out) > G->max_numel) continue;
    bool same = out.rank == ta->rank; /* with `into`, the result keeps a's shape */
    for (int32_t i = 0; into && same && i < out.rank; i++) same = out.dims[i] == ta->dims[i];
    if (into && !same) continue;
    return c;
  }
  kir_type t = compat_shape(G, ta, into);
  return source(G, &t);
}

static val pick(gen *G) {
  int32_t n = G->n_pool;
  if (chance(G, 0.5) && n > 6) return G->pool[rint_(G, n - 6, n - 1)];
  return G->pool[pool_index(G)];
}

/* ---------------------------------------------------------------- op emitters --- */

static val emit_binary(gen *G, kir_op op, val a) {
  a = tame(G, a, lim_of(G, a));
  val b = tame(G, partner(G, a, false), lim_of(G, a));
  if (a.id < 0 || b.id < 0) return BAD;
  bool fl = is_float(T(G, a)->dtype);
  switch (op) {
  case KIR_OP_MUL: return bin(G, op, a, b, a.bound * b.bound);
  case KIR_OP_DIV:
    if (fl) return bin(G, op, a, positive(G, b), a.bound * 4);
    b = chance(G, 0.5) || is_unsigned(T(G, b)->dtype) /* unsigned: -1 is the maximum */
            ? bin(G, KIR_OP_MAXIMUM, b, scalar(G, T(G, b)->dtype, 1), b.bound + 1)
                       : bin(G, KIR_OP_MINIMUM, b, scalar(G, T(G, b)->dtype, -1), b.bound + 1);
    return bin(G, op, a, b, a.bound);
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: return bin(G, op, a, b, fmax(a.bound, b.bound));
  default: return bin(G, op, a, b, a.bound + b.bound);
  }
}

static val emit_clamp(gen *G, val a) {
  bool fl = is_float(T(G, a)->dtype);
  double lo = fl ? round(runif(G, -3, 0) * 100) / 100 : rint_(G, -6, 0);
  double hi = fl ? round(runif(G, 0, 3) * 100) / 100 : rint_(G, 0, 6);
  return clamp(G, a, chance(G, 0.7), lo, chance(G, 0.7), hi);
}

static val emit_unary(gen *G, kir_op op, val a) {
  switch (op) {
  case KIR_OP_EXP: a = tame(G, a, 4); return un(G, op, a, exp(a.bound));
  case KIR_OP_LOG: a = positive(G, a); return un(G, op, a, fmax(2, log(a.bound + 1)));
  case KIR_OP_SQRT: a = positive(G, a); return un(G, op, a, sqrt(a.bound) + 1);
  case KIR_OP_TANH:
  case KIR_OP_SIGMOID: return un(G, op, a, 1);
  case KIR_OP_CLAMP: return emit_clamp(G, a);
  default: return un(G, op, a, a.bound);
  }
}

/* Reshapes a to rank 2 when it has less. */
static val at_least_2d(gen *G, val a) {
  const kir_type *t = T(G, a);
  if (a.id < 0 || t->rank >= 2) return a;
  int64_t n = numel(t), shape[2] = {1, n};
  if (chance(G, 0.5)) { shape[0] = n; shape[1] = 1; }
  kir_node *nd = mk(G, KIR_OP_RESHAPE, &a.id, 1);
  if (nd) attr(G, kir_attr_set_ints(G->g, nd, "shape", shape, 2));
  return fin(G, nd, a.bound);
}

static val matmul_of(gen *G, val a, val b, bool ta, bool tb, double bound) {
  int32_t in[2] = {a.id, b.id};
  kir_node *nd = mk(G, KIR_OP_MATMUL, in, 2);
  if (nd && (ta || chance(G, 0.3))) attr(G, kir_attr_set_int(G->g, nd, "transpose_a", ta));
  if (nd && (tb || chance(G, 0.3))) attr(G, kir_attr_set_int(G->g, nd, "transpose_b", tb));
  return fin(G, nd, bound);
}

/* The B operand's type for A of type ta: inner dim k, batch dims broadcasting with A's,
 * the product kept small. */
static kir_type matmul_rhs_shape(gen *G, const kir_type *ta, int64_t k, bool ta_flag, bool tb) {
  kir_type abatch = *ta, t, out;
  abatch.rank -= 2;
  t = compat_shape(G, &abatch, false);
  if (t.rank > 2) { /* dropping leading dims keeps it broadcastable; rank stays <= 4 */
    memmove(t.dims, t.dims + (t.rank - 2), 2 * sizeof *t.dims);
    t.rank = 2;
  }
  int64_t m = ta->dims[ta->rank - (ta_flag ? 1 : 2)], n = rint_(G, 1, 5);
  if (!kir_broadcast(&abatch, &t, &out) || numel(&out) * m * n > G->max_numel) t.rank = 0;
  t.dims[t.rank++] = tb ? n : k;
  t.dims[t.rank++] = tb ? k : n;
  return t;
}

static val emit_matmul(gen *G, val a) {
  a = tame(G, at_least_2d(G, a), lim_of(G, a));
  const kir_type *t = T(G, a);
  if (a.id < 0 || t->rank < 2) return BAD;
  bool ta = chance(G, 0.3), tb = chance(G, 0.3);
  int64_t k = t->dims[t->rank - (ta ? 2 : 1)];
  kir_type bt = matmul_rhs_shape(G, t, k, ta, tb);
  val b = tame(G, source(G, &bt), lim_of(G, a));
  if (b.id < 0) return BAD;
  return matmul_of(G, a, b, ta, tb, (double)k * a.bound * b.bound);
}

static val emit_add_n(gen *G, val a) {
  a = tame(G, a, lim_of(G, a));
  int32_t k = rint_(G, 1, 4), in[4];
  double bound = 0;
  for (int32_t i = 0; i < k; i++) {
    val v = a;
    if (i > 0 && !chance(G, 0.4)) v = tame(G, source(G, T(G, a)), lim_of(G, a));
    for (int32_t tries = 0; i > 0 && tries < 3 && chance(G, 0.3); tries++) {
      val c = G->pool[pool_index(G)];
      if (a.id >= 0 && kir_type_equal(T(G, c), T(G, a))) { v = tame(G, c, lim_of(G, a)); break; }
    }
    if (v.id < 0) return BAD;
    in[i] = v.id;
    bound += v.bound;
  }
  return fin(G, mk(G, KIR_OP_ADD_N, in, k), bound);
}

static void shuffle(gen *G, int64_t *v, int32_t n) {
  for (int32_t i = n - 1; i > 0; i--) {
    int32_t j = rint_(G, 0, i);
    int64_t x = v[i];
    v[i] = v[j];
    v[j] = x;
  }
}

static val emit_reduce(gen *G, kir_op op, val a) {
  const kir_type *t = T(G, a);
  int32_t r = t->rank;
  int64_t axes[KILN_MAX_RANK];
  int32_t n = 0;
  double count = 1;
  if (r > 0 && chance(G, 0.75)) {
    uint32_t mask = (uint32_t)rint_(G, 1, (1 << r) - 1);
    for (int32_t i = 0; i < r; i++)
      if (mask & (1u << i)) {
        axes[n++] = chance(G, 0.3) ? i - r : i;
        count *= (double)t->dims[i];
      }
    if (chance(G, 0.3)) shuffle(G, axes, n);
  } else {
    count = (double)numel(t);
  }
  kir_node *nd = mk(G, op, &a.id, 1);
  if (nd && n > 0) attr(G, kir_attr_set_ints(G->g, nd, "axes", axes, n));
  if (nd && chance(G, 0.6)) attr(G, kir_attr_set_int(G->g, nd, "keep_dims", rint_(G, 0, 1)));
  return fin(G, nd, op == KIR_OP_REDUCE_SUM ? a.bound * count : a.bound);
}

static val emit_softmax(gen *G, val a) {
  int32_t r = T(G, a)->rank;
  if (r == 0) return un(G, KIR_OP_TANH, a, 1);
  kir_node *nd = mk(G, KIR_OP_SOFTMAX, &a.id, 1);
  if (nd && chance(G, 0.6)) attr(G, kir_attr_set_int(G->g, nd, "axis", rint_(G, -r, r - 1)));
  return fin(G, nd, 1);
}

/* A random factorization of a's element count, sometimes with a -1. */
static val emit_reshape(gen *G, val a) {
  int64_t n = numel(T(G, a)), dims[KILN_MAX_RANK];
  int32_t r = n == 1 && chance(G, 0.3) ? 0 : rint_(G, 1, 4);
  int64_t left = n;
  for (int32_t i = 0; i < r - 1; i++) {
    int64_t d = rint_(G, 1, 5);
    while (left % d) d--;
    dims[i] = d;
    left /= d;
  }
  if (r > 0) dims[r - 1] = left;
  if (r > 0 && chance(G, 0.3)) dims[rint_(G, 0, r - 1)] = -1;
  kir_node *nd = mk(G, KIR_OP_RESHAPE, &a.id, 1);
  if (nd) attr(G, kir_attr_set_ints(G->g, nd, "shape", dims, r));
  return fin(G, nd, a.bound);
}

static val emit_transpose(gen *G, val a) {
  int32_t r = T(G, a)->rank;
  int64_t perm[KILN_MAX_RANK];
  for (int32_t i = 0; i < r; i++) perm[i] = i;
  shuffle(G, perm, r);
  kir_node *nd = mk(G, KIR_OP_TRANSPOSE, &a.id, 1);
  if (nd && r > 0 && chance(G, 0.7)) attr(G, kir_attr_set_ints(G->g, nd, "perm", perm, r));
  return fin(G, nd, a.bound);
}

/* ---------------------------------------------------------------- onnx ops ------ */
/* The ONNX operator set (issue 4). Shapes are drawn small (conv and pool sizes keep a
 * graph's run in microseconds, also under ASan); attributes take their optional forms
 * at random; every drawn shape is valid by construction, so generation never fails. */

static kir_type type_of(kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  return t;
}

/* Reshapes a rank-0 value to [1] (ops that need an axis). */
static val at_least_1d(gen *G, val a) {
  if (a.id < 0 || T(G, a)->rank > 0) return a;
  int64_t one = 1;
  kir_node *nd = mk(G, KIR_OP_RESHAPE, &a.id, 1);
  if (nd) attr(G, kir_attr_set_ints(G->g, nd, "shape", &one, 1));
  return fin(G, nd, a.bound);
}

static val un_attr_f(gen *G, kir_op op, val a, const char *name, double v, bool set, double bound) {
  kir_node *nd = mk(G, op, &a.id, 1);
  if (nd && set) attr(G, kir_attr_set_float(G->g, nd, name, v));
  return fin(G, nd, bound);
}

static val un_attr_i(gen *G, kir_op op, val a, const char *name, int64_t v, bool set, double bound) {
  kir_node *nd = mk(G, op, &a.id, 1);
  if (nd && set) attr(G, kir_attr_set_int(G->g, nd, name, v));
  return fin(G, nd, bound);
}

/* pow: a float base >= 0.25 to an exponent in [-2, 2]; an integer base in [-8, 8] to an
 * exponent in [0, 3] (a negative one would divide by a zero base). */
static val emit_pow(gen *G, val a) {
  bool fl = is_float(T(G, a)->dtype);
  val base = fl ? positive(G, a) : tame(G, a, 8);
  val e = partner(G, base, false);
  e = fl ? clamp(G, e, true, -2, true, 2) : clamp(G, e, true, 0, true, 3);
  double b = fmax(base.bound, fl ? 4 : 1);
  return bin(G, KIR_OP_POW, base, e, fl ? b * b : b * b * b);
}

static val emit_onnx_unary(gen *G, kir_op op, val a) {
  switch (op) {
  case KIR_OP_LEAKY_RELU:
    return un_attr_f(G, op, a, "alpha", round(runif(G, 0, 0.5) * 100) / 100, chance(G, 0.6), a.bound);
  case KIR_OP_GELU: return un_attr_i(G, op, a, "approximate", rint_(G, 0, 1), chance(G, 0.6), a.bound + 1);
  case KIR_OP_ERF: return un(G, op, a, 1);
  default: return un(G, op, a, a.bound); /* abs */
  }
}

static val emit_log_softmax(gen *G, val a) {
  a = tame(G, a, LIM_F);
  int32_t r = T(G, a)->rank;
  if (r == 0) return un(G, KIR_OP_ERF, a, 1);
  return un_attr_i(G, KIR_OP_LOG_SOFTMAX, a, "axis", rint_(G, -r, r - 1), chance(G, 0.6),
                   2 * a.bound + log((double)numel(T(G, a))) + 1);
}

static val emit_arg(gen *G, kir_op op, val a) {
  a = at_least_1d(G, a);
  int32_t r = T(G, a)->rank;
  kir_node *nd = mk(G, op, &a.id, 1);
  if (nd && chance(G, 0.7)) attr(G, kir_attr_set_int(G->g, nd, "axis", rint_(G, -r, r - 1)));
  if (nd && chance(G, 0.5)) attr(G, kir_attr_set_int(G->g, nd, "keep_dims", rint_(G, 0, 1)));
  if (nd && chance(G, 0.4)) attr(G, kir_attr_set_int(G->g, nd, "select_last_index", rint_(G, 0, 1)));
  return fin(G, nd, (double)numel(T(G, a)));
}

/* A value of type t: from the pool when one has it exactly, else a new source. */
static val of_type(gen *G, const kir_type *t) {
  for (int32_t tries = 0; tries < 4 && G->n_pool > 0 && chance(G, 0.5); tries++) {
    val c = G->pool[pool_index(G)];
    if (kir_type_equal(T(G, c), t)) return tame(G, c, lim_of(G, c));
  }
  return source(G, t);
}

/* concat of a and up to three values equal to a but along axis (sometimes a alone). */
static val emit_concat(gen *G, val a) {
  a = at_least_1d(G, tame(G, a, lim_of(G, a)));
  const kir_type *ta = T(G, a);
  int32_t r = ta->rank, axis = rint_(G, 0, r - 1), in[4] = {a.id, -1, -1, -1}, n = 1;
  int64_t total = numel(ta);
  double bound = a.bound;
  for (int32_t k = chance(G, 0.15) ? 0 : rint_(G, 1, 3); k > 0; k--) {
    kir_type t = *ta;
    t.dims[axis] = rint_(G, 1, 3);
    val v = chance(G, 0.2) ? a : of_type(G, &t);
    if (v.id < 0) return BAD;
    if (total + numel(T(G, v)) > G->max_numel) break;
    in[n++] = v.id;
    total += numel(T(G, v));
    bound = fmax(bound, v.bound);
  }
  kir_node *nd = mk(G, KIR_OP_CONCAT, in, n);
  if (nd) attr(G, kir_attr_set_int(G->g, nd, "axis", chance(G, 0.3) ? axis - r : axis));
  return fin(G, nd, bound);
}

/* One axis of a slice: bounds anywhere in [-d-2, d+2] (they clamp), sometimes the
 * extremes ONNX exporters write, steps 1, 2, -1 or -2. */
static void slice_axis(gen *G, int64_t d, int64_t *start, int64_t *end, int64_t *step) {
  double u = runif(G, 0, 1);
  *step = u < 0.6 ? 1 : u < 0.75 ? 2 : u < 0.9 ? -1 : -2;
  *start = rint_(G, (int32_t)-d - 2, (int32_t)d + 2);
  *end = rint_(G, (int32_t)-d - 2, (int32_t)d + 2);
  if (chance(G, 0.15)) *end = *step > 0 ? INT64_MAX : INT64_MIN;
  if (chance(G, 0.2)) { /* a non-empty range in the step's direction */
    *start = *step > 0 ? rint_(G, 0, (int32_t)d - 1) : rint_(G, 0, (int32_t)d - 1);
    *end = *step > 0 ? d : -d - 1;
  }
}

static val emit_slice(gen *G, val a) {
  a = at_least_1d(G, a);
  int32_t r = T(G, a)->rank, n = rint_(G, 1, r);
  int64_t perm[KILN_MAX_RANK], starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], steps[KILN_MAX_RANK];
  bool all_one = true, in_order = true, whole = chance(G, 0.1);
  for (int32_t i = 0; i < r; i++) perm[i] = i;
  if (chance(G, 0.5)) shuffle(G, perm, r);
  for (int32_t i = 0; i < n; i++) {
    int64_t d = T(G, a)->dims[perm[i]];
    if (whole) starts[i] = 0, ends[i] = d, steps[i] = 1;
    else slice_axis(G, d, &starts[i], &ends[i], &steps[i]);
    all_one = all_one && steps[i] == 1;
    in_order = in_order && perm[i] == i;
    if (chance(G, 0.2)) perm[i] -= r; /* a negative axis */
    in_order = in_order && perm[i] == i;
  }
  kir_node *nd = mk(G, KIR_OP_SLICE, &a.id, 1);
  if (nd) attr(G, kir_attr_set_ints(G->g, nd, "starts", starts, n));
  if (nd) attr(G, kir_attr_set_ints(G->g, nd, "ends", ends, n));
  if (nd && (!in_order || chance(G, 0.5))) attr(G, kir_attr_set_ints(G->g, nd, "axes", perm, n));
  if (nd && (!all_one || chance(G, 0.5))) attr(G, kir_attr_set_ints(G->g, nd, "steps", steps, n));
  return fin(G, nd, a.bound);
}

/* gather with constant indices in [-d, d-1] (negative ones count from the end). */
static val emit_gather(gen *G, val a) {
  a = at_least_1d(G, a);
  const kir_type *ta = T(G, a);
  int32_t r = ta->rank, axis = rint_(G, 0, r - 1);
  int64_t d = ta->dims[axis], idims[2] = {rint_(G, 1, 3), rint_(G, 1, 3)};
  int32_t ir = rint_(G, 0, 2);
  kir_type it = type_of(chance(G, 0.5) ? KILN_I32 : KILN_I64, ir, idims);
  if (numel(ta) / d * numel(&it) > G->max_numel) it.rank = 0;
  val idx = constant_filled(G, &it, (double)-d, (double)d);
  int32_t in[2] = {a.id, idx.id};
  kir_node *nd = mk(G, KIR_OP_GATHER, in, 2);
  if (nd && (axis != 0 || chance(G, 0.5)))
    attr(G, kir_attr_set_int(G->g, nd, "axis", chance(G, 0.3) ? axis - r : axis));
  return fin(G, nd, a.bound);
}

static val cast_to(gen *G, val a, kiln_dtype dt) {
  /* Into f16/bf16, or from a new integer dtype (whose values wrap, so their tracked bound
   * means little) into a float: clamped to +-1000 first, so the result stays finite. */
  kiln_dtype from = a.id >= 0 ? T(G, a)->dtype : KILN_F32;
  if (a.id >= 0 && dt != from && from != KILN_BOOL && (dt == KILN_F16 || dt == KILN_BF16 || (is_float(dt) && is_new(from) && !is_float(from)))) {
    if (is_float(from)) a = tame(G, a, 1000);
    else a = clamp(G, a, true, -1000, true, 1000), a.bound = fmin(a.bound, 1000);
  }
  bool to_int = !is_float(dt) && dt != KILN_BOOL;
  double b = dt == KILN_BOOL ? 1 : to_int && a.bound > 2e9 ? 2.2e9 : a.bound;
  return un_attr_i(G, KIR_OP_CAST, a, "dtype", dt, true, b);
}

/* cast between the numeric dtypes (to its own dtype now and then: simplify's no-op);
 * bool results only ever feed where or are fetched, so they stay out of the pool. */
static val emit_cast(gen *G, val a) {
  if (chance(G, 0.15)) { /* from bool */
    kir_type t = rand_shape(G, KILN_BOOL);
    return cast_to(G, constant_filled(G, &t, 0, 1), rand_dtype(G));
  }
  kiln_dtype dt = chance(G, 0.15) ? T(G, a)->dtype : rand_dtype(G);
  return cast_to(G, a, dt);
}

/* A bool condition broadcastable with a: a constant, or a cast of a value to bool
 * (floats through relu first, so about half the elements are false). */
static val condition(gen *G, val a) {
  kir_type t = compat_shape(G, T(G, a), false);
  if (chance(G, 0.35)) {
    t.dtype = KILN_BOOL;
    return constant_filled(G, &t, 0, 1);
  }
  val v = partner(G, a, false);
  if (is_float(T(G, v)->dtype)) v = un(G, KIR_OP_RELU, v, v.bound);
  return cast_to(G, v, KILN_BOOL);
}

static val emit_where(gen *G, val a) {
  a = tame(G, a, lim_of(G, a));
  val c = condition(G, a), y = tame(G, partner(G, a, false), lim_of(G, a));
  kir_type ca, out;
  if (c.id < 0 || y.id < 0) return BAD;
  if (!kir_broadcast(T(G, a), T(G, c), &ca)) return BAD; /* compat by construction */
  if (!kir_broadcast(&ca, T(G, y), &out) || numel(&out) > G->max_numel) y = source(G, T(G, a));
  int32_t in[3] = {c.id, a.id, y.id};
  return fin(G, mk(G, KIR_OP_WHERE, in, 3), fmax(a.bound, y.bound));
}

/* ---- convolution and pooling: x [N, C, d1..dk] */

typedef struct window {
  int32_t k; /* spatial dims */
  int64_t kernel[3], stride[3], dil[3], pads[6];
  bool ceil_mode;
} window;

/* A window that fits d (its extent never exceeds the input) and whose every position
 * covers at least one input element: pads below the kernel, dilation only unpadded. */
static void draw_window(gen *G, const int64_t *d, int32_t k, bool pool, window *w) {
  memset(w, 0, sizeof *w);
  w->k = k;
  bool padded = chance(G, 0.4), dilated = !padded && chance(G, 0.25);
  for (int32_t i = 0; i < k; i++) {
    w->kernel[i] = rint_(G, 1, (int32_t)(d[i] < 3 ? d[i] : 3));
    w->dil[i] = dilated && 2 * (w->kernel[i] - 1) + 1 <= d[i] ? 2 : 1;
    w->stride[i] = rint_(G, 1, 2);
    w->pads[i] = padded ? rint_(G, 0, (int32_t)w->kernel[i] - 1) : 0;
    w->pads[k + i] = padded ? rint_(G, 0, (int32_t)w->kernel[i] - 1) : 0;
  }
  w->ceil_mode = pool && chance(G, 0.3);
}

static int64_t out_dim(const window *w, int32_t i, int64_t d) {
  int64_t ext = w->dil[i] * (w->kernel[i] - 1) + 1, span = d + w->pads[i] + w->pads[w->k + i] - ext;
  int64_t o = span / w->stride[i] + 1;
  if (w->ceil_mode && span % w->stride[i]) o++;
  return o;
}

static void window_attrs(gen *G, kir_node *nd, const window *w, bool kernel) {
  if (!nd) return;
  int32_t k = w->k;
  bool any_pad = false, any_stride = false, any_dil = false;
  for (int32_t i = 0; i < k; i++) {
    any_pad = any_pad || w->pads[i] || w->pads[k + i];
    any_stride = any_stride || w->stride[i] != 1;
    any_dil = any_dil || w->dil[i] != 1;
  }
  if (kernel) attr(G, kir_attr_set_ints(G->g, nd, "kernel", w->kernel, k));
  if (any_stride || chance(G, 0.3)) attr(G, kir_attr_set_ints(G->g, nd, "strides", w->stride, k));
  if (any_pad || chance(G, 0.3)) attr(G, kir_attr_set_ints(G->g, nd, "pads", w->pads, 2 * k));
  if (any_dil || chance(G, 0.2)) attr(G, kir_attr_set_ints(G->g, nd, "dilations", w->dil, k));
  if (kernel && (w->ceil_mode || chance(G, 0.2)))
    attr(G, kir_attr_set_int(G->g, nd, "ceil_mode", w->ceil_mode));
}

/* The input of a conv or pool: a itself when it is already [N, C, d..] of a fitting
 * size, else a new source of a small such shape. */
static val spatial_input(gen *G, val a, kiln_dtype dt, int32_t channels_mult) {
  const kir_type *t = T(G, a);
  if (a.id >= 0 && t->dtype == dt && t->rank >= 3 && t->rank <= 5 && t->dims[1] % channels_mult == 0 &&
      chance(G, 0.7))
    return tame(G, a, lim_of(G, a));
  int32_t k = chance(G, 0.55) ? 2 : chance(G, 0.8) ? 1 : 3;
  int64_t dims[5] = {rint_(G, 1, 2), channels_mult * rint_(G, 1, 2)};
  for (int32_t i = 0; i < k; i++) dims[2 + i] = rint_(G, 2, k == 3 ? 3 : 6);
  kir_type x = type_of(dt, 2 + k, dims);
  for (int32_t i = 0; numel(&x) > G->max_numel / 2; i = (i + 1) % k)
    x.dims[2 + i] = x.dims[2 + i] > 1 ? x.dims[2 + i] - 1 : 1;
  return source(G, &x);
}

static double kernel_volume(const window *w) {
  double v = 1;
  for (int32_t i = 0; i < w->k; i++) v *= (double)w->kernel[i];
  return v;
}

/* The window, with the output kept within max_numel (shrinking to 1x1 kernels). */
static bool fit_window(gen *G, const kir_type *x, int64_t out_c, bool pool, window *w) {
  draw_window(G, x->dims + 2, x->rank - 2, pool, w);
  double out = (double)x->dims[0] * (double)out_c;
  for (int32_t i = 0; i < w->k; i++) out *= (double)out_dim(w, i, x->dims[2 + i]);
  return out <= G->max_numel;
}

/* A weight or bias: mostly a constant (so fold-batchnorm can fold), else any source. */
static val param(gen *G, const kir_type *t, double lo, double hi) {
  return chance(G, 0.8) ? constant_filled(G, t, lo, hi) : tame(G, source(G, t), LIM_F);
}

static val conv_of(gen *G, val x, val w, val b, const window *win, int64_t group, double bound) {
  int32_t in[3] = {x.id, w.id, b.id};
  kir_node *nd = mk(G, KIR_OP_CONV, in, b.id >= 0 ? 3 : 2);
  window_attrs(G, nd, win, false);
  if (nd && (group != 1 || chance(G, 0.2))) attr(G, kir_attr_set_int(G->g, nd, "group", group));
  return fin(G, nd, bound);
}

/* conv(x, w[, b]) with group 1 or 2; w_out (if not NULL) receives the weight. */
static val emit_conv_w(gen *G, val a, val *w_out) {
  int64_t group = chance(G, 0.25) ? 2 : 1;
  val x = spatial_input(G, a, T(G, a)->dtype, (int32_t)group);
  if (x.id < 0) return BAD;
  const kir_type *tx = T(G, x);
  int64_t m = group * rint_(G, 1, 2);
  window win;
  if (!fit_window(G, tx, m, false, &win)) return tame(G, x, LIM_F);
  int64_t wd[5] = {m, tx->dims[1] / group};
  for (int32_t i = 0; i < win.k; i++) wd[2 + i] = win.kernel[i];
  kir_type wt = type_of(tx->dtype, tx->rank, wd), bt = type_of(tx->dtype, 1, &m);
  val w = param(G, &wt, -1, 1), b = chance(G, 0.6) ? param(G, &bt, -1, 1) : BAD;
  if (w_out) *w_out = w;
  double bound = (double)wd[1] * kernel_volume(&win) * x.bound * w.bound + (b.id >= 0 ? b.bound : 0);
  return conv_of(G, x, w, b, &win, group, bound);
}

static val emit_conv(gen *G, val a) { return emit_conv_w(G, a, NULL); }

static val emit_pool(gen *G, kir_op op, val a) {
  val x = spatial_input(G, a, T(G, a)->dtype, 1);
  if (x.id < 0) return BAD;
  const kir_type *tx = T(G, x);
  window win;
  if (!fit_window(G, tx, tx->dims[1], true, &win)) return x;
  kir_node *nd = mk(G, op, &x.id, 1);
  window_attrs(G, nd, &win, true);
  if (nd && op == KIR_OP_AVG_POOL && chance(G, 0.5))
    attr(G, kir_attr_set_int(G->g, nd, "count_include_pad", rint_(G, 0, 1)));
  if (nd && op == KIR_OP_MAX_POOL_INDICES && chance(G, 0.5))
    attr(G, kir_attr_set_int(G->g, nd, "storage_order", rint_(G, 0, 1)));
  return fin(G, nd, op == KIR_OP_MAX_POOL_INDICES ? (double)numel(tx) : x.bound);
}

/* ---- batch_norm */

/* Parameters [C]: constants (var in [0.2, 2]) or, now and then, computed values (var
 * made positive), which fold-batchnorm must leave alone. */
static val bn_of(gen *G, val x) {
  int64_t c = T(G, x)->dims[1];
  kiln_dtype dt = T(G, x)->dtype;
  kir_type pt = type_of(dt, 1, &c);
  bool computed = chance(G, 0.1);
  val scale = constant_filled(G, &pt, 0.5, 1.5), bias = constant_filled(G, &pt, -1, 1);
  val mean = computed ? tame(G, source(G, &pt), 2) : constant_filled(G, &pt, -1, 1);
  val var = computed && chance(G, 0.5) ? positive(G, source(G, &pt)) : constant_filled(G, &pt, 0.2, 2);
  int32_t in[5] = {x.id, scale.id, bias.id, mean.id, var.id};
  kir_node *nd = mk(G, KIR_OP_BATCH_NORM, in, 5);
  if (nd && chance(G, 0.4)) attr(G, kir_attr_set_float(G->g, nd, "epsilon", round(runif(G, 1e-5, 1e-2) * 1e5) / 1e5));
  return fin(G, nd, (x.bound + mean.bound) * 1.5 / sqrt(0.2) + 1);
}

static val emit_bn(gen *G, val a) {
  a = tame(G, a, LIM_F);
  if (T(G, a)->rank < 2 || T(G, a)->rank > 5 || chance(G, 0.3)) a = spatial_input(G, a, T(G, a)->dtype, 1);
  return bn_of(G, a);
}

/* ---- patterns of CNNs: what fold-batchnorm, fuse and simplify look for */

/* conv -> batch_norm -> activation [-> residual add]: folded, then fused_conv. */
static val pattern_conv_block(gen *G, val a) {
  val c = emit_conv(G, a);
  if (c.id < 0 || T(G, c)->rank < 3) return c;
  if (chance(G, 0.6)) c = bn_of(G, c);
  c = tame(G, c, LIM_F);
  double u = runif(G, 0, 1);
  if (u < 0.4) c = un(G, KIR_OP_RELU, c, c.bound);
  else if (u < 0.6) c = emit_onnx_unary(G, KIR_OP_LEAKY_RELU, c);
  else if (u < 0.8) c = emit_clamp(G, c);
  if (chance(G, 0.4)) c = bin(G, KIR_OP_ADD, c, tame(G, of_type(G, T(G, c)), LIM_F), c.bound + LIM_F);
  return c;
}

/* Gemm then batch_norm: x [N, K] @ constant B -> batch_norm over the columns. */
static val pattern_gemm_bn(gen *G, val a) {
  a = tame(G, at_least_2d(G, a), LIM_F);
  if (a.id < 0 || T(G, a)->rank != 2 || !is_float(T(G, a)->dtype)) return a;
  int64_t k = T(G, a)->dims[1], n = rint_(G, 1, 5);
  bool tb = chance(G, 0.4);
  int64_t bd[2] = {tb ? n : k, tb ? k : n};
  kir_type bt = type_of(T(G, a)->dtype, 2, bd);
  val m = matmul_of(G, a, constant_filled(G, &bt, -1, 1), false, tb, (double)k * a.bound);
  if (chance(G, 0.5)) { /* Gemm's bias: [n], [1, n], [N, 1] or [N, n] */
    kir_type ct = compat_shape(G, T(G, m), true);
    m = bin(G, KIR_OP_ADD, m, constant_filled(G, &ct, -1, 1), m.bound + 1);
  }
  return bn_of(G, tame(G, m, LIM_F));
}

/* Two convs sharing one constant weight, one followed by a batch_norm: not folded. */
static val pattern_shared_weight(gen *G, val a) {
  val w = BAD, c1 = emit_conv_w(G, a, &w);
  if (c1.id < 0 || w.id < 0 || G->g->nodes[c1.id]->op != KIR_OP_CONV) return c1;
  const kir_node *cn = G->g->nodes[c1.id];
  int32_t in[2] = {cn->inputs[0], w.id};
  kir_node *nd = mk(G, KIR_OP_CONV, in, 2);
  if (nd) attr(G, kir_attr_copy_all(G->g, nd, cn)); /* same window and group, no bias */
  val c2 = fin(G, nd, c1.bound);
  val y = bn_of(G, tame(G, c1, LIM_F));
  return bin(G, KIR_OP_ADD, tame(G, y, LIM_F), tame(G, c2, LIM_F), 2 * LIM_F);
}

/* The new simplify rules: a cast to the same dtype, a whole slice, a concat of one
 * input, abs(abs(x)). */
static val pattern_noops(gen *G, val a) {
  switch (rint_(G, 0, 3)) {
  case 0: return cast_to(G, a, T(G, a)->dtype);
  case 1: {
    a = at_least_1d(G, a);
    int64_t s = 0, e = T(G, a)->dims[0], one = 1;
    kir_node *nd = mk(G, KIR_OP_SLICE, &a.id, 1);
    if (nd) attr(G, kir_attr_set_ints(G->g, nd, "starts", &s, 1));
    if (nd) attr(G, kir_attr_set_ints(G->g, nd, "ends", &e, 1));
    if (nd && chance(G, 0.5)) attr(G, kir_attr_set_ints(G->g, nd, "steps", &one, 1));
    return fin(G, nd, a.bound);
  }
  case 2: {
    a = at_least_1d(G, a);
    kir_node *nd = mk(G, KIR_OP_CONCAT, &a.id, 1);
    if (nd) attr(G, kir_attr_set_int(G->g, nd, "axis", 0));
    return fin(G, nd, a.bound);
  }
  default: return un(G, KIR_OP_ABS, un(G, KIR_OP_ABS, a, a.bound), a.bound);
  }
}

static val pattern_onnx(gen *G, val a) {
  bool fl = is_float(T(G, a)->dtype);
  switch (fl ? rint_(G, 0, 3) : 3) {
  case 0: return pattern_conv_block(G, a);
  case 1: return pattern_gemm_bn(G, a);
  case 2: return pattern_shared_weight(G, a);
  default: return pattern_noops(G, a);
  }
}

/* ---------------------------------------------------------------- op choice ----- */

typedef struct opw {
  kir_op op;
  int32_t w;
} opw;

/* Every op a user graph computes with; integer dtypes skip the float-only ones. */
static const opw OPS[] = {
    {KIR_OP_ADD, 8},        {KIR_OP_SUB, 6},         {KIR_OP_MUL, 6},
    {KIR_OP_DIV, 4},        {KIR_OP_MAXIMUM, 3},     {KIR_OP_MINIMUM, 3},
    {KIR_OP_NEG, 2},        {KIR_OP_EXP, 2},         {KIR_OP_LOG, 2},
    {KIR_OP_SQRT, 2},       {KIR_OP_TANH, 2},        {KIR_OP_SIGMOID, 2},
    {KIR_OP_RELU, 3},       {KIR_OP_CLAMP, 3},       {KIR_OP_MATMUL, 6},
    {KIR_OP_ADD_N, 3},      {KIR_OP_REDUCE_SUM, 3},  {KIR_OP_REDUCE_MEAN, 2},
    {KIR_OP_REDUCE_MAX, 2}, {KIR_OP_SOFTMAX, 2},     {KIR_OP_RESHAPE, 3},
    {KIR_OP_TRANSPOSE, 3},  {KIR_OP_IDENTITY, 1},
    /* the ONNX operator set (issue 4) */
    {KIR_OP_POW, 2},        {KIR_OP_ABS, 2},         {KIR_OP_LEAKY_RELU, 2},
    {KIR_OP_ERF, 1},        {KIR_OP_GELU, 2},        {KIR_OP_REDUCE_MIN, 2},
    {KIR_OP_LOG_SOFTMAX, 1}, {KIR_OP_ARGMAX, 1},     {KIR_OP_ARGMIN, 1},
    {KIR_OP_CONCAT, 2},     {KIR_OP_SLICE, 3},       {KIR_OP_GATHER, 2},
    {KIR_OP_CAST, 2},       {KIR_OP_WHERE, 2},       {KIR_OP_CONV, 3},
    {KIR_OP_MAX_POOL, 2},   {KIR_OP_AVG_POOL, 2},    {KIR_OP_BATCH_NORM, 2},
    {KIR_OP_MAX_POOL_INDICES, 1},
};
#define N_OPS ((int32_t)(sizeof OPS / sizeof OPS[0]))

/* Whether op may take a value of dtype dt: integers skip the float-only ops; the new
 * dtypes take elementwise, reduction, shape, cast, where, arg and (integers) max_pool. */
static bool op_ok(kir_op op, kiln_dtype dt) {
  if (!is_float(dt) && kir_op_has(op, KIR_F_FLOAT_ONLY)) return false;
  if (!is_new(dt)) return true;
  switch (op) {
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: case KIR_OP_NEG: case KIR_OP_RELU: case KIR_OP_CLAMP: case KIR_OP_ABS:
  case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT: case KIR_OP_TANH: case KIR_OP_SIGMOID:
  case KIR_OP_ERF: case KIR_OP_LEAKY_RELU: case KIR_OP_ADD_N:
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: case KIR_OP_REDUCE_MIN:
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: case KIR_OP_RESHAPE: case KIR_OP_TRANSPOSE:
  case KIR_OP_IDENTITY: case KIR_OP_CONCAT: case KIR_OP_SLICE: case KIR_OP_GATHER:
  case KIR_OP_CAST: case KIR_OP_WHERE: return true;
  case KIR_OP_MAX_POOL: return !is_float(dt);
  default: return false;
  }
}

static kir_op choose_op(gen *G, kiln_dtype dt) {
  int32_t total = 0;
  for (int32_t i = 0; i < N_OPS; i++)
    if (op_ok(OPS[i].op, dt)) total += OPS[i].w;
  int32_t x = rint_(G, 0, total - 1);
  for (int32_t i = 0; i < N_OPS; i++) {
    if (!op_ok(OPS[i].op, dt)) continue;
    if (x < OPS[i].w) return OPS[i].op;
    x -= OPS[i].w;
  }
  return KIR_OP_IDENTITY;
}

static val emit(gen *G, kir_op op, val a) {
  switch (op) {
  case KIR_OP_ADD:
  case KIR_OP_SUB:
  case KIR_OP_MUL:
  case KIR_OP_DIV:
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: return emit_binary(G, op, a);
  case KIR_OP_MATMUL: return emit_matmul(G, a);
  case KIR_OP_ADD_N: return emit_add_n(G, a);
  case KIR_OP_REDUCE_SUM:
  case KIR_OP_REDUCE_MEAN:
  case KIR_OP_REDUCE_MAX:
  case KIR_OP_REDUCE_MIN: return emit_reduce(G, op, tame(G, a, lim_of(G, a)));
  case KIR_OP_POW: return emit_pow(G, a);
  case KIR_OP_ABS:
  case KIR_OP_LEAKY_RELU:
  case KIR_OP_ERF:
  case KIR_OP_GELU: return emit_onnx_unary(G, op, a);
  case KIR_OP_LOG_SOFTMAX: return emit_log_softmax(G, a);
  case KIR_OP_ARGMAX:
  case KIR_OP_ARGMIN: return emit_arg(G, op, a);
  case KIR_OP_CONCAT: return emit_concat(G, a);
  case KIR_OP_SLICE: return emit_slice(G, a);
  case KIR_OP_GATHER: return emit_gather(G, a);
  case KIR_OP_CAST: return emit_cast(G, a);
  case KIR_OP_WHERE: return emit_where(G, a);
  case KIR_OP_CONV: return emit_conv(G, a);
  case KIR_OP_MAX_POOL:
  case KIR_OP_AVG_POOL:
  case KIR_OP_MAX_POOL_INDICES: return emit_pool(G, op, a);
  case KIR_OP_BATCH_NORM: return emit_bn(G, a);
  case KIR_OP_SOFTMAX: return emit_softmax(G, tame(G, a, LIM_F));
  case KIR_OP_RESHAPE: return emit_reshape(G, a);
  case KIR_OP_TRANSPOSE: return emit_transpose(G, a);
  default: return emit_unary(G, op, a);
  }
}

/* ---------------------------------------------------------------- patterns ------ */
/* Shapes the rewriting passes look for, so their rewrites get differential coverage. */

static val pattern_identity_op(gen *G, val a) {
  kiln_dtype dt = T(G, a)->dtype;
  kir_type t = compat_shape(G, T(G, a), true);
  switch (rint_(G, 0, 3)) {
  case 0: return bin(G, KIR_OP_MUL, a, constant_filled(G, &t, 1, 1), a.bound);
  case 1: return bin(G, chance(G, 0.5) ? KIR_OP_ADD : KIR_OP_SUB, a, constant_filled(G, &t, 0, 0), a.bound);
  case 2: return bin(G, KIR_OP_DIV, a, scalar(G, dt, 1), a.bound);
  default: return bin(G, KIR_OP_ADD, constant_filled(G, &t, 0, 0), a, a.bound);
  }
}

static val pattern_twice(gen *G, val a) {
  switch (rint_(G, 0, 4)) {
  case 0: return emit_transpose(G, emit_transpose(G, a));
  case 1: return emit_reshape(G, emit_reshape(G, a));
  case 2: return un(G, KIR_OP_NEG, un(G, KIR_OP_NEG, a, a.bound), a.bound);
  case 3: return emit_clamp(G, emit_clamp(G, a));
  default: return un(G, KIR_OP_IDENTITY, un(G, KIR_OP_IDENTITY, a, a.bound), a.bound);
  }
}

/* reduce_sum(matmul(A, B)) with random axes: simplify's rewrite. */
static val pattern_sum_matmul(gen *G, val a) {
  val m = emit_matmul(G, a);
  if (m.id < 0) return BAD;
  return emit_reduce(G, KIR_OP_REDUCE_SUM, m);
}

/* matmul followed by a bias add, an activation and a scale: fuse's epilogue. */
static val pattern_mlp(gen *G, val a) {
  val m = emit_matmul(G, a);
  if (m.id < 0) return BAD;
  m = tame(G, m, lim_of(G, m));
  const kir_type *t = T(G, m);
  kir_type bias;
  memset(&bias, 0, sizeof bias);
  bias.dtype = t->dtype;
  bias.rank = 1;
  bias.dims[0] = t->dims[t->rank - 1];
  val x = bin(G, KIR_OP_ADD, m, source(G, &bias), m.bound + 2);
  x = chance(G, 0.5) ? un(G, KIR_OP_RELU, x, x.bound) : emit_clamp(G, x);
  return bin(G, KIR_OP_MUL, x, scalar(G, t->dtype, runif(G, -2, 2)), x.bound * 2);
}

/* The same computation twice, then combined: cse's duplicates. */
static val pattern_dup(gen *G, val a) {
  a = tame(G, a, lim_of(G, a));
  val b = tame(G, partner(G, a, false), lim_of(G, a));
  kir_op op = chance(G, 0.5) ? KIR_OP_ADD : KIR_OP_MAXIMUM;
  val x = bin(G, op, a, b, a.bound + b.bound), y = bin(G, op, a, b, a.bound + b.bound);
  return bin(G, KIR_OP_SUB, x, y, 2 * x.bound);
}

static val pattern(gen *G, val a) {
  if (a.id >= 0 && is_new(T(G, a)->dtype)) { /* no matmul, conv or batch_norm */
    switch (rint_(G, 0, 3)) {
    case 0: return pattern_identity_op(G, a);
    case 1: return pattern_twice(G, a);
    case 2: return pattern_dup(G, a);
    default: return pattern_noops(G, a);
    }
  }
  switch (rint_(G, 0, 6)) {
  case 5:
  case 6: return pattern_onnx(G, a);
  case 0: return pattern_identity_op(G, a);
  case 1: return pattern_twice(G, a);
  case 2: return pattern_sum_matmul(G, a);
  case 3: return pattern_mlp(G, a);
  default: return pattern_dup(G, a);
  }
}

/* ---------------------------------------------------------------- flavours ------ */

/* A bool source through shape ops only (bool takes no arithmetic); always fetched. */
static void bool_chain(gen *G) {
  kir_type t = rand_shape(G, KILN_BOOL);
  val v = chance(G, 0.5) ? constant_filled(G, &t, 0, 1) : source(G, &t);
  for (int32_t i = rint_(G, 1, 2); i > 0 && v.id >= 0; i--) {
    int32_t c = rint_(G, 0, 2);
    v = c == 0 ? emit_reshape(G, v) : c == 1 ? emit_transpose(G, v) : un(G, KIR_OP_IDENTITY, v, 1);
  }
  push_id(G, &G->extra, &G->n_extra, &G->cap_extra, v.id);
}

static void make_variables(gen *G, kt_gen *out) {
  int32_t n = rint_(G, 1, 3);
  out->vars = kir_calloc((size_t)n, sizeof *out->vars);
  out->var_inits = kir_calloc((size_t)n, sizeof *out->var_inits);
  if (!out->vars || !out->var_inits) return failed(G, KILN_ERR_NOMEM);
  for (int32_t i = 0; i < n && G->st == KILN_OK; i++) {
    kiln_dtype dt = old_dtype(G);
    kir_type t = rand_shape(G, dt);
    val init = is_float(dt) && chance(G, 0.3) ? random_source(G, &t)
                                               : constant_filled(G, &t, -range_of(dt), range_of(dt));
    val var = pool_add(G, un(G, KIR_OP_VARIABLE, init, init.bound));
    if (var.id < 0) return;
    out->vars[i] = kir_strdup(G->g->nodes[var.id]->name);
    out->var_inits[i] = kir_strdup(G->g->nodes[init.id]->name);
    out->n_vars = i + 1;
    if (!out->vars[i] || !out->var_inits[i]) return failed(G, KILN_ERR_NOMEM);
  }
}

/* For most variables: assign(var, var op something-of-its-shape); a group runs them. */
static void make_assigns(gen *G, const kt_gen *out) {
  for (int32_t i = 0; i < out->n_vars && G->st == KILN_OK; i++) {
    if (!chance(G, 0.8)) continue;
    kir_node *vn = kir_graph_find(G->g, out->vars[i]);
    val var = {vn->id, LIM_F};
    val upd = tame(G, partner(G, var, true), lim_of(G, var));
    kir_op op = chance(G, 0.5) ? KIR_OP_ADD : chance(G, 0.5) ? KIR_OP_SUB : KIR_OP_MAXIMUM;
    val value = tame(G, bin(G, op, tame(G, var, lim_of(G, var)), upd, 2 * LIM_F), lim_of(G, var));
    val as = bin(G, KIR_OP_ASSIGN, var, value, value.bound);
    push_id(G, &G->assigns, &G->n_assigns, &G->cap_assigns, as.id);
    if (as.id >= 0 && chance(G, 0.3)) push_id(G, &G->extra, &G->n_extra, &G->cap_extra, as.id);
  }
}

/* ---------------------------------------------------------------- roots, feeds -- */

/* Appends node id to the roots unless it is one already (is_root: per node id). */
static bool add_root(kt_gen *out, const kir_graph *g, bool *is_root, int32_t id) {
  if (is_root[id]) return true;
  out->roots[out->n_roots] = kir_strdup(g->nodes[id]->name);
  if (!out->roots[out->n_roots]) return false;
  is_root[id] = true;
  out->n_roots++;
  return true;
}

static bool is_sink_candidate(const kir_node *n, const bool *used) {
  return !used[n->id] && n->type.dtype != KILN_DTYPE_INVALID && n->op != KIR_OP_PLACEHOLDER &&
         n->op != KIR_OP_CONSTANT && n->op != KIR_OP_VARIABLE;
}

static void choose_fetches(gen *G, kt_gen *out, bool *is_root, const int32_t *sinks, int32_t n_sinks) {
  kir_graph *g = G->g;
  bool ok = true;
  if (G->o->roots_all_sinks) {
    for (int32_t i = 0; i < n_sinks && ok; i++) ok = add_root(out, g, is_root, sinks[i]);
  } else {
    for (int32_t k = rint_(G, 1, 4); k > 0 && ok; k--) {
      int32_t id = n_sinks > 0 && chance(G, 0.7) ? sinks[rint_(G, 0, n_sinks - 1)]
                                                 : pick(G).id;
      ok = add_root(out, g, is_root, id);
    }
  }
  for (int32_t i = 0; i < G->n_extra && ok; i++) ok = add_root(out, g, is_root, G->extra[i]);
  if (!ok) failed(G, KILN_ERR_NOMEM);
}

/* Fetches: sinks (values nobody reads) and a few others; then a group of the assigns
 * (and sometimes a no_op) as the one target. */
static void choose_roots(gen *G, kt_gen *out) {
  kir_graph *g = G->g;
  int32_t nn = g->n_nodes;
  bool *used = kir_calloc((size_t)nn + 2, sizeof *used);
  bool *is_root = kir_calloc((size_t)nn + 2, sizeof *is_root);
  int32_t *sinks = kir_calloc((size_t)nn + 1, sizeof *sinks);
  out->roots = kir_calloc((size_t)nn + 2, sizeof *out->roots);
  int32_t n_sinks = 0;
  if (!used || !is_root || !sinks || !out->roots) {
    failed(G, KILN_ERR_NOMEM);
  } else {
    for (int32_t i = 0; i < nn; i++)
      for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) used[g->nodes[i]->inputs[k]] = true;
    for (int32_t i = 0; i < nn; i++)
      if (is_sink_candidate(g->nodes[i], used)) sinks[n_sinks++] = i;
    choose_fetches(G, out, is_root, sinks, n_sinks);
    out->n_fetches = out->n_roots;
  }
  kir_free(used);
  kir_free(sinks);
  if (G->st == KILN_OK && G->n_assigns > 0) {
    if (chance(G, 0.5)) /* a no_op among the group's inputs: ordering only */
      push_id(G, &G->assigns, &G->n_assigns, &G->cap_assigns, fin(G, mk(G, KIR_OP_NO_OP, NULL, 0), 0).id);
    kir_node *grp = mk(G, KIR_OP_GROUP, G->assigns, G->n_assigns);
    /* the group is new: no root yet, and is_root has a spare slot for it */
    if (fin(G, grp, 0).id >= 0 && !add_root(out, g, is_root, grp->id)) failed(G, KILN_ERR_NOMEM);
  }
  kir_free(is_root);
}

static void make_feeds(gen *G, kt_gen *out) {
  kir_graph *g = G->g;
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == KIR_OP_PLACEHOLDER;
  out->feed_names = kir_calloc((size_t)n + 1, sizeof *out->feed_names);
  out->feed_values = kir_calloc((size_t)n + 1, sizeof *out->feed_values);
  if (!out->feed_names || !out->feed_values) return failed(G, KILN_ERR_NOMEM);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *nd = g->nodes[i];
    if (nd->op != KIR_OP_PLACEHOLDER) continue;
    kir_tensor *v = kir_tensor_new(&nd->type);
    char *name = kir_strdup(nd->name);
    out->feed_names[out->n_feeds] = name;
    out->feed_values[out->n_feeds] = v;
    out->n_feeds++;
    if (!v || !name) return failed(G, KILN_ERR_NOMEM);
    double r = nd->type.dtype == KILN_BOOL ? 1 : range_of(nd->type.dtype);
    fill(v, rnd(G), nd->type.dtype == KILN_BOOL ? 0 : -r, r);
  }
}

/* ---------------------------------------------------------------- entry --------- */

static void grow_graph(gen *G, kt_gen *out) {
  int32_t target = G->o->n_nodes > 0 ? G->o->n_nodes : 20;
  for (int32_t i = rint_(G, 1, 3); i > 0; i--) {
    kir_type t = rand_shape(G, rand_dtype(G));
    pool_add(G, source(G, &t));
  }
  if (G->o->stateful) make_variables(G, out);
  if (chance(G, 0.1)) bool_chain(G);
  while (G->st == KILN_OK && G->g->n_nodes < target) {
    if (chance(G, 0.04)) {
      kir_type t = rand_shape(G, rand_dtype(G));
      pool_add(G, source(G, &t));
      continue;
    }
    val a = pick(G);
    val v = chance(G, 0.12) ? pattern(G, a) : emit(G, choose_op(G, T(G, a)->dtype), a);
    if (v.id >= 0 && numel(T(G, v)) == 0) /* an empty slice: fetched, never an operand */
      push_id(G, &G->extra, &G->n_extra, &G->cap_extra, v.id);
    else
      pool_add(G, v);
  }
  if (G->o->stateful) make_assigns(G, out);
}

kiln_status kt_gen_build(uint64_t seed, const kt_gen_opts *opts, kt_gen *out, char *err,
                         size_t err_n) {
  kt_gen_opts dflt;
  memset(&dflt, 0, sizeof dflt);
  memset(out, 0, sizeof *out);
  gen G;
  memset(&G, 0, sizeof G);
  G.o = opts ? opts : &dflt;
  G.rng = seed * 0x2545F4914F6CDD1Dull + 17;
  G.max_numel = G.o->max_numel >= 16 ? G.o->max_numel : MAX_NUMEL;
  G.window = G.o->window > 0 ? G.o->window : 0;
  G.g = out->g = kir_graph_create();
  if (!G.g) G.st = KILN_ERR_NOMEM;
  if (G.st == KILN_OK) grow_graph(&G, out);
  if (G.st == KILN_OK) choose_roots(&G, out);
  if (G.st == KILN_OK) make_feeds(&G, out);
  if (G.st == KILN_OK) G.st = kir_verify(G.g);
  if (G.st != KILN_OK && err)
    snprintf(err, err_n, "kt_gen seed %llu: %s: %s", (unsigned long long)seed,
             kiln_status_name(G.st), G.g ? G.g->error : "out of memory");
  kir_free(G.pool);
  kir_free(G.extra);
  kir_free(G.assigns);
  kiln_status st = G.st;
  if (st != KILN_OK) kt_gen_free(out);
  return st;
}

static void free_strings(char **v, int32_t n) {
  for (int32_t i = 0; v && i < n; i++) kir_free(v[i]);
  kir_free(v);
}

void kt_gen_free(kt_gen *k) {
  if (!k) return;
  kir_graph_destroy(k->g);
  free_strings(k->roots, k->n_roots);
  free_strings(k->feed_names, k->n_feeds);
  for (int32_t i = 0; k->feed_values && i < k->n_feeds; i++) kir_tensor_free(k->feed_values[i]);
  kir_free(k->feed_values);
  free_strings(k->vars, k->n_vars);
  free_strings(k->var_inits, k->n_vars);
  memset(k, 0, sizeof *k);
}
