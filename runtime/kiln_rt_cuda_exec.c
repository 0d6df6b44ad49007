/* kiln_rt_cuda_exec.c — the executor of CUDA artifacts (Plan.target "cuda"): validates
 * the plan's CUDA part as untrusted input, opens the device (driver from kiln_rt_cuda.c,
 * cuBLASLt with dlopen, cuDNN through kiln_rt_cudnn.c when there are conv steps), loads
 * the image for the device's architecture, and runs the schedule on a context's stream:
 * CPU steps through the code section's kiln_step, CUDA steps as launches, cuBLASLt GEMMs
 * and cuDNN convolutions (replayed as CUDA graphs after the first run), transfers as
 * copies. Never includes cuda.h or links CUDA; libc, libdl, pthreads only. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_rt_cuda_api.h"
#include "kiln_rt_internal.h"

/* ---------------------------------------------------------------- cuBLASLt ------ */
/* Entry points and values as cublasLt.h / cublas_api.h / library_types.h define them. */
enum {
  LT_COMPUTE_32F = 68, LT_COMPUTE_64F = 70, LT_R_32F = 0, LT_R_64F = 1,
  LT_OP_N = 0, LT_OP_T = 1,
  LT_DESC_TRANSA = 3, LT_DESC_TRANSB = 4, LT_DESC_EPILOGUE = 7, LT_DESC_BIAS_POINTER = 8,
  LT_EPILOGUE_DEFAULT = 1, LT_EPILOGUE_RELU = 2, LT_EPILOGUE_BIAS = 4, LT_EPILOGUE_RELU_BIAS = 6,
  LT_LAYOUT_BATCH_COUNT = 5, LT_LAYOUT_BATCH_OFFSET = 6,
  LT_PREF_MAX_WORKSPACE = 1, LT_PREF_ALIGN_A = 5, LT_PREF_ALIGN_B = 6, LT_PREF_ALIGN_C = 7,
  LT_PREF_ALIGN_D = 8
};
#define LT_WORKSPACE_MAX ((uint64_t)32 << 20)

typedef struct lt_algo {
  uint64_t data[8];
} lt_algo;

typedef struct lt_heuristic { /* cublasLtMatmulHeuristicResult_t */
  lt_algo algo;
  size_t workspace;
  int state;
  float waves;
  int reserved[4];
} lt_heuristic;

typedef struct lt_api {
  int (*create)(void **h);
  int (*destroy)(void *h);
  int (*desc_create)(void **d, int compute, int scale);
  int (*desc_destroy)(void *d);
  int (*desc_set)(void *d, int attr, const void *buf, size_t n);
  int (*layout_create)(void **l, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*layout_destroy)(void *l);
  int (*layout_set)(void *l, int attr, const void *buf, size_t n);
  int (*pref_create)(void **p);
  int (*pref_destroy)(void *p);
  int (*pref_set)(void *p, int attr, const void *buf, size_t n);
  int (*heuristic)(void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int asked,
                   lt_heuristic *out, int *got);
  int (*matmul)(void *h, void *desc, const void *alpha, const void *a, void *al, const void *b,
                void *bl, const void *beta, const void *c, void *cl, void *d, void *dl,
                const lt_algo *algo, void *ws, size_t ws_n, void *stream);
  const char *(*status_name)(int s); /* optional */
} lt_api;

static const rt_dl_sym k_lt_syms[] = {
    {"cublasLtCreate", offsetof(lt_api, create)},
    {"cublasLtDestroy", offsetof(lt_api, destroy)},
    {"cublasLtMatmulDescCreate", offsetof(lt_api, desc_create)},
    {"cublasLtMatmulDescDestroy", offsetof(lt_api, desc_destroy)},
    {"cublasLtMatmulDescSetAttribute", offsetof(lt_api, desc_set)},
    {"cublasLtMatrixLayoutCreate", offsetof(lt_api, layout_create)},
    {"cublasLtMatrixLayoutDestroy", offsetof(lt_api, layout_destroy)},
    {"cublasLtMatrixLayoutSetAttribute", offsetof(lt_api, layout_set)},
    {"cublasLtMatmulPreferenceCreate", offsetof(lt_api, pref_create)},
    {"cublasLtMatmulPreferenceDestroy", offsetof(lt_api, pref_destroy)},
    {"cublasLtMatmulPreferenceSetAttribute", offsetof(lt_api, pref_set)},
    {"cublasLtMatmulAlgoGetHeuristic", offsetof(lt_api, heuristic)},
    {"cublasLtMatmul", offsetof(lt_api, matmul)},
};

static struct {
  pthread_once_t once;
  lt_api api;
  int ok;
  char why[400];
} lt = {PTHREAD_ONCE_INIT, {0}, 0, ""};

/* $KILN_CUBLASLT, else the sonames of CUDA 13 and 12, else the unversioned name; the
 * library stays loaded for the process (as the driver does). */
static void open_cublaslt(void) {
  static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                                      "/usr/local/cuda/lib64/libcublasLt.so.13"};
  void *h = NULL;
  if (rt_dl_open_table("KILN_CUBLASLT", names, sizeof names / sizeof names[0], k_lt_syms,
                       sizeof k_lt_syms / sizeof k_lt_syms[0], &lt.api, "cuBLASLt",
                       "the plan has GEMM steps", lt.why, sizeof lt.why, &h))
    return;
  void *sn = dlsym(h, "cublasLtGetStatusName");
  if (sn) memcpy(&lt.api.status_name, &sn, sizeof sn);
  lt.ok = 1;
}

static void lt_result(int s, char *out, size_t n) {
  const char *name = lt.api.status_name ? lt.api.status_name(s) : NULL;
  if (name) snprintf(out, n, "%s", name);
  else snprintf(out, n, "cublasStatus %d", s);
}

/* ---------------------------------------------------------------- structures ---- */

enum { SIDE_CPU = 0, SIDE_CUDA = 1 };
/* Per io index: which side reads or writes it, and whether a library call (a cuBLASLt
 * GEMM, a cuDNN conv) addresses it directly (then it always goes through its fixed
 * staging buffer, so a captured graph stays valid). */
enum { IO_DEV = 1, IO_HOST = 2, IO_GEMM = 4 };

typedef struct rt_gemm {
  int step;              /* index in cuda_steps */
  void *la, *lb, *ld;    /* cuBLASLt layouts: its A (our B), its B (our A), C = D */
  lt_algo algo;
  size_t workspace;
} rt_gemm;

struct rt_cuda_model {
  const rt_cu_api *cu;
  int ordinal, dev;       /* cuda:N, and the driver's CUdevice */
  void *ctx;              /* the retained primary context; NULL until retained */
  void *module;
  void **fn;              /* per cuda step: its kernel or NULL */
  rt_cuptr error_word;    /* kiln_error; 0 without an image or when no kernel sets it */
  /* kiln_error is one word of the model's module, shared by its contexts: runs that zero
   * and read it hold this lock, so two threads' runs never mix their errors (only models
   * whose kernels can set it, i.e. integer division, serialize their runs). */
  pthread_mutex_t error_lock;
  int error_lock_ok;
  rt_cuptr weights;       /* the device copy; 0 until made */
  size_t cuda_arena;      /* bytes of the device arena */
  void *lt_handle;
  rt_gemm *gemms;
  int n_gemms;
  int *gemm_of;           /* per cuda step: index in gemms or -1 */
  size_t workspace;       /* the most any GEMM's or conv's algorithm asked for */
  void *dnn_handle;       /* the model's cuDNN handle (algorithm choice only); NULL none */
  rt_dnn_conv *convs;
  int n_convs;
  int *conv_of;           /* per cuda step: index in convs or -1 */
  int n_io;
  unsigned char *io_flags;
  int *stretch_of;        /* per schedule unit: the stretch it starts, else -1 */
  int *stretch_end;       /* per stretch: the unit after its last */
  int n_stretches;
};

struct rt_cuda_ctx {
  void *stream;
  rt_cuptr arena, io_table, staging_block, workspace;
  rt_cuptr *dev_io;       /* per io index: this run's device pointer (the io table's host copy) */
  rt_cuptr *io_sent;      /* the table as last uploaded; io_sent_ok: valid (then equal runs skip the copy) */
  int io_sent_ok;
  rt_cuptr *staged;       /* per io index: its device staging buffer, 0 none */
  unsigned char *host_block;
  unsigned char **host_staged; /* per input: host staging (a CPU-side input given on the device) */
  void **descs;           /* per GEMM: its matmul descriptor (the bias pointer is this context's) */
  void *dnn;              /* cuDNN handle on this context's stream; NULL without conv steps */
  rt_cuptr (*gptr)[4];    /* per GEMM: a, b, d, bias */
  void **exec;            /* per stretch: the instantiated graph, NULL none */
  signed char *mode;      /* per stretch: 0 not captured yet, 1 captured, -1 eager for good */
  int graphs;             /* KILN_CUDA_GRAPHS is not 0 */
  long runs;
  int pending_host;       /* a DtoH copy may still be writing host memory */
  int late_copies;        /* finish copied host values to the device */
  unsigned error_host;
  kiln_rt_status broken;  /* a device fault: every later run answers it */
  char broken_msg[RT_ERR_BYTES];
};

/* ---------------------------------------------------------------- plan checks --- */

static int parse_cuda_device(const char *s) {
  if (strncmp(s, "cuda:", 5) != 0 || !s[5]) return -1;
  int n = 0;
  for (const char *p = s + 5; *p; p++) {
    if (*p < '0' || *p > '9' || p - s > 8) return -1;
    n = n * 10 + (*p - '0');
  }
  return n <= 4095 ? n : -1;
}

/* SIDE_CPU, SIDE_CUDA, or -1 for any other string. */
static int side_of(const Kiln__Rt__Plan *p, const char *device) {
  if (strcmp(device, "cpu:0") == 0) return SIDE_CPU;
  return strcmp(device, p->cuda_device) == 0 ? SIDE_CUDA : -1;
}

static uint64_t arena_of(const kiln_rt_model *m, int side) {
  const Kiln__Rt__Plan *p = m->plan;
  if (side == SIDE_CPU) return p->arena_bytes;
  for (size_t i = 0; i < p->n_arenas; i++)
    if (strcmp(p->arenas[i]->device, p->cuda_device) == 0) return p->arenas[i]->bytes;
  return 0;
}

static size_t io_nbytes(const kiln_rt_model *m, int k) {
  return k < m->n_inputs ? m->inputs[k].nbytes : m->outputs[k - m->n_inputs].nbytes;
}

static const char *where_name(int w) {
  switch (w) {
  case KILN__RT__WHERE__WHERE_ARENA: return "arena";
  case KILN__RT__WHERE__WHERE_WEIGHTS: return "weights";
  case KILN__RT__WHERE__WHERE_IO: return "io";
  }
  return "none";
}

