/*
 * test_cpu_kernels.c: every kernel table computes the generic table's bits.
 *
 * The numerics contract of src/backend/cpu/kernels.h says each table
 * (generic, avx2, avx512, neon) gives the same bits for every input and
 * that a row's dot does not depend on how many rows share the call (nx).
 * This test holds each table this CPU runs to that, entry by entry:
 *  - dots of every weight dtype, for lengths with and without a tail, nx
 *    1..4, against generic with the same nx and against nx = 1 per row;
 *    quantized types also on extreme blocks (every quant, sub-scale and
 *    min at an end of its range, activations at +-127);
 *  - activation quantization (d, s and all 32 bytes);
 *  - add, mul and scale;
 * on ordinary data and on hostile data (NaN, infinities, huge values,
 * subnormals, f16 scales that are NaN or infinite). Hostile data must also
 * go through without undefined behaviour: the ASan/UBSan build runs this.
 * "Same bits" treats any two NaNs as equal: NaN payloads are not part of
 * the contract. A table the CPU lacks is listed as not run; if only
 * generic exists, the test reports skipped (77).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "core/dtype.h"

#define MAX_K 1088 /* longest row tested (34 blocks) */
#define MAX_NX SP_CPU_MAX_NX

static int n_checks, n_failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  n_checks++;
  n_failures += !ok;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
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

/* ---- data ---- */

/* One float for a test vector: ordinary, or (hostile) now and then a NaN,
 * an infinity, a huge or a subnormal value. */
static float test_value(bool hostile) {
  if (hostile) {
    switch (rng_u32() % 16) {
    case 0: return NAN;
    case 1: return (rng_u32() & 1) ? INFINITY : -INFINITY;
    case 2: return rng_f(-1, 1) * 3e38f;
    case 3: return rng_f(-1, 1) * 1e-40f;
    case 4: return 0.0f;
    default: break;
    }
  }
  return rng_f(-1, 1) * ((rng_u32() & 3) == 0 ? 10.0f : 1.0f);
}

static void fill_floats(float *x, int64_t n, bool hostile) {
  for (int64_t i = 0; i < n; i++) x[i] = test_value(hostile);
}

/* Where a block keeps its f16 scale and (if any) its f16 min or dmin;
 * every other byte of a block may hold anything. */
typedef struct scale_fields {
  int d, min;  /* byte offsets; min -1 if none */
  bool dmin;   /* the min is a K type's dmin (scales mins of 0..63, subtracted) */
} scale_fields;

static scale_fields scale_fields_of(uint32_t dtype) {
  switch (dtype) {
  case SP_DTYPE_Q4_1:
  case SP_DTYPE_Q5_1: return (scale_fields){0, 2, false};
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K: return (scale_fields){0, 2, true};
  case SP_DTYPE_Q2_K: return (scale_fields){80, 82, true};
  case SP_DTYPE_Q3_K: return (scale_fields){108, -1, false};
  case SP_DTYPE_Q6_K: return (scale_fields){208, -1, false};
  default: return (scale_fields){0, -1, false};
  }
}

/* A weight row of k elements of dtype; hostile rows get NaN, infinite and
 * subnormal f16 scales as well. */
static void fill_weights(uint32_t dtype, uint8_t *row, int64_t k, bool hostile) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  if (info->block_elems == 1) {
    for (int64_t i = 0; i < k; i++) {
      float f = test_value(hostile);
      uint16_t h = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
      if (dtype == SP_DTYPE_F32) memcpy(row + 4 * i, &f, 4);
      else memcpy(row + 2 * i, &h, 2);
    }
    return;
  }
  scale_fields f = scale_fields_of(dtype);
  for (int64_t b = 0; b < k / info->block_elems; b++) {
    uint8_t *blk = row + b * info->block_bytes;
    for (uint32_t i = 0; i < info->block_bytes; i++) blk[i] = (uint8_t)rng_u32();
    float scale = hostile ? test_value(true) * 0.05f : rng_f(0.002f, 0.1f);
    float min = hostile ? test_value(true) * 0.05f : rng_f(-0.5f, 0.5f);
    if (f.dmin) min = fabsf(min) * 0.1f;
    uint16_t d = sp_f32_to_f16(scale), m = sp_f32_to_f16(min);
    memcpy(blk + f.d, &d, 2);
    if (f.min >= 0) memcpy(blk + f.min, &m, 2);
  }
}

/* ---- dots ---- */

typedef struct dot_case {
  uint32_t dtype;
  int64_t k;
  bool hostile;
  int extreme; /* 0, or 1 + an extreme_inputs pattern */
} dot_case;

typedef struct dot_inputs {
  uint8_t w[MAX_K * 4];
  float x[MAX_NX][MAX_K];          /* activation rows */
  sp_q8_act q[MAX_NX][MAX_K / 32]; /* the same rows quantized by generic */
} dot_inputs;

/* Extreme data for pattern p: every byte of a quantized block but its
 * f16 scale and min one value (no bits, all bits, alternating bits,
 * nibbles 8 and 7), so quants, sub-scales and mins sit at their ends of
 * range together, and activations all +-1 (quantized to +-127) with signs
 * all +, all -, alternating or random: every integer partial as large as
 * the format allows (int16 saturation, int32 overflow). */
