/* kir_serialize.c — .kiln files: kir_graph <-> protobuf bytes (ir/kiln.proto) via
 * protobuf-c. Loading treats every byte as hostile: unpacking runs under a byte budget,
 * and every count, name, reference, number and size is checked before a node is built.
 * Depends on libc, POSIX file calls and protobuf-c; nothing outside ir/. */
#include "kir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#include "kiln.pb-c.h"
#include "kir_internal.h"

#define KIR_PRODUCER "kiln 0.1.0"
#define KIR_PARSE_SLACK ((uint64_t)64 << 20)

/* ================================================================ shared helpers == */

static bool host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* Copies n bytes of elements of esize bytes, reversing each element's bytes on a
 * big-endian host, so files are little-endian everywhere. */
static void copy_le(void *dst, const void *src, size_t n, size_t esize) {
  memcpy(dst, src, n);
  if (host_is_little_endian() || esize < 2) return;
  unsigned char *p = dst;
  for (size_t i = 0; i + esize <= n; i += esize) {
    for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
      unsigned char t = p[i + a];
      p[i + a] = p[i + b];
      p[i + b] = t;
    }
  }
}

/* Escapes a path for messages, keeping its tail (the file name) when it is long. */
static void escape_path(const char *path, char *buf, size_t n) {
  size_t len = strlen(path), keep = n / 4 - 1, o = 0;
  const char *s = path;
  if (len > keep) {
    s = path + len - keep;
    o = (size_t)snprintf(buf, n, "...");
  }
  for (; *s && o + 5 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '\'')
      o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c);
    else
      buf[o++] = (char)c;
  }
  buf[o] = '\0';
}

/* ================================================================ saving ========= */

/* Every block made while encoding, freed together at the end. */
typedef struct scratch {
  void **blocks;
  size_t n, cap;
} scratch;

static void *scratch_alloc(scratch *s, size_t count, size_t size) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    void **b = kir_realloc(s->blocks, s->cap * sizeof *b, cap * sizeof *b);
    if (!b) return NULL;
    s->blocks = b;
    s->cap = cap;
  }
  void *p = kir_calloc(count ? count : 1, size);
  if (p) s->blocks[s->n++] = p;
  return p;
}

static void scratch_free(scratch *s) {
  for (size_t i = 0; i < s->n; i++) kir_free(s->blocks[i]);
  kir_free(s->blocks);
  s->blocks = NULL;
  s->n = s->cap = 0;
}

static bool encode_tensor(scratch *s, const kir_tensor *t, Kiln__Tensor *out) {
  int64_t nbytes = kir_type_nbytes(&t->type);
  if (nbytes < 0) return false;
  out->dtype = (int32_t)t->type.dtype;
  out->n_dims = (size_t)t->type.rank;
  out->dims = (int64_t *)t->type.dims; /* pack only reads */
  out->data.len = (size_t)nbytes;
  out->data.data = (uint8_t *)t->data;
  if (!host_is_little_endian() && nbytes > 0) {
    out->data.data = scratch_alloc(s, (size_t)nbytes, 1);
    if (!out->data.data) return false;
    copy_le(out->data.data, t->data, (size_t)nbytes, kiln_dtype_size(t->type.dtype));
  }
  return true;
}

/* Fills one attribute message; pointers alias the graph (pack only reads them). */
static bool encode_attr(scratch *s, const kir_attr *a, Kiln__Attr *out) {
  out->name = (char *)a->name;
  switch (a->kind) {
  case KIR_ATTR_INT:
    out->value_case = KILN__ATTR__VALUE_I;
    out->i = a->u.i;
    return true;
  case KIR_ATTR_FLOAT:
    out->value_case = KILN__ATTR__VALUE_F;
    out->f = a->u.f;
    return true;
  case KIR_ATTR_STRING:
    out->value_case = KILN__ATTR__VALUE_S;
    out->s = (char *)a->u.s;
    return true;
  case KIR_ATTR_INTS: {
    Kiln__Ints *m = scratch_alloc(s, 1, sizeof *m);
    if (!m) return false;
    kiln__ints__init(m);
    m->n_v = (size_t)a->u.ints.n;
    m->v = (int64_t *)a->u.ints.v;
    out->value_case = KILN__ATTR__VALUE_INTS;
    out->ints = m;
    return true;
  }
  case KIR_ATTR_FLOATS: {
    Kiln__Floats *m = scratch_alloc(s, 1, sizeof *m);
    if (!m) return false;
    kiln__floats__init(m);
    m->n_v = (size_t)a->u.floats.n;
    m->v = (double *)a->u.floats.v;
    out->value_case = KILN__ATTR__VALUE_FLOATS;
    out->floats = m;
    return true;
  }
  case KIR_ATTR_STRINGS: {
    Kiln__Strings *m = scratch_alloc(s, 1, sizeof *m);
    if (!m) return false;
    kiln__strings__init(m);
    m->n_v = (size_t)a->u.strings.n;
    m->v = (char **)a->u.strings.v;
    out->value_case = KILN__ATTR__VALUE_STRINGS;
    out->strings = m;
    return true;
  }
  case KIR_ATTR_TENSOR: {
    Kiln__Tensor *m = scratch_alloc(s, 1, sizeof *m);
    if (!m || !a->u.t) return false;
    kiln__tensor__init(m);
    out->value_case = KILN__ATTR__VALUE_T;
    out->t = m;
    return encode_tensor(s, a->u.t, m);
  }
  }
  return false; /* an attribute kind outside the enum: not a verified graph */
}

