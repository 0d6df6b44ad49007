/* test_codegen.c — the C target end to end: every compilable op of ops.def, in each
 * dtype it supports and with broadcasting, compiled by kcg_compile_cpu, run through
 * libkiln_rt with poisoned output buffers, and compared with the reference interpreter.
 * Also determinism of the generated text, hostile node names, compiler failures (no
 * artifact, no temp dir left) and argument errors. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/kt.h"
#include "tests/codegen/kcg_harness.h"
#include "codegen/kcg.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

/* The harness (kcg_harness.c): reference, compile, run with poisoned outputs, compare. */
static void check(kir_graph *g, const kh_outs *o, unsigned flags) {
  kh_check_with(g, o, flags, "x.kart", NULL, NULL);
}

/* ---------------------------------------------------------------- elementwise --- */

static const kir_op binary_ops[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_DIV,
                                    KIR_OP_MAXIMUM, KIR_OP_MINIMUM};

/* Every binary op with equal shapes, scalar, row, column and 3-D broadcasting, each
 * side broadcast. */
static void binary_graph(kiln_dtype dt, const char *prefix) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  char nm[64];
  snprintf(nm, sizeof nm, "%sa", prefix);
  int32_t a = kh_ph(g, nm, dt, DIMS(3, 4));
  snprintf(nm, sizeof nm, "%sb", prefix);
  int32_t b = kh_ph(g, nm, dt, DIMS(3, 4));
  int32_t s = kh_ph(g, "s", dt, 0, NULL);
  int32_t row = kh_ph(g, "row", dt, DIMS(4));
  int32_t col = kh_ph(g, "col", dt, DIMS(3, 1));
  int32_t d3 = kh_ph(g, "d3", dt, DIMS(2, 3, 4));
  int32_t d3b = kh_ph(g, "d3b", dt, DIMS(2, 1, 4));
  int32_t pairs[][2] = {{a, b}, {a, s}, {s, a}, {a, row}, {row, a}, {a, col}, {col, a},
                        {d3, col}, {d3b, col}, {row, col}, {d3, a}, {s, s}};
  for (size_t k = 0; k < sizeof binary_ops / sizeof binary_ops[0]; k++)
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
      snprintf(nm, sizeof nm, "%s_%zu", kir_op_get(binary_ops[k])->name, p);
      kh_out(&o, g, kh_op2(g, binary_ops[k], nm, pairs[p][0], pairs[p][1]));
    }
  check(g, &o, KH_NONZERO);
  kir_graph_destroy(g);
}

static void test_binary_f32(void **st) { (void)st; binary_graph(KILN_F32, ""); }
static void test_binary_f64(void **st) { (void)st; binary_graph(KILN_F64, ""); }
static void test_binary_i32(void **st) { (void)st; binary_graph(KILN_I32, ""); }
static void test_binary_i64(void **st) { (void)st; binary_graph(KILN_I64, ""); }
/* Whole-range integers: add, sub and mul wrap in two's complement. */
static void test_binary_i32_wrap(void **st) { (void)st; binary_graph(KILN_I32, "big"); }
static void test_binary_i64_wrap(void **st) { (void)st; binary_graph(KILN_I64, "big"); }

/* INT_MIN / -1 wraps, and division truncates toward zero. */
static void test_int_div_edges(void **st) {
  (void)st;
  kiln_dtype dts[] = {KILN_I32, KILN_I64};
  for (int k = 0; k < 2; k++) {
    kir_graph *g = kir_graph_create();
    kh_outs o = {{0}, 0};
    kir_tensor *x = kh_tensor(dts[k], DIMS(5)), *y = kh_tensor(dts[k], DIMS(5));
    int64_t xv[5] = {k ? INT64_MIN : INT32_MIN, 7, -7, 7, -7}, yv[5] = {-1, 2, 2, -2, -2};
    for (int i = 0; i < 5; i++) {
      if (k) ((int64_t *)x->data)[i] = xv[i], ((int64_t *)y->data)[i] = yv[i];
      else ((int32_t *)x->data)[i] = (int32_t)xv[i], ((int32_t *)y->data)[i] = (int32_t)yv[i];
    }
    int32_t p = kh_ph(g, "p", dts[k], DIMS(5));
    int32_t cx = kh_cst_t(g, "x", x), cy = kh_cst_t(g, "y", y);
    kh_out(&o, g, kh_op2(g, KIR_OP_DIV, "q", cx, cy));
    kh_out(&o, g, kh_op2(g, KIR_OP_DIV, "q2", kh_op2(g, KIR_OP_ADD, "xp", cx, p), cy));
    kh_out(&o, g, kh_op1(g, KIR_OP_NEG, "n", cx));
    check(g, &o, KH_NONZERO);
    kir_tensor_free(x);
    kir_tensor_free(y);
    kir_graph_destroy(g);
  }
}

