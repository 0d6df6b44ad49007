/* kps_fuse.c — fusion. (1) A float matmul (or conv) and the chain of elementwise
 * consumers after it become one fused_matmul (fused_conv) with an epilogue; a conv's own
 * bias becomes the epilogue's first step, an add of the bias as [M, 1, .., 1] (so the
 * conv's sum is rounded to the dtype before the bias is added: one rounding more than the
 * plain conv, the only fusion that is not bit-exact). (2) A maximal linear chain of float elementwise ops
 * (each the only user of the one before) becomes one fused_elementwise loop. (3) Such a
 * chain that ends in reduce_sum/mean/max/min or softmax becomes one fused_reduce /
 * fused_softmax that computes the chain where the reduction reads it. The plan is made on
 * the unchanged graph and writes one line per candidate it refuses (the only source of
 * kps_explain_fusion's answers and of the pass log); then it is applied. A fused node
 * takes the name and place of its group's last node; a fetched node is only ever last.
 * Depends on ir/ only; the epilogue encoding is the one in ops.def. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272
#define WHY_LEN 1024

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------- facts --------- */

enum { G_MATMUL = 1, G_CHAIN = 2, G_CONV = 3 };

typedef struct group {
  int32_t kind;  /* G_MATMUL / G_CONV: members = matmul or conv, steps; G_CHAIN: steps
                    [, reduction] */
  int32_t start; /* index of the first member in fuse_info.members */
  int32_t n;     /* member count; the last one becomes the fused node */
} group;

/* Facts about the original graph, computed once before any rewrite, and the plan. */
typedef struct fuse_info {
  int32_t n_nodes;
  int32_t *uses;     /* per id: number of input slots that name it */
  int32_t *use_off;  /* per id: its consumers are use_list[use_off[id] .. use_off[id+1]) */
  int32_t *use_list; /* consumer ids, one per input slot, in id order */
  bool *root;
  int32_t *owner;    /* per id: index of the group holding it; -1 none; -2 seen */
  bool *keep;
  int32_t *members;  /* group members, back to back */
  int32_t n_members;
  group *groups;
  int32_t n_groups;
  FILE *out;         /* where refusals are written (may be NULL) */
  int32_t appended;  /* nodes appended by the rewrite (conv biases as [M, 1, .., 1]) */
} fuse_info;

static void info_free(fuse_info *fi) {
  kir_free(fi->uses);
  kir_free(fi->use_off);
  kir_free(fi->use_list);
  kir_free(fi->root);
  kir_free(fi->owner);
  kir_free(fi->keep);
  kir_free(fi->members);
  kir_free(fi->groups);
}

static kiln_status info_alloc(kir_graph *g, fuse_info *fi, size_t cnt, size_t slots) {
  fi->uses = kir_calloc(cnt, sizeof *fi->uses);
  fi->use_off = kir_calloc(cnt + 1, sizeof *fi->use_off);
  fi->use_list = kir_calloc(slots ? slots : 1, sizeof *fi->use_list);
  fi->root = kir_calloc(cnt, sizeof *fi->root);
  fi->owner = kir_calloc(cnt, sizeof *fi->owner);
  fi->keep = kir_calloc(cnt, sizeof *fi->keep);
  fi->members = kir_calloc(cnt, sizeof *fi->members);
  fi->groups = kir_calloc(cnt, sizeof *fi->groups);
  if (fi->uses && fi->use_off && fi->use_list && fi->root && fi->owner && fi->keep &&
      fi->members && fi->groups)
    return KILN_OK;
  info_free(fi);
  return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
}

static kiln_status info_init(kir_graph *g, const kps_context *ctx, FILE *out, fuse_info *fi) {
  size_t slots = 0;
  memset(fi, 0, sizeof *fi);
  for (int32_t i = 0; i < g->n_nodes; i++) slots += (size_t)g->nodes[i]->n_inputs;
  kiln_status st = info_alloc(g, fi, (size_t)g->n_nodes, slots);
  if (st != KILN_OK) return st;
  fi->n_nodes = g->n_nodes;
  fi->out = out;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    fi->owner[i] = -1;
    fi->keep[i] = true;
    for (int32_t k = 0; k < n->n_inputs; k++) fi->uses[n->inputs[k]]++;
  }
  for (int32_t i = 0; i < g->n_nodes; i++) fi->use_off[i + 1] = fi->use_off[i] + fi->uses[i];
  int32_t *fill = kir_calloc((size_t)g->n_nodes, sizeof *fill);
  if (!fill) {
    info_free(fi);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  }
  for (int32_t i = 0; i < g->n_nodes; i++) /* consumers in id order */
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) {
      int32_t in = g->nodes[i]->inputs[k];
      fi->use_list[fi->use_off[in] + fill[in]++] = i;
    }
  kir_free(fill);
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    int32_t id = kps_root_id(g, ctx, r);
    if (id >= 0) fi->root[id] = true;
  }
  return KILN_OK;
}

