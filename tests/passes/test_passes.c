/* test_passes.c — the passes fold, dce, fuse, place and plan-memory (the pass manager
 * is tested in test_manager.c). Every rewrite is checked against the reference
 * interpreter on the original graph. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt_graph.h"
#include "passes/kps.h"

/* ---------------------------------------------------------------- helpers ------- */

/* Runs `fetch` on g with every placeholder fed from kt_fill(seed, name) in [-1, 1). */
static kir_tensor *run_fetch(kir_graph *g, const char *fetch, uint64_t seed) {
  return kt_run_fetch(g, fetch, seed, -1, 1, -1);
}

/* Asserts that `after` computes the same `fetch` as `before`. */
static void assert_same(kir_graph *before, kir_graph *after, const char *fetch, uint64_t seed) {
  kir_tensor *want = run_fetch(before, fetch, seed);
  kir_tensor *got = run_fetch(after, fetch, seed);
  kt_assert_close(got, want, kt_tolerance(want->type.dtype));
  kir_tensor_free(want);
  kir_tensor_free(got);
}

static kps_result run_pass(kir_graph *g, kps_pass_fn fn, const kps_context *ctx) {
  kps_result res;
  memset(&res, 0, sizeof res);
  OK(g, fn(g, ctx, &res));
  return res;
}

/* x[4,8] -> mm = x @ w[8,5] -> add (+ b[5]) -> relu; plus a dead constant chain. */
static kir_graph *small_fold_graph(void) {
  kir_graph *g = kir_graph_create();
  int64_t d2[2] = {2, 3};
  kir_node *c1 = kt_cst(g, "c1", KILN_F32, 2, d2, 1, -1, 1);
  kir_node *c2 = kt_cst(g, "c2", KILN_F32, 2, d2, 2, -1, 1);
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", c1, c2);
  kir_node *b = kt_op2(g, KIR_OP_MUL, "b", a, c1);
  kir_node *r = kt_op1(g, KIR_OP_RELU, "r", b);
  kir_node *p = kt_ph(g, "p", KILN_F32, 2, d2);
  kt_op2(g, KIR_OP_ADD, "y", r, p);
  return g;
}

/* ---------------------------------------------------------------- fold ---------- */

static void test_fold_chain(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kir_graph *orig = kir_graph_clone(g);
  kps_result r = run_pass(g, kps_fold, &(kps_context){0});
  assert_int_equal(kt_stat_of(&r, "nodes folded"), 3);
  assert_int_equal(kt_stat_of(&r, "skipped (too large)"), 0);
  assert_true(r.changed);
  const char *folded[] = {"a", "b", "r"};
  for (int i = 0; i < 3; i++) {
    kir_node *n = kt_find(g, folded[i]);
    assert_int_equal(n->op, KIR_OP_CONSTANT);
    assert_int_equal(n->n_inputs, 0);
    assert_int_equal(n->n_attrs, 1);
    assert_non_null(kir_attr_tensor(n, "value"));
  }
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_ADD);
  assert_int_equal(kt_find(g, "p")->op, KIR_OP_PLACEHOLDER);
  OK(g, kir_verify(g));
  assert_same(orig, g, "y", 5);
  assert_same(orig, g, "r", 5);
  /* A second run finds nothing more. */
  r = run_pass(g, kps_fold, &(kps_context){0});
  assert_int_equal(kt_stat_of(&r, "nodes folded"), 0);
  assert_false(r.changed);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_fold_keeps_name_device_drops_attrs(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {4};
  kir_node *c = kt_cst(g, "c", KILN_F64, 1, d, 3, -2, 2);
  kir_node *k = kt_clamp(g, "k", c, -0.5, 0.5);
  k->device = kir_graph_strdup(g, "cpu:0");
  run_pass(g, kps_fold, &(kps_context){0});
  k = kt_find(g, "k");
  assert_int_equal(k->op, KIR_OP_CONSTANT);
  assert_string_equal(k->device, "cpu:0");
  assert_null(kir_attr_find(k, "min"));
  const kir_tensor *v = kir_attr_tensor(k, "value");
  const kir_tensor *cv = kir_attr_tensor(kt_find(g, "c"), "value");
  for (int i = 0; i < 4; i++) {
    double x = kir_tensor_get_f(cv, i);
    assert_true(kir_tensor_get_f(v, i) == (x < -0.5 ? -0.5 : x > 0.5 ? 0.5 : x));
  }
  OK(g, kir_verify(g));
  kir_graph_destroy(g);
}