static void unary_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  bool fl = dt == KILN_F32 || dt == KILN_F64;
  int32_t a = kh_ph(g, "a", dt, DIMS(2, 3, 5));
  int32_t pos = kh_ph(g, "pos", dt, DIMS(7));
  kh_out(&o, g, kh_op1(g, KIR_OP_NEG, "neg", a));
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "relu", a));
  kh_out(&o, g, kh_clamp(g, "clamp_lo", a, 0.0, NAN));
  kh_out(&o, g, kh_clamp(g, "clamp_hi", a, NAN, 0.5));
  kh_out(&o, g, kh_clamp(g, "clamp_both", a, -1.25, 0.1));
  kh_out(&o, g, kh_clamp(g, "clamp_none", a, NAN, NAN));
  kh_out(&o, g, kh_clamp(g, "clamp_wide", a, -1e300, 1e300));
  kh_out(&o, g, kh_clamp(g, "clamp_inf", a, -INFINITY, INFINITY));
  kh_out(&o, g, kh_clamp(g, "clamp_frac", a, -2.5, 3.5));
  if (fl) {
    kh_out(&o, g, kh_op1(g, KIR_OP_EXP, "exp", a));
    kh_out(&o, g, kh_op1(g, KIR_OP_TANH, "tanh", a));
    kh_out(&o, g, kh_op1(g, KIR_OP_SIGMOID, "sigmoid", a));
    kh_out(&o, g, kh_op1(g, KIR_OP_LOG, "log", pos));
    kh_out(&o, g, kh_op1(g, KIR_OP_SQRT, "sqrt", pos));
  } else {
    kh_out(&o, g, kh_op1(g, KIR_OP_NEG, "negpos", pos));
  }
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_unary_f32(void **st) { (void)st; unary_graph(KILN_F32); }
static void test_unary_f64(void **st) { (void)st; unary_graph(KILN_F64); }
static void test_unary_i32(void **st) { (void)st; unary_graph(KILN_I32); }
static void test_unary_i64(void **st) { (void)st; unary_graph(KILN_I64); }

/* NaN propagation of maximum/minimum/clamp/relu, as the interpreter defines it. */
static void test_nan_semantics(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  kir_tensor *t = kh_tensor(KILN_F32, DIMS(6));
  float v[6] = {NAN, 1.0f, -0.0f, INFINITY, -INFINITY, 0.25f};
  memcpy(t->data, v, sizeof v);
  int32_t c = kh_cst_t(g, "c", t);
  int32_t p = kh_ph(g, "p", KILN_F32, DIMS(6));
  kh_out(&o, g, kh_op2(g, KIR_OP_MAXIMUM, "mx", c, p));
  kh_out(&o, g, kh_op2(g, KIR_OP_MINIMUM, "mn", p, c));
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "r", c));
  kh_out(&o, g, kh_clamp(g, "cl", c, -0.5, 0.5));
  kh_out(&o, g, kh_op2(g, KIR_OP_ADD, "sum", c, p));
  check(g, &o, KH_NAN_OK);
  kir_tensor_free(t);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- matmul -------- */

