/* test_serialize.c — .kiln (protobuf) save/load: exact round trips, and every class of
 * bad input refused with its own status, a message naming the thing, an empty graph,
 * no leak and no temp file. Bad files come from a small protobuf writer below, written
 * independently of protobuf-c so the two check each other. */
#include "tests/kt.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ================================================================ wire writer ==== */

typedef struct pb {
  uint8_t *d;
  size_t n, cap;
} pb;

static void pb_put(pb *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n) cap *= 2;
    b->d = realloc(b->d, cap);
    assert_non_null(b->d);
    b->cap = cap;
  }
  if (n) memcpy(b->d + b->n, p, n);
  b->n += n;
}

static void pb_varint(pb *b, uint64_t v) {
  uint8_t c[10];
  int k = 0;
  do {
    c[k] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) c[k] |= 0x80;
    k++;
  } while (v);
  pb_put(b, c, (size_t)k);
}

static void pb_key(pb *b, int field, int wt) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wt); }
static void pb_int(pb *b, int field, int64_t v) { pb_key(b, field, 0); pb_varint(b, (uint64_t)v); }
static void pb_f64(pb *b, int field, double v) { pb_key(b, field, 1); pb_put(b, &v, 8); }
static void pb_bytes(pb *b, int field, const void *p, size_t n) {
  pb_key(b, field, 2);
  pb_varint(b, n);
  pb_put(b, p, n);
}
static void pb_str(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
/* Appends sub as a length-delimited field and frees it. */
static void pb_sub(pb *b, int field, pb *sub) {
  pb_bytes(b, field, sub->d, sub->n);
  free(sub->d);
  memset(sub, 0, sizeof *sub);
}

/* Kiln messages (field numbers of ir/kiln.proto). */
static pb node_new(const char *name, int op) {
  pb n = {0};
  pb_str(&n, 1, name);
  pb_int(&n, 2, op);
  return n;
}
static void node_input(pb *n, const char *in) { pb_str(n, 3, in); }
static void node_attr(pb *n, pb *attr) { pb_sub(n, 4, attr); }
static pb attr_new(const char *name) {
  pb a = {0};
  pb_str(&a, 1, name);
  return a;
}
static void attr_int(pb *n, const char *name, int64_t v) {
  pb a = attr_new(name);
  pb_int(&a, 2, v);
  node_attr(n, &a);
}
static void attr_float(pb *n, const char *name, double v) {
  pb a = attr_new(name);
  pb_f64(&a, 3, v);
  node_attr(n, &a);
}
static void attr_ints(pb *n, const char *name, const int64_t *v, int k) {
  pb a = attr_new(name), ints = {0}, packed = {0};
  for (int i = 0; i < k; i++) pb_varint(&packed, (uint64_t)v[i]);
  pb_sub(&ints, 1, &packed);
  pb_sub(&a, 4, &ints);
  node_attr(n, &a);
}
static void attr_tensor(pb *n, const char *name, int dtype, const int64_t *dims, int rank,
                        const void *data, size_t len) {
  pb a = attr_new(name), t = {0}, packed = {0};
  pb_int(&t, 1, dtype);
  for (int i = 0; i < rank; i++) pb_varint(&packed, (uint64_t)dims[i]);
  if (rank) pb_sub(&t, 2, &packed);
  if (len) pb_bytes(&t, 3, data, len);
  pb_sub(&a, 8, &t);
  node_attr(n, &a);
}
static pb graph_new(uint32_t major) {
  pb g = {0};
  if (major) pb_int(&g, 1, major);
  pb_str(&g, 4, "test writer");
  return g;
}
static void graph_node(pb *g, pb *node) { pb_sub(g, 3, node); }

/* placeholder NAME: f32 of the given dims. */
static pb placeholder(const char *name, const int64_t *dims, int rank) {
  pb n = node_new(name, KIR_OP_PLACEHOLDER);
  attr_int(&n, "dtype", KILN_F32);
  attr_ints(&n, "shape", dims, rank);
  return n;
}

/* x: f32[2]; c: constant f32[2]; y = add(x, c). Every bad case below edits one thing
 * of this valid twin. */
static pb valid_graph(void) {
  static const int64_t two[] = {2};
  static const float cv[] = {1.5f, -2.0f};
  pb g = graph_new(1), x = placeholder("x", two, 1), c = node_new("c", KIR_OP_CONSTANT);
  attr_tensor(&c, "value", KILN_F32, two, 1, cv, sizeof cv);
  pb y = node_new("y", KIR_OP_ADD);
  node_input(&y, "x");
  node_input(&y, "c");
  graph_node(&g, &x);
  graph_node(&g, &c);
  graph_node(&g, &y);
  return g;
}

/* ================================================================ helpers ======== */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Time limits for bad inputs; KILN_TEST_SLOW=1 (valgrind, sanitizers) scales them. */
static double time_limit(double s) {
  const char *e = getenv("KILN_TEST_SLOW");
  return e && *e && *e != '0' ? s * 100 : s;
}

/* Loads bytes; checks status, message, emptiness on error, speed; no leak. */
static void expect_bytes(const void *buf, size_t len, kiln_status want, const char *needle) {
  long base = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  double t0 = now_s();
  kiln_status st = kir_graph_from_bytes(g, buf, len);
  double dt = now_s() - t0;
  if (st != want || (needle && !strstr(g->error, needle)))
    print_error("got %s \"%s\", want %s with \"%s\"\n", kiln_status_name(st), g->error,
                kiln_status_name(want), needle ? needle : "");
  assert_int_equal(st, want);
  if (needle) assert_non_null(strstr(g->error, needle));
  if (st != KILN_OK) assert_int_equal(g->n_nodes, 0);
  assert_true(dt < time_limit(0.5));
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), base);
}

