/* test_bn.c — the fold-batchnorm pass (kps_bn.c) and the conv half of fuse: folded values
 * equal the unfolded graph's under the interpreter (f32 and f64, grouped convs, batch_norms
 * in a row, Gemm-style matmuls), the pass log says what was done and why not, roots keep
 * their names, and out-of-memory at every allocation leaves a valid, equivalent graph. */
#include <string.h>

#include "../kt_graph.h"

static kir_graph *parse(const char *text) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  OK(g, kir_graph_parse_text(g, text, strlen(text), "test_bn"));
  return g;
}

/* Runs pass on a clone of g with the given roots; returns the clone. log: the pass log. */
static kir_graph *run_pass(const kir_graph *g, kps_pass_fn fn, const char *const *roots, int32_t n_roots,
                           kps_result *res, char **log) {
  kir_graph *h = kir_graph_clone(g);
  assert_non_null(h);
  kt_text t;
  kt_text_open(&t);
  kps_context ctx = {.roots = roots, .n_roots = n_roots, .log = t.f};
  memset(res, 0, sizeof *res);
  OK(h, fn(h, &ctx, res));
  char *text = kt_text_close(&t);
  if (log) *log = text;
  else kir_free(text);
  OK(h, kir_verify(h));
  return h;
}

static void assert_same(kir_graph *a, kir_graph *b, const char *fetch, double tol) {
  kir_tensor *want = kt_run_fetch(a, fetch, 7, -2, 2, 0.5), *got = kt_run_fetch(b, fetch, 7, -2, 2, 0.5);
  kt_assert_close(got, want, tol);
  kir_tensor_free(want);
  kir_tensor_free(got);
}

static void assert_has(const char *text, const char *what) {
  if (!strstr(text, what)) fail_msg("expected '%s' in:\n%s", what, text);
}

static const char CONVS[] =
    "kiln.graph 1.0\n"
    "%0 \"x\" = placeholder() {dtype = f32, shape = [2, 4, 5, 4]}\n"
    "%1 \"w\" = constant() {value = f32[4,2,2,2]{1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5, -0.5, 1.0, 0.75, -1.25, 2.0, 0.5, -1.0, 1.0, 0.5, 0.5, -0.25, 1.0, 1.5, -2.0, 0.25, 0.75, 1.0, 1.0, -1.0, 0.5, 2.0, -0.5, 0.25, 1.25}}\n"
    "%2 \"b\" = constant() {value = f32[4]{0.5, -1.0, 0.25, 2.0}}\n"
    "%3 \"c\" = conv(%0, %1, %2) {group = 2, pads = [1, 0, 0, 1], strides = [2, 1]}\n"
    "%4 \"scale\" = constant() {value = f32[4]{1.0, 0.5, -1.5, 2.0}}\n"
    "%5 \"bias\" = constant() {value = f32[4]{1.0, -1.0, 0.0, 0.5}}\n"
    "%6 \"mean\" = constant() {value = f32[4]{0.0, 1.0, -0.5, 0.25}}\n"
    "%7 \"var\" = constant() {value = f32[4]{0.3, 4.0, 1.7, 0.9}}\n"
    "%8 \"bn1\" = batch_norm(%3, %4, %5, %6, %7) {epsilon = 0.001}\n"
    "%9 \"bn2\" = batch_norm(%8, %4, %6, %5, %7)\n"
    "%10 \"y\" = relu(%9)\n";

