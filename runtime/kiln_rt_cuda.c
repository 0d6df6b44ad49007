/* kiln_rt_cuda.c — the CUDA driver, opened with dlopen on first use so libkiln_rt never
 * links CUDA: kiln_rt_cuda_devices answers how many devices the process may use, or why
 * none (no driver library, a library that is not the driver, no device). The executor of
 * CUDA artifacts will sit on this (docs/CUDA.md). Depends on libc, libdl, pthreads. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_runtime.h"

/* The driver API's C entry points used here (CUresult is an enum: an int at the ABI). */
typedef struct cu_api {
  int (*init)(unsigned flags);
  int (*driver_version)(int *version);
  int (*device_count)(int *count);
  int (*error_name)(int result, const char **name); /* optional */
} cu_api;

static struct {
  pthread_once_t once;
  cu_api api;
  int ok;            /* driver opened and initialized */
  int count;         /* devices, when ok */
  int version;       /* e.g. 13000, when known */
  char why[320];     /* the reason when !ok */
} drv = {PTHREAD_ONCE_INIT, {0}, 0, 0, 0, ""};

static void *sym(void *h, const char *name) {
  dlerror();
  return dlsym(h, name);
}

/* "CUDA_ERROR_NO_DEVICE" or "error 100". */
static void result_text(int r, char *out, size_t n) {
  const char *name = NULL;
  if (drv.api.error_name && drv.api.error_name(r, &name) == 0 && name) snprintf(out, n, "%s", name);
  else snprintf(out, n, "error %d", r);
}

static void open_driver(void) {
  const char *path = getenv("KILN_CUDA_DRIVER");
  if (!path || !*path) path = "libcuda.so.1";
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(drv.why, sizeof drv.why, "no CUDA driver: %s", e ? e : path);
    return;
  }
  static const char *const names[] = {"cuInit", "cuDriverGetVersion", "cuDeviceGetCount"};
  void *fn[3];
  for (int i = 0; i < 3; i++)
    if (!(fn[i] = sym(h, names[i]))) {
      snprintf(drv.why, sizeof drv.why, "%s is not a CUDA driver: it has no %s", path, names[i]);
      dlclose(h);
      return;
    }
  /* POSIX dlsym returns an object pointer; converting it is how functions are found. */
  memcpy(&drv.api.init, &fn[0], sizeof fn[0]);
  memcpy(&drv.api.driver_version, &fn[1], sizeof fn[1]);
  memcpy(&drv.api.device_count, &fn[2], sizeof fn[2]);
  void *en = sym(h, "cuGetErrorName");
  if (en) memcpy(&drv.api.error_name, &en, sizeof en);
  if (drv.api.driver_version(&drv.version) != 0) drv.version = 0;
  char r[64];
  int rc = drv.api.init(0);
  if (rc != 0) {
    result_text(rc, r, sizeof r);
    snprintf(drv.why, sizeof drv.why, "CUDA driver %d.%d has no usable device: cuInit: %s",
             drv.version / 1000, drv.version % 1000 / 10, r);
    dlclose(h);
    return;
  }
  rc = drv.api.device_count(&drv.count);
  if (rc != 0 || drv.count <= 0) {
    result_text(rc, r, sizeof r);
    snprintf(drv.why, sizeof drv.why, "CUDA driver %d.%d has no device%s%s%s",
             drv.version / 1000, drv.version % 1000 / 10, rc ? " (cuDeviceGetCount: " : "",
             rc ? r : "", rc ? ")" : "");
    drv.count = 0;
    dlclose(h);
    return;
  }
  drv.ok = 1; /* the handle stays open for the process: the executor will call into it */
}

kiln_rt_status kiln_rt_cuda_devices(int *count, char *msg, size_t msg_n) {
  if (count) *count = 0;
  if (!count) {
    if (msg && msg_n) snprintf(msg, msg_n, "kiln_rt_cuda_devices: NULL count");
    return KILN_RT_ERR_ARGUMENT;
  }
  pthread_once(&drv.once, open_driver);
  if (!drv.ok) {
    if (msg && msg_n) snprintf(msg, msg_n, "%s", drv.why);
    return KILN_RT_ERR_DEVICE;
  }
  *count = drv.count;
  if (msg && msg_n)
    snprintf(msg, msg_n, "CUDA driver %d.%d, %d device%s", drv.version / 1000,
             drv.version % 1000 / 10, drv.count, drv.count == 1 ? "" : "s");
  return KILN_RT_OK;
}
