/*
 * cli_bench_batch.c: `samepage bench batch [--actors 1,8,32] [--tokens N]
 * [--prompt-tokens P] [--window-us W] [--model F] [--backend B] [--check]
 * [--json]`: cross-actor batching (docs/BATCHING.md).
 *
 * For each count N, N LLM actors in N threads, each its own conversation
 * (its own prompt of P token ids, its own sampler seed, default sampler
 * chain), decode N x T tokens at once, one guest call a token: first with
 * batching off, then on (window W). Reported: aggregate decode tokens/s
 * both ways, p50/p99 time per token, and how many lists ran batched.
 *
 * --check holds batching to its promise: every actor's tokens and the
 * digest of its whole memory at the end, run among the others with
 * batching, equal the same conversation run alone; and a snapshot actor 0
 * took halfway, while batched, restored into a fresh actor with no
 * batching, continues with the same tokens; and, with N > 1, isolation
 * against a tampering neighbour: actor 0 overwrites bytes of its mapped
 * weights (as a hostile guest may: its mapping is private) before
 * decoding, and every other actor, batched beside it, must still get
 * exactly its tokens and memory of the untampered run (the runtime must
 * not count actor 0's weights as the others' any more). Exit status 1 on
 * a difference, or when no list of any row with several actors ran
 * batched.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/hash64.h"
#include "samepage.h"
#include "samepage_llm.h"

#define MAX_COUNTS 8
#define MAX_ACTORS 64
#define MAX_TOKENS 512

typedef struct batch_args {
  const char *backend, *model;
  int counts[MAX_COUNTS], n_counts, tokens, prompt_tokens;
  uint32_t window_us;
  bool check, json;
} batch_args;

/* One conversation: what it is, and what it produced. */
typedef struct conversation {
  sp_runtime_t *rt;
  const batch_args *args;
  int index;                  /* its prompt and seed */
  const char *snapshot_path;  /* non-NULL: snapshot here after half the tokens */
  bool tamper;                /* overwrite a page of its mapped weights before decoding */
  pthread_barrier_t *start;   /* every actor loaded before anyone decodes */
  int32_t tokens[MAX_TOKENS];
  double step_ms[MAX_TOKENS];
  uint64_t digest;            /* of its whole linear memory at the end */
  double t_first, t_last;     /* decode started / ended (sp_now_ms) */
  sp_error_t *err;
} conversation;

static sp_error_t *new_actor(const conversation *c, sp_actor_t **out) {
  char seed[24];
  snprintf(seed, sizeof seed, "%d", 1000 + c->index);
  const char *extra[] = {"--seed", seed};
  int ctx = c->args->prompt_tokens + c->args->tokens + 64;
  return sp_cli_llm_actor_with(c->rt, c->args->model, ctx, 512, extra, 2, out);
}

/* Conversation i's prompt: P ids, different for every i. */
static sp_error_t *prefill(sp_actor_t *a, int index, int n) {
  int64_t addr = 0, got = 0;
  sp_error_t *err = sp_cli_call(a, "llm_input", (int64_t)n * 4, 0, 1, &addr);
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (!err && ((uint64_t)(uint32_t)addr + (uint64_t)n * 4 > size)) err = sp_error_new("llm_input: bad address");
  if (err) return err;
  int32_t *ids = (int32_t *)(base + (uint32_t)addr);
  for (int i = 0; i < n; i++) ids[i] = 100 + (int32_t)(((uint32_t)i * 7919u + (uint32_t)index * 104729u) % 20000u);
  err = sp_cli_call(a, "llm_prompt", (int64_t)n * 4, 2, 2, &got);
  return err ? err : got == n ? NULL : sp_error_new("prefill of %d tokens failed", n);
}

/* Tokens [from, to) of a conversation, one llm_next each. */
static sp_error_t *decode(sp_actor_t *a, conversation *c, int from, int to) {
  for (int i = from; i < to; i++) {
    int64_t addr = 0;
    double t0 = sp_now_ms();
    sp_error_t *err = sp_cli_call(a, "llm_next", 0, 0, 0, &addr);
    if (err) return err;
    c->step_ms[i] = sp_now_ms() - t0;
    uint8_t *base;
    size_t size;
    sp_actor_memory(a, &base, &size);
    const sp_llm_step *step = sp_llm_step_at(base, size, addr);
    if (!step || step->token < 0) return sp_error_new("step %d failed", i);
    c->tokens[i] = step->token;
  }
  return NULL;
}

