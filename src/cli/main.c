/*
 * main.c: `samepage <command> ...` dispatch and shared CLI helpers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/knobs.h"
#include "samepage.h"

/* The environment's settings, read once at the start (knobs.h). */
static struct sp_knobs knobs;

const struct sp_knobs *sp_cli_knobs(void) { return &knobs; }

static void main_usage(FILE *out) {
  fprintf(out,
          "usage: samepage <command> [options]\n"
          "\n"
          "commands (samepage <command> --help lists a command's options):\n"
          "  run [PROMPT]                 chat with a GGUF model: one answer, or an interactive chat\n"
          "  serve                        an OpenAI-compatible HTTP server; conversations are actors\n"
          "  exec GUEST.wasm [args...]    run a WASI guest; exits with the guest's exit code\n"
          "  kv export S.snap OUT.safetensors\n"
          "                               a saved conversation's KV cache as safetensors\n"
          "  kv import S.snap IN.safetensors OUT.snap\n"
          "                               write such a KV cache into a saved conversation\n"
          "  bench zerocopy               prove and measure the zero-copy path\n"
          "  bench snapshot               snapshot save/restore against re-prefill\n"
          "  bench actors                 memory of many LLM actors sharing one model\n"
          "  bench prefill                prompt processing speed, as llama-bench's pp test\n"
          "  bench soak                   memory soak: actors generating for a long time\n"
          "  help                         this message\n");
}

bool sp_cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

bool sp_cli_is_one_of(const char *arg, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (!strcmp(arg, names[i])) return true;
  return false;
}

int sp_cli_unknown_option(const char *cmd, const char *opt, sp_cli_usage_fn *usage) {
  fprintf(stderr, "samepage %s: unknown option %s\n", cmd, opt);
  usage(stderr);
  return SP_EXIT_USAGE;
}

int sp_cli_unexpected_argument(const char *cmd, const char *arg, sp_cli_usage_fn *usage) {
  fprintf(stderr, "samepage %s: unexpected argument \"%s\"\n", cmd, arg);
  usage(stderr);
  return SP_EXIT_USAGE;
}

const char *sp_cli_option_value(const char *cmd, int argc, char **argv, int *i, sp_cli_usage_fn *usage) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "samepage %s: %s needs a value\n", cmd, argv[*i]);
    usage(stderr);
    return NULL;
  }
  return argv[++*i];
}

int sp_cli_next_option(const char *cmd, int argc, char **argv, int *i, const char *const *flags,
                       const char *const *valued, sp_cli_usage_fn *usage, const char **val) {
  const char *opt = argv[*i];
  *val = NULL;
  if (sp_cli_is_help(opt)) {
    usage(stdout);
    return -1;
  }
  if (sp_cli_is_one_of(opt, flags)) return 0;
  if (sp_cli_is_one_of(opt, valued)) return (*val = sp_cli_option_value(cmd, argc, argv, i, usage)) ? 0 : SP_EXIT_USAGE;
  if (opt[0] == '-') return sp_cli_unknown_option(cmd, opt, usage);
  return sp_cli_unexpected_argument(cmd, opt, usage);
}

long sp_cli_proc_kb(const char *file, const char *key) {
  FILE *f = fopen(file, "r");
  char line[256];
  long kb = -1;
  size_t klen = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, klen) && line[klen] == ':') kb = strtol(line + klen + 1, NULL, 10);
  if (f) fclose(f);
  return kb;
}

int sp_cli_parse_size(const char *text, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno || end == text || text[0] == '-') return -1;
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
  }
  if (*end == 'i' || *end == 'B') end++;
  if (*end == 'B') end++;
  if (*end || value > (UINT64_MAX >> shift)) return -1;
  *out = (uint64_t)value << shift;
  return 0;
}

int main(int argc, char **argv) {
  sp_error_t *err = sp_knobs_from_env(&knobs);
  if (err) { /* a bad value is refused, never read as 0 or the default */
    fprintf(stderr, "samepage: %s (docs/KNOBS.md)\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_USAGE;
  }
  if (argc < 2) {
    main_usage(stderr);
    return SP_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "exec")) return sp_cli_exec(argc - 1, argv + 1);
  if (!strcmp(cmd, "run")) return sp_cli_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "kv")) return sp_cli_kv(argc - 1, argv + 1);
  if (!strcmp(cmd, "serve")) return sp_cli_serve(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return sp_cli_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "help") || sp_cli_is_help(cmd)) {
    main_usage(stdout);
    return 0;
  }
  if (cmd[0] == '-') fprintf(stderr, "samepage: unknown option %s\n", cmd);
  else fprintf(stderr, "samepage: unknown command \"%s\"\n", cmd);
  main_usage(stderr);
  return SP_EXIT_USAGE;
}

sp_error_t *sp_cli_call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out) {
  int64_t args[2] = {x, y};
  return sp_actor_call(a, fn, args, (size_t)nargs, out);
}

int sp_cli_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
