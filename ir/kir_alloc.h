/* kir_alloc.h — the one allocation hook of the compiler side (ir, frontend, passes,
 * codegen, tools). Shaped like protobuf-c's allocator so the same hook serves
 * unpacking. Tests install a hook that fails the Nth allocation and counts live blocks.
 * Depends on libc and protobuf-c only. */
#ifndef KIR_ALLOC_H
#define KIR_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kir_allocator {
  void *(*alloc)(void *ctx, size_t n);   /* NULL on failure */
  void (*free)(void *ctx, void *p);      /* p may be NULL */
  void *ctx;
} kir_allocator;

/* Installs a hook (NULL restores malloc/free). Not thread-safe: set it before use. */
void kir_alloc_set(const kir_allocator *a);

void *kir_malloc(size_t n);            /* NULL on failure or n == 0 overflow */
void *kir_calloc(size_t count, size_t size); /* zeroed; NULL on overflow */
/* Grows or shrinks; old_n is the block's current size (the hook has no realloc). */
void *kir_realloc(void *p, size_t old_n, size_t new_n);
void kir_free(void *p);
char *kir_strdup(const char *s);

/* Test hook: after `n` more successful allocations, every allocation fails (n < 0:
 * never fail). Counts live blocks so tests can check for leaks. */
void kir_alloc_fail_after(long n);
long kir_alloc_live(void);       /* blocks allocated and not yet freed */

/* A ProtobufCAllocator-compatible struct that routes to the hook, with a byte budget:
 * allocations that would push the total past `budget` fail. Declared as void* here to
 * keep protobuf-c out of this header; see kir_serialize.c. */
typedef struct kir_pb_allocator {
  void *(*alloc)(void *ctx, size_t n);
  void (*free)(void *ctx, void *p);
  void *ctx; /* points at the struct itself */
  uint64_t budget;
  uint64_t used;
} kir_pb_allocator;
void kir_pb_allocator_init(kir_pb_allocator *a, uint64_t budget);

#ifdef __cplusplus
}
#endif
#endif
