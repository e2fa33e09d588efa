/*
 * test_cuda_ops.c: every op on the CUDA backend against the CPU backend,
 * on fresh random inputs, with a relative-error bound per op and dtype.
 *
 * Both backends adopt one page-aligned region (CUDA registers it mapped),
 * so each case runs the same command on the same bytes: CPU first, its
 * result saved, the region restored, then CUDA. Also checked: an index out
 * of range is reported and writes nothing; a hostile (out-of-bounds)
 * command is rejected by the validator before any backend sees it; the
 * coherence rule (a frozen range rewritten without flush is read stale,
 * after flush it is fresh); two bindings freezing the same identity share
 * one device copy, and a flush gives the flusher its own (copy-on-flush).
 * Exits 77 (skip) without the library or a GPU.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/fp16.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/validate.h"

#define REGION (64u << 20)
#define USED (24u << 20) /* bytes the cases touch (restored between backends) */
#define REGION_FIRST (40u << 20) /* committed when CUDA adopts the region; the rest comes by grow */

static uint8_t *mem;
static uint8_t *snapshot, *cpu_out;
static sp_backend *cpu, *cuda;
static void *cpu_b, *cuda_b;
/* A second CUDA backend made with the knobs SP_CUDA_NO_FUSION and
 * SP_CUDA_NO_FLASH, on a memory of its own (a range is registered with CUDA
 * once per process): cuda_run copies the cases' bytes there and back. */
static sp_backend *plain;
static void *plain_b;
static uint8_t *plain_mem;
static bool use_plain; /* cuda_run runs on `plain` */
static struct sp_knobs knobs; /* the environment's (SP_CUDA_LIB, SP_CUDA_NO_REPACK, ...) */

