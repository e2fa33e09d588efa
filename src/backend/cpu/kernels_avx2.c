/*
 * kernels_avx2.c: inner loops for x86 CPUs with AVX2, FMA and F16C.
 *
 * Tiles are one weight row by up to four activation rows: each weight
 * vector is loaded (and widened or unpacked) once and used for every row.
 * The numerics contract of kernels.h fixes the lanes: a float dot keeps 16
 * lanes in two 8-float accumulators, a quantized dot one accumulator for
 * even blocks and one for odd ones, filled with the eight exact partials of
 * a maddubs/madd pair. Products are rounded before they are added (no FMA).
 */
#include <math.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* ---- f32 / f16 / bf16 weights times f32 activations ---- */

SP_AVX2_INLINE __m256 load_w8(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return _mm256_loadu_ps((const float *)w + i);
  if (kind == W_F16) return sp_avx2_load_f16((const uint16_t *)w + i);
  return sp_avx2_load_bf16((const uint16_t *)w + i);
}

SP_AVX2_INLINE float load_w1(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return ((const float *)w)[i];
  uint16_t h;
  memcpy(&h, (const uint8_t *)w + 2 * i, sizeof h);
  if (kind == W_F16) return _cvtsh_ss(h);
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* lanes += w * x, products rounded first (contract point 1). */
SP_AVX2_INLINE __m256 mul_add(__m256 lanes, __m256 w, __m256 x) {
  return _mm256_add_ps(lanes, _mm256_mul_ps(w, x));
}

/* The contract's 16-lane tree: lo holds lanes 0..7, hi lanes 8..15. */
SP_AVX2_INLINE float lanes16_sum(__m256 lo, __m256 hi) { return sp_avx2_hsum(_mm256_add_ps(lo, hi)); }

/* nx rows (a constant after inlining) share each weight load; 16 elements
 * per step; the last partial step reads zero-padded copies (a lane plus
 * 0 * 0 is the lane, so padding never changes a result). */
SP_AVX2_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                               size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  __m256 lo[SP_CPU_MAX_NX], hi[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    lo[j] = hi[j] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m256 w0 = load_w8(kind, w, i), w1 = load_w8(kind, w, i + 8);
    SP_UNROLL
    for (int j = 0; j < nx; j++) {
      lo[j] = mul_add(lo[j], w0, _mm256_loadu_ps(xr[j] + i));
      hi[j] = mul_add(hi[j], w1, _mm256_loadu_ps(xr[j] + i + 8));
    }
  }
  if (i < k) {
    float wt[16] = {0}, xt[16];
    for (int64_t t = 0; t < k - i; t++) wt[t] = load_w1(kind, w, i + t);
    __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8);
    SP_UNROLL
    for (int j = 0; j < nx; j++) {
      memset(xt, 0, sizeof xt);
      memcpy(xt, xr[j] + i, (size_t)(k - i) * sizeof(float));
      lo[j] = mul_add(lo[j], w0, _mm256_loadu_ps(xt));
      hi[j] = mul_add(hi[j], w1, _mm256_loadu_ps(xt + 8));
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes16_sum(lo[j], hi[j]);
}

SP_AVX2_INLINE void float_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  switch (nx) {
  case 1: float_tile(kind, 1, k, w, x, xs, out); break;
  case 2: float_tile(kind, 2, k, w, x, xs, out); break;
  case 3: float_tile(kind, 3, k, w, x, xs, out); break;
  default: float_tile(kind, 4, k, w, x, xs, out); break;
  }
}

