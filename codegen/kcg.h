/* kcg.h — lowering an optimized graph to code and packing artifacts. Prefix kcg_.
 * Depends on ir/ and passes/ (reads their results) and on the runtime's artifact
 * container (runtime/kiln_artifact.h) to write files the runtime reads. The C target
 * lives in codegen/c/; a CUDA target will sit beside it in codegen/cuda/. */
#ifndef KCG_H
#define KCG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/kir.h"
#include "../passes/kps.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kcg_options {
  const char *cc;        /* C compiler; NULL = $CC or "cc" */
  const char *opt_flags; /* NULL = "-O2" */
  const char *pipeline;  /* recorded in the plan (which passes ran); may be NULL */
  FILE *log;             /* compiler command lines and timings; may be NULL */
  /* Instruction set of the compiled code: NULL or "host" = this machine's
   * (-march=native), "generic" = portable x86-64 (-march=x86-64 -mtune=generic).
   * Recorded in the plan's pipeline string. */
  const char *cpu;
  /* kcg_compile_cuda only: the NVRTC architectures, comma-separated; NULL =
   * "sm_80,sm_90,compute_90" (cubins for A100 and H100/H200, PTX for newer chips). */
  const char *cuda_archs;
  /* kcg_compile_cuda only: the NVRTC cache directory (kcg_nvrtc_options.cache_dir:
   * NULL = the default, "" = no cache). */
  const char *nvrtc_cache;
} kcg_options;

/* The C program for g: one static function per step (each starting with a comment
 * naming its source nodes, shapes and dtypes), and the exported entry
 *   int kiln_entry(const void *const *inputs, void *const *outputs,
 *                  unsigned char *arena, const unsigned char *weights);
 * plus `const unsigned kiln_abi_version`. Inputs are g's placeholders in node order;
 * outputs are `outputs` (node ids) in the given order. Deterministic: the same graph
 * gives the same bytes. Model strings appear only inside escaped comments/literals;
 * identifiers come from the generator. *src through kir_malloc (caller kir_free's). */
kiln_status kcg_c_generate(kir_graph *g, const kps_memplan *plan,
                           const int32_t *outputs, int32_t n_outputs, char **src);

/* Lowers g (verified, optimized, placed) for the CPU: plans memory, generates C,
 * compiles it with the system compiler into a shared object (-fPIC -shared, linked
 * with OpenBLAS; -fopenmp when the code has parallel loops; opt_flags after -march, so
 * they may override it), and writes one artifact file (plan, weights, code, source)
 * atomically. A constant [K, N] right operand used only by one-row matmuls is stored
 * transposed (the kernel then runs a GEMV over contiguous rows).
 * outputs are node names. Variables are refused (KILN_ERR_UNSUPPORTED naming the node:
 * freeze the graph first). Compiler failure is KILN_ERR_COMPILE with the compiler's
 * first lines of output in the message. Temp files are removed on every path. */
kiln_status kcg_compile_cpu(kir_graph *g, const char *const *outputs, int32_t n_outputs,
                            const kcg_options *opt, const char *artifact_path);

/* Lowers g (verified, optimized, placed over cpu:0 and one cuda:N, e.g. by the default
 * pipeline with kps_context.devices {"cpu:0", "cuda:0"}) for the CUDA target and writes
 * one artifact (target "cuda"): plan memory (an arena per device), CUDA C for the steps
 * on cuda:N (kcg_cuda_generate) compiled by NVRTC for opt->cuda_archs, C for the steps
 * on cpu:0 compiled as kcg_compile_cpu does but exporting kiln_step (one CPU step per
 * call; no code section when no step runs on the CPU), and the plan's schedule: every
 * CPU step, CUDA step and transfer copy in graph order. Sections: plan, weights, code
 * (when CPU steps), source/c (when CPU steps), code/cuda (the images back to back),
 * source/cuda. Steps placed on two different CUDA devices are KILN_ERR_UNSUPPORTED
 * (one GPU per artifact). NVRTC missing: KILN_ERR_UNSUPPORTED saying which library.
 * Written atomically; errors set on g (the graph itself is not changed). */
kiln_status kcg_compile_cuda(kir_graph *g, const char *const *outputs, int32_t n_outputs,
                             const kcg_options *opt, const char *artifact_path);

/* Standalone C (`kiln compile --emit-c DIR`): where the weights go. */
typedef enum kcg_weights_mode {
  KCG_WEIGHTS_C_ARRAY = 0, /* a static const, 64-byte aligned array inside PREFIX.c */
  KCG_WEIGHTS_FILE = 1     /* PREFIX.weights, passed to PREFIX_run by the caller */
} kcg_weights_mode;

/* True when prefix can name the standalone files and identifiers: [A-Za-z][A-Za-z0-9_]*,
 * at most 32 bytes (no leading underscore: such names are reserved in C). */
bool kcg_c_prefix_valid(const char *prefix);

/* Lowers g (verified, optimized, placed on cpu:0) as kcg_compile_cpu does, but writes
 * DIR/PREFIX.c, DIR/PREFIX.h (and DIR/PREFIX.weights for KCG_WEIGHTS_FILE): C11 that
 * needs only <math.h>, <stdint.h>, <string.h> and cblas, with one entry PREFIX_run
 * over caller-provided buffers (no malloc, no stdio, no global mutable state; see the
 * generated header's comment). dir must be an existing directory. Each file is written
 * to a temp file and renamed; on failure no file is left. Deterministic bytes. prefix
 * NULL = "model". Errors set on g. */
kiln_status kcg_emit_c(kir_graph *g, const char *const *outputs, int32_t n_outputs,
                       const char *prefix, kcg_weights_mode weights, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
