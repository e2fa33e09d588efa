/*
 * simd.h: the few vector primitives the kernels are written with.
 *
 * Each instruction set gets a handful of small inline helpers: horizontal
 * sums, widening 16-bit floats, unpacking 4-bit nibbles and the 8-bit dot
 * product step. x86 helpers carry a target attribute instead of relying on
 * -m flags, so one binary holds every variant and the backend picks one at
 * run time (kernels_select.c); a function may call helpers of its own
 * target only.
 */
#ifndef SP_CPU_SIMD_H
#define SP_CPU_SIMD_H

#include <stdint.h>
#include <string.h>

/* Fully unrolls a short loop over the register tile (constant trip count
 * after inlining), so per-row accumulators live in registers. */
#define SP_UNROLL _Pragma("GCC unroll 4")

#if defined(__x86_64__) || defined(__i386__)
#define SP_CPU_X86 1
#include <immintrin.h>

#define SP_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SP_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* Sum of the 8 lanes. */
SP_AVX2_INLINE float sp_avx2_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Largest of the 8 lanes. */
SP_AVX2_INLINE float sp_avx2_hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/* One f16 at an (only 2-byte aligned) address, widened. */
SP_AVX2_INLINE float sp_avx2_f16(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

/* 8 consecutive f16 / bf16 values widened to f32. */
SP_AVX2_INLINE __m256 sp_avx2_load_f16(const uint16_t *p) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
SP_AVX2_INLINE __m256 sp_avx2_load_bf16(const uint16_t *p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* 16 bytes of nibbles -> 32 bytes 0..15 in element order (low nibbles are
 * elements 0..15, high nibbles 16..31). */
SP_AVX2_INLINE __m256i sp_avx2_nibbles(const uint8_t *qs) {
  __m128i b = _mm_loadu_si128((const __m128i *)qs);
  __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* 0xff in byte e where bit e of the 32 bits at qh is set (Q5_0/Q5_1's
 * fifth bits): byte e picks qh's byte e / 8 (shuffle), tests bit e % 8. */
SP_AVX2_INLINE __m256i sp_avx2_bits32(const uint8_t *qh) {
  uint32_t bits;
  memcpy(&bits, qh, sizeof bits);
  const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,
                                        2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int32_t)bits), pick);
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* Q5_0's 32 weights as signed bytes -16..15: the nibble, or the nibble
 * - 16 (high bits 0xf0) where the fifth bit is clear. */
SP_AVX2_INLINE __m256i sp_avx2_q5_0_weights(const uint8_t *blk) {
  __m256i clear = _mm256_andnot_si256(sp_avx2_bits32(blk + 2), _mm256_set1_epi8((char)0xf0));
  return _mm256_or_si256(sp_avx2_nibbles(blk + 6), clear);
}

/* Q5_1's 32 weights as unsigned bytes 0..31. */
SP_AVX2_INLINE __m256i sp_avx2_q5_1_weights(const uint8_t *blk) {
  __m256i high = _mm256_and_si256(sp_avx2_bits32(blk + 4), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(sp_avx2_nibbles(blk + 8), high);
}

/* Q4_K slice t (of 8): nibble t % 2 of qs[32 (t / 2) ..] (qs at blk + 16),
 * 32 bytes 0..15 in element order. */
SP_AVX2_INLINE __m256i sp_avx2_q4_k_quants(const uint8_t *blk, int t) {
  __m256i b = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * (t / 2)));
  if (t % 2) b = _mm256_srli_epi16(b, 4);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* Q5_K slice t: Q4_K's nibbles (qs at blk + 48) and, as bit 4, bit t of
 * qh[e] (qh at blk + 16): 32 bytes 0..31. */
SP_AVX2_INLINE __m256i sp_avx2_q5_k_quants(const uint8_t *blk, int t) {
  __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 48 + 32 * (t / 2)));
  if (t % 2) lo = _mm256_srli_epi16(lo, 4);
  __m256i hi = _mm256_loadu_si256((const __m256i *)(blk + 16));
  hi = _mm256_and_si256(_mm256_srli_epi16(hi, t), _mm256_set1_epi8(0x01));
  return _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi8(0x0f)), _mm256_slli_epi16(hi, 4));
}

/* Q6_K slice t = 4h + u (of 8): nibble u / 2 of ql[64h + 32 (u % 2) ..]
 * and bits 2u of qh[32h ..] (qh at blk + 128), minus 32: signed bytes
 * -32..31. The shifts are 16-bit; the masks drop what crosses bytes. */
SP_AVX2_INLINE __m256i sp_avx2_q6_k_quants(const uint8_t *blk, int t) {
  int h = t / 4, u = t % 4;
  __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (u % 2)));
  __m256i hi = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
  lo = _mm256_and_si256(_mm256_srli_epi16(lo, 4 * (u / 2)), _mm256_set1_epi8(0x0f));
  hi = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * u), _mm256_set1_epi8(0x03));
  return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
}

/* Products of unsigned bytes u and signed bytes s, summed in groups of 4,
 * as 8 floats. Exact while each pair sum fits int16 (|u*s| <= 2 * 128 * 127). */
SP_AVX2_INLINE __m256 sp_avx2_dot_u8i8(__m256i u, __m256i s) {
  __m256i p16 = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* The same for two signed operands: |w| * (x with w's sign). */
SP_AVX2_INLINE __m256 sp_avx2_dot_i8(__m256i w, __m256i x) {
  return sp_avx2_dot_u8i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

#define SP_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define SP_AVX512_INLINE \
  static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* 16 consecutive f16 / bf16 values widened to f32. */
SP_AVX512_INLINE __m512 sp_avx512_load_f16(const uint16_t *p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
SP_AVX512_INLINE __m512 sp_avx512_load_bf16(const uint16_t *p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

#endif /* x86 */

#if defined(__aarch64__)
#define SP_CPU_NEON 1
#include <arm_neon.h>

#define SP_NEON_INLINE static inline __attribute__((always_inline))

/* One f16 at an (only 2-byte aligned) address, widened. */
SP_NEON_INLINE float sp_neon_f16(const uint8_t *p) {
  __fp16 h;
  memcpy(&h, p, sizeof h);
  return (float)h;
}

/* 4 consecutive f16 / bf16 values widened to f32. */
SP_NEON_INLINE float32x4_t sp_neon_load_f16(const uint16_t *p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
SP_NEON_INLINE float32x4_t sp_neon_load_bf16(const uint16_t *p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

/* The four exact partials of 16 signed byte pairs: lane l sums elements
 * 4l..4l+3 (contract point 3 of kernels.h). SDOT where the compiler
 * targets ARMv8.2 dotprod; else widening multiplies and pairwise adds. */
SP_NEON_INLINE int32x4_t sp_neon_partials_i8(int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(vdupq_n_s32(0), a, b);
#else
  int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));   /* pairs of 0..7 */
  int32x4_t hi = vpaddlq_s16(vmull_s8(vget_high_s8(a), vget_high_s8(b))); /* pairs of 8..15 */
  return vpaddq_s32(lo, hi);
#endif
}
#endif /* aarch64 */

#endif