/* Two batch_norms after a grouped conv with bias fold one after the other. */
static void test_fold_conv_chain(void **state) {
  (void)state;
  kir_graph *g = parse(CONVS);
  const char *roots[] = {"y"};
  kps_result r;
  char *log = NULL;
  kir_graph *h = run_pass(g, kps_fold_batchnorm, roots, 1, &r, &log);
  assert_int_equal(kt_stat_of(&r, "folded into conv/matmul"), 2);
  assert_int_equal(kt_stat_of(&r, "rewritten as scale+shift"), 0);
  assert_has(log, "fold-batchnorm: 'bn1' folded into conv 'c'");
  assert_has(log, "fold-batchnorm: 'bn2' folded into conv 'bn1'");
  assert_int_equal(kt_find(h, "bn2")->op, KIR_OP_CONV);
  assert_null(kir_graph_find(h, "c"));
  assert_null(kir_graph_find(h, "bn1"));
  assert_null(kir_graph_find(h, "w"));
  assert_int_equal(kir_attr_int(kt_find(h, "bn2"), "group", 0), 2);
  assert_same(g, h, "y", 1e-5);
  /* a second run has nothing left to do */
  kps_result r2;
  kir_graph *h2 = run_pass(h, kps_fold_batchnorm, roots, 1, &r2, NULL);
  assert_false(r2.changed);
  kir_free(log);
  kir_graph_destroy(h2);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

/* The same in f64: the fold is computed in double, so it agrees to f64 rounding. */
static void test_fold_conv_f64(void **state) {
  (void)state;
  char text[sizeof CONVS + 64];
  snprintf(text, sizeof text, "%s", CONVS);
  for (char *p = strstr(text, "f32"); p; p = strstr(p, "f32")) memcpy(p, "f64", 3);
  kir_graph *g = parse(text);
  const char *roots[] = {"y"};
  kps_result r;
  kir_graph *h = run_pass(g, kps_fold_batchnorm, roots, 1, &r, NULL);
  assert_int_equal(kt_stat_of(&r, "folded into conv/matmul"), 2);
  assert_same(g, h, "y", 1e-12);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

static const char REFUSALS[] =
    "kiln.graph 1.0\n"
    "%0 \"x\" = placeholder() {dtype = f32, shape = [1, 2, 3]}\n"
    "%1 \"w\" = constant() {value = f32[2,2,1]{1.0, -2.0, 0.5, 3.0}}\n"
    "%2 \"c1\" = conv(%0, %1)\n"
    "%3 \"c2\" = conv(%0, %1)\n"
    "%4 \"s\" = constant() {value = f32[2]{1.0, 2.0}}\n"
    "%5 \"posv\" = placeholder() {dtype = f32, shape = [2]}\n"
    "%6 \"shared\" = batch_norm(%2, %4, %4, %4, %4)\n"
    "%7 \"kept\" = batch_norm(%3, %4, %4, %4, %5)\n"
    "%8 \"w2\" = constant() {value = f32[2,2,1]{1.0, -2.0, 0.5, 3.0}}\n"
    "%9 \"c3\" = conv(%0, %8)\n"
    "%10 \"fetched\" = batch_norm(%9, %4, %4, %4, %4)\n"
    "%11 \"wp\" = placeholder() {dtype = f32, shape = [2, 2, 1]}\n"
    "%12 \"c4\" = conv(%0, %11)\n"
    "%13 \"notconst\" = batch_norm(%12, %4, %4, %4, %4)\n"
    "%14 \"m\" = placeholder() {dtype = f32, shape = [3, 2, 2]}\n"
    "%15 \"w3\" = constant() {value = f32[2,2]{1.0, -2.0, 0.5, 3.0}}\n"
    "%16 \"mm\" = matmul(%14, %15)\n"
    "%17 \"batched\" = batch_norm(%16, %4, %4, %4, %4)\n";

static const char GEMMS[] =
    "kiln.graph 1.0\n"
    "%0 \"x\" = placeholder() {dtype = f32, shape = [3, 4]}\n"
    "%1 \"b\" = constant() {value = f32[2,4]{1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5}}\n"
    "%2 \"mm\" = matmul(%0, %1) {transpose_b = 1}\n"
    "%3 \"c\" = constant() {value = f32[3,1]{0.5, -1.0, 2.0}}\n"
    "%4 \"g\" = add(%3, %2)\n"
    "%5 \"s\" = constant() {value = f32[2]{1.5, -0.5}}\n"
    "%6 \"m\" = constant() {value = f32[2]{-1.0, 0.5}}\n"
    "%7 \"v\" = constant() {value = f32[2]{0.7, 2.5}}\n"
    "%8 \"y\" = batch_norm(%4, %5, %6, %6, %7)\n"
    "%9 \"b2\" = constant() {value = f32[4,2]{1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5}}\n"
    "%10 \"mm2\" = matmul(%0, %9)\n"
    "%11 \"z\" = batch_norm(%10, %5, %6, %6, %7)\n";

/* Gemm-style: add(matmul(x, B^T), c) and a bare matmul, both folded. */
static void test_fold_gemm(void **state) {
  (void)state;
  kir_graph *g = parse(GEMMS);
  const char *roots[] = {"y", "z"};
  kps_result r;
  char *log = NULL;
  kir_graph *h = run_pass(g, kps_fold_batchnorm, roots, 2, &r, &log);
  assert_int_equal(kt_stat_of(&r, "folded into conv/matmul"), 2);
  assert_has(log, "'y' folded into matmul 'mm'");
  assert_null(kir_graph_find(h, "g"));
  assert_null(kir_graph_find(h, "c"));
  assert_same(g, h, "y", 1e-5);
  assert_same(g, h, "z", 1e-5);
  kir_free(log);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

/* Each refusal is logged with its reason; the rewritten ones still compute the same. */
static void test_refusals_logged(void **state) {
  (void)state;
  kir_graph *g = parse(REFUSALS);
  const char *roots[] = {"shared", "kept", "fetched", "c3", "notconst", "batched"};
  kps_result r;
  char *log = NULL;
  kir_graph *h = run_pass(g, kps_fold_batchnorm, roots, 6, &r, &log);
  assert_has(log, "'shared' rewritten as scale+shift: the weight 'w' of 'c1' has another use");
  assert_has(log, "'kept' kept: its var 'posv' is not a constant");
  assert_has(log, "'fetched' rewritten as scale+shift: 'c3' is fetched");
  assert_has(log, "'notconst' rewritten as scale+shift: the weight 'wp' of 'c4' is not a constant");
  assert_has(log, "'batched' rewritten as scale+shift: 'mm' is not a rank-2 matmul");
  assert_int_equal(kt_stat_of(&r, "folded into conv/matmul"), 0);
  assert_int_equal(kt_stat_of(&r, "rewritten as scale+shift"), 4);
  assert_int_equal(kt_find(h, "kept")->op, KIR_OP_BATCH_NORM);
  assert_int_equal(kt_find(h, "c3")->op, KIR_OP_CONV);
  for (int32_t i = 0; i < 6; i++) assert_same(g, h, roots[i], 1e-5);
  kir_free(log);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

static const char FUSABLE[] =
    "kiln.graph 1.0\n"
    "%0 \"x\" = placeholder() {dtype = f32, shape = [1, 2, 4, 3]}\n"
    "%1 \"w\" = constant() {value = f32[2,2,2,1]{1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5}}\n"
    "%2 \"b\" = constant() {value = f32[2]{0.5, -1.0}}\n"
    "%3 \"c\" = conv(%0, %1, %2) {pads = [1, 0, 0, 0]}\n"
    "%4 \"s\" = constant() {value = f32[2]{1.0, 2.0}}\n"
    "%5 \"m\" = constant() {value = f32[2]{-1.0, 0.5}}\n"
    "%6 \"bn\" = batch_norm(%3, %4, %5, %5, %4)\n"
    "%7 \"r\" = leaky_relu(%6) {alpha = 0.1}\n"
    "%8 \"skip\" = placeholder() {dtype = f32, shape = [1, 2, 4, 3]}\n"
    "%9 \"y\" = add(%8, %7)\n"
    "%10 \"xb\" = placeholder() {dtype = f32, shape = [2]}\n"
    "%11 \"w2\" = constant() {value = f32[2,2,2,1]{1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5}}\n"
    "%12 \"c2\" = conv(%0, %11, %10)\n"
    "%13 \"y2\" = gelu(%12)\n";

/* fold-batchnorm then fuse: conv + bias + leaky_relu + residual add is one fused_conv
 * (the residual on the left: swap); a computed bias becomes a reshape. */
static void test_fuse_conv(void **state) {
  (void)state;
  kir_graph *g = parse(FUSABLE);
  const char *roots[] = {"y", "y2"};
  kps_result r;
  kir_graph *h = run_pass(g, kps_fold_batchnorm, roots, 2, &r, NULL);
  kir_graph *f = run_pass(h, kps_fuse, roots, 2, &r, NULL);
  assert_int_equal(kt_stat_of(&r, "convs fused"), 2);
  const kir_node *y = kt_find(f, "y"), *y2 = kt_find(f, "y2");
  assert_int_equal(y->op, KIR_OP_FUSED_CONV);
  kt_assert_ints(y, "epilogue", (const int64_t[]){KIR_OP_ADD, KIR_OP_LEAKY_RELU, KIR_OP_ADD}, 3);
  kt_assert_ints(y, "swap", (const int64_t[]){0, 0, 1}, 3);
  kt_assert_fused_from(y, (const char *const[]){"bn", "r", "y"}, 3);
  kt_assert_ints(y, "pads", (const int64_t[]){1, 0, 0, 0}, 4);
  int32_t n = 0;
  const double *lo = kir_attr_floats(y, "clamp_min", &n);
  assert_int_equal(n, 3);
  assert_true(lo[1] == 0.1);
  assert_int_equal(y2->op, KIR_OP_FUSED_CONV);
  assert_int_equal(f->nodes[y2->inputs[2]]->op, KIR_OP_RESHAPE);
  assert_same(g, f, "y", 1e-5);
  assert_same(g, f, "y2", 1e-5);
  kir_graph_destroy(f);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

/* Every root of g still computes what it does in orig (within f32 tolerance). */
typedef struct same_roots {
  const char *const *roots;
  int32_t n;
} same_roots;

static void check_roots(const kir_graph *orig, kir_graph *g, void *user) {
  const same_roots *r = user;
  for (int32_t i = 0; i < r->n; i++) assert_same((kir_graph *)orig, g, r->roots[i], 1e-5);
}

/* The Nth allocation fails until the pass succeeds (kt_pass_oom_loop). */
static void oom_loop(const char *text, kps_pass_fn fn, const char *const *roots, int32_t n_roots) {
  kir_graph *orig = parse(text);
  same_roots r = {roots, n_roots};
  kt_pass_oom_loop(orig, fn, roots, n_roots, 20000, check_roots, &r);
  kir_graph_destroy(orig);
}

static void test_out_of_memory(void **state) {
  (void)state;
  const char *r1[] = {"y"};
  oom_loop(CONVS, kps_fold_batchnorm, r1, 1);
  const char *r2[] = {"shared", "kept", "fetched", "notconst", "batched"};
  oom_loop(REFUSALS, kps_fold_batchnorm, r2, 5);
  const char *r4[] = {"y", "z"};
  oom_loop(GEMMS, kps_fold_batchnorm, r4, 2);
  const char *r3[] = {"y", "y2"};
  oom_loop(FUSABLE, kps_fuse, r3, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fold_conv_chain),
      cmocka_unit_test(test_fold_conv_f64),
      cmocka_unit_test(test_fold_gemm),
      cmocka_unit_test(test_refusals_logged),
      cmocka_unit_test(test_fuse_conv),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
