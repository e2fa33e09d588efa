/* store.c: durable sessions in --sessions DIR (store.h). */
#include "server/store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "server/session.h"

/* The store of s and its context: the directory (--sessions DIR). An
 * S3-compatible store would be picked here (docs/SCALING.md). */
static const srv_store_ops *store_of(const srv *s, void **ctx) {
  *ctx = (void *)s->cfg.sessions_dir;
  return &srv_store_dir;
}

/* A snapshot's object name: <id>.<generation>.snap. */
static void snap_name(const char *id, uint32_t generation, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.%u.snap", id, generation);
}

static void path_of(const srv *s, const char *id, uint32_t generation, char *buf, size_t cap) {
  void *ctx;
  char name[64];
  snap_name(id, generation, name, sizeof name);
  store_of(s, &ctx)->local_path(ctx, name, buf, cap);
}

void srv_store_snapshot_path(const srv *s, const srv_session *ss, char *buf, size_t cap) {
  path_of(s, ss->id, ss->generation, buf, cap);
}

static json_t *session_json(const srv_session *ss) {
  json_t *tokens = json_array();
  for (uint32_t i = 0; tokens && i < ss->n_tokens; i++) json_array_append_new(tokens, json_integer(ss->tokens[i]));
  return json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:o}", "id", ss->id, "tenant", ss->tenant, "generation",
                   (json_int_t)ss->generation, "prompt_end", (json_int_t)ss->prompt_end, "used", (json_int_t)ss->used,
                   "created", (json_int_t)ss->created, "last_used", (json_int_t)ss->last_used, "tokens",
                   tokens ? tokens : json_array());
}

/* Whether errno err means the disk (or the file size limit) is full. */
static bool storage_full(int err) { return err == ENOSPC || err == EDQUOT || err == EFBIG; }

/* Whether the runtime's error message names one of those (it formats
 * them with strerror: sp_error_t carries no errno). */
static bool message_says_full(const char *msg) {
  static const int full[] = {ENOSPC, EDQUOT, EFBIG};
  for (size_t i = 0; i < sizeof full / sizeof *full; i++)
    if (strstr(msg, strerror(full[i]))) return true;
  return false;
}

/* A write that failed: 507 (insufficient_storage) when the disk is full,
 * else 500. Either way the previous snapshot and index are as they were. */
static int write_failed(srv_error *e, bool full, const char *what, const char *why) {
  if (full)
    return srv_fail(e, 507, "server_error", "insufficient_storage", "",
                    "the sessions directory is full: %s not written (%s)", what, why);
  return srv_fail(e, 500, "server_error", NULL, "", "%s not written (%s)", what, why);
}

/* fsync the directory, so a rename in it is durable. */
static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) fsync(fd), close(fd);
}

