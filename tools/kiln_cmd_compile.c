/* kiln_cmd_compile.c — `kiln compile`: optimizes a graph with the target's pipeline,
 * lowers it to C, compiles it and writes one artifact; can log the pass pipeline and,
 * like TF's log_device_placement, the device of every node with the reason and each
 * device's arena peak (--log-placement, as text or --format json). --device declares
 * the target's devices (default cpu:0 only), so placement over cpu:0 + cuda:N can be
 * inspected without a GPU; with --log-placement and no -o nothing is written. --emit-c
 * DIR writes standalone C (kcg_emit_c) beside or instead of the artifact. An ONNX MODEL
 * is imported first. --target cuda declares cpu:0 and cuda:0 (unless --device says
 * otherwise) and writes a CUDA artifact (kcg_compile_cuda): what has a CUDA kernel runs
 * on the GPU, the rest on the CPU, with the transfers between; --cuda-arch LIST picks
 * the NVRTC architectures (default sm_80,sm_90,compute_90). */
#include <stdio.h>
#include <string.h>

#include "kiln_tool.h"

#define CMD "compile"

typedef struct compile_args {
  const char *in, *out, *passes, *cc, *cpu, *emit_c, *prefix, *cuda_arch;
  bool cuda; /* --target cuda */
  kcg_weights_mode weights;
  bool weights_given;
  const char *fetch[KTOOL_MAX_ARGS];
  int n_fetch;
  const char *devices[KPS_MAX_DEVICES];
  int n_devices;
  bool log_placement, pass_log, print_all, json, strict;
  ktool_import imp;
} compile_args;

static int parse_value(const char *o, const char *v, compile_args *a) {
  if (!strcmp(o, "-o")) a->out = v;
  else if (!strcmp(o, "--emit-c")) a->emit_c = v;
  else if (!strcmp(o, "--prefix")) {
    if (!kcg_c_prefix_valid(v))
      return ktool_usage(CMD, "--prefix '%s' is not a C identifier (a letter, then letters, digits "
                         "or _, at most 32)", v);
    a->prefix = v;
  } else if (!strcmp(o, "--weights")) {
    if (strcmp(v, "c-array") && strcmp(v, "file")) return ktool_usage(CMD, "--weights '%s' is not c-array or file", v);
    a->weights = strcmp(v, "file") ? KCG_WEIGHTS_C_ARRAY : KCG_WEIGHTS_FILE;
    a->weights_given = true;
  }
  else if (!strcmp(o, "--passes")) a->passes = v;
  else if (!strcmp(o, "--cc")) a->cc = v;
  else if (!strcmp(o, "--cpu")) {
    if (strcmp(v, "host") && strcmp(v, "generic"))
      return ktool_usage(CMD, "--cpu must be host or generic, not '%s'", v);
    a->cpu = v;
  }
  else if (!strcmp(o, "--target")) {
    if (strcmp(v, "cpu") && strcmp(v, "cuda"))
      return ktool_usage(CMD, "target '%s' is not supported (cpu, cuda)", v);
    a->cuda = !strcmp(v, "cuda");
  } else if (!strcmp(o, "--cuda-arch")) a->cuda_arch = v;
  else if (!strcmp(o, "--format")) {
    if (strcmp(v, "text") && strcmp(v, "json")) return ktool_usage(CMD, "format '%s' is not text or json", v);
    a->json = !strcmp(v, "json");
  } else if (!strcmp(o, "--device")) {
    char norm[64];
    if (!kps_device_normalize(v, norm, sizeof norm))
      return ktool_usage(CMD, "'%s' is not a device name (cpu:0, cuda:N)", v);
    if (a->n_devices == KPS_MAX_DEVICES) return ktool_usage(CMD, "more than %d --device", KPS_MAX_DEVICES);
    a->devices[a->n_devices++] = v;
  } else {
    if (a->n_fetch == KTOOL_MAX_ARGS) return ktool_usage(CMD, "too many --fetch");
    a->fetch[a->n_fetch++] = v;
  }
  return KTOOL_OK;
}

