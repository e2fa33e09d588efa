/*
 * cli_bench_snapshot.c: `samepage bench snapshot [--json] [--contexts
 * 24,512,4096] [--backend B] [--model F]`.
 *
 * For each context length n: a warm actor prefills n tokens (timed: the
 * cost of rebuilding that context from scratch), saves a snapshot (timed,
 * sized), and a second warm actor, model already loaded, restores it
 * (median of 5, timed). The ratio re-prefill / restore is what a snapshot
 * saves. As a check, both actors then pick the same next token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "error.h"
#include "samepage.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

typedef struct snap_row {
  int n;
  double prefill_ms, save_ms, restore_ms;
  double verify_ms, apply_ms; /* the median restore's two parts */
  double size_mb;
  bool same_next;
} snap_row;

static sp_error_t *call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out) {
  int64_t args[2] = {x, y};
  return sp_actor_call(a, fn, args, (size_t)nargs, out);
}

static sp_error_t *warm_actor(sp_runtime_t *rt, const char *model, int ctx, sp_actor_t **out) {
  char ctx_text[16];
  snprintf(ctx_text, sizeof ctx_text, "%d", ctx);
  const char *argv[] = {"llm", "--ctx", ctx_text, "--batch", "256"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 5, .blobs = &grant, .n_blobs = 1, .inherit_stdio = true};
  size_t len = (size_t)(sp_embedded_llm_end - sp_embedded_llm);
  sp_error_t *err = sp_actor_new(rt, sp_embedded_llm, len, &opts, out);
  int64_t status = 0;
  if (!err) err = call(*out, "llm_init", 0, 0, 0, &status);
  if (!err && status < 0) err = sp_error_new("llm_init failed");
  return err;
}

/* Prefills n token ids (a fixed pseudo-random sequence). */
static sp_error_t *prefill(sp_actor_t *a, int n, double *ms) {
  int64_t addr, got;
  sp_error_t *err = call(a, "llm_input", (int64_t)n * 4, 0, 1, &addr);
  if (err) return err;
  addr = (uint32_t)addr; /* an i32 result */
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  int32_t *ids = (int32_t *)(base + addr);
  for (int i = 0; i < n; i++) ids[i] = 100 + (int32_t)((i * 7919u) % 20000u);
  double t0 = sp_now_ms();
  err = call(a, "llm_prompt", (int64_t)n * 4, 2, 2, &got);
  *ms = sp_now_ms() - t0;
  return err ? err : got == n ? NULL : sp_error_new("prefill of %d tokens failed", n);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static sp_error_t *measure(sp_runtime_t *rt, const char *model, int n, snap_row *row) {
  int ctx = n + 64 < 512 ? 512 : n + 64;
  sp_actor_t *a = NULL, *b = NULL;
  char path[] = "/tmp/samepage-bench-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  row->n = n;
  sp_error_t *err = warm_actor(rt, model, ctx, &a);
  if (!err) err = warm_actor(rt, model, ctx, &b);
  if (!err) err = prefill(a, n, &row->prefill_ms);
  sp_snapshot_stats st = {0};
  double t0 = sp_now_ms();
  if (!err) err = sp_actor_snapshot(a, path, NULL, &st);
  row->save_ms = sp_now_ms() - t0, row->size_mb = st.bytes / 1e6;
  double times[5], verify[5], apply[5];
  for (int r = 0; r < 5 && !err; r++) {
    sp_snapshot_stats rs = {0};
    t0 = sp_now_ms();
    err = sp_actor_restore(b, path, &rs);
    times[r] = sp_now_ms() - t0, verify[r] = rs.verify_ms, apply[r] = rs.apply_ms;
  }
  if (!err) {
    qsort(times, 5, sizeof times[0], cmp_double);
    qsort(verify, 5, sizeof verify[0], cmp_double);
    qsort(apply, 5, sizeof apply[0], cmp_double);
    row->restore_ms = times[2], row->verify_ms = verify[2], row->apply_ms = apply[2];
    int64_t ta, tb;
    err = call(a, "llm_step", 0, 0, 0, &ta);
    if (!err) err = call(b, "llm_step", 0, 0, 0, &tb);
    row->same_next = !err && ta == tb;
  }
  sp_actor_free(a);
  sp_actor_free(b);
  unlink(path);
  return err;
}

int sp_cli_bench_snapshot(int argc, char **argv) {
  bool json = false;
  const char *backend = "auto", *model = NULL, *contexts = "24,512,4096";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
    else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--contexts") && i + 1 < argc) contexts = argv[++i];
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench snapshot: model %s: cannot read it (scripts/fetch-model.sh)\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = backend};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  snap_row rows[8];
  int n_rows = 0;
  for (const char *p = contexts; !err && *p && n_rows < 8; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
    int n = atoi(p);
    if (n < 1 || n > 32768) continue;
    err = measure(rt, model, n, &rows[n_rows++]);
  }
  if (err) {
    fprintf(stderr, "samepage bench snapshot: %s\n", sp_error_message(err));
    sp_error_free(err);
    sp_runtime_free(rt);
    return SP_EXIT_RUNTIME;
  }
  if (json) {
    printf("{\"bench\": \"snapshot\", \"backend\": \"%s\", \"rows\": [", sp_runtime_backend_name(rt));
    for (int i = 0; i < n_rows; i++)
      printf("%s{\"tokens\": %d, \"size_mb\": %.3f, \"save_ms\": %.2f, \"restore_ms\": %.3f, \"verify_ms\": %.3f, "
             "\"apply_ms\": %.3f, \"reprefill_ms\": %.2f, \"ratio\": %.1f, \"same_next_token\": %s}", i ? ", " : "",
             rows[i].n, rows[i].size_mb, rows[i].save_ms, rows[i].restore_ms, rows[i].verify_ms, rows[i].apply_ms,
             rows[i].prefill_ms, rows[i].prefill_ms / rows[i].restore_ms, rows[i].same_next ? "true" : "false");
    printf("]}\n");
  } else {
    printf("samepage bench snapshot (backend %s)\n", sp_runtime_backend_name(rt));
    printf("  %7s %10s %10s %12s %18s %13s %8s %10s\n", "tokens", "size MB", "save ms", "restore ms",
           "(verify + apply)", "re-prefill ms", "ratio", "next tok");
    for (int i = 0; i < n_rows; i++)
      printf("  %7d %10.2f %10.2f %12.3f %8.2f + %7.2f %13.2f %7.1fx %10s\n", rows[i].n, rows[i].size_mb,
             rows[i].save_ms, rows[i].restore_ms, rows[i].verify_ms, rows[i].apply_ms, rows[i].prefill_ms,
             rows[i].prefill_ms / rows[i].restore_ms, rows[i].same_next ? "same" : "DIFFERS");
  }
  sp_runtime_free(rt);
  return 0;
}
