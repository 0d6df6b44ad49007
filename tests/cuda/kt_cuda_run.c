/* kt_cuda_run.c — the tests' GPU runner (kt_cuda_run.h): the CUDA driver API through
 * dlopen (the few entry points declared here, as the driver exports them), one primary
 * context on device 0, one module per run, device buffers for arena, weights and io.
 * Test code: plain malloc, errors as text; never part of libkiln_rt. */
#include "kt_cuda_run.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long cu_ptr; /* CUdeviceptr on 64-bit hosts */

typedef struct cu_fns {
  int (*init)(unsigned);
  int (*device_get)(int *, int);
  int (*attribute)(int *, int, int);
  int (*ctx_retain)(void **, int);
  int (*ctx_release)(int);
  int (*ctx_set)(void *);
  int (*load)(void **, const void *);
  int (*unload)(void *);
  int (*function)(void **, void *, const char *);
  int (*global)(cu_ptr *, size_t *, void *, const char *);
  int (*alloc)(cu_ptr *, size_t);
  int (*free_)(cu_ptr);
  int (*htod)(cu_ptr, const void *, size_t);
  int (*dtoh)(void *, cu_ptr, size_t);
  int (*memset8)(cu_ptr, unsigned char, size_t);
  int (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                void *, void **, void **);
  int (*sync)(void);
  int (*error_name)(int, const char **);
} cu_fns;

struct kt_cuda {
  void *lib;
  cu_fns f;
  void *ctx;
  int device;
  char arch[16];
};

static const struct {
  const char *name;
  size_t offset;
} k_syms[] = {
    {"cuInit", offsetof(cu_fns, init)},
    {"cuDeviceGet", offsetof(cu_fns, device_get)},
    {"cuDeviceGetAttribute", offsetof(cu_fns, attribute)},
    {"cuDevicePrimaryCtxRetain", offsetof(cu_fns, ctx_retain)},
    {"cuDevicePrimaryCtxRelease_v2", offsetof(cu_fns, ctx_release)},
    {"cuCtxSetCurrent", offsetof(cu_fns, ctx_set)},
    {"cuModuleLoadData", offsetof(cu_fns, load)},
    {"cuModuleUnload", offsetof(cu_fns, unload)},
    {"cuModuleGetFunction", offsetof(cu_fns, function)},
    {"cuModuleGetGlobal_v2", offsetof(cu_fns, global)},
    {"cuMemAlloc_v2", offsetof(cu_fns, alloc)},
    {"cuMemFree_v2", offsetof(cu_fns, free_)},
    {"cuMemcpyHtoD_v2", offsetof(cu_fns, htod)},
    {"cuMemcpyDtoH_v2", offsetof(cu_fns, dtoh)},
    {"cuMemsetD8_v2", offsetof(cu_fns, memset8)},
    {"cuLaunchKernel", offsetof(cu_fns, launch)},
    {"cuCtxSynchronize", offsetof(cu_fns, sync)},
    {"cuGetErrorName", offsetof(cu_fns, error_name)},
};

enum { ATTR_CC_MAJOR = 75, ATTR_CC_MINOR = 76, CU_ERROR_NOT_FOUND = 500 };

static void say(char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (out && n) vsnprintf(out, n, fmt, ap);
  va_end(ap);
}

static const char *rname(const kt_cuda *c, int r) {
  const char *s = NULL;
  return c->f.error_name && c->f.error_name(r, &s) == 0 && s ? s : "unknown CUresult";
}

kt_cuda *kt_cuda_open(char *why, size_t why_n) {
  const char *path = getenv("KILN_CUDA_DRIVER");
  kt_cuda *c = calloc(1, sizeof *c);
  if (!c) return say(why, why_n, "out of memory"), NULL;
  c->lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!c->lib) {
    say(why, why_n, "no CUDA driver: %s", dlerror());
    free(c);
    return NULL;
  }
  for (size_t i = 0; i < sizeof k_syms / sizeof k_syms[0]; i++) {
    void *p = dlsym(c->lib, k_syms[i].name);
    if (!p) {
      say(why, why_n, "the CUDA driver has no %s", k_syms[i].name);
      kt_cuda_close(c);
      return NULL;
    }
    memcpy((char *)&c->f + k_syms[i].offset, &p, sizeof p);
  }
  int r, major = 0, minor = 0;
  if ((r = c->f.init(0)) || (r = c->f.device_get(&c->device, 0)) ||
      (r = c->f.attribute(&major, ATTR_CC_MAJOR, c->device)) ||
      (r = c->f.attribute(&minor, ATTR_CC_MINOR, c->device)) ||
      (r = c->f.ctx_retain(&c->ctx, c->device)) || (r = c->f.ctx_set(c->ctx))) {
    say(why, why_n, "no usable CUDA device: %s", rname(c, r));
    kt_cuda_close(c);
    return NULL;
  }
  snprintf(c->arch, sizeof c->arch, "sm_%d%d", major, minor);
  return c;
}

