/* fuzz_artifact.c — fuzz target for the artifact loader (kiln_rt_model_open_bytes).
 * Two modes, chosen by the first byte:
 *   0x01: structure-aware. Bytes 1-2 (little-endian) are a weights size, the rest is a
 *         kiln.rt.Plan. They are wrapped in a well-formed container with correct hashes,
 *         that many weight bytes and a code section that is not a shared object, so the
 *         plan's unpacking and validation run in full and loading must fail cleanly at
 *         dlopen at the latest.
 *   else: the whole input is the artifact file (container parser, hashes, everything).
 * Native code behind a valid hash is trusted by design (the hash guards against
 * corruption, not against a hostile author), and libFuzzer learns memcmp operands, so it
 * can forge a matching hash for a corrupted shared object, which then crashes the
 * system's dynamic loader inside dlopen. So raw inputs whose container parses with an
 * ELF code section stop after kart_parse; loading real code is tested in
 * tests/runtime and tests/codegen, and plan validation here by mode 0x01.
 * Properties: no crash, leak or sanitizer report; failures carry a message; a model
 * that opens answers its accessors and runs once on zeroed buffers. Depends on
 * libkiln_rt and its container header only. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_runtime.h"

#define MODE_PLAN 0x01
#define N_SECTIONS 3
static const char not_code[] = "this is not an ELF shared object\n";

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static size_t align_up(size_t n) { return (n + KART_ALIGN - 1) / KART_ALIGN * KART_ALIGN; }

/* A container holding plan, weights (a fixed pattern) and the non-code section, laid out
 * as kart_write does. *out is malloc'd; NULL on OOM. */
static uint8_t *wrap_plan(const uint8_t *plan, size_t plan_n, size_t weights_n, size_t *out_n) {
  const uint32_t kinds[N_SECTIONS] = {KART_SEC_PLAN, KART_SEC_WEIGHTS, KART_SEC_CODE_CPU};
  size_t sizes[N_SECTIONS] = {plan_n, weights_n, sizeof not_code - 1};
  size_t offs[N_SECTIONS];
  size_t end = align_up(KART_HEADER_BYTES + N_SECTIONS * KART_ENTRY_BYTES);
  for (int i = 0; i < N_SECTIONS; i++) {
    offs[i] = end;
    end = align_up(end + sizes[i]);
  }
  uint8_t *f = calloc(1, end);
  if (!f) return NULL;
  memcpy(f, KART_MAGIC, sizeof KART_MAGIC);
  put_u16(f + 8, KART_MAJOR);
  put_u16(f + 10, KART_MINOR);
  put_u32(f + 12, N_SECTIONS);
  put_u64(f + 16, end);
  if (plan_n) memcpy(f + offs[0], plan, plan_n);
  for (size_t i = 0; i < weights_n; i++) f[offs[1] + i] = (uint8_t)(i * 37 + 11);
  memcpy(f + offs[2], not_code, sizes[2]);
  for (int i = 0; i < N_SECTIONS; i++) {
    uint8_t *e = f + KART_HEADER_BYTES + i * KART_ENTRY_BYTES;
    put_u32(e, kinds[i]);
    put_u64(e + 8, offs[i]);
    put_u64(e + 16, sizes[i]);
    kart_sha256(f + offs[i], sizes[i], e + 24);
  }
  *out_n = end;
  return f;
}

/* A model that opened: every accessor answers, and one run on zeroed buffers works. */
static void exercise(kiln_rt_model *m) {
  int ni = kiln_rt_model_num_inputs(m), no = kiln_rt_model_num_outputs(m);
  FUZZ_CHECK(ni >= 0 && no >= 0, "%d inputs, %d outputs", ni, no);
  kiln_rt_buffer *bufs = calloc((size_t)(ni + no) + 1, sizeof *bufs);
  if (!bufs) return;
  int ok = 1;
  for (int i = 0; i < ni + no; i++) {
    kiln_rt_tensor_info info;
    kiln_rt_status st = i < ni ? kiln_rt_model_input(m, i, &info) : kiln_rt_model_output(m, i - ni, &info);
    FUZZ_CHECK(st == KILN_RT_OK, "tensor %d info: status %d", i, (int)st);
    FUZZ_CHECK((i < ni ? kiln_rt_model_find_input(m, info.name)
                       : kiln_rt_model_find_output(m, info.name)) == (i < ni ? i : i - ni),
               "find by name of tensor %d", i);
    if (info.nbytes > ((size_t)64 << 20)) ok = 0; /* a real but big model: don't run it */
    bufs[i].nbytes = info.nbytes;
    bufs[i].data = ok ? aligned_alloc(64, (info.nbytes + 63) / 64 * 64 + 64) : NULL;
    if (bufs[i].data) memset(bufs[i].data, 0, info.nbytes);
    else ok = 0;
  }
  kiln_rt_context *c = NULL;
  if (ok && kiln_rt_context_create(m, &c) == KILN_RT_OK)
    (void)kiln_rt_run(c, bufs, ni, bufs + ni, no); /* EXEC is a fine answer */
  kiln_rt_context_destroy(c);
  for (int i = 0; i < ni + no; i++) free(bufs[i].data);
  free(bufs);
}

static void open_and_check(const uint8_t *bytes, size_t n, int must_fail) {
  kiln_rt_model *m = NULL;
  kiln_rt_status st = kiln_rt_model_open_bytes(bytes, n, &m);
  if (!m) return; /* out of memory */
  if (st == KILN_RT_OK) {
    FUZZ_CHECK(!must_fail, "an artifact whose code is not a shared object opened");
    exercise(m);
  } else {
    FUZZ_CHECK(kiln_rt_model_error(m)[0] != '\0', "status %d without a message", (int)st);
    FUZZ_CHECK(kiln_rt_model_num_inputs(m) == 0 && kiln_rt_model_arena_bytes(m) == 0,
               "a failed model answers accessors");
  }
  kiln_rt_model_close(m);
}

/* False when the container is hash-valid and its code section is an ELF file: such an
 * input would only exercise the system's loader on (possibly forged) native code. */
static int safe_to_load(const uint8_t *data, size_t size) {
  kart_section secs[KART_MAX_SECTIONS];
  int n = 0;
  char err[256];
  if (kart_parse(data, size, secs, &n, err, sizeof err) != 0) return 1; /* refused before dlopen */
  const kart_section *code = kart_find(secs, n, KART_SEC_CODE_CPU);
  return !code || code->size < 4 || memcmp(code->data, "\x7f" "ELF", 4) != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size >= 3 && data[0] == MODE_PLAN) {
    size_t weights_n = (size_t)data[1] | (size_t)data[2] << 8, n = 0;
    uint8_t *f = wrap_plan(data + 3, size - 3, weights_n, &n);
    if (f) open_and_check(f, n, 1);
    free(f);
    return 0;
  }
  if (safe_to_load(data, size)) open_and_check(data, size, 0);
  return 0;
}
