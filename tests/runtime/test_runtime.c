/* test_runtime.c — libkiln_rt: SHA-256 vectors, the artifact container (round trip and
 * every kind of corruption), plan validation, real artifacts whose code is compiled
 * here with the system cc, run-time argument checks, .npy files, and a check that the
 * runtime's sources include nothing from the compiler. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ir/kiln_types.h"
#include "kiln_artifact.pb-c.h"
#include "rt_fixture.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_runtime.h"

/* The runtime repeats the compiler's numbers; they must agree. */
_Static_assert(KILN_RT_OK == (int)KILN_OK, "ok");
_Static_assert(KILN_RT_ERR_ARGUMENT == (int)KILN_ERR_ARGUMENT, "argument");
_Static_assert(KILN_RT_ERR_FORMAT == (int)KILN_ERR_FORMAT, "format");
_Static_assert(KILN_RT_ERR_LIMIT == (int)KILN_ERR_LIMIT, "limit");
_Static_assert(KILN_RT_ERR_UNSUPPORTED == (int)KILN_ERR_UNSUPPORTED, "unsupported");
_Static_assert(KILN_RT_ERR_SHAPE == (int)KILN_ERR_SHAPE, "shape");
_Static_assert(KILN_RT_ERR_TYPE == (int)KILN_ERR_TYPE, "type");
_Static_assert(KILN_RT_ERR_OVERFLOW == (int)KILN_ERR_OVERFLOW, "overflow");
_Static_assert(KILN_RT_ERR_PATH == (int)KILN_ERR_PATH, "path");
_Static_assert(KILN_RT_ERR_INTEGRITY == (int)KILN_ERR_INTEGRITY, "integrity");
_Static_assert(KILN_RT_ERR_FEED == (int)KILN_ERR_FEED, "feed");
_Static_assert(KILN_RT_ERR_NOMEM == (int)KILN_ERR_NOMEM, "nomem");
_Static_assert(KILN_RT_ERR_IO == (int)KILN_ERR_IO, "io");
_Static_assert(KILN_RT_ERR_EXEC == (int)KILN_ERR_EXEC, "exec");
_Static_assert(KILN_RT_ERR_VERSION == (int)KILN_ERR_VERSION, "version");
_Static_assert(KILN_RT_ERR_DEVICE == (int)KILN_ERR_DEVICE, "device");
_Static_assert(KILN_RT_F32 == (int)KILN_F32 && KILN_RT_F64 == (int)KILN_F64 &&
                   KILN_RT_I32 == (int)KILN_I32 && KILN_RT_I64 == (int)KILN_I64 &&
                   KILN_RT_BOOL == (int)KILN_BOOL && KILN_RT_MAX_RANK == KILN_MAX_RANK,
               "dtypes");

/* ---- fixtures: tests/runtime/rt_fixture.h (temp dir, scale artifact, plans) ---- */

static const char SRC_DIV[] =
    "const unsigned kiln_abi_version = 1;\n"
    "int kiln_entry(const void *const *in, void *const *out, unsigned char *arena,\n"
    "               const unsigned char *weights) {\n"
    "  const int *a = in[0], *b = in[1]; int *o = out[0];\n"
    "  (void)arena; (void)weights;\n"
    "  for (int i = 0; i < 3; i++) { if (b[i] == 0) return 2; o[i] = a[i] / b[i]; }\n"
    "  return 0;\n"
    "}\n";

static const char SRC_NOABI[] =
    "int kiln_entry(const void *const *in, void *const *out, unsigned char *arena,\n"
    "               const unsigned char *weights) {\n"
    "  (void)in; (void)out; (void)arena; (void)weights; return 0; }\n";

static const char SRC_ABI2[] =
    "const unsigned kiln_abi_version = 2;\n"
    "int kiln_entry(const void *const *in, void *const *out, unsigned char *arena,\n"
    "               const unsigned char *weights) {\n"
    "  (void)in; (void)out; (void)arena; (void)weights; return 0; }\n";

static int group_setup(void **state) {
  (void)state;
  const char *tmp = getenv("TMPDIR");
  snprintf(rtf_dir, sizeof rtf_dir, "%s/kiln-rt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(rtf_dir)) return -1;
  rtf_compile_so("scale", RTF_SRC_SCALE);
  rtf_compile_so("div", SRC_DIV);
  rtf_compile_so("noabi", SRC_NOABI);
  rtf_compile_so("abi2", SRC_ABI2);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", rtf_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *scale_artifact(void) {
  rtf_plan t;
  rtf_plan_scale(&t);
  const char *p = rtf_path("scale.kart");
  assert_int_equal(rtf_pack_artifact(p, &t.plan, RTF_SCALE_W, sizeof RTF_SCALE_W, "scale.so"), KILN_RT_OK);
  return p;
}

/* Opens path, expects status st and a message starting with the path and holding want. */
static void expect_open(const char *path, kiln_rt_status st, const char *want) {
  kiln_rt_model *m = NULL;
  kiln_rt_status got = kiln_rt_model_open(path, &m);
  assert_non_null(m);
  const char *msg = kiln_rt_model_error(m);
  int prefixed = st == KILN_RT_OK ? msg[0] == '\0' : strncmp(msg, path, strlen(path)) == 0;
  if (got != st || !prefixed || (want && !strstr(msg, want)))
    fail_msg("open %s: got %s \"%s\", want %s with \"%s\"", path, kiln_rt_status_name(got), msg,
             kiln_rt_status_name(st), want ? want : "");
  if (st != KILN_RT_OK) {
    assert_int_equal(kiln_rt_model_num_inputs(m), 0);
    kiln_rt_context *c = (kiln_rt_context *)1;
    assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_ERR_ARGUMENT);
    assert_null(c);
  }
  kiln_rt_model_close(m);
}

/* Packs plan t with the scale weights and code so, then expects st. */
static void expect_plan(rtf_plan *t, const char *so, kiln_rt_status st, const char *want) {
  const char *p = rtf_path("plan.kart");
  assert_int_equal(rtf_pack_artifact(p, &t->plan, RTF_SCALE_W, sizeof RTF_SCALE_W, so), KILN_RT_OK);
  expect_open(p, st, want);
}

/* ---- SHA-256 ---- */

static void check_sha(const void *data, size_t n, const char *hex) {
  uint8_t d[32];
  char h[65];
  kart_sha256(data, n, d);
  kart_hex(d, h);
  assert_string_equal(h, hex);
}

