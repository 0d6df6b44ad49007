/* test_interp.c — the reference interpreter against hand-computed values: every op in
 * ops.def, broadcasting, matmul transposes and batches, reductions, the random generator
 * (against its documented algorithm), fused epilogues, variables and state, feeds and
 * fetches, and allocation failure at every allocation of a run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kt.h"

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define VALS(...) ((const double[]){__VA_ARGS__})
#define NVALS(...) (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double))

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

static void infer_ok(kir_graph *g, kir_node *n) {
  kiln_status s = kir_infer_node(g, n);
  if (s != KILN_OK) print_error("infer: %s\n", g->error);
  assert_int_equal(s, KILN_OK);
}

static int name_counter;
static const char *auto_name(void) {
  static char buf[32];
  snprintf(buf, sizeof buf, "n%d", name_counter++);
  return buf;
}

/* Adds a node with the given inputs; attributes are set by the caller, then fin(). */
static kir_node *node(kir_graph *g, kir_op op, const char *name, int n_in, const int32_t *in) {
  kir_node *n = kir_node_add(g, op, name ? name : auto_name(), in, n_in);
  assert_non_null(n);
  return n;
}

static int32_t fin(kir_graph *g, kir_node *n) {
  infer_ok(g, n);
  return n->id;
}

static int32_t konst_t(kir_graph *g, const char *name, const kir_tensor *t) {
  kir_node *n = node(g, KIR_OP_CONSTANT, name, 0, NULL);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
  return fin(g, n);
}

static int32_t konst(kir_graph *g, kiln_dtype dt, int rank, const int64_t *dims, const double *v) {
  kir_tensor *t = mk(dt, rank, dims, v);
  int32_t id = konst_t(g, NULL, t);
  kir_tensor_free(t);
  return id;
}

static int32_t un(kir_graph *g, kir_op op, int32_t x) {
  return fin(g, node(g, op, NULL, 1, (int32_t[]){x}));
}

static int32_t bin(kir_graph *g, kir_op op, int32_t a, int32_t b) {
  return fin(g, node(g, op, NULL, 2, (int32_t[]){a, b}));
}

static int32_t placeholder(kir_graph *g, const char *name, kiln_dtype dt, int rank,
                           const int64_t *dims) {
  kir_node *n = node(g, KIR_OP_PLACEHOLDER, name, 0, NULL);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", dt), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "shape", dims, rank), KILN_OK);
  return fin(g, n);
}

static kir_tensor *run1(kir_graph *g, int32_t fetch) {
  kir_tensor *out = NULL;
  kiln_status s = kir_interp_run(g, NULL, NULL, 0, &fetch, 1, NULL, 0, &out);
  if (s != KILN_OK) print_error("run: %s\n", g->error);
  assert_int_equal(s, KILN_OK);
  assert_non_null(out);
  return out;
}

/* Asserts got equals the hand-computed values (dtype tolerance) and frees got. */
static void expect(kir_tensor *got, kiln_dtype dt, int rank, const int64_t *dims, const double *v) {
  kir_tensor *want = mk(dt, rank, dims, v);
  kt_assert_close(got, want, kt_tolerance(dt));
  kir_tensor_free(want);
  kir_tensor_free(got);
}

static void expect_run(kir_graph *g, int32_t id, kiln_dtype dt, int rank, const int64_t *dims,
                       const double *v) {
  expect(run1(g, id), dt, rank, dims, v);
}

static void expect_error(kir_graph *g, kiln_status s, kiln_status want, const char *text) {
  if (s != want || !strstr(g->error, text))
    print_error("status %s, message \"%s\"; want %s with \"%s\"\n", kiln_status_name(s), g->error,
                kiln_status_name(want), text);
  assert_int_equal(s, want);
  assert_non_null(strstr(g->error, text));
}

/* Runs one fetch expecting failure: status, message, and no output written. */
static void run_fails(kir_graph *g, kir_state *st, const kir_feed *f, int nf, int32_t fetch,
                      kiln_status want, const char *text) {
  kir_tensor *sentinel = (kir_tensor *)&name_counter, *out = sentinel;
  expect_error(g, kir_interp_run(g, st, f, nf, &fetch, 1, NULL, 0, &out), want, text);
  assert_ptr_equal(out, sentinel);
}

static int setup(void **state) {
  (void)state;
  name_counter = 0;
  return 0;
}

/* ---------------------------------------------------------------- elementwise --- */

static void test_binary_f32(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 1, DIMS(4), VALS(1, -2, 3.5, 0));
  int32_t b = konst(g, KILN_F32, 1, DIMS(4), VALS(4, 5, -0.5, 2));
  expect_run(g, bin(g, KIR_OP_ADD, a, b), KILN_F32, 1, DIMS(4), VALS(5, 3, 3, 2));
  expect_run(g, bin(g, KIR_OP_SUB, a, b), KILN_F32, 1, DIMS(4), VALS(-3, -7, 4, -2));
  expect_run(g, bin(g, KIR_OP_MUL, a, b), KILN_F32, 1, DIMS(4), VALS(4, -10, -1.75, 0));
  expect_run(g, bin(g, KIR_OP_DIV, a, b), KILN_F32, 1, DIMS(4), VALS(0.25, -0.4, -7, 0));
  expect_run(g, bin(g, KIR_OP_MAXIMUM, a, b), KILN_F32, 1, DIMS(4), VALS(4, 5, 3.5, 2));
  expect_run(g, bin(g, KIR_OP_MINIMUM, a, b), KILN_F32, 1, DIMS(4), VALS(1, -2, -0.5, 0));
  kir_graph_destroy(g);
}

static void test_binary_f64(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F64, 2, DIMS(1, 2), VALS(1, 1e-300));
  int32_t b = konst(g, KILN_F64, 2, DIMS(1, 2), VALS(3, 1e300));
  expect_run(g, bin(g, KIR_OP_DIV, a, b), KILN_F64, 2, DIMS(1, 2), VALS(1.0 / 3.0, 0));
  expect_run(g, bin(g, KIR_OP_MUL, a, b), KILN_F64, 2, DIMS(1, 2), VALS(3, 1));
  kir_graph_destroy(g);
}

static void test_binary_int(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_I32, 1, DIMS(5), VALS(7, -7, 2147483647, -2147483648.0, 100000));
  int32_t b = konst(g, KILN_I32, 1, DIMS(5), VALS(2, 2, 1, -1, 100000));
  expect_run(g, bin(g, KIR_OP_DIV, a, b), KILN_I32, 1, DIMS(5),
             VALS(3, -3, 2147483647, -2147483648.0, 1));
  expect_run(g, bin(g, KIR_OP_ADD, a, b), KILN_I32, 1, DIMS(5),
             VALS(9, -5, -2147483648.0, 2147483647, 200000));
  /* 100000^2 = 10^10 wraps to 10^10 - 2^33 = 1410065408 */
  expect_run(g, bin(g, KIR_OP_MUL, a, b), KILN_I32, 1, DIMS(5),
             VALS(14, -14, 2147483647, -2147483648.0, 1410065408));
  expect_run(g, bin(g, KIR_OP_SUB, a, b), KILN_I32, 1, DIMS(5),
             VALS(5, -9, 2147483646, -2147483647, 0));
  expect_run(g, bin(g, KIR_OP_MAXIMUM, a, b), KILN_I32, 1, DIMS(5),
             VALS(7, 2, 2147483647, -1, 100000));
  expect_run(g, bin(g, KIR_OP_MINIMUM, a, b), KILN_I32, 1, DIMS(5),
             VALS(2, -7, 1, -2147483648.0, 100000));
  kir_graph_destroy(g);
}

