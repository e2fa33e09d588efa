/*
 * engine.h: the LLM guest as the server drives it. Each conversation is one
 * actor of the embedded guest (guest/llm/llm_main.c); these wrap its
 * exports. Callers hold srv.lock: an actor is used from one thread at a
 * time (samepage.h).
 */
#ifndef SP_SERVER_ENGINE_H
#define SP_SERVER_ENGINE_H

#include "server/server.h"

/* A fresh actor with the model granted and loaded (llm_init). */
sp_error_t *srv_engine_actor(srv *s, sp_actor_t **out);
/* Where the backend loads its kernels on first use (CUDA:
 * sp_cli_llm_warmup_wanted), one actor loaded with the guest's --warmup,
 * then freed: the process has them loaded before the first conversation,
 * which would otherwise pay for it. */
sp_error_t *srv_engine_warm_up(srv *s);

/* A fresh actor whose state is the snapshot at path (no llm_init). */
sp_error_t *srv_engine_restore(srv *s, const char *path, sp_actor_t **out);

/* The prompt's token ids, BOS first: mode 0 renders `input` ("role\0content\0"
 * pairs) with the model's chat template, mode 1 takes it as raw text.
 * *ids is malloc'd. Fails into e (400 for what the guest refuses). */
int srv_engine_render(sp_actor_t *a, const char *input, size_t len, int mode, int32_t **ids, uint32_t *n,
                      srv_error *e);

/* Sampling settings for the next steps ("--option\0value\0" pairs). */
int srv_engine_sampling(sp_actor_t *a, const char *opts, size_t len, srv_error *e);

/* Makes the actor's KV cache hold exactly ids; *prefilled: how many it
 * had to run through the model (the rest it held already). */
int srv_engine_sync(sp_actor_t *a, const int32_t *ids, uint32_t n, uint32_t *prefilled, srv_error *e);

/* One decode step: the token (fed back into the cache), whether it ended
 * the turn, and its text (borrowed from guest memory until the next call). */
int srv_engine_step(sp_actor_t *a, int32_t *token, bool *done, const char **piece, size_t *piece_len, srv_error *e);

/* Turns on (or off) the log-probabilities of each step, with top (0..20)
 * alternatives; they are the model's (log-softmax of the raw logits). */
int srv_engine_logprobs_on(sp_actor_t *a, bool on, int top, srv_error *e);

/* One alternative (or the chosen token) of a step. */
typedef struct srv_logprob {
  int32_t id;
  float logprob;
  uint8_t len;            /* bytes of the token (cut at 128) */
  char bytes[128];
} srv_logprob;

/* The last step's record: the chosen token first, then the alternatives,
 * most likely first; *n: entries (up to 21). */
int srv_engine_logprobs(sp_actor_t *a, srv_logprob *out, int *n, srv_error *e);

/* Forgets the actor's cached positions from keep on; 0 or -1. */
int srv_engine_rewind(sp_actor_t *a, uint32_t keep);

/* The context length of the actor and the token ids its cache holds
 * (*ids malloc'd, checked against the vocabulary). For imports. */
int srv_engine_history(sp_actor_t *a, uint32_t *n_ctx, int32_t **ids, uint32_t *n, srv_error *e);

#endif
