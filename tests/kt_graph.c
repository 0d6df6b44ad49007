/* kt_graph.c — shared graph-building and checking helpers for the tests; see
 * kt_graph.h. Uses only the public ir/ and passes/ headers. */
#include "kt_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kir_node *kt_infer(kir_graph *g, kir_node *n) {
  assert_non_null(n);
  OK(g, kir_infer_node(g, n));
  return n;
}

kir_type kt_type(kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; i++) t.dims[i] = dims[i];
  return t;
}

kir_node *kt_ph(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_node *n = kir_node_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_int(g, n, "dtype", dt));
  OK(g, kir_attr_set_ints(g, n, "shape", dims, rank));
  return kt_infer(g, n);
}

kir_node *kt_const_tensor(kir_graph *g, const char *name, const kir_tensor *v) {
  kir_node *n = kir_node_add(g, KIR_OP_CONSTANT, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_tensor(g, n, "value", v));
  return kt_infer(g, n);
}

kir_node *kt_cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims,
                 uint64_t seed, double lo, double hi) {
  kir_type t = kt_type(dt, rank, dims);
  kir_tensor *v = kir_tensor_new(&t);
  assert_non_null(v);
  kt_fill(v, seed, lo, hi);
  kir_node *n = kir_node_add(g, KIR_OP_CONSTANT, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_tensor(g, n, "value", v));
  kir_tensor_free(v);
  return kt_infer(g, n);
}

kir_node *kt_op1(kir_graph *g, kir_op op, const char *name, const kir_node *a) {
  int32_t in[1] = {a->id};
  return kt_infer(g, kir_node_add(g, op, name, in, 1));
}

kir_node *kt_op2(kir_graph *g, kir_op op, const char *name, const kir_node *a, const kir_node *b) {
  int32_t in[2] = {a->id, b->id};
  return kt_infer(g, kir_node_add(g, op, name, in, 2));
}

kir_node *kt_clamp(kir_graph *g, const char *name, const kir_node *a, double lo, double hi) {
  int32_t in[1] = {a->id};
  kir_node *n = kir_node_add(g, KIR_OP_CLAMP, name, in, 1);
  assert_non_null(n);
  if (!isnan(lo)) OK(g, kir_attr_set_float(g, n, "min", lo));
  if (!isnan(hi)) OK(g, kir_attr_set_float(g, n, "max", hi));
  return kt_infer(g, n);
}

kir_node *kt_reduce(kir_graph *g, kir_op op, const char *name, const kir_node *a,
                    const int64_t *axes, int32_t n_axes, int keep) {
  int32_t in[1] = {a->id};
  kir_node *n = kir_node_add(g, op, name, in, 1);
  assert_non_null(n);
  if (axes) OK(g, kir_attr_set_ints(g, n, "axes", axes, n_axes));
  if (keep) OK(g, kir_attr_set_int(g, n, "keep_dims", 1));
  return kt_infer(g, n);
}

kir_node *kt_softmax(kir_graph *g, const char *name, const kir_node *a, int64_t axis) {
  int32_t in[1] = {a->id};
  kir_node *n = kir_node_add(g, KIR_OP_SOFTMAX, name, in, 1);
  assert_non_null(n);
  OK(g, kir_attr_set_int(g, n, "axis", axis));
  return kt_infer(g, n);
}

kir_node *kt_matmul(kir_graph *g, const char *name, const kir_node *a, const kir_node *b, int ta,
                    int tb) {
  int32_t in[2] = {a->id, b->id};
  kir_node *n = kir_node_add(g, KIR_OP_MATMUL, name, in, 2);
  assert_non_null(n);
  if (ta) OK(g, kir_attr_set_int(g, n, "transpose_a", 1));
  if (tb) OK(g, kir_attr_set_int(g, n, "transpose_b", 1));
  return kt_infer(g, n);
}

kir_node *kt_with_ints(kir_graph *g, kir_op op, const char *name, const kir_node *a,
                       const char *attr, const int64_t *v, int32_t n) {
  int32_t in[1] = {a->id};
  kir_node *x = kir_node_add(g, op, name, in, 1);
  assert_non_null(x);
  if (v) OK(g, kir_attr_set_ints(g, x, attr, v, n));
  return kt_infer(g, x);
}

