/*
 * cli_bench_decode.c: `samepage bench decode [--depths D,D,...] [--tokens N]
 * [--runs R] [--sampled] [--sample-full] [--model F] [--backend B]
 * [--batch B] [--json]`.
 *
 * Token generation as llama-bench's tg test with -d measures it: for each
 * depth D, one actor fills its KV cache with D token ids (a fixed
 * pseudo-random sequence, untimed), then N decode steps are timed, one
 * guest call a step (llm_next). The actor is put back to its state after
 * the fill (a snapshot restore, untimed) before each of the R runs; the
 * figure is the median run. Greedy by default (llama-bench's tg is
 * greedy); --sampled uses the default sampler chain with a fixed seed,
 * --sample-full the sampler's whole-row path (the comparison for the
 * candidates the forward list gathers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/error.h"
#include "samepage.h"
#include "samepage_llm.h"

#define MAX_RUNS 16
#define MAX_DEPTHS 16

typedef struct decode_args {
  const char *backend, *model;
  int depths[MAX_DEPTHS], n_depths, tokens, runs, batch;
  bool sampled, sample_full, json;
} decode_args;

typedef struct depth_result {
  int depth;
  double ms[MAX_RUNS]; /* per run: the N steps */
  double median_ms;
} depth_result;

/* N steps of one call each; an error when a step fails or ends the turn
 * early (a benchmark that measured fewer steps would lie). */
static sp_error_t *time_steps(sp_actor_t *a, int n, double *ms) {
  uint8_t *base;
  size_t size;
  double t0 = sp_now_ms();
  for (int i = 0; i < n; i++) {
    int64_t addr = 0;
    sp_error_t *err = sp_cli_call(a, "llm_next", 0, 0, 0, &addr);
    if (err) return err;
    sp_actor_memory(a, &base, &size);
    const sp_llm_step *step = sp_llm_step_at(base, size, addr);
    if (!step) return sp_error_new("step %d: no step record", i);
    if (step->token < 0) return sp_error_new("step %d failed", i);
  }
  *ms = sp_now_ms() - t0;
  return NULL;
}

static sp_error_t *measure_depth(sp_runtime_t *rt, const decode_args *d, int depth, depth_result *r) {
  const char *extra[5];
  int n_extra = 0;
  if (d->sampled) extra[n_extra++] = "--seed", extra[n_extra++] = "1";
  else extra[n_extra++] = "--temp", extra[n_extra++] = "0";
  if (d->sample_full) extra[n_extra++] = "--sample-full";
  char path[] = "/tmp/sp_bench_decode_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return sp_error_new("cannot create a temporary snapshot file");
  close(fd);
  sp_actor_t *a = NULL;
  double fill_ms = 0;
  sp_error_t *err = sp_cli_llm_actor_with(rt, d->model, depth + d->tokens + 64, d->batch, extra, n_extra, &a);
  if (!err) err = sp_cli_llm_prefill(a, depth > 0 ? depth : 1, &fill_ms);
  if (!err) err = sp_actor_snapshot(a, path, NULL, NULL);
  for (int run = 0; run < d->runs && !err; run++) {
    err = run ? sp_actor_restore(a, path, NULL) : NULL;
    if (!err) err = time_steps(a, d->tokens, &r->ms[run]);
  }
  sp_actor_free(a);
  unlink(path);
  if (err) return err;
  double sorted[MAX_RUNS];
  memcpy(sorted, r->ms, (size_t)d->runs * sizeof *sorted);
  qsort(sorted, (size_t)d->runs, sizeof *sorted, sp_cli_cmp_double);
  r->depth = depth, r->median_ms = sorted[(d->runs - 1) / 2];
  return NULL;
}

static void print_results(const decode_args *d, sp_runtime_t *rt, const depth_result *r) {
  const char *sampling = d->sample_full ? "sampled-full" : d->sampled ? "sampled" : "greedy";
  if (d->json) {
    for (int i = 0; i < d->n_depths; i++) {
      printf("{\"bench\": \"decode\", \"backend\": \"%s\", \"isolation\": \"%s\", \"model\": \"%s\", \"depth\": %d, "
             "\"tokens\": %d, \"sampling\": \"%s\", \"ms_per_token\": %.4f, \"tok_s\": %.1f, \"runs_ms\": [",
             sp_runtime_backend_name(rt), sp_runtime_isolation(rt), d->model, r[i].depth, d->tokens, sampling,
             r[i].median_ms / d->tokens, d->tokens * 1e3 / r[i].median_ms);
      for (int k = 0; k < d->runs; k++) printf("%s%.3f", k ? ", " : "", r[i].ms[k]);
      printf("]}\n");
    }
    return;
  }
  printf("samepage bench decode (backend %s, isolation %s, %s): %d tokens after each depth, median of %d\n",
         sp_runtime_backend_name(rt), sp_runtime_isolation(rt), sampling, d->tokens, d->runs);
  printf("  %8s  %12s  %10s\n", "depth", "ms/token", "tok/s");
  for (int i = 0; i < d->n_depths; i++)
    printf("  %8d  %12.4f  %10.1f\n", r[i].depth, r[i].median_ms / d->tokens, d->tokens * 1e3 / r[i].median_ms);
}

