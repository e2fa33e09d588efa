/*
 * test_topk.c: SP_OP_TOPK, the sampler's candidates op.
 *
 *  1. Rules (op_rules.c through sp_validate_cmd): good forms pass; K above
 *     N or SP_TOPK_MAX, wrong dtypes, 3-D tensors, a row count that differs,
 *     a used param or an extra source are refused naming the field.
 *  2. Results on the CPU backend (generic table on 1 thread, best table on
 *     2) and, where libsamepage_cuda.so and a GPU are present, the CUDA
 *     backend: every index equals an independent reference (qsort of the
 *     whole row by value, then index, NaN last, -0 equal to +0) for rows
 *     of random logits, few distinct values (long runs of ties), all
 *     equal, NaN and infinities, signed zeros, sorted either way; N from 1
 *     to 128k, K from 1 to 1024, several rows with a row stride.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/knobs.h"
#include "core/op_rules.h"
#include "core/validate.h"

#define GUEST_BYTES ((size_t)64 << 20)
#define GUEST_FIRST 4096

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
  size_t at = (mem_top + 255) & ~(size_t)255;
  if (at + bytes > GUEST_BYTES) {
    fprintf(stderr, "fake guest memory exhausted\n");
    exit(2);
  }
  mem_top = at + bytes;
  return (uint32_t)at;
}

static sp_tensor new_tensor(uint32_t dtype, uint32_t ne0, uint32_t ne1, uint32_t ne2, uint32_t row_bytes) {
  sp_tensor t = {.dtype = dtype, .ne = {ne0, ne1, ne2, 1}};
  size_t row = row_bytes ? row_bytes : (size_t)ne0 * 4;
  t.offset = guest_alloc(row * ne1 * ne2);
  t.nb[0] = row_bytes;
  return t;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}
static float rng_f(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f; }

/* ---- rules ---- */

static sp_cmd topk_cmd(uint32_t k, uint32_t n, uint32_t rows) {
  sp_cmd c = {.op = SP_OP_TOPK};
  c.dst = new_tensor(SP_DTYPE_I32, k, rows, 1, 0);
  c.src[0] = new_tensor(SP_DTYPE_F32, n, rows, 1, 0);
  return c;
}

static void expect(const char *what, sp_cmd cmd, sp_status want, const char *field) {
  char msg[300] = "";
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof cmd, .max_cmds = 16};
  sp_status got = sp_validate_cmd(&ctx, &cmd, 0, msg, sizeof msg);
  bool ok = got == want && (want == SP_OK || strstr(msg, field));
  check(ok, "rules: %s -> %d (want %d) %s", what, got, want, msg);
}

static void test_rules(void) {
  sp_cmd c = topk_cmd(40, 1000, 2), bad;
  expect("topk K 40 of 1000, 2 rows", c, SP_OK, "");
  expect("topk K = N = 1", topk_cmd(1, 1, 1), SP_OK, "");
  expect("topk K = SP_TOPK_MAX", topk_cmd(SP_TOPK_MAX, 5000, 1), SP_OK, "");
  expect("topk K above N", topk_cmd(11, 10, 1), SP_E_SHAPE, "dst.ne[0]");
  expect("topk K above SP_TOPK_MAX", topk_cmd(SP_TOPK_MAX + 1, 5000, 1), SP_E_SHAPE, "dst.ne[0]");
  bad = c, bad.dst.ne[0] = 0;
  expect("topk K 0", bad, SP_E_SHAPE, "dst");
  bad = c, bad.dst.ne[1] = 1;
  expect("topk rows differ", bad, SP_E_SHAPE, "dst.ne[1]");
  bad = c, bad.dst.dtype = SP_DTYPE_F32;
  expect("topk dst f32", bad, SP_E_DTYPE, "dst.dtype");
  bad = c, bad.src[0].dtype = SP_DTYPE_F16;
  expect("topk src[0] f16", bad, SP_E_DTYPE, "src[0].dtype");
  bad = c, bad.src[0].ne[1] = 1, bad.src[0].ne[2] = 2;
  expect("topk src[0] 3-D", bad, SP_E_SHAPE, "2-D");
  bad = c, bad.param[0] = 5;
  expect("topk param[0] set", bad, SP_E_PARAM, "param[0]");
  bad = c, bad.src[1] = c.src[0];
  expect("topk src[1] set", bad, SP_E_PARAM, "src[1]");
  bad = c, bad.dst.offset = c.src[0].offset;
  expect("topk dst over src[0]", bad, SP_E_ALIAS, "");
  bad = c, bad.src[0].offset = (uint32_t)GUEST_BYTES - 100;
  expect("topk src[0] past memory", bad, SP_E_BOUNDS, "src[0]");
  const sp_op_rule *r = sp_op_rule_get(SP_OP_TOPK);
  check(r && !strcmp(r->name, "topk"), "rules: named topk");
}

