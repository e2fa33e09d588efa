/*
 * kernels_avx512.c: inner loops for x86 CPUs with AVX-512 F/BW/VL.
 *
 * The numerics contract (kernels.h) keeps one 8-float accumulator per row,
 * so float dots are the AVX2 table's. Where the CPU has AVX-512 VNNI, the
 * quantized dots use one vpdpbusd per block instead of a maddubs/madd
 * pair: the same eight exact partials, one instruction (Q4_K and Q6_K
 * then multiply by the sub-block scale in 32 bits). Activation
 * quantization and elementwise loops use 512-bit vectors with masked tails
 * (masked-off lanes are never touched). AVX-512 BF16's dot instruction is
 * not used: it flushes subnormals and sums pairs before rounding, which
 * the contract does not allow.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { W_Q8_0, W_Q4_0, W_Q4_1, W_Q5_0, W_Q5_1 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

SP_AVX512_INLINE __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1); }

/* ---- quantized weights (VNNI) ---- */

#define SP_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SP_VNNI_INLINE \
  static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

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
SP_VNNI_INLINE __m256i load_wq(int kind, const uint8_t *blk) {
  if (kind == W_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
  if (kind == W_Q4_0) return _mm256_sub_epi8(sp_avx2_nibbles(blk + 2), _mm256_set1_epi8(8));
  if (kind == W_Q5_0) return sp_avx2_q5_0_weights(blk);
  if (kind == W_Q5_1) return sp_avx2_q5_1_weights(blk);
  return sp_avx2_nibbles(blk + 4);
}

/* The eight exact partials (contract point 3), one vpdpbusd: unsigned
 * weights (|w|, or Q4_1's 0..15) times signed activations (x * sign(w)). */
SP_VNNI_INLINE __m256 block_partials(int kind, __m256i wq, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  __m256i u = has_min(kind) ? wq : _mm256_sign_epi8(wq, wq);
  __m256i sx = has_min(kind) ? xq : _mm256_sign_epi8(xq, wq);
  return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, sx));
}

/* One row's chain: the 8 lanes and Q4_1's mins. */
typedef struct quant_acc {
  __m256 lanes;
  float mins;
} quant_acc;

SP_VNNI_INLINE void quant_step(int kind, const uint8_t *blk, __m256i wq, const sp_q8_act *a, quant_acc *acc) {
  __m256 s = _mm256_set1_ps(sp_avx2_f16(blk) * a->d);
  acc->lanes = _mm256_fmadd_ps(s, block_partials(kind, wq, a), acc->lanes);
  if (has_min(kind)) acc->mins = fmaf(sp_avx2_f16(blk + 2), a->s, acc->mins);
}

SP_VNNI_INLINE float quant_result(const quant_acc *acc) { return sp_avx2_hsum(acc->lanes) + acc->mins; }

/* One weight row by nx activation rows. */
SP_VNNI_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
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
SP_TARGET_VNNI static void dot_q5_0_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q5_0, k, w, x, xs, nx, out);
}
SP_TARGET_VNNI static void dot_q5_1_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q5_1, k, w, x, xs, nx, out);
}
SP_TARGET_VNNI static void dot_q4_1_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  quant_dot(W_Q4_1, k, w, x, xs, nx, out);
}

/* ---- Q4_K and Q6_K (VNNI): super-blocks of 8 slices of 32 (Q5_K: AVX2's) ---- */

/* One slice: unsigned weights u (Q4_K's 0..15, |q| for Q6_K), the signs
 * to move onto the activations (Q6_K), and the 32-bit sub-scales of the
 * slice's two halves (lanes 0..3 and 4..7). */
typedef struct k_slice {
  __m256i u, sign, scales;
  __m256i min; /* Q4_K: the slice's integer min in every byte */
} k_slice;

SP_VNNI_INLINE k_slice q4_k_slice(const uint8_t *blk, int t) {
  int sc, mn;
  qb_k4_scale_min(blk + 4, t, &sc, &mn);
  return (k_slice){sp_avx2_q4_k_quants(blk, t), _mm256_setzero_si256(), _mm256_set1_epi32(sc),
                   _mm256_set1_epi8((char)mn)};
}

SP_VNNI_INLINE k_slice q6_k_slice(const uint8_t *blk, int t) {
  __m256i q = sp_avx2_q6_k_quants(blk, t);
  const int8_t *sc = (const int8_t *)(blk + 192) + 2 * t;
  __m256i scales = _mm256_set_m128i(_mm_set1_epi32(sc[1]), _mm_set1_epi32(sc[0]));
  return (k_slice){_mm256_sign_epi8(q, q), q, scales, _mm256_setzero_si256()};
}

