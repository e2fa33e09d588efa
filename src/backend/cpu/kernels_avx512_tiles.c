/*
 * kernels_avx512_tiles.c: prompt products (gemm entries) for x86 CPUs with
 * AVX-512 VNNI, for the weight types of K-quant files: Q8_0, Q5_0, Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, and Q4_0, Q4_1, Q5_1 (Q4_0 + 8 as unsigned
 * bytes; Q4_1, Q5_1 unsigned, with the dot's scalar min chain, kept per
 * output as a lane of a 4-float vector, one fma per block, added last).
 *
 * A call covers a block of weight rows by activation rows (one matmul
 * tile). Each output element gets exactly the float operations of the dot
 * table (kernels.h, "Numerics contract", point 3): the same exact integer
 * partials, s_b = d_w * dx_b rounded once, one fma per block into each of
 * 8 lanes, the same reduction. Only the integer side and the data
 * movement differ:
 *  - a chunk of weight rows (DEC_BYTES) is decoded once into unsigned
 *    bytes, float sub-scales and float scales, and then meets every
 *    activation row of the call, four at a time, in register tiles of up
 *    to four weight rows (the min types Q2_K, Q4_K, Q5_K: two, their min
 *    lanes need registers too);
 *  - the activation rows go in pairs, one pair to a 512-bit vector (row
 *    2p in the low half, 2p + 1 in the high): each half runs exactly its
 *    row's 8-lane chain, so one instruction does two rows' work and no
 *    output changes (tile_dec2; a lone row takes tile_dec);
 *  - signed weights carry an offset (Q8_0 + 128, Q5_0 + 16, Q6_K + 32,
 *    Q3_K + 4) so they enter vpdpbusd as unsigned bytes, whose accumulator
 *    starts at -offset * (the sums of four activations): the same exact
 *    integers as sign(w) |w| x. The sums are made once per activation
 *    group and shared by every weight row; the min partials mn * sum
 *    (Q4_K, Q5_K; Q2_K with a min per 16-element half) are exact float
 *    products of the same sums (|mn * sum| < 2^15);
 *  - the scales d_w * dx_b of eight blocks come from one multiply and are
 *    read back as broadcasts.
 * Rows too long for the per-group tables (k > 8192) take gemm_rows, which
 * decodes in registers (two weight rows a tile). Stack: at most about
 * 170 KiB (the 48 KiB decoded chunk; the group's pairs, 96 KiB at k =
 * 8192, and a lone row's 16 KiB), well within the 8 MiB of the pool's
 * and callers' threads.
 */
#include <math.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

#define SP_TILES_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SP_TILES_INLINE \
  static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

#define TILE_NX 4           /* activation rows per register tile */
#define TILE_RW 4           /* weight rows per register tile, at most (decoded path) */
#define TILE_MAX_BLOCKS 256 /* 32-blocks per row the per-group sums hold (k <= 8192) */

enum { T_Q8_0, T_Q5_0, T_Q4_K, T_Q6_K, T_Q5_K, T_Q3_K, T_Q2_K, T_Q4_0, T_Q4_1, T_Q5_1 };

/* Q4_1 and Q5_1: unsigned quants and the scalar min chain m = fma(mw_b, sx_b, m), added last. */
static inline bool has_m1(int kind) { return kind == T_Q4_1 || kind == T_Q5_1; }

static inline bool is_k(int kind) { return kind >= T_Q4_K && kind <= T_Q2_K; }

/* The K types with a min chain (unsigned quants, contract point 3's M). */
static inline bool has_min(int kind) { return kind == T_Q4_K || kind == T_Q5_K || kind == T_Q2_K; }

static inline int tile_block_bytes(int kind) {
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

/* The per-(activation row, block) vector a weight type starts from: the
 * min types (Q4_K, Q5_K, Q2_K) the sums of four as floats, the others
 * -offset * those sums (Q3_K: + 4). */
SP_TILES_INLINE __m256i act_corr(int kind, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), xq);
  if (has_min(kind)) return _mm256_castps_si256(_mm256_cvtepi32_ps(sums));
  if (has_m1(kind)) return _mm256_setzero_si256();
  int shift = kind == T_Q8_0 ? 7 : kind == T_Q5_0 ? 4 : kind == T_Q4_0 ? 3 : kind == T_Q3_K ? 2 : 5;
  return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, shift));
}

