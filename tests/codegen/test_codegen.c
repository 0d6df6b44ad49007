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
#include "codegen/kcg.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

#define MAX_OUTS 256
/* Generated C must be warning-free; every compile in these tests enforces it. */
#define STRICT_FLAGS "-O2 -Wall -Wextra -Werror"

/* ---------------------------------------------------------------- graph building */

static int32_t finish(kir_graph *g, kir_node *n) {
  assert_non_null(n);
  if (kir_infer_node(g, n) != KILN_OK) fail_msg("infer %s: %s", n->name, g->error);
  return n->id;
}

static kir_node *add(kir_graph *g, kir_op op, const char *name, const int32_t *in, int32_t n) {
  kir_node *node = kir_node_add(g, op, name, in, n);
  if (!node) fail_msg("kir_node_add %s: %s", name, g->error);
  return node;
}

static int32_t ph(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_node *n = add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", dt), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "shape", dims, rank), KILN_OK);
  return finish(g, n);
}

static kir_tensor *tensor(kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type t = {dt, rank, {0}};
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  assert_non_null(x);
  return x;
}

static int32_t cst_t(kir_graph *g, const char *name, const kir_tensor *t) {
  kir_node *n = add(g, KIR_OP_CONSTANT, name, NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
  return finish(g, n);
}

static int32_t cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims,
                   uint64_t seed) {
  kir_tensor *t = tensor(dt, rank, dims);
  kt_fill(t, seed, -1, 1);
  int32_t id = cst_t(g, name, t);
  kir_tensor_free(t);
  return id;
}

static int32_t op1(kir_graph *g, kir_op op, const char *name, int32_t a) {
  return finish(g, add(g, op, name, &a, 1));
}

static int32_t op2(kir_graph *g, kir_op op, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  return finish(g, add(g, op, name, in, 2));
}

static int32_t matmul(kir_graph *g, const char *name, int32_t a, int32_t b, int ta, int tb) {
  int32_t in[2] = {a, b};
  kir_node *n = add(g, KIR_OP_MATMUL, name, in, 2);
  if (ta) assert_int_equal(kir_attr_set_int(g, n, "transpose_a", 1), KILN_OK);
  if (tb) assert_int_equal(kir_attr_set_int(g, n, "transpose_b", 1), KILN_OK);
  return finish(g, n);
}

static int32_t reduce(kir_graph *g, kir_op op, const char *name, int32_t a, const int64_t *axes,
                      int32_t n_axes, int keep) {
  kir_node *n = add(g, op, name, &a, 1);
  if (axes) assert_int_equal(kir_attr_set_ints(g, n, "axes", axes, n_axes), KILN_OK);
  if (keep) assert_int_equal(kir_attr_set_int(g, n, "keep_dims", 1), KILN_OK);
  return finish(g, n);
}

static int32_t with_ints(kir_graph *g, kir_op op, const char *name, int32_t a, const char *attr,
                         const int64_t *v, int32_t n_v) {
  kir_node *n = add(g, op, name, &a, 1);
  if (attr) assert_int_equal(kir_attr_set_ints(g, n, attr, v, n_v), KILN_OK);
  return finish(g, n);
}

static int32_t clamp(kir_graph *g, const char *name, int32_t a, double lo, double hi) {
  kir_node *n = add(g, KIR_OP_CLAMP, name, &a, 1);
  if (!isnan(lo)) assert_int_equal(kir_attr_set_float(g, n, "min", lo), KILN_OK);
  if (!isnan(hi)) assert_int_equal(kir_attr_set_float(g, n, "max", hi), KILN_OK);
  return finish(g, n);
}

typedef struct outs {
  const char *names[MAX_OUTS];
  int32_t n;
} outs;

static void out(outs *o, kir_graph *g, int32_t id) {
  assert_true(o->n < MAX_OUTS);
  o->names[o->n++] = g->nodes[id]->name;
}

#define DIMS(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                  (const int64_t[]){__VA_ARGS__}

/* ---------------------------------------------------------------- harness ------- */

enum { NONZERO = 1u << 0, NAN_OK = 1u << 1 };

