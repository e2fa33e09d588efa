/*
 * test_runtime.c: actors end to end through Wasmtime.
 *  - Wasmtime's memory base == the region base == the backend's base, for
 *    every instance and after every grow, up to the 4 GiB wasm32 limit;
 *  - configurable alignment, memory limits, out-of-bounds traps;
 *  - the hostile ABI guest (guests/abi_cases.c) passes all its cases;
 *  - an honest actor's results are byte-identical with and without a
 *    hostile actor working beside it;
 *  - sp_actor_stats and sp_runtime_stats: what they count, their size
 *    checks; the staged submit path computes what the zero-copy one does.
 */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "runtime/actor_staged.h"
#include "check.h"
#include "core/hash64.h"
#include "test_util.h"
#include "runtime/runtime_impl.h"

#define PAGE (64u << 10)

static sp_actor_t *new_actor(sp_runtime_t *rt, const char *guest, uint64_t limit) {
  size_t len;
  uint8_t *wasm = load_guest(guest, &len);
  sp_actor_options opts = {.memory_limit = limit};
  sp_actor_t *actor = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &actor);
  CHECK(!err, "actor %s: %s", guest, sp_error_message(err));
  sp_error_free(err);
  free(wasm);
  return actor;
}

static int64_t call_n(sp_actor_t *actor, const char *fn, const int64_t *args, size_t n) {
  int64_t result = -999;
  sp_error_t *err = sp_actor_call(actor, fn, args, n, &result);
  CHECK(!err, "%s: %s", fn, sp_error_message(err));
  sp_error_free(err);
  return result;
}

static int64_t call1(sp_actor_t *actor, const char *fn, int64_t arg) { return call_n(actor, fn, &arg, 1); }

static int64_t call0(sp_actor_t *actor, const char *fn) { return call_n(actor, fn, NULL, 0); }

/* The invariant every backend relies on. */
static void check_identity(sp_actor_t *actor, size_t alignment, const char *when) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(actor, &base, &size);
  CHECK(base == actor->region->base, "%s: wasm base %p != region %p", when, (void *)base,
        (void *)actor->region->base);
  CHECK(sp_actor_backend_base(actor) == base, "%s: backend base differs", when);
  CHECK(size == actor->region->committed, "%s: size %zu != committed %zu", when, size,
        actor->region->committed);
  CHECK((uintptr_t)base % alignment == 0, "%s: base %p not aligned", when, (void *)base);
}

static void test_identity_up_to_4gib(void) {
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(NULL, &rt);
  CHECK(!err, "%s", sp_error_message(err));
  if (!rt) return;
  sp_actor_t *actors[3];
  for (int i = 0; i < 3; i++) {
    actors[i] = new_actor(rt, "test_grow", 0);
    if (actors[i]) check_identity(actors[i], 16 << 10, "fresh instance");
  }
  sp_actor_t *a = actors[0];
  int64_t pages = a ? call0(a, "pages") : 0;
  while (a && pages < 65536) {
    int64_t step = 65536 - pages < 4096 ? 65536 - pages : 4096;
    CHECK(call1(a, "grow", step) == pages, "grow from %lld", (long long)pages);
    pages += step;
    check_identity(a, 16 << 10, "after grow");
  }
  if (a) {
    CHECK(call0(a, "pages") == 65536, "4 GiB reached");
    CHECK(call1(a, "grow", 1) == -1, "grow past 4 GiB must fail");
    int64_t args[2] = {(int64_t)0xffffffffu, 42};
    sp_error_t *e = sp_actor_call(a, "store", args, 2, NULL);
    CHECK(!e, "store at the last byte: %s", sp_error_message(e));
    sp_error_free(e);
    CHECK(call1(a, "load", (int64_t)0xffffffffu) == 42, "load at the last byte");
    check_identity(a, 16 << 10, "at 4 GiB");
  }
  for (int i = 0; i < 3; i++) sp_actor_free(actors[i]);
  sp_runtime_free(rt);
}

