/* test_ops_onnx.c — the ONNX-set ops (ops.def wire 37..56) in shape inference and the
 * reference interpreter: hand-checked values (the ONNX spec examples among them), every
 * class of bad attribute refused by inference with a message naming it, run-time errors,
 * zero-size slices, identities (1x1 conv = matmul, group conv = per-group convs, global
 * avg_pool = reduce_mean, fused = unfused), and placeholder defaults. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kt.h"

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define VALS(...) ((const double[]){__VA_ARGS__})
#define INTS(...) ((const int64_t[]){__VA_ARGS__}), \
                  (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* ---------------------------------------------------------------- helpers ------- */

static void put(kir_tensor *t, int64_t i, double v) { kir_tensor_set_f(t, i, v); }

static kir_tensor *mk(kiln_dtype dt, int rank, const int64_t *dims, const double *v) {
  kir_type t = {dt, rank, {0}};
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  assert_non_null(x);
  for (int64_t i = 0; v && i < kir_type_numel(&t); i++) put(x, i, v[i]);
  return x;
}

/* 0, 1, 2, ... */
static kir_tensor *iota(kiln_dtype dt, int rank, const int64_t *dims, double first) {
  kir_tensor *x = mk(dt, rank, dims, NULL);
  for (int64_t i = 0; i < kir_type_numel(&x->type); i++) put(x, i, first + (double)i);
  return x;
}

static int name_counter;

static kir_node *node(kir_graph *g, kir_op op, int n_in, const int32_t *in) {
  char name[32];
  snprintf(name, sizeof name, "n%d", name_counter++);
  kir_node *n = kir_node_add(g, op, name, in, n_in);
  assert_non_null(n);
  return n;
}

static int32_t fin(kir_graph *g, kir_node *n) {
  kiln_status s = kir_infer_node(g, n);
  if (s != KILN_OK) fail_msg("infer: %s", g->error);
  return n->id;
}

static int32_t konst_t(kir_graph *g, const kir_tensor *t) {
  kir_node *n = node(g, KIR_OP_CONSTANT, 0, NULL);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
  return fin(g, n);
}

/* A constant that takes ownership of t. */
static int32_t konst_own(kir_graph *g, kir_tensor *t) {
  int32_t id = konst_t(g, t);
  kir_tensor_free(t);
  return id;
}

static int32_t konst(kir_graph *g, kiln_dtype dt, int rank, const int64_t *dims, const double *v) {
  return konst_own(g, mk(dt, rank, dims, v));
}

static void seti(kir_graph *g, kir_node *n, const char *a, int64_t v) {
  assert_int_equal(kir_attr_set_int(g, n, a, v), KILN_OK);
}
static void setf(kir_graph *g, kir_node *n, const char *a, double v) {
  assert_int_equal(kir_attr_set_float(g, n, a, v), KILN_OK);
}
static void setis(kir_graph *g, kir_node *n, const char *a, const int64_t *v, int32_t cnt) {
  assert_int_equal(kir_attr_set_ints(g, n, a, v, cnt), KILN_OK);
}

static int32_t un(kir_graph *g, kir_op op, int32_t x) { return fin(g, node(g, op, 1, &x)); }
static int32_t bin(kir_graph *g, kir_op op, int32_t a, int32_t b) {
  return fin(g, node(g, op, 2, (int32_t[]){a, b}));
}

static kir_tensor *run1(kir_graph *g, int32_t fetch) {
  kir_tensor *out = NULL;
  kiln_status s = kir_interp_run(g, NULL, NULL, 0, &fetch, 1, NULL, 0, &out);
  if (s != KILN_OK) fail_msg("run: %s", g->error);
  assert_non_null(out);
  return out;
}

/* NaN in v asks for a NaN there (kt_rel_error treats any NaN as a mismatch). */
static void expect(kir_tensor *got, kiln_dtype dt, int rank, const int64_t *dims, const double *v) {
  kir_tensor *want = mk(dt, rank, dims, v);
  for (int64_t i = 0; v && got->type.dtype == dt && i < kir_type_numel(&want->type); i++) {
    if (!isnan(v[i])) continue;
    if (!isnan(kir_tensor_get_f(got, i))) fail_msg("element %lld is not NaN", (long long)i);
    put(got, i, 0);
    put(want, i, 0);
  }
  kt_assert_close(got, want, kt_tolerance(dt));
  kir_tensor_free(want);
  kir_tensor_free(got);
}

static void expect_run(kir_graph *g, int32_t id, kiln_dtype dt, int rank, const int64_t *dims,
                       const double *v) {
  expect(run1(g, id), dt, rank, dims, v);
}

/* Two nodes of g compute the same values (tolerance of the dtype). */
static void expect_same(kir_graph *g, int32_t a, int32_t b) {
  kir_tensor *x = run1(g, a), *y = run1(g, b);
  kt_assert_close(x, y, kt_tolerance(y->type.dtype));
  kir_tensor_free(x);
  kir_tensor_free(y);
}

static void expect_msg(kir_graph *g, kiln_status s, kiln_status want, const char *text) {
  if (s != want || !strstr(g->error, text))
    fail_msg("status %s, message \"%s\"; want %s with \"%s\"", kiln_status_name(s), g->error,
             kiln_status_name(want), text);
}

/* Inference of n fails with status want and a message holding text (and the node's name). */
static void infer_fails(kir_graph *g, kir_node *n, kiln_status want, const char *text) {
  expect_msg(g, kir_infer_node(g, n), want, text);
  assert_non_null(strstr(g->error, n->name));
  assert_int_equal(n->type.dtype, KILN_DTYPE_INVALID);
}

static int setup(void **state) {
  (void)state;
  name_counter = 0;
  return 0;
}

/* ---------------------------------------------------------------- elementwise --- */

static void test_pow(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 1, DIMS(4), VALS(2, 3, -2, 4));
  int32_t b = konst(g, KILN_F32, 1, DIMS(4), VALS(3, 0.5, 2, -1));
  expect_run(g, bin(g, KIR_OP_POW, a, b), KILN_F32, 1, DIMS(4), VALS(8, sqrt(3), 4, 0.25));
  /* ONNX example: broadcast of a scalar exponent */
  int32_t x = konst(g, KILN_F64, 1, DIMS(3), VALS(1, 2, 3)), e = konst(g, KILN_F64, 0, NULL, VALS(2));
  expect_run(g, bin(g, KIR_OP_POW, x, e), KILN_F64, 1, DIMS(3), VALS(1, 4, 9));
  int32_t ia = konst(g, KILN_I32, 1, DIMS(7), VALS(2, -3, 1, -1, 0, 5, -1));
  int32_t ib = konst(g, KILN_I32, 1, DIMS(7), VALS(10, 3, -5, -3, 0, -1, -4));
  expect_run(g, bin(g, KIR_OP_POW, ia, ib), KILN_I32, 1, DIMS(7), VALS(1024, -27, 1, -1, 1, 0, 1));
  /* wraps: 2^31 in i32 is INT32_MIN; 3^41 mod 2^64 in i64 */
  int32_t wa = konst(g, KILN_I32, 1, DIMS(1), VALS(2)), wb = konst(g, KILN_I32, 1, DIMS(1), VALS(31));
  expect_run(g, bin(g, KIR_OP_POW, wa, wb), KILN_I32, 1, DIMS(1), VALS(-2147483648.0));
  int32_t la = konst(g, KILN_I64, 1, DIMS(1), VALS(3)), lb = konst(g, KILN_I64, 1, DIMS(1), VALS(41));
  kir_tensor *r = run1(g, bin(g, KIR_OP_POW, la, lb));
  assert_true(((int64_t *)r->data)[0] == -420491770248316829LL);
  kir_tensor_free(r);
  infer_fails(g, node(g, KIR_OP_POW, 2, (int32_t[]){a, ia}), KILN_ERR_TYPE, "differ in dtype");
  kir_graph_destroy(g);
}

static void test_abs(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t f = konst(g, KILN_F32, 1, DIMS(4), VALS(-1.5, 0, 2, -INFINITY));
  expect_run(g, un(g, KIR_OP_ABS, f), KILN_F32, 1, DIMS(4), VALS(1.5, 0, 2, INFINITY));
  int32_t i = konst(g, KILN_I32, 1, DIMS(3), VALS(-2147483648.0, -5, 5));
  expect_run(g, un(g, KIR_OP_ABS, i), KILN_I32, 1, DIMS(3), VALS(-2147483648.0, 5, 5));
  int32_t b = konst(g, KILN_BOOL, 1, DIMS(1), VALS(1));
  infer_fails(g, node(g, KIR_OP_ABS, 1, &b), KILN_ERR_TYPE, "bool");
  kir_graph_destroy(g);
}

