/* test_codegen_dtypes.c — the C kernels on the dtypes of issue 4's second step (u8 i8
 * u16 i16 u32 u64 f16 bf16) against the reference interpreter, compiled with
 * kcg_compile_cpu and run through libkiln_rt into poisoned outputs. Inputs are seeded
 * random bit patterns (every value of the width: u64 values >= 2^63, signed minimums,
 * f16/bf16 NaN, infinities and subnormals) plus chosen edge values. Results must agree
 * exactly (NaN with NaN): the kernels use the interpreter's own arithmetic. Covers
 * elementwise ops with wrapping, unsigned division and comparison, integer division by
 * zero, a fused chain, reductions, argmax/argmin, max_pool, cast between every pair of
 * dtypes (saturation, NaN, f16/bf16 rounding ties), and the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/kt.h"
#include "tests/codegen/kcg_harness.h"
#include "codegen/kcg.h"
#include "runtime/kiln_runtime.h"

#define IN(...) (const int32_t[]){__VA_ARGS__}, (int32_t)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static const kiln_dtype NEW_INTS[] = {KILN_U8, KILN_I8, KILN_U16, KILN_I16, KILN_U32, KILN_U64};
static const kiln_dtype HALVES[] = {KILN_F16, KILN_BF16};
static const kiln_dtype ALL[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL, KILN_U8, KILN_I8,
                                 KILN_U16, KILN_I16, KILN_U32, KILN_U64, KILN_F16, KILN_BF16};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void set_bits(kir_tensor *t, int64_t i, uint64_t u) {
  switch (kiln_dtype_size(t->type.dtype)) {
  case 1: ((uint8_t *)t->data)[i] = (uint8_t)u; break;
  case 2: ((uint16_t *)t->data)[i] = (uint16_t)u; break;
  case 4: ((uint32_t *)t->data)[i] = (uint32_t)u; break;
  default: ((uint64_t *)t->data)[i] = u; break;
  }
}

static uint64_t get_bits(const kir_tensor *t, int64_t i) {
  switch (kiln_dtype_size(t->type.dtype)) {
  case 1: return ((const uint8_t *)t->data)[i];
  case 2: return ((const uint16_t *)t->data)[i];
  case 4: return ((const uint32_t *)t->data)[i];
  default: return ((const uint64_t *)t->data)[i];
  }
}

/* Placeholder values by name: "x"/"y": integers are raw bits (a quarter small values in
 * [-8, 8)), floats values in [-4, 4) with a few specials; "d": as x but never 0 (a
 * divisor); "e": small exponents [0, 6); "bits": raw bits for every dtype (casts), with
 * edge values first. */
static const double EDGE[] = {
    NAN, INFINITY, -INFINITY, 0.0, -0.0, 0.5, -0.5, 0.99, -0.99, 1.5, -1.5, 2.5, 127.5, 128.0,
    -128.5, -129.0, 255.5, 256.0, 32767.5, -32768.9, 65535.9, 65536.0, 2147483647.5,
    -2147483649.0, 4294967295.5, 4294967296.0, 9223372036854775807.0, -9223372036854775808.0,
    -9.3e18, 18446744073709551615.0, 1.9e19, 1e30, -1e30, 65504.0, 65519.99, 65520.0,
    1.0 + 0x1p-11, 1.0 + 3 * 0x1p-11, 1.0 + 0x1p-8, 1.0 + 3 * 0x1p-8, 0x1p-24, 0x1p-25,
    0x1.8p-25, 0x1p-133, 0x1p-134, 3.3895313892515355e38, 3.4e38, 1e-40, -1e-45};

