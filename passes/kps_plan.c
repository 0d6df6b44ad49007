/* kps_plan.c — static memory planning: placeholders are the caller's buffers,
 * constants go to a weights blob, every other used value gets a 64-byte-aligned offset
 * in one arena by greedy first-fit over liveness in node order. A buffer never shares
 * space with a value that is still live, including its own node's inputs. Depends on
 * ir/ only. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <string.h>

#define ALIGN 64

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* A live arena buffer. */
typedef struct live_buf {
  int64_t off, end;
  int32_t last; /* id of its last consumer; g->n_nodes for outputs */
} live_buf;

typedef struct arena {
  live_buf *buf; /* sorted by offset */
  int32_t n;
  int64_t peak;
} arena;

static void arena_release(arena *a, int32_t now) {
  int32_t k = 0;
  for (int32_t i = 0; i < a->n; i++)
    if (a->buf[i].last >= now) a->buf[k++] = a->buf[i];
  a->n = k;
}

/* First fit: the lowest aligned offset clear of every live buffer. */
static int64_t arena_place(arena *a, int64_t size, int32_t last) {
  int64_t off = 0;
  int32_t at = 0;
  for (; at < a->n; at++) {
    if (off + size <= a->buf[at].off) break;
    if (a->buf[at].end > off) off = align_up(a->buf[at].end);
  }
  memmove(&a->buf[at + 1], &a->buf[at], (size_t)(a->n - at) * sizeof *a->buf);
  a->buf[at] = (live_buf){off, off + size, last};
  a->n++;
  if (off + size > a->peak) a->peak = off + size;
  return off;
}

static kiln_status refuse(kir_graph *g, const kir_node *n, kiln_status st, const char *why) {
  char esc[KPS_ESC];
  return kir_seterr(g, st, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), why);
}

/* last[i] = last consumer of node i (n_nodes for outputs, -1 if never read). */
static kiln_status liveness(kir_graph *g, const int32_t *outputs, int32_t n_outputs, int32_t *last) {
  for (int32_t i = 0; i < g->n_nodes; i++) last[i] = -1;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
      return refuse(g, n, KILN_ERR_UNSUPPORTED, "variables cannot be planned; freeze the graph first");
    for (int32_t k = 0; k < n->n_inputs; k++) last[n->inputs[k]] = i;
  }
  for (int32_t o = 0; o < n_outputs; o++) {
    if (outputs[o] < 0 || outputs[o] >= g->n_nodes)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "plan-memory: output %d is node id %d, out of range [0, %d)",
                        (int)o, (int)outputs[o], (int)g->n_nodes);
    last[outputs[o]] = g->n_nodes;
  }
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

static void plan_node(const kir_node *n, int32_t last, int64_t size, kps_memplan *p, arena *a) {
  int32_t i = n->id;
  p->size[i] = size;
  p->offset[i] = -1;
  if (n->op == KIR_OP_PLACEHOLDER) {
    p->loc[i] = KPS_LOC_INPUT;
  } else if (n->op == KIR_OP_CONSTANT) {
    p->loc[i] = KPS_LOC_WEIGHTS;
    p->offset[i] = align_up(p->weights_bytes);
    p->weights_bytes = p->offset[i] + size;
  } else if (kir_op_has(n->op, KIR_F_NO_OUTPUT) || last < 0) {
    p->loc[i] = KPS_LOC_NONE;
  } else {
    p->loc[i] = KPS_LOC_ARENA;
    /* Zero bytes take no space; offset 0 is as good as any. */
    p->offset[i] = size > 0 ? arena_place(a, size, last) : 0;
  }
}

static kiln_status plan_alloc(kir_graph *g, kps_memplan *p, int32_t **last, arena *a) {
  size_t n = (size_t)(g->n_nodes > 0 ? g->n_nodes : 1);
  p->n_nodes = g->n_nodes;
  p->loc = kir_calloc(n, sizeof *p->loc);
  p->offset = kir_calloc(n, sizeof *p->offset);
  p->size = kir_calloc(n, sizeof *p->size);
  *last = kir_calloc(n, sizeof **last);
  a->buf = kir_calloc(n, sizeof *a->buf);
  if (p->loc && p->offset && p->size && *last && a->buf) return KILN_OK;
  return kir_seterr(g, KILN_ERR_NOMEM, "plan-memory: out of memory");
}

kiln_status kps_plan_memory(kir_graph *g, const int32_t *outputs, int32_t n_outputs,
                            kps_memplan *plan) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!plan || (n_outputs > 0 && !outputs) || n_outputs < 0)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "plan-memory: NULL plan or outputs");
  memset(plan, 0, sizeof *plan);
  int32_t *last = NULL;
  arena a = {NULL, 0, 0};
  kiln_status st = plan_alloc(g, plan, &last, &a);
  if (st == KILN_OK) st = liveness(g, outputs, n_outputs, last);
  for (int32_t i = 0; i < g->n_nodes && st == KILN_OK; i++) {
    const kir_node *n = g->nodes[i];
    int64_t size = 0;
    st = size_of(g, n, &size);
    /* Values whose last consumer ran strictly before this node are dead. */
    arena_release(&a, i);
    if (st == KILN_OK) plan_node(n, last[i], size, plan, &a);
  }
  plan->arena_bytes = a.peak;
  kir_free(last);
  kir_free(a.buf);
  if (st != KILN_OK) kps_memplan_free(plan);
  return st;
}

void kps_memplan_free(kps_memplan *plan) {
  if (!plan) return;
  kir_free(plan->loc);
  kir_free(plan->offset);
  kir_free(plan->size);
  memset(plan, 0, sizeof *plan);
}
