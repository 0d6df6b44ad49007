/* kps_place.c — device placement: every node gets an assigned device and the reason
 * for it (pins honored, soft fallback when the target lacks a device, variables
 * colocated with their assigns), plus device-name normalization. Depends on ir/ only.
 * Only the CPU has kernels so far, so unpinned nodes go to the first CPU device. */
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
  bool has_cuda;
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
  t->cpu = -1;
  for (int32_t i = 0; i < n; i++) {
    if (!devs[i] || !kps_device_normalize(devs[i], t->dev[i], DEV_LEN))
      return kir_seterr(g, KILN_ERR_ARGUMENT, "target device '%s' is not a device name",
                        kir_escape(devs[i] ? devs[i] : "(null)", esc, sizeof esc));
    if (t->cpu < 0 && has_prefix(t->dev[i], "cpu:")) t->cpu = i;
    if (has_prefix(t->dev[i], "cuda:")) t->has_cuda = true;
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

/* ---------------------------------------------------------------- placing ------- */

typedef struct placement {
  char dev[DEV_LEN];
  char reason[320];
  bool soft;
} placement;

static const char *op_name(kir_op op) {
  const kir_op_info *i = kir_op_get(op);
  return i ? i->name : "invalid";
}

static kiln_status no_cpu(kir_graph *g, const kir_node *n, const target *t) {
  char esc[KPS_ESC];
  return kir_seterr(g, KILN_ERR_UNSUPPORTED,
                    "node '%s': no device of the target (%s) has a kernel for '%s'",
                    kir_escape(n->name, esc, sizeof esc), t->list, op_name(n->op));
}

static kiln_status place_default(kir_graph *g, const kir_node *n, const target *t, placement *p) {
  if (t->cpu < 0) return no_cpu(g, n, t);
  snprintf(p->dev, sizeof p->dev, "%s", t->dev[t->cpu]);
  if (t->has_cuda)
    snprintf(p->reason, sizeof p->reason, "no CUDA kernel yet for '%s'; %s", op_name(n->op), p->dev);
  else
    snprintf(p->reason, sizeof p->reason, "no device requested; default %s", p->dev);
  return KILN_OK;
}

static kiln_status place_pinned(kir_graph *g, const kir_node *n, const kps_context *ctx,
                                const target *t, const char *want, placement *p) {
  char esc[KPS_ESC];
  if (target_find(t, want) >= 0) {
    snprintf(p->dev, sizeof p->dev, "%s", want);
    snprintf(p->reason, sizeof p->reason, "pinned by device scope '%s'", want);
    return KILN_OK;
  }
  if (ctx->strict_placement || t->cpu < 0)
    return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s': device '%s' requested but the target has only %s",
                      kir_escape(n->name, esc, sizeof esc), want, t->list);
  snprintf(p->dev, sizeof p->dev, "%s", t->dev[t->cpu]);
  snprintf(p->reason, sizeof p->reason, "requested '%s', which the target lacks; soft placement to %s",
           want, p->dev);
  p->soft = true;
  return KILN_OK;
}

static kiln_status place_node(kir_graph *g, const kir_node *n, const kps_context *ctx,
                              const target *t, placement *p) {
  char want[DEV_LEN], esc[KPS_ESC], esc2[KPS_ESC];
  memset(p, 0, sizeof *p);
  if (!n->device || !n->device[0]) return place_default(g, n, t, p);
  if (!kps_device_normalize(n->device, want, sizeof want))
    return kir_seterr(g, KILN_ERR_ARGUMENT, "node '%s': device '%s' is not a device name",
                      kir_escape(n->name, esc, sizeof esc), kir_escape(n->device, esc2, sizeof esc2));
  return place_pinned(g, n, ctx, t, want, p);
}

/* Arena strings; identical reasons (the common case) share one copy. */
typedef struct str_cache {
  const char *s[16];
  int32_t n;
} str_cache;

