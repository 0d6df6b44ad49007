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
  /* pass manager: the option values of the pipeline entry being run, e.g.
   * fold{max-bytes=4096}; NULL outside the manager. Read with kps_option_int/_bool. */
  const struct kps_entry_options *options;
  /* pass manager: g->tracked holds the roots' ids (kir_graph_track), in order; read
   * through kps_root_id */
  bool roots_tracked;
} kps_context;

/* Id of root r (ctx->roots[r]) in g, or -1 if no node has that name: the tracked id when
 * the pass manager tracks the roots, else a lookup by name. */
int32_t kps_root_id(const kir_graph *g, const kps_context *ctx, int32_t r);

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

/* pass manager: an option a pass declares, e.g. fold's max-bytes. Bools take
 * true/false/1/0 (a bare `strict` means true); ints a decimal in [min, max]. */
typedef enum kps_option_type { KPS_OPT_BOOL = 1, KPS_OPT_INT = 2 } kps_option_type;
typedef struct kps_option_info {
  const char *name; /* "max-bytes" */
  kps_option_type type;
  int64_t dflt;
  int64_t min, max; /* ints only */
  const char *help;
} kps_option_info;

#define KPS_MAX_OPTIONS 8
/* The values of one pipeline entry's options, indexed like its pass's options. */
typedef struct kps_entry_options {
  const kps_option_info *info;
  int32_t n;
  int64_t value[KPS_MAX_OPTIONS]; /* the default where not given */
  bool set[KPS_MAX_OPTIONS];      /* given in the pipeline string */
} kps_entry_options;

/* The value of option `name` for the entry being run; dflt when ctx, its options or
 * the option are absent (a pass called directly, outside the manager). */
int64_t kps_option_int(const kps_context *ctx, const char *name, int64_t dflt);
bool kps_option_bool(const kps_context *ctx, const char *name, bool dflt);

typedef struct kps_pass_info {
  const char *name;    /* "fold" */
  const char *summary; /* one line */
  kps_pass_fn run;
  const kps_option_info *options; /* n_options entries; may be NULL */
  int32_t n_options;
  const char *const *stats;       /* names of the counters it reports, NULL-terminated; may be NULL */
} kps_pass_info;

/* The registered passes, in a fixed order; NULL-terminated by count. */
extern const kps_pass_info kps_passes[];
extern const int32_t kps_n_passes;
const kps_pass_info *kps_pass_find(const char *name); /* NULL if unknown */

/* Default pipeline of the CPU target: the -O2 pipeline (KPS_PIPELINE_O2 below). */
#define KPS_DEFAULT_PIPELINE KPS_PIPELINE_O2

typedef struct kps_options {
  const char *pipeline;  /* comma-separated pass names; NULL = KPS_DEFAULT_PIPELINE */
  bool verify_each;      /* kir_verify after every pass; failure names the pass */
  bool print_after_all;  /* the graph after every pass to print_to */
  FILE *print_to;        /* NULL = stderr */
  FILE *log;             /* pass log: "pass fold: 3 nodes folded (0.12 ms)"; may be NULL */
  /* Instrumentation (pass manager v2). Pass lists are comma-separated registered pass
   * names; an unknown name is KILN_ERR_ARGUMENT before any pass runs. Banners, which
   * tests match:  // -----// IR Dump After fold //----- //   (and "Before"). */
  const char *print_before;  /* print the graph before these passes */
  const char *print_after;   /* print the graph after these passes */
  bool print_after_change;   /* print after a pass only when the graph's text changed;
                                alone it applies to every pass, else to the ones chosen
                                by print_after / print_after_all */
  bool stats;                /* a table of every pass's counters at the end */
  bool timing;               /* a table of every pass's wall time at the end */
  const char *disable;       /* passes of the pipeline to skip */
  const char *dump_dir;      /* NN-<pass>.ktxt/.dot/.json per pass, 00-input.* first */
  FILE *report_to;           /* stats and timing tables; NULL = print_to, or stderr */
  /* Called before each pass that runs (after print-before), with the context the pass
   * will get (MLIR's runBeforePass); a non-OK status stops the pipeline (set the message
   * on g). `kiln opt --explain-fusion` uses it before fuse. NULL = none. */
  kiln_status (*before_pass)(kir_graph *g, const char *pass, const kps_context *ctx, void *user);
  void *user;
} kps_options;

