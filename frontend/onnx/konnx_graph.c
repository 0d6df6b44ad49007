/* konnx_graph.c — the importer's building blocks: the name hash map, the ONNX value ->
 * Kiln node table (initializers become constants on first use), node naming (outputs
 * keep their value names, expansions "<output>/<role>"), attribute getters that check
 * types, static (constant) inputs, and import-time folding of small constant subgraphs
 * (the Shape -> Gather -> Concat chains exporters emit). Depends on ir/ only. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "konnx_internal.h"

#define FOLD_MAX_ELEMS 65536 /* larger constant results stay nodes for the fold pass */

/* ---------------------------------------------------------------- hash map ------- */

typedef struct map_slot {
  const char *key;
  int32_t v;
} map_slot;

struct konnx_map {
  map_slot *slots;
  size_t cap, n;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

konnx_map *konnx_map_new(size_t expected) {
  konnx_map *m = kir_calloc(1, sizeof *m);
  if (!m) return NULL;
  m->cap = 16;
  while (m->cap < expected * 2 + 1) m->cap *= 2;
  m->slots = kir_calloc(m->cap, sizeof *m->slots);
  if (!m->slots) {
    kir_free(m);
    return NULL;
  }
  return m;
}

void konnx_map_free(konnx_map *m) {
  if (!m) return;
  kir_free(m->slots);
  kir_free(m);
}

static map_slot *map_find(const konnx_map *m, const char *key) {
  size_t i = (size_t)hash_str(key) & (m->cap - 1);
  while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0) i = (i + 1) & (m->cap - 1);
  return &m->slots[i];
}

static bool map_grow(konnx_map *m) {
  konnx_map bigger = {kir_calloc(m->cap * 2, sizeof(map_slot)), m->cap * 2, 0};
  if (!bigger.slots) return false;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key) *map_find(&bigger, m->slots[i].key) = m->slots[i];
  kir_free(m->slots);
  m->slots = bigger.slots;
  m->cap = bigger.cap;
  return true;
}

bool konnx_map_put(konnx_map *m, const char *key, int32_t v) {
  if ((m->n + 1) * 2 > m->cap && !map_grow(m)) return false;
  map_slot *s = map_find(m, key);
  if (!s->key) m->n++;
  s->key = key;
  s->v = v;
  return true;
}

bool konnx_map_get(const konnx_map *m, const char *key, int32_t *v) {
  map_slot *s = map_find(m, key);
  if (!s->key) return false;
  if (v) *v = s->v;
  return true;
}

/* ---------------------------------------------------------------- errors, names -- */

kiln_status konnx_err(konnx_ctx *c, kiln_status s, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kir_seterr(c->g, s, "%s", msg);
}

static bool name_taken(konnx_ctx *c, const char *s) {
  return kir_graph_find(c->g, s) || konnx_map_get(c->reserved, s, NULL);
}

const char *konnx_sub_name(konnx_ctx *c, const char *base, const char *role, char *buf, size_t n) {
  snprintf(buf, n, "%s/%s", base, role);
  for (int k = 1; name_taken(c, buf) && k < 1000000; k++) snprintf(buf, n, "%s/%s~%d", base, role, k);
  return buf;
}

const char *konnx_kiln_name(konnx_ctx *c, const char *name, char *buf, size_t n) {
  int32_t v;
  snprintf(buf, n, "%s", konnx_map_get(c->renamed, name, &v) ? c->rename_to[v] : name);
  return buf;
}

kiln_status konnx_bind(konnx_ctx *c, const char *name, int32_t id) {
  if (!konnx_map_put(c->values, name, id)) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  return KILN_OK;
}

/* ---------------------------------------------------------------- values --------- */