/* Placeholder values: names starting "pos" get [0.1, 4), "big" the whole int range,
 * others [-2, 2) for floats and [-10, 10) for integers; NONZERO replaces 0 by 1. */
static kir_tensor *make_input(const kir_node *n, uint64_t seed, unsigned flags) {
  kir_tensor *t = kir_tensor_new(&n->type);
  assert_non_null(t);
  bool fl = n->type.dtype == KILN_F32 || n->type.dtype == KILN_F64;
  double lo = fl ? -2 : -10, hi = fl ? 2 : 10;
  if (!strncmp(n->name, "pos", 3)) lo = 0.1, hi = 4;
  if (!strncmp(n->name, "big", 3)) {
    hi = n->type.dtype == KILN_I32 ? 2147483647.0 : 4e18;
    lo = -hi;
  }
  kt_fill(t, seed, lo, hi);
  int64_t ne = kir_type_numel(&n->type);
  for (int64_t i = 0; (flags & NONZERO) && i < ne; i++) {
    if (n->type.dtype == KILN_I32 && ((int32_t *)t->data)[i] == 0) ((int32_t *)t->data)[i] = 1;
    if (n->type.dtype == KILN_I64 && ((int64_t *)t->data)[i] == 0) ((int64_t *)t->data)[i] = 1;
  }
  return t;
}

typedef struct run_state {
  kir_tensor *in[64];
  kir_feed feeds[64];
  int32_t n_in;
  kir_tensor *want[MAX_OUTS], *got[MAX_OUTS];
  int32_t ids[MAX_OUTS];
} run_state;

static void run_state_free(run_state *r) {
  for (int32_t i = 0; i < r->n_in; i++) kir_tensor_free(r->in[i]);
  for (int32_t j = 0; j < MAX_OUTS; j++) {
    kir_tensor_free(r->want[j]);
    kir_tensor_free(r->got[j]);
  }
  free(r);
}

static void reference(kir_graph *g, const outs *o, unsigned flags, run_state *r) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    assert_true(r->n_in < 64);
    r->in[r->n_in] = make_input(g->nodes[i], 1000 + (uint64_t)i, flags);
    r->feeds[r->n_in] = (kir_feed){i, r->in[r->n_in]};
    r->n_in++;
  }
  for (int32_t j = 0; j < o->n; j++) r->ids[j] = kir_graph_find(g, o->names[j])->id;
  if (kir_interp_run(g, NULL, r->feeds, r->n_in, r->ids, o->n, NULL, 0, r->want) != KILN_OK)
    fail_msg("reference: %s", g->error);
}

/* Runs the artifact at path with r's inputs into poisoned outputs; returns the status. */
static kiln_rt_status run_artifact(kir_graph *g, const char *path, const outs *o, run_state *r,
                                   char *err, size_t errlen) {
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  kiln_rt_buffer ins[64], outb[MAX_OUTS];
  kiln_rt_status s = kiln_rt_model_open(path, &m);
  if (s != KILN_RT_OK) fail_msg("open: %s", kiln_rt_model_error(m));
  assert_int_equal(kiln_rt_model_num_inputs(m), r->n_in);
  assert_int_equal(kiln_rt_model_num_outputs(m), o->n);
  for (int i = 0; i < r->n_in; i++) {
    kiln_rt_tensor_info info;
    assert_int_equal(kiln_rt_model_input(m, i, &info), KILN_RT_OK);
    kir_node *n = kir_graph_find(g, info.name);
    assert_non_null(n);
    int32_t k = 0;
    while (k < r->n_in && r->feeds[k].node != n->id) k++;
    assert_true(k < r->n_in);
    ins[i] = (kiln_rt_buffer){r->in[k]->data, (size_t)kir_type_nbytes(&r->in[k]->type)};
  }
  for (int32_t j = 0; j < o->n; j++) {
    const kir_node *n = g->nodes[r->ids[j]];
    r->got[j] = kir_tensor_new(&n->type);
    assert_non_null(r->got[j]);
    size_t nb = (size_t)kir_type_nbytes(&n->type);
    bool fl = n->type.dtype == KILN_F32 || n->type.dtype == KILN_F64;
    memset(r->got[j]->data, fl ? 0xFF : 0xAB, nb); /* NaN for floats */
    outb[j] = (kiln_rt_buffer){r->got[j]->data, nb};
  }
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  s = kiln_rt_run(c, ins, r->n_in, outb, o->n);
  snprintf(err, errlen, "%s", kiln_rt_context_error(c));
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  return s;
}

