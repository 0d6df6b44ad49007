/* kiln_rt_run.c — contexts (one arena each) and kiln_rt_run: check the caller's
 * buffers, call the generated entry, turn a failing step into a message; also status
 * and dtype names and the message helpers the runtime shares.
 * Depends on libc only; never on the compiler (ir/, frontend/, passes/, codegen/). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kiln_rt_internal.h"

/* ---- names ---- */

const char *kiln_rt_status_name(kiln_rt_status s) {
  switch (s) {
  case KILN_RT_OK: return "ok";
  case KILN_RT_ERR_ARGUMENT: return "argument";
  case KILN_RT_ERR_FORMAT: return "format";
  case KILN_RT_ERR_LIMIT: return "limit";
  case KILN_RT_ERR_UNSUPPORTED: return "unsupported";
  case KILN_RT_ERR_SHAPE: return "shape";
  case KILN_RT_ERR_TYPE: return "type";
  case KILN_RT_ERR_OVERFLOW: return "overflow";
  case KILN_RT_ERR_PATH: return "path";
  case KILN_RT_ERR_INTEGRITY: return "integrity";
  case KILN_RT_ERR_FEED: return "feed";
  case KILN_RT_ERR_NOMEM: return "out-of-memory";
  case KILN_RT_ERR_IO: return "io";
  case KILN_RT_ERR_EXEC: return "exec";
  case KILN_RT_ERR_VERSION: return "version";
  case KILN_RT_ERR_DEVICE: return "device";
  }
  return "unknown";
}

const char *kiln_rt_dtype_name(int dtype) {
  switch (dtype) {
  case KILN_RT_F32: return "f32";
  case KILN_RT_F64: return "f64";
  case KILN_RT_I32: return "i32";
  case KILN_RT_I64: return "i64";
  case KILN_RT_BOOL: return "bool";
  case KILN_RT_U8: return "u8";
  case KILN_RT_I8: return "i8";
  case KILN_RT_U16: return "u16";
  case KILN_RT_I16: return "i16";
  case KILN_RT_U32: return "u32";
  case KILN_RT_U64: return "u64";
  case KILN_RT_F16: return "f16";
  case KILN_RT_BF16: return "bf16";
  }
  return "invalid";
}

size_t kiln_rt_dtype_size(int dtype) {
  switch (dtype) {
  case KILN_RT_F32: return 4;
  case KILN_RT_F64: return 8;
  case KILN_RT_I32: return 4;
  case KILN_RT_I64: return 8;
  case KILN_RT_BOOL: return 1;
  case KILN_RT_U8: case KILN_RT_I8: return 1;
  case KILN_RT_U16: case KILN_RT_I16: case KILN_RT_F16: case KILN_RT_BF16: return 2;
  case KILN_RT_U32: return 4;
  case KILN_RT_U64: return 8;
  }
  return 0;
}

/* ---- shared helpers ---- */

void rt_vfmt(char *buf, size_t len, const char *fmt, va_list ap) {
  if (!buf || len == 0) return;
  vsnprintf(buf, len, fmt, ap);
}

void rt_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(buf, len, fmt, ap);
  va_end(ap);
}

const char *rt_escape(const char *s, char out[RT_ESC_BYTES]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (!s) s = "";
  for (size_t i = 0; s[i]; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (i == 64) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (ch == '\\' || ch == '\'' || ch == '"') {
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch >= 0x7f) {
      out[o++] = '\\', out[o++] = 'x', out[o++] = hex[ch >> 4], out[o++] = hex[ch & 15];
    } else {
      out[o++] = (char)ch;
    }
  }
  out[o] = '\0';
  return out;
}

void rt_shape_str(int dtype, int rank, const int64_t *dims, char *out, size_t len) {
  size_t o = (size_t)snprintf(out, len, "%s[", kiln_rt_dtype_name(dtype));
  for (int i = 0; i < rank && o < len; i++)
    o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, i ? "," : "", dims[i]);
  if (o < len) snprintf(out + o, len - o, "]");
}