static void fill(kir_tensor *t, const char *name, uint64_t seed) {
  kiln_dtype dt = t->type.dtype;
  int64_t ne = kir_type_numel(&t->type);
  uint64_t s = seed;
  bool fl = kir_dtype_is_float(dt);
  for (int64_t i = 0; i < ne; i++) {
    uint64_t r = mix(&s);
    if (!strncmp(name, "bits", 4)) {
      if (i < COUNT(EDGE)) kir_tensor_set_f(t, i, EDGE[i]);
      else if (dt == KILN_BOOL) set_bits(t, i, r & 1);
      else if (dt == KILN_F32) ((float *)t->data)[i] = (float)ldexp((double)(int64_t)r, -(int)(r & 63) - 20);
      else if (dt == KILN_F64) ((double *)t->data)[i] = ldexp((double)(int64_t)r, -(int)(r & 63) - 30);
      else set_bits(t, i, r);
      continue;
    }
    if (name[0] == 'e') {
      kir_tensor_set_i(t, i, (int64_t)(r % 6));
      continue;
    }
    if (fl) {
      double v = ldexp((double)(r >> 11), -53) * 8 - 4;
      if (r % 17 == 0) v = EDGE[(r >> 8) % 6];
      kir_tensor_set_f(t, i, v);
    } else if (r % 4 == 0) {
      kir_tensor_set_i(t, i, (int64_t)((r >> 8) % 16) - 8);
    } else {
      set_bits(t, i, r >> 3 | r << 61);
    }
    if (!strncmp(name, "pos", 3)) kir_tensor_set_f(t, i, 0.1 + ldexp((double)(r >> 11), -53) * 3);
    if (name[0] == 'd' && get_bits(t, i) == 0) set_bits(t, i, 3);
  }
}

/* Values equal: bits, or both NaN of a float dtype. */
static bool same(const kir_tensor *a, const kir_tensor *b, int64_t i) {
  if (get_bits(a, i) == get_bits(b, i)) return true;
  if (!kir_dtype_is_float(a->type.dtype)) return false;
  return isnan(kir_tensor_get_f(a, i)) && isnan(kir_tensor_get_f(b, i));
}

/* Reference, compile, run (poisoned outputs), compare exactly; returns the run status
 * (the check is done only when it is OK). */
static kiln_rt_status run_and_compare(kir_graph *g, const kh_outs *o, bool expect_ok) {
  kh_run *r = kh_run_new();
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    r->in[r->n_in] = kir_tensor_new(&g->nodes[i]->type);
    assert_non_null(r->in[r->n_in]);
    fill(r->in[r->n_in], g->nodes[i]->name, 7777 + (uint64_t)i * 1013);
    r->feeds[r->n_in] = (kir_feed){i, r->in[r->n_in]};
    r->n_in++;
  }
  for (int32_t j = 0; j < o->n; j++) r->ids[j] = kir_graph_find(g, o->names[j])->id;
  kiln_status ref = kir_interp_run(g, NULL, r->feeds, r->n_in, r->ids, o->n, NULL, 0, r->want);
  if (expect_ok && ref != KILN_OK) fail_msg("reference: %s", g->error);
  const char *path = kt_path("dtypes.kart");
  kh_compile_or_fail(g, o, path);
  char err[512];
  kiln_rt_status s = kh_run_artifact(g, path, o, r, err, sizeof err);
  unlink(path);
  if (!expect_ok) {
    assert_int_not_equal(ref, KILN_OK);
    kh_run_free(r);
    return s;
  }
  if (s != KILN_RT_OK) fail_msg("run: %s", err);
  for (int32_t j = 0; j < o->n; j++) {
    int64_t ne = kir_type_numel(&r->want[j]->type);
    assert_int_equal(r->want[j]->type.dtype, r->got[j]->type.dtype);
    for (int64_t i = 0; i < ne; i++)
      if (!same(r->got[j], r->want[j], i))
        fail_msg("output '%s' element %lld: got 0x%llx (%.17g), want 0x%llx (%.17g)", o->names[j],
                 (long long)i, (unsigned long long)get_bits(r->got[j], i), kir_tensor_get_f(r->got[j], i),
                 (unsigned long long)get_bits(r->want[j], i), kir_tensor_get_f(r->want[j], i));
  }
  kh_run_free(r);
  return s;
}

