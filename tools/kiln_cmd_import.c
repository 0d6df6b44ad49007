/* kiln_cmd_import.c — `kiln import MODEL.onnx -o MODEL.kiln`, and what every command
 * shares to take an ONNX model: the --input-shape / --allow-external-data options,
 * ktool_load_model (ONNX importer or .kiln loaders, by what the file is) and .pb tensors.
 * The importer (frontend/onnx) does the checking; this file parses and reports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kiln_tool.h"

#define CMD "import"

/* ---- --input-shape NAME=d0,d1,... and --allow-external-data ----------------------- */

/* "d0,d1,..." into s; an empty list is a scalar (rank 0). */
static bool parse_dims(const char *cmd, const char *name, const char *v, konnx_shape *s) {
  s->rank = 0;
  for (const char *p = v; *p;) {
    char *end = (char *)p;
    errno = 0;
    long long d = (*p >= '0' && *p <= '9') ? strtoll(p, &end, 10) : -1;
    if (d < 0 || errno || d > KIR_MAX_TENSOR_BYTES || (*end != ',' && *end != '\0') ||
        (*end == ',' && !end[1])) {
      ktool_usage(cmd, "--input-shape %s=%s: dims are whole numbers from 0 to %lld, separated by "
                  "commas", name, v, (long long)KIR_MAX_TENSOR_BYTES);
      return false;
    }
    if (s->rank == KILN_MAX_RANK) {
      ktool_usage(cmd, "--input-shape %s=%s: more than %d dims", name, v, KILN_MAX_RANK);
      return false;
    }
    s->dims[s->rank++] = d;
    p = *end ? end + 1 : end;
  }
  return true;
}

/* arg is "NAME=DIMS" (writable: split in place, like ktool_parse_binding). The last '='
 * splits, as names may hold one and dims never do. */
static int add_shape(const char *cmd, char *arg, ktool_import *imp) {
  char *eq = strrchr(arg, '=');
  if (!eq || eq == arg)
    return ktool_usage(cmd, "--input-shape wants NAME=d0,d1,... (NAME= for a scalar), not '%s'", arg);
  if (imp->n_shapes == KTOOL_MAX_ARGS)
    return ktool_usage(cmd, "more than %d --input-shape", KTOOL_MAX_ARGS);
  *eq = '\0';
  for (int32_t k = 0; k < imp->n_shapes; k++)
    if (!strcmp(imp->shapes[k].name, arg))
      return ktool_usage(cmd, "--input-shape %s given twice", arg);
  konnx_shape *s = &imp->shapes[imp->n_shapes];
  s->name = arg;
  if (!parse_dims(cmd, arg, eq + 1, s)) return KTOOL_USAGE;
  imp->n_shapes++;
  return KTOOL_OK;
}

int ktool_take_import_option(const char *cmd, int *i, int argc, char **argv, ktool_import *imp) {
  const char *o = argv[*i];
  if (!strcmp(o, "--allow-external-data")) {
    imp->allow_external_data = true;
    return KTOOL_OK;
  }
  if (!strncmp(o, "--input-shape=", 14)) return add_shape(cmd, argv[*i] + 14, imp);
  if (strcmp(o, "--input-shape")) return -1;
  if (!ktool_value(cmd, i, argc, argv)) return KTOOL_USAGE;
  return add_shape(cmd, argv[*i], imp);
}

/* ---- loading a MODEL ---------------------------------------------------------------- */

/* Prints g's error, prefixed with the path unless the message names it already. */
static void print_load_error(const char *path, const kir_graph *g) {
  if (strstr(g->error, path)) ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  else ktool_error("%s: %s (%s)", path, g->error, kiln_status_name(g->status));
}

/* Every --input-shape must name a graph input. */
static bool shapes_used(const char *path, const kir_graph *g, const ktool_import *imp) {
  char esc[96];
  for (int32_t k = 0; imp && k < imp->n_shapes; k++) {
    const kir_node *n = kir_graph_find(g, imp->shapes[k].name);
    if (!n || n->op != KIR_OP_PLACEHOLDER) {
      ktool_error("%s: --input-shape '%s': the model has no input of that name", path,
                  kir_escape(imp->shapes[k].name, esc, sizeof esc));
      return false;
    }
  }
  return true;
}

static kir_graph *import_onnx(const char *path, const ktool_import *imp) {
  kir_graph *g = kir_graph_create();
  if (!g) {
    ktool_error("out of memory");
    return NULL;
  }
  konnx_options o = {0};
  if (imp)
    o = (konnx_options){.shapes = imp->shapes, .n_shapes = imp->n_shapes,
                        .allow_external_data = imp->allow_external_data, .log = imp->log};
  if (konnx_import_file(g, path, &o) != KILN_OK) {
    print_load_error(path, g);
    kir_graph_destroy(g);
    return NULL;
  }
  if (!shapes_used(path, g, imp)) {
    kir_graph_destroy(g);
    return NULL;
  }
  return g;
}