void kt_cuda_close(kt_cuda *c) {
  if (!c) return;
  if (c->ctx) c->f.ctx_release(c->device);
  if (c->lib) dlclose(c->lib);
  free(c);
}

const char *kt_cuda_arch(const kt_cuda *c) { return c->arch; }

/* ---------------------------------------------------------------- one run ------- */

typedef struct run {
  kt_cuda *c;
  void *mod;
  cu_ptr arena, weights, io;
  cu_ptr *bufs; /* one per io slot */
  int32_t n_io;
  char *err;
  size_t err_n;
} run;

static kiln_status drv_fail(run *R, const char *call, int r, const char *what) {
  say(R->err, R->err_n, "%s failed (%s)%s%s", call, rname(R->c, r), what ? ": " : "", what ? what : "");
  return KILN_ERR_INTERNAL;
}

static kiln_status alloc_filled(run *R, cu_ptr *p, size_t n, const void *host, int poison) {
  int r = R->c->f.alloc(p, n ? n : 1);
  if (r) return drv_fail(R, "cuMemAlloc", r, NULL);
  if (host && n) r = R->c->f.htod(*p, host, n);
  else r = R->c->f.memset8(*p, (unsigned char)poison, n ? n : 1);
  return r ? drv_fail(R, host ? "cuMemcpyHtoD" : "cuMemsetD8", r, NULL) : KILN_OK;
}

static int64_t cuda_arena_bytes(const kps_memplan *plan) {
  for (int32_t a = 0; a < plan->n_arenas; a++)
    if (strcmp(plan->arenas[a].device, "cuda:0") == 0) return plan->arenas[a].peak_bytes;
  return 0;
}

/* The weights as the plan lays them out: every constant at its offset. */
static kiln_status upload_weights(run *R, kir_graph *g, const kps_memplan *plan) {
  unsigned char *w = calloc((size_t)plan->weights_bytes + 1, 1);
  if (!w) return say(R->err, R->err_n, "out of memory"), KILN_ERR_NOMEM;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_tensor *t = plan->loc[i] == KPS_LOC_WEIGHTS && g->nodes[i]->op == KIR_OP_CONSTANT
                              ? kir_attr_tensor(g->nodes[i], "value") : NULL;
    int64_t nb = t ? kir_type_nbytes(&t->type) : 0;
    if (t && nb > 0 && plan->offset[i] >= 0 && plan->offset[i] + nb <= plan->weights_bytes)
      memcpy(w + plan->offset[i], t->data, (size_t)nb);
  }
  kiln_status s = alloc_filled(R, &R->weights, (size_t)plan->weights_bytes, w, 0);
  free(w);
  return s;
}

/* io: placeholders in node order (their feeds), then the outputs (poisoned). */
static kiln_status upload_io(run *R, kir_graph *g, const kir_feed *feeds, int32_t n_feeds,
                             const int32_t *outputs, int32_t n_outputs) {
  int32_t n_in = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n_in += g->nodes[i]->op == KIR_OP_PLACEHOLDER;
  R->n_io = n_in + n_outputs;
  R->bufs = calloc((size_t)R->n_io + 1, sizeof *R->bufs);
  if (!R->bufs) return say(R->err, R->err_n, "out of memory"), KILN_ERR_NOMEM;
  int32_t slot = 0;
  kiln_status s = KILN_OK;
  for (int32_t i = 0; s == KILN_OK && i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    const kir_tensor *v = NULL;
    for (int32_t f = 0; f < n_feeds; f++)
      if (feeds[f].node == i) v = feeds[f].value;
    if (!v) return say(R->err, R->err_n, "no feed for placeholder '%s'", g->nodes[i]->name), KILN_ERR_FEED;
    if (!kir_type_equal(&v->type, &g->nodes[i]->type))
      return say(R->err, R->err_n, "feed of '%s' is not of its type", g->nodes[i]->name), KILN_ERR_FEED;
    s = alloc_filled(R, &R->bufs[slot++], (size_t)kir_type_nbytes(&v->type), v->data, 0);
  }
  for (int32_t j = 0; s == KILN_OK && j < n_outputs; j++)
    s = alloc_filled(R, &R->bufs[slot++], (size_t)kir_type_nbytes(&g->nodes[outputs[j]]->type), NULL, 0xFF);
  if (s == KILN_OK) s = alloc_filled(R, &R->io, (size_t)R->n_io * sizeof(cu_ptr), R->bufs, 0);
  return s;
}

