/* make_corpus.c — writes the fuzz corpus: `make_corpus DIR` creates DIR/graph_load,
 * DIR/artifact, DIR/npy and DIR/codegen_names with valid seeds (a real .kiln, a real
 * artifact compiled by kcg_compile_cpu, real .npy files) and deterministic bad cases
 * (truncations, bit flips, huge lengths, amplified repeated fields, broken graphs and
 * plans). Everything but the artifact's compiled code is byte-for-byte reproducible.
 * Reproducers of fixed bugs are committed beside these as repro-*; they are not made
 * here. Depends on ir/, passes/, codegen/, libkiln_rt and protobuf-c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/kcg.h"
#include "kiln.pb-c.h"
#include "kiln_artifact.pb-c.h"
#include "passes/kps.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_runtime.h"

static const char *out_dir;
static int n_written;

static void die(const char *what, const char *detail) {
  fprintf(stderr, "make_corpus: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

/* ---------------------------------------------------------------- files -------- */

static void put(const char *sub, const char *name, const void *data, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", out_dir, sub);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) die("cannot create", path);
  snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) die("cannot write", path);
  n_written++;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
  if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) die("cannot read", path);
  fclose(f);
  *n = (size_t)len;
  return b;
}

/* Prefix truncations, single bit flips and a doubled copy of a valid input. */
static void put_mutations(const char *sub, const char *stem, const uint8_t *b, size_t n,
                          const size_t *cuts, int n_cuts, const size_t *flips, int n_flips) {
  char name[128];
  for (int i = 0; i < n_cuts; i++) {
    size_t c = cuts[i] < n ? cuts[i] : n - 1;
    snprintf(name, sizeof name, "%s-trunc-%zu", stem, c);
    put(sub, name, b, c);
  }
  uint8_t *m = malloc(2 * n);
  if (!m) die("out of memory", NULL);
  for (int i = 0; i < n_flips; i++) {
    size_t at = flips[i] % n;
    memcpy(m, b, n);
    m[at] ^= (uint8_t)(1u << (i % 8));
    snprintf(name, sizeof name, "%s-flip-%zu-%d", stem, at, i % 8);
    put(sub, name, m, n);
  }
  free(m);
}

/* ---------------------------------------------------------------- graphs ------- */

static kir_node *add(kir_graph *g, kir_op op, const char *name, const int32_t *in, int32_t n) {
  kir_node *node = kir_node_add(g, op, name, in, n);
  if (!node) die("kir_node_add", g->error);
  return node;
}

static int32_t done(kir_graph *g, kir_node *n) {
  if (kir_infer_node(g, n) != KILN_OK) die("infer", g->error);
  return n->id;
}

static int32_t cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type ty = {dt, rank, {0}};
  for (int32_t i = 0; i < rank; i++) ty.dims[i] = dims[i];
  kir_tensor *t = kir_tensor_new(&ty);
  if (!t) die("out of memory", NULL);
  for (int64_t i = 0; i < kir_type_numel(&ty); i++) {
    switch (dt) {
    case KILN_F32: ((float *)t->data)[i] = (float)i * 0.5f - 1.0f; break;
    case KILN_F64: ((double *)t->data)[i] = (double)i * 0.25 - 2.0; break;
    case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)i - 3; break;
    case KILN_I64: ((int64_t *)t->data)[i] = (int64_t)i * 1000 - 7; break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = (uint8_t)(i & 1); break;
    default: die("bad dtype", NULL);
    }
  }
  kir_node *n = add(g, KIR_OP_CONSTANT, name, NULL, 0);
  if (kir_attr_set_tensor(g, n, "value", t) != KILN_OK) die("attr", g->error);
  kir_tensor_free(t);
  return done(g, n);
}

static int32_t op1(kir_graph *g, kir_op op, const char *name, int32_t a) {
  return done(g, add(g, op, name, &a, 1));
}

static int32_t op2(kir_graph *g, kir_op op, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  return done(g, add(g, op, name, in, 2));
}

/* The MLP-like graph that also becomes the real artifact: x f32[2,3] @ w + b, relu,
 * softmax and a reduction. Outputs: "probs", "total". */
