/*
 * annotations.h: tensors a guest names for the host's tools.
 *
 * The host stays model-agnostic: it does not know where a guest keeps its
 * KV cache. A guest may name tensors in its memory ("blk.3.k_cache",
 * "kv.n_past") with the `annotate` import; snapshots carry the names, and
 * tools such as `samepage kv export` find the bytes through them.
 *
 *  1. `i32 annotate(i32 name_addr, i32 name_len, i32 tensor_addr)`: copies
 *     the sp_tensor at tensor_addr under the name (1..64 bytes of
 *     [A-Za-z0-9._-]); the tensor must lie in committed memory. Naming a
 *     tensor again replaces it. At most SP_MAX_ANNOTATIONS names.
 */
#ifndef SP_ANNOTATIONS_H
#define SP_ANNOTATIONS_H

#include <stdint.h>

#include "samepage_abi.h"

#define SP_MAX_ANNOTATIONS 1024
#define SP_ANNOTATION_NAME_MAX 64

typedef struct sp_annotation {
  char name[SP_ANNOTATION_NAME_MAX + 1];
  sp_tensor tensor; /* normalized strides */
} sp_annotation;

typedef struct sp_annotation_table {
  sp_annotation *items;
  uint32_t count, cap;
} sp_annotation_table;

/* Finds a name, or NULL. */
const sp_annotation *sp_annotation_find(const sp_annotation_table *t, const char *name);

void sp_annotation_table_free(sp_annotation_table *t);

#endif
