/*
 * cpu_exec.h: what the CPU op drivers share.
 *
 * cpu_backend.c decodes each validated command and hands it, with the
 * binding's memory and scratch, to the driver of its op family. Drivers
 * split the work into tasks for the thread pool and call the kernel table.
 */
#ifndef SP_CPU_EXEC_H
#define SP_CPU_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/threadpool.h"
#include "core/error.h"
#include "core/memory_budget.h"
#include "samepage_abi.h"

/* The scratch budget of a binding unless set otherwise
 * (sp_backend_cpu_set_scratch_budget, or an actor's share through the
 * view): the most any actor's share may be (memory_budget.h). */
#define SP_CPU_SCRATCH_BUDGET ((size_t)SP_BUDGET_SCRATCH_MAX)

/* Host memory a binding keeps between commands (never guest memory). The
 * guest's shapes decide how much an op asks for, so a request over the
 * budget is refused (reserve returns NULL and records it in `refused`);
 * cpu_backend.c turns that into "OP: needs X of scratch; the budget is Y". */
typedef struct sp_cpu_scratch {
  void *data;     /* 64-byte aligned */
  size_t cap;     /* bytes */
  size_t budget;  /* most bytes one request may ask for; 0 = SP_CPU_SCRATCH_BUDGET */
  size_t refused; /* bytes of the last request over the budget, 0 if none */
} sp_cpu_scratch;

/* Everything one command runs with; borrowed for the command's duration. */
typedef struct sp_cpu_exec {
  uint8_t *base; /* guest address a is base + a */
  sp_threadpool *pool;
  const sp_cpu_kernels *kern;
  sp_cpu_scratch *scratch;
} sp_cpu_exec;

/* Returns scratch of at least `bytes` (contents not kept), or NULL when
 * `bytes` is over the budget (then s->refused = bytes) or memory runs out. */
void *sp_cpu_scratch_reserve(sp_cpu_scratch *s, size_t bytes);

/* The same, keeping the first `keep` bytes of what the scratch held. */
void *sp_cpu_scratch_reserve_keep(sp_cpu_scratch *s, size_t bytes, size_t keep);

/* Frees the scratch buffer. */
void sp_cpu_scratch_deinit(sp_cpu_scratch *s);

/* Sets the scratch budget of bindings the CPU backend `be` adopts from now
 * on (0: SP_CPU_SCRATCH_BUDGET); ignored when `be` is not a CPU backend.
 * Defined in cpu_backend.c. */
struct sp_backend;
void sp_backend_cpu_set_scratch_budget(struct sp_backend *be, size_t bytes);

/* SP_OP_MATMUL. Errors: scratch allocation failure. */
sp_error_t *sp_cpu_matmul(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* SP_OP_ADD, SP_OP_MUL and SP_OP_SCALE. Never fails. */
void sp_cpu_elementwise(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* Tasks worth waking workers for: `work` units split into pieces of at
 * least `min_per_task`, about four per thread (for balance), at least 1. */
uint32_t sp_cpu_task_count(const sp_cpu_exec *ex, uint64_t work, uint64_t min_per_task);

/* Address of row r of a tensor, rows counted in (ne1, ne2, ne3) order. */
static inline uint8_t *sp_cpu_row(uint8_t *base, const sp_tensor *t, int64_t r) {
  int64_t i1 = r % t->ne[1], i2 = r / t->ne[1] % t->ne[2], i3 = r / t->ne[1] / t->ne[2];
  return base + t->offset + (size_t)i1 * t->nb[0] + (size_t)i2 * t->nb[1] + (size_t)i3 * t->nb[2];
}

/* Rows of a tensor: ne1 * ne2 * ne3. */
static inline int64_t sp_cpu_rows(const sp_tensor *t) {
  return (int64_t)t->ne[1] * t->ne[2] * t->ne[3];
}

#endif
