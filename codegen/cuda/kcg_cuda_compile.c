/* kcg_cuda_compile.c — kcg_compile_cuda: a graph placed over cpu:0 and one cuda:N becomes
 * one artifact: the memory plan (an arena per device), the CUDA C of kcg_cuda_generate
 * compiled by NVRTC, C for the CPU steps (kiln_step mode of the C target), and the plan's
 * schedule of CPU steps, CUDA steps and transfer copies. The plan is packed by the C
 * target's code (kcg_c_write_artifact_ext) and extended here; every CUDA-side operand
 * comes from kcg_cuda_value_operand, the rule the kernels were generated with. */
#include <stdio.h>
#include <string.h>

#include "kcg_cuda_internal.h"
#include "kiln_artifact.h"
#include "kiln_artifact.pb-c.h"

#define DEFAULT_ARCHS "sm_80,sm_90,compute_90"
#define MAX_ARCHS 8
#define MAX_BLOCKS 24

static const char k_cpu[] = "cpu:0";

/* ---------------------------------------------------------------- state --------- */

typedef struct archs {
  char name[MAX_ARCHS][16];
  const char *ptr[MAX_ARCHS];
  int32_t n;
} archs;

typedef struct cctx {
  kir_graph *g; /* the clone */
  const kcg_options *opt;
  const int32_t *ids;
  int32_t n_outputs;
  const archs *A;
  char device[24];  /* "cuda:N" of the CUDA side */
  kps_memplan plan;
  kcg_cuda_program prog;
  kcg_nvrtc_image img[MAX_ARCHS];
  int32_t *io;      /* kcg_cuda_number_io */
  int32_t n_inputs;
  int32_t *cuda_step_of; /* per node: its index in prog.steps, -1 */
  int32_t n_cpu_steps;
  char *csrc, *pipeline;
  uint8_t *so, *code_cuda;
  size_t so_len, code_cuda_len;
  void *blocks[MAX_BLOCKS]; /* the plan extension's messages, freed together */
  int32_t n_blocks;
} cctx;

static kiln_status oom(kir_graph *g, const char *what) {
  return kir_seterr(g, KILN_ERR_NOMEM, "kcg_compile_cuda: out of memory for %s", what);
}

/* Zeroed memory that lives until the artifact is written; NULL when out of memory. */
static void *take(cctx *C, size_t n, size_t size) {
  if (C->n_blocks == MAX_BLOCKS) return NULL;
  void *p = kir_calloc(n + 1, size);
  if (p) C->blocks[C->n_blocks++] = p;
  return p;
}

static const char *device_of(const kir_node *n) {
  return n->assigned_device && n->assigned_device[0] ? n->assigned_device : k_cpu;
}

/* ---------------------------------------------------------------- arguments ----- */

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* One name of the comma list, spaces around it dropped. */
static kiln_status arch_item(kir_graph *g, const char *list, const char *p, size_t len, archs *A) {
  char esc[KCG_ESC_BUF], item[64];
  while (len && is_space(*p)) p++, len--;
  while (len && is_space(p[len - 1])) len--;
  snprintf(item, sizeof item, "%.*s", (int)(len < 63 ? len : 63), p);
  bool ok = len > 0 && len < sizeof item && kcg_nvrtc_arch_valid(item, NULL);
  if (!ok)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_compile_cuda: cuda_archs '%s': '%s' is not an NVRTC "
                      "architecture (sm_NN or compute_NN, e.g. sm_90)", kir_escape(list, esc, sizeof esc), item);
  for (int32_t i = 0; i < A->n; i++)
    if (strcmp(A->name[i], item) == 0)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_compile_cuda: cuda_archs '%s' names '%s' twice",
                        kir_escape(list, esc, sizeof esc), item);
  if (A->n == MAX_ARCHS)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_compile_cuda: cuda_archs '%s' names more than %d "
                      "architectures", kir_escape(list, esc, sizeof esc), MAX_ARCHS);
  memcpy(A->name[A->n], item, len + 1); /* kcg_nvrtc_arch_valid: shorter than the field */
  A->ptr[A->n] = A->name[A->n];
  A->n++;
  return KILN_OK;
}

