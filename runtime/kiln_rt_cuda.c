/* kiln_rt_cuda.c — the CUDA driver, opened with dlopen on first use so libkiln_rt never
 * links CUDA: kiln_rt_cuda_devices answers how many devices the process may use, or why
 * none (no driver library, a library that is not the driver, no device); rt_cu_driver
 * hands the executor (kiln_rt_cuda_exec.c) the whole entry-point table.
 * Depends on libc, libdl, pthreads. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stddef.h>

#include "kiln_rt_cuda_api.h"
#include "kiln_runtime.h"

static struct {
  pthread_once_t once;
  rt_cu_api api;
  int ok;            /* driver opened and initialized */
  int count;         /* devices, when ok */
  int version;       /* e.g. 13000, when known */
  char why[320];     /* the reason when !ok */
  char missing[64];  /* an executor entry point the driver lacks ("" = none) */
} drv = {PTHREAD_ONCE_INIT, {0}, 0, 0, 0, "", ""};

/* The executor's entry points, as the CUDA 12/13 driver exports them (cuda.h maps the
 * API names to these _v2 symbols); found after the probe's three. */
static const struct {
  const char *name;
  size_t offset;
} k_exec_syms[] = {
    {"cuDeviceGet", offsetof(rt_cu_api, device_get)},
    {"cuDeviceGetAttribute", offsetof(rt_cu_api, device_attribute)},
    {"cuDeviceGetName", offsetof(rt_cu_api, device_name)},
    {"cuDevicePrimaryCtxRetain", offsetof(rt_cu_api, primary_retain)},
    {"cuDevicePrimaryCtxRelease_v2", offsetof(rt_cu_api, primary_release)},
    {"cuCtxPushCurrent_v2", offsetof(rt_cu_api, ctx_push)},
    {"cuCtxPopCurrent_v2", offsetof(rt_cu_api, ctx_pop)},
    {"cuCtxSynchronize", offsetof(rt_cu_api, ctx_sync)},
    {"cuMemAlloc_v2", offsetof(rt_cu_api, mem_alloc)},
    {"cuMemFree_v2", offsetof(rt_cu_api, mem_free)},
    {"cuMemcpyHtoD_v2", offsetof(rt_cu_api, htod)},
    {"cuMemcpyDtoH_v2", offsetof(rt_cu_api, dtoh)},
    {"cuMemcpyDtoD_v2", offsetof(rt_cu_api, dtod)},
    {"cuMemcpyHtoDAsync_v2", offsetof(rt_cu_api, htod_async)},
    {"cuMemcpyDtoHAsync_v2", offsetof(rt_cu_api, dtoh_async)},
    {"cuMemcpyDtoDAsync_v2", offsetof(rt_cu_api, dtod_async)},
    {"cuMemsetD32Async", offsetof(rt_cu_api, memset32_async)},
    {"cuStreamCreate", offsetof(rt_cu_api, stream_create)},
    {"cuStreamDestroy_v2", offsetof(rt_cu_api, stream_destroy)},
    {"cuStreamSynchronize", offsetof(rt_cu_api, stream_sync)},
    {"cuModuleLoadData", offsetof(rt_cu_api, module_load)},
    {"cuModuleUnload", offsetof(rt_cu_api, module_unload)},
    {"cuModuleGetFunction", offsetof(rt_cu_api, module_function)},
    {"cuModuleGetGlobal_v2", offsetof(rt_cu_api, module_global)},
    {"cuLaunchKernel", offsetof(rt_cu_api, launch)},
    {"cuStreamBeginCapture_v2", offsetof(rt_cu_api, capture_begin)},
    {"cuStreamEndCapture", offsetof(rt_cu_api, capture_end)},
    {"cuGraphInstantiateWithFlags", offsetof(rt_cu_api, graph_instantiate)},
    {"cuGraphLaunch", offsetof(rt_cu_api, graph_launch)},
    {"cuGraphExecDestroy", offsetof(rt_cu_api, graph_exec_destroy)},
    {"cuGraphDestroy", offsetof(rt_cu_api, graph_destroy)},
};

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
  for (size_t i = 0; i < sizeof k_exec_syms / sizeof k_exec_syms[0]; i++) {
    void *p = sym(h, k_exec_syms[i].name);
    if (p) memcpy((char *)&drv.api + k_exec_syms[i].offset, &p, sizeof p);
    else if (!drv.missing[0]) snprintf(drv.missing, sizeof drv.missing, "%s", k_exec_syms[i].name);
  }
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

int rt_dl_open_table(const char *env, const char *const *names, size_t n_names,
                     const rt_dl_sym *syms, size_t n_syms, void *table, const char *label,
                     const char *what, char *why, size_t why_n, void **handle) {
  const char *path = getenv(env);
  const char *tried = path && *path ? path : names[0];
  char first[200] = "";
  void *h = NULL;
  if (path && *path) {
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(first, sizeof first, "%s", dlerror());
  } else {
    for (size_t i = 0; !h && i < n_names; i++) {
      h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
      if (!h && i == 0) snprintf(first, sizeof first, "%s", dlerror());
    }
  }
  if (!h) {
    snprintf(why, why_n, "no %s (%s): %s", label, what, first[0] ? first : tried);
    return -1;
  }
  for (size_t i = 0; i < n_syms; i++) {
    void *p = dlsym(h, syms[i].name);
    if (!p) {
      snprintf(why, why_n, "%s is not %s: it has no %s", tried, label, syms[i].name);
      dlclose(h);
      return -1;
    }
    /* POSIX dlsym returns an object pointer; converting it is how functions are found */
    memcpy((char *)table + syms[i].offset, &p, sizeof p);
  }
  if (handle) *handle = h;
  return 0;
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

const rt_cu_api *rt_cu_driver(int *count, char *why, size_t why_n) {
  *count = 0;
  pthread_once(&drv.once, open_driver);
  if (!drv.ok) {
    snprintf(why, why_n, "%s", drv.why);
    return NULL;
  }
  if (drv.missing[0]) {
    snprintf(why, why_n, "CUDA driver %d.%d lacks %s, which the executor needs (too old a driver?)",
             drv.version / 1000, drv.version % 1000 / 10, drv.missing);
    return NULL;
  }
  *count = drv.count;
  return &drv.api;
}

void rt_cu_result(int r, char *out, size_t n) {
  const char *name = NULL;
  if (drv.api.error_name && drv.api.error_name(r, &name) == 0 && name) snprintf(out, n, "%s", name);
  else snprintf(out, n, "CUresult %d", r);
}
