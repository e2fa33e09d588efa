/*
 * kernels_neon.c: inner loops for arm64 (NEON is always present there).
 *
 * The same tiles as kernels_avx2.c with 4-float vectors, under the same
 * numerics contract (kernels.h): a float dot's 16 lanes are four vectors,
 * a quantized dot's even and odd blocks two vectors each. 8-bit partials
 * use SDOT when the compiler targets it (ARMv8.2 dotprod, e.g. Apple
 * silicon), else widening multiplies; both give the contract's exact
 * four-element partials. vmla/vfma are avoided: products are rounded
 * before they are added.
 */
#include <math.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_NEON)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

SP_NEON_INLINE float32x4_t mul_add(float32x4_t lanes, float32x4_t w, float32x4_t x) {
  return vaddq_f32(lanes, vmulq_f32(w, x));
}

/* The contract's tree over lanes a[0..3] (0..15): u = a0+a2 | a1+a3 gives
 * lanes l + l+8; then (u0+u4, u1+u5, u2+u6, u3+u7), (t0+t2, t1+t3), sum. */
SP_NEON_INLINE float lanes16_sum(const float32x4_t a[4]) {
  float32x4_t t = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
  float32x2_t h = vadd_f32(vget_low_f32(t), vget_high_f32(t));
  return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
}

/* ---- f32 / f16 / bf16 weights times f32 activations ---- */

SP_NEON_INLINE float32x4_t load_w4(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return vld1q_f32((const float *)w + i);
  if (kind == W_F16) return sp_neon_load_f16((const uint16_t *)w + i);
  return sp_neon_load_bf16((const uint16_t *)w + i);
}

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

/* 16 elements of one row into its four lane vectors. */
SP_NEON_INLINE void float_step(float32x4_t *acc, const float32x4_t *wv, const float *x) {
  SP_UNROLL
  for (int v = 0; v < 4; v++) acc[v] = mul_add(acc[v], wv[v], vld1q_f32(x + 4 * v));
}

/* nx rows share each weight load; the last partial step reads zero-padded
 * copies (a lane plus 0 * 0 is the lane). */
SP_NEON_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                               size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  float32x4_t acc[SP_CPU_MAX_NX][4], wv[4];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    for (int v = 0; v < 4; v++) acc[j][v] = vdupq_n_f32(0);
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    for (int v = 0; v < 4; v++) wv[v] = load_w4(kind, w, i + 4 * v);
    SP_UNROLL
    for (int j = 0; j < nx; j++) float_step(acc[j], wv, xr[j] + i);
  }
  if (i < k) {
    float wt[16] = {0}, xt[16];
    for (int64_t t = 0; t < k - i; t++) wt[t] = load_w1(kind, w, i + t);
    for (int v = 0; v < 4; v++) wv[v] = vld1q_f32(wt + 4 * v);
    SP_UNROLL
    for (int j = 0; j < nx; j++) {
      memset(xt, 0, sizeof xt);
      memcpy(xt, xr[j] + i, (size_t)(k - i) * sizeof(float));
      float_step(acc[j], wv, xt);
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes16_sum(acc[j]);
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
  return kind == W_Q8_0 ? SP_Q8_0_BYTES : kind == W_Q4_0 ? SP_Q4_0_BYTES : SP_Q4_1_BYTES;
}

/* A block's 32 weights as signed bytes (Q4_1: 0..15), in two halves. */
SP_NEON_INLINE void load_wq(int kind, const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
  if (kind == W_Q8_0) {
    *lo = vld1q_s8((const int8_t *)blk + 2);
    *hi = vld1q_s8((const int8_t *)blk + 18);
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

/* Per activation row: lanes[0..1] even blocks, lanes[2..3] odd blocks;
 * Q4_1 mins by block parity (contract point 3). */
typedef struct quant_acc {
  float32x4_t lanes[4];
  float mins[2];
} quant_acc;

SP_NEON_INLINE void quant_block(int kind, int nx, const uint8_t *w, int64_t b,
                                const sp_q8_act *const *xr, quant_acc *acc) {
  const uint8_t *blk = w + b * block_bytes(kind);
  int8x16_t lo, hi;
  load_wq(kind, blk, &lo, &hi);
  float dw = sp_neon_f16(blk), mw = kind == W_Q4_1 ? sp_neon_f16(blk + 2) : 0;
  int half = 2 * (int)(b & 1);
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    const sp_q8_act *a = &xr[j][b];
    float32x4_t s = vdupq_n_f32(dw * a->d);
    float32x4_t p0 = vcvtq_f32_s32(sp_neon_partials_i8(lo, vld1q_s8(a->qs)));
    float32x4_t p1 = vcvtq_f32_s32(sp_neon_partials_i8(hi, vld1q_s8(a->qs + 16)));
    acc[j].lanes[half] = mul_add(acc[j].lanes[half], s, p0);
    acc[j].lanes[half + 1] = mul_add(acc[j].lanes[half + 1], s, p1);
    if (kind == W_Q4_1) acc[j].mins[b & 1] += mw * a->s;
  }
}

SP_NEON_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
                               size_t xs, float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  quant_acc acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    for (int v = 0; v < 4; v++) acc[j].lanes[v] = vdupq_n_f32(0);
    acc[j].mins[0] = acc[j].mins[1] = 0;
  }
  for (int64_t b = 0; b < nb; b++) quant_block(kind, nx, w, b, xr, acc);
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = lanes16_sum(acc[j].lanes) + (acc[j].mins[0] + acc[j].mins[1]);
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
