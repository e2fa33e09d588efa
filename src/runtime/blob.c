/* blob.c: granted files, read or mapped into an actor's region. */
#include "runtime/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fault_guard.h"
#include "core/file_open.h"
#include "core/hash64.h"

static uint64_t ns_of(struct timespec t) { return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec; }

static sp_error_t *open_one(sp_blob *blob, const sp_blob_grant *grant) {
  if (!grant->name || !grant->name[0] || !grant->path)
    return sp_error_new("a file grant needs a name and a path");
  /* Regular files only, opened without blocking (a FIFO would hang the
   * host); an empty one gives the guest nothing to map or read, and is
   * what /proc files look like (size 0). */
  struct stat st;
  sp_error_t *err = sp_open_regular(grant->path, SP_OPEN_NONEMPTY, &blob->fd, &st);
  if (err) return sp_error_wrap(err, "%s", grant->name);
  blob->name = strdup(grant->name);
  if (!blob->name) return sp_error_new("out of memory");
  blob->size = (uint64_t)st.st_size;
  blob->dev = (uint64_t)st.st_dev;
  blob->ino = (uint64_t)st.st_ino;
  blob->mtime_ns = ns_of(st.st_mtim);
  blob->ctime_ns = ns_of(st.st_ctim);
  return NULL;
}

sp_error_t *sp_blob_table_open(sp_blob_table *table, const sp_blob_grant *grants, int n) {
  memset(table, 0, sizeof *table);
  if (n <= 0) return NULL;
  table->blobs = calloc((size_t)n, sizeof *table->blobs);
  if (!table->blobs) return sp_error_new("out of memory");
  for (int i = 0; i < n; i++) table->blobs[i].fd = -1;
  table->count = n;
  for (int i = 0; i < n; i++) {
    sp_error_t *err = open_one(&table->blobs[i], &grants[i]);
    if (err) {
      sp_blob_table_close(table);
      return err;
    }
  }
  return NULL;
}

void sp_blob_table_close(sp_blob_table *table) {
  sp_fault_guard_remove_owner(table);
  for (int i = 0; i < table->count; i++) {
    if (table->blobs[i].fd >= 0) close(table->blobs[i].fd);
    free(table->blobs[i].name);
  }
  free(table->blobs);
  free(table->maps);
  memset(table, 0, sizeof *table);
}

/* Hashes the whole file as it is now, guarded against it shrinking. */
static sp_error_t *hash_now(sp_blob *blob, uint64_t size, uint64_t *out) {
  void *data = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, blob->fd, 0) : NULL;
  if (size && data == MAP_FAILED) return sp_error_new("%s: cannot read it to hash: %s", blob->name, strerror(errno));
  /* A file truncated while we hash it must not SIGBUS the host: no guard,
   * no hash. */
  atomic_int shrank = 0;
  sp_error_t *err = data ? sp_fault_guard_replace(blob, data, size, &shrank, 1) : NULL;
  if (err) {
    munmap(data, size);
    return sp_error_wrap(err, "%s: cannot hash it", blob->name);
  }
  *out = sp_hash64_of(data, size);
  if (data) sp_fault_guard_remove_owner(blob);
  if (data) munmap(data, size);
  if (atomic_load(&shrank))
    return sp_error_new("the granted file \"%s\" changed on disk while it was being hashed", blob->name);
  return NULL;
}

static sp_error_t *rewritten_error(const sp_blob *blob, const char *how) {
  return sp_error_new("the granted file \"%s\" was modified on disk after the actor opened it (%s); the guest "
                      "may hold a mix of old and new bytes, so it cannot be snapshotted or restored by "
                      "reference: start a new actor, and do not rewrite granted files in place",
                      blob->name, how);
}

/* Checks the file against the state we trust (see blob.h), re-hashing it
 * when its metadata moved. */
static sp_error_t *verify_unchanged(sp_blob *blob) {
  if (blob->rewritten) return rewritten_error(blob, "found earlier");
  struct stat st;
  if (fstat(blob->fd, &st)) return sp_error_new("%s: cannot stat it: %s", blob->name, strerror(errno));
  uint64_t size = (uint64_t)st.st_size, mtime = ns_of(st.st_mtim), ctime = ns_of(st.st_ctim);
  if (size == blob->size && mtime == blob->mtime_ns && ctime == blob->ctime_ns) return NULL;
  char how[96];
  snprintf(how, sizeof how, "%s%s", size != blob->size ? "its size changed" : "same size, new modification time",
           blob->hashed ? " and different content" : ", before its content was ever hashed");
  uint64_t hash = 0;
  if (blob->hashed) {
    sp_error_t *err = hash_now(blob, size, &hash);
    if (err) return err;
    if (size == blob->size && hash == blob->content_hash) {
      blob->mtime_ns = mtime, blob->ctime_ns = ctime; /* same bytes: trust the new state */
      return NULL;
    }
  }
  blob->rewritten = true;
  return rewritten_error(blob, how);
}