static void test_leaky_relu_erf_gelu(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F64, 1, DIMS(4), VALS(-10, -1, 0, 3));
  expect_run(g, un(g, KIR_OP_LEAKY_RELU, x), KILN_F64, 1, DIMS(4), VALS(-0.1, -0.01, 0, 3));
  kir_node *lr = node(g, KIR_OP_LEAKY_RELU, 1, &x);
  setf(g, lr, "alpha", 0.5);
  expect_run(g, fin(g, lr), KILN_F64, 1, DIMS(4), VALS(-5, -0.5, 0, 3));
  int32_t e = konst(g, KILN_F64, 1, DIMS(3), VALS(0, 1, -0.5));
  expect_run(g, un(g, KIR_OP_ERF, e), KILN_F64, 1, DIMS(3),
             VALS(0, 0.8427007929497149, -0.5204998778130465));
  int32_t gx = konst(g, KILN_F64, 1, DIMS(3), VALS(1, -1, 2.5));
  expect_run(g, un(g, KIR_OP_GELU, gx), KILN_F64, 1, DIMS(3),
             VALS(0.8413447460685429, -0.15865525393145707, 2.4844758366855597));
  kir_node *gt = node(g, KIR_OP_GELU, 1, &gx);
  seti(g, gt, "approximate", 1);
  expect_run(g, fin(g, gt), KILN_F64, 1, DIMS(3),
             VALS(0.8411919906082768, -0.15880800939172324, 2.484915733910001));
  kir_node *bad = node(g, KIR_OP_GELU, 1, &gx);
  seti(g, bad, "approximate", 2);
  infer_fails(g, bad, KILN_ERR_GRAPH, "'approximate' must be 0 or 1, got 2");
  int32_t i = konst(g, KILN_I32, 1, DIMS(1), VALS(1));
  infer_fails(g, node(g, KIR_OP_ERF, 1, &i), KILN_ERR_TYPE, "f32 or f64");
  infer_fails(g, node(g, KIR_OP_LEAKY_RELU, 1, &i), KILN_ERR_TYPE, "f32 or f64");
  /* the shared definitions, as fused epilogues call them */
  assert_true(kir_apply_unary(KIR_OP_LEAKY_RELU, -2, NAN, NAN) == -0.02);
  assert_true(kir_apply_unary(KIR_OP_LEAKY_RELU, -2, 0.25, NAN) == -0.5);
  assert_true(kir_apply_unary(KIR_OP_GELU, 1, NAN, NAN) == kir_apply_unary(KIR_OP_GELU, 1, 0, NAN));
  assert_true(kir_apply_unary(KIR_OP_GELU, 1, 1, NAN) != kir_apply_unary(KIR_OP_GELU, 1, 0, NAN));
  assert_true(kir_apply_binary(KIR_OP_POW, 2, 10) == 1024);
  kir_graph_destroy(g);
}

/* A fused_elementwise chain with leaky_relu (alpha in clamp_min) and gelu (approximate
 * in clamp_min) equals the unfused nodes. */
static void test_fused_epilogue_params(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst_own(g, iota(KILN_F32, 2, DIMS(2, 3), -3.5));
  int32_t c = konst(g, KILN_F32, 1, DIMS(3), VALS(0.5, 1.5, 2));
  kir_node *f = node(g, KIR_OP_FUSED_ELEMENTWISE, 2, (int32_t[]){x, c});
  setis(g, f, "epilogue", INTS(KIR_OP_ADD, KIR_OP_LEAKY_RELU, KIR_OP_GELU, KIR_OP_ABS, KIR_OP_POW));
  setis(g, f, "operand", INTS(1, -1, -1, -1, 1));
  setis(g, f, "swap", INTS(0, 0, 0, 0, 1));
  double lo[5] = {NAN, 0.2, 1, NAN, NAN}, hi[5] = {NAN, NAN, NAN, NAN, NAN};
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_min", lo, 5), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_max", hi, 5), KILN_OK);
  const char *from[1] = {"chain"};
  assert_int_equal(kir_attr_set_strings(g, f, "fused_from", from, 1), KILN_OK);
  int32_t fused = fin(g, f);
  int32_t a = bin(g, KIR_OP_ADD, x, c);
  kir_node *lr = node(g, KIR_OP_LEAKY_RELU, 1, &a);
  setf(g, lr, "alpha", 0.2);
  int32_t l = fin(g, lr);
  kir_node *ge = node(g, KIR_OP_GELU, 1, &l);
  seti(g, ge, "approximate", 1);
  int32_t p = bin(g, KIR_OP_POW, c, un(g, KIR_OP_ABS, fin(g, ge)));
  kir_tensor *tf = run1(g, fused), *tu = run1(g, p);
  assert_true(kt_rel_error(tf, tu) == 0);
  kir_tensor_free(tf);
  kir_tensor_free(tu);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- reductions ---- */

static void test_reduce_min(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 2, DIMS(2, 3), VALS(5, 1, 3, -2, 8, NAN));
  kir_node *r = node(g, KIR_OP_REDUCE_MIN, 1, &x);
  setis(g, r, "axes", INTS(-1));
  expect_run(g, fin(g, r), KILN_F32, 1, DIMS(2), VALS(1, NAN));
  kir_node *r0 = node(g, KIR_OP_REDUCE_MIN, 1, &x);
  setis(g, r0, "axes", INTS(0));
  seti(g, r0, "keep_dims", 1);
  kir_tensor *t = run1(g, fin(g, r0));
  assert_int_equal(t->type.rank, 2);
  float *v = t->data;
  assert_true(v[0] == -2 && v[1] == 1 && isnan(v[2]));
  kir_tensor_free(t);
  int32_t i = konst(g, KILN_I64, 1, DIMS(3), VALS(4, -9, 7));
  expect_run(g, un(g, KIR_OP_REDUCE_MIN, i), KILN_I64, 0, NULL, VALS(-9));
  int32_t e = konst(g, KILN_F32, 2, DIMS(0, 3), NULL);
  kir_node *re = node(g, KIR_OP_REDUCE_MIN, 1, &e);
  setis(g, re, "axes", INTS(0));
  infer_fails(g, re, KILN_ERR_SHAPE, "reduce_min over axis 0 of size 0");
  /* fused_reduce with reduce = reduce_min */
  int32_t c = konst(g, KILN_F32, 1, DIMS(3), VALS(1, 2, 3));
  kir_node *fr = node(g, KIR_OP_FUSED_REDUCE, 2, (int32_t[]){x, c});
  seti(g, fr, "reduce", KIR_OP_REDUCE_MIN);
  setis(g, fr, "axes", INTS(1));
  setis(g, fr, "epilogue", INTS(KIR_OP_MUL));
  setis(g, fr, "operand", INTS(1));
  setis(g, fr, "swap", INTS(0));
  double nan1[1] = {NAN};
  assert_int_equal(kir_attr_set_floats(g, fr, "clamp_min", nan1, 1), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, fr, "clamp_max", nan1, 1), KILN_OK);
  const char *from[1] = {"m"};
  assert_int_equal(kir_attr_set_strings(g, fr, "fused_from", from, 1), KILN_OK);
  expect_run(g, fin(g, fr), KILN_F32, 1, DIMS(2), VALS(2, NAN));
  kir_graph_destroy(g);
}

static void test_log_softmax(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F64, 2, DIMS(2, 3), VALS(1, 2, 3, 1001, 1002, 1003));
  double a = -2.4076059644443806, b = -1.4076059644443804, c = -0.4076059644443804;
  expect_run(g, un(g, KIR_OP_LOG_SOFTMAX, x), KILN_F64, 2, DIMS(2, 3), VALS(a, b, c, a, b, c));
  kir_node *n = node(g, KIR_OP_LOG_SOFTMAX, 1, &x);
  seti(g, n, "axis", 0);
  double l = -log1p(exp(-1000.0));
  expect_run(g, fin(g, n), KILN_F64, 2, DIMS(2, 3), VALS(-1000, -1000, -1000, l, l, l));
  kir_node *bad = node(g, KIR_OP_LOG_SOFTMAX, 1, &x);
  seti(g, bad, "axis", 2);
  infer_fails(g, bad, KILN_ERR_SHAPE, "axis 2");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- argmax/argmin - */

static int32_t arg(kir_graph *g, kir_op op, int32_t x, int64_t axis, int64_t keep, int64_t last) {
  kir_node *n = node(g, op, 1, &x);
  if (axis != 99) seti(g, n, "axis", axis);
  if (keep >= 0) seti(g, n, "keep_dims", keep);
  if (last >= 0) seti(g, n, "select_last_index", last);
  return fin(g, n);
}

