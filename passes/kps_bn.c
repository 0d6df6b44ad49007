/* kps_bn.c — fold-batchnorm: a batch_norm with constant parameters is folded into the
 * constant weights of the conv (or rank-2 matmul, alone or plus a constant as ONNX Gemm
 * imports) that is its only producer, or else rewritten as x * s + t with constants of
 * shape [C, 1, .., 1] that fuse can fuse. Arithmetic in double, rounded once to the
 * dtype. On an error the graph is left as it was. Depends on ir/ only.
 *
 * With s = scale / sqrt(var + epsilon) per channel c:
 *   conv(x, w[, b]) -> bn   becomes conv(x, w', b')   w'[c,...] = w[c,...] * s[c]
 *                                                     b'[c] = (b[c] - mean[c]) * s[c] + bias[c]
 *   matmul(A, B) -> bn      becomes add(matmul(A, B'), b')   (B's columns of op(B) scaled)
 *   add(matmul(A, B), c)    likewise, with b' = (c - mean) * s + bias
 *   anything else           becomes add(mul(x, s), t)        t = bias - mean * s
 * The batch_norm node keeps its name (it may be a root) and becomes the conv / the add.
 * Folding needs the producer and its weight to have no other consumer and no root among
 * them, and both nodes to request the same device; otherwise the scale+shift form is
 * used, and the log says why. New nodes are appended, then the graph is sorted. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272
#define BN_WHY 640

#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef struct bn_pass {
  kir_graph *g;
  FILE *log;
  bool *root;        /* per original node id */
  int32_t *uses;     /* per original node id: input slots naming it */
  bool *candidate;   /* per node id (cap): may be dropped if left unused */
  int32_t n;         /* original node count */
  int32_t cap;       /* n + 3 per batch_norm: every node id the pass can create */
  int32_t appended;  /* nodes appended */
  int64_t folded, rewritten;
  struct bn_undo *undo; /* one per completed rewrite, to restore the graph on an error */
  int32_t n_undo;
} bn_pass;

/* A completed rewrite: bn as it was; a matmul whose weight input was replaced. */
typedef struct bn_undo {
  kir_node *bn;
  kir_node saved;
  kir_node *mm;
  int32_t mm_old_w;
} bn_undo;

/* The per-channel factors of one batch_norm: s = scale / sqrt(var + eps); t = bias -
 * mean * s; mean and bias kept for the conv bias formula. */
typedef struct bn_factors {
  int64_t c;
  double *s, *t, *mean, *bias;
} bn_factors;

static void factors_free(bn_factors *f) {
  kir_free(f->s);
  kir_free(f->t);
  kir_free(f->mean);
  kir_free(f->bias);
}

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get((int32_t)op);
  return i ? i->name : "invalid";
}

static bool is_float(kiln_dtype t) { return t == KILN_F32 || t == KILN_F64; }

static void say(const bn_pass *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const bn_pass *P, const char *fmt, ...) {
  if (!P->log) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("fold-batchnorm: ", P->log);
  vfprintf(P->log, fmt, ap);
  fputc('\n', P->log);
  va_end(ap);
}

static kiln_status nomem(kir_graph *g) {
  return kir_seterr(g, KILN_ERR_NOMEM, "fold-batchnorm: out of memory");
}

/* ---------------------------------------------------------------- tensors ------- */

static void set_f(kir_tensor *t, int64_t i, double v) { kir_tensor_set_f(t, i, v); }

static const kir_tensor *const_value(const kir_node *n) {
  return n->op == KIR_OP_CONSTANT ? kir_attr_tensor(n, "value") : NULL;
}

/* ---------------------------------------------------------------- factors ------- */

static const char *const PARAM[5] = {"input", "scale", "bias", "mean", "var"};

