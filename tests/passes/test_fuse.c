/* test_fuse.c — fusion v2: elementwise chains (fused_elementwise), chains ending in a
 * reduction or softmax (fused_reduce / fused_softmax), the "why not fused" lines of
 * kps_explain_fusion and the pass log, idempotence, and the fused ops' own checks (shape
 * inference errors). Every rewrite is compared with the unfused graph in the reference
 * interpreter, bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt_graph.h"
#include "../../passes/kps.h"

/* ---------------------------------------------------------------- helpers ------- */

/* Runs `fetch` with every placeholder fed from kt_fill, seeded by its name: [-2, 2),
 * names starting "pos" [0.1, 2). */
static kir_tensor *run_fetch(kir_graph *g, const char *fetch, uint64_t seed) {
  return kt_run_fetch(g, fetch, seed, -2, 2, 0.1);
}

/* `after` computes exactly (bit for bit) the `fetch` of `before`. */
static void assert_identical(kir_graph *before, kir_graph *after, const char *fetch) {
  kir_tensor *want = run_fetch(before, fetch, 7);
  kir_tensor *got = run_fetch(after, fetch, 7);
  assert_true(kir_type_equal(&got->type, &want->type));
  int64_t nb = kir_type_nbytes(&want->type);
  if (memcmp(got->data, want->data, (size_t)nb) != 0) {
    kt_assert_close(got, want, 0);
    fail_msg("'%s' differs after fusion", fetch);
  }
  kir_tensor_free(want);
  kir_tensor_free(got);
}

static uint8_t *bytes_of(kir_graph *g, size_t *len) {
  uint8_t *b = NULL;
  OK(g, kir_graph_to_bytes(g, &b, len));
  return b;
}

/* Runs fuse with these roots; returns the result and (if log) the log text. Checks that
 * kps_explain_fusion on the graph before gives exactly the pass's log, changes nothing,
 * that the result verifies, and that a second run changes nothing. */
static kps_result fuse(kir_graph *g, const char *const *roots, int32_t n_roots, char **log) {
  kps_context ctx = {.roots = roots, .n_roots = n_roots};
  kt_text ex, lg;
  size_t l0, l1;
  uint8_t *b0 = bytes_of(g, &l0);
  kt_text_open(&ex);
  OK(g, kps_explain_fusion(g, &ctx, ex.f));
  char *explained = kt_text_close(&ex);
  uint8_t *b1 = bytes_of(g, &l1);
  assert_true(l0 == l1 && memcmp(b0, b1, l0) == 0); /* explain changes nothing */
  kir_free(b0);
  kir_free(b1);
  kt_text_open(&lg);
  ctx.log = lg.f;
  kps_result r;
  memset(&r, 0, sizeof r);
  OK(g, kps_fuse(g, &ctx, &r));
  char *logged = kt_text_close(&lg);
  assert_string_equal(explained, logged);
  free(explained);
  OK(g, kir_verify(g));
  /* idempotent: the second run finds nothing and changes no byte */
  b0 = bytes_of(g, &l0);
  kps_result r2;
  memset(&r2, 0, sizeof r2);
  ctx.log = NULL;
  OK(g, kps_fuse(g, &ctx, &r2));
  assert_false(r2.changed);
  b1 = bytes_of(g, &l1);
  assert_true(l0 == l1 && memcmp(b0, b1, l0) == 0);
  kir_free(b0);
  kir_free(b1);
  if (log) *log = logged;
  else free(logged);
  return r;
}

static void assert_inputs(const kir_graph *g, const kir_node *n, const char *const *names, int32_t count) {
  assert_int_equal(n->n_inputs, count);
  for (int32_t i = 0; i < count; i++) assert_string_equal(g->nodes[n->inputs[i]]->name, names[i]);
}

static void assert_has(const char *log, const char *want) {
  if (!strstr(log, want)) fail_msg("log\n%s\nlacks '%s'", log, want);
}

/* ---------------------------------------------------------------- chains -------- */