/* ---------------------------------------------------------------- pipelines ----- */
/* Pipeline strings: pass names separated by commas, each optionally followed by
 * options in braces, MLIR-style: "infer-shapes,fold{max-bytes=4096},dce,place{strict}".
 * Options inside braces are separated by spaces or commas. */
typedef struct kps_pipeline_entry {
  const kps_pass_info *pass;
  kps_entry_options options;
  int32_t column; /* 1-based position of the pass name in the string */
} kps_pipeline_entry;
typedef struct kps_pipeline {
  kps_pipeline_entry *entries; /* kir_malloc'd; free with kps_pipeline_free */
  int32_t n;
} kps_pipeline;
/* Parses the whole string. Errors (KILN_ERR_ARGUMENT, set on g, naming the column and
 * the text): unknown pass, unknown option, bad value, unbalanced braces, empty entry. */
kiln_status kps_pipeline_parse(kir_graph *g, const char *text, kps_pipeline *out);
void kps_pipeline_free(kps_pipeline *p); /* accepts NULL and an empty pipeline */

/* Default pipelines per optimization level. kps_pipeline_for_level writes the level's
 * list restricted to the registered passes into buf; false for a level outside 0..2 or
 * a buf too small. */
#define KPS_PIPELINE_O0 "infer-shapes,place"
#define KPS_PIPELINE_O1 "infer-shapes,fold,fold-batchnorm,dce,place"
#define KPS_PIPELINE_O2 "infer-shapes,fold,fold-batchnorm,simplify,cse,dce,fuse,place,plan-memory"
bool kps_pipeline_for_level(int level, char *buf, size_t n);

/* ---------------------------------------------------------------- dumps --------- */
/* Writers behind kps_options.dump_dir (kps_dump.c). Graphviz DOT of g: one box per
 * node (name, op, type, device), names escaped, ids as n<ID>. */
void kps_write_dot(const kir_graph *g, FILE *out);
/* JSON change summary of one pass: nodes added, removed and changed (matched by name;
 * changed = other op, inputs, attrs, type or device), node counts and the pass's
 * counters. before may be NULL (the input stage: empty lists). Deterministic. */
void kps_write_change_json(const kir_graph *before, const kir_graph *after, int32_t index,
                           const char *pass, const kps_result *res, FILE *out);
/* Creates dir if missing (its parent must exist) and writes <NN>-<pass>.ktxt, .dot
 * and .json for g, each atomically. Stage 0 ("input") first removes the stage files of
 * an earlier run (names NN-<input|registered pass>.<ktxt|dot|json> only). KILN_ERR_IO
 * naming the path, set on g. */
kiln_status kps_dump_stage(kir_graph *g, const char *dir, int32_t index, const char *pass,
                           const kir_graph *before, const kps_result *res);

/* Runs the pipeline on g. An unknown pass name is KILN_ERR_ARGUMENT naming it, before
 * any pass runs. Errors are set on g and name the pass. */
kiln_status kps_run(kir_graph *g, const kps_options *opt, const kps_context *ctx);

