/* fake_cublaslt.c — a stand-in for libcublasLt in tests without a GPU: cublasLtMatmul
 * really computes D = epilogue(alpha op(A) op(B) + beta C) on host memory (the fake
 * driver's device memory is host memory) in cuBLASLt's column-major terms, with
 * transposes, strided batches (stride 0 = broadcast), bias/ReLU epilogues, f32 and f64,
 * so the runtime's row-major mapping is checked without a GPU. Descriptors that disagree
 * (shapes, types, batch counts) are CUBLAS_STATUS_INVALID_VALUE, as cuBLASLt answers.
 * Work goes on the fake driver's stream through fake_cuda_enqueue, so stream capture
 * records it. Test code: plain malloc; never linked into libkiln_rt. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_enqueue.h"

enum { S_OK = 0, S_NOT_INIT = 1, S_ALLOC = 3, S_INVALID = 7, S_NOT_SUPPORTED = 15 };
enum { R_32F = 0, R_64F = 1, C_32F = 68, C_64F = 70 };

typedef struct desc {
  int compute, scale;
  int32_t transa, transb;
  uint32_t epilogue;
  const void *bias;
} desc;

typedef struct layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch;
  int64_t stride;
} layout;

typedef struct handle {
  int magic;
} handle;

typedef struct heur {
  uint64_t algo[8];
  size_t workspace;
  int state;
  float waves;
  int reserved[4];
} heur;

int cublasLtCreate(void **h);
int cublasLtDestroy(void *h);
const char *cublasLtGetStatusName(int s);
int cublasLtMatmulDescCreate(void **d, int compute, int scale);
int cublasLtMatmulDescDestroy(void *d);
int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n);
int cublasLtMatrixLayoutCreate(void **l, int type, uint64_t rows, uint64_t cols, int64_t ld);
int cublasLtMatrixLayoutDestroy(void *l);
int cublasLtMatrixLayoutSetAttribute(void *l, int attr, const void *buf, size_t n);
int cublasLtMatmulPreferenceCreate(void **p);
int cublasLtMatmulPreferenceDestroy(void *p);
int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t n);
int cublasLtMatmulAlgoGetHeuristic(void *h, void *d, void *a, void *b, void *c, void *dd, void *pref,
                                   int asked, heur *out, int *got);
int cublasLtMatmul(void *h, void *d, const void *alpha, const void *A, void *Al, const void *B,
                   void *Bl, const void *beta, const void *C, void *Cl, void *D, void *Dl,
                   const void *algo, void *ws, size_t ws_n, void *stream);
long fake_cublaslt_live(void);

static long g_live; /* handles, descriptors, layouts, preferences */

int cublasLtCreate(void **h) {
  *h = calloc(1, sizeof(handle));
  if (!*h) return S_ALLOC;
  ((handle *)*h)->magic = 0x17;
  g_live++;
  return S_OK;
}

int cublasLtDestroy(void *h) {
  if (!h) return S_NOT_INIT;
  free(h);
  g_live--;
  return S_OK;
}

const char *cublasLtGetStatusName(int s) {
  switch (s) {
  case S_OK: return "CUBLAS_STATUS_SUCCESS";
  case S_NOT_INIT: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case S_ALLOC: return "CUBLAS_STATUS_ALLOC_FAILED";
  case S_INVALID: return "CUBLAS_STATUS_INVALID_VALUE";
  case S_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

int cublasLtMatmulDescCreate(void **d, int compute, int scale) {
  if ((compute != C_32F || scale != R_32F) && (compute != C_64F || scale != R_64F)) return S_INVALID;
  desc *x = calloc(1, sizeof *x);
  if (!x) return S_ALLOC;
  x->compute = compute;
  x->scale = scale;
  x->epilogue = 1;
  *d = x;
  g_live++;
  return S_OK;
}

int cublasLtMatmulDescDestroy(void *d) {
  free(d);
  g_live--;
  return S_OK;
}

static int set(void *dst, size_t want, const void *buf, size_t n) {
  if (!buf || n != want) return S_INVALID;
  memcpy(dst, buf, n);
  return S_OK;
}

int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n) {
  desc *x = d;
  switch (attr) {
  case 3: return set(&x->transa, sizeof x->transa, buf, n);
  case 4: return set(&x->transb, sizeof x->transb, buf, n);
  case 7: return set(&x->epilogue, sizeof x->epilogue, buf, n);
  case 8: return set(&x->bias, sizeof x->bias, buf, n);
  }
  return S_INVALID;
}

int cublasLtMatrixLayoutCreate(void **l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if ((type != R_32F && type != R_64F) || ld < (int64_t)rows || rows == 0 || cols == 0) return S_INVALID;
  layout *x = calloc(1, sizeof *x);
  if (!x) return S_ALLOC;
  *x = (layout){type, rows, cols, ld, 1, 0};
  *l = x;
  g_live++;
  return S_OK;
}

int cublasLtMatrixLayoutDestroy(void *l) {
  free(l);
  g_live--;
  return S_OK;
}

int cublasLtMatrixLayoutSetAttribute(void *l, int attr, const void *buf, size_t n) {
  layout *x = l;
  if (attr == 5) return set(&x->batch, sizeof x->batch, buf, n);
  if (attr == 6) return set(&x->stride, sizeof x->stride, buf, n);
  return S_INVALID;
}

int cublasLtMatmulPreferenceCreate(void **p) {
  *p = calloc(1, 64);
  if (!*p) return S_ALLOC;
  g_live++;
  return S_OK;
}

int cublasLtMatmulPreferenceDestroy(void *p) {
  free(p);
  g_live--;
  return S_OK;
}

int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t n) {
  (void)p;
  if (attr == 1) return n == 8 && buf ? S_OK : S_INVALID;
  if (attr >= 5 && attr <= 8) {
    uint32_t a = 0;
    if (n != 4 || !buf) return S_INVALID;
    memcpy(&a, buf, 4);
    return a && (a & (a - 1)) == 0 ? S_OK : S_INVALID;
  }
  return S_INVALID;
}