static void expect_pb(pb *b, kiln_status want, const char *needle) {
  expect_bytes(b->d, b->n, want, needle);
  free(b->d);
  memset(b, 0, sizeof *b);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (n) assert_int_equal(fwrite(p, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static uint8_t *read_whole(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(sz ? (size_t)sz : 1);
  assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  *n = (size_t)sz;
  return b;
}

static void expect_file(const char *path, kiln_status want, const char *needle) {
  long base = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  double t0 = now_s();
  kiln_status st = kir_graph_load(g, path);
  double dt = now_s() - t0;
  if (st != want || !strstr(g->error, needle))
    print_error("got %s \"%s\", want %s with \"%s\"\n", kiln_status_name(st), g->error,
                kiln_status_name(want), needle);
  assert_int_equal(st, want);
  assert_non_null(strstr(g->error, needle));
  assert_int_equal(g->n_nodes, 0);
  assert_true(dt < time_limit(0.5));
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), base);
}

/* Entries of dir whose name contains part. */
static int count_entries(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, part)) n++;
  closedir(d);
  return n;
}

static char *print_graph(const kir_graph *g) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  assert_non_null(f);
  kir_graph_print(g, f);
  fclose(f);
  return s;
}

/* ================================================================ a full graph === */

static kir_node *add_node(kir_graph *g, kir_op op, const char *name, const int32_t *in, int n) {
  kir_node *node = kir_node_add(g, op, name, in, n);
  if (!node) print_error("%s\n", g->error);
  assert_non_null(node);
  return node;
}

static kir_node *add_placeholder(kir_graph *g, const char *name, const int64_t *dims, int rank) {
  kir_node *n = add_node(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", KILN_F32), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "shape", dims, rank), KILN_OK);
  return n;
}

static void add_constant(kir_graph *g, const char *name, kiln_dtype dt, const int64_t *dims, int rank) {
  kir_type t = {dt, rank, {0}};
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *v = kir_tensor_new(&t);
  assert_non_null(v);
  kt_fill(v, (uint64_t)dt * 31 + (uint64_t)rank, -100, 100);
  kir_node *n = add_node(g, KIR_OP_CONSTANT, name, NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", v), KILN_OK);
  kir_tensor_free(v);
}

/* Every attribute kind an op schema uses (int, float, ints, floats, strings, tensor),
 * a constant of every dtype, a scalar and an empty tensor, and placement fields. */
static kir_graph *full_graph(void) {
  kir_graph *g = kir_graph_create();
  static const int64_t d23[] = {2, 3}, d34[] = {3, 4}, d3[] = {3}, d4[] = {4}, d2[] = {2}, d5[] = {5},
                       d0[] = {0};
  add_placeholder(g, "x", d23, 2);                              /* 0 */
  add_placeholder(g, "w", d34, 2);                              /* 1 */
  add_constant(g, "c_f32", KILN_F32, d23, 2);                   /* 2 */
  add_constant(g, "c_f64", KILN_F64, d3, 1);
  add_constant(g, "c_i32", KILN_I32, d4, 1);
  add_constant(g, "c_i64", KILN_I64, d2, 1);
  add_constant(g, "c_bool", KILN_BOOL, d5, 1);
  add_constant(g, "c_scalar", KILN_F32, NULL, 0);
  add_constant(g, "c_empty", KILN_F32, d0, 1);
  int32_t xw[] = {0, 1};
  kir_node *mm = add_node(g, KIR_OP_MATMUL, "layer/mm", xw, 2);
  assert_int_equal(kir_attr_set_int(g, mm, "transpose_b", 0), KILN_OK);
  int32_t in_mm[] = {mm->id};
  kir_node *cl = add_node(g, KIR_OP_CLAMP, "layer/clamp", in_mm, 1);
  assert_int_equal(kir_attr_set_float(g, cl, "min", -1.0), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, cl, "max", 2.5), KILN_OK);
  int32_t in_cl[] = {cl->id};
  kir_node *rs = add_node(g, KIR_OP_REDUCE_SUM, "layer/sum", in_cl, 1);
  static const int64_t axes[] = {-1};
  assert_int_equal(kir_attr_set_ints(g, rs, "axes", axes, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, rs, "keep_dims", 1), KILN_OK);
  kir_node *fm = add_node(g, KIR_OP_FUSED_MATMUL, "fused \"mm\"\n", xw, 2);
  static const int64_t ep[] = {KIR_OP_RELU}, operand[] = {-1}, swap[] = {0};
  const double cmin[] = {NAN}, cmax[] = {NAN};
  const char *from[] = {"layer/mm", "layer/relu"};
  assert_int_equal(kir_attr_set_ints(g, fm, "epilogue", ep, 1), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, fm, "operand", operand, 1), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, fm, "swap", swap, 1), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, fm, "clamp_min", cmin, 1), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, fm, "clamp_max", cmax, 1), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, fm, "fused_from", from, 2), KILN_OK);
  int32_t xc[] = {0, 2};
  kir_node *a = add_node(g, KIR_OP_ADD, "placed/add", xc, 2);
  a->device = kir_graph_strdup(g, "cpu:0");
  a->assigned_device = kir_graph_strdup(g, "cpu:0");
  a->placement_reason = kir_graph_strdup(g, "pinned by scope");
  kir_node *rn = add_node(g, KIR_OP_RANDOM_NORMAL, "noise", NULL, 0);
  assert_int_equal(kir_attr_set_int(g, rn, "dtype", KILN_F64), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, rn, "shape", d3, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, rn, "seed", 7), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, rn, "stddev", 2.0), KILN_OK);
  int32_t grp[] = {rs->id, fm->id};
  add_node(g, KIR_OP_GROUP, "all", grp, 2);
  kiln_status st = kir_infer_shapes(g);
  if (st != KILN_OK) print_error("%s\n", g->error);
  assert_int_equal(st, KILN_OK);
  return g;
}

