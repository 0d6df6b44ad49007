/* hand_tuned.c — the "hand-tuned" line of bench/run.sh: what a careful C programmer writes
 * by hand with OpenBLAS for the benchmark's models (sgemv at batch 1 over weights laid out
 * [out, in], sgemm otherwise, one fused bias+ReLU loop; the 50-op chain as one loop), with
 * OpenBLAS's best core type chosen before it loads (the program re-executes itself with
 * OPENBLAS_CORETYPE set, never overriding a value the user set). Also measures the FP32
 * FMA peak (--peak). Uses libkiln_rt only to read .npy files; nothing else from Kiln.
 *
 * usage: bench_hand_tuned MODEL_DIR [--threads T] [--iterations N] [--warmup N]
 *                         [--inputs K] [--out Y.npy] [--no-coretype]
 *        bench_hand_tuned --corename [--no-coretype]   OpenBLAS's kernel choice
 *        bench_hand_tuned --peak T                      FP32 FMA GFLOP/s on T threads
 * MODEL_DIR (bench/models/gen_models.py): x.npy and w1.npy, [b1.npy], w2.npy, ... (a dense
 * net, ReLU after every layer but the last), or consts.npy (the 50-op chain:
 * 10 x {mul, add, relu, sub, minimum}, each binary op with its own row of consts).
 * Prints one JSON line: {"median_ns": ..., "p10_ns": ..., "p90_ns": ..., ...}. */
#define _GNU_SOURCE
#include <cblas.h>
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/kiln_runtime.h"

#define MAX_LAYERS 8
#define CHAIN_OPS 50

typedef struct layer {
  int fin, fout;
  float *w;  /* [fin, fout] row-major (x @ w) */
  float *wt; /* [fout, fin]: the layout sgemv wants at batch 1 */
  float *b;  /* [fout] or NULL */
} layer;

typedef struct model {
  int batch, n_layers, chain;
  layer l[MAX_LAYERS];
  float *consts; /* chain: [50, 64] */
  int64_t in_elems, out_elems;
  float *act[2]; /* ping-pong activations, sized for the widest layer */
} model;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int die(const char *fmt, const char *a) {
  fprintf(stderr, "bench_hand_tuned: ");
  fprintf(stderr, fmt, a);
  fputc('\n', stderr);
  return 1;
}

/* ---- OpenBLAS core type: chosen before the library initializes ------------------- */

static const char *best_coretype(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return NULL;
}

/* Re-executes this program with OPENBLAS_CORETYPE set (OpenBLAS reads it in its library
 * constructor, before main). Returns only if nothing needs doing or exec failed. */
static void maybe_reexec(char **argv, int no_coretype) {
  if (no_coretype || getenv("OPENBLAS_CORETYPE") || getenv("BENCH_HAND_TUNED_CHILD")) return;
  const char *ct = best_coretype();
  if (!ct) return;
  setenv("OPENBLAS_CORETYPE", ct, 1);
  setenv("BENCH_HAND_TUNED_CHILD", "1", 1);
  execv("/proc/self/exe", argv);
  fprintf(stderr, "bench_hand_tuned: re-exec failed (%s); running with OpenBLAS's default\n",
          strerror(errno));
}

/* ---- loading ------------------------------------------------------------------------ */

static float *load_npy(const char *dir, const char *name, int rank, int64_t *d0, int64_t *d1,
                       int optional) {
  char path[4096], err[512];
  kiln_rt_npy t;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (optional && access(path, F_OK) != 0) return NULL;
  if (kiln_rt_npy_read(path, &t, err, sizeof err) != KILN_RT_OK) {
    fprintf(stderr, "bench_hand_tuned: %s\n", err);
    return NULL;
  }
  if (t.dtype != KILN_RT_F32 || t.rank != rank) {
    fprintf(stderr, "bench_hand_tuned: %s: want f32 rank %d\n", path, rank);
    kiln_rt_npy_free(&t);
    return NULL;
  }
  *d0 = t.dims[0];
  if (d1) *d1 = rank > 1 ? t.dims[1] : 1;
  return t.data; /* 64-byte aligned, malloc'd: free() releases it */
}

