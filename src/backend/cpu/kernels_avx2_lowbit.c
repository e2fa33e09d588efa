/*
 * kernels_avx2_lowbit.c: AVX2 dots of the low-bit issue-15 types, Q2_K,
 * Q3_K, IQ4_NL and IQ4_XS (the types of Q2_K, Q3_K_* and IQ4_* files),
 * against sp_q8_act activations.
 *
 * The same tiles as kernels_avx2.c's K-quant loops: one weight row by up
 * to four activation rows, each 32-element slice of weights decoded once
 * per tile into bytes, the tile's rows independent accumulator chains.
 * Contract point 3 of kernels.h fixes each row's order: per slice the
 * eight exact partials P[l] = sc_h * sum(q x) over elements 4l..4l+3,
 * here one maddubs (byte pairs) and one madd whose 16-bit multiplier is
 * the half's sub-block scale; then lane l = fma(d_w * dx_b, P[l], lane l).
 * maddubs wants unsigned weights: Q2_K's quants are 0..3; the signed ones
 * (Q3_K's -4..3, the IQ4 levels -127..113) go in as |q|, their signs
 * moved onto the activations (|x| <= 127, so x * sign(q) is a byte and a
 * pair sum at most 2 * 127 * 127 fits int16). Q2_K's mins take eight more
 * lanes, M[l] = mn_h * sum(x) over the same four elements, one more
 * maddubs/madd pair of the splatted min and the activations.
 *
 * The AVX-512 table copies the AVX2 table and so uses these loops too.
 */
#include "backend/cpu/kernels_avx2_lowbit.h"

#include <stdbool.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)

enum { L_Q2_K, L_Q3_K, L_IQ4_NL, L_IQ4_XS };

/* Block bytes (ggml-common.h's layouts; see quant_blocks.h). */
enum { Q2_K_BYTES = 84, Q3_K_BYTES = 110, IQ4_NL_BYTES = 18, IQ4_XS_BYTES = 136 };

static inline int lb_block_bytes(int kind) {
  return kind == L_Q2_K     ? Q2_K_BYTES
         : kind == L_Q3_K   ? Q3_K_BYTES
         : kind == L_IQ4_NL ? IQ4_NL_BYTES
                            : IQ4_XS_BYTES;
}

/* 32-element slices per block: one activation block each. */
static inline int lb_slices(int kind) { return kind == L_IQ4_NL ? 1 : 8; }

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* What a block holds for all its slices: the f16 scale (and Q2_K's dmin)
 * widened, and the signed sub-block scales Q3_K (16 halves) and IQ4_XS (8
 * slices) pack into bits. */
typedef struct lb_head {
  float d, dmin;
  int16_t sc[16];
  __m256i q2_scales; /* Q2_K: scales[16] in both 128-bit halves */
} lb_head;

/* Q3_K's 16 six-bit scales (quant_blocks.h's qb_q3_k_scale) at once:
 * scale i's low nibble is nibble i / 8 of byte i % 8, its top two bits
 * bits 2 (i / 4) of byte 8 + i % 4 (one variable shift per 32-bit lane
 * i / 4); stored + 32. */
SP_AVX2_INLINE void q3_k_scales(const uint8_t *sc, int16_t out[16]) {
  uint64_t lo;
  uint32_t hi;
  memcpy(&lo, sc, sizeof lo);
  memcpy(&hi, sc + 8, sizeof hi);
  __m128i v = _mm_set_epi64x((int64_t)hi, (int64_t)lo);
  __m128i low = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), _mm_set1_epi8(0x0f));
  __m128i top = _mm_shuffle_epi8(v, _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11));
  top = _mm_and_si128(_mm_srlv_epi32(top, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
  __m128i s = _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(top, 4)), _mm_set1_epi8(32));
  _mm256_storeu_si256((__m256i *)out, _mm256_cvtepi8_epi16(s));
}

