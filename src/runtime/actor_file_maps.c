/*
 * actor_file_maps.c: mapping granted files into an actor's memory with the
 * backend told first and after (backend.h file_ranges).
 *
 * A backend that pins guest pages for the device (CUDA) must not pin
 * file-backed ones, and a mapping placed over pinned pages would leave the
 * device reading the old pages. So every change of which ranges are
 * file-backed goes: the backend drops what the new layout covers, the
 * mappings change, the backend pins what is anonymous again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"

static uint64_t page_round(uint64_t len) {
  uint64_t page = sp_page_size();
  return (len + page - 1) / page * page;
}

sp_error_t *sp_actor_file_ranges(const sp_actor_t *a, const sp_file_range *extra, uint32_t n_extra,
                                 sp_file_range **out, uint32_t *n) {
  sp_file_range *ranges = malloc(((size_t)a->blobs.n_maps + n_extra + 1) * sizeof *ranges);
  if (!ranges) return sp_error_new("out of memory for %d file ranges", a->blobs.n_maps);
  uint32_t count = 0;
  for (int i = 0; i < a->blobs.n_maps; i++) {
    const sp_blob_mapping *m = &a->blobs.maps[i];
    if (!m->read)
      ranges[count++] = (sp_file_range){m->guest_addr, page_round(m->length), a->blobs.blobs[m->handle].fd, m->file_offset};
  }
  for (uint32_t i = 0; i < n_extra; i++) ranges[count++] = (sp_file_range){extra[i].addr, page_round(extra[i].len), -1, 0};
  *out = ranges, *n = count;
  return NULL;
}

sp_error_t *sp_actor_file_ranges_tell(sp_actor_t *a, const sp_file_range *extra, uint32_t n_extra, bool done) {
  sp_file_range *ranges = NULL;
  uint32_t n = 0;
  sp_error_t *err = sp_actor_file_ranges(a, extra, n_extra, &ranges, &n);
  if (!err) err = sp_backend_file_ranges(a->rt->backend, a->binding, ranges, n, done);
  free(ranges);
  return err;
}

int32_t sp_actor_blob_map(sp_actor_t *a, int32_t handle, uint64_t offset, uint64_t addr, uint64_t len) {
  char *msg = a->last_error;
  size_t cap = sizeof a->last_error;
  int32_t st = sp_blob_map_check(&a->blobs, a->region, handle, offset, addr, len, msg, cap);
  if (st) return st;
  sp_file_range next = {addr, len, -1, 0};
  sp_error_t *err = sp_actor_file_ranges_tell(a, &next, 1, false);
  if (!err) {
    st = sp_blob_map(&a->blobs, a->region, handle, offset, addr, len, msg, cap);
    err = sp_actor_file_ranges_tell(a, NULL, 0, true); /* what stands now, mapped or not */
  }
  if (err) {
    sp_abi_fail(a, SP_E_BACKEND, "blob_map: %s", sp_error_message(err));
    sp_error_free(err);
    return SP_E_BACKEND;
  }
  return st;
}

/* Turns the file mappings overlapping [addr, addr + len) into anonymous
 * memory holding the same bytes (read from the file), for a backend that
 * can compute on them only that way. */
sp_error_t *sp_actor_file_maps_to_reads(sp_actor_t *a, uint64_t addr, uint64_t len) {
  sp_blob_table *t = &a->blobs;
  sp_error_t *err = sp_actor_file_ranges_tell(a, NULL, 0, false);
  for (int i = 0; i < t->n_maps && !err; i++) {
    sp_blob_mapping *m = &t->maps[i];
    if (m->read || m->guest_addr >= addr + len || addr >= m->guest_addr + m->length) continue;
    if (!sp_blob_unmap(t, a->region, m)) {
      err = sp_error_new("cannot replace a file mapping with memory: %s", strerror(errno));
      break;
    }
    m->read = true; /* before the read: the tell below pins the range either way */
    int n_before = t->n_maps;
    sp_blob_mapping read = *m;
    int64_t got = sp_blob_read(t, a->region, read.handle, read.file_offset, read.guest_addr, read.length,
                               a->last_error, sizeof a->last_error);
    t->n_maps = n_before; /* a whole-file read is remembered again: keep the one entry */
    if (got != (int64_t)read.length) err = sp_error_new("reading the file back into memory: %s", a->last_error);
  }
  sp_error_t *after = sp_actor_file_ranges_tell(a, NULL, 0, true);
  if (!err) return after;
  sp_error_free(after);
  return err;
}