static void full_graph_bytes(uint8_t **buf, size_t *len) {
  kir_graph *g = full_graph();
  kiln_status st = kir_graph_to_bytes(g, buf, len);
  if (st != KILN_OK) print_error("%s\n", g->error);
  assert_int_equal(st, KILN_OK);
  kir_graph_destroy(g);
}

/* ================================================================ round trips ==== */

static void test_round_trip_exact(void **state) {
  (void)state;
  long base = kir_alloc_live();
  kir_graph *g = full_graph();
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  assert_int_equal(kir_graph_to_bytes(g, &b1, &n1), KILN_OK);
  const char *path = kt_path("round.kiln");
  assert_int_equal(kir_graph_save(g, path), KILN_OK);
  size_t nf = 0;
  uint8_t *bf = read_whole(path, &nf);
  assert_int_equal(nf, n1);
  assert_memory_equal(bf, b1, n1);
  free(bf);

  kir_graph *h = kir_graph_create();
  kiln_status st = kir_graph_load(h, path);
  if (st != KILN_OK) print_error("%s\n", h->error);
  assert_int_equal(st, KILN_OK);
  assert_int_equal(h->n_nodes, g->n_nodes);
  assert_int_equal(kir_graph_to_bytes(h, &b2, &n2), KILN_OK);
  assert_int_equal(n2, n1);
  assert_memory_equal(b2, b1, n1);

  char *p1 = print_graph(g), *p2 = print_graph(h);
  assert_string_equal(p1, p2);
  free(p1);
  free(p2);
  /* Spot checks that values, not just bytes, survived. */
  const kir_node *cb = kir_graph_find(h, "c_bool");
  assert_non_null(cb);
  assert_int_equal(kir_attr_tensor(cb, "value")->type.dtype, KILN_BOOL);
  const kir_node *cs = kir_graph_find(h, "c_scalar");
  assert_int_equal(kir_attr_tensor(cs, "value")->type.rank, 0);
  assert_float_equal(kir_tensor_get_f(kir_attr_tensor(cs, "value"), 0),
                     kir_tensor_get_f(kir_attr_tensor(kir_graph_find(g, "c_scalar"), "value"), 0), 0);
  int32_t k = 0;
  const double *cmin = kir_attr_floats(kir_graph_find(h, "fused \"mm\"\n"), "clamp_min", &k);
  assert_int_equal(k, 1);
  assert_true(isnan(cmin[0]));
  kir_free(b1);
  kir_free(b2);
  kir_graph_destroy(g);
  kir_graph_destroy(h);
  assert_int_equal(kir_alloc_live(), base);
}

static void test_load_preserves_placement(void **state) {
  (void)state;
  kir_graph *g = full_graph();
  uint8_t *b = NULL;
  size_t n = 0;
  assert_int_equal(kir_graph_to_bytes(g, &b, &n), KILN_OK);
  kir_graph *h = kir_graph_create();
  assert_int_equal(kir_graph_from_bytes(h, b, n), KILN_OK);
  const kir_node *a = kir_graph_find(h, "placed/add");
  assert_non_null(a);
  assert_string_equal(a->device, "cpu:0");
  assert_string_equal(a->assigned_device, "cpu:0");
  assert_string_equal(a->placement_reason, "pinned by scope");
  const kir_node *x = kir_graph_find(h, "x");
  assert_string_equal(x->device, "");
  assert_string_equal(x->placement_reason, "");
  kir_free(b);
  kir_graph_destroy(g);
  kir_graph_destroy(h);
}

/* The valid twin written by the test's own wire writer loads; nodes in any file order
 * come out in topological order. */
