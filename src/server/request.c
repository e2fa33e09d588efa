/* request.c: parsing and checking OpenAI request bodies (request.h). */
#include "server/request.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty", "repeat_penalty", "n", "user",
    "logprobs", "top_logprobs", NULL};
static const char *const completion_fields[] = {
    "model", "prompt", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
    "stop", "presence_penalty", "frequency_penalty", "repeat_penalty", "n", "user", "logprobs", "echo", NULL};

static int bad(srv_error *e, const char *param, const char *fmt, const char *detail) {
  return srv_fail(e, 400, "invalid_request_error", NULL, param, fmt, detail);
}

/* Nesting deeper than SRV_MAX_DEPTH is refused before the parser sees it
 * (jansson's own limit is 2048 levels of recursion). */
static bool too_deep(const char *body, size_t len) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < len; i++) {
    char c = body[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = false;
    } else if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > SRV_MAX_DEPTH) return true;
    } else if (c == ']' || c == '}') depth--;
  }
  return false;
}

static bool is_one_of(const char *key, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (!strcmp(key, names[i])) return true;
  return false;
}

/* Appends bytes to the request's input buffer. */
static int put(srv_request *r, const char *bytes, size_t len, srv_error *e) {
  char *grown = realloc(r->input, r->input_len + len + 1);
  if (!grown) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  r->input = grown;
  memcpy(r->input + r->input_len, bytes, len);
  r->input_len += len;
  r->input[r->input_len] = '\0';
  return 0;
}

/* A message's content: a string, or an array of {"type":"text","text":...}. */
static int put_content(srv_request *r, json_t *content, const char *param, srv_error *e) {
  if (json_is_string(content)) return put(r, json_string_value(content), json_string_length(content), e);
  if (!json_is_array(content)) return bad(e, param, "%s must be a string or an array of text parts", param);
  size_t i;
  json_t *part;
  json_array_foreach(content, i, part) {
    const char *type = NULL, *text = NULL;
    if (json_unpack(part, "{s:s, s:s}", "type", &type, "text", &text) || strcmp(type, "text") ||
        json_object_size(part) != 2)
      return bad(e, param, "%s: only parts {\"type\": \"text\", \"text\": ...} are supported", param);
    if (put(r, text, strlen(text), e)) return e->status;
  }
  return 0;
}

static int put_message(srv_request *r, json_t *m, size_t i, srv_error *e) {
  char param[64];
  snprintf(param, sizeof param, "messages[%zu]", i);
  if (!json_is_object(m)) return bad(e, param, "%s must be an object", param);
  const char *key;
  json_t *v;
  json_object_foreach(m, key, v) {
    if (strcmp(key, "role") && strcmp(key, "content")) {
      snprintf(param, sizeof param, "messages[%zu].%.32s", i, key);
      return bad(e, param, "%s is not supported", param);
    }
  }
  json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
  const char *name = json_string_value(role);
  if (!name || !(is_one_of(name, (const char *const[]){"system", "developer", "user", "assistant", NULL})))
    return bad(e, param, "%s.role must be system, developer, user or assistant", param);
  if (!content) return bad(e, param, "%s has no content", param);
  if (!strcmp(name, "developer")) name = "system"; /* OpenAI's newer name for it */
  if (put(r, name, strlen(name) + 1, e)) return e->status;
  snprintf(param, sizeof param, "messages[%zu].content", i);
  if (put_content(r, content, param, e)) return e->status;
  return put(r, "", 1, e);
}

static int parse_messages(srv_request *r, json_t *v, srv_error *e) {
  if (!json_is_array(v) || json_array_size(v) == 0) return bad(e, "messages", "%s must be a non-empty array", "messages");
  if (json_array_size(v) > SRV_MAX_MESSAGES)
    return bad(e, "messages", "%s: at most 1024 messages", "messages");
  size_t i;
  json_t *m;
  json_array_foreach(v, i, m) if (put_message(r, m, i, e)) return e->status;
  return 0;
}

static int parse_prompt(srv_request *r, json_t *v, srv_error *e) {
  if (json_is_array(v) && json_array_size(v) == 1) v = json_array_get(v, 0);
  if (!json_is_string(v)) return bad(e, "prompt", "%s must be a string (or an array of one string)", "prompt");
  if (json_string_length(v) == 0) return bad(e, "prompt", "%s is empty", "prompt");
  return put(r, json_string_value(v), json_string_length(v), e);
}

