/* kiln_cmd_run.c — `kiln run`: runs a graph (.kiln, or ONNX imported on the fly) with
 * the reference interpreter (--target ref), compiles and runs it (--target cpu), or runs
 * an artifact through libkiln_rt; tensors in as .npy or ONNX TensorProto (.pb) files, out
 * as .npy. Also `kiln compare A B` over the same two kinds of file. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_tool.h"

#define CMD "run"

typedef struct run_args {
  const char *path;
  const char *target; /* "ref" or "cpu"; artifacts ignore it */
  ktool_binding inputs[KTOOL_MAX_ARGS];
  int n_inputs;
  ktool_binding outputs[KTOOL_MAX_ARGS];
  int n_outputs;
  const char *fetch[KTOOL_MAX_ARGS];
  int n_fetch;
  bool random_inputs;
  uint64_t seed;
  const char *save_inputs; /* directory */
  bool print;
  ktool_import imp;
} run_args;

/* A named tensor: an input given or made, or an output computed. */
typedef struct named {
  const char *name;
  kir_tensor *t;
} named;

static int parse_args(int argc, char **argv, run_args *a) {
  a->target = "ref";
  for (int i = 0; i < argc; i++) {
    int irc = ktool_take_import_option(CMD, &i, argc, argv, &a->imp);
    if (irc >= 0) {
      if (irc != KTOOL_OK) return irc;
      continue;
    }
    const char *o = argv[i], *v = NULL;
    bool takes = !strcmp(o, "--target") || !strcmp(o, "--input") || !strcmp(o, "--output") ||
                 !strcmp(o, "--fetch") || !strcmp(o, "--random-inputs") ||
                 !strcmp(o, "--save-inputs");
    if (takes && !(v = ktool_value(CMD, &i, argc, argv))) return KTOOL_USAGE;
    if (takes && (a->n_inputs >= KTOOL_MAX_ARGS || a->n_outputs >= KTOOL_MAX_ARGS ||
                  a->n_fetch >= KTOOL_MAX_ARGS))
      return ktool_usage(CMD, "too many --input/--output/--fetch (at most %d)", KTOOL_MAX_ARGS);
    if (!strcmp(o, "--target")) {
      if (strcmp(v, "ref") && strcmp(v, "cpu"))
        return ktool_usage(CMD, "--target must be ref or cpu, not '%s'", v);
      a->target = v;
    } else if (!strcmp(o, "--input")) {
      if (!ktool_parse_binding(CMD, v, &a->inputs[a->n_inputs++])) return KTOOL_USAGE;
    } else if (!strcmp(o, "--output")) {
      if (!ktool_parse_binding(CMD, v, &a->outputs[a->n_outputs++])) return KTOOL_USAGE;
    } else if (!strcmp(o, "--fetch")) {
      a->fetch[a->n_fetch++] = v;
    } else if (!strcmp(o, "--random-inputs")) {
      char *end;
      errno = 0;
      a->seed = strtoull(v, &end, 10);
      if (errno || *end || !*v) return ktool_usage(CMD, "bad seed '%s'", v);
      a->random_inputs = true;
    } else if (!strcmp(o, "--save-inputs")) {
      a->save_inputs = v;
    } else if (!strcmp(o, "--print")) {
      a->print = true;
    } else if (o[0] == '-') {
      return ktool_usage(CMD, "unknown option '%s'", o);
    } else if (a->path) {
      return ktool_usage(CMD, "one model at a time ('%s' and '%s')", a->path, o);
    } else {
      a->path = o;
    }
  }
  if (!a->path) return ktool_usage(CMD, "which model?");
  if (a->n_outputs == 0) a->print = true;
  return KTOOL_OK;
}

static void free_named(named *xs, int n) {
  for (int i = 0; i < n; i++) kir_tensor_free(xs[i].t);
}

/* Writes DIR/NAME.npy with the name's unsafe bytes replaced, so a model's names
 * cannot steer the path. */
static bool save_input(const char *dir, const char *name, const kir_tensor *t) {
  char file[256], path[4096];
  size_t k = 0;
  for (const char *p = name; *p && k + 1 < sizeof file - 4; p++)
    file[k++] = (isalnum((unsigned char)*p) || *p == '-' || *p == '_') ? *p : '_';
  file[k] = '\0';
  snprintf(path, sizeof path, "%s/%s.npy", dir, file);
  if (!ktool_write_npy(path, t)) return false;
  fprintf(stderr, "kiln: wrote input %s to %s\n", name, path);
  return true;
}

