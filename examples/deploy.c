/* deploy.c — run a Kiln artifact from a C program with nothing but libkiln_rt:
 *   deploy ARTIFACT [--input NAME=FILE.npy]... [--output NAME=FILE.npy]... [--print]
 * With no inputs given it lists the model's inputs and outputs. Links libkiln_rt only;
 * never the compiler (ir/, frontend/, passes/, codegen/). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_runtime.h"

#define MAX_ARGS 64

typedef struct binding {
  const char *name; /* points into argv, '=' replaced by NUL */
  const char *file;
} binding;

typedef struct opts {
  const char *artifact;
  binding in[MAX_ARGS], out[MAX_ARGS];
  int n_in, n_out, print;
} opts;

static int usage(void) {
  fprintf(stderr, "usage: deploy ARTIFACT [--input NAME=FILE.npy]... "
                  "[--output NAME=FILE.npy]... [--print]\n");
  return 1;
}

static int parse_binding(char *arg, binding *b, int *n, const char *flag) {
  char *eq = arg ? strchr(arg, '=') : NULL;
  if (!eq || eq == arg || !eq[1]) {
    fprintf(stderr, "deploy: %s wants NAME=FILE.npy, got '%s'\n", flag, arg ? arg : "");
    return -1;
  }
  if (*n == MAX_ARGS) {
    fprintf(stderr, "deploy: more than %d %s options\n", MAX_ARGS, flag);
    return -1;
  }
  *eq = '\0';
  b[*n].name = arg;
  b[*n].file = eq + 1;
  (*n)++;
  return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--input") == 0 || strcmp(a, "--output") == 0) {
      int is_in = a[2] == 'i';
      if (parse_binding(i + 1 < argc ? argv[++i] : NULL, is_in ? o->in : o->out,
                        is_in ? &o->n_in : &o->n_out, a))
        return -1;
    } else if (strcmp(a, "--print") == 0) {
      o->print = 1;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "deploy: unknown option '%s'\n", a);
      return -1;
    } else if (o->artifact) {
      fprintf(stderr, "deploy: more than one artifact ('%s', '%s')\n", o->artifact, a);
      return -1;
    } else {
      o->artifact = a;
    }
  }
  return o->artifact ? 0 : -1;
}

/* "f32[64,1000]" */
static void shape_str(int dtype, int rank, const int64_t *dims, char *out, size_t len) {
  size_t o = (size_t)snprintf(out, len, "%s[", kiln_rt_dtype_name(dtype));
  for (int i = 0; i < rank && o < len; i++)
    o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, i ? "," : "", dims[i]);
  if (o < len) snprintf(out + o, len - o, "]");
}

static void list_tensors(const kiln_rt_model *m, int inputs, FILE *f) {
  int n = inputs ? kiln_rt_model_num_inputs(m) : kiln_rt_model_num_outputs(m);
  for (int i = 0; i < n; i++) {
    kiln_rt_tensor_info t;
    if (inputs ? kiln_rt_model_input(m, i, &t) : kiln_rt_model_output(m, i, &t)) continue;
    char s[256];
    shape_str(t.dtype, t.rank, t.dims, s, sizeof s);
    fprintf(f, "  %s %s %s (%zu bytes)\n", inputs ? "input " : "output", t.name, s, t.nbytes);
  }
}

static void list_model(const kiln_rt_model *m, FILE *f) {
  fprintf(f, "target %s, arena %zu bytes\n", kiln_rt_model_target(m), kiln_rt_model_arena_bytes(m));
  list_tensors(m, 1, f);
  list_tensors(m, 0, f);
}

/* Checks names: every --input names a model input (once), every model input is given,
 * every --output names a model output. idx[i] = model index of o->in[i]. */