int ktool_no_import_options(const char *path, const ktool_import *imp, const char *what) {
  if (!imp || (!imp->n_shapes && !imp->allow_external_data)) return KTOOL_OK;
  return ktool_error("%s: --input-shape and --allow-external-data apply to ONNX models; this "
                     "is %s", path, what);
}

kir_graph *ktool_load_model(const char *path, const ktool_import *imp) {
  if (konnx_looks_like_onnx(path)) return import_onnx(path, imp);
  if (ktool_no_import_options(path, imp, "a Kiln graph") != KTOOL_OK) return NULL;
  kir_graph *g = kir_graph_create();
  if (!g) {
    ktool_error("out of memory");
    return NULL;
  }
  if (kir_graph_load_any(g, path) != KILN_OK) {
    print_load_error(path, g);
    kir_graph_destroy(g);
    return NULL;
  }
  return g;
}

kir_graph *ktool_load_graph(const char *path) { return ktool_load_model(path, NULL); }

/* ---- tensors from .pb ---------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcasecmp(s + n - k, suffix);
}

static bool has_npy_magic(const char *path) {
  char magic[6] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return n == sizeof magic && !memcmp(magic, "\x93NUMPY", sizeof magic);
}

kir_tensor *ktool_read_tensor(const char *path) {
  if (!ends_with(path, ".pb") || has_npy_magic(path)) return ktool_read_npy(path);
  char err[512] = "";
  kir_tensor *t = NULL;
  if (konnx_read_tensor_file(path, &t, NULL, err, sizeof err) != KILN_OK) {
    if (strstr(err, path)) ktool_error("%s", err);
    else ktool_error("%s: %s", path, err);
    return NULL;
  }
  return t;
}

/* ---- kiln import ----------------------------------------------------------------------- */

typedef struct import_args {
  const char *in, *out;
  ktool_import imp;
  bool log;
} import_args;

static int parse_args(int argc, char **argv, import_args *a) {
  for (int i = 0; i < argc; i++) {
    int rc = ktool_take_import_option(CMD, &i, argc, argv, &a->imp);
    if (rc >= 0) {
      if (rc != KTOOL_OK) return rc;
      continue;
    }
    const char *o = argv[i];
    if (!strcmp(o, "-o")) {
      const char *v = ktool_value(CMD, &i, argc, argv);
      if (!v) return KTOOL_USAGE;
      if (a->out && strcmp(a->out, v)) return ktool_usage(CMD, "-o given twice ('%s' and '%s')", a->out, v);
      a->out = v;
    } else if (!strcmp(o, "--log")) {
      a->log = true;
    } else if (o[0] == '-') {
      return ktool_usage(CMD, "unknown option '%s'", o);
    } else if (a->in) {
      return ktool_usage(CMD, "one model at a time ('%s' and '%s')", a->in, o);
    } else {
      a->in = o;
    }
  }
  if (!a->in || !a->out) return ktool_usage(CMD, "needs MODEL.onnx and -o OUT.kiln");
  if (ends_with(a->out, ".onnx"))
    return ktool_usage(CMD, "-o %s: the output is a Kiln graph, not ONNX (name it .kiln)", a->out);
  return KTOOL_OK;
}

static int32_t count_inputs(const kir_graph *g) {
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == KIR_OP_PLACEHOLDER;
  return n;
}

/* The graph's computed sinks (the importer makes them exactly the ONNX outputs; an
 * unused input is not one); -1 on OOM. */
static int32_t count_outputs(const kir_graph *g) {
  uint8_t *used = calloc((size_t)g->n_nodes + 1, 1);
  if (!used) return -1;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) used[g->nodes[i]->inputs[k]] = 1;
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_op op = g->nodes[i]->op;
    n += !used[i] && op != KIR_OP_PLACEHOLDER && op != KIR_OP_CONSTANT && op != KIR_OP_VARIABLE;
  }
  free(used);
  return n;
}

/* Imports whatever file it is given (the importer says why a file is not ONNX), saves
 * atomically, prints one line. */
int ktool_cmd_import(int argc, char **argv) {
  import_args a = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc != KTOOL_OK) return rc;
  a.imp.log = a.log ? stdout : NULL;
  kir_graph *g = import_onnx(a.in, &a.imp);
  if (!g) return KTOOL_ERR;
  int32_t n_in = count_inputs(g), n_out = count_outputs(g);
  if (n_out < 0) rc = ktool_error("out of memory");
  else if (kir_graph_save(g, a.out) != KILN_OK) rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  else printf("imported %s: %d nodes, %d input%s, %d output%s; wrote %s\n", a.in, (int)g->n_nodes,
              (int)n_in, n_in == 1 ? "" : "s", (int)n_out, n_out == 1 ? "" : "s", a.out);
  if (fflush(stdout) != 0 && rc == KTOOL_OK) rc = ktool_error("writing the summary failed");
  kir_graph_destroy(g);
  return rc;
}
