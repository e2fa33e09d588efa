/*
 * wasi_poll.h: WASI's poll_oneoff, with sleeps that end at the guest's
 * wall-clock deadline.
 *
 * Wasmtime's poll_oneoff sleeps with std::thread::sleep (one relative
 * clock) or on its own async runtime (anything else), and nothing can wake
 * either: a guest asleep for 30 s ran 30 s past a 1 s time limit. We
 * define wasi_snapshot_preview1.poll_oneoff ourselves, over Wasmtime's:
 *
 *  - a poll whose subscriptions are all clocks (realtime or monotonic,
 *    relative or absolute: every sleep of wasi-libc, at most
 *    SP_POLL_MAX_CLOCKS of them) waits here, on CLOCK_MONOTONIC, until
 *    its earliest clock or the current entry's deadline
 *    (actor_limits.h), whichever comes first. At the deadline the call
 *    traps with "guest exceeded its N ms time limit"; otherwise it writes
 *    one clock event per subscription that is due, as Wasmtime would.
 *  - any other poll (one naming a file descriptor, an unknown clock, too
 *    many subscriptions, ranges outside memory) goes to Wasmtime's own
 *    implementation, unchanged: it can still block until its descriptor
 *    is ready or its clock is due (SECURITY.md, "Wall-clock guarantee").
 *    Wasmtime's WASI functions find the guest's memory through their
 *    caller's "memory" export, so they cannot be called from host code
 *    directly; the call goes through a helper instance (one function of
 *    six instructions) that imports Wasmtime's poll_oneoff and the
 *    guest's memory and re-exports the memory. It is compiled once per
 *    runtime and instantiated once per actor, the first time a guest
 *    needs it.
 *
 * Absolute monotonic clocks count from the creation of the actor's WASI
 * context (Wasmtime's clock origin); sp_wasi_poll_origin records that
 * instant just after it, so such a wait ends no earlier than Wasmtime's
 * would (later by the few microseconds the creation takes).
 */
#ifndef SP_WASI_POLL_H
#define SP_WASI_POLL_H

#include <stdbool.h>
#include <stdint.h>

#include <wasmtime.h>

#include "samepage.h"

#define SP_POLL_MAX_CLOCKS 64 /* clock subscriptions one poll may wait on here */

typedef struct sp_actor sp_actor_t;

/* One actor's state for poll_oneoff. */
typedef struct sp_wasi_poll {
  uint64_t origin_ns;     /* CLOCK_MONOTONIC just after the WASI context was made */
  bool has_helper;
  wasmtime_func_t helper; /* the helper instance's "poll", calling Wasmtime's */
} sp_wasi_poll;

/* Defines wasi_snapshot_preview1.poll_oneoff on `linker`, which must
 * already hold WASI and allow shadowing. */
wasmtime_error_t *sp_wasi_poll_define(wasmtime_linker_t *linker);

/* Records the clock origin of the actor's WASI context: call right after
 * wasmtime_context_set_wasi. */
void sp_wasi_poll_origin(sp_actor_t *actor);

#endif
