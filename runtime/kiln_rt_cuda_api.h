/* kiln_rt_cuda_api.h — private to libkiln_rt: the CUDA driver entry points the executor
 * calls, declared here as the driver exports them (never cuda.h) and found with dlsym by
 * kiln_rt_cuda.c, which opens the driver once per process; and the executor's cuDNN
 * wrapper (kiln_rt_cudnn.c, never cudnn.h). Plain libc types only. */
#ifndef KILN_RT_CUDA_API_H
#define KILN_RT_CUDA_API_H

#include <stddef.h>

#define RT_CU_HIDDEN __attribute__((visibility("hidden")))

typedef unsigned long long rt_cuptr; /* CUdeviceptr on 64-bit hosts */

/* CUresult values the runtime tells apart (cuda.h). */
enum {
  RT_CU_SUCCESS = 0,
  RT_CU_ERROR_OUT_OF_MEMORY = 2,
  RT_CU_ERROR_UNSUPPORTED_PTX_VERSION = 222,
  RT_CU_ERROR_NOT_FOUND = 500
};
/* CUdevice_attribute, CUstream_flags, CUstreamCaptureMode values (cuda.h). */
enum {
  RT_CU_ATTR_CC_MAJOR = 75,
  RT_CU_ATTR_CC_MINOR = 76,
  RT_CU_STREAM_NON_BLOCKING = 1,
  RT_CU_CAPTURE_THREAD_LOCAL = 1
};

/* Every function returns a CUresult (an int at the ABI); handles are opaque pointers,
 * CUdevice an int. The comment is the exported symbol. */
typedef struct rt_cu_api {
  int (*init)(unsigned flags);                           /* cuInit */
  int (*driver_version)(int *version);                   /* cuDriverGetVersion */
  int (*device_count)(int *count);                       /* cuDeviceGetCount */
  int (*error_name)(int result, const char **name);      /* cuGetErrorName (optional) */
  int (*device_get)(int *dev, int ordinal);              /* cuDeviceGet */
  int (*device_attribute)(int *v, int attr, int dev);    /* cuDeviceGetAttribute */
  int (*device_name)(char *name, int len, int dev);      /* cuDeviceGetName */
  int (*primary_retain)(void **ctx, int dev);            /* cuDevicePrimaryCtxRetain */
  int (*primary_release)(int dev);                       /* cuDevicePrimaryCtxRelease_v2 */
  int (*ctx_push)(void *ctx);                            /* cuCtxPushCurrent_v2 */
  int (*ctx_pop)(void **ctx);                            /* cuCtxPopCurrent_v2 */
  int (*ctx_sync)(void);                                 /* cuCtxSynchronize */
  int (*mem_alloc)(rt_cuptr *p, size_t n);               /* cuMemAlloc_v2 */
  int (*mem_free)(rt_cuptr p);                           /* cuMemFree_v2 */
  int (*htod)(rt_cuptr dst, const void *src, size_t n);  /* cuMemcpyHtoD_v2 */
  int (*dtoh)(void *dst, rt_cuptr src, size_t n);        /* cuMemcpyDtoH_v2 */
  int (*dtod)(rt_cuptr dst, rt_cuptr src, size_t n);     /* cuMemcpyDtoD_v2 */
  int (*htod_async)(rt_cuptr dst, const void *src, size_t n, void *stream); /* cuMemcpyHtoDAsync_v2 */
  int (*dtoh_async)(void *dst, rt_cuptr src, size_t n, void *stream);       /* cuMemcpyDtoHAsync_v2 */
  int (*dtod_async)(rt_cuptr dst, rt_cuptr src, size_t n, void *stream);    /* cuMemcpyDtoDAsync_v2 */
  int (*memset32_async)(rt_cuptr dst, unsigned v, size_t n, void *stream);  /* cuMemsetD32Async */
  int (*stream_create)(void **stream, unsigned flags);   /* cuStreamCreate */
  int (*stream_destroy)(void *stream);                   /* cuStreamDestroy_v2 */
  int (*stream_sync)(void *stream);                      /* cuStreamSynchronize */
  int (*module_load)(void **mod, const void *image);     /* cuModuleLoadData */
  int (*module_unload)(void *mod);                       /* cuModuleUnload */
  int (*module_function)(void **fn, void *mod, const char *name);            /* cuModuleGetFunction */
  int (*module_global)(rt_cuptr *p, size_t *n, void *mod, const char *name); /* cuModuleGetGlobal_v2 */
  int (*launch)(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                unsigned bz, unsigned shared, void *stream, void **params, void **extra); /* cuLaunchKernel */
  int (*capture_begin)(void *stream, int mode);          /* cuStreamBeginCapture_v2 */
  int (*capture_end)(void *stream, void **graph);        /* cuStreamEndCapture */
  int (*graph_instantiate)(void **exec, void *graph, unsigned long long flags); /* cuGraphInstantiateWithFlags */
  int (*graph_launch)(void *exec, void *stream);         /* cuGraphLaunch */
  int (*graph_exec_destroy)(void *exec);                 /* cuGraphExecDestroy */
  int (*graph_destroy)(void *graph);                     /* cuGraphDestroy */
} rt_cu_api;

