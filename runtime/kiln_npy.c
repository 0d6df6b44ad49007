/* kiln_npy.c — .npy files (NumPy format 1.0/2.0/3.0): a strict reader of the header
 * dict (descr, fortran_order, shape) that bounds every size by the bytes present, and
 * an atomic writer (format 1.0, header padded to 64 bytes).
 * Depends on libc only; never on the compiler (ir/, frontend/, passes/, codegen/). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kiln_rt_internal.h"

#define NPY_MAX_HEADER 65536

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static const struct {
  const char *descr;
  int dtype;
} DESCRS[] = {{"<f4", KILN_RT_F32}, {"<f8", KILN_RT_F64}, {"<i4", KILN_RT_I32},
              {"<i8", KILN_RT_I64}, {"|b1", KILN_RT_BOOL}, {"|u1", KILN_RT_U8},
              {"|i1", KILN_RT_I8},  {"<u2", KILN_RT_U16},  {"<i2", KILN_RT_I16},
              {"<u4", KILN_RT_U32}, {"<u8", KILN_RT_U64},  {"<f2", KILN_RT_F16}};

static const char *descr_of(int dtype) {
  for (size_t i = 0; i < sizeof DESCRS / sizeof DESCRS[0]; i++)
    if (DESCRS[i].dtype == dtype) return DESCRS[i].descr;
  return NULL;
}

static kiln_rt_status npy_fail(char *err, size_t len, kiln_rt_status st, const char *path,
                               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static kiln_rt_status npy_fail(char *err, size_t len, kiln_rt_status st, const char *path,
                               const char *fmt, ...) {
  char msg[RT_ERR_BYTES];
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(msg, sizeof msg, fmt, ap);
  va_end(ap);
  rt_fmt(err, len, "%s: %s", path ? path : "<null>", msg);
  return st;
}

/* ---- header dict parser: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } ---- */

typedef struct npy_parse {
  const char *start, *s, *end;
  char descr[16];
  int fortran;
  int rank;
  int64_t dims[KILN_RT_MAX_RANK];
  int seen; /* bit per key */
  char msg[256];
  kiln_rt_status st;
} npy_parse;

static int perr(npy_parse *p, kiln_rt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(npy_parse *p, kiln_rt_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(p->msg, sizeof p->msg, fmt, ap);
  va_end(ap);
  p->st = st;
  return -1;
}

static void skip_ws(npy_parse *p) {
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
    p->s++;
}

static int expect(npy_parse *p, char c) {
  skip_ws(p);
  if (p->s >= p->end || *p->s != c)
    return perr(p, KILN_RT_ERR_FORMAT, "header: expected '%c' at byte %td", c, p->s - p->start);
  p->s++;
  return 0;
}

/* A quoted string (single or double quotes, no escapes) into out. */
static int parse_str(npy_parse *p, char *out, size_t len) {
  skip_ws(p);
  if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
    return perr(p, KILN_RT_ERR_FORMAT, "header: expected a quoted string");
  char q = *p->s++;
  size_t n = 0;
  while (p->s < p->end && *p->s != q) {
    if (*p->s == '\\' || n + 1 >= len)
      return perr(p, KILN_RT_ERR_FORMAT, "header: string too long or escaped");
    out[n++] = *p->s++;
  }
  if (p->s >= p->end) return perr(p, KILN_RT_ERR_FORMAT, "header: unterminated string");
  p->s++;
  out[n] = '\0';
  return 0;
}

static int parse_bool(npy_parse *p, int *v) {
  skip_ws(p);
  size_t left = (size_t)(p->end - p->s);
  if (left >= 4 && memcmp(p->s, "True", 4) == 0) {
    *v = 1, p->s += 4;
    return 0;
  }
  if (left >= 5 && memcmp(p->s, "False", 5) == 0) {
    *v = 0, p->s += 5;
    return 0;
  }
  return perr(p, KILN_RT_ERR_FORMAT, "header: fortran_order is not True or False");
}

static int parse_int(npy_parse *p, int64_t *v) {
  skip_ws(p);
  int neg = p->s < p->end && *p->s == '-';
  if (neg) p->s++;
  if (p->s >= p->end || *p->s < '0' || *p->s > '9')
    return perr(p, KILN_RT_ERR_FORMAT, "header: shape holds something that is not an integer");
  uint64_t x = 0;
  while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
    x = x * 10 + (uint64_t)(*p->s++ - '0');
    if (x > (uint64_t)INT64_MAX) return perr(p, KILN_RT_ERR_OVERFLOW, "header: shape dim too large");
  }
  if (neg && x) return perr(p, KILN_RT_ERR_FORMAT, "header: shape has negative dim -%" PRIu64, x);
  *v = (int64_t)x;
  return 0;
}

