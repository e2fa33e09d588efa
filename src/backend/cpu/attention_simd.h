/*
 * attention_simd.h: the two inner loops of CPU attention (attention.c),
 * written for AVX2 and AVX-512 with the sums held in registers:
 *  - scores: q_g . k_c for a block of keys and query heads at once;
 *  - values: acc_g += p_gc * v_c over a chunk of keys.
 * They give the bits of the plain loops they stand for (attention.c's
 * numerics contract), on every table: a score is the table's float dot
 * (kernels.h, contract point 2) and p.V multiplies, then adds, in key
 * order. tests/test_cpu_attention.c compares every table bit for bit.
 */
#ifndef SP_CPU_ATTENTION_SIMD_H
#define SP_CPU_ATTENTION_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The k or v rows of one kv head: row c starts at first + c * stride. */
typedef struct sp_attn_rows {
  const uint8_t *first;
  size_t stride;
  bool f16; /* f16 elements, else f32 */
} sp_attn_rows;

/* p[g * P + c] = scale * (q row g . k row c) for g < G, c < n; q is
 * [G][D] f32. Rows c + ahead are prefetched (the cache is out of the CPU's
 * caches at long contexts). */
typedef void (*sp_attn_scores_fn)(const sp_attn_rows *k, int64_t D, const float *q, int64_t G, int64_t n,
                                  float scale, float *p, int64_t P);

/* acc[g * D + d] = sum over c < n, in key order, of p[g * P + c] * v row c
 * element d (acc = acc + p * v from 0: a multiply, then an add). */
typedef void (*sp_attn_values_fn)(const sp_attn_rows *v, int64_t D, const float *p, int64_t P, int64_t G,
                                  int64_t n, float *acc);

#if defined(__x86_64__) || defined(__i386__)
void sp_attn_scores_avx2(const sp_attn_rows *k, int64_t D, const float *q, int64_t G, int64_t n, float scale,
                         float *p, int64_t P);
void sp_attn_scores_avx512(const sp_attn_rows *k, int64_t D, const float *q, int64_t G, int64_t n, float scale,
                           float *p, int64_t P);
void sp_attn_values_avx2(const sp_attn_rows *v, int64_t D, const float *p, int64_t P, int64_t G, int64_t n,
                         float *acc);
void sp_attn_values_avx512(const sp_attn_rows *v, int64_t D, const float *p, int64_t P, int64_t G, int64_t n,
                           float *acc);
#endif

#endif