static kir_graph *mlp_graph(void) {
  kir_graph *g = kir_graph_create();
  if (!g) die("out of memory", NULL);
  const int64_t xd[2] = {2, 3}, wd[2] = {3, 4}, bd[1] = {4}, axes[1] = {1};
  kir_node *x = add(g, KIR_OP_PLACEHOLDER, "x", NULL, 0);
  kir_attr_set_int(g, x, "dtype", KILN_F32);
  kir_attr_set_ints(g, x, "shape", xd, 2);
  int32_t xi = done(g, x);
  int32_t w = cst(g, "layer/w", KILN_F32, 2, wd);
  int32_t m = op2(g, KIR_OP_MATMUL, "layer/matmul", xi, w);
  int32_t a = op2(g, KIR_OP_ADD, "layer/add", m, cst(g, "layer/b", KILN_F32, 1, bd));
  int32_t r = op1(g, KIR_OP_RELU, "layer/relu", a);
  op1(g, KIR_OP_SOFTMAX, "probs", r);
  kir_node *s = add(g, KIR_OP_REDUCE_SUM, "total", &r, 1);
  kir_attr_set_ints(g, s, "axes", axes, 1);
  done(g, s);
  return g;
}

/* A graph touching every attribute kind: transpose, reshape, clamp, random source,
 * keep_dims, integer and bool constants, a device pin. */
static kir_graph *wide_graph(void) {
  kir_graph *g = mlp_graph();
  const int64_t d23[2] = {2, 3}, shape[2] = {3, 2}, perm[2] = {1, 0}, d4[1] = {4};
  int32_t x = kir_graph_find(g, "x")->id;
  kir_node *t = add(g, KIR_OP_TRANSPOSE, "t", &x, 1);
  kir_attr_set_ints(g, t, "perm", perm, 2);
  int32_t ti = done(g, t);
  kir_node *r = add(g, KIR_OP_RESHAPE, "r\n\"*/ name", &ti, 1);
  kir_attr_set_ints(g, r, "shape", shape, 2);
  r->device = kir_graph_strdup(g, "/device:CPU:0");
  int32_t ri = done(g, r);
  kir_node *c = add(g, KIR_OP_CLAMP, "c", &ri, 1);
  kir_attr_set_float(g, c, "min", -0.5);
  kir_attr_set_float(g, c, "max", 0.5);
  done(g, c);
  kir_node *u = add(g, KIR_OP_RANDOM_UNIFORM, "u", NULL, 0);
  kir_attr_set_int(g, u, "dtype", KILN_F64);
  kir_attr_set_ints(g, u, "shape", d23, 2);
  kir_attr_set_int(g, u, "seed", 42);
  int32_t ui = done(g, u);
  kir_node *s = add(g, KIR_OP_REDUCE_MAX, "s", &ui, 1);
  kir_attr_set_int(g, s, "keep_dims", 1);
  done(g, s);
  int32_t i1 = cst(g, "ints", KILN_I64, 1, d4), i2 = cst(g, "ints2", KILN_I32, 1, d4);
  (void)i2;
  op2(g, KIR_OP_MUL, "imul", i1, i1);
  cst(g, "flags", KILN_BOOL, 1, d4);
  return g;
}

static uint8_t *graph_bytes(kir_graph *g, size_t *n) {
  uint8_t *b = NULL;
  if (kir_graph_to_bytes(g, &b, n) != KILN_OK) die("kir_graph_to_bytes", g->error);
  return b;
}

/* ---- hand-made graph messages (protobuf-c), for what the kir API refuses to build */

typedef struct gmsg {
  Kiln__Graph g;
  Kiln__Node nodes[8], *pn[8];
  char *inputs[8][2];
  Kiln__Attr attrs[8], *pa[8];
  Kiln__Ints ints[8];
  Kiln__Tensor tensors[8];
  int64_t dims[8][10];
} gmsg;

