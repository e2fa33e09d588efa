/*
 * test_vulkan_local.c: device-local ranges on the Vulkan backend (the
 * memory layer's device_local, sync, local_zero and flush; vk_residency.c),
 * on whatever device is present: the test hook
 * sp_backend_vulkan_test_residency turns the layer on where the device has
 * unified memory (lavapipe), so the mirror path runs there.
 *
 * Each case runs one list (a quantized product, an add, get_rows and
 * set_rows whose index tensors lie in the range, an argmax writing guest
 * memory outside it) on two actors holding the same bytes: a reference
 * with no device-local range, and one that declares the range. Checked:
 *  - the results are the reference's bytes, byte for byte;
 *  - the mirror is what the list wrote: guest bytes in the range still
 *    hold the old values after the list, and the new ones after sync;
 *    bytes outside the range are written in guest memory at once;
 *  - local_zero zeroes what sync then returns (aligned: a fill; unaligned:
 *    the bytes around are kept), guest memory untouched until sync;
 *  - flush uploads bytes the guest rewrote, and a replayed list reads them;
 *  - a list recorded before the range was declared (or before its weight
 *    was frozen) and replayed after reads and writes the mirror (copy);
 *  - the residency stats count the mirror's bytes and transfers, and
 *    release returns them.
 * Exits 77 (skip) without the library or a Vulkan device.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/knobs.h"
#include "core/validate.h"

#define REGION (4u << 20)
/* guest addresses: the weight outside the range, then the range L */
enum {
  W = 0x10000,   /* Q8_0 [256, 100]: 100 rows of 8 blocks of 34 bytes */
  AM = 0x30000,  /* argmax of Y: i32 [3], guest memory outside L */
  L = 0x100000,  /* the device-local range */
  L_LEN = 0x40000,
  X = L,            /* f32 [256, 3] */
  D = L + 0x1000,   /* product: f32 [100, 3] */
  Y = L + 0x2000,   /* D + D: f32 [100, 3] */
  I = L + 0x3000,   /* get_rows' ids: i32 [5] */
  I2 = L + 0x3100,  /* set_rows' ids: i32 [3] */
  RG = L + 0x4000,  /* rows of W: f32 [256, 5] */
  C = L + 0x8000,   /* a cache: f16 [256, 8] */
  C_LEN = 256 * 8 * 2,
};
#define N_CMDS 5

static sp_backend *vk;
static int failures, cases;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t next_u32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static void check(bool ok, const char *name, const char *detail) {
  cases++, failures += !ok;
  printf("%s %-48s %s\n", ok ? "ok  " : "FAIL", name, detail ? detail : "");
}

static void check_err(sp_error_t *err, const char *what) {
  if (!err) return;
  check(false, what, sp_error_message(err));
  sp_error_free(err);
}

/* ---- an actor: memory of its own, adopted by the Vulkan backend ---- */

typedef struct actor {
  uint8_t *raw, *base;
  void *b;
} actor;

static bool actor_new(actor *a) {
  a->raw = mmap(NULL, REGION + (1u << 16), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a->raw == MAP_FAILED) return a->raw = NULL, false;
  a->base = (uint8_t *)(((uintptr_t)a->raw + 65535) & ~(uintptr_t)65535); /* as guest regions are */
  sp_memory_view view = {a->base, REGION, REGION, false, -1, 0};
  sp_error_t *err = sp_backend_adopt(vk, &view, &a->b);
  if (!err) return true;
  check_err(err, "adopt");
  munmap(a->raw, REGION + (1u << 16));
  return a->raw = NULL, false;
}

static void actor_free(actor *a) {
  if (!a->raw) return;
  sp_backend_release(vk, a->b);
  munmap(a->raw, REGION + (1u << 16));
  a->raw = NULL;
}

static sp_error_t *run(actor *a, const sp_cmd *cmds, bool same) {
  sp_error_t *err = sp_backend_submit(vk, a->b, cmds, N_CMDS, same);
  return err ? err : sp_backend_wait(vk, a->b);
}

