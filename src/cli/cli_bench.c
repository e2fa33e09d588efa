/*
 * cli_bench.c: `samepage bench BENCHMARK ...` dispatch, and `samepage bench
 * zerocopy [--backend B] [--json]`, the seed's proof.
 *
 * Runs the embedded bench guest and measures, on the backend in use:
 *  - pointer identity: Wasmtime's memory base == the region base == the
 *    base the backend's kernels use;
 *  - RSS growth while a 16 MiB guest tensor is handed to the backend, through
 *    the zero-copy path and through a conventional copy (staged) path; both
 *    measured as peak RSS (VmHWM, reset through /proc/self/clear_refs) minus
 *    RSS before, in decimal MB (10^6 bytes: 16 MiB = 16.78 MB);
 *  - a 128 x 128 f32 matmul written, submitted and checked by the guest;
 *  - the cost of one submit host call (empty list, and a 1-op list);
 *  - the latency of that matmul through the zero-copy and the copy path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/actor_staged.h"
#include "core/clock.h"
#include "cli/cli.h"
#include "samepage.h"

extern const uint8_t sp_embedded_bench_zerocopy[], sp_embedded_bench_zerocopy_end[];

#define TENSOR_BYTES (16u << 20)
#define MATMUL_N 128

typedef struct zerocopy_result {
  char backend[32]; /* a copy: the name is the runtime's, freed with it */
  bool pointer_identity;
  uintptr_t memory_base, region_base;
  double rss_zero_copy_mb, rss_copy_mb;
  int matmul_errors, matmul_elements;
  double submit_empty_ns, submit_1op_ns;
  double matmul_zero_copy_us, matmul_copy_us;
} zerocopy_result;

static double now_us(void) { return sp_now_ms() * 1e3; }

/* Resets the peak-RSS counter so VmHWM measures only what follows. */
static bool reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok;
}

/* One command through the zero-copy path, or (staged) through a copy. */
static sp_error_t *submit_one(sp_actor_t *actor, const sp_cmd *cmd, bool staged) {
  return staged ? sp_actor_submit_staged(actor, cmd, 1) : sp_actor_submit(actor, cmd, 1);
}

/* Peak RSS growth in MB while `staged` hands the tensor to the backend. */
static sp_error_t *measure_rss(sp_actor_t *actor, const sp_cmd *cmd, bool staged, double *mb) {
  bool have_peak = reset_peak_rss();
  long before = sp_cli_proc_kb("/proc/self/status", "VmRSS");
  sp_error_t *err = submit_one(actor, cmd, staged);
  long after = have_peak ? sp_cli_proc_kb("/proc/self/status", "VmHWM") : sp_cli_proc_kb("/proc/self/status", "VmRSS");
  *mb = (after - before) * 1024.0 / 1e6; /* decimal MB, as the seed reports */
  return err;
}

/* A matmul that reads the whole tensor: w = tensor as [4096, rows], x one row. */
static sp_cmd tensor_consumer(uint32_t tensor, uint32_t x, uint32_t y) {
  uint32_t k = 4096, rows = TENSOR_BYTES / (4 * k);
  sp_cmd cmd = {.op = SP_OP_MATMUL};
  cmd.dst = (sp_tensor){y, SP_DTYPE_F32, {rows, 1, 1, 1}, {0}, 0};
  cmd.src[0] = (sp_tensor){tensor, SP_DTYPE_F32, {k, rows, 1, 1}, {0}, 0};
  cmd.src[1] = (sp_tensor){x, SP_DTYPE_F32, {k, 1, 1, 1}, {0}, 0};
  return cmd;
}

static sp_error_t *bench_rss(sp_actor_t *actor, zerocopy_result *r) {
  int64_t tensor, xy;
  sp_error_t *err = sp_cli_call(actor, "prepare_tensor", TENSOR_BYTES, 0, 1, &tensor);
  if (!err) err = sp_cli_call(actor, "prepare_tensor", 4096 * 4 + 1024 * 4, 0, 1, &xy);
  if (err) return err;
  if (!tensor || !xy) return NULL;
  sp_cmd cmd = tensor_consumer((uint32_t)tensor, (uint32_t)xy, (uint32_t)xy + 4096 * 4);
  /* Warm up both paths (thread pool, allocator) before measuring. */
  if ((err = sp_actor_submit(actor, &cmd, 1))) return err;
  if ((err = sp_actor_submit_staged(actor, &cmd, 1))) return err;
  if ((err = measure_rss(actor, &cmd, false, &r->rss_zero_copy_mb))) return err;
  return measure_rss(actor, &cmd, true, &r->rss_copy_mb);
}

