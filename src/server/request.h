/*
 * request.h: an OpenAI request body, parsed (jansson) and checked field by
 * field. Every field is either understood or refused with a 400 naming
 * it: nothing is silently ignored.
 */
#ifndef SP_SERVER_REQUEST_H
#define SP_SERVER_REQUEST_H

#include "server/server.h"

#define SRV_MAX_STOP 4        /* as OpenAI */
#define SRV_MAX_MESSAGES 1024
#define SRV_MAX_DEPTH 32      /* JSON nesting */

typedef struct srv_request {
  bool chat;              /* /v1/chat/completions, else /v1/completions */
  bool stream, include_usage;
  char *input;            /* chat: "role\0content\0" pairs; completions: the prompt */
  size_t input_len;
  char sampling[512];     /* "--option\0value\0" pairs for the guest */
  size_t sampling_len;
  long max_tokens;        /* -1: up to the context */
  char *stop[SRV_MAX_STOP];
  size_t n_stop;
  bool has_seed;
  bool logprobs;          /* chat: logprobs true; completions: logprobs N */
  int top_logprobs;       /* alternatives per token, 0..20 */
  char model[128];
  /* Set by the caller after parsing (http.c), not from the body: */
  srv_tenant *tenant;     /* who asks */
  char session_id[32];    /* X-Session-Id, or "" */
} srv_request;

/* Parses body[len] for the chat (chat true) or completions endpoint. 0, or
 * the error's status with e filled. On success free with srv_request_free. */
int srv_request_parse(srv *s, const char *body, size_t len, bool chat, srv_request *r, srv_error *e);
void srv_request_free(srv_request *r);

#endif
