/*
 * actor_limits.c: wall-clock and CPU-time limits for guests (see actor_limits.h).
 */
#include "actor_limits.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime_impl.h"

/* Far enough that an engine ticking every SP_TICK_MS never gets there. */
#define SP_NO_DEADLINE_TICKS ((uint64_t)1 << 50)

struct sp_ticker {
  const wasm_engine_t *engine;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stop;
};

/* Serializes lazy starts of every runtime's ticker. */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* CPU time of the calling thread: the guest's, when called from an entry
 * or from the epoch callback. */
static uint64_t thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static void *ticker_main(void *arg) {
  sp_ticker *t = arg;
  pthread_mutex_lock(&t->lock);
  while (!t->stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SP_TICK_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&t->wake, &t->lock, &until);
    if (!t->stop) wasmtime_engine_increment_epoch(t->engine);
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* Starts rt's ticker once. A failure to start leaves the limit unenforced
 * and says so on stderr (the guest still runs). */
static void ticker_start(sp_runtime_t *rt) {
  pthread_mutex_lock(&start_lock);
  if (!rt->ticker) {
    sp_ticker *t = calloc(1, sizeof *t);
    if (t) {
      t->engine = rt->engine;
      pthread_mutex_init(&t->lock, NULL);
      pthread_cond_init(&t->wake, NULL);
      if (pthread_create(&t->thread, NULL, ticker_main, t) == 0) {
        rt->ticker = t;
      } else {
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        free(t);
      }
    }
    if (!rt->ticker) fprintf(stderr, "samepage: cannot start the time-limit thread; limits are off\n");
  }
  pthread_mutex_unlock(&start_lock);
}

void sp_limits_runtime_stop(sp_runtime_t *rt) {
  sp_ticker *t = rt ? rt->ticker : NULL;
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  t->stop = true;
  pthread_cond_signal(&t->wake);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->wake);
  pthread_mutex_destroy(&t->lock);
  free(t);
  rt->ticker = NULL;
}

/* Ticks until `deadline` (at least 1), given the clock reads `now`. A
 * thread's CPU clock runs no faster than the wall clock, so wall-clock
 * ticks never overshoot a CPU deadline. */
static uint64_t ticks_until(uint64_t deadline, uint64_t now) {
  uint64_t ticks = (deadline - now) / ((uint64_t)SP_TICK_MS * 1000000u);
  return ticks ? ticks : 1;
}

/* Called by Wasmtime, on the guest's thread, when a running guest reaches
 * its epoch deadline. */
static wasmtime_error_t *on_deadline(wasmtime_context_t *context, void *data, uint64_t *delta,
                                     wasmtime_update_deadline_kind_t *kind) {
  sp_actor_t *actor = data;
  const sp_actor_limits *lim = &actor->limits;
  *kind = WASMTIME_UPDATE_DEADLINE_CONTINUE;
  *delta = SP_NO_DEADLINE_TICKS;
  char msg[96];
  if (lim->timeout_ms) {
    uint64_t now = now_ns();
    if (now >= lim->deadline_ns) {
      snprintf(msg, sizeof msg, "guest exceeded its %u ms time limit", lim->timeout_ms);
      return wasmtime_error_new(msg);
    }
    *delta = ticks_until(lim->deadline_ns, now);
  }
  if (lim->cpu_timeout_ms) {
    uint64_t cpu = thread_cpu_ns();
    if (cpu >= lim->cpu_deadline_ns) {
      snprintf(msg, sizeof msg, "guest exceeded its %u ms CPU time limit", lim->cpu_timeout_ms);
      return wasmtime_error_new(msg);
    }
    uint64_t ticks = ticks_until(lim->cpu_deadline_ns, cpu);
    if (ticks < *delta) *delta = ticks;
  }
  return NULL;
}

void sp_limits_actor_init(sp_actor_t *actor, uint32_t timeout_ms, uint32_t cpu_timeout_ms) {
  actor->limits.timeout_ms = timeout_ms;
  actor->limits.cpu_timeout_ms = cpu_timeout_ms;
  actor->limits.deadline_ns = actor->limits.cpu_deadline_ns = UINT64_MAX;
  wasmtime_store_epoch_deadline_callback(actor->store, on_deadline, actor, NULL);
  if (timeout_ms || cpu_timeout_ms) ticker_start(actor->rt);
  sp_limits_arm(actor);
}

void sp_limits_arm(sp_actor_t *actor) {
  sp_actor_limits *lim = &actor->limits;
  if (!lim->timeout_ms && !lim->cpu_timeout_ms) {
    wasmtime_context_set_epoch_deadline(actor->context, SP_NO_DEADLINE_TICKS);
    return;
  }
  if (lim->timeout_ms) lim->deadline_ns = now_ns() + (uint64_t)lim->timeout_ms * 1000000u;
  if (lim->cpu_timeout_ms) lim->cpu_deadline_ns = thread_cpu_ns() + (uint64_t)lim->cpu_timeout_ms * 1000000u;
  wasmtime_context_set_epoch_deadline(actor->context, 1);
}
