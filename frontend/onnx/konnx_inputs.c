/* konnx_inputs.c — ONNX graph inputs -> Kiln placeholders, in the file's order: dtype
 * and shape from the ValueInfo (symbolic or missing dims from the caller's overrides),
 * or, for an input that is also an initializer, from the initializer, whose value
 * becomes the placeholder's default. Depends on ir/ and the generated onnx structs. */
#include <stdio.h>
#include <string.h>

#include "konnx_internal.h"

kiln_status konnx_import_inputs(konnx_ctx *c);

static const konnx_shape *find_override(const konnx_ctx *c, const char *name) {
  for (int32_t i = 0; c->opt && i < c->opt->n_shapes; i++)
    if (c->opt->shapes[i].name && strcmp(c->opt->shapes[i].name, name) == 0) return &c->opt->shapes[i];
  return NULL;
}

static const kir_tensor *find_value(const konnx_ctx *c, const char *name) {
  for (int32_t i = 0; c->opt && i < c->opt->n_values; i++)
    if (c->opt->values[i].name && strcmp(c->opt->values[i].name, name) == 0) return c->opt->values[i].value;
  return NULL;
}

static int32_t find_initializer(const konnx_ctx *c, const char *name) {
  int32_t v;
  return konnx_map_get(c->values, name, &v) && v <= KONNX_PENDING_INIT(0) ? -2 - v : -1;
}

/* Checks an override's rank and dims. */
static kiln_status check_override(konnx_ctx *c, const char *en, const konnx_shape *o) {
  if (o->rank < 0 || o->rank > KILN_MAX_RANK)
    return konnx_err(c, KILN_ERR_ARGUMENT, "shape override for graph input '%s': rank %d (0 to %d)", en,
                     o->rank, KILN_MAX_RANK);
  for (int32_t d = 0; d < o->rank; d++)
    if (o->dims[d] < 0)
      return konnx_err(c, KILN_ERR_ARGUMENT, "shape override for graph input '%s': dim %d is %lld", en, d,
                       (long long)o->dims[d]);
  return KILN_OK;
}

/* One dim of a declared shape: fixed, or from the override. */
static kiln_status input_dim(konnx_ctx *c, const char *en, const Onnx__TensorShapeProto__Dimension *dim,
                             int32_t d, const konnx_shape *o, int64_t *out) {
  char ep[KONNX_ESC];
  bool fixed = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
  if (fixed && dim->dim_value < 0)
    return konnx_err(c, KILN_ERR_FORMAT, "graph input '%s': dim %d is %lld", en, d, (long long)dim->dim_value);
  if (o && fixed && o->dims[d] != dim->dim_value)
    return konnx_err(c, KILN_ERR_SHAPE, "graph input '%s': the override gives dim %d = %lld, the file fixes it at %lld",
                     en, d, (long long)o->dims[d], (long long)dim->dim_value);
  if (o) {
    *out = o->dims[d];
    return KILN_OK;
  }
  if (fixed) {
    *out = dim->dim_value;
    return KILN_OK;
  }
  bool sym = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
  return konnx_err(c, KILN_ERR_UNSUPPORTED, "graph input '%s': dim %d is %s%s%s; give its shape (e.g. --input-shape)",
                   en, d, sym ? "symbolic '" : "unknown", sym ? kir_escape(konnx_s(dim->dim_param), ep, sizeof ep) : "",
                   sym ? "'" : "");
}

static kiln_status input_type(konnx_ctx *c, const Onnx__ValueInfoProto *vi, kir_type *ty) {
  char en[KONNX_ESC], tn[32];
  kir_escape(vi->name, en, sizeof en);
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "graph input '%s' is not a tensor (sequences, maps and optionals are not supported)", en);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  memset(ty, 0, sizeof *ty);
  ty->dtype = konnx_dtype(tt->elem_type);
  if (ty->dtype == KILN_DTYPE_INVALID)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "graph input '%s': element type %s is not supported", en,
                     konnx_type_name(tt->elem_type, tn, sizeof tn));
  const konnx_shape *o = find_override(c, vi->name);
  kiln_status s = o ? check_override(c, en, o) : KILN_OK;
  if (s != KILN_OK) return s;
  if (!tt->shape) {
    if (!o) return konnx_err(c, KILN_ERR_UNSUPPORTED, "graph input '%s' has no shape; give one (e.g. --input-shape)", en);
    ty->rank = o->rank;
    memcpy(ty->dims, o->dims, sizeof(int64_t) * (size_t)o->rank);
    return KILN_OK;
  }
  if (tt->shape->n_dim > KILN_MAX_RANK)
    return konnx_err(c, KILN_ERR_LIMIT, "graph input '%s': rank %zu (limit %d)", en, tt->shape->n_dim, KILN_MAX_RANK);
  if (o && (size_t)o->rank != tt->shape->n_dim)
    return konnx_err(c, KILN_ERR_SHAPE, "graph input '%s': the override has rank %d, the file rank %zu", en,
                     o->rank, tt->shape->n_dim);
  ty->rank = (int32_t)tt->shape->n_dim;
  for (int32_t d = 0; d < ty->rank && s == KILN_OK; d++)
    s = input_dim(c, en, tt->shape->dim[d], d, o, &ty->dims[d]);
  if (s == KILN_OK && kir_type_nbytes(ty) < 0)
    return konnx_err(c, KILN_ERR_LIMIT, "graph input '%s': its shape exceeds the tensor limit", en);
  return s;
}

