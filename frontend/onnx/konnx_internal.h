/* konnx_internal.h — what the files of frontend/onnx share: the import context, the value
 * table, tensor decoding, the wire pre-scan and the op mapping helpers. Never included
 * outside frontend/onnx; the generated onnx.pb-c.h stays private to this module. */
#ifndef KONNX_INTERNAL_H
#define KONNX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln_onnx.h"
#include "onnx.pb-c.h"

#define KONNX_HIDDEN __attribute__((visibility("hidden")))
#define KONNX_ESC 272 /* holds kir_escape's output */
#define KONNX_NAME_BUF (KIR_MAX_NAME + 64) /* a node name plus "/role~k"; longer is refused */

/* A possibly NULL protobuf-c string as a C string. */
static inline const char *konnx_s(const char *s) { return s ? s : ""; }

/* ---------------------------------------------------------------- wire + unpack -- */
/* Walks the wire format of a message of type desc without recursion and refuses nesting
 * deeper than KONNX_MAX_NESTING (KILN_ERR_LIMIT) or malformed framing (KILN_ERR_FORMAT);
 * the message goes to err. */
KONNX_HIDDEN kiln_status konnx_prescan(const uint8_t *buf, size_t len,
                                       const ProtobufCMessageDescriptor *desc, char *err,
                                       size_t errlen);
/* A protobuf-c allocator with a byte budget (8 x the input + 64 MiB). */
typedef struct konnx_unpacker {
  kir_pb_allocator pb;
  ProtobufCAllocator a; /* routes through pb, remembering a refused budget */
  bool over_budget;
  bool out_of_memory;
} konnx_unpacker;
/* Pre-scans and unpacks; *out is freed with konnx_unpack_free. what names the input in
 * messages ("model", "tensor"). */
KONNX_HIDDEN kiln_status konnx_unpack(konnx_unpacker *u, const uint8_t *buf, size_t len,
                                      const ProtobufCMessageDescriptor *desc,
                                      ProtobufCMessage **out, char *err, size_t errlen);
KONNX_HIDDEN void konnx_unpack_free(konnx_unpacker *u, ProtobufCMessage *m);
/* Reads a whole regular file, at most KONNX_MAX_FILE_BYTES; *buf through kir_malloc. */
KONNX_HIDDEN kiln_status konnx_read_file(const char *path, uint8_t **buf, size_t *len,
                                         char *err, size_t errlen);

/* ---------------------------------------------------------------- tensors -------- */
/* ONNX TensorProto.DataType -> Kiln dtype; KILN_DTYPE_INVALID when Kiln has none. */
KONNX_HIDDEN kiln_dtype konnx_dtype(int32_t onnx_type);
/* The ONNX name of an element type ("FLOAT16", "UINT8", ...; "type N" if unknown). */
KONNX_HIDDEN const char *konnx_type_name(int32_t onnx_type, char *buf, size_t n);
/* Where external data may be read from; NULL dir = refused. */
typedef struct konnx_extern {
  bool allow;
  const char *dir;
} konnx_extern;
/* Decodes t into a new tensor (shape, dtype, raw or typed data, or external data under
 * ext). what prefixes messages ("initializer 'w'"). */
KONNX_HIDDEN kiln_status konnx_tensor_decode(const Onnx__TensorProto *t, const konnx_extern *ext,
                                             const char *what, kir_tensor **out, char *err,
                                             size_t errlen);

/* ---------------------------------------------------------------- import context - */
typedef struct konnx_map konnx_map; /* string -> int32 hash map (konnx_graph.c) */
KONNX_HIDDEN konnx_map *konnx_map_new(size_t expected);
KONNX_HIDDEN void konnx_map_free(konnx_map *m);
/* false on OOM. Keys are borrowed and must outlive the map. */
KONNX_HIDDEN bool konnx_map_put(konnx_map *m, const char *key, int32_t v);
/* true when present; *v receives the value. */
KONNX_HIDDEN bool konnx_map_get(const konnx_map *m, const char *key, int32_t *v);

typedef struct konnx_ctx {
  kir_graph *g;                /* the graph being built (swapped into the caller's) */
  const Onnx__GraphProto *gp;
  int64_t opset;               /* default domain */
  const konnx_options *opt;
  konnx_extern ext;
  konnx_map *values;           /* ONNX value name -> Kiln id (>= 0) or pending (< 0) */
  konnx_map *reserved;         /* every ONNX value name, for expansion names */
  konnx_map *renamed;          /* graph output -> index in rename_to */
  const char **rename_to;      /* "<out>/value": the producer's name (arena strings) */
  konnx_map *outputs;          /* graph output names */
  const Onnx__NodeProto *node; /* the node being imported (for messages) */
  int32_t node_index;
  char scratch[KIR_MAX_NAME + 64];
} konnx_ctx;

/* Pending value codes in ctx->values. */
#define KONNX_PENDING_INIT(i) (-2 - (int32_t)(i)) /* initializer i, not yet a node */
#define KONNX_RESERVED (-1)                       /* produced by a later node */

