/* test_codegen_perf.c — the fast paths of the generated C, each checked against the
 * reference interpreter: GEMVs (one-row and one-column matmuls, constant weights stored
 * transposed by kcg_compile_cpu, fused epilogues), f32 chains computed in float (bit for
 * bit equal to the interpreter's double-then-round, special values included), loops big
 * enough to run under OpenMP (flat, broadcast, reductions, softmax, transpose, add_n),
 * --cpu generic, and OpenBLAS's core type: chosen from cpuid when the user set none,
 * never overridden when the user did (ctest runs this binary both ways). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/kt.h"
#include "tests/codegen/kcg_harness.h"
#include "codegen/kcg.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

static char user_core[64]; /* OPENBLAS_CORETYPE as this process started, "" = unset */

/* Fuses a copy with the CPU pipeline (roots = outputs). */
static kir_graph *pipelined(kir_graph *g, const kh_outs *o, void *arg) {
  (void)arg;
  kir_graph *opt = kir_graph_clone(g);
  assert_non_null(opt);
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {o->names, o->n, NULL, 0, false, NULL, NULL};
  if (kps_run(opt, &po, &ctx) != KILN_OK) fail_msg("pipeline: %s", opt->error);
  return opt;
}

/* Reference on g, compile the fused copy, run, and require every output to equal the
 * reference bit for bit (exact) or within kt_tolerance. */
static void check(kir_graph *g, const kh_outs *o, bool exact) {
  kh_run *r = kh_run_new();
  char err[512];
  kh_reference(g, o, 0, r);
  kir_graph *opt = pipelined(g, o, NULL);
  const char *path = kt_path("perf.kart");
  kh_compile_or_fail(opt, o, path);
  if (kh_run_artifact(g, path, o, r, err, sizeof err) != KILN_RT_OK) fail_msg("run: %s", err);
  for (int32_t j = 0; j < o->n; j++) {
    if (!exact) continue;
    size_t nb = (size_t)kir_type_nbytes(&r->want[j]->type);
    const uint32_t *w = r->want[j]->data, *x = r->got[j]->data;
    for (size_t i = 0; i < nb / 4; i++)
      if (w[i] != x[i])
        fail_msg("output '%s' element %zu: got bits %08x, want %08x", o->names[j], i, x[i], w[i]);
  }
  kh_compare(o, r, KH_NAN_OK);
  unlink(path);
  kir_graph_destroy(opt);
  kh_run_free(r);
}

/* A constant of shape dims holding NaN, +-inf, +-0, subnormals, huge and tiny values
 * and random numbers. */
static int32_t special_cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank,
                           const int64_t *dims) {
  kir_tensor *t = kh_tensor(dt, rank, dims);
  kt_fill(t, 77, -3, 3);
  const double sp[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e-40, -3e-39, 3e38, 1e-30, 0.1};
  int64_t n = kir_type_numel(&t->type);
  for (int64_t i = 0; i < n; i += 7) {
    double v = sp[(i / 7) % (int64_t)(sizeof sp / sizeof sp[0])];
    if (dt == KILN_F32) ((float *)t->data)[i] = (float)v;
    else ((double *)t->data)[i] = v;
  }
  int32_t id = kh_cst_t(g, name, t);
  kir_tensor_free(t);
  return id;
}

/* ---------------------------------------------------------------- gemv ---------- */

/* x[1,K] @ W: W constant (stored transposed by kcg_compile_cpu) and W a placeholder,
 * with and without transpose flags; A @ v[K,1]; a fused bias + relu epilogue. */
static void gemv_graph(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(1, 37)), xt = kh_ph(g, "xt", dt, DIMS(37, 1));
  int32_t w = kh_cst(g, "w", dt, DIMS(37, 23), 5), wp = kh_ph(g, "wp", dt, DIMS(37, 23));
  int32_t wtp = kh_ph(g, "wtp", dt, DIMS(23, 37)), bias = kh_cst(g, "bias", dt, DIMS(23), 6);
  int32_t a = kh_ph(g, "a", dt, DIMS(19, 37)), at = kh_ph(g, "at", dt, DIMS(37, 19));
  int32_t w2 = kh_cst(g, "w2", dt, DIMS(37, 23), 7);
  kh_out(&o, g, kh_matmul(g, "row_const", x, w, 0, 0));
  kh_out(&o, g, kh_matmul(g, "row_ph", x, wp, 0, 0));
  kh_out(&o, g, kh_matmul(g, "row_ph_tb", x, wtp, 0, 1));
  kh_out(&o, g, kh_matmul(g, "row_ta", xt, wp, 1, 0));
  kh_out(&o, g, kh_matmul(g, "col", a, xt, 0, 0));
  kh_out(&o, g, kh_matmul(g, "col_ta_tb", at, x, 1, 1));
  int32_t h = kh_op2(g, KIR_OP_ADD, "h", kh_matmul(g, "mm", x, w2, 0, 0), bias);
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "fused", h));
  check(g, &o, false);
  kir_graph_destroy(g);
}

