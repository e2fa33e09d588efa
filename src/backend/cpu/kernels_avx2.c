/*
 * kernels_avx2.c: inner loops for x86 CPUs with AVX2, FMA and F16C.
 *
 * Tiles are one weight row by up to four activation rows: each weight
 * vector is loaded (and widened or unpacked) once per tile, and the tile's
 * rows are independent accumulator chains. The
 * numerics contract of kernels.h fixes each row's order: one 8-float
 * accumulator, fused multiply-adds, quantized blocks as the eight exact
 * partials of a maddubs/madd pair. Of the issue-15 types, Q5_0, Q5_1,
 * Q4_K, Q5_K and Q6_K (the types of Q4_K_M and Q5_K_M files, with Q8_0)
 * have loops here; K-quant sub-block scales ride in madd's 16-bit
 * multiplier, so a slice still costs one maddubs/madd pair. Q2_K, Q3_K,
 * IQ4_NL and IQ4_XS have theirs in kernels_avx2_lowbit.c.
 */
#include <math.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_avx2_lowbit.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1, W_Q5_0, W_Q5_1 };

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

/* The last n < 8 elements from i on, zero-padded (fma(0, 0, lane) is the
 * lane, so padding never changes a result). */
SP_AVX2_INLINE __m256 load_w_tail(int kind, const void *w, int64_t i, int64_t n) {
  float t[8] = {0};
  for (int64_t e = 0; e < n; e++) t[e] = load_w1(kind, w, i + e);
  return _mm256_loadu_ps(t);
}
SP_AVX2_INLINE __m256 load_x_tail(const float *x, int64_t n) {
  float t[8] = {0};
  memcpy(t, x, (size_t)n * sizeof *t);
  return _mm256_loadu_ps(t);
}