/* An operand inside its region on its side; *side gets the side. */
static kiln_rt_status check_operand(kiln_rt_model *m, const char *what, const Kiln__Rt__Operand *o,
                                    int *side) {
  const Kiln__Rt__Plan *p = m->plan;
  char esc[RT_ESC_BYTES];
  if (!o) return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: no operand", what);
  *side = side_of(p, o->device);
  if (*side < 0)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: device '%s' is neither cpu:0 nor %s", what,
                         rt_escape(o->device, esc), p->cuda_device);
  uint64_t limit = 0;
  switch (o->where) {
  case KILN__RT__WHERE__WHERE_ARENA: limit = arena_of(m, *side); break;
  case KILN__RT__WHERE__WHERE_WEIGHTS: limit = m->weights_bytes; break;
  case KILN__RT__WHERE__WHERE_IO: {
    int n_io = m->n_inputs + m->n_outputs;
    if (o->index < 0 || o->index >= n_io)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: io index %d out of range (%d inputs + outputs)",
                           what, (int)o->index, n_io);
    if (o->bytes != io_nbytes(m, o->index) || o->offset != 0)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: io %d with offset %llu and %llu bytes, "
                           "but the tensor has %zu bytes", what, (int)o->index,
                           (unsigned long long)o->offset, (unsigned long long)o->bytes,
                           io_nbytes(m, o->index));
    if (*side == SIDE_CPU && o->index >= m->n_inputs)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: io %d is an output, which cpu:0 never "
                           "addresses", what, (int)o->index);
    return KILN_RT_OK;
  }
  default:
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: where %d is not arena, weights or io", what,
                         (int)o->where);
  }
  if (o->bytes > limit || o->offset > limit - o->bytes)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: %s offset %llu + %llu bytes is past the %s %s "
                         "(%llu bytes)", what, where_name(o->where), (unsigned long long)o->offset,
                         (unsigned long long)o->bytes, o->device, where_name(o->where),
                         (unsigned long long)limit);
  return KILN_RT_OK;
}

/* Not the weights (shared by every context) nor a caller's input. */
static kiln_rt_status check_writable(kiln_rt_model *m, const char *what, const Kiln__Rt__Operand *o) {
  if (o->where == KILN__RT__WHERE__WHERE_WEIGHTS ||
      (o->where == KILN__RT__WHERE__WHERE_IO && o->index < m->n_inputs))
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: written, but it is %s %lld", what,
                         o->where == KILN__RT__WHERE__WHERE_WEIGHTS ? "in the weights at"
                                                                    : "the caller's input",
                         o->where == KILN__RT__WHERE__WHERE_WEIGHTS ? (long long)o->offset
                                                                    : (long long)o->index);
  return KILN_RT_OK;
}

static int bad_ident(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9')) return 1;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
      return 1;
  }
  return 0;
}

/* elements (batch-1)*stride + rows*cols must fit in the operand's bytes. */
static kiln_rt_status check_cover(kiln_rt_model *m, const char *what, const Kiln__Rt__Operand *o,
                                  int64_t batch, int64_t stride, int64_t rows, int64_t cols,
                                  size_t esize) {
  uint64_t need = 0, one = 0;
  if (__builtin_mul_overflow((uint64_t)rows, (uint64_t)cols, &one) ||
      __builtin_mul_overflow((uint64_t)(batch - 1), (uint64_t)stride, &need) ||
      __builtin_add_overflow(need, one, &need) || __builtin_mul_overflow(need, esize, &need) ||
      need > o->bytes)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: %lld batches of %lldx%lld at stride %lld do "
                         "not fit in its %llu bytes", what, (long long)batch, (long long)rows,
                         (long long)cols, (long long)stride, (unsigned long long)o->bytes);
  if (o->where != KILN__RT__WHERE__WHERE_IO && o->offset % esize)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: offset %llu is not aligned to %zu", what,
                         (unsigned long long)o->offset, esize);
  return KILN_RT_OK;
}

/* Two operands on one side sharing bytes: the same io tensor, or overlapping ranges of
 * the arena. */
static int operands_overlap(const Kiln__Rt__Operand *a, const Kiln__Rt__Operand *b) {
  if (a->where != b->where || a->bytes == 0 || b->bytes == 0) return 0;
  if (a->where == KILN__RT__WHERE__WHERE_IO) return a->index == b->index;
  return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

static kiln_rt_status check_gemm(kiln_rt_model *m, size_t i, const Kiln__Rt__CudaGemm *g) {
  char what[96];
  int side = 0;
  if (!g) return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: GEMM without its gemm record", i);
  if (g->dtype != KILN_RT_F32 && g->dtype != KILN_RT_F64)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: gemm dtype %d is not f32 (1) or f64 (2)",
                         i, (int)g->dtype);
  const int64_t lim = INT32_MAX;
  if (g->m < 1 || g->n < 1 || g->k < 1 || g->batch < 1 || g->m > lim || g->n > lim || g->k > lim ||
      g->batch > lim)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: gemm m %lld n %lld k %lld batch %lld "
                         "(each must be 1..%lld)", i, (long long)g->m, (long long)g->n,
                         (long long)g->k, (long long)g->batch, (long long)lim);
  if (g->stride_a < 0 || g->stride_b < 0 || g->stride_d < 0 || g->stride_a > (INT64_C(1) << 40) ||
      g->stride_b > (INT64_C(1) << 40) || g->stride_d > (INT64_C(1) << 40))
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: gemm strides %lld, %lld, %lld out of "
                         "range", i, (long long)g->stride_a, (long long)g->stride_b,
                         (long long)g->stride_d);
  if (g->batch > 1 && g->stride_d < g->m * g->n)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: gemm stride_d %lld makes the %lld "
                         "batches of D (%lldx%lld) overlap", i, (long long)g->stride_d,
                         (long long)g->batch, (long long)g->m, (long long)g->n);
  size_t es = kiln_rt_dtype_size(g->dtype);
  const Kiln__Rt__Operand *ops[4] = {g->a, g->b, g->d, g->has_bias ? g->bias : NULL};
  static const char *const names[4] = {"a", "b", "d", "bias"};
  for (int k = 0; k < 4; k++) {
    if (k == 3 && !g->has_bias) break;
    snprintf(what, sizeof what, "cuda step %zu gemm.%s", i, names[k]);
    kiln_rt_status st = check_operand(m, what, ops[k], &side);
    if (!st && side != SIDE_CUDA)
      st = rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: on %s, not %s", what, ops[k]->device,
                         m->plan->cuda_device);
    if (st) return st;
  }
  snprintf(what, sizeof what, "cuda step %zu gemm.d", i);
  kiln_rt_status st = check_writable(m, what, g->d);
  snprintf(what, sizeof what, "cuda step %zu gemm.a", i);
  if (!st) st = check_cover(m, what, g->a, g->batch, g->stride_a, g->m, g->k, es);
  snprintf(what, sizeof what, "cuda step %zu gemm.b", i);
  if (!st) st = check_cover(m, what, g->b, g->batch, g->stride_b, g->k, g->n, es);
  snprintf(what, sizeof what, "cuda step %zu gemm.d", i);
  if (!st) st = check_cover(m, what, g->d, g->batch, g->stride_d, g->m, g->n, es);
  snprintf(what, sizeof what, "cuda step %zu gemm.bias", i);
  if (!st && g->has_bias) st = check_cover(m, what, g->bias, 1, 0, 1, g->n, es);
  for (int k = 0; k < 4 && !st; k++) /* cuBLASLt reads A, B and the bias while it writes D */
    if (k != 2 && ops[k] && operands_overlap(g->d, ops[k]))
      st = rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: gemm.d overlaps gemm.%s", i, names[k]);
  return st;
}

/* ---- conv records (kind 3): every number bounded, the output dims the conv formula's ---- */

#define CONV_DIM_MAX INT32_MAX /* cuDNN takes int dims, strides and element offsets */

static kiln_rt_status conv_field(kiln_rt_model *m, size_t i, const char *field, int d, int64_t v,
                                 int64_t lo, const char *why) {
  char at[16] = "";
  if (d >= 0) snprintf(at, sizeof at, "[%d]", d);
  return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu conv.%s%s: %lld %s", i, field, at,
                       (long long)v, why ? why : lo == 0 ? "(must be 0..2^31-1)" : "(must be 1..2^31-1)");
}

static kiln_rt_status conv_scalars(kiln_rt_model *m, size_t i, const Kiln__Rt__CudaConv *v) {
  if (v->dtype != KILN_RT_F32 && v->dtype != KILN_RT_F64)
    return conv_field(m, i, "dtype", -1, v->dtype, 1, "is not f32 (1) or f64 (2)");
  if (v->spatial < 1 || v->spatial > 3) return conv_field(m, i, "spatial", -1, v->spatial, 1, "(must be 1..3)");
  const int64_t vals[4] = {v->n, v->c, v->k, v->groups};
  static const char *const names[4] = {"n", "c", "k", "groups"};
  for (int a = 0; a < 4; a++)
    if (vals[a] < 1 || vals[a] > CONV_DIM_MAX) return conv_field(m, i, names[a], -1, vals[a], 1, NULL);
  if (v->c % v->groups) return conv_field(m, i, "c", -1, v->c, 1, "is not a multiple of groups");
  if (v->k % v->groups) return conv_field(m, i, "k", -1, v->k, 1, "is not a multiple of groups");
  const size_t counts[6] = {v->n_in_dims, v->n_filter_dims, v->n_out_dims, v->n_pads, v->n_strides,
                            v->n_dilations};
  static const char *const arrays[6] = {"in_dims", "filter_dims", "out_dims", "pads", "strides", "dilations"};
  for (int a = 0; a < 6; a++)
    if (counts[a] != (size_t)v->spatial)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu conv.%s: %zu entries for %d spatial dims",
                           i, arrays[a], counts[a], (int)v->spatial);
  return KILN_RT_OK;
}

/* Each spatial dim in range, and out = (in + 2 pad - dil (filter - 1) - 1) / stride + 1. */
static kiln_rt_status conv_dims(kiln_rt_model *m, size_t i, const Kiln__Rt__CudaConv *v) {
  for (int d = 0; d < v->spatial; d++) {
    const int64_t vals[6] = {v->in_dims[d], v->filter_dims[d], v->out_dims[d], v->pads[d], v->strides[d],
                             v->dilations[d]};
    static const char *const names[6] = {"in_dims", "filter_dims", "out_dims", "pads", "strides", "dilations"};
    for (int a = 0; a < 6; a++) {
      int64_t lo = a == 3 ? 0 : 1;
      if (vals[a] < lo || vals[a] > CONV_DIM_MAX) return conv_field(m, i, names[a], d, vals[a], lo, NULL);
    }
    int64_t span = vals[0] + 2 * vals[3] - vals[5] * (vals[1] - 1) - 1; /* each < 2^31: no overflow */
    int64_t want = span < 0 ? 0 : span / vals[4] + 1;
    /* cuDNN computes the padded extent, the dilated filter and the last window in int */
    if (vals[0] + 2 * vals[3] > CONV_DIM_MAX || vals[5] * (vals[1] - 1) + 1 > CONV_DIM_MAX ||
        (vals[2] - 1) * vals[4] + vals[5] * (vals[1] - 1) + 1 > CONV_DIM_MAX)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu conv dim %d: in %lld, pad %lld, filter "
                           "%lld, dilation %lld, stride %lld reach past 2^31-1 (cuDNN's int)", i, d,
                           (long long)vals[0], (long long)vals[3], (long long)vals[1],
                           (long long)vals[5], (long long)vals[4]);
    if (vals[2] != want)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu conv.out_dims[%d]: %lld, but in %lld, "
                           "filter %lld, pad %lld, stride %lld and dilation %lld give %lld", i, d,
                           (long long)vals[2], (long long)vals[0], (long long)vals[1], (long long)vals[3],
                           (long long)vals[4], (long long)vals[5], (long long)want);
  }
  return KILN_RT_OK;
}

