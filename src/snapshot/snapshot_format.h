/*
 * snapshot_format.h: the on-disk layout of an actor snapshot, version 1.
 * Every integer is little-endian. docs/SNAPSHOT.md explains the why.
 *
 *  1. Header, 32 bytes: magic "SPSNAP01", u32 version (1), u32 flags
 *     (bit 0: self-contained), u64 chunk count, u64 hash of the first 24
 *     bytes.
 *  2. Chunks, each: u32 type, u32 reserved (0), u64 payload length, u64
 *     payload hash (sp_hash64), then the payload.
 *  3. Chunk types:
 *     MODULE  u64 module hash, u64 module length
 *     MEMORY  u64 committed bytes (a multiple of 64 KiB)
 *     GLOBALS u32 count; per global: u16 name length, name, u8 kind
 *             (0 i32, 1 i64, 2 f32, 3 f64), u64 bits
 *     BLOB    a file range mapped into memory, stored by reference:
 *             u16 name length, name, u64 file size, u64 content hash,
 *             u64 file offset, u64 guest address, u64 length
 *     BLOB_READ  as BLOB, for a range that was read (not mapped) from the
 *             file and still equals it; restored by mapping or reading
 *     FROZEN  u32 count; per range: u64 guest address, u64 length
 *     LOCAL   the device-local ranges, as FROZEN; restoring declares them
 *             again (their mirrors then hold the restored bytes)
 *     PAGES   u64 first 64 KiB page, u32 page count, the pages' bytes
 *     ANNOT   u32 count; per entry: u16 name length, name, sp_tensor (40
 *             bytes): the tensors the guest named with `annotate`
 *     END     empty; must be last
 *     Each type but BLOB, BLOB_READ and PAGES appears at most once.
 *     FROZEN and LOCAL ranges are non-empty, inside MEMORY, and overlap no
 *     other range of either kind; ANNOT names are valid and distinct and
 *     each tensor passes annotate's checks against MEMORY (annotations.h).
 *  4. Memory is sparse: all-zero pages are not stored, nor pages of a
 *     BLOB range that still hold the file's bytes (unless self-contained).
 *     Restoring zeroes memory, maps the BLOB ranges, then writes PAGES.
 */
#ifndef SP_SNAPSHOT_FORMAT_H
#define SP_SNAPSHOT_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/hash64.h"

#define SP_SNAP_MAGIC "SPSNAP01"
#define SP_SNAP_VERSION 1u
#define SP_SNAP_FLAG_SELF_CONTAINED 1u
#define SP_SNAP_PAGE ((uint64_t)64 << 10)

enum sp_snap_chunk {
  SP_SNAP_MODULE = 1,
  SP_SNAP_MEMORY = 2,
  SP_SNAP_GLOBALS = 3,
  SP_SNAP_BLOB = 4,
  SP_SNAP_FROZEN = 5,
  SP_SNAP_PAGES = 6,
  SP_SNAP_END = 7,
  SP_SNAP_ANNOT = 8,
  SP_SNAP_BLOB_READ = 9,
  SP_SNAP_LOCAL = 10,
};

typedef struct sp_snap_header {
  char magic[8];
  uint32_t version;
  uint32_t flags;
  uint64_t n_chunks;
  uint64_t hash; /* sp_hash64 of the 24 bytes above */
} sp_snap_header;

typedef struct sp_snap_chunk_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t length;
  uint64_t hash;
} sp_snap_chunk_header;

_Static_assert(sizeof(sp_snap_header) == 32, "snapshot header is 32 bytes");
_Static_assert(sizeof(sp_snap_chunk_header) == 24, "chunk header is 24 bytes");

/* For tests and fuzzers that corrupt a snapshot image on purpose: recomputes
 * the header checksum and every checksum the chunk headers make reachable,
 * so the corruption reaches the parser instead of the checksum check. */
static inline void sp_snap_reseal(uint8_t *d, size_t n) {
  if (n < sizeof(sp_snap_header)) return;
  sp_snap_header hdr;
  memcpy(&hdr, d, sizeof hdr);
  hdr.hash = sp_hash64_of(&hdr, 24);
  memcpy(d, &hdr, sizeof hdr);
  for (size_t at = sizeof hdr; at + sizeof(sp_snap_chunk_header) <= n;) {
    sp_snap_chunk_header ch;
    memcpy(&ch, d + at, sizeof ch);
    size_t body = at + sizeof ch;
    if (ch.length > n - body) break;
    ch.hash = sp_hash64_of(d + body, (size_t)ch.length);
    memcpy(d + at, &ch, sizeof ch);
    at = body + (size_t)ch.length;
  }
}

#endif
