/* fuzz_graph_load.c — fuzz target for the .kiln protobuf loader (kir_graph_from_bytes).
 * Properties: never crashes or leaks (kir_alloc_live returns to its start value, on
 * every path); a graph that loads saves, reloads, and saves again to the same bytes.
 * Depends on ir/ only. */
#include <string.h>

#include "fuzz.h"
#include "ir/kir.h"

/* Saves g, loads the bytes into a fresh graph and saves that: both saves must match. */
static void check_round_trip(kir_graph *g) {
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  kiln_status st = kir_graph_to_bytes(g, &b1, &n1);
  FUZZ_CHECK(st == KILN_OK, "a loaded graph does not save: %s", g->error);
  kir_graph *g2 = kir_graph_create();
  FUZZ_CHECK(g2 != NULL, "out of memory");
  st = kir_graph_from_bytes(g2, b1, n1);
  FUZZ_CHECK(st == KILN_OK, "a saved graph does not load again: %s", g2->error);
  FUZZ_CHECK(g2->n_nodes == g->n_nodes, "node count %d became %d", g->n_nodes, g2->n_nodes);
  st = kir_graph_to_bytes(g2, &b2, &n2);
  FUZZ_CHECK(st == KILN_OK, "a reloaded graph does not save: %s", g2->error);
  FUZZ_CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "save, load, save changed the bytes (%zu -> %zu)",
             n1, n2);
  kir_free(b1);
  kir_free(b2);
  kir_graph_destroy(g2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  if (!g) return 0;
  kiln_status st = kir_graph_from_bytes(g, data, size);
  if (st == KILN_OK)
    check_round_trip(g);
  else
    FUZZ_CHECK(g->n_nodes == 0 && g->error[0], "failed load (status %d) left %d nodes or no message",
               (int)st, g->n_nodes);
  kir_graph_destroy(g);
  FUZZ_CHECK(kir_alloc_live() == live, "%ld blocks leaked (status %d)", kir_alloc_live() - live,
             (int)st);
  return 0;
}
