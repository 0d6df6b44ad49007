/* kiln_cmd_opt.c — `kiln opt`: runs a pass pipeline over a graph and saves the result,
 * optionally printing the graph after every pass and each pass's statistics. */
#include <stdio.h>
#include <string.h>

#include "kiln_tool.h"

#define CMD "opt"

int ktool_cmd_opt(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *passes = NULL, *fetch[KTOOL_MAX_ARGS];
  int n_fetch = 0;
  bool print_all = false, verify = false, stats = false;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-o") || !strcmp(o, "--passes") || !strcmp(o, "--fetch")) {
      const char *v = ktool_value(CMD, &i, argc, argv);
      if (!v) return KTOOL_USAGE;
      if (!strcmp(o, "-o")) out = v;
      else if (!strcmp(o, "--passes")) passes = v;
      else if (n_fetch < KTOOL_MAX_ARGS) fetch[n_fetch++] = v;
      else return ktool_usage(CMD, "too many --fetch");
    } else if (!strcmp(o, "--print-after-all")) print_all = true;
    else if (!strcmp(o, "--verify-each")) verify = true;
    else if (!strcmp(o, "--stats")) stats = true;
    else if (o[0] == '-') return ktool_usage(CMD, "unknown option '%s'", o);
    else if (in) return ktool_usage(CMD, "one model at a time");
    else in = o;
  }
  if (!in || !out) return ktool_usage(CMD, "needs MODEL and -o OUT.kiln");
  kir_graph *g = ktool_load_graph(in);
  if (!g) return KTOOL_ERR;
  ktool_roots roots;
  int rc = ktool_roots_init(&roots, g, fetch, n_fetch) ? KTOOL_OK : KTOOL_ERR;
  if (rc == KTOOL_OK)
    rc = ktool_optimize(g, passes, (const char *const *)roots.names, roots.n, print_all, verify,
                        stats ? stderr : NULL);
  if (rc == KTOOL_OK && kir_graph_save(g, out) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  ktool_roots_free(&roots);
  kir_graph_destroy(g);
  return rc;
}
