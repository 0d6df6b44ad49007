/* kiln_cmd_bench.c — `kiln bench`: times an artifact (or a MODEL, .kiln or ONNX, compiled
 * first with the default pipeline) through libkiln_rt: warm-up, per-iteration samples over rotating
 * input sets, median/p10/p90, throughput, GFLOP/s from the plan's compile-time FLOP count,
 * arena peak; --cold adds deployment figures (open + first run in fresh processes, the
 * stripped size of libkiln_rt). Uses only the runtime's public API to run the model.
 * Internal: `kiln bench ARTIFACT --cold-child` is the child process of --cold. */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/kiln_artifact.h"
#include "kiln_artifact.pb-c.h"
#include "kiln_tool.h"

#define CMD "bench"
#define COLD_RUNS 11        /* fresh processes measured (after one discarded) */
#define MAX_AUTO_SETS 64    /* automatic --inputs never goes above this */
#define AUTO_SETS_BYTES (512ll << 20) /* nor above this many bytes of inputs in all */

extern char **environ;

typedef struct bench_args {
  const char *path;
  ktool_binding inputs[KTOOL_MAX_ARGS];
  int n_inputs;
  long long iterations, warmup, sets, threads; /* sets, threads: 0 = automatic / not given */
  bool json, cold, cold_child;
  ktool_import imp;
} bench_args;

/* What the plan says beyond the runtime's API. */
typedef struct plan_facts {
  uint64_t flops, weights_bytes, intermediates_bytes;
} plan_facts;

typedef struct stats {
  double median, p10, p90, min, mean; /* nanoseconds */
} stats;

typedef struct cold_figures {
  int runs;
  double open_ns, first_run_ns, total_ns, total_p10, total_p90;
} cold_figures;

typedef struct lib_size {
  char path[4096];
  long long unstripped, stripped; /* stripped -1: strip was not available */
} lib_size;

/* ---- arguments ------------------------------------------------------------------ */

static bool parse_count(const char *opt, const char *v, long long lo, long long hi,
                        long long *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) {
    ktool_usage(CMD, "%s wants a whole number from %lld to %lld, not '%s'", opt, lo, hi, v);
    return false;
  }
  *out = x;
  return true;
}

static int parse_value(const char *o, const char *v, bench_args *a) {
  if (!strcmp(o, "--target")) {
    if (strcmp(v, "cpu")) return ktool_usage(CMD, "target '%s' is not supported (cpu)", v);
  } else if (!strcmp(o, "--format")) {
    if (strcmp(v, "text") && strcmp(v, "json"))
      return ktool_usage(CMD, "--format must be text or json, not '%s'", v);
    a->json = !strcmp(v, "json");
  } else if (!strcmp(o, "--input")) {
    if (a->n_inputs == KTOOL_MAX_ARGS) return ktool_usage(CMD, "more than %d --input", KTOOL_MAX_ARGS);
    if (!ktool_parse_binding(CMD, v, &a->inputs[a->n_inputs++])) return KTOOL_USAGE;
  } else if (!strcmp(o, "--iterations")) {
    if (!parse_count(o, v, 1, 1000000000, &a->iterations)) return KTOOL_USAGE;
  } else if (!strcmp(o, "--warmup")) {
    if (!parse_count(o, v, 0, 1000000000, &a->warmup)) return KTOOL_USAGE;
  } else if (!strcmp(o, "--inputs")) {
    if (!parse_count(o, v, 1, 4096, &a->sets)) return KTOOL_USAGE;
  } else if (!parse_count(o, v, 1, 1024, &a->threads)) { /* --threads */
    return KTOOL_USAGE;
  }
  return KTOOL_OK;
}

