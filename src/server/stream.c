/* stream.c: SSE replies (stream.h). */
#include "server/stream.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "server/openai_json.h"
#include "server/session.h"
#include "server/tenant.h"
#include "server/turn.h"

typedef enum phase { PHASE_ROLE, PHASE_TEXT, PHASE_DONE } phase;

typedef struct stream {
  srv *s;
  srv_request *req;
  srv_turn turn;
  char *out;            /* SSE bytes waiting to be sent */
  size_t out_len, out_at;
  size_t sent;          /* bytes of turn.text already sent */
  size_t lp_sent;       /* tokens of turn.lp already sent */
  bool left;            /* no longer counted in its tenant's requests in flight */
  phase phase;
} stream;

/* Appends "data: <json>\n\n" (json taken) to the pending output. */
static void add_event(stream *st, char *json) {
  const char *text = json ? json : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}";
  size_t n = strlen(text) + 8;
  char *grown = realloc(st->out, st->out_len + n + 1);
  if (grown) {
    st->out = grown;
    st->out_len += (size_t)snprintf(st->out + st->out_len, n + 1, "data: %s\n\n", text);
  }
  free(json);
}

/* The text that became final since the last chunk, as one chunk. */
static void add_text(stream *st, size_t upto) {
  if (upto <= st->sent) return;
  size_t lp_to = srv_json_logprobs_upto(&st->turn, st->lp_sent, upto);
  add_event(st, srv_json_chunk(&st->turn, st->turn.text + st->sent, upto - st->sent, false, NULL, st->lp_sent, lp_to));
  st->sent = upto, st->lp_sent = lp_to;
}

/* The request stops counting against its tenant as soon as its turn is
 * over (the client may send the next one before this reply is freed). */
static void leave(stream *st) {
  if (!st->left) srv_tenant_leave(st->s, st->req->tenant);
  st->left = true;
}

/* The turn failed after the headers went: the error travels as an event,
 * then the end; the turn is rolled back. */
static void add_failure(stream *st, const srv_error *e) {
  srv_turn_abort(&st->turn);
  leave(st);
  srv_metrics_error(&st->s->metrics, e->status);
  add_event(st, srv_json_error(e));
  add_event(st, strdup("[DONE]"));
  st->phase = PHASE_DONE;
}

/* The turn is over: session to disk, then the closing chunks. */
static void add_ending(stream *st) {
  srv_error e = {0};
  if (srv_turn_end(&st->turn, &e)) { add_failure(st, &e); return; }
  leave(st);
  add_text(st, st->turn.len);
  add_event(st, srv_json_chunk(&st->turn, "", 0, false, st->turn.finish, 0, 0));
  if (st->req->include_usage) add_event(st, srv_json_usage_chunk(&st->turn));
  add_event(st, strdup("[DONE]"));
  st->phase = PHASE_DONE;
}

/* Decodes until there is something to send. */
static void produce(stream *st) {
  srv_error e = {0};
  if (st->phase == PHASE_ROLE) {
    if (st->req->chat) add_event(st, srv_json_chunk(&st->turn, "", 0, true, NULL, 0, 0));
    st->phase = PHASE_TEXT;
    return;
  }
  while (st->out_at == st->out_len && st->phase == PHASE_TEXT) {
    if (srv_turn_step(&st->turn, &e)) {
      add_failure(st, &e);
    } else if (st->turn.finish) {
      add_ending(st);
    } else {
      add_text(st, srv_turn_safe_len(&st->turn));
    }
  }
}

static ssize_t on_pull(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  stream *st = cls;
  if (st->out_at == st->out_len) {
    st->out_at = st->out_len = 0;
    /* (completions have no role chunk: the first call may produce nothing) */
    while (st->out_len == 0 && st->phase != PHASE_DONE) produce(st);
    if (st->out_len == 0) return MHD_CONTENT_READER_END_OF_STREAM;
  }
  size_t n = st->out_len - st->out_at < max ? st->out_len - st->out_at : max;
  memcpy(buf, st->out + st->out_at, n);
  st->out_at += n;
  return (ssize_t)n;
}

static void on_free(void *cls) {
  stream *st = cls;
  if (!st->turn.ended) srv_metrics_disconnect(&st->s->metrics); /* then rolled back */
  srv_turn_free(&st->turn);
  leave(st);
  srv_request_free(st->req);
  free(st->req);
  free(st->out);
  free(st);
}

int srv_stream_start(srv *s, struct MHD_Connection *c, srv_request *r) {
  srv_error e = {0};
  stream *st = calloc(1, sizeof *st);
  if (!st || srv_turn_begin(s, r, &st->turn, &e)) {
    if (!st) srv_fail(&e, 500, "server_error", NULL, "", "out of memory");
    free(st);
    srv_tenant_leave(s, r->tenant);
    srv_request_free(r), free(r);
    return srv_http_error(s, c, &e);
  }
  st->s = s, st->req = r;
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, on_pull, st, on_free);
  if (!resp) { on_free(st); return MHD_NO; }
  char prefilled[24];
  snprintf(prefilled, sizeof prefilled, "%u", st->turn.prefilled);
  MHD_add_response_header(resp, "Content-Type", "text/event-stream");
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  MHD_add_response_header(resp, "x-samepage-prefilled-tokens", prefilled);
  MHD_add_response_header(resp, "x-samepage-session", st->turn.session_id);
  MHD_add_response_header(resp, "X-Session-Id", st->turn.session_id);
  char template[24];
  snprintf(template, sizeof template, "%s %u", st->turn.template ? st->turn.template : "", st->turn.template_tokens);
  if (st->turn.template) MHD_add_response_header(resp, "x-samepage-template", template);
  enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return rc;
}