/* Weights of a 32-element block as unsigned bytes with the offset. */
SP_TILES_INLINE __m256i q8_0_u(const uint8_t *blk) {
  return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
}

/* Q5_0: nibble + 16 * fifth bit (qh at blk + 2, bit e for element e). */
SP_TILES_INLINE __m256i q5_0_u(const uint8_t *blk) {
  uint32_t qh;
  memcpy(&qh, blk + 2, sizeof qh);
  __m256i nib = sp_avx2_nibbles(blk + 6);
  return _mm256_mask_add_epi8(nib, (__mmask32)qh, nib, _mm256_set1_epi8(16));
}

/* Q6_K slice t: the raw 6-bit values 0..63 (q + 32). */
SP_TILES_INLINE __m256i q6_k_u(const uint8_t *blk, int t) {
  int h = t / 4, u = t % 4;
  __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (u % 2)));
  __m256i hi = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
  lo = _mm256_and_si256(_mm256_srli_epi16(lo, 4 * (u / 2)), _mm256_set1_epi8(0x0f));
  hi = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * u), _mm256_set1_epi8(0x03));
  return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* Q3_K slice t: the 2-bit quant | hmask bit t << 2, i.e. q + 4 (0..7).
 * qs at blk + 32, hmask at blk; 16-bit shifts, masks drop what crosses bytes. */
SP_TILES_INLINE __m256i q3_k_u(const uint8_t *blk, int t) {
  __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * (t / 4)));
  __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
  lo = _mm256_and_si256(_mm256_srli_epi16(lo, 2 * (t % 4)), _mm256_set1_epi8(3));
  hm = _mm256_and_si256(_mm256_srli_epi16(hm, t), _mm256_set1_epi8(1));
  return _mm256_or_si256(lo, _mm256_slli_epi16(hm, 2));
}

/* Q2_K slice t: its 2-bit quants 0..3 (qs at blk + 16). */
SP_TILES_INLINE __m256i q2_k_u(const uint8_t *blk, int t) {
  __m256i b = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * (t / 4)));
  return _mm256_and_si256(_mm256_srli_epi16(b, 2 * (t % 4)), _mm256_set1_epi8(3));
}

/* A weight row's slice, decoded (into registers, or into a chunk). */
typedef struct tile_w {
  __m256i u;      /* unsigned weights (with the type's offset) */
  __m256i sc;     /* K types: 32-bit sub-scales of the two halves */
  __m256 d, mn;   /* d: the block's scale (32-element types); mn: the min types' mins as floats */
} tile_w;

SP_TILES_INLINE tile_w slice_at(int kind, const uint8_t *blk, int t) {
  tile_w r;
  if (!is_k(kind)) {
    r.u = kind == T_Q8_0   ? q8_0_u(blk)
          : kind == T_Q5_0 ? q5_0_u(blk)
          : kind == T_Q4_0 ? sp_avx2_nibbles(blk + 2) /* q + 8 */
          : kind == T_Q4_1 ? sp_avx2_nibbles(blk + 4)
                           : sp_avx2_q5_1_weights(blk);
    r.d = _mm256_set1_ps(sp_avx2_f16(blk));
  } else if (kind == T_Q4_K || kind == T_Q5_K) {
    int sc, mn;
    qb_k4_scale_min(blk + 4, t, &sc, &mn);
    r.u = kind == T_Q4_K ? sp_avx2_q4_k_quants(blk, t) : sp_avx2_q5_k_quants(blk, t);
    r.sc = _mm256_set1_epi32(sc);
    r.mn = _mm256_set1_ps((float)mn);
  } else if (kind == T_Q3_K) {
    r.u = q3_k_u(blk, t);
    r.sc = _mm256_set_m128i(_mm_set1_epi32(qb_q3_k_scale(blk + 96, 2 * t + 1)),
                            _mm_set1_epi32(qb_q3_k_scale(blk + 96, 2 * t)));
  } else if (kind == T_Q2_K) {
    uint8_t s0 = blk[2 * t], s1 = blk[2 * t + 1];
    r.u = q2_k_u(blk, t);
    r.sc = _mm256_set_m128i(_mm_set1_epi32(s1 & 0x0f), _mm_set1_epi32(s0 & 0x0f));
    r.mn = _mm256_set_m128(_mm_set1_ps((float)(s1 >> 4)), _mm_set1_ps((float)(s0 >> 4)));
  } else {
    const int8_t *sc = (const int8_t *)(blk + 192) + 2 * t;
    r.u = q6_k_u(blk, t);
    r.sc = _mm256_set_m128i(_mm_set1_epi32(sc[1]), _mm_set1_epi32(sc[0]));
  }
  return r;
}

