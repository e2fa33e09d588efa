/*
 * test_cpu_attention.c: SP_OP_ATTENTION on the CPU (src/backend/cpu/attention.c).
 *
 * The op runs directly (sp_cpu_attention) on a malloc'd fake guest memory,
 * after sp_validate_cmd has checked and normalized the command, once per
 * kernel table this CPU runs (generic, avx2, avx512) and per thread count
 * (1, 2, 3). For f32 and f16 caches, GQA groups of 1, 3 and 4 query heads,
 * and contexts of 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 1000 and 3000 keys
 * (CHUNK = 128, attention.c's SP_ATTN_CHUNK), one token at a time (decode:
 * chunks spread over the threads) and several at once (a prompt: whole
 * items per task; a short one at a long context: chunks again), it
 * checks:
 *  - every table and thread count gives the same bits (the op's contract);
 *  - against a naive reference in double, per output element:
 *      |got - want| <= A * (2 * ds + (256 + n / CHUNK) * 2^-24) + U
 *    with A = sum_c p_c |v_c|, n keys, ds the largest error bound of a
 *    score (dot of D products in f32: (D / 16 + 8) * 2^-24 * scale *
 *    sum |q k|, plus one rounding), which moves each probability by at most
 *    2 * ds relative; 256 ulps cover exp, normalization and the f32 sums.
 *    The reference rounds, as the op does, q and the probabilities to f16
 *    for an f16 cache; where the op's probability and the exact one fall on
 *    two sides of an f16 rounding boundary they differ by one f16 step, so
 *    U = sum_c 2 * step16(p_c) |v_c| for f16 (0 for f32). With q = 0 every
 *    probability is fl(1 / n) in the op, rounded as the reference rounds
 *    1 / n, so U = 0: this pins down where the op rounds to f16;
 *  - positions outside the cache (-1, the cache length, INT_MIN, INT_MAX)
 *    are refused with SP_E_BOUNDS and nothing is written; C - 1 is fine;
 *  - the sliding window (param[1] = W, issue 15): query t sees rows
 *    max(0, pos[t] - W + 1) .. pos[t] only. The same checks run with
 *    windows that start inside a chunk and inside a 4-key score tile, in
 *    decode, prompt and split modes, with the cache rows no query may see
 *    poisoned with NaN (read one and the output is NaN); a window wider
 *    than the context gives the bits of no window; W = 1 gives v[pos]
 *    exactly.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_exec.h"
#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/llm_ops.h"
#include "backend/cpu/threadpool.h"
#include "core/validate.h"

#define CHUNK 128 /* attention.c's SP_ATTN_CHUNK */
#define GUEST_BYTES ((size_t)64 << 20)
#define GUEST_FIRST 4096
#define CANARY 0xAB
#define MAX_THREADS 3

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

/* ---- fake guest memory and random numbers ---- */

static uint8_t *mem;
static size_t mem_top;

static uint32_t guest_alloc(size_t bytes) {
  size_t at = (mem_top + 63) & ~(size_t)63;
  if (at + bytes > GUEST_BYTES) {
    fprintf(stderr, "fake guest memory exhausted\n");
    exit(2);
  }
  mem_top = at + bytes;
  return (uint32_t)at;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rng_f(float lo, float hi) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (float)(rng_state >> 40) / 16777216.0f;
}

/* ---- the runs: every table this CPU runs x 1..MAX_THREADS threads ---- */

typedef struct runner {
  const char *table;
  const sp_cpu_kernels *kern;
  unsigned threads;
} runner;

static runner runners[3 * MAX_THREADS];
static int n_runners;
static sp_threadpool *pools[MAX_THREADS + 1];
static sp_cpu_scratch scratch[MAX_THREADS + 1];

static void runners_open(void) {
  static const char *tables[] = {"generic", "avx2", "avx512"};
  for (unsigned t = 1; t <= MAX_THREADS; t++) {
    sp_error_t *err = sp_threadpool_new(t, &pools[t]);
    if (err) {
      fprintf(stderr, "threadpool: %s\n", sp_error_message(err));
      exit(2);
    }
  }
  for (int i = 0; i < 3; i++) {
    const sp_cpu_kernels *kern = sp_cpu_kernels_by_name(tables[i]);
    if (!kern) {
      printf("note: this CPU does not run the %s table\n", tables[i]);
      continue;
    }
    for (unsigned t = 1; t <= MAX_THREADS; t++) runners[n_runners++] = (runner){tables[i], kern, t};
  }
}

