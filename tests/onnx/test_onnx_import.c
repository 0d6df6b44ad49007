/* test_onnx_import.c — the ONNX importer (frontend/onnx): models built in C with the
 * generated protobuf-c structs cover each op class, opset differences, input/initializer/
 * output naming rules and every class of bad input (status + message naming node, field
 * and value); a few cases of Debian's libonnx-testdata run through the interpreter. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/onnx/kiln_onnx.h"
#include "onnx_builder.h"
#include "tests/kt.h"

enum { F = 1, I64 = 7, BOOL_T = 9, F16 = 10 };

/* ---------------------------------------------------------------- helpers -------- */

static kir_graph *import_opt(ob *b, const konnx_options *o, kiln_status want, const char *sub1, const char *sub2) {
  size_t len;
  uint8_t *buf = ob_pack(b, &len);
  kir_graph *g = kir_graph_create();
  kiln_status s = konnx_import(g, buf, len, o);
  free(buf);
  if (s != want || (sub1 && !strstr(g->error, sub1)) || (sub2 && !strstr(g->error, sub2)))
    fail_msg("import: status %s (want %s): %s", kiln_status_name(s), kiln_status_name(want), g->error);
  if (want != KILN_OK) {
    assert_int_equal(g->n_nodes, 0);
    kir_graph_destroy(g);
    return NULL;
  }
  return g;
}

static kir_graph *import_ok(ob *b) { return import_opt(b, NULL, KILN_OK, NULL, NULL); }

static void expect_err(ob *b, kiln_status want, const char *sub1, const char *sub2) {
  long live = kir_alloc_live();
  import_opt(b, NULL, want, sub1, sub2);
  assert_int_equal(kir_alloc_live(), live);
  ob_free(b);
}

static kir_node *node(kir_graph *g, const char *name) {
  kir_node *n = kir_graph_find(g, name);
  if (!n) fail_msg("no node '%s'", name);
  return n;
}

static kir_tensor *tensor_f32(int32_t rank, const int64_t *dims, const float *v) {
  kir_type t = {.dtype = KILN_F32, .rank = rank};
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  memcpy(x->data, v, sizeof(float) * (size_t)kir_type_numel(&t));
  return x;
}

/* Runs g feeding x (if any) to input `in`, fetching `out`. */
static kir_tensor *run1(kir_graph *g, const char *in, const kir_tensor *x, const char *out) {
  kir_feed f = {in ? node(g, in)->id : 0, x};
  int32_t fetch = node(g, out)->id;
  kir_tensor *y = NULL;
  kiln_status s = kir_interp_run(g, NULL, &f, in ? 1 : 0, &fetch, 1, NULL, 0, &y);
  if (s != KILN_OK) fail_msg("run: %s", g->error);
  return y;
}

static void assert_f32(const kir_tensor *t, const float *want, int64_t n) {
  assert_int_equal(t->type.dtype, KILN_F32);
  assert_int_equal(kir_type_numel(&t->type), n);
  for (int64_t i = 0; i < n; i++)
    if (fabsf(((float *)t->data)[i] - want[i]) > 1e-5f * (1 + fabsf(want[i])))
      fail_msg("element %lld: %g, want %g", (long long)i, ((float *)t->data)[i], want[i]);
}

static void assert_sinks_are_outputs(kir_graph *g, const char *const *outs, int n) {
  int sinks = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (kir_graph_count_uses(g, i) == 0) sinks++;
  assert_int_equal(sinks, n);
  for (int i = 0; i < n; i++) assert_int_equal(kir_graph_count_uses(g, node(g, outs[i])->id), 0);
}

static const int64_t d2x3[] = {2, 3}, d3[] = {3}, d1[] = {1}, d2[] = {2};

/* ---------------------------------------------------------------- op classes ----- */

static void test_binary_broadcast_and_names(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", F, 2, d2x3);
  const float bias[] = {10, 20, 30};
  ob_init(b, ob_f32(b, "b", 1, d3, bias, 3));
  ob_node(b, "Add", "add0", "x,b", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "x")->op, KIR_OP_PLACEHOLDER);
  assert_int_equal(node(g, "x")->id, 0);
  assert_int_equal(node(g, "b")->op, KIR_OP_CONSTANT);
  assert_int_equal(node(g, "y")->op, KIR_OP_ADD);
  const float xv[] = {1, 2, 3, 4, 5, 6}, want[] = {11, 22, 33, 14, 25, 36};
  kir_tensor *x = tensor_f32(2, d2x3, xv), *y = run1(g, "x", x, "y");
  assert_f32(y, want, 6);
  kir_tensor_free(x), kir_tensor_free(y), kir_graph_destroy(g), ob_free(b);
}

static void test_pow_mixed_types_casts_exponent(void **st) {
  (void)st;
  ob *b = ob_new(15);
  ob_input(b, "x", F, 1, d3);
  const int64_t e[] = {2};
  ob_init(b, ob_i64(b, "e", 0, NULL, e, 1));
  ob_node(b, "Pow", "p", "x,e", "z");
  ob_output(b, "z");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "z")->op, KIR_OP_POW);
  const float xv[] = {1, 2, 3}, want[] = {1, 4, 9};
  kir_tensor *x = tensor_f32(1, d3, xv), *y = run1(g, "x", x, "z");
  assert_f32(y, want, 3);
  kir_tensor_free(x), kir_tensor_free(y), kir_graph_destroy(g), ob_free(b);
}

static void test_variadic_max_and_mean(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "a", F, 1, d3);
  const float bv[] = {5, 0, 0}, cv[] = {0, 0, 7};
  ob_init(b, ob_f32(b, "bb", 1, d3, bv, 3));
  ob_init(b, ob_f32(b, "cc", 1, d3, cv, 3));
  ob_node(b, "Max", "m3", "a,bb,cc", "m");
  ob_node(b, "Min", "m1", "a", "one");
  ob_node(b, "Mean", "mean", "a,bb,cc", "avg");
  ob_output(b, "m");
  ob_output(b, "one");
  ob_output(b, "avg");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "m")->op, KIR_OP_MAXIMUM);
  assert_int_equal(node(g, "m/step1")->op, KIR_OP_MAXIMUM);
  assert_int_equal(node(g, "one")->op, KIR_OP_IDENTITY);
  const char *outs[] = {"m", "one", "avg"};
  assert_sinks_are_outputs(g, outs, 3);
  const float av[] = {1, 2, 3}, wm[] = {5, 2, 7}, wavg[] = {2, 2.0f / 3, 10.0f / 3};
  kir_tensor *x = tensor_f32(1, d3, av), *y = run1(g, "a", x, "m"), *z = run1(g, "a", x, "avg");
  assert_f32(y, wm, 3);
  assert_f32(z, wavg, 3);
  kir_tensor_free(x), kir_tensor_free(y), kir_tensor_free(z), kir_graph_destroy(g), ob_free(b);
}