/* The driver with every entry point above, opened once per process; NULL with the
 * reason in why (no driver, no device, a driver lacking an entry point). *count gets
 * the number of devices (0 on failure). Thread-safe. */
RT_CU_HIDDEN const rt_cu_api *rt_cu_driver(int *count, char *why, size_t why_n);
/* A CUDA library's entry point: its name and where its pointer goes in a table. */
typedef struct rt_dl_sym {
  const char *name;
  size_t offset;
} rt_dl_sym;
/* Opens a CUDA library for good (as the driver stays open): $env when set, else each of
 * names[0..n_names) in turn; fills table's function pointers from syms. 0, or -1 with
 * why: "no LABEL (WHAT): <dlerror of the first name>" or "PATH is not LABEL: it has no
 * SYMBOL". */
RT_CU_HIDDEN int rt_dl_open_table(const char *env, const char *const *names, size_t n_names,
                                  const rt_dl_sym *syms, size_t n_syms, void *table,
                                  const char *label, const char *what, char *why, size_t why_n,
                                  void **handle);
/* "CUDA_ERROR_OUT_OF_MEMORY", or "CUresult 2" when the driver cannot name it. */
RT_CU_HIDDEN void rt_cu_result(int r, char *out, size_t n);

/* ---- cuDNN (kiln_rt_cudnn.c), for conv steps. Every int-returning call answers a
 * cudnnStatus_t (0 = success); `call` gets the name of the cuDNN function that failed. */

/* A conv step's geometry, validated by the executor (every value fits cuDNN's int). */
typedef struct rt_dnn_geom {
  int f64, spatial; /* spatial: 1..3 */
  int n, c, k, groups;
  int in[3], filter[3], out[3], pads[3], strides[3], dilations[3];
} rt_dnn_geom;

/* One conv's descriptors (x, w, y, convolution), its algorithm and workspace bytes. */
typedef struct rt_dnn_conv {
  void *x, *w, *y, *conv;
  int algo, f64;
  size_t workspace;
} rt_dnn_conv;

/* Opens cuDNN once per process ($KILN_CUDNN, else libcudnn.so.9, else libcudnn.so): 0,
 * or -1 with why ("no cuDNN ...: <dlerror>", "<path> is not cuDNN: it has no <symbol>"). */
RT_CU_HIDDEN int rt_dnn_open(char *why, size_t n);
/* cudnnGetErrorString's name for status, or "cudnnStatus N". */
RT_CU_HIDDEN void rt_dnn_error(int status, char *out, size_t n);
/* A handle (in the current CUDA context) on stream (NULL: the default stream). */
RT_CU_HIDDEN int rt_dnn_handle(void **h, void *stream, const char **call);
RT_CU_HIDDEN void rt_dnn_handle_destroy(void *h); /* accepts NULL */
/* Descriptors as the geometry says (cross-correlation, FMA math: never TF32), and the
 * first algorithm cudnnGetConvolutionForwardAlgorithm_v7 ranks that succeeds, with its
 * workspace. On failure c holds what was made: rt_dnn_release it. */
RT_CU_HIDDEN int rt_dnn_prepare(void *h, const rt_dnn_geom *g, rt_dnn_conv *c, const char **call);
RT_CU_HIDDEN void rt_dnn_release(rt_dnn_conv *c); /* accepts NULL and a zeroed conv */
/* y = conv(x, w) (alpha 1, beta 0) on h's stream, with ws_n bytes of workspace at ws. */
RT_CU_HIDDEN int rt_dnn_forward(void *h, const rt_dnn_conv *c, rt_cuptr x, rt_cuptr w, rt_cuptr y,
                                rt_cuptr ws, size_t ws_n);

#endif