static void runners_close(void) {
  for (unsigned t = 1; t <= MAX_THREADS; t++) {
    sp_threadpool_free(pools[t]);
    sp_cpu_scratch_deinit(&scratch[t]);
  }
}

static sp_error_t *run_on(const runner *r, const sp_cmd *cmd) {
  sp_cpu_exec ex = {.base = mem, .pool = pools[r->threads], .kern = r->kern, .scratch = &scratch[r->threads]};
  return sp_cpu_attention(&ex, cmd);
}

/* ---- one case ---- */

typedef struct att_case {
  uint32_t kv_dtype, D, Hq, Hkv, C, T;
  const int32_t *pos; /* [T] */
  float scale, range; /* q, k and v are uniform in [-range, range] */
  bool q_zero;        /* q = 0: every probability is exactly fl(1 / n) */
  uint32_t window;    /* param[1]: 0 = none; rows before every query's window are NaN */
} att_case;

/* The first key token t sees (attention.c's rule, restated). */
static uint32_t first_key(const att_case *c, uint32_t t) {
  uint32_t pos = (uint32_t)c->pos[t];
  return c->window && pos >= c->window ? pos - c->window + 1 : 0;
}

/* Rows below this no query sees. */
static uint32_t first_seen_row(const att_case *c) {
  uint32_t lo = UINT32_MAX;
  for (uint32_t t = 0; t < c->T; t++) lo = first_key(c, t) < lo ? first_key(c, t) : lo;
  return lo;
}

/* The f16 step (one unit in the last place) at |x|, x > 0. */
static double step16(double x) {
  int e;
  frexp(x, &e); /* x in [2^(e-1), 2^e) */
  return e - 1 < -14 ? ldexp(1, -24) : ldexp(1, e - 1 - 10);
}

/* x rounded to the nearest f16 value, ties to even (x >= 0, < 65504). */
static double round16(double x) {
  if (x == 0) return 0;
  double q = step16(x);
  return nearbyint(x / q) * q;
}

static float stored(uint32_t dtype, float f) {
  return dtype == SP_DTYPE_F16 ? sp_f16_to_f32(sp_f32_to_f16(f)) : f;
}

/* Fills a cache tensor with random values, NaN in rows below `poison`;
 * returns them as stored, [C][H][D]. */
static double *fill_cache(const sp_tensor *t, float range, uint32_t poison) {
  size_t n = (size_t)t->ne[0] * t->ne[1] * t->ne[2];
  double *vals = malloc(n * sizeof *vals);
  for (size_t r = 0; r < (size_t)t->ne[1] * t->ne[2]; r++) {
    uint8_t *row = mem + t->offset + r % t->ne[1] * t->nb[0] + r / t->ne[1] * t->nb[1];
    for (uint32_t i = 0; i < t->ne[0]; i++) {
      float f = stored(t->dtype, r / t->ne[1] < poison ? NAN : rng_f(-range, range));
      uint16_t h = sp_f32_to_f16(f);
      if (t->dtype == SP_DTYPE_F16) memcpy(row + 2 * i, &h, 2);
      else memcpy(row + 4 * i, &f, 4);
      vals[r * t->ne[0] + i] = f;
    }
  }
  return vals;
}

