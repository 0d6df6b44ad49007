/* test_place.c — the place pass: pins, defaults with and without a cuda device, soft
 * fallback reasons, strict errors, colocation of variables and assigns both ways,
 * transfers (once per producer and device, unique names, results unchanged), running
 * twice changes nothing, a reason for every node, random graphs and out-of-memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt_graph.h"
#include "kt_gen.h"
#include "passes/kps.h"

static const char *const CPU_GPU[] = {"cpu:0", "cuda:0"};

/* An f32 constant filled by kt_fill(seed) in [-1, 1). */
static kir_node *cst(kir_graph *g, const char *name, int32_t rank, const int64_t *dims, uint64_t seed) {
  return kt_cst(g, name, KILN_F32, rank, dims, seed, -1, 1);
}

static kir_node *opn(kir_graph *g, kir_op op, const char *name, const char *dev, int32_t n_in, ...) {
  int32_t in[8];
  va_list ap;
  va_start(ap, n_in);
  for (int32_t i = 0; i < n_in; i++) in[i] = va_arg(ap, kir_node *)->id;
  va_end(ap);
  kir_node *n = kir_node_add(g, op, name, in, n_in);
  assert_non_null(n);
  n->device = kir_graph_strdup(g, dev);
  return kt_infer(g, n);
}

static kir_node *rnd(kir_graph *g, const char *name, const char *dev, int64_t d0, int64_t d1) {
  int64_t dims[2] = {d0, d1};
  kir_node *n = kir_node_add(g, KIR_OP_RANDOM_NORMAL, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_int(g, n, "dtype", KILN_F32));
  OK(g, kir_attr_set_ints(g, n, "shape", dims, 2));
  OK(g, kir_attr_set_int(g, n, "seed", 5));
  n->device = kir_graph_strdup(g, dev);
  return kt_infer(g, n);
}

static kps_result place(kir_graph *g, const char *const *devs, int32_t n_devs, bool strict) {
  kps_result r;
  memset(&r, 0, sizeof r);
  kps_context ctx = {.devices = devs, .n_devices = n_devs, .strict_placement = strict};
  OK(g, kps_place(g, &ctx, &r));
  OK(g, kir_verify(g));
  return r;
}

/* Every node has a device and a reason; every value edge stays on one device except
 * into a transfer, which sits on its destination. */
static void assert_placed(const kir_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (!n->assigned_device[0] || !n->placement_reason[0]) fail_msg("node '%s' has no device or reason", n->name);
    if (n->op == KIR_OP_TRANSFER) {
      /* on its destination, unless the target lacks it (soft placement) */
      if (!strstr(n->placement_reason, "soft placement"))
        assert_string_equal(kir_attr_string(n, "device"), n->assigned_device);
      continue;
    }
    if (kir_op_has(n->op, KIR_F_CONTROL)) continue;
    for (int32_t k = 0; k < n->n_inputs; k++)
      if (strcmp(g->nodes[n->inputs[k]]->assigned_device, n->assigned_device) != 0)
        fail_msg("edge '%s' (%s) -> '%s' (%s) crosses devices without a transfer", g->nodes[n->inputs[k]]->name,
                 g->nodes[n->inputs[k]]->assigned_device, n->name, n->assigned_device);
  }
}

/* Placing again changes nothing: same bytes, changed false, no transfer inserted. */
static void assert_place_twice_same(kir_graph *g, const char *const *devs, int32_t n_devs) {
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  OK(g, kir_graph_to_bytes(g, &b1, &n1));
  kps_result r = place(g, devs, n_devs, false);
  OK(g, kir_graph_to_bytes(g, &b2, &n2));
  assert_false(r.changed);
  assert_int_equal(kt_stat_of(&r, "transfers inserted"), 0);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  kir_free(b1);
  kir_free(b2);
}

/* fetch's value under the interpreter is the same in both graphs (no feeds). */
static void assert_same_value(kir_graph *a, kir_graph *b, const char *fetch) {
  int32_t fa = kt_find(a, fetch)->id, fb = kt_find(b, fetch)->id;
  kir_tensor *ta = NULL, *tb = NULL;
  OK(a, kir_interp_run(a, NULL, NULL, 0, &fa, 1, NULL, 0, &ta));
  OK(b, kir_interp_run(b, NULL, NULL, 0, &fb, 1, NULL, 0, &tb));
  kt_assert_close(tb, ta, 0);
  kir_tensor_free(ta);
  kir_tensor_free(tb);
}

