/* kiln_rt_internal.h — private to libkiln_rt: the model and context structs, message
 * helpers, the allocation layer, and the atomic file writer shared by the container
 * and .npy code.
 * Never include anything from ir/, frontend/, passes/ or codegen/ here; plain libc,
 * libdl and protobuf-c only. */
#ifndef KILN_RT_INTERNAL_H
#define KILN_RT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln_artifact.h"
#include "kiln_artifact.pb-c.h"
#include "kiln_runtime.h"

#define RT_HIDDEN __attribute__((visibility("hidden")))

#define RT_ERR_BYTES 1024
/* Largest arena a plan may ask for. */
#define RT_MAX_ARENA ((uint64_t)64 << 30)
/* Largest artifact file read by kiln_rt_model_open: 2 GiB - 1. */
#define RT_MAX_FILE ((uint64_t)0x7fffffff)

/* One input or output of a loaded model; name and dims point into the plan. */
typedef struct rt_tensor {
  const char *name;
  int dtype;
  int rank;
  const int64_t *dims;
  size_t nbytes;
  int64_t default_offset; /* inputs: weights offset of the value used for NULL data, -1 none */
} rt_tensor;

/* Counts the bytes protobuf-c allocates while unpacking the plan, up to a budget. */
typedef struct rt_budget {
  size_t used, limit;
  int refused; /* the budget said no (LIMIT) */
  int failed;  /* the allocation hook said no (NOMEM) */
} rt_budget;

/* ---- allocation (kiln_rt_alloc.c): all of the runtime's memory goes through one hook
 * (never plain malloc/free); tests fail the Nth allocation through kiln_rt_testing.h.
 * Blocks from any of these are freed with kiln_rt__free. ---- */
#define RT_ALIGN 64
RT_HIDDEN void *kiln_rt__malloc(size_t n);                  /* n == 0 gives a block too */
RT_HIDDEN void *kiln_rt__calloc(size_t count, size_t size); /* NULL on overflow */
/* RT_ALIGN-aligned, size rounded up to a multiple of RT_ALIGN (so vector code may read
 * the whole last line); free()-able as well, which kiln_rt_npy.data promises. */
RT_HIDDEN void *kiln_rt__malloc_aligned(size_t n);
RT_HIDDEN void kiln_rt__free(void *p); /* accepts NULL */
RT_HIDDEN char *kiln_rt__strdup(const char *s);
/* A protobuf-c allocator over the hook that refuses to go past limit bytes in all;
 * *b records whether it refused (LIMIT) or the hook failed (NOMEM). b must outlive
 * everything unpacked with *out, since freeing goes through it. */
RT_HIDDEN void kiln_rt__pb_allocator(rt_budget *b, size_t limit, ProtobufCAllocator *out);

typedef struct rt_cuda_model rt_cuda_model; /* kiln_rt_cuda_exec.c */
typedef struct rt_cuda_ctx rt_cuda_ctx;

struct kiln_rt_model {
  kiln_rt_status status;
  char err[RT_ERR_BYTES];
  char *label; /* the path as given, or "<memory>"; prefixes every message */
  rt_budget budget;
  ProtobufCAllocator alloc; /* must outlive plan: it frees it */
  Kiln__Rt__Plan *plan;
  rt_tensor *inputs, *outputs;
  int n_inputs, n_outputs;
  unsigned char *weights; /* 64-byte aligned copy of the weights section */
  size_t weights_bytes;
  size_t arena_bytes;
  int memfd;
  void *dl;
  kart_entry_fn entry;   /* target "cpu" */
  kart_step_fn step;     /* target "cuda" with CPU steps */
  rt_cuda_model *cuda;   /* target "cuda": the device side, once opened */
  char device[192];      /* kiln_rt_model_device */
};

struct kiln_rt_context {
  kiln_rt_model *model;
  unsigned char *arena; /* the cpu:0 arena */
  const void **in_ptrs; /* preallocated, so a run allocates nothing */
  void **out_ptrs;
  rt_cuda_ctx *cuda;    /* CUDA models: stream, device arena, staging */
  char err[RT_ERR_BYTES];
};

