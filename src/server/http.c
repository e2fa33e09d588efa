/* http.c: libmicrohttpd daemon, bodies and routing (http.h). */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

#include "server/openai_json.h"
#include "server/request.h"
#include "server/stream.h"
#include "server/session.h"
#include "server/spares.h"
#include "server/sessions_api.h"
#include "server/tenant.h"
#include "server/turn.h"
#include "server/web.h"

/* A body this many times over --max-body is refused before it is read;
 * below that it is read and dropped, so the client sees the 413 instead of
 * a reset connection. */
#define DRAIN_FACTOR 16

/* One request being received. */
typedef struct conn {
  char *body;
  size_t len, cap;
  bool too_big;
  srv_endpoint ep;
  srv_tenant *tenant;   /* NULL until authenticated */
  srv_error auth;       /* why not (401) */
  int upload_fd;        /* POST /v1/sessions: the body goes to a file, else -1 */
  char upload[4096];
} conn;

/* ---- the header deadline ----
 *
 * libmicrohttpd's timeout is an idle one: a client that sends a header
 * byte now and then keeps its connection for ever. So every connection is
 * watched from its start, and again after each request it finished, until
 * a request's headers are in; one that takes longer than --header-timeout
 * is shut down (shutdown(2): libmicrohttpd's thread then sees the end of
 * the connection and closes it itself). libmicrohttpd reports a closed
 * connection before it closes the socket, and the entry goes then, under
 * the same lock: the watchdog never shuts down a reused descriptor. */

typedef struct watched {
  struct watched *prev, *next;
  int fd;
  double since_ms;       /* when it began waiting for headers */
  bool waiting;          /* no request's headers in since then */
} watched;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  watched *head;
  double limit_ms;       /* --header-timeout */
  bool stop;
  pthread_t thread;
  bool running;
  uint64_t cut;          /* connections shut down */
} watch = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Marks the connection's entry waiting (since now) or not. */
static void watch_mark(struct MHD_Connection *c, bool waiting) {
  const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  watched *w = info ? info->socket_context : NULL;
  if (!w) return;
  pthread_mutex_lock(&watch.lock);
  w->waiting = waiting, w->since_ms = sp_now_ms();
  pthread_mutex_unlock(&watch.lock);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  (void)cls;
  watched *w = *socket_context;
  pthread_mutex_lock(&watch.lock);
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info && (w = calloc(1, sizeof *w))) {
      *w = (watched){.fd = info->connect_fd, .since_ms = sp_now_ms(), .waiting = true, .next = watch.head};
      if (watch.head) watch.head->prev = w;
      watch.head = w;
      *socket_context = w;
    }
  } else if (w) { /* closed: before libmicrohttpd closes the socket */
    if (w->prev) w->prev->next = w->next;
    else watch.head = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
    *socket_context = NULL;
  }
  pthread_mutex_unlock(&watch.lock);
}

/* Shuts down the connections past the deadline, four times a second. */
static void *watchdog(void *arg) {
  (void)arg;
  pthread_mutex_lock(&watch.lock);
  while (!watch.stop) {
    double now = sp_now_ms();
    for (watched *w = watch.head; w; w = w->next)
      if (w->waiting && now - w->since_ms > watch.limit_ms) {
        shutdown(w->fd, SHUT_RDWR);
        w->waiting = false, watch.cut++;
      }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 250 * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&watch.wake, &watch.lock, &until);
  }
  pthread_mutex_unlock(&watch.lock);
  return NULL;
}

uint64_t srv_http_header_timeouts(void) {
  pthread_mutex_lock(&watch.lock);
  uint64_t n = watch.cut;
  pthread_mutex_unlock(&watch.lock);
  return n;
}

/* ---- requests ---- */

int srv_http_reply(struct MHD_Connection *c, int status, const char *type, char *body, const char *const *headers) {
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (!r) { free(body); return MHD_NO; }
  MHD_add_response_header(r, "Content-Type", type);
  for (size_t i = 0; headers && headers[i]; i += 2) MHD_add_response_header(r, headers[i], headers[i + 1]);
  enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return rc;
}