/* Whether input k (1..4) of bn is a constant [C] of bn's dtype; else writes why. */
static bool param_ok(const kir_graph *g, const kir_node *bn, int32_t k, int64_t c, char *why, size_t n) {
  const kir_node *p = g->nodes[bn->inputs[k]];
  const kir_tensor *t = const_value(p);
  char esc[KPS_ESC];
  if (!t) {
    snprintf(why, n, "its %s '%s' is not a constant", PARAM[k], kir_escape(p->name, esc, sizeof esc));
    return false;
  }
  if (t->type.dtype != bn->type.dtype || t->type.rank != 1 || t->type.dims[0] != c) {
    snprintf(why, n, "its %s '%s' is not of shape [%lld]", PARAM[k], kir_escape(p->name, esc, sizeof esc),
             (long long)c);
    return false;
  }
  return true;
}

static kiln_status factors_make(kir_graph *g, const kir_node *bn, bn_factors *f) {
  const kir_tensor *sc = const_value(g->nodes[bn->inputs[1]]), *bi = const_value(g->nodes[bn->inputs[2]]);
  const kir_tensor *me = const_value(g->nodes[bn->inputs[3]]), *va = const_value(g->nodes[bn->inputs[4]]);
  double eps = kir_attr_float(bn, "epsilon", 1e-5);
  size_t cnt = (size_t)f->c + 1;
  f->s = kir_calloc(cnt, sizeof *f->s);
  f->t = kir_calloc(cnt, sizeof *f->t);
  f->mean = kir_calloc(cnt, sizeof *f->mean);
  f->bias = kir_calloc(cnt, sizeof *f->bias);
  if (!f->s || !f->t || !f->mean || !f->bias) return nomem(g);
  for (int64_t i = 0; i < f->c; i++) {
    f->mean[i] = kir_tensor_get_f(me, i);
    f->bias[i] = kir_tensor_get_f(bi, i);
    f->s[i] = kir_tensor_get_f(sc, i) / sqrt(kir_tensor_get_f(va, i) + eps);
    f->t[i] = f->bias[i] - f->mean[i] * f->s[i];
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- new nodes ----- */

/* base + suffix, or base + suffix + ".k", the first that is not a node name yet. */
static const char *fresh_name(const kir_graph *g, const char *base, const char *suffix,
                              char *buf, size_t n) {
  if (strlen(base) + strlen(suffix) + 16 > KIR_MAX_NAME) base = "fold-batchnorm";
  snprintf(buf, n, "%s%s", base, suffix);
  for (int32_t k = 1; kir_graph_find(g, buf) && k <= g->n_nodes + 1; k++)
    snprintf(buf, n, "%s%s.%d", base, suffix, (int)k);
  return buf;
}

/* Appends op(in) named after bn (devices copied from bn), with tensor `value` when given,
 * typed. On failure nothing is appended. */
static kiln_status append(bn_pass *P, const kir_node *bn, kir_op op, const char *suffix,
                          const int32_t *in, int32_t n_in, const kir_tensor *value, kir_node **out) {
  kir_graph *g = P->g;
  char name[KIR_MAX_NAME + 1];
  kir_node *n = kir_node_add(g, op, fresh_name(g, bn->name, suffix, name, sizeof name), in, n_in);
  if (!n) return g->status != KILN_OK ? g->status : nomem(g);
  n->device = bn->device;
  n->assigned_device = bn->assigned_device;
  n->placement_reason = bn->placement_reason;
  kiln_status st = value ? kir_attr_set_tensor(g, n, "value", value) : KILN_OK;
  if (st == KILN_OK) st = kir_infer_node(g, n);
  if (st != KILN_OK) {
    kir_graph_pop_node(g);
    return st;
  }
  P->appended++;
  *out = n;
  return KILN_OK;
}

/* A constant named after bn holding v[c] as shape [C] (rank 1) or [C, 1, .., 1]. */
static kiln_status channel_const(bn_pass *P, const kir_node *bn, const char *suffix, const double *v,
                                 int64_t c, int32_t rank, kir_node **out) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = bn->type.dtype;
  t.rank = rank;
  t.dims[0] = c;
  for (int32_t i = 1; i < rank; i++) t.dims[i] = 1;
  kir_tensor *x = kir_tensor_new(&t);
  if (!x) return nomem(P->g);
  for (int64_t i = 0; i < c; i++) set_f(x, i, v[i]);
  kiln_status st = append(P, bn, KIR_OP_CONSTANT, suffix, NULL, 0, x, out);
  kir_tensor_free(x);
  return st;
}

/* Pops what this rewrite appended (n_before: the node count before it). */
static void pop_to(bn_pass *P, int32_t n_before) {
  while (P->g->n_nodes > n_before) {
    kir_graph_pop_node(P->g);
    P->appended--;
  }
}

/* Turns bn in place into op(in) with the attributes of `attrs_from` (or none). On
 * failure bn is as before. */
static kiln_status become(kir_graph *g, kir_node *bn, kir_op op, const int32_t *in, int32_t n_in,
                          const kir_node *attrs_from) {
  kir_node saved = *bn;
  int32_t *inputs = kir_graph_alloc(g, (size_t)n_in * sizeof *inputs);
  if (!inputs) return g->status != KILN_OK ? g->status : nomem(g);
  memcpy(inputs, in, (size_t)n_in * sizeof *inputs);
  bn->op = op;
  bn->inputs = inputs;
  bn->n_inputs = n_in;
  bn->n_attrs = 0;
  bn->attrs = NULL;
  kiln_status st = attrs_from ? kir_attr_copy_all(g, bn, attrs_from) : KILN_OK;
  if (st == KILN_OK) st = kir_infer_node(g, bn);
  if (st == KILN_OK && !kir_type_equal(&bn->type, &saved.type)) {
    char esc[KPS_ESC];
    st = kir_seterr(g, KILN_ERR_INTERNAL, "fold-batchnorm: rewriting '%s' changed its type",
                    kir_escape(saved.name, esc, sizeof esc));
  }
  if (st != KILN_OK) {
    char msg[sizeof g->error];
    memcpy(msg, g->error, sizeof msg);
    *bn = saved;
    kir_seterr(g, st, "%s", msg);
  }
  return st;
}

/* The inputs of bn (and of a producer it replaces) may go once they are unused. */
static void mark_candidates(bn_pass *P, const kir_node *n) {
  for (int32_t k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] < P->cap) P->candidate[n->inputs[k]] = true;
}

