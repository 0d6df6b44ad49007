/* test_frontend_nn.c — cmocka tests of kiln.h's builders for the ONNX-era ops: the
 * attributes each writes (only what differs from the default), the inferred types, the
 * argument errors, and small sessions whose results are checked by hand (a LeNet-style
 * conv -> relu -> max_pool -> flatten -> matmul -> log_softmax net among them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt.h"
#include "../../frontend/kiln_internal.h"
#include "kiln.h"

#define OK(x) assert_int_equal((x), KILN_OK)

static kiln_node *ph(kiln_graph *g, const char *name, kiln_dtype t, const int64_t *dims,
                     int rank) {
  kiln_node *n = NULL;
  OK(kiln_placeholder(g, name, t, dims, rank, &n));
  return n;
}

static kiln_node *cst(kiln_graph *g, const char *name, kiln_dtype t, const int64_t *dims,
                      int rank, const void *v) {
  kiln_tensor *x = kiln_tensor_create(t, dims, rank, v);
  assert_non_null(x);
  kiln_node *n = NULL;
  OK(kiln_constant(g, name, x, &n));
  kiln_tensor_destroy(x);
  return n;
}

static void assert_type(const kiln_node *n, const char *op, kiln_dtype t, int rank,
                        const int64_t *dims) {
  assert_non_null(n);
  assert_string_equal(kiln_node_op(n), op);
  assert_int_equal(kiln_node_dtype(n), t);
  assert_int_equal(kiln_node_rank(n), rank);
  for (int i = 0; i < rank; i++) assert_int_equal(kiln_node_dim(n, i), dims[i]);
}

static const kir_attr *attr(const kiln_node *n, const char *name) {
  return kir_attr_find(fe_node(n), name);
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* Runs one fetch with up to one feed; returns the tensor (caller destroys). */
static kiln_tensor *run1(kiln_graph *g, kiln_node *fetch, kiln_node *fed, kiln_tensor *value) {
  kiln_session *s = NULL;
  OK(kiln_session_create(g, NULL, &s));
  kiln_feed feed = {fed, value};
  kiln_tensor *out = NULL;
  kiln_status st = kiln_session_run(s, fed ? &feed : NULL, fed ? 1 : 0, &fetch, 1, NULL, 0, &out);
  if (st != KILN_OK) fail_msg("run: %s", kiln_session_error(s));
  kiln_session_destroy(s);
  return out;
}

/* ---------------------------------------------------------------- builders ------ */

static void test_elementwise_and_reductions(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const int64_t d23[2] = {2, 3}, d2[1] = {2}, d21[2] = {2, 1};
  kiln_node *a = ph(g, "a", KILN_F32, d23, 2), *n = NULL;
  OK(kiln_pow(g, NULL, a, a, &n));
  assert_type(n, "pow", KILN_F32, 2, d23);
  OK(kiln_abs(g, NULL, a, &n));
  assert_type(n, "abs", KILN_F32, 2, d23);
  OK(kiln_erf(g, NULL, a, &n));
  assert_type(n, "erf", KILN_F32, 2, d23);
  OK(kiln_leaky_relu(g, NULL, a, 0.2, &n));
  assert_type(n, "leaky_relu", KILN_F32, 2, d23);
  assert_true(attr(n, "alpha")->u.f == 0.2);
  OK(kiln_gelu(g, NULL, a, false, &n));
  assert_null(attr(n, "approximate"));
  OK(kiln_gelu(g, NULL, a, true, &n));
  assert_int_equal(attr(n, "approximate")->u.i, 1);
  const int64_t ax1[1] = {1};
  OK(kiln_reduce_min(g, NULL, a, ax1, 1, false, &n));
  assert_type(n, "reduce_min", KILN_F32, 1, d2);
  OK(kiln_log_softmax(g, NULL, a, -1, &n));
  assert_type(n, "log_softmax", KILN_F32, 2, d23);
  OK(kiln_argmax(g, NULL, a, 1, true, false, &n));
  assert_type(n, "argmax", KILN_I64, 2, d21);
  assert_int_equal(attr(n, "keep_dims")->u.i, 1);
  assert_null(attr(n, "select_last_index"));
  OK(kiln_argmin(g, NULL, a, -1, false, true, &n));
  assert_type(n, "argmin", KILN_I64, 1, d2);
  assert_int_equal(attr(n, "select_last_index")->u.i, 1);
  OK(kiln_cast(g, NULL, a, KILN_I32, &n));
  assert_type(n, "cast", KILN_I32, 2, d23);
  kiln_node *cond = NULL;
  OK(kiln_cast(g, "cond", a, KILN_BOOL, &cond));
  OK(kiln_where(g, NULL, cond, a, a, &n));
  assert_type(n, "where", KILN_F32, 2, d23);
  assert_int_equal(kiln_graph_status(g), KILN_OK);
  /* where's condition must be bool: the builder reports inference's error, names the node */
  assert_int_equal(kiln_where(g, "bad_where", a, a, a, &n), KILN_ERR_TYPE);
  assert_null(n);
  assert_contains(kiln_graph_error(g), "bad_where");
  assert_null(kiln_graph_find(g, "bad_where")); /* rolled back */
  kiln_graph_destroy(g);
}

