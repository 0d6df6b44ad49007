/* test_cuda_runtime.c — CUDA artifacts end to end: the default pipeline places a graph
 * over cpu:0 and cuda:0, kcg_compile_cuda writes the artifact, libkiln_rt runs it, and
 * the reference interpreter checks every output (kt_tolerance: f32 1e-5 relative; NaN
 * never passes; output buffers poisoned with 0xFF first, so an unwritten element shows).
 *
 * Two modes, chosen by what the process finds:
 * - a GPU (kiln_rt_cuda_devices finds one; scripts/gpu-check.sh): every op in f32 and
 *   i32, matmul in every float dtype, the fused patterns in f32/f64/f16/bf16, kt_gen
 *   random graphs (mixed CPU/GPU: their CPU-only ops run in the CPU code between
 *   transfers), the MLP 784-512-512-10, the seed's networks (the lecture's two-layer net,
 *   the device program, the two-GPU pin example), host and device buffers, three runs
 *   each (eager, captured, replayed CUDA graph) — and the bad input that needs a device:
 *   an altered kernel image, an artifact with no code for the GPU, PTX only, device
 *   memory exhausted.
 * - the stand-in driver, cuBLASLt and cuDNN of tests/runtime (ctest sets
 *   KILN_CUDA_DRIVER, KILN_CUBLASLT and KILN_CUDNN to them, and KILN_TEST_CUDA_FAKE=1):
 *   graphs whose CUDA steps are all cuBLASLt GEMMs with cuBLASLt's own epilogues or cuDNN
 *   convolutions without epilogue (the stand-ins compute on the host but cannot run
 *   generated kernels), so compile, artifact, open, staging, schedule, CPU steps,
 *   transfers, the row-major GEMM mapping and the conv records are checked with no GPU.
 * On a GPU, test_convs_on_gpu also runs convolutions through cuDNN: bias/relu/clamp and
 * residual epilogues, groups (depthwise too), strides, dilations, 1-D and 3-D, f32 and
 * f64, and a small CNN whose pooling runs on the CPU.
 * Exits 77, saying why, when NVRTC is missing or there is neither a GPU nor the stand-ins. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/kcg.h"
#include "codegen/kcg_cuda.h"
#include "kiln_runtime.h"
#include "kt_cuda_graphs.h"
#include "tests/kt_graph.h"
#include "tests/passes/kt_gen.h"

static bool g_fake;             /* the stand-ins, not a GPU */
static const char *g_arch = ""; /* NVRTC architectures for the artifacts under test */
static int g_checked, g_failed;

/* ---------------------------------------------------------------- compile ------- */

/* Default pipeline over cpu:0 + cuda:0 for fetch, then a CUDA artifact at path. */
static kiln_status compile_cuda(kir_graph *g, const char *const *fetch, int32_t n, const char *archs,
                                const char *path) {
  ktc_place(g, KPS_DEFAULT_PIPELINE, fetch, n);
  kcg_options co;
  memset(&co, 0, sizeof co);
  co.cuda_archs = archs;
  co.nvrtc_cache = ""; /* every compile for real: the cache has its own tests */
  return kcg_compile_cuda(g, fetch, n, &co, path);
}

/* ---------------------------------------------------------------- run + check --- */

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }

/* Inputs that keep every op finite (log, sqrt, division: positive, no zero). */
static kir_tensor *input_for(const kir_node *ph, uint64_t seed) {
  kir_tensor *t = kir_tensor_new(&ph->type);
  assert_non_null(t);
  kt_fill(t, seed, is_float(ph->type.dtype) ? 0.5 : 1, is_float(ph->type.dtype) ? 2.0 : 6);
  return t;
}

typedef struct feeds {
  kir_feed f[16];
  int32_t n;
} feeds;

static void feeds_make(const kir_graph *g, feeds *F) {
  F->n = 0;
  for (int32_t i = 0; i < g->n_nodes && F->n < 16; i++)
    if (g->nodes[i]->op == KIR_OP_PLACEHOLDER)
      F->f[F->n++] = (kir_feed){i, input_for(g->nodes[i], 100 + (uint64_t)i)};
}

static void feeds_free(feeds *F) {
  for (int32_t i = 0; i < F->n; i++) kir_tensor_free((kir_tensor *)F->f[i].value);
  F->n = 0;
}

static void report(const char *what, const char *fmt, const char *a, const char *b) {
  printf("ERROR: %s: ", what);
  printf(fmt, a, b);
  printf("\n");
  fflush(stdout); /* cmocka writes its own lines to stderr */
  g_failed++;
}

/* One run of an open model: inputs from F (by name), outputs into fresh tensors,
 * through host or device buffers; poisoned first. Returns false (reported) on error. */
