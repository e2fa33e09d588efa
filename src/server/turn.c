/* turn.c: one request's generation (turn.h). */
#include "server/turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "server/engine.h"
#include "server/template.h"

/* Prompt tokens and max_tokens against the context. */
static int check_room(srv_turn *t, srv_error *e) {
  long ctx = t->s->cfg.ctx;
  if ((long)t->n_prompt >= ctx)
    return srv_fail(e, 400, "invalid_request_error", "context_length_exceeded", t->req->chat ? "messages" : "prompt",
                    "This model's maximum context length is %ld tokens; the prompt has %u", ctx, t->n_prompt);
  if (t->req->max_tokens > 0 && t->req->max_tokens + (long)t->n_prompt > ctx)
    return srv_fail(e, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                    "max_tokens %ld plus the prompt's %u tokens exceed the context of %ld tokens",
                    t->req->max_tokens, t->n_prompt, ctx);
  return 0;
}

/* The tokens a chat prompt starting with a system message shares with
 * that system message rendered alone: the part a template can hold (0:
 * none, templates are off, or the request names its session). */
static uint32_t system_prefix(srv_turn *t) {
  srv *s = t->s;
  const srv_request *r = t->req;
  if (!r->chat || !s->cfg.sessions_dir || s->cfg.max_templates <= 0 || r->session_id[0] || r->input_len < 8 ||
      strcmp(r->input, "system"))
    return 0;
  size_t pair = 7 + strlen(r->input + 7) + 1; /* "system\0" content "\0" */
  int32_t *ids = NULL;
  uint32_t n = 0, common = 0;
  srv_error ignored = {0};
  if (pair > r->input_len || srv_engine_render(s->scratch, r->input, pair, 0, &ids, &n, &ignored)) return 0;
  while (common < n && common < t->n_prompt && ids[common] == t->prompt[common]) common++;
  free(ids);
  return common < t->n_prompt ? common : 0; /* the rest of the prompt is never empty */
}

/* A new conversation with a system prompt: a miss prefills the prefix
 * alone and keeps it as the tenant's template (before the request's
 * sampling goes in: a template is a fresh actor plus the prefix; llm_sync
 * refills the sampler's window from the cache, so how the prefix got there
 * does not show). */
static int make_template(srv_turn *t, uint32_t prefix, srv_error *e) {
  uint32_t done = 0;
  if (srv_engine_sync(t->session->actor, t->prompt, prefix, &done, e)) return e->status;
  srv_template_add(t->s, t->req->tenant->name, t->session->actor, t->prompt, prefix);
  return 0;
}

/* Under the lock: tokens (the shared scratch actor renders them), the
 * session (acquired busy: from here on its actor is this turn's alone),
 * a new template. */
/* What begin_locked found, for begin_finish_locked. */
typedef struct begin_state {
  uint32_t prefix;    /* system-prompt tokens a template may hold (system_prefix) */
  bool from_template; /* the session started from the tenant's template */
  bool new_session;
  char from[4200];    /* the template's snapshot, "" for none */
} begin_state;

/* A new session's template, once it has its actor: made from the prefix
 * when the tenant had none. Under the lock. */
static int begin_template_locked(srv_turn *t, const begin_state *st, srv_error *e) {
  if (st->new_session && st->prefix && !st->from_template && make_template(t, st->prefix, e)) return e->status;
  return 0;
}

static int begin_locked(srv_turn *t, begin_state *st, srv_error *e) {
  srv *s = t->s;
  srv_request *r = t->req;
  if (srv_engine_render(s->scratch, r->input, r->input_len, r->chat ? 0 : 1, &t->prompt, &t->n_prompt, e) ||
      check_room(t, e))
    return e->status;
  uint32_t prefix = system_prefix(t);
  srv_template *tpl = prefix ? srv_template_find(s, r->tenant->name, t->prompt, prefix) : NULL;
  st->from[0] = '\0';
  if (tpl) srv_template_path(s, tpl, "snap", st->from, sizeof st->from);
  if (srv_session_acquire(s, r->tenant->name, r->session_id, t->prompt, t->n_prompt, tpl ? st->from : NULL,
                          &t->session, e))
    return e->status;
  snprintf(t->session_id, sizeof t->session_id, "%s", t->session->id);
  t->old_prompt_end = t->session->prompt_end;
  st->prefix = prefix, st->from_template = tpl != NULL;
  st->new_session = t->session->prompt_end == 0 && t->session->n_tokens == 0;
  return t->session->creating ? 0 : begin_template_locked(t, st, e); /* else once the actor is made */
}

/* A new session without a spare: its actor made outside the lock, then its
 * template under it. */
