/* test_standalone.c — kcg_emit_c end to end: each graph goes through the default
 * pipeline, is written as standalone C, compiled with a driver (written here) by the
 * system cc with -std=c11 -Wall -Wextra -Werror -pedantic and no Kiln library, run on
 * seeded inputs, and compared with kir_interp_run at kt_tolerance; plus the entry's
 * status codes, both weights modes, hostile names, determinism and bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/kcg.h"
#include "tests/kt_graph.h"

#define MAX_T 8

/* Status codes as the generated header names them (checked against the header text). */
enum { S_OK = 0, S_NULL = 1, S_SIZE = 2, S_ALIGN = 3, S_ARENA = 4, S_WEIGHTS = 5, S_DIV0 = 6, S_INDEX = 7 };

/* The driver: argv = MODE DIR. Reads DIR/inI.bin, runs, runs again into fresh poisoned
 * outputs (the two must agree byte for byte), writes DIR/outJ.bin; MODE breaks one
 * argument to provoke a status; "names" writes the names arrays. Exit: the status, or
 * 100+ for its own failures. Compiled with -DHDR, -DPL (lower prefix_), -DPU (PREFIX_),
 * -DWFILE. */
static const char *const DRIVER =
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include HDR\n"
    "#define CAT_(a, b) a##b\n#define CAT(a, b) CAT_(a, b)\n#define L(x) CAT(PL, x)\n#define U(x) CAT(PU, x)\n"
    "static void *buf(size_t n) { void *p = aligned_alloc(64, (n + 64 + 63) / 64 * 64);\n"
    "  if (!p) exit(101);\n  memset(p, 0xA5, (n + 64 + 63) / 64 * 64); return p; }\n"
    "static void *load(const char *path, size_t n) { void *p = buf(n); FILE *f = fopen(path, \"rb\");\n"
    "  if (!f || fread(p, 1, n, f) != n || fgetc(f) != EOF) exit(102);\n  fclose(f); return p; }\n"
    "static void save(const char *path, const void *p, size_t n) { FILE *f = fopen(path, \"wb\");\n"
    "  if (!f || fwrite(p, 1, n, f) != n || fclose(f)) exit(103); }\n"
    "int main(int argc, char **argv) {\n"
    "  if (argc != 3) return 104;\n"
    "  const char *m = argv[1], *dir = argv[2]; char path[4096];\n"
    "  if (!strcmp(m, \"names\")) { snprintf(path, sizeof path, \"%s/names.bin\", dir);\n"
    "    FILE *f = fopen(path, \"wb\"); if (!f) return 103;\n"
    "    for (int i = 0; i < U(NUM_INPUTS); i++) fwrite(L(input_names)[i], 1, strlen(L(input_names)[i]) + 1, f);\n"
    "    for (int j = 0; j < U(NUM_OUTPUTS); j++) fwrite(L(output_names)[j], 1, strlen(L(output_names)[j]) + 1, f);\n"
    "    return fclose(f) ? 103 : 0; }\n"
    "  void *in[U(NUM_INPUTS) + 1], *out[U(NUM_OUTPUTS) + 1], *out2[U(NUM_OUTPUTS) + 1];\n"
    "  size_t inb[U(NUM_INPUTS) + 1], outb[U(NUM_OUTPUTS) + 1];\n"
    "  for (int i = 0; i < U(NUM_INPUTS); i++) { snprintf(path, sizeof path, \"%s/in%d.bin\", dir, i);\n"
    "    inb[i] = L(input_bytes)[i]; in[i] = load(path, inb[i]); }\n"
    "  for (int j = 0; j < U(NUM_OUTPUTS); j++) { outb[j] = L(output_bytes)[j]; out[j] = buf(outb[j]); out2[j] = buf(outb[j]); }\n"
    "  size_t ab = U(ARENA_BYTES); unsigned char *arena = buf(ab);\n"
    "  void *a = arena; const void *const *ins = (const void *const *)in;\n"
    "  if (!strcmp(m, \"null_in\")) in[0] = NULL;\n"
    "  if (!strcmp(m, \"null_arr\")) ins = NULL;\n"
    "  if (!strcmp(m, \"size_in\")) inb[0]++;\n"
    "  if (!strcmp(m, \"size_out\")) outb[0]--;\n"
    "  if (!strcmp(m, \"align_in\")) { memmove((char *)in[0] + 1, in[0], inb[0]); in[0] = (char *)in[0] + 1; }\n"
    "  if (!strcmp(m, \"align_arena\")) a = arena + 1;\n"
    "  if (!strcmp(m, \"arena\")) ab--;\n"
    "  if (!strcmp(m, \"null_arena\")) a = NULL;\n"
    "#if U(WEIGHTS_EXTERNAL)\n"
    "  snprintf(path, sizeof path, \"%s/%s\", dir, WFILE); size_t wb = U(WEIGHTS_BYTES);\n"
    "  unsigned char *w = load(path, wb); const void *wp = w;\n"
    "  if (!strcmp(m, \"weights\")) wb--;\n"
    "  if (!strcmp(m, \"null_w\")) wp = NULL;\n"
    "  if (!strcmp(m, \"align_w\")) wp = w + 8;\n"
    "#define RUN(o) L(run)(ins, inb, o, outb, a, ab, wp, wb)\n"
    "#else\n"
    "#define RUN(o) L(run)(ins, inb, o, outb, a, ab)\n"
    "#endif\n"
    "  int rc = RUN(out);\n"
    "  if (rc) return rc;\n"
    "  if (RUN(out2)) return 105;\n"
    "  for (int j = 0; j < U(NUM_OUTPUTS); j++) { if (memcmp(out[j], out2[j], outb[j])) return 106;\n"
    "    snprintf(path, sizeof path, \"%s/out%d.bin\", dir, j); save(path, out[j], outb[j]); }\n"
    "  return 0;\n}\n";

