/* sessions_api.c: list, delete, export and import sessions (sessions_api.h). */
#include "server/sessions_api.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_kv.h"
#include "core/error.h"
#include "core/file_open.h"
#include "server/engine.h"
#include "server/http.h"
#include "server/openai_json.h"
#include "server/session.h"
#include "server/store.h"

static int not_found(srv *s, struct MHD_Connection *c, const char *id) {
  srv_error e = {0};
  srv_fail(&e, 404, "invalid_request_error", "session_not_found", "", "no session '%.40s'", id);
  return srv_http_error(s, c, &e);
}

static int list(srv *s, struct MHD_Connection *c, srv_tenant *t) {
  pthread_mutex_lock(&s->lock);
  srv_session **mine = malloc((s->n_sessions + 1) * sizeof *mine);
  size_t n = 0;
  for (size_t i = 0; mine && i < s->n_sessions; i++)
    if (!strcmp(s->sessions[i]->tenant, t->name)) mine[n++] = s->sessions[i];
  char *body = mine ? srv_json_session_list(mine, n) : NULL;
  pthread_mutex_unlock(&s->lock);
  free(mine);
  return body ? srv_http_reply(c, 200, "application/json", body, NULL) : MHD_NO;
}

static int show(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *id) {
  pthread_mutex_lock(&s->lock);
  srv_session *ss = srv_session_find(s, t->name, id);
  char *body = ss ? srv_json_session(ss) : NULL;
  pthread_mutex_unlock(&s->lock);
  if (!ss) return not_found(s, c, id);
  return body ? srv_http_reply(c, 200, "application/json", body, NULL) : MHD_NO;
}

static int delete_locked(srv *s, srv_tenant *t, const char *id, srv_error *e) {
  srv_session *ss = srv_session_find(s, t->name, id);
  if (!ss) return srv_fail(e, 404, "invalid_request_error", "session_not_found", "", "no session '%.40s'", id);
  if (ss->busy) return srv_fail(e, 409, "invalid_request_error", "session_busy", "", "session %s is in use", id);
  srv_session_remove(s, ss);
  if (srv_store_delete(s, ss, e)) {
    srv_session_add(s, ss); /* still on disk and in the index: keep it */
    return e->status;
  }
  srv_session_free(ss);
  return 0;
}

static int delete(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *id) {
  srv_error e = {0};
  pthread_mutex_lock(&s->lock);
  int rc = delete_locked(s, t, id, &e);
  pthread_mutex_unlock(&s->lock);
  if (rc) return srv_http_error(s, c, &e);
  char *body = srv_json_session_deleted(id);
  return body ? srv_http_reply(c, 200, "application/json", body, NULL) : MHD_NO;
}

/* A temporary file's path in the sessions directory (else $TMPDIR or
 * /tmp), created empty; its descriptor, or -1. */
static int temp_file(const srv *s, char *path, size_t cap) {
  const char *dir = s->cfg.sessions_dir ? s->cfg.sessions_dir : getenv("TMPDIR");
  snprintf(path, cap, "%s/samepage-serve-XXXXXX", dir && dir[0] ? dir : "/tmp");
  return mkstemp(path);
}

/* The path of the session's snapshot: the file of its last finished turn,
 * or (*temp set: the caller unlinks it) one written now from its idle live
 * actor. */
