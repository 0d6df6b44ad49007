/* kps_dump.c — what --dump-dir writes for each pass: the graph as text (.ktxt) and as
 * Graphviz DOT (.dot), and a JSON summary of the nodes the pass added, removed and
 * changed (.json). Depends on ir/ only. File names come from the stage number and the
 * registered pass name, never from model strings; every file is written atomically. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- DOT ----------- */

/* Inside a DOT quoted string: quotes and backslashes escaped; bytes outside printable
 * ASCII shown as the four characters \xNN so any name gives a valid file. */
static void dot_str(FILE *out, const char *s) {
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
    else if (*c < 0x20 || *c >= 0x7f) fprintf(out, "\\\\x%02x", *c);
    else fputc(*c, out);
  }
}

static void dot_node(FILE *out, const kir_node *n) {
  const kir_op_info *info = kir_op_get(n->op);
  char ty[96];
  kir_type_format(&n->type, ty, sizeof ty);
  fprintf(out, "  n%d [label=\"", (int)n->id);
  dot_str(out, n->name);
  fprintf(out, "\\n%s", info ? info->name : "invalid");
  if (n->type.dtype != KILN_DTYPE_INVALID) fprintf(out, " : %s", ty);
  const char *dev = n->assigned_device && n->assigned_device[0] ? n->assigned_device : n->device;
  if (dev && dev[0]) {
    fputs("\\n@", out);
    dot_str(out, dev);
  }
  fputc('"', out);
  if (n->op == KIR_OP_PLACEHOLDER) fputs(", shape=ellipse", out);
  else if (n->op == KIR_OP_CONSTANT) fputs(", style=filled, fillcolor=\"#eeeeee\"", out);
  else if (kir_op_has(n->op, KIR_F_FUSED)) fputs(", style=filled, fillcolor=\"#ffe8b0\"", out);
  fputs("];\n", out);
}

void kps_write_dot(const kir_graph *g, FILE *out) {
  fputs("digraph kiln {\n  node [shape=box, fontname=\"monospace\"];\n", out);
  for (int32_t i = 0; i < g->n_nodes; i++) dot_node(out, g->nodes[i]);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    for (int32_t k = 0; k < n->n_inputs; k++)
      fprintf(out, "  n%d -> n%d;\n", (int)n->inputs[k], (int)n->id);
  }
  fputs("}\n", out);
}

/* ---------------------------------------------------------------- JSON ---------- */

/* A JSON string: every byte outside printable ASCII as \u00NN, so the file is valid
 * JSON whatever the name holds. */
static void json_str(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
    else if (*c < 0x20 || *c >= 0x7f) fprintf(out, "\\u%04x", *c);
    else fputc(*c, out);
  }
  fputc('"', out);
}

static bool attr_equal(const kir_attr *a, const kir_attr *b) {
  if (strcmp(a->name, b->name) != 0 || a->kind != b->kind) return false;
  switch (a->kind) {
  case KIR_ATTR_INT: return a->u.i == b->u.i;
  case KIR_ATTR_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
  case KIR_ATTR_STRING: return strcmp(a->u.s, b->u.s) == 0;
  case KIR_ATTR_INTS:
    return a->u.ints.n == b->u.ints.n &&
           (a->u.ints.n == 0 || memcmp(a->u.ints.v, b->u.ints.v, sizeof(int64_t) * (size_t)a->u.ints.n) == 0);
  case KIR_ATTR_FLOATS:
    return a->u.floats.n == b->u.floats.n &&
           (a->u.floats.n == 0 ||
            memcmp(a->u.floats.v, b->u.floats.v, sizeof(double) * (size_t)a->u.floats.n) == 0);
  case KIR_ATTR_STRINGS:
    if (a->u.strings.n != b->u.strings.n) return false;
    for (int32_t i = 0; i < a->u.strings.n; i++)
      if (strcmp(a->u.strings.v[i], b->u.strings.v[i]) != 0) return false;
    return true;
  case KIR_ATTR_TENSOR: {
    if (!kir_type_equal(&a->u.t->type, &b->u.t->type)) return false;
    int64_t bytes = kir_type_nbytes(&a->u.t->type);
    return bytes <= 0 || memcmp(a->u.t->data, b->u.t->data, (size_t)bytes) == 0;
  }
  }
  return false;
}

static bool attrs_equal(const kir_node *a, const kir_node *b) {
  if (a->n_attrs != b->n_attrs) return false;
  for (int32_t i = 0; i < a->n_attrs; i++)
    if (!attr_equal(&a->attrs[i], &b->attrs[i])) return false;
  return true;
}