static void test_sha256_vectors(void **state) {
  (void)state;
  check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  check_sha(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  char *a = malloc(1000000);
  assert_non_null(a);
  memset(a, 'a', 1000000);
  check_sha(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
  /* Lengths around the padding boundary (55, 56, 64) against known digests. */
  char b[64];
  memset(b, 'a', sizeof b);
  check_sha(b, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  check_sha(b, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  check_sha(b, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

/* ---- container ---- */

static void put_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static uint8_t *entry_at(uint8_t *b, int i) { return b + KART_HEADER_BYTES + i * KART_ENTRY_BYTES; }

static uint8_t g_w[100], g_code[70];

/* A synthetic 4-section container, returned as bytes. */
static uint8_t *small_container(size_t *n) {
  for (int i = 0; i < 100; i++) g_w[i] = (uint8_t)(i * 7);
  for (int i = 0; i < 70; i++) g_code[i] = (uint8_t)(255 - i);
  kart_section s[4] = {{.kind = KART_SEC_PLAN, .data = (const uint8_t *)"PLANDATA", .size = 8},
                       {.kind = KART_SEC_WEIGHTS, .data = g_w, .size = 100},
                       {.kind = KART_SEC_CODE_CPU, .data = g_code, .size = 70},
                       {.kind = KART_SEC_SOURCE_C, .data = NULL, .size = 0}};
  char err[256];
  assert_int_equal(kart_write(rtf_path("small.kart"), s, 4, err, sizeof err), KILN_RT_OK);
  return rtf_slurp(rtf_path("small.kart"), n);
}

static void expect_parse(const uint8_t *b, size_t n, int st, const char *want) {
  kart_section s[KART_MAX_SECTIONS];
  int ns = -1;
  char err[512] = "";
  int got = kart_parse(b, n, s, &ns, err, sizeof err);
  if (got != st || (want && !strstr(err, want)))
    fail_msg("parse: got %d \"%s\", want %d with \"%s\"", got, err, st, want ? want : "");
  if (st) assert_int_equal(ns, 0);
}

static void test_container_round_trip(void **state) {
  (void)state;
  size_t n;
  uint8_t *b = small_container(&n);
  kart_section s[KART_MAX_SECTIONS];
  int ns = 0;
  char err[256];
  assert_int_equal(kart_parse(b, n, s, &ns, err, sizeof err), KILN_RT_OK);
  assert_int_equal(ns, 4);
  assert_int_equal(get_le(b + 16, 8), n);
  for (int i = 0; i < ns; i++) {
    assert_int_equal(s[i].offset % KART_ALIGN, 0);
    assert_true(s[i].offset >= KART_HEADER_BYTES + 4 * KART_ENTRY_BYTES);
  }
  const kart_section *w = kart_find(s, ns, KART_SEC_WEIGHTS);
  assert_non_null(w);
  assert_int_equal(w->size, 100);
  assert_memory_equal(w->data, g_w, 100);
  assert_memory_equal(kart_find(s, ns, KART_SEC_PLAN)->data, "PLANDATA", 8);
  assert_memory_equal(kart_find(s, ns, KART_SEC_CODE_CPU)->data, g_code, 70);
  assert_int_equal(kart_find(s, ns, KART_SEC_SOURCE_C)->size, 0);
  assert_null(kart_find(s, 3, KART_SEC_SOURCE_C));
  /* Padding between sections is zero. */
  for (size_t i = s[0].offset + 8; i < s[1].offset; i++) assert_int_equal(b[i], 0);
  free(b);
}

static void test_container_corrupt(void **state) {
  (void)state;
  size_t n;
  uint8_t *good = small_container(&n);
  uint8_t *b = malloc(n + 64);
  assert_non_null(b);
#define RESET() memcpy(b, good, n)
  RESET();
  b[0] = 'X';
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "magic");
  RESET();
  put_le(b + 8, 2, 2);
  expect_parse(b, n, KILN_RT_ERR_VERSION, "artifact format 2.0 is newer than this runtime (1.x)");
  RESET();
  put_le(b + 12, 0, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "n_sections is 0");
  RESET();
  put_le(b + 12, 17, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "n_sections is 17");
  RESET();
  put_le(b + 16, n + 1, 8);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "file_size");
  RESET();
  b[n] = 0; /* one byte more than the header says */
  expect_parse(b, n + 1, KILN_RT_ERR_FORMAT, "file_size");
  RESET();
  b[40] = 1;
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "reserved");
  RESET();
  put_le(entry_at(b, 1) + 4, 1, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "reserved");
  RESET();
  put_le(entry_at(b, 1) + 16, n, 8); /* section past the end */
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "past the end");
  RESET();
  put_le(entry_at(b, 1) + 8, UINT64_MAX - 63, 8); /* offset + size wraps around */
  put_le(entry_at(b, 1) + 16, 128, 8);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "past the end");
  RESET();
  put_le(entry_at(b, 1) + 16, UINT64_MAX, 8);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "past the end");
  RESET();
  put_le(entry_at(b, 1) + 8, get_le(entry_at(b, 1) + 8, 8) + 1, 8);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "aligned");
  RESET();
  put_le(entry_at(b, 0) + 8, 0, 8); /* inside the header */
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "inside the header");
  RESET();
  memcpy(entry_at(b, 2) + 8, entry_at(b, 1) + 8, 8); /* code at the weights' offset */
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "overlap");
  RESET();
  put_le(entry_at(b, 2), KART_SEC_WEIGHTS, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "both weights");
  RESET();
  put_le(entry_at(b, 3), 99, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "unknown kind 99");
  RESET();
  put_le(b + 12, 1000, 4);
  expect_parse(b, n, KILN_RT_ERR_FORMAT, "n_sections");
  /* A flipped byte in each non-empty section: the hash names the section. */
  static const char *names[3] = {"section 0 (plan) hash mismatch", "section 1 (weights) hash mismatch",
                                 "section 2 (code) hash mismatch"};
  for (int i = 0; i < 3; i++) {
    RESET();
    uint64_t off = get_le(entry_at(b, i) + 8, 8), size = get_le(entry_at(b, i) + 16, 8);
    b[off + size / 2] ^= 0x10;
    expect_parse(b, n, KILN_RT_ERR_INTEGRITY, names[i]);
  }
  /* The stored hash itself flipped. */
  RESET();
  entry_at(b, 1)[24] ^= 1;
  expect_parse(b, n, KILN_RT_ERR_INTEGRITY, "expected ");
  RESET();
  expect_parse(b, n, KILN_RT_OK, NULL);
  /* Every truncation fails without reading past the prefix. */
  for (size_t k = 0; k < n; k++) {
    uint8_t *pre = malloc(k ? k : 1);
    assert_non_null(pre);
    memcpy(pre, good, k);
    kart_section s[KART_MAX_SECTIONS];
    int ns;
    char err[256];
    assert_int_not_equal(kart_parse(pre, k, s, &ns, err, sizeof err), KILN_RT_OK);
    free(pre);
  }
