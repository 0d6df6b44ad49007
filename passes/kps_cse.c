/* kps_cse.c — common subexpression elimination: two nodes with the same op, the same
 * inputs (an unordered pair for commutative binary ops), exactly equal attributes
 * (floats and constant tensors compared bit for bit, so -0.0 != +0.0), the same type and
 * the same requested and assigned device compute the same value; the later one's uses
 * go to the earlier one and the later one is removed. Depends on ir/ only.
 *
 * Never merged: placeholders (different feeds), stateful ops (variable, assign), control
 * and no-output ops (group, no_op). Seeded random sources with equal attributes are
 * equal values (kir_random_fill is deterministic) and are merged. A root keeps its name:
 * a root equal to an earlier node becomes identity(earlier) and its users read the
 * earlier node; a root that is already an identity is left alone, so a second run
 * changes nothing. One forward sweep in id order (inputs resolved before hashing, so
 * whole duplicate subtrees merge bottom-up) over an open-addressing table: linear time
 * in nodes plus attribute bytes. */
#include "kps.h"

#include <string.h>

/* A table slot keeps part of its node's hash, so a probe reads only the table (one
 * cache miss) and touches another node only when the tags agree: with a per-node hash
 * array, every probed slot cost a second miss on big graphs. */
typedef struct cse_slot {
  int32_t id;
  uint32_t tag; /* low 32 bits of the node's hash */
} cse_slot;

typedef struct cse {
  kir_graph *g;
  bool *root;     /* per node id */
  bool *drop;     /* merged into an earlier node */
  int32_t *repl;  /* per node id: the node that now stands for it */
  cse_slot *slot; /* open-addressing table, id -1 = empty */
  uint32_t mask;
  int64_t merged, roots;
  bool rewired;
} cse;

/* ---------------------------------------------------------------- hashing ------- */

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x100000001b3ULL;
  return h ^ (h >> 29);
}

static uint64_t mix_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  return mix(h, n);
}

static uint64_t mix_str(uint64_t h, const char *s) { return mix_bytes(h, s, strlen(s)); }

static int64_t tensor_bytes(const kir_tensor *t) {
  int64_t n = t ? kir_type_nbytes(&t->type) : -1;
  return n > 0 && !t->data ? -1 : n;
}

static uint64_t mix_type(uint64_t h, const kir_type *t) {
  h = mix(h, (uint64_t)t->dtype);
  h = mix(h, (uint64_t)t->rank);
  for (int32_t i = 0; i < t->rank && i < KILN_MAX_RANK; i++) h = mix(h, (uint64_t)t->dims[i]);
  return h;
}

static uint64_t mix_attr(uint64_t h, const kir_attr *a) {
  h = mix(mix_str(h, a->name), (uint64_t)a->kind);
  switch (a->kind) {
  case KIR_ATTR_INT: return mix(h, (uint64_t)a->u.i);
  case KIR_ATTR_FLOAT: return mix_bytes(h, &a->u.f, sizeof a->u.f);
  case KIR_ATTR_INTS: return mix_bytes(h, a->u.ints.v, (size_t)a->u.ints.n * sizeof(int64_t));
  case KIR_ATTR_FLOATS: return mix_bytes(h, a->u.floats.v, (size_t)a->u.floats.n * sizeof(double));
  case KIR_ATTR_STRING: return mix_str(h, a->u.s);
  case KIR_ATTR_STRINGS:
    for (int32_t i = 0; i < a->u.strings.n; i++) h = mix_str(h, a->u.strings.v[i]);
    return mix(h, (uint64_t)a->u.strings.n);
  case KIR_ATTR_TENSOR: {
    int64_t n = tensor_bytes(a->u.t);
    if (n < 0) return mix(h, 1);
    return mix_bytes(mix_type(h, &a->u.t->type), a->u.t->data, (size_t)n);
  }
  }
  return h;
}

static bool commutative_pair(const kir_node *n) {
  return n->n_inputs == 2 && kir_op_has(n->op, KIR_F_COMMUTATIVE);
}

