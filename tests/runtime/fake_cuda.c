/* fake_cuda.c — a stand-in for libcuda.so.1 in tests of the runtime's driver probe
 * (test_cuda_driver): the few entry points kiln_rt_cuda.c calls, with the answer chosen
 * by $FAKE_CUDA_DEVICES ("none": cuInit fails with CUDA_ERROR_NO_DEVICE; N: N devices).
 * Never linked into anything but that test. */
#include <stdlib.h>
#include <string.h>

#define FAKE_NO_DEVICE 100 /* CUDA_ERROR_NO_DEVICE */

int cuInit(unsigned flags);
int cuDriverGetVersion(int *version);
int cuDeviceGetCount(int *count);
int cuGetErrorName(int result, const char **name);

int cuInit(unsigned flags) {
  const char *d = getenv("FAKE_CUDA_DEVICES");
  (void)flags;
  return d && strcmp(d, "none") == 0 ? FAKE_NO_DEVICE : 0;
}

int cuDriverGetVersion(int *version) {
  *version = 13000;
  return 0;
}

int cuDeviceGetCount(int *count) {
  const char *d = getenv("FAKE_CUDA_DEVICES");
  *count = d ? atoi(d) : 1;
  return 0;
}

int cuGetErrorName(int result, const char **name) {
  *name = result == FAKE_NO_DEVICE ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN";
  return 0;
}
