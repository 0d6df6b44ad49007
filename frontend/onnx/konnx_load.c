/* konnx_load.c — konnx_import: checks a ModelProto (opsets, names, topology), makes the
 * graph inputs placeholders (initializers listed as inputs keep their value as the
 * placeholder's default), imports the nodes the outputs need in topological order, and
 * ends each output in a node named as it. Builds into a scratch graph that replaces the
 * caller's only on success. Depends on ir/ and protobuf-c only. */
#include <stdio.h>
#include <string.h>

#include "konnx_internal.h"

static kiln_status fail(kir_graph *g, kiln_status s, const char *msg) {
  return kir_seterr(g, s, "%s", msg);
}

/* ---------------------------------------------------------------- model checks --- */

static bool default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

/* Opsets 1..6 predate KONNX_MIN_OPSET. A model of such an opset still imports when each
 * of its operators had, at the model's opset, the same definition it has at opset 7
 * (no new version in between): then opset 7's semantics apply. Each entry: an op_type
 * and the oldest opset from which its definition stays unchanged up to opset 7 (from
 * the ONNX operator changelog). */
static const struct { const char *op; int64_t since; } LEGACY_SAME_AS_7[] = {
    {"Abs", 6},       {"ArgMax", 1},   {"ArgMin", 1},        {"Cast", 6},
    {"Clip", 6},      {"Concat", 4},   {"Constant", 1},      {"Conv", 1},
    {"Exp", 6},       {"Flatten", 1},  {"Gather", 1},        {"GlobalAveragePool", 1},
    {"GlobalMaxPool", 1}, {"Identity", 1}, {"LeakyRelu", 6}, {"Log", 6},
    {"LogSoftmax", 1}, {"MatMul", 1},  {"Max", 6},           {"MaxPool", 1},
    {"Mean", 6},      {"Min", 6},      {"Neg", 6},           {"ReduceMax", 1},
    {"ReduceMean", 1}, {"ReduceMin", 1}, {"ReduceSum", 1},   {"Relu", 6},
    {"Reshape", 5},   {"Shape", 1},    {"Sigmoid", 6},       {"Slice", 1},
    {"Softmax", 1},   {"Sqrt", 6},     {"Squeeze", 1},       {"Sum", 6},
    {"Tanh", 6},      {"Transpose", 1}, {"Unsqueeze", 1},
};

static kiln_status check_legacy_ops(konnx_ctx *c, const Onnx__GraphProto *gp) {
  for (size_t j = 0; j < gp->n_node; j++) {
    const Onnx__NodeProto *n = gp->node[j];
    if (!default_domain(n->domain)) continue; /* refused later, naming the domain */
    const char *op = konnx_s(n->op_type);
    bool known = false;
    for (const char *const *k = konnx_supported_ops(); *k && !known; k++) known = !strcmp(*k, op);
    if (!known) continue; /* refused later as an unsupported operator */
    bool same = false;
    for (size_t k = 0; k < sizeof LEGACY_SAME_AS_7 / sizeof LEGACY_SAME_AS_7[0]; k++)
      if (!strcmp(op, LEGACY_SAME_AS_7[k].op)) same = c->opset >= LEGACY_SAME_AS_7[k].since;
    if (!same) {
      char eo[KONNX_ESC];
      return konnx_err(c, KILN_ERR_UNSUPPORTED,
                       "model: opset %lld: operator %s at that opset differs from its opset-7 "
                       "definition (Kiln imports opsets %d to %d, and older models only where "
                       "every operator is unchanged up to opset 7)",
                       (long long)c->opset, kir_escape(op, eo, sizeof eo), KONNX_MIN_OPSET,
                       KONNX_MAX_OPSET);
    }
  }
  return KILN_OK;
}

