/* kiln_rt_cudnn.c — private to libkiln_rt: cuDNN for the executor's conv steps (kind 3),
 * opened with dlopen the first time a plan has one ($KILN_CUDNN, else libcudnn.so.9, else
 * libcudnn.so). Entry points and values are declared here as cudnn_graph.h / cudnn_ops.h
 * / cudnn_cnn.h define them; never includes cuDNN or CUDA headers. libc, libdl, pthreads. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_rt_cuda_api.h"

enum {
  DNN_DATA_FLOAT = 0, DNN_DATA_DOUBLE = 1, DNN_TENSOR_NCHW = 0, DNN_CROSS_CORRELATION = 1,
  DNN_DEFAULT_MATH = 0, DNN_FMA_MATH = 3, DNN_NOT_SUPPORTED = 3000, DNN_ALGO_COUNT = 8
};

typedef struct dnn_perf { /* cudnnConvolutionFwdAlgoPerf_t */
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int math_type;
  int reserved[3];
} dnn_perf;

typedef struct dnn_api {
  int (*create)(void **h);                                  /* cudnnCreate */
  int (*destroy)(void *h);                                  /* cudnnDestroy */
  int (*set_stream)(void *h, void *stream);                 /* cudnnSetStream */
  const char *(*error_string)(int s);                       /* cudnnGetErrorString */
  int (*tensor_create)(void **d);                           /* cudnnCreateTensorDescriptor */
  int (*tensor_destroy)(void *d);                           /* cudnnDestroyTensorDescriptor */
  int (*tensor_set)(void *d, int type, int nb, const int *dims, const int *strides); /* ...NdDescriptor */
  int (*filter_create)(void **d);                           /* cudnnCreateFilterDescriptor */
  int (*filter_destroy)(void *d);                           /* cudnnDestroyFilterDescriptor */
  int (*filter_set)(void *d, int type, int format, int nb, const int *dims); /* cudnnSetFilterNdDescriptor */
  int (*conv_create)(void **d);                             /* cudnnCreateConvolutionDescriptor */
  int (*conv_destroy)(void *d);                             /* cudnnDestroyConvolutionDescriptor */
  int (*conv_set)(void *d, int n, const int *pads, const int *strides, const int *dil, int mode,
                  int compute);                             /* cudnnSetConvolutionNdDescriptor */
  int (*conv_groups)(void *d, int groups);                  /* cudnnSetConvolutionGroupCount */
  int (*conv_math)(void *d, int math);                      /* cudnnSetConvolutionMathType */
  int (*algo_v7)(void *h, void *x, void *w, void *conv, void *y, int asked, int *got,
                 dnn_perf *out);                            /* cudnnGetConvolutionForwardAlgorithm_v7 */
  int (*ws_size)(void *h, void *x, void *w, void *conv, void *y, int algo,
                 size_t *n);                                /* cudnnGetConvolutionForwardWorkspaceSize */
  int (*forward)(void *h, const void *alpha, void *xd, const void *x, void *wd, const void *w,
                 void *conv, int algo, void *ws, size_t ws_n, const void *beta, void *yd,
                 void *y);                                  /* cudnnConvolutionForward */
} dnn_api;

static const rt_dl_sym k_syms[] = {
    {"cudnnCreate", offsetof(dnn_api, create)},
    {"cudnnDestroy", offsetof(dnn_api, destroy)},
    {"cudnnSetStream", offsetof(dnn_api, set_stream)},
    {"cudnnGetErrorString", offsetof(dnn_api, error_string)},
    {"cudnnCreateTensorDescriptor", offsetof(dnn_api, tensor_create)},
    {"cudnnDestroyTensorDescriptor", offsetof(dnn_api, tensor_destroy)},
    {"cudnnSetTensorNdDescriptor", offsetof(dnn_api, tensor_set)},
    {"cudnnCreateFilterDescriptor", offsetof(dnn_api, filter_create)},
    {"cudnnDestroyFilterDescriptor", offsetof(dnn_api, filter_destroy)},
    {"cudnnSetFilterNdDescriptor", offsetof(dnn_api, filter_set)},
    {"cudnnCreateConvolutionDescriptor", offsetof(dnn_api, conv_create)},
    {"cudnnDestroyConvolutionDescriptor", offsetof(dnn_api, conv_destroy)},
    {"cudnnSetConvolutionNdDescriptor", offsetof(dnn_api, conv_set)},
    {"cudnnSetConvolutionGroupCount", offsetof(dnn_api, conv_groups)},
    {"cudnnSetConvolutionMathType", offsetof(dnn_api, conv_math)},
    {"cudnnGetConvolutionForwardAlgorithm_v7", offsetof(dnn_api, algo_v7)},
    {"cudnnGetConvolutionForwardWorkspaceSize", offsetof(dnn_api, ws_size)},
    {"cudnnConvolutionForward", offsetof(dnn_api, forward)},
};

