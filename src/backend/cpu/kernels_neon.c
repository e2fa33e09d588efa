/*
 * kernels_neon.c: inner loops for arm64 (NEON is always present there).
 *
 * The same tiles as kernels_avx2.c with 4-float vectors, under the same
 * numerics contract (kernels.h): a row's 8 lanes are two vectors, updated
 * with fused multiply-adds (vfmaq). 8-bit partials use SDOT when the
 * compiler targets it (ARMv8.2 dotprod, e.g. Apple silicon), else widening
 * multiplies; both give the contract's exact four-element partials.
 * K-quant sub-block scales multiply those partials in 32 bits. Of the
 * issue-15 types, Q5_0, Q4_K, Q5_K and Q6_K have loops here; the others
 * use generic's.
 */
#include <math.h>
#include <stdbool.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_NEON)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1, W_Q5_0 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* A row's 8 contract lanes: lo = lanes 0..3, hi = lanes 4..7. */
typedef struct lanes8 {
  float32x4_t lo, hi;
} lanes8;

static const lanes8 lanes8_zero = {{0, 0, 0, 0}, {0, 0, 0, 0}};

/* The contract's tree: (a0+a4, a1+a5, a2+a6, a3+a7), then (t0+t2, t1+t3),
 * then their sum. */
SP_NEON_INLINE float lanes8_sum(lanes8 a) {
  float32x4_t t = vaddq_f32(a.lo, a.hi);
  float32x2_t h = vadd_f32(vget_low_f32(t), vget_high_f32(t));
  return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
}

/* lanes = fma(w, x, lanes) for 8 elements. */
SP_NEON_INLINE lanes8 fma8(lanes8 acc, const float *w, const float *x) {
  acc.lo = vfmaq_f32(acc.lo, vld1q_f32(w), vld1q_f32(x));
  acc.hi = vfmaq_f32(acc.hi, vld1q_f32(w + 4), vld1q_f32(x + 4));
  return acc;
}

/* ---- f32 / f16 / bf16 weights times f32 activations ---- */

SP_NEON_INLINE float load_w1(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return ((const float *)w)[i];
  if (kind == W_F16) return sp_neon_f16((const uint8_t *)w + 2 * i);
  uint16_t h;
  memcpy(&h, (const uint8_t *)w + 2 * i, sizeof h);
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* n <= 8 weights from element i on, widened into t (zero-padded: fma(0,
 * 0, lane) is the lane, so padding never changes a result). */
SP_NEON_INLINE void widen8(int kind, const void *w, int64_t i, int64_t n, float *t) {
  if (n == 8 && kind != W_F32) {
    const uint16_t *h = (const uint16_t *)w + i;
    float32x4_t a = kind == W_F16 ? sp_neon_load_f16(h) : sp_neon_load_bf16(h);
    float32x4_t b = kind == W_F16 ? sp_neon_load_f16(h + 4) : sp_neon_load_bf16(h + 4);
    vst1q_f32(t, a);
    vst1q_f32(t + 4, b);
    return;
  }
  for (int64_t e = 0; e < 8; e++) t[e] = e < n ? load_w1(kind, w, i + e) : 0.0f;
}

/* 8 activations from x (n of them real, the rest zero). */
SP_NEON_INLINE void load_x8(const float *x, int64_t n, float *t) {
  for (int64_t e = 0; e < 8; e++) t[e] = e < n ? x[e] : 0.0f;
}

/* nx activation rows share each widened weight chunk. */
SP_NEON_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                               size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  lanes8 acc[SP_CPU_MAX_NX];
  float wt[8], xt[8];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = lanes8_zero;
  }
  for (int64_t i = 0; i < k; i += 8) {
    int64_t n = k - i < 8 ? k - i : 8;
    const float *wp = wt;
    if (kind == W_F32 && n == 8) wp = (const float *)w + i;
    else widen8(kind, w, i, n, wt);
    SP_UNROLL
    for (int j = 0; j < nx; j++) {
      const float *xp = xr[j] + i;
      if (n < 8) load_x8(xp, n, xt), xp = xt;
      acc[j] = fma8(acc[j], wp, xp);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes8_sum(acc[j]);
}

SP_NEON_INLINE void float_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  switch (nx) {
  case 1: float_tile(kind, 1, k, w, x, xs, out); break;
  case 2: float_tile(kind, 2, k, w, x, xs, out); break;
  case 3: float_tile(kind, 3, k, w, x, xs, out); break;
  default: float_tile(kind, 4, k, w, x, xs, out); break;
  }
}