static void test_argmax_argmin(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(2, 1, 3, 10));
  /* ONNX examples: default axis 0 keepdims 1; axis 1 keepdims 0 */
  expect_run(g, arg(g, KIR_OP_ARGMAX, x, 99, -1, -1), KILN_I64, 2, DIMS(1, 2), VALS(1, 1));
  expect_run(g, arg(g, KIR_OP_ARGMAX, x, 1, 0, -1), KILN_I64, 1, DIMS(2), VALS(0, 1));
  expect_run(g, arg(g, KIR_OP_ARGMIN, x, -1, 1, -1), KILN_I64, 2, DIMS(2, 1), VALS(1, 0));
  int32_t t = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(2, 2, 3, 10));
  expect_run(g, arg(g, KIR_OP_ARGMAX, t, 1, 1, 1), KILN_I64, 2, DIMS(2, 1), VALS(1, 1));
  expect_run(g, arg(g, KIR_OP_ARGMAX, t, 1, 1, 0), KILN_I64, 2, DIMS(2, 1), VALS(0, 1));
  expect_run(g, arg(g, KIR_OP_ARGMIN, t, 1, 0, 1), KILN_I64, 1, DIMS(2), VALS(1, 0));
  /* NaN is the largest value */
  int32_t n = konst(g, KILN_F64, 1, DIMS(5), VALS(1, NAN, 5, NAN, 1));
  expect_run(g, arg(g, KIR_OP_ARGMAX, n, 0, 0, 0), KILN_I64, 0, NULL, VALS(1));
  expect_run(g, arg(g, KIR_OP_ARGMAX, n, 0, 0, 1), KILN_I64, 0, NULL, VALS(3));
  expect_run(g, arg(g, KIR_OP_ARGMIN, n, 0, 0, 0), KILN_I64, 0, NULL, VALS(0));
  expect_run(g, arg(g, KIR_OP_ARGMIN, n, 0, 0, 1), KILN_I64, 0, NULL, VALS(4));
  /* i64 compared exactly (as doubles these two would tie) */
  kir_tensor *big = mk(KILN_I64, 1, DIMS(2), NULL);
  ((int64_t *)big->data)[0] = INT64_MAX - 1;
  ((int64_t *)big->data)[1] = INT64_MAX;
  int32_t b = konst_own(g, big);
  expect_run(g, arg(g, KIR_OP_ARGMAX, b, 0, 0, 0), KILN_I64, 0, NULL, VALS(1));
  expect_run(g, arg(g, KIR_OP_ARGMIN, b, 0, 0, 0), KILN_I64, 0, NULL, VALS(0));
  /* errors */
  int32_t e = konst(g, KILN_F32, 2, DIMS(3, 0), NULL);
  kir_node *ne = node(g, KIR_OP_ARGMAX, 1, &e);
  seti(g, ne, "axis", 1);
  infer_fails(g, ne, KILN_ERR_SHAPE, "argmax over axis 1 of size 0");
  kir_node *na = node(g, KIR_OP_ARGMIN, 1, &x);
  seti(g, na, "axis", -3);
  infer_fails(g, na, KILN_ERR_SHAPE, "attribute 'axis' is -3");
  kir_node *nk = node(g, KIR_OP_ARGMIN, 1, &x);
  seti(g, nk, "keep_dims", 5);
  infer_fails(g, nk, KILN_ERR_GRAPH, "'keep_dims' must be 0 or 1, got 5");
  int32_t bo = konst(g, KILN_BOOL, 1, DIMS(2), VALS(1, 0));
  infer_fails(g, node(g, KIR_OP_ARGMAX, 1, &bo), KILN_ERR_TYPE, "bool");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- concat -------- */

static void test_concat(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_I32, 2, DIMS(2, 2), VALS(1, 2, 3, 4));
  int32_t b = konst(g, KILN_I32, 2, DIMS(2, 1), VALS(5, 6));
  int32_t z = konst(g, KILN_I32, 2, DIMS(2, 0), NULL);
  kir_node *c = node(g, KIR_OP_CONCAT, 4, (int32_t[]){a, z, b, a});
  seti(g, c, "axis", -1);
  /* the z input is empty: rows are a | b | a */
  expect_run(g, fin(g, c), KILN_I32, 2, DIMS(2, 5), VALS(1, 2, 5, 1, 2, 3, 4, 6, 3, 4));
  kir_node *c0 = node(g, KIR_OP_CONCAT, 2, (int32_t[]){a, a});
  seti(g, c0, "axis", 0);
  expect_run(g, fin(g, c0), KILN_I32, 2, DIMS(4, 2), VALS(1, 2, 3, 4, 1, 2, 3, 4));
  kir_node *bad = node(g, KIR_OP_CONCAT, 2, (int32_t[]){a, b});
  seti(g, bad, "axis", 0);
  infer_fails(g, bad, KILN_ERR_SHAPE, "dims must agree except along axis 0");
  int32_t f = konst(g, KILN_F32, 2, DIMS(2, 2), NULL);
  kir_node *bt = node(g, KIR_OP_CONCAT, 2, (int32_t[]){a, f});
  seti(g, bt, "axis", 0);
  infer_fails(g, bt, KILN_ERR_TYPE, "dtypes differ");
  kir_node *ba = node(g, KIR_OP_CONCAT, 1, &a);
  seti(g, ba, "axis", 2);
  infer_fails(g, ba, KILN_ERR_SHAPE, "attribute 'axis' is 2");
  infer_fails(g, node(g, KIR_OP_CONCAT, 1, &a), KILN_ERR_GRAPH, "axis");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- slice --------- */

static kir_node *slice(kir_graph *g, int32_t x, const int64_t *st, const int64_t *en,
                       const int64_t *ax, const int64_t *sp, int32_t cnt) {
  kir_node *n = node(g, KIR_OP_SLICE, 1, &x);
  setis(g, n, "starts", st, cnt);
  setis(g, n, "ends", en, cnt);
  if (ax) setis(g, n, "axes", ax, cnt);
  if (sp) setis(g, n, "steps", sp, cnt);
  return n;
}