static bool encode_node(scratch *s, const kir_graph *g, const kir_node *n, Kiln__Node *out) {
  kiln__node__init(out);
  out->name = (char *)n->name;
  out->op = (int32_t)n->op;
  out->device = (char *)(n->device ? n->device : "");
  out->assigned_device = (char *)(n->assigned_device ? n->assigned_device : "");
  out->placement_reason = (char *)(n->placement_reason ? n->placement_reason : "");
  out->n_inputs = (size_t)n->n_inputs;
  out->inputs = scratch_alloc(s, (size_t)n->n_inputs, sizeof(char *));
  out->n_attrs = (size_t)n->n_attrs;
  out->attrs = scratch_alloc(s, (size_t)n->n_attrs, sizeof(Kiln__Attr *));
  Kiln__Attr *attrs = scratch_alloc(s, (size_t)n->n_attrs, sizeof(Kiln__Attr));
  if (!out->inputs || !out->attrs || !attrs) return false;
  for (int32_t i = 0; i < n->n_inputs; i++)
    out->inputs[i] = (char *)g->nodes[n->inputs[i]]->name;
  for (int32_t i = 0; i < n->n_attrs; i++) {
    kiln__attr__init(&attrs[i]);
    out->attrs[i] = &attrs[i];
    if (!encode_attr(s, &n->attrs[i], &attrs[i])) return false;
  }
  return true;
}

static kiln_status pack_graph(kir_graph *g, scratch *s, uint8_t **buf, size_t *len) {
  Kiln__Graph m = KILN__GRAPH__INIT;
  m.format_major = KIR_FORMAT_MAJOR;
  m.format_minor = KIR_FORMAT_MINOR;
  m.producer = (char *)KIR_PRODUCER;
  m.n_nodes = (size_t)g->n_nodes;
  m.nodes = scratch_alloc(s, (size_t)g->n_nodes, sizeof(Kiln__Node *));
  Kiln__Node *nodes = scratch_alloc(s, (size_t)g->n_nodes, sizeof(Kiln__Node));
  if (!m.nodes || !nodes) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory while serializing");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    m.nodes[i] = &nodes[i];
    if (!encode_node(s, g, g->nodes[i], &nodes[i]))
      return kir_seterr(g, KILN_ERR_NOMEM, "out of memory while serializing node %d", i);
  }
  size_t n = kiln__graph__get_packed_size(&m);
  uint8_t *out = kir_malloc(n);
  if (!out) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory: %zu bytes for the serialized graph", n);
  if (kiln__graph__pack(&m, out) != n) {
    kir_free(out);
    return kir_seterr(g, KILN_ERR_INTERNAL, "protobuf-c packed a different size than it computed");
  }
  *buf = out;
  *len = n;
  return KILN_OK;
}

kiln_status kir_graph_to_bytes(kir_graph *g, uint8_t **buf, size_t *len) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!buf || !len) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_to_bytes: NULL output");
  *buf = NULL;
  *len = 0;
  kiln_status st = kir_verify(g);
  if (st != KILN_OK) return st;
  scratch s = {0};
  st = pack_graph(g, &s, buf, len);
  scratch_free(&s);
  if (st == KILN_OK) kir_clearerr(g);
  return st;
}

/* Path problems (missing directory, permissions) vs. I/O failures. */
static kiln_status errno_status(int e) {
  switch (e) {
  case ENOENT: case ENOTDIR: case EACCES: case EPERM: case EISDIR: case EROFS:
  case ENAMETOOLONG: case ELOOP: case EXDEV: case EINVAL:
    return KILN_ERR_PATH;
  default:
    return KILN_ERR_IO;
  }
}

static kiln_status path_err(kir_graph *g, const char *path, int e, const char *what) {
  char p[512];
  escape_path(path, p, sizeof p);
  return kir_seterr(g, errno_status(e), "%s: %s: %s", p, what, strerror(e));
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes bytes to a new temp file beside path, then renames it over path. */
static kiln_status write_atomic(kir_graph *g, const char *path, const uint8_t *buf, size_t len) {
  static const char suffix[] = ".tmp.XXXXXX";
  size_t pl = strlen(path);
  char *tmp = kir_malloc(pl + sizeof suffix);
  if (!tmp) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  memcpy(tmp, path, pl);
  memcpy(tmp + pl, suffix, sizeof suffix);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    kiln_status st = path_err(g, path, errno, "cannot create a temp file");
    kir_free(tmp);
    return st;
  }
  int e = 0;
  const char *what = "cannot write";
  if (fchmod(fd, 0644) != 0) e = errno, what = "cannot set permissions";
  if (!e) e = write_all(fd, buf, len);
  if (close(fd) != 0 && !e) e = errno, what = "cannot close";
  if (!e && rename(tmp, path) != 0) e = errno, what = "cannot rename the temp file over it";
  kiln_status st = KILN_OK;
  if (e) {
    unlink(tmp);
    st = path_err(g, path, e, what);
  }
  kir_free(tmp);
  return st;
}

kiln_status kir_graph_save(kir_graph *g, const char *path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!path || !*path) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_save: empty path");
  uint8_t *buf = NULL;
  size_t len = 0;
  kiln_status st = kir_graph_to_bytes(g, &buf, &len);
  if (st != KILN_OK) return st;
  st = write_atomic(g, path, buf, len);
  kir_free(buf);
  if (st == KILN_OK) kir_clearerr(g);
  return st;
}

