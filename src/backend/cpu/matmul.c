/*
 * matmul.c: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T on the CPU.
 *
 * dst[m][n] = dot(W row n, X row m). The output is cut into tiles of
 * n_tile weight rows by m_tile activation rows, one tile per task. Inside a
 * tile, groups of SP_CPU_MAX_NX activation rows meet every weight row of
 * the tile, so a weight row is loaded once per group and the tile's weights
 * stay in cache across groups (prefill); with M = 1 (decode) the tiles are
 * simply even slices of the weight rows, streamed once. Where the table has
 * a gemm for the weight type, a prompt's tile is one gemm call instead.
 *
 * Quantized weights first get their activation rows quantized to sp_q8_act
 * blocks in the binding's scratch, once per call, so the inner loops are
 * integer dot products.
 */
#include <string.h>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"

#define SP_MM_M_TILE 64                /* activation rows per tile (multiple of 4) */
/* A gemm decodes its weight rows once per call, so its tiles take more
 * activation rows: 256 against 64 took 256-token prefill of the Q4_K_M
 * files from ~567 to ~615 (SmolLM2) and ~479 to ~505 tok/s (Gemma 3 270M),
 * interleaved medians on the 2-core AVX-512 machine. */
#define SP_MM_GEMM_M_TILE 256
#define SP_MM_TASK_MIN_BYTES (32 << 10) /* weight bytes streamed per task, at least */
#define SP_MM_TILE_MAX_BYTES (256 << 10) /* weights of one tile, to stay in L2 */
#define SP_MM_QUANT_MIN_BYTES (64 << 10) /* activation bytes per quantize task */


typedef struct sp_quantize_job {
  void (*quantize)(const float *x, sp_q8_act *y, int64_t k);
  const uint8_t *src; /* f32 rows, src_stride apart */
  size_t src_stride;
  uint8_t *dst; /* sp_q8_act rows, dst_stride apart */
  size_t dst_stride;
  int64_t k, rows, rows_per_task;
} sp_quantize_job;

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void quantize_task(void *arg, uint32_t task) {
  const sp_quantize_job *q = arg;
  int64_t r0 = (int64_t)task * q->rows_per_task, r1 = min_i64(r0 + q->rows_per_task, q->rows);
  for (int64_t r = r0; r < r1; r++)
    q->quantize((const float *)(q->src + (size_t)r * q->src_stride),
                (sp_q8_act *)(q->dst + (size_t)r * q->dst_stride), q->k);
}

static void matmul_task(void *arg, uint32_t task) {
  const sp_matmul_job *j = arg;
  int64_t n0 = (int64_t)task % j->tiles_n * j->n_tile, n1 = min_i64(n0 + j->n_tile, j->n);
  int64_t m0 = (int64_t)task / j->tiles_n * j->m_tile, m1 = min_i64(m0 + j->m_tile, j->m);
  if (j->gemm) {
    j->gemm(j->k, j->w + (size_t)n0 * j->w_stride, j->w_stride, n1 - n0, j->x + (size_t)m0 * j->x_stride,
            j->x_stride, m1 - m0, (float *)(j->d + (size_t)m0 * j->d_stride) + n0, j->d_stride);
    return;
  }
  float out[SP_CPU_MAX_NX];
  for (int64_t m = m0; m < m1; m += SP_CPU_MAX_NX) {
    int nx = (int)min_i64(SP_CPU_MAX_NX, m1 - m);
    const uint8_t *xr = j->x + (size_t)m * j->x_stride;
    uint8_t *dr = j->d + (size_t)m * j->d_stride;
    for (int64_t n = n0; n < n1; n++) {
      const uint8_t *row = j->w + (size_t)n * j->w_stride;
      sp_cpu_matmul_prefetch(j, n);
      j->dot(j->k, row, xr, j->x_stride, nx, out);
      for (int r = 0; r < nx; r++) ((float *)(dr + (size_t)r * j->d_stride))[n] = out[r];
    }
  }
}

