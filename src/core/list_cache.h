/*
 * list_cache.h: the last list an actor validated, so that a repeated list
 * (every decode step of an LLM sends the same bytes; positions live in
 * guest memory) skips validation.
 *
 * Validation is a pure function of the list's bytes and of what the
 * validator checks them against: the committed size, where the list itself
 * lies, the command limit, the caps on a list's work, and the actor's
 * frozen and device-local ranges.
 * The cache keys on all of them, compares the guest's bytes exactly as
 * received (before strides are normalized), and hands back the normalized
 * copy it validated. Anything different is validated from scratch.
 */
#ifndef SP_LIST_CACHE_H
#define SP_LIST_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/validate.h"

#define SP_LIST_CACHE_RANGES 16

/* What validation depends on besides the commands. */
typedef struct sp_list_key {
  sp_validate_ctx ctx;
  uint64_t max_flops, max_bytes; /* the actor's caps on a list's work (list_work.h) */
  sp_range frozen[SP_LIST_CACHE_RANGES], local[SP_LIST_CACHE_RANGES];
  uint32_t n_frozen, n_local;
} sp_list_key;

typedef struct sp_list_cache {
  sp_cmd *raw;       /* the list as received */
  sp_cmd *validated; /* the same list after validation (strides normalized) */
  uint32_t count, cap;
  bool full;         /* raw/validated hold a validated list */
  sp_list_key key;
  /* Bumped whenever validated may change (each begin), never 0: a list
   * found under the generation the runtime last submitted is byte for byte
   * that submitted list (the runtime's "same list as last time"). */
  uint64_t generation;
} sp_list_cache;

/* The key of a list checked against ctx and these ranges (n <= 16 each). */
sp_list_key sp_list_key_make(const sp_validate_ctx *ctx, const sp_range *frozen, uint32_t n_frozen,
                             const sp_range *local, uint32_t n_local);

/* The validated copy of cmds if the cache holds the same list under the
 * same key, else NULL. */
const sp_cmd *sp_list_cache_find(const sp_list_cache *c, const sp_cmd *cmds, uint32_t count, const sp_list_key *key);

/* Before validating cmds in place: keeps their raw bytes. False (and the
 * cache emptied) when out of memory; validation goes on without it. */
bool sp_list_cache_begin(sp_list_cache *c, const sp_cmd *cmds, uint32_t count);

/* After cmds (begun above) passed validation under key. */
void sp_list_cache_commit(sp_list_cache *c, const sp_cmd *validated, const sp_list_key *key);

void sp_list_cache_free(sp_list_cache *c);

#endif
