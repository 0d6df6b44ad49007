/* kcg_c_internal.h — helpers shared by the files of codegen/c: a growable text buffer,
 * the step numbering that the generated C and the artifact's plan must agree on, and the
 * per-op kernel emitter. codegen/cuda reuses the text buffer, name escaping and
 * broadcasting helpers through it; nothing outside codegen/ includes it. */
#ifndef KCG_C_INTERNAL_H
#define KCG_C_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../kcg.h"
#include "kiln_artifact.h"

#define KCG_HIDDEN __attribute__((visibility("hidden")))

/* Every op that is not elementwise: the case list of the expression emitters' "no
 * expression" arm (a new op must still be added here, or to an arm of its own). */
#define KCG_CASES_NOT_ELEMENTWISE                                                      \
  case KIR_OP_INVALID: case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE: \
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: case KIR_OP_MATMUL:            \
  case KIR_OP_ADD_N: case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX: \
  case KIR_OP_SOFTMAX: case KIR_OP_RESHAPE: case KIR_OP_TRANSPOSE: case KIR_OP_IDENTITY: \
  case KIR_OP_ASSIGN: case KIR_OP_GROUP: case KIR_OP_NO_OP: case KIR_OP_FUSED_MATMUL:   \
  case KIR_OP_TRANSFER: case KIR_OP_FUSED_ELEMENTWISE: case KIR_OP_FUSED_REDUCE:        \
  case KIR_OP_FUSED_SOFTMAX: case KIR_OP_COUNT:                                          \
  case KIR_OP_REDUCE_MIN: case KIR_OP_LOG_SOFTMAX: case KIR_OP_ARGMAX:                  \
  case KIR_OP_ARGMIN: case KIR_OP_CONCAT: case KIR_OP_SLICE: case KIR_OP_GATHER:        \
  case KIR_OP_CAST: case KIR_OP_WHERE: case KIR_OP_CONV: case KIR_OP_MAX_POOL:          \
  case KIR_OP_AVG_POOL: case KIR_OP_BATCH_NORM: case KIR_OP_FUSED_CONV:                 \
  case KIR_OP_MAX_POOL_INDICES

/* Buffer size that always holds kir_escape's output. */
#define KCG_ESC_BUF 272

/* Text buffer through kir_alloc. Out of memory is sticky: later appends do nothing and
 * `oom` stays set, so callers check once at the end. */
typedef struct kcg_buf {
  char *p;
  size_t n, cap;
  bool oom;
} kcg_buf;

