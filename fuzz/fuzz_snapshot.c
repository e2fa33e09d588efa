/*
 * fuzz_snapshot.c: libFuzzer target for the snapshot reader
 * (src/snapshot/snapshot_read.c: header, chunk walk, checksums, BLOB/FROZEN/PAGES
 * records, offline reads).
 *
 * The input is a snapshot file. It is parsed from a heap copy of exactly its
 * size with sp_snapshot_file_open_bytes, the same parser (parse_file) that
 * sp_snapshot_file_open runs on its mapping for `samepage kv export` and
 * sp_actor_restore: a read one byte past the end is an ASan report (a page
 * mapping would hide it), and no memfd, mmap or page fault is paid per
 * execution. SP_FUZZ_MEMFD=1 goes through a memfd and /proc/self/fd with
 * sp_snapshot_file_open instead (about 3x slower). When it parses, every
 * offline accessor is walked: annotations, the granted-file hash, and reads
 * of linear memory at several addresses (whose bytes must come back without
 * touching anything outside the input: ASan watches the copies).
 *
 * Checksums would stop almost every mutation at the first chunk, so by
 * default the target re-seals the input first: it recomputes each chunk's
 * checksum (and the header's) over whatever payload length the chunk header claims (when that
 * lies inside the input). SP_FUZZ_RAW=1 fuzzes the bytes as given.
 *
 * Seeds: built with -DSP_FUZZ_SEED_MAKER (scripts/fuzz builds that variant
 * as fuzz_snapshot_seeds), with SP_FUZZ_MAKE_SEEDS=DIR and
 * SP_FUZZ_GUEST_DIR (build/guests), LLVMFuzzerInitialize writes real
 * snapshots of small test guests into DIR and exits. The fuzz target itself
 * leaves that out, so the linker can drop Wasmtime (25 MB -> a few MB).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sanitizer/asan_interface.h>

#include "core/error.h"
#include "core/hash64.h"
#include "samepage.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapshot_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int memfd = -1; /* only with SP_FUZZ_MEMFD=1 */
static bool raw;

#ifdef SP_FUZZ_SEED_MAKER
static uint8_t *load(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = malloc((size_t)n);
  *len = fread(d, 1, (size_t)n, f);
  fclose(f);
  return d;
}

static void die(sp_error_t *err, const char *what) {
  if (!err) return;
  fprintf(stderr, "fuzz_snapshot seeds: %s: %s\n", what, sp_error_message(err));
  exit(1);
}

/* Snapshots of the grow guest (plain memory) and of the mapsum guest (a
 * granted file mapped, by reference and self-contained). */
static void make_seeds(const char *dir, const char *guests) {
  char path[1024], file[1024];
  sp_runtime_options ro = {.backend = "cpu", .threads = 1};
  sp_runtime_t *rt = NULL;
  die(sp_runtime_new(&ro, &rt), "runtime");
  size_t len;
  snprintf(path, sizeof path, "%s/test_grow.wasm", guests);
  uint8_t *wasm = load(path, &len);
  if (!wasm) die(sp_error_new("cannot read %s", path), "guest");
  sp_actor_t *a = NULL;
  die(sp_actor_new(rt, wasm, len, NULL, &a), "grow actor");
  int64_t args[2] = {1, 0}, r;
  die(sp_actor_call(a, "grow", args, 1, &r), "grow");
  for (int i = 0; i < 8; i++) {
    int64_t st[2] = {65536 + i * 4099, 17 + i};
    die(sp_actor_call(a, "store", st, 2, NULL), "store");
  }
  snprintf(file, sizeof file, "%s/grow.snap", dir);
  die(sp_actor_snapshot(a, file, NULL, NULL), "snapshot grow");
  sp_actor_free(a);
  free(wasm);

  snprintf(path, sizeof path, "%s/test_mapsum.wasm", guests);
  wasm = load(path, &len);
  if (!wasm) die(sp_error_new("cannot read %s", path), "guest");
  char data[1024];
  snprintf(data, sizeof data, "%s/.seed_data", dir);
  FILE *f = fopen(data, "wb");
  for (int i = 0; i < 8192 * 4; i++) fputc(i % 251, f);
  fclose(f);
  sp_blob_grant grant = {"data", data};
  sp_actor_options opts = {.blobs = &grant, .n_blobs = 1};
  die(sp_actor_new(rt, wasm, len, &opts, &a), "mapsum actor");
  die(sp_actor_call(a, "map_data", NULL, 0, &r), "map_data");
  die(sp_actor_call(a, "sum_host", NULL, 0, &r), "sum_host");
  snprintf(file, sizeof file, "%s/mapped.snap", dir);
  die(sp_actor_snapshot(a, file, NULL, NULL), "snapshot mapped");
  sp_snapshot_options sc = {.self_contained = true};
  snprintf(file, sizeof file, "%s/self_contained.snap", dir);
  die(sp_actor_snapshot(a, file, &sc, NULL), "snapshot self-contained");
  sp_actor_free(a);
  free(wasm);
  unlink(data);
  sp_runtime_free(rt);
}