/* The tensor for model input `name` of type `want`: from --input, or random. */
/* true when --input names this input. */
static bool given(const run_args *a, const char *name) {
  for (int i = 0; i < a->n_inputs; i++)
    if (!strcmp(a->inputs[i].name, name)) return true;
  return false;
}

static kir_tensor *input_for(const run_args *a, const char *name, const kir_type *want,
                             int index) {
  char tw[160], tg[160], esc[96];
  kir_type_format(want, tw, sizeof tw);
  for (int i = 0; i < a->n_inputs; i++) {
    if (strcmp(a->inputs[i].name, name)) continue;
    kir_tensor *t = ktool_read_tensor(a->inputs[i].path);
    if (t && !kir_type_equal(&t->type, want)) {
      kir_type_format(&t->type, tg, sizeof tg);
      ktool_error("input '%s': the model expects %s, %s holds %s",
                  kir_escape(name, esc, sizeof esc), tw, a->inputs[i].path, tg);
      kir_tensor_free(t);
      return NULL;
    }
    return t;
  }
  if (!a->random_inputs) {
    ktool_error("input '%s' (%s) is not given: use --input %s=FILE.npy or --random-inputs SEED",
                kir_escape(name, esc, sizeof esc), tw, kir_escape(name, esc, sizeof esc));
    return NULL;
  }
  kir_tensor *t = kir_tensor_new(want);
  if (!t) {
    ktool_error("out of memory");
    return NULL;
  }
  ktool_fill_random(t, a->seed + (uint64_t)index);
  if (a->save_inputs && !save_input(a->save_inputs, name, t)) {
    kir_tensor_free(t);
    return NULL;
  }
  return t;
}

/* Every --input must name a model input. */
static int check_input_names(const run_args *a, bool (*known)(const void *, const char *),
                             const void *model) {
  char esc[96];
  for (int i = 0; i < a->n_inputs; i++)
    if (!known(model, a->inputs[i].name))
      return ktool_error("--input '%s': the model has no input of that name",
                         kir_escape(a->inputs[i].name, esc, sizeof esc));
  return KTOOL_OK;
}

static int emit_outputs(const run_args *a, const named *outs, int n) {
  char esc[96];
  for (int i = 0; i < a->n_outputs; i++) {
    int k = 0;
    while (k < n && strcmp(outs[k].name, a->outputs[i].name)) k++;
    if (k == n)
      return ktool_error("--output '%s': not an output of this run",
                         kir_escape(a->outputs[i].name, esc, sizeof esc));
    if (!ktool_write_npy(a->outputs[i].path, outs[k].t)) return KTOOL_ERR;
  }
  if (a->print)
    for (int k = 0; k < n; k++) ktool_print_tensor(outs[k].name, outs[k].t, 10);
  return KTOOL_OK;
}

/* ---- artifacts, through libkiln_rt ---------------------------------------------- */

static bool rt_has_input(const void *m, const char *name) {
  return kiln_rt_model_find_input(m, name) >= 0;
}

static kir_type rt_type(const kiln_rt_tensor_info *info) {
  kir_type t = {.dtype = (kiln_dtype)info->dtype, .rank = info->rank};
  for (int d = 0; d < info->rank; d++) t.dims[d] = info->dims[d];
  return t;
}

static int run_model(const run_args *a, kiln_rt_model *m, named *ins, named *outs) {
  int ni = kiln_rt_model_num_inputs(m), no = kiln_rt_model_num_outputs(m);
  if (ni > KTOOL_MAX_ARGS || no > KTOOL_MAX_ARGS)
    return ktool_error("%s: more than %d inputs or outputs", a->path, KTOOL_MAX_ARGS);
  kiln_rt_buffer bin[KTOOL_MAX_ARGS], bout[KTOOL_MAX_ARGS];
  kiln_rt_tensor_info info;
  for (int i = 0; i < ni; i++) {
    kiln_rt_model_input(m, i, &info);
    kir_type t = rt_type(&info);
    ins[i].name = info.name;
    if (!given(a, info.name) && kiln_rt_model_input_has_default(m, i)) {
      bin[i] = (kiln_rt_buffer){NULL, info.nbytes}; /* the runtime reads the default */
      continue;
    }
    if (!(ins[i].t = input_for(a, info.name, &t, i))) return KTOOL_ERR;
    bin[i] = (kiln_rt_buffer){ins[i].t->data, info.nbytes};
  }
  for (int i = 0; i < no; i++) {
    kiln_rt_model_output(m, i, &info);
    kir_type t = rt_type(&info);
    outs[i].name = info.name;
    if (!(outs[i].t = kir_tensor_new(&t))) return ktool_error("out of memory");
    bout[i] = (kiln_rt_buffer){outs[i].t->data, info.nbytes};
  }
  kiln_rt_context *c = NULL;
  kiln_rt_status s = kiln_rt_context_create(m, &c);
  if (s == KILN_RT_OK) s = kiln_rt_run(c, bin, ni, bout, no);
  int rc = s == KILN_RT_OK ? KTOOL_OK
                           : ktool_error("%s (%s)", c ? kiln_rt_context_error(c) : kiln_rt_model_error(m),
                                         kiln_rt_status_name(s));
  kiln_rt_context_destroy(c);
  if (rc == KTOOL_OK) rc = emit_outputs(a, outs, no);
  return rc;
}

