/*
 * cli_bench_soak.c: `samepage bench soak [--actors 8] [--seconds 600]
 * [--ctx 256] [--bound 5] [--model F] [--json]`: a memory soak.
 *
 * N LLM actors generate concurrently on the CPU backend, one thread each,
 * each its own conversation. When a reply ends the actor gets a new user
 * turn; when its context fills, the actor is freed and a fresh one starts
 * a new conversation (so actor creation and teardown are soaked too).
 * VmRSS and RssAnon are sampled every second. Warm-up is the first 20% of
 * the run (at least 5 s); the run fails (exit 1) when the highest RssAnon
 * in the last 20% exceeds the highest RssAnon seen during warm-up by more
 * than --bound percent: steady state must not grow.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "cli/cli.h"
#include "core/error.h"
#include "samepage.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

#define MAX_SOAK_ACTORS 64

typedef struct soak_shared {
  sp_runtime_t *rt;
  const char *model, *ctx;
  atomic_bool stop;
  atomic_ullong tokens, conversations, turns;
} soak_shared;

typedef struct soak_worker {
  soak_shared *sh;
  int index;
  pthread_t thread;
  char error[512];
} soak_worker;

static double now_s(void) { return sp_now_ms() / 1e3; }

/* One user turn: copies `text` into the guest and prefills it. *full is set
 * when the context has no room for it. */
static sp_error_t *user_turn(sp_actor_t *a, const char *text, bool *full) {
  int64_t len = (int64_t)strlen(text), addr = 0, r = 0;
  sp_error_t *err = sp_actor_call(a, "llm_input", &len, 1, &addr);
  if (err) return err;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (addr <= 0 || (uint64_t)addr + (uint64_t)len > size) return sp_error_new("llm_input gave a bad address");
  memcpy(base + addr, text, (size_t)len);
  int64_t args[2] = {len, 0};
  if ((err = sp_actor_call(a, "llm_prompt", args, 2, &r))) return err;
  *full = r < 0;
  return NULL;
}

static sp_error_t *new_actor(soak_shared *sh, sp_actor_t **out) {
  const char *argv[] = {"llm", "--ctx", sh->ctx, "--temp", "0.8"};
  sp_blob_grant grant = {"model", sh->model};
  sp_actor_options opts = {.argv = argv, .argc = 5, .blobs = &grant, .n_blobs = 1};
  sp_error_t *err = sp_actor_new(sh->rt, sp_embedded_llm, (size_t)(sp_embedded_llm_end - sp_embedded_llm),
                                 &opts, out);
  int64_t r = 0;
  if (!err) err = sp_actor_call(*out, "llm_init", NULL, 0, &r);
  if (!err && r < 0) err = sp_error_new("llm_init failed");
  return err;
}

static void *soak_thread(void *arg) {
  soak_worker *w = arg;
  soak_shared *sh = w->sh;
  static const char *topics[] = {"the sea", "a lighthouse", "bread", "winter", "a clock", "rivers", "trains", "bees"};
  sp_actor_t *a = NULL;
  sp_error_t *err = NULL;
  unsigned turn = 0;
  while (!err && !atomic_load(&sh->stop)) {
    if (!a) {
      if ((err = new_actor(sh, &a))) break;
      atomic_fetch_add(&sh->conversations, 1);
    }
    char text[128];
    snprintf(text, sizeof text, "Actor %d, turn %u: tell me something about %s.", w->index, turn,
             topics[(turn + (unsigned)w->index) % 8]);
    turn++;
    bool full = false;
    if ((err = user_turn(a, text, &full))) break;
    if (full) { /* the context is full: a new conversation */
      sp_actor_free(a);
      a = NULL;
      continue;
    }
    atomic_fetch_add(&sh->turns, 1);
    for (int s = 0; s < 96 && !atomic_load(&sh->stop); s++) {
      int64_t tok = 0, done = 0;
      if ((err = sp_actor_call(a, "llm_step", NULL, 0, &tok))) break;
      if (tok < 0) { /* context full mid-reply */
        sp_actor_free(a);
        a = NULL;
        break;
      }
      atomic_fetch_add(&sh->tokens, 1);
      if ((err = sp_actor_call(a, "llm_turn_done", NULL, 0, &done)) || done) break;
    }
  }
  if (err) {
    snprintf(w->error, sizeof w->error, "actor %d: %s", w->index, sp_error_message(err));
    sp_error_free(err);
    atomic_store(&sh->stop, true);
  }
  sp_actor_free(a);
  return NULL;
}

