/*
 * gated.cuh: the two gated activations of a feed-forward block, per
 * element, as the CPU's activations.c computes them (ggml's CPU numerics).
 * Shared by the elementwise kernel and the fused gate-and-quantize launch
 * (matmul.cu), so both give the same bits.
 *
 * __fmul_rn / __fadd_rn keep nvcc from fusing what the CPU rounds twice.
 * Only tanhf differs (the CUDA library's, within 2 ulps), which GEGLU's
 * rounding to f16 hides but where the two round to neighbouring f16 values.
 */
#ifndef SP_CUDA_GATED_CUH
#define SP_CUDA_GATED_CUH

#include <cuda_fp16.h>

/* silu(x) * g */
static __device__ __forceinline__ float sp_cu_swiglu(float x, float g) { return x / (1.0f + expf(-x)) * g; }

/* gelu(x), tanh form, evaluated as activations.c's sp_cpu_gelu_tanh:
 * 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x x))), left to right. */
static __device__ __forceinline__ float sp_cu_gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
  float inner = __fadd_rn(1.0f, __fmul_rn(__fmul_rn(coef_a, x), x));
  float t = tanhf(__fmul_rn(__fmul_rn(sqrt_2_over_pi, x), inner));
  return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, t));
}

/* ggml-cpu's GEGLU for f32: 0 at x <= -10, x * g at x >= 10, otherwise
 * gelu of x rounded to f16, itself rounded to f16, times g (its table). */
static __device__ __forceinline__ float sp_cu_geglu(float x, float g) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return __fmul_rn(x, g);
  float x16 = __half2float(__float2half_rn(x));
  return __fmul_rn(__half2float(__float2half_rn(sp_cu_gelu_tanh(x16))), g);
}

#endif
