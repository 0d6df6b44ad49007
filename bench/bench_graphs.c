/* bench_graphs.c — the benchmark graphs (bench_graphs.h). */
#include "bench_graphs.h"

#include <stdio.h>
#include <stdlib.h>

static void bg_die(const char *msg) {
  fprintf(stderr, "bench: building a graph: %s\n", msg);
  exit(1);
}

static int32_t fin(kir_graph *g, kir_node *n) {
  if (!n || kir_infer_node(g, n) != KILN_OK) bg_die(g->error);
  return n->id;
}

static int32_t ph(kir_graph *g, const char *name, int32_t rank, const int64_t *dims) {
  kir_node *n = kir_node_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  if (!n || kir_attr_set_int(g, n, "dtype", KILN_F32) || kir_attr_set_ints(g, n, "shape", dims, rank))
    bg_die(g->error);
  return fin(g, n);
}

static uint64_t rng = 88172645463325252ull;
float bg_frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int32_t cst(kir_graph *g, const char *name, int32_t rank, const int64_t *dims, float scale) {
  kir_type t = {KILN_F32, rank, {0}};
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  if (!x) bg_die("out of memory");
  for (int64_t i = 0; i < kir_type_numel(&t); i++) ((float *)x->data)[i] = bg_frand() * scale;
  kir_node *n = kir_node_add(g, KIR_OP_CONSTANT, name, NULL, 0);
  if (!n || kir_attr_set_tensor(g, n, "value", x)) bg_die(g->error);
  kir_tensor_free(x);
  return fin(g, n);
}

static int32_t op(kir_graph *g, kir_op o, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  return fin(g, kir_node_add(g, o, name, in, b >= 0 ? 2 : 1));
}

static int32_t relu(kir_graph *g, const char *name, int32_t a) { return op(g, KIR_OP_RELU, name, a, -1); }

/* x[64,1000] @ w1[1000,100] -> clamp(min 0) -> @ w2[100,10] */
kir_graph *bg_lecture(void) {
  kir_graph *g = kir_graph_create();
  int32_t x = ph(g, "x", 2, (int64_t[]){64, 1000});
  int32_t w1 = cst(g, "w1", 2, (int64_t[]){1000, 100}, 0.05f), w2 = cst(g, "w2", 2, (int64_t[]){100, 10}, 0.1f);
  kir_node *c = kir_node_add(g, KIR_OP_CLAMP, "h", (int32_t[]){op(g, KIR_OP_MATMUL, "xw1", x, w1)}, 1);
  if (!c || kir_attr_set_float(g, c, "min", 0.0)) bg_die(g->error);
  op(g, KIR_OP_MATMUL, "y", fin(g, c), w2);
  return g;
}

/* relu(relu(x W1 + b1) W2 + b2) W3 + b3, 784-512-512-10 */
kir_graph *bg_mlp(int64_t batch) {
  kir_graph *g = kir_graph_create();
  int32_t h = ph(g, "x", 2, (int64_t[]){batch, 784});
  const int64_t sz[4] = {784, 512, 512, 10};
  for (int l = 0; l < 3; l++) {
    char nw[8], nb[8], nm[8], na[8], nr[8];
    snprintf(nw, sizeof nw, "w%d", l);
    snprintf(nb, sizeof nb, "b%d", l);
    snprintf(nm, sizeof nm, "m%d", l);
    snprintf(na, sizeof na, l == 2 ? "y" : "a%d", l);
    snprintf(nr, sizeof nr, "r%d", l);
    int32_t w = cst(g, nw, 2, (int64_t[]){sz[l], sz[l + 1]}, 0.05f), b = cst(g, nb, 1, &sz[l + 1], 0.1f);
    h = op(g, KIR_OP_ADD, na, op(g, KIR_OP_MATMUL, nm, h, w), b);
    if (l < 2) h = relu(g, nr, h);
  }
  return g;
}

/* 50 cheap elementwise ops over x (scalar constants broadcast). */
kir_graph *bg_chain(int32_t rank, const int64_t *dims) {
  kir_graph *g = kir_graph_create();
  int32_t v = ph(g, "x", rank, dims);
  for (int k = 0; k < 50; k++) {
    char nm[16], nc[16];
    snprintf(nm, sizeof nm, k == 49 ? "y" : "e%d", k);
    snprintf(nc, sizeof nc, "c%d", k);
    switch (k % 5) {
    case 0: v = op(g, KIR_OP_ADD, nm, v, cst(g, nc, 0, NULL, 0.5f)); break;
    case 1: v = op(g, KIR_OP_MUL, nm, v, cst(g, nc, 0, NULL, 1.0f)); break;
    case 2: v = relu(g, nm, v); break;
    case 3: v = op(g, KIR_OP_SUB, nm, v, cst(g, nc, 0, NULL, 0.5f)); break;
    default: v = op(g, KIR_OP_MAXIMUM, nm, v, cst(g, nc, 0, NULL, 0.5f)); break;
    }
  }
  return g;
}

