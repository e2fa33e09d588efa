/*
 * backend_parity.c: one model's logits on two backends, position by
 * position, teacher-forced (the device scripts' check of a whole forward
 * pass; greedy text alone cannot tell a near-tie from a wrong kernel).
 *
 * Both actors are fed the same pseudo-random token ids: a prompt of
 * PROMPT tokens in one prefill (argmax compared at every position), then
 * STEPS single-token decode steps (the logits compared at every step:
 * relative L2 error, max abs error, argmax, and the reference's top-1/top-2
 * margin). Random synthetic weights give near-flat logits, so an argmax
 * may differ at a near-tie; the relative error is what fails a kernel.
 *
 * Usage: backend_parity GUEST_DIR MODEL [REF [TEST [PROMPT [STEPS [BOUND]]]]]
 *        (backends default cpu and cuda; BOUND: the largest relative L2
 *        error allowed at any decode step, default 0.05)
 * Exit: 0 within bound, 1 over it or on error, 77 when a backend is missing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_util.h"
#include "core/knobs.h"
#include "samepage.h"

typedef struct side {
  sp_runtime_t *rt;
  sp_actor_t *actor;
  const char *backend;
} side;

static int64_t call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs) {
  int64_t args[2] = {x, y}, out = -999;
  sp_error_t *err = sp_actor_call(a, fn, args, (size_t)nargs, &out);
  if (err) printf("FAIL %s: %s\n", fn, sp_error_message(err)), out = -999;
  sp_error_free(err);
  return out;
}

/* Starts the LLM guest on `backend`; false (reason printed) when it cannot. */
static bool side_open(side *s, const char *backend, const struct sp_knobs *knobs, const uint8_t *wasm, size_t len,
                      const char *model, uint32_t ctx) {
  char ctx_s[16];
  snprintf(ctx_s, sizeof ctx_s, "%u", ctx);
  const char *argv[] = {"llm", "--logits-all", "--ctx", ctx_s, "--batch", "512", "--temp", "0", "--repeat-penalty", "1"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 10, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  sp_runtime_options ro = {.backend = backend, .knobs = knobs};
  s->backend = backend;
  sp_error_t *err = sp_runtime_new(&ro, &s->rt);
  if (!err) err = sp_actor_new(s->rt, wasm, len, &opts, &s->actor);
  if (err) {
    printf("%s: %s\n", backend, sp_error_message(err));
    sp_error_free(err);
    return false;
  }
  if (call(s->actor, "llm_init", 0, 0, 0) != 0) {
    printf("%s: llm_init failed: %s\n", backend, (const char *)guest_mem(s->actor, call(s->actor, "llm_error_ptr", 0, 0, 0)));
    return false;
  }
  return true;
}

static void side_close(side *s) {
  if (s->actor) sp_actor_free(s->actor);
  if (s->rt) sp_runtime_free(s->rt);
}

/* Feeds n token ids; returns the guest's count (n on success). */
static int64_t feed(side *s, const int32_t *ids, uint32_t n) {
  int64_t addr = call(s->actor, "llm_input", (int64_t)n * 4, 0, 1);
  if (addr <= 0) return -1;
  memcpy(guest_mem(s->actor, addr), ids, (size_t)n * 4);
  return call(s->actor, "llm_prompt", (int64_t)n * 4, 2, 2);
}

static const float *logits(side *s) {
  int64_t p = call(s->actor, "llm_logits_ptr", 0, 0, 0);
  return p > 0 ? (const float *)guest_mem(s->actor, p) : NULL;
}

typedef struct compare {
  double rel, max_abs, margin;
  int32_t top_ref, top_test;
} compare;

static compare compare_logits(const float *ref, const float *test, uint32_t n) {
  compare c = {0, 0, 0, 0, 0};
  double num = 0, den = 0, best = -INFINITY, second = -INFINITY, best_t = -INFINITY;
  for (uint32_t i = 0; i < n; i++) {
    double d = (double)test[i] - ref[i];
    num += d * d, den += (double)ref[i] * ref[i];
    if (!(fabs(d) <= c.max_abs)) c.max_abs = fabs(d); /* NaN sticks */
    if (ref[i] > best) second = best, best = ref[i], c.top_ref = (int32_t)i;
    else if (ref[i] > second) second = ref[i];
    if (test[i] > best_t) best_t = test[i], c.top_test = (int32_t)i;
  }
  c.rel = den > 0 ? sqrt(num / den) : sqrt(num);
  c.margin = best - second;
  return c;
}

int main(int argc, char **argv) {
  if (argc < 3) return printf("usage: backend_parity GUEST_DIR MODEL [REF [TEST [PROMPT [STEPS [BOUND]]]]]\n"), 2;
  const char *ref_name = argc > 3 ? argv[3] : "cpu", *test_name = argc > 4 ? argv[4] : "cuda";
  uint32_t prompt = argc > 5 ? (uint32_t)atoi(argv[5]) : 100, steps = argc > 6 ? (uint32_t)atoi(argv[6]) : 24;
  double bound = argc > 7 ? atof(argv[7]) : 0.05;
  if (prompt < 1 || prompt > 4096 || steps > 1024) return printf("PROMPT must be 1..4096 and STEPS 0..1024\n"), 2;
  char path[1024];
  snprintf(path, sizeof path, "%s/llm.wasm", argv[1]);
  size_t wasm_len;
  uint8_t *wasm = read_all(path, &wasm_len);
  if (!wasm) return printf("FAIL cannot read %s\n", path), 1;
  struct sp_knobs knobs;
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("FAIL knobs: %s\n", sp_error_message(err)), 1;
  side ref = {0}, test = {0};
  if (!side_open(&ref, ref_name, &knobs, wasm, wasm_len, argv[2], prompt + steps + 8) ||
      !side_open(&test, test_name, &knobs, wasm, wasm_len, argv[2], prompt + steps + 8)) {
    side_close(&ref), side_close(&test), free(wasm);
    return 77;
  }
  uint32_t vocab = (uint32_t)call(ref.actor, "llm_n_vocab", 0, 0, 0);
  CHECK(vocab > 1 && vocab == (uint32_t)call(test.actor, "llm_n_vocab", 0, 0, 0), "both sides see the vocabulary");
  uint32_t total = prompt + steps;
  int32_t *ids = malloc((size_t)total * 4);
  uint64_t rng = 0x2545f4914f6cdd1dull;
  for (uint32_t i = 0; i < total; i++) rng = rng * 6364136223846793005ull + 1442695040888963407ull,
                                        ids[i] = (int32_t)((rng >> 33) % (vocab > 1 ? vocab - 1 : 1)) + 1;
  /* the prompt: one prefill each, argmax at every position */
  CHECK(feed(&ref, ids, prompt) == prompt && feed(&test, ids, prompt) == prompt, "prefill of %u tokens", prompt);
  const int32_t *am_ref = (const int32_t *)guest_mem(ref.actor, call(ref.actor, "llm_argmax_ptr", 0, 0, 0));
  const int32_t *am_test = (const int32_t *)guest_mem(test.actor, call(test.actor, "llm_argmax_ptr", 0, 0, 0));
  uint32_t prompt_same = 0;
  for (uint32_t i = 0; i < prompt; i++) prompt_same += am_ref[i] == am_test[i];
  const float *lr = logits(&ref), *lt = logits(&test);
  compare last = lr && lt ? compare_logits(lr, lt, vocab) : (compare){NAN, NAN, NAN, -1, -1};
  printf("prefill %u tokens: argmax same at %u/%u positions; last position rel err %.2e, max abs %.3e\n", prompt,
         prompt_same, prompt, last.rel, last.max_abs);
  CHECK(last.rel <= bound, "prefill's last logits within %.2g (got %.3g)", bound, last.rel);
  /* decode: one token at a time, logits at every step */
  double worst = 0, sum = 0;
  uint32_t same = 0, ties = 0;
  for (uint32_t s = 0; s < steps; s++) {
    if (feed(&ref, ids + prompt + s, 1) != 1 || feed(&test, ids + prompt + s, 1) != 1) {
      CHECK(false, "decode step %u", s);
      break;
    }
    lr = logits(&ref), lt = logits(&test);
    if (!lr || !lt) break;
    compare c = compare_logits(lr, lt, vocab);
    same += c.top_ref == c.top_test;
    ties += c.top_ref != c.top_test && c.margin <= 2 * c.max_abs;
    if (!(c.rel <= worst)) worst = c.rel;
    sum += c.rel;
    if (s < 4 || c.rel > bound || c.top_ref != c.top_test)
      printf("  step %3u: rel err %.2e  max abs %.3e  argmax %s %d / %s %d  (%s margin %.3f)\n", s, c.rel, c.max_abs,
             ref_name, c.top_ref, test_name, c.top_test, ref_name, c.margin);
  }
  printf("decode %u steps: argmax same at %u (%u differ within the error's reach), rel err mean %.2e max %.2e "
         "(bound %.2g)\n", steps, same, ties, steps ? sum / steps : 0.0, worst, bound);
  CHECK(worst <= bound, "decode logits within %.2g of %s (worst %.3g)", bound, ref_name, worst);
  CHECK(same + ties == steps, "every differing argmax is a near-tie");
  free(ids);
  side_close(&ref), side_close(&test), free(wasm);
  return CHECK_DONE();
}