/* One output from its lane chains, ending as the dot table does: Q8_0
 * adds its (zero) min, the min types subtract their min lanes (contract
 * point 3). */
SP_TILES_INLINE float tile_result(int kind, __m256 acc, __m256 mins, float m1) {
  float sum = sp_avx2_hsum(acc);
  if (kind == T_Q8_0 || kind == T_Q4_0) sum = sum + 0.0f;
  if (has_m1(kind)) sum = sum + m1;
  if (has_min(kind)) sum = sum - sp_avx2_hsum(mins);
  return sum;
}

/* ---- long rows: weights decoded in registers, activation sums per tile ---- */

/* The activation scales of blocks b..b+7 of one row. */
SP_TILES_INLINE __m256 dx8_at(const sp_q8_act *a, int64_t b) {
  return _mm256_setr_ps(a[b].d, a[b + 1].d, a[b + 2].d, a[b + 3].d, a[b + 4].d, a[b + 5].d, a[b + 6].d,
                        a[b + 7].d);
}

/* rw weight rows (1 or 2) by nx activation rows (1..TILE_NX), all blocks,
 * for rows too long for the decoded path's tables: every slice is decoded
 * and every activation block's act_corr computed per register tile.
 * Output d[j][r] at d + j * ds. */
SP_TILES_INLINE void tile(int kind, int rw, int nx, int64_t nb, const uint8_t *w, size_t ws,
                          const sp_q8_act *const *xr, float *d, size_t ds) {
  __m256 acc[2][TILE_NX], mins[2][TILE_NX];
  float m1[2][TILE_NX] = {{0}};
  /* K types: a super-block's eight scales d_w * dx_b (and dmin_w * dx_b),
   * made by one multiply and read back as broadcasts */
  _Alignas(32) float sk[2][TILE_NX][8], smin[2][TILE_NX][8];
  SP_UNROLL
  for (int r = 0; r < rw; r++) {
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[r][j] = mins[r][j] = _mm256_setzero_ps();
  }
  int slices = is_k(kind) ? 8 : 1;
  int bytes = tile_block_bytes(kind);
  for (int64_t sb = 0; sb < nb / slices; sb++) {
    const uint8_t *blk[2];
    SP_UNROLL
    for (int r = 0; r < rw; r++) {
      blk[r] = w + (size_t)r * ws + (size_t)sb * bytes;
      if (is_k(kind)) {
        __m256 dk = _mm256_set1_ps(sp_avx2_f16(blk[r] + d_offset(kind)));
        __m256 dmin = _mm256_set1_ps(sp_avx2_f16(blk[r] + dmin_offset(kind)));
        SP_UNROLL
        for (int j = 0; j < nx; j++) {
          __m256 dx8 = dx8_at(xr[j], 8 * sb);
          _mm256_store_ps(sk[r][j], _mm256_mul_ps(dk, dx8));
          if (has_min(kind)) _mm256_store_ps(smin[r][j], _mm256_mul_ps(dmin, dx8));
        }
      }
    }
    for (int t = 0; t < slices; t++) {
      int64_t b = sb * slices + t;
      tile_w ts[2];
      SP_UNROLL
      for (int r = 0; r < rw; r++) ts[r] = slice_at(kind, blk[r], t);
      SP_UNROLL
      for (int j = 0; j < nx; j++) {
        const sp_q8_act *a = &xr[j][b];
        __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
        __m256 dx = _mm256_broadcast_ss(&a->d);
        __m256i c = act_corr(kind, a);
        SP_UNROLL
        for (int r = 0; r < rw; r++) {
          __m256i p;
          if (has_min(kind)) p = _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ts[r].u, xq), ts[r].sc);
          else if (is_k(kind)) p = _mm256_mullo_epi32(_mm256_dpbusd_epi32(c, ts[r].u, xq), ts[r].sc);
          else p = _mm256_dpbusd_epi32(c, ts[r].u, xq);
          __m256 s = is_k(kind) ? _mm256_broadcast_ss(&sk[r][j][t]) : _mm256_mul_ps(ts[r].d, dx);
          acc[r][j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[r][j]);
          if (has_min(kind)) {
            __m256 m = _mm256_mul_ps(ts[r].mn, _mm256_castsi256_ps(c));
            mins[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&smin[r][j][t]), m, mins[r][j]);
          }
          if (has_m1(kind)) m1[r][j] = fmaf(sp_avx2_f16(blk[r] + 2), a->s, m1[r][j]);
        }
      }
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    float *dj = (float *)((uint8_t *)d + (size_t)j * ds);
    SP_UNROLL
    for (int r = 0; r < rw; r++) dj[r] = tile_result(kind, acc[r][j], mins[r][j], m1[r][j]);
  }
}