static void test_gemm_all_attributes(void **st) {
  (void)st;
  ob *b = ob_new(13);
  const int64_t da[] = {3, 2}, db[] = {3, 2};
  ob_input(b, "A", F, 2, da); /* transA: A is [K=3, M=2] */
  const float bv[] = {1, 0, 0, 1, 1, 1}, cv[] = {1, 2, 3};
  ob_init(b, ob_f32(b, "B", 2, db, bv, 6)); /* an initializer no node uses: never imported */
  ob_init(b, ob_f32(b, "C", 1, d3, cv, 3));
  Onnx__NodeProto *n = ob_node(b, "Gemm", "gemm", "A,W,C", "y");
  ob_attr_int(b, n, "transA", 1);
  ob_attr_int(b, n, "transB", 1);
  ob_attr_float(b, n, "alpha", 2);
  ob_attr_float(b, n, "beta", 0.5f);
  /* W [N=3, K=3] */
  const int64_t dw[] = {3, 3};
  const float wv[] = {1, 0, 0, 0, 1, 0, 1, 1, 1};
  ob_init(b, ob_f32(b, "W", 2, dw, wv, 9));
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y/matmul")->op, KIR_OP_MATMUL);
  assert_int_equal(kir_attr_int(node(g, "y/matmul"), "transpose_a", 0), 1);
  assert_int_equal(kir_attr_int(node(g, "y/matmul"), "transpose_b", 0), 1);
  assert_int_equal(node(g, "y")->op, KIR_OP_ADD);
  /* A^T = [[1,3,5],[2,4,6]]; A^T W^T: rows [1,3,1+3+5] = [1,3,9], [2,4,12]; *2 + 0.5*C */
  const float av[] = {1, 2, 3, 4, 5, 6}, want[] = {2.5f, 7, 19.5f, 4.5f, 9, 25.5f};
  kir_tensor *x = tensor_f32(2, da, av), *y = run1(g, "A", x, "y");
  assert_f32(y, want, 6);
  kir_tensor_free(x), kir_tensor_free(y), kir_graph_destroy(g), ob_free(b);
}

static void test_matmul_1d_operands(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "v", F, 1, d2);
  const float wv[] = {1, 2, 3, 4, 5, 6};
  ob_init(b, ob_f32(b, "w", 2, d2x3, wv, 6));
  ob_node(b, "MatMul", "mm", "v,w", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->type.rank, 1);
  assert_int_equal(node(g, "y")->type.dims[0], 3);
  const float vv[] = {1, 1}, want[] = {5, 7, 9};
  kir_tensor *x = tensor_f32(1, d2, vv), *y = run1(g, "v", x, "y");
  assert_f32(y, want, 3);
  kir_tensor_free(x), kir_tensor_free(y), kir_graph_destroy(g), ob_free(b);
}

static void test_reduce_axes_attribute_vs_input(void **st) {
  (void)st;
  const int64_t ax[] = {-1};
  for (int opset = 11; opset <= 13; opset += 2) {
    ob *b = ob_new(opset);
    ob_input(b, "x", F, 2, d2x3);
    Onnx__NodeProto *n = ob_node(b, "ReduceSum", "rs", opset < 13 ? "x" : "x,axes", "y");
    if (opset < 13) ob_attr_ints(b, n, "axes", ax, 1);
    else ob_init(b, ob_i64(b, "axes", 1, d1, ax, 1));
    ob_attr_int(b, n, "keepdims", 0);
    ob_output(b, "y");
    kir_graph *g = import_ok(b);
    int32_t k;
    const int64_t *axes = kir_attr_ints(node(g, "y"), "axes", &k);
    assert_int_equal(k, 1);
    assert_int_equal(axes[0], 1);
    assert_int_equal(node(g, "y")->type.rank, 1);
    kir_graph_destroy(g), ob_free(b);
  }
  /* noop_with_empty_axes: no axes -> identity */
  ob *b = ob_new(13);
  ob_input(b, "x", F, 2, d2x3);
  Onnx__NodeProto *n = ob_node(b, "ReduceSum", "rs", "x", "y");
  ob_attr_int(b, n, "noop_with_empty_axes", 1);
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->op, KIR_OP_IDENTITY);
  kir_graph_destroy(g), ob_free(b);
}

static void test_softmax_coercion_before_13(void **st) {
  (void)st;
  const int64_t d[] = {2, 2, 2};
  ob *b = ob_new(11);
  ob_input(b, "x", F, 3, d);
  ob_node(b, "Softmax", "sm", "x", "y"); /* axis 1: softmax over the last 4 as one row */
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y/2d")->op, KIR_OP_RESHAPE);
  assert_int_equal(node(g, "y")->op, KIR_OP_RESHAPE);
  const float xv[] = {0, 0, 0, 0, 1, 1, 1, 1}, w = 0.25f;
  const float want[] = {w, w, w, w, w, w, w, w};
  kir_tensor *x = tensor_f32(3, d, xv), *y = run1(g, "x", x, "y");
  assert_f32(y, want, 8);
  kir_tensor_free(x), kir_tensor_free(y), kir_graph_destroy(g), ob_free(b);
  b = ob_new(13);
  ob_input(b, "x", F, 3, d);
  ob_node(b, "LogSoftmax", "sm", "x", "y");
  ob_output(b, "y");
  g = import_ok(b);
  assert_int_equal(node(g, "y")->op, KIR_OP_LOG_SOFTMAX);
  assert_int_equal(kir_attr_int(node(g, "y"), "axis", 0), 2);
  kir_graph_destroy(g), ob_free(b);
}

/* Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as PyTorch exports a flatten. */
static void test_static_shape_chain(void **st) {
  (void)st;
  const int64_t d[] = {2, 3, 4}, idx[] = {0}, m1[] = {-1}, ax0[] = {0};
  ob *b = ob_new(13);
  ob_input(b, "x", F, 3, d);
  ob_node(b, "Shape", "s", "x", "shp");
  ob_init(b, ob_i64(b, "i0", 0, NULL, idx, 1));
  ob_node(b, "Gather", "gth", "shp,i0", "n");
  ob_init(b, ob_i64(b, "ax", 1, d1, ax0, 1));
  ob_node(b, "Unsqueeze", "u", "n,ax", "n1");
  ob_init(b, ob_i64(b, "m1", 1, d1, m1, 1));
  Onnx__NodeProto *c = ob_node(b, "Concat", "cat", "n1,m1", "shape");
  ob_attr_int(b, c, "axis", 0);
  ob_node(b, "Reshape", "r", "x,shape", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->type.rank, 2);
  assert_int_equal(node(g, "y")->type.dims[0], 2);
  assert_int_equal(node(g, "y")->type.dims[1], 12);
  assert_int_equal(g->n_nodes, 2); /* the shape arithmetic folded away */
  kir_graph_destroy(g), ob_free(b);
}

static void test_reshape_zero_and_allowzero(void **st) {
  (void)st;
  const int64_t d[] = {2, 3, 4}, s1[] = {0, -1}, s2[] = {4, 0, 6};
  ob *b = ob_new(14);
  ob_input(b, "x", F, 3, d);
  ob_init(b, ob_i64(b, "s", 1, d2, s1, 2));
  ob_node(b, "Reshape", "r", "x,s", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->type.dims[1], 12);
  kir_graph_destroy(g), ob_free(b);
  b = ob_new(14);
  ob_input(b, "x", F, 3, d);
  ob_init(b, ob_i64(b, "s", 1, d3, s2, 3));
  Onnx__NodeProto *n = ob_node(b, "Reshape", "r", "x,s", "y");
  ob_attr_int(b, n, "allowzero", 1);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_SHAPE, "node 'r' (op_type 'Reshape')", "shape has 0 elements");
}

static void test_squeeze_unsqueeze_opsets(void **st) {
  (void)st;
  const int64_t d[] = {1, 3, 1}, ax[] = {0, 2}, un[] = {-1};
  for (int opset = 11; opset <= 13; opset += 2) {
    ob *b = ob_new(opset);
    ob_input(b, "x", F, 3, d);
    Onnx__NodeProto *s = ob_node(b, "Squeeze", "sq", opset < 13 ? "x" : "x,ax", "y");
    Onnx__NodeProto *u = ob_node(b, "Unsqueeze", "us", opset < 13 ? "y" : "y,un", "z");
    if (opset < 13) ob_attr_ints(b, s, "axes", ax, 2), ob_attr_ints(b, u, "axes", un, 1);
    else ob_init(b, ob_i64(b, "ax", 1, d2, ax, 2)), ob_init(b, ob_i64(b, "un", 1, d1, un, 1));
    ob_output(b, "z");
    kir_graph *g = import_ok(b);
    assert_int_equal(node(g, "z")->type.rank, 2);
    assert_int_equal(node(g, "z")->type.dims[0], 3);
    assert_int_equal(node(g, "z")->type.dims[1], 1);
    kir_graph_destroy(g), ob_free(b);
  }
  ob *b = ob_new(11);
  ob_input(b, "x", F, 3, d);
  Onnx__NodeProto *s = ob_node(b, "Squeeze", "sq", "x", "y");
  const int64_t bad[] = {1};
  ob_attr_ints(b, s, "axes", bad, 1);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_SHAPE, "node 'sq' (op_type 'Squeeze')", "axis 1 has size 3, not 1");
}