#undef RESET
  free(b);
  free(good);
}

static void test_container_write_errors(void **state) {
  (void)state;
  char err[512];
  kart_section s[2] = {{.kind = KART_SEC_PLAN, .data = (const uint8_t *)"x", .size = 1},
                       {.kind = KART_SEC_PLAN, .data = (const uint8_t *)"y", .size = 1}};
  assert_int_equal(kart_write(rtf_path("w.kart"), s, 2, err, sizeof err), KILN_RT_ERR_ARGUMENT);
  assert_int_equal(kart_write(rtf_path("w.kart"), s, 0, err, sizeof err), KILN_RT_ERR_ARGUMENT);
  s[1].kind = 77;
  assert_int_equal(kart_write(rtf_path("w.kart"), s, 2, err, sizeof err), KILN_RT_ERR_ARGUMENT);
  s[1].kind = KART_SEC_WEIGHTS;
  s[1].data = NULL;
  assert_int_equal(kart_write(rtf_path("w.kart"), s, 2, err, sizeof err), KILN_RT_ERR_ARGUMENT);
  assert_int_equal(access(rtf_path("w.kart"), F_OK), -1);
  /* No such directory: PATH, nothing left behind. */
  s[1].data = (const uint8_t *)"y";
  assert_int_equal(kart_write(rtf_path("nodir/w.kart"), s, 2, err, sizeof err), KILN_RT_ERR_PATH);
  /* The target is a directory: rename fails, the temp file is removed. */
  mkdir(rtf_path("isdir"), 0755);
  assert_int_not_equal(kart_write(rtf_path("isdir"), s, 2, err, sizeof err), KILN_RT_OK);
  DIR *d = opendir(rtf_dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) fail_msg("temp file left behind: %s", e->d_name);
  closedir(d);
}

/* ---- model: open and validate ---- */

static void test_open_paths(void **state) {
  (void)state;
  expect_open(rtf_dir, KILN_RT_ERR_PATH, "directory");
  const char *fifo = rtf_path("fifo.kart");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  expect_open(fifo, KILN_RT_ERR_PATH, "FIFO");
  expect_open(rtf_path("missing.kart"), KILN_RT_ERR_PATH, "No such file");
  /* A sparse file one byte over the 2 GiB - 1 limit is refused before it is read. */
  FILE *big = fopen(rtf_path("big.kart"), "wb");
  assert_non_null(big);
  assert_int_equal(ftruncate(fileno(big), (off_t)1 << 31), 0);
  fclose(big);
  expect_open(rtf_path("big.kart"), KILN_RT_ERR_LIMIT, "over the limit");
  unlink(rtf_path("big.kart"));
  rtf_write_bytes(rtf_path("empty.kart"), "", 0);
  expect_open(rtf_path("empty.kart"), KILN_RT_ERR_FORMAT, "shorter than");
  kiln_rt_model *m = (kiln_rt_model *)1;
  assert_int_equal(kiln_rt_model_open(NULL, &m), KILN_RT_ERR_ARGUMENT);
  kiln_rt_model_close(m);
  assert_int_equal(kiln_rt_model_open("x", NULL), KILN_RT_ERR_ARGUMENT);
  kiln_rt_model_close(NULL);
  assert_string_equal(kiln_rt_model_error(NULL), "out of memory");
}

/* A plan that lists CPU features: a feature this CPU has loads, one it lacks (if the
 * table has such a feature on this machine) or one the runtime cannot check is refused
 * before any code is loaded. */
static void test_plan_cpu_features(void **state) {
  (void)state;
  rtf_plan t;
  char *feats[1];
  const char *have[KART_MAX_CPU_FEATURES];
  int n_have = kart_cpu_features(have, KART_MAX_CPU_FEATURES);
  assert_int_equal(kart_cpu_has("no-such-feature"), -1);
  if (n_have > 0) {
    feats[0] = (char *)have[0];
    rtf_plan_scale(&t);
    t.plan.n_cpu_features = 1, t.plan.cpu_features = feats;
    expect_plan(&t, "scale.so", KILN_RT_OK, NULL);
  }
  feats[0] = "no-such-feature";
  rtf_plan_scale(&t);
  t.plan.n_cpu_features = 1, t.plan.cpu_features = feats;
  expect_plan(&t, "scale.so", KILN_RT_ERR_UNSUPPORTED, "cannot check");
  const char *maybe[] = {"avx512f", "avx512vnni", "avx512bw", "avx2", "sse4.2"};
  for (size_t i = 0; i < sizeof maybe / sizeof maybe[0]; i++) {
    if (kart_cpu_has(maybe[i]) != 0) continue;
    feats[0] = (char *)maybe[i];
    rtf_plan_scale(&t);
    t.plan.n_cpu_features = 1, t.plan.cpu_features = feats;
    expect_plan(&t, "scale.so", KILN_RT_ERR_UNSUPPORTED, "which this CPU lacks");
    return;
  }
  print_message("every feature in the table is present here: the 'lacks' case was not run\n");
}