/* Every weight row (two at a time) against one group of nx activation rows. */
SP_TILES_INLINE void group(int kind, int nx, int64_t nb, const uint8_t *w, size_t ws, int64_t nw,
                           const sp_q8_act *const *xr, float *d, size_t ds) {
  int64_t i = 0;
  for (; i + 2 <= nw; i += 2) tile(kind, 2, nx, nb, w + (size_t)i * ws, ws, xr, d + i, ds);
  if (i < nw) tile(kind, 1, nx, nb, w + (size_t)i * ws, ws, xr, d + i, ds);
}

SP_TILES_INLINE void gemm_rows(int kind, int64_t k, const void *w, size_t ws, int64_t nw, const void *x,
                               size_t xs, int64_t nx, float *d, size_t ds) {
  for (int64_t m = 0; m < nx; m += TILE_NX) {
    int n = nx - m < TILE_NX ? (int)(nx - m) : TILE_NX;
    const sp_q8_act *xr[TILE_NX];
    for (int j = 0; j < n; j++) xr[j] = (const sp_q8_act *)((const uint8_t *)x + (size_t)(m + j) * xs);
    float *dm = (float *)((uint8_t *)d + (size_t)m * ds);
    if (n == TILE_NX) group(kind, TILE_NX, k / SP_QK, w, ws, nw, xr, dm, ds);
    else
      for (int j = 0; j < n; j++)
        group(kind, 1, k / SP_QK, w, ws, nw, xr + j, (float *)((uint8_t *)dm + (size_t)j * ds), ds);
  }
}

/* ---- prompts: a chunk of weight rows decoded once for every activation row ---- */

#define DEC_BYTES (48 << 10) /* decoded weight rows per chunk, to stay in L1/L2 */

/* Where a decoded row keeps its parts (byte offsets; row: the row's size).
 * u: 32 unsigned weights per block; sc (K types): the block's two
 * sub-scales as a vector of floats (the contract's |P| < 2^22, so
 * float(p) * sc is exactly the float of tile()'s integer p * sc, and one
 * vmulps is cheaper than a vpmulld); d, dmin, mn: a float per block (d
 * and dmin repeated over a super-block's slices), padded to a multiple
 * of 8;
 * mnv (Q2_K, whose halves have their own mins): the mins as a vector. */
typedef struct dec_layout {
  size_t u, sc, d, dmin, mn, mnv, row;
} dec_layout;

static inline dec_layout dec_layout_of(int kind, int64_t nb) {
  size_t nb8 = (size_t)(nb + 7) & ~(size_t)7;
  dec_layout l;
  l.u = 0;
  l.sc = (size_t)nb * 32;
  l.d = l.sc + (is_k(kind) ? (size_t)nb * 32 : 0);
  l.dmin = l.d + nb8 * 4;
  l.mn = l.dmin + nb8 * 4;
  l.mnv = l.mn + nb8 * 4;
  l.row = l.mnv + (kind == T_Q2_K ? (size_t)nb * 32 : 0); /* a multiple of 32 */
  return l;
}

