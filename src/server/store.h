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
 * session restorable. The index names the model: sessions of another model
 * are left alone.
 */
#ifndef SP_SERVER_STORE_H
#define SP_SERVER_STORE_H

#include "server/server.h"

/* Writes ss's actor snapshot and the index (no-op without a directory). */
int srv_store_save(srv *s, srv_session *ss, srv_error *e);

/* Path of ss's current snapshot file (into buf). */
void srv_store_snapshot_path(const srv *s, const srv_session *ss, char *buf, size_t cap);

/* Creates the directory if needed and loads the index's sessions (stored,
 * not live); 0, or -1 with a message on stderr. */
int srv_store_load(srv *s);

#endif
