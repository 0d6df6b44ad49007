/* kps_place.c — device placement over the devices a target declares (cpu:0, cuda:N):
 * pins honored, variables colocated with their assigns, soft fallback to cpu:0 (or an
 * error in strict mode), explicit transfer nodes on edges between devices, and a device
 * and reason recorded for every node. Plus device-name normalization. Depends on ir/
 * only; which ops have CUDA kernels is data below (cuda_listed, CUDA_BY_FLAG).
 *
 * Policy (like TensorFlow's: the GPU when available):
 *   - a pin to a declared device with a kernel for the op is honored;
 *   - a pin to an absent device, or to one without a kernel for the op, moves the node
 *     to cpu:0 with the reason recorded (strict mode: an error naming node and device);
 *   - unpinned nodes go to the first declared cuda device when it has a kernel for the
 *     op, else to cpu:0; unpinned control ops (group, no_op) run on the host cpu:0;
 *   - unpinned constants and placeholders (data) go with their first consumer, so the
 *     first use needs no copy; with no consumer, cpu:0;
 *   - a variable and its assigns share one device: the variable's pin, else the first
 *     pinned assign's, else the variable's default;
 *   - every edge carrying a value between devices goes through one transfer node per
 *     (producer, destination), named "<producer>/to_<device>" and placed on the
 *     destination. Running the pass again changes nothing. */
#include "kps.h"

/* Holds any kir_escape output (64 bytes escaped 4x, "...", NUL). */
#define KPS_ESC 272

#include <ctype.h>
#include <string.h>

#define DEV_LEN 48

/* ---------------------------------------------------------------- names --------- */

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Parses "kind" or "kind:index" (already lowercase) into out. */
static bool parse_device(const char *seg, size_t len, char *out, size_t n) {
  const char *colon = memchr(seg, ':', len);
  size_t klen = colon ? (size_t)(colon - seg) : len;
  const char *kind = NULL;
  if (klen == 3 && strncmp(seg, "cpu", 3) == 0) kind = "cpu";
  else if (klen == 3 && strncmp(seg, "gpu", 3) == 0) kind = "cuda";
  else if (klen == 4 && strncmp(seg, "cuda", 4) == 0) kind = "cuda";
  if (!kind) return false;
  long idx = 0;
  if (colon) {
    const char *d = colon + 1, *end = seg + len;
    if (d == end || end - d > 6) return false;
    for (; d < end; d++) {
      if (!isdigit((unsigned char)*d)) return false;
      idx = idx * 10 + (*d - '0');
    }
  }
  int w = snprintf(out, n, "%s:%ld", kind, idx);
  return w > 0 && (size_t)w < n;
}

bool kps_device_normalize(const char *in, char *out, size_t n) {
  char low[256];
  if (!in || !out || n == 0) return false;
  size_t len = strlen(in);
  if (len == 0 || len >= sizeof low) return false;
  for (size_t i = 0; i <= len; i++) low[i] = (char)tolower((unsigned char)in[i]);
  /* Walk "/"-separated segments: job/replica/task qualifiers are tolerated, exactly one
   * device segment (optionally "device:"-prefixed) must remain. */
  const char *dev = NULL;
  size_t dev_len = 0;
  for (char *p = low; *p;) {
    if (*p == '/') { p++; continue; }
    char *end = strchr(p, '/');
    size_t seg_len = end ? (size_t)(end - p) : strlen(p);
    p[seg_len] = '\0';
    if (has_prefix(p, "job:") || has_prefix(p, "replica:") || has_prefix(p, "task:")) {
      if (dev) return false; /* qualifiers come before the device */
    } else {
      if (dev) return false;
      dev = has_prefix(p, "device:") ? p + 7 : p;
      dev_len = strlen(dev);
    }
    if (!end) break;
    p = end + 1;
  }
  return dev && parse_device(dev, dev_len, out, n);
}

/* ---------------------------------------------------------------- targets ------- */

typedef struct target {
  char dev[KPS_MAX_DEVICES][DEV_LEN];
  int32_t n;
  int32_t cpu;     /* index of the first cpu device, -1 if none */
  int32_t cuda;    /* index of the first cuda device, -1 if none */
  char list[KPS_MAX_DEVICES * (DEV_LEN + 2)]; /* "cpu:0, cuda:0" for messages */
} target;

