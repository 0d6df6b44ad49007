/* kt_graph.h — graph-building and checking helpers shared by Kiln's cmocka tests of the
 * ir and passes (node-pointer style): every builder infers the node's type and fails the
 * test on any error. Tests only; depends on ir/ (and kps.h for the pass results). */
#ifndef KT_GRAPH_H
#define KT_GRAPH_H

#include <stdio.h>

#include "kt.h"
#include "../passes/kps.h"

/* Fails the test naming the expression, its status and g's error unless expr is KILN_OK. */
#define OK(g, expr)                                                                        \
  do {                                                                                     \
    kiln_status s_ = (expr);                                                               \
    if (s_ != KILN_OK) fail_msg("%s -> %s: %s", #expr, kiln_status_name(s_), (g)->error); \
  } while (0)

/* DIMS(3, 4) expands to the rank and dims arguments: 2, (const int64_t[]){3, 4}. */
#define DIMS(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                  (const int64_t[]){__VA_ARGS__}

kir_node *kt_infer(kir_graph *g, kir_node *n);
kir_type kt_type(kiln_dtype dt, int32_t rank, const int64_t *dims);
kir_node *kt_ph(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims);
kir_node *kt_const_tensor(kir_graph *g, const char *name, const kir_tensor *v);
/* A constant of the given type filled by kt_fill(seed) in [lo, hi). */
kir_node *kt_cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims,
                 uint64_t seed, double lo, double hi);
kir_node *kt_op1(kir_graph *g, kir_op op, const char *name, const kir_node *a);
kir_node *kt_op2(kir_graph *g, kir_op op, const char *name, const kir_node *a, const kir_node *b);
/* lo/hi NaN: that bound's attr is absent. */
kir_node *kt_clamp(kir_graph *g, const char *name, const kir_node *a, double lo, double hi);
/* reduce op over axes (NULL: all), keep_dims when keep. */
kir_node *kt_reduce(kir_graph *g, kir_op op, const char *name, const kir_node *a,
                    const int64_t *axes, int32_t n_axes, int keep);
kir_node *kt_softmax(kir_graph *g, const char *name, const kir_node *a, int64_t axis);
kir_node *kt_matmul(kir_graph *g, const char *name, const kir_node *a, const kir_node *b, int ta,
                    int tb);
/* op on a with the ints attr set to v (v NULL: attr absent). */
kir_node *kt_with_ints(kir_graph *g, kir_op op, const char *name, const kir_node *a,
                       const char *attr, const int64_t *v, int32_t n);
/* A random_normal / random_uniform source with dtype, shape and seed. */
kir_node *kt_random(kir_graph *g, kir_op op, const char *name, kiln_dtype dt, int32_t rank,
                    const int64_t *dims, int64_t seed);
/* The node named name; fails the test when there is none. */
kir_node *kt_find(const kir_graph *g, const char *name);

/* Runs `fetch` on g with every placeholder fed from kt_fill, seeded by seed and the
 * placeholder's name (so graphs numbered differently get the same feeds), in [lo, hi);
 * names starting "pos" get [pos_lo, hi) instead. At most 16 placeholders. */
kir_tensor *kt_run_fetch(kir_graph *g, const char *fetch, uint64_t seed, double lo, double hi,
                         double pos_lo);

/* The value of the named statistic of a pass result; fails the test when absent. */
int64_t kt_stat_of(const kps_result *r, const char *name);

/* A stream to a growing buffer; kt_text_close returns its NUL-terminated contents
 * (caller frees). */
typedef struct kt_text {
  char *buf;
  size_t len;
  FILE *f;
} kt_text;

void kt_text_open(kt_text *t);
char *kt_text_close(kt_text *t);

/* n's ints attribute `attr` equals want[0..count). */
void kt_assert_ints(const kir_node *n, const char *attr, const int64_t *want, int32_t count);
/* n's fused_from lists exactly want[0..count), in order. */
void kt_assert_fused_from(const kir_node *n, const char *const *want, int32_t count);

/* SQLite-style out-of-memory loop over one pass: the Nth allocation fails, N = 0, 1, ...
 * (at most max_tries) until the pass succeeds on a fresh clone of orig. Each failure must
 * be KILN_ERR_NOMEM, leak nothing, and leave a graph that verifies; check(orig, g, user)
 * then asserts it still computes what orig does. Fails the test if no allocation failed. */
typedef void (*kt_same_fn)(const kir_graph *orig, kir_graph *g, void *user);
void kt_pass_oom_loop(const kir_graph *orig, kps_pass_fn fn, const char *const *roots,
                      int32_t n_roots, long max_tries, kt_same_fn check, void *user);

#endif
