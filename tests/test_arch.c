/*
 * test_arch.c: one synthetic model of an architecture through the LLM
 * guest (issue 15). Used by tests/test_arch.sh and
 * tools/reference/compare_arch.py.
 *
 *   test_arch run GUEST_DIR MODEL [LOGITS_OUT [IDS_IN]]
 *     prefills N_PROMPT fixed token ids with logits kept for every
 *     position, checks every logit is finite and not all equal, generates
 *     N_GEN greedy tokens; then does it all again in a fresh actor and
 *     checks the logits and tokens are bit-identical (deterministic).
 *     LOGITS_OUT: also writes the ids (i32 [N_PROMPT]) then the logits
 *     (f32 [N_PROMPT, V]) for a comparison with llama.cpp. IDS_IN: the
 *     prompt ids (i32 [N_PROMPT]) instead of the fixed ones (a real
 *     model is best compared on real text).
 *   test_arch refuse GUEST_DIR MODEL NEEDLE
 *     llm_init must fail with a message containing NEEDLE (the key and
 *     value a hostile file got wrong).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "samepage.h"
#include "test_util.h"

#define N_PROMPT 48
#define N_GEN 8

static int64_t call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs) {
  int64_t args[2] = {x, y}, out = -999;
  sp_error_t *err = sp_actor_call(a, fn, args, (size_t)nargs, &out);
  CHECK(!err, "%s: %s", fn, sp_error_message(err));
  sp_error_free(err);
  return out;
}

/* The LLM actor on `model`; *init gets llm_init's result. */
static sp_actor_t *new_llm(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model, int64_t *init) {
  const char *argv[] = {"llm", "--logits-all", "--ctx", "256", "--batch", "64", "--temp", "0", "--repeat-penalty", "1"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 10, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  CHECK(!err, "actor: %s", sp_error_message(err));
  sp_error_free(err);
  *init = a ? call(a, "llm_init", 0, 0, 0) : -1;
  return a;
}

static const char *ids_in; /* IDS_IN, or NULL */

/* The prompt: IDS_IN's, or ids spread over the vocabulary; the same for
 * every run. */
static void prompt_ids(int32_t *ids, uint32_t n_vocab) {
  size_t len = 0;
  uint8_t *given = ids_in ? read_all(ids_in, &len) : NULL;
  CHECK(!ids_in || (given && len == N_PROMPT * 4), "%s must hold %d i32 ids", ids_in, N_PROMPT);
  for (uint32_t i = 0; i < N_PROMPT; i++) ids[i] = (int32_t)((i * 7919u + 13u) % n_vocab);
  if (given && len == N_PROMPT * 4) memcpy(ids, given, len);
  for (uint32_t i = 0; i < N_PROMPT; i++) ids[i] = ids[i] >= 0 && (uint32_t)ids[i] < n_vocab ? ids[i] : 0;
  free(given);
}

/* One run: the logits of every prompt position (malloc'd [N_PROMPT, V])
 * and N_GEN greedy tokens. NULL when it failed (reported). */
static float *run_once(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model, int32_t *ids,
                       int32_t *gen, uint32_t *n_vocab) {
  int64_t init = 0;
  sp_actor_t *a = new_llm(rt, wasm, len, model, &init);
  CHECK(init == 0, "llm_init: %s", a ? llm_guest_error(a) : "no actor");
  if (!a || init != 0) return sp_actor_free(a), NULL;
  uint32_t V = (uint32_t)call(a, "llm_n_vocab", 0, 0, 0);
  *n_vocab = V;
  prompt_ids(ids, V);
  int64_t at = call(a, "llm_input", N_PROMPT * 4, 0, 1);
  memcpy(guest_mem(a, at), ids, N_PROMPT * 4);
  int64_t n = call(a, "llm_prompt", N_PROMPT * 4, 2, 2);
  CHECK(n == N_PROMPT, "prefill: %s", llm_guest_error(a));
  float *logits = NULL;
  if (n == N_PROMPT) {
    /* One batch: llm_logits_ptr is the last row, the others precede it. */
    const float *last = (const float *)guest_mem(a, call(a, "llm_logits_ptr", 0, 0, 0));
    logits = malloc((size_t)N_PROMPT * V * sizeof *logits);
    memcpy(logits, last - (size_t)(N_PROMPT - 1) * V, (size_t)N_PROMPT * V * sizeof *logits);
    for (int i = 0; i < N_GEN; i++) gen[i] = (int32_t)call(a, "llm_step", 0, 0, 0);
  }
  sp_actor_free(a);
  return logits;
}

/* Every logit finite, and the rows not constant (a broken graph often
 * gives zeros or one repeated value). */
static void check_logits(const float *logits, uint32_t V) {
  size_t bad = 0;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < (size_t)N_PROMPT * V; i++) {
    if (!isfinite(logits[i])) bad++;
    else lo = fmin(lo, logits[i]), hi = fmax(hi, logits[i]);
  }
  CHECK(bad == 0, "%zu of %zu logits are not finite", bad, (size_t)N_PROMPT * V);
  CHECK(hi - lo > 1e-3, "the logits are (nearly) constant: [%g, %g]", lo, hi);
  printf("logits of %d positions x %u: finite, in [%.3f, %.3f]\n", N_PROMPT, V, lo, hi);
}

