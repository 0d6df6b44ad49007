/* kiln.h — Kiln's public graph-building API, in the spirit of TensorFlow 1: graphs of
 * named ops, name and device scopes, save/load, sessions with feeds and fetches that
 * keep variable values across runs.
 *
 * Conventions
 * - Handles are opaque: kiln_graph, kiln_node (owned by its graph, valid until the
 *   graph is destroyed), kiln_session, kiln_tensor (owned by whoever created it or
 *   received it from kiln_session_run; free with kiln_tensor_destroy).
 * - Every fallible call returns a kiln_status (ir/kiln_types.h). The message is kept on
 *   the graph (kiln_graph_error) or session (kiln_session_error), names the node, field
 *   and value, and is set before the call returns. A success clears it.
 * - Building is transactional: an op is checked against the op table (arity, dtypes,
 *   attributes, shapes) before the graph changes; on failure the graph is unchanged and
 *   *out is NULL.
 * - name may be NULL: the op's name then comes from its kind ("matmul", "matmul_1"...).
 *   Either way the current name scopes are prefixed ("layer1/matmul"). An explicit name
 *   that is already taken is KILN_ERR_GRAPH.
 * - Destroy functions accept NULL. The library never exits, aborts or prints, except
 *   the placement log a session is asked to write.
 *
 * Example (the lecture's placeholder program)
 *   kiln_graph *g = kiln_graph_create();
 *   kiln_node *w, *h, *area;
 *   kiln_placeholder(g, "width", KILN_I32, NULL, 0, &w);
 *   kiln_placeholder(g, "height", KILN_I32, NULL, 0, &h);
 *   kiln_mul(g, "area", w, h, &area);
 *   kiln_session *s; kiln_session_create(g, NULL, &s);
 *   kiln_tensor *six = kiln_tensor_scalar_i32(6), *eight = kiln_tensor_scalar_i32(8);
 *   kiln_feed feeds[] = {{w, six}, {h, eight}};
 *   kiln_tensor *out;
 *   if (kiln_session_run(s, feeds, 2, &area, 1, NULL, 0, &out) != KILN_OK)
 *     fprintf(stderr, "%s\n", kiln_session_error(s));
 *   printf("area= %d\n", *(int32_t *)kiln_tensor_data(out));
 *   kiln_tensor_destroy(out); ... kiln_session_destroy(s); kiln_graph_destroy(g);
 */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/kiln_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_graph kiln_graph;
typedef struct kiln_node kiln_node;
typedef struct kiln_session kiln_session;
typedef struct kiln_tensor kiln_tensor;

/* ---------------------------------------------------------------- tensors ------- */
/* Copies data (kiln_dtype_size(dtype) * product(dims) bytes; NULL data = zeros).
 * NULL on a bad dtype, rank > KILN_MAX_RANK, negative or overflowing dims, or OOM. */
kiln_tensor *kiln_tensor_create(kiln_dtype dtype, const int64_t *dims, int rank,
                                const void *data);
kiln_tensor *kiln_tensor_scalar_f32(float v);
kiln_tensor *kiln_tensor_scalar_i32(int32_t v);
void kiln_tensor_destroy(kiln_tensor *t);
kiln_dtype kiln_tensor_dtype(const kiln_tensor *t);
int kiln_tensor_rank(const kiln_tensor *t);
int64_t kiln_tensor_dim(const kiln_tensor *t, int i); /* -1 when out of range */
int64_t kiln_tensor_numel(const kiln_tensor *t);
size_t kiln_tensor_nbytes(const kiln_tensor *t);
void *kiln_tensor_data(kiln_tensor *t);
const void *kiln_tensor_data_const(const kiln_tensor *t);

/* ---------------------------------------------------------------- graphs -------- */
kiln_graph *kiln_graph_create(void); /* NULL on OOM */
void kiln_graph_destroy(kiln_graph *g);
const char *kiln_graph_error(const kiln_graph *g); /* "" after a success */
kiln_status kiln_graph_status(const kiln_graph *g);
int kiln_graph_num_nodes(const kiln_graph *g);
kiln_node *kiln_graph_node(const kiln_graph *g, int i);  /* NULL out of range */
kiln_node *kiln_graph_find(const kiln_graph *g, const char *name); /* NULL if absent */

/* Writes the graph as protobuf (ir/kiln.proto), atomically. */
kiln_status kiln_graph_save(kiln_graph *g, const char *path);
/* Loads into an empty graph; validates everything first. On error g stays empty. */
kiln_status kiln_graph_load(kiln_graph *g, const char *path);
/* Prints the graph, one node a line (for people; not a stable format yet). */
void kiln_graph_print(const kiln_graph *g, FILE *out);

const char *kiln_node_name(const kiln_node *n);
const char *kiln_node_op(const kiln_node *n);       /* op wire name, e.g. "matmul" */
const char *kiln_node_device(const kiln_node *n);   /* requested device, "" if none */
kiln_dtype kiln_node_dtype(const kiln_node *n);     /* KILN_DTYPE_INVALID: no output */
int kiln_node_rank(const kiln_node *n);
int64_t kiln_node_dim(const kiln_node *n, int i);

