/*
 * blob.h: files the user granted to an actor, as capabilities.
 *
 * The user grants files by name on the command line (`--model F` grants F
 * as "model"). The guest asks for a grant by that name and gets a small
 * integer handle; it never sees or names a host path. With a handle it can
 * read bytes into its memory, or map the file into its memory: the pages
 * then come straight from the OS page cache (copy-on-write), which is how
 * weights reach linear memory without a copy.
 */
#ifndef SP_BLOB_H
#define SP_BLOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/region.h"
#include "samepage.h"

/* The alignment blob_map needs for guest addresses and file offsets: one
 * wasm page, a multiple of every host page size we run on. */
#define SP_BLOB_MAP_ALIGN ((uint64_t)64 << 10)

typedef struct sp_blob {
  char *name;     /* the grant's name, e.g. "model" */
  int fd;         /* opened read-only when the actor was created */
  uint64_t size;  /* size when opened */
  uint64_t dev, ino, mtime_ns; /* identity, for snapshots by reference and shared device copies */
  uint64_t ctime_ns;           /* with size and mtime_ns: the last state we trust */
  uint64_t content_hash;       /* sp_hash64 of the whole file, once known */
  bool hashed;
  bool rewritten;              /* modified on disk under us: sticky (sp_blob_content_hash) */
} sp_blob;

/* A file range mapped into linear memory (immutable from the guest's view). */
typedef struct sp_blob_mapping {
  int handle;
  uint64_t file_offset, length, guest_addr;
  bool read; /* the bytes were read into anonymous memory, not mapped (a
                backend that cannot map files); snapshots still reference
                them when they still equal the file */
} sp_blob_mapping;

typedef struct sp_blob_table {
  sp_blob *blobs;
  int count;
  sp_blob_mapping *maps;
  int n_maps, maps_cap;
  atomic_int changed; /* handle + 1 of a mapped file that shrank under us (fault_guard.h), else 0 */
} sp_blob_table;

/* Opens every grant: regular, non-empty files only, never blocking
 * (file_open.h); errors name the grant, the path and the cause ("model:
 * /tmp/f: is a FIFO, not a regular file"). */
sp_error_t *sp_blob_table_open(sp_blob_table *table, const sp_blob_grant *grants, int n);
void sp_blob_table_close(sp_blob_table *table);

/* The content hash of a grant (computed once, then cached), for snapshots
 * by reference and their restores. First it checks the file was not
 * modified since it was opened (or last verified): size, mtime and ctime
 * from fstat of our descriptor. If they changed and a hash is known, the
 * file is hashed again: the same content (a touch, a rename over the path,
 * the same bytes rewritten) is accepted; other content is an error. If
 * they changed before any hash was taken, nothing can tell what the actor
 * saw, and that is an error too. Both errors are sticky for this grant and
 * say that the actor may hold a mix of old and new bytes. */
sp_error_t *sp_blob_content_hash(sp_blob *blob, uint64_t *out);

/* The handle of grant `name` (length-delimited), or SP_E_PARAM when none. */
int32_t sp_blob_find(const sp_blob_table *table, const char *name, size_t len);

/* Reads len bytes at file offset `offset` into region bytes [addr, addr+len).
 * Returns the bytes read (short at EOF) or a negative sp_status with a
 * message in msg. */
int64_t sp_blob_read(sp_blob_table *table, sp_region *region, int32_t handle, uint64_t offset,
                     uint64_t addr, uint64_t len, char *msg, size_t cap);

/* Whether a mapped grant changed on disk while mapped (a SIGBUS the fault
 * guard repaired with zeros): then writes "the granted file "NAME" changed
 * on disk while mapped" into msg and returns true. Sticky for the actor. */
bool sp_blob_changed(const sp_blob_table *table, char *msg, size_t cap);

/* Whether a mapped grant is now shorter than what is mapped of it (it
 * shrank on disk; a worker process read zeros there, worker.h): then marks
 * it changed, as the fault guard would. One fstat per mapping. */
bool sp_blob_recheck_sizes(sp_blob_table *table);

/* The checks of sp_blob_map alone: SP_OK, or the status and message it
 * would give (a backend that cannot map files still names bad arguments). */
int32_t sp_blob_map_check(sp_blob_table *table, const sp_region *region, int32_t handle, uint64_t offset,
                          uint64_t addr, uint64_t len, char *msg, size_t cap);

/* Maps [offset, offset+len) of the file at region address addr (both
 * SP_BLOB_MAP_ALIGN-aligned, inside committed memory and inside the file),
 * guarded against the file shrinking (fault_guard.h) before it is mapped;
 * it replaces the mappings (and their guards and records) it covers
 * wholly. Returns SP_OK or a negative sp_status with a message: SP_E_LIMIT
 * (nothing changed) when the actor already holds SP_FAULT_GUARD_PER_OWNER
 * guarded mappings or the process has no guard set left. */
int32_t sp_blob_map(sp_blob_table *table, sp_region *region, int32_t handle, uint64_t offset,
                    uint64_t addr, uint64_t len, char *msg, size_t cap);

/* Replaces mapping m's pages with zeroed anonymous memory (its SIGBUS
 * guard goes too: anonymous memory cannot shrink under us). The mapping's
 * record is left to the caller. false (errno set) when mmap fails. */
bool sp_blob_unmap(sp_blob_table *table, sp_region *region, const sp_blob_mapping *m);

#endif
