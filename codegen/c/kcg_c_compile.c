/* kcg_c_compile.c — kcg_compile_cpu: resolve outputs, freeze random sources into
 * constants, plan memory, generate C, compile it with the system C compiler (spawned
 * without a shell, in a private temp dir removed on every path) and write the artifact.
 * Works on a clone, so the caller's graph only ever receives an error message. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kcg_c_internal.h"

extern char **environ;

#define ERR_LINES 10
/* Without opt_flags: -O3 (the flat loops vectorize at any level from -O2 on with
 * GCC 12, and -O3 adds unrolling and versioning for the broadcast loops). */
#define DEFAULT_OPT_FLAGS "-O3"

/* ---------------------------------------------------------------- temp dir ------ */

typedef struct workdir {
  char dir[PATH_MAX];
  char c_path[PATH_MAX + 16], so_path[PATH_MAX + 16], log_path[PATH_MAX + 16];
  bool made;
} workdir;

static kiln_status workdir_make(kir_graph *g, workdir *w) {
  const char *t = getenv("TMPDIR");
  if (!t || !*t) t = "/tmp";
  int n = snprintf(w->dir, sizeof w->dir, "%s/kiln-cc-XXXXXX", t);
  if (n < 0 || (size_t)n + 16 >= sizeof w->dir)
    return kir_seterr(g, KILN_ERR_PATH, "temp directory path under $TMPDIR is too long");
  if (!mkdtemp(w->dir))
    return kir_seterr(g, KILN_ERR_IO, "cannot create a temp directory under '%s': %s", t, strerror(errno));
  w->made = true;
  snprintf(w->c_path, sizeof w->c_path, "%s/model.c", w->dir);
  snprintf(w->so_path, sizeof w->so_path, "%s/model.so", w->dir);
  snprintf(w->log_path, sizeof w->log_path, "%s/cc.log", w->dir);
  return KILN_OK;
}

/* Removes the directory and every file in it, including any a compiler flag such as
 * -save-temps left there (the directory is ours alone: mkdtemp, mode 0700). */
static void workdir_remove(workdir *w) {
  if (!w->made) return;
  DIR *d = opendir(w->dir);
  char path[PATH_MAX + 300];
  for (struct dirent *e; d && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name);
    unlink(path);
  }
  if (d) closedir(d);
  rmdir(w->dir);
  w->made = false;
}

static kiln_status write_file(kir_graph *g, const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return kir_seterr(g, KILN_ERR_IO, "cannot create the generated C file: %s", strerror(errno));
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t k = write(fd, text + done, len - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int e = errno;
      close(fd);
      return kir_seterr(g, KILN_ERR_IO, "cannot write the generated C file: %s", strerror(e));
    }
    done += (size_t)k;
  }
  if (close(fd) != 0) return kir_seterr(g, KILN_ERR_IO, "cannot write the generated C file: %s", strerror(errno));
  return KILN_OK;
}

/* Reads a whole regular file into *out (kir_malloc, NUL-terminated). */
static kiln_status read_file(kir_graph *g, const char *path, const char *what, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0) {
    if (fd >= 0) close(fd);
    return kir_seterr(g, KILN_ERR_IO, "cannot read the %s", what);
  }
  uint8_t *buf = kir_malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory reading the %s", what);
  }
  size_t done = 0;
  while (done < (size_t)st.st_size) {
    ssize_t k = read(fd, buf + done, (size_t)st.st_size - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    done += (size_t)k;
  }
  close(fd);
  buf[done] = 0;
  *out = buf;
  *len = done;
  return KILN_OK;
}

/* ---------------------------------------------------------------- compiler ------ */

/* argv built from whitespace-split cc and flags plus fixed arguments; strings live in
 * `text`. */
typedef struct cmdline {
  char *text;
  char **argv;
  int argc;
} cmdline;

