/*
 * test_cpu_gemm.c: every gemm entry of every kernel table computes, for
 * each output element, the generic dot's bits (kernels.h, "Numerics
 * contract": tiling over weight and activation rows must not change any
 * single output).
 *
 * For each table this CPU runs and each weight dtype it has a gemm for:
 * blocks of 1, 2, 3 and 5 weight rows by 1..9 activation rows (so every
 * register-tile shape and remainder), row lengths from one block up to
 * one past the longest row a gemm keeps per-group tables for, with
 * ordinary, hostile (NaN, infinite, huge, subnormal values and f16
 * scales) and extreme data (every byte of a block one value, activations
 * at +-127). Each element is compared with the generic table's dot of
 * that one weight row and one activation row; any two NaNs count as the
 * same. The x86 tables must have a gemm for every type of the K-quant
 * files (Q8_0, Q5_0, Q2_K..Q6_K) and for Q4_0, Q4_1, Q5_1, so a lost
 * registration fails too.
 * Skipped (77) when no table here has a gemm.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "check.h"
#include "core/dtype.h"

#define MAX_NW 5
#define MAX_NX 9
#define LONG_K 16640 /* 520 blocks of 32, 65 of 256: past the per-group tables */

static uint64_t rng_state = 0x6a09e667f3bcc909ull;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rng_f(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f; }

static bool same_float(float a, float b) {
  return (isnan(a) && isnan(b)) || sp_f32_bits(a) == sp_f32_bits(b);
}

enum { DATA_ORDINARY, DATA_HOSTILE, DATA_EXTREME };

static float test_value(int data) {
  if (data == DATA_HOSTILE) {
    switch (rng_u32() % 16) {
    case 0: return NAN;
    case 1: return (rng_u32() & 1) ? INFINITY : -INFINITY;
    case 2: return rng_f(-1, 1) * 3e38f;
    case 3: return rng_f(-1, 1) * 1e-40f;
    case 4: return 0.0f;
    default: break;
    }
  }
  if (data == DATA_EXTREME) return (rng_u32() & 1) ? -1.0f : 1.0f;
  return rng_f(-1, 1) * ((rng_u32() & 3) == 0 ? 10.0f : 1.0f);
}

/* Byte offsets of the f16 scale and (-1 if none) the min or dmin. */
static void scale_offsets(uint32_t dtype, int *d, int *m) {
  *m = -1;
  switch (dtype) {
  case SP_DTYPE_Q4_1:
  case SP_DTYPE_Q5_1:
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K: *d = 0, *m = 2; break;
  case SP_DTYPE_Q2_K: *d = 80, *m = 82; break;
  case SP_DTYPE_Q3_K: *d = 108; break;
  case SP_DTYPE_Q6_K: *d = 208; break;
  default: *d = 0; break;
  }
}

static void put_f16(uint8_t *p, float f) {
  uint16_t h = sp_f32_to_f16(f);
  memcpy(p, &h, 2);
}

/* One weight row: random (or, extreme, one repeated) bytes, then scales. */
static void fill_row(uint32_t dtype, uint8_t *row, int64_t k, int data) {
  static const uint8_t bytes[] = {0x00, 0xff, 0xaa, 0x55, 0x88, 0x77};
  const sp_dtype_info *info = sp_dtype_get(dtype);
  uint8_t fill = bytes[rng_u32() % 6];
  int d, m;
  scale_offsets(dtype, &d, &m);
  for (int64_t b = 0; b < k / info->block_elems; b++) {
    uint8_t *blk = row + b * info->block_bytes;
    for (uint32_t i = 0; i < info->block_bytes; i++) blk[i] = data == DATA_EXTREME ? fill : (uint8_t)rng_u32();
    float scale = data == DATA_HOSTILE ? test_value(DATA_HOSTILE) * 0.05f : rng_f(0.002f, 0.1f);
    put_f16(blk + d, scale);
    if (m >= 0) put_f16(blk + m, data == DATA_HOSTILE ? test_value(DATA_HOSTILE) * 0.01f : rng_f(0, 0.05f));
  }
}

typedef struct gemm_inputs {
  uint8_t w[MAX_NW][LONG_K * 2];
  float xf[LONG_K];
  sp_q8_act x[MAX_NX][LONG_K / SP_QK];
  float out[MAX_NX][MAX_NW + 3]; /* a row stride wider than nw */
} gemm_inputs;