static void test_valid_twin_and_any_order(void **state) {
  (void)state;
  pb g = valid_graph();
  expect_pb(&g, KILN_OK, NULL);

  static const int64_t two[] = {2};
  static const float cv[] = {1.5f, -2.0f};
  pb r = graph_new(1), y = node_new("y", KIR_OP_ADD), c = node_new("c", KIR_OP_CONSTANT);
  node_input(&y, "x");
  node_input(&y, "c");
  attr_tensor(&c, "value", KILN_F32, two, 1, cv, sizeof cv);
  pb x = placeholder("x", two, 1);
  graph_node(&r, &y);
  graph_node(&r, &c);
  graph_node(&r, &x);
  kir_graph *h = kir_graph_create();
  assert_int_equal(kir_graph_from_bytes(h, r.d, r.n), KILN_OK);
  assert_int_equal(h->n_nodes, 3);
  assert_string_equal(h->nodes[2]->name, "y");
  assert_int_equal(kir_verify(h), KILN_OK);
  /* Stable: ties keep file order, so c (file index 1) precedes x (index 2). */
  assert_string_equal(h->nodes[0]->name, "c");
  assert_string_equal(h->nodes[1]->name, "x");
  kir_graph_destroy(h);
  free(r.d);

  /* Loading into a graph that already has nodes is refused. */
  pb v = valid_graph();
  kir_graph *full = full_graph();
  int32_t before = full->n_nodes;
  assert_int_equal(kir_graph_from_bytes(full, v.d, v.n), KILN_ERR_ARGUMENT);
  assert_int_equal(full->n_nodes, before);
  kir_graph_destroy(full);
  free(v.d);
}

/* ================================================================ files ========== */

static void test_bad_paths(void **state) {
  (void)state;
  expect_file(kt_path("does-not-exist.kiln"), KILN_ERR_PATH, "does-not-exist.kiln");
  const char *dir = kt_path("a-directory");
  mkdir(dir, 0700);
  expect_file(dir, KILN_ERR_PATH, "directory");
  const char *fifo = kt_path("a-fifo");
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  expect_file(fifo, KILN_ERR_PATH, "FIFO");
  unlink(fifo);
  expect_file("/dev/null", KILN_ERR_PATH, "device");
  const char *empty = kt_path("empty.kiln");
  write_file(empty, "", 0);
  expect_file(empty, KILN_ERR_FORMAT, "empty.kiln: empty file");
  const char *one = kt_path("one.kiln");
  write_file(one, "\x08", 1);
  expect_file(one, KILN_ERR_FORMAT, "one.kiln: not a Kiln graph");
  expect_bytes("\x08", 1, KILN_ERR_FORMAT, "protobuf parse failed");
  expect_bytes("", 0, KILN_ERR_FORMAT, "empty");
}

/* Every prefix of a valid file: no crash, no leak; anything accepted must verify. */
static void test_every_truncation(void **state) {
  (void)state;
  uint8_t *buf = NULL;
  size_t len = 0;
  full_graph_bytes(&buf, &len);
  long base = kir_alloc_live();
  int refused = 0;
  for (size_t k = 0; k < len; k++) {
    kir_graph *g = kir_graph_create();
    kiln_status st = kir_graph_from_bytes(g, buf, k);
    if (st == KILN_OK) {
      assert_int_equal(kir_verify(g), KILN_OK);
    } else {
      assert_int_equal(g->n_nodes, 0);
      assert_true(g->error[0] != '\0');
      refused++;
    }
    kir_graph_destroy(g);
  }
  assert_int_equal(kir_alloc_live(), base);
  assert_true(refused > (int)len / 2);
  kir_free(buf);
}

static void test_garbage(void **state) {
  (void)state;
  size_t n = (size_t)1 << 20;
  uint8_t *b = malloc(n);
  uint64_t s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    b[i] = (uint8_t)(s >> 56);
  }
  const char *path = kt_path("garbage.kiln");
  write_file(path, b, n);
  expect_file(path, KILN_ERR_FORMAT, "garbage.kiln: not a Kiln graph (protobuf parse failed)");
  memset(b, 0xff, n);
  expect_bytes(b, n, KILN_ERR_FORMAT, "protobuf parse failed");
  /* Valid wire, wrong message: a length-delimited field 3 whose bytes are not a Node. */
  pb g = graph_new(1);
  pb_bytes(&g, 3, "\xff\xff", 2);
  expect_pb(&g, KILN_ERR_FORMAT, "protobuf parse failed");
  /* A length past the end. */
  pb t = graph_new(1);
  pb_key(&t, 3, 2);
  pb_varint(&t, 1000);
  expect_pb(&t, KILN_ERR_FORMAT, "protobuf parse failed");
  free(b);
}

/* Millions of empty repeated entries: the unpack budget refuses them, quickly. */
static void test_amplification(void **state) {
  (void)state;
  size_t n = (size_t)4 << 20;
  uint8_t *b = malloc(n);
  b[0] = 0x08; /* format_major = 1 */
  b[1] = 0x01;
  for (size_t i = 2; i < n; i += 2) {
    b[i] = 0x1a; /* field 3 (nodes), length-delimited, empty */
    b[i + 1] = 0x00;
  }
  long base = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  double t0 = now_s();
  assert_int_equal(kir_graph_from_bytes(g, b, n), KILN_ERR_LIMIT);
  assert_true(now_s() - t0 < time_limit(1.0));
  assert_non_null(strstr(g->error, "8 x file size"));
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), base);
  /* 256 KiB of them fit the budget and are refused by validation (first node unnamed). */
  expect_bytes(b, (size_t)256 << 10, KILN_ERR_FORMAT, "node 0: empty name");
  free(b);
}

