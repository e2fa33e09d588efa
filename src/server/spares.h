/*
 * spares.h: fresh actors kept ready, so that a new conversation does not
 * wait while one is made.
 *
 * Making an actor (the guest instantiated, the model mapped and frozen, its
 * device ranges declared, llm_init) took about 130 ms on an H100 and on the
 * CPU, under the server's lock: new conversations queued behind each other
 * (BENCHMARKS.md, serve on the H100). The pool keeps --spare-actors N made
 * ahead by one thread outside the lock, and a new conversation takes one.
 * Evicted conversations' actors are freed, not reset for reuse: a restore
 * of a fresh actor's snapshot would reset one, but never into memory that
 * has grown since, and every conversation grows the guest's heap.
 * Spares count against --max-memory as fresh actors (srv.fresh_bytes) and
 * are dropped first when it is short. Callers hold srv.lock unless said.
 */
#ifndef SP_SERVER_SPARES_H
#define SP_SERVER_SPARES_H

#include "server/server.h"

/* Starts the thread that makes spares; nothing with --spare-actors 0.
 * Called without the lock, before the server listens. 0, or -1 (said on
 * stderr). */
int srv_spares_start(srv *s);
/* Stops the thread and frees the spares; without the lock. */
void srv_spares_stop(srv *s);

/* A ready fresh actor, or NULL when none is. */
sp_actor_t *srv_spares_take(srv *s);
/* Frees one ready spare (the memory budget is short): false when none. */
bool srv_spares_drop_one(srv *s);
/* Actors the pool holds (ready or being made): what it counts against
 * --max-memory. */
size_t srv_spares_held(const srv *s);
/* The pool's gauges and counters for /metrics. */
void srv_spares_gauges(const srv *s, srv_gauges *g);

#endif
