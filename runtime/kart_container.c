/* kart_container.c — the artifact container: parse and check the header, section table
 * and hashes (kart_parse), write it atomically (kart_write), and the runtime's shared
 * file helpers (read a regular file, atomic temp-file-and-rename writes).
 * Integers are packed byte by byte (little-endian), never by struct casts.
 * Depends on libc only; never on the compiler (ir/, frontend/, passes/, codegen/). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h> /* mkstemp */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_rt_internal.h"

/* ---- little-endian packing ---- */

static uint64_t get_le(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static const char *kind_name(uint32_t kind) {
  switch (kind) {
  case KART_SEC_PLAN: return "plan";
  case KART_SEC_WEIGHTS: return "weights";
  case KART_SEC_CODE_CPU: return "code";
  case KART_SEC_SOURCE_C: return "source";
  case KART_SEC_CODE_CUDA: return "code/cuda";
  case KART_SEC_SOURCE_CUDA: return "source/cuda";
  }
  return "unknown";
}

static int known_kind(uint32_t kind) { return kind >= KART_SEC_PLAN && kind <= KART_SEC_SOURCE_CUDA; }

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rt_vfmt(err, errlen, fmt, ap);
  va_end(ap);
  return status;
}

/* ---- parse ---- */

static int parse_header(const uint8_t *b, size_t n, uint32_t *ns, char *err, size_t errlen) {
  if (n < KART_HEADER_BYTES)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "file is %zu bytes, shorter than the %d-byte artifact header", n,
                KART_HEADER_BYTES);
  if (memcmp(b, KART_MAGIC, 8) != 0)
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "bad magic: not a Kiln artifact");
  unsigned major = (unsigned)get_le(b + 8, 2), minor = (unsigned)get_le(b + 10, 2);
  if (major > KART_MAJOR)
    return fail(err, errlen, KILN_RT_ERR_VERSION,
                "artifact format %u.%u is newer than this runtime (%d.x)", major, minor,
                KART_MAJOR);
  if (major < KART_MAJOR)
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "artifact format %u.%u is not valid",
                major, minor);
  *ns = (uint32_t)get_le(b + 12, 4);
  if (*ns < 1 || *ns > KART_MAX_SECTIONS)
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "n_sections is %u; must be 1..%d",
                (unsigned)*ns, KART_MAX_SECTIONS);
  uint64_t file_size = get_le(b + 16, 8);
  if (file_size != (uint64_t)n)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "header says file_size %llu, but the file is %zu bytes",
                (unsigned long long)file_size, n);
  if (!all_zero(b + 24, 40))
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "header reserved bytes are not zero");
  if ((uint64_t)KART_HEADER_BYTES + (uint64_t)*ns * KART_ENTRY_BYTES > n)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "section table of %u entries ends past the end of the file (%zu bytes)",
                (unsigned)*ns, n);
  return KILN_RT_OK;
}

static int parse_entry(const uint8_t *e, int i, size_t n, size_t table_end, kart_section *s,
                       char *err, size_t errlen) {
  s->kind = (uint32_t)get_le(e, 4);
  s->offset = get_le(e + 8, 8);
  s->size = get_le(e + 16, 8);
  memcpy(s->sha256, e + 24, 32);
  s->data = NULL;
  if (!known_kind(s->kind))
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "section %d: unknown kind %u", i,
                (unsigned)s->kind);
  if (get_le(e + 4, 4) != 0)
    return fail(err, errlen, KILN_RT_ERR_FORMAT, "section %d (%s): reserved field is not zero",
                i, kind_name(s->kind));
  if (s->offset % KART_ALIGN != 0)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "section %d (%s): offset %llu is not %d-byte aligned", i, kind_name(s->kind),
                (unsigned long long)s->offset, KART_ALIGN);
  if (s->offset < table_end)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "section %d (%s): offset %llu is inside the header or section table (ends at %zu)",
                i, kind_name(s->kind), (unsigned long long)s->offset, table_end);
  if (s->size > n || s->offset > n - s->size)
    return fail(err, errlen, KILN_RT_ERR_FORMAT,
                "section %d (%s): offset %llu + size %llu is past the end of the file (%zu bytes)",
                i, kind_name(s->kind), (unsigned long long)s->offset,
                (unsigned long long)s->size, n);
  return KILN_RT_OK;
}

