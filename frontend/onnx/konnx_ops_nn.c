/* konnx_ops_nn.c — ONNX handlers for the data-movement ops (Concat, Slice, Gather, Cast,
 * Where), the ops that become constants (Constant, Shape, Size, ConstantOfShape) and the
 * network ops (Conv, pools, BatchNormalization, Dropout), with auto_pad resolved into
 * explicit pads and every window attribute range-checked. Depends on ir/ only. */
#include <stdio.h>
#include <string.h>

#include "konnx_internal.h"

typedef konnx_ctx C;
typedef Onnx__NodeProto N;

kiln_status konnx_op_concat(C *c, const N *n);
kiln_status konnx_op_slice(C *c, const N *n);
kiln_status konnx_op_gather(C *c, const N *n);
kiln_status konnx_op_cast(C *c, const N *n);
kiln_status konnx_op_where(C *c, const N *n);

/* ---------------------------------------------------------------- data movement -- */

kiln_status konnx_op_concat(C *c, const N *n) {
  if (n->n_input == 0) return konnx_err(c, KILN_ERR_GRAPH, "needs at least one input");
  if (n->n_input > KIR_MAX_INPUTS) return konnx_err(c, KILN_ERR_LIMIT, "%zu inputs (limit %d)", n->n_input, KIR_MAX_INPUTS);
  if (!konnx_attr(n, "axis")) return konnx_err(c, KILN_ERR_GRAPH, "attribute 'axis' is required");
  int64_t axis;
  int32_t a, k = (int32_t)n->n_input;
  kiln_status s = konnx_attr_int(c, n, "axis", 0, &axis);
  int32_t *in = kir_calloc((size_t)k, sizeof *in);
  if (!in) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < k && s == KILN_OK; i++) s = konnx_in(c, n, i, &in[i]);
  if (s == KILN_OK) s = konnx_axis(c, "attribute 'axis'", axis, konnx_type(c, in[0])->rank, &a);
  kir_node *y;
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_CONCAT, in, k, &y);
  kir_free(in);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "axis", a);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

typedef struct slice_args {
  int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK], steps[KILN_MAX_RANK];
  int32_t n, n_axes, n_steps;
} slice_args;

static kiln_status slice_attr(C *c, const N *n, const char *name, int64_t *out, int32_t *k, bool required) {
  const int64_t *v;
  bool present;
  kiln_status s = konnx_attr_ints(c, n, name, &v, k, &present);
  if (s != KILN_OK) return s;
  if (required && !present) return konnx_err(c, KILN_ERR_GRAPH, "attribute '%s' is required", name);
  if (*k > KILN_MAX_RANK) return konnx_err(c, KILN_ERR_LIMIT, "attribute '%s' has %d entries (limit %d)", name, *k, KILN_MAX_RANK);
  if (*k) memcpy(out, v, sizeof(int64_t) * (size_t)*k);
  return KILN_OK;
}

/* Slice's starts/ends/axes/steps: attributes before opset 10, static inputs from 10. */
static kiln_status slice_read(C *c, const N *n, slice_args *a) {
  int32_t ne = 0, dummy;
  kiln_status s;
  a->n_axes = a->n_steps = -1;
  if (c->opset < 10) {
    if ((s = slice_attr(c, n, "starts", a->starts, &a->n, true)) != KILN_OK) return s;
    if ((s = slice_attr(c, n, "ends", a->ends, &ne, true)) != KILN_OK) return s;
    if (konnx_attr(n, "axes") && (s = slice_attr(c, n, "axes", a->axes, &a->n_axes, false)) != KILN_OK) return s;
  } else {
    if ((s = konnx_static_ints(c, n, 1, "starts", a->starts, KILN_MAX_RANK, &a->n)) != KILN_OK) return s;
    if ((s = konnx_static_ints(c, n, 2, "ends", a->ends, KILN_MAX_RANK, &ne)) != KILN_OK) return s;
    if ((s = konnx_opt_in(c, n, 3, &dummy)) != KILN_OK) return s;
    if (dummy >= 0 && (s = konnx_static_ints(c, n, 3, "axes", a->axes, KILN_MAX_RANK, &a->n_axes)) != KILN_OK)
      return s;
    if ((s = konnx_opt_in(c, n, 4, &dummy)) != KILN_OK) return s;
    if (dummy >= 0 && (s = konnx_static_ints(c, n, 4, "steps", a->steps, KILN_MAX_RANK, &a->n_steps)) != KILN_OK)
      return s;
  }
  if (ne != a->n || (a->n_axes >= 0 && a->n_axes != a->n) || (a->n_steps >= 0 && a->n_steps != a->n))
    return konnx_err(c, KILN_ERR_SHAPE, "starts has %d entries, ends %d, axes %d, steps %d; they must agree", a->n, ne,
                     a->n_axes, a->n_steps);
  return KILN_OK;
}

