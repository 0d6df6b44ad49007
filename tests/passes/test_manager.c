/* test_manager.c — the pass manager: pipeline strings with options (and their errors),
 * -O levels, print-before/after/after-all/after-change banners, verify-each, disabled
 * passes, the statistics and timing tables, and --dump-dir's text, DOT and JSON files
 * (JSON checked by a small syntax checker and by exact text; DOT by `dot` if present). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../kt_graph.h"
#include "passes/kps.h"

/* ---------------------------------------------------------------- helpers ------- */

/* f32 placeholder / constant filled by kt_fill(seed) in [-1, 1). */
static kir_node *ph(kir_graph *g, const char *name, int32_t rank, const int64_t *dims) {
  return kt_ph(g, name, KILN_F32, rank, dims);
}

static kir_node *cst(kir_graph *g, const char *name, int32_t rank, const int64_t *dims,
                     uint64_t seed) {
  return kt_cst(g, name, KILN_F32, rank, dims, seed, -1, 1);
}

/* c1 + c2 -> a; a * c1 -> b; relu(b) -> r; r + p -> y. Folding turns a, b, r into
 * constants (f32[2,3], 24 bytes each); dce then drops c1 and c2. */
static kir_graph *small_fold_graph(void) {
  kir_graph *g = kir_graph_create();
  assert_non_null(g);
  int64_t d2[2] = {2, 3};
  kir_node *c1 = cst(g, "c1", 2, d2, 1);
  kir_node *c2 = cst(g, "c2", 2, d2, 2);
  kir_node *a = kt_op2(g, KIR_OP_ADD, "a", c1, c2);
  kir_node *b = kt_op2(g, KIR_OP_MUL, "b", a, c1);
  kir_node *r = kt_op1(g, KIR_OP_RELU, "r", b);
  kir_node *p = ph(g, "p", 2, d2);
  kt_op2(g, KIR_OP_ADD, "y", r, p);
  return g;
}

static const char *const y_root[] = {"y"};
static const kps_context y_ctx = {.roots = y_root, .n_roots = 1};

/* true when some line of s holds both the quoted node name and `what`. */
static bool line_has(const char *s, const char *name, const char *what) {
  char quoted[128];
  snprintf(quoted, sizeof quoted, "\"%s\"", name);
  for (const char *line = s; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char buf[1024];
    size_t cut = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, line, cut);
    buf[cut] = '\0';
    if (strstr(buf, quoted) && strstr(buf, what)) return true;
    line = end ? end + 1 : NULL;
  }
  return false;
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* Runs the pipeline with opt (print_to and report_to captured) and returns the text. */
static char *run_captured(kir_graph *g, kps_options opt, const kps_context *ctx) {
  kt_text out;
  kt_text_open(&out);
  opt.print_to = out.f;
  OK(g, kps_run(g, &opt, ctx));
  return kt_text_close(&out);
}

/* ---------------------------------------------------------------- registry ------ */

static void test_registry_data(void **state) {
  (void)state;
  assert_true(kps_n_passes >= 5);
  for (int32_t i = 0; i < kps_n_passes; i++) {
    const kps_pass_info *p = &kps_passes[i];
    assert_non_null(p->name);
    assert_true(strlen(p->summary) > 0);
    assert_non_null(p->run);
    assert_ptr_equal(kps_pass_find(p->name), p);
    assert_true(p->n_options >= 0 && p->n_options <= KPS_MAX_OPTIONS);
  }
  const kps_pass_info *fold = kps_pass_find("fold");
  assert_non_null(fold);
  assert_int_equal(fold->n_options, 1);
  assert_string_equal(fold->options[0].name, "max-bytes");
  assert_int_equal(fold->options[0].type, KPS_OPT_INT);
  assert_true(fold->options[0].dflt == KIR_MAX_FOLD_BYTES);
  assert_string_equal(fold->stats[0], "nodes folded");
  const kps_pass_info *place = kps_pass_find("place");
  assert_non_null(place);
  assert_string_equal(place->options[0].name, "strict");
  assert_int_equal(place->options[0].type, KPS_OPT_BOOL);
  assert_null(kps_pass_find("nope"));
  assert_null(kps_pass_find(NULL));
}

/* ---------------------------------------------------------------- parsing ------- */

