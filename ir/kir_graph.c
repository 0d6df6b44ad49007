/* kir_graph.c — graphs: the arena that owns all IR, nodes, the name index, attribute
 * setters and getters, cloning, compaction and topological sorting. Every change is
 * transactional: on failure the graph is unchanged. Depends on libc and kir_alloc. */
#include "kir_internal.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- arena --------- */
/* Chunked bump allocator. Chunks grow geometrically; a request larger than a quarter
 * of the next chunk gets a chunk of its own, so big tensors waste nothing. */
#define ARENA_ALIGN 16
#define ARENA_FIRST 4096
#define ARENA_MAX_CHUNK (1u << 20)

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t size, used;
  _Alignas(ARENA_ALIGN) unsigned char data[];
} arena_chunk;

struct kir_arena {
  arena_chunk *head; /* current chunk; older chunks follow */
  size_t next_size;
};

static kir_arena *arena_create(void) {
  kir_arena *a = kir_calloc(1, sizeof *a);
  if (a) a->next_size = ARENA_FIRST;
  return a;
}

static void arena_destroy(kir_arena *a) {
  if (!a) return;
  for (arena_chunk *c = a->head, *next; c; c = next) {
    next = c->next;
    kir_free(c);
  }
  kir_free(a);
}

static arena_chunk *chunk_new(size_t size) {
  if (size > SIZE_MAX - sizeof(arena_chunk)) return NULL;
  arena_chunk *c = kir_malloc(sizeof(arena_chunk) + size);
  if (!c) return NULL;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

/* A big request's chunk goes behind the head so the head keeps its free space. */
static void *arena_big(kir_arena *a, size_t n) {
  arena_chunk *c = chunk_new(n);
  if (!c) return NULL;
  c->used = n;
  if (a->head) {
    c->next = a->head->next;
    a->head->next = c;
  } else {
    a->head = c;
  }
  return c->data;
}

static void *arena_alloc(kir_arena *a, size_t n, size_t align) {
  if (n == 0) n = 1;
  if (n > SIZE_MAX - 2 * align) return NULL;
  size_t need = n + align; /* room to align within a fresh chunk */
  arena_chunk *c = a->head;
  if (c) {
    uintptr_t base = (uintptr_t)c->data;
    size_t off = (size_t)(((base + c->used + align - 1) & ~(uintptr_t)(align - 1)) - base);
    if (off <= c->size && c->size - off >= n) {
      c->used = off + n;
      return memset(c->data + off, 0, n);
    }
  }
  if (need > a->next_size / 4) {
    void *p = arena_big(a, need);
    if (!p) return NULL;
    uintptr_t q = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    return memset((void *)q, 0, n);
  }
  c = chunk_new(a->next_size);
  if (!c) return NULL;
  c->next = a->head;
  a->head = c;
  if (a->next_size < ARENA_MAX_CHUNK) a->next_size *= 2;
  return arena_alloc(a, n, align);
}

/* ---------------------------------------------------------------- errors -------- */

kiln_status kir_seterr(kir_graph *g, kiln_status s, const char *fmt, ...) {
  if (!g) return s;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g->error, sizeof g->error, fmt, ap);
  va_end(ap);
  g->status = s;
  return s;
}

void kir_clearerr(kir_graph *g) {
  if (!g) return;
  g->status = KILN_OK;
  g->error[0] = '\0';
}

void *kir_graph_alloc(kir_graph *g, size_t n) {
  void *p = arena_alloc(g->arena, n, ARENA_ALIGN);
  if (!p) kir_seterr(g, KILN_ERR_NOMEM, "out of memory allocating %zu bytes", n);
  return p;
}

static void *graph_alloc_aligned(kir_graph *g, size_t n, size_t align) {
  void *p = arena_alloc(g->arena, n, align);
  if (!p) kir_seterr(g, KILN_ERR_NOMEM, "out of memory allocating %zu bytes", n);
  return p;
}

const char *kir_graph_strdup(kir_graph *g, const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = arena_alloc(g->arena, n, 1);
  if (!d) {
    kir_seterr(g, KILN_ERR_NOMEM, "out of memory copying a string of %zu bytes", n);
    return NULL;
  }
  return memcpy(d, s, n);
}

/* ---------------------------------------------------------------- name index ---- */
/* Open addressing, linear probing; slots hold node ids, -1 = empty, and each slot keeps
 * its name's hash so a probe compares names (two dependent loads each) only when the
 * hashes agree: on big graphs the index is far larger than the cache. A name maps to the
 * first node that carries it; the verifier reports later duplicates. */
typedef struct index_slot_t {
  int32_t id;
  uint32_t hash;
} index_slot_t;

struct kir_name_index {
  uint32_t cap; /* power of two, at least twice the entry count */
  uint32_t count;
  bool dups; /* some name was added twice: index_remap can't tell which node is first */
  index_slot_t slots[];
};

