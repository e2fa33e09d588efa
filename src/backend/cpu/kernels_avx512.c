/*
 * kernels_avx512.c: inner loops for x86 CPUs with AVX-512 F/BW/VL.
 *
 * The float tiles of kernels_avx2.c with 16-float vectors and masked tails
 * (masked-off lanes are never touched), which pay off for batched f32/f16/
 * bf16 matmuls, plus activation quantization and elementwise loops. The
 * quantized dots come from the AVX2 table (see avx512_init).
 */
#include <pthread.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { W_F32, W_F16, W_BF16 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* ---- f32 / f16 / bf16 weights times f32 activations ---- */

/* 16 weights from element i on; lanes at or past `valid` read as 0. */
SP_AVX512_INLINE __m512 load_w16(int kind, const void *w, int64_t i, __mmask16 valid) {
  if (kind == W_F32) return _mm512_maskz_loadu_ps(valid, (const float *)w + i);
  __m256i h = _mm256_maskz_loadu_epi16(valid, (const uint16_t *)w + i);
  if (kind == W_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

SP_AVX512_INLINE __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1); }

/* One row: four accumulators over 64 elements per step, masked tail. */
SP_AVX512_INLINE float float_dot1(int kind, int64_t k, const void *w, const float *x) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    a0 = _mm512_fmadd_ps(load_w16(kind, w, i, 0xffff), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(load_w16(kind, w, i + 16, 0xffff), _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(load_w16(kind, w, i + 32, 0xffff), _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(load_w16(kind, w, i + 48, 0xffff), _mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i < k; i += 16) {
    __mmask16 m = k - i >= 16 ? 0xffff : tail_mask(k - i);
    a0 = _mm512_fmadd_ps(load_w16(kind, w, i, m), _mm512_maskz_loadu_ps(m, x + i), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

SP_AVX512_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                                 size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  __m512 acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < k; i += 16) {
    __mmask16 m = k - i >= 16 ? 0xffff : tail_mask(k - i);
    __m512 wv = load_w16(kind, w, i, m);
    SP_UNROLL
    for (int j = 0; j < nx; j++)
      acc[j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, xr[j] + i), acc[j]);
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

SP_AVX512_INLINE void float_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                                int nx, float *out) {
  switch (nx) {
  case 1: out[0] = float_dot1(kind, k, w, x); break;
  case 2: float_tile(kind, 2, k, w, x, xs, out); break;
  case 3: float_tile(kind, 3, k, w, x, xs, out); break;
  default: float_tile(kind, 4, k, w, x, xs, out); break;
  }
}

SP_TARGET_AVX512 static void dot_f32(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                     float *out) {
  float_dot(W_F32, k, w, x, xs, nx, out);
}
SP_TARGET_AVX512 static void dot_f16(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                     float *out) {
  float_dot(W_F16, k, w, x, xs, nx, out);
}
SP_TARGET_AVX512 static void dot_bf16(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                      float *out) {
  float_dot(W_BF16, k, w, x, xs, nx, out);
}

/* Same formula as the generic version: d = max|x| / 127 and
 * q = round_even(x * (127 / max|x|)). */
SP_TARGET_AVX512 static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
    sp_q8_act_set_scale(&y[b], amax / 127.0f, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
  }
}

/* ---- elementwise ---- */

SP_TARGET_AVX512 static void add_f32(float *d, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xffff : tail_mask(n - i);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(d + i, m, v);
  }
}

SP_TARGET_AVX512 static void mul_f32(float *d, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xffff : tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(d + i, m, v);
  }
}

SP_TARGET_AVX512 static void scale_f32(float *d, const float *a, float s, int64_t n) {
  __m512 sv = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xffff : tail_mask(n - i);
    _mm512_mask_storeu_ps(d + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), sv));
  }
}

/* Quantized dots are the AVX2 ones: measured on a Sapphire Rapids core,
 * 512-bit versions (with or without VNNI) were no faster, since unpacking
 * nibbles and per-block scales dominate, not the multiply-adds. */
static sp_cpu_kernels avx512_kernels;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void avx512_init(void) {
  avx512_kernels = *sp_cpu_kernels_avx2();
  avx512_kernels.name = "avx512";
  avx512_kernels.dot[SP_DTYPE_F32] = dot_f32;
  avx512_kernels.dot[SP_DTYPE_F16] = dot_f16;
  avx512_kernels.dot[SP_DTYPE_BF16] = dot_bf16;
  avx512_kernels.quantize_q8 = quantize_q8;
  avx512_kernels.add = add_f32;
  avx512_kernels.mul = mul_f32;
  avx512_kernels.scale = scale_f32;
}

const sp_cpu_kernels *sp_cpu_kernels_avx512(void) {
  pthread_once(&avx512_once, avx512_init);
  return &avx512_kernels;
}

#else

const sp_cpu_kernels *sp_cpu_kernels_avx512(void) { return NULL; }

#endif
