/* test_runtime_oom.c — libkiln_rt out of memory: every allocation of open, open_bytes,
 * context create, .npy read/write and kart_write is made to fail in turn (N = 0, 1, 2,
 * ... until the call succeeds); each failure must be KILN_RT_ERR_NOMEM, leak nothing,
 * leave no temp file and leave the handle closable. Also: kiln_rt_run allocates
 * nothing, and the plan's unpacking budget still says LIMIT. Links only libkiln_rt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_artifact.pb-c.h"
#include "rt_fixture.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_rt_testing.h"
#include "runtime/kiln_runtime.h"

/* No call here needs anywhere near this many allocations; reaching it is a failure. */
#define MAX_N 100000

static char g_art[512]; /* the scale artifact */

/* Entries of the temp dir whose name holds ".tmp." (left-over atomic-write files). */
static int temp_files(void) {
  DIR *d = opendir(rtf_dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

/* Arms the hook for one attempt; disarm before any assert so cmocka's own path is clean. */
static void arm(long n) { kiln_rt_testing_fail_after(n); }
static void disarm(void) { kiln_rt_testing_fail_after(-1); }

/* ---- the artifact: the scale fixture (rt_fixture.h) ---- */

/* Fills s[0..4) with plan (packed into *pb, the caller frees it), weights and code. */
static void sections(const Kiln__Rt__Plan *plan, uint8_t **pb, uint8_t **code,
                     kart_section s[4]) {
  size_t pn = kiln__rt__plan__get_packed_size(plan), cn = 0;
  *pb = malloc(pn + 1);
  assert_non_null(*pb);
  kiln__rt__plan__pack(plan, *pb);
  *code = rtf_slurp(rtf_path("scale.so"), &cn);
  s[0] = (kart_section){.kind = KART_SEC_PLAN, .data = *pb, .size = pn};
  s[1] = (kart_section){.kind = KART_SEC_WEIGHTS, .data = (const uint8_t *)RTF_SCALE_W,
                        .size = sizeof RTF_SCALE_W};
  s[2] = (kart_section){.kind = KART_SEC_CODE_CPU, .data = *code, .size = cn};
  s[3] = (kart_section){.kind = KART_SEC_SOURCE_C, .data = (const uint8_t *)"int x;", .size = 6};
}

static void pack_scale(const char *path, const rtf_plan *t) {
  if (rtf_pack_artifact(path, &t->plan, RTF_SCALE_W, sizeof RTF_SCALE_W, "scale.so") != KILN_RT_OK)
    fail_msg("could not pack %s", path);
}

static int group_setup(void **state) {
  (void)state;
  const char *tmp = getenv("TMPDIR");
  snprintf(rtf_dir, sizeof rtf_dir, "%s/kiln-rtoom-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(rtf_dir)) return -1;
  rtf_compile_so("scale", RTF_SRC_SCALE);
  rtf_plan t;
  rtf_plan_scale(&t);
  snprintf(g_art, sizeof g_art, "%s", rtf_path("scale.kart"));
  pack_scale(g_art, &t);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  disarm();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", rtf_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers for the loops ---- */

static const float X[4] = {1, 2, 3, 4};
static const float WANT_Y[4] = {2.5f, 5.0f, 7.5f, 10.0f};

static kiln_rt_status run_once(kiln_rt_context *c, float y[4]) {
  float x[4];
  memcpy(x, X, sizeof x);
  memset(y, 0, 4 * sizeof *y);
  kiln_rt_buffer in = {x, sizeof x}, out = {y, 4 * sizeof *y};
  return kiln_rt_run(c, &in, 1, &out, 1);
}

/* A model that failed to open: NOMEM, a message, no inputs, no context. */
static void check_failed_model(kiln_rt_model *m, long n, kiln_rt_status st) {
  if (st != KILN_RT_ERR_NOMEM)
    fail_msg("N=%ld: status %s (%s), want out-of-memory", n, kiln_rt_status_name(st),
             kiln_rt_model_error(m));
  if (!m) {
    assert_int_equal(n, 0); /* only the handle's own allocation may leave it NULL */
    assert_string_equal(kiln_rt_model_error(NULL), "out of memory");
    return;
  }
  if (!strstr(kiln_rt_model_error(m), "out of memory"))
    fail_msg("N=%ld: message \"%s\" does not say out of memory", n, kiln_rt_model_error(m));
  assert_int_equal(kiln_rt_model_num_inputs(m), 0);
  kiln_rt_context *c = (kiln_rt_context *)1;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_ERR_ARGUMENT);
  assert_null(c);
}

static void check_working_model(kiln_rt_model *m) {
  kiln_rt_context *c = NULL;
  float y[4];
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  assert_int_equal(run_once(c, y), KILN_RT_OK);
  assert_memory_equal(y, WANT_Y, sizeof y);
  kiln_rt_context_destroy(c);
}

typedef kiln_rt_status (*open_fn)(const void *arg, size_t n, kiln_rt_model **m);

static kiln_rt_status open_path(const void *arg, size_t n, kiln_rt_model **m) {
  (void)n;
  return kiln_rt_model_open(arg, m);
}

/* Opens with the Nth allocation failing for N = 0, 1, ... until it works. */
static void open_until_ok(open_fn fn, const void *arg, size_t bytes) {
  long base = kiln_rt_testing_live();
  long n = 0;
  for (;; n++) {
    if (n >= MAX_N) fail_msg("open still fails after %d allocations", MAX_N);
    kiln_rt_model *m = NULL;
    arm(n);
    kiln_rt_status st = fn(arg, bytes, &m);
    disarm();
    if (st == KILN_RT_OK) {
      check_working_model(m);
      kiln_rt_model_close(m);
      assert_int_equal(kiln_rt_testing_live(), base);
      break;
    }
    check_failed_model(m, n, st);
    kiln_rt_model_close(m);
    if (kiln_rt_testing_live() != base)
      fail_msg("N=%ld: %ld blocks leaked", n, kiln_rt_testing_live() - base);
    assert_int_equal(temp_files(), 0);
  }
  /* handle, label, file bytes, the plan's pieces, tensors, weights: many failure points. */
  assert_true(n > 10);
}

/* ---- tests ---- */

static void test_open_oom(void **state) {
  (void)state;
  open_until_ok(open_path, g_art, 0);
}

static void test_open_bytes_oom(void **state) {
  (void)state;
  size_t n = 0;
  uint8_t *b = rtf_slurp(g_art, &n);
  open_until_ok(kiln_rt_model_open_bytes, b, n);
  free(b);
}

/* The whole path, open + create + run, with the Nth allocation failing. */
static void test_open_create_run_oom(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  for (long n = 0;; n++) {
    if (n >= MAX_N) fail_msg("still failing after %d allocations", MAX_N);
    kiln_rt_model *m = NULL;
    kiln_rt_context *c = NULL;
    float y[4] = {0};
    arm(n);
    kiln_rt_status st = kiln_rt_model_open(g_art, &m);
    if (st == KILN_RT_OK) st = kiln_rt_context_create(m, &c);
    if (st == KILN_RT_OK) st = run_once(c, y);
    disarm();
    if (st != KILN_RT_OK && st != KILN_RT_ERR_NOMEM)
      fail_msg("N=%ld: %s, want out-of-memory", n, kiln_rt_status_name(st));
    if (st == KILN_RT_OK) assert_memory_equal(y, WANT_Y, sizeof y);
    kiln_rt_context_destroy(c);
    kiln_rt_model_close(m);
    assert_int_equal(kiln_rt_testing_live(), base);
    if (st == KILN_RT_OK) break;
  }
}

static void test_context_create_oom(void **state) {
  (void)state;
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(g_art, &m), KILN_RT_OK);
  long base = kiln_rt_testing_live(), n = 0;
  for (;; n++) {
    if (n >= MAX_N) fail_msg("create still fails after %d allocations", MAX_N);
    kiln_rt_context *c = (kiln_rt_context *)1;
    arm(n);
    kiln_rt_status st = kiln_rt_context_create(m, &c);
    disarm();
    if (st == KILN_RT_OK) {
      float y[4];
      assert_int_equal(run_once(c, y), KILN_RT_OK);
      assert_memory_equal(y, WANT_Y, sizeof y);
      kiln_rt_context_destroy(c);
      break;
    }
    assert_int_equal(st, KILN_RT_ERR_NOMEM);
    assert_null(c);
    assert_int_equal(kiln_rt_testing_live(), base);
  }
  assert_int_equal(n, 4); /* context, arena, input and output pointer arrays */
  assert_int_equal(kiln_rt_testing_live(), base);
  /* The model is untouched by the failures. */
  assert_string_equal(kiln_rt_model_error(m), "");
  kiln_rt_model_close(m);
}

/* Every allocation fails, yet runs (good and bad) work: kiln_rt_run allocates nothing. */
static void test_run_allocates_nothing(void **state) {
  (void)state;
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_model_open(g_art, &m), KILN_RT_OK);
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  long base = kiln_rt_testing_live();
  float y[4], x[4] = {0}, small[2] = {0};
  kiln_rt_buffer in = {x, sizeof x}, bad = {small, sizeof small}, out = {y, sizeof y};
  kiln_rt_status st[4];
  arm(0);
  st[0] = run_once(c, y);
  st[1] = kiln_rt_run(c, &bad, 1, &out, 1);  /* FEED: wrong size */
  st[2] = kiln_rt_run(c, &in, 1, &in, 1);    /* FEED: output aliases input */
  st[3] = run_once(c, y);
  kiln_rt_context *c2 = NULL;
  kiln_rt_status create = kiln_rt_context_create(m, &c2); /* the hook really is failing */
  disarm();
  assert_int_equal(create, KILN_RT_ERR_NOMEM);
  assert_null(c2);
  assert_int_equal(st[0], KILN_RT_OK);
  assert_int_equal(st[1], KILN_RT_ERR_FEED);
  assert_int_equal(st[2], KILN_RT_ERR_FEED);
  assert_int_equal(st[3], KILN_RT_OK);
  assert_memory_equal(y, WANT_Y, sizeof y);
  assert_int_equal(kiln_rt_testing_live(), base);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
}

static const int64_t NPY_DIMS[2] = {3, 5};

static void test_npy_write_oom(void **state) {
  (void)state;
  double data[15];
  for (int i = 0; i < 15; i++) data[i] = i * 0.25;
  const char *p = rtf_path("w.npy");
  long base = kiln_rt_testing_live(), n = 0;
  for (;; n++) {
    if (n >= MAX_N) fail_msg("npy write still fails after %d allocations", MAX_N);
    unlink(p);
    char err[512] = "";
    arm(n);
    kiln_rt_status st = kiln_rt_npy_write(p, KILN_RT_F64, 2, NPY_DIMS, data, err, sizeof err);
    disarm();
    assert_int_equal(kiln_rt_testing_live(), base);
    assert_int_equal(temp_files(), 0);
    if (st == KILN_RT_OK) break;
    assert_int_equal(st, KILN_RT_ERR_NOMEM);
    assert_non_null(strstr(err, "out of memory"));
    assert_int_not_equal(access(p, F_OK), 0); /* nothing half-written */
  }
  assert_true(n >= 1);
  kiln_rt_npy t;
  char err[512];
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_OK);
  assert_memory_equal(t.data, data, sizeof data);
  kiln_rt_npy_free(&t);
}

