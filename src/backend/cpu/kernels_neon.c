/*
 * kernels_neon.c: inner loops for arm64 (NEON is always present there).
 *
 * The same tiles as kernels_avx2.c with 4-float vectors. 8-bit dot
 * products use SDOT when the compiler targets it (ARMv8.2 dotprod, e.g.
 * Apple silicon), else widening multiplies (simd.h: sp_neon_dot_i8).
 */
#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

#if defined(SP_CPU_NEON)

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1 };

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
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
  uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* One row: four accumulators over 16 elements per step. */
SP_NEON_INLINE float float_dot1(int kind, int64_t k, const void *w, const float *x) {
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    a0 = vfmaq_f32(a0, load_w4(kind, w, i), vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, load_w4(kind, w, i + 4), vld1q_f32(x + i + 4));
    a2 = vfmaq_f32(a2, load_w4(kind, w, i + 8), vld1q_f32(x + i + 8));
    a3 = vfmaq_f32(a3, load_w4(kind, w, i + 12), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= k; i += 4) a0 = vfmaq_f32(a0, load_w4(kind, w, i), vld1q_f32(x + i));
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < k; i++) sum += load_w1(kind, w, i) * x[i];
  return sum;
}

SP_NEON_INLINE void float_tile(int kind, int nx, int64_t k, const void *w, const void *x,
                               size_t xs, float *out) {
  const float *xr[SP_CPU_MAX_NX];
  float32x4_t acc[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = vdupq_n_f32(0);
  }
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    float32x4_t wv = load_w4(kind, w, i);
    SP_UNROLL
    for (int j = 0; j < nx; j++) acc[j] = vfmaq_f32(acc[j], wv, vld1q_f32(xr[j] + i));
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = vaddvq_f32(acc[j]);
  for (; i < k; i++) {
    float wi = load_w1(kind, w, i);
    SP_UNROLL
    for (int j = 0; j < nx; j++) out[j] += wi * xr[j][i];
  }
}

SP_NEON_INLINE void float_dot(int kind, int64_t k, const void *w, const void *x, size_t xs,
                              int nx, float *out) {
  switch (nx) {
  case 1: out[0] = float_dot1(kind, k, w, x); break;
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

SP_NEON_INLINE void quant_tile(int kind, int nx, int64_t nb, const uint8_t *w, const void *x,
                               size_t xs, float *out) {
  const sp_q8_act *xr[SP_CPU_MAX_NX];
  float32x4_t acc[SP_CPU_MAX_NX];
  float mins[SP_CPU_MAX_NX];
  SP_UNROLL
  for (int j = 0; j < nx; j++) {
    xr[j] = row_at(x, xs, j);
    acc[j] = vdupq_n_f32(0);
    mins[j] = 0;
  }
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * block_bytes(kind);
    int8x16_t lo, hi;
    load_wq(kind, blk, &lo, &hi);
    float dw = sp_neon_f16(blk);
    SP_UNROLL
    for (int j = 0; j < nx; j++) {
      const sp_q8_act *a = &xr[j][b];
      int32x4_t p = sp_neon_dot_i8(lo, hi, vld1q_s8(a->qs), vld1q_s8(a->qs + 16));
      acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(p), dw * a->d);
    }
    if (kind == W_Q4_1) {
      float mw = sp_neon_f16(blk + 2);
      SP_UNROLL
      for (int j = 0; j < nx; j++) mins[j] += mw * xr[j][b].s;
    }
  }
  SP_UNROLL
  for (int j = 0; j < nx; j++) out[j] = vaddvq_f32(acc[j]) + mins[j];
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

/* Same formula as the generic version: d = max|x| / 127 and
 * q = round_even(x * (127 / max|x|)) (vcvtnq rounds to nearest even). */
static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    float32x4_t v[8], m = vdupq_n_f32(0);
    SP_UNROLL
    for (int i = 0; i < 8; i++) {
      v[i] = vld1q_f32(x + 4 * i);
      m = vmaxq_f32(m, vabsq_f32(v[i]));
    }
    float amax = vmaxvq_f32(m);
    float id = amax > 0 ? 127.0f / amax : 0.0f;
    int32x4_t sum = vdupq_n_s32(0);
    SP_UNROLL
    for (int i = 0; i < 8; i += 2) {
      int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(v[i], id));
      int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(v[i + 1], id));
      sum = vaddq_s32(sum, vaddq_s32(q0, q1));
      int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
      vst1_s8(y[b].qs + 4 * i, vqmovn_s16(q16));
    }
    sp_q8_act_set_scale(&y[b], amax / 127.0f, vaddvq_s32(sum));
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