static void test_parse_options(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kps_pipeline pl;
  OK(g, kps_pipeline_parse(g, " infer-shapes, fold{max-bytes=4096} ,dce{},place{strict}", &pl));
  assert_int_equal(pl.n, 4);
  assert_string_equal(pl.entries[0].pass->name, "infer-shapes");
  assert_int_equal(pl.entries[0].column, 2);
  assert_string_equal(pl.entries[1].pass->name, "fold");
  assert_int_equal(pl.entries[1].column, 16);
  assert_true(pl.entries[1].options.set[0]);
  assert_true(pl.entries[1].options.value[0] == 4096);
  assert_int_equal(pl.entries[2].options.n, 0);
  assert_true(pl.entries[3].options.set[0]);
  assert_true(pl.entries[3].options.value[0] == 1);
  kps_pipeline_free(&pl);
  /* Defaults where not given; spaces and commas inside braces; explicit bools. */
  OK(g, kps_pipeline_parse(g, "fold,place{ strict=false },fold{ max-bytes=0, }", &pl));
  assert_int_equal(pl.n, 3);
  assert_false(pl.entries[0].options.set[0]);
  assert_true(pl.entries[0].options.value[0] == KIR_MAX_FOLD_BYTES);
  assert_true(pl.entries[1].options.set[0] && pl.entries[1].options.value[0] == 0);
  assert_true(pl.entries[2].options.value[0] == 0);
  kps_pipeline_free(&pl);
  kps_pipeline_free(NULL);
  kir_graph_destroy(g);
}

typedef struct bad_case {
  const char *pipeline;
  const char *message; /* the whole message after "pipeline '...', " */
} bad_case;