SP_TARGET_AVX2 static void dot_f32(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                   float *out) {
  float_dot(W_F32, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_f16(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                   float *out) {
  float_dot(W_F16, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_bf16(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  float_dot(W_BF16, k, w, x, xs, nx, out);
}

/* ---- quantized weights times sp_q8_act activations ---- */

static inline int block_bytes(int kind) {
  return kind == W_Q8_0 ? SP_Q8_0_BYTES : kind == W_Q4_0 ? SP_Q4_0_BYTES : SP_Q4_1_BYTES;
}

/* A block's 32 weights as bytes: signed for Q8_0/Q4_0, 0..15 for Q4_1. */
SP_AVX2_INLINE __m256i load_wq(int kind, const uint8_t *blk) {
  if (kind == W_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
  if (kind == W_Q4_0) return _mm256_sub_epi8(sp_avx2_nibbles(blk + 2), _mm256_set1_epi8(8));
  return sp_avx2_nibbles(blk + 4);
}

/* The eight integer partials of a block's weights with one activation
 * block, as floats (exact). Signed weights go through |w| and x * sign(w). */
SP_AVX2_INLINE __m256 block_partials(int kind, __m256i wq, __m256i wabs, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  if (kind == W_Q4_1) return sp_avx2_dot_u8i8(wq, xq);
  return sp_avx2_dot_u8i8(wabs, _mm256_sign_epi8(xq, wq));
}

/* Per activation row: the even-block and odd-block lanes, and the Q4_1
 * mins by block parity (contract point 3). */
typedef struct quant_acc {
  __m256 lanes[2];
  float mins[2];
} quant_acc;

/* Block b of a weight row against block b of nx activation rows. */
SP_AVX2_INLINE void quant_block(int kind, int nx, const uint8_t *w, int64_t b,
                                const sp_q8_act *const *xr, quant_acc *acc) {
  const uint8_t *blk = w + b * block_bytes(kind);
  __m256i wq = load_wq(kind, blk);
  __m256i wabs = kind == W_Q4_1 ? wq : _mm256_sign_epi8(wq, wq);
  float dw = sp_avx2_f16(blk), mw = kind == W_Q4_1 ? sp_avx2_f16(blk + 2) : 0;
  int odd = (int)(b & 1);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    const sp_q8_act *a = &xr[j][b];
    __m256 p = block_partials(kind, wq, wabs, a);
    acc[j].lanes[odd] = mul_add(acc[j].lanes[odd], _mm256_set1_ps(dw * a->d), p);
    if (kind == W_Q4_1) acc[j].mins[odd] += mw * a->s;
  }
}

SP_AVX2_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
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
    out[j] = lanes16_sum(acc[j].lanes[0], acc[j].lanes[1]) + (acc[j].mins[0] + acc[j].mins[1]);
}

SP_AVX2_INLINE void quant_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  int64_t nb = k / SP_QK;
  switch (nx) {
  case 1: quant_tile(kind, 1, nb, w, x, xs, out); break;
  case 2: quant_tile(kind, 2, nb, w, x, xs, out); break;
  case 3: quant_tile(kind, 3, nb, w, x, xs, out); break;
  default: quant_tile(kind, 4, nb, w, x, xs, out); break;
  }
}

SP_TARGET_AVX2 static void dot_q8_0(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q8_0, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q4_0(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q4_0, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q4_1(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q4_1, k, w, x, xs, nx, out);
}

/* Contract point 4. max_ps returns its second operand when either is NaN,
 * so max(|v|, m) skips NaN elements; NaN products are zeroed before the
 * conversion, and the clamp keeps every value in int8 range. */
SP_AVX2_INLINE __m256i quantize8(__m256 v, __m256 id) {
  __m256 q = _mm256_round_ps(_mm256_mul_ps(v, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm256_and_ps(q, _mm256_cmp_ps(q, q, _CMP_ORD_Q));
  q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
  return _mm256_cvtps_epi32(q);
}

SP_TARGET_AVX2 static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    __m256 v[4], m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    SP_UNROLL
    for (int i = 0; i < 4; i++) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      m = _mm256_max_ps(_mm256_and_ps(v[i], abs_mask), m);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q));
    }
    float amax = sp_avx2_hmax(m);
    __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    __m256i q[4];
    SP_UNROLL
    for (int i = 0; i < 4; i++) q[i] = quantize8(v[i], id);
    __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    /* packs interleave 4-byte groups across lanes; the permute restores order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)y[b].qs, _mm256_permutevar8x32_epi32(p, order));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    float d = _mm256_movemask_ps(nan) ? NAN : amax / 127.0f;
    sp_q8_act_set_scale(&y[b], d, _mm_cvtsi128_si32(s4));
  }
}

/* ---- elementwise ---- */

SP_TARGET_AVX2 static void add_f32(float *d, const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; i++) d[i] = a[i] + b[i];
}

SP_TARGET_AVX2 static void mul_f32(float *d, const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; i++) d[i] = a[i] * b[i];
}

SP_TARGET_AVX2 static void scale_f32(float *d, const float *a, float s, int64_t n) {
  __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), sv));
  for (; i < n; i++) d[i] = a[i] * s;
}

static const sp_cpu_kernels avx2_kernels = {
    .name = "avx2",
    .dot =
        {
            [SP_DTYPE_F32] = dot_f32,
            [SP_DTYPE_F16] = dot_f16,
            [SP_DTYPE_BF16] = dot_bf16,
            [SP_DTYPE_Q8_0] = dot_q8_0,
            [SP_DTYPE_Q4_0] = dot_q4_0,
            [SP_DTYPE_Q4_1] = dot_q4_1,
        },
    .quantize_q8 = quantize_q8,
    .add = add_f32,
    .mul = mul_f32,
    .scale = scale_f32,
};

const sp_cpu_kernels *sp_cpu_kernels_avx2(void) { return &avx2_kernels; }

#else

const sp_cpu_kernels *sp_cpu_kernels_avx2(void) { return NULL; }

#endif
