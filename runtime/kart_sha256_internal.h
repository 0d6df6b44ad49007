/* kart_sha256_internal.h — TEST-ONLY entry points into runtime/kart_sha256.c: the two
 * SHA-256 implementations behind kart_sha256 (kiln_artifact.h), so tests can check each
 * one whatever the CPU picks. Not part of any API; libc only, never the compiler. */
#ifndef KART_SHA256_INTERNAL_H
#define KART_SHA256_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KART_SHA256_INTERNAL_API __attribute__((visibility("default")))

/* The portable C path (any architecture). */
KART_SHA256_INTERNAL_API void kart_sha256_portable(const void *data, size_t n, uint8_t out[32]);
/* The x86-64 SHA extensions path. Returns 1 after hashing into out, or 0 (out untouched)
 * where it cannot run: not an x86-64 build, or the CPU lacks SHA/SSE4.1/SSSE3. */
KART_SHA256_INTERNAL_API int kart_sha256_shani(const void *data, size_t n, uint8_t out[32]);
/* 1 when kart_sha256 uses the SHA extensions: the CPU has them and the environment
 * variable KILN_RT_NO_SHANI was unset (or empty, or "0") at the first hash. */
KART_SHA256_INTERNAL_API int kart_sha256_uses_shani(void);

#ifdef __cplusplus
}
#endif
#endif
