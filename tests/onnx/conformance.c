/* conformance.c — the ONNX backend node tests (Debian libonnx-testdata) through Kiln:
 * import -> default pipeline -> kcg_compile_cpu -> libkiln_rt, and through the reference
 * interpreter as a second column, compared at the suite's tolerance. Each case runs in a
 * forked child with a time limit, so a crash or hang is reported, never fatal. Tests only;
 * links the importer, passes, codegen and the runtime. Usage: see usage() below. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codegen/kcg.h"
#include "frontend/onnx/kiln_onnx.h"
#include "ir/kir.h"
#include "passes/kps.h"
#include "runtime/kiln_runtime.h"

#define KC_DEFAULT_DATA "/usr/share/libonnx-testdata/data/node"
#ifndef KC_KNOWN_GAPS /* the build sets it to the source tree's tests/onnx/known_gaps.txt */
#define KC_KNOWN_GAPS NULL
#endif
#define KC_SKIP 77        /* ctest SKIP_RETURN_CODE */
#define KC_RTOL 1e-3      /* onnx.backend.test.runner defaults */
#define KC_ATOL 1e-7
#define KC_MSG 640        /* one column's message */
#define KC_MAX_MODEL_BYTES ((size_t)256 << 20)
#define KC_MAX_IO 64      /* inputs / outputs one case may have */
#define KC_MAX_SETS 16    /* test_data_set_N per case */

/* The operators issue 4 lists: every case of these must pass (or be a known gap). */
static const char *const kc_listed[] = {
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Neg", "Abs", "Exp", "Log", "Sqrt",
    "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Clip", "Erf", "Gelu", "MatMul", "Gemm",
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "Softmax", "LogSoftmax", "ArgMax",
    "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather",
    "Cast", "Where", "Identity", "Constant", "Shape", "Conv", "MaxPool", "AveragePool",
    "GlobalAveragePool", "BatchNormalization", "Dropout", NULL};

/* Outcomes, ordered from best to worst: a case's outcome is the worse of its columns. */
typedef enum kc_status {
  KC_PASS = 0, KC_UNSUPPORTED, KC_ERROR, KC_FAIL, KC_TIMEOUT, KC_CRASH, KC_NSTATUS
} kc_status;
static const char *const kc_status_names[KC_NSTATUS] = {"pass", "unsupported", "error",
                                                        "fail", "timeout", "crash"};

/* What the child sends back through its pipe (one write, well under PIPE_BUF * 16). */
typedef struct kc_result {
  kc_status st[2]; /* [0] compiled, [1] reference */
  char msg[2][KC_MSG];
  char note[160]; /* graph inputs the import left out (no output needs them) */
} kc_result;

/* Names the wire scan of model.onnx found (malloc'd strings). */
typedef struct kc_model {
  char **ops;    int n_ops;    /* distinct op_types, in first-use order */
  char **inputs; int n_inputs; /* graph inputs that are not initializers, in order */
  char **outputs; int n_outputs;
  char **frozen; int n_frozen; /* inputs bound to the test data at import (kc_static) */
  char *scan_error; /* why the scan failed, or NULL */
} kc_model;

typedef struct kc_case {
  char *name, *dir, *op; /* op: the operator the case counts under */
  bool listed;
  const char *gap; /* known_gaps.txt reason, or NULL */
  kc_model m;
  kc_result r;
  kc_status outcome;
  double secs;
} kc_case;

typedef struct kc_opts {
  const char *data, *filter, *json, *gaps;
  int jobs;
  double timeout;
  bool list, verbose, no_static;
} kc_opts;

/* ------------------------------------------------------------ small helpers ----- */

static char *kc_strdup(const char *s) {
  char *d = strdup(s ? s : "");
  if (!d) { fputs("conformance: out of memory\n", stderr); exit(2); }
  return d;
}

static void *kc_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) { fputs("conformance: out of memory\n", stderr); exit(2); }
  return q;
}

static char *kc_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *s = kc_xrealloc(NULL, n);
  snprintf(s, n, "%s/%s", a, b);
  return s;
}

static double kc_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void kc_push(char ***v, int *n, const char *s) {
  *v = kc_xrealloc(*v, sizeof **v * (size_t)(*n + 1));
  (*v)[(*n)++] = kc_strdup(s);
}

static bool kc_has(char *const *v, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0) return true;
  return false;
}

static void kc_free_strs(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static bool kc_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool kc_is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads a whole file (bounded); NULL on error. */
static uint8_t *kc_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      if (cap >= KC_MAX_MODEL_BYTES) break;
      cap = cap ? cap * 2 : 65536;
      buf = kc_xrealloc(buf, cap);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  bool bad = ferror(f) || n >= KC_MAX_MODEL_BYTES;
  fclose(f);
  if (bad) { free(buf); return NULL; }
  *len = n;
  return buf;
}

/* ------------------------------------------------------------ protobuf wire scan  */
/* The runner needs a model's op_types and input/output names even when the importer
 * refuses it, so it reads them straight off the wire (ModelProto.graph = 7; GraphProto
 * node = 1, initializer = 5, input = 11, output = 12; NodeProto.op_type = 4;
 * ValueInfoProto.name = 1; TensorProto.name = 8). */

typedef struct kc_pb {
  const uint8_t *p, *end;
} kc_pb;