kiln_status konnx_op_slice(C *c, const N *n) {
  slice_args a;
  int32_t x;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = slice_read(c, n, &a);
  if (s != KILN_OK) return s;
  int32_t rank = konnx_type(c, x)->rank;
  bool seen[KILN_MAX_RANK] = {false};
  for (int32_t i = 0; i < a.n_axes; i++) {
    int32_t ax;
    if ((s = konnx_axis(c, "axes entry", a.axes[i], rank, &ax)) != KILN_OK) return s;
    if (seen[ax]) return konnx_err(c, KILN_ERR_SHAPE, "axes repeat axis %lld", (long long)a.axes[i]);
    seen[ax] = true;
    a.axes[i] = ax;
  }
  if (a.n_axes < 0 && a.n > rank) return konnx_err(c, KILN_ERR_SHAPE, "%d starts for rank %d", a.n, rank);
  for (int32_t i = 0; i < a.n_steps; i++)
    if (a.steps[i] == 0) return konnx_err(c, KILN_ERR_SHAPE, "steps entry %d is 0", i);
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_SLICE, &x, 1, &y)) != KILN_OK) return s;
  s = kir_attr_set_ints(c->g, y, "starts", a.starts, a.n);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "ends", a.ends, a.n);
  if (s == KILN_OK && a.n_axes >= 0) s = kir_attr_set_ints(c->g, y, "axes", a.axes, a.n);
  if (s == KILN_OK && a.n_steps >= 0) s = kir_attr_set_ints(c->g, y, "steps", a.steps, a.n);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

kiln_status konnx_op_gather(C *c, const N *n) {
  int64_t axis;
  int32_t in[2], a;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "axis", 0, &axis);
  if (s == KILN_OK) s = konnx_axis(c, "attribute 'axis'", axis, konnx_type(c, in[0])->rank, &a);
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_GATHER, in, 2, &y);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "axis", a);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

kiln_status konnx_op_cast(C *c, const N *n) {
  char tn[32];
  int64_t to;
  int32_t x;
  kir_node *y;
  if (!konnx_attr(n, "to")) return konnx_err(c, KILN_ERR_GRAPH, "attribute 'to' is required");
  kiln_status s = konnx_attr_int(c, n, "to", 0, &to);
  if (s != KILN_OK) return s;
  kiln_dtype dt = to >= INT32_MIN && to <= INT32_MAX ? konnx_dtype((int32_t)to) : KILN_DTYPE_INVALID;
  if (dt == KILN_DTYPE_INVALID)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "attribute 'to': cast to %s is not supported",
                     konnx_type_name(to >= INT32_MIN && to <= INT32_MAX ? (int32_t)to : -1, tn, sizeof tn));
  if ((s = konnx_in(c, n, 0, &x)) == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_CAST, &x, 1, &y);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "dtype", dt);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

kiln_status konnx_op_where(C *c, const N *n) {
  int32_t in[3];
  kir_node *y;
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < 3 && s == KILN_OK; i++) s = konnx_in(c, n, i, &in[i]);
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_WHERE, in, 3, &y);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* ---------------------------------------------------------------- pad ------------ */

static void fill(kir_tensor *t, double v);
static kir_tensor *new_tensor(kiln_dtype dt, int32_t rank, const int64_t *dims);

/* Pad's pads (2 x rank: begins then ends) and constant value: attributes before opset
 * 11, static inputs from 11. */
static kiln_status pad_read(C *c, const N *n, int32_t rank, int64_t *pads, double *value) {
  int32_t k = 0, cv = -1;
  kiln_status s;
  *value = 0;
  if (c->opset < 11) {
    const int64_t *v;
    bool present;
    if ((s = konnx_attr_ints(c, n, "pads", &v, &k, &present)) != KILN_OK) return s;
    if (!present) return konnx_err(c, KILN_ERR_GRAPH, "attribute 'pads' is required");
    if (k == 2 * rank) memcpy(pads, v, sizeof(int64_t) * (size_t)k);
    if ((s = konnx_attr_float(c, n, "value", 0, value)) != KILN_OK) return s;
  } else {
    if ((s = konnx_static_ints(c, n, 1, "pads", pads, 2 * KILN_MAX_RANK, &k)) != KILN_OK) return s;
    if ((s = konnx_opt_in(c, n, 2, &cv)) != KILN_OK) return s;
    if (cv >= 0) {
      const kir_tensor *t = konnx_static(c, cv);
      if (!t) return konnx_err(c, KILN_ERR_UNSUPPORTED, "input 2 (constant_value) must be static");
      if (kir_type_numel(&t->type) != 1)
        return konnx_err(c, KILN_ERR_SHAPE, "input 2 (constant_value) has %lld elements, not 1",
                         (long long)kir_type_numel(&t->type));
      *value = kir_tensor_get_f(t, 0);
    }
  }
  if (k != 2 * rank)
    return konnx_err(c, KILN_ERR_SHAPE, "pads has %d entries; the input's rank %d needs %d", k,
                     rank, 2 * rank);
  return KILN_OK;
}

