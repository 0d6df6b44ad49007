/* test_cuda_codegen.c — kcg_cuda_generate without a GPU: every op x dtype with a CUDA
 * kernel, fused patterns and kt_gen graphs compile through NVRTC (sm_90, no warning, many
 * graphs per call); step records agree with the plan; output is deterministic; refusals;
 * no leak under out of memory. Exits 77 when NVRTC cannot be opened. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/kcg_cuda.h"
#include "kt_cuda_graphs.h"
#include "kt_cuda_run.h"
#include "ir/kir_alloc.h"
#include "tests/kt_graph.h"
#include "tests/passes/kt_gen.h"

#define PIPE_PLACE "infer-shapes,place"

/* ---------------------------------------------------------------- NVRTC batches - */

/* Sources of several programs, each one's kernel names prefixed, for one NVRTC call. */
typedef struct batch {
  char *p;
  size_t n, cap;
  int32_t programs;
} batch;

static void batch_put(batch *bt, const char *s, size_t len) {
  if (bt->n + len + 1 > bt->cap) {
    size_t cap = bt->cap ? bt->cap : 1 << 16;
    while (cap < bt->n + len + 1) cap *= 2;
    bt->p = realloc(bt->p, cap);
    assert_non_null(bt->p);
    bt->cap = cap;
  }
  memcpy(bt->p + bt->n, s, len);
  bt->n += len;
  bt->p[bt->n] = '\0';
}

/* Appends src with every "kiln_k" renamed "kiln_gN_k". */
static void batch_add(batch *bt, const char *src) {
  char pre[32];
  snprintf(pre, sizeof pre, "kiln_g%d_k", (int)bt->programs++);
  for (const char *p = src;;) {
    const char *q = strstr(p, "kiln_k");
    if (!q) {
      batch_put(bt, p, strlen(p));
      break;
    }
    batch_put(bt, p, (size_t)(q - p));
    batch_put(bt, pre, strlen(pre));
    p = q + strlen("kiln_k");
  }
  batch_put(bt, "\n", 1);
}

/* One NVRTC call for sm_90 with warnings as errors; fails the test with the log.
 * KILN_TEST_NO_NVRTC=1 leaves NVRTC out (for runs under valgrind, where one call takes
 * minutes): everything else is still checked. */
static void batch_compile(batch *bt, const char *name) {
  if (bt->n == 0) return;
  if (getenv("KILN_TEST_NO_NVRTC")) {
    printf("%s: %d programs, %zu bytes, not compiled (KILN_TEST_NO_NVRTC)\n", name, (int)bt->programs, bt->n);
    bt->n = 0;
    bt->programs = 0;
    return;
  }
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  const char *const archs[] = {"sm_90"};
  kcg_nvrtc_options opt = {"", true, NULL};
  kcg_nvrtc_image img;
  memset(&img, 0, sizeof img);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kiln_status s = kcg_nvrtc_compile(g, bt->p, name, archs, 1, &opt, &img);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%s: %d programs, %zu bytes, %.2f s\n", name, (int)bt->programs, bt->n,
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  if (s != KILN_OK || getenv("KILN_TEST_KEEP_CU")) {
    FILE *f = fopen(kt_path(name), "w");
    if (f) {
      fputs(bt->p, f);
      fclose(f);
    }
  }
  if (s != KILN_OK) {
    fail_msg("%s (%d programs, source in %s): %s: %s", name, (int)bt->programs, kt_path(name),
             kiln_status_name(s), g->error);
  }
  assert_true(img.size > 0);
  kcg_nvrtc_image_free(&img);
  kir_graph_destroy(g);
  bt->n = 0;
  bt->programs = 0;
}

static void batch_free(batch *bt) {
  free(bt->p);
  memset(bt, 0, sizeof *bt);
}

/* ---------------------------------------------------------------- lowering ------ */

typedef struct lowered {
  kps_memplan plan;
  int32_t outs[64];
  int32_t n_outs;
  kcg_cuda_program prog;
} lowered;

static void run_pipeline(kir_graph *g, const char *pipeline, const char *const *roots, int32_t n_roots) {
  ktc_place(g, pipeline, roots, n_roots);
}

static bool on_cuda(const kir_node *n) { return strcmp(n->assigned_device, "cuda:0") == 0; }