static bool kc_pb_varint(kc_pb *r, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t b = *r->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* Next field: its number and, for length-delimited fields, the bytes in *sub. */
static bool kc_pb_next(kc_pb *r, uint32_t *field, bool *is_len, kc_pb *sub) {
  uint64_t key, v;
  if (!kc_pb_varint(r, &key)) return false;
  *field = (uint32_t)(key >> 3);
  *is_len = false;
  switch (key & 7) {
    case 0: return kc_pb_varint(r, &v);
    case 1: if (r->end - r->p < 8) return false; r->p += 8; return true;
    case 5: if (r->end - r->p < 4) return false; r->p += 4; return true;
    case 2:
      if (!kc_pb_varint(r, &v) || v > (uint64_t)(r->end - r->p)) return false;
      sub->p = r->p;
      sub->end = r->p + v;
      r->p += v;
      *is_len = true;
      return true;
    default: return false;
  }
}

/* The string at field `want` of message m ("" if absent, NULL if malformed). */
static char *kc_pb_string(kc_pb m, uint32_t want) {
  uint32_t f;
  bool is_len;
  kc_pb sub, found = {NULL, NULL};
  while (m.p < m.end) {
    if (!kc_pb_next(&m, &f, &is_len, &sub)) return NULL;
    if (f == want && is_len) found = sub;
  }
  size_t n = found.p ? (size_t)(found.end - found.p) : 0;
  char *s = kc_xrealloc(NULL, n + 1);
  if (n) memcpy(s, found.p, n);
  s[n] = 0;
  return s;
}

/* Adds the string at field `want` of sub to v; false when malformed. */
static bool kc_scan_name(kc_pb sub, uint32_t want, char ***v, int *n, bool distinct) {
  char *s = kc_pb_string(sub, want);
  if (!s) return false;
  if (!distinct || !kc_has(*v, *n, s)) kc_push(v, n, s);
  free(s);
  return true;
}

/* Inputs that give a shape or an attribute rather than data: Kiln compiles ahead of
 * time with static shapes, so where the suite feeds these as graph inputs the runner
 * binds them to the test data's values at import (as an exporter would have written
 * them as initializers). Each entry: op_type and a bit per input position. Clip's bounds
 * stay fed at run time (the importer takes them as tensors); Dropout's ratio and
 * training_mode are bound (training mode imports only with a static ratio of 0). */
static const struct { const char *op; unsigned positions; } kc_static[] = {
    {"Reshape", 1u << 1},   {"Slice", 0x1eu},      {"Squeeze", 1u << 1},
    {"Unsqueeze", 1u << 1}, {"ReduceSum", 1u << 1}, {"ReduceMean", 1u << 1},
    {"ReduceMax", 1u << 1}, {"ReduceMin", 1u << 1}, {"Dropout", 0x6u},
    {"Expand", 1u << 1},    {"Tile", 1u << 1},
    {"Pad", 0x6u},          {"ConstantOfShape", 1u}, {"Split", 1u << 1},
    {"TopK", 1u << 1},      {"OneHot", 1u << 1},   {"Resize", 0xeu},
    {"Upsample", 1u << 1},  {"Range", 0x7u},       {NULL, 0}};

static unsigned kc_static_positions(const char *op) {
  for (int i = 0; kc_static[i].op; i++)
    if (strcmp(kc_static[i].op, op) == 0) return kc_static[i].positions;
  return 0;
}

/* A NodeProto: its op_type (4) into m->ops, and the inputs (1) at static positions into
 * *cand. */
static bool kc_scan_node(kc_pb n, kc_model *m, char ***cand, int *n_cand) {
  char *op = kc_pb_string(n, 4);
  if (!op) return false;
  if (!kc_has(m->ops, m->n_ops, op)) kc_push(&m->ops, &m->n_ops, op);
  unsigned pos = kc_static_positions(op);
  free(op);
  uint32_t f;
  bool is_len;
  kc_pb sub;
  for (int k = 0; n.p < n.end;) {
    if (!kc_pb_next(&n, &f, &is_len, &sub)) return false;
    if (f != 1 || !is_len) continue;
    if (k < 32 && (pos >> k & 1u) && sub.end > sub.p) {
      char *name = kc_xrealloc(NULL, (size_t)(sub.end - sub.p) + 1);
      memcpy(name, sub.p, (size_t)(sub.end - sub.p));
      name[sub.end - sub.p] = 0;
      kc_push(cand, n_cand, name);
      free(name);
    }
    k++;
  }
  return true;
}

static bool kc_scan_graph(kc_pb g, kc_model *m, char ***inits, int *n_inits) {
  uint32_t f;
  bool is_len, ok = true;
  kc_pb sub;
  char **all_inputs = NULL, **cand = NULL;
  int n_all = 0, n_cand = 0;
  while (ok && g.p < g.end) {
    if (!kc_pb_next(&g, &f, &is_len, &sub)) { ok = false; break; }
    if (!is_len) continue;
    if (f == 1) ok = kc_scan_node(sub, m, &cand, &n_cand);
    else if (f == 5) ok = kc_scan_name(sub, 8, inits, n_inits, false);
    else if (f == 11) ok = kc_scan_name(sub, 1, &all_inputs, &n_all, false);
    else if (f == 12) ok = kc_scan_name(sub, 1, &m->outputs, &m->n_outputs, false);
  }
  for (int i = 0; ok && i < n_all; i++) {
    if (kc_has(*inits, *n_inits, all_inputs[i])) continue;
    kc_push(&m->inputs, &m->n_inputs, all_inputs[i]);
    if (kc_has(cand, n_cand, all_inputs[i])) kc_push(&m->frozen, &m->n_frozen, all_inputs[i]);
  }
  kc_free_strs(all_inputs, n_all);
  kc_free_strs(cand, n_cand);
  return ok;
}

static void kc_scan_model(const char *path, kc_model *m) {
  size_t len = 0;
  uint8_t *buf = kc_read_file(path, &len);
  if (!buf) { m->scan_error = kc_strdup("model.onnx unreadable"); return; }
  kc_pb r = {buf, buf + len}, sub;
  uint32_t f;
  bool is_len, ok = true, seen = false;
  char **inits = NULL;
  int n_inits = 0;
  while (ok && r.p < r.end) {
    if (!kc_pb_next(&r, &f, &is_len, &sub)) { ok = false; break; }
    if (f == 7 && is_len && !seen) { ok = kc_scan_graph(sub, m, &inits, &n_inits); seen = true; }
  }
  if (!ok || !seen) m->scan_error = kc_strdup(ok ? "model.onnx has no graph" : "model.onnx is malformed");
  kc_free_strs(inits, n_inits);
  free(buf);
}

static void kc_model_free(kc_model *m) {
  kc_free_strs(m->ops, m->n_ops);
  kc_free_strs(m->inputs, m->n_inputs);
  kc_free_strs(m->outputs, m->n_outputs);
  kc_free_strs(m->frozen, m->n_frozen);
  free(m->scan_error);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ case discovery ---- */

static bool kc_is_listed(const char *op) {
  for (int i = 0; kc_listed[i]; i++)
    if (strcmp(kc_listed[i], op) == 0) return true;
  return false;
}

/* "ReduceSum" -> "reducesum": the test names spell operators in lower case, with or
 * without underscores ("test_reduce_sum_...", "test_logsoftmax_..."). */
static void kc_squash(const char *s, char *out, size_t n) {
  size_t j = 0;
  for (; *s && j + 1 < n; s++)
    if (*s != '_') out[j++] = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
  out[j] = 0;
}

/* The operator of a single-operator model, or the one whose name the test name starts
 * with; else the first. */
static const char *kc_model_op(const char *test, const kc_model *m) {
  if (m->n_ops == 0) return "(none)";
  if (m->n_ops == 1) return m->ops[0];
  char t[256], o[128];
  kc_squash(test + 5, t, sizeof t);
  for (int i = 0; i < m->n_ops; i++) {
    kc_squash(m->ops[i], o, sizeof o);
    if (strncmp(t, o, strlen(o)) == 0) return m->ops[i];
  }
  return m->ops[0];
}

/* An "_expanded" case counts under the function it expands: its twin without the
 * suffix, when the data has it. */
static void kc_resolve_op(kc_case *cases, int n, kc_case *c) {
  const char *x = strstr(c->name, "_expanded");
  if (x) {
    size_t k = (size_t)(x - c->name);
    for (int i = 0; i < n; i++)
      if (strlen(cases[i].name) == k && strncmp(cases[i].name, c->name, k) == 0) {
        c->op = kc_strdup(kc_model_op(cases[i].name, &cases[i].m));
        return;
      }
  }
  c->op = kc_strdup(kc_model_op(c->name, &c->m));
}

static int kc_name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir starting with prefix. */
static char **kc_list_dir(const char *dir, const char *prefix, int *n) {
  DIR *d = opendir(dir);
  char **v = NULL;
  *n = 0;
  if (!d) return NULL;
  for (struct dirent *e; (e = readdir(d));)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) kc_push(&v, n, e->d_name);
  closedir(d);
  if (*n) qsort(v, (size_t)*n, sizeof *v, kc_name_cmp);
  return v;
}

static kc_case *kc_discover(const kc_opts *o, int *n_cases) {
  int n = 0;
  char **names = kc_list_dir(o->data, "test_", &n);
  kc_case *cases = kc_xrealloc(NULL, sizeof *cases * (size_t)(n ? n : 1));
  int k = 0;
  for (int i = 0; i < n; i++) {
    char *dir = kc_join(o->data, names[i]), *model = kc_join(dir, "model.onnx");
    if (kc_is_file(model)) {
      memset(&cases[k], 0, sizeof cases[k]);
      cases[k].name = kc_strdup(names[i]);
      cases[k].dir = dir;
      kc_scan_model(model, &cases[k].m);
      dir = NULL;
      k++;
    }
    free(dir);
    free(model);
  }
  kc_free_strs(names, n);
  for (int i = 0; i < k; i++) {
    kc_resolve_op(cases, k, &cases[i]);
    cases[i].listed = kc_is_listed(cases[i].op);
    if (o->no_static) { /* feed everything at run time, as the file says */
      kc_free_strs(cases[i].m.frozen, cases[i].m.n_frozen);
      cases[i].m.frozen = NULL;
      cases[i].m.n_frozen = 0;
    }
  }
  *n_cases = k;
  return cases;
}

/* ------------------------------------------------------------ known gaps -------- */

typedef struct kc_gap {
  char *name, *reason;
  bool seen;
} kc_gap;

typedef struct kc_gaps {
  kc_gap *v;
  int n;
} kc_gaps;

/* known_gaps.txt: one case a line, "test_name reason...", '#' comments, blank lines. */
static bool kc_gaps_load(const char *path, kc_gaps *gaps) {
  memset(gaps, 0, sizeof *gaps);
  if (!path) return true;
  FILE *f = fopen(path, "r");
  if (!f) { fprintf(stderr, "conformance: cannot read %s: %s\n", path, strerror(errno)); return false; }
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    char *p = line + strspn(line, " \t");
    if (!*p || *p == '#') continue;
    char *sp = p + strcspn(p, " \t");
    char *reason = *sp ? sp + 1 + strspn(sp + 1, " \t") : sp;
    *sp = 0;
    gaps->v = kc_xrealloc(gaps->v, sizeof *gaps->v * (size_t)(gaps->n + 1));
    gaps->v[gaps->n++] = (kc_gap){kc_strdup(p), kc_strdup(*reason ? reason : "(no reason given)"), false};
  }
  fclose(f);
  return true;
}