static void test_slice(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst_own(g, iota(KILN_F32, 2, DIMS(3, 4), 0));
  /* ONNX example 1: data [[1,2,3,4],[5,6,7,8]] starts [1,0] ends [2,3] steps [1,2] */
  int32_t d = konst(g, KILN_F32, 2, DIMS(2, 4), VALS(1, 2, 3, 4, 5, 6, 7, 8));
  expect_run(g, fin(g, slice(g, d, DIMS(1, 0), DIMS(2, 3), DIMS(0, 1), DIMS(1, 2), 2)), KILN_F32,
             2, DIMS(1, 2), VALS(5, 7));
  /* ONNX example 2: starts [0,1] ends [-1,1000] (clamped) */
  expect_run(g, fin(g, slice(g, d, DIMS(0, 1), DIMS(-1, 1000), NULL, NULL, 2)), KILN_F32, 2,
             DIMS(1, 3), VALS(2, 3, 4));
  /* reverse a dim with the INT64_MIN sentinel */
  expect_run(g, fin(g, slice(g, x, DIMS(-1), DIMS(INT64_MIN), DIMS(1), DIMS(-1), 1)), KILN_F32, 2,
             DIMS(3, 4), VALS(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8));
  /* step -2 from INT64_MAX (clamped to the last), end -5 + 4 = -1 clamps to before 0 */
  expect_run(g, fin(g, slice(g, x, DIMS(INT64_MAX), DIMS(-5), DIMS(-1), DIMS(-2), 1)), KILN_F32,
             2, DIMS(3, 2), VALS(3, 1, 7, 5, 11, 9));
  /* step 2 to INT64_MAX on axis 1; on axis 0 a start below -dim clamps to 0 */
  expect_run(g, fin(g, slice(g, x, DIMS(-100, 0), DIMS(INT64_MAX, INT64_MAX), DIMS(0, 1),
                             DIMS(1, 2), 2)), KILN_F32, 2, DIMS(3, 2),
             VALS(0, 2, 4, 6, 8, 10));
  /* step INT64_MIN takes one element */
  expect_run(g, fin(g, slice(g, x, DIMS(2), DIMS(-100), DIMS(0), DIMS(INT64_MIN), 1)), KILN_F32,
             2, DIMS(1, 4), VALS(8, 9, 10, 11));
  /* empty results: start >= end forward, start past the end, backward from 0 */
  kir_node *e1 = slice(g, x, DIMS(2), DIMS(1), DIMS(0), NULL, 1);
  expect_run(g, fin(g, e1), KILN_F32, 2, DIMS(0, 4), NULL);
  expect_run(g, fin(g, slice(g, x, DIMS(10), DIMS(20), DIMS(1), NULL, 1)), KILN_F32, 2,
             DIMS(3, 0), NULL);
  expect_run(g, fin(g, slice(g, x, DIMS(0), DIMS(0), DIMS(1), DIMS(-1), 1)), KILN_F32, 2,
             DIMS(3, 0), NULL);
  /* slicing an empty tensor, and a slice of a zero-size slice */
  expect_run(g, fin(g, slice(g, e1->id, DIMS(1), DIMS(3), DIMS(1), NULL, 1)), KILN_F32, 2,
             DIMS(0, 2), NULL);
  expect_run(g, fin(g, slice(g, e1->id, DIMS(-1), DIMS(INT64_MIN), DIMS(0), DIMS(-1), 1)),
             KILN_F32, 2, DIMS(0, 4), NULL);
  /* errors */
  infer_fails(g, slice(g, x, DIMS(0), DIMS(1), DIMS(0), DIMS(0), 1), KILN_ERR_GRAPH,
              "'steps' entry 0 is 0");
  infer_fails(g, slice(g, x, DIMS(0, 0), DIMS(1, 1), DIMS(1, -1), NULL, 2), KILN_ERR_SHAPE,
              "'axes' entry 1 (-1) is out of range or repeated");
  infer_fails(g, slice(g, x, DIMS(0), DIMS(1), DIMS(2), NULL, 1), KILN_ERR_SHAPE,
              "'axes' entry 0 (2)");
  kir_node *m = node(g, KIR_OP_SLICE, 1, &x);
  setis(g, m, "starts", INTS(0, 0));
  setis(g, m, "ends", INTS(1));
  infer_fails(g, m, KILN_ERR_GRAPH, "attribute 'ends' has 1 entries, 'starts' has 2");
  kir_node *ms = node(g, KIR_OP_SLICE, 1, &x);
  setis(g, ms, "starts", INTS(0));
  setis(g, ms, "ends", INTS(1));
  setis(g, ms, "steps", INTS(1, 1));
  infer_fails(g, ms, KILN_ERR_GRAPH, "attribute 'steps' has 2 entries");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- gather -------- */

static void test_gather(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  /* ONNX example, axis 0 */
  int32_t d = konst(g, KILN_F32, 2, DIMS(3, 2), VALS(1, 1.2, 2.3, 3.4, 4.5, 5.7));
  int32_t i = konst(g, KILN_I64, 2, DIMS(2, 2), VALS(0, 1, 1, 2));
  expect_run(g, bin(g, KIR_OP_GATHER, d, i), KILN_F32, 3, DIMS(2, 2, 2),
             VALS(1, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7));
  /* ONNX example, axis 1 */
  int32_t d1 = konst(g, KILN_F32, 2, DIMS(3, 3), VALS(1, 1.2, 1.9, 2.3, 3.4, 3.9, 4.5, 5.7, 5.9));
  int32_t i1 = konst(g, KILN_I32, 2, DIMS(1, 2), VALS(0, 2));
  kir_node *n1 = node(g, KIR_OP_GATHER, 2, (int32_t[]){d1, i1});
  seti(g, n1, "axis", 1);
  expect_run(g, fin(g, n1), KILN_F32, 3, DIMS(3, 1, 2), VALS(1, 1.9, 2.3, 3.9, 4.5, 5.9));
  /* negative indices (ONNX test_gather_negative_indices), scalar index, empty indices */
  int32_t r = konst_own(g, iota(KILN_I64, 1, DIMS(10), 0));
  int32_t ni = konst(g, KILN_I64, 1, DIMS(3), VALS(0, -9, -10));
  expect_run(g, bin(g, KIR_OP_GATHER, r, ni), KILN_I64, 1, DIMS(3), VALS(0, 1, 0));
  int32_t s = konst(g, KILN_I32, 0, NULL, VALS(-1));
  expect_run(g, bin(g, KIR_OP_GATHER, d, s), KILN_F32, 1, DIMS(2), VALS(4.5, 5.7));
  int32_t z = konst(g, KILN_I64, 1, DIMS(0), NULL);
  expect_run(g, bin(g, KIR_OP_GATHER, d, z), KILN_F32, 2, DIMS(0, 2), NULL);
  /* out of range at run time: an error naming the node and the index */
  int32_t oob = konst(g, KILN_I64, 1, DIMS(3), VALS(0, 3, 1));
  int32_t go = bin(g, KIR_OP_GATHER, d, oob);
  kir_tensor *out = NULL;
  expect_msg(g, kir_interp_run(g, NULL, NULL, 0, &go, 1, NULL, 0, &out), KILN_ERR_EXEC,
             "index 3 (indices element 1) is out of range for axis 0 of size 3");
  assert_non_null(strstr(g->error, g->nodes[go]->name));
  assert_null(out);
  int32_t neg = konst(g, KILN_I32, 1, DIMS(1), VALS(-4));
  int32_t gn = bin(g, KIR_OP_GATHER, d, neg);
  expect_msg(g, kir_interp_run(g, NULL, NULL, 0, &gn, 1, NULL, 0, &out), KILN_ERR_EXEC,
             "index -4");
  /* inference errors */
  int32_t fi = konst(g, KILN_F32, 1, DIMS(1), VALS(0));
  infer_fails(g, node(g, KIR_OP_GATHER, 2, (int32_t[]){d, fi}), KILN_ERR_TYPE,
              "indices must be i32 or i64");
  int32_t sc = konst(g, KILN_F32, 0, NULL, VALS(1));
  infer_fails(g, node(g, KIR_OP_GATHER, 2, (int32_t[]){sc, i}), KILN_ERR_SHAPE, "rank >= 1");
  kir_node *ba = node(g, KIR_OP_GATHER, 2, (int32_t[]){d, i});
  seti(g, ba, "axis", 2);
  infer_fails(g, ba, KILN_ERR_SHAPE, "attribute 'axis' is 2");
  int32_t r8 = konst(g, KILN_F32, 8, DIMS(1, 1, 1, 1, 1, 1, 1, 1), VALS(0));
  int32_t i2 = konst(g, KILN_I64, 2, DIMS(1, 1), VALS(0));
  infer_fails(g, node(g, KIR_OP_GATHER, 2, (int32_t[]){r8, i2}), KILN_ERR_LIMIT, "rank 9");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- cast, where --- */

static int32_t cast(kir_graph *g, int32_t x, kiln_dtype to) {
  kir_node *n = node(g, KIR_OP_CAST, 1, &x);
  seti(g, n, "dtype", to);
  return fin(g, n);
}

static void test_cast(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t f = konst(g, KILN_F32, 1, DIMS(7), VALS(1.9, -1.9, NAN, 3e9, -3e9, INFINITY, 0));
  expect_run(g, cast(g, f, KILN_I32), KILN_I32, 1, DIMS(7),
             VALS(1, -1, 0, 2147483647, -2147483648.0, 2147483647, 0));
  expect_run(g, cast(g, f, KILN_BOOL), KILN_BOOL, 1, DIMS(7), VALS(1, 1, 1, 1, 1, 1, 0));
  expect_run(g, cast(g, f, KILN_F64), KILN_F64, 1, DIMS(7),
             VALS((float)1.9, (float)-1.9, NAN, 3e9, -3e9, INFINITY, 0));
  kir_tensor *tl = run1(g, cast(g, konst(g, KILN_F64, 1, DIMS(2), VALS(1e30, -1e30)), KILN_I64));
  assert_true(((int64_t *)tl->data)[0] == INT64_MAX && ((int64_t *)tl->data)[1] == INT64_MIN);
  kir_tensor_free(tl);
  /* int -> narrower int wraps; int -> float rounds; bool -> numbers */
  kir_tensor *big = mk(KILN_I64, 1, DIMS(3), NULL);
  ((int64_t *)big->data)[0] = 4294967297LL;
  ((int64_t *)big->data)[1] = -1;
  ((int64_t *)big->data)[2] = 2147483648LL;
  int32_t b = konst_own(g, big);
  expect_run(g, cast(g, b, KILN_I32), KILN_I32, 1, DIMS(3), VALS(1, -1, -2147483648.0));
  expect_run(g, cast(g, b, KILN_F32), KILN_F32, 1, DIMS(3), VALS(4294967296.0, -1, 2147483648.0));
  expect_run(g, cast(g, b, KILN_BOOL), KILN_BOOL, 1, DIMS(3), VALS(1, 1, 1));
  int32_t bo = konst(g, KILN_BOOL, 1, DIMS(2), VALS(1, 0));
  expect_run(g, cast(g, bo, KILN_F32), KILN_F32, 1, DIMS(2), VALS(1, 0));
  expect_run(g, cast(g, bo, KILN_I64), KILN_I64, 1, DIMS(2), VALS(1, 0));
  kir_node *bad = node(g, KIR_OP_CAST, 1, &f);
  seti(g, bad, "dtype", 14);
  infer_fails(g, bad, KILN_ERR_TYPE, "attribute 'dtype' is not a dtype: 14");
  kir_graph_destroy(g);
}

static void test_where(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  /* ONNX example */
  int32_t c = konst(g, KILN_BOOL, 2, DIMS(2, 2), VALS(1, 0, 1, 1));
  int32_t x = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(1, 2, 3, 4));
  int32_t y = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(9, 8, 7, 6));
  expect_run(g, fin(g, node(g, KIR_OP_WHERE, 3, (int32_t[]){c, x, y})), KILN_F32, 2, DIMS(2, 2),
             VALS(1, 8, 3, 4));
  /* all three broadcast: cond [2,1], x [3], y [] */
  int32_t c2 = konst(g, KILN_BOOL, 2, DIMS(2, 1), VALS(0, 1));
  int32_t x3 = konst(g, KILN_I64, 1, DIMS(3), VALS(1, 2, 3));
  int32_t y0 = konst(g, KILN_I64, 0, NULL, VALS(-1));
  expect_run(g, fin(g, node(g, KIR_OP_WHERE, 3, (int32_t[]){c2, x3, y0})), KILN_I64, 2,
             DIMS(2, 3), VALS(-1, -1, -1, 1, 2, 3));
  infer_fails(g, node(g, KIR_OP_WHERE, 3, (int32_t[]){x, x, y}), KILN_ERR_TYPE,
              "condition must be bool");
  infer_fails(g, node(g, KIR_OP_WHERE, 3, (int32_t[]){c, x, x3}), KILN_ERR_TYPE, "differ in dtype");
  int32_t y5 = konst(g, KILN_F32, 1, DIMS(5), NULL);
  infer_fails(g, node(g, KIR_OP_WHERE, 3, (int32_t[]){c, x, y5}), KILN_ERR_SHAPE,
              "do not broadcast");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- conv ---------- */

static kir_node *conv(kir_graph *g, int32_t x, int32_t w, int32_t b) {
  return node(g, KIR_OP_CONV, b >= 0 ? 3 : 2, (int32_t[]){x, w, b});
}

static void test_conv_onnx_examples(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst_own(g, iota(KILN_F32, 4, DIMS(1, 1, 5, 5), 0));
  kir_tensor *ones = mk(KILN_F32, 4, DIMS(1, 1, 3, 3), VALS(1, 1, 1, 1, 1, 1, 1, 1, 1));
  int32_t w = konst_own(g, ones);
  kir_node *p = conv(g, x, w, -1);
  setis(g, p, "pads", INTS(1, 1, 1, 1));
  expect_run(g, fin(g, p), KILN_F32, 4, DIMS(1, 1, 5, 5),
             VALS(12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108, 117, 81, 93, 144, 153, 162,
                  111, 72, 111, 117, 123, 84));
  expect_run(g, fin(g, conv(g, x, w, -1)), KILN_F32, 4, DIMS(1, 1, 3, 3),
             VALS(54, 63, 72, 99, 108, 117, 144, 153, 162));
  kir_node *s = conv(g, x, w, -1);
  setis(g, s, "pads", INTS(1, 1, 1, 1));
  setis(g, s, "strides", INTS(2, 2));
  expect_run(g, fin(g, s), KILN_F32, 4, DIMS(1, 1, 3, 3), VALS(12, 27, 24, 63, 108, 81, 72, 117, 84));
  /* test_conv_with_strides_and_asymmetric_padding */
  int32_t x7 = konst_own(g, iota(KILN_F32, 4, DIMS(1, 1, 7, 5), 0));
  kir_node *a = conv(g, x7, w, -1);
  setis(g, a, "pads", INTS(1, 0, 1, 0));
  setis(g, a, "strides", INTS(2, 2));
  expect_run(g, fin(g, a), KILN_F32, 4, DIMS(1, 1, 4, 2), VALS(21, 33, 99, 117, 189, 207, 171, 183));
  kir_graph_destroy(g);
}

/* 1D with dilation and bias, 3D, two channels in and out. */
static void test_conv_1d_3d(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F64, 3, DIMS(1, 2, 5), VALS(1, 2, 3, 4, 5, 10, 20, 30, 40, 50));
  int32_t w = konst(g, KILN_F64, 3, DIMS(2, 2, 2), VALS(1, -1, 0.5, 0, 0, 1, 1, 1));
  int32_t b = konst(g, KILN_F64, 1, DIMS(2), VALS(100, -100));
  kir_node *c = conv(g, x, w, b);
  setis(g, c, "dilations", INTS(2));
  setis(g, c, "pads", INTS(1, 0));
  /* out[m][o] = b[m] + sum_c sum_j w[m,c,j] x[c, o - 1 + 2j] (zero outside) */
  expect_run(g, fin(g, c), KILN_F64, 3, DIMS(1, 2, 4),
             VALS(98, 103, 108, 113, -78, -57, -36, -15));
  int32_t x3 = konst_own(g, iota(KILN_F32, 5, DIMS(1, 1, 2, 3, 3), 0));
  int32_t w3 = konst(g, KILN_F32, 5, DIMS(1, 1, 2, 2, 2), VALS(1, 1, 1, 1, 1, 1, 1, 1));
  kir_node *c3 = conv(g, x3, w3, -1);
  setis(g, c3, "strides", INTS(1, 1, 1));
  /* windows of 8: base + {0,1,3,4,9,10,12,13} */
  expect_run(g, fin(g, c3), KILN_F32, 5, DIMS(1, 1, 1, 2, 2),
             VALS(52, 60, 76, 84));
  kir_graph_destroy(g);
}

