/* test_codegen_fused.c — the C kernels of fusion v2: graphs of elementwise chains,
 * chains ending in reductions and softmax, run through the fuse pass (which must produce
 * fused_elementwise / fused_reduce / fused_softmax), compiled by kcg_compile_cpu, run
 * through libkiln_rt with poisoned outputs and compared with the reference interpreter on
 * the UNFUSED graph at kt_tolerance. Also: flat and broadcast loops, the pipeline, and
 * the lecture MLP compiling to exactly two kernels. The harness is kcg_harness.c. */
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

/* ---------------------------------------------------------------- fused -------- */

typedef struct want_ops {
  const kir_op *ops;
  const int *want;
  int n_want;
} want_ops;

/* Fuses a copy (roots = outputs); it must hold at least want[k] nodes of op[k]. */
static kir_graph *fused_copy(kir_graph *g, const kh_outs *o, void *arg) {
  const want_ops *w = arg;
  kir_graph *opt = kir_graph_clone(g);
  assert_non_null(opt);
  kps_context ctx = {o->names, o->n, NULL, 0, false, NULL, NULL};
  kps_result res;
  memset(&res, 0, sizeof res);
  if (kps_fuse(opt, &ctx, &res) != KILN_OK) fail_msg("fuse: %s", opt->error);
  if (kir_verify(opt) != KILN_OK) fail_msg("verify: %s", opt->error);
  for (int k = 0; k < w->n_want; k++)
    if (kh_count_op(opt, w->ops[k]) < w->want[k]) {
      kir_graph_print(opt, stderr);
      fail_msg("expected %d %s nodes", w->want[k], kir_op_get(w->ops[k])->name);
    }
  return opt;
}

/* Reference on g; fuse a copy (fused_copy); compile it and compare with the reference
 * of the unfused graph. */
static void check_fused(kir_graph *g, const kh_outs *o, unsigned flags, const kir_op *ops,
                        const int *want, int n_want) {
  want_ops w = {ops, want, n_want};
  kh_check_with(g, o, flags, "fused.kart", fused_copy, &w);
}

static const kir_op k_ew[1] = {KIR_OP_FUSED_ELEMENTWISE};

/* Same-shape chains (the flat loop) with every elementwise op. */
static void flat_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(3, 4)), b = kh_ph(g, "b", dt, DIMS(3, 4));
  int32_t pos = kh_ph(g, "pos", dt, DIMS(3, 4));
  int32_t t = kh_op1(g, KIR_OP_TANH, "t", kh_op2(g, KIR_OP_MUL, "m", a, b));
  int32_t s = kh_op2(g, KIR_OP_SUB, "s", b, t);
  int32_t sg = kh_op1(g, KIR_OP_SIGMOID, "sg", s);
  kh_out(&o, g, kh_clamp(g, "c1", kh_op2(g, KIR_OP_MAXIMUM, "mx", sg, a), -0.25, 0.75));
  int32_t l = kh_op1(g, KIR_OP_LOG, "l", kh_op2(g, KIR_OP_DIV, "d", pos, kh_op1(g, KIR_OP_SQRT, "sq", pos)));
  int32_t e = kh_op1(g, KIR_OP_EXP, "e", kh_op2(g, KIR_OP_MINIMUM, "mn", l, b));
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "c2", kh_op1(g, KIR_OP_NEG, "ng", e)));
  check_fused(g, &o, 0, k_ew, (const int[]){2}, 1);
  kir_graph_destroy(g);
}

static void test_flat_f32(void **st) { (void)st; flat_chains(KILN_F32); }
static void test_flat_f64(void **st) { (void)st; flat_chains(KILN_F64); }

/* Broadcast chains: every input seen through constant strides, growth of the shape. */
static void bcast_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t row = kh_ph(g, "row", dt, DIMS(6)), col = kh_ph(g, "col", dt, DIMS(4, 1));
  int32_t w = kh_ph(g, "w", dt, DIMS(3, 4, 6)), s = kh_ph(g, "s", dt, 0, NULL);
  int32_t a = kh_op2(g, KIR_OP_ADD, "a", row, col);
  int32_t m = kh_op2(g, KIR_OP_MAXIMUM, "m", w, kh_op1(g, KIR_OP_NEG, "n", a));
  kh_out(&o, g, kh_op2(g, KIR_OP_DIV, "r", kh_op1(g, KIR_OP_RELU, "rl", m), s));
  /* scalar head, growing through a column then a row */
  int32_t sc = kh_op2(g, KIR_OP_MUL, "sc", s, s);
  int32_t sc2 = kh_op2(g, KIR_OP_SUB, "sc2", col, sc);
  kh_out(&o, g, kh_op1(g, KIR_OP_TANH, "q", kh_op2(g, KIR_OP_ADD, "sc3", sc2, row)));
  check_fused(g, &o, KH_NONZERO, k_ew, (const int[]){2}, 1);
  kir_graph_destroy(g);
}

static void test_bcast_f32(void **st) { (void)st; bcast_chains(KILN_F32); }
static void test_bcast_f64(void **st) { (void)st; bcast_chains(KILN_F64); }