/* The only consumer of id (callers check uses == 1). */
static int32_t only_consumer(const fuse_info *fi, int32_t id) { return fi->use_list[fi->use_off[id]]; }

/* ---------------------------------------------------------------- op classes ---- */

/* Fused kernels (fused_elementwise, matmul/conv epilogues) take f32 and f64 only: a
 * fused chain of f16/bf16 would have to round after every member, so those stay unfused. */
static bool is_float(kiln_dtype t) { return t == KILN_F32 || t == KILN_F64; }

static bool is_ew(const kir_node *n) {
  return kir_op_has(n->op, KIR_F_ELEMENTWISE) &&
         (kir_op_has(n->op, KIR_F_UNARY) || kir_op_has(n->op, KIR_F_BINARY));
}

/* A reduction or softmax that can end a chain. */
static bool is_tail(const kir_node *n) {
  return n->op == KIR_OP_REDUCE_SUM || n->op == KIR_OP_REDUCE_MEAN || n->op == KIR_OP_REDUCE_MAX ||
         n->op == KIR_OP_REDUCE_MIN || n->op == KIR_OP_SOFTMAX;
}

/* Cheap enough to recompute for every element of a broadcast. */
static bool is_cheap(kir_op op) {
  return op == KIR_OP_ADD || op == KIR_OP_SUB || op == KIR_OP_MUL || op == KIR_OP_DIV ||
         op == KIR_OP_MAXIMUM || op == KIR_OP_MINIMUM || op == KIR_OP_NEG || op == KIR_OP_RELU ||
         op == KIR_OP_CLAMP || op == KIR_OP_ABS || op == KIR_OP_LEAKY_RELU;
}

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get(op);
  return i ? i->name : "invalid";
}

static bool same_device(const char *a, const char *b) {
  char na[64], nb[64];
  if (strcmp(a, b) == 0) return true;
  if (!a[0] || !b[0]) return false;
  return kps_device_normalize(a, na, sizeof na) && kps_device_normalize(b, nb, sizeof nb) &&
         strcmp(na, nb) == 0;
}

/* The epilogue operand of step e after c, or -1 for a unary step. */
static int32_t other_operand(const kir_node *e, int32_t c) {
  if (e->n_inputs != 2) return -1;
  return e->inputs[0] == c ? e->inputs[1] : e->inputs[0];
}

/* ---------------------------------------------------------------- refusals ------ */

static void say(const fuse_info *fi, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const fuse_info *fi, const char *fmt, ...) {
  if (!fi->out) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("fuse: ", fi->out);
  vfprintf(fi->out, fmt, ap);
  fputc('\n', fi->out);
  va_end(ap);
}

/* Appends to why (NUL-terminated, size n). */
static void add(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char *why, size_t n, const char *fmt, ...) {
  size_t len = strlen(why);
  if (len + 1 >= n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why + len, n - len, fmt, ap);
  va_end(ap);
}

/* Refusal reasons are only ever printed (say); with nowhere to print them, a fixed
 * non-empty reason stands in for the costly ones, whose formatting (escaping other nodes'
 * names, formatting types) was a tenth of the pass on big graphs. */
static bool quiet(const fuse_info *fi, char *why, size_t n) {
  if (fi->out) return false;
  snprintf(why, n, "(not shown)");
  return true;
}

/* "'c' has 3 consumers ('a', 'b')": distinct consumers, in id order, at most four. */
static void many_consumers(const kir_graph *g, const fuse_info *fi, const kir_node *c, char *why,
                           size_t n) {
  char esc[KPS_ESC];
  int32_t shown = 0;
  if (quiet(fi, why, n)) return;
  snprintf(why, n, "'%s' has %d consumers (", kir_escape(c->name, esc, sizeof esc),
           (int)fi->uses[c->id]);
  int32_t lo = fi->use_off[c->id], hi = fi->use_off[c->id + 1];
  if (fi->use_list[lo] == fi->use_list[hi - 1]) { /* one consumer, several slots */
    add(why, n, "'%s' uses it %d times)", kir_escape(g->nodes[fi->use_list[lo]]->name, esc, sizeof esc),
        (int)(hi - lo));
    return;
  }
  for (int32_t k = lo; k < hi; k++) {
    int32_t u = fi->use_list[k];
    if (k > lo && fi->use_list[k - 1] == u) continue;
    if (shown == 4) {
      add(why, n, ", ...");
      break;
    }
    add(why, n, "%s'%s'", shown ? ", " : "", kir_escape(g->nodes[u]->name, esc, sizeof esc));
    shown++;
  }
  add(why, n, ")");
}