static kiln_status check_opset(konnx_ctx *c, const Onnx__ModelProto *m) {
  c->opset = -1;
  const char *other = NULL;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    if (default_domain(m->opset_import[i]->domain))
      c->opset = m->opset_import[i]->has_version ? m->opset_import[i]->version : 1;
    else if (!other)
      other = m->opset_import[i]->domain;
  }
  if (c->opset < 0 && other) {
    char ed[KONNX_ESC];
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "model: imports only domain '%s', not the "
                     "default ONNX domain; Kiln imports the default domain only",
                     kir_escape(other, ed, sizeof ed));
  }
  if (c->opset < 0)
    return konnx_err(c, KILN_ERR_FORMAT, "model: no opset_import for the default domain");
  if (c->opset < 1 || c->opset > KONNX_MAX_OPSET)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "model: opset %lld of the default domain is not supported (Kiln imports opsets %d to %d)",
                     (long long)c->opset, KONNX_MIN_OPSET, KONNX_MAX_OPSET);
  if (!m->graph) return konnx_err(c, KILN_ERR_FORMAT, "model: no graph");
  if (c->opset < KONNX_MIN_OPSET) {
    kiln_status s = check_legacy_ops(c, m->graph);
    if (s != KILN_OK) return s;
  }
  if (m->graph->n_node > KIR_MAX_NODES)
    return konnx_err(c, KILN_ERR_LIMIT, "model: %zu nodes (limit %d)", m->graph->n_node, KIR_MAX_NODES);
  if (m->graph->n_sparse_initializer)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "model: sparse initializers are not supported");
  return KILN_OK;
}

/* "node 'n' (op_type 'T')" for messages, with the node's index when it has no name. */
static const char *node_label(const Onnx__NodeProto *n, int32_t idx, char *buf, size_t len) {
  char en[KONNX_ESC], eo[KONNX_ESC];
  kir_escape(konnx_s(n->op_type), eo, sizeof eo);
  if (n->name && n->name[0])
    snprintf(buf, len, "node '%s' (op_type '%s')", kir_escape(n->name, en, sizeof en), eo);
  else
    snprintf(buf, len, "node #%d (op_type '%s')", idx, eo);
  return buf;
}

/* ---------------------------------------------------------------- name tables ---- */

static kiln_status define(konnx_ctx *c, const char *name, int32_t v, const char *what) {
  char en[KONNX_ESC];
  if (!name || !*name) return konnx_err(c, KILN_ERR_FORMAT, "%s has an empty name", what);
  if (konnx_map_get(c->values, name, NULL))
    return konnx_err(c, KILN_ERR_GRAPH, "%s: value name '%s' is defined twice", what,
                     kir_escape(name, en, sizeof en));
  if (!konnx_map_put(c->values, name, v) || !konnx_map_put(c->reserved, name, 0))
    return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  return KILN_OK;
}

static kiln_status build_tables(konnx_ctx *c) {
  const Onnx__GraphProto *gp = c->gp;
  char what[KONNX_ESC + 64];
  kiln_status s = KILN_OK;
  for (size_t i = 0; i < gp->n_initializer && s == KILN_OK; i++)
    s = define(c, gp->initializer[i]->name, KONNX_PENDING_INIT(i), "initializer");
  for (size_t i = 0; i < gp->n_input && s == KILN_OK; i++) {
    const char *nm = gp->input[i]->name;
    int32_t v;
    if (nm && konnx_map_get(c->values, nm, &v) && v <= KONNX_PENDING_INIT(0)) continue;
    s = define(c, nm, KONNX_RESERVED, "graph input");
  }
  for (size_t j = 0; j < gp->n_node && s == KILN_OK; j++) {
    const Onnx__NodeProto *n = gp->node[j];
    node_label(n, (int32_t)j, what, sizeof what);
    for (size_t k = 0; k < n->n_output && s == KILN_OK; k++)
      if (n->output[k] && n->output[k][0]) s = define(c, n->output[k], KONNX_RESERVED, what);
  }
  return s;
}

/* ---------------------------------------------------------------- topology ------- */

typedef struct topo {
  konnx_map *producer; /* value name -> node index */
  bool *needed;
  int32_t *order, n_order;
} topo;

static int32_t producer_of(const topo *t, const char *name) {
  int32_t p;
  return name && name[0] && konnx_map_get(t->producer, name, &p) ? p : -1;
}