/* Kinds at most once; byte ranges pairwise disjoint (at most 16 sections). */
static int check_layout(const kart_section *s, int ns, char *err, size_t errlen) {
  for (int i = 0; i < ns; i++)
    for (int j = 0; j < i; j++) {
      if (s[i].kind == s[j].kind)
        return fail(err, errlen, KILN_RT_ERR_FORMAT, "sections %d and %d are both %s", j, i,
                    kind_name(s[i].kind));
      if (s[i].offset < s[j].offset + s[j].size && s[j].offset < s[i].offset + s[i].size)
        return fail(err, errlen, KILN_RT_ERR_FORMAT,
                    "sections %d (%s) and %d (%s) overlap", j, kind_name(s[j].kind), i,
                    kind_name(s[i].kind));
    }
  return KILN_RT_OK;
}

static int check_hash(const kart_section *s, int i, char *err, size_t errlen) {
  uint8_t got[32];
  kart_sha256(s->data, (size_t)s->size, got);
  if (memcmp(got, s->sha256, 32) == 0) return KILN_RT_OK;
  char want_hex[65], got_hex[65];
  kart_hex(s->sha256, want_hex);
  kart_hex(got, got_hex);
  return fail(err, errlen, KILN_RT_ERR_INTEGRITY,
              "section %d (%s) hash mismatch: expected %s, got %s", i, kind_name(s->kind),
              want_hex, got_hex);
}

int kart_parse(const uint8_t *bytes, size_t n, kart_section *sections, int *n_sections,
               char *err, size_t errlen) {
  if (n_sections) *n_sections = 0;
  if (!bytes || !sections || !n_sections)
    return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "kart_parse: NULL argument");
  uint32_t ns = 0;
  int st = parse_header(bytes, n, &ns, err, errlen);
  if (st) return st;
  size_t table_end = KART_HEADER_BYTES + (size_t)ns * KART_ENTRY_BYTES;
  for (uint32_t i = 0; i < ns; i++) {
    const uint8_t *e = bytes + KART_HEADER_BYTES + (size_t)i * KART_ENTRY_BYTES;
    st = parse_entry(e, (int)i, n, table_end, &sections[i], err, errlen);
    if (st) return st;
  }
  st = check_layout(sections, (int)ns, err, errlen);
  if (st) return st;
  for (uint32_t i = 0; i < ns; i++) {
    sections[i].data = bytes + sections[i].offset;
    st = check_hash(&sections[i], (int)i, err, errlen);
    if (st) return st;
  }
  *n_sections = (int)ns;
  return KILN_RT_OK;
}

const kart_section *kart_find(const kart_section *s, int n, uint32_t kind) {
  for (int i = 0; s && i < n; i++)
    if (s[i].kind == kind) return &s[i];
  return NULL;
}

/* ---- write ---- */

static int check_write_args(const char *path, const kart_section *s, int ns, char *err,
                            size_t errlen) {
  if (!path || !*path)
    return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "kart_write: empty path");
  if (!s || ns < 1 || ns > KART_MAX_SECTIONS)
    return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "%s: %d sections; must be 1..%d", path, ns,
                KART_MAX_SECTIONS);
  for (int i = 0; i < ns; i++) {
    if (!known_kind(s[i].kind))
      return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "%s: section %d: unknown kind %u", path, i,
                  (unsigned)s[i].kind);
    if (!s[i].data && s[i].size)
      return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "%s: section %d (%s): NULL data", path, i,
                  kind_name(s[i].kind));
    for (int j = 0; j < i; j++)
      if (s[i].kind == s[j].kind)
        return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "%s: sections %d and %d are both %s",
                    path, j, i, kind_name(s[i].kind));
  }
  return KILN_RT_OK;
}