static void device_why(const kir_node *a, const kir_node *b, char *why, size_t n) {
  char e1[KPS_ESC], e2[KPS_ESC];
  snprintf(why, n, "different device request (%s vs %s)",
           a->device[0] ? kir_escape(a->device, e1, sizeof e1) : "none",
           b->device[0] ? kir_escape(b->device, e2, sizeof e2) : "none");
}

/* ---------------------------------------------------------------- matmul plans -- */

/* Whether consumer e of c can extend the matmul chain; if not, writes why. */
static bool mm_step_ok(const kir_graph *g, const fuse_info *fi, const kir_node *mm,
                       const kir_node *c, const kir_node *e, char *why, size_t n) {
  char esc[KPS_ESC], esc2[KPS_ESC], t1[64], t2[64];
  if (fi->owner[e->id] >= 0) {
    snprintf(why, n, "'%s' is already fused into another %s", kir_escape(e->name, esc, sizeof esc),
             op_name(mm->op));
    return false;
  }
  if (!is_ew(e)) {
    snprintf(why, n, "its consumer '%s' is not elementwise (%s)",
             kir_escape(e->name, esc, sizeof esc), op_name(e->op));
    return false;
  }
  if (e->n_inputs == 2 && e->inputs[0] == c->id && e->inputs[1] == c->id) {
    snprintf(why, n, "'%s' uses '%s' twice", kir_escape(e->name, esc, sizeof esc),
             kir_escape(c->name, esc2, sizeof esc2));
    return false;
  }
  if (e->type.dtype != mm->type.dtype) {
    snprintf(why, n, "different dtype (%s)", kiln_dtype_name(e->type.dtype));
    return false;
  }
  if (!kir_type_equal(&e->type, &mm->type)) {
    if (quiet(fi, why, n)) return false;
    int32_t o = other_operand(e, c->id);
    kir_type_format(&mm->type, t1, sizeof t1);
    kir_type_format(&e->type, t2, sizeof t2);
    snprintf(why, n, "'%s' broadcasts the product from %s to %s",
             kir_escape(o >= 0 ? g->nodes[o]->name : e->name, esc, sizeof esc), t1, t2);
    return false;
  }
  if (!same_device(e->device, mm->device)) {
    device_why(mm, e, why, n);
    return false;
  }
  return true;
}

/* Members after the matmul, as far as the rule allows; why = "" if it ran out of
 * consumers naturally. */
static int32_t mm_grow(const kir_graph *g, const fuse_info *fi, const kir_node *mm, int32_t *steps,
                       char *why, size_t n) {
  const kir_node *c = mm;
  char esc[KPS_ESC];
  int32_t cnt = 0;
  why[0] = '\0';
  for (;;) {
    int32_t u = fi->uses[c->id];
    if (u == 0) return cnt;
    if (fi->root[c->id]) {
      snprintf(why, n, "'%s' is fetched", kir_escape(c->name, esc, sizeof esc));
      return cnt;
    }
    if (u > 1) {
      many_consumers(g, fi, c, why, n);
      return cnt;
    }
    const kir_node *e = g->nodes[only_consumer(fi, c->id)];
    if (!mm_step_ok(g, fi, mm, c, e, why, n)) return cnt;
    steps[cnt++] = e->id;
    c = e;
  }
}

static void add_group(fuse_info *fi, int32_t kind, const int32_t *ids, int32_t n) {
  group *gr = &fi->groups[fi->n_groups++];
  gr->kind = kind;
  gr->start = fi->n_members;
  gr->n = n;
  for (int32_t i = 0; i < n; i++) {
    fi->members[fi->n_members++] = ids[i];
    fi->owner[ids[i]] = fi->n_groups - 1;
  }
}

/* Matmuls and convs with their epilogues, in node order. */
static void plan_matmuls(const kir_graph *g, fuse_info *fi, int32_t *buf) {
  char why[WHY_LEN], esc[KPS_ESC];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *mm = g->nodes[i];
    if ((mm->op != KIR_OP_MATMUL && mm->op != KIR_OP_CONV) || !is_float(mm->type.dtype)) continue;
    buf[0] = mm->id;
    int32_t cnt = mm_grow(g, fi, mm, buf + 1, why, sizeof why);
    if (why[0]) say(fi, "stopped after '%s': %s", kir_escape(g->nodes[buf[cnt]]->name, esc, sizeof esc), why);
    if (cnt > 0) add_group(fi, mm->op == KIR_OP_CONV ? G_CONV : G_MATMUL, buf, cnt + 1);
  }
}