/* ================================================================ loading ======== */

/* protobuf-c allocator over kir_pb_allocator that remembers why an allocation failed. */
typedef struct budget_alloc {
  kir_pb_allocator pb;
  bool over_budget;
  bool out_of_memory;
} budget_alloc;

static void *budget_alloc_fn(void *ctx, size_t n) {
  budget_alloc *b = ctx;
  uint64_t total = (uint64_t)n + 16; /* kir_pb_allocator's per-block header */
  if (n > SIZE_MAX - 16 || total > b->pb.budget || b->pb.used > b->pb.budget - total) {
    b->over_budget = true;
    return NULL;
  }
  void *p = b->pb.alloc(&b->pb, n);
  if (!p) b->out_of_memory = true;
  return p;
}

static void budget_free_fn(void *ctx, void *p) {
  budget_alloc *b = ctx;
  b->pb.free(&b->pb, p);
}

typedef struct loader {
  kir_graph *g;       /* receives the error */
  const char *label;  /* "model.kiln: " or "" */
  const Kiln__Graph *m;
  int32_t n;          /* node count in the file */
  int32_t *slots;     /* name hash: file index + 1, 0 = empty */
  uint32_t mask;
  int64_t *in_off;    /* CSR of resolved inputs (file indices) */
  int32_t *in_idx;
  int32_t *order;     /* topological order of file indices */
} loader;

