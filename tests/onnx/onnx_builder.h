/* onnx_builder.h — builds small ONNX models in C with the generated protobuf-c structs
 * (tests and the fuzz corpus only). Every allocation is tracked and released by
 * ob_free. Depends on the generated onnx.pb-c.h and libc. */
#ifndef ONNX_BUILDER_H
#define ONNX_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

typedef struct ob {
  Onnx__ModelProto m;
  Onnx__GraphProto g;
  void **blocks;
  size_t n_blocks;
} ob;

static inline void *ob_alloc(ob *b, size_t n) {
  void *p = calloc(1, n ? n : 1);
  b->blocks = realloc(b->blocks, (b->n_blocks + 1) * sizeof *b->blocks);
  b->blocks[b->n_blocks++] = p;
  return p;
}

static inline char *ob_str(ob *b, const char *s) {
  char *p = ob_alloc(b, strlen(s) + 1);
  memcpy(p, s, strlen(s));
  return p;
}

/* Appends p to a protobuf-c repeated pointer field (n, v). */
#define OB_PUSH(b, n, v, p)                                                   \
  do {                                                                        \
    void *nv_ = ob_alloc((b), ((n) + 1) * sizeof *(v));                        \
    if ((n)) memcpy(nv_, (v), (n) * sizeof *(v));                              \
    (v) = nv_;                                                                \
    (v)[(n)++] = (p);                                                         \
  } while (0)

static inline ob *ob_new(int64_t opset) {
  ob *b = calloc(1, sizeof *b);
  onnx__model_proto__init(&b->m);
  onnx__graph_proto__init(&b->g);
  b->m.has_ir_version = 1;
  b->m.ir_version = 8;
  b->m.graph = &b->g;
  b->g.name = ob_str(b, "g");
  Onnx__OperatorSetIdProto *o = ob_alloc(b, sizeof *o);
  onnx__operator_set_id_proto__init(o);
  o->domain = ob_str(b, "");
  o->has_version = 1;
  o->version = opset;
  OB_PUSH(b, b->m.n_opset_import, b->m.opset_import, o);
  return b;
}

static inline void ob_free(ob *b) {
  for (size_t i = 0; i < b->n_blocks; i++) free(b->blocks[i]);
  free(b->blocks);
  free(b);
}

