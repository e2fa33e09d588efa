/*
 * test_cuda_fault.c: a GPU fault in one actor, on a real device.
 *
 * Two LLM actors share a CUDA runtime; a third runs on the CPU backend in
 * the same process. SP_CUDA_INJECT_FAULT (set here) makes one list the
 * CUDA backend enqueues write to an invalid address. Checked (the guests'
 * own error messages, llm_error_ptr): the actor whose list faulted is told
 * the GPU faulted; every CUDA call after that, from the other CUDA actor or
 * a new one, fails at once saying the device is lost to the process (CUDA poisons every context of a process after a
 * fault: backend/cuda/fault.h); the process does not crash; the CPU actor
 * finishes every step.
 *
 * Under process isolation (SP_ISOLATION=process: each actor's CUDA context
 * in a worker process of its own) the fault is injected into the first
 * actor's worker alone, and the expectations are the issue's: that actor
 * ends with an error naming the fault; the other CUDA actor finishes every
 * step; a new CUDA actor works.
 *
 * Usage: test_cuda_fault GUEST_DIR MODEL   (exit 77 = no CUDA device, no
 * libsamepage_cuda.so, or no model: skipped)
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/knobs.h"
#include "samepage.h"
#include "test_util.h"

#define STEPS 24
#define FAULT_AT "3" /* the 3rd list the CUDA backend enqueues (replayed graphs are not enqueued again): the first actor's first step */

static sp_error_t *call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out) {
  int64_t args[2] = {x, y};
  return sp_actor_call(a, fn, args, (size_t)nargs, out);
}

