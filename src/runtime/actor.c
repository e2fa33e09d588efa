/*
 * actor.c: one guest instance, its region and its backend binding.
 *
 * Creating an actor compiles the module (within the limits of
 * module_limits.h, inside instantiation's time limit), instantiates it
 * (Wasmtime asks our memory creator for the linear memory, so the region
 * exists by then), finds the region behind the exported memory, and binds
 * it to the backend. From then on a memory.grow extends the backend's view
 * before the guest can touch the new bytes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actor_staged.h"
#include "core/error.h"
#include "core/fault_guard.h"
#include "core/hash64.h"
#include "runtime/module_limits.h"
#include "runtime/runtime_impl.h"
#include "runtime/wasm_host.h"

/* The region's view, with the scratch share of the actor's budget. */
static sp_memory_view budget_view(const sp_actor_t *actor, const sp_region *region) {
  sp_memory_view view = sp_region_view(region);
  view.host_budget = (size_t)actor->budget.scratch;
  return view;
}

static sp_error_t *on_region_grow(void *ctx, sp_region *region) {
  sp_actor_t *actor = ctx;
  sp_memory_view view = budget_view(actor, region);
  return sp_backend_grow(actor->rt->backend, actor->binding, &view);
}

static sp_error_t *configure_wasi(sp_actor_t *actor, const sp_actor_options *opts) {
  wasi_config_t *wasi = wasi_config_new();
  if (!wasi) return sp_error_new("wasi: cannot create a config");
  if (opts->argc > 0 && !wasi_config_set_argv(wasi, (size_t)opts->argc, (const char **)opts->argv)) {
    wasi_config_delete(wasi);
    return sp_error_new("wasi: invalid argv");
  }
  for (int i = 0; i < opts->n_dirs; i++) {
    const char *dir = opts->dirs[i];
    if (!wasi_config_preopen_dir(wasi, dir, dir, true)) {
      wasi_config_delete(wasi);
      return sp_error_new("--dir %s: cannot open this directory", dir);
    }
  }
  if (opts->inherit_stdio) {
    wasi_config_inherit_stdin(wasi);
    wasi_config_inherit_stdout(wasi);
    wasi_config_inherit_stderr(wasi);
  }
  wasmtime_error_t *err = wasmtime_context_set_wasi(actor->context, wasi);
  sp_wasi_poll_origin(actor); /* absolute monotonic sleeps count from here */
  return err ? sp_error_from_wasmtime(err, "wasi") : NULL;
}

/* Finds the exported memory's region and binds it to the backend, which
 * gets the scratch share of the budget. */
static sp_error_t *bind_memory(sp_actor_t *actor) {
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(actor->context, &actor->instance, "memory", 6, &item) ||
      item.kind != WASMTIME_EXTERN_MEMORY)
    return NULL; /* a guest without memory can run, but cannot submit */
  actor->memory = item.of.memory;
  actor->has_memory = true;
  uint8_t *base = wasmtime_memory_data(actor->context, &actor->memory);
  actor->region = sp_region_registry_find(&actor->rt->regions, base);
  if (!actor->region)
    return sp_error_new("internal: the guest's memory at %p is not a samepage region", (void *)base);
  const sp_memory_budget *b = &actor->budget;
  if (b->linear && b->linear < actor->region->committed)
    return sp_error_new("the guest needs %zu bytes of memory at start, over its share of the memory limit: "
                        "%llu of %llu (the rest is for backend scratch and tables)",
                        actor->region->committed, (unsigned long long)b->linear, (unsigned long long)b->limit);
  actor->region->limit = (size_t)b->linear;
  sp_memory_view view = budget_view(actor, actor->region);
  sp_error_t *err = sp_backend_adopt(actor->rt->backend, &view, &actor->binding);
  if (err) return sp_error_wrap(err, "backend %s cannot adopt the guest's memory",
                                sp_backend_name(actor->rt->backend));
  actor->region->grow_hook = on_region_grow;
  actor->region->grow_hook_ctx = actor;
  return NULL;
}