static int parse_args(int argc, char **argv, bench_args *a) {
  a->iterations = 200;
  a->warmup = 20;
  for (int i = 0; i < argc; i++) {
    int irc = ktool_take_import_option(CMD, &i, argc, argv, &a->imp);
    if (irc >= 0) {
      if (irc != KTOOL_OK) return irc;
      continue;
    }
    const char *o = argv[i], *v = NULL;
    bool takes = !strcmp(o, "--target") || !strcmp(o, "--iterations") || !strcmp(o, "--warmup") ||
                 !strcmp(o, "--inputs") || !strcmp(o, "--threads") || !strcmp(o, "--format") ||
                 !strcmp(o, "--input");
    if (takes && !(v = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
    if (takes) {
      int rc = parse_value(o, v, a);
      if (rc != KTOOL_OK) return rc;
    } else if (!strcmp(o, "--cold")) a->cold = true;
    else if (!strcmp(o, "--cold-child")) a->cold_child = true;
    else if (o[0] == '-') return ktool_usage(CMD, "unknown option '%s'", o);
    else if (a->path) return ktool_usage(CMD, "one model at a time ('%s' and '%s')", a->path, o);
    else a->path = o;
  }
  if (!a->path) return ktool_usage(CMD, "which model?");
  return KTOOL_OK;
}

/* ---- the plan's facts ----------------------------------------------------------- */

static int read_plan_facts(const char *path, plan_facts *pf) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f || fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
    if (f) fclose(f);
    return ktool_error("%s: cannot read the artifact: %s", path, strerror(errno));
  }
  uint8_t *bytes = malloc((size_t)st.st_size);
  size_t n = bytes ? fread(bytes, 1, (size_t)st.st_size, f) : 0;
  fclose(f);
  kart_section secs[KART_MAX_SECTIONS];
  int n_secs = 0;
  char err[512] = "could not read the file";
  if (n != (size_t)st.st_size || kart_parse(bytes, n, secs, &n_secs, err, sizeof err) != 0) {
    free(bytes);
    return ktool_error("%s: %s", path, err);
  }
  const kart_section *ps = kart_find(secs, n_secs, KART_SEC_PLAN);
  Kiln__Rt__Plan *p = ps ? kiln__rt__plan__unpack(NULL, ps->size, ps->data) : NULL;
  if (p) {
    pf->flops = p->flops;
    pf->weights_bytes = p->weights_bytes;
    for (size_t i = 0; i < p->n_buffers; i++)
      if (p->buffers[i]->loc == KILN__RT__LOCATION__LOC_ARENA) pf->intermediates_bytes += p->buffers[i]->size;
    kiln__rt__plan__free_unpacked(p, NULL);
  }
  free(bytes);
  return p ? KTOOL_OK : ktool_error("%s: the plan section is missing or not a valid plan", path);
}

/* ---- inputs and outputs --------------------------------------------------------- */

/* Every tensor of one benchmark: K input sets (file inputs shared by all sets), one
 * set of outputs, and the runtime's buffer descriptors for each set. */
typedef struct io {
  int ni, no, k;
  kir_tensor **owned; /* every tensor allocated here, n_owned of them */
  int n_owned;
  kiln_rt_buffer *in;  /* k * ni */
  kiln_rt_buffer out[KTOOL_MAX_ARGS];
  long long random_bytes_per_set;
  int batch; /* leading dim shared by every input of rank >= 2; 0 = undefined */
} io;

static void io_free(io *x) {
  for (int i = 0; i < x->n_owned; i++) kir_tensor_free(x->owned[i]);
  free(x->owned);
  free(x->in);
  memset(x, 0, sizeof *x);
}

static kir_type rt_type(const kiln_rt_tensor_info *info) {
  kir_type t = {.dtype = (kiln_dtype)info->dtype, .rank = info->rank};
  for (int d = 0; d < info->rank; d++) t.dims[d] = info->dims[d];
  return t;
}

static kir_tensor *io_new(io *x, const kir_type *t) {
  kir_tensor *r = kir_tensor_new(t);
  if (r) x->owned[x->n_owned++] = r;
  else ktool_error("out of memory for a %lld-byte tensor", (long long)kir_type_nbytes(t));
  return r;
}

static const ktool_binding *given_input(const bench_args *a, const char *name) {
  for (int i = 0; i < a->n_inputs; i++)
    if (!strcmp(a->inputs[i].name, name)) return &a->inputs[i];
  return NULL;
}

/* Reads --input NAME=FILE for model input `info`; refuses a wrong dtype or shape. */
static kir_tensor *io_file(io *x, const ktool_binding *b, const kiln_rt_tensor_info *info) {
  kir_type want = rt_type(info);
  kir_tensor *t = ktool_read_tensor(b->path);
  if (!t) return NULL;
  if (!kir_type_equal(&t->type, &want)) {
    char tw[160], tg[160], esc[96];
    kir_type_format(&want, tw, sizeof tw);
    kir_type_format(&t->type, tg, sizeof tg);
    ktool_error("input '%s': the model expects %s, %s holds %s",
                kir_escape(info->name, esc, sizeof esc), tw, b->path, tg);
    kir_tensor_free(t);
    return NULL;
  }
  x->owned[x->n_owned++] = t;
  return t;
}