static void compile_or_fail(kir_graph *g, const outs *o, const char *path) {
  kcg_options opt = {NULL, STRICT_FLAGS, "test", NULL};
  if (getenv("KCG_TEST_LOG")) opt.log = stderr;
  if (kcg_compile_cpu(g, o->names, o->n, &opt, path) != KILN_OK) fail_msg("compile: %s", g->error);
}

/* NaNs must sit at the same places; they are then zeroed in both so the rest compares. */
static void same_nans_to_zero(kir_tensor *got, kir_tensor *want) {
  if (want->type.dtype != KILN_F32 || got->type.dtype != KILN_F32) return;
  int64_t ne = kir_type_numel(&want->type);
  for (int64_t i = 0; i < ne; i++) {
    float *a = (float *)got->data + i, *b = (float *)want->data + i;
    assert_int_equal(isnan(*a) != 0, isnan(*b) != 0);
    if (isnan(*b)) *a = *b = 0;
  }
}

/* The harness: reference, compile, run with poisoned outputs, compare. */
static void check(kir_graph *g, const outs *o, unsigned flags) {
  run_state *r = calloc(1, sizeof *r);
  assert_non_null(r);
  char err[512];
  const char *path = kt_path("x.kart");
  reference(g, o, flags, r);
  compile_or_fail(g, o, path);
  kiln_rt_status s = run_artifact(g, path, o, r, err, sizeof err);
  if (s != KILN_RT_OK) fail_msg("run: %s", err);
  for (int32_t j = 0; j < o->n; j++) {
    if (flags & NAN_OK) same_nans_to_zero(r->got[j], r->want[j]);
    double e = kt_rel_error(r->got[j], r->want[j]), tol = kt_tolerance(r->want[j]->type.dtype);
    if (e > tol) print_error("output '%s' differs\n", o->names[j]);
    kt_assert_close(r->got[j], r->want[j], tol);
  }
  unlink(path);
  run_state_free(r);
}

/* ---------------------------------------------------------------- elementwise --- */

static const kir_op binary_ops[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_DIV,
                                    KIR_OP_MAXIMUM, KIR_OP_MINIMUM};

/* Every binary op with equal shapes, scalar, row, column and 3-D broadcasting, each
 * side broadcast. */
static void binary_graph(kiln_dtype dt, const char *prefix) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  char nm[64];
  snprintf(nm, sizeof nm, "%sa", prefix);
  int32_t a = ph(g, nm, dt, DIMS(3, 4));
  snprintf(nm, sizeof nm, "%sb", prefix);
  int32_t b = ph(g, nm, dt, DIMS(3, 4));
  int32_t s = ph(g, "s", dt, 0, NULL);
  int32_t row = ph(g, "row", dt, DIMS(4));
  int32_t col = ph(g, "col", dt, DIMS(3, 1));
  int32_t d3 = ph(g, "d3", dt, DIMS(2, 3, 4));
  int32_t d3b = ph(g, "d3b", dt, DIMS(2, 1, 4));
  int32_t pairs[][2] = {{a, b}, {a, s}, {s, a}, {a, row}, {row, a}, {a, col}, {col, a},
                        {d3, col}, {d3b, col}, {row, col}, {d3, a}, {s, s}};
  for (size_t k = 0; k < sizeof binary_ops / sizeof binary_ops[0]; k++)
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
      snprintf(nm, sizeof nm, "%s_%zu", kir_op_get(binary_ops[k])->name, p);
      out(&o, g, op2(g, binary_ops[k], nm, pairs[p][0], pairs[p][1]));
    }
  check(g, &o, NONZERO);
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
    outs o = {{0}, 0};
    kir_tensor *x = tensor(dts[k], DIMS(5)), *y = tensor(dts[k], DIMS(5));
    int64_t xv[5] = {k ? INT64_MIN : INT32_MIN, 7, -7, 7, -7}, yv[5] = {-1, 2, 2, -2, -2};
    for (int i = 0; i < 5; i++) {
      if (k) ((int64_t *)x->data)[i] = xv[i], ((int64_t *)y->data)[i] = yv[i];
      else ((int32_t *)x->data)[i] = (int32_t)xv[i], ((int32_t *)y->data)[i] = (int32_t)yv[i];
    }
    int32_t p = ph(g, "p", dts[k], DIMS(5));
    int32_t cx = cst_t(g, "x", x), cy = cst_t(g, "y", y);
    out(&o, g, op2(g, KIR_OP_DIV, "q", cx, cy));
    out(&o, g, op2(g, KIR_OP_DIV, "q2", op2(g, KIR_OP_ADD, "xp", cx, p), cy));
    out(&o, g, op1(g, KIR_OP_NEG, "n", cx));
    check(g, &o, NONZERO);
    kir_tensor_free(x);
    kir_tensor_free(y);
    kir_graph_destroy(g);
  }
}