/* Uses and root flags of original nodes; a node this pass appended (a folded weight, when
 * batch_norms follow each other) has its one consumer and is no root. */
static int32_t uses_of(const bn_pass *P, int32_t id) { return id < P->n ? P->uses[id] : 1; }
static bool root_of(const bn_pass *P, int32_t id) { return id < P->n && P->root[id]; }

/* ---------------------------------------------------------------- folding ------- */

/* What a batch_norm folds into: p, its input; w_holder, the conv or matmul whose
 * constant weight is scaled (p itself, or the matmul of p = add(matmul, c)); c, the
 * constant added after a matmul (ONNX Gemm with a bias), else NULL. */
typedef struct bn_target {
  kir_node *p, *mm;
  const kir_node *c;
} bn_target;

/* Whether node q (p, or the matmul under it) may be rewritten; else writes why. */
static bool node_ok(const bn_pass *P, const kir_node *bn, const kir_node *q, char *why, size_t n) {
  char esc[KPS_ESC];
  kir_escape(q->name, esc, sizeof esc);
  if (root_of(P, q->id)) return snprintf(why, n, "'%s' is fetched", esc), false;
  if (uses_of(P, q->id) != 1) return snprintf(why, n, "'%s' has %d consumers", esc, (int)uses_of(P, q->id)), false;
  if (strcmp(q->device, bn->device) != 0) return snprintf(why, n, "'%s' requests another device", esc), false;
  return true;
}

