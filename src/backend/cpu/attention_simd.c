/*
 * attention_simd.c: attention's score and value loops for AVX2 and
 * AVX-512 (attention_simd.h says what each computes).
 *
 * Scores: a tile of 4 keys x up to GB query heads keeps 4 * GB 8-lane
 * accumulators in registers, so each k row is widened once per tile and
 * each q row is loaded once per 4 keys; one dot call per key paid a call,
 * the q loads and a horizontal sum for every key. The accumulators follow
 * contract point 2 of kernels.h exactly (lane l = fma(k[i], q[i], lane l)
 * for i = l, l + 8, ..., a zero-padded tail), and the four keys' lanes
 * are reduced together by a transpose that adds the same pairs in the
 * same order as sp_avx2_hsum: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) +
 * (a3 + a7)). The AVX-512 build runs the same 8-lane code (the contract
 * fixes 8 lanes) with 32 registers, so its tile holds 4 query heads.
 *
 * Values: a tile of NV vectors of v x up to GB query heads of sums stays
 * in registers over the whole chunk of keys; each key adds p * v, a
 * multiply then an add (never an FMA), to every sum of the tile. Lane
 * width does not change the bits of an elementwise loop, so AVX-512 uses
 * 16 lanes. Head dims that are not a multiple of a vector finish in
 * scalar code with the same two operations.
 */
#include "backend/cpu/attention_simd.h"

#include "backend/cpu/fp16.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

#define SCORE_KEYS 4 /* keys per score tile */
#define AHEAD 16     /* rows fetched ahead of use */

static inline const uint8_t *row(const sp_attn_rows *r, int64_t c) { return r->first + (size_t)c * r->stride; }

static inline __attribute__((always_inline)) void prefetch_row(const sp_attn_rows *r, int64_t c, int64_t D) {
  const uint8_t *at = row(r, c);
  for (int64_t b = 0; b < D * (r->f16 ? 2 : 4); b += 64) __builtin_prefetch(at + b);
}

/* ---- scores ---- */

SP_AVX2_INLINE __m256 load8(const uint8_t *at, bool f16, int64_t i) {
  return f16 ? sp_avx2_load_f16((const uint16_t *)at + i) : _mm256_loadu_ps((const float *)at + i);
}

/* Elements i..D-1 (fewer than 8), zero-padded: fma(0, 0, lane) is the
 * lane, so padding changes nothing. */
SP_AVX2_INLINE __m256 load8_tail(const uint8_t *at, bool f16, int64_t i, int64_t D) {
  float t[8] = {0};
  for (int64_t e = i; e < D; e++) {
    uint16_t h;
    if (f16) memcpy(&h, at + 2 * e, sizeof h), t[e - i] = _cvtsh_ss(h);
    else memcpy(&t[e - i], at + 4 * e, sizeof t[0]);
  }
  return _mm256_loadu_ps(t);
}

/* The 8-lane sums of a, b, c and d (sp_avx2_hsum's tree, four at once). */
SP_AVX2_INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m128 ua = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); /* a0+a4 .. a3+a7 */
  __m128 ub = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  __m128 uc = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
  __m128 ud = _mm_add_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1));
  __m128 ab = _mm_add_ps(_mm_unpacklo_ps(ua, ub), _mm_unpackhi_ps(ua, ub)); /* ua0+ua2, ub0+ub2, ua1+ua3, ub1+ub3 */
  __m128 cd = _mm_add_ps(_mm_unpacklo_ps(uc, ud), _mm_unpackhi_ps(uc, ud));
  return _mm_add_ps(_mm_movelh_ps(ab, cd), _mm_movehl_ps(cd, ab));
}

/* Scores of keys c..c+3 (rows past n - 1 repeat row n - 1; their scores
 * are not stored) for query heads g0..g0+GB-1. */
