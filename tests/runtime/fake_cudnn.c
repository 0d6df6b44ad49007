/* fake_cudnn.c — a stand-in for libcudnn in tests without a GPU: cudnnConvolutionForward
 * really computes y = alpha conv(x, w) + beta y (cross-correlation, zero padding, groups,
 * strides, dilations; 4-D and 5-D NCHW tensors, so 1-3 spatial dims as the runtime maps
 * them) on host memory (the fake driver's device memory is host memory), accumulating in
 * the compute type, f32 and f64. Descriptors that disagree (types, channels, output dims
 * that are not the conv formula's, strides that are not packed) are
 * CUDNN_STATUS_BAD_PARAM, as cuDNN answers. Work goes on the handle's stream through the
 * fake driver's fake_cuda_enqueue, so stream capture records it. Test code: plain malloc;
 * never linked into libkiln_rt. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_enqueue.h"

enum { S_OK = 0, S_NOT_INIT = 1001, S_BAD = 2000, S_NOT_SUPPORTED = 3000, S_ALLOC = 4003 };
enum { D_FLOAT = 0, D_DOUBLE = 1, MAX_NB = 5 };

typedef struct tensor {
  int type, nb, dims[MAX_NB], strides[MAX_NB];
} tensor;

typedef struct filter {
  int type, format, nb, dims[MAX_NB];
} filter;

typedef struct conv {
  int n, pads[3], strides[3], dil[3], mode, compute, groups, math;
} conv;

typedef struct handle {
  void *stream;
} handle;

typedef struct perf {
  int algo, status;
  float time;
  size_t memory;
  int determinism, math_type, reserved[3];
} perf;

int cudnnCreate(void **h);
int cudnnDestroy(void *h);
int cudnnSetStream(void *h, void *stream);
const char *cudnnGetErrorString(int s);
int cudnnCreateTensorDescriptor(void **d);
int cudnnDestroyTensorDescriptor(void *d);
int cudnnSetTensorNdDescriptor(void *d, int type, int nb, const int *dims, const int *strides);
int cudnnCreateFilterDescriptor(void **d);
int cudnnDestroyFilterDescriptor(void *d);
int cudnnSetFilterNdDescriptor(void *d, int type, int format, int nb, const int *dims);
int cudnnCreateConvolutionDescriptor(void **d);
int cudnnDestroyConvolutionDescriptor(void *d);
int cudnnSetConvolutionNdDescriptor(void *d, int n, const int *pads, const int *strides, const int *dil,
                                    int mode, int compute);
int cudnnSetConvolutionGroupCount(void *d, int groups);
int cudnnSetConvolutionMathType(void *d, int math);
int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int asked, int *got,
                                           perf *out);
int cudnnGetConvolutionForwardWorkspaceSize(void *h, void *x, void *w, void *c, void *y, int algo, size_t *n);
int cudnnConvolutionForward(void *h, const void *alpha, void *xd, const void *x, void *wd, const void *w,
                            void *cd, int algo, void *ws, size_t ws_n, const void *beta, void *yd, void *y);
long fake_cudnn_live(void);

static long g_live; /* handles and descriptors */

static int make(void **out, size_t n) {
  if (!out) return S_BAD;
  *out = calloc(1, n);
  if (!*out) return S_ALLOC;
  g_live++;
  return S_OK;
}

static int drop(void *p) {
  if (!p) return S_BAD;
  free(p);
  g_live--;
  return S_OK;
}

int cudnnCreate(void **h) { return make(h, sizeof(handle)); }
int cudnnDestroy(void *h) { return h ? drop(h) : S_NOT_INIT; }

int cudnnSetStream(void *h, void *stream) {
  if (!h) return S_NOT_INIT;
  ((handle *)h)->stream = stream;
  return S_OK;
}

