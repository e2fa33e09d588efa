/*
 * test_quant_dot.c: the quantized dot products of the issue-15 types, on
 * every kernel table this CPU runs, agree with the f32 dot of the
 * dequantized weight row and the original f32 activations, within a bound
 * that only activation quantization and float rounding can use up.
 *
 * Bound, for a row of k weights w_i = (d sc q_i) - (m part) and
 * activations x_i quantized per 32-block b to dx_b * xq_i:
 *  - activation quantization: xq_i = round(x_i * 127 / amax_b), so with
 *    c_b = amax_b / 127, |x_i - c_b xq_i| <= c_b / 2 (plus the rounding of
 *    x_i * id, 127 c_b 2^-24), and dx_b = f16(c_b) is within c_b 2^-11 of
 *    c_b, times |xq_i| <= 127: |x_i - dx_b xq_i| <= 0.5625 c_b. It applies
 *    to both parts of a weight (they can cancel in w_i, not in the error),
 *    so it is weighed by A_i = |d sc q_i| + |m part|;
 *  - Q5_1's min meets sp_q8_act.s, itself rounded to f16: |m_b s_b| 2^-11;
 *  - float rounding: every product and partial sum in the kernel and in
 *    the dequantizer rounds once relative to at most sum A_i |x_i|; a lane
 *    chain is k / 8 fmas long and the tree 3 adds deep, so (k / 8 + 16)
 *    2^-23 sum A_i |x_i| covers it with room.
 * A decoding or indexing error (a wrong scale, nibble, bit or sign) moves
 * the result by about sqrt(k) |w| |x|, far outside the bound, which is
 * about k |w| |x| / 200; the test reports the largest error/bound seen.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "check.h"
#include "core/dtype.h"

#define MAX_K 1024
#define REPS 200

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rng_f(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f; }

static void put_f16(uint8_t *p, float f) {
  uint16_t h = sp_f32_to_f16(f);
  memcpy(p, &h, 2);
}

/* Random bytes, then finite scales at the type's scale fields. */
static void fill_row(uint32_t dtype, uint8_t *w, int64_t k) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  for (int64_t b = 0; b < k / info->block_elems; b++) {
    uint8_t *blk = w + b * info->block_bytes;
    for (uint32_t i = 0; i < info->block_bytes; i++) blk[i] = (uint8_t)rng_u32();
    float d = rng_f(0.002f, 0.1f), dmin = rng_f(0, 0.05f);
    switch (dtype) {
    case SP_DTYPE_Q5_1: put_f16(blk, d), put_f16(blk + 2, rng_f(-0.5f, 0.5f)); break;
    case SP_DTYPE_Q4_K:
    case SP_DTYPE_Q5_K: put_f16(blk, d), put_f16(blk + 2, dmin); break;
    case SP_DTYPE_Q2_K: put_f16(blk + 80, d), put_f16(blk + 82, dmin); break;
    case SP_DTYPE_Q3_K: put_f16(blk + 108, d); break;
    case SP_DTYPE_Q6_K: put_f16(blk + 208, d); break;
    default: put_f16(blk, d); break;
    }
  }
}

/* Activations whose block maxima stay well inside f16's normal range. */
static void fill_x(float *x, int64_t k) {
  for (int64_t b = 0; b < k / SP_QK; b++) {
    float scale = rng_f(0.1f, 10.0f);
    for (int i = 0; i < SP_QK; i++) x[b * SP_QK + i] = rng_f(-1, 1) * scale;
  }
}