/* ---------------------------------------------------------------- policy -------- */

static kir_graph *mm_graph(const char *mm_dev, const char *mul_dev) {
  kir_graph *g = kir_graph_create();
  int64_t d[2] = {3, 3};
  kir_node *a = cst(g, "a", 2, d, 1), *b = cst(g, "b", 2, d, 2);
  kir_node *mm = opn(g, KIR_OP_MATMUL, "mm", mm_dev, 2, a, b);
  opn(g, KIR_OP_MUL, "mul", mul_dev, 2, mm, mm);
  return g;
}

static void test_cpu_only_defaults_and_pins(void **state) {
  (void)state;
  kir_graph *g = mm_graph("/device:CPU:0", "");
  kps_result r = place(g, NULL, 0, false);
  assert_int_equal(kt_stat_of(&r, "nodes placed"), 4);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 0);
  assert_true(r.changed);
  for (int32_t i = 0; i < g->n_nodes; i++) assert_string_equal(g->nodes[i]->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "mm")->placement_reason, "pinned by device scope 'cpu:0'");
  assert_string_equal(kt_find(g, "mul")->placement_reason, "no device requested; default cpu:0");
  assert_string_equal(kt_find(g, "a")->placement_reason, "with its first consumer 'mm'");
  assert_placed(g);
  assert_place_twice_same(g, NULL, 0);
  kir_graph_destroy(g);
}

static void test_defaults_with_cuda(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *w = rnd(g, "w", "", 3, 3);
  int64_t d[2] = {3, 3};
  kir_node *x = cst(g, "x", 2, d, 3);
  kir_node *mm = opn(g, KIR_OP_MATMUL, "mm", "", 2, x, w);
  kir_node *r = opn(g, KIR_OP_RELU, "r", "", 1, mm);
  opn(g, KIR_OP_GROUP, "all", "", 2, r, w);
  kir_graph *orig = kir_graph_clone(g);
  kps_result res = place(g, CPU_GPU, 2, false);
  assert_int_equal(kt_stat_of(&res, "transfers inserted"), 1);
  assert_int_equal(kt_stat_of(&res, "nodes placed"), 6);
  assert_string_equal(kt_find(g, "mm")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "mm")->placement_reason, "default device cuda:0: has a kernel for 'matmul'");
  assert_string_equal(kt_find(g, "r")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "w")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "w")->placement_reason, "no CUDA kernel for 'random_normal'; cpu:0");
  assert_string_equal(kt_find(g, "x")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "x")->placement_reason, "with its first consumer 'mm'");
  assert_string_equal(kt_find(g, "all")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "all")->placement_reason, "control op; runs on the host cpu:0");
  kir_node *t = kt_find(g, "w/to_cuda:0");
  assert_int_equal(t->op, KIR_OP_TRANSFER);
  assert_string_equal(t->assigned_device, "cuda:0");
  assert_string_equal(t->placement_reason, "transfer from cpu:0 to cuda:0 for 'mm'");
  assert_int_equal(kt_find(g, "mm")->inputs[1], t->id);
  /* the group's control edge to w needs no transfer */
  assert_int_equal(kt_find(g, "all")->inputs[1], kt_find(g, "w")->id);
  assert_placed(g);
  assert_same_value(orig, g, "r");
  assert_place_twice_same(g, CPU_GPU, 2);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* The lecture's tf.device example: two matmuls pinned to gpu:2 and gpu:3, their add_n
 * on cpu:0; the target has cpu:0 and cuda:0 only. */
static kir_graph *lecture_graph(const char *d0, const char *d1) {
  kir_graph *g = kir_graph_create();
  int64_t da[2] = {2, 3}, db[2] = {3, 2};
  const char *devs[2] = {d0, d1};
  kir_node *c[2];
  for (int i = 0; i < 2; i++) {
    char an[16], bn[16], mn[16];
    snprintf(an, sizeof an, i ? "Const_2" : "Const");
    snprintf(bn, sizeof bn, i ? "Const_3" : "Const_1");
    snprintf(mn, sizeof mn, i ? "MatMul_1" : "MatMul");
    kir_node *a = cst(g, an, 2, da, 10), *b = cst(g, bn, 2, db, 11);
    a->device = b->device = kir_graph_strdup(g, devs[i]);
    c[i] = opn(g, KIR_OP_MATMUL, mn, devs[i], 2, a, b);
  }
  opn(g, KIR_OP_ADD_N, "AddN", "/cpu:0", 2, c[0], c[1]);
  return g;
}

