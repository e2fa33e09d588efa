/*
 * cpu_batch.c: running validated commands on the CPU, one actor's list
 * (cpu_backend.c's submit) or several actors' lists in lockstep (the
 * batching layer, backend.h).
 *
 * Lockstep: command i of every list runs before command i + 1 of any.
 * Where every live list's command i is a decode product of the same weight
 * type and shape, they run as batched products (matmul_batch.c): actors
 * whose weights the runtime proved to be the same bytes (one weight key)
 * share one product, the weights decoded once for all; the others each
 * read their own weights, in step (shared pages then meet in cache). The
 * commands between two such products run per actor, the actors side by
 * side on the thread pool. Each actor's commands see
 * only its own memory and scratch, in its own order, and every kernel
 * gives a row the same bits whatever runs beside it, so an actor's results
 * equal a lone submit's bit for bit. An actor whose command fails stops
 * there with its error; the others go on.
 */
#include "backend/cpu/cpu_batch.h"

#include "backend/cpu/activations.h"
#include "backend/cpu/llm_ops.h"
#include "backend/cpu/matmul_batch.h"
#include "core/op_rules.h"

/* Runs one validated command. */
static sp_error_t *run_cmd(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  switch (cmd->op) {
  case SP_OP_NOP: return NULL;
  case SP_OP_MATMUL: return sp_cpu_matmul(ex, cmd);
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SCALE: sp_cpu_elementwise(ex, cmd); return NULL;
  case SP_OP_RMSNORM: sp_cpu_rmsnorm(ex, cmd); return NULL;
  case SP_OP_SOFTMAX: sp_cpu_softmax(ex, cmd); return NULL;
  case SP_OP_SWIGLU: sp_cpu_swiglu(ex, cmd); return NULL;
  case SP_OP_GEGLU: sp_cpu_geglu(ex, cmd); return NULL;
  case SP_OP_SOFTCAP: sp_cpu_softcap(ex, cmd); return NULL;
  case SP_OP_ROPE: sp_cpu_rope(ex, cmd); return NULL;
  case SP_OP_GET_ROWS: return sp_cpu_get_rows(ex, cmd);
  case SP_OP_SET_ROWS: return sp_cpu_set_rows(ex, cmd);
  case SP_OP_COPY: sp_cpu_copy(ex, cmd); return NULL;
  case SP_OP_ARGMAX: sp_cpu_argmax(ex, cmd); return NULL;
  case SP_OP_TOPK: sp_cpu_topk(ex, cmd); return NULL;
  case SP_OP_ATTENTION: return sp_cpu_attention(ex, cmd);
  default: return sp_error_new("op %u is not supported", cmd->op);
  }
}

/* The error of a command whose scratch request went over the budget (the
 * op's own "out of scratch memory" error is replaced). */
static sp_error_t *over_budget(const sp_cpu_scratch *s, const sp_cmd *cmd, sp_error_t *err) {
  char msg[256];
  const sp_op_rule *rule = sp_op_rule_get(cmd->op);
  sp_budget_scratch_message(rule ? rule->name : "op", s->refused, s->budget ? s->budget : SP_CPU_SCRATCH_BUDGET, msg,
                            sizeof msg);
  sp_error_free(err);
  return sp_error_with_status(SP_E_LIMIT, "%s", msg);
}

sp_error_t *sp_cpu_run_one(const sp_cpu_exec *ex, const sp_cmd *cmd, uint32_t index) {
  ex->scratch->refused = 0;
  sp_error_t *err = run_cmd(ex, cmd);
  if (err && ex->scratch->refused) err = over_budget(ex->scratch, cmd, err);
  return err ? sp_error_wrap(err, "cpu: cmd[%u]", index) : NULL;
}

/* The weight key of actor a's command i (0: none). */
static uint64_t key_of(const sp_cpu_lockstep *ls, uint32_t a, uint32_t i) {
  return ls->keys && ls->keys[a] ? ls->keys[a][i] : 0;
}

/* The actors (indices into the batch) whose command i is batchable with
 * the first live actor's; 0 when fewer than two. */
static uint32_t batchable_at(const sp_cpu_lockstep *ls, sp_error_t *const *errs, uint32_t i, uint32_t *who) {
  uint32_t k = 0;
  const sp_cmd *first = NULL;
  for (uint32_t a = 0; a < ls->n; a++) {
    if (errs[a] || i >= ls->counts[a]) continue;
    if (!first) first = &ls->lists[a][i];
    if (!sp_cpu_matmul_batchable(first, &ls->lists[a][i])) return 0;
    who[k++] = a;
  }
  return k >= 2 ? k : 0;
}

