/* test_plan.c — memory planning (kps_plan_memory, the plan-memory pass): no two
 * simultaneously live buffers of one device's arena overlap (brute force), in-place
 * reuse on elementwise chains, outputs live to the end, one arena per device, and a
 * poisoning simulator: random graphs run through the plan (arenas as byte arrays, dead
 * ranges filled with 0xFF = NaN) must give the interpreter's results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kt.h"
#include "kt_gen.h"
#include "passes/kps.h"

#define OK(g, expr)                                                                        \
  do {                                                                                     \
    kiln_status s_ = (expr);                                                               \
    if (s_ != KILN_OK) fail_msg("%s -> %s: %s", #expr, kiln_status_name(s_), (g)->error); \
  } while (0)

static const char *const CPU_GPU[] = {"cpu:0", "cuda:0"};

static kir_node *add(kir_graph *g, kir_op op, const char *name, int32_t n_in, const int32_t *in) {
  kir_node *n = kir_node_add(g, op, name, in, n_in);
  assert_non_null(n);
  OK(g, kir_infer_node(g, n));
  return n;
}

static kir_node *ph(kir_graph *g, const char *name, int64_t len) {
  kir_node *n = kir_node_add(g, KIR_OP_PLACEHOLDER, name, NULL, 0);
  assert_non_null(n);
  OK(g, kir_attr_set_int(g, n, "dtype", KILN_F32));
  OK(g, kir_attr_set_ints(g, n, "shape", &len, 1));
  OK(g, kir_infer_node(g, n));
  return n;
}

static kir_node *op1(kir_graph *g, kir_op op, const char *name, const kir_node *a) {
  return add(g, op, name, 1, &a->id);
}

static kir_node *op2(kir_graph *g, kir_op op, const char *name, const kir_node *a, const kir_node *b) {
  int32_t in[2] = {a->id, b->id};
  return add(g, op, name, 2, in);
}

static int32_t find_id(const kir_graph *g, const char *name) {
  kir_node *n = kir_graph_find(g, name);
  if (!n) fail_msg("no node '%s'", name);
  return n->id;
}

/* last[i]: last consumer of i; n for outputs; -1 if never read. Caller frees. */
static int32_t *last_uses(const kir_graph *g, const int32_t *outs, int32_t n_outs) {
  int32_t n = g->n_nodes;
  int32_t *last = calloc((size_t)(n ? n : 1), sizeof *last);
  assert_non_null(last);
  for (int32_t i = 0; i < n; i++) last[i] = -1;
  for (int32_t i = 0; i < n; i++)
    for (int32_t k = 0; k < g->nodes[i]->n_inputs; k++) last[g->nodes[i]->inputs[k]] = i;
  for (int32_t o = 0; o < n_outs; o++) last[outs[o]] = n;
  return last;
}

/* Brute force over pairs: within one arena, buffers live at the same time share no
 * byte, except an in-place output exactly over its first input, which dies there. */
static void assert_plan_sound(const kir_graph *g, const kps_memplan *p, const int32_t *outs, int32_t n_outs) {
  int32_t n = g->n_nodes;
  int32_t *last = last_uses(g, outs, n_outs);
  for (int32_t i = 0; i < n; i++) {
    if (p->loc[i] != KPS_LOC_ARENA) {
      assert_int_equal(p->arena_of[i], -1);
      continue;
    }
    int32_t a = p->arena_of[i];
    assert_true(a >= 0 && a < p->n_arenas);
    const char *dev = g->nodes[i]->assigned_device[0] ? g->nodes[i]->assigned_device : "cpu:0";
    assert_string_equal(p->arenas[a].device, dev);
    assert_int_equal(p->offset[i] % 64, 0);
    assert_true(p->offset[i] + p->size[i] <= p->arenas[a].peak_bytes);
    assert_int_equal(p->size[i], kir_type_nbytes(&g->nodes[i]->type));
    if (p->inplace_of[i] >= 0) {
      int32_t in = p->inplace_of[i];
      assert_int_equal(g->nodes[i]->inputs[0], in);
      assert_int_equal(last[in], i);
      assert_int_equal(p->offset[in], p->offset[i]);
      assert_true(kir_type_equal(&g->nodes[in]->type, &g->nodes[i]->type));
    }
    for (int32_t j = i + 1; j < n; j++) {
      if (p->loc[j] != KPS_LOC_ARENA || p->arena_of[j] != a || p->size[i] == 0 || p->size[j] == 0) continue;
      if (j > last[i]) continue;                         /* i dead before j is made */
      if (j == last[i] && p->inplace_of[j] == i) continue; /* j writes over i in place */
      bool overlap = p->offset[i] < p->offset[j] + p->size[j] && p->offset[j] < p->offset[i] + p->size[i];
      if (overlap) fail_msg("nodes %d and %d overlap while both live", (int)i, (int)j);
    }
  }
  int64_t cpu = 0;
  for (int32_t a = 0; a < p->n_arenas; a++)
    if (strcmp(p->arenas[a].device, "cpu:0") == 0) cpu = p->arenas[a].peak_bytes;
  assert_int_equal(p->arena_bytes, cpu);
  free(last);
}

