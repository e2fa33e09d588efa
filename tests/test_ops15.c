/*
 * test_ops15.c: the ops of issue 15 on the CPU: SP_OP_GEGLU, SP_OP_SOFTCAP
 * and SP_OP_ATTENTION's sliding window (param[1]).
 *
 *  1. Rules (src/core/op_rules.c through sp_validate_cmd): the good forms
 *     pass, in place included; bad ones are refused with the status and a
 *     message naming the field (a cap that is NaN, infinite, zero,
 *     negative or subnormal; shapes; dtypes; an unused slot or param).
 *  2. Results through the backend interface (validate, then
 *     sp_backend_submit) on generic/1 thread, best/2 and best/3: the same
 *     bits everywhere, and against a double-precision reference:
 *      - GEGLU as ggml-cpu computes it for f32 (activations.c): gelu of x
 *        rounded to f16, the result rounded to f16, times g; 0 for x <=
 *        -10 and x * g for x >= 10. Every f16 input in (-10, 10) is
 *        checked with g = 1: the factor is an f16 value, and it is the
 *        exact gelu of x within half an f16 step plus the error of an
 *        f32 evaluation (geglu_close says how much);
 *      - SOFTCAP: |got - cap tanh(x / cap)| <= 2^-21 |x| + 2^-20 |ref|
 *        (1 / cap and x / cap rounded, tanhf within 2 ulps, times cap),
 *        and bit for bit the form llama.cpp builds: tanhf(x * (1 / cap))
 *        * cap; limits (0, +-inf, huge) exact, NaN stays NaN;
 *      - shapes: several rows, 4-D, row strides, a row longer than a
 *        piece (spread over threads), in place.
 *  3. The window's meaning, whatever the kernel's tiling: with k = 0 every
 *     visible row has the same weight, and v row r holds r, so each
 *     output is the mean of the visible row numbers, (lo + pos) / 2 with
 *     lo = max(0, pos - W + 1); for W = 0, 1, 2, W = pos, pos + 1, a
 *     window wider than the cache and 2^32 - 1, f32 and f16 caches.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/fp16.h"
#include "core/op_rules.h"
#include "core/validate.h"

#define GUEST_BYTES ((size_t)16 << 20)
#define GUEST_FIRST 4096 /* bytes below are the (pretend) command list */

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

static uint8_t *mem;
static size_t mem_top = GUEST_FIRST;

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

/* A packed tensor of `dtype` and shape ne, in fresh guest memory (nb[0]:
 * a row stride in bytes, 0 = packed). */
static sp_tensor new_tensor(uint32_t dtype, uint32_t ne0, uint32_t ne1, uint32_t ne2, uint32_t ne3, uint32_t nb0) {
  size_t es = dtype == SP_DTYPE_F16 ? 2 : 4, row = nb0 ? nb0 : ne0 * es;
  sp_tensor t = {.dtype = dtype, .ne = {ne0, ne1, ne2, ne3}};
  t.offset = guest_alloc(row * ne1 * ne2 * ne3);
  t.nb[0] = nb0;
  return t;
}

/* ---- rules ---- */

static sp_status validate(sp_cmd *cmd, char *msg, size_t cap) {
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof *cmd, .max_cmds = 16};
  return sp_validate_cmd(&ctx, cmd, 0, msg, cap);
}

/* Validates `cmd` (a copy): expects `want`, and for a refusal a message
 * holding `field`. */
static void expect(const char *what, sp_cmd cmd, sp_status want, const char *field) {
  char msg[300] = "";
  sp_status got = validate(&cmd, msg, sizeof msg);
  bool ok = got == want && (want == SP_OK || strstr(msg, field));
  check(ok, "rules: %s -> %d (want %d) %s", what, got, want, msg);
}

static sp_cmd geglu_cmd(void) {
  sp_cmd c = {.op = SP_OP_GEGLU};
  c.dst = new_tensor(SP_DTYPE_F32, 64, 3, 1, 1, 0);
  c.src[0] = new_tensor(SP_DTYPE_F32, 64, 3, 1, 1, 0);
  c.src[1] = new_tensor(SP_DTYPE_F32, 64, 3, 1, 1, 0);
  return c;
}

