/* region.c: aligned mmap reservations with a growable committed prefix. */
#include "region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"

size_t sp_page_size(void) {
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (size_t)page : 4096;
}

static size_t round_up(size_t value, size_t to) { return (value + to - 1) & ~(to - 1); }

static sp_error_t *check_sizes(size_t alignment, size_t committed, size_t reserved,
                               size_t guard) {
  size_t page = sp_page_size();
  if (alignment < page || (alignment & (alignment - 1)))
    return sp_error_new("region: alignment %zu must be a power of two >= the page size (%zu)",
                        alignment, page);
  if (committed > reserved)
    return sp_error_new("region: committed size %zu exceeds reservation %zu", committed, reserved);
  if (committed % page || reserved % page || guard % page)
    return sp_error_new("region: sizes must be multiples of the page size (%zu)", page);
  size_t total;
  if (__builtin_add_overflow(reserved, guard, &total) ||
      __builtin_add_overflow(total, alignment, &total))
    return sp_error_new("region: reservation of %zu + guard %zu overflows", reserved, guard);
  return NULL;
}

/* Maps PROT_NONE address space and trims it to an aligned window. */
static sp_error_t *reserve_aligned(sp_region *r) {
  size_t span = r->reserved + r->guard;
  size_t over = span + r->alignment;
  uint8_t *raw = mmap(NULL, over, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED)
    return sp_error_new("region: cannot reserve %zu bytes of address space: %s", over,
                        strerror(errno));
  uint8_t *base = (uint8_t *)round_up((uintptr_t)raw, r->alignment);
  size_t head = (size_t)(base - raw), tail = over - head - span;
  if (head) munmap(raw, head);
  if (tail) munmap(base + span, tail);
  r->base = base;
  r->map_addr = base;
  r->map_len = span;
  return NULL;
}

sp_error_t *sp_region_new(size_t alignment, size_t committed, size_t reserved, size_t guard,
                          sp_region **out) {
  sp_error_t *err = check_sizes(alignment, committed, reserved, guard);
  if (err) return err;
  sp_region *r = calloc(1, sizeof *r);
  if (!r) return sp_error_new("region: out of memory");
  r->reserved = reserved;
  r->guard = guard;
  r->alignment = alignment;
  if ((err = reserve_aligned(r))) {
    free(r);
    return err;
  }
  if (committed && mprotect(r->base, committed, PROT_READ | PROT_WRITE)) {
    err = sp_error_new("region: cannot commit %zu bytes: %s", committed, strerror(errno));
    sp_region_free(r);
    return err;
  }
  r->committed = committed;
  *out = r;
  return NULL;
}

sp_error_t *sp_region_grow(sp_region *r, size_t new_committed) {
  if (new_committed < r->committed)
    return sp_error_new("region: cannot shrink from %zu to %zu bytes", r->committed, new_committed);
  if (new_committed > r->reserved)
    return sp_error_new("region: %zu bytes exceeds the reservation of %zu", new_committed,
                        r->reserved);
  if (r->limit && new_committed > r->limit)
    return sp_error_new("region: %zu bytes exceeds the memory limit of %zu", new_committed, r->limit);
  size_t old = r->committed, commit_to = round_up(new_committed, sp_page_size());
  if (commit_to > r->reserved) commit_to = r->reserved;
  size_t old_pages = round_up(old, sp_page_size());
  if (commit_to > old_pages &&
      mprotect(r->base + old_pages, commit_to - old_pages, PROT_READ | PROT_WRITE))
    return sp_error_new("region: cannot commit %zu bytes: %s", new_committed, strerror(errno));
  r->committed = new_committed;
  sp_error_t *err = r->grow_hook ? r->grow_hook(r->grow_hook_ctx, r) : NULL;
  if (err) {
    if (commit_to > old_pages) mprotect(r->base + old_pages, commit_to - old_pages, PROT_NONE);
    r->committed = old;
    return sp_error_wrap(err, "region: growing to %zu bytes", new_committed);
  }
  return NULL;
}

void sp_region_free(sp_region *r) {
  if (!r) return;
  if (r->map_addr) munmap(r->map_addr, r->map_len);
  free(r);
}