/* ---------------------------------------------------------------- in place ------ */

static void test_inplace_chain(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = ph(g, "x", 1000);
  kir_node *cur = op1(g, KIR_OP_NEG, "s0", x);
  char name[16];
  for (int i = 1; i < 8; i++) {
    snprintf(name, sizeof name, "s%d", i);
    cur = i % 2 ? op1(g, KIR_OP_RELU, name, cur) : op2(g, KIR_OP_MUL, name, cur, x);
  }
  int32_t out = cur->id;
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  assert_plan_sound(g, &p, &out, 1);
  assert_int_equal(p.n_inplace, 7);
  assert_int_equal(p.arena_bytes, 4000); /* one buffer for the whole chain */
  assert_int_equal(p.n_arenas, 1);
  assert_int_equal(p.arenas[0].n_buffers, 8);
  assert_int_equal(p.loc[x->id], KPS_LOC_INPUT); /* never written over */
  assert_int_equal(p.inplace_of[find_id(g, "s0")], -1);
  kps_memplan_free(&p);
  /* When every value stays needed (all outputs), nothing is reused. */
  int32_t outs[8];
  for (int i = 0; i < 8; i++) outs[i] = g->nodes[i + 1]->id;
  OK(g, kps_plan_memory(g, outs, 8, &p));
  assert_plan_sound(g, &p, outs, 8);
  assert_int_equal(p.n_inplace, 0);
  assert_true(p.arena_bytes >= 8 * 4000);
  kps_memplan_free(&p);
  kir_graph_destroy(g);
}

/* No in-place where the kernel could not do it: a broadcast first input, a matmul, a
 * first input read again later, a placeholder. */
static void test_inplace_refused(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = ph(g, "x", 8);
  kir_node *s = op1(g, KIR_OP_REDUCE_SUM, "s", x);        /* f32[] */
  kir_node *b = op2(g, KIR_OP_ADD, "b", s, x);            /* broadcast: s is smaller */
  kir_node *e = op1(g, KIR_OP_EXP, "e", b);               /* in place over b */
  kir_node *f = op1(g, KIR_OP_TANH, "f", e);              /* e read again below: no */
  kir_node *h = op2(g, KIR_OP_SUB, "h", f, e);            /* in place over f */
  kir_node *r = kir_node_add(g, KIR_OP_RESHAPE, "r", &h->id, 1);
  int64_t shp[2] = {2, 4};
  assert_non_null(r);
  OK(g, kir_attr_set_ints(g, r, "shape", shp, 2));
  OK(g, kir_infer_node(g, r));
  int32_t out = g->n_nodes - 1;
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  assert_plan_sound(g, &p, &out, 1);
  assert_int_equal(p.inplace_of[b->id], -1);
  assert_int_equal(p.inplace_of[e->id], b->id);
  assert_int_equal(p.inplace_of[f->id], -1);
  assert_int_equal(p.inplace_of[h->id], f->id);
  assert_int_equal(p.inplace_of[out], -1); /* reshape: not KIR_F_INPLACE_OK */
  assert_int_equal(p.n_inplace, 2);
  kps_memplan_free(&p);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- devices ------- */

static void test_arena_per_device(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = ph(g, "x", 100);
  kir_node *a = op1(g, KIR_OP_NEG, "a", x);
  kir_node *c = op1(g, KIR_OP_EXP, "c", a);
  c->device = kir_graph_strdup(g, "cpu:0");
  kir_node *d = op2(g, KIR_OP_ADD, "d", a, c);
  (void)d;
  const char *roots[] = {"d"};
  kps_result r;
  memset(&r, 0, sizeof r);
  OK(g, kps_place(g, &(kps_context){.devices = CPU_GPU, .n_devices = 2, .roots = roots, .n_roots = 1}, &r));
  int32_t out = find_id(g, "d");
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  assert_plan_sound(g, &p, &out, 1);
  assert_int_equal(p.n_arenas, 2);
  int32_t gpu = strcmp(p.arenas[0].device, "cuda:0") == 0 ? 0 : 1;
  assert_string_equal(p.arenas[gpu].device, "cuda:0");
  assert_string_equal(p.arenas[1 - gpu].device, "cpu:0");
  assert_int_equal(p.arena_of[find_id(g, "a")], gpu);
  assert_int_equal(p.arena_of[find_id(g, "c")], 1 - gpu);
  assert_int_equal(p.arena_bytes, p.arenas[1 - gpu].peak_bytes);
  assert_true(p.arenas[gpu].peak_bytes >= 2 * 400);
  kps_memplan_free(&p);
  /* The pass reports each arena's peak. */
  memset(&r, 0, sizeof r);
  OK(g, kps_plan_memory_pass(g, &(kps_context){.roots = roots, .n_roots = 1}, &r));
  assert_false(r.changed);
  bool cpu = false, cuda = false;
  for (int32_t i = 0; i < r.n_stats; i++) {
    cpu = cpu || (strcmp(r.stats[i].name, "peak bytes (cpu:0)") == 0 && r.stats[i].value > 0);
    cuda = cuda || (strcmp(r.stats[i].name, "peak bytes (cuda:0)") == 0 && r.stats[i].value > 0);
  }
  assert_true(cpu && cuda);
  /* ... also through the pass manager. */
  char *log = NULL;
  size_t log_n = 0;
  FILE *f = open_memstream(&log, &log_n);
  assert_non_null(f);
  kps_options opt = {.pipeline = "infer-shapes,place,plan-memory", .verify_each = true, .log = f};
  OK(g, kps_run(g, &opt, &(kps_context){.devices = CPU_GPU, .n_devices = 2, .roots = roots, .n_roots = 1}));
  fclose(f);
  assert_non_null(strstr(log, "peak bytes (cuda:0)"));
  assert_non_null(strstr(log, "in-place reuses"));
  free(log);
  memset(&r, 0, sizeof r);
  const char *bad[] = {"nope"};
  assert_int_equal(kps_plan_memory_pass(g, &(kps_context){.roots = bad, .n_roots = 1}, &r), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "'nope'"));
  kir_graph_destroy(g);
}

