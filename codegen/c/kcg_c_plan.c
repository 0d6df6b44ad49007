/* kcg_c_plan.c — the artifact of a compiled graph: the kiln.rt.Plan message (inputs,
 * outputs, buffers, steps with provenance and placement), the weights blob, and the
 * container written through the runtime's kart_write. Must agree with kcg_c_emit.c on
 * step numbering (kcg_c_is_step) and with runtime/kiln_artifact.proto on meaning. */
#include <string.h>

#include "kcg_c_internal.h"
#include "kiln_artifact.h"
#include "kiln_artifact.pb-c.h"

#define PRODUCER "kiln 0.1.0"

/* Every block the message points into; freed together. Strings and dims point into the
 * graph, which outlives the message (packing only reads them). */
typedef struct plan_mem {
  Kiln__Rt__TensorSpec *specs;   /* inputs, outputs, then one per buffer */
  Kiln__Rt__TensorSpec **in_ptrs, **out_ptrs;
  Kiln__Rt__Buffer *bufs;
  Kiln__Rt__Buffer **buf_ptrs;
  Kiln__Rt__Step *steps;
  Kiln__Rt__Step **step_ptrs;
  int32_t *ints;   /* output_buffers, then each step's input buffer indices */
  char **names;    /* each step's source node names */
  int32_t *bidx;   /* per node: buffer index or -1 */
  int64_t *defaults; /* per input: weights offset of its default, -1 none */
} plan_mem;

static void plan_mem_free(plan_mem *m) {
  void *blocks[] = {m->specs, m->in_ptrs, m->out_ptrs, m->bufs, m->buf_ptrs,
                    m->steps, m->step_ptrs, m->ints, m->names, m->bidx, m->defaults};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) kir_free(blocks[i]);
  memset(m, 0, sizeof *m);
}

typedef struct counts {
  int32_t inputs, outputs, buffers, steps, step_inputs, step_names;
} counts;

static const kcg_plan_ext k_cpu_target = {"cpu", "kiln_entry", false, NULL, NULL, NULL, NULL, 0};

/* The node's step on another device (kcg_plan_ext.node_kernel), or NULL. */
static const char *other_kernel(const kcg_plan_ext *x, const kir_node *n) {
  return x->node_kernel ? x->node_kernel[n->id] : NULL;
}

/* Whether Plan.steps lists n: a C step, or a step of another device's code. */
static bool listed(const kcg_plan_ext *x, const kir_node *n, const kps_memplan *plan) {
  return kcg_c_is_step_in(n, plan, x->step_mode) || other_kernel(x, n) != NULL;
}

static int32_t n_names(const kir_node *n) {
  int32_t nf = 0;
  if (kir_op_has(n->op, KIR_F_FUSED)) kir_attr_strings(n, "fused_from", &nf);
  return nf > 0 ? nf : 1;
}

static counts count_all(const kir_graph *g, const kps_memplan *plan, int32_t n_outputs,
                        const kcg_plan_ext *x) {
  counts c = {0, n_outputs, 0, 0, 0, 0};
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_PLACEHOLDER) c.inputs++;
    if (plan->loc[i] != KPS_LOC_NONE) c.buffers++;
    if (!listed(x, n, plan)) continue;
    c.steps++;
    c.step_inputs += n->n_inputs;
    c.step_names += n_names(n);
  }
  return c;
}

static bool plan_mem_alloc(plan_mem *m, const counts *c, int32_t n_nodes) {
  size_t nspec = (size_t)c->inputs + (size_t)c->outputs + (size_t)c->buffers;
  m->specs = kir_calloc(nspec + 1, sizeof *m->specs);
  m->in_ptrs = kir_calloc((size_t)c->inputs + 1, sizeof *m->in_ptrs);
  m->out_ptrs = kir_calloc((size_t)c->outputs + 1, sizeof *m->out_ptrs);
  m->bufs = kir_calloc((size_t)c->buffers + 1, sizeof *m->bufs);
  m->buf_ptrs = kir_calloc((size_t)c->buffers + 1, sizeof *m->buf_ptrs);
  m->steps = kir_calloc((size_t)c->steps + 1, sizeof *m->steps);
  m->step_ptrs = kir_calloc((size_t)c->steps + 1, sizeof *m->step_ptrs);
  m->ints = kir_calloc((size_t)c->outputs + (size_t)c->step_inputs + 1, sizeof *m->ints);
  m->names = kir_calloc((size_t)c->step_names + 1, sizeof *m->names);
  m->bidx = kir_calloc((size_t)n_nodes + 1, sizeof *m->bidx);
  m->defaults = kir_calloc((size_t)c->inputs + 1, sizeof *m->defaults);
  return m->specs && m->in_ptrs && m->out_ptrs && m->bufs && m->buf_ptrs && m->steps &&
         m->step_ptrs && m->ints && m->names && m->bidx && m->defaults;
}

