/* kir.h — Kiln's graph IR: the op table, types, tensors, attributes, nodes, graphs,
 * shape inference, the verifier, the reference interpreter, serialization and the
 * text printer. Prefix kir_. Depends on libc, libm and protobuf-c only; never on
 * frontend/, passes/, codegen/ or runtime/.
 *
 * Ownership: a kir_graph owns every node, name, attribute and attribute tensor it
 * holds (in its arena); they live until the graph is destroyed. kir_tensor values made
 * by kir_tensor_new (interpreter results, state) are owned by whoever holds them and are
 * released with kir_tensor_free. All allocation goes through kir_alloc.h. */
#ifndef KIR_H
#define KIR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln_types.h"
#include "kir_alloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- limits -------- */
/* Defaults from ../shared/RELIABILITY.md; each refused with KILN_ERR_LIMIT. */
#define KIR_MAX_NODES (1 << 20)
#define KIR_MAX_ATTRS 1024
#define KIR_MAX_NAME 4096                       /* bytes, without the NUL */
#define KIR_MAX_INPUTS 65536                    /* per node */
#define KIR_MAX_TENSOR_BYTES ((int64_t)1 << 32) /* one tensor */
#define KIR_MAX_FILE_BYTES (((int64_t)2 << 30) - 1)
#define KIR_MAX_FOLD_BYTES ((int64_t)64 << 20) /* one folded constant */

/* ---------------------------------------------------------------- op table ------ */
enum {
  KIR_F_ELEMENTWISE = 1u << 0,
  KIR_F_UNARY = 1u << 1,
  KIR_F_BINARY = 1u << 2,
  KIR_F_COMMUTATIVE = 1u << 3,
  KIR_F_REDUCTION = 1u << 4,
  KIR_F_STATEFUL = 1u << 5,  /* reads or writes session state: never folded or CSE'd */
  KIR_F_SOURCE = 1u << 6,    /* no inputs; value from attributes or feeds */
  KIR_F_CONTROL = 1u << 7,   /* ordering only */
  KIR_F_NO_OUTPUT = 1u << 8, /* produces no value (group, no_op) */
  KIR_F_INPLACE_OK = 1u << 9,/* output may share the buffer of its first input */
  KIR_F_FLOAT_ONLY = 1u << 10,/* float dtypes only (f16 bf16 f32 f64) */
  KIR_F_FUSED = 1u << 11     /* made by the fuse pass; carries fused_from */
};

typedef enum kir_op {
  KIR_OP_INVALID = 0,
#define KIR_OP(E, name, wire, min_in, max_in, flags, schema) KIR_OP_##E = wire,
#include "ops.def"
#undef KIR_OP
  KIR_OP_COUNT /* one past the last wire number */
} kir_op;

typedef struct kir_op_info {
  const char *name;   /* wire name, e.g. "matmul" */
  int32_t wire;       /* equals the enum value */
  int32_t min_inputs;
  int32_t max_inputs; /* -1: variadic */
  uint32_t flags;     /* KIR_F_* */
  const char *schema; /* attribute schema, see ops.def */
} kir_op_info;

/* Indexed by kir_op; entry 0 is the invalid op (name "invalid"). */
extern const kir_op_info kir_op_table[KIR_OP_COUNT];
/* NULL when op is not a valid wire number (0, negative or >= KIR_OP_COUNT). */
const kir_op_info *kir_op_get(int32_t op);
/* KIR_OP_INVALID when the name is unknown. */
kir_op kir_op_from_name(const char *name);
static inline bool kir_op_has(kir_op op, uint32_t flag) {
  const kir_op_info *i = kir_op_get(op);
  return i && (i->flags & flag);
}

/* ---------------------------------------------------------------- types --------- */
/* dtype + static shape. A node with no output has dtype KILN_DTYPE_INVALID, rank 0.
 * Every dim is >= 0 (no dynamic dims yet). A scalar has rank 0 and one element. */
typedef struct kir_type {
  kiln_dtype dtype;
  int32_t rank;
  int64_t dims[KILN_MAX_RANK];
} kir_type;

