/* fuzz_onnx.c — fuzz target for the ONNX importer (konnx_import) and the tensor reader
 * (konnx_read_tensor) on the same bytes. Properties: never crashes or leaks
 * (kir_alloc_live returns to its start value); a failed import leaves the graph empty
 * with a message; an imported graph verifies. Depends on ir/ and frontend/onnx. */
#include "frontend/onnx/kiln_onnx.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  if (!g) return 0;
  kiln_status st = konnx_import(g, data, size, NULL);
  if (st == KILN_OK)
    FUZZ_CHECK(kir_verify(g) == KILN_OK, "an imported graph does not verify: %s", g->error);
  else
    FUZZ_CHECK(g->n_nodes == 0 && g->error[0], "failed import (status %d) left %d nodes or no message",
               (int)st, g->n_nodes);
  kir_graph_destroy(g);
  kir_tensor *t = NULL;
  char *name = NULL, err[256] = "";
  st = konnx_read_tensor(data, size, &t, &name, err, sizeof err);
  FUZZ_CHECK((st == KILN_OK) == (t != NULL) && (st == KILN_OK || err[0]),
             "read_tensor status %d with tensor %p, message '%s'", (int)st, (void *)t, err);
  kir_tensor_free(t);
  kir_free(name);
  FUZZ_CHECK(kir_alloc_live() == live, "%ld blocks leaked", kir_alloc_live() - live);
  return 0;
}
