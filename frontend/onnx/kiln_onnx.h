/* kiln_onnx.h — the ONNX importer (frontend/onnx): an ONNX ModelProto becomes a Kiln
 * graph. Uses ir and protobuf-c (code generated from the system's onnx.proto, Debian
 * libonnx-dev); never passes/, codegen/ or runtime/. ONNX files are untrusted input:
 * every refusal is a kiln_status with a message naming the ONNX node (name and op_type),
 * the field and the value, set on the graph. Prefix konnx_. */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits for untrusted files (RELIABILITY.md), on top of the ir's own. */
#define KONNX_MAX_FILE_BYTES (((int64_t)2 << 30) - 1)
#define KONNX_MAX_NESTING 64   /* protobuf message nesting, checked before unpacking */
#define KONNX_MIN_OPSET 7
#define KONNX_MAX_OPSET 17     /* the newest opset libonnx-testdata 1.12 covers */

/* One override of a graph input's shape ("x" -> [1, 3, 224, 224]) for inputs with
 * symbolic ("N") or missing dims. */
typedef struct konnx_shape {
  const char *name;
  int32_t rank;
  int64_t dims[KILN_MAX_RANK];
} konnx_shape;

/* A graph input fixed at import to a value: it becomes a constant named as the input
 * (not a placeholder), so inputs that must be static (Reshape's shape, Slice's starts,
 * Squeeze's axes, ...) can come from data, as the ONNX test suite feeds them. Additive
 * (issue 4): the value's dtype must match the input's, and its shape every fixed dim. */
typedef struct konnx_value {
  const char *name;
  const kir_tensor *value; /* borrowed; copied into the graph */
} konnx_value;

typedef struct konnx_options {
  const konnx_shape *shapes; /* may be NULL */
  int32_t n_shapes;
  /* External tensor data: false (default) refuses any; true reads files confined to
   * model_dir: relative paths only, no "..", no symlinks, offset/length in range. */
  bool allow_external_data;
  const char *model_dir; /* directory of the model file; NULL = external data refused */
  FILE *log;             /* notes on what the import decided (may be NULL) */
  /* Additive (issue 4): graph inputs fixed to values (see konnx_value); may be NULL. */
  const konnx_value *values;
  int32_t n_values;
} konnx_options;

/* Imports a serialized ModelProto into g, which must be empty. On success:
 *  - every non-initializer graph input is a placeholder named as in the file, in the
 *    file's order, first in the graph; a symbolic or unknown dim without an override in
 *    opt->shapes is KILN_ERR_UNSUPPORTED naming the input and the dim;
 *  - an initializer becomes a constant named as the initializer; one that is also listed
 *    as a graph input becomes a placeholder with attribute default = its value (fed
 *    values override it);
 *  - the graph's sinks (nodes no other node uses) are exactly the ONNX graph outputs, in
 *    the file's order, each named as the ONNX output (an identity is added where an
 *    output is an input, an initializer, or also used by another node; the inner node
 *    is then named "<output>/value"); nodes no output needs are not imported;
 *  - ONNX node outputs keep their value names as Kiln node names; nodes an ONNX op
 *    expands into are named "<output>/<role>" (e.g. "y/matmul" for Gemm);
 *  - shapes are inferred and the graph verifies.
 * On error g stays empty and holds the message. */
kiln_status konnx_import(kir_graph *g, const uint8_t *buf, size_t len,
                         const konnx_options *opt);
/* Reads path (bounded by KONNX_MAX_FILE_BYTES) and imports it; model_dir defaults to the
 * file's directory when opt->allow_external_data is set and opt->model_dir is NULL. */
kiln_status konnx_import_file(kir_graph *g, const char *path, const konnx_options *opt);

/* true when the path ends in ".onnx" (any case) or the file's first bytes parse as a
 * ModelProto with an ir_version and a graph. Never errors. */
bool konnx_looks_like_onnx(const char *path);

/* `kiln show MODEL.onnx`: writes a summary — ir_version, producer, opsets, inputs and
 * outputs with dtypes and shapes (symbolic dims by name), initializer count and bytes,
 * operator counts, and the operators Kiln does not import (with the reason) — as text
 * or JSON. Errors (file unreadable, not ONNX) go to err and return non-OK; nothing is
 * written to out then. */
kiln_status konnx_describe(const char *path, FILE *out, bool json, char *err, size_t errlen);

/* Reads a serialized TensorProto (the test suite's input_N.pb / output_N.pb) into a new
 * tensor; *name (may be NULL) receives a kir_malloc'd copy of its name ("" if none),
 * freed by the caller with kir_free. ONNX element types without a Kiln dtype are
 * KILN_ERR_UNSUPPORTED naming the type. */
kiln_status konnx_read_tensor(const uint8_t *buf, size_t len, kir_tensor **out, char **name,
                              char *err, size_t errlen);
kiln_status konnx_read_tensor_file(const char *path, kir_tensor **out, char **name,
                                   char *err, size_t errlen);

/* The ONNX op_types (domain "" / "ai.onnx") the importer maps, sorted, NULL-terminated;
 * for tables and `kiln show`. */
const char *const *konnx_supported_ops(void);

#ifdef __cplusplus
}
#endif
#endif