static void kc_gaps_apply(kc_gaps *gaps, kc_case *cases, int n) {
  for (int g = 0; g < gaps->n; g++)
    for (int i = 0; i < n; i++)
      if (strcmp(cases[i].name, gaps->v[g].name) == 0) {
        cases[i].gap = gaps->v[g].reason;
        gaps->v[g].seen = true;
      }
}

static void kc_gaps_free(kc_gaps *gaps) {
  for (int i = 0; i < gaps->n; i++) {
    free(gaps->v[i].name);
    free(gaps->v[i].reason);
  }
  free(gaps->v);
}

/* ------------------------------------------------------------ comparison -------- */

/* A tensor as either column produced it. */
typedef struct kc_view {
  kiln_dtype dtype;
  int32_t rank;
  const int64_t *dims;
  const void *data;
} kc_view;

static bool kc_is_float(kiln_dtype t) {
  return t == KILN_F32 || t == KILN_F64 || t == KILN_F16 || t == KILN_BF16;
}

static bool kc_is_unsigned(kiln_dtype t) {
  return t == KILN_U8 || t == KILN_U16 || t == KILN_U32 || t == KILN_U64 || t == KILN_BOOL;
}

static double kc_get_f(const kc_view *v, int64_t i) {
  switch (v->dtype) {
    case KILN_F32: return ((const float *)v->data)[i];
    case KILN_F64: return ((const double *)v->data)[i];
    case KILN_F16: return kir_f16_to_double(((const uint16_t *)v->data)[i]);
    case KILN_BF16: return kir_bf16_to_double(((const uint16_t *)v->data)[i]);
    case KILN_I32: return ((const int32_t *)v->data)[i];
    case KILN_I64: return (double)((const int64_t *)v->data)[i];
    case KILN_BOOL: return ((const uint8_t *)v->data)[i];
    case KILN_U8: return ((const uint8_t *)v->data)[i];
    case KILN_I8: return ((const int8_t *)v->data)[i];
    case KILN_U16: return ((const uint16_t *)v->data)[i];
    case KILN_I16: return ((const int16_t *)v->data)[i];
    case KILN_U32: return ((const uint32_t *)v->data)[i];
    case KILN_U64: return (double)((const uint64_t *)v->data)[i];
    case KILN_DTYPE_INVALID: break;
  }
  return NAN;
}

/* Integers (and bool) as a 64-bit pattern: u64 values above INT64_MAX read negative. */
static int64_t kc_get_i(const kc_view *v, int64_t i) {
  switch (v->dtype) {
    case KILN_I32: return ((const int32_t *)v->data)[i];
    case KILN_I64: return ((const int64_t *)v->data)[i];
    case KILN_BOOL: return ((const uint8_t *)v->data)[i];
    case KILN_U8: return ((const uint8_t *)v->data)[i];
    case KILN_I8: return ((const int8_t *)v->data)[i];
    case KILN_U16: return ((const uint16_t *)v->data)[i];
    case KILN_I16: return ((const int16_t *)v->data)[i];
    case KILN_U32: return ((const uint32_t *)v->data)[i];
    case KILN_U64: return (int64_t)((const uint64_t *)v->data)[i];
    case KILN_F32: case KILN_F64: case KILN_F16: case KILN_BF16: case KILN_DTYPE_INVALID: break;
  }
  return 0;
}

static void kc_shape_str(const kc_view *v, char *buf, size_t n) {
  kir_type t = {.dtype = v->dtype, .rank = v->rank};
  for (int32_t i = 0; i < v->rank && i < KILN_MAX_RANK; i++) t.dims[i] = v->dims[i];
  kir_type_format(&t, buf, n);
}

/* How far element i is outside the tolerance (<= 0: within). */
static double kc_excess(const kc_view *want, const kc_view *got, int64_t i) {
  if (!kc_is_float(want->dtype)) /* integers and bool: exact */
    return kc_get_i(want, i) == kc_get_i(got, i) ? 0 : INFINITY;
  double e = kc_get_f(want, i), a = kc_get_f(got, i);
  if (isnan(e) || isnan(a)) return isnan(e) && isnan(a) ? 0 : INFINITY;
  if (isinf(e) || isinf(a)) return e == a ? 0 : INFINITY;
  double d = fabs(a - e) - (KC_ATOL + KC_RTOL * fabs(e));
  return d > 0 ? d : 0;
}

/* "(1,2,0)" for flat index i. */
static void kc_index_str(const kc_view *v, int64_t i, char *buf, size_t n) {
  int64_t idx[KILN_MAX_RANK];
  for (int32_t d = v->rank - 1; d >= 0; d--) {
    idx[d] = v->dims[d] ? i % v->dims[d] : 0;
    i = v->dims[d] ? i / v->dims[d] : 0;
  }
  size_t k = (size_t)snprintf(buf, n, "(");
  for (int32_t d = 0; d < v->rank && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)idx[d]);
  if (k < n) snprintf(buf + k, n - k, ")");
}

static void kc_value_str(const kc_view *v, int64_t i, char *buf, size_t n) {
  if (kc_is_float(v->dtype)) snprintf(buf, n, "%.9g", kc_get_f(v, i));
  else if (kc_is_unsigned(v->dtype)) snprintf(buf, n, "%llu", (unsigned long long)kc_get_i(v, i));
  else snprintf(buf, n, "%lld", (long long)kc_get_i(v, i));
}

/* Compares one output; on a difference writes the worst element into msg. */
static kc_status kc_compare(const char *name, const kc_view *want_in, const kc_view *got,
                            char *msg, size_t n) {
  char ws[96], gs[96];
  /* NumPy has no bfloat16: the suite writes BFLOAT16 values as UINT16 tensors of the
   * same bits, so a uint16 expectation of a bf16 output is read as bf16. */
  kc_view want_bf = *want_in;
  if (want_bf.dtype == KILN_U16 && got->dtype == KILN_BF16) want_bf.dtype = KILN_BF16;
  const kc_view *want = &want_bf;
  kc_shape_str(want, ws, sizeof ws);
  kc_shape_str(got, gs, sizeof gs);
  if (strcmp(ws, gs) != 0) {
    snprintf(msg, n, "output '%s': expected %s, got %s", name, ws, gs);
    return KC_FAIL;
  }
  int64_t numel = 1, worst = -1, bad = 0;
  for (int32_t d = 0; d < want->rank; d++) numel *= want->dims[d];
  double worst_x = 0;
  for (int64_t i = 0; i < numel; i++) {
    double x = kc_excess(want, got, i);
    if (x > 0) bad++;
    if (x > worst_x) { worst_x = x; worst = i; }
  }
  if (!bad) return KC_PASS;
  char idx[160], e[48], a[48];
  kc_index_str(want, worst, idx, sizeof idx);
  kc_value_str(want, worst, e, sizeof e);
  kc_value_str(got, worst, a, sizeof a);
  snprintf(msg, n, "output '%s' %s: %lld of %lld elements differ; worst at [%lld] %s: "
           "expected %s, got %s", name, ws, (long long)bad, (long long)numel,
           (long long)worst, idx, e, a);
  return KC_FAIL;
}

static kc_view kc_view_of(const kir_tensor *t) {
  return (kc_view){t->type.dtype, t->type.rank, t->type.dims, t->data};
}

/* ------------------------------------------------------------ one case (child) -- */

/* One test_data_set_N: inputs and expected outputs, bound to names. */
typedef struct kc_set {
  kir_tensor *in[KC_MAX_IO], *out[KC_MAX_IO];
  const char *in_name[KC_MAX_IO];
  int n_in, n_out;
} kc_set;

typedef struct kc_run {
  const kc_case *c;
  const char *slot; /* this worker's temp directory */
  kc_set sets[KC_MAX_SETS];
  int n_sets;
  kir_graph *g; /* as imported */
  kc_result *r;
} kc_run;

static kc_status kc_from_kiln(kiln_status s) {
  return s == KILN_ERR_UNSUPPORTED ? KC_UNSUPPORTED : KC_ERROR;
}

/* Sets both columns (a stage both share failed). */
static void kc_both(kc_result *r, kc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kc_both(kc_result *r, kc_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg[0], KC_MSG, fmt, ap);
  va_end(ap);
  memcpy(r->msg[1], r->msg[0], KC_MSG);
  r->st[0] = r->st[1] = st;
}