kiln_rt_status rt_nbytes(int dtype, int rank, const int64_t *dims, size_t *out) {
  uint64_t n = kiln_rt_dtype_size(dtype);
  *out = 0;
  for (int i = 0; i < rank; i++)
    if (dims[i] < 0) return KILN_RT_ERR_FORMAT;
  for (int i = 0; i < rank; i++) {
    if (dims[i] == 0) return KILN_RT_OK;
  }
  for (int i = 0; i < rank; i++) {
    if ((uint64_t)dims[i] > UINT64_MAX / n) return KILN_RT_ERR_OVERFLOW;
    n *= (uint64_t)dims[i];
  }
  if (n > SIZE_MAX) return KILN_RT_ERR_OVERFLOW;
  *out = (size_t)n;
  return KILN_RT_OK;
}

/* ---- contexts ---- */

/* Why this thread's last kiln_rt_context_create failed: there is no handle to keep it
 * on, so kiln_rt_context_error(NULL) reads it (as dlerror does). */
static _Thread_local char create_err[RT_ERR_BYTES];

static kiln_rt_status create_fail(kiln_rt_context *c, kiln_rt_status st, const char *why) {
  rt_fmt(create_err, sizeof create_err, "no context: %s", c && c->err[0] ? c->err : why);
  kiln_rt_context_destroy(c);
  return st;
}

kiln_rt_status kiln_rt_context_create(kiln_rt_model *m, kiln_rt_context **out) {
  if (!out) return create_fail(NULL, KILN_RT_ERR_ARGUMENT, "kiln_rt_context_create: NULL out");
  *out = NULL;
  if (!m || m->status != KILN_RT_OK || !(m->entry || m->cuda))
    return create_fail(NULL, KILN_RT_ERR_ARGUMENT, "the model is NULL or failed to open");
  kiln_rt_context *c = kiln_rt__calloc(1, sizeof *c);
  if (!c) return create_fail(NULL, KILN_RT_ERR_NOMEM, "out of memory");
  c->model = m;
  c->arena = kiln_rt__malloc_aligned(m->arena_bytes);
  c->in_ptrs = kiln_rt__calloc((size_t)m->n_inputs + 1, sizeof *c->in_ptrs);
  c->out_ptrs = kiln_rt__calloc((size_t)m->n_outputs + 1, sizeof *c->out_ptrs);
  if (!c->arena || !c->in_ptrs || !c->out_ptrs) return create_fail(c, KILN_RT_ERR_NOMEM, "out of memory for the arena");
  kiln_rt_status st = m->cuda ? rt_cuda_context_create(c) : KILN_RT_OK;
  if (st) return create_fail(c, st, "the device side could not be made");
  create_err[0] = '\0'; /* the message is about this thread's last create */
  *out = c;
  return KILN_RT_OK;
}

void kiln_rt_context_destroy(kiln_rt_context *c) {
  if (!c) return;
  rt_cuda_context_destroy(c);
  kiln_rt__free(c->arena);
  kiln_rt__free(c->in_ptrs);
  kiln_rt__free(c->out_ptrs);
  kiln_rt__free(c);
}

const char *kiln_rt_context_error(const kiln_rt_context *c) {
  if (c) return c->err;
  return create_err[0] ? create_err : "no context (kiln_rt_context_create did not make one)";
}

/* ---- run ---- */

kiln_rt_status rt_ctx_fail(kiln_rt_context *c, kiln_rt_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  return st;
}

#define run_fail rt_ctx_fail

/* The run's hot path: the checks are three compares; the message (escaping, shape text)
 * is built only when one fails, since small models run in well under a microsecond. */
