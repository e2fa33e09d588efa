/*
 * runtime.c: sp_runtime_t, one Wasmtime engine + linker + compute backend
 * shared by all the actors created from it.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fault_guard.h"
#include "core/written_pages.h"
#include "runtime/runtime_impl.h"
#include "backend/worker/worker.h"
#include "runtime/wasm_host.h"

/* The backend named in opts, in this process or behind worker processes. */
static sp_error_t *pick_backend(sp_runtime_t *rt, const sp_runtime_options *opts) {
  sp_backend_options bo = {.version = SP_BACKEND_OPS_VERSION};
  if (opts->knobs) bo.knobs = *opts->knobs;
  else sp_knobs_defaults(&bo.knobs);
  rt->no_file_maps = bo.knobs.no_file_maps;
  const char *res = opts->residency, *iso = opts->isolation ? opts->isolation : bo.knobs.isolation;
  if (res && strcmp(res, "none") && strcmp(res, "weights"))
    return sp_error_new("unknown residency \"%s\" (expected none or weights)", res);
  if (iso && iso[0] && strcmp(iso, "none") && strcmp(iso, "process"))
    return sp_error_new("unknown isolation \"%s\" (expected none or process)", iso);
  bo.residency = !res || !strcmp(res, "weights");
  bo.graphs = !bo.knobs.cuda_no_graphs;
  const char *name = opts->backend;
  if (name && strcmp(name, "cpu") && strcmp(name, "cuda") && strcmp(name, "vulkan") && strcmp(name, "auto"))
    return sp_error_new("unknown backend \"%s\" (expected cpu, cuda, vulkan or auto)", name);
  if (iso && !strcmp(iso, "process")) {
    rt->regions.shared = true; /* workers map the guests' memory too */
    return sp_backend_worker_new(name, &bo, opts->threads, &rt->backend);
  }
  return sp_backend_load(name, &bo, opts->threads, &rt->backend);
}

/* The guests' linker: WASI, with our poll_oneoff over WASI's (sleeps end
 * at the deadline: wasi_poll.h), and the "samepage" imports. WASI's own
 * poll_oneoff stays reachable through a second linker holding WASI alone. */
static sp_error_t *make_linker(sp_runtime_t *rt) {
  rt->linker = wasmtime_linker_new(rt->engine);
  rt->wasi_linker = wasmtime_linker_new(rt->engine);
  if (!rt->linker || !rt->wasi_linker) return sp_error_new("wasmtime: cannot create a linker");
  wasmtime_error_t *err = wasmtime_linker_define_wasi(rt->linker);
  if (!err) err = wasmtime_linker_define_wasi(rt->wasi_linker);
  wasmtime_linker_allow_shadowing(rt->linker, true);
  if (!err) err = sp_wasi_poll_define(rt->linker);
  wasmtime_linker_allow_shadowing(rt->linker, false);
  if (!err) err = sp_abi_define(rt->linker);
  return err ? sp_error_from_wasmtime(err, "defining host imports") : NULL;
}

sp_error_t *sp_runtime_new(const sp_runtime_options *opts, sp_runtime_t **out) {
  sp_runtime_options defaults = {0};
  if (!opts) opts = &defaults;
  if (!out) return sp_error_new("sp_runtime_new: out is NULL");
  size_t alignment = opts->region_alignment ? opts->region_alignment : SP_REGION_DEFAULT_ALIGNMENT;
  if (alignment < sp_page_size() || (alignment & (alignment - 1)))
    return sp_error_new("region alignment %zu must be a power of two >= the page size (%zu)",
                        alignment, sp_page_size());
  sp_runtime_t *rt = calloc(1, sizeof *rt);
  if (!rt) return sp_error_new("out of memory");
  rt->max_cmds = opts->max_cmds ? opts->max_cmds : SP_DEFAULT_MAX_CMDS;
  rt->pagemap_fd = -1;
  pthread_mutex_init(&rt->poll_helper_lock, NULL);
  sp_region_registry_init(&rt->regions, alignment);
  sp_error_t *err = pick_backend(rt, opts);
  /* Batching needs the backend's batching layer: a worker-process backend
   * has none (lists of different workers never meet), nor has CUDA yet. */
  if (!err && opts->batch_window_us && sp_backend_batches(rt->backend)) {
    err = sp_batcher_new(rt->backend, opts->batch_window_us, &rt->batcher);
    rt->pagemap_fd = sp_pagemap_open(); /* without it no weights are proven shared: batches still run */
  }
  if (!err) err = sp_wasm_engine_new(&rt->regions, &rt->engine);
  /* After the engine, so our SIGBUS handler runs before Wasmtime's and
   * chains to it for faults that are not a shrunken mapped file. */
  if (!err) sp_fault_guard_install();
  if (!err) err = make_linker(rt);
  if (err) {
    sp_runtime_free(rt);
    return err;
  }
  *out = rt;
  return NULL;
}