/* Overwrites bytes of one page of the model inside the actor's memory,
 * found by its content (the page at the middle of the file), as a guest
 * writing to its own weights would. */
static sp_error_t *tamper_weights(sp_actor_t *a, const char *model) {
  uint8_t page[4096];
  FILE *f = fopen(model, "rb");
  if (!f) return sp_error_new("tamper: cannot open %s", model);
  fseek(f, 0, SEEK_END);
  long at = ftell(f) / 2 / 4096 * 4096;
  bool got = fseek(f, at, SEEK_SET) == 0 && fread(page, 1, sizeof page, f) == sizeof page;
  fclose(f);
  if (!got) return sp_error_new("tamper: cannot read %s", model);
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  for (size_t off = 0; off + sizeof page <= size; off += sizeof page) {
    if (memcmp(base + off, page, sizeof page)) continue;
    memset(base + off + 512, 0x77, 1024);
    return NULL;
  }
  return sp_error_new("tamper: the model's middle page is not in the actor's memory");
}

static uint64_t memory_digest(sp_actor_t *a) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  return sp_hash64_of(base, size);
}

static void *run_conversation(void *arg) {
  conversation *c = arg;
  sp_actor_t *a = NULL;
  c->err = new_actor(c, &a);
  if (!c->err) c->err = prefill(a, c->index, c->args->prompt_tokens);
  if (!c->err && c->tamper) c->err = tamper_weights(a, c->args->model);
  if (c->start) pthread_barrier_wait(c->start); /* an actor that failed still takes part */
  int half = c->args->tokens / 2;
  c->t_first = sp_now_ms();
  if (!c->err) c->err = decode(a, c, 0, half);
  if (!c->err && c->snapshot_path) c->err = sp_actor_snapshot(a, c->snapshot_path, NULL, NULL);
  if (!c->err) c->err = decode(a, c, half, c->args->tokens);
  c->t_last = sp_now_ms();
  if (!c->err) c->digest = memory_digest(a);
  sp_actor_free(a);
  return NULL;
}