static void test_plan_validation(void **state) {
  (void)state;
  rtf_plan t;
  rtf_plan_scale(&t);
  expect_plan(&t, "scale.so", KILN_RT_OK, NULL);
  /* Each failure uses garbage code: the plan is refused before any code is loaded. */
  rtf_plan_scale(&t);
  t.plan.abi = 2;
  expect_plan(&t, "scale.c", KILN_RT_ERR_VERSION, "plan ABI 2");
  rtf_plan_scale(&t);
  t.plan.target = "tpu";
  expect_plan(&t, "scale.c", KILN_RT_ERR_UNSUPPORTED, "artifact target 'tpu' needs");
  rtf_plan_scale(&t); /* target "cuda" runs kiln_step, never kiln_entry (test_cuda_exec) */
  t.plan.target = "cuda";
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "plan entry 'kiln_entry' is not 'kiln_step' or ''");
  rtf_plan_scale(&t);
  t.plan.entry = "main";
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "entry 'main'");
  rtf_plan_scale(&t);
  t.bufs[3].offset = 32; /* past the 32-byte arena */
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "buffer 3: offset 32 + size 16 is past the arena");
  rtf_plan_scale(&t);
  t.bufs[1].offset = 64;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "past the weights section");
  rtf_plan_scale(&t);
  t.bufs[1].offset = UINT64_MAX - 7;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "past the weights section");
  rtf_plan_scale(&t);
  t.bufs[2].offset = 2;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "not aligned");
  rtf_plan_scale(&t);
  t.out_bufs[0] = 4;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "buffer index 4 out of range");
  rtf_plan_scale(&t);
  t.out_bufs[0] = 0; /* x is f32[4], the output now f32[5] */
  t.specs[1].dims[0] = 5;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "another dtype or shape");
  rtf_plan_scale(&t);
  t.plan.n_output_buffers = 0;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "output_buffers");
  rtf_plan_scale(&t);
  t.specs[0].dtype = 14; /* one past bf16 */
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "input 0 'x': dtype 14");
  rtf_plan_scale(&t);
  t.specs[4].dtype = 0;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "dtype 0");
  rtf_plan_scale(&t);
  t.specs[1].n_dims = 9;
  expect_plan(&t, "scale.c", KILN_RT_ERR_LIMIT, "rank 9");
  rtf_plan_scale(&t);
  t.specs[0].dims[0] = -4;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "dim 0 is -4");
  rtf_plan_scale(&t);
  t.specs[1].n_dims = 8;
  for (int i = 0; i < 8; i++) t.specs[1].dims[i] = INT64_MAX / 2;
  expect_plan(&t, "scale.c", KILN_RT_ERR_OVERFLOW, "overflows");
  rtf_plan_scale(&t);
  t.bufs[2].size = 12;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "size 12, but its tensor needs 16");
  rtf_plan_scale(&t);
  t.bufs[0].index = 1;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "input index 1 out of range");
  rtf_plan_scale(&t);
  t.bufs[0].loc = KILN__RT__LOCATION__LOC_NONE;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "location 0");
  rtf_plan_scale(&t);
  t.bufs[0].tensor = NULL;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "no tensor spec");
  rtf_plan_scale(&t);
  t.s1_in[1] = 7;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "step 1: input buffer 7");
  rtf_plan_scale(&t);
  t.steps[0].output = -2;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "step 0: output buffer -2");
  rtf_plan_scale(&t);
  t.plan.arena_bytes = (uint64_t)1 << 40;
  expect_plan(&t, "scale.c", KILN_RT_ERR_LIMIT, "arena_bytes");
  rtf_plan_scale(&t);
  t.plan.weights_bytes = 8;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "weights_bytes 8");
  rtf_plan_div(&t);
  t.plan.weights_bytes = sizeof RTF_SCALE_W;
  t.specs[1].name = "a";
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "two inputs are named 'a'");
  rtf_plan_scale(&t);
  t.specs[0].name = "x\n\x01'";
  t.specs[0].dtype = 99;
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "'x\\x0a\\x01\\''");
  /* A good plan with code that is not a shared object. */
  rtf_plan_scale(&t);
  expect_plan(&t, "scale.c", KILN_RT_ERR_FORMAT, "code section does not load");
}

static void test_open_sections(void **state) {
  (void)state;
  char err[256];
  const char *p = rtf_path("sec.kart");
  rtf_plan t;
  rtf_plan_scale(&t);
  uint8_t pb[1024];
  size_t pn = kiln__rt__plan__pack(&t.plan, pb);
  kart_section s[3] = {{.kind = KART_SEC_PLAN, .data = pb, .size = pn},
                       {.kind = KART_SEC_WEIGHTS, .data = (const uint8_t *)RTF_SCALE_W, .size = 16},
                       {.kind = KART_SEC_SOURCE_C, .data = (const uint8_t *)"x", .size = 1}};
  assert_int_equal(kart_write(p, s, 3, err, sizeof err), KILN_RT_OK);
  expect_open(p, KILN_RT_ERR_FORMAT, "no code section");
  s[0] = (kart_section){.kind = KART_SEC_PLAN, .data = (const uint8_t *)"\xff\xff\xff", .size = 3};
  s[2] = (kart_section){.kind = KART_SEC_CODE_CPU, .data = (const uint8_t *)"x", .size = 1};
  assert_int_equal(kart_write(p, s, 3, err, sizeof err), KILN_RT_OK);
  expect_open(p, KILN_RT_ERR_FORMAT, "not a valid kiln.rt.Plan");
  /* Code without kiln_abi_version, and with the wrong one. */
  rtf_plan_scale(&t);
  expect_plan(&t, "noabi.so", KILN_RT_ERR_VERSION, "no kiln_abi_version");
  expect_plan(&t, "abi2.so", KILN_RT_ERR_VERSION, "code ABI 2");
}

static void test_open_truncated_and_flipped(void **state) {
  (void)state;
  size_t n;
  uint8_t *b = rtf_slurp(scale_artifact(), &n);
  for (size_t k = 0; k < n; k++) {
    kiln_rt_model *m = NULL;
    kiln_rt_status st = kiln_rt_model_open_bytes(b, k, &m);
    assert_non_null(m);
    if (st != KILN_RT_ERR_FORMAT) fail_msg("prefix %zu: %s", k, kiln_rt_model_error(m));
    kiln_rt_model_close(m);
  }
  /* A flipped byte in every section of a real artifact: INTEGRITY, code never loaded. */
  for (int i = 0; i < 4; i++) {
    uint64_t off = get_le(entry_at(b, i) + 8, 8), size = get_le(entry_at(b, i) + 16, 8);
    b[off + size - 1] ^= 0x80;
    kiln_rt_model *m = NULL;
    assert_int_equal(kiln_rt_model_open_bytes(b, n, &m), KILN_RT_ERR_INTEGRITY);
    assert_non_null(strstr(kiln_rt_model_error(m), "<memory>: section"));
    kiln_rt_model_close(m);
    b[off + size - 1] ^= 0x80;
  }
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open_bytes(b, n, &m), KILN_RT_OK);
  kiln_rt_model_close(m);
  free(b);
}

/* ---- running ---- */

static void test_run_scale(void **state) {
  (void)state;
  const char *p = scale_artifact();
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(p, &m), KILN_RT_OK);
  assert_string_equal(kiln_rt_model_error(m), "");
  assert_int_equal(kiln_rt_model_num_inputs(m), 1);
  assert_int_equal(kiln_rt_model_num_outputs(m), 1);
  assert_int_equal(kiln_rt_model_arena_bytes(m), 32);
  assert_string_equal(kiln_rt_model_target(m), "cpu");
  kiln_rt_tensor_info info;
  assert_int_equal(kiln_rt_model_input(m, 0, &info), KILN_RT_OK);
  assert_string_equal(info.name, "x");
  assert_int_equal(info.dtype, KILN_RT_F32);
  assert_int_equal(info.rank, 1);
  assert_int_equal(info.dims[0], 4);
  assert_int_equal(info.nbytes, 16);
  assert_int_equal(kiln_rt_model_output(m, 0, &info), KILN_RT_OK);
  assert_string_equal(info.name, "y");
  assert_int_equal(kiln_rt_model_input(m, 1, &info), KILN_RT_ERR_ARGUMENT);
  assert_int_equal(kiln_rt_model_output(m, -1, &info), KILN_RT_ERR_ARGUMENT);
  assert_int_equal(kiln_rt_model_find_input(m, "x"), 0);
  assert_int_equal(kiln_rt_model_find_input(m, "y"), -1);
  assert_int_equal(kiln_rt_model_find_output(m, "y"), 0);
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  float x[4] = {1, 2, 3, 4}, y[4] = {0};
  kiln_rt_buffer in = {x, sizeof x}, out = {y, sizeof y};
  assert_int_equal(kiln_rt_run(c, &in, 1, &out, 1), KILN_RT_OK);
  const float want[4] = {2.5f, 5.0f, 7.5f, 10.0f};
  assert_memory_equal(y, want, sizeof want);
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
}

