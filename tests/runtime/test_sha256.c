/* test_sha256.c — libkiln_rt's SHA-256 (runtime/kart_sha256.c): the portable path, the
 * x86-64 SHA-extensions path and the dispatcher kart_sha256 against the FIPS 180-4
 * vectors and against a slow reference written here from the spec (constants derived
 * from the primes, padding built literally), for every length 0..300 at several
 * alignments and for large random buffers. Links libkiln_rt only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kart_sha256_internal.h"
#include "runtime/kiln_artifact.h"

/* ---- the reference (FIPS 180-4, straight from the text) ---- */

static uint32_t ref_k[64], ref_h0[8];

/* Largest x with x^root <= v (root 2 or 3), by bisection on 128-bit integers. */
static uint64_t iroot(unsigned __int128 v, int root) {
  uint64_t lo = 0, hi = (uint64_t)1 << (root == 2 ? 40 : 38);
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo + 1) / 2;
    unsigned __int128 p = (unsigned __int128)mid * mid;
    if (root == 3) p *= mid;
    if (p <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/* §4.2.2 and §5.3.3: the first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes and of the square roots of the first 8: floor(root(p) * 2^32) mod 2^32
 * = floor(root(p * 2^(32*root))) mod 2^32. */
static void ref_constants(void) {
  int n = 0;
  for (uint64_t c = 2; n < 64; c++) {
    int prime = 1;
    for (uint64_t d = 2; d * d <= c; d++)
      if (c % d == 0) prime = 0;
    if (!prime) continue;
    ref_k[n] = (uint32_t)iroot((unsigned __int128)c << 96, 3);
    if (n < 8) ref_h0[n] = (uint32_t)iroot((unsigned __int128)c << 64, 2);
    n++;
  }
}

static uint32_t ROTR(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static uint32_t SHR(uint32_t x, int n) { return x >> n; }
static uint32_t Ch(uint32_t x, uint32_t y, uint32_t z) { return (x & y) ^ (~x & z); }
static uint32_t Maj(uint32_t x, uint32_t y, uint32_t z) { return (x & y) ^ (x & z) ^ (y & z); }
static uint32_t Sigma0(uint32_t x) { return ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22); }
static uint32_t Sigma1(uint32_t x) { return ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25); }
static uint32_t sigma0(uint32_t x) { return ROTR(x, 7) ^ ROTR(x, 18) ^ SHR(x, 3); }
static uint32_t sigma1(uint32_t x) { return ROTR(x, 17) ^ ROTR(x, 19) ^ SHR(x, 10); }

static void ref_sha256(const uint8_t *msg, size_t n, uint8_t out[32]) {
  /* §5.1.1: append bit 1, k zero bits with n*8 + 1 + k = 448 mod 512, then n*8 as 64 bits. */
  size_t padded = ((n + 8) / 64 + 1) * 64;
  uint8_t *m = calloc(padded, 1);
  assert_non_null(m);
  if (n) memcpy(m, msg, n);
  m[n] = 0x80;
  for (int i = 0; i < 8; i++) m[padded - 1 - i] = (uint8_t)(((uint64_t)n * 8) >> (8 * i));
  uint32_t H[8];
  memcpy(H, ref_h0, sizeof H);
  for (size_t blk = 0; blk < padded / 64; blk++) { /* §6.2.2 */
    uint32_t W[64];
    for (int t = 0; t < 16; t++) {
      const uint8_t *q = m + 64 * blk + 4 * t;
      W[t] = ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3];
    }
    for (int t = 16; t < 64; t++)
      W[t] = sigma1(W[t - 2]) + W[t - 7] + sigma0(W[t - 15]) + W[t - 16];
    uint32_t a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (int t = 0; t < 64; t++) {
      uint32_t T1 = h + Sigma1(e) + Ch(e, f, g) + ref_k[t] + W[t];
      uint32_t T2 = Sigma0(a) + Maj(a, b, c);
      h = g, g = f, f = e, e = d + T1, d = c, c = b, b = a, a = T1 + T2;
    }
    H[0] += a, H[1] += b, H[2] += c, H[3] += d, H[4] += e, H[5] += f, H[6] += g, H[7] += h;
  }
  for (int i = 0; i < 32; i++) out[i] = (uint8_t)(H[i / 4] >> (24 - 8 * (i % 4)));
  free(m);
}

/* ---- helpers ---- */

static int g_shani; /* the CPU runs the SHA-NI path */

