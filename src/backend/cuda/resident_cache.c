/* resident_cache.c: shared, refcounted device copies (resident_cache.h). */
#include "backend/cuda/resident_cache.h"

#include <stdio.h>
#include <stdlib.h>

void sp_resident_cache_init(sp_resident_cache *c, sp_resident_device device, pthread_mutex_t *mu,
                            sp_residency_stats *stats) {
  *c = (sp_resident_cache){.device = device, .mu = mu, .stats = stats};
}

void sp_resident_cache_deinit(sp_resident_cache *c) {
  free(c->published);
  c->published = NULL;
  c->n = c->cap = 0;
}

static void warn_short(uint64_t len) {
  fprintf(stderr, "samepage: cuda: no device memory for a %.1f MiB resident copy; reading it from host memory "
          "instead\n", len / 1048576.0);
}

/* ---- the table of published copies (under c->mu) ---- */

static sp_resident_copy *find_locked(const sp_resident_cache *c, uint64_t identity, uint64_t len) {
  for (size_t i = 0; i < c->n; i++)
    if (c->published[i]->identity == identity && c->published[i]->len == len) return c->published[i];
  return NULL;
}

static void withdraw_locked(sp_resident_cache *c, sp_resident_copy *copy) {
  for (size_t i = 0; i < c->n; i++)
    if (c->published[i] == copy) {
      c->published[i] = c->published[--c->n];
      break;
    }
  copy->identity = 0;
}

static void take_locked(sp_resident_cache *c, sp_resident_copy *copy) {
  copy->refs++;
  c->stats->shared_hits++;
  c->stats->shared_bytes += copy->len;
}

/* ---- copies ---- */

static sp_resident_copy *acquire(sp_resident_cache *c, uint64_t identity, uint64_t len) {
  pthread_mutex_lock(c->mu);
  sp_resident_copy *copy = find_locked(c, identity, len);
  if (copy) take_locked(c, copy);
  pthread_mutex_unlock(c->mu);
  return copy;
}

/* A private copy with undefined bytes, or NULL when memory is short. */
static sp_resident_copy *new_copy(sp_resident_cache *c, uint64_t len) {
  sp_resident_copy *copy = calloc(1, sizeof *copy);
  if (copy) copy->dev = c->device.alloc(c->device.ctx, len);
  if (!copy || !copy->dev) {
    free(copy);
    return NULL;
  }
  copy->len = len, copy->refs = 1;
  pthread_mutex_lock(c->mu);
  c->stats->bytes += len;
  pthread_mutex_unlock(c->mu);
  return copy;
}

/* Publishes a private copy holding identity's bytes. If another binding
 * published the same identity meanwhile (both missed, both uploaded), ours
 * is dropped and theirs shared. */
static sp_resident_copy *publish(sp_resident_cache *c, sp_resident_copy *copy, uint64_t identity) {
  pthread_mutex_lock(c->mu);
  sp_resident_copy *theirs = find_locked(c, identity, copy->len);
  if (theirs) take_locked(c, theirs);
  bool room = theirs || c->n < c->cap;
  if (!room) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    sp_resident_copy **grown = realloc(c->published, cap * sizeof *grown);
    if (grown) c->published = grown, c->cap = cap, room = true;
  }
  if (!theirs && room) copy->identity = identity, c->published[c->n++] = copy;
  pthread_mutex_unlock(c->mu);
  if (!theirs) return copy; /* published, or private when the table could not grow */
  sp_resident_release(c, copy);
  return theirs;
}

void sp_resident_release(sp_resident_cache *c, sp_resident_copy *copy) {
  if (!copy) return;
  pthread_mutex_lock(c->mu);
  bool last = --copy->refs == 0;
  if (last && copy->identity) withdraw_locked(c, copy);
  if (last && !copy->imported) c->stats->bytes -= copy->len;
  else c->stats->shared_bytes -= copy->len;
  pthread_mutex_unlock(c->mu);
  if (!last) return;
  if (copy->derived && c->device.drop_derived) c->device.drop_derived(c->device.ctx, copy);
  c->device.release(c->device.ctx, copy->dev);
  free(copy);
}

/* A copy only the caller holds, with copy's bytes: copy itself (withdrawn
 * from the table) when nobody else holds it, else a duplicate, and the
 * reference on copy is dropped. *out is NULL when memory is short (copy is
 * then untouched). */