/* ---------------------------------------------------------------- chain plans --- */

/* Whether some consumer of c could have joined a chain (so a refusal is worth a line). */
static bool fusable_consumer(const kir_graph *g, const fuse_info *fi, const kir_node *c) {
  for (int32_t k = fi->use_off[c->id]; k < fi->use_off[c->id + 1]; k++) {
    const kir_node *u = g->nodes[fi->use_list[k]];
    if (is_ew(u) || is_tail(u)) return true;
  }
  return false;
}

/* The first expensive op among the chain's members, or NULL. */
static const kir_node *first_costly(const kir_graph *g, const int32_t *ids, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (!is_cheap(g->nodes[ids[i]]->op)) return g->nodes[ids[i]];
  return NULL;
}

/* Whether e (an elementwise or tail consumer of c, the chain's last member) may join. */
static bool chain_step_ok(const kir_graph *g, const fuse_info *fi, const int32_t *ids, int32_t cnt,
                          const kir_node *e, char *why, size_t n) {
  char esc[KPS_ESC], esc2[KPS_ESC], t1[64], t2[64];
  const kir_node *head = g->nodes[ids[0]], *c = g->nodes[ids[cnt - 1]];
  if (fi->owner[e->id] >= 0) {
    const group *gr = &fi->groups[fi->owner[e->id]];
    char esc3[KPS_ESC];
    snprintf(why, n, "'%s' is already in the group '%s' .. '%s'", kir_escape(e->name, esc, sizeof esc),
             kir_escape(g->nodes[fi->members[gr->start]]->name, esc2, sizeof esc2),
             kir_escape(g->nodes[fi->members[gr->start + gr->n - 1]]->name, esc3, sizeof esc3));
    return false;
  }
  if (e->n_inputs == 2 && e->inputs[0] == c->id && e->inputs[1] == c->id) {
    snprintf(why, n, "'%s' uses '%s' twice", kir_escape(e->name, esc, sizeof esc),
             kir_escape(c->name, esc2, sizeof esc2));
    return false;
  }
  if (e->type.dtype != c->type.dtype) {
    snprintf(why, n, "'%s' is %s, the chain %s", kir_escape(e->name, esc, sizeof esc),
             kiln_dtype_name(e->type.dtype), kiln_dtype_name(c->type.dtype));
    return false;
  }
  if (!same_device(e->device, head->device)) {
    device_why(head, e, why, n);
    return false;
  }
  const kir_node *costly = first_costly(g, ids, cnt);
  if (is_ew(e) && !kir_type_equal(&e->type, &c->type) && costly) {
    if (quiet(fi, why, n)) return false;
    int32_t o = other_operand(e, c->id);
    kir_type_format(&c->type, t1, sizeof t1);
    kir_type_format(&e->type, t2, sizeof t2);
    snprintf(why, n, "'%s' would broadcast the chain from %s to %s, recomputing '%s' (%s) "
             "per element", kir_escape(o >= 0 ? g->nodes[o]->name : e->name, esc, sizeof esc),
             t1, t2, kir_escape(costly->name, esc2, sizeof esc2), op_name(costly->op));
    return false;
  }
  return true;
}

/* Grows a chain from ids[0]; returns its member count (a tail, if any, is last). why is
 * set when a fusable consumer was refused. */
static int32_t chain_grow(const kir_graph *g, const fuse_info *fi, int32_t *ids, char *why,
                          size_t n) {
  char esc[KPS_ESC];
  int32_t cnt = 1;
  why[0] = '\0';
  for (;;) {
    const kir_node *c = g->nodes[ids[cnt - 1]];
    if (is_tail(c) || fi->uses[c->id] == 0) return cnt;
    if (fi->root[c->id]) {
      if (fusable_consumer(g, fi, c))
        snprintf(why, n, "'%s' is fetched", kir_escape(c->name, esc, sizeof esc));
      return cnt;
    }
    if (fi->uses[c->id] > 1) {
      if (fusable_consumer(g, fi, c)) many_consumers(g, fi, c, why, n);
      return cnt;
    }
    const kir_node *e = g->nodes[only_consumer(fi, c->id)];
    if (!is_ew(e) && !is_tail(e)) return cnt;
    if (!chain_step_ok(g, fi, ids, cnt, e, why, n)) return cnt;
    ids[cnt++] = e->id;
  }
}

static void chain_list(const kir_graph *g, const int32_t *ids, int32_t n, char *buf, size_t len) {
  char esc[KPS_ESC];
  buf[0] = '\0';
  for (int32_t i = 0; i < n; i++)
    add(buf, len, "%s'%s'", i ? " -> " : "", kir_escape(g->nodes[ids[i]]->name, esc, sizeof esc));
}