static int64_t cuda_peak(const kps_memplan *p) {
  for (int32_t a = 0; a < p->n_arenas; a++)
    if (strcmp(p->arenas[a].device, "cuda:0") == 0) return p->arenas[a].peak_bytes;
  return 0;
}

static int32_t count_placeholders(const kir_graph *g) {
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == KIR_OP_PLACEHOLDER;
  return n;
}

/* A GEMM operand lies inside its block. */
static void check_operand(const lowered *L, const kcg_cuda_operand *o, int32_t n_io) {
  assert_true(o->bytes >= 0);
  switch (o->where) {
  case KCG_CUDA_ARENA:
    assert_true(o->offset >= 0 && o->offset + o->bytes <= cuda_peak(&L->plan));
    return;
  case KCG_CUDA_WEIGHTS:
    assert_true(o->offset >= 0 && o->offset + o->bytes <= L->plan.weights_bytes);
    return;
  case KCG_CUDA_IO:
    assert_true(o->index >= 0 && o->index < n_io && o->offset == 0);
    return;
  }
  fail_msg("operand with where = %d", (int)o->where);
}

/* The matrices a GEMM reads or writes stay inside the operand. */
static void check_gemm(const lowered *L, const kcg_cuda_gemm *m, int32_t n_io) {
  int64_t es = m->dtype == KILN_F32 ? 4 : 8;
  assert_true(m->dtype == KILN_F32 || m->dtype == KILN_F64);
  assert_true(m->m >= 1 && m->n >= 1 && m->k >= 1 && m->batch >= 1);
  check_operand(L, &m->a, n_io);
  check_operand(L, &m->b, n_io);
  check_operand(L, &m->d, n_io);
  assert_true(((m->batch - 1) * m->stride_a + m->m * m->k) * es <= m->a.bytes);
  assert_true(((m->batch - 1) * m->stride_b + m->k * m->n) * es <= m->b.bytes);
  assert_true(m->stride_d == m->m * m->n && m->batch * m->m * m->n * es == m->d.bytes);
  if (m->has_bias) {
    check_operand(L, &m->bias, n_io);
    assert_true(m->bias.bytes == m->n * es);
  }
}

/* Every planned value a step touches lies inside its block. */
static void check_node_bounds(const kir_graph *g, const lowered *L, int32_t id) {
  const kps_memplan *p = &L->plan;
  if (p->loc[id] == KPS_LOC_ARENA) {
    int32_t a = p->arena_of[id];
    assert_true(a >= 0 && a < p->n_arenas);
    assert_true(p->offset[id] >= 0 && p->offset[id] + p->size[id] <= p->arenas[a].peak_bytes);
  } else if (p->loc[id] == KPS_LOC_WEIGHTS) {
    assert_true(p->offset[id] >= 0 && p->offset[id] + p->size[id] <= p->weights_bytes);
  }
  assert_true(p->size[id] >= kir_type_nbytes(&g->nodes[id]->type));
}

static bool has_kernel_named(const char *src, const char *name) {
  char pat[48];
  snprintf(pat, sizeof pat, " %s(", name);
  return strstr(src, pat) != NULL;
}

/* A conv record: the node's shapes, channels divisible by groups, the output formula. */
static void check_conv(const kir_graph *g, const kcg_cuda_conv *c, const kir_node *n) {
  const kir_type *x = &g->nodes[n->inputs[0]]->type;
  assert_true(n->op == KIR_OP_CONV || n->op == KIR_OP_FUSED_CONV);
  assert_true(c->dtype == n->type.dtype && c->spatial == n->type.rank - 2);
  assert_true(c->n == x->dims[0] && c->c == x->dims[1] && c->k == n->type.dims[1]);
  assert_true(c->groups >= 1 && c->c % c->groups == 0 && c->k % c->groups == 0);
  for (int32_t d = 0; d < c->spatial; d++) {
    assert_int_equal(c->in[d], x->dims[2 + d]);
    assert_int_equal(c->out[d], n->type.dims[2 + d]);
    assert_int_equal(c->out[d], (c->in[d] + 2 * c->pads[d] - c->dilations[d] * (c->filter[d] - 1) - 1) /
                                    c->strides[d] + 1);
  }
  assert_true(c->x.bytes == kir_type_nbytes(x) && c->y.bytes == kir_type_nbytes(&n->type));
}

