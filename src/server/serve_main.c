/*
 * serve_main.c: `samepage serve`, an OpenAI-compatible HTTP server whose
 * conversations are LLM actors (src/server/README.md). Options, start-up
 * (runtime, the scratch actor that tokenizes requests, the sessions on
 * disk, the HTTP daemon), and a clean stop on SIGINT or SIGTERM: every
 * finished turn is already on disk, so stopping only frees.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/engine.h"
#include "server/http.h"
#include "server/session.h"
#include "server/spares.h"
#include "server/store.h"
#include "server/template.h"
#include "server/tenant.h"

int srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...) {
  e->status = status, e->type = type, e->code = code;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return status;
}

static void serve_usage(FILE *out) {
  fprintf(out,
          "usage: samepage serve [options]\n"
          "  -m, --model FILE|NAME  GGUF model or known name (default: smollm2, as `samepage run`)\n"
          "  --host ADDR            IPv4 address to listen on (default 127.0.0.1)\n"
          "  --port N               TCP port (default 8080; 0: any free port, printed)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --isolation none|process  the backend in a worker process (default none)\n"
          "  --sessions DIR         keep every conversation on disk there, restored at start\n"
          "                         (default: none, conversations live in memory only)\n"
          "  --max-live N           conversations kept live; past it the least recently used\n"
          "                         goes to disk (default 8)\n"
          "  --max-memory BYTES     bound on the memory of live conversations (K, M, G; each\n"
          "                         counted as its snapshot's size): past it the least recently\n"
          "                         used goes to disk (default: none; needs --sessions)\n"
          "  --max-templates N      shared system prompts kept per tenant, each prefilled once and\n"
          "                         restored by new conversations that start with it (default 8;\n"
          "                         0: none; needs --sessions, under DIR/templates/TENANT/)\n"
          "  --ctx N                context length of each conversation (default 4096)\n"
          "  --spare-actors N       fresh actors made ahead in the background, so a new\n"
          "                         conversation does not wait while one is made (default 2 on\n"
          "                         a GPU, 0 on the CPU; they count against --max-memory)\n"
          "  --batch-window-us N    conversations decoding at once share one read of the weights:\n"
          "                         lists submitted within N microseconds run as one batch, each\n"
          "                         with the bits it gets alone (default 2000; 0: off; CPU backend,\n"
          "                         --isolation none: docs/BATCHING.md)\n"
          "  --max-body BYTES       request body limit (default 1M)\n"
          "  --api-keys FILE        lines \"KEY TENANT\": requests need Authorization: Bearer KEY,\n"
          "                         and each tenant sees only its own sessions (default: none,\n"
          "                         one tenant \"default\", loopback addresses only)\n"
          "  --max-concurrent-per-tenant N  completions in flight per tenant before 429 (default 16)\n"
          "  --max-import BYTES     POST /v1/sessions (snapshot) and .../kv.safetensors limit (default 2G)\n"
          "  --client-timeout S     close a connection silent for S seconds (default 30)\n"
          "  --header-timeout S     close a connection whose request headers take longer than\n"
          "                         S seconds, however slowly they trickle in (default 20)\n"
          "  --max-connections N    connections at once (default 256)\n"
          "  --max-connections-per-ip N  connections at once from one address (default 64)\n"
          "  -h, --help             this message\n");
}

static const char *const serve_valued[] = {"-m", "--model", "--host", "--port", "--backend", "--isolation",
                                           "--sessions", "--max-live", "--ctx", "--max-body", "--api-keys",
                                           "--max-concurrent-per-tenant", "--max-import", "--client-timeout",
                                           "--header-timeout", "--max-connections", "--max-connections-per-ip",
                                           "--max-memory", "--max-templates", "--batch-window-us", "--spare-actors", NULL};

/* An integer option within [lo, hi]; 0 or SP_EXIT_USAGE. */
static int int_option(const char *opt, const char *val, long lo, long hi, int *out) {
  char *end;
  long v = strtol(val, &end, 10);
  if (end == val || *end || v < lo || v > hi) {
    fprintf(stderr, "samepage serve: %s: \"%s\" is not a number from %ld to %ld\n", opt, val, lo, hi);
    return SP_EXIT_USAGE;
  }
  *out = (int)v;
  return 0;
}

/* A size option (K, M, G suffixes) within [lo, hi]; 0 or SP_EXIT_USAGE. */
static int size_option(const char *opt, const char *val, uint64_t lo, uint64_t hi, size_t *out) {
  uint64_t n;
  if (sp_cli_parse_size(val, &n) || n < lo || n > hi || n > SIZE_MAX) {
    fprintf(stderr, "samepage serve: %s: \"%s\" is not a size from %llu to %llu bytes\n", opt, val,
            (unsigned long long)lo, (unsigned long long)hi);
    return SP_EXIT_USAGE;
  }
  *out = (size_t)n;
  return 0;
}

static int u64_option(const char *opt, const char *val, uint64_t *out) {
  size_t n = 0;
  int rc = size_option(opt, val, 1 << 20, 1ull << 50, &n);
  *out = n;
  return rc;
}

