/*
 * snapshot_tmp.h (private): the temporary files of atomic snapshot saves.
 *
 * A save writes PATH.tmp.<pid>.XXXXXX, fsyncs it and renames it over PATH.
 * A process killed mid-save leaves its temporary behind; the next
 * successful save of the same PATH removes those whose writer is gone:
 *  - the name carries a pid, and no process with that pid exists here
 *    (kill(pid, 0) fails with ESRCH), and
 *  - the file was last modified before this save began (a live writer
 *    keeps modifying its file; a dead one cannot).
 * Kept: temporaries of other paths, of live pids (also when the pid was
 * reused by an unrelated process: that costs a stale file, never a live
 * one), names without a pid (written before this scheme), anything not a
 * regular file. Writers in another pid namespace or on another host
 * sharing the directory look dead by pid; the age check is what protects
 * their files while they write.
 */
#ifndef SP_SNAPSHOT_TMP_H
#define SP_SNAPSHOT_TMP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Writes the mkstemp template "PATH.tmp.<pid>.XXXXXX" into buf; false when
 * it does not fit. */
bool sp_snap_tmp_template(const char *path, char *buf, size_t cap);

/* Removes stale temporaries of `path` (see above) last modified before
 * `save_began`; returns how many were removed. Errors are ignored: a file
 * left behind is harmless. */
int sp_snap_tmp_sweep(const char *path, struct timespec save_began);

#endif
