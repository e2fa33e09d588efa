/*
 * cli_bench_actors.c: `samepage bench actors [--counts 1,8,32] [--ctx N]
 * [--model F] [--json]`: many actors, one model.
 *
 * One process hosts N LLM actors, each with its own conversation (a short
 * prompt and a few tokens). Every actor maps the same model file privately,
 * so the weights are one copy in the OS page cache; what an actor adds is
 * its own anonymous memory: KV cache, heap, activations. Reported per N:
 * VmRSS (which counts a shared page once per mapping), RssAnon (private
 * memory), and PSS (shared pages divided among their mappings), from
 * /proc/self/status and /proc/self/smaps_rollup.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "samepage.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

#define MAX_ACTORS 256

typedef struct mem_row {
  int actors;
  double rss_mb, anon_mb, file_mb, pss_mb;
} mem_row;

static sp_error_t *start_actor(sp_runtime_t *rt, const char *model, const char *ctx, int i, sp_actor_t **out) {
  const char *argv[] = {"llm", "--ctx", ctx};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 3, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  size_t len = (size_t)(sp_embedded_llm_end - sp_embedded_llm);
  sp_error_t *err = sp_actor_new(rt, sp_embedded_llm, len, &opts, out);
  int64_t r = 0, arg, addr;
  if (!err) err = sp_actor_call(*out, "llm_init", NULL, 0, &r);
  if (!err && r < 0) err = sp_error_new("actor %d: llm_init failed", i);
  char prompt[64];
  snprintf(prompt, sizeof prompt, "Conversation %d: say hello.", i);
  arg = (int64_t)strlen(prompt);
  if (!err) err = sp_actor_call(*out, "llm_input", &arg, 1, &addr);
  if (!err) {
    uint8_t *base;
    size_t size;
    sp_actor_memory(*out, &base, &size);
    memcpy(base + addr, prompt, strlen(prompt));
    int64_t args[2] = {arg, 0};
    err = sp_actor_call(*out, "llm_prompt", args, 2, &r);
  }
  for (int s = 0; !err && s < 4; s++) err = sp_actor_call(*out, "llm_step", NULL, 0, &r);
  return err;
}

int sp_cli_bench_actors(int argc, char **argv) {
  bool json = false;
  const char *counts = "1,8,32", *model = NULL, *ctx = "512";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--counts") && i + 1 < argc) counts = argv[++i];
    else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = argv[++i];
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench actors: model %s: cannot read it\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = "cpu"};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  static sp_actor_t *actors[MAX_ACTORS];
  mem_row rows[16];
  int n_rows = 0, live = 0;
  for (const char *p = counts; !err && *p && n_rows < 16; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
    int want = atoi(p);
    if (want < 1 || want > MAX_ACTORS) continue;
    while (!err && live < want) err = start_actor(rt, model, ctx, live, &actors[live]), live++;
    if (err) break;
    rows[n_rows++] = (mem_row){want, sp_cli_proc_kb("/proc/self/status", "VmRSS") / 1024.0,
                               sp_cli_proc_kb("/proc/self/status", "RssAnon") / 1024.0,
                               sp_cli_proc_kb("/proc/self/status", "RssFile") / 1024.0,
                               sp_cli_proc_kb("/proc/self/smaps_rollup", "Pss") / 1024.0};
  }
  for (int i = 0; i < live; i++) sp_actor_free(actors[i]);
  sp_runtime_free(rt);
  if (err) {
    fprintf(stderr, "samepage bench actors: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  double per_actor = n_rows > 1 ? (rows[n_rows - 1].anon_mb - rows[0].anon_mb) / (rows[n_rows - 1].actors - rows[0].actors) : 0;
  if (json) {
    printf("{\"bench\": \"actors\", \"ctx\": %s, \"per_actor_anon_mib\": %.2f, \"rows\": [", ctx, per_actor);
    for (int i = 0; i < n_rows; i++)
      printf("%s{\"actors\": %d, \"rss_mib\": %.1f, \"rss_anon_mib\": %.1f, \"rss_file_mib\": %.1f, \"pss_mib\": %.1f}",
             i ? ", " : "", rows[i].actors, rows[i].rss_mb, rows[i].anon_mb, rows[i].file_mb, rows[i].pss_mb);
    printf("]}\n");
  } else {
    printf("samepage bench actors (one model file, --ctx %s, MiB)\n", ctx);
    printf("  %7s %10s %10s %10s %10s\n", "actors", "VmRSS", "RssAnon", "RssFile", "PSS");
    for (int i = 0; i < n_rows; i++)
      printf("  %7d %10.1f %10.1f %10.1f %10.1f\n", rows[i].actors, rows[i].rss_mb, rows[i].anon_mb, rows[i].file_mb, rows[i].pss_mb);
    printf("  each additional actor: %.2f MiB of private memory\n", per_actor);
  }
  return 0;
}