/* a * b * prod(dims) elements, each tensor under 2^31 elements (cuDNN's int strides). */
static int conv_numel(int64_t a, int64_t b, const int64_t *dims, int k, int64_t *out) {
  int64_t e = 0;
  if (__builtin_mul_overflow(a, b, &e)) return -1;
  for (int d = 0; d < k; d++)
    if (__builtin_mul_overflow(e, dims[d], &e)) return -1;
  *out = e;
  return e > CONV_DIM_MAX ? -1 : 0;
}

static kiln_rt_status conv_operands(kiln_rt_model *m, size_t i, const Kiln__Rt__CudaConv *v) {
  const Kiln__Rt__Operand *ops[3] = {v->x, v->w, v->y};
  static const char *const names[3] = {"x", "w", "y"};
  int64_t numel[3] = {0, 0, 0};
  int bad = conv_numel(v->n, v->c, v->in_dims, v->spatial, &numel[0]) ||
            conv_numel(v->k, v->c / v->groups, v->filter_dims, v->spatial, &numel[1]) ||
            conv_numel(v->n, v->k, v->out_dims, v->spatial, &numel[2]);
  if (bad)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu conv: a tensor of 2^31 or more elements "
                         "(cuDNN indexes with int)", i);
  size_t es = kiln_rt_dtype_size(v->dtype);
  char what[64];
  for (int a = 0; a < 3; a++) {
    int side = 0;
    snprintf(what, sizeof what, "cuda step %zu conv.%s", i, names[a]);
    kiln_rt_status st = check_operand(m, what, ops[a], &side);
    if (!st && side != SIDE_CUDA)
      st = rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: on %s, not %s", what, ops[a]->device, m->plan->cuda_device);
    if (!st && a == 2) st = check_writable(m, what, ops[a]);
    if (!st) st = check_cover(m, what, ops[a], 1, 0, 1, numel[a], es);
    if (st) return st;
  }
  for (int a = 0; a < 2; a++) /* cuDNN reads x and w while it writes y */
    if (operands_overlap(v->y, ops[a]))
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: conv.y overlaps conv.%s", i, names[a]);
  return KILN_RT_OK;
}

static kiln_rt_status check_conv(kiln_rt_model *m, size_t i, const Kiln__Rt__CudaConv *v) {
  if (!v) return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: conv without its conv record", i);
  kiln_rt_status st = conv_scalars(m, i, v);
  if (!st) st = conv_dims(m, i, v);
  if (!st) st = conv_operands(m, i, v);
  return st;
}

static kiln_rt_status check_cuda_steps(kiln_rt_model *m) {
  const Kiln__Rt__Plan *p = m->plan;
  char esc[RT_ESC_BYTES], esc2[RT_ESC_BYTES];
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    const Kiln__Rt__CudaStep *s = p->cuda_steps[i];
    if (s->kind < 1 || s->kind > 3)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu (node '%s'): kind %d is not 1 "
                           "(kernel), 2 (GEMM) or 3 (conv)", i, rt_escape(s->node, esc), (int)s->kind);
    if ((s->kind == 1 || s->kernel[0]) && bad_ident(s->kernel))
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu (node '%s'): kernel name '%s' is "
                           "not an identifier", i, rt_escape(s->node, esc2), rt_escape(s->kernel, esc));
    if (s->kernel[0] && (s->grid < 1 || s->grid > INT32_MAX || s->block < 1 || s->block > 1024))
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: grid %llu x block %u is out of "
                           "range (1..2^31-1 blocks of 1..1024 threads)", i,
                           (unsigned long long)s->grid, (unsigned)s->block);
    kiln_rt_status st = s->kind == 2 ? check_gemm(m, i, s->gemm) : s->kind == 3 ? check_conv(m, i, s->conv)
                                                                                 : KILN_RT_OK;
    if (st) return st;
  }
  return KILN_RT_OK;
}

/* CPU steps are numbered among the plan's steps not on the CUDA device. */
static size_t count_cpu_steps(const Kiln__Rt__Plan *p) {
  size_t n = 0;
  for (size_t i = 0; i < p->n_steps; i++) n += side_of(p, p->steps[i]->device) != SIDE_CUDA;
  return n;
}


static kiln_rt_status check_schedule(kiln_rt_model *m) {
  const Kiln__Rt__Plan *p = m->plan;
  size_t n_cpu = count_cpu_steps(p);
  char what[64];
  for (size_t i = 0; i < p->n_schedule; i++) {
    const Kiln__Rt__Unit *u = p->schedule[i];
    int s1 = 0, s2 = 0;
    kiln_rt_status st = KILN_RT_OK;
    switch (u->kind) {
    case KILN__RT__UNIT__KIND__UNIT_CPU_STEP:
      if (u->index < 0 || (size_t)u->index >= n_cpu)
        return rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: cpu step %d out of range "
                             "(%zu CPU steps)", i, (int)u->index, n_cpu);
      if (strcmp(p->entry, "kiln_step") != 0)
        return rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: a CPU step, but the plan's "
                             "entry is not 'kiln_step'", i);
      break;
    case KILN__RT__UNIT__KIND__UNIT_CUDA_STEP:
      if (u->index < 0 || (size_t)u->index >= p->n_cuda_steps)
        return rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: cuda step %d out of range "
                             "(%zu CUDA steps)", i, (int)u->index, p->n_cuda_steps);
      break;
    case KILN__RT__UNIT__KIND__UNIT_COPY:
      snprintf(what, sizeof what, "schedule unit %zu src", i);
      st = check_operand(m, what, u->src, &s1);
      snprintf(what, sizeof what, "schedule unit %zu dst", i);
      if (!st) st = check_operand(m, what, u->dst, &s2);
      if (!st) st = check_writable(m, what, u->dst);
      if (!st && u->src->bytes != u->dst->bytes)
        st = rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: copies %llu bytes into %llu",
                           i, (unsigned long long)u->src->bytes, (unsigned long long)u->dst->bytes);
      if (!st && s1 == s2 && operands_overlap(u->src, u->dst)) /* memcpy / DtoD of overlapping ranges */
        st = rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: the copy's source and "
                           "destination overlap on %s", i, s1 == SIDE_CPU ? "cpu:0" : p->cuda_device);
      if (st) return st;
      break;
    default:
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "schedule unit %zu: kind %d is not valid", i,
                           (int)u->kind);
    }
  }
  return KILN_RT_OK;
}

/* "sm_90" / "compute_90": the number after '_', and whether it is PTX; -1 otherwise. */
static int arch_number(const char *arch, int *ptx) {
  const char *d = NULL;
  if (strncmp(arch, "sm_", 3) == 0) d = arch + 3, *ptx = 0;
  else if (strncmp(arch, "compute_", 8) == 0) d = arch + 8, *ptx = 1;
  else return -1;
  int n = 0, digits = 0;
  for (; *d >= '0' && *d <= '9' && digits < 4; d++, digits++) n = n * 10 + (*d - '0');
  if (!digits || (*d && !((*d == 'a' || *d == 'f') && !d[1]))) return -1;
  return *d ? -2 - n : n; /* arch-specific ("sm_90a"): only for exactly that device */
}

static kiln_rt_status check_images(kiln_rt_model *m, const kart_section *code) {
  const Kiln__Rt__Plan *p = m->plan;
  char esc[RT_ESC_BYTES];
  int kernels = 0;
  for (size_t i = 0; i < p->n_cuda_steps; i++) kernels |= p->cuda_steps[i]->kernel[0] != 0;
  if (kernels && p->n_cuda_images == 0)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "the plan launches kernels but lists no cuda_images");
  if (p->n_cuda_images && !code)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "artifact has no code/cuda section for its %zu "
                         "cuda_images", p->n_cuda_images);
  for (size_t i = 0; i < p->n_cuda_images; i++) {
    const Kiln__Rt__CudaImage *im = p->cuda_images[i];
    int ptx = 0;
    if (arch_number(im->arch, &ptx) == -1 || ptx != (int)im->ptx)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda image %zu: arch '%s' is not sm_NN or "
                           "compute_NN%s", i, rt_escape(im->arch, esc), im->ptx ? " (PTX)" : "");
    if (im->size == 0 || im->size > code->size || im->offset > code->size - im->size)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda image %zu (%s): offset %llu + size %llu is "
                           "past the code/cuda section (%llu bytes)", i, im->arch,
                           (unsigned long long)im->offset, (unsigned long long)im->size,
                           (unsigned long long)code->size);
    if (im->sha256.len != 32)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda image %zu (%s): sha256 has %zu bytes, not 32",
                           i, im->arch, im->sha256.len);
    if (im->ptx && code->data[im->offset + im->size - 1] != 0)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda image %zu (%s): PTX does not end in a NUL",
                           i, im->arch);
  }
  return KILN_RT_OK;
}

static kiln_rt_status check_devices(kiln_rt_model *m) {
  const Kiln__Rt__Plan *p = m->plan;
  char esc[RT_ESC_BYTES], what[64];
  if (parse_cuda_device(p->cuda_device) < 0)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda_device '%s' is not cuda:N",
                         rt_escape(p->cuda_device, esc));
  for (size_t i = 0; i < p->n_arenas; i++) {
    const Kiln__Rt__DeviceArena *a = p->arenas[i];
    int side = side_of(p, a->device);
    if (side < 0)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "arena %zu: device '%s' is neither cpu:0 nor %s",
                           i, rt_escape(a->device, esc), p->cuda_device);
    for (size_t j = 0; j < i; j++)
      if (strcmp(p->arenas[j]->device, a->device) == 0)
        return rt_model_fail(m, KILN_RT_ERR_FORMAT, "arena %zu: a second arena for %s", i, a->device);
    if (a->bytes > RT_MAX_ARENA)
      return rt_model_fail(m, KILN_RT_ERR_LIMIT, "arena %zu (%s): %llu bytes is over the limit of "
                           "%llu", i, a->device, (unsigned long long)a->bytes,
                           (unsigned long long)RT_MAX_ARENA);
    if (side == SIDE_CPU && a->bytes != p->arena_bytes)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "arena %zu (cpu:0): %llu bytes, but arena_bytes "
                           "is %llu", i, (unsigned long long)a->bytes,
                           (unsigned long long)p->arena_bytes);
  }
  if (p->n_input_devices != p->n_inputs)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "plan has %zu input_devices for %zu inputs",
                         p->n_input_devices, p->n_inputs);
  for (size_t i = 0; i < p->n_input_devices; i++)
    if (side_of(p, p->input_devices[i]) < 0)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "input_devices[%zu]: '%s' is neither cpu:0 nor %s",
                           i, rt_escape(p->input_devices[i], esc), p->cuda_device);
  if (p->n_output_values != p->n_outputs)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "plan has %zu output_values for %zu outputs",
                         p->n_output_values, p->n_outputs);
  for (size_t j = 0; j < p->n_output_values; j++) {
    int side = 0;
    snprintf(what, sizeof what, "output_values[%zu]", j);
    kiln_rt_status st = check_operand(m, what, p->output_values[j], &side);
    if (st) return st;
    if (p->output_values[j]->bytes != m->outputs[j].nbytes)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "%s: %llu bytes, but output %zu has %zu", what,
                           (unsigned long long)p->output_values[j]->bytes, j, m->outputs[j].nbytes);
  }
  return KILN_RT_OK;
}

