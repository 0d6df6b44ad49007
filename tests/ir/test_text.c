/* test_text.c — the IR's text form: text -> graph -> text is byte-exact for every op,
 * attribute kind, dtype, hostile name and special float; binary -> text -> binary too;
 * malformed text (every truncation, byte mutations, a list of known bad cases) gets a
 * file:line:column message, leaves the graph empty and leaks nothing; load_any sniffs. */
#include "../kt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers ------- */

static kir_graph *parse_ok(const char *text) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  kiln_status s = kir_graph_parse_text(g, text, strlen(text), "t.ktxt");
  if (s != KILN_OK) fail_msg("parse failed: %s\n--- text ---\n%s", g->error, text);
  return g;
}

static char *to_text(kir_graph *g) {
  char *s = NULL;
  size_t n = 0;
  assert_int_equal(kir_graph_to_text(g, &s, &n, true), KILN_OK);
  assert_int_equal(strlen(s), n);
  return s;
}

/* Parses text (canonical) and checks that printing gives it back byte for byte and
 * that binary -> text -> binary is byte-exact too. */
static void check_roundtrip(const char *text) {
  kir_graph *g = parse_ok(text);
  char *back = to_text(g);
  assert_string_equal(back, text);
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  assert_int_equal(kir_graph_to_bytes(g, &b1, &n1), KILN_OK);
  kir_graph *g2 = kir_graph_create();
  assert_int_equal(kir_graph_from_bytes(g2, b1, n1), KILN_OK);
  char *t2 = to_text(g2);
  assert_string_equal(t2, text);
  kir_graph *g3 = parse_ok(t2);
  assert_int_equal(kir_graph_to_bytes(g3, &b2, &n2), KILN_OK);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  kir_free(b1);
  kir_free(b2);
  kir_free(back);
  kir_free(t2);
  kir_graph_destroy(g);
  kir_graph_destroy(g2);
  kir_graph_destroy(g3);
}

/* Parse must fail with status s and a message containing want; g stays empty. */
static void expect_error(const char *text, size_t len, kiln_status s, const char *want) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  long live = kir_alloc_live();
  kiln_status got = kir_graph_parse_text(g, text, len, "bad.ktxt");
  if (got != s || (want && !strstr(g->error, want)))
    fail_msg("status %s (wanted %s), message '%s' (wanted '%s')\n--- text ---\n%.*s",
             kiln_status_name(got), kiln_status_name(s), g->error, want ? want : "",
             (int)len, text);
  assert_int_equal(g->n_nodes, 0);
  assert_int_equal(kir_alloc_live(), live);
  kir_graph_destroy(g);
}
#define BAD(text, s, want) expect_error(text, strlen(text), s, want)

/* ---------------------------------------------------------------- every op ------ */

/* One node of every op (a test fails when ops.def grows and this does not), every
 * attribute kind, every dtype, scalars, zero-size tensors, hostile names, special
 * floats, placement. Canonical: the printer writes exactly this. */
