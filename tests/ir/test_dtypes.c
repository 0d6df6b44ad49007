/* test_dtypes.c — the eight narrow, unsigned and half-float dtypes in the IR: element
 * load/store, f16/bf16 rounding, wrapping integer arithmetic at every width, unsigned
 * compare/divide/min/max (u64 values >= 2^63 included), casts between every pair,
 * reductions and argmax, and bit-exact text and .kiln round trips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kt.h"

static const kiln_dtype INTS[] = {KILN_U8, KILN_I8, KILN_U16, KILN_I16,
                                  KILN_U32, KILN_I32, KILN_U64, KILN_I64};
#define N_INTS (int)(sizeof INTS / sizeof INTS[0])
#define U64(x) ((uint64_t)(x))

/* ---------------------------------------------------------------- helpers ------- */

/* An independent model of integer dtypes for the oracles below. */
#define assert_double_equal(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

static int bits_of(kiln_dtype t) { return 8 * (int)kiln_dtype_size(t); }
static uint64_t mask_of(kiln_dtype t) {
  return bits_of(t) == 64 ? ~U64(0) : (U64(1) << bits_of(t)) - 1;
}
static bool uns_of(kiln_dtype t) {
  return t == KILN_U8 || t == KILN_U16 || t == KILN_U32 || t == KILN_U64;
}
/* Bits of x (already masked) as a signed value of the dtype's width. */
static int64_t sext(kiln_dtype t, uint64_t x) {
  int b = bits_of(t);
  if (b < 64 && (x >> (b - 1)) & 1) x |= ~mask_of(t);
  return x > (uint64_t)INT64_MAX ? -(int64_t)(~x) - 1 : (int64_t)x;
}

/* Raw bits of element i (little-endian host, as everywhere in Kiln). */
static uint64_t getbits(const kir_tensor *t, int64_t i) {
  uint64_t v = 0;
  size_t es = kiln_dtype_size(t->type.dtype);
  memcpy(&v, (const char *)t->data + i * (int64_t)es, es);
  return v;
}
static void setbits(kir_tensor *t, int64_t i, uint64_t v) {
  size_t es = kiln_dtype_size(t->type.dtype);
  memcpy((char *)t->data + i * (int64_t)es, &v, es);
}

static kir_tensor *vec(kiln_dtype dt, int64_t n) {
  kir_type ty = {dt, 1, {n}};
  kir_tensor *x = kir_tensor_new(&ty);
  assert_non_null(x);
  return x;
}
static kir_tensor *vec_bits(kiln_dtype dt, int64_t n, const uint64_t *b) {
  kir_tensor *x = vec(dt, n);
  for (int64_t i = 0; i < n; i++) setbits(x, i, b[i] & mask_of(dt));
  return x;
}
static kir_tensor *vec_f(kiln_dtype dt, int64_t n, const double *v) {
  kir_tensor *x = vec(dt, n);
  for (int64_t i = 0; i < n; i++) kir_tensor_set_f(x, i, v[i]);
  return x;
}

static int name_counter;

static kir_node *node(kir_graph *g, kir_op op, int n_in, const int32_t *in) {
  char name[32];
  snprintf(name, sizeof name, "n%d", name_counter++);
  kir_node *n = kir_node_add(g, op, name, in, n_in);
  assert_non_null(n);
  return n;
}
static int32_t fin(kir_graph *g, kir_node *n) {
  if (kir_infer_node(g, n) != KILN_OK) fail_msg("infer: %s", g->error);
  return n->id;
}
/* A constant that takes ownership of t. */
static int32_t konst(kir_graph *g, kir_tensor *t) {
  kir_node *n = node(g, KIR_OP_CONSTANT, 0, NULL);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
  kir_tensor_free(t);
  return fin(g, n);
}
static int32_t un(kir_graph *g, kir_op op, int32_t x) { return fin(g, node(g, op, 1, &x)); }
static int32_t bin(kir_graph *g, kir_op op, int32_t a, int32_t b) {
  return fin(g, node(g, op, 2, (int32_t[]){a, b}));
}
static int32_t cast(kir_graph *g, int32_t x, kiln_dtype to) {
  kir_node *n = node(g, KIR_OP_CAST, 1, &x);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", to), KILN_OK);
  return fin(g, n);
}
static kir_tensor *run1(kir_graph *g, int32_t fetch) {
  kir_tensor *out = NULL;
  if (kir_interp_run(g, NULL, NULL, 0, &fetch, 1, NULL, 0, &out) != KILN_OK)
    fail_msg("run: %s", g->error);
  assert_non_null(out);
  return out;
}
static void expect_bits(kir_tensor *got, kiln_dtype dt, int64_t n, const uint64_t *want) {
  assert_int_equal(got->type.dtype, dt);
  assert_int_equal(kir_type_numel(&got->type), n);
  for (int64_t i = 0; i < n; i++)
    if (getbits(got, i) != (want[i] & mask_of(dt)))
      fail_msg("%s element %lld: got 0x%llx want 0x%llx", kiln_dtype_name(dt), (long long)i,
               (unsigned long long)getbits(got, i), (unsigned long long)(want[i] & mask_of(dt)));
  kir_tensor_free(got);
}

/* ---------------------------------------------------------------- families ------ */