static void fill_spec(Kiln__Rt__TensorSpec *s, kir_node *n) {
  kiln__rt__tensor_spec__init(s);
  s->name = (char *)n->name;
  s->dtype = (int32_t)n->type.dtype;
  s->n_dims = (size_t)n->type.rank;
  s->dims = n->type.rank > 0 ? n->type.dims : NULL;
}

static Kiln__Rt__Location pb_loc(kps_loc l) {
  switch (l) {
  case KPS_LOC_INPUT: return KILN__RT__LOCATION__LOC_INPUT;
  case KPS_LOC_WEIGHTS: return KILN__RT__LOCATION__LOC_WEIGHTS;
  case KPS_LOC_ARENA: return KILN__RT__LOCATION__LOC_ARENA;
  case KPS_LOC_NONE: break;
  }
  return KILN__RT__LOCATION__LOC_NONE;
}

static const char *device_of(const kir_node *n) {
  return n->assigned_device && n->assigned_device[0] ? n->assigned_device : "cpu:0";
}

static bool has_default(const kir_node *n) {
  return n->op == KIR_OP_PLACEHOLDER && kir_attr_tensor(n, "default") != NULL;
}

/* Inputs (placeholders in node order) and buffers (every located node). */
static void fill_buffers(kir_graph *g, const kps_memplan *plan, plan_mem *m, const counts *c,
                         Kiln__Rt__Plan *p) {
  Kiln__Rt__TensorSpec *spec = m->specs;
  int32_t ni = 0, nb = 0;
  bool any_default = false;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    int32_t input = -1;
    m->bidx[i] = -1;
    if (n->op == KIR_OP_PLACEHOLDER) {
      fill_spec(spec, n);
      m->defaults[ni] = has_default(n) ? plan->offset[i] : -1;
      any_default = any_default || m->defaults[ni] >= 0;
      m->in_ptrs[input = ni++] = spec++;
    }
    if (plan->loc[i] == KPS_LOC_NONE) continue;
    Kiln__Rt__Buffer *b = &m->bufs[nb];
    kiln__rt__buffer__init(b);
    fill_spec(spec, n);
    b->tensor = spec++;
    b->loc = pb_loc(plan->loc[i]);
    b->offset = plan->loc[i] == KPS_LOC_INPUT ? 0 : (uint64_t)plan->offset[i];
    b->size = (uint64_t)plan->size[i];
    b->index = input;
    b->device = (char *)device_of(n);
    m->buf_ptrs[nb] = b;
    m->bidx[i] = nb++;
  }
  p->n_inputs = (size_t)c->inputs;
  p->inputs = m->in_ptrs;
  p->n_input_defaults = any_default ? (size_t)c->inputs : 0;
  p->input_defaults = m->defaults;
  p->n_buffers = (size_t)nb;
  p->buffers = m->buf_ptrs;
}

static void fill_outputs(kir_graph *g, plan_mem *m, const int32_t *outputs, int32_t n_outputs,
                         Kiln__Rt__Plan *p) {
  Kiln__Rt__TensorSpec *spec = m->specs + p->n_inputs + p->n_buffers;
  for (int32_t j = 0; j < n_outputs; j++) {
    fill_spec(&spec[j], g->nodes[outputs[j]]);
    m->out_ptrs[j] = &spec[j];
    m->ints[j] = m->bidx[outputs[j]];
  }
  p->n_outputs = p->n_output_buffers = (size_t)n_outputs;
  p->outputs = m->out_ptrs;
  p->output_buffers = m->ints;
}