static void test_gemv_f32(void **st) { (void)st; gemv_graph(KILN_F32); }
static void test_gemv_f64(void **st) { (void)st; gemv_graph(KILN_F64); }

/* The generated C of x[rows, 64] @ w (w [64, 32], or [32, 64] with transpose_b) contains
 * `want` and no cblas_sgemm. */
static void expect_product_call(int64_t rows, int tb, const char *want) {
  kir_graph *g = kir_graph_create();
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(rows, 64));
  int32_t w = tb ? kh_ph(g, "w", KILN_F32, DIMS(32, 64)) : kh_ph(g, "w", KILN_F32, DIMS(64, 32));
  int32_t y = kh_matmul(g, "y", x, w, 0, tb);
  kps_memplan plan;
  char *src = NULL;
  assert_int_equal(kps_plan_memory(g, &y, 1, &plan), KILN_OK);
  if (kcg_c_generate(g, &plan, &y, 1, &src) != KILN_OK) fail_msg("generate: %s", g->error);
  kps_memplan_free(&plan);
  assert_non_null(strstr(src, want));
  assert_null(strstr(src, "cblas_sgemm"));
  kir_free(src);
  kir_graph_destroy(g);
}

/* The generated C of a one-row product calls GEMV, not GEMM. */
static void test_gemv_emitted(void **st) {
  (void)st;
  expect_product_call(1, 0, "cblas_sgemv(CblasRowMajor, CblasTrans, 64, 32,");
}

/* A constant shared with another reader keeps its layout; both products still right. */
static void test_gemv_shared_constant(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(1, 30)), xs = kh_ph(g, "xs", KILN_F32, DIMS(5, 30));
  int32_t w = kh_cst(g, "w", KILN_F32, DIMS(30, 12), 9);
  kh_out(&o, g, kh_matmul(g, "one", x, w, 0, 0));
  kh_out(&o, g, kh_matmul(g, "five", xs, w, 0, 0));
  kh_out(&o, g, w);
  check(g, &o, false);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- small M ------- */

/* Products of 2..8 rows run as Kiln's kcg_sgemm_small: constant weights (stored
 * transposed by kcg_compile_cpu), a placeholder B^T, K with a vector tail, N odd (the
 * column-pair loop's tail), M = 2 (column pairs), 5 and 8 (one column at a time), a
 * fused bias + relu epilogue; a batched product and one with transpose_a stay sgemm. */
static void test_small_m(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  const int64_t ms[] = {2, 3, 5, 8};
  char name[32];
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "x%d", (int)ms[i]);
    int32_t x = kh_ph(g, name, KILN_F32, DIMS(ms[i], 37));
    snprintf(name, sizeof name, "w%d", (int)ms[i]);
    int32_t w = kh_cst(g, name, KILN_F32, DIMS(37, 23), 11 + (int)i);
    snprintf(name, sizeof name, "y%d", (int)ms[i]);
    kh_out(&o, g, kh_matmul(g, name, x, w, 0, 0));
  }
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(4, 70)), wt = kh_ph(g, "wt", KILN_F32, DIMS(9, 70));
  kh_out(&o, g, kh_matmul(g, "ph_tb", x, wt, 0, 1));
  int32_t w2 = special_cst(g, "wsp", KILN_F32, DIMS(70, 33)), bias = kh_cst(g, "bias", KILN_F32, DIMS(33), 6);
  int32_t h = kh_op2(g, KIR_OP_ADD, "h", kh_matmul(g, "mm", x, w2, 0, 0), bias);
  kh_out(&o, g, kh_op1(g, KIR_OP_RELU, "fused", h));
  int32_t xb = kh_ph(g, "xb", KILN_F32, DIMS(2, 3, 16)), wb = kh_ph(g, "wb", KILN_F32, DIMS(2, 5, 16));
  kh_out(&o, g, kh_matmul(g, "batched_tb", xb, wb, 0, 1));
  int32_t xt = kh_ph(g, "xt", KILN_F32, DIMS(16, 3)), w16 = kh_ph(g, "w16", KILN_F32, DIMS(7, 16));
  kh_out(&o, g, kh_matmul(g, "ta_tb", xt, w16, 1, 1));
  check(g, &o, false);
  kir_graph_destroy(g);
}