static sp_error_t *make_private(sp_resident_cache *c, sp_resident_copy *copy, sp_resident_copy **out) {
  pthread_mutex_lock(c->mu);
  bool alone = copy->refs == 1 && !copy->cross_process;
  if (alone && copy->identity) withdraw_locked(c, copy);
  pthread_mutex_unlock(c->mu);
  *out = alone ? copy : new_copy(c, copy->len);
  if (alone || !*out) return NULL;
  if (!c->device.copy(c->device.ctx, (*out)->dev, copy->dev, copy->len)) {
    sp_resident_release(c, *out);
    *out = NULL;
    return sp_error_new("cuda: duplicating a shared %.1f MiB resident copy failed", copy->len / 1048576.0);
  }
  sp_resident_release(c, copy);
  return NULL;
}

/* ---- the policy: freeze and refresh ---- */

sp_error_t *sp_resident_freeze(sp_resident_cache *c, const sp_resident_upload *up, uint64_t addr, uint64_t len,
                               uint64_t identity, sp_resident_copy **out) {
  *out = identity ? acquire(c, identity, len) : NULL;
  if (*out) return NULL;
  sp_resident_copy *copy = new_copy(c, len);
  if (!copy) {
    warn_short(len);
    return NULL;
  }
  sp_error_t *err = up->fn(up->ctx, copy->dev, addr, len);
  if (err) {
    sp_resident_release(c, copy);
    return err;
  }
  *out = identity ? publish(c, copy, identity) : copy;
  return NULL;
}

/* Maps another process's copy of identity's bytes; NULL when it cannot. */
static sp_resident_copy *import_copy(sp_resident_cache *c, int fd, uint64_t len) {
  if (fd < 0 || !c->device.import_fd) return NULL;
  sp_resident_copy *copy = calloc(1, sizeof *copy);
  if (copy) copy->dev = c->device.import_fd(c->device.ctx, fd, len);
  if (!copy || !copy->dev) {
    free(copy);
    return NULL;
  }
  copy->len = len, copy->refs = 1, copy->cross_process = copy->imported = true;
  pthread_mutex_lock(c->mu);
  c->stats->shared_hits++, c->stats->shared_bytes += len; /* a freeze served by a copy already on the device */
  pthread_mutex_unlock(c->mu);
  return copy;
}

sp_error_t *sp_resident_freeze_shared(sp_resident_cache *c, const sp_resident_upload *up, uint64_t addr,
                                      uint64_t len, uint64_t identity, int import_fd, int *export_fd,
                                      sp_resident_copy **out) {
  *export_fd = -1;
  sp_resident_copy *imported = identity ? import_copy(c, import_fd, len) : NULL;
  if (imported) {
    *out = publish(c, imported, identity);
    return NULL;
  }
  sp_error_t *err = sp_resident_freeze(c, up, addr, len, identity, out);
  if (err || !*out || !identity || (*out)->identity != identity || !c->device.export_fd) return err;
  *export_fd = c->device.export_fd(c->device.ctx, (*out)->dev);
  if (*export_fd >= 0) {
    pthread_mutex_lock(c->mu);
    (*out)->cross_process = true; /* from now on another process may read it */
    pthread_mutex_unlock(c->mu);
  }
  return NULL;
}

sp_error_t *sp_resident_refresh(sp_resident_cache *c, const sp_resident_upload *up, sp_resident_copy **held,
                                uint64_t range_addr, uint64_t range_len, uint64_t addr, uint64_t len,
                                uint64_t identity) {
  if (addr != range_addr || len != range_len) identity = 0; /* a part cannot carry the whole's name */
  if (identity && *held && (*held)->identity == identity) {
    pthread_mutex_lock(c->mu);
    c->stats->shared_hits++; /* a restore found its bytes already on the device */
    pthread_mutex_unlock(c->mu);
    return NULL;
  }
  sp_resident_copy *theirs = identity ? acquire(c, identity, range_len) : NULL;
  if (theirs) {
    sp_resident_release(c, *held);
    *held = theirs;
    return NULL;
  }
  if (!*held) return NULL; /* zero-copy: guest memory is already current */
  sp_resident_copy *mine = NULL;
  sp_error_t *err = make_private(c, *held, &mine);
  if (err) return err;
  if (!mine) {
    sp_resident_release(c, *held);
    *held = NULL;
    warn_short(range_len);
    return NULL;
  }
  *held = mine;
  if (mine->derived && c->device.drop_derived) c->device.drop_derived(c->device.ctx, mine); /* its bytes change */
  err = up->fn(up->ctx, (uint8_t *)mine->dev + (addr - range_addr), addr, len);
  if (!err && identity) *held = publish(c, mine, identity);
  return err;
}
