/* kcg_nvrtc.c — compiles the CUDA target's source with NVRTC, opened with dlopen at run
 * time (no link dependency and no CUDA header: the few entry points are declared here),
 * and keeps compiled images in an on-disk cache keyed by SHA-256. Library search: only
 * $KILN_NVRTC_LIBRARY when set (the tests point it at a missing file); otherwise
 * libnvrtc.so.13, .12, libnvrtc.so by name, then in $KILN_CUDA_HOME/lib64 and
 * /usr/local/cuda/lib64. Depends on ir/ (errors, allocation), the runtime's SHA-256
 * (runtime/kiln_artifact.h), libc, libdl and pthread_once; never on other codegen files. */
#include "../kcg_cuda.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../ir/kir_alloc.h"
#include "../../runtime/kiln_artifact.h"

/* ---------------------------------------------------------------- the library ---- */

/* NVRTC's C API, as documented (nvrtcResult is an enum: an int at the ABI level). */
typedef struct nv_prog_s *nv_prog;
enum { NV_SUCCESS = 0, NV_OUT_OF_MEMORY = 1, NV_COMPILATION = 6 };

typedef struct nv_api {
  const char *(*error_string)(int result);
  int (*version)(int *major, int *minor);
  int (*create)(nv_prog *prog, const char *src, const char *name, int n_headers,
                const char *const *headers, const char *const *include_names);
  int (*destroy)(nv_prog *prog);
  int (*compile)(nv_prog prog, int n_options, const char *const *options);
  int (*log_size)(nv_prog prog, size_t *n);
  int (*log)(nv_prog prog, char *log);
  int (*cubin_size)(nv_prog prog, size_t *n);
  int (*cubin)(nv_prog prog, char *cubin);
  int (*ptx_size)(nv_prog prog, size_t *n);
  int (*ptx)(nv_prog prog, char *ptx);
} nv_api;

static const struct {
  const char *name;
  size_t offset;
} k_symbols[] = {
    {"nvrtcGetErrorString", offsetof(nv_api, error_string)},
    {"nvrtcVersion", offsetof(nv_api, version)},
    {"nvrtcCreateProgram", offsetof(nv_api, create)},
    {"nvrtcDestroyProgram", offsetof(nv_api, destroy)},
    {"nvrtcCompileProgram", offsetof(nv_api, compile)},
    {"nvrtcGetProgramLogSize", offsetof(nv_api, log_size)},
    {"nvrtcGetProgramLog", offsetof(nv_api, log)},
    {"nvrtcGetCUBINSize", offsetof(nv_api, cubin_size)},
    {"nvrtcGetCUBIN", offsetof(nv_api, cubin)},
    {"nvrtcGetPTXSize", offsetof(nv_api, ptx_size)},
    {"nvrtcGetPTX", offsetof(nv_api, ptx)},
};

/* Written once under s_once, read-only afterwards. The handle stays open for the life of
 * the process (images and programs never outlive it, and dlclose buys nothing). */
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static struct {
  void *handle;
  nv_api api;
  char why[512];    /* why it could not be opened ("" when open) */
  char version[16]; /* "13.0" */
} s_nv;

/* Resolves every symbol of h into s_nv.api; false (why set) if one is missing. */
static bool load_symbols(void *h, const char *path) {
  for (size_t i = 0; i < sizeof k_symbols / sizeof k_symbols[0]; i++) {
    void *p = dlsym(h, k_symbols[i].name);
    if (!p) {
      snprintf(s_nv.why, sizeof s_nv.why, "%s: no symbol %s", path, k_symbols[i].name);
      return false;
    }
    memcpy((char *)&s_nv.api + k_symbols[i].offset, &p, sizeof p); /* POSIX: same size */
  }
  return true;
}

