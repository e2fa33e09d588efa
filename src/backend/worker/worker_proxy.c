/*
 * worker_proxy.c: the host's side of process isolation (worker.h). A
 * backend whose every binding is a worker process: the calls of the
 * backend interface become messages (wire.h), and a worker that ends, or
 * reports its device lost, ends that binding alone, with an error naming
 * what happened, on this call and every later one.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cuda/cuda_rules.h"
#include "backend/vulkan/vk_rules.h"
#include "backend/worker/proxy.h"
#include "backend/worker/wire.h"
#include "backend/worker/worker.h"
#include "core/error.h"
#include "core/written_pages.h"

extern char **environ;

/* ---- starting and ending workers ---- */

static bool executable(const char *path) { return access(path, X_OK) == 0; }

/* `given` (the knob SP_WORKER_EXE), else next to the running executable,
 * else the build tree, else the configured install prefix's bindir
 * (cmake/install.cmake: for programs elsewhere that link the installed
 * library). */
static bool find_worker_exe(const char *given, char *path, size_t cap) {
  const char *env = given;
  if (env && env[0]) return snprintf(path, cap, "%s", env) < (int)cap && executable(path);
  if (sp_path_beside_exe(SP_WORKER_EXE_NAME, path, cap) && executable(path)) return true;
#ifdef SP_WORKER_BUILD_PATH
  if (snprintf(path, cap, "%s", SP_WORKER_BUILD_PATH) < (int)cap && executable(path)) return true;
#endif
#ifdef SP_WORKER_INSTALL_PATH
  if (snprintf(path, cap, "%s", SP_WORKER_INSTALL_PATH) < (int)cap && executable(path)) return true;
#endif
  return false;
}

