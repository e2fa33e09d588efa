/*
 * matmul.h (private to the CPU backend): one matrix product's job, as
 * matmul.c plans it and matmul_batch.c runs several of them together.
 */
#ifndef SP_CPU_MATMUL_H
#define SP_CPU_MATMUL_H

#include "backend/cpu/cpu_exec.h"

typedef struct sp_matmul_job {
  sp_dot_fn dot;
  sp_gemm_fn gemm; /* the table's block of products, for prompts; NULL: dot */
  int64_t k, n, m;
  const uint8_t *w; /* weight rows, w_stride apart */
  size_t w_stride;
  const uint8_t *x; /* f32 rows or sp_q8_act rows, x_stride apart */
  size_t x_stride;
  uint8_t *d; /* f32 rows of N, d_stride apart */
  size_t d_stride;
  int64_t n_tile, m_tile, tiles_n;
} sp_matmul_job;

/* Fills j for one validated SP_OP_MATMUL: pointers into ex's memory, the
 * table's kernels, and for quantized weights the activation rows quantized
 * into ex's scratch (j->x then points there). Errors: no kernel for the
 * weight type, scratch over the budget. */
sp_error_t *sp_cpu_matmul_prepare(const sp_cpu_exec *ex, const sp_cmd *cmd, sp_matmul_job *j);

/* Tiles a prepared job (row_bytes: one weight row) and runs it on ex's
 * pool. */
void sp_cpu_matmul_run(const sp_cpu_exec *ex, sp_matmul_job *j, uint64_t row_bytes);

/* Asks the cache for the weight bytes a decode loop reaches some rows after
 * row n (matmul.c says how far, and why). */
void sp_cpu_matmul_prefetch(const sp_matmul_job *j, int64_t n);

#endif