int srv_http_error(srv *s, struct MHD_Connection *c, const srv_error *e) {
  srv_metrics_error(&s->metrics, e->status);
  char *body = srv_json_error(e);
  if (!body) return MHD_NO;
  const char *retry[] = {"Retry-After", "1", NULL};
  return srv_http_reply(c, e->status, "application/json", body, e->status == 503 || e->status == 429 ? retry : NULL);
}

static int reply_json(struct MHD_Connection *c, int status, char *body) {
  return body ? srv_http_reply(c, status, "application/json", body, NULL) : MHD_NO;
}

/* X-Session-Id: the session to continue, by name. */
static int session_header(struct MHD_Connection *c, srv_request *r, srv_error *e) {
  const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Session-Id");
  if (!id) return 0;
  size_t n = strlen(id);
  bool ok = n > 0 && n < sizeof r->session_id;
  for (size_t i = 0; ok && i < n; i++)
    ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z');
  if (!ok) return srv_fail(e, 404, "invalid_request_error", "session_not_found", "X-Session-Id", "no such session");
  memcpy(r->session_id, id, n + 1);
  return 0;
}

/* POST /v1/chat/completions and /v1/completions. */
static int completion(srv *s, struct MHD_Connection *c, conn *k, bool chat) {
  srv_error e = {0};
  srv_request *r = calloc(1, sizeof *r);
  if (!r) return MHD_NO;
  if (srv_request_parse(s, k->body ? k->body : "", k->len, chat, r, &e) || session_header(c, r, &e) ||
      srv_tenant_enter(s, k->tenant, &e)) {
    srv_request_free(r); /* (again: it is idempotent) */
    free(r);
    return srv_http_error(s, c, &e);
  }
  r->tenant = k->tenant;
  if (r->stream) return srv_stream_start(s, c, r); /* takes r */
  srv_turn t;
  int rc = srv_turn_begin(s, r, &t, &e);
  while (!rc && !t.finish) rc = srv_turn_step(&t, &e);
  if (!rc) rc = srv_turn_end(&t, &e); /* else srv_turn_free rolls it back */
  srv_tenant_leave(s, r->tenant);
  if (rc) {
    srv_turn_free(&t);
    srv_request_free(r), free(r);
    return srv_http_error(s, c, &e);
  }
  char prefilled[24], session[40], template[24];
  snprintf(prefilled, sizeof prefilled, "%u", t.prefilled);
  snprintf(session, sizeof session, "%s", t.session_id);
  snprintf(template, sizeof template, "%s %u", t.template ? t.template : "", t.template_tokens);
  const char *headers[] = {"x-samepage-prefilled-tokens", prefilled, "x-samepage-session", session,
                           "X-Session-Id", session, t.template ? "x-samepage-template" : NULL, template, NULL};
  char *body = srv_json_completion(&t);
  srv_turn_free(&t);
  srv_request_free(r), free(r);
  return body ? srv_http_reply(c, 200, "application/json", body, headers) : MHD_NO;
}

static int metrics_page(srv *s, struct MHD_Connection *c) {
  srv_gauges g = {.max_memory = s->cfg.max_memory, .header_timeouts = srv_http_header_timeouts()};
  pthread_mutex_lock(&s->lock);
  srv_session_counts(s, &g.live, &g.stored);
  g.live_bytes = srv_session_live_bytes(s);
  g.templates = s->n_templates;
  srv_spares_gauges(s, &g);
  pthread_mutex_unlock(&s->lock);
  g.runtime.size = sizeof g.runtime;
  sp_error_free(sp_runtime_stats(s->rt, &g.runtime));
  char *text = srv_metrics_text(&s->metrics, &g);
  return text ? srv_http_reply(c, 200, "text/plain; version=0.0.4", text, NULL) : MHD_NO;
}

