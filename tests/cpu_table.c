/*
 * cpu_table.c: can this machine run the CPU kernel table NAME?
 *
 * Usage: cpu_table NAME   ("generic", "avx2", "avx512", "neon")
 * Exits 0 when it can, and a CPU backend made with SP_CPU_SIMD=NAME then
 * computes with exactly that table; 77 (skip) when this CPU or build lacks
 * it; 1 when the table exists but SP_CPU_SIMD=NAME would select another
 * one (a test run under it would test the wrong code). with_cpu_table.sh
 * runs it before a model-level test, so a missing table is a skip and
 * never a pass on a lower one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: cpu_table NAME\n");
    return 2;
  }
  if (!sp_cpu_kernels_by_name(argv[1])) {
    printf("SKIP: this CPU cannot run the %s kernel table\n", argv[1]);
    return 77;
  }
  sp_backend *be = NULL;
  sp_error_t *err = sp_backend_cpu_new_simd(1, argv[1], &be); /* as SP_CPU_SIMD=NAME passes it down */
  if (err) {
    fprintf(stderr, "cpu_table: %s\n", sp_error_message(err));
    sp_error_free(err);
    return 1;
  }
  const char *got = sp_backend_cpu_simd(be);
  int rc = strcmp(got, argv[1]) ? 1 : 0;
  if (rc) fprintf(stderr, "cpu_table: SP_CPU_SIMD=%s selects the %s table\n", argv[1], got);
  sp_backend_free(be);
  return rc;
}