static void test_npy_read_oom(void **state) {
  (void)state;
  int32_t data[15];
  for (int i = 0; i < 15; i++) data[i] = i * 7 - 20;
  const char *p = rtf_path("r.npy");
  char err[512];
  assert_int_equal(kiln_rt_npy_write(p, KILN_RT_I32, 2, NPY_DIMS, data, err, sizeof err),
                   KILN_RT_OK);
  long base = kiln_rt_testing_live(), n = 0;
  for (;; n++) {
    if (n >= MAX_N) fail_msg("npy read still fails after %d allocations", MAX_N);
    kiln_rt_npy t;
    memset(&t, 0xab, sizeof t);
    arm(n);
    kiln_rt_status st = kiln_rt_npy_read(p, &t, err, sizeof err);
    disarm();
    if (st == KILN_RT_OK) {
      assert_int_equal(t.dtype, KILN_RT_I32);
      assert_int_equal(t.rank, 2);
      assert_int_equal(t.nbytes, sizeof data);
      assert_int_equal((uintptr_t)t.data % 64, 0);
      assert_memory_equal(t.data, data, sizeof data);
      kiln_rt_npy_free(&t);
      assert_int_equal(kiln_rt_testing_live(), base);
      break;
    }
    assert_int_equal(st, KILN_RT_ERR_NOMEM);
    assert_non_null(strstr(err, "out of memory"));
    assert_null(t.data); /* left empty */
    assert_int_equal(t.nbytes, 0);
    assert_int_equal(kiln_rt_testing_live(), base);
  }
  assert_int_equal(n, 2); /* header text, data */
}