static void test_binary_i64_wrap(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_tensor *ta = mk(KILN_I64, 1, DIMS(3), NULL), *tb = mk(KILN_I64, 1, DIMS(3), NULL);
  int64_t *pa = ta->data, *pb = tb->data;
  pa[0] = INT64_MAX; pb[0] = 1;
  pa[1] = INT64_MIN; pb[1] = -1;
  pa[2] = -9; pb[2] = 4;
  int32_t a = konst_t(g, "a", ta), b = konst_t(g, "b", tb);
  kir_tensor *s = run1(g, bin(g, KIR_OP_ADD, a, b)), *d = run1(g, bin(g, KIR_OP_DIV, a, b));
  assert_true(((int64_t *)s->data)[0] == INT64_MIN);
  assert_true(((int64_t *)s->data)[1] == INT64_MAX);
  assert_true(((int64_t *)d->data)[1] == INT64_MIN); /* INT64_MIN / -1 wraps */
  assert_true(((int64_t *)d->data)[2] == -2);        /* truncates toward zero */
  kir_tensor_free(s);
  kir_tensor_free(d);
  kir_tensor *m = run1(g, bin(g, KIR_OP_MUL, a, a));
  assert_true(((int64_t *)m->data)[0] == 1); /* (2^63-1)^2 mod 2^64 = 1 */
  assert_true(((int64_t *)m->data)[1] == 0); /* (-2^63)^2 mod 2^64 = 0 */
  kir_tensor_free(m);
  kir_tensor_free(ta);
  kir_tensor_free(tb);
  kir_graph_destroy(g);
}

static void test_int_division_by_zero(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_I32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  int32_t b = konst(g, KILN_I32, 1, DIMS(3), VALS(1, 1, 0));
  kir_node *d = node(g, KIR_OP_DIV, "layer/div", 2, (int32_t[]){a, b});
  long base = kir_alloc_live();
  run_fails(g, NULL, NULL, 0, fin(g, d), KILN_ERR_EXEC,
            "node 'layer/div': integer division by zero at element 2");
  assert_int_equal(kir_alloc_live(), base);
  kir_graph_destroy(g);
}

static void test_broadcast(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t m = konst(g, KILN_F32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  int32_t sc = konst(g, KILN_F32, 0, NULL, VALS(10));
  int32_t row = konst(g, KILN_F32, 1, DIMS(3), VALS(10, 20, 30));
  int32_t col = konst(g, KILN_F32, 2, DIMS(2, 1), VALS(100, 200));
  expect_run(g, bin(g, KIR_OP_ADD, m, sc), KILN_F32, 2, DIMS(2, 3), VALS(11, 12, 13, 14, 15, 16));
  expect_run(g, bin(g, KIR_OP_SUB, sc, m), KILN_F32, 2, DIMS(2, 3), VALS(9, 8, 7, 6, 5, 4));
  expect_run(g, bin(g, KIR_OP_MUL, m, row), KILN_F32, 2, DIMS(2, 3),
             VALS(10, 40, 90, 40, 100, 180));
  expect_run(g, bin(g, KIR_OP_ADD, col, m), KILN_F32, 2, DIMS(2, 3),
             VALS(101, 102, 103, 204, 205, 206));
  /* column [2,1] x row [3] -> outer sum [2,3] */
  expect_run(g, bin(g, KIR_OP_ADD, col, row), KILN_F32, 2, DIMS(2, 3),
             VALS(110, 120, 130, 210, 220, 230));
  /* 3-D: [2,1,3] + [4,1] -> [2,4,3] */
  int32_t x = konst(g, KILN_F64, 3, DIMS(2, 1, 3), VALS(0, 1, 2, 3, 4, 5));
  int32_t y = konst(g, KILN_F64, 2, DIMS(4, 1), VALS(0, 10, 20, 30));
  double want[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++) want[(i * 4 + j) * 3 + k] = (i * 3 + k) + 10 * j;
  expect_run(g, bin(g, KIR_OP_ADD, x, y), KILN_F64, 3, DIMS(2, 4, 3), want);
  kir_graph_destroy(g);
}

static void test_unary_float(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  const double v[4] = {0.5, -1.25, 2, 0};
  int32_t x = konst(g, KILN_F32, 1, DIMS(4), v), p = konst(g, KILN_F64, 1, DIMS(3), VALS(4, 0.25, 1));
  double w[4];
  for (int i = 0; i < 4; i++) w[i] = exp(v[i]);
  expect_run(g, un(g, KIR_OP_EXP, x), KILN_F32, 1, DIMS(4), w);
  for (int i = 0; i < 4; i++) w[i] = tanh(v[i]);
  expect_run(g, un(g, KIR_OP_TANH, x), KILN_F32, 1, DIMS(4), w);
  for (int i = 0; i < 4; i++) w[i] = 1 / (1 + exp(-v[i]));
  expect_run(g, un(g, KIR_OP_SIGMOID, x), KILN_F32, 1, DIMS(4), w);
  expect_run(g, un(g, KIR_OP_NEG, x), KILN_F32, 1, DIMS(4), VALS(-0.5, 1.25, -2, 0));
  expect_run(g, un(g, KIR_OP_RELU, x), KILN_F32, 1, DIMS(4), VALS(0.5, 0, 2, 0));
  expect_run(g, un(g, KIR_OP_SQRT, p), KILN_F64, 1, DIMS(3), VALS(2, 0.5, 1));
  expect_run(g, un(g, KIR_OP_LOG, p), KILN_F64, 1, DIMS(3), VALS(log(4.0), log(0.25), 0));
  expect_run(g, un(g, KIR_OP_SIGMOID, p), KILN_F64, 1, DIMS(3),
             VALS(1 / (1 + exp(-4.0)), 1 / (1 + exp(-0.25)), 1 / (1 + exp(-1.0))));
  kir_graph_destroy(g);
}

static int32_t clamp(kir_graph *g, int32_t x, double lo, double hi) {
  kir_node *n = node(g, KIR_OP_CLAMP, NULL, 1, (int32_t[]){x});
  if (!isnan(lo)) assert_int_equal(kir_attr_set_float(g, n, "min", lo), KILN_OK);
  if (!isnan(hi)) assert_int_equal(kir_attr_set_float(g, n, "max", hi), KILN_OK);
  return fin(g, n);
}

static void test_clamp(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F32, 1, DIMS(5), VALS(-3, -1, 0, 2, 7));
  expect_run(g, clamp(g, x, -1.5, 3), KILN_F32, 1, DIMS(5), VALS(-1.5, -1, 0, 2, 3));
  expect_run(g, clamp(g, x, 0, NAN), KILN_F32, 1, DIMS(5), VALS(0, 0, 0, 2, 7));
  expect_run(g, clamp(g, x, NAN, 1), KILN_F32, 1, DIMS(5), VALS(-3, -1, 0, 1, 1));
  expect_run(g, clamp(g, x, NAN, NAN), KILN_F32, 1, DIMS(5), VALS(-3, -1, 0, 2, 7));
  /* integers: x < 1.5 means x < 2, so the bound used is ceil(min) / floor(max) */
  int32_t i = konst(g, KILN_I32, 1, DIMS(5), VALS(-3, 1, 2, 5, 9));
  expect_run(g, clamp(g, i, 1.5, 5.5), KILN_I32, 1, DIMS(5), VALS(2, 2, 2, 5, 5));
  expect_run(g, clamp(g, i, -1e30, 1e30), KILN_I32, 1, DIMS(5), VALS(-3, 1, 2, 5, 9));
  kir_graph_destroy(g);
}

