/* tenant.c: API keys, tenants and their concurrency (tenant.h). */
#include "server/tenant.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool valid_tenant(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n >= sizeof ((srv_tenant *)0)->name) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)name[i]) && name[i] != '_' && name[i] != '-') return false;
  return true;
}

static bool valid_key(const char *key) {
  size_t n = strlen(key);
  if (n < 8 || n >= sizeof ((srv_key *)0)->key) return false;
  for (size_t i = 0; i < n; i++)
    if (key[i] <= ' ' || key[i] == 0x7f) return false;
  return true;
}

/* The tenant named name, added when new; its index or -1 (out of memory). */
static long tenant_index(srv *s, const char *name) {
  for (size_t i = 0; i < s->n_tenants; i++)
    if (!strcmp(s->tenants[i].name, name)) return (long)i;
  srv_tenant *grown = realloc(s->tenants, (s->n_tenants + 1) * sizeof *grown);
  if (!grown) return -1;
  s->tenants = grown;
  memset(&s->tenants[s->n_tenants], 0, sizeof *grown);
  snprintf(s->tenants[s->n_tenants].name, sizeof grown->name, "%s", name);
  return (long)s->n_tenants++;
}

/* One line of the key file; 0, or -1 with its message. */
static int add_line(srv *s, char *line, int lineno) {
  const char *path = s->cfg.api_keys;
  char *key = strtok(line, " \t\r\n");
  if (!key || key[0] == '#') return 0;
  char *name = strtok(NULL, " \t\r\n"), *extra = strtok(NULL, " \t\r\n");
  if (!name || extra) {
    fprintf(stderr, "samepage serve: %s:%d: expected \"KEY TENANT\"\n", path, lineno);
    return -1;
  }
  if (!valid_key(key) || !valid_tenant(name)) {
    fprintf(stderr, "samepage serve: %s:%d: a key is 8-127 printable bytes, a tenant 1-31 of [A-Za-z0-9_-]\n", path,
            lineno);
    return -1;
  }
  for (size_t i = 0; i < s->n_keys; i++)
    if (!strcmp(s->keys[i].key, key)) {
      fprintf(stderr, "samepage serve: %s:%d: this key is already on line before\n", path, lineno);
      return -1;
    }
  long t = tenant_index(s, name);
  srv_key *grown = t < 0 ? NULL : realloc(s->keys, (s->n_keys + 1) * sizeof *grown);
  if (!grown) { fprintf(stderr, "samepage serve: out of memory\n"); return -1; }
  s->keys = grown;
  snprintf(s->keys[s->n_keys].key, sizeof grown->key, "%s", key);
  s->keys[s->n_keys++].tenant = (size_t)t;
  return 0;
}

int srv_tenants_load(srv *s) {
  if (!s->cfg.api_keys) return tenant_index(s, SRV_DEFAULT_TENANT) < 0 ? -1 : 0;
  FILE *f = fopen(s->cfg.api_keys, "r");
  if (!f) {
    fprintf(stderr, "samepage serve: --api-keys %s: cannot read it\n", s->cfg.api_keys);
    return -1;
  }
  char line[1024];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    if (!strchr(line, '\n') && !feof(f)) {
      fprintf(stderr, "samepage serve: %s:%d: line too long\n", s->cfg.api_keys, lineno);
      rc = -1;
    } else {
      rc = add_line(s, line, lineno);
    }
  }
  fclose(f);
  if (!rc && s->n_keys == 0) {
    fprintf(stderr, "samepage serve: --api-keys %s: no keys in it\n", s->cfg.api_keys);
    rc = -1;
  }
  return rc;
}

void srv_tenants_free(srv *s) {
  free(s->tenants), free(s->keys);
  s->tenants = NULL, s->keys = NULL, s->n_tenants = s->n_keys = 0;
}

/* Compares every byte of both (no early exit on the first difference). */
static bool same_key(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned diff = (unsigned)(la ^ lb);
  for (size_t i = 0; i < la; i++) diff |= (unsigned)(unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0 && lb > 0;
}

int srv_tenant_auth(srv *s, const char *authorization, srv_tenant **out, srv_error *e) {
  if (!s->cfg.api_keys) { *out = &s->tenants[0]; return 0; }
  const char *key = NULL;
  if (authorization && !strncasecmp(authorization, "Bearer ", 7)) key = authorization + 7;
  while (key && *key == ' ') key++;
  if (!key || !*key)
    return srv_fail(e, 401, "invalid_request_error", "invalid_api_key", "",
                    "You didn't provide an API key: send the header Authorization: Bearer KEY");
  srv_key *found = NULL;
  for (size_t i = 0; i < s->n_keys; i++)
    if (same_key(key, s->keys[i].key)) found = &s->keys[i];
  if (!found) return srv_fail(e, 401, "invalid_request_error", "invalid_api_key", "", "Incorrect API key provided");
  *out = &s->tenants[found->tenant];
  return 0;
}

int srv_tenant_enter(srv *s, srv_tenant *t, srv_error *e) {
  pthread_mutex_lock(&s->lock);
  bool full = s->cfg.max_per_tenant > 0 && t->in_flight >= s->cfg.max_per_tenant;
  if (!full) t->in_flight++;
  pthread_mutex_unlock(&s->lock);
  if (full)
    return srv_fail(e, 429, "rate_limit_exceeded", "rate_limit_exceeded", "",
                    "tenant %s has %d requests in flight (--max-concurrent-per-tenant); retry later", t->name,
                    s->cfg.max_per_tenant);
  return 0;
}

void srv_tenant_leave(srv *s, srv_tenant *t) {
  pthread_mutex_lock(&s->lock);
  if (t->in_flight > 0) t->in_flight--;
  pthread_mutex_unlock(&s->lock);
}