/* Sets offsets (64-aligned, in order after the table) and the total size. */
static int layout(kart_section *s, int ns, uint64_t *total) {
  uint64_t at = KART_HEADER_BYTES + (uint64_t)ns * KART_ENTRY_BYTES;
  for (int i = 0; i < ns; i++) {
    at = (at + KART_ALIGN - 1) / KART_ALIGN * KART_ALIGN;
    if (s[i].size > UINT64_MAX - KART_ALIGN - at) return KILN_RT_ERR_OVERFLOW;
    s[i].offset = at;
    at += s[i].size;
  }
  *total = at;
  return at > SIZE_MAX ? KILN_RT_ERR_OVERFLOW : KILN_RT_OK;
}

static void pack_table(uint8_t *head, const kart_section *s, int ns, uint64_t total) {
  memset(head, 0, KART_HEADER_BYTES + (size_t)ns * KART_ENTRY_BYTES);
  memcpy(head, KART_MAGIC, 8);
  put_le(head + 8, KART_MAJOR, 2);
  put_le(head + 10, KART_MINOR, 2);
  put_le(head + 12, (uint64_t)ns, 4);
  put_le(head + 16, total, 8);
  for (int i = 0; i < ns; i++) {
    uint8_t *e = head + KART_HEADER_BYTES + (size_t)i * KART_ENTRY_BYTES;
    put_le(e, s[i].kind, 4);
    put_le(e + 8, s[i].offset, 8);
    put_le(e + 16, s[i].size, 8);
    memcpy(e + 24, s[i].sha256, 32);
  }
}

int kart_write(const char *path, kart_section *sections, int n_sections, char *err,
               size_t errlen) {
  int st = check_write_args(path, sections, n_sections, err, errlen);
  if (st) return st;
  uint64_t total = 0;
  if (layout(sections, n_sections, &total))
    return fail(err, errlen, KILN_RT_ERR_OVERFLOW, "%s: artifact size overflows", path);
  for (int i = 0; i < n_sections; i++)
    kart_sha256(sections[i].data, (size_t)sections[i].size, sections[i].sha256);
  uint8_t head[KART_HEADER_BYTES + KART_MAX_SECTIONS * KART_ENTRY_BYTES];
  pack_table(head, sections, n_sections, total);
  /* header+table, then per section: zero padding up to its offset, its bytes. */
  rt_chunk chunks[1 + 2 * KART_MAX_SECTIONS];
  int nc = 0;
  uint64_t at = KART_HEADER_BYTES + (uint64_t)n_sections * KART_ENTRY_BYTES;
  chunks[nc++] = (rt_chunk){head, (size_t)at};
  for (int i = 0; i < n_sections; i++) {
    chunks[nc++] = (rt_chunk){NULL, (size_t)(sections[i].offset - at)};
    chunks[nc++] = (rt_chunk){sections[i].data, (size_t)sections[i].size};
    at = sections[i].offset + sections[i].size;
  }
  return rt_write_atomic(path, chunks, nc, err, errlen);
}

/* ---- files ---- */

static int write_full(int fd, const void *data, size_t n) {
  static const uint8_t zeros[4096];
  const uint8_t *p = data;
  while (n > 0) {
    size_t want = n;
    if (!p && want > sizeof zeros) want = sizeof zeros;
    ssize_t w = write(fd, p ? (const void *)p : (const void *)zeros, want);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    n -= (size_t)w;
    if (p) p += w;
  }
  return 0;
}