static uint32_t hash_name(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  /* FNV's low bits depend only on the low bits of the bytes, so names like "add_123"
   * crowd into runs of slots under the mask; a final avalanche (murmur3's fmix32)
   * spreads them. */
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static struct kir_name_index *index_new(uint32_t cap) {
  struct kir_name_index *x = kir_malloc(sizeof *x + (size_t)cap * sizeof(index_slot_t));
  if (!x) return NULL;
  x->cap = cap;
  x->count = 0;
  x->dups = false;
  for (uint32_t i = 0; i < cap; i++) x->slots[i] = (index_slot_t){-1, 0};
  return x;
}

/* Slot holding `name` (whose hash is h), or the empty slot where it would go. */
static uint32_t index_slot(const struct kir_name_index *x, kir_node *const *nodes,
                           const char *name, uint32_t h) {
  uint32_t mask = x->cap - 1, i = h & mask;
  while (x->slots[i].id >= 0 &&
         (x->slots[i].hash != h || strcmp(nodes[x->slots[i].id]->name, name) != 0))
    i = (i + 1) & mask;
  return i;
}

/* Needs a free slot (the caller keeps the load under one half). */
static void index_put(struct kir_name_index *x, kir_node *const *nodes, int32_t id) {
  uint32_t h = hash_name(nodes[id]->name), i = index_slot(x, nodes, nodes[id]->name, h);
  if (x->slots[i].id >= 0) { /* duplicate: keep the first */
    if (x->slots[i].id != id) x->dups = true;
    return;
  }
  x->slots[i] = (index_slot_t){id, h};
  x->count++;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void index_remove(struct kir_name_index *x, kir_node *const *nodes, int32_t id) {
  uint32_t mask = x->cap - 1;
  uint32_t i = index_slot(x, nodes, nodes[id]->name, hash_name(nodes[id]->name));
  if (x->slots[i].id != id) return; /* a later duplicate was never indexed */
  x->slots[i].id = -1;
  x->count--;
  for (uint32_t j = (i + 1) & mask; x->slots[j].id >= 0; j = (j + 1) & mask) {
    uint32_t home = x->slots[j].hash & mask;
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    x->slots[i] = x->slots[j];
    x->slots[j].id = -1;
    i = j;
  }
}

static uint32_t index_cap_for(int64_t n) {
  uint32_t cap = 16;
  while ((int64_t)cap < 2 * n + 2) cap *= 2;
  return cap;
}

/* Moves the index to new ids (old id -> new id, -1 = dropped) in place, in one
 * sequential sweep: rebuilding it (or removing dropped names one by one) hashes names and
 * probes at random, a cache miss or more per node on big graphs (the index is far larger
 * than the cache) on every compact and sort. The sweep starts after an empty slot and
 * re-inserts each kept entry from its home (slots keep their hashes), so it lands on the
 * first free slot of its probe path, never past its old slot: every chain stays unbroken.
 * Only for an index without duplicate names (!x->dups): dropping or moving a name's first
 * node may make a later duplicate the first, so the caller rebuilds. */
static void index_remap(struct kir_name_index *x, const int32_t *new_id) {
  uint32_t mask = x->cap - 1, start = 0;
  while (x->slots[start].id >= 0) start++; /* exists: the load stays under one half */
  for (uint32_t k = 1; k <= x->cap; k++) {
    uint32_t j = (start + k) & mask;
    if (x->slots[j].id < 0) continue;
    index_slot_t e = {new_id[x->slots[j].id], x->slots[j].hash};
    x->slots[j].id = -1;
    if (e.id < 0) {
      x->count--;
      continue;
    }
    uint32_t i = e.hash & mask;
    while (x->slots[i].id >= 0) i = (i + 1) & mask;
    x->slots[i] = e;
  }
}

static struct kir_name_index *index_build(kir_node *const *nodes, int32_t n) {
  struct kir_name_index *x = index_new(index_cap_for(n));
  if (!x) return NULL;
  for (int32_t i = 0; i < n; i++) index_put(x, nodes, i);
  return x;
}

kiln_status kir_graph_track(kir_graph *g, const int32_t *ids, int32_t n) {
  if (!g || n < 0 || (n > 0 && !ids)) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_track: bad arguments");
  for (int32_t i = 0; i < n; i++)
    if (ids[i] < -1 || ids[i] >= g->n_nodes)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_track: id %d is not a node", (int)ids[i]);
  int32_t *copy = NULL;
  if (n > 0 && !(copy = kir_malloc((size_t)n * sizeof *copy)))
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory tracking %d nodes", (int)n);
  if (n > 0) memcpy(copy, ids, (size_t)n * sizeof *copy);
  kir_free(g->tracked);
  g->tracked = copy;
  g->n_tracked = n;
  return KILN_OK;
}

void kir_graph_pop_node(kir_graph *g) {
  if (!g || g->n_nodes == 0) return;
  for (int32_t i = 0; i < g->n_tracked; i++)
    if (g->tracked[i] == g->n_nodes - 1) g->tracked[i] = -1;
  if (g->index) index_remove(g->index, g->nodes, g->n_nodes - 1);
  g->nodes[--g->n_nodes] = NULL;
}

kir_node *kir_graph_find(const kir_graph *g, const char *name) {
  if (!g || !name || !g->index) return NULL;
  uint32_t i = index_slot(g->index, g->nodes, name, hash_name(name));
  return g->index->slots[i].id >= 0 ? g->nodes[g->index->slots[i].id] : NULL;
}

/* ---------------------------------------------------------------- graphs -------- */

kir_graph *kir_graph_create(void) {
  kir_graph *g = kir_calloc(1, sizeof *g);
  if (!g) return NULL;
  g->arena = arena_create();
  g->hot = arena_create();
  g->index = index_new(16);
  if (!g->arena || !g->hot || !g->index) {
    kir_graph_destroy(g);
    return NULL;
  }
  return g;
}

static void graph_free_contents(kir_graph *g) {
  arena_destroy(g->arena);
  arena_destroy(g->hot);
  kir_free(g->nodes);
  kir_free(g->index);
  kir_free(g->tracked);
  g->tracked = NULL;
  g->n_tracked = 0;
  g->arena = g->hot = NULL;
  g->nodes = NULL;
  g->index = NULL;
  g->n_nodes = g->cap_nodes = 0;
}

void kir_graph_destroy(kir_graph *g) {
  if (!g) return;
  graph_free_contents(g);
  kir_free(g);
}

void kir_graph_swap_in(kir_graph *dst, kir_graph *src) {
  if (!dst || !src || dst == src) return;
  graph_free_contents(dst);
  *dst = *src;
  src->arena = src->hot = NULL;
  src->tracked = NULL;
  src->nodes = NULL;
  src->index = NULL;
  kir_graph_destroy(src);
}

static kiln_status reserve_nodes(kir_graph *g, int32_t more) {
  if (g->n_nodes > KIR_MAX_NODES - more)
    return kir_seterr(g, KILN_ERR_LIMIT, "graph has more than %d nodes", KIR_MAX_NODES);
  int32_t need = g->n_nodes + more;
  if (need <= g->cap_nodes) return KILN_OK;
  int32_t cap = g->cap_nodes ? g->cap_nodes : 16;
  while (cap < need) cap *= 2;
  kir_node **p = kir_realloc(g->nodes, (size_t)g->cap_nodes * sizeof *p, (size_t)cap * sizeof *p);
  if (!p) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory growing the node list");
  g->nodes = p;
  g->cap_nodes = cap;
  return KILN_OK;
}

/* Makes sure one more name fits in the index under half load. */
static kiln_status reserve_index(kir_graph *g) {
  if (g->index && 2 * ((int64_t)g->index->count + 1) < (int64_t)g->index->cap) return KILN_OK;
  struct kir_name_index *x = index_new(index_cap_for(g->n_nodes + 1));
  if (!x) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory growing the name index");
  for (int32_t i = 0; i < g->n_nodes; i++) index_put(x, g->nodes, i);
  kir_free(g->index);
  g->index = x;
  return KILN_OK;
}

static const char *node_kind(kir_op op) {
  const kir_op_info *i = kir_op_get((int32_t)op);
  return i ? i->name : "invalid";
}

static kiln_status check_new_node(kir_graph *g, kir_op op, const char *name,
                                  const int32_t *inputs, int32_t n_inputs, int32_t bound) {
  /* Escapes only on the error paths: escaping every added node's name cost more than
   * the rest of the checks. */
  char esc[KIR_ESC_BUF];
#define ESC() kir_escape(name, esc, sizeof esc)
  if (!name) return kir_seterr(g, KILN_ERR_ARGUMENT, "node name is NULL");
  if (strlen(name) > KIR_MAX_NAME)
    return kir_seterr(g, KILN_ERR_LIMIT, "node '%s': name longer than %d bytes", ESC(), KIR_MAX_NAME);
  if (!kir_op_get((int32_t)op))
    return kir_seterr(g, KILN_ERR_GRAPH, "node '%s': invalid op number %d", ESC(), (int)op);
  if (n_inputs < 0 || (n_inputs > 0 && !inputs))
    return kir_seterr(g, KILN_ERR_ARGUMENT, "node '%s': bad input list", ESC());
  if (n_inputs > KIR_MAX_INPUTS)
    return kir_seterr(g, KILN_ERR_LIMIT, "node '%s': %d inputs, more than %d", ESC(), (int)n_inputs,
                      KIR_MAX_INPUTS);
  for (int32_t i = 0; i < n_inputs; i++)
    if (inputs[i] < 0 || inputs[i] >= bound)
      return kir_seterr(g, KILN_ERR_GRAPH, "node '%s' (%s): input %d refers to missing node %d",
                        ESC(), node_kind(op), (int)i, (int)inputs[i]);
  return KILN_OK;
#undef ESC
}

/* kir_node_add with inputs checked against `bound` instead of the node count (clone
 * copies graphs that are not yet in topological order). */
static kir_node *node_add_bounded(kir_graph *g, kir_op op, const char *name,
                                  const int32_t *inputs, int32_t n_inputs, int32_t bound) {
  if (check_new_node(g, op, name, inputs, n_inputs, bound) != KILN_OK) return NULL;
  if (reserve_nodes(g, 1) != KILN_OK || reserve_index(g) != KILN_OK) return NULL;
  kir_node *n = arena_alloc(g->hot, sizeof *n, 64);
  int32_t *in = !n || !n_inputs ? NULL
                : n_inputs <= KIR_INLINE_INPUTS ? n->inline_inputs
                : arena_alloc(g->hot, (size_t)n_inputs * sizeof *in, sizeof *in);
  /* The name too: a lookup by name then reads the node and its name from neighbouring
   * cache lines. */
  size_t name_n = strlen(name) + 1;
  char *nm = n && (in || !n_inputs) ? arena_alloc(g->hot, name_n, 1) : NULL;
  if (!nm) {
    kir_seterr(g, KILN_ERR_NOMEM, "out of memory adding a node");
    return NULL;
  }
  memcpy(nm, name, name_n);
  if (n_inputs) memcpy(in, inputs, (size_t)n_inputs * sizeof *in);
  n->id = g->n_nodes;
  n->op = op;
  n->name = nm;
  n->device = n->assigned_device = n->placement_reason = "";
  n->n_inputs = n_inputs;
  n->inputs = in;
  g->nodes[g->n_nodes++] = n;
  index_put(g->index, g->nodes, n->id);
  return n;
}

kir_node *kir_node_add(kir_graph *g, kir_op op, const char *name, const int32_t *inputs,
                       int32_t n_inputs) {
  if (!g) return NULL;
  return node_add_bounded(g, op, name, inputs, n_inputs, g->n_nodes);
}

/* ---------------------------------------------------------------- attributes ---- */
/* n->attrs has room for attr_cap(n->n_attrs) entries: setters grow it by doubling, so
 * a node with k attributes costs O(k) arena bytes, not O(k^2). Only this file writes
 * n->attrs. */
static int32_t attr_cap(int32_t n) {
  int32_t cap = 1;
  while (cap < n) cap *= 2;
  return n ? cap : 0;
}

/* Index of name in n->attrs, or -(insertion point) - 1. */
static int32_t attr_search(const kir_node *n, const char *name) {
  int32_t lo = 0, hi = n->n_attrs;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    int c = strcmp(n->attrs[mid].name, name);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -lo - 1;
}

static kiln_status check_attr_name(kir_graph *g, const kir_node *n, const char *name) {
  if (!n) return kir_seterr(g, KILN_ERR_ARGUMENT, "attribute set on a NULL node");
  if (!name) return kir_node_err(g, n, KILN_ERR_ARGUMENT, "attribute name is NULL");
  if (strlen(name) > KIR_MAX_NAME)
    return kir_node_err(g, n, KILN_ERR_LIMIT, "attribute name longer than %d bytes", KIR_MAX_NAME);
  return KILN_OK;
}

/* Stores `a` (whose value already lives in g's arena) on n, by name. */
static kiln_status attr_put(kir_graph *g, kir_node *n, const char *name, kir_attr a) {
  int32_t pos = attr_search(n, name);
  if (pos >= 0) {
    a.name = n->attrs[pos].name;
    n->attrs[pos] = a;
    return KILN_OK;
  }
  pos = -pos - 1;
  if (n->n_attrs >= KIR_MAX_ATTRS)
    return kir_node_err(g, n, KILN_ERR_LIMIT, "more than %d attributes", KIR_MAX_ATTRS);
  a.name = kir_graph_strdup(g, name);
  if (!a.name) return KILN_ERR_NOMEM;
  if (n->n_attrs + 1 > attr_cap(n->n_attrs)) {
    kir_attr *grown = kir_graph_alloc(g, (size_t)attr_cap(n->n_attrs + 1) * sizeof *grown);
    if (!grown) return KILN_ERR_NOMEM;
    if (n->n_attrs) memcpy(grown, n->attrs, (size_t)n->n_attrs * sizeof *grown);
    n->attrs = grown;
  }
  memmove(&n->attrs[pos + 1], &n->attrs[pos], (size_t)(n->n_attrs - pos) * sizeof *n->attrs);
  n->attrs[pos] = a;
  n->n_attrs++;
  return KILN_OK;
}

static kiln_status check_count(kir_graph *g, const kir_node *n, const void *v, int32_t count) {
  if (count < 0 || (count > 0 && !v))
    return kir_node_err(g, n, KILN_ERR_ARGUMENT, "bad attribute value list (%d entries)", (int)count);
  return KILN_OK;
}

/* Copies count elements of `size` bytes; never NULL for count 0, so a present empty
 * list stays distinguishable from an absent one. */
static void *arena_copy(kir_graph *g, const void *v, int32_t count, size_t size) {
  void *p = kir_graph_alloc(g, count ? (size_t)count * size : 1);
  if (p && count) memcpy(p, v, (size_t)count * size);
  return p;
}

kiln_status kir_attr_set_int(kir_graph *g, kir_node *n, const char *name, int64_t v) {
  kiln_status s = check_attr_name(g, n, name);
  if (s != KILN_OK) return s;
  kir_attr a = {.kind = KIR_ATTR_INT, .u.i = v};
  return attr_put(g, n, name, a);
}

kiln_status kir_attr_set_float(kir_graph *g, kir_node *n, const char *name, double v) {
  kiln_status s = check_attr_name(g, n, name);
  if (s != KILN_OK) return s;
  kir_attr a = {.kind = KIR_ATTR_FLOAT, .u.f = v};
  return attr_put(g, n, name, a);
}

kiln_status kir_attr_set_ints(kir_graph *g, kir_node *n, const char *name, const int64_t *v,
                              int32_t count) {
  kiln_status s = check_attr_name(g, n, name);
  if (s == KILN_OK) s = check_count(g, n, v, count);
  if (s != KILN_OK) return s;
  const int64_t *copy = arena_copy(g, v, count, sizeof *v);
  if (!copy) return KILN_ERR_NOMEM;
  kir_attr a = {.kind = KIR_ATTR_INTS, .u.ints = {copy, count}};
  return attr_put(g, n, name, a);
}

kiln_status kir_attr_set_floats(kir_graph *g, kir_node *n, const char *name, const double *v,
                                int32_t count) {
  kiln_status s = check_attr_name(g, n, name);
  if (s == KILN_OK) s = check_count(g, n, v, count);
  if (s != KILN_OK) return s;
  const double *copy = arena_copy(g, v, count, sizeof *v);
  if (!copy) return KILN_ERR_NOMEM;
  kir_attr a = {.kind = KIR_ATTR_FLOATS, .u.floats = {copy, count}};
  return attr_put(g, n, name, a);
}

kiln_status kir_attr_set_string(kir_graph *g, kir_node *n, const char *name, const char *v) {
  kiln_status s = check_attr_name(g, n, name);
  if (s != KILN_OK) return s;
  const char *copy = kir_graph_strdup(g, v);
  if (!copy) return KILN_ERR_NOMEM;
  kir_attr a = {.kind = KIR_ATTR_STRING, .u.s = copy};
  return attr_put(g, n, name, a);
}

kiln_status kir_attr_set_strings(kir_graph *g, kir_node *n, const char *name,
                                 const char *const *v, int32_t count) {
  kiln_status s = check_attr_name(g, n, name);
  if (s == KILN_OK) s = check_count(g, n, v, count);
  if (s != KILN_OK) return s;
  const char **copy = kir_graph_alloc(g, count ? (size_t)count * sizeof *copy : 1);
  if (!copy) return KILN_ERR_NOMEM;
  for (int32_t i = 0; i < count; i++)
    if (!(copy[i] = kir_graph_strdup(g, v[i]))) return KILN_ERR_NOMEM;
  kir_attr a = {.kind = KIR_ATTR_STRINGS, .u.strings = {copy, count}};
  return attr_put(g, n, name, a);
}

static kir_tensor *arena_tensor(kir_graph *g, const kir_node *n, const kir_tensor *t) {
  char ty[96];
  int64_t nbytes = t ? kir_type_nbytes(&t->type) : -1;
  if (!t || nbytes < 0 || (nbytes > 0 && !t->data)) {
    if (t) kir_type_format(&t->type, ty, sizeof ty);
    kir_node_err(g, n, KILN_ERR_ARGUMENT, "bad tensor attribute %s", t ? ty : "(null)");
    return NULL;
  }
  kir_tensor *c = kir_graph_alloc(g, sizeof *c);
  void *data = c ? graph_alloc_aligned(g, (size_t)nbytes, 64) : NULL;
  if (!data) return NULL;
  c->type = t->type;
  for (int32_t i = t->type.rank; i < KILN_MAX_RANK; i++) c->type.dims[i] = 0;
  if (nbytes) memcpy(data, t->data, (size_t)nbytes);
  c->data = data;
  return c;
}

kiln_status kir_attr_set_tensor(kir_graph *g, kir_node *n, const char *name, const kir_tensor *t) {
  kiln_status s = check_attr_name(g, n, name);
  if (s != KILN_OK) return s;
  kir_tensor *copy = arena_tensor(g, n, t);
  if (!copy) return g->status;
  kir_attr a = {.kind = KIR_ATTR_TENSOR, .u.t = copy};
  return attr_put(g, n, name, a);
}

static kiln_status attr_copy_one(kir_graph *g, kir_node *dst, const kir_attr *a) {
  switch (a->kind) {
  case KIR_ATTR_INT: return kir_attr_set_int(g, dst, a->name, a->u.i);
  case KIR_ATTR_FLOAT: return kir_attr_set_float(g, dst, a->name, a->u.f);
  case KIR_ATTR_INTS: return kir_attr_set_ints(g, dst, a->name, a->u.ints.v, a->u.ints.n);
  case KIR_ATTR_FLOATS: return kir_attr_set_floats(g, dst, a->name, a->u.floats.v, a->u.floats.n);
  case KIR_ATTR_STRING: return kir_attr_set_string(g, dst, a->name, a->u.s);
  case KIR_ATTR_STRINGS:
    return kir_attr_set_strings(g, dst, a->name, a->u.strings.v, a->u.strings.n);
  case KIR_ATTR_TENSOR: return kir_attr_set_tensor(g, dst, a->name, a->u.t);
  }
  return kir_node_err(g, dst, KILN_ERR_INTERNAL, "attribute of unknown kind %d", (int)a->kind);
}

kiln_status kir_attr_copy_all(kir_graph *g, kir_node *dst, const kir_node *src) {
  if (!dst || !src) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_attr_copy_all: NULL node");
  if (dst == src) return KILN_OK;
  for (int32_t i = 0; i < src->n_attrs; i++) {
    kiln_status s = attr_copy_one(g, dst, &src->attrs[i]);
    if (s != KILN_OK) return s;
  }
  return KILN_OK;
}

const kir_attr *kir_attr_find(const kir_node *n, const char *name) {
  if (!n || !name || n->n_attrs <= 0 || !n->attrs) return NULL;
  int32_t pos = attr_search(n, name);
  return pos >= 0 ? &n->attrs[pos] : NULL;
}

static const kir_attr *attr_of(const kir_node *n, const char *name, kir_attr_kind k) {
  const kir_attr *a = kir_attr_find(n, name);
  return a && a->kind == k ? a : NULL;
}

int64_t kir_attr_int(const kir_node *n, const char *name, int64_t dflt) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_INT);
  return a ? a->u.i : dflt;
}