static uint64_t node_hash(const kir_node *n) {
  uint64_t h = mix(0xcbf29ce484222325ULL, (uint64_t)n->op);
  h = mix(h, (uint64_t)n->n_inputs);
  if (commutative_pair(n)) {
    int32_t a = n->inputs[0], b = n->inputs[1];
    h = mix(mix(h, (uint64_t)(a < b ? a : b)), (uint64_t)(a < b ? b : a));
  } else {
    for (int32_t k = 0; k < n->n_inputs; k++) h = mix(h, (uint64_t)n->inputs[k]);
  }
  h = mix_str(mix_str(h, n->device), n->assigned_device);
  h = mix_type(h, &n->type);
  for (int32_t i = 0; i < n->n_attrs; i++) h = mix_attr(h, &n->attrs[i]);
  return h;
}

/* ---------------------------------------------------------------- equality ------ */

static bool same_bytes(const void *a, const void *b, size_t n) {
  return n == 0 || memcmp(a, b, n) == 0;
}

static bool tensor_equal(const kir_tensor *a, const kir_tensor *b) {
  int64_t na = tensor_bytes(a), nb = tensor_bytes(b);
  if (na < 0 || nb < 0 || !kir_type_equal(&a->type, &b->type) || na != nb) return false;
  return same_bytes(a->data, b->data, (size_t)na);
}

static bool strings_equal(const kir_attr *a, const kir_attr *b) {
  if (a->u.strings.n != b->u.strings.n) return false;
  for (int32_t i = 0; i < a->u.strings.n; i++)
    if (strcmp(a->u.strings.v[i], b->u.strings.v[i]) != 0) return false;
  return true;
}

static bool attr_equal(const kir_attr *a, const kir_attr *b) {
  if (strcmp(a->name, b->name) != 0 || a->kind != b->kind) return false;
  switch (a->kind) {
  case KIR_ATTR_INT: return a->u.i == b->u.i;
  case KIR_ATTR_FLOAT: return same_bytes(&a->u.f, &b->u.f, sizeof a->u.f);
  case KIR_ATTR_INTS:
    return a->u.ints.n == b->u.ints.n &&
           same_bytes(a->u.ints.v, b->u.ints.v, (size_t)a->u.ints.n * sizeof(int64_t));
  case KIR_ATTR_FLOATS:
    return a->u.floats.n == b->u.floats.n &&
           same_bytes(a->u.floats.v, b->u.floats.v, (size_t)a->u.floats.n * sizeof(double));
  case KIR_ATTR_STRING: return strcmp(a->u.s, b->u.s) == 0;
  case KIR_ATTR_STRINGS: return strings_equal(a, b);
  case KIR_ATTR_TENSOR: return tensor_equal(a->u.t, b->u.t);
  }
  return false;
}

static bool inputs_equal(const kir_node *a, const kir_node *b) {
  if (a->n_inputs != b->n_inputs) return false;
  if (commutative_pair(a) && a->inputs[0] == b->inputs[1] && a->inputs[1] == b->inputs[0])
    return true;
  for (int32_t k = 0; k < a->n_inputs; k++)
    if (a->inputs[k] != b->inputs[k]) return false;
  return true;
}

static bool nodes_equal(const kir_node *a, const kir_node *b) {
  if (a->op != b->op || !inputs_equal(a, b) || a->n_attrs != b->n_attrs) return false;
  if (!kir_type_equal(&a->type, &b->type)) return false;
  if (strcmp(a->device, b->device) != 0 || strcmp(a->assigned_device, b->assigned_device) != 0)
    return false;
  for (int32_t i = 0; i < a->n_attrs; i++)
    if (!attr_equal(&a->attrs[i], &b->attrs[i])) return false;
  return true;
}

/* ---------------------------------------------------------------- the sweep ----- */

static bool eligible(const kir_node *n) {
  if (n->op == KIR_OP_PLACEHOLDER) return false;
  return !kir_op_has(n->op, KIR_F_STATEFUL | KIR_F_CONTROL | KIR_F_NO_OUTPUT);
}

static kiln_status mark_roots(kir_graph *g, const kps_context *ctx, bool *root) {
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    const char *name = ctx->roots[r];
    int32_t id = kps_root_id(g, ctx, r);
    if (id < 0) {
      char esc[272];
      return kir_seterr(g, KILN_ERR_ARGUMENT, "cse: root '%s' is not a node of the graph",
                        kir_escape(name ? name : "(null)", esc, sizeof esc));
    }
    root[id] = true;
  }
  return KILN_OK;
}