static void test_unary_int(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_I32, 1, DIMS(4), VALS(-2147483648.0, -5, 0, 6));
  expect_run(g, un(g, KIR_OP_NEG, x), KILN_I32, 1, DIMS(4), VALS(-2147483648.0, 5, 0, -6));
  expect_run(g, un(g, KIR_OP_RELU, x), KILN_I32, 1, DIMS(4), VALS(0, 0, 0, 6));
  int32_t y = konst(g, KILN_I64, 1, DIMS(2), VALS(-5, 6));
  expect_run(g, un(g, KIR_OP_NEG, y), KILN_I64, 1, DIMS(2), VALS(5, -6));
  kir_graph_destroy(g);
}

static void test_nan_propagation(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 1, DIMS(3), VALS(NAN, 1, NAN));
  int32_t b = konst(g, KILN_F32, 1, DIMS(3), VALS(1, NAN, NAN));
  int32_t ids[5] = {bin(g, KIR_OP_MAXIMUM, a, b), bin(g, KIR_OP_MINIMUM, b, a),
                    bin(g, KIR_OP_MAXIMUM, b, a), un(g, KIR_OP_RELU, a), clamp(g, a, 0, 0.5)};
  for (int k = 0; k < 5; k++) {
    kir_tensor *t = run1(g, ids[k]);
    int64_t n = kir_type_numel(&t->type);
    for (int64_t i = 0; i < n; i++) {
      bool any_nan = isnan(kir_tensor_get_f(t, i));
      bool want = k < 3 ? true : i != 1;
      assert_int_equal(any_nan, want);
    }
    kir_tensor_free(t);
  }
  assert_true(isnan(kir_apply_binary(KIR_OP_MAXIMUM, NAN, 1)));
  assert_true(isnan(kir_apply_binary(KIR_OP_MINIMUM, 1, NAN)));
  assert_true(isnan(kir_apply_unary(KIR_OP_CLAMP, NAN, 0, 1)));
  assert_true(kir_apply_unary(KIR_OP_CLAMP, 5, NAN, NAN) == 5);
  assert_true(isnan(kir_apply_unary(KIR_OP_MATMUL, 1, 0, 0))); /* not elementwise */
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- matmul -------- */

static int32_t matmul(kir_graph *g, kir_op op, int32_t a, int32_t b, int ta, int tb) {
  kir_node *n = node(g, op, NULL, 2, (int32_t[]){a, b});
  assert_int_equal(kir_attr_set_int(g, n, "transpose_a", ta), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, n, "transpose_b", tb), KILN_OK);
  return fin(g, n);
}

static void test_matmul_transposes(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  /* A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]: A@B = [[58,64],[139,154]] */
  int32_t a = konst(g, KILN_F32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  int32_t at = konst(g, KILN_F32, 2, DIMS(3, 2), VALS(1, 4, 2, 5, 3, 6));
  int32_t b = konst(g, KILN_F32, 2, DIMS(3, 2), VALS(7, 8, 9, 10, 11, 12));
  int32_t bt = konst(g, KILN_F32, 2, DIMS(2, 3), VALS(7, 9, 11, 8, 10, 12));
  const double *want = VALS(58, 64, 139, 154);
  expect_run(g, matmul(g, KIR_OP_MATMUL, a, b, 0, 0), KILN_F32, 2, DIMS(2, 2), want);
  expect_run(g, matmul(g, KIR_OP_MATMUL, at, b, 1, 0), KILN_F32, 2, DIMS(2, 2), want);
  expect_run(g, matmul(g, KIR_OP_MATMUL, a, bt, 0, 1), KILN_F32, 2, DIMS(2, 2), want);
  expect_run(g, matmul(g, KIR_OP_MATMUL, at, bt, 1, 1), KILN_F32, 2, DIMS(2, 2), want);
  int32_t ai = konst(g, KILN_I32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  int32_t bi = konst(g, KILN_I32, 2, DIMS(2, 3), VALS(7, 9, 11, 8, 10, 12));
  expect_run(g, matmul(g, KIR_OP_MATMUL, ai, bi, 0, 1), KILN_I32, 2, DIMS(2, 2), want);
  int32_t ad = konst(g, KILN_F64, 2, DIMS(3, 2), VALS(1, 4, 2, 5, 3, 6));
  int32_t bd = konst(g, KILN_F64, 2, DIMS(3, 2), VALS(7, 8, 9, 10, 11, 12));
  expect_run(g, matmul(g, KIR_OP_MATMUL, ad, bd, 1, 0), KILN_F64, 2, DIMS(2, 2), want);
  kir_graph_destroy(g);
}

static void test_matmul_batched(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  /* [2,2,2] @ [2,2]: batch 0 is I, batch 1 is 2I, B = [[1,2],[3,4]] */
  int32_t a = konst(g, KILN_F32, 3, DIMS(2, 2, 2), VALS(1, 0, 0, 1, 2, 0, 0, 2));
  int32_t b = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(1, 2, 3, 4));
  expect_run(g, matmul(g, KIR_OP_MATMUL, a, b, 0, 0), KILN_F32, 3, DIMS(2, 2, 2),
             VALS(1, 2, 3, 4, 2, 4, 6, 8));
  /* batch broadcast [2,1,1,2] @ [3,2,1] -> [2,3,1,1]: a[i]·b[j] */
  int32_t x = konst(g, KILN_F64, 4, DIMS(2, 1, 1, 2), VALS(1, 2, 3, 4));
  int32_t y = konst(g, KILN_F64, 3, DIMS(3, 2, 1), VALS(1, 1, 10, 0, 0, 100));
  expect_run(g, matmul(g, KIR_OP_MATMUL, x, y, 0, 0), KILN_F64, 4, DIMS(2, 3, 1, 1),
             VALS(3, 10, 200, 7, 30, 400));
  kir_graph_destroy(g);
}

static void test_add_n(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 2)), b = konst(g, KILN_F32, 1, DIMS(2), VALS(10, 20));
  expect_run(g, fin(g, node(g, KIR_OP_ADD_N, NULL, 3, (int32_t[]){a, b, a})), KILN_F32, 1,
             DIMS(2), VALS(12, 24));
  int32_t c = konst(g, KILN_I32, 1, DIMS(2), VALS(2147483647, 3));
  expect_run(g, fin(g, node(g, KIR_OP_ADD_N, NULL, 2, (int32_t[]){c, c})), KILN_I32, 1, DIMS(2),
             VALS(-2, 6));
  expect_run(g, fin(g, node(g, KIR_OP_ADD_N, NULL, 1, (int32_t[]){c})), KILN_I32, 1, DIMS(2),
             VALS(2147483647, 3));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- reductions ---- */

static int32_t reduce(kir_graph *g, kir_op op, int32_t x, const int64_t *axes, int n_axes, int keep) {
  kir_node *n = node(g, op, NULL, 1, (int32_t[]){x});
  if (axes) assert_int_equal(kir_attr_set_ints(g, n, "axes", axes, n_axes), KILN_OK);
  if (keep >= 0) assert_int_equal(kir_attr_set_int(g, n, "keep_dims", keep), KILN_OK);
  return fin(g, n);
}

