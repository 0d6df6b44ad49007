/* test_codegen_onnx.c — the C kernels of the ONNX op set (ops.def wire 37..56): every op
 * built into small graphs with odd shapes, compiled by kcg_compile_cpu, run through
 * libkiln_rt into poisoned outputs and compared with the reference interpreter at
 * kt_tolerance, in f32 and f64 (and integers where the op allows). Also: gather's
 * out-of-range index as KILN_RT_ERR_EXEC naming the step, placeholder defaults through
 * the runtime, and the speed of a ResNet-sized 3x3 conv (printed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/kt.h"
#include "tests/codegen/kcg_harness.h"
#include "codegen/kcg.h"
#include "runtime/kiln_runtime.h"

/* ---------------------------------------------------------------- building ------ */

typedef struct at {
  const char *name;
  int kind; /* 1 int, 2 float, 3 ints, 4 floats */
  int64_t i;
  double f;
  const int64_t *v;
  const double *fv;
  int32_t n;
} at;

#define NV(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define AI(nm, x) {nm, 1, x, 0, NULL, NULL, 0}
#define AF(nm, x) {nm, 2, 0, x, NULL, NULL, 0}
#define AV(nm, ...) {nm, 3, 0, 0, (const int64_t[]){__VA_ARGS__}, NULL, NV(__VA_ARGS__)}
#define AFV(nm, n_, ...) {nm, 4, 0, 0, NULL, (const double[]){__VA_ARGS__}, n_}
#define IN(...) (const int32_t[]){__VA_ARGS__}, (int32_t)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static int32_t nd(kir_graph *g, kir_op op, const char *name, const int32_t *in, int32_t n,
                  const at *a, int na) {
  kir_node *node = kh_add(g, op, name, in, n);
  for (int i = 0; i < na; i++) {
    kiln_status s = KILN_OK;
    if (a[i].kind == 1) s = kir_attr_set_int(g, node, a[i].name, a[i].i);
    if (a[i].kind == 2) s = kir_attr_set_float(g, node, a[i].name, a[i].f);
    if (a[i].kind == 3) s = kir_attr_set_ints(g, node, a[i].name, a[i].v, a[i].n);
    if (a[i].kind == 4) s = kir_attr_set_floats(g, node, a[i].name, a[i].fv, a[i].n);
    if (s) fail_msg("attr %s of %s: %s", a[i].name, name, g->error);
  }
  return kh_finish(g, node);
}

#define ND(g, op, name, ins, ...) nd(g, op, name, ins, (const at[]){__VA_ARGS__}, \
                                    (int)(sizeof((const at[]){__VA_ARGS__}) / sizeof(at)))
#define ND0(g, op, name, ins) nd(g, op, name, ins, NULL, 0)

static void out(kh_outs *o, kir_graph *g, int32_t id) { kh_out(o, g, id); }

static void check(kir_graph *g, const kh_outs *o, unsigned flags) {
  kh_check_with(g, o, flags, "onnx.kart", NULL, NULL);
  kir_graph_destroy(g);
}

static const char *fname(const char *base, kiln_dtype dt) {
  static char buf[8][64];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 64, "%s_%s", base, kiln_dtype_name(dt));
  return b;
}

/* ---------------------------------------------------------------- elementwise --- */

static void elementwise(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(3, 1, 7));
  int32_t y = kh_ph(g, "y", dt, DIMS(5, 7));
  int32_t p = kh_ph(g, "pos", dt, DIMS(5, 7));
  out(&o, g, kh_op2(g, KIR_OP_POW, fname("pow", dt), p, x));
  out(&o, g, kh_op1(g, KIR_OP_ABS, fname("abs", dt), y));
  out(&o, g, ND(g, KIR_OP_LEAKY_RELU, fname("lrelu", dt), IN(y), AF("alpha", 0.3)));
  out(&o, g, ND0(g, KIR_OP_LEAKY_RELU, fname("lrelu_d", dt), IN(x)));
  out(&o, g, kh_op1(g, KIR_OP_ERF, fname("erf", dt), y));
  out(&o, g, kh_op1(g, KIR_OP_GELU, fname("gelu", dt), y));
  out(&o, g, ND(g, KIR_OP_GELU, fname("gelu_t", dt), IN(x), AI("approximate", 1)));
  out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MIN, fname("rmin", dt), y, (const int64_t[]){-1}, 1, 0));
  out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MIN, fname("rmin_all", dt), x, NULL, 0, 1));
  check(g, &o, 0);
}
static void test_elementwise_f32(void **st) { (void)st; elementwise(KILN_F32); }
static void test_elementwise_f64(void **st) { (void)st; elementwise(KILN_F64); }