static void test_families(void **state) {
  (void)state;
  for (int d = 1; d < KILN_DTYPE_COUNT; d++) {
    kiln_dtype t = (kiln_dtype)d;
    assert_true(kir_dtype_is_float(t) + kir_dtype_is_int(t) + (t == KILN_BOOL) == 1);
    assert_int_equal(kir_dtype_bits(t), 8 * (int)kiln_dtype_size(t));
  }
  assert_true(kir_dtype_is_float(KILN_F16) && kir_dtype_is_float(KILN_BF16));
  assert_true(kir_dtype_is_unsigned(KILN_U64) && !kir_dtype_is_unsigned(KILN_I8));
  assert_int_equal(kir_int_wrap(KILN_I8, 200), -56);
  assert_int_equal(kir_int_wrap(KILN_U8, -1), 255);
  assert_int_equal(kir_int_wrap(KILN_U32, -1), 4294967295LL);
  assert_int_equal(kir_int_wrap(KILN_I16, 32768), -32768);
  assert_double_equal(kt_tolerance(KILN_F16), 1e-3, 0);
  assert_double_equal(kt_tolerance(KILN_BF16), 1e-2, 0);
  assert_double_equal(kt_tolerance(KILN_U8), 0, 0);
}

/* Loads and stores: get_i sign- or zero-extends; get_f of u64 is unsigned. */
static void test_elements(void **state) {
  (void)state;
  kir_tensor *t = vec_bits(KILN_I8, 2, (uint64_t[]){0x80, 0x7f});
  assert_int_equal(kir_tensor_get_i(t, 0), -128);
  assert_double_equal(kir_tensor_get_f(t, 1), 127, 0);
  kir_tensor_free(t);
  t = vec_bits(KILN_U16, 1, (uint64_t[]){0xffff});
  assert_int_equal(kir_tensor_get_i(t, 0), 65535);
  kir_tensor_free(t);
  t = vec_bits(KILN_U64, 1, (uint64_t[]){~U64(0)});
  assert_double_equal(kir_tensor_get_f(t, 0), 18446744073709551616.0, 0);
  assert_int_equal(kir_tensor_get_i(t, 0), -1); /* the bit pattern */
  kir_tensor_set_f(t, 0, 1e30);
  assert_true(getbits(t, 0) == ~U64(0));
  kir_tensor_set_f(t, 0, -3);
  assert_true(getbits(t, 0) == 0);
  kir_tensor_set_f(t, 0, NAN);
  assert_true(getbits(t, 0) == 0);
  kir_tensor_free(t);
  t = vec(KILN_F16, 1);
  kir_tensor_set_i(t, 0, 2049); /* tie between 2048 and 2050: even */
  assert_true(getbits(t, 0) == 0x6800);
  kir_tensor_set_i(t, 0, 2051);
  assert_true(getbits(t, 0) == 0x6802);
  kir_tensor_set_u(t, 0, ~U64(0));
  assert_true(getbits(t, 0) == 0x7c00);
  kir_tensor_free(t);
  /* 2^60 + 2^52 + 1 is just above a bf16 tie; through a double it would be the tie */
  t = vec(KILN_BF16, 1);
  kir_tensor_set_i(t, 0, (INT64_C(1) << 60) + (INT64_C(1) << 52) + 1);
  assert_true(getbits(t, 0) == kir_bf16_from_double(ldexp(1, 60) + ldexp(1, 53)));
  kir_tensor_set_i(t, 0, -((INT64_C(1) << 60) + (INT64_C(1) << 52)));
  assert_true(getbits(t, 0) == kir_bf16_from_double(-ldexp(1, 60)));
  kir_tensor_free(t);
}

/* ---------------------------------------------------------------- half floats --- */

static void test_f16_rounding(void **state) {
  (void)state;
  static const struct { double v; uint16_t bits; } c[] = {
      {0.0, 0x0000}, {-0.0, 0x8000}, {1.0, 0x3c00}, {-2.0, 0xc000}, {65504, 0x7bff},
      {65519.99, 0x7bff}, {65520, 0x7c00}, {1e300, 0x7c00}, {-70000, 0xfc00},
      {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
      {1 + 0x1p-11, 0x3c00},     /* tie: down to even */
      {1 + 3 * 0x1p-11, 0x3c02}, /* tie: up to even */
      {1 + 0x1p-11 + 0x1p-40, 0x3c01}, /* just above the tie */
      {0x1p-24, 0x0001},         /* smallest subnormal */
      {0x1p-25, 0x0000},         /* tie with 0: even */
      {0x1p-25 + 0x1p-60, 0x0001}, {3 * 0x1p-25, 0x0002}, /* subnormal tie: even */
      {0x1p-14, 0x0400},         /* smallest normal */
      {0x1p-14 - 0x1p-25, 0x0400}, /* tie at the subnormal/normal edge rounds up (even) */
      {0.1, 0x2e66}, {3.14159265358979, 0x4248}, {1.0 / 3, 0x3555}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    uint16_t b = kir_f16_from_double(c[i].v);
    if (b != c[i].bits) fail_msg("f16(%a) = 0x%04x, want 0x%04x", c[i].v, b, c[i].bits);
    if (!isinf(c[i].v) && fabs(c[i].v) <= 65504 && kir_f16_from_double(kir_f16_to_double(b)) != b)
      fail_msg("f16 0x%04x does not read back", b);
  }
  uint16_t n = kir_f16_from_double(NAN);
  assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff));
  assert_true(isnan(kir_f16_to_double(0x7e01)));
  assert_double_equal(kir_f16_to_double(0x0001), 0x1p-24, 0);
  assert_double_equal(kir_f16_to_double(0x7bff), 65504, 0);
  /* every finite f16 reads back to itself */
  for (uint32_t h = 0; h < 0x10000; h++)
    if ((h & 0x7c00) != 0x7c00 && kir_f16_from_double(kir_f16_to_double((uint16_t)h)) != h)
      fail_msg("f16 0x%04x does not round trip", h);
}