/* N conversations at once on a runtime with the given window (0: off). */
static sp_error_t *run_together(const batch_args *d, int first, int n, uint32_t window_us, const char *snapshot_path,
                                bool tamper_first, conversation *cs, struct sp_runtime_stats *stats) {
  sp_runtime_options ro = {.backend = d->backend, .knobs = sp_cli_knobs(), .batch_window_us = window_us};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  if (err) return err;
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)n);
  pthread_t th[MAX_ACTORS];
  for (int i = 0; i < n; i++) {
    cs[i] = (conversation){.rt = rt, .args = d, .index = first + i, .start = &start,
                           .snapshot_path = i ? NULL : snapshot_path, .tamper = !i && tamper_first};
    pthread_create(&th[i], NULL, run_conversation, &cs[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  stats->size = sizeof *stats;
  sp_error_t *serr = sp_runtime_stats(rt, stats);
  sp_error_free(serr);
  sp_runtime_free(rt);
  for (int i = 0; i < n && !err; i++)
    if (cs[i].err) err = sp_error_wrap(cs[i].err, "conversation %d", i), cs[i].err = NULL;
  for (int i = 0; i < n; i++) sp_error_free(cs[i].err);
  return err;
}

typedef struct count_row {
  int actors;
  double tok_s_off, tok_s_on, p50_on, p99_on, p50_off, p99_off;
  uint64_t lists, batched_lists, largest;
  int mismatches; /* --check: conversations that differ from their lone run (-1: not checked) */
} count_row;

static double aggregate_tok_s(const conversation *cs, int n, int tokens) {
  double t0 = cs[0].t_first, t1 = cs[0].t_last;
  for (int i = 1; i < n; i++) t0 = cs[i].t_first < t0 ? cs[i].t_first : t0, t1 = cs[i].t_last > t1 ? cs[i].t_last : t1;
  return t1 > t0 ? (double)n * tokens * 1e3 / (t1 - t0) : 0;
}

static void step_percentiles(const conversation *cs, int n, int tokens, double *p50, double *p99) {
  double *all = malloc(sizeof *all * (size_t)n * (size_t)tokens);
  if (!all) return;
  for (int i = 0; i < n; i++) memcpy(all + (size_t)i * tokens, cs[i].step_ms, sizeof *all * (size_t)tokens);
  qsort(all, (size_t)n * tokens, sizeof *all, sp_cli_cmp_double);
  size_t total = (size_t)n * tokens;
  *p50 = all[(total - 1) / 2], *p99 = all[(size_t)((double)(total - 1) * 0.99)];
  free(all);
}

/* Conversations that differ, in tokens or final memory, from the same
 * conversation run alone without batching. Conversation 0 took a snapshot
 * halfway in the batched run: alone it takes one too, since a snapshot
 * writes device-local ranges (the KV cache on a GPU) back into guest
 * memory, which the final digest reads. */
static sp_error_t *count_mismatches(const batch_args *d, const conversation *cs, int n, int *mismatches) {
  *mismatches = 0;
  char path[] = "/tmp/sp_bench_batch_lone_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return sp_error_new("cannot create a temporary snapshot file");
  close(fd);
  sp_error_t *err = NULL;
  for (int i = 0; i < n && !err; i++) {
    conversation alone;
    struct sp_runtime_stats st;
    err = run_together(d, cs[i].index, 1, 0, i ? NULL : path, false, &alone, &st);
    if (err) break;
    bool tokens = !memcmp(alone.tokens, cs[i].tokens, sizeof(int32_t) * (size_t)d->tokens);
    bool memory = alone.digest == cs[i].digest;
    if (!tokens || !memory)
      fprintf(stderr, "samepage bench batch: conversation %d among %d differs from its lone run (%s)\n", i, n,
              !tokens ? "tokens" : "final memory");
    *mismatches += !tokens || !memory;
  }
  unlink(path);
  return err;
}

/* Actor 0's snapshot, taken halfway while batched, restored into a fresh
 * actor without batching: does it continue with the same tokens? */
static sp_error_t *check_resume(const batch_args *d, const conversation *c0, const char *path, bool *same) {
  sp_runtime_options ro = {.backend = d->backend, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ro, &rt);
  if (err) return err;
  conversation c = {.rt = rt, .args = d, .index = c0->index};
  sp_actor_t *a = NULL;
  int half = d->tokens / 2;
  err = new_actor(&c, &a);
  if (!err) err = sp_actor_restore(a, path, NULL);
  if (!err) err = decode(a, &c, half, d->tokens);
  sp_actor_free(a);
  sp_runtime_free(rt);
  *same = !err && !memcmp(c.tokens + half, c0->tokens + half, sizeof(int32_t) * (size_t)(d->tokens - half));
  return err;
}

/* The batched run again, actor 0 tampering with its weights: the others
 * must equal the untampered run (cs) exactly. */
static sp_error_t *check_tampering(const batch_args *d, const conversation *cs, int n, int *mismatches) {
  conversation *again = calloc((size_t)n, sizeof *again);
  if (!again) return sp_error_new("out of memory");
  struct sp_runtime_stats st;
  sp_error_t *err = run_together(d, 0, n, d->window_us, NULL, true, again, &st);
  for (int i = 1; i < n && !err; i++) {
    bool same = again[i].digest == cs[i].digest &&
                !memcmp(again[i].tokens, cs[i].tokens, sizeof(int32_t) * (size_t)d->tokens);
    if (!same) fprintf(stderr, "samepage bench batch: conversation %d changed when actor 0 tampered with its weights\n", i);
    *mismatches += !same;
  }
  if (!err && again[0].digest == cs[0].digest) err = sp_error_new("tamper: actor 0's memory did not change");
  free(again);
  return err;
}

static sp_error_t *measure_count(const batch_args *d, int n, count_row *row) {
  conversation *cs = calloc((size_t)n, sizeof *cs);
  if (!cs) return sp_error_new("out of memory");
  char path[] = "/tmp/sp_bench_batch_XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  struct sp_runtime_stats st;
  *row = (count_row){.actors = n, .mismatches = -1};
  sp_error_t *err = fd < 0 ? sp_error_new("cannot create a temporary snapshot file") : NULL;
  if (!err) err = run_together(d, 0, n, 0, NULL, false, cs, &st);
  if (!err) {
    row->tok_s_off = aggregate_tok_s(cs, n, d->tokens);
    step_percentiles(cs, n, d->tokens, &row->p50_off, &row->p99_off);
    err = run_together(d, 0, n, d->window_us, d->check ? path : NULL, false, cs, &st);
  }
  if (!err) {
    row->tok_s_on = aggregate_tok_s(cs, n, d->tokens);
    step_percentiles(cs, n, d->tokens, &row->p50_on, &row->p99_on);
    row->lists = st.batch_lists, row->batched_lists = st.batched_lists, row->largest = st.batch_largest;
  }
  if (!err && d->check) err = count_mismatches(d, cs, n, &row->mismatches);
  if (!err && d->check) {
    bool same = false;
    err = check_resume(d, &cs[0], path, &same);
    if (!err && !same) {
      fprintf(stderr, "samepage bench batch: the snapshot taken while batched did not continue alike\n");
      row->mismatches++;
    }
  }
  if (!err && d->check && n > 1) err = check_tampering(d, cs, n, &row->mismatches);
  if (fd >= 0) unlink(path);
  free(cs);
  return err;
}

static void print_rows(const batch_args *d, const count_row *rows, int n) {
  if (d->json) {
    for (int i = 0; i < n; i++) {
      const count_row *r = &rows[i];
      printf("{\"bench\": \"batch\", \"model\": \"%s\", \"actors\": %d, \"tokens\": %d, \"prompt_tokens\": %d, "
             "\"window_us\": %u, \"tok_s_off\": %.1f, \"tok_s_on\": %.1f, \"step_ms_p50_off\": %.3f, "
             "\"step_ms_p99_off\": %.3f, \"step_ms_p50_on\": %.3f, \"step_ms_p99_on\": %.3f, \"lists\": %llu, "
             "\"batched_lists\": %llu, \"largest_round\": %llu, \"mismatches\": %d}\n",
             d->model, r->actors, d->tokens, d->prompt_tokens, d->window_us, r->tok_s_off, r->tok_s_on, r->p50_off,
             r->p99_off, r->p50_on, r->p99_on, (unsigned long long)r->lists, (unsigned long long)r->batched_lists,
             (unsigned long long)r->largest, r->mismatches);
    }
    return;
  }
  printf("samepage bench batch (%s): %d tokens per conversation after %d-token prompts, window %u us\n", d->model,
         d->tokens, d->prompt_tokens, d->window_us);
  printf("  %6s  %12s  %12s  %6s  %14s  %14s  %9s  %7s  %s\n", "actors", "off tok/s", "on tok/s", "ratio",
         "off p50/p99 ms", "on p50/p99 ms", "batched", "largest", "check");
  for (int i = 0; i < n; i++) {
    const count_row *r = &rows[i];
    char check[32];
    snprintf(check, sizeof check, "%s", r->mismatches < 0 ? "-" : r->mismatches ? "DIFFERS" : "identical");
    printf("  %6d  %12.1f  %12.1f  %5.2fx  %6.2f/%-7.2f  %6.2f/%-7.2f  %8.0f%%  %7llu  %s\n", r->actors, r->tok_s_off,
           r->tok_s_on, r->tok_s_off > 0 ? r->tok_s_on / r->tok_s_off : 0, r->p50_off, r->p99_off, r->p50_on,
           r->p99_on, r->lists ? 100.0 * (double)r->batched_lists / (double)r->lists : 0,
           (unsigned long long)r->largest, check);
  }
}

static void batch_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench batch [options]\n"
          "  --actors N,N,...        concurrent conversations per row (default 1,8,32; at most %d)\n"
          "  --tokens N              tokens each conversation decodes (default 64, at most %d)\n"
          "  --prompt-tokens N       each conversation's prompt (default 16)\n"
          "  --window-us N           batching window in microseconds (default 2000)\n"
          "  --model FILE            GGUF model (default: the SmolLM2 model)\n"
          "  --backend cpu|cuda|vulkan|auto compute backend (default auto)\n"
          "  --check                 each conversation batched equals it alone (tokens, memory), and a\n"
          "                          snapshot taken while batched continues alike; exit 1 if not\n"
          "  --json                  one JSON object per row\n"
          "  -h, --help              this message\n",
          MAX_ACTORS, MAX_TOKENS);
}

