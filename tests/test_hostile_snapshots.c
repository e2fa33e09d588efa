/*
 * test_hostile_snapshots.c GUEST_DIR SYNTH_GGUF SAMEPAGE WORKDIR: what a
 * snapshot declares, crafted (issue 13, items 3 and 10).
 *
 * A real snapshot of the LLM guest on a synthetic model (tools/synth_gguf),
 * with one declaration changed and the checksums recomputed, so only the
 * field checks stand between it and the host:
 *  - the V cache annotation at the end of memory, past 4 GiB, or with a
 *    head stride of 2 (rows overlapping);
 *  - two frozen ranges overlapping, a device-local range on a frozen one;
 *  - an annotation name with a NUL in it, a name given twice;
 *  - a second memory chunk (it would move the bounds already checked).
 * Each is refused, with a message naming the field, by the snapshot reader
 * (sp_snapshot_file_open), by sp_actor_restore, and through the CLI by `kv
 * export`, `kv import` and `run --resume`; never a signal. The untouched
 * snapshot passes all of them.
 *
 * And live: `annotate` refuses names with an embedded NUL (guests/guard_hog.c).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "samepage.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapshot_format.h"
#include "test_util.h"

static const char *samepage_bin, *work, *model;
static uint8_t *llm_wasm;
static size_t llm_len;
static sp_runtime_t *rt;

/* ---- a snapshot image and its chunks ---- */

typedef struct image {
  uint8_t *d;
  size_t n;
} image;

/* The payload offset of the first chunk of `type` (its length in *len), or 0. */
static size_t find_chunk(const image *im, uint32_t type, size_t *len) {
  for (size_t at = sizeof(sp_snap_header); at + sizeof(sp_snap_chunk_header) <= im->n;) {
    sp_snap_chunk_header ch;
    memcpy(&ch, im->d + at, sizeof ch);
    if (ch.type == type) {
      *len = (size_t)ch.length;
      return at + sizeof ch;
    }
    at += sizeof ch + (size_t)ch.length;
  }
  return 0;
}

/* A copy of im with chunk `type`'s payload replaced by p[0, len), resealed. */
static image with_payload(const image *im, uint32_t type, const void *p, size_t len) {
  size_t old_len = 0, at = find_chunk(im, type, &old_len);
  image out = {malloc(im->n + len + 1), im->n - old_len + len};
  memcpy(out.d, im->d, at);
  memcpy(out.d + at, p, len);
  memcpy(out.d + at + len, im->d + at + old_len, im->n - at - old_len);
  sp_snap_chunk_header ch;
  memcpy(&ch, out.d + at - sizeof ch, sizeof ch);
  ch.length = len;
  memcpy(out.d + at - sizeof ch, &ch, sizeof ch);
  sp_snap_reseal(out.d, out.n);
  return out;
}

/* A copy of im with one more chunk before the end chunk, resealed. */
static image with_chunk_before_end(const image *im, uint32_t type, const void *p, size_t len) {
  size_t end_len = 0, end = find_chunk(im, SP_SNAP_END, &end_len) - sizeof(sp_snap_chunk_header);
  sp_snap_chunk_header ch = {type, 0, len, 0};
  image out = {malloc(im->n + sizeof ch + len), im->n + sizeof ch + len};
  memcpy(out.d, im->d, end);
  memcpy(out.d + end, &ch, sizeof ch);
  memcpy(out.d + end + sizeof ch, p, len);
  memcpy(out.d + end + sizeof ch + len, im->d + end, im->n - end);
  sp_snap_header hdr;
  memcpy(&hdr, out.d, sizeof hdr);
  hdr.n_chunks++;
  memcpy(out.d, &hdr, sizeof hdr);
  sp_snap_reseal(out.d, out.n);
  return out;
}

/* Where annotation `name`'s entry starts in the ANNOT payload (its name
 * length field), or 0. */