/* The generated C of a 4-row product calls kcg_sgemm_small, not sgemm. */
static void test_small_m_emitted(void **st) {
  (void)st;
  expect_product_call(4, 1, "kcg_sgemm_small(4, 32, 64, pa, pb, py);");
}

/* ---------------------------------------------------------------- f32 chains ---- */

/* Every op that the chain computes in float, on special values: bit for bit. Big
 * enough for the parallel loop (flat and broadcast). */
static void exact_chain(int64_t rows, int64_t cols) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", KILN_F32, DIMS(rows, cols)), b = kh_ph(g, "b", KILN_F32, DIMS(rows, cols));
  int32_t s = special_cst(g, "s", KILN_F32, DIMS(rows, cols));
  int32_t row = special_cst(g, "row", KILN_F32, DIMS(cols));
  int32_t v = kh_op2(g, KIR_OP_ADD, "v1", a, s);
  v = kh_op2(g, KIR_OP_MUL, "v2", v, b);
  v = kh_op2(g, KIR_OP_DIV, "v3", v, kh_op2(g, KIR_OP_SUB, "d", b, s));
  v = kh_op2(g, KIR_OP_SUB, "v4", v, row);
  v = kh_op2(g, KIR_OP_MAXIMUM, "v5", v, kh_op1(g, KIR_OP_NEG, "ns", s));
  v = kh_op1(g, KIR_OP_SQRT, "v6", kh_op2(g, KIR_OP_MINIMUM, "v7", v, row));
  v = kh_clamp(g, "v8", kh_op2(g, KIR_OP_MUL, "v9", v, row), -0.1, 0.5); /* 0.1: not a float */
  v = kh_op1(g, KIR_OP_RELU, "v10", kh_op2(g, KIR_OP_DIV, "v11", s, v));
  kh_out(&o, g, kh_op2(g, KIR_OP_ADD, "out", v, a));
  check(g, &o, true);
  kir_graph_destroy(g);
}

static void test_exact_small(void **st) { (void)st; exact_chain(3, 17); }
static void test_exact_parallel(void **st) { (void)st; exact_chain(300, 301); }

/* Transcendental steps stay in double: within tolerance, also under OpenMP. */
static void test_transcendental_parallel(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", KILN_F32, DIMS(256, 300)), pos = kh_ph(g, "pos", KILN_F32, DIMS(256, 300));
  int32_t v = kh_op1(g, KIR_OP_TANH, "t", kh_op2(g, KIR_OP_MUL, "m", a, pos));
  v = kh_op1(g, KIR_OP_SIGMOID, "sg", kh_op2(g, KIR_OP_ADD, "ad", v, kh_op1(g, KIR_OP_LOG, "l", pos)));
  kh_out(&o, g, kh_op1(g, KIR_OP_EXP, "e", v));
  check(g, &o, false);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- parallel ------ */

/* Reductions (fused and plain, over inner and outer axes), softmax, transpose and
 * add_n over more elements than the parallel threshold. */
static void big_ops(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(2, 300, 250)), b = kh_ph(g, "b", dt, DIMS(2, 300, 250));
  int32_t ab = kh_op2(g, KIR_OP_MUL, "ab", a, b);
  kh_out(&o, g, kh_reduce(g, KIR_OP_REDUCE_SUM, "sum_last", kh_op1(g, KIR_OP_RELU, "r", ab),
                          (const int64_t[]){-1}, 1, 0));
  kh_out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MAX, "max_mid", a, (const int64_t[]){1}, 1, 1));
  kh_out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MEAN, "mean_first", b, (const int64_t[]){0}, 1, 0));
  kir_node *sm = kh_add(g, KIR_OP_SOFTMAX, "sm", (int32_t[]){kh_op2(g, KIR_OP_SUB, "sb", a, b)}, 1);
  kh_out(&o, g, kh_finish(g, sm));
  kh_out(&o, g, kh_with_ints(g, KIR_OP_TRANSPOSE, "tr", a, "perm", (const int64_t[]){2, 0, 1}, 3));
  kh_out(&o, g, kh_finish(g, kh_add(g, KIR_OP_ADD_N, "an", (int32_t[]){a, b, ab}, 3)));
  check(g, &o, false);
  kir_graph_destroy(g);
}