static void test_reductions(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  double v[24];
  for (int i = 0; i < 24; i++) v[i] = i; /* x[i][j][k] = 12i + 4j + k, shape [2,3,4] */
  int32_t x = konst(g, KILN_F32, 3, DIMS(2, 3, 4), v);
  expect_run(g, reduce(g, KIR_OP_REDUCE_SUM, x, DIMS(0), 1, -1), KILN_F32, 2, DIMS(3, 4),
             VALS(12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34));
  expect_run(g, reduce(g, KIR_OP_REDUCE_SUM, x, DIMS(-1), 1, 0), KILN_F32, 2, DIMS(2, 3),
             VALS(6, 22, 38, 54, 70, 86));
  expect_run(g, reduce(g, KIR_OP_REDUCE_SUM, x, DIMS(2, 0), 2, 1), KILN_F32, 3, DIMS(1, 3, 1),
             VALS(60, 92, 124));
  expect_run(g, reduce(g, KIR_OP_REDUCE_SUM, x, NULL, 0, -1), KILN_F32, 0, NULL, VALS(276));
  expect_run(g, reduce(g, KIR_OP_REDUCE_MEAN, x, NULL, 0, 1), KILN_F32, 3, DIMS(1, 1, 1),
             VALS(11.5));
  expect_run(g, reduce(g, KIR_OP_REDUCE_MEAN, x, DIMS(1), 1, 0), KILN_F32, 2, DIMS(2, 4),
             VALS(4, 5, 6, 7, 16, 17, 18, 19));
  expect_run(g, reduce(g, KIR_OP_REDUCE_MAX, x, DIMS(-3, -2), 2, 0), KILN_F32, 1, DIMS(4),
             VALS(20, 21, 22, 23));
  int32_t xd = konst(g, KILN_F64, 3, DIMS(2, 3, 4), v);
  expect_run(g, reduce(g, KIR_OP_REDUCE_MEAN, xd, DIMS(0, 1, 2), 3, 0), KILN_F64, 0, NULL,
             VALS(11.5));
  int32_t xi = konst(g, KILN_I32, 2, DIMS(2, 3), VALS(-5, 7, 2147483647, -9, -1, 1));
  expect_run(g, reduce(g, KIR_OP_REDUCE_MAX, xi, DIMS(1), 1, 1), KILN_I32, 2, DIMS(2, 1),
             VALS(2147483647, 1));
  expect_run(g, reduce(g, KIR_OP_REDUCE_SUM, xi, DIMS(1), 1, 0), KILN_I32, 1, DIMS(2),
             VALS(-2147483647, -9)); /* 2147483649 wraps */
  kir_tensor *big = mk(KILN_I64, 1, DIMS(2), NULL);
  ((int64_t *)big->data)[0] = INT64_MAX - 1;
  ((int64_t *)big->data)[1] = INT64_MAX;
  int32_t xl = konst_t(g, "big", big);
  kir_tensor *m = run1(g, reduce(g, KIR_OP_REDUCE_MAX, xl, NULL, 0, -1));
  assert_true(((int64_t *)m->data)[0] == INT64_MAX); /* exact, not through double */
  kir_tensor_free(m);
  kir_tensor_free(big);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- nn, shape ----- */

static int32_t softmax(kir_graph *g, int32_t x, int axis) {
  kir_node *n = node(g, KIR_OP_SOFTMAX, NULL, 1, (int32_t[]){x});
  assert_int_equal(kir_attr_set_int(g, n, "axis", axis), KILN_OK);
  return fin(g, n);
}

static void test_softmax(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  double e1 = exp(-2.0), e2 = exp(-1.0), z = 1 + e1 + e2;
  int32_t x = konst(g, KILN_F32, 2, DIMS(2, 3), VALS(1, 2, 3, 1000, 1001, 1002));
  expect_run(g, softmax(g, x, -1), KILN_F32, 2, DIMS(2, 3),
             VALS(e1 / z, e2 / z, 1 / z, e1 / z, e2 / z, 1 / z));
  double s = 1 + exp(-999.0);
  expect_run(g, softmax(g, x, 0), KILN_F32, 2, DIMS(2, 3),
             VALS(exp(-999.0) / s, exp(-999.0) / s, exp(-999.0) / s, 1 / s, 1 / s, 1 / s));
  double v[60];
  for (int i = 0; i < 60; i++) v[i] = sin(i * 1.7) * 5;
  kir_tensor *t = run1(g, softmax(g, konst(g, KILN_F64, 3, DIMS(3, 4, 5), v), 1));
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 5; k++) {
      double sum = 0;
      for (int j = 0; j < 4; j++) sum += ((double *)t->data)[(i * 4 + j) * 5 + k];
      assert_true(fabs(sum - 1) < 1e-12);
    }
  kir_tensor_free(t);
  kir_graph_destroy(g);
}

static void test_reshape_transpose_identity(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_I32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  kir_node *r = node(g, KIR_OP_RESHAPE, NULL, 1, (int32_t[]){x});
  assert_int_equal(kir_attr_set_ints(g, r, "shape", DIMS(-1, 2), 2), KILN_OK);
  expect_run(g, fin(g, r), KILN_I32, 2, DIMS(3, 2), VALS(1, 2, 3, 4, 5, 6));
  /* default perm reverses the axes */
  expect_run(g, un(g, KIR_OP_TRANSPOSE, x), KILN_I32, 2, DIMS(3, 2), VALS(1, 4, 2, 5, 3, 6));
  expect_run(g, un(g, KIR_OP_IDENTITY, x), KILN_I32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  kir_node *tr = node(g, KIR_OP_TRANSFER, NULL, 1, (int32_t[]){x});
  assert_int_equal(kir_attr_set_string(g, tr, "device", "cuda:0"), KILN_OK);
  expect_run(g, fin(g, tr), KILN_I32, 2, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
  double v[24], w[24];
  for (int i = 0; i < 24; i++) v[i] = i;
  /* out[c][a][b] = in[a][b][c] for in [2,3,4], perm (2,0,1) -> out [4,2,3] */
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 4; c++) w[(c * 2 + a) * 3 + b] = v[(a * 3 + b) * 4 + c];
  kir_node *t = node(g, KIR_OP_TRANSPOSE, NULL, 1,
                     (int32_t[]){konst(g, KILN_F32, 3, DIMS(2, 3, 4), v)});
  assert_int_equal(kir_attr_set_ints(g, t, "perm", DIMS(2, 0, 1), 3), KILN_OK);
  expect_run(g, fin(g, t), KILN_F32, 3, DIMS(4, 2, 3), w);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- random -------- */

static int32_t random_node(kir_graph *g, kir_op op, kiln_dtype dt, int64_t n, int64_t seed,
                           double a, double b) {
  kir_node *r = node(g, op, NULL, 0, NULL);
  bool normal = op == KIR_OP_RANDOM_NORMAL;
  assert_int_equal(kir_attr_set_int(g, r, "dtype", dt), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, r, "shape", &n, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, r, "seed", seed), KILN_OK);
  if (!isnan(a)) assert_int_equal(kir_attr_set_float(g, r, normal ? "mean" : "low", a), KILN_OK);
  if (!isnan(b)) assert_int_equal(kir_attr_set_float(g, r, normal ? "stddev" : "high", b), KILN_OK);
  return fin(g, r);
}

static void moments(const kir_tensor *t, double *mean, double *sd, double *lo, double *hi) {
  int64_t n = kir_type_numel(&t->type);
  double s = 0, s2 = 0;
  *lo = INFINITY;
  *hi = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double v = kir_tensor_get_f(t, i);
    s += v;
    *lo = fmin(*lo, v);
    *hi = fmax(*hi, v);
  }
  *mean = s / (double)n;
  for (int64_t i = 0; i < n; i++) s2 += pow(kir_tensor_get_f(t, i) - *mean, 2);
  *sd = sqrt(s2 / (double)(n - 1));
}

