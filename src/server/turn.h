/*
 * turn.h: one request's generation: pick (or restore) the conversation's
 * actor, set the request's sampling, prefill what the actor does not hold
 * yet, then decode token by token until the end of the turn, a stop
 * sequence, max_tokens or a full context; finally snapshot the session.
 *
 * Each call takes srv.lock for its own guest calls only, so streams of
 * different sessions interleave token by token.
 */
#ifndef SP_SERVER_TURN_H
#define SP_SERVER_TURN_H

#include "server/engine.h"
#include "server/request.h"
#include "server/session.h"

/* The log-probabilities of one generated token (logprobs requests). */
typedef struct srv_token_logprobs {
  size_t text_off;        /* where its text starts in srv_turn.text */
  int n;                  /* entries: the token, then its alternatives */
  srv_logprob *e;
} srv_token_logprobs;

typedef struct srv_turn {
  srv *s;
  srv_request *req;       /* borrowed */
  srv_session *session;
  int32_t *prompt;        /* [n_prompt] the request's tokens */
  uint32_t n_prompt, prefilled;
  uint32_t old_prompt_end;  /* the session's before this turn (rollback) */
  const char *template;   /* a new conversation with a system prompt: "hit" (started from the tenant's
                             template, template.h) or "miss" (one made); else NULL */
  uint32_t template_tokens; /* the system prompt's tokens (the template's) */
  srv_token_logprobs *lp; /* [n_lp] when req->logprobs */
  size_t n_lp, cap_lp;
  uint32_t n_generated;   /* tokens sampled, the end-of-turn one left out */
  char *text;             /* the reply so far, a stop sequence cut off */
  size_t len, cap;
  size_t held;            /* bytes of text that may still be a stop's start */
  const char *finish;     /* NULL while generating: "stop" or "length" */
  double t0_ms, ttft_ms;
  double last_token_ms;   /* when the previous token came (inter-token latency) */
  char id[48];            /* chatcmpl-... / cmpl-... */
  char session_id[32];    /* the session's id (the session may go once ended) */
  long created;
  bool ended;
} srv_turn;

/* Renders and tokenizes the request, picks its session and prefills. 0, or
 * the error's status (400 context_length_exceeded, 503, 500). */
int srv_turn_begin(srv *s, srv_request *req, srv_turn *t, srv_error *e);

/* Decodes one token; sets t->finish when the turn is over. */
int srv_turn_step(srv_turn *t, srv_error *e);

/* Bytes of t->text that are final (no stop sequence can still start in
 * them), ending on a UTF-8 character boundary. */
size_t srv_turn_safe_len(const srv_turn *t);

/* Ends a finished turn: the session keeps it and is written to disk.
 * t->text stays for the response. When the snapshot cannot be written
 * (507 insufficient_storage for a full disk, else 500) the turn is rolled
 * back instead, as srv_turn_abort does, and e says so. Safe to call twice
 * (0 the second time). */
int srv_turn_end(srv_turn *t, srv_error *e);

/* Ends an interrupted turn (an error, a client gone mid-stream, a stop):
 * it is rolled back, the session left as it was before it
 * (srv_session_rollback). Safe to call twice, and after srv_turn_end. */
void srv_turn_abort(srv_turn *t);

/* srv_turn_abort unless ended, then frees t->text and the logprobs. */
void srv_turn_free(srv_turn *t);

#endif