static int setup(void **state) {
  (void)state;
  ref_constants();
  uint8_t d[32];
  g_shani = kart_sha256_shani("", 0, d);
  if (!g_shani)
    fprintf(stderr, "test_sha256: this CPU (or build) has no SHA extensions: the SHA-NI "
                    "path is not compared; the portable path and kart_sha256 are\n");
  return 0;
}

static void hex(const uint8_t d[32], char h[65]) { kart_hex(d, h); }

/* Every implementation's digest of data[0..n) equals want (32 bytes). */
static void expect_all(const void *data, size_t n, const uint8_t want[32]) {
  uint8_t got[32];
  char gh[65], wh[65];
  hex(want, wh);
  kart_sha256_portable(data, n, got);
  hex(got, gh);
  if (strcmp(gh, wh)) fail_msg("portable, %zu bytes: %s, want %s", n, gh, wh);
  memset(got, 0, sizeof got);
  if (kart_sha256_shani(data, n, got)) {
    hex(got, gh);
    if (strcmp(gh, wh)) fail_msg("sha-ni, %zu bytes: %s, want %s", n, gh, wh);
  } else {
    assert_false(g_shani);
  }
  kart_sha256(data, n, got);
  hex(got, gh);
  if (strcmp(gh, wh)) fail_msg("kart_sha256, %zu bytes: %s, want %s", n, gh, wh);
}

static void expect_hex(const void *data, size_t n, const char *want_hex) {
  uint8_t want[32], ref[32];
  for (int i = 0; i < 32; i++) {
    unsigned v;
    assert_int_equal(sscanf(want_hex + 2 * i, "%2x", &v), 1);
    want[i] = (uint8_t)v;
  }
  ref_sha256(data, n, ref); /* the reference itself must match the published digest */
  assert_memory_equal(ref, want, 32);
  expect_all(data, n, want);
}

static void expect_ref(const uint8_t *data, size_t n) {
  uint8_t want[32];
  ref_sha256(data, n, want);
  expect_all(data, n, want);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15u;
static uint8_t rnd(void) { /* xorshift64 */
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (uint8_t)(g_rng >> 32);
}

/* ---- tests ---- */

static void test_reference_constants(void **state) {
  (void)state; /* spot checks against the spec's tables */
  assert_int_equal(ref_k[0], 0x428a2f98u);
  assert_int_equal(ref_k[1], 0x71374491u);
  assert_int_equal(ref_k[63], 0xc67178f2u);
  assert_int_equal(ref_h0[0], 0x6a09e667u);
  assert_int_equal(ref_h0[7], 0x5be0cd19u);
}

static void test_fips_vectors(void **state) {
  (void)state;
  expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  expect_hex(m448, strlen(m448),
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                     "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  expect_hex(m896, strlen(m896),
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  char *a = malloc(1000000);
  assert_non_null(a);
  memset(a, 'a', 1000000);
  expect_hex(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
}

/* Every length 0..300 (all padding cases: one or two final blocks, 55/56/63/64...), at
 * four alignments of the start. */
static void test_every_length(void **state) {
  (void)state;
  uint8_t buf[300 + 3];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = rnd();
  for (size_t off = 0; off < 4; off++)
    for (size_t n = 0; n + off <= sizeof buf && n <= 300; n++) expect_ref(buf + off, n);
}

/* Large random buffers, odd sizes and an odd start. */
static void test_big_random(void **state) {
  (void)state;
  static const size_t sizes[] = {(1u << 20) + 13, 3 * (1u << 20) - 1, 64 * 4099, 700001};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    uint8_t *b = malloc(sizes[s] + 1);
    assert_non_null(b);
    for (size_t i = 0; i <= sizes[s]; i++) b[i] = rnd();
    expect_ref(b + (s & 1), sizes[s]);
    free(b);
  }
}

/* kart_sha256 uses the SHA-NI path exactly when the CPU has it and KILN_RT_NO_SHANI is
 * off (run the binary with KILN_RT_NO_SHANI=1 to check the other side). */
static void test_dispatch(void **state) {
  (void)state;
  const char *no = getenv("KILN_RT_NO_SHANI");
  int off = no && *no && strcmp(no, "0") != 0;
  assert_int_equal(kart_sha256_uses_shani(), g_shani && !off);
  fprintf(stderr, "test_sha256: kart_sha256 uses the %s path\n",
          kart_sha256_uses_shani() ? "SHA-NI" : "portable");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_constants),
      cmocka_unit_test(test_fips_vectors),
      cmocka_unit_test(test_every_length),
      cmocka_unit_test(test_big_random),
      cmocka_unit_test(test_dispatch),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