#endif

int LLVMFuzzerInitialize(int *argc, char ***argv) {
#ifdef SP_FUZZ_SEED_MAKER
  const char *seeds = getenv("SP_FUZZ_MAKE_SEEDS"), *guests = getenv("SP_FUZZ_GUEST_DIR");
  if (seeds) {
    make_seeds(seeds, guests ? guests : "build/guests");
    exit(0);
  }
#endif
  raw = getenv("SP_FUZZ_RAW") && getenv("SP_FUZZ_RAW")[0] == '1';
  if (getenv("SP_FUZZ_MEMFD") && getenv("SP_FUZZ_MEMFD")[0] == '1') {
    memfd = memfd_create("fuzz_snapshot", 0);
    if (memfd < 0) abort();
  }
  return 0;
}

/* Opens the (resealed) input through a real file descriptor, as the CLI does. */
static sp_error_t *open_through_memfd(const uint8_t *bytes, size_t size, sp_snapshot_file **f) {
  if (ftruncate(memfd, 0) || pwrite(memfd, bytes, size, 0) != (ssize_t)size) abort();
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
  return sp_snapshot_file_open(path, f);
}

/* One buffer for every execution, its bytes past the input poisoned: ASan
 * reports a read one byte past the end exactly as with a malloc of the
 * input's size, without a fresh mmap (inputs are 64-200 KiB, above ASan's
 * small-allocation sizes) and its page faults per execution. */
static uint8_t *input_copy(const uint8_t *data, size_t size) {
  static uint8_t *buf;
  static size_t cap;
  if (!buf || size > cap) {
    if (buf) ASAN_UNPOISON_MEMORY_REGION(buf, cap);
    free(buf);
    cap = size < 262144 ? 262144 : size;
    buf = malloc(cap);
    if (!buf) abort();
  }
  ASAN_UNPOISON_MEMORY_REGION(buf, cap);
  memcpy(buf, data, size);
  ASAN_POISON_MEMORY_REGION(buf + size, cap - size);
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = input_copy(data, size);
  if (!raw) sp_snap_reseal(copy, size);
  sp_snapshot_file *f = NULL;
  sp_error_t *err = memfd >= 0 ? open_through_memfd(copy, size, &f) : sp_snapshot_file_open_bytes(copy, size, &f);
  if (err) {
    if (!sp_error_message(err)[0]) abort(); /* every refusal says why */
    sp_error_free(err);
    return 0;
  }
  sp_tensor t;
  (void)sp_snapshot_file_annotation(f, "kv.n_past", &t);
  (void)sp_snapshot_file_annotation(f, "blk.0.k_cache", &t);
  (void)sp_snapshot_file_blob_hash(f, "data");
  (void)sp_snapshot_file_blob_hash(f, "model");
  static uint8_t buf[3 * 65536];
  static const uint64_t addrs[] = {0, 4096, 65536 - 100, 65536, 131072 + 7, 1u << 20, 0xffffff00u, UINT64_MAX - 10};
  for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
    sp_error_t *e = sp_snapshot_file_read(f, addrs[i], sizeof buf, buf);
    sp_error_free(e);
    e = sp_snapshot_file_read(f, addrs[i], 1, buf);
    sp_error_free(e);
  }
  sp_snapshot_file_close(f);
  return 0;
}
