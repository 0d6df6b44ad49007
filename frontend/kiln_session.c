/* kiln_session.c — kiln.h sessions: validate feeds/fetches/targets against the graph,
 * evaluate with the reference interpreter (ir/kir_interp.c), keep variable values in a
 * kir_state across runs, and write the placement log from the place pass (passes/kps.h)
 * run on a clone; the user's graph is never changed by a session. */
#include <stdarg.h>
#include <string.h>

#include "../passes/kps.h"
#include "kiln_internal.h"

struct kiln_session {
  kiln_graph *g;
  kir_state *state;
  bool log_placement;
  FILE *log;
  int32_t logged_nodes; /* graph size when the placement log was last written; -1 never */
  kiln_status status;
  char error[512];
};

static kiln_status fe_serr(kiln_session *s, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kiln_status fe_serr(kiln_session *s, kiln_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->error, sizeof s->error, fmt, ap);
  va_end(ap);
  s->status = st;
  return st;
}

kiln_status kiln_session_create(kiln_graph *g, const kiln_session_options *opts,
                                kiln_session **out) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!out) return kir_seterr(g->ir, KILN_ERR_ARGUMENT, "session: out is NULL");
  *out = NULL;
  kiln_session *s = kir_calloc(1, sizeof *s);
  if (!s) return kir_seterr(g->ir, KILN_ERR_NOMEM, "session: out of memory");
  s->state = kir_state_create();
  if (!s->state) {
    kir_free(s);
    return kir_seterr(g->ir, KILN_ERR_NOMEM, "session: out of memory for variable state");
  }
  s->g = g;
  s->log_placement = opts && opts->log_device_placement;
  s->log = opts && opts->log ? opts->log : stderr;
  s->logged_nodes = -1;
  kir_clearerr(g->ir);
  *out = s;
  return KILN_OK;
}

void kiln_session_destroy(kiln_session *s) {
  if (!s) return;
  kir_state_destroy(s->state);
  kir_free(s);
}

const char *kiln_session_error(const kiln_session *s) { return s ? s->error : "session is NULL"; }

/* ---------------------------------------------------------------- validation ---- */

static const char *fe_opname(const kir_node *n) { return kir_op_get(n->op)->name; }

/* what = "feed" / "fetch" / "target". NULL or another graph's node: ARGUMENT. */
static kiln_status fe_check_node(kiln_session *s, const char *what, int i, const kiln_node *h) {
  char esc[FE_ESC];
  const kir_node *n = fe_node(h);
  if (!n) return fe_serr(s, KILN_ERR_ARGUMENT, "run: %s %d is a NULL node", what, i);
  if (!fe_owns(s->g, n))
    return fe_serr(s, KILN_ERR_ARGUMENT, "run: %s %d is a node of another graph (or not a node)",
                   what, i);
  if (n->type.dtype == KILN_DTYPE_INVALID && strcmp(what, "target") != 0)
    return fe_serr(s, strcmp(what, "feed") == 0 ? KILN_ERR_FEED : KILN_ERR_ARGUMENT,
                   "run: %s %d '%s' (%s) has no output%s", what, i,
                   kir_escape(n->name, esc, sizeof esc), fe_opname(n),
                   strcmp(what, "fetch") == 0 ? "; run it as a target" : "");
  return KILN_OK;
}

static kiln_status fe_check_feed(kiln_session *s, const kiln_feed *feeds, int i) {
  char esc[FE_ESC], want[96], got[96];
  kiln_status st = fe_check_node(s, "feed", i, feeds[i].node);
  if (st != KILN_OK) return st;
  const kir_node *n = fe_node(feeds[i].node);
  const char *name = kir_escape(n->name, esc, sizeof esc);
  if (!feeds[i].value)
    return fe_serr(s, KILN_ERR_ARGUMENT, "run: feed %d '%s': the value is NULL", i, name);
  for (int j = 0; j < i; j++)
    if (feeds[j].node == feeds[i].node)
      return fe_serr(s, KILN_ERR_ARGUMENT, "run: node '%s' is fed twice (feeds %d and %d)", name, j, i);
  const kir_tensor *v = fe_tensor(feeds[i].value);
  if (kir_type_equal(&v->type, &n->type)) return KILN_OK;
  kir_type_format(&n->type, want, sizeof want);
  kir_type_format(&v->type, got, sizeof got);
  return fe_serr(s, KILN_ERR_FEED, "run: feed of '%s' (%s): expected %s, given %s", name,
                 fe_opname(n), want, got);
}