/* A 1x1 conv is a matmul of w [M, C] and x viewed as [C, H*W]. */
static void test_conv_1x1_is_matmul(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *tx = mk(KILN_F64, 4, DIMS(1, 3, 2, 4), NULL), *tw = mk(KILN_F64, 4, DIMS(5, 3, 1, 1), NULL);
  kt_fill(tx, 1, -1, 1);
  kt_fill(tw, 2, -1, 1);
  int32_t x = konst_t(g, tx), w = konst_t(g, tw);
  int32_t c = fin(g, conv(g, x, w, -1));
  kir_node *xr = node(g, KIR_OP_RESHAPE, 1, &x);
  setis(g, xr, "shape", INTS(3, 8));
  kir_node *wr = node(g, KIR_OP_RESHAPE, 1, &w);
  setis(g, wr, "shape", INTS(5, 3));
  int32_t mm = bin(g, KIR_OP_MATMUL, fin(g, wr), fin(g, xr));
  kir_node *mr = node(g, KIR_OP_RESHAPE, 1, &mm);
  setis(g, mr, "shape", INTS(1, 5, 2, 4));
  expect_same(g, c, fin(g, mr));
  kir_tensor_free(tx);
  kir_tensor_free(tw);
  kir_graph_destroy(g);
}

/* A group conv equals the concat of per-group convs on channel slices. */
static void test_group_conv(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *tx = mk(KILN_F32, 4, DIMS(2, 4, 5, 5), NULL), *tw = mk(KILN_F32, 4, DIMS(6, 2, 3, 3), NULL);
  kir_tensor *tb = mk(KILN_F32, 1, DIMS(6), NULL);
  kt_fill(tx, 3, -1, 1);
  kt_fill(tw, 4, -1, 1);
  kt_fill(tb, 5, -1, 1);
  int32_t x = konst_t(g, tx), w = konst_t(g, tw), b = konst_t(g, tb);
  kir_node *gc = conv(g, x, w, b);
  seti(g, gc, "group", 2);
  setis(g, gc, "strides", INTS(2, 1));
  setis(g, gc, "pads", INTS(1, 0, 0, 2));
  int32_t whole = fin(g, gc);
  int32_t parts[2];
  for (int k = 0; k < 2; k++) {
    int32_t xs = fin(g, slice(g, x, DIMS(2 * k), DIMS(2 * k + 2), DIMS(1), NULL, 1));
    int32_t ws = fin(g, slice(g, w, DIMS(3 * k), DIMS(3 * k + 3), DIMS(0), NULL, 1));
    int32_t bs = fin(g, slice(g, b, DIMS(3 * k), DIMS(3 * k + 3), DIMS(0), NULL, 1));
    kir_node *c = conv(g, xs, ws, bs);
    setis(g, c, "strides", INTS(2, 1));
    setis(g, c, "pads", INTS(1, 0, 0, 2));
    parts[k] = fin(g, c);
  }
  kir_node *cat = node(g, KIR_OP_CONCAT, 2, parts);
  seti(g, cat, "axis", 1);
  expect_same(g, whole, fin(g, cat));
  kir_tensor_free(tx);
  kir_tensor_free(tw);
  kir_tensor_free(tb);
  kir_graph_destroy(g);
}