static void dot_f32(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(W_F32, k, w, x, xs, nx, out);
}
static void dot_f16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(W_F16, k, w, x, xs, nx, out);
}
static void dot_bf16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(W_BF16, k, w, x, xs, nx, out);
}

/* ---- quantized weights times sp_q8_act activations ---- */

static inline int block_bytes(int kind) {
  return kind == W_Q8_0   ? SP_Q8_0_BYTES
         : kind == W_Q4_0 ? SP_Q4_0_BYTES
         : kind == W_Q5_0 ? SP_Q5_0_BYTES
                          : SP_Q4_1_BYTES;
}

/* 0xf0 in byte e where bit e of the 16 bits at qh is clear: Q5_0's
 * nibble | 0xf0 is the nibble - 16 as a signed byte. */
SP_NEON_INLINE uint8x16_t q5_0_clear_high(const uint8_t *qh) {
  static const uint8_t bit_of[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t bits = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
  return vbicq_u8(vdupq_n_u8(0xf0), vtstq_u8(bits, vld1q_u8(bit_of)));
}

/* A block's 32 weights as signed bytes (Q4_1: 0..15), in two halves. */
SP_NEON_INLINE void load_wq(int kind, const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
  if (kind == W_Q8_0) {
    *lo = vld1q_s8((const int8_t *)blk + 2);
    *hi = vld1q_s8((const int8_t *)blk + 18);
    return;
  }
  if (kind == W_Q5_0) {
    uint8x16_t v = vld1q_u8(blk + 6);
    *lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), q5_0_clear_high(blk + 2)));
    *hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), q5_0_clear_high(blk + 4)));
    return;
  }
  uint8x16_t v = vld1q_u8(blk + (kind == W_Q4_0 ? 2 : 4));
  *lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
  *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  if (kind == W_Q4_0) {
    *lo = vsubq_s8(*lo, vdupq_n_s8(8));
    *hi = vsubq_s8(*hi, vdupq_n_s8(8));
  }
}

/* One row's chain (contract point 3): the 8 lanes and Q4_1's mins. */
typedef struct quant_acc {
  lanes8 lanes;
  float mins;
} quant_acc;

SP_NEON_INLINE void quant_step(int kind, const uint8_t *blk, int8x16_t lo, int8x16_t hi, const sp_q8_act *a,
                               quant_acc *acc) {
  float32x4_t s = vdupq_n_f32(sp_neon_f16(blk) * a->d);
  float32x4_t p0 = vcvtq_f32_s32(sp_neon_partials_i8(lo, vld1q_s8(a->qs)));
  float32x4_t p1 = vcvtq_f32_s32(sp_neon_partials_i8(hi, vld1q_s8(a->qs + 16)));
  acc->lanes.lo = vfmaq_f32(acc->lanes.lo, s, p0);
  acc->lanes.hi = vfmaq_f32(acc->lanes.hi, s, p1);
  if (kind == W_Q4_1) acc->mins = fmaf(sp_neon_f16(blk + 2), a->s, acc->mins);
}

/* One weight row by nx activation rows. */
SP_NEON_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
                               size_t xs, float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  quant_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (quant_acc){lanes8_zero, 0};
  }
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * block_bytes(kind);
    int8x16_t lo, hi;
    load_wq(kind, blk, &lo, &hi);
    SP_UNROLL
    for (int j = 0; j < nx; j++) quant_step(kind, blk, lo, hi, &xr[j][b], &acc[j]);
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes8_sum(acc[j].lanes) + acc[j].mins;
}

SP_NEON_INLINE void quant_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  int64_t nb = k / SP_QK;
  switch (nx) {
  case 1: quant_tile(kind, 1, nb, w, x, xs, out); break;
  case 2: quant_tile(kind, 2, nb, w, x, xs, out); break;
  case 3: quant_tile(kind, 3, nb, w, x, xs, out); break;
  default: quant_tile(kind, 4, nb, w, x, xs, out); break;
  }
}

static void dot_q8_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(W_Q8_0, k, w, x, xs, nx, out);
}
static void dot_q4_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(W_Q4_0, k, w, x, xs, nx, out);
}
static void dot_q4_1(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(W_Q4_1, k, w, x, xs, nx, out);
}
static void dot_q5_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(W_Q5_0, k, w, x, xs, nx, out);
}

/* ---- Q4_K, Q5_K, Q6_K: super-blocks of 8 slices of 32 (contract point 3) ---- */

enum { K_Q4, K_Q5, K_Q6 };

/* One slice: its 32 weights as signed bytes in two halves (Q4_K 0..15,
 * Q5_K 0..31, Q6_K -32..31), the sub-scales of the halves and (Q4_K,
 * Q5_K) the integer min in every byte. */
