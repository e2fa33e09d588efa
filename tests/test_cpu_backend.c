/*
 * test_cpu_backend.c: the CPU backend against naive references.
 *
 * Tensors live in a malloc'd fake guest memory; each command goes through
 * sp_validate_cmd (which normalizes strides) and then through the
 * sp_backend_* wrappers, on three backends: best SIMD with 1 thread, best
 * SIMD with 2 threads, and SP_CPU_SIMD=generic with 2 threads.
 *
 * Tolerances (err = |got - ref|, ref computed in double from the exact
 * stored weights and activations):
 *  - rounding of f32 sums: every kernel adds at most K/8 + 32 products per
 *    partial sum, so err <= (K/8 + 32) * 2^-23 * sum|w*x|  ("acc").
 *  - quantized weights also quantize each activation block to 8 bits with
 *    step d = max|x| / 127, so each element moves by at most 0.51 * d:
 *    err <= acc + sum over blocks of 0.51 * d_block * sum_block |w|.
 *  - SIMD vs generic, 1 vs 2 threads: bit-identical, for every op (the
 *    numerics contract of src/backend/cpu/kernels.h; the work split never
 *    changes a sum). test_cpu_kernels checks each table entry by entry.
 *  - elementwise ops: bit-identical to the f32 reference.
 *  - transformer ops (get_rows ... attention): see "transformer ops" below.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/fp16.h"
#include "backend/cpu/threadpool.h"
#include "core/dtype.h"
#include "core/validate.h"

#define GUEST_BYTES ((size_t)64 << 20)
#define GUEST_FIRST 4096 /* bytes below are the (pretend) command list */
#define CANARY 0xAB

/* ---- checks ---- */

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

/* ---- fake guest memory ---- */

typedef struct guest {
  uint8_t *mem;
  size_t top; /* bump allocator */
} guest;

/* Allocates `bytes` at an address that is `misalign` past a 64-byte boundary. */
static uint32_t guest_alloc(guest *g, size_t bytes, size_t misalign) {
  size_t at = ((g->top + 63) & ~(size_t)63) + misalign;
  if (at + bytes > GUEST_BYTES) {
    fprintf(stderr, "fake guest memory exhausted\n");
    exit(2);
  }
  g->top = at + bytes;
  return (uint32_t)at;
}

static void guest_reset(guest *g) { g->top = GUEST_FIRST; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rng_f(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f; }

/* ---- the backends under test ---- */

typedef struct test_backend {
  const char *label;
  sp_backend *be;
  void *binding;
} test_backend;

enum { TB_SIMD1, TB_SIMD2, TB_GENERIC, TB_COUNT };
static test_backend tbs[TB_COUNT];

static void backends_open(guest *g) {
  static const char *labels[TB_COUNT] = {"simd/1t", "simd/2t", "generic/2t"};
  static const unsigned threads[TB_COUNT] = {1, 2, 2};
  sp_memory_view view = {.base = g->mem, .committed = GUEST_BYTES, .reserved = GUEST_BYTES};
  struct sp_knobs knobs; /* SP_CPU_SIMD caps the simd backends */
  sp_error_t *kerr = sp_knobs_from_env(&knobs);
  if (kerr) {
    fprintf(stderr, "knobs: %s\n", sp_error_message(kerr));
    exit(2);
  }
  for (int i = 0; i < TB_COUNT; i++) {
    const char *simd = i == TB_GENERIC ? "generic" : knobs.cpu_simd;
    sp_error_t *err = sp_backend_cpu_new_simd(threads[i], simd, &tbs[i].be);
    if (!err) err = sp_backend_adopt(tbs[i].be, &view, &tbs[i].binding);
    if (err) {
      fprintf(stderr, "backend: %s\n", sp_error_message(err));
      exit(2);
    }
    tbs[i].label = labels[i];
  }
  check(strcmp(sp_backend_cpu_simd(tbs[TB_GENERIC].be), "generic") == 0 &&
            strcmp(sp_backend_name(tbs[0].be), "cpu") == 0,
        "backends: name cpu, simd=%s, generic forced by the simd cap",
        sp_backend_cpu_simd(tbs[0].be));
  sp_backend_caps caps = sp_backend_caps_of(tbs[0].be);
  check(caps.zero_copy && caps.unified_memory, "caps: zero_copy and unified_memory");
}

static void backends_close(void) {
  for (int i = TB_COUNT - 1; i >= 0; i--) {
    sp_backend_release(tbs[i].be, tbs[i].binding);
    sp_backend_free(tbs[i].be);
  }
}

static sp_status validate(sp_cmd *cmd, char *msg, size_t cap) {
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof *cmd,
                         .max_cmds = 16};
  return sp_validate_cmd(&ctx, cmd, 0, msg, cap);
}

static bool submit(const test_backend *tb, const sp_cmd *cmd) {
  sp_error_t *err = sp_backend_submit(tb->be, tb->binding, cmd, 1, false);
  if (!err) err = sp_backend_wait(tb->be, tb->binding);
  if (err) printf("     %s: %s\n", tb->label, sp_error_message(err));
  bool ok = !err;
  sp_error_free(err);
  return ok;
}

/* ---- tensors ---- */

static sp_tensor tensor(uint32_t offset, uint32_t dtype, const uint32_t ne[4], const uint32_t nb[3]) {
  sp_tensor t = {.offset = offset, .dtype = dtype};
  memcpy(t.ne, ne, sizeof t.ne);
  if (nb) memcpy(t.nb, nb, sizeof t.nb);
  return t;
}

static uint8_t *t_row(guest *g, const sp_tensor *t, int64_t r) {
  int64_t i1 = r % t->ne[1], i2 = r / t->ne[1] % t->ne[2], i3 = r / t->ne[1] / t->ne[2];
  return g->mem + t->offset + i1 * t->nb[0] + i2 * t->nb[1] + i3 * t->nb[2];
}

static int64_t t_rows(const sp_tensor *t) { return (int64_t)t->ne[1] * t->ne[2] * t->ne[3]; }

/* Fills a normalized tensor's whole extent with the canary byte. */
static void canary_fill(guest *g, const sp_tensor *t) {
  memset(g->mem + t->offset, CANARY, sp_tensor_extent(t));
}

/* Whether every extent byte outside the tensor's rows still holds the canary. */
static bool canary_intact(guest *g, const sp_tensor *t) {
  uint64_t ext = sp_tensor_extent(t), row = sp_dtype_row_bytes(sp_dtype_get(t->dtype), t->ne[0]);
  uint8_t *in_row = calloc(ext, 1);
  for (int64_t r = 0; r < t_rows(t); r++) memset(in_row + (t_row(g, t, r) - g->mem - t->offset), 1, row);
  bool ok = true;
  for (uint64_t i = 0; i < ext && ok; i++) ok = in_row[i] || g->mem[t->offset + i] == CANARY;
  free(in_row);
  return ok;
}

/* ---- reference decoding (independent of the backend's helpers) ---- */