static int match_names(const kiln_rt_model *m, const opts *o, int *in_idx, int *out_idx) {
  int n = kiln_rt_model_num_inputs(m);
  for (int i = 0; i < o->n_in; i++) {
    in_idx[i] = kiln_rt_model_find_input(m, o->in[i].name);
    if (in_idx[i] < 0) {
      fprintf(stderr, "deploy: the model has no input '%s'; its inputs:\n", o->in[i].name);
      list_tensors(m, 1, stderr);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (in_idx[j] == in_idx[i]) {
        fprintf(stderr, "deploy: input '%s' given twice\n", o->in[i].name);
        return -1;
      }
  }
  for (int k = 0; k < n; k++) {
    int given = 0;
    for (int i = 0; i < o->n_in; i++) given |= in_idx[i] == k;
    kiln_rt_tensor_info t;
    if (!given && kiln_rt_model_input(m, k, &t) == KILN_RT_OK) {
      fprintf(stderr, "deploy: input '%s' is not given (--input %s=FILE.npy)\n", t.name, t.name);
      return -1;
    }
  }
  for (int i = 0; i < o->n_out; i++) {
    out_idx[i] = kiln_rt_model_find_output(m, o->out[i].name);
    if (out_idx[i] < 0) {
      fprintf(stderr, "deploy: the model has no output '%s'; its outputs:\n", o->out[i].name);
      list_tensors(m, 0, stderr);
      return -1;
    }
  }
  return 0;
}

static int same_shape(const kiln_rt_tensor_info *t, const kiln_rt_npy *a) {
  if (t->dtype != a->dtype || t->rank != a->rank) return 0;
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] != a->dims[i]) return 0;
  return 1;
}

/* Reads each --input file into arrays[model index] and checks its dtype and shape. */
static int read_inputs(const kiln_rt_model *m, const opts *o, const int *in_idx,
                       kiln_rt_npy *arrays) {
  for (int i = 0; i < o->n_in; i++) {
    char err[1024];
    kiln_rt_npy *a = &arrays[in_idx[i]];
    if (kiln_rt_npy_read(o->in[i].file, a, err, sizeof err) != KILN_RT_OK) {
      fprintf(stderr, "deploy: %s\n", err);
      return -1;
    }
    kiln_rt_tensor_info t;
    kiln_rt_model_input(m, in_idx[i], &t);
    if (!same_shape(&t, a)) {
      char want[256], got[256];
      shape_str(t.dtype, t.rank, t.dims, want, sizeof want);
      shape_str(a->dtype, a->rank, a->dims, got, sizeof got);
      fprintf(stderr, "deploy: input '%s' is %s, but %s holds %s\n", t.name, want,
              o->in[i].file, got);
      return -1;
    }
  }
  return 0;
}

static void print_value(int dtype, const void *data, size_t i) {
  switch (dtype) {
  case KILN_RT_F32: printf("%g", (double)((const float *)data)[i]); break;
  case KILN_RT_F64: printf("%g", ((const double *)data)[i]); break;
  case KILN_RT_I32: printf("%" PRId32, ((const int32_t *)data)[i]); break;
  case KILN_RT_I64: printf("%" PRId64, ((const int64_t *)data)[i]); break;
  case KILN_RT_BOOL: printf("%s", ((const uint8_t *)data)[i] ? "true" : "false"); break;
  }
}

static void print_output(const kiln_rt_tensor_info *t, const void *data) {
  char s[256];
  shape_str(t->dtype, t->rank, t->dims, s, sizeof s);
  size_t n = t->nbytes / kiln_rt_dtype_size(t->dtype), shown = n < 10 ? n : 10;
  printf("%s %s = [", t->name, s);
  for (size_t i = 0; i < shown; i++) {
    if (i) printf(", ");
    print_value(t->dtype, data, i);
  }
  printf("%s]\n", shown < n ? ", ..." : "");
}

