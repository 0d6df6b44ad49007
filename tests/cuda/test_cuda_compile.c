/* test_cuda_compile.c — kcg_compile_cuda without a GPU: whole-GPU, mixed CPU/GPU and
 * CPU-only graphs become artifacts whose plan (images and their hashes, schedule, copies,
 * operands, io sides) is checked against the placed graph; the CPU steps' kiln_step runs
 * against the interpreter with the GPU's results stood in by the interpreter's; same
 * bytes twice; refusals leave no file; no leak under out of memory. Exits 77 when NVRTC
 * cannot be opened. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/kcg.h"
#include "codegen/kcg_cuda.h"
#include "kt_cuda_graphs.h"
#include "tests/kt_child.h"
#include "ir/kir_alloc.h"
#include "kiln_artifact.h"
#include "kiln_artifact.pb-c.h"
#include "tests/kt_graph.h"


/* ---------------------------------------------------------------- graphs -------- */

static void place(kir_graph *g, const char *const *roots, int32_t n) {
  ktc_place(g, KPS_DEFAULT_PIPELINE, roots, n);
}

static kir_node *dense(kir_graph *g, const char *name, kir_node *x, int64_t k, int64_t n,
                       uint64_t seed, bool relu) {
  char w[32], b[32], m[32], a[32];
  snprintf(w, sizeof w, "%s_w", name), snprintf(b, sizeof b, "%s_b", name);
  snprintf(m, sizeof m, "%s_mm", name), snprintf(a, sizeof a, "%s_add", name);
  kir_node *wn = kt_cst(g, w, KILN_F32, DIMS(k, n), seed, -1, 1);
  kir_node *bn = kt_cst(g, b, KILN_F32, DIMS(n), seed + 1, -1, 1);
  kir_node *y = kt_op2(g, KIR_OP_ADD, relu ? a : name, kt_matmul(g, m, x, wn, 0, 0), bn);
  return relu ? kt_op1(g, KIR_OP_RELU, name, y) : y;
}

/* (a) x[8,16] -> relu(x W1 + b1) -> relu(. W2 + b2) -> . W3 + b3: all on cuda:0. */
static kir_graph *build_mlp(void) {
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(8, 16));
  kir_node *h1 = dense(g, "h1", x, 16, 32, 1, true);
  kir_node *h2 = dense(g, "h2", h1, 32, 32, 3, true);
  dense(g, "out", h2, 32, 10, 5, false);
  const char *roots[] = {"out"};
  place(g, roots, 1);
  return g;
}

/* (b) a GEMM on cuda:0, log_softmax (no CUDA kernel) and an exp pinned to cpu:0 on the
 * CPU, then a multiply back on cuda:0; outputs on both sides. */
static const char *const k_mixed_out[] = {"y", "ls", "p"};
static kir_graph *build_mixed(void) {
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4, 16));
  kir_node *h = dense(g, "h", x, 16, 24, 1, true);
  kir_node *ls = kt_op1(g, KIR_OP_LOG_SOFTMAX, "ls", h);
  kir_node *p = kt_op1(g, KIR_OP_EXP, "p", h);
  p->device = kir_graph_strdup(g, "cpu:0");
  kir_node *s = kt_cst(g, "s", KILN_F32, DIMS(24), 7, 0.5, 2);
  kt_op2(g, KIR_OP_MUL, "y", kt_op1(g, KIR_OP_TANH, "t", ls), s);
  place(g, k_mixed_out, 3);
  return g;
}

/* (c) every node on cpu:0 (pinned), no CUDA step at all. */
static kir_graph *build_cpu_only(void) {
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(3, 5));
  kir_node *c = kt_cst(g, "c", KILN_F32, DIMS(5), 2, -1, 1);
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", x, c);
  kir_node *o = kt_op1(g, KIR_OP_TANH, "out", a);
  a->device = kir_graph_strdup(g, "cpu:0");
  o->device = kir_graph_strdup(g, "cpu:0");
  const char *roots[] = {"out"};
  place(g, roots, 1);
  return g;
}

/* ---------------------------------------------------------------- artifact ------ */

typedef struct art {
  uint8_t *bytes;
  size_t n;
  kart_section sec[KART_MAX_SECTIONS];
  int n_sec;
  Kiln__Rt__Plan *plan;
} art;

static uint8_t *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

static void art_open(art *A, const char *path) {
  char err[256] = "";
  memset(A, 0, sizeof *A);
  A->bytes = read_all(path, &A->n);
  if (kart_parse(A->bytes, A->n, A->sec, &A->n_sec, err, sizeof err) != 0) fail_msg("kart_parse: %s", err);
  const kart_section *p = kart_find(A->sec, A->n_sec, KART_SEC_PLAN);
  assert_non_null(p);
  A->plan = kiln__rt__plan__unpack(NULL, p->size, p->data);
  assert_non_null(A->plan);
}