/* want and tol, [T][Hq][D], for the op's inputs (q as f32 [T][Hq][D]). */
static void reference(const att_case *c, const float *q, const double *k, const double *v, double *want,
                      double *tol) {
  bool f16 = c->kv_dtype == SP_DTYPE_F16;
  uint32_t D = c->D, G = c->Hq / c->Hkv;
  double *s = malloc(sizeof *s * c->C), *sabs = malloc(sizeof *sabs * c->C);
  for (uint32_t t = 0; t < c->T; t++)
    for (uint32_t h = 0; h < c->Hq; h++) {
      uint32_t hk = h / G, lo = first_key(c, t), end = (uint32_t)c->pos[t] + 1, n = end - lo;
      const float *qr = q + ((size_t)t * c->Hq + h) * D;
      double max = -INFINITY, sum = 0, ds = 0;
      for (uint32_t j = lo; j < end; j++) {
        s[j] = sabs[j] = 0;
        for (uint32_t i = 0; i < D; i++) {
          double qi = f16 ? stored(SP_DTYPE_F16, qr[i]) : qr[i], kv = k[((size_t)j * c->Hkv + hk) * D + i];
          s[j] += qi * kv;
          sabs[j] += fabs(qi * kv);
        }
        s[j] *= c->scale;
        sabs[j] *= c->scale;
        ds = fmax(ds, (D / 16.0 + 8) * 0x1p-24 * sabs[j] + 0x1p-24 * fabs(s[j]));
        max = fmax(max, s[j]);
      }
      for (uint32_t j = lo; j < end; j++) sum += s[j] = exp(s[j] - max);
      double *w = want + ((size_t)t * c->Hq + h) * D, *e = tol + ((size_t)t * c->Hq + h) * D;
      for (uint32_t i = 0; i < D; i++) {
        double acc = 0, a = 0, u = 0;
        for (uint32_t j = lo; j < end; j++) {
          double p = s[j] / sum, vj = v[((size_t)j * c->Hkv + hk) * D + i];
          acc += (f16 ? round16(p) : p) * vj;
          a += p * fabs(vj);
          if (f16 && p > 0 && !c->q_zero) u += 2 * step16(p) * fabs(vj);
        }
        w[i] = acc;
        e[i] = a * (2 * ds + (256 + n / CHUNK) * 0x1p-24) + u + 1e-30;
      }
    }
  free(s);
  free(sabs);
}

/* Builds and validates the command; inputs random, dst full of canary. */
static bool build(const att_case *c, sp_cmd *cmd, float **q) {
  mem_top = GUEST_FIRST;
  uint32_t es = c->kv_dtype == SP_DTYPE_F16 ? 2 : 4;
  *cmd = (sp_cmd){.op = SP_OP_ATTENTION};
  uint32_t qne[4] = {c->D, c->Hq, c->T, 1}, kne[4] = {c->D, c->Hkv, c->C, 1};
  cmd->src[0] = (sp_tensor){.offset = guest_alloc((size_t)c->D * c->Hq * c->T * 4), .dtype = SP_DTYPE_F32};
  cmd->src[1] = (sp_tensor){.offset = guest_alloc((size_t)c->D * c->Hkv * c->C * es), .dtype = c->kv_dtype};
  cmd->src[2] = (sp_tensor){.offset = guest_alloc((size_t)c->D * c->Hkv * c->C * es), .dtype = c->kv_dtype};
  cmd->src[3] = (sp_tensor){.offset = guest_alloc((size_t)c->T * 4), .dtype = SP_DTYPE_I32};
  cmd->dst = (sp_tensor){.offset = guest_alloc((size_t)c->D * c->Hq * c->T * 4), .dtype = SP_DTYPE_F32};
  memcpy(cmd->src[0].ne, qne, sizeof qne);
  memcpy(cmd->dst.ne, qne, sizeof qne);
  memcpy(cmd->src[1].ne, kne, sizeof kne);
  memcpy(cmd->src[2].ne, kne, sizeof kne);
  cmd->src[3].ne[0] = c->T, cmd->src[3].ne[1] = cmd->src[3].ne[2] = cmd->src[3].ne[3] = 1;
  memcpy(&cmd->param[0], &c->scale, 4);
  cmd->param[1] = c->window;
  memcpy(mem + cmd->src[3].offset, c->pos, (size_t)c->T * 4);
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof *cmd, .max_cmds = 16};
  char msg[256];
  if (sp_validate_cmd(&ctx, cmd, 0, msg, sizeof msg) != SP_OK) {
    check(false, "attention: validate: %s", msg);
    return false;
  }
  size_t nq = (size_t)c->D * c->Hq * c->T;
  *q = malloc(nq * sizeof **q);
  for (size_t i = 0; i < nq; i++) (*q)[i] = c->q_zero ? 0.0f : rng_f(-c->range, c->range);
  memcpy(mem + cmd->src[0].offset, *q, nq * 4);
  memset(mem + cmd->dst.offset, CANARY, nq * 4);
  return true;
}

