/* test_cuda_exec.c — the executor of CUDA artifacts (runtime/kiln_rt_cuda_exec.c) without
 * a GPU: KILN_CUDA_DRIVER, KILN_CUBLASLT and KILN_CUDNN point at tests/runtime's
 * stand-ins (device memory is host memory; kernels only log "launch NAME"; the fake
 * cuBLASLt and cuDNN really compute; conv steps in 1-3 spatial dims against a double
 * reference, and bad conv records). Artifacts are made by hand (a Kiln__Rt__Plan packed with protobuf-c,
 * kart_write; images are arbitrary bytes with their SHA-256): GEMM plans against a double
 * reference with host and device buffers, transposes, batches and broadcasts; copies and
 * staging in every direction with CPU steps from a small kiln_step compiled by the
 * system cc; CUDA graphs; every error path, each handle closable after; the Nth
 * allocation failing. Cases whose once-per-process state matters run in a child. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_artifact.pb-c.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_rt_testing.h"
#include "runtime/kiln_runtime.h"
#include "tests/kt_child.h"

static char g_dir[256];
/* KILN_TEST_CUDA_REAL=1: the machine's driver and cuBLASLt (a GPU), the cases that need
 * no fake; KILN_TEST_CUDA_CUBIN names a real sm_90 cubin with kiln_k1/kiln_k2/kiln_error
 * for the mixed plan (see the comment at write_mixed). */
static int g_real;

static const char *path_of(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", g_dir, name);
  return p;
}

/* ---------------------------------------------------------------- plan building -- */
/* Every message and array comes from one pool, freed after each artifact is written. */
static void *g_pool[8192];
static int g_npool;

static void *P(size_t n) {
  assert_true(g_npool < 8192);
  void *p = calloc(1, n ? n : 1);
  assert_non_null(p);
  return g_pool[g_npool++] = p;
}

static void pool_free(void) {
  while (g_npool > 0) free(g_pool[--g_npool]);
}

static char *S(const char *s) {
  char *p = P(strlen(s) + 1);
  memcpy(p, s, strlen(s));
  return p;
}

#define MAXN 32
#define PUSH(arr, n, x)                                   \
  do {                                                    \
    if (!(arr)) (arr) = P(MAXN * sizeof *(arr));          \
    assert_true((n) < MAXN);                              \
    (arr)[(n)++] = (x);                                   \
  } while (0)

static Kiln__Rt__TensorSpec *spec(const char *name, int dtype, int rank, const int64_t *dims) {
  Kiln__Rt__TensorSpec *s = P(sizeof *s);
  kiln__rt__tensor_spec__init(s);
  s->name = S(name);
  s->dtype = dtype;
  s->n_dims = (size_t)rank;
  s->dims = P(sizeof(int64_t) * (size_t)(rank + 1));
  memcpy(s->dims, dims, sizeof(int64_t) * (size_t)rank);
  return s;
}

enum { AR = KILN__RT__WHERE__WHERE_ARENA, WT = KILN__RT__WHERE__WHERE_WEIGHTS, IO = KILN__RT__WHERE__WHERE_IO };

static Kiln__Rt__Operand *opnd(int where, int index, uint64_t off, uint64_t bytes, const char *dev) {
  Kiln__Rt__Operand *o = P(sizeof *o);
  kiln__rt__operand__init(o);
  o->where = (Kiln__Rt__Where)where;
  o->index = where == IO ? index : -1;
  o->offset = off;
  o->bytes = bytes;
  o->device = S(dev);
  return o;
}

static Kiln__Rt__Plan *plan_new(const char *entry) {
  Kiln__Rt__Plan *p = P(sizeof *p);
  kiln__rt__plan__init(p);
  p->abi = KART_ABI;
  p->target = S("cuda");
  p->entry = S(entry);
  p->cuda_device = S("cuda:0");
  p->cuda_error_word = 1; /* the fake kernels may set kiln_error (FAKE_CUDA_SET_ERROR) */
  p->producer = S("test_cuda_exec");
  p->pipeline = S("");
  return p;
}

static void add_input(Kiln__Rt__Plan *p, Kiln__Rt__TensorSpec *s, const char *device) {
  PUSH(p->inputs, p->n_inputs, s);
  PUSH(p->input_devices, p->n_input_devices, S(device));
}

static void add_output(Kiln__Rt__Plan *p, Kiln__Rt__TensorSpec *s, Kiln__Rt__Operand *value) {
  PUSH(p->outputs, p->n_outputs, s);
  PUSH(p->output_values, p->n_output_values, value);
}

static void add_arena(Kiln__Rt__Plan *p, const char *device, uint64_t bytes) {
  Kiln__Rt__DeviceArena *a = P(sizeof *a);
  kiln__rt__device_arena__init(a);
  a->device = S(device);
  a->bytes = bytes;
  PUSH(p->arenas, p->n_arenas, a);
  if (strcmp(device, "cpu:0") == 0) p->arena_bytes = bytes;
}

static void add_step_record(Kiln__Rt__Plan *p, const char *kernel, const char *op, const char *device) {
  Kiln__Rt__Step *s = P(sizeof *s);
  kiln__rt__step__init(s);
  s->kernel = S(kernel);
  s->op = S(op);
  s->output = -1;
  s->device = S(device);
  s->placement_reason = S("test");
  PUSH(p->steps, p->n_steps, s);
}

static void add_unit(Kiln__Rt__Plan *p, int kind, int index, Kiln__Rt__Operand *src,
                     Kiln__Rt__Operand *dst, const char *node) {
  Kiln__Rt__Unit *u = P(sizeof *u);
  kiln__rt__unit__init(u);
  u->kind = (Kiln__Rt__Unit__Kind)kind;
  u->index = index;
  u->src = src;
  u->dst = dst;
  u->node = S(node);
  PUSH(p->schedule, p->n_schedule, u);
}

enum { U_CPU = 1, U_CUDA = 2, U_COPY = 3 };

/* A kernel step, and its unit. */
static void add_kernel(Kiln__Rt__Plan *p, const char *kernel, const char *node) {
  Kiln__Rt__CudaStep *s = P(sizeof *s);
  kiln__rt__cuda_step__init(s);
  s->kind = 1;
  s->kernel = S(kernel);
  s->grid = 2;
  s->block = 128;
  s->node = S(node);
  add_unit(p, U_CUDA, (int)p->n_cuda_steps, NULL, NULL, node);
  PUSH(p->cuda_steps, p->n_cuda_steps, s);
  add_step_record(p, kernel, "add", "cuda:0");
}

static Kiln__Rt__CudaGemm *gemm_new(int dtype, int64_t m, int64_t n, int64_t k, int64_t batch) {
  Kiln__Rt__CudaGemm *g = P(sizeof *g);
  kiln__rt__cuda_gemm__init(g);
  g->dtype = dtype;
  g->m = m, g->n = n, g->k = k, g->batch = batch;
  return g;
}

static void add_gemm(Kiln__Rt__Plan *p, Kiln__Rt__CudaGemm *g, const char *kernel, const char *node) {
  Kiln__Rt__CudaStep *s = P(sizeof *s);
  kiln__rt__cuda_step__init(s);
  s->kind = 2;
  s->kernel = S(kernel);
  s->grid = 1;
  s->block = 32;
  s->gemm = g;
  s->node = S(node);
  add_unit(p, U_CUDA, (int)p->n_cuda_steps, NULL, NULL, node);
  PUSH(p->cuda_steps, p->n_cuda_steps, s);
  add_step_record(p, kernel, "matmul", "cuda:0");
}

/* An image: its bytes appended to the code/cuda section, its record in the plan. */
typedef struct images {
  uint8_t bytes[1 << 16];
  size_t n;
} images;

static void add_image(Kiln__Rt__Plan *p, images *im, const char *arch, int ptx) {
  char text[128];
  int len = snprintf(text, sizeof text, "%s-image-for-%s", ptx ? "ptx" : "cubin", arch);
  size_t size = (size_t)len + (ptx ? 1 : 0); /* PTX ends in its NUL */
  const char *real = getenv("KILN_TEST_CUDA_CUBIN");
  if (real && *real && strcmp(arch, "sm_90") == 0) {
    FILE *f = fopen(real, "rb");
    assert_non_null(f);
    size = fread(im->bytes + im->n, 1, sizeof im->bytes - im->n - 64, f);
    fclose(f);
  } else {
    memcpy(im->bytes + im->n, text, size);
  }
  Kiln__Rt__CudaImage *r = P(sizeof *r);
  kiln__rt__cuda_image__init(r);
  r->arch = S(arch);
  r->ptx = ptx;
  r->offset = im->n;
  r->size = size;
  r->sha256.len = 32;
  r->sha256.data = P(32);
  kart_sha256(im->bytes + im->n, size, r->sha256.data);
  im->n += (size + 63) / 64 * 64;
  PUSH(p->cuda_images, p->n_cuda_images, r);
}

