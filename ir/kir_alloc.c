/* kir_alloc.c — the one allocation hook of the compiler side, with the test hooks
 * (fail after N allocations, live-block count) and a budgeted protobuf-c allocator.
 * Depends on libc only. Not thread-safe: the hook and counters are process-wide. */
#include "kir_alloc.h"

#include <stdlib.h>
#include <string.h>

static void *default_alloc(void *ctx, size_t n) {
  (void)ctx;
  return malloc(n);
}

static void default_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

static kir_allocator hook = {default_alloc, default_free, NULL};
static long fail_after = -1; /* successes left before failing; < 0: never fail */
static long live_blocks = 0;

void kir_alloc_set(const kir_allocator *a) {
  if (a && a->alloc && a->free) {
    hook = *a;
  } else {
    hook.alloc = default_alloc;
    hook.free = default_free;
    hook.ctx = NULL;
  }
}

void kir_alloc_fail_after(long n) { fail_after = n < 0 ? -1 : n; }

long kir_alloc_live(void) { return live_blocks; }

/* n == 0 still returns a distinct block, so callers can treat NULL as out-of-memory. */
void *kir_malloc(size_t n) {
  if (fail_after == 0) return NULL;
  void *p = hook.alloc(hook.ctx, n ? n : 1);
  if (!p) return NULL;
  if (fail_after > 0) fail_after--;
  live_blocks++;
  return p;
}

void *kir_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  void *p = kir_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *kir_realloc(void *p, size_t old_n, size_t new_n) {
  void *q = kir_malloc(new_n);
  if (!q) return NULL;
  if (p) {
    memcpy(q, p, old_n < new_n ? old_n : new_n);
    kir_free(p);
  }
  return q;
}

void kir_free(void *p) {
  if (!p) return;
  live_blocks--;
  hook.free(hook.ctx, p);
}

char *kir_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = kir_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- budgeted allocator for protobuf-c unpacking ---------------------------------
 * Each block carries its size in a 16-byte header (keeps max_align_t alignment) so
 * free can give the bytes back to the budget. */
#define PB_HEADER 16

static void *pb_alloc(void *ctx, size_t n) {
  kir_pb_allocator *a = ctx;
  if (n > SIZE_MAX - PB_HEADER) return NULL;
  uint64_t total = (uint64_t)n + PB_HEADER;
  if (total > a->budget || a->used > a->budget - total) return NULL;
  unsigned char *p = kir_malloc((size_t)total);
  if (!p) return NULL;
  memcpy(p, &total, sizeof total);
  a->used += total;
  return p + PB_HEADER;
}

static void pb_free(void *ctx, void *p) {
  kir_pb_allocator *a = ctx;
  if (!p) return;
  unsigned char *base = (unsigned char *)p - PB_HEADER;
  uint64_t total;
  memcpy(&total, base, sizeof total);
  a->used = total <= a->used ? a->used - total : 0;
  kir_free(base);
}

void kir_pb_allocator_init(kir_pb_allocator *a, uint64_t budget) {
  if (!a) return;
  a->alloc = pb_alloc;
  a->free = pb_free;
  a->ctx = a;
  a->budget = budget;
  a->used = 0;
}