static void describe(const att_case *c, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s D=%u Hq=%u Hkv=%u C=%u pos=", c->kv_dtype == SP_DTYPE_F16 ? "f16" : "f32", c->D,
                   c->Hq, c->Hkv, c->C);
  for (uint32_t t = 0; t < c->T && n > 0 && (size_t)n < cap; t++)
    n += snprintf(buf + n, cap - (size_t)n, "%s%d", t ? "," : "", c->pos[t]);
  if (c->window && n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, " W=%u", c->window);
}

/* With W = 1 each query sees its own row only: the output is v[pos[t]],
 * exactly (the one probability is 1). */
static bool equals_own_value_row(const att_case *c, const float *out, const double *v) {
  bool same = true;
  uint32_t G = c->Hq / c->Hkv;
  for (uint32_t t = 0; t < c->T; t++)
    for (uint32_t h = 0; h < c->Hq; h++)
      for (uint32_t i = 0; i < c->D; i++)
        same &= out[((size_t)t * c->Hq + h) * c->D + i] == (float)v[((size_t)c->pos[t] * c->Hkv + h / G) * c->D + i];
  return same;
}

/* Runs one case on every runner: same bits everywhere, within tol of the
 * reference; the output (n floats) is copied to `out` if not NULL. */
static void test_case_out(const att_case *c, float *out) {
  char name[200];
  describe(c, name, sizeof name);
  sp_cmd cmd;
  float *q;
  if (!build(c, &cmd, &q)) return;
  uint32_t poison = c->window ? first_seen_row(c) : 0;
  double *k = fill_cache(&cmd.src[1], c->range, poison), *v = fill_cache(&cmd.src[2], c->range, poison);
  size_t n = (size_t)c->D * c->Hq * c->T;
  double *want = malloc(n * sizeof *want), *tol = malloc(n * sizeof *tol), worst = 0;
  reference(c, q, k, v, want, tol);
  float *first = malloc(n * 4), *got = malloc(n * 4);
  bool same = true, ran = true;
  for (int r = 0; r < n_runners && ran; r++) {
    memset(mem + cmd.dst.offset, CANARY, n * 4);
    sp_error_t *err = run_on(&runners[r], &cmd);
    if (err) printf("     %s/%ut: %s\n", runners[r].table, runners[r].threads, sp_error_message(err));
    ran = !err;
    sp_error_free(err);
    memcpy(r ? got : first, mem + cmd.dst.offset, n * 4);
    if (r && memcmp(got, first, n * 4)) {
      printf("     %s/%ut differs from %s/%ut\n", runners[r].table, runners[r].threads, runners[0].table,
             runners[0].threads);
      same = false;
    }
  }
  for (size_t i = 0; i < n && ran; i++) worst = isnan(first[i]) ? INFINITY : fmax(worst, fabs(first[i] - want[i]) / tol[i]);
  check(ran && same && worst <= 1, "attention %s: err/tol %.3g, bit-identical on %d runs (tables x threads): %s", name,
        worst, n_runners, same ? "yes" : "NO");
  if (c->window == 1) check(ran && equals_own_value_row(c, first, v), "attention %s: output = v[pos] exactly", name);
  if (out) memcpy(out, first, n * 4);
  free(q), free(k), free(v), free(want), free(tol), free(first), free(got);
}

static void test_case(const att_case *c) { test_case_out(c, NULL); }

/* A window that reaches row 0 for every query (W > pos, W = pos + 1)
 * changes nothing: the same bits as no window, on the same inputs. */