/* Packs the plan with the weights, the CPU code (a .so path or NULL) and the images. */
static void write_art(const char *path, Kiln__Rt__Plan *p, const void *w, size_t wn, const char *so,
                      const images *im) {
  p->weights_bytes = wn;
  size_t pn = kiln__rt__plan__get_packed_size(p);
  uint8_t *pb = malloc(pn + 1), *code = NULL;
  assert_non_null(pb);
  kiln__rt__plan__pack(p, pb);
  kart_section s[4] = {{.kind = KART_SEC_PLAN, .data = pb, .size = pn},
                       {.kind = KART_SEC_WEIGHTS, .data = w, .size = wn}};
  int n = 2;
  if (so) {
    FILE *f = fopen(so, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    code = malloc((size_t)len);
    assert_non_null(code);
    assert_int_equal(fread(code, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    s[n++] = (kart_section){.kind = KART_SEC_CODE_CPU, .data = code, .size = (uint64_t)len};
  }
  if (im && im->n) s[n++] = (kart_section){.kind = KART_SEC_CODE_CUDA, .data = im->bytes, .size = im->n};
  char err[512];
  if (kart_write(path, s, n, err, sizeof err) != 0) fail_msg("kart_write: %s", err);
  free(pb);
  free(code);
  pool_free();
}

/* ---------------------------------------------------------------- the fakes ----- */

/* A counter a stand-in library exports (long NAME(void)), the library named by the
 * environment variable var; 0 when it is not loaded. */
static long fake_lib_count(const char *var, const char *sym) {
  void *h = getenv(var) ? dlopen(getenv(var), RTLD_LAZY | RTLD_NOLOAD) : NULL;
  if (!h) return 0;
  void *fn = dlsym(h, sym);
  long n = 0;
  if (fn) {
    long (*get)(void);
    memcpy(&get, &fn, sizeof fn);
    n = get();
  }
  dlclose(h);
  return n;
}

static long fake_count(const char *sym) { return fake_lib_count("KILN_CUDA_DRIVER", sym); }

/* Nothing of the runtime's memory or the fake device's is left. */
static void assert_clean(long rt_base) {
  assert_int_equal(kiln_rt_testing_live(), rt_base);
  if (g_real) return;
  assert_int_equal(fake_count("fake_cuda_live_allocs"), 0);
  assert_int_equal(fake_count("fake_cuda_live_objects"), 0);
}

static void log_reset(void) {
  FILE *f = fopen(getenv("FAKE_CUDA_LOG"), "w");
  assert_non_null(f);
  fclose(f);
}

static int log_count(const char *line) {
  FILE *f = fopen(getenv("FAKE_CUDA_LOG"), "r");
  char buf[256];
  int n = 0;
  if (!f) return 0;
  while (fgets(buf, sizeof buf, f)) {
    buf[strcspn(buf, "\n")] = '\0';
    n += strcmp(buf, line) == 0;
  }
  fclose(f);
  return n;
}

static kiln_rt_model *open_ok(const char *path) {
  kiln_rt_model *m = NULL;
  kiln_rt_status st = kiln_rt_model_open(path, &m);
  if (st != KILN_RT_OK) fail_msg("open %s: %s (%s)", path, kiln_rt_status_name(st), kiln_rt_model_error(m));
  return m;
}

/* Opens and expects status st with a message containing want. */
static void open_fails(const char *path, kiln_rt_status st, const char *want) {
  long base = kiln_rt_testing_live();
  kiln_rt_model *m = NULL;
  kiln_rt_status got = kiln_rt_model_open(path, &m);
  if (got != st || !strstr(kiln_rt_model_error(m), want))
    fail_msg("open %s: %s (%s), want %s with \"%s\"", path, kiln_rt_status_name(got),
             kiln_rt_model_error(m), kiln_rt_status_name(st), want);
  assert_int_equal(kiln_rt_model_num_inputs(m), 0);
  kiln_rt_model_close(m);
  assert_clean(base);
}

/* ---------------------------------------------------------------- GEMM plans ----- */

static uint64_t lcg = 12345;
static double rnd(void) {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)((lcg >> 11) % 2001) / 1000.0 - 1.0;
}

enum { MLP_M = 4, MLP_K = 8, MLP_H = 16, MLP_N = 5 };
static float g_w1[MLP_K * MLP_H], g_b1[MLP_H], g_w2[MLP_H * MLP_N];

/* x[4,8] (cuda io 0) -> h = relu(x W1 + b1) (cuda arena) -> y = h W2 (io 1): two GEMMs. */
static void write_mlp(const char *path) {
  for (int i = 0; i < MLP_K * MLP_H; i++) g_w1[i] = (float)rnd();
  for (int i = 0; i < MLP_H; i++) g_b1[i] = (float)rnd();
  for (int i = 0; i < MLP_H * MLP_N; i++) g_w2[i] = (float)rnd();
  unsigned char w[896];
  memcpy(w, g_w1, 512);
  memcpy(w + 512, g_b1, 64);
  memcpy(w + 576, g_w2, 320);
  Kiln__Rt__Plan *p = plan_new("");
  int64_t dx[2] = {MLP_M, MLP_K}, dy[2] = {MLP_M, MLP_N};
  add_input(p, spec("x", KILN_RT_F32, 2, dx), "cuda:0");
  add_output(p, spec("y", KILN_RT_F32, 2, dy), opnd(IO, 1, 0, 80, "cuda:0"));
  add_arena(p, "cuda:0", 256);
  Kiln__Rt__CudaGemm *g = gemm_new(KILN_RT_F32, MLP_M, MLP_H, MLP_K, 1);
  g->a = opnd(IO, 0, 0, 128, "cuda:0");
  g->b = opnd(WT, 0, 0, 512, "cuda:0");
  g->d = opnd(AR, 0, 0, 256, "cuda:0");
  g->has_bias = 1;
  g->bias = opnd(WT, 0, 512, 64, "cuda:0");
  g->relu = 1;
  add_gemm(p, g, "", "h");
  g = gemm_new(KILN_RT_F32, MLP_M, MLP_N, MLP_H, 1);
  g->a = opnd(AR, 0, 0, 256, "cuda:0");
  g->b = opnd(WT, 0, 576, 320, "cuda:0");
  g->d = opnd(IO, 1, 0, 80, "cuda:0");
  add_gemm(p, g, "", "y");
  write_art(path, p, w, sizeof w, NULL, NULL);
}

static void mlp_ref(const float *x, double *y) {
  double h[MLP_M * MLP_H];
  for (int i = 0; i < MLP_M; i++)
    for (int j = 0; j < MLP_H; j++) {
      double s = g_b1[j];
      for (int k = 0; k < MLP_K; k++) s += (double)x[i * MLP_K + k] * g_w1[k * MLP_H + j];
      h[i * MLP_H + j] = s > 0 ? s : 0;
    }
  for (int i = 0; i < MLP_M; i++)
    for (int j = 0; j < MLP_N; j++) {
      double s = 0;
      for (int k = 0; k < MLP_H; k++) s += h[i * MLP_H + k] * g_w2[k * MLP_N + j];
      y[i * MLP_N + j] = s;
    }
}

static void assert_close(const double *ref, const void *got, int f64, int n, const char *what) {
  for (int i = 0; i < n; i++) {
    double g = f64 ? ((const double *)got)[i] : ((const float *)got)[i];
    if (fabs(g - ref[i]) > 1e-5 * (1 + fabs(ref[i])))
      fail_msg("%s: element %d is %.9g, want %.9g", what, i, g, ref[i]);
  }
}

static void test_gemm_mlp(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  write_mlp(path_of("mlp.kart"));
  kiln_rt_model *m = open_ok(path_of("mlp.kart"));
  assert_string_equal(kiln_rt_model_target(m), "cuda");
  printf("device: %s\n", kiln_rt_model_device(m));
  if (!g_real) assert_string_equal(kiln_rt_model_device(m), "cuda:0 (Fake GPU 0, sm_90, no kernels)");
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  float x[MLP_M * MLP_K], y[MLP_M * MLP_N];
  double ref[MLP_M * MLP_N];
  /* host buffers: run 1 eager, run 2 captured, runs 3.. replayed; new numbers each time */
  for (int run = 0; run < 4; run++) {
    for (int i = 0; i < MLP_M * MLP_K; i++) x[i] = (float)rnd();
    kiln_rt_buffer in = {x, sizeof x}, out = {y, sizeof y};
    memset(y, 0, sizeof y);
    if (kiln_rt_run(c, &in, 1, &out, 1) != KILN_RT_OK) fail_msg("run %d: %s", run, kiln_rt_context_error(c));
    mlp_ref(x, ref);
    assert_close(ref, y, 0, MLP_M * MLP_N, "mlp host");
  }
  /* device buffers (and mixed), through kiln_rt_device_alloc / copy */
  void *dx = NULL, *dy = NULL;
  assert_int_equal(kiln_rt_device_alloc(m, sizeof x, &dx), KILN_RT_OK);
  assert_int_equal(kiln_rt_device_alloc(m, sizeof y, &dy), KILN_RT_OK);
  for (int mode = 0; mode < 4; mode++) {
    for (int i = 0; i < MLP_M * MLP_K; i++) x[i] = (float)rnd();
    unsigned char im = mode & 1, om = (mode >> 1) & 1;
    assert_int_equal(kiln_rt_device_copy(m, dx, KILN_RT_MEMORY_DEVICE, x, KILN_RT_MEMORY_HOST, sizeof x), KILN_RT_OK);
    kiln_rt_buffer in = {im ? dx : x, sizeof x}, out = {om ? dy : y, sizeof y};
    kiln_rt_run_options opt = {&im, &om, 0};
    if (kiln_rt_run_ex(c, &in, 1, &out, 1, &opt) != KILN_RT_OK) fail_msg("mode %d: %s", mode, kiln_rt_context_error(c));
    if (om) assert_int_equal(kiln_rt_device_copy(m, y, KILN_RT_MEMORY_HOST, dy, KILN_RT_MEMORY_DEVICE, sizeof y), KILN_RT_OK);
    mlp_ref(x, ref);
    assert_close(ref, y, 0, MLP_M * MLP_N, "mlp device");
  }
  /* argument errors as the CPU path gives them */
  kiln_rt_buffer bad = {x, 4}, out = {y, sizeof y};
  assert_int_equal(kiln_rt_run(c, &bad, 1, &out, 1), KILN_RT_ERR_FEED);
  assert_non_null(strstr(kiln_rt_context_error(c), "input 'x': expected 128 bytes"));
  unsigned char wrong = 7;
  kiln_rt_buffer in = {x, sizeof x};
  kiln_rt_run_options opt = {&wrong, NULL, 0};
  assert_int_equal(kiln_rt_run_ex(c, &in, 1, &out, 1, &opt), KILN_RT_ERR_ARGUMENT);
  assert_int_equal(kiln_rt_device_free(m, dx), KILN_RT_OK);
  assert_int_equal(kiln_rt_device_free(m, dy), KILN_RT_OK);
  assert_int_equal(kiln_rt_device_free(m, NULL), KILN_RT_OK);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  assert_clean(base);
}

/* One batched GEMM D[b] = op(A[b]) op(B[b]) + bias with one side broadcast (stride 0). */
typedef struct gcase {
  int dtype, ta, tb, bcast_a;
} gcase;

static void gemm_case(const gcase *t) {
  enum { M = 3, N = 4, K = 5, B = 3 };
  int f64 = t->dtype == KILN_RT_F64;
  size_t es = f64 ? 8 : 4;
  double a[B * M * K], b[B * K * N], bias[N], ref[B * M * N];
  for (int i = 0; i < B * M * K; i++) a[i] = rnd();
  for (int i = 0; i < B * K * N; i++) b[i] = rnd();
  for (int i = 0; i < N; i++) bias[i] = rnd();
  /* the broadcast operand is in the weights (one matrix), the other is input 0 */
  int na = t->bcast_a ? M * K : B * M * K, nb = t->bcast_a ? B * K * N : K * N;
  unsigned char w[1024], in_bytes[1024], out_bytes[1024];
  const double *wsrc = t->bcast_a ? a : b, *isrc = t->bcast_a ? b : a;
  int nw = t->bcast_a ? na : nb, ni = t->bcast_a ? nb : na;
  for (int i = 0; i < nw; i++) f64 ? (void)(((double *)w)[i] = wsrc[i]) : (void)(((float *)w)[i] = (float)wsrc[i]);
  size_t bias_off = (size_t)nw * es;
  for (int i = 0; i < N; i++) {
    if (f64) ((double *)(w + bias_off))[i] = bias[i];
    else ((float *)(w + bias_off))[i] = (float)bias[i];
  }
  for (int i = 0; i < ni; i++) f64 ? (void)(((double *)in_bytes)[i] = isrc[i]) : (void)(((float *)in_bytes)[i] = (float)isrc[i]);
  /* reference: element (r,c) of op(A) is A[r][c] or A[c][r] as stored */
  for (int bt = 0; bt < B; bt++)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        const double *A = a + (t->bcast_a ? 0 : bt * M * K), *Bm = b + (t->bcast_a ? bt * K * N : 0);
        double s = bias[j];
        for (int k = 0; k < K; k++) {
          double av = t->ta ? A[k * M + i] : A[i * K + k];
          double bv = t->tb ? Bm[j * K + k] : Bm[k * N + j];
          if (!f64) av = (float)av, bv = (float)bv;
          s += av * bv;
        }
        ref[bt * M * N + i * N + j] = s;
      }
  Kiln__Rt__Plan *p = plan_new("");
  int64_t din[3] = {B, t->bcast_a ? (t->tb ? N : K) : (t->ta ? K : M), t->bcast_a ? (t->tb ? K : N) : (t->ta ? M : K)};
  int64_t dout[3] = {B, M, N};
  add_input(p, spec("in", t->dtype, 3, din), "cuda:0");
  add_output(p, spec("d", t->dtype, 3, dout), opnd(IO, 1, 0, (uint64_t)(B * M * N) * es, "cuda:0"));
  Kiln__Rt__CudaGemm *g = gemm_new(t->dtype, M, N, K, B);
  g->trans_a = t->ta, g->trans_b = t->tb;
  Kiln__Rt__Operand *wop = opnd(WT, 0, 0, (uint64_t)nw * es, "cuda:0");
  Kiln__Rt__Operand *iop = opnd(IO, 0, 0, (uint64_t)ni * es, "cuda:0");
  g->a = t->bcast_a ? wop : iop;
  g->b = t->bcast_a ? iop : wop;
  g->stride_a = t->bcast_a ? 0 : M * K;
  g->stride_b = t->bcast_a ? K * N : 0;
  g->stride_d = M * N;
  g->d = opnd(IO, 1, 0, (uint64_t)(B * M * N) * es, "cuda:0");
  g->has_bias = 1;
  g->bias = opnd(WT, 0, bias_off, (uint64_t)N * es, "cuda:0");
  add_gemm(p, g, "", "d");
  write_art(path_of("gemm.kart"), p, w, bias_off + (size_t)N * es, NULL, NULL);
  kiln_rt_model *m = open_ok(path_of("gemm.kart"));
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  for (int run = 0; run < 3; run++) {
    kiln_rt_buffer in = {in_bytes, (size_t)ni * es}, out = {out_bytes, (size_t)(B * M * N) * es};
    memset(out_bytes, 0, sizeof out_bytes);
    if (kiln_rt_run(c, &in, 1, &out, 1) != KILN_RT_OK) fail_msg("%s", kiln_rt_context_error(c));
    char what[96];
    snprintf(what, sizeof what, "%s ta=%d tb=%d bcast_%c run %d", f64 ? "f64" : "f32", t->ta, t->tb,
             t->bcast_a ? 'a' : 'b', run);
    assert_close(ref, out_bytes, f64, B * M * N, what);
  }
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
}

static void test_gemm_trans_batch(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  for (int dt = 0; dt < 2; dt++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int ba = 0; ba < 2; ba++) {
          gcase t = {dt ? KILN_RT_F64 : KILN_RT_F32, ta, tb, ba};
          gemm_case(&t);
        }
  assert_clean(base);
}

/* ---------------------------------------------------------------- mixed plans ---- */

static const char k_step_src[] =
    "const unsigned kiln_abi_version = 1;\n"
    "int kiln_step(int i, const void *const *in, void *const *out, unsigned char *arena,\n"
    "              const unsigned char *weights) {\n"
    "  (void)out; (void)weights;\n"
    "  float *a = (float *)arena;\n"
    "  switch (i) {\n"
    "  case 0: for (int k = 0; k < 4; k++) a[k] = 2 * ((const float *)in[0])[k]; return 0;\n"
    "  case 1: for (int k = 0; k < 4; k++) a[8 + k] = a[4 + k] + 1; return 0;\n"
    "  case 2: if (a[12] == 0) return 3;\n"
    "          for (int k = 0; k < 4; k++) a[16 + k] = 3 * a[12 + k]; return 0;\n"
    "  }\n"
    "  return 1 + i;\n"
    "}\n";

static void compile_step_so(void) {
  static int done;
  if (done) return;
  FILE *f = fopen(path_of("step.c"), "w");
  assert_non_null(f);
  fputs(k_step_src, f);
  fclose(f);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -o '%s' '%s'", path_of("step.so"), path_of("step.c"));
  if (system(cmd) != 0) fail_msg("could not compile the kiln_step code with the system cc");
  done = 1;
}

static const float k_zdef[4] = {5, 6, 7, 8};

/* x (cpu) -> t = 2x (cpu arena 0) -> HtoD (cuda arena 0) -> kiln_k1 -> DtoH (cpu 16)
 * -> y = t + 1 (cpu 32: output 0); output 1 = cuda arena 0; output 2 = io 4 written by a
 * DtoD copy; z (cuda, default 5 6 7 8) -> DtoH (cpu 48) -> w = 3z (cpu 64: output 3);
 * then kiln_k2. mutate changes one field for the error cases. */
typedef void (*mutator)(Kiln__Rt__Plan *p);

static void write_mixed(const char *path, mutator mutate, int image_set) {
  compile_step_so();
  Kiln__Rt__Plan *p = plan_new("kiln_step");
  int64_t d4[1] = {4};
  add_input(p, spec("x", KILN_RT_F32, 1, d4), "cpu:0");
  add_input(p, spec("z", KILN_RT_F32, 1, d4), "cuda:0");
  p->input_defaults = P(2 * sizeof(int64_t));
  p->n_input_defaults = 2;
  p->input_defaults[0] = -1;
  p->input_defaults[1] = 0;
  add_output(p, spec("y", KILN_RT_F32, 1, d4), opnd(AR, 0, 32, 16, "cpu:0"));
  add_output(p, spec("t_dev", KILN_RT_F32, 1, d4), opnd(AR, 0, 0, 16, "cuda:0"));
  add_output(p, spec("t_io", KILN_RT_F32, 1, d4), opnd(IO, 4, 0, 16, "cuda:0"));
  add_output(p, spec("w", KILN_RT_F32, 1, d4), opnd(AR, 0, 64, 16, "cpu:0"));
  add_arena(p, "cpu:0", 80);
  add_arena(p, "cuda:0", 16);
  add_step_record(p, "k0", "mul", "cpu:0");
  add_step_record(p, "k1", "add", "cpu:0");
  add_step_record(p, "k2", "div", "cpu:0");
  add_unit(p, U_CPU, 0, NULL, NULL, "t");
  add_unit(p, U_COPY, 0, opnd(AR, 0, 0, 16, "cpu:0"), opnd(AR, 0, 0, 16, "cuda:0"), "t_to_cuda");
  add_kernel(p, "kiln_k1", "k1node");
  add_unit(p, U_COPY, 0, opnd(AR, 0, 0, 16, "cuda:0"), opnd(AR, 0, 16, 16, "cpu:0"), "t_back");
  add_unit(p, U_CPU, 1, NULL, NULL, "y");
  add_unit(p, U_COPY, 0, opnd(AR, 0, 0, 16, "cuda:0"), opnd(IO, 4, 0, 16, "cuda:0"), "t_io");
  add_unit(p, U_COPY, 0, opnd(IO, 1, 0, 16, "cuda:0"), opnd(AR, 0, 48, 16, "cpu:0"), "z_to_cpu");
  add_unit(p, U_CPU, 2, NULL, NULL, "w");
  add_kernel(p, "kiln_k2", "k2node");
  images im = {{0}, 0};
  if (image_set == 0) { /* sm_80 and sm_90 cubins, PTX for compute_70 and compute_80 */
    add_image(p, &im, "sm_80", 0);
    add_image(p, &im, "sm_90", 0);
    add_image(p, &im, "compute_70", 1);
    add_image(p, &im, "compute_80", 1);
  } else { /* cubins only */
    add_image(p, &im, "sm_80", 0);
    add_image(p, &im, "sm_90", 0);
  }
  if (mutate) mutate(p);
  write_art(path, p, k_zdef, sizeof k_zdef, path_of("step.so"), &im);
}

/* One run of the mixed plan with the given sides; checks every output. */
static void mixed_run(kiln_rt_model *m, kiln_rt_context *c, int in_dev, int out_dev, int z_default) {
  float x[4] = {1, -2, 3.5f, 4}, z[4] = {0.5f, 2, -1, 9};
  float host_out[4][4];
  void *din[2] = {NULL, NULL}, *dout[4] = {NULL, NULL, NULL, NULL};
  unsigned char im[2], om[4];
  kiln_rt_buffer in[2], out[4];
  const float *zsrc = z_default ? k_zdef : z;
  for (int i = 0; i < 2; i++) {
    im[i] = (unsigned char)((in_dev >> i) & 1);
    const float *src = i ? z : x;
    in[i] = (kiln_rt_buffer){(void *)src, 16};
    if (im[i]) {
      assert_int_equal(kiln_rt_device_alloc(m, 16, &din[i]), KILN_RT_OK);
      assert_int_equal(kiln_rt_device_copy(m, din[i], 1, src, 0, 16), KILN_RT_OK);
      in[i].data = din[i];
    }
  }
  if (z_default) in[1].data = NULL;
  for (int j = 0; j < 4; j++) {
    om[j] = (unsigned char)((out_dev >> j) & 1);
    memset(host_out[j], 0, 16);
    out[j] = (kiln_rt_buffer){host_out[j], 16};
    if (om[j]) {
      assert_int_equal(kiln_rt_device_alloc(m, 16, &dout[j]), KILN_RT_OK);
      out[j].data = dout[j];
    }
  }
  kiln_rt_run_options opt = {im, om, 0};
  if (kiln_rt_run_ex(c, in, 2, out, 4, &opt) != KILN_RT_OK)
    fail_msg("in %d out %d: %s", in_dev, out_dev, kiln_rt_context_error(c));
  for (int j = 0; j < 4; j++)
    if (om[j]) assert_int_equal(kiln_rt_device_copy(m, host_out[j], 0, dout[j], 1, 16), KILN_RT_OK);
  for (int k = 0; k < 4; k++) {
    assert_true(host_out[0][k] == 2 * x[k] + 1);
    assert_true(host_out[1][k] == 2 * x[k]);
    assert_true(host_out[2][k] == 2 * x[k]);
    assert_true(host_out[3][k] == 3 * zsrc[k]);
  }
  for (int i = 0; i < 2; i++) assert_int_equal(kiln_rt_device_free(m, din[i]), KILN_RT_OK);
  for (int j = 0; j < 4; j++) assert_int_equal(kiln_rt_device_free(m, dout[j]), KILN_RT_OK);
}

static void test_copies_staging(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  write_mixed(path_of("mixed.kart"), NULL, 0);
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  if (!g_real) assert_string_equal(kiln_rt_model_device(m), "cuda:0 (Fake GPU 0, sm_90, cubin)");
  assert_int_equal(kiln_rt_model_num_inputs(m), 2);
  assert_int_equal(kiln_rt_model_input_has_default(m, 1), 1);
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  for (int in_dev = 0; in_dev < 4; in_dev++)
    for (int out_dev = 0; out_dev < 16; out_dev += 5) mixed_run(m, c, in_dev, out_dev, 0);
  mixed_run(m, c, 0, 15, 1); /* z's default, on the device */
  mixed_run(m, c, 1, 0, 1);
  /* kiln_rt_run: host buffers */
  float x[4] = {1, 2, 3, 4}, y[4][4];
  kiln_rt_buffer in[2] = {{x, 16}, {NULL, 0}}, out[4] = {{y[0], 16}, {y[1], 16}, {y[2], 16}, {y[3], 16}};
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_OK);
  assert_true(y[3][0] == 15 && y[0][3] == 9);
  /* a CPU step failing: w's step sees z[0] == 0 */
  float zz[4] = {0, 1, 1, 1};
  in[1] = (kiln_rt_buffer){zz, 16};
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_ERR_EXEC);
  assert_non_null(strstr(kiln_rt_context_error(c), "cpu step 2 (node 'w'): integer division by zero"));
  in[1] = (kiln_rt_buffer){NULL, 0};
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_OK); /* and the context goes on */
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  assert_clean(base);
}

