/* kir_text.c — reads Kiln's canonical text form (written by kir_print.c) back into a
 * graph: a hand-written lexer and a loop-driven descent parser (no recursion) for
 * untrusted input; every error names file:line:column and what was expected. Depends on
 * kir.h and libc only.
 *
 * Grammar (one node a line; '#' starts a comment outside strings; blank lines ignored):
 *   file    := header NL { [node] NL }
 *   header  := "kiln.graph" MAJOR "." MINOR             major must be 1
 *   node    := ID STRING "=" OP "(" [ID {"," ID}] ")" [attrs] [":" type]
 *              ["@" STRING] ["assigned" STRING] ["reason" STRING]
 *   ID      := "%" digits        a node's label; labels strictly increase down the file,
 *                                inputs name earlier labels (the printer writes %0, %1, ...)
 *   attrs   := "{" [attr {"," attr}] "}"
 *   attr    := (IDENT | STRING) "=" value
 *   value   := INT | FLOAT | STRING | DTYPE | list | tensor
 *   list    := ["ints" | "floats" | "strings"] "[" [scalar {"," scalar}] "]"
 *   tensor  := DTYPE dims "{" [number {"," number}] "}"      every element, row-major
 *            | "<" DTYPE dims HASH ">"          an elided constant: refused here
 *   dims    := "[" [INT {"," INT}] "]"
 *   type    := DTYPE dims | "(" ")" | "?"     "()" = no output, "?" = not stated
 *   DTYPE   := f32 | f64 | i32 | i64 | bool | u8 | i8 | u16 | i16 | u32 | u64 | f16 | bf16
 *   STRING  := '"' {printable ASCII except '"' '\' | '\"' | '\\' | '\xNN'} '"'
 *   INT     := ["-"] digits
 *   FLOAT   := decimal with "." or an exponent | inf | -inf | nan | nan(0xBITS)
 * A float is printed as the shortest decimal that reads back to the same bits; a NaN
 * other than the default quiet NaN carries its bits (f32: 8 hex digits, f64: 16, f16 and
 * bf16: 4). An f16/bf16 element is read as a double and rounded to the format (nearest
 * even); the printer writes the shortest decimal that comes back to the same bits. u64
 * elements may exceed the int64 range (up to 2^64 - 1); nothing else may.
 * Conveniences for hand-written text (the printer writes the canonical spelling):
 * "dtype = f32" is the dtype's number; an INT where the op's schema wants a float (or
 * floats) is that float when exact; "[]" takes the schema's list kind; ": type" may be
 * left out. After parsing, shapes are inferred and the graph verified; a stated type
 * must equal the inferred one. */
#include "kir_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEXT_MAX_NUMBER 64        /* characters in one number */
#define TEXT_MAX_LIST (1 << 24)   /* elements in one list attribute */
#define TEXT_SNIFF 4096           /* bytes kir_graph_load_any looks at */

typedef enum tkind { T_EOF, T_NL, T_IDENT, T_NUM, T_STRING, T_ID, T_PUNCT } tkind;

typedef struct token {
  tkind kind;
  char punct;
  int64_t line, col;
  const char *start; /* raw text */
  size_t len;
  int64_t id; /* T_ID */
} token;

typedef struct node_info {
  int64_t label, line, col, tline, tcol;
  int stated; /* 0: not stated, 1: type, 2: no output */
  kir_type type;
} node_info;

typedef struct list_item {
  int64_t i;
  double f;
  bool is_float;
  const char *s;
} list_item;

typedef struct parser {
  const char *src, *file;
  size_t len, pos;
  int64_t line, col;
  kir_graph *g;
  token tok;
  char *str; /* the decoded T_STRING */
  size_t str_len, str_cap;
  char *name;
  int32_t name_cap;
  int32_t *inputs;
  int32_t in_cap;
  node_info *nodes;
  int32_t node_cap;
  list_item *items;
  int32_t item_cap;
  kiln_status st;
  char err[512];
} parser;

#define TRY(x)                          \
  do {                                  \
    kiln_status try_s_ = (x);           \
    if (try_s_ != KILN_OK) return try_s_; \
  } while (0)

/* ---------------------------------------------------------------- errors -------- */

static kiln_status perr_at(parser *p, int64_t line, int64_t col, kiln_status s,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static kiln_status perr_at(parser *p, int64_t line, int64_t col, kiln_status s,
                           const char *fmt, ...) {
  char msg[400], esc[KIR_ESC_BUF];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(p->err, sizeof p->err, "%s:%lld:%lld: %s", kir_escape(p->file, esc, sizeof esc),
           (long long)line, (long long)col, msg);
  p->st = s;
  return s;
}

/* What the current token is, for "found ..." (model text escaped and cut). */
static const char *describe(const token *t, char *buf, size_t n) {
  char raw[80], esc[KIR_ESC_BUF];
  switch (t->kind) {
  case T_EOF: return "end of file";
  case T_NL: return "end of line";
  case T_STRING: return "a string";
  case T_PUNCT: snprintf(buf, n, "'%c'", t->punct); return buf;
  case T_IDENT: case T_NUM: case T_ID: break;
  }
  size_t k = t->len < sizeof raw - 1 ? t->len : sizeof raw - 1;
  memcpy(raw, t->start, k);
  raw[k] = '\0';
  snprintf(buf, n, "%s'%s'", t->kind == T_NUM ? "number " : "", kir_escape(raw, esc, sizeof esc));
  return buf;
}

static kiln_status expected(parser *p, const char *what) {
  char d[KIR_ESC_BUF + 16];
  return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT, "expected %s, found %s", what,
                 describe(&p->tok, d, sizeof d));
}

static kiln_status nomem(parser *p) {
  return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_NOMEM, "out of memory while parsing");
}

/* An error the graph reported (g->error), placed at the current token. */
static kiln_status graph_err(parser *p, kiln_status s, int64_t line, int64_t col) {
  return perr_at(p, line, col, s, "%s", p->g->error);
}