/* "()", "(3,)", "(2, 3)", "(2, 3,)"; "(3)" is not a tuple. */
static int parse_shape(npy_parse *p) {
  if (expect(p, '(')) return -1;
  p->rank = 0;
  int commas = 0;
  for (;;) {
    skip_ws(p);
    if (p->s < p->end && *p->s == ')') break;
    if (p->rank == KILN_RT_MAX_RANK)
      return perr(p, KILN_RT_ERR_UNSUPPORTED, "header: shape has more than %d dims", KILN_RT_MAX_RANK);
    if (parse_int(p, &p->dims[p->rank])) return -1;
    p->rank++;
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++, commas++;
      continue;
    }
    break;
  }
  if (expect(p, ')')) return -1;
  if (p->rank == 1 && commas == 0)
    return perr(p, KILN_RT_ERR_FORMAT, "header: shape '(%" PRId64 ")' is not a tuple", p->dims[0]);
  return 0;
}

static int parse_entry(npy_parse *p) {
  char key[32];
  if (parse_str(p, key, sizeof key) || expect(p, ':')) return -1;
  int bit = strcmp(key, "descr") == 0           ? 1
            : strcmp(key, "fortran_order") == 0 ? 2
            : strcmp(key, "shape") == 0         ? 4
                                                : 0;
  if (!bit) return perr(p, KILN_RT_ERR_FORMAT, "header: unknown key '%s'", key);
  if (p->seen & bit) return perr(p, KILN_RT_ERR_FORMAT, "header: key '%s' twice", key);
  p->seen |= bit;
  if (bit == 1) return parse_str(p, p->descr, sizeof p->descr);
  if (bit == 2) return parse_bool(p, &p->fortran);
  return parse_shape(p);
}

static int parse_dict(npy_parse *p) {
  if (expect(p, '{')) return -1;
  for (;;) {
    skip_ws(p);
    if (p->s < p->end && *p->s == '}') break;
    if (parse_entry(p)) return -1;
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    break;
  }
  if (expect(p, '}')) return -1;
  skip_ws(p);
  if (p->s != p->end) return perr(p, KILN_RT_ERR_FORMAT, "header: bytes after the dict");
  if (p->seen != 7)
    return perr(p, KILN_RT_ERR_FORMAT, "header: missing %s",
                !(p->seen & 1) ? "'descr'" : !(p->seen & 2) ? "'fortran_order'" : "'shape'");
  return 0;
}

/* ---- reader ---- */

static void shape_tuple(const npy_parse *p, char *out, size_t len) {
  size_t o = (size_t)snprintf(out, len, "(");
  for (int i = 0; i < p->rank && o < len; i++)
    o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, i ? "," : "", p->dims[i]);
  if (o < len) snprintf(out + o, len - o, p->rank == 1 ? ",)" : ")");
}

