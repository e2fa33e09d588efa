/*
 * abi_blob.c: the blob_* imports of module "samepage" (see blob.h).
 *
 *  1. `i32 blob_open(i32 name_addr, i32 name_len)`: handle of a granted file.
 *  2. `i64 blob_size(i32 handle)`: its size in bytes.
 *  3. `i64 blob_read(i32 handle, i64 offset, i32 addr, i32 len)`: bytes read.
 *  4. `i32 blob_map(i32 handle, i64 offset, i32 addr, i64 len)`: maps the file
 *     range at guest address addr (64 KiB aligned, inside committed memory).
 *     SP_E_UNSUPPORTED on backends with caps.no_file_maps (CUDA without
 *     residency); SP_E_LIMIT once the actor holds SP_FAULT_GUARD_PER_OWNER
 *     (64) mappings (fault_guard.h): map over an existing one instead.
 * Negative results are sp_status codes; last_error has the message.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime_impl.h"

static wasm_trap_t *import_blob_open(void *env, wasmtime_caller_t *caller,
                                     wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  uint32_t addr = (uint32_t)args[0].i32, len = (uint32_t)args[1].i32;
  if (!actor->region || (uint64_t)addr + len > actor->region->committed || len > 256) {
    args[0].i32 = sp_abi_fail(actor, SP_E_BOUNDS, "blob_open: name outside memory or too long");
    return NULL;
  }
  int32_t handle = sp_blob_find(&actor->blobs, (const char *)actor->region->base + addr, len);
  if (handle < 0)
    sp_abi_fail(actor, SP_E_PARAM, "blob_open: no file was granted as \"%.*s\"", (int)len,
                (const char *)actor->region->base + addr);
  args[0].i32 = handle;
  return NULL;
}

static wasm_trap_t *import_blob_size(void *env, wasmtime_caller_t *caller,
                                     wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  int32_t handle = args[0].i32;
  if (handle < 0 || handle >= actor->blobs.count)
    args[0].i64 = sp_abi_fail(actor, SP_E_PARAM, "blob_size: handle %d was never granted", handle);
  else
    args[0].i64 = (int64_t)actor->blobs.blobs[handle].size;
  return NULL;
}

static wasm_trap_t *import_blob_read(void *env, wasmtime_caller_t *caller,
                                     wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  if (sp_blob_changed(&actor->blobs, actor->last_error, sizeof actor->last_error)) {
    args[0].i64 = SP_E_BACKEND;
    return NULL;
  }
  if (!actor->region) {
    args[0].i64 = sp_abi_fail(actor, SP_E_BOUNDS, "blob_read: no linear memory");
    return NULL;
  }
  args[0].i64 = sp_blob_read(&actor->blobs, actor->region, args[0].i32, (uint64_t)args[1].i64,
                             (uint32_t)args[2].i32, (uint32_t)args[3].i32, actor->last_error,
                             sizeof actor->last_error);
  return NULL;
}

static wasm_trap_t *import_blob_map(void *env, wasmtime_caller_t *caller,
                                    wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  if (sp_blob_changed(&actor->blobs, actor->last_error, sizeof actor->last_error)) {
    args[0].i32 = SP_E_BACKEND;
    return NULL;
  }
  if (!actor->region) {
    args[0].i32 = sp_abi_fail(actor, SP_E_BOUNDS, "blob_map: no linear memory");
    return NULL;
  }
  /* The knob SP_NO_FILE_MAPS makes any backend behave as one that cannot
   * map files (as CUDA), to exercise the read path on machines without one. */
  if (sp_backend_caps_of(actor->rt->backend).no_file_maps || actor->rt->no_file_maps) {
    /* bad arguments are named as on any backend; good ones are refused */
    int32_t st = sp_blob_map_check(&actor->blobs, actor->region, args[0].i32, (uint64_t)args[1].i64,
                                   (uint32_t)args[2].i32, (uint64_t)args[3].i64, actor->last_error,
                                   sizeof actor->last_error);
    args[0].i32 = st ? st : sp_abi_fail(actor, SP_E_UNSUPPORTED, "blob_map: backend %s cannot compute on file-backed "
                              "mappings; read the blob instead", sp_backend_name(actor->rt->backend));
    return NULL;
  }
  args[0].i32 = sp_actor_blob_map(actor, args[0].i32, (uint64_t)args[1].i64, (uint32_t)args[2].i32,
                                  (uint64_t)args[3].i64);
  return NULL;
}

wasmtime_error_t *sp_abi_blob_define(wasmtime_linker_t *linker) {
  wasmtime_error_t *err;
  if ((err = sp_abi_define_func(linker, "blob_open", "ii:i", import_blob_open))) return err;
  if ((err = sp_abi_define_func(linker, "blob_size", "i:I", import_blob_size))) return err;
  if ((err = sp_abi_define_func(linker, "blob_read", "iIii:I", import_blob_read))) return err;
  return sp_abi_define_func(linker, "blob_map", "iIiI:i", import_blob_map);
}
