/*
 * module_limits.h: bounding what compiling a guest module may cost.
 *
 * Wasmtime compiles every function of a module before any guest code runs,
 * and that cost is outside every per-call limit: it grows with the module's
 * size, its function count and its local declarations (each local is a
 * variable the compiler zero-initialises and tracks). 200,000 empty
 * functions (2 MB) take 10-40 s of CPU and 1.1 GB on a small machine.
 *
 * Two bounds, applied by sp_actor_new before and during compilation:
 *
 *  1. Static limits. sp_module_count reads the counts without decoding a
 *     single instruction: a bounds-checked walk of the section headers,
 *     the type and function section counts, and each code body's local
 *     declarations. Every count is checked against the bytes left before
 *     it is trusted (an entry takes at least one byte), so a module that
 *     declares 4 billion functions in 9 bytes is refused as malformed. A
 *     module over a limit derived from the actor's memory budget
 *     (sp_module_limits_for) is refused with a message naming the limit
 *     and its value; nothing reaches Wasmtime.
 *  2. A compile deadline. sp_module_compile runs Wasmtime's compiler on a
 *     thread of its own and waits for it until a deadline. Wasmtime
 *     cannot stop a compilation, so one past the deadline is abandoned:
 *     its thread finishes in the background (bounded by the static limits,
 *     holding its own reference to the engine and its own copy of the
 *     bytes) and discards the result, and the caller gets an error at the
 *     deadline.
 */
#ifndef SP_MODULE_LIMITS_H
#define SP_MODULE_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include <wasmtime.h>

#include "samepage.h"

/* Compile time limit of an actor without a wall-clock limit (timeout_ms 0). */
#define SP_DEFAULT_COMPILE_TIMEOUT_MS 60000u

/* What a module may declare, derived from a memory budget. */
typedef struct sp_module_limits {
  uint64_t max_bytes;     /* the module's size in bytes */
  uint64_t max_functions; /* functions defined (function section), and types */
  uint64_t max_locals;    /* local variables declared, summed over every body */
  uint64_t memory_limit;  /* the budget they derive from (0 = the default), for messages */
} sp_module_limits;

/* What a module declares (sp_module_count). */
typedef struct sp_module_counts {
  uint64_t bytes;     /* the module's size */
  uint64_t types;     /* entries of the type section */
  uint64_t functions; /* function bodies: the larger of the function and code section counts */
  uint64_t locals;    /* local variables declared, summed over every body */
} sp_module_counts;

/* The limits for an actor whose linear memory may grow to `memory_limit`
 * bytes (0 = the 4 GiB default). Each is the budget divided by a measured
 * per-item cost, clamped between a floor (any small module loads, however
 * low the limit) and a default cap:
 *   bytes     = budget / 4,      in [1 MiB, 64 MiB]
 *   functions = budget / 4 KiB,  in [1024, 100000]
 *   locals    = budget / 64,     in [65536, 4194304] */
void sp_module_limits_for(uint64_t memory_limit, sp_module_limits *out);

/* Reads what a module declares. `wasm` (len bytes) is borrowed; *out is
 * written on success. A module that is not a core module of version 1
 * (a component, an unknown version) is left to Wasmtime: only its size
 * is counted. Errors: a section, count or body that claims more bytes
 * than remain (the message names the section and the offset). */
sp_error_t *sp_module_count(const uint8_t *wasm, size_t len, sp_module_counts *out);

/* Counts a module and checks it against `lim`. Errors: those of
 * sp_module_count, and "module has N functions; the limit is L
 * (--memory-limit 16M)" (or bytes, types, locals) for the first limit
 * passed. */
sp_error_t *sp_module_check(const uint8_t *wasm, size_t len, const sp_module_limits *lim);

/* Compiles a module on a thread of its own, waiting until `deadline_ns`
 * (CLOCK_MONOTONIC; 0 = SP_DEFAULT_COMPILE_TIMEOUT_MS from now). `engine` and `wasm` are borrowed (the thread takes
 * its own engine reference and copy of the bytes). On success the caller
 * owns *out (wasmtime_module_delete). Errors: Wasmtime's (prefixed
 * "invalid or unsupported wasm module"), and past the deadline, when
 * `timeout_ms` (the actor's wall-clock limit) is set, "guest exceeded its N
 * ms time limit while being compiled", otherwise "compiling the module took
 * longer than the N ms compile time limit"; the compilation is then
 * abandoned as the file comment says. */
sp_error_t *sp_module_compile(wasm_engine_t *engine, const uint8_t *wasm, size_t len,
                              uint64_t deadline_ns, uint32_t timeout_ms, wasmtime_module_t **out);

#endif