/* fused_conv (bias add as an [M,1,1] operand, then relu, then leaky_relu) = unfused. */
static void test_fused_conv(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *tx = mk(KILN_F32, 4, DIMS(1, 2, 4, 4), NULL), *tw = mk(KILN_F32, 4, DIMS(3, 2, 2, 2), NULL);
  kt_fill(tx, 6, -1, 1);
  kt_fill(tw, 7, -1, 1);
  int32_t x = konst_t(g, tx), w = konst_t(g, tw);
  int32_t b = konst(g, KILN_F32, 3, DIMS(3, 1, 1), VALS(0.5, -0.25, 0));
  kir_node *f = node(g, KIR_OP_FUSED_CONV, 3, (int32_t[]){x, w, b});
  setis(g, f, "pads", INTS(1, 1, 0, 0));
  setis(g, f, "epilogue", INTS(KIR_OP_ADD, KIR_OP_LEAKY_RELU));
  setis(g, f, "operand", INTS(2, -1));
  setis(g, f, "swap", INTS(0, 0));
  double lo[2] = {NAN, 0.3}, hi[2] = {NAN, NAN};
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_min", lo, 2), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_max", hi, 2), KILN_OK);
  const char *from[3] = {"conv", "add", "lrelu"};
  assert_int_equal(kir_attr_set_strings(g, f, "fused_from", from, 3), KILN_OK);
  int32_t fused = fin(g, f);
  kir_node *c = conv(g, x, w, -1);
  setis(g, c, "pads", INTS(1, 1, 0, 0));
  kir_node *lr = node(g, KIR_OP_LEAKY_RELU, 1, (int32_t[]){bin(g, KIR_OP_ADD, fin(g, c), b)});
  setf(g, lr, "alpha", 0.3);
  kir_tensor *tf = run1(g, fused), *tu = run1(g, fin(g, lr));
  assert_true(kt_rel_error(tf, tu) == 0);
  kir_tensor_free(tf);
  kir_tensor_free(tu);
  /* an operand that does not broadcast to the output */
  int32_t bad = konst(g, KILN_F32, 1, DIMS(7), NULL);
  kir_node *fb = node(g, KIR_OP_FUSED_CONV, 3, (int32_t[]){x, w, bad});
  kir_attr_copy_all(g, fb, f);
  infer_fails(g, fb, KILN_ERR_SHAPE, "epilogue operand 2");
  kir_tensor_free(tx);
  kir_tensor_free(tw);
  kir_graph_destroy(g);
}