/* opt->cuda_archs (NULL: DEFAULT_ARCHS) as a list of names NVRTC takes. */
static kiln_status parse_archs(kir_graph *g, const kcg_options *opt, archs *A) {
  const char *list = opt && opt->cuda_archs ? opt->cuda_archs : DEFAULT_ARCHS;
  memset(A, 0, sizeof *A);
  for (const char *p = list;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    kiln_status s = arch_item(g, list, p, len, A);
    if (s || !end) return s;
    p = end + 1;
  }
}

/* Variables, devices other than cpu:0 and cuda:N, and two CUDA devices are refused; the
 * CUDA side's name goes to dev ("cuda:0" when no node is on a GPU). */
static kiln_status check_devices(kir_graph *g, char *dev, size_t dev_n) {
  char esc[KCG_ESC_BUF], esc2[KCG_ESC_BUF], d1[KCG_ESC_BUF];
  int32_t first = -1;
  snprintf(dev, dev_n, "cuda:0");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
      return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s': variables cannot be compiled; freeze "
                        "the graph first", kir_escape(n->name, esc, sizeof esc));
    if (kcg_c_on_cpu(n)) continue;
    const char *d = n->assigned_device;
    if (kcg_cuda_device_index(d) < 0 || strlen(d) >= dev_n)
      return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s' is placed on '%s'; the CUDA target runs "
                        "on cpu:0 and one cuda:N", kir_escape(n->name, esc, sizeof esc),
                        kir_escape(d, d1, sizeof d1));
    if (first < 0) {
      first = i;
      snprintf(dev, dev_n, "%s", d);
    } else if (strcmp(d, dev) != 0) {
      return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s' is on %s and node '%s' on %s; a CUDA "
                        "artifact runs on one GPU", kir_escape(g->nodes[first]->name, esc, sizeof esc),
                        dev, kir_escape(n->name, esc2, sizeof esc2), kir_escape(d, d1, sizeof d1));
    }
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- operands ------ */

static void put_operand(Kiln__Rt__Operand *o, Kiln__Rt__Where where, int32_t index, int64_t offset,
                        int64_t bytes, const char *dev) {
  kiln__rt__operand__init(o);
  o->where = where;
  o->index = index;
  o->offset = (uint64_t)offset;
  o->bytes = (uint64_t)bytes;
  o->device = (char *)dev;
}

static void from_cuda(cctx *C, const kcg_cuda_operand *k, Kiln__Rt__Operand *o) {
  Kiln__Rt__Where w = k->where == KCG_CUDA_IO ? KILN__RT__WHERE__WHERE_IO
                      : k->where == KCG_CUDA_WEIGHTS ? KILN__RT__WHERE__WHERE_WEIGHTS
                                                     : KILN__RT__WHERE__WHERE_ARENA;
  put_operand(o, w, k->where == KCG_CUDA_IO ? k->index : -1, k->offset, k->bytes, C->device);
}

static kiln_status off_cpu(cctx *C, const kir_node *reader, const kir_node *v, const char *why) {
  char esc[KCG_ESC_BUF], esc2[KCG_ESC_BUF];
  return kir_seterr(C->g, KILN_ERR_INTERNAL, "node '%s': reads '%s' on cpu:0, but %s",
                    kir_escape(reader->name, esc, sizeof esc), kir_escape(v->name, esc2, sizeof esc2), why);
}

/* The C target's rule: a placeholder is the caller's input; everything else is in the
 * weights or cpu:0's arena, outputs included (kiln_step never writes outputs). */