static bool run_inner(kiln_rt_model *m, kiln_rt_context *c, const kir_graph *g, const feeds *F,
                      bool device_io, bool no_graphs, kir_tensor **got, const char *what, bool want_exec);

static bool run_once(kiln_rt_model *m, kiln_rt_context *c, const kir_graph *g, const feeds *F,
                     bool device_io, bool no_graphs, kir_tensor **got, const char *what) {
  return run_inner(m, c, g, F, device_io, no_graphs, got, what, false);
}

/* A run the interpreter stops (integer division by zero): KILN_RT_ERR_EXEC naming a step. */
static void expect_exec(kiln_rt_model *m, kiln_rt_context *c, const kir_graph *g, const feeds *F,
                        bool device_io, bool no_graphs, kir_tensor **got, const char *what) {
  run_inner(m, c, g, F, device_io, no_graphs, got, what, true);
}

static bool run_inner(kiln_rt_model *m, kiln_rt_context *c, const kir_graph *g, const feeds *F,
                      bool device_io, bool no_graphs, kir_tensor **got, const char *what, bool want_exec) {
  int n_in = kiln_rt_model_num_inputs(m), n_out = kiln_rt_model_num_outputs(m);
  assert_true(n_in <= 16 && n_out <= 64);
  kiln_rt_buffer in[16], out[64];
  unsigned char in_mem[16], out_mem[64];
  void *dev[80] = {NULL};
  int n_dev = 0;
  bool ok = true;
  for (int i = 0; i < n_in; i++) {
    kiln_rt_tensor_info info;
    assert_int_equal(kiln_rt_model_input(m, i, &info), KILN_RT_OK);
    const kir_tensor *t = NULL;
    for (int32_t f = 0; f < F->n; f++)
      if (strcmp(g->nodes[F->f[f].node]->name, info.name) == 0) t = F->f[f].value;
    if (!t) fail_msg("%s: input '%s' has no feed", what, info.name);
    in[i] = (kiln_rt_buffer){t->data, info.nbytes};
    in_mem[i] = KILN_RT_MEMORY_HOST;
    if (device_io && info.nbytes > 0) {
      void *d = NULL;
      assert_int_equal(kiln_rt_device_alloc(m, info.nbytes, &d), KILN_RT_OK);
      assert_int_equal(kiln_rt_device_copy(m, d, KILN_RT_MEMORY_DEVICE, t->data, KILN_RT_MEMORY_HOST,
                                           info.nbytes), KILN_RT_OK);
      dev[n_dev++] = d;
      in[i].data = d;
      in_mem[i] = KILN_RT_MEMORY_DEVICE;
    }
  }
  for (int j = 0; j < n_out; j++) {
    kiln_rt_tensor_info info;
    assert_int_equal(kiln_rt_model_output(m, j, &info), KILN_RT_OK);
    kir_type ty = kt_type((kiln_dtype)info.dtype, info.rank, info.dims);
    got[j] = kir_tensor_new(&ty);
    assert_non_null(got[j]);
    memset(got[j]->data, 0xFF, info.nbytes);
    out[j] = (kiln_rt_buffer){got[j]->data, info.nbytes};
    out_mem[j] = KILN_RT_MEMORY_HOST;
    if (device_io && info.nbytes > 0) {
      void *d = NULL;
      assert_int_equal(kiln_rt_device_alloc(m, info.nbytes, &d), KILN_RT_OK);
      assert_int_equal(kiln_rt_device_copy(m, d, KILN_RT_MEMORY_DEVICE, got[j]->data,
                                           KILN_RT_MEMORY_HOST, info.nbytes), KILN_RT_OK);
      dev[n_dev++] = d;
      out[j].data = d;
      out_mem[j] = KILN_RT_MEMORY_DEVICE;
    }
  }
  kiln_rt_run_options o = {in_mem, out_mem, no_graphs};
  kiln_rt_status s = kiln_rt_run_ex(c, in, n_in, out, n_out, &o);
  if (want_exec) {
    if (s != KILN_RT_ERR_EXEC || !strstr(kiln_rt_context_error(c), "step"))
      report(what, "the interpreter stops (integer division by zero); the run says %s: %s",
             kiln_rt_status_name(s), kiln_rt_context_error(c));
    ok = false;
  } else if (s != KILN_RT_OK) {
    report(what, "run: %s: %s", kiln_rt_status_name(s), kiln_rt_context_error(c));
    ok = false;
  }
  for (int j = 0; j < n_out && ok; j++)
    if (out_mem[j] == KILN_RT_MEMORY_DEVICE)
      assert_int_equal(kiln_rt_device_copy(m, got[j]->data, KILN_RT_MEMORY_HOST, out[j].data,
                                           KILN_RT_MEMORY_DEVICE, out[j].nbytes), KILN_RT_OK);
  for (int k = 0; k < n_dev; k++) assert_int_equal(kiln_rt_device_free(m, dev[k]), KILN_RT_OK);
  return ok;
}

