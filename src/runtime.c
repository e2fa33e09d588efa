/*
 * runtime.c: sp_runtime_t, one Wasmtime engine + linker + compute backend
 * shared by all the actors created from it.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "runtime_impl.h"
#include "wasm_host.h"

static sp_error_t *pick_backend(const char *name, unsigned threads, sp_backend **out) {
  if (!name || !strcmp(name, "auto") || !strcmp(name, "cpu")) return sp_backend_cpu_new(threads, out);
  return sp_error_new("unknown backend \"%s\" (expected cpu or auto)", name);
}

static sp_error_t *make_linker(sp_runtime_t *rt) {
  rt->linker = wasmtime_linker_new(rt->engine);
  if (!rt->linker) return sp_error_new("wasmtime: cannot create a linker");
  wasmtime_error_t *err = wasmtime_linker_define_wasi(rt->linker);
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
  sp_region_registry_init(&rt->regions, alignment);
  sp_error_t *err = pick_backend(opts->backend, opts->threads, &rt->backend);
  if (!err) err = sp_wasm_engine_new(&rt->regions, &rt->engine);
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
  if (rt->linker) wasmtime_linker_delete(rt->linker);
  if (rt->engine) wasm_engine_delete(rt->engine);
  sp_backend_free(rt->backend);
  sp_region_registry_deinit(&rt->regions);
  free(rt);
}

const char *sp_runtime_backend_name(const sp_runtime_t *rt) {
  return rt ? sp_backend_name(rt->backend) : "none";
}
