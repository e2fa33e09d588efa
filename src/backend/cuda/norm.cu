/*
 * norm.cu: rmsnorm on the GPU, alone or fused (fuse.h) with the add before
 * it (and a norm of the add's operand before that), the quantization of its
 * output for the next matmul, or an independent norm of rows of the same
 * width. Numerics follow the CPU's llm_ops.c; a fused row computes what
 * the fused kernel computes for it alone, with the same block shape.
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

/* What the fused norm of one row reads and writes (fuse.h's launches):
 * y = rmsnorm(x) * w; with ADD x is first a + b, stored to x; with PRE
 * b is first rmsnorm(b) * pw, stored to b (Gemma's post-norm before the
 * residual add); with QUANT y is also quantized for the next matmul. */
typedef struct norm_row_args {
  sp_cu_tensor d, x, a, b;
  const float *w, *pw;
  float eps, peps;
  sp_cu_qdst q;
} norm_row_args;

/* The sum of squares of v over the block, and the row's scale from it. */
static __device__ __forceinline__ float norm_scale(const float *v, uint32_t n, float eps, float *red) {
  float sum = 0;
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) sum += v[k] * v[k];
  sum = block_sum(sum, red);
  return 1.0f / sqrtf(sum / (float)n + eps);
}

/* Row r of dense f32 rows, held in registers (SP_NORM_VALS per thread).
 * QUANT: rows a multiple of 32 long, so each warp pass covers one block. */
template <bool PRE, bool ADD, bool QUANT>
static __device__ __forceinline__ void norm_row(const norm_row_args &g, uint32_t r, float *red) {
  uint32_t n = g.d.ne[0];
  float *xr = (float *)(g.x.p + (size_t)r * g.x.nb[0]), *yr = (float *)(g.d.p + (size_t)r * g.d.nb[0]);
  const float *ar = ADD ? (const float *)(g.a.p + (size_t)r * g.a.nb[0]) : nullptr;
  float *br = ADD ? (float *)(g.b.p + (size_t)r * g.b.nb[0]) : nullptr;
  float v[SP_NORM_VALS], wv[SP_NORM_VALS];
  if (PRE) { /* b = rmsnorm(b) * pw, as the norm command alone computes it */
    float pv[SP_NORM_VALS];
#pragma unroll
    for (int k = 0; k < SP_NORM_VALS; k++) {
      uint32_t i = threadIdx.x + k * blockDim.x;
      pv[k] = i < n ? br[i] : 0.0f, wv[k] = i < n ? g.pw[i] : 0.0f;
    }
    float ps = norm_scale(pv, n, g.peps, red); /* block_sum syncs before it writes red: reusable */
#pragma unroll
    for (int k = 0; k < SP_NORM_VALS; k++) {
      uint32_t i = threadIdx.x + k * blockDim.x;
      pv[k] = pv[k] * ps * wv[k];
      if (i < n) br[i] = pv[k];
      v[k] = i < n ? __fadd_rn(ar[i], pv[k]) : 0.0f; /* _rn: no fma with the product above */
      if (i < n) xr[i] = v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) { /* the weights load while the sum reduces */
    uint32_t i = threadIdx.x + k * blockDim.x;
    if (!PRE) v[k] = 0;
    wv[k] = 0;
    if (i >= n) continue;
    wv[k] = g.w[i];
    if (PRE) continue;
    v[k] = ADD ? ar[i] + br[i] : xr[i];
    if (ADD) xr[i] = v[k];
  }
  float scale = norm_scale(v, n, g.eps, red);
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) {
    uint32_t i = threadIdx.x + k * blockDim.x;
    if (i >= n) break; /* warp-uniform when QUANT: n % 32 == 0 */
    float y = v[k] * scale * wv[k];
    yr[i] = y;
    if (QUANT) {
      uint32_t blk = i / SP_CU_QK, nb = n / SP_CU_QK;
      sp_cu_quantize_block(y, g.q.xq + (size_t)r * n + blk * SP_CU_QK, g.q.xd + (size_t)r * nb + blk,
                           g.q.xs + (size_t)r * nb + blk);
    }
  }
}

template <bool PRE, bool ADD, bool QUANT>
__global__ void __launch_bounds__(1024) rmsnorm_fused_kernel(norm_row_args g, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  norm_row<PRE, ADD, QUANT>(g, blockIdx.x, red);
}

/* Two independent norms of rows of one width (a layer's q and k heads):
 * blocks [0, rows of g0) take g0's rows, the rest g1's. */
__global__ void __launch_bounds__(1024) rmsnorm_pair_kernel(norm_row_args g0, norm_row_args g1, uint32_t rows0,
                                                            sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  if (blockIdx.x < rows0) norm_row<false, false, false>(g0, blockIdx.x, red);
  else norm_row<false, false, false>(g1, blockIdx.x - rows0, red);
}

static uint32_t norm_threads(uint32_t n) { return n >= 1024 ? 1024 : (n + 31) / 32 * 32; }

static norm_row_args norm_args(const sp_cu_cmd *norm) {
  norm_row_args g = {};
  g.d = norm->dst, g.x = norm->src[0], g.w = (const float *)norm->src[1].p, g.eps = sp_cu_f32(norm->cmd->param[0]);
  return g;
}

cudaError_t sp_cu_rmsnorm_fused(const sp_cu_cmd *pre, const sp_cu_cmd *add, const sp_cu_cmd *norm, sp_cu_qdst q) {
  uint32_t n = norm->dst.ne[0], rows = norm->dst.ne[1], threads = norm_threads(n);
  norm_row_args g = norm_args(norm);
  g.q = q;
  if (add) g.a = add->src[0], g.b = add->src[1];
  if (pre) g.pw = (const float *)pre->src[1].p, g.peps = sp_cu_f32(pre->cmd->param[0]);
  auto kernel = pre && q.xq ? rmsnorm_fused_kernel<true, true, true>
                : pre       ? rmsnorm_fused_kernel<true, true, false>
                : add && q.xq ? rmsnorm_fused_kernel<false, true, true>
                : add       ? rmsnorm_fused_kernel<false, true, false>
                : q.xq      ? rmsnorm_fused_kernel<false, false, true>
                            : rmsnorm_fused_kernel<false, false, false>;
  sp_cu_launch(kernel, rows, threads, norm->stream, g, norm->status);
  return cudaGetLastError();
}

cudaError_t sp_cu_rmsnorm_pair(const sp_cu_cmd *n0, const sp_cu_cmd *n1) {
  uint32_t rows0 = n0->dst.ne[1], rows = rows0 + n1->dst.ne[1];
  sp_cu_launch(rmsnorm_pair_kernel, rows, norm_threads(n0->dst.ne[0]), n0->stream, norm_args(n0), norm_args(n1), rows0,
               n0->status);
  return cudaGetLastError();
}