static kiln_status lfail(loader *L, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status lfail(loader *L, kiln_status s, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kir_seterr(L->g, s, "%s%s", L->label, msg);
}

static kiln_status nomem(loader *L) { return lfail(L, KILN_ERR_NOMEM, "out of memory while loading"); }

/* The node's name escaped for messages (names are checked before this is used). */
static const char *nm(const char *s, char *buf, size_t n) { return kir_escape(s, buf, n); }

static kiln_status check_string(loader *L, const char *what, const char *owner, const char *s,
                                bool nonempty) {
  char b[KIR_ESC_BUF];
  if (!s || (nonempty && !*s))
    return lfail(L, KILN_ERR_FORMAT, "%s: empty %s", owner, what);
  size_t len = strlen(s);
  if (len > KIR_MAX_NAME)
    return lfail(L, KILN_ERR_LIMIT, "%s: %s '%s' is %zu bytes (limit %d)", owner, what,
                 nm(s, b, sizeof b), len, KIR_MAX_NAME);
  return KILN_OK;
}

/* ---- tensors ------------------------------------------------------------------ */

static kiln_status check_tensor(loader *L, const char *node, const char *attr, const Kiln__Tensor *t) {
  if (t->dtype <= 0 || t->dtype >= KILN_DTYPE_COUNT)
    return lfail(L, t->dtype > 0 ? KILN_ERR_UNSUPPORTED : KILN_ERR_FORMAT,
                 "node '%s': attribute '%s': unknown dtype %d", node, attr, (int)t->dtype);
  if (t->n_dims > KILN_MAX_RANK)
    return lfail(L, KILN_ERR_LIMIT, "node '%s': attribute '%s': rank %zu (limit %d)", node, attr,
                 t->n_dims, KILN_MAX_RANK);
  int64_t numel = 1;
  for (size_t d = 0; d < t->n_dims; d++) {
    int64_t v = t->dims[d];
    if (v < 0)
      return lfail(L, KILN_ERR_FORMAT, "node '%s': attribute '%s': negative dim %lld at axis %zu",
                   node, attr, (long long)v, d);
    if (v > 0 && numel > INT64_MAX / v)
      return lfail(L, KILN_ERR_OVERFLOW, "node '%s': attribute '%s': element count overflows int64 at axis %zu (dim %lld)",
                   node, attr, d, (long long)v);
    numel *= v;
  }
  int64_t es = (int64_t)kiln_dtype_size((kiln_dtype)t->dtype);
  if (numel > INT64_MAX / es)
    return lfail(L, KILN_ERR_OVERFLOW, "node '%s': attribute '%s': byte size overflows int64", node, attr);
  int64_t nbytes = numel * es;
  if (nbytes > KIR_MAX_TENSOR_BYTES)
    return lfail(L, KILN_ERR_LIMIT, "node '%s': attribute '%s': tensor of %lld bytes (limit %lld)", node,
                 attr, (long long)nbytes, (long long)KIR_MAX_TENSOR_BYTES);
  if ((uint64_t)nbytes != (uint64_t)t->data.len)
    return lfail(L, KILN_ERR_FORMAT, "node '%s': attribute '%s': dtype and dims declare %lld bytes, data holds %zu",
                 node, attr, (long long)nbytes, t->data.len);
  if (t->dtype == KILN_BOOL) {
    for (size_t i = 0; i < t->data.len; i++)
      if (t->data.data[i] > 1)
        return lfail(L, KILN_ERR_FORMAT, "node '%s': attribute '%s': bool element %zu is %u, not 0 or 1",
                     node, attr, i, (unsigned)t->data.data[i]);
  }
  return KILN_OK;
}

/* ---- attributes --------------------------------------------------------------- */

/* Schema kind names of ops.def, by oneof case. */
static const char *case_kind(Kiln__Attr__ValueCase c) {
  switch (c) {
  case KILN__ATTR__VALUE_I: return "int";
  case KILN__ATTR__VALUE_F: return "float";
  case KILN__ATTR__VALUE_INTS: return "ints";
  case KILN__ATTR__VALUE_FLOATS: return "floats";
  case KILN__ATTR__VALUE_S: return "string";
  case KILN__ATTR__VALUE_STRINGS: return "strings";
  case KILN__ATTR__VALUE_T: return "tensor";
  case KILN__ATTR__VALUE__NOT_SET: break;
  default: break; /* a protobuf-c internal sentinel */
  }
  return NULL;
}

/* Next "name:kind[?]" entry of a schema string; false at the end. */
static bool schema_next(const char **p, char *name, size_t nn, char *kind, size_t kn, bool *opt) {
  const char *s = *p;
  while (*s == ' ') s++;
  if (!*s) return false;
  const char *colon = strchr(s, ':');
  const char *end = strchr(s, ' ');
  if (!end) end = s + strlen(s);
  if (!colon || colon > end) colon = end;
  snprintf(name, nn, "%.*s", (int)(colon - s), s);
  const char *k = colon < end ? colon + 1 : end;
  *opt = end > k && end[-1] == '?';
  snprintf(kind, kn, "%.*s", (int)(end - k - (*opt ? 1 : 0)), k);
  *p = end;
  return true;
}

static const Kiln__Attr *find_attr(const Kiln__Node *n, const char *name) {
  for (size_t i = 0; i < n->n_attrs; i++)
    if (strcmp(n->attrs[i]->name, name) == 0) return n->attrs[i];
  return NULL;
}

/* Every attribute known to the op with the right kind; every required one present. */
static kiln_status check_schema(loader *L, const Kiln__Node *n, const kir_op_info *info, const char *en) {
  char name[64], kind[16];
  bool opt;
  for (size_t i = 0; i < n->n_attrs; i++) {
    const Kiln__Attr *a = n->attrs[i];
    const char *p = info->schema, *want = NULL;
    char ea[KIR_ESC_BUF];
    while (!want && schema_next(&p, name, sizeof name, kind, sizeof kind, &opt))
      if (strcmp(name, a->name) == 0) want = kind;
    nm(a->name, ea, sizeof ea);
    if (!want)
      return lfail(L, KILN_ERR_GRAPH, "node '%s': unknown attribute '%s' for op %s", en, ea, info->name);
    if (strcmp(want, case_kind(a->value_case)) != 0)
      return lfail(L, KILN_ERR_GRAPH, "node '%s': attribute '%s' is %s; op %s wants %s", en, ea,
                   case_kind(a->value_case), info->name, want);
  }
  const char *p = info->schema;
  while (schema_next(&p, name, sizeof name, kind, sizeof kind, &opt))
    if (!opt && !find_attr(n, name))
      return lfail(L, KILN_ERR_GRAPH, "node '%s': missing attribute '%s' (%s) of op %s", en, name,
                   kind, info->name);
  return KILN_OK;
}

static kiln_status check_attr_value(loader *L, const char *en, const char *ea, const Kiln__Attr *a) {
  size_t count = 0;
  switch (a->value_case) {
  case KILN__ATTR__VALUE_I: case KILN__ATTR__VALUE_F: case KILN__ATTR__VALUE_S:
    return KILN_OK;
  case KILN__ATTR__VALUE_INTS: count = a->ints ? a->ints->n_v : 0; break;
  case KILN__ATTR__VALUE_FLOATS: count = a->floats ? a->floats->n_v : 0; break;
  case KILN__ATTR__VALUE_STRINGS: count = a->strings ? a->strings->n_v : 0; break;
  case KILN__ATTR__VALUE_T:
    if (!a->t) break;
    return check_tensor(L, en, ea, a->t);
  case KILN__ATTR__VALUE__NOT_SET:
  default:
    break;
  }
  if (!case_kind(a->value_case) || (a->value_case == KILN__ATTR__VALUE_T && !a->t))
    return lfail(L, KILN_ERR_FORMAT, "node '%s': attribute '%s' has no value", en, ea);
  if (count > INT32_MAX)
    return lfail(L, KILN_ERR_LIMIT, "node '%s': attribute '%s' has %zu values (limit %d)", en, ea,
                 count, INT32_MAX);
  return KILN_OK;
}

static int cmp_attr_name(const void *a, const void *b) {
  return strcmp((*(const Kiln__Attr *const *)a)->name, (*(const Kiln__Attr *const *)b)->name);
}

/* Names unique: files written by Kiln are sorted, so only unsorted lists need a sort. */
static kiln_status check_attr_names_unique(loader *L, const char *en, const Kiln__Node *n) {
  size_t k = n->n_attrs;
  bool sorted = true;
  for (size_t i = 1; i < k && sorted; i++) sorted = strcmp(n->attrs[i - 1]->name, n->attrs[i]->name) < 0;
  if (sorted) return KILN_OK;
  const Kiln__Attr **v = kir_malloc(k * sizeof *v);
  if (!v) return nomem(L);
  memcpy(v, n->attrs, k * sizeof *v);
  qsort(v, k, sizeof *v, cmp_attr_name);
  kiln_status st = KILN_OK;
  for (size_t i = 1; i < k && st == KILN_OK; i++)
    if (strcmp(v[i - 1]->name, v[i]->name) == 0)
      st = lfail(L, KILN_ERR_GRAPH, "node '%s': duplicate attribute '%s'", en,
                 kir_escape(v[i]->name, (char[KIR_ESC_BUF]){0}, KIR_ESC_BUF));
  kir_free(v);
  return st;
}

static kiln_status check_attrs(loader *L, const char *en, const char *who, const Kiln__Node *n) {
  if (n->n_attrs > KIR_MAX_ATTRS)
    return lfail(L, KILN_ERR_LIMIT, "node '%s': %zu attributes (limit %d)", en, n->n_attrs, KIR_MAX_ATTRS);
  for (size_t i = 0; i < n->n_attrs; i++) {
    const Kiln__Attr *a = n->attrs[i];
    kiln_status st = check_string(L, "attribute name", who, a->name, true);
    if (st != KILN_OK) return st;
    char ea[KIR_ESC_BUF];
    if ((st = check_attr_value(L, en, nm(a->name, ea, sizeof ea), a)) != KILN_OK) return st;
  }
  return check_attr_names_unique(L, en, n);
}

/* ---- nodes -------------------------------------------------------------------- */

static kiln_status check_node(loader *L, int32_t i) {
  const Kiln__Node *n = L->m->nodes[i];
  char owner[32], en[KIR_ESC_BUF];
  snprintf(owner, sizeof owner, "node %d", i);
  kiln_status st = check_string(L, "name", owner, n->name, true);
  if (st != KILN_OK) return st;
  nm(n->name, en, sizeof en);
  char who[KIR_ESC_BUF + 16];
  snprintf(who, sizeof who, "node '%s'", en);
  const kir_op_info *info = kir_op_get(n->op);
  if (!info)
    return lfail(L, n->op > 0 ? KILN_ERR_UNSUPPORTED : KILN_ERR_FORMAT, "node '%s': unknown op %d", en,
                 (int)n->op);
  if (n->n_inputs > KIR_MAX_INPUTS)
    return lfail(L, KILN_ERR_LIMIT, "node '%s': %zu inputs (limit %d)", en, n->n_inputs, KIR_MAX_INPUTS);
  if ((st = check_string(L, "device", who, n->device, false)) != KILN_OK ||
      (st = check_string(L, "assigned_device", who, n->assigned_device, false)) != KILN_OK ||
      (st = check_string(L, "placement_reason", who, n->placement_reason, false)) != KILN_OK)
    return st;
  if ((st = check_attrs(L, en, who, n)) != KILN_OK) return st;
  return check_schema(L, n, info, en);
}

/* ---- names -------------------------------------------------------------------- */

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* File index of the node named s, or -1. */
static int32_t index_find(const loader *L, const char *s) {
  for (uint32_t h = hash_str(s) & L->mask;; h = (h + 1) & L->mask) {
    int32_t v = L->slots[h];
    if (v == 0) return -1;
    if (strcmp(L->m->nodes[v - 1]->name, s) == 0) return v - 1;
  }
}

static kiln_status index_build(loader *L) {
  uint32_t cap = 16;
  while (cap < 2u * (uint32_t)L->n) cap *= 2;
  L->slots = kir_calloc(cap, sizeof *L->slots);
  if (!L->slots) return nomem(L);
  L->mask = cap - 1;
  for (int32_t i = 0; i < L->n; i++) {
    const char *s = L->m->nodes[i]->name;
    uint32_t h = hash_str(s) & L->mask;
    for (; L->slots[h]; h = (h + 1) & L->mask) {
      int32_t j = L->slots[h] - 1;
      char b[KIR_ESC_BUF];
      if (strcmp(L->m->nodes[j]->name, s) == 0)
        return lfail(L, KILN_ERR_GRAPH, "duplicate node name '%s' (nodes %d and %d)", nm(s, b, sizeof b),
                     j, i);
    }
    L->slots[h] = i + 1;
  }
  return KILN_OK;
}

/* Resolves every input name to a file index (CSR in in_off/in_idx). */
static kiln_status resolve_inputs(loader *L) {
  L->in_off = kir_calloc((size_t)L->n + 1, sizeof *L->in_off);
  if (!L->in_off) return nomem(L);
  for (int32_t i = 0; i < L->n; i++) L->in_off[i + 1] = L->in_off[i] + (int64_t)L->m->nodes[i]->n_inputs;
  L->in_idx = kir_calloc((size_t)L->in_off[L->n], sizeof *L->in_idx);
  if (!L->in_idx) return nomem(L);
  for (int32_t i = 0; i < L->n; i++) {
    const Kiln__Node *n = L->m->nodes[i];
    for (size_t k = 0; k < n->n_inputs; k++) {
      int32_t j = index_find(L, n->inputs[k]);
      char b1[KIR_ESC_BUF], b2[KIR_ESC_BUF];
      if (j < 0)
        return lfail(L, KILN_ERR_GRAPH, "node '%s': input %zu '%s' does not exist", nm(n->name, b1, sizeof b1),
                     k, nm(n->inputs[k], b2, sizeof b2));
      L->in_idx[L->in_off[i] + (int64_t)k] = j;
    }
  }
  return KILN_OK;
}

/* ---- topological order (Kahn, smallest file index first: stable) -------------- */

/* A node on a cycle among the nodes left with pending inputs: walking pending inputs
 * from any of them must revisit a node, and the first revisited one is on the cycle. */
static int32_t cycle_node(const loader *L, const int32_t *pending, uint8_t *seen) {
  int32_t v = 0;
  while (pending[v] == 0) v++;
  while (!seen[v]) {
    seen[v] = 1;
    for (int64_t e = L->in_off[v]; e < L->in_off[v + 1]; e++)
      if (pending[L->in_idx[e]] > 0) {
        v = L->in_idx[e];
        break;
      }
  }
  return v;
}

/* users CSR: for each node, the nodes that read it (one entry per use). */
static kiln_status build_users(loader *L, int64_t **uoff, int32_t **uidx) {
  int64_t e = L->in_off[L->n];
  *uoff = kir_calloc((size_t)L->n + 1, sizeof **uoff);
  *uidx = kir_calloc((size_t)e, sizeof **uidx);
  if (!*uoff || !*uidx) return nomem(L);
  for (int64_t k = 0; k < e; k++) (*uoff)[L->in_idx[k] + 1]++;
  for (int32_t i = 0; i < L->n; i++) (*uoff)[i + 1] += (*uoff)[i];
  int64_t *fill = kir_calloc((size_t)L->n, sizeof *fill);
  if (!fill) return nomem(L);
  for (int32_t i = 0; i < L->n; i++)
    for (int64_t k = L->in_off[i]; k < L->in_off[i + 1]; k++) {
      int32_t src = L->in_idx[k];
      (*uidx)[(*uoff)[src] + fill[src]++] = i;
    }
  kir_free(fill);
  return KILN_OK;
}

static kiln_status kahn(loader *L, int64_t *uoff, int32_t *uidx, int32_t *pending, int32_t *heap) {
  int32_t hn = 0, done = 0;
  for (int32_t i = 0; i < L->n; i++) {
    pending[i] = (int32_t)(L->in_off[i + 1] - L->in_off[i]);
    if (pending[i] == 0) kir_heap_push(heap, &hn, i);
  }
  while (hn > 0) {
    int32_t v = kir_heap_pop(heap, &hn);
    L->order[done++] = v;
    for (int64_t k = uoff[v]; k < uoff[v + 1]; k++)
      if (--pending[uidx[k]] == 0) kir_heap_push(heap, &hn, uidx[k]);
  }
  if (done == L->n) return KILN_OK;
  uint8_t *seen = kir_calloc((size_t)L->n, 1);
  if (!seen) return nomem(L);
  int32_t c = cycle_node(L, pending, seen);
  kir_free(seen);
  char b[KIR_ESC_BUF];
  return lfail(L, KILN_ERR_GRAPH, "node '%s' is on a cycle", nm(L->m->nodes[c]->name, b, sizeof b));
}

static kiln_status topo_order(loader *L) {
  int64_t *uoff = NULL;
  int32_t *uidx = NULL;
  int32_t *pending = kir_calloc((size_t)L->n + 1, sizeof *pending);
  int32_t *heap = kir_calloc((size_t)L->n + 1, sizeof *heap);
  L->order = kir_calloc((size_t)L->n + 1, sizeof *L->order);
  kiln_status st = (!pending || !heap || !L->order) ? nomem(L) : build_users(L, &uoff, &uidx);
  if (st == KILN_OK) st = kahn(L, uoff, uidx, pending, heap);
  kir_free(uoff);
  kir_free(uidx);
  kir_free(pending);
  kir_free(heap);
  return st;
}

/* ---- building ----------------------------------------------------------------- */

static kiln_status set_tensor_attr(kir_graph *ng, kir_node *node, const Kiln__Attr *a) {
  const Kiln__Tensor *m = a->t;
  kir_tensor t;
  memset(&t, 0, sizeof t);
  t.type.dtype = (kiln_dtype)m->dtype;
  t.type.rank = (int32_t)m->n_dims;
  for (size_t d = 0; d < m->n_dims; d++) t.type.dims[d] = m->dims[d];
  t.data = m->data.data;
  uint8_t *swapped = NULL;
  if (!host_is_little_endian() && m->data.len > 0) {
    swapped = kir_malloc(m->data.len);
    if (!swapped) return kir_seterr(ng, KILN_ERR_NOMEM, "out of memory");
    copy_le(swapped, m->data.data, m->data.len, kiln_dtype_size(t.type.dtype));
    t.data = swapped;
  }
  kiln_status st = kir_attr_set_tensor(ng, node, a->name, &t);
  kir_free(swapped);
  return st;
}

/* Validated attribute onto the new node (errors on ng). */
static kiln_status set_attr(kir_graph *ng, kir_node *node, const Kiln__Attr *a) {
  switch (a->value_case) {
  case KILN__ATTR__VALUE_I: return kir_attr_set_int(ng, node, a->name, a->i);
  case KILN__ATTR__VALUE_F: return kir_attr_set_float(ng, node, a->name, a->f);
  case KILN__ATTR__VALUE_S: return kir_attr_set_string(ng, node, a->name, a->s);
  case KILN__ATTR__VALUE_INTS:
    return kir_attr_set_ints(ng, node, a->name, a->ints->v, (int32_t)a->ints->n_v);
  case KILN__ATTR__VALUE_FLOATS:
    return kir_attr_set_floats(ng, node, a->name, a->floats->v, (int32_t)a->floats->n_v);
  case KILN__ATTR__VALUE_STRINGS:
    return kir_attr_set_strings(ng, node, a->name, (const char *const *)a->strings->v,
                                (int32_t)a->strings->n_v);
  case KILN__ATTR__VALUE_T: return set_tensor_attr(ng, node, a);
  case KILN__ATTR__VALUE__NOT_SET:
  default:
    break;
  }
  return kir_seterr(ng, KILN_ERR_INTERNAL, "attribute '%s' has no value after validation", a->name);
}

static kiln_status add_node(kir_graph *ng, const Kiln__Node *m, const int32_t *ids, int32_t *id) {
  kir_node *node = kir_node_add(ng, (kir_op)m->op, m->name, ids, (int32_t)m->n_inputs);
  if (!node) return ng->status != KILN_OK ? ng->status : KILN_ERR_NOMEM;
  *id = node->id;
  node->device = kir_graph_strdup(ng, m->device);
  node->assigned_device = kir_graph_strdup(ng, m->assigned_device);
  node->placement_reason = kir_graph_strdup(ng, m->placement_reason);
  if (!node->device || !node->assigned_device || !node->placement_reason)
    return kir_seterr(ng, KILN_ERR_NOMEM, "out of memory");
  for (size_t k = 0; k < m->n_attrs; k++) {
    kiln_status st = set_attr(ng, node, m->attrs[k]);
    if (st != KILN_OK) return st;
  }
  return KILN_OK;
}

/* Builds every node in topological order into ng; infers and verifies. */
static kiln_status build_graph(loader *L, kir_graph *ng) {
  size_t max_in = 1;
  for (int32_t i = 0; i < L->n; i++)
    if (L->m->nodes[i]->n_inputs > max_in) max_in = L->m->nodes[i]->n_inputs;
  int32_t *newid = kir_calloc((size_t)L->n + 1, sizeof *newid);
  int32_t *ids = kir_calloc(max_in, sizeof *ids);
  kiln_status st = (!newid || !ids) ? kir_seterr(ng, KILN_ERR_NOMEM, "out of memory while loading") : KILN_OK;
  for (int32_t k = 0; k < L->n && st == KILN_OK; k++) {
    int32_t i = L->order[k];
    for (int64_t e = L->in_off[i]; e < L->in_off[i + 1]; e++) ids[e - L->in_off[i]] = newid[L->in_idx[e]];
    st = add_node(ng, L->m->nodes[i], ids, &newid[i]);
  }
  kir_free(newid);
  kir_free(ids);
  if (st == KILN_OK) st = kir_infer_shapes(ng);
  if (st == KILN_OK) st = kir_verify(ng);
  return st;
}

static kiln_status check_header(loader *L) {
  const Kiln__Graph *m = L->m;
  if (m->format_major == 0)
    return lfail(L, KILN_ERR_FORMAT, "not a Kiln graph (no format version)");
  if (m->format_major > KIR_FORMAT_MAJOR)
    return lfail(L, KILN_ERR_VERSION, "written by format %u.x; this build reads %d.x", m->format_major,
                 KIR_FORMAT_MAJOR);
  if (m->n_nodes > KIR_MAX_NODES)
    return lfail(L, KILN_ERR_LIMIT, "%zu nodes (limit %d)", m->n_nodes, KIR_MAX_NODES);
  L->n = (int32_t)m->n_nodes;
  return KILN_OK;
}

/* Everything checked on the unpacked message, then built into a fresh graph. */
static kiln_status load_message(loader *L) {
  kiln_status st = check_header(L);
  for (int32_t i = 0; i < L->n && st == KILN_OK; i++) st = check_node(L, i);
  if (st == KILN_OK) st = index_build(L);
  if (st == KILN_OK) st = resolve_inputs(L);
  if (st == KILN_OK) st = topo_order(L);
  if (st != KILN_OK) return st;
  kir_graph *ng = kir_graph_create();
  if (!ng) return nomem(L);
  st = build_graph(L, ng);
  if (st == KILN_OK) {
    kir_graph_swap_in(L->g, ng);
    kir_clearerr(L->g);
  } else {
    kir_seterr(L->g, st, "%s%s", L->label, ng->error);
    kir_graph_destroy(ng);
  }
  return st;
}

/* ---- embedded NUL pre-scan ----------------------------------------------------
 * protobuf-c NUL-terminates strings, so a name holding a NUL byte would silently become
 * a shorter, different name. This walks the (already unpacked, so well-formed) wire
 * bytes for the string fields that become names or values. The schema nests four
 * levels (Graph > Node > Attr > Strings), so the recursion is bounded by it. */
enum { MSG_GRAPH, MSG_NODE, MSG_ATTR, MSG_STRINGS };

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t c = *(*p)++;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return true;
  }
  return false;
}