static void test_graphs(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  write_mixed(path_of("mixed.kart"), NULL, 0);
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  kiln_rt_context *c = NULL;
  log_reset();
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  mixed_run(m, c, 0, 0, 0); /* eager */
  assert_int_equal(log_count("launch kiln_k1"), 1);
  assert_int_equal(log_count("graph launch"), 0);
  mixed_run(m, c, 0, 0, 0); /* each of the two stretches captured and launched */
  assert_int_equal(log_count("graph launch"), 2);
  assert_int_equal(log_count("launch kiln_k1"), 2);
  mixed_run(m, c, 3, 15, 0); /* replayed, with device buffers */
  assert_int_equal(log_count("graph launch"), 4);
  assert_int_equal(log_count("launch kiln_k2"), 3);
  /* the option turns graphs off for one run */
  float x[4] = {1, 2, 3, 4}, y[4][4];
  kiln_rt_buffer in[2] = {{x, 16}, {NULL, 0}}, out[4] = {{y[0], 16}, {y[1], 16}, {y[2], 16}, {y[3], 16}};
  kiln_rt_run_options opt = {NULL, NULL, 1};
  assert_int_equal(kiln_rt_run_ex(c, in, 2, out, 4, &opt), KILN_RT_OK);
  assert_int_equal(log_count("graph launch"), 4);
  assert_int_equal(log_count("launch kiln_k2"), 4);
  kiln_rt_context_destroy(c);
  /* KILN_CUDA_GRAPHS=0: never */
  setenv("KILN_CUDA_GRAPHS", "0", 1);
  log_reset();
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  for (int i = 0; i < 3; i++) mixed_run(m, c, 0, 0, 0);
  assert_int_equal(log_count("graph launch"), 0);
  assert_int_equal(log_count("launch kiln_k1"), 3);
  kiln_rt_context_destroy(c);
  unsetenv("KILN_CUDA_GRAPHS");
  /* a capture that fails: eager for good, no error */
  setenv("FAKE_CUDA_NO_CAPTURE", "1", 1);
  log_reset();
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  for (int i = 0; i < 3; i++) mixed_run(m, c, 0, 0, 0);
  assert_int_equal(log_count("graph launch"), 0);
  assert_int_equal(log_count("launch kiln_k2"), 3);
  kiln_rt_context_destroy(c);
  unsetenv("FAKE_CUDA_NO_CAPTURE");
  kiln_rt_model_close(m);
  assert_clean(base);
}