static int32_t count_str(const char *s, const char *pat) {
  int32_t n = 0;
  for (const char *p = strstr(s, pat); p; p = strstr(p + 1, pat)) n++;
  return n;
}

/* Whether node id of g has a step, or needs none (an alias of its input). */
static bool covered(const kir_graph *g, const lowered *L, int32_t id) {
  for (int32_t s = 0; s < L->prog.n_steps; s++)
    if (L->prog.steps[s].node == id) return true;
  const kir_node *n = g->nodes[id];
  return (n->op == KIR_OP_RESHAPE || n->op == KIR_OP_IDENTITY) &&
         L->plan.loc[n->inputs[0]] == KPS_LOC_ARENA && L->plan.offset[n->inputs[0]] == L->plan.offset[id];
}

static void check_program(const kir_graph *g, const lowered *L) {
  const kcg_cuda_program *P = &L->prog;
  int32_t n_io = count_placeholders(g) + L->n_outs, kernels = 0;
  assert_non_null(P->source);
  for (int32_t s = 0; s < P->n_steps; s++) {
    const kcg_cuda_step *st = &P->steps[s];
    assert_true(st->node >= 0 && st->node < g->n_nodes);
    assert_true(on_cuda(g->nodes[st->node]) && st->device == 0);
    assert_true(st->grid >= 1 && st->block >= 32 && st->block <= 1024 && st->block % 32 == 0);
    assert_true(st->kind == KCG_CUDA_STEP_KERNEL || st->kind == KCG_CUDA_STEP_GEMM ||
                st->kind == KCG_CUDA_STEP_CONV);
    if (st->kind == KCG_CUDA_STEP_KERNEL) assert_true(st->kernel[0] != '\0');
    if (st->kind == KCG_CUDA_STEP_GEMM) check_gemm(L, &st->gemm, n_io);
    if (st->kind == KCG_CUDA_STEP_CONV) check_conv(g, &st->conv, g->nodes[st->node]);
    if (st->kernel[0]) {
      kernels++;
      if (!has_kernel_named(P->source, st->kernel)) fail_msg("step %d: no kernel %s", (int)s, st->kernel);
    }
    const kir_node *n = g->nodes[st->node];
    check_node_bounds(g, L, n->id);
    for (int32_t i = 0; i < n->n_inputs; i++) check_node_bounds(g, L, n->inputs[i]);
  }
  assert_int_equal(count_str(P->source, "extern \"C\" __global__"), kernels);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    bool computes = !kir_op_has(n->op, KIR_F_SOURCE) && !kir_op_has(n->op, KIR_F_CONTROL) &&
                    n->op != KIR_OP_TRANSFER && L->plan.loc[i] == KPS_LOC_ARENA;
    if (on_cuda(n) && computes && !covered(g, L, i)) fail_msg("node %d (%s) has no CUDA step", (int)i, n->name);
  }
}

/* Plans g (already run through its pipeline) for outs, generates, checks the records,
 * generates again (the same bytes), and adds the source to bt. */
static void generate_checked(kir_graph *g, lowered *L, batch *bt) {
  OK(g, kps_plan_memory(g, L->outs, L->n_outs, &L->plan));
  OK(g, kcg_cuda_generate(g, &L->plan, L->outs, L->n_outs, &L->prog));
  check_program(g, L);
  kcg_cuda_program again;
  OK(g, kcg_cuda_generate(g, &L->plan, L->outs, L->n_outs, &again));
  assert_string_equal(again.source, L->prog.source);
  assert_int_equal(again.n_steps, L->prog.n_steps);
  if (again.n_steps)
    assert_memory_equal(again.steps, L->prog.steps, (size_t)again.n_steps * sizeof *again.steps);
  kcg_cuda_program_free(&again);
  if (bt) batch_add(bt, L->prog.source);
}

static void lowered_free(lowered *L) {
  kcg_cuda_program_free(&L->prog);
  kps_memplan_free(&L->plan);
}

/* Runs pipeline on g for the fetches, generates and checks; the source goes to bt. */
static void lower_into(kir_graph *g, const char *pipeline, const char *const *fetch, int32_t n,
                       batch *bt, lowered *L) {
  memset(L, 0, sizeof *L);
  run_pipeline(g, pipeline, fetch, n);
  for (int32_t i = 0; i < n; i++) L->outs[i] = kt_find(g, fetch[i])->id;
  L->n_outs = n;
  generate_checked(g, L, bt);
}