static size_t find_annotation(const image *im, const char *name) {
  size_t len = 0, at = find_chunk(im, SP_SNAP_ANNOT, &len), p = at + 4;
  uint32_t count = 0;
  if (!at) return 0;
  memcpy(&count, im->d + at, 4);
  for (uint32_t i = 0; i < count && p + 2 <= at + len; i++) {
    uint16_t nl;
    memcpy(&nl, im->d + p, 2);
    if (nl == strlen(name) && !memcmp(im->d + p + 2, name, nl)) return p;
    p += 2 + nl + sizeof(sp_tensor);
  }
  return 0;
}

static image copy_of(const image *im) {
  image out = {malloc(im->n), im->n};
  memcpy(out.d, im->d, im->n);
  return out;
}

/* A copy whose annotation `name` has its tensor changed by fn. */
static image with_tensor(const image *im, const char *name, void (*fn)(sp_tensor *t, uint64_t memory)) {
  image out = copy_of(im);
  size_t mem_len = 0, mem_at = find_chunk(im, SP_SNAP_MEMORY, &mem_len), at = find_annotation(im, name);
  uint64_t memory = 0;
  memcpy(&memory, im->d + mem_at, 8);
  sp_tensor t;
  size_t where = at + 2 + strlen(name);
  memcpy(&t, out.d + where, sizeof t);
  fn(&t, memory);
  memcpy(out.d + where, &t, sizeof t);
  sp_snap_reseal(out.d, out.n);
  return out;
}

/* A copy with byte `at` of annotation `name`'s name set to c. */
static image with_name_byte(const image *im, const char *name, size_t at, char c) {
  image out = copy_of(im);
  out.d[find_annotation(im, name) + 2 + at] = (uint8_t)c;
  sp_snap_reseal(out.d, out.n);
  return out;
}

static void v_at_end(sp_tensor *t, uint64_t memory) {
  uint64_t packed = (uint64_t)t->ne[0] * t->ne[1] * t->ne[2] * 2;
  t->offset = (uint32_t)((memory - packed / 2) & ~(uint64_t)63);
}
static void v_past_4gib(sp_tensor *t, uint64_t memory) { t->offset = 0xffffff00u; }
static void v_head_stride_2(sp_tensor *t, uint64_t memory) { t->nb[0] = 2; }

/* ---- running the CLI ---- */

/* Runs samepage with args under `timeout 60`, stderr into err; the wait status. */
static int run_cli(const char *const args[], char *err, size_t cap) {
  char log[1024];
  snprintf(log, sizeof log, "%s/cli.err", work);
  const char *argv[24] = {"timeout", "60", samepage_bin};
  int n = 3;
  for (int i = 0; args[i] && n < 23; i++) argv[n++] = args[i];
  argv[n] = NULL;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
    execvp(argv[0], (char *const *)argv);
    _exit(98);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  size_t len = 0;
  uint8_t *text = read_all(log, &len);
  snprintf(err, cap, "%.*s", text ? (int)len : 0, text ? (char *)text : "");
  free(text);
  return status;
}

static const char *status_text(int st) {
  static char buf[64];
  if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "signal %d", WTERMSIG(st));
  else snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
  return buf;
}

/* An LLM actor with the synthetic model granted, not initialised. */
static sp_actor_t *llm_actor(void) {
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, llm_wasm, llm_len, &opts, &a);
  CHECK(!err, "LLM actor: %s", sp_error_message(err));
  sp_error_free(err);
  return a;
}

