/* kiln_rt_model.c — kiln_rt_model_open: read the artifact, check the container and every
 * hash, unpack the plan under a byte budget, validate the plan completely, and only
 * then load the code (memfd + dlopen), first choosing OpenBLAS's core type from cpuid when
 * the user has not (see choose_blas_core). Accessors for inputs and outputs.
 * Depends on libc, libdl, protobuf-c; never on the compiler (ir/, frontend/, passes/,
 * codegen/). */
#define _GNU_SOURCE /* memfd_create */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h> /* qsort */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kiln_rt_internal.h"

kiln_rt_status rt_model_fail(kiln_rt_model *m, kiln_rt_status st, const char *fmt, ...) {
  char msg[RT_ERR_BYTES];
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(msg, sizeof msg, fmt, ap);
  va_end(ap);
  rt_fmt(m->err, sizeof m->err, "%s: %s", m->label ? m->label : "<artifact>", msg);
  m->status = st;
  return st;
}
#define model_fail rt_model_fail

/* ---- plan unpacking under a budget ---- */

static kiln_rt_status unpack_plan(kiln_rt_model *m, const kart_section *s) {
  size_t size = (size_t)s->size;
  size_t limit = size > (SIZE_MAX - ((size_t)1 << 20)) / 8 ? SIZE_MAX
                                                            : 8 * size + ((size_t)1 << 20);
  kiln_rt__pb_allocator(&m->budget, limit, &m->alloc);
  m->plan = kiln__rt__plan__unpack(&m->alloc, size, s->data);
  if (m->plan) return KILN_RT_OK;
  if (m->budget.failed) return model_fail(m, KILN_RT_ERR_NOMEM, "out of memory unpacking the plan");
  if (m->budget.refused)
    return model_fail(m, KILN_RT_ERR_LIMIT, "plan needs more than %zu bytes to unpack",
                      m->budget.limit);
  return model_fail(m, KILN_RT_ERR_FORMAT, "plan section is not a valid kiln.rt.Plan message");
}

/* ---- plan validation ---- */

static kiln_rt_status check_spec(kiln_rt_model *m, const char *what,
                                 const Kiln__Rt__TensorSpec *t, size_t *nbytes) {
  char esc[RT_ESC_BYTES];
  if (!t) return model_fail(m, KILN_RT_ERR_FORMAT, "%s has no tensor spec", what);
  rt_escape(t->name, esc);
  if (t->dtype < KILN_RT_F32 || t->dtype >= KILN_RT_DTYPE_COUNT)
    return model_fail(m, KILN_RT_ERR_FORMAT, "%s '%s': dtype %d is not valid (1..13)", what, esc,
                      (int)t->dtype);
  if (t->n_dims > KILN_RT_MAX_RANK)
    return model_fail(m, KILN_RT_ERR_LIMIT, "%s '%s': rank %zu is over the limit of %d", what,
                      esc, t->n_dims, KILN_RT_MAX_RANK);
  for (size_t i = 0; i < t->n_dims; i++)
    if (t->dims[i] < 0)
      return model_fail(m, KILN_RT_ERR_FORMAT, "%s '%s': dim %zu is %lld", what, esc, i,
                        (long long)t->dims[i]);
  if (rt_nbytes(t->dtype, (int)t->n_dims, t->dims, nbytes) != KILN_RT_OK)
    return model_fail(m, KILN_RT_ERR_OVERFLOW, "%s '%s': byte size overflows", what, esc);
  return KILN_RT_OK;
}