static void int_ops(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t a = kh_ph(g, "a", dt, DIMS(4, 6));
  int32_t e = kh_ph(g, "e", dt, DIMS(6));
  int32_t big = kh_ph(g, "big", dt, DIMS(4, 6));
  out(&o, g, kh_op2(g, KIR_OP_POW, fname("ipow", dt), a, e)); /* negative exponents too */
  out(&o, g, kh_op2(g, KIR_OP_POW, fname("ipow_wrap", dt), big, e));
  out(&o, g, kh_op1(g, KIR_OP_ABS, fname("iabs", dt), big));
  out(&o, g, kh_reduce(g, KIR_OP_REDUCE_MIN, fname("irmin", dt), big, (const int64_t[]){0}, 1, 1));
  out(&o, g, ND(g, KIR_OP_ARGMAX, fname("iargmax", dt), IN(a), AI("axis", 1)));
  out(&o, g, ND(g, KIR_OP_ARGMIN, fname("iargmin_last", dt), IN(a), AI("axis", 0), AI("keep_dims", 0),
                AI("select_last_index", 1)));
  out(&o, g, ND(g, KIR_OP_MAX_POOL, fname("imaxpool", dt), IN(ND(g, KIR_OP_RESHAPE, fname("r4", dt), IN(a),
                AV("shape", 1, 2, 3, 4))), AV("kernel", 2, 2), AV("pads", 1, 0, 0, 1)));
  out(&o, g, ND(g, KIR_OP_CONCAT, fname("iconcat", dt), IN(a, big, a), AI("axis", 0)));
  check(g, &o, 0);
}
static void test_int_i32(void **st) { (void)st; int_ops(KILN_I32); }
static void test_int_i64(void **st) { (void)st; int_ops(KILN_I64); }

/* fused_elementwise / fused_reduce built by hand with the new ops as epilogue steps
 * (leaky_relu's alpha and gelu's approximate in clamp_min). */
static void fused_steps(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(4, 9));
  int32_t p = kh_ph(g, "pos", dt, DIMS(9));
  const char *from[1] = {"x"};
  at ew[] = {AV("epilogue", KIR_OP_LEAKY_RELU, KIR_OP_POW, KIR_OP_GELU, KIR_OP_ABS, KIR_OP_ERF, KIR_OP_GELU),
             AV("operand", -1, 1, -1, -1, -1, -1), AV("swap", 0, 1, 0, 0, 0, 0),
             AFV("clamp_min", 6, 0.25, NAN, 1, NAN, NAN, NAN), AFV("clamp_max", 6, NAN, NAN, NAN, NAN, NAN, NAN)};
  kir_node *n = kh_add(g, KIR_OP_FUSED_ELEMENTWISE, fname("few", dt), IN(x, p));
  for (size_t i = 0; i < sizeof ew / sizeof ew[0]; i++) {
    kiln_status s = ew[i].kind == 3 ? kir_attr_set_ints(g, n, ew[i].name, ew[i].v, ew[i].n)
                                    : kir_attr_set_floats(g, n, ew[i].name, ew[i].fv, ew[i].n);
    assert_int_equal(s, KILN_OK);
  }
  assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, 1), KILN_OK);
  out(&o, g, kh_finish(g, n));
  kir_node *r = kh_add(g, KIR_OP_FUSED_REDUCE, fname("fred", dt), IN(x, p));
  for (size_t i = 0; i < sizeof ew / sizeof ew[0]; i++) {
    kiln_status s = ew[i].kind == 3 ? kir_attr_set_ints(g, r, ew[i].name, ew[i].v, ew[i].n)
                                    : kir_attr_set_floats(g, r, ew[i].name, ew[i].fv, ew[i].n);
    assert_int_equal(s, KILN_OK);
  }
  assert_int_equal(kir_attr_set_strings(g, r, "fused_from", from, 1), KILN_OK);
  assert_int_equal(kir_attr_set_int(g, r, "reduce", KIR_OP_REDUCE_MIN), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, r, "axes", (const int64_t[]){1}, 1), KILN_OK);
  out(&o, g, kh_finish(g, r));
  check(g, &o, 0);
}
static void test_fused_steps_f32(void **st) { (void)st; fused_steps(KILN_F32); }
static void test_fused_steps_f64(void **st) { (void)st; fused_steps(KILN_F64); }

