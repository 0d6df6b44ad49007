/* kiln_tool.h — shared pieces of the `kiln` command line (tools/ may use every module).
 * Only tools/ prints to the terminal and calls exit. */
#ifndef KILN_TOOL_H
#define KILN_TOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "../codegen/kcg.h"
#include "../frontend/onnx/kiln_onnx.h"
#include "../ir/kir.h"
#include "../passes/kps.h"
#include "../runtime/kiln_runtime.h"

#define KTOOL_MAX_ARGS 64

/* Exit codes: 0 success, 1 an error reported on stderr, 2 a usage error. */
enum { KTOOL_OK = 0, KTOOL_ERR = 1, KTOOL_USAGE = 2 };

/* name=path pairs given as --input / --output. */
typedef struct ktool_binding {
  const char *name;
  const char *path;
} ktool_binding;

/* Prints "kiln: <message>" on stderr; returns KTOOL_ERR. */
int ktool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "kiln <cmd>: <message>" and the command's usage; returns KTOOL_USAGE. */
int ktool_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* For "--opt VALUE": returns argv[*i + 1] and advances *i, or NULL (after a usage
 * message) when the value is missing. */
const char *ktool_value(const char *cmd, int *i, int argc, char **argv);

/* true when the file starts with the artifact magic. */
bool ktool_is_artifact(const char *path);

/* How an ONNX model becomes a graph: the options every command that takes a MODEL
 * accepts (--input-shape NAME=d0,d1,..., --allow-external-data). The shape names point
 * into argv. */
typedef struct ktool_import {
  konnx_shape shapes[KTOOL_MAX_ARGS];
  int32_t n_shapes;
  bool allow_external_data;
  FILE *log; /* the importer's notes, or NULL */
} ktool_import;
/* When argv[*i] is an import option: consumes it (and its value, advancing *i) and
 * returns KTOOL_OK, or KTOOL_USAGE after a usage message. -1 when it is not one. */
int ktool_take_import_option(const char *cmd, int *i, int argc, char **argv, ktool_import *imp);
/* Loads a MODEL: an ONNX file (konnx_looks_like_onnx) through the importer with imp's
 * options (imp may be NULL), anything else as a .kiln graph, binary or text. Prints the
 * error and returns NULL on failure. */
kir_graph *ktool_load_model(const char *path, const ktool_import *imp);
/* KTOOL_OK, or an error when imp holds options for a file that is not ONNX (what: "a
 * Kiln graph", "an artifact"). */
int ktool_no_import_options(const char *path, const ktool_import *imp, const char *what);
/* ktool_load_model(path, NULL). */
kir_graph *ktool_load_graph(const char *path);
/* Splits "NAME=PATH"; false (with a usage message) if malformed. */
bool ktool_parse_binding(const char *cmd, const char *arg, ktool_binding *out);

/* The graph's default fetches: nodes with an output that no other node uses and that
 * are not placeholders, constants or variables. Returns the count (up to max). The
 * names point into g: they die with g or with any pass that rebuilds it. */
int32_t ktool_default_outputs(const kir_graph *g, const char **names, int32_t max);

/* Names that outlive passes: copies of `given` (e.g. --fetch values) or, when n_given
 * is 0, of the graph's default outputs. Free with ktool_roots_free. */
typedef struct ktool_roots {
  char *names[KTOOL_MAX_ARGS];
  int32_t n;
} ktool_roots;
bool ktool_roots_init(ktool_roots *r, const kir_graph *g, const char *const *given,
                      int32_t n_given);
void ktool_roots_free(ktool_roots *r);

/* Writes s (NULL: "") to stdout as a JSON string literal: quotes and backslashes
 * escaped, every byte outside printable ASCII as \u00XX. */
void ktool_json_string(const char *s);

/* Conversions between .npy files and tensors. */
kir_tensor *ktool_read_npy(const char *path);                 /* NULL after printing */
/* A tensor from a .npy file or, when the file does not start with the .npy magic and
 * its name ends in ".pb", an ONNX TensorProto (the conformance suite's input_N.pb). */
kir_tensor *ktool_read_tensor(const char *path);              /* NULL after printing */
bool ktool_write_npy(const char *path, const kir_tensor *t);  /* false after printing */
/* Prints "name f32[2,3] = [v0, v1, ...]" with at most `limit` values. */
void ktool_print_tensor(const char *name, const kir_tensor *t, int limit);
/* Fills a tensor with seeded uniform values in [-1, 1) (integers: [-8, 8)). */
void ktool_fill_random(kir_tensor *t, uint64_t seed);

int ktool_cmd_show(int argc, char **argv);
int ktool_cmd_run(int argc, char **argv);
int ktool_cmd_opt(int argc, char **argv);
int ktool_cmd_compile(int argc, char **argv);
int ktool_cmd_compare(int argc, char **argv);
int ktool_cmd_bench(int argc, char **argv);
int ktool_cmd_import(int argc, char **argv);

/* Shared by opt, compile and run --target cpu: runs the pipeline over g (roots =
 * outputs), logging per pass to `log` when non-NULL. Returns KTOOL_OK or KTOOL_ERR. */
int ktool_optimize(kir_graph *g, const char *pipeline, const char *const *roots,
                   int32_t n_roots, bool print_after_all, bool verify_each, FILE *log);

#endif