static void test_clip_opsets_and_dynamic_bounds(void **st) {
  (void)st;
  ob *b = ob_new(7);
  ob_input(b, "x", F, 1, d3);
  Onnx__NodeProto *n = ob_node(b, "Clip", "c", "x", "y");
  ob_attr_float(b, n, "min", -1);
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->op, KIR_OP_CLAMP);
  assert_true(kir_attr_float(node(g, "y"), "min", 0) == -1);
  assert_null(kir_attr_find(node(g, "y"), "max"));
  kir_graph_destroy(g), ob_free(b);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_input(b, "lo", F, 0, NULL);
  const float hi[] = {2};
  ob_init(b, ob_f32(b, "hi", 0, NULL, hi, 1));
  ob_node(b, "Clip", "c", "x,lo,hi", "y");
  ob_output(b, "y");
  g = import_ok(b);
  assert_int_equal(node(g, "y/min")->op, KIR_OP_MAXIMUM);
  assert_int_equal(node(g, "y")->op, KIR_OP_MINIMUM);
  kir_graph_destroy(g), ob_free(b);
}

static void test_slice_attributes_vs_inputs(void **st) {
  (void)st;
  const int64_t d[] = {4}, s0[] = {1}, e0[] = {100}, st2[] = {2};
  ob *b = ob_new(9);
  ob_input(b, "x", F, 1, d);
  Onnx__NodeProto *n = ob_node(b, "Slice", "sl", "x", "y");
  ob_attr_ints(b, n, "starts", s0, 1);
  ob_attr_ints(b, n, "ends", e0, 1);
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->type.dims[0], 3);
  kir_graph_destroy(g), ob_free(b);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d);
  ob_init(b, ob_i64(b, "s", 1, d1, s0, 1));
  ob_init(b, ob_i64(b, "e", 1, d1, e0, 1));
  ob_init(b, ob_i64(b, "st", 1, d1, st2, 1));
  ob_node(b, "Slice", "sl", "x,s,e,,st", "y");
  ob_output(b, "y");
  g = import_ok(b);
  assert_int_equal(node(g, "y")->type.dims[0], 2);
  kir_graph_destroy(g), ob_free(b);
  /* a non-static starts input */
  b = ob_new(13);
  ob_input(b, "x", F, 1, d);
  ob_input(b, "s", I64, 1, d1);
  ob_init(b, ob_i64(b, "e", 1, d1, e0, 1));
  ob_node(b, "Slice", "sl", "x,s,e", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'sl' (op_type 'Slice')", "input 1 ('s', starts) must be static");
}

/* Pad (constant mode): crops for negative pads, constant blocks for positive ones. */
static void test_pad_constant_mode(void **st) {
  (void)st;
  const float xv[6] = {1, 2, 3, 4, 5, 6};
  /* opset 13: pads [0, 1, 1, -1] on [2, 3] = rows: +0 before, +1 after; cols: +1 before,
   * -1 after; constant_value 9 */
  const int64_t pv[4] = {0, 1, 1, -1}, d4[] = {4};
  const float cv[1] = {9};
  ob *b = ob_new(13);
  ob_input(b, "x", F, 2, d2x3);
  ob_init(b, ob_i64(b, "pads", 1, d4, pv, 4));
  ob_init(b, ob_f32(b, "cv", 0, NULL, cv, 1));
  ob_node(b, "Pad", "p", "x,pads,cv", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  kir_tensor *x = tensor_f32(2, d2x3, xv), *y = run1(g, "x", x, "y");
  const float want[9] = {9, 1, 2, 9, 4, 5, 9, 9, 9};
  assert_int_equal(y->type.dims[0], 3);
  assert_int_equal(y->type.dims[1], 3);
  assert_f32(y, want, 9);
  kir_tensor_free(y), kir_tensor_free(x), kir_graph_destroy(g), ob_free(b);
  /* opset 2: pads attribute, all zero: an identity (PyTorch's AvgPool2d export) */
  const int64_t z4[4] = {0, 0, 0, 0};
  b = ob_new(9);
  ob_input(b, "x", F, 2, d2x3);
  Onnx__NodeProto *n = ob_node(b, "Pad", "p", "x", "y");
  ob_attr_ints(b, n, "pads", z4, 4);
  ob_output(b, "y");
  g = import_ok(b);
  x = tensor_f32(2, d2x3, xv), y = run1(g, "x", x, "y");
  assert_f32(y, xv, 6);
  kir_tensor_free(y), kir_tensor_free(x), kir_graph_destroy(g), ob_free(b);
  /* refusals: another mode, pads of the wrong length, a crop past the size */
  b = ob_new(9);
  ob_input(b, "x", F, 2, d2x3);
  n = ob_node(b, "Pad", "p", "x", "y");
  ob_attr_ints(b, n, "pads", z4, 4);
  ob_attr_string(b, n, "mode", "reflect");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'p' (op_type 'Pad')", "mode 'reflect'");
  b = ob_new(9);
  ob_input(b, "x", F, 2, d2x3);
  n = ob_node(b, "Pad", "p", "x", "y");
  ob_attr_ints(b, n, "pads", z4, 2);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_SHAPE, "node 'p' (op_type 'Pad')", "pads has 2 entries");
  const int64_t crop[4] = {0, -2, 0, -2};
  b = ob_new(9);
  ob_input(b, "x", F, 2, d2x3);
  n = ob_node(b, "Pad", "p", "x", "y");
  ob_attr_ints(b, n, "pads", crop, 4);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_SHAPE, "node 'p' (op_type 'Pad')", "nothing is left");
}

static void test_fixed_input_values(void **st) {
  (void)st;
  const int64_t d[] = {4}, s0[] = {1}, e0[] = {3};
  ob *b = ob_new(13);
  ob_input(b, "x", F, 1, d);
  ob_input(b, "s", I64, 1, d1);
  ob_init(b, ob_i64(b, "e", 1, d1, e0, 1));
  ob_node(b, "Slice", "sl", "x,s,e", "y");
  ob_output(b, "y");
  kir_type ti = {.dtype = KILN_I64, .rank = 1, .dims = {1}};
  kir_tensor *sv = kir_tensor_new(&ti);
  memcpy(sv->data, s0, 8);
  konnx_value v = {"s", sv};
  konnx_options o = {.values = &v, .n_values = 1};
  kir_graph *g = import_opt(b, &o, KILN_OK, NULL, NULL);
  assert_int_equal(node(g, "y")->type.dims[0], 2);
  kir_graph_destroy(g);
  v.name = "nope";
  import_opt(b, &o, KILN_ERR_ARGUMENT, "fixed value for 'nope'", NULL);
  kir_tensor_free(sv), ob_free(b);
}

