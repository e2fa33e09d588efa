/*
 * kernels_avx2_tiles.c: prompt products (gemm entries) for x86 CPUs with
 * AVX2, for the weight types of K-quant files: Q8_0, Q5_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K, and Q4_0, Q4_1, Q5_1 (Q4_1, Q5_1: unsigned, with the
 * dot's scalar min chain, kept per output as a lane of a 4-float vector,
 * one fma per block, added last).
 *
 * The same plan as kernels_avx512_tiles.c, with AVX2's 16 registers and
 * without vpdpbusd: a chunk of weight rows (DEC_BYTES) is decoded once
 * into |q|, q (the signs to move onto the activations), 16-bit sub-scales
 * and float scales, then meets every activation row of the call in
 * register tiles of two weight rows (the min types Q2_K, Q4_K, Q5_K: one,
 * with its min lanes) by
 * four activation rows. Each output gets the dot table's operations
 * (kernels.h, "Numerics contract", point 3): the partials are the AVX2
 * dot's maddubs/madd pair (exact: |q| <= 128 gives pair sums within
 * int16), s_b = d_w * dx_b rounded once (eight blocks per multiply, read
 * back as broadcasts), one fma per block into each lane, the same
 * reduction. The min partials mn * (sums of four activations) are
 * exact float products of sums made once per activation group. Rows too
 * long for the per-group tables (k > 8192) run the AVX2 dot.
 */
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

#define T2_NX 4                /* activation rows per register tile */
#define T2_MAX_BLOCKS 256      /* 32-blocks per row the group tables hold (k <= 8192) */
#define T2_DEC_BYTES (48 << 10) /* decoded weight rows per chunk */

enum { T_Q8_0, T_Q5_0, T_Q4_K, T_Q6_K, T_Q5_K, T_Q3_K, T_Q2_K, T_Q4_0, T_Q4_1, T_Q5_1 };

/* Q4_1 and Q5_1: unsigned quants and the scalar min chain m = fma(mw_b, sx_b, m), added last. */
static inline bool has_m1(int kind) { return kind == T_Q4_1 || kind == T_Q5_1; }

static inline bool is_k(int kind) { return kind >= T_Q4_K && kind <= T_Q2_K; }

/* The K types with a min chain: unsigned quants (no signs to move), and
 * contract point 3's min lanes. */
static inline bool has_min(int kind) { return kind == T_Q4_K || kind == T_Q5_K || kind == T_Q2_K; }

/* Unsigned quants: no signs to move onto the activations. */
static inline bool is_unsigned(int kind) { return has_min(kind) || has_m1(kind); }

static inline int t2_block_bytes(int kind) {
  switch (kind) {
  case T_Q8_0: return SP_Q8_0_BYTES;
  case T_Q5_0: return SP_Q5_0_BYTES;
  case T_Q4_0: return SP_Q4_0_BYTES;
  case T_Q4_1: return SP_Q4_1_BYTES;
  case T_Q5_1: return SP_Q5_1_BYTES;
  case T_Q4_K: return SP_Q4_K_BYTES;
  case T_Q5_K: return SP_Q5_K_BYTES;
  case T_Q3_K: return 110;
  case T_Q2_K: return 84;
  default: return SP_Q6_K_BYTES;
  }
}

/* Byte offsets of a block's f16 scale and (min types) dmin. */
static inline int d_offset(int kind) {
  return kind == T_Q6_K ? 208 : kind == T_Q3_K ? 108 : kind == T_Q2_K ? 80 : 0;
}
static inline int dmin_offset(int kind) { return kind == T_Q2_K ? 82 : 2; }

/* Where a decoded row keeps its parts (byte offsets). u: |q| (the min
 * types: q itself, unsigned), 32 per block; q: the signed weights (not the
 * min types); sc (K types): the 16-bit sub-scales of the block's halves as
 * madd's multiplier; d, dmin, mn: a float per block, padded to a multiple
 * of 8; mnv (Q2_K, whose halves have their own mins): the mins as floats. */
