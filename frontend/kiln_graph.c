/* kiln_graph.c — kiln.h tensors, graphs, scopes, save/load, and the transactional
 * node builder (fe_prepare / fe_add / fe_finish) that every op in kiln_ops.c uses.
 * Uses ir/ and kps_device_normalize from passes/; nothing of codegen/ or runtime/. */
#include <stdio.h>
#include <string.h>

#include "../passes/kps.h"
#include "kiln_internal.h"

/* ---------------------------------------------------------------- tensors ------- */

static bool fe_tensor_type(kiln_dtype dtype, const int64_t *dims, int rank, kir_type *t) {
  if (kiln_dtype_size(dtype) == 0 || rank < 0 || rank > KILN_MAX_RANK) return false;
  if (rank > 0 && !dims) return false;
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0) return false;
    t->dims[i] = dims[i];
  }
  return kir_type_nbytes(t) >= 0;
}

kiln_tensor *kiln_tensor_create(kiln_dtype dtype, const int64_t *dims, int rank,
                                const void *data) {
  kir_type t;
  if (!fe_tensor_type(dtype, dims, rank, &t)) return NULL;
  kir_tensor *x = kir_tensor_new(&t);
  if (!x) return NULL;
  int64_t nbytes = kir_type_nbytes(&t);
  if (data && nbytes > 0) memcpy(x->data, data, (size_t)nbytes);
  return fe_tensor_handle(x);
}

kiln_tensor *kiln_tensor_scalar_f32(float v) { return kiln_tensor_create(KILN_F32, NULL, 0, &v); }
kiln_tensor *kiln_tensor_scalar_i32(int32_t v) { return kiln_tensor_create(KILN_I32, NULL, 0, &v); }
void kiln_tensor_destroy(kiln_tensor *t) { kir_tensor_free(fe_tensor(t)); }

kiln_dtype kiln_tensor_dtype(const kiln_tensor *t) {
  return t ? fe_tensor(t)->type.dtype : KILN_DTYPE_INVALID;
}

int kiln_tensor_rank(const kiln_tensor *t) { return t ? fe_tensor(t)->type.rank : 0; }

int64_t kiln_tensor_dim(const kiln_tensor *t, int i) {
  if (!t || i < 0 || i >= fe_tensor(t)->type.rank) return -1;
  return fe_tensor(t)->type.dims[i];
}

int64_t kiln_tensor_numel(const kiln_tensor *t) {
  return t ? kir_type_numel(&fe_tensor(t)->type) : 0;
}

size_t kiln_tensor_nbytes(const kiln_tensor *t) {
  int64_t n = t ? kir_type_nbytes(&fe_tensor(t)->type) : 0;
  return n > 0 ? (size_t)n : 0;
}

void *kiln_tensor_data(kiln_tensor *t) { return t ? fe_tensor(t)->data : NULL; }
const void *kiln_tensor_data_const(const kiln_tensor *t) { return t ? fe_tensor(t)->data : NULL; }

/* ---------------------------------------------------------------- graphs -------- */

kiln_graph *kiln_graph_create(void) {
  kiln_graph *g = kir_calloc(1, sizeof *g);
  if (!g) return NULL;
  g->ir = kir_graph_create();
  if (!g->ir) {
    kir_free(g);
    return NULL;
  }
  return g;
}

void kiln_graph_destroy(kiln_graph *g) {
  if (!g) return;
  for (int32_t i = 0; i < g->n_devices; i++) kir_free(g->devices[i]);
  kir_free(g->devices);
  kir_free(g->scope_len);
  kir_free(g->prefix);
  kir_graph_destroy(g->ir);
  kir_free(g);
}

const char *kiln_graph_error(const kiln_graph *g) { return g ? g->ir->error : "graph is NULL"; }
kiln_status kiln_graph_status(const kiln_graph *g) { return g ? g->ir->status : KILN_ERR_ARGUMENT; }
int kiln_graph_num_nodes(const kiln_graph *g) { return g ? g->ir->n_nodes : 0; }

kiln_node *kiln_graph_node(const kiln_graph *g, int i) {
  if (!g || i < 0 || i >= g->ir->n_nodes) return NULL;
  return fe_handle(g->ir->nodes[i]);
}

kiln_node *kiln_graph_find(const kiln_graph *g, const char *name) {
  if (!g || !name) return NULL;
  return fe_handle(kir_graph_find(g->ir, name));
}

kiln_status kiln_graph_save(kiln_graph *g, const char *path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!path) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "save: path is NULL");
  kiln_status st = kir_graph_save(g->ir, path);
  if (st == KILN_OK) kir_clearerr(g->ir);
  return st;
}