static void gmsg_init(gmsg *m, int n) {
  memset(m, 0, sizeof *m);
  kiln__graph__init(&m->g);
  m->g.format_major = 1;
  m->g.producer = "make_corpus";
  m->g.n_nodes = (size_t)n;
  m->g.nodes = m->pn;
  for (int i = 0; i < 8; i++) {
    kiln__node__init(&m->nodes[i]);
    kiln__attr__init(&m->attrs[i]);
    kiln__ints__init(&m->ints[i]);
    kiln__tensor__init(&m->tensors[i]);
    m->pn[i] = &m->nodes[i];
    m->pa[i] = &m->attrs[i];
    m->nodes[i].inputs = m->inputs[i];
  }
}

/* Node i as a placeholder f32 of the given dims. */
static void gmsg_placeholder(gmsg *m, int i, const char *name, int rank, const int64_t *dims) {
  Kiln__Node *n = &m->nodes[i];
  n->name = (char *)name;
  n->op = KIR_OP_PLACEHOLDER;
  n->n_attrs = 2;
  n->attrs = &m->pa[2 * (i % 4)];
  Kiln__Attr *a = n->attrs[0], *b = n->attrs[1];
  a->name = "dtype";
  a->value_case = KILN__ATTR__VALUE_I;
  a->i = KILN_F32;
  b->name = "shape";
  b->value_case = KILN__ATTR__VALUE_INTS;
  b->ints = &m->ints[i];
  for (int d = 0; d < rank; d++) m->dims[i][d] = dims[d];
  m->ints[i].n_v = (size_t)rank;
  m->ints[i].v = m->dims[i];
}

static void gmsg_op(gmsg *m, int i, const char *name, int op, const char *in0, const char *in1) {
  Kiln__Node *n = &m->nodes[i];
  n->name = (char *)name;
  n->op = op;
  m->inputs[i][0] = (char *)in0;
  m->inputs[i][1] = (char *)in1;
  n->n_inputs = in1 ? 2 : in0 ? 1 : 0;
}

static void put_gmsg(const char *name, const gmsg *m) {
  size_t n = kiln__graph__get_packed_size(&m->g);
  uint8_t *b = malloc(n + 1);
  if (!b) die("out of memory", NULL);
  kiln__graph__pack(&m->g, b);
  put("graph_load", name, b, n);
  free(b);
}