static bool grow(parser *p, void **arr, int32_t *cap, int32_t need, size_t elem) {
  if (need <= *cap) return true;
  int32_t c = *cap ? *cap : 16;
  while (c < need) c = c > INT32_MAX / 2 ? need : c * 2;
  void *q = kir_realloc(*arr, (size_t)*cap * elem, (size_t)c * elem);
  if (!q) {
    nomem(p);
    return false;
  }
  *arr = q;
  *cap = c;
  return true;
}

/* ---------------------------------------------------------------- lexer --------- */

static int peekc(const parser *p, size_t k) {
  return p->pos + k < p->len ? (unsigned char)p->src[p->pos + k] : -1;
}

static void adv(parser *p, size_t k) {
  p->pos += k;
  p->col += (int64_t)k;
}

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static kiln_status str_push(parser *p, char c) {
  if (p->str_len >= KIR_MAX_NAME)
    return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_LIMIT,
                   "string longer than %d bytes", KIR_MAX_NAME);
  if (p->str_len + 1 >= p->str_cap) {
    size_t cap = p->str_cap ? p->str_cap * 2 : 64;
    char *q = kir_realloc(p->str, p->str_cap, cap);
    if (!q) return nomem(p);
    p->str = q;
    p->str_cap = cap;
  }
  p->str[p->str_len++] = c;
  p->str[p->str_len] = '\0';
  return KILN_OK;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One escape after a backslash; the decoded byte in *out. */
static kiln_status lex_escape(parser *p, char *out) {
  int c = peekc(p, 1);
  if (c == '"' || c == '\\') {
    *out = (char)c;
    adv(p, 2);
    return KILN_OK;
  }
  int h1 = c == 'x' ? hexval(peekc(p, 2)) : -1, h2 = h1 >= 0 ? hexval(peekc(p, 3)) : -1;
  if (h2 < 0)
    return perr_at(p, p->line, p->col, KILN_ERR_FORMAT,
                   "bad escape in string (use \\\", \\\\ or \\xNN)");
  if (h1 == 0 && h2 == 0)
    return perr_at(p, p->line, p->col, KILN_ERR_FORMAT, "NUL byte (\\x00) in string");
  *out = (char)(h1 * 16 + h2);
  adv(p, 4);
  return KILN_OK;
}

static kiln_status lex_string(parser *p) {
  p->str_len = 0;
  TRY(str_push(p, 'x')); /* makes sure the buffer exists, even for "" */
  p->str_len = 0;
  p->str[0] = '\0';
  adv(p, 1);
  for (;;) {
    int c = peekc(p, 0);
    if (c < 0 || c == '\n')
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT, "unterminated string");
    if (c == '"') break;
    char out = (char)c;
    if (c == '\\') {
      TRY(lex_escape(p, &out));
    } else if (c < 0x20 || c == 0x7f) {
      return perr_at(p, p->line, p->col, KILN_ERR_FORMAT,
                     "raw control byte 0x%02X in string (write \\x%02X)", c, c);
    } else {
      adv(p, 1);
    }
    TRY(str_push(p, out));
  }
  adv(p, 1);
  p->tok.kind = T_STRING;
  return KILN_OK;
}

static kiln_status lex_number(parser *p) {
  size_t k = (peekc(p, 0) == '-' || peekc(p, 0) == '+') ? 1 : 0;
  bool hex = peekc(p, k) == '0' && (peekc(p, k + 1) == 'x' || peekc(p, k + 1) == 'X');
  for (;; k++) {
    int c = peekc(p, k), prev = k ? peekc(p, k - 1) : 0;
    bool sign = (c == '-' || c == '+') && !hex && (prev == 'e' || prev == 'E');
    if (!(is_alpha(c) || is_digit(c) || c == '.' || sign)) break;
    if (k >= TEXT_MAX_NUMBER)
      return perr_at(p, p->line, p->col, KILN_ERR_LIMIT, "number longer than %d characters",
                     TEXT_MAX_NUMBER);
  }
  p->tok.kind = T_NUM;
  adv(p, k);
  return KILN_OK;
}

static kiln_status lex_ident(parser *p) {
  size_t k = 0;
  while (is_alpha(peekc(p, k)) || is_digit(peekc(p, k)) || peekc(p, k) == '.') {
    if (++k > KIR_MAX_NAME)
      return perr_at(p, p->line, p->col, KILN_ERR_LIMIT, "identifier longer than %d bytes",
                     KIR_MAX_NAME);
  }
  p->tok.kind = T_IDENT;
  adv(p, k);
  return KILN_OK;
}

static kiln_status lex_id(parser *p) {
  size_t k = 1;
  int64_t v = 0;
  while (is_digit(peekc(p, k))) {
    v = v * 10 + (peekc(p, k) - '0');
    if (v > INT32_MAX)
      return perr_at(p, p->line, p->col, KILN_ERR_LIMIT, "node id above %d", INT32_MAX);
    k++;
  }
  if (k == 1) return perr_at(p, p->line, p->col, KILN_ERR_FORMAT, "expected digits after '%%'");
  p->tok.kind = T_ID;
  p->tok.id = v;
  adv(p, k);
  return KILN_OK;
}

static void skip_blanks(parser *p) {
  for (;;) {
    int c = peekc(p, 0);
    if (c == ' ' || c == '\t' || c == '\r') {
      adv(p, 1);
    } else if (c == '#') {
      while (peekc(p, 0) >= 0 && peekc(p, 0) != '\n') adv(p, 1);
    } else {
      return;
    }
  }
}

static kiln_status next(parser *p) {
  skip_blanks(p);
  token *t = &p->tok;
  t->line = p->line;
  t->col = p->col;
  t->start = p->src + p->pos;
  size_t start = p->pos;
  int c = peekc(p, 0), c1 = peekc(p, 1);
  kiln_status s = KILN_OK;
  if (c < 0) {
    t->kind = T_EOF;
  } else if (c == '\n') {
    t->kind = T_NL;
    p->pos++;
    p->line++;
    p->col = 1;
  } else if (c == '"') {
    s = lex_string(p);
  } else if (c == '%') {
    s = lex_id(p);
  } else if (is_digit(c) || ((c == '-' || c == '+') && (is_digit(c1) || c1 == 'i' || c1 == 'n' || c1 == '.'))) {
    s = lex_number(p);
  } else if (is_alpha(c)) {
    s = lex_ident(p);
  } else if (strchr("=(){}[],:@<>?", c)) {
    t->kind = T_PUNCT;
    t->punct = (char)c;
    adv(p, 1);
  } else if (c >= 0x21 && c < 0x7f) {
    s = perr_at(p, p->line, p->col, KILN_ERR_FORMAT, "unexpected character '%c'", c);
  } else {
    s = perr_at(p, p->line, p->col, KILN_ERR_FORMAT, "unexpected byte 0x%02X", c);
  }
  t->len = p->pos - start;
  return s;
}