/* Compiles g for fetch, runs the artifact three times (host buffers eagerly, host
 * buffers from a captured CUDA graph, device buffers from the replayed graph) and once
 * more without graphs, each against the interpreter. Failures are counted and printed
 * (ERROR lines) so one run shows all of them. */
static void check_graph(kir_graph *g, const char *const *fetch, int32_t n, const char *what) {
  char path[64];
  snprintf(path, sizeof path, "cuda-%d.kart", g_checked);
  const char *art = kt_path(path);
  g_checked++;
  kiln_status s = compile_cuda(g, fetch, n, g_arch, art);
  if (s != KILN_OK) {
    report(what, "compile: %s: %s", kiln_status_name(s), g->error);
    return;
  }
  feeds F;
  feeds_make(g, &F);
  int32_t outs[64];
  assert_true(n <= 64);
  for (int32_t j = 0; j < n; j++) outs[j] = kt_find(g, fetch[j])->id;
  kir_tensor *want[64] = {NULL};
  kiln_status ref = kir_interp_run(g, NULL, F.f, F.n, outs, n, NULL, 0, want);
  if (ref != KILN_OK && ref != KILN_ERR_EXEC) fail_msg("%s: interpreter: %s", what, g->error);
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  kiln_rt_status rs = kiln_rt_model_open(art, &m);
  if (rs == KILN_RT_OK) rs = kiln_rt_context_create(m, &c);
  if (rs != KILN_RT_OK) {
    report(what, "open: %s: %s", kiln_rt_status_name(rs), c ? kiln_rt_context_error(c) : kiln_rt_model_error(m));
  } else {
    static const struct { bool dev, no_graphs; const char *how; } runs[] = {
        {false, false, "host buffers, first run"}, {false, false, "host buffers, captured graph"},
        {true, false, "device buffers, replayed graph"}, {true, true, "device buffers, no graph"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
      kir_tensor *got[64] = {NULL};
      char w[160];
      snprintf(w, sizeof w, "%s (%s)", what, runs[r].how);
      if (ref == KILN_ERR_EXEC) { /* integer division by zero: the run must stop too */
        expect_exec(m, c, g, &F, runs[r].dev, runs[r].no_graphs, got, w);
      } else if (run_once(m, c, g, &F, runs[r].dev, runs[r].no_graphs, got, w)) {
        for (int32_t j = 0; j < n; j++) {
          double e = kt_rel_error(got[j], want[j]), tol = kt_tolerance(want[j]->type.dtype);
          if (!(e <= tol)) {
            char num[64];
            snprintf(num, sizeof num, "%g > %g", e, tol);
            report(w, "output '%s' off by %s", fetch[j], num);
          }
        }
      }
      for (int32_t j = 0; j < n; j++) kir_tensor_free(got[j]);
    }
  }
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  for (int32_t j = 0; j < n; j++) kir_tensor_free(want[j]);
  feeds_free(&F);
  remove(art);
}

static void build_and_check(kt_cuda_builder fn, kiln_dtype dt, const char *const *fetch, int32_t n,
                            const char *name) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  fn(g, dt);
  char what[96];
  snprintf(what, sizeof what, "%s on %s", name, kiln_dtype_name(dt));
  check_graph(g, fetch, n, what);
  kir_graph_destroy(g);
}

/* Fails the test if any check printed an ERROR line. */
static void settle(const char *what) {
  printf("%s: %d artifacts checked, %d errors\n", what, g_checked, g_failed);
  fflush(stdout);
  int bad = g_failed;
  g_failed = g_checked = 0;
  if (bad) fail_msg("%s: %d mismatches or errors (ERROR lines above)", what, bad);
}

/* ---------------------------------------------------------------- graphs -------- */

/* x[b,784] -> relu(x W1 + b1) -> relu(. W2 + b2) -> . W3 + b3: the MLP. */
static void build_mlp784(kir_graph *g, int64_t batch) {
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(batch, 784));
  kir_node *w1 = kt_cst(g, "w1", KILN_F32, DIMS(784, 512), 1, -0.05, 0.05);
  kir_node *b1 = kt_cst(g, "b1", KILN_F32, DIMS(512), 2, -0.1, 0.1);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, DIMS(512, 512), 3, -0.05, 0.05);
  kir_node *b2 = kt_cst(g, "b2", KILN_F32, DIMS(512), 4, -0.1, 0.1);
  kir_node *w3 = kt_cst(g, "w3", KILN_F32, DIMS(512, 10), 5, -0.05, 0.05);
  kir_node *b3 = kt_cst(g, "b3", KILN_F32, DIMS(10), 6, -0.1, 0.1);
  kir_node *h1 = kt_op1(g, KIR_OP_RELU, "h1", kt_op2(g, KIR_OP_ADD, "a1", kt_matmul(g, "m1", x, w1, 0, 0), b1));
  kir_node *h2 = kt_op1(g, KIR_OP_RELU, "h2", kt_op2(g, KIR_OP_ADD, "a2", kt_matmul(g, "m2", h1, w2, 0, 0), b2));
  kt_op2(g, KIR_OP_ADD, "y", kt_matmul(g, "m3", h2, w3, 0, 0), b3);
}