static double ref_f16(uint16_t h) {
  int e = h >> 10 & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
  return h & 0x8000 ? -v : v;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Decodes one weight row of k elements into w. */
static void ref_decode_row(uint32_t dtype, const uint8_t *row, int64_t k, double *w) {
  for (int64_t i = 0; i < k; i++) {
    const uint8_t *blk;
    int j = (int)(i % 32);
    switch (dtype) {
    case SP_DTYPE_F32: {
      float f;
      memcpy(&f, row + 4 * i, 4);
      w[i] = f;
      break;
    }
    case SP_DTYPE_F16: w[i] = ref_f16(rd16(row + 2 * i)); break;
    case SP_DTYPE_BF16: {
      uint32_t u = (uint32_t)rd16(row + 2 * i) << 16;
      float f;
      memcpy(&f, &u, 4);
      w[i] = f;
      break;
    }
    case SP_DTYPE_Q8_0:
      blk = row + i / 32 * 34;
      w[i] = ref_f16(rd16(blk)) * (int8_t)blk[2 + j];
      break;
    case SP_DTYPE_Q4_0:
      blk = row + i / 32 * 18;
      w[i] = ref_f16(rd16(blk)) * ((j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4) - 8);
      break;
    case SP_DTYPE_Q4_1:
      blk = row + i / 32 * 20;
      w[i] = ref_f16(rd16(blk)) * (j < 16 ? blk[4 + j] & 15 : blk[4 + j - 16] >> 4) +
             ref_f16(rd16(blk + 2));
      break;
    }
  }
}

/* Random weights: floats in [-1, 1]; quantized blocks with random bytes
 * (all 256 int8 values for Q8_0) and scales in [0.002, 0.1]. */
static void fill_weight_row(uint32_t dtype, uint8_t *row, int64_t k) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  for (int64_t i = 0; i < k; i++) {
    float f = rng_f(-1, 1);
    if (dtype == SP_DTYPE_F32) memcpy(row + 4 * i, &f, 4);
    uint16_t h = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
    if (dtype == SP_DTYPE_F16 || dtype == SP_DTYPE_BF16) memcpy(row + 2 * i, &h, 2);
  }
  if (info->block_elems == 1) return;
  for (int64_t b = 0; b < k / 32; b++) {
    uint8_t *blk = row + b * info->block_bytes;
    for (uint32_t i = 0; i < info->block_bytes; i++) blk[i] = (uint8_t)rng_u32();
    uint16_t d = sp_f32_to_f16(rng_f(0.002f, 0.1f)), m = sp_f32_to_f16(rng_f(-0.5f, 0.5f));
    memcpy(blk, &d, 2);
    if (dtype == SP_DTYPE_Q4_1) memcpy(blk + 2, &m, 2);
  }
}

/* ---- matmul ---- */

typedef struct mm_case {
  uint32_t dtype;
  int64_t n, k, m;
  bool strided;
  bool aligned; /* 64-byte aligned tensors (benchmarks); else deliberately not */
} mm_case;

/* Reference and error bound for every output (see the top of the file). */
static void mm_reference(guest *g, const mm_case *c, const sp_tensor *w, const sp_tensor *x,
                         double *ref, double *bound, double *acc_bound) {
  double *wr = malloc(sizeof(double) * c->k);
  bool quant = sp_dtype_get(c->dtype)->block_elems > 1;
  for (int64_t n = 0; n < c->n; n++) {
    ref_decode_row(c->dtype, t_row(g, w, n), c->k, wr);
    for (int64_t m = 0; m < c->m; m++) {
      const float *xr = (const float *)t_row(g, x, m);
      double sum = 0, sum_abs = 0, qerr = 0;
      for (int64_t b = 0; b < c->k; b += 32) {
        double amax = 0, wabs = 0;
        for (int64_t i = b; i < b + 32 && i < c->k; i++) {
          sum += wr[i] * xr[i];
          sum_abs += fabs(wr[i] * xr[i]);
          amax = fmax(amax, fabs(xr[i]));
          wabs += fabs(wr[i]);
        }
        qerr += quant ? 0.51 * amax / 127 * wabs : 0;
      }
      double acc = ((double)c->k / 8 + 32) * ldexp(1, -23) * sum_abs + 1e-30;
      ref[m * c->n + n] = sum;
      acc_bound[m * c->n + n] = acc;
      bound[m * c->n + n] = acc + qerr;
    }
  }
  free(wr);
}

/* Builds W, X and dst in guest memory and the (validated) command. */
static bool mm_build(guest *g, const mm_case *c, sp_cmd *cmd) {
  const sp_dtype_info *info = sp_dtype_get(c->dtype);
  size_t row = sp_dtype_row_bytes(info, c->k);
  uint32_t w_nb = c->strided ? (uint32_t)row + 12 : 0;
  uint32_t x_nb = c->strided ? (uint32_t)c->k * 4 + 20 : 0;
  uint32_t d_nb = c->strided ? (uint32_t)c->n * 4 + 28 : 0;
  size_t w_bytes = (w_nb ? w_nb : row) * c->n, x_bytes = (x_nb ? x_nb : c->k * 4) * c->m;
  size_t d_bytes = (d_nb ? d_nb : c->n * 4) * c->m;
  /* weights of 2-byte types start 2 bytes past a 64-byte boundary */
  uint32_t wo = guest_alloc(g, w_bytes, c->aligned ? 0 : info->align == 2 ? 2 : 4);
  uint32_t xo = guest_alloc(g, x_bytes, c->aligned ? 0 : 4), dof = guest_alloc(g, d_bytes, 0);
  uint32_t w_ne[4] = {(uint32_t)c->k, (uint32_t)c->n, 1, 1};
  uint32_t x_ne[4] = {(uint32_t)c->k, (uint32_t)c->m, 1, 1};
  uint32_t d_ne[4] = {(uint32_t)c->n, (uint32_t)c->m, 1, 1};
  *cmd = (sp_cmd){.op = SP_OP_MATMUL,
                  .src[0] = tensor(wo, c->dtype, w_ne, (uint32_t[3]){w_nb, 0, 0}),
                  .src[1] = tensor(xo, SP_DTYPE_F32, x_ne, (uint32_t[3]){x_nb, 0, 0}),
                  .dst = tensor(dof, SP_DTYPE_F32, d_ne, (uint32_t[3]){d_nb, 0, 0})};
  char msg[256];
  sp_status st = validate(cmd, msg, sizeof msg);
  if (st != SP_OK) {
    check(false, "matmul validate: %s", msg);
    return false;
  }
  for (int64_t n = 0; n < c->n; n++) fill_weight_row(c->dtype, t_row(g, &cmd->src[0], n), c->k);
  for (int64_t m = 0; m < c->m; m++) {
    float *xr = (float *)t_row(g, &cmd->src[1], m), scale = (float)pow(10.0, (double)(m % 3) - 1);
    for (int64_t i = 0; i < c->k; i++) xr[i] = rng_f(-1, 1) * scale;
    if (m == 1) memset(xr, 0, 32 * sizeof *xr); /* an all-zero block (scale 0) */
  }
  return true;
}