static kiln_status cpu_operand(cctx *C, const kir_node *reader, int32_t id, Kiln__Rt__Operand *o) {
  const kps_memplan *p = &C->plan;
  const kir_node *v = C->g->nodes[id];
  int64_t nb = kir_type_nbytes(&v->type);
  if (nb < 0) return off_cpu(C, reader, v, "its size is out of range");
  switch (p->loc[id]) {
  case KPS_LOC_INPUT:
    if (!kcg_c_on_cpu(v)) return off_cpu(C, reader, v, "the placeholder is on another device");
    put_operand(o, KILN__RT__WHERE__WHERE_IO, C->io[id], 0, nb, k_cpu);
    return KILN_OK;
  case KPS_LOC_WEIGHTS:
    if (p->offset[id] < 0 || p->offset[id] > p->weights_bytes - nb) break;
    put_operand(o, KILN__RT__WHERE__WHERE_WEIGHTS, -1, p->offset[id], nb, k_cpu);
    return KILN_OK;
  case KPS_LOC_ARENA: {
    int32_t a = p->arena_of[id];
    if (a < 0 || a >= p->n_arenas || strcmp(p->arenas[a].device, k_cpu) != 0)
      return off_cpu(C, reader, v, "its value is planned on another device");
    if (p->offset[id] < 0 || p->offset[id] > p->arena_bytes - nb) break;
    put_operand(o, KILN__RT__WHERE__WHERE_ARENA, -1, p->offset[id], nb, k_cpu);
    return KILN_OK;
  }
  case KPS_LOC_NONE:
    break;
  }
  return off_cpu(C, reader, v, "the memory plan gives it no place there");
}

/* Where node id's value is on `side` (cpu:0 or the CUDA device), read by reader. */
static kiln_status side_operand(cctx *C, const kir_node *reader, int32_t id, const char *side,
                                Kiln__Rt__Operand *o) {
  if (kcg_cuda_device_index(side) < 0) return cpu_operand(C, reader, id, o);
  kcg_cuda_operand k;
  kiln_status s = kcg_cuda_value_operand(C->g, &C->plan, C->io, reader, id, side, &k);
  if (!s) from_cuda(C, &k, o);
  return s;
}

/* ---------------------------------------------------------------- the plan ------ */

static kiln_status put_images(cctx *C, Kiln__Rt__Plan *p) {
  Kiln__Rt__CudaImage *im = take(C, (size_t)C->A->n, sizeof *im);
  Kiln__Rt__CudaImage **ptrs = take(C, (size_t)C->A->n, sizeof *ptrs);
  if (!im || !ptrs) return oom(C->g, "the image list");
  uint64_t off = 0;
  for (int32_t i = 0; i < C->A->n; i++) {
    const kcg_nvrtc_image *img = &C->img[i];
    kiln__rt__cuda_image__init(&im[i]);
    im[i].arch = (char *)img->arch;
    im[i].ptx = img->ptx;
    im[i].offset = off;
    im[i].size = img->size;
    im[i].sha256.len = sizeof img->hash;
    im[i].sha256.data = (uint8_t *)img->hash;
    ptrs[i] = &im[i];
    off += (img->size + KART_ALIGN - 1) / KART_ALIGN * KART_ALIGN;
  }
  p->n_cuda_images = (size_t)C->A->n;
  p->cuda_images = ptrs;
  return KILN_OK;
}

static void put_gemm(cctx *C, const kcg_cuda_gemm *k, Kiln__Rt__CudaGemm *m, Kiln__Rt__Operand *o) {
  kiln__rt__cuda_gemm__init(m);
  m->dtype = (int32_t)k->dtype;
  m->m = k->m, m->n = k->n, m->k = k->k, m->batch = k->batch;
  m->trans_a = k->trans_a, m->trans_b = k->trans_b;
  m->stride_a = k->stride_a, m->stride_b = k->stride_b, m->stride_d = k->stride_d;
  from_cuda(C, &k->a, &o[0]);
  from_cuda(C, &k->b, &o[1]);
  from_cuda(C, &k->d, &o[2]);
  m->a = &o[0], m->b = &o[1], m->d = &o[2];
  m->has_bias = k->has_bias;
  m->relu = k->relu;
  if (k->has_bias) {
    from_cuda(C, &k->bias, &o[3]);
    m->bias = &o[3];
  }
}

