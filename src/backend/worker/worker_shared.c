/*
 * worker_shared.c: device memory shared across worker processes (process
 * isolation, docs/CUDA.md). The first worker to freeze a model's bytes
 * exports its device copy as a file descriptor, and each repacked layout
 * it derives from it; the host keeps one descriptor for each and hands
 * them to every later worker that freezes the same bytes, which then maps
 * that memory instead of making its own. A descriptor held here keeps the
 * memory alive after the worker that made it ends.
 */
#include <stdlib.h>
#include <unistd.h>

#include "backend/worker/proxy.h"

/* The shared copy of identity (len UINT64_MAX: of any length). */
shared_copy *sp_shared_find(proxy *p, uint64_t identity, uint64_t len) {
  for (uint32_t i = 0; i < p->n_shared; i++)
    if (p->shared[i].identity == identity && (len == UINT64_MAX || p->shared[i].len == len)) return &p->shared[i];
  return NULL;
}

static bool holds(const conn *c, uint64_t identity, uint64_t len) {
  for (uint32_t i = 0; i < c->n_held; i++)
    if (c->held[i][0] == identity && c->held[i][1] == len) return true;
  return false;
}

/* After a freeze of identity by c: c holds the shared copy, which is the
 * one it was given, or the one it made and exported (exported >= 0). */
void sp_shared_note(proxy *p, conn *c, uint64_t identity, uint64_t len, int exported) {
  pthread_mutex_lock(&p->mu);
  shared_copy *s = sp_shared_find(p, identity, len);
  if (!s && exported >= 0 && p->n_shared < MAX_SHARED) {
    s = &p->shared[p->n_shared++];
    *s = (shared_copy){identity, len, exported, 0};
    exported = -1;
  }
  if (s && !holds(c, identity, len) && c->n_held < MAX_HELD) {
    c->held[c->n_held][0] = identity, c->held[c->n_held][1] = len, c->n_held++;
    s->holders++;
  }
  pthread_mutex_unlock(&p->mu);
  if (exported >= 0) close(exported); /* another worker's copy is the shared one already */
}

/* c is going: its shared copies lose a holder; one nobody holds is closed
 * (its memory goes when no process maps it any more). */
void sp_shared_drop(proxy *p, conn *c) {
  pthread_mutex_lock(&p->mu);
  for (uint32_t h = 0; h < c->n_held; h++) {
    shared_copy *s = sp_shared_find(p, c->held[h][0], c->held[h][1]);
    if (!s || --s->holders) continue;
    for (uint32_t j = 0; j < p->n_derived;) { /* its layouts go with it */
      if (p->derived[j].desc.identity != s->identity) {
        j++;
        continue;
      }
      close(p->derived[j].fd);
      p->derived[j] = p->derived[--p->n_derived];
    }
    close(s->fd);
    *s = p->shared[--p->n_shared];
  }
  c->n_held = 0;
  pthread_mutex_unlock(&p->mu);
}

/* Hands c the layouts other workers derived from identity's copy, which
 * it now maps too: fewer to make (and hold) there. Best effort: a batch
 * that fails leaves c to make those layouts itself. */
void sp_shared_send_derived(proxy *p, conn *c, uint64_t identity) {
  pthread_mutex_lock(&p->mu); /* the descriptors stay open while they are sent */
  sp_derived_desc batch[SP_WIRE_MAX_FDS];
  int fds[SP_WIRE_MAX_FDS];
  for (uint32_t j = 0, n = 0; j <= p->n_derived; j++) {
    bool last = j == p->n_derived;
    if (!last && p->derived[j].desc.identity == identity)
      batch[n] = p->derived[j].desc, fds[n++] = p->derived[j].fd;
    if (!n || (n < SP_WIRE_MAX_FDS && !last)) continue;
    sp_wire_msg req = {.op = SP_WIRE_DERIVED, .n = n, .payload = n * sizeof *batch};
    pthread_mutex_lock(&c->mu);
    sp_error_free(sp_proxy_call_locked(c, &req, batch, fds, (int)n, NULL, NULL, 0));
    pthread_mutex_unlock(&c->mu);
    n = 0;
  }
  pthread_mutex_unlock(&p->mu);
}

static bool same_layout(const sp_derived_desc *a, const sp_derived_desc *b) {
  return a->identity == b->identity && a->offset == b->offset && a->dtype == b->dtype && a->k == b->k &&
         a->n == b->n && a->stride == b->stride && a->bytes == b->bytes;
}

/* Keeps the layouts a worker derived and exported, for later workers;
 * one already kept (another worker made it too) is not kept twice. */
void sp_shared_keep_derived(proxy *p, const sp_derived_desc *d, const int *fds, uint32_t n) {
  pthread_mutex_lock(&p->mu);
  for (uint32_t i = 0; i < n; i++) {
    /* dropped: a layout of a copy no longer shared, no room, or one kept already */
    bool drop = p->n_derived == MAX_DERIVED || !sp_shared_find(p, d[i].identity, UINT64_MAX);
    for (uint32_t j = 0; j < p->n_derived && !drop; j++) drop = same_layout(&p->derived[j].desc, &d[i]);
    if (drop) close(fds[i]);
    else p->derived[p->n_derived++] = (shared_derived){d[i], fds[i]};
  }
  pthread_mutex_unlock(&p->mu);
}

void sp_shared_free_all(proxy *p) {
  for (uint32_t i = 0; i < p->n_shared; i++) close(p->shared[i].fd);
  for (uint32_t i = 0; i < p->n_derived; i++) close(p->derived[i].fd);
  free(p->derived);
  p->derived = NULL, p->n_shared = p->n_derived = 0;
}
