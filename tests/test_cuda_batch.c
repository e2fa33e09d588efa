/*
 * test_cuda_batch.c: the CUDA backend's batching layer (backend.h, layer 4;
 * cuda_batch.cu) against its promises, for every weight type it runs:
 *  - batch invariance: after a batch of K lists (K = 2, 8, 32), every
 *    actor's whole memory equals, byte for byte, its memory after running
 *    its list alone; the batch run directly (lists new, then repeated
 *    once), captured as a graph (repeated twice) and replayed;
 *  - shared weights: actors that froze the same weights under one identity
 *    (one resident copy) share one product per step; one actor froze other
 *    weights under another identity and reads its own;
 *  - isolation: an actor whose list fails while running (an index out of
 *    range before its last product) gets its error and stops, and its
 *    neighbours' results are unchanged; an actor whose list has another
 *    shape, and one whose input is not 16-byte aligned (another summation
 *    order in the float kernels), run beside the others correctly.
 * Every command passes the validator first, as in the runtime. Exits 77
 * (skip) without the library or a GPU.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/fp16.h"
#include "check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/knobs.h"
#include "core/validate.h"

#define MEM_BYTES (4u << 20)
#define K_IN 256
#define N_OUT 48
#define MAX_K 32
#define W_SLOT 0x20000 /* each weight type's two matrices, frozen at its own offset */

enum { AT_X = 0x300000, AT_Y = 0x301000, AT_Y2 = 0x302000, AT_Z = 0x303000, AT_TABLE = 0x304000, AT_IDX = 0x305000 };

static uint64_t rng_state;
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

static uint64_t matrix_bytes(uint32_t dtype) { return sp_dtype_row_bytes(sp_dtype_get(dtype), K_IN) * N_OUT; }
static uint32_t w_at(uint32_t dtype) { return W_SLOT * (dtype + 1); }

/* Two matrices of dtype at w_at(dtype): random bytes, sane f16 scales in
 * the 32-element types, random floats in the float types. */
static void fill_weights(uint8_t *mem, uint32_t dtype) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  uint8_t *w = mem + w_at(dtype);
  size_t bytes = 2 * matrix_bytes(dtype);
  for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rng_u32();
  if (dtype == SP_DTYPE_F32)
    for (size_t i = 0; i < bytes / 4; i++) ((float *)w)[i] = rng_f();
  if (dtype == SP_DTYPE_F16 || dtype == SP_DTYPE_BF16)
    for (size_t i = 0; i < bytes / 2; i++) {
      uint16_t h = dtype == SP_DTYPE_F16 ? sp_f32_to_f16(rng_f()) : sp_f32_to_bf16(rng_f());
      memcpy(w + 2 * i, &h, 2);
    }
  if (info->block_elems == 32)
    for (size_t b = 0; b < bytes / info->block_bytes; b++) {
      uint16_t d = sp_f32_to_f16(0.01f + 0.05f * (rng_f() + 1));
      memcpy(w + b * info->block_bytes, &d, 2);
    }
}

typedef struct actor {
  uint8_t *mem;
  void *binding;
  sp_cmd cmds[8];
  uint32_t count;
  uint32_t x_at;
  bool failing, odd_weights, other_shape;
} actor;

/* The list: y = W x and y2 = W2 x (a group over one input); z = y + y;
 * y = W z[0..K) from other rows (a product on a result); a failing actor
 * looks a row up out of range before that last product. */
