/* kiln_cmd_compile.c — `kiln compile`: optimizes a graph with the target's pipeline,
 * lowers it to C, compiles it and writes one artifact; can log the pass pipeline and
 * the device of every node with the reason (like TF's log_device_placement). */
#include <stdio.h>
#include <string.h>

#include "kiln_tool.h"

#define CMD "compile"

typedef struct compile_args {
  const char *in, *out, *passes, *cc;
  const char *fetch[KTOOL_MAX_ARGS];
  int n_fetch;
  bool log_placement, pass_log, print_all;
} compile_args;

static int parse(int argc, char **argv, compile_args *a) {
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i];
    bool takes = !strcmp(o, "-o") || !strcmp(o, "--passes") || !strcmp(o, "--fetch") ||
                 !strcmp(o, "--target") || !strcmp(o, "--cc");
    const char *v = NULL;
    if (takes && !(v = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
    if (!strcmp(o, "-o")) a->out = v;
    else if (!strcmp(o, "--passes")) a->passes = v;
    else if (!strcmp(o, "--cc")) a->cc = v;
    else if (!strcmp(o, "--target")) {
      if (strcmp(v, "cpu")) return ktool_usage(CMD, "target '%s' is not supported (cpu)", v);
    } else if (!strcmp(o, "--fetch")) {
      if (a->n_fetch == KTOOL_MAX_ARGS) return ktool_usage(CMD, "too many --fetch");
      a->fetch[a->n_fetch++] = v;
    } else if (!strcmp(o, "--log-placement")) a->log_placement = true;
    else if (!strcmp(o, "--print-pass-log")) a->pass_log = true;
    else if (!strcmp(o, "--print-after-all")) a->print_all = true;
    else if (o[0] == '-') return ktool_usage(CMD, "unknown option '%s'", o);
    else if (a->in) return ktool_usage(CMD, "one model at a time");
    else a->in = o;
  }
  if (!a->in || !a->out) return ktool_usage(CMD, "needs MODEL and -o ARTIFACT");
  return KTOOL_OK;
}

static void log_placement(const kir_graph *g) {
  char esc[96];
  printf("placement (%d nodes):\n", (int)g->n_nodes);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    printf("  %-24s %-14s -> %-7s %s\n", kir_escape(n->name, esc, sizeof esc),
           kir_op_table[n->op].name, n->assigned_device[0] ? n->assigned_device : "-",
           n->placement_reason);
  }
}

int ktool_cmd_compile(int argc, char **argv) {
  compile_args a = {0};
  int rc = parse(argc, argv, &a);
  if (rc != KTOOL_OK) return rc;
  kir_graph *g = ktool_load_graph(a.in);
  if (!g) return KTOOL_ERR;
  ktool_roots r;
  if (!ktool_roots_init(&r, g, a.fetch, a.n_fetch)) {
    kir_graph_destroy(g);
    return KTOOL_ERR;
  }
  const char *const *roots = (const char *const *)r.names;
  int32_t n_roots = r.n;
  if (n_roots == 0) rc = ktool_error("%s: the graph has no output to compile", a.in);
  if (rc == KTOOL_OK)
    rc = ktool_optimize(g, a.passes, roots, n_roots, a.print_all, true, a.pass_log ? stdout : NULL);
  if (rc == KTOOL_OK && a.log_placement) log_placement(g);
  kcg_options opt = {.cc = a.cc, .pipeline = a.passes ? a.passes : KPS_DEFAULT_PIPELINE,
                     .log = a.pass_log ? stdout : NULL};
  if (rc == KTOOL_OK && kcg_compile_cpu(g, roots, n_roots, &opt, a.out) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  if (rc == KTOOL_OK) printf("wrote %s\n", a.out);
  ktool_roots_free(&r);
  kir_graph_destroy(g);
  return rc;
}
