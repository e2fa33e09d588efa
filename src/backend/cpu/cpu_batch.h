/*
 * cpu_batch.h (private to the CPU backend): running validated commands,
 * for one actor or for several in lockstep (cpu_batch.c).
 */
#ifndef SP_CPU_BATCH_H
#define SP_CPU_BATCH_H

#include "backend/backend.h"
#include "backend/cpu/cpu_exec.h"

/* Runs command `index` of a list on ex; the error names the index, and a
 * scratch request over the budget names the need and the budget. */
sp_error_t *sp_cpu_run_one(const sp_cpu_exec *ex, const sp_cmd *cmd, uint32_t index);

/* Runs lists[a] (counts[a] commands) on exs[a] for a < n <= SP_BATCH_MAX,
 * in lockstep (cpu_batch.c). errs[a]: actor a's first error, NULL if its
 * whole list ran. */
void sp_cpu_run_lockstep(const sp_cpu_exec *exs, const sp_cmd *const *lists, const uint32_t *counts, uint32_t n,
                         sp_error_t **errs);

#endif