/* Which string field of a message kind, if any, this field number is. */
static const char *string_field(int kind, uint64_t field) {
  if (kind == MSG_NODE)
    return field == 1 ? "name" : field == 3 ? "input name" : field == 5 ? "device"
         : field == 6 ? "assigned_device" : field == 7 ? "placement_reason" : NULL;
  if (kind == MSG_ATTR) return field == 1 ? "attribute name" : field == 6 ? "string attribute" : NULL;
  if (kind == MSG_STRINGS) return field == 1 ? "strings attribute" : NULL;
  return NULL;
}

static int child_kind(int kind, uint64_t field) {
  if (kind == MSG_GRAPH && field == 3) return MSG_NODE;
  if (kind == MSG_NODE && field == 4) return MSG_ATTR;
  if (kind == MSG_ATTR && field == 7) return MSG_STRINGS;
  return -1;
}

/* The first string field holding a NUL (its description), or NULL. *node counts the
 * Graph's node entries seen so far. */
static const char *find_nul(int kind, const uint8_t *p, const uint8_t *end, int64_t *node) {
  while (p < end) {
    uint64_t key, v;
    if (!wire_varint(&p, end, &key)) return NULL;
    uint64_t field = key >> 3, wt = key & 7;
    if (wt == 0) {
      if (!wire_varint(&p, end, &v)) return NULL;
      continue;
    }
    if (wt == 1 || wt == 5) {
      size_t skip = wt == 1 ? 8 : 4;
      if ((size_t)(end - p) < skip) return NULL;
      p += skip;
      continue;
    }
    if (wt != 2 || !wire_varint(&p, end, &v) || v > (uint64_t)(end - p)) return NULL;
    const char *what = string_field(kind, field);
    if (what && memchr(p, 0, (size_t)v)) return what;
    int child = child_kind(kind, field);
    if (child == MSG_NODE) (*node)++;
    if (child >= 0 && (what = find_nul(child, p, p + v, node)) != NULL) return what;
    p += v;
  }
  return NULL;
}

