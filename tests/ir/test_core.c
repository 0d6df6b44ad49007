/* test_core.c — unit tests of the IR core: op table, dtypes and types, tensors,
 * escaping, graphs (arena, attributes, nodes, index, compact, toposort, clone),
 * shape inference for every op, the verifier, the printer, and allocation failure. */
#include "../kt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers ------- */

static kir_type ty(kiln_dtype dt, int rank, ...) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) t.dims[i] = va_arg(ap, int64_t);
  va_end(ap);
  return t;
}
#define T0(dt) ty(dt, 0)
#define T1(dt, a) ty(dt, 1, (int64_t)(a))
#define T2(dt, a, b) ty(dt, 2, (int64_t)(a), (int64_t)(b))
#define T3(dt, a, b, c) ty(dt, 3, (int64_t)(a), (int64_t)(b), (int64_t)(c))

/* Placeholder of type t, inferred. */
static int32_t ph(kir_graph *g, const char *name, kir_type t) {
  kir_node *n = kir_node_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_non_null(n);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", t.dtype), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "shape", t.dims, t.rank), KILN_OK);
  assert_int_equal(kir_infer_node(g, n), KILN_OK);
  return n->id;
}

static kir_node *add1(kir_graph *g, kir_op op, const char *name, int32_t a) {
  kir_node *n = kir_node_add(g, op, name, &a, 1);
  assert_non_null(n);
  return n;
}

static kir_node *add2(kir_graph *g, kir_op op, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  kir_node *n = kir_node_add(g, op, name, in, 2);
  assert_non_null(n);
  return n;
}

static void expect_type(kir_graph *g, kir_node *n, kir_type want) {
  kiln_status s = kir_infer_node(g, n);
  if (s != KILN_OK) fail_msg("infer failed: %s", g->error);
  char a[128], b[128];
  kir_type_format(&n->type, a, sizeof a);
  kir_type_format(&want, b, sizeof b);
  assert_string_equal(a, b);
  assert_true(kir_type_equal(&n->type, &want));
}

static void expect_err(kir_graph *g, kir_node *n, kiln_status want, const char *substr) {
  kir_type before = n->type;
  kiln_status s = kir_infer_node(g, n);
  if (s != want) fail_msg("expected %s, got %s: %s", kiln_status_name(want), kiln_status_name(s), g->error);
  assert_int_equal(g->status, want);
  assert_non_null(strstr(g->error, n->name));
  if (substr && !strstr(g->error, substr)) fail_msg("message '%s' lacks '%s'", g->error, substr);
  assert_true(memcmp(&before, &n->type, sizeof before) == 0); /* unchanged on error */
}

static int setup_graph(void **state) {
  *state = kir_graph_create();
  return *state ? 0 : -1;
}

static int teardown_graph(void **state) {
  kir_graph_destroy(*state);
  return 0;
}

/* ---------------------------------------------------------------- op table ------ */

static void test_op_table(void **state) {
  (void)state;
  for (int32_t i = 0; i < KIR_OP_COUNT; i++) {
    assert_int_equal(kir_op_table[i].wire, i);
    assert_non_null(kir_op_table[i].name);
    assert_non_null(kir_op_table[i].schema);
    if (i == 0) continue;
    assert_ptr_equal(kir_op_get(i), &kir_op_table[i]);
    assert_int_equal(kir_op_from_name(kir_op_table[i].name), i);
    for (int32_t j = 1; j < i; j++) assert_string_not_equal(kir_op_table[i].name, kir_op_table[j].name);
    assert_true(kir_op_table[i].max_inputs < 0 || kir_op_table[i].max_inputs >= kir_op_table[i].min_inputs);
  }
  assert_null(kir_op_get(0));
  assert_null(kir_op_get(-1));
  assert_null(kir_op_get(KIR_OP_COUNT));
  assert_int_equal(kir_op_from_name("nope"), KIR_OP_INVALID);
  assert_int_equal(kir_op_from_name(NULL), KIR_OP_INVALID);
  assert_int_equal(kir_op_from_name("invalid"), KIR_OP_INVALID);
  assert_true(kir_op_has(KIR_OP_EXP, KIR_F_FLOAT_ONLY));
  assert_false(kir_op_has(KIR_OP_ADD, KIR_F_FLOAT_ONLY));
  assert_false(kir_op_has((kir_op)999, KIR_F_FLOAT_ONLY));
}

/* Every op's schema parses: a node with no attributes never gets KILN_ERR_INTERNAL. */
static void test_op_schemas_parse(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T2(KILN_F32, 2, 2));
  int32_t in[5] = {x, x, x, x, x}; /* batch_norm takes 5 */
  for (int32_t op = 1; op < KIR_OP_COUNT; op++) {
    const kir_op_info *info = kir_op_get(op);
    char name[64];
    snprintf(name, sizeof name, "n%d", (int)op);
    int32_t n_in = info->min_inputs;
    if (op == KIR_OP_ASSIGN) n_in = 2;
    kir_node *n = kir_node_add(g, (kir_op)op, name, in, n_in);
    assert_non_null(n);
    kiln_status s = kir_infer_node(g, n);
    assert_int_not_equal(s, KILN_ERR_INTERNAL);
  }
}

/* ---------------------------------------------------------------- dtypes, types - */

static void test_dtypes(void **state) {
  (void)state;
  assert_string_equal(kiln_dtype_name(KILN_F32), "f32");
  assert_string_equal(kiln_dtype_name(KILN_BOOL), "bool");
  assert_string_equal(kiln_dtype_name((kiln_dtype)77), "invalid");
  assert_int_equal(kiln_dtype_size(KILN_F64), 8);
  assert_int_equal(kiln_dtype_size(KILN_I32), 4);
  assert_int_equal(kiln_dtype_size(KILN_BOOL), 1);
  assert_int_equal(kiln_dtype_size(KILN_DTYPE_INVALID), 0);
  assert_int_equal(kiln_dtype_parse("float32"), KILN_F32);
  assert_int_equal(kiln_dtype_parse("float"), KILN_F32);
  assert_int_equal(kiln_dtype_parse("f64"), KILN_F64);
  assert_int_equal(kiln_dtype_parse("int64"), KILN_I64);
  assert_int_equal(kiln_dtype_parse("bool"), KILN_BOOL);
  assert_int_equal(kiln_dtype_parse("f8"), KILN_DTYPE_INVALID);
  assert_int_equal(kiln_dtype_parse(NULL), KILN_DTYPE_INVALID);
  for (int d = 1; d < KILN_DTYPE_COUNT; d++)
    assert_int_equal(kiln_dtype_parse(kiln_dtype_name((kiln_dtype)d)), d);
  assert_string_equal(kiln_status_name(KILN_OK), "ok");
  assert_string_equal(kiln_status_name(KILN_ERR_SHAPE), "shape");
  assert_non_null(kiln_status_name((kiln_status)1234));
  assert_string_equal(kir_attr_kind_name(KIR_ATTR_INTS), "ints");
  assert_string_equal(kir_attr_kind_name((kir_attr_kind)99), "?");
}

static void test_type_sizes(void **state) {
  (void)state;
  kir_type s = T0(KILN_F32);
  assert_int_equal(kir_type_numel(&s), 1);
  assert_int_equal(kir_type_nbytes(&s), 4);
  kir_type t = T2(KILN_F64, 3, 5);
  assert_int_equal(kir_type_numel(&t), 15);
  assert_int_equal(kir_type_nbytes(&t), 120);
  kir_type z = T3(KILN_F32, 4, 0, 7);
  assert_int_equal(kir_type_numel(&z), 0);
  assert_int_equal(kir_type_nbytes(&z), 0);
  kir_type big = T3(KILN_F32, INT64_MAX / 2, 4, 0);
  assert_int_equal(kir_type_numel(&big), 0);
  kir_type ov = T3(KILN_F32, INT64_MAX / 2, 4, 1);
  assert_int_equal(kir_type_numel(&ov), -1);
  assert_int_equal(kir_type_nbytes(&ov), -1);
  kir_type neg = T1(KILN_F32, -1);
  assert_int_equal(kir_type_numel(&neg), -1);
  kir_type at = T1(KILN_F32, KIR_MAX_TENSOR_BYTES / 4);
  assert_int_equal(kir_type_nbytes(&at), KIR_MAX_TENSOR_BYTES);
  kir_type above = T1(KILN_F32, KIR_MAX_TENSOR_BYTES / 4 + 1);
  assert_int_equal(kir_type_nbytes(&above), -1);
  kir_type bad = T1(KILN_DTYPE_INVALID, 2);
  assert_int_equal(kir_type_nbytes(&bad), -1);
  kir_type r = T0(KILN_F32);
  r.rank = KILN_MAX_RANK + 1;
  assert_int_equal(kir_type_numel(&r), -1);
}

static void test_type_format_equal(void **state) {
  (void)state;
  char buf[64];
  kir_type t = T2(KILN_F32, 64, 1000);
  kir_type_format(&t, buf, sizeof buf);
  assert_string_equal(buf, "f32[64,1000]");
  kir_type s = T0(KILN_I32);
  kir_type_format(&s, buf, sizeof buf);
  assert_string_equal(buf, "i32[]");
  kir_type_format(&t, buf, 6);
  assert_int_equal(strlen(buf), 5);
  kir_type u = T2(KILN_F32, 64, 1000), v = T2(KILN_F64, 64, 1000), w = T1(KILN_F32, 64);
  assert_true(kir_type_equal(&t, &u));
  assert_false(kir_type_equal(&t, &v));
  assert_false(kir_type_equal(&t, &w));
}

