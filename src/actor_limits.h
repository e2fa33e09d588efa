/*
 * actor_limits.h: per-actor wall-clock and CPU-time limits through Wasmtime
 * epoch interruption.
 *
 * The engine is configured with epoch interruption on (wasm_host.c), so
 * compiled guest code checks the engine's epoch at every loop header and
 * function entry. One ticker thread per runtime, started the first time an
 * actor asks for a time limit, increments that epoch every SP_TICK_MS. When
 * a running guest's store deadline passes, Wasmtime calls our callback,
 * which compares the monotonic clock with the actor's deadline for the
 * current call: past it, the call ends with "guest exceeded its N ms time
 * limit"; otherwise the guest runs on until the next check.
 *
 * The CPU-time limit is checked by the same callback, which Wasmtime runs
 * on the thread executing the guest, so CLOCK_THREAD_CPUTIME_ID there is
 * the guest thread's own CPU clock: past the limit the call ends with
 * "guest exceeded its N ms CPU time limit". It counts what that thread
 * burns (wasm code and host imports it calls), not time it waits: a guest
 * descheduled on a busy machine is not punished, which the wall-clock limit
 * would do. Kernels the CPU backend runs on its pool threads are not
 * counted (they are bounded per list: runtime_impl.h, max_work).
 *
 * What is not interrupted: time spent inside a host call (a long submit
 * runs to completion; the guest stops at its next check after it returns).
 */
#ifndef SP_ACTOR_LIMITS_H
#define SP_ACTOR_LIMITS_H

#include <stdint.h>

#include <wasmtime.h>

#define SP_TICK_MS 2 /* epoch period: the resolution of time limits */

typedef struct sp_runtime sp_runtime_t;
typedef struct sp_actor sp_actor_t;

/* One runtime's epoch ticker (opaque; limits.c). */
typedef struct sp_ticker sp_ticker;

/* An actor's limits: set once at creation, deadline rearmed per call. */
typedef struct sp_actor_limits {
  uint32_t timeout_ms;      /* wall-clock limit per guest entry, 0 = none */
  uint32_t cpu_timeout_ms;  /* guest-thread CPU time per entry, 0 = none */
  uint64_t deadline_ns;     /* CLOCK_MONOTONIC deadline of the current entry */
  uint64_t cpu_deadline_ns; /* CLOCK_THREAD_CPUTIME_ID deadline of the entry */
} sp_actor_limits;

/* Installs the epoch callback on the actor's store (call right after the
 * store is created, before instantiation runs any guest code) and starts
 * the runtime's ticker when either limit is > 0. Without limits the
 * guest's deadline is pushed out of reach. */
void sp_limits_actor_init(sp_actor_t *actor, uint32_t timeout_ms, uint32_t cpu_timeout_ms);

/* Starts both clocks for one guest entry (_start, an exported call); call
 * it on the thread that then runs the guest. */
void sp_limits_arm(sp_actor_t *actor);

/* Stops and frees the runtime's ticker (call before deleting the engine). */
void sp_limits_runtime_stop(sp_runtime_t *rt);

#endif