static const char every_op[] =
    "kiln.graph 1.0\n"
    "%0 \"x\" = placeholder() {dtype = f32, shape = [2, 3]} : f32[2,3] @ \"cpu:0\"\n"
    "%1 \"c\" = constant() {value = f32[3]{0.1, -0.0, nan}} : f32[3]\n"
    "%2 \"v\" = variable(%1) : f32[3] assigned \"cpu:0\" reason \"colocated with \\\"as\\\"\"\n"
    "%3 \"rn\" = random_normal() {dtype = f32, mean = 0.5, seed = 42, shape = [2, 3], stddev = 2.0} : f32[2,3]\n"
    "%4 \"ru\" = random_uniform() {dtype = f64, high = inf, low = -inf, seed = -9223372036854775808, shape = []} : f64[]\n"
    "%5 \"add\" = add(%0, %1) : f32[2,3]\n"
    "%6 \"sub\" = sub(%5, %3) : f32[2,3]\n"
    "%7 \"mul\" = mul(%6, %6) : f32[2,3]\n"
    "%8 \"div\" = div(%7, %1) : f32[2,3]\n"
    "%9 \"max\" = maximum(%8, %0) : f32[2,3]\n"
    "%10 \"min\" = minimum(%9, %0) : f32[2,3]\n"
    "%11 \"neg\" = neg(%10) : f32[2,3]\n"
    "%12 \"exp\" = exp(%11) : f32[2,3]\n"
    "%13 \"log\" = log(%12) : f32[2,3]\n"
    "%14 \"sqrt\" = sqrt(%13) : f32[2,3]\n"
    "%15 \"tanh\" = tanh(%14) : f32[2,3]\n"
    "%16 \"sigmoid\" = sigmoid(%15) : f32[2,3]\n"
    "%17 \"relu\" = relu(%16) : f32[2,3]\n"
    "%18 \"clamp\" = clamp(%17) {max = 6.0, min = -0.0} : f32[2,3]\n"
    "%19 \"w\" = constant() {value = f32[3,2]{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}} : f32[3,2]\n"
    "%20 \"mm\" = matmul(%18, %19) {transpose_a = 0, transpose_b = 0} : f32[2,2]\n"
    "%21 \"addn\" = add_n(%20, %20, %20) : f32[2,2]\n"
    "%22 \"rsum\" = reduce_sum(%21) {axes = [0], keep_dims = 1} : f32[1,2]\n"
    "%23 \"rmean\" = reduce_mean(%21) : f32[]\n"
    "%24 \"rmax\" = reduce_max(%21) {axes = [-1, 0]} : f32[]\n"
    "%25 \"sm\" = softmax(%21) {axis = -1} : f32[2,2]\n"
    "%26 \"rs\" = reshape(%25) {shape = [4, -1]} : f32[4,1]\n"
    "%27 \"tr\" = transpose(%26) {perm = [1, 0]} : f32[1,4]\n"
    "%28 \"id\" = identity(%27) : f32[1,4]\n"
    "%29 \"as\" = assign(%2, %1) : f32[3]\n"
    "%30 \"grp\" = group(%29, %28) : ()\n"
    "%31 \"nop\" = no_op() : ()\n"
    "%32 \"bias\" = constant() {value = f32[2]{0.5, -1e-45}} : f32[2]\n"
    "%33 \"fm\" = fused_matmul(%18, %19, %32) {clamp_max = [nan, 6.0], clamp_min = [nan, 0.0], "
    "epilogue = [6, 19], fused_from = [\"mm2\", \"bias_add\", \"act\"], operand = [2, -1], "
    "swap = [0, 0], transpose_b = 0} : f32[2,2]\n"
    "%34 \"tx\" = transfer(%33) {device = \"cuda:1\"} : f32[2,2]\n"
    "%35 \"i32\" = constant() {value = i32[2,2]{-2147483648, 2147483647, 0, -1}} : i32[2,2]\n"
    "%36 \"i64\" = constant() {value = i64[3]{-9223372036854775808, 9223372036854775807, 7}} : i64[3]\n"
    "%37 \"b\" = constant() {value = bool[2]{1, 0}} : bool[2]\n"
    "%38 \"f64\" = constant() {value = f64[6]{0.1, 5e-324, 1.7976931348623157e+308, -inf, "
    "nan(0xfff8000000000000), nan(0x7ff0000000000001)}} : f64[6]\n"
    "%39 \"f32s\" = constant() {value = f32[]{nan(0x7fc00001)}} : f32[]\n"
    "%40 \"empty\" = constant() {value = f32[0,3]{}} : f32[0,3]\n"
    "%41 \"empty_i\" = constant() {value = i64[0]{}} : i64[0]\n"
    "%42 \"e2\" = reduce_sum(%40) {axes = [0]} : f32[3]\n"
    "%43 \"hostile \\\"q\\\" \\\\ \\x0A\\x00X\\xFF%0 = # {}\" = neg(%42) : f32[3] @ \"\\x01dev\"\n"
    "%44 \"ph_scalar\" = placeholder() {dtype = bool, shape = []} : bool[]\n"
    "%45 \"ph_empty\" = placeholder() {dtype = i32, shape = [0]} : i32[0]\n"
    "%46 \"fe\" = fused_elementwise(%18, %1) {clamp_max = [nan, nan], clamp_min = [nan, nan], "
    "epilogue = [6, 12], fused_from = [\"a1\", \"n1\"], operand = [1, -1], swap = [0, 0]} : f32[2,3]\n"
    "%47 \"fr\" = fused_reduce(%18, %1) {axes = [1], clamp_max = [nan], clamp_min = [nan], "
    "epilogue = [8], fused_from = [\"m1\", \"r1\"], keep_dims = 0, operand = [1], reduce = 22, "
    "swap = [1]} : f32[2]\n"
    "%48 \"fs\" = fused_softmax(%18) {axis = 0, clamp_max = [], clamp_min = [], epilogue = [], "
    "fused_from = [\"s1\"], operand = [], swap = []} : f32[2,3]\n"
    "%49 \"pow\" = pow(%18, %1) : f32[2,3]\n"
    "%50 \"abs\" = abs(%35) : i32[2,2]\n"
    "%51 \"lrelu\" = leaky_relu(%49) {alpha = 0.2} : f32[2,3]\n"
    "%52 \"erf\" = erf(%51) : f32[2,3]\n"
    "%53 \"gelu\" = gelu(%52) {approximate = 1} : f32[2,3]\n"
    "%54 \"rmin\" = reduce_min(%50) {axes = [1], keep_dims = 0} : i32[2]\n"
    "%55 \"lsm\" = log_softmax(%53) {axis = 0} : f32[2,3]\n"
    "%56 \"amax\" = argmax(%55) {axis = 1, keep_dims = 0, select_last_index = 1} : i64[2]\n"
    "%57 \"amin\" = argmin(%36) : i64[1]\n"
    "%58 \"cat\" = concat(%55, %40, %18) {axis = -2} : f32[4,3]\n"
    "%59 \"sl\" = slice(%58) {axes = [0, -1], ends = [-9223372036854775808, 2], starts = [-1, 0], "
    "steps = [-2, 1]} : f32[2,2]\n"
    "%60 \"gi\" = constant() {value = i64[2]{1, -1}} : i64[2]\n"
    "%61 \"ga\" = gather(%58, %60) {axis = 0} : f32[2,3]\n"
    "%62 \"cast\" = cast(%61) {dtype = i64} : i64[2,3]\n"
    "%63 \"cond\" = constant() {value = bool[2,1]{1, 0}} : bool[2,1]\n"
    "%64 \"wh\" = where(%63, %18, %1) : f32[2,3]\n"
    "%65 \"img\" = placeholder() {dtype = f32, shape = [1, 2, 5, 5]} : f32[1,2,5,5]\n"
    "%66 \"wt\" = random_normal() {dtype = f32, seed = 7, shape = [4, 1, 3, 3]} : f32[4,1,3,3]\n"
    "%67 \"bias4\" = placeholder() {default = f32[4]{0.5, -0.5, 1.0, 0.0}, dtype = f32, "
    "shape = [4]} : f32[4]\n"
    "%68 \"conv\" = conv(%65, %66, %67) {dilations = [1, 1], group = 2, pads = [1, 1, 0, 0], "
    "strides = [2, 1]} : f32[1,4,2,4]\n"
    "%69 \"mp\" = max_pool(%65) {ceil_mode = 1, dilations = [1, 1], kernel = [3, 3], "
    "pads = [1, 1, 1, 1], strides = [2, 2]} : f32[1,2,3,3]\n"
    "%70 \"ap\" = avg_pool(%65) {count_include_pad = 1, kernel = [2, 2]} : f32[1,2,4,4]\n"
    "%71 \"ch\" = constant() {value = f32[2]{1.0, 2.0}} : f32[2]\n"
    "%72 \"bn\" = batch_norm(%65, %71, %71, %71, %71) {epsilon = 0.001} : f32[1,2,5,5]\n"
    "%73 \"cb\" = constant() {value = f32[4,1,1]{0.5, -0.5, 1.0, 0.0}} : f32[4,1,1]\n"
    "%74 \"fconv\" = fused_conv(%65, %66, %73) {clamp_max = [nan, 6.0], clamp_min = [nan, 0.0], "
    "epilogue = [6, 19], fused_from = [\"c1\", \"b1\", \"r1\"], group = 2, operand = [2, -1], "
    "pads = [0, 0, 1, 1], swap = [0, 0]} : f32[1,4,4,4]\n"
    "%75 \"mpi\" = max_pool_indices(%65) {kernel = [2, 2], storage_order = 1, strides = [2, 2]} "
    ": i64[1,2,2,2]\n";

