/* kt.h — small helpers shared by Kiln's cmocka tests: seeded random tensors, closeness
 * checks with dtype-aware tolerances, temp paths. Tests only. */
#ifndef KT_H
#define KT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../ir/kir.h"

/* Fills t with deterministic values in [lo, hi) from seed (floats rounded to the dtype;
 * integers: floor, saturated to the dtype's range). */
void kt_fill(kir_tensor *t, uint64_t seed, double lo, double hi);

/* Normwise relative error max|a-b| / max(max|b|, tiny); +inf if any NaN or shape,
 * dtype mismatch. Integers and bools: 0 when equal, +inf otherwise. */
double kt_rel_error(const kir_tensor *a, const kir_tensor *b);
/* Default tolerance for a dtype: f32 1e-5, f64 1e-12, f16 1e-3, bf16 1e-2,
 * integers/bool exact (0). */
double kt_tolerance(kiln_dtype t);
/* Asserts kt_rel_error(a, b) <= tol, printing both and the worst element otherwise. */
void kt_assert_close(const kir_tensor *got, const kir_tensor *want, double tol);

/* A fresh path under a per-process temp directory ($TMPDIR or /tmp), e.g.
 * "/tmp/kiln-test-1234/NAME". The directory is created on first use. */
const char *kt_path(const char *name);

#endif
