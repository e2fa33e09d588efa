/*
 * matmul_batch.c: one decode matrix-vector product for several actors at
 * once, reading the weights from memory once instead of once per actor.
 *
 * Each actor multiplies ITS OWN weight rows (in its own memory) by its own
 * activation row into its own output: no actor's bytes enter another's
 * result, whatever the actors' lists claim. The saving comes from the
 * hardware: actors that map the same model file privately, and have not
 * written to those pages, share their physical pages, and CPU caches are
 * physically tagged. So a chunk of weight rows the first actor pulls from
 * DRAM is in cache when the next actors read the same rows through their
 * own mappings. Actors whose weights differ still get right answers, only
 * no saving.
 *
 * Where the runtime proved the actors' weights to be the same bytes (one
 * weight key: range_identity.h), sp_cpu_matmul_shared goes further: the
 * activation rows are gathered and meet the first actor's weights in one
 * product, as a prompt's rows do, so each weight block is also decoded
 * once for all.
 *
 * Batch invariance: every output is the table's dot of one weight row and
 * one activation row (nx = 1), exactly the call sp_cpu_matmul makes for a
 * decode step, so an actor's bits do not depend on the batch (kernels.h,
 * numerics contract).
 */
#include "backend/cpu/matmul_batch.h"

#include <string.h>

#include "core/dtype.h"

/* Weight rows one actor runs before the next actor reads the same rows:
 * small enough to stay in L1/L2 across the batch (8 rows of a 2,048-wide
 * Q8_0 matrix are 17 KiB). */
#define SP_MMB_CHUNK_ROWS 8
#define SP_MMB_TASK_MIN_BYTES (32 << 10) /* weight bytes per task, at least */

typedef struct batch_job {
  const sp_matmul_job *jobs; /* one per actor, all m = 1, same k and n */
  uint32_t n_jobs;
  int64_t rows_per_task, n;
} batch_job;

static void batch_task(void *arg, uint32_t task) {
  const batch_job *b = arg;
  int64_t r0 = (int64_t)task * b->rows_per_task, r1 = r0 + b->rows_per_task < b->n ? r0 + b->rows_per_task : b->n;
  for (int64_t c0 = r0; c0 < r1; c0 += SP_MMB_CHUNK_ROWS) {
    int64_t c1 = c0 + SP_MMB_CHUNK_ROWS < r1 ? c0 + SP_MMB_CHUNK_ROWS : r1;
    for (uint32_t a = 0; a < b->n_jobs; a++) {
      const sp_matmul_job *j = &b->jobs[a];
      float *d = (float *)j->d;
      for (int64_t r = c0; r < c1; r++) {
        if (a == 0) sp_cpu_matmul_prefetch(j, r); /* the others find the rows in cache */
        j->dot(j->k, j->w + (size_t)r * j->w_stride, j->x, j->x_stride, 1, &d[r]);
      }
    }
  }
}

bool sp_cpu_matmul_batchable(const sp_cmd *a, const sp_cmd *b) {
  return a->op == SP_OP_MATMUL && b->op == SP_OP_MATMUL && a->src[1].ne[1] == 1 && b->src[1].ne[1] == 1 &&
         a->src[0].dtype == b->src[0].dtype && a->src[0].ne[0] == b->src[0].ne[0] &&
         a->src[0].ne[1] == b->src[0].ne[1];
}

void sp_cpu_matmul_batch(const sp_cpu_exec *const *exs, const sp_cmd *const *cmds, uint32_t n, sp_matmul_job *jobs,
                         sp_error_t **errs) {
  uint32_t ready = 0;
  for (uint32_t a = 0; a < n; a++) {
    sp_matmul_job j;
    errs[a] = sp_cpu_matmul_prepare(exs[a], cmds[a], &j);
    if (!errs[a]) jobs[ready++] = j; /* an actor whose scratch was refused drops out alone */
  }
  if (!ready) return;
  const sp_cmd *c = cmds[0];
  uint64_t row_bytes = sp_dtype_row_bytes(sp_dtype_get(c->src[0].dtype), (uint64_t)c->src[0].ne[0]);
  uint32_t tasks = sp_cpu_task_count(exs[0], row_bytes * (uint64_t)jobs[0].n, SP_MMB_TASK_MIN_BYTES);
  batch_job b = {.jobs = jobs, .n_jobs = ready, .n = jobs[0].n};
  b.rows_per_task = (b.n + tasks - 1) / tasks;
  b.rows_per_task = (b.rows_per_task + SP_MMB_CHUNK_ROWS - 1) / SP_MMB_CHUNK_ROWS * SP_MMB_CHUNK_ROWS;
  sp_threadpool_run(exs[0]->pool, (uint32_t)((b.n + b.rows_per_task - 1) / b.rows_per_task), batch_task, &b);
}

void sp_cpu_matmul_shared(const sp_cpu_exec *const *exs, const sp_cmd *const *cmds, uint32_t n, sp_matmul_job *jobs,
                          sp_cpu_scratch *gather, sp_error_t **errs) {
  uint32_t ready = 0, who[SP_BATCH_MAX];
  for (uint32_t a = 0; a < n; a++) {
    errs[a] = sp_cpu_matmul_prepare(exs[a], cmds[a], &jobs[ready]);
    if (!errs[a]) who[ready++] = a;
  }
  if (ready < 2) {
    for (uint32_t r = 0; r < ready; r++)
      sp_cpu_matmul_run(exs[who[r]], &jobs[r], sp_dtype_row_bytes(sp_dtype_get(cmds[who[r]]->src[0].dtype),
                                                                  (uint64_t)jobs[r].k));
    return;
  }
  const sp_cmd *c = cmds[who[0]];
  bool quantized = sp_cpu_is_quantized(c->src[0].dtype);
  size_t x_bytes = quantized ? jobs[0].x_stride : (size_t)jobs[0].k * sizeof(float), d_bytes = (size_t)jobs[0].n * 4;
  uint8_t *buf = sp_cpu_scratch_reserve(gather, (x_bytes + d_bytes) * ready);
  if (!buf) { /* no room to gather: each actor reads its own weights */
    const sp_cpu_exec *ex_of[SP_BATCH_MAX];
    const sp_cmd *cmd_of[SP_BATCH_MAX];
    for (uint32_t r = 0; r < ready; r++) ex_of[r] = exs[who[r]], cmd_of[r] = cmds[who[r]];
    sp_error_t *again[SP_BATCH_MAX];
    sp_cpu_matmul_batch(ex_of, cmd_of, ready, jobs, again);
    for (uint32_t r = 0; r < ready; r++) errs[who[r]] = again[r];
    return;
  }
  uint8_t *xs = buf, *ds = buf + x_bytes * ready;
  for (uint32_t r = 0; r < ready; r++) memcpy(xs + x_bytes * r, jobs[r].x, x_bytes);
  sp_matmul_job all = jobs[0];
  all.x = xs, all.x_stride = x_bytes, all.m = ready, all.d = ds, all.d_stride = d_bytes;
  all.gemm = exs[who[0]]->kern->gemm[c->src[0].dtype];
  sp_cpu_matmul_run(exs[who[0]], &all, sp_dtype_row_bytes(sp_dtype_get(c->src[0].dtype), (uint64_t)all.k));
  for (uint32_t r = 0; r < ready; r++) memcpy(jobs[r].d, ds + d_bytes * r, d_bytes);
}