static void describe_status(int status, char *out, size_t cap) {
  if (!status) snprintf(out, cap, "ended");
  else if (WIFSIGNALED(status))
    snprintf(out, cap, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else if (WIFEXITED(status))
    snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
  else
    snprintf(out, cap, "ended");
}

/* Waits up to grace_ms for pid to end by itself, then kills it; its
 * wait status (0 when it could not be reaped). */
static int reap(pid_t pid, int grace_ms) {
  int status = 0;
  for (int waited = 0; waited <= grace_ms; waited++) {
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    if (got < 0) return 0; /* not our child any more (SIGCHLD ignored by the embedding application) */
    usleep(1000);
  }
  kill(pid, SIGKILL);
  return waitpid(pid, &status, 0) == pid ? status : 0;
}

/* Ends c: closes the socket (a live worker then ends by itself), reaps the
 * worker, killing it after grace_ms, and records why (NULL: how it ended). */
static void bury(conn *c, const char *why, int grace_ms) {
  if (c->dead) return;
  c->dead = true;
  if (c->sock >= 0) close(c->sock), c->sock = -1;
  char how[160] = "ended";
  if (c->pid > 0) describe_status(reap(c->pid, grace_ms), how, sizeof how);
  if (why) snprintf(c->why, sizeof c->why, "%s", why);
  else snprintf(c->why, sizeof c->why, "the actor's worker process (pid %d) %s", (int)c->pid, how);
}

/* The socket failed under us: the worker ended, or stopped making sense. */
static void bury_lost_peer(conn *c) { bury(c, NULL, 1000); }

static sp_error_t *dead_error(const conn *c) {
  return sp_error_with_kind(SP_ERROR_DEVICE_LOST,
                            "process isolation: %s; this actor can compute no more (other actors are unaffected)",
                            c->why);
}

/* Starts a worker process (given: the executable the knob SP_WORKER_EXE
 * names, or NULL); its executable's path goes to exe (cap bytes). */
static sp_error_t *spawn(const char *given, char *exe, size_t cap, conn **out) {
  if (!find_worker_exe(given, exe, cap))
    return sp_error_new("process isolation: cannot find the worker executable %s (set SP_WORKER_EXE)", SP_WORKER_EXE_NAME);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    return sp_error_new("process isolation: socketpair: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3); /* dup2 clears close-on-exec */
  char *argv[] = {(char *)SP_WORKER_EXE_NAME, (char *)"3", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  if (rc) {
    close(sv[0]);
    return sp_error_new("process isolation: cannot start %s: %s", exe, strerror(rc));
  }
  conn *c = calloc(1, sizeof *c);
  if (!c) {
    close(sv[0]), kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    return sp_error_new("out of memory");
  }
  c->pid = pid, c->sock = sv[0];
  pthread_mutex_init(&c->mu, NULL);
  *out = c;
  return NULL;
}

static void conn_free(conn *c) {
  if (!c) return;
  bury(c, "released", 2000);
  pthread_mutex_destroy(&c->mu);
  sp_error_free(c->deferred);
  free(c->files);
  for (int i = 0; i < c->n_got; i++) close(c->got[i]);
  free(c);
}

/* ---- requests ---- */

/* Reads one reply; an error reply becomes *err (with the worker's status).
 * false: the worker is gone (c is buried). */
static bool read_reply(conn *c, sp_wire_msg *r, sp_error_t **err, void *out, size_t out_cap) {
  void *payload = NULL;
  int fds[SP_WIRE_MAX_FDS], nfds = 0;
  *err = NULL;
  bool got = sp_wire_recv(c->sock, c->spin_us, r, &payload, fds, &nfds);
  for (int i = 0; i < c->n_got; i++) close(c->got[i]); /* the last reply's, not taken */
  c->n_got = 0;
  for (int i = 0; i < nfds; i++) {
    if (got) c->got[c->n_got++] = fds[i];
    else close(fds[i]);
  }
  if (!got) {
    bury_lost_peer(c);
    return false;
  }
  if (r->op != SP_WIRE_OK) {
    int text_len = r->payload > 480 ? 480 : (int)r->payload;
    const char *text = payload ? payload : "";
    if (r->op == SP_WIRE_LOST) {
      char why[600];
      snprintf(why, sizeof why, "the actor's worker process (pid %d) lost its device and ended: %.*s", (int)c->pid,
               text_len, text);
      bury(c, why, 1000); /* it ends itself after this reply */
      *err = dead_error(c);
    } else {
      *err = sp_error_with_status((int)(int64_t)r->a, "%.*s", text_len, text);
    }
  } else if (out && payload) {
    memcpy(out, payload, r->payload < out_cap ? r->payload : out_cap);
  }
  free(payload);
  return true;
}

/* Reads the replies of earlier submits; the first error is kept for later. */
static void drain(conn *c) {
  while (c->pending && !c->dead) {
    sp_wire_msg r;
    sp_error_t *err = NULL;
    if (!read_reply(c, &r, &err, NULL, 0)) break;
    c->pending--;
    if (err && !c->deferred) c->deferred = err;
    else sp_error_free(err);
  }
  c->pending = 0;
}

/* One request and its reply (values in *reply, payload into out). */
sp_error_t *sp_proxy_call_locked(conn *c, const sp_wire_msg *req, const void *payload, const int *fds, int nfds,
                                 sp_wire_msg *reply, void *out, size_t out_cap) {
  drain(c);
  sp_error_t *first = c->deferred, *err = NULL; /* a failed submit answers the call that follows it */
  c->deferred = NULL;
  sp_wire_msg ignored;
  if (!reply) reply = &ignored;
  if (c->dead) err = dead_error(c);
  else if (!sp_wire_send(c->sock, req, payload, fds, nfds)) bury_lost_peer(c), err = dead_error(c);
  else if (!read_reply(c, reply, &err, out, out_cap)) err = dead_error(c);
  if (!first) return err;
  sp_error_free(err);
  return first;
}

static sp_error_t *call(conn *c, const sp_wire_msg *req, const void *payload, const int *fds, int nfds,
                        sp_wire_msg *reply, void *out, size_t out_cap) {
  pthread_mutex_lock(&c->mu);
  sp_error_t *err = sp_proxy_call_locked(c, req, payload, fds, nfds, reply, out, out_cap);
  pthread_mutex_unlock(&c->mu);
  return err;
}

/* The worker at exe answered a HELLO with protocol version theirs. */
static sp_error_t *version_mismatch(const char *exe, uint64_t theirs) {
  return sp_error_new("process isolation: the worker %s speaks protocol version %llu%s, this samepage speaks version "
                      "%u: they come from different builds (rebuild or reinstall both, or point SP_WORKER_EXE at "
                      "the matching samepage-worker)",
                      exe, (unsigned long long)theirs, theirs ? "" : " (a worker from before versioned handshakes)",
                      SP_WIRE_VERSION);
}

/* HELLO's payload: the backend name, a NUL, then the knobs in text form
 * (sp_knobs_format): the worker's backend gets the host's settings, never
 * the worker's environment. A heap string the caller frees; NULL when out
 * of memory. */
static char *hello_payload(const proxy *p, const char *name, size_t *len) {
  size_t n = strlen(name), k = sp_knobs_format(&p->opts.knobs, NULL, 0);
  char *buf = malloc(n + 1 + k + 1);
  if (!buf) return NULL;
  memcpy(buf, name, n + 1);
  sp_knobs_format(&p->opts.knobs, buf + n + 1, k + 1);
  *len = n + 1 + k;
  return buf;
}

/* The handshake (wire.h): the protocol versions first, then the inner
 * backend named, created in the worker with the host's knobs; its
 * capabilities and resolved name come back. exe names the worker in a
 * version error. */
static sp_error_t *hello(proxy *p, conn *c, const char *name, const char *exe) {
  size_t len = 0;
  char *payload = hello_payload(p, name, &len);
  if (!payload) return sp_error_new("out of memory");
  sp_wire_msg req = {.op = SP_WIRE_HELLO, .a = p->opts.residency, .b = p->opts.graphs, .c = p->threads,
                     .d = SP_WIRE_VERSION, .payload = len};
  char out[sizeof(sp_backend_caps) + 32] = {0};
  sp_wire_msg reply = {0};
  sp_error_t *err = call(c, &req, payload, NULL, 0, &reply, out, sizeof out - 1);
  free(payload);
  if (!c->dead && reply.d != SP_WIRE_VERSION) { /* whatever it said, it does not speak our protocol */
    sp_error_free(err);
    return version_mismatch(exe, reply.d);
  }
  if (err) return err;
  memcpy(&p->caps, out, sizeof p->caps);
  /* A device backend's worker answers a list when the GPU is done, about a
   * millisecond: wait for it awake, as CUDA's own synchronization does. On
   * the CPU the worker's threads need every core. */
  c->spin_us = reply.a ? 3000 : 0;
  memcpy(p->inner, out + sizeof p->caps, sizeof p->inner - 1); /* out is zero-filled past the name */
  return NULL;
}

/* ---- the backend interface ---- */

static sp_backend_caps px_caps(void *ctx) { return ((proxy *)ctx)->caps; }

static bool px_supports(void *ctx, const sp_cmd *cmd) { return ((proxy *)ctx)->supports(cmd); }

static sp_error_t *take_worker(proxy *p, conn **out) {
  pthread_mutex_lock(&p->mu);
  conn *c = p->spare;
  p->spare = NULL;
  bool room = p->n_live < MAX_WORKERS;
  pthread_mutex_unlock(&p->mu);
  if (!room) {
    conn_free(c);
    return sp_error_new("process isolation: %d workers are running, the most allowed", MAX_WORKERS);
  }
  if (!c) {
    char exe[PATH_MAX];
    sp_error_t *err = spawn(p->opts.knobs.worker_exe, exe, sizeof exe, &c);
    if (!err) err = hello(p, c, p->inner, exe);
    if (err) {
      conn_free(c);
      return err;
    }
  }
  *out = c;
  return NULL;
}

static sp_error_t *px_adopt(void *ctx, const sp_memory_view *view, void **binding) {
  proxy *p = ctx;
  if (!view->shared)
    return sp_error_new("process isolation: memory that is not shared (memfd) cannot reach a worker");
  conn *c = NULL;
  sp_error_t *err = take_worker(p, &c);
  if (err) return err;
  sp_wire_msg req = {.op = SP_WIRE_ADOPT, .n = (uint32_t)sp_page_size(), .a = view->committed, .b = view->reserved,
                     .c = (uintptr_t)view->base, .d = view->host_budget};
  sp_wire_msg reply;
  if ((err = call(c, &req, NULL, &view->fd, 1, &reply, NULL, 0))) {
    conn_free(c);
    return err;
  }
  c->host_base = view->base, c->base = reply.a, c->device_base = reply.b;
  pthread_mutex_lock(&p->mu);
  p->live[p->n_live++] = c;
  pthread_mutex_unlock(&p->mu);
  *binding = c;
  return NULL;
}

static sp_error_t *px_grow(void *ctx, void *binding, const sp_memory_view *view) {
  sp_wire_msg req = {.op = SP_WIRE_GROW, .a = view->committed, .d = view->host_budget};
  return call(binding, &req, NULL, NULL, 0, NULL, NULL, 0);
}

/* Sends the list, or "the same list again" when the runtime says it is
 * (backend.h: the worker kept the last list it was sent), and returns: its
 * reply is read with the wait's, so a list costs one round trip. */
static sp_error_t *px_submit(void *ctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same) {
  conn *c = binding;
  pthread_mutex_lock(&c->mu);
  drain(c);
  sp_error_t *err = NULL;
  bool repeat = same;
  sp_wire_msg req = {.op = SP_WIRE_SUBMIT, .n = count, .c = repeat,
                     .payload = repeat ? 0 : (uint64_t)count * sizeof *cmds};
  if (c->dead) err = dead_error(c);
  else if (!sp_wire_send(c->sock, &req, cmds, NULL, 0)) bury_lost_peer(c), err = dead_error(c);
  else c->pending++;
  pthread_mutex_unlock(&c->mu);
  return err;
}

/* The list is done; the wait's reply carries the layouts it derived from
 * shared copies (repacked weights), which later workers then map. */
static sp_error_t *px_wait(void *ctx, void *binding) {
  proxy *p = ctx;
  conn *c = binding;
  sp_wire_msg req = {.op = SP_WIRE_WAIT}, reply = {0};
  sp_derived_desc made[SP_WIRE_MAX_FDS];
  pthread_mutex_lock(&c->mu);
  if (!c->pending && !c->dead) { /* nothing was submitted since the last wait: nothing runs there */
    sp_error_t *first = c->deferred;
    c->deferred = NULL;
    pthread_mutex_unlock(&c->mu);
    return first;
  }
  sp_error_t *err = sp_proxy_call_locked(c, &req, NULL, NULL, 0, &reply, made, sizeof made);
  uint32_t n = !err && reply.n == (uint32_t)c->n_got && reply.n <= SP_WIRE_MAX_FDS ? reply.n : 0;
  int fds[SP_WIRE_MAX_FDS];
  memcpy(fds, c->got, (size_t)n * sizeof *fds);
  if (n) c->n_got = 0; /* taken */
  pthread_mutex_unlock(&c->mu);
  if (n) sp_shared_keep_derived(p, made, fds, n);
  return err;
}

static void *px_device_base(void *ctx, void *binding) {
  conn *c = binding;
  return (void *)(uintptr_t)c->device_base;
}

/* Sends the host's bytes of written file pages in [addr, addr + len) (worker.h). */
static sp_error_t *push_written(conn *c, uint64_t addr, uint64_t len) {
  int pagemap = sp_pagemap_open();
  sp_error_t *err = NULL;
  size_t page = sp_page_size();
  for (uint32_t i = 0; i < c->n_files && !err; i++) {
    const sp_file_range *f = &c->files[i];
    uint64_t lo = addr > f->addr ? addr : f->addr, hi = addr + len < f->addr + f->len ? addr + len : f->addr + f->len;
    lo = lo / page * page;
    while (lo < hi && !err) {
      uint64_t at, run = sp_written_run(pagemap, c->host_base, lo, hi - lo, &at);
      if (!run) break;
      for (uint64_t done = 0; done < run && !err; done += SP_WIRE_MAX_PAYLOAD) {
        uint64_t piece = run - done < SP_WIRE_MAX_PAYLOAD ? run - done : SP_WIRE_MAX_PAYLOAD;
        sp_wire_msg req = {.op = SP_WIRE_PUSH, .a = at + done, .payload = piece};
        err = sp_proxy_call_locked(c, &req, c->host_base + at + done, NULL, 0, NULL, NULL, 0);
      }
      lo = at + run;
    }
  }
  if (pagemap >= 0) close(pagemap);
  return err;
}

/* freeze and flush: written file pages first (worker.h), then the call,
 * with share_fd (>= 0) attached; a descriptor in the reply goes to *got. */
static sp_error_t *range_call(conn *c, uint32_t op, uint64_t addr, uint64_t len, uint64_t identity, int share_fd,
                              int *got) {
  pthread_mutex_lock(&c->mu);
  sp_error_t *err = identity ? NULL : push_written(c, addr, len); /* an identity proves no page was written */
  sp_wire_msg req = {.op = op, .a = addr, .b = len, .c = identity};
  if (!err) err = sp_proxy_call_locked(c, &req, NULL, &share_fd, share_fd >= 0, NULL, NULL, 0);
  if (got && c->n_got) *got = c->got[0], c->got[0] = c->got[--c->n_got];
  pthread_mutex_unlock(&c->mu);
  return err;
}

/* A frozen range with a proved identity is shared with every worker that
 * freezes the same bytes: the first one's copy, exported (vmm.h). */
static sp_error_t *px_freeze(void *ctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  proxy *p = ctx;
  conn *c = binding;
  if (!identity) return range_call(c, SP_WIRE_FREEZE, addr, len, 0, -1, NULL);
  pthread_mutex_lock(&p->mu);
  shared_copy *s = sp_shared_find(p, identity, len);
  int share_fd = s ? dup(s->fd) : -1; /* ours stays valid if another thread drops the entry meanwhile */
  pthread_mutex_unlock(&p->mu);
  int exported = -1;
  sp_error_t *err = range_call(c, SP_WIRE_FREEZE, addr, len, identity, share_fd, &exported);
  if (share_fd >= 0) close(share_fd);
  if (!err) sp_shared_note(p, c, identity, len, exported);
  else if (exported >= 0) close(exported);
  if (!err && share_fd >= 0) sp_shared_send_derived(p, c, identity);
  return err;
}

static sp_error_t *px_flush(void *ctx, void *binding, uint64_t addr, uint64_t len) {
  return range_call(binding, SP_WIRE_FLUSH, addr, len, 0, -1, NULL);
}

static sp_error_t *px_device_local(void *ctx, void *binding, uint64_t addr, uint64_t len) {
  sp_wire_msg req = {.op = SP_WIRE_DEVICE_LOCAL, .a = addr, .b = len};
  return call(binding, &req, NULL, NULL, 0, NULL, NULL, 0);
}

static sp_error_t *px_sync(void *ctx, void *binding, uint64_t addr, uint64_t len) {
  sp_wire_msg req = {.op = SP_WIRE_SYNC, .a = addr, .b = len};
  return call(binding, &req, NULL, NULL, 0, NULL, NULL, 0);
}

static sp_error_t *px_local_zero(void *ctx, void *binding, uint64_t addr, uint64_t len, bool *done) {
  sp_wire_msg req = {.op = SP_WIRE_LOCAL_ZERO, .a = addr, .b = len}, reply = {0};
  sp_error_t *err = call(binding, &req, NULL, NULL, 0, &reply, NULL, 0);
  *done = !err && reply.a;
  return err;
}

/* Each distinct file once in the message's fds; ranges name it by index. */
static int index_fd(int *fds, int *nfds, int fd) {
  if (fd < 0) return -1;
  for (int i = 0; i < *nfds; i++)
    if (fds[i] == fd) return i;
  if (*nfds == SP_WIRE_MAX_FDS) return -2;
  fds[*nfds] = fd;
  return (*nfds)++;
}

static sp_error_t *px_file_ranges(void *ctx, void *binding, const sp_file_range *files, uint32_t n, bool done) {
  conn *c = binding;
  sp_wire_file_range *wire = calloc((size_t)n + 1, sizeof *wire);
  sp_file_range *kept = done ? calloc((size_t)n + 1, sizeof *kept) : NULL;
  if (!wire || (done && !kept)) {
    free(wire), free(kept);
    return sp_error_new("out of memory for %u file ranges", n);
  }
  int fds[SP_WIRE_MAX_FDS], nfds = 0;
  sp_error_t *err = NULL;
  for (uint32_t i = 0; i < n && !err; i++) {
    int k = done ? index_fd(fds, &nfds, files[i].fd) : -1;
    if (k == -2) err = sp_error_new("process isolation: more than %d mapped files", SP_WIRE_MAX_FDS);
    wire[i] = (sp_wire_file_range){files[i].addr, files[i].len, files[i].file_offset, k, 0};
    if (kept) kept[i] = files[i];
  }
  sp_wire_msg req = {.op = SP_WIRE_FILE_RANGES, .n = n, .a = done, .payload = (uint64_t)n * sizeof *wire};
  pthread_mutex_lock(&c->mu);
  if (!err) err = sp_proxy_call_locked(c, &req, wire, fds, nfds, NULL, NULL, 0);
  if (!err && done) free(c->files), c->files = kept, c->n_files = n, kept = NULL;
  pthread_mutex_unlock(&c->mu);
  free(wire), free(kept);
  return err;
}

static void add_stats(sp_residency_stats *sum, const sp_residency_stats *s) {
  sum->bytes += s->bytes, sum->copies += s->copies, sum->ms += s->ms, sum->shared_hits += s->shared_hits;
  sum->shared_bytes += s->shared_bytes, sum->local_bytes += s->local_bytes, sum->transfers += s->transfers;
  sum->transfer_bytes += s->transfer_bytes, sum->transfer_ms += s->transfer_ms, sum->repacked_bytes += s->repacked_bytes;
}

static bool residency_of(conn *c, sp_residency_stats *out) {
  sp_wire_msg req = {.op = SP_WIRE_RESIDENCY};
  *out = (sp_residency_stats){0};
  sp_error_t *err = call(c, &req, NULL, NULL, 0, NULL, out, sizeof *out);
  sp_error_free(err);
  return !err;
}

/* Totals over every worker, live and released. Frozen copies are each
 * worker's own (nothing is shared across processes). */
static void px_residency(void *ctx, sp_residency_stats *out) {
  proxy *p = ctx;
  pthread_mutex_lock(&p->mu);
  *out = p->retired;
  out->bytes = out->local_bytes = out->shared_bytes = out->repacked_bytes = 0; /* held now: only live ones count */
  for (uint32_t i = 0; i < p->n_live; i++) {
    sp_residency_stats s;
    if (residency_of(p->live[i], &s)) add_stats(out, &s);
  }
  pthread_mutex_unlock(&p->mu);
}

static bool px_device_memory(void *ctx, uint64_t *used, uint64_t *total) {
  proxy *p = ctx;
  pthread_mutex_lock(&p->mu);
  bool known = false;
  sp_wire_msg req = {.op = SP_WIRE_DEVICE_MEMORY}, reply;
  conn *ask[2] = {p->spare, p->n_live ? p->live[p->n_live - 1] : NULL};
  for (int i = 0; i < 2 && !known; i++) {
    if (!ask[i]) continue;
    sp_error_t *err = call(ask[i], &req, NULL, NULL, 0, &reply, NULL, 0);
    known = !err && reply.c;
    sp_error_free(err);
    if (known) *used = reply.a, *total = reply.b;
  }
  pthread_mutex_unlock(&p->mu);
  return known;
}

static void px_release(void *ctx, void *binding) {
  proxy *p = ctx;
  conn *c = binding;
  if (!c) return;
  sp_residency_stats s;
  pthread_mutex_lock(&p->mu);
  if (!c->dead && residency_of(c, &s)) add_stats(&p->retired, &s);
  for (uint32_t i = 0; i < p->n_live; i++)
    if (p->live[i] == c) p->live[i] = p->live[--p->n_live];
  pthread_mutex_unlock(&p->mu);
  sp_shared_drop(p, c);
  /* Closing the socket ends the worker, which releases its binding. */
  pthread_mutex_lock(&c->mu);
  bury(c, "released", 2000);
  pthread_mutex_unlock(&c->mu);
  conn_free(c);
}

static void px_destroy(void *ctx) {
  proxy *p = ctx;
  conn_free(p->spare);
  for (uint32_t i = 0; i < p->n_live; i++) conn_free(p->live[i]);
  sp_shared_free_all(p);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

/* The core forwards every call to the binding's worker. */
static const struct sp_backend_i proxy_iface = {
    .version = SP_BACKEND_CORE_VERSION,
    .name = NULL, /* set per instance: the inner backend's name */
    .caps = px_caps,
    .adopt = px_adopt,
    .grow = px_grow,
    .supports = px_supports,
    .submit = px_submit,
    .wait = px_wait,
    .device_base = px_device_base,
    .release = px_release,
    .destroy = px_destroy,
};

/* The memory layer, whatever the inner backend: freeze and flush carry the
 * written pages of file ranges to the worker (worker.h), and a frozen copy
 * with an identity is shared across workers here, through the inner
 * backend's sharing layer in each worker. The proxy has no sharing layer
 * itself: the host is the one process that does not map device memory. */
static const struct sp_backend_memory_i proxy_memory = {
    .version = SP_BACKEND_MEMORY_VERSION,
    .freeze = px_freeze,
    .flush = px_flush,
    .device_local = px_device_local,
    .sync = px_sync,
    .local_zero = px_local_zero,
    .file_ranges = px_file_ranges,
    .residency = px_residency,
    .device_memory = px_device_memory,
};

/* The host answers supports() without the inner backend's library: from
 * that backend's plain-C rules, which its own supports() also uses. */
static bool (*inner_rules(const char *inner))(const sp_cmd *) {
  if (!strcmp(inner, "cuda")) return sp_cuda_supports;
  if (!strcmp(inner, "vulkan")) return sp_vk_rules_supports;
  return sp_cpu_supports;
}

sp_error_t *sp_backend_worker_new(const char *inner, const sp_backend_options *opts, unsigned threads,
                                  sp_backend **out) {
  proxy *p = calloc(1, sizeof *p);
  sp_backend *be = calloc(1, sizeof *be);
  if (!p || !be) {
    free(p), free(be);
    return sp_error_new("out of memory");
  }
  pthread_mutex_init(&p->mu, NULL);
  p->opts = *opts, p->threads = threads;
  p->derived = calloc(MAX_DERIVED, sizeof *p->derived);
  if (!p->derived) {
    px_destroy(p), free(be);
    return sp_error_new("out of memory");
  }
  char exe[PATH_MAX];
  sp_error_t *err = spawn(p->opts.knobs.worker_exe, exe, sizeof exe, &p->spare);
  if (!err) err = hello(p, p->spare, inner ? inner : "auto", exe);
  if (err) {
    px_destroy(p), free(be);
    return err;
  }
  p->supports = inner_rules(p->inner);
  be->iface = proxy_iface;
  be->iface.name = p->inner;
  be->memory = &proxy_memory;
  be->sharing = NULL;
  be->ctx = p;
  if ((err = sp_backend_check(be))) {
    sp_backend_free(be);
    return err;
  }
  *out = be;
  return NULL;
}

int sp_backend_worker_pid(const sp_backend *be, void *binding) {
  if (!be || be->iface.adopt != px_adopt || !binding) return -1;
  return ((conn *)binding)->pid;
}
