/*
 * metrics.h: the server's counters, served as Prometheus text by
 * GET /metrics. Every update takes the counters' own mutex, never the
 * server's: a scrape must not wait behind a prefill.
 */
#ifndef SP_SERVER_METRICS_H
#define SP_SERVER_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samepage.h"

typedef enum srv_endpoint {
  SRV_EP_HEALTH, SRV_EP_MODELS, SRV_EP_CHAT, SRV_EP_COMPLETIONS, SRV_EP_METRICS, SRV_EP_WEB, SRV_EP_SESSIONS, SRV_EP_OTHER,
  SRV_EP_COUNT
} srv_endpoint;

/* Upper bounds, seconds, of the inter-token latency histogram's buckets
 * (+Inf besides). */
#define SRV_ITL_BUCKETS 12
extern const double srv_itl_bounds[SRV_ITL_BUCKETS];

typedef struct srv_metrics {
  pthread_mutex_t lock;
  uint64_t requests[SRV_EP_COUNT];
  uint64_t errors_by_status[10]; /* 400, 401, 404, 409, 413, 429, 500, 503, 507, other */
  uint64_t disconnects;         /* clients gone mid-stream */
  uint64_t prompt_tokens, prefilled_tokens, completion_tokens;
  double ttft_sum_s;            /* time to first token, sum and count */
  uint64_t ttft_count;
  uint64_t itl_buckets[SRV_ITL_BUCKETS]; /* inter-token latency: count at or under each bound */
  uint64_t itl_count;           /* ... and over all of them (+Inf) */
  double itl_sum_s;
  uint64_t evictions, restores, snapshots;
  double snapshot_sum_s;
  uint64_t template_hits;       /* new conversations started from a tenant's system-prompt template */
  uint64_t template_misses;     /* ... with a system prompt the tenant had no template of (one made) */
  uint64_t template_saved;      /* prompt tokens a template spared prefilling */
  uint64_t template_evictions;  /* templates deleted past --max-templates */
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_deinit(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, srv_endpoint ep);
void srv_metrics_error(srv_metrics *m, int status);
void srv_metrics_disconnect(srv_metrics *m);
/* A finished turn: its prompt, how much of it was prefilled, its output. */
void srv_metrics_turn(srv_metrics *m, uint64_t prompt, uint64_t prefilled, uint64_t completion);
void srv_metrics_ttft(srv_metrics *m, double seconds);
/* The time between two consecutive tokens of one turn. */
void srv_metrics_itl(srv_metrics *m, double seconds);
void srv_metrics_eviction(srv_metrics *m);
void srv_metrics_restore(srv_metrics *m);
void srv_metrics_snapshot(srv_metrics *m, double seconds);
/* A new conversation with a system prompt: started from a template (hit,
 * `saved` tokens not prefilled) or not (a miss). */
void srv_metrics_template(srv_metrics *m, bool hit, uint64_t saved);
void srv_metrics_template_eviction(srv_metrics *m);

/* The session gauges, read under the server's lock. */
typedef struct srv_gauges {
  size_t live, stored;      /* sessions by state */
  uint64_t live_bytes;      /* what the live actors count against --max-memory */
  uint64_t max_memory;      /* --max-memory, 0: none */
  uint64_t header_timeouts; /* connections cut by --header-timeout (http.c counts them) */
  size_t templates;         /* system-prompt templates held, every tenant's */
  size_t spares;            /* fresh actors ready for new conversations (spares.h) */
  uint64_t spares_made;     /* spare actors made */
  struct sp_runtime_stats runtime; /* the runtime's counters (cross-actor batching) */
} srv_gauges;

/* The Prometheus exposition text (malloc'd). */
char *srv_metrics_text(srv_metrics *m, const srv_gauges *g);

#endif