static void expect_run(kiln_rt_context *c, const kiln_rt_buffer *in, int ni,
                       const kiln_rt_buffer *out, int no, kiln_rt_status st, const char *want) {
  kiln_rt_status got = kiln_rt_run(c, in, ni, out, no);
  const char *msg = kiln_rt_context_error(c);
  if (got != st || !strstr(msg, want))
    fail_msg("run: got %s \"%s\", want %s with \"%s\"", kiln_rt_status_name(got), msg,
             kiln_rt_status_name(st), want);
}

static void test_run_arguments(void **state) {
  (void)state;
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(scale_artifact(), &m), KILN_RT_OK);
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  _Alignas(16) float x[8] = {0}, y[8] = {0};
  kiln_rt_buffer in[2] = {{x, 16}, {x, 16}}, out = {y, 16};
  expect_run(c, in, 2, &out, 1, KILN_RT_ERR_ARGUMENT, "expected 1 inputs, got 2");
  expect_run(c, in, 0, &out, 1, KILN_RT_ERR_ARGUMENT, "expected 1 inputs, got 0");
  expect_run(c, in, 1, &out, 0, KILN_RT_ERR_ARGUMENT, "expected 1 outputs, got 0");
  expect_run(c, NULL, 1, &out, 1, KILN_RT_ERR_ARGUMENT, "NULL inputs");
  kiln_rt_buffer bad = {NULL, 16};
  expect_run(c, &bad, 1, &out, 1, KILN_RT_ERR_FEED, "input 'x' (f32[4]): data is NULL");
  expect_run(c, in, 1, &bad, 1, KILN_RT_ERR_FEED, "output 'y' (f32[4]): data is NULL");
  bad = (kiln_rt_buffer){x, 12};
  expect_run(c, &bad, 1, &out, 1, KILN_RT_ERR_FEED, "input 'x': expected 16 bytes (f32[4]), got 12");
  bad = (kiln_rt_buffer){(char *)x + 1, 16};
  expect_run(c, &bad, 1, &out, 1, KILN_RT_ERR_FEED, "not aligned to 4 bytes");
  bad = (kiln_rt_buffer){(char *)y + 2, 16};
  expect_run(c, in, 1, &bad, 1, KILN_RT_ERR_FEED, "output 'y' (f32[4])");
  bad = (kiln_rt_buffer){x + 2, 16};
  expect_run(c, in, 1, &bad, 1, KILN_RT_ERR_FEED, "output 'y' overlaps input 'x'");
  assert_int_equal(kiln_rt_run(NULL, in, 1, &out, 1), KILN_RT_ERR_ARGUMENT);
  /* Still runs after the refusals. */
  assert_int_equal(kiln_rt_run(c, in, 1, &out, 1), KILN_RT_OK);
  assert_true(y[0] == 0.5f && y[3] == 2.0f);
  kiln_rt_context_destroy(c);
  assert_int_equal(kiln_rt_context_create(NULL, &c), KILN_RT_ERR_ARGUMENT);
  assert_null(c);
  assert_int_equal(kiln_rt_context_create(m, NULL), KILN_RT_ERR_ARGUMENT);
  assert_non_null(strstr(kiln_rt_context_error(NULL), "no context"));
  kiln_rt_context_destroy(NULL);
  kiln_rt_model_close(m);
}

static void test_run_exec_error(void **state) {
  (void)state;
  rtf_plan t;
  rtf_plan_div(&t);
  const char *p = rtf_path("div.kart");
  assert_int_equal(rtf_pack_artifact(p, &t.plan, NULL, 0, "div.so"), KILN_RT_OK);
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(p, &m), KILN_RT_OK);
  kiln_rt_context *c = NULL;
  assert_int_equal(kiln_rt_context_create(m, &c), KILN_RT_OK);
  int32_t a[3] = {7, -7, 9}, b[3] = {2, 2, -3}, o[3];
  kiln_rt_buffer in[2] = {{a, 12}, {b, 12}}, out = {o, 12};
  assert_int_equal(kiln_rt_run(c, in, 2, &out, 1), KILN_RT_OK);
  assert_true(o[0] == 3 && o[1] == -3 && o[2] == -3);
  b[1] = 0;
  expect_run(c, in, 2, &out, 1, KILN_RT_ERR_EXEC,
             "step 1 (k1_div, nodes: a/div) failed: integer division by zero");
  expect_run(c, in, 1, &out, 1, KILN_RT_ERR_ARGUMENT, "expected 2 inputs, got 1");
  kiln_rt_context_destroy(c);
  kiln_rt_model_close(m);
}

typedef struct worker {
  kiln_rt_context *c;
  float base;
  int bad;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  for (int it = 0; it < 2000; it++) {
    float x[4], y[4];
    for (int i = 0; i < 4; i++) x[i] = w->base + (float)(it % 100) + (float)i;
    kiln_rt_buffer in = {x, sizeof x}, out = {y, sizeof y};
    if (kiln_rt_run(w->c, &in, 1, &out, 1) != KILN_RT_OK) w->bad++;
    for (int i = 0; i < 4; i++)
      if (y[i] != x[i] * 2.0f + RTF_SCALE_W[i]) w->bad++;
  }
  return NULL;
}

