/* file_open.c: user-named files, regular files only, never blocking (file_open.h). */
#include "core/file_open.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

const char *sp_file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "an unknown kind of file";
}

static sp_error_t *not_regular(const char *path, mode_t mode) {
  return sp_error_with_kind(SP_ERROR_IO, "%s: is %s, not a regular file", path, sp_file_kind(mode));
}

/* The errno text of a failed call on path. */
static sp_error_t *errno_error(const char *path) {
  return sp_error_with_kind(SP_ERROR_IO, "%s: %s", path, strerror(errno));
}

/* Checks an open descriptor: a regular file (and not empty when asked). */
static sp_error_t *check_fd(const char *path, int fd, unsigned flags, struct stat *st) {
  if (fstat(fd, st)) return errno_error(path);
  if (!S_ISREG(st->st_mode)) return not_regular(path, st->st_mode);
  if ((flags & SP_OPEN_NONEMPTY) && st->st_size == 0) return sp_error_with_kind(SP_ERROR_IO, "%s: file is empty", path);
  return NULL;
}

/* Opens path with open_flags | O_NONBLOCK, after a stat that keeps
 * devices and FIFOs from being opened at all; then the fstat check. */
static sp_error_t *open_checked(const char *path, int open_flags, unsigned flags, int *fd, struct stat *st) {
  *fd = -1;
  if (!path || !path[0]) return sp_error_new("an empty file name");
  struct stat pre;
  if (stat(path, &pre) == 0 && !S_ISREG(pre.st_mode)) return not_regular(path, pre.st_mode);
  int got = open(path, open_flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644);
  if (got < 0) return errno_error(path);
  sp_error_t *err = check_fd(path, got, flags, st);
  /* Regular files ignore O_NONBLOCK; clear it anyway so the descriptor
   * behaves as a plain one wherever it goes. */
  if (!err && fcntl(got, F_SETFL, fcntl(got, F_GETFL) & ~O_NONBLOCK)) err = errno_error(path);
  if (err) {
    close(got);
    return err;
  }
  *fd = got;
  return NULL;
}

sp_error_t *sp_open_regular(const char *path, unsigned flags, int *fd, struct stat *st) {
  struct stat local;
  return open_checked(path, O_RDONLY, flags, fd, st ? st : &local);
}

sp_error_t *sp_read_regular(const char *path, unsigned flags, uint8_t **data, size_t *len) {
  int fd;
  struct stat st;
  *data = NULL, *len = 0;
  sp_error_t *err = sp_open_regular(path, flags, &fd, &st);
  if (err) return err;
  size_t size = (size_t)st.st_size;
  uint8_t *buf = (uint64_t)st.st_size < SIZE_MAX ? malloc(size + 1) : NULL;
  if (!buf) err = sp_error_new("%s: out of memory for %lld bytes", path, (long long)st.st_size);
  size_t done = 0;
  while (!err && done < size) {
    ssize_t got = read(fd, buf + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) err = errno_error(path);
    else if (got == 0) err = sp_error_with_kind(SP_ERROR_IO, "%s: file shrank while reading (%zu of %zu bytes)", path, done, size);
    else done += (size_t)got;
  }
  close(fd);
  if (err) {
    free(buf);
    return err;
  }
  buf[size] = 0;
  *data = buf, *len = size;
  return NULL;
}

sp_error_t *sp_create_regular(const char *path, int *fd) {
  struct stat st;
  sp_error_t *err = open_checked(path, O_WRONLY | O_CREAT, 0, fd, &st);
  if (!err && ftruncate(*fd, 0)) {
    err = errno_error(path);
    close(*fd);
    *fd = -1;
  }
  return err;
}
