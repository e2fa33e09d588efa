/* openai_json.c: OpenAI-shaped response bodies (openai_json.h). */
#include "server/openai_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (up to n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
  if (!len || len > n || (len == 2 && p[0] < 0xc2)) return 0;
  for (size_t i = 1; i < len; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  uint32_t cp = len == 1 ? p[0] : len == 2 ? (p[0] & 0x1fu) : len == 3 ? (p[0] & 0x0fu) : (p[0] & 0x07u);
  for (size_t i = 1; i < len; i++) cp = (cp << 6) | (p[i] & 0x3fu);
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

/* A JSON string of text[0..len), invalid bytes replaced by U+FFFD. */
static json_t *text_string(const char *text, size_t len) {
  char *out = malloc(len * 3 + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq((const unsigned char *)text + i, len - i);
    if (n) memcpy(out + o, text + i, n), o += n, i += n;
    else memcpy(out + o, "\xef\xbf\xbd", 3), o += 3, i++;
  }
  json_t *s = json_stringn(out, o);
  free(out);
  return s;
}

/* ---- logprobs ---- */

static json_t *byte_list(const srv_logprob *lp) {
  json_t *list = json_array();
  for (int i = 0; list && i < lp->len; i++) json_array_append_new(list, json_integer((unsigned char)lp->bytes[i]));
  return list;
}

/* -inf (a token the model gives no chance) as JSON's nearest number. */
static json_t *lp_value(float x) { return json_real(x < -9999.0f ? -9999.0 : (double)x); }

/* Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}], "refusal": null}. */
static json_t *chat_logprobs(const srv_turn *t, size_t from, size_t to) {
  json_t *content = json_array();
  for (size_t i = from; content && i < to; i++) {
    const srv_token_logprobs *tl = &t->lp[i];
    json_t *top = json_array();
    for (int k = 1; top && k < tl->n; k++)
      json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", text_string(tl->e[k].bytes, tl->e[k].len),
                                           "logprob", lp_value(tl->e[k].logprob), "bytes", byte_list(&tl->e[k])));
    json_array_append_new(content, json_pack("{s:o, s:o, s:o, s:o}", "token", text_string(tl->e[0].bytes, tl->e[0].len),
                                             "logprob", lp_value(tl->e[0].logprob), "bytes", byte_list(&tl->e[0]),
                                             "top_logprobs", top ? top : json_array()));
  }
  return json_pack("{s:o, s:n}", "content", content ? content : json_array(), "refusal");
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}. */
static json_t *completion_logprobs(const srv_turn *t, size_t from, size_t to) {
  json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
  for (size_t i = from; i < to; i++) {
    const srv_token_logprobs *tl = &t->lp[i];
    json_array_append_new(tokens, text_string(tl->e[0].bytes, tl->e[0].len));
    json_array_append_new(lps, lp_value(tl->e[0].logprob));
    json_t *top = json_object();
    for (int k = 1; top && k < tl->n; k++) {
      char key[3 * 128 + 1];
      json_t *name = text_string(tl->e[k].bytes, tl->e[k].len);
      snprintf(key, sizeof key, "%s", name ? json_string_value(name) : "");
      json_decref(name);
      if (!json_object_get(top, key)) json_object_set_new(top, key, lp_value(tl->e[k].logprob));
    }
    json_array_append_new(tops, top ? top : json_object());
    json_array_append_new(offs, json_integer((json_int_t)tl->text_off));
  }
  return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens ? tokens : json_array(), "token_logprobs",
                   lps ? lps : json_array(), "top_logprobs", tops ? tops : json_array(), "text_offset",
                   offs ? offs : json_array());
}

/* The logprobs of tokens [from, to) as the endpoint shows them, or null. */
static json_t *logprobs_value(const srv_turn *t, size_t from, size_t to) {
  if (!t->req->logprobs) return json_null();
  return t->req->chat ? chat_logprobs(t, from, to) : completion_logprobs(t, from, to);
}

size_t srv_json_logprobs_upto(const srv_turn *t, size_t from, size_t text_len) {
  while (from < t->n_lp && t->lp[from].text_off < text_len) from++;
  return from;
}

