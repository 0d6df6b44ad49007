/* kt_cuda_graphs.c — the CUDA tests' graph builders (kt_cuda_graphs.h). */
#include "kt_cuda_graphs.h"

#include <math.h>
#include <string.h>

#include "passes/kps.h"
#include "tests/kt_graph.h"
#include "tests/passes/kt_gen.h"

void ktc_random_graph(uint64_t seed, kt_gen *k) {
  kt_gen_opts o;
  char err[256];
  memset(&o, 0, sizeof o);
  o.n_nodes = 40;
  o.window = seed % 3 == 0 ? 4 : 0;
  if (kt_gen_build(seed, &o, k, err, sizeof err) != KILN_OK) fail_msg("kt_gen seed %d: %s", (int)seed, err);
}

void ktc_place(kir_graph *g, const char *pipeline, const char *const *roots, int32_t n) {
  static const char *const devices[] = {"cpu:0", "cuda:0"};
  kps_options opt;
  kps_context ctx;
  memset(&opt, 0, sizeof opt);
  memset(&ctx, 0, sizeof ctx);
  opt.pipeline = pipeline;
  opt.verify_each = true;
  ctx.roots = roots;
  ctx.n_roots = n;
  ctx.devices = devices;
  ctx.n_devices = 2;
  OK(g, kps_run(g, &opt, &ctx));
}

const kiln_dtype ktc_dtypes[KTC_N_DTYPES] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16, KILN_I32,
                                      KILN_I64, KILN_U8,  KILN_I8,  KILN_U16,  KILN_I16,
                                      KILN_U32, KILN_U64, KILN_BOOL};

static bool is_shape_op(kir_op op) {
  return op == KIR_OP_RESHAPE || op == KIR_OP_TRANSPOSE || op == KIR_OP_IDENTITY;
}

/* Whether the interpreter defines op on dt (what the verifier lets through). */
bool ktc_op_takes(kir_op op, kiln_dtype dt) {
  if (is_shape_op(op)) return true;
  if (dt == KILN_BOOL) return false;
  if (kir_op_has(op, KIR_F_FLOAT_ONLY)) return kir_dtype_is_float(dt);
  return true;
}

/* The ops a test graph is built for: those CUDA has a kernel for that compute. */
bool ktc_op_wanted(kir_op op) {
  if (!kps_device_has_kernel("cuda:0", op)) return false;
  if (kir_op_has(op, KIR_F_SOURCE) || kir_op_has(op, KIR_F_CONTROL) || kir_op_has(op, KIR_F_FUSED))
    return false;
  return op != KIR_OP_TRANSFER && op != KIR_OP_VARIABLE && op != KIR_OP_ASSIGN && op != KIR_OP_CONSTANT;
}

void ktc_build_binary(kir_graph *g, kir_op op, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 3, 5));
  kir_node *y = kt_cst(g, "y", dt, DIMS(3, 1), 1, 1, 5);
  kir_node *c = kt_cst(g, "c", dt, DIMS(5), 2, 1, 5);
  kir_node *t1 = kt_op2(g, op, "t1", x, y);
  kir_node *t2 = kt_op2(g, op, "t2", t1, c);
  kt_op2(g, op, "out", y, t2);
}

void ktc_build_unary(kir_graph *g, kir_op op, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 3, 5));
  if (op == KIR_OP_CLAMP) {
    kir_node *t1 = kt_clamp(g, "t1", x, -0.5, 1.5);
    kir_node *t2 = kt_clamp(g, "t2", t1, NAN, 3.25);
    kt_clamp(g, "out", t2, -2.0, NAN);
    return;
  }
  if (op == KIR_OP_LOG) { /* log(log(x)) is NaN for x < e: one log keeps it finite */
    kt_op1(g, op, "out", x);
    return;
  }
  kt_op1(g, op, "out", kt_op1(g, op, "t2", kt_op1(g, op, "t1", x)));
}

static void build_reduce(kir_graph *g, kir_op op, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(4, 6, 40));
  kt_reduce(g, op, "r1", x, (const int64_t[]){2}, 1, 0);
  kir_node *r2 = kt_reduce(g, op, "r2", x, (const int64_t[]){0}, 1, 1);
  kt_reduce(g, op, "r3", x, NULL, 0, 0);
  kt_reduce(g, op, "out", r2, (const int64_t[]){-1, 1}, 2, 0);
}

void ktc_build_matmul(kir_graph *g, kiln_dtype dt) {
  kir_node *a = kt_ph(g, "a", dt, DIMS(2, 3, 4));
  kir_node *b = kt_cst(g, "b", dt, DIMS(4, 5), 1, -1, 1);
  kir_node *m1 = kt_matmul(g, "m1", a, b, 0, 0);
  kir_node *bt = kt_cst(g, "bt", dt, DIMS(6, 5), 2, -1, 1);
  kt_matmul(g, "r1", m1, bt, 0, 1);
  kir_node *a2 = kt_ph(g, "a2", dt, DIMS(2, 1, 3, 4));
  kir_node *b2 = kt_ph(g, "b2", dt, DIMS(3, 4, 5));
  kt_matmul(g, "r2", a2, b2, 0, 0);
  kir_node *at = kt_ph(g, "at", dt, DIMS(4, 3));
  kt_matmul(g, "r3", at, b, 1, 0);
}

