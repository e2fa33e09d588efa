/*
 * batcher.c: gathers the lists actors submit at about the same time and
 * runs those of one shape as one batch (batcher.h).
 *
 * Only decode-like lists (every product one activation row) take part; a
 * prompt's list runs at once, on its own, as without batching.
 *
 * Leader and followers. An actor's thread, its list validated, queues a
 * request. If no round is in progress it leads one: it waits, at most the
 * window, until every active actor has queued a request (active: it
 * submitted within the last ACTIVE_MS plus two rounds' time; a lone actor
 * is the only active one, so it never waits), takes every
 * queued request, groups them by shape and runs each group (one
 * submit_batch, or a plain submit for a group of one). Requests queued
 * meanwhile wait for the round to end; then one of them leads the next.
 * Every thread returns once its own request has run.
 */
#include "runtime/batcher.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"

#define ROUND_MAX 1024 /* requests one round takes; later ones wait for the next */
#define ACTIVE_MAX 1024 /* actors tracked as active (the oldest is forgotten first) */
#define ACTIVE_MS 20.0  /* an actor silent for this long (plus two rounds) is not waited for */

typedef struct active_actor {
  void *binding;
  double last_ms; /* its last submit (sp_now_ms) */
} active_actor;

typedef struct request {
  sp_batch_item item;
  uint64_t shape;
  bool done;
  struct request *next;
} request;

struct sp_batcher {
  sp_backend *be;
  uint64_t window_ns;
  pthread_mutex_t mu;
  pthread_cond_t arrived, finished;
  request *head, *tail;
  uint32_t queued;
  bool leading;
  active_actor active[ACTIVE_MAX];
  uint32_t n_active;
  double round_ms; /* how long the previous round ran */
  sp_batcher_stats stats;
};

/* What decides whether two lists may share a batch: their commands' ops,
 * and for a product its weight type and shape and its activation rows
 * (FNV-1a). Equal lists of other shapes only cost a backend some looking;
 * a collision is harmless (submit_batch runs any lists correctly). */
static uint64_t list_shape(const sp_cmd *cmds, uint32_t count) {
  uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
  MIX(count);
  for (uint32_t i = 0; i < count; i++) {
    const sp_cmd *c = &cmds[i];
    MIX(c->op);
    if (c->op != SP_OP_MATMUL) continue;
    MIX(c->src[0].dtype), MIX(c->src[0].ne[0]), MIX(c->src[0].ne[1]), MIX(c->src[1].ne[1]);
  }
#undef MIX
  return h;
}

sp_error_t *sp_batcher_new(sp_backend *be, uint32_t window_us, sp_batcher **out) {
  sp_batcher *b = calloc(1, sizeof *b);
  if (!b) return sp_error_new("batcher: out of memory");
  b->be = be;
  b->window_ns = (uint64_t)window_us * 1000;
  pthread_mutex_init(&b->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&b->arrived, &attr);
  pthread_condattr_destroy(&attr);
  pthread_cond_init(&b->finished, NULL);
  *out = b;
  return NULL;
}

void sp_batcher_free(sp_batcher *b) {
  if (!b) return;
  pthread_cond_destroy(&b->arrived);
  pthread_cond_destroy(&b->finished);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

static struct timespec deadline_after(uint64_t ns) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  uint64_t total = (uint64_t)t.tv_nsec + ns;
  t.tv_sec += (time_t)(total / 1000000000u);
  t.tv_nsec = (long)(total % 1000000000u);
  return t;
}

/* Runs the requests of one shape: several as batches, one alone. */
static void run_group(sp_batcher *b, request **group, uint32_t n) {
  if (n == 1) {
    sp_batch_item *it = &group[0]->item;
    it->err = sp_backend_submit(b->be, it->binding, it->cmds, it->count, it->same);
    if (!it->err) it->err = sp_backend_wait(b->be, it->binding);
    return;
  }
  sp_batch_item items[SP_BATCH_MAX];
  for (uint32_t start = 0; start < n; start += SP_BATCH_MAX) {
    uint32_t k = n - start < SP_BATCH_MAX ? n - start : SP_BATCH_MAX;
    for (uint32_t a = 0; a < k; a++) items[a] = group[start + a]->item;
    sp_backend_submit_batch(b->be, items, k);
    for (uint32_t a = 0; a < k; a++) group[start + a]->item.err = items[a].err;
  }
}

/* Runs one round's requests, grouped by shape, in the order they came. */
static void run_round(sp_batcher *b, request **round, uint32_t n, uint32_t *batches, uint32_t *batched) {
  static _Thread_local request *group[ROUND_MAX];
  bool taken[ROUND_MAX] = {false};
  for (uint32_t i = 0; i < n; i++) {
    if (taken[i]) continue;
    uint32_t k = 0;
    for (uint32_t j = i; j < n; j++)
      if (!taken[j] && round[j]->shape == round[i]->shape) group[k++] = round[j], taken[j] = true;
    run_group(b, group, k);
    if (k > 1) (*batches)++, *batched += k;
  }
}

