/*
 * parallel.h: plain work spread over a few threads, for the runtime's bulk
 * byte work (a restore hashes and copies up to hundreds of megabytes).
 *
 * Small work stays on the calling thread: starting a thread costs more
 * than hashing or copying a few megabytes.
 */
#ifndef SP_PARALLEL_H
#define SP_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

/* Runs fn(ctx, i) for every i < n, on up to 8 threads (the calling one
 * included) when `bytes` (the work's size) is large enough, else in order
 * on the calling thread. fn must be safe to call concurrently. */
void sp_parallel_for(size_t n, size_t bytes, void (*fn)(void *ctx, size_t i), void *ctx);

typedef struct sp_hash_job {
  const void *data;
  size_t len;
  uint64_t hash; /* out: sp_hash64_of(data, len) */
} sp_hash_job;

/* Hashes every job, in parallel when they are big. */
void sp_hash64_many(sp_hash_job *jobs, size_t n);

/* memcpy, split over threads when len is big. */
void sp_memcpy_parallel(void *dst, const void *src, size_t len);

#endif
