/* fuzz_npy.c — fuzz target for the .npy reader (kiln_rt_npy_read), the runtime's feed
 * file format. The input is written to a memfd and read through /proc/self/fd/N, so
 * nothing touches the file system. Properties: no crash or leak; on success the result
 * is consistent (nbytes = product of dims x element size, data present when nbytes > 0);
 * on failure the struct is empty and a message was written. Depends on libkiln_rt. */
#define _GNU_SOURCE /* memfd_create */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "runtime/kiln_runtime.h"

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void check_result(const kiln_rt_npy *t) {
  size_t es = kiln_rt_dtype_size(t->dtype);
  FUZZ_CHECK(es > 0, "dtype %d", t->dtype);
  FUZZ_CHECK(t->rank >= 0 && t->rank <= KILN_RT_MAX_RANK, "rank %d", t->rank);
  size_t n = es;
  for (int i = 0; i < t->rank; i++) {
    FUZZ_CHECK(t->dims[i] >= 0, "dim %d is %lld", i, (long long)t->dims[i]);
    n *= (size_t)t->dims[i];
  }
  FUZZ_CHECK(n == t->nbytes, "nbytes %zu, dims say %zu", t->nbytes, n);
  FUZZ_CHECK(t->data != NULL || t->nbytes == 0, "no data for %zu bytes", t->nbytes);
  /* Touch every byte so ASan checks the buffer really holds nbytes. */
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < t->nbytes; i++) sum ^= ((const uint8_t *)t->data)[i];
  (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("kiln-fuzz-npy", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write_all(fd, data, size) != 0) {
    close(fd);
    return 0;
  }
  char path[64], err[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  kiln_rt_npy t;
  memset(&t, 0x5a, sizeof t);
  kiln_rt_status st = kiln_rt_npy_read(path, &t, err, sizeof err);
  if (st == KILN_RT_OK) {
    check_result(&t);
  } else {
    FUZZ_CHECK(t.data == NULL && t.nbytes == 0, "failed read (status %d) left data", (int)st);
    FUZZ_CHECK(err[0] != '\0', "failed read (status %d) without a message", (int)st);
  }
  kiln_rt_npy_free(&t);
  close(fd);
  return 0;
}