/* The passes themselves (also reachable through kps_passes). */
kiln_status kps_infer_shapes(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_fold(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_dce(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_fuse(kir_graph *g, const kps_context *ctx, kps_result *res);
kiln_status kps_place(kir_graph *g, const kps_context *ctx, kps_result *res);
/* simplify (kps_simplify.c): exact algebraic identities (x*1, x+(-0.0), x-(+0.0), x/1,
 * integer zeros, identity, neg(neg), relu(relu), abs(abs), cast to the same dtype, a
 * whole-tensor slice with step 1, concat of one input), merged transposes, reshapes and
 * clamps, and reduce_sum(matmul(A, B)) over both axes as a dot of A's column sums and
 * B's row sums (a reassociation: not bit-exact for floats). Keeps every node's type;
 * roots keep their names (a replaced root becomes an identity). */
kiln_status kps_simplify(kir_graph *g, const kps_context *ctx, kps_result *res);
/* cse (kps_cse.c): merges nodes with the same op, inputs (unordered for commutative
 * ops), bit-equal attributes, type and devices; never placeholders, stateful or control
 * ops. The later node's uses go to the earlier; a root later node becomes an identity. */
kiln_status kps_cse(kir_graph *g, const kps_context *ctx, kps_result *res);
/* fold-batchnorm (kps_bn.c): a batch_norm with constant parameters whose input is a conv
 * (or rank-2 matmul) with a constant weight, both used only there, is folded into that
 * weight and a bias; any other batch_norm with constant parameters becomes
 * add(mul(x, s), t) with constants of shape [C, 1, .., 1]. The batch_norm keeps its name.
 * Logs one line per batch_norm. Counters "folded into conv/matmul", "rewritten as
 * scale+shift". */
kiln_status kps_fold_batchnorm(kir_graph *g, const kps_context *ctx, kps_result *res);

/* fuse: for each fusion candidate the fuse pass would refuse on g, one line on `out`
 * saying why and naming the nodes, e.g.
 *   fuse: stopped after 'relu_3': 'relu_3' has 2 consumers ('add_7', 'mul_2')
 * in a deterministic order (matmul and conv epilogues, then chains, each in node order). The
 * same lines the pass writes to ctx->log. g (shapes inferred) is not changed. */
kiln_status kps_explain_fusion(kir_graph *g, const kps_context *ctx, FILE *out);

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

/* plan-memory: one arena per device (the node's assigned_device; "" counts as cpu:0). */
typedef struct kps_arena_info {
  char device[48];    /* "cpu:0", "cuda:1" */
  int64_t peak_bytes; /* the arena's size: the most bytes live at once, with alignment */
  int32_t n_buffers;  /* values placed in it (in-place outputs included) */
} kps_arena_info;

typedef struct kps_memplan {
  int32_t n_nodes;
  kps_loc *loc;        /* per node id */
  int64_t *offset;     /* per node id; byte offset in weights or arena, -1 if none */
  int64_t *size;       /* per node id; output bytes */
  int64_t arena_bytes; /* peak of the cpu:0 arena (the one the CPU target uses) */
  int64_t weights_bytes;
  /* plan-memory: per-device arenas. */
  int32_t n_arenas;
  kps_arena_info arenas[KPS_MAX_DEVICES]; /* in order of first use */
  int32_t *arena_of;   /* per node id: index in arenas when loc is KPS_LOC_ARENA, else -1 */
  int32_t *inplace_of; /* per node id: the input whose buffer the output took, else -1 */
  int64_t n_inplace;   /* outputs that took their first input's buffer */
} kps_memplan;

/* Plans memory for g (verified, after the pipeline). outputs (node ids) stay live to
 * the end. Errors set on g. Free with kps_memplan_free. */
kiln_status kps_plan_memory(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                            kps_memplan *plan);
void kps_memplan_free(kps_memplan *plan);
/* plan-memory: kps_plan_memory, but with allow_state variables are accepted: a
 * variable's value lives in session state (KPS_LOC_NONE), an assign's output is planned
 * like any value. kps_plan_memory(...) is kps_plan_memory_ex(..., false, ...). */
kiln_status kps_plan_memory_ex(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                               bool allow_state, kps_memplan *plan);
/* The registered pass "plan-memory": plans with the roots as outputs (allow_state) and
 * reports "in-place reuses", "weights bytes" and "peak bytes (DEVICE)" per arena. The
 * graph is not changed. */
kiln_status kps_plan_memory_pass(kir_graph *g, const kps_context *ctx, kps_result *res);
/* place: whether `device` ("cpu:0", "cuda:1") has a kernel for op (a table in
 * kps_place.c: CUDA runs elementwise, matmul, add_n, reductions, softmax, fused,
 * shape and state ops, and conv / fused_conv through cuDNN; random sources and the rest
 * of the ONNX operator set of issue 4, wire 37..56, are CPU only for now). The place
 * pass also keeps a fused node whose epilogue has a CPU-only step on the CPU. */
bool kps_device_has_kernel(const char *device, kir_op op);
/* The op of n that `device` has no kernel for: n's own, or for a fused node one of its
 * epilogue steps or its fused reduction; KIR_OP_INVALID when it has them all. On CUDA a
 * conv / fused_conv that cuDNN cannot run (not f32/f64, not 1..3 spatial dims, pads
 * with begin != end) names its own op. */
kir_op kps_kernel_gap(const char *device, const kir_node *n);

#ifdef __cplusplus
}
#endif
#endif
