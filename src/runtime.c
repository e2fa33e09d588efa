/*
 * runtime.c: sp_runtime_t, one Wasmtime engine + linker + compute backend
 * shared by all the actors created from it.
 */
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fault_guard.h"
#include "runtime_impl.h"
#include "backend/worker/worker.h"
#include "wasm_host.h"

/* The backend named in opts, in this process or behind worker processes. */
static sp_error_t *pick_backend(sp_runtime_t *rt, const sp_runtime_options *opts) {
  const char *res = opts->residency, *iso = opts->isolation ? opts->isolation : getenv("SP_ISOLATION");
  if (res && strcmp(res, "none") && strcmp(res, "weights"))
    return sp_error_new("unknown residency \"%s\" (expected none or weights)", res);
  if (iso && iso[0] && strcmp(iso, "none") && strcmp(iso, "process"))
    return sp_error_new("unknown isolation \"%s\" (expected none or process)", iso);
  sp_backend_options bo = {.version = SP_BACKEND_OPS_VERSION,
                           .residency = !res || !strcmp(res, "weights"),
                           .graphs = !getenv("SP_CUDA_NO_GRAPHS")};
  const char *name = opts->backend;
  if (name && strcmp(name, "cpu") && strcmp(name, "cuda") && strcmp(name, "auto"))
    return sp_error_new("unknown backend \"%s\" (expected cpu, cuda or auto)", name);
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
  pthread_mutex_init(&rt->poll_helper_lock, NULL);
  sp_region_registry_init(&rt->regions, alignment);
  sp_error_t *err = pick_backend(rt, opts);
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

void sp_runtime_residency(const sp_runtime_t *rt, uint64_t *bytes, uint64_t *copies, double *ms) {
  sp_residency_stats st = sp_backend_residency(rt ? rt->backend : NULL);
  if (bytes) *bytes = st.bytes;
  if (copies) *copies = st.copies;
  if (ms) *ms = st.ms;
}

void sp_runtime_residency_shared(const sp_runtime_t *rt, uint64_t *hits, uint64_t *bytes) {
  sp_residency_stats st = sp_backend_residency(rt ? rt->backend : NULL);
  if (hits) *hits = st.shared_hits;
  if (bytes) *bytes = st.shared_bytes;
}

uint64_t sp_runtime_repacked_bytes(const sp_runtime_t *rt) {
  return sp_backend_residency(rt ? rt->backend : NULL).repacked_bytes;
}

bool sp_runtime_device_memory(const sp_runtime_t *rt, uint64_t *used, uint64_t *total) {
  uint64_t u, t;
  bool known = sp_backend_device_memory(rt ? rt->backend : NULL, &u, &t);
  if (used) *used = u;
  if (total) *total = t;
  return known;
}

void sp_runtime_device_local(const sp_runtime_t *rt, uint64_t *bytes, uint64_t *transfers,
                             uint64_t *transfer_bytes, double *ms) {
  sp_residency_stats st = sp_backend_residency(rt ? rt->backend : NULL);
  if (bytes) *bytes = st.local_bytes;
  if (transfers) *transfers = st.transfers;
  if (transfer_bytes) *transfer_bytes = st.transfer_bytes;
  if (ms) *ms = st.transfer_ms;
}