SP_AVX2_INLINE void score_tile(const sp_attn_rows *k, int64_t D, const float *q, int64_t g0, int GB, int64_t c,
                               int64_t n, float scale, float *p, int64_t P) {
  const uint8_t *r[SCORE_KEYS];
  for (int kk = 0; kk < SCORE_KEYS; kk++) r[kk] = row(k, c + kk < n ? c + kk : n - 1);
  __m256 acc[4][SCORE_KEYS];
  SP_UNROLL
  for (int g = 0; g < GB; g++)
    for (int kk = 0; kk < SCORE_KEYS; kk++) acc[g][kk] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= D; i += 8) {
    __m256 kv[SCORE_KEYS];
    for (int kk = 0; kk < SCORE_KEYS; kk++) kv[kk] = load8(r[kk], k->f16, i);
    SP_UNROLL
    for (int g = 0; g < GB; g++) {
      __m256 qv = _mm256_loadu_ps(q + (g0 + g) * D + i);
      for (int kk = 0; kk < SCORE_KEYS; kk++) acc[g][kk] = _mm256_fmadd_ps(kv[kk], qv, acc[g][kk]);
    }
  }
  if (i < D) {
    __m256 kv[SCORE_KEYS];
    for (int kk = 0; kk < SCORE_KEYS; kk++) kv[kk] = load8_tail(r[kk], k->f16, i, D);
    for (int g = 0; g < GB; g++) {
      float t[8] = {0};
      memcpy(t, q + (g0 + g) * D + i, (size_t)(D - i) * sizeof *t);
      __m256 qv = _mm256_loadu_ps(t);
      for (int kk = 0; kk < SCORE_KEYS; kk++) acc[g][kk] = _mm256_fmadd_ps(kv[kk], qv, acc[g][kk]);
    }
  }
  int64_t keep = n - c < SCORE_KEYS ? n - c : SCORE_KEYS;
  SP_UNROLL
  for (int g = 0; g < GB; g++) {
    float s[SCORE_KEYS];
    _mm_storeu_ps(s, _mm_mul_ps(hsum4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]), _mm_set1_ps(scale)));
    memcpy(p + (g0 + g) * P + c, s, (size_t)keep * sizeof *s);
  }
}

/* All keys for query heads g0..g0+GB-1. */
SP_AVX2_INLINE void score_heads(const sp_attn_rows *k, int64_t D, const float *q, int64_t g0, int GB, int64_t n,
                                float scale, float *p, int64_t P) {
  for (int64_t c = 0; c < n; c += SCORE_KEYS) {
    if (g0 == 0)
      for (int64_t a = c + AHEAD; a < c + AHEAD + SCORE_KEYS && a < n; a++) prefetch_row(k, a, D);
    score_tile(k, D, q, g0, GB, c, n, scale, p, P);
  }
}

/* Query heads in blocks of up to `most` (a constant: the register budget). */
SP_AVX2_INLINE void scores_body(const sp_attn_rows *k, int64_t D, const float *q, int64_t G, int64_t n,
                                float scale, float *p, int64_t P, int most) {
  for (int64_t a = 0; a < n && a < AHEAD; a++) prefetch_row(k, a, D);
  for (int64_t g0 = 0; g0 < G; g0 += most) {
    int64_t left = G - g0;
    if (left >= 4 && most >= 4) score_heads(k, D, q, g0, 4, n, scale, p, P);
    else if (left >= 3) score_heads(k, D, q, g0, 3, n, scale, p, P);
    else if (left == 2) score_heads(k, D, q, g0, 2, n, scale, p, P);
    else score_heads(k, D, q, g0, 1, n, scale, p, P);
  }
}

/* 16 ymm registers: 3 heads x 4 keys of sums and the 4 k vectors. */
SP_TARGET_AVX2 void sp_attn_scores_avx2(const sp_attn_rows *k, int64_t D, const float *q, int64_t G, int64_t n,
                                        float scale, float *p, int64_t P) {
  scores_body(k, D, q, G, n, scale, p, P, 3);
}

