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
 *
 * Numerics contract. Every table computes the same bits as the generic one
 * (the reference), for every input, whatever nx is. That keeps an actor's
 * tokens the same on every CPU, and a row's result independent of the rows
 * batched beside it. The order of float operations is part of the
 * interface, and it is ggml's AVX2 order (one 8-float accumulator, fused
 * multiply-adds), the one llama.cpp's reference outputs were made with:
 * agreement with them (tests/test_llm_greedy.c) is measured, and every
 * other order we tried moved argmaxes of clear margin.
 *
 *  1. Fused multiply-adds exactly where the contract says fma (fmaf in
 *     C, an FMA instruction in SIMD), and nowhere else: the CPU sources
 *     build with -ffp-contract=off so the compiler cannot fuse on its own.
 *  2. Float dots (f32, f16, bf16 weights; weights widen exactly to f32):
 *     8 lanes; lane l = fma(w[i], x[i], lane l) for i = l, l + 8, ...,
 *     from +0. The lanes then reduce in a fixed tree (sp_cpu_lanes8_sum):
 *     ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
 *  3. Quantized dots (Q8_0, Q4_0, Q4_1 against sp_q8_act): per block b,
 *     eight exact integer partials P[b][l] = sum of w*x over elements
 *     4l..4l+3 (weights as integers: Q4_0 nibble - 8, Q4_1 nibble 0..15),
 *     and the scale s_b = dw_b * dx_b (one rounding); lane l = fma(s_b,
 *     (float)P[b][l], lane l) block after block, reduced as in 2. Q4_1
 *     also keeps m = fma(mw_b, sx_b, m) block after block and adds it
 *     last. Eight partials are what one maddubs/madd pair, one VNNI dpbusd
 *     or two SDOTs give, so no table pays for them.
 *     The issue-15 types (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 *     IQ4_NL, IQ4_XS) follow the same scheme per 32-element activation
 *     block b, which is slice b % S of weight block b / S (S = 1 for the
 *     32-element types, 8 for the 256-element ones; quant_blocks.h gives
 *     every type as integers q, sub-block scales sc and mins mn, in
 *     element order). Lane l covers elements 4l..4l+3, which lie in one
 *     16-element half h = l / 4, so its exact integer partial is
 *     P[b][l] = sc_h * sum(q * x) over those four (sc = 1 where a type has
 *     none; |P| < 2^22, so (float)P is exact). The float operations are
 *     point 3's: s_b = d_w * dx_b (d_w the block's f16 super-scale), lane l
 *     = fma(s_b, (float)P[b][l], lane l), reduced as in 2. Mins:
 *       Q5_1 (as Q4_1): m = fma(mw_b, sx_b, m); result = lanes + m.
 *       Q2_K, Q4_K, Q5_K: eight more lanes, like the first: the exact
 *       integer M[b][l] = mn_h * sum(x) over elements 4l..4l+3; lane l =
 *       fma(dmin_w * dx_b, (float)M[b][l], lane l) (dmin_w * dx_b one
 *       rounding) block after block; result = (lanes reduced as in 2) -
 *       (min lanes reduced as in 2). One maddubs/madd pair or one dpbusd
 *       of the splatted min and the activations gives M.
 *     The others have no min term.
 *  4. Activation quantization (quantize_q8), per block of 32: amax =
 *     max |x| over the non-NaN elements; id = amax > 0 ? 127 / amax : 0;
 *     q = round-half-even(x * id) clamped to [-127, 127], and 0 where
 *     x * id is NaN; d = amax / 127, or NaN if any x is NaN. So NaN and
 *     infinities give NaN or infinite results, never undefined behaviour
 *     (no out-of-range float-to-int conversion, no integer overflow).
 *  5. add, mul and scale are one IEEE operation per element.
 *
 * One accumulator chain per row is latency-bound for a single row, yet a
 * decode matvec streams its weights from memory and is bound by that, not
 * by the chain: running four weight rows at once, to hide the latency,
 * was measured slower (SmolLM2, 2-core EPYC: 110 against 175 tok/s), as
 * four interleaved row streams defeat the prefetcher. A prompt (several
 * activation rows) is another matter: there each weight row meets many
 * activation rows from cache, and the optional gemm entries tile over
 * weight rows and activation rows at once (kernels_avx2_tiles.c,
 * kernels_avx512_tiles.c), which changes no single output's operations.
 *
 * What is not bit-exact across machines: expf/sinf/cosf come from the C
 * library, which may pick its own variant per CPU (glibc does); ops that
 * use them (softmax, swiglu, rope) are exact across tables on one machine.
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
#define SP_Q5_0_BYTES 22  /* f16 d, uint32 qh (fifth bits), uint8 qs[16] */
#define SP_Q5_1_BYTES 24  /* f16 d, f16 m, uint32 qh, uint8 qs[16] */
#define SP_QK_K 256       /* elements per K-quant super-block */
#define SP_Q4_K_BYTES 144 /* f16 d, f16 dmin, scales[12], qs[128] */
#define SP_Q5_K_BYTES 176 /* f16 d, f16 dmin, scales[12], qh[32], qs[128] */
#define SP_Q6_K_BYTES 210 /* ql[128], qh[64], int8 scales[16], f16 d */

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