/* p = add(matmul, c) (either order) with c a constant of rank <= 2 that does not
 * broadcast the product: the matmul in t->mm, c in t->c. */
static bool gemm_add(const kir_graph *g, bn_target *t, char *why, size_t n) {
  char esc[KPS_ESC];
  for (int32_t k = 0; k < 2 && t->p->n_inputs == 2; k++) {
    kir_node *m = g->nodes[t->p->inputs[k]];
    const kir_node *c = g->nodes[t->p->inputs[1 - k]];
    if (m->op != KIR_OP_MATMUL || !const_value(c) || c->type.rank > 2) continue;
    if (!kir_type_equal(&m->type, &t->p->type)) continue;
    t->mm = m;
    t->c = c;
    return true;
  }
  snprintf(why, n, "its input '%s' is an add, not of a matmul and a constant of rank <= 2",
           kir_escape(t->p->name, esc, sizeof esc));
  return false;
}

/* Whether bn's producer can absorb it (filling t); else writes why. */
static bool foldable(const bn_pass *P, const kir_node *bn, bn_target *t, char *why, size_t n) {
  const kir_graph *g = P->g;
  char esc[KPS_ESC];
  kir_node *p = t->p;
  kir_escape(p->name, esc, sizeof esc);
  t->mm = p;
  t->c = NULL;
  if (p->op != KIR_OP_CONV && p->op != KIR_OP_MATMUL && p->op != KIR_OP_ADD)
    return snprintf(why, n, "its input '%s' is a %s, not a conv or matmul", esc, op_name(p->op)), false;
  if (!node_ok(P, bn, p, why, n)) return false;
  if (p->op == KIR_OP_ADD && (!gemm_add(g, t, why, n) || !node_ok(P, bn, t->mm, why, n))) return false;
  const kir_node *mm = t->mm, *w = g->nodes[mm->inputs[1]];
  char wesc[KPS_ESC];
  kir_escape(mm->name, esc, sizeof esc);
  kir_escape(w->name, wesc, sizeof wesc);
  if (!const_value(w)) return snprintf(why, n, "the weight '%s' of '%s' is not a constant", wesc, esc), false;
  if (uses_of(P, w->id) != 1 || root_of(P, w->id))
    return snprintf(why, n, "the weight '%s' of '%s' has another use", wesc, esc), false;
  if (mm->op == KIR_OP_MATMUL && (mm->type.rank != 2 || w->type.rank != 2))
    return snprintf(why, n, "'%s' is not a rank-2 matmul (its axis 1 is not the channel)", esc), false;
  if (mm->op == KIR_OP_CONV && mm->n_inputs > 2 && !const_value(g->nodes[mm->inputs[2]]))
    return snprintf(why, n, "the bias of '%s' is not a constant", esc), false;
  return true;
}

/* w' of a conv: output channel m is w's leading index. */
static void scale_conv_weight(kir_tensor *w, const bn_factors *f) {
  int64_t total = kir_type_numel(&w->type), per = f->c > 0 ? total / f->c : 0;
  for (int64_t i = 0; i < total; i++) set_f(w, i, kir_tensor_get_f(w, i) * f->s[i / per]);
}

/* B' of a matmul: channel m is column m of op(B), i.e. B's column (or its row when
 * transpose_b). */
static void scale_matmul_weight(kir_tensor *b, const bn_factors *f, bool tb) {
  int64_t rows = b->type.dims[0], cols = b->type.dims[1];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      int64_t i = r * cols + c;
      set_f(b, i, kir_tensor_get_f(b, i) * f->s[tb ? r : c]);
    }
}

/* The folded bias b' = (b - mean) * s + bias per channel, b the conv's bias or the
 * constant added after a matmul (0 when there is none), broadcast against [C]: shape [C],
 * or [R, C] when that constant is [R, k]. A new constant named after bn. */
