/* kir_interp.c — the reference interpreter's run loop (kir_interp_run) and session state
 * (kir_state): feeds, fetches, targets, variables and assign, in node order, freeing each
 * value after its last use. The kernels themselves are in kir_kernels.c (kir_eval_node).
 * Depends on libc and the rest of ir/ only.
 *
 * State semantics within one run (TF1-like, kept simple): nodes run in id order, which is
 * topological. A variable node reads its value from the state when it runs; an assign
 * stores into the state when it runs. So a read sees every assign with a smaller id that
 * ran before it in this run, and none with a larger id. Reading a variable does not run
 * its initializer (input 0 of variable), and assign does not read its variable (input 0
 * of assign); they only name it. Fed nodes are not evaluated and their inputs are not
 * needed on their account. When a run fails, assigns that already ran stay applied. An
 * unfed placeholder with a `default` attribute takes that value. */
#include <string.h>

#include "kir.h"
#include "kir_internal.h"

/* ---------------------------------------------------------------- state --------- */

typedef struct state_entry {
  char *name;
  kir_tensor *value;
} state_entry;

struct kir_state {
  int32_t n, cap;
  state_entry *e;
};

kir_state *kir_state_create(void) { return kir_calloc(1, sizeof(kir_state)); }

void kir_state_destroy(kir_state *s) {
  if (!s) return;
  for (int32_t i = 0; i < s->n; i++) {
    kir_free(s->e[i].name);
    kir_tensor_free(s->e[i].value);
  }
  kir_free(s->e);
  kir_free(s);
}

static int32_t state_find(const kir_state *s, const char *name) {
  for (int32_t i = 0; i < s->n; i++)
    if (strcmp(s->e[i].name, name) == 0) return i;
  return -1;
}

const kir_tensor *kir_state_get(const kir_state *s, const char *name) {
  if (!s || !name) return NULL;
  int32_t i = state_find(s, name);
  return i < 0 ? NULL : s->e[i].value;
}

static bool state_reserve(kir_state *s) {
  if (s->n < s->cap) return true;
  int32_t cap = s->cap ? s->cap * 2 : 8;
  state_entry *e = kir_realloc(s->e, (size_t)s->cap * sizeof *e, (size_t)cap * sizeof *e);
  if (!e) return false;
  s->e = e;
  s->cap = cap;
  return true;
}

kiln_status kir_state_set(kir_state *s, const char *name, const kir_tensor *value) {
  if (!s || !name || !value) return KILN_ERR_ARGUMENT;
  kir_tensor *copy = kir_tensor_clone(value);
  if (!copy) return KILN_ERR_NOMEM;
  int32_t i = state_find(s, name);
  if (i >= 0) {
    kir_tensor_free(s->e[i].value);
    s->e[i].value = copy;
    return KILN_OK;
  }
  char *key = state_reserve(s) ? kir_strdup(name) : NULL;
  if (!key) {
    kir_tensor_free(copy);
    return KILN_ERR_NOMEM;
  }
  s->e[s->n++] = (state_entry){key, copy};
  return KILN_OK;
}

/* ---------------------------------------------------------------- run ----------- */

typedef struct run {
  kir_graph *g;
  kir_state *state;
  int32_t nn;
  kir_tensor **vals;        /* owned value of each evaluated node, NULL once freed */
  const kir_tensor **feed;  /* borrowed feed per node, NULL if not fed */
  uint8_t *needed, *pinned; /* pinned: fetched, kept to the end */
  int32_t *uses;            /* remaining uses by needed, unfed consumers */
  const kir_tensor **args;  /* input values of the node being evaluated */
} run;

static const kir_tensor *value_of(const run *r, int32_t id) {
  return r->feed[id] ? r->feed[id] : r->vals[id];
}

/* Inputs that are names, not values: a variable's initializer, an assign's variable. */
static bool uses_input(const kir_node *n, int32_t i) {
  return n->op != KIR_OP_VARIABLE && !(n->op == KIR_OP_ASSIGN && i == 0);
}

static void run_free(run *r) {
  for (int32_t i = 0; r->vals && i < r->nn; i++) kir_tensor_free(r->vals[i]);
  kir_free(r->vals);
  kir_free(r->feed);
  kir_free(r->needed);
  kir_free(r->pinned);
  kir_free(r->uses);
  kir_free(r->args);
}