kiln_rt_status rt_cuda_check_plan(kiln_rt_model *m, const kart_section *code) {
  kiln_rt_status st = check_devices(m);
  if (!st) st = check_images(m, code);
  if (!st) st = check_cuda_steps(m);
  if (!st) st = check_schedule(m);
  return st;
}

/* ---------------------------------------------------------------- model open ---- */

static kiln_rt_status cu_fail(kiln_rt_model *m, kiln_rt_status st, int r, const char *what) {
  char name[96];
  rt_cu_result(r, name, sizeof name);
  if (r == RT_CU_ERROR_OUT_OF_MEMORY) st = KILN_RT_ERR_NOMEM;
  return rt_model_fail(m, st, "cuda:%d: %s failed: %s", m->cuda->ordinal, what, name);
}

static void mark_io(rt_cuda_model *cm, const Kiln__Rt__Operand *o, int gemm) {
  if (!o || o->where != KILN__RT__WHERE__WHERE_IO) return;
  cm->io_flags[o->index] |= (strcmp(o->device, "cpu:0") == 0 ? IO_HOST : IO_DEV) | (gemm ? IO_GEMM : 0);
}

/* Which side touches each io index; the stretches of consecutive CUDA units. */
static kiln_rt_status analyse(kiln_rt_model *m, rt_cuda_model *cm) {
  const Kiln__Rt__Plan *p = m->plan;
  cm->n_io = m->n_inputs + m->n_outputs;
  cm->io_flags = kiln_rt__calloc((size_t)cm->n_io + 1, 1);
  cm->stretch_of = kiln_rt__calloc(p->n_schedule + 1, sizeof *cm->stretch_of);
  cm->stretch_end = kiln_rt__calloc(p->n_schedule + 1, sizeof *cm->stretch_end);
  cm->gemm_of = kiln_rt__calloc(p->n_cuda_steps + 1, sizeof *cm->gemm_of);
  cm->conv_of = kiln_rt__calloc(p->n_cuda_steps + 1, sizeof *cm->conv_of);
  cm->fn = kiln_rt__calloc(p->n_cuda_steps + 1, sizeof *cm->fn);
  if (!cm->io_flags || !cm->stretch_of || !cm->stretch_end || !cm->gemm_of || !cm->conv_of || !cm->fn)
    return rt_model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  for (int i = 0; i < m->n_inputs; i++)
    cm->io_flags[i] |= strcmp(p->input_devices[i], "cpu:0") == 0 ? IO_HOST : IO_DEV;
  for (size_t j = 0; j < p->n_output_values; j++) mark_io(cm, p->output_values[j], 0);
  for (size_t i = 0; i < p->n_schedule; i++)
    if (p->schedule[i]->kind == KILN__RT__UNIT__KIND__UNIT_COPY) {
      mark_io(cm, p->schedule[i]->src, 0);
      mark_io(cm, p->schedule[i]->dst, 0);
    }
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    const Kiln__Rt__CudaStep *s = p->cuda_steps[i];
    cm->gemm_of[i] = cm->conv_of[i] = -1;
    if (s->kind == 3) {
      cm->conv_of[i] = cm->n_convs++;
      mark_io(cm, s->conv->x, 1);
      mark_io(cm, s->conv->w, 1);
      mark_io(cm, s->conv->y, 1);
    }
    if (s->kind != 2) continue;
    cm->gemm_of[i] = cm->n_gemms++;
    mark_io(cm, s->gemm->a, 1);
    mark_io(cm, s->gemm->b, 1);
    mark_io(cm, s->gemm->d, 1);
    if (s->gemm->has_bias) mark_io(cm, s->gemm->bias, 1);
  }
  for (size_t i = 0; i < p->n_schedule; i++) {
    cm->stretch_of[i] = -1;
    if (p->schedule[i]->kind != KILN__RT__UNIT__KIND__UNIT_CUDA_STEP) continue;
    if (i > 0 && p->schedule[i - 1]->kind == KILN__RT__UNIT__KIND__UNIT_CUDA_STEP) {
      cm->stretch_end[cm->n_stretches - 1] = (int)i + 1;
      continue;
    }
    cm->stretch_of[i] = cm->n_stretches;
    cm->stretch_end[cm->n_stretches++] = (int)i + 1;
  }
  return KILN_RT_OK;
}

/* Process-wide device choice: KILN_CUDA_DEVICE=N overrides the plan's cuda:N. */
static kiln_rt_status pick_device(kiln_rt_model *m, rt_cuda_model *cm, int count) {
  const char *env = getenv("KILN_CUDA_DEVICE");
  char esc[RT_ESC_BYTES];
  cm->ordinal = parse_cuda_device(m->plan->cuda_device);
  if (env && *env) {
    char *end = NULL;
    long n = strtol(env, &end, 10);
    if (*end || n < 0 || n > 4095)
      return rt_model_fail(m, KILN_RT_ERR_DEVICE, "KILN_CUDA_DEVICE='%s' is not a device number",
                           rt_escape(env, esc));
    cm->ordinal = (int)n;
  }
  if (cm->ordinal >= count)
    return rt_model_fail(m, KILN_RT_ERR_DEVICE, "cuda:%d is out of range: this process sees %d CUDA "
                         "device%s (CUDA_VISIBLE_DEVICES applies%s)", cm->ordinal, count,
                         count == 1 ? "" : "s", env && *env ? "; KILN_CUDA_DEVICE chose it" : "");
  int r = cm->cu->device_get(&cm->dev, cm->ordinal);
  return r ? cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuDeviceGet") : KILN_RT_OK;
}

/* The cubin for exactly this architecture, else the newest PTX not above it. */
static kiln_rt_status pick_image(kiln_rt_model *m, int cc, const Kiln__Rt__CudaImage **out) {
  const Kiln__Rt__Plan *p = m->plan;
  const Kiln__Rt__CudaImage *best = NULL;
  int best_n = -1;
  char have[256] = "", ptxs[128] = "";
  size_t o = 0, q = 0;
  for (size_t i = 0; i < p->n_cuda_images; i++) {
    const Kiln__Rt__CudaImage *im = p->cuda_images[i];
    int ptx = 0, n = arch_number(im->arch, &ptx);
    int exact = n < -1 ? -2 - n : n;
    if (!ptx && n == cc) {
      *out = im;
      return KILN_RT_OK;
    }
    if (ptx && ((n >= 0 && n <= cc) || (n < -1 && exact == cc)) && exact > best_n) best = im, best_n = exact;
    if (!ptx && o < sizeof have) o += (size_t)snprintf(have + o, sizeof have - o, "%s%s", o ? ", " : "", im->arch);
    if (ptx && q < sizeof ptxs) q += (size_t)snprintf(ptxs + q, sizeof ptxs - q, "%s%s", q ? ", " : "", im->arch);
  }
  if (best) {
    *out = best;
    return KILN_RT_OK;
  }
  return rt_model_fail(m, KILN_RT_ERR_DEVICE, "artifact has code for %s and %s%s; cuda:%d is sm_%d",
                       o ? have : "no architecture", q ? "PTX for " : "no PTX", q ? ptxs : "",
                       m->cuda->ordinal, cc);
}

static kiln_rt_status load_module(kiln_rt_model *m, const kart_section *code, int cc) {
  rt_cuda_model *cm = m->cuda;
  const Kiln__Rt__CudaImage *im = NULL;
  kiln_rt_status st = pick_image(m, cc, &im);
  if (st) return st;
  uint8_t digest[32];
  kart_sha256(code->data + im->offset, (size_t)im->size, digest);
  if (memcmp(digest, im->sha256.data, 32) != 0)
    return rt_model_fail(m, KILN_RT_ERR_INTEGRITY, "cuda image %s: its SHA-256 differs from the plan's",
                         im->arch);
  /* the driver reads the ELF or PTX from an aligned copy of its own */
  void *copy = kiln_rt__malloc_aligned((size_t)im->size);
  if (!copy) return rt_model_fail(m, KILN_RT_ERR_NOMEM, "out of memory for the %s image", im->arch);
  memcpy(copy, code->data + im->offset, (size_t)im->size);
  int r = cm->cu->module_load(&cm->module, copy);
  kiln_rt__free(copy);
  if (r) {
    char name[96], what[64];
    rt_cu_result(r, name, sizeof name);
    snprintf(what, sizeof what, "cuModuleLoadData (%s %s)", im->ptx ? "PTX" : "cubin", im->arch);
    cm->module = NULL;
    return cu_fail(m, r == RT_CU_ERROR_UNSUPPORTED_PTX_VERSION ? KILN_RT_ERR_DEVICE : KILN_RT_ERR_FORMAT,
                   r, what);
  }
  rt_fmt(m->device + strlen(m->device), sizeof m->device - strlen(m->device), ", %s)",
         im->ptx ? "ptx" : "cubin");
  return KILN_RT_OK;
}

static kiln_rt_status find_kernels(kiln_rt_model *m) {
  rt_cuda_model *cm = m->cuda;
  const Kiln__Rt__Plan *p = m->plan;
  size_t n = 0;
  int r = cm->cu->module_global(&cm->error_word, &n, cm->module, "kiln_error");
  if (r || n < 4)
    return rt_model_fail(m, KILN_RT_ERR_FORMAT, "the cuda image has no 4-byte kiln_error (%s)",
                         r ? "cuModuleGetGlobal failed" : "too small");
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    const char *k = p->cuda_steps[i]->kernel;
    if (!k[0]) continue;
    r = cm->cu->module_function(&cm->fn[i], cm->module, k);
    if (r == RT_CU_ERROR_NOT_FOUND)
      return rt_model_fail(m, KILN_RT_ERR_FORMAT, "cuda step %zu: kernel '%s' is not in the image", i, k);
    if (r) return cu_fail(m, KILN_RT_ERR_FORMAT, r, "cuModuleGetFunction");
  }
  if (!p->cuda_error_word) cm->error_word = 0; /* no kernel sets it: never zeroed nor read */
  return KILN_RT_OK;
}

static kiln_rt_status upload_weights(kiln_rt_model *m) {
  rt_cuda_model *cm = m->cuda;
  int r = cm->cu->mem_alloc(&cm->weights, m->weights_bytes ? m->weights_bytes : 1);
  if (r) {
    cm->weights = 0;
    return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuMemAlloc of the weights");
  }
  if (m->weights_bytes && (r = cm->cu->htod(cm->weights, m->weights, m->weights_bytes)))
    return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuMemcpyHtoD of the weights");
  /* the copy may still be in flight on the legacy stream, which contexts' streams do not
   * wait for */
  if ((r = cm->cu->stream_sync(NULL))) return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuStreamSynchronize after the weights");
  return KILN_RT_OK;
}

/* ---- GEMM descriptors (the row-major mapping of helper-exec-design.md) ---- */