static void plan_chains(const kir_graph *g, fuse_info *fi, int32_t *buf) {
  char why[WHY_LEN], list[WHY_LEN] = "", esc[KPS_ESC];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *h = g->nodes[i];
    if (fi->owner[i] != -1 || !is_ew(h)) continue;
    buf[0] = i;
    int32_t cnt = chain_grow(g, fi, buf, why, sizeof why);
    if (!is_float(h->type.dtype)) {
      if (cnt < 2) continue;
      for (int32_t k = 0; k < cnt; k++) fi->owner[buf[k]] = -2; /* said once per chain */
      if (fi->out) chain_list(g, buf, cnt, list, sizeof list); /* only said */
      bool half = h->type.dtype == KILN_F16 || h->type.dtype == KILN_BF16;
      say(fi, "%s not fused: %s chain: fused_elementwise %s", list, kiln_dtype_name(h->type.dtype),
          half ? "takes f32/f64 only" : "is float-only");
      continue;
    }
    if (why[0])
      say(fi, "stopped after '%s': %s", kir_escape(g->nodes[buf[cnt - 1]]->name, esc, sizeof esc), why);
    if (cnt > 1) add_group(fi, G_CHAIN, buf, cnt);
  }
}

/* The whole plan: matmul epilogues first (they save the most), then chains. */
static kiln_status make_plan(kir_graph *g, const kps_context *ctx, FILE *out, fuse_info *fi) {
  kiln_status st = info_init(g, ctx, out, fi);
  if (st != KILN_OK) return st;
  int32_t *buf = kir_calloc((size_t)g->n_nodes, sizeof *buf);
  if (!buf) {
    info_free(fi);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  }
  plan_matmuls(g, fi, buf);
  plan_chains(g, fi, buf);
  kir_free(buf);
  return KILN_OK;
}

/* ---------------------------------------------------------------- rewriting ----- */