static kiln_status check_no_nul(loader *L, const uint8_t *buf, size_t len) {
  int64_t node = 0;
  const char *what = find_nul(MSG_GRAPH, buf, buf + len, &node);
  if (!what) return KILN_OK;
  return lfail(L, KILN_ERR_FORMAT, "node %lld: %s holds a NUL byte", (long long)node - 1, what);
}

static kiln_status load_bytes(kir_graph *g, const uint8_t *buf, size_t len, const char *label) {
  loader L;
  memset(&L, 0, sizeof L);
  L.g = g;
  L.label = label;
  if (len == 0) return lfail(&L, KILN_ERR_FORMAT, "empty file");
  if ((uint64_t)len > (uint64_t)KIR_MAX_FILE_BYTES)
    return lfail(&L, KILN_ERR_LIMIT, "%zu bytes (limit %lld)", len, (long long)KIR_MAX_FILE_BYTES);
  budget_alloc b;
  memset(&b, 0, sizeof b);
  kir_pb_allocator_init(&b.pb, 8 * (uint64_t)len + KIR_PARSE_SLACK);
  ProtobufCAllocator pa = {budget_alloc_fn, budget_free_fn, &b};
  Kiln__Graph *m = kiln__graph__unpack(&pa, len, buf);
  if (!m) {
    if (b.over_budget)
      return lfail(&L, KILN_ERR_LIMIT, "unpacking needs more than %llu bytes of memory (8 x file size + 64 MiB)",
                   (unsigned long long)b.pb.budget);
    if (b.out_of_memory) return nomem(&L);
    return lfail(&L, KILN_ERR_FORMAT, "not a Kiln graph (protobuf parse failed)");
  }
  L.m = m;
  kiln_status st = check_no_nul(&L, buf, len);
  if (st == KILN_OK) st = load_message(&L);
  kir_free(L.slots);
  kir_free(L.in_off);
  kir_free(L.in_idx);
  kir_free(L.order);
  kiln__graph__free_unpacked(m, &pa);
  return st;
}

