/*
 * session.h: conversations, each one LLM actor, found by the tokens of the
 * request that continues them.
 *
 * A session remembers the token ids its actor's KV cache holds and where
 * its last prompt ended. A request continues the session whose last prompt
 * is a prefix of the request's tokens (so "the same conversation, one more
 * turn", or the same last turn again), taking the longest such match; the
 * guest then keeps the common prefix and prefills only the rest. Sessions
 * past --max-live are evicted least recently used first: their snapshot is
 * already on disk (store.h), so eviction frees the actor, and the next
 * request restores it. Callers hold srv.lock.
 */
#ifndef SP_SERVER_SESSION_H
#define SP_SERVER_SESSION_H

#include "server/server.h"
#include "server/store.h"

struct srv_session {
  char id[32];
  char tenant[32];       /* its owner: no other tenant finds, lists or touches it */
  sp_actor_t *actor;     /* NULL while evicted (stored only) */
  int32_t *tokens;       /* [n_tokens] what the KV cache holds */
  uint32_t n_tokens, cap_tokens;
  uint32_t prompt_end;   /* tokens of the last prompt; a match must cover them */
  uint64_t used;         /* LRU tick of the last turn */
  long created, last_used; /* wall-clock seconds (GET /v1/sessions) */
  uint32_t generation;   /* snapshot file generation (store.c) */
  uint64_t bytes;        /* its last snapshot's size, what its live actor counts against
                            --max-memory (0: none yet, counted as srv.fresh_bytes) */
  bool busy;             /* a request is using it */
  bool creating;         /* new, its actor being made outside the lock by the request's thread
                            (srv_turn_begin): counts as live */
  bool stored;           /* a snapshot of its last finished turn is on disk */
};

/* The session to continue for a prompt, restored or made live and marked
 * busy: the one named id (X-Session-Id; NULL or "": none), else the
 * tenant's longest match, else a new one. Only the tenant's own sessions
 * are candidates. A new one gets a spare actor (spares.h), restored from
 * the snapshot at from when non-NULL (a template, template.h), its tokens
 * left for the caller to set; without a spare it is left `creating`, with
 * no actor: the caller makes it without the lock (srv_session_make_actor). Fails into e (404 for an id the tenant does not hold,
 * 409 when it is busy, 503 when every live actor is busy, 500 when the
 * runtime fails). */
int srv_session_acquire(srv *s, const char *tenant, const char *id, const int32_t *prompt, uint32_t n,
                        const char *from, srv_session **out, srv_error *e);

/* Makes the actor of a `creating` session, without srv.lock (the session
 * is busy: no other thread touches it): a restore of the snapshot at from
 * (a template; when that fails, a fresh actor instead) or a fresh actor.
 * Then, under the lock, the session has it (or the caller abandons the
 * session: 500 in e). */
int srv_session_make_actor(srv *s, srv_session *ss, const char *from, srv_error *e);

/* The tenant's session named id, or NULL (also for another tenant's). */
srv_session *srv_session_find(srv *s, const char *tenant, const char *id);

/* Evicts idle actors, least recently used first, until one more of
 * `incoming` bytes may go live within --max-live and --max-memory; 0, or
 * 503 into e when the actors that would have to go are busy. */
int srv_session_make_room(srv *s, uint64_t incoming, srv_error *e);

/* Evicts idle actors until the live ones fit --max-memory again (they
 * grow as their conversations do); the busy ones stay. */
void srv_session_trim(srv *s);

/* The bytes live actors count against --max-memory. */
uint64_t srv_session_live_bytes(const srv *s);

/* A fresh, unique session id into id[32]. */
void srv_session_new_id(srv *s, char *id);

/* Drops ss from the table (the caller frees it). */
void srv_session_remove(srv *s, srv_session *ss);

/* Rolls back an interrupted turn: the actor forgets every position from
 * keep on (what the turn overwrote), the session is as before the turn up
 * to there; a session the turn created goes. Not written to disk: the
 * last finished turn's snapshot stays. */
void srv_session_rollback(srv *s, srv_session *ss, uint32_t keep, uint32_t old_prompt_end);

/* Appends a generated token to what the session's cache holds. */
int srv_session_push(srv_session *ss, int32_t token);

/* Ends a turn: records it, commits its snapshot (written by the caller
 * with srv_store_write, outside the lock, when there is a sessions
 * directory), clears busy. When the snapshot cannot be written or
 * committed (507 for a full disk, 500; into e) the session stays busy and
 * the caller rolls the turn back (srv_session_rollback): a turn that is
 * not on disk is not kept, and the previous snapshot stays the session's.
 * write_rc: what srv_store_write returned. */
int srv_session_release(srv *s, srv_session *ss, uint32_t prompt_end, int write_rc, const srv_store_pending *snap,
                        srv_error *e);

/* Gives up a session whose actor failed mid-prefill: the actor goes (a
 * stored session comes back from its last snapshot), and the session with
 * it when nothing is on disk. */
void srv_session_abandon(srv *s, srv_session *ss);

/* Adds a session loaded from the store (not live); takes ownership. */
int srv_session_add(srv *s, srv_session *ss);

/* Counts of live and stored-only sessions, for /metrics. */
void srv_session_counts(srv *s, size_t *live, size_t *stored);

void srv_session_free(srv_session *ss);
/* Frees every session (their snapshots stay on disk). */
void srv_sessions_free_all(srv *s);

#endif
