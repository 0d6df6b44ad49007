/* kps_registry.c — the pass registry: every pass as data (name, summary, entry point),
 * and the infer-shapes pass. Adding a pass = one line in kps_passes. Depends on ir/. */
#include "kps.h"

#include <string.h>

/* pass manager: options and counters of the passes, as data (see kps_option_info). */
static const kps_option_info fold_options[] = {
    {"max-bytes", KPS_OPT_INT, KIR_MAX_FOLD_BYTES, 0, KIR_MAX_TENSOR_BYTES,
     "largest constant, in bytes, that folding may create"},
};
static const char *const fold_stats[] = {"nodes folded", "skipped (too large)", NULL};
static const kps_option_info place_options[] = {
    {"strict", KPS_OPT_BOOL, 0, 0, 1, "a pin that cannot be honored is an error, not a fallback"},
};
static const char *const infer_stats[] = {"types changed", NULL};
static const char *const place_stats[] = {"nodes placed", "soft placements", "transfers inserted", NULL};
static const char *const plan_stats[] = {"in-place reuses", "weights bytes", "peak bytes (DEVICE)", NULL};

static const char *const simplify_stats[] = {
    "arithmetic identities removed", "identity nodes removed", "neg/relu/abs pairs removed",
    "transposes merged", "reshapes merged", "clamps merged", "reduce_sum(matmul) rewritten",
    "roots kept as identity", NULL};
static const char *const cse_stats[] = {"nodes merged", "roots kept as identity", NULL};
static const char *const bn_stats[] = {"folded into conv/matmul", "rewritten as scale+shift", NULL};
static const char *const fuse_stats[] = {"matmuls fused", "ops absorbed", "chains fused",
                                         "reductions fused", "convs fused", NULL};

const kps_pass_info kps_passes[] = {
    {"infer-shapes", "compute every node's dtype and shape from its inputs", kps_infer_shapes, NULL, 0, infer_stats},
    {"fold", "evaluate constant subgraphs with the reference interpreter (size-capped)", kps_fold, fold_options, 1, fold_stats},
    {"fold-batchnorm", "fold inference batch_norm into the conv/matmul before it, else rewrite it as scale+shift", kps_fold_batchnorm, NULL, 0, bn_stats},
    {"simplify", "exact algebraic identities; double transposes, reshapes, clamps; reduce_sum(matmul) without the product", kps_simplify, NULL, 0, simplify_stats},
    {"cse", "merge nodes computing the same value (same op, inputs, attributes, device)", kps_cse, NULL, 0, cse_stats},
    {"dce", "drop nodes that no root or placeholder needs", kps_dce},
    {"fuse", "fuse matmul and conv epilogues, elementwise chains and chains ending in a reduction or softmax", kps_fuse, NULL, 0, fuse_stats},
    {"place", "assign a device to every node and record why; transfers between devices", kps_place, place_options, 1, place_stats},
    {"plan-memory", "liveness-based offsets in one arena per device, in-place reuse; peak bytes per device", kps_plan_memory_pass, NULL, 0, plan_stats},
};
const int32_t kps_n_passes = (int32_t)(sizeof kps_passes / sizeof kps_passes[0]);

const kps_pass_info *kps_pass_find(const char *name) {
  if (!name) return NULL;
  for (int32_t i = 0; i < kps_n_passes; i++)
    if (strcmp(kps_passes[i].name, name) == 0) return &kps_passes[i];
  return NULL;
}

/* The infer-shapes pass: types every node; counts nodes whose stored type changed. */
kiln_status kps_infer_shapes(kir_graph *g, const kps_context *ctx, kps_result *res) {
  (void)ctx;
  int64_t changed = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    kir_type old = n->type;
    kiln_status st = kir_infer_node(g, n);
    if (st != KILN_OK) return st;
    if (!kir_type_equal(&old, &n->type)) changed++;
  }
  res->stats[0] = (kps_stat){"types changed", changed};
  res->n_stats = 1;
  res->changed = changed > 0;
  return KILN_OK;
}