static kiln_rt_status write_chunks(int fd, const char *tmp, const rt_chunk *c, int n, char *err,
                                   size_t errlen) {
  for (int i = 0; i < n; i++)
    if (write_full(fd, c[i].data, c[i].size) != 0)
      return fail(err, errlen, KILN_RT_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
  if (fchmod(fd, 0644) != 0)
    return fail(err, errlen, KILN_RT_ERR_IO, "%s: chmod failed: %s", tmp, strerror(errno));
  return KILN_RT_OK;
}

kiln_rt_status rt_write_atomic(const char *path, const rt_chunk *chunks, int n, char *err,
                               size_t errlen) {
  if (!path || !*path) return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "empty output path");
  size_t len = strlen(path);
  char *tmp = len < SIZE_MAX - 16 ? kiln_rt__malloc(len + 16) : NULL;
  if (!tmp) return fail(err, errlen, KILN_RT_ERR_NOMEM, "%s: out of memory", path);
  memcpy(tmp, path, len);
  memcpy(tmp + len, ".tmp.XXXXXX", 12); /* same directory as path */
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int st = fail(err, errlen, errno == ENOENT || errno == EACCES || errno == ENOTDIR ||
                                       errno == EROFS
                                   ? KILN_RT_ERR_PATH
                                   : KILN_RT_ERR_IO,
                  "%s: cannot create a temp file beside it: %s", path, strerror(errno));
    kiln_rt__free(tmp);
    return (kiln_rt_status)st;
  }
  kiln_rt_status st = write_chunks(fd, tmp, chunks, n, err, errlen);
  if (close(fd) != 0 && st == KILN_RT_OK)
    st = fail(err, errlen, KILN_RT_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
  if (st == KILN_RT_OK && rename(tmp, path) != 0)
    st = fail(err, errlen, errno == EISDIR ? KILN_RT_ERR_PATH : KILN_RT_ERR_IO,
              "%s: cannot rename the temp file over it: %s", path, strerror(errno));
  if (st != KILN_RT_OK) unlink(tmp);
  kiln_rt__free(tmp);
  return st;
}

kiln_rt_status rt_open_regular(const char *path, int *fd, uint64_t *size, char *err,
                               size_t errlen) {
  *fd = -1;
  if (!path || !*path) return fail(err, errlen, KILN_RT_ERR_ARGUMENT, "empty path");
  int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (f < 0)
    return fail(err, errlen, errno == EIO || errno == ENOMEM ? KILN_RT_ERR_IO : KILN_RT_ERR_PATH,
                "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(f, &st) != 0) {
    close(f);
    return fail(err, errlen, KILN_RT_ERR_IO, "cannot stat: %s", strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    close(f);
    return fail(err, errlen, KILN_RT_ERR_PATH, "not a regular file (%s)",
                S_ISDIR(st.st_mode)    ? "a directory"
                : S_ISFIFO(st.st_mode) ? "a FIFO"
                : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                             : "a socket or other special file");
  }
  *fd = f;
  *size = st.st_size < 0 ? 0 : (uint64_t)st.st_size;
  return KILN_RT_OK;
}

kiln_rt_status rt_read_all(int fd, void *buf, size_t n, char *err, size_t errlen) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(err, errlen, KILN_RT_ERR_IO, "read failed: %s", strerror(errno));
    if (r == 0)
      return fail(err, errlen, KILN_RT_ERR_IO, "file ended %zu bytes early (changed while read?)",
                  n);
    p += r;
    n -= (size_t)r;
  }
  return KILN_RT_OK;
}

kiln_rt_status rt_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *n,
                            char *err, size_t errlen) {
  *data = NULL;
  *n = 0;
  int fd = -1;
  uint64_t size = 0;
  kiln_rt_status st = rt_open_regular(path, &fd, &size, err, errlen);
  if (st) return st;
  if (size > max_bytes || size > SIZE_MAX) {
    close(fd);
    return fail(err, errlen, KILN_RT_ERR_LIMIT, "file is %llu bytes, over the limit of %llu",
                (unsigned long long)size, (unsigned long long)max_bytes);
  }
  uint8_t *buf = kiln_rt__malloc((size_t)size);
  if (!buf) {
    close(fd);
    return fail(err, errlen, KILN_RT_ERR_NOMEM, "out of memory reading %llu bytes",
                (unsigned long long)size);
  }
  st = rt_read_all(fd, buf, (size_t)size, err, errlen);
  close(fd);
  if (st) {
    kiln_rt__free(buf);
    return st;
  }
  *data = buf;
  *n = (size_t)size;
  return KILN_RT_OK;
}