static void lower_add(kir_graph *g, const char *pipeline, const char *const *fetch, int32_t n, batch *bt) {
  lowered L;
  lower_into(g, pipeline, fetch, n, bt, &L);
  lowered_free(&L);
}

/* ---------------------------------------------------------------- every op ------ */

static void test_every_op_every_dtype(void **state) {
  (void)state;
  batch bt = {0};
  int32_t graphs = 0;
  bool seen_op[KIR_OP_COUNT] = {false};
  for (int d = 0; d < KTC_N_DTYPES; d++) {
    for (int32_t op = 1; op < KIR_OP_COUNT; op++) {
      if (!ktc_op_wanted((kir_op)op) || !ktc_op_takes((kir_op)op, ktc_dtypes[d])) continue;
      kir_graph *g = kir_graph_create();
      const char *fetch[4];
      int32_t nf = ktc_build_op_graph(g, (kir_op)op, ktc_dtypes[d], fetch);
      lower_add(g, PIPE_PLACE, fetch, nf, &bt);
      kir_graph_destroy(g);
      seen_op[op] = true;
      graphs++;
    }
    char name[48];
    snprintf(name, sizeof name, "ops_%s.cu", kiln_dtype_name(ktc_dtypes[d]));
    batch_compile(&bt, name);
  }
  for (int32_t op = 1; op < KIR_OP_COUNT; op++)
    if (ktc_op_wanted((kir_op)op) && !seen_op[op]) fail_msg("op %s was not tested", kir_op_get(op)->name);
  assert_true(graphs > 150);
  batch_free(&bt);
}

/* ---------------------------------------------------------------- on a GPU ------ */

/* Random inputs that keep every op finite (log, sqrt, division: positive, no zero). */
static kir_tensor *gpu_input(const kir_node *ph, uint64_t seed) {
  kir_tensor *t = kir_tensor_new(&ph->type);
  assert_non_null(t);
  bool fl = ph->type.dtype == KILN_F32 || ph->type.dtype == KILN_F64 ||
            ph->type.dtype == KILN_F16 || ph->type.dtype == KILN_BF16;
  kt_fill(t, seed, fl ? 0.5 : 1, fl ? 2.0 : 6);
  return t;
}

/* One op graph on the device against the interpreter: 1 ran and matched, 0 not run here
 * (a cuBLASLt or cuDNN step, or a node placement kept on the CPU — f16 conv —: the
 * runtime's business, checked by test_cuda_runtime), -1 a mismatch (printed; the caller
 * fails after trying every graph, so one run shows every wrong kernel). */