static void test_conv_errors(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 4, DIMS(1, 4, 5, 5), NULL);
  int32_t w = konst(g, KILN_F32, 4, DIMS(2, 4, 3, 3), NULL);
  kir_node *n;
  n = conv(g, x, w, -1), setis(g, n, "strides", INTS(1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'strides' has 1 entries, expected 2");
  n = conv(g, x, w, -1), setis(g, n, "pads", INTS(1, 1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'pads' has 2 entries, expected 4");
  n = conv(g, x, w, -1), setis(g, n, "dilations", INTS(1, 1, 1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'dilations' has 3 entries");
  n = conv(g, x, w, -1), setis(g, n, "strides", INTS(1, 0));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'strides' entry 1 is 0");
  n = conv(g, x, w, -1), setis(g, n, "strides", INTS(-2, 1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'strides' entry 0 is -2");
  n = conv(g, x, w, -1), setis(g, n, "dilations", INTS(0, 1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'dilations' entry 0 is 0");
  n = conv(g, x, w, -1), setis(g, n, "pads", INTS(0, 0, -1, 0));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'pads' entry 2 is -1");
  n = conv(g, x, w, -1), setis(g, n, "pads", INTS(0, 0, 0, 4294967296LL));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'pads' entry 3 is 4294967296");
  n = conv(g, x, w, -1), seti(g, n, "group", 0);
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'group' is 0");
  n = conv(g, x, w, -1), seti(g, n, "group", 3);
  infer_fails(g, n, KILN_ERR_SHAPE, "attribute 'group' (3) does not divide");
  int32_t w3 = konst(g, KILN_F32, 4, DIMS(3, 2, 3, 3), NULL);
  n = conv(g, x, w3, -1), seti(g, n, "group", 2);
  infer_fails(g, n, KILN_ERR_SHAPE, "does not divide the input channels (C = 4) and the output "
              "channels (M = 3)");
  n = conv(g, x, w, -1), seti(g, n, "group", 2);
  infer_fails(g, n, KILN_ERR_SHAPE, "has 4 channels per group");
  n = conv(g, x, w, -1), setis(g, n, "dilations", INTS(3, 1));
  infer_fails(g, n, KILN_ERR_SHAPE, "kernel extent 7 (kernel 3, dilation 3) is larger than the "
              "padded input (5) along spatial dim 0");
  int32_t w6 = konst(g, KILN_F32, 4, DIMS(2, 4, 6, 1), NULL);
  infer_fails(g, conv(g, x, w6, -1), KILN_ERR_SHAPE, "output dim < 1");
  int32_t x2 = konst(g, KILN_F32, 2, DIMS(1, 4), NULL);
  infer_fails(g, conv(g, x2, w, -1), KILN_ERR_SHAPE, "rank 3 to 5");
  int32_t x6 = konst(g, KILN_F32, 6, DIMS(1, 4, 1, 1, 1, 1), NULL);
  int32_t w6r = konst(g, KILN_F32, 6, DIMS(1, 4, 1, 1, 1, 1), NULL);
  infer_fails(g, conv(g, x6, w6r, -1), KILN_ERR_SHAPE, "rank 3 to 5");
  int32_t w1 = konst(g, KILN_F32, 3, DIMS(2, 4, 3), NULL);
  infer_fails(g, conv(g, x, w1, -1), KILN_ERR_SHAPE, "must have the rank of input");
  int32_t w0 = konst(g, KILN_F32, 4, DIMS(2, 4, 0, 3), NULL);
  infer_fails(g, conv(g, x, w0, -1), KILN_ERR_SHAPE, "kernel dim 0 of size 0");
  int32_t b = konst(g, KILN_F32, 1, DIMS(3), NULL);
  infer_fails(g, conv(g, x, w, b), KILN_ERR_SHAPE, "bias f32[3] must be [M] = [2]");
  int32_t xi = konst(g, KILN_I32, 4, DIMS(1, 4, 5, 5), NULL);
  infer_fails(g, conv(g, xi, w, -1), KILN_ERR_TYPE, "f32 or f64");
  int32_t wd = konst(g, KILN_F64, 4, DIMS(2, 4, 3, 3), NULL);
  infer_fails(g, conv(g, x, wd, -1), KILN_ERR_TYPE, "dtypes differ");
  kir_graph_destroy(g);
}

/* Zero padding reaches a zero-size spatial input: the output is the bias. */
static void test_conv_zero_size(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 3, DIMS(0, 1, 4), NULL);
  int32_t w = konst(g, KILN_F32, 3, DIMS(2, 1, 3), NULL);
  expect_run(g, fin(g, conv(g, x, w, -1)), KILN_F32, 3, DIMS(0, 2, 2), NULL);
  int32_t xc = konst(g, KILN_F32, 3, DIMS(1, 0, 4), NULL);
  int32_t wc = konst(g, KILN_F32, 3, DIMS(2, 0, 3), NULL);
  int32_t b = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 2));
  expect_run(g, fin(g, conv(g, xc, wc, b)), KILN_F32, 3, DIMS(1, 2, 2), VALS(1, 1, 2, 2));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- pools --------- */

static kir_node *pool(kir_graph *g, kir_op op, int32_t x, const int64_t *k, int32_t nk) {
  kir_node *n = node(g, op, 1, &x);
  setis(g, n, "kernel", k, nk);
  return n;
}

static void test_max_pool(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst_own(g, iota(KILN_F32, 4, DIMS(1, 1, 4, 4), 1));
  kir_node *c = pool(g, KIR_OP_MAX_POOL, x, INTS(3, 3));
  setis(g, c, "strides", INTS(2, 2));
  seti(g, c, "ceil_mode", 1);
  expect_run(g, fin(g, c), KILN_F32, 4, DIMS(1, 1, 2, 2), VALS(11, 12, 15, 16));
  kir_node *d = pool(g, KIR_OP_MAX_POOL, x, INTS(2, 2));
  setis(g, d, "dilations", INTS(2, 2));
  expect_run(g, fin(g, d), KILN_F32, 4, DIMS(1, 1, 2, 2), VALS(11, 12, 15, 16));
  /* test_maxpool_with_argmax_2d_precomputed_strides, both storage orders */
  int32_t x5 = konst_own(g, iota(KILN_F32, 4, DIMS(1, 1, 5, 5), 1));
  kir_node *v = pool(g, KIR_OP_MAX_POOL, x5, INTS(2, 2));
  setis(g, v, "strides", INTS(2, 2));
  expect_run(g, fin(g, v), KILN_F32, 4, DIMS(1, 1, 2, 2), VALS(7, 9, 17, 19));
  kir_node *ic = pool(g, KIR_OP_MAX_POOL_INDICES, x5, INTS(2, 2));
  setis(g, ic, "strides", INTS(2, 2));
  seti(g, ic, "storage_order", 1);
  expect_run(g, fin(g, ic), KILN_I64, 4, DIMS(1, 1, 2, 2), VALS(6, 16, 8, 18));
  kir_node *ir = pool(g, KIR_OP_MAX_POOL_INDICES, x5, INTS(2, 2));
  setis(g, ir, "strides", INTS(2, 2));
  expect_run(g, fin(g, ir), KILN_I64, 4, DIMS(1, 1, 2, 2), VALS(6, 8, 16, 18));
  /* the index counts (n, c): second image, second channel; ties take the first */
  int32_t t = konst(g, KILN_F64, 3, DIMS(2, 2, 3), VALS(0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 1));
  kir_node *ti = pool(g, KIR_OP_MAX_POOL_INDICES, t, INTS(2));
  expect_run(g, fin(g, ti), KILN_I64, 3, DIMS(2, 2, 2), VALS(0, 1, 3, 4, 6, 7, 9, 10));
  /* padding is -inf (never the max); ints; NaN wins */
  int32_t xi = konst(g, KILN_I32, 3, DIMS(1, 1, 3), VALS(-5, -7, -9));
  kir_node *pi = pool(g, KIR_OP_MAX_POOL, xi, INTS(2));
  setis(g, pi, "pads", INTS(1, 1));
  expect_run(g, fin(g, pi), KILN_I32, 3, DIMS(1, 1, 4), VALS(-5, -5, -7, -9));
  int32_t xn = konst(g, KILN_F32, 3, DIMS(1, 1, 3), VALS(1, NAN, 2));
  kir_tensor *r = run1(g, fin(g, pool(g, KIR_OP_MAX_POOL, xn, INTS(2))));
  assert_true(isnan(((float *)r->data)[0]) && isnan(((float *)r->data)[1]));
  kir_tensor_free(r);
  /* ceil mode drops a window that would start in the end padding: 4 + pad 1, kernel 2,
   * stride 2 gives 2 windows, not 3 */
  int32_t x4 = konst(g, KILN_F32, 3, DIMS(1, 1, 4), VALS(1, 2, 3, 4));
  kir_node *cm = pool(g, KIR_OP_MAX_POOL, x4, INTS(2));
  setis(g, cm, "strides", INTS(2));
  setis(g, cm, "pads", INTS(0, 1));
  seti(g, cm, "ceil_mode", 1);
  expect_run(g, fin(g, cm), KILN_F32, 3, DIMS(1, 1, 2), VALS(2, 4));
  /* ceil mode rounding up: 5, kernel 2, stride 2 -> 3 windows, the last one partial */
  int32_t x5b = konst(g, KILN_F32, 3, DIMS(1, 1, 5), VALS(1, 2, 3, 4, 5));
  kir_node *cu = pool(g, KIR_OP_MAX_POOL, x5b, INTS(2));
  setis(g, cu, "strides", INTS(2));
  seti(g, cu, "ceil_mode", 1);
  expect_run(g, fin(g, cu), KILN_F32, 3, DIMS(1, 1, 3), VALS(2, 4, 5));
  /* 3D */
  int32_t x3 = konst_own(g, iota(KILN_F64, 5, DIMS(1, 1, 2, 2, 2), 0));
  expect_run(g, fin(g, pool(g, KIR_OP_MAX_POOL, x3, INTS(2, 2, 2))), KILN_F64, 5,
             DIMS(1, 1, 1, 1, 1), VALS(7));
  kir_graph_destroy(g);
}

static void test_avg_pool(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst_own(g, iota(KILN_F32, 4, DIMS(1, 1, 4, 4), 1));
  kir_node *c = pool(g, KIR_OP_AVG_POOL, x, INTS(3, 3));
  setis(g, c, "strides", INTS(2, 2));
  seti(g, c, "ceil_mode", 1);
  expect_run(g, fin(g, c), KILN_F32, 4, DIMS(1, 1, 2, 2), VALS(6, 7.5, 12, 13.5));
  int32_t x3 = konst_own(g, iota(KILN_F64, 4, DIMS(1, 1, 3, 3), 1));
  kir_node *ex = pool(g, KIR_OP_AVG_POOL, x3, INTS(2, 2));
  setis(g, ex, "pads", INTS(1, 1, 1, 1));
  expect_run(g, fin(g, ex), KILN_F64, 4, DIMS(1, 1, 4, 4),
             VALS(1, 1.5, 2.5, 3, 2.5, 3, 4, 4.5, 5.5, 6, 7, 7.5, 7, 7.5, 8.5, 9));
  kir_node *in = pool(g, KIR_OP_AVG_POOL, x3, INTS(2, 2));
  setis(g, in, "pads", INTS(1, 1, 1, 1));
  seti(g, in, "count_include_pad", 1);
  expect_run(g, fin(g, in), KILN_F64, 4, DIMS(1, 1, 4, 4),
             VALS(0.25, 0.75, 1.25, 0.75, 1.25, 3, 4, 2.25, 2.75, 6, 7, 3.75, 1.75, 3.75, 4.25, 2.25));
  /* count_include_pad with ceil mode: taps beyond the end pad do not count */
  int32_t x5 = konst(g, KILN_F32, 3, DIMS(1, 1, 5), VALS(1, 2, 3, 4, 5));
  kir_node *ci = pool(g, KIR_OP_AVG_POOL, x5, INTS(3));
  setis(g, ci, "strides", INTS(2));
  setis(g, ci, "pads", INTS(1, 0));
  seti(g, ci, "ceil_mode", 1);
  seti(g, ci, "count_include_pad", 1);
  /* windows [-1..1], [1..3], [3..5] (5 is past the end, unpadded): 3/3, 9/3, 9/2 */
  expect_run(g, fin(g, ci), KILN_F32, 3, DIMS(1, 1, 3), VALS(1, 3, 4.5));
  kir_node *cx = pool(g, KIR_OP_AVG_POOL, x5, INTS(3));
  setis(g, cx, "strides", INTS(2));
  setis(g, cx, "pads", INTS(1, 0));
  seti(g, cx, "ceil_mode", 1);
  expect_run(g, fin(g, cx), KILN_F32, 3, DIMS(1, 1, 3), VALS(1.5, 3, 4.5));
  int32_t xi = konst(g, KILN_I32, 3, DIMS(1, 1, 2), VALS(1, 2));
  infer_fails(g, pool(g, KIR_OP_AVG_POOL, xi, INTS(1)), KILN_ERR_TYPE, "f32 or f64");
  kir_graph_destroy(g);
}

/* avg_pool whose kernel covers every spatial dim equals reduce_mean over them. */
static void test_global_avg_pool(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *t = mk(KILN_F64, 4, DIMS(2, 3, 4, 5), NULL);
  kt_fill(t, 9, -2, 2);
  int32_t x = konst_t(g, t);
  int32_t ap = fin(g, pool(g, KIR_OP_AVG_POOL, x, INTS(4, 5)));
  kir_node *rm = node(g, KIR_OP_REDUCE_MEAN, 1, &x);
  setis(g, rm, "axes", INTS(2, 3));
  seti(g, rm, "keep_dims", 1);
  expect_same(g, ap, fin(g, rm));
  kir_tensor_free(t);
  kir_graph_destroy(g);
}

static void test_pool_errors(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 4, DIMS(1, 1, 4, 4), NULL);
  kir_node *n;
  infer_fails(g, pool(g, KIR_OP_MAX_POOL, x, INTS(2)), KILN_ERR_GRAPH,
              "attribute 'kernel' has 1 entries, expected 2");
  infer_fails(g, pool(g, KIR_OP_AVG_POOL, x, INTS(2, 0)), KILN_ERR_GRAPH,
              "attribute 'kernel' entry 1 is 0");
  infer_fails(g, node(g, KIR_OP_MAX_POOL, 1, &x), KILN_ERR_GRAPH, "kernel");
  n = pool(g, KIR_OP_MAX_POOL, x, INTS(2, 2)), setis(g, n, "strides", INTS(0, 1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'strides' entry 0 is 0");
  n = pool(g, KIR_OP_MAX_POOL_INDICES, x, INTS(2, 2)), setis(g, n, "dilations", INTS(1, -1));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'dilations' entry 1 is -1");
  n = pool(g, KIR_OP_AVG_POOL, x, INTS(2, 2)), setis(g, n, "pads", INTS(0, 0, 0));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'pads' has 3 entries, expected 4");
  n = pool(g, KIR_OP_AVG_POOL, x, INTS(2, 2)), setis(g, n, "pads", INTS(0, -1, 0, 0));
  infer_fails(g, n, KILN_ERR_GRAPH, "attribute 'pads' entry 1 is -1");
  n = pool(g, KIR_OP_MAX_POOL, x, INTS(2, 2)), setis(g, n, "pads", INTS(0, 2, 0, 0));
  infer_fails(g, n, KILN_ERR_GRAPH, "must be smaller than the kernel (2)");
  n = pool(g, KIR_OP_MAX_POOL, x, INTS(5, 1));
  infer_fails(g, n, KILN_ERR_SHAPE, "kernel extent 5");
  n = pool(g, KIR_OP_MAX_POOL, x, INTS(2, 2)), seti(g, n, "ceil_mode", 2);
  infer_fails(g, n, KILN_ERR_GRAPH, "'ceil_mode' must be 0 or 1, got 2");
  n = pool(g, KIR_OP_AVG_POOL, x, INTS(2, 2)), seti(g, n, "count_include_pad", -1);
  infer_fails(g, n, KILN_ERR_GRAPH, "'count_include_pad' must be 0 or 1");
  n = pool(g, KIR_OP_MAX_POOL_INDICES, x, INTS(2, 2)), seti(g, n, "storage_order", 3);
  infer_fails(g, n, KILN_ERR_GRAPH, "'storage_order' must be 0 or 1");
  /* dilation 3, pad 1 on a size-1 dim: the only window holds padding and nothing else */
  int32_t x1 = konst(g, KILN_F32, 3, DIMS(1, 1, 1), NULL);
  n = pool(g, KIR_OP_MAX_POOL, x1, INTS(2)), setis(g, n, "pads", INTS(1, 1)),
  setis(g, n, "dilations", INTS(2));
  infer_fails(g, n, KILN_ERR_SHAPE, "covers only padding");
  int32_t xz = konst(g, KILN_F32, 3, DIMS(1, 1, 0), NULL);
  n = pool(g, KIR_OP_MAX_POOL, xz, INTS(2)), setis(g, n, "pads", INTS(1, 1));
  infer_fails(g, n, KILN_ERR_SHAPE, "spatial dim 0 of f32[1,1,0] is 0");
  int32_t x2 = konst(g, KILN_F32, 2, DIMS(4, 4), NULL);
  infer_fails(g, pool(g, KIR_OP_MAX_POOL, x2, INTS(2)), KILN_ERR_SHAPE, "rank 3 to 5");
  int32_t xb = konst(g, KILN_BOOL, 3, DIMS(1, 1, 4), NULL);
  infer_fails(g, pool(g, KIR_OP_MAX_POOL, xb, INTS(2)), KILN_ERR_TYPE, "bool");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- batch_norm ---- */

static void test_batch_norm(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  /* ONNX example */
  int32_t x = konst(g, KILN_F32, 4, DIMS(1, 2, 1, 3), VALS(-1, 0, 1, 2, 3, 4));
  int32_t s = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 1.5));
  int32_t b = konst(g, KILN_F32, 1, DIMS(2), VALS(0, 1));
  int32_t m = konst(g, KILN_F32, 1, DIMS(2), VALS(0, 3));
  int32_t v = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 1.5));
  double k0 = 0.9999950000374997, k1 = 1.2247407889290967;
  expect_run(g, fin(g, node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x, s, b, m, v})), KILN_F32, 4,
             DIMS(1, 2, 1, 3), VALS(-k0, 0, k0, 1 - k1, 1, 1 + k1));
  kir_node *e = node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x, s, b, m, v});
  setf(g, e, "epsilon", 0.5);
  expect_run(g, fin(g, e), KILN_F32, 4, DIMS(1, 2, 1, 3),
             VALS(-1 / sqrt(1.5), 0, 1 / sqrt(1.5), 1 - 1.5 / sqrt(2), 1, 1 + 1.5 / sqrt(2)));
  int32_t x2 = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(1, 3, 5, 7));
  expect_run(g, fin(g, node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x2, s, b, m, v})), KILN_F32, 2,
             DIMS(2, 2), VALS(k0, 1, 5 * k0, 1 + 4 * k1));
  int32_t c3 = konst(g, KILN_F32, 1, DIMS(3), NULL);
  infer_fails(g, node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x, s, b, c3, v}), KILN_ERR_SHAPE,
              "input 3 is f32[3]; it must be [C] = [2]");
  int32_t x1 = konst(g, KILN_F32, 1, DIMS(2), NULL);
  infer_fails(g, node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x1, s, b, m, v}), KILN_ERR_SHAPE,
              "rank >= 2");
  int32_t d = konst(g, KILN_F64, 1, DIMS(2), NULL);
  infer_fails(g, node(g, KIR_OP_BATCH_NORM, 5, (int32_t[]){x, s, d, m, v}), KILN_ERR_TYPE,
              "dtypes differ");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- placeholder --- */