static kiln_status folded_bias(bn_pass *P, const kir_node *bn, const bn_target *t, const bn_factors *f,
                               kir_node **out) {
  const kir_graph *g = P->g;
  const kir_tensor *b = t->c ? const_value(t->c)
                      : t->mm->op == KIR_OP_CONV && t->mm->n_inputs > 2 ? const_value(g->nodes[t->mm->inputs[2]])
                                                                       : NULL;
  int64_t rows = b && b->type.rank == 2 ? b->type.dims[0] : 1;
  int64_t bcols = !b || b->type.rank == 0 ? 1 : b->type.dims[b->type.rank - 1];
  int64_t dims[2] = {rows, f->c};
  kir_type ty;
  memset(&ty, 0, sizeof ty);
  ty.dtype = bn->type.dtype;
  ty.rank = b && b->type.rank == 2 ? 2 : 1;
  memcpy(ty.dims, ty.rank == 2 ? dims : dims + 1, (size_t)ty.rank * sizeof *dims);
  kir_tensor *x = kir_tensor_new(&ty);
  if (!x) return nomem(P->g);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < f->c; j++) {
      double v = b ? kir_tensor_get_f(b, r * bcols + (bcols == 1 ? 0 : j)) : 0.0;
      set_f(x, r * f->c + j, (v - f->mean[j]) * f->s[j] + f->bias[j]);
    }
  kiln_status st = append(P, bn, KIR_OP_CONSTANT, "/folded_bias", NULL, 0, x, out);
  kir_tensor_free(x);
  return st;
}

/* Appends w' and b' as constants. */
static kiln_status folded_consts(bn_pass *P, const kir_node *bn, const bn_target *t, const bn_factors *f,
                                 kir_node **wn, kir_node **bnode) {
  kir_graph *g = P->g;
  kir_tensor *w = kir_tensor_clone(const_value(g->nodes[t->mm->inputs[1]]));
  kiln_status st = w ? KILN_OK : nomem(g);
  if (st == KILN_OK) {
    if (t->mm->op == KIR_OP_CONV) scale_conv_weight(w, f);
    else scale_matmul_weight(w, f, kir_attr_int(t->mm, "transpose_b", 0) != 0);
    st = append(P, bn, KIR_OP_CONSTANT, "/folded_weight", NULL, 0, w, wn);
  }
  if (st == KILN_OK) st = folded_bias(P, bn, t, f, bnode);
  kir_tensor_free(w);
  return st;
}

/* conv: bn becomes conv(x, w', b'). matmul (or add(matmul, c)): the matmul reads B'
 * and bn becomes add(matmul, b'). */
static kiln_status fold_into(bn_pass *P, kir_node *bn, const bn_target *t, const bn_factors *f) {
  kir_graph *g = P->g;
  kir_node *p = t->mm; /* the conv or matmul; bn reads it directly or through t->p */
  int32_t before = g->n_nodes;
  bn_undo *u = &P->undo[P->n_undo];
  *u = (bn_undo){bn, *bn, NULL, -1};
  kir_node *wn = NULL, *bnode = NULL;
  kiln_status st = folded_consts(P, bn, t, f, &wn, &bnode);
  if (st == KILN_OK && p->op == KIR_OP_CONV) {
    int32_t in[3] = {p->inputs[0], wn->id, bnode->id};
    mark_candidates(P, bn);
    mark_candidates(P, p);
    P->candidate[p->id] = true; /* an original node: bn's input */
    st = become(g, bn, KIR_OP_CONV, in, 3, p);
  } else if (st == KILN_OK) {
    int32_t old_w = p->inputs[1], in[2] = {p->id, bnode->id};
    p->inputs[1] = wn->id; /* p's only consumer is bn: nobody else sees the change */
    u->mm = p;
    u->mm_old_w = old_w;
    mark_candidates(P, bn);
    mark_candidates(P, t->p); /* the gemm's add and its constant, when there is one */
    if (old_w < P->cap) P->candidate[old_w] = true;
    st = become(g, bn, KIR_OP_ADD, in, 2, NULL);
    if (st != KILN_OK) p->inputs[1] = old_w;
  }
  if (st != KILN_OK) pop_to(P, before);
  else P->n_undo++;
  return st;
}

