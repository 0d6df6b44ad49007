/* kiln_rt_testing.h — TEST-ONLY controls of libkiln_rt's allocation hook. Exported from
 * the shared library so tests can make the Nth allocation fail and check for leaks;
 * not part of the application API (kiln_runtime.h) and never needed by a deployment.
 * Process-wide; set them while no other thread is using the runtime. */
#ifndef KILN_RT_TESTING_H
#define KILN_RT_TESTING_H

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_RT_TESTING_API __attribute__((visibility("default")))

/* After n more successful allocations every allocation fails (n = 0: the next one
 * fails); n < 0: never fail (the default). */
KILN_RT_TESTING_API void kiln_rt_testing_fail_after(long n);
/* Blocks the runtime has allocated and not yet freed. */
KILN_RT_TESTING_API long kiln_rt_testing_live(void);

#ifdef __cplusplus
}
#endif
#endif
