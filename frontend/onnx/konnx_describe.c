/* konnx_describe.c — `kiln show MODEL.onnx` (a text or JSON summary of an ONNX file
 * without importing it) and konnx_looks_like_onnx. Reads the file under the same limits
 * as the importer; model strings are escaped in both forms. Depends on ir/, protobuf-c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "konnx_internal.h"

static bool prefix_varint(const uint8_t *b, size_t len, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (int i = 0; i < 10 && *pos < len; i++) {
    uint8_t c = b[(*pos)++];
    r |= (uint64_t)(c & 0x7f) << (7 * i);
    if (!(c & 0x80)) return *v = r, true;
  }
  return false;
}

/* Walks the top-level fields of a file prefix: an ir_version (field 1) before a graph
 * (field 7) whose framing is valid so far. */
static bool prefix_is_model(const uint8_t *b, size_t len) {
  size_t pos = 0;
  bool ir = false;
  while (pos < len) {
    uint64_t tag, v;
    if (!prefix_varint(b, len, &pos, &tag) || (tag >> 3) == 0) return false;
    switch (tag & 7) {
    case 0:
      if (!prefix_varint(b, len, &pos, &v)) return false;
      if ((tag >> 3) == 1) ir = true;
      break;
    case 1: pos += 8; break;
    case 5: pos += 4; break;
    case 2:
      if (!prefix_varint(b, len, &pos, &v)) return false;
      if ((tag >> 3) == 7) return ir;
      if (v > len - pos) return false;
      pos += (size_t)v;
      break;
    default: return false;
    }
  }
  return false;
}

bool konnx_looks_like_onnx(const char *path) {
  if (!path) return false;
  size_t n = strlen(path);
  if (n >= 5 && strcasecmp(path + n - 5, ".onnx") == 0) return true;
  FILE *f = fopen(path, "rb");
  uint8_t *buf = f ? kir_malloc(65536) : NULL;
  size_t len = buf ? fread(buf, 1, 65536, f) : 0;
  if (f) fclose(f);
  bool yes = buf && prefix_is_model(buf, len);
  kir_free(buf);
  return yes;
}

/* ---------------------------------------------------------------- summary -------- */

typedef struct op_count {
  const char *op, *domain;
  int32_t count;
  const char *reason; /* NULL: supported */
} op_count;

static void put_str(FILE *out, const char *s, bool json) {
  if (!json) {
    char e[KONNX_ESC];
    fputs(kir_escape(konnx_s(s), e, sizeof e), out);
    return;
  }
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)konnx_s(s); *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f) fprintf(out, "\\u%04x", *p);
    else fputc(*p, out);
  }
  fputc('"', out);
}

static void put_type(FILE *out, const Onnx__ValueInfoProto *vi, bool json) {
  char tn[32];
  const Onnx__TypeProto *tp = vi->type;
  const Onnx__TypeProto__Tensor *tt =
      tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? tp->tensor_type : NULL;
  const char *dt = tt ? konnx_type_name(tt->elem_type, tn, sizeof tn) : "non-tensor";
  if (json) fprintf(out, "{\"name\": "), put_str(out, vi->name, true), fprintf(out, ", \"dtype\": \"%s\", \"shape\": ", dt);
  else fprintf(out, "  "), put_str(out, vi->name, false), fprintf(out, ": %s ", dt);
  if (!tt || !tt->shape) {
    fputs(json ? "null}" : " (shape unknown)", out);
    return;
  }
  fputc('[', out);
  for (size_t d = 0; d < tt->shape->n_dim; d++) {
    const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
    if (d) fputs(json ? ", " : ",", out);
    if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) fprintf(out, "%lld", (long long)dim->dim_value);
    else if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) put_str(out, dim->dim_param, json);
    else fputs(json ? "null" : "?", out);
  }
  fputs(json ? "]}" : "]", out);
}

static bool is_initializer(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_initializer; i++)
    if (strcmp(konnx_s(g->initializer[i]->name), konnx_s(name)) == 0) return true;
  return false;
}

static int64_t elem_bytes(int32_t t) {
  static const int8_t sz[] = {0, 4, 1, 1, 2, 2, 4, 8, 0, 1, 2, 8, 4, 8, 8, 16, 2, 1, 1, 1, 1};
  return t >= 0 && (size_t)t < sizeof sz ? sz[t] : 0;
}

static int64_t initializer_bytes(const Onnx__GraphProto *g) {
  int64_t total = 0;
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    int64_t n = elem_bytes(t->data_type);
    for (size_t d = 0; d < t->n_dims && n > 0; d++)
      n = t->dims[d] >= 0 && (t->dims[d] == 0 || n <= INT64_MAX / t->dims[d]) ? n * t->dims[d] : -1;
    if (n > 0 && total <= INT64_MAX - n) total += n;
  }
  return total;
}

static const char *unsupported_reason(const Onnx__NodeProto *n) {
  const char *d = n->domain;
  if (d && *d && strcmp(d, "ai.onnx") != 0) return "domain not supported";
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i]->g || n->attribute[i]->n_graphs) return "subgraphs (control flow) not supported";
  return konnx_find_op(konnx_s(n->op_type)) ? NULL : "operator not supported";
}

static int cmp_count(const void *a, const void *b) {
  const op_count *x = a, *y = b;
  int r = strcmp(x->op, y->op);
  return r ? r : strcmp(x->domain, y->domain);
}