static srv_endpoint endpoint_of(const char *url) {
  if (!strcmp(url, "/health")) return SRV_EP_HEALTH;
  if (!strcmp(url, "/v1/models")) return SRV_EP_MODELS;
  if (!strcmp(url, "/v1/chat/completions")) return SRV_EP_CHAT;
  if (!strcmp(url, "/v1/completions")) return SRV_EP_COMPLETIONS;
  if (!strcmp(url, "/metrics")) return SRV_EP_METRICS;
  if (!strcmp(url, "/v1/sessions") || !strncmp(url, "/v1/sessions/", 13)) return SRV_EP_SESSIONS;
  if (srv_web_has(url)) return SRV_EP_WEB; /* the chat page (web.h) */
  return SRV_EP_OTHER;
}

static int route(srv *s, struct MHD_Connection *c, const char *url, const char *method, conn *k) {
  srv_error e = {0};
  bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
  bool wants_post = k->ep == SRV_EP_CHAT || k->ep == SRV_EP_COMPLETIONS;
  if (k->ep == SRV_EP_OTHER) {
    srv_fail(&e, 404, "invalid_request_error", "not_found", "", "no such endpoint: %s %.200s", method, url);
    return srv_http_error(s, c, &e);
  }
  if (!strncmp(url, "/v1/", 4) && !k->tenant) return srv_http_error(s, c, &k->auth);
  if (k->ep == SRV_EP_SESSIONS) {
    if (k->too_big) {
      srv_fail(&e, 413, "invalid_request_error", "request_too_large", "", "the upload is over %zu bytes (--max-import)",
               s->cfg.max_import);
      return srv_http_error(s, c, &e);
    }
    return srv_sessions_route(s, c, k->tenant, method, url, k->upload_fd >= 0 ? k->upload : NULL);
  }
  if ((wants_post && !post) || (!wants_post && !get)) {
    srv_fail(&e, 405, "invalid_request_error", "method_not_allowed", "", "%s %s: use %s", method, url,
             wants_post ? "POST" : "GET");
    return srv_http_error(s, c, &e);
  }
  if (k->too_big) {
    srv_fail(&e, 413, "invalid_request_error", "request_too_large", "", "the body is over %zu bytes",
             s->cfg.max_body);
    return srv_http_error(s, c, &e);
  }
  switch (k->ep) {
    case SRV_EP_HEALTH: return reply_json(c, 200, strdup("{\"status\":\"ok\"}"));
    case SRV_EP_MODELS: return reply_json(c, 200, srv_json_models(s));
    case SRV_EP_METRICS: return metrics_page(s, c);
    case SRV_EP_WEB: return srv_web_reply(c, url);
    case SRV_EP_CHAT: return completion(s, c, k, true);
    default: return completion(s, c, k, false);
  }
}

/* The body limit of k's endpoint. */
static size_t body_limit(const srv *s, const conn *k) {
  return k->upload_fd >= 0 ? s->cfg.max_import : s->cfg.max_body;
}

/* Appends a piece of the body (to the upload file for an import), or marks
 * it too big (then drops it). */
static void take_body(srv *s, conn *k, const char *data, size_t n) {
  if (k->too_big || k->len + n > body_limit(s, k)) {
    k->too_big = true;
    return;
  }
  if (k->upload_fd >= 0) {
    for (size_t done = 0; done < n;) {
      ssize_t w = write(k->upload_fd, data + done, n - done);
      if (w <= 0) { k->too_big = true; return; }
      done += (size_t)w;
    }
    k->len += n;
    return;
  }
  if (k->len + n + 1 > k->cap) {
    size_t cap = (k->len + n + 1) * 2;
    char *grown = realloc(k->body, cap);
    if (!grown) { k->too_big = true; return; }
    k->body = grown, k->cap = cap;
  }
  memcpy(k->body + k->len, data, n);
  k->len += n;
}