/* \x00 is not a valid byte in a name: the test text above uses "\x00X" only to be
 * rewritten below to a legal escape. */
static char *every_op_text(void) {
  char *s = strdup(every_op);
  char *p = strstr(s, "\\x00X");
  assert_non_null(p);
  memcpy(p, "\\x7FX", 5);
  return s;
}

static void test_every_op_roundtrip(void **state) {
  (void)state;
  char *text = every_op_text();
  kir_graph *g = parse_ok(text);
  bool seen[KIR_OP_COUNT] = {false};
  for (int32_t i = 0; i < g->n_nodes; i++) seen[g->nodes[i]->op] = true;
  for (int op = 1; op < KIR_OP_COUNT; op++)
    if (!seen[op]) fail_msg("op %s is not in the round-trip text", kir_op_table[op].name);
  kir_graph_destroy(g);
  check_roundtrip(text);
  free(text);
}

static void test_values_exact(void **state) {
  (void)state;
  char *text = every_op_text();
  kir_graph *g = parse_ok(text);
  const kir_tensor *t = kir_attr_tensor(kir_graph_find(g, "f64"), "value");
  const double *d = t->data;
  uint64_t bits[6];
  memcpy(bits, d, sizeof bits);
  assert_true(d[0] == 0.1 && d[1] == 4.9406564584124654e-324 && d[2] == DBL_MAX);
  assert_true(isinf(d[3]) && d[3] < 0);
  assert_true(bits[4] == 0xfff8000000000000ull && bits[5] == 0x7ff0000000000001ull);
  const kir_tensor *c = kir_attr_tensor(kir_graph_find(g, "c"), "value");
  uint32_t fb[3];
  memcpy(fb, c->data, sizeof fb);
  assert_true(((float *)c->data)[0] == 0.1f && fb[1] == 0x80000000u && fb[2] == 0x7fc00000u);
  const kir_node *cl = kir_graph_find(g, "clamp");
  assert_true(signbit(kir_attr_float(cl, "min", 1)) && kir_attr_float(cl, "min", 1) == 0);
  const kir_node *h = g->nodes[43];
  assert_string_equal(h->name, "hostile \"q\" \\ \n\x7FX\xFF%0 = # {}");
  assert_string_equal(h->device, "\x01" "dev");
  kir_graph_destroy(g);
  free(text);
}