static int parse(int argc, char **argv, compile_args *a) {
  bool format_given = false;
  for (int i = 0; i < argc; i++) {
    int irc = ktool_take_import_option(CMD, &i, argc, argv, &a->imp);
    if (irc >= 0) {
      if (irc != KTOOL_OK) return irc;
      continue;
    }
    const char *o = argv[i];
    bool takes = !strcmp(o, "-o") || !strcmp(o, "--passes") || !strcmp(o, "--fetch") ||
                 !strcmp(o, "--target") || !strcmp(o, "--cc") || !strcmp(o, "--cpu") || !strcmp(o, "--format") ||
                 !strcmp(o, "--device") || !strcmp(o, "--emit-c") || !strcmp(o, "--prefix") ||
                 !strcmp(o, "--weights") || !strcmp(o, "--cuda-arch");
    const char *v = NULL;
    if (takes && !(v = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
    format_given = format_given || !strcmp(o, "--format");
    if (takes) {
      int rc = parse_value(o, v, a);
      if (rc != KTOOL_OK) return rc;
    } else if (!strcmp(o, "--log-placement")) a->log_placement = true;
    else if (!strcmp(o, "--strict-placement")) a->strict = true;
    else if (!strcmp(o, "--print-pass-log")) a->pass_log = true;
    else if (!strcmp(o, "--print-after-all")) a->print_all = true;
    else if (o[0] == '-') return ktool_usage(CMD, "unknown option '%s'", o);
    else if (a->in) return ktool_usage(CMD, "one model at a time");
    else a->in = o;
  }
  if (!a->in) return ktool_usage(CMD, "needs MODEL");
  if (!a->out && !a->emit_c && !a->log_placement)
    return ktool_usage(CMD, "needs -o ARTIFACT and/or --emit-c DIR (or --log-placement alone)");
  if (!a->emit_c && (a->prefix || a->weights_given))
    return ktool_usage(CMD, "--prefix and --weights apply to --emit-c");
  if (format_given && !a->log_placement) return ktool_usage(CMD, "--format applies to --log-placement");
  if (a->cuda_arch && !a->cuda) return ktool_usage(CMD, "--cuda-arch applies to --target cuda");
  if (a->cuda && a->emit_c) return ktool_usage(CMD, "--emit-c writes CPU C only; it cannot be used with --target cuda");
  if (a->cuda && a->n_devices == 0) { /* the target's devices: the host and the first GPU */
    a->devices[a->n_devices++] = "cpu:0";
    a->devices[a->n_devices++] = "cuda:0";
  }
  if (a->json && a->print_all) return ktool_usage(CMD, "--format json cannot be mixed with --print-after-all");
  return KTOOL_OK;
}

/* ---------------------------------------------------------------- the log ------- */

static const char *op_name(const kir_node *n) {
  const kir_op_info *i = kir_op_get(n->op);
  return i ? i->name : "invalid";
}

static void log_text(const kir_graph *g, const kps_memplan *p) {
  char esc[96];
  printf("placement (%d nodes):\n", (int)g->n_nodes);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    printf("  %-24s %-14s -> %-7s %s\n", kir_escape(n->name, esc, sizeof esc), op_name(n),
           n->assigned_device[0] ? n->assigned_device : "-", n->placement_reason);
  }
  printf("memory plan: weights %lld bytes, %lld in-place reuses\n", (long long)p->weights_bytes,
         (long long)p->n_inplace);
  for (int32_t d = 0; d < p->n_arenas; d++)
    printf("  arena %s: peak %lld bytes, %d buffers\n", p->arenas[d].device,
           (long long)p->arenas[d].peak_bytes, (int)p->arenas[d].n_buffers);
}

static void log_json(const kir_graph *g, const kps_memplan *p, const compile_args *a) {
  printf("{\"devices\": [");
  for (int d = 0; d < a->n_devices; d++) {
    char norm[64];
    kps_device_normalize(a->devices[d], norm, sizeof norm);
    printf("%s", d ? ", " : "");
    ktool_json_string(norm);
  }
  printf("%s],\n \"nodes\": [", a->n_devices ? "" : "\"cpu:0\"");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    printf("%s\n  {\"id\": %d, \"name\": ", i ? "," : "", (int)i);
    ktool_json_string(n->name);
    printf(", \"op\": \"%s\", \"requested\": ", op_name(n));
    ktool_json_string(n->device);
    printf(", \"device\": ");
    ktool_json_string(n->assigned_device);
    printf(", \"reason\": ");
    ktool_json_string(n->placement_reason);
    printf("}");
  }
  printf("],\n \"memory\": {\"weights_bytes\": %lld, \"in_place\": %lld, \"arenas\": [",
         (long long)p->weights_bytes, (long long)p->n_inplace);
  for (int32_t d = 0; d < p->n_arenas; d++) {
    printf("%s{\"device\": ", d ? ", " : "");
    ktool_json_string(p->arenas[d].device);
    printf(", \"peak_bytes\": %lld, \"buffers\": %d}", (long long)p->arenas[d].peak_bytes,
           (int)p->arenas[d].n_buffers);
  }
  printf("]}}\n");
}

