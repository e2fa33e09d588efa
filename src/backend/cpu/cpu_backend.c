/*
 * cpu_backend.c: the CPU backend, computing on guest memory in place.
 *
 * Adopting a region records its view: the CPU reads guest memory directly,
 * so nothing is registered or copied. Commands run synchronously inside
 * submit (wait has nothing to do), each op family on its driver (matmul.c,
 * elementwise.c, llm_ops.c, activations.c, attention.c; dispatched by
 * cpu_batch.c, which also runs several actors' lists in lockstep: the
 * batching layer), with one thread pool and one kernel table (picked at
 * creation) per backend.
 * Scratch memory (quantized activations, attention's working arrays,
 * copies of index tensors) belongs to the binding, so two actors may
 * submit on one backend from two threads. Its size follows the guest's
 * shapes, so it has a budget (SP_CPU_SCRATCH_BUDGET unless set): a command
 * that needs more is refused before it runs, naming the need and the
 * budget, and the host never allocates it.
 */
#include "backend/cpu/cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_batch.h"
#include "backend/cpu/cpu_exec.h"
#include "core/error.h"
#include "core/op_rules.h"

typedef struct sp_cpu_ctx {
  sp_threadpool *pool;
  const sp_cpu_kernels *kern;
  size_t scratch_budget; /* given to each binding adopted; 0 = SP_CPU_SCRATCH_BUDGET */
} sp_cpu_ctx;

typedef struct sp_cpu_binding {
  sp_memory_view view;
  sp_cpu_scratch scratch;
} sp_cpu_binding;

/* ---- the core interface (backend.h, layer 1) ---- */

static sp_backend_caps cpu_caps(void *ctx) {
  (void)ctx;
  return (sp_backend_caps){.zero_copy = true, .unified_memory = true};
}

/* The scratch budget of a binding: the view's host budget (the actor's
 * share, memory_budget.h) or the backend's, whichever is smaller. A
 * buffer already over it is freed, so what the binding holds never
 * passes it. */
static void set_scratch_budget(const sp_cpu_ctx *c, sp_cpu_binding *b, const sp_memory_view *view) {
  size_t budget = c->scratch_budget ? c->scratch_budget : SP_CPU_SCRATCH_BUDGET;
  if (view->host_budget && view->host_budget < budget) budget = view->host_budget;
  b->scratch.budget = budget;
  if (b->scratch.cap > budget) sp_cpu_scratch_deinit(&b->scratch);
}

static sp_error_t *cpu_adopt(void *ctx, const sp_memory_view *view, void **binding) {
  sp_cpu_binding *b = calloc(1, sizeof *b);
  if (!b) return sp_error_new("cpu adopt: out of memory");
  b->view = *view;
  set_scratch_budget(ctx, b, view);
  *binding = b;
  return NULL;
}

static sp_error_t *cpu_grow(void *ctx, void *binding, const sp_memory_view *view) {
  sp_cpu_binding *b = binding;
  b->view = *view;
  set_scratch_budget(ctx, b, view);
  return NULL;
}

/* Whether the kernel table has a dot product for weights of t's dtype. */
static bool has_dot(const sp_cpu_kernels *k, const sp_tensor *t) {
  return t->dtype < SP_DTYPE_COUNT && k->dot[t->dtype];
}

/* The validator (op_rules.c) has checked every dtype by now; what the CPU
 * adds is a dot product for the weight's dtype in the kernel table. */
static bool supports_with(const sp_cpu_kernels *k, const sp_cmd *cmd) {
  if (!sp_op_rule_get(cmd->op)) return false;
  return cmd->op == SP_OP_MATMUL || cmd->op == SP_OP_GET_ROWS ? has_dot(k, &cmd->src[0]) : true;
}

static bool cpu_supports(void *ctx, const sp_cmd *cmd) { return supports_with(((const sp_cpu_ctx *)ctx)->kern, cmd); }

bool sp_cpu_supports(const sp_cmd *cmd) { return supports_with(sp_cpu_kernels_select(NULL), cmd); }

static sp_error_t *cpu_submit(void *ctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same) {
  sp_cpu_ctx *c = ctx;
  sp_cpu_binding *b = binding;
  (void)same;
  sp_cpu_exec ex = {.base = b->view.base, .pool = c->pool, .kern = c->kern, .scratch = &b->scratch};
  for (uint32_t i = 0; i < count; i++) {
    sp_error_t *err = sp_cpu_run_one(&ex, &cmds[i], i);
    if (err) return err;
  }
  return NULL;
}