/* ---------------------------------------------------------------- data movement - */

static void movement(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(3, 5, 4));
  int32_t z = kh_ph(g, "z", dt, DIMS(3, 2, 4));
  out(&o, g, ND(g, KIR_OP_LOG_SOFTMAX, fname("lsm", dt), IN(x)));
  out(&o, g, ND(g, KIR_OP_LOG_SOFTMAX, fname("lsm1", dt), IN(x), AI("axis", 1)));
  out(&o, g, ND(g, KIR_OP_ARGMAX, fname("argmax", dt), IN(x), AI("axis", -2)));
  out(&o, g, ND(g, KIR_OP_ARGMIN, fname("argmin", dt), IN(x), AI("keep_dims", 0)));
  out(&o, g, ND(g, KIR_OP_CONCAT, fname("concat", dt), IN(x, z, x), AI("axis", -2)));
  out(&o, g, ND(g, KIR_OP_SLICE, fname("slice", dt), IN(x), AV("starts", -1, 1), AV("ends", INT64_MIN, 100),
                AV("axes", 1, 2), AV("steps", -2, 2)));
  out(&o, g, ND(g, KIR_OP_SLICE, fname("slice_all", dt), IN(x), AV("starts", 0, 4, 0), AV("ends", 3, -100, 4),
                AV("steps", 1, -1, 3)));
  out(&o, g, ND(g, KIR_OP_SLICE, fname("slice_empty", dt), IN(x), AV("starts", 3), AV("ends", 1), AV("axes", 1)));
  kir_tensor *idx = kh_tensor(KILN_I64, 2, (const int64_t[]){2, 3});
  int64_t iv[6] = {0, -1, 4, -5, 2, 2};
  memcpy(idx->data, iv, sizeof iv);
  int32_t ic = kh_cst_t(g, fname("idx", dt), idx);
  kir_tensor_free(idx);
  out(&o, g, ND(g, KIR_OP_GATHER, fname("gather", dt), IN(x, ic), AI("axis", 1)));
  kir_tensor *i32 = kh_tensor(KILN_I32, 1, (const int64_t[]){4});
  int32_t jv[4] = {-3, 2, 0, 1};
  memcpy(i32->data, jv, sizeof jv);
  int32_t jc = kh_cst_t(g, fname("idx32", dt), i32);
  kir_tensor_free(i32);
  out(&o, g, ND(g, KIR_OP_GATHER, fname("gather0", dt), IN(z, jc)));
  int32_t ci = kh_ph(g, "ci", KILN_I32, DIMS(3, 1, 4));
  int32_t cond = ND(g, KIR_OP_CAST, fname("cond", dt), IN(kh_op1(g, KIR_OP_RELU, fname("rc", dt), ci)),
                    AI("dtype", KILN_BOOL));
  out(&o, g, cond);
  out(&o, g, ND0(g, KIR_OP_WHERE, fname("where", dt), IN(cond, x, kh_op1(g, KIR_OP_NEG, fname("nx", dt), x))));
  check(g, &o, 0);
}
static void test_movement_f32(void **st) { (void)st; movement(KILN_F32); }
static void test_movement_f64(void **st) { (void)st; movement(KILN_F64); }