static bool is_punct(const parser *p, char c) { return p->tok.kind == T_PUNCT && p->tok.punct == c; }

static bool is_word(const parser *p, const char *w) {
  return p->tok.kind == T_IDENT && p->tok.len == strlen(w) && !memcmp(p->tok.start, w, p->tok.len);
}

static kiln_status expect_punct(parser *p, char c, const char *what) {
  if (!is_punct(p, c)) return expected(p, what);
  return next(p);
}

/* ---------------------------------------------------------------- numbers ------- */

/* N_BIGUINT: an integer in (INT64_MAX, UINT64_MAX], in bits; only u64 elements take it. */
typedef enum nkind { N_INT, N_FLOAT, N_NANBITS, N_BIGUINT } nkind;
typedef struct number {
  nkind kind;
  int64_t i;
  double f;
  uint64_t bits;
  int64_t line, col;
} number;

static bool raw_eq(const token *t, const char *s) {
  return t->len == strlen(s) && !memcmp(t->start, s, t->len);
}

/* *big: a positive value above INT64_MAX (up to UINT64_MAX), left in *ubig. */
static kiln_status parse_int_text(parser *p, const char *s, int64_t *out, bool *big,
                                  uint64_t *ubig) {
  bool neg = *s == '-';
  if (*s == '-' || *s == '+') s++;
  uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : UINT64_MAX;
  if (!*s) return expected(p, "a number");
  for (; *s; s++) {
    if (!is_digit((unsigned char)*s)) return expected(p, "a number");
    unsigned d = (unsigned)(*s - '0');
    if (v > (lim - d) / 10)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_OVERFLOW, "integer out of int64 range");
    v = v * 10 + d;
  }
  *big = !neg && v > (uint64_t)INT64_MAX;
  *ubig = v;
  if (*big) return KILN_OK;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return KILN_OK;
}

/* A decimal float: [sign] digits ["." digits] [e [sign] digits], at least one digit. */
static bool decimal_float_ok(const char *s) {
  if (*s == '-' || *s == '+') s++;
  int digits = 0;
  while (is_digit((unsigned char)*s)) s++, digits++;
  if (*s == '.') for (s++; is_digit((unsigned char)*s); s++) digits++;
  if (!digits) return false;
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '-' || *s == '+') s++;
    if (!is_digit((unsigned char)*s)) return false;
    while (is_digit((unsigned char)*s)) s++;
  }
  return *s == '\0';
}

/* nan(0xBITS) after "nan" was read: the current token is "(". */
static kiln_status parse_nan_bits(parser *p, number *n) {
  TRY(next(p));
  const token *t = &p->tok;
  if (t->kind != T_NUM || t->len < 3 || t->len > 18 || t->start[0] != '0' ||
      (t->start[1] != 'x' && t->start[1] != 'X'))
    return expected(p, "NaN bits as 0x followed by up to 16 hex digits");
  uint64_t v = 0;
  for (size_t k = 2; k < t->len; k++) {
    int h = hexval((unsigned char)t->start[k]);
    if (h < 0) return expected(p, "hex digits");
    v = v * 16 + (uint64_t)h;
  }
  n->kind = N_NANBITS;
  n->bits = v;
  TRY(next(p));
  return expect_punct(p, ')', "')' after NaN bits");
}

static kiln_status parse_number(parser *p, number *n) {
  const token *t = &p->tok;
  n->line = t->line;
  n->col = t->col;
  char buf[TEXT_MAX_NUMBER + 2];
  if (t->kind != T_NUM && !(t->kind == T_IDENT && (raw_eq(t, "inf") || raw_eq(t, "nan"))))
    return expected(p, "a number");
  memcpy(buf, t->start, t->len);
  buf[t->len] = '\0';
  const char *body = buf + (buf[0] == '-' || buf[0] == '+');
  n->kind = N_FLOAT;
  if (!strcmp(body, "inf")) {
    n->f = buf[0] == '-' ? -INFINITY : INFINITY;
  } else if (!strcmp(body, "nan")) {
    n->f = buf[0] == '-' ? -NAN : NAN;
    TRY(next(p));
    return is_punct(p, '(') && buf[0] != '-' ? parse_nan_bits(p, n) : KILN_OK;
  } else if (strpbrk(body, ".eE") && !strpbrk(body, "xX")) {
    if (!decimal_float_ok(buf)) return expected(p, "a number");
    n->f = strtod(buf, NULL);
    if (isinf(n->f))
      return perr_at(p, t->line, t->col, KILN_ERR_OVERFLOW, "float '%s' out of range", buf);
  } else {
    bool big = false;
    n->kind = N_INT;
    TRY(parse_int_text(p, buf, &n->i, &big, &n->bits));
    if (big) n->kind = N_BIGUINT;
  }
  return next(p);
}

static kiln_status num_err(parser *p, const number *n, const char *what) {
  return perr_at(p, n->line, n->col, KILN_ERR_FORMAT, "%s", what);
}

static kiln_status big_err(parser *p, const number *n) {
  return perr_at(p, n->line, n->col, KILN_ERR_OVERFLOW, "integer out of int64 range");
}

static kiln_status num_to_f64(parser *p, const number *n, double *out) {
  switch (n->kind) {
  case N_BIGUINT: return big_err(p, n);
  case N_FLOAT: *out = n->f; return KILN_OK;
  case N_INT:
    if (n->i > (INT64_C(1) << 53) || n->i < -(INT64_C(1) << 53))
      return num_err(p, n, "integer not exact as a float (write it as a float)");
    *out = (double)n->i;
    return KILN_OK;
  case N_NANBITS:
    if ((n->bits & UINT64_C(0x7ff0000000000000)) != UINT64_C(0x7ff0000000000000) ||
        !(n->bits & UINT64_C(0x000fffffffffffff)))
      return num_err(p, n, "nan(0x...) bits are not an f64 NaN");
    memcpy(out, &n->bits, sizeof *out);
    return KILN_OK;
  }
  return num_err(p, n, "bad number");
}