static void matmul_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  char nm[64];
  int32_t a = kh_ph(g, "a", dt, DIMS(3, 5)), at = kh_ph(g, "at", dt, DIMS(5, 3));
  int32_t b = kh_ph(g, "b", dt, DIMS(5, 4)), bt = kh_ph(g, "bt", dt, DIMS(4, 5));
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      snprintf(nm, sizeof nm, "mm_%d%d", ta, tb);
      kh_out(&o, g, kh_matmul(g, nm, ta ? at : a, tb ? bt : b, ta, tb));
    }
  /* batched: rank mismatch, broadcast batch dims, transposes */
  int32_t ba = kh_ph(g, "ba", dt, DIMS(2, 3, 3, 5)), bb = kh_ph(g, "bb", dt, DIMS(5, 4));
  int32_t bc = kh_ph(g, "bc", dt, DIMS(2, 1, 3, 5)), bd = kh_ph(g, "bd", dt, DIMS(3, 4, 5));
  int32_t be = kh_ph(g, "be", dt, DIMS(1, 5, 3));
  kh_out(&o, g, kh_matmul(g, "bmm_rank", ba, bb, 0, 0));
  kh_out(&o, g, kh_matmul(g, "bmm_bcast_tb", bc, bd, 0, 1));
  kh_out(&o, g, kh_matmul(g, "bmm_ta", be, bd, 1, 1));
  kh_out(&o, g, kh_matmul(g, "bmm_same", ba, ba, 0, 1));
  /* degenerate: inner dimension 1 and a 1x1 result */
  int32_t v1 = kh_ph(g, "v1", dt, DIMS(4, 1)), v2 = kh_ph(g, "v2", dt, DIMS(1, 4));
  kh_out(&o, g, kh_matmul(g, "outer", v1, v2, 0, 0));
  kh_out(&o, g, kh_matmul(g, "inner", v2, v1, 0, 0));
  if (dt == KILN_I32 || dt == KILN_I64) { /* whole-range values: products and sums wrap */
    int32_t bx = kh_ph(g, "bigx", dt, DIMS(3, 5)), by = kh_ph(g, "bigy", dt, DIMS(4, 5));
    kh_out(&o, g, kh_matmul(g, "mm_wrap", bx, by, 0, 1));
  }
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_matmul_f32(void **st) { (void)st; matmul_graph(KILN_F32); }
static void test_matmul_f64(void **st) { (void)st; matmul_graph(KILN_F64); }
static void test_matmul_i32(void **st) { (void)st; matmul_graph(KILN_I32); }
static void test_matmul_i64(void **st) { (void)st; matmul_graph(KILN_I64); }

/* ---------------------------------------------------------------- reductions ---- */

static void reduce_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  char nm[64];
  bool fl = dt == KILN_F32 || dt == KILN_F64;
  int32_t a = kh_ph(g, "a", dt, DIMS(3, 4, 5));
  int32_t s = kh_ph(g, "s", dt, 0, NULL);
  const int64_t sets[][3] = {{0}, {1}, {-1}, {0, 2}, {1, 2}, {2, 0}, {0, 1, 2}, {-3, -2}};
  const int32_t sizes[] = {1, 1, 1, 2, 2, 2, 3, 2};
  kir_op ops[3] = {KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX, KIR_OP_REDUCE_MEAN};
  for (int k = 0; k < (fl ? 3 : 2); k++)
    for (int keep = 0; keep < 2; keep++) {
      snprintf(nm, sizeof nm, "%s_all_%d", kir_op_get(ops[k])->name, keep);
      kh_out(&o, g, kh_reduce(g, ops[k], nm, a, NULL, 0, keep));
      snprintf(nm, sizeof nm, "%s_scalar_%d", kir_op_get(ops[k])->name, keep);
      kh_out(&o, g, kh_reduce(g, ops[k], nm, s, NULL, 0, keep));
      for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(nm, sizeof nm, "%s_%zu_%d", kir_op_get(ops[k])->name, i, keep);
        kh_out(&o, g, kh_reduce(g, ops[k], nm, a, sets[i], sizes[i], keep));
      }
      snprintf(nm, sizeof nm, "%s_none_%d", kir_op_get(ops[k])->name, keep);
      kh_out(&o, g, kh_reduce(g, ops[k], nm, a, (const int64_t[]){0}, 0, keep));
    }
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_reduce_f32(void **st) { (void)st; reduce_graph(KILN_F32); }
static void test_reduce_f64(void **st) { (void)st; reduce_graph(KILN_F64); }
static void test_reduce_i32(void **st) { (void)st; reduce_graph(KILN_I32); }
static void test_reduce_i64(void **st) { (void)st; reduce_graph(KILN_I64); }

/* ---------------------------------------------------------------- softmax etc. -- */

static int32_t softmax(kir_graph *g, const char *name, int32_t a, int64_t axis, bool set) {
  kir_node *n = kh_add(g, KIR_OP_SOFTMAX, name, &a, 1);
  if (set) assert_int_equal(kir_attr_set_int(g, n, "axis", axis), KILN_OK);
  return kh_finish(g, n);
}