/* Crops axis a of *x by the negative parts of b and e (a slice). */
static kiln_status pad_crop(C *c, const N *n, int32_t a, int64_t b, int64_t e, int32_t *x) {
  int64_t dim = konnx_type(c, *x)->dims[a];
  int64_t start = b < 0 ? -b : 0, end = dim - (e < 0 ? -e : 0), ax = a;
  if (start > dim || end < start)
    return konnx_err(c, KILN_ERR_SHAPE, "pads crop axis %d (size %lld) by %lld and %lld: nothing is left",
                     (int)a, (long long)dim, (long long)-b, (long long)-e);
  char role[32];
  snprintf(role, sizeof role, "crop%d", (int)a);
  kir_node *y;
  kiln_status s = konnx_emit_sub(c, n, role, KIR_OP_SLICE, x, 1, &y);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "starts", &start, 1);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "ends", &end, 1);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "axes", &ax, 1);
  if (s == KILN_OK) s = konnx_finish(c, y);
  if (s == KILN_OK) *x = y->id;
  return s;
}

/* Grows axis a of *x by b before and e after, filled with value (a concat). */
static kiln_status pad_grow(C *c, const N *n, int32_t a, int64_t b, int64_t e, double value,
                            int32_t *x) {
  int32_t parts[3], np = 0;
  const int64_t amounts[2] = {b, e};
  kiln_status s = KILN_OK;
  for (int32_t side = 0; side < 2 && s == KILN_OK; side++) {
    if (side == 1) parts[np++] = *x;
    if (amounts[side] <= 0) continue;
    kir_type t = *konnx_type(c, *x);
    t.dims[a] = amounts[side];
    if (kir_type_nbytes(&t) < 0)
      return konnx_err(c, KILN_ERR_LIMIT, "pads make axis %d too large", (int)a);
    kir_tensor *fillv = new_tensor(t.dtype, t.rank, t.dims);
    if (!fillv) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
    fill(fillv, value);
    char role[32];
    snprintf(role, sizeof role, side ? "after%d" : "before%d", (int)a);
    s = konnx_emit_const(c, n, 0, role, fillv, &parts[np++]);
    kir_tensor_free(fillv);
  }
  if (s != KILN_OK) return s;
  char role[32];
  snprintf(role, sizeof role, "pad%d", (int)a);
  kir_node *y;
  s = konnx_emit_sub(c, n, role, KIR_OP_CONCAT, parts, np, &y);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "axis", a);
  if (s == KILN_OK) s = konnx_finish(c, y);
  if (s == KILN_OK) *x = y->id;
  return s;
}

/* Pad, mode "constant": per axis a slice for negative pads and a concat with constant
 * blocks for positive ones; all-zero pads are an identity. Modes reflect and edge are
 * not supported. */
kiln_status konnx_op_pad(C *c, const N *n) {
  char mode[16];
  int32_t x;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_string(c, n, "mode", "constant", mode, sizeof mode);
  if (s != KILN_OK) return s;
  if (strcmp(mode, "constant") != 0)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "mode '%s' is not supported (only 'constant')", mode);
  int32_t rank = konnx_type(c, x)->rank;
  int64_t pads[2 * KILN_MAX_RANK];
  double value;
  if ((s = pad_read(c, n, rank, pads, &value)) != KILN_OK) return s;
  for (int32_t a = 0; a < rank && s == KILN_OK; a++)
    if (pads[a] < 0 || pads[a + rank] < 0) s = pad_crop(c, n, a, pads[a], pads[a + rank], &x);
  for (int32_t a = 0; a < rank && s == KILN_OK; a++)
    if (pads[a] > 0 || pads[a + rank] > 0) s = pad_grow(c, n, a, pads[a], pads[a + rank], value, &x);
  kir_node *y;
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_IDENTITY, &x, 1, &y);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* ---------------------------------------------------------------- constants ------ */

static void fill(kir_tensor *t, double v) {
  int64_t numel = kir_type_numel(&t->type);
  for (int64_t i = 0; i < numel; i++) kir_tensor_set_f(t, i, v);
}

/* Emits t (owned, freed here) as output k. */
static kiln_status emit_owned(C *c, const N *n, int32_t k, kir_tensor *t) {
  if (!t) return konnx_err(c, KILN_ERR_NOMEM, "out of memory");
  int32_t id;
  kiln_status s = konnx_emit_const(c, n, k, NULL, t, &id);
  kir_tensor_free(t);
  return s;
}

static kir_tensor *new_tensor(kiln_dtype dt, int32_t rank, const int64_t *dims) {
  kir_type ty = {.dtype = dt, .rank = rank};
  for (int32_t i = 0; i < rank; i++) ty.dims[i] = dims[i];
  return kir_tensor_new(&ty);
}