static void unary_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  bool fl = dt == KILN_F32 || dt == KILN_F64;
  int32_t a = ph(g, "a", dt, DIMS(2, 3, 5));
  int32_t pos = ph(g, "pos", dt, DIMS(7));
  out(&o, g, op1(g, KIR_OP_NEG, "neg", a));
  out(&o, g, op1(g, KIR_OP_RELU, "relu", a));
  out(&o, g, clamp(g, "clamp_lo", a, 0.0, NAN));
  out(&o, g, clamp(g, "clamp_hi", a, NAN, 0.5));
  out(&o, g, clamp(g, "clamp_both", a, -1.25, 0.1));
  out(&o, g, clamp(g, "clamp_none", a, NAN, NAN));
  out(&o, g, clamp(g, "clamp_wide", a, -1e300, 1e300));
  out(&o, g, clamp(g, "clamp_inf", a, -INFINITY, INFINITY));
  out(&o, g, clamp(g, "clamp_frac", a, -2.5, 3.5));
  if (fl) {
    out(&o, g, op1(g, KIR_OP_EXP, "exp", a));
    out(&o, g, op1(g, KIR_OP_TANH, "tanh", a));
    out(&o, g, op1(g, KIR_OP_SIGMOID, "sigmoid", a));
    out(&o, g, op1(g, KIR_OP_LOG, "log", pos));
    out(&o, g, op1(g, KIR_OP_SQRT, "sqrt", pos));
  } else {
    out(&o, g, op1(g, KIR_OP_NEG, "negpos", pos));
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
  outs o = {{0}, 0};
  kir_tensor *t = tensor(KILN_F32, DIMS(6));
  float v[6] = {NAN, 1.0f, -0.0f, INFINITY, -INFINITY, 0.25f};
  memcpy(t->data, v, sizeof v);
  int32_t c = cst_t(g, "c", t);
  int32_t p = ph(g, "p", KILN_F32, DIMS(6));
  out(&o, g, op2(g, KIR_OP_MAXIMUM, "mx", c, p));
  out(&o, g, op2(g, KIR_OP_MINIMUM, "mn", p, c));
  out(&o, g, op1(g, KIR_OP_RELU, "r", c));
  out(&o, g, clamp(g, "cl", c, -0.5, 0.5));
  out(&o, g, op2(g, KIR_OP_ADD, "sum", c, p));
  check(g, &o, NAN_OK);
  kir_tensor_free(t);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- matmul -------- */

static void matmul_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  char nm[64];
  int32_t a = ph(g, "a", dt, DIMS(3, 5)), at = ph(g, "at", dt, DIMS(5, 3));
  int32_t b = ph(g, "b", dt, DIMS(5, 4)), bt = ph(g, "bt", dt, DIMS(4, 5));
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      snprintf(nm, sizeof nm, "mm_%d%d", ta, tb);
      out(&o, g, matmul(g, nm, ta ? at : a, tb ? bt : b, ta, tb));
    }
  /* batched: rank mismatch, broadcast batch dims, transposes */
  int32_t ba = ph(g, "ba", dt, DIMS(2, 3, 3, 5)), bb = ph(g, "bb", dt, DIMS(5, 4));
  int32_t bc = ph(g, "bc", dt, DIMS(2, 1, 3, 5)), bd = ph(g, "bd", dt, DIMS(3, 4, 5));
  int32_t be = ph(g, "be", dt, DIMS(1, 5, 3));
  out(&o, g, matmul(g, "bmm_rank", ba, bb, 0, 0));
  out(&o, g, matmul(g, "bmm_bcast_tb", bc, bd, 0, 1));
  out(&o, g, matmul(g, "bmm_ta", be, bd, 1, 1));
  out(&o, g, matmul(g, "bmm_same", ba, ba, 0, 1));
  /* degenerate: inner dimension 1 and a 1x1 result */
  int32_t v1 = ph(g, "v1", dt, DIMS(4, 1)), v2 = ph(g, "v2", dt, DIMS(1, 4));
  out(&o, g, matmul(g, "outer", v1, v2, 0, 0));
  out(&o, g, matmul(g, "inner", v2, v1, 0, 0));
  if (dt == KILN_I32 || dt == KILN_I64) { /* whole-range values: products and sums wrap */
    int32_t bx = ph(g, "bigx", dt, DIMS(3, 5)), by = ph(g, "bigy", dt, DIMS(4, 5));
    out(&o, g, matmul(g, "mm_wrap", bx, by, 0, 1));
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
  outs o = {{0}, 0};
  char nm[64];
  bool fl = dt == KILN_F32 || dt == KILN_F64;
  int32_t a = ph(g, "a", dt, DIMS(3, 4, 5));
  int32_t s = ph(g, "s", dt, 0, NULL);
  const int64_t sets[][3] = {{0}, {1}, {-1}, {0, 2}, {1, 2}, {2, 0}, {0, 1, 2}, {-3, -2}};
  const int32_t sizes[] = {1, 1, 1, 2, 2, 2, 3, 2};
  kir_op ops[3] = {KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX, KIR_OP_REDUCE_MEAN};
  for (int k = 0; k < (fl ? 3 : 2); k++)
    for (int keep = 0; keep < 2; keep++) {
      snprintf(nm, sizeof nm, "%s_all_%d", kir_op_get(ops[k])->name, keep);
      out(&o, g, reduce(g, ops[k], nm, a, NULL, 0, keep));
      snprintf(nm, sizeof nm, "%s_scalar_%d", kir_op_get(ops[k])->name, keep);
      out(&o, g, reduce(g, ops[k], nm, s, NULL, 0, keep));
      for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(nm, sizeof nm, "%s_%zu_%d", kir_op_get(ops[k])->name, i, keep);
        out(&o, g, reduce(g, ops[k], nm, a, sets[i], sizes[i], keep));
      }
      snprintf(nm, sizeof nm, "%s_none_%d", kir_op_get(ops[k])->name, keep);
      out(&o, g, reduce(g, ops[k], nm, a, (const int64_t[]){0}, 0, keep));
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
  kir_node *n = add(g, KIR_OP_SOFTMAX, name, &a, 1);
  if (set) assert_int_equal(kir_attr_set_int(g, n, "axis", axis), KILN_OK);
  return finish(g, n);
}