static void art_close(art *A) {
  kiln__rt__plan__free_unpacked(A->plan, NULL);
  free(A->bytes);
  memset(A, 0, sizeof *A);
}

static const kart_section *sec(const art *A, uint32_t kind) { return kart_find(A->sec, A->n_sec, kind); }

static kiln_status compile(kir_graph *g, const char *const *outs, int32_t n, const char *archs,
                           const char *path) {
  kcg_options opt;
  memset(&opt, 0, sizeof opt);
  opt.cuda_archs = archs;
  opt.nvrtc_cache = "";
  opt.pipeline = KPS_DEFAULT_PIPELINE;
  return kcg_compile_cuda(g, outs, n, &opt, path);
}

/* ---------------------------------------------------------------- checks -------- */

/* Where pat (n bytes) first occurs in data[0..size), or NULL. */
static const void *find_bytes(const uint8_t *data, size_t size, const char *pat, size_t n) {
  for (size_t i = 0; n <= size && i <= size - n; i++)
    if (memcmp(data + i, pat, n) == 0) return data + i;
  return NULL;
}

static int64_t spec_bytes(const Kiln__Rt__TensorSpec *t) {
  int64_t n = kiln_dtype_size((kiln_dtype)t->dtype);
  for (size_t d = 0; d < t->n_dims; d++) n *= t->dims[d];
  return n;
}

static uint64_t arena_bytes(const Kiln__Rt__Plan *p, const char *dev) {
  for (size_t i = 0; i < p->n_arenas; i++)
    if (strcmp(p->arenas[i]->device, dev) == 0) return p->arenas[i]->bytes;
  fail_msg("no arena for %s", dev);
  return 0;
}

/* An operand lies inside its block: arena of its device, weights, or io buffer. */
static void check_operand(const art *A, const Kiln__Rt__Operand *o) {
  const Kiln__Rt__Plan *p = A->plan;
  assert_non_null(o);
  assert_true(strcmp(o->device, "cpu:0") == 0 || strcmp(o->device, p->cuda_device) == 0);
  switch (o->where) {
  case KILN__RT__WHERE__WHERE_ARENA:
    assert_true(o->offset % 64 == 0 && o->offset + o->bytes <= arena_bytes(p, o->device));
    assert_int_equal(o->index, -1);
    return;
  case KILN__RT__WHERE__WHERE_WEIGHTS:
    assert_true(o->offset + o->bytes <= p->weights_bytes);
    assert_true(o->offset + o->bytes <= sec(A, KART_SEC_WEIGHTS)->size);
    return;
  case KILN__RT__WHERE__WHERE_IO: {
    assert_true(o->index >= 0 && (size_t)o->index < p->n_inputs + p->n_outputs && o->offset == 0);
    const Kiln__Rt__TensorSpec *t = (size_t)o->index < p->n_inputs ? p->inputs[o->index]
                                                                  : p->outputs[o->index - (int32_t)p->n_inputs];
    assert_int_equal(spec_bytes(t), (int64_t)o->bytes);
    return;
  }
  default:
    fail_msg("operand with where %d", (int)o->where);
  }
}

static void check_images(const art *A, const char *const *archs, int32_t n_archs) {
  const Kiln__Rt__Plan *p = A->plan;
  const kart_section *code = sec(A, KART_SEC_CODE_CUDA), *src = sec(A, KART_SEC_SOURCE_CUDA);
  assert_non_null(code);
  assert_non_null(src);
  assert_non_null(find_bytes(src->data, src->size, "kiln_error", 10));
  assert_int_equal(p->n_cuda_images, n_archs);
  for (int32_t i = 0; i < n_archs; i++) {
    const Kiln__Rt__CudaImage *im = p->cuda_images[i];
    uint8_t h[32];
    assert_string_equal(im->arch, archs[i]);
    assert_int_equal(im->ptx, strncmp(archs[i], "compute_", 8) == 0);
    assert_true(im->size > 0 && im->offset % 64 == 0 && im->offset + im->size <= code->size);
    assert_int_equal(im->sha256.len, 32);
    kart_sha256(code->data + im->offset, im->size, h);
    assert_memory_equal(h, im->sha256.data, 32);
    if (im->ptx) assert_int_equal(code->data[im->offset + im->size - 1], 0);
  }
}

/* Schedule position of the unit computing the node named name, or -1. */
static int32_t unit_of(const Kiln__Rt__Plan *p, const char *name) {
  for (size_t u = 0; u < p->n_schedule; u++)
    if (strcmp(p->schedule[u]->node, name) == 0) return (int32_t)u;
  return -1;
}

static const char *dev_of(const kir_node *n) {
  return n->assigned_device && n->assigned_device[0] ? n->assigned_device : "cpu:0";
}