/* The conv record; its six arrays of `spatial` entries in d (18 entries). */
static void put_conv(cctx *C, const kcg_cuda_conv *k, Kiln__Rt__CudaConv *m, Kiln__Rt__Operand *o,
                     int64_t *d) {
  kiln__rt__cuda_conv__init(m);
  m->dtype = (int32_t)k->dtype;
  m->spatial = k->spatial;
  m->n = k->n, m->c = k->c, m->k = k->k, m->groups = k->groups;
  const int64_t *src[6] = {k->in, k->filter, k->out, k->pads, k->strides, k->dilations};
  int64_t **dst[6] = {&m->in_dims, &m->filter_dims, &m->out_dims, &m->pads, &m->strides, &m->dilations};
  size_t *cnt[6] = {&m->n_in_dims, &m->n_filter_dims, &m->n_out_dims, &m->n_pads, &m->n_strides,
                    &m->n_dilations};
  for (int a = 0; a < 6; a++) {
    memcpy(d + 3 * a, src[a], 3 * sizeof *d);
    *dst[a] = d + 3 * a;
    *cnt[a] = (size_t)k->spatial;
  }
  from_cuda(C, &k->x, &o[0]);
  from_cuda(C, &k->w, &o[1]);
  from_cuda(C, &k->y, &o[2]);
  m->x = &o[0], m->w = &o[1], m->y = &o[2];
}

static kiln_status put_cuda_steps(cctx *C, Kiln__Rt__Plan *p) {
  size_t n = (size_t)C->prog.n_steps;
  Kiln__Rt__CudaStep *st = take(C, n, sizeof *st);
  Kiln__Rt__CudaStep **ptrs = take(C, n, sizeof *ptrs);
  Kiln__Rt__CudaGemm *gm = take(C, n, sizeof *gm);
  Kiln__Rt__CudaConv *cv = take(C, n, sizeof *cv);
  Kiln__Rt__Operand *ops = take(C, 4 * n, sizeof *ops);
  int64_t *dims = take(C, 18 * n, sizeof *dims);
  if (!st || !ptrs || !gm || !cv || !ops || !dims) return oom(C->g, "the CUDA step list");
  for (size_t i = 0; i < n; i++) {
    const kcg_cuda_step *k = &C->prog.steps[i];
    kiln__rt__cuda_step__init(&st[i]);
    st[i].kind = (int32_t)k->kind;
    st[i].kernel = (char *)k->kernel;
    st[i].grid = (uint64_t)k->grid;
    st[i].block = (uint32_t)k->block;
    st[i].node = (char *)C->g->nodes[k->node]->name;
    if (k->kind == KCG_CUDA_STEP_GEMM) {
      put_gemm(C, &k->gemm, &gm[i], &ops[4 * i]);
      st[i].gemm = &gm[i];
    } else if (k->kind == KCG_CUDA_STEP_CONV) {
      put_conv(C, &k->conv, &cv[i], &ops[4 * i], &dims[18 * i]);
      st[i].conv = &cv[i];
    }
    ptrs[i] = &st[i];
  }
  p->n_cuda_steps = n;
  p->cuda_steps = ptrs;
  return KILN_OK;
}