static long long l2_bytes(void) {
  long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return v > 0 ? v : 1 << 20; /* unknown: assume 1 MiB */
}

/* Number of input sets: --inputs, else enough random sets to exceed twice the L2. */
static int choose_sets(const bench_args *a, long long per_set) {
  if (per_set == 0) return 1;
  if (a->sets) return (int)a->sets;
  long long k = (2 * l2_bytes()) / per_set + 1;
  if (k > MAX_AUTO_SETS) k = MAX_AUTO_SETS;
  if (k * per_set > AUTO_SETS_BYTES) k = AUTO_SETS_BYTES / per_set;
  return k < 1 ? 1 : (int)k;
}

static int batch_of(const kiln_rt_model *m, int ni) {
  int batch = 0;
  kiln_rt_tensor_info info;
  for (int i = 0; i < ni; i++) {
    kiln_rt_model_input(m, i, &info);
    if (info.rank < 2 || (batch && info.dims[0] != batch) || info.dims[0] <= 0 || info.dims[0] > 1 << 30)
      return 0;
    batch = (int)info.dims[0];
  }
  return batch;
}

static int io_prepare(const bench_args *a, const kiln_rt_model *m, io *x) {
  char esc[96];
  x->ni = kiln_rt_model_num_inputs(m), x->no = kiln_rt_model_num_outputs(m);
  if (x->ni > KTOOL_MAX_ARGS || x->no > KTOOL_MAX_ARGS)
    return ktool_error("%s: more than %d inputs or outputs", a->path, KTOOL_MAX_ARGS);
  for (int i = 0; i < a->n_inputs; i++)
    if (kiln_rt_model_find_input(m, a->inputs[i].name) < 0)
      return ktool_error("--input '%s': the model has no input of that name",
                         kir_escape(a->inputs[i].name, esc, sizeof esc));
  kiln_rt_tensor_info info;
  for (int i = 0; i < x->ni; i++) {
    kiln_rt_model_input(m, i, &info);
    if (!given_input(a, info.name)) x->random_bytes_per_set += (long long)info.nbytes;
  }
  x->k = choose_sets(a, x->random_bytes_per_set);
  x->batch = batch_of(m, x->ni);
  x->owned = calloc((size_t)(x->k * x->ni + x->no + 1), sizeof *x->owned);
  x->in = calloc((size_t)(x->k * x->ni + 1), sizeof *x->in);
  if (!x->owned || !x->in) return ktool_error("out of memory");
  for (int i = 0; i < x->ni; i++) {
    kiln_rt_model_input(m, i, &info);
    kir_type t = rt_type(&info);
    const ktool_binding *b = given_input(a, info.name);
    kir_tensor *shared = b ? io_file(x, b, &info) : NULL;
    if (b && !shared) return KTOOL_ERR;
    for (int s = 0; s < x->k; s++) {
      kir_tensor *v = shared ? shared : io_new(x, &t);
      if (!v) return KTOOL_ERR;
      if (!shared) ktool_fill_random(v, 1000003ull * (uint64_t)s + (uint64_t)i);
      x->in[s * x->ni + i] = (kiln_rt_buffer){v->data, info.nbytes};
    }
  }
  for (int i = 0; i < x->no; i++) {
    kiln_rt_model_output(m, i, &info);
    kir_type t = rt_type(&info);
    kir_tensor *v = io_new(x, &t);
    if (!v) return KTOOL_ERR;
    x->out[i] = (kiln_rt_buffer){v->data, info.nbytes};
  }
  return KTOOL_OK;
}

/* ---- timing --------------------------------------------------------------------- */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *p, const void *q) {
  int64_t a = *(const int64_t *)p, b = *(const int64_t *)q;
  return (a > b) - (a < b);
}

/* Nearest rank on sorted samples. */
static double pct(const int64_t *s, long long n, double p) {
  return (double)s[(long long)(p * (double)(n - 1) + 0.5)];
}