kir_node *kt_random(kir_graph *g, kir_op op, const char *name, kiln_dtype dt, int32_t rank,
                    const int64_t *dims, int64_t seed) {
  kir_node *n = kir_node_add(g, op, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_int(g, n, "dtype", dt));
  OK(g, kir_attr_set_ints(g, n, "shape", dims, rank));
  OK(g, kir_attr_set_int(g, n, "seed", seed));
  return kt_infer(g, n);
}

kir_node *kt_find(const kir_graph *g, const char *name) {
  kir_node *n = kir_graph_find(g, name);
  if (!n) fail_msg("no node '%s'", name);
  return n;
}

kir_tensor *kt_run_fetch(kir_graph *g, const char *fetch, uint64_t seed, double lo, double hi,
                         double pos_lo) {
  kir_feed feeds[16];
  kir_tensor *vals[16];
  int32_t nf = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op != KIR_OP_PLACEHOLDER) continue;
    assert_true(nf < 16);
    vals[nf] = kir_tensor_new(&g->nodes[i]->type);
    assert_non_null(vals[nf]);
    /* Seed by name so both graphs (whatever their numbering) get the same feeds. */
    uint64_t s = seed;
    for (const char *c = g->nodes[i]->name; *c; c++) s = s * 131 + (unsigned char)*c;
    kt_fill(vals[nf], s, strncmp(g->nodes[i]->name, "pos", 3) ? lo : pos_lo, hi);
    feeds[nf] = (kir_feed){i, vals[nf]};
    nf++;
  }
  int32_t id = kt_find(g, fetch)->id;
  kir_tensor *out = NULL;
  kiln_status st = kir_interp_run(g, NULL, feeds, nf, &id, 1, NULL, 0, &out);
  for (int32_t i = 0; i < nf; i++) kir_tensor_free(vals[i]);
  if (st != KILN_OK) fail_msg("interp: %s", g->error);
  return out;
}

int64_t kt_stat_of(const kps_result *r, const char *name) {
  for (int32_t i = 0; i < r->n_stats; i++)
    if (strcmp(r->stats[i].name, name) == 0) return r->stats[i].value;
  fail_msg("no stat '%s'", name);
  return -1;
}

void kt_text_open(kt_text *t) {
  t->buf = NULL;
  t->len = 0;
  t->f = open_memstream(&t->buf, &t->len);
  assert_non_null(t->f);
}

char *kt_text_close(kt_text *t) {
  fclose(t->f);
  return t->buf;
}

void kt_assert_ints(const kir_node *n, const char *attr, const int64_t *want, int32_t count) {
  int32_t got_n = -1;
  const int64_t *got = kir_attr_ints(n, attr, &got_n);
  assert_non_null(got);
  assert_int_equal(got_n, count);
  for (int32_t i = 0; i < count; i++) assert_int_equal(got[i], want[i]);
}

void kt_assert_fused_from(const kir_node *n, const char *const *want, int32_t count) {
  int32_t got_n = -1;
  const char *const *got = kir_attr_strings(n, "fused_from", &got_n);
  assert_non_null(got);
  assert_int_equal(got_n, count);
  for (int32_t i = 0; i < count; i++) assert_string_equal(got[i], want[i]);
}

void kt_pass_oom_loop(const kir_graph *orig, kps_pass_fn fn, const char *const *roots,
                      int32_t n_roots, long max_tries, kt_same_fn check, void *user) {
  kps_context ctx = {.roots = roots, .n_roots = n_roots};
  kiln_status st = KILN_ERR_NOMEM;
  int failures = 0;
  for (long n = 0; st != KILN_OK; n++) {
    assert_true(n < max_tries);
    long live = kir_alloc_live();
    kir_graph *g = kir_graph_clone(orig);
    assert_non_null(g);
    kps_result res;
    memset(&res, 0, sizeof res);
    kir_alloc_fail_after(n);
    st = fn(g, &ctx, &res);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) {
      failures++;
      if (st != KILN_ERR_NOMEM) fail_msg("n=%ld: %s: %s", n, kiln_status_name(st), g->error);
    }
    OK(g, kir_verify(g));
    check(orig, g, user);
    kir_graph_destroy(g);
    if (kir_alloc_live() != live) fail_msg("n=%ld leaked %ld blocks", n, kir_alloc_live() - live);
  }
  assert_true(failures > 0);
}
