/*
 * range_identity.h: a name for the bytes of a frozen range, given only when
 * the runtime can prove what they are, so that a backend may keep one
 * device copy for every actor that froze the same bytes (docs/CUDA.md).
 *
 * An identity names "bytes [offset, offset + len) of the granted file with
 * this device, inode, size, mtime and ctime". It is keyed on the file, not
 * on a hash of its content: sp_hash64 detects accidents, not forgeries, and
 * granted files are untrusted (SECURITY.md), so a content key would let a
 * tenant whose file collides with another's model plant its bytes in the
 * other tenant's actors. Two grants of the same file (the common case: one
 * model, many actors, restores) get the same identity; two copies of one
 * model in different files do not, and simply are not shared.
 *
 * 0 means "unknown": the backend then makes a private copy, as always.
 */
#ifndef SP_RANGE_IDENTITY_H
#define SP_RANGE_IDENTITY_H

#include <stdint.h>

#include "runtime/blob.h"
#include "core/region.h"

/* The identity of bytes [file_offset, file_offset + len) of a granted file,
 * or 0 when the range is empty, lies outside the file, or the file is no
 * longer the one opened (fstat differs: it was rewritten or replaced). The
 * caller vouches that the bytes it names are the file's. One fstat. */
uint64_t sp_blob_bytes_identity(const sp_blob *blob, uint64_t file_offset, uint64_t len);

/* The identity of guest bytes [addr, addr + len) when they lie inside one
 * recorded blob range (blob_map or a whole-file blob_read) and still equal
 * the file's bytes, else 0. The proof costs, for a mapped range, 8 bytes of
 * /proc/self/pagemap per host page (no page was written: none is private);
 * for a range that was read into anonymous memory (every backend that
 * cannot map files, CUDA), one comparison of the bytes with the file. */
uint64_t sp_range_identity(const sp_blob_table *table, const sp_region *region, uint64_t addr, uint64_t len);

/* For each command of a validated list, the identity of the weights of a
 * product (src[0] of SP_OP_MATMUL, its whole extent) when they lie inside
 * one mapped blob range that no page of has been written, mixed with the
 * weight's type and row stride; else 0 (not a product, not mapped, read
 * into anonymous memory, written, or the file replaced). Cross-actor
 * batching (batcher.h) lets actors with equal nonzero keys share one read
 * of the weights. Each mapped range touched is proven once per call (its
 * pages in /proc/self/pagemap, read from pagemap_fd; -1 proves nothing). */
void sp_list_weight_identities(const sp_blob_table *table, const sp_region *region, int pagemap_fd,
                               const sp_cmd *cmds, uint32_t count, uint64_t *keys);

#endif