static void kc_col(kc_result *r, int col, kc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void kc_col(kc_result *r, int col, kc_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg[col], KC_MSG, fmt, ap);
  va_end(ap);
  r->st[col] = st;
}

/* Reads one .pb tensor; false (both columns set) on error. */
static bool kc_read_pb(kc_run *k, const char *set, const char *file, kir_tensor **t, char **name) {
  char *dir = kc_join(k->c->dir, set), *path = kc_join(dir, file), err[KC_MSG - 64];
  kiln_status s = konnx_read_tensor_file(path, t, name, err, sizeof err);
  free(dir);
  free(path);
  if (s == KILN_OK) return true;
  kc_both(k->r, kc_from_kiln(s), "%s/%s: %s: %s", set, file, kiln_status_name(s), err);
  return false;
}

static bool kc_is_frozen(const kc_model *m, const char *name) {
  return kc_has(m->frozen, m->n_frozen, name);
}

/* The graph input input_i.pb feeds: its own name when the model has such an input
 * (the suite writes them so), else the i-th non-initializer input. */
static const char *kc_bind_input(const kc_model *m, int i, const char *pb_name) {
  for (int j = 0; pb_name && *pb_name && j < m->n_inputs; j++)
    if (strcmp(m->inputs[j], pb_name) == 0) return m->inputs[j];
  return i < m->n_inputs ? m->inputs[i] : NULL;
}

static bool kc_load_set(kc_run *k, const char *set, kc_set *s) {
  char file[64];
  for (s->n_in = 0; s->n_in < KC_MAX_IO; s->n_in++) {
    snprintf(file, sizeof file, "%s/input_%d.pb", set, s->n_in);
    char *path = kc_join(k->c->dir, file);
    bool there = kc_is_file(path);
    free(path);
    if (!there) break;
    char *name = NULL, pb[32];
    snprintf(pb, sizeof pb, "input_%d.pb", s->n_in);
    if (!kc_read_pb(k, set, pb, &s->in[s->n_in], &name)) return false;
    s->in_name[s->n_in] = kc_bind_input(&k->c->m, s->n_in, name);
    kir_free(name);
    if (!s->in_name[s->n_in]) {
      kc_both(k->r, KC_ERROR, "%s/%s: the model has only %d inputs", set, pb, k->c->m.n_inputs);
      return false;
    }
  }
  for (s->n_out = 0; s->n_out < k->c->m.n_outputs && s->n_out < KC_MAX_IO; s->n_out++) {
    char pb[32];
    snprintf(pb, sizeof pb, "output_%d.pb", s->n_out);
    if (!kc_read_pb(k, set, pb, &s->out[s->n_out], NULL)) return false;
  }
  return true;
}

/* The model was compiled with the first set's static inputs: a later set must agree. */
static bool kc_same_frozen(kc_run *k, const kc_set *first, const kc_set *s, const char *set) {
  for (int i = 0; s != first && i < s->n_in; i++) {
    if (!kc_is_frozen(&k->c->m, s->in_name[i])) continue;
    const kir_tensor *a = i < first->n_in ? first->in[i] : NULL, *b = s->in[i];
    int64_t nb = kir_type_nbytes(&b->type);
    if (!a || !kir_type_equal(&a->type, &b->type) || (nb > 0 && memcmp(a->data, b->data, (size_t)nb))) {
      kc_both(k->r, KC_ERROR, "%s gives the static input '%s' another value than the first set", set,
              s->in_name[i]);
      return false;
    }
  }
  return true;
}

static bool kc_load_sets(kc_run *k) {
  int n = 0;
  char **sets = kc_list_dir(k->c->dir, "test_data_set_", &n);
  bool ok = n > 0 && n <= KC_MAX_SETS;
  if (!ok) kc_both(k->r, KC_ERROR, "%d test_data_set_* directories (expected 1 to %d)", n, KC_MAX_SETS);
  for (int i = 0; ok && i < n; i++) {
    ok = kc_load_set(k, sets[i], &k->sets[i]) && kc_same_frozen(k, &k->sets[0], &k->sets[i], sets[i]);
    k->n_sets += ok;
  }
  kc_free_strs(sets, n);
  return ok;
}

static void kc_free_sets(kc_run *k) {
  for (int i = 0; i < KC_MAX_SETS; i++) { /* a set that failed half-way holds tensors too */
    for (int j = 0; j < KC_MAX_IO; j++) {
      kir_tensor_free(k->sets[i].in[j]);
      kir_tensor_free(k->sets[i].out[j]);
    }
  }
}

/* ---- binding static inputs (kc_static): the model is rewritten on the wire, each
 * frozen graph input dropped from GraphProto.input (11) and its test value appended as
 * an initializer (5) of that name. */

typedef struct kc_bytes {
  uint8_t *p;
  size_t n, cap;
} kc_bytes;