/* ---------------------------------------------------------------- scopes -------- */
/* Name scopes nest: push("layer1") then an op named "matmul" is "layer1/matmul".
 * A scope name must be non-empty and must not contain '/' at either end. */
kiln_status kiln_scope_push_name(kiln_graph *g, const char *scope);
kiln_status kiln_scope_pop_name(kiln_graph *g);  /* KILN_ERR_ARGUMENT if none open */
/* Device scopes, like tf.device: ops built inside record the device as their request
 * ("cpu:0", "/cpu:0", "/device:GPU:1", "cuda:1" are accepted and normalized). The
 * place pass honors the request or falls back with a recorded reason. */
kiln_status kiln_scope_push_device(kiln_graph *g, const char *device);
kiln_status kiln_scope_pop_device(kiln_graph *g);

/* ---------------------------------------------------------------- ops ----------- */
/* Sources. dims may be NULL when rank is 0 (a scalar). */
kiln_status kiln_constant(kiln_graph *g, const char *name, const kiln_tensor *value,
                          kiln_node **out);
kiln_status kiln_placeholder(kiln_graph *g, const char *name, kiln_dtype dtype,
                             const int64_t *dims, int rank, kiln_node **out);
/* A variable whose initial value is init's (tf.Variable(init)). Its value lives in
 * each session; reading it before an initializer ran is KILN_ERR_STATE. */
kiln_status kiln_variable(kiln_graph *g, const char *name, kiln_node *init,
                          kiln_node **out);
kiln_status kiln_random_normal(kiln_graph *g, const char *name, kiln_dtype dtype,
                               const int64_t *dims, int rank, double mean, double stddev,
                               uint64_t seed, kiln_node **out);
kiln_status kiln_random_uniform(kiln_graph *g, const char *name, kiln_dtype dtype,
                                const int64_t *dims, int rank, double low, double high,
                                uint64_t seed, kiln_node **out);