static void test_parse_errors(void **state) {
  (void)state;
  const bad_case cases[] = {
      {"fold,foo", "column 6: unknown pass 'foo' (known: "},
      {"fold,,dce", "column 6: empty pass name"},
      {"fold,", "column 6: empty pass name"},
      {"", "column 1: empty pass name"},
      {"  ", "column 3: empty pass name"},
      {",fold", "column 1: empty pass name"},
      {"{max-bytes=1}", "column 1: empty pass name"},
      {"fold{max-bytes=4096", "column 5: unbalanced braces: '{' is never closed"},
      {"fold}", "column 5: unbalanced braces: '}' without '{'"},
      {"fold{max-bytes=1}}", "column 18: unbalanced braces: '}' without '{'"},
      {"fold{{}}", "column 6: unexpected '{' in the options of fold"},
      {"fold{bogus=1}", "column 6: unknown option 'bogus' of pass fold (known: max-bytes)"},
      {"dce{x}", "column 5: unknown option 'x' of pass dce (known: none)"},
      {"fold{max-bytes=abc}", "column 16: bad value 'abc' for option max-bytes of pass fold "
                              "(expected an integer in [0, 4294967296])"},
      {"fold{max-bytes=-1}", "column 16: bad value '-1' for option max-bytes"},
      {"fold{max-bytes=99999999999999999999}", "column 16: bad value '99999999999999999999'"},
      {"fold{max-bytes=12k}", "column 16: bad value '12k'"},
      {"fold{max-bytes}", "column 6: bad value '' for option max-bytes"},
      {"fold{max-bytes=}", "column 16: bad value '' for option max-bytes"},
      {"place{strict=maybe}", "column 14: bad value 'maybe' for option strict of pass place "
                              "(expected true or false)"},
      {"fold{max-bytes=1 max-bytes=2}", "column 18: option max-bytes of pass fold given twice"},
      {"fold dce", "column 6: expected ',' after pass fold, got 'd'"},
      {"fold=1", "column 5: expected ',' after pass fold, got '='"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kir_graph *g = small_fold_graph();
    kps_options opt = {.pipeline = cases[i].pipeline};
    assert_int_equal(kps_run(g, &opt, &y_ctx), KILN_ERR_ARGUMENT);
    char want[512];
    snprintf(want, sizeof want, "pipeline '%s', %s", cases[i].pipeline, cases[i].message);
    if (strncmp(g->error, want, strlen(want)) != 0)
      fail_msg("pipeline '%s':\n got  %s\n want %s...", cases[i].pipeline, g->error, want);
    /* Parsed before anything ran: the foldable node is still an add. */
    assert_int_equal(kt_find(g, "a")->op, KIR_OP_ADD);
    kir_graph_destroy(g);
  }
}

static void test_levels(void **state) {
  (void)state;
  char buf[256];
  assert_true(kps_pipeline_for_level(0, buf, sizeof buf));
  assert_string_equal(buf, "infer-shapes,place");
  assert_true(kps_pipeline_for_level(1, buf, sizeof buf));
  assert_string_equal(buf, "infer-shapes,fold,fold-batchnorm,dce,place");
  assert_true(kps_pipeline_for_level(2, buf, sizeof buf));
  assert_true(strncmp(buf, "infer-shapes,fold,", 18) == 0);
  /* Every -O2 name is registered, and every registered O2 pass is there, in order. */
  kir_graph *g = kir_graph_create();
  kps_pipeline pl;
  OK(g, kps_pipeline_parse(g, buf, &pl));
  const char *o2[] = {"infer-shapes", "fold", "fold-batchnorm", "simplify", "cse", "dce", "fuse",
                      "place", "plan-memory"};
  int32_t k = 0;
  for (size_t i = 0; i < sizeof o2 / sizeof o2[0]; i++) {
    if (!kps_pass_find(o2[i])) continue;
    assert_true(k < pl.n);
    assert_string_equal(pl.entries[k++].pass->name, o2[i]);
  }
  assert_int_equal(k, pl.n);
  kps_pipeline_free(&pl);
  kir_graph_destroy(g);
  assert_false(kps_pipeline_for_level(3, buf, sizeof buf));
  assert_false(kps_pipeline_for_level(-1, buf, sizeof buf));
  assert_false(kps_pipeline_for_level(1, buf, 8));
}

/* ---------------------------------------------------------------- options ------- */

static void test_fold_max_bytes(void **state) {
  (void)state;
  /* 24-byte results: a cap of 23 folds nothing (a is skipped, so b and r never see
   * constant inputs), 24 folds all three. */
  kir_graph *g = small_fold_graph();
  kt_text log;
  kt_text_open(&log);
  kps_options opt = {.pipeline = "fold{max-bytes=23}", .log = log.f};
  OK(g, kps_run(g, &opt, &y_ctx));
  opt.pipeline = "fold{max-bytes=24}";
  OK(g, kps_run(g, &opt, &y_ctx));
  char *s = kt_text_close(&log);
  assert_non_null(strstr(s, "pass fold: 1 skipped (too large) ["));
  assert_non_null(strstr(s, "pass fold: 3 nodes folded ["));
  assert_int_equal(kt_find(g, "r")->op, KIR_OP_CONSTANT);
  free(s);
  /* Called directly (no manager, no options): the default cap. */
  kir_graph *h = small_fold_graph();
  kps_result res;
  memset(&res, 0, sizeof res);
  OK(h, kps_fold(h, NULL, &res));
  assert_true(res.stats[0].value == 3);
  kir_graph_destroy(h);
  kir_graph_destroy(g);
}

static void test_option_accessors(void **state) {
  (void)state;
  kps_entry_options o;
  memset(&o, 0, sizeof o);
  const kps_pass_info *fold = kps_pass_find("fold");
  o.info = fold->options;
  o.n = 1;
  o.value[0] = 77;
  kps_context ctx = {.options = &o};
  assert_true(kps_option_int(&ctx, "max-bytes", 5) == 77);
  assert_true(kps_option_int(&ctx, "other", 5) == 5);
  assert_true(kps_option_bool(&ctx, "max-bytes", false));
  assert_true(kps_option_int(NULL, "max-bytes", 5) == 5);
  kps_context none = {0};
  assert_true(kps_option_int(&none, "max-bytes", 9) == 9);
}

static void test_place_strict(void **state) {
  (void)state;
  /* A pin to a device the target lacks: soft by default, an error with place{strict}. */
  for (int strict = 0; strict < 2; strict++) {
    kir_graph *g = small_fold_graph();
    kir_node *y = kt_find(g, "y");
    y->device = kir_graph_strdup(g, "cuda:3");
    kps_options opt = {.pipeline = strict ? "place{strict}" : "place{strict=false}"};
    kiln_status st = kps_run(g, &opt, &y_ctx);
    if (strict) {
      assert_int_not_equal(st, KILN_OK);
      assert_true(strncmp(g->error, "pass place: ", 12) == 0);
      assert_non_null(strstr(g->error, "cuda:3"));
    } else {
      OK(g, st);
      assert_string_equal(kt_find(g, "y")->assigned_device, "cpu:0");
    }
    kir_graph_destroy(g);
  }
}

/* ---------------------------------------------------------------- printing ------ */

#define BANNER(when, pass) "// -----// IR Dump " when " " pass " //----- //\n"

static void test_print_after_all(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold", .print_after_all = true};
  char *s = run_captured(g, opt, NULL);
  char *b1 = strstr(s, BANNER("After", "infer-shapes"));
  char *b2 = strstr(s, BANNER("After", "fold"));
  assert_true(b1 == s && b2 > b1);
  assert_int_equal(count_of(s, "// -----// IR Dump"), 2);
  /* The listing after fold shows constants where the adds were. */
  assert_true(line_has(b1, "a", "add"));
  assert_true(line_has(b2, "a", "constant"));
  assert_true(line_has(b2, "y", "add"));
  free(s);
  kir_graph_destroy(g);
}

static void test_print_before_after(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold,dce", .print_before = "fold, dce",
                     .print_after = "dce"};
  char *s = run_captured(g, opt, &y_ctx);
  assert_int_equal(count_of(s, "// -----// IR Dump"), 3);
  char *b1 = strstr(s, BANNER("Before", "fold"));
  char *b2 = strstr(s, BANNER("Before", "dce"));
  char *b3 = strstr(s, BANNER("After", "dce"));
  assert_true(b1 == s && b2 > b1 && b3 > b2);
  /* Before fold the adds are there; after dce c2 is gone. */
  assert_true(line_has(b1, "a", "add"));
  assert_true(line_has(b2, "a", "constant"));
  assert_true(line_has(b1, "c2", "constant"));
  assert_false(line_has(b3, "c2", "constant"));
  free(s);
  kir_graph_destroy(g);
}

