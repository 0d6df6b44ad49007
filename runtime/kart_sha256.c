/* kart_sha256.c — SHA-256 (FIPS 180-4), from the specification, for the artifact's
 * section hashes: a portable C path, and on x86-64 CPUs with the SHA extensions one using
 * them (picked at the first call; KILN_RT_NO_SHANI=1 forces the portable one). Depends
 * on libc only; never on the compiler (ir/, frontend/, passes/, codegen/). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kart_sha256_internal.h"
#include "kiln_artifact.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube roots of
 * the first 64 primes. 16-byte aligned: the SHA-NI path loads them four at a time. */
static _Alignas(16) const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

/* Hashes nblocks consecutive 64-byte blocks at p into the state h (a..h = h[0..7]). */
typedef void (*blocks_fn)(uint32_t h[8], const uint8_t *p, size_t nblocks);

/* ---- portable path ---------------------------------------------------------------- */

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* Byte by byte: compilers turn this into one load and a byte swap (movbe/bswap/rev). */
static inline uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* §4.1.2, with Ch and Maj in equivalent forms of fewer operations:
 * Ch(x,y,z) = (x & y) ^ (~x & z) = ((y ^ z) & x) ^ z;
 * Maj(x,y,z) = (x & y) ^ (x & z) ^ (y & z) = (x & y) | (z & (x | y)). */
#define BSIG0(x) (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22))
#define BSIG1(x) (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25))
#define SSIG0(x) (rotr(x, 7) ^ rotr(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (rotr(x, 17) ^ rotr(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) ((((y) ^ (z)) & (x)) ^ (z))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/* §6.2.2 step 1 for t >= 16, on a ring of the last 16 schedule words. */
#define SCHED(t) \
  (w[(t)&15] += SSIG1(w[((t)-2) & 15]) + w[((t)-7) & 15] + SSIG0(w[((t)-15) & 15]))

/* One round of §6.2.2 step 3 with the working variables renamed instead of moved: the
 * caller rotates the argument list, so the round only updates d and h. */
#define ROUND(a, b, c, d, e, f, g, h, t, wt)                \
  do {                                                      \
    uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + K[t] + (wt); \
    (d) += t1_;                                             \
    (h) = t1_ + BSIG0(a) + MAJ(a, b, c);                    \
  } while (0)

/* Eight rounds starting at round t (a multiple of 8); W(t) gives word t. */
#define ROUNDS8(t, W)                           \
  do {                                          \
    ROUND(a, b, c, d, e, f, g, h, (t) + 0, W((t) + 0)); \
    ROUND(h, a, b, c, d, e, f, g, (t) + 1, W((t) + 1)); \
    ROUND(g, h, a, b, c, d, e, f, (t) + 2, W((t) + 2)); \
    ROUND(f, g, h, a, b, c, d, e, (t) + 3, W((t) + 3)); \
    ROUND(e, f, g, h, a, b, c, d, (t) + 4, W((t) + 4)); \
    ROUND(d, e, f, g, h, a, b, c, (t) + 5, W((t) + 5)); \
    ROUND(c, d, e, f, g, h, a, b, (t) + 6, W((t) + 6)); \
    ROUND(b, c, d, e, f, g, h, a, (t) + 7, W((t) + 7)); \
  } while (0)

#define W_LOAD(t) (w[t] = load_be32(p + 4 * (t)))
#define W_SCHED(t) SCHED(t)

static void portable_blocks(uint32_t hs[8], const uint8_t *p, size_t nblocks) {
  for (; nblocks; nblocks--, p += 64) {
    uint32_t w[16];
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3];
    uint32_t e = hs[4], f = hs[5], g = hs[6], h = hs[7];
    ROUNDS8(0, W_LOAD);
    ROUNDS8(8, W_LOAD);
    for (int t = 16; t < 64; t += 8) ROUNDS8(t, W_SCHED);
    hs[0] += a, hs[1] += b, hs[2] += c, hs[3] += d;
    hs[4] += e, hs[5] += f, hs[6] += g, hs[7] += h;
  }
}

/* ---- x86-64 SHA extensions path ------------------------------------------------------
 * From the Intel SDM's descriptions of the instructions:
 *  SHA256RNDS2 (_mm_sha256rnds2_epu32(cdgh, abef, wk)): two rounds. State lanes, high to
 *    low: abef = {A, B, E, F}, cdgh = {C, D, G, H}; wk lanes 0 and 1 hold W[t]+K[t] and
 *    W[t+1]+K[t+1]. Returns the new {A, B, E, F}; the new {C, D, G, H} is the old
 *    {A, B, E, F}, so two calls with the roles swapped make four rounds.
 *  SHA256MSG1 (_mm_sha256msg1_epu32(x, y)): lane i = x[i] + sigma0(word after x[i]),
 *    where the word after x[3] is y[0]; with x = W[t-16..t-13], y = W[t-12..t-9] that
 *    is W[t-16+i] + sigma0(W[t-15+i]).
 *  SHA256MSG2 (_mm_sha256msg2_epu32(x, y)): with y = W[t-4..t-1], lanes 0..3 become
 *    x[i] + sigma1(W[t-2+i]), using its own lanes 0 and 1 for W[t] and W[t+1].
 * So W[t..t+3] = MSG2(MSG1(W[t-16..], W[t-12..]) + W[t-7..t-4], W[t-4..t-1]). */
