/*
 * abi.c: the "samepage" import module (see samepage_abi.h) and the one path
 * every command list takes: copy out of guest memory, validate all, check
 * backend support, run, wait. Nothing a guest passes here can abort the
 * process: every failure becomes a status code plus a message the guest can
 * read with last_error.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/dtype.h"
#include "core/error.h"
#include "runtime/range_identity.h"
#include "runtime/runtime_impl.h"
#include "core/validate.h"

sp_status sp_abi_fail(sp_actor_t *actor, sp_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(actor->last_error, sizeof actor->last_error, fmt, ap);
  va_end(ap);
  return st;
}

static bool reserve_cmds(sp_actor_t *actor, uint32_t count) {
  if (count <= actor->cmds_cap) return true;
  sp_cmd *grown = realloc(actor->cmds, (size_t)count * sizeof *grown);
  if (!grown) return false;
  actor->cmds = grown;
  actor->cmds_cap = count;
  return true;
}

static bool reserve_keys(sp_actor_t *actor, uint32_t count) {
  if (count <= actor->weight_keys_cap) return true;
  uint64_t *grown = realloc(actor->weight_keys, (size_t)count * sizeof *grown);
  if (!grown) return false;
  actor->weight_keys = grown;
  actor->weight_keys_cap = count;
  return true;
}

/* ---- the staged (copy) path, kept to measure what zero-copy saves ---- */

typedef struct staging {
  uint8_t *buf;
  size_t size;
} staging;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Copies every tensor of one command into a fresh buffer, rewrites offsets
 * to point there, runs it, and copies the destination back. */
static sp_error_t *run_staged_cmd(sp_actor_t *actor, const sp_cmd *orig) {
  sp_cmd cmd = *orig;
  sp_tensor *slots[1 + SP_MAX_SRC] = {&cmd.dst, &cmd.src[0], &cmd.src[1], &cmd.src[2], &cmd.src[3]};
  uint64_t extents[1 + SP_MAX_SRC] = {0};
  size_t total = 0;
  for (int i = 0; i < 1 + SP_MAX_SRC; i++) {
    if (slots[i]->dtype == SP_DTYPE_NONE) continue;
    extents[i] = sp_tensor_extent(slots[i]);
    total += align64(extents[i]);
  }
  /* Under process isolation the staging copy must be shared memory too. */
  sp_region *shared = NULL;
  size_t page = sp_page_size(), span = (align64(total ? total : 64) + page - 1) / page * page;
  if (actor->region->fd >= 0) {
    sp_error_t *err = sp_region_new_shared(page, span, span, 0, &shared);
    if (err) return sp_error_wrap(err, "staging");
  }
  /* Page aligned and a whole number of pages, as every view a backend
   * adopts (backend.h): a device backend imports it as it would guest
   * memory, and the Vulkan import refuses anything less. */
  staging st = {shared ? shared->base : aligned_alloc(page, span), span};
  if (!st.buf) return sp_error_new("staging: out of memory for %zu bytes", span);
  size_t at = 0;
  uint32_t dst_guest = cmd.dst.offset;
  for (int i = 0; i < 1 + SP_MAX_SRC; i++) {
    if (slots[i]->dtype == SP_DTYPE_NONE) continue;
    memcpy(st.buf + at, actor->region->base + slots[i]->offset, extents[i]);
    slots[i]->offset = (uint32_t)at;
    at += align64(extents[i]);
  }
  sp_memory_view view = shared ? sp_region_view(shared) : (sp_memory_view){st.buf, st.size, st.size, false, -1, 0};
  view.host_budget = (size_t)actor->budget.scratch;
  void *binding = NULL;
  sp_backend *be = actor->rt->backend;
  sp_error_t *err = sp_backend_adopt(be, &view, &binding);
  if (!err) err = sp_backend_submit(be, binding, &cmd, 1, false);
  if (!err) err = sp_backend_wait(be, binding);
  sp_backend_release(be, binding);
  if (!err && cmd.dst.dtype != SP_DTYPE_NONE)
    memcpy(actor->region->base + dst_guest, st.buf + cmd.dst.offset, extents[0]);
  if (shared) sp_region_free(shared);
  else free(st.buf);
  return err;
}