static int same_spec(const Kiln__Rt__TensorSpec *a, const Kiln__Rt__TensorSpec *b) {
  if (a->dtype != b->dtype || a->n_dims != b->n_dims) return 0;
  for (size_t i = 0; i < a->n_dims; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static kiln_rt_status check_range(kiln_rt_model *m, const char *what, const Kiln__Rt__Buffer *b,
                                  uint64_t limit, const char *region) {
  size_t align = kiln_rt_dtype_size(b->tensor->dtype);
  if (b->size > limit || b->offset > limit - b->size)
    return model_fail(m, KILN_RT_ERR_FORMAT, "%s: offset %llu + size %llu is past the %s (%llu bytes)",
                      what, (unsigned long long)b->offset, (unsigned long long)b->size, region,
                      (unsigned long long)limit);
  if (b->offset % align != 0)
    return model_fail(m, KILN_RT_ERR_FORMAT, "%s: offset %llu in the %s is not aligned to %zu",
                      what, (unsigned long long)b->offset, region, align);
  return KILN_RT_OK;
}

/* The arena a buffer's offset is in: cpu:0's, or (target "cuda") its device's. */
static uint64_t buffer_arena(kiln_rt_model *m, const Kiln__Rt__Plan *p, const Kiln__Rt__Buffer *b) {
  (void)m;
  if (!b->device[0] || strcmp(b->device, "cpu:0") == 0 || strcmp(p->target, "cuda") != 0)
    return p->arena_bytes;
  for (size_t i = 0; i < p->n_arenas; i++)
    if (strcmp(p->arenas[i]->device, b->device) == 0) return p->arenas[i]->bytes;
  return 0;
}

static kiln_rt_status check_buffer(kiln_rt_model *m, const Kiln__Rt__Plan *p, size_t i) {
  const Kiln__Rt__Buffer *b = p->buffers[i];
  char what[64];
  size_t nbytes = 0;
  snprintf(what, sizeof what, "buffer %zu", i);
  kiln_rt_status st = check_spec(m, what, b->tensor, &nbytes);
  if (st) return st;
  if (b->size != nbytes)
    return model_fail(m, KILN_RT_ERR_FORMAT, "%s: size %llu, but its tensor needs %zu bytes",
                      what, (unsigned long long)b->size, nbytes);
  switch (b->loc) {
  case KILN__RT__LOCATION__LOC_INPUT:
    if (b->index < 0 || (size_t)b->index >= p->n_inputs)
      return model_fail(m, KILN_RT_ERR_FORMAT, "%s: input index %d out of range (%zu inputs)",
                        what, (int)b->index, p->n_inputs);
    if (!same_spec(b->tensor, p->inputs[b->index]))
      return model_fail(m, KILN_RT_ERR_FORMAT, "%s: dtype/dims differ from input %d", what,
                        (int)b->index);
    return KILN_RT_OK;
  case KILN__RT__LOCATION__LOC_WEIGHTS:
    return check_range(m, what, b, m->weights_bytes, "weights section");
  case KILN__RT__LOCATION__LOC_ARENA:
    return check_range(m, what, b, buffer_arena(m, p, b), "arena");
  case KILN__RT__LOCATION__LOC_NONE:
  case _KILN__RT__LOCATION_IS_INT_SIZE:
    break;
  }
  return model_fail(m, KILN_RT_ERR_FORMAT, "%s: location %d is not valid", what, (int)b->loc);
}

/* Code built for the build machine's instruction set (-march=native) must not run on a
 * CPU without it: the first unknown instruction would kill the process. */
static kiln_rt_status check_cpu_features(kiln_rt_model *m, const Kiln__Rt__Plan *p) {
  char esc[RT_ESC_BYTES];
  if (p->n_cpu_features > KART_MAX_CPU_FEATURES)
    return model_fail(m, KILN_RT_ERR_LIMIT, "the plan lists %zu CPU features (at most %d)",
                      p->n_cpu_features, KART_MAX_CPU_FEATURES);
  for (size_t i = 0; i < p->n_cpu_features; i++) {
    int has = kart_cpu_has(p->cpu_features[i]);
    if (has < 0)
      return model_fail(m, KILN_RT_ERR_UNSUPPORTED, "the code needs CPU feature '%s', which "
                        "this runtime cannot check", rt_escape(p->cpu_features[i], esc));
    if (has == 0)
      return model_fail(m, KILN_RT_ERR_UNSUPPORTED, "the code was compiled for a CPU with '%s', "
                        "which this CPU lacks (compile with `kiln compile --cpu generic`)",
                        rt_escape(p->cpu_features[i], esc));
  }
  return KILN_RT_OK;
}

static kiln_rt_status check_header_fields(kiln_rt_model *m, const Kiln__Rt__Plan *p,
                                          const kart_section *w) {
  char esc[RT_ESC_BYTES];
  if (p->abi != KART_ABI)
    return model_fail(m, KILN_RT_ERR_VERSION, "plan ABI %u is not this runtime's (%d)",
                      (unsigned)p->abi, KART_ABI);
  int cuda = strcmp(p->target, "cuda") == 0;
  if (strcmp(p->target, "cpu") != 0 && !cuda)
    return model_fail(m, KILN_RT_ERR_UNSUPPORTED,
                      "artifact target '%s' needs an executor this runtime does not have "
                      "(it runs 'cpu' and 'cuda' artifacts)",
                      rt_escape(p->target, esc));
  if (!cuda && strcmp(p->entry, "kiln_entry") != 0)
    return model_fail(m, KILN_RT_ERR_FORMAT, "plan entry '%s' is not 'kiln_entry'",
                      rt_escape(p->entry, esc));
  if (cuda && p->entry[0] && strcmp(p->entry, "kiln_step") != 0)
    return model_fail(m, KILN_RT_ERR_FORMAT, "plan entry '%s' is not 'kiln_step' or '' (target cuda)",
                      rt_escape(p->entry, esc));
  kiln_rt_status st = check_cpu_features(m, p);
  if (st) return st;
  if (p->arena_bytes > RT_MAX_ARENA)
    return model_fail(m, KILN_RT_ERR_LIMIT, "arena_bytes %llu is over the limit of %llu",
                      (unsigned long long)p->arena_bytes, (unsigned long long)RT_MAX_ARENA);
  if (p->weights_bytes != w->size)
    return model_fail(m, KILN_RT_ERR_FORMAT,
                      "plan weights_bytes %llu differs from the weights section (%llu bytes)",
                      (unsigned long long)p->weights_bytes, (unsigned long long)w->size);
  return KILN_RT_OK;
}

static kiln_rt_status check_specs(kiln_rt_model *m, const Kiln__Rt__Plan *p) {
  char what[64];
  size_t nb = 0;
  for (size_t i = 0; i < p->n_inputs; i++) {
    snprintf(what, sizeof what, "input %zu", i);
    kiln_rt_status st = check_spec(m, what, p->inputs[i], &nb);
    if (st) return st;
  }
  for (size_t i = 0; i < p->n_outputs; i++) {
    snprintf(what, sizeof what, "output %zu", i);
    kiln_rt_status st = check_spec(m, what, p->outputs[i], &nb);
    if (st) return st;
  }
  return KILN_RT_OK;
}

static kiln_rt_status check_outputs(kiln_rt_model *m, const Kiln__Rt__Plan *p) {
  if (p->n_output_buffers != p->n_outputs)
    return model_fail(m, KILN_RT_ERR_FORMAT, "plan has %zu outputs but %zu output_buffers",
                      p->n_outputs, p->n_output_buffers);
  for (size_t i = 0; i < p->n_outputs; i++) {
    int32_t b = p->output_buffers[i];
    char esc[RT_ESC_BYTES];
    rt_escape(p->outputs[i]->name, esc);
    if (b < 0 || (size_t)b >= p->n_buffers)
      return model_fail(m, KILN_RT_ERR_FORMAT, "output %zu '%s': buffer index %d out of range (%zu buffers)",
                        i, esc, (int)b, p->n_buffers);
    if (!same_spec(p->buffers[b]->tensor, p->outputs[i]))
      return model_fail(m, KILN_RT_ERR_FORMAT, "output %zu '%s': buffer %d has another dtype or shape",
                        i, esc, (int)b);
  }
  return KILN_RT_OK;
}

static kiln_rt_status check_steps(kiln_rt_model *m, const Kiln__Rt__Plan *p) {
  for (size_t i = 0; i < p->n_steps; i++) {
    const Kiln__Rt__Step *s = p->steps[i];
    for (size_t j = 0; j < s->n_inputs; j++)
      if (s->inputs[j] < 0 || (size_t)s->inputs[j] >= p->n_buffers)
        return model_fail(m, KILN_RT_ERR_FORMAT, "step %zu: input buffer %d out of range (%zu buffers)",
                          i, (int)s->inputs[j], p->n_buffers);
    if (s->output < -1 || (s->output >= 0 && (size_t)s->output >= p->n_buffers))
      return model_fail(m, KILN_RT_ERR_FORMAT, "step %zu: output buffer %d out of range (%zu buffers)",
                        i, (int)s->output, p->n_buffers);
  }
  return KILN_RT_OK;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const rt_tensor *const *)a)->name, (*(const rt_tensor *const *)b)->name);
}

