/*
 * main.c: `samepage <command> ...` dispatch and shared CLI helpers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "samepage.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: samepage <command> [options]\n"
          "\n"
          "commands:\n"
          "  run [PROMPT]                chat with a GGUF model (see samepage run --help)\n"
          "  exec GUEST.wasm [args...]   run a WASI guest (see samepage exec --help)\n"
          "  kv export|import ...        a conversation's KV cache as safetensors\n"
          "  bench zerocopy [--json]     prove and measure the zero-copy path\n"
          "  bench snapshot [--json]     snapshot save/restore vs re-prefill\n"
          "  help                        this message\n");
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
  if (argc < 2) {
    usage(stderr);
    return SP_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "exec")) return sp_cli_exec(argc - 1, argv + 1);
  if (!strcmp(cmd, "run")) return sp_cli_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "kv")) return sp_cli_kv(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return sp_cli_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "samepage: unknown command \"%s\"\n", cmd);
  usage(stderr);
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