static void test_placeholder_default(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *dv = mk(KILN_F32, 1, DIMS(3), VALS(1, 2, 3));
  kir_node *p = node(g, KIR_OP_PLACEHOLDER, 0, NULL);
  seti(g, p, "dtype", KILN_F32);
  setis(g, p, "shape", INTS(3));
  assert_int_equal(kir_attr_set_tensor(g, p, "default", dv), KILN_OK);
  int32_t ph = fin(g, p);
  int32_t y = un(g, KIR_OP_NEG, ph);
  expect_run(g, y, KILN_F32, 1, DIMS(3), VALS(-1, -2, -3));
  /* a feed overrides the default */
  kir_tensor *fv = mk(KILN_F32, 1, DIMS(3), VALS(5, 6, 7)), *out = NULL;
  kir_feed f = {ph, fv};
  assert_int_equal(kir_interp_run(g, NULL, &f, 1, &y, 1, NULL, 0, &out), KILN_OK);
  expect(out, KILN_F32, 1, DIMS(3), VALS(-5, -6, -7));
  /* kir_eval_node still refuses placeholders */
  out = NULL;
  assert_int_equal(kir_eval_node(g, p, NULL, &out), KILN_ERR_UNSUPPORTED);
  assert_null(out);
  /* without a default an unfed placeholder is a feed error */
  kir_node *q = node(g, KIR_OP_PLACEHOLDER, 0, NULL);
  seti(g, q, "dtype", KILN_F32);
  setis(g, q, "shape", INTS(3));
  int32_t qy = un(g, KIR_OP_NEG, fin(g, q));
  expect_msg(g, kir_interp_run(g, NULL, NULL, 0, &qy, 1, NULL, 0, &out), KILN_ERR_FEED,
             "must be fed");
  /* the default must have the placeholder's dtype and shape */
  kir_node *bd = node(g, KIR_OP_PLACEHOLDER, 0, NULL);
  seti(g, bd, "dtype", KILN_F64);
  setis(g, bd, "shape", INTS(3));
  assert_int_equal(kir_attr_set_tensor(g, bd, "default", dv), KILN_OK);
  infer_fails(g, bd, KILN_ERR_TYPE, "attribute 'default' is f32[3], the placeholder is f64[3]");
  kir_node *bs = node(g, KIR_OP_PLACEHOLDER, 0, NULL);
  seti(g, bs, "dtype", KILN_F32);
  setis(g, bs, "shape", INTS(1, 3));
  assert_int_equal(kir_attr_set_tensor(g, bs, "default", dv), KILN_OK);
  infer_fails(g, bs, KILN_ERR_SHAPE, "attribute 'default' is f32[3], the placeholder is f32[1,3]");
  kir_tensor_free(dv);
  kir_tensor_free(fv);
  kir_graph_destroy(g);
}

/* Every new op's kernel refuses a stored type that is not what its inputs give. */
static void test_stale_type(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 3, DIMS(1, 1, 4), VALS(1, 2, 3, 4));
  kir_node *n = pool(g, KIR_OP_MAX_POOL, x, INTS(2));
  fin(g, n);
  n->type.dims[2] = 5;
  kir_tensor *out = NULL;
  const kir_tensor *in[1];
  kir_tensor *xv = run1(g, x);
  in[0] = xv;
  expect_msg(g, kir_eval_node(g, n, in, &out), KILN_ERR_SHAPE, "differs from the computed");
  assert_null(out);
  kir_tensor_free(xv);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_pow, setup),
      cmocka_unit_test_setup(test_abs, setup),
      cmocka_unit_test_setup(test_leaky_relu_erf_gelu, setup),
      cmocka_unit_test_setup(test_fused_epilogue_params, setup),
      cmocka_unit_test_setup(test_reduce_min, setup),
      cmocka_unit_test_setup(test_log_softmax, setup),
      cmocka_unit_test_setup(test_argmax_argmin, setup),
      cmocka_unit_test_setup(test_concat, setup),
      cmocka_unit_test_setup(test_slice, setup),
      cmocka_unit_test_setup(test_gather, setup),
      cmocka_unit_test_setup(test_cast, setup),
      cmocka_unit_test_setup(test_where, setup),
      cmocka_unit_test_setup(test_conv_onnx_examples, setup),
      cmocka_unit_test_setup(test_conv_1d_3d, setup),
      cmocka_unit_test_setup(test_conv_1x1_is_matmul, setup),
      cmocka_unit_test_setup(test_group_conv, setup),
      cmocka_unit_test_setup(test_fused_conv, setup),
      cmocka_unit_test_setup(test_conv_errors, setup),
      cmocka_unit_test_setup(test_conv_zero_size, setup),
      cmocka_unit_test_setup(test_max_pool, setup),
      cmocka_unit_test_setup(test_avg_pool, setup),
      cmocka_unit_test_setup(test_global_avg_pool, setup),
      cmocka_unit_test_setup(test_pool_errors, setup),
      cmocka_unit_test_setup(test_batch_norm, setup),
      cmocka_unit_test_setup(test_placeholder_default, setup),
      cmocka_unit_test_setup(test_stale_type, setup),
  };
  return cmocka_run_group_tests_name("ir_ops_onnx", tests, NULL, NULL);
}