static struct {
  pthread_once_t once;
  dnn_api api;
  int ok;
  char why[400];
} dnn = {PTHREAD_ONCE_INIT, {0}, 0, ""};

/* $KILN_CUDNN, else libcudnn.so.9, else libcudnn.so; it stays loaded for the process. */
static void open_cudnn(void) {
  static const char *const names[] = {"libcudnn.so.9", "libcudnn.so"};
  dnn.ok = rt_dl_open_table("KILN_CUDNN", names, sizeof names / sizeof names[0], k_syms,
                            sizeof k_syms / sizeof k_syms[0], &dnn.api, "cuDNN",
                            "the plan has conv steps", dnn.why, sizeof dnn.why, NULL) == 0;
}

int rt_dnn_open(char *why, size_t n) {
  pthread_once(&dnn.once, open_cudnn);
  if (!dnn.ok) snprintf(why, n, "%s", dnn.why);
  return dnn.ok ? 0 : -1;
}

void rt_dnn_error(int status, char *out, size_t n) {
  const char *s = dnn.ok ? dnn.api.error_string(status) : NULL;
  if (s && *s) snprintf(out, n, "%s", s);
  else snprintf(out, n, "cudnnStatus %d", status);
}

int rt_dnn_handle(void **h, void *stream, const char **call) {
  *call = "cudnnCreate";
  int r = dnn.api.create(h);
  if (r) {
    *h = NULL;
    return r;
  }
  *call = "cudnnSetStream";
  if (stream && (r = dnn.api.set_stream(*h, stream))) {
    dnn.api.destroy(*h);
    *h = NULL;
  }
  return r;
}

void rt_dnn_handle_destroy(void *h) {
  if (h) dnn.api.destroy(h);
}

/* Packed row-major strides of dims[0..nb). */
static void packed(const int *dims, int nb, int *strides) {
  int s = 1;
  for (int i = nb - 1; i >= 0; i--) {
    strides[i] = s;
    s *= dims[i];
  }
}

/* x, w, y and the convolution described; a 1-D conv as a 2-D one of height 1 (cuDNN's
 * tensors have 4 or 5 dims). */
