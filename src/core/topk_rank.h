/*
 * topk_rank.h: the order of SP_OP_TOPK as one 64-bit integer per element,
 * shared by the CPU and CUDA kernels so both pick the same indices.
 *
 * The high half orders the values (a float's bits, made monotonic; -0 is
 * folded into +0 and every NaN sits below -inf), the low half is the
 * inverted index, so of equal values the smaller index ranks higher. Two
 * elements of a row never share a rank.
 */
#ifndef SP_CORE_TOPK_RANK_H
#define SP_CORE_TOPK_RANK_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define SP_TOPK_FN static __host__ __device__ __forceinline__
#else
#define SP_TOPK_FN static inline
#endif

/* The value's place in the order: larger value, larger key; NaN is 0. */
SP_TOPK_FN uint32_t sp_topk_key(float x) {
  if (x != x) return 0;
  if (x == 0.0f) x = 0.0f; /* -0 ranks as +0 */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

SP_TOPK_FN uint64_t sp_topk_rank(uint32_t key, uint32_t index) {
  return (uint64_t)key << 32 | (uint32_t)~index;
}

SP_TOPK_FN uint32_t sp_topk_index(uint64_t rank) { return ~(uint32_t)rank; }

#endif
