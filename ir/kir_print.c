/* kir_print.c — writes a graph in Kiln's canonical text form (grammar: kir_text.c), which
 * kir_graph_parse_text reads back: deterministic, exact (floats print the shortest
 * decimal that reads back to the same bits), every model string escaped. Depends on
 * kir.h, libc and libm only. */
#include "kir_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A growable output buffer through kir_alloc; oom is sticky so callers check once. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (n > SIZE_MAX / 2 - b->n) { b->oom = true; return; }
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = kir_realloc(b->p, b->cap, cap);
    if (!q) { b->oom = true; return; }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* "..." with '"' and '\\' backslashed and every byte outside printable ASCII as \xNN. */
static void sb_quote(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  const char *run = s;
  for (const char *c = s; *c; c++) {
    unsigned char u = (unsigned char)*c;
    if (u >= 0x20 && u < 0x7f && u != '"' && u != '\\') continue;
    sb_put(b, run, (size_t)(c - run));
    if (u == '"' || u == '\\') sb_printf(b, "\\%c", u);
    else sb_printf(b, "\\x%02X", u);
    run = c + 1;
  }
  sb_puts(b, run);
  sb_put(b, "\"", 1);
}

static bool is_ident(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return false;
  return true;
}

/* ---------------------------------------------------------------- numbers ------- */

/* Makes a decimal that strtod reads as a float look like one ("2" -> "2.0"). */
static void mark_float(char *buf, size_t n) {
  if (strpbrk(buf, ".eEn")) return; /* "n": inf / nan */
  size_t k = strlen(buf);
  if (k + 3 <= n) memcpy(buf + k, ".0", 3);
}

/* true when the decimal's value r, rounded to dt, has exactly these bits. */
static bool reads_back(kiln_dtype dt, double r, uint64_t bits) {
  if (dt == KILN_F16) return kir_f16_from_double(r) == bits;
  if (dt == KILN_BF16) return kir_bf16_from_double(r) == bits;
  if (dt == KILN_F32) {
    float f = (float)r;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u == bits;
  }
  uint64_t u; /* f64 */
  memcpy(&u, &r, sizeof u);
  return u == bits;
}

/* A float of type dt (value v, stored bits): the shortest decimal that reads back
 * (strtod, then rounding to dt) to the same bits; the type's default quiet NaN is
 * "nan", any other NaN its bits in hex. */
static void fmt_float(char *buf, size_t n, kiln_dtype dt, double v, uint64_t bits) {
  int hex = (int)kiln_dtype_size(dt) * 2;
  uint64_t qnan = dt == KILN_F32 ? UINT64_C(0x7fc00000)
                  : dt == KILN_F16 ? 0x7e00
                  : dt == KILN_BF16 ? 0x7fc0 : UINT64_C(0x7ff8000000000000);
  if (isnan(v)) {
    if (bits == qnan) snprintf(buf, n, "nan");
    else snprintf(buf, n, "nan(0x%0*" PRIx64 ")", hex, bits);
    return;
  }
  if (isinf(v)) {
    snprintf(buf, n, v < 0 ? "-inf" : "inf");
    return;
  }
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, n, "%.*g", p, v);
    if (reads_back(dt, strtod(buf, NULL), bits)) break;
  }
  mark_float(buf, n);
}

static void fmt_f64(char *buf, size_t n, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  fmt_float(buf, n, KILN_F64, v, bits);
}

static void fmt_f32(char *buf, size_t n, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  fmt_float(buf, n, KILN_F32, (double)v, bits);
}

/* f16 / bf16 from their 16 stored bits. */
static void fmt_half(char *buf, size_t n, uint16_t bits, bool bf16) {
  fmt_float(buf, n, bf16 ? KILN_BF16 : KILN_F16,
            bf16 ? kir_bf16_to_double(bits) : kir_f16_to_double(bits), bits);
}

/* ---------------------------------------------------------------- types, tensors - */

static void sb_type(sbuf *b, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  sb_puts(b, kiln_dtype_name(dt));
  sb_put(b, "[", 1);
  for (int32_t d = 0; d < rank && d < KILN_MAX_RANK; d++)
    sb_printf(b, d ? ",%" PRId64 : "%" PRId64, dims[d]);
  sb_put(b, "]", 1);
}

