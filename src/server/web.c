/* web.c: the chat page's files, embedded (web.h). */
#include "server/web.h"

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Each file lies between two symbols (web.cmake, .incbin). */
extern const char sp_web_index_html[], sp_web_index_html_end[];
extern const char sp_web_app_js[], sp_web_app_js_end[];
extern const char sp_web_style_css[], sp_web_style_css_end[];

typedef struct web_file {
  const char *url;
  const char *type;         /* Content-Type */
  const char *start, *end;  /* the bytes */
} web_file;

static const web_file files[] = {
    {"/", "text/html; charset=utf-8", sp_web_index_html, sp_web_index_html_end},
    {"/index.html", "text/html; charset=utf-8", sp_web_index_html, sp_web_index_html_end},
    {"/app.js", "text/javascript; charset=utf-8", sp_web_app_js, sp_web_app_js_end},
    {"/style.css", "text/css; charset=utf-8", sp_web_style_css, sp_web_style_css_end},
};

/* Scripts and styles from this origin only, fetches to it only, no
 * framing, no forms posted anywhere; the favicon is an empty data: URL. */
static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static const web_file *find(const char *url) {
  for (size_t i = 0; url && i < sizeof files / sizeof files[0]; i++)
    if (!strcmp(files[i].url, url)) return &files[i];
  return NULL;
}

bool srv_web_has(const char *url) { return find(url) != NULL; }

/* The ETag: FNV-1a (64 bits) of the bytes, quoted. */
static void etag_of(const web_file *f, char *buf, size_t cap) {
  uint64_t h = 14695981039346656037ull;
  for (const char *p = f->start; p < f->end; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  snprintf(buf, cap, "\"%016llx\"", (unsigned long long)h);
}

int srv_web_reply(struct MHD_Connection *c, const char *url) {
  const web_file *f = find(url);
  if (!f) return MHD_NO;
  char etag[24];
  etag_of(f, etag, sizeof etag);
  const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
  bool fresh = inm && (strstr(inm, etag) || !strcmp(inm, "*"));
  size_t len = fresh ? 0 : (size_t)(f->end - f->start);
  /* PERSISTENT: the bytes are in the binary, never copied or freed. */
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)(fresh ? "" : f->start), MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  if (!fresh) MHD_add_response_header(r, "Content-Type", f->type);
  MHD_add_response_header(r, "ETag", etag);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  MHD_add_response_header(r, "Content-Security-Policy", CSP);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(r, "X-Frame-Options", "DENY");
  enum MHD_Result rc = MHD_queue_response(c, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}