SP_TILES_INLINE void decode_row(int kind, int64_t nb, const uint8_t *w, const dec_layout *l, uint8_t *out) {
  float *d = (float *)(out + l->d), *dmin = (float *)(out + l->dmin), *mn = (float *)(out + l->mn);
  int slices = is_k(kind) ? 8 : 1, bytes = tile_block_bytes(kind);
  for (int64_t sb = 0; sb < nb / slices; sb++) {
    const uint8_t *blk = w + (size_t)sb * bytes;
    for (int t = 0; t < slices; t++) {
      int64_t b = sb * slices + t;
      tile_w ts = slice_at(kind, blk, t);
      _mm256_store_si256((__m256i *)(out + l->u + 32 * b), ts.u);
      if (is_k(kind)) {
        _mm256_store_ps((float *)(out + l->sc + 32 * b), _mm256_cvtepi32_ps(ts.sc));
        d[b] = sp_avx2_f16(blk + d_offset(kind));
        dmin[b] = sp_avx2_f16(blk + dmin_offset(kind));
        mn[b] = kind == T_Q4_K || kind == T_Q5_K ? _mm256_cvtss_f32(ts.mn) : 0.0f;
        if (kind == T_Q2_K) _mm256_store_ps((float *)(out + l->mnv + 32 * b), ts.mn);
      } else {
        d[b] = sp_avx2_f16(blk);
        dmin[b] = has_m1(kind) ? sp_avx2_f16(blk + 2) : 0.0f; /* Q4_1, Q5_1: the min mw */
      }
    }
  }
  for (int64_t b = nb; b < ((nb + 7) & ~7); b++) d[b] = dmin[b] = mn[b] = 0.0f;
}

/* Q4_1, Q5_1: each output's scalar chain m = fma(mw_b, sx_b, m), four
 * activation rows per vector (lane j: activation row j; s4 holds the
 * group's sx, block-major, four a block). */
SP_TILES_INLINE void m1_chains(int rw, int64_t nb, const uint8_t *dec, const dec_layout *l, const float *s4,
                               float m1[TILE_RW][4]) {
  __m128 mv[TILE_RW];
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

/* rw decoded weight rows (1..TILE_RW) by nx activation rows, all blocks;
 * the same float operations as tile(). Scales d_w * dx_b come eight blocks
 * at a time from one multiply and are read back as broadcasts. act: per
 * activation row and block, its quants and act_corr; dxs: the activation
 * scales, rows nb8 apart. */
SP_TILES_INLINE void tile_dec(int kind, int rw, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l,
                              const __m256i *act, const float *dxs, const float *s4, float *d, size_t ds) {
  int64_t nb8 = (nb + 7) & ~7;
  __m256 acc[TILE_RW][TILE_NX], mins[TILE_RW][TILE_NX];
  _Alignas(32) float sk[TILE_RW][TILE_NX][8], smin[TILE_RW][TILE_NX][8];
  SP_UNROLL
  for (int r = 0; r < rw; r++) {
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[r][j] = mins[r][j] = _mm256_setzero_ps();
  }
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
      __m256i u[TILE_RW];
      __m256 sc[TILE_RW], mn[TILE_RW];
      SP_UNROLL
      for (int r = 0; r < rw; r++) {
        const uint8_t *row = dec + (size_t)r * l->row;
        u[r] = _mm256_load_si256((const __m256i *)(row + l->u + 32 * b));
        if (is_k(kind)) sc[r] = _mm256_load_ps((const float *)(row + l->sc + 32 * b));
        if (kind == T_Q2_K) mn[r] = _mm256_load_ps((const float *)(row + l->mnv + 32 * b));
        else if (has_min(kind)) mn[r] = _mm256_broadcast_ss((const float *)(row + l->mn) + b);
      }
      SP_UNROLL
      for (int j = 0; j < nx; j++) {
        /* one load each for all the tile's weight rows (the barrier keeps
         * the compiler from folding a load into every vpdpbusd) */
        __m256i xq = _mm256_load_si256(&act[2 * ((size_t)j * nb + b)]);
        __m256i c = _mm256_load_si256(&act[2 * ((size_t)j * nb + b) + 1]);
        __asm__("" : "+v"(xq), "+v"(c));
        SP_UNROLL
        for (int r = 0; r < rw; r++) {
          __m256 p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(has_min(kind) ? _mm256_setzero_si256() : c, u[r], xq));
          if (is_k(kind)) p = _mm256_mul_ps(p, sc[r]); /* exact: see dec_layout */
          acc[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sk[r][j][t]), p, acc[r][j]);
          if (has_min(kind)) {
            __m256 m = _mm256_mul_ps(mn[r], _mm256_castsi256_ps(c));
            mins[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&smin[r][j][t]), m, mins[r][j]);
          }
        }
      }
    }
  }
  _Alignas(16) float m1[TILE_RW][4] = {{0}};
  if (has_m1(kind)) m1_chains(rw, nb, dec, l, s4, m1);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    float *dj = (float *)((uint8_t *)d + (size_t)j * ds);
    SP_UNROLL
    for (int r = 0; r < rw; r++) dj[r] = tile_result(kind, acc[r][j], mins[r][j], m1[r][j]);
  }
}

