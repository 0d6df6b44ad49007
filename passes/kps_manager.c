/* kps_manager.c — the instrumented pass manager: pipeline parsing, timing, per-pass
 * log lines, print-after-all and verify-each. Depends on ir/ only; knows passes only
 * through the kps_passes table (kps_registry.c). */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <ctype.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- pipeline ------ */

static void known_passes(char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; i < kps_n_passes && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", kps_passes[i].name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

static const kps_pass_info *find_span(const char *s, size_t len) {
  for (int32_t i = 0; i < kps_n_passes; i++)
    if (strlen(kps_passes[i].name) == len && strncmp(kps_passes[i].name, s, len) == 0)
      return &kps_passes[i];
  return NULL;
}

static kiln_status pipeline_error(kir_graph *g, const char *name, size_t len, const char *pipeline) {
  char raw[96], ename[KPS_ESC], epipe[KPS_ESC], known[160];
  size_t cut = len < sizeof raw - 1 ? len : sizeof raw - 1;
  memcpy(raw, name, cut);
  raw[cut] = '\0';
  known_passes(known, sizeof known);
  return kir_seterr(g, KILN_ERR_ARGUMENT, "unknown pass '%s' in pipeline '%s' (known: %s)",
                    kir_escape(raw, ename, sizeof ename),
                    kir_escape(pipeline, epipe, sizeof epipe), known);
}

/* Splits the pipeline into passes. *out through kir_malloc (caller frees). */
static kiln_status parse_pipeline(kir_graph *g, const char *pipeline,
                                  const kps_pass_info ***out, int32_t *n_out) {
  int32_t cap = 1;
  for (const char *c = pipeline; *c; c++) cap += *c == ',';
  const kps_pass_info **list = kir_calloc((size_t)cap, sizeof *list);
  if (!list) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory parsing the pass pipeline");
  int32_t n = 0;
  for (const char *p = pipeline;;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    const kps_pass_info *info = find_span(a, (size_t)(b - a));
    if (!info) {
      kir_free(list);
      return pipeline_error(g, a, (size_t)(b - a), pipeline);
    }
    list[n++] = info;
    if (!*end) break;
    p = end + 1;
  }
  *out = list;
  *n_out = n;
  return KILN_OK;
}

/* ---------------------------------------------------------------- running ------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "3 nodes folded, 0 skipped (too large)"; "no change" when every stat is zero and the
 * pass changed nothing. */
static void log_result(FILE *log, const char *name, const kps_result *res, double ms) {
  bool any = res->changed;
  for (int32_t i = 0; i < res->n_stats; i++) any = any || res->stats[i].value != 0;
  fprintf(log, "pass %s: ", name);
  for (int32_t i = 0; any && i < res->n_stats; i++)
    fprintf(log, "%s%lld %s", i ? ", " : "", (long long)res->stats[i].value, res->stats[i].name);
  if (!any) fputs("no change", log);
  else if (res->n_stats == 0) fputs("changed", log);
  fprintf(log, " [%.2f ms]\n", ms);
}

/* Keeps the pass's status and message, naming the pass in front. */
static kiln_status prefix_error(kir_graph *g, const char *pass, kiln_status st) {
  char msg[sizeof g->error];
  memcpy(msg, g->error, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  if (!msg[0]) snprintf(msg, sizeof msg, "%s", kiln_status_name(st));
  return kir_seterr(g, st, "pass %s: %s", pass, msg);
}

static kiln_status verify_after(kir_graph *g, const char *pass) {
  if (kir_verify(g) == KILN_OK) return KILN_OK;
  char msg[sizeof g->error];
  memcpy(msg, g->error, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  return kir_seterr(g, KILN_ERR_INTERNAL, "pass %s broke the graph: %s", pass, msg);
}

static kiln_status run_one(kir_graph *g, const kps_pass_info *p, const kps_options *opt,
                           const kps_context *ctx) {
  kps_result res;
  memset(&res, 0, sizeof res);
  double t0 = now_ms();
  kiln_status st = p->run(g, ctx, &res);
  double ms = now_ms() - t0;
  if (st != KILN_OK) return prefix_error(g, p->name, st);
  if (opt->log) log_result(opt->log, p->name, &res, ms);
  if (opt->print_after_all) {
    FILE *out = opt->print_to ? opt->print_to : stderr;
    fprintf(out, "// ----- graph after %s -----\n", p->name);
    kir_graph_print(g, out);
  }
  if (opt->verify_each) return verify_after(g, p->name);
  return KILN_OK;
}

kiln_status kps_run(kir_graph *g, const kps_options *opt, const kps_context *ctx) {
  if (!g) return KILN_ERR_ARGUMENT;
  kps_options dflt_opt;
  memset(&dflt_opt, 0, sizeof dflt_opt);
  kps_context dflt_ctx;
  memset(&dflt_ctx, 0, sizeof dflt_ctx);
  if (!opt) opt = &dflt_opt;
  if (!ctx) ctx = &dflt_ctx;
  const char *pipeline = opt->pipeline ? opt->pipeline : KPS_DEFAULT_PIPELINE;
  const kps_pass_info **list = NULL;
  int32_t n = 0;
  kiln_status st = parse_pipeline(g, pipeline, &list, &n);
  if (st != KILN_OK) return st;
  for (int32_t i = 0; i < n && st == KILN_OK; i++) st = run_one(g, list[i], opt, ctx);
  kir_free(list);
  if (st == KILN_OK) kir_clearerr(g);
  return st;
}
