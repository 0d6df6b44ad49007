/* fake_cuda.c — a stand-in for libcuda.so.1 in the runtime's tests (test_cuda_driver,
 * test_cuda_exec) and tests/cuda's test_cuda_runtime: device memory is host memory
 * (a CUdeviceptr is the host address), copies and memsets are memcpy/memset at once,
 * a module accepts any bytes, every function name exists (but those in
 * $FAKE_CUDA_MISSING), launches cannot run kernels and only append "launch NAME" to the
 * file $FAKE_CUDA_LOG, and stream capture records launches (and work other stand-ins
 * enqueue through fake_cuda_enqueue, e.g. fake_cublaslt's GEMMs) into a graph that
 * cuGraphLaunch replays ("graph launch"). Chosen by the environment:
 *   FAKE_CUDA_DEVICES    "none": cuInit fails with CUDA_ERROR_NO_DEVICE; N: N devices (1)
 *   FAKE_CUDA_CC         compute capability as MAJOR*10+MINOR (90)
 *   FAKE_CUDA_MEM_LIMIT  bytes of device memory (unlimited)
 *   FAKE_CUDA_FAIL_LAUNCH  a kernel whose launch fails with CUDA_ERROR_LAUNCH_FAILED
 *   FAKE_CUDA_SET_ERROR  "NAME=V": running kernel NAME sets kiln_error to V (if still 0)
 *   FAKE_CUDA_NO_CAPTURE 1: cuStreamBeginCapture fails (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
 *   FAKE_CUDA_LOG        the log file (appended)
 * Calls that need a context fail with CUDA_ERROR_INVALID_CONTEXT when none is current on
 * the calling thread. Test code: plain malloc; never linked into libkiln_rt. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  E_OK = 0, E_INVALID_VALUE = 1, E_OOM = 2, E_NOT_INIT = 3, E_NO_DEVICE = 100,
  E_INVALID_DEVICE = 101, E_INVALID_CONTEXT = 201, E_NOT_FOUND = 500, E_LAUNCH_FAILED = 719,
  E_CAPTURE_UNSUPPORTED = 900
};

typedef unsigned long long cu_ptr;

/* ---- every exported entry point (the names libkiln_rt looks up) ---- */
int cuInit(unsigned flags);
int cuDriverGetVersion(int *version);
int cuDeviceGetCount(int *count);
int cuGetErrorName(int result, const char **name);
int cuDeviceGet(int *dev, int ordinal);
int cuDeviceGetAttribute(int *v, int attr, int dev);
int cuDeviceGetName(char *name, int len, int dev);
int cuDevicePrimaryCtxRetain(void **ctx, int dev);
int cuDevicePrimaryCtxRelease_v2(int dev);
int cuCtxPushCurrent_v2(void *ctx);
int cuCtxPopCurrent_v2(void **ctx);
int cuCtxSetCurrent(void *ctx);
int cuCtxSynchronize(void);
int cuMemAlloc_v2(cu_ptr *p, size_t n);
int cuMemFree_v2(cu_ptr p);
int cuMemGetInfo_v2(size_t *free_b, size_t *total);
int cuMemcpyHtoD_v2(cu_ptr dst, const void *src, size_t n);
int cuMemcpyDtoH_v2(void *dst, cu_ptr src, size_t n);
int cuMemcpyDtoD_v2(cu_ptr dst, cu_ptr src, size_t n);
int cuMemcpyHtoDAsync_v2(cu_ptr dst, const void *src, size_t n, void *stream);
int cuMemcpyDtoHAsync_v2(void *dst, cu_ptr src, size_t n, void *stream);
int cuMemcpyDtoDAsync_v2(cu_ptr dst, cu_ptr src, size_t n, void *stream);
int cuMemsetD32Async(cu_ptr dst, unsigned v, size_t n, void *stream);
int cuMemsetD8_v2(cu_ptr dst, unsigned char v, size_t n);
int cuStreamCreate(void **stream, unsigned flags);
int cuStreamDestroy_v2(void *stream);
int cuStreamSynchronize(void *stream);
int cuModuleLoadData(void **mod, const void *image);
int cuModuleUnload(void *mod);
int cuModuleGetFunction(void **fn, void *mod, const char *name);
int cuModuleGetGlobal_v2(cu_ptr *p, size_t *n, void *mod, const char *name);
int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra);
int cuStreamBeginCapture_v2(void *stream, int mode);
int cuStreamEndCapture(void *stream, void **graph);
int cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags);
int cuGraphLaunch(void *exec, void *stream);
int cuGraphExecDestroy(void *exec);
int cuGraphDestroy(void *graph);
/* for the other stand-ins and the tests */
int fake_cuda_enqueue(void *stream, void (*run)(void *), void *arg, void (*drop)(void *));
long fake_cuda_live_allocs(void);
long fake_cuda_live_objects(void);

