/*
 * test_hostile_files.c GUEST_DIR SYNTH_GGUF MAKE_BAD_GGUF SAMEPAGE WORKDIR:
 * hostile model files and hostile snapshots (issue 6). Each gets a clear
 * error and no crash, through the CLI and through the embedding API.
 *
 *  - GGUF: tests/make_bad_gguf.py corrupts a small synthetic model (tools/
 *    synth_gguf) every way it knows (truncation at every section boundary,
 *    huge counts and lengths, wrong types, lying and misaligned offsets...).
 *    Every file goes through `samepage run --model F hi` (exit != 0 with a
 *    message for "must" files, never a signal) and through sp_actor_new +
 *    llm_init, which must fail with the guest's message.
 *  - Snapshots: a real snapshot of an LLM actor on that model, mutated: every
 *    header and chunk-header field (raw, and re-sealed so the checksums
 *    match and the parser sees the lie), truncation at every chunk
 *    boundary and inside chunks, random bit flips. Each goes through
 *    sp_actor_restore (the actor must stay usable: the good snapshot
 *    restores afterwards and generation goes on) and a sample through
 *    `samepage run --resume`.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "core/hash64.h"
#include "samepage.h"
#include "snapshot/snapshot_format.h"

static const char *samepage_bin, *work;
static uint8_t *llm_wasm;
static size_t llm_len;
static sp_runtime_t *rt;

static void write_all(const char *path, const uint8_t *d, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) fwrite(d, 1, n, f), fclose(f);
}

/* Runs argv with stderr into `err`; returns the wait status. */
static int run_cli(char *const argv[], char *err, size_t cap) {
  char log[1024];
  snprintf(log, sizeof log, "%s/cli.err", work);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
    execv(argv[0], argv);
    _exit(98);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  size_t n = 0;
  uint8_t *text = read_all(log, &n);
  snprintf(err, cap, "%.*s", text ? (int)n : 0, text ? (char *)text : "");
  free(text);
  return status;
}

/* An LLM actor with `model` granted; llm_init's result and message. */
static sp_error_t *llm_actor(const char *model, sp_actor_t **out, int64_t *init, char *msg, size_t cap) {
  const char *argv[] = {"llm", "--ctx", "64", "--temp", "0"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 5, .blobs = &grant, .n_blobs = 1};
  sp_error_t *err = sp_actor_new(rt, llm_wasm, llm_len, &opts, out);
  if (err) return err;
  err = sp_actor_call(*out, "llm_init", NULL, 0, init);
  int64_t at = 0;
  msg[0] = '\0';
  if (!err && *init < 0 && !sp_actor_call(*out, "llm_error_ptr", NULL, 0, &at)) {
    uint8_t *base;
    size_t size;
    sp_actor_memory(*out, &base, &size);
    if (at > 0 && (size_t)at < size) snprintf(msg, cap, "%s", (const char *)base + at);
  }
  return err;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void hostile_ggufs(const char *dir, int at_least) {
  DIR *d = opendir(dir);
  char *names[4096];
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d)) && n < 4096;)
    if (strstr(e->d_name, ".gguf")) names[n++] = strdup(e->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)n, sizeof *names, by_name);
  CHECK(n >= at_least, "the corpus %s has %d files", dir, n);
  int cli_refused = 0, api_runs = 0, api_refused = 0;
  for (int i = 0; i < n; i++) {
    char path[4096 + 256], err[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    bool must = !strncmp(names[i], "must_", 5);
    char *argv[] = {(char *)samepage_bin, "run", "--backend", "cpu", "--model", path, "-n", "2", "--ctx", "64", "hi", NULL};
    int st = run_cli(argv, err, sizeof err);
    CHECK(WIFEXITED(st), "%s: CLI died of signal %d", names[i], WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (must) {
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && strlen(err) > 10, "%s: CLI exit %d, message \"%s\"", names[i],
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, err);
      cli_refused += WIFEXITED(st) && WEXITSTATUS(st) != 0;
    }
    api_runs++;
    sp_actor_t *a = NULL;
    int64_t init = 0;
    char msg[512];
    sp_error_t *e = llm_actor(path, &a, &init, msg, sizeof msg);
    bool refused = e || init < 0;
    if (must) CHECK(refused, "%s: llm_init accepted it", names[i]);
    if (refused)
      CHECK((e && sp_error_message(e)[0]) || strlen(msg) > 5, "%s: refused without a message", names[i]);
    api_refused += refused;
    sp_error_free(e);
    sp_actor_free(a);
    free(names[i]);
  }
  printf("hostile GGUFs in %s: %d files; CLI refused %d; API ran %d, refused %d\n", dir, n, cli_refused, api_runs,
         api_refused);
}

static int snap_cases, snap_refused, snap_cli;

