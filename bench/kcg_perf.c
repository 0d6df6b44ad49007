/* kcg_perf.c — a tiny timing driver for the generated C: builds the benchmark graphs
 * (lecture MLP, MLP 784-512-512-10 at several batches, 50-op elementwise chains), runs
 * the fusing pipeline, compiles them with kcg_compile_cpu and times kiln_rt_run (median
 * and p10/p90 per run). Not a test; bench/run.sh and docs/PERFORMANCE.md report the
 * side-by-side numbers. Usage: bench_kcg_perf [--flags "CFLAGS"] [--cpu host|generic]
 *                                             [--only NAME] [--ms TARGET_MS] [--dump DIR]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/kcg.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_kcg_perf: %s: %s\n", what, msg);
  exit(1);
}

/* ---------------------------------------------------------------- graphs -------- */

static int32_t fin(kir_graph *g, kir_node *n) {
  if (!n || kir_infer_node(g, n) != KILN_OK) die("build", g->error);
  return n->id;
}

static int32_t ph(kir_graph *g, const char *name, int32_t rank, const int64_t *dims) {
  kir_node *n = kir_node_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  if (!n || kir_attr_set_int(g, n, "dtype", KILN_F32) || kir_attr_set_ints(g, n, "shape", dims, rank))
    die("build", g->error);
  return fin(g, n);
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int32_t cst(kir_graph *g, const char *name, int32_t rank, const int64_t *dims, float scale) {
  kir_type t = {KILN_F32, rank, {0}};
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  if (!x) die("build", "out of memory");
  for (int64_t i = 0; i < kir_type_numel(&t); i++) ((float *)x->data)[i] = frand() * scale;
  kir_node *n = kir_node_add(g, KIR_OP_CONSTANT, name, NULL, 0);
  if (!n || kir_attr_set_tensor(g, n, "value", x)) die("build", g->error);
  kir_tensor_free(x);
  return fin(g, n);
}

static int32_t op(kir_graph *g, kir_op o, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  return fin(g, kir_node_add(g, o, name, in, b >= 0 ? 2 : 1));
}

static int32_t relu(kir_graph *g, const char *name, int32_t a) { return op(g, KIR_OP_RELU, name, a, -1); }

/* x[64,1000] @ w1[1000,100] -> clamp(min 0) -> @ w2[100,10] */
static kir_graph *lecture(void) {
  kir_graph *g = kir_graph_create();
  int32_t x = ph(g, "x", 2, (int64_t[]){64, 1000});
  int32_t w1 = cst(g, "w1", 2, (int64_t[]){1000, 100}, 0.05f), w2 = cst(g, "w2", 2, (int64_t[]){100, 10}, 0.1f);
  kir_node *c = kir_node_add(g, KIR_OP_CLAMP, "h", (int32_t[]){op(g, KIR_OP_MATMUL, "xw1", x, w1)}, 1);
  if (!c || kir_attr_set_float(g, c, "min", 0.0)) die("build", g->error);
  op(g, KIR_OP_MATMUL, "y", fin(g, c), w2);
  return g;
}

/* relu(relu(x W1 + b1) W2 + b2) W3 + b3, 784-512-512-10 */
static kir_graph *mlp(int64_t batch) {
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
static kir_graph *chain(int32_t rank, const int64_t *dims) {
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

/* ---------------------------------------------------------------- timing -------- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static char blas[160] = "(no model loaded)";

static const char *dump_dir;

/* The generated C of the case (before kcg_compile_cpu's own rewrites) into DIR/NAME.c. */
static void dump_source(const char *name, kir_graph *g) {
  int32_t y = kir_graph_find(g, "y")->id;
  kps_memplan plan;
  char *src = NULL, path[512];
  if (kps_plan_memory(g, &y, 1, &plan) || kcg_c_generate(g, &plan, &y, 1, &src)) die(name, g->error);
  kps_memplan_free(&plan);
  snprintf(path, sizeof path, "%s/%s.c", dump_dir, name);
  FILE *f = fopen(path, "w");
  if (!f) die(path, "cannot write");
  fputs(src, f);
  fclose(f);
  kir_free(src);
}

static void bench(const char *name, kir_graph *g, const kcg_options *co, double target_ms) {
  const char *outs[1] = {"y"};
  kps_options po = {"infer-shapes,fold,dce,fuse,place", true, false, NULL, NULL};
  kps_context ctx = {outs, 1, NULL, 0, false, NULL, NULL};
  if (kps_run(g, &po, &ctx) != KILN_OK) die(name, g->error);
  if (dump_dir) dump_source(name, g);
  char path[64];
  snprintf(path, sizeof path, "/tmp/kcg_perf_%d.kart", (int)getpid());
  double t0 = now_s();
  if (kcg_compile_cpu(g, outs, 1, co, path) != KILN_OK) die(name, g->error);
  double tc = now_s() - t0;
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  if (kiln_rt_model_open(path, &m) != KILN_RT_OK) die(name, kiln_rt_model_error(m));
  unlink(path);
  snprintf(blas, sizeof blas, "%s", kiln_rt_model_blas_core(m));
  if (kiln_rt_context_create(m, &c) != KILN_RT_OK) die(name, "context");
  kiln_rt_tensor_info ii, oi;
  kiln_rt_model_input(m, 0, &ii);
  kiln_rt_model_output(m, 0, &oi);
  float *x = aligned_alloc(64, (ii.nbytes + 63) / 64 * 64), *y = aligned_alloc(64, (oi.nbytes + 63) / 64 * 64);
  for (size_t i = 0; i < ii.nbytes / 4; i++) x[i] = frand();
  kiln_rt_buffer bi = {x, ii.nbytes}, bo = {y, oi.nbytes};
  for (int i = 0; i < 20; i++)
    if (kiln_rt_run(c, &bi, 1, &bo, 1) != KILN_RT_OK) die(name, kiln_rt_context_error(c));
  /* runs per sample so one sample takes about 0.2 ms */
  double t1 = now_s();
  int probe = 0;
  while (now_s() - t1 < 2e-3) { kiln_rt_run(c, &bi, 1, &bo, 1); probe++; }
  double per = (now_s() - t1) / probe;
  int inner = per > 2e-4 ? 1 : (int)(2e-4 / per) + 1;
  int ns = (int)(target_ms * 1e-3 / (per * inner)) + 1;
  if (ns < 15) ns = 15;
  if (ns > 2000) ns = 2000;
  double *s = malloc(sizeof *s * (size_t)ns);
  for (int k = 0; k < ns; k++) {
    double a = now_s();
    for (int i = 0; i < inner; i++) kiln_rt_run(c, &bi, 1, &bo, 1);
    s[k] = (now_s() - a) / inner;
  }
  qsort(s, (size_t)ns, sizeof *s, cmp_d);
  double sum = 0;
  for (size_t i = 0; i < oi.nbytes / 4; i++) sum += y[i];
  printf("%-14s median %10.2f us  p10 %10.2f  p90 %10.2f  (%d samples x %d; compile %.2f s; checksum %.6g)\n",
         name, s[ns / 2] * 1e6, s[ns / 10] * 1e6, s[ns * 9 / 10] * 1e6, ns, inner, tc, sum);
  fflush(stdout);
  free(s);
  free(x);
  free(y);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  kir_graph_destroy(g);
}

int main(int argc, char **argv) {
  kcg_options co = {0};
  const char *only = NULL;
  double ms = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--flags")) co.opt_flags = argv[i + 1];
    else if (!strcmp(argv[i], "--cpu")) co.cpu = argv[i + 1];
    else if (!strcmp(argv[i], "--dump")) dump_dir = argv[i + 1];
    else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    else if (!strcmp(argv[i], "--ms")) ms = atof(argv[i + 1]);
    else die("usage", "bench_kcg_perf [--flags CFLAGS] [--cpu host|generic] [--only NAME] [--ms MS] [--dump DIR]");
  }
  struct { const char *name; kir_graph *(*mk)(int64_t); int64_t arg; } cases[] = {
      {"lecture", NULL, 0}, {"mlp_b1", mlp, 1}, {"mlp_b32", mlp, 32}, {"mlp_b256", mlp, 256},
      {"chain50_64", NULL, 64}, {"chain50_1M", NULL, 1 << 20},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    kir_graph *g = cases[i].mk ? cases[i].mk(cases[i].arg)
                   : cases[i].arg == 0 ? lecture()
                   : cases[i].arg == 64 ? chain(2, (int64_t[]){1, 64})
                                        : chain(1, (int64_t[]){cases[i].arg});
    bench(cases[i].name, g, &co, ms);
  }
  printf("openblas core: %s\n", blas);
  return 0;
}