/* ---- state ---- */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static long g_allocs, g_objects; /* live device allocations; live modules, streams, graphs */
static size_t g_used;
static int g_primary_refs;
static _Thread_local int t_depth; /* contexts pushed on this thread */
static char g_ctx_token;

typedef struct alloc_rec {
  cu_ptr p;
  size_t n;
  struct alloc_rec *next;
} alloc_rec;
static alloc_rec *g_alloc_list;

typedef struct fn_rec {
  char name[64];
  struct module *mod;
  struct fn_rec *next;
} fn_rec;

typedef struct module {
  unsigned error_word; /* kiln_error */
  fn_rec *fns;
} module;

typedef struct item { /* one recorded piece of work */
  void (*run)(void *);
  void *arg;
  void (*drop)(void *);
} item;

typedef struct graph {
  item *items;
  int n, cap;
} graph;

typedef struct stream {
  graph *capturing; /* NULL: work runs at once */
} fstream;

static int need_ctx(void) { return t_depth > 0 ? E_OK : E_INVALID_CONTEXT; }

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void log_line(const char *fmt, const char *arg) {
  const char *path = getenv("FAKE_CUDA_LOG");
  if (!path || !*path) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  fprintf(f, fmt, arg);
  fputc('\n', f);
  fclose(f);
}

/* ---- devices and contexts ---- */

int cuInit(unsigned flags) {
  const char *d = getenv("FAKE_CUDA_DEVICES");
  (void)flags;
  return d && strcmp(d, "none") == 0 ? E_NO_DEVICE : E_OK;
}

int cuDriverGetVersion(int *version) {
  *version = 13000;
  return E_OK;
}

int cuDeviceGetCount(int *count) {
  const char *d = getenv("FAKE_CUDA_DEVICES");
  *count = d ? atoi(d) : 1;
  return E_OK;
}

int cuGetErrorName(int result, const char **name) {
  switch (result) {
  case E_OK: *name = "CUDA_SUCCESS"; break;
  case E_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
  case E_OOM: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
  case E_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; break;
  case E_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; break;
  case E_INVALID_CONTEXT: *name = "CUDA_ERROR_INVALID_CONTEXT"; break;
  case E_NOT_FOUND: *name = "CUDA_ERROR_NOT_FOUND"; break;
  case E_LAUNCH_FAILED: *name = "CUDA_ERROR_LAUNCH_FAILED"; break;
  case E_CAPTURE_UNSUPPORTED: *name = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
  default: *name = "CUDA_ERROR_UNKNOWN"; break;
  }
  return E_OK;
}

static int valid_dev(int dev) {
  int n = 0;
  cuDeviceGetCount(&n);
  return dev >= 0 && dev < n;
}

int cuDeviceGet(int *dev, int ordinal) {
  if (!valid_dev(ordinal)) return E_INVALID_DEVICE;
  *dev = ordinal;
  return E_OK;
}

int cuDeviceGetAttribute(int *v, int attr, int dev) {
  long cc = env_long("FAKE_CUDA_CC", 90);
  if (!valid_dev(dev)) return E_INVALID_DEVICE;
  if (attr == 75) *v = (int)(cc / 10);
  else if (attr == 76) *v = (int)(cc % 10);
  else *v = 0;
  return E_OK;
}

