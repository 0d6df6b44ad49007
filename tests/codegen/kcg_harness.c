/* kcg_harness.c — the codegen tests' shared harness; see kcg_harness.h. Tests only:
 * compiles through kcg_compile_cpu and runs through libkiln_rt's public API. */
#include "kcg_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/kcg.h"

/* ---------------------------------------------------------------- graph building */

int32_t kh_finish(kir_graph *g, kir_node *n) {
  assert_non_null(n);
  if (kir_infer_node(g, n) != KILN_OK) fail_msg("infer %s: %s", n->name, g->error);
  return n->id;
}

kir_node *kh_add(kir_graph *g, kir_op op, const char *name, const int32_t *in, int32_t n) {
  kir_node *node = kir_node_add(g, op, name, in, n);
  if (!node) fail_msg("kir_node_add %s: %s", name, g->error);
  return node;
}

int32_t kh_ph(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_node *n = kh_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_int_equal(kir_attr_set_int(g, n, "dtype", dt), KILN_OK);
  assert_int_equal(kir_attr_set_ints(g, n, "shape", dims, rank), KILN_OK);
  return kh_finish(g, n);
}

kir_tensor *kh_tensor(kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type t = {dt, rank, {0}};
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  kir_tensor *x = kir_tensor_new(&t);
  assert_non_null(x);
  return x;
}

int32_t kh_cst_t(kir_graph *g, const char *name, const kir_tensor *t) {
  kir_node *n = kh_add(g, KIR_OP_CONSTANT, name, NULL, 0);
  assert_int_equal(kir_attr_set_tensor(g, n, "value", t), KILN_OK);
  return kh_finish(g, n);
}

int32_t kh_cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims,
               uint64_t seed) {
  kir_tensor *t = kh_tensor(dt, rank, dims);
  kt_fill(t, seed, -1, 1);
  int32_t id = kh_cst_t(g, name, t);
  kir_tensor_free(t);
  return id;
}

int32_t kh_op1(kir_graph *g, kir_op op, const char *name, int32_t a) {
  return kh_finish(g, kh_add(g, op, name, &a, 1));
}

int32_t kh_op2(kir_graph *g, kir_op op, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  return kh_finish(g, kh_add(g, op, name, in, 2));
}

int32_t kh_matmul(kir_graph *g, const char *name, int32_t a, int32_t b, int ta, int tb) {
  int32_t in[2] = {a, b};
  kir_node *n = kh_add(g, KIR_OP_MATMUL, name, in, 2);
  if (ta) assert_int_equal(kir_attr_set_int(g, n, "transpose_a", 1), KILN_OK);
  if (tb) assert_int_equal(kir_attr_set_int(g, n, "transpose_b", 1), KILN_OK);
  return kh_finish(g, n);
}

int32_t kh_reduce(kir_graph *g, kir_op op, const char *name, int32_t a, const int64_t *axes,
                  int32_t n_axes, int keep) {
  kir_node *n = kh_add(g, op, name, &a, 1);
  if (axes) assert_int_equal(kir_attr_set_ints(g, n, "axes", axes, n_axes), KILN_OK);
  if (keep) assert_int_equal(kir_attr_set_int(g, n, "keep_dims", 1), KILN_OK);
  return kh_finish(g, n);
}

int32_t kh_with_ints(kir_graph *g, kir_op op, const char *name, int32_t a, const char *attr,
                     const int64_t *v, int32_t n_v) {
  kir_node *n = kh_add(g, op, name, &a, 1);
  if (attr) assert_int_equal(kir_attr_set_ints(g, n, attr, v, n_v), KILN_OK);
  return kh_finish(g, n);
}

int32_t kh_clamp(kir_graph *g, const char *name, int32_t a, double lo, double hi) {
  kir_node *n = kh_add(g, KIR_OP_CLAMP, name, &a, 1);
  if (!isnan(lo)) assert_int_equal(kir_attr_set_float(g, n, "min", lo), KILN_OK);
  if (!isnan(hi)) assert_int_equal(kir_attr_set_float(g, n, "max", hi), KILN_OK);
  return kh_finish(g, n);
}

void kh_out(kh_outs *o, kir_graph *g, int32_t id) {
  assert_true(o->n < KH_MAX_OUTS);
  o->names[o->n++] = g->nodes[id]->name;
}

/* ---------------------------------------------------------------- harness ------- */

/* Placeholder values: names starting "pos" get [0.1, 4), "big" the whole int range,
 * others [-2, 2) for floats and [-10, 10) for integers; NONZERO replaces 0 by 1. */
static kir_tensor *make_input(const kir_node *n, uint64_t seed, unsigned flags) {
  kir_tensor *t = kir_tensor_new(&n->type);
  assert_non_null(t);
  bool fl = kir_dtype_is_float(n->type.dtype);
  double lo = fl ? -2 : -10, hi = fl ? 2 : 10;
  if (kir_dtype_is_unsigned(n->type.dtype) && !fl) lo = 0, hi = 20;
  if (!strncmp(n->name, "pos", 3)) lo = 0.1, hi = 4;
  if (!strncmp(n->name, "big", 3)) {
    int bits = kir_dtype_bits(n->type.dtype);
    hi = bits == 64 ? 4e18 : ldexp(1.0, bits - 1) - 1;
    lo = -hi;
    if (kir_dtype_is_unsigned(n->type.dtype)) lo = 0, hi = bits == 64 ? 1.8e19 : 2 * hi + 1;
  }
  kt_fill(t, seed, lo, hi);
  int64_t ne = kir_type_numel(&n->type);
  for (int64_t i = 0; (flags & KH_NONZERO) && i < ne; i++) {
    if (kir_dtype_is_int(n->type.dtype) && kir_tensor_get_i(t, i) == 0) kir_tensor_set_i(t, i, 1);
  }
  return t;
}

