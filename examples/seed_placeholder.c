/* seed_placeholder [PATH] — the lecture's placeholder program: area = width * height,
 * fed 6 and 8, prints "area= 48"; with PATH also saves the graph there (ir/kiln.proto).
 * Uses frontend/kiln.h only; exits 1 with the library's message on any error. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln.h"

static kiln_graph *g;
static kiln_session *s;

static void check_graph(kiln_status st, const char *what) {
  if (st == KILN_OK) return;
  fprintf(stderr, "seed_placeholder: %s: %s\n", what, kiln_graph_error(g));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: seed_placeholder [OUT.kiln]\n");
    return 1;
  }
  g = kiln_graph_create();
  kiln_tensor *six = kiln_tensor_scalar_i32(6), *eight = kiln_tensor_scalar_i32(8);
  if (!g || !six || !eight) {
    fprintf(stderr, "seed_placeholder: out of memory\n");
    return 1;
  }
  kiln_node *w, *h, *area;
  check_graph(kiln_placeholder(g, "width", KILN_I32, NULL, 0, &w), "width");
  check_graph(kiln_placeholder(g, "height", KILN_I32, NULL, 0, &h), "height");
  check_graph(kiln_mul(g, "area", w, h, &area), "area");
  check_graph(kiln_session_create(g, NULL, &s), "session");
  kiln_feed feeds[] = {{w, six}, {h, eight}};
  kiln_tensor *out;
  if (kiln_session_run(s, feeds, 2, &area, 1, NULL, 0, &out) != KILN_OK) {
    fprintf(stderr, "seed_placeholder: run: %s\n", kiln_session_error(s));
    return 1;
  }
  printf("area= %d\n", (int)*(const int32_t *)kiln_tensor_data_const(out));
  if (argc == 2) check_graph(kiln_graph_save(g, argv[1]), "save");
  kiln_tensor_destroy(out);
  kiln_tensor_destroy(six);
  kiln_tensor_destroy(eight);
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
  return 0;
}