static void kc_put(kc_bytes *b, const void *src, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = kc_xrealloc(b->p, b->cap);
  }
  if (n) memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void kc_put_varint(kc_bytes *b, uint64_t v) {
  uint8_t t[10];
  size_t n = 0;
  do {
    t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  kc_put(b, t, n);
}

static void kc_put_len(kc_bytes *b, uint32_t field, const void *src, size_t n) {
  kc_put_varint(b, (uint64_t)field << 3 | 2);
  kc_put_varint(b, n);
  kc_put(b, src, n);
}

/* The raw TensorProto of the first data set that binds to graph input `name`, renamed
 * to it (a later string field wins on the wire). */
static bool kc_frozen_value(const kc_run *k, const char *set, const char *name, kc_bytes *out) {
  for (int i = 0; i < KC_MAX_IO; i++) {
    char file[96];
    snprintf(file, sizeof file, "%s/input_%d.pb", set, i);
    char *path = kc_join(k->c->dir, file);
    size_t len = 0;
    uint8_t *buf = kc_read_file(path, &len);
    free(path);
    if (!buf) return false;
    char *pb_name = kc_pb_string((kc_pb){buf, buf + len}, 8);
    const char *bound = pb_name ? kc_bind_input(&k->c->m, i, pb_name) : NULL;
    bool hit = bound && strcmp(bound, name) == 0;
    if (hit) {
      kc_put(out, buf, len);
      kc_put_len(out, 8, name, strlen(name));
    }
    free(pb_name);
    free(buf);
    if (hit) return true;
  }
  return false;
}

/* GraphProto g without the frozen inputs, plus them as initializers. */
static bool kc_rewrite_graph(const kc_run *k, const char *set, kc_pb g, kc_bytes *out) {
  uint32_t f;
  bool is_len;
  kc_pb sub;
  while (g.p < g.end) {
    const uint8_t *start = g.p;
    if (!kc_pb_next(&g, &f, &is_len, &sub)) return false;
    char *name = f == 11 && is_len ? kc_pb_string(sub, 1) : NULL;
    if (!name || !kc_is_frozen(&k->c->m, name)) kc_put(out, start, (size_t)(g.p - start));
    free(name);
  }
  for (int i = 0; i < k->c->m.n_frozen; i++) {
    kc_bytes t = {0};
    bool ok = kc_frozen_value(k, set, k->c->m.frozen[i], &t);
    if (ok) kc_put_len(out, 5, t.p, t.n);
    free(t.p);
    if (!ok) return false;
  }
  return true;
}

static bool kc_rewrite_model(const kc_run *k, const char *set, const uint8_t *buf, size_t len,
                             kc_bytes *out) {
  kc_pb r = {buf, buf + len}, sub;
  uint32_t f;
  bool is_len;
  while (r.p < r.end) {
    const uint8_t *start = r.p;
    if (!kc_pb_next(&r, &f, &is_len, &sub)) return false;
    if (f != 7 || !is_len) { kc_put(out, start, (size_t)(r.p - start)); continue; }
    kc_bytes g = {0};
    bool ok = kc_rewrite_graph(k, set, sub, &g);
    if (ok) kc_put_len(out, 7, g.p, g.n);
    free(g.p);
    if (!ok) return false;
  }
  return true;
}

/* Imports the model with its static inputs bound to the first data set's values. */
static kiln_status kc_import_frozen(kc_run *k, const char *path) {
  int n_sets = 0;
  char **sets = kc_list_dir(k->c->dir, "test_data_set_", &n_sets);
  size_t len = 0;
  uint8_t *buf = n_sets ? kc_read_file(path, &len) : NULL;
  kc_bytes model = {0};
  kiln_status s = KILN_ERR_IO;
  if (buf && kc_rewrite_model(k, sets[0], buf, len, &model)) {
    konnx_options opt = {0};
    s = konnx_import(k->g, model.p, model.n, &opt);
  } else {
    kir_seterr(k->g, s, "cannot bind the static inputs to %s's values", n_sets ? sets[0] : "test_data_set_0");
  }
  free(model.p);
  free(buf);
  kc_free_strs(sets, n_sets);
  return s;
}

static bool kc_import(kc_run *k) {
  if (k->c->m.scan_error) { kc_both(k->r, KC_ERROR, "%s", k->c->m.scan_error); return false; }
  if (k->c->m.n_outputs > KC_MAX_IO || k->c->m.n_inputs > KC_MAX_IO) {
    kc_both(k->r, KC_ERROR, "more than %d inputs or outputs", KC_MAX_IO);
    return false;
  }
  k->g = kir_graph_create();
  char *path = kc_join(k->c->dir, "model.onnx");
  konnx_options opt = {0};
  kiln_status s = KILN_ERR_NOMEM;
  if (k->g) s = k->c->m.n_frozen ? kc_import_frozen(k, path) : konnx_import_file(k->g, path, &opt);
  free(path);
  if (s == KILN_OK) return true;
  /* The importer names the file first; the table names the case already. */
  const char *msg = k->g ? k->g->error : "out of memory", *colon = strstr(msg, ": ");
  if (msg[0] == '/' && colon) msg = colon + 2;
  kc_both(k->r, kc_from_kiln(s), "import: %s: %s", kiln_status_name(s), msg);
  return false;
}

/* Compares a column's outputs of one set with the expected ones. */
static kc_status kc_check_outputs(kc_run *k, int col, const kc_set *s, const kc_view *got) {
  for (int i = 0; i < s->n_out; i++) {
    kc_view want = kc_view_of(s->out[i]);
    char msg[KC_MSG - 32];
    if (kc_compare(k->c->m.outputs[i], &want, &got[i], msg, sizeof msg) != KC_PASS) {
      kc_col(k->r, col, KC_FAIL, "%s", msg);
      return KC_FAIL;
    }
  }
  return KC_PASS;
}

/* ---- reference column */

static void kc_note_unused(kc_result *r, const char *name) {
  size_t n = strlen(r->note);
  if (strstr(r->note, name)) return;
  snprintf(r->note + n, sizeof r->note - n, "%s'%s'", n ? ", " : "not imported (unused): ", name);
}

static kc_status kc_reference_set(kc_run *k, const kc_set *s) {
  kir_feed feeds[KC_MAX_IO];
  int32_t fetches[KC_MAX_IO], n_feeds = 0;
  for (int i = 0; i < s->n_in; i++) {
    if (kc_is_frozen(&k->c->m, s->in_name[i])) continue;
    const kir_node *n = kir_graph_find(k->g, s->in_name[i]);
    if (!n) { /* the importer leaves out inputs no output needs (Shape of x, Dropout's ratio) */
      kc_note_unused(k->r, s->in_name[i]);
      continue;
    }
    if (n->op != KIR_OP_PLACEHOLDER) {
      kc_col(k->r, 1, KC_ERROR, "graph input '%s' is a %s in the imported graph, not a placeholder",
             s->in_name[i], kir_op_table[n->op].name);
      return KC_ERROR;
    }
    /* NumPy has no bfloat16: the suite stores a BFLOAT16 input as UINT16 of the same bits. */
    if (n->type.dtype == KILN_BF16 && s->in[i]->type.dtype == KILN_U16) s->in[i]->type.dtype = KILN_BF16;
    feeds[n_feeds++] = (kir_feed){n->id, s->in[i]};
  }
  for (int i = 0; i < s->n_out; i++) {
    const kir_node *n = kir_graph_find(k->g, k->c->m.outputs[i]);
    if (!n) { kc_col(k->r, 1, KC_ERROR, "output '%s' is not in the imported graph", k->c->m.outputs[i]); return KC_ERROR; }
    fetches[i] = n->id;
  }
  kir_tensor *outs[KC_MAX_IO] = {0};
  kiln_status st = kir_interp_run(k->g, NULL, feeds, n_feeds, fetches, s->n_out, NULL, 0, outs);
  if (st != KILN_OK) {
    kc_col(k->r, 1, kc_from_kiln(st), "interp: %s: %s", kiln_status_name(st), k->g->error);
    return k->r->st[1];
  }
  kc_view got[KC_MAX_IO];
  for (int i = 0; i < s->n_out; i++) got[i] = kc_view_of(outs[i]);
  kc_status r = kc_check_outputs(k, 1, s, got);
  for (int i = 0; i < s->n_out; i++) kir_tensor_free(outs[i]);
  return r;
}

static void kc_reference(kc_run *k) {
  for (int i = 0; i < k->n_sets; i++)
    if (kc_reference_set(k, &k->sets[i]) != KC_PASS) return;
  k->r->st[1] = KC_PASS;
}

/* ---- compiled column */

/* Optimizes a copy of the imported graph with the default pipeline and compiles it. */
static bool kc_compile(kc_run *k, const char *artifact) {
  kir_graph *g = kir_graph_clone(k->g);
  if (!g) { kc_col(k->r, 0, KC_ERROR, "out of memory cloning the graph"); return false; }
  const char *const *roots = (const char *const *)k->c->m.outputs;
  int32_t n_roots = k->c->m.n_outputs;
  kps_options po = {0};
  kps_context ctx = {.roots = roots, .n_roots = n_roots};
  kiln_status s = kps_run(g, &po, &ctx);
  const char *stage = "passes";
  if (s == KILN_OK) {
    kcg_options co = {.pipeline = KPS_DEFAULT_PIPELINE};
    s = kcg_compile_cpu(g, roots, n_roots, &co, artifact);
    stage = "compile";
  }
  if (s != KILN_OK) kc_col(k->r, 0, kc_from_kiln(s), "%s: %s: %s", stage, kiln_status_name(s), g->error);
  kir_graph_destroy(g);
  return s == KILN_OK;
}

static kc_status kc_rt_fail(kc_run *k, const char *what, kiln_rt_status s, const char *err) {
  kc_col(k->r, 0, s == KILN_RT_ERR_UNSUPPORTED ? KC_UNSUPPORTED : KC_ERROR, "%s: %s: %s", what,
         kiln_rt_status_name(s), err);
  return k->r->st[0];
}

/* Binds each model input to the set's tensor of that name; one without test data gets
 * NULL data, which the runtime answers with the input's default (an initializer that is
 * also a graph input) or a feed error naming it. */
static void kc_bind_inputs(kiln_rt_model *m, const kc_set *s, kiln_rt_buffer *in) {
  int n = kiln_rt_model_num_inputs(m);
  for (int i = 0; i < n; i++) {
    kiln_rt_tensor_info info;
    in[i] = (kiln_rt_buffer){NULL, 0};
    if (kiln_rt_model_input(m, i, &info) != KILN_RT_OK) continue;
    for (int j = 0; j < s->n_in; j++)
      if (strcmp(s->in_name[j], info.name) == 0) {
        /* An empty tensor still gets non-NULL data: NULL would ask for the default. */
        static _Alignas(64) unsigned char empty[64];
        int64_t nb = kir_type_nbytes(&s->in[j]->type);
        void *data = nb > 0 && s->in[j]->data ? s->in[j]->data : empty;
        in[i] = (kiln_rt_buffer){data, nb > 0 ? (size_t)nb : 0};
      }
  }
}

/* Output buffers in the artifact's order, poisoned so an unwritten element shows. */
static kc_status kc_alloc_outputs(kc_run *k, kiln_rt_model *m, const kc_set *s,
                                  kiln_rt_buffer *out, kc_view *got, int64_t (*dims)[KILN_MAX_RANK]) {
  for (int i = 0; i < s->n_out; i++) {
    int j = kiln_rt_model_find_output(m, k->c->m.outputs[i]);
    kiln_rt_tensor_info info;
    if (j != i || kiln_rt_model_output(m, j, &info) != KILN_RT_OK) {
      kc_col(k->r, 0, KC_ERROR, "run: output '%s' is at index %d of the artifact, not %d",
             k->c->m.outputs[i], j, i);
      return KC_ERROR;
    }
    out[i] = (kiln_rt_buffer){malloc(info.nbytes ? info.nbytes : 1), info.nbytes};
    if (!out[i].data) { kc_col(k->r, 0, KC_ERROR, "out of memory"); return KC_ERROR; }
    memset(out[i].data, 0x7f, info.nbytes);
    for (int d = 0; d < info.rank && d < KILN_MAX_RANK; d++) dims[i][d] = info.dims[d];
    got[i] = (kc_view){(kiln_dtype)info.dtype, info.rank, dims[i], out[i].data};
  }
  return KC_PASS;
}

static kc_status kc_compiled_set(kc_run *k, kiln_rt_model *m, kiln_rt_context *c, const kc_set *s) {
  kiln_rt_buffer in[KC_MAX_IO], out[KC_MAX_IO] = {{0}};
  kc_view got[KC_MAX_IO];
  int64_t dims[KC_MAX_IO][KILN_MAX_RANK];
  int n_in = kiln_rt_model_num_inputs(m);
  if (n_in > KC_MAX_IO || kiln_rt_model_num_outputs(m) != s->n_out) {
    kc_col(k->r, 0, KC_ERROR, "run: the artifact has %d inputs and %d outputs; the model %d outputs",
           n_in, kiln_rt_model_num_outputs(m), s->n_out);
    return KC_ERROR;
  }
  kc_bind_inputs(m, s, in);
  kc_status r = kc_alloc_outputs(k, m, s, out, got, dims);
  if (r == KC_PASS) {
    kiln_rt_status st = kiln_rt_run(c, in, n_in, out, s->n_out);
    r = st == KILN_RT_OK ? kc_check_outputs(k, 0, s, got) : kc_rt_fail(k, "run", st, kiln_rt_context_error(c));
  }
  for (int i = 0; i < s->n_out; i++) free(out[i].data);
  return r;
}

static void kc_compiled(kc_run *k) {
  char *artifact = kc_join(k->slot, "case.kart");
  if (!kc_compile(k, artifact)) { unlink(artifact); free(artifact); return; }
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  kiln_rt_status s = kiln_rt_model_open(artifact, &m);
  if (s != KILN_RT_OK) kc_rt_fail(k, "open", s, kiln_rt_model_error(m));
  else if ((s = kiln_rt_context_create(m, &c)) != KILN_RT_OK) kc_rt_fail(k, "context", s, kiln_rt_model_error(m));
  bool ok = s == KILN_RT_OK;
  for (int i = 0; ok && i < k->n_sets; i++) ok = kc_compiled_set(k, m, c, &k->sets[i]) == KC_PASS;
  if (ok) k->r->st[0] = KC_PASS;
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  unlink(artifact);
  free(artifact);
}

/* Runs one case; r receives both columns. */
static void kc_run_case(const kc_case *c, const char *slot, kc_result *r) {
  kc_run *k = calloc(1, sizeof *k);
  if (!k) { kc_both(r, KC_ERROR, "out of memory"); return; }
  k->c = c;
  k->slot = slot;
  k->r = r;
  r->st[0] = r->st[1] = KC_ERROR; /* until a column says otherwise */
  snprintf(r->msg[0], KC_MSG, "(no result)");
  snprintf(r->msg[1], KC_MSG, "(no result)");
  if (kc_import(k) && kc_load_sets(k)) {
    kc_reference(k);
    kc_compiled(k);
  }
  kc_free_sets(k);
  kir_graph_destroy(k->g);
  free(k);
}

/* ------------------------------------------------------------ workers (parent) -- */

typedef struct kc_slot {
  char dir[256];
  pid_t pid; /* 0: idle */
  int fd;    /* read end of the child's result pipe */
  int ci;    /* case index */
  double start;
} kc_slot;

static volatile sig_atomic_t kc_stop;
static void kc_on_signal(int sig) { kc_stop = sig; }

/* Removes dir and what is under it (the compiler's temp files may sit in subfolders);
 * links are removed, never followed. */
static void kc_rm_tree(const char *dir) {
  DIR *d = dir[0] ? opendir(dir) : NULL;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *p = kc_join(dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) kc_rm_tree(p);
    else unlink(p);
    free(p);
  }
  if (d) closedir(d);
  if (dir[0]) rmdir(dir);
}

