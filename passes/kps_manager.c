/* kps_manager.c — the instrumented pass manager: pipeline strings with per-pass options,
 * print-before/after(-all/-change) banners, verify-each, statistics and timing tables,
 * disabled passes and per-pass dumps (kps_dump.c). Depends on ir/ only; knows passes
 * only through the kps_passes table (kps_registry.c). */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- options ------- */

static int32_t option_index(const kps_entry_options *o, const char *name, size_t len) {
  for (int32_t i = 0; o && i < o->n; i++)
    if (strlen(o->info[i].name) == len && strncmp(o->info[i].name, name, len) == 0) return i;
  return -1;
}

int64_t kps_option_int(const kps_context *ctx, const char *name, int64_t dflt) {
  if (!ctx || !ctx->options || !name) return dflt;
  int32_t i = option_index(ctx->options, name, strlen(name));
  return i < 0 ? dflt : ctx->options->value[i];
}

bool kps_option_bool(const kps_context *ctx, const char *name, bool dflt) {
  return kps_option_int(ctx, name, dflt ? 1 : 0) != 0;
}

/* ---------------------------------------------------------------- errors -------- */

static void known_passes(char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; i < kps_n_passes && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", kps_passes[i].name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

static void known_options(const kps_pass_info *p, char *buf, size_t n) {
  size_t used = 0;
  snprintf(buf, n, "none");
  for (int32_t i = 0; i < p->n_options && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", p->options[i].name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* A span of the pipeline text as an escaped, quoted-ready string. */
static const char *span_esc(const char *s, size_t len, char *out, size_t n) {
  char raw[96];
  size_t cut = len < sizeof raw - 1 ? len : sizeof raw - 1;
  memcpy(raw, s, cut);
  raw[cut] = '\0';
  return kir_escape(raw, out, n);
}

/* "pipeline 'fold,frob', column 6: unknown pass 'frob' (known: ...)" */
static kiln_status perr(kir_graph *g, const char *text, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kiln_status perr(kir_graph *g, const char *text, const char *at, const char *fmt, ...) {
  char what[384], epipe[KPS_ESC];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return kir_seterr(g, KILN_ERR_ARGUMENT, "pipeline '%s', column %d: %s",
                    kir_escape(text, epipe, sizeof epipe), (int)(at - text) + 1, what);
}

/* ---------------------------------------------------------------- parsing ------- */

static bool is_sep(char c) { return c == ',' || c == '{' || c == '}' || c == '=' || c == '\0'; }
static const char *skip_ws(const char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  return p;
}
static const char *word_end(const char *p) {
  while (!is_sep(*p) && !isspace((unsigned char)*p)) p++;
  return p;
}

static const kps_pass_info *find_span(const char *s, size_t len) {
  for (int32_t i = 0; i < kps_n_passes; i++)
    if (strlen(kps_passes[i].name) == len && strncmp(kps_passes[i].name, s, len) == 0)
      return &kps_passes[i];
  return NULL;
}

static bool parse_bool(const char *v, size_t len, int64_t *out) {
  if ((len == 4 && !strncmp(v, "true", 4)) || (len == 1 && v[0] == '1')) *out = 1;
  else if ((len == 5 && !strncmp(v, "false", 5)) || (len == 1 && v[0] == '0')) *out = 0;
  else return false;
  return true;
}

static bool parse_int(const char *v, size_t len, const kps_option_info *info, int64_t *out) {
  char buf[32];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, v, len);
  buf[len] = '\0';
  for (size_t i = buf[0] == '-' ? 1 : 0; i < len; i++)
    if (!isdigit((unsigned char)buf[i])) return false;
  errno = 0;
  char *end = NULL;
  long long x = strtoll(buf, &end, 10);
  if (errno || *end || x < info->min || x > info->max) return false;
  *out = x;
  return true;
}

/* One "key[=value]" inside braces; key at *pp. */
static kiln_status parse_option(kir_graph *g, const char *text, kps_pipeline_entry *e,
                                const char **pp) {
  const char *key = *pp, *kend = word_end(key), *val = NULL, *vend = NULL;
  char ek[KPS_ESC], ev[KPS_ESC], known[160];
  const kps_pass_info *pass = e->pass;
  if (kend == key) return perr(g, text, key, "expected an option name in %s{...}", pass->name);
  const char *p = kend;
  if (*p == '=') {
    val = p + 1;
    vend = word_end(val);
    p = vend;
  }
  int32_t i = option_index(&e->options, key, (size_t)(kend - key));
  if (i < 0) {
    known_options(pass, known, sizeof known);
    return perr(g, text, key, "unknown option '%s' of pass %s (known: %s)",
                span_esc(key, (size_t)(kend - key), ek, sizeof ek), pass->name, known);
  }
  const kps_option_info *info = &e->options.info[i];
  if (e->options.set[i])
    return perr(g, text, key, "option %s of pass %s given twice", info->name, pass->name);
  int64_t v = 1;
  bool ok = info->type == KPS_OPT_BOOL ? (!val || parse_bool(val, (size_t)(vend - val), &v))
                                       : (val && parse_int(val, (size_t)(vend - val), info, &v));
  if (!ok) {
    if (info->type == KPS_OPT_BOOL)
      return perr(g, text, val, "bad value '%s' for option %s of pass %s (expected true or false)",
                  span_esc(val, (size_t)(vend - val), ev, sizeof ev), info->name, pass->name);
    return perr(g, text, val ? val : key,
                "bad value '%s' for option %s of pass %s (expected an integer in [%" PRId64
                ", %" PRId64 "])",
                val ? span_esc(val, (size_t)(vend - val), ev, sizeof ev) : "", info->name,
                pass->name, info->min, info->max);
  }
  e->options.value[i] = v;
  e->options.set[i] = true;
  *pp = p;
  return KILN_OK;
}

/* "{key=value key2}" starting at the '{' at *pp; leaves *pp after the '}'. */
static kiln_status parse_braces(kir_graph *g, const char *text, kps_pipeline_entry *e,
                                const char **pp) {
  const char *open = *pp, *p = open + 1;
  for (;;) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (*p == '}') break;
    if (*p == '\0') return perr(g, text, open, "unbalanced braces: '{' is never closed");
    if (*p == '{' || *p == '=')
      return perr(g, text, p, "unexpected '%c' in the options of %s", *p, e->pass->name);
    kiln_status st = parse_option(g, text, e, &p);
    if (st != KILN_OK) return st;
  }
  *pp = p + 1;
  return KILN_OK;
}

static void entry_init(kps_pipeline_entry *e, const kps_pass_info *pass, int32_t column) {
  memset(e, 0, sizeof *e);
  e->pass = pass;
  e->column = column;
  e->options.info = pass->options;
  e->options.n = pass->n_options < KPS_MAX_OPTIONS ? pass->n_options : KPS_MAX_OPTIONS;
  for (int32_t i = 0; i < e->options.n; i++) e->options.value[i] = pass->options[i].dflt;
}

/* One entry "name[{...}]" at *pp; leaves *pp at the ',' or the end. */
static kiln_status parse_entry(kir_graph *g, const char *text, kps_pipeline_entry *e,
                               const char **pp) {
  char en[KPS_ESC], known[256];
  const char *name = skip_ws(*pp), *end = word_end(name);
  if (end == name) return perr(g, text, name, "empty pass name");
  const kps_pass_info *pass = find_span(name, (size_t)(end - name));
  if (!pass) {
    known_passes(known, sizeof known);
    return perr(g, text, name, "unknown pass '%s' (known: %s)",
                span_esc(name, (size_t)(end - name), en, sizeof en), known);
  }
  entry_init(e, pass, (int32_t)(name - text) + 1);
  const char *p = skip_ws(end);
  if (*p == '{') {
    kiln_status st = parse_braces(g, text, e, &p);
    if (st != KILN_OK) return st;
    p = skip_ws(p);
  }
  if (*p == '}') return perr(g, text, p, "unbalanced braces: '}' without '{'");
  if (*p != ',' && *p != '\0')
    return perr(g, text, p, "expected ',' after pass %s, got '%c'", pass->name, *p);
  *pp = p;
  return KILN_OK;
}

kiln_status kps_pipeline_parse(kir_graph *g, const char *text, kps_pipeline *out) {
  out->entries = NULL;
  out->n = 0;
  if (!text) return kir_seterr(g, KILN_ERR_ARGUMENT, "no pipeline given");
  int32_t cap = 1;
  for (const char *c = text; *c; c++) cap += *c == ',';
  kps_pipeline_entry *list = kir_calloc((size_t)cap, sizeof *list);
  if (!list) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory parsing the pass pipeline");
  int32_t n = 0;
  for (const char *p = text;;) {
    kiln_status st = n < cap ? parse_entry(g, text, &list[n], &p)
                             : perr(g, text, p, "too many entries");
    if (st != KILN_OK) {
      kir_free(list);
      return st;
    }
    n++;
    if (!*p) break;
    p++; /* the ',' */
  }
  out->entries = list;
  out->n = n;
  return KILN_OK;
}

void kps_pipeline_free(kps_pipeline *p) {
  if (!p) return;
  kir_free(p->entries);
  p->entries = NULL;
  p->n = 0;
}

bool kps_pipeline_for_level(int level, char *buf, size_t n) {
  static const char *const levels[] = {KPS_PIPELINE_O0, KPS_PIPELINE_O1, KPS_PIPELINE_O2};
  if (level < 0 || level > 2 || !buf || n == 0) return false;
  size_t used = 0;
  buf[0] = '\0';
  for (const char *p = levels[level]; *p;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    size_t len = (size_t)(end - p);
    if (find_span(p, len)) {
      if (used + len + 2 > n) return false;
      if (used) buf[used++] = ',';
      memcpy(buf + used, p, len);
      used += len;
      buf[used] = '\0';
    }
    p = *end ? end + 1 : end;
  }
  return true;
}

/* ---------------------------------------------------------------- pass lists ---- */

/* One entry of a comma-separated list at p: *start and *len span it without surrounding
 * blanks; returns where the next entry starts (the end of the list: "" ). */
static const char *list_entry(const char *p, const char **start, size_t *len) {
  p = skip_ws(p);
  const char *end = p, *b;
  while (*end && *end != ',') end++;
  for (b = end; b > p && isspace((unsigned char)b[-1]);) b--;
  *start = p;
  *len = (size_t)(b - p);
  return *end ? end + 1 : end;
}

/* true when the comma-separated list names pass. */
static bool list_has(const char *list, const char *pass) {
  size_t plen = strlen(pass), len;
  const char *e;
  for (const char *p = list; p && *p;) {
    p = list_entry(p, &e, &len);
    if (len == plen && strncmp(e, pass, plen) == 0) return true;
  }
  return false;
}

/* Every entry of a pass list must be a registered pass. */
static kiln_status check_list(kir_graph *g, const char *list, const char *what) {
  char en[KPS_ESC], known[256];
  size_t len;
  const char *e;
  for (const char *p = list; p && *p;) {
    p = list_entry(p, &e, &len);
    if (!find_span(e, len)) {
      known_passes(known, sizeof known);
      return kir_seterr(g, KILN_ERR_ARGUMENT, "unknown pass '%s' in %s (known: %s)",
                        span_esc(e, len, en, sizeof en), what, known);
    }
  }
  return KILN_OK;
}

static kiln_status check_lists(kir_graph *g, const kps_options *opt) {
  kiln_status st = check_list(g, opt->print_before, "print-before");
  if (st == KILN_OK) st = check_list(g, opt->print_after, "print-after");
  if (st == KILN_OK) st = check_list(g, opt->disable, "disable-pass");
  return st;
}

/* ---------------------------------------------------------------- reporting ----- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "3 nodes folded" — the non-zero counters only, like LLVM's -stats; "changed" when the
 * pass changed the graph without counting it; "no change" otherwise. */
static void log_result(FILE *log, const char *name, const kps_result *res, double ms) {
  int shown = 0;
  fprintf(log, "pass %s: ", name);
  for (int32_t i = 0; i < res->n_stats; i++)
    if (res->stats[i].value != 0)
      fprintf(log, "%s%lld %s", shown++ ? ", " : "", (long long)res->stats[i].value,
              res->stats[i].name);
  if (!shown) fputs(res->changed ? "changed" : "no change", log);
  fprintf(log, " [%.2f ms]\n", ms);
}

#define KPS_RULE "===-------------------------------------------------------------------------===\n"

/* What ran: per pipeline entry, its result and wall time (ran = false when disabled or
 * not reached). */
typedef struct run_record {
  bool ran;
  kps_result res;
  double ms;
} run_record;

/* LLVM -stats style: "      3 fold - nodes folded", pipeline order. */
static void print_stats(FILE *out, const kps_pipeline *pl, const run_record *rec) {
  fputs(KPS_RULE "                          ... Pass statistics ...\n" KPS_RULE, out);
  for (int32_t i = 0; i < pl->n; i++) {
    if (!rec[i].ran) continue;
    const kps_result *r = &rec[i].res;
    for (int32_t s = 0; s < r->n_stats; s++)
      fprintf(out, "%7lld %s - %s\n", (long long)r->stats[s].value, pl->entries[i].pass->name,
              r->stats[s].name);
    if (r->n_stats == 0)
      fprintf(out, "%7s %s - %s\n", "-", pl->entries[i].pass->name,
              r->changed ? "changed" : "no change");
  }
}

/* LLVM -time-passes style table, pipeline order, with the total last. */
static void print_timing(FILE *out, const kps_pipeline *pl, const run_record *rec) {
  double total = 0;
  for (int32_t i = 0; i < pl->n; i++) total += rec[i].ran ? rec[i].ms : 0;
  fputs(KPS_RULE "                      ... Pass execution timing report ...\n" KPS_RULE, out);
  fprintf(out, "  Total Execution Time: %.6f seconds\n\n", total / 1e3);
  fputs("   ---Wall Time---   --- Name ---\n", out);
  for (int32_t i = 0; i < pl->n; i++) {
    if (!rec[i].ran) continue;
    double pct = total > 0 ? 100.0 * rec[i].ms / total : 0.0;
    fprintf(out, "   %9.6f (%5.1f%%)  %s\n", rec[i].ms / 1e3, pct, pl->entries[i].pass->name);
  }
  fprintf(out, "   %9.6f (100.0%%)  Total\n", total / 1e3);
}

/* ---------------------------------------------------------------- printing ------ */

/* FNV-1a of the graph's text form (what the banners print), for print-after-change. */
static kiln_status graph_hash(kir_graph *g, uint64_t *h) {
  char *buf = NULL;
  size_t len = 0;
  kiln_status st = kir_graph_to_text(g, &buf, &len, false);
  if (st != KILN_OK) return st;
  uint64_t x = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) x = (x ^ (unsigned char)buf[i]) * 1099511628211ull;
  kir_free(buf);
  *h = x;
  return KILN_OK;
}

static void print_graph(FILE *out, const char *when, const char *pass, const kir_graph *g) {
  fprintf(out, "// -----// IR Dump %s %s //----- //\n", when, pass);
  kir_graph_print(g, out);
  fputc('\n', out);
}

/* ---------------------------------------------------------------- running ------- */

/* Keeps the pass's status and message, naming the pass in front. */
static kiln_status prefix_error(kir_graph *g, const char *pass, kiln_status st) {
  char msg[sizeof g->error];
  memcpy(msg, g->error, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  if (!msg[0]) snprintf(msg, sizeof msg, "%s", kiln_status_name(st));
  return kir_seterr(g, st, "pass %s: %s", pass, msg);
}

static kiln_status verify_after(kir_graph *g, const char *pass) {
  kiln_status st = kir_verify(g);
  if (st == KILN_OK) return KILN_OK;
  char msg[sizeof g->error];
  memcpy(msg, g->error, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  /* Running out of memory while checking says nothing about the pass. */
  if (st == KILN_ERR_NOMEM) return kir_seterr(g, st, "verifying after pass %s: %s", pass, msg);
  return kir_seterr(g, KILN_ERR_INTERNAL, "pass %s broke the graph: %s", pass, msg);
}

/* The state of one kps_run. */
typedef struct run_state {
  kir_graph *g;
  const kps_options *opt;
  const kps_context *ctx;
  FILE *print_to;
  uint64_t last_hash; /* of the graph as last seen, for print-after-change */
} run_state;

static bool wants_print_after(const kps_options *opt, const char *pass) {
  if (opt->print_after_all || list_has(opt->print_after, pass)) return true;
  /* print-after-change alone applies to every pass */
  return opt->print_after_change && !opt->print_after;
}

static kiln_status print_after(run_state *rs, const char *pass) {
  const kps_options *opt = rs->opt;
  if (!wants_print_after(opt, pass)) return KILN_OK;
  if (opt->print_after_change) {
    uint64_t h = 0;
    kiln_status st = graph_hash(rs->g, &h);
    if (st != KILN_OK) return st;
    bool same = h == rs->last_hash;
    rs->last_hash = h;
    if (same) return KILN_OK;
  }
  print_graph(rs->print_to, "After", pass, rs->g);
  return KILN_OK;
}

/* print-after-change compares against the graph before the pass, which may have been
 * changed by a pass that was not printed: keep the hash current before each pass. */
static kiln_status track_before(run_state *rs, const char *pass) {
  if (!rs->opt->print_after_change || !wants_print_after(rs->opt, pass)) return KILN_OK;
  return graph_hash(rs->g, &rs->last_hash);
}

/* The context one entry's pass gets: the caller's, plus the entry's options. */
static kps_context entry_context(const run_state *rs, const kps_pipeline_entry *e) {
  kps_context ctx = *rs->ctx;
  ctx.options = &e->options;
  /* place's `strict` option is the context's strict_placement for this entry. */
  int32_t strict = option_index(&e->options, "strict", 6);
  if (strict >= 0 && e->options.set[strict]) ctx.strict_placement = e->options.value[strict] != 0;
  return ctx;
}

static kiln_status run_pass(run_state *rs, const kps_pipeline_entry *e, const kps_context *ctx,
                            run_record *rec) {
  memset(&rec->res, 0, sizeof rec->res);
  double t0 = now_ms();
  kiln_status st = e->pass->run(rs->g, ctx, &rec->res);
  rec->ms = now_ms() - t0;
  rec->ran = true;
  return st == KILN_OK ? KILN_OK : prefix_error(rs->g, e->pass->name, st);
}

static kiln_status run_entry(run_state *rs, const kps_pipeline_entry *e, int32_t index,
                             run_record *rec) {
  const kps_options *opt = rs->opt;
  const char *name = e->pass->name;
  if (list_has(opt->disable, name)) {
    if (opt->log) fprintf(opt->log, "pass %s: disabled\n", name);
    return KILN_OK;
  }
  if (list_has(opt->print_before, name)) print_graph(rs->print_to, "Before", name, rs->g);
  kps_context ctx = entry_context(rs, e);
  kiln_status st = opt->before_pass ? opt->before_pass(rs->g, name, &ctx, opt->user) : KILN_OK;
  if (st == KILN_OK) st = track_before(rs, name);
  kir_graph *before = NULL;
  if (st == KILN_OK && opt->dump_dir && !(before = kir_graph_clone(rs->g)))
    st = kir_seterr(rs->g, KILN_ERR_NOMEM, "out of memory copying the graph for --dump-dir");
  if (st == KILN_OK) st = run_pass(rs, e, &ctx, rec);
  if (st == KILN_OK && opt->log) log_result(opt->log, name, &rec->res, rec->ms);
  if (st == KILN_OK) st = print_after(rs, name);
  if (st == KILN_OK && opt->verify_each) st = verify_after(rs->g, name);
  if (st == KILN_OK && opt->dump_dir)
    st = kps_dump_stage(rs->g, opt->dump_dir, index, name, before, &rec->res);
  kir_graph_destroy(before);
  return st;
}

static void report(const kps_options *opt, FILE *print_to, const kps_pipeline *pl,
                   const run_record *rec) {
  FILE *out = opt->report_to ? opt->report_to : print_to;
  if (opt->stats) print_stats(out, pl, rec);
  if (opt->timing) print_timing(out, pl, rec);
}

static kiln_status run_pipeline(run_state *rs, const kps_pipeline *pl) {
  run_record *rec = kir_calloc((size_t)pl->n, sizeof *rec);
  if (!rec) return kir_seterr(rs->g, KILN_ERR_NOMEM, "out of memory running the pipeline");
  kiln_status st = KILN_OK;
  if (rs->opt->dump_dir) st = kps_dump_stage(rs->g, rs->opt->dump_dir, 0, "input", NULL, NULL);
  for (int32_t i = 0; i < pl->n && st == KILN_OK; i++)
    st = run_entry(rs, &pl->entries[i], i + 1, &rec[i]);
  report(rs->opt, rs->print_to, pl, rec);
  kir_free(rec);
  return st;
}

int32_t kps_root_id(const kir_graph *g, const kps_context *ctx, int32_t r) {
  if (!g || !ctx || r < 0 || r >= ctx->n_roots) return -1;
  if (ctx->roots_tracked && g->n_tracked == ctx->n_roots && g->tracked[r] >= 0) return g->tracked[r];
  const kir_node *n = ctx->roots && ctx->roots[r] ? kir_graph_find(g, ctx->roots[r]) : NULL;
  return n ? n->id : -1;
}

/* Looks the roots up by name once for the whole pipeline; the graph keeps their ids
 * current (a root whose node a pass replaces falls back to its name). */
static kiln_status track_roots(kir_graph *g, kps_context *ctx) {
  if (ctx->n_roots <= 0 || !ctx->roots) return KILN_OK;
  int32_t *ids = kir_malloc((size_t)ctx->n_roots * sizeof *ids);
  if (!ids) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory resolving %d roots", (int)ctx->n_roots);
  for (int32_t r = 0; r < ctx->n_roots; r++) ids[r] = kps_root_id(g, ctx, r);
  kiln_status st = kir_graph_track(g, ids, ctx->n_roots);
  kir_free(ids);
  ctx->roots_tracked = st == KILN_OK;
  return st;
}

kiln_status kps_run(kir_graph *g, const kps_options *opt, const kps_context *ctx) {
  if (!g) return KILN_ERR_ARGUMENT;
  kps_options dflt_opt;
  memset(&dflt_opt, 0, sizeof dflt_opt);
  kps_context dflt_ctx;
  memset(&dflt_ctx, 0, sizeof dflt_ctx);
  if (!opt) opt = &dflt_opt;
  if (!ctx) ctx = &dflt_ctx;
  kps_pipeline pl;
  kiln_status st = kps_pipeline_parse(g, opt->pipeline ? opt->pipeline : KPS_DEFAULT_PIPELINE, &pl);
  if (st != KILN_OK) return st;
  st = check_lists(g, opt);
  kps_context tracked_ctx = *ctx;
  tracked_ctx.roots_tracked = false; /* the graph's list, if any, is not this run's */
  if (st == KILN_OK) st = track_roots(g, &tracked_ctx);
  run_state rs = {g, opt, &tracked_ctx, opt->print_to ? opt->print_to : stderr, 0};
  if (st == KILN_OK) st = run_pipeline(&rs, &pl);
  kir_graph_track(g, NULL, 0); /* the ids are the pipeline's business only */
  kps_pipeline_free(&pl);
  if (st == KILN_OK) kir_clearerr(g);
  return st;
}