static kiln_status num_to_f32(parser *p, const number *n, float *out) {
  if (n->kind == N_NANBITS) {
    uint32_t b = (uint32_t)n->bits;
    if (n->bits > UINT32_MAX || (b & 0x7f800000u) != 0x7f800000u || !(b & 0x007fffffu))
      return num_err(p, n, "nan(0x...) bits are not an f32 NaN");
    memcpy(out, &b, sizeof b);
    return KILN_OK;
  }
  if (n->kind == N_FLOAT && isnan(n->f)) {
    uint32_t b = signbit(n->f) ? 0xffc00000u : 0x7fc00000u;
    memcpy(out, &b, sizeof b);
    return KILN_OK;
  }
  double d;
  TRY(num_to_f64(p, n, &d));
  *out = (float)d;
  if (isinf(*out) && !isinf(d)) return num_err(p, n, "value out of f32 range");
  if (n->kind == N_INT && (double)*out != d) return num_err(p, n, "integer not exact in f32");
  return KILN_OK;
}

static kiln_status num_to_int(parser *p, const number *n, int64_t lo, int64_t hi, int64_t *out) {
  if (n->kind == N_BIGUINT) return big_err(p, n);
  if (n->kind != N_INT) return num_err(p, n, "expected an integer");
  if (n->i < lo || n->i > hi) return num_err(p, n, "integer out of range for the dtype");
  *out = n->i;
  return KILN_OK;
}

/* An f16 / bf16 element: NaN bits given as nan(0xBITS) must be a NaN of the format; a
 * finite value that rounds to infinity and an integer that is not exact are refused. */
static kiln_status num_to_half(parser *p, const number *n, bool bf16, uint16_t *out) {
  const char *fmt = bf16 ? "bf16" : "f16";
  uint16_t expo = bf16 ? 0x7f80 : 0x7c00, man = bf16 ? 0x007f : 0x03ff;
  if (n->kind == N_NANBITS) {
    if (n->bits > 0xffff || (n->bits & expo) != expo || !(n->bits & man))
      return num_err(p, n, bf16 ? "nan(0x...) bits are not a bf16 NaN"
                                : "nan(0x...) bits are not an f16 NaN");
    *out = (uint16_t)n->bits;
    return KILN_OK;
  }
  if (n->kind == N_FLOAT && isnan(n->f)) {
    *out = (uint16_t)((signbit(n->f) ? 0x8000 : 0) | (bf16 ? 0x7fc0 : 0x7e00));
    return KILN_OK;
  }
  double d;
  TRY(num_to_f64(p, n, &d));
  *out = bf16 ? kir_bf16_from_double(d) : kir_f16_from_double(d);
  double back = bf16 ? kir_bf16_to_double(*out) : kir_f16_to_double(*out);
  if (isinf(back) && !isinf(d))
    return perr_at(p, n->line, n->col, KILN_ERR_FORMAT, "value out of %s range", fmt);
  if (n->kind == N_INT && back != d)
    return perr_at(p, n->line, n->col, KILN_ERR_FORMAT, "integer not exact in %s", fmt);
  return KILN_OK;
}

/* ---------------------------------------------------------------- types, tensors - */

static kiln_status parse_dtype(parser *p, kiln_dtype *dt) {
  char buf[8];
  if (p->tok.kind != T_IDENT || p->tok.len >= sizeof buf) return expected(p, "a dtype (f32 f64 f16 bf16 i8 i16 i32 i64 u8 u16 u32 u64 bool)");
  memcpy(buf, p->tok.start, p->tok.len);
  buf[p->tok.len] = '\0';
  for (int d = 1; d < KILN_DTYPE_COUNT; d++)
    if (!strcmp(buf, kiln_dtype_name((kiln_dtype)d))) {
      *dt = (kiln_dtype)d;
      return next(p);
    }
  return expected(p, "a dtype (f32 f64 f16 bf16 i8 i16 i32 i64 u8 u16 u32 u64 bool)");
}

static bool dtype_word(const parser *p) {
  for (int d = 1; d < KILN_DTYPE_COUNT; d++)
    if (is_word(p, kiln_dtype_name((kiln_dtype)d))) return true;
  return false;
}

/* dims := "[" [INT {"," INT}] "]" into t (dtype already set). */
static kiln_status parse_dims(parser *p, kir_type *t) {
  TRY(expect_punct(p, '[', "'[' before dims"));
  t->rank = 0;
  while (!is_punct(p, ']')) {
    if (t->rank) TRY(expect_punct(p, ',', "',' or ']' in dims"));
    if (t->rank == KILN_MAX_RANK)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_LIMIT, "rank above %d", KILN_MAX_RANK);
    number n;
    int64_t d = 0;
    TRY(parse_number(p, &n));
    TRY(num_to_int(p, &n, 0, INT64_MAX, &d));
    t->dims[t->rank++] = d;
  }
  return next(p);
}

/* Range of the integer dtypes narrower than 64 bits. */
static int64_t int_lo(kiln_dtype t) {
  return t == KILN_I8 ? INT8_MIN : t == KILN_I16 ? INT16_MIN : t == KILN_I32 ? INT32_MIN : 0;
}
static int64_t int_hi(kiln_dtype t) {
  return t == KILN_U8 ? UINT8_MAX : t == KILN_I8 ? INT8_MAX : t == KILN_U16 ? UINT16_MAX
       : t == KILN_I16 ? INT16_MAX : t == KILN_U32 ? UINT32_MAX : INT32_MAX;
}