static void test_bf16_rounding(void **state) {
  (void)state;
  static const struct { double v; uint16_t bits; } c[] = {
      {0.0, 0x0000}, {-0.0, 0x8000}, {1.0, 0x3f80}, {-2.0, 0xc000},
      {1 + 0x1p-8, 0x3f80},        /* tie: even */
      {1 + 3 * 0x1p-8, 0x3f82},    /* tie: up to even */
      {1 + 0x1p-8 + 0x1p-50, 0x3f81},
      {3.3895313892515355e38, 0x7f7f}, /* largest finite */
      {3.4028234663852886e38, 0x7f80}, /* f32 max rounds past it: inf */
      {0x1p-133, 0x0001}, {0x1p-134, 0x0000}, {0x1p-126, 0x0080},
      {0.1, 0x3dcd}, {1e10, 0x5015}, {INFINITY, 0x7f80}, {-1e300, 0xff80}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    uint16_t b = kir_bf16_from_double(c[i].v);
    if (b != c[i].bits) fail_msg("bf16(%a) = 0x%04x, want 0x%04x", c[i].v, b, c[i].bits);
  }
  uint16_t n = kir_bf16_from_double(-NAN);
  assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f) && (n & 0x8000));
  for (uint32_t h = 0; h < 0x10000; h++)
    if ((h & 0x7f80) != 0x7f80 && kir_bf16_from_double(kir_bf16_to_double((uint16_t)h)) != h)
      fail_msg("bf16 0x%04x does not round trip", h);
}

/* Ops on f16/bf16 compute in double and round once. */
static void test_half_ops(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, vec_f(KILN_F16, 3, (double[]){1, 60000, 2}));
  int32_t b = konst(g, vec_f(KILN_F16, 3, (double[]){3 * 0x1p-11, 60000, 0}));
  expect_bits(run1(g, bin(g, KIR_OP_ADD, a, b)), KILN_F16, 3,
              (uint64_t[]){0x3c02, 0x7c00, 0x4000});
  expect_bits(run1(g, un(g, KIR_OP_SQRT, a)), KILN_F16, 3,
              (uint64_t[]){0x3c00, kir_f16_from_double(sqrt(kir_f16_to_double(0x7b53))),
                           0x3da8});
  expect_bits(run1(g, bin(g, KIR_OP_DIV, a, b)), KILN_F16, 3,
              (uint64_t[]){kir_f16_from_double(1 / (3 * 0x1p-11)), 0x3c00, 0x7c00});
  int32_t c = konst(g, vec_f(KILN_BF16, 2, (double[]){1, -3}));
  int32_t d = konst(g, vec_f(KILN_BF16, 2, (double[]){0x1p-8, 0.5}));
  expect_bits(run1(g, bin(g, KIR_OP_ADD, c, d)), KILN_BF16, 2, (uint64_t[]){0x3f80, 0xc020});
  expect_bits(run1(g, un(g, KIR_OP_RELU, c)), KILN_BF16, 2, (uint64_t[]){0x3f80, 0});
  expect_bits(run1(g, bin(g, KIR_OP_MAXIMUM, c, d)), KILN_BF16, 2, (uint64_t[]){0x3f80, 0x3f00});
  int32_t s = un(g, KIR_OP_SOFTMAX, c);
  kir_tensor *o = run1(g, s);
  assert_double_equal(kir_tensor_get_f(o, 0) + kir_tensor_get_f(o, 1), 1.0, 1e-2);
  kir_tensor_free(o);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- integers ------ */

static const uint64_t EDGE[] = {0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
                                0x7fffffff, 0x80000000, 0xffffffff, U64(1) << 32,
                                0x7fffffffffffffff, U64(1) << 63, (U64(1) << 63) + 10,
                                ~U64(0), ~U64(0) - 6, 250, 10, 17};
#define N_EDGE (int)(sizeof EDGE / sizeof EDGE[0])

/* The oracle of one integer binary op; false for division by zero. */
static bool model_binary(kir_op op, kiln_dtype t, uint64_t a, uint64_t b, uint64_t *r) {
  uint64_t m = mask_of(t);
  bool uns = uns_of(t);
  int64_t sa = sext(t, a), sb = sext(t, b);
  bool a_lt_b = uns ? a < b : sa < sb;
  switch (op) {
  case KIR_OP_ADD: *r = (a + b) & m; return true;
  case KIR_OP_SUB: *r = (a - b) & m; return true;
  case KIR_OP_MUL: *r = (a * b) & m; return true;
  case KIR_OP_MAXIMUM: *r = a_lt_b ? b : a; return true;
  case KIR_OP_MINIMUM: *r = a_lt_b ? a : b; return true;
  case KIR_OP_DIV:
    if (b == 0) return false;
    if (uns) *r = a / b;
    else if (sb == -1) *r = (0 - a) & m;
    else *r = (uint64_t)(sa / sb) & m;
    return true;
  default: fail_msg("no model for op %d", (int)op);
  }
  return false;
}

