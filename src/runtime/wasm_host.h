/*
 * wasm_host.h: Wasmtime engine configuration and message formatting.
 */
#ifndef SP_WASM_HOST_H
#define SP_WASM_HOST_H

#include <wasmtime.h>

#include "runtime/memory_creator.h"
#include "samepage.h"

/* Creates an engine whose linear memories come from `regions`: static
 * 4 GiB reservations that never move, Cranelift, parallel compilation and
 * the on-disk compiled-module cache (when its default config loads). */
sp_error_t *sp_wasm_engine_new(sp_region_registry *regions, wasm_engine_t **out);

/* Converts a Wasmtime error (consumed) into an sp_error with `what` as
 * context, appending the wasm backtrace when there is one. */
sp_error_t *sp_error_from_wasmtime(wasmtime_error_t *err, const char *what);

/* Converts a trap (consumed) into an sp_error: message plus wasm backtrace. */
sp_error_t *sp_error_from_trap(wasm_trap_t *trap, const char *what);

#endif
