/* kiln_main.c — the `kiln` command line: subcommand dispatch and the helpers the
 * subcommands share (.npy conversion, default outputs, the pass pipeline; loading
 * models is in kiln_cmd_import.c).
 * The only place in Kiln that prints to the terminal and exits. */
#include "kiln_tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/kiln_artifact.h"

static const char *usage_text =
    "usage: kiln COMMAND [ARGS]\n"
    "  import  MODEL.onnx -o OUT.kiln [IMPORT...] [--log]\n"
    "  show    MODEL|ARTIFACT [--format text|dot|json] [--full-constants]\n"
    "          MODEL.onnx [--format text|json]  the ONNX file's summary;\n"
    "          MODEL.onnx --imported [--format text|dot|json] [IMPORT...]  the Kiln graph\n"
    "  run     MODEL|ARTIFACT [--target ref|cpu] [--input NAME=FILE.npy|FILE.pb]...\n"
    "          [--output NAME=FILE.npy]... [--fetch NAME]... [--random-inputs SEED]\n"
    "          [--save-inputs DIR] [--print] [IMPORT...]\n"
    "  opt     MODEL -o OUT.kiln [--passes LIST | -O0|-O1|-O2] [--fetch NAME]...\n"
    "          [--print-before=P] [--print-after=P] [--print-after-all]\n"
    "          [--print-after-change] [--verify-each] [--stats] [--timing]\n"
    "          [--disable-pass=P] [--dump-dir DIR] [--explain-fusion] [IMPORT...]\n"
    "  compile MODEL [-o ARTIFACT] [--target cpu|cuda [--cuda-arch sm_90,compute_90]]\n"
    "          [--passes LIST] [--fetch NAME]...\n"
    "          [--device NAME]... [--strict-placement] [--log-placement [--format text|json]]\n"
    "          [--print-pass-log] [--print-after-all] [--cc CC] [--cpu host|generic]\n"
    "          [--emit-c DIR [--weights c-array|file] [--prefix NAME]] [IMPORT...]  standalone C:\n"
    "          DIR/NAME.c, NAME.h (+ NAME.weights); cc app.c NAME.c -lopenblas -lm\n"
    "  compare A B [--tol T]   normwise relative error max|a-b| / max|b| (.npy or .pb)\n"
    "  bench   MODEL|ARTIFACT [--target cpu] [--iterations N] [--warmup N] [--inputs K]\n"
    "          [--threads T] [--input NAME=FILE.npy]... [--format text|json] [--cold]\n"
    "          [IMPORT...]\n"
    "MODEL is a .kiln graph, binary or text (`kiln show M --format text --full-constants`),\n"
    "or an ONNX model (.onnx), imported on the fly; IMPORT is --input-shape NAME=d0,d1,...\n"
    "(a shape for an input with symbolic dims) or --allow-external-data (tensor data in\n"
    "files beside the model). ARTIFACT is a file written by `kiln compile`. LIST: passes,\n"
    "e.g. fold{max-bytes=4096},dce. Tensors: .npy, or ONNX TensorProto .pb as inputs.\n";

void ktool_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f) printf("\\u%04x", *p);
    else putchar(*p);
  }
  putchar('"');
}

int ktool_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kiln: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return KTOOL_ERR;
}

int ktool_usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kiln %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fputs(usage_text, stderr);
  va_end(ap);
  return KTOOL_USAGE;
}