/* A transfer: its input's bytes on the input's side to its own value on its side. */
static kiln_status put_copy(cctx *C, const kir_node *n, Kiln__Rt__Unit *u, Kiln__Rt__Operand *o) {
  const kir_node *in = C->g->nodes[n->inputs[0]];
  kiln_status s = side_operand(C, n, in->id, device_of(in), &o[0]);
  if (!s) s = side_operand(C, n, n->id, device_of(n), &o[1]);
  if (s) return s;
  if (o[0].bytes != o[1].bytes || strcmp(o[0].device, o[1].device) == 0) {
    char esc[KCG_ESC_BUF];
    return kir_seterr(C->g, KILN_ERR_INTERNAL, "node '%s': transfer of %llu bytes from %s into %llu "
                      "bytes on %s", kir_escape(n->name, esc, sizeof esc),
                      (unsigned long long)o[0].bytes, o[0].device, (unsigned long long)o[1].bytes,
                      o[1].device);
  }
  u->kind = KILN__RT__UNIT__KIND__UNIT_COPY;
  u->src = &o[0];
  u->dst = &o[1];
  return KILN_OK;
}

/* Every CPU step, CUDA step and copy, in node order (a topological order). */
static kiln_status put_schedule(cctx *C, Kiln__Rt__Plan *p) {
  size_t cap = (size_t)C->g->n_nodes;
  Kiln__Rt__Unit *u = take(C, cap, sizeof *u);
  Kiln__Rt__Unit **ptrs = take(C, cap, sizeof *ptrs);
  Kiln__Rt__Operand *ops = take(C, 2 * cap, sizeof *ops);
  if (!u || !ptrs || !ops) return oom(C->g, "the schedule");
  size_t n = 0;
  int32_t cpu = 0, cuda = 0;
  for (int32_t i = 0; i < C->g->n_nodes; i++) {
    const kir_node *nd = C->g->nodes[i];
    kiln__rt__unit__init(&u[n]);
    u[n].node = (char *)nd->name;
    if (kcg_c_is_step_in(nd, &C->plan, true)) {
      u[n].kind = KILN__RT__UNIT__KIND__UNIT_CPU_STEP;
      u[n].index = cpu++;
    } else if (C->cuda_step_of[i] >= 0) {
      u[n].kind = KILN__RT__UNIT__KIND__UNIT_CUDA_STEP;
      u[n].index = C->cuda_step_of[i];
      cuda++;
    } else if (nd->op == KIR_OP_TRANSFER && C->plan.loc[i] != KPS_LOC_NONE) {
      kiln_status s = put_copy(C, nd, &u[n], &ops[2 * n]);
      if (s) return s;
    } else {
      continue;
    }
    ptrs[n] = &u[n];
    n++;
  }
  if (cpu != C->n_cpu_steps || cuda != C->prog.n_steps)
    return kir_seterr(C->g, KILN_ERR_INTERNAL, "kcg_compile_cuda: the schedule has %d CPU and %d CUDA "
                      "steps, the code %d and %d", (int)cpu, (int)cuda, (int)C->n_cpu_steps,
                      (int)C->prog.n_steps);
  p->n_schedule = n;
  p->schedule = ptrs;
  return KILN_OK;
}

/* Every arena the plan uses; cpu:0's with the room kcg_c_reserve made for conv scratch. */
static kiln_status put_arenas(cctx *C, Kiln__Rt__Plan *p) {
  const kps_memplan *pl = &C->plan;
  Kiln__Rt__DeviceArena *a = take(C, (size_t)pl->n_arenas + 1, sizeof *a);
  Kiln__Rt__DeviceArena **ptrs = take(C, (size_t)pl->n_arenas + 1, sizeof *ptrs);
  if (!a || !ptrs) return oom(C->g, "the arena list");
  size_t n = 0;
  bool cpu = false;
  for (int32_t i = 0; i < pl->n_arenas; i++) {
    bool is_cpu = strcmp(pl->arenas[i].device, k_cpu) == 0;
    kiln__rt__device_arena__init(&a[n]);
    a[n].device = (char *)pl->arenas[i].device;
    a[n].bytes = (uint64_t)(is_cpu ? pl->arena_bytes : pl->arenas[i].peak_bytes);
    cpu = cpu || is_cpu;
    ptrs[n] = &a[n];
    n++;
  }
  if (!cpu && pl->arena_bytes > 0) {
    kiln__rt__device_arena__init(&a[n]);
    a[n].device = (char *)k_cpu;
    a[n].bytes = (uint64_t)pl->arena_bytes;
    ptrs[n] = &a[n];
    n++;
  }
  p->n_arenas = n;
  p->arenas = ptrs;
  return KILN_OK;
}