/* One mutated snapshot: restore must fail with a message (when must) and
 * never crash; the actor must stay usable. */
static void try_snapshot(sp_actor_t *a, const char *model, const char *what, const uint8_t *d, size_t n, bool must,
                         bool cli) {
  char path[1024];
  snprintf(path, sizeof path, "%s/bad.snap", work);
  write_all(path, d, n);
  snap_cases++;
  sp_error_t *err = sp_actor_restore(a, path, NULL);
  if (must) CHECK(err != NULL, "snapshot %s: restore accepted it", what);
  if (err) CHECK(strlen(sp_error_message(err)) > 10, "snapshot %s: no message", what);
  snap_refused += err != NULL;
  sp_error_free(err);
  if (!cli) return;
  snap_cli++;
  char msg[4096];
  char *argv[] = {(char *)samepage_bin, "run", "--backend", "cpu", "--model", (char *)model, "--resume", path,
                  "-n", "2", "hi", NULL};
  int st = run_cli(argv, msg, sizeof msg);
  CHECK(WIFEXITED(st), "snapshot %s: CLI died of signal %d", what, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  if (must) CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && strstr(msg, "snapshot"), "snapshot %s: CLI exit %d \"%s\"",
                  what, WEXITSTATUS(st), msg);
}

static void hostile_snapshots(const char *model) {
  sp_actor_t *a = NULL;
  int64_t init = -1, r = 0, len = 2, addr = 0;
  char msg[512], good_path[1024];
  sp_error_t *err = llm_actor(model, &a, &init, msg, sizeof msg);
  CHECK(!err && init == 0, "LLM actor on the synthetic model: %s %s", sp_error_message(err), msg);
  if (err || init) return;
  err = sp_actor_call(a, "llm_input", &len, 1, &addr);
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (!err) memcpy(base + addr, "hi", 2);
  int64_t pargs[2] = {2, 1};
  if (!err) err = sp_actor_call(a, "llm_prompt", pargs, 2, &r);
  for (int i = 0; !err && i < 3; i++) err = sp_actor_call(a, "llm_step", NULL, 0, &r);
  snprintf(good_path, sizeof good_path, "%s/good.snap", work);
  if (!err) err = sp_actor_snapshot(a, good_path, NULL, NULL);
  CHECK(!err, "good snapshot: %s", sp_error_message(err));
  sp_error_free(err);
  int64_t next_good = 0;
  sp_actor_call(a, "llm_step", NULL, 0, &next_good);
  size_t n = 0;
  uint8_t *good = read_all(good_path, &n), *d = malloc(n);

  /* Header fields, raw and re-sealed. */
  for (size_t off = 0; off < sizeof(sp_snap_header); off += 4) {
    for (int sealed = 0; sealed < 2; sealed++) {
      char what[96];
      memcpy(d, good, n);
      d[off] ^= 0x41;
      d[off + 2] ^= 0x80;
      if (sealed) sp_snap_reseal(d, n);
      snprintf(what, sizeof what, "header byte %zu%s", off, sealed ? " (resealed)" : "");
      /* re-sealed flags may be a harmless change */
      try_snapshot(a, model, what, d, n, !(sealed && off >= 12 && off < 16) && !(sealed && off >= 24), off % 8 == 0 && !sealed);
    }
  }
  /* Every chunk header field, truncations at and inside every chunk. */
  size_t at = sizeof(sp_snap_header);
  int chunk = 0;
  uint64_t lies[] = {0, 1, 7, 1ull << 32, UINT64_MAX, UINT64_MAX - 23};
  while (at + sizeof(sp_snap_chunk_header) <= n) {
    sp_snap_chunk_header ch;
    memcpy(&ch, good + at, sizeof ch);
    char what[128];
    for (int t = 0; t < 2; t++) {
      snprintf(what, sizeof what, "truncated %s chunk %d", t ? "inside" : "at", chunk);
      size_t cut = !t ? at : ch.length ? at + sizeof ch + ch.length / 2 : at + sizeof ch - 1;
      try_snapshot(a, model, what, good, cut, true, chunk < 4 && !t);
    }
    for (int f = 0; f < 4; f++) {
      for (int sealed = 0; sealed < 2; sealed++) {
        memcpy(d, good, n);
        sp_snap_chunk_header m = ch;
        if (f == 0) m.type = ch.type + 1000 * (uint32_t)(sealed + 1);
        if (f == 1) m.reserved = 0xdeadbeef;
        if (f == 2) m.length = lies[(chunk + sealed) % 6];
        if (f == 3) m.hash = ~ch.hash;
        memcpy(d + at, &m, sizeof m);
        if (sealed) sp_snap_reseal(d, n);
        snprintf(what, sizeof what, "chunk %d (type %u) field %d%s", chunk, ch.type, f, sealed ? " (resealed)" : "");
        bool harmless = sealed && (f == 1 || f == 3);
        try_snapshot(a, model, what, d, n, !harmless, f == 2 && chunk < 3);
      }
    }
    /* The payload's first integers lying, re-sealed: counts, addresses, lengths. */
    for (size_t w = 0; w < 6 && w * 8 + 8 <= ch.length; w++) {
      memcpy(d, good, n);
      uint64_t v;
      memcpy(&v, d + at + sizeof ch + w * 8, 8);
      v = w % 2 ? UINT64_MAX - v : v ^ (1ull << 40);
      memcpy(d + at + sizeof ch + w * 8, &v, 8);
      sp_snap_reseal(d, n);
      snprintf(what, sizeof what, "chunk %d (type %u) payload word %zu (resealed)", chunk, ch.type, w);
      try_snapshot(a, model, what, d, n, false, false);
    }
    at += sizeof ch + ch.length;
    chunk++;
  }
  /* Random bit flips (unsealed: the checksums must catch them). */
  srand(6);
  for (int i = 0; i < 40; i++) {
    memcpy(d, good, n);
    size_t pos = (size_t)rand() % n;
    d[pos] ^= (uint8_t)(1u << (rand() % 8));
    char what[64];
    snprintf(what, sizeof what, "bit flip at %zu", pos);
    try_snapshot(a, model, what, d, n, true, i < 3);
  }
  try_snapshot(a, model, "empty file", good, 0, true, true);
  printf("hostile snapshots: %d cases from a %zu-byte snapshot with %d chunks; restore refused %d; CLI ran %d\n",
         snap_cases, n, chunk, snap_refused, snap_cli);

  /* The actor survived all of it: the good snapshot restores and goes on. */
  err = sp_actor_restore(a, good_path, NULL);
  CHECK(!err, "good snapshot after the corpus: %s", sp_error_message(err));
  sp_error_free(err);
  int64_t next = -1;
  err = sp_actor_call(a, "llm_step", NULL, 0, &next);
  CHECK(!err && next == next_good, "generation continues identically: %lld vs %lld", (long long)next,
        (long long)next_good);
  sp_error_free(err);
  free(good);
  free(d);
  sp_actor_free(a);
}

