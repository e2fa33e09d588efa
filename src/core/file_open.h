/*
 * file_open.h: opening files a user named (a model, a guest module, a
 * snapshot, a safetensors file) without hanging on them.
 *
 * A FIFO opened for reading blocks until a writer comes, a device may
 * never end, and a directory reads as an error far from its cause. So
 * every user-named file goes through here: the path is checked with
 * stat before anything opens it (a device is never opened), then opened
 * with O_NONBLOCK and checked again with fstat (the check that counts: the
 * path may have changed in between). Only regular files pass; the error
 * names the kind ("is a FIFO", "is a directory", "is a character
 * device", ...). Read errors name their cause: the errno text, "file is
 * empty" (a /proc or /sys file reports size 0), "file shrank while
 * reading".
 *
 * Every message starts with the path: "PATH: is a FIFO, not a regular file".
 */
#ifndef SP_FILE_OPEN_H
#define SP_FILE_OPEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "samepage.h"

/* sp_open_regular / sp_read_regular flags. */
#define SP_OPEN_NONEMPTY 1u /* refuse a file of size 0 ("file is empty") */

/* "a FIFO", "a directory", "a character device", "a block device", "a
 * socket", "a symbolic link", "a regular file" or "an unknown kind of
 * file", for a st_mode. */
const char *sp_file_kind(mode_t mode);

/* Opens `path` read-only (close-on-exec, blocking mode restored after the
 * checks). On success *fd (owned by the caller) and, when st is not NULL,
 * *st (the descriptor's fstat) are set. On failure *fd is -1 and the
 * error, owned by the caller, names the path and the cause. */
sp_error_t *sp_open_regular(const char *path, unsigned flags, int *fd, struct stat *st);

/* Reads the whole regular file `path` into a new buffer: *data (caller
 * frees; one byte more than *len, holding 0) and *len. Errors as
 * sp_open_regular, plus read errors ("file shrank while reading"). */
sp_error_t *sp_read_regular(const char *path, unsigned flags, uint8_t **data, size_t *len);

/* Opens `path` for writing from the start, creating it (mode 0644 before
 * the umask) when absent. An existing path must be a regular file (a FIFO
 * would block, a device would swallow the bytes); it is truncated only
 * after that check. *fd as sp_open_regular. */
sp_error_t *sp_create_regular(const char *path, int *fd);

#endif