static void softmax_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t a = ph(g, "a", dt, DIMS(4, 7)), b = ph(g, "b", dt, DIMS(2, 3, 5));
  out(&o, g, softmax(g, "sm_0", a, 0, true));
  out(&o, g, softmax(g, "sm_last", a, -1, true));
  out(&o, g, softmax(g, "sm_default", b, 0, false));
  out(&o, g, softmax(g, "sm_mid", b, 1, true));
  out(&o, g, softmax(g, "sm_neg3", b, -3, true));
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_softmax_f32(void **st) { (void)st; softmax_graph(KILN_F32); }
static void test_softmax_f64(void **st) { (void)st; softmax_graph(KILN_F64); }

static void shape_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  char nm[64];
  int32_t a = ph(g, "a", dt, DIMS(2, 3, 4)), m = ph(g, "m", dt, DIMS(3, 5));
  const int64_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int p = 0; p < 6; p++) {
    snprintf(nm, sizeof nm, "tr_%d", p);
    out(&o, g, with_ints(g, KIR_OP_TRANSPOSE, nm, a, "perm", perms[p], 3));
  }
  out(&o, g, with_ints(g, KIR_OP_TRANSPOSE, "tr_default", a, NULL, NULL, 0));
  out(&o, g, with_ints(g, KIR_OP_TRANSPOSE, "tr_2d", m, NULL, NULL, 0));
  out(&o, g, with_ints(g, KIR_OP_RESHAPE, "rs", a, "shape", (const int64_t[]){6, 4}, 2));
  out(&o, g, with_ints(g, KIR_OP_RESHAPE, "rs_hole", a, "shape", (const int64_t[]){4, -1, 1}, 3));
  out(&o, g, op1(g, KIR_OP_IDENTITY, "id", m));
  kir_node *tr = add(g, KIR_OP_TRANSFER, "to_cpu", &m, 1);
  assert_int_equal(kir_attr_set_string(g, tr, "device", "cpu:0"), KILN_OK);
  out(&o, g, finish(g, tr));
  out(&o, g, with_ints(g, KIR_OP_RESHAPE, "rs_of_tr", with_ints(g, KIR_OP_TRANSPOSE, "tr_in", a, NULL, NULL, 0),
                       "shape", (const int64_t[]){24}, 1));
  check(g, &o, 0);
  kir_graph_destroy(g);
}