/* The child: its own process group (so a timeout kills the compiler it started too),
 * temp files and output under the slot directory, one write of the result. */
static void kc_child(const kc_case *c, const kc_slot *s, int wfd, const kc_opts *o) {
  setpgid(0, 0);
  alarm((unsigned)o->timeout + 10); /* a backstop should the parent itself be killed */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  setenv("TMPDIR", s->dir, 1);
  if (!o->verbose) {
    char *log = kc_join(s->dir, "log.txt");
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    free(log);
    if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
  }
  kc_result r;
  memset(&r, 0, sizeof r);
  kc_run_case(c, s->dir, &r);
  ssize_t w = write(wfd, &r, sizeof r);
  /* exit, not _exit: under a sanitizer build LeakSanitizer then checks the case and
   * fails the exit status, which the parent reports. */
  exit(w == (ssize_t)sizeof r ? 0 : 3);
}

static bool kc_start(kc_slot *s, kc_case *cases, int ci, const kc_opts *o) {
  int p[2];
  if (pipe(p) != 0) return false;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) { close(p[0]); close(p[1]); return false; }
  if (pid == 0) { close(p[0]); kc_child(&cases[ci], s, p[1], o); }
  setpgid(pid, pid);
  close(p[1]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  s->pid = pid;
  s->fd = p[0];
  s->ci = ci;
  s->start = kc_now();
  return true;
}

/* Last line of the slot's log (a sanitizer report, an abort message), for crashes. */
static void kc_log_tail(const kc_slot *s, char *buf, size_t n) {
  buf[0] = 0;
  char *path = kc_join(s->dir, "log.txt");
  FILE *f = fopen(path, "r");
  free(path);
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (strspn(line, " \t\r\n") != strlen(line)) {
      size_t len = strcspn(line, "\r\n");
      if (len >= n) len = n - 1;
      memcpy(buf, line, len);
      buf[len] = 0;
    }
  fclose(f);
}

static void kc_finish(kc_slot *s, kc_case *c, int wstatus, bool timed_out) {
  kc_result r;
  ssize_t got = read(s->fd, &r, sizeof r);
  close(s->fd);
  char tail[400];
  kc_log_tail(s, tail, sizeof tail);
  c->secs = kc_now() - s->start;
  if (timed_out)
    kc_both(&c->r, KC_TIMEOUT, "timeout after %.0f s%s%s", c->secs, tail[0] ? "; log: " : "", tail);
  else if (WIFSIGNALED(wstatus))
    kc_both(&c->r, KC_CRASH, "crash (signal %d, %s)%s%s", WTERMSIG(wstatus),
            strsignal(WTERMSIG(wstatus)), tail[0] ? "; log: " : "", tail);
  else if (got != (ssize_t)sizeof r)
    kc_both(&c->r, KC_CRASH, "crash (exit status %d, no result)%s%s", WEXITSTATUS(wstatus),
            tail[0] ? "; log: " : "", tail);
  else if (WEXITSTATUS(wstatus) != 0)
    kc_both(&c->r, KC_CRASH, "crash (exit status %d after the result: a sanitizer report?)%s%s",
            WEXITSTATUS(wstatus), tail[0] ? "; log: " : "", tail);
  else
    c->r = r;
  c->outcome = c->r.st[0] > c->r.st[1] ? c->r.st[0] : c->r.st[1];
  s->pid = 0;
}

static void kc_print_case(const kc_case *c, bool verbose);

static void kc_reap(kc_slot *slots, int jobs, kc_case *cases, const kc_opts *o) {
  for (int i = 0; i < jobs; i++) {
    if (!slots[i].pid) continue;
    int ws = 0;
    kc_case *c = &cases[slots[i].ci];
    pid_t p = waitpid(slots[i].pid, &ws, WNOHANG);
    if (p == slots[i].pid) kc_finish(&slots[i], c, ws, false);
    else if (kc_now() - slots[i].start > o->timeout || kc_stop) {
      kill(-slots[i].pid, SIGKILL);
      waitpid(slots[i].pid, &ws, 0);
      kc_finish(&slots[i], c, ws, true);
    }
    if (!slots[i].pid && o->verbose) {
      printf("[%6.2f s]", c->secs);
      kc_print_case(c, true);
      fflush(stdout);
    }
  }
}

