/* test_simplify.c — the simplify and cse passes: each rewrite fires on a small graph and
 * not on its near miss; the rewritten graph verifies and computes what the original
 * computes under the reference interpreter (exactly, except reduce_sum(matmul), which is
 * a reassociation checked at the dtype's tolerance); a second run changes nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt_graph.h"
#include "passes/kps.h"

/* ---------------------------------------------------------------- builders ------ */

static const int64_t D4[1] = {4}, D34[2] = {3, 4}, D1[1] = {1};

static kir_node *rsum(kir_graph *g, const char *name, const kir_node *a, const int64_t *axes,
                      int32_t n_axes, int keep) {
  return kt_reduce(g, KIR_OP_REDUCE_SUM, name, a, axes, n_axes, keep);
}

static kir_node *rnd(kir_graph *g, const char *name, int64_t seed) {
  return kt_random(g, KIR_OP_RANDOM_NORMAL, name, KILN_F32, 1, D4, seed);
}

/* Runs `fetch` with every placeholder fed from kt_fill, seeded by its name, in [-3, 3). */
static kir_tensor *run_fetch(kir_graph *g, const char *fetch, uint64_t seed) {
  return kt_run_fetch(g, fetch, seed, -3, 3, -3);
}

/* A constant whose every element is v. */
static kir_node *fill(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank,
                      const int64_t *dims, double v) {
  kir_type t = kt_type(dt, rank, dims);
  kir_tensor *x = kir_tensor_new(&t);
  assert_non_null(x);
  for (int64_t i = 0; i < kir_type_numel(&t); i++) { /* integers wrap: -1 is the maximum */
    if (kir_dtype_is_float(dt)) kir_tensor_set_f(x, i, v);
    else kir_tensor_set_i(x, i, (int64_t)v);
  }
  kir_node *n = kt_const_tensor(g, name, x);
  kir_tensor_free(x);
  return n;
}

static const kir_node *in0(const kir_graph *g, const char *name) {
  return g->nodes[kt_find(g, name)->inputs[0]];
}

/* ---------------------------------------------------------------- checking ------ */

static char *print_graph(const kir_graph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  kir_graph_print(g, f);
  fclose(f);
  return buf;
}

static kps_result run_pass(kir_graph *g, kps_pass_fn fn, const char *const *roots, int32_t n_roots) {
  kps_context ctx = {.roots = roots, .n_roots = n_roots};
  kps_result res;
  memset(&res, 0, sizeof res);
  OK(g, fn(g, &ctx, &res));
  return res;
}

/* Runs fn on g with `root` as the one root and checks the contract: the graph verifies,
 * the root keeps its name and value (within tol; 0 = exact), and a second run reports
 * no change and leaves the printed graph as it was. */
static kps_result check_pass(kir_graph *g, kps_pass_fn fn, const char *root, double tol) {
  kir_graph *orig = kir_graph_clone(g);
  assert_non_null(orig);
  const char *roots[1] = {root};
  kps_result res = run_pass(g, fn, roots, 1);
  OK(g, kir_verify(g));
  for (uint64_t seed = 1; seed <= 3; seed++) {
    kir_tensor *want = run_fetch(orig, root, seed), *got = run_fetch(g, root, seed);
    kt_assert_close(got, want, tol);
    kir_tensor_free(want);
    kir_tensor_free(got);
  }
  char *before = print_graph(g);
  kps_result again = run_pass(g, fn, roots, 1);
  char *after = print_graph(g);
  assert_false(again.changed);
  for (int32_t i = 0; i < again.n_stats; i++) assert_int_equal(again.stats[i].value, 0);
  assert_string_equal(before, after);
  free(before);
  free(after);
  kir_graph_destroy(orig);
  return res;
}

static int32_t count_op(const kir_graph *g, kir_op op) {
  int32_t c = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) c += g->nodes[i]->op == op;
  return c;
}

#define ARITH "arithmetic identities removed"

/* ---------------------------------------------------------------- identities ---- */

/* y = relu(x op c) with c constant; returns g. The rewrite is judged by y's input. */
static kir_graph *binary_graph(kir_op op, kiln_dtype dt, double c, int c_left,
                               int32_t x_rank, const int64_t *x_dims,
                               int32_t c_rank, const int64_t *c_dims) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  kir_node *x = kt_ph(g, "x", dt, x_rank, x_dims);
  kir_node *k = fill(g, "c", dt, c_rank, c_dims, c);
  kir_node *b = c_left ? kt_op2(g, op, "b", k, x) : kt_op2(g, op, "b", x, k);
  kt_op1(g, KIR_OP_NEG, "y", b);
  return g;
}

