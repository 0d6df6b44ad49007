/* kcg_c_emit.c — kcg_c_generate: one self-contained C11 translation unit for a planned
 * graph (header comment, one kernel per step from kcg_c_kernels.c, the exported
 * kiln_entry that wires steps to input/weight/arena pointers). kcg_c_emit_program is the
 * same text with another entry declaration: the standalone output's steps function. Deterministic text; model
 * strings appear only escaped inside comments. Depends on ir/ and the memory plan only. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kcg_c_internal.h"

/* ---------------------------------------------------------------- text buffer --- */

void kcg_printf(kcg_buf *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
  va_end(ap);
  if (len < 0) { b->oom = true; return; }
  if (b->p && b->n + (size_t)len < b->cap) { b->n += (size_t)len; return; }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap <= b->n + (size_t)len) cap *= 2;
  char *p = kir_realloc(b->p, b->cap, cap);
  if (!p) { b->oom = true; return; }
  b->p = p;
  b->cap = cap;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
  va_end(ap);
  b->n += (size_t)len;
}

void kcg_buf_free(kcg_buf *b) {
  kir_free(b->p);
  memset(b, 0, sizeof *b);
}

#define NAME_CUT 64

void kcg_put_name(kcg_buf *b, const char *s) {
  size_t i = 0;
  if (!s) s = "";
  kcg_printf(b, "\"");
  for (; s[i] && i < NAME_CUT; i++) {
    unsigned char c = (unsigned char)s[i];
    bool plain = c >= 0x20 && c < 0x7f && !strchr("*\\\"'?", c);
    if (plain) kcg_printf(b, "%c", c);
    else kcg_printf(b, "\\x%02X", c);
  }
  kcg_printf(b, s[i] ? "\"..." : "\"");
}

void kcg_put_double(kcg_buf *b, double v) {
  if (isnan(v)) kcg_printf(b, "NAN");
  else if (isinf(v)) kcg_printf(b, v > 0 ? "HUGE_VAL" : "(-HUGE_VAL)");
  else kcg_printf(b, "%a", v);
}

/* ---------------------------------------------------------------- steps --------- */

bool kcg_c_is_step(const kir_node *n, const kps_memplan *plan) {
  if (kir_op_has(n->op, KIR_F_SOURCE) || kir_op_has(n->op, KIR_F_NO_OUTPUT)) return false;
  return plan->loc[n->id] != KPS_LOC_NONE;
}

bool kcg_c_on_cpu(const kir_node *n) {
  return !n->assigned_device || !n->assigned_device[0] || strcmp(n->assigned_device, "cpu:0") == 0;
}

/* kiln_step mode: the runtime moves the bytes of a transfer itself, and every node off
 * cpu:0 belongs to another target's code. */
bool kcg_c_is_step_in(const kir_node *n, const kps_memplan *plan, bool step_mode) {
  if (step_mode && (!kcg_c_on_cpu(n) || n->op == KIR_OP_TRANSFER)) return false;
  return kcg_c_is_step(n, plan);
}

typedef struct gen {
  kir_graph *g;
  const kps_memplan *plan;
  int32_t *ph_index; /* per node: input index of a placeholder, -1 otherwise */
  int32_t n_inputs;
  const kcg_c_entry *entry;
  kcg_buf b;
  int64_t scratch_off; /* arena offset of the steps' scratch (kcg_c_reserve) */
  const char *ind;     /* indentation of a step call: deeper inside kiln_step's switch */
} gen;

static bool is_step(const gen *G, const kir_node *n) {
  return kcg_c_is_step_in(n, G->plan, G->entry->step_mode);
}

static kiln_status gerr(gen *G, const kir_node *n, kiln_status s, const char *msg) {
  char esc[KCG_ESC_BUF];
  return kir_seterr(G->g, s, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), msg);
}

/* Checks what the generator relies on: plan sized for g, sources where they belong,
 * no variables. */