/* bn becomes add(mul(x, s), t) with s and t of shape [C, 1, .., 1]. */
static kiln_status scale_shift(bn_pass *P, kir_node *bn, const bn_factors *f) {
  kir_graph *g = P->g;
  int32_t before = g->n_nodes, rank = bn->type.rank - 1;
  kir_node *s = NULL, *t = NULL, *m = NULL;
  P->undo[P->n_undo] = (bn_undo){bn, *bn, NULL, -1};
  kiln_status st = channel_const(P, bn, "/scale", f->s, f->c, rank, &s);
  if (st == KILN_OK) st = channel_const(P, bn, "/shift", f->t, f->c, rank, &t);
  if (st == KILN_OK) {
    int32_t in[2] = {bn->inputs[0], s->id};
    st = append(P, bn, KIR_OP_MUL, "/mul", in, 2, NULL, &m);
  }
  if (st == KILN_OK) {
    int32_t in[2] = {m->id, t->id};
    mark_candidates(P, bn);
    st = become(g, bn, KIR_OP_ADD, in, 2, NULL);
  }
  if (st != KILN_OK) pop_to(P, before);
  else P->n_undo++;
  return st;
}

/* After an error: every completed rewrite undone, latest first, and every appended node
 * popped, so the graph is as it was (nothing here allocates). */
static void undo_all(bn_pass *P) {
  for (int32_t i = P->n_undo - 1; i >= 0; i--) {
    bn_undo *u = &P->undo[i];
    *u->bn = u->saved;
    if (u->mm) u->mm->inputs[1] = u->mm_old_w;
  }
  pop_to(P, P->n);
  P->n_undo = 0;
  P->folded = P->rewritten = 0;
}

/* One batch_norm: fold, rewrite, or keep (parameters not constant). */
static kiln_status one_bn(bn_pass *P, kir_node *bn) {
  kir_graph *g = P->g;
  char why[BN_WHY], esc[KPS_ESC];
  kir_escape(bn->name, esc, sizeof esc);
  if (bn->type.dtype == KILN_F16 || bn->type.dtype == KILN_BF16) {
    say(P, "'%s' kept: %s (folding takes f32/f64 only)", esc, kiln_dtype_name(bn->type.dtype));
    return KILN_OK;
  }
  if (!is_float(bn->type.dtype) || bn->type.rank < 2) return KILN_OK;
  bn_factors f;
  memset(&f, 0, sizeof f);
  f.c = bn->type.dims[1];
  for (int32_t k = 1; k < 5; k++)
    if (!param_ok(g, bn, k, f.c, why, sizeof why)) {
      say(P, "'%s' kept: %s", esc, why);
      return KILN_OK;
    }
  kiln_status st = factors_make(g, bn, &f);
  bn_target t = {g->nodes[bn->inputs[0]], NULL, NULL};
  if (st == KILN_OK && foldable(P, bn, &t, why, sizeof why)) {
    char pesc[KPS_ESC];
    kir_escape(t.mm->name, pesc, sizeof pesc);
    st = fold_into(P, bn, &t, &f);
    if (st == KILN_OK) say(P, "'%s' folded into %s '%s'", esc, op_name(t.mm->op), pesc);
    P->folded += st == KILN_OK;
  } else if (st == KILN_OK) {
    st = scale_shift(P, bn, &f);
    if (st == KILN_OK) say(P, "'%s' rewritten as scale+shift: %s", esc, why);
    P->rewritten += st == KILN_OK;
  }
  factors_free(&f);
  return st;
}

/* ---------------------------------------------------------------- the pass ------ */