/* Inputs compared by name: ids are renumbered by passes that remove nodes. */
static bool inputs_equal(const kir_graph *ga, const kir_node *a, const kir_graph *gb,
                         const kir_node *b) {
  if (a->n_inputs != b->n_inputs) return false;
  for (int32_t i = 0; i < a->n_inputs; i++)
    if (strcmp(ga->nodes[a->inputs[i]]->name, gb->nodes[b->inputs[i]]->name) != 0) return false;
  return true;
}

static bool str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* Writes the list of what differs ("op", "inputs", ...); false when nothing does. */
static bool node_diff(const kir_graph *ga, const kir_node *a, const kir_graph *gb,
                      const kir_node *b, FILE *out) {
  const char *what[5];
  int n = 0;
  if (a->op != b->op) what[n++] = "op";
  if (!inputs_equal(ga, a, gb, b)) what[n++] = "inputs";
  if (!attrs_equal(a, b)) what[n++] = "attrs";
  if (!kir_type_equal(&a->type, &b->type)) what[n++] = "type";
  if (!str_eq(a->device, b->device) || !str_eq(a->assigned_device, b->assigned_device))
    what[n++] = "device";
  for (int i = 0; out && i < n; i++) fprintf(out, "%s\"%s\"", i ? ", " : "", what[i]);
  return n > 0;
}

/* Nodes of `a` with no node of the same name in `b`: added (a = after) or removed. */
static void json_missing(FILE *out, const char *key, const kir_graph *a, const kir_graph *b) {
  fprintf(out, "  \"%s\": [", key);
  int count = 0;
  for (int32_t i = 0; a && b && i < a->n_nodes; i++) {
    const kir_node *n = a->nodes[i];
    if (kir_graph_find(b, n->name)) continue;
    fprintf(out, "%s\n    {\"id\": %d, \"name\": ", count++ ? "," : "", (int)n->id);
    json_str(out, n->name);
    fputc('}', out);
  }
  fputs(count ? "\n  ],\n" : "],\n", out);
}

static void json_changed(FILE *out, const kir_graph *before, const kir_graph *after) {
  fputs("  \"changed\": [", out);
  int count = 0;
  for (int32_t i = 0; before && i < after->n_nodes; i++) {
    const kir_node *n = after->nodes[i];
    const kir_node *old = kir_graph_find(before, n->name);
    if (!old || !node_diff(before, old, after, n, NULL)) continue;
    fprintf(out, "%s\n    {\"id\": %d, \"id_before\": %d, \"name\": ", count++ ? "," : "",
            (int)n->id, (int)old->id);
    json_str(out, n->name);
    fputs(", \"what\": [", out);
    node_diff(before, old, after, n, out);
    fputs("]}", out);
  }
  fputs(count ? "\n  ],\n" : "],\n", out);
}

static void json_stats(FILE *out, const kps_result *res) {
  fputs("  \"stats\": {", out);
  for (int32_t i = 0; res && i < res->n_stats; i++) {
    fputs(i ? ", " : "", out);
    json_str(out, res->stats[i].name);
    fprintf(out, ": %" PRId64, res->stats[i].value);
  }
  fputs("}\n", out);
}

void kps_write_change_json(const kir_graph *before, const kir_graph *after, int32_t index,
                           const char *pass, const kps_result *res, FILE *out) {
  fprintf(out, "{\n  \"index\": %d,\n  \"pass\": ", (int)index);
  json_str(out, pass);
  fprintf(out, ",\n  \"reported_change\": %s,\n", res && res->changed ? "true" : "false");
  fprintf(out, "  \"nodes_before\": %d,\n  \"nodes_after\": %d,\n",
          (int)(before ? before->n_nodes : after->n_nodes), (int)after->n_nodes);
  json_missing(out, "added", after, before);
  json_missing(out, "removed", before, after);
  json_changed(out, before, after);
  json_stats(out, res);
  fputs("}\n", out);
}

/* ---------------------------------------------------------------- files --------- */

static kiln_status ensure_dir(kir_graph *g, const char *dir) {
  char esc[KPS_ESC];
  struct stat sb;
  if (stat(dir, &sb) == 0) {
    if (S_ISDIR(sb.st_mode)) return KILN_OK;
    return kir_seterr(g, KILN_ERR_IO, "dump directory '%s' exists and is not a directory",
                      kir_escape(dir, esc, sizeof esc));
  }
  if (mkdir(dir, 0777) == 0 || (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)))
    return KILN_OK;
  return kir_seterr(g, KILN_ERR_IO, "cannot create dump directory '%s': %s",
                    kir_escape(dir, esc, sizeof esc), strerror(errno));
}