/* ---- the reference ---- */

static const float *ref_row;

/* larger value first, then smaller index; NaN after every number */
static int ref_order(const void *a, const void *b) {
  uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
  float x = ref_row[i], y = ref_row[j];
  bool xn = isnan(x), yn = isnan(y);
  if (xn != yn) return xn ? 1 : -1;
  if (!xn && x != y) return x > y ? -1 : 1;
  return i < j ? -1 : 1;
}

/* ---- backends ---- */

typedef struct test_backend {
  const char *label;
  sp_backend *be;
  void *binding;
} test_backend;

static test_backend tbs[3];
static int n_backends;

static void open_cpu(const char *label, unsigned threads, const char *simd, const sp_memory_view *view) {
  test_backend *tb = &tbs[n_backends];
  sp_error_t *err = sp_backend_cpu_new_simd(threads, simd, &tb->be);
  if (!err) err = sp_backend_adopt(tb->be, view, &tb->binding);
  if (err) {
    fprintf(stderr, "backend %s: %s\n", label, sp_error_message(err));
    exit(2);
  }
  tb->label = label;
  n_backends++;
}

/* The CUDA backend when its library and a GPU are here; a note otherwise. */
static void open_cuda(const sp_memory_view *view) {
  struct sp_knobs knobs;
  sp_error_t *err = sp_knobs_from_env(&knobs);
  void *lib = err ? NULL : dlopen(knobs.cuda_lib ? knobs.cuda_lib : SP_BACKEND_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  sp_backend_new_fn make = lib ? (sp_backend_new_fn)dlsym(lib, SP_BACKEND_CUDA_SYMBOL) : NULL;
  if (!make) {
    printf("note: no CUDA backend here (%s): CPU only\n", err ? sp_error_message(err) : dlerror());
    sp_error_free(err);
    return;
  }
  test_backend *tb = &tbs[n_backends];
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = false, .knobs = knobs};
  err = make(&opts, &tb->be);
  if (!err) err = sp_backend_check(tb->be);
  if (!err) err = sp_backend_adopt(tb->be, view, &tb->binding);
  if (err) {
    printf("note: CUDA backend unavailable (%s): CPU only\n", sp_error_message(err));
    sp_error_free(err);
    return;
  }
  tb->label = "cuda";
  n_backends++;
}

static void backends_close(void) {
  for (int i = n_backends - 1; i >= 0; i--) {
    sp_backend_release(tbs[i].be, tbs[i].binding);
    sp_backend_free(tbs[i].be);
  }
}

/* ---- results ---- */

typedef enum { LOGITS, FEW_VALUES, ALL_EQUAL, SPECIALS, SIGNED_ZEROS, ASCENDING, DESCENDING, N_PATTERNS } pattern;
static const char *pattern_names[N_PATTERNS] = {"logits",   "few values", "all equal", "NaN and inf",
                                                "signed 0", "ascending",  "descending"};

static float value_of(pattern p, uint32_t i, uint32_t n) {
  switch (p) {
  case LOGITS: return rng_f(-8, 8) + (rng_u32() % 1000 == 0 ? 12.0f : 0.0f);
  case FEW_VALUES: return (float)(rng_u32() % 5) - 2.0f;
  case ALL_EQUAL: return 0.5f;
  case SPECIALS: {
    static const float special[] = {NAN, INFINITY, -INFINITY, -NAN};
    return rng_u32() % 4 == 0 ? special[rng_u32() % 4] : rng_f(-3, 3);
  }
  case SIGNED_ZEROS: return rng_u32() % 2 ? 0.0f : -0.0f;
  case ASCENDING: return (float)i;
  case DESCENDING: return (float)(n - i);
  default: return 0;
  }
}

