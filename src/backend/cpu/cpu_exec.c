/* cpu_exec.c: helpers every op driver shares (scratch memory, task sizing). */
#include "backend/cpu/cpu_exec.h"

#include <stdlib.h>
#include <string.h>

void *sp_cpu_scratch_reserve(sp_cpu_scratch *s, size_t bytes) { return sp_cpu_scratch_reserve_keep(s, bytes, 0); }

void *sp_cpu_scratch_reserve_keep(sp_cpu_scratch *s, size_t bytes, size_t keep) {
  if (bytes > (s->budget ? s->budget : SP_CPU_SCRATCH_BUDGET)) {
    s->refused = bytes;
    return NULL;
  }
  if (bytes <= s->cap) return s->data;
  size_t cap = (bytes + 4095) & ~(size_t)4095; /* a multiple of the alignment */
  if (cap < bytes) return NULL;
  void *data = aligned_alloc(64, cap);
  if (!data) return NULL;
  if (keep && s->data) memcpy(data, s->data, keep < s->cap ? keep : s->cap);
  free(s->data);
  s->data = data;
  s->cap = cap;
  return data;
}

void sp_cpu_scratch_deinit(sp_cpu_scratch *s) {
  free(s->data);
  s->data = NULL;
  s->cap = 0;
}

uint32_t sp_cpu_task_count(const sp_cpu_exec *ex, uint64_t work, uint64_t min_per_task) {
  uint64_t most = 4 * (uint64_t)sp_threadpool_threads(ex->pool);
  if (most <= 4) return 1; /* one thread: splitting only adds overhead */
  uint64_t n = work / (min_per_task ? min_per_task : 1);
  return (uint32_t)(n < 1 ? 1 : n > most ? most : n);
}