/* Marks the nodes the graph outputs need, walking back through producers. */
static kiln_status mark_needed(konnx_ctx *c, topo *t) {
  const Onnx__GraphProto *gp = c->gp;
  int32_t *stack = kir_calloc(gp->n_node + 1, sizeof *stack), sp = 0;
  if (!stack) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < gp->n_output; i++) {
    int32_t p = producer_of(t, gp->output[i]->name);
    if (p >= 0 && !t->needed[p]) t->needed[p] = true, stack[sp++] = p;
  }
  while (sp > 0) {
    const Onnx__NodeProto *n = gp->node[stack[--sp]];
    for (size_t k = 0; k < n->n_input; k++) {
      int32_t p = producer_of(t, n->input[k]);
      if (p >= 0 && !t->needed[p]) t->needed[p] = true, stack[sp++] = p;
    }
  }
  kir_free(stack);
  return KILN_OK;
}

/* Kahn's algorithm over the needed nodes; a node left over is on a cycle. */
static kiln_status sort_needed(konnx_ctx *c, topo *t) {
  const Onnx__GraphProto *gp = c->gp;
  size_t nn = gp->n_node;
  int32_t *indeg = kir_calloc(nn + 1, sizeof *indeg), *queue = kir_calloc(nn + 1, sizeof *queue);
  int64_t *off = kir_calloc(nn + 2, sizeof *off);
  int32_t *edges = NULL;
  kiln_status s = KILN_OK;
  if (!indeg || !queue || !off) goto oom;
  for (size_t j = 0; j < nn; j++)
    for (size_t k = 0; t->needed[j] && k < gp->node[j]->n_input; k++) {
      int32_t p = producer_of(t, gp->node[j]->input[k]);
      if (p >= 0) off[p + 1]++, indeg[j]++;
    }
  for (size_t j = 0; j < nn; j++) off[j + 1] += off[j];
  edges = kir_calloc((size_t)off[nn] + 1, sizeof *edges);
  if (!edges) goto oom;
  int64_t *fill = off; /* consumers of p go to edges[off[p] ..]; rebuilt below */
  for (size_t j = 0; j < nn; j++)
    for (size_t k = 0; t->needed[j] && k < gp->node[j]->n_input; k++) {
      int32_t p = producer_of(t, gp->node[j]->input[k]);
      if (p >= 0) edges[fill[p]++] = (int32_t)j;
    }
  for (size_t j = nn; j > 0; j--) off[j] = off[j - 1]; /* undo the fill shift */
  off[0] = 0;
  int32_t head = 0, tail = 0;
  for (size_t j = 0; j < nn; j++)
    if (t->needed[j] && indeg[j] == 0) queue[tail++] = (int32_t)j;
  while (head < tail) {
    int32_t j = queue[head++];
    t->order[t->n_order++] = j;
    for (int64_t e = off[j]; e < off[j + 1]; e++)
      if (--indeg[edges[e]] == 0) queue[tail++] = edges[e];
  }
  for (size_t j = 0; j < nn && s == KILN_OK; j++)
    if (t->needed[j] && indeg[j] > 0) {
      char lbl[2 * KONNX_ESC + 32];
      s = konnx_err(c, KILN_ERR_GRAPH, "%s is on a cycle", node_label(gp->node[j], (int32_t)j, lbl, sizeof lbl));
    }
  kir_free(indeg), kir_free(queue), kir_free(off), kir_free(edges);
  return s;
oom:
  kir_free(indeg), kir_free(queue), kir_free(off), kir_free(edges);
  return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
}

static kiln_status make_topo(konnx_ctx *c, topo *t) {
  const Onnx__GraphProto *gp = c->gp;
  t->producer = konnx_map_new(gp->n_node * 2);
  t->needed = kir_calloc(gp->n_node + 1, sizeof *t->needed);
  t->order = kir_calloc(gp->n_node + 1, sizeof *t->order);
  if (!t->producer || !t->needed || !t->order) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  for (size_t j = 0; j < gp->n_node; j++)
    for (size_t k = 0; k < gp->node[j]->n_output; k++) {
      const char *o = gp->node[j]->output[k];
      if (o && o[0] && !konnx_map_put(t->producer, o, (int32_t)j))
        return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
    }
  kiln_status s = mark_needed(c, t);
  return s == KILN_OK ? sort_needed(c, t) : s;
}