/* One block of nw x nx products against generic's dots; true if all agree. */
static bool check_block(const sp_cpu_kernels *t, uint32_t dtype, int64_t k, int nw, int nx, int data,
                        gemm_inputs *in) {
  for (int i = 0; i < nw; i++) fill_row(dtype, in->w[i], k, data);
  for (int j = 0; j < nx; j++) {
    for (int64_t e = 0; e < k; e++) in->xf[e] = test_value(data);
    sp_cpu_kernels_generic()->quantize_q8(in->xf, in->x[j], k);
  }
  for (int j = 0; j < nx; j++)
    for (int i = 0; i < MAX_NW + 3; i++) in->out[j][i] = -1234.5f;
  t->gemm[dtype](k, in->w, sizeof in->w[0], nw, in->x, sizeof in->x[0], nx, &in->out[0][0], sizeof in->out[0]);
  bool ok = true;
  for (int j = 0; j < nx; j++) {
    for (int i = 0; i < nw; i++) {
      float ref;
      sp_cpu_kernels_generic()->dot[dtype](k, in->w[i], in->x[j], 0, 1, &ref);
      if (!same_float(in->out[j][i], ref)) {
        if (ok)
          printf("     %s gemm %s k=%" PRId64 " %dx%d data %d: [%d][%d] = %a, generic %a\n", t->name,
                 sp_dtype_name(dtype), k, nw, nx, data, j, i, in->out[j][i], ref);
        ok = false;
      }
    }
    for (int i = nw; i < MAX_NW + 3; i++) ok &= in->out[j][i] == -1234.5f; /* nothing past nw */
  }
  return ok;
}

int main(void) {
  static const char *names[] = {"avx2", "avx512", "neon"};
  static const int nws[] = {1, 2, 3, 5};
  static const int64_t blocks[] = {1, 2, 3, 5, 18, 34};
  static const int64_t super_blocks[] = {1, 2, 3, 4, 6, 9}; /* as many as blocks */
  gemm_inputs *in = calloc(1, sizeof *in);
  if (!in) return 2;
  int tested = 0;
  for (size_t n = 0; n < sizeof names / sizeof *names; n++) {
    const sp_cpu_kernels *t = sp_cpu_kernels_by_name(names[n]);
    if (!t) continue;
    if (strcmp(names[n], "neon") != 0) {
      static const uint32_t expected[] = {SP_DTYPE_Q8_0, SP_DTYPE_Q5_0, SP_DTYPE_Q2_K, SP_DTYPE_Q3_K,
                                          SP_DTYPE_Q4_K, SP_DTYPE_Q5_K, SP_DTYPE_Q6_K,
                                          SP_DTYPE_Q4_0, SP_DTYPE_Q4_1, SP_DTYPE_Q5_1};
      for (size_t e = 0; e < sizeof expected / sizeof *expected; e++)
        CHECK(t->gemm[expected[e]] != NULL, "%s has no gemm for %s", t->name, sp_dtype_name(expected[e]));
    }
    for (uint32_t dtype = 0; dtype < SP_DTYPE_COUNT; dtype++) {
      if (!t->gemm[dtype]) continue;
      tested++;
      int64_t block = sp_dtype_get(dtype)->block_elems;
      const int64_t *counts = block == SP_QK_K ? super_blocks : blocks;
      int bad = 0, cases = 0;
      for (int data = 0; data < 3; data++)
        for (size_t c = 0; c < 6; c++)
          for (size_t w = 0; w < sizeof nws / sizeof *nws; w++)
            for (int nx = 1; nx <= MAX_NX; nx++, cases++)
              bad += !check_block(t, dtype, counts[c] * block, nws[w], nx, data, in);
      /* rows too long for the per-group tables: another path */
      for (int data = 0; data < 3; data++)
        for (int nx = 1; nx <= MAX_NX; nx += 3, cases++) bad += !check_block(t, dtype, LONG_K, 3, nx, data, in);
      CHECK(bad == 0, "%s gemm %s: %d of %d blocks differ from generic's dots", t->name, sp_dtype_name(dtype),
            bad, cases);
      printf("%s %s gemm %-5s: %d blocks (1..5 x 1..9 rows; ordinary, hostile, extreme), same bits as "
             "generic's dots\n", bad ? "FAIL" : "ok  ", t->name, sp_dtype_name(dtype), cases);
    }
  }
  free(in);
  if (!tested) {
    printf("SKIP: no table here has a gemm\n");
    return 77;
  }
  return CHECK_DONE();
}