static kiln_status target_init(kir_graph *g, const kps_context *ctx, target *t) {
  static const char *const dflt[] = {"cpu:0"};
  const char *const *devs = ctx->devices && ctx->n_devices > 0 ? ctx->devices : dflt;
  int32_t n = ctx->devices && ctx->n_devices > 0 ? ctx->n_devices : 1;
  char esc[KPS_ESC];
  if (n > KPS_MAX_DEVICES)
    return kir_seterr(g, KILN_ERR_LIMIT, "%d target devices, at most %d", (int)n, KPS_MAX_DEVICES);
  memset(t, 0, sizeof *t);
  t->cpu = t->cuda = -1;
  for (int32_t i = 0; i < n; i++) {
    if (!devs[i] || !kps_device_normalize(devs[i], t->dev[i], DEV_LEN))
      return kir_seterr(g, KILN_ERR_ARGUMENT, "target device '%s' is not a device name",
                        kir_escape(devs[i] ? devs[i] : "(null)", esc, sizeof esc));
    if (t->cpu < 0 && has_prefix(t->dev[i], "cpu:")) t->cpu = i;
    if (t->cuda < 0 && has_prefix(t->dev[i], "cuda:")) t->cuda = i;
    size_t used = strlen(t->list);
    snprintf(t->list + used, sizeof t->list - used, "%s%s", i ? ", " : "", t->dev[i]);
  }
  t->n = n;
  return KILN_OK;
}

static int32_t target_find(const target *t, const char *dev) {
  for (int32_t i = 0; i < t->n; i++)
    if (strcmp(t->dev[i], dev) == 0) return i;
  return -1;
}

/* ---------------------------------------------------------------- kernels ------- */
/* Which ops a CUDA device has kernels for, as data. By flag: every elementwise op,
 * reduction and fused op, and control ops (which compute nothing), except the ops in
 * cuda_missing. By name: the ops in cuda_listed. Everything else (random_normal,
 * random_uniform, the ONNX operator set of issue 4 until CUDA kernels exist) runs on
 * the CPU only; so does a fused node with a step (or fused reduction) of such an op.
 * Constants and placeholders are data: they can live on any device. */
#define CUDA_BY_FLAG (KIR_F_ELEMENTWISE | KIR_F_REDUCTION | KIR_F_FUSED | KIR_F_CONTROL)

static const bool cuda_listed[KIR_OP_COUNT] = {
    [KIR_OP_MATMUL] = true,   [KIR_OP_ADD_N] = true,     [KIR_OP_SOFTMAX] = true,
    [KIR_OP_RESHAPE] = true,  [KIR_OP_TRANSPOSE] = true, [KIR_OP_IDENTITY] = true,
    [KIR_OP_TRANSFER] = true, [KIR_OP_VARIABLE] = true,  [KIR_OP_ASSIGN] = true,
    [KIR_OP_CONSTANT] = true, [KIR_OP_PLACEHOLDER] = true,  [KIR_OP_CONV] = true,
};

/* Ops the flags would give a CUDA kernel that has none yet (issue 4's operator set). */
static const bool cuda_missing[KIR_OP_COUNT] = {
    [KIR_OP_POW] = true,         [KIR_OP_ABS] = true,        [KIR_OP_LEAKY_RELU] = true,
    [KIR_OP_ERF] = true,         [KIR_OP_GELU] = true,       [KIR_OP_REDUCE_MIN] = true,
};

static bool is_cuda(const char *dev) { return has_prefix(dev, "cuda:"); }

bool kps_device_has_kernel(const char *device, kir_op op) {
  if (!kir_op_get(op) || !device) return false;
  if (!is_cuda(device)) return true;
  return (kir_op_has(op, CUDA_BY_FLAG) && !cuda_missing[op]) || cuda_listed[op];
}

/* conv / fused_conv run through cuDNN: f32 or f64, 1..3 spatial dims, pads with begin ==
 * end per dim (cuDNN pads symmetrically); strides, dilations and groups as they come. */
static bool cudnn_conv_ok(const kir_node *n) {
  if (n->type.dtype != KILN_F32 && n->type.dtype != KILN_F64) return false;
  if (n->type.rank < 3 || n->type.rank > 5) return false;
  if (kir_type_numel(&n->type) >= ((int64_t)1 << 31)) return false; /* cuDNN's int dims */
  int32_t k = n->type.rank - 2, cnt = 0;
  const int64_t *pads = kir_attr_ints(n, "pads", &cnt);
  if (!pads) return true;
  if (cnt != 2 * k) return false;
  for (int32_t i = 0; i < k; i++)
    if (pads[i] != pads[k + i]) return false;
  return true;
}

