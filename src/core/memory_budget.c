/* memory_budget.c: the shares of an actor's memory limit (memory_budget.h). */
#include "core/memory_budget.h"

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

sp_memory_budget sp_memory_budget_split(uint64_t limit) {
  sp_memory_budget b = {.limit = limit, .scratch = SP_BUDGET_SCRATCH_MAX};
  if (!limit) return b;
  uint64_t tables = min_u64(limit / 64, SP_BUDGET_TABLES_MAX);
  b.scratch = min_u64(limit / 8, SP_BUDGET_SCRATCH_MAX);
  b.table_elements = tables / SP_BUDGET_TABLES / SP_BUDGET_TABLE_ELEM_BYTES;
  b.linear = limit - b.scratch - tables;
  return b;
}
