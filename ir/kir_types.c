/* kir_types.c — status and dtype names, kir_type arithmetic (element counts, byte
 * sizes, broadcasting, formatting), tensors made through the allocation hook, and
 * kir_escape for messages. Depends on libc and kir_alloc only. */
#include "kir_internal.h"

#include <stdio.h>
#include <string.h>

const char *kiln_status_name(kiln_status s) {
  switch (s) {
  case KILN_OK: return "ok";
  case KILN_ERR_ARGUMENT: return "argument";
  case KILN_ERR_FORMAT: return "format";
  case KILN_ERR_LIMIT: return "limit";
  case KILN_ERR_UNSUPPORTED: return "unsupported";
  case KILN_ERR_GRAPH: return "graph";
  case KILN_ERR_SHAPE: return "shape";
  case KILN_ERR_TYPE: return "type";
  case KILN_ERR_OVERFLOW: return "overflow";
  case KILN_ERR_PATH: return "path";
  case KILN_ERR_INTEGRITY: return "integrity";
  case KILN_ERR_FEED: return "feed";
  case KILN_ERR_NOMEM: return "out-of-memory";
  case KILN_ERR_IO: return "io";
  case KILN_ERR_STATE: return "state";
  case KILN_ERR_COMPILE: return "compile";
  case KILN_ERR_EXEC: return "exec";
  case KILN_ERR_VERSION: return "version";
  case KILN_ERR_INTERNAL: return "internal";
  }
  return "unknown";
}

const char *kiln_dtype_name(kiln_dtype t) {
  switch (t) {
  case KILN_F32: return "f32";
  case KILN_F64: return "f64";
  case KILN_I32: return "i32";
  case KILN_I64: return "i64";
  case KILN_BOOL: return "bool";
  case KILN_DTYPE_INVALID: break;
  }
  return "invalid";
}

size_t kiln_dtype_size(kiln_dtype t) {
  switch (t) {
  case KILN_F32: return 4;
  case KILN_F64: return 8;
  case KILN_I32: return 4;
  case KILN_I64: return 8;
  case KILN_BOOL: return 1;
  case KILN_DTYPE_INVALID: break;
  }
  return 0;
}

kiln_dtype kiln_dtype_parse(const char *s) {
  static const struct { const char *name; kiln_dtype t; } names[] = {
      {"f32", KILN_F32},   {"float32", KILN_F32}, {"float", KILN_F32},
      {"f64", KILN_F64},   {"float64", KILN_F64}, {"double", KILN_F64},
      {"i32", KILN_I32},   {"int32", KILN_I32},   {"int", KILN_I32},
      {"i64", KILN_I64},   {"int64", KILN_I64},   {"long", KILN_I64},
      {"bool", KILN_BOOL}, {"boolean", KILN_BOOL}};
  if (!s) return KILN_DTYPE_INVALID;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0) return names[i].t;
  return KILN_DTYPE_INVALID;
}

/* ---------------------------------------------------------------- kir_type ------ */

int64_t kir_type_numel(const kir_type *t) {
  if (!t || t->rank < 0 || t->rank > KILN_MAX_RANK) return -1;
  bool empty = false;
  for (int32_t i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return -1;
    if (t->dims[i] == 0) empty = true;
  }
  if (empty) return 0; /* even when the other dims' product would overflow */
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) {
    if (n > INT64_MAX / t->dims[i]) return -1;
    n *= t->dims[i];
  }
  return n;
}

int64_t kir_type_nbytes(const kir_type *t) {
  int64_t n = kir_type_numel(t);
  int64_t size = t ? (int64_t)kiln_dtype_size(t->dtype) : 0;
  if (n < 0 || size == 0) return -1;
  if (n > KIR_MAX_TENSOR_BYTES / size) return -1;
  return n * size;
}

