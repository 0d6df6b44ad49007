/* kiln_cmd_opt.c — `kiln opt`: runs a pass pipeline (--passes LIST or -O0/-O1/-O2) over
 * a graph and saves the result, with the pass manager's instrumentation: print before /
 * after passes, verify-each, statistics, timing, disabled passes, a dump directory and
 * --explain-fusion. MODEL may be ONNX (imported first). Options take "--opt VALUE" or
 * "--opt=VALUE". Nothing is written to
 * -o when anything fails (a dump directory keeps the stages written before the error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_tool.h"

#define CMD "opt"

/* A pass list given by repeated flags (--print-after=fold --print-after=dce). */
typedef struct name_list {
  const char *v[KTOOL_MAX_ARGS];
  int n;
} name_list;

typedef struct opt_args {
  const char *in, *out, *passes, *dump_dir;
  int level; /* -1: not given */
  name_list fetch, before, after, disable;
  bool print_all, print_change, verify, stats, timing, explain;
  ktool_import imp;
} opt_args;

static const char *const valued[] = {"-o", "--passes", "--fetch", "--print-before",
                                     "--print-after", "--disable-pass", "--dump-dir"};

/* Index into `valued` when arg is one of them, as "--x" or "--x=V" (*inline_v = V). */
static int valued_index(const char *arg, const char **inline_v) {
  *inline_v = NULL;
  for (int k = 0; k < (int)(sizeof valued / sizeof valued[0]); k++) {
    size_t len = strlen(valued[k]);
    if (strncmp(arg, valued[k], len) != 0) continue;
    if (arg[len] == '\0') return k;
    if (arg[len] == '=' && k > 0) {
      *inline_v = arg + len + 1;
      return k;
    }
  }
  return -1;
}

static int push(name_list *l, const char *v, const char *what) {
  if (l->n >= KTOOL_MAX_ARGS) return ktool_usage(CMD, "too many %s", what);
  l->v[l->n++] = v;
  return KTOOL_OK;
}

/* A value that may be given once: a second, different one contradicts the first. */
static int set_once(const char **slot, const char *v, const char *what) {
  if (*slot && strcmp(*slot, v) != 0)
    return ktool_usage(CMD, "%s given twice ('%s' and '%s')", what, *slot, v);
  *slot = v;
  return KTOOL_OK;
}

static int take_value(opt_args *a, int k, const char *v) {
  if (!v[0]) return ktool_usage(CMD, "%s needs a non-empty value", valued[k]);
  switch (k) {
  case 0: return set_once(&a->out, v, "-o");
  case 1: return set_once(&a->passes, v, "--passes");
  case 2: return push(&a->fetch, v, "--fetch");
  case 3: return push(&a->before, v, "--print-before");
  case 4: return push(&a->after, v, "--print-after");
  case 5: return push(&a->disable, v, "--disable-pass");
  default: return set_once(&a->dump_dir, v, "--dump-dir");
  }
}

static int take_level(opt_args *a, const char *o) {
  if (strlen(o) != 3 || o[2] < '0' || o[2] > '2')
    return ktool_usage(CMD, "unknown optimization level '%s' (use -O0, -O1 or -O2)", o);
  int level = o[2] - '0';
  if (a->level >= 0 && a->level != level)
    return ktool_usage(CMD, "-O%d and -O%d contradict each other", a->level, level);
  a->level = level;
  return KTOOL_OK;
}

static int take_flag(opt_args *a, const char *o) {
  if (!strcmp(o, "--print-after-all")) a->print_all = true;
  else if (!strcmp(o, "--print-after-change")) a->print_change = true;
  else if (!strcmp(o, "--verify-each")) a->verify = true;
  else if (!strcmp(o, "--stats")) a->stats = true;
  else if (!strcmp(o, "--timing")) a->timing = true;
  else if (!strcmp(o, "--explain-fusion")) a->explain = true;
  else if (!strncmp(o, "-O", 2)) return take_level(a, o);
  else return ktool_usage(CMD, "unknown option '%s'", o);
  return KTOOL_OK;
}