static sp_cmd softcap_cmd(float cap) {
  sp_cmd c = {.op = SP_OP_SOFTCAP, .param = {sp_f32_bits(cap)}};
  c.dst = new_tensor(SP_DTYPE_F32, 64, 3, 1, 1, 0);
  c.src[0] = new_tensor(SP_DTYPE_F32, 64, 3, 1, 1, 0);
  return c;
}

static void test_geglu_rules(void) {
  sp_cmd c = geglu_cmd(), bad;
  expect("geglu", c, SP_OK, "");
  bad = c, bad.dst = bad.src[0];
  expect("geglu in place (dst = src[0])", bad, SP_OK, "");
  bad = c, bad.dst = bad.src[1];
  expect("geglu dst = src[1] (in place is dst = src[0] only)", bad, SP_E_ALIAS, "src[1]");
  bad = c, bad.src[1].ne[1] = 2;
  expect("geglu src[1] of another shape", bad, SP_E_SHAPE, "src[1].ne");
  bad = c, bad.src[0].ne[0] = 32;
  expect("geglu src[0] of another shape", bad, SP_E_SHAPE, "src[0].ne");
  bad = c, bad.src[0].dtype = SP_DTYPE_F16;
  expect("geglu src[0] f16", bad, SP_E_DTYPE, "src[0].dtype");
  bad = c, bad.src[1].dtype = SP_DTYPE_BF16;
  expect("geglu src[1] bf16", bad, SP_E_DTYPE, "src[1].dtype");
  bad = c, bad.dst.dtype = SP_DTYPE_I32;
  expect("geglu dst i32", bad, SP_E_DTYPE, "dst.dtype");
  bad = c, bad.param[0] = 1;
  expect("geglu param[0] set", bad, SP_E_PARAM, "param[0]");
  bad = c, bad.src[2] = c.src[1];
  expect("geglu src[2] set", bad, SP_E_PARAM, "src[2]");
}

static void test_softcap_rules(void) {
  sp_cmd c = softcap_cmd(30.0f), bad;
  expect("softcap cap 30", c, SP_OK, "");
  expect("softcap cap 1e-30", softcap_cmd(1e-30f), SP_OK, "");
  bad = c, bad.dst = bad.src[0];
  expect("softcap in place", bad, SP_OK, "");
  static const float bad_caps[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -5.0f, 1e-40f /* subnormal */};
  for (size_t i = 0; i < sizeof bad_caps / sizeof *bad_caps; i++) {
    char what[64];
    snprintf(what, sizeof what, "softcap cap %g", (double)bad_caps[i]);
    expect(what, softcap_cmd(bad_caps[i]), SP_E_PARAM, "param[0]: cap");
  }
  bad = c, bad.src[0].ne[2] = 2;
  expect("softcap src[0] of another shape", bad, SP_E_SHAPE, "src[0].ne");
  bad = c, bad.src[0].dtype = SP_DTYPE_F16;
  expect("softcap src[0] f16", bad, SP_E_DTYPE, "src[0].dtype");
  bad = c, bad.dst.dtype = SP_DTYPE_BF16;
  expect("softcap dst bf16", bad, SP_E_DTYPE, "dst.dtype");
  bad = c, bad.param[1] = 1;
  expect("softcap param[1] set", bad, SP_E_PARAM, "param[1]");
  bad = c, bad.src[1] = c.src[0];
  expect("softcap src[1] set", bad, SP_E_PARAM, "src[1]");
}

static sp_cmd attention_cmd(uint32_t kv_dtype, uint32_t C, uint32_t T, uint32_t window) {
  sp_cmd c = {.op = SP_OP_ATTENTION, .param = {sp_f32_bits(1.0f), window}};
  c.dst = new_tensor(SP_DTYPE_F32, 8, 2, T, 1, 0);
  c.src[0] = new_tensor(SP_DTYPE_F32, 8, 2, T, 1, 0);
  c.src[1] = new_tensor(kv_dtype, 8, 1, C, 1, 0);
  c.src[2] = new_tensor(kv_dtype, 8, 1, C, 1, 0);
  c.src[3] = new_tensor(SP_DTYPE_I32, T, 1, 1, 1, 0);
  return c;
}