static bool parse_counts(const char *text, batch_args *d) {
  d->n_counts = 0;
  for (const char *p = text; *p;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v > MAX_ACTORS || d->n_counts == MAX_COUNTS) return false;
    d->counts[d->n_counts++] = (int)v;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return false;
  }
  return d->n_counts > 0;
}

static const char *const batch_flags[] = {"--json", "--check", NULL};
static const char *const batch_valued[] = {"--actors", "--tokens", "--prompt-tokens", "--window-us", "--model",
                                           "--backend", NULL};

static int parse_batch_args(int argc, char **argv, batch_args *d) {
  *d = (batch_args){.backend = "auto", .tokens = 64, .prompt_tokens = 16, .window_us = 2000};
  parse_counts("1,8,32", d);
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench batch", argc, argv, &i, batch_flags, batch_valued, batch_usage, &val);
    if (rc) return rc < 0 ? -1 : rc;
    if (!strcmp(opt, "--json")) d->json = true;
    else if (!strcmp(opt, "--check")) d->check = true;
    else if (!strcmp(opt, "--tokens")) d->tokens = atoi(val);
    else if (!strcmp(opt, "--prompt-tokens")) d->prompt_tokens = atoi(val);
    else if (!strcmp(opt, "--window-us")) d->window_us = (uint32_t)strtoul(val, NULL, 10);
    else if (!strcmp(opt, "--model")) d->model = val;
    else if (!strcmp(opt, "--backend")) d->backend = val;
    else if (!strcmp(opt, "--actors") && !parse_counts(val, d)) {
      fprintf(stderr, "samepage bench batch: --actors: \"%s\" is not a list of 1..%d\n", val, MAX_ACTORS);
      return SP_EXIT_USAGE;
    }
  }
  if (d->tokens < 2 || d->tokens > MAX_TOKENS || d->prompt_tokens < 1 || d->prompt_tokens > 4096 ||
      d->window_us > 1000000) {
    fprintf(stderr, "samepage bench batch: --tokens 2..%d, --prompt-tokens 1..4096, --window-us 0..1000000\n",
            MAX_TOKENS);
    return SP_EXIT_USAGE;
  }
  if (!d->model) d->model = sp_cli_default_model();
  return 0;
}