static int parse_args(opt_args *a, int argc, char **argv) {
  memset(a, 0, sizeof *a);
  a->level = -1;
  for (int i = 0; i < argc; i++) {
    int irc = ktool_take_import_option(CMD, &i, argc, argv, &a->imp);
    if (irc >= 0) {
      if (irc != KTOOL_OK) return irc;
      continue;
    }
    const char *o = argv[i], *v = NULL;
    int k = valued_index(o, &v), rc = KTOOL_OK;
    if (k >= 0 && !v && !(v = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
    if (k >= 0) rc = take_value(a, k, v);
    else if (o[0] == '-' && o[1]) rc = take_flag(a, o);
    else if (a->in) rc = ktool_usage(CMD, "one model at a time");
    else a->in = o;
    if (rc != KTOOL_OK) return rc;
  }
  if (!a->in || !a->out) return ktool_usage(CMD, "needs MODEL and -o OUT.kiln");
  if (a->passes && a->level >= 0)
    return ktool_usage(CMD, "--passes and -O%d contradict each other; give one", a->level);
  if (a->print_all && a->after.n)
    return ktool_usage(CMD, "--print-after-all and --print-after=%s contradict each other",
                       a->after.v[0]);
  return KTOOL_OK;
}

/* "a,b,c" from a list (malloc'd), or NULL for an empty list. *fail on OOM. */
static char *join(const name_list *l, bool *fail) {
  if (!l->n) return NULL;
  size_t len = 1;
  for (int i = 0; i < l->n; i++) len += strlen(l->v[i]) + 1;
  char *s = malloc(len);
  if (!s) {
    *fail = true;
    return NULL;
  }
  s[0] = '\0';
  for (int i = 0; i < l->n; i++) {
    if (i) strcat(s, ",");
    strcat(s, l->v[i]);
  }
  return s;
}

typedef struct joined {
  char *before, *after, *disable;
} joined;

static void joined_free(joined *j) {
  free(j->before);
  free(j->after);
  free(j->disable);
}

/* --explain-fusion: before each fuse pass, why each candidate it refuses is refused. */
static kiln_status explain_hook(kir_graph *g, const char *pass, const kps_context *ctx,
                                void *user) {
  (void)user;
  if (strcmp(pass, "fuse") != 0) return KILN_OK;
  printf("// -----// Fusion candidates not fused //----- //\n");
  kiln_status st = kps_explain_fusion(g, ctx, stdout);
  putchar('\n');
  return st;
}

static int run_passes(const opt_args *a, kir_graph *g, const ktool_roots *roots) {
  char level[256];
  const char *pipeline = a->passes;
  if (!pipeline && a->level >= 0) {
    if (!kps_pipeline_for_level(a->level, level, sizeof level))
      return ktool_error("no pipeline for -O%d", a->level);
    pipeline = level;
  }
  bool fail = false;
  joined j = {join(&a->before, &fail), join(&a->after, &fail), join(&a->disable, &fail)};
  if (fail) {
    joined_free(&j);
    return ktool_error("out of memory");
  }
  kps_options opt = {.pipeline = pipeline, .verify_each = a->verify,
                     .print_after_all = a->print_all, .print_to = stdout,
                     .print_before = j.before, .print_after = j.after,
                     .print_after_change = a->print_change, .stats = a->stats,
                     .timing = a->timing, .disable = j.disable, .dump_dir = a->dump_dir,
                     .report_to = stdout, .before_pass = a->explain ? explain_hook : NULL};
  kps_context ctx = {.roots = (const char *const *)roots->names, .n_roots = roots->n};
  int rc = KTOOL_OK;
  if (kps_run(g, &opt, &ctx) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  fflush(stdout);
  joined_free(&j);
  return rc;
}

int ktool_cmd_opt(int argc, char **argv) {
  opt_args a;
  int rc = parse_args(&a, argc, argv);
  if (rc != KTOOL_OK) return rc;
  kir_graph *g = ktool_load_model(a.in, &a.imp);
  if (!g) return KTOOL_ERR;
  ktool_roots roots;
  rc = ktool_roots_init(&roots, g, a.fetch.v, a.fetch.n) ? KTOOL_OK : KTOOL_ERR;
  if (rc == KTOOL_OK) rc = run_passes(&a, g, &roots);
  if (rc == KTOOL_OK && kir_graph_save(g, a.out) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  ktool_roots_free(&roots);
  kir_graph_destroy(g);
  return rc;
}