typedef struct dec_layout {
  size_t u, q, sc, d, dmin, mn, mnv, row;
} dec_layout;

static inline dec_layout dec_layout_of(int kind, int64_t nb) {
  size_t nb8 = (size_t)(nb + 7) & ~(size_t)7, v = (size_t)nb * 32;
  dec_layout l;
  l.u = 0;
  l.q = v;
  l.sc = l.q + (is_unsigned(kind) ? 0 : v);
  l.d = l.sc + (is_k(kind) ? v : 0);
  l.dmin = l.d + nb8 * 4;
  l.mn = l.dmin + nb8 * 4;
  l.mnv = l.mn + nb8 * 4;
  l.row = l.mnv + (kind == T_Q2_K ? v : 0);
  return l;
}

static inline bool dec_fits(int kind, int64_t k) {
  int64_t nb = k / SP_QK;
  return nb <= T2_MAX_BLOCKS && 2 * dec_layout_of(kind, nb).row <= T2_DEC_BYTES;
}

SP_AVX2_INLINE void decode_row(int kind, int64_t nb, const uint8_t *w, const dec_layout *l, uint8_t *out) {
  float *d = (float *)(out + l->d), *dmin = (float *)(out + l->dmin), *mn = (float *)(out + l->mn);
  int slices = is_k(kind) ? 8 : 1, bytes = t2_block_bytes(kind);
  for (int64_t sb = 0; sb < nb / slices; sb++) {
    const uint8_t *blk = w + (size_t)sb * bytes;
    for (int t = 0; t < slices; t++) {
      int64_t b = sb * slices + t;
      __m256i q, sc = _mm256_setzero_si256();
      int s = 0, m = 0;
      if (kind == T_Q8_0) q = _mm256_loadu_si256((const __m256i *)(blk + 2));
      else if (kind == T_Q5_0) q = sp_avx2_q5_0_weights(blk);
      else if (kind == T_Q4_0) q = _mm256_sub_epi8(sp_avx2_nibbles(blk + 2), _mm256_set1_epi8(8));
      else if (kind == T_Q4_1) q = sp_avx2_nibbles(blk + 4);
      else if (kind == T_Q5_1) q = sp_avx2_q5_1_weights(blk);
      else if (kind == T_Q4_K || kind == T_Q5_K) {
        qb_k4_scale_min(blk + 4, t, &s, &m);
        q = kind == T_Q4_K ? sp_avx2_q4_k_quants(blk, t) : sp_avx2_q5_k_quants(blk, t);
        sc = _mm256_set1_epi16((int16_t)s);
      } else if (kind == T_Q3_K) {
        /* 2-bit quant (qs at blk + 32) minus 4 where hmask bit t is clear: -4..3 */
        __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * (t / 4)));
        __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
        lo = _mm256_and_si256(_mm256_srli_epi16(lo, 2 * (t % 4)), _mm256_set1_epi8(3));
        hm = _mm256_and_si256(_mm256_srli_epi16(hm, t), _mm256_set1_epi8(1));
        q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hm, 2)), _mm256_set1_epi8(4));
        sc = _mm256_set_m128i(_mm_set1_epi16((int16_t)qb_q3_k_scale(blk + 96, 2 * t + 1)),
                              _mm_set1_epi16((int16_t)qb_q3_k_scale(blk + 96, 2 * t)));
      } else if (kind == T_Q2_K) {
        /* 2-bit quants 0..3 (qs at blk + 16); scale bytes 2t, 2t + 1: scale | min << 4 */
        uint8_t s0 = blk[2 * t], s1 = blk[2 * t + 1];
        __m256i b2 = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * (t / 4)));
        q = _mm256_and_si256(_mm256_srli_epi16(b2, 2 * (t % 4)), _mm256_set1_epi8(3));
        sc = _mm256_set_m128i(_mm_set1_epi16(s1 & 0x0f), _mm_set1_epi16(s0 & 0x0f));
        _mm256_store_ps((float *)(out + l->mnv + 32 * b),
                        _mm256_set_m128(_mm_set1_ps((float)(s1 >> 4)), _mm_set1_ps((float)(s0 >> 4))));
      } else {
        const int8_t *sc6 = (const int8_t *)(blk + 192) + 2 * t;
        q = sp_avx2_q6_k_quants(blk, t);
        sc = _mm256_set_m128i(_mm_set1_epi16(sc6[1]), _mm_set1_epi16(sc6[0]));
      }
      _mm256_store_si256((__m256i *)(out + l->u + 32 * b), is_unsigned(kind) ? q : _mm256_sign_epi8(q, q));
      if (!is_unsigned(kind)) _mm256_store_si256((__m256i *)(out + l->q + 32 * b), q);
      if (is_k(kind)) _mm256_store_si256((__m256i *)(out + l->sc + 32 * b), sc);
      d[b] = sp_avx2_f16(blk + d_offset(kind));
      /* dmin; Q4_1, Q5_1: the min mw */
      dmin[b] = has_min(kind) || has_m1(kind) ? sp_avx2_f16(blk + dmin_offset(kind)) : 0.0f;
      mn[b] = (float)m;
    }
  }
  for (int64_t b = nb; b < ((nb + 7) & ~7); b++) d[b] = dmin[b] = mn[b] = 0.0f;
}