/* Makes initializer i a constant node named as the initializer (or its renamed form). */
static kiln_status make_initializer(konnx_ctx *c, int32_t i, int32_t *id) {
  const Onnx__TensorProto *t = c->gp->initializer[i];
  char what[KONNX_ESC + 32], en[KONNX_ESC], msg[512], name[KONNX_NAME_BUF];
  snprintf(what, sizeof what, "initializer '%s'", kir_escape(konnx_s(t->name), en, sizeof en));
  kir_tensor *x;
  kiln_status s = konnx_tensor_decode(t, &c->ext, what, &x, msg, sizeof msg);
  if (s != KILN_OK) return konnx_err(c, s, "%s", msg);
  kir_node *n = kir_node_add(c->g, KIR_OP_CONSTANT, konnx_kiln_name(c, t->name, name, sizeof name), NULL, 0);
  s = n ? kir_attr_set_tensor(c->g, n, "value", x) : c->g->status;
  kir_tensor_free(x);
  if (s == KILN_OK) s = kir_infer_node(c->g, n);
  if (s != KILN_OK) return s;
  *id = n->id;
  return konnx_bind(c, t->name, n->id);
}

kiln_status konnx_value_of(konnx_ctx *c, const char *name, int32_t *id) {
  char en[KONNX_ESC];
  int32_t v;
  if (!konnx_map_get(c->values, name, &v))
    return konnx_err(c, KILN_ERR_GRAPH, "input '%s' is not defined (no graph input, initializer or node output has that name)",
                     kir_escape(name, en, sizeof en));
  if (v == KONNX_RESERVED)
    return konnx_err(c, KILN_ERR_GRAPH, "input '%s' is the output of a node that was not imported",
                     kir_escape(name, en, sizeof en));
  if (v < 0) return make_initializer(c, -2 - v, id);
  *id = v;
  return KILN_OK;
}

bool konnx_has_output(const Onnx__NodeProto *n, int32_t k) {
  return (size_t)k < n->n_output && n->output[k] && n->output[k][0];
}

static bool has_input(const Onnx__NodeProto *n, int32_t i) {
  return (size_t)i < n->n_input && n->input[i] && n->input[i][0];
}

kiln_status konnx_in(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i, int32_t *id) {
  if (!has_input(n, i))
    return konnx_err(c, KILN_ERR_GRAPH, "input %d is missing (the node has %zu)", i, n->n_input);
  return konnx_value_of(c, n->input[i], id);
}

kiln_status konnx_opt_in(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i, int32_t *id) {
  *id = -1;
  return has_input(n, i) ? konnx_value_of(c, n->input[i], id) : KILN_OK;
}

const kir_tensor *konnx_static(konnx_ctx *c, int32_t id) {
  const kir_node *n = c->g->nodes[id];
  return n->op == KIR_OP_CONSTANT ? kir_attr_tensor(n, "value") : NULL;
}

kiln_status konnx_static_ints(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i, const char *what,
                              int64_t *out, int32_t cap, int32_t *count) {
  char en[KONNX_ESC];
  int32_t id;
  kiln_status s = konnx_in(c, n, i, &id);
  if (s != KILN_OK) return s;
  const kir_tensor *t = konnx_static(c, id);
  kir_escape(n->input[i], en, sizeof en);
  if (!t)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "input %d ('%s', %s) must be static (an initializer, a Constant or computed from them)",
                     i, en, what);
  if (t->type.dtype != KILN_I64 && t->type.dtype != KILN_I32)
    return konnx_err(c, KILN_ERR_TYPE, "input %d ('%s', %s) is %s; i64 or i32 expected", i, en, what,
                     kiln_dtype_name(t->type.dtype));
  int64_t numel = kir_type_numel(&t->type);
  if (t->type.rank > 1 || numel > cap)
    return konnx_err(c, KILN_ERR_LIMIT, "input %d ('%s', %s) has %lld values of rank %d (at most %d, rank 0 or 1)",
                     i, en, what, (long long)numel, t->type.rank, cap);
  for (int64_t k = 0; k < numel; k++) out[k] = kir_tensor_get_i(t, k);
  *count = (int32_t)numel;
  return KILN_OK;
}

/* ---------------------------------------------------------------- attributes ----- */

const Onnx__AttributeProto *konnx_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (strcmp(konnx_s(n->attribute[i]->name), name) == 0) return n->attribute[i];
  return NULL;
}