/* Names must be unique among inputs and among outputs, or find-by-name is ambiguous. */
static kiln_rt_status check_unique(kiln_rt_model *m, rt_tensor *t, int n, const char *what) {
  if (n < 2) return KILN_RT_OK;
  rt_tensor **sorted = kiln_rt__malloc((size_t)n * sizeof *sorted);
  if (!sorted) return model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) sorted[i] = &t[i];
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
  kiln_rt_status st = KILN_RT_OK;
  for (int i = 1; i < n && !st; i++)
    if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
      char esc[RT_ESC_BYTES];
      st = model_fail(m, KILN_RT_ERR_FORMAT, "two %s are named '%s'", what,
                      rt_escape(sorted[i]->name, esc));
    }
  kiln_rt__free(sorted);
  return st;
}

static kiln_rt_status make_tensors(kiln_rt_model *m, Kiln__Rt__TensorSpec **specs, size_t n,
                                   rt_tensor **out) {
  *out = kiln_rt__calloc(n + 1, sizeof **out);
  if (!*out) return model_fail(m, KILN_RT_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    rt_tensor *t = &(*out)[i];
    t->name = specs[i]->name;
    t->dtype = specs[i]->dtype;
    t->rank = (int)specs[i]->n_dims;
    t->dims = specs[i]->dims;
    rt_nbytes(t->dtype, t->rank, t->dims, &t->nbytes); /* checked in check_spec */
    t->default_offset = -1;
  }
  return KILN_RT_OK;
}

