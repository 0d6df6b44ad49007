/* kart_cpu.c — the x86 features an artifact's code may need and whether this CPU has
 * them. Code compiled with -march=native records the build machine's features in the
 * plan (cpu_features); the runtime refuses to load it on a CPU that lacks one, instead
 * of dying of SIGILL at the first instruction it cannot run. Part of libkiln_rt. */
#include <string.h>

#include "kiln_artifact.h"

/* __builtin_cpu_supports needs a literal, so each feature is one line. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KART_FEATURES(X)                                                              \
  X("popcnt") X("sse3") X("ssse3") X("sse4.1") X("sse4.2") X("avx") X("avx2") X("fma") \
  X("bmi") X("bmi2") X("avx512f") X("avx512dq") X("avx512bw") X("avx512vl")            \
  X("avx512cd") X("avx512vnni")
#define KART_HAVE_CHECK 1
#else
#define KART_HAVE_CHECK 0
#endif

int kart_cpu_has(const char *feature) {
#if KART_HAVE_CHECK
  __builtin_cpu_init();
#define CHECK(name)                                                                   \
  if (strcmp(feature, name) == 0) return __builtin_cpu_supports(name) ? 1 : 0;
  KART_FEATURES(CHECK)
#undef CHECK
#else
  (void)feature;
#endif
  return -1;
}

int kart_cpu_features(const char **out, int max) {
  int n = 0;
#if KART_HAVE_CHECK
  __builtin_cpu_init();
#define LIST(name)                                                                    \
  if (__builtin_cpu_supports(name) && n < max) out[n++] = name;
  KART_FEATURES(LIST)
#undef LIST
#else
  (void)out;
  (void)max;
#endif
  return n;
}
