/*
 * tenant.h: API keys and tenants (--api-keys FILE).
 *
 * The file holds one key per line, `KEY TENANT`, separated by spaces or a
 * tab; blank lines and lines starting with '#' are skipped. A key is 8 to
 * 127 printable bytes without spaces; a tenant name 1 to 31 of [A-Za-z0-9_-].
 * Several keys may name one tenant. A request authenticates with
 * `Authorization: Bearer KEY`; every session belongs to the tenant that
 * made it, and another tenant never sees it (session.h).
 *
 * Without a key file every request is the tenant "default", unauthenticated,
 * and the server listens on loopback only (serve_main.c refuses another
 * --host).
 */
#ifndef SP_SERVER_TENANT_H
#define SP_SERVER_TENANT_H

#include "server/server.h"

#define SRV_DEFAULT_TENANT "default"

/* Loads cfg.api_keys (or makes the one "default" tenant). 0, or -1 with a
 * message on stderr naming the file and line. */
int srv_tenants_load(srv *s);
void srv_tenants_free(srv *s);

/* The tenant of a request's Authorization header (NULL: none given).
 * 0, or 401 into e (missing, malformed or unknown key). */
int srv_tenant_auth(srv *s, const char *authorization, srv_tenant **out, srv_error *e);

/* Counts a completion in flight for t: 0, or 429 into e past
 * --max-concurrent-per-tenant. srv_tenant_leave undoes it. Take srv.lock
 * themselves. */
int srv_tenant_enter(srv *s, srv_tenant *t, srv_error *e);
void srv_tenant_leave(srv *s, srv_tenant *t);

#endif
