/* kiln_internal.h — private to frontend/: the graph handle's layout and the
 * transactional node builder shared by kiln_graph.c, kiln_ops.c and kiln_session.c.
 * Uses ir/ (and passes/ for the placement log only); never included by users. */
#ifndef KILN_INTERNAL_H
#define KILN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../ir/kir.h"
#include "kiln.h"

/* Room for a name escaped by kir_escape (64 bytes, each up to 4, plus "..."). */
#define FE_ESC 280

/* kiln_node handles are the graph's kir_node pointers: nodes live in the graph's arena
 * and the builder graph is only ever shrunk at its end (rollback), so they stay valid. */
static inline kir_node *fe_node(const kiln_node *n) { return (kir_node *)(uintptr_t)n; }
static inline kiln_node *fe_handle(kir_node *n) { return (kiln_node *)(void *)n; }
/* kiln_tensor handles are kir_tensor pointers made by kir_tensor_new. */
static inline kir_tensor *fe_tensor(const kiln_tensor *t) { return (kir_tensor *)(uintptr_t)t; }
static inline kiln_tensor *fe_tensor_handle(kir_tensor *t) { return (kiln_tensor *)(void *)t; }

struct kiln_graph {
  kir_graph *ir;
  char *prefix;          /* "layer1/inner/": joined name scopes, kir_malloc'd ("" when none) */
  size_t prefix_len;
  size_t *scope_len;     /* prefix length before each pushed name scope */
  int32_t n_scopes, cap_scopes;
  char **devices;        /* stack of normalized device strings */
  int32_t n_devices, cap_devices;
};

/* One op being built. The name is resolved (scoped, made unique) and the attributes
 * are staged on `stage` (their values in the graph's arena) before the graph changes;
 * fe_finish appends the node, moves the attributes onto it and infers its type, or
 * removes it again. Under out-of-memory the graph's node list is never touched after
 * the append, so the rollback (which allocates) only serves type and shape errors. */
typedef struct fe_op {
  kiln_graph *g;
  kir_op op;
  kir_node *n;        /* &stage while staging; the graph's node after fe_finish appends */
  kir_node stage;
  kiln_node *const *inputs;
  int32_t n_inputs;
  int32_t first;      /* id of the first node this call appended (rollback point) */
  kiln_node **out;
  char name[KIR_MAX_NAME + 1];
} fe_op;

/* Checks g and out (*out = NULL), resolves the name: user name under the name scopes,
 * or the op's wire name made unique ("add", "add_1", ...). */
kiln_status fe_prepare(fe_op *b, kiln_graph *g, kir_op op, const char *name, kiln_node **out);
/* Like fe_prepare with base as given: scoped = prefix the name scopes; explicit = a
 * taken name is an error (else made unique). */
kiln_status fe_prepare_raw(fe_op *b, kiln_graph *g, kir_op op, const char *base,
                           bool explicit_name, bool scoped, kiln_node **out);
/* Validates inputs (NULL, another graph's node, no-output node) and records them. */
kiln_status fe_add(fe_op *b, kiln_node *const *inputs, int32_t n_inputs);
/* st is the status of staging attributes; on KILN_OK appends the node (device from the
 * device scope) and infers its type. Success: clears the error and sets *out. Failure:
 * removes every node appended since b->first, keeping the error message. */
kiln_status fe_finish(fe_op *b, kiln_status st);
/* Shared by the op builders (kiln_ops.c, kiln_ops_nn.c). */
/* Prepare, add inputs, finish: an op with no attributes. */
kiln_status fe_simple(kiln_graph *g, const char *name, kir_op op, kiln_node *const *in,
                      int32_t n, kiln_node **out);
/* KILN_ERR_ARGUMENT "<op> '<name>': <what>". */
kiln_status fe_bad_arg(fe_op *b, const char *what);
/* dims/rank of a shape-like attribute: rank in [0, KILN_MAX_RANK], dims non-NULL. */
kiln_status fe_check_dims(fe_op *b, const int64_t *dims, int rank);
kiln_status fe_set_ints(fe_op *b, const char *attr, const int64_t *v, int n);
/* One input and one int attribute (softmax's axis, cast's dtype, ...). */
kiln_status fe_unary_int_attr(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                              const char *attr, int64_t v, kiln_node **out);
kiln_status fe_reduce(kiln_graph *g, const char *name, kir_op op, kiln_node *x,
                      const int64_t *axes, int n_axes, bool keep_dims, kiln_node **out);
/* Removes nodes with id >= first (the graph's error survives). */
void fe_rollback(kiln_graph *g, int32_t first);
/* true when n is a node of g (the exact pointer g holds at n's id). */
bool fe_owns(const kiln_graph *g, const kir_node *n);
/* true when g already has a node named name. */
bool fe_name_taken(const kiln_graph *g, const char *name);

#endif