static void graph_messages(void) {
  const int64_t d23[2] = {2, 3}, d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t neg[2] = {2, -3}, huge[3] = {1LL << 40, 1LL << 40, 1LL << 40};
  gmsg m;
  gmsg_init(&m, 2); /* dangling input */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_op(&m, 1, "y", KIR_OP_RELU, "nope", NULL);
  put_gmsg("bad-dangling-input", &m);
  gmsg_init(&m, 3); /* cycle a -> b -> a, fed by x */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_op(&m, 1, "a", KIR_OP_ADD, "x", "b");
  gmsg_op(&m, 2, "b", KIR_OP_RELU, "a", NULL);
  put_gmsg("bad-cycle", &m);
  gmsg_init(&m, 2); /* self loop */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_op(&m, 1, "a", KIR_OP_ADD, "x", "a");
  put_gmsg("bad-self-loop", &m);
  gmsg_init(&m, 2); /* duplicate names */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_placeholder(&m, 1, "x", 2, d23);
  put_gmsg("bad-duplicate-name", &m);
  gmsg_init(&m, 2); /* wrong arity */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_op(&m, 1, "y", KIR_OP_ADD, "x", NULL);
  put_gmsg("bad-arity", &m);
  gmsg_init(&m, 2); /* unknown op number */
  gmsg_placeholder(&m, 0, "x", 2, d23);
  gmsg_op(&m, 1, "y", 9999, "x", NULL);
  put_gmsg("bad-op-number", &m);
  gmsg_init(&m, 1); /* rank above the limit */
  gmsg_placeholder(&m, 0, "x", 9, d9);
  put_gmsg("bad-rank-9", &m);
  gmsg_init(&m, 1);
  gmsg_placeholder(&m, 0, "x", 2, neg);
  put_gmsg("bad-negative-dim", &m);
  gmsg_init(&m, 1);
  gmsg_placeholder(&m, 0, "x", 3, huge);
  put_gmsg("bad-dims-overflow", &m);
  gmsg_init(&m, 2); /* empty name, empty node */
  gmsg_placeholder(&m, 0, "", 2, d23);
  put_gmsg("bad-empty-names", &m);
  gmsg_init(&m, 1);
  gmsg_placeholder(&m, 0, "x", 2, d23);
  m.g.format_major = 2;
  put_gmsg("bad-future-major", &m);
  m.g.format_major = 0;
  put_gmsg("bad-no-version", &m);
  gmsg_init(&m, 1); /* a tensor whose data disagrees with its dims, and a bool of 2 */
  Kiln__Node *c = &m.nodes[0];
  c->name = "c";
  c->op = KIR_OP_CONSTANT;
  c->n_attrs = 1;
  c->attrs = m.pa;
  m.attrs[0].name = "value";
  m.attrs[0].value_case = KILN__ATTR__VALUE_T;
  m.attrs[0].t = &m.tensors[0];
  m.tensors[0].dtype = KILN_F32;
  m.tensors[0].n_dims = 2;
  m.tensors[0].dims = (int64_t *)d23;
  uint8_t data[24] = {0, 0, 128, 63, 2};
  m.tensors[0].data.data = data;
  m.tensors[0].data.len = 20;
  put_gmsg("bad-tensor-short", &m);
  m.tensors[0].data.len = 24;
  put_gmsg("valid-constant", &m);
  m.tensors[0].dtype = KILN_BOOL;
  m.tensors[0].data.len = 6;
  put_gmsg("bad-bool-value", &m);
  m.tensors[0].dtype = 77;
  put_gmsg("bad-tensor-dtype", &m);
  m.attrs[0].value_case = KILN__ATTR__VALUE_I; /* wrong attribute kind */
  put_gmsg("bad-attr-kind", &m);
  char *long_name = malloc(KIR_MAX_NAME + 2);
  memset(long_name, 'n', KIR_MAX_NAME + 1);
  long_name[KIR_MAX_NAME + 1] = '\0';
  gmsg_init(&m, 1);
  gmsg_placeholder(&m, 0, long_name, 2, d23);
  put_gmsg("bad-name-too-long", &m);
  long_name[KIR_MAX_NAME] = '\0';
  put_gmsg("valid-name-at-limit", &m);
  free(long_name);
  gmsg_init(&m, 1); /* a name holding a NUL: packed with 'Q', then patched */
  gmsg_placeholder(&m, 0, "abQcd", 2, d23);
  size_t n = kiln__graph__get_packed_size(&m.g);
  uint8_t *b = malloc(n);
  kiln__graph__pack(&m.g, b);
  for (size_t i = 0; i + 5 <= n; i++)
    if (memcmp(b + i, "abQcd", 5) == 0) b[i + 2] = 0;
  put("graph_load", "bad-name-nul", b, n);
  free(b);
}

/* Raw wire-format cases. */
static void graph_wire(void) {
  static const uint8_t one[] = {0x08}, trunc_varint[] = {0x08, 0x80},
                       bad_wiretype[] = {0x0f, 0x01}, past_end[] = {0x08, 0x01, 0x1a, 0x7f, 0x0a},
                       huge_len[] = {0x08, 0x01, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00},
                       ten_byte_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0x01};
  put("graph_load", "bad-empty", "", 0);
  put("graph_load", "bad-one-byte", one, sizeof one);
  put("graph_load", "bad-truncated-varint", trunc_varint, sizeof trunc_varint);
  put("graph_load", "bad-wire-type", bad_wiretype, sizeof bad_wiretype);
  put("graph_load", "bad-length-past-end", past_end, sizeof past_end);
  put("graph_load", "bad-huge-length", huge_len, sizeof huge_len);
  put("graph_load", "bad-long-varint", ten_byte_varint, sizeof ten_byte_varint);
  /* Amplification: many empty repeated entries (nodes; attrs inside one node). */
  enum { REPS = 4000 };
  uint8_t *b = malloc(2 * REPS + 16);
  size_t o = 0;
  b[o++] = 0x08;
  b[o++] = 0x01;
  for (int i = 0; i < REPS; i++) b[o++] = 0x1a, b[o++] = 0x00;
  put("graph_load", "bad-many-empty-nodes", b, o);
  o = 0;
  b[o++] = 0x08;
  b[o++] = 0x01;
  b[o++] = 0x1a;
  b[o++] = 0x80 | ((2 * REPS) & 0x7f);
  b[o++] = (uint8_t)((2 * REPS) >> 7);
  for (int i = 0; i < REPS; i++) b[o++] = 0x22, b[o++] = 0x00;
  put("graph_load", "bad-many-empty-attrs", b, o);
  free(b);
}