bool kir_type_equal(const kir_type *a, const kir_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  if (a->rank < 0 || a->rank > KILN_MAX_RANK) return false;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

void kir_type_format(const kir_type *t, char *buf, size_t n) {
  if (!buf || n == 0) return;
  buf[0] = '\0';
  if (!t) return;
  size_t len = (size_t)snprintf(buf, n, "%s[", kiln_dtype_name(t->dtype));
  int32_t rank = t->rank < 0 ? 0 : t->rank > KILN_MAX_RANK ? KILN_MAX_RANK : t->rank;
  for (int32_t i = 0; i < rank && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, i ? ",%lld" : "%lld", (long long)t->dims[i]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

bool kir_broadcast(const kir_type *a, const kir_type *b, kir_type *out) {
  if (a->rank < 0 || a->rank > KILN_MAX_RANK || b->rank < 0 || b->rank > KILN_MAX_RANK)
    return false;
  kir_type r;
  memset(&r, 0, sizeof r);
  r.dtype = a->dtype;
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  for (int32_t i = 0; i < r.rank; i++) {
    int32_t ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da == db || db == 1) r.dims[i] = da;
    else if (da == 1) r.dims[i] = db;
    else return false;
  }
  *out = r;
  return true;
}

/* ---------------------------------------------------------------- tensors ------- */
/* One block: the kir_tensor header, then the data at the next 64-byte boundary. */
#define TENSOR_ALIGN 64

kir_tensor *kir_tensor_new(const kir_type *t) {
  if (!t || t->dtype == KILN_DTYPE_INVALID) return NULL;
  int64_t nbytes = kir_type_nbytes(t);
  if (nbytes < 0) return NULL;
  size_t total = sizeof(kir_tensor) + TENSOR_ALIGN + (size_t)nbytes;
  unsigned char *block = kir_malloc(total);
  if (!block) return NULL;
  memset(block, 0, total);
  kir_tensor *x = (kir_tensor *)block;
  uintptr_t data = (uintptr_t)(block + sizeof(kir_tensor));
  data = (data + TENSOR_ALIGN - 1) & ~(uintptr_t)(TENSOR_ALIGN - 1);
  x->type = *t;
  for (int32_t i = t->rank; i < KILN_MAX_RANK; i++) x->type.dims[i] = 0;
  x->data = (void *)data;
  return x;
}

kir_tensor *kir_tensor_clone(const kir_tensor *src) {
  if (!src) return NULL;
  kir_tensor *x = kir_tensor_new(&src->type);
  if (!x) return NULL;
  int64_t nbytes = kir_type_nbytes(&src->type);
  if (nbytes > 0 && src->data) memcpy(x->data, src->data, (size_t)nbytes);
  return x;
}

void kir_tensor_free(kir_tensor *t) { kir_free(t); }

double kir_tensor_get_f(const kir_tensor *t, int64_t i) {
  switch (t->type.dtype) {
  case KILN_F32: return ((const float *)t->data)[i];
  case KILN_F64: return ((const double *)t->data)[i];
  case KILN_I32: return ((const int32_t *)t->data)[i];
  case KILN_I64: return (double)((const int64_t *)t->data)[i];
  case KILN_BOOL: return ((const uint8_t *)t->data)[i] ? 1.0 : 0.0;
  case KILN_DTYPE_INVALID: break;
  }
  return 0.0;
}

/* Float to int64 without undefined behaviour: NaN gives 0, out of range saturates. */
static int64_t f_to_i64(double v) {
  if (v != v) return 0;
  if (v >= 9223372036854775807.0) return INT64_MAX;
  if (v <= -9223372036854775808.0) return INT64_MIN;
  return (int64_t)v;
}

int64_t kir_tensor_get_i(const kir_tensor *t, int64_t i) {
  switch (t->type.dtype) {
  case KILN_F32: return f_to_i64(((const float *)t->data)[i]);
  case KILN_F64: return f_to_i64(((const double *)t->data)[i]);
  case KILN_I32: return ((const int32_t *)t->data)[i];
  case KILN_I64: return ((const int64_t *)t->data)[i];
  case KILN_BOOL: return ((const uint8_t *)t->data)[i] ? 1 : 0;
  case KILN_DTYPE_INVALID: break;
  }
  return 0;
}

const char *kir_attr_kind_name(kir_attr_kind k) {
  switch (k) {
  case KIR_ATTR_INT: return "int";
  case KIR_ATTR_FLOAT: return "float";
  case KIR_ATTR_INTS: return "ints";
  case KIR_ATTR_FLOATS: return "floats";
  case KIR_ATTR_STRING: return "string";
  case KIR_ATTR_STRINGS: return "strings";
  case KIR_ATTR_TENSOR: return "tensor";
  }
  return "?";
}

/* ---------------------------------------------------------------- escaping ------ */
#define ESCAPE_CUT 64

const char *kir_escape(const char *s, char *buf, size_t n) {
  if (!buf || n == 0) return "";
  if (!s) s = "(null)";
  size_t o = 0, i = 0;
  for (; s[i] && i < ESCAPE_CUT; i++) {
    unsigned char c = (unsigned char)s[i];
    bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\'' && c != '\\';
    size_t need = plain ? 1 : 4;
    if (o + need + 1 > n) break;
    if (plain) buf[o++] = (char)c;
    else o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c);
  }
  buf[o] = '\0';
  if (s[i] && o + 4 <= n) memcpy(buf + o, "...", 4);
  return buf;
}