static void check_copy(const art *A, const kir_graph *g, const Kiln__Rt__Unit *u) {
  const kir_node *t = kt_find(g, u->node), *in = g->nodes[t->inputs[0]];
  assert_int_equal(t->op, KIR_OP_TRANSFER);
  check_operand(A, u->src);
  check_operand(A, u->dst);
  assert_string_equal(u->src->device, dev_of(in));
  assert_string_equal(u->dst->device, dev_of(t));
  assert_true(u->src->bytes == u->dst->bytes && (int64_t)u->src->bytes == kir_type_nbytes(&t->type));
}

/* Every step exactly once, CPU and CUDA steps in increasing order, each unit after the
 * units computing its node's inputs; copies for transfers with matching sides. */
static void check_schedule(const art *A, const kir_graph *g, int32_t *n_cpu, int32_t *n_copy) {
  const Kiln__Rt__Plan *p = A->plan;
  int32_t cpu = 0, cuda = 0, copies = 0;
  for (size_t u = 0; u < p->n_schedule; u++) {
    const Kiln__Rt__Unit *un = p->schedule[u];
    const kir_node *n = kt_find(g, un->node);
    switch (un->kind) {
    case KILN__RT__UNIT__KIND__UNIT_CPU_STEP:
      assert_int_equal(un->index, cpu++);
      assert_string_equal(dev_of(n), "cpu:0");
      break;
    case KILN__RT__UNIT__KIND__UNIT_CUDA_STEP:
      assert_int_equal(un->index, cuda++);
      assert_string_equal(dev_of(n), p->cuda_device);
      assert_string_equal(p->cuda_steps[un->index]->node, un->node);
      break;
    case KILN__RT__UNIT__KIND__UNIT_COPY:
      check_copy(A, g, un);
      copies++;
      break;
    default:
      fail_msg("unit %d has kind %d", (int)u, (int)un->kind);
    }
    for (int32_t k = 0; k < n->n_inputs; k++) {
      int32_t at = unit_of(p, g->nodes[n->inputs[k]]->name);
      if (at >= (int32_t)u) fail_msg("unit %d ('%s') runs before its input's unit %d", (int)u, un->node, (int)at);
    }
  }
  assert_int_equal(cuda, p->n_cuda_steps);
  for (int32_t i = 0; i < g->n_nodes; i++) /* every live transfer is copied */
    if (g->nodes[i]->op == KIR_OP_TRANSFER) assert_true(unit_of(p, g->nodes[i]->name) >= 0);
  assert_int_equal((size_t)(cpu + cuda), p->n_steps);
  for (size_t s = 0; s < p->n_steps; s++) {
    const kir_node *n = kt_find(g, p->steps[s]->nodes[p->steps[s]->n_nodes - 1]);
    assert_string_equal(p->steps[s]->device, dev_of(n));
    assert_true(p->steps[s]->placement_reason[0] != '\0');
  }
  *n_cpu = cpu;
  *n_copy = copies;
}

static void check_cuda_steps(const art *A) {
  const Kiln__Rt__Plan *p = A->plan;
  const kart_section *src = sec(A, KART_SEC_SOURCE_CUDA);
  for (size_t s = 0; s < p->n_cuda_steps; s++) {
    const Kiln__Rt__CudaStep *st = p->cuda_steps[s];
    assert_true(st->grid >= 1 && st->block >= 32 && st->block <= 1024);
    if (st->kernel[0]) assert_non_null(find_bytes(src->data, src->size, st->kernel, strlen(st->kernel)));
    if (st->kind == 1) {
      assert_true(st->kernel[0] != '\0');
      continue;
    }
    if (st->kind == 3) {
      const Kiln__Rt__CudaConv *v = st->conv;
      assert_non_null(v);
      check_operand(A, v->x);
      check_operand(A, v->w);
      check_operand(A, v->y);
      assert_string_equal(v->y->device, p->cuda_device);
      continue;
    }
    assert_int_equal(st->kind, 2);
    const Kiln__Rt__CudaGemm *m = st->gemm;
    assert_non_null(m);
    check_operand(A, m->a);
    check_operand(A, m->b);
    check_operand(A, m->d);
    assert_string_equal(m->d->device, p->cuda_device);
    assert_true((int64_t)m->d->bytes == m->batch * m->m * m->n * 4);
    if (m->has_bias) check_operand(A, m->bias);
  }
}

/* input_devices: each placeholder's side; output_values on the output node's side, the
 * CUDA side's computed outputs written straight into the caller's buffer. */