/* ---- the common path ---- */

/* Through the batcher. Where company is likely, the list's weights are
 * proven first (range_identity.h), so that actors mapping one model share
 * one read of each weight; the proof is this actor's own memory, made in
 * its own thread while nothing else touches that memory. */
static sp_error_t *run_batched(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count, bool same) {
  sp_runtime_t *rt = actor->rt;
  const uint64_t *keys = NULL;
  if (rt->pagemap_fd >= 0 && sp_batcher_takes(cmds, count) && sp_batcher_expects_company(rt->batcher) &&
      reserve_keys(actor, count)) {
    sp_list_weight_identities(&actor->blobs, actor->region, rt->pagemap_fd, cmds, count, actor->weight_keys);
    keys = actor->weight_keys;
  }
  return sp_batcher_run(rt->batcher, actor->binding, cmds, count, same, keys);
}

/* same: cmds are the list of the binding's last successful submit. */
static sp_error_t *run_validated(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count, bool same, bool staged) {
  sp_backend *be = actor->rt->backend;
  if (!staged && actor->rt->batcher) return run_batched(actor, cmds, count, same);
  if (!staged) {
    sp_error_t *err = sp_backend_submit(be, actor->binding, cmds, count, same);
    return err ? err : sp_backend_wait(be, actor->binding);
  }
  for (uint32_t i = 0; i < count; i++) {
    sp_error_t *err = run_staged_cmd(actor, &cmds[i]);
    if (err) return err;
  }
  return NULL;
}

