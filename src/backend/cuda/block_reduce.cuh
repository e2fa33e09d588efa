/*
 * block_reduce.cuh (private): a float reduced over one thread block, for the
 * row-wise kernels (norm.cu, softmax_argmax.cu). The order of the sum is
 * fixed by the block's shape, so a row gives the same bits every run.
 */
#ifndef SP_CU_BLOCK_REDUCE_CUH
#define SP_CU_BLOCK_REDUCE_CUH

#include <math.h>

#include "backend/cuda/cuda_common.cuh"

/* Sum of v over the block (blockDim.x a multiple of 32, <= 1024). */
static __device__ __forceinline__ float block_sum(float v, float *shared32) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = sp_cu_warp_sum(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < nw ? shared32[lane] : 0.0f;
  return sp_cu_warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float *shared32) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = sp_cu_warp_max(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < nw ? shared32[lane] : -INFINITY;
  return sp_cu_warp_max(v);
}

#endif
