/*
 * test_snapshot.c: snapshots continue bit for bit, and bad ones are refused.
 *
 * Bit equality, as the seed's author describes it: one actor runs a
 * two-turn conversation with seeded sampling (so the sampler's random state
 * matters). At 20 random checkpoints, including mid-generation between
 * steps, it saves a snapshot and goes on (that branch is the reference).
 * For each checkpoint a new process restores the snapshot into a fresh
 * actor and runs the rest of the conversation; its memory digest right
 * after the restore, every token it produces, and its final memory digest
 * must equal the reference's.
 * Usage: test_snapshot GUEST_DIR MODEL        (exit 77 = no model: skipped)
 *        test_snapshot --child GUEST_DIR MODEL SNAPSHOT FIRST_ACTION
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "core/error.h"
#include "core/hash64.h"
#include "core/knobs.h"
#include "runtime/runtime_impl.h"
#include "samepage.h"

#define N_ACTIONS 28
#define N_CHECKPOINTS 20
#define STEPS_PER_TURN 13

static const char *const turns[2] = {"Hi! Tell me about the sea.", "And about mountains?"};
static const char *const guest_argv[] = {"llm", "--ctx", "512", "--temp", "0.8", "--seed", "42"};

static int64_t call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs) {
  int64_t args[2] = {x, y}, out = -999;
  sp_error_t *err = sp_actor_call(a, fn, args, (size_t)nargs, &out);
  CHECK(!err, "%s: %s", fn, sp_error_message(err));
  sp_error_free(err);
  return out;
}

static sp_actor_t *new_actor(sp_runtime_t *rt, const char *wasm_path, const char *model) {
  size_t len;
  uint8_t *wasm = read_all(wasm_path, &len);
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = guest_argv, .argc = 7, .blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  sp_error_t *err = wasm ? sp_actor_new(rt, wasm, len, &opts, &a) : sp_error_new("cannot read %s", wasm_path);
  CHECK(!err, "actor: %s", sp_error_message(err));
  sp_error_free(err);
  free(wasm);
  return a;
}

/* Action i: the start of a turn (a prompt), or one generation step.
 * Returns the token (steps) or the prompt's token count. */
static int64_t run_action(sp_actor_t *a, int i) {
  if (i % (STEPS_PER_TURN + 1) == 0) {
    const char *text = turns[i / (STEPS_PER_TURN + 1)];
    int64_t addr = call(a, "llm_input", (int64_t)strlen(text), 0, 1);
    uint8_t *base;
    size_t size;
    sp_actor_memory(a, &base, &size);
    memcpy(base + addr, text, strlen(text));
    return call(a, "llm_prompt", (int64_t)strlen(text), 0, 2);
  }
  return call(a, "llm_step", 0, 0, 0);
}

/* Every byte of linear memory and every exported global, as one hash. */
static uint64_t digest(sp_actor_t *a) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  return sp_hash64_of(base, size) ^ (uint64_t)size;
}

/* The environment's knobs (SP_ISOLATION, SP_CPU_SIMD: the ctest variants). */
static sp_runtime_options env_options(void) {
  static struct sp_knobs knobs;
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) printf("knobs: %s\n", sp_error_message(err)), exit(2);
  return (sp_runtime_options){.knobs = &knobs};
}

static int child(const char *guest_dir, const char *model, const char *snap, int first) {
  char path[1024];
  snprintf(path, sizeof path, "%s/llm.wasm", guest_dir);
  sp_runtime_t *rt = NULL;
  sp_runtime_options ro = env_options();
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  sp_actor_t *a = err ? NULL : new_actor(rt, path, model);
  if (a) err = sp_actor_restore(a, snap, NULL);
  if (err || !a) {
    printf("error %s\n", sp_error_message(err));
    return 1;
  }
  printf("restored %016llx\n", (unsigned long long)digest(a));
  for (int i = first; i < N_ACTIONS; i++) printf("action %d %lld\n", i, (long long)run_action(a, i));
  printf("final %016llx\n", (unsigned long long)digest(a));
  sp_actor_free(a);
  sp_runtime_free(rt);
  return 0;
}

typedef struct reference {
  int64_t result[N_ACTIONS];
  uint64_t at_checkpoint[N_ACTIONS]; /* digest when the snapshot was saved */
  uint64_t final;
  bool checkpoint[N_ACTIONS];
} reference;

