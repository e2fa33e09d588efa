/*
 * test_cpu_read_once.c: the CPU backend against guest memory that changes
 * under it, and against commands whose scratch would exceed the budget
 * (issue 13, parts 1 and 4).
 *
 * `race`: the fake guest memory is the first GUEST_BYTES of a 1 GiB
 * PROT_NONE reservation; one page of it is a MAP_SHARED mapping of a
 * temporary file holding an index tensor. A thread rewrites the file with
 * pwrite in a tight loop, flipping every index between a valid value and a
 * hostile one (HOSTILE rows of a 64 KiB stride: an address inside the
 * reservation, past the guest). get_rows, set_rows and attention then run
 * RUNS times each on that tensor. Each run must succeed or fail with
 * SP_E_BOUNDS; a use of a re-read hostile index faults (SIGSEGV) or, for
 * scratch, trips ASan. get_rows results are checked too: every dst row is
 * one of the valid weight rows.
 *
 * `race-cuda`: the same race on the CUDA backend (scripts/device-check.sh;
 * exits 77, skipped, where no CUDA backend loads). Its kernels read each
 * index once into a register and bound-check it there (SECURITY.md, "Read
 * once"), so a run may pick another valid row, never one outside. CUDA
 * never reads a file-backed page in place (it cannot register one), so
 * there the index page is ordinary registered memory and the racer stores
 * into it directly; with SP_CUDA_NO_STAGING=1 the kernels read it across
 * the bus while it changes, without it they read the copy staged at the
 * start of each list.
 *
 * `budget`: commands whose scratch need passes the budget (the default
 * 256 MiB, and 1 MiB set with sp_backend_cpu_set_scratch_budget) are
 * refused before they run, with SP_E_LIMIT and "OP: needs X of scratch;
 * the budget is Y"; commands under it still run, on the same binding.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_exec.h"
#include "core/error.h"
#include "core/validate.h"

#define GUEST_BYTES ((size_t)16 << 20)
#define RESERVED ((size_t)1 << 30)
#define IDX_OFF ((uint32_t)8 << 20) /* the file-mapped page */
#define STRIDE 65536u              /* row stride the guest picks */
#define ROWS 8                     /* valid rows of the strided tensor */
#define N_IDX 256                  /* indices per command */
#define HOSTILE 5000               /* 5000 * 64 KiB: past the guest, inside the reservation */
#define RUNS 20000

static int failures;

static void check(bool ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  failures += !ok;
}

static uint8_t *guest;

static sp_tensor tensor(uint32_t offset, uint32_t dtype, uint32_t ne0, uint32_t ne1, uint32_t ne2, uint32_t nb0,
                        uint32_t nb1) {
  return (sp_tensor){.offset = offset, .dtype = dtype, .ne = {ne0, ne1, ne2, 1}, .nb = {nb0, nb1, 0}};
}

static void validate_or_die(sp_cmd *cmd) {
  sp_validate_ctx ctx = {.committed = GUEST_BYTES, .list_addr = 0, .list_bytes = 16 + sizeof *cmd, .max_cmds = 16};
  char msg[256];
  if (sp_validate_cmd(&ctx, cmd, 0, msg, sizeof msg) != SP_OK) {
    fprintf(stderr, "test command invalid: %s\n", msg);
    exit(2);
  }
}

static bool on_cuda; /* `race-cuda`: the races run on the CUDA backend */

static void open_backend(unsigned threads, size_t budget, sp_backend **be, void **binding) {
  sp_memory_view view = {.base = guest, .committed = GUEST_BYTES, .reserved = GUEST_BYTES};
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION};
  sp_error_t *err = sp_knobs_from_env(&opts.knobs); /* SP_CUDA_LIB and the CUDA knobs */
  if (!err) err = on_cuda ? sp_backend_load("cuda", &opts, threads, be) : sp_backend_cpu_new(threads, be);
  if (err && on_cuda) {
    printf("skipped: no CUDA backend here (%s)\n", sp_error_message(err));
    sp_error_free(err); /* LeakSanitizer would turn the skip into a failure */
    exit(77);
  }
  if (!err && budget) sp_backend_cpu_set_scratch_budget(*be, budget);
  if (!err) err = sp_backend_adopt(*be, &view, binding);
  if (err) {
    fprintf(stderr, "backend: %s\n", sp_error_message(err));
    exit(2);
  }
}

/* ---- race ---- */

static int fd;
static atomic_bool stop;

/* The racer's one write of every index: to the file (the CPU reads the
 * shared page), or straight into registered memory (CUDA). */
static void write_indices(const int32_t *v) {
  if (!on_cuda) {
    if (pwrite(fd, v, N_IDX * sizeof *v, 0) != (ssize_t)(N_IDX * sizeof *v)) abort();
    return;
  }
  int32_t *idx = (int32_t *)(guest + IDX_OFF);
  for (int i = 0; i < N_IDX; i++) __atomic_store_n(&idx[i], v[i], __ATOMIC_RELAXED);
}