const char *ktool_value(const char *cmd, int *i, int argc, char **argv) {
  if (*i + 1 >= argc) {
    ktool_usage(cmd, "%s needs a value", argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

bool ktool_is_artifact(const char *path) {
  char magic[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return n == sizeof magic && memcmp(magic, KART_MAGIC, sizeof magic) == 0;
}

bool ktool_parse_binding(const char *cmd, const char *arg, ktool_binding *out) {
  const char *eq = arg ? strchr(arg, '=') : NULL;
  if (!eq || eq == arg || !eq[1]) {
    ktool_usage(cmd, "expected NAME=FILE.npy, got '%s'", arg ? arg : "");
    return false;
  }
  /* The name is a prefix of arg; keep it NUL-terminated without allocating by
   * splitting the (writable) argv string. */
  *(char *)eq = '\0';
  out->name = arg;
  out->path = eq + 1;
  return true;
}

static bool is_output_candidate(const kir_node *n) {
  if (kir_op_has(n->op, KIR_F_NO_OUTPUT)) return false;
  return n->op != KIR_OP_PLACEHOLDER && n->op != KIR_OP_CONSTANT && n->op != KIR_OP_VARIABLE;
}

int32_t ktool_default_outputs(const kir_graph *g, const char **names, int32_t max) {
  int32_t count = 0;
  for (int32_t i = 0; i < g->n_nodes && count < max; i++) {
    const kir_node *n = g->nodes[i];
    if (is_output_candidate(n) && kir_graph_count_uses(g, i) == 0) names[count++] = n->name;
  }
  return count;
}

bool ktool_roots_init(ktool_roots *r, const kir_graph *g, const char *const *given,
                      int32_t n_given) {
  const char *names[KTOOL_MAX_ARGS];
  int32_t n = n_given;
  if (n_given) memcpy(names, given, sizeof(char *) * (size_t)n_given);
  else n = ktool_default_outputs(g, names, KTOOL_MAX_ARGS);
  r->n = 0;
  for (int32_t i = 0; i < n; i++) {
    if (!(r->names[i] = strdup(names[i]))) {
      ktool_roots_free(r);
      ktool_error("out of memory");
      return false;
    }
    r->n = i + 1;
  }
  return true;
}

void ktool_roots_free(ktool_roots *r) {
  for (int32_t i = 0; i < r->n; i++) free(r->names[i]);
  r->n = 0;
}

kir_tensor *ktool_read_npy(const char *path) {
  char err[512];
  kiln_rt_npy npy = {0};
  if (kiln_rt_npy_read(path, &npy, err, sizeof err) != KILN_RT_OK) {
    ktool_error("%s", err);
    return NULL;
  }
  kir_type t = {.dtype = (kiln_dtype)npy.dtype, .rank = npy.rank};
  memcpy(t.dims, npy.dims, sizeof t.dims);
  kir_tensor *out = kir_tensor_new(&t);
  if (out) memcpy(out->data, npy.data, npy.nbytes);
  else ktool_error("%s: out of memory", path);
  kiln_rt_npy_free(&npy);
  return out;
}

bool ktool_write_npy(const char *path, const kir_tensor *t) {
  char err[512];
  if (kiln_rt_npy_write(path, t->type.dtype, t->type.rank, t->type.dims, t->data, err,
                        sizeof err) != KILN_RT_OK) {
    ktool_error("%s", err);
    return false;
  }
  return true;
}

void ktool_print_tensor(const char *name, const kir_tensor *t, int limit) {
  char ty[128];
  kir_type_format(&t->type, ty, sizeof ty);
  int64_t n = kir_type_numel(&t->type);
  printf("%s %s = [", name, ty);
  for (int64_t i = 0; i < n && i < limit; i++) {
    if (kir_dtype_is_float(t->type.dtype)) /* f16/bf16 widened exactly */
      printf("%s%.7g", i ? ", " : "", kir_tensor_get_f(t, i));
    else if (kir_dtype_is_unsigned(t->type.dtype)) /* u64 >= 2^63 stays positive */
      printf("%s%llu", i ? ", " : "", (unsigned long long)kir_tensor_get_i(t, i));
    else
      printf("%s%lld", i ? ", " : "", (long long)kir_tensor_get_i(t, i));
  }
  printf("%s]\n", n > limit ? ", ..." : "");
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void ktool_fill_random(kir_tensor *t, uint64_t seed) {
  int64_t n = kir_type_numel(&t->type);
  uint64_t s = seed;
  for (int64_t i = 0; i < n; i++) {
    double u = (double)(splitmix64(&s) >> 11) / 9007199254740992.0; /* [0, 1) */
    /* floats in [-1, 1) (rounded to the dtype), signed integers in [-8, 8), unsigned
     * ones in [0, 16), bool half true */
    kiln_dtype dt = t->type.dtype;
    if (kir_dtype_is_float(dt)) kir_tensor_set_f(t, i, 2 * u - 1);
    else if (kir_dtype_is_unsigned(dt)) kir_tensor_set_i(t, i, (int64_t)(u * 16));
    else if (dt == KILN_BOOL) kir_tensor_set_i(t, i, u >= 0.5);
    else kir_tensor_set_i(t, i, (int64_t)(u * 16) - 8);
  }
}

int ktool_optimize(kir_graph *g, const char *pipeline, const char *const *roots,
                   int32_t n_roots, bool print_after_all, bool verify_each, FILE *log) {
  kps_options opt = {.pipeline = pipeline, .verify_each = verify_each,
                     .print_after_all = print_after_all, .print_to = stdout, .log = log};
  kps_context ctx = {.roots = roots, .n_roots = n_roots, .log = log};
  if (kps_run(g, &opt, &ctx) != KILN_OK)
    return ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  return KTOOL_OK;
}

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"import", ktool_cmd_import}, {"show", ktool_cmd_show},   {"run", ktool_cmd_run},
    {"opt", ktool_cmd_opt},     {"compile", ktool_cmd_compile},
    {"compare", ktool_cmd_compare},
    {"bench", ktool_cmd_bench},
};

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fputs(usage_text, argc < 2 ? stderr : stdout);
    return argc < 2 ? KTOOL_USAGE : KTOOL_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
  return ktool_usage(argv[1], "unknown command");
}