static void test_random_statistics(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  const int64_t n = 100000;
  double mean, sd, lo, hi;
  kir_tensor *t = run1(g, random_node(g, KIR_OP_RANDOM_NORMAL, KILN_F32, n, 7, 2, 3));
  moments(t, &mean, &sd, &lo, &hi);
  /* standard error of the mean 3/sqrt(n) ~ 0.0095; of the sd ~ 3/sqrt(2n) ~ 0.0067 */
  assert_true(fabs(mean - 2) < 5 * 0.0095);
  assert_true(fabs(sd - 3) < 5 * 0.0067);
  kir_tensor_free(t);
  t = run1(g, random_node(g, KIR_OP_RANDOM_UNIFORM, KILN_F64, n, 8, -1, 3));
  moments(t, &mean, &sd, &lo, &hi);
  /* uniform on [-1,3): mean 1, sd 4/sqrt(12) ~ 1.1547 */
  assert_true(fabs(mean - 1) < 5 * 1.1547 / sqrt((double)n));
  assert_true(fabs(sd - 4 / sqrt(12.0)) < 0.01);
  assert_true(lo >= -1 && hi < 3 && lo < -0.99 && hi > 2.99);
  kir_tensor_free(t);
  /* defaults: mean 0, stddev 1; low 0, high 1 */
  t = run1(g, random_node(g, KIR_OP_RANDOM_NORMAL, KILN_F64, n, 9, NAN, NAN));
  moments(t, &mean, &sd, &lo, &hi);
  assert_true(fabs(mean) < 5 / sqrt((double)n) && fabs(sd - 1) < 5 / sqrt(2.0 * n));
  kir_tensor_free(t);
  t = run1(g, random_node(g, KIR_OP_RANDOM_UNIFORM, KILN_F32, n, 9, NAN, NAN));
  moments(t, &mean, &sd, &lo, &hi);
  assert_true(fabs(mean - 0.5) < 0.005 && lo >= 0 && hi <= 1);
  kir_tensor_free(t);
  kir_graph_destroy(g);
}

static void test_random_determinism(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = random_node(g, KIR_OP_RANDOM_NORMAL, KILN_F32, 101, 42, 0, 1);
  int32_t b = random_node(g, KIR_OP_RANDOM_NORMAL, KILN_F32, 101, 42, 0, 1);
  int32_t c = random_node(g, KIR_OP_RANDOM_NORMAL, KILN_F32, 101, 43, 0, 1);
  kir_tensor *ta = run1(g, a), *ta2 = run1(g, a), *tb = run1(g, b), *tc = run1(g, c);
  assert_memory_equal(ta->data, ta2->data, 101 * sizeof(float));
  assert_memory_equal(ta->data, tb->data, 101 * sizeof(float));
  int differ = 0;
  for (int i = 0; i < 101; i++) differ += ((float *)ta->data)[i] != ((float *)tc->data)[i];
  assert_true(differ > 95);
  kir_tensor_free(ta);
  kir_tensor_free(ta2);
  kir_tensor_free(tb);
  kir_tensor_free(tc);
  kir_graph_destroy(g);
}

/* The documented algorithm, re-implemented from the comment in kir_kernels.c. */
static uint64_t doc_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double doc_u(uint64_t *s) { return (double)(doc_next(s) >> 11) / 9007199254740992.0; }

static void test_random_matches_documentation(void **state) {
  (void)state;
  kir_tensor *u = mk(KILN_F64, 1, DIMS(5), NULL), *n = mk(KILN_F64, 1, DIMS(5), NULL);
  kir_random_fill(u, KIR_OP_RANDOM_UNIFORM, 12345, -2, 6);
  kir_random_fill(n, KIR_OP_RANDOM_NORMAL, 12345, 1, 0.5);
  uint64_t s = 12345;
  for (int i = 0; i < 5; i++) assert_true(((double *)u->data)[i] == -2 + 8 * doc_u(&s));
  s = 12345;
  for (int i = 0; i < 5; i += 2) {
    double u1 = doc_u(&s), u2 = doc_u(&s), r = sqrt(-2 * log(1 - u1));
    double th = 2 * 3.14159265358979323846 * u2;
    assert_true(((double *)n->data)[i] == 1 + 0.5 * r * cos(th));
    if (i + 1 < 5) assert_true(((double *)n->data)[i + 1] == 1 + 0.5 * r * sin(th));
  }
  /* f32 values are the f64 values rounded */
  kir_tensor *f = mk(KILN_F32, 1, DIMS(5), NULL);
  kir_random_fill(f, KIR_OP_RANDOM_NORMAL, 12345, 1, 0.5);
  for (int i = 0; i < 5; i++) assert_true(((float *)f->data)[i] == (float)((double *)n->data)[i]);
  kir_tensor_free(u);
  kir_tensor_free(n);
  kir_tensor_free(f);
}

/* ---------------------------------------------------------------- fused --------- */

/* fused_matmul(A, B, bias, c) with epilogue: add bias, relu, c - acc (swapped), clamp. */
static kir_node *fused(kir_graph *g, int32_t a, int32_t b, int32_t bias, int32_t c) {
  kir_node *f = node(g, KIR_OP_FUSED_MATMUL, NULL, 4, (int32_t[]){a, b, bias, c});
  const int64_t ops[4] = {KIR_OP_ADD, KIR_OP_RELU, KIR_OP_SUB, KIR_OP_CLAMP};
  const char *from[1] = {"mm"};
  assert_int_equal(kir_attr_set_int(g, f, "transpose_b", 1), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, f, "epilogue", ops, 4), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, f, "operand", DIMS(2, -1, 3, -1), 4), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, f, "swap", DIMS(0, 0, 1, 0), 4), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_min", VALS(NAN, NAN, NAN, -0.75), 4), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, f, "clamp_max", VALS(NAN, NAN, NAN, NAN), 4), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, f, "fused_from", from, 1), KILN_OK);
  return f;
}

static void test_fused_matmul(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  double va[12], vb[20], vbias[5] = {0.5, -1, 2, -3, 0.25}, vc[4] = {1, -2, 0.5, 3};
  for (int i = 0; i < 12; i++) va[i] = sin(i + 1.0);
  for (int i = 0; i < 20; i++) vb[i] = cos(i * 0.7);
  int32_t a = konst(g, KILN_F32, 2, DIMS(4, 3), va), b = konst(g, KILN_F32, 2, DIMS(5, 3), vb);
  int32_t bias = konst(g, KILN_F32, 1, DIMS(5), vbias), c = konst(g, KILN_F32, 2, DIMS(4, 1), vc);
  int32_t f = fin(g, fused(g, a, b, bias, c));
  int32_t mm = matmul(g, KIR_OP_MATMUL, a, b, 0, 1);
  int32_t chain = clamp(g, bin(g, KIR_OP_SUB, c, un(g, KIR_OP_RELU, bin(g, KIR_OP_ADD, mm, bias))),
                        -0.75, NAN);
  kir_tensor *tf = run1(g, f), *tu = run1(g, chain);
  assert_true(kt_rel_error(tf, tu) == 0); /* rounded after every step, like the chain */
  kir_tensor_free(tf);
  kir_tensor_free(tu);
  kir_graph_destroy(g);
}