kir_op kps_kernel_gap(const char *device, const kir_node *n) {
  if (!kps_device_has_kernel(device, n->op)) return n->op;
  if ((n->op == KIR_OP_CONV || n->op == KIR_OP_FUSED_CONV) && is_cuda(device) && !cudnn_conv_ok(n))
    return n->op;
  if (!kir_op_has(n->op, KIR_F_FUSED)) return KIR_OP_INVALID;
  int32_t cnt = 0;
  const int64_t *steps = kir_attr_ints(n, "epilogue", &cnt);
  for (int32_t i = 0; steps && i < cnt; i++)
    if (!kps_device_has_kernel(device, (kir_op)steps[i])) return (kir_op)steps[i];
  int64_t red = kir_attr_int(n, "reduce", KIR_OP_INVALID);
  if (n->op == KIR_OP_FUSED_REDUCE && !kps_device_has_kernel(device, (kir_op)red)) return (kir_op)red;
  return KIR_OP_INVALID;
}

static bool node_has_kernel(const char *device, const kir_node *n) {
  return kps_kernel_gap(device, n) == KIR_OP_INVALID;
}

static bool is_data(kir_op op) { return op == KIR_OP_CONSTANT || op == KIR_OP_PLACEHOLDER; }

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get(op);
  return i ? i->name : "invalid";
}

/* For reasons: the op `device` lacks a kernel for (n's own op when it lacks none). */
static const char *gap_name(const char *device, const kir_node *n) {
  kir_op gap = device ? kps_kernel_gap(device, n) : KIR_OP_INVALID;
  return op_name(gap != KIR_OP_INVALID ? gap : n->op);
}

/* ---------------------------------------------------------------- decisions ----- */

typedef enum why_kind {
  WHY_PINNED,       /* the requested device, which the target has */
  WHY_ABSENT,       /* requested device missing: soft placement to the CPU */
  WHY_NO_KERNEL,    /* requested device has no kernel for the op: soft placement */
  WHY_DEFAULT_CUDA, /* unpinned, the first CUDA device has a kernel */
  WHY_CPU_NO_CUDA,  /* unpinned, a CUDA device exists but has no kernel for the op */
  WHY_DEFAULT_CPU,  /* unpinned, no CUDA device */
  WHY_CONSUMER,     /* unpinned constant/placeholder: with its first consumer */
  WHY_NO_CONSUMER,  /* unpinned constant/placeholder nobody reads */
  WHY_CONTROL,      /* unpinned control op: the host */
  WHY_COLOC_VAR,    /* an assign colocated with its variable */
  WHY_COLOC_ASSIGN, /* a variable (or another assign) colocated with a pinned assign */
  WHY_TRANSFER      /* a transfer: on its destination */
} why_kind;

typedef struct decision {
  int32_t dev; /* index in the target */
  int32_t why;
  int32_t ref; /* node named by the reason (consumer, variable, assign), or -1 */
  bool soft;
} decision;

typedef struct placer {
  kir_graph *g;
  const kps_context *ctx;
  target t;
  decision *d;     /* per original node */
  int32_t *first;  /* per node: first consumer that is not a transfer, or -1 */
  int32_t *firstx; /* per node: first consumer of any kind, or -1 */
  int32_t n;       /* original node count */
  int64_t soft, crossings;
  bool strict; /* ctx->strict_placement or the pipeline option place{strict} */
} placer;

static int32_t host(const target *t) { return t->cpu >= 0 ? t->cpu : 0; }

static kiln_status no_cpu(placer *P, const kir_node *n, const char *why_text) {
  char esc[KPS_ESC];
  return kir_seterr(P->g, KILN_ERR_UNSUPPORTED, "node '%s': %s, and the target (%s) has no CPU to fall back to",
                    kir_escape(n->name, esc, sizeof esc), why_text, P->t.list);
}