static void expect_bcast(kir_type a, kir_type b, bool ok, kir_type want) {
  kir_type out;
  assert_int_equal(kir_broadcast(&a, &b, &out), ok);
  if (ok) assert_true(kir_type_equal(&out, &want));
}

static void test_broadcast(void **state) {
  (void)state;
  expect_bcast(T2(KILN_F32, 64, 100), T1(KILN_F32, 100), true, T2(KILN_F32, 64, 100));
  expect_bcast(T2(KILN_F32, 64, 100), T1(KILN_F32, 3), false, T0(KILN_F32));
  expect_bcast(T0(KILN_F32), T3(KILN_F32, 2, 3, 4), true, T3(KILN_F32, 2, 3, 4));
  expect_bcast(T3(KILN_I32, 2, 1, 4), T2(KILN_I32, 3, 1), true, T3(KILN_I32, 2, 3, 4));
  expect_bcast(T2(KILN_F32, 1, 0), T2(KILN_F32, 5, 1), true, T2(KILN_F32, 5, 0));
  expect_bcast(T1(KILN_F32, 0), T1(KILN_F32, 2), false, T0(KILN_F32));
  expect_bcast(T1(KILN_F32, 1), T1(KILN_F32, 0), true, T1(KILN_F32, 0));
  expect_bcast(T0(KILN_F64), T0(KILN_F64), true, T0(KILN_F64));
}

/* ---------------------------------------------------------------- tensors ------- */

static void test_tensors(void **state) {
  (void)state;
  kir_type t = T2(KILN_F32, 3, 5);
  kir_tensor *a = kir_tensor_new(&t);
  assert_non_null(a);
  assert_int_equal((uintptr_t)a->data % 64, 0);
  for (int i = 0; i < 15; i++) assert_true(((float *)a->data)[i] == 0.0f);
  ((float *)a->data)[7] = 2.5f;
  kir_tensor *b = kir_tensor_clone(a);
  assert_non_null(b);
  assert_true(kir_tensor_get_f(b, 7) == 2.5);
  assert_int_equal(kir_tensor_get_i(b, 7), 2);
  kir_tensor_free(a);
  kir_tensor_free(b);
  kir_tensor_free(NULL);
  kir_type z = T2(KILN_I64, 0, 4);
  kir_tensor *e = kir_tensor_new(&z);
  assert_non_null(e);
  kir_tensor *e2 = kir_tensor_clone(e);
  assert_non_null(e2);
  kir_tensor_free(e);
  kir_tensor_free(e2);
  kir_type bad = T1(KILN_DTYPE_INVALID, 2);
  assert_null(kir_tensor_new(&bad));
  kir_type huge = T1(KILN_F32, KIR_MAX_TENSOR_BYTES);
  assert_null(kir_tensor_new(&huge));
  kir_type bt = T1(KILN_BOOL, 2);
  kir_tensor *bo = kir_tensor_new(&bt);
  ((uint8_t *)bo->data)[1] = 1;
  assert_true(kir_tensor_get_f(bo, 1) == 1.0);
  assert_int_equal(kir_tensor_get_i(bo, 0), 0);
  kir_tensor_free(bo);
  kir_type ft = T1(KILN_F64, 2);
  kir_tensor *f = kir_tensor_new(&ft);
  ((double *)f->data)[0] = NAN;
  ((double *)f->data)[1] = 1e300;
  assert_int_equal(kir_tensor_get_i(f, 0), 0);
  assert_int_equal(kir_tensor_get_i(f, 1), INT64_MAX);
  kir_tensor_free(f);
}

/* ---------------------------------------------------------------- escaping ------ */

static void test_escape(void **state) {
  (void)state;
  char buf[KIR_MAX_NAME];
  assert_string_equal(kir_escape("layer1/add", buf, sizeof buf), "layer1/add");
  assert_string_equal(kir_escape("a\"b\\c\n", buf, sizeof buf), "a\\x22b\\x5Cc\\x0A");
  assert_string_equal(kir_escape("it's", buf, sizeof buf), "it\\x27s");
  assert_string_equal(kir_escape("\xff\x01", buf, sizeof buf), "\\xFF\\x01");
  char longname[200];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  kir_escape(longname, buf, sizeof buf);
  assert_int_equal(strlen(buf), 67);
  assert_string_equal(buf + 64, "...");
  char exact[65];
  memset(exact, 'b', 64);
  exact[64] = '\0';
  assert_string_equal(kir_escape(exact, buf, sizeof buf), exact);
  char small[8];
  kir_escape("abcdefghijkl", small, sizeof small);
  assert_true(strlen(small) < sizeof small);
  assert_string_equal(kir_escape(NULL, buf, sizeof buf), "(null)");
}

/* ---------------------------------------------------------------- arena, attrs -- */

static void test_arena(void **state) {
  kir_graph *g = *state;
  for (int i = 1; i < 300; i += 7) {
    unsigned char *p = kir_graph_alloc(g, (size_t)i);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    for (int k = 0; k < i; k++) assert_int_equal(p[k], 0);
    memset(p, 0xab, (size_t)i);
  }
  unsigned char *big = kir_graph_alloc(g, 1 << 22);
  assert_non_null(big);
  assert_int_equal(big[(1 << 22) - 1], 0);
  const char *s = kir_graph_strdup(g, "hello");
  assert_string_equal(s, "hello");
  assert_string_equal(kir_graph_strdup(g, NULL), "");
}