kiln_status kiln_graph_load(kiln_graph *g, const char *path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!path) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "load: path is NULL");
  if (g->ir->n_nodes > 0)
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "load: the graph is not empty (%d nodes)",
                      (int)g->ir->n_nodes);
  kiln_status st = kir_graph_load(g->ir, path);
  if (st == KILN_OK) kir_clearerr(g->ir);
  return st;
}

void kiln_graph_print(const kiln_graph *g, FILE *out) {
  if (g && out) kir_graph_print(g->ir, out);
}

/* ---------------------------------------------------------------- nodes --------- */

const char *kiln_node_name(const kiln_node *n) { return n ? fe_node(n)->name : ""; }

const char *kiln_node_op(const kiln_node *n) {
  const kir_op_info *info = n ? kir_op_get(fe_node(n)->op) : NULL;
  return info ? info->name : "";
}

const char *kiln_node_device(const kiln_node *n) {
  return n && fe_node(n)->device ? fe_node(n)->device : "";
}

kiln_dtype kiln_node_dtype(const kiln_node *n) {
  return n ? fe_node(n)->type.dtype : KILN_DTYPE_INVALID;
}

int kiln_node_rank(const kiln_node *n) { return n ? fe_node(n)->type.rank : 0; }

int64_t kiln_node_dim(const kiln_node *n, int i) {
  if (!n || i < 0 || i >= fe_node(n)->type.rank) return -1;
  return fe_node(n)->type.dims[i];
}

/* ---------------------------------------------------------------- scopes -------- */

static const char *fe_prefix(const kiln_graph *g) { return g->prefix ? g->prefix : ""; }

static kiln_status fe_grow_scopes(kiln_graph *g) {
  if (g->n_scopes < g->cap_scopes) return KILN_OK;
  int32_t cap = g->cap_scopes ? 2 * g->cap_scopes : 4;
  size_t *p = kir_realloc(g->scope_len, (size_t)g->cap_scopes * sizeof *p, (size_t)cap * sizeof *p);
  if (!p) return kir_seterr(g->ir, KILN_ERR_NOMEM, "name scope: out of memory");
  g->scope_len = p;
  g->cap_scopes = cap;
  return KILN_OK;
}

kiln_status kiln_scope_push_name(kiln_graph *g, const char *scope) {
  char esc[FE_ESC];
  if (!g) return KILN_ERR_ARGUMENT;
  if (!scope || !scope[0])
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "name scope: the scope name is %s",
                      scope ? "empty" : "NULL");
  size_t len = strlen(scope);
  if (scope[0] == '/' || scope[len - 1] == '/')
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "name scope '%s': starts or ends with '/'",
                      kir_escape(scope, esc, sizeof esc));
  if (len > KIR_MAX_NAME || g->prefix_len + len + 1 > KIR_MAX_NAME)
    return kir_seterr(g->ir, KILN_ERR_LIMIT, "name scope '%s': scoped names would exceed %d bytes",
                      kir_escape(scope, esc, sizeof esc), KIR_MAX_NAME);
  if (fe_grow_scopes(g) != KILN_OK) return KILN_ERR_NOMEM;
  char *p = kir_realloc(g->prefix, g->prefix ? g->prefix_len + 1 : 0, g->prefix_len + len + 2);
  if (!p) return kir_seterr(g->ir, KILN_ERR_NOMEM, "name scope: out of memory");
  if (!g->prefix) p[0] = '\0';
  memcpy(p + g->prefix_len, scope, len);
  p[g->prefix_len + len] = '/';
  p[g->prefix_len + len + 1] = '\0';
  g->prefix = p;
  g->scope_len[g->n_scopes++] = g->prefix_len;
  g->prefix_len += len + 1;
  kir_clearerr(g->ir);
  return KILN_OK;
}

kiln_status kiln_scope_pop_name(kiln_graph *g) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (g->n_scopes == 0)
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "name scope: pop with no scope open");
  g->prefix_len = g->scope_len[--g->n_scopes];
  g->prefix[g->prefix_len] = '\0';
  kir_clearerr(g->ir);
  return KILN_OK;
}