int cuDeviceGetName(char *name, int len, int dev) {
  if (!valid_dev(dev)) return E_INVALID_DEVICE;
  snprintf(name, (size_t)len, "Fake GPU %d", dev);
  return E_OK;
}

int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  if (!valid_dev(dev)) return E_INVALID_DEVICE;
  pthread_mutex_lock(&g_lock);
  g_primary_refs++;
  pthread_mutex_unlock(&g_lock);
  *ctx = &g_ctx_token;
  return E_OK;
}

int cuDevicePrimaryCtxRelease_v2(int dev) {
  (void)dev;
  pthread_mutex_lock(&g_lock);
  int r = g_primary_refs > 0 ? E_OK : E_INVALID_CONTEXT;
  if (g_primary_refs > 0) g_primary_refs--;
  pthread_mutex_unlock(&g_lock);
  return r;
}

int cuCtxPushCurrent_v2(void *ctx) {
  if (ctx != &g_ctx_token) return E_INVALID_CONTEXT;
  t_depth++;
  return E_OK;
}

int cuCtxPopCurrent_v2(void **ctx) {
  if (t_depth == 0) return E_INVALID_CONTEXT;
  t_depth--;
  if (ctx) *ctx = &g_ctx_token;
  return E_OK;
}

int cuCtxSetCurrent(void *ctx) {
  t_depth = ctx ? 1 : 0;
  return E_OK;
}

int cuCtxSynchronize(void) { return need_ctx(); }

/* ---- memory ---- */

int cuMemAlloc_v2(cu_ptr *p, size_t n) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (n == 0) return E_INVALID_VALUE;
  long limit = env_long("FAKE_CUDA_MEM_LIMIT", -1);
  pthread_mutex_lock(&g_lock);
  int r = E_OK;
  if (limit >= 0 && g_used + n > (size_t)limit) r = E_OOM;
  void *mem = r ? NULL : aligned_alloc(256, (n + 255) / 256 * 256);
  alloc_rec *rec = mem ? malloc(sizeof *rec) : NULL;
  if (!r && (!mem || !rec)) {
    free(mem);
    r = E_OOM;
  }
  if (!r) {
    memset(mem, 0xAB, n); /* device memory is not zeroed */
    rec->p = (cu_ptr)(uintptr_t)mem;
    rec->n = n;
    rec->next = g_alloc_list;
    g_alloc_list = rec;
    g_used += n;
    g_allocs++;
    *p = rec->p;
  }
  pthread_mutex_unlock(&g_lock);
  return r;
}

int cuMemFree_v2(cu_ptr p) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  pthread_mutex_lock(&g_lock);
  int r = E_INVALID_VALUE;
  for (alloc_rec **q = &g_alloc_list; *q; q = &(*q)->next)
    if ((*q)->p == p) {
      alloc_rec *rec = *q;
      *q = rec->next;
      g_used -= rec->n;
      g_allocs--;
      free((void *)(uintptr_t)rec->p);
      free(rec);
      r = E_OK;
      break;
    }
  pthread_mutex_unlock(&g_lock);
  return r;
}

int cuMemGetInfo_v2(size_t *free_b, size_t *total) {
  long limit = env_long("FAKE_CUDA_MEM_LIMIT", (long)1 << 40);
  *total = (size_t)limit;
  *free_b = (size_t)limit > g_used ? (size_t)limit - g_used : 0;
  return need_ctx();
}

static int copy(void *dst, const void *src, size_t n) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (n && (!dst || !src)) return E_INVALID_VALUE;
  if (n) memmove(dst, src, n);
  return E_OK;
}

int cuMemcpyHtoD_v2(cu_ptr dst, const void *src, size_t n) { return copy((void *)(uintptr_t)dst, src, n); }
int cuMemcpyDtoH_v2(void *dst, cu_ptr src, size_t n) { return copy(dst, (void *)(uintptr_t)src, n); }
int cuMemcpyDtoD_v2(cu_ptr dst, cu_ptr src, size_t n) {
  return copy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
}

/* Copies on a capturing stream are not supported here (the runtime never captures them). */
static int async_ok(void *stream) {
  const fstream *s = stream;
  return s && s->capturing ? E_CAPTURE_UNSUPPORTED : E_OK;
}

