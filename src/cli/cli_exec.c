/*
 * cli_exec.c: `samepage exec GUEST.wasm [args...]` runs any WASI guest.
 *
 * Exit status: the guest's own exit code; 2 for a bad command line; 125 when
 * samepage fails before or outside the guest (missing file, not wasm,
 * instantiation failure); 134 when the guest traps (the message and its wasm
 * backtrace go to stderr); 124 when the guest ran past --timeout or
 * --cpu-timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file_open.h"
#include "samepage.h"

#define MAX_DIRS 64

typedef struct exec_args {
  const char *backend;
  const char *isolation;
  const char *dirs[MAX_DIRS];
  int n_dirs;
  uint64_t memory_limit;
  unsigned threads;
  uint32_t timeout_ms;
  uint32_t cpu_timeout_ms;
  int guest_index; /* argv index of GUEST.wasm */
} exec_args;

static void exec_usage(FILE *out) {
  fprintf(out,
          "usage: samepage exec [options] [--] GUEST.wasm [args...]\n"
          "  --dir DIR             give the guest access to DIR (repeatable)\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --memory-limit SIZE   cap the guest's linear memory, e.g. 256M (default 4G)\n"
          "  --threads N           CPU backend threads (default: all cores)\n"
          "  --isolation none|process  run the backend in a worker process (default none)\n"
          "  --timeout SECONDS     stop the guest after this much wall-clock time (e.g. 2.5)\n"
          "  --cpu-timeout SECONDS stop the guest after its thread used this much CPU time\n"
          "  -h, --help            this message\n"
          "Options end at GUEST.wasm (or --); what follows is the guest's own argv.\n");
}

/* The options above that take a value (all but --help). */
static const char *const exec_value_options[] = {"--dir", "--backend", "--memory-limit", "--threads", "--isolation",
                                                 "--timeout", "--cpu-timeout", NULL};

/* Returns 0, -1 after --help, or an exit code to stop with. */
static int parse_exec_args(int argc, char **argv, exec_args *a) {
  memset(a, 0, sizeof *a);
  a->backend = "auto";
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *opt = argv[i];
    if (sp_cli_is_help(opt)) {
      exec_usage(stdout);
      return -1;
    }
    if (!strcmp(opt, "--")) {
      i++;
      break;
    }
    if (!sp_cli_is_one_of(opt, exec_value_options)) return sp_cli_unknown_option("exec", opt, exec_usage);
    const char *val = sp_cli_option_value("exec", argc, argv, &i, exec_usage);
    if (!val) return SP_EXIT_USAGE;
    if (!strcmp(opt, "--dir")) {
      if (a->n_dirs == MAX_DIRS) {
        fprintf(stderr, "samepage exec: at most %d --dir options\n", MAX_DIRS);
        return SP_EXIT_USAGE;
      }
      a->dirs[a->n_dirs++] = val;
    } else if (!strcmp(opt, "--backend")) {
      a->backend = val;
    } else if (!strcmp(opt, "--isolation")) {
      a->isolation = val;
    } else if (!strcmp(opt, "--memory-limit")) {
      if (sp_cli_parse_size(val, &a->memory_limit) || a->memory_limit == 0) {
        fprintf(stderr, "samepage exec: --memory-limit: \"%s\" is not a size like 256M\n", val);
        return SP_EXIT_USAGE;
      }
    } else if (!strcmp(opt, "--threads")) {
      char *end;
      long n = strtol(val, &end, 10);
      if (*end || n < 1 || n > 1024) {
        fprintf(stderr, "samepage exec: --threads: \"%s\" is not 1..1024\n", val);
        return SP_EXIT_USAGE;
      }
      a->threads = (unsigned)n;
    } else if (!strcmp(opt, "--timeout")) {
      if (sp_cli_parse_timeout(val, &a->timeout_ms)) {
        fprintf(stderr, "samepage exec: --timeout: \"%s\" is not a number of seconds in (0, 4000000]\n", val);
        return SP_EXIT_USAGE;
      }
    } else if (!strcmp(opt, "--cpu-timeout")) {
      if (sp_cli_parse_timeout(val, &a->cpu_timeout_ms)) {
        fprintf(stderr, "samepage exec: --cpu-timeout: \"%s\" is not a number of seconds in (0, 4000000]\n", val);
        return SP_EXIT_USAGE;
      }
    }
  }
  if (i >= argc) {
    fprintf(stderr, "samepage exec: missing GUEST.wasm\n");
    exec_usage(stderr);
    return SP_EXIT_USAGE;
  }
  a->guest_index = i;
  return 0;
}

int sp_cli_parse_timeout(const char *text, uint32_t *ms) {
  char *end;
  double seconds = strtod(text, &end);
  if (end == text || *end || !(seconds > 0) || seconds > 4e6) return -1;
  double millis = seconds * 1000.0;
  *ms = millis < 1 ? 1 : (uint32_t)(millis + 0.5);
  return 0;
}

int sp_cli_exit_code(const sp_error_t *err, int otherwise) {
  switch (sp_error_kind(err)) {
  case SP_ERROR_TIMEOUT: return SP_EXIT_TIMEOUT;
  case SP_ERROR_TRAP: return SP_EXIT_TRAP;
  default: return otherwise;
  }
}

static int fail_with(sp_error_t *err, const char *what, int code) {
  fprintf(stderr, "samepage: %s: %s\n", what, sp_error_message(err));
  sp_error_free(err);
  return code;
}

int sp_cli_exec(int argc, char **argv) {
  exec_args a;
  int rc = parse_exec_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  const char *path = argv[a.guest_index];
  size_t len = 0;
  uint8_t *wasm = NULL;
  /* A regular file only: a FIFO or a device would hang here. */
  sp_error_t *err = sp_read_regular(path, SP_OPEN_NONEMPTY, &wasm, &len);
  if (err) return fail_with(err, "cannot read the guest", SP_EXIT_RUNTIME);

  sp_runtime_options ropts = {.backend = a.backend, .threads = a.threads, .isolation = a.isolation, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  err = sp_runtime_new(&ropts, &rt);
  if (err) {
    free(wasm);
    return fail_with(err, "cannot start the runtime", SP_EXIT_RUNTIME);
  }
  sp_actor_options aopts = {.argv = (const char *const *)argv + a.guest_index,
                            .argc = argc - a.guest_index,
                            .dirs = a.dirs,
                            .n_dirs = a.n_dirs,
                            .memory_limit = a.memory_limit,
                            .inherit_stdio = true,
                            .timeout_ms = a.timeout_ms,
                            .cpu_timeout_ms = a.cpu_timeout_ms,
                            .timeout_exit_grace_ms = 200};
  sp_actor_t *actor = NULL;
  err = sp_actor_new(rt, wasm, len, &aopts, &actor);
  free(wasm);
  if (err) {
    sp_runtime_free(rt);
    return fail_with(err, path, sp_cli_exit_code(err, SP_EXIT_RUNTIME));
  }
  int exit_code = 0;
  err = sp_actor_run_main(actor, &exit_code);
  if (err) exit_code = fail_with(err, path, sp_cli_exit_code(err, SP_EXIT_TRAP));
  fflush(stdout);
  sp_actor_free(actor);
  sp_runtime_free(rt);
  return exit_code;
}
