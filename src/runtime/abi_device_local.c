/*
 * abi_device_local.c: the `device_local` and `sync` imports (samepage_abi.h,
 * items 6 and 7) and the snapshot helpers that keep device-local ranges
 * coherent with guest memory.
 *
 * A device-local range is guest memory whose authoritative copy may live on
 * the accelerator between submits (activations, the KV cache): a discrete
 * GPU computes on a mirror in its own memory instead of reaching across PCIe
 * for every byte. From the guest's view the bytes are undefined until it
 * calls sync(addr, len) (device -> guest memory); bytes it writes with its
 * own stores must be flushed (guest memory -> device) before the next
 * submit. On the CPU both are no-ops: the host memory is the device memory.
 */
#include <inttypes.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"

/* Checks [addr, addr + len) is a non-empty committed range. */
static sp_status committed_range(sp_actor_t *actor, const char *what, uint32_t addr, uint32_t len) {
  if (!actor->region) return sp_abi_fail(actor, SP_E_BOUNDS, "%s: no linear memory", what);
  if (len == 0 || (uint64_t)addr + len > actor->region->committed)
    return sp_abi_fail(actor, SP_E_BOUNDS, "%s: [0x%" PRIx32 ", +%" PRIu32 ") is empty or outside committed memory",
                       what, addr, len);
  return SP_OK;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

int sp_abi_device_local_find(const sp_actor_t *actor, uint64_t addr, uint64_t len) {
  for (uint32_t i = 0; i < actor->n_device_local; i++) {
    const sp_range *r = &actor->device_local[i];
    if (addr >= r->addr && addr + len <= r->addr + r->len) return (int)i;
  }
  return -1;
}

/* device_local(addr, len): from now on the range's bytes may live on the
 * device between submits; the backend uploads the current bytes once. */
static sp_status declare(sp_actor_t *actor, uint32_t addr, uint32_t len) {
  sp_status st = committed_range(actor, "device_local", addr, len);
  if (st) return st;
  for (uint32_t i = 0; i < actor->n_frozen; i++)
    if (overlap(addr, len, actor->frozen[i].addr, actor->frozen[i].len))
      return sp_abi_fail(actor, SP_E_ALIAS, "device_local: [0x%" PRIx32 ", +%" PRIu32 ") overlaps a frozen range",
                         addr, len);
  for (uint32_t i = 0; i < actor->n_device_local; i++)
    if (overlap(addr, len, actor->device_local[i].addr, actor->device_local[i].len))
      return sp_abi_fail(actor, SP_E_ALIAS,
                         "device_local: [0x%" PRIx32 ", +%" PRIu32 ") overlaps a device-local range", addr, len);
  if (actor->n_device_local == SP_MAX_DEVICE_LOCAL)
    return sp_abi_fail(actor, SP_E_LIMIT, "device_local: at most %d device-local ranges", SP_MAX_DEVICE_LOCAL);
  sp_error_t *err = sp_backend_device_local(actor->rt->backend, actor->binding, addr, len);
  if (err) {
    sp_abi_fail(actor, SP_E_BACKEND, "device_local: %s", sp_error_message(err));
    sp_error_free(err);
    return SP_E_BACKEND;
  }
  actor->device_local[actor->n_device_local++] = (sp_range){addr, len};
  return SP_OK;
}

sp_error_t *sp_abi_device_local_declare(sp_actor_t *actor, uint64_t addr, uint64_t len) {
  if (addr > UINT32_MAX || len > UINT32_MAX) return sp_error_new("device_local: [0x%" PRIx64 ", +%" PRIu64 ") is not a wasm32 range", addr, len);
  if (declare(actor, (uint32_t)addr, (uint32_t)len) == SP_OK) return NULL;
  return sp_error_new("snapshot: %s", actor->last_error);
}

/* sync(addr, len): copies a sub-range of one device-local range back to
 * guest memory, where the guest can read it. */
static sp_status sync_range(sp_actor_t *actor, uint32_t addr, uint32_t len) {
  sp_status st = committed_range(actor, "sync", addr, len);
  if (st) return st;
  if (sp_abi_device_local_find(actor, addr, len) < 0)
    return sp_abi_fail(actor, SP_E_PARAM, "sync: [0x%" PRIx32 ", +%" PRIu32 ") is not inside one device-local range",
                       addr, len);
  sp_error_t *err = sp_backend_sync(actor->rt->backend, actor->binding, addr, len);
  if (!err) return SP_OK;
  sp_abi_fail(actor, SP_E_BACKEND, "sync: %s", sp_error_message(err));
  sp_error_free(err);
  return SP_E_BACKEND;
}

static wasm_trap_t *import_device_local(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                                        size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = declare(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32);
  return NULL;
}

static wasm_trap_t *import_sync(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = sync_range(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32);
  return NULL;
}

wasmtime_error_t *sp_abi_device_local_define(wasmtime_linker_t *linker) {
  wasmtime_error_t *err = sp_abi_define_func(linker, "device_local", "ii:i", import_device_local);
  return err ? err : sp_abi_define_func(linker, "sync", "ii:i", import_sync);
}

/* ---- snapshots ---- */

sp_error_t *sp_abi_device_local_sync_all(sp_actor_t *actor) {
  for (uint32_t i = 0; i < actor->n_device_local; i++) {
    const sp_range *r = &actor->device_local[i];
    sp_error_t *err = sp_backend_sync(actor->rt->backend, actor->binding, r->addr, r->len);
    if (err) return err;
  }
  return NULL;
}
