/* parallel.c: see parallel.h. */
#include "core/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/hash64.h"

#define MAX_THREADS 8
#define PARALLEL_BYTES ((size_t)8 << 20) /* below this, one thread */

typedef struct pool {
  size_t n;
  void (*fn)(void *ctx, size_t i);
  void *ctx;
  atomic_size_t next;
} pool;

static void *worker(void *arg) {
  pool *p = arg;
  for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;) p->fn(p->ctx, i);
  return NULL;
}

void sp_parallel_for(size_t n, size_t bytes, void (*fn)(void *ctx, size_t i), void *ctx) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  size_t threads = bytes < PARALLEL_BYTES || cores < 2 ? 1 : (size_t)cores;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads > n) threads = n;
  pool p = {n, fn, ctx, 0};
  pthread_t tid[MAX_THREADS];
  size_t started = 0;
  while (started + 1 < threads && !pthread_create(&tid[started], NULL, worker, &p)) started++;
  worker(&p); /* the calling thread works too (alone, if no thread started) */
  for (size_t i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static void hash_one(void *ctx, size_t i) {
  sp_hash_job *job = (sp_hash_job *)ctx + i;
  job->hash = sp_hash64_of(job->data, job->len);
}

void sp_hash64_many(sp_hash_job *jobs, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += jobs[i].len;
  sp_parallel_for(n, total, hash_one, jobs);
}

#define COPY_PIECE ((size_t)2 << 20)

typedef struct copy_job {
  uint8_t *dst;
  const uint8_t *src;
  size_t len;
} copy_job;

static void copy_piece(void *ctx, size_t i) {
  const copy_job *c = ctx;
  size_t at = i * COPY_PIECE, len = c->len - at < COPY_PIECE ? c->len - at : COPY_PIECE;
  memcpy(c->dst + at, c->src + at, len);
}

void sp_memcpy_parallel(void *dst, const void *src, size_t len) {
  copy_job c = {dst, src, len};
  sp_parallel_for((len + COPY_PIECE - 1) / COPY_PIECE, len, copy_piece, &c);
}