static void test_two_contexts(void **state) {
  (void)state;
  kiln_rt_model *m = NULL;
  assert_int_equal(kiln_rt_model_open(scale_artifact(), &m), KILN_RT_OK);
  worker w[2] = {{.base = 0}, {.base = 1000}};
  for (int i = 0; i < 2; i++) assert_int_equal(kiln_rt_context_create(m, &w[i].c), KILN_RT_OK);
  pthread_t th[2];
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(w[i].bad, 0);
    kiln_rt_context_destroy(w[i].c);
  }
  /* Two models from the same file are loaded independently. */
  kiln_rt_model *m2 = NULL;
  assert_int_equal(kiln_rt_model_open(scale_artifact(), &m2), KILN_RT_OK);
  kiln_rt_model_close(m);
  worker w2 = {.base = 5};
  assert_int_equal(kiln_rt_context_create(m2, &w2.c), KILN_RT_OK);
  work(&w2);
  assert_int_equal(w2.bad, 0);
  kiln_rt_context_destroy(w2.c);
  kiln_rt_model_close(m2);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(kiln_rt_status_name(KILN_RT_ERR_INTEGRITY), "integrity");
  assert_string_equal(kiln_rt_status_name(KILN_RT_ERR_NOMEM), "out-of-memory");
  assert_string_equal(kiln_rt_status_name((kiln_rt_status)99), "unknown");
  assert_string_equal(kiln_rt_dtype_name(KILN_RT_I64), "i64");
  assert_string_equal(kiln_rt_dtype_name(0), "invalid");
  assert_int_equal(kiln_rt_dtype_size(KILN_RT_F64), 8);
  assert_int_equal(kiln_rt_dtype_size(KILN_RT_BOOL), 1);
  assert_int_equal(kiln_rt_dtype_size(14), 0);
  assert_string_equal(kiln_rt_dtype_name(14), "invalid");
  /* the dtypes of issue 4's second step: the same numbers as kiln_dtype */
  static const struct { int dt; const char *name; size_t size; } more[] = {
      {KILN_RT_U8, "u8", 1},   {KILN_RT_I8, "i8", 1},   {KILN_RT_U16, "u16", 2},
      {KILN_RT_I16, "i16", 2}, {KILN_RT_U32, "u32", 4}, {KILN_RT_U64, "u64", 8},
      {KILN_RT_F16, "f16", 2}, {KILN_RT_BF16, "bf16", 2}};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
    assert_int_equal(more[i].dt, 6 + (int)i);
    assert_string_equal(kiln_rt_dtype_name(more[i].dt), more[i].name);
    assert_int_equal(kiln_rt_dtype_size(more[i].dt), more[i].size);
  }
}

/* ---- .npy ---- */

static void npy_round_trip(int dtype, int rank, const int64_t *dims) {
  size_t n = kiln_rt_dtype_size(dtype);
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  uint8_t *data = malloc(n + 1);
  assert_non_null(data);
  for (size_t i = 0; i < n; i++) data[i] = dtype == KILN_RT_BOOL ? (uint8_t)(i % 2) : (uint8_t)(i * 31 + 7);
  char err[512];
  const char *p = rtf_path("rt.npy");
  assert_int_equal(kiln_rt_npy_write(p, dtype, rank, dims, data, err, sizeof err), KILN_RT_OK);
  size_t fn;
  uint8_t *file = rtf_slurp(p, &fn);
  size_t hdr = 10 + (size_t)get_le(file + 8, 2);
  assert_int_equal(hdr % 64, 0);
  assert_int_equal(file[hdr - 1], '\n');
  assert_int_equal(fn, hdr + n);
  free(file);
  kiln_rt_npy t;
  if (kiln_rt_npy_read(p, &t, err, sizeof err) != KILN_RT_OK) fail_msg("%s", err);
  assert_int_equal(t.dtype, dtype);
  assert_int_equal(t.rank, rank);
  for (int i = 0; i < rank; i++) assert_int_equal(t.dims[i], dims[i]);
  assert_int_equal(t.nbytes, n);
  assert_int_equal((uintptr_t)t.data % 64, 0);
  if (n) assert_memory_equal(t.data, data, n);
  kiln_rt_npy_free(&t);
  assert_null(t.data);
  free(data);
}

static void test_npy_round_trip(void **state) {
  (void)state;
  const int64_t d23[2] = {2, 3}, d0[2] = {0, 3}, d5[1] = {5}, d8[8] = {1, 2, 1, 2, 1, 2, 1, 2};
  for (int dt = KILN_RT_F32; dt <= KILN_RT_F16; dt++) { /* every dtype but bf16 */
    npy_round_trip(dt, 2, d23);
    npy_round_trip(dt, 0, NULL); /* scalar */
    npy_round_trip(dt, 2, d0);   /* zero elements */
    npy_round_trip(dt, 1, d5);
    npy_round_trip(dt, 8, d8);
  }
  char err[256];
  kiln_rt_npy_free(NULL);
  assert_int_equal(kiln_rt_npy_write(rtf_path("bad.npy"), 14, 0, NULL, "x", err, sizeof err),
                   KILN_RT_ERR_ARGUMENT);
  const int64_t neg[1] = {-1};
  assert_int_equal(kiln_rt_npy_write(rtf_path("bad.npy"), KILN_RT_F32, 1, neg, "x", err, sizeof err),
                   KILN_RT_ERR_ARGUMENT);
  assert_int_equal(kiln_rt_npy_write(rtf_path("nodir/x.npy"), KILN_RT_F32, 1, d5, d8, err, sizeof err),
                   KILN_RT_ERR_PATH);
  assert_int_equal(access(rtf_path("bad.npy"), F_OK), -1);
  /* bf16 has no NumPy type: a clear refusal, and no file */
  assert_int_equal(kiln_rt_npy_write(rtf_path("bf.npy"), KILN_RT_BF16, 1, d5, d8, err, sizeof err),
                   KILN_RT_ERR_UNSUPPORTED);
  assert_non_null(strstr(err, "bf16 has no NumPy type"));
  assert_int_equal(access(rtf_path("bf.npy"), F_OK), -1);
}

static void write_npy(const char *path, int major, const char *header, const void *data,
                      size_t n);
static void expect_npy(const char *header, int major, size_t n, kiln_rt_status st,
                       const char *want);

static int contains(const uint8_t *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0) return 1;
  return 0;
}

/* The descr NumPy writes for each new dtype, read back with its values. */
static void test_npy_new_dtypes(void **state) {
  (void)state;
  static const struct { const char *descr; int dt; } cases[] = {
      {"|u1", KILN_RT_U8}, {"|i1", KILN_RT_I8}, {"<u2", KILN_RT_U16}, {"<i2", KILN_RT_I16},
      {"<u4", KILN_RT_U32}, {"<u8", KILN_RT_U64}, {"<f2", KILN_RT_F16}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char hdr[128];
    uint8_t data[16];
    size_t es = kiln_rt_dtype_size(cases[i].dt);
    for (size_t k = 0; k < 2 * es; k++) data[k] = (uint8_t)(0xF0 + k); /* high bits set */
    snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }", cases[i].descr);
    const char *p = rtf_path("nd.npy");
    write_npy(p, 1, hdr, data, 2 * es);
    kiln_rt_npy t;
    char err[512];
    if (kiln_rt_npy_read(p, &t, err, sizeof err) != KILN_RT_OK) fail_msg("%s: %s", cases[i].descr, err);
    assert_int_equal(t.dtype, cases[i].dt);
    assert_int_equal(t.nbytes, 2 * es);
    assert_memory_equal(t.data, data, 2 * es);
    kiln_rt_npy_free(&t);
    /* and the writer uses the same descr */
    assert_int_equal(kiln_rt_npy_write(p, cases[i].dt, 1, (const int64_t[]){2}, data, err, sizeof err),
                     KILN_RT_OK);
    size_t fn;
    uint8_t *file = rtf_slurp(p, &fn);
    char want[32];
    snprintf(want, sizeof want, "'descr': '%s'", cases[i].descr);
    assert_true(contains(file, fn, want));
    free(file);
  }
  /* no NumPy descr means bf16: whatever a file claims, it is not read as bf16 */
  expect_npy("{'descr': '<V2', 'fortran_order': False, 'shape': (2,), }\n", 1, 4,
             KILN_RT_ERR_UNSUPPORTED, "bf16 has no NumPy type");
}

