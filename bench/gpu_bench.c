/* gpu_bench.c — Kiln's side of scripts/gpu-check.sh's benchmark table (issue 5), on the
 * GPU it runs on: MLP 784-512-512-10 at batch 1, 256 and 4096 and the 50-op elementwise
 * chain on a 1 GiB tensor, each compiled for the CUDA target (kcg_compile_cuda) and run
 * through libkiln_rt with device-resident inputs and outputs (batch 1 also with host
 * buffers: what a caller holding host memory waits for); beside them, in the same
 * process, the same three GEMMs through cuBLASLt alone (descriptors as the runtime builds
 * them, bias/ReLU epilogues, heuristic's first algorithm, one stream synchronization per
 * forward pass, as kiln_rt_run_ex has) and the device's copy bandwidth (a 1 GiB
 * device-to-device copy, bytes read plus written). Every time is wall clock around a
 * call that returns with its results complete: median, p10, p90 of many runs after
 * warm-up, inputs rotated through several device buffers (more bytes than the L2).
 * Prints a line per case and, last, one JSON object (--json FILE writes it there too).
 * usage: bench_gpu [--arch sm_90] [--only NAME] [--json FILE] [--quick] */
#include <dlfcn.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_graphs.h"
#include "codegen/kcg.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_gpu: %s: %s\n", what, msg);
  exit(1);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct stats {
  double med, p10, p90; /* microseconds */
  int n;
} stats;

static stats summarize(double *s, int n) {
  qsort(s, (size_t)n, sizeof *s, cmp_d);
  return (stats){s[n / 2] * 1e6, s[n / 10] * 1e6, s[n * 9 / 10] * 1e6, n};
}

/* ---------------------------------------------------------------- JSON out ------ */

static char json[8192];
static size_t json_n;

