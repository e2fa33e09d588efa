/* session.c: the session table, matching and LRU eviction (session.h). */
#include "server/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

#include "server/engine.h"
#include "server/spares.h"
#include "server/store.h"

void srv_session_free(srv_session *ss) {
  if (!ss) return;
  sp_actor_free(ss->actor);
  free(ss->tokens);
  free(ss);
}

void srv_sessions_free_all(srv *s) {
  for (size_t i = 0; i < s->n_sessions; i++) srv_session_free(s->sessions[i]);
  free(s->sessions);
  s->sessions = NULL, s->n_sessions = s->cap_sessions = 0;
}

int srv_session_add(srv *s, srv_session *ss) {
  if (s->n_sessions == s->cap_sessions) {
    size_t cap = s->cap_sessions ? s->cap_sessions * 2 : 16;
    srv_session **grown = realloc(s->sessions, cap * sizeof *grown);
    if (!grown) return -1;
    s->sessions = grown, s->cap_sessions = cap;
  }
  s->sessions[s->n_sessions++] = ss;
  return 0;
}

void srv_session_remove(srv *s, srv_session *ss) {
  for (size_t i = 0; i < s->n_sessions; i++)
    if (s->sessions[i] == ss) {
      s->sessions[i] = s->sessions[--s->n_sessions];
      return;
    }
}

void srv_session_counts(srv *s, size_t *live, size_t *stored) {
  *live = *stored = 0;
  for (size_t i = 0; i < s->n_sessions; i++) {
    if (s->sessions[i]->actor || s->sessions[i]->creating) (*live)++;
    else (*stored)++;
  }
}

int srv_session_push(srv_session *ss, int32_t token) {
  if (ss->n_tokens == ss->cap_tokens) {
    uint32_t cap = ss->cap_tokens ? ss->cap_tokens * 2 : 256;
    int32_t *grown = realloc(ss->tokens, cap * sizeof *grown);
    if (!grown) return -1;
    ss->tokens = grown, ss->cap_tokens = cap;
  }
  ss->tokens[ss->n_tokens++] = token;
  return 0;
}

/* The tenant's session whose last prompt the request's tokens extend, the
 * longest such one; NULL when none (or all of them are busy). */
static srv_session *find_match(srv *s, const char *tenant, const int32_t *prompt, uint32_t n) {
  srv_session *best = NULL;
  for (size_t i = 0; i < s->n_sessions; i++) {
    srv_session *ss = s->sessions[i];
    if (ss->busy || ss->prompt_end == 0 || ss->prompt_end > n || strcmp(ss->tenant, tenant)) continue;
    if (memcmp(ss->tokens, prompt, (size_t)ss->prompt_end * sizeof *prompt)) continue;
    if (!best || ss->prompt_end > best->prompt_end) best = ss;
  }
  return best;
}

/* Frees the least recently used idle actor, so another can go live.
 * Without a sessions directory the session itself goes (nothing to
 * restore it from). 0, or -1 when every live actor is busy. */
static int evict_one(srv *s) {
  srv_session *lru = NULL;
  for (size_t i = 0; i < s->n_sessions; i++) {
    srv_session *ss = s->sessions[i];
    if (ss->actor && !ss->busy && (!lru || ss->used < lru->used)) lru = ss;
  }
  if (!lru) return -1;
  sp_actor_free(lru->actor);
  lru->actor = NULL;
  srv_metrics_eviction(&s->metrics);
  if (!lru->stored) {
    srv_session_remove(s, lru);
    srv_session_free(lru);
  }
  return 0;
}

/* The bytes a live actor counts: its last snapshot's size (the pages it
 * wrote; the model's mapped pages are not its own), else a fresh actor's. */
static uint64_t actor_bytes(const srv *s, const srv_session *ss) { return ss->bytes ? ss->bytes : s->fresh_bytes; }

uint64_t srv_session_live_bytes(const srv *s) {
  uint64_t total = 0;
  for (size_t i = 0; i < s->n_sessions; i++)
    if (s->sessions[i]->actor || s->sessions[i]->creating) total += actor_bytes(s, s->sessions[i]);
  return total;
}