static void test_conv_auto_pad_and_kernel_check(void **st) {
  (void)st;
  const int64_t dx[] = {1, 1, 5, 5}, dw[] = {2, 1, 3, 3}, str[] = {2, 2};
  float wv[18];
  for (int i = 0; i < 18; i++) wv[i] = 1;
  ob *b = ob_new(11);
  ob_input(b, "x", F, 4, dx);
  ob_init(b, ob_f32(b, "w", 4, dw, wv, 18));
  Onnx__NodeProto *n = ob_node(b, "Conv", "conv1", "x,w", "y");
  ob_attr_string(b, n, "auto_pad", "SAME_UPPER");
  ob_attr_ints(b, n, "strides", str, 2);
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  int32_t k;
  const int64_t *p = kir_attr_ints(node(g, "y"), "pads", &k);
  assert_int_equal(k, 4);
  assert_int_equal(p[0], 1), assert_int_equal(p[2], 1); /* total 2: 1 + 1 */
  assert_int_equal(node(g, "y")->type.dims[2], 3);
  kir_graph_destroy(g), ob_free(b);
  const int64_t ks[] = {5, 5}, zero[] = {0, 1}, negp[] = {0, -1, 0, 0};
  struct { const char *attr; const int64_t *v; size_t n; kiln_status s; const char *msg; } bad[] = {
      {"kernel_shape", ks, 2, KILN_ERR_SHAPE, "attribute 'kernel_shape' entry 0 is 5 but W's spatial dim is 3"},
      {"strides", zero, 2, KILN_ERR_SHAPE, "attribute 'strides' entry 0 is 0"},
      {"pads", negp, 4, KILN_ERR_SHAPE, "attribute 'pads' entry 1 is -1"},
      {"dilations", zero, 2, KILN_ERR_SHAPE, "attribute 'dilations' entry 0 is 0"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = ob_new(11);
    ob_input(b, "x", F, 4, dx);
    ob_init(b, ob_f32(b, "w", 4, dw, wv, 18));
    n = ob_node(b, "Conv", "conv1", "x,w", "y");
    ob_attr_ints(b, n, bad[i].attr, bad[i].v, bad[i].n);
    ob_output(b, "y");
    expect_err(b, bad[i].s, "node 'conv1' (op_type 'Conv')", bad[i].msg);
  }
}

static void test_pools_and_batchnorm(void **st) {
  (void)st;
  const int64_t dx[] = {1, 2, 4, 4}, k2[] = {2, 2};
  ob *b = ob_new(12);
  ob_input(b, "x", F, 4, dx);
  Onnx__NodeProto *n = ob_node(b, "MaxPool", "mp", "x", "y,idx");
  ob_attr_ints(b, n, "kernel_shape", k2, 2);
  ob_attr_ints(b, n, "strides", k2, 2);
  ob_node(b, "GlobalAveragePool", "gap", "y", "g");
  const float ones[] = {1, 1};
  ob_init(b, ob_f32(b, "sc", 1, d2, ones, 2));
  ob_init(b, ob_f32(b, "bi", 1, d2, ones, 2));
  ob_init(b, ob_f32(b, "me", 1, d2, ones, 2));
  ob_init(b, ob_f32(b, "va", 1, d2, ones, 2));
  ob_node(b, "BatchNormalization", "bn", "g,sc,bi,me,va", "z");
  ob_output(b, "z");
  ob_output(b, "idx");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "y")->op, KIR_OP_MAX_POOL);
  assert_int_equal(node(g, "idx")->op, KIR_OP_MAX_POOL_INDICES);
  assert_int_equal(node(g, "g")->op, KIR_OP_REDUCE_MEAN);
  assert_int_equal(kir_attr_int(node(g, "g"), "keep_dims", 0), 1);
  assert_int_equal(node(g, "z")->op, KIR_OP_BATCH_NORM);
  kir_graph_destroy(g), ob_free(b);
  /* training mode: batch statistics over N and the spatial axes, running statistics
   * updated with the momentum. x [2, 2, 1, 1]: channel 0 holds 1, 3 (mean 2, variance 1),
   * channel 1 holds 2, 6 (mean 4, variance 4). */
  {
    const int64_t d4[] = {2, 2, 1, 1};
    const float zeros[2] = {0, 0}, xv[4] = {1, 2, 3, 6};
    b = ob_new(15);
    ob_input(b, "x", F, 4, d4);
    ob_init(b, ob_f32(b, "sc", 1, d2, ones, 2));
    ob_init(b, ob_f32(b, "bi", 1, d2, zeros, 2));
    ob_init(b, ob_f32(b, "me", 1, d2, zeros, 2));
    ob_init(b, ob_f32(b, "va", 1, d2, ones, 2));
    n = ob_node(b, "BatchNormalization", "bn", "x,sc,bi,me,va", "z,rm,rv");
    ob_attr_int(b, n, "training_mode", 1);
    ob_attr_float(b, n, "epsilon", 0);
    ob_attr_float(b, n, "momentum", 0.5f);
    ob_output(b, "z");
    ob_output(b, "rm");
    ob_output(b, "rv");
    g = import_ok(b);
    kir_tensor *x = tensor_f32(4, d4, xv), *out[3] = {NULL, NULL, NULL};
    kir_feed f = {node(g, "x")->id, x};
    int32_t fetch[3] = {node(g, "z")->id, node(g, "rm")->id, node(g, "rv")->id};
    if (kir_interp_run(g, NULL, &f, 1, fetch, 3, NULL, 0, out) != KILN_OK) fail_msg("run: %s", g->error);
    const float wz[4] = {-1, -1, 1, 1}, wm[2] = {1, 2}, wv[2] = {1, 2.5f};
    assert_f32(out[0], wz, 4);
    assert_f32(out[1], wm, 2);
    assert_f32(out[2], wv, 2);
    for (int i = 0; i < 3; i++) kir_tensor_free(out[i]);
    kir_tensor_free(x), kir_graph_destroy(g), ob_free(b);
  }
  b = ob_new(11);
  ob_input(b, "x", F, 4, dx);
  ob_node(b, "MaxPool", "mp", "x", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_GRAPH, "node 'mp' (op_type 'MaxPool')", "'kernel_shape' is required");
}

static void test_dropout_and_constants_as_outputs(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Dropout", "do", "x", "y,mask");
  Onnx__NodeProto *c = ob_node(b, "Constant", "k", "", "kv");
  const int64_t iv[] = {4, 5};
  ob_attr_ints(b, c, "value_ints", iv, 2);
  ob_output(b, "y");
  ob_output(b, "mask");
  ob_output(b, "kv");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "mask")->op, KIR_OP_IDENTITY);
  assert_int_equal(node(g, "mask/value")->op, KIR_OP_CONSTANT);
  assert_int_equal(node(g, "mask")->type.dtype, KILN_BOOL);
  assert_int_equal(node(g, "kv")->op, KIR_OP_IDENTITY);
  assert_int_equal(node(g, "kv/value")->type.dims[0], 2);
  const char *outs[] = {"y", "mask", "kv"};
  assert_sinks_are_outputs(g, outs, 3);
  kir_graph_destroy(g), ob_free(b);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_input(b, "t", BOOL_T, 0, NULL);
  ob_node(b, "Dropout", "do", "x,,t", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'do' (op_type 'Dropout')", "training_mode");
  /* training mode: the identity with a static ratio of 0, refused with any other (a
   * random mask) */
  const uint8_t yes = 1;
  const float r0 = 0, r5 = 0.5f;
  for (int k = 0; k < 2; k++) {
    b = ob_new(13);
    ob_input(b, "x", F, 1, d3);
    Onnx__TensorProto *tt = ob_tensor(b, "t", BOOL_T, 0, NULL);
    tt->has_raw_data = 1;
    tt->raw_data.len = 1;
    tt->raw_data.data = ob_alloc(b, 1);
    memcpy(tt->raw_data.data, &yes, 1);
    ob_init(b, tt);
    ob_init(b, ob_f32(b, "r", 0, NULL, k ? &r5 : &r0, 1));
    ob_node(b, "Dropout", "do", "x,r,t", "y");
    ob_output(b, "y");
    if (k) {
      expect_err(b, KILN_ERR_UNSUPPORTED, "node 'do' (op_type 'Dropout')", "random mask");
    } else {
      g = import_ok(b);
      assert_int_equal(node(g, "y")->op, KIR_OP_IDENTITY);
      kir_graph_destroy(g), ob_free(b);
    }
  }
}

/* ---------------------------------------------------------------- naming rules --- */

