/*
 * test_hostile.c: the hostile-guest suite, through the embedding API.
 *
 * Every case of guests/hostile.c runs in its own actor, in one shared
 * runtime, while an honest actor keeps computing beside it on another
 * thread. For each case:
 *  - the hostile guest gets the expected status with a message naming the
 *    problem, or traps / is stopped with the expected message;
 *  - the process survives (we are still here to check the next case);
 *  - every honest result computed during the case hashes identically to
 *    the honest actor's solo run, made before any hostile actor existed.
 *
 * Usage: test_hostile [CASE...] runs only the named cases.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "core/knobs.h"
#include "runtime/runtime_impl.h"

typedef enum outcome { STATUS, TRAP, TIMEOUT } outcome;

/* Indices and positions read from guest memory are checked when the op
 * runs; as samepage_abi.h promises, the guest gets SP_E_BOUNDS and a
 * message naming the bad index. */
#define RUNTIME_INDEX_STATUS SP_E_BOUNDS

typedef struct expect {
  const char *name;
  outcome kind;
  int status;         /* STATUS: the sp_status the guest got (0 = SP_OK) */
  const char *needle; /* substring of the message (NULL: none checked) */
} expect;

static const expect cases[] = {
    /* bounds, wrapping and overflow */
    {"dst_past_memory", STATUS, SP_E_BOUNDS, "cmd[0].dst: offset 0xfffffff0"},
    {"src_offset_wraps", STATUS, SP_E_BOUNDS, "cmd[0].src[0]: offset 0xfffffffc"},
    {"extent_huge", STATUS, SP_E_BOUNDS, "cmd[0].src[1]"},
    {"shape_product_overflows", STATUS, SP_E_SHAPE, "overflows"},
    {"strides_overflow", STATUS, SP_E_SHAPE, "overflows"},
    {"row_stride_huge", STATUS, SP_E_BOUNDS, "outside committed memory"},
    {"zero_extent", STATUS, SP_E_SHAPE, "ne[1] is 0"},
    {"dst_ends_one_past_memory", STATUS, SP_E_BOUNDS, "cmd[0].dst"},
    /* the list itself */
    {"list_outside_memory", STATUS, SP_E_BOUNDS, "list: bytes"},
    {"list_wraps_4gib", STATUS, SP_E_BOUNDS, "outside committed memory"},
    {"list_bytes_huge", STATUS, SP_E_BOUNDS, "list: bytes"},
    {"list_short", STATUS, SP_E_LIST, "shorter than the 16-byte header"},
    {"list_bad_magic", STATUS, SP_E_LIST, "header.magic"},
    {"list_bad_version", STATUS, SP_E_LIST, "header.version"},
    {"list_bad_cmd_size", STATUS, SP_E_LIST, "header.cmd_size"},
    {"list_count_huge", STATUS, SP_E_LIMIT, "header.count"},
    {"list_count_lies", STATUS, SP_E_LIST, "does not match header.count"},
    {"dst_overwrites_list", STATUS, SP_E_ALIAS, "overlaps the command list"},
    {"dst_overwrites_header", STATUS, SP_E_ALIAS, "overlaps the command list"},
    {"list_longest_accepted", STATUS, SP_OK, NULL},
    {"list_too_long", STATUS, SP_E_LIMIT, "65537 commands exceeds the limit of 65536"},
    /* work per list: refused from the shapes, before anything runs */
    {"list_flops_storm", STATUS, SP_E_LIMIT, "FLOPs, over this actor's cap of 4398046511104 per list (max_list_flops)"},
    {"list_bytes_storm", STATUS, SP_E_LIMIT, "bytes, over this actor's cap of 1099511627776 per list (max_list_bytes)"},
    /* types, ops, fields */
    {"unknown_op", STATUS, SP_E_OP, "unknown op 999"},
    {"op_count", STATUS, SP_E_OP, "unknown op"},
    {"op_negative", STATUS, SP_E_OP, "unknown op 2147483648"},
    {"unknown_dtype", STATUS, SP_E_DTYPE, "unknown dtype 99"},
    {"dtype_count", STATUS, SP_E_DTYPE, "unknown dtype"},
    {"dtype_missing", STATUS, SP_E_DTYPE, "missing"},
    {"wrong_dtype", STATUS, SP_E_DTYPE, "src[1].dtype"},
    {"flags_set", STATUS, SP_E_PARAM, "flags"},
    {"tensor_reserved", STATUS, SP_E_PARAM, "reserved"},
    {"unused_slot", STATUS, SP_E_PARAM, "src[3]"},
    {"unused_param", STATUS, SP_E_PARAM, "param[7]"},
    {"misaligned", STATUS, SP_E_ALIGN, "aligned"},
    {"partial_block", STATUS, SP_E_SHAPE, "block"},
    {"shape_mismatch", STATUS, SP_E_SHAPE, "dst.ne[1]"},
    /* aliasing */
    {"dst_is_source", STATUS, SP_E_ALIAS, "src[0]"},
    {"dst_rows_overlap", STATUS, SP_E_ALIAS, "rows overlap"},
    {"inplace_shifted", STATUS, SP_E_ALIAS, "identical"},
    {"rope_dst_overlaps", STATUS, SP_E_ALIAS, "overlaps dst"},
    /* indices and positions in guest memory, checked when the op runs */
    {"get_rows_past_end", STATUS, RUNTIME_INDEX_STATUS, "= 16 is outside 0..15"},
    {"get_rows_negative", STATUS, RUNTIME_INDEX_STATUS, "= -1 is outside"},
    {"get_rows_int_min", STATUS, RUNTIME_INDEX_STATUS, "is outside"},
    {"set_rows_past_end", STATUS, RUNTIME_INDEX_STATUS, "= 2147483647 is outside"},
    {"set_rows_negative", STATUS, RUNTIME_INDEX_STATUS, "= -5 is outside"},
    {"attention_pos_past_cache", STATUS, RUNTIME_INDEX_STATUS, "= 8 is outside 0..7"},
    {"attention_pos_negative", STATUS, RUNTIME_INDEX_STATUS, "= -1 is outside"},
    {"attention_pos_huge", STATUS, RUNTIME_INDEX_STATUS, "is outside"},
    {"rope_extreme_positions", STATUS, SP_OK, NULL},
    /* NaN and infinities: computed, never a crash */
    {"nan_matmul", STATUS, SP_OK, NULL},
    {"nan_add", STATUS, SP_OK, NULL},
    {"nan_mul", STATUS, SP_OK, NULL},
    {"nan_scale", STATUS, SP_OK, NULL},
    {"nan_get_rows", STATUS, SP_OK, NULL},
    {"nan_rmsnorm", STATUS, SP_OK, NULL},
    {"nan_rope", STATUS, SP_OK, NULL},
    {"nan_attention", STATUS, SP_OK, NULL},
    {"nan_set_rows", STATUS, SP_OK, NULL},
    /* scratch (host, or device on a GPU) within the memory budget (1/8 of
     * MEMORY_LIMIT); the need depends on the backend's activation layout */
    {"scratch_over_budget", STATUS, SP_E_LIMIT, "of scratch; the budget is 8 MiB"},
    {"attention_scratch_follows_positions", STATUS, SP_OK, NULL},
    {"list_overflows", STATUS, SP_E_LIMIT, "header.dropped: 2 command(s) did not fit in the list after its 4"},
    {"nan_swiglu", STATUS, SP_OK, NULL},
    {"nan_softmax", STATUS, SP_OK, NULL},
    {"nan_copy_f16", STATUS, SP_OK, NULL},
    {"nan_q8_weights", STATUS, SP_OK, NULL},
    /* granted files */
    {"blob_ungranted", STATUS, SP_E_PARAM, "no file was granted as \"secret\""},
    {"blob_path_traversal", STATUS, SP_E_PARAM, "no file was granted as \"../../etc/passwd\""},
    {"blob_absolute_path", STATUS, SP_E_PARAM, "no file was granted"},
    {"blob_name_with_nul", STATUS, SP_E_PARAM, "no file was granted"},
    {"blob_name_outside", STATUS, SP_E_BOUNDS, "outside memory"},
    {"blob_name_too_long", STATUS, SP_E_BOUNDS, "too long"},
    {"blob_bad_handle", STATUS, SP_E_PARAM, "handle 7"},
    {"blob_negative_handle", STATUS, SP_E_PARAM, "-1"},
    {"blob_read_outside", STATUS, SP_E_BOUNDS, "outside committed memory"},
    {"blob_read_past_eof", STATUS, SP_OK, NULL},
    {"blob_map_misaligned", STATUS, SP_E_ALIGN, "64 KiB aligned"},
    {"blob_map_past_file", STATUS, SP_E_BOUNDS, "not inside the"},
    {"blob_map_outside_memory", STATUS, SP_E_BOUNDS, "outside committed memory"},
    /* freeze and flush misuse */
    {"freeze_outside", STATUS, SP_E_BOUNDS, "freeze"},
    {"freeze_overlapping", STATUS, SP_E_ALIAS, "overlaps a frozen range"},
    {"freeze_too_many", STATUS, SP_E_LIMIT, "at most 16"},
    {"write_frozen", STATUS, SP_E_ALIAS, "frozen"},
    {"flush_unfrozen", STATUS, SP_E_PARAM, "is not inside one frozen"},
    {"flush_straddling", STATUS, SP_E_PARAM, "is not inside one frozen"},
    /* memory: grow fails cleanly (the guest reports SP_E_LIMIT itself) */
    {"grow_past_limit", STATUS, SP_E_LIMIT, NULL},
    {"grow_4gib_at_once", STATUS, SP_E_LIMIT, NULL},
    {"tensor_in_ungrown_memory", STATUS, SP_E_BOUNDS, "outside committed memory"},
    {"last_error_outside", STATUS, SP_E_BOUNDS, NULL},
    /* traps and runaway work */
    {"stack_overflow", TRAP, 0, "call stack exhausted"},
    {"infinite_loop", TIMEOUT, 0, "guest exceeded its 300 ms time limit"},
    {"infinite_calls", TIMEOUT, 0, "guest exceeded its 300 ms time limit"},
    {"submit_storm", TIMEOUT, 0, "guest exceeded its 300 ms time limit"},
    {"calls_abort", TRAP, 0, "unreachable"},
    {"unreachable", TRAP, 0, "unreachable"},
    {"divide_by_zero", TRAP, 0, "integer divide by zero"},
    {"int_min_over_minus_one", TRAP, 0, "integer overflow"},
    {"trunc_nan", TRAP, 0, "invalid conversion to integer"},
    {"memory_out_of_bounds", TRAP, 0, "out of bounds memory access"},
    {"indirect_type_mismatch", TRAP, 0, "indirect call type mismatch"},
    {"table_out_of_bounds", TRAP, 0, "out of bounds table access"},
    {"null_call", TRAP, 0, "uninitialized element"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

#define TIMEOUT_MS 300        /* the runaway cases' limit */
#define CASE_TIMEOUT_MS 60000 /* every other case: generous, for ASan */
#define MEMORY_LIMIT (64u << 20)

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the honest actor: matmul + rmsnorm + attention on its own memory ---- */

#define H_D 64    /* head dim */
#define H_HQ 4    /* query heads */
#define H_HKV 2   /* kv heads */
#define H_T 8     /* tokens */
#define H_C 32    /* cache rows */
#define H_E (H_D * H_HQ) /* embedding: 256 */

typedef struct honest {
  sp_actor_t *actor;
  uint32_t x, w, y, norm_w, z, k, v, pos, out; /* guest addresses */
  uint64_t solo;                               /* hash of the solo run */
  atomic_bool stop;
  atomic_int runs, mismatches, errors;
} honest;

static uint64_t fnv1a(const uint8_t *p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void honest_fill(honest *h) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(h->actor, &base, &size);
  uint32_t at = 1u << 20;
  h->x = at, at += H_E * H_T * 4;
  h->w = at, at += H_E * H_E * 4;
  h->y = at, at += H_E * H_T * 4;
  h->norm_w = at, at += H_E * 4;
  h->z = at, at += H_E * H_T * 4;
  h->k = at, at += H_D * H_HKV * H_C * 4;
  h->v = at, at += H_D * H_HKV * H_C * 4;
  h->pos = at, at += H_T * 4;
  h->out = at, at += H_E * H_T * 4;
  CHECK(at <= size, "honest memory too small: %u > %zu", at, size);
  float *f;
  f = (float *)(base + h->x);
  for (int i = 0; i < H_E * H_T; i++) f[i] = (float)((i * 7) % 23) * 0.05f - 0.5f;
  f = (float *)(base + h->w);
  for (int i = 0; i < H_E * H_E; i++) f[i] = (float)((i * 13) % 31) * 0.01f - 0.15f;
  f = (float *)(base + h->norm_w);
  for (int i = 0; i < H_E; i++) f[i] = 1.0f + (float)(i % 5) * 0.1f;
  f = (float *)(base + h->k);
  for (int i = 0; i < H_D * H_HKV * H_C; i++) f[i] = (float)((i * 3) % 17) * 0.02f;
  f = (float *)(base + h->v);
  for (int i = 0; i < H_D * H_HKV * H_C; i++) f[i] = (float)((i * 5) % 19) * 0.03f - 0.2f;
  int32_t *pos = (int32_t *)(base + h->pos);
  for (int t = 0; t < H_T; t++) pos[t] = 20 + t;
}

/* Runs the honest list once and returns the hash of its result bytes. */
static uint64_t honest_run(honest *h, sp_error_t **err) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(h->actor, &base, &size);
  memset(base + h->y, 0, H_E * H_T * 4);
  memset(base + h->z, 0, H_E * H_T * 4);
  memset(base + h->out, 0, H_E * H_T * 4);
  sp_cmd cmds[3] = {{.op = SP_OP_MATMUL}, {.op = SP_OP_RMSNORM}, {.op = SP_OP_ATTENTION}};
  cmds[0].dst = (sp_tensor){h->y, SP_DTYPE_F32, {H_E, H_T, 1, 1}, {0}, 0};
  cmds[0].src[0] = (sp_tensor){h->w, SP_DTYPE_F32, {H_E, H_E, 1, 1}, {0}, 0};
  cmds[0].src[1] = (sp_tensor){h->x, SP_DTYPE_F32, {H_E, H_T, 1, 1}, {0}, 0};
  cmds[1].dst = (sp_tensor){h->z, SP_DTYPE_F32, {H_E, H_T, 1, 1}, {0}, 0};
  cmds[1].src[0] = cmds[0].dst;
  cmds[1].src[1] = (sp_tensor){h->norm_w, SP_DTYPE_F32, {H_E, 1, 1, 1}, {0}, 0};
  float eps = 1e-5f, scale = 0.125f;
  memcpy(&cmds[1].param[0], &eps, 4);
  cmds[2].dst = (sp_tensor){h->out, SP_DTYPE_F32, {H_D, H_HQ, H_T, 1}, {0}, 0};
  cmds[2].src[0] = (sp_tensor){h->z, SP_DTYPE_F32, {H_D, H_HQ, H_T, 1}, {0}, 0};
  cmds[2].src[1] = (sp_tensor){h->k, SP_DTYPE_F32, {H_D, H_HKV, H_C, 1}, {0}, 0};
  cmds[2].src[2] = (sp_tensor){h->v, SP_DTYPE_F32, {H_D, H_HKV, H_C, 1}, {0}, 0};
  cmds[2].src[3] = (sp_tensor){h->pos, SP_DTYPE_I32, {H_T, 1, 1, 1}, {0}, 0};
  memcpy(&cmds[2].param[0], &scale, 4);
  *err = sp_actor_submit(h->actor, cmds, 3);
  uint64_t hash = 1469598103934665603ull;
  hash = fnv1a(base + h->y, H_E * H_T * 4, hash);
  hash = fnv1a(base + h->z, H_E * H_T * 4, hash);
  return fnv1a(base + h->out, H_E * H_T * 4, hash);
}

static void *honest_loop(void *arg) {
  honest *h = arg;
  do {
    sp_error_t *err = NULL;
    uint64_t hash = honest_run(h, &err);
    if (err) atomic_fetch_add(&h->errors, 1);
    else if (hash != h->solo) atomic_fetch_add(&h->mismatches, 1);
    sp_error_free(err);
    atomic_fetch_add(&h->runs, 1);
  } while (!atomic_load(&h->stop));
  return NULL;
}

/* ---- one hostile case ---- */

typedef struct suite {
  sp_runtime_t *rt;
  uint8_t *wasm;
  size_t wasm_len;
  const char *blob_path;
  honest honest;
  int failed_cases;
} suite;

static void run_case(suite *s, const expect *e) {
  const char *argv[] = {"hostile", e->name};
  sp_blob_grant grant = {"data", s->blob_path};
  sp_actor_options opts = {.argv = argv, .argc = 2, .memory_limit = MEMORY_LIMIT,
                           .blobs = &grant, .n_blobs = 1,
                           .timeout_ms = e->kind == TIMEOUT ? TIMEOUT_MS : CASE_TIMEOUT_MS};
  int failures_before = check_failures;
  honest *h = &s->honest;
  atomic_store(&h->stop, false);
  atomic_store(&h->runs, 0);
  atomic_store(&h->mismatches, 0);
  atomic_store(&h->errors, 0);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, honest_loop, h) == 0, "start the honest thread");

  sp_actor_t *actor = NULL;
  sp_error_t *err = sp_actor_new(s->rt, s->wasm, s->wasm_len, &opts, &actor);
  CHECK(!err, "%s: actor: %s", e->name, sp_error_message(err));
  sp_error_free(err);
  double t0 = now_ms(), elapsed = 0;
  if (actor) {
    int code = -1;
    err = sp_actor_run_main(actor, &code);
    elapsed = now_ms() - t0;
    const char *msg = err ? sp_error_message(err) : actor->last_error;
    if (e->kind == STATUS) {
      CHECK(!err && code == -e->status, "%s: want status %d, got exit %d (%s)", e->name, e->status, code,
            err ? sp_error_message(err) : actor->last_error);
    } else {
      CHECK(err != NULL, "%s: want a %s, the guest exited %d", e->name,
            e->kind == TRAP ? "trap" : "timeout", code);
      sp_error_kind_t want = e->kind == TRAP ? SP_ERROR_TRAP : SP_ERROR_TIMEOUT;
      CHECK(sp_error_kind(err) == want, "%s: error kind %d, want %d", e->name, sp_error_kind(err), want);
    }
    if (e->needle) CHECK(strstr(msg, e->needle), "%s: message lacks \"%s\": %s", e->name, e->needle, msg);
    if (e->kind == TIMEOUT)
      CHECK(elapsed >= TIMEOUT_MS && elapsed < TIMEOUT_MS + 2000, "%s: stopped after %.0f ms", e->name, elapsed);
    if (e->kind != TIMEOUT) CHECK(elapsed < CASE_TIMEOUT_MS, "%s: took %.0f ms", e->name, elapsed);
    if (getenv("SP_HOSTILE_VERBOSE")) printf("  %-26s %6.1f ms  %s\n", e->name, elapsed, msg);
    sp_error_free(err);
  }
  sp_actor_free(actor);

  atomic_store(&h->stop, true);
  pthread_join(thread, NULL);
  CHECK(atomic_load(&h->runs) >= 1, "%s: the honest actor never ran", e->name);
  CHECK(atomic_load(&h->errors) == 0, "%s: honest submits failed %d times", e->name, atomic_load(&h->errors));
  CHECK(atomic_load(&h->mismatches) == 0, "%s: honest result differed from solo %d of %d times", e->name,
        atomic_load(&h->mismatches), atomic_load(&h->runs));
  printf("%s %-26s %7.1f ms, honest runs beside it: %d\n", check_failures == failures_before ? "ok  " : "FAIL",
         e->name, elapsed, atomic_load(&h->runs));
  if (check_failures != failures_before) s->failed_cases++;
}