static void test_attrs(void **state) {
  kir_graph *g = *state;
  kir_node *n = kir_node_add(g, KIR_OP_NO_OP, "n", NULL, 0);
  assert_non_null(n);
  assert_string_equal(n->device, "");
  assert_string_equal(n->assigned_device, "");
  assert_string_equal(n->placement_reason, "");
  int64_t iv[3] = {1, 2, 3};
  double fv[2] = {0.5, -1};
  const char *sv[2] = {"x", "y\n"};
  kir_type tt = T1(KILN_I32, 2);
  kir_tensor *t = kir_tensor_new(&tt);
  ((int32_t *)t->data)[1] = 42;
  assert_int_equal(kir_attr_set_int(g, n, "zeta", 7), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, n, "alpha", 1.5), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "mid", iv, 3), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "beta", fv, 2), KILN_OK);
  assert_int_equal(kir_attr_set_string(g, n, "str", "hi"), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, n, "strs", sv, 2), KILN_OK);
  assert_int_equal(kir_attr_set_tensor(g, n, "t", t), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "empty", NULL, 0), KILN_OK);
  ((int32_t *)t->data)[1] = 0; /* the attribute holds a copy */
  kir_tensor_free(t);
  iv[0] = 100;
  assert_int_equal(n->n_attrs, 8);
  for (int32_t i = 1; i < n->n_attrs; i++) assert_true(strcmp(n->attrs[i - 1].name, n->attrs[i].name) < 0);
  assert_int_equal(kir_attr_int(n, "zeta", 0), 7);
  assert_true(kir_attr_float(n, "alpha", 0) == 1.5);
  int32_t c = 0;
  const int64_t *gi = kir_attr_ints(n, "mid", &c);
  assert_int_equal(c, 3);
  assert_int_equal(gi[0], 1);
  const double *gf = kir_attr_floats(n, "beta", &c);
  assert_int_equal(c, 2);
  assert_true(gf[1] == -1);
  assert_string_equal(kir_attr_string(n, "str"), "hi");
  const char *const *gs = kir_attr_strings(n, "strs", &c);
  assert_int_equal(c, 2);
  assert_string_equal(gs[1], "y\n");
  const kir_tensor *gt = kir_attr_tensor(n, "t");
  assert_non_null(gt);
  assert_int_equal(((const int32_t *)gt->data)[1], 42);
  assert_non_null(kir_attr_ints(n, "empty", &c)); /* present but empty != absent */
  assert_int_equal(c, 0);
  /* absent or of another kind: defaults */
  assert_int_equal(kir_attr_int(n, "alpha", -5), -5);
  assert_int_equal(kir_attr_int(n, "nope", -5), -5);
  assert_null(kir_attr_ints(n, "zeta", &c));
  assert_int_equal(c, 0);
  assert_null(kir_attr_string(n, "mid"));
  assert_null(kir_attr_find(n, "zz"));
  /* replace keeps one entry, may change kind */
  assert_int_equal(kir_attr_set_int(g, n, "zeta", 8), KILN_OK);
  assert_int_equal(kir_attr_int(n, "zeta", 0), 8);
  assert_int_equal(kir_attr_set_string(g, n, "zeta", "s"), KILN_OK);
  assert_string_equal(kir_attr_string(n, "zeta"), "s");
  assert_int_equal(n->n_attrs, 8);
  /* bad arguments */
  assert_int_equal(kir_attr_set_ints(g, n, "x", NULL, 2), KILN_ERR_ARGUMENT);
  assert_int_equal(kir_attr_set_ints(g, n, "x", iv, -1), KILN_ERR_ARGUMENT);
  assert_int_equal(kir_attr_set_int(g, n, NULL, 1), KILN_ERR_ARGUMENT);
  assert_int_equal(kir_attr_set_tensor(g, n, "x", NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(n->n_attrs, 8);
  /* copy_all onto a node of another graph */
  kir_graph *h = kir_graph_create();
  kir_node *m = kir_node_add(h, KIR_OP_NO_OP, "m", NULL, 0);
  assert_int_equal(kir_attr_copy_all(h, m, n), KILN_OK);
  assert_int_equal(m->n_attrs, 8);
  assert_string_equal(kir_attr_strings(m, "strs", &c)[0], "x");
  assert_ptr_not_equal(kir_attr_tensor(m, "t"), gt);
  assert_int_equal(((const int32_t *)kir_attr_tensor(m, "t")->data)[1], 42);
  kir_graph_destroy(h);
}

static void test_attr_limit(void **state) {
  kir_graph *g = *state;
  kir_node *n = kir_node_add(g, KIR_OP_NO_OP, "n", NULL, 0);
  char name[32];
  for (int i = KIR_MAX_ATTRS - 1; i >= 0; i--) { /* reverse order: worst case for sorting */
    snprintf(name, sizeof name, "a%05d", i);
    assert_int_equal(kir_attr_set_int(g, n, name, i), KILN_OK);
  }
  assert_int_equal(n->n_attrs, KIR_MAX_ATTRS);
  assert_int_equal(kir_attr_set_int(g, n, "a00010", 5), KILN_OK); /* replacing still works */
  assert_int_equal(kir_attr_set_int(g, n, "zz", 1), KILN_ERR_LIMIT);
  assert_int_equal(n->n_attrs, KIR_MAX_ATTRS);
  for (int i = 0; i < KIR_MAX_ATTRS; i += 97) {
    snprintf(name, sizeof name, "a%05d", i);
    assert_int_equal(kir_attr_int(n, name, -1), i == 10 ? 5 : i);
  }
}

/* ---------------------------------------------------------------- nodes --------- */

static void test_node_add_limits(void **state) {
  kir_graph *g = *state;
  char *name = malloc(KIR_MAX_NAME + 2);
  memset(name, 'n', KIR_MAX_NAME + 1);
  name[KIR_MAX_NAME + 1] = '\0';
  assert_null(kir_node_add(g, KIR_OP_NO_OP, name, NULL, 0));
  assert_int_equal(g->status, KILN_ERR_LIMIT);
  name[KIR_MAX_NAME] = '\0';
  assert_non_null(kir_node_add(g, KIR_OP_NO_OP, name, NULL, 0));
  free(name);
  assert_null(kir_node_add(g, KIR_OP_NO_OP, NULL, NULL, 0));
  assert_int_equal(g->status, KILN_ERR_ARGUMENT);
  assert_null(kir_node_add(g, (kir_op)0, "z", NULL, 0));
  assert_int_equal(g->status, KILN_ERR_GRAPH);
  assert_null(kir_node_add(g, (kir_op)KIR_OP_COUNT, "z", NULL, 0));
  int32_t in = 1;
  assert_null(kir_node_add(g, KIR_OP_IDENTITY, "bad/in", &in, 1));
  assert_int_equal(g->status, KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "bad/in"));
  in = -1;
  assert_null(kir_node_add(g, KIR_OP_IDENTITY, "neg", &in, 1));
  assert_int_equal(g->status, KILN_ERR_GRAPH);
  assert_int_equal(g->n_nodes, 1);
  int32_t *many = calloc(KIR_MAX_INPUTS + 1, sizeof *many);
  assert_null(kir_node_add(g, KIR_OP_GROUP, "many", many, KIR_MAX_INPUTS + 1));
  assert_int_equal(g->status, KILN_ERR_LIMIT);
  kir_node *grp = kir_node_add(g, KIR_OP_GROUP, "max", many, KIR_MAX_INPUTS);
  assert_non_null(grp);
  assert_int_equal(kir_infer_node(g, grp), KILN_OK);
  free(many);
  /* node count limit: pretend the graph is full (building 2^20 nodes takes too long) */
  int32_t real = g->n_nodes;
  g->n_nodes = KIR_MAX_NODES;
  assert_null(kir_node_add(g, KIR_OP_NO_OP, "one-too-many", NULL, 0));
  assert_int_equal(g->status, KILN_ERR_LIMIT);
  g->n_nodes = real;
  assert_int_equal(g->n_nodes, 2);
}

static void test_find(void **state) {
  kir_graph *g = *state;
  char name[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "node%d", i);
    assert_non_null(kir_node_add(g, KIR_OP_NO_OP, name, NULL, 0));
  }
  for (int i = 0; i < 1000; i += 13) {
    snprintf(name, sizeof name, "node%d", i);
    kir_node *n = kir_graph_find(g, name);
    assert_non_null(n);
    assert_int_equal(n->id, i);
  }
  assert_null(kir_graph_find(g, "node1000"));
  assert_null(kir_graph_find(g, NULL));
  assert_non_null(kir_node_add(g, KIR_OP_NO_OP, "node5", NULL, 0)); /* duplicate allowed */
  assert_int_equal(kir_graph_find(g, "node5")->id, 5);           /* first one wins */
  bool *keep = malloc((size_t)g->n_nodes);
  memset(keep, 1, (size_t)g->n_nodes);
  keep[5] = false;
  assert_int_equal(kir_graph_compact(g, keep), KILN_OK);
  free(keep);
  assert_int_equal(kir_graph_find(g, "node5")->id, 999);
  assert_int_equal(kir_graph_find(g, "node6")->id, 5);
}

/* Popping nodes in any order of hash collisions keeps every other name findable, and
 * allocates nothing. */
static void test_pop_node(void **state) {
  kir_graph *g = *state;
  char name[32];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "n%d", i);
    assert_non_null(kir_node_add(g, KIR_OP_NO_OP, name, NULL, 0));
  }
  assert_non_null(kir_node_add(g, KIR_OP_NO_OP, "n7", NULL, 0)); /* a duplicate, unindexed */
  kir_alloc_fail_after(0);
  kir_graph_pop_node(g); /* the duplicate: the first n7 stays findable */
  for (int i = 299; i >= 150; i--) kir_graph_pop_node(g);
  kir_alloc_fail_after(-1);
  assert_int_equal(g->n_nodes, 150);
  assert_int_equal(kir_graph_find(g, "n7")->id, 7);
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "n%d", i);
    kir_node *n = kir_graph_find(g, name);
    if (i < 150) assert_true(n && n->id == i);
    else assert_null(n);
  }
  assert_non_null(kir_node_add(g, KIR_OP_NO_OP, "n200", NULL, 0)); /* names free again */
  assert_int_equal(kir_graph_find(g, "n200")->id, 150);
  kir_graph *empty = kir_graph_create();
  kir_graph_pop_node(empty); /* no-op */
  kir_graph_pop_node(NULL);
  assert_int_equal(empty->n_nodes, 0);
  kir_graph_destroy(empty);
}

/* x, y placeholders; a = add(x, y); b = neg(a); c = mul(a, b) */
static void build_chain(kir_graph *g) {
  int32_t x = ph(g, "x", T1(KILN_F32, 4)), y = ph(g, "y", T1(KILN_F32, 4));
  kir_node *a = add2(g, KIR_OP_ADD, "a", x, y);
  assert_int_equal(kir_infer_node(g, a), KILN_OK);
  kir_node *b = add1(g, KIR_OP_NEG, "b", a->id);
  assert_int_equal(kir_infer_node(g, b), KILN_OK);
  kir_node *c = add2(g, KIR_OP_MUL, "c", a->id, b->id);
  assert_int_equal(kir_infer_node(g, c), KILN_OK);
}

static void test_compact(void **state) {
  kir_graph *g = *state;
  build_chain(g);
  bool bad[5] = {true, true, false, true, true};
  assert_int_equal(kir_graph_compact(g, bad), KILN_ERR_INTERNAL);
  assert_int_equal(g->n_nodes, 5);
  assert_int_equal(g->nodes[4]->inputs[0], 2);
  assert_int_equal(kir_graph_count_uses(g, 2), 2);
  assert_int_equal(kir_graph_count_uses(g, 4), 0);
  bool keep[5] = {false, true, false, false, false};
  assert_int_equal(kir_graph_compact(g, keep), KILN_OK);
  assert_int_equal(g->n_nodes, 1);
  assert_string_equal(g->nodes[0]->name, "y");
  assert_int_equal(g->nodes[0]->id, 0);
  assert_null(kir_graph_find(g, "x"));
  assert_int_equal(kir_verify(g), KILN_OK);
}

/* The check of a kept node's inputs rides on the renumbering sweep: a bad input found
 * after earlier nodes were renumbered puts every id and input back. */