static kiln_status put_io(cctx *C, Kiln__Rt__Plan *p) {
  size_t ni = (size_t)C->n_inputs, no = (size_t)C->n_outputs;
  char **devs = take(C, ni, sizeof *devs);
  Kiln__Rt__Operand *o = take(C, no, sizeof *o);
  Kiln__Rt__Operand **ptrs = take(C, no, sizeof *ptrs);
  if (!devs || !o || !ptrs) return oom(C->g, "the input and output lists");
  for (int32_t i = 0; i < C->g->n_nodes; i++)
    if (C->g->nodes[i]->op == KIR_OP_PLACEHOLDER) devs[C->io[i]] = (char *)device_of(C->g->nodes[i]);
  for (size_t j = 0; j < no; j++) {
    const kir_node *n = C->g->nodes[C->ids[j]];
    kiln_status s = side_operand(C, n, n->id, device_of(n), &o[j]);
    if (s) return s;
    ptrs[j] = &o[j];
  }
  p->n_input_devices = ni;
  p->input_devices = devs;
  p->n_output_values = no;
  p->output_values = ptrs;
  return KILN_OK;
}

/* kcg_plan_ext.extend: the CUDA target's fields of the plan. */
static kiln_status extend_plan(void *user, struct Kiln__Rt__Plan *p) {
  cctx *C = user;
  p->cuda_device = C->device;
  p->cuda_error_word = C->prog.sets_error;
  kiln_status s = put_images(C, p);
  if (!s) s = put_cuda_steps(C, p);
  if (!s) s = put_schedule(C, p);
  if (!s) s = put_arenas(C, p);
  if (!s) s = put_io(C, p);
  return s;
}

/* Per node: the name Plan.steps gives its CUDA step ("kiln_k3", "cublasLt",
 * "cublasLt+kiln_k4", "cudnn", "cudnn+kiln_k5"), NULL for the others. */
static kiln_status name_cuda_steps(cctx *C, const char ***out) {
  const char **names = take(C, (size_t)C->g->n_nodes, sizeof *names);
  char (*text)[48] = take(C, (size_t)C->prog.n_steps, sizeof *text);
  if (!names || !text) return oom(C->g, "the step names");
  for (int32_t s = 0; s < C->prog.n_steps; s++) {
    const kcg_cuda_step *st = &C->prog.steps[s];
    if (st->kind == KCG_CUDA_STEP_GEMM)
      snprintf(text[s], sizeof text[s], "cublasLt%s%s", st->kernel[0] ? "+" : "", st->kernel);
    else if (st->kind == KCG_CUDA_STEP_CONV)
      snprintf(text[s], sizeof text[s], "cudnn%s%s", st->kernel[0] ? "+" : "", st->kernel);
    else
      snprintf(text[s], sizeof text[s], "%s", st->kernel);
    names[st->node] = text[s];
  }
  *out = names;
  return KILN_OK;
}

/* ---------------------------------------------------------------- sections ------ */

/* The images back to back, each at a 64-byte boundary inside the section. */
static kiln_status pack_images(cctx *C) {
  size_t total = 0;
  for (int32_t i = 0; i < C->A->n; i++) total += (C->img[i].size + KART_ALIGN - 1) / KART_ALIGN * KART_ALIGN;
  C->code_cuda = kir_calloc(total + 1, 1);
  if (!C->code_cuda) return oom(C->g, "the CUDA code section");
  size_t off = 0;
  for (int32_t i = 0; i < C->A->n; i++) {
    if (C->img[i].size) memcpy(C->code_cuda + off, C->img[i].data, C->img[i].size);
    off += (C->img[i].size + KART_ALIGN - 1) / KART_ALIGN * KART_ALIGN;
  }
  C->code_cuda_len = total;
  return KILN_OK;
}

