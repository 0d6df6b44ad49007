/* test_nvrtc.c — kcg_nvrtc_*: NVRTC opened at run time compiles small kernels to cubin
 * and PTX, reports errors with the quoted source lines, fails on warnings when asked,
 * caches images on disk (hits, corrupt entries, unwritable and disabled caches), and
 * leaks nothing under injected out-of-memory. Exits 77 when NVRTC cannot be opened. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "codegen/kcg_cuda.h"
#include "ir/kir_alloc.h"
#include "runtime/kiln_artifact.h"
#include "tests/kt.h"
#include "tests/kt_child.h"

static const char k_ok[] =
    "extern \"C\" __global__ void kiln_k0(unsigned char *arena,\n"
    "                                    const unsigned char *weights,\n"
    "                                    void *const *io) {\n"
    "  float *x = (float *)(arena + 0);\n"
    "  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < 64u) x[i] = x[i] * 2.0f + 1.0f;\n"
    "}\n";

/* Errors on lines 3 and 5. */
static const char k_err[] =
    "extern \"C\" __global__ void kiln_k1(float *x) {\n"
    "  unsigned i = threadIdx.x;\n"
    "  x[i] = undefined_y;\n"
    "  x[i + 1] = 2.0f;\n"
    "  x[i + 2] = undefined_z;\n"
    "}\n";

/* Compiles, with a warning on line 2 (a variable declared but never referenced). */
static const char k_warn[] =
    "extern \"C\" __global__ void kiln_k2(float *x) {\n"
    "  int never_used;\n"
    "  x[threadIdx.x] = 1.0f;\n"
    "}\n";

static char s_root[4096]; /* this run's temp directory */

/* ---------------------------------------------------------------- helpers ------- */

static const char *tmp_path(const char *name) {
  static char buf[8][4200];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", s_root, name);
  return p;
}

static void remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char sub[8192];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      remove_tree(sub);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* Entries of dir ending in suffix ("" counts all); the last match's path into found. */
static int count_entries(const char *dir, const char *suffix, char *found, size_t found_n) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name), sl = strlen(suffix);
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (len < sl || strcmp(e->d_name + len - sl, suffix) != 0) continue;
    n++;
    if (found) snprintf(found, found_n, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  return n;
}

static unsigned char *read_whole(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len + 1);
  assert_non_null(p);
  assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

static void write_whole(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  fclose(f);
}

/* A log that the test reads back. */
typedef struct capture {
  FILE *f;
  char *text;
  size_t n;
} capture;

static FILE *cap_open(capture *c) {
  memset(c, 0, sizeof *c);
  c->f = open_memstream(&c->text, &c->n);
  assert_non_null(c->f);
  return c->f;
}

static const char *cap_text(capture *c) {
  fflush(c->f);
  return c->text;
}

static void cap_close(capture *c) {
  fclose(c->f);
  free(c->text);
}

static kiln_status compile1(kir_graph *g, const char *src, const char *arch,
                            const char *cache_dir, bool werror, FILE *log,
                            kcg_nvrtc_image *img) {
  kcg_nvrtc_options opt = {.cache_dir = cache_dir, .warnings_are_errors = werror, .log = log};
  const char *archs[1] = {arch};
  return kcg_nvrtc_compile(g, src, "model.cu", archs, 1, &opt, img);
}

static void assert_hash(const kcg_nvrtc_image *img) {
  uint8_t sum[32];
  kart_sha256(img->data, img->size, sum);
  assert_memory_equal(sum, img->hash, 32);
}

static void assert_zeroed(const kcg_nvrtc_image *img) {
  assert_null(img->data);
  assert_int_equal(img->size, 0);
}

/* ---------------------------------------------------------------- compiling ----- */

static void test_version(void **state) {
  (void)state;
  const char *v = kcg_nvrtc_version();
  assert_true(v[0] >= '0' && v[0] <= '9');
  assert_non_null(strchr(v, '.'));
  char why[256] = "x";
  assert_true(kcg_nvrtc_available(why, sizeof why));
  assert_string_equal(why, "");
}

