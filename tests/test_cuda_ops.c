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
/* The families' layers the guest builds (guest/llm/model.c): llama's;
 * qwen2's (q, k, v biases); gemma3's (q and k head norms, norms after
 * attention and after the FFN, GeGLU). */
enum { LAYER_LLAMA, LAYER_QWEN2, LAYER_GEMMA3 };
static const char *const layer_style_names[] = {"llama", "qwen2", "gemma3"};

typedef struct layer_case {
  uint32_t E, F, Hq, Hkv, Dh, T, C, wdt, style;
  uint32_t x, xb, q, k, v, att, proj, gate, up, kc, vc, pos, nw, fnw, wq, wk, wv, wo, wg, wu, wd;
  uint32_t bq, bk, bv, qn, kn, pan, pfn, next;
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
  L->bq = take(L, E * 4), L->bk = take(L, kv * 4), L->bv = take(L, kv * 4), L->qn = take(L, L->Dh * 4);
  L->kn = take(L, L->Dh * 4), L->pan = take(L, E * 4), L->pfn = take(L, E * 4);
}

static sp_cmd rmsnorm_cmd(sp_tensor d, sp_tensor x, uint32_t w, uint32_t width) {
  float eps = 1e-6f;
  sp_cmd c = {.op = SP_OP_RMSNORM};
  c.dst = d, c.src[0] = x, c.src[1] = t4(w, SP_DTYPE_F32, width, 1, 1);
  memcpy(&c.param[0], &eps, 4);
  return c;
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
  if (L->style == LAYER_QWEN2) {
    const uint32_t at[3] = {L->q, L->k, L->v}, bias[3] = {L->bq, L->bk, L->bv}, width[3] = {E, kv, kv};
    for (int b = 0; b < 3; b++) {
      sp_tensor d = t4(at[b], SP_DTYPE_F32, width[b], T, 1);
      c[n++] = op2(SP_OP_ADD, d, d, t4(bias[b], SP_DTYPE_F32, width[b], 1, 1));
    }
  }
  if (L->style == LAYER_GEMMA3) {
    sp_tensor qh = t4(L->q, SP_DTYPE_F32, L->Dh, L->Hq * T, 1), kh = t4(L->k, SP_DTYPE_F32, L->Dh, L->Hkv * T, 1);
    c[n++] = rmsnorm_cmd(qh, qh, L->qn, L->Dh), c[n++] = rmsnorm_cmd(kh, kh, L->kn, L->Dh);
  }
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
  if (L->style == LAYER_GEMMA3) c[n++] = rmsnorm_cmd(proj, proj, L->pan, E);
  c[n++] = op2(SP_OP_ADD, x, x, proj);
  c[n] = op2(SP_OP_RMSNORM, xb, x, t4(L->fnw, SP_DTYPE_F32, E, 1, 1)), memcpy(&c[n++].param[0], &eps, 4);
  c[n++] = op2(SP_OP_MATMUL, gate, t4(L->wg, wdt, E, Fd, 1), xb);
  c[n++] = op2(SP_OP_MATMUL, up, t4(L->wu, wdt, E, Fd, 1), xb);
  c[n++] = op2(L->style == LAYER_GEMMA3 ? SP_OP_GEGLU : SP_OP_SWIGLU, gate, gate, up);
  c[n++] = op2(SP_OP_MATMUL, proj, t4(L->wd, wdt, Fd, E, 1), gate);
  if (L->style == LAYER_GEMMA3) c[n++] = rmsnorm_cmd(proj, proj, L->pfn, E);
  c[n++] = op2(SP_OP_ADD, x, x, proj);
  /* the next layer's norm, which the add before it joins */
  c[n] = op2(SP_OP_RMSNORM, xb, x, t4(L->nw, SP_DTYPE_F32, E, 1, 1)), memcpy(&c[n++].param[0], &eps, 4);
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
static void layer_case_run(uint32_t wdt, uint32_t T, uint32_t style) {
  layer_case L = {.E = 256, .F = 512, .Hq = 4, .Hkv = 2, .Dh = 64, .T = T, .C = 64, .wdt = wdt, .style = style};
  layer_layout(&L);
  uint32_t kv = L.Hkv * L.Dh;
  fill(L.x, SP_DTYPE_F32, L.E * T), fill(L.proj, SP_DTYPE_F32, L.E * T), fill(L.nw, SP_DTYPE_F32, L.E);
  fill(L.fnw, SP_DTYPE_F32, L.E), fill(L.kc, SP_DTYPE_F16, kv * L.C), fill(L.vc, SP_DTYPE_F16, kv * L.C);
  const uint32_t ws[][3] = {{L.wq, L.E, L.E}, {L.wk, L.E, kv}, {L.wv, L.E, kv}, {L.wo, L.E, L.E},
                            {L.wg, L.E, L.F}, {L.wu, L.E, L.F}, {L.wd, L.F, L.E}};
  for (int i = 0; i < 7; i++) fill(ws[i][0], wdt, (uint64_t)ws[i][1] * ws[i][2]);
  fill(L.bq, SP_DTYPE_F32, L.E), fill(L.bk, SP_DTYPE_F32, kv), fill(L.bv, SP_DTYPE_F32, kv);
  fill(L.qn, SP_DTYPE_F32, L.Dh), fill(L.kn, SP_DTYPE_F32, L.Dh), fill(L.pan, SP_DTYPE_F32, L.E);
  fill(L.pfn, SP_DTYPE_F32, L.E);
  for (uint32_t t = 0; t < T; t++) ((int32_t *)(mem + L.pos))[t] = (int32_t)(20 + 3 * t);
  sp_cmd cmds[32];
  uint32_t n = layer_list(&L, cmds);
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  char msg[256], name[64];
  snprintf(name, sizeof name, "layer %s %s T=%u", layer_style_names[style], sp_dtype_name(wdt), T);
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
      {"att", L.att, L.E * T}, {"gate", L.gate, L.F * T}, {"up", L.up, L.F * T}, {"proj", L.proj, L.E * T}};
  double worst = 0, worst_fused = 0;
  const char *worst_at = "", *worst_fused_at = "";
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    double e = rel_err((const float *)(mem + outs[i].at), (const float *)(cpu_out + outs[i].at), outs[i].n);
    double f = rel_err((const float *)(mem + outs[i].at), (const float *)(unfused + outs[i].at), outs[i].n);
    if (e > worst) worst = e, worst_at = outs[i].what;
    if (f > worst_fused) worst_fused = f, worst_fused_at = outs[i].what;
  }
  /* qwen2's and gemma3's layers pass the int8 activations through more
   * steps (head norms, post-norms, GeGLU's f16 roundings, where CUDA's tanhf
   * may land on the neighbouring f16 value): Q4_0 on H100 measured 1.33e-2
   * in gemma3's proj, with fused and unfused CUDA equal to the bit. */
  double bound = style == LAYER_LLAMA ? 1e-2 : 2e-2;
  bool ok = worst <= bound && worst_fused <= 1e-4;
  printf("%s %-28s vs cpu %.2e in %s (bound %.0e), fused vs unfused %.2e in %s (bound 1e-04)\n",
         ok ? "ok  " : "FAIL", name, worst, worst_at, bound, worst_fused, worst_fused_at);
  failures += !ok;
  free(unfused);
  memcpy(mem, snapshot, USED);
}