/* A pin the target cannot honor: soft placement to the CPU, or an error. */
static kiln_status fallback(placer *P, const kir_node *n, const char *want, int32_t kind, decision *d) {
  char esc[KPS_ESC], msg[sizeof P->t.list + 128];
  if (kind == WHY_ABSENT)
    snprintf(msg, sizeof msg, "device '%s' requested but the target has only %s", want, P->t.list);
  else
    snprintf(msg, sizeof msg, "device '%s' requested but it has no kernel for '%s'", want, gap_name(want, n));
  if (P->strict)
    return kir_seterr(P->g, KILN_ERR_UNSUPPORTED, "node '%s': %s", kir_escape(n->name, esc, sizeof esc), msg);
  if (P->t.cpu < 0) return no_cpu(P, n, msg);
  *d = (decision){P->t.cpu, kind, -1, true};
  return KILN_OK;
}

static kiln_status decide_pinned(placer *P, const kir_node *n, const char *want, decision *d) {
  int32_t at = target_find(&P->t, want);
  if (at < 0) return fallback(P, n, want, WHY_ABSENT, d);
  if (!node_has_kernel(want, n)) return fallback(P, n, want, WHY_NO_KERNEL, d);
  *d = (decision){at, n->op == KIR_OP_TRANSFER ? WHY_TRANSFER : WHY_PINNED, -1, false};
  return KILN_OK;
}

/* The device a node asks for: its pin, or a transfer's destination; "" if none. */
static kiln_status requested(placer *P, const kir_node *n, char *want) {
  char esc[KPS_ESC], esc2[KPS_ESC];
  const char *raw = n->op == KIR_OP_TRANSFER ? kir_attr_string(n, "device") : n->device;
  want[0] = '\0';
  if (!raw || !raw[0]) {
    if (n->op != KIR_OP_TRANSFER) return KILN_OK;
    return kir_seterr(P->g, KILN_ERR_GRAPH, "node '%s': transfer without a destination device",
                      kir_escape(n->name, esc, sizeof esc));
  }
  if (kps_device_normalize(raw, want, DEV_LEN)) return KILN_OK;
  return kir_seterr(P->g, KILN_ERR_ARGUMENT, "node '%s': device '%s' is not a device name",
                    kir_escape(n->name, esc, sizeof esc), kir_escape(raw, esc2, sizeof esc2));
}

/* Every node but unpinned constants/placeholders (decided after their consumers). */
static kiln_status decide_basic(placer *P, const kir_node *n, decision *d) {
  char want[DEV_LEN];
  kiln_status st = requested(P, n, want);
  if (st != KILN_OK) return st;
  if (want[0]) return decide_pinned(P, n, want, d);
  if (is_data(n->op)) {
    *d = (decision){-1, WHY_CONSUMER, -1, false};
    return KILN_OK;
  }
  if (kir_op_has(n->op, KIR_F_CONTROL)) {
    *d = (decision){host(&P->t), WHY_CONTROL, -1, false};
    return KILN_OK;
  }
  if (P->t.cuda >= 0 && node_has_kernel(P->t.dev[P->t.cuda], n)) {
    *d = (decision){P->t.cuda, WHY_DEFAULT_CUDA, -1, false};
    return KILN_OK;
  }
  if (P->t.cpu < 0) return no_cpu(P, n, "no device of the target has a kernel for it");
  *d = (decision){P->t.cpu, P->t.cuda >= 0 ? WHY_CPU_NO_CUDA : WHY_DEFAULT_CPU, -1, false};
  return KILN_OK;
}

static bool is_var_ref(const kir_graph *g, const kir_node *n) {
  return n->op == KIR_OP_ASSIGN && n->n_inputs > 0 && g->nodes[n->inputs[0]]->op == KIR_OP_VARIABLE;
}

static bool pinned(const kir_node *n) { return n->device && n->device[0]; }

/* A variable and its assigns share one device: the variable's pin if it has one, else
 * the first pinned assign's, else the variable's default. A member pinned elsewhere is
 * overridden (soft) or an error (strict). */