/* One shape and pattern on every backend: each row's K indices equal the
 * reference's. */
static void test_case(pattern p, uint32_t n, uint32_t k, uint32_t rows, uint32_t row_bytes) {
  size_t saved_top = mem_top;
  sp_cmd c = {.op = SP_OP_TOPK};
  c.src[0] = new_tensor(SP_DTYPE_F32, n, rows, 1, row_bytes);
  c.dst = new_tensor(SP_DTYPE_I32, k, rows, 1, 0);
  uint32_t stride = row_bytes ? row_bytes : n * 4;
  uint32_t *want = malloc(sizeof *want * n * rows);
  for (uint32_t r = 0; r < rows; r++) {
    float *x = (float *)(mem + c.src[0].offset + (size_t)r * stride);
    for (uint32_t i = 0; i < n; i++) x[i] = value_of(p, i, n);
    uint32_t *w = want + (size_t)r * n;
    for (uint32_t i = 0; i < n; i++) w[i] = i;
    ref_row = x;
    qsort(w, n, sizeof *w, ref_order);
  }
  char msg[300] = "";
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof c, .max_cmds = 16};
  sp_status st = sp_validate_cmd(&ctx, &c, 0, msg, sizeof msg);
  for (int b = 0; b < n_backends; b++) {
    memset(mem + c.dst.offset, 0xff, (size_t)k * rows * 4);
    sp_error_t *err = st == SP_OK ? sp_backend_submit(tbs[b].be, tbs[b].binding, &c, 1, false) : NULL;
    if (err == NULL && st == SP_OK) err = sp_backend_wait(tbs[b].be, tbs[b].binding);
    int32_t *got = (int32_t *)(mem + c.dst.offset);
    uint32_t bad = 0, first_bad = 0;
    for (uint32_t r = 0; r < rows && !err && st == SP_OK; r++)
      for (uint32_t i = 0; i < k; i++)
        if ((uint32_t)got[(size_t)r * k + i] != want[(size_t)r * n + i] && !bad++) first_bad = r * k + i;
    check(st == SP_OK && !err && !bad, "%-7s %-11s N %6u K %4u rows %u%s: %u of %u indices differ%s%s%s", tbs[b].label,
          pattern_names[p], n, k, rows, row_bytes ? " strided" : "", bad, k * rows, st ? " invalid: " : "", msg,
          err ? sp_error_message(err) : "");
    if (bad)
      printf("     first at %u: got %d want %u\n", first_bad, got[first_bad],
             want[(size_t)(first_bad / k) * n + first_bad % k]);
    sp_error_free(err);
  }
  free(want);
  mem_top = saved_top;
}

int main(void) {
  mem = mmap(NULL, GUEST_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  test_rules();
  mem_top = GUEST_FIRST;
  sp_memory_view view = {.base = mem, .committed = GUEST_BYTES, .reserved = GUEST_BYTES, .fd = -1};
  open_cpu("generic", 1, "generic", &view);
  open_cpu("best/2t", 2, NULL, &view);
  open_cuda(&view);
  static const uint32_t ns[] = {1, 7, 1000, 49152, 128256};
  static const uint32_t ks[] = {1, 2, 40, 104, 1000, SP_TOPK_MAX};
  for (int p = 0; p < N_PATTERNS; p++)
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
      for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
        if (ks[b] <= ns[a]) test_case((pattern)p, ns[a], ks[b], 1, 0);
  test_case(LOGITS, 3000, 64, 3, 3000 * 4 + 256);
  test_case(FEW_VALUES, 2049, 700, 4, 0);
  test_case(SPECIALS, 5000, SP_TOPK_MAX, 2, 5000 * 4 + 64);
  backends_close();
  munmap(mem, GUEST_BYTES);
  printf("%d checks, %d failed\n", n_checks, n_failures);
  return n_failures ? 1 : 0;
}
