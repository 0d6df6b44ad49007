/* kps_plan.c — static memory planning (kps_plan_memory and the "plan-memory" pass):
 * placeholders are the caller's buffers, constants go to a weights blob, every other
 * used value gets a 64-byte-aligned offset in its device's arena (one arena per
 * assigned_device) by first fit over liveness in node order (over the free gaps, so
 * time stays near linear). A value never shares bytes
 * with another live value, except that an in-place op (KIR_F_INPLACE_OK) may write over
 * its first input when that input dies at it, is computed in the same arena and has the
 * same type. Depends on ir/ only. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <string.h>

#define ALIGN 64

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* ---------------------------------------------------------------- arenas -------- */
/* An arena is its high-water mark (the peak) and the free gaps below it, sorted by
 * offset and coalesced, so first fit scans the gaps, not the live buffers (which can
 * be many: outputs live to the end). A gap ending at the peak may grow past it. */

typedef struct gap {
  int64_t off, end;
} gap;

typedef struct arena {
  gap *gap;
  int32_t n, cap;
  int64_t top; /* aligned end of everything ever placed; gaps lie below it */
} arena;

static bool arena_reserve(arena *a) {
  if (a->n + 2 <= a->cap) return true;
  int32_t cap = a->cap ? 2 * a->cap : 16;
  gap *b = kir_realloc(a->gap, (size_t)a->cap * sizeof *b, (size_t)cap * sizeof *b);
  if (!b) return false;
  a->gap = b;
  a->cap = cap;
  return true;
}

static void gap_remove(arena *a, int32_t at) {
  memmove(&a->gap[at], &a->gap[at + 1], (size_t)(a->n - at - 1) * sizeof *a->gap);
  a->n--;
}

static void gap_insert(arena *a, int32_t at, int64_t off, int64_t end) {
  memmove(&a->gap[at + 1], &a->gap[at], (size_t)(a->n - at) * sizeof *a->gap);
  a->gap[at] = (gap){off, end};
  a->n++;
}

/* First fit: the lowest offset where size bytes are free. Buffers take whole 64-byte
 * blocks, so every gap starts and ends aligned (no slivers to scan past). *peak is the
 * largest end in use, not rounded. Needs room for one more gap (arena_reserve). */
static int64_t arena_place(arena *a, int64_t size, int64_t *peak) {
  int64_t need = align_up(size), off = a->top;
  int32_t at = 0;
  for (; at < a->n; at++)
    if (a->gap[at].end == a->top || a->gap[at].off + need <= a->gap[at].end) break;
  if (at < a->n) {
    gap g = a->gap[at];
    off = g.off;
    gap_remove(a, at);
    if (off + need < g.end) gap_insert(a, at, off + need, g.end);
  }
  if (off + need > a->top) a->top = off + need;
  if (off + size > *peak) *peak = off + size;
  return off;
}

/* Frees the blocks of [off, off + size): a new gap, merged with its neighbours. Needs
 * room (arena_reserve). */
static void arena_free(arena *a, int64_t off, int64_t size) {
  int64_t end = off + align_up(size);
  int32_t lo = 0, hi = a->n;
  while (lo < hi) { /* first gap at or after off */
    int32_t mid = lo + (hi - lo) / 2;
    if (a->gap[mid].off < off) lo = mid + 1;
    else hi = mid;
  }
  bool left = lo > 0 && a->gap[lo - 1].end == off;
  bool right = lo < a->n && a->gap[lo].off == end;
  if (left && right) {
    a->gap[lo - 1].end = a->gap[lo].end;
    gap_remove(a, lo);
  } else if (left) {
    a->gap[lo - 1].end = end;
  } else if (right) {
    a->gap[lo].off = off;
  } else {
    gap_insert(a, lo, off, end);
  }
}

/* ---------------------------------------------------------------- planner ------- */

typedef struct planner {
  kir_graph *g;
  kps_memplan *p;
  bool allow_state;
  int32_t *last;      /* per node: last consumer; n_nodes for outputs; -1 if never read */
  int32_t *die_start; /* CSR over consumers: values whose last consumer is node i */
  int32_t *die;
  uint8_t *taken;     /* per node: its buffer went to an in-place successor */
  arena ar[KPS_MAX_DEVICES];
} planner;

static kiln_status refuse(kir_graph *g, const kir_node *n, kiln_status st, const char *why) {
  char esc[KPS_ESC];
  return kir_seterr(g, st, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), why);
}