typedef struct k_slice {
  int8x16_t lo, hi, min;
  int32x4_t sc_lo, sc_hi;
} k_slice;

/* Bits `shift`.. of 16 bytes, `mask` wide (a variable right shift). */
SP_NEON_INLINE uint8x16_t bits_at(const uint8_t *p, int shift, uint8_t mask) {
  return vandq_u8(vshlq_u8(vld1q_u8(p), vdupq_n_s8((int8_t)-shift)), vdupq_n_u8(mask));
}

/* Q4_K / Q5_K slice t: nibble t % 2 of qs[32 (t / 2) ..] (qs at blk + 16 or
 * 48) and (Q5_K) bit t of qh[e] (qh at blk + 16) as bit 4. */
SP_NEON_INLINE k_slice q45_k_slice(int kind, const uint8_t *blk, int t) {
  const uint8_t *qs = blk + (kind == K_Q5 ? 48 : 16) + 32 * (t / 2);
  uint8x16_t lo = bits_at(qs, 4 * (t % 2), 0x0f), hi = bits_at(qs + 16, 4 * (t % 2), 0x0f);
  if (kind == K_Q5) {
    lo = vorrq_u8(lo, vshlq_n_u8(bits_at(blk + 16, t, 1), 4));
    hi = vorrq_u8(hi, vshlq_n_u8(bits_at(blk + 32, t, 1), 4));
  }
  int sc, mn;
  qb_k4_scale_min(blk + 4, t, &sc, &mn);
  return (k_slice){vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), vdupq_n_s8((int8_t)mn), vdupq_n_s32(sc),
                   vdupq_n_s32(sc)};
}

/* Q6_K slice t = 4h + u: nibble u / 2 of ql[64h + 32 (u % 2) ..], bits 2u
 * of qh[32h ..] (qh at blk + 128) as bits 4..5, minus 32. */
SP_NEON_INLINE k_slice q6_k_slice(const uint8_t *blk, int t) {
  int h = t / 4, u = t % 4;
  const uint8_t *ql = blk + 64 * h + 32 * (u % 2), *qh = blk + 128 + 32 * h;
  uint8x16_t lo = vorrq_u8(bits_at(ql, 4 * (u / 2), 0x0f), vshlq_n_u8(bits_at(qh, 2 * u, 3), 4));
  uint8x16_t hi = vorrq_u8(bits_at(ql + 16, 4 * (u / 2), 0x0f), vshlq_n_u8(bits_at(qh + 16, 2 * u, 3), 4));
  const int8_t *sc = (const int8_t *)(blk + 192) + 2 * t;
  return (k_slice){vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(32)),
                   vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(32)), vdupq_n_s8(0), vdupq_n_s32(sc[0]),
                   vdupq_n_s32(sc[1])};
}

/* One row's chains: the 8 lanes and the 8 min lanes. */
typedef struct k_acc {
  lanes8 lanes, mins;
} k_acc;

SP_NEON_INLINE void k_step(int kind, const k_slice *w, float d, float dmin, const sp_q8_act *a, k_acc *acc) {
  int8x16_t x_lo = vld1q_s8(a->qs), x_hi = vld1q_s8(a->qs + 16);
  float32x4_t s = vdupq_n_f32(d * a->d);
  int32x4_t p_lo = vmulq_s32(sp_neon_partials_i8(w->lo, x_lo), w->sc_lo);
  int32x4_t p_hi = vmulq_s32(sp_neon_partials_i8(w->hi, x_hi), w->sc_hi);
  acc->lanes.lo = vfmaq_f32(acc->lanes.lo, s, vcvtq_f32_s32(p_lo));
  acc->lanes.hi = vfmaq_f32(acc->lanes.hi, s, vcvtq_f32_s32(p_hi));
  if (kind == K_Q6) return;
  float32x4_t sm = vdupq_n_f32(dmin * a->d);
  acc->mins.lo = vfmaq_f32(acc->mins.lo, sm, vcvtq_f32_s32(sp_neon_partials_i8(w->min, x_lo)));
  acc->mins.hi = vfmaq_f32(acc->mins.hi, sm, vcvtq_f32_s32(sp_neon_partials_i8(w->min, x_hi)));
}

static inline int k_block_bytes(int kind) {
  return kind == K_Q4 ? SP_Q4_K_BYTES : kind == K_Q5 ? SP_Q5_K_BYTES : SP_Q6_K_BYTES;
}

