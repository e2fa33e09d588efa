/*
 * cuda_residency.cu: device copies of guest bytes. A frozen range (weights)
 * gets a resident copy, shared by identity between bindings and processes
 * (resident_cache.h, vmm.h); a device-local range (activations, KV cache)
 * gets a mirror that kernels compute on, synced to guest memory on request.
 * The bytes and milliseconds are counted, never hidden.
 */
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_binding.cuh"

static void count_copy(sp_cu_ctx *c, double ms) {
  pthread_mutex_lock(&c->mu);
  c->stats.copies++, c->stats.ms += ms;
  pthread_mutex_unlock(&c->mu);
}

/* The binding's upload of guest bytes into a resident copy (timed). */
typedef struct frozen_upload {
  sp_cu_ctx *c;
  sp_cu_binding *b;
} frozen_upload;

static sp_error_t *upload_frozen(void *ctx, void *dev, uint64_t addr, uint64_t len) {
  frozen_upload *u = (frozen_upload *)ctx;
  double t0 = sp_now_ms();
  CU_TRY(sp_cu_copy_guest(u->b, (uint8_t *)dev, addr, len, true), "copying %llu frozen bytes", (unsigned long long)len);
  count_copy(u->c, sp_now_ms() - t0);
  return NULL;
}

/* Points kernels at f's copy, or at guest memory when it has none. A moved
 * pointer (copy-on-flush, a restore taking another actor's copy) makes a
 * captured graph stale. */
static void point_at_copy(sp_cu_binding *b, sp_cu_frozen *f) {
  uint8_t *dev = f->copy ? (uint8_t *)f->copy->dev : NULL;
  if (dev != f->dev) sp_cu_mark_stale(b);
  f->dev = dev;
}

/* The frozen range holding [addr, addr + len) (exactly, when exact). */
sp_cu_frozen *sp_cu_frozen_of(sp_cu_binding *b, uint64_t addr, uint64_t len, bool exact) {
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    sp_cu_frozen *f = &b->frozen[i];
    if (exact ? addr == f->addr && len == f->len : addr >= f->addr && addr + len <= f->addr + f->len) return f;
  }
  return NULL;
}

/* Refreshes f's copy with guest bytes [addr, addr + len) (resident_cache.h:
 * copy-on-flush, or a restore's re-declaration under identity), once the
 * binding's kernels are done reading it. */
static sp_error_t *refresh_frozen(sp_cu_ctx *c, sp_cu_binding *b, sp_cu_frozen *f, uint64_t addr, uint64_t len,
                                  uint64_t identity) {
  CU_ENTER(c);
  CU_TRY(cudaStreamSynchronize(b->stream), "refreshing a resident copy: waiting for the stream");
  frozen_upload u = {c, b};
  sp_resident_upload up = {&u, upload_frozen};
  sp_error_t *err = sp_resident_refresh(&c->cache, &up, &f->copy, f->addr, f->len, addr, len, identity);
  point_at_copy(b, f);
  sp_cu_mark_stale(b); /* a copy rewritten in place dropped its repacked weights (repack.h) */
  return err;
}

sp_error_t *cu_freeze_shared(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                             int import_fd, int *export_fd) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  *export_fd = -1;
  if (!c->residency || c->integrated) return NULL;
  sp_cu_frozen *f = sp_cu_frozen_of(b, addr, len, true);
  if (f) return refresh_frozen(c, b, f, addr, len, identity); /* a restore re-declared it */
  bool mapped = sp_pin_overlaps(b->holes, b->n_holes, addr, len);
  if (b->n_frozen == SP_CU_MAX_FROZEN) /* no room for another copy: zero-copy, or read if file-mapped */
    return mapped ? sp_error_with_status(SP_E_UNSUPPORTED, "no room for another resident copy (%d held)",
                                         SP_CU_MAX_FROZEN)
                  : NULL;
  CU_ENTER(c);
  frozen_upload u = {c, b};
  sp_resident_upload up = {&u, upload_frozen};
  sp_resident_copy *copy = NULL;
  sp_error_t *err = sp_resident_freeze_shared(&c->cache, &up, addr, len, identity, import_fd, export_fd, &copy);
  if (!err && !copy && mapped) /* the runtime reads the file instead */
    return sp_error_with_status(SP_E_UNSUPPORTED, "no device memory for a resident copy of file-mapped "
                                "[0x%llx, +%llu)", (unsigned long long)addr, (unsigned long long)len);
  if (err || !copy) return err; /* no copy: the range stays zero-copy */
  f = &b->frozen[b->n_frozen++];
  *f = (sp_cu_frozen){addr, len, NULL, copy};
  point_at_copy(b, f);
  return NULL;
}

/* Repacked layouts of shared copies, for other worker processes (repack.h). */
uint32_t cu_derived_exports(void *vctx, void *binding, sp_derived_desc *out, int *fds, uint32_t max) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  uint32_t n = 0; /* exporting needs no current device: this runs after every list */
  for (uint32_t i = 0; i < b->n_frozen && n < max; i++) {
    sp_resident_copy *copy = b->frozen[i].copy;
    if (copy && copy->cross_process && copy->identity)
      n += sp_cu_repack_exports(copy, &c->mu, out + n, fds + n, max - n);
  }
  return n;
}