/* input_defaults: empty, or one per input, each -1 or an aligned range inside the
 * weights section holding the input's bytes. */
static kiln_rt_status check_defaults(kiln_rt_model *m, const Kiln__Rt__Plan *p) {
  if (p->n_input_defaults == 0) return KILN_RT_OK;
  if (p->n_input_defaults != p->n_inputs)
    return model_fail(m, KILN_RT_ERR_FORMAT, "plan has %zu input_defaults for %zu inputs",
                      p->n_input_defaults, p->n_inputs);
  for (size_t i = 0; i < p->n_inputs; i++) {
    int64_t off = p->input_defaults[i];
    rt_tensor *t = &m->inputs[i];
    size_t align = kiln_rt_dtype_size(t->dtype);
    char esc[RT_ESC_BYTES];
    if (off == -1) continue;
    if (off < 0 || (uint64_t)off > m->weights_bytes || t->nbytes > m->weights_bytes - (size_t)off ||
        (align && (size_t)off % align != 0))
      return model_fail(m, KILN_RT_ERR_FORMAT, "input %zu '%s': default at weights offset %lld "
                        "(%zu bytes) is not an aligned range of the %zu-byte weights section", i,
                        rt_escape(t->name, esc), (long long)off, t->nbytes, m->weights_bytes);
    t->default_offset = off;
  }
  return KILN_RT_OK;
}