static int load_model(const char *dir, model *m) {
  int64_t a, b;
  char name[64];
  memset(m, 0, sizeof *m);
  float *x = load_npy(dir, "x.npy", 2, &a, &b, 0);
  if (!x) return -1;
  free(x);
  m->batch = (int)a;
  m->in_elems = a * b;
  m->consts = load_npy(dir, "consts.npy", 2, &a, &b, 1);
  if (m->consts) {
    if (a != CHAIN_OPS || b != 64 || m->in_elems != 64) return die("%s: chain shape", dir), -1;
    m->chain = 1;
    m->out_elems = 64;
    return 0;
  }
  int64_t widest = m->in_elems / m->batch;
  for (int i = 0; i < MAX_LAYERS; i++) {
    snprintf(name, sizeof name, "w%d.npy", i + 1);
    layer *l = &m->l[i];
    l->w = load_npy(dir, name, 2, &a, &b, 1);
    if (!l->w) break;
    l->fin = (int)a;
    l->fout = (int)b;
    l->wt = aligned_alloc(64, ((size_t)a * b * 4 + 63) / 64 * 64);
    if (!l->wt) return -1;
    for (int64_t r = 0; r < a; r++)
      for (int64_t c = 0; c < b; c++) l->wt[c * a + r] = l->w[r * b + c];
    snprintf(name, sizeof name, "b%d.npy", i + 1);
    l->b = load_npy(dir, name, 1, &a, NULL, 1);
    if (l->fout > widest) widest = l->fout;
    m->n_layers++;
  }
  if (!m->n_layers) return die("%s: no w1.npy or consts.npy", dir), -1;
  m->out_elems = (int64_t)m->batch * m->l[m->n_layers - 1].fout;
  for (int k = 0; k < 2; k++) {
    m->act[k] = aligned_alloc(64, ((size_t)m->batch * widest * 4 + 63) / 64 * 64);
    if (!m->act[k]) return -1;
  }
  return 0;
}

static void free_model(model *m) {
  for (int i = 0; i < m->n_layers; i++) {
    free(m->l[i].w);
    free(m->l[i].wt);
    free(m->l[i].b);
  }
  free(m->consts);
  free(m->act[0]);
  free(m->act[1]);
}

/* ---- the hand-written forward passes ------------------------------------------------- */

/* y[rows, n] += bias, then ReLU, in one pass over y. */
static void bias_relu(float *restrict y, const float *restrict bias, int rows, int n,
                      int relu) {
  for (int r = 0; r < rows; r++) {
    float *restrict row = y + (size_t)r * n;
    if (bias && relu)
      for (int c = 0; c < n; c++) {
        float v = row[c] + bias[c];
        row[c] = v < 0.0f ? 0.0f : v;
      }
    else if (bias)
      for (int c = 0; c < n; c++) row[c] += bias[c];
    else if (relu)
      for (int c = 0; c < n; c++) row[c] = row[c] < 0.0f ? 0.0f : row[c];
  }
}

static void dense_forward(model *m, const float *x, float *y) {
  const float *in = x;
  for (int i = 0; i < m->n_layers; i++) {
    layer *l = &m->l[i];
    int last = i == m->n_layers - 1;
    float *out = last ? y : m->act[i & 1];
    if (m->batch == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, l->fout, l->fin, 1.0f, l->wt, l->fin, in, 1,
                  0.0f, out, 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m->batch, l->fout, l->fin, 1.0f,
                  in, l->fin, l->w, l->fout, 0.0f, out, l->fout);
    bias_relu(out, l->b, m->batch, l->fout, !last);
    in = out;
  }
}

/* The chain as one pass over a 64-float register/L1 buffer: 10 x {mul, add, relu, sub,
 * minimum}, each inner loop over the 64 elements (vectorized by the compiler). */