/* Every bit pattern class of f32 and f64 reads back to the same bits. */
static void test_random_floats_exact(void **state) {
  (void)state;
  enum { N = 4096 };
  kir_graph *g = kir_graph_create();
  uint64_t s = 12345;
  for (int dt = 0; dt < 2; dt++) {
    kir_type ty = {.dtype = dt ? KILN_F64 : KILN_F32, .rank = 1, .dims = {N}};
    kir_tensor *t = kir_tensor_new(&ty);
    for (int i = 0; i < N; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t r = s ^ (s >> 29);
      if (dt) memcpy((double *)t->data + i, &r, 8);
      else { uint32_t r32 = (uint32_t)(r >> 17); memcpy((float *)t->data + i, &r32, 4); }
    }
    kir_node *n = kir_node_add(g, KIR_OP_CONSTANT, dt ? "d" : "f", NULL, 0);
    assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
    assert_int_equal(kir_infer_node(g, n), KILN_OK);
    kir_tensor_free(t);
  }
  char *text = to_text(g);
  kir_graph *g2 = parse_ok(text);
  for (int i = 0; i < 2; i++) {
    const kir_tensor *a = kir_attr_tensor(g->nodes[i], "value"), *b = kir_attr_tensor(g2->nodes[i], "value");
    assert_memory_equal(a->data, b->data, (size_t)kir_type_nbytes(&a->type));
  }
  char *text2 = to_text(g2);
  assert_string_equal(text, text2);
  kir_free(text);
  kir_free(text2);
  kir_graph_destroy(g);
  kir_graph_destroy(g2);
}