static kiln_status fe_check_run(kiln_session *s, const kiln_feed *feeds, int n_feeds,
                                kiln_node *const *fetches, int n_fetches,
                                kiln_node *const *targets, int n_targets, kiln_tensor **outputs) {
  if (n_feeds < 0 || n_fetches < 0 || n_targets < 0)
    return fe_serr(s, KILN_ERR_ARGUMENT, "run: negative count (feeds %d, fetches %d, targets %d)",
                   n_feeds, n_fetches, n_targets);
  if ((n_feeds && !feeds) || (n_fetches && !fetches) || (n_targets && !targets) ||
      (n_fetches && !outputs))
    return fe_serr(s, KILN_ERR_ARGUMENT, "run: a NULL %s array with a count above 0",
                   n_feeds && !feeds ? "feeds" : n_fetches && !fetches ? "fetches"
                   : n_targets && !targets ? "targets" : "outputs");
  kiln_status st = KILN_OK;
  for (int i = 0; i < n_feeds && st == KILN_OK; i++) st = fe_check_feed(s, feeds, i);
  for (int i = 0; i < n_fetches && st == KILN_OK; i++) st = fe_check_node(s, "fetch", i, fetches[i]);
  for (int i = 0; i < n_targets && st == KILN_OK; i++) st = fe_check_node(s, "target", i, targets[i]);
  return st;
}

/* ---------------------------------------------------------------- placement log - */

/* "cpu:0" -> "/device:CPU:0", "cuda:1" -> "/device:GPU:1", like TensorFlow's log. */
static void fe_tf_device(const char *dev, char *buf, size_t n) {
  if (strncmp(dev, "cpu:", 4) == 0) snprintf(buf, n, "/device:CPU:%s", dev + 4);
  else if (strncmp(dev, "cuda:", 5) == 0) snprintf(buf, n, "/device:GPU:%s", dev + 5);
  else snprintf(buf, n, "/device:%s", dev[0] ? dev : "CPU:0");
}

static void fe_print_placement(kiln_session *s, const kir_graph *c) {
  char esc[FE_ESC], dev[96];
  for (int32_t i = 0; i < c->n_nodes; i++) {
    const kir_node *n = c->nodes[i];
    const char *reason = n->placement_reason ? n->placement_reason : "";
    fe_tf_device(n->assigned_device ? n->assigned_device : "", dev, sizeof dev);
    fprintf(s->log, "%s: (%s): %s%s%s%s\n", kir_escape(n->name, esc, sizeof esc), fe_opname(n),
            dev, reason[0] ? " (" : "", reason, reason[0] ? ")" : "");
  }
  fflush(s->log);
}

/* Places a clone of the graph (devices: cpu:0, soft placement) and logs where each node
 * went, once per graph size. */
static kiln_status fe_log_placement(kiln_session *s) {
  kir_graph *ir = s->g->ir;
  if (!s->log_placement || s->logged_nodes == ir->n_nodes) return KILN_OK;
  kir_graph *c = kir_graph_clone(ir);
  if (!c) return fe_serr(s, KILN_ERR_NOMEM, "run: out of memory placing the graph for the log");
  kps_context ctx;
  kps_result res;
  memset(&ctx, 0, sizeof ctx);
  memset(&res, 0, sizeof res);
  kiln_status st = kps_place(c, &ctx, &res);
  if (st == KILN_OK) {
    fe_print_placement(s, c);
    s->logged_nodes = ir->n_nodes;
  } else {
    fe_serr(s, st, "run: placement: %s", c->error);
  }
  kir_graph_destroy(c);
  return st;
}

