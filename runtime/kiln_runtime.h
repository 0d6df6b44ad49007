/* kiln_runtime.h — libkiln_rt: load a Kiln artifact and run it. Self-contained: this
 * header and the library never include anything from ir/, frontend/, passes/ or
 * codegen/ (a build check proves it), so a deployment carries only libkiln_rt and the
 * artifact file.
 *
 * Conventions
 * - Handles are opaque. kiln_rt_model is immutable after open and may be shared by
 *   threads; each thread runs through its own kiln_rt_context (which owns the arena).
 * - Every fallible call returns a kiln_rt_status. The message is kept on the handle
 *   (kiln_rt_model_error / kiln_rt_context_error) and names the file, section, tensor or
 *   field and the value. kiln_rt_model_open gives a handle even on failure (as
 *   sqlite3_open does), so the message can be read; close it either way.
 * - Destroy/close functions accept NULL.
 * - The library never exits, aborts or prints.
 * - Tensors are dense, row-major, little-endian; the caller owns every buffer passed in.
 *
 * Example
 *   kiln_rt_model *m; kiln_rt_context *c;
 *   if (kiln_rt_model_open("mlp.kart", &m) != KILN_RT_OK) {
 *     fprintf(stderr, "%s\n", kiln_rt_model_error(m)); kiln_rt_model_close(m); return 1; }
 *   kiln_rt_context_create(m, &c);
 *   kiln_rt_buffer in = {x, sizeof x}, out = {y, sizeof y};
 *   if (kiln_rt_run(c, &in, 1, &out, 1) != KILN_RT_OK) puts(kiln_rt_context_error(c));
 *   kiln_rt_context_destroy(c); kiln_rt_model_close(m);
 */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same numbers as kiln_status in kiln_types.h (a test checks it). */
typedef enum kiln_rt_status {
  KILN_RT_OK = 0,
  KILN_RT_ERR_ARGUMENT = 1,
  KILN_RT_ERR_FORMAT = 2,
  KILN_RT_ERR_LIMIT = 3,
  KILN_RT_ERR_UNSUPPORTED = 4,
  KILN_RT_ERR_SHAPE = 6,
  KILN_RT_ERR_TYPE = 7,
  KILN_RT_ERR_OVERFLOW = 8,
  KILN_RT_ERR_PATH = 9,
  KILN_RT_ERR_INTEGRITY = 10,
  KILN_RT_ERR_FEED = 11,
  KILN_RT_ERR_NOMEM = 12,
  KILN_RT_ERR_IO = 13,
  KILN_RT_ERR_EXEC = 16,
  KILN_RT_ERR_VERSION = 17,
  KILN_RT_ERR_DEVICE = 19 /* no usable device: no driver, no device, bad index */
} kiln_rt_status;

/* Same numbers as kiln_dtype. */
enum {
  KILN_RT_F32 = 1, KILN_RT_F64 = 2, KILN_RT_I32 = 3, KILN_RT_I64 = 4, KILN_RT_BOOL = 5,
  KILN_RT_U8 = 6, KILN_RT_I8 = 7, KILN_RT_U16 = 8, KILN_RT_I16 = 9, KILN_RT_U32 = 10,
  KILN_RT_U64 = 11,
  KILN_RT_F16 = 12, /* IEEE binary16, 16-bit patterns */
  KILN_RT_BF16 = 13 /* bfloat16, 16-bit patterns */
};
#define KILN_RT_DTYPE_COUNT 14
#define KILN_RT_MAX_RANK 8

typedef struct kiln_rt_model kiln_rt_model;
typedef struct kiln_rt_context kiln_rt_context;

typedef struct kiln_rt_tensor_info {
  const char *name;  /* owned by the model */
  int dtype;         /* KILN_RT_F32 ... */
  int rank;
  const int64_t *dims;
  size_t nbytes;     /* exact byte size of a buffer for it */
} kiln_rt_tensor_info;

typedef struct kiln_rt_buffer {
  void *data;    /* aligned to the dtype's size */
  size_t nbytes; /* must equal the tensor's nbytes */
} kiln_rt_buffer;

/* Opens and fully validates an artifact (header, section table, every section's
 * SHA-256 before any code is loaded, the plan) and loads its code. *out is set even on
 * failure unless memory ran out (then NULL); close it. */
kiln_rt_status kiln_rt_model_open(const char *path, kiln_rt_model **out);
/* Same, from bytes in memory (copied). */
kiln_rt_status kiln_rt_model_open_bytes(const void *bytes, size_t n, kiln_rt_model **out);
void kiln_rt_model_close(kiln_rt_model *m);
const char *kiln_rt_model_error(const kiln_rt_model *m); /* "" if none; NULL m: "out of memory" */

