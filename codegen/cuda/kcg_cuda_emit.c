/* kcg_cuda_emit.c — kcg_cuda_generate: which nodes on cuda:N are steps, where each
 * operand lives (arena / weights / io, from the memory plan), cuBLASLt GEMM and cuDNN
 * conv records, and one deterministic CUDA C translation unit (kernel bodies:
 * kcg_cuda_kernels.c). Depends on ir/ and the passes' placement and plan only; model
 * strings only escaped in comments. */
#include <stdio.h>
#include <string.h>

#include "kcg_cuda_internal.h"

typedef struct cgen {
  kir_graph *g;
  const kps_memplan *plan;
  int32_t *io;       /* per node: io index (placeholders, then computed outputs), -1 */
  int32_t n_inputs;  /* placeholders */
  kcg_buf text;      /* kernels */
  kcg_cuda_step *steps;
  int32_t n_steps, cap_steps;
  bool half;         /* some step touches f16/bf16 */
} cgen;

static kiln_status gerr(kir_graph *g, const kir_node *n, kiln_status s, const char *fmt, const char *a) {
  char esc[KCG_ESC_BUF], msg[256];
  snprintf(msg, sizeof msg, fmt, a);
  return kir_seterr(g, s, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), msg);
}

static kiln_status nerr(cgen *G, const kir_node *n, kiln_status s, const char *fmt, const char *a) {
  return gerr(G->g, n, s, fmt, a);
}

static kiln_status oom(cgen *G) {
  return kir_seterr(G->g, KILN_ERR_NOMEM, "kcg_cuda_generate: out of memory");
}

int32_t kcg_cuda_device_index(const char *dev) {
  if (!dev || strncmp(dev, "cuda:", 5) != 0 || !dev[5]) return -1;
  int64_t v = 0;
  for (const char *p = dev + 5; *p; p++) {
    if (*p < '0' || *p > '9' || v > 1000000) return -1;
    v = v * 10 + (*p - '0');
  }
  return (int32_t)v;
}

static int32_t cuda_index(const char *dev) { return kcg_cuda_device_index(dev); }

static const char *op_name(int64_t op) {
  const kir_op_info *i = op > 0 && op < KIR_OP_COUNT ? kir_op_get((int32_t)op) : NULL;
  return i ? i->name : "invalid";
}

/* ---------------------------------------------------------------- operands ------ */

kiln_status kcg_cuda_value_operand(kir_graph *g, const kps_memplan *p, const int32_t *io,
                                   const kir_node *n, int32_t id, const char *dev,
                                   kcg_cuda_operand *o) {
  const kir_node *v = g->nodes[id];
  memset(o, 0, sizeof *o);
  o->index = -1;
  o->bytes = kir_type_nbytes(&v->type);
  if (o->bytes < 0) return gerr(g, v, KILN_ERR_LIMIT, "%s", "tensor size out of range");
  if (v->op == KIR_OP_PLACEHOLDER && cuda_index(v->assigned_device) != cuda_index(dev))
    return gerr(g, n, KILN_ERR_INTERNAL, "reads a placeholder that is not on %s (no transfer)", dev);
  if (io[id] >= 0 && p->loc[id] != KPS_LOC_WEIGHTS) {
    o->where = KCG_CUDA_IO;
    o->index = io[id];
    return KILN_OK;
  }
  switch (p->loc[id]) {
  case KPS_LOC_WEIGHTS:
    if (p->offset[id] < 0 || p->offset[id] > p->weights_bytes - o->bytes) break;
    o->where = KCG_CUDA_WEIGHTS;
    o->offset = p->offset[id];
    return KILN_OK;
  case KPS_LOC_ARENA: {
    int32_t a = p->arena_of ? p->arena_of[id] : -1;
    if (a < 0 || a >= p->n_arenas || strcmp(p->arenas[a].device, dev) != 0)
      return gerr(g, n, KILN_ERR_INTERNAL, "reads a value planned off %s without a transfer", dev);
    if (p->offset[id] < 0 || p->offset[id] > p->arenas[a].peak_bytes - o->bytes) break;
    o->where = KCG_CUDA_ARENA;
    o->offset = p->offset[id];
    return KILN_OK;
  }
  case KPS_LOC_INPUT: case KPS_LOC_NONE:
    break;
  }
  return gerr(g, v, KILN_ERR_INTERNAL, "%s", "the memory plan gives the value no place on the device");
}

