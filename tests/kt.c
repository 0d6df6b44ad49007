/* kt.c — shared test helpers; see kt.h. */
#include "kt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void kt_fill(kir_tensor *t, uint64_t seed, double lo, double hi) {
  int64_t n = kir_type_numel(&t->type);
  uint64_t s = seed;
  for (int64_t i = 0; i < n; i++) {
    double u = (double)(splitmix(&s) >> 11) / 9007199254740992.0;
    double v = lo + (hi - lo) * u;
    switch (t->type.dtype) {
    case KILN_F32: case KILN_F64: case KILN_F16: case KILN_BF16: kir_tensor_set_f(t, i, v); break;
    case KILN_I32: case KILN_I64: case KILN_U8: case KILN_I8: case KILN_U16: case KILN_I16:
    case KILN_U32: case KILN_U64:
      kir_tensor_set_f(t, i, floor(v)); /* saturated to the dtype's range */
      break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = v >= (lo + hi) / 2; break;
    case KILN_DTYPE_INVALID: break;
    }
  }
}

static bool is_float(kiln_dtype t) { return kir_dtype_is_float(t); }

double kt_rel_error(const kir_tensor *a, const kir_tensor *b) {
  if (!a || !b || !kir_type_equal(&a->type, &b->type)) return INFINITY;
  int64_t n = kir_type_numel(&a->type);
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!is_float(a->type.dtype)) {
      if (kir_tensor_get_i(a, i) != kir_tensor_get_i(b, i)) return INFINITY;
      continue;
    }
    double x = kir_tensor_get_f(a, i), y = kir_tensor_get_f(b, i);
    if (isnan(x) || isnan(y)) return INFINITY;
    if (isinf(x) || isinf(y)) { if (x != y) return INFINITY; continue; }
    worst = fmax(worst, fabs(x - y));
    scale = fmax(scale, fabs(y));
  }
  return worst / fmax(scale, 1e-30);
}

double kt_tolerance(kiln_dtype t) {
  return t == KILN_F32 ? 1e-5 : t == KILN_F64 ? 1e-12 : t == KILN_F16 ? 1e-3
       : t == KILN_BF16 ? 1e-2 : 0;
}

void kt_assert_close(const kir_tensor *got, const kir_tensor *want, double tol) {
  double e = kt_rel_error(got, want);
  if (e <= tol) return;
  char tg[96] = "(null)", tw[96] = "(null)";
  if (got) kir_type_format(&got->type, tg, sizeof tg);
  if (want) kir_type_format(&want->type, tw, sizeof tw);
  print_error("got %s, want %s: relative error %g > %g\n", tg, tw, e, tol);
  if (got && want && kir_type_equal(&got->type, &want->type)) {
    int64_t n = kir_type_numel(&got->type);
    for (int64_t i = 0, shown = 0; i < n && shown < 5; i++) {
      double x = kir_tensor_get_f(got, i), y = kir_tensor_get_f(want, i);
      if (x != y) { print_error("  [%lld] got %.9g want %.9g\n", (long long)i, x, y); shown++; }
    }
  }
  fail();
}

const char *kt_path(const char *name) {
  static char dir[256], path[512];
  if (!dir[0]) {
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kiln-test-%ld", t && *t ? t : "/tmp", (long)getpid());
    mkdir(dir, 0700);
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return path;
}