/* A message on the model ("LABEL: ...") and its status; returns st. */
RT_HIDDEN kiln_rt_status rt_model_fail(kiln_rt_model *m, kiln_rt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A message on the context; returns st. */
RT_HIDDEN kiln_rt_status rt_ctx_fail(kiln_rt_context *c, kiln_rt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* kiln_rt_run's argument checks (counts, NULL, nbytes, alignment, aliasing); *_mem give
 * each buffer's KILN_RT_MEMORY_* (NULL: all host); buffers on different sides never
 * alias. */
RT_HIDDEN kiln_rt_status rt_check_run_args(kiln_rt_context *c, const kiln_rt_buffer *in, int ni,
                                           const kiln_rt_buffer *out, int no,
                                           const unsigned char *in_mem,
                                           const unsigned char *out_mem);

/* ---- target "cuda" (kiln_rt_cuda_exec.c) ---- */
/* Validates the CUDA part of the plan (cuda_device, arenas, input_devices,
 * output_values, images inside `code` (the CODE_CUDA section, NULL when absent),
 * cuda_steps, schedule); after validate_plan made m->inputs/outputs. FORMAT/LIMIT. */
RT_HIDDEN kiln_rt_status rt_cuda_check_plan(kiln_rt_model *m, const kart_section *code);
/* The driver, the device, the image (its SHA-256 checked), kernels, the device weights,
 * cuBLASLt; sets m->cuda and m->device. After the weights are copied and the CPU code
 * (if any) is loaded. */
RT_HIDDEN kiln_rt_status rt_cuda_model_open(kiln_rt_model *m, const kart_section *code);
RT_HIDDEN void rt_cuda_model_close(kiln_rt_model *m); /* whatever was made; NULL-safe */
/* c->model has m->cuda; c->arena etc. already made. NOMEM / EXEC with a message. */
RT_HIDDEN kiln_rt_status rt_cuda_context_create(kiln_rt_context *c);
RT_HIDDEN void rt_cuda_context_destroy(kiln_rt_context *c);
RT_HIDDEN kiln_rt_status rt_cuda_run(kiln_rt_context *c, const kiln_rt_buffer *in, int ni,
                                     const kiln_rt_buffer *out, int no,
                                     const kiln_rt_run_options *opt);

/* vsnprintf into buf, never overflowing; buf may be NULL when len is 0. */
RT_HIDDEN void rt_vfmt(char *buf, size_t len, const char *fmt, va_list ap);
RT_HIDDEN void rt_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Model strings in messages: \xNN for bytes outside printable ASCII, quotes and
 * backslashes escaped, cut to 64 source bytes ("..." appended). out holds >= 300. */
#define RT_ESC_BYTES 300
RT_HIDDEN const char *rt_escape(const char *s, char out[RT_ESC_BYTES]);
/* "f32[64,1000]" into out (>= 256 bytes). */
RT_HIDDEN void rt_shape_str(int dtype, int rank, const int64_t *dims, char *out, size_t len);

/* Product of dims times elem size; 0 ok, KILN_RT_ERR_OVERFLOW if it does not fit in
 * size_t, KILN_RT_ERR_FORMAT for a negative dim. */
RT_HIDDEN kiln_rt_status rt_nbytes(int dtype, int rank, const int64_t *dims, size_t *out);

/* Reads a whole regular file (PATH for a directory, FIFO or device; LIMIT above
 * max_bytes). *data is from kiln_rt__malloc (at least 1 byte). Message without the path prefix. */
RT_HIDDEN kiln_rt_status rt_read_file(const char *path, uint64_t max_bytes, uint8_t **data,
                                      size_t *n, char *err, size_t errlen);
/* Opens a regular file for reading (O_NONBLOCK so a FIFO cannot block; PATH for
 * anything that is not a regular file). Returns the fd and its size. */
RT_HIDDEN kiln_rt_status rt_open_regular(const char *path, int *fd, uint64_t *size, char *err,
                                         size_t errlen);
/* Reads exactly n bytes (IO/FORMAT if the file ends early). */
RT_HIDDEN kiln_rt_status rt_read_all(int fd, void *buf, size_t n, char *err, size_t errlen);

/* A piece of a file to write; data NULL writes size zero bytes. */
typedef struct rt_chunk {
  const void *data;
  size_t size;
} rt_chunk;
/* Writes the chunks to a temp file (mkstemp) in path's directory and renames it over
 * path; the temp file is removed on any failure. Returns a kiln_rt_status. */
RT_HIDDEN kiln_rt_status rt_write_atomic(const char *path, const rt_chunk *chunks, int n,
                                         char *err, size_t errlen);

#endif
