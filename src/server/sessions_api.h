/*
 * sessions_api.h: the tenant's conversations over HTTP.
 *   GET    /v1/sessions                 the tenant's sessions (id, tokens,
 *                                       created, last_used, live | stored)
 *   POST   /v1/sessions                 import: the body is a snapshot (as
 *                                       GET .../snapshot gives); restored
 *                                       into a new session, checked by the
 *                                       runtime (same guest, same model) and
 *                                       against this server's context
 *   GET    /v1/sessions/ID              one session
 *   DELETE /v1/sessions/ID              the session and its snapshot files
 *   GET    /v1/sessions/ID/snapshot     its snapshot (sp_actor_snapshot's
 *                                       format): the last finished turn
 *   GET    /v1/sessions/ID/kv.safetensors  its KV cache (`samepage kv
 *                                       export`'s format, cli/cli_kv.h)
 *   POST   /v1/sessions/ID/kv.safetensors  the body's KV cache written into
 *                                       a copy of ID (`samepage kv import`),
 *                                       a new session; a bad file is 400
 * Another tenant's session is 404, as one that does not exist, so ids do
 * not leak; one in use by a request is 409.
 */
#ifndef SP_SERVER_SESSIONS_API_H
#define SP_SERVER_SESSIONS_API_H

#include "server/server.h"

struct MHD_Connection;

/* Serves one request to /v1/sessions[/...]; upload: the file holding a
 * POST's body (or NULL). An MHD_Result. */
int srv_sessions_route(srv *s, struct MHD_Connection *c, srv_tenant *t, const char *method, const char *url,
                       const char *upload);

#endif
