/* test_frontend.c — cmocka tests of frontend/kiln.h: tensors, every op builder, names
 * and scopes, transactional building, sessions (feeds, fetches, targets, variables),
 * save/load, the placement log, and allocation failure at every step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt.h"
#include "kiln.h"

#define OK(x) assert_int_equal((x), KILN_OK)

static kiln_node *ph(kiln_graph *g, const char *name, kiln_dtype t, int rank, int64_t d0,
                     int64_t d1) {
  const int64_t dims[2] = {d0, d1};
  kiln_node *n = NULL;
  OK(kiln_placeholder(g, name, t, dims, rank, &n));
  return n;
}

static kiln_node *cst_f32(kiln_graph *g, const char *name, const float *v, int rank, int64_t d0,
                          int64_t d1) {
  const int64_t dims[2] = {d0, d1};
  kiln_tensor *t = kiln_tensor_create(KILN_F32, dims, rank, v);
  assert_non_null(t);
  kiln_node *n = NULL;
  OK(kiln_constant(g, name, t, &n));
  kiln_tensor_destroy(t);
  return n;
}

static kiln_node *cst_i32(kiln_graph *g, const char *name, int32_t v) {
  kiln_tensor *t = kiln_tensor_scalar_i32(v);
  kiln_node *n = NULL;
  OK(kiln_constant(g, name, t, &n));
  kiln_tensor_destroy(t);
  return n;
}

static void assert_shape(const kiln_node *n, const char *op, kiln_dtype t, int rank,
                         int64_t d0, int64_t d1) {
  assert_non_null(n);
  assert_string_equal(kiln_node_op(n), op);
  assert_int_equal(kiln_node_dtype(n), t);
  assert_int_equal(kiln_node_rank(n), rank);
  if (rank > 0) assert_int_equal(kiln_node_dim(n, 0), d0);
  if (rank > 1) assert_int_equal(kiln_node_dim(n, 1), d1);
  assert_int_equal(kiln_node_dim(n, rank), -1);
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* ---------------------------------------------------------------- tensors ------- */

static void test_tensors(void **state) {
  (void)state;
  float v[6] = {1, 2, 3, 4, 5, 6};
  const int64_t dims[2] = {2, 3};
  kiln_tensor *t = kiln_tensor_create(KILN_F32, dims, 2, v);
  assert_non_null(t);
  v[0] = 100; /* the tensor holds a copy */
  assert_int_equal(kiln_tensor_dtype(t), KILN_F32);
  assert_int_equal(kiln_tensor_rank(t), 2);
  assert_int_equal(kiln_tensor_dim(t, 1), 3);
  assert_int_equal(kiln_tensor_dim(t, 2), -1);
  assert_int_equal(kiln_tensor_dim(t, -1), -1);
  assert_int_equal(kiln_tensor_numel(t), 6);
  assert_int_equal(kiln_tensor_nbytes(t), 24);
  assert_int_equal((uintptr_t)kiln_tensor_data(t) % 64, 0);
  assert_true(((const float *)kiln_tensor_data_const(t))[0] == 1.0f);
  assert_true(((const float *)kiln_tensor_data_const(t))[5] == 6.0f);
  kiln_tensor_destroy(t);

  t = kiln_tensor_create(KILN_I64, dims, 2, NULL); /* zeros */
  assert_non_null(t);
  for (int i = 0; i < 6; i++) assert_int_equal(((int64_t *)kiln_tensor_data(t))[i], 0);
  kiln_tensor_destroy(t);
  t = kiln_tensor_scalar_f32(2.5f);
  assert_int_equal(kiln_tensor_rank(t), 0);
  assert_int_equal(kiln_tensor_numel(t), 1);
  assert_true(*(float *)kiln_tensor_data(t) == 2.5f);
  kiln_tensor_destroy(t);
  t = kiln_tensor_scalar_i32(-7);
  assert_int_equal(kiln_tensor_dtype(t), KILN_I32);
  assert_int_equal(*(int32_t *)kiln_tensor_data(t), -7);
  kiln_tensor_destroy(t);

  const int64_t zero[1] = {0}, neg[2] = {2, -1}, huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  t = kiln_tensor_create(KILN_F32, zero, 1, NULL); /* empty is fine */
  assert_non_null(t);
  assert_int_equal(kiln_tensor_numel(t), 0);
  kiln_tensor_destroy(t);
  assert_null(kiln_tensor_create(KILN_DTYPE_INVALID, dims, 2, NULL));
  assert_null(kiln_tensor_create((kiln_dtype)99, dims, 2, NULL));
  assert_null(kiln_tensor_create(KILN_F32, dims, -1, NULL));
  assert_null(kiln_tensor_create(KILN_F32, nine, 9, NULL));
  assert_null(kiln_tensor_create(KILN_F32, NULL, 2, NULL));
  assert_null(kiln_tensor_create(KILN_F32, neg, 2, NULL));
  assert_null(kiln_tensor_create(KILN_F32, huge, 2, NULL));
  kiln_tensor_destroy(NULL);
  assert_int_equal(kiln_tensor_dtype(NULL), KILN_DTYPE_INVALID);
  assert_null(kiln_tensor_data(NULL));
  assert_int_equal(kiln_tensor_nbytes(NULL), 0);
}

/* ---------------------------------------------------------------- ops ----------- */