static void graph_corpus(void) {
  kir_graph *g = wide_graph();
  size_t n = 0;
  uint8_t *b = graph_bytes(g, &n);
  put("graph_load", "valid-wide.kiln", b, n);
  const size_t cuts[] = {1, 2, 3, 7, 16, 100, n / 2, n - 1};
  const size_t flips[] = {0, 3, 5, 9, 17, 40, 77, 130, 260, 515, 1029, 2000};
  put_mutations("graph_load", "wide", b, n, cuts, 8, flips, 12);
  kir_free(b);
  kir_graph_destroy(g);
  g = mlp_graph();
  const char *roots[2] = {"probs", "total"};
  kps_context ctx = {roots, 2, NULL, 0, false, NULL};
  if (kps_run(g, NULL, &ctx) != KILN_OK) die("kps_run", g->error);
  b = graph_bytes(g, &n);
  put("graph_load", "valid-fused.kiln", b, n);
  kir_free(b);
  kir_graph_destroy(g);
  graph_messages();
  graph_wire();
}

/* ---------------------------------------------------------------- artifacts ---- */

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Recomputes the hash of table entry i, so a change in layout is what gets tested. */
static void rehash(uint8_t *f, size_t n, int i) {
  uint8_t *e = f + KART_HEADER_BYTES + i * KART_ENTRY_BYTES;
  uint64_t off = get_u64(e + 8), size = get_u64(e + 16);
  if (off <= n && size <= n - off) kart_sha256(f + off, (size_t)size, e + 24);
}