/* The lecture's two-layer net (seed_mlp): N=64, 1000 -> 100 (relu) -> 10, and its
 * squared-error loss against a target y. */
static void build_lecture(kir_graph *g) {
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(64, 1000));
  kir_node *y = kt_ph(g, "y", KILN_F32, DIMS(64, 10));
  kir_node *w1 = kt_cst(g, "w1", KILN_F32, DIMS(1000, 100), 11, -0.05, 0.05);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, DIMS(100, 10), 12, -0.1, 0.1);
  kir_node *h = kt_op1(g, KIR_OP_RELU, "h", kt_matmul(g, "xw1", x, w1, 0, 0));
  kir_node *pred = kt_matmul(g, "y_pred", h, w2, 0, 0);
  kir_node *d = kt_op2(g, KIR_OP_SUB, "diff", pred, y);
  kt_reduce(g, KIR_OP_REDUCE_MEAN, "loss", kt_reduce(g, KIR_OP_REDUCE_SUM, "sq", kt_op2(g, KIR_OP_MUL, "d2", d, d),
                                                     (const int64_t[]){1}, 1, 0), NULL, 0, 0);
}

/* The lecture's device program (seed_device): two seeded 500x500 normal matrices, their
 * product and its sum. */
static void build_seed_device(kir_graph *g) {
  kir_node *w = kt_random(g, KIR_OP_RANDOM_NORMAL, "W", KILN_F32, DIMS(500, 500), 1);
  kir_node *x = kt_random(g, KIR_OP_RANDOM_NORMAL, "X", KILN_F32, DIMS(500, 500), 2);
  kir_node *m = kt_matmul(g, "mul", w, x, 0, 0);
  kt_reduce(g, KIR_OP_REDUCE_SUM, "sum", m, NULL, 0, 0);
}

/* The lecture's placement example: two products pinned to cuda:0 and cuda:1, their sum
 * pinned to the CPU. The target has one GPU: cuda:1's product is soft-placed (to the
 * CPU, with the reason recorded), the rest runs where it was pinned. */
static void build_two_gpus(kir_graph *g) {
  kir_node *a = kt_ph(g, "a", KILN_F32, DIMS(32, 48));
  kir_node *b = kt_ph(g, "b", KILN_F32, DIMS(32, 48));
  kir_node *w = kt_cst(g, "w", KILN_F32, DIMS(48, 24), 21, -1, 1);
  kir_node *m0 = kt_matmul(g, "mm0", a, w, 0, 0);
  kir_node *m1 = kt_matmul(g, "mm1", b, w, 0, 0);
  m0->device = kir_graph_strdup(g, "cuda:0");
  m1->device = kir_graph_strdup(g, "cuda:1");
  kir_node *s = kt_op2(g, KIR_OP_ADD, "sum", m0, m1);
  s->device = kir_graph_strdup(g, "cpu:0");
}

/* GEMMs with cuBLASLt's epilogues only, around a CPU-only op (log_softmax): what the
 * stand-ins can run end to end — transfers both ways, CPU code between GPU work. */
static void build_gemm_sandwich(kir_graph *g, bool trans) {
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(8, 16));
  kir_node *w1 = trans ? kt_cst(g, "w1", KILN_F32, DIMS(32, 16), 31, -1, 1)
                       : kt_cst(g, "w1", KILN_F32, DIMS(16, 32), 31, -1, 1);
  kir_node *b1 = kt_cst(g, "b1", KILN_F32, DIMS(32), 32, -1, 1);
  kir_node *h = kt_op1(g, KIR_OP_RELU, "h",
                       kt_op2(g, KIR_OP_ADD, "hb", kt_matmul(g, "hm", x, w1, 0, trans), b1));
  kir_node *ls = kt_op1(g, KIR_OP_LOG_SOFTMAX, "ls", h);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, DIMS(32, 10), 33, -1, 1);
  kir_node *b2 = kt_cst(g, "b2", KILN_F32, DIMS(10), 34, -1, 1);
  kt_op2(g, KIR_OP_ADD, "out", kt_matmul(g, "om", ls, w2, 0, 0), b2);
}