static int run(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model, const char *out) {
  int32_t ids[N_PROMPT], gen[2][N_GEN];
  uint32_t V = 0;
  float *a = run_once(rt, wasm, len, model, ids, gen[0], &V);
  if (!a) return CHECK_DONE();
  check_logits(a, V);
  float *b = run_once(rt, wasm, len, model, ids, gen[1], &V);
  CHECK(b && memcmp(a, b, (size_t)N_PROMPT * V * sizeof *a) == 0, "a second run gives other logits");
  CHECK(memcmp(gen[0], gen[1], sizeof gen[0]) == 0, "a second run generates other tokens");
  printf("greedy:");
  for (int i = 0; i < N_GEN; i++) printf(" %d", gen[0][i]);
  printf(" (twice, identical)\n");
  if (out) {
    FILE *f = fopen(out, "wb");
    CHECK(f && fwrite(ids, sizeof ids, 1, f) == 1 && fwrite(a, (size_t)N_PROMPT * V * sizeof *a, 1, f) == 1,
          "writing %s", out);
    if (f) fclose(f);
  }
  free(a);
  free(b);
  return CHECK_DONE();
}

static int refuse(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model, const char *needle) {
  int64_t init = 0;
  sp_actor_t *a = new_llm(rt, wasm, len, model, &init);
  const char *msg = a ? llm_guest_error(a) : "(no actor)";
  printf("llm_init: %lld, \"%s\"\n", (long long)init, msg);
  CHECK(init != 0, "the model loaded; it should be refused");
  CHECK(strstr(msg, needle) != NULL, "the message does not name \"%s\"", needle);
  sp_actor_free(a);
  return CHECK_DONE();
}

int main(int argc, char **argv) {
  bool is_run = argc >= 4 && strcmp(argv[1], "run") == 0, is_refuse = argc == 5 && strcmp(argv[1], "refuse") == 0;
  if (!is_run && !is_refuse) {
    printf("usage: test_arch run GUEST_DIR MODEL [LOGITS_OUT] | refuse GUEST_DIR MODEL NEEDLE\n");
    return 2;
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/llm.wasm", argv[2]);
  size_t wasm_len = 0;
  uint8_t *wasm = read_all(path, &wasm_len);
  CHECK(wasm, "cannot read %s", path);
  sp_runtime_t *rt = NULL;
  sp_runtime_options ro = {.backend = "cpu", .threads = 1};
  sp_error_t *err = wasm ? sp_runtime_new(&ro, &rt) : NULL;
  CHECK(!err, "%s", sp_error_message(err));
  sp_error_free(err);
  int rc = 1;
  ids_in = is_run && argc > 5 ? argv[5] : NULL;
  if (rt) rc = is_run ? run(rt, wasm, wasm_len, argv[3], argc > 4 ? argv[4] : NULL)
                      : refuse(rt, wasm, wasm_len, argv[3], argv[4]);
  sp_runtime_free(rt);
  free(wasm);
  return rt ? rc : CHECK_DONE();
}
