/* kps_registry.c — the pass registry: every pass as data (name, summary, entry point),
 * and the infer-shapes pass. Adding a pass = one line in kps_passes. Depends on ir/. */
#include "kps.h"

#include <string.h>

const kps_pass_info kps_passes[] = {
    {"infer-shapes", "compute every node's dtype and shape from its inputs", kps_infer_shapes},
    {"fold", "evaluate constant subgraphs with the reference interpreter (size-capped)", kps_fold},
    {"dce", "drop nodes that no root or placeholder needs", kps_dce},
    {"fuse", "fold elementwise consumers of a matmul into a fused_matmul epilogue", kps_fuse},
    {"place", "assign a device to every node and record why", kps_place},
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

