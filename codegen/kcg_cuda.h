/* kcg_cuda.h — the CUDA target's code generation (codegen/cuda): CUDA C for the nodes a
 * graph places on cuda:N, one kernel per step, compiled by NVRTC (opened with dlopen at
 * run time of the compiler, so nothing here links CUDA). Prefix kcg_cuda_ / kcg_nvrtc_.
 * Depends on ir/ and passes/ (reads the placement and the memory plan) and libc/libdl. */
#ifndef KCG_CUDA_H
#define KCG_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../ir/kir.h"
#include "../passes/kps.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- kernel ABI ----
 * Every generated kernel is
 *   extern "C" __global__ void kiln_kSTEP(unsigned char *arena,
 *                                         const unsigned char *weights,
 *                                         void *const *io)
 * arena:   this device's arena (the memory plan's arena for the node's device),
 * weights: the device copy of the artifact's weights (constants the device reads),
 * io:      device array of the caller's buffers: graph inputs (placeholders, in node
 *          order) then outputs (in output order), as kiln_entry of the C target.
 * Each operand's address is baked into the kernel as base + byte offset, from the plan
 * (KPS_LOC_ARENA: arena + offset; KPS_LOC_WEIGHTS: weights + offset; KPS_LOC_INPUT and
 * graph outputs: io[index]). Launch: `grid` blocks of `block` threads, no dynamic shared
 * memory, on the model's stream. A kernel never reads or writes outside its operands.
 * Every translation unit also defines `__device__ unsigned int kiln_error` (the name
 * below): a kernel meeting a run-time error (integer division by zero) sets it, if still
 * 0, to its step index + 1. The runner zeroes it before a run and reads it after. */
#define KCG_CUDA_ERROR_WORD "kiln_error"

/* Where a step's operand lives. */
typedef enum kcg_cuda_where {
  KCG_CUDA_ARENA = 1,   /* arena of `device` + offset */
  KCG_CUDA_WEIGHTS = 2, /* weights + offset */
  KCG_CUDA_IO = 3       /* io[index] (+ offset 0) */
} kcg_cuda_where;

typedef struct kcg_cuda_operand {
  kcg_cuda_where where;
  int32_t index;  /* io index for KCG_CUDA_IO, else -1 */
  int64_t offset; /* byte offset for ARENA / WEIGHTS, else 0 */
  int64_t bytes;  /* size of the tensor */
} kcg_cuda_operand;

typedef enum kcg_cuda_step_kind {
  KCG_CUDA_STEP_KERNEL = 1, /* launch the generated kernel `kernel` */
  KCG_CUDA_STEP_GEMM = 2,   /* cuBLASLt matmul (see gemm), then `kernel` if not "" */
  KCG_CUDA_STEP_CONV = 3    /* cuDNN convolution forward (see conv), then `kernel` if not "" */
} kcg_cuda_step_kind;

/* A GEMM through cuBLASLt, row-major: for each of `batch` matrices,
 * D[m, n] = op(A)[m, k] * op(B)[k, n] (+ bias[n]) (relu), op = transpose when trans_*.
 * Strides are in elements between consecutive matrices (0: the same matrix for every
 * batch: broadcast). Epilogues cuBLASLt cannot do (any other step) run in `kernel`
 * after it, reading D in place. */
typedef struct kcg_cuda_gemm {
  kiln_dtype dtype; /* f32 or f64 */
  int64_t m, n, k, batch;
  bool trans_a, trans_b;
  int64_t stride_a, stride_b, stride_d;
  kcg_cuda_operand a, b, d;
  bool has_bias;         /* bias[n] added by cuBLASLt (CUBLASLT_EPILOGUE_BIAS) */
  kcg_cuda_operand bias; /* valid when has_bias */
  bool relu;             /* CUBLASLT_EPILOGUE_RELU(_BIAS) */
} kcg_cuda_gemm;

/* A convolution through cuDNN (cross-correlation, zero padding, as ops.def's conv):
 * x [n, c, in...] row-major (NCHW / NCDHW, packed), w [k, c / groups, filter...],
 * y [n, k, out...], out[i] = (in[i] + 2 pads[i] - dilations[i] (filter[i] - 1) - 1) /
 * strides[i] + 1. Only the first `spatial` entries of the arrays are used. Everything
 * after the convolution (conv's bias, fused_conv's epilogue) runs in `kernel` after it,
 * reading y in place: cuDNN's own epilogues are never used. */
typedef struct kcg_cuda_conv {
  kiln_dtype dtype; /* f32 or f64 */
  int32_t spatial;  /* 1..3 */
  int64_t n, c, k, groups;
  int64_t in[3], filter[3], out[3];
  int64_t pads[3], strides[3], dilations[3];
  kcg_cuda_operand x, w, y;
} kcg_cuda_conv;