/* Whether `incoming` bytes more would pass --max-memory (the spare
 * actors count as fresh ones). */
static bool over_budget(const srv *s, uint64_t incoming) {
  return s->cfg.max_memory &&
         srv_session_live_bytes(s) + srv_spares_held(s) * s->fresh_bytes + incoming > s->cfg.max_memory;
}

/* Frees memory for the budget: a ready spare first, else the least
 * recently used idle conversation's actor. -1 when neither is there. */
static int free_for_budget(srv *s) { return srv_spares_drop_one(s) ? 0 : evict_one(s); }

int srv_session_make_room(srv *s, uint64_t incoming, srv_error *e) {
  size_t live, stored;
  for (srv_session_counts(s, &live, &stored); live >= (size_t)s->cfg.max_live; live--)
    if (evict_one(s))
      return srv_fail(e, 503, "server_error", "server_busy", "", "every live conversation (%d) is busy; retry later",
                      s->cfg.max_live);
  while (over_budget(s, incoming))
    if (free_for_budget(s))
      return srv_fail(e, 503, "server_error", "server_busy", "",
                      "the memory budget (--max-memory %llu bytes) is held by conversations in use; retry later",
                      (unsigned long long)s->cfg.max_memory);
  return 0;
}

void srv_session_trim(srv *s) {
  while (over_budget(s, 0) && !free_for_budget(s)) {}
}