/* ---------------------------------------------------------------- helpers ------- */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  assert_non_null(p);
  assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  p[n] = 0;
  if (len) *len = (size_t)n;
  return p;
}

static void spit(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static int sh(const char *cmd) {
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st)) fail_msg("'%s' did not run (wait status %d)", cmd, st);
  return WEXITSTATUS(st);
}

/* A fresh empty directory under the test's temp dir; its path in out (kt_path's buffer is
 * shared by every call). */
static const char *mkdir_fresh(const char *name, char *out, size_t n) {
  snprintf(out, n, "%s", kt_path(name));
  const char *d = out;
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  sh(cmd);
  assert_int_equal(mkdir(d, 0700), 0);
  return d;
}

/* Default pipeline on a copy of g, then kcg_emit_c into dir. */
static void emit(kir_graph *g, const char *const *outs, int32_t n, const char *prefix,
                 kcg_weights_mode mode, const char *dir) {
  kir_graph *c = kir_graph_clone(g);
  assert_non_null(c);
  kps_options opt = {.pipeline = NULL, .verify_each = true};
  kps_context ctx = {.roots = outs, .n_roots = n};
  OK(c, kps_run(c, &opt, &ctx));
  OK(c, kcg_emit_c(c, outs, n, prefix, mode, dir));
  kir_graph_destroy(c);
}

static void build(const char *dir, const char *prefix) {
  char path[1200], upper[64], cmd[4096];
  snprintf(path, sizeof path, "%s/driver.c", dir);
  spit(path, DRIVER, strlen(DRIVER));
  size_t i = 0;
  for (; prefix[i] && i + 1 < sizeof upper; i++)
    upper[i] = (char)(prefix[i] >= 'a' && prefix[i] <= 'z' ? prefix[i] - 32 : prefix[i]);
  upper[i] = 0;
  const char *cc = getenv("CC");
  snprintf(cmd, sizeof cmd,
           "%s -std=c11 -O1 -Wall -Wextra -Werror -pedantic -I'%s' '-DHDR=\"%s.h\"' -DPL=%s_ -DPU=%s_ "
           "'-DWFILE=\"%s.weights\"' '%s/driver.c' '%s/%s.c' -o '%s/drv' -lopenblas -lm",
           cc && *cc ? cc : "cc", dir, prefix, prefix, upper, prefix, dir, dir, prefix, dir);
  assert_int_equal(sh(cmd), 0);
}

static int drive(const char *dir, const char *mode) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "'%s/drv' %s '%s'", dir, mode, dir);
  return sh(cmd);
}