/* Container cases, on a small artifact (see small_artifact) to keep the corpus small. */
static void artifact_container(const uint8_t *a, size_t n) {
  const size_t cuts[] = {0, 1, 8, 63, 64, 120, 232, 300, n - 1};
  const size_t flips[] = {0, 8, 10, 12, 16, 30, 64, 72, 80, 100, 130, 400, 1000, n - 2};
  put_mutations("artifact", "small", a, n, cuts, 9, flips, 14);
  uint8_t *f = malloc(n + 64);
  int ns = (int)(a[12] | a[13] << 8);
  struct { const char *name; int entry; int field; uint64_t v; int rehash; } cases[] = {
      {"bad-offset-past-end", 0, 8, n + 64, 0},
      {"bad-size-huge", 0, 16, UINT64_MAX - 63, 0},
      {"bad-offset-unaligned", 1, 8, 0, 1},
      {"bad-overlap", 1, 8, 0, 1},
      {"bad-kind-unknown", 0, 0, 99, 0},
      {"bad-kind-duplicate", 1, 0, KART_SEC_PLAN, 0},
      {"bad-reserved", 0, 4, 1, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    memcpy(f, a, n);
    uint8_t *e = f + KART_HEADER_BYTES + cases[c].entry * KART_ENTRY_BYTES;
    uint64_t v = cases[c].v;
    if (c == 2) v = get_u64(e + 8) + 8;                                   /* unaligned */
    if (c == 3) v = get_u64(f + KART_HEADER_BYTES + 8);                   /* = section 0 */
    if (cases[c].field == 0 || cases[c].field == 4) put_u32(e + cases[c].field, (uint32_t)v);
    else put_u64(e + cases[c].field, v);
    if (cases[c].rehash) rehash(f, n, cases[c].entry);
    put("artifact", cases[c].name, f, n);
  }
  memcpy(f, a, n);
  f[0] = 'X';
  put("artifact", "bad-magic", f, n);
  memcpy(f, a, n);
  f[8] = KART_MAJOR + 1;
  put("artifact", "bad-future-major", f, n);
  memcpy(f, a, n);
  put_u32(f + 12, 0);
  put("artifact", "bad-no-sections", f, n);
  put_u32(f + 12, KART_MAX_SECTIONS + 1);
  put("artifact", "bad-too-many-sections", f, n);
  put_u32(f + 12, (uint32_t)ns);
  put_u64(f + 16, n + 64);
  memset(f + n, 0, 64);
  put("artifact", "bad-file-size", f, n);
  put_u64(f + 16, n);
  put("artifact", "bad-trailing-bytes", f, n + 64);
  free(f);
}

/* The plan section of the real artifact wrapped for the structure-aware mode. */
static void put_plan(const char *name, const Kiln__Rt__Plan *p) {
  size_t n = kiln__rt__plan__get_packed_size(p);
  uint8_t *b = malloc(n + 3);
  b[0] = 0x01;
  b[1] = (uint8_t)p->weights_bytes;
  b[2] = (uint8_t)(p->weights_bytes >> 8);
  kiln__rt__plan__pack(p, b + 3);
  put("artifact", name, b, n + 3);
  free(b);
}

static void artifact_plans(const uint8_t *a, size_t n) {
  kart_section s[KART_MAX_SECTIONS];
  int ns = 0;
  char err[512];
  if (kart_parse(a, n, s, &ns, err, sizeof err) != 0) die("kart_parse", err);
  const kart_section *ps = kart_find(s, ns, KART_SEC_PLAN);
  Kiln__Rt__Plan *p = kiln__rt__plan__unpack(NULL, (size_t)ps->size, ps->data);
  if (!p || p->weights_bytes > 0xffff || p->n_buffers < 2 || p->n_steps < 1) die("unexpected plan", NULL);
  put_plan("plan-real", p);
  uint32_t abi = p->abi;
  p->abi = 99;
  put_plan("plan-bad-abi", p);
  p->abi = abi;
  char *target = p->target;
  p->target = "cuda";
  put_plan("plan-bad-target", p);
  p->target = target;
  uint64_t wb = p->weights_bytes;
  p->weights_bytes = wb + 64;
  put_plan("plan-bad-weights-bytes", p);
  p->weights_bytes = wb;
  uint64_t arena = p->arena_bytes;
  p->arena_bytes = UINT64_MAX;
  put_plan("plan-bad-arena-huge", p);
  p->arena_bytes = arena;
  Kiln__Rt__Buffer *b = p->buffers[p->n_buffers - 1];
  uint64_t off = b->offset;
  b->offset = UINT64_MAX - 3;
  put_plan("plan-bad-buffer-offset", p);
  b->offset = off;
  int32_t dt = b->tensor->dtype;
  b->tensor->dtype = 9;
  put_plan("plan-bad-buffer-dtype", p);
  b->tensor->dtype = dt;
  int32_t st_out = p->steps[0]->output;
  p->steps[0]->output = (int32_t)p->n_buffers;
  put_plan("plan-bad-step-output", p);
  p->steps[0]->output = st_out;
  int32_t ob = p->output_buffers[0];
  p->output_buffers[0] = -2;
  put_plan("plan-bad-output-buffer", p);
  p->output_buffers[0] = ob;
  size_t no = p->n_outputs;
  p->n_outputs = 0;
  put_plan("plan-bad-output-count", p);
  p->n_outputs = no;
  if (p->n_outputs >= 2) {
    char *name = p->outputs[1]->name;
    p->outputs[1]->name = p->outputs[0]->name;
    put_plan("plan-bad-duplicate-output", p);
    p->outputs[1]->name = name;
  }
  kiln__rt__plan__free_unpacked(p, NULL);
  /* Amplification inside the plan: thousands of empty buffers. */
  enum { REPS = 3000 };
  uint8_t *amp = malloc(2 * REPS + 3);
  amp[0] = 0x01;
  amp[1] = amp[2] = 0;
  for (int i = 0; i < REPS; i++) amp[3 + 2 * i] = 0x3a, amp[4 + 2 * i] = 0x00;
  put("artifact", "plan-bad-many-empty-buffers", amp, 2 * REPS + 3);
  free(amp);
  static const uint8_t garbage[] = {0x01, 0x00, 0x00, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
  put("artifact", "plan-bad-huge-length", garbage, sizeof garbage);
}

/* The real artifact's plan and weights with a few bytes of "code" and a source section,
 * written by kart_write: every container check passes, dlopen fails. */
static uint8_t *small_artifact(const uint8_t *a, size_t n, const char *path, size_t *out_n) {
  kart_section s[KART_MAX_SECTIONS], w[4];
  int ns = 0;
  char err[512];
  if (kart_parse(a, n, s, &ns, err, sizeof err) != 0) die("kart_parse", err);
  static const uint8_t code[] = "\x7f" "ELF not really";
  static const uint8_t src[] = "int kiln_entry(void);\n";
  memset(w, 0, sizeof w);
  w[0] = *kart_find(s, ns, KART_SEC_PLAN);
  w[1] = *kart_find(s, ns, KART_SEC_WEIGHTS);
  w[2].kind = KART_SEC_CODE_CPU;
  w[2].data = code;
  w[2].size = sizeof code - 1;
  w[3].kind = KART_SEC_SOURCE_C;
  w[3].data = src;
  w[3].size = sizeof src - 1;
  if (kart_write(path, w, 4, err, sizeof err) != 0) die("kart_write", err);
  uint8_t *b = slurp(path, out_n);
  unlink(path);
  return b;
}

static void artifact_corpus(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/.make_corpus.kart", out_dir);
  kir_graph *g = mlp_graph();
  const char *outs[2] = {"probs", "total"};
  kps_context ctx = {outs, 2, NULL, 0, false, NULL};
  if (kps_run(g, NULL, &ctx) != KILN_OK) die("kps_run", g->error);
  kcg_options opt = {NULL, "-O1", "make_corpus", NULL};
  if (kcg_compile_cpu(g, outs, 2, &opt, path) != KILN_OK) die("kcg_compile_cpu", g->error);
  kir_graph_destroy(g);
  size_t n = 0;
  uint8_t *a = slurp(path, &n);
  unlink(path);
  put("artifact", "real.kart", a, n);
  const size_t flips[] = {n / 2}; /* the code region: a hash mismatch */
  put_mutations("artifact", "real", a, n, NULL, 0, flips, 1);
  artifact_plans(a, n);
  size_t sn = 0;
  uint8_t *small = small_artifact(a, n, path, &sn);
  put("artifact", "small.kart", small, sn);
  artifact_container(small, sn);
  free(small);
  free(a);
}

/* ---------------------------------------------------------------- .npy --------- */

/* A .npy file: magic, version, header (padded to 64 with spaces and a newline), data. */
static void put_npy(const char *name, int major, const char *dict, const void *data, size_t n,
                    long declared_hlen) {
  size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
  size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
  uint8_t *b = calloc(1, total + n + 1);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (uint8_t)major;
  b[7] = 0;
  uint64_t h = declared_hlen >= 0 ? (uint64_t)declared_hlen : hlen;
  if (major == 1) b[8] = (uint8_t)h, b[9] = (uint8_t)(h >> 8);
  else put_u32(b + 8, (uint32_t)h);
  memcpy(b + pre, dict, dl);
  memset(b + pre + dl, ' ', hlen - dl - 1);
  b[total - 1] = '\n';
  if (n) memcpy(b + total, data, n);
  put("npy", name, b, total + n);
  free(b);
}

static void npy_corpus(void) {
  float f6[6] = {1, -2, 3.5f, 0, -0.0f, 1e30f};
  double d1 = 3.25;
  int32_t i4[4] = {1, -1, 2147483647, -2147483647 - 1};
  int64_t l4[4] = {1, -1, 1LL << 62, -5};
  uint8_t b3[3] = {0, 1, 1};
  put_npy("valid-f32-2x3", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f6, 24, -1);
  put_npy("valid-f64-scalar", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &d1, 8, -1);
  put_npy("valid-i32-4", 2, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", i4, 16, -1);
  put_npy("valid-i64-2x2", 3, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", l4, 32, -1);
  put_npy("valid-bool-3", 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b3, 3, -1);
  put_npy("valid-empty-0", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }", NULL, 0, -1);
  put_npy("valid-key-order", 1, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", f6, 24, -1);
  put_npy("bad-fortran", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f6, 24, -1);
  put_npy("bad-big-endian", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f6, 24, -1);
  put_npy("bad-complex", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", f6, 24, -1);
  put_npy("bad-negative-dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", f6, 24, -1);
  put_npy("bad-dims-overflow", 1,
          "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }",
          f6, 24, -1);
  put_npy("bad-dim-huge", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
          f6, 24, -1);
  put_npy("bad-rank-9", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", f6, 4, -1);
  put_npy("bad-data-short", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f6, 20, -1);
  put_npy("bad-data-long", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f6, 24, -1);
  put_npy("bad-missing-shape", 1, "{'descr': '<f4', 'fortran_order': False, }", f6, 24, -1);
  put_npy("bad-unterminated", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", f6, 24, -1);
  put_npy("bad-unterminated-string", 1, "{'descr': '<f4", f6, 24, -1);
  put_npy("bad-duplicate-key", 1, "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", f6, 24, -1);
  put_npy("bad-not-ascii", 1, "{'descr': '<f\xc3\xa9', 'fortran_order': False, 'shape': (3,), }", f6, 12, -1);
  put_npy("bad-header-past-end", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f6, 12, 60000);
  put_npy("bad-header-len-0", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f6, 12, 0);
  put_npy("bad-header-huge-v2", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f6, 12,
          0x7fffffffL);
  put_npy("bad-version-9", 9, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f6, 12, -1);
  put_npy("bad-shape-garbage", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,3), }", f6, 24, -1);
  put_npy("bad-shape-nested", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': ((2, 3)), }", f6, 24, -1);
  static const uint8_t magic_only[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  put("npy", "bad-magic-only", magic_only, sizeof magic_only);
  put("npy", "bad-empty", "", 0);
  put("npy", "bad-magic", "\x93NUMPZ\x01\x00\x10\x00{}", 12);
}

/* ---------------------------------------------------------------- codegen names */

static void put_names(const char *name, uint8_t sel, const char *const *strs, int n) {
  uint8_t b[8192];
  size_t o = 0;
  b[o++] = sel;
  for (int i = 0; i < n; i++) {
    size_t l = strlen(strs[i]);
    if (o + l + 1 > sizeof b) die("name seed too long", name);
    memcpy(b + o, strs[i], l);
    o += l;
    if (i + 1 < n) b[o++] = 0;
  }
  put("codegen_names", name, b, o);
}

static void codegen_corpus(void) {
  static const char *const seeds[][3] = {
      {"*/", "/*", "cpu:0"},          {"a\nb", "x */ int y; /*", "*/"},
      {"back\\", "q\"uote", "'"},     {"#include <stdio.h>", "int", "return"},
      {"?\?/", "?\?=define", "/device:GPU:0"}, {"//", "a\\\n", "cuda:1"},
      {"\xff\xfe", "\r\t\v\f", "CPU"},  {"a-b", "a_b", "a.b"},
      {"%s%n", "\\x41", "cpu:0"},     {"n1", "n2", "n3"},
      {"k0_add", "kiln_entry", "main"}, {"\"", "*", "/"},
  };
  char name[64];
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    snprintf(name, sizeof name, "names-%02zu", i);
    /* Three names on nodes (i % 8).. and the device. */
    put_names(name, (uint8_t)(2 + 3 * (i % 8)), seeds[i], 3);
  }
  char *longn = malloc(5001);
  memset(longn, 'A', 5000);
  longn[5000] = '\0';
  const char *lg[2] = {longn, "cpu:0"};
  put_names("names-too-long", 0, lg, 2);
  longn[KIR_MAX_NAME] = '\0';
  memcpy(longn + 60, "*/", 2);
  put_names("names-at-limit", 3 * 5, lg, 2);
  free(longn);
  const char *one[1] = {"x"};
  put_names("names-one", 0, one, 1);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  out_dir = argv[1];
  if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) die("cannot create", out_dir);
  graph_corpus();
  artifact_corpus();
  npy_corpus();
  codegen_corpus();
  if (kir_alloc_live() != 0) die("leak in the compiler side", NULL);
  printf("make_corpus: %d files in %s\n", n_written, out_dir);
  return 0;
}