/* The earlier node equal to n, or -1 after inserting n. */
static int32_t lookup_or_insert(cse *c, const kir_node *n) {
  uint64_t h = node_hash(n);
  uint32_t s = (uint32_t)(h ^ (h >> 32)) & c->mask, tag = (uint32_t)h;
  for (; c->slot[s].id >= 0; s = (s + 1) & c->mask) {
    int32_t e = c->slot[s].id;
    if (c->slot[s].tag == tag && nodes_equal(c->g->nodes[e], n)) return e;
  }
  c->slot[s] = (cse_slot){n->id, tag};
  return -1;
}

/* A root keeps its name as identity(e); a source root has no input array yet. */
static kiln_status root_to_identity(kir_graph *g, kir_node *n, int32_t e) {
  int32_t *in = n->inputs;
  if (n->n_inputs < 1) {
    in = kir_graph_alloc(g, sizeof *in);
    if (!in) return kir_seterr(g, KILN_ERR_NOMEM, "cse: out of memory");
  }
  in[0] = e;
  n->op = KIR_OP_IDENTITY;
  n->inputs = in;
  n->n_inputs = 1;
  n->n_attrs = 0;
  n->attrs = NULL;
  return KILN_OK;
}

static void resolve_inputs(cse *c, kir_node *n) {
  for (int32_t k = 0; k < n->n_inputs; k++) {
    int32_t r = c->repl[n->inputs[k]];
    if (r == n->inputs[k]) continue;
    n->inputs[k] = r;
    c->rewired = true;
  }
}

static kiln_status visit(cse *c, kir_node *n) {
  resolve_inputs(c, n);
  if (!eligible(n) || (c->root[n->id] && n->op == KIR_OP_IDENTITY)) return KILN_OK;
  int32_t e = lookup_or_insert(c, n);
  if (e < 0) return KILN_OK;
  if (c->root[n->id]) {
    kiln_status st = root_to_identity(c->g, n, e);
    if (st != KILN_OK) return st;
    c->roots++;
  } else {
    c->drop[n->id] = true;
  }
  c->repl[n->id] = e;
  c->merged++;
  return KILN_OK;
}

static kiln_status run_sweep(cse *c) {
  kir_graph *g = c->g;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kiln_status st = visit(c, g->nodes[i]);
    if (st != KILN_OK) return st;
  }
  if (c->merged == c->roots) return KILN_OK;
  for (int32_t i = 0; i < g->n_nodes; i++) c->drop[i] = !c->drop[i]; /* now: keep */
  return kir_graph_compact(g, c->drop);
}

static kiln_status cse_alloc(cse *c, int32_t n) {
  uint32_t cap = 16;
  while (cap < 2u * (uint32_t)n) cap *= 2;
  c->mask = cap - 1;
  c->root = kir_calloc((size_t)n, sizeof *c->root);
  c->drop = kir_calloc((size_t)n, sizeof *c->drop);
  c->repl = kir_malloc((size_t)n * sizeof *c->repl);
  c->slot = kir_malloc((size_t)cap * sizeof *c->slot);
  if (!c->root || !c->drop || !c->repl || !c->slot)
    return kir_seterr(c->g, KILN_ERR_NOMEM, "cse: out of memory for %d nodes", (int)n);
  for (int32_t i = 0; i < n; i++) c->repl[i] = i;
  memset(c->slot, 0xff, (size_t)cap * sizeof *c->slot);
  return KILN_OK;
}

static void cse_free(cse *c) {
  kir_free(c->root);
  kir_free(c->drop);
  kir_free(c->repl);
  kir_free(c->slot);
}

kiln_status kps_cse(kir_graph *g, const kps_context *ctx, kps_result *res) {
  cse c;
  memset(&c, 0, sizeof c);
  c.g = g;
  res->n_stats = 2;
  res->stats[0] = (kps_stat){"nodes merged", 0};
  res->stats[1] = (kps_stat){"roots kept as identity", 0};
  if (g->n_nodes == 0) return KILN_OK;
  kiln_status st = cse_alloc(&c, g->n_nodes);
  if (st == KILN_OK) st = mark_roots(g, ctx, c.root);
  if (st == KILN_OK) st = run_sweep(&c);
  cse_free(&c);
  res->stats[0].value = c.merged;
  res->stats[1].value = c.roots;
  res->changed = c.merged > 0 || c.rewired;
  return st;
}