static void test_compact_undo(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T1(KILN_F32, 4));
  kir_node *u = add1(g, KIR_OP_NEG, "u", x);
  kir_node *a = add1(g, KIR_OP_RELU, "a", x);
  kir_node *b = add2(g, KIR_OP_MUL, "b", a->id, u->id);
  bool keep[4] = {true, false, true, true}; /* drops u, which b uses */
  assert_int_equal(kir_graph_compact(g, keep), KILN_ERR_INTERNAL);
  assert_non_null(strstr(g->error, "'b' uses dropped node 1"));
  assert_int_equal(g->n_nodes, 4);
  for (int32_t i = 0; i < 4; i++) assert_int_equal(g->nodes[i]->id, i);
  assert_int_equal(a->inputs[0], 0);
  assert_int_equal(b->inputs[0], 2);
  assert_int_equal(b->inputs[1], 1);
  assert_ptr_equal(kir_graph_find(g, "b"), b);
  b->inputs[1] = 7; /* not a node */
  assert_int_equal(kir_graph_compact(g, keep), KILN_ERR_GRAPH);
  assert_int_equal(b->inputs[0], 2);
  bool all[4] = {true, true, true, true}; /* nothing to drop: still checked */
  assert_int_equal(kir_graph_compact(g, all), KILN_ERR_GRAPH);
  b->inputs[1] = a->id;
  assert_int_equal(kir_graph_compact(g, keep), KILN_OK);
  assert_int_equal(g->n_nodes, 3);
  assert_int_equal(b->id, 2);
  assert_int_equal(b->inputs[0], 1);
  assert_int_equal(b->inputs[1], 1);
}

/* Tracked ids follow compaction and sorting; a dropped or popped node's entry is -1. */
static void test_track(void **state) {
  kir_graph *g = *state;
  build_chain(g); /* x0 y1 a2 b3 c4 */
  int32_t ids[4] = {4, 1, 3, -1};
  assert_int_equal(kir_graph_track(g, ids, 4), KILN_OK);
  ids[0] = 5;
  assert_int_equal(kir_graph_track(g, ids, 4), KILN_ERR_ARGUMENT);
  assert_int_equal(g->n_tracked, 4); /* the old list kept */
  kir_node *z = add1(g, KIR_OP_RELU, "z", 0);
  g->nodes[3]->inputs[0] = z->id; /* b = neg(z): z must move before b */
  assert_int_equal(kir_graph_toposort(g), KILN_OK); /* x y a z b c */
  assert_int_equal(g->tracked[0], 5);
  assert_int_equal(g->tracked[1], 1);
  assert_int_equal(g->tracked[2], 4);
  assert_int_equal(g->tracked[3], -1);
  bool keep[6] = {true, false, true, true, true, true};
  g->nodes[2]->inputs[1] = 0; /* a = add(x, x): y unused */
  assert_int_equal(kir_graph_compact(g, keep), KILN_OK);
  assert_int_equal(g->tracked[0], 4);
  assert_string_equal(g->nodes[g->tracked[0]]->name, "c");
  assert_int_equal(g->tracked[1], -1);
  kir_graph_pop_node(g);
  assert_int_equal(g->tracked[0], -1);
  assert_int_equal(kir_graph_track(g, NULL, 0), KILN_OK);
  assert_null(g->tracked);
}

static void test_compact_renumbers(void **state) {
  kir_graph *g = *state;
  build_chain(g);
  kir_node *d = add1(g, KIR_OP_EXP, "d", 0);
  assert_int_equal(kir_infer_node(g, d), KILN_OK);
  bool keep[6] = {true, false, false, false, false, true};
  assert_int_equal(kir_graph_compact(g, keep), KILN_OK);
  assert_int_equal(g->n_nodes, 2);
  assert_int_equal(g->nodes[1]->inputs[0], 0);
  assert_ptr_equal(kir_graph_find(g, "d"), g->nodes[1]);
  assert_int_equal(kir_verify(g), KILN_OK);
}

static void test_toposort(void **state) {
  kir_graph *g = *state;
  build_chain(g); /* x0 y1 a2 b3 c4 */
  /* append z = relu(x) and route b through it: b = neg(z) needs z (id 5) before b */
  kir_node *z = add1(g, KIR_OP_RELU, "z", 0);
  assert_int_equal(kir_infer_node(g, z), KILN_OK);
  g->nodes[3]->inputs[0] = 5;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "topological"));
  assert_int_equal(kir_graph_toposort(g), KILN_OK);
  const char *want[6] = {"x", "y", "a", "z", "b", "c"};
  for (int i = 0; i < 6; i++) {
    assert_string_equal(g->nodes[i]->name, want[i]);
    assert_int_equal(g->nodes[i]->id, i);
    assert_ptr_equal(kir_graph_find(g, want[i]), g->nodes[i]);
  }
  assert_int_equal(g->nodes[4]->inputs[0], 3);
  assert_int_equal(kir_verify(g), KILN_OK);
  /* already sorted: unchanged */
  assert_int_equal(kir_graph_toposort(g), KILN_OK);
  for (int i = 0; i < 6; i++) assert_string_equal(g->nodes[i]->name, want[i]);
}

static void test_toposort_cycle(void **state) {
  kir_graph *g = *state;
  build_chain(g);
  g->nodes[2]->inputs[0] = 3; /* a = add(b, y), b = neg(a): a cycle */
  assert_int_equal(kir_graph_toposort(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "cycle"));
  assert_true(strstr(g->error, "'a'") || strstr(g->error, "'b'"));
  assert_string_equal(g->nodes[2]->name, "a"); /* unchanged */
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  g->nodes[2]->inputs[0] = 9;
  assert_int_equal(kir_graph_toposort(g), KILN_ERR_GRAPH);
  g->nodes[2]->inputs[0] = 2; /* self loop */
  assert_int_equal(kir_graph_toposort(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "'a'"));
}

static void test_replace_uses(void **state) {
  kir_graph *g = *state;
  build_chain(g); /* x0 y1 a2 b3 c4 */
  kir_node *r = add1(g, KIR_OP_RELU, "r", 2);
  kir_graph_replace_uses(g, 2, r->id);
  assert_int_equal(r->inputs[0], 2); /* the replacement keeps using the original */
  assert_int_equal(g->nodes[3]->inputs[0], 5);
  assert_int_equal(g->nodes[4]->inputs[0], 5);
  assert_int_equal(kir_graph_count_uses(g, 2), 1);
  assert_int_equal(kir_graph_count_uses(g, 5), 2);
  assert_int_equal(kir_graph_toposort(g), KILN_OK);
  assert_string_equal(g->nodes[3]->name, "r");
}

static void test_clone_swap(void **state) {
  kir_graph *g = *state;
  build_chain(g);
  g->nodes[2]->device = kir_graph_strdup(g, "cpu:0");
  assert_int_equal(kir_attr_set_float(g, g->nodes[3], "unused", 2.0), KILN_OK);
  kir_graph *c = kir_graph_clone(g);
  assert_non_null(c);
  assert_int_equal(c->n_nodes, 5);
  for (int i = 0; i < 5; i++) {
    assert_string_equal(c->nodes[i]->name, g->nodes[i]->name);
    assert_true(kir_type_equal(&c->nodes[i]->type, &g->nodes[i]->type));
    assert_ptr_not_equal(c->nodes[i], g->nodes[i]);
  }
  assert_string_equal(c->nodes[2]->device, "cpu:0");
  assert_true(kir_attr_float(c->nodes[3], "unused", 0) == 2.0);
  assert_ptr_equal(kir_graph_find(c, "c"), c->nodes[4]);
  kir_graph *fresh = kir_graph_create();
  assert_non_null(kir_node_add(fresh, KIR_OP_NO_OP, "only", NULL, 0));
  kir_graph_swap_in(c, fresh);
  assert_int_equal(c->n_nodes, 1);
  assert_ptr_equal(kir_graph_find(c, "only"), c->nodes[0]);
  assert_null(kir_graph_find(c, "a"));
  kir_graph_destroy(c);
  kir_graph_destroy(NULL);
}

/* ---------------------------------------------------------------- inference ----- */

