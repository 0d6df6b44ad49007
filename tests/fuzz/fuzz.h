/* fuzz.h — what every fuzz target in tests/fuzz shares: the libFuzzer entry point (also
 * driven by replay_main.c in normal builds) and a loud failure for broken properties.
 * Depends on libc only. */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the target checks failed: print why and abort, so libFuzzer (or the replay
 * driver under ctest) reports the input as a crash. Fuzz harness only: library code
 * never aborts on input. */
#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                             \
      fputc('\n', stderr);                                                      \
      abort();                                                                  \
    }                                                                           \
  } while (0)

#endif