static kiln_status colocate(placer *P) {
  kir_graph *g = P->g;
  char esc[KPS_ESC], esc2[KPS_ESC];
  int32_t *lead = kir_malloc((size_t)P->n * sizeof *lead);
  if (!lead) return kir_seterr(g, KILN_ERR_NOMEM, "place: out of memory");
  for (int32_t i = 0; i < P->n; i++) lead[i] = pinned(g->nodes[i]) ? i : -1;
  for (int32_t i = 0; i < P->n; i++)
    if (is_var_ref(g, g->nodes[i]) && pinned(g->nodes[i]) && lead[g->nodes[i]->inputs[0]] < 0)
      lead[g->nodes[i]->inputs[0]] = i;
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < P->n && st == KILN_OK; i++) {
    const kir_node *n = g->nodes[i];
    int32_t var = n->op == KIR_OP_VARIABLE ? i : is_var_ref(g, n) ? n->inputs[0] : -1;
    if (var < 0) continue;
    int32_t l = lead[var] >= 0 ? lead[var] : var;
    if (l == i) continue;
    decision want = P->d[i];
    P->d[i] = (decision){P->d[l].dev, l == var ? WHY_COLOC_VAR : WHY_COLOC_ASSIGN, l, false};
    if (!pinned(n) || want.dev == P->d[i].dev) continue;
    if (P->strict)
      st = kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s': device '%s' requested but it must be colocated with '%s' on %s",
                      kir_escape(n->name, esc, sizeof esc), P->t.dev[want.dev],
                      kir_escape(g->nodes[l]->name, esc2, sizeof esc2), P->t.dev[P->d[l].dev]);
    P->d[i].soft = true;
  }
  kir_free(lead);
  return st;
}

/* first/firstx consumers; then unpinned data goes with its first consumer. */
static void decide_data(placer *P) {
  kir_graph *g = P->g;
  for (int32_t i = 0; i < P->n; i++) P->first[i] = P->firstx[i] = -1;
  for (int32_t i = 0; i < P->n; i++) {
    const kir_node *c = g->nodes[i];
    for (int32_t k = 0; k < c->n_inputs; k++) {
      int32_t p = c->inputs[k];
      if (P->firstx[p] < 0) P->firstx[p] = i;
      if (P->first[p] < 0 && c->op != KIR_OP_TRANSFER) P->first[p] = i;
    }
  }
  for (int32_t i = 0; i < P->n; i++) {
    if (P->d[i].dev >= 0) continue;
    int32_t c = P->first[i];
    if (c >= 0) P->d[i] = (decision){P->d[c].dev, WHY_CONSUMER, c, false};
    else P->d[i] = (decision){host(&P->t), WHY_NO_CONSUMER, -1, false};
  }
}

/* An edge that carries a value between devices (not a control edge, not a variable
 * reference, not into a transfer). */
static bool crosses(const placer *P, const kir_node *c, int32_t k) {
  int32_t p = c->inputs[k];
  if (c->op == KIR_OP_TRANSFER || kir_op_has(c->op, KIR_F_NO_OUTPUT) || kir_op_has(c->op, KIR_F_CONTROL)) return false;
  if (kir_op_has(P->g->nodes[p]->op, KIR_F_NO_OUTPUT)) return false;
  if (c->op == KIR_OP_ASSIGN && k == 0) return false;
  return P->d[p].dev != P->d[c->id].dev;
}