static void test_lecture_soft_placement(void **state) {
  (void)state;
  kir_graph *g = lecture_graph("/device:gpu:2", "/device:gpu:3");
  kps_result r = place(g, CPU_GPU, 2, false);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 6);
  assert_int_equal(kt_stat_of(&r, "transfers inserted"), 0);
  for (int32_t i = 0; i < g->n_nodes; i++) assert_string_equal(g->nodes[i]->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "MatMul")->placement_reason,
                      "requested 'cuda:2', which the target lacks; soft placement to cpu:0");
  assert_string_equal(kt_find(g, "MatMul_1")->placement_reason,
                      "requested 'cuda:3', which the target lacks; soft placement to cpu:0");
  assert_string_equal(kt_find(g, "Const_2")->placement_reason,
                      "requested 'cuda:3', which the target lacks; soft placement to cpu:0");
  assert_string_equal(kt_find(g, "AddN")->placement_reason, "pinned by device scope 'cpu:0'");
  assert_placed(g);
  assert_place_twice_same(g, CPU_GPU, 2);
  kir_graph_destroy(g);
  /* Strict: an error naming the first node and its device; nothing assigned. */
  g = lecture_graph("/device:gpu:2", "/device:gpu:3");
  kps_result res;
  memset(&res, 0, sizeof res);
  kps_context ctx = {.devices = CPU_GPU, .n_devices = 2, .strict_placement = true};
  assert_int_equal(kps_place(g, &ctx, &res), KILN_ERR_UNSUPPORTED);
  assert_string_equal(g->error, "node 'Const': device 'cuda:2' requested but the target has only cpu:0, cuda:0");
  for (int32_t i = 0; i < g->n_nodes; i++) assert_string_equal(g->nodes[i]->assigned_device, "");
  kir_graph_destroy(g);
  /* Pinned to the GPU the target has: the sum's inputs come through transfers. */
  g = lecture_graph("/device:GPU:0", "cuda:0");
  kir_graph *orig = kir_graph_clone(g);
  r = place(g, CPU_GPU, 2, false);
  assert_int_equal(kt_stat_of(&r, "transfers inserted"), 2);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 0);
  assert_string_equal(kt_find(g, "MatMul")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "MatMul/to_cpu:0")->placement_reason, "transfer from cuda:0 to cpu:0 for 'AddN'");
  assert_string_equal(kt_find(g, "MatMul_1/to_cpu:0")->assigned_device, "cpu:0");
  assert_placed(g);
  assert_same_value(orig, g, "AddN");
  assert_place_twice_same(g, CPU_GPU, 2);
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* The ONNX operator set has no CUDA kernels yet (but conv and fused_conv, through cuDNN): elementwise and reduction ones included
 * (their flags alone would say CUDA), and a fused node with a step of one runs on the
 * CPU too, with the step's op named in the reason. */
static void test_onnx_ops_cpu_only(void **state) {
  (void)state;
  for (int32_t op = KIR_OP_POW; op < KIR_OP_COUNT; op++) {
    bool cudnn = op == KIR_OP_CONV || op == KIR_OP_FUSED_CONV; /* through cuDNN */
    assert_int_equal(kps_device_has_kernel("cuda:0", (kir_op)op), cudnn);
    assert_true(kps_device_has_kernel("cpu:0", (kir_op)op));
  }
  kir_graph *g = kir_graph_create();
  kir_node *x = rnd(g, "x", "", 2, 3);
  kir_node *a = opn(g, KIR_OP_ABS, "a", "", 1, x);
  kir_node *e = opn(g, KIR_OP_EXP, "e", "", 1, a);
  opn(g, KIR_OP_NEG, "y", "", 1, e);
  const char *roots[] = {"y"};
  kps_context ctx = {.roots = roots, .n_roots = 1};
  kps_result r;
  memset(&r, 0, sizeof r);
  OK(g, kps_fuse(g, &ctx, &r)); /* y = fused_elementwise(x): abs, exp, neg */
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_FUSED_ELEMENTWISE);
  place(g, CPU_GPU, 2, false);
  assert_string_equal(kt_find(g, "y")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "y")->placement_reason, "no CUDA kernel for 'abs'; cpu:0");
  kir_graph_destroy(g);
  /* pinned to cuda: soft placement naming the step */
  g = kir_graph_create();
  x = rnd(g, "x", "", 2, 3);
  opn(g, KIR_OP_GELU, "gl", "cuda:0", 1, x);
  place(g, CPU_GPU, 2, false);
  assert_string_equal(kt_find(g, "gl")->placement_reason,
                      "requested 'cuda:0', which has no kernel for 'gelu'; soft placement to cpu:0");
  kir_graph_destroy(g);
}