/* Writes text to path atomically: temporary file, fsync, rename. */
static int write_atomic(const char *dir, const char *path, const char *text, srv_error *e) {
  char tmp[4096 + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  size_t len = strlen(text), done = 0;
  int err = fd < 0 ? errno : 0;
  while (fd >= 0 && done < len) {
    ssize_t n = write(fd, text + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { err = n < 0 ? errno : ENOSPC; break; }
    done += (size_t)n;
  }
  if (fd >= 0 && !err && fsync(fd)) err = errno;
  if (fd >= 0 && close(fd) && !err) err = errno; /* (NFS reports a full disk here) */
  if (!err && rename(tmp, path)) err = errno;
  if (err) {
    unlink(tmp);
    return write_failed(e, storage_full(err), path, strerror(err));
  }
  sync_dir(dir);
  return 0;
}

/* The index of every stored session. */
static int write_index(srv *s, srv_error *e) {
  json_t *list = json_array();
  for (size_t i = 0; list && i < s->n_sessions; i++)
    if (s->sessions[i]->stored) json_array_append_new(list, session_json(s->sessions[i]));
  json_t *root = json_pack("{s:i, s:s, s:i, s:o}", "version", 1, "model", s->cfg.model, "ctx", s->cfg.ctx,
                           "sessions", list ? list : json_array());
  char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (!text) return srv_fail(e, 500, "server_error", NULL, "", "out of memory writing the index");
  void *ctx;
  int rc = store_of(s, &ctx)->put(ctx, "index.json", text, e);
  free(text);
  return rc;
}

int srv_store_write(srv *s, srv_session *ss, srv_store_pending *p, srv_error *e) {
  *p = (srv_store_pending){0};
  if (!s->cfg.sessions_dir || !ss->actor) return 0;
  void *ctx;
  const srv_store_ops *ops = store_of(s, &ctx);
  char path[4096];
  snap_name(ss->id, ss->generation + 1, p->name, sizeof p->name);
  ops->local_path(ctx, p->name, path, sizeof path);
  sp_snapshot_stats stats = {0};
  double t0 = sp_now_ms();
  sp_error_t *err = sp_actor_snapshot(ss->actor, path, &(sp_snapshot_options){0}, &stats);
  if (err) {
    write_failed(e, message_says_full(sp_error_message(err)), "the session's snapshot", sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  if (ops->publish(ctx, p->name, e)) {
    ops->remove(ctx, p->name);
    return e->status;
  }
  p->written = true, p->bytes = stats.bytes, p->seconds = (sp_now_ms() - t0) / 1e3;
  return 0;
}

int srv_store_commit(srv *s, srv_session *ss, const srv_store_pending *p, srv_error *e) {
  if (!p->written) return 0;
  void *ctx;
  const srv_store_ops *ops = store_of(s, &ctx);
  char old_name[64];
  snap_name(ss->id, ss->generation, old_name, sizeof old_name);
  bool was_stored = ss->stored;
  ss->generation++, ss->stored = true;
  if (write_index(s, e)) {
    /* The index still names the old snapshot: keep using it. */
    ss->generation--, ss->stored = was_stored;
    ops->remove(ctx, p->name);
    return e->status;
  }
  if (was_stored) ops->remove(ctx, old_name);
  ss->bytes = p->bytes;
  srv_metrics_snapshot(&s->metrics, p->seconds);
  return 0;
}

int srv_store_save(srv *s, srv_session *ss, srv_error *e) {
  srv_store_pending p;
  return srv_store_write(s, ss, &p, e) || srv_store_commit(s, ss, &p, e) ? e->status : 0;
}

int srv_store_delete(srv *s, srv_session *ss, srv_error *e) {
  if (!s->cfg.sessions_dir || !ss->stored) return 0;
  void *ctx;
  const srv_store_ops *ops = store_of(s, &ctx);
  char name[64];
  snap_name(ss->id, ss->generation, name, sizeof name);
  int rc = write_index(s, e); /* ss is out of the table: the index no longer names it */
  if (!rc) ops->remove(ctx, name);
  return rc;
}

/* ---- the directory store (srv_store_dir) ---- */

static void dir_local_path(void *ctx, const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", (const char *)ctx, name);
}

/* sp_actor_snapshot already wrote the file whole (temporary, fsync,
 * rename). Its rename becomes durable with the index's, which syncs the
 * same directory, before the index names it: nothing to do here. */
static int dir_publish(void *ctx, const char *name, srv_error *e) {
  (void)ctx, (void)name, (void)e;
  return 0;
}

static int dir_put(void *ctx, const char *name, const char *text, srv_error *e) {
  char path[4096];
  dir_local_path(ctx, name, path, sizeof path);
  return write_atomic(ctx, path, text, e);
}

static bool dir_exists(void *ctx, const char *name) {
  char path[4096];
  dir_local_path(ctx, name, path, sizeof path);
  return access(path, R_OK) == 0;
}

static void dir_remove(void *ctx, const char *name) {
  char path[4096];
  dir_local_path(ctx, name, path, sizeof path);
  unlink(path);
}

/* Whether s is "<digits><end>", end included; 0 digits: no. */
static bool digits_then(const char *s, const char *end) {
  size_t n = 0;
  while (isdigit((unsigned char)s[n])) n++;
  return n > 0 && !strcmp(s + n, end);
}

/* The pid of a snapshot temporary "<id>.<gen>.snap.tmp.<pid>.XXXXXX"
 * (the runtime's naming), or 0. */
static long tmp_pid(const char *name) {
  const char *at = strstr(name, ".snap.tmp.");
  if (!at) return 0;
  char *end;
  long pid = strtol(at + 10, &end, 10);
  return end != at + 10 && *end == '.' && strlen(end + 1) == 6 && pid <= 0x7fffffff ? pid : 0;
}

/* What a crash in this directory can leave: "index.json.tmp", a snapshot
 * "<id>.<gen>.snap" written but never named by the index, the temporary
 * of a snapshot whose writer is gone, an import's body. */
static bool left_over(const char *name, bool (*keep)(void *arg, const char *name), void *arg) {
  if (!strcmp(name, "index.json.tmp") || !strncmp(name, "samepage-upload-", 16) ||
      !strncmp(name, "samepage-serve-", 15)) /* an export's temporary (sessions_api.c) */
    return true;
  long pid = tmp_pid(name);
  if (pid > 0) return pid != (long)getpid() && kill((pid_t)pid, 0) && errno == ESRCH;
  const char *dot = strchr(name, '.');
  return dot && dot > name && digits_then(dot + 1, ".snap") && !keep(arg, name);
}

static void dir_sweep(void *ctx, bool (*keep)(void *arg, const char *name), void *arg) {
  DIR *dir = opendir(ctx);
  if (!dir) return;
  int removed = 0;
  for (struct dirent *e; (e = readdir(dir));)
    if (left_over(e->d_name, keep, arg) && !unlinkat(dirfd(dir), e->d_name, 0)) removed++;
  closedir(dir);
  if (removed)
    fprintf(stderr, "samepage serve: %s: removed %d file%s left by an earlier crash\n", (char *)ctx, removed,
            removed == 1 ? "" : "s");
}

const srv_store_ops srv_store_dir = {
    .version = 1,
    .local_path = dir_local_path,
    .publish = dir_publish,
    .put = dir_put,
    .fetch = NULL, /* the files are local */
    .exists = dir_exists,
    .remove = dir_remove,
    .sweep = dir_sweep,
};

/* ---- loading at start ---- */

/* Whether object name is a snapshot the index names (arg: the server). */
static bool named_by_index(void *arg, const char *name) {
  const srv *s = arg;
  for (size_t i = 0; i < s->n_sessions; i++) {
    char own[64];
    snap_name(s->sessions[i]->id, s->sessions[i]->generation, own, sizeof own);
    if (!strcmp(name, own)) return true;
  }
  return false;
}

static bool valid_id(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= sizeof ((srv_session *)0)->id) return false;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
      return false;
  return true;
}

/* One index entry as a stored session; NULL (and a note) when malformed. */
static srv_session *load_entry(srv *s, json_t *entry) {
  const char *id = NULL, *tenant = "default";
  json_int_t gen = 0, end = 0, used = 0, created = 0, last_used = 0;
  json_t *tokens = NULL;
  if (json_unpack(entry, "{s:s, s?s, s:I, s:I, s:I, s?I, s?I, s:o}", "id", &id, "tenant", &tenant, "generation",
                  &gen, "prompt_end", &end, "used", &used, "created", &created, "last_used", &last_used, "tokens",
                  &tokens) ||
      !valid_id(id) || strlen(tenant) >= sizeof ((srv_session *)0)->tenant || !json_is_array(tokens) || gen < 1 ||
      gen > UINT32_MAX || end < 0 ||
      (size_t)end > json_array_size(tokens) || json_array_size(tokens) > (size_t)s->cfg.ctx || used < 0)
    return NULL;
  srv_session *ss = calloc(1, sizeof *ss);
  if (!ss) return NULL;
  snprintf(ss->id, sizeof ss->id, "%s", id);
  snprintf(ss->tenant, sizeof ss->tenant, "%s", tenant);
  ss->created = (long)created, ss->last_used = (long)last_used;
  ss->generation = (uint32_t)gen, ss->prompt_end = (uint32_t)end, ss->used = (uint64_t)used, ss->stored = true;
  for (size_t i = 0; i < json_array_size(tokens); i++) {
    json_t *t = json_array_get(tokens, i);
    if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX ||
        srv_session_push(ss, (int32_t)json_integer_value(t))) {
      srv_session_free(ss);
      return NULL;
    }
  }
  void *ctx;
  char name[64];
  snap_name(ss->id, ss->generation, name, sizeof name);
  if (!store_of(s, &ctx)->exists(ctx, name)) { srv_session_free(ss); return NULL; }
  char path[4096];
  struct stat st;
  store_of(s, &ctx)->local_path(ctx, name, path, sizeof path);
  if (!stat(path, &st)) ss->bytes = (uint64_t)st.st_size; /* (a fetched store's local copy) */
  return ss;
}

static int load_index(srv *s, const char *path) {
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) {
    fprintf(stderr, "samepage serve: %s: %s (line %d); starting with no sessions\n", path, jerr.text, jerr.line);
    return 0;
  }
  const char *model = NULL;
  json_int_t ctx = 0;
  json_t *list = NULL;
  int rc = 0;
  if (json_unpack(root, "{s:s, s:I, s:o}", "model", &model, "ctx", &ctx, "sessions", &list) || !json_is_array(list)) {
    fprintf(stderr, "samepage serve: %s is not a sessions index; starting with no sessions\n", path);
  } else if (strcmp(model, s->cfg.model) || ctx != s->cfg.ctx) {
    /* Writing our index over it would lose them: refuse instead. */
    fprintf(stderr, "samepage serve: %s holds sessions of %s with --ctx %lld; use another --sessions directory\n",
            path, model, (long long)ctx);
    rc = -1;
  } else {
    for (size_t i = 0; i < json_array_size(list); i++) {
      srv_session *ss = load_entry(s, json_array_get(list, i));
      if (!ss) { fprintf(stderr, "samepage serve: %s: entry %zu is damaged; skipped\n", path, i); continue; }
      if (ss->used > s->clock) s->clock = ss->used;
      if (srv_session_add(s, ss)) srv_session_free(ss);
    }
    void *store_ctx;
    const srv_store_ops *ops = store_of(s, &store_ctx);
    if (ops->sweep) ops->sweep(store_ctx, named_by_index, s);
  }
  json_decref(root);
  return rc;
}

int srv_store_load(srv *s) {
  if (!s->cfg.sessions_dir) return 0;
  if (mkdir(s->cfg.sessions_dir, 0700) && errno != EEXIST) {
    fprintf(stderr, "samepage serve: --sessions %s: %s\n", s->cfg.sessions_dir, strerror(errno));
    return -1;
  }
  void *ctx;
  const srv_store_ops *ops = store_of(s, &ctx);
  if (!ops->exists(ctx, "index.json")) return 0;
  srv_error e = {0};
  if (ops->fetch && ops->fetch(ctx, "index.json", &e)) {
    fprintf(stderr, "samepage serve: %s\n", e.message);
    return -1;
  }
  char path[4096];
  ops->local_path(ctx, "index.json", path, sizeof path);
  return load_index(s, path);
}