/* The attribute's type, from its type field or (older files) from what is set. */
static int attr_type(const Onnx__AttributeProto *a) {
  if (a->has_type && a->type) return (int)a->type;
  if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
  if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
  if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
  if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
  return 0;
}

static kiln_status want_type(konnx_ctx *c, const Onnx__AttributeProto *a, int type, const char *tn) {
  if (attr_type(a) == type) return KILN_OK;
  char en[KONNX_ESC];
  return konnx_err(c, KILN_ERR_FORMAT, "attribute '%s' has type %d; %s expected",
                   kir_escape(konnx_s(a->name), en, sizeof en), attr_type(a), tn);
}

kiln_status konnx_attr_int(konnx_ctx *c, const Onnx__NodeProto *n, const char *name, int64_t dflt,
                           int64_t *v) {
  const Onnx__AttributeProto *a = konnx_attr(n, name);
  *v = dflt;
  if (!a) return KILN_OK;
  kiln_status s = want_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "INT");
  if (s == KILN_OK) *v = a->i;
  return s;
}

kiln_status konnx_attr_float(konnx_ctx *c, const Onnx__NodeProto *n, const char *name, double dflt,
                             double *v) {
  const Onnx__AttributeProto *a = konnx_attr(n, name);
  *v = dflt;
  if (!a) return KILN_OK;
  kiln_status s = want_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "FLOAT");
  if (s == KILN_OK) *v = a->f;
  return s;
}

kiln_status konnx_attr_ints(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                            const int64_t **v, int32_t *count, bool *present) {
  const Onnx__AttributeProto *a = konnx_attr(n, name);
  *v = NULL;
  *count = 0;
  *present = a != NULL;
  if (!a) return KILN_OK;
  if (attr_type(a) == 0) return KILN_OK; /* an empty list carries no type in old files */
  kiln_status s = want_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "INTS");
  if (s != KILN_OK) return s;
  if (a->n_ints > KIR_MAX_INPUTS)
    return konnx_err(c, KILN_ERR_LIMIT, "attribute '%s' has %zu values (limit %d)", name, a->n_ints,
                     KIR_MAX_INPUTS);
  *v = a->ints;
  *count = (int32_t)a->n_ints;
  return KILN_OK;
}

kiln_status konnx_attr_string(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                              const char *dflt, char *buf, size_t n_buf) {
  const Onnx__AttributeProto *a = konnx_attr(n, name);
  snprintf(buf, n_buf, "%s", dflt);
  if (!a) return KILN_OK;
  kiln_status s = want_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "STRING");
  if (s != KILN_OK) return s;
  if (a->s.len >= n_buf || (a->s.len && memchr(a->s.data, 0, a->s.len)))
    return konnx_err(c, KILN_ERR_FORMAT, "attribute '%s' is not a valid value (%zu bytes)", name, a->s.len);
  if (a->s.len) memcpy(buf, a->s.data, a->s.len);
  buf[a->s.len] = 0;
  return KILN_OK;
}

kiln_status konnx_axis(konnx_ctx *c, const char *what, int64_t axis, int32_t rank, int32_t *out) {
  if (axis < -(int64_t)rank || axis >= rank)
    return konnx_err(c, KILN_ERR_SHAPE, "%s = %lld is out of range for rank %d", what, (long long)axis, rank);
  *out = (int32_t)(axis < 0 ? axis + rank : axis);
  return KILN_OK;
}

/* ---------------------------------------------------------------- building ------- */

kir_node *konnx_add(konnx_ctx *c, kir_op op, const char *name, const int32_t *in, int32_t n_in) {
  return kir_node_add(c->g, op, name, in, n_in);
}