static void test_archs(void **state) {
  (void)state;
  const char *archs[3] = {"sm_80", "sm_90", "compute_90"};
  kcg_nvrtc_image img[3];
  capture cap;
  kcg_nvrtc_options opt = {.cache_dir = "", .log = cap_open(&cap)};
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, "model.cu", archs, 3, &opt, img), KILN_OK);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(img[i].arch, archs[i]);
    assert_int_equal(img[i].ptx, i == 2);
    assert_false(img[i].from_cache);
    assert_true(img[i].size > 16);
    assert_hash(&img[i]);
  }
  assert_memory_equal(img[0].data, "\x7f" "ELF", 4);
  assert_memory_equal(img[1].data, "\x7f" "ELF", 4);
  const char *ptx = (const char *)img[2].data;
  assert_int_equal(ptx[img[2].size - 1], '\0');
  assert_int_equal(strlen(ptx) + 1, img[2].size);
  assert_non_null(strstr(ptx, ".target sm_90"));
  assert_non_null(strstr(ptx, "kiln_k0"));
  const char *log = cap_text(&cap);
  assert_non_null(strstr(log, "model.cu sm_90: compiled"));
  printf("%s", log); /* the compile times, not asserted */
  for (int i = 0; i < 3; i++) kcg_nvrtc_image_free(&img[i]);
  for (int i = 0; i < 3; i++) assert_zeroed(&img[i]);
  kcg_nvrtc_image_free(NULL);
  cap_close(&cap);
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), live);
}

static void test_error(void **state) {
  (void)state;
  kcg_nvrtc_image img;
  capture cap;
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  assert_int_equal(compile1(g, k_err, "sm_90", "", false, cap_open(&cap), &img),
                   KILN_ERR_COMPILE);
  assert_int_equal(g->status, KILN_ERR_COMPILE);
  assert_non_null(strstr(g->error, "model.cu(3): error: identifier \"undefined_y\" is undefined"));
  assert_non_null(strstr(g->error, "  3 |   x[i] = undefined_y;\n"));
  assert_non_null(strstr(g->error, "  5 |   x[i + 2] = undefined_z;\n"));
  assert_null(strstr(g->error, "  4 |"));
  const char *log = cap_text(&cap);
  assert_non_null(strstr(log, "2 errors detected in the compilation of \"model.cu\""));
  assert_non_null(strstr(log, "  5 |   x[i + 2] = undefined_z;"));
  assert_zeroed(&img);
  /* No graph: the status still comes back. */
  assert_int_equal(compile1(NULL, k_err, "sm_90", "", false, NULL, &img), KILN_ERR_COMPILE);
  assert_zeroed(&img);
  cap_close(&cap);
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), live);
}

/* A later architecture failing frees the images compiled before it. */
static void test_error_frees_earlier(void **state) {
  (void)state;
  const char *archs[2] = {"sm_90", "sm_12"}; /* well-formed, but not an NVRTC target */
  kcg_nvrtc_image img[2];
  long live = kir_alloc_live();
  kir_graph *g = kir_graph_create();
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, "model.cu", archs, 2, NULL, img),
                   KILN_ERR_COMPILE);
  assert_non_null(strstr(g->error, "sm_12"));
  assert_non_null(strstr(g->error, "gpu-architecture"));
  assert_zeroed(&img[0]);
  assert_zeroed(&img[1]);
  kir_graph_destroy(g);
  assert_int_equal(kir_alloc_live(), live);
}

static void test_warning(void **state) {
  (void)state;
  kcg_nvrtc_image img;
  kir_graph *g = kir_graph_create();
  assert_int_equal(compile1(g, k_warn, "sm_90", "", false, NULL, &img), KILN_OK);
  assert_memory_equal(img.data, "\x7f" "ELF", 4);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(compile1(g, k_warn, "sm_90", "", true, NULL, &img), KILN_ERR_COMPILE);
  assert_non_null(strstr(g->error, "warnings_are_errors"));
  assert_non_null(strstr(g->error, "model.cu(2): warning"));
  assert_non_null(strstr(g->error, "  2 |   int never_used;\n"));
  assert_zeroed(&img);
  /* The clean kernel passes with warnings_are_errors. */
  assert_int_equal(compile1(g, k_ok, "sm_90", "", true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  kir_graph_destroy(g);
}

static void test_bad_args(void **state) {
  (void)state;
  kcg_nvrtc_image img[2];
  kir_graph *g = kir_graph_create();
  const char *bad[] = {"sm_9", "sm_9999", "sm90", "compute_", "sm_90x", "gfx90a",
                       "sm_90\n#include", "compute_1000000000000000"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(compile1(g, k_ok, bad[i], "", false, NULL, img), KILN_ERR_ARGUMENT);
    assert_non_null(strstr(g->error, "archs[0]"));
    assert_null(strchr(g->error, '\n'));
  }
  const char *archs[2] = {"sm_90", NULL};
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, NULL, archs, 2, NULL, img), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_nvrtc_compile(g, NULL, NULL, archs, 1, NULL, img), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, NULL, NULL, 1, NULL, img), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, NULL, archs, 1, NULL, NULL), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, NULL, archs, -1, NULL, img), KILN_ERR_ARGUMENT);
  assert_int_equal(kcg_nvrtc_compile(g, k_ok, NULL, archs, 0, NULL, img), KILN_OK);
  /* Accepted forms (sm_90a: the arch-specific target). */
  assert_int_equal(compile1(g, k_ok, "sm_90a", "", false, NULL, img), KILN_OK);
  kcg_nvrtc_image_free(img);
  kir_graph_destroy(g);
}

