/*
 * test_snapshot_tmp.c: a save removes the temporaries that crashed saves of
 * the same snapshot left behind, and nothing else (src/snapshot/snapshot_tmp.h).
 *
 * Beside PATH it plants temporaries of a dead writer (a child that has
 * exited and been reaped), of a live one (this process's parent), of
 * another snapshot, an old-style name without a pid, a dead writer's file
 * modified after the save began (mtime in the future), and a directory
 * with a temporary's name; then it saves PATH through sp_actor_snapshot
 * and checks exactly the first is gone. The save after that must still
 * restore.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "samepage.h"
#include "test_util.h"

static char dir[] = "/tmp/sp_snap_tmp_XXXXXX";

static void plant(const char *name, bool future) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  CHECK(fd >= 0, "create %s", p);
  if (fd < 0) return;
  (void)!write(fd, "partial", 7);
  if (future) {
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec += 3600, t[1] = t[0];
    futimens(fd, t);
  }
  close(fd);
}

static bool exists(const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

/* A pid that existed and is now gone: a reaped child's. */
static pid_t dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  return pid;
}

int main(void) {
  CHECK(mkdtemp(dir), "mkdtemp");
  size_t len;
  uint8_t *wasm = load_guest("test_grow", &len);
  sp_runtime_options ro = {.backend = "cpu", .threads = 1};
  sp_runtime_t *rt = NULL;
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  if (!err) err = sp_actor_new(rt, wasm, len, NULL, &a);
  CHECK(!err, "actor: %s", sp_error_message(err));
  if (err) return sp_error_free(err), CHECK_DONE();

  char dead[64], live[64], other[64], future[64], as_dir[64], path[512];
  long gone = (long)dead_pid();
  snprintf(dead, sizeof dead, "s.snap.tmp.%ld.aB3xYz", gone);
  snprintf(live, sizeof live, "s.snap.tmp.%ld.qWe123", (long)getppid());
  snprintf(other, sizeof other, "other.snap.tmp.%ld.aB3xYz", gone);
  snprintf(future, sizeof future, "s.snap.tmp.%ld.fUture", gone);
  snprintf(as_dir, sizeof as_dir, "s.snap.tmp.%ld.dir000", gone);
  plant(dead, false);
  plant(live, false);
  plant(other, false);
  plant("s.snap.tmp.Ab12Cd", false); /* no pid: kept */
  plant(future, true);
  char sub[512];
  snprintf(sub, sizeof sub, "%s/%s", dir, as_dir);
  CHECK(mkdir(sub, 0700) == 0, "mkdir %s", sub);

  snprintf(path, sizeof path, "%s/s.snap", dir);
  err = sp_actor_snapshot(a, path, NULL, NULL);
  CHECK(!err, "save: %s", sp_error_message(err));
  sp_error_free(err);
  CHECK(!exists(dead), "the dead writer's temporary %s was not removed", dead);
  CHECK(exists(live), "a live writer's temporary %s was removed", live);
  CHECK(exists(other), "another snapshot's temporary %s was removed", other);
  CHECK(exists("s.snap.tmp.Ab12Cd"), "a temporary without a pid was removed");
  CHECK(exists(future), "a temporary modified after the save began was removed");
  CHECK(exists(as_dir), "a directory was removed");
  CHECK(exists("s.snap"), "the snapshot itself is missing");

  /* Only s.snap and the five kept entries remain: no temporary of ours. */
  int entries = 0;
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
  if (d) closedir(d);
  CHECK(entries == 6, "%d entries in %s, expected 6 (the save left a temporary?)", entries, dir);

  err = sp_actor_restore(a, path, NULL);
  CHECK(!err, "restore after the sweep: %s", sp_error_message(err));
  sp_error_free(err);

  sp_actor_free(a);
  sp_runtime_free(rt);
  free(wasm);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) printf("could not remove %s\n", dir);
  return CHECK_DONE();
}