static kiln_status check_node(gen *G, const kir_node *n) {
  kps_loc loc = G->plan->loc[n->id];
  if (!kir_op_get(n->op)) return gerr(G, n, KILN_ERR_GRAPH, "invalid op");
  if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
    return gerr(G, n, KILN_ERR_UNSUPPORTED, "variables cannot be compiled; freeze the graph first");
  if ((n->op == KIR_OP_RANDOM_NORMAL || n->op == KIR_OP_RANDOM_UNIFORM) && loc == KPS_LOC_ARENA)
    return gerr(G, n, KILN_ERR_UNSUPPORTED,
                "random source must be evaluated to a constant before code generation");
  if (loc == KPS_LOC_NONE) return KILN_OK;
  int64_t nb = kir_type_nbytes(&n->type);
  if (nb < 0 || G->plan->size[n->id] < nb || (loc != KPS_LOC_INPUT && G->plan->offset[n->id] < 0))
    return gerr(G, n, KILN_ERR_INTERNAL, "memory plan size or offset disagrees with the type");
  bool ok = n->op == KIR_OP_PLACEHOLDER ? loc == KPS_LOC_INPUT
            : n->op == KIR_OP_CONSTANT || n->op == KIR_OP_RANDOM_NORMAL ||
                    n->op == KIR_OP_RANDOM_UNIFORM ? loc == KPS_LOC_WEIGHTS
                                                   : loc == KPS_LOC_ARENA;
  if (!ok) return gerr(G, n, KILN_ERR_INTERNAL, "memory plan puts the node in the wrong place");
  int64_t end = loc == KPS_LOC_ARENA ? G->plan->arena_bytes : loc == KPS_LOC_WEIGHTS ? G->plan->weights_bytes : INT64_MAX;
  if (loc != KPS_LOC_INPUT && G->plan->offset[n->id] > end - nb)
    return gerr(G, n, KILN_ERR_INTERNAL, "memory plan places the node past the end of its block");
  return KILN_OK;
}

/* kiln_step mode: a step reads and writes only cpu:0 values (the arena pointer is
 * cpu:0's arena): the placement put a transfer wherever a value crosses devices. */
static kiln_status check_cpu_side(gen *G, const kir_node *n, int32_t id) {
  const kir_node *v = G->g->nodes[id];
  kps_loc loc = G->plan->loc[id];
  bool ok = loc == KPS_LOC_WEIGHTS ||
            (loc == KPS_LOC_INPUT && kcg_c_on_cpu(v)) ||
            (loc == KPS_LOC_ARENA && kcg_c_on_cpu(v));
  if (ok) return KILN_OK;
  char esc[KCG_ESC_BUF], msg[KCG_ESC_BUF + 96];
  snprintf(msg, sizeof msg, "runs on cpu:0 but reads '%s', which is on %s, without a transfer",
           kir_escape(v->name, esc, sizeof esc), v->assigned_device);
  return gerr(G, n, KILN_ERR_INTERNAL, msg);
}

static kiln_status check_step_sides(gen *G) {
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < G->g->n_nodes && !s; i++) {
    const kir_node *n = G->g->nodes[i];
    if (!is_step(G, n)) continue;
    for (int32_t k = 0; k < n->n_inputs && !s; k++) s = check_cpu_side(G, n, n->inputs[k]);
  }
  return s;
}

/* Pointer expression for node id's value, e.g. "(const float *)(const void *)(arena + 64)". */
static void put_ptr(gen *G, int32_t id, bool out) {
  const kir_node *n = G->g->nodes[id];
  const char *T = kcg_ctype(n->type.dtype), *c = out ? "" : "const ";
  long long off = (long long)G->plan->offset[id];
  switch (G->plan->loc[id]) {
  case KPS_LOC_INPUT: kcg_printf(&G->b, "(const %s *)inputs[%d]", T, (int)G->ph_index[id]); return;
  case KPS_LOC_WEIGHTS: kcg_printf(&G->b, "(const %s *)(const void *)(weights + %lld)", T, off); return;
  case KPS_LOC_ARENA: kcg_printf(&G->b, "(%s%s *)(%svoid *)(arena + %lld)", c, T, c, off); return;
  case KPS_LOC_NONE: break;
  }
  kcg_printf(&G->b, "0");
}

/* Whether two located values share bytes. */
static bool overlaps(const kps_memplan *p, int32_t a, int32_t b) {
  if (p->loc[a] != p->loc[b] || p->loc[a] == KPS_LOC_NONE || p->size[a] == 0 || p->size[b] == 0)
    return false;
  if (p->loc[a] == KPS_LOC_INPUT) return a == b;
  return p->offset[a] < p->offset[b] + p->size[b] && p->offset[b] < p->offset[a] + p->size[a];
}

