/*
 * kernels_generic.c: the portable inner loops, in plain C.
 *
 * They are the reference the SIMD tables are checked against (run with
 * SP_CPU_SIMD=generic), so they do the same arithmetic: activations are
 * quantized with the same formula and rounding (nearest even), integer dot
 * products are exact, and only the order of float additions differs.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"

#define SP_GENERIC_CHUNK 256 /* f16/bf16 weights are widened this many at a time */

static inline float load_f16(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return sp_f16_to_f32(h);
}

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* sum(a[i] * b[i]) with 8 partial sums (breaks the add dependency chain). */
static float dot_f32_row(const float *a, const float *b, int64_t n) {
  float part[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) part[l] += a[i + l] * b[i + l];
  float sum = 0;
  for (; i < n; i++) sum += a[i] * b[i];
  for (int l = 0; l < 8; l++) sum += part[l];
  return sum;
}

static void dot_f32(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  for (int j = 0; j < nx; j++) out[j] = dot_f32_row(w, row_at(x, xs, j), k);
}

/* Widens 16-bit weights a chunk at a time, then reuses dot_f32_row. */
static void dot_half(int64_t k, const uint16_t *w, const void *x, size_t xs, int nx, float *out,
                     float (*widen)(uint16_t)) {
  float buf[SP_GENERIC_CHUNK];
  for (int j = 0; j < nx; j++) out[j] = 0;
  for (int64_t i0 = 0; i0 < k; i0 += SP_GENERIC_CHUNK) {
    int64_t n = k - i0 < SP_GENERIC_CHUNK ? k - i0 : SP_GENERIC_CHUNK;
    for (int64_t i = 0; i < n; i++) buf[i] = widen(w[i0 + i]);
    for (int j = 0; j < nx; j++) out[j] += dot_f32_row(buf, (const float *)row_at(x, xs, j) + i0, n);
  }
}

static void dot_f16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  dot_half(k, w, x, xs, nx, out, sp_f16_to_f32);
}

static void dot_bf16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  dot_half(k, w, x, xs, nx, out, sp_bf16_to_f32);
}

static inline int32_t dot_i8(const int8_t *a, const int8_t *b) {
  int32_t s = 0;
  for (int i = 0; i < SP_QK; i++) s += a[i] * b[i];
  return s;
}

/* Expands a Q4 block's nibbles to 32 values in element order, minus `bias`. */
static inline void unpack_q4(const uint8_t *qs, int bias, int8_t *q) {
  for (int i = 0; i < SP_QK / 2; i++) {
    q[i] = (int8_t)((qs[i] & 0x0f) - bias);
    q[i + SP_QK / 2] = (int8_t)((qs[i] >> 4) - bias);
  }
}

static void dot_q8_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float acc[SP_CPU_MAX_NX] = {0};
  for (int64_t b = 0; b < k / SP_QK; b++) {
    const uint8_t *blk = (const uint8_t *)w + b * SP_Q8_0_BYTES;
    float dw = load_f16(blk);
    for (int j = 0; j < nx; j++) {
      const sp_q8_act *a = (const sp_q8_act *)row_at(x, xs, j) + b;
      acc[j] += dw * a->d * (float)dot_i8((const int8_t *)(blk + 2), a->qs);
    }
  }
  for (int j = 0; j < nx; j++) out[j] = acc[j];
}

static void dot_q4_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float acc[SP_CPU_MAX_NX] = {0};
  int8_t q[SP_QK];
  for (int64_t b = 0; b < k / SP_QK; b++) {
    const uint8_t *blk = (const uint8_t *)w + b * SP_Q4_0_BYTES;
    float dw = load_f16(blk);
    unpack_q4(blk + 2, 8, q);
    for (int j = 0; j < nx; j++) {
      const sp_q8_act *a = (const sp_q8_act *)row_at(x, xs, j) + b;
      acc[j] += dw * a->d * (float)dot_i8(q, a->qs);
    }
  }
  for (int j = 0; j < nx; j++) out[j] = acc[j];
}

/* value = d * q + m, so dot = d * dx * sum(q * qx) + m * (dx * sum(qx)). */
static void dot_q4_1(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float acc[SP_CPU_MAX_NX] = {0}, mins[SP_CPU_MAX_NX] = {0};
  int8_t q[SP_QK];
  for (int64_t b = 0; b < k / SP_QK; b++) {
    const uint8_t *blk = (const uint8_t *)w + b * SP_Q4_1_BYTES;
    float dw = load_f16(blk), mw = load_f16(blk + 2);
    unpack_q4(blk + 4, 0, q);
    for (int j = 0; j < nx; j++) {
      const sp_q8_act *a = (const sp_q8_act *)row_at(x, xs, j) + b;
      acc[j] += dw * a->d * (float)dot_i8(q, a->qs);
      mins[j] += mw * a->s;
    }
  }
  for (int j = 0; j < nx; j++) out[j] = acc[j] + mins[j];
}

/* d = max|x| / 127, q = round_even(x * 127 / max|x|); s = d * sum(q). The
 * clamp only matters for NaN/inf input and keeps the conversion defined. */
static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++, x += SP_QK) {
    float amax = 0;
    for (int i = 0; i < SP_QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    float id = amax > 0 ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < SP_QK; i++) {
      float v = fminf(fmaxf(nearbyintf(x[i] * id), -127.0f), 127.0f);
      y[b].qs[i] = (int8_t)v;
      sum += y[b].qs[i];
    }
    sp_q8_act_set_scale(&y[b], amax / 127.0f, sum);
  }
}

static void add_f32(float *d, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = a[i] + b[i];
}

static void mul_f32(float *d, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = a[i] * b[i];
}

static void scale_f32(float *d, const float *a, float s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = a[i] * s;
}

static const sp_cpu_kernels generic_kernels = {
    .name = "generic",
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

const sp_cpu_kernels *sp_cpu_kernels_generic(void) { return &generic_kernels; }