/* x*b -> tanh -> s - . -> clamp: one loop, named after the last node. */
static void test_chain_basic(void **state) {
  (void)state;
  kiln_dtype dts[2] = {KILN_F32, KILN_F64};
  for (int k = 0; k < 2; k++) {
    kir_graph *g = kir_graph_create();
    kir_node *x = kt_ph(g, "x", dts[k], DIMS(4, 6));
    kir_node *b = kt_ph(g, "b", dts[k], DIMS(6));
    kir_node *s = kt_ph(g, "s", dts[k], 0, NULL);
    kir_node *m = kt_op2(g, KIR_OP_MUL, "m", x, b);
    kir_node *t = kt_op1(g, KIR_OP_TANH, "t", m);
    kir_node *d = kt_op2(g, KIR_OP_SUB, "d", s, t);
    kir_node *m2 = kt_op2(g, KIR_OP_MUL, "m2", d, b); /* b again: one input, two steps */
    kt_clamp(g, "out", m2, -0.5, 0.25);
    kir_graph *orig = kir_graph_clone(g);
    const char *roots[] = {"out"};
    kps_result r = fuse(g, roots, 1, NULL);
    assert_true(r.changed);
    assert_int_equal(kt_stat_of(&r, "chains fused"), 1);
    assert_int_equal(kt_stat_of(&r, "ops absorbed"), 4);
    assert_int_equal(kt_stat_of(&r, "matmuls fused"), 0);
    assert_int_equal(g->n_nodes, 4);
    kir_node *f = kt_find(g, "out");
    assert_int_equal(f->op, KIR_OP_FUSED_ELEMENTWISE);
    const char *in[] = {"x", "b", "s"};
    assert_inputs(g, f, in, 3);
    const char *from[] = {"m", "t", "d", "m2", "out"};
    kt_assert_fused_from(f, from, 5);
    int64_t ops[] = {KIR_OP_MUL, KIR_OP_TANH, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_CLAMP};
    int64_t opnd[] = {1, -1, 2, 1, -1}, swap[] = {0, 0, 1, 0, 0};
    kt_assert_ints(f, "epilogue", ops, 5);
    kt_assert_ints(f, "operand", opnd, 5);
    kt_assert_ints(f, "swap", swap, 5);
    int32_t nlo = 0;
    const double *lo = kir_attr_floats(f, "clamp_min", &nlo);
    assert_int_equal(nlo, 5);
    assert_true(lo[4] == -0.5 && isnan(lo[0]));
    assert_identical(orig, g, "out");
    kir_graph_destroy(orig);
    kir_graph_destroy(g);
  }
}

/* Broadcasting inside a chain: the head's operands broadcast, and a cheap prefix may be
 * recomputed per element of a wider operand. */
static void test_chain_broadcast(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *col = kt_ph(g, "col", KILN_F32, DIMS(4, 1));
  kir_node *row = kt_ph(g, "row", KILN_F32, DIMS(6));
  kir_node *w = kt_ph(g, "w", KILN_F32, DIMS(3, 4, 6));
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", row, col); /* [4,6] from [6] + [4,1] */
  kir_node *n = kt_op1(g, KIR_OP_NEG, "n", a);
  kir_node *m = kt_op2(g, KIR_OP_MAXIMUM, "m", w, n); /* grows to [3,4,6]: a, n are cheap */
  kt_op1(g, KIR_OP_RELU, "r", m);
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"r"};
  char *log = NULL;
  fuse(g, roots, 1, &log);
  assert_string_equal(log, "");
  free(log);
  kir_node *f = kt_find(g, "r");
  assert_int_equal(f->op, KIR_OP_FUSED_ELEMENTWISE);
  const char *in[] = {"row", "col", "w"};
  assert_inputs(g, f, in, 3);
  int64_t swap[] = {0, 0, 1, 0};
  kt_assert_ints(f, "swap", swap, 4);
  assert_identical(orig, g, "r");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* A costly op is not recomputed per element of a broadcast: the chain stops there. */
static void test_chain_costly_broadcast(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *col = kt_ph(g, "col", KILN_F32, DIMS(64, 1));
  kir_node *b = kt_ph(g, "b", KILN_F32, DIMS(64, 100));
  kir_node *e = kt_op1(g, KIR_OP_EXP, "e", col);
  kir_node *n = kt_op1(g, KIR_OP_NEG, "n", e);
  kir_node *m = kt_op2(g, KIR_OP_MUL, "m", n, b);
  kt_op1(g, KIR_OP_RELU, "r", m);
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"r"};
  char *log = NULL;
  kps_result r = fuse(g, roots, 1, &log);
  assert_string_equal(log, "fuse: stopped after 'n': 'b' would broadcast the chain from "
                           "f32[64,1] to f32[64,100], recomputing 'e' (exp) per element\n");
  free(log);
  assert_int_equal(kt_stat_of(&r, "chains fused"), 2);
  assert_int_equal(kt_find(g, "n")->op, KIR_OP_FUSED_ELEMENTWISE); /* e -> n, at [64,1] */
  assert_int_equal(kt_find(g, "r")->op, KIR_OP_FUSED_ELEMENTWISE); /* m -> r */
  assert_identical(orig, g, "r");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- reductions ---- */