/* The eight exact partials sc * sum(q x): one vpdpbusd for the sums of
 * four, one 32-bit multiply for the sub-scale (|result| < 2^22). */
SP_VNNI_INLINE __m256 k_partials(bool q6, const k_slice *w, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  if (q6) xq = _mm256_sign_epi8(xq, w->sign);
  __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w->u, xq);
  return _mm256_cvtepi32_ps(_mm256_mullo_epi32(sums, w->scales));
}

/* The eight exact min partials mn * sum(x) over elements 4l..4l+3: one
 * vpdpbusd of the splatted min (at most 63) and the activations. */
SP_VNNI_INLINE __m256 k_min_partials(const k_slice *w, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w->min, xq));
}

/* One row's chains: the 8 lanes and the 8 min lanes (contract point 3). */
typedef struct k_acc {
  __m256 lanes, mins;
} k_acc;

SP_VNNI_INLINE void k_step(bool q6, const k_slice *w, float d, float dmin, const sp_q8_act *a, k_acc *acc) {
  acc->lanes = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), k_partials(q6, w, a), acc->lanes);
  if (!q6) acc->mins = _mm256_fmadd_ps(_mm256_set1_ps(dmin * a->d), k_min_partials(w, a), acc->mins);
}

/* One weight row of nsb super-blocks by nx activation rows. */
SP_VNNI_INLINE void k_tile(bool q6, int nx, int64_t nsb, const uint8_t *w, const void *x, size_t xs,
                           float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  k_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (k_acc){_mm256_setzero_ps(), _mm256_setzero_ps()};
  }
  for (int64_t b = 0; b < nsb; b++) {
    const uint8_t *blk = w + b * (q6 ? SP_Q6_K_BYTES : SP_Q4_K_BYTES);
    float d = sp_avx2_f16(q6 ? blk + 208 : blk), dmin = q6 ? 0.0f : sp_avx2_f16(blk + 2);
    for (int t = 0; t < 8; t++) {
      k_slice ws = q6 ? q6_k_slice(blk, t) : q4_k_slice(blk, t);
      SP_UNROLL
      for (int j = 0; j < nx; j++) k_step(q6, &ws, d, dmin, &xr[j][8 * b + t], &acc[j]);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = sp_avx2_hsum(acc[j].lanes) - sp_avx2_hsum(acc[j].mins);
}

SP_VNNI_INLINE void k_dot(bool q6, int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  int64_t nsb = k / SP_QK_K;
  switch (nx) {
  case 1: k_tile(q6, 1, nsb, w, x, xs, out); break;
  case 2: k_tile(q6, 2, nsb, w, x, xs, out); break;
  case 3: k_tile(q6, 3, nsb, w, x, xs, out); break;
  default: k_tile(q6, 4, nsb, w, x, xs, out); break;
  }
}

SP_TARGET_VNNI static void dot_q4_k_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  k_dot(false, k, w, x, xs, nx, out);
}
SP_TARGET_VNNI static void dot_q6_k_vnni(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                         float *out) {
  k_dot(true, k, w, x, xs, nx, out);
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

/* Float dots are AVX2's (the contract's single 8-lane chain per row has no
 * use for 16 lanes). Quantized dots: the VNNI ones where the CPU has it,
 * else AVX2's (the same bits either way). */
static sp_cpu_kernels avx512_kernels;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void avx512_init(void) {
  avx512_kernels = *sp_cpu_kernels_avx2();
  avx512_kernels.name = "avx512";
  if (__builtin_cpu_supports("avx512vnni")) {
    avx512_kernels.dot[SP_DTYPE_Q8_0] = dot_q8_0_vnni;
    avx512_kernels.dot[SP_DTYPE_Q4_0] = dot_q4_0_vnni;
    avx512_kernels.dot[SP_DTYPE_Q4_1] = dot_q4_1_vnni;
    avx512_kernels.dot[SP_DTYPE_Q5_0] = dot_q5_0_vnni;
    avx512_kernels.dot[SP_DTYPE_Q5_1] = dot_q5_1_vnni;
    avx512_kernels.dot[SP_DTYPE_Q4_K] = dot_q4_k_vnni;
    avx512_kernels.dot[SP_DTYPE_Q6_K] = dot_q6_k_vnni;
    sp_cpu_avx512_vnni_gemms(avx512_kernels.gemm);
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