static void sb_element(sbuf *b, const kir_tensor *t, int64_t i) {
  char num[64];
  switch (t->type.dtype) {
  case KILN_F32: fmt_f32(num, sizeof num, ((const float *)t->data)[i]); break;
  case KILN_F64: fmt_f64(num, sizeof num, ((const double *)t->data)[i]); break;
  case KILN_I32: snprintf(num, sizeof num, "%" PRId32, ((const int32_t *)t->data)[i]); break;
  case KILN_I64: snprintf(num, sizeof num, "%" PRId64, ((const int64_t *)t->data)[i]); break;
  case KILN_BOOL: snprintf(num, sizeof num, "%u", ((const uint8_t *)t->data)[i]); break;
  case KILN_U8: snprintf(num, sizeof num, "%u", (unsigned)((const uint8_t *)t->data)[i]); break;
  case KILN_I8: snprintf(num, sizeof num, "%d", (int)((const int8_t *)t->data)[i]); break;
  case KILN_U16: snprintf(num, sizeof num, "%u", (unsigned)((const uint16_t *)t->data)[i]); break;
  case KILN_I16: snprintf(num, sizeof num, "%d", (int)((const int16_t *)t->data)[i]); break;
  case KILN_U32: snprintf(num, sizeof num, "%" PRIu32, ((const uint32_t *)t->data)[i]); break;
  case KILN_U64: snprintf(num, sizeof num, "%" PRIu64, ((const uint64_t *)t->data)[i]); break;
  case KILN_F16: fmt_half(num, sizeof num, ((const uint16_t *)t->data)[i], false); break;
  case KILN_BF16: fmt_half(num, sizeof num, ((const uint16_t *)t->data)[i], true); break;
  case KILN_DTYPE_INVALID: snprintf(num, sizeof num, "?"); break;
  }
  sb_puts(b, num);
}

/* FNV-1a over the bytes: a content fingerprint for elided constants (never parsed). */
static uint64_t fnv1a64(const unsigned char *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(0x100000001b3);
  return h;
}

static void sb_tensor(sbuf *b, const kir_tensor *t, bool full) {
  int64_t numel = kir_type_numel(&t->type), nbytes = kir_type_nbytes(&t->type);
  bool ok = numel >= 0 && nbytes >= 0 && (t->data || nbytes == 0);
  if (!ok || (!full && numel > KIR_TEXT_ELIDE_ABOVE)) {
    sb_put(b, "<", 1);
    sb_type(b, t->type.dtype, t->type.rank, t->type.dims);
    if (ok) sb_printf(b, " fnv64:%016" PRIx64, fnv1a64(t->data, (size_t)nbytes));
    sb_put(b, ">", 1);
    return;
  }
  sb_type(b, t->type.dtype, t->type.rank, t->type.dims);
  sb_put(b, "{", 1);
  for (int64_t i = 0; i < numel && !b->oom; i++) {
    if (i) sb_put(b, ", ", 2);
    sb_element(b, t, i);
  }
  sb_put(b, "}", 1);
}

/* ---------------------------------------------------------------- attributes ---- */


static void sb_list_open(sbuf *b, const kir_node *n, const kir_attr *a, int32_t count) {
  if (count == 0 && kir_schema_kind(n->op, a->name) != (int)a->kind)
    sb_puts(b, kir_attr_kind_name(a->kind)); /* "ints[]": the kind cannot be inferred */
  sb_put(b, "[", 1);
}

static void sb_attr_value(sbuf *b, const kir_node *n, const kir_attr *a, bool full) {
  char num[64];
  switch (a->kind) {
  case KIR_ATTR_INT:
    if (!strcmp(a->name, "dtype") && a->u.i > 0 && a->u.i < KILN_DTYPE_COUNT)
      sb_puts(b, kiln_dtype_name((kiln_dtype)a->u.i));
    else
      sb_printf(b, "%" PRId64, a->u.i);
    return;
  case KIR_ATTR_FLOAT: fmt_f64(num, sizeof num, a->u.f); sb_puts(b, num); return;
  case KIR_ATTR_INTS:
    sb_list_open(b, n, a, a->u.ints.n);
    for (int32_t i = 0; i < a->u.ints.n; i++) sb_printf(b, i ? ", %" PRId64 : "%" PRId64, a->u.ints.v[i]);
    sb_put(b, "]", 1);
    return;
  case KIR_ATTR_FLOATS:
    sb_list_open(b, n, a, a->u.floats.n);
    for (int32_t i = 0; i < a->u.floats.n; i++) {
      fmt_f64(num, sizeof num, a->u.floats.v[i]);
      if (i) sb_put(b, ", ", 2);
      sb_puts(b, num);
    }
    sb_put(b, "]", 1);
    return;
  case KIR_ATTR_STRING: sb_quote(b, a->u.s); return;
  case KIR_ATTR_STRINGS:
    sb_list_open(b, n, a, a->u.strings.n);
    for (int32_t i = 0; i < a->u.strings.n; i++) {
      if (i) sb_put(b, ", ", 2);
      sb_quote(b, a->u.strings.v[i]);
    }
    sb_put(b, "]", 1);
    return;
  case KIR_ATTR_TENSOR: sb_tensor(b, a->u.t, full); return;
  }
  sb_put(b, "?", 1);
}

