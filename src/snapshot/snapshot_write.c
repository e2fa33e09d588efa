/*
 * snapshot_write.c: sp_actor_snapshot, writing the format of
 * snapshot_format.h atomically (temporary file, fsync, rename, fsync of the
 * directory): a crash or a full disk mid-write leaves the previous
 * snapshot intact, and the next successful save removes the temporary a
 * crash left (snapshot_tmp.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hash64.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapshot_format.h"
#include "snapshot/snapshot_tmp.h"

typedef struct snap_writer {
  int fd;
  uint64_t n_chunks, bytes;
  sp_error_t *err;
} snap_writer;

static void write_all(snap_writer *w, const struct iovec *iov, int n) {
  for (int i = 0; i < n && !w->err; i++) {
    const uint8_t *p = iov[i].iov_base;
    size_t left = iov[i].iov_len;
    while (left && !w->err) {
      ssize_t put = write(w->fd, p, left);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) {
        int e = put < 0 ? errno : ENOSPC;
        bool full = e == ENOSPC || e == EFBIG || e == EDQUOT;
        w->err = sp_error_new("snapshot: write failed: %s%s", strerror(e),
                              full ? " (out of disk space or over the file size limit; any previous "
                                     "snapshot at that path is unchanged)" : "");
      }
      else p += put, left -= (size_t)put, w->bytes += (uint64_t)put;
    }
  }
}

/* Writes one chunk whose payload is the concatenation of parts. */
static void put_chunk(snap_writer *w, uint32_t type, const struct iovec *parts, int n) {
  sp_snap_chunk_header ch = {type, 0, 0, 0};
  sp_hash64 h;
  sp_hash64_init(&h, 0);
  for (int i = 0; i < n; i++) {
    sp_hash64_update(&h, parts[i].iov_base, parts[i].iov_len);
    ch.length += parts[i].iov_len;
  }
  ch.hash = sp_hash64_final(&h);
  struct iovec head = {&ch, sizeof ch};
  write_all(w, &head, 1);
  write_all(w, parts, n);
  w->n_chunks++;
}

static void put_u64s(snap_writer *w, uint32_t type, const uint64_t *v, int n) {
  struct iovec part = {(void *)v, (size_t)n * 8};
  put_chunk(w, type, &part, 1);
}

/* Exported mutable globals, by name. */
static void put_globals(snap_writer *w, sp_actor_t *a) {
  uint8_t buf[8192];
  size_t at = 4;
  uint32_t count = 0;
  char *name;
  size_t name_len;
  wasmtime_extern_t item;
  for (size_t i = 0; wasmtime_instance_export_nth(a->context, &a->instance, i, &name, &name_len, &item); i++) {
    if (item.kind != WASMTIME_EXTERN_GLOBAL) continue;
    wasm_globaltype_t *ty = wasmtime_global_type(a->context, &item.of.global);
    bool mutable_ = wasm_globaltype_mutability(ty) == WASM_VAR;
    wasm_globaltype_delete(ty);
    if (!mutable_ || name_len > 1024 || at + 2 + name_len + 9 > sizeof buf) continue;
    wasmtime_val_t val;
    wasmtime_global_get(a->context, &item.of.global, &val);
    uint8_t kind = val.kind == WASMTIME_I32 ? 0 : val.kind == WASMTIME_I64 ? 1 : val.kind == WASMTIME_F32 ? 2 : 3;
    uint64_t bits = 0;
    if (kind == 0) bits = (uint32_t)val.of.i32;
    else if (kind == 1) bits = (uint64_t)val.of.i64;
    else if (kind == 2) memcpy(&bits, &val.of.f32, 4);
    else if (val.kind == WASMTIME_F64) memcpy(&bits, &val.of.f64, 8);
    else continue; /* reference and vector globals are not captured */
    uint16_t nl = (uint16_t)name_len;
    memcpy(buf + at, &nl, 2), memcpy(buf + at + 2, name, name_len);
    at += 2 + name_len;
    buf[at++] = kind;
    memcpy(buf + at, &bits, 8), at += 8;
    count++;
  }
  memcpy(buf, &count, 4);
  struct iovec part = {buf, at};
  put_chunk(w, SP_SNAP_GLOBALS, &part, 1);
}

/* Whether map i can be stored by reference: a mapping always (pages the
 * guest wrote are stored on top), a read range only while its bytes still
 * equal the file. */
static bool ref_usable(sp_actor_t *a, int i) {
  const sp_blob_mapping *m = &a->blobs.maps[i];
  if (!m->read) return true;
  uint64_t hash;
  sp_error_t *err = sp_blob_content_hash(&a->blobs.blobs[m->handle], &hash);
  if (err) {
    sp_error_free(err);
    return false;
  }
  return m->guest_addr + m->length <= a->region->committed &&
         sp_hash64_of(a->region->base + m->guest_addr, m->length) == hash;
}