static void cmdline_free(cmdline *c) {
  kir_free(c->text);
  kir_free(c->argv);
  memset(c, 0, sizeof *c);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void split_into(cmdline *c, char *s) {
  while (*s) {
    while (is_space(*s)) *s++ = '\0';
    if (!*s) break;
    c->argv[c->argc++] = s;
    while (*s && !is_space(*s)) s++;
  }
}

/* -march for opt->cpu: NULL/"host" = this machine, "generic" = any x86-64. */
static kiln_status march_flags(kir_graph *g, const kcg_options *opt, const char **out) {
  const char *cpu = opt && opt->cpu ? opt->cpu : "host";
  char esc[KCG_ESC_BUF];
  if (!strcmp(cpu, "host")) *out = "-march=native";
  else if (!strcmp(cpu, "generic")) *out = "-march=x86-64 -mtune=generic";
  else return kir_seterr(g, KILN_ERR_ARGUMENT, "cpu '%s' is not 'host' or 'generic'",
                         kir_escape(cpu, esc, sizeof esc));
  return KILN_OK;
}

/* cc -std=c11 -ffp-contract=off MARCH FLAGS -fPIC -shared -fvisibility=hidden [-fopenmp] -o SO C -lopenblas -lm:
 * these three first, so the caller's flags may override them. */
static kiln_status cmdline_build(kir_graph *g, const kcg_options *opt, const workdir *w, bool omp,
                                 cmdline *c) {
  const char *cc = opt && opt->cc ? opt->cc : getenv("CC");
  const char *flags = opt && opt->opt_flags ? opt->opt_flags : DEFAULT_OPT_FLAGS, *march = NULL;
  kiln_status s = march_flags(g, opt, &march);
  if (s) return s;
  if (!cc || !*cc) cc = "cc";
  size_t lc = strlen(cc), lm = strlen(march), lf = strlen(flags);
  const char *fixed[] = {"-fPIC", "-shared", "-fvisibility=hidden", "-fopenmp", "-o",
                         w->so_path, w->c_path, "-lopenblas", "-lm"};
  size_t nfixed = sizeof fixed / sizeof fixed[0];
  c->text = kir_malloc(lc + lm + lf + 3);
  c->argv = kir_calloc(lc / 2 + lm / 2 + lf / 2 + nfixed + 8, sizeof(char *));
  if (!c->text || !c->argv) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory for the compiler command");
  memcpy(c->text, cc, lc + 1);
  memcpy(c->text + lc + 1, march, lm + 1);
  memcpy(c->text + lc + lm + 2, flags, lf + 1);
  split_into(c, c->text);
  if (c->argc == 0) return kir_seterr(g, KILN_ERR_ARGUMENT, "the C compiler command is empty");
  c->argv[c->argc++] = "-std=c11";
  c->argv[c->argc++] = "-ffp-contract=off"; /* no FMA across steps: see kcg_c_kernels.c */
  split_into(c, c->text + lc + 1);
  split_into(c, c->text + lc + lm + 2);
  for (size_t i = 0; i < nfixed; i++)
    if (omp || strcmp(fixed[i], "-fopenmp") != 0) c->argv[c->argc++] = (char *)fixed[i];
  c->argv[c->argc] = NULL;
  return KILN_OK;
}

/* environ with LC_ALL=C, so the compiler's messages are plain ASCII. */
static char **child_env(void) {
  size_t n = 0;
  while (environ && environ[n]) n++;
  char **env = kir_calloc(n + 2, sizeof(char *));
  if (!env) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "LC_ALL=", 7) != 0) env[k++] = environ[i];
  env[k++] = "LC_ALL=C";
  env[k] = NULL;
  return env;
}

/* Spawns argv with stdin from /dev/null and stdout+stderr into log_path; *status gets
 * the wait status. Returns an errno value when it cannot run at all. */
static int spawn_wait(char **argv, char **env, const char *log_path, int *status) {
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc) return rc;
  rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!rc) rc = posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (!rc) rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  if (rc) return rc;
  while (waitpid(pid, status, 0) < 0)
    if (errno != EINTR) return errno;
  return 0;
}

/* The first ERR_LINES lines of the compiler's output, non-ASCII bytes replaced. */
static void first_lines(const char *log, char *out, size_t n) {
  size_t o = 0;
  int lines = 0;
  for (size_t i = 0; log[i] && o + 1 < n && lines < ERR_LINES; i++) {
    unsigned char ch = (unsigned char)log[i];
    if (ch == '\n') lines++;
    out[o++] = (ch == '\n' || (ch >= 0x20 && ch < 0x7f)) ? (char)ch : '?';
  }
  while (o > 0 && out[o - 1] == '\n') o--;
  out[o] = '\0';
}