static uint32_t align_of(const Kiln__Rt__Operand *o, int64_t stride, size_t es) {
  uint64_t a = 256, x = (o->where == KILN__RT__WHERE__WHERE_IO ? 0 : o->offset) | ((uint64_t)stride * es);
  while (a > es && x % a) a /= 2;
  return (uint32_t)a;
}

static int make_desc(const Kiln__Rt__CudaGemm *g, rt_cuptr bias, void **out) {
  int f64 = g->dtype == KILN_RT_F64;
  int r = lt.api.desc_create(out, f64 ? LT_COMPUTE_64F : LT_COMPUTE_32F, f64 ? LT_R_64F : LT_R_32F);
  if (r) {
    *out = NULL;
    return r;
  }
  int32_t ta = g->trans_b ? LT_OP_T : LT_OP_N, tb = g->trans_a ? LT_OP_T : LT_OP_N;
  uint32_t epi = g->has_bias ? (g->relu ? LT_EPILOGUE_RELU_BIAS : LT_EPILOGUE_BIAS)
                             : (g->relu ? LT_EPILOGUE_RELU : LT_EPILOGUE_DEFAULT);
  void *bp = (void *)(uintptr_t)bias;
  if ((r = lt.api.desc_set(*out, LT_DESC_TRANSA, &ta, sizeof ta)) ||
      (r = lt.api.desc_set(*out, LT_DESC_TRANSB, &tb, sizeof tb)) ||
      (r = lt.api.desc_set(*out, LT_DESC_EPILOGUE, &epi, sizeof epi)) ||
      (g->has_bias && (r = lt.api.desc_set(*out, LT_DESC_BIAS_POINTER, &bp, sizeof bp)))) {
    lt.api.desc_destroy(*out);
    *out = NULL;
  }
  return r;
}

static int make_layout(int f64, int64_t rows, int64_t cols, int64_t batch, int64_t stride, void **out) {
  int r = lt.api.layout_create(out, f64 ? LT_R_64F : LT_R_32F, (uint64_t)rows, (uint64_t)cols, rows);
  if (r) {
    *out = NULL;
    return r;
  }
  int32_t count = (int32_t)batch;
  int64_t off = stride;
  if (batch > 1 && ((r = lt.api.layout_set(*out, LT_LAYOUT_BATCH_COUNT, &count, sizeof count)) ||
                    (r = lt.api.layout_set(*out, LT_LAYOUT_BATCH_OFFSET, &off, sizeof off)))) {
    lt.api.layout_destroy(*out);
    *out = NULL;
  }
  return r;
}

/* Row-major D[m,n] = op(A) op(B) is column-major D^T (n x m) = op(B)^T op(A)^T. */
static int gemm_layouts(const Kiln__Rt__CudaGemm *g, rt_gemm *G) {
  int f64 = g->dtype == KILN_RT_F64, r;
  if ((r = make_layout(f64, g->trans_b ? g->k : g->n, g->trans_b ? g->n : g->k, g->batch, g->stride_b, &G->la)))
    return r;
  if ((r = make_layout(f64, g->trans_a ? g->m : g->k, g->trans_a ? g->k : g->m, g->batch, g->stride_a, &G->lb)))
    return r;
  return make_layout(f64, g->n, g->m, g->batch, g->stride_d, &G->ld);
}

static int gemm_algo(void *handle, const Kiln__Rt__CudaGemm *g, rt_gemm *G, void *desc) {
  void *pref = NULL;
  int r = lt.api.pref_create(&pref);
  if (r) return r;
  uint64_t ws = LT_WORKSPACE_MAX;
  size_t es = kiln_rt_dtype_size(g->dtype);
  uint32_t al[4] = {align_of(g->b, g->stride_b, es), align_of(g->a, g->stride_a, es),
                    align_of(g->d, g->stride_d, es), align_of(g->d, g->stride_d, es)};
  r = lt.api.pref_set(pref, LT_PREF_MAX_WORKSPACE, &ws, sizeof ws);
  for (int i = 0; i < 4 && !r; i++) r = lt.api.pref_set(pref, LT_PREF_ALIGN_A + i, &al[i], sizeof al[i]);
  lt_heuristic h;
  int got = 0;
  memset(&h, 0, sizeof h);
  if (!r) r = lt.api.heuristic(handle, desc, G->la, G->lb, G->ld, G->ld, pref, 1, &h, &got);
  lt.api.pref_destroy(pref);
  if (r) return r;
  if (got < 1 || h.state != 0) return 15; /* CUBLAS_STATUS_NOT_SUPPORTED */
  G->algo = h.algo;
  G->workspace = h.workspace;
  return 0;
}

static kiln_rt_status open_gemms(kiln_rt_model *m) {
  rt_cuda_model *cm = m->cuda;
  const Kiln__Rt__Plan *p = m->plan;
  if (cm->n_gemms == 0) return KILN_RT_OK;
  pthread_once(&lt.once, open_cublaslt);
  if (!lt.ok) return rt_model_fail(m, KILN_RT_ERR_DEVICE, "%s", lt.why);
  cm->gemms = kiln_rt__calloc((size_t)cm->n_gemms, sizeof *cm->gemms);
  if (!cm->gemms) return rt_model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  char name[96];
  int r = lt.api.create(&cm->lt_handle);
  if (r) {
    cm->lt_handle = NULL;
    lt_result(r, name, sizeof name);
    return rt_model_fail(m, r == 3 ? KILN_RT_ERR_NOMEM : KILN_RT_ERR_DEVICE, "cublasLtCreate failed: %s", name);
  }
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    if (cm->gemm_of[i] < 0) continue;
    const Kiln__Rt__CudaGemm *g = p->cuda_steps[i]->gemm;
    rt_gemm *G = &cm->gemms[cm->gemm_of[i]];
    void *desc = NULL;
    G->step = (int)i;
    r = gemm_layouts(g, G);
    /* the bias pointer as aligned as the real one will be (each context has its own) */
    if (!r) r = make_desc(g, g->has_bias ? cm->weights + (g->bias->offset & 255) : 0, &desc);
    if (!r) r = gemm_algo(cm->lt_handle, g, G, desc);
    if (desc) lt.api.desc_destroy(desc);
    if (r) {
      char esc[RT_ESC_BYTES];
      lt_result(r, name, sizeof name);
      return rt_model_fail(m, r == 3 ? KILN_RT_ERR_NOMEM : KILN_RT_ERR_UNSUPPORTED,
                           "cuda step %zu (node '%s'): cuBLASLt has no algorithm for the %lldx%lldx%lld "
                           "GEMM (batch %lld): %s", i, rt_escape(p->cuda_steps[i]->node, esc),
                           (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch, name);
    }
    if (G->workspace > cm->workspace) cm->workspace = G->workspace;
  }
  return KILN_RT_OK;
}

/* ---- cuDNN convolutions: descriptors and algorithm per conv step, on the model's handle ---- */

static void conv_geom(const Kiln__Rt__CudaConv *v, rt_dnn_geom *g) {
  memset(g, 0, sizeof *g);
  g->f64 = v->dtype == KILN_RT_F64;
  g->spatial = (int)v->spatial;
  g->n = (int)v->n, g->c = (int)v->c, g->k = (int)v->k, g->groups = (int)v->groups;
  for (int d = 0; d < g->spatial; d++) {
    g->in[d] = (int)v->in_dims[d], g->filter[d] = (int)v->filter_dims[d], g->out[d] = (int)v->out_dims[d];
    g->pads[d] = (int)v->pads[d], g->strides[d] = (int)v->strides[d], g->dilations[d] = (int)v->dilations[d];
  }
}

static kiln_rt_status open_convs(kiln_rt_model *m) {
  rt_cuda_model *cm = m->cuda;
  const Kiln__Rt__Plan *p = m->plan;
  char why[400], esc[RT_ESC_BYTES];
  const char *call = "";
  if (cm->n_convs == 0) return KILN_RT_OK;
  if (rt_dnn_open(why, sizeof why)) return rt_model_fail(m, KILN_RT_ERR_DEVICE, "%s", why);
  cm->convs = kiln_rt__calloc((size_t)cm->n_convs, sizeof *cm->convs);
  if (!cm->convs) return rt_model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  int r = rt_dnn_handle(&cm->dnn_handle, NULL, &call);
  if (r) {
    rt_dnn_error(r, why, sizeof why);
    return rt_model_fail(m, KILN_RT_ERR_DEVICE, "%s failed: %s", call, why);
  }
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    if (cm->conv_of[i] < 0) continue;
    const Kiln__Rt__CudaConv *v = p->cuda_steps[i]->conv;
    rt_dnn_geom g;
    conv_geom(v, &g);
    rt_dnn_conv *c = &cm->convs[cm->conv_of[i]];
    if ((r = rt_dnn_prepare(cm->dnn_handle, &g, c, &call))) {
      rt_dnn_error(r, why, sizeof why);
      return rt_model_fail(m, KILN_RT_ERR_UNSUPPORTED, "cuda step %zu (node '%s'): cuDNN cannot run the "
                           "%dD conv (n %d, c %d, k %d, groups %d): %s failed: %s", i,
                           rt_escape(p->cuda_steps[i]->node, esc), g.spatial, g.n, g.c, g.k, g.groups,
                           call, why);
    }
    if (c->workspace > cm->workspace) cm->workspace = c->workspace;
  }
  return KILN_RT_OK;
}

static kiln_rt_status open_device(kiln_rt_model *m, const kart_section *code) {
  rt_cuda_model *cm = m->cuda;
  int major = 0, minor = 0, r;
  char name[96] = "";
  if ((r = cm->cu->device_attribute(&major, RT_CU_ATTR_CC_MAJOR, cm->dev)) ||
      (r = cm->cu->device_attribute(&minor, RT_CU_ATTR_CC_MINOR, cm->dev)))
    return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuDeviceGetAttribute");
  if (cm->cu->device_name(name, (int)sizeof name - 1, cm->dev)) snprintf(name, sizeof name, "unknown");
  name[sizeof name - 1] = '\0';
  rt_fmt(m->device, sizeof m->device, "cuda:%d (%s, sm_%d%d", cm->ordinal, name, major, minor);
  if ((r = cm->cu->primary_retain(&cm->ctx, cm->dev))) {
    cm->ctx = NULL;
    return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuDevicePrimaryCtxRetain");
  }
  if ((r = cm->cu->ctx_push(cm->ctx))) return cu_fail(m, KILN_RT_ERR_DEVICE, r, "cuCtxPushCurrent");
  kiln_rt_status st = upload_weights(m);
  if (!st && m->plan->n_cuda_images) st = load_module(m, code, major * 10 + minor);
  else if (!st) rt_fmt(m->device + strlen(m->device), sizeof m->device - strlen(m->device), ", no kernels)");
  if (!st && cm->module) st = find_kernels(m);
  if (!st) st = open_gemms(m);
  if (!st) st = open_convs(m);
  void *prev = NULL;
  cm->cu->ctx_pop(&prev);
  return st;
}