/* A graph built through the API (the seed MLP's shape) prints, parses and serializes
 * back to the same bytes; the elided form names a hash and refuses to parse. */
static void test_binary_text_binary(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = kir_node_add(g, KIR_OP_PLACEHOLDER, "x", NULL, 0);
  int64_t xs[2] = {4, 20};
  kir_attr_set_int(g, x, "dtype", KILN_F32);
  kir_attr_set_ints(g, x, "shape", xs, 2);
  kir_type wt = {.dtype = KILN_F32, .rank = 2, .dims = {20, 3}};
  kir_tensor *w = kir_tensor_new(&wt);
  kt_fill(w, 7, -1, 1);
  kir_node *c = kir_node_add(g, KIR_OP_CONSTANT, "w", NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, c, "value", w), KILN_OK);
  kir_tensor_free(w);
  int32_t in[2] = {0, 1};
  kir_node *m = kir_node_add(g, KIR_OP_MATMUL, "y", in, 2);
  assert_non_null(m);
  assert_int_equal(kir_infer_shapes(g), KILN_OK);
  uint8_t *b1, *b2;
  size_t n1, n2;
  assert_int_equal(kir_graph_to_bytes(g, &b1, &n1), KILN_OK);
  char *text = to_text(g);
  kir_graph *g2 = parse_ok(text);
  assert_int_equal(kir_graph_to_bytes(g2, &b2, &n2), KILN_OK);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  /* elided (60 elements > 16): the hash is shown, parsing refuses with line:col */
  char *el = NULL;
  size_t eln = 0;
  assert_int_equal(kir_graph_to_text(g, &el, &eln, false), KILN_OK);
  assert_non_null(strstr(el, "{value = <f32[20,3] fnv64:"));
  expect_error(el, eln, KILN_ERR_FORMAT,
               "bad.ktxt:3:30: constant elided; print with --full-constants");
  kir_free(el);
  kir_free(b1);
  kir_free(b2);
  kir_free(text);
  kir_graph_destroy(g);
  kir_graph_destroy(g2);
}