/* Writes a .npy with the given version, header text (padded with spaces + '\n' when pad)
 * and data bytes. */
static void write_npy(const char *path, int major, const char *header, const void *data,
                      size_t n) {
  size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
  uint8_t *b = malloc(pre + hl + n + 1);
  assert_non_null(b);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (uint8_t)major, b[7] = 0;
  put_le(b + 8, hl, major == 1 ? 2 : 4);
  memcpy(b + pre, header, hl);
  if (n) memcpy(b + pre + hl, data, n);
  rtf_write_bytes(path, b, pre + hl + n);
  free(b);
}

static void expect_npy(const char *header, int major, size_t n, kiln_rt_status st,
                       const char *want) {
  const char *p = rtf_path("case.npy");
  uint8_t data[256] = {0};
  assert_true(n <= sizeof data);
  write_npy(p, major, header, data, n);
  kiln_rt_npy t;
  char err[512] = "";
  kiln_rt_status got = kiln_rt_npy_read(p, &t, err, sizeof err);
  if (got != st || (want && !strstr(err, want)) || (st && strncmp(err, p, strlen(p))))
    fail_msg("npy %s: got %s \"%s\", want %s with \"%s\"", header, kiln_rt_status_name(got), err,
             kiln_rt_status_name(st), want ? want : "");
  if (st) assert_null(t.data);
  kiln_rt_npy_free(&t);
}

static void test_npy_headers(void **state) {
  (void)state;
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n", 1, 24, KILN_RT_OK, NULL);
  expect_npy("{'descr':'<f8','fortran_order':False,'shape':(2,)}", 2, 16, KILN_RT_OK, NULL);
  expect_npy("{\"shape\": (3,), \"descr\": \"<i8\", \"fortran_order\": False}\n", 3, 24, KILN_RT_OK, NULL);
  expect_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", 1, 1, KILN_RT_OK, NULL);
  expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': ( 2 , 1 , ) }\n", 1, 8, KILN_RT_OK, NULL);
  expect_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }\n", 1, 8,
             KILN_RT_ERR_UNSUPPORTED, "fortran_order True");
  expect_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 1, 8,
             KILN_RT_ERR_UNSUPPORTED, "descr '>f4'");
  expect_npy("{'descr': '<u1', 'fortran_order': False, 'shape': (2,), }\n", 1, 2,
             KILN_RT_ERR_UNSUPPORTED, "descr '<u1'");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }\n", 1, 0,
             KILN_RT_ERR_FORMAT, "negative");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }\n", 1, 12,
             KILN_RT_ERR_FORMAT, "not a tuple");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,5), }\n", 1, 96,
             KILN_RT_ERR_FORMAT, "data is 96 bytes, shape (5,5) of <f4 needs 100");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }\n", 1, 24,
             KILN_RT_ERR_FORMAT, "data is 24 bytes, shape (5,) of <f4 needs 20");
  expect_npy("{'descr': '<f4', 'fortran_order': False}\n", 1, 0, KILN_RT_ERR_FORMAT, "missing 'shape'");
  expect_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", 1, 4,
             KILN_RT_ERR_FORMAT, "twice");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 1, 4,
             KILN_RT_ERR_FORMAT, "unknown key");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': ()} x", 1, 4, KILN_RT_ERR_FORMAT,
             "after the dict");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 1, 4,
             KILN_RT_ERR_UNSUPPORTED, "more than 8");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 1, 4,
             KILN_RT_ERR_OVERFLOW, "too large");
  expect_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904,4)}", 1, 4,
             KILN_RT_ERR_OVERFLOW, "overflows");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", 1, 0, KILN_RT_ERR_FORMAT,
             "not an integer");
  expect_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 1, 8, KILN_RT_ERR_FORMAT,
             "expected '}'");
  /* bool bytes must be 0 or 1 */
  const char *p = rtf_path("bool.npy");
  write_npy(p, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n", "\x01\x00\x02", 3);
  kiln_rt_npy t;
  char err[512];
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_FORMAT);
  if (!strstr(err, "bool element 2 is 2")) fail_msg("%s", err);
}

static void test_npy_bad_files(void **state) {
  (void)state;
  kiln_rt_npy t;
  char err[512];
  const char *p = rtf_path("magic.npy");
  rtf_write_bytes(p, "\x93NUMPX\x01\x00\x00\x00", 10);
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_FORMAT);
  assert_non_null(strstr(err, "bad magic"));
  rtf_write_bytes(p, "\x93NUM", 4);
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_FORMAT);
  rtf_write_bytes(p, "\x93NUMPY\x04\x00\x00\x00", 10);
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_UNSUPPORTED);
  /* Header longer than 64 KiB (format 2.0), and a header length past the end. */
  rtf_write_bytes(p, "\x93NUMPY\x02\x00\x00\x00\x02\x00", 12);
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_LIMIT);
  assert_non_null(strstr(err, "over the limit"));
  rtf_write_bytes(p, "\x93NUMPY\x01\x00\x40\x00{}", 12);
  assert_int_equal(kiln_rt_npy_read(p, &t, err, sizeof err), KILN_RT_ERR_FORMAT);
  assert_non_null(strstr(err, "past the end"));
  assert_int_equal(kiln_rt_npy_read(rtf_dir, &t, err, sizeof err), KILN_RT_ERR_PATH);
  assert_int_equal(kiln_rt_npy_read(rtf_path("none.npy"), &t, err, sizeof err), KILN_RT_ERR_PATH);
  assert_null(t.data);
  /* Every truncation of a valid file fails. */
  const int64_t d[2] = {3, 2};
  const double v[6] = {1, 2, 3, 4, 5, 6};
  assert_int_equal(kiln_rt_npy_write(p, KILN_RT_F64, 2, d, v, err, sizeof err), KILN_RT_OK);
  size_t n;
  uint8_t *b = rtf_slurp(p, &n);
  for (size_t k = 0; k < n; k++) {
    rtf_write_bytes(rtf_path("trunc.npy"), b, k);
    assert_int_not_equal(kiln_rt_npy_read(rtf_path("trunc.npy"), &t, err, sizeof err), KILN_RT_OK);
    assert_null(t.data);
  }
  free(b);
}

