/*
 * cli_bench_actors.c: `samepage bench actors [--counts 1,8,32] [--ctx N]
 * [--decode-tokens T] [--batch-window-us W] [--model F]
 * [--backend cpu|cuda|vulkan|auto] [--json]`: many actors, one model.
 *
 * One process hosts N LLM actors, each with its own conversation (a short
 * prompt and a few tokens). Every actor maps the same model file privately,
 * so the weights are one copy in the OS page cache; what an actor adds is
 * its own anonymous memory: KV cache, heap, activations. Reported per N:
 * VmRSS (which counts a shared page once per mapping), RssAnon (private
 * memory), and PSS (shared pages divided among their mappings), from
 * /proc/self/status and /proc/self/smaps_rollup.
 *
 * With `--backend cuda` each row also has the device side: device memory in
 * use (cudaMemGetInfo, less what was in use before the first actor), the
 * resident weights held (one copy per model file, shared among the actors:
 * docs/CUDA.md), the bytes sharing saved, the freezes served by sharing,
 * and the device-local mirrors (activations, KV cache: one per actor).
 *
 * Then, at each count, every live actor decodes T more tokens at once, one
 * thread each, with cross-actor batching as `samepage serve` runs it
 * (window W, default 2000 us; 0: off; docs/BATCHING.md): the row adds the
 * aggregate tokens/s and the share of lists that ran batched.
 *
 * Under process isolation (SP_ISOLATION=process) each actor's backend runs in
 * a worker process, and guest memory is shared memory (RssShmem, counted in
 * this process, which maps all of it). Rows then add the workers' memory
 * (summed over this process's children), and an actor's cost is its share
 * of RssAnon + RssShmem here plus its worker's RssAnon.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/error.h"
#include "samepage.h"

#define MAX_ACTORS 256

typedef struct mem_row {
  int actors;
  double rss_mb, anon_mb, file_mb, pss_mb, shmem_mb;
  int workers;                             /* child processes (process isolation) */
  double workers_rss_mb, workers_anon_mb, workers_pss_mb;
  double dev_used_mb, resident_mb, shared_mb, local_mb; /* device side, when the backend has one */
  uint64_t shared_hits;
  double decode_tok_s;      /* all live actors decoding at once (--decode-tokens) */
  double batched_pct;       /* of their lists, the share that ran batched */
} mem_row;

#define MIB(bytes) ((double)(bytes) / 1048576.0)

/* The parent process id in /proc/<pid>/stat, or -1. */
static long parent_of(const char *pid) {
  char path[300], line[512];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  long ppid = -1;
  if (f && fgets(line, sizeof line, f)) {
    const char *close_paren = strrchr(line, ')'); /* the command name may hold spaces */
    if (close_paren) sscanf(close_paren + 1, " %*c %ld", &ppid);
  }
  if (f) fclose(f);
  return ppid;
}

/* Adds the memory of this process's children (workers) to r. */
static void add_workers(mem_row *r) {
  DIR *proc = opendir("/proc");
  struct dirent *e;
  char path[300];
  while (proc && (e = readdir(proc))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || parent_of(e->d_name) != (long)getpid()) continue;
    snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
    r->workers++;
    r->workers_rss_mb += sp_cli_proc_kb(path, "VmRSS") / 1024.0;
    r->workers_anon_mb += sp_cli_proc_kb(path, "RssAnon") / 1024.0;
    snprintf(path, sizeof path, "/proc/%s/smaps_rollup", e->d_name);
    r->workers_pss_mb += sp_cli_proc_kb(path, "Pss") / 1024.0;
  }
  if (proc) closedir(proc);
}

/* What the actors cost the host: private memory here, guest memory shared
 * with workers, and the workers' private memory. */
static double host_cost_mb(const mem_row *r) { return r->anon_mb + r->shmem_mb + r->workers_anon_mb; }

/* Host and device memory now, with device_base the device memory in use
 * before the first actor. */