/* A tensor ValueInfo; dims < 0 become symbolic dims named "N". rank < 0: no shape. */
static inline Onnx__ValueInfoProto *ob_value(ob *b, const char *name, int32_t elem, int32_t rank, const int64_t *dims) {
  Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
  Onnx__TypeProto *tp = ob_alloc(b, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  v->name = ob_str(b, name);
  v->type = tp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  tt->has_elem_type = 1;
  tt->elem_type = elem;
  if (rank >= 0) {
    Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    tt->shape = sh;
    for (int32_t i = 0; i < rank; i++) {
      Onnx__TensorShapeProto__Dimension *d = ob_alloc(b, sizeof *d);
      onnx__tensor_shape_proto__dimension__init(d);
      if (dims[i] >= 0) {
        d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d->dim_value = dims[i];
      } else {
        d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
        d->dim_param = ob_str(b, "N");
      }
      OB_PUSH(b, sh->n_dim, sh->dim, d);
    }
  }
  return v;
}

static inline void ob_input(ob *b, const char *name, int32_t elem, int32_t rank, const int64_t *dims) {
  Onnx__ValueInfoProto *v = ob_value(b, name, elem, rank, dims);
  OB_PUSH(b, b->g.n_input, b->g.input, v);
}

static inline void ob_output(ob *b, const char *name) {
  Onnx__ValueInfoProto *v = ob_value(b, name, 1, -1, NULL);
  OB_PUSH(b, b->g.n_output, b->g.output, v);
}

static inline Onnx__TensorProto *ob_tensor(ob *b, const char *name, int32_t elem, int32_t rank, const int64_t *dims) {
  Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = ob_str(b, name);
  t->has_data_type = 1;
  t->data_type = elem;
  t->n_dims = (size_t)rank;
  t->dims = ob_alloc(b, sizeof(int64_t) * (size_t)(rank ? rank : 1));
  if (rank) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
  return t;
}

static inline Onnx__TensorProto *ob_f32(ob *b, const char *name, int32_t rank, const int64_t *dims, const float *v, size_t n) {
  Onnx__TensorProto *t = ob_tensor(b, name, 1, rank, dims);
  t->n_float_data = n;
  t->float_data = ob_alloc(b, sizeof(float) * (n ? n : 1));
  if (n) memcpy(t->float_data, v, sizeof(float) * n);
  return t;
}

static inline Onnx__TensorProto *ob_i64(ob *b, const char *name, int32_t rank, const int64_t *dims, const int64_t *v, size_t n) {
  Onnx__TensorProto *t = ob_tensor(b, name, 7, rank, dims);
  t->n_int64_data = n;
  t->int64_data = ob_alloc(b, sizeof(int64_t) * (n ? n : 1));
  if (n) memcpy(t->int64_data, v, sizeof(int64_t) * n);
  return t;
}

static inline void ob_init(ob *b, Onnx__TensorProto *t) { OB_PUSH(b, b->g.n_initializer, b->g.initializer, t); }

/* A node; ins and outs are comma-separated ("a,,c" leaves input 1 empty). */
static inline Onnx__NodeProto *ob_node(ob *b, const char *op, const char *name, const char *ins, const char *outs) {
  Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = ob_str(b, op);
  n->name = ob_str(b, name);
  for (int pass = 0; pass < 2; pass++) {
    const char *s = pass ? outs : ins;
    while (s && *s) {
      const char *e = strchr(s, ',');
      size_t len = e ? (size_t)(e - s) : strlen(s);
      char *v = ob_alloc(b, len + 1);
      memcpy(v, s, len);
      if (pass) OB_PUSH(b, n->n_output, n->output, v);
      else OB_PUSH(b, n->n_input, n->input, v);
      s = e ? e + 1 : s + len;
      if (e && !*s) { /* trailing empty entry */
        char *z = ob_alloc(b, 1);
        if (pass) OB_PUSH(b, n->n_output, n->output, z);
        else OB_PUSH(b, n->n_input, n->input, z);
      }
    }
  }
  OB_PUSH(b, b->g.n_node, b->g.node, n);
  return n;
}

static inline Onnx__AttributeProto *ob_attr(ob *b, Onnx__NodeProto *n, const char *name, int type) {
  Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = ob_str(b, name);
  a->has_type = 1;
  a->type = (Onnx__AttributeProto__AttributeType)type;
  OB_PUSH(b, n->n_attribute, n->attribute, a);
  return a;
}

static inline void ob_attr_int(ob *b, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1;
  a->i = v;
}

static inline void ob_attr_float(ob *b, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1;
  a->f = v;
}

static inline void ob_attr_ints(ob *b, Onnx__NodeProto *n, const char *name, const int64_t *v, size_t k) {
  Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = k;
  a->ints = ob_alloc(b, sizeof(int64_t) * (k ? k : 1));
  if (k) memcpy(a->ints, v, sizeof(int64_t) * k);
}

static inline void ob_attr_string(ob *b, Onnx__NodeProto *n, const char *name, const char *v) {
  Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  a->has_s = 1;
  a->s.data = (uint8_t *)ob_str(b, v);
  a->s.len = strlen(v);
}

static inline void ob_attr_tensor(ob *b, Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t) {
  Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  a->t = t;
}

/* Packed bytes (malloc'd; the caller frees). */
static inline uint8_t *ob_pack(ob *b, size_t *len) {
  *len = onnx__model_proto__get_packed_size(&b->m);
  uint8_t *buf = malloc(*len ? *len : 1);
  onnx__model_proto__pack(&b->m, buf);
  return buf;
}

#endif