static int gpu_check_graph(kt_cuda *c, kir_graph *g, const char *const *fetch, int32_t nf,
                            const char *what) {
  lowered L;
  lower_into(g, PIPE_PLACE, fetch, nf, NULL, &L);
  bool skip = false; /* a node on the CPU, or a step that is not a generated kernel */
  for (int32_t i = 0; i < g->n_nodes; i++)
    skip = skip || (!kir_op_has(g->nodes[i]->op, KIR_F_SOURCE) && !on_cuda(g->nodes[i]));
  for (int32_t i = 0; i < L.prog.n_steps; i++) skip = skip || L.prog.steps[i].kind != KCG_CUDA_STEP_KERNEL;
  if (skip) {
    lowered_free(&L);
    return 0;
  }
  const char *archs[1] = {kt_cuda_arch(c)};
  kcg_nvrtc_options opt = {"", true, NULL};
  kcg_nvrtc_image img;
  memset(&img, 0, sizeof img);
  OK(g, kcg_nvrtc_compile(g, L.prog.source, "gpu.cu", archs, 1, &opt, &img));
  kir_feed feeds[8];
  int32_t n_feeds = 0;
  for (int32_t i = 0; i < g->n_nodes && n_feeds < 8; i++)
    if (g->nodes[i]->op == KIR_OP_PLACEHOLDER)
      feeds[n_feeds++] = (kir_feed){i, gpu_input(g->nodes[i], 100 + (uint64_t)i)};
  kir_tensor *want[64] = {NULL}, *got[64] = {NULL};
  kiln_status ref = kir_interp_run(g, NULL, feeds, n_feeds, L.outs, L.n_outs, NULL, 0, want);
  if (ref != KILN_OK && ref != KILN_ERR_EXEC) fail_msg("%s: interpreter: %s", what, g->error);
  char err[512] = "";
  kiln_status s = kt_cuda_run(c, g, &L.plan, &L.prog, &img, feeds, n_feeds, L.outs, L.n_outs, got,
                              err, sizeof err);
  int rc = 1;
  if (ref == KILN_ERR_EXEC) { /* integer division by zero: the kernel must say so too */
    if (s != KILN_ERR_EXEC) {
      printf("ERROR: %s: the interpreter stops (%s), the GPU run says %s\n", what, g->error,
             kiln_status_name(s));
      rc = -1;
    }
    for (int32_t j = 0; j < L.n_outs; j++) kir_tensor_free(got[j]);
  } else if (s != KILN_OK) {
    printf("ERROR: %s on the GPU: %s: %s\n", what, kiln_status_name(s), err);
    rc = -1;
  }
  for (int32_t j = 0; j < L.n_outs && ref == KILN_OK; j++) {
    double e = s == KILN_OK ? kt_rel_error(got[j], want[j]) : 0, tol = kt_tolerance(want[j]->type.dtype);
    if (!(e <= tol)) {
      printf("ERROR: %s: output '%s' on the GPU is off by %g (tolerance %g)\n", what, fetch[j], e, tol);
      rc = -1;
    }
    kir_tensor_free(got[j]);
    kir_tensor_free(want[j]);
  }
  for (int32_t f = 0; f < n_feeds; f++) kir_tensor_free((kir_tensor *)feeds[f].value);
  kcg_nvrtc_image_free(&img);
  lowered_free(&L);
  return rc;
}

/* The GPU check (scripts/gpu-check.sh): on a machine with a CUDA device, every op with a
 * kernel in every dtype it takes, on random inputs, through its generated kernels, with
 * outputs and arena poisoned first, against the interpreter within kt_tolerance (f32:
 * 1e-5 relative; NaN never passes). Skipped, saying why, where there is no device. */
static void test_on_gpu(void **state) {
  (void)state;
  char why[256];
  kt_cuda *c = kt_cuda_open(why, sizeof why);
  if (!c) {
    printf("no GPU run: %s\n", why);
    skip();
  }
  int32_t ran = 0, gemm = 0, bad = 0;
  for (int d = 0; d < KTC_N_DTYPES; d++)
    for (int32_t op = 1; op < KIR_OP_COUNT; op++) {
      if (!ktc_op_wanted((kir_op)op) || !ktc_op_takes((kir_op)op, ktc_dtypes[d])) continue;
      kir_graph *g = kir_graph_create();
      const char *fetch[4];
      int32_t nf = ktc_build_op_graph(g, (kir_op)op, ktc_dtypes[d], fetch);
      char what[64];
      snprintf(what, sizeof what, "%s on %s", kir_op_get(op)->name, kiln_dtype_name(ktc_dtypes[d]));
      int rc = gpu_check_graph(c, g, fetch, nf, what);
      ran += rc == 1, gemm += rc == 0, bad += rc < 0;
      kir_graph_destroy(g);
    }
  printf("GPU %s: %d op graphs matched the interpreter, %d did not (%d with cuBLASLt/cuDNN "
         "steps or CPU nodes not run here)\n", kt_cuda_arch(c), (int)ran, (int)bad, (int)gemm);
  kt_cuda_close(c);
  if (bad) fail_msg("%d op graphs differ from the interpreter on the GPU (ERROR lines above)", (int)bad);
  assert_true(ran > 100);
}