static void test_no_kernel_fallback(void **state) {
  (void)state;
  assert_true(kps_device_has_kernel("cuda:0", KIR_OP_ADD));
  assert_true(kps_device_has_kernel("cuda:3", KIR_OP_FUSED_MATMUL));
  assert_true(kps_device_has_kernel("cuda:0", KIR_OP_REDUCE_MAX));
  assert_false(kps_device_has_kernel("cuda:0", KIR_OP_RANDOM_UNIFORM));
  assert_true(kps_device_has_kernel("cpu:0", KIR_OP_RANDOM_UNIFORM));
  assert_false(kps_device_has_kernel("cpu:0", KIR_OP_INVALID));
  kir_graph *g = kir_graph_create();
  kir_node *w = rnd(g, "w", "cuda:0", 2, 2);
  opn(g, KIR_OP_NEG, "n", "", 1, w);
  kps_result r = place(g, CPU_GPU, 2, false);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 1);
  assert_string_equal(kt_find(g, "w")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "w")->placement_reason,
                      "requested 'cuda:0', which has no kernel for 'random_normal'; soft placement to cpu:0");
  assert_non_null(kir_graph_find(g, "w/to_cuda:0"));
  assert_placed(g);
  kir_graph_destroy(g);
  g = kir_graph_create();
  rnd(g, "w", "cuda:0", 2, 2);
  kps_result res;
  memset(&res, 0, sizeof res);
  kps_context ctx = {.devices = CPU_GPU, .n_devices = 2, .strict_placement = true};
  assert_int_equal(kps_place(g, &ctx, &res), KILN_ERR_UNSUPPORTED);
  assert_string_equal(g->error, "node 'w': device 'cuda:0' requested but it has no kernel for 'random_normal'");
  kir_graph_destroy(g);
  /* A target without a CPU cannot take what the GPU has no kernel for. */
  g = kir_graph_create();
  rnd(g, "w", "", 2, 2);
  const char *gpu_only[] = {"cuda:0"};
  memset(&res, 0, sizeof res);
  assert_int_equal(kps_place(g, &(kps_context){.devices = gpu_only, .n_devices = 1}, &res), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "node 'w'"));
  assert_non_null(strstr(g->error, "no CPU to fall back to"));
  kir_graph_destroy(g);
  /* Bad names. */
  g = mm_graph("", "warp:9");
  memset(&res, 0, sizeof res);
  assert_int_equal(kps_place(g, &(kps_context){0}, &res), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'mul'"));
  assert_non_null(strstr(g->error, "'warp:9'"));
  kir_graph_destroy(g);
  g = mm_graph("", "");
  const char *floppy[] = {"floppy"};
  memset(&res, 0, sizeof res);
  assert_int_equal(kps_place(g, &(kps_context){.devices = floppy, .n_devices = 1}, &res), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'floppy'"));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- colocation ---- */

static kir_graph *var_graph(const char *v_dev, const char *a1_dev, const char *a2_dev) {
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {3};
  kir_node *init = cst(g, "init", 1, d, 1);
  kir_node *v = opn(g, KIR_OP_VARIABLE, "v", v_dev, 1, init);
  kir_node *one = cst(g, "one", 1, d, 2);
  opn(g, KIR_OP_ASSIGN, "a1", a1_dev, 2, v, one);
  opn(g, KIR_OP_ASSIGN, "a2", a2_dev, 2, v, one);
  return g;
}

static void test_colocation(void **state) {
  (void)state;
  /* An assign's pin moves the variable and the other assign. */
  kir_graph *g = var_graph("", "", "cuda:0");
  place(g, CPU_GPU, 2, false);
  assert_string_equal(kt_find(g, "a2")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "a2")->placement_reason, "pinned by device scope 'cuda:0'");
  assert_string_equal(kt_find(g, "v")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "v")->placement_reason, "colocated with assign 'a2'");
  assert_string_equal(kt_find(g, "a1")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "a1")->placement_reason, "colocated with assign 'a2'");
  assert_placed(g);
  assert_place_twice_same(g, CPU_GPU, 2);
  kir_graph_destroy(g);
  /* The variable's pin wins; its assigns follow it. */
  g = var_graph("cpu:0", "", "");
  place(g, CPU_GPU, 2, false);
  assert_string_equal(kt_find(g, "v")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "a1")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "a1")->placement_reason, "colocated with variable 'v'");
  assert_string_equal(kt_find(g, "a2")->placement_reason, "colocated with variable 'v'");
  assert_placed(g);
  kir_graph_destroy(g);
  /* Unpinned: the variable's default (the GPU), assigns with it. */
  g = var_graph("", "", "");
  place(g, CPU_GPU, 2, false);
  assert_string_equal(kt_find(g, "v")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "a2")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "a2")->placement_reason, "colocated with variable 'v'");
  kir_graph_destroy(g);
  /* Conflicting pins: soft overrides the assign, strict refuses. */
  g = var_graph("cuda:0", "cpu:0", "");
  kps_result r = place(g, CPU_GPU, 2, false);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 1);
  assert_string_equal(kt_find(g, "a1")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "a1")->placement_reason, "colocated with variable 'v'");
  assert_placed(g);
  kir_graph_destroy(g);
  g = var_graph("cuda:0", "cpu:0", "");
  kps_result res;
  memset(&res, 0, sizeof res);
  kps_context ctx = {.devices = CPU_GPU, .n_devices = 2, .strict_placement = true};
  assert_int_equal(kps_place(g, &ctx, &res), KILN_ERR_UNSUPPORTED);
  assert_string_equal(g->error, "node 'a1': device 'cpu:0' requested but it must be colocated with 'v' on cuda:0");
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- transfers ----- */