static int run_artifact(const run_args *a, const char *path) {
  kiln_rt_model *m = NULL;
  if (kiln_rt_model_open(path, &m) != KILN_RT_OK) {
    int rc = ktool_error("%s", kiln_rt_model_error(m));
    kiln_rt_model_close(m);
    return rc;
  }
  named ins[KTOOL_MAX_ARGS] = {0}, outs[KTOOL_MAX_ARGS] = {0};
  int rc = check_input_names(a, rt_has_input, m);
  if (rc == KTOOL_OK) rc = run_model(a, m, ins, outs);
  free_named(ins, KTOOL_MAX_ARGS);
  free_named(outs, KTOOL_MAX_ARGS);
  kiln_rt_model_close(m);
  return rc;
}

/* ---- graphs: the interpreter, or compile-then-run ------------------------------- */

static bool graph_has_input(const void *g, const char *name) {
  const kir_node *n = kir_graph_find(g, name);
  return n && n->op == KIR_OP_PLACEHOLDER;
}

/* The fetches: --fetch names, else the --output names, else the default outputs. */
static bool choose_fetches(const run_args *a, const kir_graph *g, ktool_roots *r) {
  const char *given[KTOOL_MAX_ARGS];
  int32_t n = a->n_fetch;
  if (n) memcpy(given, a->fetch, sizeof(char *) * (size_t)n);
  else for (n = 0; n < a->n_outputs; n++) given[n] = a->outputs[n].name;
  return ktool_roots_init(r, g, given, n);
}

static int run_interp(const run_args *a, kir_graph *g) {
  ktool_roots r;
  if (!choose_fetches(a, g, &r)) return KTOOL_ERR;
  char **names = r.names;
  int32_t nf = r.n, fetch_ids[KTOOL_MAX_ARGS];
  named ins[KTOOL_MAX_ARGS] = {0}, outs[KTOOL_MAX_ARGS] = {0};
  kir_feed feeds[KTOOL_MAX_ARGS];
  kir_tensor *results[KTOOL_MAX_ARGS] = {0};
  int n_in = 0, rc = KTOOL_OK;
  char esc[96];
  for (int32_t i = 0; i < nf && rc == KTOOL_OK; i++) {
    const kir_node *n = kir_graph_find(g, names[i]);
    if (!n || kir_op_has(n->op, KIR_F_NO_OUTPUT))
      rc = ktool_error("fetch '%s': no node of that name with an output",
                       kir_escape(names[i], esc, sizeof esc));
    else fetch_ids[i] = n->id;
  }
  for (int32_t i = 0; i < g->n_nodes && rc == KTOOL_OK; i++) {
    const kir_node *n = g->nodes[i];
    if (n->op != KIR_OP_PLACEHOLDER) continue;
    if (!given(a, n->name) && kir_attr_tensor(n, "default")) continue; /* its default */
    if (n_in == KTOOL_MAX_ARGS) rc = ktool_error("more than %d inputs", KTOOL_MAX_ARGS);
    else if (!(ins[n_in].t = input_for(a, n->name, &n->type, n_in))) rc = KTOOL_ERR;
    else feeds[n_in] = (kir_feed){n->id, ins[n_in].t}, ins[n_in++].name = n->name;
  }
  if (rc == KTOOL_OK &&
      kir_interp_run(g, NULL, feeds, n_in, fetch_ids, nf, NULL, 0, results) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  for (int32_t i = 0; rc == KTOOL_OK && i < nf; i++) outs[i] = (named){names[i], results[i]};
  if (rc == KTOOL_OK) rc = emit_outputs(a, outs, nf);
  free_named(ins, n_in);
  free_named(outs, nf);
  ktool_roots_free(&r);
  return rc;
}

/* Compiles to a private temp artifact, runs it, removes it. */
static int run_compiled(const run_args *a, kir_graph *g) {
  ktool_roots r;
  if (!choose_fetches(a, g, &r)) return KTOOL_ERR;
  const char *const *names = (const char *const *)r.names;
  char dir[] = "/tmp/kiln-run-XXXXXX", path[sizeof dir + 16];
  int rc = ktool_optimize(g, NULL, names, r.n, false, false, NULL);
  if (rc == KTOOL_OK && !mkdtemp(dir))
    rc = ktool_error("cannot make a temp directory: %s", strerror(errno));
  if (rc != KTOOL_OK) {
    ktool_roots_free(&r);
    return rc;
  }
  snprintf(path, sizeof path, "%s/model.kart", dir);
  kcg_options opt = {.pipeline = KPS_DEFAULT_PIPELINE};
  if (kcg_compile_cpu(g, names, r.n, &opt, path) != KILN_OK)
    rc = ktool_error("%s (%s)", g->error, kiln_status_name(g->status));
  if (rc == KTOOL_OK) rc = run_artifact(a, path);
  unlink(path);
  rmdir(dir);
  ktool_roots_free(&r);
  return rc;
}

int ktool_cmd_run(int argc, char **argv) {
  run_args a = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc != KTOOL_OK) return rc;
  if (ktool_is_artifact(a.path)) {
    if ((rc = ktool_no_import_options(a.path, &a.imp, "an artifact")) != KTOOL_OK) return rc;
    return run_artifact(&a, a.path);
  }
  kir_graph *g = ktool_load_model(a.path, &a.imp);
  if (!g) return KTOOL_ERR;
  rc = check_input_names(&a, graph_has_input, g);
  if (rc == KTOOL_OK) rc = !strcmp(a.target, "cpu") ? run_compiled(&a, g) : run_interp(&a, g);
  kir_graph_destroy(g);
  return rc;
}