static void fill_steps(kir_graph *g, const kps_memplan *plan, plan_mem *m, int32_t n_outputs,
                       Kiln__Rt__Plan *p, char (*kernel_names)[48], const kcg_plan_ext *x) {
  int32_t *ints = m->ints + n_outputs;
  char **names = m->names;
  int32_t ns = 0, nc = 0; /* listed steps, C steps (their functions' numbers) */
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    if (!listed(x, n, plan)) continue;
    Kiln__Rt__Step *s = &m->steps[ns];
    kiln__rt__step__init(s);
    if (kcg_c_is_step_in(n, plan, x->step_mode))
      snprintf(kernel_names[ns], 48, "k%d_%s", (int)nc++, kir_op_get(n->op)->name);
    else
      snprintf(kernel_names[ns], 48, "%s", other_kernel(x, n));
    s->kernel = kernel_names[ns];
    s->op = (char *)kir_op_get(n->op)->name;
    int32_t nf = 0;
    const char *const *from = kir_op_has(n->op, KIR_F_FUSED) ? kir_attr_strings(n, "fused_from", &nf) : NULL;
    s->nodes = names;
    s->n_nodes = (size_t)n_names(n);
    for (int32_t k = 0; k < (int32_t)s->n_nodes; k++) *names++ = (char *)(nf > 0 ? from[k] : n->name);
    s->inputs = ints;
    s->n_inputs = (size_t)n->n_inputs;
    for (int32_t k = 0; k < n->n_inputs; k++) *ints++ = m->bidx[n->inputs[k]];
    s->output = m->bidx[i];
    s->device = (char *)device_of(n);
    s->placement_reason = (char *)(n->placement_reason ? n->placement_reason : "");
    m->step_ptrs[ns++] = s;
  }
  p->n_steps = (size_t)ns;
  p->steps = m->step_ptrs;
}

/* ---- FLOPs per run, recorded in the plan for `kiln bench` ----
 * Counted over the steps that run: matmul and fused_matmul 2*M*N*K per product
 * (batch dims included); 1 per output element per elementwise op or epilogue step
 * (clamp counts once); add_n (inputs - 1) per element; a reduction 1 per element of its
 * input (fused_reduce: of the chain's broadcast shape); softmax 5 per element (max,
 * subtract, exp, sum, divide). Shape ops, copies and transfers count 0. Integer ops
 * are counted the same way. Accumulated in double, so it saturates instead of wrapping. */
static double numel_d(const kir_type *t) {
  double n = 1;
  for (int32_t d = 0; d < t->rank; d++) n *= (double)t->dims[d];
  return n;
}

static double matmul_flops(const kir_graph *g, const kir_node *n) {
  const kir_type *a = &g->nodes[n->inputs[0]]->type, *o = &n->type;
  if (a->rank < 2 || o->rank < 2) return 0;
  double k = (double)a->dims[a->rank - (kir_attr_int(n, "transpose_a", 0) ? 2 : 1)];
  return 2.0 * numel_d(o) * k; /* numel(out) = batch * M * N */
}

static double epilogue_steps(const kir_node *n) {
  int32_t cnt = 0;
  kir_attr_ints(n, "epilogue", &cnt);
  return (double)cnt;
}

/* Elements of the broadcast of all of n's inputs (a fused chain's shape). */
static double chain_numel(const kir_graph *g, const kir_node *n) {
  kir_type acc = g->nodes[n->inputs[0]]->type, next;
  for (int32_t k = 1; k < n->n_inputs; k++)
    if (kir_broadcast(&acc, &g->nodes[n->inputs[k]]->type, &next)) acc = next;
  return numel_d(&acc);
}

/* conv: 2 * (C/group * kernel volume) per output element (w is [M, C/group, k...]). */
static double conv_flops(const kir_graph *g, const kir_node *n) {
  const kir_type *w = &g->nodes[n->inputs[1]]->type;
  double per = 1;
  for (int32_t d = 1; d < w->rank; d++) per *= (double)w->dims[d];
  return 2.0 * per * numel_d(&n->type);
}

/* pools: one per window element per output; batch_norm 4 per element; concat, slice,
 * gather, cast and where move or convert values and count 0 (as the shape ops). */
static double pool_flops(const kir_node *n) {
  int32_t cnt = 0;
  const int64_t *k = kir_attr_ints(n, "kernel", &cnt);
  double per = 1;
  for (int32_t i = 0; i < cnt; i++) per *= (double)k[i];
  return per * numel_d(&n->type);
}