static int set_option(srv_config *c, const char **isolation, const char *opt, const char *val) {
  if (!strcmp(opt, "-m") || !strcmp(opt, "--model")) c->model = val;
  else if (!strcmp(opt, "--host")) c->host = val;
  else if (!strcmp(opt, "--backend")) c->backend = val;
  else if (!strcmp(opt, "--isolation")) *isolation = val;
  else if (!strcmp(opt, "--sessions")) c->sessions_dir = val;
  else if (!strcmp(opt, "--port")) return int_option(opt, val, 0, 65535, &c->port);
  else if (!strcmp(opt, "--max-live")) return int_option(opt, val, 1, 4096, &c->max_live);
  else if (!strcmp(opt, "--spare-actors")) return int_option(opt, val, 0, 64, &c->spare_actors);
  else if (!strcmp(opt, "--max-templates")) return int_option(opt, val, 0, 4096, &c->max_templates);
  else if (!strcmp(opt, "--batch-window-us")) return int_option(opt, val, 0, 1000000, &c->batch_window_us);
  else if (!strcmp(opt, "--ctx")) return int_option(opt, val, 64, 1 << 20, &c->ctx);
  else if (!strcmp(opt, "--api-keys")) c->api_keys = val;
  else if (!strcmp(opt, "--max-concurrent-per-tenant")) return int_option(opt, val, 1, 4096, &c->max_per_tenant);
  else if (!strcmp(opt, "--max-body")) return size_option(opt, val, 1024, 1ull << 30, &c->max_body);
  else if (!strcmp(opt, "--max-import")) return size_option(opt, val, 1024, 1ull << 40, &c->max_import);
  else if (!strcmp(opt, "--max-memory")) return u64_option(opt, val, &c->max_memory);
  else if (!strcmp(opt, "--client-timeout")) return int_option(opt, val, 1, 3600, &c->client_timeout);
  else if (!strcmp(opt, "--header-timeout")) return int_option(opt, val, 1, 3600, &c->header_timeout);
  else if (!strcmp(opt, "--max-connections")) return int_option(opt, val, 1, 16384, &c->max_connections);
  else if (!strcmp(opt, "--max-connections-per-ip")) return int_option(opt, val, 1, 16384, &c->max_per_ip);
  return 0;
}

/* The id /v1/models lists: the file's name without ".gguf". */
static void model_id(srv_config *c) {
  const char *base = strrchr(c->model, '/');
  snprintf(c->model_id, sizeof c->model_id, "%s", base ? base + 1 : c->model);
  size_t n = strlen(c->model_id);
  if (n > 5 && !strcmp(c->model_id + n - 5, ".gguf")) c->model_id[n - 5] = '\0';
}

/* Whether host is an IPv4 loopback address (a bad address is left to
 * srv_http_start to report). */
static bool loopback(const char *host) {
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) return true;
  return (ntohl(a.s_addr) >> 24) == 127;
}

/* Returns 0, -1 after --help, or an exit code. */
static int parse_args(int argc, char **argv, srv_config *c, const char **isolation) {
  *c = (srv_config){.host = "127.0.0.1", .port = 8080, .backend = "auto", .max_live = 8, .max_templates = 8, .batch_window_us = 2000, .spare_actors = -1,
                    .ctx = 4096, .max_body = 1 << 20, .max_per_tenant = 16, .max_import = (size_t)1 << 31,
                    .client_timeout = 30, .header_timeout = 20, .max_connections = 256, .max_per_ip = 64};
  for (int i = 1; i < argc; i++) {
    const char *val;
    int rc = sp_cli_next_option("serve", argc, argv, &i, (const char *const[]){NULL}, serve_valued, serve_usage, &val);
    if (rc) return rc;
    if ((rc = set_option(c, isolation, argv[i - 1], val))) return rc;
  }
  if (c->max_memory && !c->sessions_dir) {
    fprintf(stderr, "samepage serve: --max-memory needs --sessions DIR (an evicted conversation waits there)\n");
    return SP_EXIT_USAGE;
  }
  if (!c->api_keys && !loopback(c->host)) {
    fprintf(stderr, "samepage serve: --host %s without --api-keys: without keys the server takes every request as "
                    "one tenant, so it listens on loopback (127.x.x.x) only; give --api-keys FILE to serve beyond\n",
            c->host);
    return SP_EXIT_USAGE;
  }
  const char *short_name = NULL;
  c->model = sp_cli_model_path(c->model ? c->model : sp_cli_default_model(), &short_name);
  if (access(c->model, R_OK)) {
    fprintf(stderr, "samepage serve: model %s: cannot read it (fetch it with scripts/fetch-model.sh %s)\n", c->model,
            short_name ? short_name : "");
    return SP_EXIT_RUNTIME;
  }
  model_id(c);
  return 0;
}

/* What a fresh actor counts against --max-memory: the size of the scratch
 * actor's snapshot, taken once (it holds only its own pages, as a new
 * conversation does); 0 or an exit code when not even one fits. */