static int snapshot_path_locked(srv *s, srv_session *ss, char *path, size_t cap, bool *temp, srv_error *e) {
  *temp = false;
  if (ss->stored) {
    srv_store_snapshot_path(s, ss, path, cap);
    return 0;
  }
  if (!ss->actor || ss->busy)
    return srv_fail(e, 409, "invalid_request_error", "session_busy", "", "session %s is in its first turn", ss->id);
  int tmp = temp_file(s, path, cap);
  if (tmp < 0) return srv_fail(e, 500, "server_error", NULL, "", "cannot make a temporary file");
  close(tmp);
  sp_error_t *err = sp_actor_snapshot(ss->actor, path, &(sp_snapshot_options){0}, NULL);
  if (err) {
    unlink(path);
    srv_fail(e, 500, "server_error", NULL, "", "snapshot: %s", sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  *temp = true;
  return 0;
}

/* A descriptor of the session's snapshot (snapshot_path_locked). */
static int snapshot_fd_locked(srv *s, srv_tenant *t, const char *id, int *fd, srv_error *e) {
  srv_session *ss = srv_session_find(s, t->name, id);
  if (!ss) return srv_fail(e, 404, "invalid_request_error", "session_not_found", "", "no session '%.40s'", id);
  char path[4096];
  bool temp;
  if (snapshot_path_locked(s, ss, path, sizeof path, &temp, e)) return e->status;
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (temp) unlink(path); /* the descriptor keeps it */
  return *fd < 0 ? srv_fail(e, 500, "server_error", NULL, "", "cannot open the snapshot") : 0;
}

/* A descriptor of the session's KV cache as safetensors (cli_kv.h: the
 * format of `samepage kv export`), made from its snapshot. */
static int kv_fd_locked(srv *s, srv_tenant *t, const char *id, int *fd, srv_error *e) {
  srv_session *ss = srv_session_find(s, t->name, id);
  if (!ss) return srv_fail(e, 404, "invalid_request_error", "session_not_found", "", "no session '%.40s'", id);
  char snap[4096], out[4096];
  bool temp;
  if (snapshot_path_locked(s, ss, snap, sizeof snap, &temp, e)) return e->status;
  int tmp = temp_file(s, out, sizeof out);
  if (tmp >= 0) close(tmp), unlink(out); /* sp_kv_export_file creates it anew */
  uint32_t layers = 0, positions = 0;
  sp_error_t *err = tmp < 0 ? sp_error_new("cannot make a temporary file") :
                    sp_kv_export_file(snap, out, &layers, &positions);
  if (temp) unlink(snap);
  *fd = err ? -1 : open(out, O_RDONLY | O_CLOEXEC);
  if (tmp >= 0) unlink(out); /* the descriptor keeps it */
  if (err) {
    srv_fail(e, 500, "server_error", NULL, "", "kv export: %s", sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  return *fd < 0 ? srv_fail(e, 500, "server_error", NULL, "", "cannot open the KV export") : 0;
}

/* Replies with the file behind fd (taken) as application/octet-stream. */
static int reply_fd(struct MHD_Connection *c, int fd) {
  struct stat st;
  struct MHD_Response *r = fstat(fd, &st) ? NULL : MHD_create_response_from_fd((uint64_t)st.st_size, fd);
  if (!r) { close(fd); return MHD_NO; }
  MHD_add_response_header(r, "Content-Type", "application/octet-stream");
  enum MHD_Result ok = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ok;
}

static int export(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *id, bool kv) {
  srv_error e = {0};
  int fd = -1;
  pthread_mutex_lock(&s->lock);
  int rc = kv ? kv_fd_locked(s, t, id, &fd, &e) : snapshot_fd_locked(s, t, id, &fd, &e);
  pthread_mutex_unlock(&s->lock);
  if (rc) return srv_http_error(s, c, &e);
  return reply_fd(c, fd);
}

/* The imported actor as a new session of t; takes a. */
static int adopt_locked(srv *s, srv_tenant *t, sp_actor_t *a, srv_session **out, srv_error *e) {
  uint32_t ctx = 0, ours = 0, n = 0, unused = 0;
  int32_t *ids = NULL, *none = NULL;
  if (srv_engine_history(a, &ctx, &ids, &n, e) || srv_engine_history(s->scratch, &ours, &none, &unused, e)) {
    free(ids);
    sp_actor_free(a);
    return e->status;
  }
  free(none);
  srv_session *ss = calloc(1, sizeof *ss);
  if (ctx != ours || n == 0 || !ss) {
    free(ids), free(ss);
    sp_actor_free(a);
    if (ctx != ours)
      return srv_fail(e, 400, "invalid_request_error", "invalid_snapshot", "",
                      "the snapshot's context is %u tokens; this server's is %u", ctx, ours);
    return srv_fail(e, 400, "invalid_request_error", "invalid_snapshot", "", "the snapshot holds no conversation");
  }
  srv_session_new_id(s, ss->id);
  snprintf(ss->tenant, sizeof ss->tenant, "%s", t->name);
  ss->actor = a, ss->tokens = ids, ss->n_tokens = ss->cap_tokens = n;
  ss->prompt_end = n; /* a request extending the whole conversation continues it */
  ss->created = ss->last_used = (long)time(NULL), ss->used = ++s->clock;
  if (srv_session_add(s, ss)) {
    srv_session_free(ss);
    return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  }
  if (srv_store_save(s, ss, e)) {
    srv_session_remove(s, ss);
    srv_session_free(ss);
    return e->status;
  }
  *out = ss;
  return 0;
}

static int import_locked(srv *s, srv_tenant *t, const char *upload, char **body, srv_error *e) {
  struct stat st;
  if (srv_session_make_room(s, stat(upload, &st) ? s->fresh_bytes : (uint64_t)st.st_size, e)) return e->status;
  sp_actor_t *a = NULL;
  sp_error_t *err = srv_engine_restore(s, upload, &a);
  if (err) {
    srv_fail(e, 400, "invalid_request_error", "invalid_snapshot", "", "not a snapshot this server can restore: %s",
             sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  srv_session *ss = NULL;
  if (adopt_locked(s, t, a, &ss, e)) return e->status;
  srv_session_trim(s);
  *body = srv_json_session(ss);
  return 0;
}

/* POST /v1/sessions/ID/kv.safetensors: session ID's snapshot restored
 * into a new actor, the upload's KV cache written into it (as `samepage kv
 * import`), adopted as a new session of t holding ID's first positions. */
static int import_kv_locked(srv *s, srv_tenant *t, const char *id, const char *upload, char **body, srv_error *e) {
  srv_session *base = srv_session_find(s, t->name, id);
  if (!base) return srv_fail(e, 404, "invalid_request_error", "session_not_found", "", "no session '%.40s'", id);
  uint8_t *file = NULL;
  size_t len = 0;
  sp_error_t *err = sp_read_regular(upload, SP_OPEN_NONEMPTY, &file, &len);
  if (err) {
    srv_fail(e, 400, "invalid_request_error", "invalid_kv", "", "the KV cache: %s", sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  char snap[4096];
  bool temp = false;
  sp_actor_t *a = NULL;
  int rc = snapshot_path_locked(s, base, snap, sizeof snap, &temp, e) ||
           srv_session_make_room(s, base->bytes ? base->bytes : s->fresh_bytes, e);
  if (!rc && (err = srv_engine_restore(s, snap, &a))) {
    rc = srv_fail(e, 500, "server_error", NULL, "", "cannot restore session %s: %s", id, sp_error_message(err));
    sp_error_free(err), err = NULL;
  }
  uint32_t old_n = 0, n_pos = 0;
  if (!rc) err = sp_kv_import_actor(a, snap, file, len, &old_n, &n_pos);
  if (!rc && !err && n_pos > old_n)
    err = sp_error_new("the file holds %u positions; session %s holds %u (the token ids come from it)", n_pos, id,
                       old_n);
  if (!rc && err) rc = srv_fail(e, 400, "invalid_request_error", "invalid_kv", "", "not a KV cache this session can "
                                "take: %s", sp_error_message(err));
  sp_error_free(err);
  if (temp) unlink(snap);
  free(file);
  if (rc) {
    sp_actor_free(a);
    return e->status;
  }
  srv_session *ss = NULL;
  if (adopt_locked(s, t, a, &ss, e)) return e->status;
  srv_session_trim(s);
  *body = srv_json_session(ss);
  return 0;
}

static int import(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *id, const char *upload) {
  srv_error e = {0};
  char *body = NULL;
  pthread_mutex_lock(&s->lock);
  int rc = !upload ? srv_fail(&e, 500, "server_error", NULL, "", "the upload was not kept")
           : id    ? import_kv_locked(s, t, id, upload, &body, &e)
                   : import_locked(s, t, upload, &body, &e);
  pthread_mutex_unlock(&s->lock);
  if (rc) return srv_http_error(s, c, &e);
  return body ? srv_http_reply(c, 200, "application/json", body, NULL) : MHD_NO;
}

static bool valid_id(const char *id, size_t n) {
  if (n == 0 || n >= 32) return false;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
      return false;
  return true;
}

static int wrong_method(srv *s, struct MHD_Connection *c, const char *method, const char *allowed) {
  srv_error e = {0};
  srv_fail(&e, 405, "invalid_request_error", "method_not_allowed", "", "%.16s: use %s", method, allowed);
  return srv_http_error(s, c, &e);
}

int srv_sessions_route(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *method, const char *url,
                       const char *upload) {
  const char *rest = url + strlen("/v1/sessions");
  if (!*rest) {
    if (!strcmp(method, "GET")) return list(s, c, t);
    if (!strcmp(method, "POST")) return import(s, c, t, NULL, upload);
    return wrong_method(s, c, method, "GET or POST");
  }
  const char *id = rest + 1, *slash = strchr(id, '/');
  size_t n = slash ? (size_t)(slash - id) : strlen(id);
  char name[32] = "";
  if (!valid_id(id, n)) return not_found(s, c, "");
  memcpy(name, id, n);
  if (!slash) {
    if (!strcmp(method, "GET")) return show(s, c, t, name);
    if (!strcmp(method, "DELETE")) return delete(s, c, t, name);
    return wrong_method(s, c, method, "GET or DELETE");
  }
  if (!strcmp(slash, "/kv.safetensors")) {
    if (!strcmp(method, "GET")) return export(s, c, t, name, true);
    if (!strcmp(method, "POST")) return import(s, c, t, name, upload);
    return wrong_method(s, c, method, "GET or POST");
  }
  if (strcmp(slash, "/snapshot")) return not_found(s, c, name);
  if (strcmp(method, "GET")) return wrong_method(s, c, method, "GET");
  return export(s, c, t, name, false);
}