/* rw decoded weight rows by nx activation rows, all blocks. act: per
 * activation row and block, its quants and (min types) its sums of four
 * as floats; dxs: the activation scales, rows nb8 apart. */
SP_AVX2_INLINE void tile_dec(int kind, int rw, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l,
                             const __m256i *act, const float *dxs, const float *s4, float *d, size_t ds) {
  int64_t nb8 = (nb + 7) & ~7;
  __m256 acc[2][T2_NX], mins[2][T2_NX];
  _Alignas(32) float sk[2][T2_NX][8], smin[2][T2_NX][8];
  SP_UNROLL
  for (int r = 0; r < rw; r++) {
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[r][j] = mins[r][j] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b8 = 0; b8 < nb; b8 += 8) {
    int n8 = nb - b8 < 8 ? (int)(nb - b8) : 8;
    SP_UNROLL
    for (int r = 0; r < rw; r++) {
      const uint8_t *row = dec + (size_t)r * l->row;
      __m256 dw = _mm256_load_ps((const float *)(row + l->d) + b8);
      __m256 dm = _mm256_load_ps((const float *)(row + l->dmin) + b8);
      SP_UNROLL
      for (int j = 0; j < nx; j++) {
        __m256 dx8 = _mm256_load_ps(dxs + (size_t)j * nb8 + b8);
        _mm256_store_ps(sk[r][j], _mm256_mul_ps(dw, dx8));
        if (has_min(kind)) _mm256_store_ps(smin[r][j], _mm256_mul_ps(dm, dx8));
      }
    }
    for (int t = 0; t < n8; t++) {
      int64_t b = b8 + t;
      SP_UNROLL
      for (int j = 0; j < nx; j++) {
        const __m256i *aj = &act[2 * ((size_t)j * nb + b)];
        __m256i xq = _mm256_load_si256(aj);
        SP_UNROLL
        for (int r = 0; r < rw; r++) {
          const uint8_t *row = dec + (size_t)r * l->row;
          __m256i u = _mm256_load_si256((const __m256i *)(row + l->u + 32 * b));
          __m256i x = is_unsigned(kind) ? xq : _mm256_sign_epi8(xq, _mm256_load_si256((const __m256i *)(row + l->q + 32 * b)));
          __m256i mul = is_k(kind) ? _mm256_load_si256((const __m256i *)(row + l->sc + 32 * b)) : ones;
          __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), mul);
          acc[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sk[r][j][t]), _mm256_cvtepi32_ps(p), acc[r][j]);
          if (has_min(kind)) {
            __m256 mnr = kind == T_Q2_K ? _mm256_load_ps((const float *)(row + l->mnv + 32 * b))
                                        : _mm256_broadcast_ss((const float *)(row + l->mn) + b);
            __m256 m = _mm256_mul_ps(mnr, _mm256_load_ps((const float *)&aj[1]));
            mins[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&smin[r][j][t]), m, mins[r][j]);
          }
        }
      }
    }
  }
  /* Q4_1, Q5_1: each output's scalar chain m = fma(mw_b, sx_b, m), four
   * activation rows per vector (s4: the group's sx, four a block) */
  _Alignas(16) float m1[2][4] = {{0}};
  if (has_m1(kind)) {
    __m128 mv[2];
    SP_UNROLL
    for (int r = 0; r < rw; r++) mv[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
      __m128 sx = _mm_load_ps(s4 + 4 * b);
      SP_UNROLL
      for (int r = 0; r < rw; r++)
        mv[r] = _mm_fmadd_ps(_mm_broadcast_ss((const float *)(dec + (size_t)r * l->row + l->dmin) + b), sx, mv[r]);
    }
    SP_UNROLL
    for (int r = 0; r < rw; r++) _mm_store_ps(m1[r], mv[r]);
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    float *dj = (float *)((uint8_t *)d + (size_t)j * ds);
    SP_UNROLL
    for (int r = 0; r < rw; r++) {
      /* the dot table's endings: Q8_0 adds its (zero) min, the min types subtract their min lanes */
      float sum = sp_avx2_hsum(acc[r][j]);
      if (kind == T_Q8_0 || kind == T_Q4_0) sum = sum + 0.0f;
      if (has_min(kind)) sum = sum - sp_avx2_hsum(mins[r][j]);
      if (has_m1(kind)) sum = sum + m1[r][j];
      dj[r] = sum;
    }
  }
}

