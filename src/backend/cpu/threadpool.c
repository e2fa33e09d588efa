/*
 * threadpool.c: persistent workers that claim tasks from one shared word.
 *
 * The whole state of the current job lives in one 64-bit atomic `state`:
 * its generation (24 bits), task count (20 bits) and next unclaimed task
 * (20 bits). A thread claims task i with a compare-and-swap from
 * (gen, n, i) to (gen, n, i + 1), so a worker that slept through a job can
 * never claim a task of the wrong job: the generation it saw no longer
 * matches. The job's function and argument are plain fields, written by
 * the caller before it publishes the new state and stable until every task
 * has reported to `done`; a successful claim orders the reads after the
 * publication, and the caller's wait on `done` orders the next job's writes
 * after the reads.
 *
 * Idle workers spin on `state` for SP_POOL_SPIN_NS, then sleep on `wake`.
 * The publisher signals only when `sleepers` is nonzero; the sleeper's
 * increment and the publisher's store are both sequentially consistent, so
 * at least one of the two sees the other (no lost wake-ups).
 */
#define _GNU_SOURCE
#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SP_POOL_MAX_THREADS 512u
#define SP_POOL_SPIN_NS 200000  /* how long an idle worker polls before sleeping */
#define SP_POOL_WAIT_SPINS 4096 /* pauses before a waiting caller starts yielding */
#define SP_POOL_IDX_BITS 20
#define SP_POOL_N_BITS 20
#define SP_POOL_BATCH_MAX ((1u << SP_POOL_IDX_BITS) - 1)
#define SP_POOL_GEN_MASK ((1u << 24) - 1)

struct sp_threadpool {
  alignas(64) _Atomic uint64_t state; /* gen | n | next task, see top */
  alignas(64) _Atomic uint32_t done;  /* tasks of the current job finished */
  _Atomic uint32_t sleepers;          /* workers blocked (or about to block) on wake */
  _Atomic bool stop;
  /* The current job; written under run_lock before `state` is published. */
  sp_task_fn fn;
  void *arg;
  uint32_t base; /* jobs over SP_POOL_BATCH_MAX tasks run in batches */
  uint32_t gen;  /* generation of the last job published (under run_lock) */
  unsigned n_threads;
  unsigned n_workers;
  unsigned n_started;
  pthread_t *workers;
  pthread_mutex_t lock; /* guards sleeping on wake */
  pthread_cond_t wake;
  pthread_mutex_t run_lock; /* one job in flight at a time */
};

static inline uint64_t pool_pack(uint32_t gen, uint32_t n, uint32_t idx) {
  return (uint64_t)gen << (SP_POOL_IDX_BITS + SP_POOL_N_BITS) | (uint64_t)n << SP_POOL_IDX_BITS |
         idx;
}
static inline uint32_t pool_gen(uint64_t s) {
  return (uint32_t)(s >> (SP_POOL_IDX_BITS + SP_POOL_N_BITS));
}
static inline uint32_t pool_n(uint64_t s) {
  return (uint32_t)(s >> SP_POOL_IDX_BITS) & SP_POOL_BATCH_MAX;
}
static inline uint32_t pool_idx(uint64_t s) { return (uint32_t)s & SP_POOL_BATCH_MAX; }

/* Tells the core we are busy-waiting (frees pipeline resources for a sibling). */
static inline void pool_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int64_t pool_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs tasks starting from the observed state `s` until none are
 * left; returns the last state seen (its generation is the newest job). */
static uint64_t pool_run_tasks(sp_threadpool *p, uint64_t s) {
  while (pool_idx(s) < pool_n(s)) {
    if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue; /* s now holds the current state */
    p->fn(p->arg, p->base + pool_idx(s));
    atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    s = atomic_load_explicit(&p->state, memory_order_acquire);
  }
  return s;
}

/* Waits until a job newer than generation `seen` is published, or stop. */
static uint64_t pool_wait_job(sp_threadpool *p, uint32_t seen) {
  int64_t start = pool_now_ns();
  for (unsigned i = 1;; i++) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    if (pool_gen(s) != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return s;
    pool_relax();
    if (i % 256 == 0 && pool_now_ns() - start > SP_POOL_SPIN_NS) break;
  }
  uint64_t s;
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  while (pool_gen(s = atomic_load(&p->state)) == seen && !atomic_load(&p->stop))
    pthread_cond_wait(&p->wake, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->lock);
  return s;
}

