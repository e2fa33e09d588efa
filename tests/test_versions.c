/*
 * test_versions.c: the versions that keep parts of different builds from
 * working together by accident.
 *
 * 1. Backend registration (sp_backend_check, backend.h): a core, memory or
 *    sharing table of another version is refused, naming the table and
 *    both versions; so is a core without a required slot, and capabilities
 *    that promise device copies from a backend with no memory layer.
 * 2. The worker handshake (backend/worker/wire.h):
 *    a. the proxy refuses a worker of another protocol version, and one
 *       from before versioned handshakes (version 0, which answers as if
 *       all were well), naming the worker and both versions, and leaves no
 *       process behind. The worker here is this test itself, started by the
 *       proxy as its worker executable: the real serving loop with a forced
 *       version (sp_worker_serve_version), or a stand-in old worker;
 *    b. the real samepage-worker refuses a host of another version (an
 *       error reply naming both, with its own version), then ends;
 *    c. the real samepage-worker and this build's proxy agree.
 *
 * Usage: test_versions WORKER_EXE   (the build's samepage-worker)
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/worker/wire.h"
#include "backend/worker/worker.h"
#include "check.h"
#include "core/error.h"

extern char **environ;

/* ---- part 1: registration ---- */

static sp_backend_caps (*cpu_caps)(void *ctx);

static sp_backend_caps resident_caps(void *ctx) {
  sp_backend_caps caps = cpu_caps(ctx);
  caps.residency = true;
  return caps;
}

/* Whether sp_backend_check refuses be with a message holding both words. */
static bool refused(const sp_backend *be, const char *word1, const char *word2) {
  sp_error_t *err = sp_backend_check(be);
  const char *msg = err ? sp_error_message(err) : "";
  bool ok = err && strstr(msg, word1) && strstr(msg, word2);
  if (!ok) printf("  check said: %s\n", err ? msg : "(accepted)");
  sp_error_free(err);
  return ok;
}

static void test_registration(void) {
  sp_backend *be = NULL;
  sp_error_t *err = sp_backend_load("cpu", NULL, 1, &be);
  CHECK(!err && be && !be->memory && !be->sharing, "the cpu backend loads, core layer only: %s",
        err ? sp_error_message(err) : "");
  if (err) exit(1);
  CHECK(!sp_backend_check(be), "the cpu backend registers");

  be->iface.version = SP_BACKEND_CORE_VERSION + 7;
  char want[32];
  snprintf(want, sizeof want, "version %u", SP_BACKEND_CORE_VERSION + 7);
  CHECK(refused(be, "core", want), "a core of another version is refused");
  be->iface.version = SP_BACKEND_CORE_VERSION;

  struct sp_backend_memory_i memory = {.version = SP_BACKEND_MEMORY_VERSION + 1};
  be->memory = &memory;
  snprintf(want, sizeof want, "version %u", SP_BACKEND_MEMORY_VERSION + 1);
  CHECK(refused(be, "memory", want), "the error names the memory layer and its version");
  memory.version = SP_BACKEND_MEMORY_VERSION;
  CHECK(!sp_backend_check(be), "a memory layer of this version with every slot empty registers");
  be->memory = NULL;

  struct sp_backend_sharing_i sharing = {.version = SP_BACKEND_SHARING_VERSION + 2};
  be->sharing = &sharing;
  snprintf(want, sizeof want, "version %u", SP_BACKEND_SHARING_VERSION + 2);
  CHECK(refused(be, "sharing", want), "a sharing layer of another version is refused");
  be->sharing = NULL;

  sp_error_t *(*submit)(void *, void *, const sp_cmd *, uint32_t, bool) = be->iface.submit;
  be->iface.submit = NULL;
  CHECK(refused(be, "cpu", "required slot"), "a core without submit is refused");
  be->iface.submit = submit;

  cpu_caps = be->iface.caps;
  be->iface.caps = resident_caps;
  CHECK(refused(be, "cpu", "no memory interface"), "residency without a memory layer is refused");
  be->iface.caps = cpu_caps;

  /* the wrappers' defaults without the optional layers */
  uint64_t used = 1, total = 1;
  int fd = 5;
  CHECK(!sp_backend_device_memory(be, &used, &total) && !used && !total, "no device memory without the layer");
  CHECK(sp_backend_residency(be).bytes == 0, "no residency without the layer");
  CHECK(sp_backend_derived_exports(be, NULL, NULL, NULL, 0) == 0, "no derived layouts without the sharing layer");
  err = sp_backend_freeze_shared(be, NULL, 0, 0, 0, -1, &fd);
  CHECK(!err && fd == -1, "freeze_shared falls back to freeze, which does nothing");
  sp_error_free(err);
  sp_backend_free(be);
}

/* ---- part 2: the worker handshake ---- */

/* A worker from before versioned handshakes: it ignores the host's
 * version and answers HELLO as if all were well, its d left 0. */
static int old_worker(int sock) {
  sp_wire_msg m, reply = {.op = SP_WIRE_OK};
  void *payload = NULL;
  if (!sp_wire_recv(sock, 0, &m, &payload, NULL, NULL)) return 1;
  free(payload);
  char out[sizeof(sp_backend_caps) + 3] = {0};
  memcpy(out + sizeof(sp_backend_caps), "cpu", 3);
  reply.payload = sizeof out;
  sp_wire_send(sock, &reply, out, NULL, 0);
  while (sp_wire_recv(sock, 0, &m, &payload, NULL, NULL)) free(payload), payload = NULL; /* until the host goes */
  return 0;
}

