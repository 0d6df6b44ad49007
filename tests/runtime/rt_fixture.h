/* rt_fixture.h — shared fixtures of the runtime tests (test_runtime, test_runtime_oom):
 * a per-run temp dir, the "scale" artifact (y = 2x + w through the arena), plans made
 * with protobuf-c directly, and artifacts packed with kart_write. Tests only. */
#ifndef RT_FIXTURE_H
#define RT_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_artifact.pb-c.h"
#include "runtime/kiln_artifact.h"
#include "runtime/kiln_runtime.h"

/* The test's temp dir (the caller makes it with mkdtemp and removes it). */
extern char rtf_dir[256];
/* rtf_dir/name in one of 8 rotating buffers. */
const char *rtf_path(const char *name);
void rtf_write_text(const char *path, const char *text);
void rtf_write_bytes(const char *path, const void *data, size_t n);
/* The whole file, malloc'd (+1 byte); *n its size. */
uint8_t *rtf_slurp(const char *path, size_t *n);

/* y = 2 * x + w, through a temporary in the arena; w is RTF_SCALE_W. */
extern const char RTF_SRC_SCALE[];
extern const float RTF_SCALE_W[4];
/* rtf_dir/name.so from src, with the system cc. */
void rtf_compile_so(const char *name, const char *src);

/* A plan built in place: every message lives in the struct. */
typedef struct rtf_plan {
  Kiln__Rt__Plan plan;
  Kiln__Rt__TensorSpec specs[8];
  Kiln__Rt__TensorSpec *ins[2], *outs[1];
  Kiln__Rt__Buffer bufs[5];
  Kiln__Rt__Buffer *bufp[5];
  Kiln__Rt__Step steps[2];
  Kiln__Rt__Step *stepp[2];
  int32_t out_bufs[1];
  int64_t dims[8][9];
  int32_t s0_in[2], s1_in[2];
  char *nodes0[1], *nodes1[1];
} rtf_plan;

Kiln__Rt__TensorSpec *rtf_spec(rtf_plan *t, int i, const char *name, int dtype, int rank,
                               int64_t d0);
void rtf_buffer(rtf_plan *t, int i, Kiln__Rt__TensorSpec *s, Kiln__Rt__Location loc,
                uint64_t off, uint64_t size);
void rtf_step(rtf_plan *t, int i, const char *kernel, char **nodes, int32_t *in, int n_in,
              int out);
void rtf_plan_common(rtf_plan *t, int n_in, int n_buf, uint64_t arena, uint64_t weights);
/* x f32[4] -> t = 2x (arena 0) -> y = t + w (arena 16), w f32[4] in weights. */
void rtf_plan_scale(rtf_plan *t);
/* a, b i32[3] -> o = a / b (arena 0). Step 1 is the division. */
void rtf_plan_div(rtf_plan *t);
/* Packs plan + weights + rtf_dir/so (+ a source section) into path; a kiln_rt_status. */
int rtf_pack_artifact(const char *path, const Kiln__Rt__Plan *plan, const void *w, size_t wn,
                      const char *so);

#endif
