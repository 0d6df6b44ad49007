/* seed_device — the lecture's device program: under a cpu:0 device scope, two seeded
 * 500x500 normal matrices W and X, mul = W @ X, sum = reduce_sum(mul); the session logs
 * where each node was placed (log_device_placement) to stdout, then prints the sum.
 * Uses frontend/kiln.h only; exits 1 with the library's message on any error. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln.h"

static kiln_graph *g;

static void check_graph(kiln_status st, const char *what) {
  if (st == KILN_OK) return;
  fprintf(stderr, "seed_device: %s: %s\n", what, kiln_graph_error(g));
  exit(1);
}

int main(void) {
  g = kiln_graph_create();
  if (!g) {
    fprintf(stderr, "seed_device: out of memory\n");
    return 1;
  }
  const int64_t dims[2] = {500, 500};
  kiln_node *w, *x, *mul, *sum;
  check_graph(kiln_scope_push_device(g, "cpu:0"), "device scope");
  check_graph(kiln_random_normal(g, "W", KILN_F32, dims, 2, 0.0, 1.0, 1, &w), "W");
  check_graph(kiln_random_normal(g, "X", KILN_F32, dims, 2, 0.0, 1.0, 2, &x), "X");
  check_graph(kiln_matmul(g, "mul", w, x, false, false, &mul), "mul");
  check_graph(kiln_reduce_sum(g, "sum", mul, NULL, 0, false, &sum), "sum");
  check_graph(kiln_scope_pop_device(g), "device scope");
  kiln_session_options opts = {.log_device_placement = true, .log = stdout};
  kiln_session *s;
  check_graph(kiln_session_create(g, &opts, &s), "session");
  kiln_tensor *out;
  if (kiln_session_run(s, NULL, 0, &sum, 1, NULL, 0, &out) != KILN_OK) {
    fprintf(stderr, "seed_device: run: %s\n", kiln_session_error(s));
    return 1;
  }
  printf("sum= %.6g\n", (double)*(const float *)kiln_tensor_data_const(out));
  kiln_tensor_destroy(out);
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
  return 0;
}