/* Command i of actors who[0..k), as one batched product, shared (every
 * actor's weight key the same) or each actor reading its own weights. */
static void run_product(const sp_cpu_lockstep *ls, const uint32_t *who, uint32_t k, uint32_t i, bool shared,
                        sp_error_t **errs) {
  const sp_cpu_exec *ex_of[SP_BATCH_MAX] = {0};
  const sp_cmd *cmd_of[SP_BATCH_MAX] = {0};
  sp_matmul_job jobs[SP_BATCH_MAX];
  sp_error_t *got[SP_BATCH_MAX];
  for (uint32_t j = 0; j < k; j++) {
    ex_of[j] = &ls->exs[who[j]], cmd_of[j] = &ls->lists[who[j]][i];
    ex_of[j]->scratch->refused = 0;
  }
  if (shared) sp_cpu_matmul_shared(ex_of, cmd_of, k, jobs, ls->gather, got);
  else sp_cpu_matmul_batch(ex_of, cmd_of, k, jobs, got);
  for (uint32_t j = 0; j < k; j++) {
    sp_error_t *err = got[j];
    if (err && ex_of[j]->scratch->refused) err = over_budget(ex_of[j]->scratch, cmd_of[j], err);
    if (err) errs[who[j]] = sp_error_wrap(err, "cpu: cmd[%u]", i);
  }
}

/* Command i of actors who[0..k): one shared product per weight key held by
 * two or more of them, one own-weights batch for the rest. */
static void run_products_at(const sp_cpu_lockstep *ls, const uint32_t *who, uint32_t k, uint32_t i,
                            sp_error_t **errs) {
  bool placed[SP_BATCH_MAX] = {false};
  uint32_t own[SP_BATCH_MAX], n_own = 0, group[SP_BATCH_MAX];
  for (uint32_t j = 0; j < k; j++) {
    if (placed[j]) continue;
    uint64_t key = key_of(ls, who[j], i);
    uint32_t g = 0;
    for (uint32_t m = j; key && m < k; m++)
      if (!placed[m] && key_of(ls, who[m], i) == key) group[g++] = who[m], placed[m] = true;
    if (g >= 2) {
      run_product(ls, group, g, i, true, errs);
      continue;
    }
    placed[j] = true, own[n_own++] = who[j];
  }
  if (n_own >= 2) run_product(ls, own, n_own, i, false, errs);
  else if (n_own == 1) errs[own[0]] = sp_cpu_run_one(&ls->exs[own[0]], &ls->lists[own[0]][i], i);
}

/* One actor's commands [from, to) of a span between batched products. */
typedef struct span_job {
  const sp_cpu_lockstep *ls;
  sp_error_t **errs;
  uint32_t from, to;
} span_job;

static void span_task(void *arg, uint32_t a) {
  const span_job *s = arg;
  const sp_cpu_lockstep *ls = s->ls;
  for (uint32_t i = s->from; i < s->to && i < ls->counts[a] && !s->errs[a]; i++)
    s->errs[a] = sp_cpu_run_one(&ls->exs[a], &ls->lists[a][i], i);
}

void sp_cpu_run_lockstep(const sp_cpu_lockstep *ls, sp_error_t **errs) {
  uint32_t longest = 0, who[SP_BATCH_MAX];
  for (uint32_t a = 0; a < ls->n; a++) {
    errs[a] = NULL;
    if (ls->counts[a] > longest) longest = ls->counts[a];
  }
  for (uint32_t i = 0; i < longest;) {
    uint32_t k = batchable_at(ls, errs, i, who);
    if (k) {
      run_products_at(ls, who, k, i, errs);
      i++;
      continue;
    }
    /* The commands up to the next batched product run per actor, the actors
     * side by side on the pool (one task each; their own inner jobs then
     * run inline on that task's thread: threadpool.h). */
    uint32_t end = i + 1;
    while (end < longest && !batchable_at(ls, errs, end, who)) end++;
    span_job s = {.ls = ls, .errs = errs, .from = i, .to = end};
    sp_threadpool_run(ls->exs[0].pool, ls->n, span_task, &s);
    i = end;
  }
}