static uint32_t make_list(const actor *a, uint32_t dtype, sp_cmd *cmds) {
  uint32_t w = w_at(dtype), w2 = w + (uint32_t)matrix_bytes(dtype);
  sp_cmd mm = {.op = SP_OP_MATMUL, .dst = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1)};
  mm.src[0] = tensor(w, dtype, K_IN, N_OUT), mm.src[1] = tensor(a->x_at, SP_DTYPE_F32, K_IN, 1);
  sp_cmd mm_b = mm;
  mm_b.dst = tensor(AT_Y2, SP_DTYPE_F32, N_OUT, 1), mm_b.src[0] = tensor(w2, dtype, K_IN, N_OUT);
  sp_cmd add = {.op = SP_OP_ADD, .dst = tensor(AT_Z, SP_DTYPE_F32, N_OUT, 1)};
  add.src[0] = tensor(AT_Y2, SP_DTYPE_F32, N_OUT, 1), add.src[1] = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1);
  sp_cmd rows = {.op = SP_OP_GET_ROWS, .dst = tensor(AT_Z, SP_DTYPE_F32, N_OUT, 1)};
  rows.src[0] = tensor(AT_TABLE, SP_DTYPE_F32, N_OUT, 4), rows.src[1] = tensor(AT_IDX, SP_DTYPE_I32, 1, 1);
  sp_cmd mm2 = mm;
  mm2.src[1] = tensor(a->x_at + 4 * 32, SP_DTYPE_F32, K_IN, 1); /* other elements of x */
  uint32_t n = 0;
  cmds[n++] = mm;
  cmds[n++] = mm_b;
  cmds[n++] = a->other_shape ? mm2 : add;
  if (a->failing) cmds[n++] = rows;
  cmds[n++] = mm2;
  return n;
}

/* Fresh inputs for actor `index` (weights as frozen: not rewritten). */
static void init_inputs(actor *a, int index) {
  memset(a->mem + AT_X, 0, MEM_BYTES - AT_X);
  rng_state = 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1);
  for (int i = 0; i < K_IN + 64; i++) ((float *)(a->mem + a->x_at))[i] = rng_f();
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

/* The batch of k, each list `same` as the last (the failing one never is):
 * every memory equals its lone run's. */
static void run_and_compare(sp_backend *be, actor *as, uint8_t **lone, uint32_t dtype, int k, bool same,
                            const char *how) {
  sp_batch_item items[MAX_K];
  for (int i = 0; i < k; i++) {
    init_inputs(&as[i], i);
    items[i] = (sp_batch_item){.binding = as[i].binding, .cmds = as[i].cmds, .count = as[i].count,
                               .same = same && !as[i].failing};
  }
  sp_backend_submit_batch(be, items, (uint32_t)k);
  for (int i = 0; i < k; i++) {
    CHECK(!items[i].err == !as[i].failing, "%s K=%d %s: actor %d: %s", sp_dtype_name(dtype), k, how, i,
          items[i].err ? sp_error_message(items[i].err) : "ran");
    if (as[i].failing && items[i].err)
      CHECK(strstr(sp_error_message(items[i].err), "cmd[3]") != NULL, "the error names the failing command: %s",
            sp_error_message(items[i].err));
    sp_error_free(items[i].err);
    CHECK(!memcmp(lone[i], as[i].mem, MEM_BYTES), "%s K=%d %s: actor %d's memory equals its lone run's",
          sp_dtype_name(dtype), k, how, i);
  }
}

/* K actors of dtype: alone, then batched three ways. */
static void check_batch(sp_backend *be, actor *as, uint8_t **lone, uint32_t dtype, int k) {
  for (int i = 0; i < k; i++) {
    actor *a = &as[i];
    a->failing = k > 2 && i == 3, a->other_shape = k > 2 && i == 5;
    a->x_at = k > 2 && i == 6 ? AT_X + 4 : AT_X; /* unaligned: the float kernels' scalar path */
    a->count = make_list(a, dtype, a->cmds);
    init_inputs(a, i);
    CHECK(validated(a), "%s: actor %d's list passes the validator", sp_dtype_name(dtype), i);
    sp_error_t *err = sp_backend_submit(be, a->binding, a->cmds, a->count, false);
    if (!err) err = sp_backend_wait(be, a->binding);
    CHECK(!err == !a->failing, "%s K=%d: actor %d alone: %s", sp_dtype_name(dtype), k, i,
          err ? sp_error_message(err) : "ran");
    sp_error_free(err);
    memcpy(lone[i], a->mem, MEM_BYTES);
  }
  /* new lists run directly, and so does the second batch of one set; the
   * third is captured as a graph, the fourth replays it (cuda_batch.cu) */
  run_and_compare(be, as, lone, dtype, k, false, "direct");
  run_and_compare(be, as, lone, dtype, k, true, "repeated");
  run_and_compare(be, as, lone, dtype, k, true, "captured");
  run_and_compare(be, as, lone, dtype, k, true, "replayed");
}