sp_error_t *sp_blob_content_hash(sp_blob *blob, uint64_t *out) {
  sp_error_t *err = verify_unchanged(blob);
  if (err) return err;
  if (!blob->hashed) {
    err = hash_now(blob, blob->size, &blob->content_hash);
    if (err) return err;
    blob->hashed = true;
  }
  *out = blob->content_hash;
  return NULL;
}

int32_t sp_blob_find(const sp_blob_table *table, const char *name, size_t len) {
  for (int i = 0; i < table->count; i++)
    if (strlen(table->blobs[i].name) == len && !memcmp(table->blobs[i].name, name, len)) return i;
  return SP_E_PARAM;
}

static sp_blob *get_blob(sp_blob_table *table, int32_t handle, char *msg, size_t cap) {
  if (handle < 0 || handle >= table->count) {
    snprintf(msg, cap, "blob handle %" PRId32 " was never granted", handle);
    return NULL;
  }
  return &table->blobs[handle];
}

static bool in_memory(const sp_region *region, uint64_t addr, uint64_t len) {
  return addr <= region->committed && len <= region->committed - addr;
}

static void remember_mapping(sp_blob_table *table, sp_blob_mapping map);
static void forget_mappings_inside(sp_blob_table *table, uint64_t addr, uint64_t len);

