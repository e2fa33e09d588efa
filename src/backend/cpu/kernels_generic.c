/*
 * kernels_generic.c: the portable inner loops, in plain C.
 *
 * They are the reference: they spell out the numerics contract of
 * kernels.h one operation at a time, and every SIMD table must compute the
 * same bits (tests/test_cpu_kernels.c checks it on every table the CPU
 * has). Clarity first; speed comes from the SIMD tables. The dots are
 * built twice on x86 (target_clones): with FMA instructions where the CPU
 * has them, else with the C library's fmaf; both round once, so both give
 * the same bits.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "core/dtype.h"

#if defined(__x86_64__) && !defined(__clang__)
#define SP_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define SP_FMA_CLONES
#endif

static inline float load_f16(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return sp_f16_to_f32(h);
}

static inline const void *row_at(const void *x, size_t stride, int j) {
  return (const uint8_t *)x + (size_t)j * stride;
}

/* n weights of a float row from element i0 on, widened exactly to f32. */
static void widen_weights(uint32_t dtype, const void *w, int64_t i0, int64_t n, float *out) {
  const uint8_t *p = (const uint8_t *)w + i0 * (dtype == SP_DTYPE_F32 ? 4 : 2);
  for (int64_t i = 0; i < n; i++) {
    uint16_t h;
    if (dtype == SP_DTYPE_F32) {
      memcpy(&out[i], p + 4 * i, sizeof(float));
      continue;
    }
    memcpy(&h, p + 2 * i, sizeof h);
    out[i] = dtype == SP_DTYPE_F16 ? sp_f16_to_f32(h) : sp_bf16_to_f32(h);
  }
}

/* Contract point 2: element i into lane i % 8, fused, then the tree. */
SP_FMA_CLONES static float float_dot_row(uint32_t dtype, int64_t k, const void *w, const float *x) {
  float lanes[8] = {0}, wide[8];
  for (int64_t i0 = 0; i0 < k; i0 += 8) {
    int64_t n = k - i0 < 8 ? k - i0 : 8;
    widen_weights(dtype, w, i0, n, wide);
    for (int64_t l = 0; l < n; l++) lanes[l] = fmaf(wide[l], x[i0 + l], lanes[l]);
  }
  return sp_cpu_lanes8_sum(lanes);
}

static void float_dot(uint32_t dtype, int64_t k, const void *w, const void *x, size_t xs, int nx,
                      float *out) {
  for (int j = 0; j < nx; j++) out[j] = float_dot_row(dtype, k, w, row_at(x, xs, j));
}

static void dot_f32(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(SP_DTYPE_F32, k, w, x, xs, nx, out);
}

static void dot_f16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(SP_DTYPE_F16, k, w, x, xs, nx, out);
}

static void dot_bf16(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  float_dot(SP_DTYPE_BF16, k, w, x, xs, nx, out);
}

/* A quantized weight block as 32 integers in element order, its scale and
 * (Q4_1) its min. */
typedef struct weight_block {
  int8_t q[SP_QK];
  float d, m;
} weight_block;

static void unpack_q4(const uint8_t *qs, int bias, int8_t *q) {
  for (int i = 0; i < SP_QK / 2; i++) {
    q[i] = (int8_t)((qs[i] & 0x0f) - bias);
    q[i + SP_QK / 2] = (int8_t)((qs[i] >> 4) - bias);
  }
}

static void load_block(uint32_t dtype, const uint8_t *w, int64_t b, weight_block *wb) {
  const uint8_t *blk = w + b * (int64_t)sp_dtype_get(dtype)->block_bytes;
  wb->d = load_f16(blk);
  wb->m = 0;
  if (dtype == SP_DTYPE_Q8_0) memcpy(wb->q, blk + 2, SP_QK);
  else if (dtype == SP_DTYPE_Q4_0) unpack_q4(blk + 2, 8, wb->q);
  else {
    wb->m = load_f16(blk + 2);
    unpack_q4(blk + 4, 0, wb->q);
  }
}

/* Contract point 3 for one activation row. */
SP_FMA_CLONES static float quant_dot_row(uint32_t dtype, int64_t k, const uint8_t *w, const sp_q8_act *a) {
  float lanes[8] = {0}, mins = 0;
  weight_block wb;
  for (int64_t b = 0; b < k / SP_QK; b++) {
    load_block(dtype, w, b, &wb);
    float s = wb.d * a[b].d;
    int32_t prod[SP_QK];
    for (int e = 0; e < SP_QK; e++) prod[e] = wb.q[e] * a[b].qs[e];
    for (int l = 0; l < 8; l++) {
      int32_t p = prod[4 * l] + prod[4 * l + 1] + prod[4 * l + 2] + prod[4 * l + 3];
      lanes[l] = fmaf(s, (float)p, lanes[l]);
    }
    if (dtype == SP_DTYPE_Q4_1) mins = fmaf(wb.m, a[b].s, mins);
  }
  return sp_cpu_lanes8_sum(lanes) + mins;
}

static void quant_dot(uint32_t dtype, int64_t k, const void *w, const void *x, size_t xs, int nx,
                      float *out) {
  for (int j = 0; j < nx; j++) out[j] = quant_dot_row(dtype, k, w, row_at(x, xs, j));
}

static void dot_q8_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(SP_DTYPE_Q8_0, k, w, x, xs, nx, out);
}

static void dot_q4_0(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(SP_DTYPE_Q4_0, k, w, x, xs, nx, out);
}

