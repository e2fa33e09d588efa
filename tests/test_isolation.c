/*
 * test_isolation.c: process isolation (backend/worker/worker.h) on the CPU
 * backend, so that it runs everywhere, CI included.
 *
 * 1. Two LLM actors, each with a worker process; one worker is killed
 *    mid-generation (SIGKILL: as a crash or a GPU fault ends it, and the
 *    same under ASan, which would turn a SIGSEGV into an exit status). That actor's next call fails, naming the worker and the signal,
 *    and so does every later one. The other actor finishes, token for token
 *    equal to an actor computing in-process. A new actor made afterwards
 *    works. No worker outlives its actor.
 * 2. Coherence of mapped files: a guest's stores into pages of a mapped file
 *    reach the worker's kernels at the freeze, and at each flush.
 * 3. Workers that cannot serve: a missing executable, one that exits at
 *    once; each a clear error from sp_runtime_new, no process left behind.
 *
 * Usage: test_isolation GUEST_DIR         parts 2 and 3
 *        test_isolation GUEST_DIR MODEL   part 1 (exit 77 = no model: skipped)
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/worker/worker.h"
#include "check.h"
#include "core/knobs.h"
#include "runtime/runtime_impl.h"
#include "samepage.h"
#include "test_util.h"

#define STEPS 12
#define KILL_AT 4 /* turns of the victim before its worker is killed */

static sp_runtime_t *runtime(const char *isolation) {
  sp_runtime_options o = {.backend = "cpu", .threads = 2, .isolation = isolation};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&o, &rt);
  CHECK(!err, "runtime (isolation %s): %s", isolation, sp_error_message(err));
  if (err) exit(1);
  return rt;
}