static void log_command(FILE *log, const cmdline *c, double secs, int status) {
  if (!log) return;
  fprintf(log, "kcg: compile:");
  for (int i = 0; i < c->argc; i++) fprintf(log, " %s", c->argv[i]);
  fprintf(log, "\nkcg: compiler finished in %.3f s (wait status %d)\n", secs, status);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static kiln_status compile_failed(kir_graph *g, const kcg_options *opt, const workdir *w,
                                  const cmdline *c, int status) {
  uint8_t *log = NULL;
  size_t len = 0;
  char head[400] = "", how[64];
  if (read_file(g, w->log_path, "compiler output", &log, &len) == KILN_OK) {
    first_lines((const char *)log, head, sizeof head);
    if (opt && opt->log && len) fprintf(opt->log, "kcg: compiler output:\n%s\n", (const char *)log);
  }
  kir_free(log);
  if (WIFEXITED(status)) snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
  else snprintf(how, sizeof how, "failed (wait status %d)", status);
  char esc[KCG_ESC_BUF];
  return kir_seterr(g, KILN_ERR_COMPILE, "C compiler '%s' %s%s%s", kir_escape(c->argv[0], esc, sizeof esc),
                    how, head[0] ? ":\n" : " with no output", head);
}

/* Writes src, runs the compiler, and reads the shared object back. */
static kiln_status compile_in(kir_graph *g, const kcg_options *opt, workdir *w, const char *src,
                              uint8_t **so, size_t *so_len) {
  cmdline c = {0};
  char **env = NULL;
  kiln_status s = write_file(g, w->c_path, src);
  if (!s) s = cmdline_build(g, opt, w, strstr(src, "#pragma omp") != NULL, &c);
  if (!s && !(env = child_env())) s = kir_seterr(g, KILN_ERR_NOMEM, "out of memory for the compiler's environment");
  if (s) {
    cmdline_free(&c);
    return s;
  }
  int status = 0;
  double t0 = now_s();
  int rc = spawn_wait(c.argv, env, w->log_path, &status);
  kir_free(env);
  log_command(opt ? opt->log : NULL, &c, now_s() - t0, status);
  char esc[KCG_ESC_BUF];
  if (rc) s = kir_seterr(g, rc == ENOMEM ? KILN_ERR_NOMEM : KILN_ERR_COMPILE,
                         "C compiler '%s' could not be run: %s", kir_escape(c.argv[0], esc, sizeof esc),
                         strerror(rc));
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) s = compile_failed(g, opt, w, &c, status);
  else s = read_file(g, w->so_path, "compiled shared object", so, so_len);
  cmdline_free(&c);
  return s;
}

kiln_status kcg_c_compile_so(kir_graph *g, const kcg_options *opt, const char *src, uint8_t **so,
                             size_t *so_len) {
  workdir w;
  memset(&w, 0, sizeof w);
  kiln_status s = workdir_make(g, &w);
  if (!s) s = compile_in(g, opt, &w, src, so, so_len);
  workdir_remove(&w);
  return s;
}

/* ---------------------------------------------------------------- driver -------- */

kiln_status kcg_c_resolve_outputs(kir_graph *g, const char *const *names, int32_t n, int32_t *ids) {
  char esc[KCG_ESC_BUF];
  for (int32_t j = 0; j < n; j++) {
    const kir_node *node = names[j] ? kir_graph_find(g, names[j]) : NULL;
    if (!node)
      return kir_seterr(g, KILN_ERR_ARGUMENT, "output '%s': no such node in the graph",
                        kir_escape(names[j], esc, sizeof esc));
    if (kir_op_has(node->op, KIR_F_NO_OUTPUT))
      return kir_seterr(g, KILN_ERR_ARGUMENT, "output '%s': %s produces no value",
                        kir_escape(names[j], esc, sizeof esc), kir_op_get(node->op)->name);
    ids[j] = node->id;
    for (int32_t k = 0; k < j; k++)
      if (ids[k] == ids[j])
        return kir_seterr(g, KILN_ERR_ARGUMENT, "output '%s' is requested twice (outputs %d and %d)",
                          kir_escape(names[j], esc, sizeof esc), (int)k, (int)j);
  }
  return KILN_OK;
}