static int parse_stop(srv_request *r, json_t *v, srv_error *e) {
  json_t *one[1] = {v};
  size_t n = json_is_array(v) ? json_array_size(v) : 1;
  if (n > SRV_MAX_STOP) return bad(e, "stop", "%s: at most 4 sequences", "stop");
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
    if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > 256)
      return bad(e, "stop", "%s must be a string or an array of non-empty strings (up to 256 bytes)", "stop");
    if (!(r->stop[r->n_stop++] = strdup(json_string_value(s))))
      return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  }
  return 0;
}

/* Adds "--option\0value\0" for the guest. */
static void add_sampling(srv_request *r, const char *opt, const char *val) {
  int n = snprintf(r->sampling + r->sampling_len, sizeof r->sampling - r->sampling_len, "%s%c%s%c", opt, 0, val, 0);
  if (n > 0 && (size_t)n < sizeof r->sampling - r->sampling_len) r->sampling_len += (size_t)n;
}

/* A number field within [lo, hi] (lo excluded when open_lo), to the guest
 * as opt. */
static int number_field(srv_request *r, json_t *v, const char *key, const char *opt, double lo, double hi,
                        bool open_lo, srv_error *e) {
  double x = json_number_value(v);
  if (!json_is_number(v) || !isfinite(x) || x < lo || x > hi || (open_lo && x == lo))
    return srv_fail(e, 400, "invalid_request_error", NULL, key, "%s must be a number %s %g and %g", key,
                    open_lo ? "above" : "between", lo, hi);
  char val[32];
  snprintf(val, sizeof val, "%.9g", x);
  add_sampling(r, opt, val);
  return 0;
}

static int integer_field(json_t *v, const char *key, long long lo, long long hi, long long *out, srv_error *e) {
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return srv_fail(e, 400, "invalid_request_error", NULL, key, "%s must be an integer from %lld to %lld", key, lo, hi);
  *out = json_integer_value(v);
  return 0;
}

static int parse_stream_options(srv_request *r, json_t *v, srv_error *e) {
  if (!json_is_object(v)) return bad(e, "stream_options", "%s must be an object", "stream_options");
  const char *key;
  json_t *x;
  json_object_foreach(v, key, x) {
    if (strcmp(key, "include_usage") || !json_is_boolean(x))
      return bad(e, "stream_options", "%s: only include_usage (a boolean) is supported", "stream_options");
    r->include_usage = json_is_true(x);
  }
  return 0;
}

/* logprobs and top_logprobs: chat takes logprobs (a boolean) and
 * top_logprobs 0..20; completions take logprobs as the count, 0..20. */
static int logprobs_field(srv_request *r, const char *key, json_t *v, srv_error *e) {
  long long x = 0;
  if (!strcmp(key, "top_logprobs")) {
    if (integer_field(v, key, 0, 20, &x, e)) return e->status;
    r->top_logprobs = (int)x;
  } else if (r->chat) {
    if (!json_is_boolean(v)) return bad(e, key, "%s must be a boolean (top_logprobs gives the count)", key);
    r->logprobs = json_is_true(v);
  } else {
    if (integer_field(v, key, 0, 20, &x, e)) return e->status;
    r->logprobs = true, r->top_logprobs = (int)x;
  }
  return 0;
}

/* Fields that must keep their default: n, echo. */
static int fixed_field(const char *key, json_t *v, srv_error *e) {
  if (!strcmp(key, "n") && !(json_is_integer(v) && json_integer_value(v) == 1))
    return bad(e, "n", "%s: only 1 choice per request is supported", "n");
  if (!strcmp(key, "echo") && !json_is_false(v)) return bad(e, "echo", "%s is not supported", "echo");
  if (!strcmp(key, "user") && !json_is_string(v)) return bad(e, "user", "%s must be a string", "user");
  return 0;
}

static int parse_model(srv *s, srv_request *r, json_t *v, srv_error *e) {
  const char *name = json_string_value(v);
  if (!name) return bad(e, "model", "%s must be a string", "model");
  if (strcmp(name, s->cfg.model_id))
    return srv_fail(e, 404, "invalid_request_error", "model_not_found", "model",
                    "The model '%.64s' does not exist; this server serves '%s'", name, s->cfg.model_id);
  snprintf(r->model, sizeof r->model, "%s", name);
  return 0;
}