static void check_io(const art *A, const kir_graph *g, const char *const *outs, int32_t n_outs) {
  const Kiln__Rt__Plan *p = A->plan;
  int32_t ni = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == KIR_OP_PLACEHOLDER)
      assert_string_equal(p->input_devices[ni++], dev_of(g->nodes[i]));
  assert_int_equal(p->n_input_devices, ni);
  assert_int_equal(p->n_inputs, ni);
  assert_int_equal(p->n_output_values, n_outs);
  for (int32_t j = 0; j < n_outs; j++) {
    const kir_node *n = kt_find(g, outs[j]);
    const Kiln__Rt__Operand *o = p->output_values[j];
    check_operand(A, o);
    assert_string_equal(o->device, dev_of(n));
    if (strcmp(dev_of(n), "cpu:0") == 0) assert_int_equal(o->where, KILN__RT__WHERE__WHERE_ARENA);
    else assert_true(o->where == KILN__RT__WHERE__WHERE_IO && o->index == ni + j);
  }
}

/* KILN_TEST_DUMP=1: the schedule, for reading. */
static void dump_operand(const char *what, const Kiln__Rt__Operand *o) {
  printf(" %s=%s:%s%d@%llu+%llu", what, o->device,
         o->where == 1 ? "arena" : o->where == 2 ? "weights" : o->where == 3 ? "io" : "none", (int)o->index,
         (unsigned long long)o->offset, (unsigned long long)o->bytes);
}

static void dump(const art *A) {
  const Kiln__Rt__Plan *p = A->plan;
  if (!getenv("KILN_TEST_DUMP")) return;
  printf("entry '%s' device %s pipeline '%s'\n", p->entry, p->cuda_device, p->pipeline);
  for (size_t i = 0; i < p->n_arenas; i++)
    printf("arena %s %llu\n", p->arenas[i]->device, (unsigned long long)p->arenas[i]->bytes);
  for (size_t i = 0; i < p->n_steps; i++)
    printf("step %s %s %s (%s)\n", p->steps[i]->kernel, p->steps[i]->op, p->steps[i]->device,
           p->steps[i]->placement_reason);
  for (size_t u = 0; u < p->n_schedule; u++) {
    const Kiln__Rt__Unit *un = p->schedule[u];
    printf("unit %d %d '%s'", (int)un->kind, (int)un->index, un->node);
    if (un->src) dump_operand("src", un->src), dump_operand("dst", un->dst);
    printf("\n");
  }
  for (size_t j = 0; j < p->n_output_values; j++) {
    printf("output %d", (int)j);
    dump_operand("at", p->output_values[j]);
    printf("\n");
  }
}

typedef struct summary {
  int32_t cpu_steps, copies;
} summary;

/* Everything a CUDA artifact must hold, for the placed graph g. */
static summary check_artifact(const art *A, const kir_graph *g, const char *const *outs,
                              int32_t n_outs, const char *const *archs, int32_t n_archs) {
  const Kiln__Rt__Plan *p = A->plan;
  summary S;
  assert_string_equal(p->target, "cuda");
  assert_int_equal(p->abi, KART_ABI);
  assert_string_equal(p->cuda_device, "cuda:0");
  check_images(A, archs, n_archs);
  check_schedule(A, g, &S.cpu_steps, &S.copies);
  check_cuda_steps(A);
  check_io(A, g, outs, n_outs);
  dump(A);
  bool code = S.cpu_steps > 0;
  assert_string_equal(p->entry, code ? "kiln_step" : "");
  assert_int_equal(sec(A, KART_SEC_CODE_CPU) != NULL, code);
  assert_int_equal(sec(A, KART_SEC_SOURCE_C) != NULL, code);
  if (code) {
    const kart_section *c = sec(A, KART_SEC_SOURCE_C);
    assert_non_null(find_bytes(c->data, c->size, "int kiln_step(int i, ", 21));
    assert_null(find_bytes(c->data, c->size, "kiln_entry", 10));
    assert_null(find_bytes(c->data, c->size, "memcpy(outputs", 14));
  }
  assert_true(p->n_arenas >= 1);
  return S;
}

/* ---------------------------------------------------------------- kiln_step ----- */

static void *load_code(const art *A, char *path, size_t n) {
  const kart_section *c = sec(A, KART_SEC_CODE_CPU);
  snprintf(path, n, "%s", kt_path("step_code.so"));
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(c->data, 1, c->size, f), c->size);
  fclose(f);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) fail_msg("dlopen: %s", dlerror());
  return h;
}

static kir_tensor *interp_value(kir_graph *g, const kir_feed *feed, const char *name) {
  int32_t id = kt_find(g, name)->id;
  kir_tensor *t = NULL;
  OK(g, kir_interp_run(g, NULL, feed, 1, &id, 1, NULL, 0, &t));
  return t;
}

/* The whole schedule on the CPU: copies into cpu:0 take the interpreter's value of the
 * transfer's input (what the GPU would have computed), CPU steps run through kiln_step;
 * then every cpu:0 output is compared with the interpreter. */