static const char *nm(const char *base, kiln_dtype dt) {
  static char buf[64][48];
  static int k;
  char *b = buf[k++ % 64];
  snprintf(b, 48, "%s_%s", base, kiln_dtype_name(dt));
  return b;
}

static int32_t with_int(kir_graph *g, kir_op op, const char *name, int32_t a, const char *attr, int64_t v) {
  kir_node *n = kh_add(g, op, name, &a, 1);
  assert_int_equal(kir_attr_set_int(g, n, attr, v), KILN_OK);
  return kh_finish(g, n);
}

/* ---------------------------------------------------------------- integers ------ */

static void ints_elementwise(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(4, 9)), y = kh_ph(g, "y", dt, DIMS(4, 9));
  int32_t yb = kh_ph(g, "yb", dt, DIMS(3, 1, 9)); /* broadcast */
  int32_t d = kh_ph(g, "d", dt, DIMS(4, 9)), e = kh_ph(g, "e", dt, DIMS(9));
  kh_out(&o, g, kh_op2(g, KIR_OP_MUL, nm("bmul", dt), x, yb));
  static const kir_op bin[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_MAXIMUM, KIR_OP_MINIMUM};
  for (int i = 0; i < COUNT(bin); i++) kh_out(&o, g, kh_op2(g, bin[i], nm(kir_op_get(bin[i])->name, dt), x, y));
  kh_out(&o, g, kh_op2(g, KIR_OP_DIV, nm("div", dt), x, d));
  kh_out(&o, g, kh_op2(g, KIR_OP_POW, nm("pow", dt), x, e));
  static const kir_op un[] = {KIR_OP_NEG, KIR_OP_RELU, KIR_OP_ABS};
  for (int i = 0; i < COUNT(un); i++) kh_out(&o, g, kh_op1(g, un[i], nm(kir_op_get(un[i])->name, dt), x));
  kh_out(&o, g, kh_clamp(g, nm("clamp", dt), x, -3.5, 100.2));
  kh_out(&o, g, kh_clamp(g, nm("clamp_lo", dt), x, 1e3, NAN));
  kh_out(&o, g, kh_clamp(g, nm("clamp_hi", dt), x, NAN, 9.3e18));
  kh_out(&o, g, kh_clamp(g, nm("clamp_neg", dt), x, NAN, -1));
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);
}

/* broadcasting, and the integer division by zero at run time */
static void ints_bcast_div0(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(3, 1, 5)), y = kh_ph(g, "y", dt, DIMS(4, 5));
  kh_out(&o, g, kh_op2(g, KIR_OP_SUB, nm("bsub", dt), x, y));
  kh_out(&o, g, kh_op2(g, KIR_OP_MAXIMUM, nm("bmax", dt), y, x));
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);

  g = kir_graph_create();
  kh_outs o2 = {{0}, 0};
  x = kh_ph(g, "x", dt, DIMS(6));
  int32_t z = kh_ph(g, "e", dt, DIMS(6)); /* [0, 6): has zeros */
  kh_out(&o2, g, kh_op2(g, KIR_OP_DIV, nm("div0", dt), x, z));
  assert_int_equal(run_and_compare(g, &o2, false), KILN_RT_ERR_EXEC);
  kir_graph_destroy(g);
}

