/* kcg_cuda_internal.h — what the files of codegen/cuda share: the device error word, the
 * launch limits, and the per-step kernel emitter that kcg_cuda_emit.c drives. Reuses the
 * C target's text buffer and name escaping (codegen/c/kcg_c_internal.h). Never included
 * outside codegen/cuda; the runtime repeats what it needs of it (the error word). */
#ifndef KCG_CUDA_INTERNAL_H
#define KCG_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../kcg_cuda.h"
#include "../c/kcg_c_internal.h"

/* ---------------------------------------------------------------- error word ----
 * Every translation unit defines
 *   extern "C" { __device__ unsigned int kiln_error; }
 * A kernel that meets a run-time error (integer division by zero) sets it, if it is
 * still 0, to its step index + 1 (atomicCAS), stores 0 in the element and goes on. The
 * runtime zeroes it before a run (cuModuleGetGlobal + cuMemsetD32) and reads it after the
 * last step: non-zero is KILN_ERR_EXEC naming that step's node, like the C target's
 * `return step + 1`. */
#define KCG_CUDA_ERROR_SYMBOL KCG_CUDA_ERROR_WORD

/* Threads per block of elementwise kernels, and the most blocks any launch asks for
 * (grid-stride loops cover the rest). */
#define KCG_CUDA_BLOCK 256
#define KCG_CUDA_MAX_GRID ((int64_t)65535 * 8)
#define KCG_CUDA_FLAT_GRID ((int64_t)8192) /* launch_flat's cap: 2M threads of 256 */

/* One kernel to emit: the node, where its operands live (from the plan), and what the
 * emitter decides about its launch. */
typedef struct kcg_cuda_kernel {
  kir_graph *g;
  const kir_node *n;
  int32_t step;                 /* index in the program's steps: the name's number */
  const kcg_cuda_operand *in;   /* one per node input */
  kcg_cuda_operand out;
  bool restrict_ok;             /* the output shares no byte with any input */
  bool epilogue_only;           /* fused_matmul after a GEMM, fused_conv / conv (bias) after
                                 * cuDNN: y = epilogue(y) in place */
  bool hoisted;                 /* emitter: single-element chain operands loaded before the loop */
  int64_t grid;                 /* set by the emitter */
  int32_t block;                /* set by the emitter */
} kcg_cuda_kernel;

/* Emits `extern "C" __global__ void kiln_kSTEP(...)` for k->n, preceded by a comment
 * naming its source nodes, shapes and dtypes; sets k->grid and k->block. Errors (set on
 * the graph, naming the node): KILN_ERR_UNSUPPORTED for an op or dtype with no CUDA
 * kernel, KILN_ERR_SHAPE / TYPE / GRAPH for a node the generator cannot trust. */
KCG_HIDDEN kiln_status kcg_cuda_emit_kernel(kcg_cuda_kernel *k, kcg_buf *b);

/* Whether matmul / fused_matmul n runs as a cuBLASLt GEMM: f32 or f64, m, n, k >= 1, and
 * batch dims that each operand either has whole or broadcasts whole (one stride between
 * matrices). Fills the shape fields of *gm (not the operands); for fused_matmul also
 * has_bias / relu when the whole epilogue is "add a [n] vector, then maybe relu" (or only
 * relu), and then *bias_input is the node input of the bias (else -1); *rest is true when
 * an epilogue remains for a follow-up kernel. */
KCG_HIDDEN bool kcg_cuda_gemm_plan(kir_graph *g, const kir_node *n, kcg_cuda_gemm *gm,
                                   int32_t *bias_input, bool *rest);

/* ---------------------------------------------------------------- operands ------
 * The one rule for where a value is as the CUDA code sees it, shared by the kernels
 * (kcg_cuda_emit.c) and the artifact's schedule (kcg_cuda_compile.c), so the runtime's
 * copies and the kernels never disagree. */

/* N of "cuda:N", or -1 for any other device. */
KCG_HIDDEN int32_t kcg_cuda_device_index(const char *dev);
/* The io numbering of the kernels' io table: io[i] for each node id of g (g->n_nodes
 * entries): placeholders 0..n_in-1 in node order, then output j (not a placeholder)
 * n_in + j; -1 for every other node. Returns n_in. */
KCG_HIDDEN int32_t kcg_cuda_number_io(const kir_graph *g, const int32_t *outputs,
                                      int32_t n_outputs, int32_t *io);
/* Where node id's value is on device dev ("cuda:N"), read by node `reader` (named in
 * messages): a placeholder or an output (io[id] >= 0) not in the weights is
 * KCG_CUDA_IO io[id]; a weights value KCG_CUDA_WEIGHTS + offset; an arena value
 * KCG_CUDA_ARENA + offset in dev's arena. KILN_ERR_INTERNAL (set on g, naming the node)
 * when the plan puts it elsewhere (another device's arena: a missing transfer, or past
 * the end of its block). */
KCG_HIDDEN kiln_status kcg_cuda_value_operand(kir_graph *g, const kps_memplan *plan,
                                              const int32_t *io, const kir_node *reader,
                                              int32_t id, const char *dev, kcg_cuda_operand *o);

/* The translation unit's opening: type names, constants, the error word, and (when
 * half is set) the f16/bf16 conversion helpers. */
KCG_HIDDEN void kcg_cuda_put_prelude(kcg_buf *b, bool half);

#endif
