/*
 * server.h: `samepage serve`, the parts every file of src/server/ shares:
 * the configuration, the server object and the error every handler returns.
 *
 * Locking: one mutex (srv.lock) guards the session table and every call
 * into an actor. Handlers take it per guest call (a prefill, one decode
 * step), so concurrent streams take turns token by token.
 */
#ifndef SP_SERVER_H
#define SP_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samepage.h"
#include "server/metrics.h"

typedef struct srv_config {
  const char *model;        /* the GGUF file */
  char model_id[128];       /* what /v1/models lists and requests may name */
  const char *host;         /* IPv4 address to bind */
  int port;                 /* 0: any free port (printed) */
  const char *backend;      /* cpu | cuda | auto */
  const char *sessions_dir; /* NULL: sessions live in memory only */
  int max_live;             /* live actors before LRU eviction to disk */
  int ctx;                  /* context length of every conversation */
  size_t max_body;          /* request body limit, bytes */
  const char *api_keys;     /* --api-keys FILE, or NULL: tenant "default", loopback only */
  int max_per_tenant;       /* completions in flight per tenant before 429 */
  size_t max_import;        /* POST /v1/sessions body limit, bytes */
  int client_timeout;       /* seconds a connection may stay silent before it is closed */
  int header_timeout;       /* seconds a request's headers may take, from the connection's start
                               or the end of its previous request */
  int max_connections;      /* connections at once, in all */
  int max_per_ip;           /* connections at once from one address (slowloris) */
  uint64_t max_memory;      /* --max-memory: bytes of live actors, 0: no budget (needs sessions_dir) */
  int max_templates;        /* --max-templates: shared system prompts kept per tenant (template.h), 0: none */
  int batch_window_us;      /* --batch-window-us: cross-actor batching (docs/BATCHING.md), 0: off */
  int spare_actors;         /* --spare-actors: fresh actors kept ready (spares.h), 0: none */
} srv_config;

/* A tenant (tenant.h): sessions belong to one; its completions in flight
 * are counted under srv.lock. */
typedef struct srv_tenant {
  char name[32];
  int in_flight;
} srv_tenant;

/* An API key of --api-keys and its tenant. */
typedef struct srv_key {
  char key[128];
  size_t tenant;            /* index into srv.tenants */
} srv_key;

typedef struct srv_session srv_session;
typedef struct srv_template srv_template;
typedef struct srv_spares srv_spares;

typedef struct srv {
  srv_config cfg;
  sp_runtime_t *rt;
  pthread_mutex_t lock;     /* the session table and every actor call */
  sp_actor_t *scratch;      /* renders and tokenizes requests; never a session */
  srv_session **sessions;   /* live and stored conversations */
  size_t n_sessions, cap_sessions;
  uint64_t clock;           /* LRU ticks */
  uint64_t next_id;
  uint64_t fresh_bytes;     /* a fresh actor's bytes (its snapshot's size), measured at start with --max-memory */
  srv_tenant *tenants;      /* fixed after start */
  size_t n_tenants;
  srv_key *keys;
  size_t n_keys;
  srv_template **templates; /* shared system prompts (template.h), every tenant's */
  size_t n_templates;
  srv_metrics metrics;
  srv_spares *spares;       /* fresh actors kept ready (spares.h), NULL: none */
} srv;

/* An error as OpenAI returns it: the HTTP status and the body's fields. */
typedef struct srv_error {
  int status;          /* 0: no error */
  const char *type;    /* invalid_request_error, not_found_error, server_error ... */
  const char *code;    /* NULL or a short code (context_length_exceeded ...) */
  char param[64];      /* the field at fault, or "" */
  char message[512];
} srv_error;

/* Fills e; returns e->status (so `return srv_fail(...)` reads well). */
int srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));


#endif