static void test_alignment_option(void) {
  sp_runtime_options opts = {.region_alignment = 2u << 20};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&opts, &rt);
  CHECK(!err, "%s", sp_error_message(err));
  if (!rt) return;
  sp_actor_t *a = new_actor(rt, "test_grow", 0);
  if (a) check_identity(a, 2u << 20, "2 MiB alignment");
  sp_actor_free(a);
  sp_runtime_free(rt);
  opts.region_alignment = 3000;
  err = sp_runtime_new(&opts, &rt);
  CHECK(err && strstr(sp_error_message(err), "power of two"), "bad alignment rejected");
  sp_error_free(err);
  opts = (sp_runtime_options){.backend = "tpu"};
  err = sp_runtime_new(&opts, &rt);
  CHECK(err && strstr(sp_error_message(err), "unknown backend"), "bad backend rejected");
  sp_error_free(err);
}

static void test_limits_and_traps(sp_runtime_t *rt) {
  sp_actor_t *a = new_actor(rt, "test_grow", 4u << 20);
  if (!a) return;
  int64_t pages = call0(a, "pages");
  /* Linear memory gets the limit less the scratch (1/8) and table (1/64)
   * shares (memory_budget.h): 4 MiB - 512 KiB - 64 KiB = 55 pages. */
  CHECK(call1(a, "grow", 55 - pages) == pages, "grow to exactly the linear share of the 4 MiB limit");
  CHECK(call1(a, "grow", 1) == -1, "grow past the share fails cleanly");
  check_identity(a, 16 << 10, "at the limit");
  int64_t arg = 4 << 20, result;
  sp_error_t *err = sp_actor_call(a, "load", &arg, 1, &result);
  CHECK(err && strstr(sp_error_message(err), "out of bounds"), "oob load traps: %s",
        sp_error_message(err));
  CHECK(err && strstr(sp_error_message(err), "wasm backtrace"), "trap has a backtrace");
  CHECK(sp_error_kind(err) == SP_ERROR_TRAP, "a trap's kind is SP_ERROR_TRAP (%d)", sp_error_kind(err));
  sp_error_free(err);
  CHECK(call1(a, "load", 0) >= 0, "actor still usable after a trap");
  err = sp_actor_call(a, "no_such_export", NULL, 0, NULL);
  CHECK(err && strstr(sp_error_message(err), "no function \"no_such_export\""), "missing export");
  sp_error_free(err);
  err = sp_actor_call(a, "grow", NULL, 0, NULL);
  CHECK(err && strstr(sp_error_message(err), "takes 1 arguments"), "wrong arg count");
  sp_error_free(err);
  sp_actor_free(a);
}

static void test_bad_modules(sp_runtime_t *rt) {
  sp_actor_t *a = NULL;
  const uint8_t text[] = "hello world, not wasm";
  sp_error_t *err = sp_actor_new(rt, text, sizeof text, NULL, &a);
  CHECK(err && strstr(sp_error_message(err), "not a WebAssembly module"), "text rejected");
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID, "its kind is SP_ERROR_INVALID");
  sp_error_free(err);
  const uint8_t broken[] = {0, 'a', 's', 'm', 1, 0, 0, 0, 0xff, 0xff, 0xff};
  err = sp_actor_new(rt, broken, sizeof broken, NULL, &a);
  CHECK(err && strstr(sp_error_message(err), "invalid or unsupported wasm"), "garbage rejected: %s",
        sp_error_message(err));
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID, "its kind is SP_ERROR_INVALID");
  sp_error_free(err);
  size_t len;
  uint8_t *wasm = load_guest("test_bad_import", &len);
  err = sp_actor_new(rt, wasm, len, NULL, &a);
  CHECK(err && strstr(sp_error_message(err), "no_such_function"), "unknown import named: %s",
        sp_error_message(err));
  sp_error_free(err);
  free(wasm);
}