static kiln_rt_status validate_plan(kiln_rt_model *m, const kart_section *w,
                                    const kart_section *cuda_code) {
  const Kiln__Rt__Plan *p = m->plan;
  m->weights_bytes = (size_t)w->size;
  kiln_rt_status st = check_header_fields(m, p, w);
  if (!st) st = check_specs(m, p);
  if (!st && (p->n_inputs > INT32_MAX || p->n_outputs > INT32_MAX))
    st = model_fail(m, KILN_RT_ERR_LIMIT, "too many inputs or outputs");
  for (size_t i = 0; !st && i < p->n_buffers; i++) st = check_buffer(m, p, i);
  /* target "cuda" says where outputs are in output_values; output_buffers are for show */
  if (!st && (strcmp(p->target, "cuda") != 0 || p->n_output_buffers)) st = check_outputs(m, p);
  if (!st) st = check_steps(m, p);
  if (!st) st = make_tensors(m, p->inputs, p->n_inputs, &m->inputs);
  if (!st) st = make_tensors(m, p->outputs, p->n_outputs, &m->outputs);
  if (!st) st = check_defaults(m, p);
  if (st) return st;
  m->n_inputs = (int)p->n_inputs;
  m->n_outputs = (int)p->n_outputs;
  m->arena_bytes = (size_t)p->arena_bytes;
  st = check_unique(m, m->inputs, m->n_inputs, "inputs");
  if (!st) st = check_unique(m, m->outputs, m->n_outputs, "outputs");
  if (!st && strcmp(p->target, "cuda") == 0) st = rt_cuda_check_plan(m, cuda_code);
  return st;
}

/* ---- code and weights ---- */

static kiln_rt_status copy_weights(kiln_rt_model *m, const kart_section *w) {
  size_t n = (size_t)w->size;
  void *p = kiln_rt__malloc_aligned(n);
  if (!p)
    return model_fail(m, KILN_RT_ERR_NOMEM, "out of memory for %zu bytes of weights", n);
  if (n) memcpy(p, w->data, n);
  m->weights = p;
  return KILN_RT_OK;
}

static int write_fd(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* ---- OpenBLAS core type ----
 * The code links libopenblas, which picks its kernels once, when it is loaded, from
 * OPENBLAS_CORETYPE or its own cpuid tables. Debian's 0.3.21 falls back to generic
 * "Prescott" kernels on processors it does not know (AVX-512 AMD parts among them),
 * about 4x slower. So before the first dlopen, when the user has not set
 * OPENBLAS_CORETYPE and OpenBLAS is not yet in the process, kiln sets it from cpuid:
 * AVX-512 F/DQ/BW/VL -> SkylakeX, AVX2+FMA -> Haswell, else nothing. A value the user
 * set is never changed; an OpenBLAS already loaded (by the application) has chosen and
 * is reported as it is. Decided once per process under a lock; setenv is not safe
 * against other threads calling getenv at that moment, which is why this happens at
 * model open, before any kiln code runs. */

static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int blas_decided;      /* the choice below was made (under blas_lock) */
static int blas_reported;     /* blas_note is final (written once, under blas_lock) */
static const char *blas_how;  /* who chose, set with blas_decided */
static char blas_choice[32];  /* the value kiln or the user set; "" = none */
static char blas_note[128];   /* what kiln_rt_model_blas_core returns */

#define OPENBLAS_SONAME "libopenblas.so.0"

/* The core type for this processor, or NULL when OpenBLAS's own choice must stand. */
static const char *cpuid_core(const char **features) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    *features = "avx512f+dq+bw+vl";
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    *features = "avx2+fma";
    return "Haswell";
  }
#endif
  *features = NULL;
  return NULL;
}