static kiln_status launch_all(run *R, const kcg_cuda_program *prog) {
  void *params[3] = {&R->arena, &R->weights, &R->io};
  for (int32_t i = 0; i < prog->n_steps; i++) {
    const kcg_cuda_step *st = &prog->steps[i];
    if (st->kind != KCG_CUDA_STEP_KERNEL) {
      say(R->err, R->err_n, "step %d is a cuBLASLt GEMM; this runner launches kernels only", (int)i);
      return KILN_ERR_UNSUPPORTED;
    }
    void *fn = NULL;
    int r = R->c->f.function(&fn, R->mod, st->kernel);
    if (r) return drv_fail(R, "cuModuleGetFunction", r, st->kernel);
    r = R->c->f.launch(fn, (unsigned)st->grid, 1, 1, (unsigned)st->block, 1, 1, 0, NULL, params, NULL);
    if (r) return drv_fail(R, "cuLaunchKernel", r, st->kernel);
  }
  int r = R->c->f.sync();
  return r ? drv_fail(R, "cuCtxSynchronize", r, "a kernel failed") : KILN_OK;
}

static kiln_status download(run *R, kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                            kir_tensor **results) {
  int32_t n_in = R->n_io - n_outputs;
  for (int32_t j = 0; j < n_outputs; j++) {
    results[j] = kir_tensor_new(&g->nodes[outputs[j]]->type);
    if (!results[j]) return say(R->err, R->err_n, "out of memory"), KILN_ERR_NOMEM;
    size_t nb = (size_t)kir_type_nbytes(&results[j]->type);
    int r = nb ? R->c->f.dtoh(results[j]->data, R->bufs[n_in + j], nb) : 0;
    if (r) return drv_fail(R, "cuMemcpyDtoH", r, NULL);
  }
  return KILN_OK;
}

/* Zeroes the error word before the run (when the module has one). */
static kiln_status error_word(run *R, cu_ptr *word, bool zero) {
  size_t bytes = 0;
  int rc = R->c->f.global(word, &bytes, R->mod, KCG_CUDA_ERROR_WORD);
  if (rc == CU_ERROR_NOT_FOUND) { /* a module without the word */
    *word = 0;
    return KILN_OK;
  }
  if (rc != 0) return drv_fail(R, "cuModuleGetGlobal", rc, KCG_CUDA_ERROR_WORD);
  int r = zero ? R->c->f.memset8(*word, 0, bytes) : 0;
  return r ? drv_fail(R, "cuMemsetD8", r, "the error word") : KILN_OK;
}

kiln_status kt_cuda_run(kt_cuda *c, kir_graph *g, const kps_memplan *plan,
                        const kcg_cuda_program *prog, const kcg_nvrtc_image *img,
                        const kir_feed *feeds, int32_t n_feeds, const int32_t *outputs,
                        int32_t n_outputs, kir_tensor **results, char *err, size_t err_n) {
  run R = {c, NULL, 0, 0, 0, NULL, 0, err, err_n};
  for (int32_t j = 0; j < n_outputs; j++) results[j] = NULL;
  cu_ptr word = 0;
  int r = c->f.load(&R.mod, img->data);
  kiln_status s = r ? drv_fail(&R, "cuModuleLoadData", r, img->arch) : KILN_OK;
  if (s == KILN_OK) s = alloc_filled(&R, &R.arena, (size_t)cuda_arena_bytes(plan), NULL, 0xFF);
  if (s == KILN_OK) s = upload_weights(&R, g, plan);
  if (s == KILN_OK) s = upload_io(&R, g, feeds, n_feeds, outputs, n_outputs);
  if (s == KILN_OK) s = error_word(&R, &word, true);
  if (s == KILN_OK) s = launch_all(&R, prog);
  if (s == KILN_OK && word) {
    unsigned v = 0;
    r = c->f.dtoh(&v, word, sizeof v);
    if (r) s = drv_fail(&R, "cuMemcpyDtoH", r, "the error word");
    else if (v) s = (say(err, err_n, "step %u set the error word", v - 1), KILN_ERR_EXEC);
  }
  if (s == KILN_OK) s = download(&R, g, outputs, n_outputs, results);
  for (int32_t i = 0; R.bufs && i < R.n_io; i++)
    if (R.bufs[i]) c->f.free_(R.bufs[i]);
  free(R.bufs);
  if (R.io) c->f.free_(R.io);
  if (R.weights) c->f.free_(R.weights);
  if (R.arena) c->f.free_(R.arena);
  if (R.mod) c->f.unload(R.mod);
  if (s != KILN_OK)
    for (int32_t j = 0; j < n_outputs; j++) {
      kir_tensor_free(results[j]);
      results[j] = NULL;
    }
  return s;
}