/* On a GPU: every stretch eager, captured, replayed, and kiln_k2 setting kiln_error. */
static void test_real_graphs_error(void **state) {
  (void)state;
  write_mixed(path_of("mixed.kart"), NULL, 0);
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  for (int i = 0; i < 5; i++) mixed_run(m, c, i & 3, (i * 5) & 15, 0);
  float x[4] = {1, 2, 3, 4}, z[4] = {-12345.0f, 1, 1, 1}, y[4][4];
  kiln_rt_buffer in[2] = {{x, 16}, {z, 16}}, out[4] = {{y[0], 16}, {y[1], 16}, {y[2], 16}, {y[3], 16}};
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_ERR_EXEC);
  assert_non_null(strstr(kiln_rt_context_error(c), "cuda step 1 (node 'k2node'): integer division by zero"));
  printf("kiln_error: %s\n", kiln_rt_context_error(c));
  mixed_run(m, c, 0, 0, 0); /* zeroed again */
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
}

/* ---------------------------------------------------------------- image choice --- */

static void test_image_choice(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  write_mixed(path_of("mixed.kart"), NULL, 0);
  write_mixed(path_of("cubins.kart"), NULL, 1);
  log_reset();
  setenv("FAKE_CUDA_CC", "86", 1); /* no sm_86 cubin: the newest PTX not above 8.6 */
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  assert_string_equal(kiln_rt_model_device(m), "cuda:0 (Fake GPU 0, sm_86, ptx)");
  assert_int_equal(log_count("load ptx-image-for-compute_80"), 1);
  kiln_rt_model_close(m);
  setenv("FAKE_CUDA_CC", "80", 1); /* the cubin wins */
  m = open_ok(path_of("mixed.kart"));
  assert_string_equal(kiln_rt_model_device(m), "cuda:0 (Fake GPU 0, sm_80, cubin)");
  kiln_rt_model_close(m);
  setenv("FAKE_CUDA_CC", "75", 1);
  open_fails(path_of("cubins.kart"), KILN_RT_ERR_DEVICE,
             "artifact has code for sm_80, sm_90 and no PTX; cuda:0 is sm_75");
  m = open_ok(path_of("mixed.kart")); /* compute_70 PTX runs on 7.5 */
  assert_string_equal(kiln_rt_model_device(m), "cuda:0 (Fake GPU 0, sm_75, ptx)");
  assert_int_equal(log_count("load ptx-image-for-compute_70"), 1);
  kiln_rt_model_close(m);
  setenv("FAKE_CUDA_CC", "60", 1);
  open_fails(path_of("mixed.kart"), KILN_RT_ERR_DEVICE,
             "artifact has code for sm_80, sm_90 and PTX for compute_70, compute_80; cuda:0 is sm_60");
  unsetenv("FAKE_CUDA_CC");
  /* an altered image: its SHA-256 no longer matches the plan's */
  size_t n = 0;
  FILE *f = fopen(path_of("cubins.kart"), "rb");
  assert_non_null(f);
  uint8_t *b = malloc(1 << 20);
  n = fread(b, 1, 1 << 20, f);
  fclose(f);
  kart_section s[KART_MAX_SECTIONS];
  int ns = 0;
  char err[256];
  assert_int_equal(kart_parse(b, n, s, &ns, err, sizeof err), 0);
  kart_section out[KART_MAX_SECTIONS];
  uint8_t *code = NULL;
  for (int i = 0; i < ns; i++) {
    out[i] = (kart_section){.kind = s[i].kind, .data = s[i].data, .size = s[i].size};
    if (s[i].kind == KART_SEC_CODE_CUDA) {
      code = malloc((size_t)s[i].size);
      memcpy(code, s[i].data, (size_t)s[i].size);
      code[64 + 3] ^= 1; /* the sm_90 image */
      out[i].data = code;
    }
  }
  assert_int_equal(kart_write(path_of("altered.kart"), out, ns, err, sizeof err), 0);
  free(code);
  free(b);
  open_fails(path_of("altered.kart"), KILN_RT_ERR_INTEGRITY, "cuda image sm_90: its SHA-256 differs");
  assert_clean(base);
}

