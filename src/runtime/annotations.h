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
 *     [A-Za-z0-9._-], no NUL); the tensor passes the checks of a
 *     command's destination: in committed memory (bounds, dtype,
 *     alignment) and rows that do not overlap (tools write annotated
 *     tensors: `kv import`). Naming a tensor again replaces it. At most
 *     SP_MAX_ANNOTATIONS names.
 *
 * A snapshot's annotations pass the same checks against the snapshot's
 * memory when it is read (snapshot_read.c), and their names must be
 * distinct, before any restore or tool uses them.
 */
#ifndef SP_ANNOTATIONS_H
#define SP_ANNOTATIONS_H

#include <stdbool.h>
#include <stddef.h>
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

/* Whether name[0, len) is a valid annotation name: 1..SP_ANNOTATION_NAME_MAX
 * bytes of [A-Za-z0-9._-] (so never a NUL). */
bool sp_annotation_name_valid(const char *name, size_t len);

/* The checks every annotated tensor passes, live (annotate) or restored:
 * those of a command's tensor against `memory` committed bytes (dtype,
 * alignment, bounds computed in 64 bits; strides normalized in place), and
 * rows that do not overlap. SP_OK, or a status with a message naming the
 * field in msg ("tensor: offset 0x... + N bytes is outside ..."). */
sp_status sp_annotation_check_tensor(uint64_t memory, sp_tensor *t, char *msg, size_t cap);

#endif