/* Median latency of one host-side submit of cmd, in microseconds. */
static sp_error_t *median_submit_us(sp_actor_t *actor, const sp_cmd *cmd, bool staged, double *us) {
  enum { RUNS = 51 };
  double t[RUNS];
  for (int i = -5; i < RUNS; i++) {
    double start = now_us();
    sp_error_t *err = submit_one(actor, cmd, staged);
    if (err) return err;
    if (i >= 0) t[i] = now_us() - start;
  }
  qsort(t, RUNS, sizeof t[0], sp_cli_cmp_double);
  *us = t[RUNS / 2];
  return NULL;
}

static sp_error_t *bench_matmul(sp_actor_t *actor, zerocopy_result *r) {
  int64_t errors, base;
  sp_error_t *err = sp_cli_call(actor, "matmul_check", MATMUL_N, 0, 1, &errors);
  if (err) return err;
  r->matmul_errors = (int)errors;
  r->matmul_elements = MATMUL_N * MATMUL_N;
  if ((err = sp_cli_call(actor, "matmul_buffers", MATMUL_N, 0, 1, &base))) return err;
  uint32_t w = (uint32_t)base, bytes = MATMUL_N * MATMUL_N * 4;
  sp_cmd cmd = {.op = SP_OP_MATMUL};
  cmd.dst = (sp_tensor){w + 2 * bytes, SP_DTYPE_F32, {MATMUL_N, MATMUL_N, 1, 1}, {0}, 0};
  cmd.src[0] = (sp_tensor){w, SP_DTYPE_F32, {MATMUL_N, MATMUL_N, 1, 1}, {0}, 0};
  cmd.src[1] = (sp_tensor){w + bytes, SP_DTYPE_F32, {MATMUL_N, MATMUL_N, 1, 1}, {0}, 0};
  if ((err = median_submit_us(actor, &cmd, false, &r->matmul_zero_copy_us))) return err;
  return median_submit_us(actor, &cmd, true, &r->matmul_copy_us);
}

static sp_error_t *bench_submit(sp_actor_t *actor, zerocopy_result *r) {
  const int iters = 200000;
  int64_t ns;
  sp_error_t *err = sp_cli_call(actor, "submit_loop", 1000, 0, 2, &ns); /* warm-up */
  if (!err) err = sp_cli_call(actor, "submit_loop", iters, 0, 2, &ns);
  if (err) return err;
  r->submit_empty_ns = (double)ns / iters;
  if ((err = sp_cli_call(actor, "submit_loop", iters, 1, 2, &ns))) return err;
  r->submit_1op_ns = (double)ns / iters;
  return NULL;
}

static void print_json(const zerocopy_result *r) {
  printf("{\"bench\": \"zerocopy\", \"backend\": \"%s\", \"pointer_identity\": %s, "
         "\"memory_base\": \"0x%lx\", \"region_base\": \"0x%lx\", "
         "\"tensor_mb\": %.2f, \"rss_delta_zero_copy_mb\": %.3f, \"rss_delta_copy_mb\": %.3f, "
         "\"matmul_errors\": %d, \"matmul_elements\": %d, "
         "\"submit_overhead_ns\": %.1f, \"submit_1op_overhead_ns\": %.1f, "
         "\"matmul_zero_copy_us\": %.2f, \"matmul_copy_us\": %.2f}\n",
         r->backend, r->pointer_identity ? "true" : "false", (unsigned long)r->memory_base,
         (unsigned long)r->region_base, TENSOR_BYTES / 1048576.0, r->rss_zero_copy_mb,
         r->rss_copy_mb, r->matmul_errors, r->matmul_elements, r->submit_empty_ns,
         r->submit_1op_ns, r->matmul_zero_copy_us, r->matmul_copy_us);
}

static void print_table(const zerocopy_result *r) {
  printf("samepage bench zerocopy (backend %s)\n", r->backend);
  printf("  %-44s %s\n", "pointer identity (wasm base == backend base)",
         r->pointer_identity ? "yes" : "NO");
  printf("  %-44s %14s %14s\n", "", "zero-copy", "copy path");
  printf("  %-44s %11.3f MB %11.3f MB\n", "RSS growth handing over a 16 MiB tensor",
         r->rss_zero_copy_mb, r->rss_copy_mb);
  printf("  %-44s %11.2f us %11.2f us\n", "128x128 f32 matmul latency (median)",
         r->matmul_zero_copy_us, r->matmul_copy_us);
  printf("  %-44s %d / %d\n", "matmul errors (guest-checked)", r->matmul_errors, r->matmul_elements);
  printf("  %-44s %.1f ns\n", "submit overhead, empty list", r->submit_empty_ns);
  printf("  %-44s %.1f ns\n", "submit overhead, 1-op list (nop)", r->submit_1op_ns);
}