static json_t *usage(const srv_turn *t) {
  return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (json_int_t)t->n_prompt, "completion_tokens",
                   (json_int_t)t->n_generated, "total_tokens", (json_int_t)(t->n_prompt + t->n_generated),
                   "prompt_tokens_details", "cached_tokens", (json_int_t)(t->n_prompt - t->prefilled));
}

static char *dump(json_t *root) {
  char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  return text;
}

static json_t *finish_value(const char *finish) { return finish ? json_string(finish) : json_null(); }

static json_t *envelope(const srv_turn *t, const char *object, json_t *choices) {
  return json_pack("{s:s, s:s, s:I, s:s, s:o, s:n}", "id", t->id, "object", object, "created",
                   (json_int_t)t->created, "model", t->s->cfg.model_id, "choices", choices ? choices : json_array(),
                   "system_fingerprint");
}

char *srv_json_completion(const srv_turn *t) {
  json_t *text = text_string(t->text ? t->text : "", t->len);
  json_t *lp = logprobs_value(t, 0, srv_json_logprobs_upto(t, 0, t->len));
  json_t *choice = t->req->chat
                       ? json_pack("{s:i, s:{s:s, s:o}, s:o, s:o}", "index", 0, "message", "role", "assistant",
                                   "content", text, "finish_reason", finish_value(t->finish), "logprobs", lp)
                       : json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", text, "finish_reason",
                                   finish_value(t->finish), "logprobs", lp);
  json_t *root = envelope(t, t->req->chat ? "chat.completion" : "text_completion", json_pack("[o]", choice));
  if (root) json_object_set_new(root, "usage", usage(t));
  return dump(root);
}

char *srv_json_chunk(const srv_turn *t, const char *text, size_t len, bool role, const char *finish, size_t lp_from,
                     size_t lp_to) {
  json_t *choice;
  json_t *lp = lp_to > lp_from ? logprobs_value(t, lp_from, lp_to) : json_null();
  if (t->req->chat) {
    json_t *delta = json_object();
    if (role) json_object_set_new(delta, "role", json_string("assistant"));
    if (len || role) json_object_set_new(delta, "content", text_string(text, len));
    choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "finish_reason", finish_value(finish),
                       "logprobs", lp);
  } else {
    choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", text_string(text, len), "finish_reason",
                       finish_value(finish), "logprobs", lp);
  }
  json_t *root = envelope(t, t->req->chat ? "chat.completion.chunk" : "text_completion", json_pack("[o]", choice));
  if (root && t->req->include_usage) json_object_set_new(root, "usage", json_null());
  return dump(root);
}

char *srv_json_usage_chunk(const srv_turn *t) {
  json_t *root = envelope(t, t->req->chat ? "chat.completion.chunk" : "text_completion", json_array());
  if (root) json_object_set_new(root, "usage", usage(t));
  return dump(root);
}

char *srv_json_error(const srv_error *e) {
  json_t *msg = text_string(e->message, strlen(e->message));
  return dump(json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", msg, "type", e->type ? e->type : "server_error",
                        "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                        e->code ? json_string(e->code) : json_null()));
}

char *srv_json_models(const srv *s) {
  return dump(json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "object", "list", "data", "id", s->cfg.model_id, "object",
                        "model", "created", 0, "owned_by", "samepage"));
}

static json_t *session_value(const srv_session *ss) {
  return json_pack("{s:s, s:s, s:i, s:I, s:I, s:s, s:b}", "id", ss->id, "object", "session", "tokens",
                   (json_int_t)ss->n_tokens, "created", (json_int_t)ss->created, "last_used",
                   (json_int_t)ss->last_used, "state", ss->actor ? "live" : "stored", "busy", ss->busy);
}

char *srv_json_session(const srv_session *ss) { return dump(session_value(ss)); }

char *srv_json_session_list(srv_session *const *list, size_t n) {
  json_t *data = json_array();
  for (size_t i = 0; data && i < n; i++) json_array_append_new(data, session_value(list[i]));
  return dump(json_pack("{s:s, s:o}", "object", "list", "data", data ? data : json_array()));
}

char *srv_json_session_deleted(const char *id) {
  return dump(json_pack("{s:s, s:s, s:b}", "id", id, "object", "session.deleted", "deleted", 1));
}