static void test_infer_sources(void **state) {
  kir_graph *g = *state;
  kir_type ct = T2(KILN_F64, 2, 3);
  kir_tensor *t = kir_tensor_new(&ct);
  kir_node *c = kir_node_add(g, KIR_OP_CONSTANT, "c", NULL, 0);
  expect_err(g, c, KILN_ERR_GRAPH, "missing attribute 'value'");
  assert_int_equal(kir_attr_set_tensor(g, c, "value", t), KILN_OK);
  kir_tensor_free(t);
  expect_type(g, c, ct);
  assert_int_equal(kir_attr_set_int(g, c, "extra", 1), KILN_OK);
  expect_err(g, c, KILN_ERR_GRAPH, "unknown attribute 'extra'");

  kir_node *p = kir_node_add(g, KIR_OP_PLACEHOLDER, "p", NULL, 0);
  int64_t shape[2] = {4, 0};
  assert_int_equal(kir_attr_set_ints(g, p, "shape", shape, 2), KILN_OK);
  expect_err(g, p, KILN_ERR_GRAPH, "missing attribute 'dtype'");
  assert_int_equal(kir_attr_set_float(g, p, "dtype", 1), KILN_OK);
  expect_err(g, p, KILN_ERR_GRAPH, "must be int, found float");
  assert_int_equal(kir_attr_set_int(g, p, "dtype", KILN_DTYPE_COUNT), KILN_OK);
  expect_err(g, p, KILN_ERR_TYPE, "dtype");
  assert_int_equal(kir_attr_set_int(g, p, "dtype", KILN_I64), KILN_OK);
  expect_type(g, p, T2(KILN_I64, 4, 0));
  shape[1] = -2;
  assert_int_equal(kir_attr_set_ints(g, p, "shape", shape, 2), KILN_OK);
  expect_err(g, p, KILN_ERR_SHAPE, "negative");
  int64_t r9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  assert_int_equal(kir_attr_set_ints(g, p, "shape", r9, 9), KILN_OK);
  expect_err(g, p, KILN_ERR_LIMIT, "rank");
  assert_int_equal(kir_attr_set_ints(g, p, "shape", r9, 8), KILN_OK);
  expect_type(g, p, ty(KILN_I64, 8, (int64_t)1, (int64_t)1, (int64_t)1, (int64_t)1, (int64_t)1,
                       (int64_t)1, (int64_t)1, (int64_t)1));
  int64_t huge[3] = {INT64_MAX / 2, 4, 1};
  assert_int_equal(kir_attr_set_ints(g, p, "shape", huge, 3), KILN_OK);
  expect_err(g, p, KILN_ERR_OVERFLOW, NULL);
  int64_t over[2] = {1 << 20, 1 << 20};
  assert_int_equal(kir_attr_set_ints(g, p, "shape", over, 2), KILN_OK);
  expect_err(g, p, KILN_ERR_LIMIT, "limit");
  int64_t scalar[1] = {0};
  assert_int_equal(kir_attr_set_ints(g, p, "shape", scalar, 0), KILN_OK);
  expect_type(g, p, T0(KILN_I64));

  kir_node *v = add1(g, KIR_OP_VARIABLE, "v", c->id);
  assert_int_equal(kir_attr_set_int(g, c, "extra", 1), KILN_OK);
  c->n_attrs = 1; /* drop "extra" (sorted after "value"? no: "extra" < "value") */
  c->attrs[0] = c->attrs[1];
  expect_type(g, c, ct);
  expect_type(g, v, ct);

  kir_node *r = kir_node_add(g, KIR_OP_RANDOM_NORMAL, "r", NULL, 0);
  int64_t rs[1] = {5};
  assert_int_equal(kir_attr_set_ints(g, r, "shape", rs, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, r, "dtype", KILN_F32), KILN_OK);
  expect_err(g, r, KILN_ERR_GRAPH, "seed");
  assert_int_equal(kir_attr_set_int(g, r, "seed", 3), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, r, "stddev", 2), KILN_OK);
  expect_type(g, r, T1(KILN_F32, 5));
  assert_int_equal(kir_attr_set_int(g, r, "low", 0), KILN_OK);
  expect_err(g, r, KILN_ERR_GRAPH, "unknown attribute 'low'");
  kir_node *u = kir_node_add(g, KIR_OP_RANDOM_UNIFORM, "u", NULL, 0);
  assert_int_equal(kir_attr_set_ints(g, u, "shape", rs, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, u, "seed", 3), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, u, "dtype", KILN_I32), KILN_OK);
  expect_err(g, u, KILN_ERR_TYPE, "f32 or f64");
  assert_int_equal(kir_attr_set_int(g, u, "dtype", KILN_F64), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, u, "low", -1), KILN_OK);
  expect_type(g, u, T1(KILN_F64, 5));
}

static void test_infer_binary(void **state) {
  kir_graph *g = *state;
  int32_t a = ph(g, "a", T2(KILN_F32, 64, 100)), b = ph(g, "b", T1(KILN_F32, 100));
  int32_t c3 = ph(g, "c3", T1(KILN_F32, 3)), d = ph(g, "d", T1(KILN_F64, 100));
  int32_t bo = ph(g, "bo", T1(KILN_BOOL, 100)), i = ph(g, "i", T0(KILN_I32));
  const kir_op ops[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_DIV, KIR_OP_MAXIMUM, KIR_OP_MINIMUM};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    char name[64];
    snprintf(name, sizeof name, "layer1/%s", kir_op_table[ops[k]].name);
    expect_type(g, add2(g, ops[k], name, a, b), T2(KILN_F32, 64, 100));
    expect_err(g, add2(g, ops[k], name, a, c3), KILN_ERR_SHAPE,
               "inputs f32[64,100] and f32[3] do not broadcast");
    expect_err(g, add2(g, ops[k], name, a, d), KILN_ERR_TYPE, "dtype");
    expect_err(g, add2(g, ops[k], name, bo, bo), KILN_ERR_TYPE, "bool");
    expect_type(g, add2(g, ops[k], name, i, i), T0(KILN_I32));
  }
  kir_node *one = add1(g, KIR_OP_ADD, "one", a);
  expect_err(g, one, KILN_ERR_GRAPH, "takes 2 inputs, got 1");
  kir_node *attr = add2(g, KIR_OP_ADD, "attr", a, a);
  assert_int_equal(kir_attr_set_int(g, attr, "axis", 1), KILN_OK);
  expect_err(g, attr, KILN_ERR_GRAPH, "unknown attribute 'axis'");
}

static void test_infer_unary(void **state) {
  kir_graph *g = *state;
  int32_t f = ph(g, "f", T2(KILN_F32, 2, 3)), i = ph(g, "i", T1(KILN_I64, 4));
  int32_t bo = ph(g, "bo", T1(KILN_BOOL, 4));
  const kir_op fl[] = {KIR_OP_EXP, KIR_OP_LOG, KIR_OP_SQRT, KIR_OP_TANH, KIR_OP_SIGMOID};
  for (size_t k = 0; k < sizeof fl / sizeof fl[0]; k++) {
    expect_type(g, add1(g, fl[k], "u", f), T2(KILN_F32, 2, 3));
    expect_err(g, add1(g, fl[k], "u", i), KILN_ERR_TYPE, "f32 or f64");
    expect_err(g, add1(g, fl[k], "u", bo), KILN_ERR_TYPE, NULL);
  }
  const kir_op any[] = {KIR_OP_NEG, KIR_OP_RELU, KIR_OP_CLAMP};
  for (size_t k = 0; k < sizeof any / sizeof any[0]; k++) {
    expect_type(g, add1(g, any[k], "u", f), T2(KILN_F32, 2, 3));
    expect_type(g, add1(g, any[k], "u", i), T1(KILN_I64, 4));
    expect_err(g, add1(g, any[k], "u", bo), KILN_ERR_TYPE, "bool");
  }
  kir_node *c = add1(g, KIR_OP_CLAMP, "clamp", f);
  assert_int_equal(kir_attr_set_float(g, c, "min", 0), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, c, "max", 6), KILN_OK);
  expect_type(g, c, T2(KILN_F32, 2, 3));
  assert_int_equal(kir_attr_set_int(g, c, "max", 6), KILN_OK);
  expect_err(g, c, KILN_ERR_GRAPH, "attribute 'max' must be float, found int");
  expect_type(g, add1(g, KIR_OP_IDENTITY, "id", bo), T1(KILN_BOOL, 4));
}

static kir_node *matmul(kir_graph *g, int32_t a, int32_t b, int ta, int tb) {
  kir_node *n = add2(g, KIR_OP_MATMUL, "mm", a, b);
  if (ta >= 0) assert_int_equal(kir_attr_set_int(g, n, "transpose_a", ta), KILN_OK);
  if (tb >= 0) assert_int_equal(kir_attr_set_int(g, n, "transpose_b", tb), KILN_OK);
  return n;
}

static void test_infer_matmul(void **state) {
  kir_graph *g = *state;
  int32_t a = ph(g, "a", T2(KILN_F32, 64, 32)), b = ph(g, "b", T2(KILN_F32, 32, 10));
  int32_t bt = ph(g, "bt", T2(KILN_F32, 10, 32)), at = ph(g, "at", T2(KILN_F32, 32, 64));
  int32_t v = ph(g, "v", T1(KILN_F32, 32)), d = ph(g, "d", T2(KILN_F64, 32, 10));
  int32_t ba = ph(g, "ba", T3(KILN_F32, 5, 64, 32)), bb = ph(g, "bb", T3(KILN_F32, 1, 32, 10));
  int32_t bc = ph(g, "bc", T3(KILN_F32, 4, 32, 10)), ia = ph(g, "ia", T2(KILN_I32, 2, 3));
  int32_t bo = ph(g, "bo", T2(KILN_BOOL, 2, 2));
  expect_type(g, matmul(g, a, b, -1, -1), T2(KILN_F32, 64, 10));
  expect_type(g, matmul(g, a, bt, 0, 1), T2(KILN_F32, 64, 10));
  expect_type(g, matmul(g, at, b, 1, 0), T2(KILN_F32, 64, 10));
  expect_type(g, matmul(g, at, bt, 1, 1), T2(KILN_F32, 64, 10));
  expect_err(g, matmul(g, a, bt, -1, -1), KILN_ERR_SHAPE, "inner dims");
  expect_err(g, matmul(g, a, v, -1, -1), KILN_ERR_SHAPE, "rank >= 2");
  expect_err(g, matmul(g, a, d, -1, -1), KILN_ERR_TYPE, "dtype");
  expect_err(g, matmul(g, a, b, 2, -1), KILN_ERR_GRAPH, "0 or 1");
  expect_type(g, matmul(g, ba, bb, -1, -1), T3(KILN_F32, 5, 64, 10));
  expect_type(g, matmul(g, ba, b, -1, -1), T3(KILN_F32, 5, 64, 10));
  expect_err(g, matmul(g, ba, bc, -1, -1), KILN_ERR_SHAPE, "batch");
  expect_type(g, matmul(g, ia, ia, 0, 1), T2(KILN_I32, 2, 2));
  expect_err(g, matmul(g, bo, bo, -1, -1), KILN_ERR_TYPE, "bool");
  kir_node *m = matmul(g, a, b, -1, -1);
  assert_int_equal(kir_attr_set_float(g, m, "transpose_a", 1.0), KILN_OK);
  expect_err(g, m, KILN_ERR_GRAPH, "must be int");
}