/* restrict is emitted only when the output shares no memory with an input. Sharing is
 * allowed only where the kernel reads each element before writing it: elementwise and
 * add_n ops with the output exactly over a same-shaped input, and memmove copies. */
static kiln_status check_aliasing(gen *G, const kir_node *n, bool *restrict_ok) {
  *restrict_ok = true;
  for (int32_t i = 0; i < n->n_inputs; i++) {
    int32_t in = n->inputs[i];
    if (!overlaps(G->plan, in, n->id)) continue;
    *restrict_ok = false;
    bool copy = n->op == KIR_OP_RESHAPE || n->op == KIR_OP_IDENTITY || n->op == KIR_OP_TRANSFER;
    bool exact = G->plan->offset[in] == G->plan->offset[n->id] &&
                 kir_type_equal(&G->g->nodes[in]->type, &n->type);
    bool ew = kir_op_has(n->op, KIR_F_ELEMENTWISE) || n->op == KIR_OP_ADD_N ||
              n->op == KIR_OP_FUSED_ELEMENTWISE;
    if (!copy && !(ew && exact))
      return gerr(G, n, KILN_ERR_INTERNAL, "memory plan overlaps its output with an input");
  }
  return KILN_OK;
}

/* The call of one step inside kiln_entry. */
static void put_call(gen *G, const kir_node *n, int32_t step) {
  kcg_buf *b = &G->b;
  const char *name = kir_op_get(n->op)->name, *ind = G->ind;
  if (n->op == KIR_OP_ADD_N) {
    kcg_printf(b, "%s{\n%s  const %s *const args[%d] = {", ind, ind, kcg_ctype(n->type.dtype),
               (int)n->n_inputs);
    for (int32_t i = 0; i < n->n_inputs; i++) {
      kcg_printf(b, "%s%s    ", i ? ",\n" : "\n", ind);
      put_ptr(G, n->inputs[i], false);
    }
    kcg_printf(b, "};\n%s  if (k%d_%s(args, ", ind, (int)step, name);
    put_ptr(G, n->id, true);
    kcg_printf(b, ")) return %d;\n%s}\n", (int)step + 1, ind);
    return;
  }
  kcg_printf(b, "%sif (k%d_%s(", ind, (int)step, name);
  for (int32_t i = 0; i < n->n_inputs; i++) {
    put_ptr(G, n->inputs[i], false);
    kcg_printf(b, ",\n%s    ", ind);
  }
  put_ptr(G, n->id, true);
  if (kcg_c_step_scratch(G->g, n) > 0)
    kcg_printf(b, ",\n%s    (%s *)(void *)(arena + %lld)", ind, kcg_ctype(n->type.dtype),
               (long long)G->scratch_off);
  kcg_printf(b, ")) return %d;\n", (int)step + 1);
}

/* Whether g has an integer pow of a signed (uns false) or unsigned (true) dtype. */
static bool uses_int_pow(const kir_graph *g, bool uns) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == KIR_OP_POW && kir_dtype_is_int(g->nodes[i]->type.dtype) &&
        kir_dtype_is_unsigned(g->nodes[i]->type.dtype) == uns)
      return true;
  return false;
}

/* Whether any value of g (a node's output or input) is f16 or bf16. */
static bool uses_half(const kir_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (kcg_is_half(n->type.dtype)) return true;
  }
  return false;
}

/* Unsigned integer pow: wrapping; the exponent is never negative. */
static void put_upow(kcg_buf *b) {
  kcg_printf(b, "static inline uint64_t kcg_upow(uint64_t a, uint64_t e) {\n"
             "  uint64_t r = 1;\n"
             "  for (; e; e >>= 1) {\n    if (e & 1) r *= a;\n    a *= a;\n  }\n"
             "  return r;\n}\n\n");
}

/* f16/bf16 <-> double, the interpreter's algorithm (ir/kir_types.c) so results agree bit
 * for bit: a double is rounded to the format once (nearest even, overflow to infinity,
 * NaN to a quiet NaN of its sign); widening is exact. A 64-bit integer first becomes a
 * double rounded to odd, which the second rounding turns into the correctly rounded
 * value. No _Float16: plain C11 on any compiler. */