static void soak_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench soak [options]\n"
          "  --actors N             actors generating at once, one thread each (default 8; 1..%d)\n"
          "  --seconds S            length of the run (default 600; >= 1)\n"
          "  --ctx N                each actor's context length (default 256)\n"
          "  --bound PCT            allowed RssAnon growth after warm-up, in percent (default 5)\n"
          "  --model FILE           GGUF model (default: SmolLM2-135M-Instruct Q4_1)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n"
          "CPU backend only. Exit status 1 when memory grew past the bound or an actor failed.\n",
          MAX_SOAK_ACTORS);
}

static const char *const soak_flags[] = {"--json", NULL};
static const char *const soak_valued[] = {"--actors", "--seconds", "--bound", "--model", "--ctx", NULL};

int sp_cli_bench_soak(int argc, char **argv) {
  bool json = false;
  int n_actors = 8;
  double seconds = 600, bound = 5.0;
  const char *model = NULL, *ctx = "256";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench soak", argc, argv, &i, soak_flags, soak_valued, soak_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(opt, "--json")) json = true;
    else if (!strcmp(opt, "--actors")) n_actors = atoi(val);
    else if (!strcmp(opt, "--seconds")) seconds = atof(val);
    else if (!strcmp(opt, "--bound")) bound = atof(val);
    else if (!strcmp(opt, "--model")) model = val;
    else if (!strcmp(opt, "--ctx")) ctx = val;
  }
  if (n_actors < 1 || n_actors > MAX_SOAK_ACTORS || seconds < 1) {
    fprintf(stderr, "samepage bench soak: --actors must be 1..%d and --seconds >= 1\n", MAX_SOAK_ACTORS);
    return SP_EXIT_USAGE;
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench soak: model %s: cannot read it\n", model);
    return SP_EXIT_RUNTIME;
  }
  soak_shared sh = {.model = model, .ctx = ctx};
  sp_runtime_options ropts = {.backend = "cpu", .knobs = sp_cli_knobs()};
  sp_error_t *err = sp_runtime_new(&ropts, &sh.rt);
  if (err) {
    fprintf(stderr, "samepage bench soak: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  long rss_start = sp_cli_proc_kb("/proc/self/status", "VmRSS");
  long anon_start = sp_cli_proc_kb("/proc/self/status", "RssAnon");
  static soak_worker workers[MAX_SOAK_ACTORS];
  int started = 0;
  for (int i = 0; i < n_actors; i++) {
    workers[i] = (soak_worker){.sh = &sh, .index = i};
    if (pthread_create(&workers[i].thread, NULL, soak_thread, &workers[i])) break;
    started++;
  }
  double warmup = seconds * 0.2 < 5 ? 5 : seconds * 0.2, tail_from = seconds * 0.8;
  if (tail_from < warmup) tail_from = warmup;
  long rss_warm = 0, anon_warm = 0, rss_max = 0, anon_max = 0, anon_tail_max = 0, rss_end = 0, anon_end = 0;
  int samples = 0;
  double t0 = now_s(), t = 0;
  unsigned long long tokens_warm = 0;
  while ((t = now_s() - t0) < seconds && !atomic_load(&sh.stop)) {
    usleep(1000000 - (useconds_t)((t - (long)t) * 1e6) % 1000000);
    t = now_s() - t0;
    long rss = sp_cli_proc_kb("/proc/self/status", "VmRSS"), anon = sp_cli_proc_kb("/proc/self/status", "RssAnon");
    samples++;
    if (rss > rss_max) rss_max = rss;
    if (anon > anon_max) anon_max = anon;
    if (t <= warmup) {
      if (anon > anon_warm) anon_warm = anon;
      if (rss > rss_warm) rss_warm = rss;
      tokens_warm = atomic_load(&sh.tokens);
    }
    if (t >= tail_from && anon > anon_tail_max) anon_tail_max = anon;
    rss_end = rss, anon_end = anon;
    if (!json && samples % 60 == 0)
      fprintf(stderr, "soak: %4.0f s  %llu tokens  VmRSS %.1f MiB  RssAnon %.1f MiB\n", t,
              (unsigned long long)atomic_load(&sh.tokens), rss / 1024.0, anon / 1024.0);
  }
  double elapsed = now_s() - t0;
  atomic_store(&sh.stop, true);
  const char *failure = NULL;
  for (int i = 0; i < started; i++) {
    pthread_join(workers[i].thread, NULL);
    if (workers[i].error[0] && !failure) failure = workers[i].error;
  }
  sp_runtime_free(sh.rt);
  unsigned long long tokens = atomic_load(&sh.tokens);
  double growth = anon_warm > 0 ? 100.0 * ((double)anon_tail_max - (double)anon_warm) / (double)anon_warm : 0;
  bool ok = !failure && started == n_actors && anon_warm > 0 && growth <= bound;
  double tps = elapsed - warmup > 0 ? (double)(tokens - tokens_warm) / (elapsed - warmup) : 0;
  if (json) {
    printf("{\"bench\": \"soak\", \"actors\": %d, \"seconds\": %.1f, \"ctx\": %s, \"tokens\": %llu, "
           "\"tokens_per_s_after_warmup\": %.2f, \"conversations\": %llu, \"turns\": %llu, \"samples\": %d, "
           "\"warmup_s\": %.1f, \"vmrss_mib\": {\"start\": %.1f, \"warm\": %.1f, \"end\": %.1f, \"max\": %.1f}, "
           "\"rss_anon_mib\": {\"start\": %.1f, \"warm\": %.1f, \"tail_max\": %.1f, \"end\": %.1f, \"max\": %.1f}, "
           "\"anon_growth_pct\": %.2f, \"bound_pct\": %.1f, \"ok\": %s}\n",
           n_actors, elapsed, ctx, tokens, tps, (unsigned long long)atomic_load(&sh.conversations),
           (unsigned long long)atomic_load(&sh.turns), samples, warmup, rss_start / 1024.0, rss_warm / 1024.0,
           rss_end / 1024.0, rss_max / 1024.0, anon_start / 1024.0, anon_warm / 1024.0, anon_tail_max / 1024.0,
           anon_end / 1024.0, anon_max / 1024.0, growth, bound, ok ? "true" : "false");
  } else {
    printf("samepage bench soak: %d actors, %.0f s, --ctx %s, cpu backend\n", n_actors, elapsed, ctx);
    printf("  tokens %llu (%.2f/s after warm-up), conversations %llu, turns %llu, %d samples\n", tokens, tps,
           (unsigned long long)atomic_load(&sh.conversations), (unsigned long long)atomic_load(&sh.turns), samples);
    printf("  VmRSS   MiB: start %.1f, after warm-up (%.0f s) %.1f, end %.1f, max %.1f\n", rss_start / 1024.0,
           warmup, rss_warm / 1024.0, rss_end / 1024.0, rss_max / 1024.0);
    printf("  RssAnon MiB: start %.1f, after warm-up %.1f, last 20%% max %.1f, end %.1f, max %.1f\n",
           anon_start / 1024.0, anon_warm / 1024.0, anon_tail_max / 1024.0, anon_end / 1024.0, anon_max / 1024.0);
    printf("  RssAnon growth after warm-up: %.2f%% (bound %.1f%%): %s\n", growth, bound, ok ? "ok" : "FAIL");
  }
  if (failure) fprintf(stderr, "samepage bench soak: %s\n", failure);
  return ok ? 0 : 1;
}
