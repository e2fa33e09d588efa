/* memory_budget.c: the shares of an actor's memory limit (memory_budget.h). */
#include "core/memory_budget.h"

#include <stdio.h>

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

void sp_budget_size_text(uint64_t bytes, char *buf, size_t cap) {
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = -1;
  while (v >= 1024 && u < 3) v /= 1024, u++;
  if (u < 0) snprintf(buf, cap, "%llu bytes", (unsigned long long)bytes);
  else if (v == (double)(uint64_t)v) snprintf(buf, cap, "%.0f %s", v, units[u]);
  else snprintf(buf, cap, "%.1f %s", v, units[u]);
}

void sp_budget_scratch_message(const char *op, uint64_t need, uint64_t budget, char *buf, size_t cap) {
  char need_text[32], budget_text[32];
  sp_budget_size_text(need, need_text, sizeof need_text);
  sp_budget_size_text(budget, budget_text, sizeof budget_text);
  snprintf(buf, cap,
           "%s: needs %s of scratch; the budget is %s (an actor's scratch share: 1/8 of its memory limit, at most "
           "256 MiB)",
           op, need_text, budget_text);
}
