/*
 * actor_limits.c: wall-clock and CPU-time limits for guests (see actor_limits.h).
 */
#include "runtime/actor_limits.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime_impl.h"

/* Far enough that an engine ticking every SP_TICK_MS never gets there. */
#define SP_NO_DEADLINE_TICKS ((uint64_t)1 << 50)

struct sp_ticker {
  const wasm_engine_t *engine;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stop;
  sp_actor_t *watched; /* running entries with an exit grace (lock) */
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

/* Ends the process: `actor` is still inside a host call exit_grace_ms past
 * its deadline. Only async-signal-safe calls: another thread may hold any
 * lock (stdio's, the allocator's). */
static void end_process(const sp_actor_t *actor) {
  char msg[320];
  int n = snprintf(msg, sizeof msg,
                   "samepage: guest exceeded its %u ms time limit and is still inside a host call %u ms "
                   "later (a blocking read, write or poll, or a kernel, that cannot be interrupted); "
                   "ending the process (exit status 124)\n",
                   actor->limits.timeout_ms, actor->limits.exit_grace_ms);
  if (n > 0) {
    ssize_t written = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)written; /* nothing more can be done */
  }
  _exit(124);
}

/* Called by the ticker, its lock held, after every tick. */
static void check_overruns(sp_ticker *t) {
  if (!t->watched) return;
  uint64_t now = now_ns();
  for (const sp_actor_t *a = t->watched; a; a = a->limits.watch_next)
    if (a->limits.deadline_ns != UINT64_MAX &&
        now >= a->limits.deadline_ns + (uint64_t)a->limits.exit_grace_ms * 1000000u)
      end_process(a);
}

static void *ticker_main(void *arg) {
  sp_ticker *t = arg;
  pthread_mutex_lock(&t->lock);
  /* Ticks on a fixed schedule (each one SP_TICK_MS after the previous one
   * was due, not after it happened), so late wake-ups do not add up; after
   * a long stall (the process stopped) the schedule restarts from now. */
  uint64_t due = now_ns();
  while (!t->stop) {
    due += (uint64_t)SP_TICK_MS * 1000000u;
    uint64_t now = now_ns();
    if (now > due + 100 * (uint64_t)SP_TICK_MS * 1000000u) due = now;
    struct timespec until = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
    pthread_cond_timedwait(&t->wake, &t->lock, &until);
    if (t->stop) break;
    wasmtime_engine_increment_epoch(t->engine);
    check_overruns(t);
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
      pthread_condattr_t attr; /* ticks are due on CLOCK_MONOTONIC */
      pthread_condattr_init(&attr);
      pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
      pthread_cond_init(&t->wake, &attr);
      pthread_condattr_destroy(&attr);
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

/* Ticks until the next check (at least 1), given the clock reads `now`:
 * half of those left until `deadline`, so a ticker that runs late (a
 * loaded machine) costs a tick or two at the deadline, not a fraction of
 * the whole limit. A thread's CPU clock runs no faster than the wall
 * clock, so wall-clock ticks never overshoot a CPU deadline. */
static uint64_t ticks_until(uint64_t deadline, uint64_t now) {
  uint64_t ticks = (deadline - now) / ((uint64_t)SP_TICK_MS * 1000000u) / 2;
  return ticks ? ticks : 1;
}

/* Called by Wasmtime, on the guest's thread, when a running guest reaches
 * its epoch deadline. */
static wasmtime_error_t *on_deadline(wasmtime_context_t *context, void *data, uint64_t *delta,
                                     wasmtime_update_deadline_kind_t *kind) {
  sp_actor_t *actor = data;
  sp_actor_limits *lim = &actor->limits;
  *kind = WASMTIME_UPDATE_DEADLINE_CONTINUE;
  *delta = SP_NO_DEADLINE_TICKS;
  char msg[96];
  if (lim->timeout_ms) {
    uint64_t now = now_ns();
    if (now >= lim->deadline_ns) {
      snprintf(msg, sizeof msg, "guest exceeded its %u ms time limit", lim->timeout_ms);
      lim->fired = true;
      return wasmtime_error_new(msg);
    }
    *delta = ticks_until(lim->deadline_ns, now);
  }
  if (lim->cpu_timeout_ms) {
    uint64_t cpu = thread_cpu_ns();
    if (cpu >= lim->cpu_deadline_ns) {
      snprintf(msg, sizeof msg, "guest exceeded its %u ms CPU time limit", lim->cpu_timeout_ms);
      lim->fired = true;
      return wasmtime_error_new(msg);
    }
    uint64_t ticks = ticks_until(lim->cpu_deadline_ns, cpu);
    if (ticks < *delta) *delta = ticks;
  }
  return NULL;
}

/* Adds the actor to (or removes it from) the ticker's running entries. */
static void watch(sp_actor_t *actor, bool on) {
  sp_ticker *t = actor->rt->ticker;
  sp_actor_limits *lim = &actor->limits;
  if (!t || lim->watched == on) return;
  pthread_mutex_lock(&t->lock);
  if (on) {
    lim->watch_prev = NULL;
    lim->watch_next = t->watched;
    if (t->watched) t->watched->limits.watch_prev = actor;
    t->watched = actor;
  } else {
    if (lim->watch_prev) lim->watch_prev->limits.watch_next = lim->watch_next;
    else t->watched = lim->watch_next;
    if (lim->watch_next) lim->watch_next->limits.watch_prev = lim->watch_prev;
  }
  lim->watched = on;
  pthread_mutex_unlock(&t->lock);
}

void sp_limits_actor_init(sp_actor_t *actor, uint32_t timeout_ms, uint32_t cpu_timeout_ms,
                          uint32_t exit_grace_ms) {
  actor->limits.timeout_ms = timeout_ms;
  actor->limits.cpu_timeout_ms = cpu_timeout_ms;
  actor->limits.exit_grace_ms = timeout_ms ? exit_grace_ms : 0;
  actor->limits.deadline_ns = actor->limits.cpu_deadline_ns = UINT64_MAX;
  wasmtime_store_epoch_deadline_callback(actor->store, on_deadline, actor, NULL);
  if (timeout_ms || cpu_timeout_ms) ticker_start(actor->rt);
  sp_limits_arm(actor);
}

void sp_limits_arm(sp_actor_t *actor) {
  sp_actor_limits *lim = &actor->limits;
  lim->fired = false;
  if (lim->watched) watch(actor, false); /* the ticker reads deadline_ns */
  if (!lim->timeout_ms && !lim->cpu_timeout_ms) {
    wasmtime_context_set_epoch_deadline(actor->context, SP_NO_DEADLINE_TICKS);
    return;
  }
  if (lim->timeout_ms) lim->deadline_ns = now_ns() + (uint64_t)lim->timeout_ms * 1000000u;
  if (lim->cpu_timeout_ms) lim->cpu_deadline_ns = thread_cpu_ns() + (uint64_t)lim->cpu_timeout_ms * 1000000u;
  wasmtime_context_set_epoch_deadline(actor->context, 1);
  if (lim->exit_grace_ms) watch(actor, true);
}

void sp_limits_disarm(sp_actor_t *actor) {
  if (actor->limits.watched) watch(actor, false);
  actor->limits.deadline_ns = actor->limits.cpu_deadline_ns = UINT64_MAX;
}