kiln_status kiln_scope_push_device(kiln_graph *g, const char *device) {
  char esc[FE_ESC], norm[64];
  if (!g) return KILN_ERR_ARGUMENT;
  if (!device) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "device scope: device is NULL");
  if (!kps_device_normalize(device, norm, sizeof norm))
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "device scope '%s': not a device name",
                      kir_escape(device, esc, sizeof esc));
  if (g->n_devices == g->cap_devices) {
    int32_t cap = g->cap_devices ? 2 * g->cap_devices : 4;
    char **p = kir_realloc(g->devices, (size_t)g->cap_devices * sizeof *p, (size_t)cap * sizeof *p);
    if (!p) return kir_seterr(g->ir, KILN_ERR_NOMEM, "device scope: out of memory");
    g->devices = p;
    g->cap_devices = cap;
  }
  char *d = kir_strdup(norm);
  if (!d) return kir_seterr(g->ir, KILN_ERR_NOMEM, "device scope: out of memory");
  g->devices[g->n_devices++] = d;
  kir_clearerr(g->ir);
  return KILN_OK;
}

kiln_status kiln_scope_pop_device(kiln_graph *g) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (g->n_devices == 0)
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "device scope: pop with no scope open");
  kir_free(g->devices[--g->n_devices]);
  kir_clearerr(g->ir);
  return KILN_OK;
}

/* ---------------------------------------------------------------- builder ------- */

bool fe_owns(const kiln_graph *g, const kir_node *n) {
  return n && n->id >= 0 && n->id < g->ir->n_nodes && g->ir->nodes[n->id] == n;
}

bool fe_name_taken(const kiln_graph *g, const char *name) {
  return kir_graph_find(g->ir, name) != NULL;
}

static const char *fe_op_name(kir_op op) {
  const kir_op_info *info = kir_op_get(op);
  return info ? info->name : "?";
}

static kiln_status fe_name_too_long(fe_op *b, const char *shown) {
  char esc[FE_ESC];
  return kir_seterr(b->g->ir, KILN_ERR_LIMIT, "%s '%s': name is longer than %d bytes",
                    fe_op_name(b->op), kir_escape(shown, esc, sizeof esc), KIR_MAX_NAME);
}

/* Writes base + "_k" into b->name (base is b->name's first len bytes). */
static bool fe_suffix(fe_op *b, size_t len, long k) {
  char suffix[24];
  int m = snprintf(suffix, sizeof suffix, "_%ld", k);
  if (len + (size_t)m > KIR_MAX_NAME) return false;
  memcpy(b->name + len, suffix, (size_t)m + 1);
  return true;
}

/* b->name holds the wanted name; if taken, appends "_k" for a free k, TF-style
 * ("add", "add_1", "add_2"...). Auto names are taken in a run from _1, so k is found by
 * doubling then bisecting (O(log k) lookups, not O(k)); with holes it still returns a
 * free name, chosen deterministically from the graph's names. */
static kiln_status fe_make_unique(fe_op *b) {
  if (!fe_name_taken(b->g, b->name)) return KILN_OK;
  size_t len = strlen(b->name);
  long lo = 0, hi = 1; /* lo: taken (0 = the bare name), hi: to probe */
  for (;;) {
    if (!fe_suffix(b, len, hi)) return fe_name_too_long(b, b->name);
    if (!fe_name_taken(b->g, b->name)) break;
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) { /* invariant: lo taken, hi free */
    long mid = lo + (hi - lo) / 2;
    fe_suffix(b, len, mid);
    if (fe_name_taken(b->g, b->name)) lo = mid;
    else hi = mid;
  }
  fe_suffix(b, len, hi);
  return KILN_OK;
}

static kiln_status fe_check_taken(fe_op *b) {
  char esc[FE_ESC];
  const kir_node *old = kir_graph_find(b->g->ir, b->name);
  if (!old) return KILN_OK;
  return kir_seterr(b->g->ir, KILN_ERR_GRAPH, "name '%s' is already used (node %d, %s)",
                    kir_escape(b->name, esc, sizeof esc), (int)old->id, fe_op_name(old->op));
}

kiln_status fe_prepare_raw(fe_op *b, kiln_graph *g, kir_op op, const char *base,
                           bool explicit_name, bool scoped, kiln_node **out) {
  b->g = g;
  b->op = op;
  b->out = out;
  b->name[0] = '\0';
  memset(&b->stage, 0, sizeof b->stage);
  b->stage.id = -1;
  b->stage.op = op;
  b->stage.name = b->name;
  b->stage.device = b->stage.assigned_device = b->stage.placement_reason = "";
  b->n = &b->stage;
  b->inputs = NULL;
  b->n_inputs = 0;
  if (!g) return KILN_ERR_ARGUMENT;
  b->first = g->ir->n_nodes;
  if (!out) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "%s: out is NULL", fe_op_name(op));
  *out = NULL;
  if (!base[0])
    return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "%s: the name is empty", fe_op_name(op));
  const char *pre = scoped ? fe_prefix(g) : "";
  size_t pl = strlen(pre), bl = strlen(base);
  if (bl > KIR_MAX_NAME || pl + bl > KIR_MAX_NAME) return fe_name_too_long(b, base);
  memcpy(b->name, pre, pl);
  memcpy(b->name + pl, base, bl + 1);
  return explicit_name ? fe_check_taken(b) : fe_make_unique(b);
}