static void put_half_helpers(kcg_buf *b) {
  kcg_printf(b,
    "static inline uint16_t kcg_half_from_d(double v, int p, int bias) {\n"
    "  uint16_t sign = signbit(v) ? (uint16_t)0x8000 : 0;\n"
    "  int emax_field = 2 * bias + 1;\n"
    "  if (isnan(v)) return (uint16_t)(sign | (emax_field << p) | (1u << (p - 1)));\n"
    "  double a = fabs(v);\n"
    "  if (a == 0) return sign;\n"
    "  if (isinf(a)) return (uint16_t)(sign | (emax_field << p));\n"
    "  int e;\n"
    "  (void)frexp(a, &e);\n"
    "  e -= 1;\n"
    "  int emin = 1 - bias;\n"
    "  if (e < emin) e = emin;\n"
    "  if (e > bias + 1) return (uint16_t)(sign | (emax_field << p));\n"
    "  double m = ldexp(a, p - e);\n"
    "  double fl = floor(m), frac = m - fl;\n"
    "  if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0)) fl += 1;\n"
    "  uint32_t r = (uint32_t)fl, bits;\n"
    "  if (r < (1u << p)) bits = r;\n"
    "  else bits = ((uint32_t)(e - emin + 1) << p) + (r - (1u << p));\n"
    "  if (bits >= (uint32_t)emax_field << p) bits = (uint32_t)emax_field << p;\n"
    "  return (uint16_t)(sign | bits);\n}\n\n"
    "static inline double kcg_half_to_d(uint16_t h, int p, int bias) {\n"
    "  int ef = (h >> p) & (2 * bias + 1);\n"
    "  uint32_t f = h & ((1u << p) - 1);\n"
    "  double mag;\n"
    "  if (ef == 2 * bias + 1) mag = f ? NAN : INFINITY;\n"
    "  else if (ef == 0) mag = ldexp((double)f, 1 - bias - p);\n"
    "  else mag = ldexp((double)(f | (1u << p)), ef - bias - p);\n"
    "  return (h & 0x8000) ? -mag : mag;\n}\n\n"
    "static inline uint16_t kcg_f16_from_d(double v) { return kcg_half_from_d(v, 10, 15); }\n"
    "static inline double kcg_f16_to_d(uint16_t h) { return kcg_half_to_d(h, 10, 15); }\n"
    "static inline uint16_t kcg_bf16_from_d(double v) { return kcg_half_from_d(v, 7, 127); }\n"
    "static inline double kcg_bf16_to_d(uint16_t h) { return kcg_half_to_d(h, 7, 127); }\n"
    "static inline double kcg_f16_rnd(double v) { return kcg_f16_to_d(kcg_f16_from_d(v)); }\n"
    "static inline double kcg_bf16_rnd(double v) { return kcg_bf16_to_d(kcg_bf16_from_d(v)); }\n\n"
    "static inline double kcg_u64_odd(uint64_t m) {\n"
    "  if (m < ((uint64_t)1 << 53)) return (double)m;\n"
    "  int len = 64;\n"
    "  while (!(m >> (len - 1))) len--;\n"
    "  int s = len - 53;\n"
    "  uint64_t lost = m & (((uint64_t)1 << s) - 1);\n"
    "  m = (m >> s) << s;\n"
    "  if (lost) m |= (uint64_t)1 << s;\n"
    "  return (double)m;\n}\n\n"
    "static inline double kcg_i64_odd(int64_t v) {\n"
    "  uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;\n"
    "  double d = kcg_u64_odd(m);\n"
    "  return v < 0 ? -d : d;\n}\n\n");
}

/* Integer pow as ops.def defines it: wrapping, and a negative exponent gives 1/a^|b|
 * truncated (0 unless a is 1 or -1). */
static void put_ipow(kcg_buf *b) {
  kcg_printf(b, "static inline int64_t kcg_ipow(int64_t a, int64_t e) {\n"
             "  if (e < 0) return a == 1 ? 1 : a == -1 ? ((e & 1) ? -1 : 1) : 0;\n"
             "  uint64_t r = 1, x = (uint64_t)a;\n"
             "  for (; e; e >>= 1) {\n    if (e & 1) r *= x;\n    x *= x;\n  }\n"
             "  return (int64_t)r;\n}\n\n");
}