static void run_cpu_steps(const art *A, kir_graph *g, const char *const *outs, int32_t n_outs) {
  const Kiln__Rt__Plan *p = A->plan;
  char so[512];
  void *h = load_code(A, so, sizeof so);
  kart_step_fn step = (kart_step_fn)(uintptr_t)dlsym(h, "kiln_step");
  const unsigned *abi = dlsym(h, "kiln_abi_version");
  assert_non_null(step);
  assert_non_null(abi);
  assert_int_equal(*abi, KART_ABI);
  assert_null(dlsym(h, "kiln_entry"));
  const kir_node *xn = kt_find(g, "x");
  kir_tensor *x = kir_tensor_new(&xn->type);
  kt_fill(x, 11, -1, 1);
  kir_feed feed = {xn->id, x};
  const kart_section *w = sec(A, KART_SEC_WEIGHTS);
  size_t ab = (size_t)arena_bytes(p, "cpu:0");
  unsigned char *arena = aligned_alloc(64, (ab + 64) / 64 * 64);
  unsigned char *weights = aligned_alloc(64, (w->size + 64) / 64 * 64);
  memset(arena, 0xA5, ab); /* poisoned: a step reading what nothing wrote fails the check */
  memcpy(weights, w->data, w->size);
  const void *inputs[1] = {x->data};
  assert_int_equal(step((int)p->n_steps + 5, inputs, NULL, arena, weights), -1);
  int32_t ran = 0;
  for (size_t u = 0; u < p->n_schedule; u++) {
    const Kiln__Rt__Unit *un = p->schedule[u];
    if (un->kind == KILN__RT__UNIT__KIND__UNIT_CPU_STEP) {
      assert_int_equal(step(un->index, inputs, NULL, arena, weights), 0);
      ran++;
    } else if (un->kind == KILN__RT__UNIT__KIND__UNIT_COPY && strcmp(un->dst->device, "cpu:0") == 0) {
      const kir_node *t = kt_find(g, un->node);
      kir_tensor *v = interp_value(g, &feed, g->nodes[t->inputs[0]]->name);
      assert_int_equal(un->dst->where, KILN__RT__WHERE__WHERE_ARENA);
      memcpy(arena + un->dst->offset, v->data, un->dst->bytes);
      kir_tensor_free(v);
    }
  }
  assert_true(ran > 0);
  int32_t compared = 0;
  for (int32_t j = 0; j < n_outs; j++) {
    const Kiln__Rt__Operand *o = p->output_values[j];
    if (strcmp(o->device, "cpu:0") != 0) continue;
    kir_tensor *want = interp_value(g, &feed, outs[j]);
    kir_tensor *got = kir_tensor_new(&want->type);
    memcpy(got->data, arena + o->offset, o->bytes);
    kt_assert_close(got, want, 1e-5);
    kir_tensor_free(got);
    kir_tensor_free(want);
    compared++;
  }
  assert_true(compared >= 1);
  free(arena);
  free(weights);
  kir_tensor_free(x);
  dlclose(h);
  unlink(so);
}

/* ---------------------------------------------------------------- tests --------- */

static const char *const k_default_archs[] = {"sm_80", "sm_90", "compute_90"};

/* (a): GEMMs with cuBLASLt epilogues only; no CPU code, no copies. */
static void test_mlp_on_gpu(void **state) {
  (void)state;
  kir_graph *g = build_mlp();
  const char *outs[] = {"out"}, *path = kt_path("mlp.kart");
  OK(g, compile(g, outs, 1, NULL, path));
  art A;
  art_open(&A, path);
  summary S = check_artifact(&A, g, outs, 1, k_default_archs, 3);
  assert_int_equal(S.cpu_steps, 0);
  assert_int_equal(S.copies, 0);
  assert_int_equal(A.plan->n_cuda_steps, 3);
  for (size_t s = 0; s < A.plan->n_cuda_steps; s++) assert_int_equal(A.plan->cuda_steps[s]->kind, 2);
  assert_string_equal(A.plan->input_devices[0], "cuda:0");
  assert_non_null(strstr(A.plan->pipeline, "nvrtc "));
  assert_false(A.plan->cuda_error_word); /* no kernel can fail: the runtime skips the word */
  art_close(&A);
  kir_graph_destroy(g);
}

static kir_node *conv_node(kir_graph *g, const char *name, kir_node *x, kir_node *w, kir_node *b,
                           const int64_t *pads, int64_t stride) {
  int32_t in[3] = {x->id, w->id, b ? b->id : -1};
  kir_node *n = kir_node_add(g, KIR_OP_CONV, name, in, b ? 3 : 2);
  assert_non_null(n);
  OK(g, kir_attr_set_ints(g, n, "pads", pads, 4));
  OK(g, kir_attr_set_ints(g, n, "strides", (const int64_t[]){stride, stride}, 2));
  return kt_infer(g, n);
}