static kiln_status store_element(parser *p, kir_tensor *t, int64_t i, const number *n) {
  int64_t v = 0;
  switch (t->type.dtype) {
  case KILN_F32: return num_to_f32(p, n, (float *)t->data + i);
  case KILN_F64: return num_to_f64(p, n, (double *)t->data + i);
  case KILN_I32:
    TRY(num_to_int(p, n, INT32_MIN, INT32_MAX, &v));
    ((int32_t *)t->data)[i] = (int32_t)v;
    return KILN_OK;
  case KILN_I64: return num_to_int(p, n, INT64_MIN, INT64_MAX, (int64_t *)t->data + i);
  case KILN_BOOL:
    TRY(num_to_int(p, n, 0, 1, &v));
    ((uint8_t *)t->data)[i] = (uint8_t)v;
    return KILN_OK;
  case KILN_U8: case KILN_I8: case KILN_U16: case KILN_I16: case KILN_U32:
    TRY(num_to_int(p, n, int_lo(t->type.dtype), int_hi(t->type.dtype), &v));
    kir_tensor_set_i(t, i, v);
    return KILN_OK;
  case KILN_U64:
    if (n->kind == N_BIGUINT) {
      ((uint64_t *)t->data)[i] = n->bits;
      return KILN_OK;
    }
    TRY(num_to_int(p, n, 0, INT64_MAX, &v));
    ((uint64_t *)t->data)[i] = (uint64_t)v;
    return KILN_OK;
  case KILN_F16: return num_to_half(p, n, false, (uint16_t *)t->data + i);
  case KILN_BF16: return num_to_half(p, n, true, (uint16_t *)t->data + i);
  case KILN_DTYPE_INVALID: break;
  }
  return num_err(p, n, "bad dtype");
}

static kiln_status parse_elements(parser *p, kir_tensor *t, int64_t numel) {
  int64_t count = 0;
  while (!is_punct(p, '}')) {
    if (count) TRY(expect_punct(p, ',', "',' or '}' between tensor elements"));
    if (count == numel)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT,
                     "more than the %lld elements the tensor's type holds", (long long)numel);
    number n;
    TRY(parse_number(p, &n));
    TRY(store_element(p, t, count++, &n));
  }
  if (count != numel)
    return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT,
                   "tensor has %lld elements, its type needs %lld", (long long)count,
                   (long long)numel);
  return next(p);
}

/* The tensor after its dtype word: dims "{" elements "}". */
static kiln_status parse_tensor(parser *p, kiln_dtype dt, kir_tensor **out) {
  kir_type ty = {.dtype = dt};
  int64_t line = p->tok.line, col = p->tok.col;
  TRY(parse_dims(p, &ty));
  int64_t numel = kir_type_numel(&ty), nbytes = kir_type_nbytes(&ty);
  if (numel < 0 || nbytes < 0)
    return perr_at(p, line, col, KILN_ERR_LIMIT, "tensor above %lld bytes",
                   (long long)KIR_MAX_TENSOR_BYTES);
  if (numel > (int64_t)(p->len - p->pos))
    return perr_at(p, line, col, KILN_ERR_FORMAT,
                   "tensor declares %lld elements, more than the text holds", (long long)numel);
  TRY(expect_punct(p, '{', "'{' before the tensor's elements"));
  kir_tensor *t = kir_tensor_new(&ty);
  if (!t) return nomem(p);
  kiln_status s = parse_elements(p, t, numel);
  if (s != KILN_OK) kir_tensor_free(t);
  else *out = t;
  return s;
}

/* ---------------------------------------------------------------- attributes ---- */

static kiln_status parse_list_items(parser *p, int32_t *count) {
  TRY(expect_punct(p, '[', "'['"));
  int32_t n = 0;
  while (!is_punct(p, ']')) {
    if (n) TRY(expect_punct(p, ',', "',' or ']' in a list"));
    if (n == TEXT_MAX_LIST)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_LIMIT, "list longer than %d",
                     TEXT_MAX_LIST);
    if (!grow(p, (void **)&p->items, &p->item_cap, n + 1, sizeof *p->items)) return p->st;
    list_item *it = &p->items[n];
    memset(it, 0, sizeof *it);
    if (p->tok.kind == T_STRING) {
      if (!(it->s = kir_graph_strdup(p->g, p->str))) return nomem(p);
      TRY(next(p));
    } else {
      number num;
      TRY(parse_number(p, &num));
      it->is_float = num.kind != N_INT;
      it->i = num.i;
      if (num.kind != N_INT) TRY(num_to_f64(p, &num, &it->f));
      else if (num.i <= (INT64_C(1) << 53) && num.i >= -(INT64_C(1) << 53)) it->f = (double)num.i;
      else it->f = NAN; /* marks an int that cannot become a float */
    }
    n++;
  }
  *count = n;
  return next(p);
}

/* Which kind a parsed list is: the written kind, else its items, else the schema's. */
static kiln_status list_kind(parser *p, int32_t n, int kind, int schema, int64_t line,
                             int64_t col, kir_attr_kind *out) {
  int32_t strings = 0, floats = 0;
  for (int32_t i = 0; i < n; i++) strings += p->items[i].s != NULL, floats += p->items[i].is_float;
  if (strings && strings != n)
    return perr_at(p, line, col, KILN_ERR_FORMAT, "list mixes strings and numbers");
  bool schema_list = schema == KIR_ATTR_INTS || schema == KIR_ATTR_FLOATS || schema == KIR_ATTR_STRINGS;
  if (!kind && n == 0) kind = schema_list ? schema : 0;
  else if (!kind && strings) kind = KIR_ATTR_STRINGS;
  else if (!kind) kind = floats || schema == KIR_ATTR_FLOATS ? KIR_ATTR_FLOATS : KIR_ATTR_INTS;
  if (!kind)
    return perr_at(p, line, col, KILN_ERR_FORMAT,
                   "empty list of unknown kind (write ints[], floats[] or strings[])");
  if ((kind == KIR_ATTR_STRINGS && strings != n) || (kind != KIR_ATTR_STRINGS && strings) ||
      (kind == KIR_ATTR_INTS && floats))
    return perr_at(p, line, col, KILN_ERR_FORMAT, "list items do not match its kind %s",
                   kir_attr_kind_name((kir_attr_kind)kind));
  for (int32_t i = 0; kind == KIR_ATTR_FLOATS && i < n; i++)
    if (!p->items[i].is_float && isnan(p->items[i].f))
      return perr_at(p, line, col, KILN_ERR_FORMAT, "integer not exact as a float in a floats list");
  *out = (kir_attr_kind)kind;
  return KILN_OK;
}

