/*
 * test_cpu_batch.c: the CPU backend's batching layer (backend.h, layer 4)
 * against its promises, for every weight type the kernel table has:
 *  - batch invariance: after a batch of K lists (K = 2, 8, 32), every
 *    actor's whole memory equals, byte for byte, its memory after running
 *    its list alone;
 *  - shared weights: actors whose products carry one weight key (the
 *    runtime's proof that their weights are the same bytes) share one
 *    product, still bit-exact; actors without keys, or with another key,
 *    read their own weights;
 *  - isolation: one actor's weights differ from the others' (and so does
 *    its key), and its result still equals its lone run; an actor whose
 *    list fails while running (an index out of range)
 *    gets its error and stops, and its neighbours' results are unchanged;
 *    lists of different shapes in one batch still run correctly.
 * Every command passes the validator first, as in the runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/fp16.h"
#include "check.h"
#include "core/dtype.h"
#include "core/validate.h"

#define MEM_BYTES (1u << 20)
#define K_IN 256
#define N_OUT 48
#define MAX_K 32

enum { AT_W = 4096, AT_X = 262144, AT_Y = 266240, AT_Z = 270336, AT_TABLE = 274432, AT_IDX = 278528 };

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}
static float rng_f(void) { return (float)(rng_u32() >> 8) / 8388608.0f - 1.0f; }

static sp_tensor tensor(uint32_t at, uint32_t dtype, uint32_t ne0, uint32_t ne1) {
  uint64_t row = sp_dtype_row_bytes(sp_dtype_get(dtype), ne0);
  sp_tensor t = {.offset = at, .dtype = dtype, .ne = {ne0, ne1, 1, 1}};
  t.nb[0] = (uint32_t)row, t.nb[1] = (uint32_t)(row * ne1), t.nb[2] = t.nb[1];
  return t;
}

/* Weights of dtype: random bytes, with sane f16 scales where the 32-element
 * types keep them (other types' random scales are fine: the check is
 * bitwise, and a NaN's bits are as deterministic as any). */
static void fill_weights(uint8_t *mem, uint32_t dtype) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  size_t bytes = sp_dtype_row_bytes(info, K_IN) * N_OUT;
  for (size_t i = 0; i < bytes; i++) mem[AT_W + i] = (uint8_t)rng_u32();
  if (dtype == SP_DTYPE_F32)
    for (size_t i = 0; i < bytes / 4; i++) ((float *)(mem + AT_W))[i] = rng_f();
  if (dtype == SP_DTYPE_F16 || dtype == SP_DTYPE_BF16)
    for (size_t i = 0; i < bytes / 2; i++) {
      float f = rng_f();
      uint16_t h = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(f) : sp_f32_to_bf16(f);
      memcpy(mem + AT_W + 2 * i, &h, 2);
    }
  if (info->block_elems == 32)
    for (size_t b = 0; b < bytes / info->block_bytes; b++) {
      uint16_t d = sp_f32_to_f16(0.01f + 0.05f * (rng_f() + 1));
      memcpy(mem + AT_W + b * info->block_bytes, &d, 2);
    }
}

/* The list every actor runs: y = W x; z = y + y; y2 = W z[0..K) (a second
 * product on a result of the first); plus, for a failing actor, a row
 * lookup out of range in the middle. */
static uint32_t make_list(uint32_t dtype, bool failing, bool other_shape, sp_cmd *cmds) {
  sp_cmd mm = {.op = SP_OP_MATMUL, .dst = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1)};
  mm.src[0] = tensor(AT_W, dtype, K_IN, N_OUT), mm.src[1] = tensor(AT_X, SP_DTYPE_F32, K_IN, 1);
  sp_cmd add = {.op = SP_OP_ADD, .dst = tensor(AT_Z, SP_DTYPE_F32, N_OUT, 1)};
  add.src[0] = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1), add.src[1] = add.src[0];
  sp_cmd rows = {.op = SP_OP_GET_ROWS, .dst = tensor(AT_Z, SP_DTYPE_F32, N_OUT, 1)};
  rows.src[0] = tensor(AT_TABLE, SP_DTYPE_F32, N_OUT, 4), rows.src[1] = tensor(AT_IDX, SP_DTYPE_I32, 1, 1);
  sp_cmd mm2 = mm;
  mm2.src[1] = tensor(AT_X + 4 * (K_IN - N_OUT) / 2, SP_DTYPE_F32, K_IN, 1); /* other rows of x */
  uint32_t n = 0;
  cmds[n++] = mm;
  cmds[n++] = other_shape ? mm2 : add;
  if (failing) cmds[n++] = rows;
  cmds[n++] = mm2;
  return n;
}

typedef struct actor {
  uint8_t *mem;
  void *binding;
  sp_cmd cmds[8];
  uint64_t keys[8]; /* weight keys, as the runtime proves them */
  uint32_t count;
  bool failing;
} actor;

static void init_memory(actor *a, uint32_t dtype, int index, bool odd_weights, uint64_t weight_seed) {
  memset(a->mem, 0, MEM_BYTES);
  rng_state = odd_weights ? weight_seed ^ 0xABCDEFull : weight_seed;
  fill_weights(a->mem, dtype);
  rng_state = 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1);
  for (int i = 0; i < K_IN; i++) ((float *)(a->mem + AT_X))[i] = rng_f();
  for (int i = 0; i < N_OUT * 4; i++) ((float *)(a->mem + AT_TABLE))[i] = rng_f();
  ((int32_t *)(a->mem + AT_IDX))[0] = a->failing ? 9999 : 2;
}