static void put_header(gen *G, const int32_t *outputs, int32_t n_outputs, int32_t n_steps) {
  kcg_buf *b = &G->b;
  char ty[96];
  kcg_printf(b, "/* generated by kiln; do not edit.\n *\n");
  kcg_printf(b, " * graph: %d nodes, %d steps, %d inputs, %d outputs\n", (int)G->g->n_nodes,
             (int)n_steps, (int)G->n_inputs, (int)n_outputs);
  kcg_printf(b, " * memory: arena %lld bytes, weights %lld bytes\n",
             (long long)G->plan->arena_bytes, (long long)G->plan->weights_bytes);
  for (int32_t i = 0; i < G->g->n_nodes; i++) {
    const kir_node *n = G->g->nodes[i];
    if (n->op != KIR_OP_PLACEHOLDER) continue;
    kir_type_format(&n->type, ty, sizeof ty);
    kcg_printf(b, " * input %d: ", (int)G->ph_index[i]);
    kcg_put_name(b, n->name);
    kcg_printf(b, " %s\n", ty);
  }
  for (int32_t j = 0; j < n_outputs; j++) {
    const kir_node *n = G->g->nodes[outputs[j]];
    kir_type_format(&n->type, ty, sizeof ty);
    kcg_printf(b, " * output %d: ", (int)j);
    kcg_put_name(b, n->name);
    kcg_printf(b, " %s\n", ty);
  }
  kcg_printf(b, " */\n#include <math.h>\n#include <stdint.h>\n#include <string.h>\n#include <cblas.h>\n");
  if (G->entry->include) kcg_printf(b, "%s\n", G->entry->include);
  kcg_printf(b, "\n");
  if (uses_int_pow(G->g, false)) put_ipow(b);
  if (uses_int_pow(G->g, true)) put_upow(b);
  if (uses_half(G->g)) put_half_helpers(b);
  for (int32_t i = 0; i < G->g->n_nodes; i++)
    if (is_step(G, G->g->nodes[i]) && kcg_c_small_gemm(G->g, G->g->nodes[i])) {
      kcg_c_put_small_gemm(b);
      break;
    }
}

static kiln_status put_kernels(gen *G, int32_t *n_steps) {
  int32_t step = 0;
  for (int32_t i = 0; i < G->g->n_nodes; i++) {
    const kir_node *n = G->g->nodes[i];
    if (!is_step(G, n)) continue;
    bool restrict_ok;
    kiln_status s = check_aliasing(G, n, &restrict_ok);
    if (s || (s = kcg_c_emit_kernel(G->g, n, step, restrict_ok, &G->b))) return s;
    step++;
  }
  *n_steps = step;
  return KILN_OK;
}

/* kiln_step: one case per step, so the runtime can interleave CPU steps with another
 * device's work; the runtime copies the outputs, so no memcpy here. An i that names no
 * step returns -1 (no step's error code can be negative). */
static void put_step_switch(gen *G) {
  kcg_buf *b = &G->b;
  kcg_printf(b, "%s(int i, const void *const *inputs, "
             "void *const *outputs, unsigned char *arena, const unsigned char *weights) {\n",
             G->entry->decl);
  kcg_printf(b, "  (void)inputs; (void)outputs; (void)arena; (void)weights;\n  switch (i) {\n");
  int32_t step = 0;
  for (int32_t i = 0; i < G->g->n_nodes; i++) {
    if (!is_step(G, G->g->nodes[i])) continue;
    kcg_printf(b, "  case %d:\n", (int)step);
    put_call(G, G->g->nodes[i], step++);
    kcg_printf(b, "    return 0;\n");
  }
  kcg_printf(b, "  default:\n    return -1;\n  }\n}\n");
}

static void put_entry(gen *G, const int32_t *outputs, int32_t n_outputs) {
  kcg_buf *b = &G->b;
  if (G->entry->abi_symbol)
    kcg_printf(b, "__attribute__((visibility(\"default\"))) const unsigned kiln_abi_version = 1;\n\n");
  if (G->entry->step_mode) {
    put_step_switch(G);
    return;
  }
  kcg_printf(b, "%s(const void *const *inputs, "
             "void *const *outputs, unsigned char *arena, const unsigned char *weights) {\n",
             G->entry->decl);
  kcg_printf(b, "  (void)inputs; (void)outputs; (void)arena; (void)weights;\n");
  int32_t step = 0;
  for (int32_t i = 0; i < G->g->n_nodes; i++)
    if (is_step(G, G->g->nodes[i])) put_call(G, G->g->nodes[i], step++);
  for (int32_t j = 0; j < n_outputs; j++) {
    int64_t nb = kir_type_nbytes(&G->g->nodes[outputs[j]]->type);
    if (nb <= 0) continue;
    kcg_printf(b, "  memcpy(outputs[%d], ", (int)j);
    put_ptr(G, outputs[j], false);
    kcg_printf(b, ", %lld);\n", (long long)nb);
  }
  kcg_printf(b, "  return 0;\n}\n");
}

