/*
 * store.h: the sessions directory (--sessions DIR), where every finished
 * turn is made durable.
 *
 * Layout: DIR/<id>.<generation>.snap, one actor snapshot per session
 * (sp_actor_snapshot: temporary file, fsync, rename), and DIR/index.json,
 * the sessions with their token ids, rewritten the same way after every
 * snapshot. A snapshot is referenced by the index only once it is whole,
 * and the previous generation is deleted only after the new index is in
 * place, so a SIGKILL at any moment leaves the last finished turn of every
 * session restorable; what it leaves besides (a temporary, a snapshot the
 * index never named) is swept at the next start. A snapshot or index that
 * cannot be written (a full disk: 507) leaves the previous ones as they
 * were. The index names the model: sessions of another model
 * are left alone. Each entry names its tenant (none: "default", as the
 * index of an older server).
 */
#ifndef SP_SERVER_STORE_H
#define SP_SERVER_STORE_H

#include "server/server.h"

/*
 * Where the objects live: a table of operations on named objects
 * ("<id>.<gen>.snap", "index.json"), so that a store shared by several
 * nodes (S3-compatible, docs/SCALING.md) is an addition beside the
 * directory, not a rewrite. Snapshots are written and restored as local
 * files (sp_actor_snapshot, sp_actor_restore): a store maps each name to a
 * local path and moves whole files. ctx is the store's own (the
 * directory's: its path). Errors go into e as a 500.
 */
typedef struct srv_store_ops {
  /* 1 */
  int version;
  /* The local file of object name, into buf: written there before
   * publish, read there after fetch. */
  void (*local_path)(void *ctx, const char *name, char *buf, size_t cap);
  /* Makes the local file of name, complete, the durable object. */
  int (*publish)(void *ctx, const char *name, srv_error *e);
  /* Writes text (NUL-terminated) as object name, all or nothing. */
  int (*put)(void *ctx, const char *name, const char *text, srv_error *e);
  /* (optional) Makes object name readable at its local path. NULL: the
   * objects are local files already. */
  int (*fetch)(void *ctx, const char *name, srv_error *e);
  /* Whether object name exists. */
  bool (*exists)(void *ctx, const char *name);
  /* Deletes object name; a missing one is no error. */
  void (*remove)(void *ctx, const char *name);
  /* (optional) At start, once the index is loaded: deletes what a crash
   * left behind, the snapshots keep(arg, name) does not want (written,
   * but never named by an index) and unfinished temporaries. NULL: a
   * store that leaves none (or a lifecycle rule of its own). */
  void (*sweep)(void *ctx, bool (*keep)(void *arg, const char *name), void *arg);
} srv_store_ops;

/* The directory store (--sessions DIR; ctx: the directory's path). */
extern const srv_store_ops srv_store_dir;

/* Writes ss's actor snapshot and the index (no-op without a directory):
 * srv_store_write then srv_store_commit, under srv.lock. */
int srv_store_save(srv *s, srv_session *ss, srv_error *e);

/* A session's next snapshot, written, not yet named by the index. */
typedef struct srv_store_pending {
  char name[64];   /* its object name */
  bool written;    /* false: nothing to commit (no directory) */
  uint64_t bytes;  /* its size (what the live actor counts against --max-memory) */
  double seconds;  /* what writing it took */
} srv_store_pending;

/* Writes ss's actor snapshot as its next generation; the slow half of a
 * save (seconds on a big conversation), done without srv.lock: the
 * session is busy, so its actor and generation are the caller's alone, and
 * the file's name is its own. Nothing is named until srv_store_commit. */
int srv_store_write(srv *s, srv_session *ss, srv_store_pending *p, srv_error *e);
/* Under srv.lock: the index names p's snapshot as ss's, and the previous
 * one is deleted; on failure p's file is deleted and ss stays at its
 * previous snapshot. Nothing when p was not written. */
int srv_store_commit(srv *s, srv_session *ss, const srv_store_pending *p, srv_error *e);

/* Forgets ss (already out of the session table): the index is rewritten
 * without it, then its snapshot file deleted (no-op without a directory). */
int srv_store_delete(srv *s, srv_session *ss, srv_error *e);

/* Path of ss's current snapshot file (into buf). */
void srv_store_snapshot_path(const srv *s, const srv_session *ss, char *buf, size_t cap);

/* Creates the directory if needed and loads the index's sessions (stored,
 * not live); 0, or -1 with a message on stderr. */
int srv_store_load(srv *s);

#endif