/* One weight row of nsb super-blocks by nx activation rows. */
SP_NEON_INLINE void k_tile(int kind, int nx, int64_t nsb, const uint8_t *w, const void *x, size_t xs,
                           float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  k_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = (k_acc){lanes8_zero, lanes8_zero};
  }
  for (int64_t b = 0; b < nsb; b++) {
    const uint8_t *blk = w + b * k_block_bytes(kind);
    bool q6 = kind == K_Q6;
    float d = sp_neon_f16(q6 ? blk + 208 : blk), dmin = q6 ? 0.0f : sp_neon_f16(blk + 2);
    for (int t = 0; t < 8; t++) {
      k_slice ws = q6 ? q6_k_slice(blk, t) : q45_k_slice(kind, blk, t);
      SP_UNROLL
      for (int j = 0; j < nx; j++) k_step(kind, &ws, d, dmin, &xr[j][8 * b + t], &acc[j]);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes8_sum(acc[j].lanes) - lanes8_sum(acc[j].mins);
}

SP_NEON_INLINE void k_dot(int kind, int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  int64_t nsb = k / SP_QK_K;
  switch (nx) {
  case 1: k_tile(kind, 1, nsb, w, x, xs, out); break;
  case 2: k_tile(kind, 2, nsb, w, x, xs, out); break;
  case 3: k_tile(kind, 3, nsb, w, x, xs, out); break;
  default: k_tile(kind, 4, nsb, w, x, xs, out); break;
  }
}

static void dot_q4_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  k_dot(K_Q4, k, w, x, xs, nx, out);
}
static void dot_q5_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  k_dot(K_Q5, k, w, x, xs, nx, out);
}
static void dot_q6_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  k_dot(K_Q6, k, w, x, xs, nx, out);
}

/* Contract point 4: vmaxq_f32 propagates NaN, so NaN elements are
 * replaced by 0 before the max and counted apart; vcvtnq rounds to nearest
 * even; the clamp keeps every value in int8 range. */
static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    float32x4_t v[8], m = vdupq_n_f32(0);
    uint32x4_t nan = vdupq_n_u32(0);
    SP_UNROLL
    for (int i = 0; i < 8; i++) {
      v[i] = vld1q_f32(x + 4 * i);
      uint32x4_t ord = vceqq_f32(v[i], v[i]);
      nan = vorrq_u32(nan, vmvnq_u32(ord));
      m = vmaxq_f32(m, vreinterpretq_f32_u32(vandq_u32(ord, vreinterpretq_u32_f32(vabsq_f32(v[i])))));
    }
    float amax = vmaxvq_f32(m);
    float id = amax > 0 ? 127.0f / amax : 0.0f;
    int32x4_t sum = vdupq_n_s32(0);
    SP_UNROLL
    for (int i = 0; i < 8; i += 2) {
      int32x4_t q[2];
      for (int h = 0; h < 2; h++) {
        float32x4_t p = vmulq_n_f32(v[i + h], id);
        p = vreinterpretq_f32_u32(vandq_u32(vceqq_f32(p, p), vreinterpretq_u32_f32(p)));
        p = vminq_f32(vmaxq_f32(p, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
        q[h] = vcvtnq_s32_f32(p);
      }
      sum = vaddq_s32(sum, vaddq_s32(q[0], q[1]));
      int16x8_t q16 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
      vst1_s8(y[b].qs + 4 * i, vqmovn_s16(q16));
    }
    sp_q8_act_set_scale(&y[b], vmaxvq_u32(nan) ? NAN : amax / 127.0f, vaddvq_s32(sum));
  }
}

/* ---- elementwise ---- */

static void add_f32(float *d, const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(d + i, vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
  for (; i < n; i++) d[i] = a[i] + b[i];
}

static void mul_f32(float *d, const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(d + i, vmulq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
  for (; i < n; i++) d[i] = a[i] * b[i];
}

static void scale_f32(float *d, const float *a, float s, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(d + i, vmulq_n_f32(vld1q_f32(a + i), s));
  for (; i < n; i++) d[i] = a[i] * s;
}

static const sp_cpu_kernels neon_kernels = {
    .name = "neon",
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
            [SP_DTYPE_Q5_K] = dot_q5_k,
            [SP_DTYPE_Q6_K] = dot_q6_k,
            [SP_DTYPE_Q5_1] = sp_cpu_generic_dot_q5_1,
            SP_GENERIC_BLOCK_DOTS, /* the other issue-15 types: generic's loops */
        },
    .quantize_q8 = quantize_q8,
    .add = add_f32,
    .mul = mul_f32,
    .scale = scale_f32,
};

const sp_cpu_kernels *sp_cpu_kernels_neon(void) { return &neon_kernels; }

#else

const sp_cpu_kernels *sp_cpu_kernels_neon(void) { return NULL; }

#endif