/* The shapes agree: op(A) is m' x k, op(B) k x n', D m' x n', batches equal. */
static int check(const desc *d, const layout *a, const layout *b, const layout *c, const layout *dl) {
  uint64_t m = dl->rows, n = dl->cols;
  uint64_t am = d->transa ? a->cols : a->rows, ak = d->transa ? a->rows : a->cols;
  uint64_t bk = d->transb ? b->cols : b->rows, bn = d->transb ? b->rows : b->cols;
  int type = d->compute == C_64F ? R_64F : R_32F;
  if (am != m || bn != n || ak != bk) return S_INVALID;
  if (c->rows != m || c->cols != n || c->ld != dl->ld) return S_INVALID;
  if (a->type != type || b->type != type || c->type != type || dl->type != type) return S_INVALID;
  if (a->batch != dl->batch || b->batch != dl->batch || c->batch != dl->batch) return S_INVALID;
  if (d->epilogue != 1 && d->epilogue != 2 && d->epilogue != 4 && d->epilogue != 6) return S_NOT_SUPPORTED;
  if ((d->epilogue & 4) && !d->bias) return S_INVALID;
  return S_OK;
}

int cublasLtMatmulAlgoGetHeuristic(void *h, void *d, void *a, void *b, void *c, void *dd, void *pref,
                                   int asked, heur *out, int *got) {
  (void)pref;
  if (!h) return S_NOT_INIT;
  if (asked < 1) return S_INVALID;
  int s = check(d, a, b, c, dd);
  if (s) return s;
  memset(out, 0, sizeof *out);
  out->algo[0] = 0x5eed;
  out->workspace = 1024;
  *got = 1;
  return S_OK;
}

typedef struct job {
  desc d;
  layout a, b, dl;
  double alpha, beta;
  const void *A, *B, *C;
  void *D;
} job;

static double get(const void *p, int f64, int64_t i) {
  return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

/* One column-major matmul per batch, accumulating in the compute type. */
static void run_job(void *arg) {
  const job *j = arg;
  int f64 = j->d.compute == C_64F;
  uint64_t m = j->dl.rows, n = j->dl.cols, k = j->d.transa ? j->a.rows : j->a.cols;
  for (int32_t bt = 0; bt < j->dl.batch; bt++) {
    int64_t oa = bt * j->a.stride, ob = bt * j->b.stride, od = bt * j->dl.stride;
    for (uint64_t col = 0; col < n; col++)
      for (uint64_t row = 0; row < m; row++) {
        double acc = 0;
        float accf = 0;
        for (uint64_t p = 0; p < k; p++) {
          int64_t ia = j->d.transa ? (int64_t)(row * j->a.ld + p) : (int64_t)(p * j->a.ld + row);
          int64_t ib = j->d.transb ? (int64_t)(p * j->b.ld + col) : (int64_t)(col * j->b.ld + p);
          double x = get(j->A, f64, oa + ia), y = get(j->B, f64, ob + ib);
          if (f64) acc += x * y;
          else accf += (float)x * (float)y;
        }
        int64_t id = od + (int64_t)(col * j->dl.ld + row);
        double v = j->alpha * (f64 ? acc : (double)accf);
        if (j->beta != 0) v += j->beta * get(j->C, f64, id);
        if (j->d.epilogue & 4) v += get(j->d.bias, f64, (int64_t)row);
        if ((j->d.epilogue & 2) && v < 0) v = 0;
        if (f64) ((double *)j->D)[id] = v;
        else ((float *)j->D)[id] = (float)v;
      }
  }
}

/* In stream order through the stand-in driver (fake_enqueue.h); the driver failing to
 * queue it is an allocation failure. */
static int enqueue(void *stream, job *j) {
  return fake_enqueue(stream, run_job, j) ? S_ALLOC : S_OK;
}

int cublasLtMatmul(void *h, void *d, const void *alpha, const void *A, void *Al, const void *B,
                   void *Bl, const void *beta, const void *C, void *Cl, void *D, void *Dl,
                   const void *algo, void *ws, size_t ws_n, void *stream) {
  if (!h) return S_NOT_INIT;
  if (!A || !B || !D || !alpha || !beta || !algo || ((const uint64_t *)algo)[0] != 0x5eed) return S_INVALID;
  if (ws_n < 1024 || !ws) return S_INVALID;
  int s = check(d, Al, Bl, Cl, Dl);
  if (s) return s;
  job *j = malloc(sizeof *j);
  if (!j) return S_ALLOC;
  const desc *x = d;
  int f64 = x->compute == C_64F;
  *j = (job){*x, *(layout *)Al, *(layout *)Bl, *(layout *)Dl,
             f64 ? *(const double *)alpha : *(const float *)alpha,
             f64 ? *(const double *)beta : *(const float *)beta, A, B, C, D};
  return enqueue(stream, j);
}

long fake_cublaslt_live(void) { return g_live; }
