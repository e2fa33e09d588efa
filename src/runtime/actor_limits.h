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
 * Time inside a host call is not interrupted by the epoch: the guest stops
 * at its next check after the call returns. Three things bound it:
 *  - sleeps (poll_oneoff on clocks) wait only until the deadline and then
 *    trap with the same message (wasi_poll.h);
 *  - compilation waits only until the deadline of instantiation
 *    (module_limits.h), which is armed before the module is compiled;
 *  - with exit_grace_ms, the ticker also watches every running entry: one
 *    still running exit_grace_ms past its deadline is inside a host call
 *    nothing can interrupt (a read of stdin or a pipe, a write to a full
 *    pipe, a poll on a descriptor, a submit's kernels), and the ticker
 *    ends the process with exit status 124 after writing the time-limit
 *    message to stderr (SECURITY.md, "Wall-clock guarantee").
 */
#ifndef SP_ACTOR_LIMITS_H
#define SP_ACTOR_LIMITS_H

#include <stdbool.h>
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
  uint32_t exit_grace_ms;   /* with timeout_ms: end the process this long past
                               the deadline of an entry still running, 0 = never */
  uint64_t deadline_ns;     /* CLOCK_MONOTONIC deadline of the current entry,
                               UINT64_MAX between entries or without a limit */
  uint64_t cpu_deadline_ns; /* CLOCK_THREAD_CPUTIME_ID deadline of the entry */
  bool watched;             /* on the ticker's list of running entries */
  bool fired;               /* a limit stopped the current (or last) entry:
                               its error is SP_ERROR_TIMEOUT, not a trap */
  sp_actor_t *watch_prev, *watch_next; /* that list (ticker lock) */
} sp_actor_limits;

/* Installs the epoch callback on the actor's store (call right after the
 * store is created, before instantiation runs any guest code), starts the
 * runtime's ticker when either limit is > 0, and arms the limits for
 * instantiation (compiling included). Without limits the guest's deadline
 * is pushed out of reach. */
void sp_limits_actor_init(sp_actor_t *actor, uint32_t timeout_ms, uint32_t cpu_timeout_ms,
                          uint32_t exit_grace_ms);

/* Starts both clocks for one guest entry (_start, an exported call); call
 * it on the thread that then runs the guest. */
void sp_limits_arm(sp_actor_t *actor);

/* Ends an entry: the deadlines go out of reach and the ticker stops
 * watching it. Call after every armed entry returns (and before freeing). */
void sp_limits_disarm(sp_actor_t *actor);

/* Stops and frees the runtime's ticker (call before deleting the engine). */
void sp_limits_runtime_stop(sp_runtime_t *rt);

#endif