double kir_attr_float(const kir_node *n, const char *name, double dflt) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_FLOAT);
  return a ? a->u.f : dflt;
}

const int64_t *kir_attr_ints(const kir_node *n, const char *name, int32_t *count) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_INTS);
  if (count) *count = a ? a->u.ints.n : 0;
  return a ? a->u.ints.v : NULL;
}

const double *kir_attr_floats(const kir_node *n, const char *name, int32_t *count) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_FLOATS);
  if (count) *count = a ? a->u.floats.n : 0;
  return a ? a->u.floats.v : NULL;
}

const char *kir_attr_string(const kir_node *n, const char *name) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_STRING);
  return a ? a->u.s : NULL;
}

const char *const *kir_attr_strings(const kir_node *n, const char *name, int32_t *count) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_STRINGS);
  if (count) *count = a ? a->u.strings.n : 0;
  return a ? a->u.strings.v : NULL;
}

const kir_tensor *kir_attr_tensor(const kir_node *n, const char *name) {
  const kir_attr *a = attr_of(n, name, KIR_ATTR_TENSOR);
  return a ? a->u.t : NULL;
}

/* ---------------------------------------------------------------- clone --------- */

static kiln_status clone_node(kir_graph *dst, const kir_graph *src, const kir_node *n) {
  kir_node *c = node_add_bounded(dst, n->op, n->name, n->inputs, n->n_inputs, src->n_nodes);
  if (!c) return dst->status;
  c->type = n->type;
  if (!(c->device = kir_graph_strdup(dst, n->device)) ||
      !(c->assigned_device = kir_graph_strdup(dst, n->assigned_device)) ||
      !(c->placement_reason = kir_graph_strdup(dst, n->placement_reason)))
    return KILN_ERR_NOMEM;
  return kir_attr_copy_all(dst, c, n);
}

