/*
 * test_vulkan_ops.c: every op on the Vulkan backend against the CPU
 * backend, on fresh random inputs, with a relative-error bound per op and
 * dtype (tests/test_cuda_ops.c's pattern).
 *
 * Both backends adopt one aligned region (Vulkan imports it: the buffer is
 * the guest's pages), so each case runs the same command on the same
 * bytes: CPU first, its result saved, the region restored, then Vulkan.
 * Also checked: pointer identity (the device base is the guest memory,
 * where the driver's device address is the host pointer, as lavapipe's
 * is); the import grows with the region; an index out of range is reported
 * as SP_E_BOUNDS naming the command and writes nothing; a list replayed
 * (`same`) reads new values from guest memory; an import of a misaligned
 * range, of a range with a PROT_NONE page and of an unmapped range is
 * refused by samepage, naming the reason, before the driver sees it.
 * The memory layer (device-local copies of frozen weights, on discrete
 * cards) runs here too, turned on by the test hook
 * sp_backend_vulkan_test_residency: a frozen weight is read from its copy
 * (bit for bit the unfrozen result; guest bytes rewritten without a flush
 * are not seen, and are after it), a weight reaching past a frozen range
 * is read from guest memory, and two bindings share one copy by identity
 * until one flushes (copy-on-flush), which a replayed list then sees.
 * Exits 77 (skip) without the library or a Vulkan device.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/fp16.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/validate.h"


#define REGION (48u << 20)
#define USED (24u << 20)         /* bytes the cases touch (restored between backends) */
#define REGION_FIRST (32u << 20) /* committed when Vulkan adopts the region; the rest comes by grow */