static void build_add_n(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(3, 4));
  kir_node *y = kt_cst(g, "y", dt, DIMS(3, 4), 1, -3, 3);
  int32_t in3[3] = {x->id, y->id, x->id};
  kir_node *z = kt_infer(g, kir_node_add(g, KIR_OP_ADD_N, "z", in3, 3));
  int32_t in2[2] = {z->id, z->id};
  kt_infer(g, kir_node_add(g, KIR_OP_ADD_N, "out", in2, 2));
}

static void build_shape(kir_graph *g, kir_op op, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 3, 4));
  if (op == KIR_OP_RESHAPE) {
    kir_node *r = kt_with_ints(g, op, "t1", x, "shape", (const int64_t[]){4, 6}, 2);
    kt_with_ints(g, op, "out", r, "shape", (const int64_t[]){24}, 1);
  } else if (op == KIR_OP_TRANSPOSE) {
    kir_node *t = kt_with_ints(g, op, "t1", x, "perm", (const int64_t[]){2, 0, 1}, 3);
    kt_with_ints(g, op, "out", t, "perm", NULL, 0);
  } else {
    kt_op1(g, op, "out", kt_op1(g, op, "t2", kt_op1(g, op, "t1", x)));
  }
}

kir_node *ktc_conv(kir_graph *g, const char *name, const kir_node *x, const kir_node *w, const kir_node *b,
                    const int64_t *pads, const int64_t *strides, const int64_t *dil, int64_t group) {
  int32_t in[3] = {x->id, w->id, b ? b->id : -1}, k = x->type.rank - 2;
  kir_node *n = kir_node_add(g, KIR_OP_CONV, name, in, b ? 3 : 2);
  assert_non_null(n);
  if (pads) OK(g, kir_attr_set_ints(g, n, "pads", pads, 2 * k));
  if (strides) OK(g, kir_attr_set_ints(g, n, "strides", strides, k));
  if (dil) OK(g, kir_attr_set_ints(g, n, "dilations", dil, k));
  if (group != 1) OK(g, kir_attr_set_int(g, n, "group", group));
  return kt_infer(g, n);
}

/* Convolutions cuDNN runs (plain, padded and strided; grouped with a bias; 1-D dilated):
 * fetches "out", "c2", "c3". */
void ktc_build_convs(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 3, 7, 6));
  kir_node *w = kt_cst(g, "w", dt, DIMS(4, 3, 3, 3), 1, -1, 1);
  kir_node *c1 = ktc_conv(g, "c1", x, w, NULL, (const int64_t[]){1, 1, 1, 1}, (const int64_t[]){2, 1}, NULL, 1);
  kir_node *w2 = kt_cst(g, "w2", dt, DIMS(6, 2, 2, 2), 2, -1, 1);
  kir_node *b2 = kt_cst(g, "b2", dt, DIMS(6), 3, -1, 1);
  ktc_conv(g, "c2", c1, w2, b2, NULL, NULL, (const int64_t[]){2, 1}, 2);
  kir_node *x1 = kt_ph(g, "x1", dt, DIMS(1, 4, 12));
  kir_node *w3 = kt_cst(g, "w3", dt, DIMS(4, 1, 3), 4, -1, 1);
  ktc_conv(g, "c3", x1, w3, NULL, (const int64_t[]){2, 2}, NULL, (const int64_t[]){2}, 4);
  kt_op1(g, KIR_OP_NEG, "out", c1);
}

/* A small graph exercising op on dt; its fetches in fetch[], their count returned. */
int32_t ktc_build_op_graph(kir_graph *g, kir_op op, kiln_dtype dt, const char **fetch) {
  if (op == KIR_OP_MATMUL) {
    ktc_build_matmul(g, dt);
    fetch[0] = "r1", fetch[1] = "r2", fetch[2] = "r3";
    return 3;
  }
  fetch[0] = "out";
  if (op == KIR_OP_CONV) {
    ktc_build_convs(g, dt);
    fetch[1] = "c2", fetch[2] = "c3";
    return 3;
  }
  if (op == KIR_OP_SOFTMAX) {
    kt_softmax(g, "out", kt_softmax(g, "t1", kt_ph(g, "x", dt, DIMS(3, 5, 7)), 1), -1);
  } else if (op == KIR_OP_ADD_N) {
    build_add_n(g, dt);
  } else if (is_shape_op(op)) {
    build_shape(g, op, dt);
  } else if (kir_op_has(op, KIR_F_REDUCTION)) {
    build_reduce(g, op, dt);
    fetch[1] = "r1", fetch[2] = "r3";
    return 3;
  } else if (kir_op_has(op, KIR_F_BINARY)) {
    ktc_build_binary(g, op, dt);
  } else {
    ktc_build_unary(g, op, dt);
  }
  return 1;
}