static void test_shape_ops(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const int64_t d23[2] = {2, 3}, d43[2] = {4, 3}, d4[1] = {4}, d21[2] = {2, 1}, d3[1] = {3};
  kiln_node *a = ph(g, "a", KILN_F32, d23, 2), *n = NULL;
  kiln_node *two[2] = {a, a};
  OK(kiln_concat(g, NULL, two, 2, 0, &n));
  assert_type(n, "concat", KILN_F32, 2, d43);
  assert_int_equal(kiln_concat(g, NULL, NULL, 0, 0, &n), KILN_ERR_ARGUMENT);
  const int64_t st[1] = {-1}, en[1] = {INT64_MIN}, ax[1] = {1}, sp[1] = {-2};
  OK(kiln_slice(g, NULL, a, st, en, ax, sp, 1, &n)); /* columns 2, 0 */
  const int64_t d22[2] = {2, 2};
  assert_type(n, "slice", KILN_F32, 2, d22);
  const int64_t s0[1] = {1}, e0[1] = {2};
  OK(kiln_slice(g, NULL, a, s0, e0, ax, NULL, 1, &n));
  assert_type(n, "slice", KILN_F32, 2, d21);
  assert_null(attr(n, "steps"));
  const int32_t idx[4] = {0, -1, 1, 0};
  kiln_node *ind = cst(g, "ind", KILN_I32, d4, 1, idx);
  OK(kiln_gather(g, NULL, a, ind, 1, &n));
  const int64_t d24[2] = {2, 4};
  assert_type(n, "gather", KILN_F32, 2, d24);
  OK(kiln_gather(g, NULL, ind, ind, 0, &n));
  assert_type(n, "gather", KILN_I32, 1, d4);
  assert_null(attr(n, "axis"));
  (void)d3;
  kiln_graph_destroy(g);
}

static void test_conv_pool_bn(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const int64_t dx[4] = {1, 4, 8, 8}, dw[4] = {6, 2, 3, 3}, db[1] = {6}, dc[1] = {4};
  kiln_node *x = ph(g, "x", KILN_F32, dx, 4), *w = ph(g, "w", KILN_F32, dw, 4);
  kiln_node *b = ph(g, "b", KILN_F32, db, 1), *n = NULL;
  kiln_conv_params p = {.strides = {2, 2}, .pads = {1, 1, 1, 1}, .group = 2};
  OK(kiln_conv(g, "conv", x, w, b, &p, &n));
  const int64_t dy[4] = {1, 6, 4, 4};
  assert_type(n, "conv", KILN_F32, 4, dy);
  assert_int_equal(attr(n, "group")->u.i, 2);
  assert_null(attr(n, "dilations")); /* defaults are not written */
  assert_int_equal(attr(n, "pads")->u.ints.n, 4);
  OK(kiln_conv(g, "conv_nobias", x, w, NULL, &p, &n));
  assert_int_equal(fe_node(n)->n_inputs, 2);
  /* a kernel with the wrong channel count: inference names the node */
  kiln_conv_params p1 = {0};
  assert_int_not_equal(kiln_conv(g, "bad_conv", x, w, NULL, &p1, &n), KILN_OK);
  assert_contains(kiln_graph_error(g), "bad_conv");
  const int64_t d2[2] = {4, 8};
  kiln_node *flat = ph(g, "flat", KILN_F32, d2, 2);
  assert_int_equal(kiln_conv(g, "conv2d_of_matrix", flat, w, NULL, NULL, &n), KILN_ERR_ARGUMENT);
  assert_contains(kiln_graph_error(g), "rank 3 to 5");

  kiln_pool_params pp = {.kernel = {2, 2}, .strides = {2, 2}};
  OK(kiln_max_pool(g, NULL, x, &pp, &n));
  const int64_t dp[4] = {1, 4, 4, 4};
  assert_type(n, "max_pool", KILN_F32, 4, dp);
  pp.count_include_pad = true;
  OK(kiln_avg_pool(g, NULL, x, &pp, &n));
  assert_int_equal(attr(n, "count_include_pad")->u.i, 1);
  assert_int_equal(kiln_max_pool(g, NULL, x, &pp, &n), KILN_ERR_ARGUMENT);
  assert_int_equal(kiln_max_pool(g, NULL, x, NULL, &n), KILN_ERR_ARGUMENT);

  kiln_node *c4 = ph(g, "c4", KILN_F32, dc, 1);
  OK(kiln_batch_norm(g, NULL, x, c4, c4, c4, c4, 1e-5, &n));
  assert_type(n, "batch_norm", KILN_F32, 4, dx);
  kiln_graph_destroy(g);
}

/* ---------------------------------------------------------------- sessions ------ */

