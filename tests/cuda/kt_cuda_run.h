/* kt_cuda_run.h — runs a graph's generated CUDA kernels on a real device through the
 * driver API (libcuda.so.1 opened with dlopen), for the tests' GPU check: the graph's
 * placeholders and outputs are device buffers given to the kernels as io, outputs and the
 * arena are poisoned (0xFF bytes) before the run so an unwritten element shows, and the
 * outputs come back as host tensors. A test harness, not the runtime's executor: kernel
 * steps only (a GEMM step, which needs cuBLASLt, is KILN_ERR_UNSUPPORTED). */
#ifndef KT_CUDA_RUN_H
#define KT_CUDA_RUN_H

#include <stddef.h>

#include "codegen/kcg_cuda.h"

typedef struct kt_cuda kt_cuda;

/* Device 0's context, or NULL with the reason in why (no driver, no device). */
kt_cuda *kt_cuda_open(char *why, size_t why_n);
void kt_cuda_close(kt_cuda *c); /* accepts NULL */
/* The device's real architecture, e.g. "sm_90", for kcg_nvrtc_compile. */
const char *kt_cuda_arch(const kt_cuda *c);

/* Runs prog (from kcg_cuda_generate for g, plan and outputs; compiled into img for
 * kt_cuda_arch) with feeds (one per placeholder, by node id) and fills results[i] with a
 * new host tensor for outputs[i]. Errors: a message in err and a status (KILN_ERR_EXEC
 * when a kernel set the error word; KILN_ERR_INTERNAL for a driver call that failed,
 * naming it and the step). Nothing stays allocated on the device afterwards. */
kiln_status kt_cuda_run(kt_cuda *c, kir_graph *g, const kps_memplan *plan,
                        const kcg_cuda_program *prog, const kcg_nvrtc_image *img,
                        const kir_feed *feeds, int32_t n_feeds, const int32_t *outputs,
                        int32_t n_outputs, kir_tensor **results, char *err, size_t err_n);

#endif