void sp_runtime_free(sp_runtime_t *rt) {
  if (!rt) return;
  sp_limits_runtime_stop(rt);
  if (rt->linker) wasmtime_linker_delete(rt->linker);
  if (rt->wasi_linker) wasmtime_linker_delete(rt->wasi_linker);
  if (rt->poll_helper) wasmtime_module_delete(rt->poll_helper);
  if (rt->engine) wasm_engine_delete(rt->engine);
  sp_batcher_free(rt->batcher);
  if (rt->pagemap_fd >= 0) close(rt->pagemap_fd);
  sp_backend_free(rt->backend);
  sp_region_registry_deinit(&rt->regions);
  pthread_mutex_destroy(&rt->poll_helper_lock);
  free(rt);
}

const char *sp_runtime_isolation(const sp_runtime_t *rt) {
  return rt && rt->regions.shared ? "process" : "none";
}

const char *sp_runtime_backend_name(const sp_runtime_t *rt) {
  return rt ? sp_backend_name(rt->backend) : "none";
}

sp_error_t *sp_stats_fill(void *out, const void *full, size_t full_size, size_t min_size, const char *fn) {
  uint32_t size;
  memcpy(&size, out, sizeof size);
  if (size < min_size)
    return sp_error_with_kind(SP_ERROR_INVALID, "%s: size is %" PRIu32 "; set it to sizeof the struct (%zu)", fn,
                              size, full_size);
  size_t known = size < full_size ? size : full_size;
  memcpy((uint8_t *)out + sizeof size, (const uint8_t *)full + sizeof size, known - sizeof size);
  if (size > full_size) memset((uint8_t *)out + full_size, 0, size - full_size);
  return NULL;
}

/* The first version's struct ends here; later fields are optional. */
#define RUNTIME_STATS_V1_SIZE (offsetof(struct sp_runtime_stats, device_total_bytes) + sizeof(uint64_t))

sp_error_t *sp_runtime_stats(const sp_runtime_t *rt, struct sp_runtime_stats *out) {
  if (!rt || !out) return sp_error_with_kind(SP_ERROR_INVALID, "sp_runtime_stats: NULL argument");
  sp_residency_stats st = sp_backend_residency(rt->backend);
  struct sp_runtime_stats full = {
      .resident_bytes = st.bytes,
      .resident_copies = st.copies,
      .resident_ms = st.ms,
      .shared_hits = st.shared_hits,
      .shared_bytes = st.shared_bytes,
      .repacked_bytes = st.repacked_bytes,
      .local_bytes = st.local_bytes,
      .local_transfers = st.transfers,
      .local_transfer_bytes = st.transfer_bytes,
      .local_transfer_ms = st.transfer_ms,
  };
  uint64_t used = 0, total = 0;
  full.device_known = sp_backend_device_memory(rt->backend, &used, &total);
  if (full.device_known) full.device_used_bytes = used, full.device_total_bytes = total;
  if (rt->batcher) {
    sp_batcher_stats bs;
    sp_batcher_stats_get(rt->batcher, &bs);
    full.batching = true, full.batch_rounds = bs.rounds, full.batch_lists = bs.lists, full.batches = bs.batches;
    full.batched_lists = bs.batched_lists, full.batch_largest = bs.largest_round, full.batch_wait_ms = bs.wait_ms;
  }
  return sp_stats_fill(out, &full, sizeof full, RUNTIME_STATS_V1_SIZE, "sp_runtime_stats");
}