/* Compiles the module within its limits (module_limits.h): the counts
 * the memory budget allows, and the deadline of instantiation (or the
 * default compile time limit). */
static sp_error_t *compile(sp_actor_t *actor, const uint8_t *wasm, size_t len, uint64_t memory_limit,
                           wasmtime_module_t **module) {
  sp_module_limits lim;
  sp_module_limits_for(memory_limit, &lim);
  sp_error_t *err = sp_module_check(wasm, len, &lim);
  if (err) return err;
  const sp_actor_limits *t = &actor->limits;
  return sp_module_compile(actor->rt->engine, wasm, len, t->timeout_ms ? t->deadline_ns : 0, t->timeout_ms,
                           module);
}

/* Wasmtime enforces the linear memory and table shares: one memory of at
 * most budget.linear bytes, at most SP_BUDGET_TABLES tables of
 * budget.table_elements each (a table.grow past it returns -1). */
static void limit_store(sp_actor_t *actor) {
  const sp_memory_budget *b = &actor->budget;
  if (!b->limit) return;
  wasmtime_store_limiter(actor->store, (int64_t)b->linear, (int64_t)b->table_elements, -1, SP_BUDGET_TABLES, 1);
}

static sp_error_t *instantiate(sp_actor_t *actor, const uint8_t *wasm, size_t len,
                               const sp_actor_options *opts) {
  wasmtime_module_t *module = NULL;
  sp_error_t *err = compile(actor, wasm, len, opts->memory_limit, &module);
  if (err) return err;
  err = sp_blob_table_open(&actor->blobs, opts->blobs, opts->n_blobs);
  if (!err) err = configure_wasi(actor, opts);
  if (!err) {
    limit_store(actor);
    wasm_trap_t *trap = NULL;
    wasmtime_error_t *werr =
        wasmtime_linker_instantiate(actor->rt->linker, actor->context, module, &actor->instance, &trap);
    if (werr) err = sp_error_from_wasmtime(werr, "instantiation failed");
    else if (trap) err = sp_error_set_kind(sp_error_from_trap(trap, "instantiation trapped"), SP_ERROR_TRAP);
    if (err && actor->limits.fired) sp_error_set_kind(err, SP_ERROR_TIMEOUT); /* the start function ran out of time */
  }
  wasmtime_module_delete(module);
  return err ? err : bind_memory(actor);
}

sp_error_t *sp_actor_new(sp_runtime_t *rt, const uint8_t *wasm, size_t wasm_len,
                         const sp_actor_options *opts, sp_actor_t **out) {
  sp_actor_options defaults = {0};
  if (!rt || !wasm || !out) return sp_error_new("sp_actor_new: NULL argument");
  if (!opts) opts = &defaults;
  if (wasm_len < 8 || memcmp(wasm, "\0asm", 4))
    return sp_error_with_kind(SP_ERROR_INVALID, "not a WebAssembly module (missing the \\0asm magic)");
  sp_actor_t *actor = calloc(1, sizeof *actor);
  if (!actor) return sp_error_new("out of memory");
  actor->rt = rt;
  actor->max_list_flops = opts->max_list_flops ? opts->max_list_flops : SP_DEFAULT_MAX_LIST_FLOPS;
  actor->max_list_bytes = opts->max_list_bytes ? opts->max_list_bytes : SP_DEFAULT_MAX_LIST_BYTES;
  actor->module_hash = sp_hash64_of(wasm, wasm_len);
  actor->budget = sp_memory_budget_split(opts->memory_limit);
  actor->store = wasmtime_store_new(rt->engine, actor, NULL);
  actor->context = wasmtime_store_context(actor->store);
  sp_limits_actor_init(actor, opts->timeout_ms, opts->cpu_timeout_ms, opts->timeout_exit_grace_ms);
  sp_error_t *err = instantiate(actor, wasm, wasm_len, opts);
  sp_limits_disarm(actor);
  if (err) {
    sp_actor_free(actor);
    return err;
  }
  *out = actor;
  return NULL;
}