static void test_attention_rules(void) {
  expect("attention window 0", attention_cmd(SP_DTYPE_F32, 16, 2, 0), SP_OK, "");
  expect("attention window 4096", attention_cmd(SP_DTYPE_F32, 16, 2, 4096), SP_OK, "");
  expect("attention window 2^32 - 1", attention_cmd(SP_DTYPE_F16, 16, 2, UINT32_MAX), SP_OK, "");
  sp_cmd bad = attention_cmd(SP_DTYPE_F32, 16, 2, 8);
  bad.param[2] = 1;
  expect("attention param[2] set", bad, SP_E_PARAM, "param[2]");
  const sp_op_rule *g = sp_op_rule_get(SP_OP_GEGLU), *s = sp_op_rule_get(SP_OP_SOFTCAP);
  check(g && s && !strcmp(g->name, "geglu") && !strcmp(s->name, "softcap"), "rules: named geglu and softcap");
}

/* ---- backends ---- */

typedef struct test_backend {
  const char *label;
  sp_backend *be;
  void *binding;
} test_backend;

enum { N_BACKENDS = 3 };
static test_backend tbs[N_BACKENDS];

static void backends_open(void) {
  static const char *labels[N_BACKENDS] = {"generic/1t", "best/2t", "best/3t"};
  static const char *simd[N_BACKENDS] = {"generic", NULL, NULL};
  static const unsigned threads[N_BACKENDS] = {1, 2, 3};
  sp_memory_view view = {.base = mem, .committed = GUEST_BYTES, .reserved = GUEST_BYTES};
  for (int i = 0; i < N_BACKENDS; i++) {
    sp_error_t *err = sp_backend_cpu_new_simd(threads[i], simd[i], &tbs[i].be);
    if (!err) err = sp_backend_adopt(tbs[i].be, &view, &tbs[i].binding);
    if (err) {
      fprintf(stderr, "backend: %s\n", sp_error_message(err));
      exit(2);
    }
    tbs[i].label = labels[i];
  }
  printf("note: best table here is %s\n", sp_backend_cpu_simd(tbs[1].be));
}

static void backends_close(void) {
  for (int i = N_BACKENDS - 1; i >= 0; i--) {
    sp_backend_release(tbs[i].be, tbs[i].binding);
    sp_backend_free(tbs[i].be);
  }
}

static bool submit(const test_backend *tb, const sp_cmd *cmd) {
  sp_error_t *err = sp_backend_submit(tb->be, tb->binding, cmd, 1, false);
  if (err) printf("     %s: %s\n", tb->label, sp_error_message(err));
  bool ok = !err;
  sp_error_free(err);
  return ok;
}

/* ---- elementwise tensors ---- */

static float *elem(const sp_tensor *t, size_t i) {
  size_t r = i / t->ne[0], i1 = r % t->ne[1], i2 = r / t->ne[1] % t->ne[2], i3 = r / t->ne[1] / t->ne[2];
  return (float *)(mem + t->offset + i1 * t->nb[0] + i2 * t->nb[1] + i3 * t->nb[2]) + i % t->ne[0];
}