/* x[8,16] -> relu(x W1 + b1) -> softmax(h W2 + b2) in dt. */
void ktc_build_mlp(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(8, 16));
  kir_node *w1 = kt_cst(g, "w1", dt, DIMS(16, 32), 1, -1, 1);
  kir_node *b1 = kt_cst(g, "b1", dt, DIMS(32), 2, -1, 1);
  kir_node *h = kt_op1(g, KIR_OP_RELU, "h", kt_op2(g, KIR_OP_ADD, "hb", kt_matmul(g, "hm", x, w1, 0, 0), b1));
  kir_node *w2 = kt_cst(g, "w2", dt, DIMS(32, 10), 3, -1, 1);
  kir_node *b2 = kt_cst(g, "b2", dt, DIMS(10), 4, -1, 1);
  kt_softmax(g, "out", kt_op2(g, KIR_OP_ADD, "ob", kt_matmul(g, "om", h, w2, 0, 0), b2), -1);
}

/* matmul, then add a [1, n] row, tanh and a multiply by a column: cuBLASLt cannot run
 * this epilogue, so a follow-up kernel does. */
void ktc_build_mm_tanh(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 5, 16));
  kir_node *w = kt_cst(g, "w", dt, DIMS(16, 24), 1, -1, 1);
  kir_node *b = kt_cst(g, "b", dt, DIMS(1, 24), 2, -1, 1);
  kir_node *c = kt_ph(g, "c", dt, DIMS(5, 1));
  kir_node *t = kt_op1(g, KIR_OP_TANH, "t", kt_op2(g, KIR_OP_ADD, "a", kt_matmul(g, "m", x, w, 0, 0), b));
  kt_op2(g, KIR_OP_MUL, "out", c, t);
}

/* A batched product whose batch dims broadcast in part, with a bias: a generated kernel
 * with the epilogue inline. */
void ktc_build_mm_partial(kir_graph *g, kiln_dtype dt) {
  kir_node *a = kt_ph(g, "a", dt, DIMS(2, 1, 3, 4));
  kir_node *b = kt_ph(g, "b", dt, DIMS(3, 4, 5));
  kir_node *c = kt_cst(g, "c", dt, DIMS(5), 1, -1, 1);
  kt_op1(g, KIR_OP_SIGMOID, "out", kt_op2(g, KIR_OP_SUB, "s", kt_matmul(g, "m", a, b, 0, 0), c));
}

void ktc_build_chain(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(4, 8));
  kir_node *y = kt_ph(g, "y", dt, DIMS(8));
  kir_node *z = kt_cst(g, "z", dt, DIMS(4, 1), 1, -1, 1);
  kir_node *e = kt_op1(g, KIR_OP_EXP, "e", kt_op2(g, KIR_OP_SUB, "s", kt_op2(g, KIR_OP_MUL, "m", x, y), z));
  kir_node *mx = kt_op2(g, KIR_OP_MAXIMUM, "mx", e, x);
  kir_node *cl = kt_clamp(g, "cl", mx, -0.75, 2.5);
  kir_node *sg = kt_op1(g, KIR_OP_SIGMOID, "sg", cl);
  kir_node *dv = kt_op2(g, KIR_OP_DIV, "dv", z, sg);
  kir_node *th = kt_op1(g, KIR_OP_TANH, "th", kt_op1(g, KIR_OP_NEG, "ng", dv));
  kt_op1(g, KIR_OP_SQRT, "out", kt_op2(g, KIR_OP_MUL, "sq", th, th)); /* sqrt of a square: no NaN */
}

void ktc_build_reductions(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(6, 48));
  kir_node *y = kt_ph(g, "y", dt, DIMS(48));
  kir_node *z = kt_cst(g, "z", dt, DIMS(6, 1), 1, -1, 1);
  kt_reduce(g, KIR_OP_REDUCE_SUM, "rs", kt_op1(g, KIR_OP_EXP, "ex", kt_op2(g, KIR_OP_MUL, "xy", x, y)),
            (const int64_t[]){1}, 1, 0);
  kt_reduce(g, KIR_OP_REDUCE_MAX, "rm", kt_op2(g, KIR_OP_SUB, "xz", x, z), (const int64_t[]){0}, 1, 1);
  kt_reduce(g, KIR_OP_REDUCE_MEAN, "rn", kt_op1(g, KIR_OP_RELU, "rl", kt_op2(g, KIR_OP_ADD, "xa", x, z)),
            NULL, 0, 0);
}

void ktc_build_softmaxes(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(3, 4, 33));
  kir_node *s = kt_cst(g, "s", dt, DIMS(33), 1, 0.5, 2);
  kir_node *b = kt_cst(g, "b", dt, DIMS(4, 1), 2, -1, 1);
  kt_softmax(g, "sm", kt_op2(g, KIR_OP_ADD, "xb", kt_op2(g, KIR_OP_MUL, "xs", x, s), b), -1);
  kt_softmax(g, "sm1", kt_op1(g, KIR_OP_TANH, "tx", x), 1);
  /* log_softmax has no CUDA kernel: the CPU runs it, with transfers both ways */
  kir_node *ls = kt_op1(g, KIR_OP_LOG_SOFTMAX, "ls", x);
  kt_op2(g, KIR_OP_MUL, "lsm", ls, s);
}

