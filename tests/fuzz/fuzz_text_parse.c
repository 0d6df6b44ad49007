/* fuzz_text_parse.c — fuzz target for the text form of the IR (kir_graph_parse_text),
 * which `kiln opt`, `kiln run` and `kiln compile` accept from users.
 * Properties: never crashes or leaks; a failed parse leaves the graph empty with a
 * message; a text that parses prints (with full constants) to a text that parses back
 * and prints to the same bytes. Depends on ir/ only. */
#include <string.h>

#include "fuzz.h"
#include "ir/kir.h"

/* Prints g, parses the print into a fresh graph, prints that: both prints must match. */
static void check_round_trip(kir_graph *g) {
  char *t1 = NULL, *t2 = NULL;
  size_t n1 = 0, n2 = 0;
  FUZZ_CHECK(kir_graph_to_text(g, &t1, &n1, true) == KILN_OK, "a parsed graph does not print: %s",
             g->error);
  kir_graph *g2 = kir_graph_create();
  FUZZ_CHECK(g2 != NULL, "out of memory");
  kiln_status st = kir_graph_parse_text(g2, t1, n1, "printed");
  FUZZ_CHECK(st == KILN_OK, "a printed graph does not parse again: %s", g2->error);
  FUZZ_CHECK(kir_graph_to_text(g2, &t2, &n2, true) == KILN_OK, "a reparsed graph does not print");
  FUZZ_CHECK(n1 == n2 && memcmp(t1, t2, n1) == 0, "print, parse, print changed the text");
  kir_free(t1);
  kir_free(t2);
  kir_graph_destroy(g2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  if (!g) return 0;
  kiln_status st = kir_graph_parse_text(g, (const char *)data, size, "fuzz");
  if (st == KILN_OK)
    check_round_trip(g);
  else
    FUZZ_CHECK(g->n_nodes == 0 && g->error[0], "failed parse (status %d) left %d nodes or no message",
               (int)st, g->n_nodes);
  kir_graph_destroy(g);
  FUZZ_CHECK(kir_alloc_live() == live, "%ld blocks leaked (status %d)", kir_alloc_live() - live,
             (int)st);
  return 0;
}