/* Distinct (op_type, domain) pairs with counts, sorted. */
static op_count *count_ops(const Onnx__GraphProto *g, int32_t *n_out) {
  op_count *v = kir_calloc(g->n_node + 1, sizeof *v);
  int32_t n = 0;
  for (size_t j = 0; v && j < g->n_node; j++) {
    const Onnx__NodeProto *nd = g->node[j];
    int32_t i = 0;
    while (i < n && !(strcmp(v[i].op, konnx_s(nd->op_type)) == 0 && strcmp(v[i].domain, konnx_s(nd->domain)) == 0)) i++;
    if (i == n) v[n++] = (op_count){konnx_s(nd->op_type), konnx_s(nd->domain), 0, unsupported_reason(nd)};
    v[i].count++;
    if (!v[i].reason) v[i].reason = unsupported_reason(nd);
  }
  if (v) qsort(v, (size_t)n, sizeof *v, cmp_count);
  *n_out = n;
  return v;
}

static void put_io(FILE *out, const Onnx__GraphProto *g, bool inputs, bool json) {
  size_t n = inputs ? g->n_input : g->n_output;
  bool first = true;
  fprintf(out, json ? "  \"%s\": [" : "%s:\n", inputs ? "inputs" : "outputs");
  for (size_t i = 0; i < n; i++) {
    const Onnx__ValueInfoProto *vi = inputs ? g->input[i] : g->output[i];
    if (inputs && is_initializer(g, vi->name)) continue;
    if (json && !first) fputs(", ", out);
    first = false;
    put_type(out, vi, json);
    if (!json) fputc('\n', out);
  }
  if (json) fputs("],\n", out);
}

static void put_ops(FILE *out, const op_count *v, int32_t n, bool json) {
  fputs(json ? "  \"operators\": [" : "operators:\n", out);
  for (int32_t i = 0; i < n; i++) {
    if (json) {
      fputs(i ? ", {\"op_type\": " : "{\"op_type\": ", out);
      put_str(out, v[i].op, true);
      fputs(", \"domain\": ", out);
      put_str(out, v[i].domain, true);
      fprintf(out, ", \"count\": %d, \"supported\": %s", v[i].count, v[i].reason ? "false" : "true");
      if (v[i].reason) fprintf(out, ", \"reason\": \"%s\"", v[i].reason);
      fputc('}', out);
      continue;
    }
    fputs("  ", out);
    put_str(out, v[i].op, false);
    if (v[i].domain[0]) fputs(" (", out), put_str(out, v[i].domain, false), fputc(')', out);
    fprintf(out, ": %d%s%s\n", v[i].count, v[i].reason ? "  UNSUPPORTED: " : "", v[i].reason ? v[i].reason : "");
  }
  if (json) fputs("],\n", out);
}

static void put_summary(FILE *out, const Onnx__ModelProto *m, const op_count *ops, int32_t n_ops, bool json) {
  const Onnx__GraphProto *g = m->graph;
  int32_t unsup = 0;
  for (int32_t i = 0; i < n_ops; i++) unsup += ops[i].reason != NULL;
  if (json) fputs("{\n", out);
  fprintf(out, json ? "  \"ir_version\": %lld,\n  \"producer\": " : "ir_version: %lld\nproducer: ", (long long)m->ir_version);
  put_str(out, m->producer_name, json);
  fputs(json ? ",\n  \"producer_version\": " : " ", out);
  put_str(out, m->producer_version, json);
  fputs(json ? ",\n  \"opsets\": [" : "\nopsets:", out);
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    fputs(json ? (i ? ", {\"domain\": " : "{\"domain\": ") : " ", out);
    put_str(out, *konnx_s(o->domain) ? o->domain : (json ? "" : "ai.onnx"), json);
    fprintf(out, json ? ", \"version\": %lld}" : ":%lld", (long long)o->version);
  }
  fputs(json ? "],\n" : "\n", out);
  put_io(out, g, true, json);
  put_io(out, g, false, json);
  fprintf(out, json ? "  \"initializers\": %zu,\n  \"initializer_bytes\": %lld,\n  \"nodes\": %zu,\n"
                    : "initializers: %zu (%lld bytes)\nnodes: %zu\n",
          g->n_initializer, (long long)initializer_bytes(g), g->n_node);
  put_ops(out, ops, n_ops, json);
  fprintf(out, json ? "  \"unsupported_operators\": %d\n}\n" : "unsupported operators: %d\n", unsup);
}

kiln_status konnx_describe(const char *path, FILE *out, bool json, char *err, size_t errlen) {
  char msg[512] = "", ep[KONNX_ESC];
  uint8_t *buf;
  size_t len;
  if (!path || !out) {
    if (err && errlen) snprintf(err, errlen, "konnx_describe: NULL argument");
    return KILN_ERR_ARGUMENT;
  }
  kiln_status s = konnx_read_file(path, &buf, &len, msg, sizeof msg);
  if (s != KILN_OK) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return s;
  }
  konnx_unpacker u;
  ProtobufCMessage *pm = NULL;
  s = konnx_unpack(&u, buf, len, &onnx__model_proto__descriptor, &pm, msg, sizeof msg);
  const Onnx__ModelProto *m = (const Onnx__ModelProto *)pm;
  if (s == KILN_OK && (!m->has_ir_version || !m->graph)) {
    snprintf(msg, sizeof msg, "not an ONNX model (no ir_version or graph)");
    s = KILN_ERR_FORMAT;
  }
  int32_t n_ops = 0;
  op_count *ops = s == KILN_OK ? count_ops(m->graph, &n_ops) : NULL;
  if (s == KILN_OK && !ops) snprintf(msg, sizeof msg, "out of memory"), s = KILN_ERR_NOMEM;
  if (s == KILN_OK) put_summary(out, m, ops, n_ops, json);
  else if (err && errlen) snprintf(err, errlen, "%s: %s", kir_escape(path, ep, sizeof ep), msg);
  kir_free(ops);
  konnx_unpack_free(&u, pm);
  kir_free(buf);
  return s;
}