static int measure_fresh(srv *s) {
  char path[4096];
  snprintf(path, sizeof path, "%s/fresh-%ld.probe", s->cfg.sessions_dir, (long)getpid());
  sp_snapshot_stats stats = {0};
  sp_error_t *err = sp_actor_snapshot(s->scratch, path, &(sp_snapshot_options){0}, &stats);
  unlink(path);
  if (err) {
    fprintf(stderr, "samepage serve: --max-memory: cannot measure an actor: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  s->fresh_bytes = stats.bytes;
  if (s->fresh_bytes > s->cfg.max_memory) {
    fprintf(stderr, "samepage serve: --max-memory %llu cannot hold one conversation (%llu bytes each)\n",
            (unsigned long long)s->cfg.max_memory, (unsigned long long)s->fresh_bytes);
    return SP_EXIT_USAGE;
  }
  fprintf(stderr, "samepage serve: --max-memory %llu bytes, a new conversation counts %llu\n",
          (unsigned long long)s->cfg.max_memory, (unsigned long long)s->fresh_bytes);
  return 0;
}

/* Runtime, scratch actor, stored sessions. 0 or an exit code. */
static int start(srv *s, const char *isolation) {
  sp_runtime_options ropts = {.backend = s->cfg.backend, .isolation = isolation, .knobs = sp_cli_knobs(),
                              .batch_window_us = (uint32_t)s->cfg.batch_window_us};
  if (srv_tenants_load(s)) return SP_EXIT_USAGE;
  sp_error_t *err = sp_runtime_new(&ropts, &s->rt);
  if (!err) err = srv_engine_actor(s, &s->scratch);
  if (!err) err = srv_engine_warm_up(s);
  if (err) {
    fprintf(stderr, "samepage serve: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  if (srv_store_load(s)) return SP_EXIT_RUNTIME;
  srv_templates_load(s);
  int rc = s->cfg.max_memory ? measure_fresh(s) : 0;
  /* after measure_fresh: the pool's room under --max-memory needs fresh_bytes. By default only on
   * a GPU: there making an actor (registrations, device mirrors) is what a new conversation
   * waited for; on the CPU a new actor costs little and its prefill is the wait, which a
   * spare made at the same time only slows (2 cores, BENCHMARKS.md) */
  if (s->cfg.spare_actors < 0) s->cfg.spare_actors = strcmp(sp_runtime_backend_name(s->rt), "cpu") ? 2 : 0;
  return rc ? rc : srv_spares_start(s) ? SP_EXIT_RUNTIME : 0;
}

static void stop(srv *s) {
  srv_spares_stop(s);
  srv_sessions_free_all(s);
  srv_templates_free(s);
  srv_tenants_free(s);
  sp_actor_free(s->scratch);
  sp_runtime_free(s->rt);
  srv_metrics_deinit(&s->metrics);
  pthread_mutex_destroy(&s->lock);
}

/* Blocks SIGINT and SIGTERM in every thread (the daemon's threads inherit
 * the mask) and waits for one here. */
static void wait_for_stop(const sigset_t *set) {
  int sig = 0;
  sigwait(set, &sig);
  fprintf(stderr, "samepage serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

int sp_cli_serve(int argc, char **argv) {
  static srv s; /* large, and the daemon's threads point into it */
  const char *isolation = NULL;
  int rc = parse_args(argc, argv, &s.cfg, &isolation);
  if (rc) return rc < 0 ? 0 : rc;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT), sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN); /* a client gone mid-reply is an error return, not a signal */
  signal(SIGXFSZ, SIG_IGN); /* a snapshot over the file size limit is a failed write (507), not a crash */
  pthread_mutex_init(&s.lock, NULL);
  srv_metrics_init(&s.metrics);
  if ((rc = start(&s, isolation))) { stop(&s); return rc; }
  int port = 0;
  struct MHD_Daemon *d = srv_http_start(&s, &port);
  if (!d) { stop(&s); return SP_EXIT_RUNTIME; }
  if (!s.cfg.api_keys)
    fprintf(stderr, "samepage serve: no --api-keys: no authentication, every request is tenant \"default\", "
                    "loopback only\n");
  else
    fprintf(stderr, "samepage serve: %zu API keys, %zu tenants (%s)\n", s.n_keys, s.n_tenants, s.cfg.api_keys);
  size_t live, stored;
  srv_session_counts(&s, &live, &stored);
  fprintf(stderr, "samepage serve: listening on http://%s:%d (model %s, backend %s, ctx %d, %s%s, %zu stored sessions)\n",
          s.cfg.host, port, s.cfg.model_id, sp_runtime_backend_name(s.rt), s.cfg.ctx,
          s.cfg.sessions_dir ? "sessions in " : "sessions in memory only", s.cfg.sessions_dir ? s.cfg.sessions_dir : "",
          stored);
  wait_for_stop(&set);
  /* Stops accepting; streams in flight are rolled back as their
   * connections close, other turns finish; finished turns are on disk. */
  srv_http_stop(d);
  stop(&s);
  return 0;
}