/* Convolutions through cuDNN: a conv + bias + relu becomes one kind-3 step with its
 * epilogue in a follow-up kernel, a bare conv a kind-3 step alone; a conv with
 * asymmetric pads stays on the CPU with the reason recorded. */
static void test_conv_steps(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(2, 3, 9, 8));
  kir_node *w = kt_cst(g, "w", KILN_F32, DIMS(4, 3, 3, 3), 1, -1, 1);
  kir_node *b = kt_cst(g, "b", KILN_F32, DIMS(4), 2, -1, 1);
  kt_op1(g, KIR_OP_RELU, "y", conv_node(g, "c", x, w, b, (const int64_t[]){1, 1, 1, 1}, 2));
  conv_node(g, "z", x, w, NULL, (const int64_t[]){0, 2, 0, 2}, 1);
  conv_node(g, "asym", x, w, NULL, (const int64_t[]){0, 1, 1, 0}, 1);
  const char *outs[] = {"y", "z", "asym"}, *path = kt_path("conv.kart"), *archs[] = {"sm_90"};
  place(g, outs, 3);
  assert_string_equal(kt_find(g, "y")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "z")->assigned_device, "cuda:0");
  assert_string_equal(kt_find(g, "asym")->assigned_device, "cpu:0");
  assert_non_null(strstr(kt_find(g, "asym")->placement_reason, "conv"));
  OK(g, compile(g, outs, 3, "sm_90", path));
  art A;
  art_open(&A, path);
  summary S = check_artifact(&A, g, outs, 3, archs, 1);
  assert_int_equal(S.cpu_steps, 1);
  assert_int_equal(A.plan->n_cuda_steps, 2);
  const Kiln__Rt__CudaStep *fused = A.plan->cuda_steps[0], *bare = A.plan->cuda_steps[1];
  assert_int_equal(fused->kind, 3);
  assert_string_equal(fused->node, "y");
  assert_true(fused->kernel[0] != '\0'); /* bias + relu after cuDNN */
  const Kiln__Rt__CudaConv *v = fused->conv;
  assert_true(v->dtype == KILN_F32 && v->spatial == 2 && v->n == 2 && v->c == 3 && v->k == 4 && v->groups == 1);
  assert_true(v->n_in_dims == 2 && v->in_dims[0] == 9 && v->in_dims[1] == 8);
  assert_true(v->n_filter_dims == 2 && v->filter_dims[0] == 3 && v->filter_dims[1] == 3);
  assert_true(v->n_out_dims == 2 && v->out_dims[0] == 5 && v->out_dims[1] == 4);
  assert_true(v->n_pads == 2 && v->pads[0] == 1 && v->pads[1] == 1);
  assert_true(v->n_strides == 2 && v->strides[0] == 2 && v->n_dilations == 2 && v->dilations[1] == 1);
  assert_int_equal(v->x->where, KILN__RT__WHERE__WHERE_IO);
  assert_int_equal(v->w->where, KILN__RT__WHERE__WHERE_WEIGHTS);
  assert_true(v->y->where == KILN__RT__WHERE__WHERE_IO && v->y->bytes == 2 * 4 * 5 * 4 * 4);
  assert_int_equal(bare->kind, 3);
  assert_string_equal(bare->kernel, "");
  assert_true(bare->conv->pads[0] == 0 && bare->conv->pads[1] == 2 && bare->conv->out_dims[1] == 10);
  const kart_section *src = sec(&A, KART_SEC_SOURCE_CUDA);
  assert_non_null(find_bytes(src->data, src->size, "epilogue after cuDNN's conv", 27));
  art_close(&A);
  kir_graph_destroy(g);
}

/* Integer division on the GPU can fail: the plan says the runtime must read kiln_error. */
static void test_error_word_flag(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_I32, DIMS(4));
  kir_node *y = kt_ph(g, "y", KILN_I32, DIMS(4));
  kt_op2(g, KIR_OP_DIV, "out", x, y);
  const char *outs[] = {"out"}, *path = kt_path("div.kart");
  place(g, outs, 1);
  assert_string_equal(kt_find(g, "out")->assigned_device, "cuda:0");
  OK(g, compile(g, outs, 1, "sm_90", path));
  art A;
  art_open(&A, path);
  assert_true(A.plan->cuda_error_word);
  art_close(&A);
  kir_graph_destroy(g);
}