int cuMemcpyHtoDAsync_v2(cu_ptr dst, const void *src, size_t n, void *stream) {
  return async_ok(stream) ? E_CAPTURE_UNSUPPORTED : cuMemcpyHtoD_v2(dst, src, n);
}
int cuMemcpyDtoHAsync_v2(void *dst, cu_ptr src, size_t n, void *stream) {
  return async_ok(stream) ? E_CAPTURE_UNSUPPORTED : cuMemcpyDtoH_v2(dst, src, n);
}
int cuMemcpyDtoDAsync_v2(cu_ptr dst, cu_ptr src, size_t n, void *stream) {
  return async_ok(stream) ? E_CAPTURE_UNSUPPORTED : cuMemcpyDtoD_v2(dst, src, n);
}

int cuMemsetD32Async(cu_ptr dst, unsigned v, size_t n, void *stream) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (async_ok(stream)) return E_CAPTURE_UNSUPPORTED;
  unsigned *p = (unsigned *)(uintptr_t)dst;
  for (size_t i = 0; i < n; i++) p[i] = v;
  return E_OK;
}

int cuMemsetD8_v2(cu_ptr dst, unsigned char v, size_t n) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  memset((void *)(uintptr_t)dst, v, n);
  return E_OK;
}

/* ---- streams, modules, launches, graphs ---- */

static void count_object(int d) {
  pthread_mutex_lock(&g_lock);
  g_objects += d;
  pthread_mutex_unlock(&g_lock);
}

int cuStreamCreate(void **s, unsigned flags) {
  (void)flags;
  if (need_ctx()) return E_INVALID_CONTEXT;
  *s = calloc(1, sizeof(fstream));
  if (!*s) return E_OOM;
  count_object(1);
  return E_OK;
}

static void graph_free(graph *g);

int cuStreamDestroy_v2(void *s) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (!s) return E_INVALID_VALUE;
  fstream *st = s;
  if (st->capturing) graph_free(st->capturing);
  free(s);
  count_object(-1);
  return E_OK;
}

int cuStreamSynchronize(void *s) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  return s && ((fstream *)s)->capturing ? E_CAPTURE_UNSUPPORTED : E_OK;
}

int cuModuleLoadData(void **mod, const void *image) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  char head[33];
  size_t n = 0;
  const unsigned char *p = image;
  while (n < 32 && p[n] >= 0x20 && p[n] < 0x7f) head[n] = (char)p[n], n++;
  head[n] = '\0';
  log_line("load %s", head);
  *mod = calloc(1, sizeof(module));
  if (!*mod) return E_OOM;
  count_object(1);
  return E_OK;
}

int cuModuleUnload(void *mod) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  module *m = mod;
  while (m->fns) {
    fn_rec *f = m->fns;
    m->fns = f->next;
    free(f);
  }
  free(m);
  count_object(-1);
  return E_OK;
}

static int listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

int cuModuleGetFunction(void **fn, void *mod, const char *name) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (listed(getenv("FAKE_CUDA_MISSING"), name)) return E_NOT_FOUND;
  fn_rec *f = calloc(1, sizeof *f);
  if (!f) return E_OOM;
  snprintf(f->name, sizeof f->name, "%s", name);
  f->mod = mod;
  f->next = ((module *)mod)->fns;
  ((module *)mod)->fns = f;
  *fn = f;
  return E_OK;
}

int cuModuleGetGlobal_v2(cu_ptr *p, size_t *n, void *mod, const char *name) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (strcmp(name, "kiln_error") != 0 || listed(getenv("FAKE_CUDA_MISSING"), name)) return E_NOT_FOUND;
  *p = (cu_ptr)(uintptr_t)&((module *)mod)->error_word;
  *n = sizeof(unsigned);
  return E_OK;
}

/* Running a kernel: the log line, and kiln_error when FAKE_CUDA_SET_ERROR names it. */
static void run_kernel(void *arg) {
  fn_rec *f = arg;
  log_line("launch %s", f->name);
  const char *set = getenv("FAKE_CUDA_SET_ERROR");
  const char *eq = set ? strchr(set, '=') : NULL;
  if (eq && (size_t)(eq - set) == strlen(f->name) && strncmp(set, f->name, (size_t)(eq - set)) == 0 &&
      f->mod->error_word == 0)
    f->mod->error_word = (unsigned)strtoul(eq + 1, NULL, 10);
}