static void test_transfers_once_and_unique(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {4};
  kir_node *c = cst(g, "c", 1, d, 1);
  kir_node *x = opn(g, KIR_OP_EXP, "x", "cpu:0", 1, c);
  opn(g, KIR_OP_IDENTITY, "x/to_cuda:0", "cpu:0", 1, c); /* takes the natural name */
  kir_node *u[5];
  const char *dev[5] = {"cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"};
  for (int i = 0; i < 5; i++) {
    char name[8];
    snprintf(name, sizeof name, "u%d", i);
    u[i] = opn(g, i % 2 ? KIR_OP_ADD : KIR_OP_NEG, name, dev[i], i % 2 ? 2 : 1, x, x);
  }
  kir_node *s = opn(g, KIR_OP_ADD_N, "s", "cpu:0", 5, u[0], u[1], u[2], u[3], u[4]);
  (void)s;
  kir_graph *orig = kir_graph_clone(g);
  const char *devs[] = {"cpu:0", "cuda:0", "cuda:1"};
  kps_result r = place(g, devs, 3, false);
  /* x -> cuda:0, x -> cuda:1, and each u back to cpu:0 */
  assert_int_equal(kt_stat_of(&r, "transfers inserted"), 2 + 5);
  kir_node *t0 = kt_find(g, "x/to_cuda:0_1"), *t1 = kt_find(g, "x/to_cuda:1");
  assert_string_equal(t0->assigned_device, "cuda:0");
  assert_string_equal(t0->placement_reason, "transfer from cpu:0 to cuda:0 for 'u0'");
  assert_string_equal(t1->placement_reason, "transfer from cpu:0 to cuda:1 for 'u1'");
  for (int i = 0; i < 5; i++) {
    const kir_node *n = kt_find(g, i == 0 ? "u0" : i == 1 ? "u1" : i == 2 ? "u2" : i == 3 ? "u3" : "u4");
    for (int32_t k = 0; k < n->n_inputs; k++) assert_int_equal(n->inputs[k], i % 2 ? t1->id : t0->id);
  }
  int transfers = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    transfers += g->nodes[i]->op == KIR_OP_TRANSFER;
    for (int32_t j = i + 1; j < g->n_nodes; j++) assert_string_not_equal(g->nodes[i]->name, g->nodes[j]->name);
  }
  assert_int_equal(transfers, 7);
  assert_placed(g);
  assert_same_value(orig, g, "s");
  assert_place_twice_same(g, devs, 3);
  /* Placed again for a CPU-only target: everything moves to cpu:0, no new transfer. */
  r = place(g, NULL, 0, false);
  assert_int_equal(kt_stat_of(&r, "transfers inserted"), 0);
  assert_int_equal(kt_stat_of(&r, "soft placements"), 5 + 2); /* the pins and the two transfers to GPUs */
  assert_placed(g);
  assert_same_value(orig, g, "s");
  kir_graph_destroy(orig);
  kir_graph_destroy(g);
}