/* ---------------------------------------------------------------- bad plans ------ */

static void mut_operand(Kiln__Rt__Plan *p) { p->schedule[1]->dst->offset = 8; }
static void mut_sched(Kiln__Rt__Plan *p) { p->schedule[2]->index = 7; }
static void mut_cpu_index(Kiln__Rt__Plan *p) { p->schedule[0]->index = 3; }
static void mut_kernel(Kiln__Rt__Plan *p) { p->cuda_steps[0]->kernel = S("kiln k1"); }
static void mut_block(Kiln__Rt__Plan *p) { p->cuda_steps[1]->block = 2048; }
static void mut_device(Kiln__Rt__Plan *p) { p->schedule[1]->dst->device = S("cuda:1"); }
static void mut_io(Kiln__Rt__Plan *p) { p->output_values[2]->index = 9; }
static void mut_image(Kiln__Rt__Plan *p) { p->cuda_images[1]->size = 100000; }
static void mut_arch(Kiln__Rt__Plan *p) { p->cuda_images[0]->arch = S("sm_9x"); }
static void mut_weights_write(Kiln__Rt__Plan *p) { p->schedule[1]->dst->where = (Kiln__Rt__Where)WT; }
static void mut_input_dev(Kiln__Rt__Plan *p) { p->input_devices[0] = S("tpu:0"); }
static void mut_cuda_device(Kiln__Rt__Plan *p) { p->cuda_device = S("cuda:x"); }
static void mut_bytes(Kiln__Rt__Plan *p) { p->schedule[3]->dst->bytes = 12; }
/* t_io's copy (cuda arena -> io 4) made a copy of the cuda arena onto itself */
static void mut_self_copy(Kiln__Rt__Plan *p) { p->schedule[5]->dst = p->schedule[5]->src; }
/* The whole plan on cuda:3. */
static void mut_range(Kiln__Rt__Plan *p) {
  char *d = S("cuda:3");
  p->cuda_device = d;
  for (size_t i = 0; i < p->n_arenas; i++)
    if (strcmp(p->arenas[i]->device, "cuda:0") == 0) p->arenas[i]->device = d;
  for (size_t i = 0; i < p->n_input_devices; i++)
    if (strcmp(p->input_devices[i], "cuda:0") == 0) p->input_devices[i] = d;
  for (size_t i = 0; i < p->n_output_values; i++)
    if (strcmp(p->output_values[i]->device, "cuda:0") == 0) p->output_values[i]->device = d;
  for (size_t i = 0; i < p->n_schedule; i++) {
    Kiln__Rt__Operand *o[2] = {p->schedule[i]->src, p->schedule[i]->dst};
    for (int k = 0; k < 2; k++)
      if (o[k] && strcmp(o[k]->device, "cuda:0") == 0) o[k]->device = d;
  }
}

static void gemm_mut(const char *path, int what) {
  write_mlp(path); /* for the weights */
  unsigned char w[896] = {0};
  Kiln__Rt__Plan *p = plan_new("");
  int64_t dx[2] = {MLP_M, MLP_K}, dy[2] = {MLP_M, MLP_N};
  add_input(p, spec("x", KILN_RT_F32, 2, dx), "cuda:0");
  add_output(p, spec("y", KILN_RT_F32, 2, dy), opnd(IO, 1, 0, 80, "cuda:0"));
  add_arena(p, "cuda:0", 256);
  Kiln__Rt__CudaGemm *g = gemm_new(KILN_RT_F32, MLP_M, MLP_N, MLP_K, 1);
  g->a = opnd(IO, 0, 0, 128, "cuda:0");
  g->b = opnd(WT, 0, 0, 160, "cuda:0");
  g->d = opnd(IO, 1, 0, 80, "cuda:0");
  if (what == 0) g->k = 9;                 /* A no longer covers m x k */
  if (what == 1) g->b->offset = 800;       /* past the weights */
  if (what == 2) g->dtype = KILN_RT_I32;
  if (what == 3) g->batch = 2, g->stride_a = 1;
  if (what == 4) g->b->offset = 2;         /* misaligned */
  if (what == 5) g->d = opnd(WT, 0, 0, 80, "cuda:0");
  if (what == 6) g->a = opnd(AR, 0, 0, 128, "cuda:0"), g->d = opnd(AR, 0, 64, 80, "cuda:0"); /* D over A */
  add_gemm(p, g, "", "y");
  write_art(path, p, w, sizeof w, NULL, NULL);
}

