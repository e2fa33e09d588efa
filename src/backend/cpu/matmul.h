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

/* Decode streams each weight row once, one dot call per row, and the
 * hardware prefetchers alone left it far under the memory's rate: asking
 * for the weights this many bytes ahead took greedy decode on the 2-core
 * AVX-512 machine from ~47 to ~60-70 tok/s (Gemma 3 270M Q4_K_M, whose
 * 262,144-row output matrix is most of a token) and ~115 to ~125-155 tok/s
 * (SmolLM2 Q4_1), interleaved runs (BENCHMARKS.md). */
#define SP_MM_PREFETCH_BYTES 4096

/* Asks the cache for the bytes, one row long, that lie SP_MM_PREFETCH_BYTES
 * past row n, as far as the weights go. Inline: decode loops call it per
 * row. Offsets, not pointers: one past the weights would be undefined. */
static inline void sp_cpu_matmul_prefetch(const sp_matmul_job *j, int64_t n) {
  size_t total = (size_t)j->n * j->w_stride, at = (size_t)n * j->w_stride + SP_MM_PREFETCH_BYTES;
  for (size_t end = at + j->w_stride; at < end && at < total; at += 64) __builtin_prefetch(j->w + at);
}

#endif