static uint8_t *mem;
static uint8_t *snapshot, *cpu_out;
static sp_backend *cpu, *vk;
static void *cpu_b, *vk_b;
static int failures, cases;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}
static float next_f(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

static sp_error_t *vk_run(const sp_cmd *cmds, uint32_t n, bool same) {
  sp_error_t *err = sp_backend_submit(vk, vk_b, cmds, n, same);
  return err ? err : sp_backend_wait(vk, vk_b);
}

static sp_error_t *cpu_run(const sp_cmd *cmds, uint32_t n) {
  sp_error_t *err = sp_backend_submit(cpu, cpu_b, cmds, n, false);
  return err ? err : sp_backend_wait(cpu, cpu_b);
}

/* Where each block type keeps its f16 scales (d, then a min or dmin):
 * byte offsets in the block, -1 none. */
static void scale_fields(uint32_t dt, int *d, int *m) {
  *d = 0, *m = -1;
  switch (dt) {
  case SP_DTYPE_Q4_1:
  case SP_DTYPE_Q5_1:
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K: *m = 2; break;
  case SP_DTYPE_Q2_K: *d = 80, *m = 82; break;
  case SP_DTYPE_Q3_K: *d = 108; break;
  case SP_DTYPE_Q6_K: *d = 208; break;
  default: break;
  }
}

/* Fills a tensor's bytes with values valid for its dtype: random bits,
 * with small finite f16 scales. */
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
    case SP_DTYPE_I32: { int32_t v = (int32_t)(next_u32() % 1000); memcpy(q, &v, 4); break; }
    default: {
      for (uint32_t j = 0; j < info->block_bytes; j++) q[j] = (uint8_t)next_u32();
      int dpos, mpos;
      scale_fields(dtype, &dpos, &mpos);
      bool k = info->block_elems == 256;
      uint16_t d = sp_f32_to_f16((k ? 0.0002f : 0.002f) + (k ? 0.001f : 0.01f) * (next_f() + 1));
      uint16_t m = sp_f32_to_f16((k ? 0.0005f : 0.05f) * (next_f() + 1) * (dtype == SP_DTYPE_Q4_1 ? -1 : 1));
      memcpy(q + dpos, &d, 2);
      if (mpos >= 0) memcpy(q + mpos, &m, 2);
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
    if (!isfinite(got[i]) && got[i] != want[i]) return INFINITY;
    if (!isfinite(got[i])) continue;
    num += d * d, den += (double)want[i] * want[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float elem_at(const uint8_t *p, uint32_t dtype, uint64_t i) {
  if (dtype == SP_DTYPE_F32) {
    float f;
    memcpy(&f, p + i * 4, 4);
    return f;
  }
  if (dtype == SP_DTYPE_I32) {
    int32_t v;
    memcpy(&v, p + i * 4, 4);
    return (float)v;
  }
  uint16_t h;
  memcpy(&h, p + i * 2, 2);
  return dtype == SP_DTYPE_F16 ? sp_f16_to_f32(h) : sp_bf16_to_f32(h);
}

/* Validates cmd, runs it on both backends and compares dst (as f32;
 * integer results must be equal: bound 0). */
static void run_case(const char *name, sp_cmd cmd, double bound) {
  cases++;
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  if (sp_validate_cmd(&vctx, &cmd, 0, msg, sizeof msg)) {
    printf("FAIL %-32s invalid: %s\n", name, msg);
    failures++;
    return;
  }
  if (!sp_backend_supports(vk, &cmd)) {
    printf("FAIL %-32s unsupported on vulkan\n", name);
    failures++;
    return;
  }
  uint64_t ext = sp_tensor_extent(&cmd.dst);
  memcpy(snapshot, mem, USED);
  sp_error_t *err = cpu_run(&cmd, 1);
  if (err) {
    printf("FAIL %-32s cpu: %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    return;
  }
  memcpy(cpu_out, mem + cmd.dst.offset, ext);
  memcpy(mem, snapshot, USED);
  err = vk_run(&cmd, 1, false);
  if (err) {
    printf("FAIL %-32s vulkan: %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    memcpy(mem, snapshot, USED);
    return;
  }
  uint64_t n = ext / (cmd.dst.dtype == SP_DTYPE_F32 || cmd.dst.dtype == SP_DTYPE_I32 ? 4 : 2);
  float *a = malloc(n * 4), *b = malloc(n * 4);
  for (uint64_t i = 0; i < n; i++)
    a[i] = elem_at(mem + cmd.dst.offset, cmd.dst.dtype, i), b[i] = elem_at(cpu_out, cmd.dst.dtype, i);
  double e = rel_err(a, b, n);
  bool ok = e <= bound;
  printf("%s %-32s rel err %.2e (bound %.0e)\n", ok ? "ok  " : "FAIL", name, e, bound);
  failures += !ok;
  free(a), free(b);
  memcpy(mem, snapshot, USED);
}

/* Guest addresses of the case tensors. */
enum { W = 0x000000, X = 0x800000, D = 0xA00000, I = 0xC00000, K = 0xD00000, V = 0xF00000, F = 0x1100000 };

static const uint32_t weight_types[] = {SP_DTYPE_F32,  SP_DTYPE_F16,  SP_DTYPE_BF16, SP_DTYPE_Q8_0,  SP_DTYPE_Q4_0,
                                        SP_DTYPE_Q4_1, SP_DTYPE_Q5_0, SP_DTYPE_Q5_1, SP_DTYPE_Q2_K,  SP_DTYPE_Q3_K,
                                        SP_DTYPE_Q4_K, SP_DTYPE_Q5_K, SP_DTYPE_Q6_K, SP_DTYPE_IQ4_NL, SP_DTYPE_IQ4_XS};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

static void matmul_cases(void) {
  const uint32_t ms[] = {1, 3, 17};
  for (size_t i = 0; i < N_WEIGHT_TYPES; i++)
    for (size_t j = 0; j < 3; j++) {
      uint32_t k = 512, n = 96, m = ms[j], dt = weight_types[i];
      fill(W, dt, (uint64_t)k * n), fill(X, SP_DTYPE_F32, (uint64_t)k * m);
      sp_cmd c = {.op = SP_OP_MATMUL};
      c.dst = t4(D, SP_DTYPE_F32, n, m, 1), c.src[0] = t4(W, dt, k, n, 1), c.src[1] = t4(X, SP_DTYPE_F32, k, m, 1);
      char name[64];
      snprintf(name, sizeof name, "matmul %s m=%u", sp_dtype_name(dt), m);
      run_case(name, c, dt <= SP_DTYPE_BF16 ? 1e-5 : 5e-4);
    }
}

static void row_cases(void) {
  char name[64];
  for (size_t i = 0; i < N_WEIGHT_TYPES; i++) {
    uint32_t dt = weight_types[i];
    fill(W, dt, 256 * 100);
    int32_t ids[5] = {3, 99, 0, 42, 3};
    memcpy(mem + I, ids, sizeof ids);
    sp_cmd c = {.op = SP_OP_GET_ROWS};
    c.dst = t4(D, SP_DTYPE_F32, 256, 5, 1), c.src[0] = t4(W, dt, 256, 100, 1), c.src[1] = t4(I, SP_DTYPE_I32, 5, 1, 1);
    snprintf(name, sizeof name, "get_rows %s", sp_dtype_name(dt));
    run_case(name, c, 0);
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
  float eps = 1e-5f, sc = 0.37f, cap = 0.8f;
  c = (sp_cmd){.op = SP_OP_RMSNORM};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[1] = t4(W, SP_DTYPE_F32, 1000, 1, 1);
  memcpy(&c.param[0], &eps, 4);
  run_case("rmsnorm", c, 1e-5);
  c.dst = c.src[0];
  run_case("rmsnorm in place", c, 1e-5);
  c = (sp_cmd){.op = SP_OP_ADD};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[1] = t4(W, SP_DTYPE_F32, 1000, 1, 1);
  run_case("add broadcast", c, 0);
  c.src[1] = t4(W, SP_DTYPE_F32, 1000, 7, 1);
  run_case("add", c, 0);
  c.op = SP_OP_MUL;
  run_case("mul", c, 0);
  c.op = SP_OP_SWIGLU;
  run_case("swiglu", c, 1e-5);
  c.op = SP_OP_GEGLU;
  for (uint32_t i = 0; i < 1000 * 7; i++) ((float *)(mem + X))[i] *= 6.0f; /* reaches the tails */
  run_case("geglu", c, 1e-3);
  c = (sp_cmd){.op = SP_OP_SOFTCAP};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1);
  memcpy(&c.param[0], &cap, 4);
  run_case("softcap", c, 1e-5);
  c = (sp_cmd){.op = SP_OP_SCALE};
  c.dst = t4(X, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = c.dst;
  memcpy(&c.param[0], &sc, 4);
  run_case("scale in place", c, 0);
  c = (sp_cmd){.op = SP_OP_SOFTMAX};
  c.dst = t4(D, SP_DTYPE_F32, 1000, 7, 1), c.src[0] = t4(X, SP_DTYPE_F32, 1000, 7, 1);
  memcpy(&c.param[0], &sc, 4);
  run_case("softmax", c, 1e-5);
  const uint32_t pairs[][2] = {{SP_DTYPE_F16, SP_DTYPE_F32}, {SP_DTYPE_BF16, SP_DTYPE_F32}, {SP_DTYPE_F32, SP_DTYPE_F16},
                               {SP_DTYPE_F32, SP_DTYPE_BF16}, {SP_DTYPE_F16, SP_DTYPE_BF16}};
  for (int i = 0; i < 5; i++) {
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
      c.dst = t4(D, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = t4(X, SP_DTYPE_F32, Dh, Hq, T);
      c.src[1] = t4(I, SP_DTYPE_I32, T, 1, 1);
      if (ff) c.src[2] = t4(F, SP_DTYPE_F32, 16, 1, 1);
      c.param[0] = 32, c.param[2] = (uint32_t)mode; /* n_rot 32 < D: the tail is copied */
      memcpy(&c.param[1], &theta, 4), memcpy(&c.param[3], &one, 4);
      char name[64];
      snprintf(name, sizeof name, "rope mode %d%s", mode, ff ? " factors" : "");
      run_case(name, c, 1e-5);
      c.dst = c.src[0], c.param[0] = 64;
      if (ff) c.src[2] = t4(F, SP_DTYPE_F32, 32, 1, 1);
      snprintf(name, sizeof name, "rope mode %d%s in place", mode, ff ? " factors" : "");
      run_case(name, c, 1e-5);
    }
  for (uint32_t dt = SP_DTYPE_F32; dt <= SP_DTYPE_F16; dt++)
    for (uint32_t window = 0; window <= 100; window += 100) {
      fill(K, dt, Dh * Hkv * C), fill(V, dt, Dh * Hkv * C);
      sp_cmd c = {.op = SP_OP_ATTENTION};
      float scale = 0.125f;
      c.dst = t4(D, SP_DTYPE_F32, Dh, Hq, T), c.src[0] = t4(X, SP_DTYPE_F32, Dh, Hq, T);
      c.src[1] = t4(K, dt, Dh, Hkv, C), c.src[2] = t4(V, dt, Dh, Hkv, C), c.src[3] = t4(I, SP_DTYPE_I32, T, 1, 1);
      memcpy(&c.param[0], &scale, 4);
      c.param[1] = window;
      char name[64];
      snprintf(name, sizeof name, "attention %s cache%s", dt == SP_DTYPE_F16 ? "f16" : "f32",
               window ? " window 100" : "");
      run_case(name, c, dt == SP_DTYPE_F16 ? 3e-3 : 1e-5);
    }
  /* head size 128, one kv head for all */
  fill(X, SP_DTYPE_F32, 128 * 4 * T), fill(K, SP_DTYPE_F16, 128 * C), fill(V, SP_DTYPE_F16, 128 * C);
  sp_cmd c = {.op = SP_OP_ATTENTION};
  float scale = 1.0f / sqrtf(128.0f);
  c.dst = t4(D, SP_DTYPE_F32, 128, 4, T), c.src[0] = t4(X, SP_DTYPE_F32, 128, 4, T);
  c.src[1] = t4(K, SP_DTYPE_F16, 128, 1, C), c.src[2] = t4(V, SP_DTYPE_F16, 128, 1, C);
  c.src[3] = t4(I, SP_DTYPE_I32, T, 1, 1);
  memcpy(&c.param[0], &scale, 4);
  run_case("attention f16 cache D=128 Hkv=1", c, 3e-3);
}

/* Validates a list in place (strides normalized), as the runtime does
 * before any backend sees it. */
static bool validated(sp_cmd *cmds, uint32_t n) {
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  for (uint32_t i = 0; i < n; i++)
    if (sp_validate_cmd(&vctx, &cmds[i], i, msg, sizeof msg)) {
      printf("FAIL list cmd[%u] invalid: %s\n", i, msg);
      failures++;
      return false;
    }
  return true;
}

/* ---- a transformer layer as one list (the guest's, guest/llm/model.c) ---- */

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

/* Runs the layer list on both backends (one submit each) and compares
 * every activation it writes. The tolerance is a layer's, not an op's:
 * an activation one ulp apart can round to another int8 before a
 * quantized product, so differences grow along the list (as on CUDA). */
static void layer_case_run(uint32_t wdt, uint32_t T) {
  layer_case L = {.E = 576, .F = 1536, .Hq = 9, .Hkv = 3, .Dh = 64, .T = T, .C = 128, .wdt = wdt};
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
  char name[64];
  snprintf(name, sizeof name, "layer list %s T=%u", sp_dtype_name(wdt), T);
  if (!validated(cmds, n)) return;
  cases++;
  memcpy(snapshot, mem, USED);
  sp_error_t *err = cpu_run(cmds, n);
  memcpy(cpu_out, mem, USED);
  memcpy(mem, snapshot, USED);
  if (!err) err = vk_run(cmds, n, false);
  if (err) {
    printf("FAIL %-32s %s\n", name, sp_error_message(err));
    sp_error_free(err), failures++;
    memcpy(mem, snapshot, USED);
    return;
  }
  const struct { const char *what; uint32_t at, n; } outs[] = {
      {"xb", L.xb, L.E * T}, {"q", L.q, L.E * T}, {"k", L.k, kv * T}, {"v", L.v, kv * T}, {"att", L.att, L.E * T},
      {"gate", L.gate, L.F * T}, {"up", L.up, L.F * T}, {"x", L.x, L.E * T}};
  char report[512];
  int at = 0;
  double worst = 0;
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    double e = rel_err((const float *)(mem + outs[i].at), (const float *)(cpu_out + outs[i].at), outs[i].n);
    worst = e > worst ? e : worst;
    at += snprintf(report + at, sizeof report - (size_t)at, " %s %.1e", outs[i].what, e);
  }
  bool ok = worst <= 1e-2;
  printf("%s %-32s%s (bound 1e-02)\n", ok ? "ok  " : "FAIL", name, report);
  failures += !ok;
  memcpy(mem, snapshot, USED);
}

static void layer_cases(void) {
  const uint32_t dts[] = {SP_DTYPE_Q4_1, SP_DTYPE_Q8_0, SP_DTYPE_F16};
  for (int i = 0; i < 3; i++) {
    layer_case_run(dts[i], 1);
    layer_case_run(dts[i], 16);
  }
}

/* argmax and topk with ties, -0 and NaN: the same indices as the CPU, exactly. */
static void argmax_topk_cases(void) {
  const uint32_t shapes[][2] = {{128256, 1}, {49152, 3}, {1001, 2}};
  for (int s = 0; s < 3; s++) {
    uint32_t n = shapes[s][0], m = shapes[s][1];
    fill(X, SP_DTYPE_F32, (uint64_t)n * m);
    float *x = (float *)(mem + X);
    x[n / 3] = 5.0f, x[n / 2] = 5.0f, x[7] = NAN; /* a tie: the first wins */
    if (m > 1) x[n + 10] = NAN, x[n + 11] = 7.0f, x[n + n - 1] = 7.0f, x[n + 5] = -0.0f;
    sp_cmd c = {.op = SP_OP_ARGMAX};
    c.dst = t4(D, SP_DTYPE_I32, m, 1, 1), c.src[0] = t4(X, SP_DTYPE_F32, n, m, 1);
    char name[64];
    snprintf(name, sizeof name, "argmax %ux%u", n, m);
    run_case(name, c, 0);
    uint32_t k = s == 0 ? 40 : s == 1 ? 8 : 1001;
    c = (sp_cmd){.op = SP_OP_TOPK};
    c.dst = t4(D, SP_DTYPE_I32, k, m, 1), c.src[0] = t4(X, SP_DTYPE_F32, n, m, 1);
    snprintf(name, sizeof name, "topk %u of %ux%u", k, n, m);
    run_case(name, c, 0);
  }
  float *x = (float *)(mem + X);
  for (int i = 0; i < 64; i++) x[i] = NAN;
  sp_cmd c = {.op = SP_OP_ARGMAX};
  c.dst = t4(D, SP_DTYPE_I32, 1, 1, 1), c.src[0] = t4(X, SP_DTYPE_F32, 64, 1, 1);
  run_case("argmax all NaN", c, 0);
}

static bool contains(const sp_error_t *err, const char *what) {
  return err && strstr(sp_error_message(err), what) != NULL;
}

static void expect(bool ok, const char *name, const sp_error_t *err) {
  cases++;
  printf("%s %-32s %s\n", ok ? "ok  " : "FAIL", name, err ? sp_error_message(err) : "(no error)");
  failures += !ok;
}

/* An index out of range: SP_E_BOUNDS naming the command, the list stopped
 * before the command wrote anything (and nothing after it ran). */
static void bounds_cases(void) {
  fill(W, SP_DTYPE_Q8_0, 256 * 100), fill(X, SP_DTYPE_F32, 192 * 3);
  memset(mem + D, 0x55, 256 * 8 * 4);
  int32_t ids[5] = {3, 99, 100, 42, -1};
  memcpy(mem + I, ids, sizeof ids);
  sp_cmd list[3] = {{.op = SP_OP_SCALE}, {.op = SP_OP_GET_ROWS}, {.op = SP_OP_SCALE}};
  float two = 2.0f;
  list[0].dst = list[0].src[0] = t4(X, SP_DTYPE_F32, 192, 3, 1);
  memcpy(&list[0].param[0], &two, 4);
  list[1].dst = t4(D, SP_DTYPE_F32, 256, 5, 1), list[1].src[0] = t4(W, SP_DTYPE_Q8_0, 256, 100, 1);
  list[1].src[1] = t4(I, SP_DTYPE_I32, 5, 1, 1);
  list[2] = list[0];
  float x0;
  memcpy(&x0, mem + X, 4);
  if (!validated(list, 3)) return;
  sp_error_t *err = vk_run(list, 3, false);
  bool untouched = true;
  for (uint32_t i = 0; i < 256 * 5 * 4; i++) untouched &= mem[D + i] == 0x55;
  float x1;
  memcpy(&x1, mem + X, 4);
  if (!untouched || x1 != x0 * 2.0f) printf("     dst untouched %d, x %g -> %g\n", untouched, x0, x1);
  expect(err && sp_error_status(err) == SP_E_BOUNDS && contains(err, "cmd[1]") && contains(err, "[2] = 100") &&
             untouched && x1 == x0 * 2.0f,
         "get_rows index out of range", err);
  sp_error_free(err);
  /* set_rows, and attention's positions */
  sp_cmd c = {.op = SP_OP_SET_ROWS};
  int32_t bad[3] = {7, 31, 1};
  memcpy(mem + I, bad, sizeof bad);
  c.dst = t4(D, SP_DTYPE_F16, 192, 31, 1), c.src[0] = t4(X, SP_DTYPE_F32, 192, 3, 1), c.src[1] = t4(I, SP_DTYPE_I32, 3, 1, 1);
  if (!validated(&c, 1)) return;
  err = vk_run(&c, 1, false);
  expect(err && sp_error_status(err) == SP_E_BOUNDS && contains(err, "cmd[0]") && contains(err, "= 31"),
         "set_rows index out of range", err);
  sp_error_free(err);
  int32_t pos[2] = {3, 300};
  memcpy(mem + I, pos, sizeof pos);
  c = (sp_cmd){.op = SP_OP_ATTENTION};
  float scale = 0.125f;
  c.dst = t4(D, SP_DTYPE_F32, 64, 4, 2), c.src[0] = t4(X, SP_DTYPE_F32, 64, 4, 2);
  c.src[1] = t4(K, SP_DTYPE_F16, 64, 2, 300), c.src[2] = t4(V, SP_DTYPE_F16, 64, 2, 300);
  c.src[3] = t4(I, SP_DTYPE_I32, 2, 1, 1);
  memcpy(&c.param[0], &scale, 4);
  if (!validated(&c, 1)) return;
  err = vk_run(&c, 1, false);
  expect(err && sp_error_status(err) == SP_E_BOUNDS && contains(err, "= 300"), "attention position out of range", err);
  sp_error_free(err);
}

/* A decode-like list (get_rows of a token, rmsnorm, matmul, argmax), run,
 * then replayed with `same` after the guest changed the token and weights'
 * input: the replay reads the new values, and equals the CPU's. */
static void replay_cases(void) {
  const uint32_t k = 256, n = 300;
  fill(W, SP_DTYPE_Q4_K, 256 * 64), fill(V, SP_DTYPE_Q6_K, (uint64_t)k * n), fill(F, SP_DTYPE_F32, k);
  sp_cmd list[4] = {{.op = SP_OP_GET_ROWS}, {.op = SP_OP_RMSNORM}, {.op = SP_OP_MATMUL}, {.op = SP_OP_ARGMAX}};
  list[0].dst = t4(X, SP_DTYPE_F32, k, 1, 1), list[0].src[0] = t4(W, SP_DTYPE_Q4_K, k, 64, 1);
  list[0].src[1] = t4(I, SP_DTYPE_I32, 1, 1, 1);
  float eps = 1e-6f;
  list[1].dst = list[1].src[0] = t4(X, SP_DTYPE_F32, k, 1, 1), list[1].src[1] = t4(F, SP_DTYPE_F32, k, 1, 1);
  memcpy(&list[1].param[0], &eps, 4);
  list[2].dst = t4(D, SP_DTYPE_F32, n, 1, 1), list[2].src[0] = t4(V, SP_DTYPE_Q6_K, k, n, 1);
  list[2].src[1] = t4(X, SP_DTYPE_F32, k, 1, 1);
  list[3].dst = t4(K, SP_DTYPE_I32, 1, 1, 1), list[3].src[0] = t4(D, SP_DTYPE_F32, n, 1, 1);
  if (!validated(list, 4)) return;
  for (int step = 0; step < 3; step++) {
    int32_t token = 5 + 20 * step;
    memcpy(mem + I, &token, 4);
    memcpy(snapshot, mem, USED);
    sp_error_t *err = cpu_run(list, 4);
    float want[300];
    int32_t want_id = -1, got_id = -2;
    memcpy(want, mem + D, sizeof want), memcpy(&want_id, mem + K, 4);
    memcpy(mem, snapshot, USED);
    if (!err) err = vk_run(list, 4, step > 0);
    float got[300];
    memcpy(got, mem + D, sizeof got), memcpy(&got_id, mem + K, 4);
    double e = rel_err(got, want, n);
    char name[64];
    snprintf(name, sizeof name, "decode list, %s", step ? "replayed" : "recorded");
    cases++;
    bool ok = !err && e <= 5e-4 && got_id == want_id;
    printf("%s %-32s rel err %.2e, argmax %d (cpu %d)%s%s\n", ok ? "ok  " : "FAIL", name, e, got_id, want_id,
           err ? ": " : "", err ? sp_error_message(err) : "");
    failures += !ok;
    sp_error_free(err);
  }
}

/* A product whose quantized activations would pass the binding's scratch
 * budget (the view's host_budget) is refused with SP_E_LIMIT, naming the
 * need, before anything runs; within the budget it runs. */
static void budget_cases(void) {
  sp_memory_view tight = {mem, REGION, REGION, false, -1, 8192};
  sp_error_t *err = sp_backend_grow(vk, vk_b, &tight);
  if (err) {
    expect(false, "scratch budget: grow", err);
    sp_error_free(err);
    return;
  }
  fill(W, SP_DTYPE_Q8_0, 512 * 8), fill(X, SP_DTYPE_F32, 512 * 17);
  sp_cmd c = {.op = SP_OP_MATMUL};
  c.dst = t4(D, SP_DTYPE_F32, 8, 17, 1), c.src[0] = t4(W, SP_DTYPE_Q8_0, 512, 8, 1);
  c.src[1] = t4(X, SP_DTYPE_F32, 512, 17, 1);
  if (!validated(&c, 1)) return;
  err = vk_run(&c, 1, false);
  expect(err && sp_error_status(err) == SP_E_LIMIT && contains(err, "cmd[0]: matmul: needs 12.8 KiB of scratch; the budget is 8 KiB"), "scratch over budget refused", err);
  sp_error_free(err);
  c.dst.ne[1] = c.src[1].ne[1] = 3;
  if (!validated(&c, 1)) return;
  err = vk_run(&c, 1, false);
  expect(!err, "scratch within budget runs", err);
  sp_error_free(err);
  sp_memory_view view = {mem, REGION, REGION, false, -1, 0};
  err = sp_backend_grow(vk, vk_b, &view);
  sp_error_free(err);
}

/* Imports samepage must refuse before the driver sees them: a misaligned
 * base, a range with a PROT_NONE page, a range reaching unmapped memory,
 * and a grow over a PROT_NONE page. Each error names why. */
static void import_cases(sp_backend_new_fn make, const sp_backend_options *opts) {
  (void)make, (void)opts;
  size_t len = 1u << 20;
  uint8_t *r = mmap(NULL, 4 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return;
  uint8_t *base = (uint8_t *)(((uintptr_t)r + 65535) & ~(uintptr_t)65535);
  void *b = NULL;
  sp_memory_view v = {base + 100, len, len, false, -1, 0};
  sp_error_t *err = sp_backend_adopt(vk, &v, &b);
  expect(err && contains(err, "refusing") && contains(err, "not a multiple"), "import misaligned refused", err);
  sp_error_free(err);
  if (!err) sp_backend_release(vk, b);
  mprotect(base + len / 2, 4096, PROT_NONE);
  v = (sp_memory_view){base, len, len, false, -1, 0};
  err = sp_backend_adopt(vk, &v, &b);
  expect(err && contains(err, "refusing") && contains(err, "PROT_NONE"), "import with PROT_NONE page refused", err);
  sp_error_free(err);
  if (!err) sp_backend_release(vk, b);
  /* adopt the readable half, then grow over the PROT_NONE page */
  v = (sp_memory_view){base, len / 2, len, false, -1, 0};
  err = sp_backend_adopt(vk, &v, &b);
  expect(!err, "import of the readable half", err);
  if (!err) {
    sp_memory_view g = {base, len, len, false, -1, 0};
    sp_error_t *gerr = sp_backend_grow(vk, b, &g);
    expect(gerr && contains(gerr, "PROT_NONE"), "grow over a PROT_NONE page refused", gerr);
    sp_error_free(gerr);
    sp_backend_release(vk, b);
  }
  sp_error_free(err);
  munmap(base + len, len);
  v = (sp_memory_view){base + len - 65536, 2 * 65536, 2 * 65536, false, -1, 0};
  mprotect(base + len / 2, 4096, PROT_READ | PROT_WRITE);
  err = sp_backend_adopt(vk, &v, &b);
  expect(err && contains(err, "not mapped"), "import reaching unmapped memory refused", err);
  sp_error_free(err);
  if (!err) sp_backend_release(vk, b);
}

/* ---- residency: frozen weights read from device-local copies ---- */

enum { RG = 0xA80000 };     /* get_rows' output, beside the product's at D */
#define RES_REGION (16u << 20) /* an actor's own memory: the case tensors, below I + 64 */
#define RES_ID 0x5eed5eed5eed5eedull
#define RES_OUT (100 * 3 * 4 + 256 * 5 * 4) /* the two outputs' bytes */

/* A binding over memory of its own (as another actor's), which holds the
 * case's inputs at the same addresses as mem. */
typedef struct res_actor {
  uint8_t *raw, *base;
  void *b;
} res_actor;

static bool res_adopt(res_actor *a) {
  a->raw = mmap(NULL, RES_REGION + (1u << 16), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a->raw == MAP_FAILED) return a->raw = NULL, false;
  a->base = (uint8_t *)(((uintptr_t)a->raw + 65535) & ~(uintptr_t)65535);
  sp_memory_view view = {a->base, RES_REGION, RES_REGION, false, -1, 0};
  sp_error_t *err = sp_backend_adopt(vk, &view, &a->b);
  if (!err) return true;
  expect(false, "residency: adopt", err);
  sp_error_free(err);
  munmap(a->raw, RES_REGION + (1u << 16));
  return a->raw = NULL, false;
}

static void res_release(res_actor *a) {
  if (!a->raw) return;
  sp_backend_release(vk, a->b);
  munmap(a->raw, RES_REGION + (1u << 16));
  a->raw = NULL;
}

/* [matmul dst[100, 3] = X[256, 3] x W^T, get_rows dst[256, 5] = rows of W]
 * over one weight W[dt: 256, 100]; returns W's bytes. */
static uint64_t weight_list(uint32_t dt, sp_cmd list[2]) {
  int32_t ids[5] = {3, 99, 0, 42, 3};
  memcpy(mem + I, ids, sizeof ids);
  sp_tensor w = t4(W, dt, 256, 100, 1);
  list[0] = op2(SP_OP_MATMUL, t4(D, SP_DTYPE_F32, 100, 3, 1), w, t4(X, SP_DTYPE_F32, 256, 3, 1));
  list[1] = op2(SP_OP_GET_ROWS, t4(RG, SP_DTYPE_F32, 256, 5, 1), w, t4(I, SP_DTYPE_I32, 5, 1, 1));
  return weight_bytes(dt, 256, 100);
}

/* The guest of a writes mem's inputs of the list (weights, activations,
 * indices) into its own memory: plain stores, no flush. */
static void res_store(const res_actor *a, const sp_cmd list[2]) {
  const sp_tensor *in[3] = {&list[0].src[0], &list[0].src[1], &list[1].src[1]};
  for (int i = 0; i < 3; i++) memcpy(a->base + in[i]->offset, mem + in[i]->offset, sp_tensor_extent(in[i]));
}

/* Runs the weight list on a (NULL: the unfrozen binding vk_b over mem),
 * its two outputs into out. */
static sp_error_t *run_weights(const res_actor *a, const sp_cmd list[2], bool same, uint8_t out[RES_OUT]) {
  const uint8_t *base = a ? a->base : mem;
  sp_error_t *err = sp_backend_submit(vk, a ? a->b : vk_b, list, 2, same);
  if (!err) err = sp_backend_wait(vk, a ? a->b : vk_b);
  memcpy(out, base + D, 100 * 3 * 4), memcpy(out + 100 * 3 * 4, base + RG, 256 * 5 * 4);
  return err;
}

/* One check: the outputs equal want bit for bit (and differ from other,
 * when given: the case can tell the two apart). */
static void expect_same(const char *name, sp_error_t *err, const uint8_t *got, const uint8_t *want,
                        const uint8_t *other) {
  bool ok = !err && memcmp(got, want, RES_OUT) == 0 && (!other || memcmp(want, other, RES_OUT) != 0);
  expect(ok, name, err);
  sp_error_free(err);
}

/* Weight dtype dt frozen by an actor: the products and rows equal the
 * unfrozen binding's bit for bit; bytes rewritten without a flush are not
 * seen (the copy is read), and after a flush a replayed list sees them. */
static void frozen_dtype_case(uint32_t dt) {
  sp_cmd list[2];
  uint64_t wlen = weight_list(dt, list);
  res_actor r;
  if (!validated(list, 2) || !res_adopt(&r)) return;
  static uint8_t old_ref[RES_OUT], new_ref[RES_OUT], got[RES_OUT];
  char name[64];
  fill(W, dt, 256 * 100), fill(X, SP_DTYPE_F32, 256 * 3), res_store(&r, list);
  sp_error_t *err = run_weights(NULL, list, false, old_ref);
  if (!err) err = sp_backend_freeze(vk, r.b, W, wlen, 0);
  if (!err) err = run_weights(&r, list, false, got);
  snprintf(name, sizeof name, "frozen %s: as unfrozen", sp_dtype_name(dt));
  expect_same(name, err, got, old_ref, NULL);
  fill(W, dt, 256 * 100), res_store(&r, list); /* the guest rewrites its weights, no flush */
  err = run_weights(NULL, list, false, new_ref);
  if (!err) err = run_weights(&r, list, false, got);
  snprintf(name, sizeof name, "frozen %s: copy read, no flush", sp_dtype_name(dt));
  expect_same(name, err, got, old_ref, new_ref);
  err = sp_backend_flush(vk, r.b, W, wlen);
  if (!err) err = run_weights(&r, list, true, got);
  snprintf(name, sizeof name, "frozen %s: flushed, replayed", sp_dtype_name(dt));
  expect_same(name, err, got, new_ref, old_ref);
  res_release(&r);
}

/* A weight reaching past the end of a frozen range is read from guest
 * memory: its new bytes are seen without a flush. */
static void straddle_case(void) {
  sp_cmd list[2];
  uint64_t wlen = weight_list(SP_DTYPE_Q8_0, list);
  res_actor r;
  if (!validated(list, 2) || !res_adopt(&r)) return;
  static uint8_t old_ref[RES_OUT], new_ref[RES_OUT], got[RES_OUT];
  fill(W, SP_DTYPE_Q8_0, 256 * 100), fill(X, SP_DTYPE_F32, 256 * 3), res_store(&r, list);
  sp_error_t *err = run_weights(NULL, list, false, old_ref);
  if (!err) err = sp_backend_freeze(vk, r.b, W, wlen - 34, 0); /* all but the last block */
  if (!err) err = run_weights(&r, list, false, got);
  expect_same("frozen range ends inside a weight", err, got, old_ref, NULL);
  fill(W, SP_DTYPE_Q8_0, 256 * 100), res_store(&r, list);
  err = run_weights(NULL, list, false, new_ref);
  if (!err) err = run_weights(&r, list, true, got);
  expect_same("  ... read from guest memory", err, got, new_ref, old_ref);
  res_release(&r);
}

static void stats_are(const char *name, sp_residency_stats a, sp_residency_stats b, uint64_t bytes, uint64_t copies,
                      uint64_t hits, uint64_t shared) {
  bool ok = b.bytes - a.bytes == bytes && b.copies - a.copies == copies && b.shared_hits - a.shared_hits == hits &&
            b.shared_bytes - a.shared_bytes == shared;
  cases++, failures += !ok;
  printf("%s %-32s bytes +%llu, copies +%llu, shared hits +%llu, shared bytes +%llu\n", ok ? "ok  " : "FAIL", name,
         (unsigned long long)(b.bytes - a.bytes), (unsigned long long)(b.copies - a.copies),
         (unsigned long long)(b.shared_hits - a.shared_hits), (unsigned long long)(b.shared_bytes - a.shared_bytes));
}

/* Two actors freeze one identity: one copy, counted once. Both guests then
 * rewrite part of it, and one flushes: it gets a copy of its own
 * (copy-on-flush), which its replayed list reads (recorded again: the copy
 * moved), while the other's results do not change. Releasing both frees
 * every byte. */
static void shared_case(void) {
  sp_cmd list[2];
  uint64_t wlen = weight_list(SP_DTYPE_Q4_K, list), half = 144 * 50; /* rows 0..49 */
  res_actor s1, s2;
  if (!validated(list, 2) || !res_adopt(&s1)) return;
  if (!res_adopt(&s2)) {
    res_release(&s1);
    return;
  }
  static uint8_t old_ref[RES_OUT], new_ref[RES_OUT], got[RES_OUT];
  fill(W, SP_DTYPE_Q4_K, 256 * 100), fill(X, SP_DTYPE_F32, 256 * 3), res_store(&s1, list), res_store(&s2, list);
  sp_residency_stats s0 = sp_backend_residency(vk);
  sp_error_t *err = run_weights(NULL, list, false, old_ref);
  if (!err) err = sp_backend_freeze(vk, s1.b, W, wlen, RES_ID);
  if (!err) err = sp_backend_freeze(vk, s2.b, W, wlen, RES_ID);
  if (err) expect(false, "shared freeze", err), sp_error_free(err);
  stats_are("one copy for two actors", s0, sp_backend_residency(vk), wlen, 1, 1, wlen);
  expect_same("shared copy, first actor", run_weights(&s1, list, false, got), got, old_ref, NULL);
  expect_same("shared copy, second actor", run_weights(&s2, list, false, got), got, old_ref, NULL);
  fill(W, SP_DTYPE_Q4_K, 50 * 256), res_store(&s1, list), res_store(&s2, list); /* rows 0..49 change */
  err = run_weights(NULL, list, false, new_ref);
  if (!err) err = sp_backend_flush(vk, s1.b, W, half);
  if (err) expect(false, "partial flush", err), sp_error_free(err);
  stats_are("copy-on-flush", s0, sp_backend_residency(vk), 2 * wlen, 3, 1, 0);
  expect_same("flushed actor, replayed", run_weights(&s1, list, true, got), got, new_ref, old_ref);
  expect_same("other actor unchanged", run_weights(&s2, list, true, got), got, old_ref, new_ref);
  err = sp_backend_freeze(vk, s2.b, W, wlen, RES_ID); /* a restore declaring it again: kept */
  if (err) expect(false, "freeze again", err), sp_error_free(err);
  stats_are("same identity again: kept", s0, sp_backend_residency(vk), 2 * wlen, 3, 2, 0);
  res_release(&s1);
  res_release(&s2);
  stats_are("released: no bytes held", s0, sp_backend_residency(vk), 0, 3, 2, 0);
}

/* The memory layer (a unified device turns it on through the test hook):
 * every weight dtype frozen, a straddling weight, sharing. Then the
 * layer as the device had it. */
static void residency_cases(void *lib) {
  typedef sp_error_t *(*residency_fn)(sp_backend *, bool);
  residency_fn set = (residency_fn)dlsym(lib, "sp_backend_vulkan_test_residency");
  bool had = sp_backend_caps_of(vk).residency;
  sp_error_t *err = set ? set(vk, true) : sp_error_new("no sp_backend_vulkan_test_residency");
  if (!err) err = sp_backend_check(vk);
  if (!err && !sp_backend_caps_of(vk).residency) err = sp_error_new("caps.residency is false");
  if (err) {
    expect(false, "residency on", err);
    sp_error_free(err);
    return;
  }
  printf("-- residency: frozen weights from device-local copies --\n");
  for (size_t i = 0; i < N_WEIGHT_TYPES; i++) frozen_dtype_case(weight_types[i]);
  straddle_case();
  shared_case();
  sp_error_free(set(vk, had));
}

/* --timing (not a check, not run by ctest): decode-sized products on
 * both backends, milliseconds per list, for the record. */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void timing_cases(void) {
  const uint32_t shapes[][4] = {{32, 1, 1, SP_DTYPE_F32},       {576, 1536, 1, SP_DTYPE_Q4_1},
                                {576, 12288, 1, SP_DTYPE_Q4_1}, {2048, 2048, 1, SP_DTYPE_Q8_0},
                                {576, 1536, 64, SP_DTYPE_Q4_1}, {576, 1536, 1, SP_DTYPE_F16}};
  for (int s = 0; s < 6; s++) {
    uint32_t k = shapes[s][0], n = shapes[s][1], m = shapes[s][2], dt = shapes[s][3];
    fill(W, dt, (uint64_t)k * n), fill(X, SP_DTYPE_F32, (uint64_t)k * m);
    sp_cmd c = {.op = SP_OP_MATMUL};
    c.dst = t4(D, SP_DTYPE_F32, n, m, 1), c.src[0] = t4(W, dt, k, n, 1), c.src[1] = t4(X, SP_DTYPE_F32, k, m, 1);
    if (!validated(&c, 1)) return;
    double ms[2];
    for (int b = 0; b < 2; b++) {
      sp_error_t *err = b ? vk_run(&c, 1, false) : cpu_run(&c, 1);
      double t0 = now_ms();
      for (int r = 0; r < 5 && !err; r++) err = b ? vk_run(&c, 1, true) : cpu_run(&c, 1);
      ms[b] = (now_ms() - t0) / 5;
      if (err) printf("timing: %s\n", sp_error_message(err)), sp_error_free(err);
    }
    printf("timing matmul %s K=%u N=%u M=%u: cpu %.2f ms, vulkan %.2f ms\n", sp_dtype_name(dt), k, n, m, ms[0], ms[1]);
  }
}

/* The same op cases on the shaders built without 64-bit floats (as on a
 * device without them, MoltenVK) and with products as a workgroup per
 * output (as on a GPU), within the same tolerances: the device's own fma,
 * exp, sin and cos stand in for the CPU's, and sums run in another order.
 * Then back to what the device chose. */
static void gpu_like_cases(void *lib) {
  typedef sp_error_t *(*shaders_fn)(sp_backend *, bool, bool);
  shaders_fn set = (shaders_fn)dlsym(lib, "sp_backend_vulkan_test_shaders");
  sp_error_t *err = set ? set(vk, false, true) : sp_error_new("no sp_backend_vulkan_test_shaders");
  if (err) {
    expect(false, "shaders without 64-bit floats", err);
    sp_error_free(err);
    return;
  }
  printf("-- the same on the shaders without 64-bit floats, products split over workgroups --\n");
  matmul_cases();
  simple_cases();
  rope_attention_cases();
  layer_cases();
  replay_cases();
  residency_cases(lib);
  sp_backend_caps caps = sp_backend_caps_of(vk);
  err = set(vk, true, !caps.unified_memory);
  if (err && !strstr(sp_error_message(err), "no 64-bit floats")) expect(false, "the device's shaders again", err);
  sp_error_free(err);
}

static struct sp_knobs knobs; /* the environment's (SP_VULKAN_LIB, SP_VULKAN_DEVICE) */

static void *open_library(void) {
  const char *path = knobs.vulkan_lib;
#ifdef SP_VULKAN_BUILD_LIB
  if (!path) path = SP_VULKAN_BUILD_LIB;
#endif
  return dlopen(path ? path : SP_BACKEND_VULKAN_LIBRARY, RTLD_NOW | RTLD_LOCAL);
}

int main(int argc, char **argv) {
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("FAIL knobs: %s\n", sp_error_message(err)), 1;
  void *lib = open_library();
  if (!lib) {
    printf("skip: %s\n", dlerror());
    return 77;
  }
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, SP_BACKEND_VULKAN_SYMBOL);
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true, .knobs = knobs};
  err = make ? make(&opts, &vk) : sp_error_new("no %s", SP_BACKEND_VULKAN_SYMBOL);
  if (err) {
    printf("skip: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 77;
  }
  if ((err = sp_backend_check(vk))) { /* its tables, as sp_backend_load registers them */
    printf("FAIL registration: %s\n", sp_error_message(err));
    return 1;
  }
  uint8_t *raw = mmap(NULL, REGION + (1u << 16), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  snapshot = malloc(USED), cpu_out = malloc(USED);
  if (raw == MAP_FAILED || !snapshot || !cpu_out) return 1;
  mem = (uint8_t *)(((uintptr_t)raw + 65535) & ~(uintptr_t)65535); /* 64 KiB aligned, as guest regions are */
  sp_memory_view view = {mem, REGION, REGION, false, -1, 0};
  err = sp_backend_cpu_new(0, &cpu);
  if (!err) err = sp_backend_adopt(cpu, &view, &cpu_b);
  /* Vulkan sees the region grow once: the import is made again */
  sp_memory_view first = {mem, REGION_FIRST, REGION, false, -1, 0};
  if (!err) err = sp_backend_adopt(vk, &first, &vk_b);
  if (!err) err = sp_backend_grow(vk, vk_b, &view);
  if (err) {
    printf("FAIL setup: %s\n", sp_error_message(err));
    return 1;
  }
  sp_backend_caps caps = sp_backend_caps_of(vk);
  void *dbase = sp_backend_device_base(vk, vk_b, &view);
  printf("device: zero_copy %d, unified_memory %d\n", caps.zero_copy, caps.unified_memory);
  printf("pointer_identity: %s\n", dbase == (void *)mem ? "true" : "false");
  cases++;
  if (caps.unified_memory && dbase != (void *)mem) /* lavapipe's device address is the host pointer */
    printf("FAIL pointer identity on a unified-memory device: %p, guest memory at %p\n", dbase, (void *)mem),
        failures++;
  cases++; /* copies of frozen ranges only where the device reads host memory over a bus */
  if (caps.unified_memory == (caps.residency || vk->memory != NULL))
    printf("FAIL residency %d (memory layer %s) on a device with unified memory %d\n", caps.residency,
           vk->memory ? "set" : "none", caps.unified_memory),
        failures++;
  if (argc > 1 && strcmp(argv[1], "--timing") == 0) {
    timing_cases();
    return 0;
  }
  matmul_cases();
  row_cases();
  simple_cases();
  rope_attention_cases();
  argmax_topk_cases();
  layer_cases();
  bounds_cases();
  replay_cases();
  budget_cases();
  import_cases(make, &opts);
  residency_cases(lib);
  gpu_like_cases(lib);
  printf("%d of %d cases failed\n", failures, cases);
  sp_backend_release(vk, vk_b);
  sp_backend_release(cpu, cpu_b);
  sp_backend_free(vk);
  sp_backend_free(cpu);
  return failures ? 1 : 0;
}