static void *racer(void *arg) {
  (void)arg;
  int32_t good[N_IDX], bad[N_IDX];
  for (int i = 0; i < N_IDX; i++) good[i] = i % ROWS, bad[i] = HOSTILE;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) write_indices(bad), write_indices(good);
  return NULL;
}

/* Maps one page of a temporary file, shared, at guest address IDX_OFF
 * (CUDA: the page stays anonymous, see race-cuda above). */
static void map_index_file(void) {
  int32_t good[N_IDX];
  for (int i = 0; i < N_IDX; i++) good[i] = i % ROWS;
  if (on_cuda) {
    fd = -1;
    write_indices(good);
    return;
  }
  char path[] = "/tmp/sp_read_once_XXXXXX";
  fd = mkstemp(path);
  if (fd < 0 || unlink(path) || ftruncate(fd, 4096)) {
    perror("temporary file");
    exit(2);
  }
  if (mmap(guest + IDX_OFF, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  write_indices(good);
}

/* Runs cmd RUNS times while the racer flips the indices; counts outcomes.
 * `after` (may be NULL) checks a successful run's output. */
static void race(const char *name, sp_cmd *cmd, bool (*after)(void)) {
  sp_backend *be;
  void *binding;
  open_backend(2, 0, &be, &binding);
  validate_or_die(cmd);
  atomic_store(&stop, false);
  pthread_t t;
  pthread_create(&t, NULL, racer, NULL);
  int ok = 0, refused = 0, other = 0, wrong = 0;
  for (int i = 0; i < RUNS; i++) {
    sp_error_t *err = sp_backend_submit(be, binding, cmd, 1, false);
    if (!err) err = sp_backend_wait(be, binding);
    if (!err) ok++, wrong += after && !after();
    else if (sp_error_status(err) == SP_E_BOUNDS) refused++;
    else other++, printf("     %s: %s\n", name, sp_error_message(err));
    sp_error_free(err);
  }
  atomic_store(&stop, true);
  pthread_join(t, NULL);
  printf("     %s: %d ran, %d refused (SP_E_BOUNDS), %d other errors, %d wrong outputs\n", name, ok, refused,
         other, wrong);
  char what[128];
  snprintf(what, sizeof what, "%s: every run succeeds or is refused cleanly, never touches outside the guest", name);
  check(ok + refused == RUNS && other == 0 && wrong == 0, what);
  sp_backend_release(be, binding);
  sp_backend_free(be);
}

enum { W_OFF = 1 << 20, D_OFF = 4 << 20, X_OFF = 6 << 20, Q_OFF = 7 << 20, KV_OFF = 9 << 20 };

/* Weight row r (of ROWS, STRIDE apart) holds r + 1; each dst row of
 * get_rows must be one of them. */
static bool get_rows_output(void) {
  for (int r = 0; r < N_IDX; r++) {
    const float *y = (const float *)(guest + D_OFF + (size_t)r * 64);
    if (y[0] < 1 || y[0] > ROWS) return false;
    for (int i = 1; i < 16; i++)
      if (y[i] != y[0]) return false;
  }
  return true;
}

static void race_all(void) {
  map_index_file();
  for (int r = 0; r < ROWS; r++)
    for (int i = 0; i < 16; i++) ((float *)(guest + W_OFF + (size_t)r * STRIDE))[i] = (float)(r + 1);
  for (int i = 0; i < 16 * N_IDX; i++) ((float *)(guest + X_OFF))[i] = 1.0f;

  sp_cmd get = {.op = SP_OP_GET_ROWS};
  get.dst = tensor(D_OFF, SP_DTYPE_F32, 16, N_IDX, 1, 0, 0);
  get.src[0] = tensor(W_OFF, SP_DTYPE_F32, 16, ROWS, 1, STRIDE, 0);
  get.src[1] = tensor(IDX_OFF, SP_DTYPE_I32, N_IDX, 1, 1, 0, 0);
  race("get_rows", &get, get_rows_output);

  sp_cmd set = {.op = SP_OP_SET_ROWS};
  set.dst = tensor(W_OFF, SP_DTYPE_F32, 16, ROWS, 1, STRIDE, 0);
  set.src[0] = tensor(X_OFF, SP_DTYPE_F32, 16, N_IDX, 1, 0, 0);
  set.src[1] = tensor(IDX_OFF, SP_DTYPE_I32, N_IDX, 1, 1, 0, 0);
  race("set_rows", &set, NULL);

  /* N_IDX tokens, one head of 16; keys and values ROWS cache rows STRIDE
   * apart; positions are the racing indices. */
  sp_cmd att = {.op = SP_OP_ATTENTION, .param = {0x3e800000u /* 0.25f */}};
  att.dst = tensor(D_OFF, SP_DTYPE_F32, 16, 1, N_IDX, 0, 0);
  att.src[0] = tensor(X_OFF, SP_DTYPE_F32, 16, 1, N_IDX, 0, 0);
  att.src[1] = tensor(W_OFF, SP_DTYPE_F32, 16, 1, ROWS, 64, STRIDE);
  att.src[2] = tensor(Q_OFF, SP_DTYPE_F32, 16, 1, ROWS, 64, STRIDE / 2);
  att.src[3] = tensor(IDX_OFF, SP_DTYPE_I32, N_IDX, 1, 1, 0, 0);
  race("attention", &att, NULL);
  if (fd >= 0) close(fd);
}

/* ---- budget ---- */

/* Submits cmd; true when it is refused with SP_E_LIMIT and a message that
 * starts with `want` (after "cpu: cmd[0]: "). */
static bool refused_with(sp_backend *be, void *binding, sp_cmd *cmd, const char *want) {
  validate_or_die(cmd);
  sp_error_t *err = sp_backend_submit(be, binding, cmd, 1, false);
  const char *msg = err ? sp_error_message(err) : "(ran)";
  printf("     %s\n", msg);
  bool ok = err && sp_error_status(err) == SP_E_LIMIT && strstr(msg, want);
  sp_error_free(err);
  return ok;
}

static bool runs(sp_backend *be, void *binding, sp_cmd *cmd) {
  validate_or_die(cmd);
  sp_error_t *err = sp_backend_submit(be, binding, cmd, 1, false);
  if (err) printf("     %s\n", sp_error_message(err));
  bool ok = !err;
  sp_error_free(err);
  return ok;
}

/* matmul of m activation rows of k, 4 bytes apart (overlapping: a small
 * guest can name many rows), against one q8_0 weight row. */
static sp_cmd overlapping_matmul(uint32_t k, uint32_t m) {
  sp_cmd c = {.op = SP_OP_MATMUL};
  c.dst = tensor(D_OFF, SP_DTYPE_F32, 1, m, 1, 0, 0);
  c.src[0] = tensor(W_OFF, SP_DTYPE_Q8_0, k, 1, 1, 0, 0);
  c.src[1] = tensor(X_OFF, SP_DTYPE_F32, k, m, 1, 4, 0);
  return c;
}

static void budget_all(void) {
  sp_backend *be;
  void *binding;
  open_backend(2, 0, &be, &binding);
  /* 40000 rows x 256 blocks x 40 bytes = 390.6 MiB of quantized rows. */
  sp_cmd mm = overlapping_matmul(8192, 40000);
  check(refused_with(be, binding, &mm, "matmul: needs 390.6 MiB of scratch; the budget is 256 MiB"),
        "default budget: a matmul needing 390.6 MiB is refused, naming need and budget");
  /* 64 query heads over a 1M-key cache whose keys are 4 bytes apart: at
   * the last position the working arrays alone are 64 x 1M floats. */
  sp_cmd att = {.op = SP_OP_ATTENTION, .param = {0x3e800000u}};
  att.dst = tensor(D_OFF, SP_DTYPE_F32, 64, 64, 1, 0, 0);
  att.src[0] = tensor(Q_OFF, SP_DTYPE_F32, 64, 64, 1, 0, 0);
  att.src[1] = tensor(KV_OFF, SP_DTYPE_F32, 64, 1, 1000000, 256, 4);
  att.src[2] = tensor(KV_OFF, SP_DTYPE_F32, 64, 1, 1000000, 256, 4);
  att.src[3] = tensor(X_OFF, SP_DTYPE_I32, 1, 1, 1, 0, 0);
  int32_t last_key = 999999;
  memcpy(guest + X_OFF, &last_key, 4);
  check(refused_with(be, binding, &att, "attention: needs "),
        "default budget: an attention over all keys of a 1M-key cache is refused");
  memset(guest + X_OFF, 0, 4);
  check(runs(be, binding, &att), "default budget: an attention at position 0 of the same cache runs (scratch "
                                 "follows the keys the positions reach, not the cache length)");
  sp_cmd small = overlapping_matmul(8192, 64);
  check(runs(be, binding, &small), "default budget: the same binding then runs a matmul of 64 rows");
  sp_backend_release(be, binding);
  sp_backend_free(be);

  open_backend(2, (size_t)1 << 20, &be, &binding);
  sp_cmd mid = overlapping_matmul(8192, 1000);
  check(refused_with(be, binding, &mid, "matmul: needs 9.8 MiB of scratch; the budget is 1 MiB"),
        "1 MiB budget: a matmul needing 9.8 MiB is refused");
  sp_cmd one = overlapping_matmul(8192, 1);
  check(runs(be, binding, &one), "1 MiB budget: a one-row matmul runs");
  sp_backend_release(be, binding);
  sp_backend_free(be);
}

int main(int argc, char **argv) {
  on_cuda = argc >= 2 && !strcmp(argv[1], "race-cuda");
  bool do_race = argc < 2 || !strcmp(argv[1], "race") || on_cuda, do_budget = argc < 2 || !strcmp(argv[1], "budget");
  guest = mmap(NULL, RESERVED, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (guest == MAP_FAILED || mprotect(guest, GUEST_BYTES, PROT_READ | PROT_WRITE)) {
    perror("guest memory");
    return 2;
  }
  if (do_race) race_all();
  if (do_budget) budget_all();
  printf("%s\n", failures ? "FAILED" : "all passed");
  return failures ? 1 : 0;
}