kiln_status kcg_c_refuse_unlowerable(kir_graph *g, const char *what) {
  char esc[KCG_ESC_BUF], dev[KCG_ESC_BUF];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op == KIR_OP_VARIABLE || n->op == KIR_OP_ASSIGN)
      return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s': variables cannot be compiled; freeze "
                        "the graph first", kir_escape(n->name, esc, sizeof esc));
    const char *d = n->assigned_device;
    if (d && d[0] && strcmp(d, "cpu:0") != 0) /* one arena: cpu:0's (kps_memplan.arena_bytes) */
      return kir_seterr(g, KILN_ERR_UNSUPPORTED, "node '%s' is placed on '%s'; %s runs on cpu:0 "
                        "only", kir_escape(n->name, esc, sizeof esc), kir_escape(d, dev, sizeof dev),
                        what);
  }
  return KILN_OK;
}

/* random_normal/random_uniform are deterministic: evaluate them now and make them
 * constants (weights), as the interpreter would compute them. */
kiln_status kcg_c_freeze_random(kir_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    if (n->op != KIR_OP_RANDOM_NORMAL && n->op != KIR_OP_RANDOM_UNIFORM) continue;
    kir_tensor *t = NULL;
    kiln_status s = kir_eval_node(g, n, NULL, &t);
    if (s) return s;
    n->op = KIR_OP_CONSTANT;
    n->n_attrs = 0; /* the old attributes stay in the clone's arena, unreferenced */
    n->attrs = NULL;
    s = kir_attr_set_tensor(g, n, "value", t);
    kir_tensor_free(t);
    if (s) return s;
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- gemv weights - */

/* Uses of node id as an input anywhere, plus one if it is an output. */
static int32_t count_uses(const kir_graph *g, const int32_t *ids, int32_t n_outputs, int32_t id) {
  int32_t uses = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) uses += g->nodes[i]->inputs[k] == id;
  for (int32_t j = 0; j < n_outputs; j++) uses += ids[j] == id;
  return uses;
}

/* A float matmul of one to KCG_SMALL_M rows whose right operand is a rank-2 [K, N]
 * constant that nothing else reads. */
static bool gemv_candidate(const kir_graph *g, const int32_t *ids, int32_t n_outputs,
                           const kir_node *n, bool cpu_only) {
  if (n->op != KIR_OP_MATMUL && n->op != KIR_OP_FUSED_MATMUL) return false;
  if (cpu_only && !kcg_c_on_cpu(n)) return false; /* the layout is for OpenBLAS's GEMV */
  if ((n->type.dtype != KILN_F32 && n->type.dtype != KILN_F64) || n->type.rank < 2 ||
      n->type.dims[n->type.rank - 2] < 1 || n->type.dims[n->type.rank - 2] > KCG_SMALL_M ||
      kir_attr_int(n, "transpose_b", 0) != 0)
    return false;
  const kir_node *b = g->nodes[n->inputs[1]];
  const kir_tensor *t = b->op == KIR_OP_CONSTANT ? kir_attr_tensor(b, "value") : NULL;
  return t && t->type.rank == 2 && b->type.rank == 2 && t->type.dims[0] > 1 &&
         t->type.dims[1] > 1 && count_uses(g, ids, n_outputs, b->id) == 1;
}

static void transpose_into(const kir_tensor *t, kir_tensor *tt) {
  int64_t k = t->type.dims[0], n = t->type.dims[1];
  size_t es = (size_t)kiln_dtype_size(t->type.dtype);
  const unsigned char *src = t->data;
  unsigned char *dst = tt->data;
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < n; j++) memcpy(dst + (size_t)(j * k + i) * es, src + (size_t)(i * n + j) * es, es);
}

/* y[1, N] = x[1, K] @ W[K, N] is a GEMV; OpenBLAS's fastest one walks W's rows, so the
 * constant is stored as W^T [N, K] and the node gets transpose_b = 1 (same value; the
 * kernel then emits sgemv NoTrans over contiguous rows of length K). Products of up to
 * KCG_SMALL_M rows get the same layout for kcg_sgemm_small. */