static int sampling_field(srv_request *r, const char *key, json_t *v, srv_error *e) {
  if (!strcmp(key, "temperature")) return number_field(r, v, key, "--temp", 0, 2, false, e);
  if (!strcmp(key, "top_p")) return number_field(r, v, key, "--top-p", 0, 1, true, e);
  if (!strcmp(key, "min_p")) return number_field(r, v, key, "--min-p", 0, 0.999999, false, e);
  if (!strcmp(key, "presence_penalty")) return number_field(r, v, key, "--presence-penalty", -2, 2, false, e);
  if (!strcmp(key, "frequency_penalty")) return number_field(r, v, key, "--frequency-penalty", -2, 2, false, e);
  if (!strcmp(key, "repeat_penalty")) return number_field(r, v, key, "--repeat-penalty", 0, 10, true, e);
  long long x = 0;
  char val[32];
  if (!strcmp(key, "top_k")) {
    if (integer_field(v, key, 0, 1 << 20, &x, e)) return e->status;
    snprintf(val, sizeof val, "%lld", x);
    add_sampling(r, "--top-k", val);
  } else if (!strcmp(key, "seed")) {
    if (integer_field(v, key, 0, INT64_MAX, &x, e)) return e->status;
    snprintf(val, sizeof val, "%lld", x);
    add_sampling(r, "--seed", val);
    r->has_seed = true;
  }
  return 0;
}

/* One top-level field. */
static int parse_field(srv *s, srv_request *r, const char *key, json_t *v, srv_error *e) {
  long long x = 0;
  if (json_is_null(v) && strcmp(key, "messages") && strcmp(key, "prompt")) return 0; /* null: the default */
  if (!strcmp(key, "model")) return parse_model(s, r, v, e);
  if (!strcmp(key, "messages")) return parse_messages(r, v, e);
  if (!strcmp(key, "prompt")) return parse_prompt(r, v, e);
  if (!strcmp(key, "stop")) return parse_stop(r, v, e);
  if (!strcmp(key, "stream_options")) return parse_stream_options(r, v, e);
  if (!strcmp(key, "stream")) {
    if (!json_is_boolean(v)) return bad(e, key, "%s must be a boolean", key);
    r->stream = json_is_true(v);
    return 0;
  }
  if (!strcmp(key, "max_tokens") || !strcmp(key, "max_completion_tokens")) {
    if (integer_field(v, key, 1, s->cfg.ctx, &x, e)) return e->status;
    r->max_tokens = (long)x;
    return 0;
  }
  if (!strcmp(key, "logprobs") || !strcmp(key, "top_logprobs")) return logprobs_field(r, key, v, e);
  return fixed_field(key, v, e) ? e->status : sampling_field(r, key, v, e);
}

/* A seed for a request that names none: requests differ, as OpenAI's. */
static void add_fresh_seed(srv_request *r) {
  static unsigned long long counter;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long seed = ((unsigned long long)ts.tv_nsec * 0x9e3779b97f4a7c15ull) ^ (unsigned long long)ts.tv_sec ^
                            (__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) << 32);
  char val[32];
  snprintf(val, sizeof val, "%llu", seed % 1000000000000ull);
  add_sampling(r, "--seed", val);
}

static int parse_root(srv *s, json_t *root, bool chat, srv_request *r, srv_error *e) {
  const char *key;
  json_t *v;
  const char *const *allowed = chat ? chat_fields : completion_fields;
  json_object_foreach(root, key, v) {
    if (!is_one_of(key, allowed)) {
      char name[64];
      snprintf(name, sizeof name, "%.60s", key);
      return srv_fail(e, 400, "invalid_request_error", "unsupported_parameter", name,
                      "Unsupported parameter: '%s' is not supported by this server", name);
    }
    if (parse_field(s, r, key, v, e)) return e->status;
  }
  if (!r->input) return bad(e, chat ? "messages" : "prompt", "%s is required", chat ? "messages" : "prompt");
  if (chat && r->top_logprobs && !r->logprobs)
    return bad(e, "top_logprobs", "%s requires logprobs: true", "top_logprobs");
  if (r->include_usage && !r->stream)
    return bad(e, "stream_options", "%s is only allowed with stream: true", "stream_options");
  if (!r->has_seed) add_fresh_seed(r);
  return 0;
}

int srv_request_parse(srv *s, const char *body, size_t len, bool chat, srv_request *r, srv_error *e) {
  memset(r, 0, sizeof *r);
  r->chat = chat, r->max_tokens = -1;
  if (too_deep(body, len)) return bad(e, "", "the JSON body nests deeper than %s levels", "32");
  json_error_t jerr;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) return srv_fail(e, 400, "invalid_request_error", NULL, "", "invalid JSON body: %s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
  int rc = json_is_object(root) ? parse_root(s, root, chat, r, e) : bad(e, "", "the body must be a JSON %s", "object");
  json_decref(root);
  if (rc) srv_request_free(r);
  return rc;
}

void srv_request_free(srv_request *r) {
  free(r->input);
  for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
  r->input = NULL, r->n_stop = 0;
}