/* Every dtype pair, with values that saturate, wrap, truncate and are NaN-free. */
static void test_cast(void **st) {
  (void)st;
  static const kiln_dtype dts[5] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t src[4] = {kh_ph(g, "f32", KILN_F32, DIMS(2, 9)), kh_ph(g, "f64", KILN_F64, DIMS(2, 9)),
                    kh_ph(g, "big32", KILN_I32, DIMS(2, 9)), kh_ph(g, "big64", KILN_I64, DIMS(2, 9))};
  int32_t scaled = kh_op2(g, KIR_OP_MUL, "scaled", src[1], kh_ph(g, "bigf", KILN_F64, DIMS(2, 9)));
  char name[64];
  for (int a = 0; a < 5; a++) {
    int32_t s = a < 4 ? src[a] : ND(g, KIR_OP_CAST, "b0", IN(src[2]), AI("dtype", KILN_BOOL));
    for (int b = 0; b < 5; b++) {
      snprintf(name, sizeof name, "cast_%d_%d", a, b);
      out(&o, g, ND(g, KIR_OP_CAST, name, IN(s), AI("dtype", dts[b])));
    }
  }
  out(&o, g, ND(g, KIR_OP_CAST, "sat32", IN(scaled), AI("dtype", KILN_I32)));
  out(&o, g, ND(g, KIR_OP_CAST, "sat64", IN(scaled), AI("dtype", KILN_I64)));
  check(g, &o, 0);
}

/* An index out of range is an EXEC error naming the step, not a read. */
static void test_gather_out_of_range(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(4, 3));
  int32_t i = kh_ph(g, "i", KILN_I64, DIMS(5));
  int32_t y = ND0(g, KIR_OP_GATHER, "gathered", IN(x, i));
  out(&o, g, y);
  const char *path = kt_path("gather_oor.kart");
  kh_compile_or_fail(g, &o, path);
  for (int k = 0; k < 3; k++) {
    kh_run *r = kh_run_new();
    int64_t v[5] = {0, -4, 3, k == 0 ? 4 : k == 1 ? -5 : -1, 1};
    r->in[0] = kh_tensor(KILN_F32, 2, (const int64_t[]){4, 3});
    kt_fill(r->in[0], 7, -1, 1);
    r->in[1] = kh_tensor(KILN_I64, 1, (const int64_t[]){5});
    memcpy(r->in[1]->data, v, sizeof v);
    r->feeds[0] = (kir_feed){x, r->in[0]};
    r->feeds[1] = (kir_feed){i, r->in[1]};
    r->n_in = 2;
    r->ids[0] = y;
    char err[512];
    kiln_rt_status s = kh_run_artifact(g, path, &o, r, err, sizeof err);
    if (k < 2) {
      assert_int_equal(s, KILN_RT_ERR_EXEC);
      assert_non_null(strstr(err, "step 0"));
      assert_non_null(strstr(err, "gathered"));
      assert_non_null(strstr(err, "out of range"));
    } else {
      assert_int_equal(s, KILN_RT_OK); /* -1 is the last row */
      assert_memory_equal((float *)r->got[0]->data + 9, (float *)r->in[0]->data + 9, 3 * sizeof(float));
    }
    kh_run_free(r);
  }
  unlink(path);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- nn ------------ */