KCG_HIDDEN void kcg_printf(kcg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
KCG_HIDDEN void kcg_buf_free(kcg_buf *b);
/* Appends s as a quoted string safe inside a C comment or string literal: bytes outside
 * printable ASCII and any of * \ " ' ? are written as \xNN, so no "*" + "/", "/" + "*",
 * trigraph or line splice can form; cut to 64 bytes plus "...". */
KCG_HIDDEN void kcg_put_name(kcg_buf *b, const char *s);
/* A double as an exact C expression: hex-float literal, HUGE_VAL, -HUGE_VAL or NAN. */
KCG_HIDDEN void kcg_put_double(kcg_buf *b, double v);

/* True when node n becomes a step of the generated program (a kernel function). */
KCG_HIDDEN bool kcg_c_is_step(const kir_node *n, const kps_memplan *plan);
/* n is placed on cpu:0 (an empty assigned_device counts as cpu:0). */
KCG_HIDDEN bool kcg_c_on_cpu(const kir_node *n);
/* kcg_c_is_step, and in kiln_step mode (kcg_c_entry.step_mode) also on cpu:0 and not a
 * transfer: the CPU steps of a CUDA artifact, numbered in node order among themselves. */
KCG_HIDDEN bool kcg_c_is_step_in(const kir_node *n, const kps_memplan *plan, bool step_mode);
/* Largest row count of an f32 product that runs as Kiln's own small-M kernel
 * (kcg_sgemm_small) instead of cblas_sgemm; one-row products stay cblas GEMVs. */
#define KCG_SMALL_M 8
/* True when n (matmul / fused_matmul) runs as kcg_sgemm_small: f32, 2..KCG_SMALL_M rows,
 * B read as [N, K] rows (transpose_b, as kcg_compile_cpu stores constant weights of
 * such products) and A as [M, K] rows. */
KCG_HIDDEN bool kcg_c_small_gemm(const kir_graph *g, const kir_node *n);
/* The helper kcg_sgemm_small, emitted once by programs that call it. */
KCG_HIDDEN void kcg_c_put_small_gemm(kcg_buf *b);
/* C element type of a dtype: "float", "double", "int32_t", "int64_t", "uint8_t", ...;
 * f16 and bf16 are stored as their bit patterns, "uint16_t". */
KCG_HIDDEN const char *kcg_ctype(kiln_dtype t);
/* f16 or bf16: loaded to double with kcg_ld, stored with kcg_st (helpers that
 * kcg_c_emit_program emits when the graph has such a tensor). */
KCG_HIDDEN bool kcg_is_half(kiln_dtype t);
/* The C type a value of t is computed in: "double" for f16/bf16, else kcg_ctype. */
KCG_HIDDEN const char *kcg_vtype(kiln_dtype t);
/* Unsigned type integer arithmetic of t wraps in: "uint32_t" up to 32 bits, "uint64_t". */
KCG_HIDDEN const char *kcg_utype(kiln_dtype t);
/* Opening of an element load as an exact double, closed by ")": "kcg_f16_to_d(",
 * "kcg_bf16_to_d(", "(double)(". */
KCG_HIDDEN const char *kcg_ld(kiln_dtype t);
/* Opening of a store of a double to float dtype t, closed by ")": "kcg_f16_from_d(",
 * "kcg_bf16_from_d(" (correctly rounded, as the interpreter), "(float)(", "(double)(";
 * "(" for the others. */
KCG_HIDDEN const char *kcg_st(kiln_dtype t);

/* Emits `static int kSTEP_op(...) { ... }` for node n. restrict_ok: the output shares no
 * memory with any input. Errors set on g, naming the node. */
KCG_HIDDEN kiln_status kcg_c_emit_kernel(kir_graph *g, const kir_node *n, int32_t step,
                                         bool restrict_ok, kcg_buf *b);

/* ---- shared with codegen/cuda (defined in kcg_c_kernels.c) ---- */
/* Whether elementwise op computed in f32 gives what the interpreter gives (the op in
 * double, rounded to f32); see the definition for why. */
KCG_HIDDEN bool kcg_exact_in_f32(kir_op op);
/* Same rank and dims (dtypes not compared). */
KCG_HIDDEN bool kcg_same_shape(const kir_type *a, const kir_type *b);
/* v converted to integer dtype t as the interpreter stores it (saturated, NaN -> 0). */
KCG_HIDDEN int64_t kcg_sat_int(double v, kiln_dtype t);
/* The reduced axes of reduction n over input type in (attr axes; absent = all), as
 * flags per dimension. KILN_ERR_SHAPE naming n for a bad or repeated axis. */
KCG_HIDDEN kiln_status kcg_reduced_axes(kir_graph *g, const kir_node *n, const kir_type *in,
                                        bool *red);

/* The comment that opens a step's kernel, naming its source nodes, shapes and dtypes:
 * "/ * step 3: fused_matmul NOTE ["a", "b"] f32[2,3] x f32[3,4] -> f32[2,4] * /". */
KCG_HIDDEN void kcg_put_step_comment(const kir_graph *g, const kir_node *n, int32_t step,
                                     const char *note, kcg_buf *b);

/* ---- shared by kcg_c_kernels.c and kcg_c_nn.c ---- */
KCG_HIDDEN kiln_status kcg_node_err(kir_graph *g, const kir_node *n, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "for (int64_t iD = 0; iD < N; iD++) " */
KCG_HIDDEN void kcg_put_loop(kcg_buf *b, int32_t d, int64_t n);
/* "i0 * 12 + i2" over i0..i{rank-1} with element strides st (0 skipped); "0" if none. */
KCG_HIDDEN void kcg_put_index(kcg_buf *b, int32_t rank, const int64_t *st);
KCG_HIDDEN void kcg_contiguous_strides(const kir_type *t, int64_t *st);
/* Strides of `in` seen through shape `out` (0 on broadcast dims). */
KCG_HIDDEN void kcg_bcast_strides(const kir_type *in, const kir_type *out, int64_t *st);
KCG_HIDDEN bool kcg_bcast_into(const kir_type *in, const kir_type *out);
/* An OpenMP "parallel for" (collapse over the leading dims that give every core work)
 * before a loop nest with trip counts dims[0..n); nothing below 64k elements of work. */
KCG_HIDDEN void kcg_put_par(kcg_buf *b, int64_t work, const int64_t *dims, int32_t n, bool simd);
/* The epilogue steps of fused node n on the local `T v`, inside loops i0..i{rank-1} over
 * n->type (ost: its contiguous strides; operands are read at their broadcast index). */
KCG_HIDDEN kiln_status kcg_c_put_epilogue(kir_graph *g, const kir_node *n, const kir_epilogue *e,
                                          const int64_t *ost, kcg_buf *b);

/* kcg_c_nn.c: kernel bodies of argmax/argmin, concat, slice, gather, cast, where,
 * batch_norm, the pools and conv/fused_conv (errors set on g naming the node). */
KCG_HIDDEN kiln_status kcg_c_emit_nn(kir_graph *g, const kir_node *n, kcg_buf *b);
/* Bytes of arena scratch step n needs (a conv's im2col matrix), 0 for none. Its kernel
 * then takes a last parameter `T *restrict col`. */
KCG_HIDDEN int64_t kcg_c_step_scratch(const kir_graph *g, const kir_node *n);
/* The largest step scratch of g's steps, rounded up to 64 bytes. */
KCG_HIDDEN int64_t kcg_c_scratch_bytes(const kir_graph *g, const kps_memplan *plan);
/* Makes room after planning: grows plan->arena_bytes (rounded to 64) by
 * kcg_c_scratch_bytes, the scratch living in the arena's last bytes; appends each
 * placeholder's `default` tensor to the weights block (plan->weights_bytes grows) and
 * records its weights offset in plan->offset[placeholder] (-1: no default). Call once,
 * right after kps_plan_memory. Errors set on g. */
KCG_HIDDEN kiln_status kcg_c_reserve(kir_graph *g, kps_memplan *plan);
/* Byte offset of the scratch in the arena (plan->arena_bytes - kcg_c_scratch_bytes), or
 * -1 when the planned buffers reach into it (the plan was not reserved). */
KCG_HIDDEN int64_t kcg_c_scratch_offset(const kir_graph *g, const kps_memplan *plan);

/* How the program's entry function is declared: decl is the text before its parameter
 * list, e.g. "static int model_steps"; abi_symbol: also define kiln_abi_version; include:
 * a line after the system includes, or NULL.
 * step_mode (the CUDA target's CPU code): only the nodes on cpu:0 that are not transfers
 * are steps (kcg_c_is_step_in), they read only cpu:0 values (else KILN_ERR_INTERNAL), and
 * the entry takes a leading `int i` and runs step i alone:
 *   DECL(int i, const void *const *inputs, void *const *outputs, unsigned char *arena,
 *        const unsigned char *weights)
 * returning 0, 1 + i when step i meets a run-time error, -1 for an i with no step; the
 * outputs are never written (the runtime copies them from the plan's output_values). */
typedef struct kcg_c_entry {
  const char *decl;
  bool abi_symbol;
  const char *include;
  bool step_mode;
} kcg_c_entry;

/* The entry of a CUDA artifact's CPU code: exported kiln_step (step_mode) and
 * kiln_abi_version. */
#define KCG_C_STEP_ENTRY {"__attribute__((visibility(\"default\")))\nint kiln_step", true, NULL, true}

/* kcg_c_generate with another entry declaration: the same kernels and the same step
 * calls, so the artifact and the standalone output (kcg_c_standalone.c) share one
 * emission. The entry returns 0, or step + 1 when a step fails (integer division by
 * zero). Errors set on g. *src through kir_malloc. */
KCG_HIDDEN kiln_status kcg_c_emit_program(kir_graph *g, const kps_memplan *plan,
                                          const int32_t *outputs, int32_t n_outputs,
                                          const kcg_c_entry *entry, char **src);

/* Builds the kiln.rt.Plan for (g, plan, outputs), the weights blob, and writes the
 * artifact (PLAN, WEIGHTS, CODE_CPU = so, SOURCE_C = src) atomically to path. */
/* host_isa: the code was compiled for this machine (-march=native): the plan records
 * its CPU features so the runtime refuses a CPU that lacks one. */
KCG_HIDDEN kiln_status kcg_c_write_artifact(kir_graph *g, const kps_memplan *plan,
                                            const int32_t *outputs, int32_t n_outputs,
                                            const char *pipeline, bool host_isa,
                                            const char *src, const uint8_t *so, size_t so_len,
                                            const char *path);

/* What another target (codegen/cuda) adds to the C target's artifact: the plan is packed
 * by the same code (inputs, outputs, buffers, steps, flops, defaults), then extended. */
struct Kiln__Rt__Plan;
typedef struct kcg_plan_ext {
  const char *target;             /* Plan.target, e.g. "cuda" */
  const char *entry;              /* Plan.entry: "kiln_step", or "" with no C code */
  bool step_mode;                 /* the C steps are kcg_c_is_step_in(.., true)'s */
  /* per node id: the kernel name of the node's step on another device (e.g. "kiln_k3"),
   * NULL where it has none; Plan.steps lists these with the C steps, in node order */
  const char *const *node_kernel;
  /* called on the filled message before packing, to set the target's own fields; what
   * it points the message at must live until kcg_c_write_artifact_ext returns */
  kiln_status (*extend)(void *user, struct Kiln__Rt__Plan *p);
  void *user;
  const kart_section *sections;   /* written after PLAN, WEIGHTS and the C code */
  int n_sections;
} kcg_plan_ext;

/* kcg_c_write_artifact with ext (NULL: the CPU target's artifact). src NULL: no C code
 * (no CODE_CPU and SOURCE_C sections). */
KCG_HIDDEN kiln_status kcg_c_write_artifact_ext(kir_graph *g, const kps_memplan *plan,
                                                const int32_t *outputs, int32_t n_outputs,
                                                const char *pipeline, bool host_isa,
                                                const char *src, const uint8_t *so,
                                                size_t so_len, const kcg_plan_ext *ext,
                                                const char *path);

/* kcg_c_compile.c, shared with codegen/cuda's driver. */
/* Compiles the C program src into a shared object (*so through kir_malloc), as
 * kcg_compile_cpu does: a private temp dir removed on every path; KILN_ERR_COMPILE with
 * the compiler's first lines. */
KCG_HIDDEN kiln_status kcg_c_compile_so(kir_graph *g, const kcg_options *opt, const char *src,
                                        uint8_t **so, size_t *so_len);
/* "<pipeline>; codegen: -march=.. FLAGS [-fopenmp]" for the plan (*out: kir_malloc). */
KCG_HIDDEN kiln_status kcg_c_record_codegen(kir_graph *g, const kcg_options *opt, const char *src,
                                            char **out);
/* Whether the compiled code targets this machine (opt->cpu NULL or "host"). */
KCG_HIDDEN bool kcg_c_host_isa(const kcg_options *opt);
/* The constant [K, N] right operands of one- to KCG_SMALL_M-row products stored
 * transposed (see kcg_compile_cpu); cpu_only: only products placed on cpu:0. */
KCG_HIDDEN kiln_status kcg_c_pretranspose_gemv(kir_graph *g, const int32_t *ids, int32_t n_outputs,
                                               bool cpu_only);

/* Shared by the artifact and the standalone output (kcg_c_compile.c, kcg_c_plan.c). */
/* Output names -> node ids; unknown, value-less or repeated outputs are refused. */
KCG_HIDDEN kiln_status kcg_c_resolve_outputs(kir_graph *g, const char *const *names, int32_t n,
                                             int32_t *ids);
/* Variables (session state) and nodes placed off cpu:0 cannot be lowered to C; `what`
 * names the output in the message ("the CPU target", "standalone C"). */
KCG_HIDDEN kiln_status kcg_c_refuse_unlowerable(kir_graph *g, const char *what);
/* random_normal/random_uniform evaluated now and turned into constants (weights). */
KCG_HIDDEN kiln_status kcg_c_freeze_random(kir_graph *g);
/* Every constant's bytes at its planned offset in one zero-padded blob (kir_malloc). */
KCG_HIDDEN kiln_status kcg_c_weights_blob(kir_graph *g, const kps_memplan *plan, uint8_t **out);

#endif