/* Whether simplify removed b (y then reads x directly). */
static bool binary_fires(kir_op op, kiln_dtype dt, double c, int c_left, int32_t x_rank,
                         const int64_t *x_dims, int32_t c_rank, const int64_t *c_dims) {
  kir_graph *g = binary_graph(op, dt, c, c_left, x_rank, x_dims, c_rank, c_dims);
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  bool fired = kir_graph_find(g, "b") == NULL;
  assert_int_equal(kt_stat_of(&r, ARITH), fired ? 1 : 0);
  if (fired) assert_string_equal(in0(g, "y")->name, "x");
  kir_graph_destroy(g);
  return fired;
}

static void test_arith_identities(void **state) {
  (void)state;
  const kiln_dtype floats[] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16};
  const kiln_dtype ints[] = {KILN_I32, KILN_I64, KILN_U8, KILN_I8, KILN_U16, KILN_I16, KILN_U32, KILN_U64};
  for (int i = 0; i < 4; i++) {
    kiln_dtype f = floats[i];
    assert_true(binary_fires(KIR_OP_MUL, f, 1, 0, 1, D4, 1, D4));
    assert_true(binary_fires(KIR_OP_MUL, f, 1, 1, 1, D4, 0, NULL)); /* 1 * x, scalar */
    assert_true(binary_fires(KIR_OP_DIV, f, 1, 0, 2, D34, 1, D4));  /* x / 1, a row */
    assert_true(binary_fires(KIR_OP_ADD, f, -0.0, 0, 1, D4, 1, D4));
    assert_true(binary_fires(KIR_OP_ADD, f, -0.0, 1, 1, D4, 1, D1)); /* -0 + x */
    assert_true(binary_fires(KIR_OP_SUB, f, 0.0, 0, 1, D4, 1, D4));
    /* Not exact for x = -0.0: (-0.0) + (+0.0) = +0.0, (-0.0) - (-0.0) = +0.0. */
    assert_false(binary_fires(KIR_OP_ADD, f, 0.0, 0, 1, D4, 1, D4));
    assert_false(binary_fires(KIR_OP_ADD, f, 0.0, 1, 1, D4, 1, D4));
    assert_false(binary_fires(KIR_OP_SUB, f, -0.0, 0, 1, D4, 1, D4));
    /* Not neutral, or on the wrong side. */
    assert_false(binary_fires(KIR_OP_MUL, f, 2, 0, 1, D4, 1, D4));
    assert_false(binary_fires(KIR_OP_DIV, f, 1, 1, 1, D4, 1, D4)); /* 1 / x */
    assert_false(binary_fires(KIR_OP_SUB, f, 0.0, 1, 1, D4, 1, D4)); /* 0 - x */
  }
  for (int i = 0; i < 8; i++) {
    kiln_dtype n = ints[i];
    /* Integers, signed or not: any zero. */
    assert_true(binary_fires(KIR_OP_ADD, n, 0, 0, 1, D4, 1, D4));
    assert_true(binary_fires(KIR_OP_ADD, n, 0, 1, 1, D4, 0, NULL));
    assert_true(binary_fires(KIR_OP_SUB, n, 0, 0, 1, D4, 1, D4));
    assert_true(binary_fires(KIR_OP_MUL, n, 1, 1, 1, D4, 1, D4));
    assert_true(binary_fires(KIR_OP_DIV, n, 1, 0, 1, D4, 1, D4));
    assert_false(binary_fires(KIR_OP_SUB, n, 0, 1, 1, D4, 1, D4));
    assert_false(binary_fires(KIR_OP_MUL, n, -1, 0, 1, D4, 1, D4)); /* unsigned: the maximum */
  }
}

/* x[4] + zeros[3,4] is [3,4]: replacing it by x would change the shape. */
static void test_broadcast_near_miss(void **state) {
  (void)state;
  assert_false(binary_fires(KIR_OP_ADD, KILN_I32, 0, 0, 1, D4, 2, D34));
  assert_false(binary_fires(KIR_OP_MUL, KILN_F32, 1, 1, 1, D4, 2, D34));
  assert_false(binary_fires(KIR_OP_MUL, KILN_F32, 1, 0, 0, NULL, 1, D4)); /* scalar x */
  assert_true(binary_fires(KIR_OP_MUL, KILN_F32, 1, 0, 2, D34, 1, D1));
}

