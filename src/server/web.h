/*
 * web.h: the chat page, GET / (src/server/web/: HTML, JS and CSS as they
 * are in the repository, put into the binary at build time by
 * src/server/web/web.cmake). No inline script or style, so the page goes
 * out with a Content-Security-Policy that allows only this server; every
 * file carries an ETag and `Cache-Control: no-cache`, so a browser
 * revalidates it and gets 304 while the binary is the same.
 */
#ifndef SP_SERVER_WEB_H
#define SP_SERVER_WEB_H

#include <stdbool.h>

struct MHD_Connection;

/* Whether url (a path, no query) is one of the page's files. */
bool srv_web_has(const char *url);

/* Queues the file at url (srv_web_has(url) must hold): 200 with its body,
 * or 304 when the request's If-None-Match names its ETag. An MHD_Result. */
int srv_web_reply(struct MHD_Connection *c, const char *url);

#endif
