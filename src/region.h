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
  sp_region_grow_hook grow_hook; /* (optional) */
  void *grow_hook_ctx;
};

/* Reserves `reserved + guard` bytes at an `alignment`-aligned base and
 * commits the first `committed` bytes (zero-filled).
 * Errors: alignment not a power of two or below the page size, committed >
 * reserved, sizes that overflow, mmap/mprotect failure. Caller owns *out. */
sp_error_t *sp_region_new(size_t alignment, size_t committed, size_t reserved, size_t guard,
                          sp_region **out);

/* Commits bytes up to new_committed (>= current, <= reserved and <= limit),
 * then calls the grow hook. Errors leave the region unchanged. */
sp_error_t *sp_region_grow(sp_region *region, size_t new_committed);

/* Unmaps the region. NULL is fine. */
void sp_region_free(sp_region *region);

/* The system page size. */
size_t sp_page_size(void);

#endif