static kiln_status io_error(kir_graph *g, const char *path, const char *what, int err) {
  char esc[KPS_ESC];
  return kir_seterr(g, err == ENOMEM ? KILN_ERR_NOMEM : KILN_ERR_IO, "cannot %s '%s': %s", what,
                    kir_escape(path, esc, sizeof esc), strerror(err));
}

/* true for the names this file writes: NN-<input or registered pass>.<ktxt|dot|json>. */
static bool is_stage_file(const char *name) {
  const char *p = name;
  while (isdigit((unsigned char)*p)) p++;
  if (p - name < 2 || *p != '-') return false;
  const char *pass = p + 1, *dot = strrchr(pass, '.');
  if (!dot || (strcmp(dot, ".ktxt") && strcmp(dot, ".dot") && strcmp(dot, ".json"))) return false;
  size_t len = (size_t)(dot - pass);
  if (len == 5 && !strncmp(pass, "input", 5)) return true;
  for (int32_t i = 0; i < kps_n_passes; i++)
    if (strlen(kps_passes[i].name) == len && !strncmp(kps_passes[i].name, pass, len)) return true;
  return false;
}

/* Removes the stage files of an earlier run, so the directory shows this run only.
 * Other files are left alone. */
static kiln_status clear_stages(kir_graph *g, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return io_error(g, dir, "read the dump directory", errno);
  size_t n = strlen(dir) + 2 + 256;
  char *path = malloc(n);
  kiln_status st = path ? KILN_OK : kir_seterr(g, KILN_ERR_NOMEM, "out of memory clearing dumps");
  for (struct dirent *e; st == KILN_OK && (e = readdir(d));) {
    if (!is_stage_file(e->d_name)) continue;
    snprintf(path, n, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0 && errno != ENOENT) st = io_error(g, path, "remove the old dump", errno);
  }
  free(path);
  closedir(d);
  return st;
}

typedef enum dump_kind { DUMP_TEXT, DUMP_DOT, DUMP_JSON } dump_kind;

typedef struct stage {
  const kir_graph *g, *before;
  int32_t index;
  const char *pass;
  const kps_result *res;
} stage;

/* 0, or an errno-style code when writing failed. */
static int write_kind(FILE *f, const stage *s, dump_kind kind) {
  kiln_status st = KILN_OK;
  switch (kind) {
  case DUMP_TEXT: st = kir_graph_print_text(s->g, f, NULL); break;
  case DUMP_DOT: kps_write_dot(s->g, f); break;
  case DUMP_JSON: kps_write_change_json(s->before, s->g, s->index, s->pass, s->res, f); break;
  }
  return st == KILN_ERR_NOMEM ? ENOMEM : st != KILN_OK || ferror(f) ? EIO : 0;
}

/* Writes to a temporary name in the same directory, then renames it into place; on
 * failure nothing is left behind. */
static kiln_status write_atomic(kir_graph *g, const char *path, const stage *s, dump_kind kind) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory writing a dump");
  snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    kiln_status st = io_error(g, path, "create a temporary file for", errno);
    free(tmp);
    return st;
  }
  (void)fchmod(fd, 0644); /* mkstemp makes it 0600; dumps are for reading */
  FILE *f = fdopen(fd, "w");
  int err = f ? 0 : errno;
  if (!f) close(fd);
  if (f) err = write_kind(f, s, kind);
  if (f && fclose(f) != 0 && !err) err = errno ? errno : EIO;
  if (!err && rename(tmp, path) != 0) err = errno;
  kiln_status st = KILN_OK;
  if (err) {
    unlink(tmp);
    st = io_error(g, path, "write", err);
  }
  free(tmp);
  return st;
}

kiln_status kps_dump_stage(kir_graph *g, const char *dir, int32_t index, const char *pass,
                           const kir_graph *before, const kps_result *res) {
  static const char *const ext[] = {"ktxt", "dot", "json"};
  if (!dir || !pass) return kir_seterr(g, KILN_ERR_ARGUMENT, "dump: no directory or pass name");
  kiln_status st = ensure_dir(g, dir);
  if (st == KILN_OK && index == 0) st = clear_stages(g, dir);
  size_t n = strlen(dir) + strlen(pass) + 32;
  char *path = malloc(n);
  if (st == KILN_OK && !path) st = kir_seterr(g, KILN_ERR_NOMEM, "out of memory writing a dump");
  stage s = {g, before, index, pass, res};
  for (int k = 0; k < 3 && st == KILN_OK; k++) {
    snprintf(path, n, "%s/%02d-%s.%s", dir, (int)index, pass, ext[k]);
    st = write_atomic(g, path, &s, (dump_kind)k);
  }
  free(path);
  return st;
}