/* At least 50 cases, each listed once. */
static void check_case_list(void) {
  CHECK(N_CASES >= 50, "only %zu hostile cases", N_CASES);
  for (size_t i = 0; i < N_CASES; i++)
    for (size_t j = 0; j < i; j++)
      CHECK(strcmp(cases[i].name, cases[j].name), "case %s listed twice", cases[i].name);
}

static bool selected(int argc, char **argv, const char *name) {
  if (argc < 2) return true;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], name)) return true;
  return false;
}

int main(int argc, char **argv) {
  suite s = {0};
  check_case_list();
  char path[] = "/tmp/samepage-hostile-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  static uint8_t data[3 * 65536];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
  CHECK(fd >= 0 && write(fd, data, sizeof data) == (ssize_t)sizeof data, "write the granted file");
  if (fd >= 0) close(fd);
  s.blob_path = path;

  /* SP_TEST_BACKEND=cuda runs the suite on the GPU (under compute-sanitizer
   * on the device machine: scripts/device-check.sh), SP_TEST_BACKEND=vulkan
   * on a Vulkan device (test_hostile_vulkan: lavapipe in CI, where the
   * plain test stays on the CPU). */
  const char *backend = getenv("SP_TEST_BACKEND");
  static struct sp_knobs knobs; /* SP_NO_FILE_MAPS, SP_ISOLATION: the ctest variants */
  sp_error_t *err = sp_knobs_from_env(&knobs);
  CHECK(!err, "knobs: %s", sp_error_message(err));
  sp_error_free(err);
  sp_runtime_options ropts = {.backend = backend && *backend ? backend : "cpu", .knobs = &knobs};
  err = sp_runtime_new(&ropts, &s.rt);
  CHECK(!err, "runtime: %s", sp_error_message(err));
  sp_error_free(err);
  if (!s.rt) return CHECK_DONE();
  s.wasm = load_guest("test_hostile", &s.wasm_len);

  /* The honest actor and its solo hash, before any hostile actor exists. */
  size_t glen;
  uint8_t *gwasm = load_guest("test_grow", &glen);
  err = sp_actor_new(s.rt, gwasm, glen, NULL, &s.honest.actor);
  free(gwasm);
  CHECK(!err, "honest actor: %s", sp_error_message(err));
  sp_error_free(err);
  if (s.honest.actor) {
    int64_t pages = 40, old = -1;
    err = sp_actor_call(s.honest.actor, "grow", &pages, 1, &old);
    CHECK(!err && old > 0, "honest grow: %s", sp_error_message(err));
    sp_error_free(err);
    honest_fill(&s.honest);
    s.honest.solo = honest_run(&s.honest, &err);
    CHECK(!err, "honest solo run: %s", sp_error_message(err));
    sp_error_free(err);
    uint64_t again = honest_run(&s.honest, &err);
    sp_error_free(err);
    CHECK(again == s.honest.solo, "the honest run is not deterministic on its own");
    int ran = 0;
    for (size_t i = 0; i < N_CASES; i++) {
      if (!selected(argc, argv, cases[i].name)) continue;
      run_case(&s, &cases[i]);
      ran++;
    }
    printf("%d hostile cases run, %d failed\n", ran, s.failed_cases);
  }
  sp_actor_free(s.honest.actor);
  free(s.wasm);
  sp_runtime_free(s.rt);
  unlink(path);
  return CHECK_DONE();
}