/* conv + bias + relu (a fused_conv: cuDNN, then the epilogue kernel). */
static void build_conv_bias_relu(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 3, 12, 10));
  kir_node *w = kt_cst(g, "w", dt, DIMS(8, 3, 3, 3), 41, -0.5, 0.5);
  kir_node *b = kt_cst(g, "b", dt, DIMS(8), 42, -0.5, 0.5);
  kt_op1(g, KIR_OP_RELU, "out", ktc_conv(g, "c", x, w, b, (const int64_t[]){1, 1, 1, 1}, NULL, NULL, 1));
}

/* groups 2 with stride 2, then a depthwise conv with dilation 2, then a residual add. */
static void build_conv_groups(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(2, 4, 15, 13));
  kir_node *w1 = kt_cst(g, "w1", dt, DIMS(6, 2, 3, 3), 43, -0.5, 0.5);
  kir_node *c1 = ktc_conv(g, "c1", x, w1, NULL, (const int64_t[]){1, 1, 1, 1}, (const int64_t[]){2, 2}, NULL, 2);
  kir_node *w2 = kt_cst(g, "w2", dt, DIMS(6, 1, 3, 3), 44, -0.5, 0.5);
  kir_node *b2 = kt_cst(g, "b2", dt, DIMS(6), 45, -0.5, 0.5);
  kir_node *c2 = ktc_conv(g, "c2", c1, w2, b2, (const int64_t[]){2, 2, 2, 2}, NULL, (const int64_t[]){2, 2}, 6);
  kt_op2(g, KIR_OP_ADD, "out", kt_clamp(g, "cl", c2, -1.0, 1.0), c1);
}

/* 1-D (stride 2, dilation 2) and 3-D (clamp epilogue) convolutions. */
static void build_conv_1d_3d(kir_graph *g, kiln_dtype dt) {
  kir_node *x1 = kt_ph(g, "x1", dt, DIMS(3, 5, 40));
  kir_node *w1 = kt_cst(g, "w1", dt, DIMS(7, 5, 4), 46, -0.5, 0.5);
  ktc_conv(g, "c1", x1, w1, NULL, (const int64_t[]){3, 3}, (const int64_t[]){2}, (const int64_t[]){2}, 1);
  kir_node *x3 = kt_ph(g, "x3", dt, DIMS(2, 2, 6, 7, 5));
  kir_node *w3 = kt_cst(g, "w3", dt, DIMS(4, 2, 3, 2, 3), 47, -0.5, 0.5);
  kir_node *b3 = kt_cst(g, "b3", dt, DIMS(4), 48, -0.5, 0.5);
  kir_node *c3 = ktc_conv(g, "c3", x3, w3, b3, (const int64_t[]){1, 0, 1, 1, 0, 1}, (const int64_t[]){1, 2, 1}, NULL, 1);
  kt_clamp(g, "c3c", c3, -0.5, 0.75);
}

/* A small CNN: conv-relu-pool twice (pooling on the CPU, with transfers), then a dense
 * layer on the GPU. */
static void build_small_cnn(kir_graph *g, kiln_dtype dt) {
  kir_node *x = kt_ph(g, "x", dt, DIMS(4, 1, 16, 16));
  kir_node *w1 = kt_cst(g, "w1", dt, DIMS(8, 1, 3, 3), 51, -0.5, 0.5);
  kir_node *b1 = kt_cst(g, "b1", dt, DIMS(8), 52, -0.1, 0.1);
  kir_node *r1 = kt_op1(g, KIR_OP_RELU, "r1", ktc_conv(g, "c1", x, w1, b1, (const int64_t[]){1, 1, 1, 1}, NULL, NULL, 1));
  int32_t in1[1] = {r1->id};
  kir_node *p1 = kir_node_add(g, KIR_OP_MAX_POOL, "p1", in1, 1);
  OK(g, kir_attr_set_ints(g, p1, "kernel", (const int64_t[]){2, 2}, 2));
  OK(g, kir_attr_set_ints(g, p1, "strides", (const int64_t[]){2, 2}, 2));
  kt_infer(g, p1);
  kir_node *w2 = kt_cst(g, "w2", dt, DIMS(16, 8, 3, 3), 53, -0.2, 0.2);
  kir_node *b2 = kt_cst(g, "b2", dt, DIMS(16), 54, -0.1, 0.1);
  kir_node *r2 = kt_op1(g, KIR_OP_RELU, "r2", ktc_conv(g, "c2", p1, w2, b2, (const int64_t[]){1, 1, 1, 1}, NULL, NULL, 1));
  int32_t in2[1] = {r2->id};
  kir_node *p2 = kir_node_add(g, KIR_OP_AVG_POOL, "p2", in2, 1);
  OK(g, kir_attr_set_ints(g, p2, "kernel", (const int64_t[]){2, 2}, 2));
  OK(g, kir_attr_set_ints(g, p2, "strides", (const int64_t[]){2, 2}, 2));
  kt_infer(g, p2);
  kir_node *f = kt_with_ints(g, KIR_OP_RESHAPE, "flat", p2, "shape", (const int64_t[]){4, 256}, 2);
  kir_node *w3 = kt_cst(g, "w3", dt, DIMS(256, 10), 55, -0.1, 0.1);
  kir_node *b3 = kt_cst(g, "b3", dt, DIMS(10), 56, -0.1, 0.1);
  kt_op2(g, KIR_OP_ADD, "logits", kt_matmul(g, "fc", f, w3, 0, 0), b3);
}

