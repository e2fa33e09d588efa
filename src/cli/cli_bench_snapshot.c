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

#include "core/clock.h"
#include "cli/cli.h"
#include "core/error.h"
#include "samepage.h"

typedef struct snap_row {
  int n;
  double prefill_ms, save_ms, restore_ms;
  double verify_ms, apply_ms; /* the median restore's two parts */
  double size_mb;
  bool same_next;
} snap_row;

static sp_error_t *measure(sp_runtime_t *rt, const char *model, int n, snap_row *row) {
  int ctx = n + 64 < 512 ? 512 : n + 64;
  sp_actor_t *a = NULL, *b = NULL;
  char path[] = "/tmp/samepage-bench-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  row->n = n;
  sp_error_t *err = sp_cli_llm_actor(rt, model, ctx, 256, &a);
  if (!err) err = sp_cli_llm_actor(rt, model, ctx, 256, &b);
  if (!err) err = sp_cli_llm_prefill(a, n, &row->prefill_ms);
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
    qsort(times, 5, sizeof times[0], sp_cli_cmp_double);
    qsort(verify, 5, sizeof verify[0], sp_cli_cmp_double);
    qsort(apply, 5, sizeof apply[0], sp_cli_cmp_double);
    row->restore_ms = times[2], row->verify_ms = verify[2], row->apply_ms = apply[2];
    int64_t ta, tb;
    err = sp_cli_call(a, "llm_step", 0, 0, 0, &ta);
    if (!err) err = sp_cli_call(b, "llm_step", 0, 0, 0, &tb);
    row->same_next = !err && ta == tb;
  }
  sp_actor_free(a);
  sp_actor_free(b);
  unlink(path);
  return err;
}

static void snapshot_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench snapshot [options]\n"
          "  --contexts N,N,...     prompt lengths to measure (default 24,512,4096; 1..32768, at most 8)\n"
          "  --model FILE           GGUF model (default: SmolLM2-135M-Instruct Q4_1)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n");
}

static const char *const snapshot_flags[] = {"--json", NULL};
static const char *const snapshot_valued[] = {"--contexts", "--model", "--backend", NULL};

int sp_cli_bench_snapshot(int argc, char **argv) {
  bool json = false;
  const char *backend = "auto", *model = NULL, *contexts = "24,512,4096";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i], *val;
    int rc = sp_cli_next_option("bench snapshot", argc, argv, &i, snapshot_flags, snapshot_valued, snapshot_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(opt, "--json")) json = true;
    else if (!strcmp(opt, "--backend")) backend = val;
    else if (!strcmp(opt, "--model")) model = val;
    else if (!strcmp(opt, "--contexts")) contexts = val;
  }
  if (!model) model = sp_cli_default_model();
  if (access(model, R_OK)) {
    fprintf(stderr, "samepage bench snapshot: model %s: cannot read it (scripts/fetch-model.sh)\n", model);
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = backend, .knobs = sp_cli_knobs()};
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