static void free_topo(topo *t) {
  konnx_map_free(t->producer);
  kir_free(t->needed);
  kir_free(t->order);
}

/* ---------------------------------------------------------------- outputs -------- */

/* Ops whose output is a constant (or, for Dropout, may be one): as graph outputs they
 * end in an identity, so the graph's sinks are never sources. */
static bool makes_constant(const char *op) {
  static const char *const ops[] = {"Constant", "Shape", "Size", "ConstantOfShape", "Dropout", NULL};
  for (int i = 0; ops[i]; i++)
    if (strcmp(op, ops[i]) == 0) return true;
  return false;
}

static bool used_by_needed(konnx_ctx *c, const topo *t, const char *name) {
  for (int32_t i = 0; i < t->n_order; i++) {
    const Onnx__NodeProto *n = c->gp->node[t->order[i]];
    for (size_t k = 0; k < n->n_input; k++)
      if (n->input[k] && strcmp(n->input[k], name) == 0) return true;
  }
  return false;
}

/* Checks the outputs and decides which producers are named "<out>/value" (see the header). */
static kiln_status plan_outputs(konnx_ctx *c, const topo *t) {
  const Onnx__GraphProto *gp = c->gp;
  char en[KONNX_ESC], nb[KONNX_NAME_BUF];
  if (gp->n_output == 0) return konnx_err(c, KILN_ERR_GRAPH, "graph has no outputs");
  c->rename_to = kir_graph_alloc(c->g, gp->n_output * sizeof *c->rename_to);
  if (!c->rename_to) return c->g->status;
  for (size_t i = 0; i < gp->n_output; i++) {
    const char *o = gp->output[i]->name;
    if (!o || !*o) return konnx_err(c, KILN_ERR_FORMAT, "graph output %zu has an empty name", i);
    kir_escape(o, en, sizeof en);
    int32_t v, p = producer_of(t, o);
    if (konnx_map_get(c->outputs, o, NULL))
      return konnx_err(c, KILN_ERR_GRAPH, "graph output '%s' is listed twice", en);
    if (!konnx_map_get(c->values, o, &v))
      return konnx_err(c, KILN_ERR_GRAPH, "graph output '%s' is not defined (no input, initializer or node output has that name)", en);
    if (!konnx_map_put(c->outputs, o, (int32_t)i)) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
    bool source = p < 0 || makes_constant(konnx_s(c->gp->node[p]->op_type));
    if (source || used_by_needed(c, t, o)) {
      const char *r = kir_graph_strdup(c->g, konnx_sub_name(c, o, "value", nb, sizeof nb));
      if (!r || !konnx_map_put(c->renamed, o, (int32_t)i) || !konnx_map_put(c->reserved, r, 0))
        return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
      c->rename_to[i] = r;
    }
  }
  return KILN_OK;
}

/* Each output ends in a node named as it: its producer, or an identity of the renamed one. */
static kiln_status finish_outputs(konnx_ctx *c, int32_t *sinks) {
  const Onnx__GraphProto *gp = c->gp;
  for (size_t i = 0; i < gp->n_output; i++) {
    const char *o = gp->output[i]->name;
    int32_t id;
    kiln_status s = konnx_value_of(c, o, &id);
    if (s != KILN_OK) return s;
    if (konnx_map_get(c->renamed, o, NULL)) {
      kir_node *x = kir_node_add(c->g, KIR_OP_IDENTITY, o, &id, 1);
      if (!x || kir_infer_node(c->g, x) != KILN_OK) return c->g->status;
      id = x->id;
    }
    if (strcmp(c->g->nodes[id]->name, o) != 0)
      return konnx_err(c, KILN_ERR_INTERNAL, "graph output '%s' ended in node '%s'", o, c->g->nodes[id]->name);
    sinks[i] = id;
  }
  return KILN_OK;
}