static void test_fold_random_deterministic(void **state) {
  (void)state;
  int64_t d[2] = {3, 5};
  kir_graph *g1 = kir_graph_create(), *g2 = kir_graph_create();
  kir_node *r1 = kt_random(g1, KIR_OP_RANDOM_NORMAL, "rn", KILN_F32, 2, d, 42);
  kt_random(g2, KIR_OP_RANDOM_NORMAL, "rn", KILN_F32, 2, d, 42);
  kt_random(g1, KIR_OP_RANDOM_UNIFORM, "ru", KILN_F64, 2, d, 9);
  kir_graph *orig = kir_graph_clone(g1);
  kt_op1(g1, KIR_OP_NEG, "neg", r1);
  kps_result r = run_pass(g1, kps_fold, &(kps_context){0});
  assert_int_equal(kt_stat_of(&r, "nodes folded"), 3);
  run_pass(g2, kps_fold, &(kps_context){0});
  const kir_tensor *a = kir_attr_tensor(kt_find(g1, "rn"), "value");
  const kir_tensor *b = kir_attr_tensor(kt_find(g2, "rn"), "value");
  assert_non_null(a);
  assert_non_null(b);
  assert_memory_equal(a->data, b->data, 15 * sizeof(float));
  /* Same values as the interpreter gives the unfolded source. */
  assert_same(orig, g1, "rn", 1);
  assert_same(orig, g1, "ru", 1);
  /* Same as kir_random_fill directly. */
  kir_tensor *want = kir_tensor_new(&a->type);
  kir_random_fill(want, KIR_OP_RANDOM_NORMAL, 42, 0.0, 1.0);
  kt_assert_close(a, want, 0);
  kir_tensor_free(want);
  kir_graph_destroy(orig);
  kir_graph_destroy(g1);
  kir_graph_destroy(g2);
}

static void test_fold_leaves_state_and_inputs(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {3};
  kir_node *init = kt_cst(g, "init", KILN_F32, 1, d, 1, 0, 1);
  kir_node *v = kt_op1(g, KIR_OP_VARIABLE, "v", init);
  kir_node *one = kt_cst(g, "one", KILN_F32, 1, d, 2, 0, 1);
  kt_op2(g, KIR_OP_ASSIGN, "assign", v, one);
  kir_node *x = kt_ph(g, "x", KILN_F32, 1, d);
  kt_op2(g, KIR_OP_ADD, "xa", x, one);
  kt_op2(g, KIR_OP_ADD, "va", v, one);
  kps_result r = run_pass(g, kps_fold, &(kps_context){0});
  assert_int_equal(kt_stat_of(&r, "nodes folded"), 0);
  assert_int_equal(kt_find(g, "v")->op, KIR_OP_VARIABLE);
  assert_int_equal(kt_find(g, "assign")->op, KIR_OP_ASSIGN);
  assert_int_equal(kt_find(g, "x")->op, KIR_OP_PLACEHOLDER);
  assert_int_equal(kt_find(g, "xa")->op, KIR_OP_ADD);
  assert_int_equal(kt_find(g, "va")->op, KIR_OP_ADD);
  kir_graph_destroy(g);
}

