/*
 * matmul_batch.h (private to the CPU backend): decode products of several
 * actors against the same weights, run together (matmul_batch.c).
 */
#ifndef SP_CPU_MATMUL_BATCH_H
#define SP_CPU_MATMUL_BATCH_H

#include <stdbool.h>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"

/* Whether two validated commands are decode products (one activation row)
 * of the same weight type and shape, which sp_cpu_matmul_batch runs
 * together. */
bool sp_cpu_matmul_batchable(const sp_cmd *a, const sp_cmd *b);

/* Runs cmds[a] on exs[a] for every a < n (pairwise batchable), each
 * actor's rows reading only its own memory, weight rows in chunks that
 * every actor passes over before the next chunk (cache reuse when their
 * pages are the same). Each output equals sp_cpu_matmul's, bit for bit.
 * jobs: room for n. errs[a]: actor a's error (scratch refused), NULL if it
 * ran. */
void sp_cpu_matmul_batch(const sp_cpu_exec *const *exs, const sp_cmd *const *cmds, uint32_t n, sp_matmul_job *jobs,
                         sp_error_t **errs);

/* The same for actors whose weights the runtime proved to be the same
 * bytes (one weight key, backend.h): one product of the first actor's
 * weights with every actor's activation row, gathered into `gather`
 * scratch, as a prompt's rows would be (the table's gemm tiles or dots of
 * several rows: the same bits per output, kernels.h), its rows then copied
 * to each actor's output. Where gather refuses the room, it falls back to
 * sp_cpu_matmul_batch. */
void sp_cpu_matmul_shared(const sp_cpu_exec *const *exs, const sp_cmd *const *cmds, uint32_t n, sp_matmul_job *jobs,
                          sp_cpu_scratch *gather, sp_error_t **errs);

#endif