/* value_float(s) / value_int(s) of Constant. */
static kir_tensor *list_tensor(const Onnx__AttributeProto *a, bool ints, bool list) {
  int64_t cnt = list ? (int64_t)(ints ? a->n_ints : a->n_floats) : 1;
  kir_tensor *t = new_tensor(ints ? KILN_I64 : KILN_F32, list ? 1 : 0, &cnt);
  for (int64_t i = 0; t && i < cnt; i++) {
    if (ints) ((int64_t *)t->data)[i] = list ? a->ints[i] : a->i;
    else ((float *)t->data)[i] = list ? a->floats[i] : a->f;
  }
  return t;
}

kiln_status konnx_op_constant(C *c, const N *n) {
  static const char *const refused[] = {"sparse_value", "value_string", "value_strings", NULL};
  for (int i = 0; refused[i]; i++)
    if (konnx_attr(n, refused[i])) return konnx_err(c, KILN_ERR_UNSUPPORTED, "attribute '%s' is not supported", refused[i]);
  const Onnx__AttributeProto *a;
  if ((a = konnx_attr(n, "value"))) {
    char msg[512];
    kir_tensor *t;
    if (!a->t) return konnx_err(c, KILN_ERR_FORMAT, "attribute 'value' holds no tensor");
    kiln_status s = konnx_tensor_decode(a->t, &c->ext, "attribute 'value'", &t, msg, sizeof msg);
    return s == KILN_OK ? emit_owned(c, n, 0, t) : konnx_err(c, s, "%s", msg);
  }
  if ((a = konnx_attr(n, "value_float"))) return emit_owned(c, n, 0, list_tensor(a, false, false));
  if ((a = konnx_attr(n, "value_floats"))) return emit_owned(c, n, 0, list_tensor(a, false, true));
  if ((a = konnx_attr(n, "value_int"))) return emit_owned(c, n, 0, list_tensor(a, true, false));
  if ((a = konnx_attr(n, "value_ints"))) return emit_owned(c, n, 0, list_tensor(a, true, true));
  return konnx_err(c, KILN_ERR_FORMAT, "no value attribute");
}

kiln_status konnx_op_shape(C *c, const N *n) {
  int64_t start, end;
  int32_t x;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s != KILN_OK) return s;
  kir_type t = *konnx_type(c, x);
  if ((s = konnx_attr_int(c, n, "start", 0, &start)) != KILN_OK) return s;
  if ((s = konnx_attr_int(c, n, "end", t.rank, &end)) != KILN_OK) return s;
  if (start < 0) start += t.rank;
  if (end < 0) end += t.rank;
  start = start < 0 ? 0 : start > t.rank ? t.rank : start;
  end = end < 0 ? 0 : end > t.rank ? t.rank : end;
  int64_t cnt = end > start ? end - start : 0;
  kir_tensor *v = new_tensor(KILN_I64, 1, &cnt);
  for (int64_t i = 0; v && i < cnt; i++) ((int64_t *)v->data)[i] = t.dims[start + i];
  return emit_owned(c, n, 0, v);
}

kiln_status konnx_op_size(C *c, const N *n) {
  int32_t x;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s != KILN_OK) return s;
  kir_tensor *v = new_tensor(KILN_I64, 0, NULL);
  if (v) *(int64_t *)v->data = kir_type_numel(konnx_type(c, x));
  return emit_owned(c, n, 0, v);
}

kiln_status konnx_op_constant_of_shape(C *c, const N *n) {
  int64_t d[KILN_MAX_RANK];
  int32_t k;
  uint8_t elem[8] = {0}; /* the value's bytes, copied exactly (default: f32 zero) */
  kiln_dtype dt = KILN_F32;
  kiln_status s = konnx_static_ints(c, n, 0, "shape", d, KILN_MAX_RANK, &k);
  if (s != KILN_OK) return s;
  const Onnx__AttributeProto *a = konnx_attr(n, "value");
  if (a) {
    char msg[512];
    kir_tensor *t = NULL;
    if (!a->t) return konnx_err(c, KILN_ERR_FORMAT, "attribute 'value' holds no tensor");
    if ((s = konnx_tensor_decode(a->t, &c->ext, "attribute 'value'", &t, msg, sizeof msg)) != KILN_OK)
      return konnx_err(c, s, "%s", msg);
    if (kir_type_numel(&t->type) != 1) s = konnx_err(c, KILN_ERR_SHAPE, "attribute 'value' must hold one element");
    else memcpy(elem, t->data, kiln_dtype_size(t->type.dtype)), dt = t->type.dtype;
    kir_tensor_free(t);
    if (s != KILN_OK) return s;
  }
  kir_type ty = {.dtype = dt, .rank = k};
  for (int32_t i = 0; i < k; i++) {
    if (d[i] < 0) return konnx_err(c, KILN_ERR_SHAPE, "shape entry %d is %lld", i, (long long)d[i]);
    ty.dims[i] = d[i];
  }
  int64_t nb = kir_type_nbytes(&ty);
  if (nb < 0 || nb > KIR_MAX_FOLD_BYTES)
    return konnx_err(c, KILN_ERR_LIMIT, "the constant would exceed %lld bytes", (long long)KIR_MAX_FOLD_BYTES);
  kir_tensor *t = kir_tensor_new(&ty);
  size_t es = kiln_dtype_size(dt);
  int64_t numel = kir_type_numel(&ty);
  for (int64_t i = 0; t && i < numel; i++) memcpy((uint8_t *)t->data + (size_t)i * es, elem, es);
  return emit_owned(c, n, 0, t);
}