static void test_placeholder_with_default(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const int64_t d2[1] = {2};
  const float dv[2] = {1.5f, -2.0f}, fv[2] = {3.0f, 4.0f};
  kiln_tensor *def = kiln_tensor_create(KILN_F32, d2, 1, dv);
  kiln_node *p = NULL, *n = NULL;
  OK(kiln_placeholder_with_default(g, "p", def, &p));
  assert_type(p, "placeholder", KILN_F32, 1, d2);
  OK(kiln_abs(g, "y", p, &n));
  kiln_tensor *out = run1(g, n, NULL, NULL); /* nothing fed: the default */
  const float *o = kiln_tensor_data(out);
  assert_true(o[0] == 1.5f && o[1] == 2.0f);
  kiln_tensor_destroy(out);
  kiln_tensor *fed = kiln_tensor_create(KILN_F32, d2, 1, fv);
  out = run1(g, n, p, fed); /* fed: overrides */
  o = kiln_tensor_data(out);
  assert_true(o[0] == 3.0f && o[1] == 4.0f);
  kiln_tensor_destroy(out);
  kiln_tensor_destroy(fed);
  kiln_tensor_destroy(def);
  assert_int_equal(kiln_placeholder_with_default(g, "q", NULL, &p), KILN_ERR_ARGUMENT);
  kiln_graph_destroy(g);
}

/* A LeNet-style net on a 1x1x6x6 image with hand-picked weights:
 * conv 3x3 (2 filters: identity-center and box sum) + bias -> relu -> max_pool 2x2 ->
 * reshape [1, 8] -> matmul [8, 2] -> log_softmax. Every step is checked by hand. */
static void test_small_cnn_session(void **state) {
  (void)state;
  kiln_graph *g = kiln_graph_create();
  const int64_t dx[4] = {1, 1, 6, 6}, dw[4] = {2, 1, 3, 3}, db[1] = {2};
  float xv[36], wv[18] = {0}, bv[2] = {0.0f, -20.0f};
  for (int i = 0; i < 36; i++) xv[i] = (float)(i % 7) - 2.0f;
  wv[4] = 1.0f;                           /* filter 0: the center pixel */
  for (int i = 9; i < 18; i++) wv[i] = 1; /* filter 1: the 3x3 box sum */
  kiln_node *x = ph(g, "x", KILN_F32, dx, 4);
  kiln_node *w = cst(g, "w", KILN_F32, dw, 4, wv), *b = cst(g, "b", KILN_F32, db, 1, bv);
  kiln_node *c = NULL, *r = NULL, *m = NULL, *f = NULL, *fc = NULL, *y = NULL;
  OK(kiln_conv(g, "conv", x, w, b, NULL, &c)); /* [1, 2, 4, 4] */
  OK(kiln_relu(g, "relu", c, &r));
  kiln_pool_params pp = {.kernel = {2, 2}, .strides = {2, 2}};
  OK(kiln_max_pool(g, "pool", r, &pp, &m)); /* [1, 2, 2, 2] */
  const int64_t flat[2] = {1, 8}, dfc[2] = {8, 2};
  OK(kiln_reshape(g, "flat", m, flat, 2, &f));
  float fcv[16];
  for (int i = 0; i < 8; i++) {
    fcv[2 * i] = 1.0f;       /* logit 0: sum of the features */
    fcv[2 * i + 1] = -0.5f;  /* logit 1: -half the sum */
  }
  OK(kiln_matmul(g, "fc", f, cst(g, "fcw", KILN_F32, dfc, 2, fcv), false, false, &fc));
  OK(kiln_log_softmax(g, "y", fc, -1, &y));

  /* by hand: conv, relu, pool, sum */
  double feat[8], total = 0;
  for (int k = 0; k < 2; k++)
    for (int py = 0; py < 2; py++)
      for (int px = 0; px < 2; px++) {
        double best = -INFINITY;
        for (int dy = 0; dy < 2; dy++)
          for (int dxx = 0; dxx < 2; dxx++) {
            int oy = 2 * py + dy, ox = 2 * px + dxx;
            double acc = bv[k];
            for (int i = 0; i < 3; i++)
              for (int j = 0; j < 3; j++) acc += wv[k * 9 + i * 3 + j] * xv[(oy + i) * 6 + ox + j];
            acc = acc < 0 ? 0 : acc;
            best = acc > best ? acc : best;
          }
        feat[k * 4 + py * 2 + px] = best;
        total += best;
      }
  (void)feat;
  double l0 = total, l1 = -0.5 * total, mx = l0 > l1 ? l0 : l1;
  double lse = mx + log(exp(l0 - mx) + exp(l1 - mx));
  kiln_tensor *in = kiln_tensor_create(KILN_F32, dx, 4, xv);
  kiln_tensor *out = run1(g, y, x, in);
  const float *o = kiln_tensor_data(out);
  assert_true(fabs(o[0] - (l0 - lse)) <= 1e-5 * (1 + fabs(l0 - lse)));
  assert_true(fabs(o[1] - (l1 - lse)) <= 1e-5 * (1 + fabs(l1 - lse)));
  kiln_tensor_destroy(out);
  kiln_tensor_destroy(in);
  kiln_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elementwise_and_reductions),
      cmocka_unit_test(test_shape_ops),
      cmocka_unit_test(test_conv_pool_bn),
      cmocka_unit_test(test_placeholder_with_default),
      cmocka_unit_test(test_small_cnn_session),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
