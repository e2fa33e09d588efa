/*
 * backend.c: registering backends, and the checked wrappers around their
 * three interface layers (backend.h), with the defaults of every optional
 * slot and layer.
 */
#include "backend/backend.h"

#include <stdlib.h>

#include "core/error.h"

/* ---- registration ---- */

/* A table's version against the one this build describes. */
static sp_error_t *check_version(const char *backend, const char *table, uint32_t got, uint32_t want) {
  if (got == want) return NULL;
  return sp_error_new("backend %s: its %s interface is version %u, this samepage speaks version %u "
                      "(the backend was built against other headers)",
                      backend, table, got, want);
}

sp_error_t *sp_backend_check(const sp_backend *be) {
  if (!be) return sp_error_new("backend check: no backend");
  const struct sp_backend_i *i = &be->iface;
  const char *name = i->name ? i->name : "(unnamed)";
  sp_error_t *err = check_version(name, "core", i->version, SP_BACKEND_CORE_VERSION);
  if (!err && be->memory) err = check_version(name, "memory", be->memory->version, SP_BACKEND_MEMORY_VERSION);
  if (!err && be->sharing) err = check_version(name, "sharing", be->sharing->version, SP_BACKEND_SHARING_VERSION);
  if (!err && be->batching)
    err = check_version(name, "batching", be->batching->version, SP_BACKEND_BATCHING_VERSION);
  if (!err && be->batching && !be->batching->submit_batch)
    err = sp_error_new("backend %s: its batching interface has no submit_batch", name);
  if (err) return err;
  if (!i->name || !i->adopt || !i->supports || !i->submit || !i->release)
    return sp_error_new("backend %s: its core interface lacks a required slot (name, adopt, supports, submit, release)",
                        name);
  sp_backend_caps caps = sp_backend_caps_of(be);
  if ((caps.residency || caps.device_local || caps.shares_frozen) && !be->memory)
    return sp_error_new("backend %s: its capabilities promise device copies, and it has no memory interface", name);
  return NULL;
}

/* ---- layer 1: the core ---- */

const char *sp_backend_name(const sp_backend *be) { return be ? be->iface.name : "none"; }

sp_backend_caps sp_backend_caps_of(const sp_backend *be) {
  sp_backend_caps none = {0};
  return be && be->iface.caps ? be->iface.caps(be->ctx) : none;
}

sp_error_t *sp_backend_adopt(sp_backend *be, const sp_memory_view *view, void **binding) {
  if (!be || !view || !view->base || !binding) return sp_error_new("backend adopt: bad arguments");
  *binding = NULL;
  return be->iface.adopt(be->ctx, view, binding);
}

sp_error_t *sp_backend_grow(sp_backend *be, void *binding, const sp_memory_view *view) {
  if (!be || !view) return sp_error_new("backend grow: bad arguments");
  return be->iface.grow ? be->iface.grow(be->ctx, binding, view) : NULL;
}

bool sp_backend_supports(sp_backend *be, const sp_cmd *cmd) {
  return be && cmd && be->iface.supports(be->ctx, cmd);
}

sp_error_t *sp_backend_submit(sp_backend *be, void *binding, const sp_cmd *cmds, uint32_t count, bool same) {
  if (!be || (!cmds && count)) return sp_error_new("backend submit: bad arguments");
  if (count == 0) return NULL;
  return be->iface.submit(be->ctx, binding, cmds, count, same);
}

sp_error_t *sp_backend_wait(sp_backend *be, void *binding) {
  if (!be) return sp_error_new("backend wait: bad arguments");
  return be->iface.wait ? be->iface.wait(be->ctx, binding) : NULL;
}

void *sp_backend_device_base(sp_backend *be, void *binding, const sp_memory_view *adopted) {
  if (be && be->iface.device_base) return be->iface.device_base(be->ctx, binding);
  return adopted ? adopted->base : NULL;
}

void sp_backend_release(sp_backend *be, void *binding) {
  if (be && binding) be->iface.release(be->ctx, binding);
}