static void test_epilogue_errors(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 2, DIMS(2, 2), VALS(1, 2, 3, 4));
  kir_node *f = fused(g, a, a, a, a);
  kir_epilogue e;
  assert_int_equal(kir_epilogue_get(g, f, &e), KILN_OK);
  assert_int_equal(e.n, 4);
  assert_int_equal(e.op[3], KIR_OP_CLAMP);
  assert_true(e.clamp_min[3] == -0.75);
  assert_int_equal(kir_attr_set_ints(g, f, "swap", DIMS(0, 0, 2, 0), 4), KILN_OK);
  expect_error(g, kir_epilogue_get(g, f, &e), KILN_ERR_GRAPH, "step 2 (sub): swap 2");
  assert_int_equal(kir_attr_set_ints(g, f, "swap", DIMS(0, 0, 1, 0), 4), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, f, "operand", DIMS(2, -1, 4, -1), 4), KILN_OK);
  expect_error(g, kir_epilogue_get(g, f, &e), KILN_ERR_GRAPH, "step 2 (sub): operand 4 not in [2, 4)");
  assert_int_equal(kir_attr_set_ints(g, f, "operand", DIMS(2, 3, 3, -1), 4), KILN_OK);
  expect_error(g, kir_epilogue_get(g, f, &e), KILN_ERR_GRAPH, "step 1 (relu)");
  assert_int_equal(kir_attr_set_ints(g, f, "operand", DIMS(2, -1, 3, -1), 4), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, f, "epilogue", DIMS(KIR_OP_ADD, KIR_OP_MATMUL,
                                                           KIR_OP_SUB, KIR_OP_CLAMP), 4), KILN_OK);
  expect_error(g, kir_epilogue_get(g, f, &e), KILN_ERR_GRAPH, "step 1: op 20 is not an elementwise");
  assert_int_equal(kir_attr_set_ints(g, f, "epilogue", DIMS(KIR_OP_ADD, KIR_OP_RELU), 2), KILN_OK);
  expect_error(g, kir_epilogue_get(g, f, &e), KILN_ERR_GRAPH, "counts differ");
  assert_non_null(strstr(g->error, f->name));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- state --------- */

static void test_state_set_get(void **state) {
  (void)state;
  long base = kir_alloc_live();
  kir_state *s = kir_state_create();
  kir_tensor *v = mk(KILN_F32, 1, DIMS(2), VALS(1, 2));
  assert_null(kir_state_get(s, "w"));
  assert_int_equal(kir_state_set(s, "w", v), KILN_OK);
  put(v, 0, 99); /* the state holds a copy */
  assert_true(kir_tensor_get_f(kir_state_get(s, "w"), 0) == 1);
  assert_int_equal(kir_state_set(s, "w", v), KILN_OK);
  assert_true(kir_tensor_get_f(kir_state_get(s, "w"), 0) == 99);
  for (int i = 0; i < 20; i++) {
    char name[16];
    snprintf(name, sizeof name, "v%d", i);
    assert_int_equal(kir_state_set(s, name, v), KILN_OK);
  }
  assert_non_null(kir_state_get(s, "v19"));
  assert_int_equal(kir_state_set(s, NULL, v), KILN_ERR_ARGUMENT);
  kir_alloc_fail_after(0);
  assert_int_equal(kir_state_set(s, "new", v), KILN_ERR_NOMEM);
  kir_alloc_fail_after(-1);
  assert_null(kir_state_get(s, "new"));
  kir_tensor_free(v);
  kir_state_destroy(s);
  kir_state_destroy(NULL);
  assert_int_equal(kir_alloc_live(), base);
}

static void test_variables(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t init = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 2));
  int32_t one = konst(g, KILN_F32, 0, NULL, VALS(1));
  int32_t w = fin(g, node(g, KIR_OP_VARIABLE, "w", 1, (int32_t[]){init}));
  int32_t init_w = fin(g, node(g, KIR_OP_ASSIGN, "init_w", 2, (int32_t[]){w, init}));
  int32_t inc = bin(g, KIR_OP_ADD, w, one);
  int32_t step = fin(g, node(g, KIR_OP_ASSIGN, "step", 2, (int32_t[]){w, inc}));
  kir_state *st = kir_state_create();
  run_fails(g, st, NULL, 0, w, KILN_ERR_STATE, "variable 'w' is read before it is initialized");
  run_fails(g, NULL, NULL, 0, w, KILN_ERR_STATE, "variable 'w'");
  run_fails(g, NULL, NULL, 0, init_w, KILN_ERR_STATE, "node 'init_w'");
  /* assigning does not read the variable */
  assert_int_equal(kir_interp_run(g, st, NULL, 0, NULL, 0, &init_w, 1, NULL), KILN_OK);
  kir_tensor *want = mk(KILN_F32, 1, DIMS(2), VALS(1, 2));
  kt_assert_close(kir_state_get(st, "w"), want, 0);
  kir_tensor_free(want);
  /* one run: w is read (old value) before step stores w + 1, in node order */
  int32_t fetch[2] = {w, step};
  kir_tensor *out[2] = {NULL, NULL};
  assert_int_equal(kir_interp_run(g, st, NULL, 0, fetch, 2, NULL, 0, out), KILN_OK);
  expect(out[0], KILN_F32, 1, DIMS(2), VALS(1, 2));
  expect(out[1], KILN_F32, 1, DIMS(2), VALS(2, 3));
  kir_tensor *now = NULL;
  assert_int_equal(kir_interp_run(g, st, NULL, 0, &w, 1, NULL, 0, &now), KILN_OK);
  expect(now, KILN_F32, 1, DIMS(2), VALS(2, 3));
  /* group runs its inputs and outputs nothing; it cannot be fetched */
  int32_t grp = fin(g, node(g, KIR_OP_GROUP, "train", 2, (int32_t[]){step, init_w}));
  assert_int_equal(kir_interp_run(g, st, NULL, 0, NULL, 0, &grp, 1, NULL), KILN_OK);
  /* node order: w is read ([2,3]) before init_w stores [1,2]; then step stores [3,4] */
  want = mk(KILN_F32, 1, DIMS(2), VALS(3, 4));
  kt_assert_close(kir_state_get(st, "w"), want, 0);
  kir_tensor_free(want);
  run_fails(g, st, NULL, 0, grp, KILN_ERR_ARGUMENT, "'train' (group) has no output");
  /* a state holding the wrong shape is refused */
  kir_tensor *bad = mk(KILN_F32, 1, DIMS(3), NULL);
  assert_int_equal(kir_state_set(st, "w", bad), KILN_OK);
  run_fails(g, st, NULL, 0, w, KILN_ERR_STATE, "holds f32[3], the graph expects f32[2]");
  kir_tensor_free(bad);
  kir_state_destroy(st);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- feeds, fetches - */