/* nx activation rows (a constant after inlining) share each weight load. */
SP_AVX2_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                               size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  __m256 acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv = load_w8(kind, w, i);
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[j] + i), acc[j]);
  }
  if (i < k) {
    __m256 wv = load_w_tail(kind, w, i, k - i);
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[j] = _mm256_fmadd_ps(wv, load_x_tail(xr[j] + i, k - i), acc[j]);
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = sp_avx2_hsum(acc[j]);
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

/* Q4_1 and Q5_1: unsigned weights and a min (+ m sx per block). */
static inline bool has_min(int kind) { return kind == W_Q4_1 || kind == W_Q5_1; }

static inline int block_bytes(int kind) {
  return kind == W_Q8_0   ? SP_Q8_0_BYTES
         : kind == W_Q4_0 ? SP_Q4_0_BYTES
         : kind == W_Q5_0 ? SP_Q5_0_BYTES
         : kind == W_Q5_1 ? SP_Q5_1_BYTES
                          : SP_Q4_1_BYTES;
}

/* A block's 32 weights as bytes: signed for Q8_0/Q4_0/Q5_0, unsigned for
 * Q4_1 (0..15) and Q5_1 (0..31). */
SP_AVX2_INLINE __m256i load_wq(int kind, const uint8_t *blk) {
  if (kind == W_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
  if (kind == W_Q4_0) return _mm256_sub_epi8(sp_avx2_nibbles(blk + 2), _mm256_set1_epi8(8));
  if (kind == W_Q5_0) return sp_avx2_q5_0_weights(blk);
  if (kind == W_Q5_1) return sp_avx2_q5_1_weights(blk);
  return sp_avx2_nibbles(blk + 4);
}

/* The eight integer partials of a block's weights with one activation
 * block, as floats (exact). Signed weights go through |w| and x * sign(w). */
SP_AVX2_INLINE __m256 block_partials(int kind, __m256i wq, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  if (has_min(kind)) return sp_avx2_dot_u8i8(wq, xq);
  return sp_avx2_dot_u8i8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
}

/* One row's chain (contract point 3): the 8 lanes and Q4_1's mins. */
typedef struct quant_acc {
  __m256 lanes;
  float mins;
} quant_acc;

/* acc += block blk (weights) x block a (activations). */
SP_AVX2_INLINE void quant_step(int kind, const uint8_t *blk, __m256i wq, const sp_q8_act *a, quant_acc *acc) {
  __m256 s = _mm256_set1_ps(sp_avx2_f16(blk) * a->d);
  acc->lanes = _mm256_fmadd_ps(s, block_partials(kind, wq, a), acc->lanes);
  if (has_min(kind)) acc->mins = fmaf(sp_avx2_f16(blk + 2), a->s, acc->mins);
}

SP_AVX2_INLINE float quant_result(const quant_acc *acc) { return sp_avx2_hsum(acc->lanes) + acc->mins; }

/* One weight row by nx activation rows. */
SP_AVX2_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
                               size_t xs, float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  quant_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (quant_acc){_mm256_setzero_ps(), 0};
  }
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * block_bytes(kind);
    __m256i wq = load_wq(kind, blk);
    SP_UNROLL
    for (int j = 0; j < nx; j++) quant_step(kind, blk, wq, &xr[j][b], &acc[j]);
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = quant_result(&acc[j]);
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
SP_TARGET_AVX2 static void dot_q5_0(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q5_0, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q5_1(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q5_1, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q4_1(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  quant_dot(W_Q4_1, k, w, x, xs, nx, out);
}

/* ---- Q4_K, Q5_K and Q6_K: super-blocks of 8 slices of 32 (contract point 3) ---- */

enum { K_Q4, K_Q5, K_Q6 };

/* One slice's weights as a maddubs pair wants them: u unsigned (Q4_K's
 * 0..15, Q5_K's 0..31, or |q| for Q6_K's signed -32..31) and the signs to
 * move onto the activations (Q6_K), plus the 16-bit sub-scales of its two
 * halves. */
typedef struct k_slice {
  __m256i u, sign, scales;
  __m256i min; /* Q4_K, Q5_K: the slice's integer min in every byte */
} k_slice;

SP_AVX2_INLINE k_slice k_slice_at(int kind, const uint8_t *blk, int t) {
  int sc, mn;
  if (kind != K_Q6) {
    qb_k4_scale_min(blk + 4, t, &sc, &mn);
    __m256i q = kind == K_Q4 ? sp_avx2_q4_k_quants(blk, t) : sp_avx2_q5_k_quants(blk, t);
    return (k_slice){q, _mm256_setzero_si256(), _mm256_set1_epi16((int16_t)sc), _mm256_set1_epi8((char)mn)};
  }
  __m256i q = sp_avx2_q6_k_quants(blk, t);
  const int8_t *sc6 = (const int8_t *)(blk + 192) + 2 * t;
  __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc6[1]), _mm_set1_epi16(sc6[0]));
  return (k_slice){_mm256_sign_epi8(q, q), q, scales, _mm256_setzero_si256()};
}

/* The slice's eight partials sc * sum(q x) with one activation block: the
 * pair sums of maddubs (at most 2 * 63 * 127) times the sub-scale in madd. */
SP_AVX2_INLINE __m256 k_partials(int kind, const k_slice *w, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  if (kind == K_Q6) xq = _mm256_sign_epi8(xq, w->sign);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w->u, xq), w->scales));
}

/* The eight exact min partials mn * sum(x) over elements 4l..4l+3: the
 * splatted min (at most 63) times activation pairs, then pairs of pairs. */
SP_AVX2_INLINE __m256 k_min_partials(const k_slice *w, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  return sp_avx2_dot_u8i8(w->min, xq);
}

/* One row's chains: the 8 lanes and the 8 min lanes (contract point 3). */
typedef struct k_acc {
  __m256 lanes, mins;
} k_acc;

SP_AVX2_INLINE void k_step(int kind, const k_slice *w, float d, float dmin, const sp_q8_act *a, k_acc *acc) {
  acc->lanes = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), k_partials(kind, w, a), acc->lanes);
  if (kind != K_Q6) acc->mins = _mm256_fmadd_ps(_mm256_set1_ps(dmin * a->d), k_min_partials(w, a), acc->mins);
}