static void chain_forward(const float *restrict c, const float *restrict x,
                          float *restrict y) {
  float v[64];
  for (int e = 0; e < 64; e++) v[e] = x[e];
  for (int k = 0; k < CHAIN_OPS; k += 5) {
    const float *restrict a = c + k * 64, *restrict b = a + 64, *restrict s = a + 192,
                          *restrict mn = a + 256;
    for (int e = 0; e < 64; e++) {
      float t = v[e] * a[e];
      t = t + b[e];
      t = t < 0.0f ? 0.0f : t;
      t -= s[e];
      v[e] = t < mn[e] ? t : mn[e];
    }
  }
  for (int e = 0; e < 64; e++) y[e] = v[e];
}

static void forward(model *m, const float *x, float *y) {
  if (m->chain)
    chain_forward(m->consts, x, y);
  else
    dense_forward(m, x, y);
}

/* ---- timing ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int bench(model *m, const char *dir, int iters, int warmup, int sets,
                 const char *out_path) {
  int64_t a, b;
  float *x0 = load_npy(dir, "x.npy", 2, &a, &b, 0);
  size_t in_bytes = (size_t)m->in_elems * 4, stride = (in_bytes + 63) / 64 * 64;
  float *xs = aligned_alloc(64, stride * sets);
  float *y = aligned_alloc(64, ((size_t)m->out_elems * 4 + 63) / 64 * 64);
  double *t = malloc(sizeof *t * iters);
  if (!x0 || !xs || !y || !t) return die("%s", "out of memory"), 1;
  for (int s = 0; s < sets; s++) memcpy((char *)xs + stride * s, x0, in_bytes);
  forward(m, x0, y); /* the checked output: the real input */
  if (out_path) {
    char err[512];
    int64_t dims[2] = {m->batch, m->out_elems / m->batch};
    if (kiln_rt_npy_write(out_path, KILN_RT_F32, 2, dims, y, err, sizeof err) != KILN_RT_OK)
      return die("%s", err), 1;
  }
  for (int i = 0; i < warmup; i++) forward(m, (float *)((char *)xs + stride * (i % sets)), y);
  for (int i = 0; i < iters; i++) {
    const float *x = (const float *)((char *)xs + stride * (i % sets));
    double t0 = now_ns();
    forward(m, x, y);
    t[i] = now_ns() - t0;
  }
  qsort(t, iters, sizeof *t, cmp_double);
  const char *ct = getenv("OPENBLAS_CORETYPE");
  printf("{\"median_ns\": %.1f, \"p10_ns\": %.1f, \"p90_ns\": %.1f, \"min_ns\": %.1f, "
         "\"iterations\": %d, \"corename\": \"%s\", \"coretype_env\": \"%s\", "
         "\"threads\": %d}\n",
         t[iters / 2], t[iters / 10], t[iters * 9 / 10], t[0], iters, openblas_get_corename(),
         ct ? ct : "", openblas_get_num_threads());
  free(x0);
  free(xs);
  free(y);
  free(t);
  return 0;
}

/* ---- FP32 FMA peak -------------------------------------------------------------------- */

#define ACC 12 /* independent FMA chains: more than FMA latency x FMA ports */
#define PEAK_ITERS 20000000L
#define FMA12(F, acc, m, c)                                                              \
  acc##0 = F(acc##0, m, c), acc##1 = F(acc##1, m, c), acc##2 = F(acc##2, m, c),          \
  acc##3 = F(acc##3, m, c), acc##4 = F(acc##4, m, c), acc##5 = F(acc##5, m, c),          \
  acc##6 = F(acc##6, m, c), acc##7 = F(acc##7, m, c), acc##8 = F(acc##8, m, c),          \
  acc##9 = F(acc##9, m, c), acc##10 = F(acc##10, m, c), acc##11 = F(acc##11, m, c)

