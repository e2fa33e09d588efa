/*
 * test_fault.c: a granted file that shrinks on disk while mapped into an
 * actor (issue 6, faults). Touching a mapped page past the file's new end
 * raises SIGBUS; the fault guard (src/core/fault_guard.c) must keep the host
 * alive, fail that actor's next call with a clear error, and leave an
 * honest actor beside it untouched. A SIGBUS anywhere else must still end
 * the process (the handler chains).
 *
 * A guest that maps its file 4,200 times cannot switch the guard off: its
 * mappings stop at its own cap (SP_FAULT_GUARD_PER_OWNER) with a named
 * error, and after a truncation it and the actor beside it both fail
 * cleanly (issue 13).
 *
 * A granted file rewritten in place at the same size raises no signal; a
 * snapshot or restore by reference must notice it (src/runtime/blob.c,
 * verify_unchanged) and refuse, while a mere touch of the file passes.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "core/fault_guard.h"
#include "core/knobs.h"
#include "samepage.h"

#define FILE_BYTES (4u << 20)

static void make_file(char *path) {
  int fd = mkstemp(path);
  uint8_t *buf = malloc(FILE_BYTES);
  for (uint32_t i = 0; i < FILE_BYTES; i++) buf[i] = (uint8_t)(i % 251);
  CHECK(fd >= 0 && write(fd, buf, FILE_BYTES) == FILE_BYTES, "write %s", path);
  close(fd);
  free(buf);
}

static sp_actor_t *mapped_actor(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *path) {
  sp_blob_grant grant = {"data", path};
  sp_actor_options opts = {.blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(!err, "actor: %s", sp_error_message(err));
  if (err) exit(1);
  int64_t r = -1;
  err = sp_actor_call(a, "map_data", NULL, 0, &r);
  CHECK(!err && r == 0, "map_data: %lld %s", (long long)r, sp_error_message(err));
  sp_error_free(err);
  return a;
}

static int64_t call(sp_actor_t *a, const char *fn, char *msg, size_t cap) {
  int64_t r = 0;
  sp_error_t *err = sp_actor_call(a, fn, NULL, 0, &r);
  snprintf(msg, cap, "%s", err ? sp_error_message(err) : "");
  if (err) r = INT64_MIN;
  sp_error_free(err);
  return r;
}

/* Sets the file's access and modification times to now + `offset_s`:
 * later writes then get a modification time different from it whatever the
 * file system's timestamp granularity. */
static void set_times(const char *path, long offset_s) {
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec += offset_s, t[1] = t[0];
  CHECK(utimensat(AT_FDCWD, path, t, 0) == 0, "utimensat %s", path);
}

/* Overwrites 4 KiB in the middle of the file with other bytes, in place. */
static void rewrite_in_place(const char *path) {
  int fd = open(path, O_WRONLY);
  uint8_t junk[4096];
  memset(junk, 0xa5, sizeof junk);
  CHECK(fd >= 0 && pwrite(fd, junk, sizeof junk, FILE_BYTES / 2) == sizeof junk, "rewrite %s", path);
  if (fd >= 0) close(fd);
}

static sp_error_t *snapshot_to(sp_actor_t *a, const char *path) { return sp_actor_snapshot(a, path, NULL, NULL); }