static void dot_q4_1(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {
  quant_dot(SP_DTYPE_Q4_1, k, w, x, xs, nx, out);
}

/* ---- the issue-15 types (contract point 3, second part) ---- */

/* A row's accumulators: the 8 lanes, the min lanes (Q2_K, Q4_K, Q5_K)
 * and the scalar min (Q5_1). */
typedef struct block_acc {
  float lanes[8], min_lanes[8], mins;
} block_acc;

/* One 32-element slice against activation block a. */
static inline void slice_step(const sp_quant_block *qb, sp_quant_min mk, const sp_quant_slice *ws,
                              const sp_q8_act *a, block_acc *acc) {
  float s = qb->d * a->d, sm = qb->m * a->d;
  for (int l = 0; l < 8; l++) {
    int32_t p = 0, xsum = 0;
    for (int e = 4 * l; e < 4 * l + 4; e++) p += ws->q[e] * a->qs[e], xsum += a->qs[e];
    acc->lanes[l] = fmaf(s, (float)(ws->sc[l / 4] * p), acc->lanes[l]);
    if (mk == SP_QUANT_MIN_SUB)
      acc->min_lanes[l] = fmaf(sm, (float)(ws->mn[l / 4] * xsum), acc->min_lanes[l]);
  }
  if (mk == SP_QUANT_MIN_ADD) acc->mins = fmaf(qb->m, a->s, acc->mins);
}

SP_FMA_CLONES static float block_dot_row(uint32_t dtype, int64_t k, const uint8_t *w, const sp_q8_act *a) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  sp_quant_min mk = sp_quant_min_kind(dtype);
  block_acc acc = {{0}, {0}, 0};
  sp_quant_block qb;
  for (int64_t b = 0; b < k / info->block_elems; b++, w += info->block_bytes) {
    sp_quant_unpack(dtype, w, &qb);
    for (int t = 0; t < qb.slices; t++, a++) slice_step(&qb, mk, &qb.s[t], a, &acc);
  }
  float sum = sp_cpu_lanes8_sum(acc.lanes);
  if (mk == SP_QUANT_MIN_ADD) return sum + acc.mins;
  if (mk == SP_QUANT_MIN_SUB) return sum - sp_cpu_lanes8_sum(acc.min_lanes);
  return sum;
}

static void block_dot(uint32_t dtype, int64_t k, const void *w, const void *x, size_t xs, int nx,
                      float *out) {
  for (int j = 0; j < nx; j++) out[j] = block_dot_row(dtype, k, w, row_at(x, xs, j));
}

/* Not static: the SIMD tables point at the types they do not speed up. */
#define SP_BLOCK_DOT(name, dtype)                                                                     \
  void name(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out) {         \
    block_dot(dtype, k, w, x, xs, nx, out);                                                           \
  }
SP_BLOCK_DOT(sp_cpu_generic_dot_q5_0, SP_DTYPE_Q5_0)
SP_BLOCK_DOT(sp_cpu_generic_dot_q5_1, SP_DTYPE_Q5_1)
SP_BLOCK_DOT(sp_cpu_generic_dot_q2_k, SP_DTYPE_Q2_K)
SP_BLOCK_DOT(sp_cpu_generic_dot_q3_k, SP_DTYPE_Q3_K)
SP_BLOCK_DOT(sp_cpu_generic_dot_q4_k, SP_DTYPE_Q4_K)
SP_BLOCK_DOT(sp_cpu_generic_dot_q5_k, SP_DTYPE_Q5_K)
SP_BLOCK_DOT(sp_cpu_generic_dot_q6_k, SP_DTYPE_Q6_K)
SP_BLOCK_DOT(sp_cpu_generic_dot_iq4_nl, SP_DTYPE_IQ4_NL)
SP_BLOCK_DOT(sp_cpu_generic_dot_iq4_xs, SP_DTYPE_IQ4_XS)

/* Contract point 4. */
static void quantize_block(const float *x, sp_q8_act *y) {
  float amax = 0;
  int has_nan = 0;
  for (int i = 0; i < SP_QK; i++) {
    if (isnan(x[i])) has_nan = 1;
    else amax = fmaxf(amax, fabsf(x[i]));
  }
  float id = amax > 0 ? 127.0f / amax : 0.0f;
  int32_t sum = 0;
  for (int i = 0; i < SP_QK; i++) {
    float v = x[i] * id;
    v = isnan(v) ? 0.0f : fminf(fmaxf(nearbyintf(v), -127.0f), 127.0f);
    y->qs[i] = (int8_t)v;
    sum += y->qs[i];
  }
  sp_q8_act_set_scale(y, has_nan ? NAN : amax / 127.0f, sum);
}

static void quantize_q8(const float *x, sp_q8_act *y, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++) quantize_block(x + b * SP_QK, y + b);
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
            [SP_DTYPE_Q5_0] = sp_cpu_generic_dot_q5_0,
            [SP_DTYPE_Q5_1] = sp_cpu_generic_dot_q5_1,
            [SP_DTYPE_Q2_K] = sp_cpu_generic_dot_q2_k,
            [SP_DTYPE_Q3_K] = sp_cpu_generic_dot_q3_k,
            [SP_DTYPE_Q4_K] = sp_cpu_generic_dot_q4_k,
            [SP_DTYPE_Q5_K] = sp_cpu_generic_dot_q5_k,
            [SP_DTYPE_Q6_K] = sp_cpu_generic_dot_q6_k,
            [SP_DTYPE_IQ4_NL] = sp_cpu_generic_dot_iq4_nl,
            [SP_DTYPE_IQ4_XS] = sp_cpu_generic_dot_iq4_xs,
        },
    .quantize_q8 = quantize_q8,
    .add = add_f32,
    .mul = mul_f32,
    .scale = scale_f32,
};

const sp_cpu_kernels *sp_cpu_kernels_generic(void) { return &generic_kernels; }