/* (b): copies both ways, CPU steps through kiln_step, outputs on both sides. */
static void test_mixed(void **state) {
  (void)state;
  kir_graph *g = build_mixed();
  const char *path = kt_path("mixed.kart"), *archs[] = {"sm_90"};
  assert_string_equal(kt_find(g, "ls")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "p")->assigned_device, "cpu:0");
  assert_string_equal(kt_find(g, "y")->assigned_device, "cuda:0");
  OK(g, compile(g, k_mixed_out, 3, "sm_90", path));
  art A;
  art_open(&A, path);
  summary S = check_artifact(&A, g, k_mixed_out, 3, archs, 1);
  assert_int_equal(S.cpu_steps, 2);
  assert_true(S.copies >= 2);
  assert_true(A.plan->n_cuda_steps >= 2);
  assert_int_equal(A.plan->n_steps, (size_t)S.cpu_steps + A.plan->n_cuda_steps);
  run_cpu_steps(&A, g, k_mixed_out, 3);
  art_close(&A);
  kir_graph_destroy(g);
}

/* (c): no CUDA step: a CPU program, the (empty) CUDA unit still compiled for kiln_error. */
static void test_cpu_only(void **state) {
  (void)state;
  kir_graph *g = build_cpu_only();
  const char *outs[] = {"out"}, *path = kt_path("cpu.kart"), *archs[] = {"sm_80", "compute_90"};
  OK(g, compile(g, outs, 1, " sm_80 ,compute_90", path));
  art A;
  art_open(&A, path);
  summary S = check_artifact(&A, g, outs, 1, archs, 2);
  assert_int_equal(A.plan->n_cuda_steps, 0);
  assert_int_equal(S.copies, 0);
  assert_int_equal(S.cpu_steps, 1); /* add and tanh fused */
  run_cpu_steps(&A, g, outs, 1);
  art_close(&A);
  kir_graph_destroy(g);
}

/* The same graph twice: the same plan bytes (images and their hashes included). */
static void test_deterministic(void **state) {
  (void)state;
  kir_graph *g = build_mixed();
  const char *p1 = kt_path("det1.kart"), *p2 = kt_path("det2.kart");
  OK(g, compile(g, k_mixed_out, 3, "sm_80,compute_90", p1));
  OK(g, compile(g, k_mixed_out, 3, "sm_80,compute_90", p2));
  art a, b;
  art_open(&a, p1);
  art_open(&b, p2);
  const kart_section *s1 = sec(&a, KART_SEC_PLAN), *s2 = sec(&b, KART_SEC_PLAN);
  assert_int_equal(s1->size, s2->size);
  assert_memory_equal(s1->data, s2->data, s1->size);
  for (uint32_t k = KART_SEC_WEIGHTS; k <= KART_SEC_SOURCE_CUDA; k++)
    if (k != KART_SEC_CODE_CPU) assert_memory_equal(sec(&a, k)->sha256, sec(&b, k)->sha256, 32);
  art_close(&a);
  art_close(&b);
  kir_graph_destroy(g);
}

/* Files in dir other than . and .. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

static void test_refusals(void **state) {
  (void)state;
  kir_graph *g = build_mixed();
  const char *path = kt_path("refused.kart");
  /* bad architecture names */
  const char *bad[] = {"sm90", "sm_90,", "", "sm_90,sm_90", "sm_9", "compute_90x", "sm_80,sm_86,sm_87,sm_89,sm_90,sm_90a,sm_100,sm_120,compute_90"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(compile(g, k_mixed_out, 3, bad[i], path), KILN_ERR_ARGUMENT);
    assert_non_null(strstr(g->error, "cuda_archs"));
  }
  assert_int_equal(compile(g, k_mixed_out, 3, "sm_90,sm90", path), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'sm90' is not an NVRTC architecture"));
  /* no outputs, no path, an unknown output */
  assert_int_equal(compile(g, k_mixed_out, 0, NULL, path), KILN_ERR_ARGUMENT);
  assert_int_equal(compile(g, k_mixed_out, 3, NULL, ""), KILN_ERR_ARGUMENT);
  const char *nope[] = {"nope"};
  assert_int_equal(compile(g, nope, 1, NULL, path), KILN_ERR_ARGUMENT);
  /* two CUDA devices */
  kir_node *t = kt_find(g, "y"); /* tanh and mul fused */
  const char *was = t->assigned_device;
  t->assigned_device = kir_graph_strdup(g, "cuda:1");
  assert_int_equal(compile(g, k_mixed_out, 3, "sm_90", path), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "'y' on cuda:1"));
  assert_non_null(strstr(g->error, "cuda:0"));
  t->assigned_device = kir_graph_strdup(g, "tpu:0");
  assert_int_equal(compile(g, k_mixed_out, 3, "sm_90", path), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "'tpu:0'"));
  t->assigned_device = was;
  assert_int_equal(access(path, F_OK), -1);
  /* unwritable: a missing directory, and a path that is a directory (rename fails) */
  assert_int_not_equal(compile(g, k_mixed_out, 3, "sm_90", "/nonexistent-kiln-dir/a.kart"), KILN_OK);
  char dir[512], target[600];
  snprintf(dir, sizeof dir, "%s", kt_path("unwritable"));
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(target, sizeof target, "%s/x.kart", dir);
  assert_int_equal(mkdir(target, 0700), 0);
  assert_int_not_equal(compile(g, k_mixed_out, 3, "sm_90", target), KILN_OK);
  assert_int_equal(count_entries(dir), 1); /* only the directory in the way */
  rmdir(target);
  rmdir(dir);
  kir_graph_destroy(g);
  /* variables */
  g = kir_graph_create();
  kir_node *v = kt_op1(g, KIR_OP_VARIABLE, "w", kt_cst(g, "init", KILN_F32, DIMS(3), 1, -1, 1));
  kt_op1(g, KIR_OP_NEG, "y", v);
  const char *y[] = {"y"};
  assert_int_equal(compile(g, y, 1, NULL, path), KILN_ERR_UNSUPPORTED);
  assert_non_null(strstr(g->error, "node 'w': variables cannot be compiled"));
  assert_int_equal(access(path, F_OK), -1);
  kir_graph_destroy(g);
}