static void layer_cases(void) {
  const uint32_t dts[] = {SP_DTYPE_Q8_0, SP_DTYPE_Q4_0, SP_DTYPE_Q4_1, SP_DTYPE_F16};
  for (int i = 0; i < 4; i++) {
    layer_case_run(dts[i], 1, LAYER_LLAMA);
    layer_case_run(dts[i], 3, LAYER_LLAMA);
  }
  /* the other families' fused launches (bias rows, norm pairs, post-norms, GeGLU) */
  for (uint32_t style = LAYER_QWEN2; style <= LAYER_GEMMA3; style++)
    for (int i = 0; i < 2; i++) {
      layer_case_run(dts[i], 1, style);
      layer_case_run(dts[i], 3, style);
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

/* ---- issue 15: the new weight types on CUDA ---- */

/* Weights the cases below write: past the range failure_cases froze at W
 * (a frozen range is read from its device copy until flushed, so new bytes
 * there would go unseen) and below W2. */
enum { WQ = 0x100000 };

/* Block sizes of the issue-15 types, kept here so the cases do not depend
 * on which tables exist yet; sp_dtype_get says whether the validator knows
 * a type (a type it does not know is reported as skipped). */
typedef struct kq_type {
  uint32_t dt, elems, bytes;
  uint32_t d_at, dmin_at; /* f16 scale fields (0xffff: none) */
  float d_base;           /* scale for values of a few units */
  bool fast;              /* decode products with integer dots (dp4a); the others dequantize on the fly */
} kq_type;

static const kq_type kq_types[] = {
    {SP_DTYPE_Q5_0, 32, 22, 0, 0xffff, 0.02f, true},     {SP_DTYPE_Q5_1, 32, 24, 0, 2, 0.02f, false},
    {SP_DTYPE_Q2_K, 256, 84, 80, 82, 0.03f, false},      {SP_DTYPE_Q3_K, 256, 110, 108, 0xffff, 0.01f, false},
    {SP_DTYPE_Q4_K, 256, 144, 0, 2, 0.002f, true},       {SP_DTYPE_Q5_K, 256, 176, 0, 2, 0.001f, false},
    {SP_DTYPE_Q6_K, 256, 210, 208, 0xffff, 0.0003f, true}, {SP_DTYPE_IQ4_NL, 32, 18, 0, 0xffff, 0.005f, false},
    {SP_DTYPE_IQ4_XS, 256, 136, 0, 0xffff, 0.0003f, false},
};

/* Random valid blocks: every byte random, then the f16 scales set to
 * finite, modest values (0.5 to 1.5 times the type's base). */
static void kq_fill(uint32_t off, const kq_type *t, uint64_t elems) {
  uint8_t *p = mem + off;
  for (uint64_t b = 0; b < elems / t->elems; b++) {
    uint8_t *q = p + b * t->bytes;
    for (uint32_t j = 0; j < t->bytes; j++) q[j] = (uint8_t)next_u32();
    uint16_t d = sp_f32_to_f16(t->d_base * (1.0f + 0.5f * next_f()));
    uint16_t m = sp_f32_to_f16((t->dt == SP_DTYPE_Q5_1 ? -0.3f : t->d_base) * (1.0f + 0.5f * next_f()));
    memcpy(q + t->d_at, &d, 2);
    if (t->dmin_at != 0xffff) memcpy(q + t->dmin_at, &m, 2);
  }
}

/* Each product and sum rounded to f32 on its own, as the reference
 * dequantizer does (volatile: no contraction into an FMA here either). */
static float kq_mul(float a, float b) { volatile float r = a * b; return r; }
static float kq_add(float a, float b) { volatile float r = a + b; return r; }
static float kq_h(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return sp_f16_to_f32(h); }

static const int8_t kq_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Element e of block b, written from ggml-common.h's layouts and the
 * reference formulas independently of the kernels (the K-quant scales
 * unpacked the way gguf's numpy code does, not as quant_k.cuh does). */
static float kq_ref(uint32_t dt, const uint8_t *b, uint32_t e) {
  uint32_t half = e / 128, r = e % 128, j32 = e / 32;
  switch (dt) {
  case SP_DTYPE_Q5_0:
  case SP_DTYPE_Q5_1: {
    bool one = dt == SP_DTYPE_Q5_1;
    uint32_t qh;
    memcpy(&qh, b + (one ? 4 : 2), 4);
    const uint8_t *qs = b + (one ? 8 : 6);
    int q = (int)((e < 16 ? qs[e] & 15 : qs[e - 16] >> 4) | (((qh >> e) & 1) << 4));
    return one ? kq_add(kq_mul(kq_h(b), (float)q), kq_h(b + 2)) : kq_mul(kq_h(b), (float)(q - 16));
  }
  case SP_DTYPE_Q2_K: {
    uint8_t sc = b[e / 16];
    float dl = kq_mul(kq_h(b + 80), (float)(sc & 15)), ml = kq_mul(kq_h(b + 82), (float)(sc >> 4));
    int q = (b[16 + half * 32 + r % 32] >> (2 * (r / 32))) & 3;
    return kq_add(kq_mul(dl, (float)q), -ml);
  }
  case SP_DTYPE_Q3_K: {
    uint32_t aux[4], tmp; /* 16 6-bit scales: low nibbles, then 2 high bits from bytes 8..11 */
    memcpy(aux, b + 96, 12);
    tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
    aux[3] = ((aux[1] >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
    aux[0] = (aux[0] & 0x0f0f0f0f) | (((tmp >> 0) & 0x03030303) << 4);
    aux[1] = (aux[1] & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
    int s = (int)((const uint8_t *)aux)[e / 16] - 32;
    int q = ((b[32 + half * 32 + r % 32] >> (2 * (r / 32))) & 3) - ((b[r % 32] >> (half * 4 + r / 32)) & 1 ? 0 : 4);
    return kq_mul(kq_mul(kq_h(b + 108), (float)s), (float)q);
  }
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K: {
    const uint8_t *s = b + 4; /* rows of 4: scales, mins, their high parts */
    uint32_t i = j32;
    uint32_t sc = i < 4 ? s[i] & 0x3f : (s[i + 4] & 0x0f) | ((s[i - 4] >> 2) & 0x30);
    uint32_t mn = i < 4 ? s[i + 4] & 0x3f : (s[i + 4] >> 4) | ((s[i] >> 2) & 0x30);
    const uint8_t *qs = b + (dt == SP_DTYPE_Q5_K ? 48 : 16);
    uint32_t q = (qs[(i / 2) * 32 + e % 32] >> (4 * (i % 2))) & 15;
    if (dt == SP_DTYPE_Q5_K) q |= ((b[16 + e % 32] >> i) & 1) << 4;
    return kq_add(kq_mul(kq_mul(kq_h(b), (float)sc), (float)q), -kq_mul(kq_h(b + 2), (float)mn));
  }
  case SP_DTYPE_Q6_K: {
    uint32_t lo = r < 64 ? b[half * 64 + r] & 15 : b[half * 64 + r - 64] >> 4;
    uint32_t hi = (b[128 + half * 32 + r % 32] >> (2 * (r / 32))) & 3;
    float dl = kq_mul(kq_h(b + 208), (float)(int8_t)b[192 + e / 16]);
    return kq_mul(dl, (float)((int)(lo | (hi << 4)) - 32));
  }
  case SP_DTYPE_IQ4_NL: return kq_mul(kq_h(b), (float)kq_levels[e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4]);
  default: { /* IQ4_XS */
    uint16_t sh;
    memcpy(&sh, b + 2, 2);
    int ls = (int)(((b[4 + j32 / 2] >> (4 * (j32 % 2))) & 15) | (((sh >> (2 * j32)) & 3) << 4)) - 32;
    uint32_t l = e % 32, q = l < 16 ? b[8 + j32 * 16 + l] & 15 : b[8 + j32 * 16 + l - 16] >> 4;
    return kq_mul(kq_mul(kq_h(b), (float)ls), (float)kq_levels[q]);
  }
  }
}

/* Row n of a [k, rows] weight at off, dequantized on the host. */
static void kq_ref_row(const kq_type *t, uint32_t off, uint32_t k, uint32_t n, float *out) {
  const uint8_t *row = mem + off + (uint64_t)n * (k / t->elems) * t->bytes;
  for (uint32_t i = 0; i < k; i++) out[i] = kq_ref(t->dt, row + (i / t->elems) * t->bytes, i % t->elems);
}

/* got against want: max abs error, and relative L2 error. */
static void kq_report(const char *name, const char *what, const float *got, const float *want, uint64_t n,
                      double bound) {
  double maxe = 0;
  for (uint64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (!(d <= maxe)) maxe = d; /* NaN propagates */
  }
  double e = rel_err(got, want, n);
  bool ok = e <= bound && isfinite(maxe);
  cases++, failures += !ok;
  printf("%s %-30s %-8s max abs err %.3e rel err %.2e (bound %.0e)\n", ok ? "ok  " : "FAIL", name, what, maxe, e,
         bound);
}

/* Validates and runs a list on CUDA (fused as the backend plans), then,
 * where the CPU has the type, the same on the CPU; dst values (n floats
 * each, at their offsets) land in got and cpu_got (NULL: CPU skipped). */
static bool kq_run(const char *name, sp_cmd *cmds, uint32_t count, float **got, float **cpu_got, uint32_t n) {
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  bool on_cpu = true;
  for (uint32_t i = 0; i < count; i++) {
    if (sp_validate_cmd(&vctx, &cmds[i], i, msg, sizeof msg)) {
      printf("FAIL %-30s invalid: %s\n", name, msg);
      return cases++, failures++, false;
    }
    if (!sp_backend_supports(cuda, &cmds[i])) {
      printf("FAIL %-30s unsupported on cuda\n", name);
      return cases++, failures++, false;
    }
    on_cpu = on_cpu && sp_backend_supports(cpu, &cmds[i]);
  }
  memcpy(snapshot, mem, USED);
  sp_error_t *err = cuda_run(cmds, count);
  if (err) {
    printf("FAIL %-30s cuda: %s\n", name, sp_error_message(err));
    sp_error_free(err);
    return cases++, failures++, false;
  }
  for (uint32_t i = 0; i < count; i++) memcpy(got[i], mem + cmds[i].dst.offset, (size_t)n * 4);
  memcpy(mem, snapshot, USED);
  if (!on_cpu || !cpu_got) {
    if (cpu_got) printf("skip %-30s cpu: no kernel for this type yet\n", name);
    return true;
  }
  err = sp_backend_submit(cpu, cpu_b, cmds, count, false);
  if (!err) err = sp_backend_wait(cpu, cpu_b);
  if (err) {
    printf("FAIL %-30s cpu: %s\n", name, sp_error_message(err));
    sp_error_free(err), cases++, failures++;
    memcpy(mem, snapshot, USED);
    return true;
  }
  for (uint32_t i = 0; i < count; i++) memcpy(cpu_got[i], mem + cmds[i].dst.offset, (size_t)n * 4);
  memcpy(mem, snapshot, USED);
  return true;
}

/* get_rows: bit for bit the host decode (and the CPU's). */
static void kq_get_rows(const kq_type *t) {
  const uint32_t k = 512, rows = 16, nid = 5;
  int32_t ids[5] = {3, 15, 0, 7, 3};
  char name[64];
  kq_fill(WQ, t, (uint64_t)k * rows);
  memcpy(mem + I, ids, sizeof ids);
  sp_cmd c = {.op = SP_OP_GET_ROWS};
  c.dst = t4(D, SP_DTYPE_F32, k, nid, 1), c.src[0] = t4(WQ, t->dt, k, rows, 1), c.src[1] = t4(I, SP_DTYPE_I32, nid, 1, 1);
  float *want = malloc((size_t)k * nid * 4), *got = malloc((size_t)k * nid * 4), *cg = malloc((size_t)k * nid * 4);
  for (uint32_t r = 0; r < nid; r++) kq_ref_row(t, WQ, k, (uint32_t)ids[r], want + (size_t)r * k);
  snprintf(name, sizeof name, "get_rows %s", sp_dtype_name(t->dt));
  cg[0] = NAN; /* stays NaN when the CPU is skipped */
  if (kq_run(name, &c, 1, &got, &cg, k * nid)) {
    kq_report(name, "vs host", got, want, (uint64_t)k * nid, 0);
    if (cg[0] == cg[0]) kq_report(name, "vs cpu", got, cg, (uint64_t)k * nid, 0);
  }
  free(want), free(got), free(cg);
}

/* Activation row x (k values) as decode products see it: int8 blocks of 32
 * with an f16-rounded scale (sp_cu_quantize_block, the CPU's sp_q8_act),
 * dequantized back to floats. */
static void kq_quantized_x(const float *x, uint32_t k, float *out) {
  for (uint32_t b = 0; b < k / 32; b++) {
    float amax = 0;
    for (uint32_t i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
    float id = amax > 0 ? 127.0f / amax : 0.0f, d = sp_f16_to_f32(sp_f32_to_f16(amax / 127.0f));
    for (uint32_t i = 0; i < 32; i++) {
      float r = rintf(kq_mul(x[b * 32 + i], id));
      out[b * 32 + i] = d * fminf(fmaxf(r, -127.0f), 127.0f);
    }
  }
}

/* A list of `count` products of x [k, m] by weights of n[i] rows each,
 * against the host's dequantized weights (double sums) and the CPU. */
static uint32_t kq_w_shift; /* weights this many bytes past WQ: tries the loads for 2-byte aligned blocks */

static void kq_products(const kq_type *t, uint32_t k, uint32_t m, const uint32_t *n, uint32_t count, const char *tag) {
  enum { W2 = 0x400000, D2 = 0xB00000 };
  char name[64];
  sp_cmd c[2];
  float *want[2], *got[2], *cg[2];
  fill(X, SP_DTYPE_F32, (uint64_t)k * m);
  for (uint32_t i = 0; i < count; i++) {
    uint32_t w = (i ? W2 : WQ) + kq_w_shift, d = i ? D2 : D;
    kq_fill(w, t, (uint64_t)k * n[i]);
    memset(&c[i], 0, sizeof c[i]);
    c[i].op = SP_OP_MATMUL;
    c[i].dst = t4(d, SP_DTYPE_F32, n[i], m, 1), c[i].src[0] = t4(w, t->dt, k, n[i], 1);
    c[i].src[1] = t4(X, SP_DTYPE_F32, k, m, 1);
    want[i] = calloc((size_t)n[0] * m, 4), got[i] = calloc((size_t)n[0] * m, 4), cg[i] = calloc((size_t)n[0] * m, 4);
    cg[i][0] = NAN; /* stays NaN when the CPU is skipped */
    float *wr = malloc((size_t)k * 4), *xq = malloc((size_t)k * m * 4);
    for (uint32_t j = 0; j < m; j++) {
      const float *xr = (const float *)(mem + X) + (size_t)j * k;
      if (m > 8) memcpy(xq + (size_t)j * k, xr, (size_t)k * 4); /* prompts: f32 activations (f16 in the product) */
      else kq_quantized_x(xr, k, xq + (size_t)j * k);
    }
    for (uint32_t r = 0; r < n[i]; r++) {
      kq_ref_row(t, w, k, r, wr);
      for (uint32_t j = 0; j < m; j++) {
        double s = 0;
        for (uint32_t e = 0; e < k; e++) s += (double)wr[e] * xq[(size_t)j * k + e];
        want[i][(size_t)j * n[i] + r] = (float)s;
      }
    }
    free(wr), free(xq);
  }
  snprintf(name, sizeof name, "%s %s k=%u m=%u", tag, sp_dtype_name(t->dt), k, m);
  /* decode: the host sums the same int8 activations in double, so only
   * summation order differs (the parity tolerance of Q4_0's), but for
   * Q5_1's min, taken as Q4_1's and the CPU's is, times the f16-rounded
   * dx * sum(xq): up to 1e-3 with these large mins; prompts round both
   * operands to f16 */
  double bound = m > 8 ? 2e-2 : t->dt == SP_DTYPE_Q5_1 ? 2e-3 : 5e-4;
  if (kq_run(name, c, count, got, cg, n[0] * m))
    for (uint32_t i = 0; i < count; i++) {
      char part[80];
      snprintf(part, sizeof part, "%s%s", name, count > 1 ? (i ? " [b]" : " [a]") : "");
      kq_report(part, "vs host", got[i], want[i], (uint64_t)n[i] * m, bound);
      if (cg[i][0] == cg[i][0]) kq_report(part, "vs cpu", got[i], cg[i], (uint64_t)n[i] * m, bound);
    }
  for (uint32_t i = 0; i < count; i++) free(want[i]), free(got[i]), free(cg[i]);
}

/* Every issue-15 type: get_rows, decode products (M = 1, 4; a longer row;
 * fused groups for the int8 types) and a prompt product (M = 64). One
 * line per case with its max error. */
static void kquant_cases(void) {
  for (size_t i = 0; i < sizeof kq_types / sizeof kq_types[0]; i++) {
    const kq_type *t = &kq_types[i];
    if (!sp_dtype_get(t->dt)) {
      printf("skip %s: not in the dtype table yet\n", sp_dtype_name(t->dt));
      continue;
    }
    const sp_dtype_info *info = sp_dtype_get(t->dt);
    if (info->block_elems != t->elems || info->block_bytes != t->bytes) {
      printf("FAIL %s: the dtype table says %u values in %u bytes, ggml %u in %u\n", info->name, info->block_elems,
             info->block_bytes, t->elems, t->bytes);
      cases++, failures++;
      continue;
    }
    kq_get_rows(t);
    const uint32_t n1[1] = {72}, pair[2] = {72, 72}, uneven[2] = {72, 40};
    kq_products(t, 1024, 1, n1, 1, "matmul");
    kq_products(t, 1024, 4, n1, 1, "matmul");
    kq_products(t, 4096, 1, n1, 1, "matmul");
    kq_products(t, 256, 1, n1, 1, "matmul");
    kq_products(t, 1024, 64, n1, 1, "gemm");
    kq_products(t, 1024, 1, pair, 2, "group"); /* fused (fuse.cu) into one launch where t->fast */
    kq_products(t, 1024, 3, uneven, 2, "group");
    kq_w_shift = sp_dtype_get(t->dt)->align; /* the least the validator allows: 2 */
    if (kq_w_shift < 8) {
      kq_products(t, 1024, 2, n1, 1, "matmul unaligned");
      kq_products(t, 512, 16, n1, 1, "gemm unaligned");
    }
    kq_w_shift = 0;
  }
}

/* ---- issue 15 ops: GEGLU, SOFTCAP, attention's sliding window ---- */

/* n floats uniform in [lo, hi) at guest offset off. */
static void ops15_fill(uint32_t off, uint64_t n, float lo, float hi) {
  for (uint64_t i = 0; i < n; i++) ((float *)(mem + off))[i] = lo + (hi - lo) * (next_f() + 1) / 2;
}

/* GEGLU over both of ggml's cut-offs (|x| >= 10) and SOFTCAP far into
 * saturation, in place too: CUDA computes the CPU's roundings, so only
 * tanhf's last bits (GEGLU: an f16 neighbour now and then) differ. */
static void ops15_activation_cases(void) {
  ops15_fill(X, 1000 * 7, -12, 12), ops15_fill(WQ, 1000 * 7, -3, 3);
  sp_cmd c = {.op = SP_OP_GEGLU};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[1] = t4(WQ, SP_DTYPE_F32, 1000, 7, 1);
  run_case("geglu", c, 1e-4);
  c.dst = c.src[0];
  run_case("geglu in place", c, 1e-4);
  const float caps[] = {30.0f, 0.5f};
  for (int i = 0; i < 2; i++) {
    ops15_fill(X, 1000 * 7, -4 * caps[i], 4 * caps[i]);
    c = (sp_cmd){.op = SP_OP_SOFTCAP};
    c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1);
    memcpy(&c.param[0], &caps[i], 4);
    char name[64];
    snprintf(name, sizeof name, "softcap cap %g", (double)caps[i]);
    run_case(name, c, 1e-6);
    c.dst = c.src[0];
    snprintf(name, sizeof name, "softcap cap %g in place", (double)caps[i]);
    run_case(name, c, 1e-6);
  }
}

/* One windowed attention command over caches at K and V. */
static sp_cmd ops15_attention(uint32_t dt, uint32_t Dh, uint32_t Hq, uint32_t Hkv, uint32_t T, uint32_t C,
                              uint32_t window) {
  sp_cmd c = {.op = SP_OP_ATTENTION};
  float scale = 1.0f / sqrtf((float)Dh);
  c.dst = t4(D, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = t4(X, SP_DTYPE_F32, Dh, Hq, T);
  c.src[1] = t4(K, dt, Dh, Hkv, C), c.src[2] = t4(V, dt, Dh, Hkv, C), c.src[3] = t4(I, SP_DTYPE_I32, T, 1, 1);
  memcpy(&c.param[0], &scale, 4);
  c.param[1] = window;
  return c;
}

/* Decode-sized lists (the one-block-per-(head, token) kernels: f32 cache,
 * f16 cache, odd head size) with windows of 1 row, a few rows, more than
 * a 256-row chunk, and wider than the cache. */
static void ops15_window_decode_cases(void) {
  const uint32_t C = 300, windows[] = {1, 7, 100, 257, 1000};
  int32_t pos[5] = {0, 17, 150, 151, 299};
  memcpy(mem + I, pos, sizeof pos);
  /* 256: Gemma 3's head size (no specialised kernel: the generic one) */
  const uint32_t shapes[][2] = {{SP_DTYPE_F32, 64}, {SP_DTYPE_F16, 64}, {SP_DTYPE_F16, 128}, {SP_DTYPE_F32, 36},
                                {SP_DTYPE_F16, 256}, {SP_DTYPE_F32, 256}};
  for (int s = 0; s < 6; s++) {
    uint32_t dt = shapes[s][0], Dh = shapes[s][1];
    fill(X, SP_DTYPE_F32, Dh * 8 * 5), fill(K, dt, Dh * 2 * C), fill(V, dt, Dh * 2 * C);
    for (int w = 0; w < 5; w++) {
      char name[80];
      snprintf(name, sizeof name, "attention %s D=%u W=%u", sp_dtype_name(dt), Dh, windows[w]);
      run_case(name, ops15_attention(dt, Dh, 8, 2, 5, C, windows[w]), dt == SP_DTYPE_F16 ? 3e-3 : 1e-5);
    }
  }
}

/* Prompts (70 and 16 query rows: tensor cores, and the plain kernel with
 * SP_CUDA_NO_FLASH): windows cutting the 64-row tiles, each query's window
 * starting at its own row. */
static void ops15_window_prefill_cases(void) {
  const uint32_t C = 300, windows[] = {1, 50, 130};
  int32_t pos[70];
  for (uint32_t t = 0; t < 70; t++) pos[t] = 100 + (int32_t)t;
  pos[3] = 0, pos[40] = 299, pos[41] = 7;
  memcpy(mem + I, pos, sizeof pos);
  for (uint32_t Dh = 64; Dh <= 256; Dh *= 2) { /* 256: past the tensor-core kernel's sizes */
    fill(X, SP_DTYPE_F32, Dh * 8 * 70), fill(K, SP_DTYPE_F16, Dh * 2 * C), fill(V, SP_DTYPE_F16, Dh * 2 * C);
    for (int w = 0; w < 3; w++) {
      sp_cmd c = ops15_attention(SP_DTYPE_F16, Dh, 8, 2, 70, C, windows[w]);
      char name[80];
      snprintf(name, sizeof name, "attention f16 T=70 D=%u W=%u", Dh, windows[w]);
      run_case(name, c, 3e-3);
      snprintf(name, sizeof name, "attention f16 T=70 D=%u W=%u, no tensor cores", Dh, windows[w]);
      use_plain = true;
      run_case(name, c, 3e-3);
      use_plain = false;
    }
  }
}

/* Windowed attention feeding a Q8_0 matmul (fused on CUDA: the attention
 * quantizes its output for the product): CUDA fused against CUDA unfused
 * and against the CPU. */
static void ops15_window_fused_case(void) {
  const uint32_t Dh = 64, Hq = 4, Hkv = 2, C = 300, N = 96, Wn = 40;
  int32_t pos = 290;
  memcpy(mem + I, &pos, sizeof pos);
  fill(X, SP_DTYPE_F32, Dh * Hq), fill(K, SP_DTYPE_F16, Dh * Hkv * C), fill(V, SP_DTYPE_F16, Dh * Hkv * C);
  fill(WQ, SP_DTYPE_Q8_0, (uint64_t)Dh * Hq * N);
  sp_cmd cmds[2] = {ops15_attention(SP_DTYPE_F16, Dh, Hq, Hkv, 1, C, Wn), {.op = SP_OP_MATMUL}};
  cmds[1].dst = t4(F, SP_DTYPE_F32, N, 1, 1), cmds[1].src[0] = t4(WQ, SP_DTYPE_Q8_0, Dh * Hq, N, 1);
  cmds[1].src[1] = t4(D, SP_DTYPE_F32, Dh * Hq, 1, 1);
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  char msg[256];
  cases++;
  for (uint32_t i = 0; i < 2; i++)
    if (sp_validate_cmd(&vctx, &cmds[i], i, msg, sizeof msg)) {
      printf("FAIL %-28s invalid cmd[%u]: %s\n", "attention W=40 + matmul", i, msg), failures++;
      return;
    }
  float want[96], unfused[96], fused[96];
  memcpy(snapshot, mem, USED);
  sp_error_t *err = sp_backend_submit(cpu, cpu_b, cmds, 2, false);
  if (!err) err = sp_backend_wait(cpu, cpu_b);
  memcpy(want, mem + F, sizeof want), memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, 2, false);
  memcpy(unfused, mem + F, sizeof unfused), memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, 2, true);
  memcpy(fused, mem + F, sizeof fused), memcpy(mem, snapshot, USED);
  if (err) {
    printf("FAIL %-28s %s\n", "attention W=40 + matmul", sp_error_message(err));
    sp_error_free(err), failures++;
    return;
  }
  double e = rel_err(fused, want, N), f = rel_err(fused, unfused, N);
  bool ok = e <= 1e-2 && f <= 1e-4;
  printf("%s %-28s vs cpu %.2e (bound 1e-02), fused vs unfused %.2e (bound 1e-04)\n", ok ? "ok  " : "FAIL",
         "attention W=40 + matmul", e, f);
  failures += !ok;
}

static void ops15_cases(void) {
  ops15_activation_cases();
  ops15_window_decode_cases();
  ops15_window_prefill_cases();
  ops15_window_fused_case();
}

/* ---- issue 17: decode attention over long caches (split-KV on CUDA) ---- */

/* Caches past USED and below device_local_cases' range (its mirror starts
 * at 0x2780000): no case freezes or mirrors them, and they are only read
 * (run_case restores USED alone, and `plain` sees USED alone, so these
 * cases run on the main CUDA backend). */
enum { FK = 0x1800000, FV = 0x1C80000, FCAP = 0x480000, FD_C = 4160 };

/* One attention command over the caches at FK and FV (FD_C rows). */
static sp_cmd fd_attention(uint32_t dt, uint32_t Dh, uint32_t Hq, uint32_t Hkv, uint32_t T, uint32_t window) {
  sp_cmd c = ops15_attention(dt, Dh, Hq, Hkv, T, FD_C, window);
  c.src[1].offset = FK, c.src[2].offset = FV;
  return c;
}

/* Decode at walks of 1, 33, 700 and 4100 rows (four query rows in one
 * command, then the deepest alone), GQA groups of 1, 3, 4 and 8, head
 * sizes 64, 128, 256 (and 96: no split kernel, the one-block ones), f16
 * and f32 caches (f32: the one-block kernels), with no window, one of 600
 * rows (wider than the split threshold: it cuts the deep walks) and one of
 * 100 (narrower: the one-block kernels on a big cache). */
static void fd_decode_cases(void) {
  const struct { uint32_t dt, Dh, Hq, Hkv; } shapes[] = {
      {SP_DTYPE_F16, 64, 32, 8},  /* Llama 3.2 1B */
      {SP_DTYPE_F16, 64, 9, 3},   /* SmolLM2 135M: a group of 3 */
      {SP_DTYPE_F16, 64, 8, 1},   {SP_DTYPE_F16, 128, 4, 4}, {SP_DTYPE_F16, 128, 16, 2},
      {SP_DTYPE_F16, 256, 8, 2},  {SP_DTYPE_F16, 256, 8, 1}, {SP_DTYPE_F16, 96, 8, 2},
      {SP_DTYPE_F32, 64, 8, 2},   {SP_DTYPE_F32, 128, 8, 1}, {SP_DTYPE_F32, 256, 4, 1},
  };
  const uint32_t windows[] = {0, 600, 100};
  const int32_t pos[4] = {0, 32, 699, 4099}, deepest = 4099;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    uint32_t dt = shapes[i].dt, Dh = shapes[i].Dh, Hq = shapes[i].Hq, Hkv = shapes[i].Hkv;
    uint64_t elems = (uint64_t)Dh * Hkv * FD_C;
    if (elems * sp_dtype_get(dt)->block_bytes > FCAP) {
      printf("FAIL split decode: a cache of %u x %u x %u does not fit its range\n", Dh, Hkv, FD_C), failures++;
      continue;
    }
    fill(FK, dt, elems), fill(FV, dt, elems), fill(X, SP_DTYPE_F32, (uint64_t)Dh * Hq * 4);
    for (int w = 0; w < 3; w++) {
      char name[96];
      memcpy(mem + I, pos, sizeof pos);
      snprintf(name, sizeof name, "decode %s D=%u H=%u/%u W=%u depths 1..4100", sp_dtype_name(dt), Dh, Hq, Hkv,
               windows[w]);
      run_case(name, fd_attention(dt, Dh, Hq, Hkv, 4, windows[w]), dt == SP_DTYPE_F16 ? 3e-3 : 1e-5);
      memcpy(mem + I, &deepest, sizeof deepest);
      snprintf(name, sizeof name, "decode %s D=%u H=%u/%u W=%u depth 4100", sp_dtype_name(dt), Dh, Hq, Hkv, windows[w]);
      run_case(name, fd_attention(dt, Dh, Hq, Hkv, 1, windows[w]), dt == SP_DTYPE_F16 ? 3e-3 : 1e-5);
    }
  }
}

/* The 1B shape's decode step repeated as a captured graph (the same list
 * again), with the position moved between replays: the graph was captured
 * at one depth, and its span grid must serve the others. Each replay
 * against the CPU at that position. */
static void fd_graph_case(void) {
  const uint32_t Dh = 64, Hq = 32, Hkv = 8;
  const int32_t depths[] = {40, 1500, 4099, 7, 2600};
  uint64_t elems = (uint64_t)Dh * Hkv * FD_C;
  fill(FK, SP_DTYPE_F16, elems), fill(FV, SP_DTYPE_F16, elems), fill(X, SP_DTYPE_F32, (uint64_t)Dh * Hq);
  sp_cmd c = fd_attention(SP_DTYPE_F16, Dh, Hq, Hkv, 1, 0);
  float want[64 * 32], got[64 * 32];
  for (int i = 0; i < 5; i++) {
    cases++;
    memcpy(mem + I, &depths[i], 4);
    memcpy(snapshot, mem, USED);
    sp_error_t *err = sp_backend_submit(cpu, cpu_b, &c, 1, false);
    if (!err) err = sp_backend_wait(cpu, cpu_b);
    memcpy(want, mem + D, sizeof want), memcpy(mem, snapshot, USED);
    if (!err) err = sp_backend_submit(cuda, cuda_b, &c, 1, i > 0); /* the same list: captured, then replayed */
    if (!err) err = sp_backend_wait(cuda, cuda_b);
    memcpy(got, mem + D, sizeof got), memcpy(mem, snapshot, USED);
    char name[64];
    snprintf(name, sizeof name, "decode graph replay depth %d", depths[i] + 1);
    if (err) {
      printf("FAIL %-28s %s\n", name, sp_error_message(err));
      sp_error_free(err), failures++;
      continue;
    }
    double e = rel_err(got, want, 64 * 32);
    bool ok = e <= 3e-3;
    printf("%s %-28s rel err %.2e (bound 3e-03)\n", ok ? "ok  " : "FAIL", name, e);
    failures += !ok;
  }
}

/* A deep decode step feeding a Q8_0 matmul (fused on CUDA: the split
 * path quantizes its merged output): fused against the CPU, and against
 * CUDA with fusion and the split path off (`plain`, which sees USED only:
 * the caches sit at K and V here). */
static void fd_fused_case(void) {
  const uint32_t Dh = 64, Hq = 8, Hkv = 2, N = 96, Wn = 0;
  int32_t pos = 3000;
  memcpy(mem + I, &pos, sizeof pos);
  fill(X, SP_DTYPE_F32, Dh * Hq), fill(K, SP_DTYPE_F16, Dh * Hkv * FD_C), fill(V, SP_DTYPE_F16, Dh * Hkv * FD_C);
  fill(WQ, SP_DTYPE_Q8_0, (uint64_t)Dh * Hq * N);
  sp_cmd cmds[2] = {ops15_attention(SP_DTYPE_F16, Dh, Hq, Hkv, 1, FD_C, Wn), {.op = SP_OP_MATMUL}};
  cmds[1].dst = t4(F, SP_DTYPE_F32, N, 1, 1), cmds[1].src[0] = t4(WQ, SP_DTYPE_Q8_0, Dh * Hq, N, 1);
  cmds[1].src[1] = t4(D, SP_DTYPE_F32, Dh * Hq, 1, 1);
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  char msg[256];
  const char *name = "decode depth 3001 + matmul";
  cases++;
  for (uint32_t i = 0; i < 2; i++)
    if (sp_validate_cmd(&vctx, &cmds[i], i, msg, sizeof msg)) {
      printf("FAIL %-28s invalid cmd[%u]: %s\n", name, i, msg), failures++;
      return;
    }
  float want[96], unfused[96], fused[96];
  memcpy(snapshot, mem, USED);
  sp_error_t *err = sp_backend_submit(cpu, cpu_b, cmds, 2, false);
  if (!err) err = sp_backend_wait(cpu, cpu_b);
  memcpy(want, mem + F, sizeof want), memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, 2, false);
  memcpy(unfused, mem + F, sizeof unfused), memcpy(mem, snapshot, USED);
  if (!err) err = run_cuda_list(cmds, 2, true);
  memcpy(fused, mem + F, sizeof fused), memcpy(mem, snapshot, USED);
  if (err) {
    printf("FAIL %-28s %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    return;
  }
  /* split (fused) and one-block (plain) kernels sum in other orders: the
   * product of their outputs agrees to the quantization's resolution */
  double e = rel_err(fused, want, N), f = rel_err(fused, unfused, N);
  bool ok = e <= 1e-2 && f <= 1e-2;
  printf("%s %-28s vs cpu %.2e (bound 1e-02), vs one-block unfused %.2e (bound 1e-02)\n", ok ? "ok  " : "FAIL", name,
         e, f);
  failures += !ok;
}

static void fd_cases(void) {
  fd_decode_cases();
  fd_graph_case();
  fd_fused_case();
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
  kquant_cases();
  ops15_cases();
  fd_cases();
  printf("%d of %d cases failed\n", failures, cases);
  sp_backend_release(plain, plain_b);
  sp_backend_release(cuda, cuda_b);
  sp_backend_release(cpu, cpu_b);
  sp_backend_free(plain);
  sp_backend_free(cuda);
  sp_backend_free(cpu);
  return failures ? 1 : 0;
}
