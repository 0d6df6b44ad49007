/* kiln_cmd_show.c — `kiln show MODEL|ARTIFACT`: what a graph holds (a summary, the
 * canonical text form that parses back, Graphviz DOT or JSON), what an ONNX file holds
 * (konnx_describe; --imported: the Kiln graph it imports to), or what an artifact will
 * do: its sections and hashes, inputs, outputs, steps with the graph nodes each kernel
 * came from and its device, and the memory plan's peak. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln_artifact.pb-c.h"
#include "kiln_tool.h"
#include "../runtime/kiln_artifact.h"

#define CMD "show"

static void json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f) printf("\\u%04x", *p);
    else putchar(*p);
  }
  putchar('"');
}

static void show_graph_json(const kir_graph *g) {
  printf("{\"nodes\": [");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    char ty[160];
    kir_type_format(&n->type, ty, sizeof ty);
    printf("%s\n  {\"id\": %d, \"name\": ", i ? "," : "", (int)i);
    json_string(n->name);
    printf(", \"op\": \"%s\", \"type\": \"%s\", \"inputs\": [", kir_op_table[n->op].name,
           n->type.dtype ? ty : "none");
    for (int32_t k = 0; k < n->n_inputs; k++) {
      printf("%s", k ? ", " : "");
      json_string(g->nodes[n->inputs[k]]->name);
    }
    printf("], \"device\": ");
    json_string(n->device);
    printf(", \"assigned_device\": ");
    json_string(n->assigned_device);
    printf("}");
  }
  printf("\n]}\n");
}

/* Model text inside a DOT string: quotes and backslashes escaped, bytes outside
 * printable ASCII shown as the text \xNN, so no name can end the literal. */
static void dot_escaped(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f) printf("\\\\x%02X", *p);
    else putchar(*p);
  }
}

static void show_graph_dot(const kir_graph *g) {
  char ty[160];
  printf("digraph kiln {\n  node [shape=box, fontname=\"monospace\"];\n");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (kir_op_has(n->op, KIR_F_NO_OUTPUT)) snprintf(ty, sizeof ty, "()");
    else kir_type_format(&n->type, ty, sizeof ty);
    printf("  n%d [label=\"%%%d %s\\n", (int)i, (int)i, kir_op_table[n->op].name);
    dot_escaped(n->name);
    printf("\\n%s", ty);
    if (n->assigned_device[0]) {
      printf("\\n@ ");
      dot_escaped(n->assigned_device);
    }
    printf("\"];\n");
  }
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++)
      printf("  n%d -> n%d;\n", (int)g->nodes[i]->inputs[k], (int)i);
  printf("}\n");
}

/* One line per arena of g's memory plan with `outs` live to the end, or why there is
 * none. Plans are computed at compile time: this is the peak a run will need. */
static void print_plan_line(const char *label, kir_graph *g, const char *const *outs,
                            int32_t n_out) {
  int32_t ids[KTOOL_MAX_ARGS];
  for (int32_t i = 0; i < n_out; i++) ids[i] = kir_graph_find(g, outs[i])->id;
  kps_memplan plan = {0};
  if (kps_plan_memory_ex(g, ids, n_out, true, &plan) != KILN_OK) {
    printf("  %s: none (%s)\n", label, g->error);
    return;
  }
  printf("  %s: weights %lld bytes", label, (long long)plan.weights_bytes);
  for (int32_t a = 0; a < plan.n_arenas; a++)
    printf(", %s arena peak %lld bytes", plan.arenas[a].device, (long long)plan.arenas[a].peak_bytes);
  printf("%s\n", plan.n_arenas ? "" : ", no arena");
  kps_memplan_free(&plan);
}

static void print_memory_plans(const kir_graph *g, const char **outs, int32_t n_out) {
  printf("memory plan:\n");
  kir_graph *as_is = kir_graph_clone(g), *opt = kir_graph_clone(g);
  ktool_roots roots = {0};
  if (!as_is || !opt || !ktool_roots_init(&roots, g, outs, n_out)) {
    printf("  none (out of memory)\n");
  } else {
    print_plan_line("as stored", as_is, outs, n_out);
    kps_options o = {0};
    kps_context c = {.roots = (const char *const *)roots.names, .n_roots = roots.n};
    if (kps_run(opt, &o, &c) == KILN_OK)
      print_plan_line("after the default pipeline", opt, (const char *const *)roots.names, roots.n);
    else
      printf("  after the default pipeline: none (%s)\n", opt->error);
  }
  ktool_roots_free(&roots);
  kir_graph_destroy(as_is);
  kir_graph_destroy(opt);
}