/* Where node id's value is on device `dev` (n: the reader, for messages). */
static kiln_status operand_of(cgen *G, const kir_node *n, int32_t id, const char *dev,
                              kcg_cuda_operand *o) {
  return kcg_cuda_value_operand(G->g, G->plan, G->io, n, id, dev, o);
}

static bool overlaps(const kcg_cuda_operand *a, const kcg_cuda_operand *b) {
  if (a->where != b->where || a->bytes == 0 || b->bytes == 0) return false;
  if (a->where == KCG_CUDA_IO) return a->index == b->index;
  return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

/* restrict only when the output shares no byte with an input; sharing is allowed where
 * each thread reads its element before writing it: elementwise ops, add_n and
 * fused_elementwise with the output exactly over a same-typed input. */
static kiln_status check_aliasing(cgen *G, kcg_cuda_kernel *k) {
  const kir_node *n = k->n;
  k->restrict_ok = true;
  for (int32_t i = 0; i < n->n_inputs; i++) {
    if (!overlaps(&k->in[i], &k->out)) continue;
    k->restrict_ok = false;
    bool exact = k->in[i].offset == k->out.offset && k->in[i].index == k->out.index &&
                 kir_type_equal(&G->g->nodes[n->inputs[i]]->type, &n->type);
    bool ew = kir_op_has(n->op, KIR_F_ELEMENTWISE) || n->op == KIR_OP_ADD_N ||
              n->op == KIR_OP_FUSED_ELEMENTWISE || n->op == KIR_OP_RESHAPE ||
              n->op == KIR_OP_IDENTITY; /* exactly over the input: an alias, no step */
    if (!(ew && exact))
      return nerr(G, n, KILN_ERR_INTERNAL, "%s", "memory plan overlaps its output with an input");
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- steps --------- */

static kcg_cuda_step *push_step(cgen *G) {
  if (G->n_steps == G->cap_steps) {
    int32_t cap = G->cap_steps ? 2 * G->cap_steps : 16;
    kcg_cuda_step *s = kir_realloc(G->steps, (size_t)G->cap_steps * sizeof *s, (size_t)cap * sizeof *s);
    if (!s) return NULL;
    G->steps = s;
    G->cap_steps = cap;
  }
  kcg_cuda_step *s = &G->steps[G->n_steps++];
  memset(s, 0, sizeof *s);
  return s;
}

static bool is_half_dt(kiln_dtype t) { return t == KILN_F16 || t == KILN_BF16; }

/* A kernel step (or a GEMM's follow-up kernel) for k: emitted, launch recorded. */
static kiln_status put_kernel(cgen *G, kcg_cuda_kernel *k, kcg_cuda_step *st) {
  kiln_status s = kcg_cuda_emit_kernel(k, &G->text);
  if (s) return s;
  snprintf(st->kernel, sizeof st->kernel, "kiln_k%d", (int)k->step);
  st->grid = k->grid;
  st->block = k->block;
  return KILN_OK;
}

/* matmul / fused_matmul that cuBLASLt runs: the record, and the epilogue kernel when
 * cuBLASLt's own epilogue cannot do all of it. false in *done: not a GEMM. */
static kiln_status put_gemm(cgen *G, kcg_cuda_kernel *k, kcg_cuda_step *st, bool *done) {
  int32_t bias = -1;
  bool rest = false;
  *done = kcg_cuda_gemm_plan(G->g, k->n, &st->gemm, &bias, &rest);
  if (!*done) return KILN_OK;
  st->kind = KCG_CUDA_STEP_GEMM;
  st->gemm.a = k->in[0];
  st->gemm.b = k->in[1];
  st->gemm.d = k->out;
  if (bias >= 0) st->gemm.bias = k->in[bias];
  st->grid = 1;
  st->block = 32;
  if (!rest) return KILN_OK;
  k->epilogue_only = true;
  return put_kernel(G, k, st);
}

/* conv / fused_conv's geometry for cuDNN from the node's types and attributes (the
 * verifier has checked them; placement only lets through what cuDNN runs). false: the
 * node is not one cuDNN takes (the caller reports it). */
static bool conv_plan(const kir_graph *g, const kir_node *n, kcg_cuda_conv *cv) {
  const kir_type *x = &g->nodes[n->inputs[0]]->type, *w = &g->nodes[n->inputs[1]]->type;
  int32_t k = n->type.rank - 2, np = 0, ns = 0, nd = 0;
  memset(cv, 0, sizeof *cv);
  if (k < 1 || k > 3 || x->rank != n->type.rank || w->rank != n->type.rank) return false;
  if (n->type.dtype != KILN_F32 && n->type.dtype != KILN_F64) return false;
  const int64_t *pads = kir_attr_ints(n, "pads", &np), *st = kir_attr_ints(n, "strides", &ns);
  const int64_t *dil = kir_attr_ints(n, "dilations", &nd);
  if ((pads && np != 2 * k) || (st && ns != k) || (dil && nd != k)) return false;
  cv->dtype = n->type.dtype;
  cv->spatial = k;
  cv->n = x->dims[0], cv->c = x->dims[1], cv->k = w->dims[0];
  cv->groups = kir_attr_int(n, "group", 1);
  for (int32_t i = 0; i < k; i++) {
    cv->in[i] = x->dims[2 + i];
    cv->filter[i] = w->dims[2 + i];
    cv->out[i] = n->type.dims[2 + i];
    cv->pads[i] = pads ? pads[i] : 0;
    cv->strides[i] = st ? st[i] : 1;
    cv->dilations[i] = dil ? dil[i] : 1;
    if (pads && pads[i] != pads[k + i]) return false;
  }
  return cv->groups >= 1 && cv->n >= 1 && cv->c >= 1 && cv->k >= 1;
}

/* conv / fused_conv through cuDNN: the record, then a follow-up kernel for conv's bias
 * or fused_conv's epilogue (never cuDNN's own epilogues). false in *done: not a conv. */
static kiln_status put_conv(cgen *G, kcg_cuda_kernel *k, kcg_cuda_step *st, bool *done) {
  const kir_node *n = k->n;
  *done = n->op == KIR_OP_CONV || n->op == KIR_OP_FUSED_CONV;
  if (!*done) return KILN_OK;
  if (!conv_plan(G->g, n, &st->conv))
    return nerr(G, n, KILN_ERR_UNSUPPORTED, "%s", "convolution cuDNN cannot run (dtype, rank or asymmetric pads)");
  st->kind = KCG_CUDA_STEP_CONV;
  st->conv.x = k->in[0];
  st->conv.w = k->in[1];
  st->conv.y = k->out;
  st->grid = 1;
  st->block = 32;
  int32_t cnt = 0;
  bool rest = n->op == KIR_OP_CONV ? n->n_inputs == 3 : kir_attr_ints(n, "epilogue", &cnt) && cnt > 0;
  if (!rest) return KILN_OK;
  k->epilogue_only = true;
  return put_kernel(G, k, st);
}

/* Whether reshape / identity n is the same bytes as its input (no step). */
static bool aliases(const kir_node *n, const kcg_cuda_kernel *k) {
  if (n->op != KIR_OP_RESHAPE && n->op != KIR_OP_IDENTITY) return false;
  return k->in[0].where == k->out.where && k->in[0].offset == k->out.offset &&
         k->in[0].index == k->out.index;
}

static void note_half(cgen *G, const kir_node *n) {
  if (is_half_dt(n->type.dtype)) G->half = true;
  for (int32_t i = 0; i < n->n_inputs; i++)
    if (is_half_dt(G->g->nodes[n->inputs[i]]->type.dtype)) G->half = true;
}

/* The step(s) of one computing node on cuda:dev, with its operands resolved. */
static kiln_status step_node(cgen *G, const kir_node *n, int32_t dev, kcg_cuda_kernel *k) {
  kiln_status s = check_aliasing(G, k);
  if (s) return s;
  if (aliases(n, k)) return KILN_OK;
  kcg_cuda_step *st = push_step(G);
  if (!st) return oom(G);
  st->kind = KCG_CUDA_STEP_KERNEL;
  st->node = n->id;
  st->device = dev;
  k->step = G->n_steps - 1;
  note_half(G, n);
  bool gemm = false;
  if ((s = put_gemm(G, k, st, &gemm)) || gemm) return s;
  if ((s = put_conv(G, k, st, &gemm)) || gemm) return s;
  return put_kernel(G, k, st);
}

/* Resolves n's operands and emits its step(s). */
static kiln_status node_operands(cgen *G, const kir_node *n, int32_t dev) {
  char devname[24];
  snprintf(devname, sizeof devname, "cuda:%d", (int)dev);
  kcg_cuda_operand *in = kir_calloc((size_t)(n->n_inputs > 0 ? n->n_inputs : 1), sizeof *in);
  if (!in) return oom(G);
  kcg_cuda_kernel k;
  memset(&k, 0, sizeof k);
  k.g = G->g;
  k.n = n;
  k.in = in;
  kiln_status s = operand_of(G, n, n->id, devname, &k.out);
  if (!s && k.out.where == KCG_CUDA_WEIGHTS) s = nerr(G, n, KILN_ERR_INTERNAL, "%s", "output planned in the weights");
  for (int32_t i = 0; i < n->n_inputs && !s; i++) s = operand_of(G, n, n->inputs[i], devname, &in[i]);
  if (!s) s = step_node(G, n, dev, &k);
  kir_free(in);
  return s;
}

/* Decides what node n is for the CUDA program and emits it. */
static kiln_status visit(cgen *G, const kir_node *n) {
  int32_t dev = cuda_index(n->assigned_device);
  if (dev < 0) return KILN_OK;
  /* data, runtime copies between devices, and control compute nothing here */
  if (n->op == KIR_OP_CONSTANT || n->op == KIR_OP_PLACEHOLDER || n->op == KIR_OP_TRANSFER ||
      kir_op_has(n->op, KIR_F_CONTROL) || kir_op_has(n->op, KIR_F_NO_OUTPUT))
    return KILN_OK;
  if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
    return nerr(G, n, KILN_ERR_UNSUPPORTED, "%s", "variables cannot be compiled; freeze the graph first");
  kir_op gap = kps_kernel_gap("cuda:0", n);
  if (gap != KIR_OP_INVALID) {
    char msg[160];
    snprintf(msg, sizeof msg, "placed on %s, which has no CUDA kernel for %s", n->assigned_device, op_name(gap));
    return nerr(G, n, KILN_ERR_UNSUPPORTED, "%s", msg);
  }
  if (G->plan->loc[n->id] == KPS_LOC_NONE) return KILN_OK; /* never read */
  return node_operands(G, n, dev);
}

/* ---------------------------------------------------------------- program ------- */

static kiln_status check_args(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                              int32_t n_outputs, kcg_cuda_program *out) {
  if (!plan || !out || (n_outputs > 0 && !outputs) || n_outputs < 0)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_cuda_generate: NULL plan, outputs or result");
  if (plan->n_nodes != g->n_nodes || !plan->loc || !plan->offset || !plan->size || !plan->arena_of)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_cuda_generate: the memory plan is for %d nodes, the graph has %d",
                      (int)plan->n_nodes, (int)g->n_nodes);
  for (int32_t j = 0; j < n_outputs; j++) {
    if (outputs[j] < 0 || outputs[j] >= g->n_nodes || plan->loc[outputs[j]] == KPS_LOC_NONE)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_cuda_generate: output %d (node %d) has no planned value",
                        (int)j, (int)outputs[j]);
    for (int32_t i = 0; i < j; i++)
      if (outputs[i] == outputs[j])
        return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_cuda_generate: outputs %d and %d are the same node",
                          (int)i, (int)j);
  }
  return KILN_OK;
}