/* ---- examples/deploy, run as a program ---- */

static char *g_deploy_out;

/* Runs deploy with args; returns its exit status, stdout+stderr in g_deploy_out. */
static int run_deploy(const char *args) {
  const char *build = getenv("KILN_BUILD_DIR");
  if (!build) fail_msg("KILN_BUILD_DIR is not set (run through ctest)");
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/bin/deploy' %s > '%s' 2>&1", build, args, rtf_path("deploy.log"));
  int st = system(cmd);
  free(g_deploy_out);
  size_t n;
  g_deploy_out = (char *)rtf_slurp(rtf_path("deploy.log"), &n);
  g_deploy_out[n] = '\0';
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_deploy(const char *args, int rc, const char *want) {
  int got = run_deploy(args);
  if (got != rc || !strstr(g_deploy_out, want))
    fail_msg("deploy %s: exit %d, output:\n%s\nwant exit %d with \"%s\"", args, got, g_deploy_out,
             rc, want);
}

static void test_deploy(void **state) {
  (void)state;
  char art[512], err[512], args[3000];
  snprintf(art, sizeof art, "%s", scale_artifact()); /* tpath's buffers rotate */
  const int64_t d4[1] = {4}, d5[1] = {5};
  const float x[5] = {1, 2, 3, 4, 5};
  assert_int_equal(kiln_rt_npy_write(rtf_path("x.npy"), KILN_RT_F32, 1, d4, x, err, sizeof err), KILN_RT_OK);
  assert_int_equal(kiln_rt_npy_write(rtf_path("x5.npy"), KILN_RT_F32, 1, d5, x, err, sizeof err), KILN_RT_OK);
  snprintf(args, sizeof args, "'%s'", art);
  expect_deploy(args, 0, "input  x f32[4] (16 bytes)");
  assert_non_null(strstr(g_deploy_out, "output y f32[4]"));
  snprintf(args, sizeof args, "'%s' --input x='%s' --output y='%s' --print", art, rtf_path("x.npy"),
           rtf_path("y.npy"));
  expect_deploy(args, 0, "y f32[4] = [2.5, 5, 7.5, 10]");
  kiln_rt_npy y;
  assert_int_equal(kiln_rt_npy_read(rtf_path("y.npy"), &y, err, sizeof err), KILN_RT_OK);
  const float want[4] = {2.5f, 5.0f, 7.5f, 10.0f};
  assert_int_equal(y.nbytes, sizeof want);
  assert_memory_equal(y.data, want, sizeof want);
  kiln_rt_npy_free(&y);
  snprintf(args, sizeof args, "'%s' --input z='%s'", art, rtf_path("x.npy"));
  expect_deploy(args, 1, "the model has no input 'z'; its inputs:\n  input  x f32[4]");
  snprintf(args, sizeof args, "'%s' --print", art);
  expect_deploy(args, 1, "input 'x' is not given");
  snprintf(args, sizeof args, "'%s' --input x='%s'", art, rtf_path("x5.npy"));
  expect_deploy(args, 1, "input 'x' is f32[4], but");
  assert_non_null(strstr(g_deploy_out, "holds f32[5]"));
  snprintf(args, sizeof args, "'%s' --input x='%s' --output q='%s'", art, rtf_path("x.npy"),
           rtf_path("q.npy"));
  expect_deploy(args, 1, "the model has no output 'q'");
  assert_int_equal(access(rtf_path("q.npy"), F_OK), -1);
  snprintf(args, sizeof args, "'%s' --input x='%s'", art, rtf_path("none.npy"));
  expect_deploy(args, 1, "none.npy: cannot open");
  snprintf(args, sizeof args, "'%s'", rtf_path("none.kart"));
  expect_deploy(args, 1, "none.kart: cannot open");
  expect_deploy("--input", 1, "usage");
  free(g_deploy_out);
  g_deploy_out = NULL;
}

/* ---- the runtime includes nothing from the compiler ---- */

static int bad_include(const char *line) {
  static const char *bad[] = {"../ir", "../frontend", "../passes", "../codegen", "kir.h",
                              "kps.h", "kcg.h", "kiln.h\"", "kir_", "kiln_types.h"};
  const char *s = line;
  while (*s == ' ' || *s == '\t') s++;
  if (*s != '#') return 0;
  s++;
  while (*s == ' ' || *s == '\t') s++;
  if (strncmp(s, "include", 7) != 0) return 0;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (strstr(s, bad[i])) return 1;
  return 0;
}

static void test_runtime_includes_no_compiler(void **state) {
  (void)state;
  const char *src = getenv("KILN_SOURCE_DIR");
  if (!src) fail_msg("KILN_SOURCE_DIR is not set (run through ctest)");
  char dir[600];
  snprintf(dir, sizeof dir, "%s/runtime", src);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int files = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 3 || (strcmp(e->d_name + l - 2, ".c") && strcmp(e->d_name + l - 2, ".h"))) continue;
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    files++;
    while (fgets(line, sizeof line, f))
      if (bad_include(line)) fail_msg("%s includes a compiler header: %s", path, line);
    fclose(f);
  }
  closedir(d);
  assert_true(files >= 7);
  /* The check itself catches what it should. */
  assert_true(bad_include("#include \"../ir/kir.h\""));
  assert_true(bad_include("  #  include \"kiln.h\""));
  assert_false(bad_include("#include \"kiln_runtime.h\""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256_vectors),
      cmocka_unit_test(test_container_round_trip),
      cmocka_unit_test(test_container_corrupt),
      cmocka_unit_test(test_container_write_errors),
      cmocka_unit_test(test_open_paths),
      cmocka_unit_test(test_plan_validation),
      cmocka_unit_test(test_plan_cpu_features),
      cmocka_unit_test(test_open_sections),
      cmocka_unit_test(test_open_truncated_and_flipped),
      cmocka_unit_test(test_run_scale),
      cmocka_unit_test(test_run_arguments),
      cmocka_unit_test(test_run_exec_error),
      cmocka_unit_test(test_two_contexts),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_npy_round_trip),
      cmocka_unit_test(test_npy_new_dtypes),
      cmocka_unit_test(test_npy_headers),
      cmocka_unit_test(test_npy_bad_files),
      cmocka_unit_test(test_deploy),
      cmocka_unit_test(test_runtime_includes_no_compiler),
  };
  return cmocka_run_group_tests_name("runtime", tests, group_setup, group_teardown);
}