static void show_graph_summary(const char *path, const kir_graph *g, const kir_print_options *po) {
  char esc[96], ty[160];
  printf("graph %s: %d nodes\n", path, (int)g->n_nodes);
  printf("inputs:\n");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op != KIR_OP_PLACEHOLDER) continue;
    kir_type_format(&n->type, ty, sizeof ty);
    printf("  %s %s\n", kir_escape(n->name, esc, sizeof esc), ty);
  }
  const char *outs[KTOOL_MAX_ARGS];
  int32_t n_out = ktool_default_outputs(g, outs, KTOOL_MAX_ARGS);
  printf("outputs:\n");
  for (int32_t i = 0; i < n_out; i++) {
    const kir_node *n = kir_graph_find(g, outs[i]);
    kir_type_format(&n->type, ty, sizeof ty);
    printf("  %s %s\n", kir_escape(n->name, esc, sizeof esc), ty);
  }
  print_memory_plans(g, outs, n_out);
  printf("nodes:\n");
  fflush(stdout);
  kir_graph_print_text(g, stdout, po);
}

/* format NULL: the summary and the node listing; "text": only the canonical text, which
 * parses back (with --full-constants); "dot": Graphviz; "json": nodes as JSON. */
static int show_graph(const char *path, const char *format, bool full, const ktool_import *imp) {
  kir_graph *g = ktool_load_model(path, imp);
  if (!g) return KTOOL_ERR;
  kir_print_options po = {.full_constants = full};
  int rc = KTOOL_OK;
  if (!format) {
    show_graph_summary(path, g, &po);
  } else if (!strcmp(format, "json")) {
    show_graph_json(g);
  } else if (!strcmp(format, "dot")) {
    show_graph_dot(g);
  } else {
    kiln_status st = kir_graph_print_text(g, stdout, &po);
    if (st != KILN_OK) rc = ktool_error("%s: printing failed (%s)", path, kiln_status_name(st));
  }
  if (fflush(stdout) != 0) rc = ktool_error("%s: writing the output failed", path);
  kir_graph_destroy(g);
  return rc;
}

/* Reads a whole file (bounded by the artifact size limit). */
static uint8_t *read_file(const char *path, size_t *n) {
  struct stat st;
  FILE *f = fopen(path, "rb");
  if (!f) {
    ktool_error("%s: %s", path, strerror(errno));
    return NULL;
  }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > KIR_MAX_FILE_BYTES) {
    fclose(f);
    ktool_error("%s: not a regular file of at most 2 GiB", path);
    return NULL;
  }
  uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
  *n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
  fclose(f);
  if (!buf || *n != (size_t)st.st_size) {
    free(buf);
    ktool_error("%s: could not read the file", path);
    return NULL;
  }
  return buf;
}

static const char *section_name(uint32_t kind) {
  switch (kind) {
  case KART_SEC_PLAN: return "plan";
  case KART_SEC_WEIGHTS: return "weights";
  case KART_SEC_CODE_CPU: return "code/cpu";
  case KART_SEC_SOURCE_C: return "source/c";
  case KART_SEC_CODE_CUDA: return "code/cuda";
  case KART_SEC_SOURCE_CUDA: return "source/cuda";
  }
  return "unknown";
}

static void format_spec(const Kiln__Rt__TensorSpec *t, char *buf, size_t n) {
  if (!t) {
    snprintf(buf, n, "(missing)");
    return;
  }
  kir_type ty = {.dtype = (kiln_dtype)t->dtype, .rank = (int32_t)t->n_dims};
  for (size_t i = 0; i < t->n_dims && i < KILN_MAX_RANK; i++) ty.dims[i] = t->dims[i];
  kir_type_format(&ty, buf, n);
}

static const char *loc_name(Kiln__Rt__Location loc) {
  switch (loc) {
  case KILN__RT__LOCATION__LOC_INPUT: return "input";
  case KILN__RT__LOCATION__LOC_WEIGHTS: return "weights";
  case KILN__RT__LOCATION__LOC_ARENA: return "arena";
  default: return "none";
  }
}

static const char *where_name(const Kiln__Rt__Operand *o, char *buf, size_t n) {
  switch (o ? o->where : KILN__RT__WHERE__WHERE_NONE) {
  case KILN__RT__WHERE__WHERE_ARENA: snprintf(buf, n, "%s arena+%llu", o->device, (unsigned long long)o->offset); break;
  case KILN__RT__WHERE__WHERE_WEIGHTS: snprintf(buf, n, "weights+%llu", (unsigned long long)o->offset); break;
  case KILN__RT__WHERE__WHERE_IO: snprintf(buf, n, "io[%d] on %s", (int)o->index, o->device); break;
  default: snprintf(buf, n, "none"); break;
  }
  return buf;
}

/* Target "cuda": the device, the arenas, the kernel images, every CUDA step and the
 * run's schedule (what runs where, and the copies between). */