static void test_matmul_case(guest *g, const mm_case *c) {
  guest_reset(g);
  sp_cmd cmd;
  if (!mm_build(g, c, &cmd)) return;
  size_t outs = (size_t)c->n * c->m;
  double *ref = malloc(outs * sizeof *ref), *bound = malloc(outs * sizeof *bound);
  double *acc = malloc(outs * sizeof *acc);
  float *got[TB_COUNT];
  mm_reference(g, c, &cmd.src[0], &cmd.src[1], ref, bound, acc);
  bool ok = true;
  double worst[TB_COUNT] = {0};
  for (int b = 0; b < TB_COUNT; b++) {
    got[b] = malloc(outs * sizeof(float));
    canary_fill(g, &cmd.dst);
    ok &= sp_backend_supports(tbs[b].be, &cmd) && submit(&tbs[b], &cmd);
    ok &= canary_intact(g, &cmd.dst);
    for (int64_t m = 0; m < c->m; m++) memcpy(got[b] + m * c->n, t_row(g, &cmd.dst, m), c->n * 4);
    for (size_t i = 0; i < outs; i++) worst[b] = fmax(worst[b], fabs(got[b][i] - ref[i]) / bound[i]);
    ok &= worst[b] <= 1;
  }
  bool same_threads = memcmp(got[TB_SIMD1], got[TB_SIMD2], outs * sizeof(float)) == 0;
  bool same_table = memcmp(got[TB_SIMD1], got[TB_GENERIC], outs * sizeof(float)) == 0;
  check(ok && same_table && same_threads,
        "matmul %-4s N=%-4" PRId64 " K=%-4" PRId64 " M=%-2" PRId64 " %s err/bound %.3f %.3f %.3f"
        " simd==generic %s, 1t==2t %s",
        sp_dtype_name(c->dtype), c->n, c->k, c->m, c->strided ? "strided" : "packed ", worst[0],
        worst[1], worst[2], same_table ? "yes" : "NO", same_threads ? "yes" : "NO");
  for (int b = 0; b < TB_COUNT; b++) free(got[b]);
  free(ref);
  free(bound);
  free(acc);
}

static void test_matmul(guest *g) {
  static const uint32_t dtypes[] = {SP_DTYPE_F32,  SP_DTYPE_F16,  SP_DTYPE_BF16,
                                    SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1};
  static const int64_t ms[] = {1, 3, 17, 64, 67};
  for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++) {
    bool quant = sp_dtype_get(dtypes[d])->block_elems > 1;
    /* a small odd shape and one big enough to be split over threads */
    int64_t shapes[2][2] = {{37, quant ? 96 : 67}, {301, quant ? 1024 : 1027}};
    for (int s = 0; s < 2; s++)
      for (size_t m = 0; m < sizeof ms / sizeof *ms; m++)
        for (int strided = 0; strided < 2; strided++) {
          mm_case c = {dtypes[d], shapes[s][0], shapes[s][1], ms[m], strided, false};
          test_matmul_case(g, &c);
        }
  }
}

/* ---- elementwise ---- */

enum { EW_PLAIN, EW_BROADCAST, EW_INPLACE0, EW_INPLACE1 };
static const char *ew_mode_names[] = {"plain", "broadcast", "in-place dst=src0",
                                      "in-place dst=src1"};

/* A tensor of shape ne; strided ones pad each dimension's stride. */
static sp_tensor t_make(guest *g, uint32_t dtype, const uint32_t ne[4], bool strided) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  uint32_t row = (uint32_t)sp_dtype_row_bytes(info, ne[0]), nb[3] = {0, 0, 0};
  if (strided) {
    nb[0] = row + 12;
    nb[1] = nb[0] * ne[1] + 8;
    nb[2] = nb[1] * ne[2] + 4;
  }
  uint64_t ext = row;
  for (int d = 1; d < 4; d++) ext += (uint64_t)(ne[d] - 1) * (nb[d - 1] ? nb[d - 1] : 0);
  if (!strided) ext = (uint64_t)row * ne[1] * ne[2] * ne[3];
  return tensor(guest_alloc(g, ext, info->align * (rng_u32() % 16)), dtype, ne, nb);
}

static sp_tensor ew_tensor(guest *g, const uint32_t ne[4], bool strided) {
  return t_make(g, SP_DTYPE_F32, ne, strided);
}

static void rows_write(guest *g, const sp_tensor *t, const float *v) {
  for (int64_t r = 0; r < t_rows(t); r++) memcpy(t_row(g, t, r), v + r * t->ne[0], t->ne[0] * 4);
}

static void rows_read(guest *g, const sp_tensor *t, float *v) {
  for (int64_t r = 0; r < t_rows(t); r++) memcpy(v + r * t->ne[0], t_row(g, t, r), t->ne[0] * 4);
}

static void test_elementwise_case(guest *g, uint32_t op, const uint32_t ne[4], bool strided,
                                  int mode) {
  guest_reset(g);
  static const uint32_t one[4] = {1, 1, 1, 1};
  uint32_t b_ne[4] = {ne[0], ne[1], ne[2], ne[3]};
  if (mode == EW_BROADCAST) memcpy(b_ne + 1, one + 1, 3 * sizeof *b_ne);
  sp_cmd cmd = {.op = op, .src[0] = ew_tensor(g, ne, strided)};
  if (op != SP_OP_SCALE) cmd.src[1] = ew_tensor(g, b_ne, strided);
  cmd.dst = mode == EW_INPLACE0 ? cmd.src[0] : mode == EW_INPLACE1 ? cmd.src[1] : ew_tensor(g, ne, strided);
  float s = -1.75f;
  if (op == SP_OP_SCALE) memcpy(&cmd.param[0], &s, sizeof s);
  char msg[256];
  if (validate(&cmd, msg, sizeof msg) != SP_OK) {
    check(false, "elementwise validate: %s", msg);
    return;
  }
  size_t n = (size_t)ne[0] * ne[1] * ne[2] * ne[3], nb = op == SP_OP_SCALE ? 0 : (size_t)b_ne[0] * t_rows(&cmd.src[1]);
  float *a = malloc(n * 4), *b = malloc((nb + 1) * 4), *want = malloc(n * 4), *got = malloc(n * 4);
  for (size_t i = 0; i < n; i++) a[i] = rng_f(-4, 4);
  for (size_t i = 0; i < nb; i++) b[i] = rng_f(-4, 4);
  for (size_t i = 0; i < n; i++) {
    float bi = nb ? b[mode == EW_BROADCAST ? i % ne[0] : i] : 0;
    want[i] = op == SP_OP_ADD ? a[i] + bi : op == SP_OP_MUL ? a[i] * bi : a[i] * s;
  }
  bool ok = true;
  for (int t = 0; t < TB_COUNT; t++) {
    if (mode == EW_PLAIN || mode == EW_BROADCAST) canary_fill(g, &cmd.dst);
    canary_fill(g, &cmd.src[0]);
    rows_write(g, &cmd.src[0], a);
    if (nb) {
      if (mode != EW_INPLACE0) canary_fill(g, &cmd.src[1]);
      rows_write(g, &cmd.src[1], b);
    }
    ok &= sp_backend_supports(tbs[t].be, &cmd) && submit(&tbs[t], &cmd);
    rows_read(g, &cmd.dst, got);
    ok &= memcmp(got, want, n * 4) == 0 && canary_intact(g, &cmd.dst);
  }
  check(ok, "%-5s ne=[%u,%u,%u,%u] %s %s", op == SP_OP_ADD ? "add" : op == SP_OP_MUL ? "mul" : "scale",
        ne[0], ne[1], ne[2], ne[3], strided ? "strided" : "packed", ew_mode_names[mode]);
  free(a);
  free(b);
  free(want);
  free(got);
}

