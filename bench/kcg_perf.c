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
#include "bench_graphs.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_kcg_perf: %s: %s\n", what, msg);
  exit(1);
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
  for (size_t i = 0; i < ii.nbytes / 4; i++) x[i] = bg_frand();
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
      {"lecture", NULL, 0}, {"mlp_b1", bg_mlp, 1}, {"mlp_b32", bg_mlp, 32}, {"mlp_b256", bg_mlp, 256},
      {"chain50_64", NULL, 64}, {"chain50_1M", NULL, 1 << 20},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    kir_graph *g = cases[i].mk ? cases[i].mk(cases[i].arg)
                   : cases[i].arg == 0 ? bg_lecture()
                   : cases[i].arg == 64 ? bg_chain(2, (int64_t[]){1, 64})
                                        : bg_chain(1, (int64_t[]){cases[i].arg});
    bench(cases[i].name, g, &co, ms);
  }
  printf("openblas core: %s\n", blas);
  return 0;
}