static void test_feeds(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = placeholder(g, "x", KILN_F32, 2, DIMS(2, 3));
  int32_t y = un(g, KIR_OP_RELU, x);
  int32_t k = konst(g, KILN_F32, 0, NULL, VALS(10));
  int32_t z = bin(g, KIR_OP_ADD, y, k);
  int32_t nop = fin(g, node(g, KIR_OP_NO_OP, "nop", 0, NULL));
  long base = kir_alloc_live();
  kir_tensor *good = mk(KILN_F32, 2, DIMS(2, 3), VALS(-1, 2, -3, 4, -5, 6));
  kir_tensor *shape = mk(KILN_F32, 2, DIMS(2, 4), NULL), *dtype = mk(KILN_F64, 2, DIMS(2, 3), NULL);
  run_fails(g, NULL, NULL, 0, z, KILN_ERR_FEED, "placeholder 'x' must be fed (f32[2,3])");
  run_fails(g, NULL, &(kir_feed){x, shape}, 1, z, KILN_ERR_FEED,
            "feed for 'x': expected f32[2,3], got f32[2,4]");
  run_fails(g, NULL, &(kir_feed){x, dtype}, 1, z, KILN_ERR_FEED,
            "feed for 'x': expected f32[2,3], got f64[2,3]");
  run_fails(g, NULL, (kir_feed[]){{x, good}, {x, good}}, 2, z, KILN_ERR_FEED, "'x' is fed twice");
  run_fails(g, NULL, &(kir_feed){99, good}, 1, z, KILN_ERR_FEED, "node id 99 out of range");
  run_fails(g, NULL, &(kir_feed){-1, good}, 1, z, KILN_ERR_FEED, "node id -1 out of range");
  run_fails(g, NULL, &(kir_feed){nop, good}, 1, z, KILN_ERR_FEED, "feed for 'nop'");
  run_fails(g, NULL, &(kir_feed){x, NULL}, 1, z, KILN_ERR_FEED, "feed for 'x'");
  run_fails(g, NULL, NULL, 0, 1000, KILN_ERR_ARGUMENT, "fetch 0: node id 1000 out of range");
  assert_int_equal(kir_alloc_live(), base + 3);
  kir_tensor *out = NULL;
  assert_int_equal(kir_interp_run(g, NULL, &(kir_feed){x, good}, 1, &z, 1, NULL, 0, &out), KILN_OK);
  expect(out, KILN_F32, 2, DIMS(2, 3), VALS(10, 12, 10, 14, 10, 16));
  /* feeding an intermediate node cuts its inputs: x need not be fed */
  kir_tensor *yv = mk(KILN_F32, 2, DIMS(2, 3), VALS(1, 1, 1, 1, 1, 1));
  assert_int_equal(kir_interp_run(g, NULL, &(kir_feed){y, yv}, 1, &z, 1, NULL, 0, &out), KILN_OK);
  expect(out, KILN_F32, 2, DIMS(2, 3), VALS(11, 11, 11, 11, 11, 11));
  /* a fed node can be fetched; an unneeded feed is fine */
  kir_tensor *zero = mk(KILN_F32, 0, NULL, VALS(0));
  assert_int_equal(kir_interp_run(g, NULL, (kir_feed[]){{x, good}, {k, zero}}, 2, &x, 1, NULL, 0, &out),
                   KILN_OK);
  expect(out, KILN_F32, 2, DIMS(2, 3), VALS(-1, 2, -3, 4, -5, 6));
  int32_t bad_target = 77;
  expect_error(g, kir_interp_run(g, NULL, NULL, 0, NULL, 0, &bad_target, 1, NULL), KILN_ERR_ARGUMENT,
               "target 0: node id 77 out of range");
  expect_error(g, kir_interp_run(g, NULL, NULL, 1, &z, 1, NULL, 0, &out), KILN_ERR_ARGUMENT, "bad");
  assert_int_equal(kir_interp_run(NULL, NULL, NULL, 0, NULL, 0, NULL, 0, NULL), KILN_ERR_ARGUMENT);
  kir_tensor_free(zero);
  kir_tensor_free(yv);
  kir_tensor_free(good);
  kir_tensor_free(shape);
  kir_tensor_free(dtype);
  assert_int_equal(kir_alloc_live(), base);
  kir_graph_destroy(g);
}

static void test_fetch_twice(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F32, 1, DIMS(2), VALS(1, 2));
  int32_t b = un(g, KIR_OP_NEG, a);
  int32_t fetch[3] = {b, b, a};
  kir_tensor *out[3] = {NULL, NULL, NULL};
  assert_int_equal(kir_interp_run(g, NULL, NULL, 0, fetch, 3, NULL, 0, out), KILN_OK);
  assert_ptr_not_equal(out[0], out[1]);
  expect(out[0], KILN_F32, 1, DIMS(2), VALS(-1, -2));
  expect(out[1], KILN_F32, 1, DIMS(2), VALS(-1, -2));
  expect(out[2], KILN_F32, 1, DIMS(2), VALS(1, 2));
  /* nothing needed: an empty run succeeds */
  assert_int_equal(kir_interp_run(g, NULL, NULL, 0, NULL, 0, NULL, 0, NULL), KILN_OK);
  kir_graph_destroy(g);
}

/* Counts live blocks through the allocation hook to see values freed after last use. */
typedef struct peak_ctx {
  long live, peak;
} peak_ctx;

static void *peak_alloc(void *ctx, size_t n) {
  peak_ctx *c = ctx;
  void *p = malloc(n);
  if (p && ++c->live > c->peak) c->peak = c->live;
  return p;
}

static void peak_free(void *ctx, void *p) {
  peak_ctx *c = ctx;
  if (p) c->live--;
  free(p);
}

static void test_values_freed_after_last_use(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, KILN_F64, 1, DIMS(3), VALS(1, 2, 3));
  for (int i = 0; i < 30; i++) x = un(g, KIR_OP_NEG, x);
  int32_t side = un(g, KIR_OP_RELU, x); /* a target only: freed at once */
  peak_ctx c = {0, 0};
  kir_allocator hook = {peak_alloc, peak_free, &c};
  kir_tensor *out = NULL;
  kir_alloc_set(&hook);
  kiln_status s = kir_interp_run(g, NULL, NULL, 0, &x, 1, &side, 1, &out);
  kir_alloc_set(NULL);
  assert_int_equal(s, KILN_OK);
  assert_int_equal(c.live, 1); /* only the output is left */
  assert_true(c.peak <= 10);   /* 6 scratch arrays, at most 2 live values, the copy out */
  expect(out, KILN_F64, 1, DIMS(3), VALS(1, 2, 3));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- eval_node ----- */