static void softmax_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(4, 7)), b = kh_ph(g, "b", dt, DIMS(2, 3, 5));
  kh_out(&o, g, softmax(g, "sm_0", a, 0, true));
  kh_out(&o, g, softmax(g, "sm_last", a, -1, true));
  kh_out(&o, g, softmax(g, "sm_default", b, 0, false));
  kh_out(&o, g, softmax(g, "sm_mid", b, 1, true));
  kh_out(&o, g, softmax(g, "sm_neg3", b, -3, true));
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_softmax_f32(void **st) { (void)st; softmax_graph(KILN_F32); }
static void test_softmax_f64(void **st) { (void)st; softmax_graph(KILN_F64); }

static void shape_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  char nm[64];
  int32_t a = kh_ph(g, "a", dt, DIMS(2, 3, 4)), m = kh_ph(g, "m", dt, DIMS(3, 5));
  const int64_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int p = 0; p < 6; p++) {
    snprintf(nm, sizeof nm, "tr_%d", p);
    kh_out(&o, g, kh_with_ints(g, KIR_OP_TRANSPOSE, nm, a, "perm", perms[p], 3));
  }
  kh_out(&o, g, kh_with_ints(g, KIR_OP_TRANSPOSE, "tr_default", a, NULL, NULL, 0));
  kh_out(&o, g, kh_with_ints(g, KIR_OP_TRANSPOSE, "tr_2d", m, NULL, NULL, 0));
  kh_out(&o, g, kh_with_ints(g, KIR_OP_RESHAPE, "rs", a, "shape", (const int64_t[]){6, 4}, 2));
  kh_out(&o, g, kh_with_ints(g, KIR_OP_RESHAPE, "rs_hole", a, "shape", (const int64_t[]){4, -1, 1}, 3));
  kh_out(&o, g, kh_op1(g, KIR_OP_IDENTITY, "id", m));
  kir_node *tr = kh_add(g, KIR_OP_TRANSFER, "to_cpu", &m, 1);
  assert_int_equal(kir_attr_set_string(g, tr, "device", "cpu:0"), KILN_OK);
  kh_out(&o, g, kh_finish(g, tr));
  kh_out(&o, g, kh_with_ints(g, KIR_OP_RESHAPE, "rs_of_tr", kh_with_ints(g, KIR_OP_TRANSPOSE, "tr_in", a, NULL, NULL, 0),
                       "shape", (const int64_t[]){24}, 1));
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_shape_f32(void **st) { (void)st; shape_graph(KILN_F32); }
static void test_shape_i64(void **st) { (void)st; shape_graph(KILN_I64); }
static void test_shape_bool(void **st) { (void)st; shape_graph(KILN_BOOL); }

static void add_n_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t in[4] = {kh_ph(g, "a", dt, DIMS(3, 4)), kh_ph(g, "b", dt, DIMS(3, 4)), kh_ph(g, "c", dt, DIMS(3, 4)), 0};
  in[3] = in[0];
  kh_out(&o, g, kh_finish(g, kh_add(g, KIR_OP_ADD_N, "sum1", in, 1)));
  kh_out(&o, g, kh_finish(g, kh_add(g, KIR_OP_ADD_N, "sum2", in, 2)));
  kh_out(&o, g, kh_finish(g, kh_add(g, KIR_OP_ADD_N, "sum4", in, 4)));
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_add_n(void **st) {
  (void)st;
  add_n_graph(KILN_F32);
  add_n_graph(KILN_F64);
  add_n_graph(KILN_I32);
  add_n_graph(KILN_I64);
}

/* Outputs that are a placeholder, a constant, and the same node twice; a random source
 * evaluated at compile time; a chain where values are reused through the arena. */