const char *cudnnGetErrorString(int s) {
  switch (s) {
  case S_OK: return "CUDNN_STATUS_SUCCESS";
  case S_NOT_INIT: return "CUDNN_STATUS_NOT_INITIALIZED";
  case S_BAD: return "CUDNN_STATUS_BAD_PARAM";
  case S_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
  case S_ALLOC: return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

int cudnnCreateTensorDescriptor(void **d) { return make(d, sizeof(tensor)); }
int cudnnDestroyTensorDescriptor(void *d) { return drop(d); }
int cudnnCreateFilterDescriptor(void **d) { return make(d, sizeof(filter)); }
int cudnnDestroyFilterDescriptor(void *d) { return drop(d); }
int cudnnCreateConvolutionDescriptor(void **d) { return make(d, sizeof(conv)); }
int cudnnDestroyConvolutionDescriptor(void *d) { return drop(d); }

int cudnnSetTensorNdDescriptor(void *d, int type, int nb, const int *dims, const int *strides) {
  tensor *t = d;
  if (!t || (type != D_FLOAT && type != D_DOUBLE) || nb < 4 || nb > MAX_NB || !dims || !strides) return S_BAD;
  t->type = type, t->nb = nb;
  for (int i = 0; i < nb; i++) {
    if (dims[i] < 1 || strides[i] < 1) return S_BAD;
    t->dims[i] = dims[i], t->strides[i] = strides[i];
  }
  return S_OK;
}

int cudnnSetFilterNdDescriptor(void *d, int type, int format, int nb, const int *dims) {
  filter *f = d;
  if (!f || (type != D_FLOAT && type != D_DOUBLE) || format != 0 || nb < 4 || nb > MAX_NB || !dims) return S_BAD;
  f->type = type, f->format = format, f->nb = nb;
  for (int i = 0; i < nb; i++) {
    if (dims[i] < 1) return S_BAD;
    f->dims[i] = dims[i];
  }
  return S_OK;
}

int cudnnSetConvolutionNdDescriptor(void *d, int n, const int *pads, const int *strides, const int *dil,
                                    int mode, int compute) {
  conv *c = d;
  if (!c || n < 2 || n > 3 || (mode != 0 && mode != 1) || (compute != D_FLOAT && compute != D_DOUBLE)) return S_BAD;
  c->n = n, c->mode = mode, c->compute = compute, c->groups = 1;
  for (int i = 0; i < n; i++) {
    if (pads[i] < 0 || strides[i] < 1 || dil[i] < 1) return S_BAD;
    c->pads[i] = pads[i], c->strides[i] = strides[i], c->dil[i] = dil[i];
  }
  return S_OK;
}

int cudnnSetConvolutionGroupCount(void *d, int groups) {
  if (!d || groups < 1) return S_BAD;
  ((conv *)d)->groups = groups;
  return S_OK;
}

int cudnnSetConvolutionMathType(void *d, int math) {
  if (!d || math < 0 || math > 3) return S_BAD;
  ((conv *)d)->math = math;
  return S_OK;
}

static int packed(const tensor *t) {
  int s = 1;
  for (int i = t->nb - 1; i >= 0; i--) {
    if (t->strides[i] != s) return 0;
    s *= t->dims[i];
  }
  return 1;
}

/* The descriptors agree: types, ranks, channels and groups, y's dims the conv formula's.
 * The kiln runtime always asks for cross-correlation in FMA math (never TF32). */
static int check(const tensor *x, const filter *w, const conv *c, const tensor *y) {
  int nb = x->nb, sp = nb - 2;
  if (w->nb != nb || y->nb != nb || c->n != sp) return S_BAD;
  if (x->type != w->type || x->type != y->type || x->type != c->compute) return S_BAD;
  if (c->mode != 1 || c->math != 3) return S_NOT_SUPPORTED;
  if (!packed(x) || !packed(y)) return S_NOT_SUPPORTED;
  if (x->dims[1] % c->groups || w->dims[0] % c->groups || w->dims[1] * c->groups != x->dims[1]) return S_BAD;
  if (y->dims[0] != x->dims[0] || y->dims[1] != w->dims[0]) return S_BAD;
  for (int i = 0; i < sp; i++) {
    long span = (long)x->dims[2 + i] + 2L * c->pads[i] - (long)c->dil[i] * (w->dims[2 + i] - 1) - 1;
    if (span < 0 || y->dims[2 + i] != span / c->strides[i] + 1) return S_BAD;
  }
  return S_OK;
}

int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int asked, int *got,
                                           perf *out) {
  if (!h) return S_NOT_INIT;
  if (!x || !w || !c || !y || asked < 1 || !got || !out) return S_BAD;
  int s = check(x, w, c, y);
  if (s) return s;
  memset(out, 0, (size_t)asked * sizeof *out);
  out[0].algo = 1; /* IMPLICIT_PRECOMP_GEMM */
  out[0].status = S_NOT_SUPPORTED; /* the runtime must skip a failed ranking */
  *got = 1;
  if (asked > 1) {
    out[1].algo = 0; /* IMPLICIT_GEMM */
    out[1].math_type = 3;
    *got = 2;
  }
  return S_OK;
}

int cudnnGetConvolutionForwardWorkspaceSize(void *h, void *x, void *w, void *c, void *y, int algo, size_t *n) {
  if (!h) return S_NOT_INIT;
  if (!x || !w || !c || !y || !n || algo != 0) return S_BAD;
  *n = 512;
  return S_OK;
}

typedef struct job {
  tensor x, y;
  filter w;
  conv c;
  double alpha, beta;
  const void *X, *W;
  void *Y;
} job;

static double get(const void *p, int f64, int64_t i) {
  return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

/* dims of a 4-D descriptor as 5-D (a leading spatial 1), so one loop covers 2-D and 3-D. */
static void as5(const int *d, int nb, int *out) {
  out[0] = d[0], out[1] = d[1], out[2] = nb == 4 ? 1 : d[2];
  out[3] = d[nb - 2], out[4] = d[nb - 1];
}

/* One output element: the sum over its group's channels and the filter taps. */
static double point(const job *j, const int *xd, const int *wd, int64_t b, int64_t m, const int *o) {
  int f64 = j->c.compute == D_DOUBLE, sp = j->x.nb - 2, off = 3 - sp;
  int cg = wd[1], mg = j->w.dims[0] / j->c.groups;
  int64_t g = m / mg;
  double acc = 0;
  float accf = 0;
  for (int ci = 0; ci < cg; ci++)
    for (int t0 = 0; t0 < wd[2]; t0++)
      for (int t1 = 0; t1 < wd[3]; t1++)
        for (int t2 = 0; t2 < wd[4]; t2++) {
          int tap[3] = {t0, t1, t2}, pos[3];
          int inside = 1;
          for (int i = 0; i < 3; i++) {
            int k = i - off; /* index into the conv's spatial arrays, < 0 for the padding dim */
            pos[i] = k < 0 ? o[i] : o[i] * j->c.strides[k] - j->c.pads[k] + tap[i] * j->c.dil[k];
            inside = inside && pos[i] >= 0 && pos[i] < xd[2 + i];
          }
          if (!inside) continue;
          int64_t xi = (((b * xd[1] + g * cg + ci) * xd[2] + pos[0]) * xd[3] + pos[1]) * xd[4] + pos[2];
          int64_t wi = (((m * wd[1] + ci) * wd[2] + t0) * wd[3] + t1) * wd[4] + t2;
          double xv = get(j->X, f64, xi), wv = get(j->W, f64, wi);
          if (f64) acc += xv * wv;
          else accf += (float)xv * (float)wv;
        }
  return f64 ? acc : (double)accf;
}

static void run_job(void *arg) {
  const job *j = arg;
  int f64 = j->c.compute == D_DOUBLE, xd[5], wd[5], yd[5];
  as5(j->x.dims, j->x.nb, xd);
  as5(j->w.dims, j->w.nb, wd);
  as5(j->y.dims, j->y.nb, yd);
  int64_t idx = 0;
  for (int64_t b = 0; b < yd[0]; b++)
    for (int64_t m = 0; m < yd[1]; m++)
      for (int o0 = 0; o0 < yd[2]; o0++)
        for (int o1 = 0; o1 < yd[3]; o1++)
          for (int o2 = 0; o2 < yd[4]; o2++, idx++) {
            const int o[3] = {o0, o1, o2};
            double v = j->alpha * point(j, xd, wd, b, m, o);
            if (j->beta != 0) v += j->beta * get(j->Y, f64, idx);
            if (f64) ((double *)j->Y)[idx] = v;
            else ((float *)j->Y)[idx] = (float)v;
          }
}

/* In stream order through the stand-in driver (fake_enqueue.h); the driver failing to
 * queue it is an allocation failure. */
static int enqueue(void *stream, job *j) {
  return fake_enqueue(stream, run_job, j) ? S_ALLOC : S_OK;
}

int cudnnConvolutionForward(void *h, const void *alpha, void *xd, const void *x, void *wd, const void *w,
                            void *cd, int algo, void *ws, size_t ws_n, const void *beta, void *yd, void *y) {
  if (!h) return S_NOT_INIT;
  if (!alpha || !beta || !xd || !wd || !cd || !yd || !x || !w || !y || algo != 0) return S_BAD;
  if (ws_n < 512 || !ws) return S_BAD;
  int s = check(xd, wd, cd, yd);
  if (s) return s;
  job *j = malloc(sizeof *j);
  if (!j) return S_ALLOC;
  const conv *c = cd;
  int f64 = c->compute == D_DOUBLE;
  *j = (job){*(tensor *)xd, *(tensor *)yd, *(filter *)wd, *c,
             f64 ? *(const double *)alpha : *(const float *)alpha,
             f64 ? *(const double *)beta : *(const float *)beta, x, w, y};
  return enqueue(((handle *)h)->stream, j);
}

long fake_cudnn_live(void) { return g_live; }