/* ================================================================ header, graph == */

static void test_versions(void **state) {
  (void)state;
  pb g = valid_graph();
  pb_int(&g, 1, 2); /* last value wins: format_major 2 */
  expect_pb(&g, KILN_ERR_VERSION, "written by format 2.x; this build reads 1.x");
  pb m = valid_graph();
  pb_int(&m, 1, 0);
  expect_pb(&m, KILN_ERR_FORMAT, "no format version");
  pb z = graph_new(0);
  expect_pb(&z, KILN_ERR_FORMAT, "no format version");
  pb minor = valid_graph();
  pb_int(&minor, 2, 9); /* a newer minor version of the same major still loads */
  expect_pb(&minor, KILN_OK, NULL);
}

static void test_unknown_op(void **state) {
  (void)state;
  pb g = valid_graph(), n = node_new("strange", 99);
  graph_node(&g, &n);
  expect_pb(&g, KILN_ERR_UNSUPPORTED, "node 'strange': unknown op 99");
  pb z = valid_graph(), m = node_new("zero", 0);
  graph_node(&z, &m);
  expect_pb(&z, KILN_ERR_FORMAT, "node 'zero': unknown op 0");
}

static void test_dangling_cycle_duplicate(void **state) {
  (void)state;
  pb g = valid_graph(), n = node_new("z", KIR_OP_ADD);
  node_input(&n, "y");
  node_input(&n, "nope");
  graph_node(&g, &n);
  expect_pb(&g, KILN_ERR_GRAPH, "node 'z': input 1 'nope' does not exist");

  pb c = valid_graph(), a = node_new("a", KIR_OP_IDENTITY), b = node_new("b", KIR_OP_IDENTITY);
  node_input(&a, "b");
  node_input(&b, "a");
  graph_node(&c, &a);
  graph_node(&c, &b);
  expect_pb(&c, KILN_ERR_GRAPH, "on a cycle");

  /* A node downstream of a cycle is not named; one on it is. */
  pb d = valid_graph(), p = node_new("p", KIR_OP_IDENTITY), q = node_new("q", KIR_OP_IDENTITY);
  pb r = node_new("r", KIR_OP_IDENTITY);
  node_input(&p, "q");
  node_input(&q, "r");
  node_input(&r, "q");
  graph_node(&d, &p);
  graph_node(&d, &q);
  graph_node(&d, &r);
  kir_graph *h = kir_graph_create();
  assert_int_equal(kir_graph_from_bytes(h, d.d, d.n), KILN_ERR_GRAPH);
  assert_null(strstr(h->error, "'p'"));
  assert_true(strstr(h->error, "'q' is on a cycle") || strstr(h->error, "'r' is on a cycle"));
  kir_graph_destroy(h);
  free(d.d);

  pb s = valid_graph(), self = node_new("self", KIR_OP_IDENTITY);
  node_input(&self, "self");
  graph_node(&s, &self);
  expect_pb(&s, KILN_ERR_GRAPH, "node 'self' is on a cycle");

  pb u = valid_graph(), dup = node_new("x", KIR_OP_IDENTITY);
  node_input(&dup, "y");
  graph_node(&u, &dup);
  expect_pb(&u, KILN_ERR_GRAPH, "duplicate node name 'x' (nodes 0 and 3)");

  pb e = valid_graph(), unnamed = node_new("", KIR_OP_NO_OP);
  graph_node(&e, &unnamed);
  expect_pb(&e, KILN_ERR_FORMAT, "node 3: empty name");
}

/* A graph of one constant 'k' whose value tensor is given on the wire. */
static void expect_tensor(int dtype, const int64_t *dims, int rank, const void *data, size_t len,
                          kiln_status want, const char *needle) {
  pb g = graph_new(1), c = node_new("k", KIR_OP_CONSTANT);
  attr_tensor(&c, "value", dtype, dims, rank, data, len);
  graph_node(&g, &c);
  expect_pb(&g, want, needle);
}