SP_TILES_INLINE void group_dec(int kind, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l, int64_t nw,
                               const __m256i *act, const float *dxs, const float *s4, float *d, size_t ds) {
  /* four weight rows a tile (the min types: two, their min lanes need registers too) */
  int64_t i = 0;
  if (!has_min(kind))
    for (; i + 4 <= nw; i += 4) tile_dec(kind, 4, nx, nb, dec + (size_t)i * l->row, l, act, dxs, s4, d + i, ds);
  for (; i + 2 <= nw; i += 2) tile_dec(kind, 2, nx, nb, dec + (size_t)i * l->row, l, act, dxs, s4, d + i, ds);
  if (i < nw) tile_dec(kind, 1, nx, nb, dec + (size_t)i * l->row, l, act, dxs, s4, d + i, ds);
}

/* ---- the same with activation rows in pairs, one pair a 512-bit vector ---- */

/* A pair of activation rows' block b: row 2p's quants, act_corr and scale
 * (repeated) in the low 256 bits, row 2p + 1's in the high. */
typedef struct act_pair {
  __m512i q, c;
  __m512 dx;
} act_pair;

SP_TILES_INLINE __m256 low_half(__m512 v) { return _mm512_castps512_ps256(v); }
SP_TILES_INLINE __m256 high_half(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* Eight floats at p, in both halves. */
SP_TILES_INLINE __m512 both_halves(const float *p) {
  return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_load_ps(p))));
}

/* tile_dec over np pairs of activation rows (nx of them real): each 256-bit
 * half of a lane chain is exactly tile_dec's chain for its row (the scale
 * d_w * dx_b rounded once, one fma per block, in block order), so the
 * outputs are bit-identical; a 512-bit instruction does two rows' work. */
SP_TILES_INLINE void tile_dec2(int kind, int rw, int np, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l,
                               const act_pair *ap, const float *s4, float *d, size_t ds) {
  __m512 acc[TILE_RW][2], mins[TILE_RW][2];
  SP_UNROLL
  for (int r = 0; r < rw; r++) {
    SP_UNROLL
    for (int p = 0; p < np; p++) acc[r][p] = mins[r][p] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; b++) {
    __m512i u[TILE_RW];
    __m512 sc[TILE_RW], mn[TILE_RW];
    SP_UNROLL
    for (int r = 0; r < rw; r++) {
      const uint8_t *row = dec + (size_t)r * l->row;
      u[r] = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(row + l->u + 32 * b)));
      if (is_k(kind)) sc[r] = both_halves((const float *)(row + l->sc + 32 * b));
      if (kind == T_Q2_K) mn[r] = both_halves((const float *)(row + l->mnv + 32 * b));
      else if (has_min(kind)) mn[r] = _mm512_set1_ps(((const float *)(row + l->mn))[b]);
    }
    SP_UNROLL
    for (int p = 0; p < np; p++) {
      const act_pair *a = &ap[(size_t)p * nb + b];
      __m512i xq = a->q, c = a->c;
      __m512 dx = a->dx;
      __asm__("" : "+v"(xq), "+v"(c), "+v"(dx));
      SP_UNROLL
      for (int r = 0; r < rw; r++) {
        const uint8_t *row = dec + (size_t)r * l->row;
        __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(has_min(kind) ? _mm512_setzero_si512() : c, u[r], xq));
        if (is_k(kind)) q = _mm512_mul_ps(q, sc[r]); /* exact: see dec_layout */
        __m512 s = _mm512_mul_ps(_mm512_set1_ps(((const float *)(row + l->d))[b]), dx);
        acc[r][p] = _mm512_fmadd_ps(s, q, acc[r][p]);
        if (has_min(kind)) {
          __m512 m = _mm512_mul_ps(mn[r], _mm512_castsi512_ps(c));
          __m512 smin = _mm512_mul_ps(_mm512_set1_ps(((const float *)(row + l->dmin))[b]), dx);
          mins[r][p] = _mm512_fmadd_ps(smin, m, mins[r][p]);
        }
      }
    }
  }
  _Alignas(16) float m1[TILE_RW][4] = {{0}};
  if (has_m1(kind)) m1_chains(rw, nb, dec, l, s4, m1);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    float *dj = (float *)((uint8_t *)d + (size_t)j * ds);
    int p = j / 2;
    SP_UNROLL
    for (int r = 0; r < rw; r++) {
      __m256 aj = j % 2 ? high_half(acc[r][p]) : low_half(acc[r][p]);
      __m256 mj = j % 2 ? high_half(mins[r][p]) : low_half(mins[r][p]);
      dj[r] = tile_result(kind, aj, mj, m1[r][j]);
    }
  }
}