/* A u64 division and comparison with values >= 2^63, fixed (not random). */
static void test_u64_edges(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  uint64_t av[4] = {0xFFFFFFFFFFFFFFFFull, 0x8000000000000000ull, 5, 0x8000000000000001ull};
  uint64_t bv[4] = {2, 0x7FFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFEull, 0xFFFFFFFFFFFFFFFFull};
  kir_tensor *ta = kh_tensor(KILN_U64, DIMS(4)), *tb = kh_tensor(KILN_U64, DIMS(4));
  memcpy(ta->data, av, sizeof av);
  memcpy(tb->data, bv, sizeof bv);
  int32_t a = kh_cst_t(g, "a", ta), b = kh_cst_t(g, "b", tb);
  kir_tensor_free(ta);
  kir_tensor_free(tb);
  int32_t q = kh_op2(g, KIR_OP_DIV, "q", a, b), mx = kh_op2(g, KIR_OP_MAXIMUM, "mx", a, b);
  int32_t mn = kh_op2(g, KIR_OP_MINIMUM, "mn", a, b);
  int32_t rm = kh_reduce(g, KIR_OP_REDUCE_MAX, "rmax", a, NULL, 0, 0);
  int32_t am = with_int(g, KIR_OP_ARGMAX, "amax", b, "axis", 0);
  kh_out(&o, g, q);
  kh_out(&o, g, mx);
  kh_out(&o, g, mn);
  kh_out(&o, g, rm);
  kh_out(&o, g, am);
  kh_run *r = kh_run_new();
  for (int32_t j = 0; j < o.n; j++) r->ids[j] = kir_graph_find(g, o.names[j])->id;
  assert_int_equal(kir_interp_run(g, NULL, NULL, 0, r->ids, o.n, NULL, 0, r->want), KILN_OK);
  const char *path = kt_path("u64.kart");
  kh_compile_or_fail(g, &o, path);
  char err[256];
  assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  unlink(path);
  const uint64_t *gq = r->got[0]->data, *gx = r->got[1]->data, *gn = r->got[2]->data;
  assert_int_equal(gq[0], 0x7FFFFFFFFFFFFFFFull);
  assert_int_equal(gq[1], 1);
  assert_int_equal(gq[2], 0);
  assert_int_equal(gq[3], 0);
  assert_int_equal(gx[2], 0xFFFFFFFFFFFFFFFEull);
  assert_int_equal(gn[0], 2);
  assert_int_equal(gn[3], 0x8000000000000001ull);
  assert_int_equal(((const uint64_t *)r->got[3]->data)[0], 0xFFFFFFFFFFFFFFFFull);
  assert_int_equal(((const int64_t *)r->got[4]->data)[0], 3);
  for (int32_t j = 0; j < o.n; j++)
    assert_memory_equal(r->got[j]->data, r->want[j]->data, (size_t)kir_type_nbytes(&r->want[j]->type));
  kh_run_free(r);
  kir_graph_destroy(g);
}

static void reductions(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(3, 5, 4));
  static const kir_op red[] = {KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX, KIR_OP_REDUCE_MIN};
  for (int i = 0; i < COUNT(red); i++) {
    kh_out(&o, g, kh_reduce(g, red[i], nm(kir_op_get(red[i])->name, dt), x, (const int64_t[]){1}, 1, 0));
    char b[32];
    snprintf(b, sizeof b, "%s_all", kir_op_get(red[i])->name);
    kh_out(&o, g, kh_reduce(g, red[i], nm(b, dt), x, NULL, 0, 1));
  }
  if (kir_dtype_is_float(dt))
    kh_out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MEAN, nm("mean", dt), x, (const int64_t[]){0, 2}, 2, 0));
  kh_out(&o, g, with_int(g, KIR_OP_ARGMAX, nm("argmax", dt), x, "axis", 1));
  kh_out(&o, g, with_int(g, KIR_OP_ARGMIN, nm("argmin", dt), x, "axis", -1));
  kir_node *n = kh_add(g, KIR_OP_ARGMAX, nm("argmax_last", dt), &x, 1);
  assert_int_equal(kir_attr_set_int(g, n, "select_last_index", 1), KILN_OK);
  kh_out(&o, g, kh_finish(g, n));
  /* max_pool on [1, 3, 5, 4], a 2x2 window, padded */
  int32_t r4 = kh_with_ints(g, KIR_OP_RESHAPE, nm("r4", dt), x, "shape", (const int64_t[]){1, 3, 5, 4}, 4);
  kir_node *p = kh_add(g, KIR_OP_MAX_POOL, nm("maxpool", dt), &r4, 1);
  assert_int_equal(kir_attr_set_ints(g, p, "kernel", (const int64_t[]){2, 2}, 2), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, p, "pads", (const int64_t[]){1, 0, 0, 1}, 4), KILN_OK);
  kh_out(&o, g, kh_finish(g, p));
  /* shape ops */
  int32_t tr = kh_with_ints(g, KIR_OP_TRANSPOSE, nm("tr", dt), x, "perm", (const int64_t[]){2, 0, 1}, 3);
  kh_out(&o, g, tr);
  kir_node *c = kh_add(g, KIR_OP_CONCAT, nm("concat", dt), IN(x, x));
  assert_int_equal(kir_attr_set_int(g, c, "axis", 1), KILN_OK);
  kh_out(&o, g, kh_finish(g, c));
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- f16/bf16 ------ */