static void test_print_after_change(void **state) {
  (void)state;
  /* infer-shapes changes nothing (types are set), the second fold neither. */
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold,fold,dce", .print_after_change = true};
  char *s = run_captured(g, opt, &y_ctx);
  assert_int_equal(count_of(s, "// -----// IR Dump"), 2);
  char *b1 = strstr(s, BANNER("After", "fold"));
  char *b2 = strstr(s, BANNER("After", "dce"));
  assert_true(b1 == s && b2 > b1);
  free(s);
  kir_graph_destroy(g);
  /* Restricted by print_after: only the dce that changed; dce runs twice. */
  g = small_fold_graph();
  opt = (kps_options){.pipeline = "fold,dce,dce", .print_after_change = true, .print_after = "dce"};
  s = run_captured(g, opt, &y_ctx);
  assert_int_equal(count_of(s, "// -----// IR Dump"), 1);
  assert_true(strstr(s, BANNER("After", "dce")) == s);
  free(s);
  kir_graph_destroy(g);
  /* With print_after_all: fold changed, the later infer-shapes did not. */
  g = small_fold_graph();
  opt = (kps_options){.pipeline = "fold,infer-shapes", .print_after_change = true,
                      .print_after_all = true};
  s = run_captured(g, opt, &y_ctx);
  assert_int_equal(count_of(s, "// -----// IR Dump"), 1);
  assert_true(strstr(s, BANNER("After", "fold")) == s);
  free(s);
  kir_graph_destroy(g);
}

static void test_unknown_in_lists(void **state) {
  (void)state;
  const char *what[] = {"print-before", "print-after", "disable-pass"};
  for (int k = 0; k < 3; k++) {
    kir_graph *g = small_fold_graph();
    kps_options opt = {.pipeline = "fold"};
    if (k == 0) opt.print_before = "fold,nope";
    if (k == 1) opt.print_after = "nope";
    if (k == 2) opt.disable = " nope ";
    assert_int_equal(kps_run(g, &opt, NULL), KILN_ERR_ARGUMENT);
    char want[128];
    snprintf(want, sizeof want, "unknown pass 'nope' in %s (known: ", what[k]);
    assert_true(strncmp(g->error, want, strlen(want)) == 0);
    assert_int_equal(kt_find(g, "a")->op, KIR_OP_ADD);
    kir_graph_destroy(g);
  }
}