static kiln_status liveness(planner *P, const int32_t *outputs, int32_t n_outputs) {
  kir_graph *g = P->g;
  int32_t *last = P->last;
  for (int32_t i = 0; i < g->n_nodes; i++) last[i] = -1;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (!P->allow_state && (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN))
      return refuse(g, n, KILN_ERR_UNSUPPORTED, "variables cannot be planned; freeze the graph first");
    for (int32_t k = 0; k < n->n_inputs; k++) last[n->inputs[k]] = i;
  }
  for (int32_t o = 0; o < n_outputs; o++) {
    if (outputs[o] < 0 || outputs[o] >= g->n_nodes)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "plan-memory: output %d is node id %d, out of range [0, %d)",
                        (int)o, (int)outputs[o], (int)g->n_nodes);
    last[outputs[o]] = g->n_nodes;
  }
  /* Buckets of dying values, by the node after which they die. */
  for (int32_t i = 0; i <= g->n_nodes; i++) P->die_start[i] = 0;
  for (int32_t v = 0; v < g->n_nodes; v++)
    if (last[v] >= 0 && last[v] < g->n_nodes) P->die_start[last[v] + 1]++;
  for (int32_t i = 0; i < g->n_nodes; i++) P->die_start[i + 1] += P->die_start[i];
  for (int32_t v = 0; v < g->n_nodes; v++)
    if (last[v] >= 0 && last[v] < g->n_nodes) P->die[P->die_start[last[v]]++] = v;
  for (int32_t i = g->n_nodes; i > 0; i--) P->die_start[i] = P->die_start[i - 1];
  P->die_start[0] = 0;
  return KILN_OK;
}

static kiln_status size_of(kir_graph *g, const kir_node *n, int64_t *size) {
  if (kir_op_has(n->op, KIR_F_NO_OUTPUT)) {
    *size = 0;
    return KILN_OK;
  }
  *size = kir_type_nbytes(&n->type);
  if (*size < 0) return refuse(g, n, KILN_ERR_LIMIT, "output size overflows or exceeds the tensor limit");
  return KILN_OK;
}

/* The arena of n's device; "" counts as cpu:0. */
static kiln_status arena_index(planner *P, const kir_node *n, int32_t *out) {
  kps_memplan *p = P->p;
  char esc[KPS_ESC];
  const char *dev = n->assigned_device && n->assigned_device[0] ? n->assigned_device : "cpu:0";
  for (int32_t d = 0; d < p->n_arenas; d++)
    if (strcmp(p->arenas[d].device, dev) == 0) {
      *out = d;
      return KILN_OK;
    }
  if (strlen(dev) >= sizeof p->arenas[0].device)
    return refuse(P->g, n, KILN_ERR_LIMIT, "device name too long for the memory plan");
  if (p->n_arenas == KPS_MAX_DEVICES)
    return kir_seterr(P->g, KILN_ERR_LIMIT, "plan-memory: node '%s' is on a %dth device, at most %d",
                      kir_escape(n->name, esc, sizeof esc), (int)p->n_arenas + 1, KPS_MAX_DEVICES);
  *out = p->n_arenas++;
  snprintf(p->arenas[*out].device, sizeof p->arenas[*out].device, "%s", dev);
  return KILN_OK;
}

/* Whether n may write over its first input: the op allows it (and the C code
 * generator's aliasing check accepts it: elementwise, add_n, identity), the input is an
 * arena value of the same arena and type that dies here. */
static bool can_inplace(const planner *P, const kir_node *n, int32_t dev, int64_t size) {
  if (!kir_op_has(n->op, KIR_F_INPLACE_OK) || n->n_inputs < 1 || size <= 0) return false;
  if (!kir_op_has(n->op, KIR_F_ELEMENTWISE) && n->op != KIR_OP_ADD_N && n->op != KIR_OP_IDENTITY) return false;
  int32_t in = n->inputs[0];
  const kps_memplan *p = P->p;
  return p->loc[in] == KPS_LOC_ARENA && p->arena_of[in] == dev && P->last[in] == n->id &&
         !P->taken[in] && p->size[in] == size && kir_type_equal(&P->g->nodes[in]->type, &n->type);
}

