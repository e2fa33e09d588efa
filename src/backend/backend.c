/* backend.c: checked wrappers around the backend vtable, with defaults. */
#include "backend/backend.h"

#include <stdlib.h>

#include "error.h"

const char *sp_backend_name(const sp_backend *be) { return be ? be->ops.name : "none"; }

sp_backend_caps sp_backend_caps_of(const sp_backend *be) {
  sp_backend_caps none = {0};
  return be && be->ops.caps ? be->ops.caps(be->ctx) : none;
}

sp_error_t *sp_backend_adopt(sp_backend *be, const sp_memory_view *view, void **binding) {
  if (!be || !view || !view->base || !binding) return sp_error_new("backend adopt: bad arguments");
  *binding = NULL;
  return be->ops.adopt(be->ctx, view, binding);
}

sp_error_t *sp_backend_grow(sp_backend *be, void *binding, const sp_memory_view *view) {
  if (!be || !view) return sp_error_new("backend grow: bad arguments");
  return be->ops.grow ? be->ops.grow(be->ctx, binding, view) : NULL;
}

bool sp_backend_supports(sp_backend *be, const sp_cmd *cmd) {
  return be && cmd && be->ops.supports(be->ctx, cmd);
}

sp_error_t *sp_backend_submit(sp_backend *be, void *binding, const sp_cmd *cmds, uint32_t count) {
  if (!be || (!cmds && count)) return sp_error_new("backend submit: bad arguments");
  if (count == 0) return NULL;
  return be->ops.submit(be->ctx, binding, cmds, count);
}

sp_error_t *sp_backend_wait(sp_backend *be, void *binding) {
  if (!be) return sp_error_new("backend wait: bad arguments");
  return be->ops.wait ? be->ops.wait(be->ctx, binding) : NULL;
}

void *sp_backend_device_base(sp_backend *be, void *binding, const sp_memory_view *adopted) {
  if (be && be->ops.device_base) return be->ops.device_base(be->ctx, binding);
  return adopted ? adopted->base : NULL;
}

sp_error_t *sp_backend_freeze(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  if (!be) return sp_error_new("backend freeze: bad arguments");
  return be->ops.freeze ? be->ops.freeze(be->ctx, binding, addr, len, identity) : NULL;
}

sp_error_t *sp_backend_freeze_shared(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                                     int import_fd, int *export_fd) {
  *export_fd = -1;
  if (!be) return sp_error_new("backend freeze: bad arguments");
  if (be->ops.freeze_shared) return be->ops.freeze_shared(be->ctx, binding, addr, len, identity, import_fd, export_fd);
  return sp_backend_freeze(be, binding, addr, len, identity);
}

uint32_t sp_backend_derived_exports(sp_backend *be, void *binding, sp_derived_desc *out, int *fds, uint32_t max) {
  return be && be->ops.derived_exports ? be->ops.derived_exports(be->ctx, binding, out, fds, max) : 0;
}

sp_error_t *sp_backend_derived_import(sp_backend *be, void *binding, const sp_derived_desc *desc, int fd) {
  if (!be || !desc) return sp_error_new("backend derived_import: bad arguments");
  return be->ops.derived_import ? be->ops.derived_import(be->ctx, binding, desc, fd) : NULL;
}

sp_error_t *sp_backend_flush(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend flush: bad arguments");
  return be->ops.flush ? be->ops.flush(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_device_local(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend device_local: bad arguments");
  return be->ops.device_local ? be->ops.device_local(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_sync(sp_backend *be, void *binding, uint64_t addr, uint64_t len) {
  if (!be) return sp_error_new("backend sync: bad arguments");
  return be->ops.sync ? be->ops.sync(be->ctx, binding, addr, len) : NULL;
}

sp_error_t *sp_backend_local_zero(sp_backend *be, void *binding, uint64_t addr, uint64_t len, bool *done) {
  if (!be || !done) return sp_error_new("backend local_zero: bad arguments");
  *done = false;
  return be->ops.local_zero ? be->ops.local_zero(be->ctx, binding, addr, len, done) : NULL;
}

sp_error_t *sp_backend_file_ranges(sp_backend *be, void *binding, const sp_file_range *files, uint32_t n, bool done) {
  if (!be || (n && !files)) return sp_error_new("backend file_ranges: bad arguments");
  return be->ops.file_ranges ? be->ops.file_ranges(be->ctx, binding, files, n, done) : NULL;
}

sp_residency_stats sp_backend_residency(const sp_backend *be) {
  sp_residency_stats none = {0};
  if (be && be->ops.residency) be->ops.residency(be->ctx, &none);
  return none;
}

bool sp_backend_device_memory(const sp_backend *be, uint64_t *used, uint64_t *total) {
  *used = *total = 0;
  return be && be->ops.device_memory && be->ops.device_memory(be->ctx, used, total);
}

void sp_backend_release(sp_backend *be, void *binding) {
  if (be && binding) be->ops.release(be->ctx, binding);
}

void sp_backend_free(sp_backend *be) {
  if (!be) return;
  if (be->ops.destroy) be->ops.destroy(be->ctx);
  free(be);
}
