/* kps_fold.c — constant folding: a node whose inputs are all constants (or a seeded
 * random source) is evaluated once with the reference kernels (kir_eval_node) and
 * becomes a constant in place. Size-capped by the max-bytes option (default
 * KIR_MAX_FOLD_BYTES). Depends on ir/ only; the interpreter is the single definition
 * of what a folded value is. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <string.h>

static bool op_foldable(kir_op op) {
  switch (op) {
  case KIR_OP_CONSTANT:
  case KIR_OP_PLACEHOLDER:
  case KIR_OP_VARIABLE:
  case KIR_OP_ASSIGN:
  case KIR_OP_GROUP:
  case KIR_OP_NO_OP:
  case KIR_OP_INVALID:
  case KIR_OP_COUNT:
    return false; /* a placeholder's default is only used when nothing is fed */
  case KIR_OP_RANDOM_NORMAL:
  case KIR_OP_RANDOM_UNIFORM:
  case KIR_OP_ADD:
  case KIR_OP_SUB:
  case KIR_OP_MUL:
  case KIR_OP_DIV:
  case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM:
  case KIR_OP_NEG:
  case KIR_OP_EXP:
  case KIR_OP_LOG:
  case KIR_OP_SQRT:
  case KIR_OP_TANH:
  case KIR_OP_SIGMOID:
  case KIR_OP_RELU:
  case KIR_OP_CLAMP:
  case KIR_OP_MATMUL:
  case KIR_OP_ADD_N:
  case KIR_OP_REDUCE_SUM:
  case KIR_OP_REDUCE_MEAN:
  case KIR_OP_REDUCE_MAX:
  case KIR_OP_SOFTMAX:
  case KIR_OP_RESHAPE:
  case KIR_OP_TRANSPOSE:
  case KIR_OP_IDENTITY:
  case KIR_OP_TRANSFER:
  case KIR_OP_FUSED_MATMUL:
  case KIR_OP_FUSED_ELEMENTWISE:
  case KIR_OP_FUSED_REDUCE:
  case KIR_OP_FUSED_SOFTMAX:
  case KIR_OP_POW:
  case KIR_OP_ABS:
  case KIR_OP_LEAKY_RELU:
  case KIR_OP_ERF:
  case KIR_OP_GELU:
  case KIR_OP_REDUCE_MIN:
  case KIR_OP_LOG_SOFTMAX:
  case KIR_OP_ARGMAX:
  case KIR_OP_ARGMIN:
  case KIR_OP_CONCAT:
  case KIR_OP_SLICE:
  case KIR_OP_GATHER:
  case KIR_OP_CAST:
  case KIR_OP_WHERE:
  case KIR_OP_CONV:
  case KIR_OP_MAX_POOL:
  case KIR_OP_AVG_POOL:
  case KIR_OP_BATCH_NORM:
  case KIR_OP_FUSED_CONV:
  case KIR_OP_MAX_POOL_INDICES:
    /* The table's flags decide the rest, so a new stateful op stays unfolded. */
    return !kir_op_has(op, KIR_F_STATEFUL | KIR_F_CONTROL | KIR_F_NO_OUTPUT);
  }
  return false;
}

static bool inputs_constant(const kir_graph *g, const kir_node *n) {
  for (int32_t i = 0; i < n->n_inputs; i++) {
    const kir_node *in = g->nodes[n->inputs[i]];
    if (in->op != KIR_OP_CONSTANT || !kir_attr_tensor(in, "value")) return false;
  }
  return true;
}

/* Names the node unless the evaluator already did. */
static kiln_status eval_error(kir_graph *g, const kir_node *n, kiln_status st) {
  char esc[KPS_ESC], quoted[KPS_ESC + 4], msg[sizeof g->error];
  kir_escape(n->name, esc, sizeof esc);
  snprintf(quoted, sizeof quoted, "'%s'", esc);
  memcpy(msg, g->error, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  if (strstr(msg, quoted)) return kir_seterr(g, st, "%s", msg);
  return kir_seterr(g, st, "folding node %s: %s", quoted, msg[0] ? msg : kiln_status_name(st));
}

/* Turns n into constant(value=t), transactionally: on failure n is as before. */
static kiln_status make_constant(kir_graph *g, kir_node *n, const kir_tensor *t) {
  kir_node saved = *n;
  n->op = KIR_OP_CONSTANT;
  n->n_inputs = 0;
  n->inputs = NULL;
  n->n_attrs = 0;
  n->attrs = NULL;
  kiln_status st = kir_attr_set_tensor(g, n, "value", t);
  if (st != KILN_OK) *n = saved;
  return st;
}

static kiln_status fold_node(kir_graph *g, kir_node *n) {
  const kir_tensor *stack_in[8];
  const kir_tensor **in = stack_in;
  if (n->n_inputs > 8) {
    in = kir_calloc((size_t)n->n_inputs, sizeof *in);
    if (!in) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory folding a node");
  }
  for (int32_t i = 0; i < n->n_inputs; i++) in[i] = kir_attr_tensor(g->nodes[n->inputs[i]], "value");
  kir_tensor *out = NULL;
  kiln_status st = kir_eval_node(g, n, in, &out);
  if (in != stack_in) kir_free(in);
  if (st != KILN_OK) return eval_error(g, n, st);
  char esc[KPS_ESC], want[64], got[64];
  if (!kir_type_equal(&out->type, &n->type)) {
    kir_type_format(&n->type, want, sizeof want);
    kir_type_format(&out->type, got, sizeof got);
    kir_tensor_free(out);
    return kir_seterr(g, KILN_ERR_INTERNAL, "folding node '%s': evaluated %s but its type is %s",
                      kir_escape(n->name, esc, sizeof esc), got, want);
  }
  st = make_constant(g, n, out);
  kir_tensor_free(out);
  return st;
}

static kiln_status untyped(kir_graph *g, const kir_node *n) {
  char esc[KPS_ESC];
  const kir_op_info *info = kir_op_get(n->op);
  return kir_seterr(g, KILN_ERR_GRAPH, "node '%s' (%s) has no type; run infer-shapes before fold",
                    kir_escape(n->name, esc, sizeof esc), info ? info->name : "invalid");
}

kiln_status kps_fold(kir_graph *g, const kps_context *ctx, kps_result *res) {
  /* The size cap: the pipeline option fold{max-bytes=N}, else KIR_MAX_FOLD_BYTES. */
  int64_t cap = kps_option_int(ctx, "max-bytes", KIR_MAX_FOLD_BYTES);
  int64_t folded = 0, skipped = 0;
  /* Id order: every input precedes its node, so a chain folds completely in one run. */
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    if (!op_foldable(n->op) || !inputs_constant(g, n)) continue;
    if (n->type.dtype == KILN_DTYPE_INVALID) return untyped(g, n);
    int64_t bytes = kir_type_nbytes(&n->type);
    if (bytes < 0 || bytes > cap) {
      skipped++;
      continue;
    }
    kiln_status st = fold_node(g, n);
    if (st != KILN_OK) return st;
    folded++;
  }
  res->stats[0] = (kps_stat){"nodes folded", folded};
  res->stats[1] = (kps_stat){"skipped (too large)", skipped};
  res->n_stats = 2;
  res->changed = folded > 0;
  return KILN_OK;
}