/* The records of a plain matmul: shapes, strides and where each operand is. */
static void test_gemm_record(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  ktc_build_matmul(g, KILN_F32);
  const char *fetch[] = {"r1", "r2", "r3"};
  lowered L;
  batch bt = {0};
  lower_into(g, PIPE_PLACE, fetch, 3, &bt, &L);
  int32_t gemms = 0, tiled = 0;
  for (int32_t s = 0; s < L.prog.n_steps; s++) {
    const kcg_cuda_step *st = &L.prog.steps[s];
    const char *name = g->nodes[st->node]->name;
    if (strcmp(name, "m1") == 0) {
      assert_int_equal(st->kind, KCG_CUDA_STEP_GEMM);
      const kcg_cuda_gemm *m = &st->gemm;
      assert_true(m->m == 3 && m->n == 5 && m->k == 4 && m->batch == 2);
      assert_true(m->stride_a == 12 && m->stride_b == 0 && m->stride_d == 15);
      assert_true(m->a.where == KCG_CUDA_IO && m->a.index == 0);
      assert_true(m->b.where == KCG_CUDA_WEIGHTS && m->d.where == KCG_CUDA_ARENA);
      assert_false(m->has_bias || m->relu || m->trans_a || m->trans_b);
      assert_string_equal(st->kernel, "");
    }
    if (strcmp(name, "r1") == 0) {
      assert_true(st->gemm.trans_b && st->gemm.d.where == KCG_CUDA_IO && st->gemm.d.index == 4);
    }
    if (strcmp(name, "r3") == 0) assert_true(st->gemm.trans_a && st->gemm.batch == 1);
    if (strcmp(name, "r2") == 0) { /* batch dims broadcast in part: a generated kernel */
      assert_int_equal(st->kind, KCG_CUDA_STEP_KERNEL);
      tiled++;
    }
    gemms += st->kind == KCG_CUDA_STEP_GEMM;
  }
  assert_int_equal(gemms, 3);
  assert_int_equal(tiled, 1);
  batch_compile(&bt, "gemm_record.cu");
  batch_free(&bt);
  lowered_free(&L);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- fused --------- */

static int32_t count_op(const kir_graph *g, kir_op op) {
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == op && on_cuda(g->nodes[i]);
  return n;
}

typedef kt_cuda_builder builder;

static void lower_fused(builder fn, kiln_dtype dt, const char *const *fetch, int32_t n, batch *bt,
                        kir_op want, int32_t want_min) {
  kir_graph *g = kir_graph_create();
  fn(g, dt);
  lowered L;
  lower_into(g, KPS_DEFAULT_PIPELINE, fetch, n, bt, &L);
  if (dt != KILN_F32 && dt != KILN_F64) want = KIR_OP_INVALID; /* fuse takes f32 and f64 only */
  if (want != KIR_OP_INVALID && count_op(g, want) < want_min)
    fail_msg("%s on %s: expected %d %s on cuda:0, got %d", fetch[0], kiln_dtype_name(dt), (int)want_min,
             kir_op_get(want)->name, (int)count_op(g, want));
  lowered_free(&L);
  kir_graph_destroy(g);
}

/* Steps of the MLP: two GEMMs with cuBLASLt bias epilogues (the first with relu). */
static void test_mlp_gemm_epilogues(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  ktc_build_mlp(g, KILN_F32);
  const char *fetch[] = {"out"};
  lowered L;
  batch bt = {0};
  lower_into(g, KPS_DEFAULT_PIPELINE, fetch, 1, &bt, &L);
  int32_t bias_relu = 0, bias_only = 0;
  for (int32_t s = 0; s < L.prog.n_steps; s++) {
    const kcg_cuda_step *st = &L.prog.steps[s];
    if (st->kind != KCG_CUDA_STEP_GEMM) continue;
    assert_true(st->gemm.has_bias && st->kernel[0] == '\0');
    assert_true(st->gemm.bias.where == KCG_CUDA_WEIGHTS);
    bias_relu += st->gemm.relu;
    bias_only += !st->gemm.relu;
  }
  assert_int_equal(bias_relu, 1);
  assert_int_equal(bias_only, 1);
  batch_compile(&bt, "mlp.cu");
  batch_free(&bt);
  lowered_free(&L);
  kir_graph_destroy(g);
}

static void test_fused_patterns(void **state) {
  (void)state;
  static const kiln_dtype fl[] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16};
  const char *mlp[] = {"out"}, *red[] = {"rs", "rm", "rn"}, *sm[] = {"sm", "sm1", "lsm"};
  batch bt = {0};
  for (int i = 0; i < 4; i++) {
    kiln_dtype dt = fl[i];
    lower_fused(ktc_build_mlp, dt, mlp, 1, &bt, KIR_OP_FUSED_MATMUL, 2);
    lower_fused(ktc_build_mm_tanh, dt, mlp, 1, &bt, KIR_OP_FUSED_MATMUL, 1);
    lower_fused(ktc_build_mm_partial, dt, mlp, 1, &bt, KIR_OP_FUSED_MATMUL, 1);
    lower_fused(ktc_build_chain, dt, mlp, 1, &bt, KIR_OP_FUSED_ELEMENTWISE, 1);
    lower_fused(ktc_build_reductions, dt, red, 3, &bt, KIR_OP_FUSED_REDUCE, 3);
    lower_fused(ktc_build_softmaxes, dt, sm, 3, &bt, KIR_OP_FUSED_SOFTMAX, 1);
  }
  batch_compile(&bt, "fused.cu");
  batch_free(&bt);
}