static void choose_blas_core(void) {
  pthread_mutex_lock(&blas_lock);
  if (!blas_decided) {
    const char *user = getenv("OPENBLAS_CORETYPE"), *features = NULL;
    void *already = dlopen(OPENBLAS_SONAME, RTLD_LAZY | RTLD_NOLOAD);
    if (user && *user) {
      blas_how = "OPENBLAS_CORETYPE set by the user";
      rt_fmt(blas_choice, sizeof blas_choice, "%s", user);
    } else if (already) {
      blas_how = "OpenBLAS was already loaded; kiln chose nothing";
    } else {
      const char *core = cpuid_core(&features);
      if (core && setenv("OPENBLAS_CORETYPE", core, 0) == 0) {
        static char how[64];
        rt_fmt(how, sizeof how, "chosen by kiln from cpuid: %s", features);
        blas_how = how;
        rt_fmt(blas_choice, sizeof blas_choice, "%s", core);
      } else {
        blas_how = core ? "setenv failed; OpenBLAS chose" : "no AVX2+FMA; OpenBLAS chose";
      }
    }
    if (already) dlclose(already);
    blas_decided = 1;
  }
  pthread_mutex_unlock(&blas_lock);
}

/* Generated code runs big loops on OpenMP and GEMMs on OpenBLAS's own threads. libgomp's
 * default wait policy spins its idle workers for a while after every parallel loop, so
 * on a machine with as many cores as threads they take the cores the next GEMM's
 * threads need (ResNet-18 at 2 threads: 53-61 ms spinning, 33-40 ms passive). Before
 * libgomp is first loaded — it reads its settings then — ask for the passive policy,
 * unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT (never overridden) or libgomp
 * is already in the process. */
static void choose_openmp_wait(void) {
  static int decided;
  pthread_mutex_lock(&blas_lock);
  if (!decided) {
    void *already = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!already && !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT"))
      (void)setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    if (already) dlclose(already);
    decided = 1;
  }
  pthread_mutex_unlock(&blas_lock);
}

/* After the code loaded: what OpenBLAS says it runs (when the code pulled it in). */
static void report_blas_core(void) {
  pthread_mutex_lock(&blas_lock);
  if (!blas_reported) {
    const char *name = NULL;
    void *h = dlopen(OPENBLAS_SONAME, RTLD_LAZY | RTLD_NOLOAD);
    void *fn = h ? dlsym(h, "openblas_get_corename") : NULL;
    if (fn) {
      char *(*get)(void);
      memcpy(&get, &fn, sizeof fn);
      name = get();
    }
    if (!name || !*name) name = blas_choice[0] ? blas_choice : "OpenBLAS default";
    rt_fmt(blas_note, sizeof blas_note, "%s (%s)", name, blas_how ? blas_how : "unknown");
    if (h) dlclose(h);
    blas_reported = 1;
  }
  pthread_mutex_unlock(&blas_lock);
}

/* Code with parallel loops pulls in libgomp, whose worker threads outlive the loops
 * and have no way to be stopped: unloading libgomp with the model's dlclose would pull
 * the code from under them (SIGSEGV). Once loaded it stays (RTLD_NODELETE). */
static void keep_openmp_loaded(void) {
  void *h = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  if (h) dlclose(h);
}

/* symbol: "kiln_entry" (target cpu, into m->entry) or "kiln_step" (target cuda, m->step). */
static kiln_rt_status load_code(kiln_rt_model *m, const kart_section *code, const char *symbol) {
  m->memfd = memfd_create("kiln-code", MFD_CLOEXEC);
  if (m->memfd < 0) return model_fail(m, KILN_RT_ERR_IO, "memfd_create failed");
  if (write_fd(m->memfd, code->data, (size_t)code->size) != 0)
    return model_fail(m, KILN_RT_ERR_IO, "cannot write the code to a memfd");
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", m->memfd);
  choose_blas_core();
  choose_openmp_wait();
  dlerror();
  m->dl = dlopen(proc, RTLD_NOW | RTLD_LOCAL);
  if (!m->dl) {
    const char *e = dlerror();
    return model_fail(m, KILN_RT_ERR_FORMAT, "code section does not load: %s",
                      e ? e : "dlopen failed");
  }
  const unsigned *abi = dlsym(m->dl, "kiln_abi_version");
  if (!abi) return model_fail(m, KILN_RT_ERR_VERSION, "code section has no kiln_abi_version");
  if (*abi != KART_ABI)
    return model_fail(m, KILN_RT_ERR_VERSION, "code ABI %u is not this runtime's (%d)", *abi,
                      KART_ABI);
  void *entry = dlsym(m->dl, symbol);
  if (!entry) return model_fail(m, KILN_RT_ERR_FORMAT, "code section has no %s", symbol);
  /* POSIX dlsym returns an object pointer; converting it is how functions are found. */
  if (strcmp(symbol, "kiln_step") == 0) memcpy(&m->step, &entry, sizeof entry);
  else memcpy(&m->entry, &entry, sizeof entry);
  keep_openmp_loaded();
  report_blas_core();
  return KILN_RT_OK;
}