sp_status sp_abi_run(sp_actor_t *actor, sp_cmd *cmds, uint32_t count, uint64_t list_addr,
                     uint64_t list_bytes, bool staged) {
  if (!actor->region || !actor->binding)
    return sp_abi_fail(actor, SP_E_BACKEND, "this actor has no linear memory bound to a backend");
  if (sp_blob_changed(&actor->blobs, actor->last_error, sizeof actor->last_error)) return SP_E_BACKEND;
  sp_validate_ctx ctx = {actor->region->committed, list_addr, list_bytes, actor->rt->max_cmds};
  double t0 = sp_now_ms();
  if (count > ctx.max_cmds)
    return sp_abi_fail(actor, SP_E_LIMIT, "count: %" PRIu32 " commands exceeds the limit of %" PRIu32,
                count, ctx.max_cmds);
  sp_list_key key = sp_list_key_make(&ctx, actor->frozen, actor->n_frozen, actor->device_local, actor->n_device_local);
  key.max_flops = actor->max_list_flops, key.max_bytes = actor->max_list_bytes;
  const sp_cmd *known = sp_list_cache_find(&actor->list_cache, cmds, count, &key);
  bool caching = !known && sp_list_cache_begin(&actor->list_cache, cmds, count);
  sp_list_work work = {0};
  for (uint32_t i = 0; i < count && !known; i++) {
    sp_status st = sp_validate_cmd(&ctx, &cmds[i], i, actor->last_error, sizeof actor->last_error);
    if (!st) st = sp_validate_frozen(actor->frozen, actor->n_frozen, &cmds[i], i, actor->last_error,
                                     sizeof actor->last_error);
    if (!st) st = sp_validate_device_local(actor->device_local, actor->n_device_local, &cmds[i], i,
                                           actor->last_error, sizeof actor->last_error);
    if (st) return st;
    /* Summed as we go, so the message names where the cap was passed. */
    sp_list_work_add(&work, &cmds[i]);
    st = sp_list_work_check(&work, actor->max_list_flops, actor->max_list_bytes, i, actor->last_error,
                            sizeof actor->last_error);
    if (st) return st;
    if (!sp_backend_supports(actor->rt->backend, &cmds[i]))
      return sp_abi_fail(actor, SP_E_UNSUPPORTED, "cmd[%" PRIu32 "]: op %" PRIu32 " on %s is not supported by backend %s",
                  i, cmds[i].op, sp_dtype_name(cmds[i].src[0].dtype), sp_backend_name(actor->rt->backend));
  }
  if (caching) sp_list_cache_commit(&actor->list_cache, cmds, &key);
  double t1 = sp_now_ms();
  /* The one "same list as last time" decision (backend.h, submit): the
   * cache's validated copy has not changed since its generation was last
   * submitted successfully. known: the same bytes passed validation last
   * time; run what it made of them. */
  uint64_t generation = known || caching ? actor->list_cache.generation : 0;
  bool same = known && !staged && generation == actor->submitted_generation;
  actor->submitted_generation = 0;
  sp_error_t *err = run_validated(actor, known ? known : cmds, count, same, staged);
  if (!err && !staged) actor->submitted_generation = generation;
  struct sp_actor_stats *ss = &actor->stats;
  ss->lists++, ss->commands += count, ss->validate_ms += t1 - t0, ss->backend_ms += sp_now_ms() - t1;
  if (err && sp_blob_recheck_sizes(&actor->blobs)) { /* the real cause, named as the fault guard names it */
    sp_error_free(err);
    sp_blob_changed(&actor->blobs, actor->last_error, sizeof actor->last_error);
    return SP_E_BACKEND;
  }
  if (err) {
    /* An error found while running (an index out of range) carries its own
     * status; anything else is the backend's failure. */
    sp_status st = sp_error_status(err) ? (sp_status)sp_error_status(err) : SP_E_BACKEND;
    sp_abi_fail(actor, st, "backend %s: %s", sp_backend_name(actor->rt->backend), sp_error_message(err));
    sp_error_free(err);
    return st;
  }
  /* A mapped file that shrank while the list ran (fault_guard.h). */
  if (sp_blob_changed(&actor->blobs, actor->last_error, sizeof actor->last_error)) return SP_E_BACKEND;
  actor->last_error[0] = '\0';
  return SP_OK;
}

/* Copies a list out of guest memory (so the guest cannot change it after
 * validation) and runs it. */
static sp_status submit_from_guest(sp_actor_t *actor, uint32_t addr, uint32_t bytes) {
  if (!actor->region) return sp_abi_fail(actor, SP_E_BACKEND, "this actor has no linear memory");
  uint64_t committed = actor->region->committed;
  if ((uint64_t)addr + bytes > committed)
    return sp_abi_fail(actor, SP_E_BOUNDS,
                "list: bytes [0x%" PRIx32 ", 0x%" PRIx64 ") are outside committed memory (%" PRIu64 " bytes)",
                addr, (uint64_t)addr + bytes, committed);
  sp_cmd_list_header hdr = {0};
  sp_validate_ctx ctx = {committed, addr, bytes, actor->rt->max_cmds};
  if (bytes >= sizeof hdr) memcpy(&hdr, actor->region->base + addr, sizeof hdr);
  uint32_t count = 0;
  sp_status st = sp_validate_header(&ctx, &hdr, &count, actor->last_error, sizeof actor->last_error);
  if (st) return st;
  if (!reserve_cmds(actor, count))
    return sp_abi_fail(actor, SP_E_LIMIT, "list: no host memory for %" PRIu32 " commands", count);
  if (count) memcpy(actor->cmds, actor->region->base + addr + sizeof hdr, (size_t)count * sizeof(sp_cmd));
  return sp_abi_run(actor, actor->cmds, count, addr, bytes, false);
}

/* ---- the import functions (unchecked calling convention for speed) ---- */

sp_actor_t *sp_abi_caller_actor(wasmtime_caller_t *caller) {
  return wasmtime_context_get_data(wasmtime_caller_context(caller));
}