/* Brings an evicted session's actor back from its snapshot. */
static int restore_session(srv *s, srv_session *ss, srv_error *e) {
  char path[4096];
  srv_store_snapshot_path(s, ss, path, sizeof path);
  if (srv_session_make_room(s, actor_bytes(s, ss), e)) return e->status;
  sp_error_t *err = srv_engine_restore(s, path, &ss->actor);
  if (err) {
    srv_fail(e, 500, "server_error", NULL, "", "cannot restore session %s: %s", ss->id, sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  srv_metrics_restore(&s->metrics);
  return 0;
}

static bool find_id(const srv *s, const char *id) {
  for (size_t i = 0; i < s->n_sessions; i++)
    if (!strcmp(s->sessions[i]->id, id)) return true;
  return false;
}

void srv_session_new_id(srv *s, char *id) {
  do /* unique among the sessions held, those loaded from disk included */
    snprintf(id, 32, "s%llx%04llx", (unsigned long long)time(NULL), (unsigned long long)(s->next_id++ & 0xffff));
  while (find_id(s, id));
}

srv_session *srv_session_find(srv *s, const char *tenant, const char *id) {
  for (size_t i = 0; i < s->n_sessions; i++)
    if (!strcmp(s->sessions[i]->id, id) && !strcmp(s->sessions[i]->tenant, tenant)) return s->sessions[i];
  return NULL;
}

/* A template that cannot be restored: said, and the conversation starts
 * afresh (the caller sees it prefill everything). */
static void template_failed(const char *path, sp_error_t *err) {
  fprintf(stderr, "samepage serve: template %s: %s\n", path, sp_error_message(err));
  sp_error_free(err);
}

/* *a restored from the template at path: the spare actor *a, or a new
 * one when *a is NULL. On failure *a is NULL (a half-restored spare is
 * freed). */
static sp_error_t *start_from(srv *s, const char *path, sp_actor_t **a) {
  if (!*a) return srv_engine_restore(s, path, a);
  sp_error_t *err = sp_actor_restore(*a, path, NULL);
  if (err) sp_actor_free(*a), *a = NULL;
  return err;
}

static int new_session(srv *s, const char *tenant, const char *from, srv_session **out, srv_error *e) {
  sp_actor_t *spare = srv_spares_take(s); /* out of the pool: counted as the incoming actor */
  srv_session *ss = NULL;
  int rc = srv_session_make_room(s, s->fresh_bytes, e);
  if (!rc && !(ss = calloc(1, sizeof *ss))) rc = srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  if (rc) {
    sp_actor_free(spare);
    return rc;
  }
  srv_session_new_id(s, ss->id);
  snprintf(ss->tenant, sizeof ss->tenant, "%s", tenant);
  ss->created = ss->last_used = (long)time(NULL);
  sp_error_t *err = spare && from ? start_from(s, from, &spare) : NULL;
  if (err) template_failed(from, err);
  /* no spare: the caller makes the actor without the lock (making one took
   * ~100 ms on an H100; under the lock, 64 new conversations waited 5 s) */
  ss->actor = spare, ss->creating = !spare;
  if (srv_session_add(s, ss)) {
    sp_actor_free(ss->actor);
    srv_session_free(ss);
    return srv_fail(e, 500, "server_error", NULL, "", "cannot start a conversation: out of memory");
  }
  *out = ss;
  return 0;
}

int srv_session_make_actor(srv *s, srv_session *ss, const char *from, srv_error *e) {
  sp_actor_t *a = NULL;
  sp_error_t *err = from ? start_from(s, from, &a) : NULL;
  if (err) template_failed(from, err);
  err = a ? NULL : srv_engine_actor(s, &a);
  pthread_mutex_lock(&s->lock);
  ss->actor = a, ss->creating = false;
  pthread_mutex_unlock(&s->lock);
  if (!err) return 0;
  srv_fail(e, 500, "server_error", NULL, "", "cannot start a conversation: %s", sp_error_message(err));
  sp_error_free(err);
  return e->status;
}

/* The session named id, for its tenant: 404 (never 403: ids do not leak
 * across tenants), 409 while another request uses it. */
static int named_session(srv *s, const char *tenant, const char *id, srv_session **out, srv_error *e) {
  srv_session *ss = srv_session_find(s, tenant, id);
  if (!ss)
    return srv_fail(e, 404, "invalid_request_error", "session_not_found", "X-Session-Id", "no session '%.40s'", id);
  if (ss->busy)
    return srv_fail(e, 409, "invalid_request_error", "session_busy", "X-Session-Id",
                    "session %s is in use by another request", id);
  *out = ss;
  return 0;
}

int srv_session_acquire(srv *s, const char *tenant, const char *id, const int32_t *prompt, uint32_t n,
                        const char *from, srv_session **out, srv_error *e) {
  srv_session *ss = NULL;
  if (id && id[0] && named_session(s, tenant, id, &ss, e)) return e->status;
  if (!ss) ss = find_match(s, tenant, prompt, n);
  if (ss) {
    ss->busy = true; /* not evicted while we make room for it */
    int rc = ss->actor ? 0 : restore_session(s, ss, e);
    ss->busy = rc == 0;
    if (rc) return rc;
  } else if (new_session(s, tenant, from, &ss, e)) {
    return e->status;
  }
  ss->busy = true;
  ss->used = ++s->clock;
  *out = ss;
  return 0;
}

int srv_session_release(srv *s, srv_session *ss, uint32_t prompt_end, int write_rc, const srv_store_pending *snap,
                        srv_error *e) {
  ss->prompt_end = prompt_end; /* the index the commit writes names it */
  ss->used = ++s->clock;
  ss->last_used = (long)time(NULL);
  if (write_rc || srv_store_commit(s, ss, snap, e)) {
    fprintf(stderr, "samepage serve: session %s not saved: %s\n", ss->id, e->message);
    return e->status; /* still busy: the caller rolls the turn back */
  }
  ss->busy = false;
  srv_session_trim(s); /* the turn grew it: others may have to go */
  return 0;
}

void srv_session_abandon(srv *s, srv_session *ss) {
  sp_actor_free(ss->actor);
  ss->actor = NULL, ss->busy = false;
  if (!ss->stored) {
    srv_session_remove(s, ss);
    srv_session_free(ss);
  }
}

void srv_session_rollback(srv *s, srv_session *ss, uint32_t keep, uint32_t old_prompt_end) {
  bool created = old_prompt_end == 0 && !ss->stored;
  /* tokens[0..keep) are what the session held before the turn; past keep
   * the turn wrote its own. */
  if (keep > ss->n_tokens) keep = ss->n_tokens;
  ss->n_tokens = keep;
  ss->prompt_end = old_prompt_end < keep ? old_prompt_end : keep;
  if (created || !ss->actor || srv_engine_rewind(ss->actor, keep)) {
    srv_session_abandon(s, ss); /* a stored session comes back from its last snapshot */
    return;
  }
  ss->busy = false;
}