/* This test started as a worker by the proxy (SP_WORKER_EXE pointing at
 * it): it serves speaking $SP_TEST_WORKER_VERSION (0: an old worker). */
static int fake_worker(void) {
  const char *v = getenv("SP_TEST_WORKER_VERSION");
  uint32_t version = v ? (uint32_t)strtoul(v, NULL, 10) : SP_WIRE_VERSION;
  return version ? sp_worker_serve_version(3, version) : old_worker(3);
}

/* Whether this process has no child left, running or unreaped. */
static bool no_children(void) { return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD; }

static void proxy_refuses(const char *self, uint32_t version) {
  char v[16];
  snprintf(v, sizeof v, "%u", version);
  setenv("SP_TEST_WORKER_VERSION", v, 1); /* the test's own variable, read by fake_worker */
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION};
  sp_knobs_defaults(&opts.knobs);
  opts.knobs.worker_exe = self;
  sp_backend *be = NULL;
  sp_error_t *err = sp_backend_worker_new("cpu", &opts, 1, &be);
  const char *msg = err ? sp_error_message(err) : "(accepted)";
  char theirs[64], ours[64];
  snprintf(theirs, sizeof theirs, "speaks protocol version %u", version);
  snprintf(ours, sizeof ours, "this samepage speaks version %u", SP_WIRE_VERSION);
  CHECK(err && !be, "a worker of protocol version %u is refused", version);
  CHECK(strstr(msg, theirs) && strstr(msg, ours) && strstr(msg, self), "the error names the worker and both versions: %s",
        msg);
  if (version == 0) CHECK(strstr(msg, "before versioned handshakes") != NULL, "version 0 is explained: %s", msg);
  printf("  proxy, worker of version %u: %s\n", version, msg);
  sp_error_free(err);
  sp_backend_free(be);
  CHECK(no_children(), "no worker is left behind");
  unsetenv("SP_TEST_WORKER_VERSION");
}

/* Starts exe as a worker on one end of a socketpair; the other end in *sock. */
static pid_t start_worker(const char *exe, int *sock) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
  char *argv[] = {(char *)SP_WORKER_EXE_NAME, (char *)"3", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  if (rc) return close(sv[0]), -1;
  *sock = sv[0];
  return pid;
}

static void worker_refuses(const char *worker) {
  int sock = -1;
  pid_t pid = start_worker(worker, &sock);
  CHECK(pid > 0, "the real worker starts: %s", worker);
  if (pid <= 0) return;
  uint64_t host = SP_WIRE_VERSION + 1;
  sp_wire_msg hello = {.op = SP_WIRE_HELLO, .c = 1, .d = host, .payload = 3}, reply = {0};
  void *payload = NULL;
  int fds[SP_WIRE_MAX_FDS], nfds = 0;
  CHECK(sp_wire_send(sock, &hello, "cpu", NULL, 0), "hello sent");
  bool got = sp_wire_recv(sock, 0, &reply, &payload, fds, &nfds);
  char text[512] = "";
  if (got && payload) snprintf(text, sizeof text, "%.*s", (int)(reply.payload < 500 ? reply.payload : 500), (char *)payload);
  char ours[64], theirs[64];
  snprintf(ours, sizeof ours, "samepage-worker speaks protocol version %u", SP_WIRE_VERSION);
  snprintf(theirs, sizeof theirs, "the host speaks version %llu", (unsigned long long)host);
  CHECK(got && reply.op == SP_WIRE_ERROR && reply.d == SP_WIRE_VERSION, "the worker refuses, with its version (op %u, d %llu)",
        reply.op, (unsigned long long)reply.d);
  CHECK(strstr(text, ours) && strstr(text, theirs), "its error names both versions: %s", text);
  printf("  worker, host of version %llu: %s\n", (unsigned long long)host, text);
  free(payload);
  sp_wire_msg after;
  void *more = NULL;
  CHECK(!sp_wire_recv(sock, 0, &after, &more, NULL, NULL) && errno == 0, "then it ends (the socket closes)");
  free(more);
  int status = -1;
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "and exits cleanly (status %d)", status);
  close(sock);
}

static void versions_agree(const char *worker) {
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION};
  sp_knobs_defaults(&opts.knobs);
  opts.knobs.worker_exe = worker;
  sp_backend *be = NULL;
  sp_error_t *err = sp_backend_worker_new("cpu", &opts, 1, &be);
  CHECK(!err && be && !strcmp(sp_backend_name(be), "cpu"), "the build's worker and proxy agree: %s",
        err ? sp_error_message(err) : "");
  CHECK(!err && be->memory && !be->sharing, "the proxy has a memory layer and no sharing layer");
  sp_error_free(err);
  sp_backend_free(be);
  CHECK(no_children(), "no worker is left behind");
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "3") && !strcmp(argv[0], SP_WORKER_EXE_NAME)) return fake_worker();
  if (argc != 2) return printf("usage: test_versions WORKER_EXE\n"), 2;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return printf("cannot read /proc/self/exe\n"), 1;
  self[n] = '\0';
  signal(SIGPIPE, SIG_IGN);

  test_registration();
  proxy_refuses(self, SP_WIRE_VERSION + 1);
  proxy_refuses(self, 0);
  worker_refuses(argv[1]);
  versions_agree(argv[1]);
  return CHECK_DONE();
}