/* ---------------------------------------------------------------- the cache ----- */

static void test_cache(void **state) {
  (void)state;
  const char *dir = tmp_path("cache/a/b"); /* missing, nested */
  char entry[4300];
  kcg_nvrtc_image first, img;
  kir_graph *g = kir_graph_create();
  assert_int_equal(compile1(g, k_ok, "sm_90", dir, true, NULL, &first), KILN_OK);
  assert_false(first.from_cache);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  assert_int_equal(count_entries(dir, "", NULL, 0), 1);
  assert_int_equal(count_entries(dir, ".cubin", entry, sizeof entry), 1);
  size_t good_n;
  unsigned char *good = read_whole(entry, &good_n);
  assert_int_equal(good_n, 80 + first.size);

  assert_int_equal(compile1(g, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  assert_true(img.from_cache);
  assert_int_equal(img.size, first.size);
  assert_memory_equal(img.data, first.data, img.size);
  assert_memory_equal(img.hash, first.hash, 32);
  assert_string_equal(img.arch, "sm_90");
  kcg_nvrtc_image_free(&img);

  /* Corrupted entries: a flipped payload byte, a flipped header byte, truncations. */
  size_t cuts[] = {good_n, 80 + 7, 79, 0};
  size_t flips[] = {100, 9, 0, 0};
  for (int k = 0; k < 4; k++) {
    unsigned char *bad = malloc(good_n);
    memcpy(bad, good, good_n);
    if (k < 2) bad[flips[k]] ^= 0x40;
    write_whole(entry, bad, cuts[k]);
    free(bad);
    capture cap;
    assert_int_equal(compile1(g, k_ok, "sm_90", dir, true, cap_open(&cap), &img), KILN_OK);
    assert_false(img.from_cache);
    assert_int_equal(img.size, first.size);
    assert_memory_equal(img.data, first.data, img.size);
    assert_non_null(strstr(cap_text(&cap), "cache: ignoring"));
    cap_close(&cap);
    kcg_nvrtc_image_free(&img);
    size_t n;
    unsigned char *now = read_whole(entry, &n); /* rewritten whole */
    assert_int_equal(n, good_n);
    assert_memory_equal(now, good, n);
    free(now);
    assert_int_equal(count_entries(dir, "", NULL, 0), 1); /* no temp file left */
  }
  assert_int_equal(compile1(g, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  assert_true(img.from_cache);
  kcg_nvrtc_image_free(&img);

  /* Another arch, another source, a PTX target: new entries beside the first. */
  assert_int_equal(compile1(g, k_ok, "sm_80", dir, true, NULL, &img), KILN_OK);
  assert_false(img.from_cache);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(dir, ".cubin", NULL, 0), 2);
  char other[sizeof k_ok + 32];
  snprintf(other, sizeof other, "// another\n%s", k_ok);
  assert_int_equal(compile1(g, other, "sm_90", dir, true, NULL, &img), KILN_OK);
  assert_false(img.from_cache);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(dir, ".cubin", NULL, 0), 3);
  assert_int_equal(compile1(g, k_ok, "compute_90", dir, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(compile1(g, k_ok, "compute_90", dir, true, NULL, &img), KILN_OK);
  assert_true(img.from_cache && img.ptx);
  assert_non_null(strstr((const char *)img.data, ".target sm_90"));
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(dir, ".ptx", NULL, 0), 1);
  assert_int_equal(count_entries(dir, "", NULL, 0), 4);
  /* The first entry is still a hit. */
  assert_int_equal(compile1(g, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  assert_true(img.from_cache);
  kcg_nvrtc_image_free(&img);
  free(good);
  kcg_nvrtc_image_free(&first);
  kir_graph_destroy(g);
}

/* A symlink or directory under an entry's name is ignored, never followed. */
static void test_cache_odd_entries(void **state) {
  (void)state;
  const char *dir = tmp_path("cache-odd");
  char entry[4300];
  kcg_nvrtc_image img;
  assert_int_equal(compile1(NULL, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(dir, ".cubin", entry, sizeof entry), 1);
  size_t n;
  unsigned char *good = read_whole(entry, &n);
  const char *target = tmp_path("cache-odd-target");
  write_whole(target, good, n);
  assert_int_equal(unlink(entry), 0);
  assert_int_equal(symlink(target, entry), 0);
  assert_int_equal(compile1(NULL, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  assert_false(img.from_cache);
  kcg_nvrtc_image_free(&img);
  struct stat sb;
  assert_int_equal(lstat(entry, &sb), 0);
  assert_true(S_ISREG(sb.st_mode)); /* the link was replaced by a real entry */
  free(good);
}

static int count_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return 0;
  if (!S_ISDIR(sb.st_mode)) return 1;
  int n = 1;
  DIR *d = opendir(path);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char sub[8192];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    n += count_tree(sub);
  }
  if (d) closedir(d);
  return n;
}

typedef struct saved_env {
  const char *name;
  char *value; /* NULL: was unset */
} saved_env;

static void env_save(saved_env *s, const char *name) {
  const char *v = getenv(name);
  s->name = name;
  s->value = v ? strdup(v) : NULL;
  unsetenv(name);
}

static void env_restore(saved_env *s) {
  if (s->value)
    setenv(s->name, s->value, 1);
  else
    unsetenv(s->name);
  free(s->value);
}

/* Where NULL puts the cache, and that "" touches nothing. */
static void test_cache_location(void **state) {
  (void)state;
  saved_env env[3];
  env_save(&env[0], "KILN_CACHE_DIR");
  env_save(&env[1], "XDG_CACHE_HOME");
  env_save(&env[2], "HOME");
  kcg_nvrtc_image img;
  setenv("HOME", tmp_path("home"), 1);
  assert_int_equal(compile1(NULL, k_ok, "sm_90", NULL, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(tmp_path("home/.cache/kiln/nvrtc"), ".cubin", NULL, 0), 1);
  setenv("XDG_CACHE_HOME", tmp_path("xdg"), 1);
  assert_int_equal(compile1(NULL, k_ok, "sm_90", NULL, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(tmp_path("xdg/kiln/nvrtc"), ".cubin", NULL, 0), 1);
  setenv("KILN_CACHE_DIR", tmp_path("kc"), 1);
  assert_int_equal(compile1(NULL, k_ok, "sm_90", NULL, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_entries(tmp_path("kc"), ".cubin", NULL, 0), 1);
  int before = count_tree(s_root);
  assert_int_equal(compile1(NULL, k_ok, "sm_80", "", true, NULL, &img), KILN_OK);
  assert_false(img.from_cache);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_tree(s_root), before);
  setenv("KILN_CACHE_DIR", "", 1); /* set but empty: off */
  assert_int_equal(compile1(NULL, k_ok, "sm_80", NULL, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
  assert_int_equal(count_tree(s_root), before);
  for (int i = 0; i < 3; i++) env_restore(&env[i]);
}

static void test_cache_unwritable(void **state) {
  (void)state;
  const char *file = tmp_path("plain-file");
  write_whole(file, "x", 1);
  const char *dir = tmp_path("plain-file/cache");
  kcg_nvrtc_image img;
  for (int k = 0; k < 2; k++) {
    capture cap;
    assert_int_equal(compile1(NULL, k_ok, "sm_90", dir, true, cap_open(&cap), &img), KILN_OK);
    assert_false(img.from_cache);
    assert_memory_equal(img.data, "\x7f" "ELF", 4);
    assert_non_null(strstr(cap_text(&cap), "cache: cannot create the directory"));
    assert_non_null(strstr(cap_text(&cap), "compiled anyway"));
    cap_close(&cap);
    kcg_nvrtc_image_free(&img);
  }
  /* Nor does a missing log or graph matter. */
  assert_int_equal(compile1(NULL, k_ok, "sm_90", dir, true, NULL, &img), KILN_OK);
  kcg_nvrtc_image_free(&img);
}

/* ---------------------------------------------------------------- out of memory -- */

/* Fails the nth allocation for n = 0.. until the call returns `want`; every other result
 * must be KILN_ERR_NOMEM with nothing leaked and no image left. */
static void oom_loop(const char *src, const char *dir, kiln_status want, int want_hit) {
  const char *archs[2] = {"sm_90", "compute_90"};
  int failures = 0;
  kiln_status st = KILN_ERR_NOMEM;
  for (long n = 0; st != want; n++) {
    assert_true(n < 200);
    long live = kir_alloc_live();
    kir_graph *g = kir_graph_create();
    kcg_nvrtc_image img[2];
    kcg_nvrtc_options opt = {.cache_dir = dir};
    kir_alloc_fail_after(n);
    st = kcg_nvrtc_compile(g, src, "model.cu", archs, 2, &opt, img);
    kir_alloc_fail_after(-1);
    if (st != want) {
      failures++;
      if (st != KILN_ERR_NOMEM) fail_msg("n=%ld: %s: %s", n, kiln_status_name(st), g->error);
      assert_int_equal(g->status, KILN_ERR_NOMEM);
    }
    if (st == KILN_OK && want_hit >= 0) assert_int_equal(img[0].from_cache, want_hit);
    if (st != KILN_OK) assert_zeroed(&img[0]);
    if (st != KILN_OK) assert_zeroed(&img[1]);
    kcg_nvrtc_image_free(&img[0]);
    kcg_nvrtc_image_free(&img[1]);
    kir_graph_destroy(g);
    if (kir_alloc_live() != live) fail_msg("n=%ld leaked %ld blocks", n, kir_alloc_live() - live);
  }
  assert_true(failures > 0);
}

static void test_oom(void **state) {
  (void)state;
  const char *dir = tmp_path("cache-oom");
  oom_loop(k_ok, "", KILN_OK, 0);              /* compile, no cache */
  oom_loop(k_ok, dir, KILN_OK, -1);            /* compile, entries written as it goes */
  oom_loop(k_ok, dir, KILN_OK, 1);             /* hits */
  oom_loop(k_err, "", KILN_ERR_COMPILE, -1);   /* the message */
  oom_loop(k_warn, "", KILN_OK, 0);
}

/* ---------------------------------------------------------------- no NVRTC ------ */

/* Runs in a fresh process with KILN_NVRTC_LIBRARY=/nonexistent/libnvrtc.so. */
static int child_missing(void) {
  char why[512];
  if (kcg_nvrtc_available(why, sizeof why)) return 10;
  if (!strstr(why, "/nonexistent/libnvrtc.so")) return 11;
  if (strcmp(kcg_nvrtc_version(), "") != 0) return 12;
  kir_graph *g = kir_graph_create();
  if (!g) return 13;
  kcg_nvrtc_image img;
  const char *archs[1] = {"sm_90"};
  kiln_status st = kcg_nvrtc_compile(g, k_ok, "model.cu", archs, 1, NULL, &img);
  int rc = st != KILN_ERR_UNSUPPORTED                           ? 14
           : !strstr(g->error, "/nonexistent/libnvrtc.so")       ? 15
           : img.data != NULL                                    ? 16
           : kcg_nvrtc_compile(NULL, k_ok, NULL, archs, 1, NULL, &img) != KILN_ERR_UNSUPPORTED
               ? 17
               : 0;
  if (rc) fprintf(stderr, "child: %s\n", g->error);
  kir_graph_destroy(g);
  return rc;
}

static void test_missing_library(void **state) {
  (void)state;
  const char *args[] = {"--child-missing", NULL}, *env[] = {"KILN_NVRTC_LIBRARY=/nonexistent/libnvrtc.so", NULL};
  assert_int_equal(kt_child(args, env, NULL, 0), 0);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--child-missing")) return child_missing();
  char why[512];
  if (!kcg_nvrtc_available(why, sizeof why)) {
    printf("test_nvrtc: skipped: NVRTC is not available: %s\n", why);
    return 77;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(s_root, sizeof s_root, "%s/kiln-nvrtc-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(s_root)) {
    fprintf(stderr, "test_nvrtc: cannot create a temp dir under %s: %s\n",
            tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
    return 1;
  }
  printf("test_nvrtc: NVRTC %s, temp dir %s\n", kcg_nvrtc_version(), s_root);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_archs),
      cmocka_unit_test(test_error),
      cmocka_unit_test(test_error_frees_earlier),
      cmocka_unit_test(test_warning),
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_cache),
      cmocka_unit_test(test_cache_odd_entries),
      cmocka_unit_test(test_cache_location),
      cmocka_unit_test(test_cache_unwritable),
      cmocka_unit_test(test_oom),
      cmocka_unit_test(test_missing_library),
  };
  int rc = cmocka_run_group_tests_name("nvrtc", tests, NULL, NULL);
  remove_tree(s_root);
  return rc;
}
