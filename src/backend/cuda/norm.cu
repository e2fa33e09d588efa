/*
 * norm.cu: rmsnorm on the GPU, alone or fused with the add before it and
 * the quantization of its output for the next matmul (fuse.h). Numerics
 * follow the CPU's llm_ops.c.
 */
#include <math.h>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_common.cuh"

__global__ void rmsnorm_kernel(sp_cu_tensor d, sp_cu_tensor x, const float *w, float eps, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  const float *xr = (const float *)sp_cu_row(x, blockIdx.x);
  float *yr = (float *)sp_cu_row(d, blockIdx.x);
  uint32_t n = d.ne[0];
  float sum = 0;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
  sum = block_sum(sum, red);
  float scale = 1.0f / sqrtf(sum / (float)n + eps);
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

cudaError_t sp_cu_rmsnorm(const sp_cu_cmd *c) {
  int64_t rows = sp_cu_rows(c->dst); /* a 1-D grid holds 2^31 - 1 blocks */
  sp_cu_launch(rmsnorm_kernel, (unsigned)rows, 256, c->stream, c->dst, c->src[0], (const float *)c->src[1].p,
                                                        sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

#define SP_NORM_VALS 8 /* values per thread in the fused norm: rows up to 8192 */

/* rmsnorm of row blockIdx.x of dense f32 rows, the row held in registers.
 * ADD: the row is first a + b, stored to x (the add command folded in).
 * QUANT: the output is also quantized for the next matmul (rows a multiple
 * of 32 long, so each warp pass covers exactly one block). */
template <bool ADD, bool QUANT>
__global__ void __launch_bounds__(1024)
    rmsnorm_fused_kernel(sp_cu_tensor d, sp_cu_tensor x, const float *w, float eps, sp_cu_tensor a, sp_cu_tensor b,
                         sp_cu_qdst q, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  uint32_t r = blockIdx.x, n = d.ne[0];
  float *xr = (float *)(x.p + (size_t)r * x.nb[0]), *yr = (float *)(d.p + (size_t)r * d.nb[0]);
  const float *ar = ADD ? (const float *)(a.p + (size_t)r * a.nb[0]) : nullptr;
  const float *br = ADD ? (const float *)(b.p + (size_t)r * b.nb[0]) : nullptr;
  float v[SP_NORM_VALS], wv[SP_NORM_VALS], sum = 0;
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) { /* the weights load while the sum reduces */
    uint32_t i = threadIdx.x + k * blockDim.x;
    v[k] = wv[k] = 0;
    if (i >= n) continue;
    wv[k] = w[i];
    v[k] = ADD ? ar[i] + br[i] : xr[i];
    if (ADD) xr[i] = v[k];
    sum += v[k] * v[k];
  }
  sum = block_sum(sum, red);
  float scale = 1.0f / sqrtf(sum / (float)n + eps);
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) {
    uint32_t i = threadIdx.x + k * blockDim.x;
    if (i >= n) break; /* warp-uniform when QUANT: n % 32 == 0 */
    float y = v[k] * scale * wv[k];
    yr[i] = y;
    if (QUANT) {
      uint32_t blk = i / SP_CU_QK, nb = n / SP_CU_QK;
      sp_cu_quantize_block(y, q.xq + (size_t)r * n + blk * SP_CU_QK, q.xd + (size_t)r * nb + blk,
                           q.xs + (size_t)r * nb + blk);
    }
  }
}

cudaError_t sp_cu_rmsnorm_fused(const sp_cu_cmd *add, const sp_cu_cmd *norm, sp_cu_qdst q) {
  uint32_t n = norm->dst.ne[0], rows = norm->dst.ne[1];
  uint32_t threads = n >= 1024 ? 1024 : (n + 31) / 32 * 32;
  const float *w = (const float *)norm->src[1].p;
  float eps = sp_cu_f32(norm->cmd->param[0]);
  sp_cu_tensor a = add ? add->src[0] : sp_cu_tensor{}, b = add ? add->src[1] : sp_cu_tensor{};
  const sp_cu_tensor &d = norm->dst, &x = norm->src[0];
  if (add && q.xq)
    sp_cu_launch(rmsnorm_fused_kernel<true, true>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else if (add)
    sp_cu_launch(rmsnorm_fused_kernel<true, false>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else if (q.xq)
    sp_cu_launch(rmsnorm_fused_kernel<false, true>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else
    sp_cu_launch(rmsnorm_fused_kernel<false, false>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  return cudaGetLastError();
}