/* One element off, or an operand that is not a constant: no rewrite. */
static void test_not_constant(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, 1, D4), *p = kt_ph(g, "p", KILN_F32, 1, D4);
  kir_type t = kt_type(KILN_F32, 1, D4);
  kir_tensor *v = kir_tensor_new(&t);
  float ones[4] = {1, 1, 1, 1.0000001f};
  memcpy(v->data, ones, sizeof ones);
  kir_node *c = kt_const_tensor(g, "c", v);
  kir_tensor_free(v);
  kir_node *a = kt_op2(g, KIR_OP_MUL, "a", x, c);
  kir_node *b = kt_op2(g, KIR_OP_MUL, "b", a, p);
  kt_op1(g, KIR_OP_NEG, "y", b);
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  assert_false(r.changed);
  assert_int_equal(g->n_nodes, 6);
  kir_graph_destroy(g);
}

/* The sign of zero survives x + (-0.0) and x - (+0.0), bit for bit. */
static void test_negative_zero_exact(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, 1, D4);
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", x, fill(g, "nz", KILN_F32, 1, D4, -0.0));
  kt_op2(g, KIR_OP_SUB, "y", a, fill(g, "pz", KILN_F32, 1, D4, 0.0));
  kir_graph *orig = kir_graph_clone(g);
  const char *roots[1] = {"y"};
  kps_result r = run_pass(g, kps_simplify, roots, 1);
  assert_int_equal(kt_stat_of(&r, ARITH), 2);
  assert_int_equal(kt_stat_of(&r, "roots kept as identity"), 1);
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_IDENTITY);
  const float xs[4] = {-0.0f, 0.0f, -1.5f, INFINITY};
  kir_tensor *xv = kir_tensor_new(&x->type);
  memcpy(xv->data, xs, sizeof xs);
  kir_graph *gs[2] = {orig, g};
  kir_tensor *out[2];
  for (int i = 0; i < 2; i++) {
    kir_feed f = {kt_find(gs[i], "x")->id, xv};
    int32_t y = kt_find(gs[i], "y")->id;
    OK(gs[i], kir_interp_run(gs[i], NULL, &f, 1, &y, 1, NULL, 0, &out[i]));
  }
  assert_memory_equal(out[0]->data, xs, sizeof xs);
  assert_memory_equal(out[1]->data, xs, sizeof xs);
  kir_tensor_free(out[0]);
  kir_tensor_free(out[1]);
  kir_tensor_free(xv);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* A root that would be replaced becomes an identity under its own name. */
static void test_root_becomes_identity(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_I64, 1, D4);
  kir_node *y = kt_op2(g, KIR_OP_MUL, "y", x, fill(g, "one", KILN_I64, 0, NULL, 1));
  kt_op1(g, KIR_OP_RELU, "z", y);
  const char *roots[2] = {"y", "z"};
  kps_result r = run_pass(g, kps_simplify, roots, 2);
  OK(g, kir_verify(g));
  assert_int_equal(kt_stat_of(&r, "roots kept as identity"), 1);
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_IDENTITY);
  assert_int_equal(kt_find(g, "y")->n_attrs, 0);
  assert_string_equal(in0(g, "y")->name, "x");
  assert_string_equal(in0(g, "z")->name, "x"); /* users read the survivor */
  r = run_pass(g, kps_simplify, roots, 2);
  assert_false(r.changed);
  kir_graph_destroy(g);
}

static void test_identity_nodes(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, 1, D4);
  kir_node *i1 = kt_op1(g, KIR_OP_IDENTITY, "i1", x);
  kir_node *i2 = kt_op1(g, KIR_OP_IDENTITY, "i2", i1);
  kir_node *pinned = kt_op1(g, KIR_OP_IDENTITY, "pinned", i2);
  pinned->device = kir_graph_strdup(g, "cuda:0"); /* an explicit copy: kept */
  kt_op1(g, KIR_OP_IDENTITY, "y", pinned);
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  assert_int_equal(kt_stat_of(&r, "identity nodes removed"), 2);
  assert_null(kir_graph_find(g, "i1"));
  assert_null(kir_graph_find(g, "i2"));
  assert_string_equal(in0(g, "pinned")->name, "x");
  assert_string_equal(in0(g, "y")->name, "pinned");
  kir_graph_destroy(g);
}

static void test_neg_relu_pairs(void **state) {
  (void)state;
  const kiln_dtype dts[] = {KILN_I32, KILN_U32, KILN_I8, KILN_F16};
  for (int d = 0; d < 4; d++) {
    kir_graph *g = kir_graph_create();
    kir_node *x = kt_ph(g, "x", dts[d], 1, D4);
    kir_node *n3 = kt_op1(g, KIR_OP_NEG, "n3", kt_op1(g, KIR_OP_NEG, "n2", kt_op1(g, KIR_OP_NEG, "n1", x)));
    kir_node *r2 = kt_op1(g, KIR_OP_RELU, "r2", kt_op1(g, KIR_OP_RELU, "r1", n3));
    kt_op1(g, KIR_OP_RELU, "y", kt_op1(g, KIR_OP_NEG, "m2", kt_op1(g, KIR_OP_NEG, "m1", r2)));
    kps_result r = check_pass(g, kps_simplify, "y", 0);
    /* n2 -> x, so n3 = neg(x); r2 -> r1; m2 -> r1; y = relu(r1) -> r1 is a root: identity. */
    assert_int_equal(kt_stat_of(&r, "neg/relu/abs pairs removed"), 4);
    assert_string_equal(in0(g, "n3")->name, "x");
    assert_int_equal(kt_find(g, "y")->op, KIR_OP_IDENTITY);
    assert_string_equal(in0(g, "y")->name, "r1");
    kir_graph_destroy(g);
  }
}