static void extreme_inputs(const dot_case *c, dot_inputs *in, int p) {
  static const uint8_t bytes[] = {0x00, 0xff, 0xaa, 0x55, 0x88, 0x77};
  const sp_dtype_info *info = sp_dtype_get(c->dtype);
  scale_fields f = scale_fields_of(c->dtype);
  for (int64_t b = 0; b < c->k / info->block_elems; b++) {
    uint8_t *blk = in->w + b * info->block_bytes;
    for (int i = 0; i < (int)info->block_bytes; i++) {
      bool scale = (i >= f.d && i < f.d + 2) || (f.min >= 0 && i >= f.min && i < f.min + 2);
      if (!scale) blk[i] = bytes[p % 6];
    }
  }
  for (int j = 0; j < MAX_NX; j++) {
    for (int64_t i = 0; i < c->k; i++) {
      int signs = (p / 6 + j) % 4;
      bool neg = signs == 0 ? false : signs == 1 ? true : signs == 2 ? (i & 1) != 0 : (rng_u32() & 1) != 0;
      in->x[j][i] = neg ? -1.0f : 1.0f;
    }
    sp_cpu_kernels_generic()->quantize_q8(in->x[j], in->q[j], c->k - c->k % SP_QK);
  }
}

static void make_inputs(const dot_case *c, dot_inputs *in) {
  fill_weights(c->dtype, in->w, c->k, c->hostile);
  for (int j = 0; j < MAX_NX; j++) {
    fill_floats(in->x[j], c->k, c->hostile);
    sp_cpu_kernels_generic()->quantize_q8(in->x[j], in->q[j], c->k - c->k % SP_QK);
  }
  if (c->extreme) extreme_inputs(c, in, c->extreme - 1);
}

/* out[j] for nx rows with table t. */
static void run_dot(const sp_cpu_kernels *t, const dot_case *c, const dot_inputs *in, int nx,
                    float *out) {
  bool quant = sp_cpu_is_quantized(c->dtype);
  const void *x = quant ? (const void *)in->q : (const void *)in->x;
  size_t stride = quant ? sizeof in->q[0] : sizeof in->x[0];
  t->dot[c->dtype](c->k, in->w, x, stride, nx, out);
}

/* Table t against generic, and nx rows against one row at a time. */
static void test_dot_case(const sp_cpu_kernels *t, const dot_case *c, dot_inputs *in) {
  make_inputs(c, in);
  float single[MAX_NX], ref[MAX_NX], got[MAX_NX];
  bool same = true, invariant = true;
  for (int j = 0; j < MAX_NX; j++) {
    const void *x = sp_cpu_is_quantized(c->dtype) ? (const void *)in->q[j] : (const void *)in->x[j];
    t->dot[c->dtype](c->k, in->w, x, 0, 1, &single[j]);
  }
  for (int nx = 1; nx <= MAX_NX; nx++) {
    run_dot(sp_cpu_kernels_generic(), c, in, nx, ref);
    run_dot(t, c, in, nx, got);
    for (int j = 0; j < nx; j++) {
      same &= same_float(got[j], ref[j]);
      invariant &= same_float(got[j], single[j]);
    }
  }
  if (!same || !invariant)
    check(false, "%s dot %s k=%" PRId64 "%s: %s%s (got %a, generic %a)", t->name,
          sp_dtype_name(c->dtype), c->k, c->extreme ? " extreme" : c->hostile ? " hostile" : "",
          same ? "" : "differs from generic ",
          invariant ? "" : "depends on nx", got[0], ref[0]);
  else n_checks++;
}

static void test_dots(const sp_cpu_kernels *t, dot_inputs *in) {
  static const uint32_t dtypes[] = {SP_DTYPE_F32,  SP_DTYPE_F16,  SP_DTYPE_BF16,   SP_DTYPE_Q8_0,
                                    SP_DTYPE_Q4_0, SP_DTYPE_Q4_1, SP_DTYPE_Q5_0,   SP_DTYPE_Q5_1,
                                    SP_DTYPE_Q2_K, SP_DTYPE_Q3_K, SP_DTYPE_Q4_K,   SP_DTYPE_Q5_K,
                                    SP_DTYPE_Q6_K, SP_DTYPE_IQ4_NL, SP_DTYPE_IQ4_XS};
  static const int64_t float_ks[] = {1, 7, 8, 15, 16, 17, 31, 33, 64, 100, 576, 1027};
  static const int64_t blocks[] = {1, 2, 3, 5, 8, 18, 34};
  static const int64_t super_blocks[] = {1, 2, 3, 4}; /* 256-element types */
  for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++) {
    bool quant = sp_cpu_is_quantized(dtypes[d]);
    int64_t block_elems = sp_dtype_get(dtypes[d])->block_elems;
    const int64_t *counts = block_elems == SP_QK_K ? super_blocks : blocks;
    int before = n_failures, cases = 0;
    size_t n = !quant ? sizeof float_ks / sizeof *float_ks
               : block_elems == SP_QK_K ? sizeof super_blocks / sizeof *super_blocks
                                        : sizeof blocks / sizeof *blocks;
    for (int hostile = 0; hostile < 2; hostile++)
      for (size_t i = 0; i < n; i++)
        for (int rep = 0; rep < 8; rep++, cases++) {
          dot_case c = {dtypes[d], quant ? counts[i] * block_elems : float_ks[i], hostile, 0};
          test_dot_case(t, &c, in);
        }
    for (int p = 0; quant && p < 24; p++, cases++) { /* 6 byte patterns x 4 sign patterns */
      dot_case c = {dtypes[d], counts[p % 3] * block_elems, false, 1 + p};
      test_dot_case(t, &c, in);
    }
    if (n_failures == before)
      check(true, "%s dot %-6s: %d cases (ordinary, hostile%s), nx 1..4, same bits as generic "
                  "and as one row at a time", t->name, sp_dtype_name(dtypes[d]), cases, quant ? ", extreme" : "");
  }
}