static void halves_elementwise(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(4, 9)), y = kh_ph(g, "y", dt, DIMS(9));
  static const kir_op bin[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_DIV, KIR_OP_MAXIMUM,
                               KIR_OP_MINIMUM, KIR_OP_POW};
  for (int i = 0; i < COUNT(bin); i++) kh_out(&o, g, kh_op2(g, bin[i], nm(kir_op_get(bin[i])->name, dt), x, y));
  static const kir_op un[] = {KIR_OP_NEG, KIR_OP_EXP, KIR_OP_LOG, KIR_OP_SQRT, KIR_OP_TANH,
                              KIR_OP_SIGMOID, KIR_OP_RELU, KIR_OP_ABS, KIR_OP_ERF, KIR_OP_GELU,
                              KIR_OP_LEAKY_RELU};
  for (int i = 0; i < COUNT(un); i++) kh_out(&o, g, kh_op1(g, un[i], nm(kir_op_get(un[i])->name, dt), x));
  kh_out(&o, g, kh_clamp(g, nm("clamp", dt), x, -0.3, 1.7));
  kh_out(&o, g, with_int(g, KIR_OP_SOFTMAX, nm("softmax", dt), x, "axis", 1));
  kh_out(&o, g, with_int(g, KIR_OP_LOG_SOFTMAX, nm("log_softmax", dt), x, "axis", 0));
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);
}

/* fused_elementwise and fused_reduce built by hand: each step rounds to the dtype */
static void fused_chain(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(4, 9)), y = kh_ph(g, "y", dt, DIMS(9));
  const char *from[1] = {"x"};
  const int64_t ep[] = {KIR_OP_MUL, KIR_OP_ADD, KIR_OP_TANH, KIR_OP_CLAMP, KIR_OP_SUB, KIR_OP_EXP};
  const int64_t opnd[] = {1, 1, -1, -1, 1, -1}, swap[] = {0, 0, 0, 0, 1, 0};
  const double lo[] = {NAN, NAN, NAN, -0.5, NAN, NAN}, hi[] = {NAN, NAN, NAN, 0.75, NAN, NAN};
  for (int k = 0; k < 3; k++) {
    kir_op op = k == 0 ? KIR_OP_FUSED_ELEMENTWISE : k == 1 ? KIR_OP_FUSED_REDUCE : KIR_OP_FUSED_SOFTMAX;
    kir_node *n = kh_add(g, op, nm(k == 0 ? "few" : k == 1 ? "fred" : "fsm", dt), IN(x, y));
    assert_int_equal(kir_attr_set_ints(g, n, "epilogue", ep, 6), KILN_OK);
    assert_int_equal(kir_attr_set_ints(g, n, "operand", opnd, 6), KILN_OK);
    assert_int_equal(kir_attr_set_ints(g, n, "swap", swap, 6), KILN_OK);
    assert_int_equal(kir_attr_set_floats(g, n, "clamp_min", lo, 6), KILN_OK);
    assert_int_equal(kir_attr_set_floats(g, n, "clamp_max", hi, 6), KILN_OK);
    assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, 1), KILN_OK);
    if (k == 1) {
      assert_int_equal(kir_attr_set_int(g, n, "reduce", KIR_OP_REDUCE_SUM), KILN_OK);
      assert_int_equal(kir_attr_set_ints(g, n, "axes", (const int64_t[]){1}, 1), KILN_OK);
    }
    kh_out(&o, g, kh_finish(g, n));
  }
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);
}