static void pools(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", dt, DIMS(2, 3, 9, 10));
  int32_t x1 = kh_ph(g, "x1", dt, DIMS(2, 2, 13));
  int32_t x3 = kh_ph(g, "x3", dt, DIMS(1, 2, 5, 6, 7));
  out(&o, g, ND(g, KIR_OP_MAX_POOL, fname("mp", dt), IN(x), AV("kernel", 3, 3), AV("strides", 2, 2),
                AV("pads", 1, 1, 1, 1), AI("ceil_mode", 1)));
  out(&o, g, ND(g, KIR_OP_AVG_POOL, fname("ap", dt), IN(x), AV("kernel", 3, 2), AV("strides", 2, 3),
                AV("pads", 0, 1, 1, 0), AI("ceil_mode", 1)));
  out(&o, g, ND(g, KIR_OP_AVG_POOL, fname("ap_pad", dt), IN(x), AV("kernel", 3, 2), AV("strides", 2, 3),
                AV("pads", 0, 1, 1, 0), AI("ceil_mode", 1), AI("count_include_pad", 1)));
  out(&o, g, ND(g, KIR_OP_MAX_POOL, fname("mp1", dt), IN(x1), AV("kernel", 3), AV("dilations", 2),
                AV("strides", 2), AV("pads", 2, 1)));
  out(&o, g, ND(g, KIR_OP_AVG_POOL, fname("ap3", dt), IN(x3), AV("kernel", 2, 3, 2), AV("strides", 2, 2, 3),
                AV("pads", 1, 0, 1, 0, 1, 1)));
  out(&o, g, ND(g, KIR_OP_MAX_POOL_INDICES, fname("mpi", dt), IN(x), AV("kernel", 3, 3), AV("strides", 2, 2),
                AV("pads", 1, 1, 1, 1)));
  out(&o, g, ND(g, KIR_OP_MAX_POOL_INDICES, fname("mpi_cm", dt), IN(x), AV("kernel", 2, 3), AV("strides", 2, 1),
                AI("storage_order", 1), AI("ceil_mode", 1)));
  int32_t sc = kh_ph(g, "pos_s", dt, DIMS(3)), bi = kh_ph(g, "bi", dt, DIMS(3));
  int32_t mu = kh_ph(g, "mu", dt, DIMS(3)), var = kh_ph(g, "pos_v", dt, DIMS(3));
  out(&o, g, ND(g, KIR_OP_BATCH_NORM, fname("bn", dt), IN(x, sc, bi, mu, var), AF("epsilon", 1e-3)));
  out(&o, g, ND0(g, KIR_OP_BATCH_NORM, fname("bn_d", dt), IN(x, sc, bi, mu, var)));
  check(g, &o, 0);
}
static void test_pools_f32(void **st) { (void)st; pools(KILN_F32); }
static void test_pools_f64(void **st) { (void)st; pools(KILN_F64); }

typedef struct conv_case {
  const char *name;
  int32_t rank;
  int64_t x[5], w[5];
  int64_t group;
  int64_t strides[3], dil[3], pads[6];
  bool bias;
} conv_case;

static const conv_case k_convs[] = {
    {"groups", 4, {2, 4, 7, 9}, {6, 2, 3, 3}, 2, {2, 2}, {1, 1}, {1, 0, 2, 1}, true},
    {"depthwise", 4, {1, 5, 8, 6}, {5, 1, 3, 3}, 5, {1, 2}, {1, 1}, {1, 1, 1, 1}, true},
    {"dilated", 4, {1, 3, 9, 9}, {4, 3, 3, 2}, 1, {1, 1}, {2, 3}, {2, 0, 1, 3}, false},
    {"conv1d", 3, {2, 3, 11}, {5, 3, 4}, 1, {3}, {1}, {2, 1}, true},
    {"conv3d", 5, {1, 2, 5, 6, 4}, {3, 2, 2, 3, 2}, 1, {1, 2, 1}, {1, 1, 1}, {1, 0, 1, 0, 1, 1}, true},
    {"pointwise", 4, {2, 8, 5, 7}, {4, 8, 1, 1}, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, true},
    {"pointwise_s2", 4, {1, 6, 5, 7}, {4, 3, 1, 1}, 2, {2, 2}, {1, 1}, {0, 0, 0, 0}, false},
    {"dw1d_dil", 3, {2, 4, 12}, {4, 1, 3}, 4, {2}, {2}, {2, 3}, false},
    {"dw_mult", 4, {1, 3, 6, 6}, {6, 1, 3, 3}, 3, {1, 1}, {1, 1}, {0, 1, 2, 0}, false},
};

