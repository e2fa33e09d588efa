/* written_pages.c: which pages of a private file mapping the process wrote
 * (written_pages.h), from /proc/self/pagemap. */
#include "core/written_pages.h"

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/region.h"

/* pagemap entry bits: 63 present, 62 swapped, 61 file page or shared
 * anonymous. A written page of a private file mapping becomes anonymous. */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

int sp_pagemap_open(void) { return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); }

static bool entry_written(uint64_t e) { return (e & (PM_PRESENT | PM_SWAPPED)) && !(e & PM_FILE); }

uint64_t sp_written_run(int fd, const uint8_t *base, uint64_t addr, uint64_t len, uint64_t *at) {
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
      bool mod = entry_written(entries[j]);
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

bool sp_written_any(int fd, const uint8_t *base, uint64_t addr, uint64_t len) {
  if (fd < 0) return true;
  size_t page = sp_page_size();
  uint64_t first = ((uintptr_t)base + addr) / page, n = (len + page - 1) / page;
  bool modified = false;
  uint64_t entries[64];
  for (uint64_t done = 0; done < n && !modified;) {
    uint64_t batch = n - done < 64 ? n - done : 64;
    ssize_t got = pread(fd, entries, batch * 8, (off_t)((first + done) * 8));
    if (got != (ssize_t)(batch * 8)) {
      modified = true;
      break;
    }
    for (uint64_t i = 0; i < batch && !modified; i++) modified = entry_written(entries[i]);
    done += batch;
  }
  return modified;
}