/* NVRTC missing: KILN_ERR_UNSUPPORTED naming the library, no file. NVRTC is opened once
 * per process, so this runs in a child with KILN_NVRTC_LIBRARY pointing nowhere. */
static int child_missing(void) {
  kir_graph *g = build_mlp();
  const char *outs[] = {"out"}, *path = kt_path("missing.kart");
  kiln_status s = compile(g, outs, 1, "sm_90", path);
  int rc = s != KILN_ERR_UNSUPPORTED ? 10 : !strstr(g->error, "/nonexistent/libnvrtc.so") ? 11
           : access(path, F_OK) == 0 ? 12 : 0;
  if (rc) fprintf(stderr, "child: %s: %s\n", kiln_status_name(s), g->error);
  kir_graph_destroy(g);
  return rc;
}

static void test_nvrtc_missing(void **state) {
  (void)state;
  const char *args[] = {"--child-missing", NULL}, *env[] = {"KILN_NVRTC_LIBRARY=/nonexistent/libnvrtc.so", NULL};
  assert_int_equal(kt_child(args, env, NULL, 0), 0);
}

/* The Nth allocation fails, N = 0, 1, ... until the compile succeeds: every failure is
 * KILN_ERR_NOMEM, leaks nothing and leaves no file. The NVRTC cache makes each try cheap
 * after the first. */
static void oom_loop(kir_graph *(*build)(void), const char *const *outs, int32_t n_outs) {
  kir_graph *g = build();
  char cache[512];
  snprintf(cache, sizeof cache, "%s", kt_path("oom-cache"));
  kcg_options opt;
  memset(&opt, 0, sizeof opt);
  opt.cuda_archs = "sm_90";
  opt.nvrtc_cache = cache;
  opt.opt_flags = "-O0";
  const char *path = kt_path("oom.kart");
  OK(g, kcg_compile_cuda(g, outs, n_outs, &opt, path)); /* fills the cache */
  unlink(path);
  long failures = 0;
  for (long n = 0;; n++) {
    long live = kir_alloc_live();
    kir_alloc_fail_after(n);
    kiln_status s = kcg_compile_cuda(g, outs, n_outs, &opt, path);
    kir_alloc_fail_after(-1);
    if (s == KILN_OK) break;
    if (s != KILN_ERR_NOMEM) fail_msg("allocation %ld: %s: %s", n, kiln_status_name(s), g->error);
    assert_int_equal(kir_alloc_live(), live);
    assert_int_equal(access(path, F_OK), -1);
    failures++;
    assert_true(n < 100000);
  }
  printf("oom loop: %ld failures\n", failures);
  assert_true(failures > 20);
  unlink(path);
  kir_graph_destroy(g);
}

static void test_oom_mlp(void **state) {
  (void)state;
  const char *outs[] = {"out"};
  oom_loop(build_mlp, outs, 1);
}

static void test_oom_mixed(void **state) {
  (void)state;
  oom_loop(build_mixed, k_mixed_out, 3);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--child-missing")) return child_missing();
  char why[256];
  if (!kcg_nvrtc_available(why, sizeof why)) {
    printf("test_cuda_compile: skipped: NVRTC cannot be opened: %s\n", why);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp_on_gpu),
      cmocka_unit_test(test_error_word_flag),
      cmocka_unit_test(test_conv_steps),
      cmocka_unit_test(test_mixed),
      cmocka_unit_test(test_cpu_only),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_nvrtc_missing),
      cmocka_unit_test(test_oom_mlp),
      cmocka_unit_test(test_oom_mixed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
