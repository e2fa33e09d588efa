/*
 * stream.h: `stream: true`, server-sent events. The turn begins (and a
 * failure there is an ordinary JSON error); then libmicrohttpd pulls the
 * chunked body from a callback that decodes until it has text to send:
 *   data: {chunk}\n\n ... data: {chunk with finish_reason}\n\n
 *   [data: {usage chunk}\n\n]  data: [DONE]\n\n
 * The session is written to disk before the last chunk goes out. A client
 * that goes away mid-stream (or a server stopping) rolls the turn back:
 * the session is as it was before it. The caller counted the request in
 * its tenant (srv_tenant_enter); the stream ends that count.
 */
#ifndef SP_SERVER_STREAM_H
#define SP_SERVER_STREAM_H

#include "server/request.h"

struct MHD_Connection;

/* Begins r's turn and queues the streamed reply; takes r (malloc'd). */
int srv_stream_start(srv *s, struct MHD_Connection *c, srv_request *r);

#endif