/* The index of the referenced range holding page_addr, or -1. */
static int ref_of_page(const sp_actor_t *a, const bool *usable, uint64_t page_addr) {
  for (int i = 0; usable && i < a->blobs.n_maps; i++) {
    const sp_blob_mapping *m = &a->blobs.maps[i];
    if (usable[i] && page_addr + SP_SNAP_PAGE > m->guest_addr && page_addr < m->guest_addr + m->length) return i;
  }
  return -1;
}

static sp_error_t *put_blob_refs(snap_writer *w, sp_actor_t *a, const bool *usable) {
  for (int i = 0; i < a->blobs.n_maps; i++) {
    const sp_blob_mapping *m = &a->blobs.maps[i];
    if (!usable[i]) continue;
    sp_blob *blob = &a->blobs.blobs[m->handle];
    uint64_t hash;
    sp_error_t *err = sp_blob_content_hash(blob, &hash);
    if (err) return err;
    uint16_t nl = (uint16_t)strlen(blob->name);
    uint64_t fields[5] = {blob->size, hash, m->file_offset, m->guest_addr, m->length};
    struct iovec parts[3] = {{&nl, 2}, {blob->name, nl}, {fields, sizeof fields}};
    put_chunk(w, m->read ? SP_SNAP_BLOB_READ : SP_SNAP_BLOB, parts, 3);
  }
  return NULL;
}

/* A 64 KiB page of a mapped file range: stored when the guest wrote one of
 * its file-backed host pages (the write made it anonymous), or a nonzero
 * byte of the anonymous tail past the file's last host page. (Storing the
 * last page for its tail alone would make a restore lose the proof that
 * the range holds the file's bytes, and with it the shared device copy.) */
static bool mapped_page_changed(int pagemap, const sp_region *r, const sp_blob_mapping *m, uint64_t addr) {
  uint64_t host = sp_page_size(), file_end = m->guest_addr + (m->length + host - 1) / host * host;
  uint64_t end = addr + SP_SNAP_PAGE, split = file_end < end ? file_end : end;
  if (split > addr && sp_written_any(pagemap, r->base, addr, split - addr)) return true;
  for (uint64_t at = split; at < end; at += 8) {
    uint64_t word;
    memcpy(&word, r->base + at, 8);
    if (word) return true;
  }
  return false;
}

/* Pages to store: non-zero, and (inside a by-reference file range) only
 * those the guest wrote. Consecutive pages go in one chunk. */
static void put_pages(snap_writer *w, sp_actor_t *a, const bool *usable) {
  const sp_region *r = a->region;
  uint64_t n_pages = r->committed / SP_SNAP_PAGE, run_start = 0, run_len = 0;
  int pagemap = sp_pagemap_open();
  for (uint64_t p = 0; p <= n_pages && !w->err; p++) {
    bool store = false;
    if (p < n_pages) {
      uint64_t addr = p * SP_SNAP_PAGE;
      int ref = ref_of_page(a, usable, addr);
      if (ref >= 0 && a->blobs.maps[ref].read) store = false; /* verified equal to the file */
      else if (ref >= 0) store = mapped_page_changed(pagemap, r, &a->blobs.maps[ref], addr);
      else store = !sp_snap_page_is_zero(r->base + addr);
    }
    if (store && run_len < 256) {
      if (!run_len) run_start = p;
      run_len++;
      continue;
    }
    if (run_len) {
      uint32_t count = (uint32_t)run_len;
      struct iovec parts[3] = {{&run_start, 8}, {&count, 4}, {r->base + run_start * SP_SNAP_PAGE, run_len * SP_SNAP_PAGE}};
      put_chunk(w, SP_SNAP_PAGES, parts, 3);
    }
    run_len = store ? 1 : 0;
    run_start = p;
  }
  if (pagemap >= 0) close(pagemap);
}

/* A FROZEN or LOCAL chunk: u32 count, then (u64 address, u64 length). */
static void put_ranges(snap_writer *w, uint32_t type, const sp_range *ranges, uint32_t n) {
  uint8_t buf[4 + 16 * (SP_MAX_FROZEN > SP_MAX_DEVICE_LOCAL ? SP_MAX_FROZEN : SP_MAX_DEVICE_LOCAL)];
  memcpy(buf, &n, 4);
  for (uint32_t i = 0; i < n; i++) {
    memcpy(buf + 4 + 16 * i, &ranges[i].addr, 8);
    memcpy(buf + 12 + 16 * i, &ranges[i].len, 8);
  }
  struct iovec part = {buf, 4 + (size_t)n * 16};
  put_chunk(w, type, &part, 1);
}