/* A declared Content-Length far over the limit: refuse before reading. */
static bool hopeless(srv *s, struct MHD_Connection *c, const conn *k) {
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  return cl && strtoull(cl, NULL, 10) / DRAIN_FACTOR > s->cfg.max_body && strtoull(cl, NULL, 10) > body_limit(s, k);
}

/* A new request: its tenant (or why not), and a file for an import's body. */
static void open_request(srv *s, struct MHD_Connection *c, const char *url, const char *method, conn *k) {
  k->upload_fd = -1;
  if (srv_tenant_auth(s, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), &k->tenant,
                      &k->auth))
    k->tenant = NULL;
  size_t n = strlen(url), kv = strlen("/kv.safetensors");
  bool import = !strcmp(url, "/v1/sessions") || (n > kv && !strcmp(url + n - kv, "/kv.safetensors"));
  if (k->tenant && k->ep == SRV_EP_SESSIONS && import && !strcmp(method, "POST")) {
    const char *dir = s->cfg.sessions_dir ? s->cfg.sessions_dir : getenv("TMPDIR");
    snprintf(k->upload, sizeof k->upload, "%s/samepage-upload-XXXXXX", dir && dir[0] ? dir : "/tmp");
    k->upload_fd = mkstemp(k->upload);
  }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **state) {
  (void)version;
  srv *s = cls;
  conn *k = *state;
  if (!k) {
    watch_mark(c, false); /* the headers are in */
    if (!(k = calloc(1, sizeof *k))) return MHD_NO;
    k->ep = endpoint_of(url);
    *state = k;
    srv_metrics_request(&s->metrics, k->ep);
    open_request(s, c, url, method, k);
    /* Refused before the body is read: an unknown key, a hopeless size. */
    if (!strncmp(url, "/v1/", 4) && !k->tenant) return (enum MHD_Result)route(s, c, url, method, k);
    if (!hopeless(s, c, k)) return MHD_YES;
    k->too_big = true;
    return (enum MHD_Result)route(s, c, url, method, k);
  }
  if (*data_size) {
    take_body(s, k, data, *data_size);
    *data_size = 0;
    return MHD_YES;
  }
  return (enum MHD_Result)route(s, c, url, method, k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why) {
  (void)cls, (void)why;
  watch_mark(c, true); /* kept alive: the next request's headers have a deadline too */
  conn *k = *state;
  if (k && k->upload_fd >= 0) close(k->upload_fd), unlink(k->upload);
  if (k) free(k->body), free(k);
  *state = NULL;
}

struct MHD_Daemon *srv_http_start(srv *s, int *port) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg.port)};
  if (inet_pton(AF_INET, s->cfg.host, &addr.sin_addr) != 1) {
    fprintf(stderr, "samepage serve: --host %s is not an IPv4 address\n", s->cfg.host);
    return NULL;
  }
  /* Slow clients: each connection has its own thread, so one that dribbles
   * its headers holds up nobody else; one silent for --client-timeout is
   * closed, and one whose headers take longer than --header-timeout is
   * shut down (the watchdog above); one address holds at most
   * --max-connections-per-ip of the --max-connections. */
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
      s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.client_timeout, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)s->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.max_per_ip,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "samepage serve: cannot listen on %s:%d\n", s->cfg.host, s->cfg.port);
    return NULL;
  }
  watch.limit_ms = s->cfg.header_timeout * 1e3, watch.stop = false;
  watch.running = pthread_create(&watch.thread, NULL, watchdog, NULL) == 0;
  if (!watch.running) fprintf(stderr, "samepage serve: no header deadline: cannot start its thread\n");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *port = info ? info->port : s->cfg.port;
  return d;
}

void srv_http_stop(struct MHD_Daemon *d) {
  if (d) MHD_stop_daemon(d);
  if (!watch.running) return;
  pthread_mutex_lock(&watch.lock);
  watch.stop = true;
  pthread_cond_signal(&watch.wake);
  pthread_mutex_unlock(&watch.lock);
  pthread_join(watch.thread, NULL);
  watch.running = false;
}