static double node_flops(const kir_graph *g, const kir_node *n) {
  double out = numel_d(&n->type);
  switch (n->op) {
  case KIR_OP_ADD: case KIR_OP_SUB: case KIR_OP_MUL: case KIR_OP_DIV: case KIR_OP_MAXIMUM:
  case KIR_OP_MINIMUM: case KIR_OP_NEG: case KIR_OP_EXP: case KIR_OP_LOG: case KIR_OP_SQRT:
  case KIR_OP_TANH: case KIR_OP_SIGMOID: case KIR_OP_RELU: case KIR_OP_CLAMP: case KIR_OP_POW:
  case KIR_OP_ABS: case KIR_OP_LEAKY_RELU: case KIR_OP_ERF: case KIR_OP_GELU:
    return out;
  case KIR_OP_CONV: return conv_flops(g, n) + (n->n_inputs == 3 ? out : 0);
  case KIR_OP_FUSED_CONV: return conv_flops(g, n) + epilogue_steps(n) * out;
  case KIR_OP_MAX_POOL: case KIR_OP_AVG_POOL: case KIR_OP_MAX_POOL_INDICES: return pool_flops(n);
  case KIR_OP_BATCH_NORM: return 4 * out;
  case KIR_OP_ARGMAX: case KIR_OP_ARGMIN: case KIR_OP_REDUCE_MIN:
    return numel_d(&g->nodes[n->inputs[0]]->type);
  case KIR_OP_LOG_SOFTMAX: return 5 * out;
  case KIR_OP_CONCAT: case KIR_OP_SLICE: case KIR_OP_GATHER: case KIR_OP_CAST: case KIR_OP_WHERE:
    return 0;
  case KIR_OP_ADD_N: return out * (double)(n->n_inputs - 1);
  case KIR_OP_MATMUL: return matmul_flops(g, n);
  case KIR_OP_FUSED_MATMUL: return matmul_flops(g, n) + epilogue_steps(n) * out;
  case KIR_OP_REDUCE_SUM: case KIR_OP_REDUCE_MEAN: case KIR_OP_REDUCE_MAX:
    return numel_d(&g->nodes[n->inputs[0]]->type);
  case KIR_OP_FUSED_REDUCE: return (epilogue_steps(n) + 1) * chain_numel(g, n);
  case KIR_OP_SOFTMAX: return 5 * out;
  case KIR_OP_FUSED_SOFTMAX: return (epilogue_steps(n) + 5) * out;
  case KIR_OP_FUSED_ELEMENTWISE: return epilogue_steps(n) * out;
  case KIR_OP_CONSTANT: case KIR_OP_PLACEHOLDER: case KIR_OP_VARIABLE:
  case KIR_OP_RANDOM_NORMAL: case KIR_OP_RANDOM_UNIFORM: case KIR_OP_RESHAPE:
  case KIR_OP_TRANSPOSE: case KIR_OP_IDENTITY: case KIR_OP_ASSIGN: case KIR_OP_GROUP:
  case KIR_OP_NO_OP: case KIR_OP_TRANSFER: case KIR_OP_INVALID: case KIR_OP_COUNT:
    return 0;
  }
  return 0;
}

static uint64_t count_flops(const kir_graph *g, const kps_memplan *plan, const kcg_plan_ext *x) {
  double total = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (listed(x, g->nodes[i], plan)) total += node_flops(g, g->nodes[i]);
  return total >= 1.8e19 ? UINT64_MAX : (uint64_t)total;
}

/* Packs the plan into *out (kir_malloc). */
static kiln_status pack_plan(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                             int32_t n_outputs, const char *pipeline, bool host_isa,
                             const kcg_plan_ext *x, uint8_t **out, size_t *len) {
  const char *features[KART_MAX_CPU_FEATURES];
  int n_features = host_isa ? kart_cpu_features(features, KART_MAX_CPU_FEATURES) : 0;
  plan_mem m = {0};
  counts c = count_all(g, plan, n_outputs, x);
  char (*kernel_names)[48] = kir_calloc((size_t)c.steps + 1, 48);
  kiln_status s = KILN_OK;
  *out = NULL;
  if (!kernel_names || !plan_mem_alloc(&m, &c, g->n_nodes)) {
    s = kir_seterr(g, KILN_ERR_NOMEM, "out of memory building the artifact plan");
  } else {
    Kiln__Rt__Plan p = KILN__RT__PLAN__INIT;
    p.abi = KART_ABI;
    p.target = (char *)x->target;
    p.entry = (char *)x->entry;
    p.arena_bytes = (uint64_t)plan->arena_bytes;
    p.weights_bytes = (uint64_t)plan->weights_bytes;
    p.producer = PRODUCER;
    p.pipeline = (char *)(pipeline ? pipeline : "");
    p.flops = count_flops(g, plan, x);
    p.n_cpu_features = (size_t)n_features;
    p.cpu_features = (char **)features;
    fill_buffers(g, plan, &m, &c, &p);
    fill_outputs(g, &m, outputs, n_outputs, &p);
    fill_steps(g, plan, &m, n_outputs, &p, kernel_names, x);
    if (x->extend) s = x->extend(x->user, &p);
    if (!s) {
      *len = kiln__rt__plan__get_packed_size(&p);
      *out = kir_malloc(*len);
      if (!*out) s = kir_seterr(g, KILN_ERR_NOMEM, "out of memory packing the artifact plan");
      else kiln__rt__plan__pack(&p, *out);
    }
  }
  kir_free(kernel_names);
  plan_mem_free(&m);
  return s;
}