static void test_shape_f32(void **st) { (void)st; shape_graph(KILN_F32); }
static void test_shape_i64(void **st) { (void)st; shape_graph(KILN_I64); }
static void test_shape_bool(void **st) { (void)st; shape_graph(KILN_BOOL); }

static void add_n_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t in[4] = {ph(g, "a", dt, DIMS(3, 4)), ph(g, "b", dt, DIMS(3, 4)), ph(g, "c", dt, DIMS(3, 4)), 0};
  in[3] = in[0];
  out(&o, g, finish(g, add(g, KIR_OP_ADD_N, "sum1", in, 1)));
  out(&o, g, finish(g, add(g, KIR_OP_ADD_N, "sum2", in, 2)));
  out(&o, g, finish(g, add(g, KIR_OP_ADD_N, "sum4", in, 4)));
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
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", KILN_F32, DIMS(4, 6));
  int32_t c = cst(g, "c", KILN_F32, DIMS(6), 5);
  kir_node *rn = add(g, KIR_OP_RANDOM_NORMAL, "rn", NULL, 0);
  assert_int_equal(kir_attr_set_int(g, rn, "dtype", KILN_F32), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, rn, "shape", (const int64_t[]){4, 6}, 2), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, rn, "seed", 42), KILN_OK);
  int32_t r = finish(g, rn);
  kir_node *ru = add(g, KIR_OP_RANDOM_UNIFORM, "ru", NULL, 0);
  assert_int_equal(kir_attr_set_int(g, ru, "dtype", KILN_F64), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, ru, "shape", (const int64_t[]){3}, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, ru, "seed", 7), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, ru, "low", -3), KILN_OK);
  int32_t u = finish(g, ru);
  int32_t h = x;
  char nm[32];
  for (int i = 0; i < 6; i++) {
    snprintf(nm, sizeof nm, "h%d", i);
    h = op2(g, i % 2 ? KIR_OP_MUL : KIR_OP_ADD, nm, h, i % 3 ? c : r);
    snprintf(nm, sizeof nm, "t%d", i);
    h = op1(g, KIR_OP_TANH, nm, h);
  }
  out(&o, g, h);
  out(&o, g, x);
  out(&o, g, c);
  out(&o, g, u);
  out(&o, g, op1(g, KIR_OP_IDENTITY, "h_again", h));
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
  kir_node *n = add(g, KIR_OP_FUSED_MATMUL, name, in, n_in);
  assert_int_equal(kir_attr_set_int(g, n, "transpose_a", ta), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, n, "transpose_b", tb), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "epilogue", ops, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "operand", opnd, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "swap", swap, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_min", lo, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_max", hi, n_ep), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, n_from), KILN_OK);
  return finish(g, n);
}

