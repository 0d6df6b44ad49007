/* kir_ops.c — the op table generated from ops.def, name lookup, and the checks every
 * node gets against it (arity, attribute schema). Depends on libc and kir.h only;
 * the schema strings come from ops.def, which is trusted compile-time data. */
#include "kir_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

const kir_op_info kir_op_table[KIR_OP_COUNT] = {
    [KIR_OP_INVALID] = {"invalid", 0, 0, 0, 0, ""},
#define KIR_OP(E, name, wire, min_in, max_in, flags, schema) \
  [KIR_OP_##E] = {name, wire, min_in, max_in, flags, schema},
#include "ops.def"
#undef KIR_OP
};

/* Each entry counts once, so the table has exactly KIR_OP_COUNT entries only when the
 * wire numbers are 1..N, contiguous, as ops.def promises. */
enum {
  KIR_OPS_LISTED = 1
#define KIR_OP(E, name, wire, min_in, max_in, flags, schema) +1
#include "ops.def"
#undef KIR_OP
};
_Static_assert((int)KIR_OPS_LISTED == (int)KIR_OP_COUNT, "ops.def wire numbers must be 1..N, contiguous");
_Static_assert(sizeof kir_op_table / sizeof kir_op_table[0] == KIR_OP_COUNT,
               "op table size must equal KIR_OP_COUNT");

const kir_op_info *kir_op_get(int32_t op) {
  if (op <= KIR_OP_INVALID || op >= KIR_OP_COUNT) return NULL;
  return &kir_op_table[op];
}

kir_op kir_op_from_name(const char *name) {
  if (!name) return KIR_OP_INVALID;
  for (int32_t i = 1; i < KIR_OP_COUNT; i++)
    if (strcmp(kir_op_table[i].name, name) == 0) return (kir_op)i;
  return KIR_OP_INVALID;
}

kiln_status kir_node_err(kir_graph *g, const kir_node *n, kiln_status s, const char *fmt, ...) {
  char msg[400], esc[KIR_ESC_BUF];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kir_seterr(g, s, "node '%s': %s", kir_escape(n ? n->name : NULL, esc, sizeof esc), msg);
}

kiln_status kir_check_arity(kir_graph *g, const kir_node *n) {
  const kir_op_info *info = kir_op_get((int32_t)n->op);
  if (!info) return kir_node_err(g, n, KILN_ERR_GRAPH, "invalid op number %d", (int)n->op);
  if (n->n_inputs < 0 || (n->n_inputs > 0 && !n->inputs))
    return kir_node_err(g, n, KILN_ERR_GRAPH, "bad input list");
  if (n->n_inputs < info->min_inputs ||
      (info->max_inputs >= 0 && n->n_inputs > info->max_inputs)) {
    if (info->max_inputs < 0)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "%s takes at least %d inputs, got %d",
                          info->name, (int)info->min_inputs, (int)n->n_inputs);
    if (info->min_inputs == info->max_inputs)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "%s takes %d inputs, got %d", info->name,
                          (int)info->min_inputs, (int)n->n_inputs);
    return kir_node_err(g, n, KILN_ERR_GRAPH, "%s takes %d to %d inputs, got %d", info->name,
                        (int)info->min_inputs, (int)info->max_inputs, (int)n->n_inputs);
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- schema -------- */
#define SCHEMA_MAX 16
#define SCHEMA_NAME 32

typedef struct schema_entry {
  char name[SCHEMA_NAME];
  kir_attr_kind kind;
  bool optional;
} schema_entry;

static bool parse_kind(const char *s, size_t len, kir_attr_kind *k) {
  for (int i = KIR_ATTR_INT; i <= KIR_ATTR_TENSOR; i++) {
    const char *name = kir_attr_kind_name((kir_attr_kind)i);
    if (strlen(name) == len && memcmp(name, s, len) == 0) {
      *k = (kir_attr_kind)i;
      return true;
    }
  }
  return false;
}

/* Parses one "name:kind[?]" token of length len into e. */
static bool parse_entry(const char *tok, size_t len, schema_entry *e) {
  const char *colon = memchr(tok, ':', len);
  if (!colon) return false;
  size_t nlen = (size_t)(colon - tok), klen = len - nlen - 1;
  if (nlen == 0 || nlen >= SCHEMA_NAME) return false;
  memcpy(e->name, tok, nlen);
  e->name[nlen] = '\0';
  e->optional = klen > 0 && colon[klen] == '?';
  if (e->optional) klen--;
  return parse_kind(colon + 1, klen, &e->kind);
}

/* Returns the entry count, or -1 when the schema text is malformed (a Kiln bug). */
static int parse_schema(const char *schema, schema_entry *out) {
  int count = 0;
  const char *p = schema;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    size_t len = strcspn(p, " ");
    if (count == SCHEMA_MAX || !parse_entry(p, len, &out[count])) return -1;
    count++;
    p += len;
  }
  return count;
}

