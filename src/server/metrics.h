/*
 * metrics.h: the server's counters, served as Prometheus text by
 * GET /metrics. Every update takes the counters' own mutex, never the
 * server's: a scrape must not wait behind a prefill.
 */
#ifndef SP_SERVER_METRICS_H
#define SP_SERVER_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef enum srv_endpoint {
  SRV_EP_HEALTH, SRV_EP_MODELS, SRV_EP_CHAT, SRV_EP_COMPLETIONS, SRV_EP_METRICS, SRV_EP_WEB, SRV_EP_SESSIONS, SRV_EP_OTHER,
  SRV_EP_COUNT
} srv_endpoint;

typedef struct srv_metrics {
  pthread_mutex_t lock;
  uint64_t requests[SRV_EP_COUNT];
  uint64_t errors_by_status[9]; /* 400, 401, 404, 409, 413, 429, 500, 503, other */
  uint64_t disconnects;         /* clients gone mid-stream */
  uint64_t prompt_tokens, prefilled_tokens, completion_tokens;
  double ttft_sum_s;            /* time to first token, sum and count */
  uint64_t ttft_count;
  uint64_t evictions, restores, snapshots;
  double snapshot_sum_s;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_deinit(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, srv_endpoint ep);
void srv_metrics_error(srv_metrics *m, int status);
void srv_metrics_disconnect(srv_metrics *m);
/* A finished turn: its prompt, how much of it was prefilled, its output. */
void srv_metrics_turn(srv_metrics *m, uint64_t prompt, uint64_t prefilled, uint64_t completion);
void srv_metrics_ttft(srv_metrics *m, double seconds);
void srv_metrics_eviction(srv_metrics *m);
void srv_metrics_restore(srv_metrics *m);
void srv_metrics_snapshot(srv_metrics *m, double seconds);

/* The Prometheus exposition text (malloc'd), with the session gauges the
 * caller read under the server's lock. */
char *srv_metrics_text(srv_metrics *m, size_t live, size_t stored);

#endif