static inline int k_block_bytes(int kind) {
  return kind == K_Q4 ? SP_Q4_K_BYTES : kind == K_Q5 ? SP_Q5_K_BYTES : SP_Q6_K_BYTES;
}

/* One weight row of nsb super-blocks by nx activation rows. */
SP_AVX2_INLINE void k_tile(int kind, int nx, int64_t nsb, const uint8_t *w, const void *x, size_t xs,
                           float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  k_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (k_acc){_mm256_setzero_ps(), _mm256_setzero_ps()};
  }
  for (int64_t b = 0; b < nsb; b++) {
    const uint8_t *blk = w + b * k_block_bytes(kind);
    bool q6 = kind == K_Q6;
    float d = sp_avx2_f16(q6 ? blk + 208 : blk), dmin = q6 ? 0.0f : sp_avx2_f16(blk + 2);
    for (int t = 0; t < 8; t++) {
      k_slice ws = k_slice_at(kind, blk, t);
      SP_UNROLL
      for (int j = 0; j < nx; j++) k_step(kind, &ws, d, dmin, &xr[j][8 * b + t], &acc[j]);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = sp_avx2_hsum(acc[j].lanes) - sp_avx2_hsum(acc[j].mins);
}

SP_AVX2_INLINE void k_dot(int kind, int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  int64_t nsb = k / SP_QK_K;
  switch (nx) {
  case 1: k_tile(kind, 1, nsb, w, x, xs, out); break;
  case 2: k_tile(kind, 2, nsb, w, x, xs, out); break;
  case 3: k_tile(kind, 3, nsb, w, x, xs, out); break;
  default: k_tile(kind, 4, nsb, w, x, xs, out); break;
  }
}

SP_TARGET_AVX2 static void dot_q4_k(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  k_dot(K_Q4, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q5_k(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  k_dot(K_Q5, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 static void dot_q6_k(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                    float *out) {
  k_dot(K_Q6, k, w, x, xs, nx, out);
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
            [SP_DTYPE_Q5_0] = dot_q5_0,
            [SP_DTYPE_Q4_K] = dot_q4_k,
            [SP_DTYPE_Q6_K] = dot_q6_k,
            [SP_DTYPE_Q5_1] = dot_q5_1,
            [SP_DTYPE_Q5_K] = dot_q5_k,
            [SP_DTYPE_Q2_K] = sp_cpu_avx2_dot_q2_k,
            [SP_DTYPE_Q3_K] = sp_cpu_avx2_dot_q3_k,
            [SP_DTYPE_IQ4_NL] = sp_cpu_avx2_dot_iq4_nl,
            [SP_DTYPE_IQ4_XS] = sp_cpu_avx2_dot_iq4_xs,
        },
    .gemm = /* prompts (kernels_avx2_tiles.c) */
        {
            [SP_DTYPE_Q8_0] = sp_cpu_avx2_gemm_q8_0,
            [SP_DTYPE_Q5_0] = sp_cpu_avx2_gemm_q5_0,
            [SP_DTYPE_Q4_K] = sp_cpu_avx2_gemm_q4_k,
            [SP_DTYPE_Q6_K] = sp_cpu_avx2_gemm_q6_k,
            [SP_DTYPE_Q5_K] = sp_cpu_avx2_gemm_q5_k,
            [SP_DTYPE_Q3_K] = sp_cpu_avx2_gemm_q3_k,
            [SP_DTYPE_Q2_K] = sp_cpu_avx2_gemm_q2_k,
            [SP_DTYPE_Q4_0] = sp_cpu_avx2_gemm_q4_0,
            [SP_DTYPE_Q4_1] = sp_cpu_avx2_gemm_q4_1,
            [SP_DTYPE_Q5_1] = sp_cpu_avx2_gemm_q5_1,
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
