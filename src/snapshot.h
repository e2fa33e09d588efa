/*
 * snapshot.h (private): helpers shared by the snapshot writer and reader.
 */
#ifndef SP_SNAPSHOT_H
#define SP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime_impl.h"

/* Whether any host page of [addr, addr+len) in the region holds private
 * (copy-on-write) data rather than the mapped file's: the guest wrote it.
 * Reads /proc/self/pagemap; when that is unavailable, answers true (the
 * page is then stored, which is always correct). */
bool sp_snap_range_modified(const sp_region *region, uint64_t addr, uint64_t len);

/* Whether a 64 KiB page of memory is all zero. */
bool sp_snap_page_is_zero(const uint8_t *page);

#endif