static void decode_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench decode [options]\n"
          "  --depths D,D,...       tokens in the cache before the timed steps (default 0,1024,4096; each\n"
          "                         0..262144, at most %d)\n"
          "  --tokens N             timed decode steps (default 128; 1..4096)\n"
          "  --runs R               runs per depth, the median reported (default 3; 1..%d)\n"
          "  --sampled              the default sampler chain (seed 1) instead of greedy\n"
          "  --sample-full          with --sampled: the sampler reads the whole logits row\n"
          "  --batch B              prefill batch for the fill (default 512; 1..4096)\n"
          "  --model FILE           GGUF model (default: SmolLM2-135M-Instruct Q4_1)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --json                 machine-readable output (one line per depth)\n"
          "  -h, --help             this message\n",
          MAX_DEPTHS, MAX_RUNS);
}

/* "0,1024,4096" into d->depths; false on anything else. */
static bool parse_depths(const char *text, decode_args *d) {
  d->n_depths = 0;
  for (const char *p = text; *p;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > 262144 || d->n_depths == MAX_DEPTHS) return false;
    d->depths[d->n_depths++] = (int)v;
    if (*end == ',') end++;
    else if (*end) return false;
    p = end;
  }
  return d->n_depths > 0;
}

static const char *const decode_flags[] = {"--json", "--sampled", "--sample-full", NULL};
static const char *const decode_valued[] = {"--backend", "--model", "--depths", "--tokens", "--runs", "--batch", NULL};

static int parse_decode_args(int argc, char **argv, decode_args *d) {
  *d = (decode_args){.backend = "auto", .tokens = 128, .runs = 3, .batch = 512};
  parse_depths("0,1024,4096", d);
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench decode", argc, argv, &i, decode_flags, decode_valued, decode_usage, &val);
    if (rc) return rc < 0 ? -1 : rc;
    if (!strcmp(opt, "--json")) d->json = true;
    else if (!strcmp(opt, "--sampled")) d->sampled = true;
    else if (!strcmp(opt, "--sample-full")) d->sample_full = true;
    else if (!strcmp(opt, "--backend")) d->backend = val;
    else if (!strcmp(opt, "--model")) d->model = val;
    else if (!strcmp(opt, "--tokens")) d->tokens = atoi(val);
    else if (!strcmp(opt, "--runs")) d->runs = atoi(val);
    else if (!strcmp(opt, "--batch")) d->batch = atoi(val);
    else if (!strcmp(opt, "--depths") && !parse_depths(val, d)) {
      fprintf(stderr, "samepage bench decode: --depths: \"%s\" is not a list of 0..262144 (at most %d)\n", val,
              MAX_DEPTHS);
      return SP_EXIT_USAGE;
    }
  }
  if (d->tokens < 1 || d->tokens > 4096 || d->runs < 1 || d->runs > MAX_RUNS || d->batch < 1 || d->batch > 4096 ||
      (d->sample_full && !d->sampled)) {
    fprintf(stderr, "samepage bench decode: --tokens 1..4096, --runs 1..%d, --batch 1..4096; --sample-full needs "
                    "--sampled\n", MAX_RUNS);
    return SP_EXIT_USAGE;
  }
  if (!d->model) d->model = sp_cli_default_model();
  return 0;
}

int sp_cli_bench_decode(int argc, char **argv) {
  decode_args d;
  int rc = parse_decode_args(argc, argv, &d);
  if (rc) return rc < 0 ? 0 : rc;
  if (access(d.model, R_OK)) {
    fprintf(stderr, "samepage bench decode: model %s: cannot read it (scripts/fetch-model.sh)\n", d.model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = d.backend, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  depth_result results[MAX_DEPTHS] = {{0}};
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  for (int i = 0; i < d.n_depths && !err; i++) err = measure_depth(rt, &d, d.depths[i], &results[i]);
  if (err) {
    fprintf(stderr, "samepage bench decode: %s\n", sp_error_message(err));
    sp_error_free(err);
    sp_runtime_free(rt);
    return SP_EXIT_RUNTIME;
  }
  print_results(&d, rt, results);
  sp_runtime_free(rt);
  return 0;
}