static void test_abi_guest(sp_runtime_t *rt) {
  sp_actor_t *a = new_actor(rt, "test_abi_cases", 0);
  if (!a) return;
  int code = -1;
  sp_error_t *err = sp_actor_run_main(a, &code);
  CHECK(!err && code == 0, "abi_cases: exit %d, %s", code, sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(a);
}

/* Runs a 64x64 matmul in an honest actor's memory, through the zero-copy
 * path or (staged) a copy; returns a checksum of the result bytes (FNV-1a). */
static uint64_t honest_matmul(sp_actor_t *a, bool staged) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  uint32_t w = 1u << 20, x = w + 64 * 64 * 4, y = x + 64 * 64 * 4;
  float *fw = (float *)(base + w), *fx = (float *)(base + x);
  for (int i = 0; i < 64 * 64; i++) fw[i] = (float)(i % 13) * 0.1f, fx[i] = (float)(i % 7) * 0.3f;
  sp_cmd cmd = {.op = SP_OP_MATMUL};
  cmd.dst = (sp_tensor){y, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
  cmd.src[0] = (sp_tensor){w, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
  cmd.src[1] = (sp_tensor){x, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
  sp_error_t *err = staged ? sp_actor_submit_staged(a, &cmd, 1) : sp_actor_submit(a, &cmd, 1);
  CHECK(!err, "honest submit: %s", sp_error_message(err));
  sp_error_free(err);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < 64 * 64 * 4; i++) h = (h ^ base[y + i]) * 1099511628211ull;
  return h;
}

static void test_isolation(sp_runtime_t *rt) {
  sp_actor_t *honest = new_actor(rt, "test_grow", 0);
  if (!honest) return;
  call1(honest, "grow", 64);
  uint64_t solo = honest_matmul(honest, false);
  sp_actor_t *hostile = new_actor(rt, "test_abi_cases", 0);
  if (hostile) {
    int code;
    sp_error_t *err = sp_actor_run_main(hostile, &code);
    sp_error_free(err);
    /* Host-side hostile commands aimed at the honest actor's addresses. */
    sp_cmd bad = {.op = SP_OP_SCALE};
    bad.dst = bad.src[0] = (sp_tensor){0xfff00000u, SP_DTYPE_F32, {1024, 1, 1, 1}, {0}, 0};
    err = sp_actor_submit(hostile, &bad, 1);
    CHECK(err && strstr(sp_error_message(err), "outside committed memory"), "hostile rejected");
    CHECK(sp_error_kind(err) == SP_ERROR_INVALID, "a refused command's kind is SP_ERROR_INVALID");
    sp_error_free(err);
  }
  uint64_t beside = honest_matmul(honest, false);
  CHECK(solo == beside, "honest result changed beside a hostile actor");
  sp_actor_free(hostile);
  sp_actor_free(honest);
}

/* ---- cross-actor batching: validation stays per actor ----
 * Eight honest actors and one hostile one submit decode products of one
 * shape at once, many times, on a runtime that batches. The hostile list
 * matches the others' but for its output, which lies outside its own
 * memory: refused before any batch runs, every time. Each honest result
 * equals that actor's lone result, and lists did run batched. */
#define BATCH_HONEST 8
#define BATCH_ROUNDS 20

typedef struct batch_actor {
  sp_actor_t *actor;
  pthread_barrier_t *start;
  bool hostile;
  uint32_t seed; /* its weights' and activations' values */
  uint64_t lone, got[BATCH_ROUNDS];
  int refused;
} batch_actor;

/* y = W x, W 256 x 64 f32 (the actor's own values), x one row. */
static sp_cmd decode_product(sp_actor_t *a, uint32_t seed, bool hostile) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  uint32_t w = 1u << 20, x = w + 256 * 64 * 4, y = x + 64 * 4;
  for (int i = 0; i < 256 * 64; i++) ((float *)(base + w))[i] = (float)((i + seed) % 13) * 0.1f;
  for (int i = 0; i < 64; i++) ((float *)(base + x))[i] = (float)((i * seed) % 7) * 0.3f;
  sp_cmd cmd = {.op = SP_OP_MATMUL};
  cmd.dst = (sp_tensor){hostile ? 0xfff00000u : y, SP_DTYPE_F32, {256, 1, 1, 1}, {0}, 0};
  cmd.src[0] = (sp_tensor){w, SP_DTYPE_F32, {64, 256, 1, 1}, {0}, 0};
  cmd.src[1] = (sp_tensor){x, SP_DTYPE_F32, {64, 1, 1, 1}, {0}, 0};
  return cmd;
}

static uint64_t product_hash(sp_actor_t *a) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  return sp_hash64_of(base + (1u << 20) + 256 * 64 * 4 + 64 * 4, 256 * 4);
}

