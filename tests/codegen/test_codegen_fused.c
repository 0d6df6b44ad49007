/* test_codegen_fused.c — the C kernels of fusion v2: graphs of elementwise chains,
 * chains ending in reductions and softmax, run through the fuse pass (which must produce
 * fused_elementwise / fused_reduce / fused_softmax), compiled by kcg_compile_cpu, run
 * through libkiln_rt with poisoned outputs and compared with the reference interpreter on
 * the UNFUSED graph at kt_tolerance. Also: flat and broadcast loops, the pipeline, and
 * the lecture MLP compiling to exactly two kernels. The harness is test_codegen.c's. */
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

#define MAX_OUTS 64
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

/* ---------------------------------------------------------------- fused -------- */

static int count_op(const kir_graph *g, kir_op op) {
  int c = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) c += g->nodes[i]->op == op;
  return c;
}

/* Reference on g; fuse a copy (roots = outputs); it must hold at least want[k] nodes of
 * op[k]; compile it and compare with the reference of the unfused graph. */
static void check_fused(kir_graph *g, const outs *o, unsigned flags, const kir_op *ops,
                        const int *want, int n_want) {
  run_state *r = calloc(1, sizeof *r);
  assert_non_null(r);
  char err[512];
  const char *path = kt_path("fused.kart");
  reference(g, o, flags, r);
  kir_graph *opt = kir_graph_clone(g);
  assert_non_null(opt);
  kps_context ctx = {o->names, o->n, NULL, 0, false, NULL, NULL};
  kps_result res;
  memset(&res, 0, sizeof res);
  if (kps_fuse(opt, &ctx, &res) != KILN_OK) fail_msg("fuse: %s", opt->error);
  if (kir_verify(opt) != KILN_OK) fail_msg("verify: %s", opt->error);
  for (int k = 0; k < n_want; k++)
    if (count_op(opt, ops[k]) < want[k]) {
      kir_graph_print(opt, stderr);
      fail_msg("expected %d %s nodes", want[k], kir_op_get(ops[k])->name);
    }
  compile_or_fail(opt, o, path);
  kiln_rt_status s = run_artifact(g, path, o, r, err, sizeof err);
  if (s != KILN_RT_OK) fail_msg("run: %s", err);
  for (int32_t j = 0; j < o->n; j++) {
    double e = kt_rel_error(r->got[j], r->want[j]), tol = kt_tolerance(r->want[j]->type.dtype);
    if (e > tol) print_error("output '%s' differs\n", o->names[j]);
    kt_assert_close(r->got[j], r->want[j], tol);
  }
  unlink(path);
  kir_graph_destroy(opt);
  run_state_free(r);
}

static const kir_op k_ew[1] = {KIR_OP_FUSED_ELEMENTWISE};

/* Same-shape chains (the flat loop) with every elementwise op. */
static void flat_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t a = ph(g, "a", dt, DIMS(3, 4)), b = ph(g, "b", dt, DIMS(3, 4));
  int32_t pos = ph(g, "pos", dt, DIMS(3, 4));
  int32_t t = op1(g, KIR_OP_TANH, "t", op2(g, KIR_OP_MUL, "m", a, b));
  int32_t s = op2(g, KIR_OP_SUB, "s", b, t);
  int32_t sg = op1(g, KIR_OP_SIGMOID, "sg", s);
  out(&o, g, clamp(g, "c1", op2(g, KIR_OP_MAXIMUM, "mx", sg, a), -0.25, 0.75));
  int32_t l = op1(g, KIR_OP_LOG, "l", op2(g, KIR_OP_DIV, "d", pos, op1(g, KIR_OP_SQRT, "sq", pos)));
  int32_t e = op1(g, KIR_OP_EXP, "e", op2(g, KIR_OP_MINIMUM, "mn", l, b));
  out(&o, g, op1(g, KIR_OP_RELU, "c2", op1(g, KIR_OP_NEG, "ng", e)));
  check_fused(g, &o, 0, k_ew, (const int[]){2}, 1);
  kir_graph_destroy(g);
}

static void test_flat_f32(void **st) { (void)st; flat_chains(KILN_F32); }
static void test_flat_f64(void **st) { (void)st; flat_chains(KILN_F64); }