static bool kc_make_slots(kc_slot *slots, int jobs) {
  const char *tmp = getenv("TMPDIR");
  for (int i = 0; i < jobs; i++) {
    snprintf(slots[i].dir, sizeof slots[i].dir, "%s/kiln-conformance-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(slots[i].dir)) {
      fprintf(stderr, "conformance: mkdtemp %s: %s\n", slots[i].dir, strerror(errno));
      slots[i].dir[0] = 0;
      return false;
    }
  }
  return true;
}

static void kc_run_all(kc_case *cases, const int *sel, int n_sel, const kc_opts *o) {
  kc_slot *slots = calloc((size_t)o->jobs, sizeof *slots);
  if (!slots) { fputs("conformance: out of memory\n", stderr); exit(2); }
  bool ok = kc_make_slots(slots, o->jobs);
  int next = 0, done = 0;
  while (ok && done < n_sel && !kc_stop) {
    for (int i = 0; i < o->jobs && next < n_sel; i++) {
      if (slots[i].pid) continue;
      if (!kc_start(&slots[i], cases, sel[next], o)) { ok = false; break; }
      next++;
    }
    int before = 0, after = 0;
    for (int i = 0; i < o->jobs; i++) before += slots[i].pid != 0;
    kc_reap(slots, o->jobs, cases, o);
    for (int i = 0; i < o->jobs; i++) after += slots[i].pid != 0;
    done += before - after;
    if (before == after) usleep(2000);
  }
  if (!ok) fputs("conformance: could not start a worker\n", stderr);
  for (int i = 0; i < o->jobs; i++) {
    if (slots[i].pid) {
      kill(-slots[i].pid, SIGKILL);
      int ws;
      waitpid(slots[i].pid, &ws, 0);
      close(slots[i].fd);
    }
    kc_rm_tree(slots[i].dir);
  }
  free(slots);
}

/* ------------------------------------------------------------ report ------------ */

typedef struct kc_row {
  const char *op;
  bool listed;
  int n[KC_NSTATUS], ref_pass, total;
} kc_row;

static int kc_row_cmp(const void *a, const void *b) {
  return strcmp(((const kc_row *)a)->op, ((const kc_row *)b)->op);
}

/* One row per operator; without a filter also the listed operators the data has no case
 * of (so a missing one shows). */
static kc_row *kc_rows(const kc_case *cases, const int *sel, int n_sel, bool filtered, int *n_rows) {
  int n_listed = 0;
  while (kc_listed[n_listed]) n_listed++;
  kc_row *rows = kc_xrealloc(NULL, sizeof *rows * (size_t)(n_sel + n_listed));
  int n = 0;
  for (int i = 0; !filtered && i < n_listed; i++) rows[n++] = (kc_row){.op = kc_listed[i], .listed = true};
  for (int s = 0; s < n_sel; s++) {
    const kc_case *c = &cases[sel[s]];
    int r = 0;
    while (r < n && strcmp(rows[r].op, c->op) != 0) r++;
    if (r == n) rows[n++] = (kc_row){.op = c->op, .listed = c->listed};
    rows[r].n[c->outcome]++;
    rows[r].ref_pass += c->r.st[1] == KC_PASS;
    rows[r].total++;
  }
  if (n) qsort(rows, (size_t)n, sizeof *rows, kc_row_cmp);
  *n_rows = n;
  return rows;
}

static void kc_print_row(const kc_row *r, const char *name, const char *mark) {
  printf("%-26s %1s %5d %5d %5d %5d %5d %5d %5d   %5d\n", name, mark, r->total, r->n[KC_PASS],
         r->n[KC_FAIL], r->n[KC_ERROR], r->n[KC_UNSUPPORTED], r->n[KC_CRASH], r->n[KC_TIMEOUT],
         r->ref_pass);
}

static void kc_print_table(const kc_case *cases, const int *sel, int n_sel, bool filtered) {
  int n_rows;
  kc_row *rows = kc_rows(cases, sel, n_sel, filtered, &n_rows);
  kc_row all = {.op = "total"}, listed = {.op = "listed"};
  printf("%-26s %1s %5s %5s %5s %5s %5s %5s %5s   %5s\n", "operator", "*", "cases", "pass",
         "fail", "error", "unsup", "crash", "tmout", "ref");
  for (int i = 0; i < n_rows; i++) {
    kc_print_row(&rows[i], rows[i].op, rows[i].listed ? "*" : "");
    for (int k = 0; k < KC_NSTATUS; k++) {
      all.n[k] += rows[i].n[k];
      if (rows[i].listed) listed.n[k] += rows[i].n[k];
    }
    all.total += rows[i].total;
    all.ref_pass += rows[i].ref_pass;
    if (rows[i].listed) { listed.total += rows[i].total; listed.ref_pass += rows[i].ref_pass; }
  }
  printf("%.*s\n", 79, "---------------------------------------------------------------"
                       "-------------------------------------");
  kc_print_row(&listed, "total, listed operators", "*");
  kc_print_row(&all, "total, all operators", "");
  free(rows);
}

/* One line per message: newlines (compiler output) folded into " | ". */
static void kc_print_msg(FILE *out, const char *m, size_t max) {
  size_t n = 0;
  for (; *m && n < max; m++, n++) {
    if (*m == '\n') { if (m[1]) fputs(" | ", out); }
    else fputc(*m, out);
  }
  if (*m) fputs("...", out);
}

static void kc_print_case(const kc_case *c, bool verbose) {
  printf("  %-52s %-18s %-12s ", c->name, c->op, kc_status_names[c->outcome]);
  if (c->outcome == KC_PASS) {
    if (c->m.n_frozen) printf("(static inputs bound to the test data) ");
    if (c->r.note[0]) printf("(inputs %s)", c->r.note);
    putchar('\n');
    return;
  }
  size_t max = verbose ? KC_MSG : 200;
  bool same = c->r.st[0] == c->r.st[1] && strcmp(c->r.msg[0], c->r.msg[1]) == 0;
  if (same) kc_print_msg(stdout, c->r.msg[0], max);
  for (int col = 0; !same && col < 2; col++) {
    if (c->r.st[col] == KC_PASS) continue;
    printf("%s%s %s: ", col && c->r.st[0] != KC_PASS ? "; " : "", col ? "reference" : "compiled",
           kc_status_names[c->r.st[col]]);
    kc_print_msg(stdout, c->r.msg[col], max);
  }
  if (c->gap) printf("  [known gap: %s]", c->gap);
  putchar('\n');
}

static bool kc_minor(const kc_case *c) {
  return c->outcome == KC_UNSUPPORTED && !c->listed;
}

/* Non-passing cases, one line each; without -v the unsupported cases of operators
 * outside issue 4's list are folded to one line per operator (its first case's reason). */
static void kc_print_failures(const kc_case *cases, const int *sel, int n_sel, bool verbose) {
  int n = 0, n_minor = 0;
  for (int s = 0; s < n_sel; s++) {
    n += cases[sel[s]].outcome != KC_PASS;
    n_minor += kc_minor(&cases[sel[s]]);
  }
  printf("\nnon-passing cases (%d)%s:\n", n, verbose || !n_minor ? "" : ", other operators' unsupported ones folded per operator");
  for (int s = 0; s < n_sel; s++)
    if (cases[sel[s]].outcome != KC_PASS && (verbose || !kc_minor(&cases[sel[s]])))
      kc_print_case(&cases[sel[s]], verbose);
  if (verbose || !n_minor) return;
  printf("\nunsupported, other operators (%d cases; -v lists each):\n", n_minor);
  for (int s = 0; s < n_sel; s++) {
    const kc_case *c = &cases[sel[s]];
    bool first = kc_minor(c);
    for (int t = 0; first && t < s; t++)
      first = !(kc_minor(&cases[sel[t]]) && strcmp(cases[sel[t]].op, c->op) == 0);
    if (!first) continue;
    int count = 0;
    for (int t = s; t < n_sel; t++) count += kc_minor(&cases[sel[t]]) && strcmp(cases[sel[t]].op, c->op) == 0;
    char what[64];
    snprintf(what, sizeof what, "%s (%d)", c->op, count);
    printf("  %-30s e.g. %s: ", what, c->name);
    kc_print_msg(stdout, c->r.msg[0], 160);
    putchar('\n');
  }
}

