/* kir_types.c — status and dtype names, kir_type arithmetic (element counts, byte
 * sizes, broadcasting, formatting), tensors made through the allocation hook, and
 * kir_escape for messages. Depends on libc and kir_alloc only. */
#include "kir_internal.h"

#include <math.h>
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
  case KILN_ERR_DEVICE: return "device";
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
  case KILN_U8: return "u8";
  case KILN_I8: return "i8";
  case KILN_U16: return "u16";
  case KILN_I16: return "i16";
  case KILN_U32: return "u32";
  case KILN_U64: return "u64";
  case KILN_F16: return "f16";
  case KILN_BF16: return "bf16";
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
  case KILN_U8: case KILN_I8: return 1;
  case KILN_U16: case KILN_I16: case KILN_F16: case KILN_BF16: return 2;
  case KILN_U32: return 4;
  case KILN_U64: return 8;
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
      {"bool", KILN_BOOL}, {"boolean", KILN_BOOL},
      {"u8", KILN_U8},     {"uint8", KILN_U8},    {"i8", KILN_I8},     {"int8", KILN_I8},
      {"u16", KILN_U16},   {"uint16", KILN_U16},  {"i16", KILN_I16},   {"int16", KILN_I16},
      {"u32", KILN_U32},   {"uint32", KILN_U32},  {"u64", KILN_U64},   {"uint64", KILN_U64},
      {"f16", KILN_F16},   {"float16", KILN_F16}, {"half", KILN_F16},
      {"bf16", KILN_BF16}, {"bfloat16", KILN_BF16}};
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

/* ---------------------------------------------------------------- dtype families */

bool kir_dtype_is_float(kiln_dtype t) {
  return t == KILN_F32 || t == KILN_F64 || t == KILN_F16 || t == KILN_BF16;
}

bool kir_dtype_is_unsigned(kiln_dtype t) {
  return t == KILN_U8 || t == KILN_U16 || t == KILN_U32 || t == KILN_U64;
}

bool kir_dtype_is_int(kiln_dtype t) {
  return t == KILN_I8 || t == KILN_I16 || t == KILN_I32 || t == KILN_I64 ||
         kir_dtype_is_unsigned(t);
}

int kir_dtype_bits(kiln_dtype t) { return 8 * (int)kiln_dtype_size(t); }

/* uint64 -> int64 two's complement, without implementation-defined conversions. */
static int64_t as_signed(uint64_t u) {
  return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

int64_t kir_int_wrap(kiln_dtype t, int64_t v) {
  if (!kir_dtype_is_int(t)) return v;
  int bits = kir_dtype_bits(t);
  if (bits >= 64) return v;
  uint64_t m = ((uint64_t)1 << bits) - 1, u = (uint64_t)v & m;
  if (!kir_dtype_is_unsigned(t) && (u >> (bits - 1))) u |= ~m; /* sign-extend */
  return as_signed(u);
}

/* ---------------------------------------------------------------- half floats --- */
/* A binary format with `p` stored fraction bits and exponent bias `bias` (binary16:
 * 10, 15; bfloat16: 7, 127), rounded from double in one step: the magnitude is scaled
 * by the quantum of its binade (an exact power-of-two scaling), rounded to an integer
 * to nearest even, and encoded; a carry into the next binade or past the largest
 * exponent falls out of the encoding (all-ones exponent = infinity). */
static uint16_t half_from_double(double v, int p, int bias) {
  uint16_t sign = signbit(v) ? (uint16_t)0x8000 : 0;
  int emax_field = 2 * bias + 1; /* all-ones exponent field */
  if (isnan(v)) return (uint16_t)(sign | (emax_field << p) | (1u << (p - 1)));
  double a = fabs(v);
  if (a == 0) return sign;
  if (isinf(a)) return (uint16_t)(sign | (emax_field << p));
  int e;
  frexp(a, &e);
  e -= 1;                           /* a in [2^e, 2^(e+1)) */
  int emin = 1 - bias;
  if (e < emin) e = emin;           /* subnormal: the quantum of the smallest binade */
  if (e > bias + 1) return (uint16_t)(sign | (emax_field << p)); /* far beyond max */
  double m = ldexp(a, p - e);       /* exact: < 2^(p+1), integer part is the significand */
  double fl = floor(m), frac = m - fl;
  if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0)) fl += 1;
  uint32_t r = (uint32_t)fl;        /* <= 2^(p+1) */
  uint32_t bits;
  if (r < (1u << p)) bits = r;      /* still subnormal (only when e == emin) */
  else bits = ((uint32_t)(e - emin + 1) << p) + (r - (1u << p)); /* carry adds to exponent */
  if (bits >= (uint32_t)emax_field << p) bits = (uint32_t)emax_field << p; /* overflow: inf */
  return (uint16_t)(sign | bits);
}