kiln_status kcg_c_weights_blob(kir_graph *g, const kps_memplan *plan, uint8_t **out) {
  char esc[KCG_ESC_BUF];
  *out = kir_calloc((size_t)plan->weights_bytes + 1, 1);
  if (!*out) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory for %lld bytes of weights",
                               (long long)plan->weights_bytes);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    bool dflt = has_default(n);
    if (plan->loc[i] != KPS_LOC_WEIGHTS && !dflt) continue;
    const kir_tensor *t = n->op == KIR_OP_CONSTANT ? kir_attr_tensor(n, "value")
                          : dflt ? kir_attr_tensor(n, "default") : NULL;
    int64_t nb = t ? kir_type_nbytes(&t->type) : -1;
    if (nb < 0 || !kir_type_equal(&t->type, &n->type) || plan->offset[i] < 0 ||
        plan->offset[i] > plan->weights_bytes - nb) {
      kir_free(*out);
      *out = NULL;
      return kir_seterr(g, KILN_ERR_INTERNAL, "node '%s': weights entry has no constant value of "
                        "its type inside the weights block", kir_escape(n->name, esc, sizeof esc));
    }
    if (nb > 0) memcpy(*out + plan->offset[i], t->data, (size_t)nb);
  }
  return KILN_OK;
}

static int64_t align64(int64_t v) { return (v + 63) / 64 * 64; }

kiln_status kcg_c_reserve(kir_graph *g, kps_memplan *plan) {
  char esc[KCG_ESC_BUF];
  int64_t w = plan->weights_bytes;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op != KIR_OP_PLACEHOLDER) continue;
    const kir_tensor *t = kir_attr_tensor(n, "default");
    int64_t nb = t ? kir_type_nbytes(&t->type) : 0;
    plan->offset[i] = -1;
    if (!t) continue;
    if (nb < 0 || !kir_type_equal(&t->type, &n->type))
      return kir_seterr(g, KILN_ERR_TYPE, "node '%s': the default's type is not the placeholder's",
                        kir_escape(n->name, esc, sizeof esc));
    plan->offset[i] = w = align64(w);
    w += nb;
  }
  plan->weights_bytes = w;
  int64_t sc = kcg_c_scratch_bytes(g, plan);
  if (sc > 0) plan->arena_bytes = align64(plan->arena_bytes) + sc;
  return KILN_OK;
}

kiln_status kcg_c_write_artifact(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                                 int32_t n_outputs, const char *pipeline, bool host_isa,
                                 const char *src, const uint8_t *so, size_t so_len,
                                 const char *path) {
  return kcg_c_write_artifact_ext(g, plan, outputs, n_outputs, pipeline, host_isa, src, so, so_len,
                                  NULL, path);
}

kiln_status kcg_c_write_artifact_ext(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                                     int32_t n_outputs, const char *pipeline, bool host_isa,
                                     const char *src, const uint8_t *so, size_t so_len,
                                     const kcg_plan_ext *ext, const char *path) {
  const kcg_plan_ext *x = ext ? ext : &k_cpu_target;
  if (x->n_sections < 0 || x->n_sections > KART_MAX_SECTIONS - 4 || (x->n_sections && !x->sections))
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_c_write_artifact_ext: %d extra sections",
                      x->n_sections);
  uint8_t *pb = NULL, *weights = NULL;
  size_t pb_len = 0;
  kiln_status s = pack_plan(g, plan, outputs, n_outputs, pipeline, host_isa, x, &pb, &pb_len);
  if (!s) s = kcg_c_weights_blob(g, plan, &weights);
  if (!s) {
    kart_section sec[KART_MAX_SECTIONS];
    int n = 0;
    memset(sec, 0, sizeof sec);
    sec[n].kind = KART_SEC_PLAN, sec[n].data = pb, sec[n++].size = pb_len;
    sec[n].kind = KART_SEC_WEIGHTS, sec[n].data = weights, sec[n++].size = (uint64_t)plan->weights_bytes;
    if (src) {
      sec[n].kind = KART_SEC_CODE_CPU, sec[n].data = so, sec[n++].size = so_len;
      sec[n].kind = KART_SEC_SOURCE_C, sec[n].data = (const uint8_t *)src, sec[n++].size = strlen(src);
    }
    for (int i = 0; i < x->n_sections; i++) sec[n++] = x->sections[i];
    char err[400] = "";
    int rc = kart_write(path, sec, n, err, sizeof err);
    if (rc != 0) s = kir_seterr(g, (kiln_status)rc, "%s", err[0] ? err : "writing the artifact failed");
  }
  kir_free(pb);
  kir_free(weights);
  return s;
}