static void test_sources_and_chains(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(4, 6));
  int32_t c = kh_cst(g, "c", KILN_F32, DIMS(6), 5);
  kir_node *rn = kh_add(g, KIR_OP_RANDOM_NORMAL, "rn", NULL, 0);
  assert_int_equal(kir_attr_set_int(g, rn, "dtype", KILN_F32), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, rn, "shape", (const int64_t[]){4, 6}, 2), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, rn, "seed", 42), KILN_OK);
  int32_t r = kh_finish(g, rn);
  kir_node *ru = kh_add(g, KIR_OP_RANDOM_UNIFORM, "ru", NULL, 0);
  assert_int_equal(kir_attr_set_int(g, ru, "dtype", KILN_F64), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, ru, "shape", (const int64_t[]){3}, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, ru, "seed", 7), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, ru, "low", -3), KILN_OK);
  int32_t u = kh_finish(g, ru);
  int32_t h = x;
  char nm[32];
  for (int i = 0; i < 6; i++) {
    snprintf(nm, sizeof nm, "h%d", i);
    h = kh_op2(g, i % 2 ? KIR_OP_MUL : KIR_OP_ADD, nm, h, i % 3 ? c : r);
    snprintf(nm, sizeof nm, "t%d", i);
    h = kh_op1(g, KIR_OP_TANH, nm, h);
  }
  kh_out(&o, g, h);
  kh_out(&o, g, x);
  kh_out(&o, g, c);
  kh_out(&o, g, u);
  kh_out(&o, g, kh_op1(g, KIR_OP_IDENTITY, "h_again", h));
  check(g, &o, 0);
  /* the same output twice is refused before anything is compiled */
  o.names[o.n++] = o.names[0];
  kcg_options opt = {NULL, NULL, NULL, NULL};
  assert_int_equal(kcg_compile_cpu(g, o.names, o.n, &opt, kt_path("dup.kart")), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "t5"));
  assert_int_equal(access(kt_path("dup.kart"), F_OK), -1);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- fused matmul -- */

static int32_t fused(kir_graph *g, const char *name, const int32_t *in, int32_t n_in, int ta, int tb,
                     const int64_t *ops, const int64_t *opnd, const int64_t *swap, const double *lo,
                     const double *hi, int32_t n_ep, const char *const *from, int32_t n_from) {
  kir_node *n = kh_add(g, KIR_OP_FUSED_MATMUL, name, in, n_in);
  assert_int_equal(kir_attr_set_int(g, n, "transpose_a", ta), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, n, "transpose_b", tb), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "epilogue", ops, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "operand", opnd, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "swap", swap, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_min", lo, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_max", hi, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, n_from), KILN_OK);
  return kh_finish(g, n);
}