static size_t count(const sp_tensor *t) { return (size_t)t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

static void load(const sp_tensor *t, const float *vals) {
  for (size_t i = 0; i < count(t); i++) *elem(t, i) = vals[i];
}

static void store(const sp_tensor *t, float *vals) {
  for (size_t i = 0; i < count(t); i++) vals[i] = *elem(t, i);
}

/* Runs a validated elementwise cmd on every backend from the same inputs
 * (src0 reloaded from a0: it may be dst); returns the first backend's
 * output in out and whether all ran and agree bit for bit. */
static bool run_all(const sp_cmd *cmd, const float *a0, float *out) {
  size_t n = count(&cmd->dst);
  float *other = malloc(n * sizeof *other);
  bool ok = true;
  for (int b = 0; b < N_BACKENDS; b++) {
    load(&cmd->src[0], a0);
    ok &= submit(&tbs[b], cmd);
    store(&cmd->dst, b ? other : out);
    if (b && memcmp(other, out, n * sizeof *out)) {
      printf("     %s differs from %s\n", tbs[b].label, tbs[0].label);
      ok = false;
    }
  }
  free(other);
  return ok;
}

/* ---- GEGLU ---- */

static double gelu_exact(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

static double round_f16(double x) { return sp_f16_to_f32(sp_f32_to_f16((float)x)); }

/* One f16 step at |x|. */
static double f16_step(double x) {
  int e;
  frexp(fabs(x), &e);
  return e - 1 < -14 ? ldexp(1, -24) : ldexp(1, e - 11);
}

/* GEGLU in double, with ggml-cpu's cut-offs and its rounding of x to f16. */
static double geglu_ref(float x, float g) {
  if (x <= -10.0f) return 0;
  if (x >= 10.0f) return (double)x * g;
  return gelu_exact(round_f16(x)) * g;
}

/* The op's gelu factor is gelu evaluated in f32 (1 + tanhf(u) loses up to
 * 2^-24 absolutely: |x| 2^-23 covers it with the other roundings, 2^-21
 * relative the products and tanhf's ulps), then rounded to f16 (half a
 * step), then times g (2^-24 relative). */
static bool geglu_close(float x, float g, float got) {
  double want = geglu_ref(x, g);
  if (isnan(want)) return isnan(got);
  if (x <= -10.0f || x >= 10.0f) return got == (float)want; /* 0, or one rounding of x * g */
  double x16 = round_f16(x), gelu = gelu_exact(x16), e = ldexp(fabs(x16), -23) + ldexp(fabs(gelu), -21);
  return fabs(got - want) <= (0.5 * f16_step(fabs(gelu) + e) + e) * fabs(g) + ldexp(fabs(want), -24);
}

/* Inputs and outputs of one op run: a = src0, b = src1, out = dst. */
typedef struct ew_run {
  sp_cmd cmd;
  float *a, *b, *out;
  size_t n;
} ew_run;

static ew_run ew_new(uint32_t op, uint32_t ne0, uint32_t ne1, uint32_t ne2, uint32_t ne3, uint32_t nb0,
                     bool in_place) {
  ew_run r = {.cmd = {.op = op}};
  r.cmd.src[0] = new_tensor(SP_DTYPE_F32, ne0, ne1, ne2, ne3, nb0);
  if (op == SP_OP_GEGLU) r.cmd.src[1] = new_tensor(SP_DTYPE_F32, ne0, ne1, ne2, ne3, 0);
  r.cmd.dst = in_place ? r.cmd.src[0] : new_tensor(SP_DTYPE_F32, ne0, ne1, ne2, ne3, nb0 ? nb0 + 4 : 0);
  r.n = (size_t)ne0 * ne1 * ne2 * ne3;
  r.a = malloc(r.n * 4), r.b = malloc(r.n * 4), r.out = malloc(r.n * 4);
  return r;
}

static void ew_free(ew_run *r) { free(r->a), free(r->b), free(r->out); }

/* Validates, loads b, runs on every backend. */
static bool ew_run_all(ew_run *r, const char *name) {
  char msg[300];
  if (validate(&r->cmd, msg, sizeof msg) != SP_OK) {
    check(false, "%s: validate: %s", name, msg);
    return false;
  }
  if (r->cmd.op == SP_OP_GEGLU) load(&r->cmd.src[1], r->b);
  return run_all(&r->cmd, r->a, r->out);
}

/* Random x in [-12, 12] (both cut-offs reached) and g in [-3, 3]. */
static void test_geglu_shape(const char *name, uint32_t ne0, uint32_t ne1, uint32_t ne2, uint32_t ne3, uint32_t nb0,
                             bool in_place) {
  ew_run r = ew_new(SP_OP_GEGLU, ne0, ne1, ne2, ne3, nb0, in_place);
  for (size_t i = 0; i < r.n; i++) r.a[i] = rng_f(-12, 12), r.b[i] = rng_f(-3, 3);
  bool same = ew_run_all(&r, name), close = true;
  for (size_t i = 0; i < r.n && same; i++) close &= geglu_close(r.a[i], r.b[i], r.out[i]);
  check(same && close, "geglu %s: bit-identical on %d backends, within tol of the reference", name,
        N_BACKENDS);
  ew_free(&r);
}

/* Every f16 value in (-10, 10) as x, g = 1: the GELU factor alone. */
static void test_geglu_all_f16(void) {
  ew_run r = ew_new(SP_OP_GEGLU, 1 << 16, 1, 1, 1, 0, false);
  for (size_t i = 0; i < r.n; i++) {
    float x = sp_f16_to_f32((uint16_t)i);
    r.a[i] = isnan(x) || fabsf(x) >= 10 ? 0.0f : x, r.b[i] = 1.0f;
  }
  bool same = ew_run_all(&r, "all f16"), is_f16 = true, close = true;
  for (size_t i = 0; i < r.n && same; i++) {
    is_f16 &= round_f16(r.out[i]) == r.out[i];
    close &= geglu_close(r.a[i], 1.0f, r.out[i]);
  }
  check(same && is_f16, "geglu: every f16 x in (-10, 10), g = 1: the gelu factor is an f16 value (ggml's table)");
  check(same && close, "geglu: every f16 x in (-10, 10): within tol of the exact gelu(x)");
  ew_free(&r);
}

/* The cut-offs and specials, as ggml: x <= -10 gives 0 even with g
 * infinite; x >= 10 gives x * g; NaN stays NaN. */
static void test_geglu_specials(void) {
  static const float xs[] = {-10.0f, -10.5f, -INFINITY, 10.0f, 12.0f, INFINITY, NAN, 0.0f, -0.0f, 1e-30f};
  static const float gs[] = {INFINITY, 2.0f, 3.0f, 2.0f, 0.5f, 1.0f, 1.0f, 5.0f, 1.0f, 1.0f};
  enum { N = sizeof xs / sizeof *xs };
  ew_run r = ew_new(SP_OP_GEGLU, N, 1, 1, 1, 0, false);
  memcpy(r.a, xs, sizeof xs), memcpy(r.b, gs, sizeof gs);
  bool same = ew_run_all(&r, "specials"), ok = true;
  for (int i = 0; i < N && same; i++) {
    float want = (float)geglu_ref(xs[i], gs[i]);
    bool hit = isnan(want) ? isnan(r.out[i]) : r.out[i] == want && signbit(r.out[i]) == signbit(want);
    if (!hit) printf("     x=%g g=%g: got %g, want %g\n", (double)xs[i], (double)gs[i], (double)r.out[i], (double)want);
    ok &= hit;
  }
  check(same && ok, "geglu: -10, -inf -> 0 (g = inf too); 10, 12, inf -> x * g; NaN -> NaN; 0 -> 0");
  ew_free(&r);
}

/* ---- SOFTCAP ---- */

static bool softcap_close(float x, float cap, float got) {
  double want = cap * tanh((double)x / cap);
  if (isnan(x)) return isnan(got);
  if (isinf(x)) return got == (x > 0 ? cap : -cap);
  return fabs(got - want) <= ldexp(fabs(x), -21) + ldexp(fabs(want), -20);
}

static void test_softcap_shape(const char *name, float cap, float range, uint32_t ne0, uint32_t ne1, uint32_t ne2,
                               uint32_t ne3, uint32_t nb0, bool in_place) {
  ew_run r = ew_new(SP_OP_SOFTCAP, ne0, ne1, ne2, ne3, nb0, in_place);
  r.cmd.param[0] = sp_f32_bits(cap);
  for (size_t i = 0; i < r.n; i++) r.a[i] = rng_f(-range, range);
  bool same = ew_run_all(&r, name), close = true, form = true;
  float inv = 1.0f / cap;
  for (size_t i = 0; i < r.n && same; i++) {
    close &= softcap_close(r.a[i], cap, r.out[i]);
    form &= r.out[i] == tanhf(r.a[i] * inv) * cap;
  }
  check(same && close && form,
        "softcap %s (cap %g): bit-identical on %d backends, within tol of cap tanh(x / cap), "
        "= tanhf(x * (1 / cap)) * cap",
        name, (double)cap, N_BACKENDS);
  ew_free(&r);
}

static void test_softcap_specials(void) {
  static const float xs[] = {0.0f, -0.0f, INFINITY, -INFINITY, 1e30f, -1e30f, NAN, 1e-30f};
  enum { N = sizeof xs / sizeof *xs };
  const float cap = 30.0f;
  ew_run r = ew_new(SP_OP_SOFTCAP, N, 1, 1, 1, 0, false);
  r.cmd.param[0] = sp_f32_bits(cap);
  memcpy(r.a, xs, sizeof xs);
  bool same = ew_run_all(&r, "specials");
  bool ok = same && r.out[0] == 0 && !signbit(r.out[0]) && r.out[1] == 0 && signbit(r.out[1]) &&
            r.out[2] == cap && r.out[3] == -cap && r.out[4] == cap && r.out[5] == -cap && isnan(r.out[6]) &&
            softcap_close(xs[7], cap, r.out[7]);
  check(ok, "softcap: +-0 -> +-0, +-inf and +-1e30 -> +-cap, NaN -> NaN, tiny x -> x");
  ew_free(&r);
}

/* ---- the window's meaning ---- */

/* k = 0 (uniform weights over the visible rows), v row r = r: the output
 * is the mean of the visible row numbers. */
static void test_window_meaning(uint32_t kv_dtype, uint32_t window) {
  enum { C = 300, T = 6 };
  static const int32_t pos[T] = {0, 1, 9, 10, 200, 299};
  mem_top = GUEST_FIRST;
  sp_cmd cmd = attention_cmd(kv_dtype, C, T, window);
  char msg[300];
  if (validate(&cmd, msg, sizeof msg) != SP_OK) {
    check(false, "window: validate: %s", msg);
    return;
  }
  memcpy(mem + cmd.src[3].offset, pos, sizeof pos);
  size_t es = kv_dtype == SP_DTYPE_F16 ? 2 : 4;
  memset(mem + cmd.src[1].offset, 0, (size_t)C * 8 * es);
  for (uint32_t r = 0; r < C; r++)
    for (uint32_t i = 0; i < 8; i++) {
      uint16_t h = sp_f32_to_f16((float)r);
      float f = (float)r;
      memcpy(mem + cmd.src[2].offset + ((size_t)r * 8 + i) * es, es == 2 ? (void *)&h : (void *)&f, es);
    }
  for (size_t i = 0; i < (size_t)8 * 2 * T; i++) ((float *)(mem + cmd.src[0].offset))[i] = rng_f(-1, 1);
  bool ok = true;
  for (int b = 0; b < N_BACKENDS; b++) {
    ok &= submit(&tbs[b], &cmd);
    for (uint32_t t = 0; t < T; t++) {
      uint32_t lo = window && (uint32_t)pos[t] >= window ? (uint32_t)pos[t] - window + 1 : 0;
      double want = (lo + pos[t]) / 2.0, tol = ldexp(want, es == 2 ? -9 : -14) + 1e-6;
      for (uint32_t i = 0; i < 16; i++) {
        float got = ((float *)(mem + cmd.dst.offset))[t * 16 + i];
        if (!(fabs(got - want) <= tol)) {
          if (ok) printf("     %s pos %d: got %g, want %g\n", tbs[b].label, pos[t], (double)got, want);
          ok = false;
        }
      }
    }
  }
  check(ok, "window %s W=%u: every query averages rows max(0, pos - W + 1)..pos", es == 2 ? "f16" : "f32", window);
}

int main(void) {
  mem = calloc(1, GUEST_BYTES);
  test_geglu_rules();
  test_softcap_rules();
  test_attention_rules();
  mem_top = GUEST_FIRST;
  backends_open();
  test_geglu_all_f16();
  test_geglu_specials();
  test_geglu_shape("3 rows", 1000, 3, 1, 1, 0, false);
  test_geglu_shape("4-D, row stride", 37, 3, 2, 2, 256, false);
  test_geglu_shape("one long row", 50000, 1, 1, 1, 0, false);
  test_geglu_shape("in place", 5000, 4, 1, 1, 0, true);
  test_softcap_specials();
  test_softcap_shape("3 rows", 30.0f, 200.0f, 1000, 3, 1, 1, 0, false);
  test_softcap_shape("4-D, row stride", 50.0f, 500.0f, 37, 3, 2, 2, 256, false);
  test_softcap_shape("one long row", 15.0f, 60.0f, 50000, 1, 1, 1, 0, false);
  test_softcap_shape("in place", 0.3f, 2.0f, 5000, 4, 1, 1, 0, true);
  static const uint32_t windows[] = {0, 1, 2, 10, 11, 200, 300, 4096, UINT32_MAX};
  for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
    test_window_meaning(SP_DTYPE_F32, windows[w]);
    test_window_meaning(SP_DTYPE_F16, windows[w]);
  }
  backends_close();
  free(mem);
  printf("%d checks, %d failed\n", n_checks, n_failures);
  return n_failures ? 1 : 0;
}
