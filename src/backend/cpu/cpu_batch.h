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

/* Several actors' lists, to run in lockstep. */
typedef struct sp_cpu_lockstep {
  const sp_cpu_exec *exs;         /* per actor: its memory, scratch, the pool and table */
  const sp_cmd *const *lists;     /* per actor: its validated commands */
  const uint32_t *counts;
  const uint64_t *const *keys;    /* NULL, or per actor NULL or a weight key per command (backend.h) */
  uint32_t n;                     /* actors, <= SP_BATCH_MAX */
  sp_cpu_scratch *gather;         /* host scratch for shared products' gathered rows */
} sp_cpu_lockstep;

/* Runs every actor's list in lockstep (cpu_batch.c). errs[a]: actor a's
 * first error, NULL if its whole list ran. */
void sp_cpu_run_lockstep(const sp_cpu_lockstep *ls, sp_error_t **errs);

#endif