static wasm_trap_t *import_abi_version(void *env, wasmtime_caller_t *caller,
                                       wasmtime_val_raw_t *args, size_t n) {
  args[0].i32 = SP_ABI_VERSION;
  return NULL;
}

static wasm_trap_t *import_submit(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                                  size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = submit_from_guest(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32);
  return NULL;
}

static wasm_trap_t *import_last_error(void *env, wasmtime_caller_t *caller,
                                      wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  uint32_t addr = (uint32_t)args[0].i32, cap = (uint32_t)args[1].i32;
  size_t len = strlen(actor->last_error);
  if (!actor->region || (uint64_t)addr + cap > actor->region->committed) {
    args[0].i32 = SP_E_BOUNDS;
    return NULL;
  }
  if (cap) {
    size_t copy = len < cap - 1 ? len : cap - 1;
    memcpy(actor->region->base + addr, actor->last_error, copy);
    actor->region->base[addr + copy] = '\0';
  }
  args[0].i32 = (int32_t)len;
  return NULL;
}

/* ---- freeze / flush: immutable ranges and the coherence rule ---- */

/* Checks [addr, addr + len) is a non-empty committed range. */
static sp_status check_range(sp_actor_t *actor, const char *what, uint32_t addr, uint32_t len) {
  if (!actor->region) return sp_abi_fail(actor, SP_E_BOUNDS, "%s: no linear memory", what);
  if (len == 0 || (uint64_t)addr + len > actor->region->committed)
    return sp_abi_fail(actor, SP_E_BOUNDS, "%s: [0x%" PRIx32 ", +%" PRIu32 ") is empty or outside committed memory",
                       what, addr, len);
  return SP_OK;
}

/* freeze(addr, len): from now on no command may write the range, and the
 * backend may keep a device copy of it (counted in the residency stats). */
static sp_status freeze_range(sp_actor_t *actor, uint32_t addr, uint32_t len) {
  sp_status st = check_range(actor, "freeze", addr, len);
  if (st) return st;
  for (uint32_t i = 0; i < actor->n_frozen; i++) {
    const sp_range *f = &actor->frozen[i];
    if (addr < f->addr + f->len && f->addr < (uint64_t)addr + len)
      return sp_abi_fail(actor, SP_E_ALIAS, "freeze: [0x%" PRIx32 ", +%" PRIu32 ") overlaps a frozen range", addr, len);
  }
  for (uint32_t i = 0; i < actor->n_device_local; i++) {
    const sp_range *d = &actor->device_local[i];
    if (addr < d->addr + d->len && d->addr < (uint64_t)addr + len)
      return sp_abi_fail(actor, SP_E_ALIAS, "freeze: [0x%" PRIx32 ", +%" PRIu32 ") overlaps a device-local range", addr, len);
  }
  if (actor->n_frozen == SP_MAX_FROZEN)
    return sp_abi_fail(actor, SP_E_LIMIT, "freeze: at most %d frozen ranges", SP_MAX_FROZEN);
  /* Proving the bytes (a pagemap look-up, or one comparison with the file)
   * is worth it only where one device copy can then serve every actor. */
  uint64_t identity = sp_backend_caps_of(actor->rt->backend).shares_frozen
                          ? sp_range_identity(&actor->blobs, actor->region, addr, len)
                          : 0;
  sp_error_t *err = sp_backend_freeze(actor->rt->backend, actor->binding, addr, len, identity);
  if (err && sp_error_status(err) == SP_E_UNSUPPORTED) {
    /* The device has no room for a copy of file-mapped bytes, and cannot
     * read file-backed pages in place: read the file into the range
     * instead (mapped mode, slower), as the residency rule promises. */
    fprintf(stderr, "samepage: %s: reading the file into guest memory instead (mapped mode)\n", sp_error_message(err));
    sp_error_free(err);
    err = sp_actor_file_maps_to_reads(actor, addr, len);
    if (!err) err = sp_backend_freeze(actor->rt->backend, actor->binding, addr, len, 0);
  }
  if (err) {
    sp_abi_fail(actor, SP_E_BACKEND, "freeze: %s", sp_error_message(err));
    sp_error_free(err);
    return SP_E_BACKEND;
  }
  actor->frozen[actor->n_frozen++] = (sp_range){addr, len};
  return SP_OK;
}