/* Hand-written conveniences parse to the canonical form. */
static void test_conveniences(void **state) {
  (void)state;
  kir_graph *g = parse_ok(
      "# a comment line\n\n"
      "kiln.graph 1.0   # header comment\n"
      "%3 \"x\" = placeholder() {shape = [], dtype = 1}\n"
      "\n"
      "%7 \"c\" = clamp(%3) {min = 0, max = 6}   # ints where floats are wanted\n"
      "%9 \"t\" = transpose(%7) {perm = []}\n"
      "%10 \"k\" = constant() {value = f64[2]{1, -2}}\n"
      "%11 \"s\" = reduce_sum(%10) {axes = ints[]}\n");
  char *text = to_text(g);
  assert_string_equal(text,
                      "kiln.graph 1.0\n"
                      "%0 \"x\" = placeholder() {dtype = f32, shape = []} : f32[]\n"
                      "%1 \"c\" = clamp(%0) {max = 6.0, min = 0.0} : f32[]\n"
                      "%2 \"t\" = transpose(%1) {perm = []} : f32[]\n"
                      "%3 \"k\" = constant() {value = f64[2]{1.0, -2.0}} : f64[2]\n"
                      "%4 \"s\" = reduce_sum(%3) {axes = []} : f64[2]\n");
  kir_free(text);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- bad input ----- */

static const char H[] = "kiln.graph 1.0\n";
#define PH "%0 \"x\" = placeholder() {dtype = f32, shape = [2]}\n"

static void test_bad_cases(void **state) {
  (void)state;
  BAD("", KILN_ERR_FORMAT, "bad.ktxt:1:1: expected the header 'kiln.graph 1.0', found end of file");
  BAD("kiln.graph 2.0\n", KILN_ERR_VERSION, "1:12: text format version 2.x");
  BAD("kiln.graph\n", KILN_ERR_FORMAT, "1:11: expected a version");
  BAD("kiln.graph 1.0 x\n", KILN_ERR_FORMAT, "1:16: expected end of line after the header");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32, shape = [2]} {\n", KILN_ERR_FORMAT,
      "2:51: expected end of line after the node, found '{'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0 {\n", KILN_ERR_FORMAT,
      "3:17: expected ',' or ')' after an input, found '{'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%5)\n", KILN_ERR_GRAPH, "3:14: input %5 is not a node defined above");
  BAD("kiln.graph 1.0\n" PH "%0 \"y\" = neg(%0)\n", KILN_ERR_FORMAT, "3:1: node id %0 must be greater than the previous %0");
  BAD("kiln.graph 1.0\n" PH "%1 \"x\" = neg(%0)\n", KILN_ERR_GRAPH, "3:4: duplicate node name 'x'");
  BAD("kiln.graph 1.0\n" PH "%1 \"\" = neg(%0)\n", KILN_ERR_FORMAT, "3:4: empty node name");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = frob(%0)\n", KILN_ERR_FORMAT, "3:10: unknown op 'frob'");
  BAD("kiln.graph 1.0\n" PH "%1 y = neg(%0)\n", KILN_ERR_FORMAT, "3:4: expected the node's name as a string");
  BAD("kiln.graph 1.0\n" PH "%1 \"y = neg(%0)\n", KILN_ERR_FORMAT, "3:4: unterminated string");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\\q\" = neg(%0)\n", KILN_ERR_FORMAT, "3:6: bad escape");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\\x00\" = neg(%0)\n", KILN_ERR_FORMAT, "NUL byte");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\ty\" = neg(%0)\n", KILN_ERR_FORMAT, "3:6: raw control byte 0x09");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) : f32[3]\n", KILN_ERR_TYPE,
      "3:20: node 'y': stated type f32[3], but inference gives f32[2]");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) : ()\n", KILN_ERR_TYPE, "stated type (), but inference gives f32[2]");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = group(%0) : f32[2]\n", KILN_ERR_TYPE, "stated type f32[2], but inference gives ()");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) : f8[2]\n", KILN_ERR_FORMAT, "3:20: expected a type");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) {a = 1, a = 2}\n", KILN_ERR_FORMAT, "3:26: duplicate attribute 'a'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) {bogus = 1}\n", KILN_ERR_GRAPH, "unknown attribute 'bogus'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = clamp(%0) {min = \"a\"}\n", KILN_ERR_GRAPH, "must be float");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = clamp(%0) {min = 9007199254740993}\n", KILN_ERR_FORMAT, "not exact as a float");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32, shape = [1, 2.5]}\n", KILN_ERR_GRAPH,
      "2:1: node 'x': attribute 'shape' must be ints, found floats");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32, shape = [1, \"a\"]}\n", KILN_ERR_FORMAT, "mixes strings");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32, shape = ints[1, 2.5]}\n", KILN_ERR_FORMAT,
      "2:50: list items do not match its kind ints");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32, shape = []}\n%1 \"y\" = neg(%0) {q = []}\n",
      KILN_ERR_FORMAT, "3:23: empty list of unknown kind");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[2]{1.0}}\n", KILN_ERR_FORMAT,
      "2:40: tensor has 1 elements, its type needs 2");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1]{1.0, 2.0}}\n", KILN_ERR_FORMAT,
      "2:42: more than the 1 elements");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1000000,1000000]{1.0}}\n", KILN_ERR_LIMIT, "2:33: tensor above");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1000,1000]{1.0}}\n", KILN_ERR_FORMAT,
      "more than the text holds");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1,1,1,1,1,1,1,1,1]{1.0}}\n", KILN_ERR_LIMIT, "rank above 8");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[-1]{}}\n", KILN_ERR_FORMAT, "out of range");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = i32[1]{2147483648}}\n", KILN_ERR_FORMAT, "out of range for the dtype");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = i64[1]{9223372036854775808}}\n", KILN_ERR_OVERFLOW, "int64 range");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = i32[1]{1.5}}\n", KILN_ERR_FORMAT, "2:37: expected an integer");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = bool[1]{2}}\n", KILN_ERR_FORMAT, "out of range");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1]{1e39}}\n", KILN_ERR_FORMAT, "out of f32 range");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f64[1]{1e999}}\n", KILN_ERR_OVERFLOW, "out of range");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f32[1]{nan(0x7f800000)}}\n", KILN_ERR_FORMAT, "not an f32 NaN");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f64[1]{nan(0x1)}}\n", KILN_ERR_FORMAT, "not an f64 NaN");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f64[1]{0x10}}\n", KILN_ERR_FORMAT, "expected a number");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f64[1]{1.2.3}}\n", KILN_ERR_FORMAT, "expected a number");
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = f64[1]{1111111111111111111111111111111111111111111111111111111111111111111}}\n",
      KILN_ERR_LIMIT, "number longer than");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) $\n", KILN_ERR_FORMAT, "3:18: unexpected character '$'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0) \xC3\xA9\n", KILN_ERR_FORMAT, "unexpected byte 0xC3");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%99999999999)\n", KILN_ERR_LIMIT, "node id above");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%)\n", KILN_ERR_FORMAT, "expected digits after '%'");
  BAD("kiln.graph 1.0\n" PH "%1 \"y\" = neg(%0, %0)\n", KILN_ERR_GRAPH, "node 'y'");
  BAD("kiln.graph 1.0\n" PH "\"y\" = neg(%0)\n", KILN_ERR_FORMAT, "3:1: expected a node such as %0");
  BAD("kiln.graph 1.0\n%0 \"x\" = placeholder() {dtype = f32}\n", KILN_ERR_GRAPH, "missing attribute 'shape'");
}