/* Reads magic, version and header text; *hdr malloc'd, *prefix = bytes before data. */
static kiln_rt_status read_header(int fd, const char *path, uint64_t size, char **hdr,
                                  size_t *hlen, uint64_t *prefix, char *err, size_t errlen) {
  uint8_t pre[12];
  char msg[RT_ERR_BYTES];
  if (size < 10 || rt_read_all(fd, pre, 10, msg, sizeof msg))
    return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "file is too short for a .npy header");
  if (memcmp(pre, NPY_MAGIC, 6) != 0)
    return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "bad magic: not a .npy file");
  int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    return npy_fail(err, errlen, KILN_RT_ERR_UNSUPPORTED, path, ".npy version %d.%d is not supported",
                    major, minor);
  uint64_t len = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
  *prefix = 10;
  if (major >= 2) {
    if (size < 12 || rt_read_all(fd, pre + 10, 2, msg, sizeof msg))
      return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "file is too short for a .npy header");
    len |= (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
    *prefix = 12;
  }
  if (len > NPY_MAX_HEADER)
    return npy_fail(err, errlen, KILN_RT_ERR_LIMIT, path, "header is %" PRIu64 " bytes, over the limit of %d",
                    len, NPY_MAX_HEADER);
  if (len > size - *prefix)
    return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "header of %" PRIu64 " bytes runs past the end of the file",
                    len);
  *hdr = kiln_rt__malloc((size_t)len + 1);
  if (!*hdr) return npy_fail(err, errlen, KILN_RT_ERR_NOMEM, path, "out of memory");
  kiln_rt_status st = rt_read_all(fd, *hdr, (size_t)len, msg, sizeof msg);
  if (st) {
    kiln_rt__free(*hdr);
    *hdr = NULL;
    return npy_fail(err, errlen, st, path, "%s", msg);
  }
  *hlen = (size_t)len;
  *prefix += len;
  return KILN_RT_OK;
}

static kiln_rt_status check_header(npy_parse *p, const char *path, int *dtype, char *err,
                                   size_t errlen) {
  if (parse_dict(p)) return npy_fail(err, errlen, p->st, path, "%s", p->msg);
  char esc[RT_ESC_BYTES];
  *dtype = 0;
  for (size_t i = 0; i < sizeof DESCRS / sizeof DESCRS[0]; i++)
    if (strcmp(p->descr, DESCRS[i].descr) == 0) *dtype = DESCRS[i].dtype;
  if (!*dtype)
    return npy_fail(err, errlen, KILN_RT_ERR_UNSUPPORTED, path,
                    "descr '%s' is not supported (only <f4 <f8 <i4 <i8 |b1 |u1 |i1 <u2 <i2 <u4 <u8 "
                    "<f2; bf16 has no NumPy type)",
                    rt_escape(p->descr, esc));
  if (p->fortran)
    return npy_fail(err, errlen, KILN_RT_ERR_UNSUPPORTED, path,
                    "fortran_order True is not supported (save a C-ordered array)");
  return KILN_RT_OK;
}

static kiln_rt_status read_data(int fd, const char *path, kiln_rt_npy *t, char *err,
                                size_t errlen) {
  void *d = kiln_rt__malloc_aligned(t->nbytes);
  if (!d)
    return npy_fail(err, errlen, KILN_RT_ERR_NOMEM, path, "out of memory for %zu bytes", t->nbytes);
  char msg[RT_ERR_BYTES];
  kiln_rt_status st = rt_read_all(fd, d, t->nbytes, msg, sizeof msg);
  if (st) {
    kiln_rt__free(d);
    return npy_fail(err, errlen, st, path, "%s", msg);
  }
  const uint8_t *b = d;
  for (size_t i = 0; t->dtype == KILN_RT_BOOL && i < t->nbytes; i++)
    if (b[i] > 1) {
      unsigned v = b[i];
      kiln_rt__free(d);
      return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "bool element %zu is %u, not 0 or 1",
                      i, v);
    }
  t->data = d;
  return KILN_RT_OK;
}

static kiln_rt_status read_body(int fd, const char *path, uint64_t size, kiln_rt_npy *out,
                                char *err, size_t errlen) {
  char *hdr = NULL;
  size_t hlen = 0;
  uint64_t prefix = 0;
  kiln_rt_status st = read_header(fd, path, size, &hdr, &hlen, &prefix, err, errlen);
  if (st) return st;
  npy_parse p = {.start = hdr, .s = hdr, .end = hdr + hlen};
  int dtype = 0;
  st = check_header(&p, path, &dtype, err, errlen);
  kiln_rt__free(hdr);
  if (st) return st;
  size_t nbytes = 0;
  char tuple[256];
  shape_tuple(&p, tuple, sizeof tuple);
  if (rt_nbytes(dtype, p.rank, p.dims, &nbytes))
    return npy_fail(err, errlen, KILN_RT_ERR_OVERFLOW, path, "shape %s of %s overflows", tuple,
                    p.descr);
  if ((uint64_t)nbytes != size - prefix)
    return npy_fail(err, errlen, KILN_RT_ERR_FORMAT, path, "data is %" PRIu64 " bytes, shape %s of %s needs %zu",
                    size - prefix, tuple, p.descr, nbytes);
  kiln_rt_npy t = {.dtype = dtype, .rank = p.rank, .nbytes = nbytes};
  memcpy(t.dims, p.dims, sizeof t.dims);
  st = read_data(fd, path, &t, err, errlen);
  if (!st) *out = t;
  return st;
}

