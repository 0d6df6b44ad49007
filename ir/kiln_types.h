/* kiln_types.h — status codes and dtypes shared by every Kiln module and by the
 * public API (frontend/kiln.h includes it). Plain C, depends on nothing.
 * Numbers here are wire values and ABI: append only, never renumber. The runtime
 * (runtime/kiln_runtime.h) repeats the status numbers under KILN_RT_ names. */
#ifndef KILN_TYPES_H
#define KILN_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERR_ARGUMENT = 1,    /* API misuse: NULL handle, bad parameter          */
  KILN_ERR_FORMAT = 2,      /* malformed file, bytes or text                    */
  KILN_ERR_LIMIT = 3,       /* a configured limit exceeded (rank, size, count)  */
  KILN_ERR_UNSUPPORTED = 4, /* valid but not supported (op, dtype, target)      */
  KILN_ERR_GRAPH = 5,       /* dangling input, cycle, duplicate name, arity     */
  KILN_ERR_SHAPE = 6,       /* shapes that do not agree                         */
  KILN_ERR_TYPE = 7,        /* dtypes that do not agree                         */
  KILN_ERR_OVERFLOW = 8,    /* a size computation overflowed                    */
  KILN_ERR_PATH = 9,        /* a path that cannot be used                       */
  KILN_ERR_INTEGRITY = 10,  /* hash mismatch, inconsistent sections             */
  KILN_ERR_FEED = 11,       /* feed missing, unknown, or of wrong dtype/shape   */
  KILN_ERR_NOMEM = 12,      /* allocation failed                                */
  KILN_ERR_IO = 13,         /* read/write/rename failed                         */
  KILN_ERR_STATE = 14,      /* e.g. reading an uninitialized variable           */
  KILN_ERR_COMPILE = 15,    /* the system C compiler failed on generated code   */
  KILN_ERR_EXEC = 16,       /* arithmetic error at run time (int div by zero)   */
  KILN_ERR_VERSION = 17,    /* file written by a newer, incompatible format     */
  KILN_ERR_INTERNAL = 18,   /* a broken internal invariant (a Kiln bug)         */
  KILN_ERR_DEVICE = 19      /* no usable device: no driver, no device, bad index */
} kiln_status;

/* "ok", "argument", "format", ... — never NULL. */
const char *kiln_status_name(kiln_status s);

typedef enum kiln_dtype {
  KILN_DTYPE_INVALID = 0, /* also: "this node has no output" */
  KILN_F32 = 1,
  KILN_F64 = 2,
  KILN_I32 = 3,
  KILN_I64 = 4,
  KILN_BOOL = 5, /* one byte, 0 or 1 */
  /* Integers wrap at their width (unsigned ones modulo 2^bits). */
  KILN_U8 = 6,
  KILN_I8 = 7,
  KILN_U16 = 8,
  KILN_I16 = 9,
  KILN_U32 = 10,
  KILN_U64 = 11,
  /* IEEE binary16 and bfloat16, stored as 16 bits; every op computes in double and
   * rounds to the type (nearest even; overflow to infinity; NaN stays NaN). */
  KILN_F16 = 12,
  KILN_BF16 = 13
} kiln_dtype;
#define KILN_DTYPE_COUNT 14

/* "f32", "f64", "i32", "i64", "bool", "u8", "i8", "u16", "i16", "u32", "u64", "f16",
 * "bf16"; "invalid" for anything else. */
const char *kiln_dtype_name(kiln_dtype t);
/* Bytes per element; 0 for an invalid dtype. */
size_t kiln_dtype_size(kiln_dtype t);
/* Parses "f32", "float32", "int32", ...; KILN_DTYPE_INVALID when unknown. */
kiln_dtype kiln_dtype_parse(const char *s);

#define KILN_MAX_RANK 8

#ifdef __cplusplus
}
#endif
#endif
