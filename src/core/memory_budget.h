/*
 * memory_budget.h: one actor's --memory-limit, split over everything the
 * actor makes the host hold.
 *
 * A guest decides how much host memory it costs in three ways: its linear
 * memory, its tables (table.grow), and the scratch the backend allocates
 * for the shapes of its ops (quantized activations, attention's working
 * arrays, copies of index tensors; in a worker process under
 * --isolation process, there). One limit covers all three: each gets a
 * fixed share, so their sum never passes the limit, whatever order the
 * guest grows them in, and without any accounting across processes.
 *  - scratch: an eighth of the limit, at most 256 MiB (what an LLM's ops
 *    need is a few MiB: SmolLM2's largest prompt matmul needs 0.3 MiB);
 *  - tables: a sixty-fourth, at most 16 MiB, in at most 4 tables of
 *    8-byte elements;
 *  - linear memory: the rest, in one memory (a module that declares a
 *    second is refused at instantiation).
 * Without a limit, linear memory and tables are Wasmtime's defaults and
 * scratch is 256 MiB.
 */
#ifndef SP_MEMORY_BUDGET_H
#define SP_MEMORY_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#define SP_BUDGET_SCRATCH_MAX ((uint64_t)256 << 20)
#define SP_BUDGET_TABLES_MAX ((uint64_t)16 << 20)
#define SP_BUDGET_TABLES 4          /* tables a guest may create */
#define SP_BUDGET_TABLE_ELEM_BYTES 8 /* host bytes per table element (a pointer) */

typedef struct sp_memory_budget {
  uint64_t limit;          /* the whole budget, 0 = none */
  uint64_t linear;         /* linear memory, bytes (0 = no limit) */
  uint64_t table_elements; /* elements per table (0 = no limit) */
  uint64_t scratch;        /* backend scratch for the actor's ops, bytes */
} sp_memory_budget;

/* The shares of `limit` bytes (0: no limit). */
sp_memory_budget sp_memory_budget_split(uint64_t limit);

/* "1.5 GiB", "256 MiB", "4096 bytes": a size for a message. */
void sp_budget_size_text(uint64_t bytes, char *buf, size_t cap);

/* The message of an op whose scratch would pass its binding's budget:
 * "OP: needs X of scratch; the budget is Y (...)". Every backend words it
 * the same, so a guest sees one refusal whichever backend runs it. */
void sp_budget_scratch_message(const char *op, uint64_t need, uint64_t budget, char *buf, size_t cap);

#endif