kir_graph *kir_graph_clone(const kir_graph *g) {
  if (!g) return NULL;
  kir_graph *c = kir_graph_create();
  if (!c) return NULL;
  if (reserve_nodes(c, g->n_nodes) != KILN_OK) goto fail;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (clone_node(c, g, g->nodes[i]) != KILN_OK) goto fail;
  return c;
fail:
  kir_graph_destroy(c);
  return NULL;
}

/* ---------------------------------------------------------------- reordering ---- */

/* Puts node ids and inputs back as they were before renumbering nodes[0 .. upto) (and
 * the first k_upto inputs of nodes[upto]). */
static void renumber_undo(kir_node **nodes, const int32_t *order, int32_t upto, int32_t k_upto) {
  for (int32_t i = 0; i <= upto; i++) {
    int32_t nk = i < upto ? nodes[i]->n_inputs : k_upto;
    for (int32_t k = 0; k < nk; k++) nodes[i]->inputs[k] = order[nodes[i]->inputs[k]];
    nodes[i]->id = order[i];
  }
}

/* Renumbers ids and inputs in nodes (new order). Unless the inputs were checked, checks
 * each as it goes (an input that is not a node, or a dropped one) and on a bad one puts
 * everything back: then the caller's graph is unchanged. The check rides on the sweep
 * that renumbers, instead of a sweep of its own over every node (big graphs: a cache
 * miss or two per node per sweep). */