typedef struct epi_attrs {
  int64_t *op, *operand, *swap;
  double *lo, *hi;
  const char **from;
  int32_t *inputs;
  int32_t n_steps, n_in, n_from;
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

static bool epi_alloc(epi_attrs *a, int32_t members) {
  size_t n = (size_t)members;
  memset(a, 0, sizeof *a);
  a->op = kir_calloc(n, sizeof *a->op);
  a->operand = kir_calloc(n, sizeof *a->operand);
  a->swap = kir_calloc(n, sizeof *a->swap);
  a->lo = kir_calloc(n, sizeof *a->lo);
  a->hi = kir_calloc(n, sizeof *a->hi);
  a->from = kir_calloc(n, sizeof *a->from);
  a->inputs = kir_calloc(n + 2, sizeof *a->inputs);
  return a->op && a->operand && a->swap && a->lo && a->hi && a->from && a->inputs;
}

/* Index of input id among the operand inputs (from `first` on), appending it if new
 * (dedupe) or always (!dedupe, fused_matmul's historical encoding). */
static int32_t operand_index(epi_attrs *a, int32_t id, int32_t first, bool dedupe) {
  for (int32_t k = first; dedupe && k < a->n_in; k++)
    if (a->inputs[k] == id) return k;
  a->inputs[a->n_in] = id;
  return a->n_in++;
}

/* A step's clamp_min slot (ops.def): clamp's lower bound, leaky_relu's alpha, gelu's
 * approximate; NaN for the other ops. */
static double step_param(const kir_node *e) {
  if (e->op == KIR_OP_CLAMP) return kir_attr_float(e, "min", NAN);
  if (e->op == KIR_OP_LEAKY_RELU) return kir_attr_float(e, "alpha", 0.01);
  if (e->op == KIR_OP_GELU) return (double)kir_attr_int(e, "approximate", 0);
  return NAN;
}

/* One epilogue step per elementwise node in ids, the value flowing in from prev. */
static void epi_steps(const kir_graph *g, const int32_t *ids, int32_t n, int32_t prev,
                      int32_t first, bool dedupe, epi_attrs *a) {
  for (int32_t s = 0; s < n; s++) {
    const kir_node *e = g->nodes[ids[s]];
    int32_t o = other_operand(e, prev), k = a->n_steps++;
    a->op[k] = e->op;
    a->swap[k] = o >= 0 && e->inputs[1] == prev && e->inputs[0] != prev; /* x*x: no swap */
    a->operand[k] = o >= 0 ? operand_index(a, o, first, dedupe) : -1;
    a->lo[k] = step_param(e);
    a->hi[k] = e->op == KIR_OP_CLAMP ? kir_attr_float(e, "max", NAN) : NAN;
    a->from[a->n_from++] = e->name;
    prev = e->id;
  }
}

/* Fills inputs and epilogue for a group; returns the fused op. bias: a conv group's bias
 * as [M, 1, .., 1] (its first step), or -1. */
static kir_op epi_fill(const kir_graph *g, const group *gr, const int32_t *ids, int32_t bias,
                       epi_attrs *a) {
  const kir_node *first = g->nodes[ids[0]], *last = g->nodes[ids[gr->n - 1]];
  if (gr->kind == G_CONV) {
    a->inputs[a->n_in++] = first->inputs[0];
    a->inputs[a->n_in++] = first->inputs[1];
    a->from[a->n_from++] = first->name;
    if (bias >= 0) {
      int32_t k = a->n_steps++;
      a->op[k] = KIR_OP_ADD;
      a->operand[k] = operand_index(a, bias, 2, true);
      a->swap[k] = 0;
      a->lo[k] = a->hi[k] = NAN;
    }
    epi_steps(g, ids + 1, gr->n - 1, first->id, 2, true, a);
    return KIR_OP_FUSED_CONV;
  }
  if (gr->kind == G_MATMUL) {
    a->inputs[a->n_in++] = first->inputs[0];
    a->inputs[a->n_in++] = first->inputs[1];
    a->from[a->n_from++] = first->name;
    epi_steps(g, ids + 1, gr->n - 1, first->id, 2, false, a);
    return KIR_OP_FUSED_MATMUL;
  }
  /* x0 is the head's first input; the head itself is step 0 */
  a->inputs[a->n_in++] = first->inputs[0];
  bool tail = is_tail(last);
  epi_steps(g, ids, tail ? gr->n - 1 : gr->n, first->inputs[0], 1, true, a);
  if (!tail) return KIR_OP_FUSED_ELEMENTWISE;
  a->from[a->n_from++] = last->name;
  return last->op == KIR_OP_SOFTMAX ? KIR_OP_FUSED_SOFTMAX : KIR_OP_FUSED_REDUCE;
}

/* Copies attribute `name` of src onto f when src has it. */
static kiln_status copy_attr(kir_graph *g, kir_node *f, const kir_node *src, const char *name) {
  const kir_attr *at = kir_attr_find(src, name);
  if (!at) return KILN_OK;
  if (at->kind == KIR_ATTR_INTS) return kir_attr_set_ints(g, f, name, at->u.ints.v, at->u.ints.n);
  return kir_attr_set_int(g, f, name, at->u.i);
}

static kiln_status set_attrs(kir_graph *g, kir_node *f, const kir_node *first,
                             const kir_node *last, const epi_attrs *a) {
  kiln_status st = KILN_OK;
  int32_t n = a->n_steps;
  if (f->op == KIR_OP_FUSED_MATMUL) {
    st = copy_attr(g, f, first, "transpose_a");
    if (st == KILN_OK) st = copy_attr(g, f, first, "transpose_b");
  } else if (f->op == KIR_OP_FUSED_CONV) {
    static const char *const conv_attrs[] = {"strides", "pads", "dilations", "group"};
    for (int32_t i = 0; i < 4 && st == KILN_OK; i++) st = copy_attr(g, f, first, conv_attrs[i]);
  } else if (f->op == KIR_OP_FUSED_REDUCE) {
    st = kir_attr_set_int(g, f, "reduce", last->op);
    if (st == KILN_OK) st = copy_attr(g, f, last, "axes");
    if (st == KILN_OK) st = copy_attr(g, f, last, "keep_dims");
  } else if (f->op == KIR_OP_FUSED_SOFTMAX) {
    st = copy_attr(g, f, last, "axis");
  }
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "epilogue", a->op, n);
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "operand", a->operand, n);
  if (st == KILN_OK) st = kir_attr_set_ints(g, f, "swap", a->swap, n);
  if (st == KILN_OK) st = kir_attr_set_floats(g, f, "clamp_min", a->lo, n);
  if (st == KILN_OK) st = kir_attr_set_floats(g, f, "clamp_max", a->hi, n);
  if (st == KILN_OK) st = kir_attr_set_strings(g, f, "fused_from", a->from, a->n_from);
  return st;
}

static kiln_status type_mismatch(kir_graph *g, const kir_node *f, const kir_type *want) {
  char esc[KPS_ESC], t1[64], t2[64];
  kir_type_format(want, t1, sizeof t1);
  kir_type_format(&f->type, t2, sizeof t2);
  return kir_seterr(g, KILN_ERR_INTERNAL, "fused node '%s' has type %s, the group had %s",
                    kir_escape(f->name, esc, sizeof esc), t2, t1);
}

