/* fake_enqueue.h — for the stand-in libraries that compute on the host (fake_cublaslt.c,
 * fake_cudnn.c): runs a job in stream order through the stand-in driver's
 * fake_cuda_enqueue when the process has that driver loaded ($KILN_CUDA_DRIVER), so a
 * captured graph replays it; else runs it now. The job is freed with free() either way.
 * Returns 0, or -1 when the driver could not queue it. Tests only. */
#ifndef FAKE_ENQUEUE_H
#define FAKE_ENQUEUE_H

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static void fake_enqueue_drop(void *job) { free(job); }

static int fake_enqueue(void *stream, void (*run)(void *), void *job) {
  const char *drv = getenv("KILN_CUDA_DRIVER");
  void *h = drv && *drv ? dlopen(drv, RTLD_LAZY | RTLD_NOLOAD) : NULL;
  void *fn = h ? dlsym(h, "fake_cuda_enqueue") : NULL;
  int r = 0;
  if (fn) {
    int (*enq)(void *, void (*)(void *), void *, void (*)(void *));
    memcpy(&enq, &fn, sizeof fn);
    r = enq(stream, run, job, fake_enqueue_drop) ? -1 : 0;
  } else {
    run(job);
    free(job);
  }
  if (h) dlclose(h);
  return r;
}

#endif