/* "<pipeline or C codegen record>; nvrtc 13.0: sm_80,sm_90,compute_90". */
static kiln_status record_pipeline(cctx *C) {
  char *base = NULL;
  const char *pipe = C->opt && C->opt->pipeline ? C->opt->pipeline : "";
  if (C->csrc) {
    kiln_status s = kcg_c_record_codegen(C->g, C->opt, C->csrc, &base);
    if (s) return s;
    pipe = base;
  }
  size_t len = strlen(pipe) + 64 + (size_t)C->A->n * 17;
  C->pipeline = kir_malloc(len);
  if (!C->pipeline) {
    kir_free(base);
    return oom(C->g, "the pipeline string");
  }
  int o = snprintf(C->pipeline, len, "%s%snvrtc %s:", pipe, *pipe ? "; " : "", kcg_nvrtc_version());
  for (int32_t i = 0; i < C->A->n && o > 0 && (size_t)o < len; i++)
    o += snprintf(C->pipeline + o, len - (size_t)o, "%s%s", i ? "," : " ", C->A->name[i]);
  kir_free(base);
  return KILN_OK;
}

static kiln_status write_artifact(cctx *C, const char *path) {
  const char **node_kernel = NULL;
  kiln_status s = name_cuda_steps(C, &node_kernel);
  if (!s) s = pack_images(C);
  if (!s) s = record_pipeline(C);
  if (s) return s;
  kart_section sec[2];
  memset(sec, 0, sizeof sec);
  sec[0].kind = KART_SEC_CODE_CUDA, sec[0].data = C->code_cuda, sec[0].size = C->code_cuda_len;
  sec[1].kind = KART_SEC_SOURCE_CUDA, sec[1].data = (const uint8_t *)C->prog.source;
  sec[1].size = strlen(C->prog.source);
  kcg_plan_ext x = {"cuda", C->csrc ? "kiln_step" : "", true, node_kernel, extend_plan, C, sec, 2};
  return kcg_c_write_artifact_ext(C->g, &C->plan, C->ids, C->n_outputs, C->pipeline,
                                  C->csrc && kcg_c_host_isa(C->opt), C->csrc, C->so, C->so_len, &x, path);
}

/* ---------------------------------------------------------------- driver -------- */

/* Which CUDA step computes each node; the steps come in node order, one per node. */
static kiln_status map_cuda_steps(cctx *C) {
  C->cuda_step_of = kir_malloc((size_t)(C->g->n_nodes > 0 ? C->g->n_nodes : 1) * sizeof(int32_t));
  if (!C->cuda_step_of) return oom(C->g, "the step map");
  for (int32_t i = 0; i < C->g->n_nodes; i++) C->cuda_step_of[i] = -1;
  for (int32_t s = 0; s < C->prog.n_steps; s++) {
    int32_t node = C->prog.steps[s].node;
    if (node < 0 || node >= C->g->n_nodes || C->cuda_step_of[node] >= 0 ||
        (s > 0 && node <= C->prog.steps[s - 1].node))
      return kir_seterr(C->g, KILN_ERR_INTERNAL, "kcg_compile_cuda: CUDA step %d (node %d) is out of "
                        "node order", (int)s, (int)node);
    C->cuda_step_of[node] = s;
  }
  return KILN_OK;
}

/* The CPU steps' C (kiln_step) and its shared object, when there are any. */
static kiln_status cpu_code(cctx *C) {
  static const kcg_c_entry entry = KCG_C_STEP_ENTRY;
  C->n_cpu_steps = 0;
  for (int32_t i = 0; i < C->g->n_nodes; i++)
    C->n_cpu_steps += kcg_c_is_step_in(C->g->nodes[i], &C->plan, true);
  if (C->n_cpu_steps == 0) return KILN_OK;
  kiln_status s = kcg_c_emit_program(C->g, &C->plan, C->ids, C->n_outputs, &entry, &C->csrc);
  if (!s) s = kcg_c_compile_so(C->g, C->opt, C->csrc, &C->so, &C->so_len);
  return s;
}