static void test_transposes(void **state) {
  (void)state;
  const int64_t d[3] = {2, 3, 4}, p1[3] = {1, 2, 0}, p2[3] = {2, 0, 1}, p3[3] = {0, 2, 1};
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F64, 3, d);
  kir_node *t1 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t1", x, "perm", p1, 3);
  kir_node *t2 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t2", t1, "perm", p2, 3); /* = x */
  kir_node *t3 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t3", t2, "perm", p3, 3);
  kir_node *t4 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t4", t3, "perm", p1, 3);
  kir_node *t5 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t5", t4, "perm", NULL, 0); /* reversed */
  kir_node *t6 = kt_with_ints(g, KIR_OP_TRANSPOSE, "t6", t5, "perm", NULL, 0);
  kt_op1(g, KIR_OP_NEG, "y", t6);
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  /* t2 = x; t4 = transpose(x, [2,1,0]) in place; t5 reverses that again: x. */
  assert_int_equal(kt_stat_of(&r, "transposes merged"), 3);
  assert_null(kir_graph_find(g, "t2"));
  assert_null(kir_graph_find(g, "t5"));
  assert_string_equal(in0(g, "t3")->name, "x");
  assert_string_equal(in0(g, "t4")->name, "x");
  assert_string_equal(in0(g, "t6")->name, "x");
  assert_string_equal(in0(g, "y")->name, "t6");
  assert_int_equal(count_op(g, KIR_OP_TRANSPOSE), 4); /* t1, t3, t4 dead, left for dce */
  kir_graph_destroy(g);
}

static void test_reshapes(void **state) {
  (void)state;
  const int64_t d[2] = {6, 4}, s1[2] = {4, -1}, s2[3] = {2, 3, 4}, s3[1] = {24}, s4[2] = {6, 4};
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, 2, d);
  kir_node *r1 = kt_with_ints(g, KIR_OP_RESHAPE, "r1", x, "shape", s1, 2);
  kir_node *r2 = kt_with_ints(g, KIR_OP_RESHAPE, "r2", r1, "shape", s2, 3);
  kir_node *r3 = kt_with_ints(g, KIR_OP_RESHAPE, "r3", r2, "shape", s3, 1);
  kir_node *r4 = kt_with_ints(g, KIR_OP_RESHAPE, "r4", r3, "shape", s4, 2); /* = x */
  kir_node *same = kt_with_ints(g, KIR_OP_RESHAPE, "same", r4, "shape", s4, 2);
  kt_op1(g, KIR_OP_NEG, "y", same);
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  assert_int_equal(kt_stat_of(&r, "reshapes merged"), 4);
  assert_string_equal(in0(g, "r3")->name, "x");
  assert_string_equal(in0(g, "y")->name, "x");
  kir_graph_destroy(g);
}

/* clamp(clamp(x)) with intervals a then b merges when they intersect. */
static bool clamp_merges(kiln_dtype dt, double lo1, double hi1, double lo2, double hi2) {
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", dt, 2, D34);
  kt_op1(g, KIR_OP_NEG, "y", kt_clamp(g, "c2", kt_clamp(g, "c1", x, lo1, hi1), lo2, hi2));
  kps_result r = check_pass(g, kps_simplify, "y", 0);
  bool merged = kt_stat_of(&r, "clamps merged") == 1;
  if (merged) assert_string_equal(in0(g, "c2")->name, "x");
  kir_graph_destroy(g);
  return merged;
}