static const kart_section *need(kiln_rt_model *m, const kart_section *s, int n, uint32_t kind,
                                const char *name) {
  const kart_section *f = kart_find(s, n, kind);
  if (!f) model_fail(m, KILN_RT_ERR_FORMAT, "artifact has no %s section", name);
  return f;
}

static kiln_rt_status load(kiln_rt_model *m, const uint8_t *bytes, size_t n) {
  kart_section s[KART_MAX_SECTIONS];
  int ns = 0;
  char msg[RT_ERR_BYTES];
  int st = kart_parse(bytes, n, s, &ns, msg, sizeof msg);
  if (st) return model_fail(m, (kiln_rt_status)st, "%s", msg);
  const kart_section *plan = need(m, s, ns, KART_SEC_PLAN, "plan");
  const kart_section *w = plan ? need(m, s, ns, KART_SEC_WEIGHTS, "weights") : NULL;
  if (!w) return m->status;
  st = unpack_plan(m, plan);
  if (st) return (kiln_rt_status)st;
  const Kiln__Rt__Plan *p = m->plan;
  int cuda = strcmp(p->target, "cuda") == 0;
  /* target "cuda" without CPU steps has no code section (entry "") */
  const kart_section *code = !cuda || p->entry[0] ? need(m, s, ns, KART_SEC_CODE_CPU, "code") : NULL;
  if (!code && (!cuda || p->entry[0])) return m->status;
  const kart_section *cuda_code = kart_find(s, ns, KART_SEC_CODE_CUDA);
  st = validate_plan(m, w, cuda_code);
  if (!st) st = copy_weights(m, w);
  if (!st && code) st = load_code(m, code, cuda ? "kiln_step" : "kiln_entry");
  if (!st && cuda) st = rt_cuda_model_open(m, cuda_code);
  return (kiln_rt_status)st;
}

/* NULL only when the handle itself cannot be allocated; a failed copy of the label
 * leaves a handle that says so. */
static kiln_rt_model *model_new(const char *label) {
  kiln_rt_model *m = kiln_rt__calloc(1, sizeof *m);
  if (!m) return NULL;
  m->memfd = -1;
  m->label = kiln_rt__strdup(label);
  if (!m->label) {
    m->status = KILN_RT_ERR_NOMEM;
    rt_fmt(m->err, sizeof m->err, "%s: out of memory", label);
  }
  return m;
}

kiln_rt_status kiln_rt_model_open(const char *path, kiln_rt_model **out) {
  if (!out) return KILN_RT_ERR_ARGUMENT;
  *out = model_new(path ? path : "<null>");
  kiln_rt_model *m = *out;
  if (!m || m->status) return KILN_RT_ERR_NOMEM;
  if (!path) return model_fail(m, KILN_RT_ERR_ARGUMENT, "NULL path");
  uint8_t *bytes = NULL;
  size_t n = 0;
  char msg[RT_ERR_BYTES];
  kiln_rt_status st = rt_read_file(path, RT_MAX_FILE, &bytes, &n, msg, sizeof msg);
  if (st) return model_fail(m, st, "%s", msg);
  st = load(m, bytes, n);
  kiln_rt__free(bytes);
  return st;
}

