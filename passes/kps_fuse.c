/* kps_fuse.c — epilogue fusion: a float matmul followed by a chain of elementwise
 * consumers (each the only user of the previous value, same dtype, same shape, same
 * device) becomes one fused_matmul node that takes the chain's last name. Logs why a
 * chain stopped. Depends on ir/ only; the epilogue encoding is the one in ops.def. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <math.h>
#include <string.h>

/* Facts about the original graph, computed once before any rewrite. */
typedef struct fuse_info {
  int32_t *uses;     /* per id: number of input slots that name it */
  int32_t *consumer; /* per id: the last node using it, -1 if none */
  bool *root;
  bool *claimed;     /* already a step of some chain */
  bool *keep;
} fuse_info;

typedef struct chain {
  const kir_node *mm;
  int32_t n;         /* steps */
  int32_t *steps;    /* node ids, in order; capacity g->n_nodes */
} chain;

static void info_free(fuse_info *fi) {
  kir_free(fi->uses);
  kir_free(fi->consumer);
  kir_free(fi->root);
  kir_free(fi->claimed);
  kir_free(fi->keep);
}

static kiln_status info_init(kir_graph *g, const kps_context *ctx, fuse_info *fi) {
  size_t cnt = (size_t)g->n_nodes;
  fi->uses = kir_calloc(cnt, sizeof *fi->uses);
  fi->consumer = kir_calloc(cnt, sizeof *fi->consumer);
  fi->root = kir_calloc(cnt, sizeof *fi->root);
  fi->claimed = kir_calloc(cnt, sizeof *fi->claimed);
  fi->keep = kir_calloc(cnt, sizeof *fi->keep);
  if (!fi->uses || !fi->consumer || !fi->root || !fi->claimed || !fi->keep) {
    info_free(fi);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  }
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    fi->consumer[i] = -1;
    fi->keep[i] = true;
    for (int32_t k = 0; k < n->n_inputs; k++) {
      fi->uses[n->inputs[k]]++;
      fi->consumer[n->inputs[k]] = i;
    }
  }
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    const kir_node *n = ctx->roots[r] ? kir_graph_find(g, ctx->roots[r]) : NULL;
    if (n) fi->root[n->id] = true;
  }
  return KILN_OK;
}

static bool same_device(const char *a, const char *b) {
  char na[64], nb[64];
  if (strcmp(a, b) == 0) return true;
  if (!a[0] || !b[0]) return false;
  return kps_device_normalize(a, na, sizeof na) && kps_device_normalize(b, nb, sizeof nb) &&
         strcmp(na, nb) == 0;
}

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get(op);
  return i ? i->name : "invalid";
}

/* The epilogue operand of step e after c, or -1 for a unary step. */
static int32_t other_operand(const kir_node *e, int32_t c) {
  if (e->n_inputs != 2) return -1;
  return e->inputs[0] == c ? e->inputs[1] : e->inputs[0];
}

/* Whether consumer e of c can extend the chain; if not, writes why into why. */
static bool step_ok(const kir_graph *g, const fuse_info *fi, const chain *ch, const kir_node *c,
                    const kir_node *e, char *why, size_t n) {
  char esc[KPS_ESC], t1[64], t2[64];
  if (fi->claimed[e->id]) {
    snprintf(why, n, "'%s' is already fused into another matmul", kir_escape(e->name, esc, sizeof esc));
    return false;
  }
  if (!kir_op_has(e->op, KIR_F_ELEMENTWISE) ||
      !(kir_op_has(e->op, KIR_F_UNARY) || kir_op_has(e->op, KIR_F_BINARY))) {
    snprintf(why, n, "not elementwise (%s)", op_name(e->op));
    return false;
  }
  if (e->n_inputs == 2 && e->inputs[0] == c->id && e->inputs[1] == c->id) {
    char esc2[KPS_ESC];
    snprintf(why, n, "'%s' uses '%s' twice", kir_escape(e->name, esc, sizeof esc),
             kir_escape(c->name, esc2, sizeof esc2));
    return false;
  }
  if (e->type.dtype != ch->mm->type.dtype) {
    snprintf(why, n, "different dtype (%s)", kiln_dtype_name(e->type.dtype));
    return false;
  }
  if (!kir_type_equal(&e->type, &ch->mm->type)) {
    int32_t o = other_operand(e, c->id);
    kir_type_format(&ch->mm->type, t1, sizeof t1);
    kir_type_format(&e->type, t2, sizeof t2);
    snprintf(why, n, "'%s' broadcasts the product from %s to %s",
             kir_escape(o >= 0 ? g->nodes[o]->name : e->name, esc, sizeof esc), t1, t2);
    return false;
  }
  if (!same_device(e->device, ch->mm->device)) {
    snprintf(why, n, "different device");
    return false;
  }
  return true;
}