static stats summarize(int64_t *s, long long n) {
  double sum = 0;
  for (long long i = 0; i < n; i++) sum += (double)s[i];
  qsort(s, (size_t)n, sizeof *s, cmp_i64);
  return (stats){pct(s, n, 0.5), pct(s, n, 0.1), pct(s, n, 0.9), (double)s[0], sum / (double)n};
}

static int run_fail(kiln_rt_context *c, kiln_rt_status s) {
  return ktool_error("%s (%s)", kiln_rt_context_error(c), kiln_rt_status_name(s));
}

/* Warm-up, then one sample per iteration; nothing is allocated inside the loop. */
static int time_runs(const bench_args *a, kiln_rt_context *c, const io *x, int64_t *samples) {
  for (long long i = 0; i < a->warmup; i++) {
    kiln_rt_status s = kiln_rt_run(c, x->in + (i % x->k) * x->ni, x->ni, x->out, x->no);
    if (s != KILN_RT_OK) return run_fail(c, s);
  }
  for (long long i = 0; i < a->iterations; i++) {
    const kiln_rt_buffer *in = x->in + (i % x->k) * x->ni;
    int64_t t0 = now_ns();
    kiln_rt_status s = kiln_rt_run(c, in, x->ni, x->out, x->no);
    int64_t t1 = now_ns();
    if (s != KILN_RT_OK) return run_fail(c, s);
    samples[i] = t1 - t0;
  }
  return KTOOL_OK;
}

/* ---- --cold: fresh processes ---------------------------------------------------- */

/* The child: open, context and first run, timed; prints "OPEN_NS RUN_NS". Input
 * buffers are made between the two timed parts (random, outside the timing). */
static int cold_child(const char *path) {
  kiln_rt_model *m = NULL;
  int64_t t0 = now_ns();
  kiln_rt_status s = kiln_rt_model_open(path, &m);
  int64_t t1 = now_ns();
  if (s != KILN_RT_OK) {
    int rc = ktool_error("%s", kiln_rt_model_error(m));
    kiln_rt_model_close(m);
    return rc;
  }
  bench_args none = {.path = path, .sets = 1};
  io x = {0};
  int rc = io_prepare(&none, m, &x);
  kiln_rt_context *c = NULL;
  int64_t t2 = now_ns();
  if (rc == KTOOL_OK && (s = kiln_rt_context_create(m, &c)) == KILN_RT_OK)
    s = kiln_rt_run(c, x.in, x.ni, x.out, x.no);
  int64_t t3 = now_ns();
  if (rc == KTOOL_OK && s != KILN_RT_OK)
    rc = ktool_error("%s (%s)", c ? kiln_rt_context_error(c) : kiln_rt_model_error(m),
                     kiln_rt_status_name(s));
  if (rc == KTOOL_OK) printf("%lld %lld\n", (long long)(t1 - t0), (long long)(t3 - t2));
  kiln_rt_context_destroy(c);
  io_free(&x);
  kiln_rt_model_close(m);
  return rc;
}

/* Runs `kiln bench PATH --cold-child` (this very binary, found through /proc/self/exe)
 * and reads its two numbers. */