static void test_clamps(void **state) {
  (void)state;
  const kiln_dtype all[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64};
  for (int i = 0; i < 4; i++) {
    assert_true(clamp_merges(all[i], -1, 2, 0, 5));
    assert_true(clamp_merges(all[i], -1.5, NAN, NAN, 0.7));
    assert_true(clamp_merges(all[i], NAN, NAN, -0.1, 1.1));
    assert_true(clamp_merges(all[i], 0.1, 2.9, -0.3, 1.7)); /* rounding bounds */
    assert_false(clamp_merges(all[i], 0, 1, 2, 3)); /* disjoint: always 2, not a clamp */
    assert_false(clamp_merges(all[i], 3, 1, NAN, NAN)); /* crossed bounds */
  }
  /* For integers [0.2, 0.8] holds no integer: left alone. */
  assert_false(clamp_merges(KILN_I32, -5, 5, 0.2, 0.8));
  assert_true(clamp_merges(KILN_F32, -5, 5, 0.2, 0.8));
  /* The merged clamp keeps the tighter bounds. */
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, 1, D4);
  kt_clamp(g, "y", kt_clamp(g, "c1", x, -1, 2), 0, 5);
  check_pass(g, kps_simplify, "y", 0);
  assert_true(kir_attr_float(kt_find(g, "y"), "min", NAN) == 0.0);
  assert_true(kir_attr_float(kt_find(g, "y"), "max", NAN) == 2.0);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- reduce_sum(matmul) */

static kir_graph *rsum_matmul_graph(kiln_dtype dt, int ta, int tb, const int64_t *axes,
                                    int32_t n_axes, int keep) {
  const int64_t m = 5, k = 7, n = 3;
  int64_t da[2] = {ta ? k : m, ta ? m : k}, db[2] = {tb ? n : k, tb ? k : n};
  kir_graph *g = kir_graph_create();
  kir_node *a = kt_ph(g, "A", dt, 2, da), *b = kt_ph(g, "B", dt, 2, db);
  rsum(g, "sum", kt_matmul(g, "mm", a, b, ta, tb), axes, n_axes, keep);
  return g;
}

static void test_reduce_sum_matmul(void **state) {
  (void)state;
  const kiln_dtype all[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_U8, KILN_U64};
  const int64_t both[2] = {-1, 0};
  for (int d = 0; d < 6; d++)
    for (int t = 0; t < 4; t++)
      for (int form = 0; form < 3; form++) {
        kir_graph *g = rsum_matmul_graph(all[d], t & 1, t >> 1, form == 1 ? both : NULL,
                                         form == 1 ? 2 : 0, form == 2);
        kir_type want = kt_find(g, "sum")->type;
        kps_result r = check_pass(g, kps_simplify, "sum", kt_tolerance(all[d]));
        assert_int_equal(kt_stat_of(&r, "reduce_sum(matmul) rewritten"), 1);
        assert_true(kir_type_equal(&kt_find(g, "sum")->type, &want));
        const char *roots[1] = {"sum"};
        run_pass(g, kps_dce, roots, 1);
        assert_int_equal(count_op(g, KIR_OP_MATMUL), 0);
        assert_int_equal(count_op(g, KIR_OP_REDUCE_SUM), 3);
        kir_graph_destroy(g);
      }
}

static void test_reduce_sum_matmul_near_miss(void **state) {
  (void)state;
  const int64_t ax0[1] = {0};
  /* Over one axis only. */
  kir_graph *g = rsum_matmul_graph(KILN_F32, 0, 0, ax0, 1, 0);
  kps_result r = check_pass(g, kps_simplify, "sum", 0);
  assert_false(r.changed);
  kir_graph_destroy(g);
  /* The product has another live user, or is a root itself. */
  for (int variant = 0; variant < 2; variant++) {
    g = rsum_matmul_graph(KILN_F32, 0, 0, NULL, 0, 0);
    const char *roots2[2] = {"sum", variant ? "mm" : "other"};
    if (!variant) kt_op1(g, KIR_OP_NEG, "other", kt_find(g, "mm"));
    r = run_pass(g, kps_simplify, roots2, 2);
    assert_false(r.changed);
    kir_graph_destroy(g);
  }
  /* A dead second user does not count. */
  g = rsum_matmul_graph(KILN_F32, 0, 0, NULL, 0, 0);
  kt_op1(g, KIR_OP_NEG, "dead", kt_find(g, "mm"));
  r = check_pass(g, kps_simplify, "sum", kt_tolerance(KILN_F32));
  assert_int_equal(kt_stat_of(&r, "reduce_sum(matmul) rewritten"), 1);
  kir_graph_destroy(g);
  /* f16/bf16: the reassociation's extra roundings exceed their tolerance: skipped. */
  const kiln_dtype halves[2] = {KILN_F16, KILN_BF16};
  for (int h = 0; h < 2; h++) {
    g = rsum_matmul_graph(halves[h], 0, 0, NULL, 0, 0);
    r = check_pass(g, kps_simplify, "sum", 0);
    assert_false(r.changed);
    kir_graph_destroy(g);
  }
  /* Batched matmul: skipped. */
  const int64_t d3[3] = {2, 3, 4}, e3[3] = {2, 4, 5};
  g = kir_graph_create();
  rsum(g, "sum", kt_matmul(g, "mm", kt_ph(g, "A", KILN_F32, 3, d3), kt_ph(g, "B", KILN_F32, 3, e3), 0, 0),
       NULL, 0, 0);
  r = check_pass(g, kps_simplify, "sum", 0);
  assert_false(r.changed);
  kir_graph_destroy(g);
}