static int graph_add(graph *g, void (*run)(void *), void *arg, void (*drop)(void *)) {
  if (g->n == g->cap) {
    int cap = g->cap ? 2 * g->cap : 8;
    item *it = realloc(g->items, (size_t)cap * sizeof *it);
    if (!it) return E_OOM;
    g->items = it;
    g->cap = cap;
  }
  g->items[g->n++] = (item){run, arg, drop};
  return E_OK;
}

int fake_cuda_enqueue(void *s, void (*run)(void *), void *arg, void (*drop)(void *)) {
  fstream *st = s;
  if (st && st->capturing) return graph_add(st->capturing, run, arg, drop);
  run(arg);
  if (drop) drop(arg);
  return E_OK;
}

int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *s, void **params, void **extra) {
  (void)extra;
  if (need_ctx()) return E_INVALID_CONTEXT;
  fn_rec *f = fn;
  if (!f || !params || !params[0] || !params[1] || !params[2] || gx == 0 || gy != 1 || gz != 1 ||
      bx == 0 || bx > 1024 || by != 1 || bz != 1 || shared != 0)
    return E_INVALID_VALUE;
  const char *fail = getenv("FAKE_CUDA_FAIL_LAUNCH");
  if (fail && strcmp(fail, f->name) == 0) return E_LAUNCH_FAILED;
  return fake_cuda_enqueue(s, run_kernel, f, NULL);
}

static void graph_free(graph *g) {
  for (int i = 0; i < g->n; i++)
    if (g->items[i].drop) g->items[i].drop(g->items[i].arg);
  free(g->items);
  free(g);
  count_object(-1);
}

int cuStreamBeginCapture_v2(void *s, int mode) {
  (void)mode;
  if (need_ctx()) return E_INVALID_CONTEXT;
  fstream *st = s;
  if (!st || st->capturing) return E_INVALID_VALUE;
  if (env_long("FAKE_CUDA_NO_CAPTURE", 0)) return E_CAPTURE_UNSUPPORTED;
  st->capturing = calloc(1, sizeof(graph));
  if (!st->capturing) return E_OOM;
  count_object(1);
  return E_OK;
}

int cuStreamEndCapture(void *s, void **g) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  fstream *st = s;
  if (!st || !st->capturing) return E_INVALID_VALUE;
  *g = st->capturing;
  st->capturing = NULL;
  return E_OK;
}

/* The executable graph takes the recorded work; the graph keeps an empty list. */
int cuGraphInstantiateWithFlags(void **exec, void *g, unsigned long long flags) {
  (void)flags;
  if (need_ctx()) return E_INVALID_CONTEXT;
  graph *src = g, *e = calloc(1, sizeof *e);
  if (!e) return E_OOM;
  *e = *src;
  src->items = NULL;
  src->n = src->cap = 0;
  count_object(1);
  *exec = e;
  return E_OK;
}

int cuGraphLaunch(void *exec, void *s) {
  if (need_ctx()) return E_INVALID_CONTEXT;
  if (async_ok(s)) return E_CAPTURE_UNSUPPORTED;
  graph *e = exec;
  log_line("%s", "graph launch");
  for (int i = 0; i < e->n; i++) e->items[i].run(e->items[i].arg);
  return E_OK;
}

int cuGraphExecDestroy(void *exec) {
  graph_free(exec);
  return E_OK;
}

int cuGraphDestroy(void *g) {
  graph_free(g);
  return E_OK;
}

long fake_cuda_live_allocs(void) {
  pthread_mutex_lock(&g_lock);
  long n = g_allocs;
  pthread_mutex_unlock(&g_lock);
  return n;
}

long fake_cuda_live_objects(void) {
  pthread_mutex_lock(&g_lock);
  long n = g_objects + g_primary_refs;
  pthread_mutex_unlock(&g_lock);
  return n;
}