/* mean, sum and max of chains, over some, other and all axes, with keep_dims. */
static void reduce_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(3, 5, 4)), s = kh_ph(g, "s", dt, 0, NULL);
  int32_t bias = kh_ph(g, "bias", dt, DIMS(4)), col = kh_ph(g, "col", dt, DIMS(5, 1));
  const kir_op kinds[3] = {KIR_OP_REDUCE_MEAN, KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MAX};
  const int64_t ax1[1] = {1}, ax02[2] = {0, -1};
  for (int k = 0; k < 3; k++)
    for (int v = 0; v < 3; v++) {
      char nm[32];
      snprintf(nm, sizeof nm, "m%d%d", k, v);
      int32_t m = kh_op2(g, KIR_OP_MUL, nm, x, s);
      snprintf(nm, sizeof nm, "a%d%d", k, v);
      int32_t a = kh_op2(g, KIR_OP_ADD, nm, m, v == 2 ? col : bias);
      snprintf(nm, sizeof nm, "t%d%d", k, v);
      int32_t t = kh_op1(g, KIR_OP_TANH, nm, a);
      snprintf(nm, sizeof nm, "red%d%d", k, v);
      const int64_t *axes = v == 0 ? ax1 : v == 1 ? ax02 : NULL;
      kh_out(&o, g, kh_reduce(g, kinds[k], nm, t, axes, v == 0 ? 1 : 2, v == 1));
    }
  check_fused(g, &o, 0, (const kir_op[]){KIR_OP_FUSED_REDUCE}, (const int[]){9}, 1);
  kir_graph_destroy(g);
}

static void test_reduce_f32(void **st) { (void)st; reduce_chains(KILN_F32); }
static void test_reduce_f64(void **st) { (void)st; reduce_chains(KILN_F64); }

/* softmax(x * scale + bias) over each axis, and a broadcast prologue. */
static void softmax_chains(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(2, 5, 8)), s = kh_ph(g, "s", dt, 0, NULL);
  int32_t bias = kh_ph(g, "bias", dt, DIMS(8)), col = kh_ph(g, "col", dt, DIMS(5, 1));
  for (int64_t axis = -1; axis <= 2; axis++) {
    char nm[32];
    snprintf(nm, sizeof nm, "m%lld", (long long)axis);
    int32_t m = kh_op2(g, KIR_OP_MUL, nm, x, s);
    snprintf(nm, sizeof nm, "a%lld", (long long)axis);
    int32_t a = kh_op2(g, KIR_OP_ADD, nm, m, bias);
    snprintf(nm, sizeof nm, "p%lld", (long long)axis);
    kir_node *n = kh_add(g, KIR_OP_SOFTMAX, nm, &a, 1);
    assert_int_equal(kir_attr_set_int(g, n, "axis", axis), KILN_OK);
    kh_out(&o, g, kh_finish(g, n));
  }
  /* [5,1] + [8] -> [5,8]: the chain's shape is the broadcast */
  int32_t cb = kh_op2(g, KIR_OP_SUB, "cb", col, bias);
  kh_out(&o, g, kh_op1(g, KIR_OP_SOFTMAX, "pcb", kh_op1(g, KIR_OP_NEG, "ncb", cb)));
  check_fused(g, &o, 0, (const kir_op[]){KIR_OP_FUSED_SOFTMAX}, (const int[]){5}, 1);
  kir_graph_destroy(g);
}

static void test_softmax_f32(void **st) { (void)st; softmax_chains(KILN_F32); }
static void test_softmax_f64(void **st) { (void)st; softmax_chains(KILN_F64); }

/* The default pipeline on a block with every kind of group, compiled. */
static void test_pipeline_mixed(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(6, 10)), t = kh_ph(g, "temp", KILN_F32, 0, NULL);
  int32_t w = kh_cst(g, "w", KILN_F32, DIMS(10, 4), 3), b = kh_cst(g, "b", KILN_F32, DIMS(4), 4);
  int32_t h = kh_op2(g, KIR_OP_ADD, "h", kh_matmul(g, "mm", x, w, 0, 0), b);
  kir_node *p = kh_add(g, KIR_OP_SOFTMAX, "probs", (int32_t[]){kh_op2(g, KIR_OP_DIV, "d", h, t)}, 1);
  kh_out(&o, g, kh_finish(g, p));
  int32_t ab = kh_op1(g, KIR_OP_RELU, "ab", kh_op2(g, KIR_OP_MUL, "sq", h, t));
  kh_out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MEAN, "loss", ab, NULL, 0, 0));
  kh_run *r = kh_run_new();
  char err[512];
  kh_reference(g, &o, KH_NONZERO, r);
  kir_graph *opt = kir_graph_clone(g);
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {o.names, o.n, NULL, 0, false, NULL, NULL};
  if (kps_run(opt, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", opt->error);
  assert_int_equal(kh_count_op(opt, KIR_OP_FUSED_MATMUL), 1);
  assert_int_equal(kh_count_op(opt, KIR_OP_FUSED_SOFTMAX), 1);
  assert_int_equal(kh_count_op(opt, KIR_OP_FUSED_REDUCE), 1);
  const char *path = kt_path("mixed.kart");
  kh_compile_or_fail(opt, &o, path);
  assert_int_equal(kh_run_artifact(g, path, &o, r, err, sizeof err), KILN_RT_OK);
  for (int32_t j = 0; j < o.n; j++) kt_assert_close(r->got[j], r->want[j], 1e-5);
  unlink(path);
  kir_graph_destroy(opt);
  kh_run_free(r);
  kir_graph_destroy(g);
}

/* y = clamp(x @ w1, min=0) @ w2 after the default pipeline: exactly two kernels. */
static void test_mlp_two_kernels(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(64, 1000));
  int32_t w1 = kh_cst(g, "w1", KILN_F32, DIMS(1000, 100), 21);
  int32_t w2 = kh_cst(g, "w2", KILN_F32, DIMS(100, 10), 22);
  int32_t h = kh_clamp(g, "h", kh_matmul(g, "xw1", x, w1, 0, 0), 0.0, NAN);
  int32_t y = kh_matmul(g, "y", h, w2, 0, 0);
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