static kiln_status setup(bn_pass *P, const kps_context *ctx) {
  kir_graph *g = P->g;
  size_t n = (size_t)g->n_nodes + 1;
  P->n = P->cap = g->n_nodes;
  for (int32_t i = 0; i < g->n_nodes; i++) P->cap += g->nodes[i]->op == KIR_OP_BATCH_NORM ? 3 : 0;
  P->root = kir_calloc(n, sizeof *P->root);
  P->uses = kir_calloc(n, sizeof *P->uses);
  P->candidate = kir_calloc((size_t)P->cap + 1, sizeof *P->candidate);
  P->undo = kir_calloc((size_t)(P->cap - P->n) / 3 + 1, sizeof *P->undo);
  if (!P->root || !P->uses || !P->candidate || !P->undo) return nomem(g);
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) P->uses[g->nodes[i]->inputs[k]]++;
  for (int32_t r = 0; r < ctx->n_roots; r++) {
    int32_t id = kps_root_id(g, ctx, r);
    if (id >= 0) P->root[id] = true;
  }
  return KILN_OK;
}

/* The candidates left unused (never roots or placeholders), latest first so a dropped
 * node's inputs are seen after it (appended candidates are constants: no inputs). */
static int32_t unused_candidates(const bn_pass *P, int32_t *uses, kir_node **drop) {
  const kir_graph *g = P->g;
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) uses[g->nodes[i]->inputs[k]]++;
  for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
    kir_node *nd = g->nodes[i];
    if (i >= P->cap || !P->candidate[i] || uses[i] > 0 || root_of(P, i) || nd->op == KIR_OP_PLACEHOLDER)
      continue;
    drop[n++] = nd;
    for (int32_t k = 0; k < nd->n_inputs; k++) uses[nd->inputs[k]]--;
  }
  return n;
}

/* Sorts the appended nodes into place and drops the unused candidates, in one step that
 * leaves the graph unchanged on failure: *committed says whether it changed for good. */
static kiln_status finish(bn_pass *P, bool *committed) {
  kir_graph *g = P->g;
  size_t n = (size_t)g->n_nodes + 1;
  int32_t *uses = kir_calloc(n, sizeof *uses);
  bool *keep = kir_calloc(n, sizeof *keep);
  kir_node **drop = kir_calloc(n, sizeof *drop);
  kiln_status st = uses && keep && drop ? KILN_OK : nomem(g);
  int32_t n_drop = st == KILN_OK ? unused_candidates(P, uses, drop) : 0;
  for (int32_t i = 0; st == KILN_OK && i < g->n_nodes; i++) keep[i] = true;
  for (int32_t i = 0; st == KILN_OK && i < n_drop; i++) keep[drop[i]->id] = false;
  if (st == KILN_OK && (P->appended > 0 || n_drop > 0)) st = kir_graph_sort_compact(g, keep);
  *committed = st == KILN_OK;
  kir_free(uses);
  kir_free(keep);
  kir_free(drop);
  return st;
}

kiln_status kps_fold_batchnorm(kir_graph *g, const kps_context *ctx, kps_result *res) {
  bn_pass P;
  memset(&P, 0, sizeof P);
  P.g = g;
  P.log = ctx->log;
  res->n_stats = 2;
  res->stats[0] = (kps_stat){"folded into conv/matmul", 0};
  res->stats[1] = (kps_stat){"rewritten as scale+shift", 0};
  kiln_status st = setup(&P, ctx);
  for (int32_t i = 0; st == KILN_OK && i < P.n; i++)
    if (g->nodes[i]->op == KIR_OP_BATCH_NORM) st = one_bn(&P, g->nodes[i]);
  bool committed = false;
  if (st == KILN_OK) st = finish(&P, &committed);
  if (st != KILN_OK && !committed) undo_all(&P);
  kir_free(P.root);
  kir_free(P.undo);
  kir_free(P.uses);
  kir_free(P.candidate);
  res->stats[0].value = P.folded;
  res->stats[1].value = P.rewritten;
  res->changed = P.folded + P.rewritten > 0;
  return st;
}
