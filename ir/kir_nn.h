/* kir_nn.h — the ONNX-set ops' shape rules and reference kernels (kir_kernels_nn.c):
 * one function computes each op's output type from its input types and attributes, so
 * inference (kir_infer.c) and the interpreter (kir_kernels.c) cannot disagree. Also the
 * element and shape helpers kir_kernels.c lends to kir_kernels_nn.c. ir/ only. */
#ifndef KIR_NN_H
#define KIR_NN_H

#include "kir_internal.h"

/* The type of input k of the node being typed (ctx: an inference context or the
 * interpreter's input tensors). */
typedef const kir_type *(*kirk_type_at)(const void *ctx, int32_t k);

/* True for the ops kir_kernels_nn.c types and evaluates: argmax, argmin, concat, slice,
 * gather, cast, where, conv, fused_conv, max_pool, avg_pool, max_pool_indices,
 * batch_norm. */
KIR_HIDDEN bool kirk_nn_op(kir_op op);
/* Output type of n from its input types; checks dtypes, shapes and attributes, errors
 * naming the node, the attribute or input, and the value (set on g). */
KIR_HIDDEN kiln_status kirk_nn_type(kir_graph *g, const kir_node *n, kirk_type_at at,
                                    const void *ctx, kir_type *out);
/* The reference kernel of n; inputs were checked present and well-formed. *out gets a
 * new tensor; on error nothing is allocated. */
KIR_HIDDEN kiln_status kirk_nn_eval(kir_graph *g, const kir_node *n,
                                    const kir_tensor *const *in, kir_tensor **out);

/* ---- helpers defined in kir_kernels.c ---- */
/* Stores v into element i (floats rounded; integers wrapped to the dtype; bool != 0). */
KIR_HIDDEN void kirk_st_i(kir_tensor *t, int64_t i, int64_t v);
/* Stores v rounded to the dtype (integers truncated and saturated). */
KIR_HIDDEN void kirk_st_f(kir_tensor *t, int64_t i, double v);
/* True when `in` broadcasts to `out` without changing it. */
KIR_HIDDEN bool kirk_bcast_into(const kir_type *in, const kir_type *out);
/* Element strides of `in` seen through shape `out` (0 on broadcast dims). */
KIR_HIDDEN void kirk_bcast_strides(const kir_type *in, const kir_type *out, int64_t *st);
/* Offset in a broadcast input of the output element with flat index `flat`. */
KIR_HIDDEN int64_t kirk_bcast_offset(int64_t flat, const kir_type *out, const int64_t *st);
KIR_HIDDEN void kirk_contiguous_strides(const kir_type *t, int64_t *st);
/* A new zero-filled tensor of type t; KILN_ERR_NOMEM naming n. */
KIR_HIDDEN kiln_status kirk_new_out(kir_graph *g, const kir_node *n, const kir_type *t,
                                    kir_tensor **o);
/* KILN_ERR_SHAPE unless n->type equals want. */
KIR_HIDDEN kiln_status kirk_check_result(kir_graph *g, const kir_node *n, const kir_type *want);
/* Epilogue step s over o in place (see kir_kernels.c). */
KIR_HIDDEN void kirk_epilogue_step(const kir_epilogue *e, int32_t s,
                                   const kir_tensor *const *in, kir_tensor *o);

#endif