/* A conv with no epilogue, a CPU-only pool, and another conv: what the stand-ins (the
 * fake cuDNN computes, the fake driver runs no kernel) can run end to end. */
static void build_conv_fake(kir_graph *g) {
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(2, 3, 10, 9));
  kir_node *w1 = kt_cst(g, "w1", KILN_F32, DIMS(4, 3, 3, 3), 61, -0.5, 0.5);
  kir_node *c1 = ktc_conv(g, "c1", x, w1, NULL, (const int64_t[]){1, 1, 1, 1}, (const int64_t[]){1, 2}, NULL, 1);
  int32_t in1[1] = {c1->id};
  kir_node *p1 = kir_node_add(g, KIR_OP_MAX_POOL, "p1", in1, 1);
  OK(g, kir_attr_set_ints(g, p1, "kernel", (const int64_t[]){2, 2}, 2));
  kt_infer(g, p1);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, DIMS(6, 2, 2, 2), 62, -0.5, 0.5);
  ktc_conv(g, "out", p1, w2, NULL, NULL, NULL, (const int64_t[]){2, 1}, 2);
}

/* ---------------------------------------------------------------- on a GPU ------ */

static void test_ops_on_gpu(void **state) {
  (void)state;
  static const kiln_dtype dts[] = {KILN_F32, KILN_I32};
  for (size_t d = 0; d < 2; d++)
    for (int32_t op = 1; op < KIR_OP_COUNT; op++) {
      if (!ktc_op_wanted((kir_op)op) || !ktc_op_takes((kir_op)op, dts[d])) continue;
      kir_graph *g = kir_graph_create();
      const char *fetch[4];
      int32_t nf = ktc_build_op_graph(g, (kir_op)op, dts[d], fetch);
      char what[64];
      snprintf(what, sizeof what, "%s on %s", kir_op_get(op)->name, kiln_dtype_name(dts[d]));
      check_graph(g, fetch, nf, what);
      kir_graph_destroy(g);
    }
  static const kiln_dtype fl[] = {KILN_F64, KILN_F16, KILN_BF16};
  const char *mm[] = {"r1", "r2", "r3"};
  for (size_t d = 0; d < 3; d++) build_and_check(ktc_build_matmul, fl[d], mm, 3, "matmul");
  settle("ops");
}

static void test_fused_on_gpu(void **state) {
  (void)state;
  static const kiln_dtype fl[] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16};
  const char *one[] = {"out"}, *red[] = {"rs", "rm", "rn"}, *sm[] = {"sm", "sm1", "lsm"};
  for (int i = 0; i < 4; i++) {
    build_and_check(ktc_build_mlp, fl[i], one, 1, "mlp");
    build_and_check(ktc_build_mm_tanh, fl[i], one, 1, "mm_tanh");
    build_and_check(ktc_build_mm_partial, fl[i], one, 1, "mm_partial");
    build_and_check(ktc_build_chain, fl[i], one, 1, "chain");
    build_and_check(ktc_build_reductions, fl[i], red, 3, "reductions");
    build_and_check(ktc_build_softmaxes, fl[i], sm, 3, "softmaxes");
  }
  settle("fused patterns");
}

static void test_random_on_gpu(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 16; seed++) {
    kt_gen k;
    ktc_random_graph(seed, &k);
    const char *fetch[64];
    int32_t n = 0;
    for (int32_t i = 0; i < k.n_fetches && n < 64; i++) {
      const kir_node *nd = kir_graph_find(k.g, k.roots[i]);
      if (nd && !kir_op_has(nd->op, KIR_F_NO_OUTPUT)) fetch[n++] = k.roots[i];
    }
    char what[48];
    snprintf(what, sizeof what, "kt_gen seed %d", (int)seed);
    if (n > 0) check_graph(k.g, fetch, n, what);
    kt_gen_free(&k);
  }
  settle("random graphs");
}