static void *batch_thread(void *arg) {
  batch_actor *b = arg;
  pthread_barrier_wait(b->start);
  for (int r = 0; r < BATCH_ROUNDS; r++) {
    sp_cmd cmd = decode_product(b->actor, b->seed, b->hostile);
    sp_error_t *err = sp_actor_submit(b->actor, &cmd, 1);
    if (b->hostile) b->refused += err && strstr(sp_error_message(err), "outside committed memory");
    else b->got[r] = err ? 0 : product_hash(b->actor);
    sp_error_free(err);
  }
  return NULL;
}

static void test_batched_isolation(void) {
  sp_runtime_options ro = {.backend = "cpu", .batch_window_us = 5000};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  CHECK(!err, "batching runtime: %s", sp_error_message(err));
  sp_error_free(err);
  if (!rt) return;
  batch_actor bs[BATCH_HONEST + 1] = {{0}};
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, BATCH_HONEST + 1);
  bool made = true;
  for (int i = 0; i <= BATCH_HONEST; i++) {
    bs[i] = (batch_actor){.actor = new_actor(rt, "test_grow", 0), .start = &start, .hostile = i == BATCH_HONEST,
                          .seed = (uint32_t)i + 1};
    made &= bs[i].actor != NULL;
    if (bs[i].actor) call1(bs[i].actor, "grow", 64);
  }
  for (int i = 0; made && i < BATCH_HONEST; i++) { /* alone first: the reference */
    sp_cmd cmd = decode_product(bs[i].actor, bs[i].seed, false);
    err = sp_actor_submit(bs[i].actor, &cmd, 1);
    CHECK(!err, "lone product: %s", sp_error_message(err));
    sp_error_free(err);
    bs[i].lone = product_hash(bs[i].actor);
  }
  pthread_t th[BATCH_HONEST + 1];
  for (int i = 0; made && i <= BATCH_HONEST; i++) pthread_create(&th[i], NULL, batch_thread, &bs[i]);
  for (int i = 0; made && i <= BATCH_HONEST; i++) pthread_join(th[i], NULL);
  for (int i = 0; made && i < BATCH_HONEST; i++)
    for (int r = 0; r < BATCH_ROUNDS; r++) CHECK(bs[i].got[r] == bs[i].lone, "actor %d round %d: batched = alone", i, r);
  CHECK(!made || bs[BATCH_HONEST].refused == BATCH_ROUNDS, "the hostile list was refused every time (%d of %d)",
        bs[BATCH_HONEST].refused, BATCH_ROUNDS);
  struct sp_runtime_stats st = {.size = sizeof st};
  err = sp_runtime_stats(rt, &st);
  sp_error_free(err);
  CHECK(!made || (st.batching && st.batched_lists > 0), "lists ran batched (%llu of %llu)",
        (unsigned long long)st.batched_lists, (unsigned long long)st.batch_lists);
  pthread_barrier_destroy(&start);
  for (int i = 0; i <= BATCH_HONEST; i++) sp_actor_free(bs[i].actor);
  sp_runtime_free(rt);
}

/* An actor's statistics: a list is counted once it ran, a refused one not;
 * the caller-set size is checked, and bytes past the struct are zeroed. */
