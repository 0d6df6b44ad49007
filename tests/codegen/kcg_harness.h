/* kcg_harness.h — the codegen tests' shared harness: graph building by node id, the
 * reference run, compiling with kcg_compile_cpu, running the artifact through libkiln_rt
 * into poisoned output buffers, and comparing at kt_tolerance. Tests only; links the
 * compiler (kiln_codegen) and the runtime (kiln_rt). */
#ifndef KCG_HARNESS_H
#define KCG_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/kt.h"
#include "runtime/kiln_runtime.h"

#define KH_MAX_OUTS 256 /* outputs one test graph may fetch (and run_state holds) */
#define KH_MAX_INS 64   /* placeholders one test graph may have */
/* Generated C must be warning-free; every compile in these tests enforces it. */
#define KH_STRICT_FLAGS "-O2 -Wall -Wextra -Werror"

#define DIMS(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                  (const int64_t[]){__VA_ARGS__}

/* ---- graph building: each helper infers the node's type and fails the test on error */
int32_t kh_finish(kir_graph *g, kir_node *n);
kir_node *kh_add(kir_graph *g, kir_op op, const char *name, const int32_t *in, int32_t n);
int32_t kh_ph(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims);
kir_tensor *kh_tensor(kiln_dtype dt, int32_t rank, const int64_t *dims);
int32_t kh_cst_t(kir_graph *g, const char *name, const kir_tensor *t);
/* A constant filled by kt_fill(seed) in [-1, 1). */
int32_t kh_cst(kir_graph *g, const char *name, kiln_dtype dt, int32_t rank, const int64_t *dims,
               uint64_t seed);
int32_t kh_op1(kir_graph *g, kir_op op, const char *name, int32_t a);
int32_t kh_op2(kir_graph *g, kir_op op, const char *name, int32_t a, int32_t b);
int32_t kh_matmul(kir_graph *g, const char *name, int32_t a, int32_t b, int ta, int tb);
/* axes NULL: attr absent (all axes); keep: keep_dims = 1. */
int32_t kh_reduce(kir_graph *g, kir_op op, const char *name, int32_t a, const int64_t *axes,
                  int32_t n_axes, int keep);
/* attr NULL: no attribute set. */
int32_t kh_with_ints(kir_graph *g, kir_op op, const char *name, int32_t a, const char *attr,
                     const int64_t *v, int32_t n_v);
/* lo/hi NaN: that bound's attr is absent. */
int32_t kh_clamp(kir_graph *g, const char *name, int32_t a, double lo, double hi);

/* The outputs a test fetches, by name. Initialize with {{0}, 0}. */
typedef struct kh_outs {
  const char *names[KH_MAX_OUTS];
  int32_t n;
} kh_outs;

void kh_out(kh_outs *o, kir_graph *g, int32_t id);

/* ---- the harness */

/* KH_NONZERO: integer placeholders get no 0 (replaced by 1). KH_NAN_OK: f32 outputs may
 * hold NaN, at the same places as the reference. */
enum { KH_NONZERO = 1u << 0, KH_NAN_OK = 1u << 1 };

typedef struct kh_run {
  kir_tensor *in[KH_MAX_INS];
  kir_feed feeds[KH_MAX_INS];
  int32_t n_in;
  kir_tensor *want[KH_MAX_OUTS], *got[KH_MAX_OUTS];
  int32_t ids[KH_MAX_OUTS];
} kh_run;

kh_run *kh_run_new(void);
void kh_run_free(kh_run *r);
/* Makes inputs for every placeholder of g (seed 1000 + node index; names starting "pos"
 * get [0.1, 4), "big" the whole integer range, others [-2, 2) for floats and [-10, 10)
 * for integers) and runs the reference interpreter into r->want. */
void kh_reference(kir_graph *g, const kh_outs *o, unsigned flags, kh_run *r);
/* Runs the artifact at path with r's inputs (bound by name through g) into poisoned
 * outputs r->got; returns the status, the context's error text in err. */
kiln_rt_status kh_run_artifact(kir_graph *g, const char *path, const kh_outs *o, kh_run *r,
                               char *err, size_t errlen);
/* kcg_compile_cpu with KH_STRICT_FLAGS (log to stderr when $KCG_TEST_LOG is set). */
void kh_compile_or_fail(kir_graph *g, const kh_outs *o, const char *path);
/* Asserts every output within kt_tolerance of its dtype, naming the one that differs;
 * with KH_NAN_OK f32 NaNs must match and are then zeroed in both. */
void kh_compare(const kh_outs *o, kh_run *r, unsigned flags);

/* Turns the reference graph into the graph to compile (a transformed copy, or g). */
typedef kir_graph *(*kh_transform)(kir_graph *g, const kh_outs *o, void *arg);
/* The whole check: reference on g, compile fn(g) (g itself when fn is NULL) to
 * kt_path(file), run with poisoned outputs (inputs bound through g), compare
 * (kh_compare), remove the artifact. A transformed copy is destroyed afterwards. */
void kh_check_with(kir_graph *g, const kh_outs *o, unsigned flags, const char *file,
                   kh_transform fn, void *arg);

int kh_count_op(const kir_graph *g, kir_op op);

#endif