int32_t kcg_cuda_number_io(const kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                           int32_t *io) {
  int32_t n_inputs = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    io[i] = g->nodes[i]->op == KIR_OP_PLACEHOLDER ? n_inputs++ : -1;
  for (int32_t j = 0; j < n_outputs; j++)
    if (io[outputs[j]] < 0) io[outputs[j]] = n_inputs + j;
  return n_inputs;
}

static void number_io(cgen *G, const int32_t *outputs, int32_t n_outputs) {
  G->n_inputs = kcg_cuda_number_io(G->g, outputs, n_outputs, G->io);
}

static void put_header(const cgen *G, int32_t n_outputs, kcg_buf *b) {
  kcg_printf(b, "/* generated by kiln; do not edit.\n *\n");
  kcg_printf(b, " * graph: %d nodes, %d CUDA steps, io: %d inputs then %d outputs\n",
             (int)G->g->n_nodes, (int)G->n_steps, (int)G->n_inputs, (int)n_outputs);
  for (int32_t a = 0; a < G->plan->n_arenas; a++)
    if (cuda_index(G->plan->arenas[a].device) >= 0)
      kcg_printf(b, " * arena cuda:%d: %lld bytes\n", (int)cuda_index(G->plan->arenas[a].device),
                 (long long)G->plan->arenas[a].peak_bytes);
  kcg_printf(b, " * weights: %lld bytes\n */\n", (long long)G->plan->weights_bytes);
  kcg_cuda_put_prelude(b, G->half);
}

