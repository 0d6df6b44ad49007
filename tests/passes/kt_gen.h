/* kt_gen.h — a seeded random graph generator for differential and property tests of the
 * passes and for the pass-scaling benchmark. The same seed gives the same graph, roots
 * and feeds on every machine. Tests and benchmarks only; depends on ir/ only (not on
 * cmocka), so bench/ can use it too. */
#ifndef KT_GEN_H
#define KT_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "../../ir/kir.h"

typedef struct kt_gen_opts {
  int32_t n_nodes;       /* stop adding ops once the graph has this many nodes (0: 20) */
  bool stateful;         /* add variables, assigns and a group target */
  bool roots_all_sinks;  /* every value nobody uses is a root (benchmarks: graph stays big) */
  bool pins;             /* request devices on some nodes ("cpu:0", "/device:GPU:0") */
  int32_t max_numel;     /* elements of any value, at least 16 (0: 400) */
  /* 0: an operand is drawn from every value made so far (long, uniformly random edges:
   * the worst case for caches); N > 0: from the last N values only (short edges, like
   * real networks, whose skip connections span a few layers). */
  int32_t window;
} kt_gen_opts;

/* A generated graph with its interface. Every string and tensor here is owned by the
 * kt_gen (kir_strdup / kir_tensor_new) and freed by kt_gen_free, so it outlives g. */
typedef struct kt_gen {
  kir_graph *g;         /* verified, typed, topological */
  char **roots;         /* fetch names first, then target names */
  int32_t n_roots;
  int32_t n_fetches;    /* roots[0..n_fetches) have values; the rest are targets */
  char **feed_names;    /* one per placeholder */
  kir_tensor **feed_values;
  int32_t n_feeds;
  char **vars;          /* variable names (stateful flavour) */
  int32_t n_vars;
  char **var_inits;     /* the initializer node name of each variable */
} kt_gen;

/* Builds the graph for seed. On error *out is empty and the message is in err. */
kiln_status kt_gen_build(uint64_t seed, const kt_gen_opts *opts, kt_gen *out, char *err,
                         size_t err_n);
void kt_gen_free(kt_gen *k); /* accepts an empty or zeroed kt_gen */

#endif