static int32_t add_conv(kir_graph *g, const conv_case *c, kiln_dtype dt, uint64_t seed) {
  char nm[96];
  int32_t k = c->rank - 2;
  snprintf(nm, sizeof nm, "x_%s_%s", c->name, kiln_dtype_name(dt));
  int32_t x = kh_ph(g, nm, dt, c->rank, c->x);
  snprintf(nm, sizeof nm, "w_%s_%s", c->name, kiln_dtype_name(dt));
  int32_t w = kh_cst(g, nm, dt, c->rank, c->w, seed);
  int32_t b = -1;
  if (c->bias) {
    snprintf(nm, sizeof nm, "b_%s_%s", c->name, kiln_dtype_name(dt));
    b = kh_cst(g, nm, dt, 1, &c->w[0], seed + 1);
  }
  snprintf(nm, sizeof nm, "conv_%s_%s", c->name, kiln_dtype_name(dt));
  int32_t ins[3] = {x, w, b};
  kir_node *n = kh_add(g, KIR_OP_CONV, nm, ins, c->bias ? 3 : 2);
  assert_int_equal(kir_attr_set_ints(g, n, "strides", c->strides, k), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "dilations", c->dil, k), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "pads", c->pads, 2 * k), KILN_OK);
  if (c->group != 1) assert_int_equal(kir_attr_set_int(g, n, "group", c->group), KILN_OK);
  return kh_finish(g, n);
}

static void convs(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  for (size_t i = 0; i < sizeof k_convs / sizeof k_convs[0]; i++) out(&o, g, add_conv(g, &k_convs[i], dt, 50 + i));
  check(g, &o, 0);
}
static void test_conv_f32(void **st) { (void)st; convs(KILN_F32); }
static void test_conv_f64(void **st) { (void)st; convs(KILN_F64); }

/* fused_conv by hand: conv(x, w) + bias[M,1,1], relu or leaky_relu, + residual,
 * clamp; for the im2col, the 1x1 and the depthwise paths. */
static void fused_convs(kiln_dtype dt) {
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  static const size_t which[3] = {0, 5, 1};
  for (int k = 0; k < 3; k++) {
    const conv_case *c = &k_convs[which[k]];
    char nm[96];
    int32_t ref = add_conv(g, c, dt, 90 + (uint64_t)k); /* for its type: the output shape */
    const kir_type *ot = &g->nodes[ref]->type;
    snprintf(nm, sizeof nm, "fb_%s_%s", c->name, kiln_dtype_name(dt));
    int32_t bias = kh_cst(g, nm, dt, 3, (const int64_t[]){c->w[0], 1, 1}, 7);
    snprintf(nm, sizeof nm, "res_%s_%s", c->name, kiln_dtype_name(dt));
    int32_t res = kh_ph(g, nm, dt, ot->rank, ot->dims);
    const kir_node *cn = g->nodes[ref];
    int32_t ins[4] = {cn->inputs[0], cn->inputs[1], bias, res};
    snprintf(nm, sizeof nm, "fconv_%s_%s", c->name, kiln_dtype_name(dt));
    kir_node *n = kh_add(g, KIR_OP_FUSED_CONV, nm, ins, 4);
    for (int32_t a = 0; a < cn->n_attrs; a++) {
      const kir_attr *at_ = &cn->attrs[a];
      int32_t cnt = 0;
      if (!strcmp(at_->name, "group")) assert_int_equal(kir_attr_set_int(g, n, "group", c->group), KILN_OK);
      else {
        const int64_t *v = kir_attr_ints(cn, at_->name, &cnt);
        assert_int_equal(kir_attr_set_ints(g, n, at_->name, v, cnt), KILN_OK);
      }
    }
    kir_op act = k == 1 ? KIR_OP_LEAKY_RELU : KIR_OP_RELU;
    const int64_t ep[4] = {KIR_OP_ADD, act, KIR_OP_ADD, KIR_OP_CLAMP}, opd[4] = {2, -1, 3, -1}, sw[4] = {0};
    const double lo[4] = {NAN, k == 1 ? 0.2 : NAN, NAN, -0.5}, hi[4] = {NAN, NAN, NAN, 1.5};
    const char *from[1] = {nm};
    assert_int_equal(kir_attr_set_ints(g, n, "epilogue", ep, 4), KILN_OK);
    assert_int_equal(kir_attr_set_ints(g, n, "operand", opd, 4), KILN_OK);
    assert_int_equal(kir_attr_set_ints(g, n, "swap", sw, 4), KILN_OK);
    assert_int_equal(kir_attr_set_floats(g, n, "clamp_min", lo, 4), KILN_OK);
    assert_int_equal(kir_attr_set_floats(g, n, "clamp_max", hi, 4), KILN_OK);
    assert_int_equal(kir_attr_set_strings(g, n, "fused_from", from, 1), KILN_OK);
    out(&o, g, kh_finish(g, n));
  }
  check(g, &o, 0);
}
static void test_fused_conv_f32(void **st) { (void)st; fused_convs(KILN_F32); }
static void test_fused_conv_f64(void **st) { (void)st; fused_convs(KILN_F64); }