static kiln_status set_list(parser *p, kir_node *nd, const char *name, kir_attr_kind kind,
                            int32_t n) {
  kiln_status s = KILN_OK;
  size_t elem = kind == KIR_ATTR_INTS ? sizeof(int64_t) : kind == KIR_ATTR_FLOATS ? sizeof(double) : sizeof(char *);
  void *v = kir_malloc(elem * (size_t)(n ? n : 1));
  if (!v) return nomem(p);
  for (int32_t i = 0; i < n; i++) {
    if (kind == KIR_ATTR_INTS) ((int64_t *)v)[i] = p->items[i].i;
    else if (kind == KIR_ATTR_FLOATS) ((double *)v)[i] = p->items[i].f;
    else ((const char **)v)[i] = p->items[i].s;
  }
  if (kind == KIR_ATTR_INTS) s = kir_attr_set_ints(p->g, nd, name, v, n);
  else if (kind == KIR_ATTR_FLOATS) s = kir_attr_set_floats(p->g, nd, name, v, n);
  else s = kir_attr_set_strings(p->g, nd, name, (const char *const *)v, n);
  kir_free(v);
  return s;
}

static kiln_status parse_list(parser *p, kir_node *nd, const char *name, int kind, int schema) {
  int64_t line = p->tok.line, col = p->tok.col;
  int32_t n = 0;
  kir_attr_kind k = KIR_ATTR_INT;
  TRY(parse_list_items(p, &n));
  TRY(list_kind(p, n, kind, schema, line, col, &k));
  kiln_status s = set_list(p, nd, name, k, n);
  return s == KILN_OK ? s : graph_err(p, s, line, col);
}

static kiln_status parse_scalar_attr(parser *p, kir_node *nd, const char *name, int schema) {
  number n;
  int64_t line = p->tok.line, col = p->tok.col;
  TRY(parse_number(p, &n));
  kiln_status s;
  if (n.kind == N_INT && schema != KIR_ATTR_FLOAT) {
    s = kir_attr_set_int(p->g, nd, name, n.i);
  } else {
    double f;
    TRY(num_to_f64(p, &n, &f));
    s = kir_attr_set_float(p->g, nd, name, f);
  }
  return s == KILN_OK ? s : graph_err(p, s, line, col);
}

/* A value starting with a word: a typed list, a tensor or a dtype number. */
static kiln_status parse_word_attr(parser *p, kir_node *nd, const char *name, int schema) {
  int64_t line = p->tok.line, col = p->tok.col;
  static const struct { const char *w; kir_attr_kind k; } lists[] = {
      {"ints", KIR_ATTR_INTS}, {"floats", KIR_ATTR_FLOATS}, {"strings", KIR_ATTR_STRINGS}};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
    if (is_word(p, lists[i].w)) {
      TRY(next(p));
      return parse_list(p, nd, name, (int)lists[i].k, schema);
    }
  if (!dtype_word(p)) return expected(p, "an attribute value");
  kiln_dtype dt;
  TRY(parse_dtype(p, &dt));
  kiln_status s;
  if (is_punct(p, '[')) {
    kir_tensor *t = NULL;
    TRY(parse_tensor(p, dt, &t));
    s = kir_attr_set_tensor(p->g, nd, name, t);
    kir_tensor_free(t);
  } else {
    s = kir_attr_set_int(p->g, nd, name, (int64_t)dt);
  }
  return s == KILN_OK ? s : graph_err(p, s, line, col);
}

static kiln_status parse_value(parser *p, kir_node *nd, const char *name) {
  int schema = kir_schema_kind(nd->op, name);
  const token *t = &p->tok;
  if (t->kind == T_NUM || is_word(p, "inf") || is_word(p, "nan")) return parse_scalar_attr(p, nd, name, schema);
  if (t->kind == T_IDENT) return parse_word_attr(p, nd, name, schema);
  if (t->kind == T_STRING) {
    kiln_status s = kir_attr_set_string(p->g, nd, name, p->str);
    if (s != KILN_OK) return graph_err(p, s, t->line, t->col);
    return next(p);
  }
  if (is_punct(p, '[')) return parse_list(p, nd, name, 0, schema);
  if (is_punct(p, '<'))
    return perr_at(p, t->line, t->col, KILN_ERR_FORMAT,
                   "constant elided; print with --full-constants");
  return expected(p, "an attribute value");
}

static kiln_status parse_attr(parser *p, kir_node *nd) {
  int64_t line = p->tok.line, col = p->tok.col;
  if (p->tok.kind == T_STRING) {
    if (!grow(p, (void **)&p->name, &p->name_cap, (int32_t)p->str_len + 1, 1)) return p->st;
    memcpy(p->name, p->str, p->str_len + 1);
  } else if (p->tok.kind == T_IDENT) {
    if (!grow(p, (void **)&p->name, &p->name_cap, (int32_t)p->tok.len + 1, 1)) return p->st;
    memcpy(p->name, p->tok.start, p->tok.len);
    p->name[p->tok.len] = '\0';
  } else {
    return expected(p, "an attribute name");
  }
  if (kir_attr_find(nd, p->name)) {
    char esc[KIR_ESC_BUF];
    return perr_at(p, line, col, KILN_ERR_FORMAT, "duplicate attribute '%s'",
                   kir_escape(p->name, esc, sizeof esc));
  }
  TRY(next(p));
  TRY(expect_punct(p, '=', "'=' after the attribute name"));
  /* The value may reuse p->name's buffer only after it is stored: copy the name. */
  const char *name = kir_graph_strdup(p->g, p->name);
  if (!name) return nomem(p);
  return parse_value(p, nd, name);
}

static kiln_status parse_attrs(parser *p, kir_node *nd) {
  TRY(next(p)); /* '{' */
  for (int32_t k = 0; !is_punct(p, '}'); k++) {
    if (k) TRY(expect_punct(p, ',', "',' or '}' between attributes"));
    TRY(parse_attr(p, nd));
  }
  return next(p);
}

/* ---------------------------------------------------------------- nodes --------- */