static kiln_status decide_all(placer *P) {
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < P->n && st == KILN_OK; i++) st = decide_basic(P, P->g->nodes[i], &P->d[i]);
  if (st == KILN_OK) st = colocate(P);
  if (st != KILN_OK) return st;
  decide_data(P);
  for (int32_t i = 0; i < P->n; i++) {
    const kir_node *c = P->g->nodes[i];
    P->soft += P->d[i].soft;
    for (int32_t k = 0; k < c->n_inputs; k++) P->crossings += crosses(P, c, k);
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- applying ------ */

static void reason_text(const placer *P, const kir_graph *g, int32_t i, char *buf, size_t n) {
  const kir_node *nd = g->nodes[i];
  const decision *d = &P->d[i];
  const char *dev = P->t.dev[d->dev];
  char want[DEV_LEN] = "", esc[KPS_ESC] = "";
  const char *raw = nd->op == KIR_OP_TRANSFER ? kir_attr_string(nd, "device") : nd->device;
  /* Only the reasons that print them pay for `want` and the escaped name: the other
   * node is a random one, a cache miss per node on big graphs. */
  bool wants = d->why == WHY_ABSENT || d->why == WHY_NO_KERNEL;
  bool refs = d->why == WHY_CONSUMER || d->why == WHY_COLOC_VAR || d->why == WHY_COLOC_ASSIGN ||
              d->why == WHY_TRANSFER;
  if (wants && raw && raw[0] && !kps_device_normalize(raw, want, sizeof want)) want[0] = '\0';
  if (refs && d->ref >= 0) kir_escape(g->nodes[d->ref]->name, esc, sizeof esc);
  switch ((why_kind)d->why) {
  case WHY_PINNED: snprintf(buf, n, "pinned by device scope '%s'", dev); return;
  case WHY_ABSENT:
    snprintf(buf, n, "requested '%s', which the target lacks; soft placement to %s", want, dev);
    return;
  case WHY_NO_KERNEL:
    snprintf(buf, n, "requested '%s', which has no kernel for '%s'; soft placement to %s", want,
             want[0] ? gap_name(want, nd) : op_name(nd->op), dev);
    return;
  case WHY_DEFAULT_CUDA: snprintf(buf, n, "default device %s: has a kernel for '%s'", dev, op_name(nd->op)); return;
  case WHY_CPU_NO_CUDA:
    snprintf(buf, n, "no CUDA kernel for '%s'; %s", P->t.cuda >= 0 ? gap_name(P->t.dev[P->t.cuda], nd) : op_name(nd->op), dev);
    return;
  case WHY_DEFAULT_CPU: snprintf(buf, n, "no device requested; default %s", dev); return;
  case WHY_CONSUMER: snprintf(buf, n, "with its first consumer '%s'", esc); return;
  case WHY_NO_CONSUMER: snprintf(buf, n, "no consumer; default %s", dev); return;
  case WHY_CONTROL: snprintf(buf, n, "control op; runs on the host %s", dev); return;
  case WHY_COLOC_VAR: snprintf(buf, n, "colocated with variable '%s'", esc); return;
  case WHY_COLOC_ASSIGN: snprintf(buf, n, "colocated with assign '%s'", esc); return;
  case WHY_TRANSFER: break;
  }
  /* A transfer: from its input's device to its own, for its first consumer. */
  const char *from = P->t.dev[P->d[nd->inputs[0]].dev];
  if (d->ref >= 0) snprintf(buf, n, "transfer from %s to %s for '%s'", from, dev, esc);
  else snprintf(buf, n, "transfer from %s to %s", from, dev);
}

/* Arena strings; identical strings (the common case: devices, default reasons) share one
 * copy. Direct-mapped by hash: one comparison per string, however many distinct reasons
 * (names of consumers) pass through. */
#define STR_CACHE 64
typedef struct str_cache {
  const char *s[STR_CACHE];
} str_cache;

static const char *intern(kir_graph *g, str_cache *c, const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  const char **slot = &c->s[(h ^ (h >> 16)) % STR_CACHE];
  if (*slot && strcmp(*slot, s) == 0) return *slot;
  const char *copy = kir_graph_strdup(g, s);
  if (copy) *slot = copy;
  return copy;
}

static bool same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* Writes device and reason of node i of g (g is P->g or its clone). */
static kiln_status apply_one(placer *P, kir_graph *g, str_cache *c, int32_t i, bool *changed) {
  char reason[KPS_ESC + 160];
  kir_node *n = g->nodes[i];
  reason_text(P, g, i, reason, sizeof reason);
  const char *dev = P->t.dev[P->d[i].dev];
  if (same(n->assigned_device, dev) && same(n->placement_reason, reason)) return KILN_OK;
  const char *d = intern(g, c, dev);
  const char *r = d ? intern(g, c, reason) : NULL;
  if (!d || !r) return kir_seterr(g, KILN_ERR_NOMEM, "place: out of memory");
  n->assigned_device = d;
  n->placement_reason = r;
  *changed = true;
  return KILN_OK;
}

/* ---------------------------------------------------------------- transfers ----- */
/* With transfers to insert, the graph is rebuilt: every node copied in order, each new
 * transfer emitted just before its first consumer. The original nodes keep their
 * relative order (so "first consumer" means the same on a second run), and a failure
 * leaves g as it was. */

typedef struct rebuild {
  kir_graph *ng;
  int32_t *map;   /* old id -> new id */
  int32_t *head;  /* per old producer: first entry of its transfers, -1 */
  int32_t *next, *tid, *tdev; /* entries: next, new id, device */
  int32_t n_entries, cap;
  int32_t *in;    /* scratch inputs of one node */
  str_cache sc;
} rebuild;

static const char *cached(rebuild *R, const char *s) { return intern(R->ng, &R->sc, s); }

static void xfer_register(rebuild *R, int32_t p, int32_t new_id, int32_t dev) {
  int32_t e = R->n_entries++;
  R->tid[e] = new_id;
  R->tdev[e] = dev;
  R->next[e] = R->head[p];
  R->head[p] = e;
}

static int32_t xfer_find(const rebuild *R, int32_t p, int32_t dev) {
  for (int32_t e = R->head[p]; e >= 0; e = R->next[e])
    if (R->tdev[e] == dev) return R->tid[e];
  return -1;
}

/* "<producer>/to_<device>", with "_N" appended until unique in both graphs. */
static kiln_status xfer_name(const kir_graph *g, kir_graph *ng, const char *prod, const char *dev,
                             char *buf, size_t n) {
  int cut = (int)(KIR_MAX_NAME - 64);
  for (int k = 0; k < 1000000; k++) {
    if (k == 0) snprintf(buf, n, "%.*s/to_%s", cut, prod, dev);
    else snprintf(buf, n, "%.*s/to_%s_%d", cut, prod, dev, k);
    if (!kir_graph_find(g, buf) && !kir_graph_find(ng, buf)) return KILN_OK;
  }
  return kir_seterr(ng, KILN_ERR_LIMIT, "place: no free name for a transfer");
}

static kiln_status xfer_new(placer *P, rebuild *R, int32_t p, int32_t dev, int32_t consumer, int32_t *out) {
  char name[KIR_MAX_NAME + 1], reason[KPS_ESC + 160], esc[KPS_ESC];
  kir_graph *ng = R->ng;
  const char *devname = P->t.dev[dev];
  kiln_status st = xfer_name(P->g, ng, P->g->nodes[p]->name, devname, name, sizeof name);
  int32_t src = R->map[p];
  kir_node *t = st == KILN_OK ? kir_node_add(ng, KIR_OP_TRANSFER, name, &src, 1) : NULL;
  if (!t) return st != KILN_OK ? st : ng->status;
  if ((st = kir_attr_set_string(ng, t, "device", devname)) != KILN_OK) return st;
  if ((st = kir_infer_node(ng, t)) != KILN_OK) return st;
  snprintf(reason, sizeof reason, "transfer from %s to %s for '%s'", P->t.dev[P->d[p].dev], devname,
           kir_escape(P->g->nodes[consumer]->name, esc, sizeof esc));
  t->assigned_device = cached(R, devname);
  t->placement_reason = kir_graph_strdup(ng, reason);
  if (!t->assigned_device || !t->placement_reason) return kir_seterr(ng, KILN_ERR_NOMEM, "place: out of memory");
  xfer_register(R, p, t->id, dev);
  *out = t->id;
  return KILN_OK;
}

/* Copies node i of g (with its placement) into the new graph, reading `inputs`. */
static kiln_status copy_node(placer *P, rebuild *R, int32_t i) {
  char reason[KPS_ESC + 160];
  const kir_node *n = P->g->nodes[i];
  kir_graph *ng = R->ng;
  kir_node *c = kir_node_add(ng, n->op, n->name, R->in, n->n_inputs);
  if (!c) return ng->status;
  kiln_status st = kir_attr_copy_all(ng, c, n);
  if (st != KILN_OK) return st;
  c->type = n->type;
  reason_text(P, P->g, i, reason, sizeof reason);
  c->device = kir_graph_strdup(ng, n->device);
  c->assigned_device = cached(R, P->t.dev[P->d[i].dev]);
  c->placement_reason = cached(R, reason);
  if (!c->device || !c->assigned_device || !c->placement_reason)
    return kir_seterr(ng, KILN_ERR_NOMEM, "place: out of memory");
  R->map[i] = c->id;
  if (n->op == KIR_OP_TRANSFER) xfer_register(R, n->inputs[0], c->id, P->d[i].dev);
  return KILN_OK;
}

/* One transfer per (producer, destination device); existing ones are reused. */
static kiln_status rebuild_all(placer *P, rebuild *R) {
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < P->n && st == KILN_OK; i++) {
    const kir_node *n = P->g->nodes[i];
    for (int32_t k = 0; k < n->n_inputs && st == KILN_OK; k++) {
      int32_t p = n->inputs[k];
      R->in[k] = R->map[p];
      if (!crosses(P, n, k)) continue;
      int32_t t = xfer_find(R, p, P->d[i].dev);
      if (t < 0) st = xfer_new(P, R, p, P->d[i].dev, i, &t);
      R->in[k] = t;
    }
    if (st == KILN_OK) st = copy_node(P, R, i);
  }
  return st;
}