__attribute__((target("avx2,fma"))) static double peak_avx2(long iters) {
  /* Distinct starting values: twelve identical chains would be one chain to the
   * compiler (it may compute it once), and the count would be 12x the work done. */
  __m256 m = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
#define START(i) _mm256_set1_ps(1.0f + (float)(i) / 64)
  __m256 a0 = START(0), a1 = START(1), a2 = START(2), a3 = START(3), a4 = START(4),
         a5 = START(5), a6 = START(6), a7 = START(7), a8 = START(8), a9 = START(9),
         a10 = START(10), a11 = START(11);
#undef START
  for (long i = 0; i < iters; i++) FMA12(_mm256_fmadd_ps, a, m, c);
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  return _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f"))) static double peak_avx512(long iters) {
  __m512 m = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
#define START(i) _mm512_set1_ps(1.0f + (float)(i) / 64)
  __m512 a0 = START(0), a1 = START(1), a2 = START(2), a3 = START(3), a4 = START(4),
         a5 = START(5), a6 = START(6), a7 = START(7), a8 = START(8), a9 = START(9),
         a10 = START(10), a11 = START(11);
#undef START
  for (long i = 0; i < iters; i++) FMA12(_mm512_fmadd_ps, a, m, c);
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(s);
}

static int peak_width;
static volatile double peak_sink;

static void *peak_thread(void *arg) {
  (void)arg;
  long iters = PEAK_ITERS / (peak_width / 8);
  peak_sink = peak_width == 16 ? peak_avx512(iters) : peak_avx2(iters);
  return NULL;
}

static int peak(int threads) {
  __builtin_cpu_init();
  peak_width = __builtin_cpu_supports("avx512f") ? 16
               : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 8 : 0;
  if (!peak_width) return die("%s", "--peak needs AVX2+FMA"), 1;
  if (threads < 1 || threads > 64) return die("%s", "--peak T: 1..64"), 1;
  pthread_t th[64];
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now_ns();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, peak_thread, NULL);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double dt = now_ns() - t0;
    double flops = (double)threads * (PEAK_ITERS / (peak_width / 8)) * ACC * peak_width * 2;
    if (flops / dt > best) best = flops / dt;
  }
  printf("{\"peak_gflops\": %.1f, \"threads\": %d, \"vector_bits\": %d}\n", best, threads,
         peak_width * 32);
  return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static int int_arg(const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *out = NULL;
  int threads = 1, iters = 2000, warmup = 200, sets = 8, no_coretype = 0, corename = 0;
  int peak_threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    int bad = 0;
    if (!strcmp(o, "--no-coretype")) no_coretype = 1;
    else if (!strcmp(o, "--corename")) corename = 1;
    else if (!strcmp(o, "--threads") && i + 1 < argc) bad = int_arg(argv[++i], 1, 64, &threads);
    else if (!strcmp(o, "--iterations") && i + 1 < argc)
      bad = int_arg(argv[++i], 10, 100000000, &iters);
    else if (!strcmp(o, "--warmup") && i + 1 < argc) bad = int_arg(argv[++i], 0, 1000000, &warmup);
    else if (!strcmp(o, "--inputs") && i + 1 < argc) bad = int_arg(argv[++i], 1, 1024, &sets);
    else if (!strcmp(o, "--peak") && i + 1 < argc) bad = int_arg(argv[++i], 1, 64, &peak_threads);
    else if (!strcmp(o, "--out") && i + 1 < argc) out = argv[++i];
    else if (o[0] != '-' && !dir) dir = o;
    else return die("bad argument '%s' (see the comment at the top of hand_tuned.c)", o);
    if (bad) return die("bad value for %s", o);
  }
  if (peak_threads) return peak(peak_threads);
  maybe_reexec(argv, no_coretype);
  if (corename) {
    puts(openblas_get_corename());
    return 0;
  }
  if (!dir) return die("%s", "MODEL_DIR missing");
  openblas_set_num_threads(threads);
  model m;
  int rc = load_model(dir, &m) == 0 ? bench(&m, dir, iters, warmup, sets, out) : 1;
  free_model(&m);
  return rc;
}