/* The block of products d[j][i] = dot(weight row i, activation row j) for
 * i < nw, j < nx (any counts >= 1): weight rows w_stride bytes apart,
 * sp_q8_act rows x_stride apart, output rows of floats d_stride bytes
 * apart. Each element is bit for bit the dot table's (the numerics
 * contract above): a gemm only shares decoding and loads across the block. */
typedef void (*sp_gemm_fn)(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);

typedef struct sp_cpu_kernels {
  const char *name; /* "generic", "avx2", "avx512", "neon" */
  sp_dot_fn dot[SP_DTYPE_COUNT]; /* by weight dtype; NULL if unsupported */
  /* (optional) by quantized weight dtype, for prompts (several activation
   * rows); NULL: the driver loops over dot in groups of SP_CPU_MAX_NX. */
  sp_gemm_fn gemm[SP_DTYPE_COUNT];
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

/* Fills the gemm entries of the AVX-512 VNNI loops (kernels_avx512_tiles.c;
 * x86 builds only, for a CPU with AVX-512 VNNI). */
void sp_cpu_avx512_vnni_gemms(sp_gemm_fn *gemm);

/* The AVX2 table's gemm entries (kernels_avx2_tiles.c; x86 builds only). */
void sp_cpu_avx2_gemm_q8_0(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q5_0(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q4_k(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q6_k(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q5_k(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q3_k(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q2_k(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q4_0(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q4_1(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);
void sp_cpu_avx2_gemm_q5_1(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *x,
                           size_t x_stride, int64_t nx, float *d, size_t d_stride);

/* The table called `name` ("generic", "avx2", "avx512", "neon") if this
 * build has it and this CPU runs it; NULL otherwise. */
const sp_cpu_kernels *sp_cpu_kernels_by_name(const char *name);

/* The best table this CPU runs, capped by simd ("generic", "avx2",
 * "avx512", "neon"; NULL or "auto" = best; the knob SP_CPU_SIMD). Never NULL. */
const sp_cpu_kernels *sp_cpu_kernels_select(const char *simd);

/* Sets a quantized activation block's scale and sum the way ggml stores
 * them: rounded to f16. Matching that rounding keeps our dot products
 * within float-summation noise of llama.cpp's, so greedy decoding agrees. */
static inline void sp_q8_act_set_scale(sp_q8_act *y, float d, int32_t sum) {
  y->d = sp_f16_to_f32(sp_f32_to_f16(d));
  y->s = sp_f16_to_f32(sp_f32_to_f16(d * (float)sum));
}

/* The fixed reduction of the contract's 8 lanes (points 2 and 3). */
static inline float sp_cpu_lanes8_sum(const float a[8]) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Whether `dtype` is a block-quantized weight type (its matmul runs on
 * sp_q8_act activations). */
static inline int sp_cpu_is_quantized(uint32_t dtype) {
  switch (dtype) {
  case SP_DTYPE_Q8_0:
  case SP_DTYPE_Q4_0:
  case SP_DTYPE_Q4_1:
  case SP_DTYPE_Q5_0:
  case SP_DTYPE_Q5_1:
  case SP_DTYPE_Q2_K:
  case SP_DTYPE_Q3_K:
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K:
  case SP_DTYPE_Q6_K:
  case SP_DTYPE_IQ4_NL:
  case SP_DTYPE_IQ4_XS: return 1;
  default: return 0;
  }
}

#endif