static void jput(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void jput(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(json + json_n, sizeof json - json_n, fmt, ap);
  va_end(ap);
  if (k > 0) json_n = json_n + (size_t)k < sizeof json ? json_n + (size_t)k : sizeof json - 1;
}

static void jstats(const char *key, stats s) {
  jput("\"%s\": {\"median_us\": %.3f, \"p10_us\": %.3f, \"p90_us\": %.3f, \"runs\": %d}, ", key, s.med,
       s.p10, s.p90, s.n);
}

/* ---------------------------------------------------------------- Kiln ---------- */

static const char *arch = "sm_90";
static bool quick;
static char device_name[200] = "";

/* Compiles g (output "y") for the CUDA target and opens it. */
static kiln_rt_model *compile_open(const char *name, kir_graph *g, double *compile_s) {
  const char *outs[1] = {"y"};
  static const char *const devices[] = {"cpu:0", "cuda:0"};
  kps_options po;
  kps_context ctx;
  memset(&po, 0, sizeof po);
  memset(&ctx, 0, sizeof ctx);
  po.pipeline = KPS_DEFAULT_PIPELINE;
  ctx.roots = outs;
  ctx.n_roots = 1;
  ctx.devices = devices;
  ctx.n_devices = 2;
  if (kps_run(g, &po, &ctx) != KILN_OK) die(name, g->error);
  char path[64];
  snprintf(path, sizeof path, "/tmp/bench_gpu_%d.kart", (int)getpid());
  kcg_options co;
  memset(&co, 0, sizeof co);
  co.cuda_archs = arch;
  double t0 = now_s();
  if (kcg_compile_cuda(g, outs, 1, &co, path) != KILN_OK) die(name, g->error);
  *compile_s = now_s() - t0;
  kiln_rt_model *m = NULL;
  if (kiln_rt_model_open(path, &m) != KILN_RT_OK) die(name, kiln_rt_model_error(m));
  unlink(path);
  snprintf(device_name, sizeof device_name, "%s", kiln_rt_model_device(m));
  return m;
}

/* Times kiln_rt_run_ex with device (or host) buffers; inputs rotate through `sets` copies. */
static stats time_kiln(kiln_rt_model *m, const char *name, bool device_io, int iters) {
  kiln_rt_context *c = NULL;
  if (kiln_rt_context_create(m, &c) != KILN_RT_OK) die(name, kiln_rt_context_error(c));
  kiln_rt_tensor_info ii, oi;
  kiln_rt_model_input(m, 0, &ii);
  kiln_rt_model_output(m, 0, &oi);
  int sets = ii.nbytes >= ((size_t)256 << 20) ? 2 : 8;
  float *host = malloc(ii.nbytes), *y = malloc(oi.nbytes);
  void *in[8], *out = y;
  if (!host || !y) die(name, "out of memory");
  for (size_t i = 0; i < ii.nbytes / 4; i++) host[i] = bg_frand();
  for (int k = 0; k < sets; k++) {
    if (!device_io) {
      in[k] = malloc(ii.nbytes);
      if (!in[k]) die(name, "out of memory");
      memcpy(in[k], host, ii.nbytes);
      continue;
    }
    if (kiln_rt_device_alloc(m, ii.nbytes, &in[k]) != KILN_RT_OK ||
        kiln_rt_device_copy(m, in[k], KILN_RT_MEMORY_DEVICE, host, KILN_RT_MEMORY_HOST, ii.nbytes))
      die(name, kiln_rt_model_error(m));
  }
  if (device_io && kiln_rt_device_alloc(m, oi.nbytes, &out) != KILN_RT_OK) die(name, kiln_rt_model_error(m));
  unsigned char in_mem = device_io ? KILN_RT_MEMORY_DEVICE : KILN_RT_MEMORY_HOST, out_mem = in_mem;
  kiln_rt_run_options o = {&in_mem, &out_mem, 0};
  kiln_rt_buffer bo = {out, oi.nbytes};
  double *s = malloc(sizeof *s * (size_t)iters);
  int warm = iters / 10 + 3;
  for (int k = -warm; k < iters; k++) {
    kiln_rt_buffer bi = {in[(k + warm) % sets], ii.nbytes};
    double a = now_s();
    if (kiln_rt_run_ex(c, &bi, 1, &bo, 1, &o) != KILN_RT_OK) die(name, kiln_rt_context_error(c));
    if (k >= 0) s[k] = now_s() - a;
  }
  stats r = summarize(s, iters);
  free(s);
  for (int k = 0; k < sets; k++) {
    if (device_io) kiln_rt_device_free(m, in[k]);
    else free(in[k]);
  }
  if (device_io) kiln_rt_device_free(m, out);
  free(host);
  free(y);
  kiln_rt_context_destroy(c);
  return r;
}

/* ---------------------------------------------------------------- cuBLASLt alone - */
/* The driver and cuBLASLt entry points used here, declared locally (dlopen, as the
 * runtime does): a peer measurement, independent of the runtime's own code. */
typedef void *lt_handle;
typedef struct lt_heur {
  uint64_t algo[8];
  size_t workspace;
  int state;
  float waves;
  int reserved[4];
} lt_heur;
enum { LT_COMPUTE_32F = 68, LT_R_32F = 0, LT_TRANSA = 3, LT_TRANSB = 4, LT_EPILOGUE = 7,
       LT_BIAS_POINTER = 8, LT_EPI_DEFAULT = 1, LT_EPI_RELU_BIAS = 6, LT_EPI_BIAS = 4,
       LT_PREF_WORKSPACE = 1 };

static struct {
  int (*init)(unsigned);
  int (*dev_get)(int *, int);
  int (*ctx_retain)(void **, int);
  int (*ctx_set)(void *);
  int (*ctx_sync)(void);
  int (*create)(lt_handle *);
  int (*desc_create)(void **, int, int);
  int (*desc_set)(void *, int, const void *, size_t);
  int (*layout_create)(void **, int, uint64_t, uint64_t, int64_t);
  int (*pref_create)(void **);
  int (*pref_set)(void *, int, const void *, size_t);
  int (*heur)(lt_handle, void *, void *, void *, void *, void *, void *, int, lt_heur *, int *);
  int (*matmul)(lt_handle, void *, const void *, const void *, void *, const void *, void *,
                const void *, const void *, void *, void *, void *, const void *, void *, size_t, void *);
} lt;

static void *need_sym(void *h, const char *name) {
  void *p = h ? dlsym(h, name) : NULL;
  if (!p) die("cuBLASLt alone", name);
  return p;
}

#define LOAD(h, field, name) do { void *p_ = need_sym(h, name); memcpy(&lt.field, &p_, sizeof p_); } while (0)

static void lt_open(void) {
  void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  void *l = dlopen("libcublasLt.so.13", RTLD_NOW | RTLD_LOCAL);
  if (!l) l = dlopen("libcublasLt.so.12", RTLD_NOW | RTLD_LOCAL);
  if (!cu || !l) die("cuBLASLt alone", "cannot open libcuda.so.1 or libcublasLt.so.13/.12");
  LOAD(cu, init, "cuInit");
  LOAD(cu, dev_get, "cuDeviceGet");
  LOAD(cu, ctx_retain, "cuDevicePrimaryCtxRetain");
  LOAD(cu, ctx_set, "cuCtxSetCurrent");
  LOAD(cu, ctx_sync, "cuCtxSynchronize");
  LOAD(l, create, "cublasLtCreate");
  LOAD(l, desc_create, "cublasLtMatmulDescCreate");
  LOAD(l, desc_set, "cublasLtMatmulDescSetAttribute");
  LOAD(l, layout_create, "cublasLtMatrixLayoutCreate");
  LOAD(l, pref_create, "cublasLtMatmulPreferenceCreate");
  LOAD(l, pref_set, "cublasLtMatmulPreferenceSetAttribute");
  LOAD(l, heur, "cublasLtMatmulAlgoGetHeuristic");
  LOAD(l, matmul, "cublasLtMatmul");
}

typedef struct lt_gemm {
  void *desc, *la, *lb, *ld;
  lt_heur h;
  void *w, *bias, *in, *out; /* device pointers */
} lt_gemm;

/* The MLP's three layers, y = act(x W + b), as the runtime maps them: column-major
 * D^T[n, batch] = W^T[n, k] x^T[k, batch], bias per row, ReLU on the first two. */
static stats time_cublaslt(kiln_rt_model *m, int64_t batch, int iters) {
  static const int64_t dims[4] = {784, 512, 512, 10};
  int dev = 0;
  void *ctx = NULL;
  if (lt.init(0) || lt.dev_get(&dev, 0) || lt.ctx_retain(&ctx, dev) || lt.ctx_set(ctx))
    die("cuBLASLt alone", "no CUDA context");
  lt_handle h = NULL;
  if (lt.create(&h)) die("cuBLASLt alone", "cublasLtCreate");
  size_t ws_bytes = (size_t)32 << 20;
  void *ws = NULL, *pref = NULL, *act[4];
  if (kiln_rt_device_alloc(m, ws_bytes, &ws) != KILN_RT_OK) die("cuBLASLt alone", kiln_rt_model_error(m));
  if (lt.pref_create(&pref) || lt.pref_set(pref, LT_PREF_WORKSPACE, &ws_bytes, sizeof ws_bytes))
    die("cuBLASLt alone", "preference");
  for (int l = 0; l < 4; l++) {
    size_t nb = (size_t)batch * (size_t)dims[l] * 4;
    float *host = malloc(nb);
    for (size_t i = 0; i < nb / 4; i++) host[i] = bg_frand();
    if (kiln_rt_device_alloc(m, nb, &act[l]) != KILN_RT_OK ||
        kiln_rt_device_copy(m, act[l], KILN_RT_MEMORY_DEVICE, host, KILN_RT_MEMORY_HOST, nb))
      die("cuBLASLt alone", kiln_rt_model_error(m));
    free(host);
  }
  lt_gemm g[3];
  for (int l = 0; l < 3; l++) {
    int64_t k = dims[l], n = dims[l + 1];
    size_t wb = (size_t)(k * n) * 4, bb = (size_t)n * 4;
    float *host = malloc(wb);
    for (size_t i = 0; i < wb / 4; i++) host[i] = bg_frand() * 0.05f;
    if (kiln_rt_device_alloc(m, wb, &g[l].w) || kiln_rt_device_alloc(m, bb, &g[l].bias) ||
        kiln_rt_device_copy(m, g[l].w, KILN_RT_MEMORY_DEVICE, host, KILN_RT_MEMORY_HOST, wb) ||
        kiln_rt_device_copy(m, g[l].bias, KILN_RT_MEMORY_DEVICE, host, KILN_RT_MEMORY_HOST, bb))
      die("cuBLASLt alone", kiln_rt_model_error(m));
    free(host);
    int op_n = 0, epi = l < 2 ? LT_EPI_RELU_BIAS : LT_EPI_BIAS;
    if (lt.desc_create(&g[l].desc, LT_COMPUTE_32F, LT_R_32F) ||
        lt.desc_set(g[l].desc, LT_TRANSA, &op_n, sizeof op_n) ||
        lt.desc_set(g[l].desc, LT_TRANSB, &op_n, sizeof op_n) ||
        lt.desc_set(g[l].desc, LT_EPILOGUE, &epi, sizeof epi) ||
        lt.desc_set(g[l].desc, LT_BIAS_POINTER, &g[l].bias, sizeof g[l].bias) ||
        lt.layout_create(&g[l].la, LT_R_32F, (uint64_t)n, (uint64_t)k, n) ||
        lt.layout_create(&g[l].lb, LT_R_32F, (uint64_t)k, (uint64_t)batch, k) ||
        lt.layout_create(&g[l].ld, LT_R_32F, (uint64_t)n, (uint64_t)batch, n))
      die("cuBLASLt alone", "descriptors");
    int found = 0;
    if (lt.heur(h, g[l].desc, g[l].la, g[l].lb, g[l].ld, g[l].ld, pref, 1, &g[l].h, &found) || found < 1)
      die("cuBLASLt alone", "no algorithm");
    g[l].in = act[l];
    g[l].out = act[l + 1];
  }
  float one = 1, zero = 0;
  double *s = malloc(sizeof *s * (size_t)iters);
  int warm = iters / 10 + 3;
  for (int it = -warm; it < iters; it++) {
    double a = now_s();
    for (int l = 0; l < 3; l++)
      if (lt.matmul(h, g[l].desc, &one, g[l].w, g[l].la, g[l].in, g[l].lb, &zero, g[l].out, g[l].ld,
                    g[l].out, g[l].ld, g[l].h.algo, ws, ws_bytes, NULL))
        die("cuBLASLt alone", "cublasLtMatmul");
    if (lt.ctx_sync()) die("cuBLASLt alone", "cuCtxSynchronize");
    if (it >= 0) s[it] = now_s() - a;
  }
  stats r = summarize(s, iters);
  free(s);
  for (int l = 0; l < 3; l++) {
    kiln_rt_device_free(m, g[l].w);
    kiln_rt_device_free(m, g[l].bias);
  }
  for (int l = 0; l < 4; l++) kiln_rt_device_free(m, act[l]);
  kiln_rt_device_free(m, ws);
  return r; /* descriptors and the handle live to the process's end: a benchmark */
}

/* ---------------------------------------------------------------- cases --------- */

static void case_mlp(int64_t batch, int iters) {
  char name[32];
  snprintf(name, sizeof name, "mlp_b%lld", (long long)batch);
  double tc = 0;
  kiln_rt_model *m = compile_open(name, bg_mlp(batch), &tc);
  stats dev = time_kiln(m, name, true, iters);
  stats lt_s = time_cublaslt(m, batch, iters);
  printf("%-10s kiln (device io) median %9.2f us  p10 %9.2f  p90 %9.2f | cuBLASLt alone %9.2f us "
         "| ratio %.3f  (compile %.2f s)\n", name, dev.med, dev.p10, dev.p90, lt_s.med, dev.med / lt_s.med, tc);
  jput("\"%s\": {", name);
  jstats("kiln", dev);
  jstats("cublaslt", lt_s);
  if (batch == 1) {
    stats host = time_kiln(m, name, false, iters);
    printf("%-10s kiln (host io)   median %9.2f us  p10 %9.2f  p90 %9.2f\n", name, host.med, host.p10, host.p90);
    jstats("kiln_host_io", host);
  }
  jput("\"compile_s\": %.3f}, ", tc);
  fflush(stdout);
  kiln_rt_model_close(m);
}

static void case_chain(int iters) {
  const int64_t rows = (int64_t)1 << 22, cols = 64; /* 1 GiB of f32 */
  double tc = 0;
  kiln_rt_model *m = compile_open("chain50", bg_chain(2, (int64_t[]){rows, cols}), &tc);
  stats k = time_kiln(m, "chain50", true, iters);
  /* the device's copy bandwidth: 1 GiB device to device */
  size_t nb = (size_t)(rows * cols) * 4;
  void *a = NULL, *b = NULL;
  if (kiln_rt_device_alloc(m, nb, &a) || kiln_rt_device_alloc(m, nb, &b)) die("copy", kiln_rt_model_error(m));
  double *s = malloc(sizeof *s * (size_t)iters);
  for (int it = -3; it < iters; it++) {
    double t0 = now_s();
    if (kiln_rt_device_copy(m, b, KILN_RT_MEMORY_DEVICE, a, KILN_RT_MEMORY_DEVICE, nb)) die("copy", kiln_rt_model_error(m));
    if (it >= 0) s[it] = now_s() - t0;
  }
  stats cp = summarize(s, iters);
  free(s);
  kiln_rt_device_free(m, a);
  kiln_rt_device_free(m, b);
  double gb_k = 2.0 * (double)nb / (k.med * 1e-6) / 1e9, gb_c = 2.0 * (double)nb / (cp.med * 1e-6) / 1e9;
  printf("chain50    kiln (device io) median %9.2f us = %.0f GB/s | copy %9.2f us = %.0f GB/s | %.1f%% of copy\n",
         k.med, gb_k, cp.med, gb_c, 100.0 * gb_k / gb_c);
  jput("\"chain50\": {");
  jstats("kiln", k);
  jstats("copy", cp);
  jput("\"kiln_gbps\": %.1f, \"copy_gbps\": %.1f, \"bytes\": %zu, \"compile_s\": %.3f}, ", gb_k, gb_c, nb, tc);
  fflush(stdout);
  kiln_rt_model_close(m);
}

int main(int argc, char **argv) {
  const char *only = NULL, *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = true;
    else if (i + 1 < argc && !strcmp(argv[i], "--arch")) arch = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--only")) only = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--json")) json_path = argv[++i];
    else die("usage", "bench_gpu [--arch sm_90] [--only NAME] [--json FILE] [--quick]");
  }
  int count = 0;
  char msg[320];
  if (kiln_rt_cuda_devices(&count, msg, sizeof msg) != KILN_RT_OK) die("no GPU", msg);
  lt_open();
  int q = quick ? 10 : 1;
  jput("{\"rows\": {");
  if (!only || strstr("mlp_b1", only)) case_mlp(1, 2000 / q);
  if (!only || strstr("mlp_b256", only)) case_mlp(256, 1000 / q);
  if (!only || strstr("mlp_b4096", only)) case_mlp(4096, 300 / q);
  if (!only || strstr("chain50", only)) case_chain(40 / q + 5);
  if (json_n >= 2 && json[json_n - 2] == ',') json_n -= 2;
  jput("}, \"device\": \"%s\", \"driver\": \"%s\", \"arch\": \"%s\"}", device_name, msg, arch);
  printf("%s\n", json);
  if (json_path) {
    FILE *f = fopen(json_path, "w");
    if (!f) die(json_path, "cannot write");
    fprintf(f, "%s\n", json);
    fclose(f);
  }
  return 0;
}