static void test_kart_write_oom(void **state) {
  (void)state;
  rtf_plan t;
  rtf_plan_scale(&t);
  uint8_t *pb = NULL, *code = NULL;
  kart_section s[4];
  sections(&t.plan, &pb, &code, s);
  const char *p = rtf_path("w.kart");
  long base = kiln_rt_testing_live(), n = 0;
  for (;; n++) {
    if (n >= MAX_N) fail_msg("kart_write still fails after %d allocations", MAX_N);
    unlink(p);
    char err[512] = "";
    arm(n);
    int st = kart_write(p, s, 4, err, sizeof err);
    disarm();
    assert_int_equal(kiln_rt_testing_live(), base);
    assert_int_equal(temp_files(), 0);
    if (st == KILN_RT_OK) break;
    assert_int_equal(st, KILN_RT_ERR_NOMEM);
    assert_non_null(strstr(err, "out of memory"));
    assert_int_not_equal(access(p, F_OK), 0);
  }
  assert_true(n >= 1);
  free(pb);
  free(code);
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(p, &m), KILN_RT_OK);
  check_working_model(m);
  kiln_rt_model_close(m);
}

/* A plan of many empty steps: 2 bytes each on the wire, far more unpacked. The budget
 * (8x the section + 1 MiB) refuses it with LIMIT, and what was unpacked is freed. */