/* ---------------------------------------------------------------- defaults ------ */

/* A placeholder with a default: NULL data reads it; given data overrides it. */
static void test_placeholder_default(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(2, 3));
  kir_node *d = kh_add(g, KIR_OP_PLACEHOLDER, "scale", NULL, 0);
  kir_tensor *dv = kh_tensor(KILN_F32, 1, (const int64_t[]){3});
  float dvals[3] = {2, -1, 0.5f};
  memcpy(dv->data, dvals, sizeof dvals);
  assert_int_equal(kir_attr_set_int(g, d, "dtype", KILN_F32), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, d, "shape", (const int64_t[]){3}, 1), KILN_OK);
  assert_int_equal(kir_attr_set_tensor(g, d, "default", dv), KILN_OK);
  int32_t s = kh_finish(g, d);
  out(&o, g, kh_op2(g, KIR_OP_MUL, "y", x, s));
  const char *path = kt_path("default.kart");
  kh_compile_or_fail(g, &o, path);
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_model_open(path, &m), KILN_RT_OK);
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  float xv[6] = {1, 2, 3, 4, 5, 6}, yv[6], given[3] = {10, 20, 30};
  int xi = kiln_rt_model_find_input(m, "x"), si = kiln_rt_model_find_input(m, "scale");
  kiln_rt_buffer in[2], ob = {yv, sizeof yv};
  in[xi] = (kiln_rt_buffer){xv, sizeof xv};
  in[si] = (kiln_rt_buffer){NULL, 0};
  assert_int_equal(kiln_rt_run(c, in, 2, &ob, 1), KILN_RT_OK);
  for (int i = 0; i < 6; i++) assert_true(yv[i] == xv[i] * dvals[i % 3]);
  in[si] = (kiln_rt_buffer){given, sizeof given};
  assert_int_equal(kiln_rt_run(c, in, 2, &ob, 1), KILN_RT_OK);
  for (int i = 0; i < 6; i++) assert_true(yv[i] == xv[i] * given[i % 3]);
  in[xi] = (kiln_rt_buffer){NULL, sizeof xv}; /* no default: refused as before */
  assert_int_equal(kiln_rt_run(c, in, 2, &ob, 1), KILN_RT_ERR_FEED);
  assert_non_null(strstr(kiln_rt_context_error(c), "'x'"));
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  unlink(path);
  kir_tensor_free(dv);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- standalone ---- */

/* `kiln compile --emit-c` of the new ops: the file compiles warning-free (no runtime
 * calls; cblas only). */
