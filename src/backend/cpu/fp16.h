/*
 * fp16.h: conversions between f32 and the 16-bit float formats.
 *
 * The scalar helpers are portable C, exact for every input (subnormals,
 * infinities and NaNs included) and round to nearest even on narrowing.
 * The row helpers pick F16C on x86 when the CPU has it.
 */
#ifndef SP_CPU_FP16_H
#define SP_CPU_FP16_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float sp_f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint32_t sp_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* IEEE binary16 -> f32 (exact). */
static inline float sp_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return sp_f32_from_bits(sign | 0x7f800000u | man << 13); /* inf, NaN */
  if (exp != 0) return sp_f32_from_bits(sign | (exp + 112) << 23 | man << 13);
  /* zero or subnormal: man * 2^-24 is exact in f32 */
  return sp_f32_from_bits(sign | sp_f32_bits((float)man * 0x1p-24f));
}

/* f32 -> IEEE binary16, rounding to nearest even; NaNs stay NaN. */
static inline uint16_t sp_f32_to_f16(float f) {
  uint32_t x = sp_f32_bits(f);
  uint16_t sign = (uint16_t)(x >> 16 & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u | (uint16_t)(ax >> 13 & 0x1ffu); /* NaN */
  if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
  if (ax < 0x38800000u) {
    /* below 2^-14: a multiple of 2^-24; scaling by 2^24 is exact, and 1024
     * (the rounding carry) is the encoding of the smallest normal */
    return sign | (uint16_t)nearbyintf(sp_f32_from_bits(ax) * 0x1p24f);
  }
  uint32_t r = ax - (112u << 23); /* rebias the exponent from 127 to 15 */
  r += 0xfffu + (r >> 13 & 1u);   /* round the 13 dropped bits to nearest even */
  return sign | (uint16_t)(r >> 13);
}

/* bfloat16 -> f32 (exact: bf16 is the top half of an f32). */
static inline float sp_bf16_to_f32(uint16_t h) { return sp_f32_from_bits((uint32_t)h << 16); }

/* f32 -> bfloat16, rounding to nearest even; NaNs stay NaN. */
static inline uint16_t sp_f32_to_bf16(float f) {
  uint32_t x = sp_f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(x >> 16 | 0x40u);
  return (uint16_t)((x + 0x7fffu + (x >> 16 & 1u)) >> 16);
}

/* Row conversions of n elements (F16C on x86 when available). */
void sp_cpu_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void sp_cpu_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);
void sp_cpu_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void sp_cpu_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

#endif