static sp_actor_t *new_actor(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *grant, const char *path,
                             int argc, const char **argv) {
  sp_blob_grant g = {grant, path};
  sp_actor_options opts = {.argv = argv, .argc = argc, .blobs = &g, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(!err, "actor: %s", sp_error_message(err));
  if (err) exit(1);
  return a;
}

/* ---- part 1: a worker dies, its actor alone ends ---- */

typedef struct turn {
  sp_actor_t *a;
  int step;
  int64_t tokens[STEPS + 2];
  char why[600]; /* the error that ended it, if one did */
} turn;

static sp_error_t *call2(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out) {
  int64_t args[2] = {x, y};
  return sp_actor_call(a, fn, args, (size_t)nargs, out);
}

/* init, an 8-token prompt, then one token per turn (greedy). */
static void play(turn *t) {
  if (t->why[0]) return;
  int64_t out = 0;
  sp_error_t *err = NULL;
  if (t->step == 0) err = call2(t->a, "llm_init", 0, 0, 0, &out);
  else if (t->step == 1) {
    int64_t addr = 0;
    err = call2(t->a, "llm_input", 8 * 4, 0, 1, &addr);
    uint8_t *base;
    size_t size;
    sp_actor_memory(t->a, &base, &size);
    for (int i = 0; !err && i < 8; i++) ((int32_t *)(base + (uint32_t)addr))[i] = 100 + 37 * i;
    if (!err) err = call2(t->a, "llm_prompt", 8 * 4, 2, 2, &out);
  } else err = call2(t->a, "llm_step", 0, 0, 0, &out);
  t->tokens[t->step++] = out;
  if (err || out < 0) snprintf(t->why, sizeof t->why, "%s", err ? sp_error_message(err) : llm_guest_error(t->a));
  sp_error_free(err);
}

static void worker_crash(const char *model) {
  size_t len = 0;
  uint8_t *wasm = load_guest("llm", &len);
  const char *argv[] = {"llm", "--ctx", "128", "--batch", "16"};
  sp_runtime_t *iso = runtime("process"), *plain = runtime("none");
  CHECK(!strcmp(sp_runtime_isolation(iso), "process") && !strcmp(sp_runtime_isolation(plain), "none"),
        "isolation is reported");
  turn ref = {.a = new_actor(plain, wasm, len, "model", model, 5, argv)};
  turn victim = {.a = new_actor(iso, wasm, len, "model", model, 5, argv)};
  turn other = {.a = new_actor(iso, wasm, len, "model", model, 5, argv)};
  int victim_pid = sp_backend_worker_pid(iso->backend, victim.a->binding);
  int other_pid = sp_backend_worker_pid(iso->backend, other.a->binding);
  CHECK(victim_pid > 0 && other_pid > 0 && victim_pid != other_pid, "one worker per actor (%d, %d)", victim_pid,
        other_pid);
  for (int s = 0; s < STEPS + 2; s++) {
    if (s == KILL_AT) CHECK(kill(victim_pid, SIGKILL) == 0, "kill the victim's worker");
    play(&ref), play(&victim), play(&other);
  }
  printf("victim: %s after %d turns\nother: %s after %d turns\n", victim.why[0] ? victim.why : "finished", victim.step,
         other.why[0] ? other.why : "finished", other.step);
  CHECK(victim.step == KILL_AT + 1 && strstr(victim.why, "killed by signal 9") &&
            strstr(victim.why, "other actors are unaffected"),
        "the victim's next call fails, naming its worker and the signal");
  CHECK(!ref.why[0] && !other.why[0] && other.step == STEPS + 2, "the other actor finished every turn");
  CHECK(!memcmp(ref.tokens, other.tokens, sizeof ref.tokens), "its tokens equal an in-process actor's");
  for (int k = 0; k < KILL_AT; k++) CHECK(victim.tokens[k] == ref.tokens[k], "the victim's turn %d before the kill", k);
  /* later calls fail at once, with the same message */
  victim.why[0] = '\0';
  play(&victim);
  CHECK(strstr(victim.why, "killed by signal 9") != NULL, "a later call fails the same way: %s", victim.why);
  /* a new actor gets a new worker */
  turn late = {.a = new_actor(iso, wasm, len, "model", model, 5, argv)};
  for (int s = 0; s < 4; s++) play(&late);
  CHECK(!late.why[0] && !memcmp(late.tokens, ref.tokens, 4 * sizeof *ref.tokens), "a new actor works: %s", late.why);
  uint8_t *base;
  size_t size;
  sp_actor_memory(other.a, &base, &size);
  printf("worker's view of the guest's memory: %s address as the host's\n",
         sp_actor_backend_base(other.a) == base ? "the same" : "another");
  sp_actor_free(victim.a), sp_actor_free(other.a), sp_actor_free(late.a), sp_actor_free(ref.a);
  sp_runtime_free(iso), sp_runtime_free(plain);
  CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "no worker process is left");
  free(wasm);
}

/* ---- part 2: stores into mapped file pages reach the worker ---- */

static int64_t call0(sp_actor_t *a, const char *fn, int64_t arg0, int64_t arg1, int nargs) {
  int64_t r = 0, args[2] = {arg0, arg1};
  sp_error_t *err = sp_actor_call(a, fn, args, (size_t)nargs, &r);
  if (err) printf("%s: %s\n", fn, sp_error_message(err));
  r = err ? INT64_MIN : r;
  sp_error_free(err);
  return r;
}

