/* kir_internal.h — helpers shared by the files of ir/ only (schema checks, arity,
 * node-named errors). Never included outside ir/; hidden from the library's users. */
#ifndef KIR_INTERNAL_H
#define KIR_INTERNAL_H

#include "kir.h"

#define KIR_HIDDEN __attribute__((visibility("hidden")))

/* Buffer size that always holds kir_escape's output (64 bytes escaped 4x, "...", NUL). */
#define KIR_ESC_BUF 272

/* Sets "node 'NAME': <message>" on g (name escaped) and returns s. */
KIR_HIDDEN kiln_status kir_node_err(kir_graph *g, const kir_node *n, kiln_status s,
                                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* KILN_ERR_GRAPH unless n->op is a valid op and n->n_inputs fits its arity. */
KIR_HIDDEN kiln_status kir_check_arity(kir_graph *g, const kir_node *n);
/* KILN_ERR_GRAPH on an unknown, missing or mistyped attribute (ops.def schema). */
KIR_HIDDEN kiln_status kir_check_schema(kir_graph *g, const kir_node *n);

/* The kind of attribute `name` in op's ops.def schema, 0 when the schema has none
 * (kir_ops.c, from the parsed schemas; used by the text printer and parser). */
KIR_HIDDEN int kir_schema_kind(kir_op op, const char *name);

/* A binary min-heap of ids in h[0..*n): the loader's Kahn sort (kir_serialize.c) takes
 * the smallest ready id, so nodes already in order keep their order. (kir_graph_toposort
 * no longer uses it: a depth-first order needs no heap.) */
KIR_HIDDEN void kir_heap_push(int32_t *h, int32_t *n, int32_t v);
KIR_HIDDEN int32_t kir_heap_pop(int32_t *h, int32_t *n);

#endif
