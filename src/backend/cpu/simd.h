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