static void test_infer_add_n(void **state) {
  kir_graph *g = *state;
  int32_t a = ph(g, "a", T2(KILN_F32, 2, 3)), b = ph(g, "b", T2(KILN_F32, 2, 3));
  int32_t c = ph(g, "c", T2(KILN_F32, 3, 2)), d = ph(g, "d", T2(KILN_I32, 2, 3));
  int32_t bo = ph(g, "bo", T0(KILN_BOOL));
  int32_t in3[3] = {a, b, a};
  expect_type(g, kir_node_add(g, KIR_OP_ADD_N, "s3", in3, 3), T2(KILN_F32, 2, 3));
  expect_type(g, add1(g, KIR_OP_ADD_N, "s1", a), T2(KILN_F32, 2, 3));
  expect_err(g, add2(g, KIR_OP_ADD_N, "shape", a, c), KILN_ERR_SHAPE, NULL);
  expect_err(g, add2(g, KIR_OP_ADD_N, "dtype", a, d), KILN_ERR_TYPE, NULL);
  expect_err(g, add2(g, KIR_OP_ADD_N, "bool", bo, bo), KILN_ERR_TYPE, "bool");
  expect_err(g, kir_node_add(g, KIR_OP_ADD_N, "none", NULL, 0), KILN_ERR_GRAPH, "at least 1");
}

static kir_node *reduce(kir_graph *g, kir_op op, int32_t x, const int64_t *axes, int n, int keep) {
  kir_node *r = add1(g, op, "red", x);
  if (axes) assert_int_equal(kir_attr_set_ints(g, r, "axes", axes, n), KILN_OK);
  if (keep >= 0) assert_int_equal(kir_attr_set_int(g, r, "keep_dims", keep), KILN_OK);
  return r;
}

static void test_infer_reduce(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T3(KILN_F32, 2, 3, 4)), i = ph(g, "i", T2(KILN_I32, 2, 3));
  int32_t z = ph(g, "z", T2(KILN_F32, 0, 3)), bo = ph(g, "bo", T1(KILN_BOOL, 2));
  int64_t ax1[1] = {1}, axm1[1] = {-1}, ax02[2] = {0, 2}, dup[2] = {1, -2}, bad[1] = {3};
  int64_t axm4[1] = {-4};
  const kir_op ops[] = {KIR_OP_REDUCE_SUM, KIR_OP_REDUCE_MEAN, KIR_OP_REDUCE_MAX};
  for (size_t k = 0; k < 3; k++) {
    kir_op op = ops[k];
    expect_type(g, reduce(g, op, x, NULL, 0, -1), T0(KILN_F32));
    expect_type(g, reduce(g, op, x, NULL, 0, 1), T3(KILN_F32, 1, 1, 1));
    expect_type(g, reduce(g, op, x, ax1, 1, -1), T2(KILN_F32, 2, 4));
    expect_type(g, reduce(g, op, x, axm1, 1, 1), T3(KILN_F32, 2, 3, 1));
    expect_type(g, reduce(g, op, x, ax02, 2, 0), T1(KILN_F32, 3));
    expect_type(g, reduce(g, op, x, ax1, 0, 0), T3(KILN_F32, 2, 3, 4)); /* axes = [] */
    expect_err(g, reduce(g, op, x, dup, 2, -1), KILN_ERR_SHAPE, "twice");
    expect_err(g, reduce(g, op, x, bad, 1, -1), KILN_ERR_SHAPE, "out of range");
    expect_err(g, reduce(g, op, x, axm4, 1, -1), KILN_ERR_SHAPE, "out of range");
    expect_err(g, reduce(g, op, x, ax1, 1, 2), KILN_ERR_GRAPH, "keep_dims");
    expect_err(g, reduce(g, op, bo, NULL, 0, -1), KILN_ERR_TYPE, NULL);
    if (op == KIR_OP_REDUCE_MEAN) expect_err(g, reduce(g, op, i, NULL, 0, -1), KILN_ERR_TYPE, "f32");
    else expect_type(g, reduce(g, op, i, ax1, 1, -1), T1(KILN_I32, 2));
  }
  int64_t ax0[1] = {0};
  expect_err(g, reduce(g, KIR_OP_REDUCE_MAX, z, ax0, 1, -1), KILN_ERR_SHAPE, "size 0");
  expect_err(g, reduce(g, KIR_OP_REDUCE_MAX, z, NULL, 0, -1), KILN_ERR_SHAPE, "size 0");
  expect_type(g, reduce(g, KIR_OP_REDUCE_MAX, z, ax1, 1, -1), T1(KILN_F32, 0));
  expect_type(g, reduce(g, KIR_OP_REDUCE_SUM, z, ax0, 1, -1), T1(KILN_F32, 3));
  kir_node *r = reduce(g, KIR_OP_REDUCE_SUM, x, NULL, 0, -1);
  assert_int_equal(kir_attr_set_int(g, r, "axes", 1), KILN_OK);
  expect_err(g, r, KILN_ERR_GRAPH, "attribute 'axes' must be ints, found int");
}

static void test_infer_softmax(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T2(KILN_F32, 2, 5)), i = ph(g, "i", T1(KILN_I32, 3));
  int32_t s = ph(g, "s", T0(KILN_F64));
  expect_type(g, add1(g, KIR_OP_SOFTMAX, "sm", x), T2(KILN_F32, 2, 5));
  kir_node *n = add1(g, KIR_OP_SOFTMAX, "sm0", x);
  assert_int_equal(kir_attr_set_int(g, n, "axis", 0), KILN_OK);
  expect_type(g, n, T2(KILN_F32, 2, 5));
  assert_int_equal(kir_attr_set_int(g, n, "axis", 2), KILN_OK);
  expect_err(g, n, KILN_ERR_SHAPE, "axis 2");
  assert_int_equal(kir_attr_set_int(g, n, "axis", -3), KILN_OK);
  expect_err(g, n, KILN_ERR_SHAPE, "axis -3");
  expect_err(g, add1(g, KIR_OP_SOFTMAX, "smi", i), KILN_ERR_TYPE, "f32 or f64");
  expect_err(g, add1(g, KIR_OP_SOFTMAX, "sms", s), KILN_ERR_SHAPE, NULL);
}

static kir_node *reshape(kir_graph *g, int32_t x, const int64_t *shape, int n) {
  kir_node *r = add1(g, KIR_OP_RESHAPE, "rs", x);
  assert_int_equal(kir_attr_set_ints(g, r, "shape", shape, n), KILN_OK);
  return r;
}

static void test_infer_reshape(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T3(KILN_F32, 2, 3, 4)), z = ph(g, "z", T2(KILN_I64, 0, 5));
  int32_t s = ph(g, "s", T0(KILN_BOOL));
  int64_t s1[2] = {6, 4}, s2[2] = {-1, 12}, s3[3] = {4, -1, 2}, bad[2] = {5, 5};
  int64_t two[2] = {-1, -1}, neg[2] = {-2, 12}, ind[2] = {-1, 5}, zero0[2] = {0, -1};
  int64_t zok[3] = {5, 0, 7}, ones[3] = {1, 1, 1}, none[1] = {0};
  expect_type(g, reshape(g, x, s1, 2), T2(KILN_F32, 6, 4));
  expect_type(g, reshape(g, x, s2, 2), T2(KILN_F32, 2, 12));
  expect_type(g, reshape(g, x, s3, 3), T3(KILN_F32, 4, 3, 2));
  expect_err(g, reshape(g, x, bad, 2), KILN_ERR_SHAPE, "cannot reshape f32[2,3,4]");
  expect_err(g, reshape(g, x, two, 2), KILN_ERR_SHAPE, "second -1");
  expect_err(g, reshape(g, x, neg, 2), KILN_ERR_SHAPE, "-2");
  expect_err(g, reshape(g, x, ind, 2), KILN_ERR_SHAPE, NULL);
  expect_err(g, reshape(g, z, zero0, 2), KILN_ERR_SHAPE, NULL); /* -1 with a 0 dim */
  expect_err(g, reshape(g, x, zero0, 2), KILN_ERR_SHAPE, NULL);
  expect_type(g, reshape(g, z, ind, 2), T2(KILN_I64, 0, 5));
  expect_type(g, reshape(g, z, zok, 3), T3(KILN_I64, 5, 0, 7));
  expect_type(g, reshape(g, s, ones, 3), T3(KILN_BOOL, 1, 1, 1));
  expect_type(g, reshape(g, s, none, 0), T0(KILN_BOOL));
  expect_err(g, add1(g, KIR_OP_RESHAPE, "noshape", x), KILN_ERR_GRAPH, "missing attribute 'shape'");
}

static kir_node *transpose(kir_graph *g, int32_t x, const int64_t *perm, int n) {
  kir_node *r = add1(g, KIR_OP_TRANSPOSE, "tr", x);
  if (perm) assert_int_equal(kir_attr_set_ints(g, r, "perm", perm, n), KILN_OK);
  return r;
}

