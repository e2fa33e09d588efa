/* snapshot_pages.c: page classification for snapshots (see snapshot.h). */
#include <string.h>

#include "snapshot/snapshot.h"
#include "snapshot/snapshot_format.h"

bool sp_snap_page_is_zero(const uint8_t *page) {
  const uint64_t *w = (const uint64_t *)page;
  for (size_t i = 0; i < SP_SNAP_PAGE / 8; i += 8) {
    uint64_t any = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    if (any) return false;
  }
  return true;
}