kiln_rt_status kiln_rt_model_open_bytes(const void *bytes, size_t n, kiln_rt_model **out) {
  if (!out) return KILN_RT_ERR_ARGUMENT;
  *out = model_new("<memory>");
  kiln_rt_model *m = *out;
  if (!m || m->status) return KILN_RT_ERR_NOMEM;
  if (!bytes && n) return model_fail(m, KILN_RT_ERR_ARGUMENT, "NULL bytes");
  /* Our own copy: the hashes are checked on the bytes that are then used. */
  uint8_t *copy = kiln_rt__malloc(n);
  if (!copy) return model_fail(m, KILN_RT_ERR_NOMEM, "out of memory copying %zu bytes", n);
  if (n) memcpy(copy, bytes, n);
  kiln_rt_status st = load(m, copy, n);
  kiln_rt__free(copy);
  return st;
}

void kiln_rt_model_close(kiln_rt_model *m) {
  if (!m) return;
  rt_cuda_model_close(m);
  if (m->dl) dlclose(m->dl);
  if (m->memfd >= 0) close(m->memfd);
  if (m->plan) kiln__rt__plan__free_unpacked(m->plan, &m->alloc);
  kiln_rt__free(m->inputs);
  kiln_rt__free(m->outputs);
  kiln_rt__free(m->weights);
  kiln_rt__free(m->label);
  kiln_rt__free(m);
}

const char *kiln_rt_model_error(const kiln_rt_model *m) { return m ? m->err : "out of memory"; }

/* ---- accessors: a failed model has no inputs or outputs ---- */

static int ready(const kiln_rt_model *m) {
  return m && m->status == KILN_RT_OK && (m->entry || m->cuda);
}

int kiln_rt_model_num_inputs(const kiln_rt_model *m) { return ready(m) ? m->n_inputs : 0; }
int kiln_rt_model_num_outputs(const kiln_rt_model *m) { return ready(m) ? m->n_outputs : 0; }

static kiln_rt_status info_of(const rt_tensor *t, int n, int i, kiln_rt_tensor_info *info) {
  if (!info || i < 0 || i >= n) return KILN_RT_ERR_ARGUMENT;
  *info = (kiln_rt_tensor_info){t[i].name, t[i].dtype, t[i].rank, t[i].dims, t[i].nbytes};
  return KILN_RT_OK;
}

kiln_rt_status kiln_rt_model_input(const kiln_rt_model *m, int i, kiln_rt_tensor_info *info) {
  return ready(m) ? info_of(m->inputs, m->n_inputs, i, info) : KILN_RT_ERR_ARGUMENT;
}

kiln_rt_status kiln_rt_model_output(const kiln_rt_model *m, int i, kiln_rt_tensor_info *info) {
  return ready(m) ? info_of(m->outputs, m->n_outputs, i, info) : KILN_RT_ERR_ARGUMENT;
}

int kiln_rt_model_input_has_default(const kiln_rt_model *m, int i) {
  return ready(m) && i >= 0 && i < m->n_inputs && m->inputs[i].default_offset >= 0;
}

static int find(const rt_tensor *t, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (strcmp(t[i].name, name) == 0) return i;
  return -1;
}

int kiln_rt_model_find_input(const kiln_rt_model *m, const char *name) {
  return ready(m) ? find(m->inputs, m->n_inputs, name) : -1;
}

int kiln_rt_model_find_output(const kiln_rt_model *m, const char *name) {
  return ready(m) ? find(m->outputs, m->n_outputs, name) : -1;
}

size_t kiln_rt_model_arena_bytes(const kiln_rt_model *m) { return ready(m) ? m->arena_bytes : 0; }

const char *kiln_rt_model_target(const kiln_rt_model *m) {
  return ready(m) && m->plan ? m->plan->target : "";
}

const char *kiln_rt_model_blas_core(const kiln_rt_model *m) {
  if (!ready(m)) return "";
  pthread_mutex_lock(&blas_lock);
  const char *note = blas_note; /* final once any model is ready */
  pthread_mutex_unlock(&blas_lock);
  return note;
}