/* Element count; -1 if the product overflows int64 or a dim is negative. */
int64_t kir_type_numel(const kir_type *t);
/* Byte size; -1 on overflow, invalid dtype, or above KIR_MAX_TENSOR_BYTES. */
int64_t kir_type_nbytes(const kir_type *t);
bool kir_type_equal(const kir_type *a, const kir_type *b);
/* Writes e.g. "f32[64,1000]" or "i32[]" into buf (always NUL-terminated). */
void kir_type_format(const kir_type *t, char *buf, size_t n);
/* NumPy broadcasting of two shapes into out (dtype copied from a). false if they do
 * not broadcast. */
bool kir_broadcast(const kir_type *a, const kir_type *b, kir_type *out);

/* ---------------------------------------------------------------- tensors ------- */
typedef struct kir_tensor {
  kir_type type;
  void *data; /* kir_type_nbytes(&type) bytes, 64-byte aligned when made by kir_tensor_new */
} kir_tensor;

/* New zero-filled tensor through the allocation hook; NULL on OOM or bad type. */
kir_tensor *kir_tensor_new(const kir_type *t);
kir_tensor *kir_tensor_clone(const kir_tensor *src);
void kir_tensor_free(kir_tensor *t); /* accepts NULL */
/* Element i as double / int64, whatever the dtype (bool: 0 or 1). get_f is exact for
 * every float dtype and for integers up to 2^53 (u64 read as unsigned). get_i of a
 * narrower integer is its value (signed types sign-extended, unsigned zero-extended);
 * for u64 it is only the bit pattern (values >= 2^63 come back negative); floats are
 * truncated toward zero and saturated to int64, NaN -> 0. */
double kir_tensor_get_f(const kir_tensor *t, int64_t i);
int64_t kir_tensor_get_i(const kir_tensor *t, int64_t i);
/* Stores into element i. set_f: floats rounded to the dtype (f16/bf16 correctly rounded
 * from double, nearest even, overflow to inf); integers truncated toward zero and
 * saturated to the dtype's range, NaN -> 0; bool v != 0 (NaN -> 1). set_i: integers wrap
 * modulo 2^bits (v is a signed value or a bit pattern alike); floats get the signed value
 * v correctly rounded; bool v != 0. set_u: as set_i with v read as unsigned (a u64
 * source), which only matters for float targets. */
void kir_tensor_set_f(kir_tensor *t, int64_t i, double v);
void kir_tensor_set_i(kir_tensor *t, int64_t i, int64_t v);
void kir_tensor_set_u(kir_tensor *t, int64_t i, uint64_t v);

/* ---------------------------------------------------------------- dtype families */
/* floats: f16 bf16 f32 f64; integers: i8 i16 i32 i64 u8 u16 u32 u64; bool is neither. */
bool kir_dtype_is_float(kiln_dtype t);
bool kir_dtype_is_int(kiln_dtype t);
bool kir_dtype_is_unsigned(kiln_dtype t); /* u8 u16 u32 u64 */
int kir_dtype_bits(kiln_dtype t);         /* 8 * size; 0 for invalid */
/* Wraps v (a signed value or bit pattern) to integer dtype t: sign-extended for signed
 * types, zero-extended for unsigned ones; other dtypes: v unchanged. */
int64_t kir_int_wrap(kiln_dtype t, int64_t v);
/* IEEE binary16 / bfloat16 bit patterns <-> double. from_double rounds correctly (to
 * nearest, ties to even; overflow to inf; NaN to a quiet NaN of the same sign); to_double
 * is exact. */
uint16_t kir_f16_from_double(double v);
double kir_f16_to_double(uint16_t h);
uint16_t kir_bf16_from_double(double v);
double kir_bf16_to_double(uint16_t h);

/* ---------------------------------------------------------------- attributes ---- */
typedef enum kir_attr_kind {
  KIR_ATTR_INT = 1,
  KIR_ATTR_FLOAT = 2,
  KIR_ATTR_INTS = 3,
  KIR_ATTR_FLOATS = 4,
  KIR_ATTR_STRING = 5,
  KIR_ATTR_STRINGS = 6,
  KIR_ATTR_TENSOR = 7
} kir_attr_kind;