static double half_to_double(uint16_t h, int p, int bias) {
  int ef = (h >> p) & (2 * bias + 1);
  uint32_t f = h & ((1u << p) - 1);
  double mag;
  if (ef == 2 * bias + 1) mag = f ? NAN : INFINITY;
  else if (ef == 0) mag = ldexp((double)f, 1 - bias - p);
  else mag = ldexp((double)(f | (1u << p)), ef - bias - p);
  return (h & 0x8000) ? -mag : mag;
}

uint16_t kir_f16_from_double(double v) { return half_from_double(v, 10, 15); }
double kir_f16_to_double(uint16_t h) { return half_to_double(h, 10, 15); }
uint16_t kir_bf16_from_double(double v) { return half_from_double(v, 7, 127); }
double kir_bf16_to_double(uint16_t h) { return half_to_double(h, 7, 127); }

/* An integer magnitude as a double rounded to odd (the low kept bit set when bits are
 * lost): rounding that double again to a format of <= 51 fraction bits gives the
 * correctly rounded result, so an integer reaches f16/bf16 without double rounding. */
static double u64_to_double_odd(uint64_t m) {
  if (m < ((uint64_t)1 << 53)) return (double)m;
  int len = 64;
  while (!(m >> (len - 1))) len--;
  int s = len - 53;
  uint64_t lost = m & (((uint64_t)1 << s) - 1);
  m = (m >> s) << s;
  if (lost) m |= (uint64_t)1 << s;
  return (double)m; /* exact: 53 significant bits */
}

static double i64_to_double_odd(int64_t v) {
  uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  double d = u64_to_double_odd(m);
  return v < 0 ? -d : d;
}

/* ---------------------------------------------------------------- elements ------ */

double kir_tensor_get_f(const kir_tensor *t, int64_t i) {
  switch (t->type.dtype) {
  case KILN_F32: return ((const float *)t->data)[i];
  case KILN_F64: return ((const double *)t->data)[i];
  case KILN_I32: return ((const int32_t *)t->data)[i];
  case KILN_I64: return (double)((const int64_t *)t->data)[i];
  case KILN_BOOL: return ((const uint8_t *)t->data)[i] ? 1.0 : 0.0;
  case KILN_U8: return ((const uint8_t *)t->data)[i];
  case KILN_I8: return ((const int8_t *)t->data)[i];
  case KILN_U16: return ((const uint16_t *)t->data)[i];
  case KILN_I16: return ((const int16_t *)t->data)[i];
  case KILN_U32: return ((const uint32_t *)t->data)[i];
  case KILN_U64: return (double)((const uint64_t *)t->data)[i];
  case KILN_F16: return kir_f16_to_double(((const uint16_t *)t->data)[i]);
  case KILN_BF16: return kir_bf16_to_double(((const uint16_t *)t->data)[i]);
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
  case KILN_U8: return ((const uint8_t *)t->data)[i];
  case KILN_I8: return ((const int8_t *)t->data)[i];
  case KILN_U16: return ((const uint16_t *)t->data)[i];
  case KILN_I16: return ((const int16_t *)t->data)[i];
  case KILN_U32: return ((const uint32_t *)t->data)[i];
  case KILN_U64: return as_signed(((const uint64_t *)t->data)[i]);
  case KILN_F16: return f_to_i64(kir_f16_to_double(((const uint16_t *)t->data)[i]));
  case KILN_BF16: return f_to_i64(kir_bf16_to_double(((const uint16_t *)t->data)[i]));
  case KILN_DTYPE_INVALID: break;
  }
  return 0;
}