static kiln_status renumber(kir_graph *g, kir_node **nodes, const int32_t *order, int32_t count,
                            const int32_t *new_id, bool checked) {
  for (int32_t i = 0; i < count; i++) {
    kir_node *n = nodes[i];
    n->id = i;
    for (int32_t k = 0; k < n->n_inputs; k++) {
      int32_t in = n->inputs[k];
      if (!checked && (in < 0 || in >= g->n_nodes || new_id[in] < 0)) {
        renumber_undo(nodes, order, i, k);
        if (in < 0 || in >= g->n_nodes)
          return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d refers to missing node %d", (int)k, (int)in);
        char a[KIR_ESC_BUF];
        return kir_seterr(g, KILN_ERR_INTERNAL, "compact: kept node '%s' uses dropped node %d",
                          kir_escape(n->name, a, sizeof a), (int)in);
      }
      n->inputs[k] = new_id[in];
    }
  }
  return KILN_OK;
}

/* Installs the nodes in `order` (old ids, new positions) and renumbers inputs with
 * `new_id` (old id -> new id). Allocates first, so on NOMEM (or a bad input, when not
 * `checked`) nothing changed. */
static kiln_status apply_order(kir_graph *g, const int32_t *order, int32_t count,
                               const int32_t *new_id, bool checked) {
  kir_node **nodes = kir_malloc((size_t)(g->cap_nodes ? g->cap_nodes : 1) * sizeof *nodes);
  if (!nodes) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory reordering nodes");
  for (int32_t i = 0; i < count; i++) nodes[i] = g->nodes[order[i]];
  bool remap = g->index && !g->index->dups;
  struct kir_name_index *x = remap ? g->index : index_build(nodes, count);
  if (!x) {
    kir_free(nodes);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory rebuilding the name index");
  }
  kiln_status s = renumber(g, nodes, order, count, new_id, checked);
  if (s != KILN_OK) {
    kir_free(nodes);
    if (!remap) kir_free(x);
    return s;
  }
  if (remap) index_remap(x, new_id); /* cannot fail */
  for (int32_t i = 0; i < g->n_tracked; i++)
    if (g->tracked[i] >= 0) g->tracked[i] = new_id[g->tracked[i]];
  kir_free(g->nodes);
  if (!remap) kir_free(g->index);
  g->nodes = nodes;
  g->index = x;
  g->n_nodes = count;
  return KILN_OK;
}