static void test_fold_size_cap(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t big[2] = {4097, 4096}; /* f32: 64 MiB + 16 KiB */
  int64_t exact[2] = {4096, 4096}; /* f32: exactly 64 MiB, allowed */
  kt_random(g, KIR_OP_RANDOM_UNIFORM, "big", KILN_F32, 2, big, 1);
  kir_node *e = kt_random(g, KIR_OP_RANDOM_UNIFORM, "exact", KILN_F32, 2, exact, 1);
  (void)e;
  kps_result r = run_pass(g, kps_fold, &(kps_context){0});
  assert_int_equal(kt_stat_of(&r, "skipped (too large)"), 1);
  assert_int_equal(kt_stat_of(&r, "nodes folded"), 1);
  assert_int_equal(kt_find(g, "big")->op, KIR_OP_RANDOM_UNIFORM);
  assert_int_equal(kt_find(g, "exact")->op, KIR_OP_CONSTANT);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- dce ----------- */

static void test_dce(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  int64_t d[1] = {2};
  kt_ph(g, "unused_input", KILN_F32, 1, d);
  kir_node *dead = kt_cst(g, "dead", KILN_F32, 1, d, 4, 0, 1);
  kt_op1(g, KIR_OP_NEG, "dead2", dead);
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"r"};
  kps_result r = run_pass(g, kps_dce, &(kps_context){.roots = roots, .n_roots = 1});
  /* Kept: c1 c2 a b r (r's cone), p and unused_input (placeholders). */
  assert_int_equal(kt_stat_of(&r, "nodes removed"), 3);
  assert_int_equal(g->n_nodes, 7);
  assert_null(kir_graph_find(g, "y"));
  assert_null(kir_graph_find(g, "dead"));
  assert_null(kir_graph_find(g, "dead2"));
  kt_find(g, "unused_input");
  kt_find(g, "p");
  for (int32_t i = 0; i < g->n_nodes; i++) assert_int_equal(g->nodes[i]->id, i);
  OK(g, kir_verify(g));
  assert_same(orig, g, "r", 3);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_dce_unknown_root_and_no_roots(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  const char *roots[] = {"y", "nope"};
  kps_result res;
  memset(&res, 0, sizeof res);
  assert_int_equal(kps_dce(g, &(kps_context){.roots = roots, .n_roots = 2}, &res), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'nope'"));
  assert_int_equal(g->n_nodes, 7);
  kt_text log;
  kt_text_open(&log);
  kps_result r = run_pass(g, kps_dce, &(kps_context){.log = log.f});
  char *s = kt_text_close(&log);
  assert_int_equal(kt_stat_of(&r, "nodes removed"), 0);
  assert_false(r.changed);
  assert_int_equal(g->n_nodes, 7);
  assert_non_null(strstr(s, "dce: no roots"));
  free(s);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- fuse ---------- */

/* x[4,8] @ w[8,5] -> "mm" */
static kir_graph *mm_graph(kiln_dtype dt, kir_node **mm) {
  kir_graph *g = kir_graph_create();
  int64_t dx[2] = {4, 8}, dw[2] = {8, 5};
  kir_node *x = kt_ph(g, "x", dt, 2, dx);
  kir_node *w = kt_cst(g, "w", dt, 2, dw, 11, -1, 1);
  *mm = kt_op2(g, KIR_OP_MATMUL, "mm", x, w);
  return g;
}

static kps_result fuse(kir_graph *g, const char *root, char **log_text) {
  kt_text log;
  kt_text_open(&log);
  const char *roots[] = {root};
  kps_result r = run_pass(g, kps_fuse, &(kps_context){.roots = roots, .n_roots = 1, .log = log.f});
  char *s = kt_text_close(&log);
  if (log_text) *log_text = s;
  else free(s);
  return r;
}

static void test_fuse_bias_relu(void **state) {
  (void)state;
  kir_node *mm;
  kir_graph *g = mm_graph(KILN_F32, &mm);
  int64_t db[1] = {5};
  kir_node *b = kt_cst(g, "b", KILN_F32, 1, db, 12, -1, 1);
  kir_node *add = kt_op2(g, KIR_OP_ADD, "add", mm, b);
  kt_op1(g, KIR_OP_RELU, "relu", add);
  kir_graph *orig = kir_graph_clone(g);
  kps_result r = fuse(g, "relu", NULL);
  assert_int_equal(kt_stat_of(&r, "matmuls fused"), 1);
  assert_int_equal(kt_stat_of(&r, "ops absorbed"), 2);
  assert_int_equal(g->n_nodes, 4);
  kir_node *f = kt_find(g, "relu");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(f->id, 3);
  assert_int_equal(f->n_inputs, 3);
  assert_int_equal(f->inputs[0], kt_find(g, "x")->id);
  assert_int_equal(f->inputs[1], kt_find(g, "w")->id);
  assert_int_equal(f->inputs[2], kt_find(g, "b")->id);
  const char *from[] = {"mm", "add", "relu"};
  kt_assert_fused_from(f, from, 3);
  int64_t ops[2] = {KIR_OP_ADD, KIR_OP_RELU}, operand[2] = {2, -1}, swap[2] = {0, 0};
  kt_assert_ints(f, "epilogue", ops, 2);
  kt_assert_ints(f, "operand", operand, 2);
  kt_assert_ints(f, "swap", swap, 2);
  assert_null(kir_graph_find(g, "mm"));
  assert_null(kir_graph_find(g, "add"));
  OK(g, kir_verify(g));
  assert_same(orig, g, "relu", 21);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_fuse_bias_clamp(void **state) {
  (void)state;
  kir_node *mm;
  kir_graph *g = mm_graph(KILN_F64, &mm);
  int64_t db[2] = {1, 5};
  kir_node *b = kt_cst(g, "b", KILN_F64, 2, db, 13, -1, 1);
  kir_node *add = kt_op2(g, KIR_OP_ADD, "add", b, mm); /* bias first: still add, swap 1 */
  kt_clamp(g, "out", add, -0.25, 0.5);
  kir_graph *orig = kir_graph_clone(g);
  fuse(g, "out", NULL);
  kir_node *f = kt_find(g, "out");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  int32_t n = 0;
  const double *lo = kir_attr_floats(f, "clamp_min", &n);
  const double *hi = kir_attr_floats(f, "clamp_max", &n);
  assert_int_equal(n, 2);
  assert_true(isnan(lo[0]) && isnan(hi[0]));
  assert_true(lo[1] == -0.25 && hi[1] == 0.5);
  int64_t swap[2] = {1, 0};
  kt_assert_ints(f, "swap", swap, 2);
  OK(g, kir_verify(g));
  assert_same(orig, g, "out", 22);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_fuse_clamp_min_only(void **state) {
  (void)state;
  kir_node *mm;
  kir_graph *g = mm_graph(KILN_F32, &mm);
  kt_clamp(g, "h", mm, 0.0, NAN);
  kir_graph *orig = kir_graph_clone(g);
  fuse(g, "h", NULL);
  kir_node *f = kt_find(g, "h");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  int32_t n = 0;
  const double *lo = kir_attr_floats(f, "clamp_min", &n);
  const double *hi = kir_attr_floats(f, "clamp_max", &n);
  assert_int_equal(n, 1);
  assert_true(lo[0] == 0.0 && isnan(hi[0]));
  const char *from[] = {"mm", "h"};
  kt_assert_fused_from(f, from, 2);
  OK(g, kir_verify(g));
  assert_same(orig, g, "h", 23);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_fuse_swapped_sub_and_transpose(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t dx[2] = {8, 4}, dw[2] = {8, 5}, db[2] = {4, 5};
  kir_node *x = kt_ph(g, "x", KILN_F32, 2, dx);
  kir_node *w = kt_cst(g, "w", KILN_F32, 2, dw, 11, -1, 1);
  int32_t in[2] = {x->id, w->id};
  kir_node *mm = kir_node_add(g, KIR_OP_MATMUL, "mm", in, 2);
  OK(g, kir_attr_set_int(g, mm, "transpose_a", 1));
  kt_infer(g, mm);
  kir_node *b = kt_ph(g, "b", KILN_F32, 2, db);
  kir_node *sub = kt_op2(g, KIR_OP_SUB, "sub", b, mm);
  kir_node *t = kt_op1(g, KIR_OP_TANH, "t", sub);
  kir_node *m = kt_op2(g, KIR_OP_MUL, "m", t, b);
  (void)m;
  kir_graph *orig = kir_graph_clone(g);
  kps_result r = fuse(g, "m", NULL);
  assert_int_equal(kt_stat_of(&r, "ops absorbed"), 3);
  kir_node *f = kt_find(g, "m");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kir_attr_int(f, "transpose_a", 0), 1);
  int64_t ops[3] = {KIR_OP_SUB, KIR_OP_TANH, KIR_OP_MUL}, operand[3] = {2, -1, 3}, swap[3] = {1, 0, 0};
  kt_assert_ints(f, "epilogue", ops, 3);
  kt_assert_ints(f, "operand", operand, 3);
  kt_assert_ints(f, "swap", swap, 3);
  const char *from[] = {"mm", "sub", "t", "m"};
  kt_assert_fused_from(f, from, 4);
  OK(g, kir_verify(g));
  assert_same(orig, g, "m", 24);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* Builds mm -> relu, runs fuse with `root`, and asserts nothing was fused. */
static void expect_unfused(kir_graph *g, const char *root, const char *why) {
  kir_graph *orig = kir_graph_clone(g);
  int32_t n = g->n_nodes;
  char *log = NULL;
  kps_result r = fuse(g, root, &log);
  if (!strstr(log, why)) fail_msg("log '%s' lacks '%s'", log, why);
  free(log);
  assert_int_equal(kt_stat_of(&r, "matmuls fused"), 0);
  assert_false(r.changed);
  assert_int_equal(g->n_nodes, n);
  assert_int_equal(kt_find(g, "mm")->op, KIR_OP_MATMUL);
  OK(g, kir_verify(g));
  assert_same(orig, g, root, 25);
  kir_graph_destroy(orig);
}

static void test_fuse_refusals(void **state) {
  (void)state;
  kir_node *mm;
  /* The product has a second consumer. */
  kir_graph *g = mm_graph(KILN_F32, &mm);
  kir_node *r = kt_op1(g, KIR_OP_RELU, "relu", mm);
  kir_node *n2 = kt_op1(g, KIR_OP_NEG, "neg", mm);
  kt_op2(g, KIR_OP_ADD_N, "y", r, n2); /* add_n: not an elementwise chain either */
  expect_unfused(g, "y", "fuse: stopped after 'mm': 'mm' has 2 consumers ('relu', 'neg')\n");
  kir_graph_destroy(g);
  /* The product is fetched. */
  g = mm_graph(KILN_F32, &mm);
  kt_op1(g, KIR_OP_RELU, "relu", mm);
  expect_unfused(g, "mm", "'mm' is fetched");
  kir_graph_destroy(g);
  /* The bias would enlarge the product. */
  g = mm_graph(KILN_F32, &mm);
  int64_t db[3] = {3, 4, 5};
  kir_node *b = kt_ph(g, "bias3", KILN_F32, 3, db);
  kt_op2(g, KIR_OP_ADD, "y", mm, b);
  expect_unfused(g, "y", "'bias3' broadcasts the product from f32[4,5] to f32[3,4,5]");
  kir_graph_destroy(g);
  /* x*x. */
  g = mm_graph(KILN_F32, &mm);
  kt_op2(g, KIR_OP_MUL, "sq", mm, mm);
  expect_unfused(g, "sq", "'mm' has 2 consumers");
  kir_graph_destroy(g);
  /* Not elementwise. */
  g = mm_graph(KILN_F32, &mm);
  kt_op1(g, KIR_OP_REDUCE_SUM, "s", mm);
  expect_unfused(g, "s", "not elementwise (reduce_sum)");
  kir_graph_destroy(g);
  /* Another device. */
  g = mm_graph(KILN_F32, &mm);
  kir_node *e = kt_op1(g, KIR_OP_RELU, "relu", mm);
  e->device = kir_graph_strdup(g, "cuda:0");
  expect_unfused(g, "relu", "different device");
  kir_graph_destroy(g);
  /* Integer matmuls are not candidates (fused_matmul is float-only): no log. */
  g = mm_graph(KILN_I32, &mm);
  kt_op1(g, KIR_OP_RELU, "relu", mm);
  expect_unfused(g, "relu", "");
  kir_graph_destroy(g);
}

static void test_fuse_stops_midway(void **state) {
  (void)state;
  kir_node *mm;
  kir_graph *g = mm_graph(KILN_F32, &mm);
  int64_t db[1] = {5};
  kir_node *b = kt_cst(g, "b", KILN_F32, 1, db, 12, -1, 1);
  kir_node *add = kt_op2(g, KIR_OP_ADD, "h", mm, b);
  kir_node *r = kt_op1(g, KIR_OP_RELU, "relu", add);
  kt_op2(g, KIR_OP_ADD_N, "y", r, add); /* add_n: relu stays alone (no chain of one) */
  kir_graph *orig = kir_graph_clone(g);
  char *log = NULL;
  kps_result res = fuse(g, "y", &log);
  assert_non_null(strstr(log, "fuse: stopped after 'h': 'h' has 2 consumers"));
  free(log);
  assert_int_equal(kt_stat_of(&res, "ops absorbed"), 1);
  kir_node *f = kt_find(g, "h");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kt_find(g, "relu")->op, KIR_OP_RELU);
  OK(g, kir_verify(g));
  assert_same(orig, g, "y", 26);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

static void test_fuse_two_matmuls_share_add(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[2] = {4, 4};
  kir_node *x = kt_ph(g, "x", KILN_F32, 2, d);
  kir_node *w1 = kt_cst(g, "w1", KILN_F32, 2, d, 1, -1, 1);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, 2, d, 2, -1, 1);
  kir_node *m1 = kt_op2(g, KIR_OP_MATMUL, "m1", x, w1);
  kir_node *m2 = kt_op2(g, KIR_OP_MATMUL, "m2", x, w2);
  kir_node *s = kt_op2(g, KIR_OP_ADD, "s", m1, m2);
  kt_op1(g, KIR_OP_SIGMOID, "y", s);
  kir_graph *orig = kir_graph_clone(g);
  kps_result r = fuse(g, "y", NULL);
  assert_int_equal(kt_stat_of(&r, "matmuls fused"), 1);
  kir_node *f = kt_find(g, "y");
  assert_int_equal(f->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(f->inputs[2], kt_find(g, "m2")->id);
  assert_int_equal(kt_find(g, "m2")->op, KIR_OP_MATMUL);
  OK(g, kir_verify(g));
  assert_same(orig, g, "y", 27);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- place --------- */

static void test_normalize(void **state) {
  (void)state;
  struct { const char *in, *out; } ok[] = {
      {"/cpu:0", "cpu:0"}, {"/device:GPU:1", "cuda:1"}, {"CPU", "cpu:0"}, {"cuda:2", "cuda:2"},
      {"/gpu:1", "cuda:1"}, {"/device:CPU:0", "cpu:0"}, {"cpu:0", "cpu:0"}, {"GPU", "cuda:0"},
      {"/job:localhost/replica:0/task:0/device:GPU:3", "cuda:3"}, {"Cuda:12", "cuda:12"}};
  char out[32];
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    if (!kps_device_normalize(ok[i].in, out, sizeof out)) fail_msg("'%s' refused", ok[i].in);
    assert_string_equal(out, ok[i].out);
  }
  const char *bad[] = {"garbage", "", "tpu:0", "cpu:", "cpu:x", "cpu:-1", "cpu:0:1", "/cpu:0/gpu:0",
                       "cpu0", "/device:", "cpu:0/job:x", "cpu :0", "cpu:99999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (kps_device_normalize(bad[i], out, sizeof out)) fail_msg("'%s' accepted as '%s'", bad[i], out);
  assert_false(kps_device_normalize(NULL, out, sizeof out));
  assert_false(kps_device_normalize("cuda:10", out, 6)); /* does not fit */
}

/* ---------------------------------------------------------------- plan ---------- */
/* (place and plan-memory have their own tests: test_place.c, test_plan.c) */

/* No two arena buffers that are live at the same time share a byte. */
static void assert_plan_sound(const kir_graph *g, const kps_memplan *p, const int32_t *outs, int32_t n_outs) {
  int32_t n = g->n_nodes;
  int32_t *last = calloc((size_t)n, sizeof *last);
  assert_non_null(last);
  for (int32_t i = 0; i < n; i++) last[i] = -1;
  for (int32_t i = 0; i < n; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) last[g->nodes[i]->inputs[k]] = i;
  for (int32_t o = 0; o < n_outs; o++) last[outs[o]] = n;
  for (int32_t i = 0; i < n; i++) {
    if (p->loc[i] != KPS_LOC_ARENA) continue;
    assert_int_equal(p->offset[i] % 64, 0);
    assert_true(p->offset[i] + p->size[i] <= p->arena_bytes);
    assert_int_equal(p->size[i], kir_type_nbytes(&g->nodes[i]->type));
    for (int32_t j = i + 1; j < n; j++) {
      if (p->loc[j] != KPS_LOC_ARENA || p->size[i] == 0 || p->size[j] == 0) continue;
      if (j > last[i]) continue; /* i dead before j is made */
      if (j == last[i] && p->inplace_of[j] == i) continue; /* j writes over i in place */
      bool overlap = p->offset[i] < p->offset[j] + p->size[j] && p->offset[j] < p->offset[i] + p->size[i];
      if (overlap) fail_msg("nodes %d and %d overlap while both live", (int)i, (int)j);
    }
  }
  free(last);
}

/* ---------------------------------------------------------------- end to end ---- */

static kir_graph *mlp(void) {
  kir_graph *g = kir_graph_create();
  int64_t dx[2] = {8, 16}, dw1[2] = {16, 32}, db1[1] = {32}, dw2[2] = {32, 4};
  kir_node *x = kt_ph(g, "x", KILN_F32, 2, dx);
  kir_node *w1 = kt_random(g, KIR_OP_RANDOM_NORMAL, "w1", KILN_F32, 2, dw1, 7);
  kir_node *b1 = kt_cst(g, "b1", KILN_F32, 1, db1, 8, -0.5, 0.5);
  kir_node *mm1 = kt_op2(g, KIR_OP_MATMUL, "layer1/matmul", x, w1);
  kir_node *add = kt_op2(g, KIR_OP_ADD, "layer1/add", mm1, b1);
  kir_node *h = kt_op1(g, KIR_OP_RELU, "h", add);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, 2, dw2, 9, -1, 1);
  kt_op2(g, KIR_OP_MATMUL, "y", h, w2);
  kt_op1(g, KIR_OP_EXP, "unused", h);
  return g;
}

static void test_end_to_end_mlp(void **state) {
  (void)state;
  kir_graph *g = mlp();
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[] = {"y"};
  kt_text log;
  kt_text_open(&log);
  kps_options opt = {.verify_each = true, .log = log.f};
  kps_context ctx = {.roots = roots, .n_roots = 1, .log = log.f};
  OK(g, kps_run(g, &opt, &ctx));
  char *s = kt_text_close(&log);
  assert_non_null(strstr(s, "pass infer-shapes: no change ["));
  assert_non_null(strstr(s, "pass fold: 1 nodes folded"));
  assert_non_null(strstr(s, "pass dce: 1 nodes removed"));
  assert_non_null(strstr(s, "pass fuse: 1 matmuls fused, 2 ops absorbed"));
  assert_non_null(strstr(s, "pass place: 6 nodes placed ["));
  free(s);
  assert_int_equal(kt_find(g, "w1")->op, KIR_OP_CONSTANT);
  assert_int_equal(kt_find(g, "h")->op, KIR_OP_FUSED_MATMUL);
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_MATMUL);
  assert_null(kir_graph_find(g, "unused"));
  assert_same(orig, g, "y", 31);
  int32_t out = kt_find(g, "y")->id;
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  assert_plan_sound(g, &p, &out, 1);
  assert_int_equal(p.loc[kt_find(g, "h")->id], KPS_LOC_ARENA);
  assert_int_equal(p.loc[out], KPS_LOC_ARENA);
  kps_memplan_free(&p);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* SQLite-style: the Nth allocation fails, for N = 0, 1, ... until the call succeeds.
 * Each failure is out-of-memory, leaks nothing, and leaves a graph that verifies and
 * still computes the original's result. */
static void test_out_of_memory(void **state) {
  (void)state;
  kir_graph *orig = mlp();
  const char *roots[] = {"y"};
  kps_context ctx = {.roots = roots, .n_roots = 1};
  kps_options opt = {.pipeline = "infer-shapes,fold,dce,fuse,place"};
  kiln_status st = KILN_ERR_NOMEM;
  int failures = 0;
  for (long n = 0; st != KILN_OK; n++) {
    assert_true(n < 10000);
    long live = kir_alloc_live();
    kir_graph *g = kir_graph_clone(orig);
    assert_non_null(g);
    kir_alloc_fail_after(n);
    st = kps_run(g, &opt, &ctx);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      failures++;
      if (st != KILN_ERR_NOMEM) fail_msg("n=%ld: %s: %s", n, kiln_status_name(st), g->error);
    }
    OK(g, kir_verify(g));
    assert_same(orig, g, "y", 41);
    kir_graph_destroy(g);
    if (kir_alloc_live() != live) fail_msg("n=%ld leaked %ld blocks", n, kir_alloc_live() - live);
  }
  assert_true(failures > 0);
  /* The memory plan too. */
  kir_graph *g = kir_graph_clone(orig);
  OK(g, kps_run(g, &opt, &ctx));
  int32_t out = kt_find(g, "y")->id;
  st = KILN_ERR_NOMEM;
  for (long n = 0; st != KILN_OK; n++) {
    kps_memplan p;
    long live = kir_alloc_live();
    kir_alloc_fail_after(n);
    st = kps_plan_memory(g, &out, 1, &p);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      assert_int_equal(st, KILN_ERR_NOMEM);
      assert_null(p.loc);
      assert_int_equal(kir_alloc_live(), live);
    }
    kps_memplan_free(&p);
  }
  kir_graph_destroy(g);
  kir_graph_destroy(orig);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fold_chain),
      cmocka_unit_test(test_fold_keeps_name_device_drops_attrs),
      cmocka_unit_test(test_fold_random_deterministic),
      cmocka_unit_test(test_fold_leaves_state_and_inputs),
      cmocka_unit_test(test_fold_size_cap),
      cmocka_unit_test(test_dce),
      cmocka_unit_test(test_dce_unknown_root_and_no_roots),
      cmocka_unit_test(test_fuse_bias_relu),
      cmocka_unit_test(test_fuse_bias_clamp),
      cmocka_unit_test(test_fuse_clamp_min_only),
      cmocka_unit_test(test_fuse_swapped_sub_and_transpose),
      cmocka_unit_test(test_fuse_refusals),
      cmocka_unit_test(test_fuse_stops_midway),
      cmocka_unit_test(test_fuse_two_matmuls_share_add),
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_end_to_end_mlp),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests_name("passes", tests, NULL, NULL);
}