/* Keeps what the outputs need; the placeholders of unused inputs go too (sinks = outputs). */
static kiln_status prune(konnx_ctx *c, const int32_t *sinks, int32_t n_sinks) {
  kir_graph *g = c->g;
  bool *keep = kir_calloc((size_t)g->n_nodes + 1, sizeof *keep);
  if (!keep) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n_sinks; i++) keep[sinks[i]] = true;
  for (int32_t id = g->n_nodes - 1; id >= 0; id--)
    for (int32_t k = 0; keep[id] && k < g->nodes[id]->n_inputs; k++) keep[g->nodes[id]->inputs[k]] = true;
  for (int32_t id = 0; c->opt && c->opt->log && id < g->n_nodes; id++)
    if (!keep[id] && g->nodes[id]->op == KIR_OP_PLACEHOLDER) {
      char en[KONNX_ESC];
      fprintf(c->opt->log, "onnx: graph input '%s' is not used by any output; not imported\n",
              kir_escape(g->nodes[id]->name, en, sizeof en));
    }
  kiln_status s = kir_graph_compact(g, keep);
  kir_free(keep);
  return s;
}

/* ---------------------------------------------------------------- nodes ---------- */

static kiln_status check_subgraphs(konnx_ctx *c, const Onnx__NodeProto *n) {
  char en[KONNX_ESC];
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    if (a->g || a->n_graphs || (a->has_type && (a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH ||
                                                a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS)))
      return konnx_err(c, KILN_ERR_UNSUPPORTED, "attribute '%s' holds a subgraph; control flow (If, Loop, Scan) is not supported",
                       kir_escape(konnx_s(a->name), en, sizeof en));
  }
  return KILN_OK;
}

static kiln_status import_node(konnx_ctx *c, const Onnx__NodeProto *n) {
  char ed[KONNX_ESC], eo[KONNX_ESC];
  const char *op = konnx_s(n->op_type);
  if (!default_domain(n->domain))
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "domain '%s' is not supported (only the default ONNX domain)",
                     kir_escape(n->domain, ed, sizeof ed));
  kiln_status s = check_subgraphs(c, n);
  if (s != KILN_OK) return s;
  konnx_op_fn fn = konnx_find_op(op);
  if (!fn)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "operator %s is not supported", kir_escape(op, eo, sizeof eo));
  if ((s = fn(c, n)) != KILN_OK) return s;
  for (size_t k = 0; k < n->n_output; k++) {
    int32_t v;
    if (konnx_has_output(n, (int32_t)k) && konnx_map_get(c->values, n->output[k], &v) && v < 0)
      return konnx_err(c, KILN_ERR_UNSUPPORTED, "output %zu ('%s') is not supported",
                       k, kir_escape(n->output[k], ed, sizeof ed));
  }
  return KILN_OK;
}

/* Runs import_node, prefixing its message with the node's name and op_type. */
static kiln_status import_nodes(konnx_ctx *c, const topo *t) {
  for (int32_t i = 0; i < t->n_order; i++) {
    const Onnx__NodeProto *n = c->gp->node[t->order[i]];
    c->node = n;
    c->node_index = t->order[i];
    kiln_status s = import_node(c, n);
    if (s != KILN_OK) {
      char lbl[2 * KONNX_ESC + 32], msg[sizeof c->g->error];
      snprintf(msg, sizeof msg, "%s", c->g->error);
      return kir_seterr(c->g, s, "%s: %s", node_label(n, c->node_index, lbl, sizeof lbl), msg);
    }
  }
  c->node = NULL;
  return KILN_OK;
}

/* ---------------------------------------------------------------- driver --------- */

kiln_status konnx_import_inputs(konnx_ctx *c); /* konnx_inputs.c */