/* Min-heap of node ids, for the loader's Kahn sort (kir_serialize.c): it always takes the
 * smallest ready id, so nodes already in order keep their order. */
void kir_heap_push(int32_t *h, int32_t *n, int32_t v) {
  int32_t i = (*n)++;
  while (i > 0 && h[(i - 1) / 2] > v) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = v;
}

int32_t kir_heap_pop(int32_t *h, int32_t *n) {
  int32_t top = h[0], v = h[--(*n)], i = 0;
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (h[c] >= v) break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0) h[i] = v;
  return top;
}

/* Already sorted (the common case): nothing to move, and the node array and index stay. */
static bool is_identity(const int32_t *order, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (order[i] != i) return false;
  return true;
}

/* One sweep over the kept nodes: every input exists and is kept. Says whether the kept
 * nodes are already in order (every input id below its user's), the common case after a
 * pass that rewrote in place or only dropped nodes: then no sort is needed. */
static kiln_status check_inputs(kir_graph *g, const bool *keep, bool *sorted) {
  *sorted = true;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (keep && !keep[i]) continue;
    const kir_node *n = g->nodes[i];
    for (int32_t k = 0; k < n->n_inputs; k++) {
      int32_t in = n->inputs[k];
      if (in < 0 || in >= g->n_nodes)
        return kir_node_err(g, n, KILN_ERR_GRAPH, "input %d refers to missing node %d", (int)k,
                            (int)in);
      if (keep && !keep[in]) {
        char a[KIR_ESC_BUF];
        return kir_seterr(g, KILN_ERR_INTERNAL, "compact: kept node '%s' uses dropped node %d",
                          kir_escape(n->name, a, sizeof a), (int)in);
      }
      if (in >= i) *sorted = false;
    }
  }
  return KILN_OK;
}