static bool try_open(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(s_nv.why, sizeof s_nv.why, "%s", e ? e : path);
    return false;
  }
  int major = 0, minor = 0;
  if (!load_symbols(h, path)) {
    dlclose(h);
    return false;
  }
  if (s_nv.api.version(&major, &minor) != NV_SUCCESS) {
    snprintf(s_nv.why, sizeof s_nv.why, "%s: nvrtcVersion failed", path);
    dlclose(h);
    return false;
  }
  snprintf(s_nv.version, sizeof s_nv.version, "%d.%d", major, minor);
  s_nv.handle = h;
  s_nv.why[0] = '\0';
  return true;
}

static const char *const k_names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
enum { N_NAMES = sizeof k_names / sizeof k_names[0] };

/* Tries k_names inside dir (skipped when NULL, empty or too long). */
static bool try_dir(const char *dir) {
  char path[1024];
  if (!dir || !dir[0]) return false;
  for (int i = 0; i < N_NAMES; i++) {
    int n = snprintf(path, sizeof path, "%s/lib64/%s", dir, k_names[i]);
    if (n > 0 && (size_t)n < sizeof path && try_open(path)) return true;
  }
  return false;
}

static void open_once(void) {
  const char *only = getenv("KILN_NVRTC_LIBRARY");
  if (only && only[0]) {
    if (!try_open(only))
      snprintf(s_nv.why + strlen(s_nv.why), sizeof s_nv.why - strlen(s_nv.why),
               " (from KILN_NVRTC_LIBRARY)");
    return;
  }
  for (int i = 0; i < N_NAMES; i++)
    if (try_open(k_names[i])) return;
  if (try_dir(getenv("KILN_CUDA_HOME")) || try_dir("/usr/local/cuda")) return;
  char last[sizeof s_nv.why];
  memcpy(last, s_nv.why, sizeof last);
  snprintf(s_nv.why, sizeof s_nv.why,
           "%.300s (tried libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so on the library path, "
           "in $KILN_CUDA_HOME/lib64 and /usr/local/cuda/lib64)", last);
}

bool kcg_nvrtc_available(char *why, size_t why_n) {
  pthread_once(&s_once, open_once);
  if (why && why_n) snprintf(why, why_n, "%s", s_nv.handle ? "" : s_nv.why);
  return s_nv.handle != NULL;
}

const char *kcg_nvrtc_version(void) {
  return kcg_nvrtc_available(NULL, 0) ? s_nv.version : "";
}

/* ---------------------------------------------------------------- helpers -------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* A growing string through kir_realloc; the first failure sticks (oom) and later
 * appends do nothing, so callers check once at the end. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t more) {
  if (b->oom || b->n + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + more + 1) cap *= 2;
  char *p = kir_realloc(b->p, b->cap, cap);
  if (!p) {
    b->oom = true;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void sb_putc(sbuf *b, char c) {
  sb_reserve(b, 1);
  if (b->oom) return;
  b->p[b->n++] = c;
  b->p[b->n] = '\0';
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  sb_reserve(b, (size_t)n);
  if (b->oom) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
  va_end(ap);
  b->n += (size_t)n;
}

/* Appends s[0..n) with control bytes (but newlines and tabs) escaped as \xNN. */
static void sb_put_clean(sbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && !b->oom; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
      sb_printf(b, "\\x%02X", c);
    else
      sb_putc(b, (char)c);
  }
}

/* "sm_NN[a|f]" or "compute_NN[a|f]", NN two or three digits; *ptx for compute_. */
static bool arch_ok(const char *a, bool *ptx) {
  const char *d;
  if (strncmp(a, "sm_", 3) == 0) {
    d = a + 3;
    *ptx = false;
  } else if (strncmp(a, "compute_", 8) == 0) {
    d = a + 8;
    *ptx = true;
  } else {
    return false;
  }
  size_t digits = 0;
  while (d[digits] >= '0' && d[digits] <= '9') digits++;
  if (digits < 2 || digits > 3) return false;
  const char *rest = d + digits;
  return rest[0] == '\0' || ((rest[0] == 'a' || rest[0] == 'f') && rest[1] == '\0');
}