/* Runs a list on the CUDA backend (or on `plain`, use_plain) and waits. */
static sp_error_t *cuda_run(const sp_cmd *cmds, uint32_t n) {
  if (!use_plain) {
    sp_error_t *err = sp_backend_submit(cuda, cuda_b, cmds, n, false);
    return err ? err : sp_backend_wait(cuda, cuda_b);
  }
  memcpy(plain_mem, mem, USED);
  sp_error_t *err = sp_backend_submit(plain, plain_b, cmds, n, false);
  if (!err) err = sp_backend_wait(plain, plain_b);
  memcpy(mem, plain_mem, USED);
  return err;
}
static int failures, cases;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}
static float next_f(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

/* Fills a tensor's bytes with values valid for its dtype. */
static void fill(uint32_t off, uint32_t dtype, uint64_t elems) {
  uint8_t *p = mem + off;
  const sp_dtype_info *info = sp_dtype_get(dtype);
  uint64_t blocks = elems / info->block_elems;
  for (uint64_t i = 0; i < blocks; i++) {
    uint8_t *q = p + i * info->block_bytes;
    switch (dtype) {
    case SP_DTYPE_F32: { float f = next_f(); memcpy(q, &f, 4); break; }
    case SP_DTYPE_F16: { uint16_t h = sp_f32_to_f16(next_f()); memcpy(q, &h, 2); break; }
    case SP_DTYPE_BF16: { uint16_t h = sp_f32_to_bf16(next_f()); memcpy(q, &h, 2); break; }
    default: {
      uint16_t d = sp_f32_to_f16(0.002f + 0.01f * (next_f() + 1)), m = sp_f32_to_f16(-0.05f * (next_f() + 1));
      memcpy(q, &d, 2);
      uint32_t head = dtype == SP_DTYPE_Q4_1 ? 4 : 2;
      if (dtype == SP_DTYPE_Q4_1) memcpy(q + 2, &m, 2);
      for (uint32_t j = head; j < info->block_bytes; j++) q[j] = (uint8_t)next_u32();
    }
    }
  }
}

static sp_tensor t4(uint32_t off, uint32_t dtype, uint32_t a, uint32_t b, uint32_t c) {
  sp_tensor t = {off, dtype, {a, b, c, 1}, {0, 0, 0}, 0};
  return t;
}

static double rel_err(const float *got, const float *want, uint64_t n) {
  double num = 0, den = 0;
  for (uint64_t i = 0; i < n; i++) {
    double d = (double)got[i] - want[i];
    if (!isfinite(got[i])) return INFINITY;
    num += d * d, den += (double)want[i] * want[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Validates cmd, runs it on both backends and compares dst (as f32 or converted). */
static void run_case(const char *name, sp_cmd cmd, double bound) {
  cases++;
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  if (sp_validate_cmd(&vctx, &cmd, 0, msg, sizeof msg)) {
    printf("FAIL %-28s invalid: %s\n", name, msg);
    failures++;
    return;
  }
  if (!sp_backend_supports(cuda, &cmd)) {
    printf("FAIL %-28s unsupported on cuda\n", name);
    failures++;
    return;
  }
  uint64_t ext = sp_tensor_extent(&cmd.dst);
  memcpy(snapshot, mem, USED);
  sp_error_t *err = sp_backend_submit(cpu, cpu_b, &cmd, 1, false);
  if (!err) err = sp_backend_wait(cpu, cpu_b);
  if (err) {
    printf("FAIL %-28s cpu: %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    return;
  }
  memcpy(cpu_out, mem + cmd.dst.offset, ext);
  memcpy(mem, snapshot, USED);
  err = cuda_run(&cmd, 1);
  if (err) {
    printf("FAIL %-28s cuda: %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    return;
  }
  uint64_t n = ext / (cmd.dst.dtype == SP_DTYPE_F32 ? 4 : 2);
  float *a = malloc(n * 4), *b = malloc(n * 4);
  for (uint64_t i = 0; i < n; i++) {
    if (cmd.dst.dtype == SP_DTYPE_F32) {
      memcpy(&a[i], mem + cmd.dst.offset + i * 4, 4), memcpy(&b[i], cpu_out + i * 4, 4);
    } else {
      uint16_t x, y;
      memcpy(&x, mem + cmd.dst.offset + i * 2, 2), memcpy(&y, cpu_out + i * 2, 2);
      a[i] = cmd.dst.dtype == SP_DTYPE_F16 ? sp_f16_to_f32(x) : sp_bf16_to_f32(x);
      b[i] = cmd.dst.dtype == SP_DTYPE_F16 ? sp_f16_to_f32(y) : sp_bf16_to_f32(y);
    }
  }
  double e = rel_err(a, b, n);
  bool ok = e <= bound;
  printf("%s %-28s rel err %.2e (bound %.0e)\n", ok ? "ok  " : "FAIL", name, e, bound);
  failures += !ok;
  free(a), free(b);
  memcpy(mem, snapshot, USED);
}

/* Guest addresses of the case tensors. */
enum { W = 0x000000, X = 0x800000, D = 0xA00000, I = 0xC00000, K = 0xD00000, V = 0xF00000, F = 0x1100000 };

static void matmul_cases(void) {
  const uint32_t dts[] = {SP_DTYPE_F32, SP_DTYPE_F16, SP_DTYPE_BF16, SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1};
  const uint32_t ms[] = {1, 3, 77};
  for (size_t i = 0; i < 6; i++)
    for (size_t j = 0; j < 3; j++) {
      uint32_t k = 512, n = 200, m = ms[j];
      fill(W, dts[i], (uint64_t)k * n), fill(X, SP_DTYPE_F32, (uint64_t)k * m);
      sp_cmd c = {.op = SP_OP_MATMUL};
      c.dst = t4(D, SP_DTYPE_F32, n, m, 1), c.src[0] = t4(W, dts[i], k, n, 1), c.src[1] = t4(X, SP_DTYPE_F32, k, m, 1);
      char name[64];
      snprintf(name, sizeof name, "matmul %s m=%u", sp_dtype_name(dts[i]), m);
      bool quant = dts[i] >= SP_DTYPE_Q8_0;
      run_case(name, c, m > 8 ? 2e-2 : quant ? 5e-4 : 1e-5);
    }
}

static void row_cases(void) {
  const uint32_t dts[] = {SP_DTYPE_F32, SP_DTYPE_F16, SP_DTYPE_BF16, SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1};
  char name[64];
  for (size_t i = 0; i < 6; i++) {
    fill(W, dts[i], 256 * 100);
    int32_t ids[5] = {3, 99, 0, 42, 3};
    memcpy(mem + I, ids, sizeof ids);
    sp_cmd c = {.op = SP_OP_GET_ROWS};
    c.dst = t4(D, SP_DTYPE_F32, 256, 5, 1), c.src[0] = t4(W, dts[i], 256, 100, 1), c.src[1] = t4(I, SP_DTYPE_I32, 5, 1, 1);
    snprintf(name, sizeof name, "get_rows %s", sp_dtype_name(dts[i]));
    run_case(name, c, 1e-6);
  }
  for (uint32_t dt = SP_DTYPE_F32; dt <= SP_DTYPE_BF16; dt++) {
    fill(X, SP_DTYPE_F32, 192 * 3);
    int32_t ids[3] = {7, 1, 30};
    memcpy(mem + I, ids, sizeof ids);
    sp_cmd c = {.op = SP_OP_SET_ROWS};
    c.dst = t4(D, dt, 192, 31, 1), c.src[0] = t4(X, SP_DTYPE_F32, 192, 3, 1), c.src[1] = t4(I, SP_DTYPE_I32, 3, 1, 1);
    snprintf(name, sizeof name, "set_rows %s", sp_dtype_name(dt));
    run_case(name, c, 0);
  }
}

static void simple_cases(void) {
  sp_cmd c;
  fill(X, SP_DTYPE_F32, 1000 * 7), fill(W, SP_DTYPE_F32, 1000 * 7);
  float eps = 1e-5f, sc = 0.37f;
  c = (sp_cmd){.op = SP_OP_RMSNORM};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[1] = t4(W, SP_DTYPE_F32, 1000, 1, 1);
  memcpy(&c.param[0], &eps, 4);
  run_case("rmsnorm", c, 1e-5);
  c = (sp_cmd){.op = SP_OP_ADD};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[1] = t4(W, SP_DTYPE_F32, 1000, 1, 1);
  run_case("add broadcast", c, 0);
  c.op = SP_OP_MUL, c.src[1] = t4(W, SP_DTYPE_F32, 1000, 7, 1);
  run_case("mul", c, 0);
  c.op = SP_OP_SWIGLU;
  run_case("swiglu", c, 1e-6);
  c = (sp_cmd){.op = SP_OP_SCALE};
  c.dst = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = c.dst;
  memcpy(&c.param[0], &sc, 4);
  run_case("scale in place", c, 0);
  c = (sp_cmd){.op = SP_OP_SOFTMAX};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1);
  memcpy(&c.param[0], &sc, 4);
  run_case("softmax", c, 1e-5);
  const uint32_t pairs[][2] = {{SP_DTYPE_F16, SP_DTYPE_F32}, {SP_DTYPE_BF16, SP_DTYPE_F32}, {SP_DTYPE_F32, SP_DTYPE_F16}};
  for (int i = 0; i < 3; i++) {
    fill(X, pairs[i][1], 1000 * 7);
    c = (sp_cmd){.op = SP_OP_COPY};
    c.dst = t4(D, pairs[i][0], 1000, 7, 1), c.src[0] = t4(X, pairs[i][1], 1000, 7, 1);
    char name[64];
    snprintf(name, sizeof name, "copy %s->%s", sp_dtype_name(pairs[i][1]), sp_dtype_name(pairs[i][0]));
    run_case(name, c, 0);
  }
}

static void rope_attention_cases(void) {
  const uint32_t Dh = 64, Hq = 8, Hkv = 2, T = 5, C = 300;
  int32_t pos[5] = {0, 17, 150, 151, 299};
  memcpy(mem + I, pos, sizeof pos);
  fill(X, SP_DTYPE_F32, Dh * Hq * T);
  for (uint32_t i = 0; i < 32; i++) ((float *)(mem + F))[i] = 1.0f + (float)i / 4;
  float theta = 500000.0f, one = 1.0f;
  for (int mode = 0; mode <= 2; mode += 2)
    for (int ff = 0; ff < 2; ff++) {
      sp_cmd c = {.op = SP_OP_ROPE};
      c.dst = t4(X, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = c.dst, c.src[1] = t4(I, SP_DTYPE_I32, T, 1, 1);
      if (ff) c.src[2] = t4(F, SP_DTYPE_F32, 32, 1, 1);
      c.param[0] = 64, c.param[2] = (uint32_t)mode;
      memcpy(&c.param[1], &theta, 4), memcpy(&c.param[3], &one, 4);
      char name[64];
      snprintf(name, sizeof name, "rope mode %d%s", mode, ff ? " factors" : "");
      run_case(name, c, 1e-5);
    }
  for (uint32_t dt = SP_DTYPE_F32; dt <= SP_DTYPE_F16; dt++) {
    fill(K, dt, Dh * Hkv * C), fill(V, dt, Dh * Hkv * C);
    sp_cmd c = {.op = SP_OP_ATTENTION};
    float scale = 0.125f;
    c.dst = t4(D, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = t4(X, SP_DTYPE_F32, Dh, Hq, T);
    c.src[1] = t4(K, dt, Dh, Hkv, C), c.src[2] = t4(V, dt, Dh, Hkv, C), c.src[3] = t4(I, SP_DTYPE_I32, T, 1, 1);
    memcpy(&c.param[0], &scale, 4);
    run_case(dt == SP_DTYPE_F16 ? "attention f16 cache" : "attention f32 cache", c, dt == SP_DTYPE_F16 ? 3e-3 : 1e-5);
  }
}

static void prefill_attention_shape(uint32_t Hq, uint32_t Hkv, uint32_t T) {
  const uint32_t C = 300;
  int32_t pos[70];
  for (uint32_t t = 0; t < T; t++) pos[t] = 100 + (int32_t)t;
  pos[3] = 0, pos[40] = 299, pos[41] = 7; /* a cache row at each end, and one early */
  memcpy(mem + I, pos, sizeof pos);
  for (uint32_t Dh = 64; Dh <= 128; Dh += 64) {
    fill(X, SP_DTYPE_F32, Dh * Hq * T);
    fill(K, SP_DTYPE_F16, Dh * Hkv * C), fill(V, SP_DTYPE_F16, Dh * Hkv * C);
    sp_cmd c = {.op = SP_OP_ATTENTION};
    float scale = 1.0f / sqrtf((float)Dh);
    c.dst = t4(D, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = t4(X, SP_DTYPE_F32, Dh, Hq, T);
    c.src[1] = t4(K, SP_DTYPE_F16, Dh, Hkv, C), c.src[2] = t4(V, SP_DTYPE_F16, Dh, Hkv, C);
    c.src[3] = t4(I, SP_DTYPE_I32, T, 1, 1);
    memcpy(&c.param[0], &scale, 4);
    char name[80];
    snprintf(name, sizeof name, "attention f16 cache H=%u T=%u D=%u", Hq, T, Dh);
    run_case(name, c, 3e-3); /* tensor cores */
    snprintf(name, sizeof name, "attention f16 cache H=%u T=%u D=%u, no tensor cores", Hq, T, Dh);
    use_plain = true; /* SP_CUDA_NO_FLASH: the one-block-per-(head, token) kernel */
    run_case(name, c, 3e-3);
    use_plain = false;
  }
}

/* A prompt's attention (16 or more query rows: tensor cores on CUDA), head
 * sizes 64 and 128, grouped heads, positions at an offset and out of order;
 * a narrow grid (8 heads, 2 blocks of queries each) and a wide one (136
 * heads, one short block each); both prompt kernels on each. */
static void prefill_attention_cases(void) {
  prefill_attention_shape(8, 2, 70);
  prefill_attention_shape(136, 8, 16);
}

/* argmax of a vocabulary-sized row and of short ones, with ties and NaN:
 * the same indices as the CPU backend, exactly. */
static void argmax_cases(void) {
  const uint32_t shapes[][2] = {{128256, 1}, {49152, 3}, {1001, 2}};
  for (int s = 0; s < 3; s++) {
    uint32_t n = shapes[s][0], m = shapes[s][1];
    fill(X, SP_DTYPE_F32, (uint64_t)n * m);
    float *x = (float *)(mem + X);
    x[n / 3] = x[n / 2] = 40; /* row 0: a tie, the first wins */
    if (m > 1) x[n] = NAN, x[n + 7] = 41; /* row 1: NaN first, never chosen */
    sp_cmd c = {.op = SP_OP_ARGMAX};
    c.dst = t4(D, SP_DTYPE_I32, m, 1, 1), c.src[0] = t4(X, SP_DTYPE_F32, n, m, 1);
    char msg[256];
    sp_validate_ctx vctx = {REGION, 0, 0, 1024};
    bool ran = sp_validate_cmd(&vctx, &c, 0, msg, sizeof msg) == SP_OK; /* normalizes the strides */
    if (!ran) printf("     invalid: %s\n", msg);
    int32_t got[2][3] = {{-1, -1, -1}, {-2, -2, -2}};
    for (int b = 0; b < 2 && ran; b++) {
      sp_backend *be = b ? cuda : cpu;
      sp_error_t *err = sp_backend_submit(be, b ? cuda_b : cpu_b, &c, 1, false);
      if (!err) err = sp_backend_wait(be, b ? cuda_b : cpu_b);
      if (err) printf("     %s\n", sp_error_message(err)), sp_error_free(err), ran = false;
      memcpy(got[b], mem + D, m * 4);
    }
    bool ok = ran && !memcmp(got[0], got[1], m * 4) && got[1][0] == (int32_t)(n / 3) && (m < 2 || got[1][1] == 7);
    cases++, failures += !ok;
    printf("%s argmax [%u, %u]: cuda %d %d, cpu %d %d (rows 0, 1)\n", ok ? "ok  " : "FAIL", n, m, got[1][0],
           m > 1 ? got[1][1] : -1, got[0][0], m > 1 ? got[0][1] : -1);
  }
}

/* ---- a transformer layer as one list: the fused launches (fuse.h) ---- */

/* Tensors of the layer case, laid out from L0 (inside USED). */
enum { L0 = 0x1200000 };
typedef struct layer_case {
  uint32_t E, F, Hq, Hkv, Dh, T, C, wdt;
  uint32_t x, xb, q, k, v, att, proj, gate, up, kc, vc, pos, nw, fnw, wq, wk, wv, wo, wg, wu, wd, next;
} layer_case;

static uint32_t take(layer_case *L, uint64_t bytes) {
  uint32_t at = L->next;
  L->next += (uint32_t)((bytes + 255) / 256 * 256);
  return at;
}

static uint64_t weight_bytes(uint32_t dt, uint32_t k, uint32_t n) {
  return sp_dtype_row_bytes(sp_dtype_get(dt), k) * n;
}

static void layer_layout(layer_case *L) {
  uint32_t E = L->E, Fd = L->F, T = L->T, kv = L->Hkv * L->Dh;
  L->next = L0;
  L->x = take(L, E * T * 4), L->xb = take(L, E * T * 4), L->q = take(L, E * T * 4), L->k = take(L, kv * T * 4);
  L->v = take(L, kv * T * 4), L->att = take(L, E * T * 4), L->proj = take(L, E * T * 4);
  L->gate = take(L, Fd * T * 4), L->up = take(L, Fd * T * 4), L->kc = take(L, kv * L->C * 2), L->vc = take(L, kv * L->C * 2);
  L->pos = take(L, T * 4), L->nw = take(L, E * 4), L->fnw = take(L, E * 4);
  L->wq = take(L, weight_bytes(L->wdt, E, E)), L->wk = take(L, weight_bytes(L->wdt, E, kv));
  L->wv = take(L, weight_bytes(L->wdt, E, kv)), L->wo = take(L, weight_bytes(L->wdt, E, E));
  L->wg = take(L, weight_bytes(L->wdt, E, Fd)), L->wu = take(L, weight_bytes(L->wdt, E, Fd));
  L->wd = take(L, weight_bytes(L->wdt, Fd, E));
}

static sp_cmd op2(uint32_t op, sp_tensor d, sp_tensor a, sp_tensor b) {
  sp_cmd c = {.op = op};
  c.dst = d, c.src[0] = a, c.src[1] = b;
  return c;
}

/* The guest's layer (guest/llm/model.c), with a residual add in front. */
static uint32_t layer_list(const layer_case *L, sp_cmd *c) {
  uint32_t E = L->E, Fd = L->F, T = L->T, kv = L->Hkv * L->Dh, n = 0, wdt = L->wdt;
  sp_tensor x = t4(L->x, SP_DTYPE_F32, E, T, 1), xb = t4(L->xb, SP_DTYPE_F32, E, T, 1);
  sp_tensor proj = t4(L->proj, SP_DTYPE_F32, E, T, 1), pos = t4(L->pos, SP_DTYPE_I32, T, 1, 1);
  sp_tensor gate = t4(L->gate, SP_DTYPE_F32, Fd, T, 1), up = t4(L->up, SP_DTYPE_F32, Fd, T, 1);
  sp_tensor kc = t4(L->kc, SP_DTYPE_F16, kv, L->C, 1), vc = t4(L->vc, SP_DTYPE_F16, kv, L->C, 1);
  float eps = 1e-5f, theta = 10000.0f, one = 1.0f, scale = 0.125f;
  c[n++] = op2(SP_OP_ADD, x, x, proj);
  c[n] = op2(SP_OP_RMSNORM, xb, x, t4(L->nw, SP_DTYPE_F32, E, 1, 1)), memcpy(&c[n++].param[0], &eps, 4);
  c[n++] = op2(SP_OP_MATMUL, t4(L->q, SP_DTYPE_F32, E, T, 1), t4(L->wq, wdt, E, E, 1), xb);
  c[n++] = op2(SP_OP_MATMUL, t4(L->k, SP_DTYPE_F32, kv, T, 1), t4(L->wk, wdt, E, kv, 1), xb);
  c[n++] = op2(SP_OP_MATMUL, t4(L->v, SP_DTYPE_F32, kv, T, 1), t4(L->wv, wdt, E, kv, 1), xb);
  sp_tensor q3 = t4(L->q, SP_DTYPE_F32, L->Dh, L->Hq, T), k3 = t4(L->k, SP_DTYPE_F32, L->Dh, L->Hkv, T);
  for (int r = 0; r < 2; r++) {
    c[n] = op2(SP_OP_ROPE, r ? k3 : q3, r ? k3 : q3, pos);
    c[n].param[0] = L->Dh, memcpy(&c[n].param[1], &theta, 4), memcpy(&c[n].param[3], &one, 4), n++;
  }
  c[n++] = op2(SP_OP_SET_ROWS, kc, t4(L->k, SP_DTYPE_F32, kv, T, 1), pos);
  c[n++] = op2(SP_OP_SET_ROWS, vc, t4(L->v, SP_DTYPE_F32, kv, T, 1), pos);
  c[n] = (sp_cmd){.op = SP_OP_ATTENTION};
  c[n].dst = t4(L->att, SP_DTYPE_F32, L->Dh, L->Hq, T), c[n].src[0] = q3;
  c[n].src[1] = t4(L->kc, SP_DTYPE_F16, L->Dh, L->Hkv, L->C), c[n].src[2] = t4(L->vc, SP_DTYPE_F16, L->Dh, L->Hkv, L->C);
  c[n].src[3] = pos, memcpy(&c[n++].param[0], &scale, 4);
  c[n++] = op2(SP_OP_MATMUL, proj, t4(L->wo, wdt, E, E, 1), t4(L->att, SP_DTYPE_F32, E, T, 1));
  c[n++] = op2(SP_OP_ADD, x, x, proj);
  c[n] = op2(SP_OP_RMSNORM, xb, x, t4(L->fnw, SP_DTYPE_F32, E, 1, 1)), memcpy(&c[n++].param[0], &eps, 4);
  c[n++] = op2(SP_OP_MATMUL, gate, t4(L->wg, wdt, E, Fd, 1), xb);
  c[n++] = op2(SP_OP_MATMUL, up, t4(L->wu, wdt, E, Fd, 1), xb);
  c[n++] = op2(SP_OP_SWIGLU, gate, gate, up);
  c[n++] = op2(SP_OP_MATMUL, proj, t4(L->wd, wdt, Fd, E, 1), gate);
  c[n++] = op2(SP_OP_ADD, x, x, proj);
  return n;
}

/* Runs the list on the CUDA backend, fused or not (`plain`: SP_CUDA_NO_FUSION). */
static sp_error_t *run_cuda_list(const sp_cmd *cmds, uint32_t n, bool fused) {
  use_plain = !fused;
  sp_error_t *err = cuda_run(cmds, n);
  use_plain = false;
  return err;
}

/* Runs the layer list on both backends (one submit each), and on CUDA also
 * with fusion off, and compares every activation it writes: fused against
 * unfused CUDA tightly (the same arithmetic; only rmsnorm's summation order
 * differs), CUDA against the CPU within numeric tolerance. */
static void layer_case_run(uint32_t wdt, uint32_t T) {
  layer_case L = {.E = 256, .F = 512, .Hq = 4, .Hkv = 2, .Dh = 64, .T = T, .C = 64, .wdt = wdt};
  layer_layout(&L);
  uint32_t kv = L.Hkv * L.Dh;
  fill(L.x, SP_DTYPE_F32, L.E * T), fill(L.proj, SP_DTYPE_F32, L.E * T), fill(L.nw, SP_DTYPE_F32, L.E);
  fill(L.fnw, SP_DTYPE_F32, L.E), fill(L.kc, SP_DTYPE_F16, kv * L.C), fill(L.vc, SP_DTYPE_F16, kv * L.C);
  const uint32_t ws[][3] = {{L.wq, L.E, L.E}, {L.wk, L.E, kv}, {L.wv, L.E, kv}, {L.wo, L.E, L.E},
                            {L.wg, L.E, L.F}, {L.wu, L.E, L.F}, {L.wd, L.F, L.E}};
  for (int i = 0; i < 7; i++) fill(ws[i][0], wdt, (uint64_t)ws[i][1] * ws[i][2]);
  for (uint32_t t = 0; t < T; t++) ((int32_t *)(mem + L.pos))[t] = (int32_t)(20 + 3 * t);
  sp_cmd cmds[32];
  uint32_t n = layer_list(&L, cmds);
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  char msg[256], name[64];
  snprintf(name, sizeof name, "layer list %s T=%u", sp_dtype_name(wdt), T);
  cases++;
  for (uint32_t i = 0; i < n; i++)
    if (sp_validate_cmd(&vctx, &cmds[i], i, msg, sizeof msg)) {
      printf("FAIL %-28s invalid cmd[%u]: %s\n", name, i, msg), failures++;
      return;
    }
  memcpy(snapshot, mem, USED);
  uint8_t *unfused = malloc(USED);
  sp_error_t *err = unfused ? sp_backend_submit(cpu, cpu_b, cmds, n, false) : sp_error_new("out of memory");
  if (!err) err = sp_backend_wait(cpu, cpu_b);
  memcpy(cpu_out, mem, USED);
  memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, n, false);
  if (unfused) memcpy(unfused, mem, USED);
  memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, n, true);
  if (err) {
    free(unfused);
    printf("FAIL %-28s %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    memcpy(mem, snapshot, USED);
    return;
  }
  const struct { const char *what; uint32_t at, n; } outs[] = {
      {"x", L.x, L.E * T}, {"xb", L.xb, L.E * T}, {"q", L.q, L.E * T}, {"k", L.k, kv * T}, {"v", L.v, kv * T},
      {"att", L.att, L.E * T}, {"gate", L.gate, L.F * T}, {"up", L.up, L.F * T}};
  double worst = 0, worst_fused = 0;
  const char *worst_at = "", *worst_fused_at = "";
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    double e = rel_err((const float *)(mem + outs[i].at), (const float *)(cpu_out + outs[i].at), outs[i].n);
    double f = rel_err((const float *)(mem + outs[i].at), (const float *)(unfused + outs[i].at), outs[i].n);
    if (e > worst) worst = e, worst_at = outs[i].what;
    if (f > worst_fused) worst_fused = f, worst_fused_at = outs[i].what;
  }
  bool ok = worst <= 1e-2 && worst_fused <= 1e-4;
  printf("%s %-28s vs cpu %.2e in %s (bound 1e-02), fused vs unfused %.2e in %s (bound 1e-04)\n",
         ok ? "ok  " : "FAIL", name, worst, worst_at, worst_fused, worst_fused_at);
  failures += !ok;
  free(unfused);
  memcpy(mem, snapshot, USED);
}

static void layer_cases(void) {
  const uint32_t dts[] = {SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1, SP_DTYPE_F16};
  for (int i = 0; i < 4; i++) {
    layer_case_run(dts[i], 1);
    layer_case_run(dts[i], 3);
  }
}

/* A bad index stops the op before it writes; a hostile command never
 * reaches a backend; a frozen range is read stale until flushed. */
static void failure_cases(void) {
  cases += 3;
  int32_t ids[3] = {1, 100, 2};
  memcpy(mem + I, ids, sizeof ids);
  memset(mem + D, 0x5a, 4096);
  sp_cmd c = {.op = SP_OP_GET_ROWS};
  c.dst = t4(D, SP_DTYPE_F32, 256, 3, 1), c.src[0] = t4(W, SP_DTYPE_F32, 256, 100, 1), c.src[1] = t4(I, SP_DTYPE_I32, 3, 1, 1);
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  sp_validate_cmd(&vctx, &c, 0, msg, sizeof msg);
  sp_error_t *err = sp_backend_submit(cuda, cuda_b, &c, 1, false);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  bool untouched = mem[D] == 0x5a && mem[D + 4095] == 0x5a;
  printf("%s bad index -> %s%s\n", err && untouched ? "ok  " : "FAIL", err ? sp_error_message(err) : "no error",
         untouched ? "" : " (dst was written)");
  failures += !(err && untouched);
  sp_error_free(err);

  sp_cmd h = c;
  h.src[0].offset = REGION - 1024; /* extent runs past committed memory */
  sp_status st = sp_validate_cmd(&vctx, &h, 0, msg, sizeof msg);
  printf("%s hostile list rejected before launch: %s\n", st == SP_E_BOUNDS ? "ok  " : "FAIL", msg);
  failures += st != SP_E_BOUNDS;

  /* coherence: freeze W, rewrite it, matvec reads the stale copy; flush fixes it */
  uint32_t k = 256, n = 64;
  fill(W, SP_DTYPE_F32, k * n), fill(X, SP_DTYPE_F32, k);
  sp_cmd m = {.op = SP_OP_MATMUL};
  m.dst = t4(D, SP_DTYPE_F32, n, 1, 1), m.src[0] = t4(W, SP_DTYPE_F32, k, n, 1), m.src[1] = t4(X, SP_DTYPE_F32, k, 1, 1);
  sp_validate_cmd(&vctx, &m, 0, msg, sizeof msg);
  bool resident = sp_backend_caps_of(cuda).residency;
  err = sp_backend_freeze(cuda, cuda_b, W, k * n * 4, 0);
  float before[64], stale[64], fresh[64];
  if (!err) err = sp_backend_submit(cuda, cuda_b, &m, 1, false);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  memcpy(before, mem + D, sizeof before);
  for (uint32_t i = 0; i < k * n; i++) ((float *)(mem + W))[i] *= 2.0f;
  if (!err) err = sp_backend_submit(cuda, cuda_b, &m, 1, true);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  memcpy(stale, mem + D, sizeof stale);
  if (!err) err = sp_backend_flush(cuda, cuda_b, W, k * n * 4);
  if (!err) err = sp_backend_submit(cuda, cuda_b, &m, 1, true);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  memcpy(fresh, mem + D, sizeof fresh);
  bool ok = !err && (!resident || !memcmp(before, stale, sizeof stale)) && fabsf(fresh[0] - 2 * before[0]) <= 1e-4f * fabsf(fresh[0]) + 1e-6f;
  sp_residency_stats rs = sp_backend_residency(cuda);
  printf("%s coherence: resident=%d stale-before-flush=%d fresh-after-flush=%d (resident %llu bytes, %.2f ms)\n",
         ok ? "ok  " : "FAIL", resident, !memcmp(before, stale, sizeof stale), fabsf(fresh[0] - 2 * before[0]) <= 1e-4f * fabsf(fresh[0]) + 1e-6f,
         (unsigned long long)rs.bytes, rs.ms);
  if (err) printf("     %s\n", sp_error_message(err)), sp_error_free(err);
  failures += !ok;
}

/* y[n] = W[n][k] . x[k] in double, for the device-local checks. */
static void matvec_ref(float *y, const float *w, const float *x, uint32_t k, uint32_t n) {
  for (uint32_t j = 0; j < n; j++) {
    double acc = 0;
    for (uint32_t i = 0; i < k; i++) acc += (double)w[(size_t)j * k + i] * x[i];
    y[j] = (float)acc;
  }
}

static bool close_to(const float *got, const float *want, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (!(fabsf(got[i] - want[i]) <= 1e-4f * fabsf(want[i]) + 1e-4f)) return false;
  return true;
}

/* Device-local coherence: commands read and write the mirror; guest memory
 * is stale until sync; guest stores are seen only after flush; an index
 * tensor inside the range is checked and read on the mirror. */
static void device_local_cases(void) {
  cases += 1;
  /* the range straddles the two registrations (copies are split there) */
  const uint32_t L = REGION_FIRST - (512u << 10), LEN = 1u << 20, WL = 48u << 20, k = 256, n = 64;
  const uint32_t XL = L, Y = L + 4096, Z = L + 8192, IDX = L + 12288, R = L + 16384;
  fill(WL, SP_DTYPE_F32, k * n), fill(XL, SP_DTYPE_F32, k);
  int32_t ids[2] = {3, 60};
  memcpy(mem + IDX, ids, sizeof ids);
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  sp_cmd m = {.op = SP_OP_MATMUL};
  m.dst = t4(Y, SP_DTYPE_F32, n, 1, 1), m.src[0] = t4(WL, SP_DTYPE_F32, k, n, 1), m.src[1] = t4(XL, SP_DTYPE_F32, k, 1, 1);
  sp_cmd sc = {.op = SP_OP_SCALE};
  sc.dst = t4(Z, SP_DTYPE_F32, n, 1, 1), sc.src[0] = t4(Y, SP_DTYPE_F32, n, 1, 1), sc.param[0] = 0x40400000u; /* 3.0f */
  sp_cmd g = {.op = SP_OP_GET_ROWS};
  g.dst = t4(R, SP_DTYPE_F32, k, 2, 1), g.src[0] = t4(WL, SP_DTYPE_F32, k, n, 1), g.src[1] = t4(IDX, SP_DTYPE_I32, 2, 1, 1);
  sp_cmd list[3] = {m, sc, g};
  for (int i = 0; i < 3; i++) sp_validate_cmd(&vctx, &list[i], (uint32_t)i, msg, sizeof msg);
  float want[64], want2[64], got[64], z[64], rows[512];
  matvec_ref(want, (const float *)(mem + WL), (const float *)(mem + XL), k, n);
  bool local = sp_backend_caps_of(cuda).device_local;
  sp_error_t *err = sp_backend_device_local(cuda, cuda_b, L, LEN);
  memset(mem + Y, 0x5a, 4096), memset(mem + Z, 0x5a, 4096); /* after the upload: guest memory only */
  if (!err) err = sp_backend_submit(cuda, cuda_b, list, 3, false);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  bool stale = mem[Y] == 0x5a && mem[Z + 255] == 0x5a; /* results live on the device until sync */
  if (!err) err = sp_backend_sync(cuda, cuda_b, Y, 3 * 4096 + 4096 + 2 * k * 4);
  memcpy(got, mem + Y, sizeof got), memcpy(z, mem + Z, sizeof z), memcpy(rows, mem + R, sizeof rows);
  bool synced = close_to(got, want, n) && !memcmp(rows, mem + WL + 3 * k * 4, k * 4) &&
                !memcmp(rows + k, mem + WL + 60 * k * 4, k * 4);
  for (uint32_t i = 0; i < n; i++) synced = synced && fabsf(z[i] - 3 * got[i]) <= 1e-5f * fabsf(z[i]) + 1e-6f;
  /* guest stores to x: unseen until flushed */
  for (uint32_t i = 0; i < k; i++) ((float *)(mem + XL))[i] *= 2.0f;
  matvec_ref(want2, (const float *)(mem + WL), (const float *)(mem + XL), k, n);
  if (!err) err = sp_backend_submit(cuda, cuda_b, list, 3, true);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  if (!err) err = sp_backend_sync(cuda, cuda_b, Y, n * 4);
  bool unflushed_stale = close_to((const float *)(mem + Y), want, n);
  if (!err) err = sp_backend_flush(cuda, cuda_b, XL, k * 4);
  if (!err) err = sp_backend_submit(cuda, cuda_b, list, 3, true);
  if (!err) err = sp_backend_wait(cuda, cuda_b);
  if (!err) err = sp_backend_sync(cuda, cuda_b, Y, n * 4);
  bool flushed_fresh = close_to((const float *)(mem + Y), want2, n);
  memset(mem + L + LEN - 4096, 0x5a, 4096); /* a whole-range sync crosses the boundary back */
  if (!err) err = sp_backend_sync(cuda, cuda_b, L, LEN);
  flushed_fresh = flushed_fresh && mem[L + LEN - 1] == 0 && close_to((const float *)(mem + Y), want2, n);
  bool ok = !err && synced && flushed_fresh && (!local || (stale && unflushed_stale));
  sp_residency_stats rs = sp_backend_residency(cuda);
  printf("%s device-local: mirror=%d stale-until-sync=%d synced-right=%d unflushed-stale=%d flushed-fresh=%d "
         "(mirrors %llu bytes, %llu transfers, %.2f ms)\n",
         ok ? "ok  " : "FAIL", local, stale, synced, unflushed_stale, flushed_fresh, (unsigned long long)rs.local_bytes,
         (unsigned long long)rs.transfers, rs.transfer_ms);
  if (err) printf("     %s\n", sp_error_message(err)), sp_error_free(err);
  failures += !ok;
}

/* Runs y = W x on one binding's memory (validated there) and returns y[0..n). */
static sp_error_t *matvec_on(void *binding, uint8_t *base, uint64_t size, uint32_t w, uint32_t x, uint32_t y,
                             uint32_t k, uint32_t n, float *out) {
  char msg[256];
  sp_validate_ctx vctx = {size, 0, 0, 1024};
  sp_cmd m = {.op = SP_OP_MATMUL};
  m.dst = t4(y, SP_DTYPE_F32, n, 1, 1), m.src[0] = t4(w, SP_DTYPE_F32, k, n, 1), m.src[1] = t4(x, SP_DTYPE_F32, k, 1, 1);
  sp_validate_cmd(&vctx, &m, 0, msg, sizeof msg);
  sp_error_t *err = sp_backend_submit(cuda, binding, &m, 1, false);
  if (!err) err = sp_backend_wait(cuda, binding);
  memcpy(out, base + y, n * 4);
  return err;
}

/* Two actors (bindings) freeze the same weights under one identity: one
 * device copy, counted as shared. One of them rewrites and flushes its
 * weights: it gets a copy of its own; the other still reads the shared one.
 * A restore's re-declaration of the same identity copies nothing. */
static void shared_copy_cases(void) {
  cases += 1;
  const uint32_t k = 256, n = 64, len = k * n * 4, SW = 56u << 20, SX = 60u << 20, SY = 61u << 20;
  const uint64_t ID = 0x5eed5eed5eed5eedull, SECOND = 8u << 20;
  uint8_t *mem2 = mmap(NULL, SECOND, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const uint32_t W2 = 0, X2 = 4u << 20, Y2 = 5u << 20;
  fill(SW, SP_DTYPE_F32, k * n), fill(SX, SP_DTYPE_F32, k);
  memcpy(mem2 + W2, mem + SW, len), memcpy(mem2 + X2, mem + SX, k * 4);
  void *b2 = NULL;
  sp_memory_view v2 = {mem2, SECOND, SECOND, false, -1, 0};
  sp_residency_stats r0 = sp_backend_residency(cuda);
  sp_error_t *err = sp_backend_adopt(cuda, &v2, &b2);
  if (!err) err = sp_backend_freeze(cuda, cuda_b, SW, len, ID);
  if (!err) err = sp_backend_freeze(cuda, b2, W2, len, ID);
  sp_residency_stats r1 = sp_backend_residency(cuda);
  bool resident = sp_backend_caps_of(cuda).residency;
  bool one_copy = r1.bytes - r0.bytes == len && r1.shared_bytes - r0.shared_bytes == len &&
                  r1.shared_hits - r0.shared_hits == 1 && r1.copies - r0.copies == 1;
  float want[64], a_before[64], b_before[64], a_after[64], b_after[64];
  matvec_ref(want, (const float *)(mem + SW), (const float *)(mem + SX), k, n);
  if (!err) err = matvec_on(cuda_b, mem, REGION, SW, SX, SY, k, n, a_before);
  if (!err) err = matvec_on(b2, mem2, SECOND, W2, X2, Y2, k, n, b_before);
  bool same = close_to(a_before, want, n) && close_to(b_before, want, n);
  /* a scribbles on its weights without flush (reads stay stale), b doubles
   * its own and flushes: b must see 2x, a the untouched shared copy */
  for (uint32_t i = 0; i < k * n; i++) ((float *)(mem + SW))[i] *= 3.0f, ((float *)(mem2 + W2))[i] *= 2.0f;
  if (!err) err = sp_backend_flush(cuda, b2, W2, len);
  sp_residency_stats r2 = sp_backend_residency(cuda);
  if (!err) err = matvec_on(cuda_b, mem, REGION, SW, SX, SY, k, n, a_after);
  if (!err) err = matvec_on(b2, mem2, SECOND, W2, X2, Y2, k, n, b_after);
  float want2[64];
  for (uint32_t j = 0; j < n; j++) want2[j] = 2 * want[j];
  bool cow = close_to(a_after, want, n) && close_to(b_after, want2, n) && r2.bytes - r0.bytes == 2ull * len &&
             r2.shared_bytes == r0.shared_bytes;
  /* a restore re-declaring a's range under the same identity copies nothing */
  for (uint32_t i = 0; i < k * n; i++) ((float *)(mem + SW))[i] /= 3.0f;
  if (!err) err = sp_backend_freeze(cuda, cuda_b, SW, len, ID);
  sp_residency_stats r3 = sp_backend_residency(cuda);
  bool kept = r3.copies == r2.copies && r3.shared_hits == r2.shared_hits + 1;
  sp_backend_release(cuda, b2);
  sp_residency_stats r4 = sp_backend_residency(cuda);
  bool freed = r4.bytes - r0.bytes == len;
  bool ok = !err && same && (!resident || (one_copy && cow && kept && freed));
  printf("%s shared copies: resident=%d one-copy=%d same-results=%d copy-on-flush=%d restore-kept=%d release-frees=%d "
         "(held %llu bytes, %llu shared, %llu hits)\n", ok ? "ok  " : "FAIL", resident, one_copy, same, cow, kept, freed,
         (unsigned long long)r1.bytes, (unsigned long long)r1.shared_bytes, (unsigned long long)r1.shared_hits);
  if (err) printf("     %s\n", sp_error_message(err)), sp_error_free(err);
  failures += !ok;
  munmap(mem2, SECOND);
}

/* Quantized weights in a frozen range are repacked for the GPU (repack.h):
 * the products match the CPU's, the repacked bytes are counted, and after
 * the guest rewrites the weights and flushes, the new ones are used. */
static void repack_cases(void) {
  enum { R0 = 0x1500000, RSTEP = 0x40000 };
  const uint32_t dts[] = {SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1};
  uint32_t k = 2048, n = 40;
  char name[64];
  for (int i = 0; i < 3; i++) {
    uint32_t w = R0 + (uint32_t)i * RSTEP, bytes = (uint32_t)weight_bytes(dts[i], k, n);
    fill(w, dts[i], (uint64_t)k * n), fill(X, SP_DTYPE_F32, (uint64_t)k * 3);
    sp_error_t *err = sp_backend_freeze(cuda, cuda_b, w, bytes, 0);
    if (err) {
      printf("FAIL repack %s: freeze: %s\n", sp_dtype_name(dts[i]), sp_error_message(err));
      sp_error_free(err), failures++, cases++;
      continue;
    }
    for (uint32_t m = 1; m <= 3; m += 2) {
      sp_cmd c = {.op = SP_OP_MATMUL};
      c.dst = t4(D, SP_DTYPE_F32, n, m, 1), c.src[0] = t4(w, dts[i], k, n, 1), c.src[1] = t4(X, SP_DTYPE_F32, k, m, 1);
      snprintf(name, sizeof name, "repacked matmul %s m=%u", sp_dtype_name(dts[i]), m);
      run_case(name, c, 5e-4);
    }
    fill(w, dts[i], (uint64_t)k * n); /* the guest rewrites its weights... */
    err = sp_backend_flush(cuda, cuda_b, w, bytes); /* ...and says so */
    if (err) printf("FAIL flush: %s\n", sp_error_message(err)), sp_error_free(err), failures++;
    sp_cmd c = {.op = SP_OP_MATMUL};
    c.dst = t4(D, SP_DTYPE_F32, n, 1, 1), c.src[0] = t4(w, dts[i], k, n, 1), c.src[1] = t4(X, SP_DTYPE_F32, k, 1, 1);
    snprintf(name, sizeof name, "repacked %s after flush", sp_dtype_name(dts[i]));
    run_case(name, c, 5e-4);
  }
  sp_residency_stats rs = sp_backend_residency(cuda);
  bool counted = rs.repacked_bytes > 0 || knobs.cuda_no_repack;
  cases++;
  printf("%s repacked weights counted: %llu bytes\n", counted ? "ok  " : "FAIL", (unsigned long long)rs.repacked_bytes);
  failures += !counted;
}

int main(void) {
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("FAIL knobs: %s\n", sp_error_message(err)), 1;
  const char *path = knobs.cuda_lib;
  void *lib = dlopen(path ? path : SP_BACKEND_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    printf("skip: %s\n", dlerror());
    return 77;
  }
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, SP_BACKEND_CUDA_SYMBOL);
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true, .knobs = knobs};
  err = make ? make(&opts, &cuda) : sp_error_new("no %s", SP_BACKEND_CUDA_SYMBOL);
  if (!err && (err = sp_backend_check(cuda))) { /* its tables, as sp_backend_load registers them */
    printf("FAIL registration: %s\n", sp_error_message(err));
    return 1;
  }
  if (err) {
    printf("skip: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 77;
  }
  mem = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  snapshot = malloc(USED), cpu_out = malloc(USED);
  if (mem == MAP_FAILED || !snapshot || !cpu_out) return 1;
  sp_memory_view view = {mem, REGION, REGION, false, -1, 0};
  err = sp_backend_cpu_new(0, &cpu);
  if (!err) err = sp_backend_adopt(cpu, &view, &cpu_b);
  /* CUDA sees the region grow once: two registrations, as after memory.grow */
  sp_memory_view first = {mem, REGION_FIRST, REGION, false, -1, 0};
  if (!err) err = sp_backend_adopt(cuda, &first, &cuda_b);
  if (!err) err = sp_backend_grow(cuda, cuda_b, &view);
  sp_backend_options plain_opts = opts;
  plain_opts.knobs.cuda_no_fusion = plain_opts.knobs.cuda_no_flash = true;
  plain_mem = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  sp_memory_view plain_view = {plain_mem, REGION, REGION, false, -1, 0};
  if (!err && plain_mem == MAP_FAILED) err = sp_error_new("mmap: out of memory");
  if (!err) err = make(&plain_opts, &plain);
  if (!err) err = sp_backend_check(plain);
  if (!err) err = sp_backend_adopt(plain, &plain_view, &plain_b);
  if (err) {
    printf("FAIL setup: %s\n", sp_error_message(err));
    return 1;
  }
  printf("pointer_identity: %s\n", sp_backend_device_base(cuda, cuda_b, &view) == (void *)mem ? "true" : "false");
  matmul_cases();
  row_cases();
  simple_cases();
  rope_attention_cases();
  prefill_attention_cases();
  layer_cases();
  argmax_cases();
  failure_cases();
  device_local_cases();
  shared_copy_cases();
  repack_cases();
  printf("%d of %d cases failed\n", failures, cases);
  sp_backend_release(plain, plain_b);
  sp_backend_release(cuda, cuda_b);
  sp_backend_release(cpu, cpu_b);
  sp_backend_free(plain);
  sp_backend_free(cuda);
  sp_backend_free(cpu);
  return failures ? 1 : 0;
}