static void test_tensors(void **state) {
  (void)state;
  static const int64_t two[] = {2}, neg[] = {-1, 2}, big[] = {(int64_t)1 << 40, (int64_t)1 << 40},
                       nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, eight[] = {1, 1, 1, 1, 1, 1, 1, 2};
  const float f[2] = {1, 2};
  expect_tensor(KILN_F32, two, 1, f, 8, KILN_OK, NULL);
  expect_tensor(KILN_F32, two, 1, f, 4, KILN_ERR_FORMAT,
                "node 'k': attribute 'value': dtype and dims declare 8 bytes, data holds 4");
  expect_tensor(KILN_F32, NULL, 0, f, 8, KILN_ERR_FORMAT, "declare 4 bytes, data holds 8");
  expect_tensor(KILN_F32, neg, 2, f, 8, KILN_ERR_FORMAT, "negative dim -1 at axis 0");
  expect_tensor(KILN_F32, big, 2, f, 8, KILN_ERR_OVERFLOW, "node 'k': attribute 'value': element count overflows");
  expect_tensor(KILN_F32, nine, 9, f, 4, KILN_ERR_LIMIT, "rank 9 (limit 8)");
  expect_tensor(KILN_F32, eight, 8, f, 8, KILN_OK, NULL);
  expect_tensor(14, two, 1, f, 8, KILN_ERR_UNSUPPORTED, "unknown dtype 14");
  expect_tensor(0, two, 1, f, 8, KILN_ERR_FORMAT, "unknown dtype 0");
  expect_tensor(-3, two, 1, f, 8, KILN_ERR_FORMAT, "unknown dtype -3");
  static const int64_t huge[] = {(int64_t)1 << 31, 3};
  expect_tensor(KILN_F32, huge, 2, f, 8, KILN_ERR_LIMIT, "tensor of 25769803776 bytes");
  expect_tensor(KILN_I64, (const int64_t[]){(int64_t)1 << 61}, 1, f, 8, KILN_ERR_OVERFLOW, "byte size overflows");
  const uint8_t good[3] = {0, 1, 1}, bad[3] = {0, 2, 1};
  static const int64_t three[] = {3};
  expect_tensor(KILN_BOOL, three, 1, good, 3, KILN_OK, NULL);
  expect_tensor(KILN_BOOL, three, 1, bad, 3, KILN_ERR_FORMAT, "bool element 1 is 2, not 0 or 1");
  static const int64_t zero[] = {0, 5};
  expect_tensor(KILN_F64, zero, 2, NULL, 0, KILN_OK, NULL);
}

static void test_attributes(void **state) {
  (void)state;
  static const int64_t two[] = {2};
  pb g = graph_new(1), p = node_new("p", KIR_OP_PLACEHOLDER);
  attr_float(&p, "dtype", 1.0);
  attr_ints(&p, "shape", two, 1);
  graph_node(&g, &p);
  expect_pb(&g, KILN_ERR_GRAPH, "node 'p': attribute 'dtype' is float; op placeholder wants int");

  pb u = valid_graph(), a = node_new("z", KIR_OP_RELU);
  node_input(&a, "y");
  attr_int(&a, "foo", 1);
  graph_node(&u, &a);
  expect_pb(&u, KILN_ERR_GRAPH, "node 'z': unknown attribute 'foo' for op relu");

  pb e = valid_graph(), b = node_new("z", KIR_OP_CLAMP), none = attr_new("min");
  node_input(&b, "y");
  node_attr(&b, &none);
  graph_node(&e, &b);
  expect_pb(&e, KILN_ERR_FORMAT, "node 'z': attribute 'min' has no value");

  pb m = graph_new(1), c = node_new("c", KIR_OP_CONSTANT);
  graph_node(&m, &c);
  expect_pb(&m, KILN_ERR_GRAPH, "node 'c': missing attribute 'value'");

  pb d2 = valid_graph(), cl2 = node_new("z", KIR_OP_CLAMP);
  node_input(&cl2, "y");
  attr_float(&cl2, "min", 0);
  attr_float(&cl2, "max", 1);
  attr_float(&cl2, "min", 2);
  graph_node(&d2, &cl2);
  expect_pb(&d2, KILN_ERR_GRAPH, "node 'z': duplicate attribute 'min'");

  /* Unsorted but unique attributes are fine (sorted on load). */
  pb o = valid_graph(), cl3 = node_new("z", KIR_OP_CLAMP);
  node_input(&cl3, "y");
  attr_float(&cl3, "min", 0);
  attr_float(&cl3, "max", 1);
  graph_node(&o, &cl3);
  expect_pb(&o, KILN_OK, NULL);

  pb s = valid_graph(), n = node_new("z", KIR_OP_RELU), sa = attr_new("");
  node_input(&n, "y");
  pb_int(&sa, 2, 1);
  node_attr(&n, &sa);
  graph_node(&s, &n);
  expect_pb(&s, KILN_ERR_FORMAT, "node 'z': empty attribute name");
}