static void test_elementwise(guest *g) {
  static const uint32_t shapes[][4] = {{37, 5, 3, 2}, {8, 1, 1, 1}, {100003, 3, 1, 1}, {16, 5000, 1, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int strided = 0; strided < 2; strided++) {
      for (uint32_t op = SP_OP_ADD; op <= SP_OP_MUL; op++)
        for (int mode = EW_PLAIN; mode <= EW_INPLACE1; mode++)
          test_elementwise_case(g, op, shapes[s], strided, mode);
      test_elementwise_case(g, SP_OP_SCALE, shapes[s], strided, EW_PLAIN);
      test_elementwise_case(g, SP_OP_SCALE, shapes[s], strided, EW_INPLACE0);
    }
}

/* ---- transformer ops ----
 * Tolerances: f32 results |got - want| <= abs + rel * |want| against double
 * references (rel ~ 1e-5: a few float roundings per element); rope angles
 * are f32 (as ggml's), so its error grows with the position: abs = 1e-5 +
 * 4e-6 * pos; conversions to f16/bf16 must match the scalar helpers. */

typedef struct expect {
  const double *f32;     /* dst rows x ne0 as f32 values, or NULL */
  const uint16_t *bits;  /* dst rows x ne0 as f16/bf16 bits, or NULL */
  const double *abs_tol; /* per row, or NULL for abs */
  double abs, rel;
} expect;

static float *f32_fill(guest *g, const sp_tensor *t, float lo, float hi) {
  size_t n = (size_t)t->ne[0] * t_rows(t);
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = rng_f(lo, hi);
  rows_write(g, t, v);
  return v;
}

static double compare_dst(guest *g, const sp_tensor *d, const expect *e) {
  double worst = 0;
  for (int64_t r = 0; r < t_rows(d); r++)
    for (uint32_t i = 0; i < d->ne[0]; i++) {
      size_t at = (size_t)r * d->ne[0] + i;
      if (e->bits) {
        uint16_t h;
        memcpy(&h, t_row(g, d, r) + 2 * i, 2);
        worst = h == e->bits[at] ? worst : INFINITY;
      } else {
        double got = ((const float *)t_row(g, d, r))[i];
        double tol = (e->abs_tol ? e->abs_tol[r] : e->abs) + e->rel * fabs(e->f32[at]);
        worst = fmax(worst, fabs(got - e->f32[at]) / tol);
        if (isnan(got)) worst = INFINITY;
      }
    }
  return worst;
}

/* Runs cmd (validated, inputs in place) on every backend from the same
 * starting memory; returns the worst error ratio (<= 1 passes). Every
 * backend must also write the same bytes as the first one (the kernel
 * tables' numerics contract, and the thread count never changes a result):
 * otherwise the ratio is infinite. */
static double run_all(guest *g, const sp_cmd *cmd, const expect *e) {
  size_t len = g->top - GUEST_FIRST;
  uint8_t *snap = malloc(len), *first = malloc(len);
  memcpy(snap, g->mem + GUEST_FIRST, len);
  double worst = 0;
  for (int b = 0; b < TB_COUNT; b++) {
    memcpy(g->mem + GUEST_FIRST, snap, len);
    if (!sp_backend_supports(tbs[b].be, cmd) || !submit(&tbs[b], cmd)) worst = INFINITY;
    if (!canary_intact(g, &cmd->dst)) worst = INFINITY;
    worst = fmax(worst, compare_dst(g, &cmd->dst, e));
    if (b == 0) memcpy(first, g->mem + GUEST_FIRST, len);
    else if (memcmp(first, g->mem + GUEST_FIRST, len) != 0) {
      printf("     %s wrote other bytes than %s\n", tbs[b].label, tbs[0].label);
      worst = INFINITY;
    }
  }
  free(snap);
  free(first);
  return worst;
}

/* Runs a command that must fail at run time without writing anything. */
static bool run_fails_cleanly(guest *g, const sp_cmd *cmd) {
  size_t len = g->top - GUEST_FIRST;
  uint8_t *snap = malloc(len);
  memcpy(snap, g->mem + GUEST_FIRST, len);
  bool ok = true;
  for (int b = 0; b < TB_COUNT; b++) {
    sp_error_t *err = sp_backend_submit(tbs[b].be, tbs[b].binding, cmd, 1, false);
    ok &= err != NULL && memcmp(g->mem + GUEST_FIRST, snap, len) == 0;
    sp_error_free(err);
  }
  free(snap);
  return ok;
}

static bool validated(sp_cmd *cmd, const char *what) {
  char msg[256];
  if (validate(cmd, msg, sizeof msg) == SP_OK) return true;
  check(false, "%s: validate: %s", what, msg);
  return false;
}

static uint32_t idx_vector(guest *g, const int32_t *v, uint32_t n, sp_tensor *t) {
  *t = tensor(guest_alloc(g, n * 4, 0), SP_DTYPE_I32, (uint32_t[4]){n, 1, 1, 1}, NULL);
  memcpy(g->mem + t->offset, v, n * 4);
  return t->offset;
}

static void test_get_rows(guest *g, uint32_t dtype) {
  guest_reset(g);
  bool quant = sp_dtype_get(dtype)->block_elems > 1;
  uint32_t k = quant ? 64 : 67, v = 37;
  int32_t ids[5] = {3, 36, 0, 3, 17};
  sp_cmd cmd = {.op = SP_OP_GET_ROWS, .src[0] = t_make(g, dtype, (uint32_t[4]){k, v, 1, 1}, true),
                .dst = t_make(g, SP_DTYPE_F32, (uint32_t[4]){k, 5, 1, 1}, true)};
  idx_vector(g, ids, 5, &cmd.src[1]);
  if (!validated(&cmd, "get_rows")) return;
  canary_fill(g, &cmd.dst);
  double *want = malloc(sizeof(double) * k * 5);
  for (uint32_t r = 0; r < v; r++) fill_weight_row(dtype, t_row(g, &cmd.src[0], r), k);
  for (int m = 0; m < 5; m++) ref_decode_row(dtype, t_row(g, &cmd.src[0], ids[m]), k, want + m * k);
  expect e = {.f32 = want, .abs = 1e-7, .rel = 1e-6};
  double worst = run_all(g, &cmd, &e);
  ids[4] = (int32_t)v; /* one past the end */
  memcpy(g->mem + cmd.src[1].offset, ids, sizeof ids);
  bool clean = run_fails_cleanly(g, &cmd);
  check(worst <= 1 && clean, "get_rows %-4s: err/bound %.3f, index %u rejected before writing",
        sp_dtype_name(dtype), worst, v);
  free(want);
}

static void test_set_rows(guest *g, uint32_t dtype) {
  guest_reset(g);
  uint32_t k = 45, r_rows = 10;
  int32_t ids[3] = {7, 0, 9};
  sp_cmd cmd = {.op = SP_OP_SET_ROWS, .src[0] = t_make(g, SP_DTYPE_F32, (uint32_t[4]){k, 3, 1, 1}, true),
                .dst = t_make(g, dtype, (uint32_t[4]){k, r_rows, 1, 1}, true)};
  idx_vector(g, ids, 3, &cmd.src[1]);
  if (!validated(&cmd, "set_rows")) return;
  canary_fill(g, &cmd.dst);
  float *src = f32_fill(g, &cmd.src[0], -3, 3);
  uint16_t *bits = malloc(2 * k * r_rows);
  double *want = malloc(sizeof(double) * k * r_rows);
  for (uint32_t r = 0; r < r_rows; r++) { /* untouched rows keep random contents */
    for (uint32_t i = 0; i < k; i++) {
      float f = rng_f(-1, 1);
      want[r * k + i] = f;
      bits[r * k + i] = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
    }
    if (dtype == SP_DTYPE_F32)
      for (uint32_t i = 0; i < k; i++) ((float *)t_row(g, &cmd.dst, r))[i] = (float)want[r * k + i];
    else
      memcpy(t_row(g, &cmd.dst, r), bits + r * k, 2 * k);
  }
  for (int m = 0; m < 3; m++)
    for (uint32_t i = 0; i < k; i++) {
      float f = src[m * k + i];
      want[ids[m] * k + i] = f;
      bits[ids[m] * k + i] = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
    }
  expect e = {.f32 = want, .bits = dtype == SP_DTYPE_F32 ? NULL : bits, .abs = 1e-30};
  double worst = run_all(g, &cmd, &e);
  ids[1] = -1;
  memcpy(g->mem + cmd.src[1].offset, ids, sizeof ids);
  bool clean = run_fails_cleanly(g, &cmd);
  check(worst <= 1 && clean, "set_rows -> %-4s: rows converted exactly, others untouched, index -1 rejected",
        sp_dtype_name(dtype));
  free(src);
  free(bits);
  free(want);
}

static void test_copy(guest *g, uint32_t from, uint32_t to) {
  guest_reset(g);
  uint32_t ne[4] = {37, 4, 3, 1};
  sp_cmd cmd = {.op = SP_OP_COPY, .src[0] = t_make(g, from, ne, true), .dst = t_make(g, to, ne, true)};
  if (!validated(&cmd, "copy")) return;
  canary_fill(g, &cmd.dst);
  size_t n = (size_t)ne[0] * ne[1] * ne[2];
  double *want = malloc(n * sizeof *want);
  uint16_t *bits = malloc(n * 2);
  for (int64_t r = 0; r < t_rows(&cmd.src[0]); r++)
    for (uint32_t i = 0; i < ne[0]; i++) {
      float f = rng_f(-100, 100);
      uint16_t h = from == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
      f = from == SP_DTYPE_F16 ? sp_f16_to_f32(h) : from == SP_DTYPE_BF16 ? sp_bf16_to_f32(h) : f;
      if (from == SP_DTYPE_F32)
        memcpy(t_row(g, &cmd.src[0], r) + 4 * i, &f, 4);
      else
        memcpy(t_row(g, &cmd.src[0], r) + 2 * i, &h, 2);
      size_t at = (size_t)r * ne[0] + i;
      want[at] = f;
      bits[at] = to == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
    }
  expect e = {.f32 = want, .bits = to == SP_DTYPE_F32 ? NULL : bits, .abs = 1e-30};
  double worst = run_all(g, &cmd, &e);
  check(worst <= 1, "copy %-4s -> %-4s [37,4,3] strided: exact", sp_dtype_name(from), sp_dtype_name(to));
  free(want);
  free(bits);
}

/* rmsnorm, swiglu and softmax on [45, 5, 2] strided, in place or not. */
static void test_rowwise(guest *g, uint32_t op, bool in_place) {
  guest_reset(g);
  uint32_t ne[4] = {45, 5, 2, 1}, k = ne[0];
  float param = op == SP_OP_RMSNORM ? 1e-5f : 0.7f;
  sp_cmd cmd = {.op = op, .src[0] = t_make(g, SP_DTYPE_F32, ne, true)};
  if (op == SP_OP_RMSNORM) cmd.src[1] = t_make(g, SP_DTYPE_F32, (uint32_t[4]){k, 1, 1, 1}, false);
  if (op == SP_OP_SWIGLU) cmd.src[1] = t_make(g, SP_DTYPE_F32, ne, true);
  if (op != SP_OP_SWIGLU) memcpy(&cmd.param[0], &param, sizeof param);
  cmd.dst = in_place ? cmd.src[0] : t_make(g, SP_DTYPE_F32, ne, true);
  if (!validated(&cmd, "rowwise")) return;
  canary_fill(g, &cmd.dst); /* before the inputs: in place, dst is src[0] */
  float *x = f32_fill(g, &cmd.src[0], -4, 4), *y = op == SP_OP_SOFTMAX ? NULL : f32_fill(g, &cmd.src[1], -2, 2);
  int64_t rows = t_rows(&cmd.dst);
  double *want = malloc(sizeof(double) * k * rows);
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * k;
    double acc = 0, max = -INFINITY;
    for (uint32_t i = 0; i < k; i++) {
      acc += op == SP_OP_RMSNORM ? (double)xr[i] * xr[i] : 0;
      max = fmax(max, (double)param * xr[i]);
    }
    double sum = 0;
    for (uint32_t i = 0; i < k; i++) sum += exp((double)param * xr[i] - max);
    for (uint32_t i = 0; i < k; i++) {
      double *w = &want[r * k + i];
      if (op == SP_OP_RMSNORM) *w = xr[i] / sqrt(acc / k + param) * y[i];
      if (op == SP_OP_SOFTMAX) *w = exp((double)param * xr[i] - max) / sum;
      if (op == SP_OP_SWIGLU) *w = xr[i] / (1 + exp(-(double)xr[i])) * y[r * k + i];
    }
  }
  expect e = {.f32 = want, .abs = 1e-7, .rel = 1e-5};
  double worst = run_all(g, &cmd, &e);
  check(worst <= 1, "%-7s [45,5,2] strided%s: err/bound %.3f",
        op == SP_OP_RMSNORM ? "rmsnorm" : op == SP_OP_SOFTMAX ? "softmax" : "swiglu",
        in_place ? ", in place" : "", worst);
  free(x);
  free(y);
  free(want);
}