static void test_big_f32(void **st) { (void)st; big_ops(KILN_F32); }
static void test_big_f64(void **st) { (void)st; big_ops(KILN_F64); }

/* ---------------------------------------------------------------- cpu, blas ----- */

/* --cpu generic compiles and runs; an unknown cpu is refused, naming it. */
static void test_cpu_option(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(4, 8)), w = kh_cst(g, "w", KILN_F32, DIMS(8, 3), 3);
  kh_out(&o, g, kh_matmul(g, "y", x, w, 0, 0));
  kh_run *r = kh_run_new();
  char err[512];
  kh_reference(g, &o, 0, r);
  const char *path = kt_path("cpu.kart");
  kcg_options opt = {.opt_flags = KH_STRICT_FLAGS, .cpu = "generic"};
  if (kcg_compile_cpu(g, o.names, o.n, &opt, path) != KILN_OK) fail_msg("compile: %s", g->error);
  if (kh_run_artifact(g, path, &o, r, err, sizeof err) != KILN_RT_OK) fail_msg("run: %s", err);
  kh_compare(&o, r, 0);
  opt.cpu = "pentium-pro";
  assert_int_equal(kcg_compile_cpu(g, o.names, o.n, &opt, path), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "pentium-pro"));
  unlink(path);
  kh_run_free(r);
  kir_graph_destroy(g);
}

/* The core OpenBLAS runs: the user's OPENBLAS_CORETYPE untouched, or kiln's choice from
 * cpuid; and a GEMM through it matches the interpreter. */
static void test_blas_core(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(70, 300)), w = kh_cst(g, "w", KILN_F32, DIMS(300, 130), 4);
  kh_out(&o, g, kh_matmul(g, "y", x, w, 0, 0));
  check(g, &o, false); /* loads OpenBLAS for the first time in this process */
  const char *path = kt_path("core.kart");
  kh_compile_or_fail(g, &o, path);
  kiln_rt_model *m = NULL;
  if (kiln_rt_model_open(path, &m) != KILN_RT_OK) fail_msg("open: %s", kiln_rt_model_error(m));
  const char *note = kiln_rt_model_blas_core(m), *env = getenv("OPENBLAS_CORETYPE");
  fprintf(stderr, "blas core: %s\n", note);
  if (user_core[0]) {
    assert_non_null(strstr(note, "(OPENBLAS_CORETYPE set by the user)"));
    assert_true(strncasecmp(note, user_core, strlen(user_core)) == 0);
    assert_string_equal(env, user_core);
  } else {
    __builtin_cpu_init();
    const char *want = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
                           ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "Haswell"
                                                                                          : NULL;
    if (want) {
      assert_true(strncmp(note, want, strlen(want)) == 0);
      assert_non_null(strstr(note, "(chosen by kiln from cpuid"));
      assert_string_equal(env, want);
    } else {
      assert_non_null(strstr(note, "OpenBLAS chose"));
    }
  }
  assert_string_equal(kiln_rt_model_blas_core(NULL), "");
  kiln_rt_model_close(m);
  unlink(path);
  kir_graph_destroy(g);
}

int main(void) {
  const char *u = getenv("OPENBLAS_CORETYPE");
  snprintf(user_core, sizeof user_core, "%s", u ? u : "");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_blas_core), /* first: OpenBLAS is not loaded yet */
      cmocka_unit_test(test_gemv_f32),          cmocka_unit_test(test_gemv_f64),
      cmocka_unit_test(test_gemv_emitted),      cmocka_unit_test(test_gemv_shared_constant),
      cmocka_unit_test(test_small_m),           cmocka_unit_test(test_small_m_emitted),
      cmocka_unit_test(test_exact_small),       cmocka_unit_test(test_exact_parallel),
      cmocka_unit_test(test_transcendental_parallel),
      cmocka_unit_test(test_big_f32),           cmocka_unit_test(test_big_f64),
      cmocka_unit_test(test_cpu_option),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