/* ---- kiln compare ---------------------------------------------------------------- */

int ktool_cmd_compare(int argc, char **argv) {
  const char *files[2] = {0};
  int nfiles = 0;
  double tol = 1e-5;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--tol")) {
      const char *v = ktool_value("compare", &i, argc, argv);
      char *end;
      if (!v) return KTOOL_USAGE;
      tol = strtod(v, &end);
      if (*end || !(tol >= 0)) return ktool_usage("compare", "bad tolerance '%s'", v);
    } else if (nfiles < 2 && argv[i][0] != '-') {
      files[nfiles++] = argv[i];
    } else {
      return ktool_usage("compare", "unexpected argument '%s'", argv[i]);
    }
  }
  if (nfiles != 2) return ktool_usage("compare", "needs two tensor files (.npy or ONNX .pb)");
  kir_tensor *x = ktool_read_tensor(files[0]), *y = x ? ktool_read_tensor(files[1]) : NULL;
  int rc = KTOOL_ERR;
  if (x && y && !kir_type_equal(&x->type, &y->type)) {
    char tx[160], ty[160];
    kir_type_format(&x->type, tx, sizeof tx);
    kir_type_format(&y->type, ty, sizeof ty);
    ktool_error("%s is %s but %s is %s", files[0], tx, files[1], ty);
  } else if (x && y) {
    double worst = 0, scale = 0;
    int64_t n = kir_type_numel(&x->type);
    for (int64_t i = 0; i < n; i++) {
      double u = kir_tensor_get_f(x, i), v = kir_tensor_get_f(y, i);
      worst = (isnan(u) || isnan(v)) ? INFINITY : fmax(worst, fabs(u - v));
      /* 64-bit integers above 2^53 can differ where their doubles agree */
      if (u == v && kir_dtype_is_int(x->type.dtype) && kir_tensor_get_i(x, i) != kir_tensor_get_i(y, i))
        worst = fmax(worst, 1);
      scale = fmax(scale, fabs(v));
    }
    double rel = worst / fmax(scale, 1e-30);
    printf("relative error %.3g (max abs diff %.3g, max |b| %.3g) over %lld elements: %s\n",
           rel, worst, scale, (long long)n, rel <= tol ? "ok" : "TOO LARGE");
    rc = rel <= tol ? KTOOL_OK : KTOOL_ERR;
  }
  kir_tensor_free(x);
  kir_tensor_free(y);
  return rc;
}
