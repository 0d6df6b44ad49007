/* seed_mlp OUT.kiln — the lecture's two-layer network y = clamp(x @ w1, min=0) @ w2 with
 * N=64, D_in=1000, H=100, D_out=10, built with Kiln's C API and saved for `kiln opt`,
 * `kiln compile` and `kiln run`. Weights are constants drawn here, deterministically.
 * Uses frontend/kiln.h only; exits 1 with the library's message on any error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln.h"

enum { N = 64, D_IN = 1000, H = 100, D_OUT = 10 };

static kiln_graph *g;

static void check_graph(kiln_status st, const char *what) {
  if (st == KILN_OK) return;
  fprintf(stderr, "seed_mlp: %s: %s\n", what, kiln_graph_error(g));
  exit(1);
}

/* splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, good enough for weights. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in (0, 1]: the top 53 bits, shifted off zero so log() below is finite. */
static double uniform01(uint64_t *s) {
  return ((double)(splitmix64(s) >> 11) + 1.0) / 9007199254740992.0;
}

/* Standard normal by Box–Muller (one value per pair; simple over fast), like
 * torch.randn in the lecture's version. */
static float normal(uint64_t *s) {
  double u1 = uniform01(s), u2 = uniform01(s);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static kiln_node *weights(const char *name, int64_t rows, int64_t cols, uint64_t seed) {
  float *v = malloc((size_t)(rows * cols) * sizeof *v);
  if (!v) {
    fprintf(stderr, "seed_mlp: out of memory\n");
    exit(1);
  }
  for (int64_t i = 0; i < rows * cols; i++) v[i] = normal(&seed);
  const int64_t dims[2] = {rows, cols};
  kiln_tensor *t = kiln_tensor_create(KILN_F32, dims, 2, v);
  free(v);
  if (!t) {
    fprintf(stderr, "seed_mlp: out of memory\n");
    exit(1);
  }
  kiln_node *n;
  check_graph(kiln_constant(g, name, t, &n), name);
  kiln_tensor_destroy(t);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: seed_mlp OUT.kiln\n");
    return 1;
  }
  g = kiln_graph_create();
  if (!g) {
    fprintf(stderr, "seed_mlp: out of memory\n");
    return 1;
  }
  const int64_t xdims[2] = {N, D_IN};
  kiln_node *x, *h, *h_relu, *y;
  check_graph(kiln_placeholder(g, "x", KILN_F32, xdims, 2, &x), "x");
  kiln_node *w1 = weights("w1", D_IN, H, 1);
  kiln_node *w2 = weights("w2", H, D_OUT, 2);
  check_graph(kiln_matmul(g, "h", x, w1, false, false, &h), "h");
  check_graph(kiln_clamp(g, "h_relu", h, true, 0.0, false, 0.0, &h_relu), "h_relu");
  check_graph(kiln_matmul(g, "y", h_relu, w2, false, false, &y), "y");
  check_graph(kiln_graph_save(g, argv[1]), "save");
  printf("seed_mlp: wrote %d nodes (x f32[%d,%d] -> y f32[%d,%d]) to %s\n",
         kiln_graph_num_nodes(g), N, D_IN, N, D_OUT, argv[1]);
  kiln_graph_destroy(g);
  return 0;
}