static void run_reference(sp_actor_t *a, reference *ref, const char *dir, uint64_t *snap_bytes) {
  for (int i = 0; i < N_ACTIONS; i++) {
    if (ref->checkpoint[i]) {
      char snap[1100];
      snprintf(snap, sizeof snap, "%s/cp%02d.snap", dir, i);
      sp_snapshot_stats st = {0};
      sp_error_t *err = sp_actor_snapshot(a, snap, NULL, &st);
      CHECK(!err, "snapshot at %d: %s", i, sp_error_message(err));
      sp_error_free(err);
      ref->at_checkpoint[i] = digest(a);
      if (st.bytes > *snap_bytes) *snap_bytes = st.bytes;
    }
    ref->result[i] = run_action(a, i);
  }
  ref->final = digest(a);
}

static void check_child(const char *self, const char *guest_dir, const char *model, const char *dir, int k,
                        const reference *ref) {
  char cmd[4096], line[256];
  snprintf(cmd, sizeof cmd, "'%s' --child '%s' '%s' '%s/cp%02d.snap' %d", self, guest_dir, model, dir, k, k);
  FILE *p = popen(cmd, "r");
  int same_tokens = 0, actions = 0;
  bool restored_ok = false, final_ok = false;
  while (p && fgets(line, sizeof line, p)) {
    unsigned long long h;
    int i;
    long long r;
    if (sscanf(line, "restored %llx", &h) == 1) restored_ok = h == ref->at_checkpoint[k];
    else if (sscanf(line, "action %d %lld", &i, &r) == 2 && i >= 0 && i < N_ACTIONS) actions++, same_tokens += r == ref->result[i];
    else if (sscanf(line, "final %llx", &h) == 1) final_ok = h == ref->final;
    else printf("child: %s", line);
  }
  int rc = p ? pclose(p) : -1;
  printf("checkpoint %2d: memory after restore %s, %d/%d actions equal, final memory %s\n", k,
         restored_ok ? "equal" : "DIFFERS", same_tokens, actions, final_ok ? "equal" : "DIFFERS");
  CHECK(rc == 0 && restored_ok && final_ok && actions == N_ACTIONS - k && same_tokens == actions,
        "checkpoint %d does not continue bit for bit", k);
}

static void pick_checkpoints(reference *ref) {
  uint64_t rng = 0x5eed5eedull;
  int picked = 0;
  while (picked < N_CHECKPOINTS) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    int k = 1 + (int)((rng >> 33) % (N_ACTIONS - 1));
    if (!ref->checkpoint[k]) ref->checkpoint[k] = true, picked++;
  }
}