SP_TILES_INLINE void group_dec2(int kind, int np, int nx, int64_t nb, const uint8_t *dec, const dec_layout *l,
                                int64_t nw, const act_pair *ap, const float *s4, float *d, size_t ds) {
  int64_t i = 0;
  if (!has_min(kind))
    for (; i + 4 <= nw; i += 4) tile_dec2(kind, 4, np, nx, nb, dec + (size_t)i * l->row, l, ap, s4, d + i, ds);
  for (; i + 2 <= nw; i += 2) tile_dec2(kind, 2, np, nx, nb, dec + (size_t)i * l->row, l, ap, s4, d + i, ds);
  if (i < nw) tile_dec2(kind, 1, np, nx, nb, dec + (size_t)i * l->row, l, ap, s4, d + i, ds);
}

/* The pairs of the group's rows xr[0..n) (a missing partner: zeros, its
 * outputs never written). */
SP_TILES_INLINE void pair_rows(int kind, int n, int64_t nb, const sp_q8_act *const *xr, act_pair *ap) {
  for (int p = 0; p < (n + 1) / 2; p++)
    for (int64_t b = 0; b < nb; b++) {
      const sp_q8_act *lo = &xr[2 * p][b], *hi = 2 * p + 1 < n ? &xr[2 * p + 1][b] : NULL;
      __m256i zero = _mm256_setzero_si256();
      __m256i q_lo = _mm256_loadu_si256((const __m256i *)lo->qs);
      __m256i q_hi = hi ? _mm256_loadu_si256((const __m256i *)hi->qs) : zero;
      __m256i c_lo = act_corr(kind, lo), c_hi = hi ? act_corr(kind, hi) : zero;
      act_pair *a = &ap[(size_t)p * nb + b];
      a->q = _mm512_inserti64x4(_mm512_castsi256_si512(q_lo), q_hi, 1);
      a->c = _mm512_inserti64x4(_mm512_castsi256_si512(c_lo), c_hi, 1);
      a->dx = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(lo->d))),
                                                  _mm256_castps_pd(_mm256_set1_ps(hi ? hi->d : 0.0f)), 1));
    }
}

/* Chunks of weight rows, each decoded once, against every group of
 * TILE_NX activation rows. Needs nb <= TILE_MAX_BLOCKS and two decoded
 * rows within DEC_BYTES. */
SP_TILES_INLINE void gemm_dec(int kind, int64_t nb, const uint8_t *w, size_t ws, int64_t nw, const void *x,
                              size_t xs, int64_t nx, float *d, size_t ds) {
  int64_t nb8 = (nb + 7) & ~7;
  _Alignas(32) uint8_t dec[DEC_BYTES];
  __m256i act[nb * 2]; /* a lone row's blocks: its quants, act_corr */
  act_pair ap[TILE_NX / 2 * nb]; /* two rows or more: in pairs */
  _Alignas(32) float dxs[nb8];
  _Alignas(16) float s4[4 * nb]; /* Q4_1, Q5_1: sx per block, four rows a block */
  dec_layout l = dec_layout_of(kind, nb);
  int64_t chunk = (int64_t)(DEC_BYTES / l.row) & ~(int64_t)1;
  for (int64_t i0 = 0; i0 < nw; i0 += chunk) {
    int64_t rows = nw - i0 < chunk ? nw - i0 : chunk;
    for (int64_t i = 0; i < rows; i++) decode_row(kind, nb, w + (size_t)(i0 + i) * ws, &l, dec + (size_t)i * l.row);
    for (int64_t m = 0; m < nx; m += TILE_NX) {
      int n = nx - m < TILE_NX ? (int)(nx - m) : TILE_NX;
      const sp_q8_act *xr[TILE_NX];
      for (int j = 0; j < n; j++) {
        xr[j] = (const sp_q8_act *)((const uint8_t *)x + (size_t)(m + j) * xs);
        for (int64_t b = 0; b < nb; b++) s4[4 * b + j] = xr[j][b].s;
      }
      for (int j = n; j < 4; j++)
        for (int64_t b = 0; b < nb; b++) s4[4 * b + j] = 0.0f;
      float *dm = (float *)((uint8_t *)d + (size_t)m * ds) + i0;
      if (n == 1) {
        for (int64_t b = 0; b < nb; b++) {
          act[2 * b] = _mm256_loadu_si256((const __m256i *)xr[0][b].qs);
          act[2 * b + 1] = act_corr(kind, &xr[0][b]);
          dxs[b] = xr[0][b].d;
        }
        for (int64_t b = nb; b < nb8; b++) dxs[b] = 0.0f;
        group_dec(kind, 1, nb, dec, &l, rows, act, dxs, s4, dm, ds);
        continue;
      }
      pair_rows(kind, n, nb, xr, ap);
      switch (n) {
      case 2: group_dec2(kind, 1, 2, nb, dec, &l, rows, ap, s4, dm, ds); break;
      case 3: group_dec2(kind, 2, 3, nb, dec, &l, rows, ap, s4, dm, ds); break;
      default: group_dec2(kind, 2, 4, nb, dec, &l, rows, ap, s4, dm, ds); break;
      }
    }
  }
}