int64_t sp_blob_read(sp_blob_table *table, sp_region *region, int32_t handle, uint64_t offset,
                     uint64_t addr, uint64_t len, char *msg, size_t cap) {
  sp_blob *blob = get_blob(table, handle, msg, cap);
  if (!blob) return SP_E_PARAM;
  if (!in_memory(region, addr, len)) {
    snprintf(msg, cap, "blob_read: [0x%" PRIx64 ", +%" PRIu64 ") is outside committed memory", addr, len);
    return SP_E_BOUNDS;
  }
  if (offset >= blob->size) return 0;
  if (len > blob->size - offset) len = blob->size - offset;
  uint64_t done = 0;
  while (done < len) {
    ssize_t got = pread(blob->fd, region->base + addr + done, len - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    done += (uint64_t)got;
  }
  /* A whole file read at a page boundary is how a guest loads weights when
   * the backend cannot map files: remember it, so a snapshot can refer to
   * the file instead of copying it. */
  if (offset == 0 && done == blob->size && done && addr % SP_BLOB_MAP_ALIGN == 0)
    remember_mapping(table, (sp_blob_mapping){handle, 0, done, addr, true});
  return (int64_t)done;
}

/* Drops the records of mappings lying wholly inside guest bytes [addr,
 * addr + len): a new mapping there replaced them (their guards went in
 * sp_fault_guard_replace), so the records stay as bounded as the guards. */
static void forget_mappings_inside(sp_blob_table *table, uint64_t addr, uint64_t len) {
  size_t page = sp_page_size();
  int kept = 0;
  for (int i = 0; i < table->n_maps; i++) {
    const sp_blob_mapping *m = &table->maps[i];
    uint64_t end = m->guest_addr + (m->length + page - 1) / page * page;
    if (m->guest_addr >= addr && end <= addr + len) continue;
    table->maps[kept++] = *m;
  }
  table->n_maps = kept;
}

static void remember_mapping(sp_blob_table *table, sp_blob_mapping map) {
  if (table->n_maps == table->maps_cap) {
    int cap = table->maps_cap ? table->maps_cap * 2 : 8;
    sp_blob_mapping *grown = realloc(table->maps, (size_t)cap * sizeof *grown);
    if (!grown) return; /* bookkeeping only: the mapping itself stands */
    table->maps = grown;
    table->maps_cap = cap;
  }
  table->maps[table->n_maps++] = map;
}

int32_t sp_blob_map_check(sp_blob_table *table, const sp_region *region, int32_t handle, uint64_t offset,
                          uint64_t addr, uint64_t len, char *msg, size_t cap) {
  sp_blob *blob = get_blob(table, handle, msg, cap);
  if (!blob) return SP_E_PARAM;
  if (offset % SP_BLOB_MAP_ALIGN || addr % SP_BLOB_MAP_ALIGN) {
    snprintf(msg, cap, "blob_map: offset 0x%" PRIx64 " and address 0x%" PRIx64 " must be 64 KiB aligned",
             offset, addr);
    return SP_E_ALIGN;
  }
  if (len == 0 || offset > blob->size || len > blob->size - offset) {
    snprintf(msg, cap, "blob_map: [%" PRIu64 ", +%" PRIu64 ") is not inside the %" PRIu64 "-byte file",
             offset, len, blob->size);
    return SP_E_BOUNDS;
  }
  uint64_t span = (len + SP_BLOB_MAP_ALIGN - 1) / SP_BLOB_MAP_ALIGN * SP_BLOB_MAP_ALIGN;
  if (!in_memory(region, addr, span)) {
    snprintf(msg, cap, "blob_map: [0x%" PRIx64 ", +%" PRIu64 ") is outside committed memory", addr, span);
    return SP_E_BOUNDS;
  }
  return SP_OK;
}

int32_t sp_blob_map(sp_blob_table *table, sp_region *region, int32_t handle, uint64_t offset,
                    uint64_t addr, uint64_t len, char *msg, size_t cap) {
  int32_t st = sp_blob_map_check(table, region, handle, offset, addr, len, msg, cap);
  if (st) return st;
  sp_blob *blob = &table->blobs[handle];
  uint64_t span = (len + SP_BLOB_MAP_ALIGN - 1) / SP_BLOB_MAP_ALIGN * SP_BLOB_MAP_ALIGN;
  size_t page = sp_page_size();
  uint64_t mapped = (len + page - 1) / page * page;
  /* Guarded before it is mapped: if the file shrinks later, touching these
   * pages raises SIGBUS, which the fault guard turns into zeros and this
   * grant's "changed" error. A mapping that cannot be guarded is refused
   * with nothing changed. The guards (and records) of mappings this one
   * covers wholly go. */
  sp_error_t *err = sp_fault_guard_replace(table, region->base + addr, mapped, &table->changed, handle + 1);
  if (err) {
    snprintf(msg, cap, "blob_map: %s", sp_error_message(err));
    sp_error_free(err);
    return SP_E_LIMIT;
  }
  /* Private and writable: reads share the page cache, a guest write gets
   * its own copy and never reaches the file. (If mmap fails the guard
   * stays: whatever is left there stays covered.) */
  void *at = mmap(region->base + addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                  blob->fd, (off_t)offset);
  if (at == MAP_FAILED) {
    snprintf(msg, cap, "blob_map: mmap failed: %s", strerror(errno));
    return SP_E_BACKEND;
  }
  /* The tail of the last wasm page past the file's last host page stays
   * anonymous zeroed memory. */
  if (mapped < span) memset(region->base + addr + mapped, 0, span - mapped);
  forget_mappings_inside(table, addr, mapped);
  remember_mapping(table, (sp_blob_mapping){handle, offset, len, addr, false});
  return SP_OK;
}

bool sp_blob_unmap(sp_blob_table *table, sp_region *region, const sp_blob_mapping *m) {
  size_t page = sp_page_size();
  uint8_t *at = region->base + m->guest_addr;
  uint64_t pages = (m->length + page - 1) / page * page;
  sp_fault_guard_remove_range(table, at, pages);
  return sp_region_reset(region, m->guest_addr, pages);
}

bool sp_blob_recheck_sizes(sp_blob_table *table) {
  for (int i = 0; i < table->n_maps; i++) {
    const sp_blob_mapping *m = &table->maps[i];
    struct stat st;
    if (m->read || m->handle < 0 || m->handle >= table->count || fstat(table->blobs[m->handle].fd, &st)) continue;
    if ((uint64_t)st.st_size < m->file_offset + m->length) {
      int none = 0;
      atomic_compare_exchange_strong(&table->changed, &none, m->handle + 1);
      return true;
    }
  }
  return false;
}

bool sp_blob_changed(const sp_blob_table *table, char *msg, size_t cap) {
  int which = atomic_load(&((sp_blob_table *)table)->changed) - 1;
  if (which < 0) return false;
  const char *name = which < table->count ? table->blobs[which].name : "?";
  snprintf(msg, cap, "the granted file \"%s\" changed on disk while mapped", name);
  return true;
}
