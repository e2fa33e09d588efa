/*
 * batcher.h: cross-actor batching. Lists that actors submit within a short
 * window run together, as one batch per shape, on a backend with the
 * batching layer (backend.h, layer 4: the CPU's). Validation stays per
 * actor and happens before a list reaches the batcher; the backend
 * promises that a batched list reads and writes only its own actor's
 * memory and gets the bits it would get alone.
 *
 * The window bounds what a list may wait for company: the leader of a
 * round waits until every recently active actor has queued a list, or the
 * window passes. A lone actor (the only active one) never waits.
 */
#ifndef SP_RUNTIME_BATCHER_H
#define SP_RUNTIME_BATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct sp_batcher sp_batcher;

typedef struct sp_batcher_stats {
  uint64_t rounds;        /* rounds run */
  uint64_t lists;         /* lists run through the batcher */
  uint64_t batches;       /* groups of two or more lists run as one */
  uint64_t batched_lists; /* lists that ran in such a group */
  uint64_t largest_round; /* most lists one round took */
  double wait_ms;         /* time leaders spent waiting for company */
} sp_batcher_stats;

/* A batcher over backend be (borrowed; it outlives the batcher), waiting
 * at most window_us microseconds for company. */
sp_error_t *sp_batcher_new(sp_backend *be, uint32_t window_us, sp_batcher **out);
void sp_batcher_free(sp_batcher *b);

/* Runs one validated list of binding, alone or in a batch, and returns
 * once it has run (and been waited for): its own error, or NULL. Called
 * from any thread, one list per binding at a time. weight_keys: NULL or
 * one per command (sp_batch_item), borrowed until the call returns. */
sp_error_t *sp_batcher_run(sp_batcher *b, void *binding, const sp_cmd *cmds, uint32_t count, bool same,
                           const uint64_t *weight_keys);

/* Whether a list submitted now will likely have company (the previous
 * round ran several, or lists are queued): worth proving its weights'
 * identities (a lone actor skips that cost; a wrong guess only costs the
 * sharing of one round, never correctness). */
bool sp_batcher_expects_company(sp_batcher *b);

/* Whether a list joins rounds (decode-like: it has products, each of one
 * activation row); any other runs at once, on its own. */
bool sp_batcher_takes(const sp_cmd *cmds, uint32_t count);

void sp_batcher_stats_get(sp_batcher *b, sp_batcher_stats *out);

#endif