/* "int", "float", "ints", ... as in the ops.def schema; "?" for unknown. */
const char *kir_attr_kind_name(kir_attr_kind k);

typedef struct kir_attr {
  const char *name; /* arena */
  kir_attr_kind kind;
  union {
    int64_t i;
    double f;
    const char *s;
    struct { const int64_t *v; int32_t n; } ints;
    struct { const double *v; int32_t n; } floats;
    struct { const char *const *v; int32_t n; } strings;
    const kir_tensor *t; /* arena; data in arena too */
  } u;
} kir_attr;

/* ---------------------------------------------------------------- nodes, graphs - */
/* Fields in the order the sweeps of the passes read them: the first 64 bytes (one cache
 * line: nodes made by kir_node_add are 64-byte aligned) hold id, op, the inputs (up to
 * KIR_INLINE_INPUTS of them in the node itself), attributes, name, requested device,
 * dtype and rank. */
#define KIR_INLINE_INPUTS 2
typedef struct kir_node {
  int32_t id;      /* index in graph->nodes. Invariant after building, loading and every
                      pass: every input id is smaller than the node's id (topological) */
  kir_op op;
  int32_t n_inputs;
  int32_t n_attrs;
  int32_t *inputs;  /* node ids: inline_inputs or an arena array; NULL when none */
  kir_attr *attrs;  /* sorted by name, names unique; arena */
  const char *name; /* unique in the graph; arena */
  int32_t inline_inputs[KIR_INLINE_INPUTS]; /* where kir_node_add keeps a short input list */
  const char *device; /* requested device, "" if none (e.g. "cpu:0") */
  kir_type type;      /* the output's dtype and shape, set by kir_infer_node */
  const char *assigned_device;  /* set by the place pass; "" before */
  const char *placement_reason; /* set by the place pass; "" before */
} kir_node;

typedef struct kir_arena kir_arena;

typedef struct kir_graph {
  kir_arena *arena; /* names, attributes, tensors, strings */
  kir_arena *hot;   /* node structs with their names and input lists as kir_node_add made
                       them, apart from the rest: the sweeps passes make over every node
                       touch only these (on big graphs, half the bytes: they stay in cache
                       longer) */
  kir_node **nodes; /* n_nodes entries; array through kir_alloc, nodes in the arena */
  int32_t n_nodes;
  int32_t cap_nodes;
  struct kir_name_index *index; /* name -> id hash, kept by kir_node_add / compact */
  int32_t *tracked;  /* node ids kept current for a user (kir_graph_track); may be NULL */
  int32_t n_tracked;
  kiln_status status;  /* last error; KILN_OK after a success */
  char error[512];     /* message of the last error, "" if none */
} kir_graph;

/* NULL on OOM. */
kir_graph *kir_graph_create(void);
void kir_graph_destroy(kir_graph *g); /* accepts NULL */
/* Deep copy (including placement and types); NULL on OOM. */
kir_graph *kir_graph_clone(const kir_graph *g);
/* Moves src's contents into dst (dst's old contents freed) and destroys src. Passes that
 * rebuild a graph build a new one and swap it in with this. */
void kir_graph_swap_in(kir_graph *dst, kir_graph *src);

