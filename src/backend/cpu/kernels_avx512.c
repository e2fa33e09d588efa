/*
 * kernels_avx512.c: inner loops for x86 CPUs with AVX-512 F/BW/VL.
 *
 * A float dot's 16 contract lanes (kernels.h) are exactly one 512-bit
 * register, and masked loads handle the tail (masked-off lanes read 0 and
 * are never touched). Quantized dots keep the AVX2 lane layout; where the
 * CPU has AVX-512 VNNI, one vpdpbusd replaces each maddubs/madd pair and
 * gives the same eight exact partials. AVX-512 BF16's dot instruction is
 * not used: it flushes subnormals and sums pairs before rounding, which
 * the contract does not allow.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1 };

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

/* The contract's 16-lane tree: halves first, then the 8-lane tree. */
SP_AVX512_INLINE float lanes16_sum(__m512 v) {
  __m256 lo = _mm512_castps512_ps256(v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return sp_avx2_hsum(_mm256_add_ps(lo, hi));
}

/* nx rows (a constant after inlining) share each weight load: lanes +=
 * w * x, rounded product then sum (contract point 1). */
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
      acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(wv, _mm512_maskz_loadu_ps(m, xr[j] + i)));
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes16_sum(acc[j]);
}

SP_AVX512_INLINE void float_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                                int nx, float *out) {
  switch (nx) {
  case 1: float_tile(kind, 1, k, w, x, xs, out); break;
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

/* ---- quantized weights (VNNI) ---- */

#define SP_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SP_VNNI_INLINE \
  static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static inline int block_bytes(int kind) {
  return kind == W_Q8_0 ? SP_Q8_0_BYTES : kind == W_Q4_0 ? SP_Q4_0_BYTES : SP_Q4_1_BYTES;
}

/* A block's 32 weights as bytes: signed for Q8_0/Q4_0, 0..15 for Q4_1. */
SP_VNNI_INLINE __m256i load_wq(int kind, const uint8_t *blk) {
  if (kind == W_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
  if (kind == W_Q4_0) return _mm256_sub_epi8(sp_avx2_nibbles(blk + 2), _mm256_set1_epi8(8));
  return sp_avx2_nibbles(blk + 4);
}

/* The eight exact partials (contract point 3), one vpdpbusd: unsigned
 * weights (|w|, or Q4_1's 0..15) times signed activations (x * sign(w)). */
SP_VNNI_INLINE __m256 block_partials(int kind, __m256i wq, __m256i wabs, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  __m256i u = kind == W_Q4_1 ? wq : wabs, s = kind == W_Q4_1 ? xq : _mm256_sign_epi8(xq, wq);
  return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
}

typedef struct quant_acc {
  __m256 lanes[2]; /* even blocks, odd blocks */
  float mins[2];
} quant_acc;

SP_VNNI_INLINE void quant_block(int kind, int nx, const uint8_t *w, int64_t b,
                                const sp_q8_act *const *xr, quant_acc *acc) {
  const uint8_t *blk = w + b * block_bytes(kind);
  __m256i wq = load_wq(kind, blk);
  __m256i wabs = kind == W_Q4_1 ? wq : _mm256_sign_epi8(wq, wq);
  float dw = sp_avx2_f16(blk), mw = kind == W_Q4_1 ? sp_avx2_f16(blk + 2) : 0;
  int odd = (int)(b & 1);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    const sp_q8_act *a = &xr[j][b];
    __m256 p = _mm256_mul_ps(_mm256_set1_ps(dw * a->d), block_partials(kind, wq, wabs, a));
    acc[j].lanes[odd] = _mm256_add_ps(acc[j].lanes[odd], p);
    if (kind == W_Q4_1) acc[j].mins[odd] += mw * a->s;
  }
}

SP_VNNI_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
                               size_t xs, float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  quant_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j].lanes[0] = acc[j].lanes[1] = _mm256_setzero_ps();
    acc[j].mins[0] = acc[j].mins[1] = 0;
  }
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    quant_block(kind, nx, w, b, xr, acc);
    quant_block(kind, nx, w, b + 1, xr, acc);
  }
  if (b < nb) quant_block(kind, nx, w, b, xr, acc);
  SP_UNROLL
  for (int j = 0; j < nx; j++)
    out[j] = sp_avx2_hsum(_mm256_add_ps(acc[j].lanes[0], acc[j].lanes[1])) +
             (acc[j].mins[0] + acc[j].mins[1]);
}

SP_VNNI_INLINE void quant_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  int64_t nb = k / SP_QK;
  switch (nx) {
  case 1: quant_tile(kind, 1, nb, w, x, xs, out); break;
  case 2: quant_tile(kind, 2, nb, w, x, xs, out); break;
  case 3: quant_tile(kind, 3, nb, w, x, xs, out); break;
  default: quant_tile(kind, 4, nb, w, x, xs, out); break;
  }
}

SP_TARGET_VNNI static void dot_q8_0_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q8_0, k, w, x, xs, nx, out);
}
SP_TARGET_VNNI static void dot_q4_0_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q4_0, k, w, x, xs, nx, out);
}
SP_TARGET_VNNI static void dot_q4_1_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q4_1, k, w, x, xs, nx, out);
}

/* ---- activation quantization (contract point 4) ---- */

/* round-half-even(v * id), NaN products zeroed, clamped to int8 range. */
SP_AVX512_INLINE __m512i quantize16(__m512 v, __m512 id) {
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(q, q, _CMP_ORD_Q), q);
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  return _mm512_cvtps_epi32(q);
}

/* The 16 int32 lanes summed; the lanes are within +-127, so no overflow. */
SP_AVX512_INLINE int32_t sum16(__m512i v) {
  __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s4);
}

/* max_ps returns its second operand when either is NaN, so max(|v|, m)
 * skips NaN elements. */
SP_TARGET_AVX512 static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 m = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
    float amax = _mm512_reduce_max_ps(m);
    bool nan = (_mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q)) != 0;
    __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    __m512i q0 = quantize16(v0, id), q1 = quantize16(v1, id);
    _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
    sp_q8_act_set_scale(&y[b], nan ? NAN : amax / 127.0f, sum16(_mm512_add_epi32(q0, q1)));
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

/* Quantized dots: the VNNI ones where the CPU has it, else AVX2's (the
 * same bits either way). 512-bit quantized dots were measured no faster on
 * a Sapphire Rapids core: unpacking nibbles and per-block scales dominate. */
static sp_cpu_kernels avx512_kernels;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void avx512_init(void) {
  avx512_kernels = *sp_cpu_kernels_avx2();
  avx512_kernels.name = "avx512";
  avx512_kernels.dot[SP_DTYPE_F32] = dot_f32;
  avx512_kernels.dot[SP_DTYPE_F16] = dot_f16;
  avx512_kernels.dot[SP_DTYPE_BF16] = dot_bf16;
  if (__builtin_cpu_supports("avx512vnni")) {
    avx512_kernels.dot[SP_DTYPE_Q8_0] = dot_q8_0_vnni;
    avx512_kernels.dot[SP_DTYPE_Q4_0] = dot_q4_0_vnni;
    avx512_kernels.dot[SP_DTYPE_Q4_1] = dot_q4_1_vnni;
  }
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