static kiln_rt_status buffer_fail(kiln_rt_context *c, const char *what, const rt_tensor *t,
                                  const kiln_rt_buffer *b, size_t align) {
  char esc[RT_ESC_BYTES], shape[256];
  rt_escape(t->name, esc);
  rt_shape_str(t->dtype, t->rank, t->dims, shape, sizeof shape);
  if (!b->data) return run_fail(c, KILN_RT_ERR_FEED, "%s '%s' (%s): data is NULL", what, esc, shape);
  if (b->nbytes != t->nbytes)
    return run_fail(c, KILN_RT_ERR_FEED, "%s '%s': expected %zu bytes (%s), got %zu", what, esc,
                    t->nbytes, shape, b->nbytes);
  return run_fail(c, KILN_RT_ERR_FEED, "%s '%s' (%s): data %p is not aligned to %zu bytes",
                  what, esc, shape, b->data, align);
}

static kiln_rt_status check_buffer(kiln_rt_context *c, const char *what, const rt_tensor *t,
                                   const kiln_rt_buffer *b) {
  size_t align = kiln_rt_dtype_size(t->dtype);
  if (!b->data && t->default_offset >= 0) return KILN_RT_OK; /* the input's default */
  if (!b->data || b->nbytes != t->nbytes || (uintptr_t)b->data % align != 0)
    return buffer_fail(c, what, t, b, align);
  return KILN_RT_OK;
}

static int overlaps(const kiln_rt_buffer *a, const kiln_rt_buffer *b) {
  uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
  return a->nbytes && b->nbytes && a0 < b0 + b->nbytes && b0 < a0 + a->nbytes;
}

/* Outputs must not alias inputs or each other: the code reads inputs after it has
 * started writing outputs. Host and device pointers share one address space (CUDA's
 * unified addressing): ranges that overlap are the same memory (managed or mapped
 * pinned memory is both), whichever side the caller says they are on. */
static kiln_rt_status check_aliasing(kiln_rt_context *c, const kiln_rt_buffer *in, int ni,
                                     const kiln_rt_buffer *out, int no) {
  const kiln_rt_model *m = c->model;
  char e1[RT_ESC_BYTES], e2[RT_ESC_BYTES];
  for (int o = 0; o < no; o++) {
    for (int i = 0; i < ni; i++)
      if (in[i].data && overlaps(&out[o], &in[i]))
        return run_fail(c, KILN_RT_ERR_FEED, "output '%s' overlaps input '%s'",
                        rt_escape(m->outputs[o].name, e1), rt_escape(m->inputs[i].name, e2));
    for (int j = 0; j < o; j++)
      if (overlaps(&out[o], &out[j]))
        return run_fail(c, KILN_RT_ERR_FEED, "output '%s' overlaps output '%s'",
                        rt_escape(m->outputs[o].name, e1), rt_escape(m->outputs[j].name, e2));
  }
  return KILN_RT_OK;
}

kiln_rt_status rt_check_run_args(kiln_rt_context *c, const kiln_rt_buffer *in, int ni,
                                 const kiln_rt_buffer *out, int no, const unsigned char *in_mem,
                                 const unsigned char *out_mem) {
  const kiln_rt_model *m = c->model;
  if (ni != m->n_inputs)
    return run_fail(c, KILN_RT_ERR_ARGUMENT, "expected %d inputs, got %d", m->n_inputs, ni);
  if (no != m->n_outputs)
    return run_fail(c, KILN_RT_ERR_ARGUMENT, "expected %d outputs, got %d", m->n_outputs, no);
  if ((ni > 0 && !in) || (no > 0 && !out))
    return run_fail(c, KILN_RT_ERR_ARGUMENT, "NULL %s array", !in && ni > 0 ? "inputs" : "outputs");
  for (int i = 0; i < ni; i++) {
    kiln_rt_status st = check_buffer(c, "input", &m->inputs[i], &in[i]);
    if (st) return st;
  }
  for (int i = 0; i < no; i++) {
    kiln_rt_status st = check_buffer(c, "output", &m->outputs[i], &out[i]);
    if (st) return st;
  }
  for (int i = 0; in_mem && i < ni; i++)
    if (in_mem[i] > KILN_RT_MEMORY_DEVICE)
      return run_fail(c, KILN_RT_ERR_ARGUMENT, "input_memory[%d] is %d, not KILN_RT_MEMORY_HOST or "
                      "_DEVICE", i, in_mem[i]);
  for (int i = 0; out_mem && i < no; i++)
    if (out_mem[i] > KILN_RT_MEMORY_DEVICE)
      return run_fail(c, KILN_RT_ERR_ARGUMENT, "output_memory[%d] is %d, not KILN_RT_MEMORY_HOST or "
                      "_DEVICE", i, out_mem[i]);
  return check_aliasing(c, in, ni, out, no);
}