/* The lecture's program with W, X fed (so nothing folds): after simplify,dce no computed
 * node is 500x500, and the memory plan's arena is a few KiB instead of ~1 MB. */
static void test_seed_device_no_product_buffer(void **state) {
  (void)state;
  const int64_t d[2] = {500, 500};
  kir_graph *g = kir_graph_create();
  kir_node *w = kt_ph(g, "W", KILN_F32, 2, d), *x = kt_ph(g, "X", KILN_F32, 2, d);
  kir_node *s = rsum(g, "sum", kt_matmul(g, "mul", w, x, 0, 0), NULL, 0, 0);
  s->device = kir_graph_strdup(g, "cpu:0");
  kir_graph *orig = kir_graph_clone(g);
  kps_options opt = {.pipeline = "simplify,dce", .verify_each = true};
  const char *roots[1] = {"sum"};
  kps_context ctx = {.roots = roots, .n_roots = 1};
  OK(g, kps_run(g, &opt, &ctx));
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_PLACEHOLDER) continue;
    assert_false(kir_type_equal(&n->type, &w->type));
    assert_string_equal(n->device, "cpu:0");
  }
  int32_t out = kt_find(g, "sum")->id;
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  assert_true(p.arena_bytes < 500 * 500 * 4 / 50);
  kps_memplan_free(&p);
  kir_tensor *want = run_fetch(orig, "sum", 9), *got = run_fetch(g, "sum", 9);
  kt_assert_close(got, want, kt_tolerance(KILN_F32));
  kir_tensor_free(want);
  kir_tensor_free(got);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- cse ----------- */

static void test_cse_merges(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *a = kt_ph(g, "a", KILN_F32, 1, D4), *b = kt_ph(g, "b", KILN_F32, 1, D4);
  kir_node *s1 = kt_op2(g, KIR_OP_ADD, "s1", a, b), *s2 = kt_op2(g, KIR_OP_ADD, "s2", b, a);
  kir_node *d1 = kt_op2(g, KIR_OP_SUB, "d1", a, b), *d2 = kt_op2(g, KIR_OP_SUB, "d2", b, a);
  kir_node *r1 = kt_op1(g, KIR_OP_RELU, "r1", s1), *r2 = kt_op1(g, KIR_OP_RELU, "r2", s2);
  kir_node *c1 = fill(g, "c1", KILN_F32, 1, D4, 2.5), *c2 = fill(g, "c2", KILN_F32, 1, D4, 2.5);
  kir_node *z1 = fill(g, "z1", KILN_F32, 1, D4, 0.0), *z2 = fill(g, "z2", KILN_F32, 1, D4, -0.0);
  kir_node *c3 = fill(g, "c3", KILN_F64, 1, D4, 2.5);
  kir_node *q1 = rnd(g, "q1", 7), *q2 = rnd(g, "q2", 7), *q3 = rnd(g, "q3", 8);
  kir_node *m1 = kt_op2(g, KIR_OP_MUL, "m1", r1, c1), *m2 = kt_op2(g, KIR_OP_MUL, "m2", r2, c2);
  kir_node *t = kt_op2(g, KIR_OP_ADD, "t", kt_op2(g, KIR_OP_ADD, "t1", m1, m2), kt_op2(g, KIR_OP_ADD, "t2", d1, d2));
  t = kt_op2(g, KIR_OP_ADD, "t3", t, kt_op2(g, KIR_OP_ADD, "t4", z1, z2));
  t = kt_op2(g, KIR_OP_ADD, "t5", t, kt_op2(g, KIR_OP_ADD, "t6", q1, q2));
  t = kt_op2(g, KIR_OP_ADD, "t7", t, q3);
  (void)c3;
  kt_op1(g, KIR_OP_NEG, "y", t);
  kps_result r = check_pass(g, kps_cse, "y", 0);
  /* s2, r2, c2, m2 and q2 merge; sub, signed zeros, f64 constant, other seed do not. */
  assert_int_equal(kt_stat_of(&r, "nodes merged"), 5);
  const char *gone[] = {"s2", "r2", "c2", "m2", "q2"};
  for (int i = 0; i < 5; i++) assert_null(kir_graph_find(g, gone[i]));
  const char *kept[] = {"d1", "d2", "z1", "z2", "c3", "q1", "q3"};
  for (int i = 0; i < 7; i++) assert_non_null(kir_graph_find(g, kept[i]));
  const kir_node *t1 = kt_find(g, "t1");
  assert_int_equal(t1->inputs[0], t1->inputs[1]);
  assert_string_equal(g->nodes[t1->inputs[0]]->name, "m1");
  kir_graph_destroy(g);
}