static mem_row measure_row(sp_runtime_t *rt, int actors, uint64_t device_base) {
  mem_row r = {.actors = actors,
               .rss_mb = sp_cli_proc_kb("/proc/self/status", "VmRSS") / 1024.0,
               .anon_mb = sp_cli_proc_kb("/proc/self/status", "RssAnon") / 1024.0,
               .file_mb = sp_cli_proc_kb("/proc/self/status", "RssFile") / 1024.0,
               .pss_mb = sp_cli_proc_kb("/proc/self/smaps_rollup", "Pss") / 1024.0,
               .shmem_mb = sp_cli_proc_kb("/proc/self/status", "RssShmem") / 1024.0};
  add_workers(&r);
  struct sp_runtime_stats rs = {.size = sizeof rs};
  sp_error_free(sp_runtime_stats(rt, &rs)); /* fails only on a NULL rt or a wrong size */
  if (rs.device_known) r.dev_used_mb = MIB(rs.device_used_bytes - device_base);
  r.shared_hits = rs.shared_hits;
  r.resident_mb = MIB(rs.resident_bytes), r.shared_mb = MIB(rs.shared_bytes), r.local_mb = MIB(rs.local_bytes);
  return r;
}

/* What the run was: backend, isolation, context, decode tokens, window. */
typedef struct actors_setup {
  const char *backend, *isolation, *ctx;
  long decode, window_us;
} actors_setup;

static void print_json(const actors_setup *su, bool device, double per_actor, double per_actor_dev,
                       const mem_row *rows, int n_rows) {
  printf("{\"bench\": \"actors\", \"backend\": \"%s\", \"isolation\": \"%s\", \"ctx\": %s, \"decode_tokens\": %ld, "
         "\"batch_window_us\": %ld, \"per_actor_anon_mib\": %.2f",
         su->backend, su->isolation, su->ctx, su->decode, su->window_us, per_actor);
  if (device) printf(", \"per_actor_device_mib\": %.2f", per_actor_dev);
  printf(", \"rows\": [");
  for (int i = 0; i < n_rows; i++) {
    const mem_row *r = &rows[i];
    printf("%s{\"actors\": %d, \"rss_mib\": %.1f, \"rss_anon_mib\": %.1f, \"rss_file_mib\": %.1f, \"pss_mib\": %.1f, "
           "\"rss_shmem_mib\": %.1f, \"workers\": %d, \"workers_rss_mib\": %.1f, \"workers_anon_mib\": %.1f, "
           "\"workers_pss_mib\": %.1f",
           i ? ", " : "", r->actors, r->rss_mb, r->anon_mb, r->file_mb, r->pss_mb, r->shmem_mb, r->workers,
           r->workers_rss_mb, r->workers_anon_mb, r->workers_pss_mb);
    if (su->decode) printf(", \"decode_tok_s\": %.1f, \"batched_pct\": %.1f", r->decode_tok_s, r->batched_pct);
    if (device)
      printf(", \"device_used_mib\": %.1f, \"resident_mib\": %.1f, \"shared_mib\": %.1f, \"shared_hits\": %llu, "
             "\"device_local_mib\": %.1f", r->dev_used_mb, r->resident_mb, r->shared_mb,
             (unsigned long long)r->shared_hits, r->local_mb);
    printf("}");
  }
  printf("]}\n");
}