static int write_outputs(const kiln_rt_model *m, const opts *o, const int *out_idx,
                         const kiln_rt_npy *outs) {
  for (int i = 0; i < o->n_out; i++) {
    kiln_rt_tensor_info t;
    char err[1024];
    kiln_rt_model_output(m, out_idx[i], &t);
    if (kiln_rt_npy_write(o->out[i].file, t.dtype, t.rank, t.dims, outs[out_idx[i]].data, err,
                          sizeof err) != KILN_RT_OK) {
      fprintf(stderr, "deploy: %s\n", err);
      return -1;
    }
  }
  return 0;
}

/* Allocates outputs, runs, prints and writes. */
static int run_model(kiln_rt_model *m, const opts *o, const int *out_idx, kiln_rt_npy *ins,
                     kiln_rt_npy *outs) {
  int ni = kiln_rt_model_num_inputs(m), no = kiln_rt_model_num_outputs(m);
  kiln_rt_buffer *bin = calloc((size_t)ni + 1, sizeof *bin), *bout = calloc((size_t)no + 1, sizeof *bout);
  kiln_rt_context *c = NULL;
  int rc = -1;
  if (!bin || !bout) goto done;
  for (int i = 0; i < ni; i++) bin[i] = (kiln_rt_buffer){ins[i].data, ins[i].nbytes};
  for (int i = 0; i < no; i++) {
    kiln_rt_tensor_info t;
    kiln_rt_model_output(m, i, &t);
    outs[i].nbytes = t.nbytes;
    outs[i].data = calloc(1, t.nbytes ? t.nbytes : 1);
    if (!outs[i].data) goto done;
    bout[i] = (kiln_rt_buffer){outs[i].data, t.nbytes};
  }
  if (kiln_rt_context_create(m, &c) != KILN_RT_OK) {
    fprintf(stderr, "deploy: cannot create a context (%zu-byte arena)\n", kiln_rt_model_arena_bytes(m));
    goto done;
  }
  if (kiln_rt_run(c, bin, ni, bout, no) != KILN_RT_OK) {
    fprintf(stderr, "deploy: %s: %s\n", o->artifact, kiln_rt_context_error(c));
    goto done;
  }
  for (int i = 0; o->print && i < no; i++) {
    kiln_rt_tensor_info t;
    kiln_rt_model_output(m, i, &t);
    print_output(&t, outs[i].data);
  }
  rc = write_outputs(m, o, out_idx, outs);
done:
  if (rc && (!bin || !bout)) fprintf(stderr, "deploy: out of memory\n");
  kiln_rt_context_destroy(c);
  free(bin);
  free(bout);
  return rc;
}

static int deploy(kiln_rt_model *m, const opts *o) {
  int ni = kiln_rt_model_num_inputs(m), no = kiln_rt_model_num_outputs(m);
  int in_idx[MAX_ARGS], out_idx[MAX_ARGS];
  if (match_names(m, o, in_idx, out_idx)) return 1;
  kiln_rt_npy *ins = calloc((size_t)ni + 1, sizeof *ins);
  kiln_rt_npy *outs = calloc((size_t)no + 1, sizeof *outs);
  int rc = 1;
  if (!ins || !outs) fprintf(stderr, "deploy: out of memory\n");
  else if (read_inputs(m, o, in_idx, ins) == 0 && run_model(m, o, out_idx, ins, outs) == 0)
    rc = 0;
  for (int i = 0; ins && i < ni; i++) kiln_rt_npy_free(&ins[i]);
  for (int i = 0; outs && i < no; i++) free(outs[i].data);
  free(ins);
  free(outs);
  return rc;
}

int main(int argc, char **argv) {
  opts o = {0};
  if (parse_args(argc, argv, &o)) return usage();
  kiln_rt_model *m = NULL;
  if (kiln_rt_model_open(o.artifact, &m) != KILN_RT_OK) {
    fprintf(stderr, "deploy: %s\n", kiln_rt_model_error(m));
    kiln_rt_model_close(m);
    return 1;
  }
  int rc = 0;
  if (o.n_in == 0 && o.n_out == 0 && !o.print)
    list_model(m, stdout);
  else
    rc = deploy(m, &o);
  kiln_rt_model_close(m);
  return rc;
}