static sp_error_t *new_llm(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model, sp_actor_t **out) {
  const char *argv[] = {"llm", "--ctx", "256", "--batch", "32"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 5, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  return sp_actor_new(rt, wasm, len, &opts, out);
}

/* One turn of an actor: init, prompt or step; its guest status or error. */
typedef struct turn {
  sp_actor_t *a;
  int step;       /* 0 init, 1 prompt, then steps */
  bool dead;      /* an error ended it */
  char why[512];
} turn;

static void play(turn *t) {
  if (t->dead) return;
  int64_t out = 0;
  sp_error_t *err = NULL;
  if (t->step == 0) err = call(t->a, "llm_init", 0, 0, 0, &out);
  else if (t->step == 1) {
    int64_t addr = 0;
    err = call(t->a, "llm_input", 8 * 4, 0, 1, &addr);
    uint8_t *base;
    size_t size;
    sp_actor_memory(t->a, &base, &size);
    for (int i = 0; !err && i < 8; i++) ((int32_t *)(base + (uint32_t)addr))[i] = 100 + 37 * i;
    if (!err) err = call(t->a, "llm_prompt", 8 * 4, 2, 2, &out);
  } else err = call(t->a, "llm_step", 0, 0, 0, &out);
  t->step++;
  if (err || out < 0) {
    t->dead = true;
    snprintf(t->why, sizeof t->why, "%s", err ? sp_error_message(err) : llm_guest_error(t->a));
  }
  sp_error_free(err);
}

int main(int argc, char **argv) {
  if (argc < 3 || access(argv[2], R_OK)) {
    printf("usage: test_cuda_fault GUEST_DIR MODEL (no model: skipped)\n");
    return 77;
  }
  setenv("SP_GUEST_DIR", argv[1], 1);
  if (!SP_TEST_HOOKS_BUILT)
    return printf("SKIP: fault injection is a test hook; configure with -DSP_TEST_HOOKS=ON\n"), 77;
  /* In-process, one counter of lists serves both actors. Isolated, a
   * runtime hands its knobs to each of its workers: the first actor's
   * runtime has the fault, the other actors' (calm) has none. */
  struct sp_knobs knobs; /* SP_ISOLATION: the ctest variant */
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) return printf("knobs: %s\n", sp_error_message(err)), 2;
  knobs.cuda_inject_fault = atoi(FAULT_AT);
  sp_runtime_t *gpu = NULL, *cpu = NULL;
  sp_runtime_options go = {.backend = "cuda", .knobs = &knobs},
                     co = {.backend = "cpu", .threads = 2, .isolation = "none", .knobs = &knobs};
  err = sp_runtime_new(&go, &gpu);
  if (err) {
    printf("skipped: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 77;
  }
  bool isolated = !strcmp(sp_runtime_isolation(gpu), "process");
  CHECK(!(err = sp_runtime_new(&co, &cpu)), "cpu runtime: %s", err ? sp_error_message(err) : "");
  size_t len = 0;
  uint8_t *wasm = load_guest("llm", &len);
  turn t[3] = {{0}};
  struct sp_knobs calm_knobs = knobs;
  calm_knobs.cuda_inject_fault = 0;
  sp_runtime_options calm_opts = {.backend = "cuda", .knobs = &calm_knobs};
  sp_runtime_t *calm = gpu;
  if (isolated) CHECK(!(err = sp_runtime_new(&calm_opts, &calm)), "second cuda runtime: %s", sp_error_message(err));
  if (!calm) return CHECK_DONE();
  sp_error_t *e0 = new_llm(gpu, wasm, len, argv[2], &t[0].a);
  sp_error_t *e1 = new_llm(calm, wasm, len, argv[2], &t[1].a), *e2 = new_llm(cpu, wasm, len, argv[2], &t[2].a);
  CHECK(!e0 && !e1 && !e2, "creating the actors failed");
  if (e0 || e1 || e2) return CHECK_DONE();
  for (int s = 0; s < STEPS + 2; s++)
    for (int k = 0; k < 3; k++) play(&t[k]);
  for (int k = 0; k < 3; k++)
    printf("%s actor %d: %s after %d turns\n", k < 2 ? "cuda" : "cpu", k, t[k].dead ? t[k].why : "finished", t[k].step);
  CHECK(!t[2].dead && t[2].step == STEPS + 2, "the CPU actor finished every step");
  if (isolated) {
    CHECK(t[0].dead && strstr(t[0].why, "the GPU faulted") && strstr(t[0].why, "lost its device and ended"),
          "the faulting actor is told its GPU faulted and its worker ended");
    CHECK(!t[1].dead && t[1].step == STEPS + 2, "the other CUDA actor finished every step");
    turn late = {0};
    err = new_llm(calm, wasm, len, argv[2], &late.a);
    for (int s = 0; !err && s < 4; s++) play(&late);
    printf("a new cuda actor: %s\n", err ? sp_error_message(err) : late.dead ? late.why : "ran");
    CHECK(!err && !late.dead, "a new CUDA actor works");
    sp_error_free(err);
    sp_actor_free(late.a);
    for (int k = 0; k < 3; k++) sp_actor_free(t[k].a);
    sp_runtime_free(calm);
    sp_runtime_free(gpu);
    sp_runtime_free(cpu);
    free(wasm);
    return CHECK_DONE();
  }
  CHECK(t[0].dead && t[1].dead, "both CUDA actors end with an error");
  int faulted = 0, lost = 0;
  for (int k = 0; k < 2; k++) {
    faulted += strstr(t[k].why, "the GPU faulted") != NULL;
    lost += strstr(t[k].why, "after a fault in another list") != NULL;
  }
  CHECK(faulted == 1, "exactly one CUDA actor is told the GPU faulted in its list (%d)", faulted);
  CHECK(lost == 1, "the other is told the device is lost after a fault in another list (%d)", lost);
  /* a new CUDA actor answers at once, with the same clear error */
  sp_actor_t *late = NULL;
  turn after = {0};
  err = new_llm(gpu, wasm, len, argv[2], &late);
  if (!err) {
    after.a = late;
    play(&after);
  }
  printf("a new cuda actor: %s\n", err ? sp_error_message(err) : after.dead ? after.why : "ran");
  CHECK(strstr(err ? sp_error_message(err) : after.why, "after a fault in another list") != NULL,
        "a new CUDA actor is told the device is lost");
  sp_error_free(err);
  sp_actor_free(late);
  for (int k = 0; k < 3; k++) sp_actor_free(t[k].a);
  sp_runtime_free(gpu);
  sp_runtime_free(cpu);
  free(wasm);
  return CHECK_DONE();
}