static void mapped_writes(void) {
  char path[] = "/tmp/sp_isolation_XXXXXX";
  int fd = mkstemp(path);
  enum { BYTES = 1 << 20 };
  uint8_t *buf = malloc(BYTES);
  for (uint32_t i = 0; i < BYTES; i++) buf[i] = (uint8_t)(i % 251);
  CHECK(fd >= 0 && write(fd, buf, BYTES) == BYTES, "write %s", path);
  close(fd);
  free(buf);
  size_t len = 0;
  uint8_t *wasm = load_guest("test_mapsum", &len);
  sp_runtime_t *iso = runtime("process");
  sp_actor_t *a = new_actor(iso, wasm, len, "data", path, 0, NULL);
  CHECK(call0(a, "map_data", 0, 0, 0) == 0, "map the file");
  int64_t want = call0(a, "sum_wasm", 0, 0, 0), host = call0(a, "sum_host", 0, 0, 0);
  CHECK(want > 0 && host == want, "the worker reads the mapped file (%lld, %lld)", (long long)host, (long long)want);
  CHECK(call0(a, "poke", 0, 5, 2) == 0 && call0(a, "poke", 300000, 0, 2) == 0, "poke"); /* byte 0: 0 -> 5; byte 300000: 55 -> 0 */
  CHECK(call0(a, "freeze_data", 0, 0, 0) == 0, "freeze");
  int64_t after = want + 5 - 300000 % 251;
  CHECK(call0(a, "sum_wasm", 0, 0, 0) == after, "the guest sees its stores");
  CHECK(call0(a, "sum_host", 0, 0, 0) == after, "the worker sees them after the freeze");
  CHECK(call0(a, "poke", 1, 100, 2) == 0 && call0(a, "flush_data", 0, 0, 0) == 0, "poke and flush");
  CHECK(call0(a, "sum_host", 0, 0, 0) == after + 99, "the worker sees a store after the flush");
  sp_actor_free(a);
  sp_runtime_free(iso);
  unlink(path);
  free(wasm);
}

/* ---- part 3: workers that cannot serve ---- */

static void expect_runtime_error(const char *worker_exe, const char *want) {
  struct sp_knobs knobs;
  sp_knobs_defaults(&knobs);
  knobs.worker_exe = worker_exe;
  sp_runtime_options o = {.backend = "cpu", .isolation = "process", .knobs = &knobs};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&o, &rt);
  CHECK(err && strstr(sp_error_message(err), want), "worker %s: \"%s\" (want \"%s\")", worker_exe,
        err ? sp_error_message(err) : "no error", want);
  sp_error_free(err);
  sp_runtime_free(rt);
  CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "no process is left");
}

static void broken_workers(void) {
  expect_runtime_error("/nonexistent/samepage-worker", "cannot find the worker executable");
  expect_runtime_error("/bin/false", "exited with status 1");
  sp_runtime_options o = {.backend = "cpu", .isolation = "sideways"};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&o, &rt);
  CHECK(err && strstr(sp_error_message(err), "unknown isolation \"sideways\""), "a bad isolation name is refused");
  sp_error_free(err);
}

/* ---- part 4: "the same list as last time", decided once (issue 14) ----
 * guests/repeat_lists.c changes a list in one byte between repeats; under
 * isolation a repeat is sent as "the same list again" and the worker
 * replays its copy, so a wrong answer would compute the old list. */
static void repeated_lists(void) {
  size_t len;
  uint8_t *wasm = load_guest("test_repeat_lists", &len);
  const char *modes[2] = {"none", "process"};
  for (int m = 0; m < 2; m++) {
    sp_runtime_t *rt = runtime(modes[m]);
    sp_actor_t *a = NULL;
    sp_error_t *err = sp_actor_new(rt, wasm, len, NULL, &a);
    int code = -1;
    if (!err) err = sp_actor_run_main(a, &code);
    CHECK(!err && code == 0, "lists changed in one byte run as changed (isolation %s): exit %d, %s", modes[m], code,
          sp_error_message(err));
    sp_error_free(err);
    sp_actor_free(a);
    sp_runtime_free(rt);
  }
  free(wasm);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    printf("usage: test_isolation GUEST_DIR [MODEL]\n");
    return 2;
  }
  setenv("SP_GUEST_DIR", argv[1], 1);
  if (argc < 3) {
    broken_workers();
    mapped_writes();
    repeated_lists();
  } else if (access(argv[2], R_OK) == 0) {
    worker_crash(argv[2]);
  } else {
    printf("SKIP: no model at %s\n", argv[2]);
    return 77;
  }
  return CHECK_DONE();
}