/* ---------------------------------------------------------------- windows -------- */

typedef struct window {
  int32_t k; /* spatial dims */
  int64_t kernel[3], strides[3], pads[6], dil[3];
  bool same; /* auto_pad SAME_*: the output is ceil(in / stride) */
} window;

/* Reads an ints attribute of exactly `want` entries, each >= lo, into out (or dflt). */
static kiln_status window_ints(C *c, const N *n, const char *name, int32_t want, int64_t lo, int64_t dflt,
                               int64_t *out, bool *present) {
  const int64_t *v;
  int32_t cnt;
  bool p;
  kiln_status s = konnx_attr_ints(c, n, name, &v, &cnt, &p);
  if (s != KILN_OK) return s;
  if (present) *present = p;
  for (int32_t i = 0; i < want; i++) out[i] = dflt;
  if (!p) return KILN_OK;
  if (cnt != want) return konnx_err(c, KILN_ERR_SHAPE, "attribute '%s' has %d entries; %d expected", name, cnt, want);
  for (int32_t i = 0; i < cnt; i++) {
    if (v[i] < lo || v[i] > ((int64_t)1 << 32))
      return konnx_err(c, KILN_ERR_SHAPE, "attribute '%s' entry %d is %lld (must be >= %lld)", name, i, (long long)v[i],
                       (long long)lo);
    out[i] = v[i];
  }
  return KILN_OK;
}

/* auto_pad SAME_UPPER / SAME_LOWER / VALID into explicit pads. */
static kiln_status auto_pad(C *c, const N *n, const kir_type *x, window *w) {
  char ap[32];
  kiln_status s = konnx_attr_string(c, n, "auto_pad", "NOTSET", ap, sizeof ap);
  if (s != KILN_OK) return s;
  if (strcmp(ap, "NOTSET") == 0 || !ap[0]) return KILN_OK;
  bool valid = strcmp(ap, "VALID") == 0, upper = strcmp(ap, "SAME_UPPER") == 0;
  if (!valid && !upper && strcmp(ap, "SAME_LOWER") != 0)
    return konnx_err(c, KILN_ERR_FORMAT, "attribute 'auto_pad' = '%s' (NOTSET, SAME_UPPER, SAME_LOWER or VALID)", ap);
  for (int32_t i = 0; i < w->k; i++) {
    int64_t in = x->dims[2 + i], out = (in + w->strides[i] - 1) / w->strides[i];
    int64_t total = (out - 1) * w->strides[i] + (w->kernel[i] - 1) * w->dil[i] + 1 - in;
    if (valid || total < 0) total = 0;
    w->pads[i] = upper ? total / 2 : total - total / 2;
    w->pads[w->k + i] = total - w->pads[i];
  }
  w->same = !valid;
  return KILN_OK;
}

/* Spatial attributes of Conv and the pools; kernel from kernel_shape (or w for Conv). */
static kiln_status read_window(C *c, const N *n, const kir_type *x, const kir_type *wt, window *w) {
  memset(w, 0, sizeof *w);
  if (x->rank < 3 || x->rank > 5)
    return konnx_err(c, KILN_ERR_UNSUPPORTED, "input has rank %d; 1 to 3 spatial dims (rank 3 to 5) are supported", x->rank);
  w->k = x->rank - 2;
  bool has_kernel;
  kiln_status s = window_ints(c, n, "kernel_shape", w->k, 1, 1, w->kernel, &has_kernel);
  if (s != KILN_OK) return s;
  if (!wt && !has_kernel) return konnx_err(c, KILN_ERR_GRAPH, "attribute 'kernel_shape' is required");
  if (wt) {
    if (wt->rank != x->rank) return konnx_err(c, KILN_ERR_SHAPE, "W has rank %d, X rank %d", wt->rank, x->rank);
    for (int32_t i = 0; i < w->k; i++) {
      if (has_kernel && w->kernel[i] != wt->dims[2 + i])
        return konnx_err(c, KILN_ERR_SHAPE, "attribute 'kernel_shape' entry %d is %lld but W's spatial dim is %lld", i,
                         (long long)w->kernel[i], (long long)wt->dims[2 + i]);
      w->kernel[i] = wt->dims[2 + i];
    }
  }
  if ((s = window_ints(c, n, "strides", w->k, 1, 1, w->strides, NULL)) != KILN_OK) return s;
  if ((s = window_ints(c, n, "dilations", w->k, 1, 1, w->dil, NULL)) != KILN_OK) return s;
  if ((s = window_ints(c, n, "pads", 2 * w->k, 0, 0, w->pads, NULL)) != KILN_OK) return s;
  return auto_pad(c, n, x, w);
}