/* flush(addr, len): the guest rewrote part of a frozen or device-local
 * range with plain stores; the backend refreshes its copy before the next
 * submit. */
static sp_status flush_range(sp_actor_t *actor, uint32_t addr, uint32_t len) {
  sp_status st = check_range(actor, "flush", addr, len);
  if (st) return st;
  bool inside = sp_abi_device_local_find(actor, addr, len) >= 0;
  for (uint32_t i = 0; i < actor->n_frozen && !inside; i++) {
    const sp_range *f = &actor->frozen[i];
    inside = addr >= f->addr && (uint64_t)addr + len <= f->addr + f->len;
  }
  if (!inside)
    return sp_abi_fail(actor, SP_E_PARAM, "flush: [0x%" PRIx32 ", +%" PRIu32 ") is not inside one frozen range nor one device-local range",
                       addr, len);
  sp_error_t *err = sp_backend_flush(actor->rt->backend, actor->binding, addr, len);
  if (!err) return SP_OK;
  sp_abi_fail(actor, SP_E_BACKEND, "flush: %s", sp_error_message(err));
  sp_error_free(err);
  return SP_E_BACKEND;
}

static wasm_trap_t *import_freeze(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                                  size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = freeze_range(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32);
  return NULL;
}

static wasm_trap_t *import_flush(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                                 size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = flush_range(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32);
  return NULL;
}

static wasm_valtype_t *valtype_of(char c) {
  return c == 'I' ? wasm_valtype_new_i64() : wasm_valtype_new_i32();
}

/* Defines samepage.<name> with a signature such as "iiI:i" (i = i32,
 * I = i64; params before the colon, results after). */
wasmtime_error_t *sp_abi_define_func(wasmtime_linker_t *linker, const char *name, const char *sig,
                                     wasmtime_func_unchecked_callback_t cb) {
  const char *colon = strchr(sig, ':');
  size_t n_params = (size_t)(colon - sig), n_results = strlen(colon + 1);
  wasm_valtype_t *params[8], *results[1];
  for (size_t i = 0; i < n_params; i++) params[i] = valtype_of(sig[i]);
  for (size_t i = 0; i < n_results; i++) results[i] = valtype_of(colon[1 + i]);
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, n_params, params);
  wasm_valtype_vec_new(&rv, n_results, results);
  wasm_functype_t *ty = wasm_functype_new(&pv, &rv);
  wasmtime_error_t *err = wasmtime_linker_define_func_unchecked(
      linker, "samepage", 8, name, strlen(name), ty, cb, NULL, NULL);
  wasm_functype_delete(ty);
  return err;
}

wasmtime_error_t *sp_abi_define(wasmtime_linker_t *linker) {
  wasmtime_error_t *err;
  if ((err = sp_abi_define_func(linker, "abi_version", ":i", import_abi_version))) return err;
  if ((err = sp_abi_define_func(linker, "submit", "ii:i", import_submit))) return err;
  if ((err = sp_abi_define_func(linker, "last_error", "ii:i", import_last_error))) return err;
  if ((err = sp_abi_define_func(linker, "freeze", "ii:i", import_freeze))) return err;
  if ((err = sp_abi_define_func(linker, "flush", "ii:i", import_flush))) return err;
  if ((err = sp_abi_device_local_define(linker))) return err;
  if ((err = sp_abi_annotate_define(linker))) return err;
  return sp_abi_blob_define(linker);
}