bool kcg_nvrtc_arch_valid(const char *arch, bool *ptx) {
  bool p = false;
  bool ok = arch && strlen(arch) < sizeof ((kcg_nvrtc_image *)0)->arch && arch_ok(arch, &p);
  if (ptx) *ptx = ok && p;
  return ok;
}

/* ---------------------------------------------------------------- the cache ------ */

/* Entry file: a header, then the image.
 *   0  char  magic[8] = "KLNVRTC\1"
 *   8  u64   payload size, little-endian
 *   16 u8    key[32]     (SHA-256 of version, options, arch, source: the file's name)
 *   48 u8    sha256[32]  of the payload
 *   80       payload
 * Anything else under the name (short, long, wrong key or hash) is ignored. */
#define ENTRY_MAGIC "KLNVRTC\1"
enum { ENTRY_HEADER = 80 };
#define ENTRY_MAX_PAYLOAD ((uint64_t)1 << 28) /* 256 MiB: far above any kernel image */

typedef struct cache {
  char *dir;  /* NULL: disabled */
  char *path; /* DIR/<hex>.<ext> */
  char *tmp;  /* DIR/.<hex>.XXXXXX */
  size_t cap; /* bytes of path and tmp */
} cache;

/* The directory opt asks for, before any suffix: sets *suffix for the defaults. NULL
 * when the cache is off. */
static const char *cache_base(const kcg_nvrtc_options *opt, const char **suffix) {
  *suffix = "";
  if (opt && opt->cache_dir) return opt->cache_dir[0] ? opt->cache_dir : NULL;
  const char *e = getenv("KILN_CACHE_DIR");
  if (e) return e[0] ? e : NULL;
  e = getenv("XDG_CACHE_HOME");
  if (e && e[0] == '/') {
    *suffix = "/kiln/nvrtc";
    return e;
  }
  e = getenv("HOME");
  if (e && e[0]) {
    *suffix = "/.cache/kiln/nvrtc";
    return e;
  }
  return NULL;
}

static kiln_status cache_open(kir_graph *g, const kcg_nvrtc_options *opt, cache *c) {
  memset(c, 0, sizeof *c);
  const char *suffix;
  const char *base = cache_base(opt, &suffix);
  if (!base) return KILN_OK;
  size_t n = strlen(base) + strlen(suffix) + 1;
  c->cap = n + 64 + 16; /* "/" + hex + ".cubin" or "/." + hex + ".XXXXXX" */
  c->dir = kir_malloc(n);
  c->path = kir_malloc(c->cap);
  c->tmp = kir_malloc(c->cap);
  if (!c->dir || !c->path || !c->tmp)
    return kir_seterr(g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory for cache paths");
  snprintf(c->dir, n, "%s%s", base, suffix);
  return KILN_OK;
}

static void cache_close(cache *c) {
  kir_free(c->dir);
  kir_free(c->path);
  kir_free(c->tmp);
  memset(c, 0, sizeof *c);
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Reads exactly n bytes; false on error or end of file. */
static bool read_all(int fd, void *buf, size_t n) {
  unsigned char *p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= (size_t)r;
  }
  return true;
}

static bool write_all(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= (size_t)r;
  }
  return true;
}

/* Checks an entry's header against the file size and the key; "" when good. */
static const char *entry_header_problem(const unsigned char *h, off_t file_size,
                                        const uint8_t key[32]) {
  if (memcmp(h, ENTRY_MAGIC, 8) != 0) return "bad magic";
  uint64_t size = get_u64(h + 8);
  if (size == 0 || size > ENTRY_MAX_PAYLOAD) return "bad payload size";
  if ((uint64_t)file_size != ENTRY_HEADER + size) return "file size does not match";
  if (memcmp(h + 16, key, 32) != 0) return "key does not match";
  return "";
}