/* ---- the case's bytes and list ---- */

static sp_tensor t3(uint32_t off, uint32_t dtype, uint32_t a, uint32_t b) {
  sp_tensor t = {off, dtype, {a, b, 1, 1}, {0, 0, 0}, 0};
  return t;
}

static sp_cmd cmd(uint32_t op, sp_tensor d, sp_tensor s0, sp_tensor s1) {
  sp_cmd c = {.op = op};
  c.dst = d, c.src[0] = s0, c.src[1] = s1;
  return c;
}

/* product, add, get_rows, set_rows, argmax (validated) */
static bool make_list(sp_cmd list[N_CMDS]) {
  list[0] = cmd(SP_OP_MATMUL, t3(D, SP_DTYPE_F32, 100, 3), t3(W, SP_DTYPE_Q8_0, 256, 100), t3(X, SP_DTYPE_F32, 256, 3));
  list[1] = cmd(SP_OP_ADD, t3(Y, SP_DTYPE_F32, 100, 3), t3(D, SP_DTYPE_F32, 100, 3), t3(D, SP_DTYPE_F32, 100, 3));
  list[2] = cmd(SP_OP_GET_ROWS, t3(RG, SP_DTYPE_F32, 256, 5), t3(W, SP_DTYPE_Q8_0, 256, 100), t3(I, SP_DTYPE_I32, 5, 1));
  list[3] = cmd(SP_OP_SET_ROWS, t3(C, SP_DTYPE_F16, 256, 8), t3(X, SP_DTYPE_F32, 256, 3), t3(I2, SP_DTYPE_I32, 3, 1));
  list[4] = cmd(SP_OP_ARGMAX, t3(AM, SP_DTYPE_I32, 3, 1), t3(Y, SP_DTYPE_F32, 100, 3), (sp_tensor){0});
  char msg[256];
  sp_validate_ctx vctx = {REGION, 0, 0, 1024};
  for (uint32_t i = 0; i < N_CMDS; i++)
    if (sp_validate_cmd(&vctx, &list[i], i, msg, sizeof msg)) return check(false, "list invalid", msg), false;
  return true;
}

/* Random inputs into p (a region's base): W's blocks with a small f16
 * scale, X, the ids; every output and the cache hold a pattern. */
static void fill_inputs(uint8_t *p) {
  for (uint32_t blk = 0; blk < 800; blk++) {
    uint8_t *q = p + W + blk * 34;
    q[0] = 0x00, q[1] = 0x14; /* f16 0.000977 */
    for (int j = 2; j < 34; j++) q[j] = (uint8_t)next_u32();
  }
  for (uint32_t i = 0; i < 256 * 3; i++) {
    float f = (float)(next_u32() % 2001) / 1000.0f - 1.0f;
    memcpy(p + X + 4 * i, &f, 4);
  }
  int32_t ids[5] = {3, 99, 0, 42, 3}, ids2[3] = {5, 1, 7};
  memcpy(p + I, ids, sizeof ids), memcpy(p + I2, ids2, sizeof ids2);
  memset(p + D, 0x11, 0x1000), memset(p + Y, 0x22, 0x1000), memset(p + RG, 0x33, 0x4000);
  memset(p + C, 0x44, C_LEN), memset(p + AM, 0x55, 16);
}

/* The bytes a case compares: the range, then AM (outside it). */
static void take(const actor *a, uint8_t *out) {
  memcpy(out, a->base + L, L_LEN);
  memcpy(out + L_LEN, a->base + AM, 16);
}
#define TAKEN (L_LEN + 16)

static bool same_range(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, L_LEN) == 0; }
static bool same_am(const uint8_t *a, const uint8_t *b) { return memcmp(a + L_LEN, b + L_LEN, 16) == 0; }

static uint8_t before[TAKEN], ref[TAKEN], got[TAKEN], ref2[TAKEN];

