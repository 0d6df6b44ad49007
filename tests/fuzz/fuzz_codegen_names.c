/* fuzz_codegen_names.c — fuzz target for C code generation from hostile model strings.
 * The input gives 1-3 node names and a device string (byte 0: how many names and which
 * nodes get them; then NUL-separated strings). A fixed graph (matmul, add, relu,
 * softmax, reduce_sum over a placeholder and constants) is built with those names, fused
 * and planned, and kcg_c_generate writes its C. Property: with comments and string/char
 * literals removed by a small C lexer, the text equals the text generated for the same
 * graph with benign names ("n0", "n1", ...): a model string can never reach code.
 * Also no crash and no leak (kir_alloc_live). Depends on ir/, passes/, codegen/. */
#include <string.h>

#include "codegen/kcg.h"
#include "fuzz.h"
#include "passes/kps.h"

enum { N_NODES = 8, MAX_NAMES = 3 };

typedef struct names {
  const char *name[N_NODES]; /* NULL: the benign name */
  const char *device;
} names;

/* ---------------------------------------------------------------- graph -------- */

static kir_node *node(kir_graph *g, kir_op op, const names *nm, int32_t k, const int32_t *in,
                      int32_t n_in) {
  char benign[16];
  snprintf(benign, sizeof benign, "n%d", (int)k);
  kir_node *n = kir_node_add(g, op, nm->name[k] ? nm->name[k] : benign, in, n_in);
  if (!n) return NULL;
  n->device = kir_graph_strdup(g, nm->device);
  return n->device ? n : NULL;
}

static int32_t constant(kir_graph *g, const names *nm, int32_t k, int32_t rank, const int64_t *dims) {
  kir_type ty = {KILN_F32, rank, {0}};
  for (int32_t i = 0; i < rank; i++) ty.dims[i] = dims[i];
  kir_tensor *t = kir_tensor_new(&ty);
  kir_node *n = t ? node(g, KIR_OP_CONSTANT, nm, k, NULL, 0) : NULL;
  for (int64_t i = 0; n && i < kir_type_numel(&ty); i++) ((float *)t->data)[i] = (float)i * 0.25f - 1.0f;
  kiln_status st = n ? kir_attr_set_tensor(g, n, "value", t) : KILN_ERR_NOMEM;
  kir_tensor_free(t);
  if (st == KILN_OK) st = kir_infer_node(g, n);
  return st == KILN_OK ? n->id : -1;
}

static int32_t op(kir_graph *g, const names *nm, int32_t k, kir_op o, int32_t a, int32_t b) {
  if (a < 0 || b < -1) return -1;
  int32_t in[2] = {a, b};
  kir_node *n = node(g, o, nm, k, in, b >= 0 ? 2 : 1);
  kiln_status st = n ? KILN_OK : KILN_ERR_GRAPH;
  if (st == KILN_OK && o == KIR_OP_REDUCE_SUM) {
    const int64_t axes[1] = {1};
    st = kir_attr_set_ints(g, n, "axes", axes, 1);
  }
  if (st == KILN_OK) st = kir_infer_node(g, n);
  return st == KILN_OK ? n->id : -1;
}

/* x f32[2,3] -> matmul w f32[3,4] -> add b f32[4] -> relu -> {softmax, reduce_sum[1]}.
 * Returns the two output ids in out, or false when a name was refused. */
static bool build(kir_graph *g, const names *nm, int32_t out[2]) {
  const int64_t xd[2] = {2, 3}, wd[2] = {3, 4}, bd[1] = {4};
  kir_node *x = node(g, KIR_OP_PLACEHOLDER, nm, 0, NULL, 0);
  if (!x || kir_attr_set_int(g, x, "dtype", KILN_F32) || kir_attr_set_ints(g, x, "shape", xd, 2) ||
      kir_infer_node(g, x))
    return false;
  int32_t w = constant(g, nm, 1, 2, wd);
  int32_t m = op(g, nm, 2, KIR_OP_MATMUL, x->id, w);
  int32_t b = m < 0 ? -1 : constant(g, nm, 3, 1, bd);
  int32_t a = b < 0 ? -1 : op(g, nm, 4, KIR_OP_ADD, m, b);
  int32_t r = op(g, nm, 5, KIR_OP_RELU, a, -1);
  out[0] = op(g, nm, 6, KIR_OP_SOFTMAX, r, -1);
  out[1] = out[0] < 0 ? -1 : op(g, nm, 7, KIR_OP_REDUCE_SUM, r, -1);
  /* kir_node_add does not look for duplicate names; the verifier refuses them. */
  return out[1] >= 0 && kir_verify(g) == KILN_OK;
}

/* Builds, fuses, plans and generates. *src is NULL when the graph could not be built
 * with these names (e.g. a duplicate or over-long name: refused, which is fine). Any
 * failure after building (and verifying) is a bug. */