static void test_actor_stats(sp_runtime_t *rt) {
  sp_actor_t *a = new_actor(rt, "test_grow", 0);
  if (!a) return;
  call1(a, "grow", 64);
  struct sp_actor_stats st = {.size = sizeof st};
  sp_error_t *err = sp_actor_stats(a, &st);
  CHECK(!err && st.lists == 0 && st.commands == 0, "fresh actor: %s", sp_error_message(err));
  sp_error_free(err);
  CHECK(honest_matmul(a, false) == honest_matmul(a, true), "the staged path computes what zero-copy does");
  sp_cmd bad = {.op = SP_OP_SCALE};
  bad.dst = bad.src[0] = (sp_tensor){0xfff00000u, SP_DTYPE_F32, {1024, 1, 1, 1}, {0}, 0};
  sp_error_free(sp_actor_submit(a, &bad, 1));
  err = sp_actor_stats(a, &st);
  CHECK(!err && st.lists == 2 && st.commands == 2 && st.validate_ms >= 0 && st.backend_ms > 0,
        "two lists ran, the refused one uncounted: %llu lists, %llu commands, %.3f + %.3f ms",
        (unsigned long long)st.lists, (unsigned long long)st.commands, st.validate_ms, st.backend_ms);
  sp_error_free(err);
  struct sp_actor_stats old = {.size = 4, .lists = 77};
  err = sp_actor_stats(a, &old);
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID && strstr(sp_error_message(err), "size is 4") && old.lists == 77,
        "a size below the first version's is refused, nothing written: %s", sp_error_message(err));
  sp_error_free(err);
  struct { struct sp_actor_stats st; uint8_t later[16]; } wide;
  memset(&wide, 0xa5, sizeof wide);
  wide.st.size = sizeof wide;
  err = sp_actor_stats(a, &wide.st);
  bool zeroed = true;
  for (size_t i = 0; i < sizeof wide.later; i++) zeroed = zeroed && wide.later[i] == 0;
  CHECK(!err && wide.st.size == sizeof wide && wide.st.lists == 2 && zeroed,
        "a newer caller's size: its fields read, later ones zero: %s", sp_error_message(err));
  sp_error_free(err);
  err = sp_actor_stats(NULL, &st);
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID, "NULL actor refused");
  sp_error_free(err);
  sp_actor_free(a);
}

/* The runtime's statistics: all zero on the CPU, the size checked. */
static void test_runtime_stats(sp_runtime_t *rt) {
  struct sp_runtime_stats rs = {.size = sizeof rs};
  sp_error_t *err = sp_runtime_stats(rt, &rs);
  bool cpu = !strcmp(sp_runtime_backend_name(rt), "cpu");
  CHECK(!err && (!cpu || (!rs.device_known && !rs.device_total_bytes && !rs.resident_bytes &&
                          !rs.resident_copies && !rs.local_transfers && !rs.repacked_bytes)),
        "runtime stats (zero on the CPU): %s", sp_error_message(err));
  sp_error_free(err);
  rs.size = 0;
  err = sp_runtime_stats(rt, &rs);
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID && strstr(sp_error_message(err), "sp_runtime_stats: size is 0"),
        "size 0 refused: %s", sp_error_message(err));
  sp_error_free(err);
  rs.size = sizeof rs;
  err = sp_runtime_stats(NULL, &rs);
  CHECK(sp_error_kind(err) == SP_ERROR_INVALID, "NULL runtime refused");
  sp_error_free(err);
}

