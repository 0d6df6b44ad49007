/* kiln_artifact.h — the artifact container, shared by the runtime (reader) and the
 * compiler (writer, codegen/). Internal to Kiln: applications use kiln_runtime.h.
 * Part of libkiln_rt; depends on libc only. The compiler may include this header; this
 * header never includes compiler headers.
 *
 * Layout (all integers little-endian):
 *   header, 64 bytes:
 *     0  char     magic[8] = "KILNART\0"
 *     8  uint16   major (KART_MAJOR; a newer major is refused), uint16 minor
 *     12 uint32   n_sections (1..KART_MAX_SECTIONS)
 *     16 uint64   file_size (must equal the real size)
 *     24 uint8    reserved[40] (zero)
 *   section table, n_sections entries of KART_ENTRY_BYTES = 56 bytes:
 *     0  uint32   kind (KART_SEC_*), 4 uint32 reserved (zero)
 *     8  uint64   offset (64-aligned, after the table), 16 uint64 size
 *     24 uint8    sha256[32] of the section's bytes
 *   sections' bytes, each at its offset, not overlapping, inside the file.
 * Every section's SHA-256 is checked before any of its bytes are used. */
#ifndef KILN_ARTIFACT_H
#define KILN_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KART_MAGIC "KILNART"  /* + NUL = 8 bytes */
#define KART_MAJOR 1
#define KART_MINOR 0
#define KART_HEADER_BYTES 64
#define KART_ENTRY_BYTES 56
#define KART_MAX_SECTIONS 16
#define KART_ALIGN 64
/* ABI of the generated entry function; the code section exports kiln_abi_version.
 * Target "cuda" (plan entry "kiln_step"): the code section exports instead
 *   int kiln_step(int i, const void *const *inputs, void *const *outputs,
 *                 unsigned char *arena, const unsigned char *weights);
 * running CPU step i only (0, or 1 + i on a run-time error); the plan's schedule says
 * when. */
#define KART_ABI 1

enum {
  KART_SEC_PLAN = 1,     /* protobuf kiln.rt.Plan (runtime/kiln_artifact.proto) */
  KART_SEC_WEIGHTS = 2,  /* raw bytes of every constant, at the plan's offsets */
  KART_SEC_CODE_CPU = 3, /* an ELF shared object for the host, exporting kiln_entry */
  KART_SEC_SOURCE_C = 4, /* the generated C source, for inspection (never executed) */
  /* target "cuda": every compiled image of the CUDA translation unit (cubin per sm_NN,
   * PTX), back to back; the plan's CudaImage list says where each is and its SHA-256 */
  KART_SEC_CODE_CUDA = 5,
  KART_SEC_SOURCE_CUDA = 6 /* the generated CUDA C, for inspection */
};

typedef struct kart_section {
  uint32_t kind;
  uint64_t offset;
  uint64_t size;
  uint8_t sha256[32];
  const uint8_t *data; /* reader: points into the file's bytes; writer: bytes to write */
} kart_section;

/* The generated code's entry point:
 *   int kiln_entry(const void *const *inputs, void *const *outputs,
 *                  unsigned char *arena, const unsigned char *weights);
 * returns 0, or 1 + the index of the step that failed (integer division by zero). */
typedef int (*kart_entry_fn)(const void *const *inputs, void *const *outputs,
                             unsigned char *arena, const unsigned char *weights);
typedef int (*kart_step_fn)(int i, const void *const *inputs, void *const *outputs,
                            unsigned char *arena, const unsigned char *weights);

void kart_sha256(const void *data, size_t n, uint8_t out[32]);
/* Lowercase hex of a digest into out (65 bytes). */
void kart_hex(const uint8_t digest[32], char out[65]);

/* Parses and checks the container: magic, version, file size, table bounds, every
 * section in range, 64-aligned, non-overlapping, of a known kind at most once, and its
 * hash. On success sections[0..*n) point into bytes. On failure returns a
 * kiln_rt_status number and writes a message (naming the section and value) to err. */
int kart_parse(const uint8_t *bytes, size_t n, kart_section *sections, int *n_sections,
               char *err, size_t errlen);
/* Finds a parsed section by kind; NULL if absent. */
const kart_section *kart_find(const kart_section *s, int n, uint32_t kind);

/* Writes sections (kind, data, size set; offsets and hashes computed here) to path
 * atomically: temp file in the same directory, then rename; nothing left on failure.
 * Returns a kiln_rt_status number; message in err. */
int kart_write(const char *path, kart_section *sections, int n_sections, char *err,
               size_t errlen);

/* x86 features for host-specific code (runtime/kart_cpu.c). kart_cpu_has: 1 this CPU
 * has it, 0 it lacks it, -1 a name this runtime cannot check. kart_cpu_features lists
 * this CPU's features from the same table (at most max; returns the count); the names
 * are static strings. */
#define KART_MAX_CPU_FEATURES 32
int kart_cpu_has(const char *feature);
int kart_cpu_features(const char **out, int max);

#ifdef __cplusplus
}
#endif
#endif
