/* kcg_c_internal.h — helpers shared by the files of codegen/c only: a growable text
 * buffer, the step numbering that the generated C and the artifact's plan must agree
 * on, and the per-op kernel emitter. Never included outside codegen/c. */
#ifndef KCG_C_INTERNAL_H
#define KCG_C_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../kcg.h"

#define KCG_HIDDEN __attribute__((visibility("hidden")))

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
/* C element type of a dtype: "float", "double", "int32_t", "int64_t", "uint8_t". */
KCG_HIDDEN const char *kcg_ctype(kiln_dtype t);

/* Emits `static int kSTEP_op(...) { ... }` for node n. restrict_ok: the output shares no
 * memory with any input. Errors set on g, naming the node. */
KCG_HIDDEN kiln_status kcg_c_emit_kernel(kir_graph *g, const kir_node *n, int32_t step,
                                         bool restrict_ok, kcg_buf *b);

/* How the program's entry function is declared: decl is the text before its parameter
 * list, e.g. "static int model_steps"; abi_symbol: also define kiln_abi_version; include:
 * a line after the system includes, or NULL. */
typedef struct kcg_c_entry {
  const char *decl;
  bool abi_symbol;
  const char *include;
} kcg_c_entry;

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
