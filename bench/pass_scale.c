/* pass_scale.c — the pass-scaling benchmark: builds seeded random graphs (kt_gen) of
 * 10k and 100k nodes, runs every registered pass alone and the default and full
 * pipelines on fresh copies (sizes interleaved, R times), and prints the median CPU time
 * of each and the 100k/10k ratio (about 10 when a pass is linear). A benchmark, not a timed test. Depends on passes/ and ir/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/kps.h"
#include "tests/passes/kt_gen.h"

#define MAX_SIZES 4
#define MAX_ROWS 66
#define MAX_REPEAT 101

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

/* One run of pipeline on a fresh clone of k's graph (the clone is not timed); -1 on
 * error. */
static double time_pipeline(const kt_gen *k, const char *pipeline) {
  kir_graph *h = kir_graph_clone(k->g);
  if (!h) return -1;
  kps_options opt;
  memset(&opt, 0, sizeof opt);
  opt.pipeline = pipeline;
  kps_context ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.roots = (const char *const *)k->roots;
  ctx.n_roots = k->n_roots;
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

/* Builds the graph of every size, then times every row `repeat` times, the sizes
 * interleaved (10k, 100k, 10k, 100k, ...) so that a busy moment on the machine slows
 * both sizes alike instead of one; keeps the median of each. */
static int run_sizes(const int32_t *sizes, int32_t n_sizes, int32_t max_numel, int32_t window,
                     uint64_t seed, int repeat, row *rows, int32_t n_rows) {
  static kt_gen k[MAX_SIZES];
  static double t[MAX_SIZES][MAX_REPEAT];
  int rc = 0;
  int32_t built = 0;
  for (; built < n_sizes && rc == 0; built++) {
    kt_gen_opts o;
    memset(&o, 0, sizeof o);
    o.n_nodes = sizes[built];
    o.roots_all_sinks = true;
    o.max_numel = max_numel;
    o.window = window;
    char err[768];
    double t0 = now_ms();
    if (kt_gen_build(seed, &o, &k[built], err, sizeof err) != KILN_OK) {
      fprintf(stderr, "bench_pass_scale: %s\n", err);
      rc = 1;
      break;
    }
    printf("graph of %d nodes (%d roots, %d placeholders) built and verified in %.1f ms\n",
           (int)k[built].g->n_nodes, (int)k[built].n_roots, (int)k[built].n_feeds, now_ms() - t0);
  }
  for (int32_t r = 0; r < n_rows && rc == 0; r++) {
    for (int i = 0; i < repeat && rc == 0; i++)
      for (int32_t z = 0; z < n_sizes && rc == 0; z++)
        if ((t[z][i] = time_pipeline(&k[z], rows[r].pipeline)) < 0) rc = 1;
    for (int32_t z = 0; z < n_sizes && rc == 0; z++) rows[r].ms[z] = median(t[z], repeat);
  }
  for (int32_t z = 0; z < built; z++) kt_gen_free(&k[z]);
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