kiln_rt_status rt_cuda_model_open(kiln_rt_model *m, const kart_section *code) {
  int count = 0;
  char why[400];
  const rt_cu_api *cu = rt_cu_driver(&count, why, sizeof why);
  if (!cu) return rt_model_fail(m, KILN_RT_ERR_DEVICE, "%s", why);
  m->cuda = kiln_rt__calloc(1, sizeof *m->cuda);
  if (!m->cuda) return rt_model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  m->cuda->cu = cu;
  if (pthread_mutex_init(&m->cuda->error_lock, NULL) != 0)
    return rt_model_fail(m, KILN_RT_ERR_NOMEM, "cannot create a mutex");
  m->cuda->error_lock_ok = 1;
  m->cuda->cuda_arena = (size_t)arena_of(m, SIDE_CUDA);
  kiln_rt_status st = analyse(m, m->cuda);
  if (!st) st = pick_device(m, m->cuda, count);
  if (!st) st = open_device(m, code);
  if (st) m->device[0] = '\0';
  return st;
}

void rt_cuda_model_close(kiln_rt_model *m) {
  rt_cuda_model *cm = m ? m->cuda : NULL;
  if (!cm) return;
  /* cuBLASLt layouts and cuDNN descriptors are host objects: freed even when the context
   * cannot be made current */
  for (int i = 0; cm->convs && i < cm->n_convs; i++) rt_dnn_release(&cm->convs[i]);
  for (int i = 0; cm->gemms && i < cm->n_gemms; i++) {
    if (cm->gemms[i].la) lt.api.layout_destroy(cm->gemms[i].la);
    if (cm->gemms[i].lb) lt.api.layout_destroy(cm->gemms[i].lb);
    if (cm->gemms[i].ld) lt.api.layout_destroy(cm->gemms[i].ld);
  }
  if (cm->ctx && cm->cu->ctx_push(cm->ctx) == 0) {
    if (cm->lt_handle) lt.api.destroy(cm->lt_handle);
    rt_dnn_handle_destroy(cm->dnn_handle);
    if (cm->module) cm->cu->module_unload(cm->module);
    if (cm->weights) cm->cu->mem_free(cm->weights);
    void *prev = NULL;
    cm->cu->ctx_pop(&prev);
  }
  if (cm->ctx) cm->cu->primary_release(cm->dev);
  kiln_rt__free(cm->gemms);
  kiln_rt__free(cm->fn);
  kiln_rt__free(cm->gemm_of);
  kiln_rt__free(cm->convs);
  kiln_rt__free(cm->conv_of);
  kiln_rt__free(cm->io_flags);
  kiln_rt__free(cm->stretch_of);
  kiln_rt__free(cm->stretch_end);
  if (cm->error_lock_ok) pthread_mutex_destroy(&cm->error_lock);
  kiln_rt__free(cm);
  m->cuda = NULL;
}

/* ---------------------------------------------------------------- contexts ------ */

static kiln_rt_status ctx_cu_fail(kiln_rt_context *c, int r, const char *what) {
  char name[96];
  rt_cu_result(r, name, sizeof name);
  return rt_ctx_fail(c, r == RT_CU_ERROR_OUT_OF_MEMORY ? KILN_RT_ERR_NOMEM : KILN_RT_ERR_DEVICE,
                     "cuda:%d: %s failed: %s", c->model->cuda->ordinal, what, name);
}

static kiln_rt_status dev_alloc(kiln_rt_context *c, rt_cuptr *p, size_t n, const char *what) {
  int r = c->model->cuda->cu->mem_alloc(p, n ? n : 1);
  if (r) *p = 0;
  return r ? ctx_cu_fail(c, r, what) : KILN_RT_OK;
}

#define RT_STAGE_ALIGN 256
static size_t round_up(size_t n) { return (n + RT_STAGE_ALIGN - 1) / RT_STAGE_ALIGN * RT_STAGE_ALIGN; }

/* One device block for every io index the CUDA side touches; one host block for every
 * CPU-side input (used when the caller gives it in device memory). */
static kiln_rt_status make_staging(kiln_rt_context *c) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda;
  size_t dev = 0, host = 0;
  for (int k = 0; k < cm->n_io; k++) {
    size_t n = io_nbytes(m, k);
    /* a plan may declare tensors of any size: the sums must not wrap */
    if (n > SIZE_MAX / 2 || (cm->io_flags[k] & IO_DEV && __builtin_add_overflow(dev, round_up(n ? n : 1), &dev)) ||
        (k < m->n_inputs && (cm->io_flags[k] & IO_HOST) && __builtin_add_overflow(host, round_up(n), &host)))
      return rt_ctx_fail(c, KILN_RT_ERR_LIMIT, "the io tensors' staging does not fit in memory");
  }
  kiln_rt_status st = dev ? dev_alloc(c, &x->staging_block, dev, "cuMemAlloc of the io staging") : KILN_RT_OK;
  if (st) return st;
  x->host_block = kiln_rt__malloc_aligned(host);
  if (!x->host_block) return rt_ctx_fail(c, KILN_RT_ERR_NOMEM, "out of memory");
  dev = host = 0;
  for (int k = 0; k < cm->n_io; k++) {
    if (cm->io_flags[k] & IO_DEV) {
      x->staged[k] = x->staging_block + dev;
      dev += round_up(io_nbytes(m, k) ? io_nbytes(m, k) : 1);
    }
    if (k < m->n_inputs && (cm->io_flags[k] & IO_HOST)) {
      x->host_staged[k] = x->host_block + host;
      host += round_up(io_nbytes(m, k));
    }
  }
  return KILN_RT_OK;
}

static rt_cuptr gemm_addr(const kiln_rt_context *c, const Kiln__Rt__Operand *o) {
  switch (o->where) {
  case KILN__RT__WHERE__WHERE_ARENA: return c->cuda->arena + o->offset;
  case KILN__RT__WHERE__WHERE_WEIGHTS: return c->model->cuda->weights + o->offset;
  case KILN__RT__WHERE__WHERE_IO: return c->cuda->staged[o->index];
  default: return 0;
  }
}

static kiln_rt_status make_descs(kiln_rt_context *c) {
  const rt_cuda_model *cm = c->model->cuda;
  rt_cuda_ctx *x = c->cuda;
  for (int i = 0; i < cm->n_gemms; i++) {
    const Kiln__Rt__CudaGemm *g = c->model->plan->cuda_steps[cm->gemms[i].step]->gemm;
    x->gptr[i][0] = gemm_addr(c, g->a);
    x->gptr[i][1] = gemm_addr(c, g->b);
    x->gptr[i][2] = gemm_addr(c, g->d);
    x->gptr[i][3] = g->has_bias ? gemm_addr(c, g->bias) : 0;
    int r = make_desc(g, x->gptr[i][3], &x->descs[i]);
    if (r) {
      char name[96];
      lt_result(r, name, sizeof name);
      return rt_ctx_fail(c, r == 3 ? KILN_RT_ERR_NOMEM : KILN_RT_ERR_DEVICE,
                         "cublasLtMatmulDescCreate failed: %s", name);
    }
  }
  return KILN_RT_OK;
}

static kiln_rt_status make_device_side(kiln_rt_context *c) {
  const rt_cuda_model *cm = c->model->cuda;
  rt_cuda_ctx *x = c->cuda;
  int r = cm->cu->stream_create(&x->stream, RT_CU_STREAM_NON_BLOCKING);
  if (r) {
    x->stream = NULL;
    return ctx_cu_fail(c, r, "cuStreamCreate");
  }
  kiln_rt_status st = dev_alloc(c, &x->arena, cm->cuda_arena, "cuMemAlloc of the device arena");
  if (!st) st = dev_alloc(c, &x->io_table, (size_t)cm->n_io * sizeof(rt_cuptr), "cuMemAlloc of the io table");
  if (!st) st = make_staging(c);
  if (!st && cm->workspace) st = dev_alloc(c, &x->workspace, cm->workspace, "cuMemAlloc of the workspace");
  if (!st) st = make_descs(c);
  if (!st && cm->n_convs) {
    const char *call = "";
    char why[160];
    int rd = rt_dnn_handle(&x->dnn, x->stream, &call);
    if (rd) {
      rt_dnn_error(rd, why, sizeof why);
      st = rt_ctx_fail(c, KILN_RT_ERR_DEVICE, "%s failed: %s", call, why);
    }
  }
  return st;
}

kiln_rt_status rt_cuda_context_create(kiln_rt_context *c) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda = kiln_rt__calloc(1, sizeof *c->cuda);
  if (!x) return KILN_RT_ERR_NOMEM;
  size_t nio = (size_t)cm->n_io + 1, ng = (size_t)cm->n_gemms + 1, ns = (size_t)cm->n_stretches + 1;
  x->dev_io = kiln_rt__calloc(nio, sizeof *x->dev_io);
  x->io_sent = kiln_rt__calloc(nio, sizeof *x->io_sent);
  x->staged = kiln_rt__calloc(nio, sizeof *x->staged);
  x->host_staged = kiln_rt__calloc(nio, sizeof *x->host_staged);
  x->descs = kiln_rt__calloc(ng, sizeof *x->descs);
  x->gptr = kiln_rt__calloc(ng, sizeof *x->gptr);
  x->exec = kiln_rt__calloc(ns, sizeof *x->exec);
  x->mode = kiln_rt__calloc(ns, sizeof *x->mode);
  if (!x->dev_io || !x->io_sent || !x->staged || !x->host_staged || !x->descs || !x->gptr || !x->exec || !x->mode)
    return rt_ctx_fail(c, KILN_RT_ERR_NOMEM, "out of memory");
  const char *g = getenv("KILN_CUDA_GRAPHS");
  x->graphs = !(g && strcmp(g, "0") == 0);
  int r = cm->cu->ctx_push(cm->ctx);
  if (r) return ctx_cu_fail(c, r, "cuCtxPushCurrent");
  kiln_rt_status st = make_device_side(c);
  void *prev = NULL;
  cm->cu->ctx_pop(&prev);
  return st;
}

void rt_cuda_context_destroy(kiln_rt_context *c) {
  rt_cuda_ctx *x = c ? c->cuda : NULL;
  if (!x) return;
  const rt_cuda_model *cm = c->model->cuda;
  if (cm->cu->ctx_push(cm->ctx) == 0) {
    if (x->stream) cm->cu->stream_sync(x->stream); /* nothing may still use what is freed */
    for (int i = 0; x->exec && i < cm->n_stretches; i++)
      if (x->exec[i]) cm->cu->graph_exec_destroy(x->exec[i]);
    rt_dnn_handle_destroy(x->dnn);
    rt_cuptr bufs[4] = {x->arena, x->io_table, x->staging_block, x->workspace};
    for (int i = 0; i < 4; i++)
      if (bufs[i]) cm->cu->mem_free(bufs[i]);
    if (x->stream) cm->cu->stream_destroy(x->stream);
    void *prev = NULL;
    cm->cu->ctx_pop(&prev);
  }
  for (int i = 0; x->descs && i < cm->n_gemms; i++) /* host objects */
    if (x->descs[i]) lt.api.desc_destroy(x->descs[i]);
  kiln_rt__free(x->host_block);
  kiln_rt__free(x->dev_io);
  kiln_rt__free(x->io_sent);
  kiln_rt__free(x->staged);
  kiln_rt__free(x->host_staged);
  kiln_rt__free(x->descs);
  kiln_rt__free(x->gptr);
  kiln_rt__free(x->exec);
  kiln_rt__free(x->mode);
  kiln_rt__free(x);
  c->cuda = NULL;
}