SP_AVX2_INLINE lb_head lb_head_at(int kind, const uint8_t *blk) {
  lb_head h = {0};
  if (kind == L_Q2_K) {
    h.d = sp_avx2_f16(blk + 80);
    h.dmin = sp_avx2_f16(blk + 82);
    h.q2_scales = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)blk));
  } else if (kind == L_Q3_K) {
    h.d = sp_avx2_f16(blk + 108);
    h.dmin = 0.0f;
    q3_k_scales(blk + 96, h.sc);
  } else {
    h.d = sp_avx2_f16(blk);
    h.dmin = 0.0f;
    if (kind == L_IQ4_XS) {
      unsigned scales_h = (unsigned)blk[2] | (unsigned)blk[3] << 8;
      for (int ib = 0; ib < 8; ib++) {
        int low = (blk[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f, high = (scales_h >> (2 * ib)) & 3;
        h.sc[ib] = (int16_t)((low | high << 4) - 32);
      }
    }
  }
  return h;
}

/* One slice's weights as maddubs wants them: u unsigned (Q2_K's q, else
 * |q|), sign the q whose signs move onto the activations (not Q2_K), the
 * 16-bit sub-scales of the two halves (elements 0..15 are the low 128
 * bits), and Q2_K's integer mins of the halves in every byte. */
typedef struct lb_slice {
  __m256i u, sign, scales, min;
} lb_slice;

/* Sub-scales (or mins) s0 for the low 128 bits, s1 for the high. */
SP_AVX2_INLINE __m256i halves16(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16((int16_t)s1), _mm_set1_epi16((int16_t)s0));
}

/* Q2_K slice t = 4n + j: bits 2j of qs[32n ..] (qs at blk + 16), the
 * scale bytes 2t and 2t + 1 (scale low nibble, min high nibble), spread
 * over the low and high 128 bits by one byte shuffle. */
SP_AVX2_INLINE lb_slice q2_k_slice(const uint8_t *blk, const lb_head *h, int t) {
  __m256i b = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * (t / 4)));
  __m256i q = _mm256_and_si256(_mm256_srli_epi16(b, 2 * (t % 4)), _mm256_set1_epi8(3));
  __m256i pick = _mm256_add_epi8(_mm256_set_m128i(_mm_set1_epi8(1), _mm_setzero_si128()),
                                 _mm256_set1_epi8((char)(2 * t)));
  __m256i bytes = _mm256_shuffle_epi8(h->q2_scales, pick);
  __m256i scales = _mm256_and_si256(bytes, _mm256_set1_epi16(0x0f));
  __m256i min = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(0x0f));
  return (lb_slice){q, _mm256_setzero_si256(), scales, min};
}

/* Q3_K slice t = 4n + j: bits 2j of qs[32n ..] (qs at blk + 32), minus 4
 * where bit t of hmask[e] (hmask at blk) is clear: signed -4..3. The
 * shifts are 16-bit; the masks drop what crosses bytes. */
SP_AVX2_INLINE lb_slice q3_k_slice(const uint8_t *blk, const lb_head *h, int t) {
  __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * (t / 4)));
  __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
  lo = _mm256_and_si256(_mm256_srli_epi16(lo, 2 * (t % 4)), _mm256_set1_epi8(3));
  hm = _mm256_and_si256(_mm256_srli_epi16(hm, t), _mm256_set1_epi8(1));
  __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hm, 2)), _mm256_set1_epi8(4));
  return (lb_slice){_mm256_abs_epi8(q), q, halves16(h->sc[2 * t], h->sc[2 * t + 1]), _mm256_setzero_si256()};
}

/* IQ4_NL (qs at blk + 2) and IQ4_XS slice t (qs at blk + 8 + 16t): 16
 * bytes of nibbles indexing the 16 levels (one byte shuffle), signed
 * -127..113; one sub-scale for the whole slice (IQ4_NL: 1). */
SP_AVX2_INLINE lb_slice iq4_slice(int kind, const uint8_t *blk, const lb_head *h, int t) {
  const __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sp_iq4nl_levels));
  const uint8_t *qs = kind == L_IQ4_NL ? blk + 2 : blk + 8 + 16 * t;
  __m256i q = _mm256_shuffle_epi8(levels, sp_avx2_nibbles(qs));
  int sc = kind == L_IQ4_NL ? 1 : h->sc[t];
  return (lb_slice){_mm256_abs_epi8(q), q, _mm256_set1_epi16((int16_t)sc), _mm256_setzero_si256()};
}