/* A granted file, read and mapped from the guest (guests/blobs.c). */
static void test_blobs(sp_runtime_t *rt) {
  char path[] = "/tmp/samepage-blob-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) return;
  enum { SIZE = 200000 };
  static uint8_t data[SIZE];
  for (int i = 0; i < SIZE; i++) data[i] = (uint8_t)(i % 251);
  CHECK(write(fd, data, SIZE) == SIZE, "write");
  close(fd);
  size_t len;
  uint8_t *wasm = load_guest("test_blobs", &len);
  sp_blob_grant grant = {"data", path};
  const char *argv[] = {"blobs", "200000"};
  sp_actor_options opts = {.argv = argv, .argc = 2, .blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(!err, "%s", sp_error_message(err));
  sp_error_free(err);
  int code = -1;
  if (a) {
    err = sp_actor_run_main(a, &code);
    CHECK(!err && code == 0, "blobs guest: exit %d %s", code, sp_error_message(err));
    sp_error_free(err);
  }
  sp_actor_free(a);
  FILE *f = fopen(path, "rb");
  uint8_t first = 0xaa;
  CHECK(f && fread(&first, 1, 1, f) == 1 && first == 0, "the file was not modified");
  if (f) fclose(f);
  grant.path = "/nonexistent/file";
  err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(err && strstr(sp_error_message(err), "data: /nonexistent/file"), "missing grant: %s",
        sp_error_message(err));
  CHECK(sp_error_kind(err) == SP_ERROR_IO, "its kind is SP_ERROR_IO (%d)", sp_error_kind(err));
  sp_error_free(err);
  free(wasm);
  unlink(path);
}

/* An embedder's own caps on one list's work (sp_actor_options.max_list_*):
 * the 64x64x64 matmul of honest_matmul is 524288 FLOPs and 48 KiB. */
static void test_work_caps(sp_runtime_t *rt) {
  static const struct {
    uint64_t flops, bytes;
    const char *needle; /* NULL: the list must run */
  } cases[] = {
      {524288, 49152, NULL},
      {524287, 0, "need 524288 FLOPs, over this actor's cap of 524287 per list (max_list_flops)"},
      {0, 49151, "touch 49152 bytes, over this actor's cap of 49151 per list (max_list_bytes)"},
  };
  size_t len;
  uint8_t *wasm = load_guest("test_grow", &len);
  for (size_t i = 0; wasm && i < sizeof cases / sizeof *cases; i++) {
    sp_actor_options opts = {.max_list_flops = cases[i].flops, .max_list_bytes = cases[i].bytes};
    sp_actor_t *a = NULL;
    sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
    CHECK(!err, "actor: %s", sp_error_message(err));
    sp_error_free(err);
    if (!a) continue;
    call1(a, "grow", 64);
    uint8_t *base;
    size_t size;
    sp_actor_memory(a, &base, &size);
    uint32_t w = 1u << 20, x = w + 64 * 64 * 4, y = x + 64 * 64 * 4;
    sp_cmd cmd = {.op = SP_OP_MATMUL};
    cmd.dst = (sp_tensor){y, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
    cmd.src[0] = (sp_tensor){w, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
    cmd.src[1] = (sp_tensor){x, SP_DTYPE_F32, {64, 64, 1, 1}, {0}, 0};
    base[y] = 0x55; /* a refused list must leave dst alone */
    err = sp_actor_submit(a, &cmd, 1);
    if (cases[i].needle) {
      CHECK(err && strstr(sp_error_message(err), cases[i].needle), "cap case %zu: %s", i, sp_error_message(err));
      CHECK(sp_error_kind(err) == SP_ERROR_LIMIT, "cap case %zu: kind SP_ERROR_LIMIT", i);
      CHECK(base[y] == 0x55, "cap case %zu: a refused list wrote its destination", i);
    } else {
      CHECK(!err, "cap case %zu (exactly at the caps): %s", i, sp_error_message(err));
      CHECK(base[y] == 0, "cap case %zu: the matmul of zeros did not run", i);
    }
    sp_error_free(err);
    sp_actor_free(a);
  }
  free(wasm);
}

int main(void) {
  test_identity_up_to_4gib();
  test_alignment_option();
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(NULL, &rt);
  CHECK(!err, "%s", sp_error_message(err));
  if (rt) {
    test_limits_and_traps(rt);
    test_bad_modules(rt);
    test_abi_guest(rt);
    test_isolation(rt);
    test_actor_stats(rt);
    test_runtime_stats(rt);
    test_work_caps(rt);
    test_blobs(rt);
    sp_runtime_free(rt);
  }
  test_batched_isolation();
  return CHECK_DONE();
}
