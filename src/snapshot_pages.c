/* snapshot_pages.c: page classification for snapshots (see snapshot.h). */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"
#include "snapshot_format.h"

bool sp_snap_page_is_zero(const uint8_t *page) {
  const uint64_t *w = (const uint64_t *)page;
  for (size_t i = 0; i < SP_SNAP_PAGE / 8; i += 8) {
    uint64_t any = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    if (any) return false;
  }
  return true;
}

/* pagemap entry bits: 63 present, 62 swapped, 61 file page or shared
 * anonymous. A written page of a private file mapping becomes anonymous. */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

int sp_snap_pagemap_open(void) { return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); }

static bool entry_modified(uint64_t e) { return (e & (PM_PRESENT | PM_SWAPPED)) && !(e & PM_FILE); }

uint64_t sp_snap_modified_run(int fd, const uint8_t *base, uint64_t addr, uint64_t len, uint64_t *at) {
  *at = addr;
  if (fd < 0) return len;
  size_t page = sp_page_size();
  uint64_t first = ((uintptr_t)base + addr) / page, n = (len + page - 1) / page, start = n, i = 0;
  uint64_t entries[64];
  while (i < n) {
    uint64_t batch = n - i < 64 ? n - i : 64;
    if (pread(fd, entries, batch * 8, (off_t)((first + i) * 8)) != (ssize_t)(batch * 8)) {
      if (start == n) start = i;
      i = n; /* unreadable: treat the rest as written */
      break;
    }
    uint64_t j = 0;
    for (; j < batch; j++) {
      bool mod = entry_modified(entries[j]);
      if (start == n && mod) start = i + j;
      else if (start != n && !mod) break;
    }
    i += j;
    if (j < batch) break;
  }
  if (start == n) return 0;
  *at = addr + start * page;
  uint64_t end = i * page < len ? i * page : len;
  return end - start * page;
}

bool sp_snap_range_modified(int fd, const sp_region *region, uint64_t addr, uint64_t len) {
  if (fd < 0) return true;
  size_t page = sp_page_size();
  uint64_t first = ((uintptr_t)region->base + addr) / page, n = (len + page - 1) / page;
  bool modified = false;
  uint64_t entries[64];
  for (uint64_t done = 0; done < n && !modified;) {
    uint64_t batch = n - done < 64 ? n - done : 64;
    ssize_t got = pread(fd, entries, batch * 8, (off_t)((first + done) * 8));
    if (got != (ssize_t)(batch * 8)) {
      modified = true;
      break;
    }
    for (uint64_t i = 0; i < batch && !modified; i++) modified = entry_modified(entries[i]);
    done += batch;
  }
  return modified;
}
