/* pass_scale.c — the pass-scaling benchmark: builds seeded random graphs (kt_gen) of
 * 10k and 100k nodes, runs every registered pass alone and the default and full
 * pipelines on fresh copies (sizes interleaved, R times), and prints the median CPU time
 * of each and the 100k/10k ratio (about 10 when a pass is linear). A benchmark, not a timed test. Depends on passes/ and ir/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/kps.h"
#include "ir/kir.h"
#include "tests/passes/kt_gen.h"

#define MAX_SIZES 4
#define MAX_ROWS 66
#define MAX_REPEAT 101
#define MAX_BLOCKS 64

static const char *const FULL_ORDER[] = {"infer-shapes", "fold", "simplify", "cse", "dce",
                                         "fuse", "place", "plan-memory"};

typedef struct row {
  char label[32];
  const char *pipeline; /* NULL: the default */
  double ms[MAX_SIZES];
} row;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: other load on the machine matters less */
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_pass_scale [--nodes N]... [--seed S] [--repeat R] [--max-ratio X]\n"
                  "                        [--only PASS|default|full] [--max-numel N] [--window N]\n"
                  "  default sizes: --nodes 10000 --nodes 100000; the ratio is last/first size;\n"
                  "  --window N: operands drawn from the last N values (short edges, as in real\n"
                  "  networks); 0: from all values (long random edges: every operand read misses\n"
                  "  the caches once the graph outgrows them). Default: both, 1000 then 0.\n"
                  "  --repeat R: runs per cell (default 5, at most 101), sizes interleaved; medians\n"
                  "  exit status 2 when a ratio exceeds --max-ratio (default 15, 0: never)\n");
}

/* A graph to time with its roots (borrowed from kt_gen values, or owned by a union). */
typedef struct bgraph {
  kir_graph *g;
  char **roots;
  int32_t n_roots;
  bool owned;
} bgraph;

/* One run of pipeline on a fresh clone of b's graph (the clone is not timed); -1 on
 * error. */
static double time_pipeline(const bgraph *b, const char *pipeline) {
  kir_graph *h = kir_graph_clone(b->g);
  if (!h) return -1;
  kps_options opt;
  memset(&opt, 0, sizeof opt);
  opt.pipeline = pipeline;
  kps_context ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.roots = (const char *const *)b->roots;
  ctx.n_roots = b->n_roots;
  double t0 = now_ms();
  kiln_status st = kps_run(h, &opt, &ctx);
  double ms = now_ms() - t0;
  if (st != KILN_OK) {
    fprintf(stderr, "bench_pass_scale: %s: %s: %s\n", pipeline ? pipeline : "default",
            kiln_status_name(st), h->error);
    ms = -1;
  }
  kir_graph_destroy(h);
  return ms;
}

static void bgraph_free(bgraph *b) {
  if (b->owned) {
    for (int32_t r = 0; r < b->n_roots; r++) free(b->roots[r]);
    free(b->roots);
    kir_graph_destroy(b->g);
  }
  memset(b, 0, sizeof *b);
}