/* A_i of the header: |d sc q_i| + |min part| per element. */
static void weight_magnitudes(uint32_t dtype, const uint8_t *w, int64_t k, double *a) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  sp_quant_min mk = sp_quant_min_kind(dtype);
  sp_quant_block qb;
  for (int64_t b = 0; b < k / info->block_elems; b++) {
    sp_quant_unpack(dtype, w + b * info->block_bytes, &qb);
    for (int t = 0; t < qb.slices; t++)
      for (int e = 0; e < SP_QK; e++, a++) {
        const sp_quant_slice *s = &qb.s[t];
        double m = mk == SP_QUANT_MIN_ADD ? qb.m : mk == SP_QUANT_MIN_SUB ? (double)qb.m * s->mn[e / 16] : 0;
        *a = fabs((double)qb.d * s->sc[e / 16] * s->q[e]) + fabs(m);
      }
  }
}

/* The header's bound for one row. */
static double error_bound(uint32_t dtype, const uint8_t *w, const float *x, const sp_q8_act *xq, int64_t k) {
  static double a[MAX_K];
  weight_magnitudes(dtype, w, k, a);
  double quant = 0, mag = 0, mins = 0;
  for (int64_t b = 0; b < k / SP_QK; b++) {
    double amax = 0, sum_a = 0;
    for (int i = 0; i < SP_QK; i++) {
      amax = fmax(amax, fabs(x[b * SP_QK + i]));
      sum_a += a[b * SP_QK + i];
      mag += a[b * SP_QK + i] * fabs(x[b * SP_QK + i]);
    }
    quant += 0.5625 * amax / 127 * sum_a;
    if (dtype == SP_DTYPE_Q5_1) mins += fabs(a[b * SP_QK]) * fabs(xq[b].s) * ldexp(1, -11);
  }
  return quant + mins + ((double)k / 8 + 16) * ldexp(1, -23) * mag;
}

static double f32_dot(const float *w, const float *x, int64_t k) {
  double s = 0;
  for (int64_t i = 0; i < k; i++) s += (double)w[i] * x[i];
  return s;
}

/* REPS random rows of one type against table t; returns the largest
 * error / bound seen. */
static double check_type(const sp_cpu_kernels *t, uint32_t dtype) {
  static uint8_t w[MAX_K * 2];
  static float x[MAX_K], wf[MAX_K];
  static sp_q8_act xq[MAX_K / SP_QK];
  int64_t block = sp_dtype_get(dtype)->block_elems;
  double worst = 0;
  int bad = 0;
  for (int rep = 0; rep < REPS; rep++) {
    int64_t k = block * (1 + (int64_t)(rng_u32() % (MAX_K / block)));
    fill_row(dtype, w, k);
    fill_x(x, k);
    sp_cpu_kernels_generic()->quantize_q8(x, xq, k);
    sp_quant_dequantize_row(dtype, w, wf, k);
    float got;
    t->dot[dtype](k, w, xq, 0, 1, &got);
    double err = fabs(got - f32_dot(wf, x, k)), bound = error_bound(dtype, w, x, xq, k);
    worst = fmax(worst, err / bound);
    if (!(err <= bound) && bad++ == 0)
      printf("     %s %s k=%" PRId64 ": dot %.9g, f32 %.9g, |error| %.3g > bound %.3g\n", t->name,
             sp_dtype_name(dtype), k, got, f32_dot(wf, x, k), err, bound);
  }
  CHECK(bad == 0, "%s %s: %d of %d rows outside the bound", t->name, sp_dtype_name(dtype), bad, REPS);
  return worst;
}

int main(void) {
  static const char *tables[] = {"generic", "avx2", "avx512", "neon"};
  for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
    const sp_cpu_kernels *t = sp_cpu_kernels_by_name(tables[i]);
    if (!t) continue;
    for (uint32_t dtype = 0; dtype < SP_DTYPE_COUNT; dtype++) {
      if (!sp_quant_block_known(dtype)) continue;
      double worst = check_type(t, dtype);
      printf("%s %-6s %-6s %d rows: largest |dot - f32 dot| / bound = %.3f\n", worst <= 1 ? "ok  " : "FAIL",
             t->name, sp_dtype_name(dtype), REPS, worst);
    }
  }
  return CHECK_DONE();
}