static void test_rope(guest *g, uint32_t mode, bool with_ff, float freq_scale, bool in_place) {
  guest_reset(g);
  enum { D = 64, H = 3, T = 4, N_ROT = 48 };
  int32_t pos[T] = {0, 1, 17, 5000};
  float base = 10000.0f, ffv[N_ROT / 2];
  uint32_t ne[4] = {D, H, T, 1};
  sp_cmd cmd = {.op = SP_OP_ROPE, .src[0] = t_make(g, SP_DTYPE_F32, ne, true)};
  idx_vector(g, pos, T, &cmd.src[1]);
  if (with_ff) {
    cmd.src[2] = t_make(g, SP_DTYPE_F32, (uint32_t[4]){N_ROT / 2, 1, 1, 1}, false);
    for (int i = 0; i < N_ROT / 2; i++) ffv[i] = rng_f(1, 8);
    memcpy(g->mem + cmd.src[2].offset, ffv, sizeof ffv);
  }
  cmd.dst = in_place ? cmd.src[0] : t_make(g, SP_DTYPE_F32, ne, true);
  cmd.param[0] = N_ROT;
  memcpy(&cmd.param[1], &base, 4);
  cmd.param[2] = mode;
  memcpy(&cmd.param[3], &freq_scale, 4);
  if (!validated(&cmd, "rope")) return;
  canary_fill(g, &cmd.dst); /* before the inputs: in place, dst is src[0] */
  float *x = f32_fill(g, &cmd.src[0], -1, 1);
  double *want = malloc(sizeof(double) * D * H * T), tol[H * T];
  for (int r = 0; r < H * T; r++) {
    const float *xr = x + r * D;
    double *w = want + r * D, p = pos[r / H];
    tol[r] = 1e-5 + 4e-6 * p;
    for (int i = 0; i < D; i++) w[i] = xr[i];
    for (int i = 0; i < N_ROT / 2; i++) {
      double th = p * freq_scale * pow(base, -2.0 * i / N_ROT) / (with_ff ? ffv[i] : 1.0);
      int a = mode == 0 ? 2 * i : i, b = mode == 0 ? 2 * i + 1 : i + N_ROT / 2;
      w[a] = xr[a] * cos(th) - xr[b] * sin(th);
      w[b] = xr[a] * sin(th) + xr[b] * cos(th);
    }
  }
  expect e = {.f32 = want, .abs_tol = tol, .rel = 0};
  double worst = run_all(g, &cmd, &e);
  check(worst <= 1, "rope mode %u%s freq_scale %.1f%s [64,3,4] n_rot 48: err/bound %.3f", mode,
        with_ff ? " +freq factors" : "", freq_scale, in_place ? ", in place" : "", worst);
  free(x);
  free(want);
}