static int begin_actor(srv_turn *t, const begin_state *st, srv_error *e) {
  if (srv_session_make_actor(t->s, t->session, st->from[0] ? st->from : NULL, e)) return e->status;
  pthread_mutex_lock(&t->s->lock);
  int rc = begin_template_locked(t, st, e);
  pthread_mutex_unlock(&t->s->lock);
  return rc;
}

/* Outside the lock: sampling and the prefill, on the session's actor,
 * which no other thread touches while the session is busy. So the
 * conversations' compute runs side by side (and the runtime may batch it:
 * docs/BATCHING.md); the lock guards only the server's shared state. */
static int begin_compute(srv_turn *t, srv_error *e) {
  sp_actor_t *a = t->session->actor;
  srv_request *r = t->req;
  if (srv_engine_sampling(a, r->sampling, r->sampling_len, e) ||
      srv_engine_logprobs_on(a, r->logprobs, r->top_logprobs, e) ||
      srv_engine_sync(a, t->prompt, t->n_prompt, &t->prefilled, e))
    return e->status;
  return 0;
}

/* Under the lock again: the template's metrics and the session's tokens. */
static int begin_finish_locked(srv_turn *t, const begin_state *st, srv_error *e) {
  srv *s = t->s;
  uint32_t prefix = st->prefix;
  bool tpl = st->from_template;
  if (st->new_session && prefix) {
    bool hit = tpl && t->prefilled + prefix == t->n_prompt;
    if (!tpl) t->prefilled += prefix; /* make_template prefilled it */
    t->template = hit ? "hit" : "miss", t->template_tokens = prefix;
    srv_metrics_template(&s->metrics, hit, hit ? prefix : 0);
  }
  /* The cache now holds exactly the prompt. */
  t->session->n_tokens = 0;
  for (uint32_t i = 0; i < t->n_prompt; i++)
    if (srv_session_push(t->session, t->prompt[i])) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  return 0;
}

int srv_turn_begin(srv *s, srv_request *req, srv_turn *t, srv_error *e) {
  memset(t, 0, sizeof *t);
  t->s = s, t->req = req, t->t0_ms = sp_now_ms(), t->created = (long)time(NULL);
  snprintf(t->id, sizeof t->id, "%s-%llx%llx", req->chat ? "chatcmpl" : "cmpl", (unsigned long long)t->created,
           (unsigned long long)(sp_now_ms() * 1000));
  begin_state st = {0};
  pthread_mutex_lock(&s->lock);
  int rc = begin_locked(t, &st, e);
  bool make = !rc && t->session->creating;
  pthread_mutex_unlock(&s->lock);
  if (make) rc = begin_actor(t, &st, e);
  if (!rc) rc = begin_compute(t, e);
  pthread_mutex_lock(&s->lock);
  if (!rc) rc = begin_finish_locked(t, &st, e);
  if (rc && t->session) srv_session_abandon(s, t->session); /* its cache may be half-prefilled */
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    t->session = NULL;
    srv_turn_abort(t);
  }
  return rc;
}

static int append(srv_turn *t, const char *bytes, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = (t->len + n + 1) * 2;
    char *grown = realloc(t->text, cap);
    if (!grown) return -1;
    t->text = grown, t->cap = cap;
  }
  memcpy(t->text + t->len, bytes, n);
  t->len += n;
  t->text[t->len] = '\0';
  return 0;
}

/* Cuts the text at the first stop sequence that appears in it. A stop can
 * only complete inside the newest piece, so the search starts just before
 * it. Returns whether one was found. */
static bool cut_at_stop(srv_turn *t, size_t piece_len) {
  bool found = false;
  for (size_t i = 0; i < t->req->n_stop; i++) {
    const char *stop = t->req->stop[i];
    size_t sl = strlen(stop), from = t->len - piece_len;
    from = from > sl ? from - sl : 0;
    for (size_t at = from; at + sl <= t->len; at++)
      if (!memcmp(t->text + at, stop, sl)) {
        t->len = at, t->text[at] = '\0', found = true;
        break;
      }
  }
  return found;
}

size_t srv_turn_safe_len(const srv_turn *t) {
  if (t->finish || t->req->n_stop == 0) return t->len;
  size_t hold = 0;
  for (size_t i = 0; i < t->req->n_stop; i++) {
    size_t sl = strlen(t->req->stop[i]);
    if (sl - 1 > hold) hold = sl - 1;
  }
  size_t n = t->len > hold ? t->len - hold : 0;
  while (n > 0 && n < t->len && ((unsigned char)t->text[n] & 0xc0) == 0x80) n--; /* not inside a character */
  return n;
}