static kiln_status place_with_transfers(placer *P, bool *changed) {
  rebuild R;
  memset(&R, 0, sizeof R);
  int32_t max_in = 1;
  for (int32_t i = 0; i < P->n; i++)
    if (P->g->nodes[i]->n_inputs > max_in) max_in = P->g->nodes[i]->n_inputs;
  R.cap = P->n + (int32_t)P->crossings;
  R.ng = kir_graph_create();
  R.map = kir_malloc((size_t)P->n * sizeof *R.map);
  R.head = kir_malloc((size_t)P->n * sizeof *R.head);
  R.next = kir_malloc((size_t)R.cap * sizeof *R.next);
  R.tid = kir_malloc((size_t)R.cap * sizeof *R.tid);
  R.tdev = kir_malloc((size_t)R.cap * sizeof *R.tdev);
  R.in = kir_malloc((size_t)max_in * sizeof *R.in);
  kiln_status st = KILN_OK;
  if (!R.ng || !R.map || !R.head || !R.next || !R.tid || !R.tdev || !R.in) {
    st = kir_seterr(P->g, KILN_ERR_NOMEM, "place: out of memory");
  } else {
    for (int32_t i = 0; i < P->n; i++) R.head[i] = -1;
    st = rebuild_all(P, &R);
    if (st != KILN_OK) kir_seterr(P->g, st, "%s", R.ng->error);
  }
  kir_free(R.map);
  kir_free(R.head);
  kir_free(R.next);
  kir_free(R.tid);
  kir_free(R.tdev);
  kir_free(R.in);
  if (st != KILN_OK) {
    kir_graph_destroy(R.ng);
    return st;
  }
  kir_graph_swap_in(P->g, R.ng);
  *changed = true;
  return KILN_OK;
}

