/*
 * spares.c: fresh actors kept ready (spares.h).
 */
#include "server/spares.h"

#include "core/error.h"
#include "server/engine.h"
#include "server/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct srv_spares {
  pthread_t thread;
  pthread_cond_t wake;  /* with srv.lock: a spare taken or dropped, stop */
  bool stop;
  bool failed;          /* the last actor could not be made: wait a second before the next */
  size_t target;        /* --spare-actors */
  sp_actor_t **ready;   /* [target] */
  size_t n_ready;
  size_t busy;          /* being made by the thread now (0 or 1) */
  uint64_t made;
};

size_t srv_spares_held(const srv *s) {
  const srv_spares *p = s->spares;
  return p ? p->n_ready + p->busy : 0;
}

/* Whether the thread may make one more spare: the pool is short and, with
 * --max-memory, the live conversations and the pool leave room for it. */
static bool room_for_one(srv *s) {
  srv_spares *p = s->spares;
  if (p->failed || p->n_ready + p->busy >= p->target) return false;
  return !s->cfg.max_memory ||
         srv_session_live_bytes(s) + (srv_spares_held(s) + 1) * s->fresh_bytes <= s->cfg.max_memory;
}

/* Waits on the pool's condition, a second at most after a failure. */
static void wait_for_work(srv *s) {
  srv_spares *p = s->spares;
  if (!p->failed) {
    pthread_cond_wait(&p->wake, &s->lock);
    return;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 1;
  if (pthread_cond_timedwait(&p->wake, &s->lock, &until) == ETIMEDOUT) p->failed = false;
}

/* The thread: makes actors outside the lock while the pool is short. */
static void *refill(void *arg) {
  srv *s = arg;
  srv_spares *p = s->spares;
  pthread_mutex_lock(&s->lock);
  while (!p->stop) {
    if (!room_for_one(s)) {
      wait_for_work(s);
      continue;
    }
    p->busy++;
    pthread_mutex_unlock(&s->lock);
    sp_actor_t *a = NULL;
    sp_error_t *err = srv_engine_actor(s, &a);
    pthread_mutex_lock(&s->lock);
    p->busy--;
    if (err) { /* said once per run of failures (out of device memory, say) */
      if (!p->failed) fprintf(stderr, "samepage serve: a spare actor: %s\n", sp_error_message(err));
      p->failed = true;
      sp_error_free(err);
      continue;
    }
    p->made++;
    p->ready[p->n_ready++] = a;
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

sp_actor_t *srv_spares_take(srv *s) {
  srv_spares *p = s->spares;
  if (!p || !p->n_ready) return NULL;
  pthread_cond_signal(&p->wake);
  return p->ready[--p->n_ready];
}

bool srv_spares_drop_one(srv *s) {
  srv_spares *p = s->spares;
  if (!p || !p->n_ready) return false;
  sp_actor_free(p->ready[--p->n_ready]);
  return true;
}

void srv_spares_gauges(const srv *s, srv_gauges *g) {
  const srv_spares *p = s->spares;
  if (!p) return;
  g->spares = p->n_ready, g->spares_made = p->made;
}

int srv_spares_start(srv *s) {
  if (s->cfg.spare_actors <= 0) return 0;
  srv_spares *p = calloc(1, sizeof *p);
  if (p) p->ready = calloc((size_t)s->cfg.spare_actors, sizeof *p->ready);
  bool ok = p && p->ready && !pthread_cond_init(&p->wake, NULL);
  if (ok) {
    p->target = (size_t)s->cfg.spare_actors;
    s->spares = p;
    ok = !pthread_create(&p->thread, NULL, refill, s);
    if (!ok) pthread_cond_destroy(&p->wake), s->spares = NULL;
  }
  if (!ok) {
    fprintf(stderr, "samepage serve: --spare-actors: cannot start the thread that makes them\n");
    if (p) free(p->ready);
    free(p);
    return -1;
  }
  return 0;
}

void srv_spares_stop(srv *s) {
  srv_spares *p = s->spares;
  if (!p) return;
  pthread_mutex_lock(&s->lock);
  p->stop = true;
  pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(p->thread, NULL);
  pthread_cond_destroy(&p->wake);
  for (size_t i = 0; i < p->n_ready; i++) sp_actor_free(p->ready[i]);
  s->spares = NULL;
  free(p->ready), free(p);
}