/* Grows the chain from its matmul as far as the rule allows; why = "" if it ran out of
 * consumers naturally. */
static void grow(const kir_graph *g, const fuse_info *fi, chain *ch, char *why, size_t n) {
  const kir_node *c = ch->mm;
  char esc[KPS_ESC];
  why[0] = '\0';
  for (;;) {
    int32_t u = fi->uses[c->id];
    if (u == 0) return;
    if (fi->root[c->id]) {
      snprintf(why, n, "'%s' is fetched", kir_escape(c->name, esc, sizeof esc));
      return;
    }
    if (u > 1) {
      snprintf(why, n, "'%s' has %d consumers", kir_escape(c->name, esc, sizeof esc), (int)u);
      return;
    }
    const kir_node *e = g->nodes[fi->consumer[c->id]];
    if (!step_ok(g, fi, ch, c, e, why, n)) return;
    ch->steps[ch->n++] = e->id;
    c = e;
  }
}

/* ---------------------------------------------------------------- rewriting ----- */

typedef struct epi_attrs {
  int64_t *op, *operand, *swap;
  double *lo, *hi;
  const char **from;
  int32_t *inputs;
} epi_attrs;

static void epi_free(epi_attrs *a) {
  kir_free(a->op);
  kir_free(a->operand);
  kir_free(a->swap);
  kir_free(a->lo);
  kir_free(a->hi);
  kir_free(a->from);
  kir_free(a->inputs);
}

static bool epi_alloc(epi_attrs *a, int32_t steps) {
  size_t n = (size_t)steps;
  a->op = kir_calloc(n, sizeof *a->op);
  a->operand = kir_calloc(n, sizeof *a->operand);
  a->swap = kir_calloc(n, sizeof *a->swap);
  a->lo = kir_calloc(n, sizeof *a->lo);
  a->hi = kir_calloc(n, sizeof *a->hi);
  a->from = kir_calloc(n + 1, sizeof *a->from);
  a->inputs = kir_calloc(n + 2, sizeof *a->inputs);
  return a->op && a->operand && a->swap && a->lo && a->hi && a->from && a->inputs;
}

/* Fills the epilogue arrays; returns the fused node's input count. */
static int32_t epi_fill(const kir_graph *g, const chain *ch, epi_attrs *a) {
  int32_t n_in = 2, prev = ch->mm->id;
  a->inputs[0] = ch->mm->inputs[0];
  a->inputs[1] = ch->mm->inputs[1];
  a->from[0] = ch->mm->name;
  for (int32_t s = 0; s < ch->n; s++) {
    const kir_node *e = g->nodes[ch->steps[s]];
    int32_t o = other_operand(e, prev);
    a->op[s] = e->op;
    a->swap[s] = o >= 0 && e->inputs[1] == prev;
    a->operand[s] = o >= 0 ? n_in : -1;
    if (o >= 0) a->inputs[n_in++] = o;
    a->lo[s] = e->op == KIR_OP_CLAMP ? kir_attr_float(e, "min", NAN) : NAN;
    a->hi[s] = e->op == KIR_OP_CLAMP ? kir_attr_float(e, "max", NAN) : NAN;
    a->from[s + 1] = e->name;
    prev = e->id;
  }
  return n_in;
}

static kiln_status set_attrs(kir_graph *g, kir_node *f, const chain *ch, const epi_attrs *a) {
  kiln_status st = KILN_OK;
  const kir_attr *ta = kir_attr_find(ch->mm, "transpose_a");
  const kir_attr *tb = kir_attr_find(ch->mm, "transpose_b");
  if (ta) st = kir_attr_set_int(g, f, "transpose_a", kir_attr_int(ch->mm, "transpose_a", 0));
  if (st == KILN_OK && tb) st = kir_attr_set_int(g, f, "transpose_b", kir_attr_int(ch->mm, "transpose_b", 0));
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "epilogue", a->op, ch->n);
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "operand", a->operand, ch->n);
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "swap", a->swap, ch->n);
  if (st == KILN_OK) st = kir_attr_set_floats(g, f, "clamp_min", a->lo, ch->n);
  if (st == KILN_OK) st = kir_attr_set_floats(g, f, "clamp_max", a->hi, ch->n);
  if (st == KILN_OK) st = kir_attr_set_strings(g, f, "fused_from", a->from, ch->n + 1);
  return st;
}

static kiln_status type_mismatch(kir_graph *g, const kir_node *f, const kir_type *want) {
  char esc[KPS_ESC], t1[64], t2[64];
  kir_type_format(want, t1, sizeof t1);
  kir_type_format(&f->type, t2, sizeof t2);
  return kir_seterr(g, KILN_ERR_INTERNAL, "fused node '%s' has type %s, the chain had %s",
                    kir_escape(f->name, esc, sizeof esc), t2, t1);
}