static kiln_status run_alloc(run *r) {
  size_t nn = (size_t)r->nn + 1; /* +1: never a zero-size request */
  r->vals = kir_calloc(nn, sizeof *r->vals);
  r->feed = kir_calloc(nn, sizeof *r->feed);
  r->needed = kir_calloc(nn, 1);
  r->pinned = kir_calloc(nn, 1);
  r->uses = kir_calloc(nn, sizeof *r->uses);
  if (r->vals && r->feed && r->needed && r->pinned && r->uses) return KILN_OK;
  return kir_seterr(r->g, KILN_ERR_NOMEM, "out of memory preparing a run of %d nodes", (int)r->nn);
}

static const char *tfmt(const kir_type *t, char *buf, size_t n) {
  kir_type_format(t, buf, n);
  return buf;
}

static bool tensor_ok(const kir_tensor *t) {
  return t->type.dtype > KILN_DTYPE_INVALID && t->type.dtype < KILN_DTYPE_COUNT &&
         t->type.rank >= 0 && t->type.rank <= KILN_MAX_RANK && kir_type_nbytes(&t->type) >= 0 &&
         (kir_type_nbytes(&t->type) == 0 || t->data);
}

static kiln_status add_feed(run *r, int32_t k, const kir_feed *f) {
  char nb[KIR_ESC_BUF], want[128], got[128];
  if (f->node < 0 || f->node >= r->nn)
    return kir_seterr(r->g, KILN_ERR_FEED, "feed %d: node id %d out of range (graph has %d nodes)",
                      (int)k, (int)f->node, (int)r->nn);
  const kir_node *n = r->g->nodes[f->node];
  const char *name = kir_escape(n->name, nb, sizeof nb);
  if (kir_op_has(n->op, KIR_F_NO_OUTPUT))
    return kir_seterr(r->g, KILN_ERR_FEED, "feed for '%s': %s has no output to replace", name,
                      kir_op_get(n->op)->name);
  if (r->feed[f->node]) return kir_seterr(r->g, KILN_ERR_FEED, "node '%s' is fed twice", name);
  if (!f->value || !tensor_ok(f->value))
    return kir_seterr(r->g, KILN_ERR_FEED, "feed for '%s' has no valid tensor", name);
  if (!kir_type_equal(&f->value->type, &n->type))
    return kir_seterr(r->g, KILN_ERR_FEED, "feed for '%s': expected %s, got %s", name,
                      tfmt(&n->type, want, sizeof want), tfmt(&f->value->type, got, sizeof got));
  r->feed[f->node] = f->value;
  return KILN_OK;
}

static kiln_status mark_roots(run *r, const int32_t *ids, int32_t count, bool fetch) {
  char nb[KIR_ESC_BUF];
  const char *what = fetch ? "fetch" : "target";
  for (int32_t i = 0; i < count; i++) {
    if (ids[i] < 0 || ids[i] >= r->nn)
      return kir_seterr(r->g, KILN_ERR_ARGUMENT, "%s %d: node id %d out of range (graph has %d "
                        "nodes)", what, (int)i, (int)ids[i], (int)r->nn);
    const kir_node *n = r->g->nodes[ids[i]];
    if (fetch && kir_op_has(n->op, KIR_F_NO_OUTPUT))
      return kir_seterr(r->g, KILN_ERR_ARGUMENT, "fetch %d: node '%s' (%s) has no output; run "
                        "it as a target", (int)i, kir_escape(n->name, nb, sizeof nb),
                        kir_op_get(n->op)->name);
    r->needed[ids[i]] = 1;
    if (fetch) r->pinned[ids[i]] = 1;
  }
  return KILN_OK;
}

/* Walks back from the roots (ids are topological), counting each value's uses. */
static kiln_status mark_needed(run *r, int32_t *max_inputs) {
  *max_inputs = 1;
  for (int32_t id = r->nn - 1; id >= 0; id--) {
    const kir_node *n = r->g->nodes[id];
    if (!r->needed[id] || r->feed[id]) continue;
    if (n->n_inputs > *max_inputs) *max_inputs = n->n_inputs;
    for (int32_t i = 0; i < n->n_inputs; i++) {
      int32_t in = n->inputs[i];
      if (in < 0 || in >= id)
        return kir_node_err(r->g, n, KILN_ERR_GRAPH, "input %d refers to node %d, which does not "
                            "come before it", (int)i, (int)in);
      if (!uses_input(n, i)) continue;
      r->needed[in] = 1;
      r->uses[in]++;
    }
  }
  return KILN_OK;
}

