/*
 * http.h: the HTTP side of `samepage serve`, on libmicrohttpd: one thread
 * per connection (a streamed reply's callback may block in a decode step
 * without holding up other clients), bodies collected up to --max-body,
 * routing, and SSE through a chunked reply whose callback decodes a token
 * whenever the client is ready for more.
 */
#ifndef SP_SERVER_HTTP_H
#define SP_SERVER_HTTP_H

#include "server/server.h"

struct MHD_Daemon;
struct MHD_Connection;

/* Starts listening on cfg.host:cfg.port; *port: the port bound. NULL (and
 * a message on stderr) when it cannot. */
struct MHD_Daemon *srv_http_start(srv *s, int *port);
void srv_http_stop(struct MHD_Daemon *d);

/* Connections shut down because their headers took longer than
 * --header-timeout, since start (/metrics). */
uint64_t srv_http_header_timeouts(void);

/* Queues body (malloc'd, taken) with its Content-Type and extra headers
 * (name, value pairs, NULL-terminated, or NULL). An MHD_Result. */
int srv_http_reply(struct MHD_Connection *c, int status, const char *type, char *body, const char *const *headers);

/* Queues e in OpenAI's shape (Retry-After with a 503) and counts it. */
int srv_http_error(srv *s, struct MHD_Connection *c, const srv_error *e);

#endif