/* Depth-first topological order of the kept nodes, taken in id order: a node is emitted
 * once its inputs are, so nodes already in order keep it and an input that comes after a
 * user (a node a pass appended) moves before its first user. Linear in nodes plus
 * edges, with no users lists and no heap. state: 0 unseen, 1 on the stack, 2 emitted.
 * Fills order (old ids by new position) and new_id (old -> new, -1 dropped); returns the
 * count, or -1 after naming a node on a cycle. */
static int32_t dfs_order(kir_graph *g, const bool *keep, int32_t *order, int32_t *new_id,
                         int32_t *stack, int32_t *cursor, uint8_t *state) {
  int32_t count = 0;
  for (int32_t v = 0; v < g->n_nodes; v++) {
    new_id[v] = -1;
    state[v] = 0;
  }
  for (int32_t v = 0; v < g->n_nodes; v++) {
    if ((keep && !keep[v]) || state[v] == 2) continue;
    int32_t sp = 0;
    stack[sp] = v;
    cursor[sp++] = 0;
    state[v] = 1;
    while (sp > 0) {
      const kir_node *n = g->nodes[stack[sp - 1]];
      if (cursor[sp - 1] < n->n_inputs) {
        int32_t w = n->inputs[cursor[sp - 1]++];
        if (state[w] == 2) continue;
        if (state[w] == 1) {
          kir_node_err(g, g->nodes[w], KILN_ERR_GRAPH, "is on a cycle");
          return -1;
        }
        state[w] = 1;
        stack[sp] = w;
        cursor[sp++] = 0;
        continue;
      }
      int32_t u = stack[--sp];
      state[u] = 2;
      new_id[u] = count;
      order[count++] = u;
    }
  }
  return count;
}

