/* kiln_rt_alloc.c — the runtime's one allocation hook: every block libkiln_rt allocates
 * (model, plan unpacking, weights, arenas, .npy data, temp-file names) goes through
 * rt_hook, which counts live blocks and can be told to fail (kiln_rt_testing.h).
 * Depends on libc and protobuf-c only; never on ir/kir_alloc.h or the compiler. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_rt_internal.h"
#include "kiln_rt_testing.h"

/* Shaped like ProtobufCAllocator, plus an alignment (0: malloc's own). The default hook
 * gives blocks that free() accepts, which kiln_rt_npy.data promises. */
typedef struct rt_hook_t {
  void *(*alloc)(void *ctx, size_t n, size_t align);
  void (*free)(void *ctx, void *p);
  void *ctx;
} rt_hook_t;

static void *system_alloc(void *ctx, size_t n, size_t align) {
  (void)ctx;
  if (!align) return malloc(n);
  void *p = NULL;
  return posix_memalign(&p, align, n) == 0 ? p : NULL;
}

static void system_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

static const rt_hook_t rt_hook = {system_alloc, system_free, NULL};

/* Contexts may be created from several threads, so the counters are atomic. */
static atomic_long g_fail_after = -1; /* successes left before failing; < 0: never */
static atomic_long g_live = 0;

void kiln_rt_testing_fail_after(long n) { atomic_store(&g_fail_after, n < 0 ? -1 : n); }

long kiln_rt_testing_live(void) { return atomic_load(&g_live); }

/* 0 when the test hook says this allocation fails; otherwise uses up one success. */
static int may_allocate(void) {
  long left = atomic_load(&g_fail_after);
  while (left > 0)
    if (atomic_compare_exchange_weak(&g_fail_after, &left, left - 1)) return 1;
  return left != 0;
}

static void *hook_alloc(size_t n, size_t align) {
  if (!may_allocate()) return NULL;
  void *p = rt_hook.alloc(rt_hook.ctx, n ? n : 1, align);
  if (p) atomic_fetch_add(&g_live, 1);
  return p;
}

void *kiln_rt__malloc(size_t n) { return hook_alloc(n, 0); }

void *kiln_rt__calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  void *p = hook_alloc(count * size, 0);
  if (p) memset(p, 0, count * size);
  return p;
}

void *kiln_rt__malloc_aligned(size_t n) {
  if (n > SIZE_MAX - (RT_ALIGN - 1)) return NULL;
  size_t rounded = n ? (n + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN : RT_ALIGN;
  return hook_alloc(rounded, RT_ALIGN);
}

void kiln_rt__free(void *p) {
  if (!p) return;
  atomic_fetch_sub(&g_live, 1);
  rt_hook.free(rt_hook.ctx, p);
}

char *kiln_rt__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = kiln_rt__malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- protobuf-c adaptor: the plan's unpacking, under a byte budget ---- */

static void *budget_alloc(void *data, size_t size) {
  rt_budget *b = data;
  if (size > b->limit - b->used) {
    b->refused = 1;
    return NULL;
  }
  void *p = kiln_rt__malloc(size);
  if (!p) {
    b->failed = 1;
    return NULL;
  }
  b->used += size;
  return p;
}

static void budget_free(void *data, void *p) {
  (void)data;
  kiln_rt__free(p);
}

void kiln_rt__pb_allocator(rt_budget *b, size_t limit, ProtobufCAllocator *out) {
  *b = (rt_budget){.limit = limit};
  *out = (ProtobufCAllocator){budget_alloc, budget_free, b};
}
