/* kir_print.c — the deterministic, human-readable text listing of a graph, one node a
 * line. Model strings are always escaped (kir_escape). Depends on kir.h and stdio. */
#include "kir_internal.h"

#include <inttypes.h>
#include <string.h>

#define PRINT_LIST_MAX 32   /* ints/floats shown before "..." */
#define PRINT_TENSOR_MAX 8  /* constants up to this many elements are shown in full */

static void print_esc(FILE *out, const char *s) {
  char esc[KIR_ESC_BUF];
  fputs(kir_escape(s, esc, sizeof esc), out);
}

static void print_tensor(FILE *out, const kir_tensor *t) {
  char ty[128];
  kir_type_format(&t->type, ty, sizeof ty);
  int64_t n = kir_type_numel(&t->type);
  if (n < 0 || n > PRINT_TENSOR_MAX || !t->data) {
    fprintf(out, "<%s \xE2\x80\xA6>", ty); /* "…" */
    return;
  }
  fprintf(out, "%s{", ty);
  for (int64_t i = 0; i < n; i++) {
    if (i) fputs(", ", out);
    if (t->type.dtype == KILN_F32 || t->type.dtype == KILN_F64)
      fprintf(out, "%.9g", kir_tensor_get_f(t, i));
    else
      fprintf(out, "%" PRId64, kir_tensor_get_i(t, i));
  }
  fputc('}', out);
}

static void print_list_end(FILE *out, int32_t n) {
  if (n > PRINT_LIST_MAX) fprintf(out, ", ... (%d)", (int)n);
  fputc(']', out);
}

static void print_attr_value(FILE *out, const kir_attr *a) {
  switch (a->kind) {
  case KIR_ATTR_INT: fprintf(out, "%" PRId64, a->u.i); return;
  case KIR_ATTR_FLOAT: fprintf(out, "%.9g", a->u.f); return;
  case KIR_ATTR_INTS:
    fputc('[', out);
    for (int32_t i = 0; i < a->u.ints.n && i < PRINT_LIST_MAX; i++)
      fprintf(out, i ? ",%" PRId64 : "%" PRId64, a->u.ints.v[i]);
    print_list_end(out, a->u.ints.n);
    return;
  case KIR_ATTR_FLOATS:
    fputc('[', out);
    for (int32_t i = 0; i < a->u.floats.n && i < PRINT_LIST_MAX; i++)
      fprintf(out, i ? ",%.9g" : "%.9g", a->u.floats.v[i]);
    print_list_end(out, a->u.floats.n);
    return;
  case KIR_ATTR_STRING: fputc('"', out); print_esc(out, a->u.s); fputc('"', out); return;
  case KIR_ATTR_STRINGS:
    fputc('[', out);
    for (int32_t i = 0; i < a->u.strings.n; i++) {
      fputs(i ? ", \"" : "\"", out);
      print_esc(out, a->u.strings.v[i]);
      fputc('"', out);
    }
    fputc(']', out);
    return;
  case KIR_ATTR_TENSOR: print_tensor(out, a->u.t); return;
  }
  fputc('?', out);
}

static void print_attrs(FILE *out, const kir_node *n) {
  if (n->n_attrs <= 0) return;
  fputs(" {", out);
  for (int32_t i = 0; i < n->n_attrs; i++) {
    if (i) fputs(", ", out);
    print_esc(out, n->attrs[i].name);
    fputc('=', out);
    print_attr_value(out, &n->attrs[i]);
  }
  fputc('}', out);
}

static void print_inputs(FILE *out, const kir_graph *g, const kir_node *n) {
  fputc('(', out);
  for (int32_t k = 0; k < n->n_inputs; k++) {
    int32_t in = n->inputs[k];
    fprintf(out, k ? ", %%%d" : "%%%d", (int)in);
    if (in >= 0 && in < g->n_nodes) {
      fputc(' ', out);
      print_esc(out, g->nodes[in]->name);
    }
  }
  fputc(')', out);
}

static void print_type(FILE *out, const kir_node *n) {
  char ty[128];
  if (kir_op_has(n->op, KIR_F_NO_OUTPUT)) {
    fputs(" : ()", out);
  } else if (n->type.dtype == KILN_DTYPE_INVALID) {
    fputs(" : ?", out);
  } else {
    kir_type_format(&n->type, ty, sizeof ty);
    fprintf(out, " : %s", ty);
  }
}

static void print_placement(FILE *out, const kir_node *n) {
  if (n->device && n->device[0]) {
    fputs(" @", out);
    print_esc(out, n->device);
  }
  if (n->assigned_device && n->assigned_device[0]) {
    fputs(" => ", out);
    print_esc(out, n->assigned_device);
    if (n->placement_reason && n->placement_reason[0]) {
      fputs(" (", out);
      print_esc(out, n->placement_reason);
      fputc(')', out);
    }
  }
}

void kir_graph_print(const kir_graph *g, FILE *out) {
  if (!g || !out) return;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const kir_node *n = g->nodes[i];
    const kir_op_info *info = kir_op_get((int32_t)n->op);
    fprintf(out, "%%%d = %s", (int)n->id, info ? info->name : "invalid");
    print_inputs(out, g, n);
    print_attrs(out, n);
    print_type(out, n);
    print_placement(out, n);
    fputs("   # ", out);
    print_esc(out, n->name);
    fputc('\n', out);
  }
}