/* Broadcast chains: every input seen through constant strides, growth of the shape. */
static void bcast_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t row = ph(g, "row", dt, DIMS(6)), col = ph(g, "col", dt, DIMS(4, 1));
  int32_t w = ph(g, "w", dt, DIMS(3, 4, 6)), s = ph(g, "s", dt, 0, NULL);
  int32_t a = op2(g, KIR_OP_ADD, "a", row, col);
  int32_t m = op2(g, KIR_OP_MAXIMUM, "m", w, op1(g, KIR_OP_NEG, "n", a));
  out(&o, g, op2(g, KIR_OP_DIV, "r", op1(g, KIR_OP_RELU, "rl", m), s));
  /* scalar head, growing through a column then a row */
  int32_t sc = op2(g, KIR_OP_MUL, "sc", s, s);
  int32_t sc2 = op2(g, KIR_OP_SUB, "sc2", col, sc);
  out(&o, g, op1(g, KIR_OP_TANH, "q", op2(g, KIR_OP_ADD, "sc3", sc2, row)));
  check_fused(g, &o, NONZERO, k_ew, (const int[]){2}, 1);
  kir_graph_destroy(g);
}

static void test_bcast_f32(void **st) { (void)st; bcast_chains(KILN_F32); }
static void test_bcast_f64(void **st) { (void)st; bcast_chains(KILN_F64); }

/* mean, sum and max of chains, over some, other and all axes, with keep_dims. */
static void reduce_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", dt, DIMS(3, 5, 4)), s = ph(g, "s", dt, 0, NULL);
  int32_t bias = ph(g, "bias", dt, DIMS(4)), col = ph(g, "col", dt, DIMS(5, 1));
  const kir_op kinds[3] = {KIR_OP_REDUCE_MEAN, KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX};
  const int64_t ax1[1] = {1}, ax02[2] = {0, -1};
  for (int k = 0; k < 3; k++)
    for (int v = 0; v < 3; v++) {
      char nm[32];
      snprintf(nm, sizeof nm, "m%d%d", k, v);
      int32_t m = op2(g, KIR_OP_MUL, nm, x, s);
      snprintf(nm, sizeof nm, "a%d%d", k, v);
      int32_t a = op2(g, KIR_OP_ADD, nm, m, v == 2 ? col : bias);
      snprintf(nm, sizeof nm, "t%d%d", k, v);
      int32_t t = op1(g, KIR_OP_TANH, nm, a);
      snprintf(nm, sizeof nm, "red%d%d", k, v);
      const int64_t *axes = v == 0 ? ax1 : v == 1 ? ax02 : NULL;
      out(&o, g, reduce(g, kinds[k], nm, t, axes, v == 0 ? 1 : 2, v == 1));
    }
  check_fused(g, &o, 0, (const kir_op[]){KIR_OP_FUSED_REDUCE}, (const int[]){9}, 1);
  kir_graph_destroy(g);
}

static void test_reduce_f32(void **st) { (void)st; reduce_chains(KILN_F32); }
static void test_reduce_f64(void **st) { (void)st; reduce_chains(KILN_F64); }

/* softmax(x * scale + bias) over each axis, and a broadcast prologue. */
static void softmax_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", dt, DIMS(2, 5, 8)), s = ph(g, "s", dt, 0, NULL);
  int32_t bias = ph(g, "bias", dt, DIMS(8)), col = ph(g, "col", dt, DIMS(5, 1));
  for (int64_t axis = -1; axis <= 2; axis++) {
    char nm[32];
    snprintf(nm, sizeof nm, "m%lld", (long long)axis);
    int32_t m = op2(g, KIR_OP_MUL, nm, x, s);
    snprintf(nm, sizeof nm, "a%lld", (long long)axis);
    int32_t a = op2(g, KIR_OP_ADD, nm, m, bias);
    snprintf(nm, sizeof nm, "p%lld", (long long)axis);
    kir_node *n = add(g, KIR_OP_SOFTMAX, nm, &a, 1);
    assert_int_equal(kir_attr_set_int(g, n, "axis", axis), KILN_OK);
    out(&o, g, finish(g, n));
  }
  /* [5,1] + [8] -> [5,8]: the chain's shape is the broadcast */
  int32_t cb = op2(g, KIR_OP_SUB, "cb", col, bias);
  out(&o, g, op1(g, KIR_OP_SOFTMAX, "pcb", op1(g, KIR_OP_NEG, "ncb", cb)));
  check_fused(g, &o, 0, (const kir_op[]){KIR_OP_FUSED_SOFTMAX}, (const int[]){5}, 1);
  kir_graph_destroy(g);
}