static kiln_status add_placeholder(konnx_ctx *c, const char *name, const kir_type *ty, const kir_tensor *dflt) {
  char kn[KONNX_NAME_BUF];
  kir_node *n = kir_node_add(c->g, KIR_OP_PLACEHOLDER, konnx_kiln_name(c, name, kn, sizeof kn), NULL, 0);
  if (!n) return c->g->status;
  kiln_status s = kir_attr_set_int(c->g, n, "dtype", ty->dtype);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, n, "shape", ty->dims, ty->rank);
  if (s == KILN_OK && dflt) s = kir_attr_set_tensor(c->g, n, "default", dflt);
  if (s == KILN_OK) s = kir_infer_node(c->g, n);
  return s == KILN_OK ? konnx_bind(c, name, n->id) : s;
}

/* An initializer listed as a graph input: a placeholder whose default is its value. */
static kiln_status add_default_input(konnx_ctx *c, const char *name, int32_t init) {
  char what[KONNX_ESC + 32], en[KONNX_ESC], msg[512];
  snprintf(what, sizeof what, "initializer '%s'", kir_escape(name, en, sizeof en));
  kir_tensor *x;
  kiln_status s = konnx_tensor_decode(c->gp->initializer[init], &c->ext, what, &x, msg, sizeof msg);
  if (s != KILN_OK) return konnx_err(c, s, "%s", msg);
  s = add_placeholder(c, name, &x->type, x);
  kir_tensor_free(x);
  return s;
}

/* A fixed input: its value must have the declared dtype and fit every fixed dim. */
static kiln_status add_fixed_input(konnx_ctx *c, const Onnx__ValueInfoProto *vi, const kir_tensor *v) {
  char en[KONNX_ESC], kn[KONNX_NAME_BUF], a[64];
  kir_escape(vi->name, en, sizeof en);
  const Onnx__TypeProto *tp = vi->type;
  const Onnx__TypeProto__Tensor *tt = tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? tp->tensor_type : NULL;
  kir_type_format(&v->type, a, sizeof a);
  bool ok = tt && konnx_dtype(tt->elem_type) == v->type.dtype;
  if (ok && tt->shape) {
    ok = tt->shape->n_dim == (size_t)v->type.rank;
    for (int32_t d = 0; ok && d < v->type.rank; d++)
      ok = tt->shape->dim[d]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
           tt->shape->dim[d]->dim_value == v->type.dims[d];
  }
  if (!ok) return konnx_err(c, KILN_ERR_FEED, "fixed value %s for graph input '%s' does not match its declared type", a, en);
  kir_node *n = kir_node_add(c->g, KIR_OP_CONSTANT, konnx_kiln_name(c, vi->name, kn, sizeof kn), NULL, 0);
  kiln_status s = n ? kir_attr_set_tensor(c->g, n, "value", v) : c->g->status;
  if (s == KILN_OK) s = kir_infer_node(c->g, n);
  return s == KILN_OK ? konnx_bind(c, vi->name, n->id) : s;
}

static kiln_status check_overrides(konnx_ctx *c) {
  char en[KONNX_ESC];
  for (int32_t i = 0; c->opt && i < c->opt->n_values; i++) {
    const char *nm = c->opt->values[i].name;
    bool found = false;
    for (size_t k = 0; nm && c->opt->values[i].value && k < c->gp->n_input && !found; k++)
      found = strcmp(konnx_s(c->gp->input[k]->name), nm) == 0;
    if (!found)
      return konnx_err(c, KILN_ERR_ARGUMENT, "fixed value for '%s': the model has no graph input of that name (or the value is NULL)",
                       kir_escape(konnx_s(nm), en, sizeof en));
  }
  for (int32_t i = 0; c->opt && i < c->opt->n_shapes; i++) {
    const char *nm = c->opt->shapes[i].name;
    bool found = false;
    for (size_t k = 0; nm && k < c->gp->n_input && !found; k++)
      found = strcmp(konnx_s(c->gp->input[k]->name), nm) == 0 && find_initializer(c, nm) < 0;
    if (!found)
      return konnx_err(c, KILN_ERR_ARGUMENT, "shape override for '%s': the model has no graph input of that name",
                       kir_escape(konnx_s(nm), en, sizeof en));
  }
  return KILN_OK;
}

kiln_status konnx_import_inputs(konnx_ctx *c) {
  kiln_status s = check_overrides(c);
  for (size_t i = 0; i < c->gp->n_input && s == KILN_OK; i++) {
    const Onnx__ValueInfoProto *vi = c->gp->input[i];
    int32_t v;
    if (konnx_map_get(c->values, vi->name, &v) && v >= 0) continue; /* listed twice */
    int32_t init = find_initializer(c, vi->name);
    const kir_tensor *fixed = find_value(c, vi->name);
    kir_type ty;
    if (fixed)
      s = add_fixed_input(c, vi, fixed);
    else if (init >= 0)
      s = add_default_input(c, vi->name, init);
    else if ((s = input_type(c, vi, &ty)) == KILN_OK)
      s = add_placeholder(c, vi->name, &ty, NULL);
  }
  return s;
}