/* Elementwise, NumPy broadcasting; both inputs of one dtype. */
kiln_status kiln_add(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_sub(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_mul(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_div(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_maximum(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_minimum(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_neg(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_exp(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_log(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_sqrt(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_tanh(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_sigmoid(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_relu(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
/* Either bound may be absent (has_min / has_max false), like torch.clamp. */
kiln_status kiln_clamp(kiln_graph *g, const char *name, kiln_node *x, bool has_min,
                       double min, bool has_max, double max, kiln_node **out);

kiln_status kiln_matmul(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b,
                        bool transpose_a, bool transpose_b, kiln_node **out);
kiln_status kiln_add_n(kiln_graph *g, const char *name, kiln_node *const *xs, int n,
                       kiln_node **out);

/* axes NULL / n_axes 0: all axes. Negative axes count from the end. */
kiln_status kiln_reduce_sum(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out);
kiln_status kiln_reduce_mean(kiln_graph *g, const char *name, kiln_node *x,
                             const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out);
kiln_status kiln_reduce_max(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out);
kiln_status kiln_softmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                         kiln_node **out);

/* dims may hold one -1, inferred from the element count. */
kiln_status kiln_reshape(kiln_graph *g, const char *name, kiln_node *x, const int64_t *dims,
                         int rank, kiln_node **out);
/* perm NULL: reverse the axes. */
kiln_status kiln_transpose(kiln_graph *g, const char *name, kiln_node *x, const int64_t *perm,
                           int rank, kiln_node **out);
kiln_status kiln_identity(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);

/* State and control. assign's var must be a variable node; value of its dtype/shape.
 * Its output is the new value. */
kiln_status kiln_assign(kiln_graph *g, const char *name, kiln_node *var, kiln_node *value,
                        kiln_node **out);
/* Runs every input when run as a target; produces no value (tf.group). */
kiln_status kiln_group(kiln_graph *g, const char *name, kiln_node *const *deps, int n,
                       kiln_node **out);
kiln_status kiln_no_op(kiln_graph *g, const char *name, kiln_node **out);
/* A group assigning every variable its initializer
 * (tf.global_variables_initializer()). Valid with no variables too. */
kiln_status kiln_global_variables_initializer(kiln_graph *g, kiln_node **out);

/* ---------------------------------------------------------------- more ops ------ */
/* The ONNX-era ops (ir/ops.def gives their exact semantics). */
/* A placeholder that takes `value` (its dtype and shape) when nothing is fed
 * (tf.placeholder_with_default). */
kiln_status kiln_placeholder_with_default(kiln_graph *g, const char *name,
                                          const kiln_tensor *value, kiln_node **out);
kiln_status kiln_pow(kiln_graph *g, const char *name, kiln_node *a, kiln_node *b, kiln_node **out);
kiln_status kiln_abs(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
kiln_status kiln_erf(kiln_graph *g, const char *name, kiln_node *x, kiln_node **out);
/* x < 0 ? alpha * x : x */
kiln_status kiln_leaky_relu(kiln_graph *g, const char *name, kiln_node *x, double alpha,
                            kiln_node **out);
/* tanh_approximation false: x/2 * (1 + erf(x / sqrt 2)); true: the tanh form. */
kiln_status kiln_gelu(kiln_graph *g, const char *name, kiln_node *x, bool tanh_approximation,
                      kiln_node **out);
kiln_status kiln_reduce_min(kiln_graph *g, const char *name, kiln_node *x,
                            const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out);
kiln_status kiln_log_softmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                             kiln_node **out);
/* i64 index of the first max / min along axis (select_last: the last one). */
kiln_status kiln_argmax(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                        bool keep_dims, bool select_last, kiln_node **out);
kiln_status kiln_argmin(kiln_graph *g, const char *name, kiln_node *x, int64_t axis,
                        bool keep_dims, bool select_last, kiln_node **out);
kiln_status kiln_concat(kiln_graph *g, const char *name, kiln_node *const *xs, int n,
                        int64_t axis, kiln_node **out);
/* ONNX Slice: n entries each; axes NULL = 0..n-1, steps NULL = all 1. */
kiln_status kiln_slice(kiln_graph *g, const char *name, kiln_node *x, const int64_t *starts,
                       const int64_t *ends, const int64_t *axes, const int64_t *steps, int n,
                       kiln_node **out);
/* indices i32 or i64; negative ones count from the end; out of range fails the run. */
kiln_status kiln_gather(kiln_graph *g, const char *name, kiln_node *data, kiln_node *indices,
                        int64_t axis, kiln_node **out);
kiln_status kiln_cast(kiln_graph *g, const char *name, kiln_node *x, kiln_dtype dtype,
                      kiln_node **out);
/* cond (bool) ? x : y, all three broadcast. */
kiln_status kiln_where(kiln_graph *g, const char *name, kiln_node *cond, kiln_node *x,
                       kiln_node *y, kiln_node **out);

/* Convolution and pooling over the spatial dims of x [N, C, d1..dk], k = 1..3 (taken
 * from x's rank). A zero-initialized struct means the defaults: every 0 in strides,
 * dilations or group stands for 1; pads are [begin_1..begin_k, end_1..end_k]. */
typedef struct kiln_conv_params {
  int64_t strides[3];
  int64_t pads[6];
  int64_t dilations[3];
  int64_t group;
} kiln_conv_params;
/* w [M, C/group, k1..kk]; bias [M] or NULL. params NULL: all defaults. */
kiln_status kiln_conv(kiln_graph *g, const char *name, kiln_node *x, kiln_node *w,
                      kiln_node *bias, const kiln_conv_params *params, kiln_node **out);
typedef struct kiln_pool_params {
  int64_t kernel[3];     /* required: k entries, each >= 1 */
  int64_t strides[3];    /* 0: 1 */
  int64_t pads[6];
  int64_t dilations[3];  /* 0: 1 */
  bool ceil_mode;
  bool count_include_pad; /* avg_pool only */
} kiln_pool_params;
kiln_status kiln_max_pool(kiln_graph *g, const char *name, kiln_node *x,
                          const kiln_pool_params *params, kiln_node **out);
kiln_status kiln_avg_pool(kiln_graph *g, const char *name, kiln_node *x,
                          const kiln_pool_params *params, kiln_node **out);
/* Inference batch norm over axis 1; scale, bias, mean, var of shape [C]. */
kiln_status kiln_batch_norm(kiln_graph *g, const char *name, kiln_node *x, kiln_node *scale,
                            kiln_node *bias, kiln_node *mean, kiln_node *var, double epsilon,
                            kiln_node **out);

/* ---------------------------------------------------------------- sessions ------ */
typedef struct kiln_session_options {
  /* Like ConfigProto(log_device_placement=True): before the first run (and after the
   * graph changed), write one line per node run: "name: (op): /device:CPU:0 (reason)". */
  bool log_device_placement;
  FILE *log; /* where the placement log goes; NULL = stderr */
} kiln_session_options;

typedef struct kiln_feed {
  kiln_node *node;          /* usually a placeholder; any node with an output */
  const kiln_tensor *value; /* borrowed for the call */
} kiln_feed;

/* The session reads the graph at each run (ops added later are visible) and keeps
 * variable values across runs. opts may be NULL. Errors on the graph. */
kiln_status kiln_session_create(kiln_graph *g, const kiln_session_options *opts,
                                kiln_session **out);
void kiln_session_destroy(kiln_session *s);
const char *kiln_session_error(const kiln_session *s);

/* Computes fetches (outputs[i] gets a new tensor for fetches[i]; the caller destroys
 * them) and runs targets for their effects, feeding feeds. On error no output is set.
 * Errors: a needed placeholder not fed, a feed of the wrong dtype or shape, a node of
 * another graph or a no-output node fetched (KILN_ERR_FEED / ARGUMENT); an
 * uninitialized variable read (KILN_ERR_STATE); integer division by zero
 * (KILN_ERR_EXEC). Each message names the node and the value. */
kiln_status kiln_session_run(kiln_session *s, const kiln_feed *feeds, int n_feeds,
                             kiln_node *const *fetches, int n_fetches,
                             kiln_node *const *targets, int n_targets,
                             kiln_tensor **outputs);

#ifdef __cplusplus
}
#endif
#endif