static void test_limits(void **state) {
  (void)state;
  /* name of KIR_MAX_NAME bytes loads, one more does not */
  size_t big = KIR_MAX_NAME + 200;
  char *t = malloc(big);
  for (int extra = 0; extra <= 1; extra++) {
    int k = snprintf(t, big, "kiln.graph 1.0\n%%0 \"");
    memset(t + k, 'n', KIR_MAX_NAME + extra);
    snprintf(t + k + KIR_MAX_NAME + extra, big - (size_t)k - KIR_MAX_NAME - extra,
             "\" = placeholder() {dtype = f32, shape = []}\n");
    if (!extra) kir_graph_destroy(parse_ok(t));
    else BAD(t, KILN_ERR_LIMIT, "string longer than 4096 bytes");
  }
  free(t);
  /* elided constant anywhere in a list position */
  BAD("kiln.graph 1.0\n%0 \"c\" = constant() {value = <f32[100] fnv64:00>}\n", KILN_ERR_FORMAT,
      "2:30: constant elided; print with --full-constants");
  /* not empty */
  kir_graph *g = parse_ok("kiln.graph 1.0\n" PH);
  assert_int_equal(kir_graph_parse_text(g, H, strlen(H), NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(g->n_nodes, 1);
  kir_graph_destroy(g);
}

/* Every prefix of a valid text and many one-byte mutations: parse succeeds or fails
 * cleanly with a located message, the graph stays empty, nothing leaks. */
static void test_truncations_and_mutations(void **state) {
  (void)state;
  char *text = every_op_text();
  size_t n = strlen(text);
  char *buf = malloc(n + 1);
  long live = kir_alloc_live();
  static const char subst[] = {'\0', '"', '\\', '%', '{', '}', '[', ']', ',', '\n', '#', '0', 'x', '-', '<', '(', ')'};
  /* per position: the prefix, and two substitutions (rotating through subst) */
  for (size_t cut = 0; cut <= n; cut++) {
    for (size_t k = 0; k < 3; k++) {
      memcpy(buf, text, n);
      size_t len = cut, m = (cut * 2 + k) % sizeof subst;
      if (k > 0) {
        if (cut == n) break;
        buf[cut] = subst[m];
        len = n;
      }
      kir_graph *g = kir_graph_create();
      kiln_status s = kir_graph_parse_text(g, buf, len, "m.ktxt");
      if (s != KILN_OK) {
        assert_int_equal(g->n_nodes, 0);
        if (s != KILN_ERR_NOMEM && strncmp(g->error, "m.ktxt:", 7) != 0)
          fail_msg("cut %zu mutation %zu: message without location: %s", cut, m, g->error);
      }
      kir_graph_destroy(g);
      assert_int_equal(kir_alloc_live(), live);
    }
  }
  free(buf);
  free(text);
}

/* Fail the Nth allocation for every N: parse and print return out-of-memory (or
 * succeed), never leak. */
static void test_alloc_failure(void **state) {
  (void)state;
  char *text = every_op_text();
  long live = kir_alloc_live();
  bool done = false;
  for (long k = 0; !done && k < 100000; k++) {
    kir_graph *g = kir_graph_create();
    if (!g) continue;
    kir_alloc_fail_after(k);
    kiln_status s = kir_graph_parse_text(g, text, strlen(text), "a.ktxt");
    char *out = NULL;
    size_t len = 0;
    kiln_status s2 = s == KILN_OK ? kir_graph_to_text(g, &out, &len, true) : s;
    kir_alloc_fail_after(-1);
    if (s != KILN_OK) assert_int_equal(s, KILN_ERR_NOMEM);
    if (s2 != KILN_OK) assert_int_equal(s2, KILN_ERR_NOMEM);
    done = s == KILN_OK && s2 == KILN_OK;
    kir_free(out);
    kir_graph_destroy(g);
    assert_int_equal(kir_alloc_live(), live);
  }
  assert_true(done);
  free(text);
}

/* ---------------------------------------------------------------- files --------- */

static void test_load_any(void **state) {
  (void)state;
  char *text = every_op_text();
  kir_graph *g = parse_ok(text);
  /* kt_path may reuse its buffer: keep copies */
  char *bin = strdup(kt_path("m.kiln")), *txt = strdup(kt_path("m.ktxt")),
       *bad = strdup(kt_path("bad.ktxt"));
  assert_int_equal(kir_graph_save(g, bin), KILN_OK);
  FILE *f = fopen(txt, "wb");
  fputs("# leading comment\n\n", f);
  fputs(text, f);
  fclose(f);
  f = fopen(bad, "wb");
  fputs("kiln.graph 1.0\n%0 \"x\" = nope()\n", f);
  fclose(f);
  kir_graph *a = kir_graph_create(), *b = kir_graph_create(), *c = kir_graph_create(),
            *d = kir_graph_create();
  assert_int_equal(kir_graph_load_any(a, bin), KILN_OK);
  assert_int_equal(kir_graph_load_any(b, txt), KILN_OK);
  char *ta = to_text(a), *tb = to_text(b);
  assert_string_equal(ta, text);
  assert_string_equal(tb, text);
  assert_int_equal(kir_graph_load_any(c, bad), KILN_ERR_FORMAT);
  assert_non_null(strstr(c->error, "bad.ktxt:2:10: unknown op 'nope'"));
  assert_int_not_equal(kir_graph_load_any(d, kt_path("missing.kiln")), KILN_OK);
  assert_non_null(strstr(d->error, "missing.kiln"));
  kir_free(ta);
  kir_free(tb);
  kir_graph_destroy(a);
  kir_graph_destroy(b);
  kir_graph_destroy(c);
  kir_graph_destroy(d);
  kir_graph_destroy(g);
  free(text);
  free(bin);
  free(txt);
  free(bad);
}

/* print_text writes what to_text returns; kir_graph_print is the elided form. */
static void test_print_text_file(void **state) {
  (void)state;
  char *text = every_op_text();
  kir_graph *g = parse_ok(text);
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  kir_print_options po = {.full_constants = true};
  assert_int_equal(kir_graph_print_text(g, f, &po), KILN_OK);
  fclose(f);
  assert_string_equal(buf, text);
  free(buf);
  assert_int_equal(kir_graph_print_text(NULL, stdout, NULL), KILN_ERR_ARGUMENT);
  kir_graph_destroy(g);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_roundtrip),
      cmocka_unit_test(test_values_exact),
      cmocka_unit_test(test_random_floats_exact),
      cmocka_unit_test(test_binary_text_binary),
      cmocka_unit_test(test_conveniences),
      cmocka_unit_test(test_bad_cases),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_truncations_and_mutations),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_load_any),
      cmocka_unit_test(test_print_text_file),
  };
  return cmocka_run_group_tests_name("ir_text", tests, NULL, NULL);
}