/* ---------------------------------------------------------------- run ----------- */

/* A failed driver call during a run: EXEC naming the step and node when there is one. */
static kiln_rt_status run_cu_fail(kiln_rt_context *c, int r, const char *call, int cuda_step) {
  char name[96], esc[RT_ESC_BYTES];
  rt_cu_result(r, name, sizeof name);
  if (cuda_step < 0)
    return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuda:%d: %s failed: %s", c->model->cuda->ordinal, call, name);
  const Kiln__Rt__CudaStep *s = c->model->plan->cuda_steps[cuda_step];
  return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuda step %d (node '%s'): %s%s%s failed: %s", cuda_step,
                     rt_escape(s->node, esc), call, s->kernel[0] && strcmp(call, "cuLaunchKernel") == 0 ? " of " : "",
                     s->kernel[0] && strcmp(call, "cuLaunchKernel") == 0 ? s->kernel : "", name);
}

static kiln_rt_status sync_host(kiln_rt_context *c) {
  rt_cuda_ctx *x = c->cuda;
  if (!x->pending_host) return KILN_RT_OK;
  int r = c->model->cuda->cu->stream_sync(x->stream);
  x->pending_host = 0;
  return r ? run_cu_fail(c, r, "cuStreamSynchronize", -1) : KILN_RT_OK;
}

static rt_cuptr dev_addr(const kiln_rt_context *c, const Kiln__Rt__Operand *o) {
  switch (o->where) {
  case KILN__RT__WHERE__WHERE_ARENA: return c->cuda->arena + o->offset;
  case KILN__RT__WHERE__WHERE_WEIGHTS: return c->model->cuda->weights + o->offset;
  case KILN__RT__WHERE__WHERE_IO: return c->cuda->dev_io[o->index];
  default: return 0;
  }
}

static unsigned char *host_addr(const kiln_rt_context *c, const Kiln__Rt__Operand *o) {
  switch (o->where) {
  case KILN__RT__WHERE__WHERE_ARENA: return c->arena + o->offset;
  case KILN__RT__WHERE__WHERE_WEIGHTS: return c->model->weights + o->offset;
  case KILN__RT__WHERE__WHERE_IO: return (unsigned char *)(uintptr_t)c->in_ptrs[o->index];
  default: return NULL;
  }
}

/* n bytes between two places, each on the host (dev == 0) or the device. */
static int copy_any(kiln_rt_context *c, void *hdst, rt_cuptr ddst, const void *hsrc, rt_cuptr dsrc,
                    size_t n, int dst_dev, int src_dev) {
  const rt_cu_api *cu = c->model->cuda->cu;
  rt_cuda_ctx *x = c->cuda;
  if (n == 0) return 0;
  if (dst_dev && src_dev) return cu->dtod_async(ddst, dsrc, n, x->stream);
  if (dst_dev) return cu->htod_async(ddst, hsrc, n, x->stream);
  if (src_dev) {
    x->pending_host = 1;
    return cu->dtoh_async(hdst, dsrc, n, x->stream);
  }
  memcpy(hdst, hsrc, n);
  return 0;
}

/* Each input onto the side(s) that read it: the caller's pointer where it is already on
 * that side (except GEMM operands: always their staging buffer), else a copy into the
 * context's staging; a NULL default reads the weights copy on that side. */
static kiln_rt_status stage_input(kiln_rt_context *c, int i, const kiln_rt_buffer *b, int on_dev) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda;
  unsigned f = cm->io_flags[i];
  size_t n = m->inputs[i].nbytes;
  int r = 0;
  if (!b->data) {
    c->in_ptrs[i] = m->weights + m->inputs[i].default_offset;
    x->dev_io[i] = cm->weights + (rt_cuptr)m->inputs[i].default_offset;
    if ((f & IO_DEV) && (f & IO_GEMM)) {
      r = copy_any(c, NULL, x->staged[i], NULL, x->dev_io[i], n, 1, 1);
      x->dev_io[i] = x->staged[i];
    }
    return r ? run_cu_fail(c, r, "cuMemcpyDtoDAsync of an input's default", -1) : KILN_RT_OK;
  }
  rt_cuptr d = (rt_cuptr)(uintptr_t)b->data;
  c->in_ptrs[i] = b->data;
  if ((f & IO_HOST) && on_dev) {
    c->in_ptrs[i] = x->host_staged[i];
    if ((r = copy_any(c, x->host_staged[i], 0, NULL, d, n, 0, 1)))
      return run_cu_fail(c, r, "cuMemcpyDtoHAsync of an input", -1);
  }
  if (!(f & IO_DEV)) return KILN_RT_OK;
  x->dev_io[i] = on_dev && !(f & IO_GEMM) ? d : x->staged[i];
  if (x->dev_io[i] == d) return KILN_RT_OK;
  r = copy_any(c, NULL, x->staged[i], b->data, d, n, 1, on_dev);
  return r ? run_cu_fail(c, r, on_dev ? "cuMemcpyDtoDAsync of an input" : "cuMemcpyHtoDAsync of an input", -1)
           : KILN_RT_OK;
}

static kiln_rt_status stage_inputs(kiln_rt_context *c, const kiln_rt_buffer *in, const unsigned char *mem) {
  kiln_rt_status st = KILN_RT_OK;
  for (int i = 0; i < c->model->n_inputs && !st; i++)
    st = stage_input(c, i, &in[i], mem && mem[i] == KILN_RT_MEMORY_DEVICE);
  return st;
}

static void place_outputs(kiln_rt_context *c, const kiln_rt_buffer *out, const unsigned char *mem) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  for (int j = 0; j < m->n_outputs; j++) {
    int k = m->n_inputs + j;
    unsigned f = cm->io_flags[k];
    c->out_ptrs[j] = NULL;
    if (!(f & IO_DEV)) continue;
    int pass = mem && mem[j] == KILN_RT_MEMORY_DEVICE && !(f & IO_GEMM);
    c->cuda->dev_io[k] = pass ? (rt_cuptr)(uintptr_t)out[j].data : c->cuda->staged[k];
  }
}

static kiln_rt_status launch_step(kiln_rt_context *c, int i) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda;
  const Kiln__Rt__CudaStep *s = m->plan->cuda_steps[i];
  int g = cm->gemm_of[i];
  if (g >= 0) {
    const rt_gemm *G = &cm->gemms[g];
    float one_f = 1.0f, zero_f = 0.0f;
    double one_d = 1.0, zero_d = 0.0;
    int f64 = s->gemm->dtype == KILN_RT_F64;
    const void *alpha = f64 ? (const void *)&one_d : (const void *)&one_f;
    const void *beta = f64 ? (const void *)&zero_d : (const void *)&zero_f;
    void *d = (void *)(uintptr_t)x->gptr[g][2];
    int r = lt.api.matmul(cm->lt_handle, x->descs[g], alpha, (void *)(uintptr_t)x->gptr[g][1], G->la,
                          (void *)(uintptr_t)x->gptr[g][0], G->lb, beta, d, G->ld, d, G->ld,
                          &G->algo, (void *)(uintptr_t)x->workspace, cm->workspace, x->stream);
    if (r) {
      char name[96], esc[RT_ESC_BYTES];
      lt_result(r, name, sizeof name);
      return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuda step %d (node '%s'): cublasLtMatmul failed: %s",
                         i, rt_escape(s->node, esc), name);
    }
  }
  int v = cm->conv_of[i];
  if (v >= 0) {
    const Kiln__Rt__CudaConv *cv = s->conv;
    int r = rt_dnn_forward(x->dnn, &cm->convs[v], gemm_addr(c, cv->x), gemm_addr(c, cv->w), gemm_addr(c, cv->y),
                           x->workspace, cm->workspace);
    if (r) {
      char name[96], esc[RT_ESC_BYTES];
      rt_dnn_error(r, name, sizeof name);
      return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuda step %d (node '%s'): cudnnConvolutionForward failed: %s",
                         i, rt_escape(s->node, esc), name);
    }
  }
  if (!cm->fn[i]) return KILN_RT_OK;
  void *params[3] = {&x->arena, (void *)&cm->weights, &x->io_table};
  int r = cm->cu->launch(cm->fn[i], (unsigned)s->grid, 1, 1, s->block, 1, 1, 0, x->stream, params, NULL);
  return r ? run_cu_fail(c, r, "cuLaunchKernel", i) : KILN_RT_OK;
}

static kiln_rt_status launch_units(kiln_rt_context *c, int first, int end) {
  const Kiln__Rt__Plan *p = c->model->plan;
  for (int u = first; u < end; u++) {
    kiln_rt_status st = launch_step(c, p->schedule[u]->index);
    if (st) return st;
  }
  return KILN_RT_OK;
}

/* Captures the stretch into a graph; 0 when it worked (x->exec[s] set). A failure here
 * is not an error: the stretch launches eagerly from now on. */
static int capture(kiln_rt_context *c, int s, int first, int end) {
  const rt_cu_api *cu = c->model->cuda->cu;
  rt_cuda_ctx *x = c->cuda;
  void *graph = NULL;
  if (cu->capture_begin(x->stream, RT_CU_CAPTURE_THREAD_LOCAL)) return -1;
  kiln_rt_status st = launch_units(c, first, end);
  int r = cu->capture_end(x->stream, &graph);
  if (st || r || !graph) {
    if (graph) cu->graph_destroy(graph);
    c->err[0] = '\0'; /* the stretch runs eagerly now; its own errors are reported then */
    return -1;
  }
  r = cu->graph_instantiate(&x->exec[s], graph, 0);
  cu->graph_destroy(graph);
  if (r) x->exec[s] = NULL;
  c->err[0] = '\0'; /* a launch that failed inside the capture is not this run's error */
  return r ? -1 : 0;
}

static kiln_rt_status run_stretch(kiln_rt_context *c, int s, int first, int end, int graphs) {
  rt_cuda_ctx *x = c->cuda;
  if (graphs && x->mode[s] == 0 && x->runs > 0) x->mode[s] = capture(c, s, first, end) == 0 ? 1 : -1;
  if (!graphs || x->mode[s] != 1) return launch_units(c, first, end);
  int r = c->model->cuda->cu->graph_launch(x->exec[s], x->stream);
  if (!r) return KILN_RT_OK;
  char name[96], e1[RT_ESC_BYTES], e2[RT_ESC_BYTES];
  const Kiln__Rt__Plan *p = c->model->plan;
  rt_cu_result(r, name, sizeof name);
  return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuGraphLaunch of cuda steps %d..%d (nodes '%s'..'%s') "
                     "failed: %s", (int)p->schedule[first]->index, (int)p->schedule[end - 1]->index,
                     rt_escape(p->schedule[first]->node, e1), rt_escape(p->schedule[end - 1]->node, e2), name);
}

/* The CPU steps' kind of failure, from the plan's step list (k-th step not on the device). */
static const char *cpu_step_failure(const Kiln__Rt__Plan *p, int k) {
  for (size_t i = 0; i < p->n_steps; i++)
    if (side_of(p, p->steps[i]->device) != SIDE_CUDA && k-- == 0)
      return strcmp(p->steps[i]->op, "gather") == 0 ? "an index is out of range" : "integer division by zero";
  return "integer division by zero";
}