static kiln_status cuda_code(cctx *C) {
  kcg_nvrtc_options no = {C->opt ? C->opt->nvrtc_cache : NULL, false, C->opt ? C->opt->log : NULL};
  kiln_status s = kcg_cuda_generate(C->g, &C->plan, C->ids, C->n_outputs, &C->prog);
  if (!s) s = map_cuda_steps(C);
  if (!s) s = kcg_nvrtc_compile(C->g, C->prog.source, "model.cu", C->A->ptr, C->A->n, &no, C->img);
  return s;
}

static kiln_status lower(cctx *C, const char *path) {
  kir_graph *c = C->g;
  kiln_status s = kcg_c_freeze_random(c);
  if (!s) s = kcg_c_pretranspose_gemv(c, C->ids, C->n_outputs, true);
  if (!s) s = kir_verify(c);
  if (!s) s = kps_plan_memory(c, C->ids, C->n_outputs, &C->plan);
  if (!s) s = kcg_c_reserve(c, &C->plan);
  if (!s) {
    C->io = kir_malloc((size_t)(c->n_nodes > 0 ? c->n_nodes : 1) * sizeof *C->io);
    if (!C->io) s = oom(c, "the io table");
    else C->n_inputs = kcg_cuda_number_io(c, C->ids, C->n_outputs, C->io);
  }
  if (!s) s = cuda_code(C);
  if (!s) s = cpu_code(C);
  if (!s) s = write_artifact(C, path);
  return s;
}

static void cctx_free(cctx *C) {
  for (int32_t i = 0; i < C->n_blocks; i++) kir_free(C->blocks[i]);
  for (int32_t i = 0; i < MAX_ARCHS; i++) kcg_nvrtc_image_free(&C->img[i]);
  kcg_cuda_program_free(&C->prog);
  kps_memplan_free(&C->plan);
  kir_free(C->io);
  kir_free(C->cuda_step_of);
  kir_free(C->csrc);
  kir_free(C->pipeline);
  kir_free(C->so);
  kir_free(C->code_cuda);
}

/* Resolution and refusals on g, then the work on a clone (g is never changed). */
static kiln_status compile_checked(kir_graph *g, const int32_t *ids, int32_t n_outputs,
                                   const kcg_options *opt, const archs *A, const char *path) {
  cctx C;
  memset(&C, 0, sizeof C);
  C.opt = opt;
  C.ids = ids;
  C.n_outputs = n_outputs;
  C.A = A;
  kiln_status s = check_devices(g, C.device, sizeof C.device);
  if (s) return s;
  C.g = kir_graph_clone(g);
  if (!C.g) return kir_seterr(g, KILN_ERR_NOMEM, "kcg_compile_cuda: out of memory copying the graph");
  s = lower(&C, path);
  if (s) kir_seterr(g, s, "%s", C.g->error);
  cctx_free(&C);
  kir_graph_destroy(C.g);
  return s;
}

kiln_status kcg_compile_cuda(kir_graph *g, const char *const *outputs, int32_t n_outputs,
                             const kcg_options *opt, const char *artifact_path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!outputs || n_outputs <= 0 || !artifact_path || !*artifact_path)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_compile_cuda: no outputs or no artifact path");
  archs A;
  kiln_status s = parse_archs(g, opt, &A);
  if (s) return s;
  int32_t *ids = kir_calloc((size_t)n_outputs, sizeof *ids);
  if (!ids) return kir_seterr(g, KILN_ERR_NOMEM, "kcg_compile_cuda: out of memory");
  s = kcg_c_resolve_outputs(g, outputs, n_outputs, ids);
  if (!s) s = compile_checked(g, ids, n_outputs, opt, &A, artifact_path);
  kir_free(ids);
  if (!s) kir_clearerr(g);
  return s;
}