static void generate(const names *nm, char **src) {
  *src = NULL;
  kir_graph *g = kir_graph_create();
  int32_t out[2];
  if (!g || !build(g, nm, out)) {
    kir_graph_destroy(g);
    return;
  }
  const char *roots[2] = {g->nodes[out[0]]->name, g->nodes[out[1]]->name};
  kps_context ctx = {roots, 2, NULL, 0, false, NULL};
  kps_options opt = {"fuse", true, false, NULL, NULL};
  kiln_status st = kps_run(g, &opt, &ctx);
  FUZZ_CHECK(st == KILN_OK, "fuse: %s", g->error);
  const kir_node *o0 = kir_graph_find(g, roots[0]), *o1 = kir_graph_find(g, roots[1]);
  FUZZ_CHECK(o0 && o1, "an output lost its name in fusion");
  int32_t ids[2] = {o0->id, o1->id};
  kps_memplan plan;
  memset(&plan, 0, sizeof plan);
  st = kps_plan_memory(g, ids, 2, &plan);
  FUZZ_CHECK(st == KILN_OK, "plan: %s", g->error);
  st = kcg_c_generate(g, &plan, ids, 2, src);
  FUZZ_CHECK(st == KILN_OK && *src, "generate: %s", g->error);
  kps_memplan_free(&plan);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- C lexer ------ */

/* Copies src without comments (each becomes one space) and with the contents of string
 * and character literals dropped (each becomes "" or ''), following C's rules: a
 * backslash-newline continues a // comment, an escape never ends a literal, and "??/" is
 * the trigraph for a backslash. The caller frees the result. */
static size_t skip_literal(const char *s, size_t i, char q) {
  for (i++; s[i] && s[i] != q && s[i] != '\n'; i++) {
    if (s[i] == '\\' && s[i + 1]) i++;
    else if (s[i] == '?' && s[i + 1] == '?' && s[i + 2] == '/') i += 2 + (s[i + 3] != 0);
  }
  return s[i] == q ? i + 1 : i;
}

static bool backslash_at(const char *s, size_t i) {
  return s[i] == '\\' || (i >= 2 && s[i] == '/' && s[i - 1] == '?' && s[i - 2] == '?');
}

static char *strip_c(const char *s) {
  size_t n = strlen(s), o = 0, i = 0;
  char *out = malloc(n + 1);
  FUZZ_CHECK(out != NULL, "out of memory");
  while (s[i]) {
    if (s[i] == '/' && s[i + 1] == '*') {
      const char *e = strstr(s + i + 2, "*/");
      i = e ? (size_t)(e - s) + 2 : n;
      out[o++] = ' ';
    } else if (s[i] == '/' && s[i + 1] == '/') {
      for (i += 2; s[i] && !(s[i] == '\n' && !backslash_at(s, i - 1)); i++) {}
      out[o++] = ' ';
    } else if (s[i] == '"' || s[i] == '\'') {
      char q = s[i];
      i = skip_literal(s, i, q);
      out[o++] = q;
      out[o++] = q;
    } else {
      out[o++] = s[i++];
    }
  }
  out[o] = '\0';
  return out;
}

/* ---------------------------------------------------------------- input -------- */

/* Splits the input into names and a device (pointers into buf, NUL-terminated). */
static void parse(const uint8_t *data, size_t size, char *buf, names *fz) {
  memset(fz, 0, sizeof *fz);
  int n_names = 1 + data[0] % MAX_NAMES, first = (data[0] / MAX_NAMES) % N_NODES;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  const char *p = buf, *end = buf + size - 1;
  for (int i = 0; i < n_names && p <= end; i++) {
    if (*p) fz->name[(first + i) % N_NODES] = p;
    p += strlen(p) + 1;
  }
  fz->device = p <= end ? p : "";
}

/* The benign twin: same device validity (fusion depends on it), names n0.. */
static void benign_of(const names *fz, names *bn) {
  char norm[64];
  memset(bn, 0, sizeof *bn);
  bn->device = kps_device_normalize(fz->device, norm, sizeof norm) ? "cpu:0" : "not a device";
  FUZZ_CHECK(kps_device_normalize(bn->device, norm, sizeof norm) ==
                 kps_device_normalize(fz->device, norm, sizeof norm),
             "benign device choice");
}

static void report_diff(const char *a, const char *b) {
  size_t i = 0;
  while (a[i] && a[i] == b[i]) i++;
  size_t from = i > 80 ? i - 80 : 0;
  fprintf(stderr, "generated code differs at byte %zu:\n--- benign names:\n%.200s\n--- fuzzed names:\n%.200s\n",
          i, a + from, b + from);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  long live = kir_alloc_live();
  char *buf = malloc(size);
  FUZZ_CHECK(buf != NULL, "out of memory");
  names fz, bn;
  parse(data, size, buf, &fz);
  benign_of(&fz, &bn);
  char *src_fz = NULL, *src_bn = NULL;
  generate(&fz, &src_fz);
  if (src_fz) {
    generate(&bn, &src_bn);
    FUZZ_CHECK(src_bn != NULL, "the benign graph does not build");
    char *a = strip_c(src_bn), *b = strip_c(src_fz);
    if (strcmp(a, b) != 0) {
      report_diff(a, b);
      FUZZ_CHECK(0, "a model string changed the generated code outside comments and literals");
    }
    free(a);
    free(b);
  }
  kir_free(src_fz);
  kir_free(src_bn);
  free(buf);
  FUZZ_CHECK(kir_alloc_live() == live, "%ld blocks leaked", kir_alloc_live() - live);
  return 0;
}