static void test_attention(guest *g, uint32_t kv_dtype) {
  guest_reset(g);
  enum { D = 32, HQ = 6, HKV = 2, C = 20, T = 3 };
  int32_t pos[T] = {0, 7, 19};
  float scale = 1.0f / sqrtf(D);
  sp_cmd cmd = {.op = SP_OP_ATTENTION,
                .src[0] = t_make(g, SP_DTYPE_F32, (uint32_t[4]){D, HQ, T, 1}, true),
                .src[1] = t_make(g, kv_dtype, (uint32_t[4]){D, HKV, C, 1}, true),
                .src[2] = t_make(g, kv_dtype, (uint32_t[4]){D, HKV, C, 1}, true),
                .dst = t_make(g, SP_DTYPE_F32, (uint32_t[4]){D, HQ, T, 1}, true)};
  idx_vector(g, pos, T, &cmd.src[3]);
  memcpy(&cmd.param[0], &scale, 4);
  if (!validated(&cmd, "attention")) return;
  canary_fill(g, &cmd.dst);
  float *q = f32_fill(g, &cmd.src[0], -1, 1);
  double *kv[2] = {malloc(sizeof(double) * D * HKV * C), malloc(sizeof(double) * D * HKV * C)};
  for (int m = 0; m < 2; m++) /* k and v, as their stored values */
    for (int r = 0; r < HKV * C; r++)
      for (int i = 0; i < D; i++) {
        float f = rng_f(-2, 2);
        uint16_t h = sp_f32_to_f16(f);
        if (kv_dtype == SP_DTYPE_F16) {
          memcpy(t_row(g, &cmd.src[1 + m], r) + 2 * i, &h, 2);
          f = sp_f16_to_f32(h);
        } else {
          memcpy(t_row(g, &cmd.src[1 + m], r) + 4 * i, &f, 4);
        }
        kv[m][r * D + i] = f;
      }
  double *want = calloc(D * HQ * T, sizeof(double)), s[C];
  for (int t = 0; t < T; t++)
    for (int h = 0; h < HQ; h++) {
      int kvh = h / (HQ / HKV);
      double max = -INFINITY, sum = 0, *w = want + (t * HQ + h) * D;
      /* With an f16 cache the op rounds q, then the probabilities, to f16
       * (as ggml does); the reference does the same. */
      bool f16 = kv_dtype == SP_DTYPE_F16;
      for (int c = 0; c <= pos[t]; c++) {
        s[c] = 0;
        for (int i = 0; i < D; i++) {
          float qi = q[(t * HQ + h) * D + i];
          s[c] += (f16 ? sp_f16_to_f32(sp_f32_to_f16(qi)) : qi) * kv[0][(c * HKV + kvh) * D + i];
        }
        s[c] *= scale;
        max = fmax(max, s[c]);
      }
      for (int c = 0; c <= pos[t]; c++) sum += s[c] = exp(s[c] - max);
      for (int c = 0; c <= pos[t]; c++) {
        double p = s[c] / sum;
        if (f16) p = sp_f16_to_f32(sp_f32_to_f16((float)p));
        for (int i = 0; i < D; i++) w[i] += p * kv[1][(c * HKV + kvh) * D + i];
      }
    }
  /* f16 rounding of the probabilities is decided by float vs double
   * softmax, so allow one f16 ulp of them. */
  expect e = {.f32 = want, .abs = kv_dtype == SP_DTYPE_F16 ? 2e-3 : 1e-6, .rel = 1e-5};
  double worst = run_all(g, &cmd, &e);
  pos[2] = C;
  memcpy(g->mem + cmd.src[3].offset, pos, sizeof pos);
  bool clean = run_fails_cleanly(g, &cmd);
  check(worst <= 1 && clean, "attention k/v %s D=32 Hq=6 Hkv=2 C=20 T=3: err/bound %.3f, position %d rejected",
        sp_dtype_name(kv_dtype), worst, C);
  free(q);
  free(kv[0]);
  free(kv[1]);
  free(want);
}

/* argmax over strided rows: random, ties (the first wins), NaN (never
 * chosen, also at index 0), all NaN (0), on every backend. */
