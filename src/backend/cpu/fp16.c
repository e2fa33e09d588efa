/* fp16.c: row conversions between f32 and f16/bf16 (F16C when present). */
#include "backend/cpu/fp16.h"

#include <stdatomic.h>
#include <stdbool.h>

#include "backend/cpu/simd.h"

#if defined(SP_CPU_X86)
#include <cpuid.h>

/* F16C needs AVX state saved by the OS; "avx" in libgcc's sense checks that. */
static bool have_f16c(void) {
  static _Atomic int cached; /* 0 unknown, 1 no, 2 yes */
  int v = atomic_load_explicit(&cached, memory_order_relaxed);
  if (v == 0) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    bool ok = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    v = ok ? 2 : 1;
    atomic_store_explicit(&cached, v, memory_order_relaxed);
  }
  return v == 2;
}

SP_TARGET_AVX2 static size_t f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  return i;
}

SP_TARGET_AVX2 static size_t f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  return i;
}
#endif

void sp_cpu_f16_to_f32_row(const uint16_t *src, float *dst, size_t n) {
  size_t i = 0;
#if defined(SP_CPU_X86)
  if (have_f16c()) i = f16_to_f32_f16c(src, dst, n);
#endif
  for (; i < n; i++) dst[i] = sp_f16_to_f32(src[i]);
}

void sp_cpu_f32_to_f16_row(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
#if defined(SP_CPU_X86)
  if (have_f16c()) i = f32_to_f16_f16c(src, dst, n);
#endif
  for (; i < n; i++) dst[i] = sp_f32_to_f16(src[i]);
}

void sp_cpu_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = sp_bf16_to_f32(src[i]);
}

void sp_cpu_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = sp_f32_to_bf16(src[i]);
}