/* 32 ymm registers: 4 heads x 4 keys. */
SP_TARGET_AVX512 void sp_attn_scores_avx512(const sp_attn_rows *k, int64_t D, const float *q, int64_t G,
                                            int64_t n, float scale, float *p, int64_t P) {
  scores_body(k, D, q, G, n, scale, p, P, 4);
}

/* ---- values ---- */

/* acc elements d0.. of heads g0..g0+GB-1 in scalar code, one element at
 * a time (head dims that are not a multiple of a vector). */
static inline __attribute__((always_inline)) void values_scalar(const sp_attn_rows *v, int64_t d0, int64_t D,
                                                                const float *p, int64_t P, int64_t G, int64_t n,
                                                                float *acc) {
  for (int64_t g = 0; g < G; g++)
    for (int64_t d = d0; d < D; d++) {
      float a = 0.0f;
      for (int64_t c = 0; c < n; c++) {
        float x;
        if (v->f16) {
          uint16_t h;
          memcpy(&h, row(v, c) + 2 * d, sizeof h);
          x = sp_f16_to_f32(h);
        } else {
          memcpy(&x, row(v, c) + 4 * d, sizeof x);
        }
        a = a + p[g * P + c] * x;
      }
      acc[g * D + d] = a;
    }
}

SP_AVX2_INLINE __m256 vload8(const sp_attn_rows *v, int64_t c, int64_t d) {
  return load8(row(v, c), v->f16, d);
}

/* Elements d0..d0+8*NV-1 of heads g0..g0+GB-1, summed over all n keys. */
SP_AVX2_INLINE void values_tile8(const sp_attn_rows *v, int64_t d0, int NV, const float *p, int64_t P, int64_t g0,
                                 int GB, int64_t n, float *acc, int64_t D) {
  __m256 a[4][2];
  SP_UNROLL
  for (int g = 0; g < GB; g++)
    for (int e = 0; e < NV; e++) a[g][e] = _mm256_setzero_ps();
  bool leads = d0 == 0 && g0 == 0; /* the tile that fetches ahead */
  if (leads)
    for (int64_t c = 0; c < n && c < AHEAD; c++) prefetch_row(v, c, D);
  for (int64_t c = 0; c < n; c++) {
    if (leads && c + AHEAD < n) prefetch_row(v, c + AHEAD, D);
    __m256 x[2];
    for (int e = 0; e < NV; e++) x[e] = vload8(v, c, d0 + 8 * e);
    SP_UNROLL
    for (int g = 0; g < GB; g++) {
      __m256 pb = _mm256_set1_ps(p[(g0 + g) * P + c]);
      for (int e = 0; e < NV; e++) a[g][e] = _mm256_add_ps(a[g][e], _mm256_mul_ps(pb, x[e]));
    }
  }
  for (int g = 0; g < GB; g++)
    for (int e = 0; e < NV; e++) _mm256_storeu_ps(acc + (g0 + g) * D + d0 + 8 * e, a[g][e]);
}

/* Heads g0.. in blocks of 4 for NV vectors at d0 (NV a constant). */
SP_AVX2_INLINE void values_heads8(const sp_attn_rows *v, int64_t d0, int NV, const float *p, int64_t P, int64_t G,
                                  int64_t n, float *acc, int64_t D) {
  for (int64_t g0 = 0; g0 < G; g0 += 4) {
    int64_t left = G - g0;
    if (left >= 4) values_tile8(v, d0, NV, p, P, g0, 4, n, acc, D);
    else if (left == 3) values_tile8(v, d0, NV, p, P, g0, 3, n, acc, D);
    else if (left == 2) values_tile8(v, d0, NV, p, P, g0, 2, n, acc, D);
    else values_tile8(v, d0, NV, p, P, g0, 1, n, acc, D);
  }
}