/* mean/sum/max of a chain over some or all axes, keep_dims or not. */
static void test_reduce_chains(void **state) {
  (void)state;
  kir_op kinds[3] = {KIR_OP_REDUCE_MEAN, KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX};
  int64_t ax1[1] = {1}, ax02[2] = {0, -1};
  for (int k = 0; k < 3; k++)
    for (int v = 0; v < 3; v++) {
      kir_graph *g = kir_graph_create();
      kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(3, 5, 4));
      kir_node *sc = kt_ph(g, "scale", KILN_F32, 0, NULL);
      kir_node *bias = kt_ph(g, "bias", KILN_F32, DIMS(4));
      kir_node *m = kt_op2(g, KIR_OP_MUL, "m", x, sc);
      kir_node *a = kt_op2(g, KIR_OP_ADD, "a", m, bias);
      kir_node *s = kt_op1(g, KIR_OP_SIGMOID, "s", a);
      const int64_t *axes = v == 0 ? ax1 : v == 1 ? ax02 : NULL;
      kir_node *red = kt_reduce(g, kinds[k], "red", s, axes, v == 0 ? 1 : 2, v == 1);
      kir_type want = red->type;
      kir_graph *orig = kir_graph_clone(g);
      const char *roots[] = {"red"};
      kps_result r = fuse(g, roots, 1, NULL);
      assert_int_equal(kt_stat_of(&r, "reductions fused"), 1);
      assert_int_equal(kt_stat_of(&r, "ops absorbed"), 3);
      kir_node *f = kt_find(g, "red");
      assert_int_equal(f->op, KIR_OP_FUSED_REDUCE);
      assert_true(kir_type_equal(&f->type, &want));
      assert_int_equal(kir_attr_int(f, "reduce", 0), kinds[k]);
      assert_int_equal(kir_attr_int(f, "keep_dims", 0), v == 1);
      assert_int_equal(kir_attr_find(f, "axes") != NULL, axes != NULL);
      const char *from[] = {"m", "a", "s", "red"};
      kt_assert_fused_from(f, from, 4);
      int64_t ops[] = {KIR_OP_MUL, KIR_OP_ADD, KIR_OP_SIGMOID};
      kt_assert_ints(f, "epilogue", ops, 3);
      assert_identical(orig, g, "red");
      kir_graph_destroy(orig);
      kir_graph_destroy(g);
    }
}

/* A single elementwise producer is enough; the reduction may be fetched (it is last). */
static void test_reduce_single_producer(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F64, DIMS(7, 3));
  kir_node *sq = kt_op2(g, KIR_OP_MUL, "sq", x, x);
  int64_t ax[1] = {0};
  kt_reduce(g, KIR_OP_REDUCE_MEAN, "msq", sq, ax, 1, 0);
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"msq"};
  fuse(g, roots, 1, NULL);
  kir_node *f = kt_find(g, "msq");
  assert_int_equal(f->op, KIR_OP_FUSED_REDUCE);
  const char *in[] = {"x", "x"};
  assert_inputs(g, f, in, 2);
  assert_identical(orig, g, "msq");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* softmax(x * scale + bias) over the last and the first axis. */