/* ---------------------------------------------------------------- the pass ------ */

static kiln_status apply_all(placer *P, kir_graph *g, str_cache *sc, bool *changed) {
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < P->n && st == KILN_OK; i++) st = apply_one(P, g, sc, i, changed);
  return st;
}

static kiln_status placer_init(placer *P, kir_graph *g, const kps_context *ctx) {
  static const kps_context none = {0};
  memset(P, 0, sizeof *P);
  P->g = g;
  P->ctx = ctx ? ctx : &none;
  P->n = g->n_nodes;
  P->strict = P->ctx->strict_placement || kps_option_bool(P->ctx, "strict", false);
  kiln_status st = target_init(g, P->ctx, &P->t);
  if (st != KILN_OK) return st;
  size_t cap = (size_t)(g->n_nodes > 0 ? g->n_nodes : 1);
  P->first = kir_malloc(cap * sizeof *P->first);
  P->firstx = kir_malloc(cap * sizeof *P->firstx);
  P->d = kir_malloc(cap * sizeof *P->d);
  if (!P->first || !P->firstx || !P->d) return kir_seterr(g, KILN_ERR_NOMEM, "place: out of memory");
  return KILN_OK;
}

static void placer_free(placer *P) {
  kir_free(P->first);
  kir_free(P->firstx);
  kir_free(P->d);
}

/* Decides every node first, so a refused pin (strict mode) leaves g untouched. */
kiln_status kps_place(kir_graph *g, const kps_context *ctx, kps_result *res) {
  placer P;
  bool changed = false;
  kiln_status st = placer_init(&P, g, ctx);
  if (st == KILN_OK) st = decide_all(&P);
  if (st == KILN_OK) {
    /* Reasons of existing transfers name their first consumer. */
    for (int32_t i = 0; i < P.n; i++)
      if (P.d[i].why == WHY_TRANSFER) P.d[i].ref = P.firstx[i];
  }
  int64_t before = g->n_nodes;
  if (st == KILN_OK && P.crossings == 0) {
    str_cache sc = {{0}};
    st = apply_all(&P, g, &sc, &changed);
  } else if (st == KILN_OK) {
    st = place_with_transfers(&P, &changed);
  }
  int64_t soft = P.soft;
  placer_free(&P);
  if (st != KILN_OK) return st;
  res->stats[0] = (kps_stat){"nodes placed", g->n_nodes};
  res->stats[1] = (kps_stat){"soft placements", soft};
  res->stats[2] = (kps_stat){"transfers inserted", g->n_nodes - before};
  res->n_stats = 3;
  res->changed = changed;
  return KILN_OK;
}