/* Records an error on g and returns s. Message is printf-formatted and cut to fit. */
kiln_status kir_seterr(kir_graph *g, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kir_clearerr(kir_graph *g);

/* Arena allocation owned by g (zeroed). NULL on OOM (error set on g). */
void *kir_graph_alloc(kir_graph *g, size_t n);
/* Copies s (or "" for NULL) into g's arena. NULL on OOM. */
const char *kir_graph_strdup(kir_graph *g, const char *s);

/* Appends a node. name and inputs are copied; attributes are added after. Checks only
 * what it must to stay memory-safe: name length, input ids in range, node count. The
 * output type is left invalid until kir_infer_node. NULL on error (set on g). */
kir_node *kir_node_add(kir_graph *g, kir_op op, const char *name,
                       const int32_t *inputs, int32_t n_inputs);
/* Removes the last node (and its name from the index) without allocating, so a builder
 * can roll back even when memory has run out. Its arena bytes stay until the graph
 * dies. No-op on an empty graph. */
void kir_graph_pop_node(kir_graph *g);
/* Node by name, NULL if absent. Hash lookup (graph->index). */
kir_node *kir_graph_find(const kir_graph *g, const char *name);

/* Attribute setters: copy the value into g's arena, replacing an attribute of the same
 * name, keeping attrs sorted. Return KILN_OK or KILN_ERR_NOMEM/LIMIT (set on g). */
kiln_status kir_attr_set_int(kir_graph *g, kir_node *n, const char *name, int64_t v);
kiln_status kir_attr_set_float(kir_graph *g, kir_node *n, const char *name, double v);
kiln_status kir_attr_set_ints(kir_graph *g, kir_node *n, const char *name, const int64_t *v, int32_t count);
kiln_status kir_attr_set_floats(kir_graph *g, kir_node *n, const char *name, const double *v, int32_t count);
kiln_status kir_attr_set_string(kir_graph *g, kir_node *n, const char *name, const char *v);
kiln_status kir_attr_set_strings(kir_graph *g, kir_node *n, const char *name, const char *const *v, int32_t count);
kiln_status kir_attr_set_tensor(kir_graph *g, kir_node *n, const char *name, const kir_tensor *t);
/* Copies every attribute of src onto dst (another node, maybe of another graph). */
kiln_status kir_attr_copy_all(kir_graph *g, kir_node *dst, const kir_node *src);

/* Getters: NULL / the default when absent or of another kind. */
const kir_attr *kir_attr_find(const kir_node *n, const char *name);
int64_t kir_attr_int(const kir_node *n, const char *name, int64_t dflt);
double kir_attr_float(const kir_node *n, const char *name, double dflt);
const int64_t *kir_attr_ints(const kir_node *n, const char *name, int32_t *count);
const double *kir_attr_floats(const kir_node *n, const char *name, int32_t *count);
const char *kir_attr_string(const kir_node *n, const char *name);
const char *const *kir_attr_strings(const kir_node *n, const char *name, int32_t *count);
const kir_tensor *kir_attr_tensor(const kir_node *n, const char *name);

/* Drops every node whose keep[id] is false (keep NULL: drops none) and puts the rest in
 * topological order, renumbering: nodes already in order keep it, and an input that comes
 * after its user (a node a pass appended) moves before its first user. Linear in
 * nodes plus edges; a graph already in order with nothing dropped is not touched. Errors
 * leave the graph unchanged: KILN_ERR_GRAPH for an input that is not a node or a cycle
 * (naming a node on it), KILN_ERR_INTERNAL for a kept node using a dropped one. Passes
 * that append and drop nodes call it once at the end. */
kiln_status kir_graph_sort_compact(kir_graph *g, const bool *keep);
/* Drops every node whose keep[id] is false and renumbers the rest, keeping their order
 * (no sort: for a graph in order, as every pass leaves it). Same errors, graph unchanged. */
kiln_status kir_graph_compact(kir_graph *g, const bool *keep);
/* kir_graph_sort_compact(g, NULL). */
kiln_status kir_graph_toposort(kir_graph *g);
/* Keeps a copy of these node ids current from now on: compaction and sorting renumber
 * them, and an entry whose node is dropped or popped becomes -1 (names never change, so an
 * entry that is not -1 still names the node it named). Replaces any earlier list; n = 0
 * clears it. A clone starts without one; swap_in(dst, src) leaves dst with src's (none
 * for a graph just built), and lookups then fall back to names. The pass manager tracks the roots this way,
 * so passes need not look each one up by name on every pass (several cache misses per
 * root on big graphs); kps_run replaces any list the caller set and clears it on return. KILN_ERR_NOMEM (the old list kept), KILN_ERR_ARGUMENT for an id
 * that is neither -1 nor a node. */
kiln_status kir_graph_track(kir_graph *g, const int32_t *ids, int32_t n);
/* Replaces every use of node `from` by node `to` in other nodes' inputs. */
void kir_graph_replace_uses(kir_graph *g, int32_t from, int32_t to);
/* Number of nodes that use node id as an input (counting repeats once per use). */
int32_t kir_graph_count_uses(const kir_graph *g, int32_t id);

/* ---------------------------------------------------------------- inference ----- */
/* Computes n->type from its inputs' types and attributes, checking arity, attribute
 * schema, dtypes and shapes. Errors name the node, the rule and the values, e.g.
 *   node 'layer1/add': inputs f32[64,100] and f32[3] do not broadcast
 * KILN_ERR_GRAPH / TYPE / SHAPE / LIMIT / OVERFLOW. */
kiln_status kir_infer_node(kir_graph *g, kir_node *n);
/* kir_infer_node over every node in order. */
kiln_status kir_infer_shapes(kir_graph *g);
/* Full check: op numbers valid, arity, attribute schema, names non-empty and unique,
 * inputs in range and topological (so no cycles), assign's first input is a variable,
 * no input is a no-output node except for group's inputs, the stored types equal what
 * inference computes. The message names the node and the rule it breaks. */
kiln_status kir_verify(kir_graph *g);

/* ---------------------------------------------------------------- fused epilogues */
/* Decoded epilogue of a fused node (see ops.def). Pointers alias the node's attrs. */
typedef struct kir_epilogue {
  int32_t n;
  const int64_t *op;      /* wire op of each step */
  const int64_t *operand; /* node input index of the second operand, or -1 */
  const int64_t *swap;
  const double *clamp_min;/* NaN: no bound */
  const double *clamp_max;
} kir_epilogue;
/* Reads and checks the epilogue attributes of n (counts equal, ops elementwise,
 * operands in range). KILN_ERR_GRAPH naming the node on a malformed epilogue. */
kiln_status kir_epilogue_get(kir_graph *g, const kir_node *n, kir_epilogue *e);
/* Applies one elementwise op (unary or binary) to doubles: the single definition of
 * elementwise semantics for floats, shared by the interpreter and constant folding.
 * For clamp, lo/hi are the bounds (NaN = none). */
double kir_apply_unary(kir_op op, double x, double lo, double hi);
double kir_apply_binary(kir_op op, double a, double b);

/* ---------------------------------------------------------------- interpreter --- */
/* Session state: variable values by node name. Owns its tensors. */
typedef struct kir_state kir_state;
kir_state *kir_state_create(void); /* NULL on OOM */
void kir_state_destroy(kir_state *s); /* accepts NULL */
/* NULL when the variable has no value yet. The pointer stays valid until the next set. */
const kir_tensor *kir_state_get(const kir_state *s, const char *name);
/* Stores a copy. KILN_ERR_NOMEM on OOM (state unchanged). */
kiln_status kir_state_set(kir_state *s, const char *name, const kir_tensor *value);

typedef struct kir_feed {
  int32_t node;             /* any node with an output; usually a placeholder */
  const kir_tensor *value;  /* borrowed; must match the node's dtype and shape */
} kir_feed;

/* Evaluates what fetches and targets need, in node order, with the reference kernels.
 * outputs[i] receives a new tensor for fetches[i] (caller frees with kir_tensor_free);
 * on error no output is set and nothing leaks. Feeds override any node's value.
 * A needed placeholder without a feed takes its `default` attribute, or, without one, is
 * KILN_ERR_FEED naming it; a feed of the wrong
 * dtype or shape is KILN_ERR_FEED naming node, expected and given types; reading a
 * variable without a value is KILN_ERR_STATE; integer division by zero is
 * KILN_ERR_EXEC. state may be NULL when no variable is reached. Errors set on g. */
kiln_status kir_interp_run(kir_graph *g, kir_state *state,
                           const kir_feed *feeds, int32_t n_feeds,
                           const int32_t *fetches, int32_t n_fetches,
                           const int32_t *targets, int32_t n_targets,
                           kir_tensor **outputs);
/* Evaluates one node with no state: inputs are the values of n->inputs in order.
 * *out receives a new tensor. Used by constant folding. Variables, assign,
 * placeholders: KILN_ERR_UNSUPPORTED. */
kiln_status kir_eval_node(kir_graph *g, const kir_node *n,
                          const kir_tensor *const *inputs, kir_tensor **out);

/* Deterministic generator for random_normal / random_uniform: the same seed gives the
 * same values on every machine and in every stage (interpreter, folding, codegen). */
void kir_random_fill(kir_tensor *t, kir_op op, uint64_t seed, double a, double b);

/* ---------------------------------------------------------------- serialization - */
#define KIR_FORMAT_MAJOR 1
#define KIR_FORMAT_MINOR 0

/* Serializes g (which must verify) to protobuf bytes. *buf through kir_alloc; the
 * caller frees it with kir_free. Deterministic: the same graph gives the same bytes. */
kiln_status kir_graph_to_bytes(kir_graph *g, uint8_t **buf, size_t *len);
/* Writes atomically: a temp file in the same directory, then rename. Nothing is left
 * behind on failure. KILN_ERR_IO / PATH naming the path. */
kiln_status kir_graph_save(kir_graph *g, const char *path);
/* Loads into g, which must be empty. Everything is validated before use (limits, op
 * numbers, attribute schema, dangling inputs, cycles, shapes): on error g stays empty
 * and holds the message (naming the file/node/field/value). Nodes may appear in any
 * order in the file; the loaded graph is in topological order. */
kiln_status kir_graph_from_bytes(kir_graph *g, const uint8_t *buf, size_t len);
kiln_status kir_graph_load(kir_graph *g, const char *path);

/* ---------------------------------------------------------------- printing ------ */
/* The canonical text form (below) with constants of more than KIR_TEXT_ELIDE_ABOVE
 * elements elided to a hash, one node a line:
 *   %3 "layer1/mm" = matmul(%1, %2) {transpose_a = 0} : f32[64,100] @ "cpu:0" */
void kir_graph_print(const kir_graph *g, FILE *out);
/* The canonical text form (grammar at the top of kir_text.c): a header line
 * "kiln.graph 1.0", then one node a line in id order, attributes sorted, floats exact.
 * kir_graph_print above writes this form with large constants elided. */
#define KIR_TEXT_HEADER "kiln.graph"
#define KIR_TEXT_ELIDE_ABOVE 16 /* constants with more elements are elided to a hash */
typedef struct kir_print_options {
  bool full_constants; /* print every element (parseable); false: elide big constants */
} kir_print_options;
/* Writes the text form to out (opt NULL = elided). KILN_ERR_IO when a write fails,
 * KILN_ERR_NOMEM on OOM; no message (g is const). */
kiln_status kir_graph_print_text(const kir_graph *g, FILE *out, const kir_print_options *opt);
/* The text form in a new NUL-terminated buffer (*len excludes the NUL) through
 * kir_alloc; the caller frees it with kir_free. Errors set on g. */
kiln_status kir_graph_to_text(kir_graph *g, char **out, size_t *len, bool full_constants);
/* Parses the text form into g, which must be empty, then infers shapes and verifies;
 * a stated type must equal the inferred one. Errors name filename:line:column and what
 * was expected; on error g stays empty and holds the message. Elided constants are
 * refused (KILN_ERR_FORMAT). filename may be NULL ("<text>"). */
kiln_status kir_graph_parse_text(kir_graph *g, const char *text, size_t len,
                                 const char *filename);
/* Loads a .kiln file of either form: the text header (after blank and '#' lines within
 * the first 4 KiB) selects the text parser, anything else kir_graph_load. */
kiln_status kir_graph_load_any(kir_graph *g, const char *path);
/* Writes the name with non-printable bytes, quotes and backslashes escaped as \xNN,
 * cut to 64 bytes (plus "..."), into buf. For messages. */
const char *kir_escape(const char *s, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