static void print_table(const actors_setup *su, bool device, double per_actor, double per_actor_dev,
                        const mem_row *rows, int n_rows) {
  printf("samepage bench actors (backend %s, isolation %s, one model file, --ctx %s, MiB", su->backend, su->isolation,
         su->ctx);
  if (su->decode) printf("; all decoding %ld tokens at once, batch window %ld us", su->decode, su->window_us);
  printf(")\n");
  printf("  %7s %10s %10s %10s %10s %10s %8s %12s", "actors", "VmRSS", "RssAnon", "RssFile", "PSS", "RssShmem", "workers",
         "worker anon");
  if (su->decode) printf(" %11s %8s", "decode tok/s", "batched");
  if (device) printf(" %11s %9s %9s %6s %9s", "device used", "resident", "shared", "hits", "dev-local");
  printf("\n");
  for (int i = 0; i < n_rows; i++) {
    const mem_row *r = &rows[i];
    printf("  %7d %10.1f %10.1f %10.1f %10.1f %10.1f %8d %12.1f", r->actors, r->rss_mb, r->anon_mb, r->file_mb, r->pss_mb,
           r->shmem_mb, r->workers, r->workers_anon_mb);
    if (su->decode) printf(" %12.1f %7.0f%%", r->decode_tok_s, r->batched_pct);
    if (device)
      printf(" %11.1f %9.1f %9.1f %6llu %9.1f", r->dev_used_mb, r->resident_mb, r->shared_mb,
             (unsigned long long)r->shared_hits, r->local_mb);
    printf("\n");
  }
  printf("  each additional actor: %.2f MiB of host memory (RssAnon + RssShmem + workers' RssAnon)", per_actor);
  if (device) printf(", %.2f MiB of device memory", per_actor_dev);
  printf("\n");
}

/* ---- every live actor decoding at once ---- */

/* Every decoder starts when the gate opens, so that they run together. */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t open_cv;
  bool open;
} gate;

typedef struct decoder {
  sp_actor_t *actor;
  int tokens;
  gate *start;
  sp_error_t *err;
} decoder;

static void *decode_tokens(void *arg) {
  decoder *d = arg;
  pthread_mutex_lock(&d->start->mu);
  while (!d->start->open) pthread_cond_wait(&d->start->open_cv, &d->start->mu);
  pthread_mutex_unlock(&d->start->mu);
  int64_t r = 0;
  for (int t = 0; t < d->tokens && !d->err; t++) d->err = sp_actor_call(d->actor, "llm_step", NULL, 0, &r);
  return NULL;
}

/* The n actors decode `tokens` each, together: aggregate tokens/s into r,
 * with the share of their lists the batcher ran batched. */
static sp_error_t *decode_together(sp_runtime_t *rt, sp_actor_t **actors, int n, int tokens, mem_row *r) {
  static decoder ds[MAX_ACTORS];
  static pthread_t th[MAX_ACTORS];
  gate start = {.mu = PTHREAD_MUTEX_INITIALIZER, .open_cv = PTHREAD_COND_INITIALIZER};
  struct sp_runtime_stats before = {.size = sizeof before}, after = {.size = sizeof after};
  sp_error_free(sp_runtime_stats(rt, &before));
  int started = 0;
  for (int i = 0; i < n; i++, started++) {
    ds[i] = (decoder){.actor = actors[i], .tokens = tokens, .start = &start};
    if (pthread_create(&th[i], NULL, decode_tokens, &ds[i])) break;
  }
  sp_error_t *err = started < n ? sp_error_new("cannot start %d decoding threads", n) : NULL;
  pthread_mutex_lock(&start.mu);
  for (int i = 0; i < started && err; i++) ds[i].tokens = 0; /* not all could start: none decodes */
  start.open = true;
  pthread_cond_broadcast(&start.open_cv);
  pthread_mutex_unlock(&start.mu);
  double t0 = sp_now_ms();
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  double ms = sp_now_ms() - t0;
  for (int i = 0; i < started; i++) {
    if (ds[i].err && !err) err = sp_error_wrap(ds[i].err, "actor %d decoding", i);
    else sp_error_free(ds[i].err);
  }
  sp_error_free(sp_runtime_stats(rt, &after));
  uint64_t lists = after.batch_lists - before.batch_lists, batched = after.batched_lists - before.batched_lists;
  r->decode_tok_s = ms > 0 ? (double)n * tokens * 1e3 / ms : 0;
  r->batched_pct = lists ? 100.0 * (double)batched / (double)lists : 0;
  return err;
}