static void halves_nn(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(2, 3, 5, 4));
  int32_t sc = kh_ph(g, "y1", dt, DIMS(3)), bi = kh_ph(g, "y2", dt, DIMS(3)), mean = kh_ph(g, "y3", dt, DIMS(3));
  int32_t var = kh_ph(g, "pos", dt, DIMS(3));
  kir_node *bn = kh_add(g, KIR_OP_BATCH_NORM, nm("bn", dt), IN(x, sc, bi, mean, var));
  kh_out(&o, g, kh_finish(g, bn));
  kir_node *ap = kh_add(g, KIR_OP_AVG_POOL, nm("avgpool", dt), &x, 1);
  assert_int_equal(kir_attr_set_ints(g, ap, "kernel", (const int64_t[]){3, 2}, 2), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, ap, "pads", (const int64_t[]){1, 1, 1, 0}, 4), KILN_OK);
  kh_out(&o, g, kh_finish(g, ap));
  kir_node *mi = kh_add(g, KIR_OP_MAX_POOL_INDICES, nm("mpi", dt), &x, 1);
  assert_int_equal(kir_attr_set_ints(g, mi, "kernel", (const int64_t[]){2, 2}, 2), KILN_OK);
  kh_out(&o, g, kh_finish(g, mi));
  run_and_compare(g, &o, true);
  kir_graph_destroy(g);
}

/* matmul and conv on f16/bf16 have no C kernel: refused at compile time naming both. */
static void halves_refused(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(3, 4)), b = kh_ph(g, "b", dt, DIMS(4, 2));
  kh_out(&o, g, kh_matmul(g, "mm", a, b, 0, 0));
  kcg_options opt = {NULL, KH_STRICT_FLAGS, "test", NULL};
  assert_int_equal(kcg_compile_cpu(g, o.names, o.n, &opt, kt_path("refused.kart")), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "'mm'"));
  assert_non_null(strstr(g->error, kiln_dtype_name(dt)));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- cast ---------- */

/* Every dtype to every dtype, from raw bit patterns and edge values (saturation, NaN,
 * infinities, f16/bf16 ties and subnormals). */
static void test_cast_all_pairs(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  for (int i = 0; i < COUNT(ALL); i++) {
    int32_t x = kh_ph(g, nm("bits", ALL[i]), ALL[i], DIMS(160));
    for (int j = 0; j < COUNT(ALL); j++) {
      char cn[48];
      snprintf(cn, sizeof cn, "%s_to_%s", kiln_dtype_name(ALL[i]), kiln_dtype_name(ALL[j]));
      kh_out(&o, g, with_int(g, KIR_OP_CAST, cn, x, "dtype", ALL[j]));
    }
  }
  /* every placeholder is filled as "bits" */
  kh_run *r = kh_run_new();
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    r->in[r->n_in] = kir_tensor_new(&g->nodes[i]->type);
    fill(r->in[r->n_in], "bits", 99 + (uint64_t)i);
    r->feeds[r->n_in] = (kir_feed){i, r->in[r->n_in]};
    r->n_in++;
  }
  for (int32_t j = 0; j < o.n; j++) r->ids[j] = kir_graph_find(g, o.names[j])->id;
  if (kir_interp_run(g, NULL, r->feeds, r->n_in, r->ids, o.n, NULL, 0, r->want) != KILN_OK)
    fail_msg("reference: %s", g->error);
  const char *path = kt_path("cast.kart");
  kh_compile_or_fail(g, &o, path);
  char err[256];
  assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  unlink(path);
  for (int32_t j = 0; j < o.n; j++)
    for (int64_t i = 0; i < kir_type_numel(&r->want[j]->type); i++)
      if (!same(r->got[j], r->want[j], i))
        fail_msg("%s element %lld: got 0x%llx, want 0x%llx", o.names[j], (long long)i,
                 (unsigned long long)get_bits(r->got[j], i), (unsigned long long)get_bits(r->want[j], i));
  kh_run_free(r);
  kir_graph_destroy(g);
}