static void test_initializer_input_becomes_default(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_input(b, "w", F, 1, d3);
  const float wv[] = {1, 2, 3};
  ob_init(b, ob_f32(b, "w", 1, d3, wv, 3));
  ob_node(b, "Mul", "m", "x,w", "y");
  ob_output(b, "y");
  kir_graph *g = import_ok(b);
  kir_node *w = node(g, "w");
  assert_int_equal(w->op, KIR_OP_PLACEHOLDER);
  assert_int_equal(w->id, 1);
  const kir_tensor *dflt = kir_attr_tensor(w, "default");
  assert_non_null(dflt);
  assert_f32(dflt, wv, 3);
  kir_graph_destroy(g), ob_free(b);
}

static void test_output_identity_rules(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  const float cv[] = {1, 2, 3};
  ob_init(b, ob_f32(b, "c", 1, d3, cv, 3));
  ob_node(b, "Relu", "r", "x", "h");
  ob_node(b, "Neg", "n", "h", "y");
  ob_node(b, "Abs", "unused", "x", "dead");
  ob_output(b, "h"); /* also used by Neg */
  ob_output(b, "y");
  ob_output(b, "c"); /* an initializer */
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "h/value")->op, KIR_OP_RELU);
  assert_int_equal(node(g, "h")->op, KIR_OP_IDENTITY);
  assert_int_equal(node(g, "c")->op, KIR_OP_IDENTITY);
  assert_int_equal(node(g, "c/value")->op, KIR_OP_CONSTANT);
  assert_null(kir_graph_find(g, "dead"));
  const char *outs[] = {"h", "y", "c"};
  assert_sinks_are_outputs(g, outs, 3);
  kir_graph_destroy(g), ob_free(b);
}

static void test_symbolic_dims_and_overrides(void **st) {
  (void)st;
  const int64_t d[] = {-1, 3};
  ob *b = ob_new(13);
  ob_input(b, "x", F, 2, d);
  ob_node(b, "Relu", "r", "x", "y");
  ob_output(b, "y");
  import_opt(b, NULL, KILN_ERR_UNSUPPORTED, "graph input 'x': dim 0 is symbolic 'N'", NULL);
  konnx_shape sh = {"x", 2, {4, 3}};
  konnx_options o = {.shapes = &sh, .n_shapes = 1};
  kir_graph *g = import_opt(b, &o, KILN_OK, NULL, NULL);
  assert_int_equal(node(g, "x")->type.dims[0], 4);
  kir_graph_destroy(g);
  sh.dims[1] = 5;
  import_opt(b, &o, KILN_ERR_SHAPE, "dim 1 = 5, the file fixes it at 3", NULL);
  ob_free(b);
}

/* ---------------------------------------------------------------- bad input ------ */

static void test_bad_bytes(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(konnx_import(g, junk, sizeof junk, NULL), KILN_ERR_FORMAT);
  assert_non_null(strstr(g->error, "length past the end"));
  assert_int_equal(konnx_import(g, junk, 0, NULL), KILN_ERR_FORMAT); /* empty: no opset */
  const uint8_t group[] = {0x0b};
  assert_int_equal(konnx_import(g, group, 1, NULL), KILN_ERR_FORMAT);
  assert_int_equal(g->n_nodes, 0);
  kir_graph_destroy(g);
}