void sp_actor_free(sp_actor_t *actor) {
  if (!actor) return;
  if (actor->store) sp_limits_disarm(actor);
  if (actor->region) actor->region->grow_hook = NULL;
  sp_fault_guard_remove_owner(&actor->blobs); /* before the region goes away */
  sp_backend_release(actor->rt->backend, actor->binding);
  /* Deleting the store drops the memory, whose finalizer frees the region. */
  if (actor->store) wasmtime_store_delete(actor->store);
  sp_blob_table_close(&actor->blobs);
  sp_annotation_table_free(&actor->annotations);
  free(actor->cmds);
  free(actor->weight_keys);
  sp_list_cache_free(&actor->list_cache);
  free(actor);
}

static sp_error_t *get_func(sp_actor_t *actor, const char *name, wasmtime_func_t *func) {
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(actor->context, &actor->instance, name, strlen(name), &item))
    return sp_error_new("the guest exports no function \"%s\"", name);
  if (item.kind != WASMTIME_EXTERN_FUNC) return sp_error_new("the guest's \"%s\" is not a function", name);
  *func = item.of.func;
  return NULL;
}

/* A granted file that changed on disk while mapped (fault_guard.h) makes
 * every later call fail: the guest may have computed on zeros. */
static sp_error_t *check_files(sp_actor_t *actor) {
  char msg[320];
  return sp_blob_changed(&actor->blobs, msg, sizeof msg) ? sp_error_new("%s", msg) : NULL;
}

/* A WASI exit is a normal end with a status; anything else is a failure:
 * a timeout when a time limit stopped the entry, else a trap. */
static sp_error_t *finish_call(const sp_actor_t *actor, wasmtime_error_t *werr, wasm_trap_t *trap,
                               const char *name, int *exit_code) {
  char what[160];
  snprintf(what, sizeof what, "guest trapped in %s", name);
  sp_error_kind_t kind = actor->limits.fired ? SP_ERROR_TIMEOUT : SP_ERROR_TRAP;
  if (trap) return sp_error_set_kind(sp_error_from_trap(trap, what), kind);
  if (werr) {
    int status;
    if (exit_code && wasmtime_error_exit_status(werr, &status)) {
      wasmtime_error_delete(werr);
      *exit_code = status;
      return NULL;
    }
    return sp_error_set_kind(sp_error_from_wasmtime(werr, what), kind);
  }
  return NULL;
}

sp_error_t *sp_actor_run_main(sp_actor_t *actor, int *exit_code) {
  wasmtime_func_t func;
  sp_error_t *err = check_files(actor);
  if (!err) err = get_func(actor, "_start", &func);
  if (err) return err;
  int code = 0;
  wasm_trap_t *trap = NULL;
  sp_limits_arm(actor);
  wasmtime_error_t *werr = wasmtime_func_call(actor->context, &func, NULL, 0, NULL, 0, &trap);
  sp_limits_disarm(actor);
  err = finish_call(actor, werr, trap, "_start", &code);
  sp_error_t *changed = check_files(actor);
  if (changed) sp_error_free(err), err = changed;
  if (!err && exit_code) *exit_code = code;
  return err;
}

static sp_error_t *convert_args(wasm_functype_t *ty, const int64_t *args, size_t nargs,
                                wasmtime_val_t *vals, const char *name) {
  const wasm_valtype_vec_t *params = wasm_functype_params(ty);
  if (params->size != nargs)
    return sp_error_new("\"%s\" takes %zu arguments, got %zu", name, params->size, nargs);
  for (size_t i = 0; i < nargs; i++) {
    wasm_valkind_t kind = wasm_valtype_kind(params->data[i]);
    if (kind == WASM_I32) vals[i] = (wasmtime_val_t){.kind = WASMTIME_I32, .of.i32 = (int32_t)args[i]};
    else if (kind == WASM_I64) vals[i] = (wasmtime_val_t){.kind = WASMTIME_I64, .of.i64 = args[i]};
    else return sp_error_new("\"%s\" parameter %zu is not an integer", name, i);
  }
  return NULL;
}