/* Rewrites the chain's last node in place into the fused node (so its name, and every
 * use of it, carry over). Transactional: on failure the node is as before. */
static kiln_status rewrite_last(kir_graph *g, const chain *ch, const epi_attrs *a, int32_t n_in) {
  kir_node *f = g->nodes[ch->steps[ch->n - 1]];
  kir_node saved = *f;
  int32_t *inputs = kir_graph_alloc(g, (size_t)n_in * sizeof *inputs);
  if (!inputs) return g->status ? g->status : KILN_ERR_NOMEM;
  memcpy(inputs, a->inputs, (size_t)n_in * sizeof *inputs);
  f->op = KIR_OP_FUSED_MATMUL;
  f->inputs = inputs;
  f->n_inputs = n_in;
  f->n_attrs = 0;
  f->attrs = NULL;
  f->device = ch->mm->device;
  f->assigned_device = ch->mm->assigned_device;
  f->placement_reason = ch->mm->placement_reason;
  kiln_status st = set_attrs(g, f, ch, a);
  if (st == KILN_OK) st = kir_infer_node(g, f);
  if (st == KILN_OK && !kir_type_equal(&f->type, &saved.type)) st = type_mismatch(g, f, &saved.type);
  if (st != KILN_OK) {
    char msg[sizeof g->error];
    memcpy(msg, g->error, sizeof msg);
    *f = saved;
    kir_seterr(g, st, "%s", msg);
  }
  return st;
}

static kiln_status apply_chain(kir_graph *g, fuse_info *fi, const chain *ch) {
  epi_attrs a;
  memset(&a, 0, sizeof a);
  if (!epi_alloc(&a, ch->n)) {
    epi_free(&a);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  }
  int32_t n_in = epi_fill(g, ch, &a);
  kiln_status st = rewrite_last(g, ch, &a, n_in);
  epi_free(&a);
  if (st != KILN_OK) return st;
  fi->keep[ch->mm->id] = false;
  for (int32_t s = 0; s + 1 < ch->n; s++) fi->keep[ch->steps[s]] = false;
  return KILN_OK;
}

/* ---------------------------------------------------------------- the pass ------ */

static bool candidate(const kir_node *n) {
  return n->op == KIR_OP_MATMUL && (n->type.dtype == KILN_F32 || n->type.dtype == KILN_F64);
}

static void log_why(const kps_context *ctx, const kir_node *mm, const char *why) {
  char esc[KPS_ESC];
  if (ctx->log && why[0])
    fprintf(ctx->log, "fuse: stopped after '%s': %s\n", kir_escape(mm->name, esc, sizeof esc), why);
}

static kiln_status fuse_all(kir_graph *g, const kps_context *ctx, fuse_info *fi, chain *ch,
                            int64_t *fused, int64_t *absorbed) {
  char why[1024];
  /* Later chains only read facts computed before any rewrite, and a rewritten node is
   * always claimed, so rewriting as we go is safe. */
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (!candidate(g->nodes[i])) continue;
    ch->mm = g->nodes[i];
    ch->n = 0;
    grow(g, fi, ch, why, sizeof why);
    log_why(ctx, ch->mm, why);
    if (ch->n == 0) continue;
    for (int32_t s = 0; s < ch->n; s++) fi->claimed[ch->steps[s]] = true;
    kiln_status st = apply_chain(g, fi, ch);
    if (st != KILN_OK) return st;
    (*fused)++;
    *absorbed += ch->n;
  }
  return KILN_OK;
}

kiln_status kps_fuse(kir_graph *g, const kps_context *ctx, kps_result *res) {
  int64_t fused = 0, absorbed = 0;
  res->n_stats = 2;
  res->stats[0] = (kps_stat){"matmuls fused", 0};
  res->stats[1] = (kps_stat){"ops absorbed", 0};
  if (g->n_nodes == 0) return KILN_OK;
  fuse_info fi;
  memset(&fi, 0, sizeof fi);
  kiln_status st = info_init(g, ctx, &fi);
  if (st != KILN_OK) return st;
  chain ch = {NULL, 0, kir_calloc((size_t)g->n_nodes, sizeof(int32_t))};
  if (!ch.steps) st = kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  if (st == KILN_OK) st = fuse_all(g, ctx, &fi, &ch, &fused, &absorbed);
  /* After an error the rewritten nodes are complete and the absorbed ones merely
   * unused, so the graph stays valid without compacting. */
  if (st == KILN_OK && fused > 0) st = kir_graph_compact(g, fi.keep);
  kir_free(ch.steps);
  info_free(&fi);
  if (st != KILN_OK) return st;
  res->stats[0].value = fused;
  res->stats[1].value = absorbed;
  res->changed = fused > 0;
  return KILN_OK;
}
