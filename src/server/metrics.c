/* metrics.c: counters for GET /metrics (metrics.h). */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const endpoint_names[SRV_EP_COUNT] = {"health", "models", "chat_completions",
                                                         "completions", "metrics", "web", "sessions", "other"};
#define N_ERROR_KINDS 10
static const int error_statuses[N_ERROR_KINDS] = {400, 401, 404, 409, 413, 429, 500, 503, 507, 0};

/* From a fast CPU decode (a few ms a token) to a stalled one. */
const double srv_itl_bounds[SRV_ITL_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,   0.25,   0.5,   1,    2.5,   10};

void srv_metrics_init(srv_metrics *m) {
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->lock, NULL);
}

void srv_metrics_deinit(srv_metrics *m) { pthread_mutex_destroy(&m->lock); }

void srv_metrics_request(srv_metrics *m, srv_endpoint ep) {
  pthread_mutex_lock(&m->lock);
  m->requests[ep < SRV_EP_COUNT ? ep : SRV_EP_OTHER]++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_error(srv_metrics *m, int status) {
  size_t i = 0;
  while (i < N_ERROR_KINDS - 1 && error_statuses[i] != status) i++;
  pthread_mutex_lock(&m->lock);
  m->errors_by_status[i]++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_disconnect(srv_metrics *m) {
  pthread_mutex_lock(&m->lock);
  m->disconnects++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_turn(srv_metrics *m, uint64_t prompt, uint64_t prefilled, uint64_t completion) {
  pthread_mutex_lock(&m->lock);
  m->prompt_tokens += prompt, m->prefilled_tokens += prefilled, m->completion_tokens += completion;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_ttft(srv_metrics *m, double seconds) {
  pthread_mutex_lock(&m->lock);
  m->ttft_sum_s += seconds, m->ttft_count++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_itl(srv_metrics *m, double seconds) {
  pthread_mutex_lock(&m->lock);
  for (int i = 0; i < SRV_ITL_BUCKETS; i++)
    if (seconds <= srv_itl_bounds[i]) m->itl_buckets[i]++;
  m->itl_count++, m->itl_sum_s += seconds;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_eviction(srv_metrics *m) {
  pthread_mutex_lock(&m->lock);
  m->evictions++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_restore(srv_metrics *m) {
  pthread_mutex_lock(&m->lock);
  m->restores++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_snapshot(srv_metrics *m, double seconds) {
  pthread_mutex_lock(&m->lock);
  m->snapshots++, m->snapshot_sum_s += seconds;
  pthread_mutex_unlock(&m->lock);
}

/* A growing text buffer for the exposition. */
typedef struct text_buf {
  char *p;
  size_t len, cap;
  bool failed;
} text_buf;

static void add(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text_buf *b, const char *fmt, ...) {
  for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = true; return; }
    if (b->p && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
    size_t cap = (b->cap + (size_t)n + 1) * 2;
    char *grown = realloc(b->p, cap);
    if (!grown) { b->failed = true; return; }
    b->p = grown, b->cap = cap;
  }
}

static void add_counter(text_buf *b, const char *name, const char *help, uint64_t v) {
  add(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void add_requests(text_buf *b, const srv_metrics *m) {
  add(b, "# HELP samepage_requests_total HTTP requests by endpoint\n# TYPE samepage_requests_total counter\n");
  for (int i = 0; i < SRV_EP_COUNT; i++)
    add(b, "samepage_requests_total{endpoint=\"%s\"} %llu\n", endpoint_names[i], (unsigned long long)m->requests[i]);
  add(b, "# HELP samepage_errors_total error responses by kind\n# TYPE samepage_errors_total counter\n");
  static const char *const kinds[N_ERROR_KINDS] = {"bad_request",  "unauthorized", "not_found",
                                                  "conflict",     "too_large",    "rate_limited",
                                                  "server_error", "unavailable",  "insufficient_storage",
                                                  "other"};
  for (int i = 0; i < N_ERROR_KINDS; i++)
    add(b, "samepage_errors_total{kind=\"%s\"} %llu\n", kinds[i], (unsigned long long)m->errors_by_status[i]);
  add(b, "samepage_errors_total{kind=\"client_disconnect\"} %llu\n", (unsigned long long)m->disconnects);
}

/* The inter-token latency histogram (Prometheus: cumulative buckets). */
static void add_itl(text_buf *b, const srv_metrics *m) {
  add(b, "# HELP samepage_inter_token_latency_seconds time between two consecutive tokens of a turn\n"
         "# TYPE samepage_inter_token_latency_seconds histogram\n");
  for (int i = 0; i < SRV_ITL_BUCKETS; i++)
    add(b, "samepage_inter_token_latency_seconds_bucket{le=\"%g\"} %llu\n", srv_itl_bounds[i],
        (unsigned long long)m->itl_buckets[i]);
  add(b, "samepage_inter_token_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
         "samepage_inter_token_latency_seconds_sum %.6f\nsamepage_inter_token_latency_seconds_count %llu\n",
      (unsigned long long)m->itl_count, m->itl_sum_s, (unsigned long long)m->itl_count);
}

void srv_metrics_template(srv_metrics *m, bool hit, uint64_t saved) {
  pthread_mutex_lock(&m->lock);
  if (hit) m->template_hits++, m->template_saved += saved;
  else m->template_misses++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_template_eviction(srv_metrics *m) {
  pthread_mutex_lock(&m->lock);
  m->template_evictions++;
  pthread_mutex_unlock(&m->lock);
}

static void add_templates(text_buf *b, const srv_metrics *m) {
  add_counter(b, "samepage_template_hits_total", "new conversations started from their tenant's system-prompt "
              "template", m->template_hits);
  add_counter(b, "samepage_template_misses_total", "new conversations with a system prompt their tenant had no "
              "template of", m->template_misses);
  add_counter(b, "samepage_template_saved_tokens_total", "prompt tokens not prefilled thanks to a template",
              m->template_saved);
  add_counter(b, "samepage_template_evictions_total", "templates deleted past --max-templates", m->template_evictions);
}

char *srv_metrics_text(srv_metrics *m, const srv_gauges *g) {
  text_buf b = {0};
  pthread_mutex_lock(&m->lock);
  add_requests(&b, m);
  add_counter(&b, "samepage_prompt_tokens_total", "prompt tokens of finished turns", m->prompt_tokens);
  add_counter(&b, "samepage_prefilled_tokens_total", "prompt tokens that had to be prefilled (the rest were cached)",
              m->prefilled_tokens);
  add_counter(&b, "samepage_completion_tokens_total", "tokens generated", m->completion_tokens);
  add(&b, "# HELP samepage_time_to_first_token_seconds from request to first token\n"
          "# TYPE samepage_time_to_first_token_seconds summary\n"
          "samepage_time_to_first_token_seconds_sum %.6f\nsamepage_time_to_first_token_seconds_count %llu\n",
      m->ttft_sum_s, (unsigned long long)m->ttft_count);
  add_itl(&b, m);
  add_counter(&b, "samepage_evictions_total", "live sessions evicted to disk", m->evictions);
  add_counter(&b, "samepage_restores_total", "sessions restored from disk", m->restores);
  add(&b, "# HELP samepage_snapshot_seconds session snapshots written\n# TYPE samepage_snapshot_seconds summary\n"
          "samepage_snapshot_seconds_sum %.6f\nsamepage_snapshot_seconds_count %llu\n",
      m->snapshot_sum_s, (unsigned long long)m->snapshots);
  add_templates(&b, m);
  pthread_mutex_unlock(&m->lock);
  add(&b, "# HELP samepage_templates system-prompt templates held\n# TYPE samepage_templates gauge\n"
          "samepage_templates %zu\n", g->templates);
  add(&b, "# HELP samepage_spare_actors fresh actors ready for new conversations (--spare-actors)\n"
          "# TYPE samepage_spare_actors gauge\nsamepage_spare_actors %zu\n", g->spares);
  add_counter(&b, "samepage_spare_actors_made_total", "spare actors made (in the background)", g->spares_made);
  add(&b, "# HELP samepage_sessions sessions by state\n# TYPE samepage_sessions gauge\n"
          "samepage_sessions{state=\"live\"} %zu\nsamepage_sessions{state=\"stored\"} %zu\n",
      g->live, g->stored);
  add(&b, "# HELP samepage_live_actor_bytes what the live conversations count against --max-memory (each its "
          "snapshot's size)\n# TYPE samepage_live_actor_bytes gauge\nsamepage_live_actor_bytes %llu\n"
          "# HELP samepage_max_memory_bytes --max-memory (0: no budget)\n# TYPE samepage_max_memory_bytes gauge\n"
          "samepage_max_memory_bytes %llu\n",
      (unsigned long long)g->live_bytes, (unsigned long long)g->max_memory);
  add_counter(&b, "samepage_header_timeouts_total", "connections closed because their headers took longer than "
              "--header-timeout", g->header_timeouts);
  add_counter(&b, "samepage_batch_lists_total", "command lists that went through cross-actor batching",
              g->runtime.batch_lists);
  add_counter(&b, "samepage_batched_lists_total", "of those, lists that ran in a batch of two or more",
              g->runtime.batched_lists);
  add_counter(&b, "samepage_batches_total", "batches of two or more lists run", g->runtime.batches);
  if (b.failed) { free(b.p); return NULL; }
  return b.p;
}