static const schema_entry *schema_find(const schema_entry *e, int count, const char *name) {
  for (int i = 0; i < count; i++)
    if (strcmp(e[i].name, name) == 0) return &e[i];
  return NULL;
}

static kiln_status check_node_attrs(kir_graph *g, const kir_node *n, const schema_entry *e,
                                    int count) {
  char esc[KIR_ESC_BUF];
  if (n->n_attrs < 0 || (n->n_attrs > 0 && !n->attrs))
    return kir_node_err(g, n, KILN_ERR_GRAPH, "bad attribute list");
  for (int32_t i = 0; i < n->n_attrs; i++) {
    const kir_attr *a = &n->attrs[i];
    const schema_entry *s = a->name ? schema_find(e, count, a->name) : NULL;
    if (!s)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "unknown attribute '%s' for %s",
                          kir_escape(a->name, esc, sizeof esc), kir_op_table[n->op].name);
    if (s->kind != a->kind)
      return kir_node_err(g, n, KILN_ERR_GRAPH, "attribute '%s' must be %s, found %s", s->name,
                          kir_attr_kind_name(s->kind), kir_attr_kind_name(a->kind));
  }
  for (int i = 0; i < count; i++)
    if (!e[i].optional && !kir_attr_find(n, e[i].name))
      return kir_node_err(g, n, KILN_ERR_GRAPH, "missing attribute '%s' (%s) for %s",
                          e[i].name, kir_attr_kind_name(e[i].kind), kir_op_table[n->op].name);
  return KILN_OK;
}

/* Every op's schema parsed once: inference checks a node's attributes on every call, and
 * re-parsing the schema text each time showed up in profiles of big graphs. */
typedef struct parsed_schema {
  int count; /* -1: malformed schema text (a Kiln bug) */
  schema_entry e[SCHEMA_MAX];
} parsed_schema;

static parsed_schema schemas[KIR_OP_COUNT];
static pthread_once_t schemas_once = PTHREAD_ONCE_INIT;

static void parse_all_schemas(void) {
  for (int op = 1; op < KIR_OP_COUNT; op++)
    schemas[op].count = parse_schema(kir_op_table[op].schema, schemas[op].e);
}

static const parsed_schema *schema_of(int32_t op) {
  if (!kir_op_get(op)) return NULL;
  pthread_once(&schemas_once, parse_all_schemas);
  return &schemas[op];
}

kiln_status kir_check_schema(kir_graph *g, const kir_node *n) {
  const parsed_schema *ps = schema_of((int32_t)n->op);
  if (!ps) return kir_node_err(g, n, KILN_ERR_GRAPH, "invalid op number %d", (int)n->op);
  if (ps->count < 0)
    return kir_node_err(g, n, KILN_ERR_INTERNAL, "malformed schema for %s",
                        kir_op_table[n->op].name);
  return check_node_attrs(g, n, ps->e, ps->count);
}

int kir_schema_kind(kir_op op, const char *name) {
  const parsed_schema *ps = schema_of((int32_t)op);
  const schema_entry *e = ps && ps->count > 0 && name ? schema_find(ps->e, ps->count, name) : NULL;
  return e ? (int)e->kind : 0;
}