static void sb_attrs(sbuf *b, const kir_node *n, bool full) {
  if (n->n_attrs <= 0) return;
  sb_puts(b, " {");
  for (int32_t i = 0; i < n->n_attrs; i++) {
    const kir_attr *a = &n->attrs[i];
    if (i) sb_put(b, ", ", 2);
    if (is_ident(a->name)) sb_puts(b, a->name);
    else sb_quote(b, a->name);
    sb_puts(b, " = ");
    sb_attr_value(b, n, a, full);
  }
  sb_put(b, "}", 1);
}

/* ---------------------------------------------------------------- nodes --------- */

static void sb_node(sbuf *b, const kir_node *n, int32_t id, bool full) {
  const kir_op_info *info = kir_op_get((int32_t)n->op);
  sb_printf(b, "%%%d ", (int)id);
  sb_quote(b, n->name ? n->name : "");
  sb_printf(b, " = %s(", info ? info->name : "invalid");
  for (int32_t k = 0; k < n->n_inputs; k++) sb_printf(b, k ? ", %%%d" : "%%%d", (int)n->inputs[k]);
  sb_put(b, ")", 1);
  sb_attrs(b, n, full);
  sb_puts(b, " : ");
  if (kir_op_has(n->op, KIR_F_NO_OUTPUT)) sb_puts(b, "()");
  else if (n->type.dtype <= KILN_DTYPE_INVALID || n->type.dtype >= KILN_DTYPE_COUNT) sb_puts(b, "?");
  else sb_type(b, n->type.dtype, n->type.rank, n->type.dims);
  if (n->device && n->device[0]) { sb_puts(b, " @ "); sb_quote(b, n->device); }
  if (n->assigned_device && n->assigned_device[0]) {
    sb_puts(b, " assigned ");
    sb_quote(b, n->assigned_device);
  }
  if (n->placement_reason && n->placement_reason[0]) {
    sb_puts(b, " reason ");
    sb_quote(b, n->placement_reason);
  }
  sb_put(b, "\n", 1);
}

static void sb_header(sbuf *b) {
  sb_printf(b, "%s %d.%d\n", KIR_TEXT_HEADER, KIR_FORMAT_MAJOR, KIR_FORMAT_MINOR);
}

kiln_status kir_graph_print_text(const kir_graph *g, FILE *out, const kir_print_options *opt) {
  if (!g || !out) return KILN_ERR_ARGUMENT;
  bool full = opt && opt->full_constants;
  sbuf b = {0};
  sb_header(&b);
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i <= g->n_nodes && st == KILN_OK; i++) {
    if (i > 0) sb_node(&b, g->nodes[i - 1], i - 1, full);
    if (b.oom) st = KILN_ERR_NOMEM;
    else if (b.n && fwrite(b.p, 1, b.n, out) != b.n) st = KILN_ERR_IO;
    b.n = 0;
  }
  kir_free(b.p);
  return st;
}

kiln_status kir_graph_to_text(kir_graph *g, char **out, size_t *len, bool full_constants) {
  if (!g || !out || !len) return g ? kir_seterr(g, KILN_ERR_ARGUMENT, "to_text: NULL output") : KILN_ERR_ARGUMENT;
  *out = NULL;
  *len = 0;
  sbuf b = {0};
  sb_header(&b);
  for (int32_t i = 0; i < g->n_nodes && !b.oom; i++) sb_node(&b, g->nodes[i], i, full_constants);
  if (b.oom) {
    kir_free(b.p);
    return kir_seterr(g, KILN_ERR_NOMEM, "out of memory while printing the graph as text");
  }
  *out = b.p;
  *len = b.n;
  return KILN_OK;
}

void kir_graph_print(const kir_graph *g, FILE *out) {
  kir_print_options opt = {.full_constants = false};
  (void)kir_graph_print_text(g, out, &opt);
}
