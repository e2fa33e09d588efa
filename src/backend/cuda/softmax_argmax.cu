/*
 * softmax_argmax.cu: the two row reductions over logits and scores on the
 * GPU: softmax (scaled, max-subtracted) and argmax (largest value, then
 * smallest index, NaN never chosen), as the CPU's llm_ops.c.
 */
#include <math.h>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_common.cuh"

/* ---- softmax ---- */

__global__ void softmax_kernel(sp_cu_tensor d, sp_cu_tensor x, float scale, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  const float *xr = (const float *)sp_cu_row(x, blockIdx.x);
  float *yr = (float *)sp_cu_row(d, blockIdx.x);
  uint32_t n = d.ne[0];
  float mx = -INFINITY;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i] * scale);
  mx = block_max(mx, red);
  float sum = 0;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
    float e = expf(xr[i] * scale - mx);
    yr[i] = e;
    sum += e;
  }
  sum = block_sum(sum, red);
  float inv = 1.0f / sum;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] *= inv;
}

cudaError_t sp_cu_softmax(const sp_cu_cmd *c) {
  sp_cu_launch(softmax_kernel, (unsigned)sp_cu_rows(c->dst), 256, c->stream, c->dst, c->src[0],
                                                                      sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

/* ---- argmax ---- */

/* The better of two (value, index) candidates: larger value, then smaller
 * index; index -1 is no candidate (NaN is never one). */
static __device__ __forceinline__ void better_of(float &v, int32_t &i, float ov, int32_t oi) {
  if (oi < 0) return;
  if (i < 0 || ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

static __device__ __forceinline__ void consider(float &v, int32_t &i, float x, int32_t at) {
  if (!isnan(x) && (i < 0 || x > v)) v = x, i = at; /* increasing at: the first of equals stays */
}

#define SP_ARGMAX_PARTS 64 /* blocks per row for long rows */

/* The block's best of one candidate per thread: thread 0 gets it. */
static __device__ void block_best_of(float v, int32_t i, float &out_v, int32_t &out_i) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  for (int o = 16; o > 0; o >>= 1) better_of(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (threadIdx.x == 0)
    for (uint32_t w = 1; w < blockDim.x / 32; w++) better_of(v, i, sv[w], si[w]);
  out_v = v, out_i = i;
}

/* The best of one thread's elements [from, to), walked in increasing order
 * (four at a time with 16-byte loads when vec), then of the block: thread 0
 * gets it. */
static __device__ void block_best(const float *xr, uint32_t from, uint32_t to, bool vec, float &v, int32_t &best) {
  v = 0, best = -1;
  if (vec) { /* from and to are multiples of 4 here */
#pragma unroll 4
    for (uint32_t i = from + threadIdx.x * 4; i < to; i += blockDim.x * 4) {
      float4 q = *(const float4 *)(xr + i);
      consider(v, best, q.x, (int32_t)i), consider(v, best, q.y, (int32_t)i + 1);
      consider(v, best, q.z, (int32_t)i + 2), consider(v, best, q.w, (int32_t)i + 3);
    }
  } else {
    for (uint32_t i = from + threadIdx.x; i < to; i += blockDim.x) consider(v, best, xr[i], (int32_t)i);
  }
  block_best_of(v, best, v, best);
}

/* Block (part, row): the best of its part of the row. With one part it
 * writes the row's answer; with several each part leaves its best in
 * `partial` and the last to arrive (counted in `arrived`, which it resets
 * for the next list) picks among them. */
__global__ void __launch_bounds__(256)
    argmax_kernel(sp_cu_tensor d, sp_cu_tensor x, bool vec, float2 *partial, uint32_t *arrived, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t part = blockIdx.x, parts = gridDim.x, r = blockIdx.y, n = x.ne[0];
  uint32_t chunk = (n + parts - 1) / parts;
  chunk = (chunk + 3) / 4 * 4;
  uint32_t from = part * chunk < n ? part * chunk : n, to = from + chunk < n ? from + chunk : n;
  const float *xr = (const float *)(x.p + (size_t)r * x.nb[0]);
  float v;
  int32_t best;
  block_best(xr, from, to, vec && to % 4 == 0, v, best);
  if (parts > 1) {
    __shared__ bool last;
    if (threadIdx.x == 0) {
      partial[(size_t)r * parts + part] = make_float2(v, __int_as_float(best));
      __threadfence();
      last = atomicAdd(&arrived[r], 1) == parts - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    /* the whole block reads the parts' results at once (other blocks wrote
     * them: from L2, not L1), in part order, then reduces them */
    float2 o = threadIdx.x < parts ? __ldcg(&partial[(size_t)r * parts + threadIdx.x]) : make_float2(0, __int_as_float(-1));
    float v2 = o.x;
    int32_t i2 = __float_as_int(o.y);
    __syncthreads(); /* block_best's shared memory is reused */
    block_best_of(v2, i2, v, best);
    if (threadIdx.x == 0) arrived[r] = 0;
  }
  if (threadIdx.x == 0) ((int32_t *)d.p)[r] = best < 0 ? 0 : best;
}

cudaError_t sp_cu_argmax(const sp_cu_cmd *c) {
  const sp_cu_tensor &x = c->src[0];
  uint32_t rows = x.ne[1];
  bool vec = x.ne[0] % 4 == 0 && ((uintptr_t)x.p | x.nb[0]) % 16 == 0;
  /* Long rows: SP_ARGMAX_PARTS blocks each, when the scratch holds them.
   * The scratch starts with one arrival counter per row (at fixed places,
   * whatever the shape: each is back to zero after its row), then the
   * partial results. */
  uint32_t parts = x.ne[0] >= 16384 ? SP_ARGMAX_PARTS : 1;
  const size_t counters = SP_CU_REDUCE_COUNTERS * sizeof(uint32_t);
  size_t need = counters + (size_t)rows * parts * sizeof(float2);
  if (parts > 1 && (!c->reduce || rows > SP_CU_REDUCE_COUNTERS || need > c->reduce_bytes)) parts = 1;
  uint32_t *arrived = (uint32_t *)c->reduce;
  float2 *partial = c->reduce ? (float2 *)(c->reduce + counters) : nullptr;
  dim3 grid(parts, rows);
  sp_cu_launch(argmax_kernel, grid, 256, c->stream, c->dst, x, vec, partial, arrived, c->status);
  return cudaGetLastError();
}