static void test_infer_transpose(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T3(KILN_F32, 2, 3, 4)), s = ph(g, "s", T0(KILN_I32));
  int64_t p[3] = {1, 2, 0}, dup[3] = {0, 0, 1}, out[3] = {0, 1, 3}, neg[3] = {-1, 0, 1};
  expect_type(g, transpose(g, x, NULL, 0), T3(KILN_F32, 4, 3, 2));
  expect_type(g, transpose(g, x, p, 3), T3(KILN_F32, 3, 4, 2));
  expect_err(g, transpose(g, x, dup, 3), KILN_ERR_SHAPE, "permutation");
  expect_err(g, transpose(g, x, out, 3), KILN_ERR_SHAPE, "permutation");
  expect_err(g, transpose(g, x, neg, 3), KILN_ERR_SHAPE, "permutation");
  expect_err(g, transpose(g, x, p, 2), KILN_ERR_SHAPE, "entries");
  expect_type(g, transpose(g, s, NULL, 0), T0(KILN_I32));
}

static void test_infer_transfer(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T2(KILN_F32, 2, 3));
  kir_node *t = add1(g, KIR_OP_TRANSFER, "t", x);
  assert_int_equal(kir_attr_set_string(g, t, "device", "cuda:1"), KILN_OK);
  expect_type(g, t, T2(KILN_F32, 2, 3));
  const char *bad[] = {"gpu:0", "cuda:", "cpu:x", "/cpu:0", "", "cuda:123456"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kir_node *b = add1(g, KIR_OP_TRANSFER, bad[i][0] ? bad[i] : "empty", x);
    assert_int_equal(kir_attr_set_string(g, b, "device", bad[i]), KILN_OK);
    expect_err(g, b, KILN_ERR_GRAPH, "attribute 'device'");
  }
  expect_err(g, add1(g, KIR_OP_TRANSFER, "nodev", x), KILN_ERR_GRAPH, "device");
}

static void test_infer_state(void **state) {
  kir_graph *g = *state;
  int32_t init = ph(g, "init", T2(KILN_F32, 2, 2));
  int32_t val = ph(g, "val", T2(KILN_F32, 2, 2)), wrong = ph(g, "wrong", T2(KILN_F32, 2, 3));
  int32_t wd = ph(g, "wd", T2(KILN_F64, 2, 2));
  kir_node *v = add1(g, KIR_OP_VARIABLE, "v", init);
  expect_type(g, v, T2(KILN_F32, 2, 2));
  kir_node *as = add2(g, KIR_OP_ASSIGN, "as", v->id, val);
  expect_type(g, as, T2(KILN_F32, 2, 2));
  expect_err(g, add2(g, KIR_OP_ASSIGN, "as2", val, val), KILN_ERR_GRAPH, "not a variable");
  expect_err(g, add2(g, KIR_OP_ASSIGN, "as3", v->id, wrong), KILN_ERR_SHAPE, NULL);
  expect_err(g, add2(g, KIR_OP_ASSIGN, "as4", v->id, wd), KILN_ERR_TYPE, NULL);
  int32_t gi[2] = {v->id, as->id};
  kir_node *grp = kir_node_add(g, KIR_OP_GROUP, "grp", gi, 2);
  expect_type(g, grp, T0(KILN_DTYPE_INVALID));
  kir_node *nop = kir_node_add(g, KIR_OP_NO_OP, "nop", NULL, 0);
  expect_type(g, nop, T0(KILN_DTYPE_INVALID));
  int32_t gi2[2] = {grp->id, nop->id};
  expect_type(g, kir_node_add(g, KIR_OP_GROUP, "grp2", gi2, 2), T0(KILN_DTYPE_INVALID));
  expect_err(g, add1(g, KIR_OP_IDENTITY, "idg", grp->id), KILN_ERR_GRAPH, "no output");
  expect_err(g, add1(g, KIR_OP_VARIABLE, "vn", nop->id), KILN_ERR_GRAPH, "no output");
  expect_err(g, add1(g, KIR_OP_NO_OP, "nin", val), KILN_ERR_GRAPH, "takes 0 inputs");
  /* an input that was never inferred */
  kir_node *raw = kir_node_add(g, KIR_OP_PLACEHOLDER, "raw", NULL, 0);
  expect_err(g, add1(g, KIR_OP_IDENTITY, "idr", raw->id), KILN_ERR_GRAPH, "no type");
}

static kir_node *fused(kir_graph *g, int32_t a, int32_t b, int32_t c, int64_t op) {
  int32_t in[3] = {a, b, c};
  kir_node *n = kir_node_add(g, KIR_OP_FUSED_MATMUL, "fm", in, c >= 0 ? 3 : 2);
  int64_t ep[1] = {op}, operand[1] = {c >= 0 ? 2 : -1}, swap[1] = {0};
  double lo[1] = {NAN}, hi[1] = {NAN};
  const char *from[2] = {"mm", "add"};
  assert_int_equal(kir_attr_set_ints(g, n, "epilogue", ep, 1), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "operand", operand, 1), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "swap", swap, 1), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_min", lo, 1), KILN_OK);
  assert_int_equal(kir_attr_set_floats(g, n, "clamp_max", hi, 1), KILN_OK);
  assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, 2), KILN_OK);
  return n;
}

static void test_infer_fused(void **state) {
  kir_graph *g = *state;
  int32_t a = ph(g, "a", T2(KILN_F32, 8, 4)), b = ph(g, "b", T2(KILN_F32, 4, 6));
  int32_t bias = ph(g, "bias", T1(KILN_F32, 6)), big = ph(g, "big", T3(KILN_F32, 2, 8, 6));
  int32_t bd = ph(g, "bd", T1(KILN_F64, 6)), bad = ph(g, "bad", T1(KILN_F32, 5));
  int32_t ia = ph(g, "ia", T2(KILN_I32, 8, 4)), ib = ph(g, "ib", T2(KILN_I32, 4, 6));
  expect_type(g, fused(g, a, b, bias, KIR_OP_ADD), T2(KILN_F32, 8, 6));
  expect_type(g, fused(g, a, b, -1, KIR_OP_RELU), T2(KILN_F32, 8, 6));
  expect_err(g, fused(g, a, b, big, KIR_OP_ADD), KILN_ERR_SHAPE, "product");
  expect_err(g, fused(g, a, b, bad, KIR_OP_ADD), KILN_ERR_SHAPE, "product");
  expect_err(g, fused(g, a, b, bd, KIR_OP_ADD), KILN_ERR_TYPE, "operand");
  expect_err(g, fused(g, ia, ib, -1, KIR_OP_RELU), KILN_ERR_TYPE, "f32 or f64");
  expect_err(g, fused(g, a, b, bias, KIR_OP_MATMUL), KILN_ERR_GRAPH, NULL);
  kir_node *n = fused(g, a, b, bias, KIR_OP_ADD);
  int64_t operand[1] = {7};
  assert_int_equal(kir_attr_set_ints(g, n, "operand", operand, 1), KILN_OK);
  expect_err(g, n, KILN_ERR_GRAPH, NULL);
  kir_node *m = fused(g, a, b, bias, KIR_OP_ADD);
  int64_t two[2] = {KIR_OP_ADD, KIR_OP_RELU};
  assert_int_equal(kir_attr_set_ints(g, m, "epilogue", two, 2), KILN_OK);
  expect_err(g, m, KILN_ERR_GRAPH, NULL);
}

/* ---------------------------------------------------------------- verifier ------ */

static void test_verify(void **state) {
  kir_graph *g = *state;
  assert_int_equal(kir_verify(g), KILN_OK); /* empty graph */
  build_chain(g);
  assert_int_equal(kir_verify(g), KILN_OK);
  assert_int_equal(g->status, KILN_OK);
  /* wrong stored type */
  kir_type saved = g->nodes[3]->type;
  g->nodes[3]->type.dims[0] = 5;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "'b'"));
  assert_non_null(strstr(g->error, "stored type f32[5]"));
  assert_int_equal(g->nodes[3]->type.dims[0], 5); /* verify never mutates */
  g->nodes[3]->type = saved;
  /* duplicate name */
  const char *old = g->nodes[4]->name;
  g->nodes[4]->name = "a";
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "duplicate"));
  assert_non_null(strstr(g->error, "'a'"));
  g->nodes[4]->name = "";
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "empty name"));
  g->nodes[4]->name = old;
  /* out-of-order input */
  g->nodes[2]->inputs[0] = 3;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "'a'"));
  g->nodes[2]->inputs[0] = 0;
  /* invalid op number, arity */
  g->nodes[3]->op = (kir_op)200;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "invalid op"));
  g->nodes[3]->op = KIR_OP_NEG;
  g->nodes[3]->n_inputs = 0;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  g->nodes[3]->n_inputs = 1;
  assert_int_equal(kir_verify(g), KILN_OK);
  /* attribute schema */
  assert_int_equal(kir_attr_set_int(g, g->nodes[4], "bogus", 1), KILN_OK);
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "bogus"));
}