/* Rewrites the group's last node in place into the fused node (so its name, and every
 * use of it, carry over). Transactional: on failure the node is as before. */
static kiln_status rewrite_last(kir_graph *g, const kir_node *first, kir_node *f, kir_op op,
                                const epi_attrs *a, kir_node *saved_out) {
  kir_node saved = *f;
  *saved_out = saved;
  int32_t *inputs = kir_graph_alloc(g, (size_t)a->n_in * sizeof *inputs);
  if (!inputs) return g->status ? g->status : KILN_ERR_NOMEM;
  memcpy(inputs, a->inputs, (size_t)a->n_in * sizeof *inputs);
  f->op = op;
  f->inputs = inputs;
  f->n_inputs = a->n_in;
  f->n_attrs = 0;
  f->attrs = NULL;
  f->device = first->device;
  f->assigned_device = first->assigned_device;
  f->placement_reason = first->placement_reason;
  kiln_status st = set_attrs(g, f, first, &saved, a);
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

/* base + suffix, or base + suffix + ".k", the first that is not a node name yet. */
static const char *fresh_name(const kir_graph *g, const char *base, const char *suffix,
                              char *buf, size_t n) {
  if (strlen(base) + strlen(suffix) + 16 > KIR_MAX_NAME) base = "fuse";
  snprintf(buf, n, "%s%s", base, suffix);
  for (int32_t k = 1; kir_graph_find(g, buf) && k <= g->n_nodes + 1; k++)
    snprintf(buf, n, "%s%s.%d", base, suffix, (int)k);
  return buf;
}

/* The new node's value: a constant bias reshaped (a copy of its tensor), else a reshape
 * of the bias. On failure nothing is appended. */
static kiln_status bias_node(kir_graph *g, const kir_node *conv, const kir_node *b,
                             const int64_t *shape, int32_t rank, kir_node **out) {
  char name[KIR_MAX_NAME + 1];
  const kir_tensor *bt = b->op == KIR_OP_CONSTANT ? kir_attr_tensor(b, "value") : NULL;
  fresh_name(g, conv->name, "/bias", name, sizeof name);
  kir_node *n = kir_node_add(g, bt ? KIR_OP_CONSTANT : KIR_OP_RESHAPE, name, &b->id, bt ? 0 : 1);
  if (!n) return g->status != KILN_OK ? g->status : KILN_ERR_NOMEM;
  kiln_status st;
  if (bt) {
    kir_tensor view = *bt; /* the same bytes under the new shape */
    view.type.rank = rank;
    memcpy(view.type.dims, shape, (size_t)rank * sizeof *shape);
    st = kir_attr_set_tensor(g, n, "value", &view);
  } else {
    st = kir_attr_set_ints(g, n, "shape", shape, rank);
  }
  n->device = conv->device;
  n->assigned_device = conv->assigned_device;
  n->placement_reason = conv->placement_reason;
  if (st == KILN_OK) st = kir_infer_node(g, n);
  if (st != KILN_OK) kir_graph_pop_node(g);
  else *out = n;
  return st;
}

/* A conv's bias [M] as a new node of shape [M, 1, .., 1] (appended: the graph is sorted
 * after the rewrites); -1 in *id when the conv has none. A bias constant left unused is
 * dropped with the absorbed nodes. */
static kiln_status conv_bias(kir_graph *g, fuse_info *fi, const kir_node *conv, int32_t *id) {
  *id = -1;
  if (conv->n_inputs < 3) return KILN_OK;
  const kir_node *b = g->nodes[conv->inputs[2]];
  int64_t shape[KILN_MAX_RANK];
  int32_t rank = conv->type.rank - 1;
  if (rank < 1 || b->type.rank != 1) return kir_seterr(g, KILN_ERR_INTERNAL, "fuse: conv bias of rank %d", (int)b->type.rank);
  shape[0] = conv->type.dims[1];
  for (int32_t i = 1; i < rank; i++) shape[i] = 1;
  kir_node *n = NULL;
  kiln_status st = bias_node(g, conv, b, shape, rank, &n);
  if (st != KILN_OK) return st;
  fi->appended++;
  *id = n->id;
  if (n->op == KIR_OP_CONSTANT && fi->uses[b->id] == 1 && !fi->root[b->id]) fi->keep[b->id] = false;
  return KILN_OK;
}

static kiln_status apply_group(kir_graph *g, fuse_info *fi, const group *gr, kir_node *saved) {
  const int32_t *ids = fi->members + gr->start;
  int32_t bias = -1;
  kiln_status st0 = gr->kind == G_CONV ? conv_bias(g, fi, g->nodes[ids[0]], &bias) : KILN_OK;
  if (st0 != KILN_OK) return st0;
  epi_attrs a;
  if (!epi_alloc(&a, gr->n)) {
    epi_free(&a);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  }
  kir_op op = epi_fill(g, gr, ids, bias, &a);
  kiln_status st = rewrite_last(g, g->nodes[ids[0]], g->nodes[ids[gr->n - 1]], op, &a, saved);
  epi_free(&a);
  if (st != KILN_OK) return st;
  for (int32_t s = 0; s + 1 < gr->n; s++) fi->keep[ids[s]] = false;
  return KILN_OK;
}

/* ---------------------------------------------------------------- the pass ------ */

kiln_status kps_explain_fusion(kir_graph *g, const kps_context *ctx, FILE *out) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!ctx) return kir_seterr(g, KILN_ERR_ARGUMENT, "kps_explain_fusion: NULL context");
  if (g->n_nodes == 0) return KILN_OK;
  fuse_info fi;
  kiln_status st = make_plan(g, ctx, out, &fi);
  if (st == KILN_OK) info_free(&fi);
  return st;
}

