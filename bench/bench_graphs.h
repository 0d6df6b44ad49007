/* bench_graphs.h — the benchmark graphs shared by bench_kcg_perf (CPU) and bench_gpu
 * (CUDA): the lecture's two-layer net, MLP 784-512-512-10, the 50-op elementwise chain.
 * Output node "y", input "x"; constants from a fixed xorshift stream (bg_frand). Exits
 * with the graph's message on a build error (a benchmark, not a library). */
#ifndef BENCH_GRAPHS_H
#define BENCH_GRAPHS_H

#include <stdint.h>

#include "ir/kir.h"

float bg_frand(void); /* uniform in [-1, 1) */
/* x[64,1000] @ w1[1000,100] -> clamp(min 0) -> @ w2[100,10] */
kir_graph *bg_lecture(void);
/* relu(relu(x W1 + b1) W2 + b2) W3 + b3, 784-512-512-10, x[batch, 784] */
kir_graph *bg_mlp(int64_t batch);
/* 50 cheap elementwise ops over x of the given shape (scalar constants broadcast):
 * 10 x {add, mul, relu, sub, maximum} */
kir_graph *bg_chain(int32_t rank, const int64_t *dims);

#endif