/* The ctest's rules; prints each broken one, returns how many. */
static int kc_gate(const kc_case *cases, const int *sel, int n_sel, const kc_gaps *gaps, bool filtered) {
  int bad = 0;
  printf("\ngate:\n");
  for (int s = 0; s < n_sel; s++) {
    const kc_case *c = &cases[sel[s]];
    const char *why = NULL;
    if (c->outcome == KC_CRASH || c->outcome == KC_TIMEOUT) why = "crashes or hangs";
    else if (c->outcome == KC_PASS && c->gap) why = "passes now: remove it from known_gaps.txt";
    else if (c->gap) continue;
    else if (c->outcome == KC_FAIL) why = "gives a wrong answer";
    else if (c->outcome == KC_ERROR) why = "fails with an error that should not happen";
    else if (c->outcome == KC_UNSUPPORTED && c->listed) why = "is unsupported but its operator is listed";
    if (!why) continue;
    printf("  %s (%s) %s\n", c->name, c->op, why);
    bad++;
  }
  for (int g = 0; !filtered && g < gaps->n; g++)
    if (!gaps->v[g].seen) printf("  warning: known_gaps.txt names %s, which the data does not have\n", gaps->v[g].name);
  printf(bad ? "  %d broken rule(s)\n" : "  ok\n", bad);
  return bad;
}

static void kc_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
  fputc('"', f);
}

static bool kc_write_json(const char *path, const kc_case *cases, const int *sel, int n_sel, double secs) {
  FILE *f = fopen(path, "w");
  if (!f) { fprintf(stderr, "conformance: cannot write %s: %s\n", path, strerror(errno)); return false; }
  fprintf(f, "{\"elapsed_s\": %.2f, \"rtol\": %g, \"atol\": %g, \"cases\": [", secs, KC_RTOL, KC_ATOL);
  for (int s = 0; s < n_sel; s++) {
    const kc_case *c = &cases[sel[s]];
    fprintf(f, "%s\n {\"name\": ", s ? "," : "");
    kc_json_str(f, c->name);
    fputs(", \"operator\": ", f);
    kc_json_str(f, c->op);
    fprintf(f, ", \"listed\": %s, \"outcome\": \"%s\", \"seconds\": %.3f", c->listed ? "true" : "false",
            kc_status_names[c->outcome], c->secs);
    for (int col = 0; col < 2; col++) {
      fprintf(f, ", \"%s\": {\"status\": \"%s\", \"message\": ", col ? "reference" : "compiled",
              kc_status_names[c->r.st[col]]);
      kc_json_str(f, c->r.st[col] == KC_PASS ? "" : c->r.msg[col]);
      fputc('}', f);
    }
    fputs(", \"static_inputs\": [", f);
    for (int i = 0; i < c->m.n_frozen; i++) {
      if (i) fputs(", ", f);
      kc_json_str(f, c->m.frozen[i]);
    }
    fputs("], \"note\": ", f);
    kc_json_str(f, c->r.note);
    if (c->gap) { fputs(", \"known_gap\": ", f); kc_json_str(f, c->gap); }
    fputc('}', f);
  }
  fputs("\n]}\n", f);
  bool ok = fclose(f) == 0;
  if (!ok) fprintf(stderr, "conformance: cannot write %s\n", path);
  return ok;
}

/* ------------------------------------------------------------ main -------------- */

static int usage(const char *fmt, const char *arg) {
  if (fmt) { fprintf(stderr, "conformance: "); fprintf(stderr, fmt, arg); fputc('\n', stderr); }
  fprintf(stderr,
          "usage: conformance [--data DIR] [--filter SUBSTR] [--jobs N] [--timeout SECONDS]\n"
          "                   [--known-gaps FILE|none] [--json FILE] [--no-static] [--list] [-v]\n"
          "Runs the ONNX backend node tests (default %s) through import, the default\n"
          "pipeline, kcg_compile_cpu and libkiln_rt, and through the reference interpreter.\n"
          "Exit 0 when the gate holds, 1 when a rule breaks, 2 on usage errors, %d when the\n"
          "data is not installed.\n", KC_DEFAULT_DATA, KC_SKIP);
  return 2;
}

static bool kc_valued_option(const char *a) {
  static const char *const names[] = {"--data", "--filter", "--json", "--known-gaps", "--jobs", "--timeout", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(a, names[i]) == 0) return true;
  return false;
}

static int kc_parse(int argc, char **argv, kc_opts *o) {
  *o = (kc_opts){.data = KC_DEFAULT_DATA, .gaps = KC_KNOWN_GAPS, .jobs = 2, .timeout = 60};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    if (!strcmp(a, "--list")) o->list = true;
    else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
    else if (!strcmp(a, "--no-static")) o->no_static = true;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(NULL, NULL);
    else if (!kc_valued_option(a)) return usage("unknown option %s", a);
    else if (!has) return usage("%s needs a value", a);
    else if (!strcmp(a, "--data")) o->data = argv[++i];
    else if (!strcmp(a, "--filter")) o->filter = argv[++i];
    else if (!strcmp(a, "--json")) o->json = argv[++i];
    else if (!strcmp(a, "--known-gaps")) o->gaps = strcmp(argv[++i], "none") ? argv[i] : NULL;
    else if (!strcmp(a, "--jobs")) {
      o->jobs = atoi(argv[++i]);
      if (o->jobs < 1 || o->jobs > 256) return usage("--jobs %s: expected 1..256", argv[i]);
    } else if (!strcmp(a, "--timeout")) {
      o->timeout = atof(argv[++i]);
      if (!(o->timeout > 0 && o->timeout <= 86400)) return usage("--timeout %s: expected 0 < seconds <= 86400", argv[i]);
    } else return usage("unknown option %s", a);
  }
  return 0;
}

static int *kc_select(const kc_case *cases, int n, const char *filter, int *n_sel) {
  int *sel = kc_xrealloc(NULL, sizeof *sel * (size_t)(n ? n : 1));
  *n_sel = 0;
  for (int i = 0; i < n; i++)
    if (!filter || strstr(cases[i].name, filter)) sel[(*n_sel)++] = i;
  return sel;
}

static void kc_free_cases(kc_case *cases, int n) {
  for (int i = 0; i < n; i++) {
    free(cases[i].name);
    free(cases[i].dir);
    free(cases[i].op);
    kc_model_free(&cases[i].m);
  }
  free(cases);
}

static int kc_main(const kc_opts *o, kc_case *cases, int n, kc_gaps *gaps) {
  int n_sel;
  int *sel = kc_select(cases, n, o->filter, &n_sel);
  if (o->list) {
    for (int s = 0; s < n_sel; s++)
      printf("%s %s%s\n", cases[sel[s]].name, cases[sel[s]].op, cases[sel[s]].listed ? " *" : "");
    free(sel);
    return 0;
  }
  double t0 = kc_now();
  kc_run_all(cases, sel, n_sel, o);
  double secs = kc_now() - t0;
  int rc = 0;
  if (kc_stop) {
    fprintf(stderr, "conformance: interrupted\n");
    rc = 130;
  } else {
    printf("ONNX node conformance: %s, %d cases, %d jobs; compiled (import -> %s -> cc) and "
           "reference (kir_interp_run), rtol %g atol %g\n\n", o->data, n_sel, o->jobs,
           KPS_DEFAULT_PIPELINE, KC_RTOL, KC_ATOL);
    kc_print_table(cases, sel, n_sel, o->filter != NULL);
    kc_print_failures(cases, sel, n_sel, o->verbose);
    rc = kc_gate(cases, sel, n_sel, gaps, o->filter != NULL) ? 1 : 0;
    printf("\nelapsed %.1f s\n", secs);
    if (o->json && !kc_write_json(o->json, cases, sel, n_sel, secs)) rc = 1;
  }
  free(sel);
  return rc;
}

int main(int argc, char **argv) {
  kc_opts o;
  int rc = kc_parse(argc, argv, &o);
  if (rc) return rc;
  if (!kc_is_dir(o.data)) {
    printf("skipped: libonnx-testdata not installed (no %s; apt-get install libonnx-testdata)\n", o.data);
    return KC_SKIP;
  }
  kc_gaps gaps;
  if (!kc_gaps_load(o.gaps, &gaps)) return 2;
  signal(SIGINT, kc_on_signal);
  signal(SIGTERM, kc_on_signal);
  int n;
  kc_case *cases = kc_discover(&o, &n);
  kc_gaps_apply(&gaps, cases, n);
  rc = n ? kc_main(&o, cases, n, &gaps) : (printf("no test_* case with a model.onnx under %s\n", o.data), 2);
  kc_free_cases(cases, n);
  kc_gaps_free(&gaps);
  return rc;
}