static void test_softmax_chain(void **state) {
  (void)state;
  for (int64_t axis = -1; axis <= 0; axis++) {
    kir_graph *g = kir_graph_create();
    kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(5, 8));
    kir_node *sc = kt_ph(g, "scale", KILN_F32, 0, NULL);
    kir_node *bias = kt_ph(g, "bias", KILN_F32, DIMS(8));
    kir_node *m = kt_op2(g, KIR_OP_MUL, "m", x, sc);
    kir_node *a = kt_op2(g, KIR_OP_ADD, "a", m, bias);
    kt_softmax(g, "p", a, axis);
    kir_graph *orig = kir_graph_clone(g);
    const char *roots[] = {"p"};
    kps_result r = fuse(g, roots, 1, NULL);
    assert_int_equal(kt_stat_of(&r, "reductions fused"), 1);
    kir_node *f = kt_find(g, "p");
    assert_int_equal(f->op, KIR_OP_FUSED_SOFTMAX);
    assert_int_equal(kir_attr_int(f, "axis", 99), axis);
    const char *from[] = {"m", "a", "p"};
    kt_assert_fused_from(f, from, 3);
    assert_identical(orig, g, "p");
    kir_graph_destroy(orig);
    kir_graph_destroy(g);
  }
}

/* ---------------------------------------------------------------- why not ------- */

/* Asserts fuse left the graph as it was (same bytes) and logged `want`. */
static void expect_unfused(kir_graph *g, const char *const *roots, int32_t n_roots, const char *want) {
  size_t l0, l1;
  uint8_t *b0 = bytes_of(g, &l0);
  char *log = NULL;
  kps_result r = fuse(g, roots, n_roots, &log);
  assert_has(log, want);
  free(log);
  assert_false(r.changed);
  uint8_t *b1 = bytes_of(g, &l1);
  assert_true(l0 == l1 && memcmp(b0, b1, l0) == 0);
  kir_free(b0);
  kir_free(b1);
}

static void test_why_second_consumer(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4));
  kir_node *r = kt_op1(g, KIR_OP_RELU, "relu_3", x);
  kt_op1(g, KIR_OP_NEG, "neg_5", r);
  kt_op1(g, KIR_OP_EXP, "add_7", r);
  const char *roots[] = {"neg_5", "add_7"};
  expect_unfused(g, roots, 2, "fuse: stopped after 'relu_3': 'relu_3' has 2 consumers ('neg_5', 'add_7')\n");
  kir_graph_destroy(g);
}

static void test_why_fetched(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4));
  kir_node *h = kt_op1(g, KIR_OP_TANH, "h", x);
  kt_op1(g, KIR_OP_NEG, "y", h);
  const char *roots[] = {"y", "h"};
  expect_unfused(g, roots, 2, "fuse: stopped after 'h': 'h' is fetched\n");
  kir_graph_destroy(g);
}

static void test_why_device(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4));
  kir_node *a = kt_op1(g, KIR_OP_EXP, "a", x);
  a->device = kir_graph_strdup(g, "cpu:0");
  kir_node *b = kt_op1(g, KIR_OP_NEG, "b", a);
  b->device = kir_graph_strdup(g, "cuda:0");
  const char *roots[] = {"b"};
  expect_unfused(g, roots, 1, "fuse: stopped after 'a': different device request (cpu:0 vs cuda:0)\n");
  kir_graph_destroy(g);
  /* the same device spelled two ways fuses */
  g = kir_graph_create();
  x = kt_ph(g, "x", KILN_F32, DIMS(4));
  a = kt_op1(g, KIR_OP_EXP, "a", x);
  a->device = kir_graph_strdup(g, "/device:GPU:0");
  b = kt_op1(g, KIR_OP_NEG, "b", a);
  b->device = kir_graph_strdup(g, "cuda:0");
  kps_result r = fuse(g, roots, 1, NULL);
  assert_int_equal(kt_stat_of(&r, "chains fused"), 1);
  assert_string_equal(kt_find(g, "b")->device, "/device:GPU:0");
  kir_graph_destroy(g);
}

static void test_why_int_chain(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_I32, DIMS(4));
  kir_node *n = kt_op1(g, KIR_OP_NEG, "n", x);
  kir_node *r = kt_op1(g, KIR_OP_RELU, "r", n);
  kt_op2(g, KIR_OP_ADD, "y", r, x);
  const char *roots[] = {"y"};
  char want[128];
  snprintf(want, sizeof want, "fuse: 'n' -> 'r' -> 'y' not fused: %s chain: fused_elementwise is float-only\n",
           kiln_dtype_name(KILN_I32));
  expect_unfused(g, roots, 1, want);
  kir_graph_destroy(g);
}