void konnx_try_fold(konnx_ctx *c, kir_node *n) {
  if (n->n_inputs == 0 || kir_op_has(n->op, KIR_F_SOURCE | KIR_F_STATEFUL | KIR_F_CONTROL) ||
      konnx_map_get(c->outputs, n->name, NULL))
    return;
  int64_t numel = kir_type_numel(&n->type);
  if (numel < 0 || numel > FOLD_MAX_ELEMS) return;
  const kir_tensor **in = kir_calloc((size_t)n->n_inputs, sizeof *in);
  if (!in) return;
  bool all = true;
  for (int32_t i = 0; i < n->n_inputs && all; i++) all = (in[i] = konnx_static(c, n->inputs[i])) != NULL;
  kir_tensor *out = NULL;
  if (all && kir_eval_node(c->g, n, in, &out) == KILN_OK) {
    kir_node saved = *n;
    n->op = KIR_OP_CONSTANT;
    n->n_inputs = 0;
    n->n_attrs = 0;
    n->attrs = NULL;
    if (kir_attr_set_tensor(c->g, n, "value", out) != KILN_OK || kir_infer_node(c->g, n) != KILN_OK)
      *n = saved; /* keep the computing node; the arena keeps what was allocated */
  }
  kir_tensor_free(out);
  kir_free(in);
  kir_clearerr(c->g);
}

kiln_status konnx_finish(konnx_ctx *c, kir_node *n) {
  kiln_status s = kir_infer_node(c->g, n);
  if (s == KILN_OK) konnx_try_fold(c, n);
  return s;
}

const char *konnx_out_name(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k, char *buf, size_t len) {
  return konnx_kiln_name(c, n->output[k], buf, len);
}

kiln_status konnx_emit_out(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k, kir_op op,
                           const int32_t *in, int32_t n_in, kir_node **out) {
  char name[KONNX_NAME_BUF];
  kir_node *x = konnx_add(c, op, konnx_out_name(c, n, k, name, sizeof name), in, n_in);
  if (!x) return c->g->status;
  *out = x;
  return konnx_bind(c, n->output[k], x->id);
}

kiln_status konnx_emit_sub(konnx_ctx *c, const Onnx__NodeProto *n, const char *role, kir_op op,
                           const int32_t *in, int32_t n_in, kir_node **out) {
  char name[KONNX_NAME_BUF];
  const char *base = konnx_has_output(n, 0) ? n->output[0] : konnx_s(n->name);
  kir_node *x = konnx_add(c, op, konnx_sub_name(c, base, role, name, sizeof name), in, n_in);
  if (!x) return c->g->status;
  *out = x;
  return KILN_OK;
}

kiln_status konnx_emit_const(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k, const char *role,
                             const kir_tensor *t, int32_t *id) {
  kir_node *x;
  kiln_status s = role ? konnx_emit_sub(c, n, role, KIR_OP_CONSTANT, NULL, 0, &x)
                       : konnx_emit_out(c, n, k, KIR_OP_CONSTANT, NULL, 0, &x);
  if (s == KILN_OK) s = kir_attr_set_tensor(c->g, x, "value", t);
  if (s == KILN_OK) s = kir_infer_node(c->g, x);
  if (s == KILN_OK) *id = x->id;
  return s;
}

kiln_status konnx_scalar(konnx_ctx *c, const Onnx__NodeProto *n, const char *role, kiln_dtype dt,
                         double v, int32_t *id) {
  kir_type ty = {.dtype = dt, .rank = 0};
  kir_tensor *t = kir_tensor_new(&ty);
  if (!t) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  kir_tensor_set_f(t, 0, v);
  kiln_status s = konnx_emit_const(c, n, 0, role, t, id);
  kir_tensor_free(t);
  return s;
}

kiln_status konnx_reshape(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k, const char *role,
                          int32_t id, const int64_t *dims, int32_t rank, int32_t *out) {
  kir_node *x;
  kiln_status s = role ? konnx_emit_sub(c, n, role, KIR_OP_RESHAPE, &id, 1, &x)
                       : konnx_emit_out(c, n, k, KIR_OP_RESHAPE, &id, 1, &x);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, x, "shape", dims, rank);
  if (s == KILN_OK) s = konnx_finish(c, x);
  if (s == KILN_OK && out) *out = x->id;
  return s;
}