static void show_cuda(const Kiln__Rt__Plan *p) {
  char esc[96], a[96], b[96];
  printf("cuda: device %s, entry %s, error word %s\n", p->cuda_device,
         p->entry[0] ? p->entry : "(no CPU code)", p->cuda_error_word ? "read" : "unused");
  for (size_t i = 0; i < p->n_arenas; i++)
    printf("  arena %s: %llu bytes\n", p->arenas[i]->device, (unsigned long long)p->arenas[i]->bytes);
  for (size_t i = 0; i < p->n_cuda_images; i++) {
    const Kiln__Rt__CudaImage *im = p->cuda_images[i];
    char hex[65] = "";
    if (im->sha256.len == 32) kart_hex(im->sha256.data, hex);
    printf("  image %-10s %s, %llu bytes at %llu, sha256 %.16s…\n", im->arch, im->ptx ? "ptx  " : "cubin",
           (unsigned long long)im->size, (unsigned long long)im->offset, hex);
  }
  printf("cuda steps:\n");
  for (size_t i = 0; i < p->n_cuda_steps; i++) {
    const Kiln__Rt__CudaStep *s = p->cuda_steps[i];
    printf("  %zu ", i);
    if (s->kind == 2 && s->gemm) {
      const Kiln__Rt__CudaGemm *g = s->gemm;
      printf("cuBLASLt %s GEMM %lldx%lldx%lld batch %lld%s%s%s%s", g->dtype == 2 ? "f64" : "f32",
             (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch,
             g->trans_a ? " A^T" : "", g->trans_b ? " B^T" : "", g->has_bias ? " +bias" : "",
             g->relu ? " relu" : "");
      if (s->kernel[0]) printf(", then");
    }
    if (s->kernel[0]) printf(" %s <<<%llu, %u>>>", s->kernel, (unsigned long long)s->grid, s->block);
    printf("  node %s\n", kir_escape(s->node, esc, sizeof esc));
  }
  printf("schedule (%zu units):\n", p->n_schedule);
  for (size_t i = 0; i < p->n_schedule; i++) {
    const Kiln__Rt__Unit *u = p->schedule[i];
    const char *node = kir_escape(u->node, esc, sizeof esc);
    if (u->kind == KILN__RT__UNIT__KIND__UNIT_CPU_STEP) printf("  cpu step %d  %s\n", (int)u->index, node);
    else if (u->kind == KILN__RT__UNIT__KIND__UNIT_CUDA_STEP) printf("  cuda step %d  %s\n", (int)u->index, node);
    else
      printf("  copy %llu bytes %s -> %s  %s\n", (unsigned long long)(u->src ? u->src->bytes : 0),
             where_name(u->src, a, sizeof a), where_name(u->dst, b, sizeof b), node);
  }
}

static void show_plan(const Kiln__Rt__Plan *p) {
  char ty[160], esc[96];
  printf("target %s, abi %u, producer %s\npipeline %s\n", p->target, p->abi, p->producer,
         p->pipeline[0] ? p->pipeline : "(none recorded)");
  printf("cpu features required:%s", p->n_cpu_features ? "" : " none (any x86-64)");
  for (size_t i = 0; i < p->n_cpu_features; i++)
    printf("%s %s", i ? "," : "", kir_escape(p->cpu_features[i], esc, sizeof esc));
  printf("\n");
  printf("inputs:\n");
  for (size_t i = 0; i < p->n_inputs; i++) {
    format_spec(p->inputs[i], ty, sizeof ty);
    printf("  %s %s\n", kir_escape(p->inputs[i]->name, esc, sizeof esc), ty);
  }
  printf("outputs:\n");
  for (size_t i = 0; i < p->n_outputs; i++) {
    format_spec(p->outputs[i], ty, sizeof ty);
    printf("  %s %s\n", kir_escape(p->outputs[i]->name, esc, sizeof esc), ty);
  }
  printf("steps:\n");
  for (size_t i = 0; i < p->n_steps; i++) {
    const Kiln__Rt__Step *s = p->steps[i];
    printf("  %zu %s (%s) on %s, from nodes:", i, s->kernel, s->op, s->device);
    for (size_t k = 0; k < s->n_nodes; k++)
      printf("%s %s", k ? "," : "", kir_escape(s->nodes[k], esc, sizeof esc));
    printf("\n");
  }
  printf("buffers:\n");
  for (size_t i = 0; i < p->n_buffers; i++) {
    const Kiln__Rt__Buffer *b = p->buffers[i];
    format_spec(b->tensor, ty, sizeof ty);
    bool other = b->loc == KILN__RT__LOCATION__LOC_ARENA && b->device[0] && strcmp(b->device, "cpu:0");
    printf("  %zu %s %s in %s%s%s at %llu (%llu bytes)\n", i,
           kir_escape(b->tensor ? b->tensor->name : "?", esc, sizeof esc), ty, loc_name(b->loc),
           other ? " of " : "", other ? b->device : "", (unsigned long long)b->offset,
           (unsigned long long)b->size);
  }
  printf("memory plan: %sarena peak %llu bytes, weights %llu bytes\n",
         strcmp(p->target, "cuda") == 0 ? "cpu:0 " : "",
         (unsigned long long)p->arena_bytes, (unsigned long long)p->weights_bytes);
  if (strcmp(p->target, "cuda") == 0) show_cuda(p);
}

static int show_artifact(const char *path) {
  size_t n = 0;
  uint8_t *bytes = read_file(path, &n);
  if (!bytes) return KTOOL_ERR;
  kart_section secs[KART_MAX_SECTIONS];
  int n_secs = 0;
  char err[512];
  if (kart_parse(bytes, n, secs, &n_secs, err, sizeof err) != 0) {
    free(bytes);
    return ktool_error("%s: %s", path, err);
  }
  printf("artifact %s: format %d.%d, %d sections, %zu bytes\n", path, KART_MAJOR, KART_MINOR,
         n_secs, n);
  for (int i = 0; i < n_secs; i++) {
    char hex[65];
    kart_hex(secs[i].sha256, hex);
    printf("  %-9s offset %-8llu size %-9llu sha256 %.16s…\n", section_name(secs[i].kind),
           (unsigned long long)secs[i].offset, (unsigned long long)secs[i].size, hex);
  }
  const kart_section *ps = kart_find(secs, n_secs, KART_SEC_PLAN);
  Kiln__Rt__Plan *plan = ps ? kiln__rt__plan__unpack(NULL, ps->size, ps->data) : NULL;
  int rc = KTOOL_OK;
  if (plan) show_plan(plan);
  else rc = ktool_error("%s: the plan section is missing or not a valid plan", path);
  if (plan) kiln__rt__plan__free_unpacked(plan, NULL);
  free(bytes);
  return rc;
}

/* An ONNX file as ONNX: konnx_describe's summary, text or JSON. */
static int describe_onnx(const char *path, const char *format) {
  char err[512] = "";
  fflush(stdout);
  if (konnx_describe(path, stdout, format && !strcmp(format, "json"), err, sizeof err) != KILN_OK)
    return strstr(err, path) ? ktool_error("%s", err) : ktool_error("%s: %s", path, err);
  if (fflush(stdout) != 0) return ktool_error("%s: writing the output failed", path);
  return KTOOL_OK;
}

/* An ONNX file shows as ONNX unless --imported (or --format dot, which only a graph
 * has) asks for the Kiln graph; the import options and --full-constants are about that
 * graph, so alone they are a usage error. */
static int show_onnx(const char *path, const char *format, bool full, bool imported,
                     const ktool_import *imp) {
  if (imported || (format && !strcmp(format, "dot"))) return show_graph(path, format, full, imp);
  if (full || imp->n_shapes || imp->allow_external_data)
    return ktool_usage(CMD, "--full-constants, --input-shape and --allow-external-data apply "
                       "to the imported graph: add --imported");
  return describe_onnx(path, format);
}

int ktool_cmd_show(int argc, char **argv) {
  const char *path = NULL, *format = NULL;
  bool full = false, imported = false;
  ktool_import imp = {0};
  for (int i = 0; i < argc; i++) {
    int irc = ktool_take_import_option(CMD, &i, argc, argv, &imp);
    if (irc >= 0) {
      if (irc != KTOOL_OK) return irc;
      continue;
    }
    if (!strcmp(argv[i], "--imported")) {
      imported = true;
    } else if (!strcmp(argv[i], "--format")) {
      if (!(format = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
      if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "dot"))
        return ktool_usage(CMD, "--format must be text, dot or json, not '%s'", format);
    } else if (!strcmp(argv[i], "--full-constants")) {
      full = true;
    } else if (argv[i][0] == '-') {
      return ktool_usage(CMD, "unknown option '%s'", argv[i]);
    } else if (path) {
      return ktool_usage(CMD, "one file at a time ('%s' and '%s')", path, argv[i]);
    } else {
      path = argv[i];
    }
  }
  if (!path) return ktool_usage(CMD, "which file?");
  bool onnx = !ktool_is_artifact(path) && konnx_looks_like_onnx(path);
  if (onnx) return show_onnx(path, format, full, imported, &imp);
  if (imported) return ktool_usage(CMD, "--imported applies to ONNX models; %s is not one", path);
  if (!ktool_is_artifact(path)) return show_graph(path, format, full, &imp);
  int rc = ktool_no_import_options(path, &imp, "an artifact");
  return rc != KTOOL_OK ? rc : show_artifact(path);
}
