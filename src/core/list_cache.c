/*
 * list_cache.c: the last validated list of an actor (see list_cache.h).
 */
#include "core/list_cache.h"

#include <stdlib.h>
#include <string.h>

sp_list_key sp_list_key_make(const sp_validate_ctx *ctx, const sp_range *frozen, uint32_t n_frozen,
                             const sp_range *local, uint32_t n_local) {
  sp_list_key k;
  memset(&k, 0, sizeof k); /* padding too: keys are compared with memcmp */
  k.ctx = *ctx;
  k.n_frozen = n_frozen < SP_LIST_CACHE_RANGES ? n_frozen : SP_LIST_CACHE_RANGES;
  k.n_local = n_local < SP_LIST_CACHE_RANGES ? n_local : SP_LIST_CACHE_RANGES;
  if (k.n_frozen) memcpy(k.frozen, frozen, k.n_frozen * sizeof *frozen);
  if (k.n_local) memcpy(k.local, local, k.n_local * sizeof *local);
  return k;
}

const sp_cmd *sp_list_cache_find(const sp_list_cache *c, const sp_cmd *cmds, uint32_t count, const sp_list_key *key) {
  if (!c->full || c->count != count || memcmp(&c->key, key, sizeof *key)) return NULL;
  return memcmp(c->raw, cmds, (size_t)count * sizeof *cmds) ? NULL : c->validated;
}

static bool reserve(sp_list_cache *c, uint32_t count) {
  if (count <= c->cap) return true;
  sp_cmd *raw = realloc(c->raw, (size_t)count * sizeof *raw);
  if (raw) c->raw = raw;
  sp_cmd *validated = raw ? realloc(c->validated, (size_t)count * sizeof *validated) : NULL;
  if (validated) c->validated = validated;
  if (!raw || !validated) return false;
  c->cap = count;
  return true;
}

bool sp_list_cache_begin(sp_list_cache *c, const sp_cmd *cmds, uint32_t count) {
  c->full = false;
  c->generation++;
  if (!reserve(c, count)) return false;
  if (count) memcpy(c->raw, cmds, (size_t)count * sizeof *cmds);
  c->count = count;
  return true;
}

void sp_list_cache_commit(sp_list_cache *c, const sp_cmd *validated, const sp_list_key *key) {
  if (c->count) memcpy(c->validated, validated, (size_t)c->count * sizeof *validated);
  c->key = *key;
  c->full = true;
}

void sp_list_cache_free(sp_list_cache *c) {
  free(c->raw);
  free(c->validated);
  memset(c, 0, sizeof *c);
}