/* ---- layer 4: several actors' lists in lockstep (cpu_batch.c) ---- */

static void cpu_submit_batch(void *ctx, sp_batch_item *items, uint32_t n) {
  sp_cpu_ctx *c = ctx;
  sp_cpu_exec exs[SP_BATCH_MAX];
  const sp_cmd *lists[SP_BATCH_MAX];
  const uint64_t *keys[SP_BATCH_MAX];
  uint32_t counts[SP_BATCH_MAX];
  sp_cpu_scratch gather = {.budget = c->scratch_budget};
  for (uint32_t start = 0; start < n; start += SP_BATCH_MAX) {
    uint32_t k = n - start < SP_BATCH_MAX ? n - start : SP_BATCH_MAX;
    for (uint32_t a = 0; a < k; a++) {
      sp_cpu_binding *b = items[start + a].binding;
      exs[a] = (sp_cpu_exec){.base = b->view.base, .pool = c->pool, .kern = c->kern, .scratch = &b->scratch};
      lists[a] = items[start + a].cmds, counts[a] = items[start + a].count, keys[a] = items[start + a].weight_keys;
    }
    sp_error_t *errs[SP_BATCH_MAX];
    sp_cpu_lockstep ls = {.exs = exs, .lists = lists, .counts = counts, .keys = keys, .n = k, .gather = &gather};
    sp_cpu_run_lockstep(&ls, errs);
    for (uint32_t a = 0; a < k; a++) items[start + a].err = errs[a];
  }
  sp_cpu_scratch_deinit(&gather);
}

static const struct sp_backend_batching_i cpu_batching = {
    .version = SP_BACKEND_BATCHING_VERSION,
    .submit_batch = cpu_submit_batch,
};

static void cpu_release(void *ctx, void *binding) {
  sp_cpu_binding *b = binding;
  sp_cpu_scratch_deinit(&b->scratch);
  free(b);
}

static void cpu_destroy(void *ctx) {
  sp_cpu_ctx *c = ctx;
  sp_threadpool_free(c->pool);
  free(c);
}

/* The core layer is the whole CPU backend: kernels read and write guest
 * memory where it lies, so it has no memory layer (backend.h: every
 * wrapper's default is what the CPU would do) and no sharing layer. */
static const struct sp_backend_i cpu_iface = {
    .version = SP_BACKEND_CORE_VERSION,
    .name = "cpu",
    .caps = cpu_caps,
    .adopt = cpu_adopt,
    .grow = cpu_grow,
    .supports = cpu_supports,
    .submit = cpu_submit,
    .wait = NULL,        /* submit is synchronous */
    .device_base = NULL, /* kernels use the adopted view's base */
    .release = cpu_release,
    .destroy = cpu_destroy,
};

sp_error_t *sp_backend_cpu_new_simd(unsigned threads, const char *simd, sp_backend **out) {
  sp_backend *be = calloc(1, sizeof *be);
  sp_cpu_ctx *c = calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return sp_error_new("cpu backend: out of memory");
  }
  sp_error_t *err = sp_threadpool_new(threads, &c->pool);
  if (err) {
    free(be);
    free(c);
    return sp_error_wrap(err, "cpu backend");
  }
  c->kern = sp_cpu_kernels_select(simd);
  be->iface = cpu_iface;
  be->memory = NULL;
  be->sharing = NULL;
  be->batching = &cpu_batching;
  be->ctx = c;
  *out = be;
  return NULL;
}

sp_error_t *sp_backend_cpu_new(unsigned threads, sp_backend **out) { return sp_backend_cpu_new_simd(threads, NULL, out); }

/* ---- extras ---- */

static const sp_cpu_ctx *cpu_ctx_of(const sp_backend *be) {
  return be && be->iface.destroy == cpu_destroy ? be->ctx : NULL;
}

const char *sp_backend_cpu_simd(const sp_backend *be) {
  const sp_cpu_ctx *c = cpu_ctx_of(be);
  return c ? c->kern->name : NULL;
}

void sp_backend_cpu_set_scratch_budget(sp_backend *be, size_t bytes) {
  sp_cpu_ctx *c = be && be->iface.destroy == cpu_destroy ? be->ctx : NULL;
  if (c) c->scratch_budget = bytes;
}

unsigned sp_backend_cpu_threads(const sp_backend *be) {
  const sp_cpu_ctx *c = cpu_ctx_of(be);
  return c ? sp_threadpool_threads(c->pool) : 0;
}