#if defined(__x86_64__)

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds from t with message words m = W[t..t+3]. */
#define SHANI_ROUNDS4(m, t)                                                      \
  do {                                                                           \
    __m128i wk_ = _mm_add_epi32((m), _mm_load_si128((const __m128i *)(K + (t)))); \
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk_);                               \
    abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk_, 0x0e));      \
  } while (0)

/* m0..m3 hold W[t-16..t-1] in four vectors, oldest first; m0 becomes W[t..t+3]. */
#define SHANI_SCHED(m0, m1, m2, m3)                                          \
  (m0) = _mm_sha256msg2_epu32(                                               \
      _mm_add_epi32(_mm_sha256msg1_epu32((m0), (m1)), _mm_alignr_epi8((m3), (m2), 4)), \
      (m3))

SHANI_TARGET static void shani_blocks(uint32_t hs[8], const uint8_t *p, size_t nblocks) {
  /* Big-endian words: reverse the bytes of each 32-bit lane. */
  const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
  __m128i abef = _mm_set_epi32((int)hs[0], (int)hs[1], (int)hs[4], (int)hs[5]);
  __m128i cdgh = _mm_set_epi32((int)hs[2], (int)hs[3], (int)hs[6], (int)hs[7]);
  for (; nblocks; nblocks--, p += 64) {
    const __m128i abef0 = abef, cdgh0 = cdgh;
    __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
    __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
    __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
    __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
    SHANI_ROUNDS4(m0, 0);
    SHANI_ROUNDS4(m1, 4);
    SHANI_ROUNDS4(m2, 8);
    SHANI_ROUNDS4(m3, 12);
    for (int t = 16; t < 64; t += 16) {
      SHANI_SCHED(m0, m1, m2, m3);
      SHANI_ROUNDS4(m0, t);
      SHANI_SCHED(m1, m2, m3, m0);
      SHANI_ROUNDS4(m1, t + 4);
      SHANI_SCHED(m2, m3, m0, m1);
      SHANI_ROUNDS4(m2, t + 8);
      SHANI_SCHED(m3, m0, m1, m2);
      SHANI_ROUNDS4(m3, t + 12);
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
  }
  uint32_t x[4], y[4];
  _mm_storeu_si128((__m128i *)x, abef); /* x = {F, E, B, A} */
  _mm_storeu_si128((__m128i *)y, cdgh); /* y = {H, G, D, C} */
  hs[0] = x[3], hs[1] = x[2], hs[4] = x[1], hs[5] = x[0];
  hs[2] = y[3], hs[3] = y[2], hs[6] = y[1], hs[7] = y[0];
}

#if defined(__clang__)
/* Clang (up to 16 at least) rejects __builtin_cpu_supports("sha"): ask CPUID directly
 * (SDM: leaf 1 ECX bit 9 SSSE3, bit 19 SSE4.1; leaf 7 subleaf 0 EBX bit 29 SHA). */
#include <cpuid.h>
static int cpu_has_shani(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 9 & 1) || !(c >> 19 & 1)) return 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1);
}
#else
static int cpu_has_shani(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") &&
         __builtin_cpu_supports("ssse3");
}
#endif
#else
static int cpu_has_shani(void) { return 0; }
#endif

/* ---- padding and dispatch ----------------------------------------------------------- */

static void sha256_with(blocks_fn blocks, const void *data, size_t n, uint8_t out[32]) {
  /* §5.3.3: initial hash value. */
  uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
  const uint8_t *p = data;
  size_t full = n / 64;
  if (full) blocks(h, p, full);
  /* §5.1.1 padding: 0x80, zeros, then the bit length as a big-endian 64-bit number;
   * one or two final blocks. */
  uint8_t tail[128] = {0};
  size_t rest = n % 64;
  if (rest) memcpy(tail, p + 64 * full, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8u;
  for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
  blocks(h, tail, tail_len / 64);
  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, h[i]);
}

void kart_sha256_portable(const void *data, size_t n, uint8_t out[32]) {
  sha256_with(portable_blocks, data, n, out);
}

int kart_sha256_shani(const void *data, size_t n, uint8_t out[32]) {
#if defined(__x86_64__)
  if (!cpu_has_shani()) return 0;
  sha256_with(shani_blocks, data, n, out);
  return 1;
#else
  (void)data, (void)n, (void)out;
  return 0;
#endif
}

/* 0: not chosen yet; 1: portable; 2: SHA extensions. Threads racing on the first call
 * compute the same answer. */
static atomic_int g_impl;

static int chosen_impl(void) {
  int impl = atomic_load_explicit(&g_impl, memory_order_relaxed);
  if (impl) return impl;
  const char *no = getenv("KILN_RT_NO_SHANI");
  int off = no && *no && strcmp(no, "0") != 0;
  impl = !off && cpu_has_shani() ? 2 : 1;
  atomic_store_explicit(&g_impl, impl, memory_order_relaxed);
  return impl;
}

int kart_sha256_uses_shani(void) { return chosen_impl() == 2; }

void kart_sha256(const void *data, size_t n, uint8_t out[32]) {
#if defined(__x86_64__)
  if (chosen_impl() == 2) {
    sha256_with(shani_blocks, data, n, out);
    return;
  }
#endif
  sha256_with(portable_blocks, data, n, out);
}

void kart_hex(const uint8_t digest[32], char out[65]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  out[64] = '\0';
}