/* Stores the low bits of u (already wrapped or not: the store truncates). */
static void store_bits(kir_tensor *t, int64_t i, uint64_t u) {
  switch (t->type.dtype) {
  case KILN_U8: case KILN_I8: ((uint8_t *)t->data)[i] = (uint8_t)u; break;
  case KILN_U16: case KILN_I16: ((uint16_t *)t->data)[i] = (uint16_t)u; break;
  case KILN_U32: case KILN_I32: ((uint32_t *)t->data)[i] = (uint32_t)u; break;
  case KILN_U64: case KILN_I64: ((uint64_t *)t->data)[i] = u; break;
  case KILN_BOOL: ((uint8_t *)t->data)[i] = u != 0; break;
  case KILN_F32: case KILN_F64: case KILN_F16: case KILN_BF16: case KILN_DTYPE_INVALID: break;
  }
}

/* Saturating double -> integer dtype t (NaN -> 0), as a bit pattern. */
static uint64_t f_to_int_bits(double v, kiln_dtype t) {
  if (isnan(v)) return 0;
  int bits = kir_dtype_bits(t);
  v = trunc(v);
  if (kir_dtype_is_unsigned(t)) {
    double hi = ldexp(1.0, bits); /* 2^bits, exact */
    if (v <= 0) return 0;
    if (v >= hi) return bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    return (uint64_t)v;
  }
  double lim = ldexp(1.0, bits - 1);
  if (v >= lim) return bits == 64 ? (uint64_t)INT64_MAX : ((uint64_t)1 << (bits - 1)) - 1;
  if (v <= -lim) return bits == 64 ? (uint64_t)1 << 63 : (uint64_t)(-(int64_t)lim);
  return (uint64_t)(int64_t)v;
}

void kir_tensor_set_f(kir_tensor *t, int64_t i, double v) {
  switch (t->type.dtype) {
  case KILN_F32: ((float *)t->data)[i] = (float)v; break;
  case KILN_F64: ((double *)t->data)[i] = v; break;
  case KILN_F16: ((uint16_t *)t->data)[i] = kir_f16_from_double(v); break;
  case KILN_BF16: ((uint16_t *)t->data)[i] = kir_bf16_from_double(v); break;
  case KILN_BOOL: ((uint8_t *)t->data)[i] = v != 0; break; /* NaN -> 1 */
  case KILN_I32: case KILN_I64: case KILN_U8: case KILN_I8: case KILN_U16: case KILN_I16:
  case KILN_U32: case KILN_U64:
    store_bits(t, i, f_to_int_bits(v, t->type.dtype));
    break;
  case KILN_DTYPE_INVALID: break;
  }
}

void kir_tensor_set_i(kir_tensor *t, int64_t i, int64_t v) {
  switch (t->type.dtype) {
  case KILN_F32: ((float *)t->data)[i] = (float)v; break;
  case KILN_F64: ((double *)t->data)[i] = (double)v; break;
  case KILN_F16: ((uint16_t *)t->data)[i] = kir_f16_from_double(i64_to_double_odd(v)); break;
  case KILN_BF16: ((uint16_t *)t->data)[i] = kir_bf16_from_double(i64_to_double_odd(v)); break;
  case KILN_BOOL: case KILN_I32: case KILN_I64: case KILN_U8: case KILN_I8: case KILN_U16:
  case KILN_I16: case KILN_U32: case KILN_U64:
    store_bits(t, i, (uint64_t)v);
    break;
  case KILN_DTYPE_INVALID: break;
  }
}

void kir_tensor_set_u(kir_tensor *t, int64_t i, uint64_t v) {
  switch (t->type.dtype) {
  case KILN_F32: ((float *)t->data)[i] = (float)v; break;
  case KILN_F64: ((double *)t->data)[i] = (double)v; break;
  case KILN_F16: ((uint16_t *)t->data)[i] = kir_f16_from_double(u64_to_double_odd(v)); break;
  case KILN_BF16: ((uint16_t *)t->data)[i] = kir_bf16_from_double(u64_to_double_odd(v)); break;
  case KILN_BOOL: case KILN_I32: case KILN_I64: case KILN_U8: case KILN_I8: case KILN_U16:
  case KILN_I16: case KILN_U32: case KILN_U64:
    store_bits(t, i, v);
    break;
  case KILN_DTYPE_INVALID: break;
  }
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