static void test_name_limits(void **state) {
  (void)state;
  char *name = malloc(KIR_MAX_NAME + 2);
  memset(name, 'n', KIR_MAX_NAME + 1);
  name[KIR_MAX_NAME + 1] = '\0';
  pb g = valid_graph(), n = node_new(name, KIR_OP_RELU);
  node_input(&n, "y");
  graph_node(&g, &n);
  expect_pb(&g, KILN_ERR_LIMIT, "is 4097 bytes (limit 4096)");
  name[KIR_MAX_NAME] = '\0';
  pb v = valid_graph(), m = node_new(name, KIR_OP_RELU);
  node_input(&m, "y");
  graph_node(&v, &m);
  expect_pb(&v, KILN_OK, NULL);
  /* An input name past the limit just does not exist. */
  pb w = valid_graph(), k = node_new("z", KIR_OP_RELU);
  memset(name, 'q', KIR_MAX_NAME);
  node_input(&k, name);
  graph_node(&w, &k);
  expect_pb(&w, KILN_ERR_GRAPH, "input 0 'qqqq");
  free(name);
  /* Model strings are escaped in messages. */
  pb x = valid_graph(), q = node_new("bad\n'name", KIR_OP_RELU);
  node_input(&q, "missing\x01");
  graph_node(&x, &q);
  expect_pb(&x, KILN_ERR_GRAPH, "node 'bad\\x0A\\x27name': input 0 'missing\\x01' does not exist");
  /* Embedded NUL: "x\0evil" would otherwise load as a second node named "x". */
  pb z = valid_graph(), nul = {0};
  pb_bytes(&nul, 1, "x\0evil", 6);
  pb_int(&nul, 2, KIR_OP_NO_OP);
  graph_node(&z, &nul);
  expect_pb(&z, KILN_ERR_FORMAT, "node 3: name holds a NUL byte");
  pb zi = valid_graph(), in = node_new("z", KIR_OP_RELU);
  pb_bytes(&in, 3, "y\0", 2);
  graph_node(&zi, &in);
  expect_pb(&zi, KILN_ERR_FORMAT, "node 3: input name holds a NUL byte");
  pb za = valid_graph(), sa = node_new("z", KIR_OP_FUSED_MATMUL), attr = attr_new("fused_from"), strs = {0};
  node_input(&sa, "x");
  node_input(&sa, "x");
  pb_bytes(&strs, 1, "ok", 2);
  pb_bytes(&strs, 1, "a\0b", 3);
  pb_sub(&attr, 7, &strs);
  node_attr(&sa, &attr);
  graph_node(&za, &sa);
  expect_pb(&za, KILN_ERR_FORMAT, "node 3: strings attribute holds a NUL byte");
}

static void test_shape_mismatch(void **state) {
  (void)state;
  static const int64_t two[] = {2}, three[] = {3};
  pb g = graph_new(1), a = placeholder("a", two, 1), b = placeholder("b", three, 1);
  pb s = node_new("sum", KIR_OP_ADD);
  node_input(&s, "a");
  node_input(&s, "b");
  graph_node(&g, &a);
  graph_node(&g, &b);
  graph_node(&g, &s);
  expect_pb(&g, KILN_ERR_SHAPE, "node 'sum'");
  /* Arity is checked too (the verifier's message passes through). */
  pb r = valid_graph(), t = node_new("t", KIR_OP_RELU);
  node_input(&t, "x");
  node_input(&t, "y");
  graph_node(&r, &t);
  expect_pb(&r, KILN_ERR_GRAPH, "node 't'");
  /* Through a file the message names the file. */
  pb f = graph_new(1), a2 = placeholder("a", two, 1), b2 = placeholder("b", three, 1);
  pb s2 = node_new("sum", KIR_OP_ADD);
  node_input(&s2, "a");
  node_input(&s2, "b");
  graph_node(&f, &a2);
  graph_node(&f, &b2);
  graph_node(&f, &s2);
  const char *path = kt_path("model.kiln");
  write_file(path, f.d, f.n);
  free(f.d);
  expect_file(path, KILN_ERR_SHAPE, "model.kiln: node 'sum'");
}

static void test_count_limits(void **state) {
  (void)state;
  /* Attributes per node: limit + 1 refused before any schema check; at the limit the
   * count is accepted and the schema refuses the unknown names. */
  for (int k = KIR_MAX_ATTRS; k <= KIR_MAX_ATTRS + 1; k++) {
    pb g = valid_graph(), n = node_new("z", KIR_OP_RELU);
    node_input(&n, "y");
    for (int i = 0; i < k; i++) {
      char name[16];
      snprintf(name, sizeof name, "a%05d", i);
      attr_int(&n, name, i);
    }
    graph_node(&g, &n);
    if (k > KIR_MAX_ATTRS) expect_pb(&g, KILN_ERR_LIMIT, "node 'z': 1025 attributes (limit 1024)");
    else expect_pb(&g, KILN_ERR_GRAPH, "node 'z': unknown attribute 'a00000'");
  }
  /* Inputs per node: at the limit loads, one more is refused. */
  for (int k = KIR_MAX_INPUTS; k <= KIR_MAX_INPUTS + 1; k++) {
    pb g = valid_graph(), n = node_new("many", KIR_OP_ADD_N);
    for (int i = 0; i < k; i++) node_input(&n, "y");
    graph_node(&g, &n);
    if (k > KIR_MAX_INPUTS) expect_pb(&g, KILN_ERR_LIMIT, "node 'many': 65537 inputs (limit 65536)");
    else expect_pb(&g, KILN_OK, NULL);
  }
  /* A file above the size limit is refused from its size alone (sparse file). */
  const char *path = kt_path("huge.kiln");
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  int rc = ftruncate(fileno(f), (off_t)KIR_MAX_FILE_BYTES + 1);
  fclose(f);
  if (rc == 0) expect_file(path, KILN_ERR_LIMIT, "huge.kiln: 2147483648 bytes (limit 2147483647)");
  unlink(path);
}

/* ================================================================ saving ========= */