/* One crafted snapshot through every reader: refused naming `needle`. */
static void refused_everywhere(const char *what, const image *im, const char *needle) {
  char snap[1024], out[1100], out_snap[1100], good_st[1100], msg[4096];
  snprintf(snap, sizeof snap, "%s/crafted.snap", work);
  snprintf(out, sizeof out, "%s/crafted.safetensors", work);
  snprintf(out_snap, sizeof out_snap, "%s/crafted_out.snap", work);
  snprintf(good_st, sizeof good_st, "%s/good.safetensors", work);
  FILE *f = fopen(snap, "wb");
  CHECK(f && fwrite(im->d, 1, im->n, f) == im->n, "write %s", snap);
  if (f) fclose(f);

  sp_snapshot_file *file = NULL;
  sp_error_t *err = sp_snapshot_file_open(snap, &file);
  CHECK(err && strstr(sp_error_message(err), needle), "%s: snapshot reader: %s", what, sp_error_message(err));
  printf("%-28s refused: %s\n", what, err ? sp_error_message(err) : "(accepted)");
  sp_error_free(err);
  sp_snapshot_file_close(file);

  sp_actor_t *a = llm_actor();
  err = a ? sp_actor_restore(a, snap, NULL) : NULL;
  CHECK(err && strstr(sp_error_message(err), needle), "%s: sp_actor_restore: %s", what, sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(a);

  const char *kv_export[] = {"kv", "export", snap, out, NULL};
  const char *kv_import[] = {"kv", "import", snap, good_st, out_snap, "--model", model, NULL};
  const char *resume[] = {"run", "--backend", "cpu", "--model", model, "--resume", snap, "-n", "1", "--raw", "hi", NULL};
  const char *const *cmds[] = {kv_export, kv_import, resume};
  const char *names[] = {"kv export", "kv import", "run --resume"};
  for (int c = 0; c < 3; c++) {
    unlink(out_snap);
    int st = run_cli(cmds[c], msg, sizeof msg);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 125 && strstr(msg, needle), "%s: %s: %s \"%s\"", what, names[c],
          status_text(st), msg);
    CHECK(access(out_snap, F_OK) != 0, "%s: %s wrote %s", what, names[c], out_snap);
  }
}

/* The untouched snapshot passes everything the crafted ones fail. */
static void good_passes(const char *good) {
  char msg[4096], out[1100], out_snap[1100];
  snprintf(out, sizeof out, "%s/good.safetensors", work);
  snprintf(out_snap, sizeof out_snap, "%s/imported.snap", work);
  const char *kv_export[] = {"kv", "export", good, out, NULL};
  const char *kv_import[] = {"kv", "import", good, out, out_snap, "--model", model, NULL};
  const char *resume[] = {"run", "--backend", "cpu", "--model", model, "--resume", good, "-n", "1", "--raw", "hi", NULL};
  const char *const *cmds[] = {kv_export, kv_import, resume};
  for (int c = 0; c < 3; c++) {
    int st = run_cli(cmds[c], msg, sizeof msg);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the good snapshot, command %d: %s \"%s\"", c, status_text(st), msg);
  }
}