static kiln_status generate(cgen *G, const int32_t *outputs, int32_t n_outputs, kcg_cuda_program *out) {
  kiln_status s = KILN_OK;
  number_io(G, outputs, n_outputs);
  for (int32_t i = 0; i < G->g->n_nodes && !s; i++) s = visit(G, G->g->nodes[i]);
  if (s) return s;
  kcg_buf src = {0};
  put_header(G, n_outputs, &src);
  if (G->text.n) kcg_printf(&src, "%s", G->text.p);
  if (src.oom || G->text.oom || !src.p) {
    kcg_buf_free(&src);
    return oom(G);
  }
  out->source = src.p;
  out->sets_error = G->text.p && strstr(G->text.p, "atomicCAS(&" KCG_CUDA_ERROR_WORD) != NULL;
  out->steps = G->steps;
  out->n_steps = G->n_steps;
  G->steps = NULL;
  return KILN_OK;
}

kiln_status kcg_cuda_generate(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                              int32_t n_outputs, kcg_cuda_program *out) {
  if (out) memset(out, 0, sizeof *out); /* freeable whatever happens */
  if (!g) return KILN_ERR_ARGUMENT;
  kiln_status s = check_args(g, plan, outputs, n_outputs, out);
  if (s) return s;
  cgen G;
  memset(&G, 0, sizeof G);
  G.g = g;
  G.plan = plan;
  G.io = kir_calloc((size_t)(g->n_nodes > 0 ? g->n_nodes : 1), sizeof *G.io);
  if (!G.io) return oom(&G);
  s = generate(&G, outputs, n_outputs, out);
  kir_free(G.io);
  kir_free(G.steps);
  kcg_buf_free(&G.text);
  return s;
}

void kcg_cuda_program_free(kcg_cuda_program *p) {
  if (!p) return;
  kir_free(p->source);
  kir_free(p->steps);
  memset(p, 0, sizeof *p);
}