static kiln_status parse_type(parser *p, node_info *ni) {
  ni->tline = p->tok.line;
  ni->tcol = p->tok.col;
  if (is_punct(p, '?')) return next(p);
  if (is_punct(p, '(')) {
    TRY(next(p));
    ni->stated = 2;
    return expect_punct(p, ')', "')' after '(' (no output)");
  }
  if (!dtype_word(p)) return expected(p, "a type such as f32[2,3], () or ?");
  TRY(parse_dtype(p, &ni->type.dtype));
  ni->stated = 1;
  return parse_dims(p, &ni->type);
}

static kiln_status parse_place_string(parser *p, const char **field, const char *what) {
  TRY(next(p));
  if (p->tok.kind != T_STRING) return expected(p, what);
  if (!(*field = kir_graph_strdup(p->g, p->str))) return nomem(p);
  return next(p);
}

static kiln_status parse_node_tail(parser *p, kir_node *nd, node_info *ni) {
  if (is_punct(p, '{')) TRY(parse_attrs(p, nd));
  if (is_punct(p, ':')) {
    TRY(next(p));
    TRY(parse_type(p, ni));
  }
  if (is_punct(p, '@')) TRY(parse_place_string(p, &nd->device, "the requested device as a string"));
  if (is_word(p, "assigned"))
    TRY(parse_place_string(p, &nd->assigned_device, "the assigned device as a string"));
  if (is_word(p, "reason"))
    TRY(parse_place_string(p, &nd->placement_reason, "the placement reason as a string"));
  if (p->tok.kind != T_NL && p->tok.kind != T_EOF)
    return expected(p, "end of line after the node");
  return KILN_OK;
}

static int32_t find_label(const parser *p, int64_t label) {
  int32_t lo = 0, hi = p->g->n_nodes - 1;
  while (lo <= hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (p->nodes[mid].label == label) return mid;
    if (p->nodes[mid].label < label) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

static kiln_status parse_inputs(parser *p, int32_t *count) {
  TRY(expect_punct(p, '(', "'(' after the op name"));
  int32_t n = 0;
  while (!is_punct(p, ')')) {
    if (n) TRY(expect_punct(p, ',', "',' or ')' after an input"));
    if (p->tok.kind != T_ID) return expected(p, n ? "an input such as %0" : "an input such as %0 or ')'");
    int32_t id = find_label(p, p->tok.id);
    if (id < 0)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_GRAPH,
                     "input %%%lld is not a node defined above", (long long)p->tok.id);
    if (n == KIR_MAX_INPUTS)
      return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_LIMIT, "more than %d inputs",
                     KIR_MAX_INPUTS);
    if (!grow(p, (void **)&p->inputs, &p->in_cap, n + 1, sizeof *p->inputs)) return p->st;
    p->inputs[n++] = id;
    TRY(next(p));
  }
  *count = n;
  return next(p);
}

static kiln_status parse_op(parser *p, kir_op *op) {
  char buf[64];
  if (p->tok.kind != T_IDENT) return expected(p, "an op name");
  size_t k = p->tok.len < sizeof buf - 1 ? p->tok.len : sizeof buf - 1;
  memcpy(buf, p->tok.start, k);
  buf[k] = '\0';
  *op = p->tok.len < sizeof buf ? kir_op_from_name(buf) : KIR_OP_INVALID;
  if (*op == KIR_OP_INVALID) {
    char esc[KIR_ESC_BUF];
    return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT, "unknown op '%s'",
                   kir_escape(buf, esc, sizeof esc));
  }
  return next(p);
}

static kiln_status parse_node(parser *p) {
  int32_t idx = p->g->n_nodes;
  if (!grow(p, (void **)&p->nodes, &p->node_cap, idx + 1, sizeof *p->nodes)) return p->st;
  node_info *ni = &p->nodes[idx];
  memset(ni, 0, sizeof *ni);
  ni->line = p->tok.line;
  ni->col = p->tok.col;
  ni->label = p->tok.id;
  if (idx > 0 && ni->label <= p->nodes[idx - 1].label)
    return perr_at(p, p->tok.line, p->tok.col, KILN_ERR_FORMAT,
                   "node id %%%lld must be greater than the previous %%%lld",
                   (long long)ni->label, (long long)p->nodes[idx - 1].label);
  TRY(next(p));
  if (p->tok.kind != T_STRING) return expected(p, "the node's name as a string");
  if (!grow(p, (void **)&p->name, &p->name_cap, (int32_t)p->str_len + 1, 1)) return p->st;
  memcpy(p->name, p->str, p->str_len + 1);
  int64_t nline = p->tok.line, ncol = p->tok.col;
  TRY(next(p));
  TRY(expect_punct(p, '=', "'=' after the node's name"));
  kir_op op = KIR_OP_INVALID;
  TRY(parse_op(p, &op));
  int32_t n_in = 0;
  TRY(parse_inputs(p, &n_in));
  if (!p->name[0]) return perr_at(p, nline, ncol, KILN_ERR_FORMAT, "empty node name");
  if (kir_graph_find(p->g, p->name)) {
    char esc[KIR_ESC_BUF];
    return perr_at(p, nline, ncol, KILN_ERR_GRAPH, "duplicate node name '%s'",
                   kir_escape(p->name, esc, sizeof esc));
  }
  kir_node *nd = kir_node_add(p->g, op, p->name, p->inputs, n_in);
  if (!nd) return graph_err(p, p->g->status, nline, ncol);
  return parse_node_tail(p, nd, &p->nodes[idx]);
}

static kiln_status parse_header(parser *p) {
  while (p->tok.kind == T_NL) TRY(next(p));
  if (!is_word(p, KIR_TEXT_HEADER)) return expected(p, "the header 'kiln.graph 1.0'");
  TRY(next(p));
  const token *t = &p->tok;
  const char *dot = t->kind == T_NUM ? memchr(t->start, '.', t->len) : NULL;
  if (!dot || dot == t->start || !is_digit((unsigned char)t->start[0]))
    return expected(p, "a version MAJOR.MINOR after 'kiln.graph'");
  int64_t major = 0;
  for (const char *c = t->start; c < dot; c++) {
    if (!is_digit((unsigned char)*c) || major > 1000) return expected(p, "a version MAJOR.MINOR");
    major = major * 10 + (*c - '0');
  }
  if (major != KIR_FORMAT_MAJOR)
    return perr_at(p, t->line, t->col, major > KIR_FORMAT_MAJOR ? KILN_ERR_VERSION : KILN_ERR_FORMAT,
                   "text format version %lld.x; this Kiln reads %d.x", (long long)major,
                   KIR_FORMAT_MAJOR);
  TRY(next(p));
  if (p->tok.kind != T_NL && p->tok.kind != T_EOF) return expected(p, "end of line after the header");
  return KILN_OK;
}