static kiln_status import_graph(konnx_ctx *c, const Onnx__ModelProto *m) {
  topo t = {0};
  kiln_status s = check_opset(c, m);
  if (s != KILN_OK) return s;
  c->gp = m->graph;
  size_t nv = c->gp->n_initializer + c->gp->n_input + c->gp->n_node * 2 + 16;
  c->values = konnx_map_new(nv);
  c->reserved = konnx_map_new(nv);
  c->renamed = konnx_map_new(c->gp->n_output);
  c->outputs = konnx_map_new(c->gp->n_output);
  if (!c->values || !c->reserved || !c->renamed || !c->outputs)
    return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  if ((s = build_tables(c)) == KILN_OK && (s = make_topo(c, &t)) == KILN_OK &&
      (s = plan_outputs(c, &t)) == KILN_OK && (s = konnx_import_inputs(c)) == KILN_OK)
    s = import_nodes(c, &t);
  int32_t *sinks = s == KILN_OK ? kir_calloc(c->gp->n_output, sizeof *sinks) : NULL;
  if (s == KILN_OK && !sinks) s = konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  if (s == KILN_OK && (s = finish_outputs(c, sinks)) == KILN_OK)
    s = prune(c, sinks, (int32_t)c->gp->n_output);
  if (s == KILN_OK) s = kir_verify(c->g);
  if (s == KILN_OK && c->opt && c->opt->log)
    fprintf(c->opt->log, "onnx: opset %lld, %d of %zu nodes needed, %d Kiln nodes\n", (long long)c->opset,
            t.n_order, c->gp->n_node, c->g->n_nodes);
  kir_free(sinks);
  free_topo(&t);
  return s;
}

static void free_ctx(konnx_ctx *c) {
  konnx_map_free(c->values);
  konnx_map_free(c->reserved);
  konnx_map_free(c->renamed);
  konnx_map_free(c->outputs);
}

kiln_status konnx_import(kir_graph *g, const uint8_t *buf, size_t len, const konnx_options *opt) {
  char msg[512];
  static const konnx_options none = {0};
  if (!g) return KILN_ERR_ARGUMENT;
  if (g->n_nodes != 0) return fail(g, KILN_ERR_ARGUMENT, "konnx_import: the graph is not empty");
  if (!buf && len) return fail(g, KILN_ERR_ARGUMENT, "konnx_import: NULL buffer");
  if (!opt) opt = &none;
  konnx_unpacker u;
  ProtobufCMessage *m;
  kiln_status s = konnx_unpack(&u, buf ? buf : (const uint8_t *)"", len, &onnx__model_proto__descriptor,
                               &m, msg, sizeof msg);
  if (s != KILN_OK) return kir_seterr(g, s, "onnx model: %s", msg);
  konnx_ctx c = {.opt = opt, .ext = {opt->allow_external_data, opt->model_dir}};
  c.g = kir_graph_create();
  if (!c.g) s = fail(g, KILN_ERR_NOMEM, "out of memory");
  else if ((s = import_graph(&c, (const Onnx__ModelProto *)m)) == KILN_OK) {
    kir_graph_swap_in(g, c.g);
    kir_clearerr(g);
    c.g = NULL;
  } else {
    fail(g, s, c.g->error);
  }
  kir_graph_destroy(c.g);
  free_ctx(&c);
  konnx_unpack_free(&u, m);
  return s;
}

kiln_status konnx_import_file(kir_graph *g, const char *path, const konnx_options *opt) {
  char msg[512], dir[4096];
  if (!g) return KILN_ERR_ARGUMENT;
  if (!path) return fail(g, KILN_ERR_ARGUMENT, "konnx_import_file: NULL path");
  uint8_t *buf;
  size_t len;
  kiln_status s = konnx_read_file(path, &buf, &len, msg, sizeof msg);
  if (s != KILN_OK) return fail(g, s, msg);
  konnx_options o = opt ? *opt : (konnx_options){0};
  if (o.allow_external_data && !o.model_dir) {
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(dir, sizeof dir, "/");
    o.model_dir = dir;
  }
  s = konnx_import(g, buf, len, &o);
  kir_free(buf);
  if (s != KILN_OK && g->error[0]) {
    char ep[KONNX_ESC];
    snprintf(msg, sizeof msg, "%s", g->error);
    kir_seterr(g, s, "%s: %s", kir_escape(path, ep, sizeof ep), msg);
  }
  return s;
}