static void fused_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t a = ph(g, "a", dt, DIMS(4, 5)), b = ph(g, "b", dt, DIMS(6, 5));
  int32_t bias = ph(g, "bias", dt, DIMS(6)), col = ph(g, "col", dt, DIMS(4, 1));
  int32_t s = ph(g, "s", dt, 0, NULL), full = ph(g, "full", dt, DIMS(4, 6));
  int32_t in[6] = {a, b, bias, col, s, full};
  const int64_t ops[] = {KIR_OP_ADD, KIR_OP_CLAMP, KIR_OP_MUL, KIR_OP_SUB, KIR_OP_MAXIMUM,
                         KIR_OP_DIV, KIR_OP_TANH, KIR_OP_RELU, KIR_OP_SIGMOID};
  const int64_t opnd[] = {2, -1, 3, 4, 5, 4, -1, -1, -1};
  const int64_t swap[] = {0, 0, 1, 1, 0, 1, 0, 0, 0};
  const double lo[] = {NAN, -0.5, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  const double hi[] = {NAN, 1.5, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  const char *from[] = {"mm", "add", "clamp", "mul", "sub", "max", "div", "tanh", "relu", "sig"};
  out(&o, g, fused(g, "fm", in, 6, 0, 1, ops, opnd, swap, lo, hi, 9, from, 10));
  /* no epilogue, batched with transposes */
  int32_t ba = ph(g, "ba", dt, DIMS(2, 5, 3)), bb = ph(g, "bb", dt, DIMS(5, 4));
  int32_t bbias = ph(g, "bbias", dt, DIMS(2, 1, 4));
  int32_t in2[3] = {ba, bb, bbias};
  const char *from2[] = {"bmm", "badd"};
  out(&o, g, fused(g, "fm_plain", in2, 2, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, from2, 1));
  out(&o, g, fused(g, "fm_batched", in2, 3, 1, 0, (const int64_t[]){KIR_OP_ADD}, (const int64_t[]){2},
                   (const int64_t[]){0}, (const double[]){NAN}, (const double[]){NAN}, 1, from2, 2));
  check(g, &o, NONZERO);
  kir_graph_destroy(g);
}

static void test_fused_f32(void **st) { (void)st; fused_graph(KILN_F32); }
static void test_fused_f64(void **st) { (void)st; fused_graph(KILN_F64); }

static int count_op(const kir_graph *g, kir_op op) {
  int c = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) c += g->nodes[i]->op == op;
  return c;
}

/* Runs the CPU pipeline on a copy, checks a fused_matmul appeared, then compares the
 * compiled optimized graph with the reference of the original graph. */