static kiln_status set_window(C *c, kir_node *y, const window *w, bool kernel) {
  kiln_status s = kernel ? kir_attr_set_ints(c->g, y, "kernel", w->kernel, w->k) : KILN_OK;
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "strides", w->strides, w->k);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "pads", w->pads, 2 * w->k);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "dilations", w->dil, w->k);
  return s;
}

kiln_status konnx_op_conv(C *c, const N *n) {
  int32_t in[3], nin = 2;
  int64_t group;
  window w;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &in[0]);
  if (s == KILN_OK) s = konnx_in(c, n, 1, &in[1]);
  if (s == KILN_OK) s = konnx_opt_in(c, n, 2, &in[2]);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "group", 1, &group);
  if (s != KILN_OK) return s;
  if (in[2] >= 0) nin = 3;
  if (group < 1) return konnx_err(c, KILN_ERR_SHAPE, "attribute 'group' is %lld (must be >= 1)", (long long)group);
  if ((s = read_window(c, n, konnx_type(c, in[0]), konnx_type(c, in[1]), &w)) != KILN_OK) return s;
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_CONV, in, nin, &y)) != KILN_OK) return s;
  if ((s = set_window(c, y, &w, false)) == KILN_OK) s = kir_attr_set_int(c->g, y, "group", group);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

static kiln_status pool(C *c, const N *n, kir_op op) {
  int32_t x;
  int64_t ceil_mode, extra = 0;
  window w;
  kir_node *y;
  const char *extra_name = op == KIR_OP_AVG_POOL ? "count_include_pad" : "storage_order";
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "ceil_mode", 0, &ceil_mode);
  if (s == KILN_OK) s = konnx_attr_int(c, n, extra_name, 0, &extra);
  if (s == KILN_OK) s = read_window(c, n, konnx_type(c, x), NULL, &w);
  if (s != KILN_OK) return s;
  if (w.same) ceil_mode = 0;
  for (int32_t k = 0; k < 2; k++) {
    if (k == 1 && (op != KIR_OP_MAX_POOL || !konnx_has_output(n, 1))) break;
    if ((s = konnx_emit_out(c, n, k, k ? KIR_OP_MAX_POOL_INDICES : op, &x, 1, &y)) != KILN_OK) return s;
    if ((s = set_window(c, y, &w, true)) == KILN_OK) s = kir_attr_set_int(c->g, y, "ceil_mode", ceil_mode != 0);
    if (s == KILN_OK && (k == 1 || op == KIR_OP_AVG_POOL)) s = kir_attr_set_int(c->g, y, extra_name, extra != 0);
    if (s != KILN_OK || (s = konnx_finish(c, y)) != KILN_OK) return s;
  }
  return KILN_OK;
}

kiln_status konnx_op_max_pool(C *c, const N *n) { return pool(c, n, KIR_OP_MAX_POOL); }
kiln_status konnx_op_avg_pool(C *c, const N *n) { return pool(c, n, KIR_OP_AVG_POOL); }

/* Global pools: a reduction over the spatial axes, keeping them as size 1. */
static kiln_status global_pool(C *c, const N *n, kir_op op) {
  int32_t x;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s != KILN_OK) return s;
  int32_t r = konnx_type(c, x)->rank;
  if (r < 3) return konnx_err(c, KILN_ERR_SHAPE, "input has rank %d; [N, C, d1, ...] expected", r);
  int64_t axes[KILN_MAX_RANK];
  for (int32_t i = 2; i < r; i++) axes[i - 2] = i;
  if ((s = konnx_emit_out(c, n, 0, op, &x, 1, &y)) != KILN_OK) return s;
  if ((s = kir_attr_set_ints(c->g, y, "axes", axes, r - 2)) == KILN_OK) s = kir_attr_set_int(c->g, y, "keep_dims", 1);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

kiln_status konnx_op_global_avg_pool(C *c, const N *n) { return global_pool(c, n, KIR_OP_REDUCE_MEAN); }
kiln_status konnx_op_global_max_pool(C *c, const N *n) { return global_pool(c, n, KIR_OP_REDUCE_MAX); }

/* ---------------------------------------------------------------- bn, dropout ---- */

static kiln_status refuse_training_outputs(C *c, const N *n) {
  char en[KONNX_ESC];
  for (size_t k = 1; k < n->n_output; k++)
    if (konnx_has_output(n, (int32_t)k))
      return konnx_err(c, KILN_ERR_UNSUPPORTED, "output %zu ('%s') exists only in training mode, which is not supported",
                       k, kir_escape(n->output[k], en, sizeof en));
  return KILN_OK;
}