static void test_cse_never_merges(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *p1 = kt_ph(g, "p1", KILN_F32, 1, D4), *p2 = kt_ph(g, "p2", KILN_F32, 1, D4);
  kir_node *init = fill(g, "init", KILN_F32, 1, D4, 1);
  kir_node *v1 = kt_op1(g, KIR_OP_VARIABLE, "v1", init), *v2 = kt_op1(g, KIR_OP_VARIABLE, "v2", init);
  kir_node *a1 = kt_op2(g, KIR_OP_ASSIGN, "a1", v1, p1), *a2 = kt_op2(g, KIR_OP_ASSIGN, "a2", v1, p1);
  kir_node *e1 = kt_op1(g, KIR_OP_EXP, "e1", p1), *e2 = kt_op1(g, KIR_OP_EXP, "e2", p1);
  e2->device = kir_graph_strdup(g, "cuda:0"); /* another requested device */
  int32_t grp[4] = {a1->id, a2->id, v2->id, p2->id};
  kir_node *g1 = kt_infer(g, kir_node_add(g, KIR_OP_GROUP, "g1", grp, 4));
  kir_node *g2 = kt_infer(g, kir_node_add(g, KIR_OP_GROUP, "g2", grp, 4));
  (void)e1;
  (void)g1;
  (void)g2;
  int32_t n = g->n_nodes;
  const char *roots[5] = {"g1", "g2", "e1", "e2", "p2"};
  kps_result r = run_pass(g, kps_cse, roots, 5);
  assert_false(r.changed);
  assert_int_equal(g->n_nodes, n);
  OK(g, kir_verify(g));
  kir_graph_destroy(g);
}

