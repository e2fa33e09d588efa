/*
 * cli_llm.c: driving the embedded LLM guest from the benchmarks: a warm
 * actor (model loaded, with extra guest options if any) and a timed
 * prefill of token ids.
 */
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "cli/cli.h"
#include "core/error.h"
#include "samepage.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

sp_error_t *sp_cli_llm_actor(sp_runtime_t *rt, const char *model, int ctx, int batch, sp_actor_t **out) {
  return sp_cli_llm_actor_with(rt, model, ctx, batch, NULL, 0, out);
}

sp_error_t *sp_cli_llm_new(sp_runtime_t *rt, const char *model, int ctx, int batch, const char *const *extra,
                           int n_extra, sp_actor_t **out) {
  char ctx_text[16], batch_text[16];
  snprintf(ctx_text, sizeof ctx_text, "%d", ctx);
  snprintf(batch_text, sizeof batch_text, "%d", batch);
  const char *argv[16] = {"llm", "--ctx", ctx_text, "--batch", batch_text};
  int argc = batch > 0 ? 5 : 3;
  if (n_extra > 16 - argc) return sp_error_new("too many guest options");
  for (int i = 0; i < n_extra; i++) argv[argc++] = extra[i];
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = argc, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  size_t len = (size_t)(sp_embedded_llm_end - sp_embedded_llm);
  return sp_actor_new(rt, sp_embedded_llm, len, &opts, out);
}

sp_error_t *sp_cli_llm_actor_with(sp_runtime_t *rt, const char *model, int ctx, int batch, const char *const *extra,
                                  int n_extra, sp_actor_t **out) {
  sp_error_t *err = sp_cli_llm_new(rt, model, ctx, batch, extra, n_extra, out);
  int64_t status = 0;
  if (!err) err = sp_cli_call(*out, "llm_init", 0, 0, 0, &status);
  if (!err && status < 0) err = sp_error_new("llm_init failed");
  return err;
}

bool sp_cli_llm_warmup_wanted(sp_runtime_t *rt) { return !strcmp(sp_runtime_backend_name(rt), "cuda"); }

sp_error_t *sp_cli_llm_prefill(sp_actor_t *a, int n, double *ms) {
  int64_t addr, got;
  sp_error_t *err = sp_cli_call(a, "llm_input", (int64_t)n * 4, 0, 1, &addr);
  if (err) return err;
  addr = (uint32_t)addr; /* an i32 result */
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  int32_t *ids = (int32_t *)(base + addr);
  for (int i = 0; i < n; i++) ids[i] = 100 + (int32_t)((i * 7919u) % 20000u); /* a fixed pseudo-random sequence */
  double t0 = sp_now_ms();
  err = sp_cli_call(a, "llm_prompt", (int64_t)n * 4, 2, 2, &got);
  *ms = sp_now_ms() - t0;
  return err ? err : got == n ? NULL : sp_error_new("prefill of %d tokens failed", n);
}