kiln_status fe_prepare(fe_op *b, kiln_graph *g, kir_op op, const char *name, kiln_node **out) {
  return fe_prepare_raw(b, g, op, name ? name : fe_op_name(op), name != NULL, true, out);
}

static kiln_status fe_check_input(fe_op *b, const kir_node *in, int32_t i) {
  char esc[FE_ESC], esc2[FE_ESC];
  kir_graph *ir = b->g->ir;
  const char *opn = fe_op_name(b->op), *name = kir_escape(b->name, esc, sizeof esc);
  if (!in) return kir_seterr(ir, KILN_ERR_ARGUMENT, "%s '%s': input %d is NULL", opn, name, (int)i);
  if (!fe_owns(b->g, in))
    return kir_seterr(ir, KILN_ERR_ARGUMENT, "%s '%s': input %d belongs to another graph",
                      opn, name, (int)i);
  if (b->op != KIR_OP_GROUP && in->type.dtype == KILN_DTYPE_INVALID)
    return kir_seterr(ir, KILN_ERR_GRAPH, "%s '%s': input %d '%s' (%s) has no output", opn,
                      name, (int)i, kir_escape(in->name, esc2, sizeof esc2), fe_op_name(in->op));
  return KILN_OK;
}

kiln_status fe_add(fe_op *b, kiln_node *const *inputs, int32_t n_inputs) {
  kir_graph *ir = b->g->ir;
  if (n_inputs < 0 || (n_inputs > 0 && !inputs))
    return kir_seterr(ir, KILN_ERR_ARGUMENT, "%s: the input list is NULL or negative", b->name);
  if (n_inputs > KIR_MAX_INPUTS)
    return kir_seterr(ir, KILN_ERR_LIMIT, "%s: %d inputs, more than %d", b->name,
                      (int)n_inputs, KIR_MAX_INPUTS);
  for (int32_t i = 0; i < n_inputs; i++) {
    kiln_status st = fe_check_input(b, fe_node(inputs[i]), i);
    if (st != KILN_OK) return st;
  }
  b->inputs = inputs;
  b->n_inputs = n_inputs;
  return KILN_OK;
}

/* Everything that can run out of memory happens before kir_node_add, which itself
 * changes nothing unless it succeeds; after it only pointer moves remain. */
static kiln_status fe_append(fe_op *b) {
  kiln_graph *g = b->g;
  const char *dev = NULL;
  if (g->n_devices > 0 && !(dev = kir_graph_strdup(g->ir, g->devices[g->n_devices - 1])))
    return g->ir->status;
  int32_t local[16], *ids = local;
  if (b->n_inputs > 16 && !(ids = kir_malloc((size_t)b->n_inputs * sizeof *ids)))
    return kir_seterr(g->ir, KILN_ERR_NOMEM, "%s: out of memory", b->name);
  for (int32_t i = 0; i < b->n_inputs; i++) ids[i] = fe_node(b->inputs[i])->id;
  kir_node *n = kir_node_add(g->ir, b->op, b->name, ids, b->n_inputs);
  if (ids != local) kir_free(ids);
  if (!n) return g->ir->status != KILN_OK ? g->ir->status : KILN_ERR_INTERNAL;
  n->attrs = b->stage.attrs;
  n->n_attrs = b->stage.n_attrs;
  if (dev) n->device = dev;
  b->n = n;
  return KILN_OK;
}

kiln_status fe_finish(fe_op *b, kiln_status st) {
  if (st != KILN_OK) return st; /* staged attributes are arena bytes only */
  st = fe_append(b);
  if (st != KILN_OK) {
    fe_rollback(b->g, b->first); /* earlier nodes of a multi-node call */
    return st;
  }
  st = kir_infer_node(b->g->ir, b->n);
  if (st == KILN_OK) {
    kir_clearerr(b->g->ir);
    *b->out = fe_handle(b->n);
    return KILN_OK;
  }
  if (b->g->ir->status == KILN_OK)
    kir_seterr(b->g->ir, st, "%s: failed (%s)", b->name, kiln_status_name(st));
  fe_rollback(b->g, b->first);
  return st;
}

void fe_rollback(kiln_graph *g, int32_t first) {
  if (first < 0) return;
  while (g->ir->n_nodes > first) kir_graph_pop_node(g->ir); /* allocates nothing */
}
