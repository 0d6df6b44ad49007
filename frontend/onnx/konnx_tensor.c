/* konnx_tensor.c — ONNX TensorProto -> kir_tensor: dtype, dims (bounded, overflow
 * checked), data from raw_data or the typed fields with their sizes checked against the
 * shape, and external data confined to the model's directory (relative paths, no "..",
 * no symlinks, in-range offset and length). Depends on ir/, POSIX and protobuf-c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "konnx_internal.h"

kiln_dtype konnx_dtype(int32_t t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return KILN_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return KILN_F64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return KILN_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return KILN_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return KILN_BOOL;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return KILN_U8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return KILN_I8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return KILN_U16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return KILN_I16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return KILN_U32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return KILN_U64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return KILN_F16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return KILN_BF16;
  default: return KILN_DTYPE_INVALID;
  }
}

const char *konnx_type_name(int32_t t, char *buf, size_t n) {
  static const char *const names[] = {
      "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING",
      "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
      "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"};
  if (t >= 0 && (size_t)t < sizeof names / sizeof names[0])
    snprintf(buf, n, "%s", names[t]);
  else
    snprintf(buf, n, "type %d", (int)t);
  return buf;
}

/* ---------------------------------------------------------------- shape ---------- */

static kiln_status decode_type(const Onnx__TensorProto *t, const char *what, kir_type *ty,
                               char *err, size_t errlen) {
  char tn[32];
  memset(ty, 0, sizeof *ty);
  if (!t->has_data_type || t->data_type == 0) {
    snprintf(err, errlen, "%s: missing data_type", what);
    return KILN_ERR_FORMAT;
  }
  ty->dtype = konnx_dtype(t->data_type);
  if (ty->dtype == KILN_DTYPE_INVALID) {
    snprintf(err, errlen, "%s: element type %s is not supported (Kiln has FLOAT, DOUBLE, FLOAT16, "
             "BFLOAT16, INT8..INT64, UINT8..UINT64, BOOL)",
             what, konnx_type_name(t->data_type, tn, sizeof tn));
    return KILN_ERR_UNSUPPORTED;
  }
  if (t->n_dims > KILN_MAX_RANK) {
    snprintf(err, errlen, "%s: rank %zu (limit %d)", what, t->n_dims, KILN_MAX_RANK);
    return KILN_ERR_LIMIT;
  }
  ty->rank = (int32_t)t->n_dims;
  int64_t numel = 1;
  for (size_t d = 0; d < t->n_dims; d++) {
    int64_t v = t->dims[d];
    if (v < 0) {
      snprintf(err, errlen, "%s: negative dim %lld at axis %zu", what, (long long)v, d);
      return KILN_ERR_FORMAT;
    }
    if (v > 0 && numel > INT64_MAX / v) {
      snprintf(err, errlen, "%s: element count overflows int64 at axis %zu (dim %lld)", what, d, (long long)v);
      return KILN_ERR_OVERFLOW;
    }
    numel *= v;
    ty->dims[d] = v;
  }
  int64_t nb = kir_type_nbytes(ty);
  if (nb < 0) {
    snprintf(err, errlen, "%s: %lld elements exceed the tensor limit of %lld bytes", what,
             (long long)numel, (long long)KIR_MAX_TENSOR_BYTES);
    return KILN_ERR_LIMIT;
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- typed data ----- */

static kiln_status count_mismatch(char *err, size_t errlen, const char *what, const char *field,
                                  size_t got, int64_t want) {
  snprintf(err, errlen, "%s: %s holds %zu values, the shape needs %lld", what, field, got,
           (long long)want);
  return KILN_ERR_FORMAT;
}

/* The typed field that holds dtype's values (ONNX: int8/int16/uint8/uint16, float16 and
 * bfloat16 bit patterns, int32 and bool in int32_data; uint32/uint64 in uint64_data). */
typedef enum field { F_FLOAT, F_DOUBLE, F_INT32, F_INT64, F_UINT64, F_NONE } field;

static field field_of(kiln_dtype dt) {
  switch (dt) {
  case KILN_F32: return F_FLOAT;
  case KILN_F64: return F_DOUBLE;
  case KILN_I64: return F_INT64;
  case KILN_U32:
  case KILN_U64: return F_UINT64;
  case KILN_I32:
  case KILN_BOOL:
  case KILN_U8:
  case KILN_I8:
  case KILN_U16:
  case KILN_I16:
  case KILN_F16:
  case KILN_BF16: return F_INT32;
  case KILN_DTYPE_INVALID: break;
  }
  return F_NONE;
}

static const char *const FIELD_NAME[] = {"float_data", "double_data", "int32_data", "int64_data",
                                         "uint64_data", "?"};

static size_t field_count(const Onnx__TensorProto *t, field f) {
  switch (f) {
  case F_FLOAT: return t->n_float_data;
  case F_DOUBLE: return t->n_double_data;
  case F_INT32: return t->n_int32_data;
  case F_INT64: return t->n_int64_data;
  case F_UINT64: return t->n_uint64_data;
  case F_NONE: break;
  }
  return 0;
}

/* Copies the typed field matching the dtype into x (numel elements); narrower integers
 * keep the low bits of each value (as ONNX writes them), bool is value != 0. */
static kiln_status decode_typed(const Onnx__TensorProto *t, const char *what, kir_tensor *x,
                                int64_t numel, char *err, size_t errlen) {
  field f = field_of(x->type.dtype);
  if (f == F_NONE) {
    snprintf(err, errlen, "%s: no element type", what);
    return KILN_ERR_INTERNAL;
  }
  if ((int64_t)field_count(t, f) != numel)
    return count_mismatch(err, errlen, what, FIELD_NAME[f], field_count(t, f), numel);
  if (!numel) return KILN_OK;
  void *d = x->data;
  switch (x->type.dtype) {
  case KILN_F32: memcpy(d, t->float_data, (size_t)numel * sizeof(float)); break;
  case KILN_F64: memcpy(d, t->double_data, (size_t)numel * sizeof(double)); break;
  case KILN_I32: memcpy(d, t->int32_data, (size_t)numel * sizeof(int32_t)); break;
  case KILN_I64: memcpy(d, t->int64_data, (size_t)numel * sizeof(int64_t)); break;
  case KILN_U64: memcpy(d, t->uint64_data, (size_t)numel * sizeof(uint64_t)); break;
  case KILN_U32:
    for (int64_t i = 0; i < numel; i++) ((uint32_t *)d)[i] = (uint32_t)t->uint64_data[i];
    break;
  case KILN_BOOL:
    for (int64_t i = 0; i < numel; i++) ((uint8_t *)d)[i] = t->int32_data[i] != 0;
    break;
  case KILN_U8:
  case KILN_I8:
    for (int64_t i = 0; i < numel; i++) ((uint8_t *)d)[i] = (uint8_t)(uint32_t)t->int32_data[i];
    break;
  case KILN_U16:
  case KILN_I16:
  case KILN_F16:
  case KILN_BF16:
    for (int64_t i = 0; i < numel; i++) ((uint16_t *)d)[i] = (uint16_t)(uint32_t)t->int32_data[i];
    break;
  case KILN_DTYPE_INVALID: break;
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- external data -- */

typedef struct ext_ref {
  const char *location;
  int64_t offset, length; /* length -1: to the end of the file */
} ext_ref;

static kiln_status parse_i64(const char *s, int64_t *v) {
  if (!s || !*s || *s == '-' || *s == '+') return KILN_ERR_FORMAT;
  errno = 0;
  char *end;
  unsigned long long r = strtoull(s, &end, 10);
  if (errno || *end || r > (unsigned long long)INT64_MAX) return KILN_ERR_FORMAT;
  *v = (int64_t)r;
  return KILN_OK;
}

static kiln_status ext_parse(const Onnx__TensorProto *t, const char *what, ext_ref *r, char *err,
                             size_t errlen) {
  char ek[KONNX_ESC], ev[KONNX_ESC];
  *r = (ext_ref){NULL, 0, -1};
  for (size_t i = 0; i < t->n_external_data; i++) {
    const char *k = konnx_s(t->external_data[i]->key), *v = konnx_s(t->external_data[i]->value);
    kiln_status s = KILN_OK;
    if (strcmp(k, "location") == 0) r->location = v;
    else if (strcmp(k, "offset") == 0) s = parse_i64(v, &r->offset);
    else if (strcmp(k, "length") == 0) s = parse_i64(v, &r->length);
    if (s != KILN_OK) {
      snprintf(err, errlen, "%s: external_data '%s' = '%s' is not a byte count", what,
               kir_escape(k, ek, sizeof ek), kir_escape(v, ev, sizeof ev));
      return KILN_ERR_FORMAT;
    }
  }
  if (!r->location || !*r->location) {
    snprintf(err, errlen, "%s: external data without a location", what);
    return KILN_ERR_FORMAT;
  }
  return KILN_OK;
}

/* Refuses absolute paths, "..", "." and empty components. */
static kiln_status ext_check_path(const char *loc, const char *what, char *err, size_t errlen) {
  char el[KONNX_ESC];
  const char *why = NULL;
  if (loc[0] == '/') why = "is absolute";
  for (const char *p = loc; !why && *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0) why = "has an empty path component";
    else if ((n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.')) why = "has a '.' or '..' component";
    p += n + (e ? 1 : 0);
    if (e && !*p) why = "ends in '/'";
  }
  if (!why) return KILN_OK;
  snprintf(err, errlen, "%s: external data location '%s' %s (only paths inside the model's directory)",
           what, kir_escape(loc, el, sizeof el), why);
  return KILN_ERR_PATH;
}

/* Opens loc under dir, one component at a time with O_NOFOLLOW, so no symlink is used. */
static int ext_open(const char *dir, const char *loc) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char comp[KIR_MAX_NAME + 1];
  for (const char *p = loc; fd >= 0 && *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n > KIR_MAX_NAME) {
      close(fd);
      return -1;
    }
    memcpy(comp, p, n);
    comp[n] = 0;
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (e ? O_DIRECTORY : O_NONBLOCK);
    int next = openat(fd, comp, flags);
    close(fd);
    fd = next;
    p += n + (e ? 1 : 0);
  }
  return fd;
}

/* Opens and checks the external file before anything is allocated: *fd and *offset. */
static kiln_status ext_prepare(const Onnx__TensorProto *t, const konnx_extern *ext, const char *what,
                               int64_t nbytes, int *fd_out, int64_t *offset, char *err, size_t errlen) {
  char el[KONNX_ESC];
  ext_ref r;
  kiln_status s = ext_parse(t, what, &r, err, errlen);
  if (s != KILN_OK) return s;
  kir_escape(r.location, el, sizeof el);
  if (!ext || !ext->allow || !ext->dir) {
    snprintf(err, errlen, "%s: external data ('%s') is refused (import with external data allowed and a model directory)",
             what, el);
    return KILN_ERR_UNSUPPORTED;
  }
  if ((s = ext_check_path(r.location, what, err, errlen)) != KILN_OK) return s;
  int fd = ext_open(ext->dir, r.location);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    if (fd >= 0) close(fd);
    snprintf(err, errlen, "%s: external data file '%s' cannot be opened as a regular file inside the model's directory (symlinks refused)",
             what, el);
    return KILN_ERR_PATH;
  }
  int64_t len = r.length < 0 ? nbytes : r.length;
  if (len != nbytes || r.offset > sb.st_size || len > sb.st_size - r.offset) {
    close(fd);
    snprintf(err, errlen, "%s: external data '%s' offset %lld length %lld: the shape needs %lld bytes, the file has %lld",
             what, el, (long long)r.offset, (long long)len, (long long)nbytes, (long long)sb.st_size);
    return KILN_ERR_FORMAT;
  }
  *fd_out = fd;
  *offset = r.offset;
  return KILN_OK;
}

static kiln_status ext_read(int fd, int64_t offset, const char *what, kir_tensor *x, int64_t nbytes,
                            char *err, size_t errlen) {
  int64_t got = 0;
  while (got < nbytes) {
    ssize_t n = pread(fd, (uint8_t *)x->data + got, (size_t)(nbytes - got), (off_t)(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  if (got == nbytes) return KILN_OK;
  snprintf(err, errlen, "%s: short read of external data", what);
  return KILN_ERR_IO;
}

/* ---------------------------------------------------------------- decode --------- */

/* The bytes present must match the shape before anything of that size is allocated. */
static kiln_status check_inline(const Onnx__TensorProto *t, const char *what, const kir_type *ty, char *err,
                                size_t errlen) {
  int64_t numel = kir_type_numel(ty), nbytes = kir_type_nbytes(ty);
  if (t->has_raw_data) {
    if ((uint64_t)t->raw_data.len == (uint64_t)nbytes) return KILN_OK;
    snprintf(err, errlen, "%s: raw_data holds %zu bytes, dtype %s and shape need %lld", what, t->raw_data.len,
             kiln_dtype_name(ty->dtype), (long long)nbytes);
    return KILN_ERR_FORMAT;
  }
  field f = field_of(ty->dtype);
  if (f == F_NONE) {
    snprintf(err, errlen, "%s: no element type", what);
    return KILN_ERR_INTERNAL;
  }
  if ((int64_t)field_count(t, f) == numel) return KILN_OK;
  return count_mismatch(err, errlen, what, FIELD_NAME[f], field_count(t, f), numel);
}

kiln_status konnx_tensor_decode(const Onnx__TensorProto *t, const konnx_extern *ext, const char *what,
                                kir_tensor **out, char *err, size_t errlen) {
  kir_type ty;
  int fd = -1;
  int64_t offset = 0;
  *out = NULL;
  kiln_status s = decode_type(t, what, &ty, err, errlen);
  if (s != KILN_OK) return s;
  bool external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (t->segment) {
    snprintf(err, errlen, "%s: segmented tensors are not supported", what);
    return KILN_ERR_UNSUPPORTED;
  }
  s = external ? ext_prepare(t, ext, what, kir_type_nbytes(&ty), &fd, &offset, err, errlen)
               : check_inline(t, what, &ty, err, errlen);
  if (s != KILN_OK) return s;
  kir_tensor *x = kir_tensor_new(&ty);
  if (!x) {
    if (fd >= 0) close(fd);
    snprintf(err, errlen, "%s: out of memory for %lld bytes", what, (long long)kir_type_nbytes(&ty));
    return KILN_ERR_NOMEM;
  }
  int64_t numel = kir_type_numel(&ty), nbytes = kir_type_nbytes(&ty);
  if (external) s = ext_read(fd, offset, what, x, nbytes, err, errlen);
  else if (t->has_raw_data && nbytes) memcpy(x->data, t->raw_data.data, (size_t)nbytes);
  else if (!t->has_raw_data) s = decode_typed(t, what, x, numel, err, errlen);
  if (fd >= 0) close(fd);
  if (s == KILN_OK && ty.dtype == KILN_BOOL)
    for (int64_t i = 0; i < numel; i++) ((uint8_t *)x->data)[i] = ((uint8_t *)x->data)[i] != 0;
  if (s != KILN_OK) {
    kir_tensor_free(x);
    return s;
  }
  *out = x;
  return KILN_OK;
}

/* ---------------------------------------------------------------- public --------- */

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

kiln_status konnx_read_tensor(const uint8_t *buf, size_t len, kir_tensor **out, char **name,
                              char *err, size_t errlen) {
  char msg[512] = "";
  if (!out) {
    set_err(err, errlen, "konnx_read_tensor: NULL output");
    return KILN_ERR_ARGUMENT;
  }
  *out = NULL;
  if (name) *name = NULL;
  if (!buf && len) {
    set_err(err, errlen, "konnx_read_tensor: NULL buffer");
    return KILN_ERR_ARGUMENT;
  }
  konnx_unpacker u;
  ProtobufCMessage *m;
  kiln_status s = konnx_unpack(&u, buf ? buf : (const uint8_t *)"", len,
                               &onnx__tensor_proto__descriptor, &m, msg, sizeof msg);
  if (s == KILN_OK) {
    const Onnx__TensorProto *t = (const Onnx__TensorProto *)m;
    char what[KONNX_ESC + 16];
    char en[KONNX_ESC];
    snprintf(what, sizeof what, "tensor '%s'", kir_escape(konnx_s(t->name), en, sizeof en));
    s = konnx_tensor_decode(t, NULL, what, out, msg, sizeof msg);
    if (s == KILN_OK && name && !(*name = kir_strdup(konnx_s(t->name)))) {
      kir_tensor_free(*out);
      *out = NULL;
      snprintf(msg, sizeof msg, "out of memory");
      s = KILN_ERR_NOMEM;
    }
    konnx_unpack_free(&u, m);
  }
  if (s != KILN_OK) set_err(err, errlen, msg);
  return s;
}

kiln_status konnx_read_tensor_file(const char *path, kir_tensor **out, char **name, char *err,
                                   size_t errlen) {
  char msg[512] = "", ep[KONNX_ESC];
  uint8_t *buf;
  size_t len;
  if (out) *out = NULL;
  if (name) *name = NULL;
  if (!path || !out) {
    set_err(err, errlen, "konnx_read_tensor_file: NULL argument");
    return KILN_ERR_ARGUMENT;
  }
  kiln_status s = konnx_read_file(path, &buf, &len, msg, sizeof msg);
  if (s != KILN_OK) {
    set_err(err, errlen, msg);
    return s;
  }
  s = konnx_read_tensor(buf, len, out, name, msg, sizeof msg);
  kir_free(buf);
  if (s != KILN_OK && err && errlen)
    snprintf(err, errlen, "%s: %s", kir_escape(path, ep, sizeof ep), msg);
  return s;
}