static void crafted_snapshots(void) {
  char good[1024], msg[4096];
  snprintf(good, sizeof good, "%s/good.snap", work);
  const char *save[] = {"run", "--backend", "cpu", "--model", model, "--ctx", "64", "--temp", "0", "-n", "3",
                        "--raw", "--save", good, "hello", NULL};
  int st = run_cli(save, msg, sizeof msg);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "saving the good snapshot: %s \"%s\"", status_text(st), msg);
  image im = {NULL, 0};
  im.d = read_all(good, &im.n);
  CHECK(im.d && find_annotation(&im, "blk.0.v_cache") && find_annotation(&im, "kv.n_past"),
        "the good snapshot names the KV cache");
  if (!im.d || !find_annotation(&im, "blk.0.v_cache")) return;
  good_passes(good);

  image c;
  c = with_tensor(&im, "blk.0.v_cache", v_at_end);
  refused_everywhere("V cache at the end of memory", &c, "annotation \"blk.0.v_cache\": tensor: offset 0x");
  free(c.d);
  c = with_tensor(&im, "blk.0.v_cache", v_past_4gib);
  refused_everywhere("V cache past 4 GiB", &c, "annotation \"blk.0.v_cache\": tensor: offset 0xffffff00");
  free(c.d);
  c = with_tensor(&im, "blk.0.v_cache", v_head_stride_2);
  refused_everywhere("V cache head stride 2", &c, "annotation \"blk.0.v_cache\": tensor: strides nb = [2,");
  free(c.d);

  /* The frozen ranges: the guest's own first one, and one inside it. */
  size_t len = 0, at = find_chunk(&im, SP_SNAP_FROZEN, &len);
  uint32_t n_frozen = 0;
  uint64_t f0[2] = {0x10000, 0x20000};
  if (at) memcpy(&n_frozen, im.d + at, 4);
  if (n_frozen) memcpy(f0, im.d + at + 4, 16);
  uint8_t ranges[4 + 32];
  uint32_t two = 2, one = 1;
  uint64_t inner[2] = {f0[0] + 64, f0[1] > 128 ? f0[1] - 128 : 1}; /* strictly inside, not equal */
  memcpy(ranges, &two, 4), memcpy(ranges + 4, f0, 16), memcpy(ranges + 20, inner, 16);
  c = with_payload(&im, SP_SNAP_FROZEN, ranges, sizeof ranges);
  refused_everywhere("overlapping frozen ranges", &c, "frozen range 1 [0x");
  free(c.d);
  /* The first frozen range alone, and a device-local range inside it. */
  uint8_t frozen_one[4 + 16], local[4 + 16];
  memcpy(frozen_one, &one, 4), memcpy(frozen_one + 4, f0, 16);
  memcpy(local, &one, 4), memcpy(local + 4, inner, 16);
  image with_frozen = with_payload(&im, SP_SNAP_FROZEN, frozen_one, sizeof frozen_one);
  c = with_payload(&with_frozen, SP_SNAP_LOCAL, local, sizeof local);
  refused_everywhere("device-local over frozen", &c, "device-local range 0 [0x");
  free(c.d);
  free(with_frozen.d);

  c = with_name_byte(&im, "kv.n_past", 2, '\0');
  refused_everywhere("a NUL in a name", &c, "its name is not 1..64 bytes");
  free(c.d);
  c = with_name_byte(&im, "blk.0.v_cache", 6, 'k');
  refused_everywhere("a name given twice", &c, "annotation \"blk.0.k_cache\" is named twice");
  free(c.d);
  uint64_t small = 65536;
  c = with_chunk_before_end(&im, SP_SNAP_MEMORY, &small, 8);
  refused_everywhere("a second memory chunk", &c, "repeats a chunk of type 2");
  free(c.d);
  free(im.d);
}

/* ---- annotate, live ---- */

static void live_annotation_names(const char *guest_dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/test_guard_hog.wasm", guest_dir);
  size_t len = 0;
  uint8_t *wasm = read_all(path, &len);
  CHECK(wasm != NULL, "no %s", path);
  if (!wasm) return;
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, NULL, &a);
  CHECK(!err, "guard_hog actor: %s", sp_error_message(err));
  sp_error_free(err);
  static const char *what[] = {"a valid name", "\"kv\\0x\"", "a lone NUL", "\"a/b\""};
  for (int64_t kind = 0; a && kind < 4; kind++) {
    int64_t r = -1;
    err = sp_actor_call(a, "annotate_name", &kind, 1, &r);
    int32_t want = kind ? SP_E_PARAM : SP_OK;
    CHECK(!err && (int32_t)r == want, "annotate with %s: status %d, want %d %s", what[kind], (int)(int32_t)r, want,
          sp_error_message(err));
    printf("annotate with %-14s status %d\n", what[kind], (int)(int32_t)r);
    sp_error_free(err);
  }
  sp_actor_free(a);
  free(wasm);
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  samepage_bin = argv[3];
  work = argv[4];
  char path[2048], cmd[4096];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' --out '%s/synth.gguf' --vocab 300 --embd 32 --layers 2 --heads 2 "
           "--ff 64 --type q4_1 > /dev/null", work, argv[2], work);
  if (system(cmd)) return printf("cannot make the model: %s\n", cmd), 1;
  snprintf(path, sizeof path, "%s/synth.gguf", work);
  model = strdup(path);
  snprintf(path, sizeof path, "%s/llm.wasm", argv[1]);
  llm_wasm = read_all(path, &llm_len);
  if (!llm_wasm) return printf("no %s\n", path), 1;
  sp_runtime_options ro = {.backend = "cpu", .threads = 1};
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  if (err) return printf("%s\n", sp_error_message(err)), 1;
  live_annotation_names(argv[1]);
  crafted_snapshots();
  sp_runtime_free(rt);
  free(llm_wasm);
  free((char *)model);
  return CHECK_DONE();
}