static const char *intern(kir_graph *g, str_cache *c, const char *s) {
  for (int32_t i = 0; i < c->n; i++)
    if (strcmp(c->s[i], s) == 0) return c->s[i];
  const char *copy = kir_graph_strdup(g, s);
  if (copy && c->n < 16) c->s[c->n++] = copy;
  return copy;
}

static kiln_status assign(kir_graph *g, str_cache *c, kir_node *n, const char *dev,
                          const char *reason, bool *changed) {
  const char *d = intern(g, c, dev);
  const char *r = d ? intern(g, c, reason) : NULL;
  if (!d || !r) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  if (!n->assigned_device || strcmp(n->assigned_device, d) != 0) *changed = true;
  n->assigned_device = d;
  n->placement_reason = r;
  return KILN_OK;
}

/* A variable goes where its first pinned assign went, and so do its other assigns. */
static kiln_status colocate(kir_graph *g, str_cache *c, const int32_t *pin, bool *changed) {
  char reason[KPS_ESC + 32], esc[KPS_ESC];
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < g->n_nodes && st == KILN_OK; i++) {
    kir_node *n = g->nodes[i];
    int32_t var = n->op == KIR_OP_VARIABLE ? i : n->op == KIR_OP_ASSIGN && n->n_inputs > 0 ? n->inputs[0] : -1;
    if (var < 0 || pin[var] < 0 || pin[var] == i) continue;
    const kir_node *a = g->nodes[pin[var]];
    snprintf(reason, sizeof reason, "colocated with assign '%s'", kir_escape(a->name, esc, sizeof esc));
    st = assign(g, c, n, a->assigned_device, reason, changed);
  }
  return st;
}

/* pin[v] = id of the first assign with a device request writing variable v, or -1. */
static int32_t *find_pins(kir_graph *g) {
  int32_t *pin = kir_malloc((size_t)g->n_nodes * sizeof *pin);
  if (!pin) {
    kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
    return NULL;
  }
  for (int32_t i = 0; i < g->n_nodes; i++) pin[i] = -1;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *a = g->nodes[i];
    if (a->op != KIR_OP_ASSIGN || a->n_inputs < 1 || !a->device || !a->device[0]) continue;
    if (pin[a->inputs[0]] < 0) pin[a->inputs[0]] = i;
  }
  return pin;
}

/* Decides every node first, so a refused pin leaves the graph untouched. */
static kiln_status check_all(kir_graph *g, const kps_context *ctx, const target *t, int64_t *soft) {
  placement p;
  *soft = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kiln_status st = place_node(g, g->nodes[i], ctx, t, &p);
    if (st != KILN_OK) return st;
    *soft += p.soft;
  }
  return KILN_OK;
}

static kiln_status place_all(kir_graph *g, const kps_context *ctx, const target *t, bool *changed) {
  int32_t *pin = find_pins(g);
  if (!pin) return KILN_ERR_NOMEM;
  str_cache cache = {{0}, 0};
  placement p;
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < g->n_nodes && st == KILN_OK; i++) {
    st = place_node(g, g->nodes[i], ctx, t, &p);
    if (st == KILN_OK) st = assign(g, &cache, g->nodes[i], p.dev, p.reason, changed);
  }
  if (st == KILN_OK) st = colocate(g, &cache, pin, changed);
  kir_free(pin);
  return st;
}

kiln_status kps_place(kir_graph *g, const kps_context *ctx, kps_result *res) {
  target t;
  int64_t soft = 0;
  bool changed = false;
  kiln_status st = target_init(g, ctx, &t);
  if (st == KILN_OK) st = check_all(g, ctx, &t, &soft);
  if (st == KILN_OK && g->n_nodes > 0) st = place_all(g, ctx, &t, &changed);
  if (st != KILN_OK) return st;
  res->stats[0] = (kps_stat){"nodes placed", g->n_nodes};
  res->stats[1] = (kps_stat){"soft placements", soft};
  res->n_stats = 2;
  res->changed = changed;
  return KILN_OK;
}
