/* template.c: shared system prompts, one snapshot each (template.h). */
#include "server/template.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file_open.h"

static uint64_t hash_of(const int32_t *ids, uint32_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over the ids' bytes */
  const uint8_t *p = (const uint8_t *)ids;
  for (size_t i = 0; i < (size_t)n * 4; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* DIR/templates/<tenant> into buf. */
static void tenant_dir(const srv *s, const char *tenant, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/templates/%s", s->cfg.sessions_dir, tenant);
}

void srv_template_path(const srv *s, const srv_template *t, const char *ext, char *buf, size_t cap) {
  char dir[4096];
  tenant_dir(s, t->tenant, dir, sizeof dir);
  snprintf(buf, cap, "%s/%016llx.%s", dir, (unsigned long long)t->hash, ext);
}

srv_template *srv_template_find(srv *s, const char *tenant, const int32_t *prefix, uint32_t n) {
  uint64_t h = hash_of(prefix, n);
  for (size_t i = 0; i < s->n_templates; i++) {
    srv_template *t = s->templates[i];
    if (t->hash != h || t->n != n || strcmp(t->tenant, tenant) || memcmp(t->tokens, prefix, (size_t)n * 4)) continue;
    t->used = ++s->clock;
    return t;
  }
  return NULL;
}

/* Deletes template i (its files and its entry). */
static void drop(srv *s, size_t i) {
  srv_template *t = s->templates[i];
  char path[4200];
  srv_template_path(s, t, "tokens", path, sizeof path);
  unlink(path); /* the tokens first: a snapshot without them is a leftover, swept at start */
  srv_template_path(s, t, "snap", path, sizeof path);
  unlink(path);
  s->templates[i] = s->templates[--s->n_templates];
  free(t->tokens), free(t);
  srv_metrics_template_eviction(&s->metrics);
}

/* Keeps the tenant's templates within --max-templates (LRU out). */
static void bound(srv *s, const char *tenant) {
  for (;;) {
    size_t count = 0, lru = 0;
    for (size_t i = 0; i < s->n_templates; i++) {
      if (strcmp(s->templates[i]->tenant, tenant)) continue;
      if (!count++ || s->templates[i]->used < s->templates[lru]->used) lru = i;
    }
    if (count <= (size_t)s->cfg.max_templates) return;
    drop(s, lru);
  }
}

static int push(srv *s, srv_template *t) {
  srv_template **grown = realloc(s->templates, (s->n_templates + 1) * sizeof *grown);
  if (!grown) return -1;
  s->templates = grown;
  s->templates[s->n_templates++] = t;
  return 0;
}

static srv_template *template_new(const char *tenant, const int32_t *prefix, uint32_t n) {
  srv_template *t = calloc(1, sizeof *t);
  int32_t *ids = malloc((size_t)n * 4);
  if (!t || !ids) { free(t), free(ids); return NULL; }
  snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
  memcpy(ids, prefix, (size_t)n * 4);
  t->tokens = ids, t->n = n, t->hash = hash_of(prefix, n);
  return t;
}

/* Writes the token ids of t beside its snapshot (temporary, renamed). */
static int write_tokens(const srv *s, const srv_template *t) {
  char path[4200], tmp[4300];
  srv_template_path(s, t, "tokens", path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  bool ok = f && fwrite(t->tokens, 4, t->n, f) == t->n;
  if (f && fclose(f)) ok = false;
  if (!ok || rename(tmp, path)) { unlink(tmp); return -1; }
  return 0;
}

int srv_template_add(srv *s, const char *tenant, sp_actor_t *a, const int32_t *prefix, uint32_t n) {
  if (!s->cfg.sessions_dir || s->cfg.max_templates <= 0) return -1;
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/templates", s->cfg.sessions_dir);
  mkdir(dir, 0700);
  tenant_dir(s, tenant, dir, sizeof dir);
  mkdir(dir, 0700);
  srv_template *t = template_new(tenant, prefix, n);
  if (!t) return -1;
  srv_template_path(s, t, "snap", path, sizeof path);
  sp_error_t *err = sp_actor_snapshot(a, path, &(sp_snapshot_options){0}, NULL);
  if (!err && write_tokens(s, t)) err = sp_error_new("cannot write %s's token ids", path);
  if (!err && push(s, t)) err = sp_error_new("out of memory");
  if (err) {
    fprintf(stderr, "samepage serve: template not kept: %s\n", sp_error_message(err));
    sp_error_free(err);
    srv_template_path(s, t, "tokens", path, sizeof path), unlink(path);
    srv_template_path(s, t, "snap", path, sizeof path), unlink(path);
    free(t->tokens), free(t);
    return -1;
  }
  t->used = ++s->clock;
  bound(s, tenant);
  return 0;
}

/* Loads DIR/templates/<tenant>/<hash>.tokens whose .snap is there. */
static void load_one(srv *s, const char *tenant, const char *dir, const char *name) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  uint8_t *data = NULL;
  size_t len = 0;
  sp_error_t *err = sp_read_regular(path, SP_OPEN_NONEMPTY, &data, &len);
  size_t stem = strlen(name) - strlen(".tokens");
  char snap[4400];
  snprintf(snap, sizeof snap, "%s/%.*s.snap", dir, (int)stem, name);
  struct stat st;
  srv_template *t = !err && len % 4 == 0 && len / 4 < (1u << 24) && !stat(snap, &st)
                        ? template_new(tenant, (const int32_t *)data, (uint32_t)(len / 4)) : NULL;
  char want[32];
  if (t) snprintf(want, sizeof want, "%016llx.tokens", (unsigned long long)t->hash);
  if (!t || strcmp(want, name) || push(s, t)) {
    if (t) free(t->tokens), free(t);
    unlink(path), unlink(snap); /* not a whole template */
  } else {
    t->used = 0; /* loaded: before any used since start */
  }
  sp_error_free(err);
  free(data);
}

static bool ends_with(const char *name, const char *ext) {
  size_t n = strlen(name), e = strlen(ext);
  return n > e && !strcmp(name + n - e, ext);
}

/* A snapshot without its tokens, or a temporary: a crash's leftover. */
static void sweep(const char *dir, DIR *d) {
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || ends_with(e->d_name, ".tokens")) continue;
    char path[4400], tokens[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t stem = ends_with(e->d_name, ".snap") ? strlen(e->d_name) - 5 : 0;
    snprintf(tokens, sizeof tokens, "%s/%.*s.tokens", dir, (int)stem, e->d_name);
    if (!stem || access(tokens, F_OK)) unlink(path);
  }
}

void srv_templates_load(srv *s) {
  if (!s->cfg.sessions_dir) return;
  for (size_t i = 0; i < s->n_tenants; i++) {
    char dir[4096];
    tenant_dir(s, s->tenants[i].name, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) continue;
    for (struct dirent *e; (e = readdir(d));)
      if (ends_with(e->d_name, ".tokens")) load_one(s, s->tenants[i].name, dir, e->d_name);
    rewinddir(d);
    sweep(dir, d);
    closedir(d);
    bound(s, s->tenants[i].name);
  }
  if (s->n_templates) fprintf(stderr, "samepage serve: %zu shared system-prompt templates loaded\n", s->n_templates);
}

void srv_templates_free(srv *s) {
  for (size_t i = 0; i < s->n_templates; i++) free(s->templates[i]->tokens), free(s->templates[i]);
  free(s->templates);
  s->templates = NULL, s->n_templates = 0;
}