static void test_networks_on_gpu(void **state) {
  (void)state;
  const char *y[] = {"y"};
  for (int64_t b = 1; b <= 256; b *= 256) {
    kir_graph *g = kir_graph_create();
    build_mlp784(g, b);
    char what[48];
    snprintf(what, sizeof what, "MLP 784-512-512-10 batch %d", (int)b);
    check_graph(g, y, 1, what);
    kir_graph_destroy(g);
  }
  kir_graph *g = kir_graph_create();
  build_lecture(g);
  const char *lec[] = {"loss", "y_pred"};
  check_graph(g, lec, 2, "lecture two-layer net");
  kir_graph_destroy(g);
  g = kir_graph_create();
  build_seed_device(g);
  const char *sum[] = {"sum"};
  check_graph(g, sum, 1, "lecture device program");
  kir_graph_destroy(g);
  g = kir_graph_create();
  build_two_gpus(g);
  const char *s2[] = {"sum"};
  check_graph(g, s2, 1, "two-GPU pins on one GPU");
  assert_string_equal(kt_find(g, "mm0")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "mm1")->assigned_device, "cpu:0");
  assert_non_null(strstr(kt_find(g, "mm1")->placement_reason, "soft placement"));
  kir_graph_destroy(g);
  settle("networks");
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len);
  assert_non_null(p);
  assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

/* Opens bytes; expects status want and a message containing needle. */
static void expect_open(const void *bytes, size_t n, kiln_rt_status want, const char *needle) {
  kiln_rt_model *m = NULL;
  kiln_rt_status s = kiln_rt_model_open_bytes(bytes, n, &m);
  if (s != want || !strstr(kiln_rt_model_error(m), needle))
    fail_msg("open: %s '%s', wanted %s with '%s'", kiln_rt_status_name(s), kiln_rt_model_error(m),
             kiln_rt_status_name(want), needle);
  kiln_rt_model_close(m);
}

/* The bad input that needs the device: an altered image, no code for the GPU, PTX only,
 * device memory exhausted — each a status and a message; handles close afterwards. */
static void test_bad_input_on_gpu(void **state) {
  (void)state;
  const char *out[] = {"out"};
  /* PTX only: the driver compiles it for the GPU, the results are the same */
  kir_graph *g = kir_graph_create();
  ktc_build_chain(g, KILN_F32);
  const char *saved = g_arch;
  g_arch = "compute_80";
  check_graph(g, out, 1, "chain from PTX only");
  g_arch = saved;
  kir_graph_destroy(g);
  settle("PTX only");

  /* a cubin for another architecture and no PTX */
  g = kir_graph_create();
  ktc_build_chain(g, KILN_F32);
  const char *art = kt_path("other-arch.kart");
  OK(g, compile_cuda(g, out, 1, "sm_80", art));
  kiln_rt_model *m = NULL;
  kiln_rt_status s = kiln_rt_model_open(art, &m);
  if (strstr(kiln_rt_model_device(m), "sm_80") == NULL) { /* not an A100: no code for it */
    assert_int_equal(s, KILN_RT_ERR_DEVICE);
    assert_non_null(strstr(kiln_rt_model_error(m), "sm_80"));
  }
  kiln_rt_model_close(m);
  kir_graph_destroy(g);

  /* one byte of the kernel image changed: refused before the driver sees it */
  g = kir_graph_create();
  ktc_build_chain(g, KILN_F32);
  OK(g, compile_cuda(g, out, 1, g_arch, art));
  size_t n = 0;
  unsigned char *bytes = slurp(art, &n);
  unsigned char *cubin = NULL;
  for (size_t i = 0; i + 4 < n; i++)
    if (memcmp(bytes + i, "\x7f" "ELF", 4) == 0) cubin = bytes + i; /* the last ELF: the image */
  assert_non_null(cubin);
  cubin[64] ^= 0x40;
  expect_open(bytes, n, KILN_RT_ERR_INTEGRITY, "");
  free(bytes);
  kir_graph_destroy(g);

  /* device memory exhausted: contexts of a model needing ~47 GB each (an input and twelve
   * outputs of 3.6 GB, staged on the device for host buffers) until one fails */
  g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(900, 1000, 1000));
  const char *big[12];
  char names[12][8];
  for (int i = 0; i < 12; i++) {
    snprintf(names[i], sizeof names[i], "out%d", i);
    char an[8], kn[8];
    snprintf(an, sizeof an, "a%d", i);
    snprintf(kn, sizeof kn, "k%d", i);
    kir_node *k = kt_cst(g, kn, KILN_F32, DIMS(1), 40 + (uint64_t)i, -1, 1);
    kt_op1(g, KIR_OP_EXP, names[i], kt_op2(g, KIR_OP_ADD, an, x, k));
    big[i] = names[i];
  }
  OK(g, compile_cuda(g, big, 12, g_arch, art));
  kir_graph_destroy(g);
  m = NULL;
  assert_int_equal(kiln_rt_model_open(art, &m), KILN_RT_OK);
  kiln_rt_context *c[8] = {NULL};
  int made = 0;
  for (; made < 8; made++) {
    s = kiln_rt_context_create(m, &c[made]);
    if (s != KILN_RT_OK) break;
  }
  printf("device memory: %d contexts of a 47 GB plan fit; the next: %s: %s\n", made,
         kiln_rt_status_name(s), made < 8 ? kiln_rt_context_error(c[made]) : "");
  assert_true(made < 8);
  assert_int_equal(s, KILN_RT_ERR_NOMEM);
  for (int i = 0; i <= made && i < 8; i++) kiln_rt_context_destroy(c[i]);
  kiln_rt_model_close(m);
  remove(art);
}