static sp_error_t *start_actor(sp_runtime_t *rt, const char *model, const char *ctx, int i, sp_actor_t **out) {
  sp_error_t *err = sp_cli_llm_actor(rt, model, atoi(ctx), 0, out);
  if (err) err = sp_error_wrap(err, "actor %d", i);
  int64_t r = 0, arg, addr;
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

static void actors_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench actors [options]\n"
          "  --counts N,N,...       actors alive at each measurement (default 1,8,32; each 1..%d)\n"
          "  --ctx N                each actor's context length (default 512)\n"
          "  --model FILE           GGUF model (default: SmolLM2-135M-Instruct Q4_1)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default cpu)\n"
          "  --decode-tokens N      then every live actor decodes N tokens at once (default 16; 0: memory only)\n"
          "  --batch-window-us N    cross-actor batching window while they do (default 2000; 0: off)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n"
          "Process isolation: SP_ISOLATION=process.\n", MAX_ACTORS);
}

static const char *const actors_flags[] = {"--json", NULL};
static const char *const actors_valued[] = {"--counts", "--model", "--ctx", "--backend", "--decode-tokens",
                                            "--batch-window-us", NULL};

int sp_cli_bench_actors(int argc, char **argv) {
  bool json = false;
  const char *counts = "1,8,32", *model = NULL, *ctx = "512", *backend = "cpu";
  long decode = 16, window_us = 2000;
  char *end = NULL;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench actors", argc, argv, &i, actors_flags, actors_valued, actors_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(opt, "--json")) json = true;
    else if (!strcmp(opt, "--counts")) counts = val;
    else if (!strcmp(opt, "--model")) model = val;
    else if (!strcmp(opt, "--ctx")) ctx = val;
    else if (!strcmp(opt, "--backend")) backend = val;
    else if (!strcmp(opt, "--decode-tokens") || !strcmp(opt, "--batch-window-us")) {
      long v = strtol(val, &end, 10), top = opt[2] == 'd' ? 4096 : 1000000;
      if (!*val || *end || v < 0 || v > top) {
        fprintf(stderr, "samepage bench actors: %s: \"%s\" is not a number in 0..%ld\n", opt, val, top);
        return SP_EXIT_USAGE;
      }
      *(opt[2] == 'd' ? &decode : &window_us) = v;
    }
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench actors: model %s: cannot read it\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = backend, .knobs = sp_cli_knobs(), .batch_window_us = (uint32_t)window_us};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  struct sp_runtime_stats base = {.size = sizeof base};
  if (!err) err = sp_runtime_stats(rt, &base);
  uint64_t device_base = base.device_used_bytes;
  bool device = !err && base.device_known;
  static sp_actor_t *actors[MAX_ACTORS];
  mem_row rows[16];
  int n_rows = 0, live = 0;
  for (const char *p = counts; !err && *p && n_rows < 16; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
    int want = atoi(p);
    if (want < 1 || want > MAX_ACTORS) continue;
    while (!err && live < want) err = start_actor(rt, model, ctx, live, &actors[live]), live++;
    if (err) break;
    rows[n_rows] = measure_row(rt, want, device_base);
    if (decode) err = decode_together(rt, actors, live, (int)decode, &rows[n_rows]);
    n_rows++;
  }
  for (int i = 0; i < live; i++) sp_actor_free(actors[i]);
  if (err) {
    fprintf(stderr, "samepage bench actors: %s\n", sp_error_message(err));
    sp_error_free(err);
    sp_runtime_free(rt);
    return SP_EXIT_RUNTIME;
  }
  const char *backend_name = sp_runtime_backend_name(rt);
  int span = n_rows > 1 ? rows[n_rows - 1].actors - rows[0].actors : 0;
  double per_actor = span ? (host_cost_mb(&rows[n_rows - 1]) - host_cost_mb(&rows[0])) / span : 0;
  double per_actor_dev = span ? (rows[n_rows - 1].dev_used_mb - rows[0].dev_used_mb) / span : 0;
  actors_setup su = {backend_name, sp_runtime_isolation(rt), ctx, decode, window_us};
  if (json) print_json(&su, device, per_actor, per_actor_dev, rows, n_rows);
  else print_table(&su, device, per_actor, per_actor_dev, rows, n_rows);
  sp_runtime_free(rt);
  return 0;
}
