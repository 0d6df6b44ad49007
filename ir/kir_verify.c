/* kir_verify.c — the full structural check of a graph (ops, arity, attribute schema,
 * names, topological inputs, assign targets, stored types equal re-inferred ones).
 * Never changes the graph. Depends on kir.h and libc only. */
#include "kir_internal.h"

#include <stdlib.h>
#include <string.h>

static kiln_status verify_inputs(kir_graph *g, const kir_node *n) {
  for (int32_t k = 0; k < n->n_inputs; k++) {
    int32_t in = n->inputs[k];
    if (in < 0 || in >= g->n_nodes)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d refers to missing node %d", (int)k,
                          (int)in);
    if (in >= n->id)
      return kir_node_err(g, n, KILN_ERR_GRAPH,
                          "input %d is node %d, not before the node (id %d): not topological",
                          (int)k, (int)in, (int)n->id);
  }
  return KILN_OK;
}

static kiln_status verify_strings(kir_graph *g, const kir_node *n) {
  if (!n->name || !n->name[0])
    return kir_node_err(g, n, KILN_ERR_GRAPH, "node %d has an empty name", (int)n->id);
  if (strlen(n->name) > KIR_MAX_NAME)
    return kir_node_err(g, n, KILN_ERR_LIMIT, "name longer than %d bytes", KIR_MAX_NAME);
  if (!n->device || !n->assigned_device || !n->placement_reason)
    return kir_node_err(g, n, KILN_ERR_INTERNAL, "device fields must not be NULL");
  return KILN_OK;
}

/* Re-infers into a copy of the node and compares with the stored type. */
static kiln_status verify_type(kir_graph *g, const kir_node *n) {
  kir_node copy = *n;
  char want[128], got[128];
  memset(&copy.type, 0, sizeof copy.type);
  kiln_status s = kir_infer_node(g, &copy);
  if (s != KILN_OK) return s;
  if (!kir_type_equal(&copy.type, &n->type)) {
    kir_type_format(&n->type, got, sizeof got);
    kir_type_format(&copy.type, want, sizeof want);
    return kir_node_err(g, n, KILN_ERR_GRAPH, "stored type %s differs from inferred type %s",
                        got, want);
  }
  return KILN_OK;
}

static kiln_status verify_node(kir_graph *g, int32_t i) {
  const kir_node *n = g->nodes[i];
  if (!n) return kir_seterr(g, KILN_ERR_INTERNAL, "node %d is NULL", (int)i);
  if (n->id != i)
    return kir_node_err(g, n, KILN_ERR_INTERNAL, "id %d stored at position %d", (int)n->id, (int)i);
  kiln_status s = verify_strings(g, n);
  if (s == KILN_OK) s = kir_check_arity(g, n);
  if (s == KILN_OK) s = verify_inputs(g, n);
  if (s == KILN_OK) s = kir_check_schema(g, n);
  if (s == KILN_OK) s = verify_type(g, n); /* also: assign targets, no-output inputs */
  return s;
}

static int cmp_name(const void *a, const void *b) {
  const kir_node *x = *(kir_node *const *)a, *y = *(kir_node *const *)b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* Sorts a copy of the node list by name; equal neighbours are duplicates. */
static kiln_status verify_unique(kir_graph *g) {
  if (g->n_nodes < 2) return KILN_OK;
  kir_node **sorted = kir_malloc((size_t)g->n_nodes * sizeof *sorted);
  if (!sorted) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory checking names");
  memcpy(sorted, g->nodes, (size_t)g->n_nodes * sizeof *sorted);
  qsort(sorted, (size_t)g->n_nodes, sizeof *sorted, cmp_name);
  kiln_status s = KILN_OK;
  for (int32_t i = 1; i < g->n_nodes && s == KILN_OK; i++)
    if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
      s = kir_node_err(g, sorted[i], KILN_ERR_GRAPH, "duplicate name (nodes %d and %d)",
                       (int)sorted[i - 1]->id, (int)sorted[i]->id);
  kir_free(sorted);
  return s;
}

kiln_status kir_verify(kir_graph *g) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (g->n_nodes < 0 || (g->n_nodes > 0 && !g->nodes))
    return kir_seterr(g, KILN_ERR_INTERNAL, "bad node list");
  if (g->n_nodes > KIR_MAX_NODES)
    return kir_seterr(g, KILN_ERR_LIMIT, "graph has %d nodes, above %d", (int)g->n_nodes,
                      KIR_MAX_NODES);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kiln_status s = verify_node(g, i);
    if (s != KILN_OK) return s;
  }
  kiln_status s = verify_unique(g);
  if (s == KILN_OK) kir_clearerr(g);
  return s;
}