/* The issue-15 architectures with K-quant tensors: tests/make_bad_gguf_archs.py
 * (beside make_bad_gguf.py) corrupts their keys and tensor types. */
static void hostile_arch_ggufs(const char *synth, const char *make_bad) {
  static const char *presets[] = {"gemma-3-270m", "qwen2.5-0.5b", "qwen3-0.6b", "phi-3-mini"};
  char dir[1024], script[1024], cmd[8192];
  snprintf(script, sizeof script, "%.*s_archs.py", (int)(strlen(make_bad) - 3), make_bad);
  for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
    snprintf(dir, sizeof dir, "%s/bad-%s", work, presets[i]);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && '%s' --out '%s/good.gguf' --preset %s --vocab 300 --embd 256 --layers 2 --heads 2 "
             "--kv-heads 1 --ff 512 --type q4_k_m > /dev/null && python3 '%s' '%s/good.gguf' '%s/bad' > /dev/null",
             dir, synth, dir, presets[i], script, dir, dir);
    CHECK(system(cmd) == 0, "cannot make the corpus: %s", cmd);
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/bad");
    hostile_ggufs(dir, 50);
  }
}

int main(int argc, char **argv) {
  if (argc < 6) return 2;
  samepage_bin = argv[4];
  work = argv[5];
  char path[2048], cmd[4096];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' --out '%s/synth.gguf' --vocab 300 --embd 32 --layers 2 --heads 2 "
           "--ff 64 --type q4_1 > /dev/null && python3 '%s' '%s/synth.gguf' '%s/bad' > /dev/null",
           work, argv[2], work, argv[3], work, work);
  if (system(cmd)) {
    printf("cannot make the corpus: %s\n", cmd);
    return 1;
  }
  snprintf(path, sizeof path, "%s/llm.wasm", argv[1]);
  llm_wasm = read_all(path, &llm_len);
  if (!llm_wasm) return printf("no %s\n", path), 1;
  sp_runtime_options ro = {.backend = "cpu", .threads = 1};
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  if (err) return printf("%s\n", sp_error_message(err)), 1;
  snprintf(path, sizeof path, "%s/synth.gguf", work);
  hostile_snapshots(path);
  snprintf(path, sizeof path, "%s/bad", work);
  hostile_ggufs(path, 100);
  hostile_arch_ggufs(argv[2], argv[3]);
  sp_runtime_free(rt);
  free(llm_wasm);
  return CHECK_DONE();
}
