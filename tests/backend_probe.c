/*
 * backend_probe.c: can this machine create backend NAME?
 *
 * Usage: backend_probe NAME   ("vulkan", "cuda", ...)
 * Creates the backend as samepage would (sp_backend_load, with the knobs
 * of the environment: SP_VULKAN_LIB, SP_VULKAN_DEVICE, ...) and frees it.
 * Exits 0 when it can; 77 (skip) when it cannot, the reason printed: no
 * library built, no loader, no device. with_backend.sh runs it before a
 * test that needs the backend, so a machine without one skips that test
 * instead of failing it, while a machine that has one runs it in full.
 */
#include <stdio.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/knobs.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: backend_probe NAME\n");
    return 2;
  }
  sp_backend_options opts = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true};
  sp_error_t *err = sp_knobs_from_env(&opts.knobs);
  if (err) {
    fprintf(stderr, "backend_probe: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 2;
  }
  sp_backend *be = NULL;
  err = sp_backend_load(argv[1], &opts, 1, &be);
  if (err) {
    printf("SKIP: no %s backend here: %s\n", argv[1], sp_error_message(err));
    sp_error_free(err);
    return 77;
  }
  printf("%s backend: available\n", sp_backend_name(be));
  sp_backend_free(be);
  return 0;
}
