/*
 * embed.c: the smallest program that embeds samepage, built against an
 * installed tree only (test_install.sh builds it with pkg-config and with
 * find_package(samepage)). It creates a runtime on the CPU backend, prints
 * the backend and isolation it got, and, given a guest, runs it to its exit
 * with this process's stdio.
 *
 * usage: embed [none|process [GUEST.wasm [GUEST ARGS...]]]
 * Exits with the guest's exit code, 0 without a guest, 1 on an error.
 */
#include <stdio.h>
#include <stdlib.h>

#include <samepage.h>

/* Reads a whole file into a new buffer (the caller frees it); NULL on failure. */
static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *buf = NULL;
  long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (size > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size))) {
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
      free(buf);
      buf = NULL;
    }
  }
  fclose(f);
  *len = size > 0 ? (size_t)size : 0;
  return buf;
}

/* Prints err's message under `what`, frees it; 1 when there was an error. */
static int report(const char *what, sp_error_t *err) {
  if (!err) return 0;
  fprintf(stderr, "embed: %s: %s\n", what, sp_error_message(err));
  sp_error_free(err);
  return 1;
}

/* Runs the guest at argv[0] (its own argv) in a new actor; its exit code, or 1. */
static int run_guest(sp_runtime_t *rt, int argc, char **argv) {
  size_t len = 0;
  uint8_t *wasm = read_file(argv[0], &len);
  if (!wasm) {
    fprintf(stderr, "embed: cannot read %s\n", argv[0]);
    return 1;
  }
  sp_actor_options opts = {.argv = (const char *const *)argv, .argc = argc, .inherit_stdio = true};
  sp_actor_t *actor = NULL;
  int code = 1;
  if (!report("sp_actor_new", sp_actor_new(rt, wasm, len, &opts, &actor))) {
    if (!report("sp_actor_run_main", sp_actor_run_main(actor, &code))) printf("embed: guest exited with %d\n", code);
    sp_actor_free(actor);
  }
  free(wasm);
  return code;
}

int main(int argc, char **argv) {
  /* A runtime on the CPU backend; isolation from the command line. */
  sp_runtime_options opts = {.backend = "cpu", .isolation = argc > 1 ? argv[1] : "none"};
  sp_runtime_t *rt = NULL;
  if (report("sp_runtime_new", sp_runtime_new(&opts, &rt))) return 1;
  printf("embed: backend %s, isolation %s\n", sp_runtime_backend_name(rt), sp_runtime_isolation(rt));
  fflush(stdout);

  /* The guest: its argv is its path and the arguments after it. */
  int code = argc > 2 ? run_guest(rt, argc - 2, argv + 2) : 0;
  sp_runtime_free(rt);
  return code;
}
