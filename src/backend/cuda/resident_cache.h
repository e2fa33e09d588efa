/*
 * resident_cache.h: device copies of frozen ranges, shared among a
 * backend's bindings by content identity (range_identity.h).
 *
 * Plain C, so that a CPU test links the very policy the CUDA backend runs:
 * device memory comes through sp_resident_device (cudaMalloc, cudaFree,
 * device-to-device cudaMemcpy there; malloc in the test), and guest bytes
 * through an upload callback (the binding's copy over its registrations).
 *
 * A copy is private (identity 0, one holder) or published under the
 * identity the runtime proved for its bytes; a freeze of the same identity
 * takes a reference instead of copying, and the last release frees it. A
 * published copy is never written: a holder that must change its bytes
 * (flush, restore) gets a copy of its own first, so what other actors read
 * never changes under them (copy-on-flush). Bookkeeping and the residency
 * stats are guarded by the backend's mutex; copies run outside it, so one
 * actor's upload never stalls another's submit.
 */
#ifndef SP_RESIDENT_CACHE_H
#define SP_RESIDENT_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* C headers of the project, also from the .cu files */
#endif

#include "backend/backend.h"
#include "core/error.h"

typedef struct sp_resident_copy {
  void *dev;         /* device memory, len bytes */
  uint64_t len;
  uint64_t identity; /* 0: private, not in the cache */
  uint32_t refs;     /* bindings holding it */
  void *derived;     /* device data computed from these bytes (repacked
                        weight layouts, repack.h); dropped when they change */
  bool cross_process; /* other processes may map it (exported or imported,
                         vmm.h): never written, as a shared copy is not */
  bool imported;      /* made by another process: its bytes are counted
                         as shared, not held */
} sp_resident_copy;

typedef struct sp_resident_device {
  void *ctx;
  void *(*alloc)(void *ctx, uint64_t len); /* NULL when device memory is short */
  void (*release)(void *ctx, void *dev);
  bool (*copy)(void *ctx, void *dst, const void *src, uint64_t len); /* device to device */
  void (*drop_derived)(void *ctx, sp_resident_copy *copy); /* frees copy->derived; may be NULL */
  /* Sharing across processes (vmm.h); both NULL where there is none. */
  int (*export_fd)(void *ctx, void *dev);                    /* a new descriptor, or -1 */
  void *(*import_fd)(void *ctx, int fd, uint64_t len);       /* NULL on failure */
} sp_resident_device;

/* Copies guest bytes [addr, addr + len) of one binding to device memory dev
 * (and counts the copy). */
typedef struct sp_resident_upload {
  void *ctx;
  sp_error_t *(*fn)(void *ctx, void *dev, uint64_t addr, uint64_t len);
} sp_resident_upload;

typedef struct sp_resident_cache {
  sp_resident_device device;
  pthread_mutex_t *mu;       /* the backend's; guards everything below and *stats */
  sp_residency_stats *stats; /* bytes, shared_hits, shared_bytes are kept here */
  sp_resident_copy **published;
  size_t n, cap;
} sp_resident_cache;

void sp_resident_cache_init(sp_resident_cache *c, sp_resident_device device, pthread_mutex_t *mu,
                            sp_residency_stats *stats);
/* Every binding has released its copies by now; frees the table. */
void sp_resident_cache_deinit(sp_resident_cache *c);

/* A device copy of guest bytes [addr, addr + len) for a new frozen range:
 * a reference to the published copy of `identity` when there is one (no
 * copy), else a fresh upload, published when identity is nonzero. *out is
 * NULL, with a warning on stderr, when device memory is short: the range
 * then stays zero-copy. */
sp_error_t *sp_resident_freeze(sp_resident_cache *c, const sp_resident_upload *up, uint64_t addr, uint64_t len,
                               uint64_t identity, sp_resident_copy **out);

/* sp_resident_freeze across processes (process isolation): with
 * import_fd >= 0 (a copy of identity's bytes another process exported),
 * that memory is mapped and published instead of uploading; failing that,
 * or with import_fd < 0, a copy is made as usual and, when published under
 * a nonzero identity, exported into *export_fd (else -1). */
sp_error_t *sp_resident_freeze_shared(sp_resident_cache *c, const sp_resident_upload *up, uint64_t addr,
                                      uint64_t len, uint64_t identity, int import_fd, int *export_fd,
                                      sp_resident_copy **out);

/* The guest bytes [addr, addr + len) inside the frozen range [range_addr,
 * +range_len) changed: *held is made to hold them. identity 0 (flush): the
 * binding gets a copy of its own if it shares one (copy-on-flush; the
 * other bytes stay as they were), then the range is uploaded. A nonzero
 * identity (a restore re-declaring the whole range): nothing happens when
 * *held already has it, another binding's copy is taken when one has it,
 * else the range is uploaded and published. The caller has drained every
 * use of *held. *held may become NULL (zero-copy) when device memory for a
 * copy of its own is short. */
sp_error_t *sp_resident_refresh(sp_resident_cache *c, const sp_resident_upload *up, sp_resident_copy **held,
                                uint64_t range_addr, uint64_t range_len, uint64_t addr, uint64_t len,
                                uint64_t identity);

/* Drops one reference; the last frees the device memory. NULL is ignored. */
void sp_resident_release(sp_resident_cache *c, sp_resident_copy *copy);

#ifdef __cplusplus
}
#endif

#endif