/* ModelProto.graph -> node -> attribute.g -> node -> ... deeper than the limit. */
static void test_nesting_too_deep(void **st) {
  (void)st;
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap), *tmp = malloc(cap);
  /* innermost: an empty GraphProto; wrap: Attribute{g=...}, Node{attribute=...}, Graph{node=...} */
  for (int level = 0; level < 40; level++) {
    static const uint8_t tags[] = {0x32, 0x2a, 0x0a}; /* attr.g(6), node.attribute(5), graph.node(1) */
    for (int t = 0; t < 3; t++) {
      size_t h = 0;
      tmp[h++] = tags[t];
      size_t v = n;
      do { tmp[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
      memmove(buf + h, buf, n);
      memcpy(buf, tmp, h);
      n += h;
    }
  }
  size_t h = 0;
  tmp[h++] = 0x3a; /* model.graph(7) */
  size_t v = n;
  do { tmp[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
  memmove(buf + h, buf, n);
  memcpy(buf, tmp, h);
  n += h;
  kir_graph *g = kir_graph_create();
  assert_int_equal(konnx_import(g, buf, n, NULL), KILN_ERR_LIMIT);
  assert_non_null(strstr(g->error, "nested deeper than 64"));
  kir_graph_destroy(g);
  free(buf), free(tmp);
}

static void test_opsets_and_domains(void **st) {
  (void)st;
  for (int k = 0; k < 2; k++) {
    ob *b = ob_new(k ? 18 : 0);
    ob_input(b, "x", F, 1, d3);
    ob_node(b, "Relu", "r", "x", "y");
    ob_output(b, "y");
    expect_err(b, KILN_ERR_UNSUPPORTED, k ? "opset 18 of the default domain" : "opset 0 of the default domain", "7 to 17");
  }
  /* below opset 7: only operators whose definition is the same as at opset 7 */
  ob *b = ob_new(6);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r", "x", "r_out");
  ob_node(b, "Add", "a", "r_out,x", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "opset 6: operator Add at that opset differs", "7 to 17");
  b = ob_new(6);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r", "x", "y");
  ob_output(b, "y");
  kir_graph *g6 = import_ok(b);
  assert_non_null(kir_graph_find(g6, "y"));
  kir_graph_destroy(g6);
  ob_free(b);
  /* a model that imports only another domain (ONNX's training operators) */
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r", "x", "y");
  ob_output(b, "y");
  b->m.opset_import[0]->domain = ob_str(b, "ai.onnx.preview.training");
  expect_err(b, KILN_ERR_UNSUPPORTED, "imports only domain 'ai.onnx.preview.training'", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  Onnx__NodeProto *n = ob_node(b, "Relu", "r", "x", "y");
  n->domain = ob_str(b, "com.microsoft");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'r' (op_type 'Relu'): domain 'com.microsoft'", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Foo", "n1", "x", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'n1' (op_type 'Foo'): operator Foo is not supported", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  n = ob_node(b, "If", "branch", "x", "y");
  Onnx__AttributeProto *a = ob_attr(b, n, "then_branch", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
  a->g = ob_alloc(b, sizeof(Onnx__GraphProto));
  onnx__graph_proto__init(a->g);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_UNSUPPORTED, "node 'branch' (op_type 'If'): attribute 'then_branch' holds a subgraph", NULL);
}

static void test_graph_structure_errors(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r", "x,", "y");
  ob_node(b, "Neg", "n", "missing", "z");
  ob_output(b, "z");
  expect_err(b, KILN_ERR_GRAPH, "node 'n' (op_type 'Neg'): input 'missing' is not defined", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Add", "a1", "x,q", "p");
  ob_node(b, "Neg", "n1", "p", "q");
  ob_output(b, "q");
  expect_err(b, KILN_ERR_GRAPH, "is on a cycle", "op_type");
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r1", "x", "y");
  ob_node(b, "Neg", "r2", "x", "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_GRAPH, "node 'r2' (op_type 'Neg'): value name 'y' is defined twice", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Relu", "r1", "x", "y");
  ob_output(b, "y");
  ob_output(b, "y");
  expect_err(b, KILN_ERR_GRAPH, "graph output 'y' is listed twice", NULL);
  b = ob_new(13);
  ob_input(b, "x", F, 1, d3);
  ob_node(b, "Softmax", "sm", "x", "y");
  ob_attr_int(b, b->g.node[0], "axis", 5);
  ob_output(b, "y");
  expect_err(b, KILN_ERR_SHAPE, "node 'sm' (op_type 'Softmax'): attribute 'axis' = 5 is out of range for rank 1", NULL);
  b = ob_new(13);
  ob_input(b, "x\x01q", F, 1, d3);
  ob_node(b, "Relu", "r1", "x\x01q", "y");
  ob_node(b, "Relu", "", "nothere", "z");
  ob_output(b, "z");
  expect_err(b, KILN_ERR_GRAPH, "node #1 (op_type 'Relu')", "'nothere'");
}

static void test_initializer_errors(void **st) {
  (void)st;
  const int64_t neg[] = {-2};
  struct { int kind; kiln_status s; const char *msg; } cases[] = {
      {0, KILN_ERR_FORMAT, "raw_data holds 8 bytes, dtype f32 and shape need 12"},
      {1, KILN_ERR_FORMAT, "float_data holds 2 values, the shape needs 3"},
      {2, KILN_ERR_FORMAT, "negative dim -2 at axis 0"},
      {3, KILN_ERR_UNSUPPORTED, "element type COMPLEX64 is not supported"},
      {4, KILN_ERR_UNSUPPORTED, "external data ('w.bin') is refused"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ob *b = ob_new(13);
    ob_input(b, "x", F, 1, d3);
    const float v[] = {1, 2, 3};
    Onnx__TensorProto *t = ob_f32(b, "w", 1, d3, v, cases[i].kind == 1 ? 2 : 3);
    if (cases[i].kind == 0) {
      t->n_float_data = 0;
      t->has_raw_data = 1;
      t->raw_data.len = 8;
      t->raw_data.data = ob_alloc(b, 8);
    }
    if (cases[i].kind == 2) t->dims = (int64_t *)neg;
    if (cases[i].kind == 3) t->data_type = 14; /* COMPLEX64 */
    if (cases[i].kind == 4) {
      Onnx__StringStringEntryProto *e = ob_alloc(b, sizeof *e);
      onnx__string_string_entry_proto__init(e);
      e->key = ob_str(b, "location");
      e->value = ob_str(b, "w.bin");
      OB_PUSH(b, t->n_external_data, t->external_data, e);
      t->has_data_location = 1;
      t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    }
    ob_init(b, t);
    ob_node(b, "Add", "a", "x,w", "y");
    ob_output(b, "y");
    expect_err(b, cases[i].s, "initializer 'w'", cases[i].msg);
  }
}


/* ---------------------------------------------------------------- element types -- */

/* Packs t, decodes it with konnx_read_tensor and checks dtype and bytes. */
static void expect_decoded(Onnx__TensorProto *t, kiln_dtype dt, const void *bytes, size_t nbytes) {
  uint8_t buf[512];
  size_t n = onnx__tensor_proto__pack(t, buf);
  kir_tensor *x = NULL;
  char err[256] = "";
  kiln_status s = konnx_read_tensor(buf, n, &x, NULL, err, sizeof err);
  if (s != KILN_OK) fail_msg("%s: %s", kiln_dtype_name(dt), err);
  assert_int_equal(x->type.dtype, dt);
  assert_int_equal(kir_type_nbytes(&x->type), (int64_t)nbytes);
  assert_memory_equal(x->data, bytes, nbytes);
  kir_tensor_free(x);
}

/* UINT8..UINT64, INT8, INT16, FLOAT16, BFLOAT16: the typed field ONNX stores each in
 * (int32_data for the narrow ones and the 16-bit float patterns, uint64_data for
 * UINT32/UINT64) and raw_data, little-endian. */
static void test_new_element_types_decode(void **st) {
  (void)st;
  const uint8_t u8[] = {0, 200, 255};
  const int8_t i8[] = {-128, -1, 127};
  const uint16_t u16[] = {0, 65535, 1234};
  const int16_t i16[] = {-32768, -1, 32767};
  const uint32_t u32[] = {0, 4294967295u, 7};
  const uint64_t u64[] = {0, UINT64_MAX, (uint64_t)1 << 63};
  const uint16_t f16[] = {0x3c00, 0xc000, 0x7c00};  /* 1, -2, inf */
  const uint16_t bf16[] = {0x3f80, 0xc040, 0x7fc0}; /* 1, -3, NaN */
  struct { int32_t elem; kiln_dtype dt; const void *v; size_t size; bool u64field; } cases[] = {
      {2, KILN_U8, u8, 1, false},    {3, KILN_I8, i8, 1, false},   {4, KILN_U16, u16, 2, false},
      {5, KILN_I16, i16, 2, false},  {12, KILN_U32, u32, 4, true}, {13, KILN_U64, u64, 8, true},
      {10, KILN_F16, f16, 2, false}, {16, KILN_BF16, bf16, 2, false},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    ob *b = ob_new(13);
    Onnx__TensorProto *t = ob_tensor(b, "t", cases[c].elem, 1, d3);
    int32_t i32[3];
    uint64_t w64[3];
    for (int k = 0; k < 3; k++) {
      const uint8_t *p = (const uint8_t *)cases[c].v + (size_t)k * cases[c].size;
      switch (cases[c].dt) {
      case KILN_U8: i32[k] = *p; break;
      case KILN_I8: i32[k] = *(const int8_t *)p; break;
      case KILN_I16: i32[k] = *(const int16_t *)(const void *)p; break;
      case KILN_U32: w64[k] = *(const uint32_t *)(const void *)p; break;
      case KILN_U64: w64[k] = *(const uint64_t *)(const void *)p; break;
      default: i32[k] = *(const uint16_t *)(const void *)p; break; /* u16, f16, bf16 bits */
      }
    }
    if (cases[c].u64field) t->n_uint64_data = 3, t->uint64_data = w64;
    else t->n_int32_data = 3, t->int32_data = i32;
    expect_decoded(t, cases[c].dt, cases[c].v, 3 * cases[c].size);
    /* raw_data: the same bytes */
    t->n_uint64_data = t->n_int32_data = 0;
    t->has_raw_data = 1;
    t->raw_data.data = (uint8_t *)cases[c].v;
    t->raw_data.len = 3 * cases[c].size;
    expect_decoded(t, cases[c].dt, cases[c].v, 3 * cases[c].size);
    ob_free(b);
  }
  /* a UINT32 tensor in int32_data (the wrong field) is a format error naming the field */
  ob *b = ob_new(13);
  Onnx__TensorProto *t = ob_tensor(b, "t", 12, 1, d3);
  int32_t wrong[] = {1, 2, 3};
  t->n_int32_data = 3, t->int32_data = wrong;
  uint8_t buf[256];
  size_t n = onnx__tensor_proto__pack(t, buf);
  kir_tensor *x = NULL;
  char err[256];
  assert_int_equal(konnx_read_tensor(buf, n, &x, NULL, err, sizeof err), KILN_ERR_FORMAT);
  assert_non_null(strstr(err, "uint64_data holds 0 values, the shape needs 3"));
  ob_free(b);
}

/* Graph inputs, Cast's `to`, Constant and ConstantOfShape values of the new types. */
static void test_new_element_types_in_graphs(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", 2 /* UINT8 */, 1, d3);
  ob_input(b, "h", 10 /* FLOAT16 */, 1, d3);
  Onnx__NodeProto *cast = ob_node(b, "Cast", "c", "x", "y");
  ob_attr_int(b, cast, "to", 16 /* BFLOAT16 */);
  Onnx__NodeProto *k = ob_node(b, "Constant", "k", "", "kv");
  Onnx__TensorProto *kt = ob_tensor(b, "", 13 /* UINT64 */, 1, d2);
  uint64_t kv[] = {UINT64_MAX, 5};
  kt->n_uint64_data = 2, kt->uint64_data = kv;
  ob_attr_tensor(b, k, "value", kt);
  const int64_t shape[] = {2};
  ob_init(b, ob_i64(b, "shape", 1, d1, shape, 1));
  Onnx__NodeProto *cs = ob_node(b, "ConstantOfShape", "cs", "shape", "z");
  Onnx__TensorProto *zt = ob_tensor(b, "", 3 /* INT8 */, 1, d1);
  int32_t zv[] = {-7};
  zt->n_int32_data = 1, zt->int32_data = zv;
  ob_attr_tensor(b, cs, "value", zt);
  ob_node(b, "Identity", "hi", "h", "hh");
  ob_output(b, "y");
  ob_output(b, "kv");
  ob_output(b, "z");
  ob_output(b, "hh");
  kir_graph *g = import_ok(b);
  assert_int_equal(node(g, "x")->type.dtype, KILN_U8);
  assert_int_equal(node(g, "h")->type.dtype, KILN_F16);
  assert_int_equal(node(g, "hh")->type.dtype, KILN_F16);
  assert_int_equal(node(g, "y")->op, KIR_OP_CAST);
  assert_int_equal(node(g, "y")->type.dtype, KILN_BF16);
  const kir_tensor *kvt = kir_attr_tensor(node(g, "kv/value"), "value");
  assert_int_equal(kvt->type.dtype, KILN_U64);
  assert_memory_equal(kvt->data, kv, sizeof kv);
  const kir_node *zn = node(g, "z");
  const kir_tensor *zvt = kir_attr_tensor(zn->op == KIR_OP_CONSTANT ? zn : node(g, "z/value"), "value");
  assert_int_equal(zvt->type.dtype, KILN_I8);
  assert_int_equal(zvt->type.dims[0], 2);
  assert_int_equal(((const int8_t *)zvt->data)[0], -7);
  assert_int_equal(((const int8_t *)zvt->data)[1], -7);
  kir_graph_destroy(g), ob_free(b);
}

/* uint8 arithmetic through the interpreter: wraps at 8 bits, compares unsigned. */
static void test_uint8_add_and_max_run(void **st) {
  (void)st;
  ob *b = ob_new(13);
  ob_input(b, "x", 2, 1, d3);
  Onnx__TensorProto *w = ob_tensor(b, "w", 2, 1, d3);
  int32_t wv[] = {100, 1, 255};
  w->n_int32_data = 3, w->int32_data = wv;
  ob_init(b, w);
  ob_node(b, "Add", "a", "x,w", "s");
  ob_node(b, "Max", "m", "x,w", "mx");
  ob_output(b, "s");
  ob_output(b, "mx");
  kir_graph *g = import_ok(b);
  kir_type ty = {.dtype = KILN_U8, .rank = 1, .dims = {3}};
  kir_tensor *x = kir_tensor_new(&ty);
  const uint8_t xv[] = {200, 2, 128};
  memcpy(x->data, xv, 3);
  kir_tensor *s = run1(g, "x", x, "s"), *mx = run1(g, "x", x, "mx");
  const uint8_t ws[] = {44, 3, 127}, wm[] = {200, 2, 255};
  assert_int_equal(s->type.dtype, KILN_U8);
  assert_memory_equal(s->data, ws, 3);
  assert_memory_equal(mx->data, wm, 3);
  kir_tensor_free(x), kir_tensor_free(s), kir_tensor_free(mx), kir_graph_destroy(g), ob_free(b);
}

/* External data: confined to model_dir, relative, no "..", no symlinks, in range. */
static void test_external_data(void **st) {
  (void)st;
  char dir[512];
  snprintf(dir, sizeof dir, "%s", kt_path("onnx-ext"));
  mkdir(dir, 0700);
  char p[700];
  snprintf(p, sizeof p, "%s/w.bin", dir);
  FILE *f = fopen(p, "wb");
  const float v[] = {1, 2, 3};
  fwrite("PAD!", 1, 4, f), fwrite(v, sizeof v, 1, f), fclose(f);
  char l[700];
  snprintf(l, sizeof l, "%s/link.bin", dir);
  unlink(l);
  assert_int_equal(symlink("w.bin", l), 0);
  struct { const char *loc, *off; kiln_status s; const char *msg; } cases[] = {
      {"w.bin", "4", KILN_OK, NULL},
      {"../w.bin", "4", KILN_ERR_PATH, "has a '.' or '..' component"},
      {"/etc/passwd", "0", KILN_ERR_PATH, "is absolute"},
      {"link.bin", "4", KILN_ERR_PATH, "symlinks refused"},
      {"w.bin", "8", KILN_ERR_FORMAT, "offset 8 length 12"},
      {"absent.bin", "0", KILN_ERR_PATH, "cannot be opened"},
      {"w.bin", "-1", KILN_ERR_FORMAT, "is not a byte count"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ob *b = ob_new(13);
    ob_input(b, "x", F, 1, d3);
    Onnx__TensorProto *t = ob_tensor(b, "w", F, 1, d3);
    const char *kv[2][2] = {{"location", cases[i].loc}, {"offset", cases[i].off}};
    for (int k = 0; k < 2; k++) {
      Onnx__StringStringEntryProto *e = ob_alloc(b, sizeof *e);
      onnx__string_string_entry_proto__init(e);
      e->key = ob_str(b, kv[k][0]);
      e->value = ob_str(b, kv[k][1]);
      OB_PUSH(b, t->n_external_data, t->external_data, e);
    }
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    ob_init(b, t);
    ob_node(b, "Add", "a", "x,w", "y");
    ob_output(b, "y");
    konnx_options o = {.allow_external_data = true, .model_dir = dir};
    kir_graph *g = import_opt(b, &o, cases[i].s, cases[i].msg, cases[i].s ? "initializer 'w'" : NULL);
    if (g) {
      assert_f32(kir_attr_tensor(node(g, "w"), "value"), v, 3);
      kir_graph_destroy(g);
    }
    ob_free(b);
  }
}

/* Every allocation failing in turn: an error (never a crash), nothing leaked. */
static void test_out_of_memory(void **st) {
  (void)st;
  ob *b = ob_new(13);
  const int64_t d[] = {2, 3, 4}, m1[] = {-1, 4};
  ob_input(b, "x", F, 3, d);
  ob_init(b, ob_i64(b, "s", 1, d2, m1, 2));
  ob_node(b, "Reshape", "r", "x,s", "h");
  ob_node(b, "Softmax", "sm", "h", "y");
  ob_output(b, "y");
  ob_output(b, "h");
  size_t len;
  uint8_t *buf = ob_pack(b, &len);
  for (long n = 0;; n++) {
    long live = kir_alloc_live();
    kir_graph *g = kir_graph_create();
    if (!g) continue;
    kir_alloc_fail_after(n);
    kiln_status s = konnx_import(g, buf, len, NULL);
    kir_alloc_fail_after(-1);
    kir_graph_destroy(g);
    assert_int_equal(kir_alloc_live(), live);
    if (s == KILN_OK) break;
    assert_int_equal(s, KILN_ERR_NOMEM);
    assert_true(n < 100000);
  }
  free(buf), ob_free(b);
}

/* ---------------------------------------------------------------- tensors, show -- */

static void test_read_tensor(void **st) {
  (void)st;
  ob *b = ob_new(13);
  const float v[] = {1.5f, 2, 3};
  Onnx__TensorProto *t = ob_f32(b, "inp\x01", 1, d3, v, 3);
  uint8_t buf[256];
  size_t n = onnx__tensor_proto__pack(t, buf);
  kir_tensor *x;
  char *name, err[256];
  assert_int_equal(konnx_read_tensor(buf, n, &x, &name, err, sizeof err), KILN_OK);
  assert_string_equal(name, "inp\x01");
  assert_f32(x, v, 3);
  kir_tensor_free(x), kir_free(name);
  t->n_float_data = 0;
  t->has_raw_data = 1;
  t->raw_data.data = (uint8_t *)v;
  t->raw_data.len = sizeof v;
  n = onnx__tensor_proto__pack(t, buf);
  assert_int_equal(konnx_read_tensor(buf, n, &x, NULL, err, sizeof err), KILN_OK);
  assert_f32(x, v, 3);
  kir_tensor_free(x);
  t->raw_data.len = 7;
  n = onnx__tensor_proto__pack(t, buf);
  assert_int_equal(konnx_read_tensor(buf, n, &x, &name, err, sizeof err), KILN_ERR_FORMAT);
  assert_null(x), assert_null(name);
  assert_non_null(strstr(err, "tensor 'inp\\x01': raw_data holds 7 bytes"));
  t->data_type = 8; /* STRING */
  n = onnx__tensor_proto__pack(t, buf);
  assert_int_equal(konnx_read_tensor(buf, n, &x, NULL, err, sizeof err), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(err, "element type STRING"));
  ob_free(b);
}

static void test_describe_and_supported_ops(void **st) {
  (void)st;
  ob *b = ob_new(13);
  const int64_t d[] = {-1, 3};
  ob_input(b, "x", F, 2, d);
  ob_node(b, "Relu", "r", "x", "h");
  ob_node(b, "TopK", "t", "h", "y");
  ob_output(b, "y");
  size_t len;
  uint8_t *buf = ob_pack(b, &len);
  const char *path = kt_path("m.bin");
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, len, f), fclose(f);
  assert_true(konnx_looks_like_onnx(path));
  char err[256], *txt = NULL;
  size_t tl = 0;
  for (int json = 0; json < 2; json++) {
    FILE *o = open_memstream(&txt, &tl);
    assert_int_equal(konnx_describe(path, o, json, err, sizeof err), KILN_OK);
    fclose(o);
    assert_non_null(strstr(txt, json ? "\"op_type\": \"TopK\"" : "TopK: 1  UNSUPPORTED"));
    assert_non_null(strstr(txt, json ? "\"shape\": [\"N\", 3]" : "x: FLOAT [N,3]"));
    free(txt);
  }
  f = fopen(path, "wb");
  fwrite("garbage!", 1, 8, f), fclose(f);
  assert_false(konnx_looks_like_onnx(path));
  FILE *o = open_memstream(&txt, &tl);
  assert_int_not_equal(konnx_describe(path, o, false, err, sizeof err), KILN_OK);
  fclose(o);
  assert_int_equal(tl, 0);
  free(txt), free(buf), ob_free(b);
  const char *const *ops = konnx_supported_ops();
  int n = 0;
  for (; ops[n]; n++)
    if (n) assert_true(strcmp(ops[n - 1], ops[n]) < 0);
  assert_true(n >= 50);
}

/* ---------------------------------------------------------------- testdata ------- */

#define TESTDATA "/usr/share/libonnx-testdata/data/node"

static void run_case(const char *name) {
  char p[512], err[512];
  snprintf(p, sizeof p, TESTDATA "/%s/model.onnx", name);
  kir_graph *g = kir_graph_create();
  if (konnx_import_file(g, p, NULL) != KILN_OK) fail_msg("%s: %s", name, g->error);
  kir_feed feeds[8];
  kir_tensor *ins[8];
  int nf = 0;
  for (int i = 0; i < 8; i++) {
    char *nm;
    snprintf(p, sizeof p, TESTDATA "/%s/test_data_set_0/input_%d.pb", name, i);
    if (access(p, R_OK) != 0) break;
    assert_int_equal(konnx_read_tensor_file(p, &ins[nf], &nm, err, sizeof err), KILN_OK);
    kir_node *in = kir_graph_find(g, nm);
    kir_free(nm);
    if (!in) { /* an input no output needs (Shape's) is not imported */
      kir_tensor_free(ins[nf]);
      continue;
    }
    feeds[nf].node = in->id;
    feeds[nf].value = ins[nf];
    nf++;
  }
  char *on;
  kir_tensor *want, *got;
  snprintf(p, sizeof p, TESTDATA "/%s/test_data_set_0/output_0.pb", name);
  assert_int_equal(konnx_read_tensor_file(p, &want, &on, err, sizeof err), KILN_OK);
  int32_t fetch = node(g, on)->id;
  if (kir_interp_run(g, NULL, feeds, nf, &fetch, 1, NULL, 0, &got) != KILN_OK) fail_msg("%s: %s", name, g->error);
  kt_assert_close(got, want, want->type.dtype == KILN_F32 ? 1e-5 : kt_tolerance(want->type.dtype));
  kir_tensor_free(got), kir_tensor_free(want), kir_free(on);
  for (int i = 0; i < nf; i++) kir_tensor_free(ins[i]);
  kir_graph_destroy(g);
}

static void test_libonnx_testdata(void **st) {
  (void)st;
  DIR *d = opendir(TESTDATA);
  if (!d) {
    print_message("skipped: %s is absent (Debian package libonnx-testdata)\n", TESTDATA);
    skip();
  }
  closedir(d);
  static const char *const cases[] = {
      "test_add_bcast", "test_gemm_all_attributes", "test_matmul_3d", "test_softmax_axis_0",
      "test_conv_with_strides_and_asymmetric_padding", "test_maxpool_2d_same_upper", "test_averagepool_2d_pads",
      "test_batchnorm_epsilon", "test_gather_1", "test_concat_3d_axis_negative_1", "test_transpose_all_permutations_3",
      "test_cast_FLOAT_to_DOUBLE", "test_where_example", "test_argmax_negative_axis_keepdims_example", "test_flatten_axis2",
      "test_reduce_mean_keepdims_random", "test_clip_example", "test_leakyrelu", "test_erf", "test_logsoftmax_axis_1",
      "test_globalaveragepool", "test_shape_start_1_end_negative_1", "test_dropout_default_mask", "test_pow_types_float32_int64",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char p[512];
    snprintf(p, sizeof p, TESTDATA "/%s", cases[i]);
    if (access(p, R_OK) != 0) continue;
    /* test_globalaveragepool is opset 1: imported because GlobalAveragePool is unchanged up to 7 */
    run_case(cases[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_broadcast_and_names),
      cmocka_unit_test(test_pow_mixed_types_casts_exponent),
      cmocka_unit_test(test_variadic_max_and_mean),
      cmocka_unit_test(test_gemm_all_attributes),
      cmocka_unit_test(test_matmul_1d_operands),
      cmocka_unit_test(test_reduce_axes_attribute_vs_input),
      cmocka_unit_test(test_softmax_coercion_before_13),
      cmocka_unit_test(test_static_shape_chain),
      cmocka_unit_test(test_reshape_zero_and_allowzero),
      cmocka_unit_test(test_squeeze_unsqueeze_opsets),
      cmocka_unit_test(test_clip_opsets_and_dynamic_bounds),
      cmocka_unit_test(test_slice_attributes_vs_inputs),
      cmocka_unit_test(test_pad_constant_mode),
      cmocka_unit_test(test_fixed_input_values),
      cmocka_unit_test(test_conv_auto_pad_and_kernel_check),
      cmocka_unit_test(test_pools_and_batchnorm),
      cmocka_unit_test(test_dropout_and_constants_as_outputs),
      cmocka_unit_test(test_initializer_input_becomes_default),
      cmocka_unit_test(test_output_identity_rules),
      cmocka_unit_test(test_symbolic_dims_and_overrides),
      cmocka_unit_test(test_bad_bytes),
      cmocka_unit_test(test_nesting_too_deep),
      cmocka_unit_test(test_opsets_and_domains),
      cmocka_unit_test(test_graph_structure_errors),
      cmocka_unit_test(test_initializer_errors),
      cmocka_unit_test(test_new_element_types_decode),
      cmocka_unit_test(test_new_element_types_in_graphs),
      cmocka_unit_test(test_uint8_add_and_max_run),
      cmocka_unit_test(test_external_data),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_read_tensor),
      cmocka_unit_test(test_describe_and_supported_ops),
      cmocka_unit_test(test_libonnx_testdata),
  };
  return cmocka_run_group_tests_name("onnx", tests, NULL, NULL);
}