static void test_verify_assign(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T1(KILN_F32, 2));
  kir_node *v = add1(g, KIR_OP_VARIABLE, "v", x);
  assert_int_equal(kir_infer_node(g, v), KILN_OK);
  kir_node *as = add2(g, KIR_OP_ASSIGN, "as", v->id, x);
  assert_int_equal(kir_infer_node(g, as), KILN_OK);
  assert_int_equal(kir_verify(g), KILN_OK);
  as->inputs[0] = x;
  assert_int_equal(kir_verify(g), KILN_ERR_GRAPH);
  assert_non_null(strstr(g->error, "not a variable"));
}

/* ---------------------------------------------------------------- printer ------- */

static char *print_to_string(const kir_graph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  kir_graph_print(g, f);
  fclose(f);
  return buf;
}

static void test_print(void **state) {
  kir_graph *g = *state;
  int32_t x = ph(g, "x", T2(KILN_F32, 64, 32)), w = ph(g, "w1", T2(KILN_F32, 32, 100));
  kir_node *m = matmul(g, x, w, 0, -1);
  assert_int_equal(kir_infer_node(g, m), KILN_OK);
  m->device = kir_graph_strdup(g, "cpu:0");
  kir_type ct = T1(KILN_F32, 3), bt = T2(KILN_F32, 1000, 100);
  kir_tensor *small = kir_tensor_new(&ct), *big = kir_tensor_new(&bt);
  ((float *)small->data)[0] = 0.1f;
  ((float *)small->data)[2] = -2;
  kir_node *c = kir_node_add(g, KIR_OP_CONSTANT, "c\"1", NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, c, "value", small), KILN_OK);
  assert_int_equal(kir_infer_node(g, c), KILN_OK);
  kir_node *d = kir_node_add(g, KIR_OP_CONSTANT, "big", NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, d, "value", big), KILN_OK);
  kir_tensor_free(small);
  kir_tensor_free(big);
  char *s = print_to_string(g);
  const char *want =
      "kiln.graph 1.0\n"
      "%0 \"x\" = placeholder() {dtype = f32, shape = [64, 32]} : f32[64,32]\n"
      "%1 \"w1\" = placeholder() {dtype = f32, shape = [32, 100]} : f32[32,100]\n"
      "%2 \"mm\" = matmul(%0, %1) {transpose_a = 0} : f32[64,100] @ \"cpu:0\"\n"
      "%3 \"c\\\"1\" = constant() {value = f32[3]{0.1, 0.0, -2.0}} : f32[3]\n"
      /* more than KIR_TEXT_ELIDE_ABOVE elements: elided to a content hash */
      "%4 \"big\" = constant() {value = <f32[1000,100] fnv64:b2da5b69010df525>} : ?\n";
  assert_string_equal(s, want);
  kir_graph *cl = kir_graph_clone(g);
  char *s2 = print_to_string(cl);
  assert_string_equal(s, s2); /* deterministic, and clone is faithful */
  free(s);
  free(s2);
  kir_graph_destroy(cl);
}

/* ---------------------------------------------------------------- allocation ---- */

/* Builds, infers, verifies, clones, sorts and prints a small graph; KILN_OK or the
 * first failure's status. */
static kiln_status build_small(void) {
  kir_graph *g = kir_graph_create();
  if (!g) return KILN_ERR_NOMEM;
  kiln_status s = KILN_ERR_NOMEM;
  kir_node *x = kir_node_add(g, KIR_OP_PLACEHOLDER, "x", NULL, 0);
  int64_t shape[2] = {2, 3};
  if (!x || (s = kir_attr_set_int(g, x, "dtype", KILN_F32)) != KILN_OK) goto out;
  if ((s = kir_attr_set_ints(g, x, "shape", shape, 2)) != KILN_OK) goto out;
  int32_t in[2] = {0, 0};
  kir_node *a = kir_node_add(g, KIR_OP_ADD, "a", in, 2);
  if (!a) { s = g->status; goto out; }
  const char *from[1] = {"f"};
  if ((s = kir_attr_set_strings(g, a, "zz", from, 1)) != KILN_OK) goto out;
  a->n_attrs = 0; /* keep the graph valid */
  if ((s = kir_infer_shapes(g)) != KILN_OK) goto out;
  if ((s = kir_verify(g)) != KILN_OK) goto out;
  kir_graph *c = kir_graph_clone(g);
  if (!c) { s = KILN_ERR_NOMEM; goto out; }
  s = kir_graph_toposort(c);
  bool keep[2] = {true, false};
  if (s == KILN_OK) s = kir_graph_compact(c, keep);
  kir_graph_destroy(c);
out:
  kir_graph_destroy(g);
  return s;
}

static void test_alloc_failure(void **state) {
  (void)state;
  long base = kir_alloc_live();
  kiln_status s = KILN_ERR_NOMEM;
  int n;
  for (n = 0; n < 1000; n++) {
    kir_alloc_fail_after(n);
    s = build_small();
    kir_alloc_fail_after(-1);
    assert_int_equal(kir_alloc_live(), base);
    if (s == KILN_OK) break;
    if (s != KILN_ERR_NOMEM) fail_msg("N=%d: expected out-of-memory, got %s", n, kiln_status_name(s));
  }
  assert_int_equal(s, KILN_OK);
  assert_true(n > 5);
  kir_type t = T1(KILN_F32, 4);
  kir_alloc_fail_after(0);
  assert_null(kir_tensor_new(&t));
  assert_null(kir_graph_create());
  assert_null(kir_strdup("x"));
  kir_alloc_fail_after(-1);
  assert_int_equal(kir_alloc_live(), base);
}

static void test_alloc_basics(void **state) {
  (void)state;
  long base = kir_alloc_live();
  assert_null(kir_calloc(SIZE_MAX / 2, 4));
  int *p = kir_calloc(4, sizeof *p);
  assert_non_null(p);
  p[3] = 7;
  p = kir_realloc(p, 4 * sizeof *p, 100 * sizeof *p);
  assert_non_null(p);
  assert_int_equal(p[3], 7);
  assert_int_equal(kir_alloc_live(), base + 1);
  kir_free(p);
  kir_free(NULL);
  char *s = kir_strdup("abc");
  assert_string_equal(s, "abc");
  kir_free(s);
  assert_null(kir_strdup(NULL));
  assert_int_equal(kir_alloc_live(), base);
  kir_pb_allocator pa;
  kir_pb_allocator_init(&pa, 1000);
  void *q = pa.alloc(pa.ctx, 500);
  assert_non_null(q);
  assert_int_equal((uintptr_t)q % 16, 0);
  assert_null(pa.alloc(pa.ctx, 500)); /* 500 + headers > budget */
  void *r = pa.alloc(pa.ctx, 400);
  assert_non_null(r);
  pa.free(pa.ctx, q);
  assert_non_null(q = pa.alloc(pa.ctx, 500)); /* freed bytes come back */
  pa.free(pa.ctx, q);
  pa.free(pa.ctx, r);
  pa.free(pa.ctx, NULL);
  assert_int_equal(pa.used, 0);
  assert_null(pa.alloc(pa.ctx, SIZE_MAX - 4));
  assert_int_equal(kir_alloc_live(), base);
}

/* A counting hook installed through kir_alloc_set sees every allocation. */
static long hook_calls;
static void *hook_alloc(void *ctx, size_t n) { (void)ctx; hook_calls++; return malloc(n); }
static void hook_free(void *ctx, void *p) { (void)ctx; free(p); }

static void test_alloc_hook(void **state) {
  (void)state;
  kir_allocator a = {hook_alloc, hook_free, NULL};
  kir_alloc_set(&a);
  kir_graph *g = kir_graph_create();
  kir_graph_destroy(g);
  kir_alloc_set(NULL);
  assert_true(hook_calls >= 3);
  long before = hook_calls;
  kir_free(kir_malloc(8));
  assert_int_equal(hook_calls, before);
}

#define GT(f) cmocka_unit_test_setup_teardown(f, setup_graph, teardown_graph)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_op_table),
      GT(test_op_schemas_parse),
      cmocka_unit_test(test_dtypes),
      cmocka_unit_test(test_type_sizes),
      cmocka_unit_test(test_type_format_equal),
      cmocka_unit_test(test_broadcast),
      cmocka_unit_test(test_tensors),
      cmocka_unit_test(test_escape),
      GT(test_arena),
      GT(test_attrs),
      GT(test_attr_limit),
      GT(test_node_add_limits),
      GT(test_find),
      GT(test_pop_node),
      GT(test_compact),
      GT(test_compact_renumbers),
      GT(test_compact_undo),
      GT(test_track),
      GT(test_toposort),
      GT(test_toposort_cycle),
      GT(test_replace_uses),
      GT(test_clone_swap),
      GT(test_infer_sources),
      GT(test_infer_binary),
      GT(test_infer_unary),
      GT(test_infer_matmul),
      GT(test_infer_add_n),
      GT(test_infer_reduce),
      GT(test_infer_softmax),
      GT(test_infer_reshape),
      GT(test_infer_transpose),
      GT(test_infer_state),
      GT(test_infer_transfer),
      GT(test_infer_fused),
      GT(test_verify),
      GT(test_verify_assign),
      GT(test_print),
      cmocka_unit_test(test_alloc_basics),
      cmocka_unit_test(test_alloc_hook),
      cmocka_unit_test(test_alloc_failure),
  };
  return cmocka_run_group_tests_name("ir_core", tests, NULL, NULL);
}
