/*
 * template.h: a shared system prompt, prefilled once per tenant.
 *
 * When a new conversation starts with a system message, the tokens of that
 * rendered system message (the prefix the whole prompt shares with the
 * system message rendered alone) are looked up among the tenant's
 * templates: each is a snapshot of an actor whose KV cache holds exactly
 * such a prefix. A hit starts the conversation from a restore of it, so
 * only the rest of the prompt is prefilled; a miss prefills the prefix
 * first, snapshots it as a new template, then the rest. The match is on
 * token ids, within the tenant only: another tenant never sees, hits or
 * times a template. Templates need --sessions DIR: they live in
 * DIR/templates/<tenant>/<hash>.snap, with their token ids beside them in
 * <hash>.tokens, and are loaded again at start; each tenant keeps at most
 * --max-templates (least recently used first out; 0: no templates).
 * Callers hold srv.lock.
 */
#ifndef SP_SERVER_TEMPLATE_H
#define SP_SERVER_TEMPLATE_H

#include "server/server.h"

struct srv_template {
  char tenant[32];
  uint64_t hash;          /* FNV-1a of the token ids: the files' name */
  int32_t *tokens;        /* [n] the prefix its snapshot's cache holds */
  uint32_t n;
  uint64_t used;          /* LRU tick (srv.clock) */
};

/* The tenant's template holding exactly prefix[0..n), or NULL; a hit
 * counts as its use. */
srv_template *srv_template_find(srv *s, const char *tenant, const int32_t *prefix, uint32_t n);

/* The path of t's snapshot (into buf). */
void srv_template_path(const srv *s, const srv_template *t, const char *ext, char *buf, size_t cap);

/* Snapshots actor a, whose cache holds exactly prefix[0..n), as a new
 * template of tenant; past --max-templates the tenant's least recently
 * used goes. Failures (a full disk) only skip the template: 0 or -1, a
 * line on stderr. */
int srv_template_add(srv *s, const char *tenant, sp_actor_t *a, const int32_t *prefix, uint32_t n);

/* At start (with --sessions): loads DIR/templates/<tenant>/ of every
 * tenant, deleting what is not a whole template (a crash's leftovers). */
void srv_templates_load(srv *s);

/* Frees the table (the files stay). */
void srv_templates_free(srv *s);

#endif