/* ---------------------------------------------------------------- run ----------- */

typedef struct fe_scratch {
  kir_feed *feeds;
  kir_tensor **outs;
  int32_t *fetch_ids, *target_ids;
  void *block;
} fe_scratch;

static kiln_status fe_scratch_make(kiln_session *s, fe_scratch *x, const kiln_feed *feeds,
                                   int n_feeds, kiln_node *const *fetches, int n_fetches,
                                   kiln_node *const *targets, int n_targets) {
  size_t bytes = (size_t)n_feeds * sizeof(kir_feed) + (size_t)n_fetches * sizeof(kir_tensor *) +
                 (size_t)(n_fetches + n_targets) * sizeof(int32_t);
  x->block = kir_malloc(bytes);
  if (!x->block) return fe_serr(s, KILN_ERR_NOMEM, "run: out of memory");
  x->feeds = x->block;
  x->outs = (kir_tensor **)(x->feeds + n_feeds);
  x->fetch_ids = (int32_t *)(x->outs + n_fetches);
  x->target_ids = x->fetch_ids + n_fetches;
  for (int i = 0; i < n_feeds; i++) {
    x->feeds[i].node = fe_node(feeds[i].node)->id;
    x->feeds[i].value = fe_tensor(feeds[i].value);
  }
  for (int i = 0; i < n_fetches; i++) {
    x->outs[i] = NULL;
    x->fetch_ids[i] = fe_node(fetches[i])->id;
  }
  for (int i = 0; i < n_targets; i++) x->target_ids[i] = fe_node(targets[i])->id;
  return KILN_OK;
}

/* Runs the interpreter; its message moves to the session and the graph's own status
 * is left as it was. */
static kiln_status fe_interp(kiln_session *s, fe_scratch *x, int n_feeds, int n_fetches,
                             int n_targets) {
  kir_graph *ir = s->g->ir;
  kiln_status saved = ir->status;
  char msg[sizeof ir->error];
  memcpy(msg, ir->error, sizeof msg);
  kiln_status st = kir_interp_run(ir, s->state, x->feeds, n_feeds, x->fetch_ids, n_fetches,
                                  x->target_ids, n_targets, x->outs);
  if (st != KILN_OK) fe_serr(s, st, "%s", ir->error[0] ? ir->error : kiln_status_name(st));
  ir->status = saved;
  memcpy(ir->error, msg, sizeof msg);
  return st;
}

kiln_status kiln_session_run(kiln_session *s, const kiln_feed *feeds, int n_feeds,
                             kiln_node *const *fetches, int n_fetches,
                             kiln_node *const *targets, int n_targets,
                             kiln_tensor **outputs) {
  if (!s) return KILN_ERR_ARGUMENT;
  if (outputs)
    for (int i = 0; i < n_fetches; i++) outputs[i] = NULL;
  kiln_status st = fe_check_run(s, feeds, n_feeds, fetches, n_fetches, targets, n_targets, outputs);
  if (st != KILN_OK) return st;
  st = fe_log_placement(s);
  if (st != KILN_OK) return st;
  fe_scratch x = {NULL, NULL, NULL, NULL, NULL};
  st = fe_scratch_make(s, &x, feeds, n_feeds, fetches, n_fetches, targets, n_targets);
  if (st != KILN_OK) return st;
  st = fe_interp(s, &x, n_feeds, n_fetches, n_targets);
  if (st == KILN_OK) {
    for (int i = 0; i < n_fetches; i++) outputs[i] = fe_tensor_handle(x.outs[i]);
    s->status = KILN_OK;
    s->error[0] = '\0';
  }
  kir_free(x.block);
  return st;
}