SP_AVX2_INLINE void group_dec(int kind, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l, int64_t nw,
                              const __m256i *act, const float *dxs, const float *s4, float *d, size_t ds) {
  int64_t i = 0;
  if (!has_min(kind))
    for (; i + 2 <= nw; i += 2) tile_dec(kind, 2, nx, nb, dec + (size_t)i * l->row, l, act, dxs, s4, d + i, ds);
  for (; i < nw; i++) tile_dec(kind, 1, nx, nb, dec + (size_t)i * l->row, l, act, dxs, s4, d + i, ds);
}

SP_AVX2_INLINE void gemm_dec(int kind, int64_t nb, const uint8_t *w, size_t ws, int64_t nw, const void *x,
                             size_t xs, int64_t nx, float *d, size_t ds) {
  int64_t nb8 = (nb + 7) & ~7;
  _Alignas(32) uint8_t dec[T2_DEC_BYTES];
  __m256i act[T2_NX * nb * 2]; /* per row and block: its quants, (min types) its sums of four */
  _Alignas(32) float dxs[T2_NX * nb8];
  _Alignas(16) float s4[4 * nb]; /* Q4_1, Q5_1: sx per block, four rows a block */
  dec_layout l = dec_layout_of(kind, nb);
  int64_t chunk = (int64_t)(T2_DEC_BYTES / l.row) & ~(int64_t)1;
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t i0 = 0; i0 < nw; i0 += chunk) {
    int64_t rows = nw - i0 < chunk ? nw - i0 : chunk;
    for (int64_t i = 0; i < rows; i++) decode_row(kind, nb, w + (size_t)(i0 + i) * ws, &l, dec + (size_t)i * l.row);
    for (int64_t m = 0; m < nx; m += T2_NX) {
      int n = nx - m < T2_NX ? (int)(nx - m) : T2_NX;
      for (int j = 0; j < n; j++) {
        const sp_q8_act *xj = (const sp_q8_act *)((const uint8_t *)x + (size_t)(m + j) * xs);
        float *dxj = dxs + (size_t)j * nb8;
        for (int64_t b = 0; b < nb; b++) {
          __m256i xq = _mm256_loadu_si256((const __m256i *)xj[b].qs);
          act[2 * ((size_t)j * nb + b)] = xq;
          if (has_min(kind)) /* sums of four: |x| <= 127, so the pairs fit int16 */
            act[2 * ((size_t)j * nb + b) + 1] =
                _mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xq), ones16)));
          dxj[b] = xj[b].d;
          s4[4 * b + j] = xj[b].s;
        }
        for (int64_t b = nb; b < nb8; b++) dxj[b] = 0.0f;
      }
      for (int j = n; j < 4; j++)
        for (int64_t b = 0; b < nb; b++) s4[4 * b + j] = 0.0f;
      float *dm = (float *)((uint8_t *)d + (size_t)m * ds) + i0;
      switch (n) {
      case 1: group_dec(kind, 1, nb, dec, &l, rows, act, dxs, s4, dm, ds); break;
      case 2: group_dec(kind, 2, nb, dec, &l, rows, act, dxs, s4, dm, ds); break;
      case 3: group_dec(kind, 3, nb, dec, &l, rows, act, dxs, s4, dm, ds); break;
      default: group_dec(kind, 4, nb, dec, &l, rows, act, dxs, s4, dm, ds); break;
      }
    }
  }
}