/* The step's log-probabilities, its text starting at t->len. */
static int keep_logprobs(srv_turn *t, srv_error *e) {
  if (t->n_lp == t->cap_lp) {
    size_t cap = t->cap_lp ? t->cap_lp * 2 : 64;
    srv_token_logprobs *grown = realloc(t->lp, cap * sizeof *grown);
    if (!grown) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
    t->lp = grown, t->cap_lp = cap;
  }
  srv_logprob all[21];
  int n = 0;
  if (srv_engine_logprobs(t->session->actor, all, &n, e)) return e->status;
  srv_token_logprobs *tl = &t->lp[t->n_lp];
  tl->text_off = t->len, tl->n = n;
  if (!(tl->e = malloc((size_t)(n ? n : 1) * sizeof *tl->e)))
    return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  memcpy(tl->e, all, (size_t)n * sizeof *tl->e);
  t->n_lp++;
  return 0;
}

/* One token on the session's actor: outside the lock (begin_compute says
 * why); only the session's token list is pushed under it. */
static int step(srv_turn *t, srv_error *e) {
  int32_t token;
  bool done;
  const char *piece;
  size_t n;
  if (srv_engine_step(t->session->actor, &token, &done, &piece, &n, e)) return e->status;
  /* (the piece points into guest memory: keep_logprobs makes calls, so copy it first) */
  char copy[512];
  n = n < sizeof copy ? n : sizeof copy;
  memcpy(copy, piece, n);
  piece = copy;
  if (t->req->logprobs && !done && keep_logprobs(t, e)) return e->status;
  pthread_mutex_lock(&t->s->lock);
  int pushed = srv_session_push(t->session, token);
  pthread_mutex_unlock(&t->s->lock);
  if (pushed || append(t, piece, n)) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  if (done) { t->finish = "stop"; return 0; }
  t->n_generated++;
  if (cut_at_stop(t, n)) t->finish = "stop";
  else if (t->req->max_tokens > 0 && t->n_generated >= (uint32_t)t->req->max_tokens) t->finish = "length";
  else if (t->session->n_tokens >= (uint32_t)t->s->cfg.ctx) t->finish = "length";
  return 0;
}

int srv_turn_step(srv_turn *t, srv_error *e) {
  if (t->finish) return 0;
  int rc = step(t, e);
  if (rc) return rc;
  double now = sp_now_ms();
  if (t->ttft_ms == 0) {
    t->ttft_ms = now - t->t0_ms;
    srv_metrics_ttft(&t->s->metrics, t->ttft_ms / 1e3);
  } else {
    srv_metrics_itl(&t->s->metrics, (now - t->last_token_ms) / 1e3);
  }
  t->last_token_ms = now;
  return 0;
}

/* The end of a turn that could not be written: rolled back, and e says so. */
static void not_kept(srv_turn *t, srv_error *e) {
  srv_session_rollback(t->s, t->session, t->n_prompt - t->prefilled, t->old_prompt_end);
  size_t n = strlen(e->message);
  snprintf(e->message + n, sizeof e->message - n, "; this turn was not kept, the conversation stays at its "
                                                  "previous turn");
}

int srv_turn_end(srv_turn *t, srv_error *e) {
  if (t->ended) return 0;
  t->ended = true;
  int rc = 0;
  if (t->session) {
    srv_store_pending snap; /* written outside the lock: the session is busy, its actor this turn's */
    int write_rc = srv_store_write(t->s, t->session, &snap, e);
    pthread_mutex_lock(&t->s->lock);
    rc = srv_session_release(t->s, t->session, t->n_prompt, write_rc, &snap, e);
    if (rc) not_kept(t, e);
    pthread_mutex_unlock(&t->s->lock);
    if (rc) t->session = NULL; /* it may be gone */
    else srv_metrics_turn(&t->s->metrics, t->n_prompt, t->prefilled, t->n_generated);
  }
  free(t->prompt);
  t->prompt = NULL;
  return rc;
}

void srv_turn_abort(srv_turn *t) {
  if (t->ended) return;
  t->ended = true;
  if (t->session) {
    pthread_mutex_lock(&t->s->lock);
    srv_session_rollback(t->s, t->session, t->n_prompt - t->prefilled, t->old_prompt_end);
    pthread_mutex_unlock(&t->s->lock);
    t->session = NULL; /* it may be gone */
  }
  free(t->prompt);
  t->prompt = NULL;
}

void srv_turn_free(srv_turn *t) {
  srv_turn_abort(t);
  free(t->text);
  t->text = NULL;
  for (size_t i = 0; i < t->n_lp; i++) free(t->lp[i].e);
  free(t->lp);
  t->lp = NULL, t->n_lp = t->cap_lp = 0;
}