kiln_status kcg_c_pretranspose_gemv(kir_graph *g, const int32_t *ids, int32_t n_outputs,
                                    bool cpu_only) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    kir_node *n = g->nodes[i];
    if (!gemv_candidate(g, ids, n_outputs, n, cpu_only)) continue;
    kir_node *b = g->nodes[n->inputs[1]];
    const kir_tensor *t = kir_attr_tensor(b, "value");
    kir_type tt_type = t->type;
    tt_type.dims[0] = t->type.dims[1];
    tt_type.dims[1] = t->type.dims[0];
    kir_tensor *tt = kir_tensor_new(&tt_type);
    if (!tt) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory transposing a constant");
    transpose_into(t, tt);
    kir_type before = n->type;
    kiln_status s = kir_attr_set_tensor(g, b, "value", tt);
    kir_tensor_free(tt);
    if (!s) s = kir_infer_node(g, b);
    if (!s) s = kir_attr_set_int(g, n, "transpose_b", 1);
    if (!s) s = kir_infer_node(g, n);
    if (s) return s;
    if (!kir_type_equal(&before, &n->type)) {
      char esc[KCG_ESC_BUF];
      return kir_seterr(g, KILN_ERR_INTERNAL, "node '%s': transposing its constant changed its type",
                        kir_escape(n->name, esc, sizeof esc));
    }
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- driver 2 ------ */

/* "<pipeline>; codegen: -march=native -O3 [-fopenmp]" (kir_malloc), for the plan. */
kiln_status kcg_c_record_codegen(kir_graph *g, const kcg_options *opt, const char *src, char **out) {
  const char *march = NULL, *pipe = opt && opt->pipeline ? opt->pipeline : "";
  const char *flags = opt && opt->opt_flags ? opt->opt_flags : DEFAULT_OPT_FLAGS;
  kiln_status s = march_flags(g, opt, &march);
  if (s) return s;
  const char *omp = strstr(src, "#pragma omp") ? " -fopenmp" : "";
  size_t len = strlen(pipe) + strlen(march) + strlen(flags) + 40;
  *out = kir_malloc(len);
  if (!*out) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory for the pipeline string");
  snprintf(*out, len, "%s%scodegen: %s %s%s", pipe, *pipe ? "; " : "", march, flags, omp);
  return KILN_OK;
}

bool kcg_c_host_isa(const kcg_options *opt) {
  return !opt || !opt->cpu || !strcmp(opt->cpu, "host");
}

/* Everything after the clone: the error stays on the clone (copied by the caller). */
static kiln_status lower(kir_graph *c, const int32_t *ids, int32_t n_outputs, const kcg_options *opt,
                         const char *path) {
  kps_memplan plan;
  memset(&plan, 0, sizeof plan);
  char *src = NULL, *pipeline = NULL;
  uint8_t *so = NULL;
  size_t so_len = 0;
  kiln_status s = kcg_c_freeze_random(c);
  if (!s) s = kcg_c_pretranspose_gemv(c, ids, n_outputs, false);
  if (!s) s = kir_verify(c);
  if (!s) s = kps_plan_memory(c, ids, n_outputs, &plan);
  if (!s) s = kcg_c_reserve(c, &plan);
  if (!s) s = kcg_c_generate(c, &plan, ids, n_outputs, &src);
  if (!s) s = kcg_c_record_codegen(c, opt, src, &pipeline);
  if (!s) s = kcg_c_compile_so(c, opt, src, &so, &so_len);
  if (!s) s = kcg_c_write_artifact(c, &plan, ids, n_outputs, pipeline, kcg_c_host_isa(opt), src,
                                   so, so_len, path);
  kir_free(pipeline);
  kir_free(so);
  kir_free(src);
  kps_memplan_free(&plan);
  return s;
}

kiln_status kcg_compile_cpu(kir_graph *g, const char *const *outputs, int32_t n_outputs,
                            const kcg_options *opt, const char *artifact_path) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (!outputs || n_outputs <= 0 || !artifact_path || !*artifact_path)
    return kir_seterr(g, KILN_ERR_ARGUMENT, "kcg_compile_cpu: no outputs or no artifact path");
  int32_t *ids = kir_calloc((size_t)n_outputs, sizeof *ids);
  if (!ids) return kir_seterr(g, KILN_ERR_NOMEM, "kcg_compile_cpu: out of memory");
  kiln_status s = kcg_c_resolve_outputs(g, outputs, n_outputs, ids);
  if (!s) s = kcg_c_refuse_unlowerable(g, "the CPU target");
  if (!s) {
    kir_graph *c = kir_graph_clone(g);
    if (!c) s = kir_seterr(g, KILN_ERR_NOMEM, "kcg_compile_cpu: out of memory copying the graph");
    else if ((s = lower(c, ids, n_outputs, opt, artifact_path)))
      kir_seterr(g, s, "%s", c->error);
    kir_graph_destroy(c);
  }
  kir_free(ids);
  if (!s) kir_clearerr(g);
  return s;
}
