/*
 * kernels.h: the table of inner loops one instruction set provides.
 *
 * Drivers (matmul.c, elementwise.c) do the shapes, strides and threading;
 * the loops here see only contiguous rows. One table exists per instruction
 * set (generic C, AVX2, AVX-512, NEON), and sp_cpu_kernels_select picks one
 * at backend creation from the CPU and SP_CPU_SIMD.
 *
 * Weight blocks follow GGUF/ggml and are read byte-wise: offsets of guest
 * tensors are only 2-byte aligned. Quantized matmuls first turn each f32
 * activation row into sp_q8_act blocks (in backend scratch memory), so the
 * inner loops are integer dot products.
 */
#ifndef SP_CPU_KERNELS_H
#define SP_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/fp16.h"
#include "samepage_abi.h"

/* Most activation rows one dot call handles (the register tile). */
#define SP_CPU_MAX_NX 4

#define SP_QK 32          /* elements per quantized block */
#define SP_Q8_0_BYTES 34  /* f16 d, int8 qs[32] */
#define SP_Q4_0_BYTES 18  /* f16 d, uint8 qs[16]: element j low nibble, j + 16 high */
#define SP_Q4_1_BYTES 20  /* f16 d, f16 m, uint8 qs[16] */

/* One quantized block of activations: x[i] ~= d * qs[i], s = d * sum(qs). */
typedef struct sp_q8_act {
  float d;
  float s;
  int8_t qs[SP_QK];
} sp_q8_act;

/* out[j] = dot(weight row w, activation row j) for j < nx (1..SP_CPU_MAX_NX).
 * k is the row length in elements. Activation rows start x_stride bytes
 * apart and are f32 (weights f32/f16/bf16) or sp_q8_act blocks (quantized
 * weights). */
typedef void (*sp_dot_fn)(int64_t k, const void *w, const void *x, size_t x_stride, int nx,
                          float *out);

typedef struct sp_cpu_kernels {
  const char *name; /* "generic", "avx2", "avx512", "neon" */
  sp_dot_fn dot[SP_DTYPE_COUNT]; /* by weight dtype; NULL if unsupported */
  /* Quantizes k floats (k a multiple of 32) into k / 32 blocks. */
  void (*quantize_q8)(const float *x, sp_q8_act *y, int64_t k);
  /* d[i] = a[i] + b[i], a[i] * b[i], a[i] * s; d may equal a or b. */
  void (*add)(float *d, const float *a, const float *b, int64_t n);
  void (*mul)(float *d, const float *a, const float *b, int64_t n);
  void (*scale)(float *d, const float *a, float s, int64_t n);
} sp_cpu_kernels;

/* The per-instruction-set tables; NULL where the build cannot provide one. */
const sp_cpu_kernels *sp_cpu_kernels_generic(void);
const sp_cpu_kernels *sp_cpu_kernels_avx2(void);
const sp_cpu_kernels *sp_cpu_kernels_avx512(void);
const sp_cpu_kernels *sp_cpu_kernels_neon(void);

/* The best table this CPU runs, capped by SP_CPU_SIMD ("generic", "avx2",
 * "avx512", "neon"; unset or "auto" = best). Never NULL. */
const sp_cpu_kernels *sp_cpu_kernels_select(void);

/* Sets a quantized activation block's scale and sum the way ggml stores
 * them: rounded to f16. Matching that rounding keeps our dot products
 * within float-summation noise of llama.cpp's, so greedy decoding agrees. */
static inline void sp_q8_act_set_scale(sp_q8_act *y, float d, int32_t sum) {
  y->d = sp_f16_to_f32(sp_f32_to_f16(d));
  y->s = sp_f16_to_f32(sp_f32_to_f16(d * (float)sum));
}

/* Whether `dtype` is a block-quantized weight type (its matmul runs on
 * sp_q8_act activations). */
static inline int sp_cpu_is_quantized(uint32_t dtype) {
  return dtype == SP_DTYPE_Q8_0 || dtype == SP_DTYPE_Q4_0 || dtype == SP_DTYPE_Q4_1;
}

#endif