static void test_eval_node(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t init = konst(g, KILN_F32, 1, DIMS(2), VALS(3, -4));
  int32_t x = placeholder(g, "x", KILN_F32, 1, DIMS(2));
  int32_t w = fin(g, node(g, KIR_OP_VARIABLE, "w", 1, (int32_t[]){init}));
  int32_t as = fin(g, node(g, KIR_OP_ASSIGN, "as", 2, (int32_t[]){w, init}));
  int32_t grp = fin(g, node(g, KIR_OP_GROUP, "grp", 1, (int32_t[]){as}));
  int32_t r = un(g, KIR_OP_RELU, x);
  kir_tensor *v = mk(KILN_F32, 1, DIMS(2), VALS(3, -4)), *out = NULL;
  const kir_tensor *in2[2] = {v, v};
  expect_error(g, kir_eval_node(g, g->nodes[x], NULL, &out), KILN_ERR_UNSUPPORTED, "node 'x'");
  expect_error(g, kir_eval_node(g, g->nodes[w], in2, &out), KILN_ERR_UNSUPPORTED, "node 'w'");
  expect_error(g, kir_eval_node(g, g->nodes[as], in2, &out), KILN_ERR_UNSUPPORTED, "node 'as'");
  out = v;
  assert_int_equal(kir_eval_node(g, g->nodes[grp], in2, &out), KILN_OK);
  assert_null(out);
  out = v;
  assert_int_equal(kir_eval_node(g, g->nodes[grp], NULL, &out), KILN_OK);
  assert_null(out);
  assert_int_equal(kir_eval_node(g, g->nodes[r], in2, &out), KILN_OK);
  expect(out, KILN_F32, 1, DIMS(2), VALS(3, 0));
  assert_int_equal(kir_eval_node(g, g->nodes[init], NULL, &out), KILN_OK);
  expect(out, KILN_F32, 1, DIMS(2), VALS(3, -4));
  /* an input that disagrees with the node's stored type is refused, not indexed */
  kir_tensor *wrong = mk(KILN_F32, 1, DIMS(5), NULL);
  const kir_tensor *inw[1] = {wrong};
  expect_error(g, kir_eval_node(g, g->nodes[r], inw, &out), KILN_ERR_SHAPE, "differs");
  kir_tensor *wi = mk(KILN_I32, 1, DIMS(2), NULL);
  inw[0] = wi;
  expect_error(g, kir_eval_node(g, g->nodes[r], inw, &out), KILN_ERR_TYPE, "input 0 is i32");
  kir_tensor_free(wi);
  kir_tensor_free(wrong);
  kir_tensor_free(v);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- allocation ---- */

/* A small training-like run: feeds, a variable, matmul, broadcast add, reduce, assign. */
static void test_alloc_failure(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = placeholder(g, "x", KILN_F32, 2, DIMS(2, 3));
  int32_t init = konst(g, KILN_F32, 2, DIMS(3, 2), VALS(1, 2, 3, 4, 5, 6));
  int32_t w = fin(g, node(g, KIR_OP_VARIABLE, "w", 1, (int32_t[]){init}));
  int32_t b = konst(g, KILN_F32, 1, DIMS(2), VALS(0.5, -0.5));
  int32_t y = bin(g, KIR_OP_ADD, matmul(g, KIR_OP_MATMUL, x, w, 0, 0), b);
  int32_t loss = reduce(g, KIR_OP_REDUCE_SUM, un(g, KIR_OP_RELU, y), NULL, 0, -1);
  int32_t w2 = bin(g, KIR_OP_MUL, w, konst(g, KILN_F32, 0, NULL, VALS(2)));
  int32_t upd = fin(g, node(g, KIR_OP_ASSIGN, "upd", 2, (int32_t[]){w, w2}));
  kir_state *st = kir_state_create();
  kir_tensor *xv = mk(KILN_F32, 2, DIMS(2, 3), VALS(1, 0, -1, 2, 1, 0));
  kir_tensor *wv = mk(KILN_F32, 2, DIMS(3, 2), VALS(1, 2, 3, 4, 5, 6));
  int32_t fetch[3] = {loss, y, loss};
  kir_feed feed = {x, xv};
  assert_int_equal(kir_state_set(st, "w", wv), KILN_OK);
  long base = kir_alloc_live();
  kiln_status s = KILN_ERR_NOMEM;
  long n;
  for (n = 0; n < 1000 && s != KILN_OK; n++) {
    kir_tensor *out[3] = {NULL, NULL, NULL};
    assert_int_equal(kir_state_set(st, "w", wv), KILN_OK); /* replaces: live count unchanged */
    assert_int_equal(kir_alloc_live(), base);
    kir_alloc_fail_after(n);
    s = kir_interp_run(g, st, &feed, 1, fetch, 3, &upd, 1, out);
    kir_alloc_fail_after(-1);
    if (s != KILN_OK) {
      expect_error(g, s, KILN_ERR_NOMEM, "out of memory");
      assert_null(out[0]);
      assert_null(out[1]);
      assert_null(out[2]);
      assert_int_equal(kir_alloc_live(), base);
      continue;
    }
    /* y = x@w + b = [[-4+.5, -4-.5], [5+.5, 8-.5]]; loss = relu sum = 5.5 + 7.5 */
    expect(out[0], KILN_F32, 0, NULL, VALS(13));
    expect(out[1], KILN_F32, 2, DIMS(2, 2), VALS(-3.5, -4.5, 5.5, 7.5));
    expect(out[2], KILN_F32, 0, NULL, VALS(13));
    kir_tensor *want = mk(KILN_F32, 2, DIMS(3, 2), VALS(2, 4, 6, 8, 10, 12));
    kt_assert_close(kir_state_get(st, "w"), want, 0);
    kir_tensor_free(want);
  }
  assert_int_equal(s, KILN_OK);
  assert_true(n > 10); /* the run allocates: the loop did fail some of them */
  assert_int_equal(kir_alloc_live(), base);
  kir_tensor_free(xv);
  kir_tensor_free(wv);
  kir_state_destroy(st);
  kir_graph_destroy(g);
}

/* kir_eval_node alone (the folding path) under allocation failure. */
static void test_eval_alloc_failure(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, KILN_F64, 2, DIMS(2, 2), VALS(1, 2, 3, 4));
  int32_t m = matmul(g, KIR_OP_MATMUL, a, a, 0, 0);
  kir_tensor *v = mk(KILN_F64, 2, DIMS(2, 2), VALS(1, 2, 3, 4)), *out = NULL;
  const kir_tensor *in[2] = {v, v};
  long base = kir_alloc_live();
  kir_alloc_fail_after(0);
  expect_error(g, kir_eval_node(g, g->nodes[m], in, &out), KILN_ERR_NOMEM, "out of memory");
  kir_alloc_fail_after(-1);
  assert_null(out);
  assert_int_equal(kir_alloc_live(), base);
  assert_int_equal(kir_eval_node(g, g->nodes[m], in, &out), KILN_OK);
  expect(out, KILN_F64, 2, DIMS(2, 2), VALS(7, 10, 15, 22));
  kir_tensor_free(v);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_binary_f32, setup),
      cmocka_unit_test_setup(test_binary_f64, setup),
      cmocka_unit_test_setup(test_binary_int, setup),
      cmocka_unit_test_setup(test_binary_i64_wrap, setup),
      cmocka_unit_test_setup(test_int_division_by_zero, setup),
      cmocka_unit_test_setup(test_broadcast, setup),
      cmocka_unit_test_setup(test_unary_float, setup),
      cmocka_unit_test_setup(test_clamp, setup),
      cmocka_unit_test_setup(test_unary_int, setup),
      cmocka_unit_test_setup(test_nan_propagation, setup),
      cmocka_unit_test_setup(test_matmul_transposes, setup),
      cmocka_unit_test_setup(test_matmul_batched, setup),
      cmocka_unit_test_setup(test_add_n, setup),
      cmocka_unit_test_setup(test_reductions, setup),
      cmocka_unit_test_setup(test_softmax, setup),
      cmocka_unit_test_setup(test_reshape_transpose_identity, setup),
      cmocka_unit_test_setup(test_random_statistics, setup),
      cmocka_unit_test_setup(test_random_determinism, setup),
      cmocka_unit_test_setup(test_random_matches_documentation, setup),
      cmocka_unit_test_setup(test_fused_matmul, setup),
      cmocka_unit_test_setup(test_epilogue_errors, setup),
      cmocka_unit_test_setup(test_state_set_get, setup),
      cmocka_unit_test_setup(test_variables, setup),
      cmocka_unit_test_setup(test_feeds, setup),
      cmocka_unit_test_setup(test_fetch_twice, setup),
      cmocka_unit_test_setup(test_values_freed_after_last_use, setup),
      cmocka_unit_test_setup(test_eval_node, setup),
      cmocka_unit_test_setup(test_alloc_failure, setup),
      cmocka_unit_test_setup(test_eval_alloc_failure, setup),
  };
  return cmocka_run_group_tests_name("ir_interp", tests, NULL, NULL);
}
