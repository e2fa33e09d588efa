/*
 * openai_json.h: response bodies in OpenAI's shapes, built with jansson:
 * chat.completion / text_completion objects, their streamed chunks, the
 * model list and errors. Every function returns a malloc'd string (NULL
 * when out of memory). Text from the model is made valid UTF-8 first
 * (invalid bytes become U+FFFD): JSON strings must be.
 */
#ifndef SP_SERVER_OPENAI_JSON_H
#define SP_SERVER_OPENAI_JSON_H

#include "server/turn.h"

/* The whole response of a finished turn (stream: false). */
char *srv_json_completion(const srv_turn *t);

/* One streamed chunk: text[0..len) as the delta (chat) or text
 * (completions) with the logprobs of tokens [lp_from, lp_to) of t->lp;
 * role: the chat's first chunk; finish: NULL or the reason. */
char *srv_json_chunk(const srv_turn *t, const char *text, size_t len, bool role, const char *finish, size_t lp_from,
                     size_t lp_to);

/* The first token of t->lp from `from` on whose text starts at or past
 * text_len (so [from, result) are the tokens of the text before it). */
size_t srv_json_logprobs_upto(const srv_turn *t, size_t from, size_t text_len);

/* GET /v1/sessions: one session, the list, and DELETE's answer. */
char *srv_json_session(const srv_session *ss);
char *srv_json_session_list(srv_session *const *list, size_t n);
char *srv_json_session_deleted(const char *id);

/* The last chunk when stream_options.include_usage: no choices, the usage. */
char *srv_json_usage_chunk(const srv_turn *t);

/* {"error": {"message", "type", "param", "code"}}. */
char *srv_json_error(const srv_error *e);

/* GET /v1/models. */
char *srv_json_models(const srv *s);

#endif