static void test_argmax(guest *g) {
  guest_reset(g);
  uint32_t ne[4] = {1000, 4, 1, 1}, dne[4] = {4, 1, 1, 1};
  sp_cmd cmd = {.op = SP_OP_ARGMAX, .src[0] = t_make(g, SP_DTYPE_F32, ne, true), .dst = t_make(g, SP_DTYPE_I32, dne, false)};
  if (!validated(&cmd, "argmax")) return;
  float *x = malloc(sizeof *x * 4000);
  for (int i = 0; i < 4000; i++) x[i] = rng_f(-10, 10);
  x[1000 + 17] = x[1000 + 500] = x[1000 + 999] = 50; /* row 1: ties */
  x[2000] = NAN, x[2000 + 3] = NAN, x[2000 + 640] = 60; /* row 2: NaN first */
  for (int i = 3000; i < 4000; i++) x[i] = NAN; /* row 3: nothing to choose */
  rows_write(g, &cmd.src[0], x);
  const int32_t want[4] = {0, 17, 640, 0};
  int32_t w0 = 0;
  for (int i = 1; i < 1000; i++) w0 = x[i] > x[w0] ? i : w0;
  size_t len = g->top - GUEST_FIRST;
  uint8_t *snap = malloc(len);
  memcpy(snap, g->mem + GUEST_FIRST, len);
  for (int b = 0; b < TB_COUNT; b++) {
    memcpy(g->mem + GUEST_FIRST, snap, len);
    bool ran = sp_backend_supports(tbs[b].be, &cmd) && submit(&tbs[b], &cmd);
    int32_t got[4];
    memcpy(got, g->mem + cmd.dst.offset, sizeof got);
    check(ran && got[0] == w0 && got[1] == want[1] && got[2] == want[2] && got[3] == want[3],
          "argmax [1000,4] strided on %s: %d %d %d %d (want %d %d %d %d)", tbs[b].label, got[0], got[1], got[2], got[3],
          w0, want[1], want[2], want[3]);
  }
  free(snap);
  free(x);
}

static void test_llm_ops(guest *g) {
  static const uint32_t weights[] = {SP_DTYPE_F32,  SP_DTYPE_F16,  SP_DTYPE_BF16,
                                     SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1};
  static const uint32_t floats[] = {SP_DTYPE_F32, SP_DTYPE_F16, SP_DTYPE_BF16};
  for (int i = 0; i < 6; i++) test_get_rows(g, weights[i]);
  for (int i = 0; i < 3; i++) test_set_rows(g, floats[i]);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) test_copy(g, floats[i], floats[j]);
  static const uint32_t rowwise_ops[] = {SP_OP_RMSNORM, SP_OP_SOFTMAX, SP_OP_SWIGLU};
  for (int i = 0; i < 3; i++) {
    test_rowwise(g, rowwise_ops[i], false);
    test_rowwise(g, rowwise_ops[i], true);
  }
  test_rope(g, 0, false, 1.0f, false);
  test_rope(g, 2, false, 1.0f, true);
  test_rope(g, 0, true, 0.5f, true);
  test_rope(g, 2, true, 0.25f, false);
  test_attention(g, SP_DTYPE_F32);
  test_attention(g, SP_DTYPE_F16);
  test_argmax(g);
}

/* ---- supports() covers everything the validator accepts ---- */

/* The ops whose every dtype combination is enumerated here; the later ops
 * check supports() in their own tests (run_all). */
#define TEST_LAST_OP SP_OP_SCALE

static void test_supports(guest *g) {
  guest_reset(g);
  uint32_t a = guest_alloc(g, 4096, 0), b = guest_alloc(g, 4096, 0), c = guest_alloc(g, 4096, 0);
  int accepted = 0, missing = 0;
  for (uint32_t op = 0; op <= TEST_LAST_OP; op++)
    for (uint32_t t0 = 0; t0 < SP_DTYPE_COUNT; t0++)
      for (uint32_t t1 = 0; t1 < SP_DTYPE_COUNT; t1++)
        for (uint32_t td = 0; td < SP_DTYPE_COUNT; td++) {
          bool nop = op == SP_OP_NOP, scale = op == SP_OP_SCALE, mm = op == SP_OP_MATMUL;
          if ((nop && (t0 || t1 || td)) || (scale && t1)) continue; /* unused slots */
          sp_cmd cmd = {.op = op};
          if (!nop) {
            cmd.src[0] = tensor(a, t0, (uint32_t[4]){32, mm ? 4 : 2, 1, 1}, NULL);
            cmd.dst = tensor(c, td, (uint32_t[4]){mm ? 4 : 32, 2, 1, 1}, NULL);
            if (!scale) cmd.src[1] = tensor(b, t1, (uint32_t[4]){32, 2, 1, 1}, NULL);
          }
          char msg[256];
          if (validate(&cmd, msg, sizeof msg) != SP_OK) continue;
          accepted++;
          bool sup = sp_backend_supports(tbs[0].be, &cmd) && sp_backend_supports(tbs[TB_GENERIC].be, &cmd);
          if (!sup) printf("     unsupported: op %u dtypes %u %u -> %u\n", op, t0, t1, td);
          missing += !sup;
        }
  /* nop, add, mul, scale (f32), and matmul with K = 32 over the nine
   * weight types whose blocks are 32 long: f32, f16, bf16, q8_0, q4_0,
   * q4_1, q5_0, q5_1, iq4_nl (the 256-element K-quants need K >= 256) */
  check(missing == 0 && accepted == 13,
        "supports: all %d op/dtype combinations of ops 0..%d that the validator accepts", accepted,
        TEST_LAST_OP);
}

/* ---- thread pool ---- */

typedef struct pool_probe {
  _Atomic uint32_t *hits;
} pool_probe;

static void probe_task(void *arg, uint32_t task) {
  pool_probe *p = arg;
  atomic_fetch_add_explicit(&p->hits[task], 1, memory_order_relaxed);
}

/* Runs jobs of several sizes and checks every task ran exactly once. */
static bool pool_jobs(sp_threadpool *pool, int rounds, useconds_t pause_us) {
  static const uint32_t sizes[] = {1, 2, 3, 7, 64, 1000};
  _Atomic uint32_t *hits = calloc(1000, sizeof *hits);
  pool_probe p = {hits};
  bool ok = true;
  for (int r = 0; r < rounds; r++)
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      for (uint32_t i = 0; i < sizes[s]; i++) atomic_store(&hits[i], 0);
      sp_threadpool_run(pool, sizes[s], probe_task, &p);
      for (uint32_t i = 0; i < sizes[s]; i++) ok &= atomic_load(&hits[i]) == 1;
      if (pause_us) usleep(pause_us); /* let the workers fall asleep */
    }
  free((void *)hits);
  return ok;
}

static void *pool_thread_main(void *arg) {
  return pool_jobs(arg, 300, 0) ? arg : NULL;
}

