/*
 * kernels_select.c: picks the kernel table for this CPU.
 *
 * The choice is made once per backend. A cap (SP_CPU_SIMD, passed down as
 * sp_backend_options.knobs.cpu_simd) limits it, so tests can
 * compare every table against "generic" on one machine, and a machine with
 * AVX-512 can still exercise the AVX2 code.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* AVX2 + FMA + F16C, with the OS saving YMM state (checked by libgcc). */
static bool cpu_has_avx2(void) {
  unsigned a, b, c, d;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static bool cpu_has_avx512(void) {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
#endif

/* Rank of a requested level: generic < avx2 < avx512 (neon stands alone:
 * anything but "generic" allows it). */
static int requested_level(const char *want) {
  if (!want || !*want || strcmp(want, "auto") == 0) return 2;
  if (strcmp(want, "generic") == 0) return 0;
  if (strcmp(want, "avx2") == 0) return 1;
  return 2; /* "avx512", "neon" or anything else: the best there is */
}

const sp_cpu_kernels *sp_cpu_kernels_by_name(const char *name) {
  if (strcmp(name, "generic") == 0) return sp_cpu_kernels_generic();
#if defined(__x86_64__) || defined(__i386__)
  if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? sp_cpu_kernels_avx2() : NULL;
  if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? sp_cpu_kernels_avx512() : NULL;
#endif
  if (strcmp(name, "neon") == 0) return sp_cpu_kernels_neon();
  return NULL;
}

const sp_cpu_kernels *sp_cpu_kernels_select(const char *simd) {
  int cap = requested_level(simd);
  if (cap == 0) return sp_cpu_kernels_generic();
#if defined(__x86_64__) || defined(__i386__)
  if (cap >= 2 && cpu_has_avx512()) return sp_cpu_kernels_avx512();
  if (cpu_has_avx2()) return sp_cpu_kernels_avx2();
#endif
  if (sp_cpu_kernels_neon()) return sp_cpu_kernels_neon();
  return sp_cpu_kernels_generic();
}