static sp_error_t *run_zerocopy(const char *backend, zerocopy_result *r) {
  sp_runtime_options ropts = {.backend = backend, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  if (err) return err;
  sp_actor_t *actor = NULL;
  size_t len = (size_t)(sp_embedded_bench_zerocopy_end - sp_embedded_bench_zerocopy);
  err = sp_actor_new(rt, sp_embedded_bench_zerocopy, len, NULL, &actor);
  if (!err) {
    snprintf(r->backend, sizeof r->backend, "%s", sp_runtime_backend_name(rt));
    if (!err) err = bench_rss(actor, r);
    if (!err) err = bench_matmul(actor, r);
    if (!err) err = bench_submit(actor, r);
    uint8_t *base;
    size_t size;
    sp_actor_memory(actor, &base, &size); /* re-read: the guest grew memory */
    r->memory_base = (uintptr_t)base;
    r->region_base = (uintptr_t)sp_actor_backend_base(actor);
    r->pointer_identity = base && r->memory_base == r->region_base;
  }
  sp_actor_free(actor);
  sp_runtime_free(rt);
  return err;
}

/* ---- the command line ---- */

static void bench_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench BENCHMARK [options]   (samepage bench BENCHMARK --help: its options)\n"
          "  zerocopy   prove and measure the zero-copy path: pointer identity, RSS, submit cost\n"
          "  snapshot   snapshot save/restore against re-prefill, per context length\n"
          "  actors     memory of many LLM actors sharing one model\n"
          "  prefill    prompt processing speed, as llama-bench's pp test\n"
          "  decode     token generation after a cache filled to given depths, as llama-bench's tg -d\n"
          "  batch      many conversations at once, cross-actor batching off and on (bit-exact check)\n"
          "  soak       memory soak: actors generating for a long time; fails if memory grows\n");
}

static void zerocopy_usage(FILE *out) {
  fprintf(out,
          "usage: samepage bench zerocopy [options]\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n"
          "Exit status 1 when pointer identity or the guest-checked matmul fails.\n");
}

static const char *const bench_names[] = {"zerocopy", "snapshot", "actors", "prefill", "decode", "batch", "soak", NULL};
static const char *const zerocopy_flags[] = {"--json", NULL}, *const zerocopy_valued[] = {"--backend", NULL};

/* `samepage bench zerocopy`; its name may also follow its options. */
static int bench_zerocopy(int argc, char **argv) {
  bool json = false, named = false;
  const char *backend = "auto";
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *val;
    if (!named && !strcmp(arg, "zerocopy")) { named = true; continue; }
    if (!named && arg[0] != '-') {
      if (sp_cli_is_one_of(arg, bench_names))
        fprintf(stderr, "samepage bench: the benchmark's name goes first: samepage bench %s [options]\n", arg);
      else fprintf(stderr, "samepage bench: unknown benchmark \"%s\"\n", arg);
      bench_usage(stderr);
      return SP_EXIT_USAGE;
    }
    int rc = sp_cli_next_option(named ? "bench zerocopy" : "bench", argc, argv, &i, zerocopy_flags, zerocopy_valued,
                                named ? zerocopy_usage : bench_usage, &val);
    if (rc) return rc < 0 ? 0 : rc;
    if (!strcmp(arg, "--json")) json = true;
    else if (!strcmp(arg, "--backend")) backend = val;
  }
  if (!named) {
    fprintf(stderr, "samepage bench: missing the benchmark: zerocopy, snapshot, actors, prefill, decode, batch or soak\n");
    bench_usage(stderr);
    return SP_EXIT_USAGE;
  }
  zerocopy_result r = {0};
  sp_error_t *err = run_zerocopy(backend, &r);
  if (err) {
    fprintf(stderr, "samepage bench zerocopy: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  if (json) print_json(&r);
  else print_table(&r);
  return r.pointer_identity && r.matmul_errors == 0 ? 0 : 1;
}

int sp_cli_bench(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  if (!strcmp(which, "snapshot")) return sp_cli_bench_snapshot(argc - 1, argv + 1);
  if (!strcmp(which, "actors")) return sp_cli_bench_actors(argc - 1, argv + 1);
  if (!strcmp(which, "soak")) return sp_cli_bench_soak(argc - 1, argv + 1);
  if (!strcmp(which, "prefill")) return sp_cli_bench_prefill(argc - 1, argv + 1);
  if (!strcmp(which, "decode")) return sp_cli_bench_decode(argc - 1, argv + 1);
  if (!strcmp(which, "batch")) return sp_cli_bench_batch(argc - 1, argv + 1);
  if (!strcmp(which, "help") || sp_cli_is_help(which)) {
    bench_usage(stdout);
    return 0;
  }
  return bench_zerocopy(argc, argv);
}