/* "a/div, b" — the step's graph nodes, escaped, into out. */
static void step_nodes(const Kiln__Rt__Step *s, char *out, size_t len) {
  size_t o = 0;
  out[0] = '\0';
  for (size_t i = 0; i < s->n_nodes && o + 1 < len; i++) {
    char esc[RT_ESC_BYTES];
    if (i == 8) {
      snprintf(out + o, len - o, ", ... (%zu in all)", s->n_nodes);
      return;
    }
    o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", rt_escape(s->nodes[i], esc));
  }
}

static kiln_rt_status step_failed(kiln_rt_context *c, int r) {
  const Kiln__Rt__Plan *p = c->model->plan;
  if (r < 1 || (size_t)r > p->n_steps)
    return run_fail(c, KILN_RT_ERR_EXEC,
                    "the code failed with %d, which names no step (the plan has %zu)", r,
                    p->n_steps);
  const Kiln__Rt__Step *s = p->steps[r - 1];
  char kernel[RT_ESC_BYTES], nodes[700];
  step_nodes(s, nodes, sizeof nodes);
  /* The ops whose kernels can fail: integer div (by zero) and gather (an index out of
   * range, checked before it is used). */
  const char *why = strcmp(s->op, "gather") == 0 ? "an index is out of range"
                                                 : "integer division by zero";
  return run_fail(c, KILN_RT_ERR_EXEC, "step %d (%s, nodes: %s) failed: %s", r - 1,
                  rt_escape(s->kernel, kernel), nodes, why);
}

kiln_rt_status kiln_rt_run(kiln_rt_context *c, const kiln_rt_buffer *inputs, int n_inputs,
                           const kiln_rt_buffer *outputs, int n_outputs) {
  if (!c) return KILN_RT_ERR_ARGUMENT;
  c->err[0] = '\0';
  if (c->cuda) return rt_cuda_run(c, inputs, n_inputs, outputs, n_outputs, NULL);
  kiln_rt_status st = rt_check_run_args(c, inputs, n_inputs, outputs, n_outputs, NULL, NULL);
  if (st) return st;
  const kiln_rt_model *m = c->model;
  for (int i = 0; i < n_inputs; i++)
    c->in_ptrs[i] = inputs[i].data ? inputs[i].data : m->weights + m->inputs[i].default_offset;
  for (int i = 0; i < n_outputs; i++) c->out_ptrs[i] = outputs[i].data;
  int r = m->entry(c->in_ptrs, c->out_ptrs, c->arena, m->weights);
  return r == 0 ? KILN_RT_OK : step_failed(c, r);
}

static int any_device(const unsigned char *mem, int n) {
  for (int i = 0; mem && i < n; i++)
    if (mem[i] != KILN_RT_MEMORY_HOST) return 1;
  return 0;
}

kiln_rt_status kiln_rt_run_ex(kiln_rt_context *c, const kiln_rt_buffer *inputs, int n_inputs,
                              const kiln_rt_buffer *outputs, int n_outputs,
                              const kiln_rt_run_options *opt) {
  if (!c) return KILN_RT_ERR_ARGUMENT;
  c->err[0] = '\0';
  if (c->cuda) return rt_cuda_run(c, inputs, n_inputs, outputs, n_outputs, opt);
  if (opt && (any_device(opt->input_memory, n_inputs) || any_device(opt->output_memory, n_outputs)))
    return run_fail(c, KILN_RT_ERR_ARGUMENT, "the model runs on cpu:0 and takes no device buffers");
  return kiln_rt_run(c, inputs, n_inputs, outputs, n_outputs);
}