/* f16/bf16 chains stay unfused (fused kernels take f32/f64), with the reason said. */
static void test_why_half_chain(void **state) {
  (void)state;
  const kiln_dtype dts[] = {KILN_F16, KILN_BF16};
  for (int i = 0; i < 2; i++) {
    kir_graph *g = kir_graph_create();
    kir_node *x = kt_ph(g, "x", dts[i], DIMS(4));
    kir_node *n = kt_op1(g, KIR_OP_NEG, "n", x);
    kir_node *r = kt_op1(g, KIR_OP_RELU, "r", n);
    kt_op2(g, KIR_OP_ADD, "y", r, x);
    const char *roots[] = {"y"};
    char want[128];
    snprintf(want, sizeof want, "fuse: 'n' -> 'r' -> 'y' not fused: %s chain: fused_elementwise takes f32/f64 only\n",
             kiln_dtype_name(dts[i]));
    expect_unfused(g, roots, 1, want);
    kir_graph_destroy(g);
  }
}

/* A chain whose consumer already belongs to a matmul epilogue. */
static void test_why_taken_by_matmul(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4, 8));
  kir_node *w = kt_ph(g, "w", KILN_F32, DIMS(8, 5));
  kir_node *c = kt_ph(g, "c", KILN_F32, DIMS(5));
  kir_node *mm = kt_op2(g, KIR_OP_MATMUL, "mm", x, w);
  kir_node *e = kt_op1(g, KIR_OP_EXP, "e", c);
  kir_node *n = kt_op1(g, KIR_OP_NEG, "n", e);
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", mm, n);
  kt_op1(g, KIR_OP_RELU, "y", a);
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"y"};
  char *log = NULL;
  kps_result r = fuse(g, roots, 1, &log);
  assert_string_equal(log, "fuse: stopped after 'n': 'a' is already in the group 'mm' .. 'y'\n");
  free(log);
  assert_int_equal(kt_stat_of(&r, "matmuls fused"), 1);
  assert_int_equal(kt_stat_of(&r, "chains fused"), 1);
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kt_find(g, "n")->op, KIR_OP_FUSED_ELEMENTWISE);
  assert_identical(orig, g, "y");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* The product of a matmul broadcast by its bias stays a matmul, and says so. */
static void test_why_matmul_broadcast(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(64, 8));
  kir_node *w = kt_ph(g, "w", KILN_F32, DIMS(8, 1));
  kir_node *b = kt_ph(g, "b", KILN_F32, DIMS(64, 100));
  kir_node *mm = kt_op2(g, KIR_OP_MATMUL, "mm", x, w);
  kt_op2(g, KIR_OP_ADD, "y", mm, b);
  const char *roots[] = {"y"};
  expect_unfused(g, roots, 1, "fuse: stopped after 'mm': 'b' broadcasts the product from f32[64,1] to f32[64,100]\n");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- mixed --------- */

/* An MLP block with a softmax head and a mean: every kind of group at once; explain's
 * lines equal the log; a second run changes nothing (checked in fuse()). */
static void test_mixed_graph(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(6, 10));
  kir_node *w = kt_ph(g, "w", KILN_F32, DIMS(10, 4));
  kir_node *b = kt_ph(g, "b", KILN_F32, DIMS(4));
  kir_node *t = kt_ph(g, "temp", KILN_F32, 0, NULL);
  kir_node *mm = kt_op2(g, KIR_OP_MATMUL, "mm", x, w);
  kir_node *h = kt_op2(g, KIR_OP_ADD, "h", mm, b);
  kir_node *d = kt_op2(g, KIR_OP_DIV, "d", h, t); /* h has two consumers: the epilogue stops */
  kir_node *p = kt_softmax(g, "probs", d, -1);
  kir_node *sq = kt_op2(g, KIR_OP_MUL, "sq", h, t);
  kir_node *ab = kt_op1(g, KIR_OP_RELU, "ab", sq);
  kt_reduce(g, KIR_OP_REDUCE_MEAN, "loss", ab, NULL, 0, 0);
  (void)p;
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"probs", "loss"};
  char *log = NULL;
  kps_result r = fuse(g, roots, 2, &log);
  assert_string_equal(log, "fuse: stopped after 'h': 'h' has 2 consumers ('d', 'sq')\n");
  free(log);
  assert_int_equal(kt_stat_of(&r, "matmuls fused"), 1);
  assert_int_equal(kt_stat_of(&r, "reductions fused"), 2);
  assert_int_equal(kt_find(g, "h")->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kt_find(g, "probs")->op, KIR_OP_FUSED_SOFTMAX);
  assert_int_equal(kt_find(g, "loss")->op, KIR_OP_FUSED_REDUCE);
  assert_identical(orig, g, "probs");
  assert_identical(orig, g, "loss");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* The lecture's MLP still fuses into exactly matmul+clamp and a plain matmul. */