static void test_wide_window(const att_case *c) {
  size_t n = (size_t)c->D * c->Hq * c->T;
  float *none = calloc(n, 4), *wide = calloc(n, 4);
  uint64_t seed = rng_state;
  att_case plain = *c;
  plain.window = 0;
  test_case_out(&plain, none);
  rng_state = seed;
  test_case_out(c, wide);
  char name[200];
  describe(c, name, sizeof name);
  check(!memcmp(none, wide, n * 4), "attention %s: the bits of W = 0", name);
  free(none), free(wide);
}

/* Sliding windows (param[1]) in every mode of the op. */
static void test_windows(uint32_t dt) {
  /* Decode, one token: W larger than pos and W = pos + 1 (no effect);
   * W = 1; windows starting inside a 4-key score tile and inside a chunk,
   * one chunk exactly, one key over a chunk, several chunks (split mode
   * at 3 threads: few items, many chunks). */
  int32_t p100 = 100, p1000 = 1000, p2999 = 2999;
  test_wide_window(&(att_case){dt, 64, 6, 2, 3000, 1, &p100, 0.125f, 2, false, 500});
  test_wide_window(&(att_case){dt, 64, 6, 2, 3000, 1, &p100, 0.125f, 2, false, 101});
  test_wide_window(&(att_case){dt, 64, 6, 2, 3000, 1, &p2999, 0.125f, 2, false, 4000});
  static const uint32_t windows[] = {1, 2, 5, 7, 127, 128, 129, 130, 300, 1000};
  for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
    test_case(&(att_case){dt, 64, 6, 2, 3000, 1, &p1000, 0.125f, 2, false, windows[w]});
    test_case(&(att_case){dt, 64, 8, 2, 3000, 1, &p2999, 0.125f, 2, false, windows[w]});
  }
  /* A prompt (item mode): tokens before, at and past the window's reach. */
  int32_t prompt[8] = {0, 3, 6, 126, 127, 128, 200, 999};
  test_case(&(att_case){dt, 64, 6, 2, 1000, 8, prompt, 0.125f, 2, false, 130});
  test_case(&(att_case){dt, 64, 6, 2, 1000, 8, prompt, 0.125f, 2, false, 4});
  /* A short prompt at a long context (split mode), its windows cutting
   * chunks at three different keys. */
  int32_t late[3] = {1500, 1501, 1502};
  test_case(&(att_case){dt, 64, 6, 2, 3000, 3, late, 0.125f, 2, false, 300});
  test_case(&(att_case){dt, 64, 6, 2, 3000, 3, late, 0.125f, 2, false, 1});
  /* Peaky scores over a window of three chunks. */
  test_case(&(att_case){dt, 64, 6, 2, 3000, 1, &p2999, 1.0f, 4, false, 333});
  /* q = 0: uniform probabilities over exactly the window's keys. */
  test_case(&(att_case){dt, 64, 6, 2, 3000, 1, &p1000, 0.125f, 2, true, 77});
  /* Gemma 3 (256, 4 over 1, its local layers' window of 512 keys) and a
   * Mistral-shaped layer (128, 32 over 8); a head dim with a scalar tail. */
  int32_t at[2] = {1000, 1001}, at2047 = 2047, small[4] = {0, 1, 2, 4};
  test_case(&(att_case){dt, 256, 4, 1, 1024, 2, at, 0.0625f, 2, false, 512});
  test_case(&(att_case){dt, 128, 32, 8, 2048, 1, &at2047, 0.088f, 2, false, 1000});
  test_case(&(att_case){dt, 36, 8, 2, 16, 4, small, 0.3f, 2, false, 3});
}

/* A position outside 0..C-1 in any slot stops the op with SP_E_BOUNDS
 * before anything is written. */
static void test_bad_positions(uint32_t kv_dtype) {
  static const int32_t bad[] = {-1, 64, INT_MIN, INT_MAX};
  int32_t pos[3] = {5, 63, 0};
  att_case c = {kv_dtype, 32, 6, 2, 64, 3, pos, 0.2f, 1, false, 0};
  for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
    sp_cmd cmd;
    float *q;
    pos[b % 3] = bad[b];
    if (!build(&c, &cmd, &q)) return;
    bool refused = true;
    for (int r = 0; r < n_runners; r++) {
      sp_error_t *err = run_on(&runners[r], &cmd);
      refused &= err && sp_error_status(err) == SP_E_BOUNDS;
      sp_error_free(err);
      for (size_t i = 0; i < (size_t)32 * 6 * 3 * 4; i++) refused &= mem[cmd.dst.offset + i] == CANARY;
    }
    check(refused, "attention %s: position %d in slot %zu refused (SP_E_BOUNDS), dst untouched",
          kv_dtype == SP_DTYPE_F16 ? "f16" : "f32", bad[b], b % 3);
    pos[b % 3] = 63; /* C - 1: the last row, allowed */
    free(q);
  }
  test_case(&c);
}