static bool cold_once(const char *path, long long *open_ns, long long *run_ns) {
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return false;
  self[len] = '\0';
  char *argv[] = {"kiln", "bench", (char *)path, "--cold-child", NULL};
  int fd[2];
  if (pipe(fd) != 0) return false;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execv(self, argv);
    _exit(127);
  }
  close(fd[1]);
  char buf[128] = "";
  size_t n = 0;
  ssize_t r;
  while (pid > 0 && n + 1 < sizeof buf && (r = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
  buf[n] = '\0';
  close(fd[0]);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
         sscanf(buf, "%lld %lld", open_ns, run_ns) == 2;
}

static int measure_cold(const char *path, cold_figures *cf) {
  int64_t open_s[COLD_RUNS], run_s[COLD_RUNS], total_s[COLD_RUNS];
  long long o, r;
  if (!cold_once(path, &o, &r)) /* discarded: warms the page cache */
    return ktool_error("--cold: the child process `kiln bench %s --cold-child` failed", path);
  for (int i = 0; i < COLD_RUNS; i++) {
    if (!cold_once(path, &o, &r))
      return ktool_error("--cold: the child process `kiln bench %s --cold-child` failed", path);
    open_s[i] = o, run_s[i] = r, total_s[i] = o + r;
  }
  stats so = summarize(open_s, COLD_RUNS), sr = summarize(run_s, COLD_RUNS),
        st = summarize(total_s, COLD_RUNS);
  *cf = (cold_figures){COLD_RUNS, so.median, sr.median, st.median, st.p10, st.p90};
  return KTOOL_OK;
}

/* Size of the libkiln_rt this process runs (found with dladdr), and of a copy stripped
 * with `strip --strip-unneeded` in a temp directory (stripped -1 when strip fails). */
static int measure_library(lib_size *ls) {
  Dl_info di;
  struct stat st;
  if (!dladdr((void *)kiln_rt_model_open, &di) || !di.dli_fname || stat(di.dli_fname, &st) != 0)
    return ktool_error("--cold: cannot locate libkiln_rt (dladdr)");
  snprintf(ls->path, sizeof ls->path, "%s", di.dli_fname);
  ls->unstripped = (long long)st.st_size;
  ls->stripped = -1;
  char dir[] = "/tmp/kiln-bench-XXXXXX", out[sizeof dir + 32];
  if (!mkdtemp(dir)) return KTOOL_OK;
  snprintf(out, sizeof out, "%s/libkiln_rt.so", dir);
  char *argv[] = {"strip", "--strip-unneeded", "-o", out, ls->path, NULL};
  pid_t pid;
  int status = 0;
  if (posix_spawnp(&pid, "strip", NULL, NULL, argv, environ) == 0 &&
      waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
      stat(out, &st) == 0)
    ls->stripped = (long long)st.st_size;
  unlink(out);
  rmdir(dir);
  return KTOOL_OK;
}

/* ---- the report ----------------------------------------------------------------- */

typedef struct report {
  const bench_args *a;
  const char *model_kind; /* "artifact" or "model compiled with the default pipeline" */
  const io *x;
  stats st;
  plan_facts pf;
  size_t arena;
  const char *threads_env; /* OPENBLAS_NUM_THREADS as the run saw it, or NULL */
  char blas[160];          /* kiln_rt_model_blas_core: the kernels OpenBLAS runs */
  char device[200];        /* kiln_rt_model_device: "cpu:0", "cuda:0 (NVIDIA H200, sm_90, cubin)" */
  char target[16];         /* kiln_rt_model_target */
  bool have_cold;
  cold_figures cold;
  lib_size lib;
} report;

static double runs_per_s(const report *r) { return 1e9 / r->st.mean; }

static void print_text(const report *r) {
  const bench_args *a = r->a;
  char esc[256];
  printf("model       %s (%s)\n", kir_escape(a->path, esc, sizeof esc), r->model_kind);
  printf("threads     %s%s%s\n", r->threads_env ? "OPENBLAS_NUM_THREADS=" : "OpenBLAS default",
         r->threads_env ? r->threads_env : "",
         a->threads ? " (set by --threads before the model was opened)"
                    : r->threads_env ? " (from the environment)" : "");
  printf("device      %s (target %s; host buffers)\n", r->device, r->target);
  printf("blas        %s\n", r->blas[0] ? r->blas : "(not loaded)");
  printf("iterations  %lld timed after %lld warm-up, %d input set%s of %lld random bytes "
         "(L2 %lld bytes)%s\n", a->iterations, a->warmup, r->x->k, r->x->k == 1 ? "" : "s",
         r->x->random_bytes_per_set, l2_bytes(), a->n_inputs ? ", --input files shared" : "");
  printf("latency     median %.2f us, p10 %.2f us, p90 %.2f us (min %.2f, mean %.2f)\n",
         r->st.median / 1e3, r->st.p10 / 1e3, r->st.p90 / 1e3, r->st.min / 1e3, r->st.mean / 1e3);
  printf("throughput  %.1f runs/s", runs_per_s(r));
  if (r->x->batch) printf(", %.1f samples/s (batch %d)", runs_per_s(r) * r->x->batch, r->x->batch);
  printf("\n");
  if (r->pf.flops)
    printf("compute     %llu FLOP per run, %.2f GFLOP/s at the median\n",
           (unsigned long long)r->pf.flops, (double)r->pf.flops / r->st.median);
  else printf("compute     FLOPs not recorded in this artifact\n");
  printf("memory      arena peak %zu bytes (intermediates %llu bytes in all), weights %llu bytes\n",
         r->arena, (unsigned long long)r->pf.intermediates_bytes,
         (unsigned long long)r->pf.weights_bytes);
  if (!r->have_cold) return;
  printf("cold        open %.3f ms + context and first run %.3f ms = %.3f ms (median of %d fresh "
         "processes; p10 %.3f, p90 %.3f ms)\n", r->cold.open_ns / 1e6, r->cold.first_run_ns / 1e6,
         r->cold.total_ns / 1e6, r->cold.runs, r->cold.total_p10 / 1e6, r->cold.total_p90 / 1e6);
  if (r->lib.stripped >= 0)
    printf("library     %s: %lld bytes stripped (--strip-unneeded), %lld unstripped\n",
           r->lib.path, r->lib.stripped, r->lib.unstripped);
  else
    printf("library     %s: %lld bytes unstripped (strip unavailable)\n", r->lib.path, r->lib.unstripped);
}

static void print_json(const report *r) {
  const bench_args *a = r->a;
  printf("{\"model\": ");
  ktool_json_string(a->path);
  printf(", \"kind\": ");
  ktool_json_string(r->model_kind);
  printf(", \"target\": ");
  ktool_json_string(r->target);
  printf(", \"device\": ");
  ktool_json_string(r->device);
  printf(", \"threads\": ");
  if (r->threads_env) ktool_json_string(r->threads_env);
  else printf("null");
  printf(", \"blas_core\": ");
  ktool_json_string(r->blas);
  printf(", \"iterations\": %lld, \"warmup\": %lld, \"input_sets\": %d, \"input_bytes_per_set\": %lld,"
         " \"l2_bytes\": %lld,\n \"latency_ns\": {\"median\": %.0f, \"p10\": %.0f, \"p90\": %.0f, "
         "\"min\": %.0f, \"mean\": %.1f},\n \"runs_per_s\": %.3f, \"batch\": ",
         a->iterations, a->warmup, r->x->k, r->x->random_bytes_per_set, l2_bytes(), r->st.median,
         r->st.p10, r->st.p90, r->st.min, r->st.mean, runs_per_s(r));
  if (r->x->batch) printf("%d, \"samples_per_s\": %.3f", r->x->batch, runs_per_s(r) * r->x->batch);
  else printf("null, \"samples_per_s\": null");
  if (r->pf.flops) printf(", \"flops\": %llu, \"gflops_per_s\": %.4f", (unsigned long long)r->pf.flops,
                          (double)r->pf.flops / r->st.median);
  else printf(", \"flops\": null, \"gflops_per_s\": null");
  printf(",\n \"arena_peak_bytes\": %zu, \"intermediates_bytes\": %llu, \"weights_bytes\": %llu",
         r->arena, (unsigned long long)r->pf.intermediates_bytes, (unsigned long long)r->pf.weights_bytes);
  if (r->have_cold) {
    printf(",\n \"cold\": {\"runs\": %d, \"open_ns\": %.0f, \"first_run_ns\": %.0f, \"total_ns\": %.0f, "
           "\"total_p10_ns\": %.0f, \"total_p90_ns\": %.0f},\n \"library\": {\"path\": ",
           r->cold.runs, r->cold.open_ns, r->cold.first_run_ns, r->cold.total_ns, r->cold.total_p10,
           r->cold.total_p90);
    ktool_json_string(r->lib.path);
    printf(", \"unstripped_bytes\": %lld, \"stripped_bytes\": ", r->lib.unstripped);
    if (r->lib.stripped >= 0) printf("%lld}", r->lib.stripped);
    else printf("null}");
  }
  printf("}\n");
}

/* ---- the command ---------------------------------------------------------------- */

static int bench_open(const char *path, kiln_rt_model **m) {
  if (kiln_rt_model_open(path, m) == KILN_RT_OK) return KTOOL_OK;
  int rc = ktool_error("%s", kiln_rt_model_error(*m));
  kiln_rt_model_close(*m);
  *m = NULL;
  return rc;
}

/* Times the artifact at `path`; report.model_kind is set by the caller. */
static int bench_artifact(const bench_args *a, const char *path, report *r) {
  int rc = read_plan_facts(path, &r->pf);
  if (rc != KTOOL_OK) return rc;
  if (a->threads) { /* before OpenBLAS is loaded with the artifact's code */
    char v[24];
    snprintf(v, sizeof v, "%lld", a->threads);
    setenv("OPENBLAS_NUM_THREADS", v, 1);
    setenv("OMP_NUM_THREADS", v, 1);
  }
  r->threads_env = getenv("OPENBLAS_NUM_THREADS");
  kiln_rt_model *m = NULL;
  if ((rc = bench_open(path, &m)) != KTOOL_OK) return rc;
  io x = {0};
  kiln_rt_context *c = NULL;
  int64_t *samples = malloc(sizeof *samples * (size_t)a->iterations);
  rc = samples ? io_prepare(a, m, &x) : ktool_error("out of memory for %lld samples", a->iterations);
  kiln_rt_status s = KILN_RT_OK;
  if (rc == KTOOL_OK && (s = kiln_rt_context_create(m, &c)) != KILN_RT_OK)
    rc = ktool_error("%s (%s)", kiln_rt_model_error(m), kiln_rt_status_name(s));
  if (rc == KTOOL_OK) rc = time_runs(a, c, &x, samples);
  if (rc == KTOOL_OK) {
    r->st = summarize(samples, a->iterations);
    r->arena = kiln_rt_model_arena_bytes(m);
    snprintf(r->blas, sizeof r->blas, "%s", kiln_rt_model_blas_core(m));
    snprintf(r->device, sizeof r->device, "%s", kiln_rt_model_device(m));
    snprintf(r->target, sizeof r->target, "%s", kiln_rt_model_target(m));
    r->x = &x;
  }
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m); /* before --cold, so no OpenBLAS thread of ours competes */
  free(samples);
  if (rc == KTOOL_OK && a->cold && (rc = measure_cold(path, &r->cold)) == KTOOL_OK)
    rc = measure_library(&r->lib), r->have_cold = rc == KTOOL_OK;
  if (rc == KTOOL_OK) (a->json ? print_json : print_text)(r);
  r->x = NULL;
  io_free(&x);
  return rc;
}