/* The header's names (inputs then outputs) through the driver's "names" mode. */
static int32_t header_names(const char *dir, char **names, int32_t max) {
  char path[1200];
  assert_int_equal(drive(dir, "names"), 0);
  snprintf(path, sizeof path, "%s/names.bin", dir);
  size_t len = 0;
  char *p = slurp(path, &len);
  assert_non_null(p);
  int32_t n = 0;
  for (size_t at = 0; at < len && n < max; at += strlen(p + at) + 1) names[n++] = strdup(p + at);
  free(p);
  return n;
}

typedef struct ref {
  kir_tensor *in[MAX_T];
  int32_t n_in;
  kir_tensor *want[MAX_T];
  const char *const *outs;
  int32_t n_out;
  char *names[2 * MAX_T];
  int32_t n_names;
} ref;

static void ref_free(ref *r) {
  for (int32_t i = 0; i < MAX_T; i++) {
    kir_tensor_free(r->in[i]);
    kir_tensor_free(r->want[i]);
  }
  for (int32_t i = 0; i < r->n_names; i++) free(r->names[i]);
  memset(r, 0, sizeof *r);
}

/* Inputs (bound by the header's names; divisor names "den*" get no zero unless zero_den)
 * written to DIR/inI.bin; the reference outputs in r->want (status returned). */
static kiln_status reference(kir_graph *g, const char *dir, uint64_t seed, bool zero_den, ref *r) {
  r->n_names = header_names(dir, r->names, 2 * MAX_T);
  kir_feed feeds[MAX_T];
  int32_t ids[MAX_T];
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == KIR_OP_PLACEHOLDER) r->n_in++;
  assert_int_equal(r->n_names, r->n_in + r->n_out);
  for (int32_t i = 0; i < r->n_in; i++) {
    kir_node *n = kt_find(g, r->names[i]);
    assert_int_equal(n->op, KIR_OP_PLACEHOLDER);
    r->in[i] = kir_tensor_new(&n->type);
    assert_non_null(r->in[i]);
    bool den = !strncmp(n->name, "den", 3);
    kt_fill(r->in[i], seed + (uint64_t)i, den ? 1 : -4, 4);
    if (den && zero_den) memset(r->in[i]->data, 0, kiln_dtype_size(n->type.dtype));
    feeds[i].node = n->id;
    feeds[i].value = r->in[i];
    char path[1200];
    snprintf(path, sizeof path, "%s/in%d.bin", dir, (int)i);
    spit(path, r->in[i]->data, (size_t)kir_type_nbytes(&n->type));
  }
  for (int32_t j = 0; j < r->n_out; j++) {
    assert_string_equal(r->names[r->n_in + j], r->outs[j]);
    ids[j] = kt_find(g, r->outs[j])->id;
  }
  return kir_interp_run(g, NULL, feeds, r->n_in, ids, r->n_out, NULL, 0, r->want);
}

static void compare(const char *dir, ref *r) {
  for (int32_t j = 0; j < r->n_out; j++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/out%d.bin", dir, (int)j);
    size_t len = 0;
    char *p = slurp(path, &len);
    assert_non_null(p);
    kir_tensor *got = kir_tensor_new(&r->want[j]->type);
    assert_non_null(got);
    assert_int_equal(len, (size_t)kir_type_nbytes(&got->type));
    memcpy(got->data, p, len);
    free(p);
    kt_assert_close(got, r->want[j], kt_tolerance(got->type.dtype));
    kir_tensor_free(got);
  }
}

/* The source calls no allocator and no stdio, and defines no mutable object at file
 * scope (every top-level line that is not a function, directive or comment is const). */
static void check_clean(const char *dir, const char *prefix) {
  char path[1200];
  static const char *const bad[] = {"malloc", "calloc", "realloc", "free(", "printf", "fopen",
                                    "stdio", "FILE", "exit(", "abort(", "getenv"};
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "%s/%s.%s", dir, prefix, k ? "h" : "c");
    char *src = slurp(path, NULL);
    assert_non_null(src);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
      if (strstr(src, bad[i])) fail_msg("%s contains '%s'", path, bad[i]);
    for (char *line = strtok(src, "\n"); line; line = strtok(NULL, "\n"))
      if (!strchr("#/ }{*", line[0]) && !strchr(line, '(') && !strstr(line, "const") &&
          strncmp(line, "enum", 4) && strncmp(line, "extern \"C\"", 10))
        fail_msg("%s: top-level line without const: %s", path, line);
    free(src);
  }
}

