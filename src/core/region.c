/* region.c: aligned mmap reservations with a growable committed prefix. */
#define _GNU_SOURCE /* memfd_create, fallocate, MAP_FIXED_NOREPLACE */
#include "core/region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

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

/* Makes [from, to) of the reservation readable and writable: the memfd's
 * pages at the same offsets for a shared region, else anonymous memory. */
static bool commit_range(sp_region *r, size_t from, size_t to) {
  if (to <= from) return true;
  if (r->fd < 0) return mprotect(r->base + from, to - from, PROT_READ | PROT_WRITE) == 0;
  return mmap(r->base + from, to - from, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd, (off_t)from) !=
         MAP_FAILED;
}

/* Takes [from, to) back to reserved address space (a failed grow). */
static void uncommit_range(sp_region *r, size_t from, size_t to) {
  if (to <= from) return;
  if (r->fd < 0) {
    mprotect(r->base + from, to - from, PROT_NONE);
    return;
  }
  mmap(r->base + from, to - from, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from));
}

static sp_error_t *make_region(size_t alignment, size_t committed, size_t reserved, size_t guard, bool shared,
                               sp_region **out) {
  sp_error_t *err = check_sizes(alignment, committed, reserved, guard);
  if (err) return err;
  sp_region *r = calloc(1, sizeof *r);
  if (!r) return sp_error_new("region: out of memory");
  r->reserved = reserved;
  r->guard = guard;
  r->alignment = alignment;
  r->fd = -1;
  if (shared) {
    r->fd = memfd_create("samepage-region", MFD_CLOEXEC);
    if (r->fd < 0 || ftruncate(r->fd, (off_t)reserved)) {
      err = sp_error_new("region: cannot create shared memory of %zu bytes for process isolation: %s%s", reserved,
                         strerror(errno), errno == EFBIG ? " (the file-size limit, ulimit -f, covers it)" : "");
      if (r->fd >= 0) close(r->fd);
      free(r);
      return err;
    }
  }
  if ((err = reserve_aligned(r))) {
    if (r->fd >= 0) close(r->fd);
    free(r);
    return err;
  }
  if (!commit_range(r, 0, committed)) {
    err = sp_error_new("region: cannot commit %zu bytes: %s", committed, strerror(errno));
    sp_region_free(r);
    return err;
  }
  r->committed = committed;
  *out = r;
  return NULL;
}

sp_error_t *sp_region_new(size_t alignment, size_t committed, size_t reserved, size_t guard,
                          sp_region **out) {
  return make_region(alignment, committed, reserved, guard, false, out);
}

sp_error_t *sp_region_new_shared(size_t alignment, size_t committed, size_t reserved, size_t guard,
                                 sp_region **out) {
  return make_region(alignment, committed, reserved, guard, true, out);
}

bool sp_region_remap(sp_region *r, uint64_t addr, uint64_t len) {
  if (r->fd < 0)
    return mmap(r->base + addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0) !=
           MAP_FAILED;
  return mmap(r->base + addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd, (off_t)addr) != MAP_FAILED;
}

bool sp_region_reset(sp_region *r, uint64_t addr, uint64_t len) {
  /* The memfd's pages under a file mapping may hold bytes from before it. */
  if (r->fd >= 0 && fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)addr, (off_t)len))
    return false;
  return sp_region_remap(r, addr, len);
}

/* Reserves the span at exactly `hint` when that address range is free. */
static bool reserve_at(sp_region *r, void *hint) {
  size_t span = r->reserved + r->guard;
  if (!hint || (uintptr_t)hint % r->alignment) return false;
  uint8_t *at = mmap(hint, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (at == MAP_FAILED) return false;
  if (at != hint) { /* a kernel without MAP_FIXED_NOREPLACE treats it as a hint */
    munmap(at, span);
    return false;
  }
  r->base = r->map_addr = at;
  r->map_len = span;
  return true;
}

sp_error_t *sp_region_attach(int fd, size_t alignment, size_t committed, size_t reserved, void *hint,
                             sp_region **out) {
  sp_error_t *err = check_sizes(alignment, committed, reserved, 0);
  if (err) return err;
  struct stat st;
  if (fstat(fd, &st) || (uint64_t)st.st_size < reserved)
    return sp_error_new("region: the shared memory to attach is smaller than its reservation of %zu bytes", reserved);
  sp_region *r = calloc(1, sizeof *r);
  if (!r) return sp_error_new("region: out of memory");
  r->reserved = reserved;
  r->alignment = alignment;
  r->fd = -1;
  if (!reserve_at(r, hint) && (err = reserve_aligned(r))) {
    free(r);
    return err;
  }
  r->fd = fd;
  if (!commit_range(r, 0, committed)) {
    err = sp_error_new("region: cannot map %zu bytes of shared memory: %s", committed, strerror(errno));
    r->fd = -1; /* the caller still owns fd on failure */
    sp_region_free(r);
    return err;
  }
  r->committed = committed;
  *out = r;
  return NULL;
}

void sp_region_zero(sp_region *r, uint64_t addr, uint64_t len) {
  size_t page = sp_page_size();
  bool whole = addr % page == 0 && len % page == 0;
  bool dropped = whole && (r->fd < 0 ? madvise(r->base + addr, len, MADV_DONTNEED) == 0
                                     : fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)addr,
                                                 (off_t)len) == 0);
  if (!dropped) memset(r->base + addr, 0, len);
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
  if (!commit_range(r, old_pages, commit_to))
    return sp_error_new("region: cannot commit %zu bytes: %s", new_committed, strerror(errno));
  r->committed = new_committed;
  sp_error_t *err = r->grow_hook ? r->grow_hook(r->grow_hook_ctx, r) : NULL;
  if (err) {
    uncommit_range(r, old_pages, commit_to);
    r->committed = old;
    return sp_error_wrap(err, "region: growing to %zu bytes", new_committed);
  }
  return NULL;
}

void sp_region_free(sp_region *r) {
  if (!r) return;
  if (r->map_addr) munmap(r->map_addr, r->map_len);
  if (r->fd >= 0) close(r->fd);
  free(r);
}
