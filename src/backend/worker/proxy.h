/*
 * proxy.h (private): the host's records of its worker processes
 * (worker_proxy.c) and of the device memory they share (worker_shared.c).
 */
#ifndef SP_WORKER_PROXY_H
#define SP_WORKER_PROXY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/backend.h"
#include "backend/worker/wire.h"

#define MAX_WORKERS 4096
#define MAX_SHARED 64 /* device copies shared across workers */
#define MAX_HELD 16   /* shared copies one worker holds (SP_MAX_FROZEN) */
#define MAX_DERIVED 4096 /* repacked layouts shared across workers */

/* One worker process and the socket to it. */
typedef struct conn {
  pid_t pid;
  int sock;
  pthread_mutex_t mu;      /* one request and its reply at a time */
  uint32_t pending;        /* submits whose replies are still unread */
  sp_error_t *deferred;    /* the first error among them */
  bool dead;
  char why[600];           /* why it ended */
  uint8_t *host_base;      /* the guest memory it adopted (ours) */
  uint64_t base, device_base; /* the worker's view of it */
  sp_file_range *files;    /* the file ranges it maps now */
  uint32_t n_files;
  unsigned spin_us;        /* waiting for a reply (wire.h) */
  int got[SP_WIRE_MAX_FDS]; /* descriptors that came with the last reply */
  int n_got;
  uint64_t held[MAX_HELD][2]; /* (identity, len) of shared copies it holds */
  uint32_t n_held;
} conn;

/* A device layout a worker derived from a shared copy (a repacked weight),
 * exported, for the next workers that map the same copy. */
typedef struct shared_derived {
  sp_derived_desc desc;
  int fd;
} shared_derived;

/* A device copy a worker exported (vmm.h), kept for the next worker that
 * freezes the same identity; the descriptor keeps the memory alive even
 * after the worker that made it ends. */
typedef struct shared_copy {
  uint64_t identity, len;
  int fd;
  uint32_t holders; /* live bindings holding it */
} shared_copy;

typedef struct proxy {
  char inner[16];           /* the inner backend's resolved name */
  sp_backend_options opts;
  unsigned threads;
  sp_backend_caps caps;
  bool (*supports)(const sp_cmd *cmd);
  pthread_mutex_t mu;       /* guards live, spare and retired */
  conn *live[MAX_WORKERS];
  uint32_t n_live;
  conn *spare;              /* started, not yet adopted */
  sp_residency_stats retired; /* totals of released workers */
  shared_copy shared[MAX_SHARED];
  uint32_t n_shared;
  shared_derived *derived;  /* [MAX_DERIVED] */
  uint32_t n_derived;
} proxy;

/* One request and its reply on c, with c->mu held (worker_proxy.c). */
sp_error_t *sp_proxy_call_locked(conn *c, const sp_wire_msg *req, const void *payload, const int *fds, int nfds,
                                 sp_wire_msg *reply, void *out, size_t out_cap);

/* ---- device memory shared across workers (worker_shared.c) ---- */

/* The shared copy of identity (len UINT64_MAX: of any length); p->mu held. */
shared_copy *sp_shared_find(proxy *p, uint64_t identity, uint64_t len);

/* After a freeze of identity by c: c holds the shared copy, which is the
 * one it was given, or the one it made and exported (exported >= 0). */
void sp_shared_note(proxy *p, conn *c, uint64_t identity, uint64_t len, int exported);

/* c is going: its shared copies lose a holder; one nobody holds is closed,
 * with its derived layouts (the memory goes when no process maps it). */
void sp_shared_drop(proxy *p, conn *c);

/* Keeps layouts a worker derived and exported (n of them, fds taken). */
void sp_shared_keep_derived(proxy *p, const sp_derived_desc *d, const int *fds, uint32_t n);

/* Hands c the layouts other workers derived from identity's copy. */
void sp_shared_send_derived(proxy *p, conn *c, uint64_t identity);

/* Closes every descriptor kept (the backend is going). */
void sp_shared_free_all(proxy *p);

#endif
