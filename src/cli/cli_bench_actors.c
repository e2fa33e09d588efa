/*
 * cli_bench_actors.c: `samepage bench actors [--counts 1,8,32] [--ctx N]
 * [--model F] [--backend cpu|cuda|auto] [--json]`: many actors, one model.
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
 * Under process isolation (SP_ISOLATION=process) each actor's backend runs in
 * a worker process, and guest memory is shared memory (RssShmem, counted in
 * this process, which maps all of it). Rows then add the workers' memory
 * (summed over this process's children), and an actor's cost is its share
 * of RssAnon + RssShmem here plus its worker's RssAnon.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
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

static void print_json(const char *backend, const char *isolation, const char *ctx, bool device, double per_actor,
                       double per_actor_dev, const mem_row *rows, int n_rows) {
  printf("{\"bench\": \"actors\", \"backend\": \"%s\", \"isolation\": \"%s\", \"ctx\": %s, \"per_actor_anon_mib\": %.2f",
         backend, isolation, ctx, per_actor);
  if (device) printf(", \"per_actor_device_mib\": %.2f", per_actor_dev);
  printf(", \"rows\": [");
  for (int i = 0; i < n_rows; i++) {
    const mem_row *r = &rows[i];
    printf("%s{\"actors\": %d, \"rss_mib\": %.1f, \"rss_anon_mib\": %.1f, \"rss_file_mib\": %.1f, \"pss_mib\": %.1f, "
           "\"rss_shmem_mib\": %.1f, \"workers\": %d, \"workers_rss_mib\": %.1f, \"workers_anon_mib\": %.1f, "
           "\"workers_pss_mib\": %.1f",
           i ? ", " : "", r->actors, r->rss_mb, r->anon_mb, r->file_mb, r->pss_mb, r->shmem_mb, r->workers,
           r->workers_rss_mb, r->workers_anon_mb, r->workers_pss_mb);
    if (device)
      printf(", \"device_used_mib\": %.1f, \"resident_mib\": %.1f, \"shared_mib\": %.1f, \"shared_hits\": %llu, "
             "\"device_local_mib\": %.1f", r->dev_used_mb, r->resident_mb, r->shared_mb,
             (unsigned long long)r->shared_hits, r->local_mb);
    printf("}");
  }
  printf("]}\n");
}

static void print_table(const char *backend, const char *isolation, const char *ctx, bool device, double per_actor,
                        double per_actor_dev, const mem_row *rows, int n_rows) {
  printf("samepage bench actors (backend %s, isolation %s, one model file, --ctx %s, MiB)\n", backend, isolation, ctx);
  printf("  %7s %10s %10s %10s %10s %10s %8s %12s", "actors", "VmRSS", "RssAnon", "RssFile", "PSS", "RssShmem", "workers",
         "worker anon");
  if (device) printf(" %11s %9s %9s %6s %9s", "device used", "resident", "shared", "hits", "dev-local");
  printf("\n");
  for (int i = 0; i < n_rows; i++) {
    const mem_row *r = &rows[i];
    printf("  %7d %10.1f %10.1f %10.1f %10.1f %10.1f %8d %12.1f", r->actors, r->rss_mb, r->anon_mb, r->file_mb, r->pss_mb,
           r->shmem_mb, r->workers, r->workers_anon_mb);
    if (device)
      printf(" %11.1f %9.1f %9.1f %6llu %9.1f", r->dev_used_mb, r->resident_mb, r->shared_mb,
             (unsigned long long)r->shared_hits, r->local_mb);
    printf("\n");
  }
  printf("  each additional actor: %.2f MiB of host memory (RssAnon + RssShmem + workers' RssAnon)", per_actor);
  if (device) printf(", %.2f MiB of device memory", per_actor_dev);
  printf("\n");
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
          "  --backend cpu|cuda|auto  compute backend (default cpu)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n"
          "Process isolation: SP_ISOLATION=process.\n", MAX_ACTORS);
}

static const char *const actors_flags[] = {"--json", NULL};
static const char *const actors_valued[] = {"--counts", "--model", "--ctx", "--backend", NULL};

int sp_cli_bench_actors(int argc, char **argv) {
  bool json = false;
  const char *counts = "1,8,32", *model = NULL, *ctx = "512", *backend = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench actors", argc, argv, &i, actors_flags, actors_valued, actors_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(opt, "--json")) json = true;
    else if (!strcmp(opt, "--counts")) counts = val;
    else if (!strcmp(opt, "--model")) model = val;
    else if (!strcmp(opt, "--ctx")) ctx = val;
    else if (!strcmp(opt, "--backend")) backend = val;
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench actors: model %s: cannot read it\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = backend, .knobs = sp_cli_knobs()};
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
    rows[n_rows++] = measure_row(rt, want, device_base);
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
  const char *isolation = sp_runtime_isolation(rt);
  if (json) print_json(backend_name, isolation, ctx, device, per_actor, per_actor_dev, rows, n_rows);
  else print_table(backend_name, isolation, ctx, device, per_actor, per_actor_dev, rows, n_rows);
  sp_runtime_free(rt);
  return 0;
}
