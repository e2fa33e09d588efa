/* range_identity.c: proved names for frozen bytes (see range_identity.h). */
#include "runtime/range_identity.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash64.h"
#include "core/validate.h"
#include "core/written_pages.h"
#include "snapshot/snapshot.h"

/* Distinguishes these identities from any other use of sp_hash64. */
#define IDENTITY_SEED 0x73702d66696c6521ull /* "sp-file!" */
#define COMPARE_CHUNK ((size_t)1 << 20)

static bool same_file_as_opened(const sp_blob *blob) {
  struct stat st;
  if (blob->fd < 0 || fstat(blob->fd, &st)) return false;
  uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
  uint64_t ctime = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
  return (uint64_t)st.st_dev == blob->dev && (uint64_t)st.st_ino == blob->ino && (uint64_t)st.st_size == blob->size &&
         mtime == blob->mtime_ns && ctime == blob->ctime_ns;
}

uint64_t sp_blob_bytes_identity(const sp_blob *blob, uint64_t file_offset, uint64_t len) {
  if (len == 0 || file_offset > blob->size || len > blob->size - file_offset) return 0;
  if (!same_file_as_opened(blob)) return 0;
  uint64_t fields[7] = {blob->dev, blob->ino, blob->size, blob->mtime_ns, blob->ctime_ns, file_offset, len};
  sp_hash64 h;
  sp_hash64_init(&h, IDENTITY_SEED);
  sp_hash64_update(&h, fields, sizeof fields);
  uint64_t id = sp_hash64_final(&h);
  return id ? id : 1; /* 0 is reserved for "unknown" */
}

/* Whether bytes equal the file's bytes at file_offset (read in chunks, so
 * that a file that shrank is a short read, never a SIGBUS). */
static bool equal_to_file(int fd, uint64_t file_offset, const uint8_t *bytes, uint64_t len) {
  uint8_t *buf = malloc(COMPARE_CHUNK);
  bool equal = buf != NULL;
  for (uint64_t done = 0; equal && done < len;) {
    size_t want = len - done < COMPARE_CHUNK ? (size_t)(len - done) : COMPARE_CHUNK;
    ssize_t got = pread(fd, buf, want, (off_t)(file_offset + done));
    if (got < 0 && errno == EINTR) continue;
    equal = got > 0 && !memcmp(buf, bytes + done, (size_t)got);
    done += got > 0 ? (uint64_t)got : 0;
  }
  free(buf);
  return equal;
}

/* The most recent recorded blob range touching [addr, addr + len), if it
 * holds all of it. A later range over part of it (another file mapped into
 * the middle) makes the bytes unknown: the pagemap says "file page", not
 * which file. */
static const sp_blob_mapping *covering_map(const sp_blob_table *table, uint64_t addr, uint64_t len) {
  for (int i = table->n_maps - 1; i >= 0; i--) {
    const sp_blob_mapping *m = &table->maps[i];
    if (addr >= m->guest_addr + m->length || m->guest_addr >= addr + len) continue;
    return addr >= m->guest_addr && addr + len <= m->guest_addr + m->length ? m : NULL;
  }
  return NULL;
}

/* Whether no host page of a mapped range holds private (written) data. */
static bool mapping_untouched(const sp_region *region, uint64_t addr, uint64_t len) {
  int pagemap = sp_pagemap_open();
  bool modified = sp_written_any(pagemap, region->base, addr, len); /* true without a pagemap */
  if (pagemap >= 0) close(pagemap);
  return !modified;
}

uint64_t sp_range_identity(const sp_blob_table *table, const sp_region *region, uint64_t addr, uint64_t len) {
  char ignored[8];
  if (len == 0 || addr > region->committed || len > region->committed - addr) return 0;
  if (sp_blob_changed(table, ignored, sizeof ignored)) return 0;
  const sp_blob_mapping *m = covering_map(table, addr, len);
  if (!m || m->handle < 0 || m->handle >= table->count) return 0;
  const sp_blob *blob = &table->blobs[m->handle];
  uint64_t file_offset = m->file_offset + (addr - m->guest_addr);
  bool proved = m->read ? equal_to_file(blob->fd, file_offset, region->base + addr, len)
                        : mapping_untouched(region, addr, len);
  return proved ? sp_blob_bytes_identity(blob, file_offset, len) : 0;
}

/* A mapped range's proof, made once per list. */
typedef struct map_proof {
  const sp_blob_mapping *map;
  uint64_t identity; /* of the whole range; 0: not proven */
} map_proof;

static uint64_t prove_map(const sp_blob_table *table, const sp_region *region, int pagemap_fd,
                          const sp_blob_mapping *m) {
  if (m->read || m->handle < 0 || m->handle >= table->count) return 0;
  if (sp_written_any(pagemap_fd, region->base, m->guest_addr, m->length)) return 0;
  return sp_blob_bytes_identity(&table->blobs[m->handle], m->file_offset, m->length);
}

void sp_list_weight_identities(const sp_blob_table *table, const sp_region *region, int pagemap_fd,
                               const sp_cmd *cmds, uint32_t count, uint64_t *keys) {
  map_proof proofs[16];
  int n_proofs = 0;
  char ignored[8];
  bool changed = sp_blob_changed(table, ignored, sizeof ignored);
  for (uint32_t i = 0; i < count; i++) {
    keys[i] = 0;
    const sp_tensor *w = &cmds[i].src[0];
    if (changed || cmds[i].op != SP_OP_MATMUL) continue;
    uint64_t len = sp_tensor_extent(w);
    if (len == 0 || w->offset > region->committed || len > region->committed - w->offset) continue;
    const sp_blob_mapping *m = covering_map(table, w->offset, len);
    if (!m) continue;
    int p = 0;
    while (p < n_proofs && proofs[p].map != m) p++;
    if (p == n_proofs) {
      if (n_proofs == (int)(sizeof proofs / sizeof proofs[0])) continue; /* more ranges than we track: unproven */
      proofs[n_proofs++] = (map_proof){m, prove_map(table, region, pagemap_fd, m)};
    }
    if (!proofs[p].identity) continue;
    uint64_t parts[5] = {proofs[p].identity, w->offset - m->guest_addr, len, w->dtype, w->nb[0]};
    keys[i] = sp_hash64_of(parts, sizeof parts) | 1;
  }
}