sp_error_t *sp_actor_call(sp_actor_t *actor, const char *name, const int64_t *args, size_t nargs,
                          int64_t *result) {
  wasmtime_func_t func;
  sp_error_t *err = check_files(actor);
  if (!err) err = get_func(actor, name, &func);
  if (err) return err;
  wasm_functype_t *ty = wasmtime_func_type(actor->context, &func);
  size_t nresults = wasm_functype_results(ty)->size;
  wasmtime_val_t vals[16], out = {0};
  if (nargs > 16 || nresults > 1) err = sp_error_new("\"%s\" has an unsupported signature", name);
  if (!err) err = convert_args(ty, args, nargs, vals, name);
  wasm_functype_delete(ty);
  if (err) return err;
  wasm_trap_t *trap = NULL;
  sp_limits_arm(actor);
  wasmtime_error_t *werr = wasmtime_func_call(actor->context, &func, vals, nargs, &out, nresults, &trap);
  sp_limits_disarm(actor);
  err = finish_call(actor, werr, trap, name, NULL);
  sp_error_t *changed = check_files(actor);
  if (changed) sp_error_free(err), err = changed;
  if (err) return err;
  if (result) *result = out.kind == WASMTIME_I64 ? out.of.i64 : out.kind == WASMTIME_I32 ? out.of.i32 : 0;
  return NULL;
}

void sp_actor_memory(sp_actor_t *actor, uint8_t **base, size_t *size) {
  *base = actor->has_memory ? wasmtime_memory_data(actor->context, &actor->memory) : NULL;
  *size = actor->has_memory ? wasmtime_memory_data_size(actor->context, &actor->memory) : 0;
}

void *sp_actor_backend_base(sp_actor_t *actor) {
  if (!actor || !actor->region) return NULL;
  sp_memory_view view = sp_region_view(actor->region);
  return sp_backend_device_base(actor->rt->backend, actor->binding, &view);
}

/* The first version's struct ends here; later fields are optional. */
#define ACTOR_STATS_V1_SIZE (offsetof(struct sp_actor_stats, backend_ms) + sizeof(double))

sp_error_t *sp_actor_stats(const sp_actor_t *actor, struct sp_actor_stats *out) {
  if (!actor || !out) return sp_error_with_kind(SP_ERROR_INVALID, "sp_actor_stats: NULL argument");
  return sp_stats_fill(out, &actor->stats, sizeof actor->stats, ACTOR_STATS_V1_SIZE, "sp_actor_stats");
}

/* A host-side submit, through the zero-copy path or (staged) a copy. */
static sp_error_t *submit_host(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count, bool staged) {
  if (!actor || (!cmds && count)) return sp_error_new("sp_actor_submit: NULL argument");
  sp_error_t *changed = check_files(actor);
  if (changed) return changed;
  if (count > actor->rt->max_cmds)
    return sp_error_with_status(SP_E_LIMIT, "count: %u commands exceeds the limit of %u", count, actor->rt->max_cmds);
  sp_cmd *copy = malloc(((size_t)count + 1) * sizeof *copy);
  if (!copy) return sp_error_new("out of memory");
  if (count) memcpy(copy, cmds, (size_t)count * sizeof *copy);
  sp_status st = sp_abi_run(actor, copy, count, 0, 0, staged);
  free(copy);
  return st ? sp_error_with_status(st, "%s (status %d)", actor->last_error, st) : NULL;
}

sp_error_t *sp_actor_submit(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count) {
  return submit_host(actor, cmds, count, false);
}

sp_error_t *sp_actor_submit_staged(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count) {
  return submit_host(actor, cmds, count, true);
}