static void test_threadpool(void) {
  static const unsigned counts[] = {1, 2, 3, 5};
  for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
    sp_threadpool *pool;
    sp_error_t *err = sp_threadpool_new(counts[c], &pool);
    if (err) {
      check(false, "threadpool new: %s", sp_error_message(err));
      sp_error_free(err);
      continue;
    }
    bool spin = pool_jobs(pool, 200, 0), sleep = pool_jobs(pool, 3, 1000);
    pthread_t other;
    pthread_create(&other, NULL, pool_thread_main, pool);
    bool mine = pool_jobs(pool, 300, 0);
    void *theirs;
    pthread_join(other, &theirs);
    check(spin && sleep && mine && theirs && sp_threadpool_threads(pool) == counts[c],
          "threadpool %u threads: back-to-back, after sleeping, two callers at once", counts[c]);
    sp_threadpool_free(pool);
  }
  sp_threadpool *pool;
  sp_error_t *err = sp_threadpool_new(2, &pool);
  if (err) {
    sp_error_free(err);
    return;
  }
  uint32_t big = (1u << 20) + 5; /* more than one batch */
  _Atomic uint32_t *hits = calloc(big, sizeof *hits);
  pool_probe p = {hits};
  sp_threadpool_run(pool, big, probe_task, &p);
  bool ok = true;
  for (uint32_t i = 0; i < big; i++) ok &= atomic_load(&hits[i]) == 1;
  check(ok, "threadpool: %u tasks in one job", big);
  free((void *)hits);
  sp_threadpool_free(pool);
}

/* ---- f16 / bf16 conversions ---- */

static void test_fp16(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = sp_f16_to_f32((uint16_t)h);
    bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan) {
      bad += !isnan(f) || !isnan(sp_f16_to_f32(sp_f32_to_f16(f)));
    } else {
      bad += (h & 0x7c00) != 0x7c00 && (double)f != ref_f16((uint16_t)h);
      bad += sp_f32_to_f16(f) != h;
    }
  }
  check(bad == 0, "f16: all 65536 values widen exactly and narrow back");
  enum { N = 1 << 16 };
  float *src = malloc(N * 4), *back = malloc(N * 4);
  uint16_t *h16 = malloc(N * 2);
  bad = 0;
  for (int i = 0; i < N; i++) src[i] = ldexpf(rng_f(-2, 2), (int)(rng_u32() % 60) - 40);
  src[0] = 65519.0f, src[1] = 65520.0f, src[2] = 0x1p-25f, src[3] = 0x1.8p-24f, src[4] = INFINITY;
  sp_cpu_f32_to_f16_row(src, h16, N); /* F16C where present */
  for (int i = 0; i < N; i++) bad += h16[i] != sp_f32_to_f16(src[i]);
  sp_cpu_f16_to_f32_row(h16, back, N);
  for (int i = 0; i < N; i++) bad += back[i] != sp_f16_to_f32(h16[i]);
  check(bad == 0 && h16[0] == 0x7bff && h16[1] == 0x7c00 && h16[2] == 0 && h16[3] == 2,
        "f16: row conversions match scalar round-to-nearest-even (ties, overflow, subnormals)");
  bad = 0;
  for (int i = 0; i < N; i++) {
    uint16_t b = sp_f32_to_bf16(src[i]);
    double err = fabs((double)sp_bf16_to_f32(b) - src[i]);
    bad += isinf(src[i]) ? sp_bf16_to_f32(b) != src[i] : err > fabs(src[i]) * ldexp(1, -8);
  }
  sp_cpu_f32_to_bf16_row(src, h16, N);
  sp_cpu_bf16_to_f32_row(h16, back, N);
  for (int i = 0; i < N; i++) bad += h16[i] != sp_f32_to_bf16(src[i]) || back[i] != sp_bf16_to_f32(h16[i]);
  check(bad == 0 && sp_f32_to_bf16(1.00390625f) == 0x3f80 && sp_f32_to_bf16(1.01171875f) == 0x3f82,
        "bf16: rounding to nearest even, rows match scalars");
  free(src);
  free(back);
  free(h16);
}

/* ---- timing (information only) ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench_matmul(guest *g, uint32_t dtype, int64_t m, const test_backend *tb) {
  mm_case c = {dtype, 2048, 2048, m, false, true};
  guest_reset(g);
  sp_cmd cmd;
  if (!mm_build(g, &c, &cmd)) return;
  double w_bytes = (double)sp_dtype_row_bytes(sp_dtype_get(dtype), c.k) * c.n;
  for (int i = 0; i < 3; i++) submit(tb, &cmd);
  int runs = 0;
  double t0 = now_s(), t;
  do {
    submit(tb, &cmd);
    runs++;
  } while ((t = now_s() - t0) < 0.3);
  double per = t / runs;
  if (m == 1)
    printf("info matvec 2048x2048 %-4s %-10s (%s): %7.3f ms, %6.1f GB/s\n", sp_dtype_name(dtype),
           tb->label, sp_backend_cpu_simd(tb->be), per * 1e3, w_bytes / per * 1e-9);
  else
    printf("info matmul 2048x2048 %-4s M=%" PRId64 " %-10s (%s): %7.3f ms, %6.1f GFLOP/s\n",
           sp_dtype_name(dtype), m, tb->label, sp_backend_cpu_simd(tb->be), per * 1e3,
           2.0 * c.n * c.k * m / per * 1e-9);
}

int main(int argc, char **argv) {
  guest g = {.mem = aligned_alloc(4096, GUEST_BYTES), .top = GUEST_FIRST};
  if (!g.mem) return 2;
  memset(g.mem, 0, GUEST_BYTES);
  bool bench = !(argc > 1 && strcmp(argv[1], "--no-bench") == 0);
  test_fp16();
  test_threadpool();
  backends_open(&g);
  test_supports(&g);
  test_matmul(&g);
  test_elementwise(&g);
  test_llm_ops(&g);
  if (bench) {
    /* one thread, and every online CPU */
    test_backend all = {.label = "simd/all"};
    sp_memory_view view = {.base = g.mem, .committed = GUEST_BYTES, .reserved = GUEST_BYTES};
    sp_error_t *err = sp_backend_cpu_new(0, &all.be);
    if (!err) err = sp_backend_adopt(all.be, &view, &all.binding);
    if (err) {
      fprintf(stderr, "backend: %s\n", sp_error_message(err));
      return 2;
    }
    static const uint32_t bench_types[] = {SP_DTYPE_Q4_1, SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_F16};
    for (int i = 0; i < 4; i++) {
      bench_matmul(&g, bench_types[i], 1, &tbs[TB_SIMD1]);
      bench_matmul(&g, bench_types[i], 1, &all);
      bench_matmul(&g, bench_types[i], 64, &tbs[TB_SIMD1]);
      bench_matmul(&g, bench_types[i], 64, &all);
    }
    printf("info simd/all uses %u threads\n", sp_backend_cpu_threads(all.be));
    sp_backend_release(all.be, all.binding);
    sp_backend_free(all.be);
  }
  backends_close();
  free(g.mem);
  printf("%d checks, %d failed\n", n_checks, n_failures);
  return n_failures ? 1 : 0;
}
