/* kps_dce.c — dead code elimination: keeps the roots, every placeholder (the graph's
 * interface) and everything they transitively depend on; drops the rest with
 * kir_graph_compact. Depends on ir/ only. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <string.h>

static kiln_status mark_roots(kir_graph *g, const kps_context *ctx, bool *keep) {
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    const char *name = ctx->roots[r];
    int32_t id = kps_root_id(g, ctx, r);
    if (id < 0) {
      char esc[KPS_ESC];
      return kir_seterr(g, KILN_ERR_ARGUMENT, "root '%s' is not a node of the graph",
                        kir_escape(name ? name : "(null)", esc, sizeof esc));
    }
    keep[id] = true;
  }
  return KILN_OK;
}

kiln_status kps_dce(kir_graph *g, const kps_context *ctx, kps_result *res) {
  res->n_stats = 1;
  res->stats[0] = (kps_stat){"nodes removed", 0};
  if (ctx->n_roots <= 0) {
    if (ctx->log) fprintf(ctx->log, "dce: no roots given; keeping every node\n");
    return KILN_OK;
  }
  if (g->n_nodes == 0) return KILN_OK;
  bool *keep = kir_calloc((size_t)g->n_nodes, sizeof *keep);
  if (!keep) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  kiln_status st = mark_roots(g, ctx, keep);
  /* Inputs have smaller ids, so one backward sweep reaches every dependency (and finds
   * the placeholders in the same pass over the nodes). */
  for (int32_t i = g->n_nodes - 1; st == KILN_OK && i >= 0; i--) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_PLACEHOLDER) keep[i] = true;
    if (!keep[i]) continue;
    for (int32_t k = 0; k < n->n_inputs; k++) keep[n->inputs[k]] = true;
  }
  int64_t removed = 0;
  for (int32_t i = 0; st == KILN_OK && i < g->n_nodes; i++) removed += !keep[i];
  if (st == KILN_OK && removed > 0) st = kir_graph_compact(g, keep);
  kir_free(keep);
  if (st != KILN_OK) return st;
  res->stats[0].value = removed;
  res->changed = removed > 0;
  return KILN_OK;
}