/* 16 ymm registers: 4 heads x 2 vectors of sums, 2 v vectors, p. */
SP_TARGET_AVX2 void sp_attn_values_avx2(const sp_attn_rows *v, int64_t D, const float *p, int64_t P, int64_t G,
                                        int64_t n, float *acc) {
  int64_t d0 = 0;
  for (; d0 + 16 <= D; d0 += 16) values_heads8(v, d0, 2, p, P, G, n, acc, D);
  for (; d0 + 8 <= D; d0 += 8) values_heads8(v, d0, 1, p, P, G, n, acc, D);
  if (d0 < D) values_scalar(v, d0, D, p, P, G, n, acc);
}

SP_AVX512_INLINE __m512 vload16(const sp_attn_rows *v, int64_t c, int64_t d) {
  const uint8_t *at = row(v, c);
  return v->f16 ? sp_avx512_load_f16((const uint16_t *)at + d) : _mm512_loadu_ps((const float *)at + d);
}

/* Elements d0..d0+16*NV-1 of heads g0..g0+GB-1, summed over all n keys. */
SP_AVX512_INLINE void values_tile16(const sp_attn_rows *v, int64_t d0, int NV, const float *p, int64_t P,
                                    int64_t g0, int GB, int64_t n, float *acc, int64_t D) {
  __m512 a[4][4];
  SP_UNROLL
  for (int g = 0; g < GB; g++)
    for (int e = 0; e < NV; e++) a[g][e] = _mm512_setzero_ps();
  bool leads = d0 == 0 && g0 == 0; /* the tile that fetches ahead */
  if (leads)
    for (int64_t c = 0; c < n && c < AHEAD; c++) prefetch_row(v, c, D);
  for (int64_t c = 0; c < n; c++) {
    if (leads && c + AHEAD < n) prefetch_row(v, c + AHEAD, D);
    __m512 x[4];
    for (int e = 0; e < NV; e++) x[e] = vload16(v, c, d0 + 16 * e);
    SP_UNROLL
    for (int g = 0; g < GB; g++) {
      __m512 pb = _mm512_set1_ps(p[(g0 + g) * P + c]);
      for (int e = 0; e < NV; e++) a[g][e] = _mm512_add_ps(a[g][e], _mm512_mul_ps(pb, x[e]));
    }
  }
  for (int g = 0; g < GB; g++)
    for (int e = 0; e < NV; e++) _mm512_storeu_ps(acc + (g0 + g) * D + d0 + 16 * e, a[g][e]);
}

/* Heads g0.. in blocks of 4 for NV vectors at d0 (NV a constant). */
SP_AVX512_INLINE void values_heads16(const sp_attn_rows *v, int64_t d0, int NV, const float *p, int64_t P,
                                     int64_t G, int64_t n, float *acc, int64_t D) {
  for (int64_t g0 = 0; g0 < G; g0 += 4) {
    int64_t left = G - g0;
    if (left >= 4) values_tile16(v, d0, NV, p, P, g0, 4, n, acc, D);
    else if (left == 3) values_tile16(v, d0, NV, p, P, g0, 3, n, acc, D);
    else if (left == 2) values_tile16(v, d0, NV, p, P, g0, 2, n, acc, D);
    else values_tile16(v, d0, NV, p, P, g0, 1, n, acc, D);
  }
}

/* 32 zmm registers: 4 heads x 4 vectors of sums, 4 v vectors, p. */
SP_TARGET_AVX512 void sp_attn_values_avx512(const sp_attn_rows *v, int64_t D, const float *p, int64_t P,
                                            int64_t G, int64_t n, float *acc) {
  int64_t d0 = 0;
  for (; d0 + 64 <= D; d0 += 64) values_heads16(v, d0, 4, p, P, G, n, acc, D);
  for (; d0 + 16 <= D; d0 += 16) values_heads16(v, d0, 1, p, P, G, n, acc, D);
  if (d0 < D) values_scalar(v, d0, D, p, P, G, n, acc);
}

#endif
