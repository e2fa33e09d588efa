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

struct srv_session {
  char id[32];
  sp_actor_t *actor;     /* NULL while evicted (stored only) */
  int32_t *tokens;       /* [n_tokens] what the KV cache holds */
  uint32_t n_tokens, cap_tokens;
  uint32_t prompt_end;   /* tokens of the last prompt; a match must cover them */
  uint64_t used;         /* LRU tick of the last turn */
  uint32_t generation;   /* snapshot file generation (store.c) */
  bool busy;             /* a request is using it */
  bool stored;           /* a snapshot of its last finished turn is on disk */
};

/* The session to continue for a prompt, restored or made live and marked
 * busy; a new one when none matches. Fails into e (503 when every live
 * actor is busy, 500 when the runtime fails). */
int srv_session_acquire(srv *s, const int32_t *prompt, uint32_t n, srv_session **out, srv_error *e);

/* Appends a generated token to what the session's cache holds. */
int srv_session_push(srv_session *ss, int32_t token);

/* Ends a turn: records it, writes the snapshot (when there is a sessions
 * directory), clears busy. */
void srv_session_release(srv *s, srv_session *ss, uint32_t prompt_end);

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