static void test_save_failures(void **state) {
  (void)state;
  const char *dir = kt_path("savedir");
  mkdir(dir, 0700);
  char path[600];

  /* Unverifiable graph: add of f32[2] and f32[3]. */
  kir_graph *bad = kir_graph_create();
  static const int64_t two[] = {2}, three[] = {3};
  add_placeholder(bad, "a", two, 1);
  add_placeholder(bad, "b", three, 1);
  int32_t ab[] = {0, 1};
  add_node(bad, KIR_OP_ADD, "sum", ab, 2);
  assert_int_equal(kir_infer_shapes(bad), KILN_ERR_SHAPE); /* types of a and b are set */
  snprintf(path, sizeof path, "%s/bad.kiln", dir);
  assert_int_not_equal(kir_graph_save(bad, path), KILN_OK);
  if (!strstr(bad->error, "node 'sum'")) print_error("%s\n", bad->error);
  assert_non_null(strstr(bad->error, "node 'sum'"));
  assert_int_equal(access(path, F_OK), -1);
  uint8_t *buf = (uint8_t *)1;
  size_t len = 7;
  assert_int_not_equal(kir_graph_to_bytes(bad, &buf, &len), KILN_OK);
  assert_null(buf);
  kir_graph_destroy(bad);

  kir_graph *g = full_graph();
  snprintf(path, sizeof path, "%s/no-such-dir/model.kiln", dir);
  assert_int_equal(kir_graph_save(g, path), KILN_ERR_PATH);
  assert_non_null(strstr(g->error, "no-such-dir/model.kiln"));
  assert_non_null(strstr(g->error, strerror(ENOENT)));
  assert_int_equal(access(path, F_OK), -1);

  /* Target is a directory: the rename fails and the temp file is removed. */
  snprintf(path, sizeof path, "%s/is-a-dir", dir);
  mkdir(path, 0700);
  assert_int_equal(kir_graph_save(g, path), KILN_ERR_PATH);
  assert_non_null(strstr(g->error, "is-a-dir"));
  assert_int_equal(count_entries(dir, ".tmp."), 0);

  /* Success leaves exactly the target; saving again replaces it atomically. */
  snprintf(path, sizeof path, "%s/good.kiln", dir);
  assert_int_equal(kir_graph_save(g, path), KILN_OK);
  assert_int_equal(kir_graph_save(g, path), KILN_OK);
  assert_int_equal(g->status, KILN_OK);
  assert_int_equal(count_entries(dir, ".tmp."), 0);
  assert_int_equal(count_entries(dir, "good.kiln"), 1);
  kir_graph_destroy(g);
}

/* ================================================================ allocation ===== */

static void test_load_alloc_failures(void **state) {
  (void)state;
  pb v = valid_graph();
  const char *path = kt_path("small.kiln");
  write_file(path, v.d, v.n);
  free(v.d);
  long base = kir_alloc_live();
  bool ok = false;
  for (long n = 0; n < 100000 && !ok; n++) {
    kir_graph *g = kir_graph_create();
    assert_non_null(g);
    kir_alloc_fail_after(n);
    kiln_status st = kir_graph_load(g, path);
    kir_alloc_fail_after(-1);
    if (st == KILN_OK) {
      ok = true;
      assert_int_equal(g->n_nodes, 3);
    } else {
      if (st != KILN_ERR_NOMEM && st != KILN_ERR_LIMIT) print_error("n=%ld: %s\n", n, g->error);
      assert_true(st == KILN_ERR_NOMEM || st == KILN_ERR_LIMIT);
      assert_int_equal(g->n_nodes, 0);
    }
    kir_graph_destroy(g);
    assert_int_equal(kir_alloc_live(), base);
  }
  assert_true(ok);
}

static void test_save_alloc_failures(void **state) {
  (void)state;
  kir_graph *g = full_graph();
  const char *dir = kt_path("oomdir");
  mkdir(dir, 0700);
  char path[600];
  snprintf(path, sizeof path, "%s/model.kiln", dir);
  long base = kir_alloc_live();
  bool ok = false;
  for (long n = 0; n < 100000 && !ok; n++) {
    kir_alloc_fail_after(n);
    kiln_status st = kir_graph_save(g, path);
    kir_alloc_fail_after(-1);
    if (st == KILN_OK) {
      ok = true;
    } else {
      if (st != KILN_ERR_NOMEM) print_error("n=%ld: %s\n", n, g->error);
      assert_int_equal(st, KILN_ERR_NOMEM);
      assert_int_equal(access(path, F_OK), -1);
    }
    assert_int_equal(kir_alloc_live(), base);
    assert_int_equal(count_entries(dir, ".tmp."), 0);
  }
  assert_true(ok);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_exact),
      cmocka_unit_test(test_load_preserves_placement),
      cmocka_unit_test(test_valid_twin_and_any_order),
      cmocka_unit_test(test_bad_paths),
      cmocka_unit_test(test_every_truncation),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_amplification),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_unknown_op),
      cmocka_unit_test(test_dangling_cycle_duplicate),
      cmocka_unit_test(test_tensors),
      cmocka_unit_test(test_attributes),
      cmocka_unit_test(test_name_limits),
      cmocka_unit_test(test_shape_mismatch),
      cmocka_unit_test(test_count_limits),
      cmocka_unit_test(test_save_failures),
      cmocka_unit_test(test_load_alloc_failures),
      cmocka_unit_test(test_save_alloc_failures),
  };
  return cmocka_run_group_tests_name("ir_serialize", tests, NULL, NULL);
}