static void test_standalone_nn(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  const char *names[4];
  int32_t x = kh_ph(g, "x", KILN_F32, DIMS(1, 4, 9, 8));
  names[0] = g->nodes[add_conv(g, &k_convs[0], KILN_F32, 5)]->name;
  names[1] = g->nodes[ND(g, KIR_OP_MAX_POOL, "mp", IN(x), AV("kernel", 3, 3), AV("strides", 2, 2))]->name;
  int32_t ix = kh_ph(g, "ix", KILN_I32, DIMS(3));
  names[2] = g->nodes[ND0(g, KIR_OP_GATHER, "gt", IN(x, ix))]->name;
  names[3] = g->nodes[ND(g, KIR_OP_LOG_SOFTMAX, "ls", IN(x), AI("axis", 1))]->name;
  char dir[256], cmd[2048];
  snprintf(dir, sizeof dir, "%s", kt_path("onnx_sa"));
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
  assert_int_equal(system(cmd), 0);
  if (kcg_emit_c(g, names, 4, "nn", KCG_WEIGHTS_C_ARRAY, dir) != KILN_OK) fail_msg("emit: %s", g->error);
  snprintf(cmd, sizeof cmd, "cc -std=c11 -O2 -Wall -Wextra -Werror -c '%s/nn.c' -o '%s/nn.o' && "
           "! nm '%s/nn.o' | grep -q kiln_rt", dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- speed --------- */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* conv 3x3, 64 -> 64 channels, 56x56, pad 1 (ResNet's most common layer): prints
 * GFLOP/s; asserts only that it is not absurdly slow (an unvectorized fallback). */
static void test_conv_speed(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kh_outs o = {{0}, 0};
  conv_case c = {"resnet", 4, {1, 64, 56, 56}, {64, 64, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}, true};
  out(&o, g, add_conv(g, &c, KILN_F32, 3));
  const char *path = kt_path("conv_speed.kart");
  kh_compile_or_fail(g, &o, path);
  kiln_rt_model *m = NULL;
  kiln_rt_context *cx = NULL;
  assert_int_equal(kiln_rt_model_open(path, &m), KILN_RT_OK);
  assert_int_equal(kiln_rt_context_create(m, &cx), KILN_RT_OK);
  size_t nx = 64 * 56 * 56;
  float *x = calloc(nx, sizeof *x), *y = calloc(nx, sizeof *y);
  assert_true(x && y);
  for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 17) * 0.1f;
  kiln_rt_buffer in = {x, nx * sizeof *x}, ob = {y, nx * sizeof *y};
  assert_int_equal(kiln_rt_run(cx, &in, 1, &ob, 1), KILN_RT_OK);
  double best = 1e9;
  for (int r = 0; r < 10; r++) {
    double t0 = now();
    assert_int_equal(kiln_rt_run(cx, &in, 1, &ob, 1), KILN_RT_OK);
    double t = now() - t0;
    if (t < best) best = t;
  }
  double gf = 2.0 * 64 * 64 * 9 * 56 * 56 / best / 1e9;
  printf("conv 3x3 64->64 56x56 f32: %.3f ms, %.1f GFLOP/s\n", best * 1e3, gf);
  assert_true(gf > 1.0);
  free(x);
  free(y);
  kiln_rt_context_destroy(cx);
  kiln_rt_model_close(m);
  unlink(path);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elementwise_f32), cmocka_unit_test(test_elementwise_f64),
      cmocka_unit_test(test_int_i32),         cmocka_unit_test(test_int_i64),
      cmocka_unit_test(test_fused_steps_f32), cmocka_unit_test(test_fused_steps_f64),
      cmocka_unit_test(test_movement_f32),    cmocka_unit_test(test_movement_f64),
      cmocka_unit_test(test_cast),            cmocka_unit_test(test_gather_out_of_range),
      cmocka_unit_test(test_pools_f32),       cmocka_unit_test(test_pools_f64),
      cmocka_unit_test(test_conv_f32),        cmocka_unit_test(test_conv_f64),
      cmocka_unit_test(test_fused_conv_f32),  cmocka_unit_test(test_fused_conv_f64),
      cmocka_unit_test(test_placeholder_default), cmocka_unit_test(test_standalone_nn),
      cmocka_unit_test(test_conv_speed),
  };
  return cmocka_run_group_tests_name("codegen_onnx", tests, NULL, NULL);
}