static void test_same_size_rewrite(sp_runtime_t *rt, const uint8_t *wasm, size_t len) {
  char data[] = "/tmp/sp_fault_rewriteXXXXXX", fresh[] = "/tmp/sp_fault_rewrite_freshXXXXXX";
  char snap[64], snap2[64];
  make_file(data);
  make_file(fresh);
  snprintf(snap, sizeof snap, "%s.snap", data);
  snprintf(snap2, sizeof snap2, "%s.2.snap", data);

  /* Hashed by a first snapshot; a touch (new mtime, same bytes) is fine. */
  sp_actor_t *a = mapped_actor(rt, wasm, len, data);
  sp_error_t *err = snapshot_to(a, snap);
  CHECK(!err, "first snapshot: %s", sp_error_message(err));
  sp_error_free(err);
  set_times(data, 10);
  err = snapshot_to(a, snap);
  CHECK(!err, "snapshot after a touch: %s", sp_error_message(err));
  sp_error_free(err);

  /* Same size, other bytes: refused, sticky, nothing written. */
  rewrite_in_place(data);
  err = snapshot_to(a, snap2);
  CHECK(err && strstr(sp_error_message(err), "the granted file \"data\" was modified on disk after the actor opened it "
                                                "(same size, new modification time and different content)"),
        "snapshot after a rewrite: %s", sp_error_message(err));
  sp_error_free(err);
  CHECK(access(snap2, F_OK) != 0, "a refused snapshot left %s", snap2);
  err = sp_actor_restore(a, snap, NULL);
  CHECK(err && strstr(sp_error_message(err), "was modified on disk"), "restore after a rewrite: %s", sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(a);

  /* Rewritten before anything hashed it: what the guest saw is unknown. */
  set_times(fresh, -3600);
  sp_actor_t *b = mapped_actor(rt, wasm, len, fresh);
  rewrite_in_place(fresh);
  err = snapshot_to(b, snap2);
  CHECK(err && strstr(sp_error_message(err), "same size, new modification time, before its content was ever hashed"),
        "snapshot of an unhashed rewritten file: %s", sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(b);
  unlink(data), unlink(fresh), unlink(snap), unlink(snap2);
}

/* ---- a guest filling the fault guard (issue 13) ---- */

#define HOG_MAPS 4200 /* more than the old process-wide table's 4096 slots */

static int32_t call_i32(sp_actor_t *a, const char *fn, int64_t arg, int nargs, char *msg, size_t cap) {
  int64_t r = 0;
  sp_error_t *err = sp_actor_call(a, fn, &arg, (size_t)nargs, &r);
  snprintf(msg, cap, "%s", err ? sp_error_message(err) : "");
  if (err) r = INT32_MIN;
  sp_error_free(err);
  return (int32_t)r;
}

static sp_actor_t *hog_actor(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *path) {
  sp_blob_grant grant = {"data", path};
  sp_actor_options opts = {.blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(!err, "guard_hog actor: %s", sp_error_message(err));
  sp_error_free(err);
  return a;
}

/* In a child (a SIGBUS there fails the test instead of ending it): one
 * actor maps its 64 KiB file 4,200 times, another maps its own once; both
 * files are then truncated to nothing. The hog must have been refused
 * past its own cap with a named error, and both must then fail cleanly. */
static int guard_exhaustion_child(void) {
  size_t len;
  uint8_t *wasm = load_guest("test_guard_hog", &len);
  struct sp_knobs knobs; /* SP_ISOLATION: the ctest variant */
  sp_error_t *err = sp_knobs_from_env(&knobs);
  sp_runtime_options ro = {.backend = "cpu", .threads = 1, .knobs = &knobs};
  sp_runtime_t *rt = NULL;
  if (!err) err = sp_runtime_new(&ro, &rt);
  CHECK(!err, "runtime: %s", sp_error_message(err));
  if (err) return 1;
  char hog_path[] = "/tmp/sp_fault_hogXXXXXX", other_path[] = "/tmp/sp_fault_otherXXXXXX";
  int fds[2] = {mkstemp(hog_path), mkstemp(other_path)};
  uint8_t page[65536];
  for (size_t i = 0; i < sizeof page; i++) page[i] = (uint8_t)(i % 251 + 1);
  for (int i = 0; i < 2; i++) {
    CHECK(fds[i] >= 0 && write(fds[i], page, sizeof page) == (ssize_t)sizeof page, "write a 64 KiB file");
    if (fds[i] >= 0) close(fds[i]);
  }
  sp_actor_t *hog = hog_actor(rt, wasm, len, hog_path), *other = hog_actor(rt, wasm, len, other_path);
  if (!hog || !other) return 1;
  char msg[512];
  int32_t mapped = call_i32(hog, "map_many", HOG_MAPS, 1, msg, sizeof msg);
  int32_t refused = call_i32(hog, "refused", 0, 0, msg, sizeof msg), why = call_i32(hog, "refusal", 0, 0, msg, sizeof msg);
  int32_t text_at = call_i32(hog, "refusal_text", 0, 0, msg, sizeof msg);
  uint8_t *base;
  size_t size;
  sp_actor_memory(hog, &base, &size);
  const char *text = text_at > 0 && (size_t)text_at < size ? (const char *)base + text_at : "";
  printf("guard hog: %d of %d mappings accepted, %d refused (status %d): %s\n", mapped, HOG_MAPS, refused, why, text);
  CHECK(mapped == SP_FAULT_GUARD_PER_OWNER && refused == HOG_MAPS - SP_FAULT_GUARD_PER_OWNER,
        "the hog's mappings stop at its own cap: %d accepted, %d refused", mapped, refused);
  CHECK(why == SP_E_LIMIT && strstr(text, "guarded file mappings, the most one actor may hold"),
        "the refusal is named: status %d \"%s\"", why, text);
  CHECK(call_i32(other, "map_many", 1, 1, msg, sizeof msg) == 1, "the other actor still maps: %s", msg);
  int64_t r = 0;
  err = sp_actor_call(other, "touch_all", NULL, 0, &r);
  CHECK(!err && r > 0, "the other actor reads its file: %s", sp_error_message(err));
  sp_error_free(err);

  CHECK(truncate(hog_path, 0) == 0 && truncate(other_path, 0) == 0, "truncate both files");
  sp_actor_t *actors[2] = {hog, other};
  for (int i = 0; i < 2; i++) {
    err = sp_actor_call(actors[i], "touch_all", NULL, 0, &r);
    CHECK(err && strstr(sp_error_message(err), "the granted file \"data\" changed on disk while mapped"),
          "%s after truncation: %s", i ? "the other actor" : "the hog", sp_error_message(err));
    sp_error_free(err);
  }
  sp_actor_free(hog);
  sp_actor_free(other);
  sp_runtime_free(rt);
  unlink(hog_path), unlink(other_path);
  free(wasm);
  return CHECK_DONE();
}

static void test_guard_exhaustion(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* what it printed survives its death */
    int rc = guard_exhaustion_child();
    fflush(stdout);
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "guard exhaustion: the child %s %d",
        WIFSIGNALED(status) ? "died of signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* Any other SIGBUS still ends the process: the guard chains. The child is
 * forked before this process has threads: a child forked from a threaded
 * one can inherit a lock another thread held (ASan's thread registry), and
 * ASan's report of the SIGBUS then waits on it forever. */
static void test_unguarded_sigbus(void) {
  pid_t pid = fork();
  if (pid == 0) {
    sp_fault_guard_install();
    char tmp[] = "/tmp/sp_fault_unguardedXXXXXX";
    int out = mkstemp(tmp);
    unlink(tmp);
    if (out < 0 || ftruncate(out, 65536)) _exit(3);
    volatile uint8_t *p = mmap(NULL, 65536, PROT_READ, MAP_PRIVATE, out, 0);
    if (ftruncate(out, 0)) _exit(3);
    _exit(p[100] == 0 ? 4 : 5);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  /* Killed by SIGBUS, or (under ASan, whose handler the guard chains to)
   * reported and exited non-zero: never survived the read. */
  bool ended = (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) ||
               (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 3);
  CHECK(ended, "unguarded SIGBUS: status 0x%x", status);
}

int main(void) {
  /* First, before this process has a runtime (and its threads) to fork. */
  test_guard_exhaustion();
  test_unguarded_sigbus();
  size_t len;
  uint8_t *wasm = load_guest("test_mapsum", &len);
  struct sp_knobs knobs; /* SP_ISOLATION: the ctest variant */
  sp_error_t *err = sp_knobs_from_env(&knobs);
  sp_runtime_options ro = {.backend = "cpu", .threads = 2, .knobs = &knobs};
  sp_runtime_t *rt = NULL;
  if (!err) err = sp_runtime_new(&ro, &rt);
  CHECK(!err, "runtime: %s", sp_error_message(err));
  if (err) return 1;

  char victim_path[] = "/tmp/sp_fault_victimXXXXXX", host_path[] = "/tmp/sp_fault_hostopXXXXXX",
       honest_path[] = "/tmp/sp_fault_honestXXXXXX";
  make_file(victim_path);
  make_file(host_path);
  make_file(honest_path);
  sp_actor_t *victim = mapped_actor(rt, wasm, len, victim_path);
  sp_actor_t *hostop = mapped_actor(rt, wasm, len, host_path);
  sp_actor_t *honest = mapped_actor(rt, wasm, len, honest_path);
  char msg[512];
  int64_t want = call(honest, "sum_wasm", msg, sizeof msg), want_host = call(honest, "sum_host", msg, sizeof msg);
  CHECK(want > 0 && want_host > 0, "honest sums %lld %lld %s", (long long)want, (long long)want_host, msg);
  CHECK(call(victim, "sum_wasm", msg, sizeof msg) == want, "victim before: %s", msg);
  CHECK(call(hostop, "sum_host", msg, sizeof msg) == want_host, "hostop before: %s", msg);

  /* Shrink both files to one page, under the live mappings. */
  CHECK(truncate(victim_path, 4096) == 0, "truncate victim");
  CHECK(truncate(host_path, 4096) == 0, "truncate hostop");
  unsigned long before = sp_fault_guard_repaired();

  /* From wasm code: the guest reads zeros, the call then fails clearly. */
  int64_t r = call(victim, "sum_wasm", msg, sizeof msg);
  CHECK(r == INT64_MIN && strstr(msg, "the granted file \"data\" changed on disk while mapped"),
        "victim after truncation: %lld \"%s\"", (long long)r, msg);
  r = call(victim, "sum_wasm", msg, sizeof msg);
  CHECK(r == INT64_MIN && strstr(msg, "changed on disk"), "victim stays failed: \"%s\"", msg);
  sp_cmd nop = {0};
  err = sp_actor_submit(victim, &nop, 1);
  CHECK(err && strstr(sp_error_message(err), "changed on disk while mapped"), "host submit on victim: %s",
        sp_error_message(err));
  sp_error_free(err);

  /* From a host op (the CPU backend's workers touch the pages). */
  r = call(hostop, "sum_host", msg, sizeof msg);
  CHECK(r == INT64_MIN && strstr(msg, "the granted file \"data\" changed on disk while mapped"),
        "host op after truncation: %lld \"%s\"", (long long)r, msg);
  CHECK(sp_fault_guard_repaired() > before, "faults were repaired (%lu)", sp_fault_guard_repaired() - before);

  /* The honest actor beside them is untouched. */
  CHECK(call(honest, "sum_wasm", msg, sizeof msg) == want, "honest wasm sum after: %s", msg);
  CHECK(call(honest, "sum_host", msg, sizeof msg) == want_host, "honest host sum after: %s", msg);

  /* Freeing the failed actors and making a new one works. */
  sp_actor_free(victim);
  sp_actor_free(hostop);
  sp_actor_t *again = mapped_actor(rt, wasm, len, honest_path);
  CHECK(call(again, "sum_wasm", msg, sizeof msg) == want, "fresh actor: %s", msg);
  sp_actor_free(again);

  test_same_size_rewrite(rt, wasm, len);


  sp_actor_free(honest);
  sp_runtime_free(rt);
  unlink(victim_path);
  unlink(host_path);
  unlink(honest_path);
  free(wasm);
  return CHECK_DONE();
}