/* Compiles a MODEL (default pipeline, default outputs) into a temp artifact, benches it,
 * removes it. */
static int bench_model(const bench_args *a, report *r) {
  kir_graph *g = ktool_load_model(a->path, &a->imp);
  if (!g) return KTOOL_ERR;
  ktool_roots roots;
  if (!ktool_roots_init(&roots, g, NULL, 0)) {
    kir_graph_destroy(g);
    return KTOOL_ERR;
  }
  const char *const *names = (const char *const *)roots.names;
  char dir[] = "/tmp/kiln-bench-XXXXXX", path[sizeof dir + 16];
  int rc = roots.n ? KTOOL_OK : ktool_error("%s: the graph has no output to bench", a->path);
  if (rc == KTOOL_OK) rc = ktool_optimize(g, NULL, names, roots.n, false, false, NULL);
  bool made = rc == KTOOL_OK && mkdtemp(dir);
  if (rc == KTOOL_OK && !made) rc = ktool_error("cannot make a temp directory: %s", strerror(errno));
  snprintf(path, sizeof path, "%s/model.kart", dir);
  kcg_options opt = {.pipeline = KPS_DEFAULT_PIPELINE};
  if (rc == KTOOL_OK && kcg_compile_cpu(g, names, roots.n, &opt, path) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  kir_graph_destroy(g);
  r->model_kind = "model compiled with the default pipeline";
  if (rc == KTOOL_OK) rc = bench_artifact(a, path, r);
  if (made) {
    unlink(path);
    rmdir(dir);
  }
  ktool_roots_free(&roots);
  return rc;
}

int ktool_cmd_bench(int argc, char **argv) {
  bench_args a = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc != KTOOL_OK) return rc;
  if (a.cold_child) return cold_child(a.path);
  report r = {.a = &a, .model_kind = "artifact"};
  if (!ktool_is_artifact(a.path)) return bench_model(&a, &r);
  if ((rc = ktool_no_import_options(a.path, &a.imp, "an artifact")) != KTOOL_OK) return rc;
  return bench_artifact(&a, a.path, &r);
}