/* Plans memory (variables allowed) over the roots and prints the log. */
static int log_placement(kir_graph *g, const char *const *roots, int32_t n_roots, const compile_args *a) {
  int32_t ids[KTOOL_MAX_ARGS];
  int32_t n = 0;
  for (int32_t r = 0; r < n_roots; r++) {
    const kir_node *nd = kir_graph_find(g, roots[r]);
    if (nd && !kir_op_has(nd->op, KIR_F_NO_OUTPUT)) ids[n++] = nd->id;
  }
  kps_memplan plan;
  if (kps_plan_memory_ex(g, ids, n, true, &plan) != KILN_OK)
    return ktool_error("memory plan: %s (%s)", g->error, kiln_status_name(g->status));
  if (a->json) log_json(g, &plan, a);
  else log_text(g, &plan);
  kps_memplan_free(&plan);
  return KTOOL_OK;
}

/* ---------------------------------------------------------------- the command --- */

static int optimize(kir_graph *g, const compile_args *a, const char *const *roots, int32_t n_roots) {
  FILE *log = a->pass_log ? (a->json ? stderr : stdout) : NULL;
  kps_options opt = {.pipeline = a->passes, .verify_each = true, .print_after_all = a->print_all,
                     .print_to = stdout, .log = log};
  kps_context ctx = {.roots = roots, .n_roots = n_roots, .log = log, .strict_placement = a->strict,
                     .devices = a->n_devices ? a->devices : NULL, .n_devices = a->n_devices};
  if (kps_run(g, &opt, &ctx) != KILN_OK)
    return ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  return KTOOL_OK;
}

/* --emit-c: standalone C files in an existing directory. */
static int emit_c(kir_graph *g, const char *const *roots, int32_t n_roots, const compile_args *a) {
  const char *prefix = a->prefix ? a->prefix : "model";
  if (kcg_emit_c(g, roots, n_roots, prefix, a->weights, a->emit_c) != KILN_OK)
    return ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  FILE *o = a->json ? stderr : stdout;
  fprintf(o, "wrote %s/%s.c %s/%s.h", a->emit_c, prefix, a->emit_c, prefix);
  if (a->weights == KCG_WEIGHTS_FILE) fprintf(o, " %s/%s.weights", a->emit_c, prefix);
  fprintf(o, "\n");
  return KTOOL_OK;
}

int ktool_cmd_compile(int argc, char **argv) {
  compile_args a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  if (rc != KTOOL_OK) return rc;
  kir_graph *g = ktool_load_model(a.in, &a.imp);
  if (!g) return KTOOL_ERR;
  ktool_roots r;
  if (!ktool_roots_init(&r, g, a.fetch, a.n_fetch)) {
    kir_graph_destroy(g);
    return KTOOL_ERR;
  }
  const char *const *roots = (const char *const *)r.names;
  int32_t n_roots = r.n;
  if (n_roots == 0) rc = ktool_error("%s: the graph has no output to compile", a.in);
  if (rc == KTOOL_OK) rc = optimize(g, &a, roots, n_roots);
  if (rc == KTOOL_OK && a.log_placement) rc = log_placement(g, roots, n_roots, &a);
  kcg_options opt = {.cc = a.cc, .cpu = a.cpu, .pipeline = a.passes ? a.passes : KPS_DEFAULT_PIPELINE,
                     .log = a.pass_log ? (a.json ? stderr : stdout) : NULL,
                     .cuda_archs = a.cuda_arch};
  if (rc == KTOOL_OK && a.out &&
      (a.cuda ? kcg_compile_cuda(g, roots, n_roots, &opt, a.out)
              : kcg_compile_cpu(g, roots, n_roots, &opt, a.out)) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  if (rc == KTOOL_OK && a.out) fprintf(a.json ? stderr : stdout, "wrote %s\n", a.out);
  if (rc == KTOOL_OK && a.emit_c) rc = emit_c(g, roots, n_roots, &a);
  ktool_roots_free(&r);
  kir_graph_destroy(g);
  return rc;
}
