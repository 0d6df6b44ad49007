/* rt_fixture.c — what the runtime tests share: a temp dir, small shared objects compiled
 * with the system cc, hand-made plans (protobuf-c) and artifacts packed with kart_write.
 * Tests only; links libkiln_rt and cmocka. */
#include "rt_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char rtf_dir[256];

const char *rtf_path(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", rtf_dir, name);
  return p;
}

void rtf_write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

void rtf_write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

uint8_t *rtf_slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

/* y = 2 * x + w, through a temporary in the arena. */
const char RTF_SRC_SCALE[] =
    "const unsigned kiln_abi_version = 1;\n"
    "int kiln_entry(const void *const *in, void *const *out, unsigned char *arena,\n"
    "               const unsigned char *weights) {\n"
    "  const float *x = in[0], *w = (const float *)weights;\n"
    "  float *t = (float *)arena, *y = out[0];\n"
    "  for (int i = 0; i < 4; i++) t[i] = x[i] * 2.0f;\n"
    "  for (int i = 0; i < 4; i++) y[i] = t[i] + w[i];\n"
    "  return 0;\n"
    "}\n";

/* o = a / b (i32); a zero divisor fails step 1. */
void rtf_compile_so(const char *name, const char *src) {
  char c[600], so[600], cmd[1400];
  snprintf(c, sizeof c, "%s/%s.c", rtf_dir, name);
  snprintf(so, sizeof so, "%s/%s.so", rtf_dir, name);
  rtf_write_text(c, src);
  snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -o '%s' '%s'", so, c);
  if (system(cmd) != 0) fail_msg("could not compile %s with the system cc", c);
}


Kiln__Rt__TensorSpec *rtf_spec(rtf_plan *t, int i, const char *name, int dtype, int rank,
                                  int64_t d0) {
  Kiln__Rt__TensorSpec *s = &t->specs[i];
  kiln__rt__tensor_spec__init(s);
  s->name = (char *)name;
  s->dtype = dtype;
  s->n_dims = (size_t)rank;
  s->dims = t->dims[i];
  for (int k = 0; k < 9; k++) t->dims[i][k] = d0;
  return s;
}

void rtf_buffer(rtf_plan *t, int i, Kiln__Rt__TensorSpec *s, Kiln__Rt__Location loc,
                   uint64_t off, uint64_t size) {
  Kiln__Rt__Buffer *b = &t->bufs[i];
  kiln__rt__buffer__init(b);
  b->tensor = s;
  b->loc = loc;
  b->offset = off;
  b->size = size;
  t->bufp[i] = b;
}

void rtf_step(rtf_plan *t, int i, const char *kernel, char **nodes, int32_t *in, int n_in,
                 int out) {
  Kiln__Rt__Step *s = &t->steps[i];
  kiln__rt__step__init(s);
  s->kernel = (char *)kernel;
  s->n_nodes = 1;
  s->nodes = nodes;
  s->inputs = in;
  s->n_inputs = (size_t)n_in;
  s->output = out;
  t->stepp[i] = s;
}

void rtf_plan_common(rtf_plan *t, int n_in, int n_buf, uint64_t arena, uint64_t weights) {
  kiln__rt__plan__init(&t->plan);
  t->plan.abi = KART_ABI;
  t->plan.target = "cpu";
  t->plan.entry = "kiln_entry";
  t->plan.n_inputs = (size_t)n_in;
  t->plan.inputs = t->ins;
  t->plan.n_outputs = 1;
  t->plan.outputs = t->outs;
  t->plan.n_output_buffers = 1;
  t->plan.output_buffers = t->out_bufs;
  t->plan.n_buffers = (size_t)n_buf;
  t->plan.buffers = t->bufp;
  t->plan.n_steps = 2;
  t->plan.steps = t->stepp;
  t->plan.arena_bytes = arena;
  t->plan.weights_bytes = weights;
  t->plan.producer = "test_runtime";
}