static void test_every_op(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  assert_non_null(g);
  const float six[6] = {1, 2, 3, 4, 5, 6};
  kiln_node *a = ph(g, "a", KILN_F32, 2, 2, 3), *b = ph(g, "b", KILN_F32, 2, 3, 4);
  kiln_node *c = cst_f32(g, "c", six, 2, 2, 3), *n = NULL;
  assert_shape(a, "placeholder", KILN_F32, 2, 2, 3);
  assert_shape(c, "constant", KILN_F32, 2, 2, 3);
  kiln_node *v = NULL;
  OK(kiln_variable(g, "v", c, &v));
  assert_shape(v, "variable", KILN_F32, 2, 2, 3);
  const int64_t d4[1] = {4};
  OK(kiln_random_normal(g, NULL, KILN_F32, d4, 1, 0, 1, 7, &n));
  assert_shape(n, "random_normal", KILN_F32, 1, 4, 0);
  OK(kiln_random_uniform(g, NULL, KILN_F64, d4, 1, -1, 1, 7, &n));
  assert_shape(n, "random_uniform", KILN_F64, 1, 4, 0);

  typedef kiln_status (*bin_fn)(kiln_graph *, const char *, kiln_node *, kiln_node *, kiln_node **);
  const bin_fn bins[] = {kiln_add, kiln_sub, kiln_mul, kiln_div, kiln_maximum, kiln_minimum};
  const char *bin_names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
  for (int i = 0; i < 6; i++) {
    OK(bins[i](g, NULL, a, c, &n));
    assert_shape(n, bin_names[i], KILN_F32, 2, 2, 3);
  }
  typedef kiln_status (*un_fn)(kiln_graph *, const char *, kiln_node *, kiln_node **);
  const un_fn uns[] = {kiln_neg, kiln_exp, kiln_log, kiln_sqrt, kiln_tanh, kiln_sigmoid, kiln_relu, kiln_identity};
  const char *un_names[] = {"neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "identity"};
  for (int i = 0; i < 8; i++) {
    OK(uns[i](g, NULL, a, &n));
    assert_shape(n, un_names[i], KILN_F32, 2, 2, 3);
  }
  OK(kiln_clamp(g, NULL, a, true, 0, false, 0, &n));
  assert_shape(n, "clamp", KILN_F32, 2, 2, 3);
  OK(kiln_clamp(g, NULL, a, true, -1, true, 1, &n));
  OK(kiln_matmul(g, NULL, a, b, false, false, &n));
  assert_shape(n, "matmul", KILN_F32, 2, 2, 4);
  OK(kiln_matmul(g, NULL, a, c, false, true, &n));
  assert_shape(n, "matmul", KILN_F32, 2, 2, 2);
  OK(kiln_matmul(g, NULL, a, c, true, false, &n));
  assert_shape(n, "matmul", KILN_F32, 2, 3, 3);
  kiln_node *three[3] = {a, c, a};
  OK(kiln_add_n(g, NULL, three, 3, &n));
  assert_shape(n, "add_n", KILN_F32, 2, 2, 3);

  const int64_t ax1[1] = {1}, axm1[1] = {-1};
  OK(kiln_reduce_sum(g, NULL, a, ax1, 1, false, &n));
  assert_shape(n, "reduce_sum", KILN_F32, 1, 2, 0);
  OK(kiln_reduce_sum(g, NULL, a, ax1, 1, true, &n));
  assert_shape(n, "reduce_sum", KILN_F32, 2, 2, 1);
  OK(kiln_reduce_mean(g, NULL, a, NULL, 0, false, &n));
  assert_shape(n, "reduce_mean", KILN_F32, 0, 0, 0);
  OK(kiln_reduce_max(g, NULL, a, axm1, 1, false, &n));
  assert_shape(n, "reduce_max", KILN_F32, 1, 2, 0);
  OK(kiln_softmax(g, NULL, a, -1, &n));
  assert_shape(n, "softmax", KILN_F32, 2, 2, 3);
  const int64_t rs[2] = {3, -1}, perm[2] = {1, 0};
  OK(kiln_reshape(g, NULL, a, rs, 2, &n));
  assert_shape(n, "reshape", KILN_F32, 2, 3, 2);
  OK(kiln_transpose(g, NULL, a, NULL, 0, &n));
  assert_shape(n, "transpose", KILN_F32, 2, 3, 2);
  OK(kiln_transpose(g, NULL, a, perm, 2, &n));
  assert_shape(n, "transpose", KILN_F32, 2, 3, 2);

  kiln_node *asg = NULL, *grp = NULL, *nop = NULL, *init = NULL;
  OK(kiln_assign(g, NULL, v, a, &asg));
  assert_shape(asg, "assign", KILN_F32, 2, 2, 3);
  kiln_node *deps[2] = {asg, v};
  OK(kiln_group(g, NULL, deps, 2, &grp));
  assert_shape(grp, "group", KILN_DTYPE_INVALID, 0, 0, 0);
  OK(kiln_no_op(g, NULL, &nop));
  assert_shape(nop, "no_op", KILN_DTYPE_INVALID, 0, 0, 0);
  OK(kiln_global_variables_initializer(g, &init));
  assert_shape(init, "group", KILN_DTYPE_INVALID, 0, 0, 0);
  assert_string_equal(kiln_node_name(init), "init");
  assert_non_null(kiln_graph_find(g, "v/Assign"));
  assert_string_equal(kiln_node_op(kiln_graph_find(g, "v/Assign")), "assign");
  OK(kiln_global_variables_initializer(g, &init)); /* a second one is made unique */
  assert_string_equal(kiln_node_name(init), "init_1");
  assert_non_null(kiln_graph_find(g, "v/Assign_1"));
  assert_string_equal(kiln_graph_error(g), "");
  assert_int_equal(kiln_graph_status(g), KILN_OK);
  kiln_graph_destroy(g);

  g = kiln_graph_create(); /* with no variables: an empty group */
  OK(kiln_global_variables_initializer(g, &init));
  assert_int_equal(kiln_graph_num_nodes(g), 1);
  kiln_graph_destroy(g);
}

static void test_names_and_scopes(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *x = ph(g, "x", KILN_F32, 1, 4, 0), *n = NULL;
  assert_string_equal(kiln_node_name(x), "x");
  const char *want[] = {"add", "add_1", "add_2"};
  for (int i = 0; i < 3; i++) {
    OK(kiln_add(g, NULL, x, x, &n));
    assert_string_equal(kiln_node_name(n), want[i]);
  }
  OK(kiln_add(g, "add_3", x, x, &n));
  OK(kiln_add(g, NULL, x, x, &n));
  assert_string_equal(kiln_node_name(n), "add_4");
  OK(kiln_scope_push_name(g, "layer1"));
  OK(kiln_add(g, NULL, x, x, &n));
  assert_string_equal(kiln_node_name(n), "layer1/add");
  OK(kiln_add(g, NULL, x, x, &n));
  assert_string_equal(kiln_node_name(n), "layer1/add_1");
  OK(kiln_scope_push_name(g, "inner"));
  OK(kiln_matmul(g, "mm", ph(g, NULL, KILN_F32, 2, 2, 2), ph(g, NULL, KILN_F32, 2, 2, 2), false, false, &n));
  assert_string_equal(kiln_node_name(n), "layer1/inner/mm");
  assert_non_null(kiln_graph_find(g, "layer1/inner/placeholder_1"));
  OK(kiln_scope_pop_name(g));
  OK(kiln_relu(g, "r", x, &n));
  assert_string_equal(kiln_node_name(n), "layer1/r");
  OK(kiln_scope_pop_name(g));
  OK(kiln_relu(g, "r", x, &n));
  assert_string_equal(kiln_node_name(n), "r");
  assert_ptr_equal(kiln_graph_find(g, "layer1/r"), kiln_graph_node(g, kiln_graph_num_nodes(g) - 2));

  /* errors */
  int count = kiln_graph_num_nodes(g);
  n = x;
  assert_int_equal(kiln_add(g, "r", x, x, &n), KILN_ERR_GRAPH);
  assert_null(n);
  assert_string_equal(kiln_graph_error(g), "name 'r' is already used (node 12, relu)");
  assert_int_equal(kiln_graph_status(g), KILN_ERR_GRAPH);
  assert_int_equal(kiln_placeholder(g, "x", KILN_F32, NULL, 0, &n), KILN_ERR_GRAPH);
  assert_contains(kiln_graph_error(g), "(node 0, placeholder)");
  assert_int_equal(kiln_add(g, "", x, x, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_scope_pop_name(g), KILN_ERR_ARGUMENT);
  assert_contains(kiln_graph_error(g), "no scope open");
  assert_int_equal(kiln_scope_push_name(g, ""), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_scope_push_name(g, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_scope_push_name(g, "/a"), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_scope_push_name(g, "a/"), KILN_ERR_ARGUMENT);
  char *big = malloc(KIR_MAX_NAME + 2);
  memset(big, 'n', KIR_MAX_NAME + 1);
  big[KIR_MAX_NAME + 1] = '\0';
  assert_int_equal(kiln_add(g, big, x, x, &n), KILN_ERR_LIMIT);
  big[KIR_MAX_NAME] = '\0';
  OK(kiln_add(g, big, x, x, &n)); /* exactly the limit */
  count++;
  OK(kiln_scope_push_name(g, "s"));
  assert_int_equal(kiln_add(g, big, x, x, &n), KILN_ERR_LIMIT); /* too long once scoped */
  OK(kiln_scope_pop_name(g));
  free(big);
  assert_int_equal(kiln_graph_num_nodes(g), count);
  /* many auto names stay unique and sequential; a hole left by an explicit name */
  OK(kiln_neg(g, "neg_2", x, &n));
  const char *negs[] = {"neg", "neg_1", "neg_3", "neg_4"};
  for (int i = 0; i < 4; i++) {
    OK(kiln_neg(g, NULL, x, &n));
    assert_string_equal(kiln_node_name(n), negs[i]);
  }
  for (int i = 0; i < 300; i++) {
    char want_name[32] = "sigmoid";
    if (i > 0) snprintf(want_name, sizeof want_name, "sigmoid_%d", i);
    OK(kiln_sigmoid(g, NULL, x, &n));
    assert_string_equal(kiln_node_name(n), want_name);
  }
  assert_string_equal(kiln_node_name(n), "sigmoid_299");
  assert_non_null(kiln_graph_find(g, "sigmoid"));
  /* a success clears the message */
  OK(kiln_add(g, NULL, x, x, &n));
  assert_string_equal(kiln_graph_error(g), "");
  kiln_graph_destroy(g);
}

static void test_device_scopes(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *a = ph(g, "a", KILN_F32, 0, 0, 0), *n = NULL;
  assert_string_equal(kiln_node_device(a), "");
  OK(kiln_scope_push_device(g, "/device:CPU:0"));
  OK(kiln_neg(g, NULL, a, &n));
  assert_string_equal(kiln_node_device(n), "cpu:0");
  OK(kiln_scope_push_device(g, "/gpu:1"));
  OK(kiln_neg(g, NULL, a, &n));
  assert_string_equal(kiln_node_device(n), "cuda:1");
  OK(kiln_scope_pop_device(g));
  OK(kiln_neg(g, NULL, a, &n));
  assert_string_equal(kiln_node_device(n), "cpu:0");
  OK(kiln_scope_pop_device(g));
  OK(kiln_neg(g, NULL, a, &n));
  assert_string_equal(kiln_node_device(n), "");
  assert_int_equal(kiln_scope_pop_device(g), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_scope_push_device(g, "toaster:x"), KILN_ERR_ARGUMENT);
  assert_contains(kiln_graph_error(g), "toaster:x");
  assert_int_equal(kiln_scope_push_device(g, NULL), KILN_ERR_ARGUMENT);
  OK(kiln_neg(g, NULL, a, &n)); /* the failed push left no scope behind */
  assert_string_equal(kiln_node_device(n), "");
  assert_int_equal(kiln_scope_push_device(NULL, "cpu:0"), KILN_ERR_ARGUMENT);
  kiln_graph_destroy(g);
}

static void test_transactional(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *a = ph(g, "a", KILN_F32, 1, 2, 0), *b = ph(g, "b", KILN_F32, 1, 3, 0);
  kiln_node *i = ph(g, "i", KILN_I32, 1, 2, 0), *n = a;
  OK(kiln_scope_push_name(g, "layer1"));
  assert_int_equal(kiln_add(g, NULL, a, b, &n), KILN_ERR_SHAPE);
  assert_null(n);
  assert_int_equal(kiln_graph_num_nodes(g), 3);
  assert_int_equal(kiln_graph_status(g), KILN_ERR_SHAPE);
  assert_contains(kiln_graph_error(g), "layer1/add");
  assert_contains(kiln_graph_error(g), "f32[2]");
  assert_contains(kiln_graph_error(g), "f32[3]");
  assert_null(kiln_graph_find(g, "layer1/add"));
  assert_int_equal(kiln_add(g, NULL, a, i, &n), KILN_ERR_TYPE);
  assert_contains(kiln_graph_error(g), "i32");
  assert_int_equal(kiln_matmul(g, NULL, a, a, false, false, &n), KILN_ERR_SHAPE);
  assert_int_equal(kiln_exp(g, NULL, i, &n), KILN_ERR_TYPE);
  const int64_t bad_axis[1] = {3}, rs[1] = {5};
  assert_int_equal(kiln_reduce_sum(g, NULL, a, bad_axis, 1, false, &n) == KILN_OK, 0);
  assert_int_equal(kiln_reshape(g, NULL, a, rs, 1, &n), KILN_ERR_SHAPE);
  assert_int_equal(kiln_graph_num_nodes(g), 3);
  /* the name was not consumed, and the graph still builds */
  OK(kiln_add(g, NULL, a, a, &n));
  assert_string_equal(kiln_node_name(n), "layer1/add");
  assert_int_equal(kiln_node_dim(n, 0), 2);
  assert_int_equal(kiln_graph_num_nodes(g), 4);
  assert_ptr_equal(kiln_graph_node(g, 3), n);
  assert_null(kiln_graph_node(g, 4));
  kiln_graph_destroy(g);
}

static void test_null_and_foreign(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create(), *h = kiln_graph_create();
  kiln_node *a = ph(g, "a", KILN_F32, 2, 2, 2), *other = ph(h, "o", KILN_F32, 2, 2, 2), *n = a;
  OK(kiln_scope_push_name(g, "layer1"));
  assert_int_equal(kiln_matmul(g, "mm", a, NULL, false, false, &n), KILN_ERR_ARGUMENT);
  assert_null(n);
  assert_string_equal(kiln_graph_error(g), "matmul 'layer1/mm': input 1 is NULL");
  assert_int_equal(kiln_matmul(g, "mm", a, other, false, false, &n), KILN_ERR_ARGUMENT);
  assert_string_equal(kiln_graph_error(g), "matmul 'layer1/mm': input 1 belongs to another graph");
  assert_int_equal(kiln_add(g, NULL, a, a, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_add(NULL, NULL, a, a, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_constant(g, NULL, NULL, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_add_n(g, NULL, NULL, 2, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_reduce_sum(g, NULL, a, NULL, 1, false, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_placeholder(g, NULL, KILN_F32, NULL, 2, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_placeholder(g, NULL, KILN_F32, NULL, 9, &n), KILN_ERR_LIMIT);
  assert_int_equal(kiln_placeholder(g, NULL, KILN_DTYPE_INVALID, NULL, 0, &n) == KILN_OK, 0);
  /* assign into a non-variable; a no-output node as an input */
  assert_int_equal(kiln_assign(g, NULL, a, a, &n), KILN_ERR_GRAPH);
  assert_contains(kiln_graph_error(g), "not a variable");
  kiln_node *nop;
  OK(kiln_no_op(g, NULL, &nop));
  assert_int_equal(kiln_neg(g, NULL, nop, &n), KILN_ERR_GRAPH);
  assert_contains(kiln_graph_error(g), "no output");
  OK(kiln_group(g, NULL, &nop, 1, &n)); /* group takes it */
  assert_int_equal(kiln_graph_num_nodes(g), 3);
  assert_int_equal(kiln_graph_num_nodes(h), 1);
  /* accessors on NULL */
  assert_string_equal(kiln_node_name(NULL), "");
  assert_string_equal(kiln_node_op(NULL), "");
  assert_int_equal(kiln_node_dtype(NULL), KILN_DTYPE_INVALID);
  assert_null(kiln_graph_find(g, NULL));
  assert_null(kiln_graph_find(NULL, "a"));
  assert_int_equal(kiln_graph_status(NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_graph_num_nodes(NULL), 0);
  kiln_graph_destroy(NULL);
  kiln_graph_destroy(g);
  kiln_graph_destroy(h);
}

/* ---------------------------------------------------------------- sessions ------ */

typedef struct area_prog {
  kiln_graph *g;
  kiln_node *w, *h, *area;
} area_prog;

static area_prog build_area(void) {
  area_prog p;
  p.g = kiln_graph_create();
  OK(kiln_placeholder(p.g, "width", KILN_I32, NULL, 0, &p.w));
  OK(kiln_placeholder(p.g, "height", KILN_I32, NULL, 0, &p.h));
  OK(kiln_mul(p.g, "area", p.w, p.h, &p.area));
  return p;
}

static int32_t run_area(kiln_graph *g, kiln_node *w, kiln_node *h, kiln_node *area) {
  kiln_session *s;
  OK(kiln_session_create(g, NULL, &s));
  kiln_tensor *six = kiln_tensor_scalar_i32(6), *eight = kiln_tensor_scalar_i32(8), *out;
  kiln_feed feeds[] = {{w, six}, {h, eight}};
  kiln_status st = kiln_session_run(s, feeds, 2, &area, 1, NULL, 0, &out);
  if (st != KILN_OK) fail_msg("run: %s", kiln_session_error(s));
  assert_string_equal(kiln_session_error(s), "");
  assert_int_equal(kiln_tensor_dtype(out), KILN_I32);
  assert_int_equal(kiln_tensor_rank(out), 0);
  int32_t v = *(int32_t *)kiln_tensor_data(out);
  kiln_tensor_destroy(out);
  kiln_tensor_destroy(six);
  kiln_tensor_destroy(eight);
  kiln_session_destroy(s);
  return v;
}

static void test_session_placeholder(void **state) {
  (void)state;
  area_prog p = build_area();
  assert_int_equal(run_area(p.g, p.w, p.h, p.area), 48);
  kiln_graph_destroy(p.g);
}

static void test_session_constants_variable(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *ts_c = cst_i32(g, "ts_c", 2), *five = cst_i32(g, NULL, 5), *sum, *ts_x, *init;
  OK(kiln_add(g, NULL, ts_c, five, &sum));
  OK(kiln_variable(g, "ts_x", sum, &ts_x));
  OK(kiln_global_variables_initializer(g, &init));
  kiln_session *s;
  OK(kiln_session_create(g, NULL, &s));
  OK(kiln_session_run(s, NULL, 0, NULL, 0, &init, 1, NULL));
  kiln_node *fetch[2] = {ts_c, ts_x};
  kiln_tensor *out[2];
  OK(kiln_session_run(s, NULL, 0, fetch, 2, NULL, 0, out));
  assert_int_equal(*(int32_t *)kiln_tensor_data(out[0]), 2);
  assert_int_equal(*(int32_t *)kiln_tensor_data(out[1]), 7);
  kiln_tensor_destroy(out[0]);
  kiln_tensor_destroy(out[1]);
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
}

static int32_t fetch_i32(kiln_session *s, kiln_node *n) {
  kiln_tensor *out;
  kiln_status st = kiln_session_run(s, NULL, 0, &n, 1, NULL, 0, &out);
  if (st != KILN_OK) fail_msg("run: %s", kiln_session_error(s));
  int32_t v = *(int32_t *)kiln_tensor_data(out);
  kiln_tensor_destroy(out);
  return v;
}

static void test_variables_persist(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *zero = cst_i32(g, "zero", 0), *one = cst_i32(g, "one", 1), *v, *next, *inc, *init;
  OK(kiln_variable(g, "counter", zero, &v));
  OK(kiln_add(g, NULL, v, one, &next));
  OK(kiln_assign(g, "inc", v, next, &inc));
  OK(kiln_global_variables_initializer(g, &init));
  kiln_session *s, *s2;
  OK(kiln_session_create(g, NULL, &s));
  OK(kiln_session_create(g, NULL, &s2));
  OK(kiln_session_run(s, NULL, 0, NULL, 0, &init, 1, NULL));
  for (int i = 0; i < 3; i++) OK(kiln_session_run(s, NULL, 0, NULL, 0, &inc, 1, NULL));
  assert_int_equal(fetch_i32(s, v), 3);
  assert_int_equal(fetch_i32(s, inc), 4); /* fetching assign runs it and gives the new value */
  assert_int_equal(fetch_i32(s, v), 4);
  /* each session has its own values: s2 never ran the initializer */
  kiln_tensor *out = (kiln_tensor *)&out;
  assert_int_equal(kiln_session_run(s2, NULL, 0, &v, 1, NULL, 0, &out), KILN_ERR_STATE);
  assert_null(out);
  assert_contains(kiln_session_error(s2), "counter");
  /* the session sees nodes added after it was created */
  kiln_node *twice;
  OK(kiln_add(g, "twice", v, v, &twice));
  assert_int_equal(fetch_i32(s, twice), 8);
  kiln_session_destroy(s);
  kiln_session_destroy(s2);
  kiln_graph_destroy(g);
}

/* The lecture's training step: new_w1 = w1.assign(w1 - lr * grad); updates = group(...). */
static void test_assign_group(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const float w1v[4] = {1, 2, 3, 4}, w2v[2] = {10, 20}, g1v[4] = {1, 1, 1, 1}, g2v[2] = {2, 4};
  const float lrv = 0.5f;
  kiln_node *w1, *w2, *lr = cst_f32(g, "lr", &lrv, 0, 0, 0), *t, *d, *new_w1, *new_w2, *updates, *init;
  OK(kiln_variable(g, "w1", cst_f32(g, NULL, w1v, 2, 2, 2), &w1));
  OK(kiln_variable(g, "w2", cst_f32(g, NULL, w2v, 1, 2, 0), &w2));
  OK(kiln_mul(g, NULL, lr, cst_f32(g, "grad1", g1v, 2, 2, 2), &t));
  OK(kiln_sub(g, NULL, w1, t, &d));
  OK(kiln_assign(g, NULL, w1, d, &new_w1));
  OK(kiln_mul(g, NULL, lr, cst_f32(g, "grad2", g2v, 1, 2, 0), &t));
  OK(kiln_sub(g, NULL, w2, t, &d));
  OK(kiln_assign(g, NULL, w2, d, &new_w2));
  kiln_node *both[2] = {new_w1, new_w2};
  OK(kiln_group(g, "updates", both, 2, &updates));
  OK(kiln_global_variables_initializer(g, &init));
  kiln_session *s;
  OK(kiln_session_create(g, NULL, &s));
  OK(kiln_session_run(s, NULL, 0, NULL, 0, &init, 1, NULL));
  OK(kiln_session_run(s, NULL, 0, NULL, 0, &updates, 1, NULL));
  kiln_node *fetch[2] = {w1, w2};
  kiln_tensor *out[2];
  OK(kiln_session_run(s, NULL, 0, fetch, 2, NULL, 0, out));
  const float *r1 = kiln_tensor_data(out[0]), *r2 = kiln_tensor_data(out[1]);
  assert_true(r1[0] == 0.5f && r1[1] == 1.5f && r1[2] == 2.5f && r1[3] == 3.5f);
  assert_true(r2[0] == 9.0f && r2[1] == 18.0f);
  kiln_tensor_destroy(out[0]);
  kiln_tensor_destroy(out[1]);
  /* fetch and target in one run: the fetch sees the value the run computes */
  OK(kiln_session_run(s, NULL, 0, &w2, 1, &updates, 1, out));
  kiln_tensor_destroy(out[0]);
  OK(kiln_session_run(s, NULL, 0, &w2, 1, NULL, 0, out));
  assert_true(((float *)kiln_tensor_data(out[0]))[0] == 8.0f);
  kiln_tensor_destroy(out[0]);
  /* a group cannot be fetched */
  assert_int_equal(kiln_session_run(s, NULL, 0, &updates, 1, NULL, 0, out), KILN_ERR_ARGUMENT);
  assert_contains(kiln_session_error(s), "updates");
  assert_contains(kiln_session_error(s), "no output");
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
}

static void test_run_errors(void **state) {
  (void)state;
  area_prog p = build_area(), q = build_area();
  kiln_session *s;
  OK(kiln_session_create(p.g, NULL, &s));
  kiln_tensor *six = kiln_tensor_scalar_i32(6), *f = kiln_tensor_scalar_f32(6);
  const int64_t d2[1] = {2};
  kiln_tensor *vec = kiln_tensor_create(KILN_I32, d2, 1, NULL), *out = six;
  kiln_feed one[] = {{p.w, six}};
  assert_int_equal(kiln_session_run(s, one, 1, &p.area, 1, NULL, 0, &out), KILN_ERR_FEED);
  assert_null(out);
  assert_contains(kiln_session_error(s), "height");
  kiln_feed wrong_dtype[] = {{p.w, six}, {p.h, f}};
  assert_int_equal(kiln_session_run(s, wrong_dtype, 2, &p.area, 1, NULL, 0, &out), KILN_ERR_FEED);
  assert_contains(kiln_session_error(s), "height");
  assert_contains(kiln_session_error(s), "i32[]");
  assert_contains(kiln_session_error(s), "f32[]");
  kiln_feed wrong_shape[] = {{p.w, vec}, {p.h, six}};
  assert_int_equal(kiln_session_run(s, wrong_shape, 2, &p.area, 1, NULL, 0, &out), KILN_ERR_FEED);
  assert_contains(kiln_session_error(s), "width");
  assert_contains(kiln_session_error(s), "i32[2]");
  kiln_feed foreign[] = {{p.w, six}, {q.h, six}};
  assert_int_equal(kiln_session_run(s, foreign, 2, &p.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  assert_contains(kiln_session_error(s), "another graph");
  kiln_feed null_node[] = {{NULL, six}};
  assert_int_equal(kiln_session_run(s, null_node, 1, &p.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  kiln_feed null_value[] = {{p.w, NULL}};
  assert_int_equal(kiln_session_run(s, null_value, 1, &p.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  assert_contains(kiln_session_error(s), "width");
  kiln_feed twice[] = {{p.w, six}, {p.w, six}};
  assert_int_equal(kiln_session_run(s, twice, 2, &p.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(s, NULL, 1, &p.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(s, one, 1, &q.area, 1, NULL, 0, &out), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(s, one, 1, &p.area, 1, NULL, 0, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(s, one, 1, NULL, 0, &q.w, 1, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(s, one, -1, NULL, 0, NULL, 0, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_session_run(NULL, one, 1, NULL, 0, NULL, 0, NULL), KILN_ERR_ARGUMENT);
  /* the graph's own status is untouched by run errors */
  assert_int_equal(kiln_graph_status(p.g), KILN_OK);
  assert_int_equal(kiln_session_create(NULL, NULL, &s) == KILN_OK, 0);
  assert_int_equal(kiln_session_create(p.g, NULL, NULL), KILN_ERR_ARGUMENT);
  assert_contains(kiln_graph_error(p.g), "out is NULL");
  /* feeding a computed node overrides it; then a good run clears the message */
  kiln_feed ov[] = {{p.area, six}};
  OK(kiln_session_run(s, ov, 1, &p.area, 1, NULL, 0, &out));
  assert_int_equal(*(int32_t *)kiln_tensor_data(out), 6);
  assert_string_equal(kiln_session_error(s), "");
  kiln_tensor_destroy(out);

  /* integer division by zero */
  kiln_node *dv;
  OK(kiln_div(p.g, "ratio", p.w, p.h, &dv));
  kiln_tensor *zero = kiln_tensor_scalar_i32(0);
  kiln_feed dz[] = {{p.w, six}, {p.h, zero}};
  assert_int_equal(kiln_session_run(s, dz, 2, &dv, 1, NULL, 0, &out), KILN_ERR_EXEC);
  assert_contains(kiln_session_error(s), "ratio");
  kiln_tensor_destroy(zero);
  kiln_tensor_destroy(six);
  kiln_tensor_destroy(f);
  kiln_tensor_destroy(vec);
  kiln_session_destroy(s);
  kiln_session_destroy(NULL);
  assert_string_equal(kiln_session_error(NULL), "session is NULL");
  kiln_graph_destroy(p.g);
  kiln_graph_destroy(q.g);
}

static void test_save_load(void **state) {
  (void)state;
  area_prog p = build_area();
  const char *path = kt_path("area.kiln");
  OK(kiln_graph_save(p.g, path));
  kiln_graph *g = kiln_graph_create();
  OK(kiln_graph_load(g, path));
  assert_int_equal(kiln_graph_num_nodes(g), 3);
  kiln_node *w = kiln_graph_find(g, "width"), *h = kiln_graph_find(g, "height");
  kiln_node *area = kiln_graph_find(g, "area");
  assert_non_null(area);
  assert_shape(area, "mul", KILN_I32, 0, 0, 0);
  assert_int_equal(run_area(g, w, h, area), 48);
  /* only into an empty graph */
  assert_int_equal(kiln_graph_load(g, path), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_graph_num_nodes(g), 3);
  /* a missing file: an error, and the graph stays empty */
  kiln_graph *e = kiln_graph_create();
  assert_int_equal(kiln_graph_load(e, kt_path("missing.kiln")) == KILN_OK, 0);
  assert_int_equal(kiln_graph_num_nodes(e), 0);
  assert_true(kiln_graph_error(e)[0] != '\0');
  assert_int_equal(kiln_graph_load(e, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_graph_save(e, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_graph_save(NULL, path), KILN_ERR_ARGUMENT);
  /* print mentions every node */
  FILE *f = tmpfile();
  kiln_graph_print(g, f);
  char buf[4096] = {0};
  rewind(f);
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  assert_true(got > 0);
  assert_contains(buf, "width");
  assert_contains(buf, "area");
  kiln_graph_destroy(e);
  kiln_graph_destroy(g);
  kiln_graph_destroy(p.g);
}

static size_t read_all(FILE *f, char *buf, size_t n) {
  fflush(f);
  rewind(f);
  size_t got = fread(buf, 1, n - 1, f);
  buf[got] = '\0';
  return got;
}

static int count_lines(const char *s) {
  int k = 0;
  for (; *s; s++) k += *s == '\n';
  return k;
}

static void test_placement_log(void **state) {
  (void)state;
  area_prog p = build_area();
  FILE *log = tmpfile();
  assert_non_null(log);
  kiln_session_options opts = {.log_device_placement = true, .log = log};
  kiln_session *s;
  OK(kiln_session_create(p.g, &opts, &s));
  kiln_tensor *six = kiln_tensor_scalar_i32(6), *out;
  kiln_feed feeds[] = {{p.w, six}, {p.h, six}};
  OK(kiln_session_run(s, feeds, 2, &p.area, 1, NULL, 0, &out));
  kiln_tensor_destroy(out);
  char buf[8192];
  read_all(log, buf, sizeof buf);
  assert_contains(buf, "width: (placeholder): /device:CPU:0");
  assert_contains(buf, "height: (placeholder): /device:CPU:0");
  assert_contains(buf, "area: (mul): /device:CPU:0");
  assert_int_equal(count_lines(buf), 3);
  /* once per graph size */
  fseek(log, 0, SEEK_END);
  OK(kiln_session_run(s, feeds, 2, &p.area, 1, NULL, 0, &out));
  kiln_tensor_destroy(out);
  read_all(log, buf, sizeof buf);
  assert_int_equal(count_lines(buf), 3);
  kiln_node *n;
  OK(kiln_neg(p.g, "negated", p.area, &n));
  fseek(log, 0, SEEK_END);
  OK(kiln_session_run(s, feeds, 2, &n, 1, NULL, 0, &out));
  assert_int_equal(*(int32_t *)kiln_tensor_data(out), -36);
  kiln_tensor_destroy(out);
  read_all(log, buf, sizeof buf);
  assert_int_equal(count_lines(buf), 7);
  assert_contains(buf, "negated: (neg): /device:CPU:0");
  /* the user's graph is not changed by placement */
  assert_string_equal(kiln_node_device(p.area), "");
  assert_int_equal(kiln_graph_num_nodes(p.g), 4);
  fclose(log);
  kiln_tensor_destroy(six);
  kiln_session_destroy(s);
  kiln_graph_destroy(p.g);
}

/* ---------------------------------------------------------------- out of memory - */

/* Builds and runs a small program; every failure must be out-of-memory. */
static kiln_status oom_program(void) {
  kiln_status st = KILN_ERR_NOMEM;
  kiln_graph *g = kiln_graph_create();
  kiln_session *s = NULL;
  kiln_tensor *six = kiln_tensor_scalar_i32(6), *out[2] = {NULL, NULL};
  kiln_node *w, *h, *area, *v, *init, *upd, *sum;
  if (!g || !six) goto done;
  kiln_session_options opts = {.log_device_placement = true, .log = NULL};
  FILE *devnull = fopen("/dev/null", "w");
  opts.log = devnull;
  (void)((st = kiln_scope_push_name(g, "scope")) || (st = kiln_scope_push_device(g, "cpu:0")) ||
         (st = kiln_placeholder(g, "width", KILN_I32, NULL, 0, &w)) ||
         (st = kiln_placeholder(g, "height", KILN_I32, NULL, 0, &h)) ||
         (st = kiln_mul(g, NULL, w, h, &area)) || (st = kiln_variable(g, "v", area, &v)) ||
         (st = kiln_add(g, NULL, v, area, &sum)) || (st = kiln_assign(g, NULL, v, sum, &upd)) ||
         (st = kiln_global_variables_initializer(g, &init)) ||
         (st = kiln_session_create(g, &opts, &s)));
  if (st == KILN_OK) {
    kiln_feed feeds[] = {{w, six}, {h, six}};
    kiln_node *fetch[2] = {area, upd};
    st = kiln_session_run(s, feeds, 2, NULL, 0, &init, 1, NULL);
    if (st == KILN_OK) st = kiln_session_run(s, feeds, 2, fetch, 2, NULL, 0, out);
    if (st == KILN_OK) {
      assert_int_equal(*(int32_t *)kiln_tensor_data(out[0]), 36);
      assert_int_equal(*(int32_t *)kiln_tensor_data(out[1]), 72);
    } else {
      assert_null(out[0]);
    }
  }
  if (devnull) fclose(devnull);
done:
  kiln_tensor_destroy(out[0]);
  kiln_tensor_destroy(out[1]);
  kiln_tensor_destroy(six);
  kiln_session_destroy(s);
  kiln_graph_destroy(g);
  return st;
}

static void test_oom_loop(void **state) {
  (void)state;
  long baseline = kir_alloc_live();
  kiln_status st = KILN_ERR_NOMEM;
  long n = 0;
  for (; n < 100000 && st != KILN_OK; n++) {
    kir_alloc_fail_after(n);
    st = oom_program();
    kir_alloc_fail_after(-1);
    if (st != KILN_OK && st != KILN_ERR_NOMEM)
      fail_msg("allocation %ld failed: status %s instead of nomem", n, kiln_status_name(st));
    assert_int_equal(kir_alloc_live(), baseline);
  }
  assert_int_equal(st, KILN_OK);
  assert_true(n > 10);
}

/* A failed op under out-of-memory leaves the graph exactly as it was. */
static void test_oom_op_transactional(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *x = ph(g, "x", KILN_F32, 2, 4, 4), *n;
  OK(kiln_scope_push_device(g, "cpu:0"));
  for (int k = 0; k < 40; k++) OK(kiln_neg(g, NULL, x, &n)); /* grow arrays to a boundary */
  const int64_t perm[2] = {1, 0};
  kiln_status st = KILN_ERR_NOMEM;
  for (long i = 0; st != KILN_OK; i++) {
    int before = kiln_graph_num_nodes(g);
    kir_alloc_fail_after(i);
    st = kiln_transpose(g, "t", x, perm, 2, &n);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      assert_int_equal(st, KILN_ERR_NOMEM);
      assert_int_equal(kiln_graph_num_nodes(g), before);
      assert_null(kiln_graph_find(g, "t"));
    }
  }
  assert_string_equal(kiln_node_device(n), "cpu:0");
  assert_shape(n, "transpose", KILN_F32, 2, 4, 4);
  kiln_graph_destroy(g);
}

/* The initializer adds several nodes in one call: out of memory part-way through leaves
 * none of them behind. */
static void test_oom_initializer_transactional(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  kiln_node *c = ph(g, "c", KILN_F32, 2, 4, 4), *v, *init = NULL;
  for (int k = 0; k < 5; k++) OK(kiln_variable(g, NULL, c, &v));
  kiln_status st = KILN_ERR_NOMEM;
  for (long i = 0; st != KILN_OK; i++) {
    int before = kiln_graph_num_nodes(g);
    kir_alloc_fail_after(i);
    st = kiln_global_variables_initializer(g, &init);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      assert_int_equal(st, KILN_ERR_NOMEM);
      assert_int_equal(kiln_graph_num_nodes(g), before);
      assert_null(kiln_graph_find(g, "init"));
      assert_null(kiln_graph_find(g, "variable/Assign"));
    }
  }
  assert_string_equal(kiln_node_op(init), "group");
  kiln_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tensors),
      cmocka_unit_test(test_every_op),
      cmocka_unit_test(test_names_and_scopes),
      cmocka_unit_test(test_device_scopes),
      cmocka_unit_test(test_transactional),
      cmocka_unit_test(test_null_and_foreign),
      cmocka_unit_test(test_session_placeholder),
      cmocka_unit_test(test_session_constants_variable),
      cmocka_unit_test(test_variables_persist),
      cmocka_unit_test(test_assign_group),
      cmocka_unit_test(test_run_errors),
      cmocka_unit_test(test_save_load),
      cmocka_unit_test(test_placement_log),
      cmocka_unit_test(test_oom_loop),
      cmocka_unit_test(test_oom_op_transactional),
      cmocka_unit_test(test_oom_initializer_transactional),
  };
  return cmocka_run_group_tests_name("frontend", tests, NULL, NULL);
}