static kiln_status plan_arena(planner *P, const kir_node *n, int64_t size) {
  kps_memplan *p = P->p;
  int32_t i = n->id, dev = 0;
  kiln_status st = arena_index(P, n, &dev);
  if (st != KILN_OK) return st;
  if (!arena_reserve(&P->ar[dev])) return kir_seterr(P->g, KILN_ERR_NOMEM, "plan-memory: out of memory");
  p->loc[i] = KPS_LOC_ARENA;
  p->arena_of[i] = dev;
  p->arenas[dev].n_buffers++;
  if (can_inplace(P, n, dev, size)) {
    int32_t in = n->inputs[0];
    p->offset[i] = p->offset[in];
    p->inplace_of[i] = in;
    P->taken[in] = 1;
    p->n_inplace++;
    return KILN_OK;
  }
  if (size == 0) { /* zero bytes take no space; offset 0 is as good as any */
    p->offset[i] = 0;
    return KILN_OK;
  }
  p->offset[i] = arena_place(&P->ar[dev], size, &p->arenas[dev].peak_bytes);
  return KILN_OK;
}

static kiln_status plan_node(planner *P, const kir_node *n) {
  kps_memplan *p = P->p;
  int32_t i = n->id;
  int64_t size = 0;
  kiln_status st = size_of(P->g, n, &size);
  if (st != KILN_OK) return st;
  p->size[i] = size;
  p->offset[i] = -1;
  p->arena_of[i] = p->inplace_of[i] = -1;
  if (n->op == KIR_OP_PLACEHOLDER) {
    p->loc[i] = KPS_LOC_INPUT;
  } else if (n->op == KIR_OP_CONSTANT) {
    p->loc[i] = KPS_LOC_WEIGHTS;
    p->offset[i] = align_up(p->weights_bytes);
    p->weights_bytes = p->offset[i] + size;
  } else if (kir_op_has(n->op, KIR_F_NO_OUTPUT) || P->last[i] < 0 || n->op == KIR_OP_VARIABLE) {
    p->loc[i] = KPS_LOC_NONE; /* a variable's value lives in session state */
  } else {
    return plan_arena(P, n, size);
  }
  return KILN_OK;
}

/* After node i ran: the buffers of values it read for the last time are free. */
static kiln_status release_after(planner *P, int32_t i) {
  const kps_memplan *p = P->p;
  for (int32_t k = P->die_start[i]; k < P->die_start[i + 1]; k++) {
    int32_t v = P->die[k];
    if (p->loc[v] != KPS_LOC_ARENA || p->size[v] == 0 || P->taken[v]) continue;
    arena *a = &P->ar[p->arena_of[v]];
    if (!arena_reserve(a)) return kir_seterr(P->g, KILN_ERR_NOMEM, "plan-memory: out of memory");
    arena_free(a, p->offset[v], p->size[v]);
  }
  return KILN_OK;
}

static kiln_status plan_alloc(planner *P) {
  kps_memplan *p = P->p;
  size_t n = (size_t)(P->g->n_nodes > 0 ? P->g->n_nodes : 1);
  p->n_nodes = P->g->n_nodes;
  p->loc = kir_calloc(n, sizeof *p->loc);
  p->offset = kir_calloc(n, sizeof *p->offset);
  p->size = kir_calloc(n, sizeof *p->size);
  p->arena_of = kir_calloc(n, sizeof *p->arena_of);
  p->inplace_of = kir_calloc(n, sizeof *p->inplace_of);
  P->last = kir_calloc(n, sizeof *P->last);
  P->die_start = kir_calloc(n + 1, sizeof *P->die_start);
  P->die = kir_calloc(n, sizeof *P->die);
  P->taken = kir_calloc(n, sizeof *P->taken);
  if (p->loc && p->offset && p->size && p->arena_of && p->inplace_of && P->last && P->die_start &&
      P->die && P->taken)
    return KILN_OK;
  return kir_seterr(P->g, KILN_ERR_NOMEM, "plan-memory: out of memory");
}

static void planner_free(planner *P) {
  kir_free(P->last);
  kir_free(P->die_start);
  kir_free(P->die);
  kir_free(P->taken);
  for (int32_t d = 0; d < KPS_MAX_DEVICES; d++) kir_free(P->ar[d].gap);
}

kiln_status kps_plan_memory_ex(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                               bool allow_state, kps_memplan *plan) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!plan || (n_outputs > 0 && !outputs) || n_outputs < 0)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "plan-memory: NULL plan or outputs");
  memset(plan, 0, sizeof *plan);
  planner P;
  memset(&P, 0, sizeof P);
  P.g = g;
  P.p = plan;
  P.allow_state = allow_state;
  kiln_status st = plan_alloc(&P);
  if (st == KILN_OK) st = liveness(&P, outputs, n_outputs);
  for (int32_t i = 0; i < g->n_nodes && st == KILN_OK; i++) {
    st = plan_node(&P, g->nodes[i]);
    if (st == KILN_OK) st = release_after(&P, i);
  }
  for (int32_t d = 0; d < plan->n_arenas; d++)
    if (strcmp(plan->arenas[d].device, "cpu:0") == 0) plan->arena_bytes = plan->arenas[d].peak_bytes;
  planner_free(&P);
  if (st != KILN_OK) kps_memplan_free(plan);
  return st;
}