/* Reads the payload after a good header into img; "" when good, else why it is not. */
static const char *entry_payload(kir_graph *g, int fd, const unsigned char *h,
                                 kcg_nvrtc_image *img, kiln_status *st) {
  size_t size = (size_t)get_u64(h + 8);
  unsigned char *data = kir_malloc(size);
  if (!data) {
    *st = kir_seterr(g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory reading the cache");
    return "out of memory";
  }
  uint8_t sum[32];
  const char *bad = "";
  if (!read_all(fd, data, size)) bad = "short read";
  if (!bad[0]) kart_sha256(data, size, sum);
  if (!bad[0] && memcmp(sum, h + 48, 32) != 0) bad = "payload hash does not match";
  if (!bad[0] && img->ptx && data[size - 1] != '\0') bad = "PTX not terminated";
  if (bad[0]) {
    kir_free(data);
    return bad;
  }
  img->data = data;
  img->size = size;
  memcpy(img->hash, sum, 32);
  img->from_cache = true;
  return "";
}

/* Loads c->path into img when it holds a good entry for key. A missing or bad entry is a
 * miss (bad ones noted in the log); only out-of-memory is an error. */
static kiln_status cache_read(kir_graph *g, const cache *c, const uint8_t key[32],
                              kcg_nvrtc_image *img, FILE *log) {
  int fd = open(c->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && log)
      fprintf(log, "kiln nvrtc: cache: cannot read %s: %s\n", c->path, strerror(errno));
    return KILN_OK;
  }
  kiln_status st = KILN_OK;
  unsigned char h[ENTRY_HEADER];
  struct stat sb;
  const char *bad = "";
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) bad = "not a regular file";
  if (!bad[0] && !read_all(fd, h, sizeof h)) bad = "shorter than its header";
  if (!bad[0]) bad = entry_header_problem(h, sb.st_size, key);
  if (!bad[0]) bad = entry_payload(g, fd, h, img, &st);
  close(fd);
  if (bad[0] && st == KILN_OK && log)
    fprintf(log, "kiln nvrtc: cache: ignoring %s: %s\n", c->path, bad);
  return st;
}

/* mkdir -p with mode 0700 for the missing parts; false with errno set on failure. */
static bool make_dirs(char *path) {
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char keep = *p;
    *p = '\0';
    struct stat sb;
    bool ok = mkdir(path, 0700) == 0 ||
              (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    if (!ok && errno == EEXIST) errno = ENOTDIR;
    *p = keep;
    if (!ok) return false;
    if (keep == '\0') return true;
  }
}

/* Writes img as an entry at c->path through a temp file and rename. A failure is noted
 * in the log and otherwise ignored: the cache only saves time. */
static void cache_write(cache *c, const char *hex, const uint8_t key[32],
                        const kcg_nvrtc_image *img, FILE *log) {
  unsigned char h[ENTRY_HEADER];
  memcpy(h, ENTRY_MAGIC, 8);
  put_u64(h + 8, (uint64_t)img->size);
  memcpy(h + 16, key, 32);
  memcpy(h + 48, img->hash, 32);
  snprintf(c->tmp, c->cap, "%s", c->dir);
  const char *what = NULL;
  int fd = -1, e = 0;
  if (!make_dirs(c->tmp)) what = "cannot create the directory", e = errno;
  if (!what) {
    snprintf(c->tmp, c->cap, "%s/.%s.XXXXXX", c->dir, hex);
    fd = mkstemp(c->tmp);
    if (fd < 0) what = "cannot create a temp file", e = errno;
  }
  if (!what && !(write_all(fd, h, sizeof h) && write_all(fd, img->data, img->size)))
    what = "cannot write the temp file", e = errno;
  if (fd >= 0 && close(fd) != 0 && !what) what = "cannot close the temp file", e = errno;
  if (!what && rename(c->tmp, c->path) != 0) what = "cannot rename the temp file", e = errno;
  if (!what) return;
  if (fd >= 0) unlink(c->tmp);
  if (log)
    fprintf(log, "kiln nvrtc: cache: %s for %s: %s (compiled anyway)\n", what, c->path,
            strerror(e));
}

/* ---------------------------------------------------------------- compiling ------ */

enum { N_OPTIONS = 3 };