/* Records that binding submits now (lock held). */
static void note_active(sp_batcher *b, void *binding, double now) {
  uint32_t oldest = 0;
  for (uint32_t i = 0; i < b->n_active; i++) {
    if (b->active[i].binding == binding) {
      b->active[i].last_ms = now;
      return;
    }
    if (b->active[i].last_ms < b->active[oldest].last_ms) oldest = i;
  }
  uint32_t at = b->n_active < ACTIVE_MAX ? b->n_active++ : oldest;
  b->active[at] = (active_actor){binding, now};
}

/* Actors that submitted recently: the requests a round waits for (lock
 * held). Those long silent are dropped. */
static uint32_t active_count(sp_batcher *b, double now) {
  double horizon = ACTIVE_MS + 2 * b->round_ms;
  uint32_t kept = 0;
  for (uint32_t i = 0; i < b->n_active; i++)
    if (now - b->active[i].last_ms <= horizon) b->active[kept++] = b->active[i];
  b->n_active = kept;
  return kept;
}

/* Called with the lock held by a thread whose request is queued and no
 * round in progress; returns with the lock held, the round done. */
static void lead_round(sp_batcher *b) {
  b->leading = true;
  double t0 = sp_now_ms();
  uint32_t expected = active_count(b, t0);
  if (b->queued < expected && b->window_ns) {
    struct timespec until = deadline_after(b->window_ns);
    while (b->queued < expected && pthread_cond_timedwait(&b->arrived, &b->mu, &until) == 0) {
    }
  }
  double t1 = sp_now_ms(), waited = t1 - t0;
  static _Thread_local request *round[ROUND_MAX];
  uint32_t n = 0;
  while (b->head && n < ROUND_MAX) {
    round[n++] = b->head;
    b->head = b->head->next;
  }
  if (!b->head) b->tail = NULL;
  b->queued -= n;
  pthread_mutex_unlock(&b->mu);
  uint32_t batches = 0, batched = 0;
  run_round(b, round, n, &batches, &batched);
  pthread_mutex_lock(&b->mu);
  for (uint32_t i = 0; i < n; i++) round[i]->done = true;
  b->round_ms = sp_now_ms() - t1;
  b->stats.rounds++, b->stats.lists += n, b->stats.batches += batches, b->stats.batched_lists += batched;
  if (n > b->stats.largest_round) b->stats.largest_round = n;
  b->stats.wait_ms += waited;
  b->leading = false;
  pthread_cond_broadcast(&b->finished);
}

bool sp_batcher_expects_company(sp_batcher *b) {
  pthread_mutex_lock(&b->mu);
  bool likely = b->n_active > 1 || b->queued > 0 || b->leading;
  pthread_mutex_unlock(&b->mu);
  return likely;
}

/* Whether a list is worth batching: it has products, each of one
 * activation row (a decode step). A prompt's products already meet many
 * rows; its list runs on its own, beside the rounds, as without batching,
 * so no decode step waits behind a long prefill. */
bool sp_batcher_takes(const sp_cmd *cmds, uint32_t count) {
  bool products = false;
  for (uint32_t i = 0; i < count; i++) {
    if (cmds[i].op != SP_OP_MATMUL) continue;
    if (cmds[i].src[1].ne[1] != 1 || cmds[i].src[1].ne[2] != 1 || cmds[i].src[1].ne[3] != 1) return false;
    products = true;
  }
  return products;
}

sp_error_t *sp_batcher_run(sp_batcher *b, void *binding, const sp_cmd *cmds, uint32_t count, bool same,
                           const uint64_t *weight_keys) {
  if (!sp_batcher_takes(cmds, count)) {
    sp_error_t *err = sp_backend_submit(b->be, binding, cmds, count, same);
    return err ? err : sp_backend_wait(b->be, binding);
  }
  request r = {.item = {.binding = binding, .cmds = cmds, .count = count, .same = same, .weight_keys = weight_keys},
               .shape = list_shape(cmds, count)};
  pthread_mutex_lock(&b->mu);
  note_active(b, binding, sp_now_ms());
  if (b->tail) b->tail->next = &r;
  else b->head = &r;
  b->tail = &r;
  b->queued++;
  pthread_cond_signal(&b->arrived);
  while (!r.done) {
    if (!b->leading) lead_round(b);
    else pthread_cond_wait(&b->finished, &b->mu);
  }
  pthread_mutex_unlock(&b->mu);
  return r.item.err;
}

void sp_batcher_stats_get(sp_batcher *b, sp_batcher_stats *out) {
  pthread_mutex_lock(&b->mu);
  *out = b->stats;
  pthread_mutex_unlock(&b->mu);
}