/* Random graphs with pins over cpu:0 + cuda:0: valid, placed, same results, stable. */
static void test_random_graphs(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 150; seed++) {
    kt_gen k;
    char err[256];
    kt_gen_opts o = {.n_nodes = 30, .pins = true, .stateful = seed % 5 == 0};
    if (kt_gen_build(seed, &o, &k, err, sizeof err) != KILN_OK) fail_msg("seed %llu: %s", (unsigned long long)seed, err);
    kir_graph *orig = kir_graph_clone(k.g);
    place(k.g, CPU_GPU, 2, false);
    assert_placed(k.g);
    assert_place_twice_same(k.g, CPU_GPU, 2);
    if (!o.stateful) {
      kir_feed feeds[64];
      int32_t fo[64], fp[64];
      assert_true(k.n_feeds <= 64 && k.n_fetches <= 64);
      for (int32_t f = 0; f < k.n_feeds; f++) feeds[f] = (kir_feed){kt_find(orig, k.feed_names[f])->id, k.feed_values[f]};
      for (int32_t f = 0; f < k.n_fetches; f++) fo[f] = kt_find(orig, k.roots[f])->id;
      kir_tensor *a[64], *b[64];
      OK(orig, kir_interp_run(orig, NULL, feeds, k.n_feeds, fo, k.n_fetches, NULL, 0, a));
      for (int32_t f = 0; f < k.n_feeds; f++) feeds[f].node = kt_find(k.g, k.feed_names[f])->id;
      for (int32_t f = 0; f < k.n_fetches; f++) fp[f] = kt_find(k.g, k.roots[f])->id;
      OK(k.g, kir_interp_run(k.g, NULL, feeds, k.n_feeds, fp, k.n_fetches, NULL, 0, b));
      for (int32_t f = 0; f < k.n_fetches; f++) {
        kt_assert_close(b[f], a[f], 0);
        kir_tensor_free(a[f]);
        kir_tensor_free(b[f]);
      }
    }
    kir_graph_destroy(orig);
    kt_gen_free(&k);
  }
}

/* The Nth allocation fails: out-of-memory, no leak, the graph as it was. */
static void test_out_of_memory(void **state) {
  (void)state;
  kir_graph *orig = lecture_graph("cuda:0", "cuda:0");
  kiln_status st = KILN_ERR_NOMEM;
  int failures = 0;
  uint8_t *b0 = NULL;
  size_t n0 = 0;
  OK(orig, kir_graph_to_bytes(orig, &b0, &n0));
  for (long n = 0; st != KILN_OK; n++) {
    assert_true(n < 10000);
    kir_graph *g = kir_graph_clone(orig);
    long live = kir_alloc_live();
    kps_result r;
    memset(&r, 0, sizeof r);
    kir_alloc_fail_after(n);
    st = kps_place(g, &(kps_context){.devices = CPU_GPU, .n_devices = 2}, &r);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      failures++;
      assert_int_equal(st, KILN_ERR_NOMEM);
      assert_int_equal(kir_alloc_live(), live);
      OK(g, kir_verify(g));
      uint8_t *b = NULL;
      size_t nb = 0;
      OK(g, kir_graph_to_bytes(g, &b, &nb));
      assert_int_equal(nb, n0);
      kir_free(b);
    } else {
      assert_placed(g);
    }
    kir_graph_destroy(g);
  }
  assert_true(failures > 0);
  kir_free(b0);
  kir_graph_destroy(orig);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_only_defaults_and_pins),
      cmocka_unit_test(test_onnx_ops_cpu_only),
      cmocka_unit_test(test_defaults_with_cuda),
      cmocka_unit_test(test_lecture_soft_placement),
      cmocka_unit_test(test_no_kernel_fallback),
      cmocka_unit_test(test_colocation),
      cmocka_unit_test(test_transfers_once_and_unique),
      cmocka_unit_test(test_random_graphs),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