typedef struct job {
  kir_graph *g;
  const char *source;
  const char *name;
  const char *arch;
  const kcg_nvrtc_options *opt;
  FILE *log;
  const char *options[N_OPTIONS];
  char arch_option[48];
} job;

/* SHA-256 over everything that decides the outcome: NVRTC version, options, arch, whether
 * warnings fail (a hit skips the log check), and the source. */
static kiln_status cache_key(const job *j, uint8_t key[32]) {
  sbuf b = {0};
  sb_printf(&b, "kiln-nvrtc-cache 1\n%s\n", s_nv.version);
  for (int i = 0; i < N_OPTIONS; i++) sb_printf(&b, "%s\n", j->options[i]);
  sb_printf(&b, "%s\nwarnings_are_errors=%d\n", j->arch,
            j->opt && j->opt->warnings_are_errors ? 1 : 0);
  size_t head = b.n, n = strlen(j->source);
  sb_reserve(&b, n);
  if (b.oom) {
    kir_free(b.p);
    return kir_seterr(j->g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory for the cache key");
  }
  memcpy(b.p + head, j->source, n);
  kart_sha256(b.p, head + n, key);
  kir_free(b.p);
  return KILN_OK;
}

/* The text of source line `line` (1-based) into b, escaped and cut; nothing if absent. */
static void quote_line(sbuf *b, const char *source, long line) {
  const char *p = source;
  for (long i = 1; i < line && p; i++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || line < 1) return;
  const char *end = strchr(p, '\n');
  size_t n = end ? (size_t)(end - p) : strlen(p);
  sb_printf(b, "  %ld | ", line);
  sb_put_clean(b, p, n > 160 ? 160 : n);
  sb_printf(b, "%s\n", n > 160 ? "..." : "");
}

/* The line number a log line "NAME(N): ..." points at, or -1. */
static long log_line_number(const char *line, const char *name) {
  size_t n = strlen(name);
  if (strncmp(line, name, n) != 0 || line[n] != '(') return -1;
  char *end;
  long v = strtol(line + n + 1, &end, 10);
  return end != line + n + 1 && end[0] == ')' && end[1] == ':' ? v : -1;
}

/* For each diagnostic line of the log (at most 16): the line, then the source line. */
static void quote_diagnostics(sbuf *b, const job *j, const char *log) {
  int quoted = 0;
  for (const char *p = log; *p && quoted < 16;) {
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    long line = log_line_number(p, j->name);
    if (line > 0) {
      sb_put_clean(b, p, n);
      sb_putc(b, '\n');
      quote_line(b, j->source, line);
      quoted++;
    }
    p += n + (end ? 1 : 0);
  }
}

/* Builds the whole failure message (what: NVRTC's status or why a warning failed), with
 * the quoted source lines first so they survive the cut on g; writes it whole to the log. */
static kiln_status report(const job *j, kiln_status st, const char *what, const char *log) {
  sbuf b = {0};
  sb_printf(&b, "kcg_nvrtc_compile: %s for %s: %s\n", j->name, j->arch, what);
  quote_diagnostics(&b, j, log);
  size_t n = strlen(log);
  while (n && (log[n - 1] == '\n' || log[n - 1] == ' ')) n--;
  sb_printf(&b, "NVRTC log:\n");
  sb_put_clean(&b, log, n);
  if (b.oom) {
    kir_free(b.p);
    return kir_seterr(j->g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory for the log");
  }
  if (j->log) fprintf(j->log, "%s\n", b.p);
  kir_seterr(j->g, st, "%s", b.p);
  kir_free(b.p);
  return st;
}

static const char *nv_error(int rc) {
  const char *s = s_nv.api.error_string(rc);
  return s ? s : "unknown NVRTC error";
}

/* An NVRTC call that failed outside compilation. */
static kiln_status nv_failed(const job *j, const char *call, int rc) {
  kiln_status st = rc == NV_OUT_OF_MEMORY ? KILN_ERR_NOMEM : KILN_ERR_COMPILE;
  if (j->log)
    fprintf(j->log, "kiln nvrtc: %s for %s: %s: %s\n", j->name, j->arch, call,
            nv_error(rc));
  return kir_seterr(j->g, st, "kcg_nvrtc_compile: %s for %s: %s: %s", j->name, j->arch, call,
                    nv_error(rc));
}

/* The program's log into *out (kir_malloc, NUL-terminated, "" when empty). */
static kiln_status fetch_log(const job *j, nv_prog p, char **out) {
  size_t n = 0;
  int rc = s_nv.api.log_size(p, &n);
  if (rc != NV_SUCCESS) return nv_failed(j, "nvrtcGetProgramLogSize", rc);
  *out = kir_malloc(n + 1);
  if (!*out) return kir_seterr(j->g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory for the log");
  (*out)[0] = (*out)[n] = '\0';
  rc = n ? s_nv.api.log(p, *out) : NV_SUCCESS;
  return rc == NV_SUCCESS ? KILN_OK : nv_failed(j, "nvrtcGetProgramLog", rc);
}

/* The compiled cubin or PTX into img. */
static kiln_status fetch_image(const job *j, nv_prog p, kcg_nvrtc_image *img) {
  size_t n = 0;
  int rc = img->ptx ? s_nv.api.ptx_size(p, &n) : s_nv.api.cubin_size(p, &n);
  if (rc != NV_SUCCESS) return nv_failed(j, img->ptx ? "nvrtcGetPTXSize" : "nvrtcGetCUBINSize", rc);
  if (n == 0)
    return kir_seterr(j->g, KILN_ERR_COMPILE, "kcg_nvrtc_compile: %s for %s: empty image",
                      j->name, j->arch);
  unsigned char *data = kir_malloc(n);
  if (!data) return kir_seterr(j->g, KILN_ERR_NOMEM, "kcg_nvrtc_compile: out of memory for the image");
  rc = img->ptx ? s_nv.api.ptx(p, (char *)data) : s_nv.api.cubin(p, (char *)data);
  if (rc == NV_SUCCESS && img->ptx && data[n - 1] != '\0') rc = -1;
  if (rc != NV_SUCCESS) {
    kir_free(data);
    if (rc == -1)
      return kir_seterr(j->g, KILN_ERR_COMPILE, "kcg_nvrtc_compile: %s for %s: PTX not terminated",
                        j->name, j->arch);
    return nv_failed(j, img->ptx ? "nvrtcGetPTX" : "nvrtcGetCUBIN", rc);
  }
  img->data = data;
  img->size = n;
  kart_sha256(data, n, img->hash);
  return KILN_OK;
}

/* Compiles an existing program, checks its log, and takes its image. */
static kiln_status run_program(const job *j, nv_prog p, kcg_nvrtc_image *img) {
  int rc = s_nv.api.compile(p, N_OPTIONS, j->options);
  if (rc == NV_OUT_OF_MEMORY) return nv_failed(j, "nvrtcCompileProgram", rc);
  char *log = NULL;
  kiln_status st = fetch_log(j, p, &log);
  if (st == KILN_OK && rc != NV_SUCCESS)
    st = report(j, KILN_ERR_COMPILE, nv_error(rc), log);
  else if (st == KILN_OK && j->opt && j->opt->warnings_are_errors && strstr(log, "warning"))
    st = report(j, KILN_ERR_COMPILE, "NVRTC warned, and warnings_are_errors is set", log);
  if (st == KILN_OK) st = fetch_image(j, p, img);
  kir_free(log);
  return st;
}

static kiln_status compile_one(const job *j, kcg_nvrtc_image *img) {
  nv_prog p = NULL;
  int rc = s_nv.api.create(&p, j->source, j->name, 0, NULL, NULL);
  if (rc != NV_SUCCESS) return nv_failed(j, "nvrtcCreateProgram", rc);
  kiln_status st = run_program(j, p, img);
  s_nv.api.destroy(&p);
  return st;
}

/* One architecture: from the cache when it holds a good entry, else compiled (and the
 * entry written). */
static kiln_status build_arch(job *j, cache *c, kcg_nvrtc_image *img) {
  snprintf(j->arch_option, sizeof j->arch_option, "--gpu-architecture=%s", j->arch);
  snprintf(img->arch, sizeof img->arch, "%s", j->arch);
  uint8_t key[32];
  char hex[65];
  kiln_status st = KILN_OK;
  double t0 = now_ms();
  if (c->dir) {
    st = cache_key(j, key);
    if (st != KILN_OK) return st;
    kart_hex(key, hex);
    snprintf(c->path, c->cap, "%s/%s.%s", c->dir, hex, img->ptx ? "ptx" : "cubin");
    st = cache_read(j->g, c, key, img, j->log);
    if (st != KILN_OK || img->data) {
      if (img->data && j->log)
        fprintf(j->log, "kiln nvrtc: %s %s: cache hit %s (%zu bytes) in %.1f ms\n", j->name,
                j->arch, c->path, img->size, now_ms() - t0);
      return st;
    }
  }
  st = compile_one(j, img);
  if (st != KILN_OK) return st;
  if (j->log)
    fprintf(j->log, "kiln nvrtc: %s %s: compiled %zu bytes in %.1f ms\n", j->name, j->arch,
            img->size, now_ms() - t0);
  if (c->dir) cache_write(c, hex, key, img, j->log);
  return KILN_OK;
}

/* ---------------------------------------------------------------- the API -------- */

static kiln_status check_args(kir_graph *g, const char *source, const char *const *archs,
                              int32_t n_archs, kcg_nvrtc_image *images) {
  if (!source || n_archs < 0 || (n_archs > 0 && (!archs || !images)))
    return kir_seterr(g, KILN_ERR_ARGUMENT,
                      "kcg_nvrtc_compile: NULL source, archs or images, or n_archs %d < 0",
                      (int)n_archs);
  for (int32_t i = 0; i < n_archs; i++) {
    bool ptx;
    char esc[80];
    if (!archs[i] || strlen(archs[i]) >= sizeof images[i].arch || !arch_ok(archs[i], &ptx))
      return kir_seterr(g, KILN_ERR_ARGUMENT,
                        "kcg_nvrtc_compile: archs[%d] = \"%s\" is not sm_NN or compute_NN",
                        (int)i, archs[i] ? kir_escape(archs[i], esc, sizeof esc) : "(null)");
  }
  return KILN_OK;
}

kiln_status kcg_nvrtc_compile(kir_graph *g, const char *source, const char *name,
                              const char *const *archs, int32_t n_archs,
                              const kcg_nvrtc_options *opt, kcg_nvrtc_image *images) {
  for (int32_t i = 0; images && i < n_archs; i++) memset(&images[i], 0, sizeof images[i]);
  kiln_status st = check_args(g, source, archs, n_archs, images);
  if (st != KILN_OK) return st;
  char why[512];
  if (!kcg_nvrtc_available(why, sizeof why))
    return kir_seterr(g, KILN_ERR_UNSUPPORTED, "kcg_nvrtc_compile: NVRTC is not available: %s",
                      why);
  job j = {.g = g, .source = source, .name = name && name[0] ? name : "model.cu", .opt = opt,
           .log = opt ? opt->log : NULL};
  j.options[0] = j.arch_option;
  j.options[1] = "--std=c++17";
  j.options[2] = "--device-as-default-execution-space";
  cache c;
  st = cache_open(g, opt, &c);
  for (int32_t i = 0; i < n_archs && st == KILN_OK; i++) {
    j.arch = archs[i];
    arch_ok(archs[i], &images[i].ptx);
    st = build_arch(&j, &c, &images[i]);
  }
  cache_close(&c);
  for (int32_t i = 0; st != KILN_OK && i < n_archs; i++) kcg_nvrtc_image_free(&images[i]);
  return st;
}

void kcg_nvrtc_image_free(kcg_nvrtc_image *img) {
  if (!img) return;
  kir_free(img->data);
  memset(img, 0, sizeof *img);
}
