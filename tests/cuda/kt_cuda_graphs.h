/* kt_cuda_graphs.h — the small graphs the CUDA tests build: one per op with a CUDA
 * kernel (in every dtype the interpreter takes), and the fused patterns (matmul with
 * epilogues, elementwise chains, reductions with producers, softmaxes). Shared by
 * test_cuda_codegen (NVRTC, kernels on a GPU) and test_cuda_runtime (whole artifacts
 * through libkiln_rt). */
#ifndef KT_CUDA_GRAPHS_H
#define KT_CUDA_GRAPHS_H

#include <stdbool.h>

#include "ir/kir.h"

/* Runs pipeline (verify after each pass) on g for roots with the CUDA target's devices,
 * cpu:0 and cuda:0; fails the test on an error. */
void ktc_place(kir_graph *g, const char *pipeline, const char *const *roots, int32_t n);

/* kt_gen's random graph for seed as the CUDA tests use it: 40 nodes, every third seed
 * with a window of 4; fails the test when it cannot be built. */
struct kt_gen;
void ktc_random_graph(uint64_t seed, struct kt_gen *k);

#define KTC_N_DTYPES 13
extern const kiln_dtype ktc_dtypes[KTC_N_DTYPES];

/* Whether the interpreter defines op on dt (what the verifier lets through). */
bool ktc_op_takes(kir_op op, kiln_dtype dt);
/* The ops a test graph is built for: those CUDA has a kernel for that compute. */
bool ktc_op_wanted(kir_op op);
/* A small graph exercising op on dt; its fetches in fetch[] (room for 4), their count
 * returned. */
int32_t ktc_build_op_graph(kir_graph *g, kir_op op, kiln_dtype dt, const char **fetch);
void ktc_build_binary(kir_graph *g, kir_op op, kiln_dtype dt);
void ktc_build_unary(kir_graph *g, kir_op op, kiln_dtype dt); /* fetch "out" */
/* Fetches r1, r2, r3: plain, partly broadcast batch, transposed operand. */
void ktc_build_matmul(kir_graph *g, kiln_dtype dt);

/* Fused patterns; fetch "out" unless said otherwise. */
typedef void (*kt_cuda_builder)(kir_graph *g, kiln_dtype dt);
void ktc_build_mlp(kir_graph *g, kiln_dtype dt);        /* x[8,16] -> relu(xW1+b1) -> softmax(hW2+b2) */
void ktc_build_mm_tanh(kir_graph *g, kiln_dtype dt);    /* c * tanh(x W + b) */
void ktc_build_mm_partial(kir_graph *g, kiln_dtype dt); /* sigmoid(a b - c), batch dims broadcast in part */
void ktc_build_chain(kir_graph *g, kiln_dtype dt);      /* a 12-op elementwise chain */
void ktc_build_reductions(kir_graph *g, kiln_dtype dt); /* fetches rs, rm, rn */
void ktc_build_softmaxes(kir_graph *g, kiln_dtype dt);  /* fetches sm, sm1, lsm (log_softmax on the CPU) */
/* conv(x, w[, b]) with the given pads (2k entries), strides and dilations (k; NULL:
 * default) and group, typed. */
kir_node *ktc_conv(kir_graph *g, const char *name, const kir_node *x, const kir_node *w, const kir_node *b,
                   const int64_t *pads, const int64_t *strides, const int64_t *dil, int64_t group);
/* Convolutions cuDNN runs: fetches "out", "c2", "c3". */
void ktc_build_convs(kir_graph *g, kiln_dtype dt);

#endif