static void put_annotations(snap_writer *w, sp_actor_t *a) {
  const sp_annotation_table *t = &a->annotations;
  size_t cap = 4 + (size_t)t->count * (2 + SP_ANNOTATION_NAME_MAX + sizeof(sp_tensor)), at = 4;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    w->err = sp_error_new("snapshot: out of memory");
    return;
  }
  memcpy(buf, &t->count, 4);
  for (uint32_t i = 0; i < t->count; i++) {
    uint16_t nl = (uint16_t)strlen(t->items[i].name);
    memcpy(buf + at, &nl, 2), memcpy(buf + at + 2, t->items[i].name, nl);
    memcpy(buf + at + 2 + nl, &t->items[i].tensor, sizeof(sp_tensor));
    at += 2 + nl + sizeof(sp_tensor);
  }
  struct iovec part = {buf, at};
  put_chunk(w, SP_SNAP_ANNOT, &part, 1);
  free(buf);
}

static void write_snapshot(snap_writer *w, sp_actor_t *a, bool self_contained) {
  sp_snap_header hdr = {{0}, SP_SNAP_VERSION, self_contained ? SP_SNAP_FLAG_SELF_CONTAINED : 0, 0, 0};
  memcpy(hdr.magic, SP_SNAP_MAGIC, 8);
  struct iovec head = {&hdr, sizeof hdr};
  write_all(w, &head, 1);
  uint64_t module[2] = {a->module_hash, 0}, memory = a->region->committed;
  put_u64s(w, SP_SNAP_MODULE, module, 2);
  put_u64s(w, SP_SNAP_MEMORY, &memory, 1);
  put_globals(w, a);
  bool *usable = self_contained ? NULL : calloc((size_t)a->blobs.n_maps + 1, sizeof *usable);
  for (int i = 0; usable && i < a->blobs.n_maps; i++) usable[i] = ref_usable(a, i);
  if (usable && !w->err) w->err = put_blob_refs(w, a, usable);
  put_ranges(w, SP_SNAP_FROZEN, a->frozen, a->n_frozen);
  put_ranges(w, SP_SNAP_LOCAL, a->device_local, a->n_device_local);
  put_annotations(w, a);
  put_pages(w, a, usable);
  free(usable);
  put_chunk(w, SP_SNAP_END, NULL, 0);
  hdr.n_chunks = w->n_chunks;
  hdr.hash = sp_hash64_of(&hdr, 24);
  if (!w->err && pwrite(w->fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
    w->err = sp_error_new("snapshot: cannot finish the header: %s", strerror(errno));
}

/* fsync the directory so the rename itself is durable. */
static void sync_dir(const char *path) {
  char *copy = strdup(path);
  if (!copy) return;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) fsync(fd), close(fd);
  free(copy);
}

sp_error_t *sp_actor_snapshot(sp_actor_t *actor, const char *path, const sp_snapshot_options *opts,
                              sp_snapshot_stats *stats) {
  if (!actor || !path) return sp_error_new("sp_actor_snapshot: NULL argument");
  if (!actor->region) return sp_error_new("snapshot: the actor has no linear memory");
  bool self_contained = opts && opts->self_contained;
  struct timespec began;
  clock_gettime(CLOCK_REALTIME, &began); /* the clock file times use */
  size_t len = strlen(path) + 48;
  char *tmp = malloc(len);
  if (!tmp || !sp_snap_tmp_template(path, tmp, len)) return free(tmp), sp_error_new("out of memory");
  snap_writer w = {.fd = mkstemp(tmp)};
  if (w.fd < 0) {
    sp_error_t *err = sp_error_new("snapshot: cannot create %s: %s", tmp, strerror(errno));
    free(tmp);
    return err;
  }
  /* Device-local ranges live on the device between submits: copy them back
   * to guest memory first, so the pages written below are current. */
  w.err = sp_abi_device_local_sync_all(actor);
  if (!w.err) write_snapshot(&w, actor, self_contained);
  if (!w.err && fsync(w.fd)) w.err = sp_error_new("snapshot: fsync failed: %s", strerror(errno));
  close(w.fd);
  if (!w.err && rename(tmp, path)) w.err = sp_error_new("snapshot: cannot rename to %s: %s", path, strerror(errno));
  if (w.err) unlink(tmp);
  else sync_dir(path), sp_snap_tmp_sweep(path, began);
  free(tmp);
  if (!w.err && stats) stats->bytes = w.bytes, stats->memory_bytes = actor->region->committed;
  return w.err;
}