static void check_pipelined(kir_graph *g, const outs *o, int want_fused) {
  run_state *r = calloc(1, sizeof *r);
  assert_non_null(r);
  char err[512];
  const char *path = kt_path("p.kart");
  reference(g, o, 0, r);
  kir_graph *opt = kir_graph_clone(g);
  assert_non_null(opt);
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {o->names, o->n, NULL, 0, false, NULL};
  if (kps_run(opt, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", opt->error);
  if (count_op(opt, KIR_OP_FUSED_MATMUL) < want_fused) {
    kir_graph_print(opt, stderr);
    fail_msg("expected at least %d fused_matmul nodes", want_fused);
  }
  compile_or_fail(opt, o, path);
  /* placeholders and roots keep their names and types: bind through the original */
  kiln_rt_status s = run_artifact(g, path, o, r, err, sizeof err);
  if (s != KILN_RT_OK) fail_msg("run: %s", err);
  for (int32_t j = 0; j < o->n; j++) kt_assert_close(r->got[j], r->want[j], kt_tolerance(r->want[j]->type.dtype));
  unlink(path);
  kir_graph_destroy(opt);
  run_state_free(r);
}

static void test_fuse_pass(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", KILN_F32, DIMS(8, 16));
  int32_t w = cst(g, "layer1/w", KILN_F32, DIMS(16, 4), 11);
  int32_t b = cst(g, "layer1/b", KILN_F32, DIMS(4), 12);
  int32_t mm = matmul(g, "layer1/matmul", x, w, 0, 0);
  int32_t y = op1(g, KIR_OP_RELU, "layer1/relu", op2(g, KIR_OP_ADD, "layer1/add", mm, b));
  out(&o, g, y);
  check_pipelined(g, &o, 1);
  kir_graph_destroy(g);
}

/* The lecture's MLP: y = clamp(x @ w1, min=0) @ w2. */
static kir_graph *mlp(outs *o) {
  kir_graph *g = kir_graph_create();
  int32_t x = ph(g, "x", KILN_F32, DIMS(64, 1000));
  int32_t w1 = cst(g, "w1", KILN_F32, DIMS(1000, 100), 21);
  int32_t w2 = cst(g, "w2", KILN_F32, DIMS(100, 10), 22);
  int32_t h = clamp(g, "h", matmul(g, "xw1", x, w1, 0, 0), 0.0, NAN);
  out(o, g, matmul(g, "y", h, w2, 0, 0));
  return g;
}

static void test_mlp(void **st) {
  (void)st;
  outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  run_state *r = calloc(1, sizeof *r);
  assert_non_null(r);
  char err[512];
  const char *path = kt_path("mlp.kart");
  reference(g, &o, 0, r);
  compile_or_fail(g, &o, path);
  assert_int_equal(run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  double e = kt_rel_error(r->got[0], r->want[0]);
  assert_true(e < 1e-5);
  unlink(path);
  run_state_free(r);
  kir_graph_destroy(g);
}

static void test_mlp_pipelined(void **st) {
  (void)st;
  outs o = {{0}, 0};
  kir_graph *g = mlp(&o);
  check_pipelined(g, &o, 1);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- generation ---- */

static char *generate(kir_graph *g, const outs *o) {
  int32_t ids[MAX_OUTS];
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
  outs o = {{0}, 0};
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
  outs o = {{0}, 0};
  int32_t h = ph(g, names[0], KILN_F32, DIMS(2, 3));
  int32_t w = cst(g, names[1], KILN_F32, DIMS(3, 3), 3);
  for (size_t i = 2; i < nn; i++) {
    h = i % 3 == 0 ? matmul(g, names[i], h, w, 0, 0) : op1(g, i % 3 == 1 ? KIR_OP_TANH : KIR_OP_NEG, names[i], h);
    out(&o, g, h);
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
  outs o = {{0}, 0};
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
  outs o = {{0}, 0};
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
  int32_t init = cst(g, "init", KILN_F32, DIMS(3), 1);
  int32_t v = op1(g, KIR_OP_VARIABLE, "w", init);
  int32_t y = op1(g, KIR_OP_NEG, "y", v);
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
    outs o = {{0}, 0};
    int32_t a = ph(g, "a", dts[k], DIMS(4)), b = ph(g, "b", dts[k], DIMS(4));
    out(&o, g, op2(g, KIR_OP_DIV, "q", op1(g, KIR_OP_NEG, "na", a), b));
    const char *path = kt_path("dz.kart");
    compile_or_fail(g, &o, path);
    run_state *r = calloc(1, sizeof *r);
    assert_non_null(r);
    reference(g, &o, NONZERO, r);
    size_t es = kiln_dtype_size(dts[k]);
    memset((char *)r->in[1]->data + 2 * es, 0, es); /* b[2] = 0 */
    char err[512];
    assert_int_equal(run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_ERR_EXEC);
    assert_true(err[0] != '\0');
    unlink(path);
    run_state_free(r);
    kir_graph_destroy(g);
  }
}

/* The Nth allocation fails for N = 0, 1, ... until compiling succeeds: each failure is
 * out-of-memory, leaks nothing, writes no artifact and leaves the graph usable. */
static void test_alloc_failures(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", KILN_F32, DIMS(2, 3));
  int32_t w = cst(g, "w", KILN_F32, DIMS(3, 2), 9);
  out(&o, g, op1(g, KIR_OP_RELU, "y", matmul(g, "mm", x, w, 0, 0)));
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