static void test_mlp_two_kernels(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(64, 1000));
  kir_node *w1 = kt_ph(g, "w1", KILN_F32, DIMS(1000, 100));
  kir_node *w2 = kt_ph(g, "w2", KILN_F32, DIMS(100, 10));
  kir_node *h = kt_clamp(g, "h", kt_op2(g, KIR_OP_MATMUL, "xw1", x, w1), 0.0, NAN);
  kt_op2(g, KIR_OP_MATMUL, "y", h, w2);
  const char *roots[] = {"y"};
  fuse(g, roots, 1, NULL);
  int computed = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) computed += g->nodes[i]->op != KIR_OP_PLACEHOLDER;
  assert_int_equal(computed, 2);
  assert_int_equal(kt_find(g, "h")->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_MATMUL);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- the ops ------- */

/* Adds a fused chain node by hand; returns its inference status. */
static kiln_status hand_chain(kir_graph *g, kir_op op, const char *name, const int32_t *in,
                              int32_t n_in, const int64_t *ops, const int64_t *opnd, int32_t n) {
  kir_node *f = kir_node_add(g, op, name, in, n_in);
  assert_non_null(f);
  int64_t swap[8] = {0};
  double nan8[8] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  const char *from[1] = {name};
  OK(g, kir_attr_set_ints(g, f, "epilogue", ops, n));
  OK(g, kir_attr_set_ints(g, f, "operand", opnd, n));
  OK(g, kir_attr_set_ints(g, f, "swap", swap, n));
  OK(g, kir_attr_set_floats(g, f, "clamp_min", nan8, n));
  OK(g, kir_attr_set_floats(g, f, "clamp_max", nan8, n));
  OK(g, kir_attr_set_strings(g, f, "fused_from", from, 1));
  if (op == KIR_OP_FUSED_REDUCE) OK(g, kir_attr_set_int(g, f, "reduce", KIR_OP_REDUCE_SUM));
  return kir_infer_node(g, f);
}

static void test_fused_op_checks(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *a = kt_ph(g, "a", KILN_F32, DIMS(3, 4));
  kir_node *r = kt_ph(g, "r", KILN_F32, DIMS(4));
  kir_node *bad = kt_ph(g, "bad", KILN_F32, DIMS(5));
  kir_node *i = kt_ph(g, "i", KILN_I32, DIMS(4));
  int64_t add[1] = {KIR_OP_ADD}, neg[1] = {KIR_OP_NEG};
  int32_t ar[2] = {a->id, r->id}, ra[2] = {r->id, a->id}, ab[2] = {a->id, bad->id};
  int32_t ii[2] = {i->id, i->id}, ai[2] = {a->id, i->id};
  /* fine: input 0 broadcast to the others' shape */
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "ok", ra, 2, add, (int64_t[]){1}, 1), KILN_OK);
  assert_int_equal(kir_graph_find(g, "ok")->type.dims[0], 3);
  /* operand 0 is x0, not an operand */
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "op0", ar, 2, add, (int64_t[]){0}, 1), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "not in [1, 2)"));
  kir_graph_pop_node(g);
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "unop", ar, 2, neg, (int64_t[]){1}, 1), KILN_ERR_GRAPH);
  kir_graph_pop_node(g);
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "bc", ab, 2, add, (int64_t[]){1}, 1), KILN_ERR_SHAPE);
  kir_graph_pop_node(g);
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "int", ii, 2, add, (int64_t[]){1}, 1), KILN_ERR_TYPE);
  kir_graph_pop_node(g);
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_ELEMENTWISE, "mixed", ai, 2, add, (int64_t[]){1}, 1), KILN_ERR_TYPE);
  kir_graph_pop_node(g);
  /* a matmul is no epilogue step */
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_SOFTMAX, "mmstep", ar, 2, (int64_t[]){KIR_OP_MATMUL},
                              (int64_t[]){1}, 1), KILN_ERR_GRAPH);
  kir_graph_pop_node(g);
  /* fused_reduce with a reduce that is not a reduction */
  assert_int_equal(hand_chain(g, KIR_OP_FUSED_REDUCE, "red", ar, 2, add, (int64_t[]){1}, 1), KILN_OK);
  kir_node *red = kir_graph_find(g, "red");
  OK(g, kir_attr_set_int(g, red, "reduce", KIR_OP_MUL));
  assert_int_equal(kir_infer_node(g, red), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "'reduce'"));
  OK(g, kir_attr_set_int(g, red, "reduce", KIR_OP_REDUCE_MAX));
  OK(g, kir_infer_node(g, red));
  assert_int_equal(red->type.rank, 0);
  /* the interpreter re-checks a stale type */
  red->type.rank = 1;
  red->type.dims[0] = 2;
  kir_tensor *x0 = kir_tensor_new(&a->type), *x1 = kir_tensor_new(&r->type), *o = NULL;
  const kir_tensor *ins[2] = {x0, x1};
  assert_int_equal(kir_eval_node(g, red, ins, &o), KILN_ERR_SHAPE);
  assert_null(o);
  kir_tensor_free(x0);
  kir_tensor_free(x1);
  kir_graph_destroy(g);
}