static void test_softmax_f32(void **st) { (void)st; softmax_chains(KILN_F32); }
static void test_softmax_f64(void **st) { (void)st; softmax_chains(KILN_F64); }

/* The default pipeline on a block with every kind of group, compiled. */
static void test_pipeline_mixed(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  outs o = {{0}, 0};
  int32_t x = ph(g, "x", KILN_F32, DIMS(6, 10)), t = ph(g, "temp", KILN_F32, 0, NULL);
  int32_t w = cst(g, "w", KILN_F32, DIMS(10, 4), 3), b = cst(g, "b", KILN_F32, DIMS(4), 4);
  int32_t h = op2(g, KIR_OP_ADD, "h", matmul(g, "mm", x, w, 0, 0), b);
  kir_node *p = add(g, KIR_OP_SOFTMAX, "probs", (int32_t[]){op2(g, KIR_OP_DIV, "d", h, t)}, 1);
  out(&o, g, finish(g, p));
  int32_t ab = op1(g, KIR_OP_RELU, "ab", op2(g, KIR_OP_MUL, "sq", h, t));
  out(&o, g, reduce(g, KIR_OP_REDUCE_MEAN, "loss", ab, NULL, 0, 0));
  run_state *r = calloc(1, sizeof *r);
  assert_non_null(r);
  char err[512];
  reference(g, &o, NONZERO, r);
  kir_graph *opt = kir_graph_clone(g);
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {o.names, o.n, NULL, 0, false, NULL, NULL};
  if (kps_run(opt, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", opt->error);
  assert_int_equal(count_op(opt, KIR_OP_FUSED_MATMUL), 1);
  assert_int_equal(count_op(opt, KIR_OP_FUSED_SOFTMAX), 1);
  assert_int_equal(count_op(opt, KIR_OP_FUSED_REDUCE), 1);
  const char *path = kt_path("mixed.kart");
  compile_or_fail(opt, &o, path);
  assert_int_equal(run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  for (int32_t j = 0; j < o.n; j++) kt_assert_close(r->got[j], r->want[j], 1e-5);
  unlink(path);
  kir_graph_destroy(opt);
  run_state_free(r);
  kir_graph_destroy(g);
}

/* y = clamp(x @ w1, min=0) @ w2 after the default pipeline: exactly two kernels. */
static void test_mlp_two_kernels(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  int32_t x = ph(g, "x", KILN_F32, DIMS(64, 1000));
  int32_t w1 = cst(g, "w1", KILN_F32, DIMS(1000, 100), 21);
  int32_t w2 = cst(g, "w2", KILN_F32, DIMS(100, 10), 22);
  int32_t h = clamp(g, "h", matmul(g, "xw1", x, w1, 0, 0), 0.0, NAN);
  int32_t y = matmul(g, "y", h, w2, 0, 0);
  const char *names[1] = {"y"};
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {names, 1, NULL, 0, false, NULL, NULL};
  if (kps_run(g, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", g->error);
  y = kir_graph_find(g, "y")->id;
  kps_memplan plan;
  char *src = NULL;
  assert_int_equal(kps_plan_memory(g, &y, 1, &plan), KILN_OK);
  if (kcg_c_generate(g, &plan, &y, 1, &src) != KILN_OK) fail_msg("generate: %s", g->error);
  kps_memplan_free(&plan);
  int kernels = 0;
  for (const char *p = src; (p = strstr(p, "\nstatic int k")); p++) kernels++;
  assert_int_equal(kernels, 2);
  assert_non_null(strstr(src, "static int k0_fused_matmul("));
  assert_non_null(strstr(src, "static int k1_matmul("));
  kir_free(src);
  (void)h;
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flat_f32),       cmocka_unit_test(test_flat_f64),
      cmocka_unit_test(test_bcast_f32),      cmocka_unit_test(test_bcast_f64),
      cmocka_unit_test(test_reduce_f32),     cmocka_unit_test(test_reduce_f64),
      cmocka_unit_test(test_softmax_f32),    cmocka_unit_test(test_softmax_f64),
      cmocka_unit_test(test_pipeline_mixed), cmocka_unit_test(test_mlp_two_kernels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