static void test_plan_budget_limit(void **state) {
  (void)state;
  enum { STEPS = 200000 };
  rtf_plan t;
  rtf_plan_scale(&t);
  Kiln__Rt__Step *steps = calloc(STEPS, sizeof *steps);
  Kiln__Rt__Step **stepp = calloc(STEPS, sizeof *stepp);
  assert_true(steps && stepp);
  for (int i = 0; i < STEPS; i++) {
    kiln__rt__step__init(&steps[i]);
    stepp[i] = &steps[i];
  }
  t.plan.n_steps = STEPS;
  t.plan.steps = stepp;
  const char *p = rtf_path("budget.kart");
  pack_scale(p, &t);
  free(steps);
  free(stepp);
  long base = kiln_rt_testing_live();
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(p, &m), KILN_RT_ERR_LIMIT);
  assert_non_null(m);
  assert_non_null(strstr(kiln_rt_model_error(m), "plan needs more than"));
  kiln_rt_model_close(m);
  assert_int_equal(kiln_rt_testing_live(), base);
}

static void test_hook_counts(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(g_art, &m), KILN_RT_OK);
  assert_true(kiln_rt_testing_live() > base); /* the counter sees the model */
  kiln_rt_model_close(m);
  assert_int_equal(kiln_rt_testing_live(), base);
  arm(0);
  kiln_rt_status st = kiln_rt_model_open(g_art, &m);
  disarm();
  assert_int_equal(st, KILN_RT_ERR_NOMEM);
  assert_null(m);
  kiln_rt_model_close(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hook_counts),
      cmocka_unit_test(test_open_oom),
      cmocka_unit_test(test_open_bytes_oom),
      cmocka_unit_test(test_open_create_run_oom),
      cmocka_unit_test(test_context_create_oom),
      cmocka_unit_test(test_run_allocates_nothing),
      cmocka_unit_test(test_npy_write_oom),
      cmocka_unit_test(test_npy_read_oom),
      cmocka_unit_test(test_kart_write_oom),
      cmocka_unit_test(test_plan_budget_limit),
  };
  return cmocka_run_group_tests_name("runtime_oom", tests, group_setup, group_teardown);
}
