/*
 * snapshot_tmp.c: naming and sweeping snapshot temporaries (snapshot_tmp.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snapshot_tmp.h"

bool sp_snap_tmp_template(const char *path, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
  return n > 0 && (size_t)n < cap;
}

/* The pid in "<base>.tmp.<pid>.XXXXXX", or 0 when `name` is not a
 * temporary of base in this scheme. */
static pid_t tmp_owner(const char *name, const char *base) {
  size_t bl = strlen(base);
  if (strncmp(name, base, bl) || strncmp(name + bl, ".tmp.", 5)) return 0;
  const char *digits = name + bl + 5;
  char *end;
  errno = 0;
  long pid = strtol(digits, &end, 10);
  if (errno || end == digits || *end != '.' || strlen(end + 1) != 6 || pid <= 0 || pid != (pid_t)pid) return 0;
  return (pid_t)pid;
}

static bool process_gone(pid_t pid) { return pid != getpid() && kill(pid, 0) < 0 && errno == ESRCH; }

static bool modified_before(const struct stat *st, struct timespec t) {
  return st->st_mtim.tv_sec < t.tv_sec || (st->st_mtim.tv_sec == t.tv_sec && st->st_mtim.tv_nsec < t.tv_nsec);
}

int sp_snap_tmp_sweep(const char *path, struct timespec save_began) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char *dir_name = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
  if (!dir_name) return 0;
  int dir_fd = open(dir_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir_name);
  DIR *dir = dir_fd >= 0 ? fdopendir(dir_fd) : NULL;
  if (!dir) {
    if (dir_fd >= 0) close(dir_fd);
    return 0;
  }
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(dir))) {
    pid_t owner = tmp_owner(e->d_name, base);
    struct stat st;
    if (!owner || !process_gone(owner)) continue;
    if (fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode)) continue;
    if (modified_before(&st, save_began) && unlinkat(dir_fd, e->d_name, 0) == 0) removed++;
  }
  closedir(dir);
  return removed;
}