/* The reference: the list on an actor with no device-local range. */
static bool reference(const uint8_t *inputs, const sp_cmd *list, uint8_t *out) {
  actor r;
  if (!actor_new(&r)) return false;
  memcpy(r.base, inputs, REGION);
  sp_error_t *err = run(&r, list, false);
  take(&r, out);
  actor_free(&r);
  if (err) check_err(err, "reference run");
  return !err;
}

/* ---- the cases ---- */

/* Declare, run, compare before and after sync; then local_zero and flush. */
static void mirror_case(const sp_cmd *list, uint8_t *inputs) {
  actor a;
  if (!reference(inputs, list, ref) || !actor_new(&a)) return;
  memcpy(a.base, inputs, REGION);
  sp_residency_stats s0 = sp_backend_residency(vk);
  sp_error_t *err = sp_backend_device_local(vk, a.b, L, L_LEN);
  check_err(err, "device_local");
  sp_residency_stats s1 = sp_backend_residency(vk);
  check(s1.local_bytes - s0.local_bytes >= L_LEN && s1.transfers == s0.transfers + 1, "declare: mirror held, one upload", NULL);
  take(&a, before);
  check_err(run(&a, list, false), "run on the mirror");
  take(&a, got);
  check(same_range(got, before), "guest range untouched before sync", NULL);
  check(same_am(got, ref), "outside the range: written at once", NULL);
  check_err(sp_backend_sync(vk, a.b, L, L_LEN), "sync");
  take(&a, got);
  check(same_range(got, ref), "after sync: the reference's bytes", NULL);

  /* local_zero of the cache: the mirror alone */
  bool done = false;
  check_err(sp_backend_local_zero(vk, a.b, C, C_LEN, &done), "local_zero");
  check(done, "local_zero done", NULL);
  check(memcmp(a.base + C, ref + (C - L), C_LEN) == 0, "local_zero: guest untouched", NULL);
  check_err(sp_backend_sync(vk, a.b, C, C_LEN), "sync after local_zero");
  bool zero = true;
  for (uint32_t i = 0; i < C_LEN; i++) zero &= a.base[C + i] == 0;
  check(zero, "local_zero: sync returns zeros", NULL);

  /* unaligned: 3 bytes at C + 1; the bytes around are kept */
  memset(a.base + C, 0x66, 8);
  check_err(sp_backend_flush(vk, a.b, C, 8), "flush of 8 bytes");
  done = false;
  check_err(sp_backend_local_zero(vk, a.b, C + 1, 3, &done), "local_zero unaligned");
  memset(a.base + C, 0x77, 8); /* guest bytes the sync must overwrite */
  check_err(sp_backend_sync(vk, a.b, C, 8), "sync unaligned");
  const uint8_t want[8] = {0x66, 0, 0, 0, 0x66, 0x66, 0x66, 0x66};
  check(done && memcmp(a.base + C, want, 8) == 0, "local_zero unaligned: neighbours kept", NULL);

  /* flush: the guest rewrites X; the replayed list reads it */
  for (uint32_t i = 0; i < 256 * 3; i++) {
    float f = (float)(next_u32() % 2001) / 1000.0f - 1.0f;
    memcpy(inputs + X + 4 * i, &f, 4);
  }
  memcpy(a.base + X, inputs + X, 256 * 3 * 4);
  memcpy(inputs + C, a.base + C, C_LEN); /* the reference's cache as the mirror's now */
  if (!reference(inputs, list, ref2)) return actor_free(&a);
  check_err(sp_backend_flush(vk, a.b, X, 256 * 3 * 4), "flush X");
  check_err(run(&a, list, true), "replay after flush");
  check_err(sp_backend_sync(vk, a.b, L, L_LEN), "sync after replay");
  take(&a, got);
  check(same_range(got, ref2) && same_am(got, ref2), "flush: the replay read the new bytes", NULL);
  check(!same_range(ref, ref2), "  ... which differ from the old", NULL);

  sp_residency_stats s2 = sp_backend_residency(vk);
  actor_free(&a);
  sp_residency_stats s3 = sp_backend_residency(vk);
  check(s2.transfers > s1.transfers && s2.transfer_bytes > s1.transfer_bytes, "stats: transfers counted", NULL);
  check(s3.local_bytes == s0.local_bytes, "release: mirror bytes returned", NULL);
}

