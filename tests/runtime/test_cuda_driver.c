/* test_cuda_driver.c — libkiln_rt's CUDA driver probe without a GPU: each case runs in a
 * fresh process (the driver is opened once per process) with $KILN_CUDA_DRIVER pointing
 * at a missing file, a library that is not the driver, or tests/runtime/fake_cuda.c
 * ($FAKE_CUDA_DEVICES choosing its answer), and checks status, count and message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kiln_runtime.h"
#include "tests/kt_child.h"

/* Child: one probe, printed as "rc count msg". */
static int probe(void) {
  int count = -1;
  char msg[512] = "";
  kiln_rt_status rc = kiln_rt_cuda_devices(&count, msg, sizeof msg);
  int count2 = -1;
  kiln_rt_status rc2 = kiln_rt_cuda_devices(&count2, NULL, 0); /* the same answer again */
  printf("%d %d %s\n", (int)rc, count, msg);
  return rc2 == rc && count2 == count ? 0 : 3;
}

typedef struct result {
  int rc, count;
  char msg[512];
} result;

/* Runs this binary with --probe and the given environment; parses its line. */
static void run_probe(const char *driver, const char *devices, result *r) {
  char drv[512] = "KILN_CUDA_DRIVER", dev[128] = "FAKE_CUDA_DEVICES", buf[700] = "";
  if (driver) snprintf(drv, sizeof drv, "KILN_CUDA_DRIVER=%s", driver);
  if (devices) snprintf(dev, sizeof dev, "FAKE_CUDA_DEVICES=%s", devices);
  const char *args[] = {"--probe", NULL}, *env[] = {drv, devices ? dev : NULL, NULL};
  assert_int_equal(kt_child(args, env, buf, sizeof buf), 0);
  int used = 0;
  assert_int_equal(sscanf(buf, "%d %d %n", &r->rc, &r->count, &used), 2);
  snprintf(r->msg, sizeof r->msg, "%s", buf + used);
  r->msg[strcspn(r->msg, "\n")] = '\0';
}

static void test_missing_driver(void **st) {
  (void)st;
  result r;
  run_probe("/nonexistent/libcuda.so.1", NULL, &r);
  assert_int_equal(r.rc, KILN_RT_ERR_DEVICE);
  assert_int_equal(r.count, 0);
  assert_non_null(strstr(r.msg, "no CUDA driver"));
  assert_non_null(strstr(r.msg, "/nonexistent/libcuda.so.1"));
  assert_string_equal(kiln_rt_status_name(KILN_RT_ERR_DEVICE), "device");
}

static void test_not_a_driver(void **st) {
  (void)st;
  result r;
  run_probe("libm.so.6", NULL, &r);
  assert_int_equal(r.rc, KILN_RT_ERR_DEVICE);
  assert_non_null(strstr(r.msg, "libm.so.6 is not a CUDA driver: it has no cuInit"));
}

static void test_no_device(void **st) {
  (void)st;
  result r;
  run_probe(FAKE_CUDA_PATH, "none", &r);
  assert_int_equal(r.rc, KILN_RT_ERR_DEVICE);
  assert_int_equal(r.count, 0);
  assert_non_null(strstr(r.msg, "CUDA driver 13.0 has no usable device: cuInit: CUDA_ERROR_NO_DEVICE"));
  run_probe(FAKE_CUDA_PATH, "0", &r);
  assert_int_equal(r.rc, KILN_RT_ERR_DEVICE);
  assert_non_null(strstr(r.msg, "CUDA driver 13.0 has no device"));
}

static void test_devices(void **st) {
  (void)st;
  result r;
  run_probe(FAKE_CUDA_PATH, "2", &r);
  assert_int_equal(r.rc, KILN_RT_OK);
  assert_int_equal(r.count, 2);
  assert_string_equal(r.msg, "CUDA driver 13.0, 2 devices");
  run_probe(FAKE_CUDA_PATH, "1", &r);
  assert_string_equal(r.msg, "CUDA driver 13.0, 1 device");
}

/* Whatever this machine has: a consistent answer either way. */
static void test_this_machine(void **st) {
  (void)st;
  result r;
  run_probe(NULL, NULL, &r);
  if (r.rc == KILN_RT_OK) {
    assert_true(r.count > 0);
    assert_non_null(strstr(r.msg, "CUDA driver"));
  } else {
    assert_int_equal(r.rc, KILN_RT_ERR_DEVICE);
    assert_int_equal(r.count, 0);
    assert_true(strlen(r.msg) > 0);
  }
  printf("this machine: %s\n", r.msg);
}

static void test_arguments(void **st) {
  (void)st;
  char msg[64];
  assert_int_equal(kiln_rt_cuda_devices(NULL, msg, sizeof msg), KILN_RT_ERR_ARGUMENT);
  assert_non_null(strstr(msg, "NULL count"));
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) return probe();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_missing_driver), cmocka_unit_test(test_not_a_driver),
      cmocka_unit_test(test_no_device),      cmocka_unit_test(test_devices),
      cmocka_unit_test(test_this_machine),   cmocka_unit_test(test_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
