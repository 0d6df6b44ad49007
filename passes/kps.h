/* kps.h — the pass manager and Kiln's graph passes. Prefix kps_. Depends on ir/ only.
 * Passes are data (kps_pass_info: name, summary, statistics) and are run by one
 * instrumented manager that can log, print the graph after each pass and verify it.
 * A pass edits the graph in place or builds a new graph and swaps it in
 * (kir_graph_swap_in); either way node names of roots survive. */
#ifndef KPS_H
#define KPS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/kir.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KPS_MAX_STATS 8
#define KPS_MAX_DEVICES 16

/* What a pass is told. Roots are the node names whose values (fetches) or effects
 * (targets) the caller needs; dce keeps them and what they depend on, and fuse never
 * hides a root inside a fused node (a root may only be the last node of a fused group,
 * whose name the fused node takes). Placeholders are the graph's interface and are
 * never removed. */
typedef struct kps_context {
  const char *const *roots;
  int32_t n_roots;
  const char *const *devices; /* devices the target has, e.g. {"cpu:0"}; NULL = {"cpu:0"} */
  int32_t n_devices;
  bool strict_placement;      /* a pin to an absent device is an error, not a fallback */
  FILE *log;                  /* one-line reports from passes (may be NULL) */
} kps_context;

typedef struct kps_stat {
  const char *name; /* e.g. "nodes folded" */
  int64_t value;
} kps_stat;

typedef struct kps_result {
  kps_stat stats[KPS_MAX_STATS];
  int32_t n_stats;
  bool changed;
} kps_result;

typedef kiln_status (*kps_pass_fn)(kir_graph *g, const kps_context *ctx, kps_result *res);

typedef struct kps_pass_info {
  const char *name;    /* "fold" */
  const char *summary; /* one line */
  kps_pass_fn run;
} kps_pass_info;

/* The registered passes, in a fixed order; NULL-terminated by count. */
extern const kps_pass_info kps_passes[];
extern const int32_t kps_n_passes;
const kps_pass_info *kps_pass_find(const char *name); /* NULL if unknown */

/* Default pipeline of the CPU target. */
#define KPS_DEFAULT_PIPELINE "infer-shapes,fold,dce,fuse,place"

typedef struct kps_options {
  const char *pipeline;  /* comma-separated pass names; NULL = KPS_DEFAULT_PIPELINE */
  bool verify_each;      /* kir_verify after every pass; failure names the pass */
  bool print_after_all;  /* the graph after every pass to print_to */
  FILE *print_to;        /* NULL = stderr */
  FILE *log;             /* pass log: "pass fold: 3 nodes folded (0.12 ms)"; may be NULL */
} kps_options;

/* Runs the pipeline on g. An unknown pass name is KILN_ERR_ARGUMENT naming it, before
 * any pass runs. Errors are set on g and name the pass. */
kiln_status kps_run(kir_graph *g, const kps_options *opt, const kps_context *ctx);

/* The passes themselves (also reachable through kps_passes). */
kiln_status kps_infer_shapes(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_fold(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_dce(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_fuse(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_place(kir_graph *g, const kps_context *ctx, kps_result *res);

/* Normalizes a device string: "/cpu:0", "/device:CPU:0", "CPU" -> "cpu:0";
 * "/gpu:1", "/device:GPU:1", "cuda:1" -> "cuda:1". false if not a device name. */
bool kps_device_normalize(const char *in, char *out, size_t n);

/* ---------------------------------------------------------------- memory plan --- */
/* Where each node's output lives at run time. Computed from liveness over the node
 * order: a buffer is reused once its last consumer ran. Offsets are 64-byte aligned. */
typedef enum kps_loc {
  KPS_LOC_NONE = 0,    /* no output, or never read */
  KPS_LOC_INPUT = 1,   /* a placeholder: the caller's input buffer */
  KPS_LOC_WEIGHTS = 2, /* a constant: in the weights blob at offset */
  KPS_LOC_ARENA = 3    /* computed: in the arena at offset */
} kps_loc;

typedef struct kps_memplan {
  int32_t n_nodes;
  kps_loc *loc;        /* per node id */
  int64_t *offset;     /* per node id; byte offset in weights or arena, -1 if none */
  int64_t *size;       /* per node id; output bytes */
  int64_t arena_bytes; /* peak */
  int64_t weights_bytes;
} kps_memplan;

/* Plans memory for g (verified, after the pipeline). outputs (node ids) stay live to
 * the end. Errors set on g. Free with kps_memplan_free. */
kiln_status kps_plan_memory(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                            kps_memplan *plan);
void kps_memplan_free(kps_memplan *plan);

#ifdef __cplusplus
}
#endif
#endif