static void test_bad_plans(void **state) {
  (void)state;
  static const struct {
    mutator f;
    kiln_rt_status st;
    const char *want;
  } cases[] = {
      {mut_operand, KILN_RT_ERR_FORMAT, "schedule unit 1 dst: arena offset 8 + 16 bytes is past the cuda:0 arena (16 bytes)"},
      {mut_sched, KILN_RT_ERR_FORMAT, "schedule unit 2: cuda step 7 out of range (2 CUDA steps)"},
      {mut_self_copy, KILN_RT_ERR_FORMAT, "schedule unit 5: the copy's source and destination overlap on cuda:0"},
      {mut_cpu_index, KILN_RT_ERR_FORMAT, "schedule unit 0: cpu step 3 out of range (3 CPU steps)"},
      {mut_kernel, KILN_RT_ERR_FORMAT, "cuda step 0 (node 'k1node'): kernel name 'kiln k1' is not an identifier"},
      {mut_block, KILN_RT_ERR_FORMAT, "cuda step 1: grid 2 x block 2048 is out of range"},
      {mut_device, KILN_RT_ERR_FORMAT, "schedule unit 1 dst: device 'cuda:1' is neither cpu:0 nor cuda:0"},
      {mut_io, KILN_RT_ERR_FORMAT, "output_values[2]: io index 9 out of range (6 inputs + outputs)"},
      {mut_image, KILN_RT_ERR_FORMAT, "cuda image 1 (sm_90): offset 64 + size 100000 is past the code/cuda section"},
      {mut_arch, KILN_RT_ERR_FORMAT, "cuda image 0: arch 'sm_9x' is not sm_NN or compute_NN"},
      {mut_weights_write, KILN_RT_ERR_FORMAT, "schedule unit 1 dst: written, but it is in the weights at 0"},
      {mut_input_dev, KILN_RT_ERR_FORMAT, "input_devices[0]: 'tpu:0' is neither cpu:0 nor cuda:0"},
      {mut_cuda_device, KILN_RT_ERR_FORMAT, "cuda_device 'cuda:x' is not cuda:N"},
      {mut_bytes, KILN_RT_ERR_FORMAT, "schedule unit 3: copies 16 bytes into 12"},
      {mut_range, KILN_RT_ERR_DEVICE, "cuda:3 is out of range: this process sees 2 CUDA devices"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_mixed(path_of("bad.kart"), cases[i].f, 0);
    open_fails(path_of("bad.kart"), cases[i].st, cases[i].want);
  }
  static const char *const gemm_msgs[] = {
      "cuda step 0 gemm.a: 1 batches of 4x9 at stride 0 do not fit in its 128 bytes",
      "cuda step 0 gemm.b: weights offset 800 + 160 bytes is past the cuda:0 weights (896 bytes)",
      "cuda step 0: gemm dtype 3 is not f32 (1) or f64 (2)",
      "cuda step 0: gemm stride_d 0 makes the 2 batches of D (4x5) overlap",
      "cuda step 0 gemm.b: offset 2 is not aligned to 4",
      "cuda step 0 gemm.d: written, but it is in the weights at 0",
      "cuda step 0: gemm.d overlaps gemm.a",
  };
  for (int i = 0; i < 7; i++) {
    gemm_mut(path_of("badg.kart"), i);
    open_fails(path_of("badg.kart"), KILN_RT_ERR_FORMAT, gemm_msgs[i]);
  }
  /* KILN_CUDA_DEVICE overrides the plan's N */
  write_mixed(path_of("mixed.kart"), NULL, 0);
  setenv("KILN_CUDA_DEVICE", "5", 1);
  open_fails(path_of("mixed.kart"), KILN_RT_ERR_DEVICE, "cuda:5 is out of range: this process sees 2 CUDA devices");
  setenv("KILN_CUDA_DEVICE", "1", 1);
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  assert_string_equal(kiln_rt_model_device(m), "cuda:1 (Fake GPU 1, sm_90, cubin)");
  kiln_rt_model_close(m);
  setenv("KILN_CUDA_DEVICE", "one", 1);
  open_fails(path_of("mixed.kart"), KILN_RT_ERR_DEVICE, "KILN_CUDA_DEVICE='one' is not a device number");
  unsetenv("KILN_CUDA_DEVICE");
  /* a kernel the image does not have */
  setenv("FAKE_CUDA_MISSING", "kiln_k2", 1);
  open_fails(path_of("mixed.kart"), KILN_RT_ERR_FORMAT, "cuda step 1: kernel 'kiln_k2' is not in the image");
  setenv("FAKE_CUDA_MISSING", "kiln_error", 1);
  open_fails(path_of("mixed.kart"), KILN_RT_ERR_FORMAT, "the cuda image has no 4-byte kiln_error");
  unsetenv("FAKE_CUDA_MISSING");
}

/* ---------------------------------------------------------------- run failures --- */

static void test_run_failures(void **state) {
  (void)state;
  long base = kiln_rt_testing_live();
  write_mixed(path_of("mixed.kart"), NULL, 0);
  kiln_rt_model *m = open_ok(path_of("mixed.kart"));
  kiln_rt_context *c = NULL;
  /* out of device memory at context create; the model is fine */
  setenv("FAKE_CUDA_MEM_LIMIT", "100", 1);
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_ERR_NOMEM);
  assert_null(c);
  /* no handle to keep the reason on: this thread's kiln_rt_context_error(NULL) has it */
  assert_non_null(strstr(kiln_rt_context_error(NULL), "no context: cuda:0: cuMemAlloc"));
  void *d = NULL;
  assert_int_equal(kiln_rt_device_alloc(m, 1000, &d), KILN_RT_ERR_NOMEM);
  unsetenv("FAKE_CUDA_MEM_LIMIT");
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  float x[4] = {1, 2, 3, 4}, y[4][4];
  kiln_rt_buffer in[2] = {{x, 16}, {NULL, 0}}, out[4] = {{y[0], 16}, {y[1], 16}, {y[2], 16}, {y[3], 16}};
  /* a launch that fails, eager (run 1) and while capturing (run 2) */
  setenv("FAKE_CUDA_FAIL_LAUNCH", "kiln_k2", 1);
  for (int run = 0; run < 2; run++) {
    assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_ERR_EXEC);
    assert_non_null(strstr(kiln_rt_context_error(c),
                           "cuda step 1 (node 'k2node'): cuLaunchKernel of kiln_k2 failed: CUDA_ERROR_LAUNCH_FAILED"));
  }
  unsetenv("FAKE_CUDA_FAIL_LAUNCH");
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_OK);
  /* a kernel sets kiln_error, in an eager run and a replayed one */
  setenv("FAKE_CUDA_SET_ERROR", "kiln_k1=1", 1);
  for (int run = 0; run < 2; run++) {
    assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_ERR_EXEC);
    assert_non_null(strstr(kiln_rt_context_error(c), "cuda step 0 (node 'k1node'): integer division by zero"));
  }
  setenv("FAKE_CUDA_SET_ERROR", "kiln_k1=77", 1);
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_ERR_EXEC);
  assert_non_null(strstr(kiln_rt_context_error(c), "kiln_error to 77, which names no cuda step"));
  unsetenv("FAKE_CUDA_SET_ERROR");
  assert_int_equal(kiln_rt_run(c, in, 2, out, 4), KILN_RT_OK);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  /* CPU models take no device buffers */
  assert_clean(base);
}

/* ---------------------------------------------------------------- out of memory -- */

static void oom_path(const char *path, int mixed) {
  long base = kiln_rt_testing_live();
  for (long n = 0;; n++) {
    if (n > 2000) fail_msg("still failing after 2000 allocations");
    kiln_rt_model *m = NULL;
    kiln_rt_context *c = NULL;
    kiln_rt_testing_fail_after(n);
    kiln_rt_status st = kiln_rt_model_open(path, &m);
    if (!st) st = kiln_rt_context_create(m, &c);
    float x[MLP_M * MLP_K] = {1}, y[4][MLP_M * MLP_N];
    kiln_rt_buffer in[2] = {{x, mixed ? 16 : sizeof x}, {NULL, 0}};
    kiln_rt_buffer out[4] = {{y[0], mixed ? 16 : 80}, {y[1], 16}, {y[2], 16}, {y[3], 16}};
    if (!st) st = kiln_rt_run(c, in, mixed ? 2 : 1, out, mixed ? 4 : 1);
    kiln_rt_testing_fail_after(-1);
    if (st != KILN_RT_OK && st != KILN_RT_ERR_NOMEM)
      fail_msg("N=%ld: %s (%s), want out-of-memory", n, kiln_rt_status_name(st),
               c ? kiln_rt_context_error(c) : kiln_rt_model_error(m));
    kiln_rt_context_destroy(c);
    kiln_rt_model_close(m);
    assert_clean(base);
    if (st == KILN_RT_OK) break;
  }
}

static void test_oom(void **state) {
  (void)state;
  write_mixed(path_of("mixed.kart"), NULL, 0);
  write_mlp(path_of("mlp.kart"));
  oom_path(path_of("mixed.kart"), 1);
  oom_path(path_of("mlp.kart"), 0);
}

/* ---------------------------------------------------------------- conv plans ----- */

/* One convolution through the fake cuDNN: x (input 0, on cuda:0) conv w (weights) into
 * y (output 0), against a double reference. */
typedef struct ccase {
  int dtype, sp, n, c, k, groups;
  int in[3], filter[3], pads[3], strides[3], dil[3];
} ccase;

static int conv_out(const ccase *t, int d) {
  return (t->in[d] + 2 * t->pads[d] - t->dil[d] * (t->filter[d] - 1) - 1) / t->strides[d] + 1;
}

static int64_t prod(const int *d, int k) {
  int64_t e = 1;
  for (int i = 0; i < k; i++) e *= d[i];
  return e;
}

/* The record for t with x, w, y operands as a conv step of plan p. */
static Kiln__Rt__CudaConv *conv_new(const ccase *t, Kiln__Rt__Operand *x, Kiln__Rt__Operand *w,
                                    Kiln__Rt__Operand *y) {
  Kiln__Rt__CudaConv *v = P(sizeof *v);
  kiln__rt__cuda_conv__init(v);
  v->dtype = t->dtype, v->spatial = t->sp, v->n = t->n, v->c = t->c, v->k = t->k, v->groups = t->groups;
  int64_t **arr[6] = {&v->in_dims, &v->filter_dims, &v->out_dims, &v->pads, &v->strides, &v->dilations};
  size_t *cnt[6] = {&v->n_in_dims, &v->n_filter_dims, &v->n_out_dims, &v->n_pads, &v->n_strides, &v->n_dilations};
  for (int a = 0; a < 6; a++) {
    *arr[a] = P(3 * sizeof(int64_t));
    *cnt[a] = (size_t)t->sp;
    for (int d = 0; d < t->sp; d++) {
      const int vals[6] = {t->in[d], t->filter[d], conv_out(t, d), t->pads[d], t->strides[d], t->dil[d]};
      (*arr[a])[d] = vals[a];
    }
  }
  v->x = x, v->w = w, v->y = y;
  return v;
}