static kiln_status check_target(kir_graph *g) {
  if (g->n_nodes != 0)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "load into a graph that already has %d nodes", g->n_nodes);
  return KILN_OK;
}

kiln_status kir_graph_from_bytes(kir_graph *g, const uint8_t *buf, size_t len) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!buf && len) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_from_bytes: NULL buffer");
  kiln_status st = check_target(g);
  return st != KILN_OK ? st : load_bytes(g, buf, len, "");
}

/* Reads the whole regular file at fd (of st_size bytes) into a kir_malloc'd buffer. */
static kiln_status read_file(kir_graph *g, int fd, const char *label, uint8_t **out, size_t *len) {
  struct stat sb;
  if (fstat(fd, &sb) != 0)
    return kir_seterr(g, KILN_ERR_IO, "%scannot stat: %s", label, strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return kir_seterr(g, KILN_ERR_PATH, "%snot a regular file (%s)", label,
                      S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                      : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "a special file");
  if (sb.st_size > KIR_MAX_FILE_BYTES)
    return kir_seterr(g, KILN_ERR_LIMIT, "%s%lld bytes (limit %lld)", label, (long long)sb.st_size,
                      (long long)KIR_MAX_FILE_BYTES);
  if (sb.st_size == 0) return kir_seterr(g, KILN_ERR_FORMAT, "%sempty file", label);
  size_t n = (size_t)sb.st_size, got = 0;
  uint8_t *buf = kir_malloc(n);
  if (!buf) return kir_seterr(g, KILN_ERR_NOMEM, "%sout of memory: %zu bytes for the file", label, n);
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? errno : 0;
      kir_free(buf);
      if (e) return kir_seterr(g, KILN_ERR_IO, "%sread failed: %s", label, strerror(e));
      return kir_seterr(g, KILN_ERR_IO, "%sfile shorter than its size: read %zu of %zu bytes", label, got, n);
    }
    got += (size_t)r;
  }
  *out = buf;
  *len = n;
  return KILN_OK;
}

kiln_status kir_graph_load(kir_graph *g, const char *path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!path || !*path) return kir_seterr(g, KILN_ERR_ARGUMENT, "kir_graph_load: empty path");
  kiln_status st = check_target(g);
  if (st != KILN_OK) return st;
  char p[512], label[520];
  escape_path(path, p, sizeof p);
  snprintf(label, sizeof label, "%s: ", p);
  /* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it next. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return path_err(g, path, errno, "cannot open");
  uint8_t *buf = NULL;
  size_t len = 0;
  st = read_file(g, fd, label, &buf, &len);
  close(fd);
  if (st != KILN_OK) return st;
  st = load_bytes(g, buf, len, label);
  kir_free(buf);
  return st;
}