static void check_binary_op(kir_op op, kiln_dtype t) {
  int64_t n = (int64_t)N_EDGE * N_EDGE;
  uint64_t *av = malloc(sizeof(uint64_t) * (size_t)n), *bv = malloc(sizeof(uint64_t) * (size_t)n);
  uint64_t *want = malloc(sizeof(uint64_t) * (size_t)n);
  int64_t k = 0;
  for (int i = 0; i < N_EDGE; i++)
    for (int j = 0; j < N_EDGE; j++) {
      uint64_t a = EDGE[i] & mask_of(t), b = EDGE[j] & mask_of(t), r;
      if (!model_binary(op, t, a, b, &r)) continue;
      av[k] = a, bv[k] = b, want[k++] = r;
    }
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, vec_bits(t, k, av)), y = konst(g, vec_bits(t, k, bv));
  expect_bits(run1(g, bin(g, op, x, y)), t, k, want);
  kir_graph_destroy(g);
  free(av), free(bv), free(want);
}

/* add/sub/mul wrap at the width; max/min/div are unsigned on unsigned dtypes. */
static void test_int_binary(void **state) {
  (void)state;
  static const kir_op ops[] = {KIR_OP_ADD, KIR_OP_SUB, KIR_OP_MUL, KIR_OP_MAXIMUM,
                               KIR_OP_MINIMUM, KIR_OP_DIV};
  for (int d = 0; d < N_INTS; d++)
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) check_binary_op(ops[o], INTS[d]);
}

static void test_int_unary(void **state) {
  (void)state;
  for (int d = 0; d < N_INTS; d++) {
    kiln_dtype t = INTS[d];
    uint64_t neg[N_EDGE], relu[N_EDGE], absv[N_EDGE], in[N_EDGE];
    for (int i = 0; i < N_EDGE; i++) {
      uint64_t a = EDGE[i] & mask_of(t);
      bool negative = !uns_of(t) && sext(t, a) < 0;
      in[i] = a;
      neg[i] = (0 - a) & mask_of(t);
      relu[i] = negative ? 0 : a;
      absv[i] = negative ? neg[i] : a;
    }
    kir_graph *g = kir_graph_create();
    int32_t x = konst(g, vec_bits(t, N_EDGE, in));
    expect_bits(run1(g, un(g, KIR_OP_NEG, x)), t, N_EDGE, neg);
    expect_bits(run1(g, un(g, KIR_OP_RELU, x)), t, N_EDGE, relu);
    expect_bits(run1(g, un(g, KIR_OP_ABS, x)), t, N_EDGE, absv);
    kir_graph_destroy(g);
  }
}

static void test_u64_high(void **state) {
  (void)state;
  const uint64_t big = (U64(1) << 63) + 5, top = ~U64(0);
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, vec_bits(KILN_U64, 3, (uint64_t[]){big, top, 3}));
  int32_t b = konst(g, vec_bits(KILN_U64, 3, (uint64_t[]){3, U64(1) << 63, big}));
  expect_bits(run1(g, bin(g, KIR_OP_MAXIMUM, a, b)), KILN_U64, 3, (uint64_t[]){big, top, big});
  expect_bits(run1(g, bin(g, KIR_OP_MINIMUM, a, b)), KILN_U64, 3,
              (uint64_t[]){3, U64(1) << 63, 3});
  expect_bits(run1(g, bin(g, KIR_OP_DIV, a, b)), KILN_U64, 3,
              (uint64_t[]){big / 3, 1, 0});
  /* clamp bounds beyond 2^63 */
  kir_node *c = node(g, KIR_OP_CLAMP, 1, &a);
  assert_int_equal(kir_attr_set_float(g, c, "min", 1e19), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, c, "max", 1.2e19), KILN_OK);
  expect_bits(run1(g, fin(g, c)), KILN_U64, 3,
              (uint64_t[]){UINT64_C(10000000000000000000), UINT64_C(12000000000000000000),
                           UINT64_C(10000000000000000000)});
  kir_node *c2 = node(g, KIR_OP_CLAMP, 1, &a);
  assert_int_equal(kir_attr_set_float(g, c2, "min", -5), KILN_OK);
  expect_bits(run1(g, fin(g, c2)), KILN_U64, 3, (uint64_t[]){big, top, 3});
  /* pow wraps; an unsigned exponent is never negative */
  int32_t p = konst(g, vec_bits(KILN_U64, 2, (uint64_t[]){2, 3}));
  int32_t e = konst(g, vec_bits(KILN_U64, 2, (uint64_t[]){64, 2}));
  expect_bits(run1(g, bin(g, KIR_OP_POW, p, e)), KILN_U64, 2, (uint64_t[]){0, 9});
  kir_graph_destroy(g);
}

static void test_div_zero(void **state) {
  (void)state;
  for (int d = 0; d < N_INTS; d++) {
    kir_graph *g = kir_graph_create();
    int32_t a = konst(g, vec_bits(INTS[d], 2, (uint64_t[]){7, 8}));
    int32_t b = konst(g, vec_bits(INTS[d], 2, (uint64_t[]){1, 0}));
    int32_t q = bin(g, KIR_OP_DIV, a, b);
    kir_tensor *out = NULL;
    assert_int_equal(kir_interp_run(g, NULL, NULL, 0, &q, 1, NULL, 0, &out), KILN_ERR_EXEC);
    assert_null(out);
    assert_non_null(strstr(g->error, "division by zero"));
    kir_graph_destroy(g);
  }
  /* signed MIN / -1 wraps */
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, vec_bits(KILN_I8, 1, (uint64_t[]){0x80}));
  int32_t b = konst(g, vec_bits(KILN_I8, 1, (uint64_t[]){0xff}));
  expect_bits(run1(g, bin(g, KIR_OP_DIV, a, b)), KILN_I8, 1, (uint64_t[]){0x80});
  kir_graph_destroy(g);
}