/* Out of memory at every allocation of the pass: KILN_ERR_NOMEM, no leak, and the graph
 * left behind still verifies and computes the same values. */
static void test_fuse_out_of_memory(void **state) {
  (void)state;
  kir_graph *orig = kir_graph_create();
  kir_node *x = kt_ph(orig, "x", KILN_F32, DIMS(6, 10));
  kir_node *w = kt_ph(orig, "w", KILN_F32, DIMS(10, 4));
  kir_node *t = kt_ph(orig, "temp", KILN_F32, 0, NULL);
  kir_node *h = kt_op2(orig, KIR_OP_MUL, "h", kt_op2(orig, KIR_OP_MATMUL, "mm", x, w), t);
  kt_softmax(orig, "probs", kt_op2(orig, KIR_OP_DIV, "d", h, t), -1);
  kir_node *ab = kt_op1(orig, KIR_OP_RELU, "ab", kt_op2(orig, KIR_OP_SUB, "sq", h, t));
  kir_node *mean = kt_reduce(orig, KIR_OP_REDUCE_MEAN, "loss", ab, NULL, 0, 0);
  kt_op1(orig, KIR_OP_EXP, "z", kt_op1(orig, KIR_OP_NEG, "nz", mean));
  const char *roots[] = {"probs", "z"};
  kps_context ctx = {.roots = roots, .n_roots = 2};
  kiln_status st = KILN_ERR_NOMEM;
  int n;
  for (n = 0; n < 500 && st != KILN_OK; n++) {
    long base = kir_alloc_live();
    kir_graph *g = kir_graph_clone(orig);
    assert_non_null(g);
    kps_result r;
    memset(&r, 0, sizeof r);
    kir_alloc_fail_after(n);
    st = kps_fuse(g, &ctx, &r);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK && st != KILN_ERR_NOMEM) fail_msg("N=%d: %s", n, g->error);
    OK(g, kir_verify(g));
    assert_identical(orig, g, "probs");
    assert_identical(orig, g, "z");
    kir_graph_destroy(g);
    assert_int_equal(kir_alloc_live(), base); /* nothing outlives the graph */
  }
  assert_int_equal(st, KILN_OK);
  assert_true(n > 3);
  kir_graph_destroy(orig);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_basic),
      cmocka_unit_test(test_chain_broadcast),
      cmocka_unit_test(test_chain_costly_broadcast),
      cmocka_unit_test(test_reduce_chains),
      cmocka_unit_test(test_reduce_single_producer),
      cmocka_unit_test(test_softmax_chain),
      cmocka_unit_test(test_why_second_consumer),
      cmocka_unit_test(test_why_fetched),
      cmocka_unit_test(test_why_device),
      cmocka_unit_test(test_why_int_chain),
      cmocka_unit_test(test_why_half_chain),
      cmocka_unit_test(test_why_taken_by_matmul),
      cmocka_unit_test(test_why_matmul_broadcast),
      cmocka_unit_test(test_mixed_graph),
      cmocka_unit_test(test_mlp_two_kernels),
      cmocka_unit_test(test_fused_op_checks),
      cmocka_unit_test(test_fuse_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