/* The decoded path where it fits, else gemm_rows(). */
static inline bool dec_fits(int kind, int64_t k) {
  int64_t nb = k / SP_QK;
  return nb <= TILE_MAX_BLOCKS && 2 * dec_layout_of(kind, nb).row <= DEC_BYTES;
}

#define SP_TILES_GEMM(name, kind)                                                                      \
  SP_TILES_TARGET __attribute__((noinline)) static void name##_dec(int64_t k, const void *w, size_t ws, \
                                                                   int64_t nw, const void *x, size_t xs, \
                                                                   int64_t nx, float *d, size_t ds) {   \
    gemm_dec(kind, k / SP_QK, w, ws, nw, x, xs, nx, d, ds);                                            \
  }                                                                                                    \
  SP_TILES_TARGET __attribute__((noinline)) static void name##_rows(int64_t k, const void *w, size_t ws, \
                                                                    int64_t nw, const void *x, size_t xs, \
                                                                    int64_t nx, float *d, size_t ds) {  \
    gemm_rows(kind, k, w, ws, nw, x, xs, nx, d, ds);                                                   \
  }                                                                                                    \
  static void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *x, size_t xs, int64_t nx, \
                   float *d, size_t ds) {                                                              \
    if (dec_fits(kind, k)) name##_dec(k, w, ws, nw, x, xs, nx, d, ds);                                 \
    else name##_rows(k, w, ws, nw, x, xs, nx, d, ds);                                                  \
  }
SP_TILES_GEMM(gemm_q8_0_vnni, T_Q8_0)
SP_TILES_GEMM(gemm_q5_0_vnni, T_Q5_0)
SP_TILES_GEMM(gemm_q4_k_vnni, T_Q4_K)
SP_TILES_GEMM(gemm_q6_k_vnni, T_Q6_K)
SP_TILES_GEMM(gemm_q5_k_vnni, T_Q5_K)
SP_TILES_GEMM(gemm_q3_k_vnni, T_Q3_K)
SP_TILES_GEMM(gemm_q2_k_vnni, T_Q2_K)
SP_TILES_GEMM(gemm_q4_0_vnni, T_Q4_0)
SP_TILES_GEMM(gemm_q4_1_vnni, T_Q4_1)
SP_TILES_GEMM(gemm_q5_1_vnni, T_Q5_1)

void sp_cpu_avx512_vnni_gemms(sp_gemm_fn *gemm) {
  gemm[SP_DTYPE_Q8_0] = gemm_q8_0_vnni;
  gemm[SP_DTYPE_Q5_0] = gemm_q5_0_vnni;
  gemm[SP_DTYPE_Q4_K] = gemm_q4_k_vnni;
  gemm[SP_DTYPE_Q6_K] = gemm_q6_k_vnni;
  gemm[SP_DTYPE_Q5_K] = gemm_q5_k_vnni;
  gemm[SP_DTYPE_Q3_K] = gemm_q3_k_vnni;
  gemm[SP_DTYPE_Q2_K] = gemm_q2_k_vnni;
  gemm[SP_DTYPE_Q4_0] = gemm_q4_0_vnni;
  gemm[SP_DTYPE_Q4_1] = gemm_q4_1_vnni;
  gemm[SP_DTYPE_Q5_1] = gemm_q5_1_vnni;
}

#endif