/* Every actor freezes its weights of dtype: the odd one under its own
 * identity (other bytes), the rest under one (one shared device copy). */
static bool freeze_weights(sp_backend *be, actor *as, uint32_t dtype) {
  for (int i = 0; i < MAX_K; i++) {
    rng_state = 0x1234567ull + dtype + (as[i].odd_weights ? 0xABCDEFull : 0);
    fill_weights(as[i].mem, dtype);
    uint64_t id = 0x5A5A000000000000ull + dtype * 2 + as[i].odd_weights;
    sp_error_t *err = sp_backend_freeze(be, as[i].binding, w_at(dtype), 2 * matrix_bytes(dtype), id);
    if (err) {
      printf("FAIL freeze %s: %s\n", sp_dtype_name(dtype), sp_error_message(err));
      sp_error_free(err);
      return false;
    }
  }
  return true;
}

static sp_backend *load_cuda(void) {
  struct sp_knobs knobs;
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("knobs: %s\n", sp_error_message(err)), sp_error_free(err), NULL;
  void *lib = dlopen(knobs.cuda_lib ? knobs.cuda_lib : SP_BACKEND_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return printf("skip: %s\n", dlerror()), NULL;
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, SP_BACKEND_CUDA_SYMBOL);
  knobs.cuda_batch = true; /* the layer is offered only when asked for */
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true, .knobs = knobs};
  sp_backend *be = NULL;
  err = make ? make(&opts, &be) : sp_error_new("no %s", SP_BACKEND_CUDA_SYMBOL);
  if (!err) err = sp_backend_check(be);
  if (err) printf("skip: %s\n", sp_error_message(err)), sp_error_free(err), be = NULL;
  return be;
}

int main(void) {
  sp_backend *be = load_cuda();
  if (!be) return 77;
  CHECK(sp_backend_batches(be), "the CUDA backend has the batching layer");
  actor *all = calloc(MAX_K, sizeof *all);
  uint8_t *lone[MAX_K];
  for (int i = 0; i < MAX_K; i++) {
    all[i].mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    all[i].odd_weights = i == 1;
    lone[i] = malloc(MEM_BYTES);
    sp_memory_view v = {all[i].mem, MEM_BYTES, MEM_BYTES, false, -1, 0};
    sp_error_t *err = sp_backend_adopt(be, &v, &all[i].binding);
    CHECK(!err, "adopt %d: %s", i, err ? sp_error_message(err) : "ok");
    sp_error_free(err);
  }
  int types = 0;
  for (uint32_t dtype = 0; dtype < SP_DTYPE_COUNT; dtype++) {
    if (!sp_dtype_get(dtype) || w_at(dtype) + 2 * matrix_bytes(dtype) > AT_X) continue;
    sp_cmd probe = {.op = SP_OP_MATMUL, .dst = tensor(AT_Y, SP_DTYPE_F32, N_OUT, 1)};
    probe.src[0] = tensor(w_at(dtype), dtype, K_IN, N_OUT), probe.src[1] = tensor(AT_X, SP_DTYPE_F32, K_IN, 1);
    sp_validate_ctx ctx = {.committed = MEM_BYTES, .max_cmds = 8};
    char msg[128];
    if (sp_validate_cmd(&ctx, &probe, 0, msg, sizeof msg) || !sp_backend_supports(be, &probe)) continue;
    if (!freeze_weights(be, all, dtype)) return 1;
    types++;
    for (int k = 2; k <= MAX_K; k *= 4) check_batch(be, all, lone, dtype, k);
  }
  CHECK(types >= 10, "every weight type was checked (%d)", types);
  for (int i = 0; i < MAX_K; i++) sp_backend_release(be, all[i].binding), munmap(all[i].mem, MEM_BYTES), free(lone[i]);
  free(all);
  sp_backend_free(be);
  return CHECK_DONE();
}