/* The conversion helpers by hand on the known ties and limits. */
static void test_half_rounding(void **st) {
  (void)st;
  static const struct { double v; uint16_t f16, bf16; } c[] = {
      {1.0 + 0x1p-11, 0x3C00, 0x3F80},       /* f16 tie: to even (down) */
      {1.0 + 3 * 0x1p-11, 0x3C02, 0x3F80},   /* f16 tie: to even (up) */
      {1.0 + 0x1p-8, 0x3C04, 0x3F80},        /* bf16 tie: down */
      {1.0 + 3 * 0x1p-8, 0x3C0C, 0x3F82},    /* bf16 tie: up */
      {65519.99, 0x7BFF, 0x4780},            /* just below the f16 overflow tie */
      {65520.0, 0x7C00, 0x4780},             /* the tie: to infinity */
      {0x1p-25, 0x0000, 0x3300},             /* f16 tie to 0 */
      {0x1.8p-25, 0x0001, 0x3340},           /* above it: the smallest subnormal */
      {-0.0, 0x8000, 0x8000},
      {NAN, 0x7E00, 0x7FC0},
      {-INFINITY, 0xFC00, 0xFF80}};
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  kir_tensor *t = kh_tensor(KILN_F64, DIMS(COUNT(c)));
  for (int i = 0; i < COUNT(c); i++) ((double *)t->data)[i] = c[i].v;
  int32_t x = kh_cst_t(g, "x", t);
  kir_tensor_free(t);
  kh_out(&o, g, with_int(g, KIR_OP_CAST, "h", x, "dtype", KILN_F16));
  kh_out(&o, g, with_int(g, KIR_OP_CAST, "b", x, "dtype", KILN_BF16));
  kh_run *r = kh_run_new();
  const char *path = kt_path("ties.kart");
  for (int32_t j = 0; j < o.n; j++) r->ids[j] = kir_graph_find(g, o.names[j])->id;
  kh_compile_or_fail(g, &o, path);
  char err[256];
  assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  unlink(path);
  for (int i = 0; i < COUNT(c); i++) {
    if (((uint16_t *)r->got[0]->data)[i] != c[i].f16 || ((uint16_t *)r->got[1]->data)[i] != c[i].bf16)
      fail_msg("%a: f16 0x%04x (want 0x%04x), bf16 0x%04x (want 0x%04x)", c[i].v,
               ((uint16_t *)r->got[0]->data)[i], c[i].f16, ((uint16_t *)r->got[1]->data)[i], c[i].bf16);
  }
  kh_run_free(r);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- drivers ------- */

static void test_ints_elementwise(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(NEW_INTS); i++) ints_elementwise(NEW_INTS[i]);
}
static void test_ints_bcast_div0(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(NEW_INTS); i++) ints_bcast_div0(NEW_INTS[i]);
}
static void test_reductions(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(NEW_INTS); i++) reductions(NEW_INTS[i]);
  for (int i = 0; i < COUNT(HALVES); i++) reductions(HALVES[i]);
}
static void test_halves_elementwise(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(HALVES); i++) halves_elementwise(HALVES[i]);
}
static void test_fused_chain(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(HALVES); i++) fused_chain(HALVES[i]);
}
static void test_halves_nn(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(HALVES); i++) halves_nn(HALVES[i]);
}
static void test_halves_refused(void **st) {
  (void)st;
  for (int i = 0; i < COUNT(HALVES); i++) halves_refused(HALVES[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ints_elementwise), cmocka_unit_test(test_ints_bcast_div0),
      cmocka_unit_test(test_u64_edges),        cmocka_unit_test(test_reductions),
      cmocka_unit_test(test_halves_elementwise), cmocka_unit_test(test_fused_chain),
      cmocka_unit_test(test_halves_nn),        cmocka_unit_test(test_halves_refused),
      cmocka_unit_test(test_cast_all_pairs),   cmocka_unit_test(test_half_rounding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