static void add_conv(Kiln__Rt__Plan *p, Kiln__Rt__CudaConv *v, const char *node) {
  Kiln__Rt__CudaStep *s = P(sizeof *s);
  kiln__rt__cuda_step__init(s);
  s->kind = 3;
  s->kernel = S("");
  s->grid = 1;
  s->block = 32;
  s->conv = v;
  s->node = S(node);
  add_unit(p, U_CUDA, (int)p->n_cuda_steps, NULL, NULL, node);
  PUSH(p->cuda_steps, p->n_cuda_steps, s);
  add_step_record(p, "cudnn", "conv", "cuda:0");
}

static double g_cw[4096];

/* Writes the conv artifact for t (filters random in g_cw); mutate (may be NULL) edits the
 * record before it is packed. */
static void write_conv(const char *path, const ccase *t, void (*mutate)(Kiln__Rt__CudaConv *)) {
  int f64 = t->dtype == KILN_RT_F64, osp[3];
  size_t es = f64 ? 8 : 4;
  for (int d = 0; d < t->sp; d++) osp[d] = conv_out(t, d);
  int64_t nx = (int64_t)t->n * t->c * prod(t->in, t->sp), nw = (int64_t)t->k * (t->c / t->groups) * prod(t->filter, t->sp);
  int64_t ny = (int64_t)t->n * t->k * prod(osp, t->sp);
  assert_true(nw <= 4096);
  static unsigned char w[4096 * 8];
  for (int64_t i = 0; i < nw; i++) {
    g_cw[i] = rnd();
    if (f64) ((double *)w)[i] = g_cw[i];
    else ((float *)w)[i] = (float)g_cw[i], g_cw[i] = (float)g_cw[i];
  }
  int64_t dx[5] = {t->n, t->c}, dy[5] = {t->n, t->k};
  for (int d = 0; d < t->sp; d++) dx[2 + d] = t->in[d], dy[2 + d] = osp[d];
  Kiln__Rt__Plan *p = plan_new("");
  p->cuda_error_word = 0;
  add_input(p, spec("x", t->dtype, t->sp + 2, dx), "cuda:0");
  add_output(p, spec("y", t->dtype, t->sp + 2, dy), opnd(IO, 1, 0, (uint64_t)ny * es, "cuda:0"));
  add_arena(p, "cuda:0", 64);
  Kiln__Rt__CudaConv *v = conv_new(t, opnd(IO, 0, 0, (uint64_t)nx * es, "cuda:0"),
                                   opnd(WT, 0, 0, (uint64_t)nw * es, "cuda:0"),
                                   opnd(IO, 1, 0, (uint64_t)ny * es, "cuda:0"));
  if (mutate) mutate(v);
  add_conv(p, v, "conv");
  write_art(path, p, w, (size_t)nw * es, NULL, NULL);
}

/* The interpreter's conv in double (x already rounded to the dtype). */
static void conv_ref(const ccase *t, const double *x, double *y) {
  int in[3] = {1, 1, 1}, f[3] = {1, 1, 1}, o[3] = {1, 1, 1}, pd[3] = {0, 0, 0}, st[3] = {1, 1, 1}, dl[3] = {1, 1, 1};
  for (int d = 0; d < t->sp; d++)
    in[d] = t->in[d], f[d] = t->filter[d], o[d] = conv_out(t, d), pd[d] = t->pads[d], st[d] = t->strides[d], dl[d] = t->dil[d];
  int cg = t->c / t->groups, kg = t->k / t->groups;
  int64_t idx = 0;
  for (int b = 0; b < t->n; b++)
    for (int m = 0; m < t->k; m++)
      for (int o0 = 0; o0 < o[0]; o0++)
        for (int o1 = 0; o1 < o[1]; o1++)
          for (int o2 = 0; o2 < o[2]; o2++) {
            double acc = 0;
            for (int ci = 0; ci < cg; ci++)
              for (int j0 = 0; j0 < f[0]; j0++)
                for (int j1 = 0; j1 < f[1]; j1++)
                  for (int j2 = 0; j2 < f[2]; j2++) {
                    int p0 = o0 * st[0] - pd[0] + j0 * dl[0], p1 = o1 * st[1] - pd[1] + j1 * dl[1];
                    int p2 = o2 * st[2] - pd[2] + j2 * dl[2];
                    if (p0 < 0 || p0 >= in[0] || p1 < 0 || p1 >= in[1] || p2 < 0 || p2 >= in[2]) continue;
                    int64_t xi = (((int64_t)b * t->c + (m / kg) * cg + ci) * in[0] + p0) * in[1] * in[2] + p1 * in[2] + p2;
                    int64_t wi = (((int64_t)m * cg + ci) * f[0] + j0) * f[1] * f[2] + j1 * f[2] + j2;
                    acc += x[xi] * g_cw[wi];
                  }
            y[idx++] = acc;
          }
}

static void conv_case(const ccase *t, const char *what) {
  long base = kiln_rt_testing_live();
  write_conv(path_of("conv.kart"), t, NULL);
  kiln_rt_model *m = open_ok(path_of("conv.kart"));
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  int f64 = t->dtype == KILN_RT_F64, osp[3] = {1, 1, 1};
  for (int d = 0; d < t->sp; d++) osp[d] = conv_out(t, d);
  int64_t nx = (int64_t)t->n * t->c * prod(t->in, t->sp), ny = (int64_t)t->n * t->k * prod(osp, t->sp);
  double *xd = calloc((size_t)nx, sizeof *xd), *ref = calloc((size_t)ny, sizeof *ref);
  unsigned char *xb = calloc((size_t)nx, 8), *yb = calloc((size_t)ny, 8);
  assert_true(xd && ref && xb && yb);
  /* run 1 eager, run 2 captured, run 3 replayed; new numbers each time */
  for (int run = 0; run < 3; run++) {
    for (int64_t i = 0; i < nx; i++) {
      xd[i] = rnd();
      if (f64) ((double *)xb)[i] = xd[i];
      else ((float *)xb)[i] = (float)xd[i], xd[i] = (float)xd[i];
    }
    kiln_rt_buffer in = {xb, (size_t)nx * (f64 ? 8 : 4)}, out = {yb, (size_t)ny * (f64 ? 8 : 4)};
    memset(yb, 0xFF, (size_t)ny * 8);
    if (kiln_rt_run(c, &in, 1, &out, 1) != KILN_RT_OK) fail_msg("%s run %d: %s", what, run, kiln_rt_context_error(c));
    conv_ref(t, xd, ref);
    assert_close(ref, yb, f64, (int)ny, what);
  }
  free(xd), free(ref), free(xb), free(yb);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  assert_clean(base);
  assert_int_equal(fake_lib_count("KILN_CUDNN", "fake_cudnn_live"), 0);
}

static const ccase k_conv2d = {KILN_RT_F32, 2, 2, 3, 4, 1, {6, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}};

static void test_conv(void **state) {
  (void)state;
  conv_case(&k_conv2d, "2-D f32");
  const ccase grouped = {KILN_RT_F64, 2, 1, 4, 6, 2, {9, 8}, {3, 2}, {1, 0}, {2, 2}, {2, 1}};
  conv_case(&grouped, "2-D f64, groups 2, stride 2, dilation 2");
  const ccase depthwise = {KILN_RT_F32, 1, 2, 4, 4, 4, {11}, {3}, {2}, {1}, {2}};
  conv_case(&depthwise, "1-D f32 depthwise, dilation 2");
  const ccase vol = {KILN_RT_F64, 3, 1, 2, 3, 1, {4, 5, 3}, {3, 2, 3}, {1, 0, 1}, {1, 2, 1}, {1, 1, 1}};
  conv_case(&vol, "3-D f64");
  const ccase strided = {KILN_RT_F32, 3, 2, 4, 2, 2, {5, 4, 6}, {2, 2, 3}, {0, 1, 1}, {2, 1, 3}, {1, 2, 1}};
  conv_case(&strided, "3-D f32 grouped, strided, dilated");
}

static void cmut_out(Kiln__Rt__CudaConv *v) { v->out_dims[1] = 4; }
static void cmut_groups(Kiln__Rt__CudaConv *v) { v->groups = 2; }
static void cmut_spatial(Kiln__Rt__CudaConv *v) { v->spatial = 4; }
static void cmut_dtype(Kiln__Rt__CudaConv *v) { v->dtype = 3; }
static void cmut_count(Kiln__Rt__CudaConv *v) { v->n_pads = 1; }
static void cmut_stride(Kiln__Rt__CudaConv *v) { v->strides[0] = 0; }
static void cmut_pad(Kiln__Rt__CudaConv *v) { v->pads[1] = -1; }
static void cmut_huge(Kiln__Rt__CudaConv *v) { v->n = (int64_t)1 << 40; }
static void cmut_numel(Kiln__Rt__CudaConv *v) { v->n = 1 << 30; }
static void cmut_cover(Kiln__Rt__CudaConv *v) { v->x = opnd(AR, 0, 0, 16, "cuda:0"); }
static void cmut_write(Kiln__Rt__CudaConv *v) { v->y = v->w; }
static void cmut_cpu(Kiln__Rt__CudaConv *v) { v->w->device = S("cpu:0"); }
static void cmut_none(Kiln__Rt__CudaConv *v) { v->w = NULL; }