kiln_rt_status kiln_rt_npy_read(const char *path, kiln_rt_npy *out, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!out) return npy_fail(err, errlen, KILN_RT_ERR_ARGUMENT, path, "NULL output");
  memset(out, 0, sizeof *out);
  int fd = -1;
  uint64_t size = 0;
  char msg[RT_ERR_BYTES];
  kiln_rt_status st = rt_open_regular(path, &fd, &size, msg, sizeof msg);
  if (st) return npy_fail(err, errlen, st, path, "%s", msg);
  st = read_body(fd, path, size, out, err, errlen);
  close(fd);
  return st;
}

void kiln_rt_npy_free(kiln_rt_npy *t) {
  if (!t) return;
  kiln_rt__free(t->data);
  memset(t, 0, sizeof *t);
}

/* ---- writer ---- */

/* Format 1.0 header, padded with spaces so magic+len+header is a multiple of 64. */
static size_t make_header(int dtype, int rank, const int64_t *dims, char *h, size_t cap) {
  size_t o = 10;
  o += (size_t)snprintf(h + o, cap - o, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                        descr_of(dtype));
  for (int i = 0; i < rank; i++)
    o += (size_t)snprintf(h + o, cap - o, "%s%" PRId64, i ? ", " : "", dims[i]);
  o += (size_t)snprintf(h + o, cap - o, "%s), }", rank == 1 ? "," : "");
  size_t total = (o + 1 + 63) / 64 * 64;
  memset(h + o, ' ', total - 1 - o);
  h[total - 1] = '\n';
  memcpy(h, NPY_MAGIC, 6);
  h[6] = 1, h[7] = 0;
  h[8] = (char)((total - 10) & 0xff), h[9] = (char)((total - 10) >> 8);
  return total;
}

kiln_rt_status kiln_rt_npy_write(const char *path, int dtype, int rank, const int64_t *dims,
                                 const void *data, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!path || !*path) return npy_fail(err, errlen, KILN_RT_ERR_ARGUMENT, path, "empty path");
  if (dtype == KILN_RT_BF16)
    return npy_fail(err, errlen, KILN_RT_ERR_UNSUPPORTED, path,
                    "bf16 has no NumPy type; cast to f32 to save it as .npy");
  if (!descr_of(dtype))
    return npy_fail(err, errlen, KILN_RT_ERR_ARGUMENT, path, "dtype %d is not valid", dtype);
  if (rank < 0 || rank > KILN_RT_MAX_RANK || (rank > 0 && !dims))
    return npy_fail(err, errlen, KILN_RT_ERR_ARGUMENT, path, "rank %d is not valid (0..%d)", rank,
                    KILN_RT_MAX_RANK);
  size_t nbytes = 0;
  kiln_rt_status st = rt_nbytes(dtype, rank, dims, &nbytes);
  if (st)
    return npy_fail(err, errlen, st == KILN_RT_ERR_FORMAT ? KILN_RT_ERR_ARGUMENT : st, path,
                    "shape has a negative dim or its byte size overflows");
  if (nbytes && !data) return npy_fail(err, errlen, KILN_RT_ERR_ARGUMENT, path, "NULL data");
  char h[512];
  size_t hlen = make_header(dtype, rank, dims, h, sizeof h);
  rt_chunk chunks[2] = {{h, hlen}, {data, nbytes}};
  return rt_write_atomic(path, chunks, nbytes ? 2 : 1, err, errlen);
}