/* emit, build, run against the reference, compare. */
static void run_case(kir_graph *g, const char *const *outs, int32_t n_out, const char *prefix,
                     kcg_weights_mode mode, const char *dirname) {
  char dbuf[1024];
  const char *dir = mkdir_fresh(dirname, dbuf, sizeof dbuf);
  emit(g, outs, n_out, prefix, mode, dir);
  if (strcmp(dirname, "hostile")) check_clean(dir, prefix); /* its names mention stdio */
  build(dir, prefix);
  ref r = {.outs = outs, .n_out = n_out};
  OK(g, reference(g, dir, 77, false, &r));
  assert_int_equal(drive(dir, "run"), S_OK);
  compare(dir, &r);
  ref_free(&r);
}

/* ---------------------------------------------------------------- graphs -------- */

/* The lecture's MLP: y = clamp(x @ w1, min=0) @ w2, x f32[64,1000]. */
static kir_graph *mlp(const char *x_name, const char *y_name) {
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, x_name, KILN_F32, DIMS(64, 1000));
  kir_node *w1 = kt_cst(g, "w1", KILN_F32, DIMS(1000, 100), 1, -0.1, 0.1);
  kir_node *h = kt_matmul(g, "h", x, w1, 0, 0);
  kir_node *r = kt_clamp(g, "h_relu", h, 0, NAN);
  kir_node *w2 = kt_cst(g, "w2", KILN_F32, DIMS(100, 10), 2, -0.1, 0.1);
  kt_matmul(g, y_name, r, w2, 0, 0);
  return g;
}

static void grep_in(const char *dir, const char *file, const char *what) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  char *src = slurp(path, NULL);
  assert_non_null(src);
  if (!strstr(src, what)) fail_msg("%s lacks '%s'", path, what);
  free(src);
}