static void test_convs_on_gpu(void **state) {
  (void)state;
  static const kiln_dtype fl[] = {KILN_F32, KILN_F64};
  const char *one[] = {"out"}, *two[] = {"c1", "c3c"}, *cnn[] = {"logits"};
  for (int i = 0; i < 2; i++) {
    build_and_check(build_conv_bias_relu, fl[i], one, 1, "conv+bias+relu");
    build_and_check(build_conv_groups, fl[i], one, 1, "grouped and depthwise convs");
    build_and_check(build_conv_1d_3d, fl[i], two, 2, "1-D and 3-D convs");
    build_and_check(build_small_cnn, fl[i], cnn, 1, "small CNN");
    build_and_check(ktc_build_convs, fl[i], (const char *[]){"out", "c2", "c3"}, 3, "conv op graph");
  }
  kir_graph *g = kir_graph_create();
  build_small_cnn(g, KILN_F32);
  check_graph(g, cnn, 1, "small CNN (placement)");
  assert_string_equal(kt_find(g, "p1")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "r1")->assigned_device, "cuda:0");
  kir_graph_destroy(g);
  settle("convolutions");
}

/* ---------------------------------------------------------------- stand-ins ----- */

static void test_conv_graphs_fake(void **state) {
  (void)state;
  const char *out[] = {"out"};
  kir_graph *g = kir_graph_create();
  build_conv_fake(g);
  check_graph(g, out, 1, "conv, CPU pool, grouped dilated conv");
  assert_string_equal(kt_find(g, "c1")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "p1")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "out")->assigned_device, "cuda:0");
  kir_graph_destroy(g);
  settle("conv graphs on the stand-ins");
}

static void test_gemm_graphs_fake(void **state) {
  (void)state;
  const char *out[] = {"out"};
  for (int t = 0; t < 2; t++) {
    kir_graph *g = kir_graph_create();
    build_gemm_sandwich(g, t == 1);
    check_graph(g, out, 1, t ? "GEMM sandwich, transposed weight" : "GEMM sandwich");
    assert_string_equal(kt_find(g, "ls")->assigned_device, "cpu:0");
    kir_graph_destroy(g);
  }
  kir_graph *g = kir_graph_create();
  build_two_gpus(g);
  const char *s2[] = {"sum"};
  check_graph(g, s2, 1, "two-GPU pins on one GPU");
  kir_graph_destroy(g);
  settle("GEMM graphs on the stand-ins");
}

int main(void) {
  char why[256];
  if (!kcg_nvrtc_available(why, sizeof why)) {
    printf("test_cuda_runtime: skipped: NVRTC cannot be opened: %s\n", why);
    return 77;
  }
  int count = 0;
  char msg[320];
  kiln_rt_status s = kiln_rt_cuda_devices(&count, msg, sizeof msg);
  g_fake = getenv("KILN_TEST_CUDA_FAKE") && *getenv("KILN_TEST_CUDA_FAKE") == '1';
  if (s != KILN_RT_OK) {
    printf("test_cuda_runtime: skipped: %s\n", msg);
    return 77;
  }
  printf("test_cuda_runtime: %s%s\n", msg, g_fake ? " (the stand-ins of tests/runtime)" : "");
  g_arch = getenv("KILN_TEST_CUDA_ARCH") ? getenv("KILN_TEST_CUDA_ARCH") : "sm_90";
  if (g_fake) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_gemm_graphs_fake),
                                       cmocka_unit_test(test_conv_graphs_fake)};
    return cmocka_run_group_tests(tests, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops_on_gpu),      cmocka_unit_test(test_fused_on_gpu),
      cmocka_unit_test(test_random_on_gpu),   cmocka_unit_test(test_networks_on_gpu),
      cmocka_unit_test(test_convs_on_gpu),    cmocka_unit_test(test_bad_input_on_gpu),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