static void test_variables(void **state) {
  (void)state;
  kir_graph *g = kir_graph_create();
  kir_node *x = ph(g, "x", 3);
  kir_node *v = op1(g, KIR_OP_VARIABLE, "weights_var", x);
  kir_node *a = op2(g, KIR_OP_ASSIGN, "a", v, x);
  kir_node *y = op1(g, KIR_OP_NEG, "y", a);
  int32_t out = y->id;
  kps_memplan p;
  memset(&p, 0xab, sizeof p);
  kiln_status st = kps_plan_memory(g, &out, 1, &p);
  if (st != KILN_ERR_UNSUPPORTED) fail_msg("%s: %s", kiln_status_name(st), g->error);
  assert_non_null(strstr(g->error, "'weights_var'"));
  assert_non_null(strstr(g->error, "variables cannot be planned; freeze the graph first"));
  assert_null(p.loc);
  OK(g, kps_plan_memory_ex(g, &out, 1, true, &p));
  assert_int_equal(p.loc[v->id], KPS_LOC_NONE);
  assert_int_equal(p.loc[a->id], KPS_LOC_ARENA);
  assert_plan_sound(g, &p, &out, 1);
  kps_memplan_free(&p);
  out = 99;
  assert_int_equal(kps_plan_memory_ex(g, &out, 1, true, &p), KILN_ERR_ARGUMENT);
  assert_non_null(strstr(g->error, "out of range"));
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- poisoning ----- */

typedef struct sim {
  uint8_t *arena[KPS_MAX_DEVICES];
  uint8_t *weights;
} sim;

/* A view of node i's value where the plan put it (feeds for placeholders). */
static kir_tensor view(const kir_graph *g, const kps_memplan *p, const sim *m, const kir_tensor *const *feed, int32_t i) {
  kir_tensor t = {g->nodes[i]->type, NULL};
  switch (p->loc[i]) {
  case KPS_LOC_INPUT: t.data = feed[i]->data; break;
  case KPS_LOC_WEIGHTS: t.data = m->weights + p->offset[i]; break;
  case KPS_LOC_ARENA: t.data = m->arena[p->arena_of[i]] + p->offset[i]; break;
  case KPS_LOC_NONE: fail_msg("node %d is read but has no location", (int)i);
  }
  return t;
}

/* After node j: bytes of values read for the last time at j are poisoned, except
 * where a value still live sits (e.g. an in-place output). */
static void poison_after(const kps_memplan *p, const sim *m, const int32_t *last, int32_t j) {
  for (int32_t v = 0; v < j; v++) {
    if (last[v] != j || p->loc[v] != KPS_LOC_ARENA) continue;
    for (int64_t b = p->offset[v]; b < p->offset[v] + p->size[v]; b++) {
      bool live = false;
      for (int32_t w = 0; w <= j && !live; w++)
        live = w != v && last[w] > j && p->loc[w] == KPS_LOC_ARENA && p->arena_of[w] == p->arena_of[v] &&
               b >= p->offset[w] && b < p->offset[w] + p->size[w];
      if (!live) m->arena[p->arena_of[v]][b] = 0xFF;
    }
  }
}

static void simulate(kir_graph *g, const kps_memplan *p, const kt_gen *k, const int32_t *outs, kir_tensor **want) {
  int32_t n = g->n_nodes;
  sim m;
  memset(&m, 0, sizeof m);
  for (int32_t a = 0; a < p->n_arenas; a++) {
    m.arena[a] = malloc((size_t)p->arenas[a].peak_bytes + 1);
    memset(m.arena[a], 0xFF, (size_t)p->arenas[a].peak_bytes + 1);
  }
  m.weights = calloc((size_t)p->weights_bytes + 1, 1);
  const kir_tensor **feed = calloc((size_t)n, sizeof *feed);
  for (int32_t f = 0; f < k->n_feeds; f++) feed[find_id(g, k->feed_names[f])] = k->feed_values[f];
  int32_t *last = last_uses(g, outs, k->n_fetches);
  for (int32_t j = 0; j < n; j++) {
    const kir_node *nd = g->nodes[j];
    if (p->loc[j] == KPS_LOC_WEIGHTS) {
      const kir_tensor *v = kir_attr_tensor(nd, "value");
      memcpy(m.weights + p->offset[j], v->data, (size_t)p->size[j]);
    } else if (p->loc[j] == KPS_LOC_ARENA) {
      kir_tensor in[64];
      const kir_tensor *inp[64];
      assert_true(nd->n_inputs <= 64);
      for (int32_t q = 0; q < nd->n_inputs; q++) {
        in[q] = view(g, p, &m, feed, nd->inputs[q]);
        inp[q] = &in[q];
      }
      kir_tensor *out = NULL;
      OK(g, kir_eval_node(g, nd, inp, &out));
      memcpy(m.arena[p->arena_of[j]] + p->offset[j], out->data, (size_t)p->size[j]);
      kir_tensor_free(out);
    }
    poison_after(p, &m, last, j);
  }
  for (int32_t o = 0; o < k->n_fetches; o++) {
    kir_tensor got = view(g, p, &m, feed, outs[o]);
    kt_assert_close(&got, want[o], kt_tolerance(got.type.dtype));
  }
  free(last);
  free(feed);
  free(m.weights);
  for (int32_t a = 0; a < p->n_arenas; a++) free(m.arena[a]);
}

static void test_poisoned_random_graphs(void **state) {
  (void)state;
  int64_t inplace = 0, arenas2 = 0;
  for (uint64_t seed = 1; seed <= 300; seed++) {
    kt_gen k;
    char err[256];
    kt_gen_opts o = {.n_nodes = 40, .pins = true};
    if (kt_gen_build(seed, &o, &k, err, sizeof err) != KILN_OK) fail_msg("seed %llu: %s", (unsigned long long)seed, err);
    kir_graph *g = k.g;
    kps_result r;
    memset(&r, 0, sizeof r);
    OK(g, kps_place(g, &(kps_context){.devices = CPU_GPU, .n_devices = seed % 3 ? 2 : 1}, &r));
    int32_t outs[64];
    kir_feed feeds[64];
    assert_true(k.n_fetches <= 64 && k.n_feeds <= 64);
    for (int32_t f = 0; f < k.n_fetches; f++) outs[f] = find_id(g, k.roots[f]);
    for (int32_t f = 0; f < k.n_feeds; f++) feeds[f] = (kir_feed){find_id(g, k.feed_names[f]), k.feed_values[f]};
    kir_tensor *want[64];
    OK(g, kir_interp_run(g, NULL, feeds, k.n_feeds, outs, k.n_fetches, NULL, 0, want));
    kps_memplan p;
    OK(g, kps_plan_memory(g, outs, k.n_fetches, &p));
    assert_plan_sound(g, &p, outs, k.n_fetches);
    for (int32_t f = 0; f < k.n_fetches; f++) assert_int_not_equal(p.loc[outs[f]], KPS_LOC_NONE);
    simulate(g, &p, &k, outs, want);
    inplace += p.n_inplace;
    arenas2 += p.n_arenas > 1;
    for (int32_t f = 0; f < k.n_fetches; f++) kir_tensor_free(want[f]);
    kps_memplan_free(&p);
    kt_gen_free(&k);
  }
  /* the cases the test is for did occur */
  assert_true(inplace > 50);
  assert_true(arenas2 > 50);
}

/* A plan bug shows in the simulator: an overlapping plan gives a wrong result. */
static void test_simulator_catches_overlap(void **state) {
  (void)state;
  kt_gen k;
  memset(&k, 0, sizeof k);
  kir_graph *g = kir_graph_create();
  k.g = g;
  kir_node *x = ph(g, "x", 16);
  kir_node *a = op1(g, KIR_OP_EXP, "a", x);
  kir_node *b = op1(g, KIR_OP_NEG, "b", x);
  kir_node *c = op2(g, KIR_OP_ADD, "c", a, b);
  int32_t out = c->id;
  kir_type t = x->type;
  kir_tensor *xv = kir_tensor_new(&t);
  kt_fill(xv, 3, 0.5, 1);
  char *names[1] = {"x"};
  k.feed_names = names;
  k.feed_values = &xv;
  k.n_feeds = 1;
  k.n_fetches = 1;
  kir_feed feed = {x->id, xv};
  kir_tensor *want = NULL;
  OK(g, kir_interp_run(g, NULL, &feed, 1, &out, 1, NULL, 0, &want));
  kps_memplan p;
  OK(g, kps_plan_memory(g, &out, 1, &p));
  simulate(g, &p, &k, &out, &want); /* the real plan passes */
  p.offset[b->id] = p.offset[a->id]; /* break it: b over a while a is live */
  kir_tensor got = {c->type, NULL};
  (void)got;
  int32_t *last = last_uses(g, &out, 1);
  sim m;
  memset(&m, 0, sizeof m);
  m.arena[0] = calloc((size_t)p.arenas[0].peak_bytes + 64, 1);
  const kir_tensor *feeds[4] = {xv, NULL, NULL, NULL};
  for (int32_t j = 1; j < g->n_nodes; j++) {
    kir_tensor in[2];
    const kir_tensor *inp[2];
    for (int32_t q = 0; q < g->nodes[j]->n_inputs; q++) {
      in[q] = view(g, &p, &m, feeds, g->nodes[j]->inputs[q]);
      inp[q] = &in[q];
    }
    kir_tensor *o = NULL;
    OK(g, kir_eval_node(g, g->nodes[j], inp, &o));
    memcpy(m.arena[0] + p.offset[j], o->data, (size_t)p.size[j]);
    kir_tensor_free(o);
    poison_after(&p, &m, last, j);
  }
  kir_tensor res = view(g, &p, &m, feeds, out);
  assert_true(kt_rel_error(&res, want) > 1e-3);
  free(m.arena[0]);
  free(last);
  kir_tensor_free(want);
  kir_tensor_free(xv);
  kps_memplan_free(&p);
  kir_graph_destroy(g);
}

/* The Nth allocation fails: out-of-memory, nothing leaks, the plan is empty. */
static void test_out_of_memory(void **state) {
  (void)state;
  kt_gen k;
  char err[256];
  kt_gen_opts o = {.n_nodes = 30, .pins = true};
  if (kt_gen_build(7, &o, &k, err, sizeof err) != KILN_OK) fail_msg("%s", err);
  kps_result r;
  memset(&r, 0, sizeof r);
  OK(k.g, kps_place(k.g, &(kps_context){.devices = CPU_GPU, .n_devices = 2}, &r));
  const char *const *roots = (const char *const *)k.roots;
  kiln_status st = KILN_ERR_NOMEM;
  for (long n = 0; st != KILN_OK; n++) {
    assert_true(n < 1000);
    long live = kir_alloc_live();
    memset(&r, 0, sizeof r);
    kir_alloc_fail_after(n);
    st = kps_plan_memory_pass(k.g, &(kps_context){.roots = roots, .n_roots = k.n_roots}, &r);
    kir_alloc_fail_after(-1);
    if (st != KILN_OK) assert_int_equal(st, KILN_ERR_NOMEM);
    assert_int_equal(kir_alloc_live(), live);
  }
  kt_gen_free(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inplace_chain),
      cmocka_unit_test(test_inplace_refused),
      cmocka_unit_test(test_arena_per_device),
      cmocka_unit_test(test_variables),
      cmocka_unit_test(test_poisoned_random_graphs),
      cmocka_unit_test(test_simulator_catches_overlap),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