/* A root equal to an earlier node keeps its name as an identity; users move. */
static void test_cse_roots(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *a = kt_ph(g, "a", KILN_I32, 1, D4);
  kir_node *k1 = fill(g, "k1", KILN_I32, 1, D4, 3), *k2 = fill(g, "k2", KILN_I32, 1, D4, 3);
  kir_node *n1 = kt_op2(g, KIR_OP_MUL, "n1", a, k1), *n2 = kt_op2(g, KIR_OP_MUL, "n2", k2, a);
  kir_node *u1 = kt_op1(g, KIR_OP_NEG, "u1", n1), *u2 = kt_op1(g, KIR_OP_NEG, "u2", n2);
  kt_op2(g, KIR_OP_ADD, "y", u1, u2);
  const char *roots[3] = {"y", "n2", "k2"};
  kir_graph *orig = kir_graph_clone(g);
  kps_result r = run_pass(g, kps_cse, roots, 3);
  OK(g, kir_verify(g));
  assert_int_equal(kt_stat_of(&r, "nodes merged"), 3); /* k2, n2, u2 */
  assert_int_equal(kt_stat_of(&r, "roots kept as identity"), 2);
  assert_int_equal(kt_find(g, "k2")->op, KIR_OP_IDENTITY);
  assert_string_equal(in0(g, "k2")->name, "k1");
  assert_string_equal(in0(g, "n2")->name, "n1");
  assert_null(kir_graph_find(g, "u2"));
  for (int i = 0; i < 3; i++) {
    kir_tensor *want = run_fetch(orig, roots[i], 5), *got = run_fetch(g, roots[i], 5);
    kt_assert_close(got, want, 0);
    kir_tensor_free(want);
    kir_tensor_free(got);
  }
  r = run_pass(g, kps_cse, roots, 3);
  assert_false(r.changed);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- errors, OOM --- */

static void test_errors(void **state) {
  (void)state;
  kir_graph *g = rsum_matmul_graph(KILN_F32, 0, 0, NULL, 0, 0);
  const char *roots[1] = {"nope"};
  kps_context ctx = {.roots = roots, .n_roots = 1};
  kps_result res;
  memset(&res, 0, sizeof res);
  assert_int_equal(kps_simplify(g, &ctx, &res), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'nope'"));
  assert_int_equal(kps_cse(g, &ctx, &res), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'nope'"));
  assert_non_null(kir_graph_find(g, "mm"));
  /* An untyped node. */
  int32_t in[1] = {kt_find(g, "sum")->id};
  assert_non_null(kir_node_add(g, KIR_OP_NEG, "raw", in, 1));
  ctx.n_roots = 0;
  assert_int_equal(kps_simplify(g, &ctx, &res), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "'raw'"));
  kir_graph_destroy(g);
}

/* Every rewrite at once, through the pass manager. */
static kir_graph *everything_graph(void) {
  kir_graph *g = kir_graph_create();
  const int64_t p[2] = {1, 0}, sh[2] = {4, 3};
  kir_node *x = kt_ph(g, "x", KILN_F32, 2, D34), *w = kt_ph(g, "w", KILN_F32, 2, D34);
  kir_node *a = kt_op2(g, KIR_OP_MUL, "a", x, fill(g, "one", KILN_F32, 0, NULL, 1));
  kir_node *b = kt_op1(g, KIR_OP_NEG, "b", kt_op1(g, KIR_OP_NEG, "nb", kt_op1(g, KIR_OP_IDENTITY, "id", a)));
  kir_node *t = kt_with_ints(g, KIR_OP_TRANSPOSE, "t2",
                          kt_with_ints(g, KIR_OP_TRANSPOSE, "t1", b, "perm", p, 2), "perm", p, 2);
  kir_node *r = kt_with_ints(g, KIR_OP_RESHAPE, "r2", kt_with_ints(g, KIR_OP_RESHAPE, "r1", t, "shape", sh, 2),
                          "shape", D34, 2);
  kir_node *c = kt_clamp(g, "c2", kt_clamp(g, "c1", r, -1, 1), 0, 2);
  kir_node *c_dup = kt_clamp(g, "c3", kt_clamp(g, "c4", r, -1, 1), 0, 2);
  kir_node *mm = kt_matmul(g, "mm", kt_op2(g, KIR_OP_ADD, "s", c, c_dup), w, 1, 0);
  rsum(g, "y", mm, NULL, 0, 0);
  return g;
}

static void test_pipeline(void **state) {
  (void)state;
  kir_graph *g = everything_graph(), *orig = kir_graph_clone(g);
  kps_options opt = {.pipeline = "simplify,cse,dce", .verify_each = true};
  const char *roots[1] = {"y"};
  kps_context ctx = {.roots = roots, .n_roots = 1};
  OK(g, kps_run(g, &opt, &ctx));
  /* x -> clamp(x) [0,1] -> s = c + c -> dot of column and row sums. */
  assert_int_equal(count_op(g, KIR_OP_CLAMP), 1);
  assert_int_equal(count_op(g, KIR_OP_MATMUL), 0);
  assert_int_equal(count_op(g, KIR_OP_TRANSPOSE) + count_op(g, KIR_OP_RESHAPE) +
                       count_op(g, KIR_OP_NEG) + count_op(g, KIR_OP_IDENTITY),
                   0);
  kir_tensor *want = run_fetch(orig, "y", 3), *got = run_fetch(g, "y", 3);
  kt_assert_close(got, want, kt_tolerance(KILN_F32));
  kir_tensor_free(want);
  kir_tensor_free(got);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* g's "y" still computes orig's value. */
static void check_y(const kir_graph *orig, kir_graph *g, void *user) {
  (void)user;
  kir_tensor *want = run_fetch((kir_graph *)orig, "y", 4), *got = run_fetch(g, "y", 4);
  kt_assert_close(got, want, kt_tolerance(KILN_F32));
  kir_tensor_free(want);
  kir_tensor_free(got);
}

/* The Nth allocation fails until the pass succeeds (kt_pass_oom_loop); each failure
 * leaves a graph that verifies and still computes the original's value. */
static void oom_loop(kps_pass_fn fn) {
  kir_graph *orig = everything_graph();
  const char *roots[1] = {"y"};
  kt_pass_oom_loop(orig, fn, roots, 1, 10000, check_y, NULL);
  kir_graph_destroy(orig);
}

static void test_out_of_memory(void **state) {
  (void)state;
  oom_loop(kps_simplify);
  oom_loop(kps_cse);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arith_identities),
      cmocka_unit_test(test_broadcast_near_miss),
      cmocka_unit_test(test_not_constant),
      cmocka_unit_test(test_negative_zero_exact),
      cmocka_unit_test(test_root_becomes_identity),
      cmocka_unit_test(test_identity_nodes),
      cmocka_unit_test(test_neg_relu_pairs),
      cmocka_unit_test(test_transposes),
      cmocka_unit_test(test_reshapes),
      cmocka_unit_test(test_clamps),
      cmocka_unit_test(test_reduce_sum_matmul),
      cmocka_unit_test(test_reduce_sum_matmul_near_miss),
      cmocka_unit_test(test_seed_device_no_product_buffer),
      cmocka_unit_test(test_cse_merges),
      cmocka_unit_test(test_cse_never_merges),
      cmocka_unit_test(test_cse_roots),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_pipeline),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