/* ---- activation quantization ---- */

static bool same_act(const sp_q8_act *a, const sp_q8_act *b) {
  return same_float(a->d, b->d) && same_float(a->s, b->s) && memcmp(a->qs, b->qs, SP_QK) == 0;
}

/* Blocks that probe each rule of contract point 4. */
static void special_block(int kind, float *x) {
  for (int i = 0; i < SP_QK; i++) x[i] = rng_f(-1, 1);
  switch (kind) {
  case 0: memset(x, 0, SP_QK * sizeof *x); break;           /* amax 0 */
  case 1: for (int i = 0; i < SP_QK; i++) x[i] = NAN; break; /* all NaN */
  case 2: x[5] = NAN; break;
  case 3: x[7] = INFINITY; break;
  case 4: x[9] = -INFINITY; x[3] = NAN; break;
  case 5: for (int i = 0; i < SP_QK; i++) x[i] *= 1e-42f; break; /* subnormal amax: id = inf */
  case 6: x[0] = 3.4e38f; x[1] = -3.4e38f; break;
  case 7: for (int i = 0; i < SP_QK; i++) x[i] = (float)(i - 16) * 0.5f; break; /* ties */
  default: break;
  }
}

static void test_quantize(const sp_cpu_kernels *t) {
  float x[8 * SP_QK];
  sp_q8_act ref[8], got[8];
  bool ok = true;
  int cases = 0;
  for (int kind = 0; kind < 8; kind++, cases++) {
    special_block(kind, x);
    sp_cpu_kernels_generic()->quantize_q8(x, ref, SP_QK);
    t->quantize_q8(x, got, SP_QK);
    if (!same_act(ref, got)) {
      ok = false;
      printf("     %s quantize special block %d: d %g/%g s %g/%g\n", t->name, kind, got->d, ref->d, got->s, ref->s);
    }
  }
  for (int rep = 0; rep < 400; rep++, cases++) {
    fill_floats(x, 8 * SP_QK, rep % 2);
    sp_cpu_kernels_generic()->quantize_q8(x, ref, 8 * SP_QK);
    t->quantize_q8(x, got, 8 * SP_QK);
    for (int b = 0; b < 8; b++) ok &= same_act(&ref[b], &got[b]);
  }
  check(ok, "%s quantize_q8: %d cases (specials, ordinary, hostile), same d, s and bytes as generic", t->name,
        cases);
}

/* ---- elementwise ---- */

static void test_elementwise(const sp_cpu_kernels *t) {
  enum { N = 203 };
  float a[N], b[N], ref[N], got[N];
  bool ok = true;
  for (int rep = 0; rep < 40; rep++) {
    fill_floats(a, N, rep % 2);
    fill_floats(b, N, rep % 2);
    int64_t n = 1 + rep * 5 % N;
    float s = test_value(rep % 2);
    for (int op = 0; op < 3; op++) {
      const sp_cpu_kernels *g = sp_cpu_kernels_generic();
      memset(ref, 0, sizeof ref);
      memset(got, 0, sizeof got);
      if (op == 0) g->add(ref, a, b, n), t->add(got, a, b, n);
      if (op == 1) g->mul(ref, a, b, n), t->mul(got, a, b, n);
      if (op == 2) g->scale(ref, a, s, n), t->scale(got, a, s, n);
      for (int i = 0; i < N; i++) ok &= same_float(ref[i], got[i]);
    }
  }
  check(ok, "%s add/mul/scale: same bits as generic, nothing written past n", t->name);
}

int main(void) {
  static const char *names[] = {"avx2", "avx512", "neon"};
  dot_inputs *in = calloc(1, sizeof *in);
  if (!in) return 2;
  int tables = 0;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    const sp_cpu_kernels *t = sp_cpu_kernels_by_name(names[i]);
    if (!t) {
      printf("info %s: not run (this build or CPU lacks it)\n", names[i]);
      continue;
    }
    tables++;
    test_dots(t, in);
    test_quantize(t);
    test_elementwise(t);
  }
  free(in);
  printf("%d checks, %d failed, %d tables against generic\n", n_checks, n_failures, tables);
  if (n_failures) return 1;
  return tables ? 0 : 77;
}
