/* seed_constants — the lecture's first TensorFlow program in Kiln's C API: a constant
 * ts_c = 2 and a variable ts_x initialized to ts_c + 5; run the initializer, then print
 * both. Uses frontend/kiln.h only; exits 1 with the library's message on any error. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln.h"

static kiln_graph *g;
static kiln_session *s;

static void check_graph(kiln_status st, const char *what) {
  if (st == KILN_OK) return;
  fprintf(stderr, "seed_constants: %s: %s\n", what, kiln_graph_error(g));
  exit(1);
}

static void check_session(kiln_status st, const char *what) {
  if (st == KILN_OK) return;
  fprintf(stderr, "seed_constants: %s: %s\n", what, kiln_session_error(s));
  exit(1);
}

int main(void) {
  g = kiln_graph_create();
  kiln_tensor *two = kiln_tensor_scalar_i32(2), *five = kiln_tensor_scalar_i32(5);
  if (!g || !two || !five) {
    fprintf(stderr, "seed_constants: out of memory\n");
    return 1;
  }
  kiln_node *ts_c, *c5, *sum, *ts_x, *init;
  check_graph(kiln_constant(g, "ts_c", two, &ts_c), "ts_c");
  check_graph(kiln_constant(g, NULL, five, &c5), "constant 5");
  check_graph(kiln_add(g, NULL, ts_c, c5, &sum), "ts_c + 5");
  check_graph(kiln_variable(g, "ts_x", sum, &ts_x), "ts_x");
  check_graph(kiln_global_variables_initializer(g, &init), "initializer");
  check_graph(kiln_session_create(g, NULL, &s), "session");
  check_session(kiln_session_run(s, NULL, 0, NULL, 0, &init, 1, NULL), "initializer");
  kiln_node *fetch[2] = {ts_c, ts_x};
  kiln_tensor *out[2];
  check_session(kiln_session_run(s, NULL, 0, fetch, 2, NULL, 0, out), "fetch");
  printf("ts_c= %d\n", (int)*(const int32_t *)kiln_tensor_data_const(out[0]));
  printf("ts_x= %d\n", (int)*(const int32_t *)kiln_tensor_data_const(out[1]));
  kiln_tensor_destroy(out[0]);
  kiln_tensor_destroy(out[1]);
  kiln_tensor_destroy(two);
  kiln_tensor_destroy(five);
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
  return 0;
}