kiln_status kir_graph_sort_compact(kir_graph *g, const bool *keep) {
  if (!g) return KILN_ERR_ARGUMENT;
  bool sorted;
  kiln_status s = check_inputs(g, keep, &sorted);
  if (s != KILN_OK || (sorted && !keep)) return s;
  size_t n = (size_t)(g->n_nodes ? g->n_nodes : 1);
  int32_t *buf = kir_malloc((sorted ? 2 : 4) * n * sizeof *buf + (sorted ? 0 : n));
  if (!buf) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory ordering nodes");
  int32_t *order = buf, *new_id = buf + n, count = 0;
  if (sorted) { /* only drops: the kept nodes in their order */
    for (int32_t i = 0; i < g->n_nodes; i++) {
      new_id[i] = keep[i] ? count : -1;
      if (keep[i]) order[count++] = i;
    }
  } else {
    count = dfs_order(g, keep, order, new_id, buf + 2 * n, buf + 3 * n, (uint8_t *)(buf + 4 * n));
  }
  if (count < 0) s = KILN_ERR_GRAPH;
  else if (count < g->n_nodes || !is_identity(order, count)) s = apply_order(g, order, count, new_id, true);
  kir_free(buf);
  return s;
}

/* The graph is in order (the invariant), so dropping keeps it in order: no sort, and the
 * inputs are checked while they are renumbered. */
kiln_status kir_graph_compact(kir_graph *g, const bool *keep) {
  if (!g || !keep) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_compact: NULL argument");
  int32_t *buf = kir_malloc(2 * (size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *buf);
  if (!buf) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory compacting");
  int32_t *order = buf, *new_id = buf + g->n_nodes, count = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    new_id[i] = keep[i] ? count : -1;
    if (keep[i]) order[count++] = i;
  }
  bool sorted;
  kiln_status s = count < g->n_nodes ? apply_order(g, order, count, new_id, false)
                                     : check_inputs(g, keep, &sorted); /* nothing to drop: check only */
  kir_free(buf);
  return s;
}

kiln_status kir_graph_toposort(kir_graph *g) { return kir_graph_sort_compact(g, NULL); }

void kir_graph_replace_uses(kir_graph *g, int32_t from, int32_t to) {
  if (!g) return;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    if (i == to || i == from) continue; /* would make a node use itself */
    for (int32_t k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] == from) n->inputs[k] = to;
  }
}

int32_t kir_graph_count_uses(const kir_graph *g, int32_t id) {
  int32_t uses = 0;
  if (!g) return 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++)
      if (g->nodes[i]->inputs[k] == id) uses++;
  return uses;
}