int kiln_rt_model_num_inputs(const kiln_rt_model *m);
int kiln_rt_model_num_outputs(const kiln_rt_model *m);
/* KILN_RT_ERR_ARGUMENT for an index out of range. */
kiln_rt_status kiln_rt_model_input(const kiln_rt_model *m, int i, kiln_rt_tensor_info *info);
kiln_rt_status kiln_rt_model_output(const kiln_rt_model *m, int i, kiln_rt_tensor_info *info);
/* 1 when input i has a default value (an ONNX graph input that is also an initializer),
 * so kiln_rt_run takes a NULL data pointer for it; 0 otherwise or out of range. */
int kiln_rt_model_input_has_default(const kiln_rt_model *m, int i);
/* Index by name, -1 if absent. */
int kiln_rt_model_find_input(const kiln_rt_model *m, const char *name);
int kiln_rt_model_find_output(const kiln_rt_model *m, const char *name);
/* Bytes of the arena each context allocates (the memory plan's peak). */
size_t kiln_rt_model_arena_bytes(const kiln_rt_model *m);
/* "cpu" or "cuda" */
const char *kiln_rt_model_target(const kiln_rt_model *m);
/* Which OpenBLAS kernels the loaded code runs and who chose them, e.g.
 * "Haswell (chosen by kiln from cpuid: avx2+fma)", "SkylakeX (OPENBLAS_CORETYPE set by
 * the user)", "Zen (OpenBLAS was already loaded; kiln chose nothing)". Process-wide
 * (OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded); "" for a failed model. */
const char *kiln_rt_model_blas_core(const kiln_rt_model *m);
/* Process-wide settings made at the first open, before the code's libraries load, and
 * only where the user set nothing: OPENBLAS_CORETYPE from cpuid (above), and
 * OMP_WAIT_POLICY=PASSIVE when libgomp is not loaded yet and neither OMP_WAIT_POLICY
 * nor GOMP_SPINCOUNT is set (spinning OpenMP workers would take the cores OpenBLAS's
 * threads need between loops). Set either variable yourself to keep your own. */

/* One arena allocation, at create; nothing is allocated per run. */
kiln_rt_status kiln_rt_context_create(kiln_rt_model *m, kiln_rt_context **out);
void kiln_rt_context_destroy(kiln_rt_context *c);
/* The last run's message; for c == NULL, why this thread's last kiln_rt_context_create
 * failed ("no context: cuda:0: cuMemAlloc of the device arena failed: ...", as dlerror
 * keeps its message per thread), since a failed create returns no handle. */
const char *kiln_rt_context_error(const kiln_rt_context *c);

/* Runs the model: inputs and outputs in the model's order, every buffer of exactly the
 * tensor's nbytes, non-NULL and aligned to its element size (KILN_RT_ERR_FEED naming the
 * tensor and the value otherwise). KILN_RT_ERR_EXEC naming the step on an arithmetic
 * error (integer division by zero) or a gather index out of range.
 * Inputs with a default value (an ONNX graph input that is also an initializer; the
 * compiler stores the value in the artifact) may be given data == NULL: the run then
 * reads the default (nbytes is not checked). NULL data for any other input is
 * KILN_RT_ERR_FEED as before. */
kiln_rt_status kiln_rt_run(kiln_rt_context *c, const kiln_rt_buffer *inputs, int n_inputs,
                           const kiln_rt_buffer *outputs, int n_outputs);

/* ---- CUDA devices ----
 * The CUDA driver (libcuda.so.1, or $KILN_CUDA_DRIVER when set) is opened with dlopen the
 * first time it is needed, never linked: on a machine without CUDA the runtime still
 * runs CPU artifacts, and this answers KILN_RT_ERR_DEVICE saying why. */
/* Number of CUDA devices this process may use (the driver applies CUDA_VISIBLE_DEVICES)
 * into *count (0 on error). msg gets one line: the driver's version and the count, or
 * the reason there is none ("no CUDA driver: libcuda.so.1: cannot open shared object
 * file...", "CUDA driver 13.0 has no device: CUDA_ERROR_NO_DEVICE", "... is not a CUDA
 * driver: it has no cuDeviceGetCount"). Thread-safe; the driver is opened once. */
kiln_rt_status kiln_rt_cuda_devices(int *count, char *msg, size_t msg_n);