void sp_backend_free(sp_backend *be) {
  if (!be) return;
  if (be->iface.destroy) be->iface.destroy(be->ctx);
  free(be);
}

/* ---- layer 2: memory of the device's own (NULL: guest memory is it) ---- */

/* The memory layer of be; a backend without one has every slot empty. */
static const struct sp_backend_memory_i *memory_of(const sp_backend *be) {
  static const struct sp_backend_memory_i none = {.version = SP_BACKEND_MEMORY_VERSION};
  return be->memory ? be->memory : &none;
}

sp_error_t *sp_backend_freeze(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  if (!be) return sp_error_new("backend freeze: bad arguments");
  return memory_of(be)->freeze ? memory_of(be)->freeze(be->ctx, binding, addr, len, identity) : NULL;
}

sp_error_t *sp_backend_flush(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend flush: bad arguments");
  return memory_of(be)->flush ? memory_of(be)->flush(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_device_local(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend device_local: bad arguments");
  return memory_of(be)->device_local ? memory_of(be)->device_local(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_sync(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend sync: bad arguments");
  return memory_of(be)->sync ? memory_of(be)->sync(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_local_zero(sp_backend *be, void *binding, uint64_t addr, uint64_t len, bool *done) {
  if (!be || !done) return sp_error_new("backend local_zero: bad arguments");
  *done = false;
  return memory_of(be)->local_zero ? memory_of(be)->local_zero(be->ctx, binding, addr, len, done) : NULL;
}

sp_error_t *sp_backend_file_ranges(sp_backend *be, void *binding, const sp_file_range *files, uint32_t n, bool done) {
  if (!be || (n && !files)) return sp_error_new("backend file_ranges: bad arguments");
  return memory_of(be)->file_ranges ? memory_of(be)->file_ranges(be->ctx, binding, files, n, done) : NULL;
}

sp_residency_stats sp_backend_residency(const sp_backend *be) {
  sp_residency_stats none = {0};
  if (be && memory_of(be)->residency) memory_of(be)->residency(be->ctx, &none);
  return none;
}

bool sp_backend_device_memory(const sp_backend *be, uint64_t *used, uint64_t *total) {
  *used = *total = 0;
  return be && memory_of(be)->device_memory && memory_of(be)->device_memory(be->ctx, used, total);
}

/* ---- layer 4: several bindings' lists as one ---- */

bool sp_backend_batches(const sp_backend *be) { return be && be->batching; }

void sp_backend_submit_batch(sp_backend *be, sp_batch_item *items, uint32_t n) {
  if (be->batching) {
    be->batching->submit_batch(be->ctx, items, n);
    return;
  }
  for (uint32_t a = 0; a < n; a++) {
    sp_batch_item *it = &items[a];
    it->err = sp_backend_submit(be, it->binding, it->cmds, it->count, it->same);
    if (!it->err) it->err = sp_backend_wait(be, it->binding);
  }
}

/* ---- layer 3: device memory shared across processes ---- */

sp_error_t *sp_backend_freeze_shared(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                                     int import_fd, int *export_fd) {
  *export_fd = -1;
  if (!be) return sp_error_new("backend freeze: bad arguments");
  if (be->sharing && be->sharing->freeze_shared)
    return be->sharing->freeze_shared(be->ctx, binding, addr, len, identity, import_fd, export_fd);
  return sp_backend_freeze(be, binding, addr, len, identity);
}

uint32_t sp_backend_derived_exports(sp_backend *be, void *binding, sp_derived_desc *out, int *fds, uint32_t max) {
  if (!be || !be->sharing || !be->sharing->derived_exports) return 0;
  return be->sharing->derived_exports(be->ctx, binding, out, fds, max);
}

sp_error_t *sp_backend_derived_import(sp_backend *be, void *binding, const sp_derived_desc *desc, int fd) {
  if (!be || !desc) return sp_error_new("backend derived_import: bad arguments");
  if (!be->sharing || !be->sharing->derived_import) return NULL;
  return be->sharing->derived_import(be->ctx, binding, desc, fd);
}