static void test_mlp_c_array(void **st) {
  (void)st;
  kir_graph *g = mlp("x", "y");
  const char *outs[] = {"y"};
  run_case(g, outs, 1, "model", KCG_WEIGHTS_C_ARRAY, "mlp_c");
  const char *dir = kt_path("mlp_c");
  grep_in(dir, "model.c", "fused_matmul");         /* the default pipeline's output */
  grep_in(dir, "model.c", "_Alignas(64) const unsigned char model_weights_data[");
  grep_in(dir, "model.h", "MODEL_ERR_DIV_BY_ZERO = 6");
  grep_in(dir, "model.h", "#define MODEL_ARENA_BYTES ");
  struct { const char *mode; int want; } cases[] = {
      {"null_in", S_NULL}, {"null_arr", S_NULL}, {"size_in", S_SIZE}, {"size_out", S_SIZE},
      {"align_in", S_ALIGN}, {"align_arena", S_ALIGN}, {"arena", S_ARENA}, {"null_arena", S_NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (drive(dir, cases[i].mode) != cases[i].want)
      fail_msg("mode %s: wanted status %d", cases[i].mode, cases[i].want);
  kir_graph_destroy(g);
}

static void test_mlp_weights_file(void **st) {
  (void)st;
  kir_graph *g = mlp("x", "y");
  const char *outs[] = {"y"};
  run_case(g, outs, 1, "net_1", KCG_WEIGHTS_FILE, "mlp_w");
  const char *dir = kt_path("mlp_w");
  char path[1200];
  snprintf(path, sizeof path, "%s/net_1.weights", dir);
  size_t len = 0;
  free(slurp(path, &len));
  assert_int_equal(len, 404000); /* both matrices, each 64-aligned */
  grep_in(dir, "net_1.h", "#define NET_1_WEIGHTS_EXTERNAL 1");
  assert_int_equal(drive(dir, "weights"), S_WEIGHTS);
  assert_int_equal(drive(dir, "null_w"), S_NULL);
  assert_int_equal(drive(dir, "align_w"), S_ALIGN);
  assert_int_equal(drive(dir, "size_in"), S_SIZE);
  kir_graph_destroy(g);
}

/* Fused elementwise chains, a fused reduction and a fused softmax; f32 and f64. */
static void test_fused(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(8, 33));
  kir_node *b = kt_ph(g, "b", KILN_F32, DIMS(33));
  kir_node *c = kt_cst(g, "c", KILN_F32, DIMS(33), 5, -1, 1);
  kir_node *t = kt_op1(g, KIR_OP_TANH, "t", kt_op2(g, KIR_OP_ADD, "xb", kt_op2(g, KIR_OP_MUL, "xm", x, b), c));
  kt_softmax(g, "s", kt_op2(g, KIR_OP_SUB, "ts", t, c), -1);
  kir_node *e = kt_op2(g, KIR_OP_SUB, "e", kt_op1(g, KIR_OP_EXP, "ex", x), b);
  kt_reduce(g, KIR_OP_REDUCE_SUM, "r", kt_op1(g, KIR_OP_SIGMOID, "sg", e), (const int64_t[]){1}, 1, 0);
  kir_node *d = kt_ph(g, "d", KILN_F64, DIMS(5, 7));
  kir_node *d2 = kt_op1(g, KIR_OP_RELU, "d2", d);
  kt_reduce(g, KIR_OP_REDUCE_MEAN, "m", kt_op2(g, KIR_OP_MUL, "dd", d2, d), (const int64_t[]){0}, 1, 1);
  const char *outs[] = {"s", "r", "m"};
  run_case(g, outs, 3, "fz", KCG_WEIGHTS_C_ARRAY, "fused");
  grep_in(kt_path("fused"), "fz.c", "fused_");
  kir_graph_destroy(g);
}

/* Integer division (and its status), wrapping arithmetic, i64. */
static void test_int_div(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kir_node *a = kt_ph(g, "a", KILN_I32, DIMS(4, 6));
  kir_node *den = kt_ph(g, "den", KILN_I32, DIMS(4, 6));
  kir_node *k = kt_cst(g, "k", KILN_I32, DIMS(6), 9, -5, 5);
  kir_node *q = kt_op2(g, KIR_OP_DIV, "q", a, den);
  kir_node *m = kt_op2(g, KIR_OP_MAXIMUM, "mx", kt_op2(g, KIR_OP_MUL, "qk", q, k), a);
  kt_op2(g, KIR_OP_SUB, "out", m, den);
  kir_node *e = kt_ph(g, "e", KILN_I64, DIMS(6));
  kt_op2(g, KIR_OP_MUL, "sq", kt_op1(g, KIR_OP_NEG, "ne", e), e);
  const char *outs[] = {"out", "sq"};
  run_case(g, outs, 2, "ints", KCG_WEIGHTS_C_ARRAY, "ints");
  const char *dir = kt_path("ints");
  ref r = {.outs = outs, .n_out = 2};
  assert_int_equal(reference(g, dir, 78, true, &r), KILN_ERR_EXEC); /* the oracle agrees */
  assert_int_equal(drive(dir, "run"), S_DIV0);
  ref_free(&r);
  kir_graph_destroy(g);
}

/* A gather index out of range returns MODEL_ERR_INDEX, told apart from an integer
 * division (by zero) in the same program; valid indices run and match the reference. */
static void test_gather_index(void **st) {
  (void)st;
  kir_graph *g = kir_graph_create();
  kir_node *x = kt_ph(g, "x", KILN_F32, DIMS(4, 3));
  kir_node *idx = kt_ph(g, "den_idx", KILN_I32, DIMS(5)); /* "den": filled with 1..3 */
  kir_node *a = kt_ph(g, "a", KILN_I32, DIMS(5));
  kt_op2(g, KIR_OP_GATHER, "y", x, idx);
  kt_op2(g, KIR_OP_DIV, "q", a, idx);
  const char *outs[] = {"y", "q"};
  run_case(g, outs, 2, "gi", KCG_WEIGHTS_C_ARRAY, "gather");
  const char *dir = kt_path("gather");
  grep_in(dir, "gi.h", "GI_ERR_INDEX = 7");
  ref r = {.outs = outs, .n_out = 2};
  OK(g, reference(g, dir, 79, false, &r));
  int32_t k = -1;
  for (int32_t i = 0; i < r.n_in; i++)
    if (!strcmp(r.names[i], "den_idx")) k = i;
  assert_true(k >= 0);
  const int32_t bad[5] = {1, 2, 4, 3, 1}; /* 4 is past the 4 rows of x */
  char path[1200];
  snprintf(path, sizeof path, "%s/in%d.bin", dir, (int)k);
  spit(path, bad, sizeof bad);
  assert_int_equal(drive(dir, "run"), S_INDEX);
  ref_free(&r);
  kir_graph_destroy(g);
}

/* Names that would break out of comments, literals or lines, with a non-default prefix. */
static void test_hostile_names(void **st) {
  (void)st;
  const char *xn = "x */ #include <stdio.h>\n\"?\?/ \\ \\", *yn = "*/ int evil; /* ?\?= \xff\x01";
  kir_graph *g = mlp(xn, yn);
  const char *outs[] = {yn};
  run_case(g, outs, 1, "Hostile_Net", KCG_WEIGHTS_FILE, "hostile");
  kir_graph_destroy(g);
}

static void test_deterministic(void **st) {
  (void)st;
  kir_graph *g = mlp("x", "y");
  const char *outs[] = {"y"};
  char b1[1024], b2[1024];
  const char *d1 = mkdir_fresh("det1", b1, sizeof b1), *d2 = mkdir_fresh("det2", b2, sizeof b2);
  assert_string_not_equal(d1, d2);
  emit(g, outs, 1, "model", KCG_WEIGHTS_FILE, d1);
  emit(g, outs, 1, "model", KCG_WEIGHTS_FILE, d2);
  char cmd[2600];
  for (int k = 0; k < 3; k++) {
    const char *ext = k == 0 ? "c" : k == 1 ? "h" : "weights";
    snprintf(cmd, sizeof cmd, "cmp -s '%s/model.%s' '%s/model.%s'", d1, ext, d2, ext);
    if (sh(cmd) != 0) fail_msg("model.%s differs between two runs", ext);
  }
  snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 3", d1); /* exactly the files */
  assert_int_equal(sh(cmd), 0);
  kir_graph_destroy(g);
}

static void test_bad_args(void **st) {
  (void)st;
  kir_graph *g = mlp("x", "y");
  const char *outs[] = {"y"};
  char dbuf[1024];
  const char *dir = mkdir_fresh("bad", dbuf, sizeof dbuf);
  static const char *const prefixes[] = {"", "1abc", "_m", "a-b", "a b", "m.c", "x/y",
                                         "abcdefghijklmnopqrstuvwxyz0123456789"};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    assert_false(kcg_c_prefix_valid(prefixes[i]));
    assert_int_equal(kcg_emit_c(g, outs, 1, prefixes[i], KCG_WEIGHTS_C_ARRAY, dir), KILN_ERR_ARGUMENT);
    assert_non_null(strstr(g->error, "prefix"));
  }
  assert_true(kcg_c_prefix_valid("Model_2"));
  char missing[1200], file[1200], cmd[1300];
  snprintf(missing, sizeof missing, "%s/nope", dir);
  assert_int_equal(kcg_emit_c(g, outs, 1, "model", KCG_WEIGHTS_C_ARRAY, missing), KILN_ERR_PATH);
  snprintf(file, sizeof file, "%s/plain", dir);
  spit(file, "x", 1);
  assert_int_equal(kcg_emit_c(g, outs, 1, "model", KCG_WEIGHTS_C_ARRAY, file), KILN_ERR_PATH);
  assert_non_null(strstr(g->error, "not a directory"));
  const char *nope[] = {"nope"};
  assert_int_equal(kcg_emit_c(g, nope, 1, "model", KCG_WEIGHTS_C_ARRAY, dir), KILN_ERR_ARGUMENT);
  snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = plain", dir); /* nothing written */
  assert_int_equal(sh(cmd), 0);
  kir_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp_c_array),   cmocka_unit_test(test_mlp_weights_file),
      cmocka_unit_test(test_fused),         cmocka_unit_test(test_int_div),
      cmocka_unit_test(test_gather_index),
      cmocka_unit_test(test_hostile_names), cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_bad_args),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  if (!failed) { /* the generated files and drivers are a few MB: keep them only to debug */
    char cmd[1200];
    static const char *const dirs[] = {"mlp_c", "mlp_w", "fused", "ints", "hostile", "det1", "det2", "bad"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
      snprintf(cmd, sizeof cmd, "rm -rf '%s'", kt_path(dirs[i]));
      if (system(cmd) != 0) return 1;
    }
  }
  return failed;
}