static void test_disable(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kt_text log;
  kt_text_open(&log);
  kps_options opt = {.pipeline = "infer-shapes,fold,dce", .disable = "fold", .log = log.f,
                     .print_after_all = true, .print_to = log.f};
  OK(g, kps_run(g, &opt, &y_ctx));
  char *s = kt_text_close(&log);
  assert_non_null(strstr(s, "pass fold: disabled\n"));
  assert_null(strstr(s, BANNER("After", "fold")));
  assert_non_null(strstr(s, BANNER("After", "dce")));
  assert_int_equal(kt_find(g, "a")->op, KIR_OP_ADD);
  /* Nothing folded, so dce keeps every node y needs. */
  assert_int_equal(g->n_nodes, 7);
  free(s);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- tables -------- */

static void test_stats_table(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kt_text rep, out;
  kt_text_open(&rep);
  kt_text_open(&out);
  kps_options opt = {.pipeline = "infer-shapes,fold,dce", .stats = true, .report_to = rep.f,
                     .print_to = out.f};
  OK(g, kps_run(g, &opt, &y_ctx));
  char *s = kt_text_close(&rep), *o = kt_text_close(&out);
  assert_string_equal(o, ""); /* the table goes to report_to only */
  assert_non_null(strstr(s, "... Pass statistics ...\n"));
  assert_non_null(strstr(s, "\n      0 infer-shapes - types changed\n"
                            "      3 fold - nodes folded\n"
                            "      0 fold - skipped (too large)\n"
                            "      4 dce - nodes removed\n"));
  free(s);
  free(o);
  kir_graph_destroy(g);
}

static void test_timing_table(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold,dce", .timing = true, .disable = "dce"};
  char *s = run_captured(g, opt, &y_ctx);
  assert_non_null(strstr(s, "... Pass execution timing report ...\n"));
  assert_non_null(strstr(s, "  Total Execution Time: "));
  assert_non_null(strstr(s, "   ---Wall Time---   --- Name ---\n"));
  assert_non_null(strstr(s, "%)  infer-shapes\n"));
  assert_non_null(strstr(s, "%)  fold\n"));
  assert_null(strstr(s, "%)  dce\n")); /* disabled: not timed */
  assert_non_null(strstr(s, " (100.0%)  Total\n"));
  free(s);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- verify, log --- */

static void test_log_lines(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kt_text log;
  kt_text_open(&log);
  kps_options opt = {.pipeline = "  fold ,\tdce ", .log = log.f};
  OK(g, kps_run(g, &opt, &y_ctx));
  char *s = kt_text_close(&log);
  assert_non_null(strstr(s, "pass fold: 3 nodes folded ["));
  assert_non_null(strstr(s, " ms]\npass dce: 4 nodes removed ["));
  assert_int_equal(count_of(s, "\n"), 2);
  free(s);
  kir_graph_destroy(g);
}

static void test_verify_each(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold,dce", .verify_each = true};
  OK(g, kps_run(g, &opt, NULL));
  /* A stored type that disagrees with inference: dce keeps it, verify-each notices. */
  kt_find(g, "y")->type.dims[0] = 7;
  opt.pipeline = "dce";
  assert_int_equal(kps_run(g, &opt, NULL), KILN_ERR_INTERNAL);
  assert_true(strncmp(g->error, "pass dce broke the graph: ", 26) == 0);
  assert_non_null(strstr(g->error, "'y'"));
  opt.pipeline = "infer-shapes, dce";
  OK(g, kps_run(g, &opt, NULL));
  kir_graph_destroy(g);
}

static void test_error_names_pass(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = KILN_I32;
  kir_tensor *x = kir_tensor_new(&t);
  kir_node *num = kir_node_add(g, KIR_OP_CONSTANT, "num", NULL, 0);
  *(int32_t *)x->data = 7;
  OK(g, kir_attr_set_tensor(g, num, "value", x));
  kir_node *zero = kir_node_add(g, KIR_OP_CONSTANT, "zero", NULL, 0);
  *(int32_t *)x->data = 0;
  OK(g, kir_attr_set_tensor(g, zero, "value", x));
  kir_tensor_free(x);
  kt_infer(g, num);
  kt_infer(g, zero);
  kt_op2(g, KIR_OP_DIV, "quotient", num, zero);
  kps_options opt = {.pipeline = "fold", .stats = true, .report_to = NULL};
  kt_text out;
  kt_text_open(&out);
  opt.print_to = out.f;
  assert_int_equal(kps_run(g, &opt, NULL), KILN_ERR_EXEC);
  char *s = kt_text_close(&out);
  assert_true(strncmp(g->error, "pass fold: ", 11) == 0);
  assert_non_null(strstr(g->error, "'quotient'"));
  assert_int_equal(kt_find(g, "quotient")->op, KIR_OP_DIV);
  /* The failed pass is still reported (it ran), with what it counted. */
  assert_non_null(strstr(s, "Pass statistics"));
  free(s);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- JSON checker -- */

/* A tiny JSON syntax checker (RFC 8259 values; no duplicate-key check). */
static const char *js_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  return p;
}
static const char *js_value(const char *p, int depth);
static const char *js_string(const char *p) {
  if (*p++ != '"') return NULL;
  for (; *p != '"'; p++) {
    if ((unsigned char)*p < 0x20) return NULL;
    if (*p != '\\') continue;
    p++;
    if (*p == 'u') {
      for (int i = 1; i <= 4; i++)
        if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) return NULL;
      p += 4;
    } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
      return NULL;
    }
  }
  return p + 1;
}
static const char *js_number(const char *p) {
  const char *s = p;
  if (*p == '-') p++;
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
  else return NULL;
  if (*p == '.') {
    if (!(*++p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  return p > s ? p : NULL;
}
static const char *js_seq(const char *p, char close, bool object, int depth) {
  p = js_ws(p + 1);
  if (*p == close) return p + 1;
  for (;;) {
    if (object) {
      if (!(p = js_string(js_ws(p)))) return NULL;
      p = js_ws(p);
      if (*p++ != ':') return NULL;
    }
    if (!(p = js_value(p, depth + 1))) return NULL;
    p = js_ws(p);
    if (*p == close) return p + 1;
    if (*p++ != ',') return NULL;
  }
}
static const char *js_value(const char *p, int depth) {
  if (depth > 64) return NULL;
  p = js_ws(p);
  if (*p == '{') return js_seq(p, '}', true, depth);
  if (*p == '[') return js_seq(p, ']', false, depth);
  if (*p == '"') return js_string(p);
  if (!strncmp(p, "true", 4)) return p + 4;
  if (!strncmp(p, "false", 5)) return p + 5;
  if (!strncmp(p, "null", 4)) return p + 4;
  return js_number(p);
}
static bool json_valid(const char *s) {
  const char *p = js_value(s, 0);
  return p && *js_ws(p) == '\0';
}

static void test_json_checker(void **state) {
  (void)state;
  assert_true(json_valid("{\"a\": [1, -2.5e3, true, null, \"x\\u00ff\"], \"b\": {}}\n"));
  const char *bad[] = {"{", "[1,]", "{\"a\" 1}", "\"\\x41\"", "01", "[1] 2", "{\"a\":}", "\"\n\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (json_valid(bad[i])) fail_msg("accepted %s", bad[i]);
}

/* ---------------------------------------------------------------- dumps --------- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

static bool have_dot(void) { return system("command -v dot >/dev/null 2>&1") == 0; }

static void check_dot(const char *path) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' -o /dev/null", path);
  if (system(cmd) != 0) fail_msg("dot rejected %s", path);
}

/* x[4,8] @ w[8,5] + (b1 + b2) -> relu -> y; dead = neg(x). fold turns b into a constant
 * (changed), dce drops b1, b2 and dead (removed), fuse turns y into a fused matmul and
 * drops mm and h (changed + removed). */
static kir_graph *dump_graph(void) {
  kir_graph *g = kir_graph_create();
  int64_t dx[2] = {4, 8}, dw[2] = {8, 5}, db[1] = {5};
  kir_node *x = ph(g, "x", 2, dx);
  kir_node *w = cst(g, "w", 2, dw, 3);
  kir_node *b1 = cst(g, "b1", 1, db, 4);
  kir_node *b2 = cst(g, "b2", 1, db, 5);
  kir_node *b = kt_op2(g, KIR_OP_ADD, "b", b1, b2);
  kir_node *mm = kt_op2(g, KIR_OP_MATMUL, "mm", x, w);
  kir_node *h = kt_op2(g, KIR_OP_ADD, "h", mm, b);
  kt_op1(g, KIR_OP_RELU, "y", h);
  kt_op1(g, KIR_OP_NEG, "dead", x);
  return g;
}

static char *dump_file(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return slurp(path);
}

/* The JSON of one stage: valid, and holds each expected fragment. */
static void check_json(const char *dir, const char *name, const char *const *want, int n) {
  char *s = dump_file(dir, name);
  if (!json_valid(s)) fail_msg("%s is not valid JSON:\n%s", name, s);
  for (int i = 0; i < n; i++)
    if (!strstr(s, want[i])) fail_msg("%s lacks '%s':\n%s", name, want[i], s);
  free(s);
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_dump_dir(void **state) {
  (void)state;
  char dir[512];
  snprintf(dir, sizeof dir, "%s", kt_path("dump-pipeline"));
  kir_graph *g = dump_graph();
  kps_options opt = {.pipeline = "infer-shapes,fold,dce,fuse", .dump_dir = dir,
                     .verify_each = true};
  OK(g, kps_run(g, &opt, &y_ctx));
  assert_int_equal(kt_find(g, "y")->op, KIR_OP_FUSED_MATMUL);
  const char *stages[] = {"00-input", "01-infer-shapes", "02-fold", "03-dce", "04-fuse"};
  const char *ext[] = {"ktxt", "dot", "json"};
  bool dot = have_dot();
  if (!dot) fprintf(stderr, "note: `dot` not installed; DOT files checked by text only\n");
  for (int i = 0; i < 5; i++)
    for (int k = 0; k < 3; k++) {
      char name[64], path[1024];
      snprintf(name, sizeof name, "%s.%s", stages[i], ext[k]);
      char *s = dump_file(dir, name);
      assert_true(strlen(s) > 0);
      if (k == 1) {
        assert_true(strncmp(s, "digraph kiln {\n", 15) == 0);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (dot) check_dot(path);
      }
      free(s);
    }
  assert_int_equal(count_files(dir), 15); /* and no temporary files */
  const char *input[] = {"\"index\": 0", "\"pass\": \"input\"", "\"added\": [],",
                         "\"removed\": [],", "\"changed\": [],"};
  check_json(dir, "00-input.json", input, 5);
  const char *infer_w[] = {"\"pass\": \"infer-shapes\"", "\"reported_change\": false",
                           "\"added\": [],", "\"removed\": [],", "\"changed\": [],",
                           "\"stats\": {\"types changed\": 0}"};
  check_json(dir, "01-infer-shapes.json", infer_w, 6);
  const char *fold_w[] = {"\"index\": 2", "\"reported_change\": true", "\"added\": [],",
                          "\"removed\": [],",
                          ("\"changed\": [\n    {\"id\": 4, \"id_before\": 4, \"name\": \"b\", "
                           "\"what\": [\"op\", \"inputs\", \"attrs\"]}\n  ],"),
                          "\"stats\": {\"nodes folded\": 1, \"skipped (too large)\": 0}"};
  check_json(dir, "02-fold.json", fold_w, 6);
  const char *dce_w[] = {"\"nodes_before\": 9,\n  \"nodes_after\": 6,", "\"added\": [],",
                         ("\"removed\": [\n    {\"id\": 2, \"name\": \"b1\"},\n"
                          "    {\"id\": 3, \"name\": \"b2\"},\n    {\"id\": 8, \"name\": \"dead\"}\n  ],"),
                         "\"changed\": [],", "\"stats\": {\"nodes removed\": 3}"};
  check_json(dir, "03-dce.json", dce_w, 5);
  const char *fuse_w[] = {"\"added\": [],", "{\"id\": 3, \"name\": \"mm\"}",
                          "{\"id\": 4, \"name\": \"h\"}", "\"name\": \"y\", \"what\": [\"op\", \"inputs\", \"attrs\"]"};
  check_json(dir, "04-fuse.json", fuse_w, 4);
  char *t = dump_file(dir, "01-infer-shapes.ktxt");
  assert_true(line_has(t, "b", "add"));
  free(t);
  t = dump_file(dir, "02-fold.ktxt");
  assert_true(line_has(t, "b", "constant"));
  assert_true(line_has(t, "dead", "neg"));
  free(t);
  t = dump_file(dir, "03-dce.ktxt");
  assert_false(line_has(t, "dead", "neg"));
  free(t);
  /* Running again into the same directory replaces the stage files and keeps others. */
  char keep[1024];
  snprintf(keep, sizeof keep, "%s/05-notes.txt", dir);
  FILE *f = fopen(keep, "w");
  assert_non_null(f);
  fclose(f);
  kir_graph *g2 = dump_graph();
  opt.pipeline = "fold";
  OK(g2, kps_run(g2, &opt, &y_ctx));
  assert_int_equal(count_files(dir), 7);
  f = fopen(keep, "r");
  assert_non_null(f);
  fclose(f);
  check_json(dir, "01-fold.json", fold_w + 4, 1);
  kir_graph_destroy(g2);
  kir_graph_destroy(g);
}

static void test_dump_dir_errors(void **state) {
  (void)state;
  kir_graph *g = small_fold_graph();
  kps_options opt = {.pipeline = "fold", .dump_dir = "/nonexistent-kiln-dir/sub"};
  assert_int_equal(kps_run(g, &opt, NULL), KILN_ERR_IO);
  assert_non_null(strstr(g->error, "cannot create dump directory '/nonexistent-kiln-dir/sub'"));
  assert_int_equal(kt_find(g, "a")->op, KIR_OP_ADD); /* failed before the first pass */
  const char *file = kt_path("dump-not-a-dir");
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  opt.dump_dir = file;
  assert_int_equal(kps_run(g, &opt, NULL), KILN_ERR_IO);
  assert_non_null(strstr(g->error, "is not a directory"));
  kir_graph_destroy(g);
}

/* Exact JSON for a tiny change: fold of n = neg(c) into a constant. */
static void test_change_json_exact(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {2};
  kir_node *c = cst(g, "c", 1, d, 1);
  kt_op1(g, KIR_OP_NEG, "n", c);
  kir_graph *before = kir_graph_clone(g);
  kps_result res;
  memset(&res, 0, sizeof res);
  OK(g, kps_fold(g, NULL, &res));
  kt_text out;
  kt_text_open(&out);
  kps_write_change_json(before, g, 3, "fold", &res, out.f);
  char *s = kt_text_close(&out);
  assert_string_equal(s, "{\n"
                         "  \"index\": 3,\n"
                         "  \"pass\": \"fold\",\n"
                         "  \"reported_change\": true,\n"
                         "  \"nodes_before\": 2,\n"
                         "  \"nodes_after\": 2,\n"
                         "  \"added\": [],\n"
                         "  \"removed\": [],\n"
                         "  \"changed\": [\n"
                         "    {\"id\": 1, \"id_before\": 1, \"name\": \"n\", \"what\": [\"op\", "
                         "\"inputs\", \"attrs\"]}\n"
                         "  ],\n"
                         "  \"stats\": {\"nodes folded\": 1, \"skipped (too large)\": 0}\n"
                         "}\n");
  free(s);
  /* A device change alone. */
  kir_graph *after = kir_graph_clone(before);
  after->nodes[0]->assigned_device = kir_graph_strdup(after, "cpu:0");
  kt_text_open(&out);
  kps_write_change_json(before, after, 1, "place", NULL, out.f);
  s = kt_text_close(&out);
  assert_true(json_valid(s));
  assert_non_null(strstr(s, "\"changed\": [\n    {\"id\": 0, \"id_before\": 0, \"name\": \"c\", "
                            "\"what\": [\"device\"]}\n  ],\n  \"stats\": {}\n}\n"));
  kir_graph_destroy(after);
  free(s);
  kir_graph_destroy(before);
  kir_graph_destroy(g);
}

/* Names with quotes, backslashes, newlines and non-ASCII bytes: DOT and JSON stay valid. */
static void test_escaping(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  int64_t d[1] = {2};
  kir_node *p = ph(g, "in\"put\\", 1, d);
  kir_node *q = kt_op1(g, KIR_OP_NEG, "line\nbreak \xc3\xa9 \xff {x} <y>", p);
  kt_op1(g, KIR_OP_RELU, "r", q);
  kt_text out;
  kt_text_open(&out);
  kps_write_dot(g, out.f);
  char *s = kt_text_close(&out);
  assert_non_null(strstr(s, "n0 [label=\"in\\\"put\\\\\\nplaceholder : f32[2]\""));
  assert_non_null(strstr(s, "line\\\\x0abreak \\\\xc3\\\\xa9 \\\\xff {x} <y>"));
  assert_non_null(strstr(s, "  n0 -> n1;\n  n1 -> n2;\n}\n"));
  if (have_dot()) {
    const char *path = kt_path("escape.dot");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
    check_dot(path);
  }
  free(s);
  kir_graph *empty = kir_graph_create();
  kt_text_open(&out);
  kps_write_change_json(empty, g, 1, "x", NULL, out.f);
  s = kt_text_close(&out);
  if (!json_valid(s)) fail_msg("invalid JSON:\n%s", s);
  assert_non_null(strstr(s, "\"name\": \"in\\\"put\\\\\""));
  assert_non_null(strstr(s, "\"line\\u000abreak \\u00c3\\u00a9 \\u00ff {x} <y>\""));
  free(s);
  kir_graph_destroy(empty);
  kir_graph_destroy(g);
}

/* SQLite-style: the Nth allocation fails, for N = 0, 1, ... until the run succeeds,
 * with every instrument on. Each failure is out-of-memory and leaks nothing. */
static void test_out_of_memory(void **state) {
  (void)state;
  char dir[512];
  snprintf(dir, sizeof dir, "%s", kt_path("dump-oom"));
  kir_graph *orig = dump_graph();
  FILE *sink = fopen("/dev/null", "w");
  assert_non_null(sink);
  kps_options opt = {.pipeline = "infer-shapes,fold{max-bytes=1000},dce", .verify_each = true,
                     .print_to = sink, .print_after_change = true, .print_before = "dce",
                     .stats = true, .timing = true, .dump_dir = dir};
  kiln_status st = KILN_ERR_NOMEM;
  int failures = 0;
  for (long n = 0; st != KILN_OK; n++) {
    assert_true(n < 100000);
    long live = kir_alloc_live();
    kir_graph *g = kir_graph_clone(orig);
    assert_non_null(g);
    kir_alloc_fail_after(n);
    st = kps_run(g, &opt, &y_ctx);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      failures++;
      if (st != KILN_ERR_NOMEM) fail_msg("n=%ld: %s: %s", n, kiln_status_name(st), g->error);
    }
    OK(g, kir_verify(g));
    kir_graph_destroy(g);
    if (kir_alloc_live() != live) fail_msg("n=%ld leaked %ld blocks", n, kir_alloc_live() - live);
  }
  assert_true(failures > 0);
  fclose(sink);
  kir_graph_destroy(orig);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_data),
      cmocka_unit_test(test_parse_options),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_levels),
      cmocka_unit_test(test_fold_max_bytes),
      cmocka_unit_test(test_option_accessors),
      cmocka_unit_test(test_place_strict),
      cmocka_unit_test(test_print_after_all),
      cmocka_unit_test(test_print_before_after),
      cmocka_unit_test(test_print_after_change),
      cmocka_unit_test(test_unknown_in_lists),
      cmocka_unit_test(test_disable),
      cmocka_unit_test(test_stats_table),
      cmocka_unit_test(test_timing_table),
      cmocka_unit_test(test_log_lines),
      cmocka_unit_test(test_verify_each),
      cmocka_unit_test(test_error_names_pass),
      cmocka_unit_test(test_json_checker),
      cmocka_unit_test(test_dump_dir),
      cmocka_unit_test(test_dump_dir_errors),
      cmocka_unit_test(test_change_json_exact),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