static kiln_rt_status run_unit(kiln_rt_context *c, int *u, int graphs) {
  const kiln_rt_model *m = c->model;
  const Kiln__Rt__Unit *unit = m->plan->schedule[*u];
  char esc[RT_ESC_BYTES];
  int r = 0;
  if (unit->kind == KILN__RT__UNIT__KIND__UNIT_CUDA_STEP) {
    int s = m->cuda->stretch_of[*u], end = m->cuda->stretch_end[s], first = *u;
    *u = end - 1;
    return run_stretch(c, s, first, end, graphs);
  }
  kiln_rt_status st = sync_host(c);
  if (st) return st;
  if (unit->kind == KILN__RT__UNIT__KIND__UNIT_CPU_STEP) {
    r = m->step(unit->index, c->in_ptrs, c->out_ptrs, c->arena, m->weights);
    if (r == 0) return KILN_RT_OK;
    return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cpu step %d (node '%s'): %s", unit->index,
                       rt_escape(unit->node, esc), cpu_step_failure(m->plan, unit->index));
  }
  /* An HtoD copy out of the CPU arena is asynchronous, and a later CPU step may reuse
   * those bytes (the memory plan frees them after the transfer) without a sync: safe
   * only because the arena is pageable, so the driver has taken the bytes when the call
   * returns. Making the arena pinned needs a pending-HtoD sync here, as for DtoH. */
  const Kiln__Rt__Operand *s = unit->src, *d = unit->dst;
  int sd = strcmp(s->device, "cpu:0") != 0, dd = strcmp(d->device, "cpu:0") != 0;
  r = copy_any(c, dd ? NULL : host_addr(c, d), dd ? dev_addr(c, d) : 0, sd ? NULL : host_addr(c, s),
               sd ? dev_addr(c, s) : 0, (size_t)s->bytes, dd, sd);
  if (!r) return KILN_RT_OK;
  char name[96];
  rt_cu_result(r, name, sizeof name);
  return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "copy unit %d (node '%s', %s to %s) failed: %s", *u,
                     rt_escape(unit->node, esc), s->device, d->device, name);
}

/* Output j from where its value is to the caller's buffer. CPU-side values wait for
 * the host (late = 1 pass, after the final synchronize). */
static kiln_rt_status fetch_output(kiln_rt_context *c, int j, const kiln_rt_buffer *b, int on_dev, int late) {
  const Kiln__Rt__Operand *v = c->model->plan->output_values[j];
  int vd = strcmp(v->device, "cpu:0") != 0;
  if (vd == late) return KILN_RT_OK;
  rt_cuptr src = vd ? dev_addr(c, v) : 0, dst = (rt_cuptr)(uintptr_t)b->data;
  if (vd && on_dev && src == dst) return KILN_RT_OK; /* the kernels wrote it there */
  c->cuda->late_copies |= late && on_dev;
  int r = copy_any(c, b->data, dst, vd ? NULL : host_addr(c, v), src, (size_t)v->bytes, on_dev, vd);
  if (!r) return KILN_RT_OK;
  char name[96], esc[RT_ESC_BYTES];
  rt_cu_result(r, name, sizeof name);
  return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "copying output %d '%s' to the caller failed: %s", j,
                     rt_escape(c->model->outputs[j].name, esc), name);
}

static kiln_rt_status finish(kiln_rt_context *c, const kiln_rt_buffer *out, const unsigned char *mem) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda;
  kiln_rt_status st = KILN_RT_OK;
  for (int j = 0; j < m->n_outputs && !st; j++)
    st = fetch_output(c, j, &out[j], mem && mem[j] == KILN_RT_MEMORY_DEVICE, 0);
  if (st) return st;
  x->error_host = 0;
  int r = cm->error_word ? cm->cu->dtoh_async(&x->error_host, cm->error_word, 4, x->stream) : 0;
  if (r) return run_cu_fail(c, r, "cuMemcpyDtoHAsync of kiln_error", -1);
  x->pending_host = 1;
  if ((st = sync_host(c))) return st;
  for (int j = 0; j < m->n_outputs && !st; j++)
    st = fetch_output(c, j, &out[j], mem && mem[j] == KILN_RT_MEMORY_DEVICE, 1);
  x->pending_host = x->late_copies; /* host values copied to the device must land first */
  if (!st) st = sync_host(c);
  if (st || x->error_host == 0) return st;
  char esc[RT_ESC_BYTES];
  unsigned e = x->error_host - 1;
  if (e >= m->plan->n_cuda_steps)
    return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "the kernels set kiln_error to %u, which names no cuda step "
                       "(the plan has %zu)", x->error_host, m->plan->n_cuda_steps);
  return rt_ctx_fail(c, KILN_RT_ERR_EXEC, "cuda step %u (node '%s'): integer division by zero", e,
                     rt_escape(m->plan->cuda_steps[e]->node, esc));
}

static kiln_rt_status run_all(kiln_rt_context *c, const kiln_rt_buffer *in, const kiln_rt_buffer *out,
                              const kiln_rt_run_options *opt) {
  const kiln_rt_model *m = c->model;
  const rt_cuda_model *cm = m->cuda;
  rt_cuda_ctx *x = c->cuda;
  const unsigned char *imem = opt ? opt->input_memory : NULL, *omem = opt ? opt->output_memory : NULL;
  int graphs = x->graphs && !(opt && opt->no_cuda_graphs);
  kiln_rt_status st = stage_inputs(c, in, imem);
  if (st) return st;
  place_outputs(c, out, omem);
  x->late_copies = 0;
  /* The io table goes up only when a pointer changed (a caller reusing its buffers, or
   * host buffers behind fixed staging, pays nothing); pageable HtoD copies take their
   * bytes before returning, so dev_io may change after the call. */
  size_t table = (size_t)cm->n_io * sizeof(rt_cuptr);
  int r = 0;
  if (!x->io_sent_ok || memcmp(x->io_sent, x->dev_io, table) != 0) {
    x->io_sent_ok = 0;
    r = cm->cu->htod_async(x->io_table, x->dev_io, table, x->stream);
    if (!r) {
      memcpy(x->io_sent, x->dev_io, table);
      x->io_sent_ok = 1;
    }
  }
  if (!r && cm->error_word) r = cm->cu->memset32_async(cm->error_word, 0, 1, x->stream);
  if (r) return run_cu_fail(c, r, "writing the io table", -1);
  for (int u = 0; u < (int)m->plan->n_schedule && !st; u++) st = run_unit(c, &u, graphs);
  if (!st) st = finish(c, out, omem);
  x->runs++;
  return st;
}

kiln_rt_status rt_cuda_run(kiln_rt_context *c, const kiln_rt_buffer *in, int ni, const kiln_rt_buffer *out,
                           int no, const kiln_rt_run_options *opt) {
  rt_cuda_ctx *x = c->cuda;
  if (x->broken) return rt_ctx_fail(c, x->broken, "%s", x->broken_msg);
  kiln_rt_status st = rt_check_run_args(c, in, ni, out, no, opt ? opt->input_memory : NULL,
                                        opt ? opt->output_memory : NULL);
  if (st) return st;
  rt_cuda_model *cm = c->model->cuda;
  int r = cm->cu->ctx_push(cm->ctx);
  if (r) return run_cu_fail(c, r, "cuCtxPushCurrent", -1);
  if (cm->error_word) pthread_mutex_lock(&cm->error_lock);
  st = run_all(c, in, out, opt);
  if (st) {
    /* nothing may still be in flight on the caller's buffers when the call returns */
    r = cm->cu->stream_sync(x->stream);
    if (r) {
      char name[96];
      rt_cu_result(r, name, sizeof name);
      x->broken = st;
      rt_fmt(x->broken_msg, sizeof x->broken_msg, "%s (the device faulted: %s; this context is "
             "unusable, destroy it)", c->err, name);
      rt_fmt(c->err, sizeof c->err, "%s", x->broken_msg);
    }
  }
  if (cm->error_word) pthread_mutex_unlock(&cm->error_lock);
  x->pending_host = 0;
  void *prev = NULL;
  cm->cu->ctx_pop(&prev);
  return st;
}

/* ---------------------------------------------------------------- device memory -- */

const char *kiln_rt_model_device(const kiln_rt_model *m) {
  if (!m || m->status != KILN_RT_OK) return "";
  return m->cuda ? m->device : "cpu:0";
}

static kiln_rt_status with_ctx(kiln_rt_model *m, const rt_cu_api **cu) {
  if (!m || m->status != KILN_RT_OK || !m->cuda) return KILN_RT_ERR_ARGUMENT;
  *cu = m->cuda->cu;
  return (*cu)->ctx_push(m->cuda->ctx) ? KILN_RT_ERR_DEVICE : KILN_RT_OK;
}

static kiln_rt_status pop_with(const rt_cu_api *cu, int r) {
  void *prev = NULL;
  cu->ctx_pop(&prev);
  if (r == RT_CU_ERROR_OUT_OF_MEMORY) return KILN_RT_ERR_NOMEM;
  return r ? KILN_RT_ERR_DEVICE : KILN_RT_OK;
}

kiln_rt_status kiln_rt_device_alloc(kiln_rt_model *m, size_t nbytes, void **dptr) {
  const rt_cu_api *cu = NULL;
  if (!dptr) return KILN_RT_ERR_ARGUMENT;
  *dptr = NULL;
  kiln_rt_status st = with_ctx(m, &cu);
  if (st) return st;
  rt_cuptr p = 0;
  int r = cu->mem_alloc(&p, nbytes ? nbytes : 1);
  if (!r) *dptr = (void *)(uintptr_t)p;
  return pop_with(cu, r);
}

kiln_rt_status kiln_rt_device_free(kiln_rt_model *m, void *dptr) {
  const rt_cu_api *cu = NULL;
  if (!dptr) return KILN_RT_OK;
  kiln_rt_status st = with_ctx(m, &cu);
  return st ? st : pop_with(cu, cu->mem_free((rt_cuptr)(uintptr_t)dptr));
}

kiln_rt_status kiln_rt_device_copy(kiln_rt_model *m, void *dst, int dst_memory, const void *src,
                                   int src_memory, size_t nbytes) {
  const rt_cu_api *cu = NULL;
  if ((nbytes && (!dst || !src)) || (unsigned)dst_memory > 1 || (unsigned)src_memory > 1)
    return KILN_RT_ERR_ARGUMENT;
  kiln_rt_status st = with_ctx(m, &cu);
  if (st || nbytes == 0) return st ? st : pop_with(cu, 0);
  rt_cuptr d = (rt_cuptr)(uintptr_t)dst, s = (rt_cuptr)(uintptr_t)src;
  int r = 0;
  if (dst_memory && src_memory) r = cu->dtod(d, s, nbytes);
  else if (dst_memory) r = cu->htod(d, src, nbytes);
  else if (src_memory) r = cu->dtoh(dst, s, nbytes);
  else memmove(dst, src, nbytes);
  /* cuMemcpyDtoD, and cuMemcpyHtoD from pageable memory, may return before the bytes
   * land; they run on the legacy stream, which the contexts' non-blocking streams do not
   * wait for: wait here (that stream only, not every stream of the shared context). */
  if (!r && dst_memory) r = cu->stream_sync(NULL);
  return pop_with(cu, r);
}