static int describe(const rt_dnn_geom *g, rt_dnn_conv *c, const char **call) {
  int sp = g->spatial == 1 ? 2 : g->spatial, off = sp - g->spatial, nb = sp + 2;
  int xd[5] = {g->n, g->c, 1, 1, 1}, wd[5] = {g->k, g->c / g->groups, 1, 1, 1}, yd[5] = {g->n, g->k, 1, 1, 1};
  int pad[3] = {0, 0, 0}, str[3] = {1, 1, 1}, dil[3] = {1, 1, 1}, xs[5], ys[5];
  for (int i = 0; i < g->spatial; i++) {
    xd[2 + off + i] = g->in[i], wd[2 + off + i] = g->filter[i], yd[2 + off + i] = g->out[i];
    pad[off + i] = g->pads[i], str[off + i] = g->strides[i], dil[off + i] = g->dilations[i];
  }
  packed(xd, nb, xs);
  packed(yd, nb, ys);
  int type = g->f64 ? DNN_DATA_DOUBLE : DNN_DATA_FLOAT, r;
  if ((*call = "cudnnCreateTensorDescriptor", r = dnn.api.tensor_create(&c->x))) return c->x = NULL, r;
  if ((r = dnn.api.tensor_create(&c->y))) return c->y = NULL, r;
  if ((*call = "cudnnCreateFilterDescriptor", r = dnn.api.filter_create(&c->w))) return c->w = NULL, r;
  if ((*call = "cudnnCreateConvolutionDescriptor", r = dnn.api.conv_create(&c->conv))) return c->conv = NULL, r;
  if ((*call = "cudnnSetTensorNdDescriptor", r = dnn.api.tensor_set(c->x, type, nb, xd, xs))) return r;
  if ((r = dnn.api.tensor_set(c->y, type, nb, yd, ys))) return r;
  if ((*call = "cudnnSetFilterNdDescriptor", r = dnn.api.filter_set(c->w, type, DNN_TENSOR_NCHW, nb, wd))) return r;
  if ((*call = "cudnnSetConvolutionNdDescriptor",
       r = dnn.api.conv_set(c->conv, sp, pad, str, dil, DNN_CROSS_CORRELATION, type)))
    return r;
  if ((*call = "cudnnSetConvolutionGroupCount", r = dnn.api.conv_groups(c->conv, g->groups))) return r;
  /* f32 never on TF32 tensor cores: results must match the interpreter within 1e-5 */
  *call = "cudnnSetConvolutionMathType";
  return dnn.api.conv_math(c->conv, DNN_FMA_MATH);
}

/* The first algorithm cuDNN ranks that works (one computing in plain FMA math first). */
static int pick_algo(void *h, rt_dnn_conv *c, const char **call) {
  dnn_perf perf[DNN_ALGO_COUNT];
  int got = 0, pick = -1;
  memset(perf, 0, sizeof perf);
  *call = "cudnnGetConvolutionForwardAlgorithm_v7";
  int r = dnn.api.algo_v7(h, c->x, c->w, c->conv, c->y, DNN_ALGO_COUNT, &got, perf);
  if (r) return r;
  if (got > DNN_ALGO_COUNT) got = DNN_ALGO_COUNT;
  for (int i = 0; i < got && pick < 0; i++)
    if (perf[i].status == 0 && (perf[i].math_type == DNN_DEFAULT_MATH || perf[i].math_type == DNN_FMA_MATH))
      pick = i;
  for (int i = 0; i < got && pick < 0; i++)
    if (perf[i].status == 0) pick = i;
  if (pick < 0) return DNN_NOT_SUPPORTED;
  c->algo = perf[pick].algo;
  *call = "cudnnGetConvolutionForwardWorkspaceSize";
  return dnn.api.ws_size(h, c->x, c->w, c->conv, c->y, c->algo, &c->workspace);
}

int rt_dnn_prepare(void *h, const rt_dnn_geom *g, rt_dnn_conv *c, const char **call) {
  memset(c, 0, sizeof *c);
  c->f64 = g->f64;
  int r = describe(g, c, call);
  return r ? r : pick_algo(h, c, call);
}

void rt_dnn_release(rt_dnn_conv *c) {
  if (!c || !dnn.ok) return;
  if (c->x) dnn.api.tensor_destroy(c->x);
  if (c->y) dnn.api.tensor_destroy(c->y);
  if (c->w) dnn.api.filter_destroy(c->w);
  if (c->conv) dnn.api.conv_destroy(c->conv);
  memset(c, 0, sizeof *c);
}

int rt_dnn_forward(void *h, const rt_dnn_conv *c, rt_cuptr x, rt_cuptr w, rt_cuptr y, rt_cuptr ws,
                   size_t ws_n) {
  static const float one_f = 1.0f, zero_f = 0.0f;
  static const double one_d = 1.0, zero_d = 0.0;
  const void *alpha = c->f64 ? (const void *)&one_d : (const void *)&one_f;
  const void *beta = c->f64 ? (const void *)&zero_d : (const void *)&zero_f;
  return dnn.api.forward(h, alpha, c->x, (const void *)(uintptr_t)x, c->w, (const void *)(uintptr_t)w,
                         c->conv, c->algo, ws_n ? (void *)(uintptr_t)ws : NULL, ws_n, beta, c->y,
                         (void *)(uintptr_t)y);
}
