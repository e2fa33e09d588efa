/*
 * region.h: one actor's linear memory, shared with the accelerator.
 *
 * A region is an mmap reservation of address space whose base is aligned
 * (16 KiB by default, so Metal's no-copy buffers and CUDA host registration
 * accept it) and never moves. Only a prefix is committed (readable and
 * writable); the rest, and a trailing guard area, stay PROT_NONE so that a
 * stray access faults instead of touching anything else. The committed
 * prefix grows with the guest's memory.grow.
 *
 *   base                      base+committed         base+reserved   +guard
 *   |  committed (RW)         |  reserved (NONE)      |  guard (NONE)  |
 */
#ifndef SP_REGION_H
#define SP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samepage.h"

#define SP_REGION_DEFAULT_ALIGNMENT ((size_t)16 << 10)

typedef struct sp_region sp_region;

/* Called after the committed prefix grew, before the guest sees it; an
 * error undoes the growth. Used to extend a backend's registration. */
typedef sp_error_t *(*sp_region_grow_hook)(void *hook_ctx, sp_region *region);

struct sp_region {
  uint8_t *base;      /* aligned start, never moves */
  size_t committed;   /* accessible bytes from base */
  size_t reserved;    /* bytes reserved for growth, committed included */
  size_t guard;       /* PROT_NONE bytes after the reservation */
  size_t alignment;   /* base alignment */
  size_t limit;       /* most committed bytes allowed (0 = the reservation) */
  void *map_addr;     /* the whole mapping, for munmap */
  size_t map_len;
  int fd;             /* shared regions: the memfd behind the committed
                         bytes (another process maps it too), else -1 */
  sp_region_grow_hook grow_hook; /* (optional) */
  void *grow_hook_ctx;
};

/* Reserves `reserved + guard` bytes at an `alignment`-aligned base and
 * commits the first `committed` bytes (zero-filled).
 * Errors: alignment not a power of two or below the page size, committed >
 * reserved, sizes that overflow, mmap/mprotect failure. Caller owns *out. */
sp_error_t *sp_region_new(size_t alignment, size_t committed, size_t reserved, size_t guard,
                          sp_region **out);

/* As sp_region_new, but the committed bytes are a memfd mapped shared
 * (region->fd), so that a worker process can map the same pages: process
 * isolation (backend/worker). The memfd is sized to the reservation up
 * front; its pages exist only once touched. */
sp_error_t *sp_region_new_shared(size_t alignment, size_t committed, size_t reserved, size_t guard,
                                 sp_region **out);

/* Turns region bytes [addr, addr + len) (page aligned, committed) back into
 * zeroed memory of the region's own kind, replacing whatever is mapped
 * there (a file mapping). false with errno set on failure. */
bool sp_region_reset(sp_region *region, uint64_t addr, uint64_t len);

/* Maps the region's own memory back over [addr, addr + len) (page
 * aligned, committed), keeping a shared region's bytes as they are in the
 * memfd (a worker following the host's file mappings); a private region
 * gets zeroed memory. false with errno set on failure. */
bool sp_region_remap(sp_region *region, uint64_t addr, uint64_t len);

/* A second view of a shared region made by another process: the memfd fd
 * (taken over on success), the same committed and reserved sizes, at
 * address hint when free (so that guest address a is the same pointer in
 * both processes), else at any aligned address. No guard area: nothing
 * in the worker runs guest code. */
sp_error_t *sp_region_attach(int fd, size_t alignment, size_t committed, size_t reserved, void *hint,
                             sp_region **out);

/* Zeroes committed region bytes; whole pages are given back to the system. */
void sp_region_zero(sp_region *region, uint64_t addr, uint64_t len);

/* Commits bytes up to new_committed (>= current, <= reserved and <= limit),
 * then calls the grow hook. Errors leave the region unchanged. */
sp_error_t *sp_region_grow(sp_region *region, size_t new_committed);

/* Unmaps the region. NULL is fine. */
void sp_region_free(sp_region *region);

/* The system page size. */
size_t sp_page_size(void);

#endif