/* ---- CUDA artifacts (target "cuda", `kiln compile --target cuda`) ----
 * kiln_rt_model_open of a CUDA artifact opens the driver and cuBLASLt (dlopen), picks the
 * device the plan names (cuda:N among the devices CUDA_VISIBLE_DEVICES leaves; the
 * environment variable KILN_CUDA_DEVICE=N overrides N), checks each kernel image's
 * SHA-256, loads the cubin for the device's compute capability (else the PTX, else
 * KILN_RT_ERR_DEVICE "artifact has no code for sm_NN"), and copies the weights to the
 * device. Without a driver or device it fails with KILN_RT_ERR_DEVICE saying why; device
 * memory exhausted is KILN_RT_ERR_NOMEM. Each context owns a stream, the device arena
 * and staging buffers. kiln_rt_run on a CUDA model takes host buffers; kiln_rt_run_ex
 * says per buffer whether it is host memory or device memory (a CUdeviceptr of the
 * model's device, e.g. from kiln_rt_device_alloc). Copies and kernels run
 * asynchronously on the context's stream; the call returns when the outputs are
 * written. After the first run, each stretch of CUDA steps is replayed as a CUDA graph
 * (KILN_CUDA_GRAPHS=0 in the environment, or the option below, turns that off). A
 * failed launch is KILN_RT_ERR_EXEC naming the step and node; a device fault may leave
 * the context unusable (later runs answer the same error), and the handles stay
 * closable. CPU models take device buffers nowhere: KILN_RT_ERR_ARGUMENT. Contexts of
 * one CUDA model run concurrently, except where its kernels can report integer division
 * by zero (one error word per loaded module): such runs take turns. */
enum { KILN_RT_MEMORY_HOST = 0, KILN_RT_MEMORY_DEVICE = 1 };

typedef struct kiln_rt_run_options {
  const unsigned char *input_memory;  /* per input: KILN_RT_MEMORY_*; NULL: all host */
  const unsigned char *output_memory; /* per output; NULL: all host */
  int no_cuda_graphs;                 /* 1: launch every step, never replay a graph */
} kiln_rt_run_options;

/* kiln_rt_run with options (NULL = kiln_rt_run). */
kiln_rt_status kiln_rt_run_ex(kiln_rt_context *c, const kiln_rt_buffer *inputs, int n_inputs,
                              const kiln_rt_buffer *outputs, int n_outputs,
                              const kiln_rt_run_options *opt);
/* The device a model runs on: "cpu:0", or e.g. "cuda:0 (NVIDIA H200, sm_90, cubin)". */
const char *kiln_rt_model_device(const kiln_rt_model *m);
/* Device memory on a CUDA model's device (KILN_RT_ERR_ARGUMENT for a CPU model). Copies
 * are synchronous; *_memory says which side each pointer is on. */
kiln_rt_status kiln_rt_device_alloc(kiln_rt_model *m, size_t nbytes, void **dptr);
kiln_rt_status kiln_rt_device_free(kiln_rt_model *m, void *dptr); /* NULL: nothing */
kiln_rt_status kiln_rt_device_copy(kiln_rt_model *m, void *dst, int dst_memory, const void *src,
                                   int src_memory, size_t nbytes);

const char *kiln_rt_status_name(kiln_rt_status s);
const char *kiln_rt_dtype_name(int dtype);
size_t kiln_rt_dtype_size(int dtype); /* 0 if invalid */

/* ---- .npy files (NumPy format 1.0/2.0/3.0, little-endian, C order) ---- */
typedef struct kiln_rt_npy {
  int dtype;
  int rank;
  int64_t dims[KILN_RT_MAX_RANK];
  void *data;    /* malloc'd, 64-byte aligned; free with kiln_rt_npy_free */
  size_t nbytes;
} kiln_rt_npy;

/* descr <-> dtype: <f4 <f8 <i4 <i8 |b1 |u1 |i1 <u2 <i2 <u4 <u8 <f2. bf16 has no NumPy
 * type: writing it, or reading anything else, is KILN_RT_ERR_UNSUPPORTED. */
/* Reads a .npy file. Errors (bad magic, header, dtype, fortran order, truncated data,
 * sizes that overflow or disagree with the file) written to err (naming the path and
 * value); the struct is left empty. */
kiln_rt_status kiln_rt_npy_read(const char *path, kiln_rt_npy *out, char *err, size_t errlen);
/* Writes atomically (temp file in the same directory, then rename). */
kiln_rt_status kiln_rt_npy_write(const char *path, int dtype, int rank, const int64_t *dims,
                                 const void *data, char *err, size_t errlen);
void kiln_rt_npy_free(kiln_rt_npy *t); /* accepts NULL; leaves it empty */

#ifdef __cplusplus
}
#endif
#endif