/* ---------------------------------------------------------------- random graphs - */

static void test_random_graphs(void **state) {
  (void)state;
  batch bt = {0};
  int32_t steps = 0;
  for (uint64_t seed = 1; seed <= 36; seed++) {
    kt_gen k;
    ktc_random_graph(seed, &k);
    lowered L;
    memset(&L, 0, sizeof L);
    /* odd seeds unoptimized: more and plainer steps; even ones through fuse */
    run_pipeline(k.g, seed % 2 ? PIPE_PLACE : KPS_DEFAULT_PIPELINE, (const char *const *)k.roots,
                 k.n_roots);
    for (int32_t i = 0; i < k.n_fetches && L.n_outs < 64; i++) {
      const kir_node *n = kir_graph_find(k.g, k.roots[i]);
      if (n && !kir_op_has(n->op, KIR_F_NO_OUTPUT)) L.outs[L.n_outs++] = n->id;
    }
    generate_checked(k.g, &L, &bt);
    steps += L.prog.n_steps;
    lowered_free(&L);
    kt_gen_free(&k);
    if (seed % 12 == 0) {
      char name[32];
      snprintf(name, sizeof name, "random_%d.cu", (int)seed);
      batch_compile(&bt, name);
    }
  }
  printf("random graphs: %d CUDA steps\n", (int)steps);
  assert_true(steps > 300); /* most of the work went to the GPU */
  batch_free(&bt);
}

/* ---------------------------------------------------------------- refusals ------ */

/* pow has no CUDA kernel: pinned there by hand after placement, it is refused by name. */
static void test_refuses_node_without_kernel(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4));
  kir_node *y = kt_cst(g, "y", KILN_F32, DIMS(4), 1, 1, 2);
  kt_op2(g, KIR_OP_ADD, "out", kt_op2(g, KIR_OP_POW, "p*/odd", x, y), x);
  const char *fetch[] = {"out"};
  run_pipeline(g, PIPE_PLACE, fetch, 1);
  kir_node *p = kt_find(g, "p*/odd");
  assert_string_equal(p->assigned_device, "cpu:0");
  p->assigned_device = kir_graph_strdup(g, "cuda:0");
  int32_t out = kt_find(g, "out")->id;
  kps_memplan plan;
  OK(g, kps_plan_memory(g, &out, 1, &plan));
  kcg_cuda_program prog;
  assert_int_equal(kcg_cuda_generate(g, &plan, &out, 1, &prog), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "'p*/odd'"));
  assert_non_null(strstr(g->error, "pow"));
  assert_null(prog.source);
  assert_int_equal(prog.n_steps, 0);
  kcg_cuda_program_free(&prog);
  kps_memplan_free(&plan);
  kir_graph_destroy(g);
}

/* Misuse is refused with KILN_ERR_ARGUMENT, leaving a program that frees. */
static void test_bad_arguments(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  ktc_build_unary(g, KIR_OP_EXP, KILN_F32);
  const char *fetch[] = {"out"};
  run_pipeline(g, PIPE_PLACE, fetch, 1);
  int32_t outs[2] = {kt_find(g, "out")->id, kt_find(g, "out")->id}, bad = g->n_nodes;
  kps_memplan plan;
  OK(g, kps_plan_memory(g, outs, 1, &plan));
  kcg_cuda_program prog;
  assert_int_equal(kcg_cuda_generate(g, &plan, outs, 1, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_cuda_generate(g, NULL, outs, 1, &prog), KILN_ERR_ARGUMENT);
  kcg_cuda_program_free(&prog);
  assert_int_equal(kcg_cuda_generate(g, &plan, outs, 2, &prog), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "same node"));
  assert_int_equal(kcg_cuda_generate(g, &plan, &bad, 1, &prog), KILN_ERR_ARGUMENT);
  plan.n_nodes--;
  assert_int_equal(kcg_cuda_generate(g, &plan, outs, 1, &prog), KILN_ERR_ARGUMENT);
  plan.n_nodes++;
  assert_null(prog.source);
  kcg_cuda_program_free(&prog);
  assert_int_equal(kcg_cuda_generate(NULL, &plan, outs, 1, &prog), KILN_ERR_ARGUMENT);
  OK(g, kcg_cuda_generate(g, &plan, outs, 1, &prog));
  assert_int_equal(prog.n_steps, 3);
  kcg_cuda_program_free(&prog);
  kcg_cuda_program_free(NULL);
  kps_memplan_free(&plan);
  kir_graph_destroy(g);
}