static kiln_status read_variable(run *r, const kir_node *n) {
  char nb[KIR_ESC_BUF], a[128], b[128];
  const char *name = kir_escape(n->name, nb, sizeof nb);
  if (!r->state)
    return kir_seterr(r->g, KILN_ERR_STATE, "variable '%s' is read but the run has no state", name);
  const kir_tensor *v = kir_state_get(r->state, n->name);
  if (!v)
    return kir_seterr(r->g, KILN_ERR_STATE, "variable '%s' is read before it is initialized", name);
  if (!kir_type_equal(&v->type, &n->type))
    return kir_seterr(r->g, KILN_ERR_STATE, "variable '%s' holds %s, the graph expects %s", name,
                      tfmt(&v->type, a, sizeof a), tfmt(&n->type, b, sizeof b));
  r->vals[n->id] = kir_tensor_clone(v);
  if (!r->vals[n->id]) return kir_node_err(r->g, n, KILN_ERR_NOMEM, "out of memory reading it");
  return KILN_OK;
}

static kiln_status run_assign(run *r, const kir_node *n) {
  char vb[KIR_ESC_BUF], a[128], b[128];
  const kir_node *var = r->g->nodes[n->inputs[0]];
  const kir_tensor *v = value_of(r, n->inputs[1]);
  if (var->op != KIR_OP_VARIABLE)
    return kir_node_err(r->g, n, KILN_ERR_GRAPH, "first input '%s' is not a variable",
                        kir_escape(var->name, vb, sizeof vb));
  if (!r->state) return kir_node_err(r->g, n, KILN_ERR_STATE, "assign needs a state, got none");
  if (!v) return kir_node_err(r->g, n, KILN_ERR_GRAPH, "input 1 has no value");
  if (!kir_type_equal(&v->type, &var->type) || !kir_type_equal(&v->type, &n->type))
    return kir_node_err(r->g, n, KILN_ERR_SHAPE, "assigns %s to variable '%s' of type %s",
                        tfmt(&v->type, a, sizeof a), kir_escape(var->name, vb, sizeof vb),
                        tfmt(&var->type, b, sizeof b));
  kir_tensor *out = kir_tensor_clone(v);
  if (!out || kir_state_set(r->state, var->name, v) != KILN_OK) {
    kir_tensor_free(out);
    return kir_node_err(r->g, n, KILN_ERR_NOMEM, "out of memory assigning variable '%s'",
                        kir_escape(var->name, vb, sizeof vb));
  }
  r->vals[n->id] = out;
  return KILN_OK;
}

/* An unfed placeholder takes its default (ONNX initializers that are also graph inputs);
 * without one it must be fed. */
static kiln_status read_placeholder(run *r, const kir_node *n) {
  char nb[KIR_ESC_BUF], t[128], d[128];
  const kir_tensor *dflt = kir_attr_tensor(n, "default");
  const char *name = kir_escape(n->name, nb, sizeof nb);
  if (!dflt)
    return kir_seterr(r->g, KILN_ERR_FEED, "placeholder '%s' must be fed (%s)", name,
                      tfmt(&n->type, t, sizeof t));
  if (!kir_type_equal(&dflt->type, &n->type))
    return kir_node_err(r->g, n, KILN_ERR_TYPE, "default %s differs from the placeholder's "
                        "type %s", tfmt(&dflt->type, d, sizeof d), tfmt(&n->type, t, sizeof t));
  r->vals[n->id] = kir_tensor_clone(dflt);
  if (!r->vals[n->id])
    return kir_node_err(r->g, n, KILN_ERR_NOMEM, "out of memory copying its default");
  return KILN_OK;
}

static kiln_status eval_one(run *r, const kir_node *n) {
  if (n->op == KIR_OP_PLACEHOLDER) return read_placeholder(r, n);
  if (n->op == KIR_OP_VARIABLE) return read_variable(r, n);
  if (n->op == KIR_OP_ASSIGN) return run_assign(r, n);
  for (int32_t i = 0; i < n->n_inputs; i++) r->args[i] = value_of(r, n->inputs[i]);
  return kir_eval_node(r->g, n, r->args, &r->vals[n->id]);
}