/* x f32[4] -> t = 2x (arena 0) -> y = t + w (arena 16), w f32[4] in weights. */
void rtf_plan_scale(rtf_plan *t) {
  memset(t, 0, sizeof *t);
  t->ins[0] = rtf_spec(t, 0, "x", KILN_RT_F32, 1, 4);
  t->outs[0] = rtf_spec(t, 1, "y", KILN_RT_F32, 1, 4);
  rtf_buffer(t, 0, rtf_spec(t, 2, "x", KILN_RT_F32, 1, 4), KILN__RT__LOCATION__LOC_INPUT, 0, 16);
  rtf_buffer(t, 1, rtf_spec(t, 3, "w", KILN_RT_F32, 1, 4), KILN__RT__LOCATION__LOC_WEIGHTS, 0, 16);
  rtf_buffer(t, 2, rtf_spec(t, 4, "x2", KILN_RT_F32, 1, 4), KILN__RT__LOCATION__LOC_ARENA, 0, 16);
  rtf_buffer(t, 3, rtf_spec(t, 5, "y", KILN_RT_F32, 1, 4), KILN__RT__LOCATION__LOC_ARENA, 16, 16);
  t->nodes0[0] = "x2";
  t->nodes1[0] = "y";
  t->s0_in[0] = 0;
  t->s1_in[0] = 2, t->s1_in[1] = 1;
  rtf_step(t, 0, "k0_mul", t->nodes0, t->s0_in, 1, 2);
  rtf_step(t, 1, "k1_add", t->nodes1, t->s1_in, 2, 3);
  t->out_bufs[0] = 3;
  rtf_plan_common(t, 1, 4, 32, 16);
}

/* a, b i32[3] -> o = a / b (arena 0). Step 1 is the division. */
void rtf_plan_div(rtf_plan *t) {
  memset(t, 0, sizeof *t);
  t->ins[0] = rtf_spec(t, 0, "a", KILN_RT_I32, 1, 3);
  t->ins[1] = rtf_spec(t, 1, "b", KILN_RT_I32, 1, 3);
  t->outs[0] = rtf_spec(t, 2, "o", KILN_RT_I32, 1, 3);
  rtf_buffer(t, 0, rtf_spec(t, 3, "a", KILN_RT_I32, 1, 3), KILN__RT__LOCATION__LOC_INPUT, 0, 12);
  rtf_buffer(t, 1, rtf_spec(t, 4, "b", KILN_RT_I32, 1, 3), KILN__RT__LOCATION__LOC_INPUT, 0, 12);
  t->bufs[1].index = 1;
  rtf_buffer(t, 2, rtf_spec(t, 5, "o", KILN_RT_I32, 1, 3), KILN__RT__LOCATION__LOC_ARENA, 0, 12);
  t->nodes0[0] = "a/copy";
  t->nodes1[0] = "a/div";
  t->s0_in[0] = 0;
  t->s1_in[0] = 0, t->s1_in[1] = 1;
  rtf_step(t, 0, "k0_copy", t->nodes0, t->s0_in, 1, -1);
  rtf_step(t, 1, "k1_div", t->nodes1, t->s1_in, 2, 2);
  t->out_bufs[0] = 2;
  rtf_plan_common(t, 2, 3, 64, 0);
}

const float RTF_SCALE_W[4] = {0.5f, 1.0f, 1.5f, 2.0f};

/* Packs plan + weights + the named .so (+ a source section) into path. */
int rtf_pack_artifact(const char *path, const Kiln__Rt__Plan *plan, const void *w, size_t wn,
                         const char *so) {
  size_t pn = kiln__rt__plan__get_packed_size(plan);
  uint8_t *pb = malloc(pn + 1);
  assert_non_null(pb);
  kiln__rt__plan__pack(plan, pb);
  size_t cn;
  uint8_t *code = rtf_slurp(rtf_path(so), &cn);
  kart_section s[4] = {{.kind = KART_SEC_PLAN, .data = pb, .size = pn},
                       {.kind = KART_SEC_WEIGHTS, .data = w, .size = wn},
                       {.kind = KART_SEC_CODE_CPU, .data = code, .size = cn},
                       {.kind = KART_SEC_SOURCE_C, .data = (const uint8_t *)"int x;", .size = 6}};
  char err[512];
  int st = kart_write(path, s, 4, err, sizeof err);
  free(pb);
  free(code);
  return st;
}