static void test_clamp_narrow(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, vec_f(KILN_I8, 4, (double[]){-128, -3, 5, 127}));
  kir_node *c = node(g, KIR_OP_CLAMP, 1, &x);
  assert_int_equal(kir_attr_set_float(g, c, "min", -1000), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, c, "max", 2.5), KILN_OK);
  expect_bits(run1(g, fin(g, c)), KILN_I8, 4, (uint64_t[]){0x80, 0xfd, 2, 2});
  int32_t u = konst(g, vec_f(KILN_U8, 3, (double[]){0, 200, 255}));
  kir_node *cu = node(g, KIR_OP_CLAMP, 1, &u);
  assert_int_equal(kir_attr_set_float(g, cu, "min", 1), KILN_OK);
  assert_int_equal(kir_attr_set_float(g, cu, "max", 300), KILN_OK);
  expect_bits(run1(g, fin(g, cu)), KILN_U8, 3, (uint64_t[]){1, 200, 255});
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- reductions ---- */

static int32_t reduce(kir_graph *g, kir_op op, int32_t x) { return un(g, op, x); }

static void test_reductions(void **state) {
  (void)state;
  const uint64_t big = (U64(1) << 63) + 1, top = ~U64(0);
  kir_graph *g = kir_graph_create();
  int32_t x = konst(g, vec_bits(KILN_U64, 3, (uint64_t[]){big, 5, top}));
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_MAX, x)), KILN_U64, 1, (uint64_t[]){top});
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_MIN, x)), KILN_U64, 1, (uint64_t[]){5});
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_SUM, x)), KILN_U64, 1,
              (uint64_t[]){(U64(1) << 63) + 5});
  expect_bits(run1(g, un(g, KIR_OP_ARGMAX, x)), KILN_I64, 1, (uint64_t[]){2});
  expect_bits(run1(g, un(g, KIR_OP_ARGMIN, x)), KILN_I64, 1, (uint64_t[]){1});
  int32_t y = konst(g, vec_f(KILN_U8, 4, (double[]){200, 100, 255, 0}));
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_SUM, y)), KILN_U8, 1, (uint64_t[]){555 & 255});
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_MAX, y)), KILN_U8, 1, (uint64_t[]){255});
  expect_bits(run1(g, un(g, KIR_OP_ARGMAX, y)), KILN_I64, 1, (uint64_t[]){2});
  int32_t z = konst(g, vec_f(KILN_I8, 3, (double[]){-1, 5, -128}));
  expect_bits(run1(g, un(g, KIR_OP_ARGMIN, z)), KILN_I64, 1, (uint64_t[]){2});
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_SUM, z)), KILN_I8, 1, (uint64_t[]){(uint64_t)-124});
  int32_t h = konst(g, vec_f(KILN_F16, 3, (double[]){1, 2048, 1}));
  expect_bits(run1(g, reduce(g, KIR_OP_REDUCE_SUM, h)), KILN_F16, 1, (uint64_t[]){0x6801});
  expect_bits(run1(g, un(g, KIR_OP_ARGMAX, h)), KILN_I64, 1, (uint64_t[]){1});
  kir_graph_destroy(g);
}