/* Corrupt, truncated and mismatched snapshots are refused, naming why. */
static void check_hostile(sp_runtime_t *rt, const char *guest_dir, const char *model, const char *dir) {
  char path[1024], good[1100], bad[1100];
  snprintf(path, sizeof path, "%s/llm.wasm", guest_dir);
  snprintf(good, sizeof good, "%s/cp01.snap", dir);
  snprintf(bad, sizeof bad, "%s/bad.snap", dir);
  size_t len;
  uint8_t *bytes = read_all(good, &len);
  if (!bytes) return;
  struct {
    const char *name, *needle;
    size_t cut;
    long flip;
  } cases[] = {{"corrupt byte", "checksum mismatch", len, (long)len / 2},
               {"truncated", "truncated", len - 1000, -1},
               {"header only", "truncated", 32, -1},
               {"empty file", "file is empty", 0, -1},
               {"bad magic", "bad magic", len, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    FILE *f = fopen(bad, "wb");
    if (cases[c].flip >= 0) bytes[cases[c].flip] ^= 0x5a;
    fwrite(bytes, 1, cases[c].cut, f);
    fclose(f);
    if (cases[c].flip >= 0) bytes[cases[c].flip] ^= 0x5a;
    sp_actor_t *a = new_actor(rt, path, model);
    sp_error_t *err = a ? sp_actor_restore(a, bad, NULL) : NULL;
    CHECK(err && strstr(sp_error_message(err), cases[c].needle), "%s: %s", cases[c].name, sp_error_message(err));
    printf("refused (%s): %s\n", cases[c].name, sp_error_message(err));
    sp_error_free(err);
    sp_actor_free(a);
  }
  free(bytes);
  /* Another module, another model file. */
  snprintf(path, sizeof path, "%s/test_grow.wasm", guest_dir);
  sp_actor_t *other = new_actor(rt, path, model);
  sp_error_t *err = other ? sp_actor_restore(other, good, NULL) : NULL;
  CHECK(err && strstr(sp_error_message(err), "different guest module"), "module mismatch: %s", sp_error_message(err));
  printf("refused (other module): %s\n", sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(other);
  snprintf(path, sizeof path, "%s/llm.wasm", guest_dir);
  sp_actor_t *wrong = new_actor(rt, path, path); /* the wasm file granted as "model" */
  err = wrong ? sp_actor_restore(wrong, good, NULL) : NULL;
  CHECK(err && strstr(sp_error_message(err), "model mismatch"), "model mismatch: %s", sp_error_message(err));
  printf("refused (other model): %s\n", sp_error_message(err));
  sp_error_free(err);
  sp_actor_free(wrong);
}

/* When the model was read into memory (backends that cannot map files),
 * the snapshot still refers to the file instead of copying it, and a
 * restore reads it back: same bytes, small file. */
static void check_read_refs(sp_runtime_t *rt, const char *guest_dir, const char *model, const char *dir) {
  char path[1024], snap[1100];
  snprintf(path, sizeof path, "%s/llm.wasm", guest_dir);
  snprintf(snap, sizeof snap, "%s/read.snap", dir);
  bool maps_before = rt->no_file_maps;
  rt->no_file_maps = true; /* the knob SP_NO_FILE_MAPS, for this actor alone */
  sp_actor_t *a = new_actor(rt, path, model), *b = NULL;
  rt->no_file_maps = maps_before;
  if (!a || call(a, "llm_init", 0, 0, 0) != 0) return sp_actor_free(a);
  for (int i = 0; i < 4; i++) run_action(a, i);
  sp_snapshot_stats st = {0};
  sp_error_t *err = sp_actor_snapshot(a, snap, NULL, &st);
  CHECK(!err && st.bytes < 20000000, "read-in model referenced, not copied: %.1f MB, %s", st.bytes / 1e6,
        sp_error_message(err));
  sp_error_free(err);
  b = new_actor(rt, path, model);
  err = b ? sp_actor_restore(b, snap, NULL) : NULL;
  CHECK(b && !err && digest(a) == digest(b), "restore of a read-in model: %s", sp_error_message(err));
  CHECK(b && run_action(a, 4) == run_action(b, 4), "read-in model: the next token agrees");
  printf("model read, not mapped: snapshot %.2f MB, restore %s\n", st.bytes / 1e6, err ? "FAILED" : "equal");
  sp_error_free(err);
  sp_actor_free(a);
  sp_actor_free(b);
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "--child")) return child(argv[2], argv[3], argv[4], atoi(argv[5]));
  if (argc < 3) return printf("usage: test_snapshot GUEST_DIR MODEL\n"), 2;
  if (access(argv[2], R_OK)) return printf("SKIP: model %s not found\n", argv[2]), 77;
  char dir[] = "/tmp/samepage-snap-XXXXXX", path[1024];
  if (!mkdtemp(dir)) return 1;
  snprintf(path, sizeof path, "%s/llm.wasm", argv[1]);
  sp_runtime_t *rt = NULL;
  sp_runtime_options ro = env_options();
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  CHECK(!err, "%s", sp_error_message(err));
  sp_actor_t *a = rt ? new_actor(rt, path, argv[2]) : NULL;
  if (a && call(a, "llm_init", 0, 0, 0) == 0) {
    static reference ref;
    uint64_t biggest = 0;
    pick_checkpoints(&ref);
    run_reference(a, &ref, dir, &biggest);
    printf("largest snapshot: %.2f MB (the model file is referenced, not copied)\n", biggest / 1e6);
    CHECK(biggest < 20000000, "snapshots should be megabytes, not the model's size");
    for (int k = 0; k < N_ACTIONS; k++)
      if (ref.checkpoint[k]) check_child(argv[0], argv[1], argv[2], dir, k, &ref);
    check_hostile(rt, argv[1], argv[2], dir);
    check_read_refs(rt, argv[1], argv[2], dir);
  }
  sp_actor_free(a);
  sp_runtime_free(rt);
  char rm[1100];
  snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
  if (system(rm)) printf("could not remove %s\n", dir);
  return CHECK_DONE();
}