int main(void) {
  mem = calloc(1, GUEST_BYTES);
  runners_open();
  static const uint32_t dtypes[] = {SP_DTYPE_F32, SP_DTYPE_F16}, groups[] = {1, 3, 4};
  static const int32_t contexts[] = {1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 1000, 3000};
  for (int d = 0; d < 2; d++) {
    /* Decode: one token at every context, each GQA group size. */
    for (int g = 0; g < 3; g++)
      for (size_t i = 0; i < sizeof contexts / sizeof *contexts; i++) {
        int32_t pos = contexts[i] - 1;
        test_case(&(att_case){dtypes[d], 64, 2 * groups[g], 2, 3000, 1, &pos, 0.125f, 2, false, 0});
      }
    /* A prompt: all the contexts at once. */
    int32_t prompt[7];
    for (int i = 0; i < 7; i++) prompt[i] = contexts[i] - 1;
    test_case(&(att_case){dtypes[d], 64, 6, 2, 3000, 7, prompt, 0.125f, 2, false, 0});
    /* A short prompt at a long context: few items, many chunks each. */
    int32_t late[3] = {1500, 1501, 1502};
    test_case(&(att_case){dtypes[d], 64, 6, 2, 3000, 3, late, 0.125f, 2, false, 0});
    /* Model shapes: SmolLM2 (9 heads over 3) and the 1B (32 over 8). */
    int32_t at630 = 629, at2048[2] = {2046, 2047};
    test_case(&(att_case){dtypes[d], 64, 9, 3, 2048, 1, &at630, 0.125f, 2, false, 0});
    test_case(&(att_case){dtypes[d], 64, 32, 8, 2048, 2, at2048, 0.125f, 2, false, 0});
    /* Peaky scores: chunks whose weight underflows to 0 beside the best. */
    int32_t far = 2999;
    test_case(&(att_case){dtypes[d], 64, 6, 2, 3000, 1, &far, 1.0f, 4, false, 0});
    /* q = 0: uniform probabilities, their f16 rounding checked tightly. */
    for (int i = 1; i < 7; i += 2) {
      int32_t pos = contexts[i] - 1;
      test_case(&(att_case){dtypes[d], 64, 6, 2, 3000, 1, &pos, 0.125f, 2, true, 0});
    }
    /* Other families' head dims and groups (the SIMD loops tile heads by
     * 3 or 4 and dims by 8, 16 or 64, with scalar tails): Qwen2.5-0.5B
     * (64, 14 over 2), Phi-3 (96, no grouping), Gemma 3 (256, 4 over 1),
     * and 80 / 128 / 40 with groups of 5, 8 and 2. */
    static const uint32_t shapes[][3] = {{64, 14, 2}, {96, 4, 4}, {256, 4, 1}, {80, 10, 2}, {128, 8, 1}, {40, 4, 2}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
      int32_t at[2] = {300, 301};
      test_case(&(att_case){dtypes[d], shapes[i][0], shapes[i][1], shapes[i][2], 512, 2, at, 0.125f, 2, false, 0});
    }
    /* A head dim that is no multiple of a vector, and tiny contexts. */
    int32_t small[4] = {0, 1, 2, 4};
    test_case(&(att_case){dtypes[d], 36, 8, 2, 16, 4, small, 0.3f, 2, false, 0});
    test_bad_positions(dtypes[d]);
    test_windows(dtypes[d]);
  }
  runners_close();
  free(mem);
  printf("%d checks, %d failed\n", n_checks, n_failures);
  return n_failures ? 1 : 0;
}
