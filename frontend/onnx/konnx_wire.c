/* konnx_wire.c — untrusted ONNX bytes before anyone reads a field: bounded file reads,
 * an iterative pre-scan of the protobuf wire format that bounds message nesting (so a
 * deeply nested file cannot exhaust the stack in protobuf-c's recursive unpacker), and
 * unpacking under a byte budget. Depends on libc, POSIX and protobuf-c only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "konnx_internal.h"

/* ---------------------------------------------------------------- pre-scan ------- */

typedef struct scan_frame {
  const ProtobufCMessageDescriptor *desc; /* NULL: not a message we descend into */
  size_t end;
} scan_frame;

/* Reads a varint at *pos (< end); false when truncated or longer than 10 bytes. */
static bool read_varint(const uint8_t *b, size_t end, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (int i = 0; i < 10; i++) {
    if (*pos >= end) return false;
    uint8_t c = b[(*pos)++];
    r |= (uint64_t)(c & 0x7f) << (7 * i);
    if (!(c & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

static kiln_status scan_fail(char *err, size_t errlen, kiln_status s, const char *what, size_t at) {
  snprintf(err, errlen, "%s at byte %zu", what, at);
  return s;
}

/* Skips one field's payload of wire type wt, or pushes a frame for a message field. */
static kiln_status scan_field(const uint8_t *b, scan_frame *st, int *depth, size_t *pos,
                              uint64_t tag, char *err, size_t errlen) {
  scan_frame *top = &st[*depth - 1];
  uint64_t v;
  size_t at = *pos;
  switch (tag & 7) {
  case 0:
    if (!read_varint(b, top->end, pos, &v))
      return scan_fail(err, errlen, KILN_ERR_FORMAT, "truncated varint", at);
    return KILN_OK;
  case 1:
  case 5: {
    size_t w = (tag & 7) == 1 ? 8 : 4;
    if (top->end - *pos < w) return scan_fail(err, errlen, KILN_ERR_FORMAT, "truncated fixed field", at);
    *pos += w;
    return KILN_OK;
  }
  case 2: {
    if (!read_varint(b, top->end, pos, &v))
      return scan_fail(err, errlen, KILN_ERR_FORMAT, "truncated length", at);
    if (v > top->end - *pos)
      return scan_fail(err, errlen, KILN_ERR_FORMAT, "length past the end of its message", at);
    const ProtobufCFieldDescriptor *f =
        top->desc && (tag >> 3) <= UINT32_MAX
            ? protobuf_c_message_descriptor_get_field(top->desc, (unsigned)(tag >> 3))
            : NULL;
    if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
      if (*depth >= KONNX_MAX_NESTING) {
        snprintf(err, errlen, "messages nested deeper than %d levels at byte %zu", KONNX_MAX_NESTING, at);
        return KILN_ERR_LIMIT;
      }
      st[*depth] = (scan_frame){f->descriptor, *pos + (size_t)v};
      (*depth)++;
    } else {
      *pos += (size_t)v;
    }
    return KILN_OK;
  }
  default:
    return scan_fail(err, errlen, KILN_ERR_FORMAT, "unsupported wire type (group or invalid)", at);
  }
}

kiln_status konnx_prescan(const uint8_t *buf, size_t len, const ProtobufCMessageDescriptor *desc,
                          char *err, size_t errlen) {
  scan_frame st[KONNX_MAX_NESTING + 1];
  int depth = 1;
  size_t pos = 0;
  st[0] = (scan_frame){desc, len};
  while (depth > 0) {
    if (pos == st[depth - 1].end) {
      depth--;
      continue;
    }
    size_t at = pos;
    uint64_t tag;
    if (!read_varint(buf, st[depth - 1].end, &pos, &tag))
      return scan_fail(err, errlen, KILN_ERR_FORMAT, "truncated field tag", at);
    if ((tag >> 3) == 0) return scan_fail(err, errlen, KILN_ERR_FORMAT, "field number 0", at);
    kiln_status s = scan_field(buf, st, &depth, &pos, tag, err, errlen);
    if (s != KILN_OK) return s;
  }
  return KILN_OK;
}

/* ---------------------------------------------------------------- unpacking ------ */

#define PB_HEADER 16 /* kir_pb_allocator's per-block header */

static void *budget_alloc(void *ctx, size_t n) {
  konnx_unpacker *u = ctx;
  uint64_t total = (uint64_t)n + PB_HEADER;
  if (n > SIZE_MAX - PB_HEADER || total > u->pb.budget || u->pb.used > u->pb.budget - total) {
    u->over_budget = true;
    return NULL;
  }
  void *p = u->pb.alloc(&u->pb, n);
  if (!p) u->out_of_memory = true;
  return p;
}

static void budget_free(void *ctx, void *p) {
  konnx_unpacker *u = ctx;
  u->pb.free(&u->pb, p);
}

kiln_status konnx_unpack(konnx_unpacker *u, const uint8_t *buf, size_t len,
                         const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                         char *err, size_t errlen) {
  *out = NULL;
  if (len > (size_t)KONNX_MAX_FILE_BYTES) {
    snprintf(err, errlen, "%zu bytes (limit %lld)", len, (long long)KONNX_MAX_FILE_BYTES);
    return KILN_ERR_LIMIT;
  }
  kiln_status s = konnx_prescan(buf, len, desc, err, errlen);
  if (s != KILN_OK) return s;
  kir_pb_allocator_init(&u->pb, (uint64_t)len * 8 + ((uint64_t)64 << 20));
  u->a.alloc = budget_alloc;
  u->a.free = budget_free;
  u->a.allocator_data = u;
  u->over_budget = false;
  u->out_of_memory = false;
  *out = protobuf_c_message_unpack(desc, &u->a, len, buf);
  if (*out) return KILN_OK;
  if (u->over_budget) {
    snprintf(err, errlen, "unpacking needs more than %llu bytes of memory (8 x the input + 64 MiB)",
             (unsigned long long)u->pb.budget);
    return KILN_ERR_LIMIT;
  }
  if (u->out_of_memory) {
    snprintf(err, errlen, "out of memory while unpacking");
    return KILN_ERR_NOMEM;
  }
  snprintf(err, errlen, "not a valid protobuf %s (a malformed field)", desc->short_name);
  return KILN_ERR_FORMAT;
}

void konnx_unpack_free(konnx_unpacker *u, ProtobufCMessage *m) {
  if (m) protobuf_c_message_free_unpacked(m, &u->a);
}

/* ---------------------------------------------------------------- files ---------- */

kiln_status konnx_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen) {
  char ep[KONNX_ESC];
  *buf = NULL;
  *len = 0;
  kir_escape(path, ep, sizeof ep);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open: %s", ep, strerror(errno));
    return errno == ENOENT || errno == EACCES ? KILN_ERR_PATH : KILN_ERR_IO;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    snprintf(err, errlen, "%s: not a regular file", ep);
    return KILN_ERR_PATH;
  }
  if (sb.st_size > KONNX_MAX_FILE_BYTES) {
    close(fd);
    snprintf(err, errlen, "%s: %lld bytes (limit %lld)", ep, (long long)sb.st_size,
             (long long)KONNX_MAX_FILE_BYTES);
    return KILN_ERR_LIMIT;
  }
  size_t n = (size_t)sb.st_size, got = 0;
  uint8_t *b = kir_malloc(n ? n : 1);
  if (!b) {
    close(fd);
    snprintf(err, errlen, "%s: out of memory reading %zu bytes", ep, n);
    return KILN_ERR_NOMEM;
  }
  while (got < n) {
    ssize_t r = read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != n) {
    kir_free(b);
    snprintf(err, errlen, "%s: short read (%zu of %zu bytes)", ep, got, n);
    return KILN_ERR_IO;
  }
  *buf = b;
  *len = n;
  return KILN_OK;
}