/* The disjoint union of parts[0..n): node and root names prefixed "bI/". */
static kiln_status make_union(const kt_gen *parts, int32_t n, bgraph *out) {
  memset(out, 0, sizeof *out);
  out->owned = true;
  int32_t total_roots = 0;
  for (int32_t p = 0; p < n; p++) total_roots += parts[p].n_roots;
  out->g = kir_graph_create();
  out->roots = calloc((size_t)total_roots + 1, sizeof *out->roots);
  if (!out->g || !out->roots) return KILN_ERR_NOMEM;
  char name[KIR_MAX_NAME + 32];
  int32_t in[64];
  for (int32_t p = 0; p < n; p++) {
    const kir_graph *src = parts[p].g;
    int32_t base = out->g->n_nodes;
    for (int32_t i = 0; i < src->n_nodes; i++) {
      const kir_node *sn = src->nodes[i];
      if (sn->n_inputs > 64) return KILN_ERR_LIMIT;
      for (int32_t k = 0; k < sn->n_inputs; k++) in[k] = sn->inputs[k] + base;
      snprintf(name, sizeof name, "b%d/%s", (int)p, sn->name);
      kir_node *nd = kir_node_add(out->g, sn->op, name, in, sn->n_inputs);
      if (!nd) return out->g->status;
      nd->type = sn->type;
      if (!(nd->device = kir_graph_strdup(out->g, sn->device))) return KILN_ERR_NOMEM;
      kiln_status st = kir_attr_copy_all(out->g, nd, sn);
      if (st != KILN_OK) return st;
    }
    for (int32_t r = 0; r < parts[p].n_roots; r++) {
      snprintf(name, sizeof name, "b%d/%s", (int)p, parts[p].roots[r]);
      if (!(out->roots[out->n_roots++] = strdup(name))) return KILN_ERR_NOMEM;
    }
  }
  return kir_verify(out->g);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Every registered pass, then the default and full pipelines; `only` keeps one row. */
static int32_t make_rows(row *rows, char *full, size_t n_full, const char *only) {
  int32_t n = 0;
  for (int32_t p = 0; p < kps_n_passes && n < MAX_ROWS - 2; p++, n++) {
    snprintf(rows[n].label, sizeof rows[n].label, "%s", kps_passes[p].name);
    rows[n].pipeline = kps_passes[p].name;
  }
  snprintf(rows[n].label, sizeof rows[n].label, "default pipeline");
  rows[n++].pipeline = NULL;
  size_t used = 0;
  full[0] = '\0';
  for (size_t i = 0; i < sizeof FULL_ORDER / sizeof FULL_ORDER[0]; i++)
    if (kps_pass_find(FULL_ORDER[i]) && used < n_full)
      used += (size_t)snprintf(full + used, n_full - used, "%s%s", used ? "," : "", FULL_ORDER[i]);
  snprintf(rows[n].label, sizeof rows[n].label, "full pipeline");
  rows[n++].pipeline = full;
  if (!only) return n;
  for (int32_t r = 0; r < n; r++)
    if (!strcmp(rows[r].label, only) || (!strncmp(rows[r].label, only, strlen(only)) &&
                                        (!strcmp(only, "default") || !strcmp(only, "full")))) {
      rows[0] = rows[r];
      return 1;
    }
  return 0;
}

/* Builds the graphs, then times every row `repeat` times, the sizes interleaved (10k,
 * 100k, 10k, 100k, ...) so that a busy moment on the machine slows both sizes alike
 * instead of one; keeps the median of each.
 *
 * With short edges (window > 0) the graph of size N is the disjoint union of N / base
 * graphs of the first size `base`, seeds seed, seed+1, ...; the first column is the mean
 * over those graphs of their medians. A random graph's mix of ops and dtypes depends on
 * its seed (one 10k graph may be 28% f32 values and another 67%: fusion has 2x more to
 * do in the second), so comparing one 10k graph with one 100k graph measures the draw,
 * not the pass; against the union of the same ten graphs, a linear pass is exactly 10x.
 * With long edges (window 0) each size is one graph of that many nodes, seed `seed`:
 * edges span the whole graph, which is what that family is for. */
static int run_sizes(const int32_t *sizes, int32_t n_sizes, int32_t max_numel, int32_t window,
                     uint64_t seed, int repeat, row *rows, int32_t n_rows) {
  static kt_gen k[MAX_BLOCKS];
  static bgraph g[MAX_SIZES + MAX_BLOCKS];
  static double t[MAX_SIZES + MAX_BLOCKS][MAX_REPEAT];
  int32_t base = sizes[0], blocks = 0, n_graphs = 0, n_base = 1;
  bool unions = window > 0 && n_sizes > 1;
  for (int32_t z = 0; unions && z < n_sizes; z++)
    if (sizes[z] % base != 0 || sizes[z] / base > MAX_BLOCKS) unions = false;
  int32_t n_k = unions ? sizes[n_sizes - 1] / base : n_sizes;
  int rc = 0;
  for (; blocks < n_k && rc == 0; blocks++) {
    kt_gen_opts o;
    memset(&o, 0, sizeof o);
    o.n_nodes = unions ? base : sizes[blocks];
    o.roots_all_sinks = true;
    o.max_numel = max_numel;
    o.window = window;
    char err[768];
    if (kt_gen_build(seed + (unions ? (uint64_t)blocks : 0), &o, &k[blocks], err, sizeof err) != KILN_OK) {
      fprintf(stderr, "bench_pass_scale: %s\n", err);
      rc = 1;
      break;
    }
  }
  /* graphs: unions: the n_k blocks (the first column), then one union per larger size;
   * otherwise one graph per size */
  if (rc == 0 && unions) {
    n_base = n_k;
    for (int32_t b = 0; b < n_k; b++) g[n_graphs++] = (bgraph){k[b].g, k[b].roots, k[b].n_roots, false};
    for (int32_t z = 1; z < n_sizes && rc == 0; z++)
      if (make_union(k, sizes[z] / base, &g[n_graphs++]) != KILN_OK) {
        fprintf(stderr, "bench_pass_scale: building the union of %d graphs failed\n", (int)(sizes[z] / base));
        rc = 1;
      }
  } else if (rc == 0) {
    for (int32_t z = 0; z < n_sizes; z++) g[n_graphs++] = (bgraph){k[z].g, k[z].roots, k[z].n_roots, false};
  }
  if (rc == 0 && unions) {
    int32_t roots = 0;
    for (int32_t b = 0; b < n_base; b++) roots += g[b].n_roots;
    printf("%d graphs of about %d nodes (seeds %llu..%llu; %.0f roots each on average)\n",
           (int)n_base, (int)base, (unsigned long long)seed,
           (unsigned long long)(seed + (uint64_t)n_base - 1), (double)roots / n_base);
  }
  for (int32_t i = unions ? n_base : 0; i < n_graphs && rc == 0; i++)
    printf("graph of %d nodes (%d roots)%s\n", (int)g[i].g->n_nodes, (int)g[i].n_roots,
           unions ? ": their union" : "");
  for (int32_t r = 0; r < n_rows && rc == 0; r++) {
    for (int i = 0; i < repeat && rc == 0; i++)
      for (int32_t j = 0; j < n_graphs && rc == 0; j++)
        if ((t[j][i] = time_pipeline(&g[j], rows[r].pipeline)) < 0) rc = 1;
    if (rc != 0) break;
    double sum = 0;
    for (int32_t b = 0; b < n_base; b++) sum += median(t[b], repeat);
    rows[r].ms[0] = sum / n_base;
    for (int32_t z = 1; z < n_sizes; z++) rows[r].ms[z] = median(t[n_base + z - 1], repeat);
  }
  for (int32_t j = 0; j < n_graphs; j++) bgraph_free(&g[j]);
  for (int32_t b = 0; b < blocks; b++) kt_gen_free(&k[b]);
  return rc;
}

static int print_table(const row *rows, int32_t n_rows, const int32_t *sizes, int32_t n_sizes,
                       double max_ratio) {
  int rc = 0;
  printf("\n%-18s", "pass");
  for (int32_t s = 0; s < n_sizes; s++) printf(" %9d nodes", (int)sizes[s]);
  if (n_sizes > 1) printf("   ratio (x%.0f nodes)", (double)sizes[n_sizes - 1] / sizes[0]);
  printf("\n");
  for (int32_t r = 0; r < n_rows; r++) {
    printf("%-18s", rows[r].label);
    for (int32_t s = 0; s < n_sizes; s++) printf(" %12.2f ms", rows[r].ms[s]);
    if (n_sizes > 1) {
      double a = rows[r].ms[0], b = rows[r].ms[n_sizes - 1];
      double ratio = a > 0.05 ? b / a : 0; /* below 0.05 ms the ratio is noise */
      if (a > 0.05) printf("   %6.1f", ratio);
      else printf("   %6s", "-");
      if (max_ratio > 0 && ratio > max_ratio) printf("  SUPER-LINEAR"), rc = 2;
    }
    printf("\n");
  }
  return rc;
}

int main(int argc, char **argv) {
  int32_t sizes[MAX_SIZES], n_sizes = 0;
  uint64_t seed = 1;
  int repeat = 5;
  double max_ratio = 15;
  int32_t max_numel = 0;
  const char *only = NULL;
  int32_t windows[2] = {1000, 0}, n_windows = 2;
  for (int i = 1; i < argc; i++) {
    bool more = i + 1 < argc;
    if (!strcmp(argv[i], "--nodes") && more && n_sizes < MAX_SIZES) sizes[n_sizes++] = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && more) seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--repeat") && more) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-ratio") && more) max_ratio = atof(argv[++i]);
    else if (!strcmp(argv[i], "--only") && more) only = argv[++i];
    else if (!strcmp(argv[i], "--max-numel") && more) max_numel = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--window") && more) windows[0] = atoi(argv[++i]), n_windows = 1;
    else return usage(), 2;
  }
  if (n_sizes == 0) sizes[n_sizes++] = 10000, sizes[n_sizes++] = 100000;
  for (int32_t s = 0; s < n_sizes; s++)
    if (sizes[s] < 10 || sizes[s] > KIR_MAX_NODES / 2) return usage(), 2;
  if (repeat < 1 || repeat > MAX_REPEAT) return usage(), 2;
  static row rows[MAX_ROWS];
  char full[256];
  int32_t n_rows = make_rows(rows, full, sizeof full, only);
  if (n_rows == 0) return fprintf(stderr, "bench_pass_scale: no pass '%s'\n", only), usage(), 2;
  printf("full pipeline: %s\ndefault pipeline: %s\n", full, KPS_DEFAULT_PIPELINE);
  int worst = 0;
  for (int32_t w = 0; w < n_windows; w++) {
    if (windows[w] > 0)
      printf("\n== operands from the last %d values (short edges)\n", (int)windows[w]);
    else
      printf("\n== operands from all values (long, uniformly random edges)\n");
    int rc = run_sizes(sizes, n_sizes, max_numel, windows[w], seed, repeat, rows, n_rows);
    if (rc != 0) return rc;
    rc = print_table(rows, n_rows, sizes, n_sizes, max_ratio);
    if (rc > worst) worst = rc;
  }
  return worst;
}