/* Drops values nobody needs any more: n's inputs after their last use, and n itself
 * when it is only a target. */
static void release(run *r, const kir_node *n) {
  for (int32_t i = 0; i < n->n_inputs; i++) {
    int32_t in = n->inputs[i];
    if (!uses_input(n, i) || --r->uses[in] > 0 || r->pinned[in]) continue;
    kir_tensor_free(r->vals[in]);
    r->vals[in] = NULL;
  }
  if (r->uses[n->id] == 0 && !r->pinned[n->id]) {
    kir_tensor_free(r->vals[n->id]);
    r->vals[n->id] = NULL;
  }
}

static kiln_status evaluate(run *r) {
  for (int32_t id = 0; id < r->nn; id++) {
    if (!r->needed[id] || r->feed[id]) continue;
    const kir_node *n = r->g->nodes[id];
    kiln_status s = eval_one(r, n);
    if (s) return s;
    release(r, n);
  }
  return KILN_OK;
}

/* Copies every fetched value; all or nothing. */
static kiln_status collect(run *r, const int32_t *fetches, int32_t n_fetches, kir_tensor **outputs) {
  kir_tensor **tmp = kir_calloc((size_t)n_fetches + 1, sizeof *tmp);
  if (!tmp) return kir_seterr(r->g, KILN_ERR_NOMEM, "out of memory collecting fetches");
  for (int32_t i = 0; i < n_fetches; i++) {
    const kir_tensor *v = value_of(r, fetches[i]);
    tmp[i] = v ? kir_tensor_clone(v) : NULL;
    if (tmp[i]) continue;
    for (int32_t j = 0; j < i; j++) kir_tensor_free(tmp[j]);
    kir_free(tmp);
    if (!v) return kir_seterr(r->g, KILN_ERR_INTERNAL, "fetch %d has no value", (int)i);
    return kir_seterr(r->g, KILN_ERR_NOMEM, "out of memory copying fetch %d", (int)i);
  }
  for (int32_t i = 0; i < n_fetches; i++) outputs[i] = tmp[i];
  kir_free(tmp);
  return KILN_OK;
}

static kiln_status check_args(kir_graph *g, const kir_feed *feeds, int32_t n_feeds,
                              const int32_t *fetches, int32_t n_fetches, const int32_t *targets,
                              int32_t n_targets, kir_tensor **outputs) {
  if (n_feeds < 0 || n_fetches < 0 || n_targets < 0 || (n_feeds && !feeds) ||
      (n_fetches && (!fetches || !outputs)) || (n_targets && !targets))
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_interp_run: bad feed, fetch or target arrays");
  return KILN_OK;
}

kiln_status kir_interp_run(kir_graph *g, kir_state *state, const kir_feed *feeds, int32_t n_feeds,
                           const int32_t *fetches, int32_t n_fetches, const int32_t *targets,
                           int32_t n_targets, kir_tensor **outputs) {
  if (!g) return KILN_ERR_ARGUMENT;
  kiln_status s = check_args(g, feeds, n_feeds, fetches, n_fetches, targets, n_targets, outputs);
  if (s) return s;
  run r = {g, state, g->n_nodes, NULL, NULL, NULL, NULL, NULL, NULL};
  int32_t max_inputs = 1;
  s = run_alloc(&r);
  for (int32_t i = 0; s == KILN_OK && i < n_feeds; i++) s = add_feed(&r, i, &feeds[i]);
  if (s == KILN_OK) s = mark_roots(&r, fetches, n_fetches, true);
  if (s == KILN_OK) s = mark_roots(&r, targets, n_targets, false);
  if (s == KILN_OK) s = mark_needed(&r, &max_inputs);
  if (s == KILN_OK && !(r.args = kir_calloc((size_t)max_inputs, sizeof *r.args)))
    s = kir_seterr(g, KILN_ERR_NOMEM, "out of memory preparing a run");
  if (s == KILN_OK) s = evaluate(&r);
  if (s == KILN_OK) s = collect(&r, fetches, n_fetches, outputs);
  run_free(&r);
  if (s == KILN_OK) kir_clearerr(g);
  return s;
}