/* Drops the absorbed nodes (fi->keep covers the original nodes) and sorts appended nodes
 * (conv biases) into place, in one step that leaves the graph unchanged on failure:
 * *committed says whether it changed for good. */
static kiln_status finish(kir_graph *g, const fuse_info *fi, bool *committed) {
  bool *keep = kir_malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
  kiln_status st = keep ? KILN_OK : kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; st == KILN_OK && i < g->n_nodes; i++) keep[i] = i >= fi->n_nodes || fi->keep[i];
  if (st == KILN_OK) st = kir_graph_sort_compact(g, keep);
  *committed = st == KILN_OK;
  kir_free(keep);
  return st;
}

/* After an error: the rewritten nodes restored (latest first) and appended nodes popped,
 * so the graph is as it was. Allocates nothing. */
static void undo(kir_graph *g, const fuse_info *fi, const int32_t *done, const kir_node *saved,
                 int32_t n_done) {
  for (int32_t i = n_done - 1; i >= 0; i--) *g->nodes[done[i]] = saved[i];
  while (g->n_nodes > fi->n_nodes) kir_graph_pop_node(g);
}

kiln_status kps_fuse(kir_graph *g, const kps_context *ctx, kps_result *res) {
  int64_t count[4] = {0, 0, 0, 0}, absorbed = 0;
  res->n_stats = 5;
  res->stats[0] = (kps_stat){"matmuls fused", 0};
  res->stats[1] = (kps_stat){"ops absorbed", 0};
  res->stats[2] = (kps_stat){"chains fused", 0};
  res->stats[3] = (kps_stat){"reductions fused", 0};
  res->stats[4] = (kps_stat){"convs fused", 0};
  if (g->n_nodes == 0) return KILN_OK;
  fuse_info fi;
  kiln_status st = make_plan(g, ctx, ctx->log, &fi);
  if (st != KILN_OK) return st;
  kir_node *saved = kir_calloc((size_t)fi.n_groups + 1, sizeof *saved);
  int32_t *done = kir_calloc((size_t)fi.n_groups + 1, sizeof *done), n_done = 0;
  if (!saved || !done) st = kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  /* Each rewrite reads only nodes no earlier rewrite changed (members of one group are
   * nobody else's operands, and a rewritten node keeps its id, name and type). After an
   * error every rewrite is undone (conv biases may have been appended after their
   * users), so the graph is as it was. */
  for (int32_t i = 0; i < fi.n_groups && st == KILN_OK; i++) {
    const group *gr = &fi.groups[i];
    int32_t last_id = fi.members[gr->start + gr->n - 1];
    st = apply_group(g, &fi, gr, &saved[n_done]);
    if (st != KILN_OK) break;
    done[n_done++] = last_id;
    const kir_node *last = g->nodes[fi.members[gr->start + gr->n - 1]];
    count[gr->kind == G_MATMUL ? 0 : gr->kind == G_CONV ? 3 : last->op == KIR_OP_FUSED_ELEMENTWISE ? 1 : 2]++;
    absorbed += gr->n - 1;
  }
  bool committed = false;
  if (st == KILN_OK && fi.n_groups > 0) st = finish(g, &fi, &committed);
  if (st != KILN_OK && !committed) undo(g, &fi, done, saved, n_done);
  kir_free(saved);
  kir_free(done);
  info_free(&fi);
  if (st != KILN_OK) return st;
  res->stats[0].value = count[0];
  res->stats[1].value = absorbed;
  res->stats[2].value = count[1];
  res->stats[3].value = count[2];
  res->stats[4].value = count[3];
  res->changed = fi.n_groups > 0;
  return KILN_OK;
}