/* Rows too long for the tables: the AVX2 dot, SP_CPU_MAX_NX rows a call. */
static void gemm_by_dot(sp_dot_fn dot, int64_t k, const uint8_t *w, size_t ws, int64_t nw, const uint8_t *x,
                        size_t xs, int64_t nx, float *d, size_t ds) {
  float out[SP_CPU_MAX_NX];
  for (int64_t m = 0; m < nx; m += SP_CPU_MAX_NX) {
    int n = nx - m < SP_CPU_MAX_NX ? (int)(nx - m) : SP_CPU_MAX_NX;
    for (int64_t i = 0; i < nw; i++) {
      dot(k, w + (size_t)i * ws, x + (size_t)m * xs, xs, n, out);
      for (int j = 0; j < n; j++) ((float *)((uint8_t *)d + (size_t)(m + j) * ds))[i] = out[j];
    }
  }
}

#define SP_T2_GEMM(name, kind, dtype)                                                                  \
  SP_TARGET_AVX2 __attribute__((noinline)) static void name##_dec(int64_t k, const void *w, size_t ws,  \
                                                                  int64_t nw, const void *x, size_t xs, \
                                                                  int64_t nx, float *d, size_t ds) {    \
    gemm_dec(kind, k / SP_QK, w, ws, nw, x, xs, nx, d, ds);                                            \
  }                                                                                                    \
  void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *x, size_t xs, int64_t nx,     \
            float *d, size_t ds) {                                                                     \
    if (dec_fits(kind, k)) name##_dec(k, w, ws, nw, x, xs, nx, d, ds);                                 \
    else gemm_by_dot(sp_cpu_kernels_avx2()->dot[dtype], k, w, ws, nw, x, xs, nx, d, ds);               \
  }
SP_T2_GEMM(sp_cpu_avx2_gemm_q8_0, T_Q8_0, SP_DTYPE_Q8_0)
SP_T2_GEMM(sp_cpu_avx2_gemm_q5_0, T_Q5_0, SP_DTYPE_Q5_0)
SP_T2_GEMM(sp_cpu_avx2_gemm_q4_k, T_Q4_K, SP_DTYPE_Q4_K)
SP_T2_GEMM(sp_cpu_avx2_gemm_q6_k, T_Q6_K, SP_DTYPE_Q6_K)
SP_T2_GEMM(sp_cpu_avx2_gemm_q5_k, T_Q5_K, SP_DTYPE_Q5_K)
SP_T2_GEMM(sp_cpu_avx2_gemm_q3_k, T_Q3_K, SP_DTYPE_Q3_K)
SP_T2_GEMM(sp_cpu_avx2_gemm_q2_k, T_Q2_K, SP_DTYPE_Q2_K)
SP_T2_GEMM(sp_cpu_avx2_gemm_q4_0, T_Q4_0, SP_DTYPE_Q4_0)
SP_T2_GEMM(sp_cpu_avx2_gemm_q4_1, T_Q4_1, SP_DTYPE_Q4_1)
SP_T2_GEMM(sp_cpu_avx2_gemm_q5_1, T_Q5_1, SP_DTYPE_Q5_1)

#endif