/* Sets the message on ctx->g and returns s. */
KONNX_HIDDEN kiln_status konnx_err(konnx_ctx *c, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Makes id's node a constant holding value when every input is a constant, value is
 * small and the node is no graph output (import-time folding of shape arithmetic). */
KONNX_HIDDEN void konnx_try_fold(konnx_ctx *c, kir_node *n);
/* The node for ONNX value name (creating an initializer's constant on first use);
 * KILN_ERR_GRAPH when the name is not defined. */
KONNX_HIDDEN kiln_status konnx_value_of(konnx_ctx *c, const char *name, int32_t *id);
/* The Kiln name for ONNX value name: name itself, or "<name>/value" for renamed outputs. */
KONNX_HIDDEN const char *konnx_kiln_name(konnx_ctx *c, const char *name, char *buf, size_t n);
/* A fresh node name "<base>/<role>" (suffixed "~k" if taken) into buf. */
KONNX_HIDDEN const char *konnx_sub_name(konnx_ctx *c, const char *base, const char *role,
                                        char *buf, size_t n);
/* Records that ONNX value name is now Kiln node id. */
KONNX_HIDDEN kiln_status konnx_bind(konnx_ctx *c, const char *name, int32_t id);

/* ---------------------------------------------------------------- op mapping ----- */
typedef kiln_status (*konnx_op_fn)(konnx_ctx *c, const Onnx__NodeProto *n);
/* The handler for op_type, NULL when unsupported (konnx_ops.c's sorted table). */
KONNX_HIDDEN konnx_op_fn konnx_find_op(const char *op_type);
/* Handlers in konnx_ops_nn.c. */
KONNX_HIDDEN kiln_status konnx_op_constant(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_shape(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_size(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_constant_of_shape(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_conv(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_max_pool(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_avg_pool(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_global_avg_pool(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_global_max_pool(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_batch_norm(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_dropout(konnx_ctx *c, const Onnx__NodeProto *n);
KONNX_HIDDEN kiln_status konnx_op_pad(konnx_ctx *c, const Onnx__NodeProto *n);

/* Helpers shared by konnx_ops.c and konnx_ops_nn.c. Messages are short: the caller
 * prefixes "node 'NAME' (op_type 'T'): ". */
KONNX_HIDDEN const Onnx__AttributeProto *konnx_attr(const Onnx__NodeProto *n, const char *name);
/* Attribute getters: the default when absent, KILN_ERR_FORMAT when of another type. */
KONNX_HIDDEN kiln_status konnx_attr_int(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                                        int64_t dflt, int64_t *v);
KONNX_HIDDEN kiln_status konnx_attr_float(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                                          double dflt, double *v);
/* *v aliases the attribute (n may be 0); *present says whether it was given. */
KONNX_HIDDEN kiln_status konnx_attr_ints(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                                         const int64_t **v, int32_t *count, bool *present);
KONNX_HIDDEN kiln_status konnx_attr_string(konnx_ctx *c, const Onnx__NodeProto *n, const char *name,
                                           const char *dflt, char *buf, size_t n_buf);
/* Input i's node; KILN_ERR_GRAPH when absent. */
KONNX_HIDDEN kiln_status konnx_in(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i, int32_t *id);
/* Input i's node or -1 when absent or "". */
KONNX_HIDDEN kiln_status konnx_opt_in(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i, int32_t *id);
/* The constant value of node id, NULL when it is not static. */
KONNX_HIDDEN const kir_tensor *konnx_static(konnx_ctx *c, int32_t id);
/* Input i as a static int64 list (copied into out, at most cap); KILN_ERR_UNSUPPORTED
 * naming the input when it is not static. */
KONNX_HIDDEN kiln_status konnx_static_ints(konnx_ctx *c, const Onnx__NodeProto *n, int32_t i,
                                           const char *what, int64_t *out, int32_t cap,
                                           int32_t *count);
/* Adds a node named name with inputs; attributes set by the caller then konnx_finish. */
KONNX_HIDDEN kir_node *konnx_add(konnx_ctx *c, kir_op op, const char *name, const int32_t *in,
                                 int32_t n_in);
/* Infers n's type (and folds it when static). */
KONNX_HIDDEN kiln_status konnx_finish(konnx_ctx *c, kir_node *n);
/* The node name for ONNX output k of n (maybe renamed), into c->scratch-free buf. */
KONNX_HIDDEN const char *konnx_out_name(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k,
                                        char *buf, size_t len);
/* A node for output k of n: op over inputs, named as the output; binds the value. */
KONNX_HIDDEN kiln_status konnx_emit_out(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k,
                                        kir_op op, const int32_t *in, int32_t n_in, kir_node **out);
/* An intermediate node "<output0>/<role>". */
KONNX_HIDDEN kiln_status konnx_emit_sub(konnx_ctx *c, const Onnx__NodeProto *n, const char *role,
                                        kir_op op, const int32_t *in, int32_t n_in, kir_node **out);
/* A constant node holding t (copied): as output k (role NULL) or an intermediate. */
KONNX_HIDDEN kiln_status konnx_emit_const(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k,
                                          const char *role, const kir_tensor *t, int32_t *id);
/* A scalar constant of dtype dt (intermediate "<output0>/<role>"). */
KONNX_HIDDEN kiln_status konnx_scalar(konnx_ctx *c, const Onnx__NodeProto *n, const char *role,
                                      kiln_dtype dt, double v, int32_t *id);
/* A reshape of id to dims: as output k (role NULL) or an intermediate. */
KONNX_HIDDEN kiln_status konnx_reshape(konnx_ctx *c, const Onnx__NodeProto *n, int32_t k,
                                       const char *role, int32_t id, const int64_t *dims,
                                       int32_t rank, int32_t *out);
/* Normalizes axis against rank (negative counts from the end); KILN_ERR_SHAPE naming the
 * attribute when out of range. */
KONNX_HIDDEN kiln_status konnx_axis(konnx_ctx *c, const char *what, int64_t axis, int32_t rank,
                                    int32_t *out);
/* The type of node id. */
static inline const kir_type *konnx_type(konnx_ctx *c, int32_t id) { return &c->g->nodes[id]->type; }
/* Number of non-empty outputs of n beyond the first (for "extra outputs" checks). */
KONNX_HIDDEN bool konnx_has_output(const Onnx__NodeProto *n, int32_t k);

#endif
