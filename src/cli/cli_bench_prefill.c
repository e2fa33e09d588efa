/*
 * cli_bench_prefill.c: `samepage bench prefill [--json] [--tokens N]
 * [--runs R] [--batch B] [--backend B] [--model F] [--same-actor]`.
 *
 * Prompt processing as llama-bench's pp test measures it: N token ids
 * prefilled by a fresh actor (model already loaded in the runtime, and
 * kept loaded by another actor), R times in one process. The first run is reported apart ("cold": it pays
 * for first-use costs such as loading kernels and creating library
 * handles); the warm figure is the median of the others.
 *
 * --same-actor prefills in one actor instead, put back before each run to
 * its state after loading (a snapshot restore, not timed). Under process
 * isolation a fresh actor is a fresh worker process, with its own first-use
 * costs (no device copies are shared across processes); this measures the
 * steady state of one actor, as llama-bench does with one context.
 * The isolation in use ($SP_ISOLATION) is reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/error.h"
#include "samepage.h"

#define MAX_RUNS 16

/* Times `runs` prefills of n tokens, each in a fresh actor, while one more
 * actor keeps the model loaded (on a GPU: its device copy, and what is
 * derived from it, stay made, as in a server). The keeper loads the model
 * as `samepage run` does (on CUDA with the guest's --warmup), so the first
 * run is a process's first prompt after loading. */
static sp_error_t *measure(sp_runtime_t *rt, const char *model, int n, int batch, int runs, double *ms) {
  sp_actor_t *keeper = NULL;
  const char *warm[] = {"--warmup"};
  sp_error_t *err = sp_cli_llm_actor_with(rt, model, n + 64, batch, warm, sp_cli_llm_warmup_wanted(rt), &keeper);
  for (int r = 0; r < runs && !err; r++) {
    sp_actor_t *a = NULL;
    err = sp_cli_llm_actor(rt, model, n + 64, batch, &a);
    if (!err) err = sp_cli_llm_prefill(a, n, &ms[r]);
    sp_actor_free(a);
  }
  sp_actor_free(keeper);
  return err;
}

/* The same, in one actor restored to its loaded state before each run. */
static sp_error_t *measure_same_actor(sp_runtime_t *rt, const char *model, int n, int batch, int runs, double *ms) {
  char path[] = "/tmp/sp_bench_prefill_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return sp_error_new("cannot create a temporary snapshot file");
  close(fd);
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_cli_llm_actor(rt, model, n + 64, batch, &a);
  if (!err) err = sp_actor_snapshot(a, path, NULL, NULL);
  for (int r = 0; r < runs && !err; r++) {
    err = r ? sp_actor_restore(a, path, NULL) : NULL;
    if (!err) err = sp_cli_llm_prefill(a, n, &ms[r]);
  }
  sp_actor_free(a);
  unlink(path);
  return err;
}

static void prefill_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench prefill [options]\n"
          "  --tokens N             prompt length (default 512; 1..32768)\n"
          "  --runs R               prefills; the first is reported as cold (default 4; 2..%d)\n"
          "  --batch B              prefill batch (default 512; 1..4096)\n"
          "  --model FILE           GGUF model (default: SmolLM2-135M-Instruct Q4_1)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --same-actor           one actor, restored before each run (default: a fresh one each run)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n"
          "Process isolation: SP_ISOLATION=process.\n", MAX_RUNS);
}

static const char *const prefill_flags[] = {"--json", "--same-actor", NULL};
static const char *const prefill_valued[] = {"--backend", "--model", "--tokens", "--runs", "--batch", NULL};

int sp_cli_bench_prefill(int argc, char **argv) {
  bool json = false, same_actor = false;
  const char *backend = "auto", *model = NULL;
  int tokens = 512, runs = 4, batch = 512;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench prefill", argc, argv, &i, prefill_flags, prefill_valued, prefill_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(opt, "--json")) json = true;
    else if (!strcmp(opt, "--same-actor")) same_actor = true;
    else if (!strcmp(opt, "--backend")) backend = val;
    else if (!strcmp(opt, "--model")) model = val;
    else if (!strcmp(opt, "--tokens")) tokens = atoi(val);
    else if (!strcmp(opt, "--runs")) runs = atoi(val);
    else if (!strcmp(opt, "--batch")) batch = atoi(val);
  }
  if (tokens < 1 || tokens > 32768 || runs < 2 || runs > MAX_RUNS || batch < 1 || batch > 4096) {
    fprintf(stderr, "samepage bench prefill: --tokens 1..32768, --runs 2..%d, --batch 1..4096\n", MAX_RUNS);
    return SP_EXIT_USAGE;
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench prefill: model %s: cannot read it (scripts/fetch-model.sh)\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = backend, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  double ms[MAX_RUNS] = {0};
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  if (!err) err = (same_actor ? measure_same_actor : measure)(rt, model, tokens, batch, runs, ms);
  if (err) {
    fprintf(stderr, "samepage bench prefill: %s\n", sp_error_message(err));
    sp_error_free(err);
    sp_runtime_free(rt);
    return SP_EXIT_RUNTIME;
  }
  double warm[MAX_RUNS];
  memcpy(warm, ms + 1, (size_t)(runs - 1) * sizeof *warm);
  qsort(warm, (size_t)(runs - 1), sizeof *warm, sp_cli_cmp_double);
  double median = warm[(runs - 1) / 2];
  if (json) {
    printf("{\"bench\": \"prefill\", \"backend\": \"%s\", \"isolation\": \"%s\", \"actor\": \"%s\", \"tokens\": %d, "
           "\"batch\": %d, \"cold_ms\": %.2f, \"cold_tok_s\": %.1f, \"warm_ms\": %.2f, \"warm_tok_s\": %.1f, \"runs_ms\": [",
           sp_runtime_backend_name(rt), sp_runtime_isolation(rt), same_actor ? "same" : "fresh", tokens, batch, ms[0],
           tokens * 1e3 / ms[0], median, tokens * 1e3 / median);
    for (int r = 0; r < runs; r++) printf("%s%.2f", r ? ", " : "", ms[r]);
    printf("]}\n");
  } else {
    printf("samepage bench prefill (backend %s, isolation %s, %s actor): %d tokens, batches of %d\n",
           sp_runtime_backend_name(rt), sp_runtime_isolation(rt), same_actor ? "the same" : "a fresh", tokens, batch);
    printf("  cold (first run): %9.2f ms  %10.1f tok/s\n", ms[0], tokens * 1e3 / ms[0]);
    printf("  warm (median of %d): %7.2f ms  %10.1f tok/s\n", runs - 1, median, tokens * 1e3 / median);
  }
  sp_runtime_free(rt);
  return 0;
}