kh_run *kh_run_new(void) {
  kh_run *r = calloc(1, sizeof *r);
  assert_non_null(r);
  return r;
}

void kh_run_free(kh_run *r) {
  for (int32_t i = 0; i < r->n_in; i++) kir_tensor_free(r->in[i]);
  for (int32_t j = 0; j < KH_MAX_OUTS; j++) {
    kir_tensor_free(r->want[j]);
    kir_tensor_free(r->got[j]);
  }
  free(r);
}

void kh_reference(kir_graph *g, const kh_outs *o, unsigned flags, kh_run *r) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    assert_true(r->n_in < KH_MAX_INS);
    r->in[r->n_in] = make_input(g->nodes[i], 1000 + (uint64_t)i, flags);
    r->feeds[r->n_in] = (kir_feed){i, r->in[r->n_in]};
    r->n_in++;
  }
  for (int32_t j = 0; j < o->n; j++) r->ids[j] = kir_graph_find(g, o->names[j])->id;
  if (kir_interp_run(g, NULL, r->feeds, r->n_in, r->ids, o->n, NULL, 0, r->want) != KILN_OK)
    fail_msg("reference: %s", g->error);
}

kiln_rt_status kh_run_artifact(kir_graph *g, const char *path, const kh_outs *o, kh_run *r,
                               char *err, size_t errlen) {
  kiln_rt_model *m = NULL;
  kiln_rt_context *c = NULL;
  kiln_rt_buffer ins[KH_MAX_INS], outb[KH_MAX_OUTS];
  kiln_rt_status s = kiln_rt_model_open(path, &m);
  if (s != KILN_RT_OK) fail_msg("open: %s", kiln_rt_model_error(m));
  assert_int_equal(kiln_rt_model_num_inputs(m), r->n_in);
  assert_int_equal(kiln_rt_model_num_outputs(m), o->n);
  for (int i = 0; i < r->n_in; i++) {
    kiln_rt_tensor_info info;
    assert_int_equal(kiln_rt_model_input(m, i, &info), KILN_RT_OK);
    kir_node *n = kir_graph_find(g, info.name);
    assert_non_null(n);
    int32_t k = 0;
    while (k < r->n_in && r->feeds[k].node != n->id) k++;
    assert_true(k < r->n_in);
    ins[i] = (kiln_rt_buffer){r->in[k]->data, (size_t)kir_type_nbytes(&r->in[k]->type)};
  }
  for (int32_t j = 0; j < o->n; j++) {
    const kir_node *n = g->nodes[r->ids[j]];
    r->got[j] = kir_tensor_new(&n->type);
    assert_non_null(r->got[j]);
    size_t nb = (size_t)kir_type_nbytes(&n->type);
    bool fl = kir_dtype_is_float(n->type.dtype);
    memset(r->got[j]->data, fl ? 0xFF : 0xAB, nb); /* NaN for floats */
    outb[j] = (kiln_rt_buffer){r->got[j]->data, nb};
  }
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  s = kiln_rt_run(c, ins, r->n_in, outb, o->n);
  snprintf(err, errlen, "%s", kiln_rt_context_error(c));
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
  return s;
}

void kh_compile_or_fail(kir_graph *g, const kh_outs *o, const char *path) {
  kcg_options opt = {NULL, KH_STRICT_FLAGS, "test", NULL};
  if (getenv("KCG_TEST_LOG")) opt.log = stderr;
  if (kcg_compile_cpu(g, o->names, o->n, &opt, path) != KILN_OK) fail_msg("compile: %s", g->error);
}

/* NaNs must sit at the same places; they are then zeroed in both so the rest compares. */
static void same_nans_to_zero(kir_tensor *got, kir_tensor *want) {
  if (want->type.dtype != KILN_F32 || got->type.dtype != KILN_F32) return;
  int64_t ne = kir_type_numel(&want->type);
  for (int64_t i = 0; i < ne; i++) {
    float *a = (float *)got->data + i, *b = (float *)want->data + i;
    assert_int_equal(isnan(*a) != 0, isnan(*b) != 0);
    if (isnan(*b)) *a = *b = 0;
  }
}

void kh_compare(const kh_outs *o, kh_run *r, unsigned flags) {
  for (int32_t j = 0; j < o->n; j++) {
    if (flags & KH_NAN_OK) same_nans_to_zero(r->got[j], r->want[j]);
    double e = kt_rel_error(r->got[j], r->want[j]), tol = kt_tolerance(r->want[j]->type.dtype);
    if (e > tol) print_error("output '%s' differs\n", o->names[j]);
    kt_assert_close(r->got[j], r->want[j], tol);
  }
}

void kh_check_with(kir_graph *g, const kh_outs *o, unsigned flags, const char *file,
                   kh_transform fn, void *arg) {
  kh_run *r = kh_run_new();
  char err[512];
  const char *path = kt_path(file);
  kh_reference(g, o, flags, r);
  kir_graph *compiled = fn ? fn(g, o, arg) : g;
  kh_compile_or_fail(compiled, o, path);
  /* placeholders and roots keep their names and types: bind through the original */
  kiln_rt_status s = kh_run_artifact(g, path, o, r, err, sizeof err);
  if (s != KILN_RT_OK) fail_msg("run: %s", err);
  kh_compare(o, r, flags);
  unlink(path);
  if (compiled != g) kir_graph_destroy(compiled);
  kh_run_free(r);
}

int kh_count_op(const kir_graph *g, kir_op op) {
  int c = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) c += g->nodes[i]->op == op;
  return c;
}