static kiln_status check_args(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                              int32_t n_outputs, char **src) {
  if (!plan || !src || (n_outputs > 0 && !outputs) || n_outputs < 0)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_c_generate: NULL plan, outputs or result");
  if (plan->n_nodes != g->n_nodes || !plan->loc || !plan->offset || !plan->size)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_c_generate: the memory plan is for %d nodes, the graph has %d",
                      (int)plan->n_nodes, (int)g->n_nodes);
  for (int32_t j = 0; j < n_outputs; j++)
    if (outputs[j] < 0 || outputs[j] >= g->n_nodes || plan->loc[outputs[j]] == KPS_LOC_NONE)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_c_generate: output %d (node %d) has no planned value",
                        (int)j, (int)outputs[j]);
  return KILN_OK;
}

static kiln_status generate(gen *G, const int32_t *outputs, int32_t n_outputs) {
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < G->g->n_nodes && !s; i++) {
    const kir_node *n = G->g->nodes[i];
    G->ph_index[i] = n->op == KIR_OP_PLACEHOLDER ? G->n_inputs++ : -1;
    /* kiln_step mode: other devices' values are planned in their own arenas */
    if (!G->entry->step_mode || kcg_c_on_cpu(n)) s = check_node(G, n);
  }
  if (!s && G->entry->step_mode) s = check_step_sides(G);
  if (s) return s;
  G->scratch_off = kcg_c_scratch_offset(G->g, G->plan);
  if (kcg_c_scratch_bytes(G->g, G->plan) > 0 && G->scratch_off < 0)
    return kir_seterr(G->g, KILN_ERR_INTERNAL, "kcg_c_generate: the memory plan has no room for "
                      "the conv scratch (%lld bytes); it must come from kcg_c_reserve",
                      (long long)kcg_c_scratch_bytes(G->g, G->plan));
  int32_t n_steps = 0;
  kcg_buf kernels = {0};
  kcg_buf hdr = G->b; /* header goes first but needs the step count: build kernels aside */
  G->b = kernels;
  s = put_kernels(G, &n_steps);
  kernels = G->b;
  G->b = hdr;
  if (!s) {
    put_header(G, outputs, n_outputs, n_steps);
    if (kernels.n) kcg_printf(&G->b, "%s", kernels.p);
    G->b.oom = G->b.oom || kernels.oom;
    put_entry(G, outputs, n_outputs);
  }
  kcg_buf_free(&kernels);
  return s;
}

kiln_status kcg_c_generate(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                           int32_t n_outputs, char **src) {
  static const kcg_c_entry artifact = {"__attribute__((visibility(\"default\")))\nint kiln_entry", true, NULL};
  if (!g) return KILN_ERR_ARGUMENT;
  return kcg_c_emit_program(g, plan, outputs, n_outputs, &artifact, src);
}

kiln_status kcg_c_emit_program(kir_graph *g, const kps_memplan *plan, const int32_t *outputs,
                               int32_t n_outputs, const kcg_c_entry *entry, char **src) {
  if (!g) return KILN_ERR_ARGUMENT;
  kiln_status s = check_args(g, plan, outputs, n_outputs, src);
  if (s) return s;
  if (!entry || !entry->decl) return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_c_emit_program: no entry declaration");
  *src = NULL;
  gen G = {g, plan, NULL, 0, entry, {0}, 0, entry->step_mode ? "    " : "  "};
  G.ph_index = kir_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(int32_t));
  if (!G.ph_index) return kir_seterr(g, KILN_ERR_NOMEM, "kcg_c_generate: out of memory");
  s = generate(&G, outputs, n_outputs);
  kir_free(G.ph_index);
  if (!s && (G.b.oom || !G.b.p)) s = kir_seterr(g, KILN_ERR_NOMEM, "kcg_c_generate: out of memory for the C text");
  if (s) {
    kcg_buf_free(&G.b);
    return s;
  }
  *src = G.b.p;
  return KILN_OK;
}