/* A list recorded on guest memory, then the range declared (and the
 * weight frozen): the replay is recorded again and uses the mirror. */
static void replay_case(const sp_cmd *list, const uint8_t *inputs) {
  actor a;
  if (!reference(inputs, list, ref) || !actor_new(&a)) return;
  memcpy(a.base, inputs, REGION);
  check_err(run(&a, list, false), "run on guest memory");
  take(&a, got);
  check(same_range(got, ref), "guest memory run: the reference's bytes", NULL);
  memcpy(a.base, inputs, REGION); /* the inputs again, then the range declared */
  check_err(sp_backend_device_local(vk, a.b, L, L_LEN), "device_local after a run");
  memset(a.base + L, 0x99, L_LEN); /* guest bytes the mirror must hide */
  take(&a, before);
  check_err(run(&a, list, true), "replay after device_local");
  take(&a, got);
  check(same_range(got, before), "replay wrote the mirror, not guest memory", NULL);
  check_err(sp_backend_sync(vk, a.b, L, L_LEN), "sync");
  take(&a, got);
  check(same_range(got, ref), "replay read the mirror: the reference's bytes", NULL);
  /* the weight frozen (a copy), the range declared again by a flush of its inputs */
  memcpy(a.base + L, inputs + L, L_LEN);
  check_err(sp_backend_flush(vk, a.b, L, L_LEN), "flush the range");
  check_err(sp_backend_freeze(vk, a.b, W, 800 * 34, 0), "freeze W");
  memset(a.base + W, 0, 800 * 34); /* guest weight bytes the copy must hide (no flush) */
  check_err(run(&a, list, true), "replay after freeze");
  check_err(sp_backend_sync(vk, a.b, L, L_LEN), "sync after freeze");
  take(&a, got);
  check(same_range(got, ref) && same_am(got, ref), "replay read the frozen copy and the mirror", NULL);
  actor_free(&a);
}

static struct sp_knobs knobs; /* the environment's (SP_VULKAN_LIB, SP_VULKAN_DEVICE) */

static void *open_library(void) {
  const char *path = knobs.vulkan_lib;
#ifdef SP_VULKAN_BUILD_LIB
  if (!path) path = SP_VULKAN_BUILD_LIB;
#endif
  return dlopen(path ? path : SP_BACKEND_VULKAN_LIBRARY, RTLD_NOW | RTLD_LOCAL);
}

int main(void) {
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("FAIL knobs: %s\n", sp_error_message(err)), 1;
  void *lib = open_library();
  if (!lib) return printf("skip: %s\n", dlerror()), 77;
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, SP_BACKEND_VULKAN_SYMBOL);
  typedef sp_error_t *(*residency_fn)(sp_backend *, bool);
  residency_fn hook = (residency_fn)dlsym(lib, "sp_backend_vulkan_test_residency");
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true, .knobs = knobs};
  err = make ? make(&opts, &vk) : sp_error_new("no %s", SP_BACKEND_VULKAN_SYMBOL);
  if (err) {
    printf("skip: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 77;
  }
  err = hook ? hook(vk, true) : sp_error_new("no sp_backend_vulkan_test_residency (built without SP_TEST_HOOKS?)");
  if (!err) err = sp_backend_check(vk);
  if (!err && !sp_backend_caps_of(vk).device_local) err = sp_error_new("caps.device_local is false");
  if (err) return printf("FAIL memory layer: %s\n", sp_error_message(err)), 1;
  uint8_t *inputs = calloc(1, REGION);
  sp_cmd list[N_CMDS];
  if (!inputs || !make_list(list)) return 1;
  fill_inputs(inputs);
  mirror_case(list, inputs);
  fill_inputs(inputs);
  replay_case(list, inputs);
  printf("%d of %d cases failed\n", failures, cases);
  free(inputs);
  sp_backend_free(vk);
  return failures ? 1 : 0;
}