sp_error_t *cu_derived_import(void *vctx, void *binding, const sp_derived_desc *d, int fd) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  cudaSetDevice(c->device);
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    sp_resident_copy *copy = b->frozen[i].copy;
    if (copy && copy->identity == d->identity)
      return sp_cu_repack_import(copy, &c->mu, d, fd) ? NULL
                                                      : sp_error_new("cuda: cannot map a repacked layout another "
                                                                     "worker made (it will be made here)");
  }
  return sp_error_new("cuda: no frozen copy of identity %llx for a repacked layout", (unsigned long long)d->identity);
}

sp_error_t *cu_freeze(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  int unused;
  return cu_freeze_shared(vctx, binding, addr, len, identity, -1, &unused);
}

void sp_cu_add_local_stats(sp_cu_ctx *c, int64_t held, uint64_t moved, double ms) {
  pthread_mutex_lock(&c->mu);
  c->stats.local_bytes = (uint64_t)((int64_t)c->stats.local_bytes + held);
  if (moved) c->stats.transfers++, c->stats.transfer_bytes += moved, c->stats.transfer_ms += ms;
  pthread_mutex_unlock(&c->mu);
}

/* The mirror holding all of [addr, addr + len), or NULL. */
static sp_cu_frozen *local_of(sp_cu_binding *b, uint64_t addr, uint64_t len) {
  for (uint32_t i = 0; i < b->n_local; i++) {
    sp_cu_frozen *l = &b->local[i];
    if (l->dev && addr >= l->addr && addr + len <= l->addr + l->len) return l;
  }
  return NULL;
}

/* Copies guest bytes [addr, addr + len) into mirror l, or back from it,
 * once the stream's kernels are done with it; counted. */
static sp_error_t *move_local(sp_cu_ctx *c, sp_cu_binding *b, sp_cu_frozen *l, uint64_t addr, uint64_t len,
                              bool to_device) {
  const char *what = to_device ? "device_local: uploading" : "sync: copying back";
  double t0 = sp_now_ms();
  CU_TRY(cudaStreamSynchronize(b->stream), "%s: waiting for the stream", what);
  CU_TRY(sp_cu_copy_guest(b, l->dev + (addr - l->addr), addr, len, to_device), "%s %llu bytes", what,
         (unsigned long long)len);
  sp_cu_add_local_stats(c, 0, len, sp_now_ms() - t0);
  return NULL;
}

sp_error_t *cu_device_local(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  if (!c->local || b->n_local == SP_CU_MAX_LOCAL) return NULL;
  CU_ENTER(c);
  uint8_t *dev = NULL;
  if (cudaMalloc(&dev, len) != cudaSuccess) {
    cudaGetLastError(); /* not sticky: clear it and compute on guest memory */
    fprintf(stderr, "samepage: cuda: no device memory for a %.1f MiB device-local mirror; computing on host "
            "memory instead\n", len / 1048576.0);
    return NULL;
  }
  sp_cu_frozen *l = &b->local[b->n_local];
  *l = (sp_cu_frozen){addr, len, dev};
  sp_cu_add_local_stats(c, (int64_t)len, 0, 0);
  sp_error_t *err = move_local(c, b, l, addr, len, true);
  if (err) {
    cudaFree(dev);
    sp_cu_add_local_stats(c, -(int64_t)len, 0, 0);
    return err;
  }
  b->n_local++;
  sp_cu_mark_stale(b); /* a captured graph points at guest memory for these bytes */
  return NULL;
}

sp_error_t *cu_sync(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (!l) return NULL; /* no mirror: guest memory is already current */
  CU_ENTER(c);
  return move_local(c, b, l, addr, len, false);
}

/* A restore zeroes part of a device-local range on its mirror alone: the
 * guest's copy is not authoritative until sync, so it is left as it is. */
sp_error_t *cu_local_zero(void *vctx, void *binding, uint64_t addr, uint64_t len, bool *done) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (!l) return NULL; /* no mirror: the caller zeroes guest memory */
  CU_ENTER(c);
  CU_TRY(cudaStreamSynchronize(b->stream), "restoring a device-local range: waiting for the stream");
  CU_TRY(cudaMemset(l->dev + (addr - l->addr), 0, len), "zeroing %llu device-local bytes", (unsigned long long)len);
  *done = true;
  return NULL;
}

sp_error_t *cu_flush(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (l) {
    CU_ENTER(c);
    return move_local(c, b, l, addr, len, true);
  }
  sp_cu_frozen *f = sp_cu_frozen_of(b, addr, len, false);
  if (f) return refresh_frozen(c, b, f, addr, len, 0); /* never writes a shared copy */
  return NULL; /* no copy of that range: guest memory is read directly */
}

void cu_residency(void *vctx, sp_residency_stats *out) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  pthread_mutex_lock(&c->mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->mu);
  out->repacked_bytes = sp_cu_repack_bytes();
}