kiln_status kps_plan_memory(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                            kps_memplan *plan) {
  return kps_plan_memory_ex(g, outputs, n_outputs, false, plan);
}

void kps_memplan_free(kps_memplan *plan) {
  if (!plan) return;
  kir_free(plan->loc);
  kir_free(plan->offset);
  kir_free(plan->size);
  kir_free(plan->arena_of);
  kir_free(plan->inplace_of);
  memset(plan, 0, sizeof *plan);
}

/* ---------------------------------------------------------------- the pass ------ */

/* Stat names must outlive the graph (the manager prints them after later passes). */
static const char *const peak_names[] = {
    "peak bytes (cpu:0)",   "peak bytes (cpu:1)",   "peak bytes (cpu:2)",   "peak bytes (cpu:3)",
    "peak bytes (cuda:0)",  "peak bytes (cuda:1)",  "peak bytes (cuda:2)",  "peak bytes (cuda:3)",
    "peak bytes (cuda:4)",  "peak bytes (cuda:5)",  "peak bytes (cuda:6)",  "peak bytes (cuda:7)",
    "peak bytes (cuda:8)",  "peak bytes (cuda:9)",  "peak bytes (cuda:10)", "peak bytes (cuda:11)",
    "peak bytes (cuda:12)", "peak bytes (cuda:13)", "peak bytes (cuda:14)", "peak bytes (cuda:15)",
};

static const char *peak_name(const char *dev) {
  char want[64];
  snprintf(want, sizeof want, "peak bytes (%s)", dev);
  for (size_t i = 0; i < sizeof peak_names / sizeof peak_names[0]; i++)
    if (strcmp(peak_names[i], want) == 0) return peak_names[i];
  return "peak bytes (another device)";
}

/* The roots' node ids (targets without a value skipped); with no roots, every value
 * that nobody reads stays live to the end. *ids through kir_malloc. */
static kiln_status root_ids(kir_graph *g, const kps_context *ctx, int32_t **ids, int32_t *n) {
  char esc[KPS_ESC];
  int32_t cap = g->n_nodes > 0 ? g->n_nodes : 1;
  *n = 0;
  if (!(*ids = kir_malloc((size_t)cap * sizeof **ids)))
    return kir_seterr(g, KILN_ERR_NOMEM, "plan-memory: out of memory");
  if (ctx && ctx->n_roots > 0) {
    for (int32_t r = 0; r < ctx->n_roots && *n < cap; r++) {
      int32_t id = kps_root_id(g, ctx, r);
      const kir_node *nd = id >= 0 ? g->nodes[id] : NULL;
      if (!nd)
        return kir_seterr(g, KILN_ERR_ARGUMENT, "plan-memory: root '%s' is not a node of the graph",
                          kir_escape(ctx->roots[r] ? ctx->roots[r] : "(null)", esc, sizeof esc));
      if (!kir_op_has(nd->op, KIR_F_NO_OUTPUT)) (*ids)[(*n)++] = nd->id;
    }
    return KILN_OK;
  }
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *nd = g->nodes[i];
    if (!kir_op_has(nd->op, KIR_F_NO_OUTPUT) && kir_graph_count_uses(g, i) == 0) (*ids)[(*n)++] = i;
  }
  return KILN_OK;
}

kiln_status kps_plan_memory_pass(kir_graph *g, const kps_context *ctx, kps_result *res) {
  int32_t *ids = NULL, n = 0;
  kps_memplan plan;
  memset(&plan, 0, sizeof plan);
  kiln_status st = root_ids(g, ctx, &ids, &n);
  if (st == KILN_OK) st = kps_plan_memory_ex(g, ids, n, true, &plan);
  kir_free(ids);
  if (st != KILN_OK) return st;
  res->stats[0] = (kps_stat){"in-place reuses", plan.n_inplace};
  res->stats[1] = (kps_stat){"weights bytes", plan.weights_bytes};
  res->n_stats = 2;
  for (int32_t d = 0; d < plan.n_arenas && res->n_stats < KPS_MAX_STATS; d++)
    res->stats[res->n_stats++] = (kps_stat){peak_name(plan.arenas[d].device), plan.arenas[d].peak_bytes};
  res->changed = false;
  kps_memplan_free(&plan);
  return KILN_OK;
}