/* Integer division writes the error word; the word is defined once per program. */
static void test_int_division_error_word(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  ktc_build_binary(g, KIR_OP_DIV, KILN_I32);
  const char *fetch[] = {"out"};
  lowered L;
  lower_into(g, PIPE_PLACE, fetch, 1, NULL, &L);
  assert_int_equal(count_str(L.prog.source, "__device__ unsigned int kiln_error;"), 1);
  assert_int_equal(count_str(L.prog.source, "atomicCAS(&kiln_error, 0u, "), 3);
  lowered_free(&L);
  kir_graph_destroy(g);
}

/* Model strings reach the source only escaped: a name closing a comment does not. */
static void test_names_escaped(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x */ #include <evil> /*", KILN_F32, DIMS(3));
  kt_op1(g, KIR_OP_EXP, "e\"\\\n*/", kt_op1(g, KIR_OP_NEG, "n */ }", x));
  const char *fetch[] = {"e\"\\\n*/"};
  lowered L;
  batch bt = {0};
  lower_into(g, PIPE_PLACE, fetch, 1, &bt, &L);
  assert_null(strstr(L.prog.source, "evil"));
  assert_null(strstr(L.prog.source, "n */"));
  batch_compile(&bt, "names.cu");
  batch_free(&bt);
  lowered_free(&L);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- out of memory - */

static void test_generate_oom(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  ktc_build_mm_tanh(g, KILN_F32); /* a GEMM and its epilogue kernel */
  const char *fetch[] = {"out"};
  lowered L;
  memset(&L, 0, sizeof L);
  run_pipeline(g, KPS_DEFAULT_PIPELINE, fetch, 1);
  L.outs[0] = kt_find(g, "out")->id;
  L.n_outs = 1;
  OK(g, kps_plan_memory(g, L.outs, 1, &L.plan));
  long failures = 0;
  for (long n = 0;; n++) {
    long live = kir_alloc_live();
    kcg_cuda_program prog;
    kir_alloc_fail_after(n);
    kiln_status s = kcg_cuda_generate(g, &L.plan, L.outs, 1, &prog);
    kir_alloc_fail_after(-1);
    if (s == KILN_OK) {
      assert_true(prog.n_steps == 1 && prog.steps[0].kind == KCG_CUDA_STEP_GEMM &&
                  prog.steps[0].kernel[0] != '\0');
      kcg_cuda_program_free(&prog);
      break;
    }
    assert_int_equal(s, KILN_ERR_NOMEM);
    assert_null(prog.source);
    assert_int_equal(kir_alloc_live(), live);
    failures++;
    assert_true(n < 10000);
  }
  assert_true(failures > 3);
  kps_memplan_free(&L.plan);
  kir_graph_destroy(g);
}

int main(void) {
  char why[256];
  if (!kcg_nvrtc_available(why, sizeof why)) {
    printf("test_cuda_codegen: skipped: NVRTC cannot be opened: %s\n", why);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_every_dtype),
      cmocka_unit_test(test_gemm_record),
      cmocka_unit_test(test_mlp_gemm_epilogues),
      cmocka_unit_test(test_fused_patterns),
      cmocka_unit_test(test_random_graphs),
      cmocka_unit_test(test_refuses_node_without_kernel),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_int_division_error_word),
      cmocka_unit_test(test_names_escaped),
      cmocka_unit_test(test_generate_oom),
      cmocka_unit_test(test_on_gpu),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