/* One intermediate node "<output0>/<role>" over in[0..n_in), finished; its id in *out. */
static kiln_status bn_step(C *c, const N *n, const char *role, kir_op op, int32_t a, int32_t b,
                           int32_t *out) {
  int32_t in[2] = {a, b};
  kir_node *y;
  kiln_status s = konnx_emit_sub(c, n, role, op, in, b >= 0 ? 2 : 1, &y);
  if (s == KILN_OK) s = konnx_finish(c, y);
  if (s == KILN_OK) *out = y->id;
  return s;
}

/* reduce_mean of v over every axis but 1, keeping dims ([1, C, 1, ..]). */
static kiln_status bn_mean(C *c, const N *n, const char *role, int32_t v, int32_t *out) {
  int32_t rank = konnx_type(c, v)->rank, k = 0;
  int64_t axes[KILN_MAX_RANK];
  for (int32_t a = 0; a < rank; a++)
    if (a != 1) axes[k++] = a;
  kir_node *y;
  kiln_status s = konnx_emit_sub(c, n, role, KIR_OP_REDUCE_MEAN, &v, 1, &y);
  if (s == KILN_OK) s = kir_attr_set_ints(c->g, y, "axes", axes, k);
  if (s == KILN_OK) s = kir_attr_set_int(c->g, y, "keep_dims", 1);
  if (s == KILN_OK) s = konnx_finish(c, y);
  if (s == KILN_OK) *out = y->id;
  return s;
}

/* running = stat * momentum + batch * (1 - momentum), batch [1, C, 1..] reshaped to [C],
 * as output k. */
static kiln_status bn_running(C *c, const N *n, int32_t k, const char *what, int32_t stat,
                              int32_t batch, double momentum) {
  char role[48];
  int32_t flat = -1, m1 = -1, m2 = -1, sm = -1, bm = -1;
  int64_t ch = konnx_type(c, stat)->dims[0];
  kiln_dtype dt = konnx_type(c, stat)->dtype;
  snprintf(role, sizeof role, "%s_batch", what);
  kiln_status s = konnx_reshape(c, n, 0, role, batch, &ch, 1, &flat);
  snprintf(role, sizeof role, "%s_momentum", what);
  if (s == KILN_OK) s = konnx_scalar(c, n, role, dt, momentum, &m1);
  snprintf(role, sizeof role, "%s_1-momentum", what);
  if (s == KILN_OK) s = konnx_scalar(c, n, role, dt, 1.0 - momentum, &m2);
  snprintf(role, sizeof role, "%s_kept", what);
  if (s == KILN_OK) s = bn_step(c, n, role, KIR_OP_MUL, stat, m1, &sm);
  snprintf(role, sizeof role, "%s_new", what);
  if (s == KILN_OK) s = bn_step(c, n, role, KIR_OP_MUL, flat, m2, &bm);
  int32_t in[2] = {sm, bm};
  kir_node *y;
  if (s == KILN_OK) s = konnx_emit_out(c, n, k, KIR_OP_ADD, in, 2, &y);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* training_mode=1: normalizes with the batch's mean and (population) variance over every
 * axis but 1, and outputs the updated running mean and variance when asked:
 * running = input * momentum + batch * (1 - momentum). Built from reductions and
 * elementwise ops. */
static kiln_status batch_norm_training(C *c, const N *n, const int32_t *in, double eps) {
  double momentum;
  kiln_status s = konnx_attr_float(c, n, "momentum", 0.9, &momentum);
  if (s != KILN_OK) return s;
  const kir_type *xt = konnx_type(c, in[0]);
  if (xt->rank < 2) return konnx_err(c, KILN_ERR_SHAPE, "input X has rank %d; it needs [N, C, ...]", (int)xt->rank);
  kiln_dtype dt = xt->dtype;
  int64_t cdims[KILN_MAX_RANK];
  int32_t rank = xt->rank;
  for (int32_t a = 0; a < rank; a++) cdims[a] = a == 1 ? xt->dims[1] : 1;
  int32_t mean = -1, diff = -1, sq = -1, var = -1, e = -1, ve = -1, den = -1, norm = -1, sc = -1,
          bi = -1, scaled = -1;
  s = bn_mean(c, n, "batch_mean", in[0], &mean);
  if (s == KILN_OK) s = bn_step(c, n, "centered", KIR_OP_SUB, in[0], mean, &diff);
  if (s == KILN_OK) s = bn_step(c, n, "squared", KIR_OP_MUL, diff, diff, &sq);
  if (s == KILN_OK) s = bn_mean(c, n, "batch_var", sq, &var);
  if (s == KILN_OK) s = konnx_scalar(c, n, "epsilon", dt, eps, &e);
  if (s == KILN_OK) s = bn_step(c, n, "var_eps", KIR_OP_ADD, var, e, &ve);
  if (s == KILN_OK) s = bn_step(c, n, "std", KIR_OP_SQRT, ve, -1, &den);
  if (s == KILN_OK) s = bn_step(c, n, "normalized", KIR_OP_DIV, diff, den, &norm);
  if (s == KILN_OK) s = konnx_reshape(c, n, 0, "scale", in[1], cdims, rank, &sc);
  if (s == KILN_OK) s = konnx_reshape(c, n, 0, "bias", in[2], cdims, rank, &bi);
  if (s == KILN_OK) s = bn_step(c, n, "scaled", KIR_OP_MUL, norm, sc, &scaled);
  kir_node *y;
  int32_t yin[2] = {scaled, bi};
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_ADD, yin, 2, &y);
  if (s == KILN_OK) s = konnx_finish(c, y);
  if (s == KILN_OK && konnx_has_output(n, 1)) s = bn_running(c, n, 1, "mean", in[3], mean, momentum);
  if (s == KILN_OK && konnx_has_output(n, 2)) s = bn_running(c, n, 2, "var", in[4], var, momentum);
  if (s == KILN_OK && (konnx_has_output(n, 3) || konnx_has_output(n, 4)))
    s = konnx_err(c, KILN_ERR_UNSUPPORTED, "outputs 3 and 4 (saved mean and variance, BatchNormalization before opset 14) are not supported");
  return s;
}