SP_AVX2_INLINE lb_slice lb_slice_at(int kind, const uint8_t *blk, const lb_head *h, int t) {
  if (kind == L_Q2_K) return q2_k_slice(blk, h, t);
  if (kind == L_Q3_K) return q3_k_slice(blk, h, t);
  return iq4_slice(kind, blk, h, t);
}

/* The slice's eight partials sc * sum(q x) with one activation block, as
 * floats (exact: |P| < 2^22). */
SP_AVX2_INLINE __m256 lb_partials(int kind, const lb_slice *w, const sp_q8_act *a) {
  __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
  if (kind != L_Q2_K) xq = _mm256_sign_epi8(xq, w->sign);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w->u, xq), w->scales));
}

/* One row's chains: the 8 lanes and (Q2_K) the 8 min lanes. */
typedef struct lb_acc {
  __m256 lanes, mins;
} lb_acc;

SP_AVX2_INLINE void lb_step(int kind, const lb_slice *w, const lb_head *h, const sp_q8_act *a, lb_acc *acc) {
  acc->lanes = _mm256_fmadd_ps(_mm256_set1_ps(h->d * a->d), lb_partials(kind, w, a), acc->lanes);
  if (kind == L_Q2_K) {
    __m256i xq = _mm256_loadu_si256((const __m256i *)a->qs);
    acc->mins = _mm256_fmadd_ps(_mm256_set1_ps(h->dmin * a->d), sp_avx2_dot_u8i8(w->min, xq), acc->mins);
  }
}

/* One weight row of nb blocks by nx activation rows. */
SP_AVX2_INLINE void lb_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x, size_t xs,
                            float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  lb_acc acc[SP_CPU_MAX_NX];
  const int slices = lb_slices(kind);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (lb_acc){_mm256_setzero_ps(), _mm256_setzero_ps()};
  }
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * lb_block_bytes(kind);
    lb_head h = lb_head_at(kind, blk);
    for (int t = 0; t < slices; t++) {
      lb_slice ws = lb_slice_at(kind, blk, &h, t);
      SP_UNROLL
      for (int j = 0; j < nx; j++) lb_step(kind, &ws, &h, &xr[j][slices * b + t], &acc[j]);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++)
    out[j] = kind == L_Q2_K ? sp_avx2_hsum(acc[j].lanes) - sp_avx2_hsum(acc[j].mins) : sp_avx2_hsum(acc[j].lanes);
}

SP_AVX2_INLINE void lb_dot(int kind, int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  int64_t nb = k / (SP_QK * lb_slices(kind));
  switch (nx) {
  case 1: lb_tile(kind, 1, nb, w, x, xs, out); break;
  case 2: lb_tile(kind, 2, nb, w, x, xs, out); break;
  case 3: lb_tile(kind, 3, nb, w, x, xs, out); break;
  default: lb_tile(kind, 4, nb, w, x, xs, out); break;
  }
}

SP_TARGET_AVX2 void sp_cpu_avx2_dot_q2_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  lb_dot(L_Q2_K, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 void sp_cpu_avx2_dot_q3_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  lb_dot(L_Q3_K, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 void sp_cpu_avx2_dot_iq4_nl(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                           float *out) {
  lb_dot(L_IQ4_NL, k, w, x, xs, nx, out);
}
SP_TARGET_AVX2 void sp_cpu_avx2_dot_iq4_xs(int64_t k, const void *w, const void *x, size_t xs, int nx,
                                           float *out) {
  lb_dot(L_IQ4_XS, k, w, x, xs, nx, out);
}

#else

/* Not x86: nothing here (the AVX2 table is NULL); a declaration keeps the
 * translation unit non-empty. */
typedef int sp_cpu_avx2_lowbit_unused;

#endif