int sp_cli_bench_batch(int argc, char **argv) {
  batch_args d;
  int rc = parse_batch_args(argc, argv, &d);
  if (rc) return rc < 0 ? 0 : rc;
  if (access(d.model, R_OK)) {
    fprintf(stderr, "samepage bench batch: model %s: cannot read it (scripts/fetch-model.sh)\n", d.model);
    return SP_EXIT_RUNTIME;
  }
  count_row rows[MAX_COUNTS];
  sp_error_t *err = NULL;
  for (int i = 0; i < d.n_counts && !err; i++) err = measure_count(&d, d.counts[i], &rows[i]);
  if (err) {
    fprintf(stderr, "samepage bench batch: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  print_rows(&d, rows, d.n_counts);
  int failed = 0, several = 0;
  uint64_t batched = 0;
  for (int i = 0; i < d.n_counts; i++) {
    failed |= rows[i].mismatches > 0;
    if (rows[i].actors > 1) several++, batched += rows[i].batched_lists;
  }
  /* actors decoding together must have met in a batch at least once (a
   * pair on a busy machine may keep missing each other: rows count together) */
  if (d.check && several && !batched) {
    fprintf(stderr, "samepage bench batch: no list ran batched\n");
    failed = 1;
  }
  if (failed) fprintf(stderr, "samepage bench batch: FAILED (see above)\n");
  return failed ? 1 : 0;
}