static void fused_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(4, 5)), b = kh_ph(g, "b", dt, DIMS(6, 5));
  int32_t bias = kh_ph(g, "bias", dt, DIMS(6)), col = kh_ph(g, "col", dt, DIMS(4, 1));
  int32_t s = kh_ph(g, "s", dt, 0, NULL), full = kh_ph(g, "full", dt, DIMS(4, 6));
  int32_t in[6] = {a, b, bias, col, s, full};
  const int64_t ops[] = {KIR_OP_ADD, KIR_OP_CLAMP, KIR_OP_MUL, KIR_OP_SUB, KIR_OP_MAXIMUM,
                         KIR_OP_DIV, KIR_OP_TANH, KIR_OP_RELU, KIR_OP_SIGMOID};
  const int64_t opnd[] = {2, -1, 3, 4, 5, 4, -1, -1, -1};
  const int64_t swap[] = {0, 0, 1, 1, 0, 1, 0, 0, 0};
  const double lo[] = {NAN, -0.5, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  const double hi[] = {NAN, 1.5, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  const char *from[] = {"mm", "add", "clamp", "mul", "sub", "max", "div", "tanh", "relu", "sig"};
  kh_out(&o, g, fused(g, "fm", in, 6, 0, 1, ops, opnd, swap, lo, hi, 9, from, 10));
  /* no epilogue, batched with transposes */
  int32_t ba = kh_ph(g, "ba", dt, DIMS(2, 5, 3)), bb = kh_ph(g, "bb", dt, DIMS(5, 4));
  int32_t bbias = kh_ph(g, "bbias", dt, DIMS(2, 1, 4));
  int32_t in2[3] = {ba, bb, bbias};
  const char *from2[] = {"bmm", "badd"};
  kh_out(&o, g, fused(g, "fm_plain", in2, 2, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, from2, 1));
  kh_out(&o, g, fused(g, "fm_batched", in2, 3, 1, 0, (const int64_t[]){KIR_OP_ADD}, (const int64_t[]){2},
                   (const int64_t[]){0}, (const double[]){NAN}, (const double[]){NAN}, 1, from2, 2));
  check(g, &o, KH_NONZERO);
  kir_graph_destroy(g);
}

static void test_fused_f32(void **st) { (void)st; fused_graph(KILN_F32); }
static void test_fused_f64(void **st) { (void)st; fused_graph(KILN_F64); }

/* Runs the CPU pipeline on the copy, checks a fused_matmul appeared. */
static kir_graph *pipelined(kir_graph *g, const kh_outs *o, void *arg) {
  int want_fused = *(const int *)arg;
  kir_graph *opt = kir_graph_clone(g);
  assert_non_null(opt);
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {o->names, o->n, NULL, 0, false, NULL};
  if (kps_run(opt, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", opt->error);
  if (kh_count_op(opt, KIR_OP_FUSED_MATMUL) < want_fused) {
    kir_graph_print(opt, stderr);
    fail_msg("expected at least %d fused_matmul nodes", want_fused);
  }
  return opt;
}

/* Compares the compiled optimized graph with the reference of the original graph. */
static void check_pipelined(kir_graph *g, const kh_outs *o, int want_fused) {
  kh_check_with(g, o, 0, "p.kart", pipelined, &want_fused);
}

static void test_fuse_pass(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(8, 16));
  int32_t w = kh_cst(g, "layer1/w", KILN_F32, DIMS(16, 4), 11);
  int32_t b = kh_cst(g, "layer1/b", KILN_F32, DIMS(4), 12);
  int32_t mm = kh_matmul(g, "layer1/matmul", x, w, 0, 0);
  int32_t y = kh_op1(g, KIR_OP_RELU, "layer1/relu", kh_op2(g, KIR_OP_ADD, "layer1/add", mm, b));
  kh_out(&o, g, y);
  check_pipelined(g, &o, 1);
  kir_graph_destroy(g);
}

/* The lecture's MLP: y = clamp(x @ w1, min=0) @ w2. */
static kir_graph *mlp(kh_outs *o) {
  kir_graph *g = kir_graph_create();
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(64, 1000));
  int32_t w1 = kh_cst(g, "w1", KILN_F32, DIMS(1000, 100), 21);
  int32_t w2 = kh_cst(g, "w2", KILN_F32, DIMS(100, 10), 22);
  int32_t h = kh_clamp(g, "h", kh_matmul(g, "xw1", x, w1, 0, 0), 0.0, NAN);
  kh_out(o, g, kh_matmul(g, "y", h, w2, 0, 0));
  return g;
}

static void test_mlp(void **st) {
  (void)st;
  kh_outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  kh_run *r = kh_run_new();
  char err[512];
  const char *path = kt_path("mlp.kart");
  kh_reference(g, &o, 0, r);
  kh_compile_or_fail(g, &o, path);
  assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  double e = kt_rel_error(r->got[0], r->want[0]);
  assert_true(e < 1e-5);
  unlink(path);
  kh_run_free(r);
  kir_graph_destroy(g);
}

static void test_mlp_pipelined(void **st) {
  (void)st;
  kh_outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  check_pipelined(g, &o, 1);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- generation ---- */

static char *generate(kir_graph *g, const kh_outs *o) {
  int32_t ids[KH_MAX_OUTS];
  kps_memplan plan;
  char *src = NULL;
  for (int32_t j = 0; j < o->n; j++) ids[j] = kir_graph_find(g, o->names[j])->id;
  assert_int_equal(kps_plan_memory(g, ids, o->n, &plan), KILN_OK);
  if (kcg_c_generate(g, &plan, ids, o->n, &src) != KILN_OK) fail_msg("generate: %s", g->error);
  kps_memplan_free(&plan);
  return src;
}

static void test_deterministic(void **st) {
  (void)st;
  kh_outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  char *a = generate(g, &o), *b = generate(g, &o);
  assert_string_equal(a, b);
  assert_non_null(strstr(a, "generated by kiln; do not edit"));
  assert_non_null(strstr(a, "/* step 0: matmul [\"xw1\"] f32[64,1000] x f32[1000,100] -> f32[64,100] */"));
  assert_non_null(strstr(a, "static int k1_clamp("));
  assert_non_null(strstr(a, "cblas_sgemm("));
  assert_non_null(strstr(a, "int kiln_entry(const void *const *inputs, void *const *outputs, "
                            "unsigned char *arena, const unsigned char *weights)"));
  assert_non_null(strstr(a, "const unsigned kiln_abi_version = 1;"));
  kir_graph *c = kir_graph_clone(g);
  char *d = generate(c, &o);
  assert_string_equal(a, d);
  kir_free(a);
  kir_free(b);
  kir_free(d);
  kir_graph_destroy(c);
  kir_graph_destroy(g);
}

/* Names that try to end the comment, inject code or splice lines. */
static void test_hostile_names(void **st) {
  (void)st;
  static char huge[4001];
  memset(huge, 'n', 4000);
  huge[10] = '*';
  huge[11] = '/';
  const char *names[] = {"x */ int evil; /*", "/* open", "line\nbreak", "back\\slash\\",
                         "q\"u'o\"te", "#include <stdio.h>", "tri?\?/\nx", "int", huge,
                         "a*/b", "ends with star*", "/", "\x01\xff\x7f"};
  size_t nn = sizeof names / sizeof names[0];
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t h = kh_ph(g, names[0], KILN_F32, DIMS(2, 3));
  int32_t w = kh_cst(g, names[1], KILN_F32, DIMS(3, 3), 3);
  for (size_t i = 2; i < nn; i++) {
    h = i % 3 == 0 ? kh_matmul(g, names[i], h, w, 0, 0) : kh_op1(g, i % 3 == 1 ? KIR_OP_TANH : KIR_OP_NEG, names[i], h);
    kh_out(&o, g, h);
  }
  char *src = generate(g, &o);
  const char *bad[] = {"\n#include <stdio.h>", "?\?/", "line\n", "back\\s", "*/ int", "/* open", "*/b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (strstr(src, bad[i])) fail_msg("generated C contains raw '%s'", bad[i]);
  /* every comment opened is closed exactly once: no "/" "*" inside a comment */
  for (const char *p = src; (p = strstr(p, "/*")); ) {
    const char *end = strstr(p + 2, "*/");
    assert_non_null(end);
    const char *inner = strstr(p + 2, "/*");
    assert_true(!inner || inner > end);
    p = end + 2;
  }
  kir_free(src);
  check(g, &o, 0);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- failures ------ */

static bool dir_empty(const char *path) {
  DIR *d = opendir(path);
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n == 0;
}

static void expect_compile_error(const char *cc, const char *flags, const char *want_in_msg) {
  kh_outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  char tmp[600], path[600];
  snprintf(tmp, sizeof tmp, "%s", kt_path("tmpcc"));
  snprintf(path, sizeof path, "%s", kt_path("bad.kart"));
  mkdir(tmp, 0700);
  char *old = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;
  setenv("TMPDIR", tmp, 1);
  kcg_options opt = {cc, flags, NULL, NULL};
  kiln_status s = kcg_compile_cpu(g, o.names, o.n, &opt, path);
  if (old) setenv("TMPDIR", old, 1);
  else unsetenv("TMPDIR");
  free(old);
  assert_int_equal(s, KILN_ERR_COMPILE);
  if (!strstr(g->error, want_in_msg)) fail_msg("message '%s' lacks '%s'", g->error, want_in_msg);
  assert_true(strlen(g->error) < sizeof g->error);
  assert_int_equal(access(path, F_OK), -1);
  assert_true(dir_empty(tmp));
  rmdir(tmp);
  kir_graph_destroy(g);
}

static void test_bad_compiler(void **st) {
  (void)st;
  expect_compile_error("false", NULL, "false");
  expect_compile_error("kiln-no-such-compiler-x", NULL, "kiln-no-such-compiler-x");
  expect_compile_error("cc", "-O2 --kiln-bogus-flag", "kiln-bogus-flag");
  /* a compiler that fails after leaving extra files in the temp dir */
  expect_compile_error("cc", "-O2 -save-temps=obj -lkiln_no_such_lib", "kiln_no_such_lib");
}

static void test_unknown_output(void **st) {
  (void)st;
  kh_outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  const char *names[] = {"y", "nope\n"};
  kcg_options opt = {NULL, NULL, NULL, NULL};
  const char *path = kt_path("unk.kart");
  assert_int_equal(kcg_compile_cpu(g, names, 2, &opt, path), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "nope\\x0A"));
  assert_int_equal(kcg_compile_cpu(g, names, 0, &opt, path), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_compile_cpu(g, names, 1, &opt, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(access(path, F_OK), -1);
  kir_graph_destroy(g);
}

static void test_variables_refused(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  int32_t init = kh_cst(g, "init", KILN_F32, DIMS(3), 1);
  int32_t v = kh_op1(g, KIR_OP_VARIABLE, "w", init);
  int32_t y = kh_op1(g, KIR_OP_NEG, "y", v);
  const char *names[] = {g->nodes[y]->name};
  kcg_options opt = {NULL, NULL, NULL, NULL};
  assert_int_equal(kcg_compile_cpu(g, names, 1, &opt, kt_path("var.kart")), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "node 'w': variables cannot be compiled; freeze the graph first"));
  assert_int_equal(access(kt_path("var.kart"), F_OK), -1);
  kir_graph_destroy(g);
}

/* Integer division by zero fails the run with KILN_RT_ERR_EXEC naming the step. */
static void test_div_by_zero(void **st) {
  (void)st;
  kiln_dtype dts[] = {KILN_I32, KILN_I64};
  for (int k = 0; k < 2; k++) {
    kir_graph *g = kir_graph_create();
    kh_outs o = {{0}, 0};
    int32_t a = kh_ph(g, "a", dts[k], DIMS(4)), b = kh_ph(g, "b", dts[k], DIMS(4));
    kh_out(&o, g, kh_op2(g, KIR_OP_DIV, "q", kh_op1(g, KIR_OP_NEG, "na", a), b));
    const char *path = kt_path("dz.kart");
    kh_compile_or_fail(g, &o, path);
    kh_run *r = kh_run_new();
    kh_reference(g, &o, KH_NONZERO, r);
    size_t es = kiln_dtype_size(dts[k]);
    memset((char *)r->in[1]->data + 2 * es, 0, es); /* b[2] = 0 */
    char err[512];
    assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_ERR_EXEC);
    assert_true(err[0] != '\0');
    unlink(path);
    kh_run_free(r);
    kir_graph_destroy(g);
  }
}

/* The Nth allocation fails for N = 0, 1, ... until compiling succeeds: each failure is
 * out-of-memory, leaks nothing, writes no artifact and leaves the graph usable. */
static void test_alloc_failures(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(2, 3));
  int32_t w = kh_cst(g, "w", KILN_F32, DIMS(3, 2), 9);
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "y", kh_matmul(g, "mm", x, w, 0, 0)));
  kcg_options opt = {NULL, NULL, NULL, NULL};
  const char *path = kt_path("oom.kart");
  kiln_status s = KILN_ERR_NOMEM;
  long n;
  for (n = 0; n < 100000 && s != KILN_OK; n++) {
    long live = kir_alloc_live();
    kir_alloc_fail_after(n);
    s = kcg_compile_cpu(g, o.names, o.n, &opt, path);
    kir_alloc_fail_after(-1);
    if (s != KILN_OK) {
      if (s != KILN_ERR_NOMEM) fail_msg("allocation %ld failing gave %s: %s", n, kiln_status_name(s), g->error);
      assert_int_equal(access(path, F_OK), -1);
    }
    assert_int_equal(kir_alloc_live(), live);
  }
  assert_int_equal(s, KILN_OK);
  assert_true(n > 1);
  unlink(path);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_f32),     cmocka_unit_test(test_binary_f64),
      cmocka_unit_test(test_binary_i32),     cmocka_unit_test(test_binary_i64),
      cmocka_unit_test(test_binary_i32_wrap), cmocka_unit_test(test_binary_i64_wrap),
      cmocka_unit_test(test_int_div_edges),  cmocka_unit_test(test_unary_f32),
      cmocka_unit_test(test_unary_f64),      cmocka_unit_test(test_unary_i32),
      cmocka_unit_test(test_unary_i64),      cmocka_unit_test(test_nan_semantics),
      cmocka_unit_test(test_matmul_f32),     cmocka_unit_test(test_matmul_f64),
      cmocka_unit_test(test_matmul_i32),     cmocka_unit_test(test_matmul_i64),
      cmocka_unit_test(test_reduce_f32),     cmocka_unit_test(test_reduce_f64),
      cmocka_unit_test(test_reduce_i32),     cmocka_unit_test(test_reduce_i64),
      cmocka_unit_test(test_softmax_f32),    cmocka_unit_test(test_softmax_f64),
      cmocka_unit_test(test_shape_f32),      cmocka_unit_test(test_shape_i64),
      cmocka_unit_test(test_shape_bool),     cmocka_unit_test(test_add_n),
      cmocka_unit_test(test_sources_and_chains), cmocka_unit_test(test_fused_f32),
      cmocka_unit_test(test_fused_f64),      cmocka_unit_test(test_fuse_pass),
      cmocka_unit_test(test_mlp),            cmocka_unit_test(test_mlp_pipelined),
      cmocka_unit_test(test_deterministic),  cmocka_unit_test(test_hostile_names),
      cmocka_unit_test(test_bad_compiler),   cmocka_unit_test(test_unknown_output),
      cmocka_unit_test(test_variables_refused), cmocka_unit_test(test_div_by_zero),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests_name("codegen", tests, NULL, NULL);
}
