/*
 * test_fault.c: a granted file that shrinks on disk while mapped into an
 * actor (issue 6, faults). Touching a mapped page past the file's new end
 * raises SIGBUS; the fault guard (src/fault_guard.c) must keep the host
 * alive, fail that actor's next call with a clear error, and leave an
 * honest actor beside it untouched. A SIGBUS anywhere else must still end
 * the process (the handler chains).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "fault_guard.h"
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

int main(void) {
  size_t len;
  uint8_t *wasm = load_guest("test_mapsum", &len);
  sp_runtime_options ro = {.backend = "cpu", .threads = 2};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ro, &rt);
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
  err = sp_actor_submit(victim, &nop, 1, false);
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

  /* Any other SIGBUS still ends the process: the guard chains. */
  pid_t pid = fork();
  if (pid == 0) {
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
  /* Killed by SIGBUS, or (under ASan, whose handler Wasmtime chains to)
   * reported and exited non-zero: never survived the read. */
  bool ended = (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) ||
               (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 3);
  CHECK(ended, "unguarded SIGBUS: status 0x%x", status);

  sp_actor_free(honest);
  sp_runtime_free(rt);
  unlink(victim_path);
  unlink(host_path);
  unlink(honest_path);
  free(wasm);
  return CHECK_DONE();
}