static bool validated(actor *a) {
  sp_validate_ctx ctx = {.committed = MEM_BYTES, .max_cmds = 8};
  char msg[256];
  for (uint32_t i = 0; i < a->count; i++)
    if (sp_validate_cmd(&ctx, &a->cmds[i], i, msg, sizeof msg)) {
      printf("     validator: %s\n", msg);
      return false;
    }
  return true;
}

/* K actors of dtype: alone, then batched; memories compared. */
static void check_batch(sp_backend *be, actor *as, uint8_t **lone, uint32_t dtype, int k) {
  uint64_t seed = 0x1234567ull + dtype;
  for (int i = 0; i < k; i++) {
    actor *a = &as[i];
    a->failing = k > 2 && i == 3;
    a->count = make_list(dtype, a->failing, k > 2 && i == 5, a->cmds);
    init_memory(a, dtype, i, k > 2 && i == 1, seed);
    CHECK(validated(a), "%s: actor %d's list passes the validator", sp_dtype_name(dtype), i);
    sp_error_t *err = sp_backend_submit(be, a->binding, a->cmds, a->count, false);
    CHECK(!err == !a->failing, "%s K=%d: actor %d alone: %s", sp_dtype_name(dtype), k, i,
          err ? sp_error_message(err) : "ran");
    sp_error_free(err);
    memcpy(lone[i] ? lone[i] : (lone[i] = malloc(MEM_BYTES)), a->mem, MEM_BYTES);
  }
  sp_batch_item items[MAX_K];
  for (int i = 0; i < k; i++) {
    bool odd = k > 2 && i == 1;
    init_memory(&as[i], dtype, i, odd, seed);
    for (uint32_t c = 0; c < as[i].count; c++) as[i].keys[c] = as[i].cmds[c].op == SP_OP_MATMUL ? (odd ? 77 : 55) : 0;
    /* actor 2 comes without keys: it reads its own weights beside the sharers */
    items[i] = (sp_batch_item){.binding = as[i].binding, .cmds = as[i].cmds, .count = as[i].count,
                               .weight_keys = i == 2 ? NULL : as[i].keys};
  }
  sp_backend_submit_batch(be, items, (uint32_t)k);
  for (int i = 0; i < k; i++) {
    CHECK(!items[i].err == !as[i].failing, "%s K=%d: actor %d batched: %s", sp_dtype_name(dtype), k, i,
          items[i].err ? sp_error_message(items[i].err) : "ran");
    if (as[i].failing && items[i].err)
      CHECK(strstr(sp_error_message(items[i].err), "cmd[2]") != NULL, "the error names the failing command: %s",
            sp_error_message(items[i].err));
    sp_error_free(items[i].err);
    CHECK(!memcmp(lone[i], as[i].mem, MEM_BYTES), "%s K=%d: actor %d's memory equals its lone run's",
          sp_dtype_name(dtype), k, i);
  }
}

/* Every check, on the kernel table `simd` (capped to what this CPU has). */
static int check_table(const char *simd) {
  sp_backend *be = NULL;
  sp_error_t *err = sp_backend_cpu_new_simd(2, simd, &be);
  if (err) { /* a table name this build does not know (another architecture) */
    printf("note: no %s table here: %s\n", simd, sp_error_message(err));
    sp_error_free(err);
    return 0;
  }
  CHECK(sp_backend_batches(be), "the CPU backend (%s) has the batching layer", simd);
  actor *all = calloc(MAX_K, sizeof *all);
  uint8_t *lone[MAX_K] = {0};
  for (int i = 0; i < MAX_K; i++) {
    all[i].mem = aligned_alloc(16384, MEM_BYTES);
    sp_memory_view v = {all[i].mem, MEM_BYTES, MEM_BYTES, false, -1, 0};
    err = sp_backend_adopt(be, &v, &all[i].binding);
    CHECK(!err, "adopt");
  }
  int types = 0;
  for (uint32_t dtype = 0; dtype < SP_DTYPE_COUNT; dtype++) {
    if (!sp_dtype_get(dtype)) continue;
    sp_cmd probe = {.op = SP_OP_MATMUL, .dst = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1)};
    probe.src[0] = tensor(AT_W, dtype, K_IN, N_OUT), probe.src[1] = tensor(AT_X, SP_DTYPE_F32, K_IN, 1);
    if (!sp_cpu_supports(&probe)) continue;
    sp_validate_ctx ctx = {.committed = MEM_BYTES, .max_cmds = 8};
    char msg[128];
    if (sp_validate_cmd(&ctx, &probe, 0, msg, sizeof msg)) continue; /* not a weight type */
    types++;
    for (int k = 2; k <= MAX_K; k *= 4) check_batch(be, all, lone, dtype, k);
  }
  CHECK(types >= 10, "every weight type was checked (%d, table %s)", types, simd);
  for (int i = 0; i < MAX_K; i++) sp_backend_release(be, all[i].binding), free(all[i].mem), free(lone[i]);
  free(all);
  sp_backend_free(be);
  return 1;
}

int main(void) {
  const char *tables[] = {"generic", "avx2", "avx512", NULL}; /* each capped to what this CPU has */
  int ran = 0;
  for (int t = 0; tables[t]; t++) ran += check_table(tables[t]);
  CHECK(ran > 0, "at least one kernel table was checked");
  return CHECK_DONE();
}