static void test_conv_bad(void **state) {
  (void)state;
  static const struct {
    void (*mutate)(Kiln__Rt__CudaConv *);
    const char *want;
  } cases[] = {
      {cmut_out, "cuda step 0 conv.out_dims[1]: 4, but in 5, filter 3, pad 1, stride 1 and dilation 1 give 5"},
      {cmut_groups, "cuda step 0 conv.c: 3 is not a multiple of groups"},
      {cmut_spatial, "cuda step 0 conv.spatial: 4 (must be 1..3)"},
      {cmut_dtype, "cuda step 0 conv.dtype: 3 is not f32 (1) or f64 (2)"},
      {cmut_count, "cuda step 0 conv.pads: 1 entries for 2 spatial dims"},
      {cmut_stride, "cuda step 0 conv.strides[0]: 0 (must be 1..2^31-1)"},
      {cmut_pad, "cuda step 0 conv.pads[1]: -1 (must be 0..2^31-1)"},
      {cmut_huge, "cuda step 0 conv.n: 1099511627776 (must be 1..2^31-1)"},
      {cmut_numel, "cuda step 0 conv: a tensor of 2^31 or more elements"},
      {cmut_cover, "cuda step 0 conv.x: 1 batches of 1x180 at stride 0 do not fit in its 16 bytes"},
      {cmut_write, "cuda step 0 conv.y: written, but it is in the weights at 0"},
      {cmut_cpu, "cuda step 0 conv.w: on cpu:0, not cuda:0"},
      {cmut_none, "cuda step 0 conv.w: no operand"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_conv(path_of("badconv.kart"), &k_conv2d, cases[i].mutate);
    open_fails(path_of("badconv.kart"), KILN_RT_ERR_FORMAT, cases[i].want);
  }
  /* the valid twin still opens, and runs with the Nth allocation failing for every N */
  write_conv(path_of("conv.kart"), &k_conv2d, NULL);
  long base = kiln_rt_testing_live();
  for (long n = 0;; n++) {
    if (n > 2000) fail_msg("still failing after 2000 allocations");
    kiln_rt_model *m = NULL;
    kiln_rt_context *c = NULL;
    static float x[2 * 3 * 6 * 5], y[2 * 4 * 6 * 5];
    kiln_rt_buffer in = {x, sizeof x}, out = {y, sizeof y};
    kiln_rt_testing_fail_after(n);
    kiln_rt_status st = kiln_rt_model_open(path_of("conv.kart"), &m);
    if (!st) st = kiln_rt_context_create(m, &c);
    if (!st) st = kiln_rt_run(c, &in, 1, &out, 1);
    kiln_rt_testing_fail_after(-1);
    if (st != KILN_RT_OK && st != KILN_RT_ERR_NOMEM)
      fail_msg("N=%ld: %s (%s), want out-of-memory", n, kiln_rt_status_name(st),
               c ? kiln_rt_context_error(c) : kiln_rt_model_error(m));
    kiln_rt_context_destroy(c);
    kiln_rt_model_close(m);
    assert_clean(base);
    assert_int_equal(fake_lib_count("KILN_CUDNN", "fake_cudnn_live"), 0);
    if (st == KILN_RT_OK) break;
  }
}

/* ---------------------------------------------------------------- fresh processes - */

/* Child: open the artifact and print "STATUS MESSAGE". */
static int child_open(const char *path) {
  kiln_rt_model *m = NULL;
  kiln_rt_status st = kiln_rt_model_open(path, &m);
  printf("%d %s\n", (int)st, kiln_rt_model_error(m));
  kiln_rt_model_close(m);
  return 0;
}

static void in_child(const char *path, const char *var, const char *value, kiln_rt_status want,
                     const char *msg) {
  char set[600], buf[1200] = "";
  snprintf(set, sizeof set, "%s=%s", var, value);
  const char *args[] = {"--open", path, NULL}, *env[] = {set, NULL};
  assert_int_equal(kt_child(args, env, buf, sizeof buf), 0);
  int rc = -1;
  assert_int_equal(sscanf(buf, "%d", &rc), 1);
  if (rc != (int)want || !strstr(buf, msg)) fail_msg("child: %s; want %d and \"%s\"", buf, (int)want, msg);
}

static void test_no_driver_device_cublaslt(void **state) {
  (void)state;
  write_mixed(path_of("mixed.kart"), NULL, 0);
  write_mlp(path_of("mlp.kart"));
  in_child(path_of("mixed.kart"), "KILN_CUDA_DRIVER", "/nonexistent/libcuda.so.1", KILN_RT_ERR_DEVICE,
           "no CUDA driver: /nonexistent/libcuda.so.1");
  in_child(path_of("mixed.kart"), "FAKE_CUDA_DEVICES", "none", KILN_RT_ERR_DEVICE,
           "CUDA driver 13.0 has no usable device: cuInit: CUDA_ERROR_NO_DEVICE");
  in_child(path_of("mixed.kart"), "FAKE_CUDA_DEVICES", "0", KILN_RT_ERR_DEVICE, "CUDA driver 13.0 has no device");
  in_child(path_of("mlp.kart"), "KILN_CUBLASLT", "/nonexistent/libcublasLt.so", KILN_RT_ERR_DEVICE,
           "no cuBLASLt (the plan has GEMM steps): /nonexistent/libcublasLt.so");
  in_child(path_of("mlp.kart"), "KILN_CUBLASLT", "libm.so.6", KILN_RT_ERR_DEVICE,
           "libm.so.6 is not cuBLASLt: it has no cublasLtCreate");
  /* a plan without GEMMs never needs cuBLASLt */
  in_child(path_of("mixed.kart"), "KILN_CUBLASLT", "/nonexistent/libcublasLt.so", KILN_RT_OK, "");
  /* cuDNN only for plans with conv steps */
  write_conv(path_of("conv.kart"), &k_conv2d, NULL);
  in_child(path_of("conv.kart"), "KILN_CUDNN", "/nonexistent/libcudnn.so.9", KILN_RT_ERR_DEVICE,
           "no cuDNN (the plan has conv steps): /nonexistent/libcudnn.so.9");
  in_child(path_of("conv.kart"), "KILN_CUDNN", "libm.so.6", KILN_RT_ERR_DEVICE,
           "libm.so.6 is not cuDNN: it has no cudnnCreate");
  in_child(path_of("mlp.kart"), "KILN_CUDNN", "/nonexistent/libcudnn.so.9", KILN_RT_OK, "");
}

/* CPU models: device buffers are refused, kiln_rt_model_device says cpu:0. */
static void test_cpu_model_refuses_device(void **state) {
  (void)state;
  kiln_rt_model *m = NULL;
  kiln_rt_status st = kiln_rt_model_open(path_of("nothing.kart"), &m);
  assert_int_not_equal(st, KILN_RT_OK);
  assert_string_equal(kiln_rt_model_device(m), "");
  void *d = (void *)1;
  assert_int_equal(kiln_rt_device_alloc(m, 16, &d), KILN_RT_ERR_ARGUMENT);
  assert_null(d);
  kiln_rt_model_close(m);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--open") == 0) return child_open(argv[2]);
  g_real = getenv("KILN_TEST_CUDA_REAL") && strcmp(getenv("KILN_TEST_CUDA_REAL"), "1") == 0;
  unsetenv("KILN_CUDA_DEVICE");
  unsetenv("KILN_CUDA_GRAPHS");
  snprintf(g_dir, sizeof g_dir, "/tmp/kiln-cuda-exec-XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  if (g_real) {
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_gemm_mlp), cmocka_unit_test(test_gemm_trans_batch),
        cmocka_unit_test(test_copies_staging), cmocka_unit_test(test_real_graphs_error)};
    int n = getenv("KILN_TEST_CUDA_CUBIN") ? 4 : 2;
    int rc = _cmocka_run_group_tests("real", real, (size_t)n, NULL, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) != 0 ? 1 : rc;
  }
  /* before the first driver use: the stand-ins, two devices, a log */
  setenv("KILN_CUDA_DRIVER", FAKE_CUDA_PATH, 1);
  setenv("KILN_CUBLASLT", FAKE_CUBLASLT_PATH, 1);
  setenv("KILN_CUDNN", FAKE_CUDNN_PATH, 1);
  setenv("FAKE_CUDA_DEVICES", "2", 1);
  static char log[300];
  snprintf(log, sizeof log, "%s/fake.log", g_dir);
  setenv("FAKE_CUDA_LOG", log, 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_mlp),         cmocka_unit_test(test_gemm_trans_batch),
      cmocka_unit_test(test_copies_staging),   cmocka_unit_test(test_graphs),
      cmocka_unit_test(test_image_choice),     cmocka_unit_test(test_bad_plans),
      cmocka_unit_test(test_run_failures),     cmocka_unit_test(test_oom),
      cmocka_unit_test(test_conv),             cmocka_unit_test(test_conv_bad),
      cmocka_unit_test(test_no_driver_device_cublaslt),
      cmocka_unit_test(test_cpu_model_refuses_device),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) rc = rc ? rc : 1;
  return rc;
}