static void *pool_worker_main(void *arg) {
  sp_threadpool *p = arg;
  uint32_t seen = 0; /* the pool starts at generation 0 with no tasks */
  for (;;) {
    uint64_t s = pool_wait_job(p, seen);
    if (atomic_load(&p->stop)) return NULL;
    seen = pool_gen(pool_run_tasks(p, s));
  }
}

static void pool_wake_all(sp_threadpool *p) {
  pthread_mutex_lock(&p->lock);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
}

static void pool_stop_workers(sp_threadpool *p) {
  atomic_store(&p->stop, true);
  pool_wake_all(p);
  for (unsigned i = 0; i < p->n_started; i++) pthread_join(p->workers[i], NULL);
  p->n_started = 0;
}

static unsigned pool_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1u : (unsigned)n;
}

sp_error_t *sp_threadpool_new(unsigned threads, sp_threadpool **out) {
  if (threads == 0) threads = pool_default_threads();
  if (threads > SP_POOL_MAX_THREADS) threads = SP_POOL_MAX_THREADS;
  sp_threadpool *p = aligned_alloc(64, sizeof *p);
  if (!p) return sp_error_new("threadpool: out of memory");
  memset(p, 0, sizeof *p);
  atomic_init(&p->state, pool_pack(0, 0, 0));
  atomic_init(&p->done, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->stop, false);
  p->n_threads = threads;
  p->n_workers = threads - 1;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_mutex_init(&p->run_lock, NULL);
  p->workers = calloc(p->n_workers ? p->n_workers : 1, sizeof *p->workers);
  if (!p->workers) {
    sp_threadpool_free(p);
    return sp_error_new("threadpool: out of memory");
  }
  for (unsigned i = 0; i < p->n_workers; i++) {
    int rc = pthread_create(&p->workers[i], NULL, pool_worker_main, p);
    if (rc) {
      sp_threadpool_free(p);
      return sp_error_new("threadpool: cannot start worker %u of %u: %s", i + 1, threads - 1,
                          strerror(rc));
    }
    p->n_started++;
  }
  *out = p;
  return NULL;
}

void sp_threadpool_free(sp_threadpool *pool) {
  if (!pool) return;
  pool_stop_workers(pool);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->run_lock);
  free(pool->workers);
  free(pool);
}

unsigned sp_threadpool_threads(const sp_threadpool *pool) { return pool->n_threads; }

/* Publishes one batch of at most SP_POOL_BATCH_MAX tasks, helps, and waits. */
static void pool_run_batch(sp_threadpool *p, uint32_t base, uint32_t n, sp_task_fn fn,
                           void *arg) {
  p->fn = fn;
  p->arg = arg;
  p->base = base;
  p->gen = (p->gen + 1) & SP_POOL_GEN_MASK;
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  uint64_t s = pool_pack(p->gen, n, 0);
  atomic_store(&p->state, s); /* seq_cst: pairs with the sleepers increment */
  if (atomic_load(&p->sleepers)) pool_wake_all(p);
  pool_run_tasks(p, s);
  for (unsigned i = 0; atomic_load_explicit(&p->done, memory_order_acquire) != n; i++) {
    if (i < SP_POOL_WAIT_SPINS)
      pool_relax();
    else
      sched_yield(); /* a worker holding a task was descheduled */
  }
}

void sp_threadpool_run(sp_threadpool *pool, uint32_t n_tasks, sp_task_fn fn, void *arg) {
  if (n_tasks == 0) return;
  if (n_tasks == 1 || pool->n_workers == 0 || pthread_mutex_trylock(&pool->run_lock) != 0) {
    for (uint32_t i = 0; i < n_tasks; i++) fn(arg, i);
    return;
  }
  for (uint32_t base = 0; base < n_tasks; base += SP_POOL_BATCH_MAX) {
    uint32_t n = n_tasks - base < SP_POOL_BATCH_MAX ? n_tasks - base : SP_POOL_BATCH_MAX;
    pool_run_batch(pool, base, n, fn, arg);
  }
  pthread_mutex_unlock(&pool->run_lock);
}