kiln_status konnx_op_batch_norm(C *c, const N *n) {
  int32_t in[5];
  int64_t spatial, training;
  double eps;
  kir_node *y;
  kiln_status s = konnx_attr_float(c, n, "epsilon", 1e-5, &eps);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "spatial", 1, &spatial);
  if (s == KILN_OK) s = konnx_attr_int(c, n, "training_mode", 0, &training);
  if (s != KILN_OK) return s;
  if (spatial != 1) return konnx_err(c, KILN_ERR_UNSUPPORTED, "attribute 'spatial' = %lld is not supported", (long long)spatial);
  for (int32_t i = 0; i < 5 && s == KILN_OK; i++) s = konnx_in(c, n, i, &in[i]);
  if (s != KILN_OK) return s;
  if (training) return batch_norm_training(c, n, in, eps);
  if ((s = refuse_training_outputs(c, n)) != KILN_OK) return s;
  if (s == KILN_OK) s = konnx_emit_out(c, n, 0, KIR_OP_BATCH_NORM, in, 5, &y);
  if (s == KILN_OK) s = kir_attr_set_float(c->g, y, "epsilon", eps);
  return s == KILN_OK ? konnx_finish(c, y) : s;
}

/* Training-mode Dropout is the identity only when its ratio is a static 0; any other
 * ratio (0.5 when absent) draws a random mask, which Kiln does not do. */
static kiln_status training_ratio_zero(C *c, const N *n) {
  int32_t r;
  kiln_status s = konnx_opt_in(c, n, 1, &r);
  if (s != KILN_OK) return s;
  const kir_tensor *t = r >= 0 ? konnx_static(c, r) : NULL;
  if (t && kir_type_numel(&t->type) == 1 && kir_tensor_get_f(t, 0) == 0) return KILN_OK;
  return konnx_err(c, KILN_ERR_UNSUPPORTED, "training_mode = true with a ratio other than a static "
                   "0 draws a random mask, which is not supported (inference only)");
}

/* Inference Dropout (or training with ratio 0): the identity; the mask is all true (ones
 * of x's dtype before 10). */
kiln_status konnx_op_dropout(C *c, const N *n) {
  int32_t x, tm = -1;
  kir_node *y;
  kiln_status s = konnx_in(c, n, 0, &x);
  if (s == KILN_OK && c->opset >= 12) s = konnx_opt_in(c, n, 2, &tm);
  if (s != KILN_OK) return s;
  if (tm >= 0) {
    const kir_tensor *t = konnx_static(c, tm);
    if (!t) return konnx_err(c, KILN_ERR_UNSUPPORTED, "input 2 (training_mode) must be static");
    if (kir_type_numel(&t->type) != 1) return konnx_err(c, KILN_ERR_SHAPE, "input 2 (training_mode) must be a scalar");
    if (kir_tensor_get_f(t, 0) != 0 && (s = training_ratio_zero(c, n)) != KILN_OK) return s;
  }
  if ((s = konnx_emit_out(c, n, 0, KIR_OP_IDENTITY, &x, 1, &y)) != KILN_OK || (s = konnx_finish(c, y)) != KILN_OK) return s;
  if (!konnx_has_output(n, 1)) return KILN_OK;
  const kir_type *t = konnx_type(c, x);
  kir_tensor *m = new_tensor(c->opset >= 10 ? KILN_BOOL : t->dtype, t->rank, t->dims);
  if (m) fill(m, 1);
  return emit_owned(c, n, 1, m);
}
