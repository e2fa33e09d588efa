/*
 * threadpool.h: a persistent pool of threads for data-parallel kernels.
 *
 * A job is `n_tasks` independent calls fn(arg, i). The calling thread runs
 * tasks too, so a pool of T threads has T - 1 workers. Workers spin briefly
 * after a job before sleeping on a condition variable, which keeps a run of
 * small back-to-back kernels (one LLM layer) free of wake-up latency.
 *
 * Jobs of one task run inline without touching the workers. When two
 * threads call sp_threadpool_run at once (two actors on one backend), the
 * one that finds the pool busy runs its job inline instead of waiting.
 */
#ifndef SP_CPU_THREADPOOL_H
#define SP_CPU_THREADPOOL_H

#include <stdint.h>

#include "core/error.h"

typedef struct sp_threadpool sp_threadpool;

/* One task of a job: `task` is in [0, n_tasks). A task may call
 * sp_threadpool_run itself; that inner job runs inline on its thread. */
typedef void (*sp_task_fn)(void *arg, uint32_t task);

/* Creates a pool where `threads` threads (the caller included) run each
 * job; 0 means one per online CPU. On success the caller owns *out.
 * Errors: thread or memory creation failure. */
sp_error_t *sp_threadpool_new(unsigned threads, sp_threadpool **out);

/* Stops and joins the workers, then frees the pool (NULL is fine). No job
 * may be running. */
void sp_threadpool_free(sp_threadpool *pool);

/* Number of threads that run a job, the caller included (>= 1). */
unsigned sp_threadpool_threads(const sp_threadpool *pool);

/* Runs fn(arg, i) for every i in [0, n_tasks) and returns once all have
 * finished. Tasks are claimed dynamically, so they may be uneven. */
void sp_threadpool_run(sp_threadpool *pool, uint32_t n_tasks, sp_task_fn fn, void *arg);

#endif