/* max_pool on u8 (ONNX test_maxpool_2d_uint8 style) keeps the unsigned max. */
static void test_max_pool_u8(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_type t = {KILN_U8, 4, {1, 1, 2, 2}};
  kir_tensor *v = kir_tensor_new(&t);
  setbits(v, 0, 1), setbits(v, 1, 255), setbits(v, 2, 128), setbits(v, 3, 7);
  int32_t x = konst(g, v);
  kir_node *p = node(g, KIR_OP_MAX_POOL, 1, &x);
  assert_int_equal(kir_attr_set_ints(g, p, "kernel", (int64_t[]){2, 2}, 2), KILN_OK);
  expect_bits(run1(g, fin(g, p)), KILN_U8, 1, (uint64_t[]){255});
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- casts --------- */

static const double SRC[] = {0, 1, -1, 2.5, -2.5, 127.9, 128, -129, 255, 256, 300.7, -300.7,
                             32767, 32768, -32769, 65504, 65520, 70000, 4294967295.0,
                             4294967296.0, 1e10, -1e10, 9.3e18, -9.3e18, 1.8e19, 1e20, -1e20,
                             0.1, 0x1p-24, 0x1p-25, 1 + 0x1p-11, NAN, INFINITY, -INFINITY};
#define N_SRC (int)(sizeof SRC / sizeof SRC[0])

/* The oracle of cast for one source element. */
static uint64_t model_cast(const kir_tensor *src, int64_t i, kiln_dtype to) {
  kiln_dtype from = src->type.dtype;
  bool ffloat = kir_dtype_is_float(from);
  double fv = kir_tensor_get_f(src, i);            /* exact for float sources */
  uint64_t ib = getbits(src, i);                   /* integer sources: raw bits */
  int64_t iv = ffloat || from == KILN_BOOL ? 0 : sext(from, ib);
  bool iuns = uns_of(from);
  if (from == KILN_BOOL) iv = (int64_t)ib, iuns = true;
  if (to == KILN_BOOL) return ffloat ? fv != 0 : ib != 0;
  if (kir_dtype_is_float(to)) {
    double d = 0;
    float f = 0;
    if (ffloat) d = fv, f = (float)fv;
    else if (iuns) d = (double)ib, f = (float)ib;
    else d = (double)iv, f = (float)iv;
    uint32_t fb;
    memcpy(&fb, &f, 4);
    uint64_t db;
    memcpy(&db, &d, 8);
    /* |integers| here are < 2^53 or powers of two: d is exact, one rounding from it */
    switch (to) {
    case KILN_F32: return fb;
    case KILN_F64: return db;
    case KILN_F16: return kir_f16_from_double(d);
    case KILN_BF16: return kir_bf16_from_double(d);
    default: break;
    }
  }
  if (!ffloat) return (iuns ? ib : (uint64_t)iv) & mask_of(to); /* wrap */
  if (isnan(fv)) return 0;
  double tv = trunc(fv);
  int b = bits_of(to);
  if (uns_of(to)) {
    if (tv <= 0) return 0;
    if (tv >= ldexp(1, b)) return mask_of(to);
    return (uint64_t)tv;
  }
  if (tv >= ldexp(1, b - 1)) return mask_of(to) >> 1;
  if (tv < -ldexp(1, b - 1)) return (U64(1) << (b - 1));
  return (uint64_t)(int64_t)tv & mask_of(to);
}

static void test_cast_all_pairs(void **state) {
  (void)state;
  for (int fd = 1; fd < KILN_DTYPE_COUNT; fd++) {
    kiln_dtype from = (kiln_dtype)fd;
    kir_tensor *src = vec(from, N_SRC);
    for (int i = 0; i < N_SRC; i++) kir_tensor_set_f(src, i, SRC[i]);
    /* a wrap case for every integer source: top bits set */
    if (kir_dtype_is_int(from)) setbits(src, 0, mask_of(from) - 0x55);
    for (int td = 1; td < KILN_DTYPE_COUNT; td++) {
      kiln_dtype to = (kiln_dtype)td;
      uint64_t want[N_SRC];
      for (int i = 0; i < N_SRC; i++) want[i] = model_cast(src, i, to);
      kir_graph *g = kir_graph_create();
      kir_tensor *copy = kir_tensor_clone(src);
      kir_tensor *got = run1(g, cast(g, konst(g, copy), to));
      for (int i = 0; i < N_SRC; i++) {
        uint64_t gb = getbits(got, i);
        bool both_nan = kir_dtype_is_float(to) && isnan(kir_tensor_get_f(got, i)) &&
                        kir_dtype_is_float(from) && isnan(kir_tensor_get_f(src, i));
        if (gb != want[i] && !both_nan)
          fail_msg("cast %s -> %s of element %d (%a): got 0x%llx want 0x%llx",
                   kiln_dtype_name(from), kiln_dtype_name(to), i, SRC[i],
                   (unsigned long long)gb, (unsigned long long)want[i]);
      }
      kir_tensor_free(got);
      kir_graph_destroy(g);
    }
    kir_tensor_free(src);
  }
}

/* Spot values written out, independent of the oracle above. */
static void test_cast_spots(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t f = konst(g, vec_f(KILN_F32, 5, (double[]){300.7, -5, NAN, 3.9, -200}));
  expect_bits(run1(g, cast(g, f, KILN_U8)), KILN_U8, 5, (uint64_t[]){255, 0, 0, 3, 0});
  expect_bits(run1(g, cast(g, f, KILN_I8)), KILN_I8, 5, (uint64_t[]){127, 0xfb, 0, 3, 0x80});
  expect_bits(run1(g, cast(g, f, KILN_BOOL)), KILN_BOOL, 5, (uint64_t[]){1, 1, 1, 1, 1});
  int32_t d = konst(g, vec_f(KILN_F64, 4, (double[]){1e20, -1, 0x1p64, 9.3e18}));
  expect_bits(run1(g, cast(g, d, KILN_U64)), KILN_U64, 4,
              (uint64_t[]){~U64(0), 0, ~U64(0), UINT64_C(9300000000000000000)});
  expect_bits(run1(g, cast(g, d, KILN_I64)), KILN_I64, 4,
              (uint64_t[]){INT64_MAX, (uint64_t)-1, INT64_MAX, UINT64_C(9223372036854775807)});
  int32_t i = konst(g, vec_bits(KILN_I64, 2, (uint64_t[]){(uint64_t)-1, 300}));
  expect_bits(run1(g, cast(g, i, KILN_U8)), KILN_U8, 2, (uint64_t[]){255, 44});
  expect_bits(run1(g, cast(g, i, KILN_I8)), KILN_I8, 2, (uint64_t[]){0xff, 44});
  int32_t u = konst(g, vec_bits(KILN_U64, 2, (uint64_t[]){~U64(0), U64(1) << 63}));
  expect_bits(run1(g, cast(g, u, KILN_I32)), KILN_I32, 2, (uint64_t[]){0xffffffff, 0});
  kir_tensor *o = run1(g, cast(g, u, KILN_F64));
  assert_double_equal(kir_tensor_get_f(o, 0), 18446744073709551616.0, 0);
  assert_double_equal(kir_tensor_get_f(o, 1), 9223372036854775808.0, 0);
  kir_tensor_free(o);
  int32_t w = konst(g, vec_bits(KILN_U16, 1, (uint64_t[]){0xffff}));
  expect_bits(run1(g, cast(g, w, KILN_I16)), KILN_I16, 1, (uint64_t[]){0xffff});
  expect_bits(run1(g, cast(g, w, KILN_F16)), KILN_F16, 1, (uint64_t[]){0x7c00});
  expect_bits(run1(g, cast(g, w, KILN_BF16)), KILN_BF16, 1, (uint64_t[]){0x4780});
  /* f32 -> bf16 rounds to nearest even (ONNX's reference data truncates) */
  int32_t r = konst(g, vec_f(KILN_F32, 2, (double[]){0.48033666610717773, 0.4996848702430725}));
  expect_bits(run1(g, cast(g, r, KILN_BF16)), KILN_BF16, 2, (uint64_t[]){0x3ef6, 0x3f00});
  int32_t b = konst(g, vec_f(KILN_BF16, 2, (double[]){1e10, 0x1p-133}));
  expect_bits(run1(g, cast(g, b, KILN_F16)), KILN_F16, 2, (uint64_t[]){0x7c00, 0});
  int32_t h = konst(g, vec_bits(KILN_F16, 3, (uint64_t[]){0x0001, 0x7bff, 0xfe00}));
  expect_bits(run1(g, cast(g, h, KILN_BF16)), KILN_BF16, 3,
              (uint64_t[]){kir_bf16_from_double(0x1p-24), 0x4780, 0xffc0});
  expect_bits(run1(g, cast(g, h, KILN_I16)), KILN_I16, 3, (uint64_t[]){0, 32767, 0});
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- inference ----- */

static void test_infer_rules(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int32_t a = konst(g, vec(KILN_U8, 2)), b = konst(g, vec(KILN_I8, 2));
  int32_t h = konst(g, vec(KILN_F16, 2)), q = konst(g, vec(KILN_BF16, 2));
  kir_node *n = node(g, KIR_OP_ADD, 2, (int32_t[]){a, b});
  assert_int_equal(kir_infer_node(g, n), KILN_ERR_TYPE);
  n = node(g, KIR_OP_EXP, 1, &a);
  assert_int_equal(kir_infer_node(g, n), KILN_ERR_TYPE);
  assert_non_null(strstr(g->error, "float"));
  un(g, KIR_OP_EXP, h);
  un(g, KIR_OP_LOG_SOFTMAX, q);
  un(g, KIR_OP_ERF, q);
  un(g, KIR_OP_REDUCE_MEAN, h);
  un(g, KIR_OP_ARGMAX, a);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- round trips --- */

/* One constant of every dtype with edge values, as a graph. */
static kir_graph *edge_graph(void) {
  kir_graph *g = kir_graph_create();
  for (int d = 1; d < KILN_DTYPE_COUNT; d++) {
    kiln_dtype t = (kiln_dtype)d;
    kir_tensor *x = vec(t, 12);
    if (kir_dtype_is_int(t) || t == KILN_BOOL) {
      for (int i = 0; i < 12; i++) setbits(x, i, t == KILN_BOOL ? (uint64_t)(i & 1) : EDGE[i + 8]);
    } else {
      static const double v[] = {0, -0.0, 1, -2.5, 0.1, 1e-7, 65504, 3e38, INFINITY, -INFINITY,
                                 NAN, 0x1p-24};
      for (int i = 0; i < 12; i++) kir_tensor_set_f(x, i, v[i]);
      if (t == KILN_F16) setbits(x, 11, 0x7e01), setbits(x, 9, 0x0001); /* payload, subnormal */
      if (t == KILN_BF16) setbits(x, 11, 0xffc1), setbits(x, 9, 0x0001);
    }
    konst(g, x);
  }
  return g;
}

static void assert_same_constants(const kir_graph *a, const kir_graph *b) {
  assert_int_equal(a->n_nodes, b->n_nodes);
  for (int32_t i = 0; i < a->n_nodes; i++) {
    const kir_tensor *x = kir_attr_tensor(a->nodes[i], "value");
    const kir_tensor *y = kir_attr_tensor(b->nodes[i], "value");
    assert_non_null(x);
    assert_non_null(y);
    assert_true(kir_type_equal(&x->type, &y->type));
    int64_t nb = kir_type_nbytes(&x->type);
    if (memcmp(x->data, y->data, (size_t)nb) != 0)
      fail_msg("constant %d (%s) differs after the round trip", (int)i,
               kiln_dtype_name(x->type.dtype));
  }
}

static void test_text_round_trip(void **state) {
  (void)state;
  kir_graph *g = edge_graph();
  char *text = NULL, *text2 = NULL;
  size_t len = 0, len2 = 0;
  assert_int_equal(kir_graph_to_text(g, &text, &len, true), KILN_OK);
  assert_non_null(strstr(text, "18446744073709551615"));
  assert_non_null(strstr(text, "nan(0x7e01)"));
  assert_non_null(strstr(text, "65504.0"));
  kir_graph *h = kir_graph_create();
  if (kir_graph_parse_text(h, text, len, NULL) != KILN_OK) fail_msg("parse: %s\n%s", h->error, text);
  assert_same_constants(g, h);
  assert_int_equal(kir_graph_to_text(h, &text2, &len2, true), KILN_OK);
  assert_string_equal(text, text2);
  kir_free(text);
  kir_free(text2);
  kir_graph_destroy(g);
  kir_graph_destroy(h);
}

static void parse_fails(const char *body, kiln_status want, const char *what) {
  char text[512];
  snprintf(text, sizeof text, "kiln.graph 1.0\n%%0 \"k\" = constant() {value = %s}\n", body);
  kir_graph *g = kir_graph_create();
  kiln_status s = kir_graph_parse_text(g, text, strlen(text), NULL);
  if (s != want || !strstr(g->error, what))
    fail_msg("%s: got %s '%s', want %s '%s'", body, kiln_status_name(s), g->error,
             kiln_status_name(want), what);
  kir_graph_destroy(g);
}

static void test_text_errors(void **state) {
  (void)state;
  parse_fails("u8[1]{256}", KILN_ERR_FORMAT, "out of range");
  parse_fails("u8[1]{-1}", KILN_ERR_FORMAT, "out of range");
  parse_fails("i8[1]{-129}", KILN_ERR_FORMAT, "out of range");
  parse_fails("u64[1]{18446744073709551616}", KILN_ERR_OVERFLOW, "range");
  parse_fails("u64[1]{-1}", KILN_ERR_FORMAT, "out of range");
  parse_fails("i64[1]{9223372036854775808}", KILN_ERR_OVERFLOW, "int64");
  parse_fails("f16[1]{70000.0}", KILN_ERR_FORMAT, "out of f16 range");
  parse_fails("f16[1]{2049}", KILN_ERR_FORMAT, "not exact in f16");
  parse_fails("bf16[1]{nan(0x7f80)}", KILN_ERR_FORMAT, "bf16 NaN");
  /* values that parse: a decimal rounds to nearest even */
  const char *ok = "kiln.graph 1.0\n%0 \"k\" = constant() {value = f16[2]{1.00048828125, "
                   "-0.0}}\n%1 \"u\" = constant() {value = u64[1]{18446744073709551615}}\n";
  kir_graph *g = kir_graph_create();
  if (kir_graph_parse_text(g, ok, strlen(ok), NULL) != KILN_OK) fail_msg("%s", g->error);
  const kir_tensor *t = kir_attr_tensor(g->nodes[0], "value");
  assert_true(getbits(t, 0) == 0x3c00 && getbits(t, 1) == 0x8000);
  assert_true(getbits(kir_attr_tensor(g->nodes[1], "value"), 0) == ~U64(0));
  kir_graph_destroy(g);
}

static void test_kiln_round_trip(void **state) {
  (void)state;
  kir_graph *g = edge_graph();
  /* plus an op per new dtype so typed nodes round trip too */
  for (int32_t i = 0, n = g->n_nodes; i < n; i++)
    if (g->nodes[i]->type.dtype != KILN_BOOL) un(g, KIR_OP_NEG, i);
  const char *path = kt_path("dtypes.kiln");
  if (kir_graph_save(g, path) != KILN_OK) fail_msg("save: %s", g->error);
  kir_graph *h = kir_graph_create();
  if (kir_graph_load(h, path) != KILN_OK) fail_msg("load: %s", h->error);
  assert_int_equal(h->n_nodes, g->n_nodes);
  for (int32_t i = 0; i < g->n_nodes; i++)
    assert_true(kir_type_equal(&g->nodes[i]->type, &h->nodes[i]->type));
  kir_graph *gc = edge_graph(), *hc = kir_graph_create();
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(kir_graph_to_bytes(gc, &buf, &len), KILN_OK);
  assert_int_equal(kir_graph_from_bytes(hc, buf, len), KILN_OK);
  assert_same_constants(gc, hc);
  kir_free(buf);
  remove(path);
  kir_graph_destroy(g);
  kir_graph_destroy(h);
  kir_graph_destroy(gc);
  kir_graph_destroy(hc);
}

static void test_kt_fill(void **state) {
  (void)state;
  for (int d = 1; d < KILN_DTYPE_COUNT; d++) {
    kir_tensor *x = vec((kiln_dtype)d, 64), *y = vec((kiln_dtype)d, 64);
    kt_fill(x, 7, -300, 300);
    kt_fill(y, 7, -300, 300);
    assert_true(kt_rel_error(x, y) == 0);
    for (int i = 0; i < 64; i++) {
      double v = kir_tensor_get_f(x, i);
      if (uns_of((kiln_dtype)d)) assert_true(v >= 0);
      if (d == KILN_I8) assert_true(v >= -128 && v <= 127);
    }
    kir_tensor_free(x);
    kir_tensor_free(y);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_families),      cmocka_unit_test(test_elements),
      cmocka_unit_test(test_f16_rounding),  cmocka_unit_test(test_bf16_rounding),
      cmocka_unit_test(test_half_ops),      cmocka_unit_test(test_int_binary),
      cmocka_unit_test(test_int_unary),     cmocka_unit_test(test_u64_high),
      cmocka_unit_test(test_div_zero),      cmocka_unit_test(test_clamp_narrow),
      cmocka_unit_test(test_reductions),    cmocka_unit_test(test_max_pool_u8),
      cmocka_unit_test(test_cast_all_pairs), cmocka_unit_test(test_cast_spots),
      cmocka_unit_test(test_infer_rules),   cmocka_unit_test(test_text_round_trip),
      cmocka_unit_test(test_text_errors),   cmocka_unit_test(test_kiln_round_trip),
      cmocka_unit_test(test_kt_fill),
  };
  return cmocka_run_group_tests_name("ir_dtypes", tests, NULL, NULL);
}