typedef struct kcg_cuda_step {
  kcg_cuda_step_kind kind;
  int32_t node;      /* the graph node this step computes */
  int32_t device;    /* N of cuda:N */
  char kernel[32];   /* "kiln_k12", or "" for a GEMM / conv without a follow-up kernel */
  int64_t grid;      /* blocks (>= 1) */
  int32_t block;     /* threads per block (32 .. 1024, a multiple of 32) */
  kcg_cuda_gemm gemm; /* KCG_CUDA_STEP_GEMM only */
  kcg_cuda_conv conv; /* KCG_CUDA_STEP_CONV only */
} kcg_cuda_step;

/* The CUDA side of a program: one translation unit with every kernel (each starting with
 * a comment naming its source nodes, shapes and dtypes, as the C target does), and the
 * steps in execution order. Deterministic: the same graph and plan give the same bytes. */
typedef struct kcg_cuda_program {
  char *source; /* NUL-terminated; kir_malloc */
  kcg_cuda_step *steps;
  int32_t n_steps;
  bool sets_error; /* some kernel may set KCG_CUDA_ERROR_WORD (the runtime reads it then) */
} kcg_cuda_program;

/* CUDA C for every node of g whose assigned_device is cuda:N that computes something
 * (constants, placeholders, reshape/identity that alias, transfers and control ops are
 * not steps here: the runtime moves data between devices for transfer nodes). g is
 * verified, optimized, placed; plan from kps_plan_memory over the same outputs (node ids,
 * the io order after the placeholders). A node on cuda with no CUDA kernel is
 * KILN_ERR_UNSUPPORTED naming it and its op. Errors set on g. */
kiln_status kcg_cuda_generate(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                              int32_t n_outputs, kcg_cuda_program *out);
void kcg_cuda_program_free(kcg_cuda_program *p); /* accepts a zeroed program */

/* ---------------------------------------------------------------- NVRTC --------- */
/* NVRTC is opened with dlopen ("libnvrtc.so.13", then .12, then "libnvrtc.so"; the
 * directory KILN_CUDA_HOME or /usr/local/cuda/lib64 is tried as well). */

/* True when NVRTC can be opened; otherwise why (e.g. "libnvrtc.so.13: cannot open
 * shared object file") in why. Thread-safe; opens once per process. */
bool kcg_nvrtc_available(char *why, size_t why_n);
/* "13.0" style version of the NVRTC in use, or "" when unavailable. */
const char *kcg_nvrtc_version(void);

/* A compiled image: cubin for a real architecture ("sm_90"), PTX for a virtual one
 * ("compute_90"). */
typedef struct kcg_nvrtc_image {
  char arch[16];        /* as asked: "sm_80", "sm_90", "compute_90" */
  bool ptx;             /* true for a compute_NN architecture */
  unsigned char *data;  /* kir_malloc; PTX includes its terminating NUL */
  size_t size;
  uint8_t hash[32];     /* SHA-256 of data, as the artifact records it */
  bool from_cache;      /* read from the cache instead of compiled */
} kcg_nvrtc_image;

typedef struct kcg_nvrtc_options {
  /* Cache directory for compiled images, keyed by SHA-256 of NVRTC version, options,
   * architecture and source. NULL: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln/nvrtc,
   * else $HOME/.cache/kiln/nvrtc; "" disables the cache. Entries are written to a temp
   * file and renamed; an entry that does not read back whole is recompiled. */
  const char *cache_dir;
  bool warnings_are_errors; /* a compile log with "warning" fails (the tests set it) */
  FILE *log;                /* one line per compile / cache hit, with the time; may be NULL */
} kcg_nvrtc_options;

/* True when kcg_nvrtc_compile takes arch: "sm_NN" or "compute_NN" (NN two or three
 * digits, optionally followed by "a" or "f"), shorter than kcg_nvrtc_image.arch; *ptx
 * (may be NULL) is set for a compute_NN (virtual) architecture. */
bool kcg_nvrtc_arch_valid(const char *arch, bool *ptx);

/* Compiles source (name `name` in messages, e.g. "model.cu") for each of archs[0..n)
 * into images[0..n). On a compile error: KILN_ERR_COMPILE with NVRTC's whole log and,
 * for each error line the log points at, that source line with its number, in g's error
 * (cut to fit; the full text goes to opt->log as well). NVRTC missing:
 * KILN_ERR_UNSUPPORTED saying which library could not be opened. On failure no image is
 * left allocated. NVRTC options: --gpu-architecture=ARCH --std=c++17
 * --device-as-default-execution-space; never --use_fast_math (results must match the
 * reference interpreter). */
kiln_status kcg_nvrtc_compile(kir_graph *g, const char *source, const char *name,
                              const char *const *archs, int32_t n_archs,
                              const kcg_nvrtc_options *opt, kcg_nvrtc_image *images);
void kcg_nvrtc_image_free(kcg_nvrtc_image *img); /* accepts a zeroed image */

#ifdef __cplusplus
}
#endif
#endif