static kiln_status parse_lines(parser *p) {
  TRY(next(p));
  TRY(parse_header(p));
  while (p->tok.kind != T_EOF) {
    if (p->tok.kind == T_ID) TRY(parse_node(p));
    else if (p->tok.kind != T_NL) return expected(p, "a node such as %0 \"x\" = ...");
    TRY(next(p));
  }
  return KILN_OK;
}

/* Infers every node's type and checks what the text stated, then verifies. */
static kiln_status check_types(parser *p) {
  char want[128], got[128], esc[KIR_ESC_BUF];
  for (int32_t i = 0; i < p->g->n_nodes; i++) {
    kir_node *nd = p->g->nodes[i];
    const node_info *ni = &p->nodes[i];
    kiln_status s = kir_infer_node(p->g, nd);
    if (s != KILN_OK) return graph_err(p, s, ni->line, ni->col);
    bool none = kir_op_has(nd->op, KIR_F_NO_OUTPUT);
    if (ni->stated == 0 || (ni->stated == 2 && none) ||
        (ni->stated == 1 && !none && kir_type_equal(&ni->type, &nd->type)))
      continue;
    if (ni->stated == 1) kir_type_format(&ni->type, want, sizeof want);
    else snprintf(want, sizeof want, "()");
    if (none) snprintf(got, sizeof got, "()");
    else kir_type_format(&nd->type, got, sizeof got);
    return perr_at(p, ni->tline, ni->tcol, KILN_ERR_TYPE,
                   "node '%s': stated type %s, but inference gives %s",
                   kir_escape(nd->name, esc, sizeof esc), want, got);
  }
  kiln_status s = kir_verify(p->g);
  return s == KILN_OK ? s : graph_err(p, s, 1, 1);
}

static void parser_free(parser *p) {
  kir_free(p->str);
  kir_free(p->name);
  kir_free(p->inputs);
  kir_free(p->nodes);
  kir_free(p->items);
}

kiln_status kir_graph_parse_text(kir_graph *g, const char *text, size_t len,
                                 const char *filename) {
  if (!g) return KILN_ERR_ARGUMENT;
  if (g->n_nodes) return kir_seterr(g, KILN_ERR_ARGUMENT, "parse_text: the graph is not empty");
  if (!text && len) return kir_seterr(g, KILN_ERR_ARGUMENT, "parse_text: NULL text");
  if ((int64_t)len > KIR_MAX_FILE_BYTES)
    return kir_seterr(g, KILN_ERR_LIMIT, "text of %zu bytes (limit %lld)", len,
                      (long long)KIR_MAX_FILE_BYTES);
  parser p = {.src = text ? text : "", .file = filename ? filename : "<text>", .len = len,
              .line = 1, .col = 1};
  if (!(p.g = kir_graph_create())) return kir_seterr(g, KILN_ERR_NOMEM, "out of memory");
  kiln_status s = parse_lines(&p);
  if (s == KILN_OK) s = check_types(&p);
  parser_free(&p);
  if (s != KILN_OK) {
    kir_graph_destroy(p.g);
    return kir_seterr(g, s, "%s", p.err);
  }
  kir_graph_swap_in(g, p.g);
  kir_clearerr(g);
  return KILN_OK;
}

/* ---------------------------------------------------------------- loading ------- */

/* The text header after blank lines and '#' comment lines. */
static bool looks_like_text(const char *b, size_t n) {
  size_t i = 0, hl = strlen(KIR_TEXT_HEADER);
  for (;;) {
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) i++;
    if (i < n && b[i] == '#') {
      while (i < n && b[i] != '\n') i++;
      continue;
    }
    break;
  }
  return n - i > hl && !memcmp(b + i, KIR_TEXT_HEADER, hl) &&
         (b[i + hl] == ' ' || b[i + hl] == '\t');
}

static kiln_status load_text_file(kir_graph *g, FILE *f, const char *path) {
  char esc[KIR_ESC_BUF];
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
    return kir_seterr(g, KILN_ERR_PATH, "%s: not a regular file", kir_escape(path, esc, sizeof esc));
  if (st.st_size > KIR_MAX_FILE_BYTES)
    return kir_seterr(g, KILN_ERR_LIMIT, "%s: %lld bytes (limit %lld)",
                      kir_escape(path, esc, sizeof esc), (long long)st.st_size,
                      (long long)KIR_MAX_FILE_BYTES);
  size_t n = (size_t)st.st_size;
  char *buf = kir_malloc(n + 1);
  if (!buf) return kir_seterr(g, KILN_ERR_NOMEM, "%s: out of memory", kir_escape(path, esc, sizeof esc));
  rewind(f);
  size_t got = fread(buf, 1, n, f);
  kiln_status s = got == n ? kir_graph_parse_text(g, buf, n, path)
                           : kir_seterr(g, KILN_ERR_IO, "%s: short read",
                                        kir_escape(path, esc, sizeof esc));
  kir_free(buf);
  return s;
}

kiln_status kir_graph_load_any(kir_graph *g, const char *path) {
  if (!g || !path) return g ? kir_seterr(g, KILN_ERR_ARGUMENT, "load: NULL path") : KILN_ERR_ARGUMENT;
  char head[TEXT_SNIFF];
  FILE *f = fopen(path, "rb");
  if (!f) return kir_graph_load(g, path); /* its message names the path and the cause */
  size_t n = fread(head, 1, sizeof head, f);
  if (!looks_like_text(head, n)) {
    fclose(f);
    return kir_graph_load(g, path);
  }
  kiln_status s = load_text_file(g, f, path);
  fclose(f);
  return s;
}