/* Quantizes the M activation rows into scratch; points the job at them. */
static sp_error_t *matmul_quantize(const sp_cpu_exec *ex, sp_matmul_job *j) {
  size_t row_bytes = (size_t)(j->k / SP_QK) * sizeof(sp_q8_act), total;
  if (__builtin_mul_overflow(row_bytes, (size_t)j->m, &total))
    return sp_error_new("matmul: activation scratch size overflows");
  void *buf = sp_cpu_scratch_reserve(ex->scratch, total);
  if (!buf) return sp_error_new("matmul: out of memory for %zu bytes of scratch", total);
  sp_quantize_job q = {
      .quantize = ex->kern->quantize_q8,
      .src = j->x,
      .src_stride = j->x_stride,
      .dst = buf,
      .dst_stride = row_bytes,
      .k = j->k,
      .rows = j->m,
  };
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)j->m * j->k * 4, SP_MM_QUANT_MIN_BYTES);
  q.rows_per_task = ceil_div(j->m, tasks);
  sp_threadpool_run(ex->pool, (uint32_t)ceil_div(j->m, q.rows_per_task), quantize_task, &q);
  j->x = buf;
  j->x_stride = row_bytes;
  return NULL;
}

/* Picks tile sizes: enough tasks for every thread, each worth waking for,
 * and weight tiles that stay in cache while activation groups pass. */
static uint32_t matmul_plan(const sp_cpu_exec *ex, sp_matmul_job *j, uint64_t row_bytes) {
  j->m_tile = min_i64(j->m, j->gemm ? SP_MM_GEMM_M_TILE : SP_MM_M_TILE);
  int64_t tiles_m = ceil_div(j->m, j->m_tile);
  uint64_t row_cost = row_bytes * (uint64_t)ceil_div(j->m_tile, SP_CPU_MAX_NX);
  uint64_t work = row_cost * (uint64_t)j->n * (uint64_t)tiles_m;
  int64_t tasks = sp_cpu_task_count(ex, work, SP_MM_TASK_MIN_BYTES);
  int64_t tasks_n = max_i64(1, ceil_div(tasks, tiles_m));
  j->n_tile = ceil_div(j->n, tasks_n);
  if (j->m > SP_CPU_MAX_NX)
    j->n_tile = min_i64(j->n_tile, max_i64(1, (int64_t)(SP_MM_TILE_MAX_BYTES / row_bytes)));
  j->tiles_n = ceil_div(j->n, j->n_tile);
  return (uint32_t)(j->tiles_n * tiles_m);
}

sp_error_t *sp_cpu_matmul_prepare(const sp_cpu_exec *ex, const sp_cmd *cmd, sp_matmul_job *j) {
  const sp_tensor *w = &cmd->src[0], *x = &cmd->src[1], *d = &cmd->dst;
  *j = (sp_matmul_job){
      .dot = ex->kern->dot[w->dtype],
      .k = w->ne[0],
      .n = w->ne[1],
      .m = x->ne[1],
      .w = ex->base + w->offset,
      .w_stride = w->nb[0],
      .x = ex->base + x->offset,
      .x_stride = x->nb[0],
      .d = ex->base + d->offset,
      .d_stride = d->nb[0],
  };
  if (!j->dot) return sp_error_new("matmul: no %s kernel", sp_dtype_name(w->dtype));
  /* decode (M = 1) streams each weight row once: the dot's single row wins */
  if (j->m > 1) j->gemm = ex->kern->gemm[w->dtype];
  return sp_cpu_is_quantized(w->dtype) ? matmul_quantize(ex, j) : NULL;
}

void sp_cpu_matmul_run(const sp_cpu_exec *ex, sp_matmul_job *j, uint64_t row_bytes) {
  uint32_t tasks = matmul_plan(ex, j, row_bytes);
  sp_threadpool_run(ex->pool, tasks, matmul_task, j);
}

sp_error_t *sp_cpu_matmul(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  sp_matmul_job j;
  sp_error_t *err = sp_cpu_matmul_prepare(ex, cmd, &j);
  if (err) return err;
  sp_cpu_matmul_run(ex, &j, sp_dtype_row_bytes(sp_dtype_get(cmd->src[0].dtype), (uint64_t)j.k));
  return NULL;
}
