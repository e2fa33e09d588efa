/*
 * llm_ops.cu: the row-wise transformer ops on the GPU: rmsnorm, softmax,
 * rope, get_rows, set_rows, and the index check that guards the indexed
 * ops. Numerics follow llm_ops.c: rope's angle advances by repeated float
 * multiplication from a host-computed theta scale, dequantization uses
 * unfused multiply-add, f16 stores round to nearest even.
 */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

/* Sum of v over the block (blockDim.x a multiple of 32, <= 1024). */
static __device__ float block_sum(float v, float *shared32) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = sp_cu_warp_sum(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < nw ? shared32[lane] : 0.0f;
  return sp_cu_warp_sum(v);
}

static __device__ float block_max(float v, float *shared32) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = sp_cu_warp_max(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < nw ? shared32[lane] : -INFINITY;
  return sp_cu_warp_max(v);
}

/* ---- rmsnorm, softmax ---- */

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
  rmsnorm_kernel<<<(unsigned)rows, 256, 0, c->stream>>>(c->dst, c->src[0], (const float *)c->src[1].p,
                                                        sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

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
  softmax_kernel<<<(unsigned)sp_cu_rows(c->dst), 256, 0, c->stream>>>(c->dst, c->src[0],
                                                                      sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

/* ---- rope ---- */

__global__ void rope_kernel(sp_cu_tensor d, sp_cu_tensor x, const int32_t *pos, const float *factors,
                            uint32_t n_rot, uint32_t mode, float theta_scale, float freq_scale, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t h = blockIdx.x, t = blockIdx.y;
  const float *xr = (const float *)(x.p + (size_t)h * x.nb[0] + (size_t)t * x.nb[1]);
  float *yr = (float *)(d.p + (size_t)h * d.nb[0] + (size_t)t * d.nb[1]);
  float p = (float)pos[t];
  uint32_t half = n_rot / 2;
  for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
    float theta = p;
    for (uint32_t j = 0; j < i; j++) theta = __fmul_rn(theta, theta_scale);
    float angle = __fdiv_rn(__fmul_rn(freq_scale, theta), factors ? factors[i] : 1.0f);
    float cs = cosf(angle), sn = sinf(angle);
    uint32_t i0 = mode == 2 ? i : 2 * i, i1 = mode == 2 ? i + half : 2 * i + 1;
    float x0 = xr[i0], x1 = xr[i1];
    yr[i0] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    yr[i1] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
  }
  if (yr != xr)
    for (uint32_t i = n_rot + threadIdx.x; i < d.ne[0]; i += blockDim.x) yr[i] = xr[i];
}

cudaError_t sp_cu_rope(const sp_cu_cmd *c) {
  const sp_cmd *cmd = c->cmd;
  uint32_t n_rot = cmd->param[0];
  float theta_scale = powf(sp_cu_f32(cmd->param[1]), -2.0f / (float)n_rot); /* host powf, as the CPU */
  dim3 grid(c->dst.ne[1], c->dst.ne[2]);
  rope_kernel<<<grid, 64, 0, c->stream>>>(c->dst, c->src[0], (const int32_t *)c->src[1].p,
                                          c->src[2].p ? (const float *)c->src[2].p : nullptr, n_rot, cmd->param[2],
                                          theta_scale, sp_cu_f32(cmd->param[3]), c->status);
  return cudaGetLastError();
}

/* ---- indices ---- */

__global__ void check_indices_kernel(const int32_t *idx, uint32_t n, uint32_t limit, uint32_t cmd,
                                     sp_cu_status *st) {
  SP_CU_GUARD(st);
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
    int32_t v = idx[i];
    if (v < 0 || (uint32_t)v >= limit) {
      if (atomicCAS(&st->code, 0, (int32_t)SP_E_BOUNDS) == 0) st->cmd = (int32_t)cmd, st->at = (int32_t)i, st->value = v;
      return;
    }
  }
}

cudaError_t sp_cu_check_indices(const int32_t *idx, uint32_t n, uint32_t limit, uint32_t cmd_index,
                                sp_cu_status *status, cudaStream_t stream) {
  check_indices_kernel<<<1, 256, 0, stream>>>(idx, n, limit, cmd_index, status);
  return cudaGetLastError();
}

/* ---- get_rows / set_rows ---- */

/* Element i of a weight row, dequantized as llm_ops.c does. */
static __device__ float weight_at(const uint8_t *row, uint32_t dtype, uint32_t i) {
  switch (dtype) {
  case SP_DTYPE_F32: return ((const float *)row)[i];
  case SP_DTYPE_F16: return sp_cu_half(((const uint16_t *)row)[i]);
  case SP_DTYPE_BF16: return sp_cu_bf16(((const uint16_t *)row)[i]);
  default: break;
  }
  uint32_t b = i / SP_CU_QK, j = i % SP_CU_QK;
  if (dtype == SP_DTYPE_Q8_0) {
    const uint8_t *blk = row + (size_t)b * 34;
    return __fmul_rn(sp_cu_half(sp_cu_ld16(blk)), (float)(int8_t)blk[2 + j]);
  }
  const uint8_t *blk = row + (size_t)b * (dtype == SP_DTYPE_Q4_1 ? 20 : 18);
  float dd = sp_cu_half(sp_cu_ld16(blk));
  float m = dtype == SP_DTYPE_Q4_1 ? sp_cu_half(sp_cu_ld16(blk + 2)) : __fmul_rn(-8.0f, dd);
  const uint8_t *qs = blk + (dtype == SP_DTYPE_Q4_1 ? 4 : 2);
  uint32_t q = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
  return __fadd_rn(__fmul_rn(dd, (float)q), m);
}

__global__ void get_rows_kernel(sp_cu_tensor d, sp_cu_tensor w, const int32_t *idx, sp_cu_status *st) {
  SP_CU_GUARD(st);
  int32_t id = idx[blockIdx.y];
  if (id < 0 || (uint32_t)id >= w.ne[1]) return; /* checked before; never trust guest data twice */
  const uint8_t *wr = w.p + (size_t)id * w.nb[0];
  float *yr = (float *)(d.p + (size_t)blockIdx.y * d.nb[0]);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < d.ne[0]; i += gridDim.x * blockDim.x)
    yr[i] = weight_at(wr, w.dtype, i);
}

cudaError_t sp_cu_get_rows(const sp_cu_cmd *c) {
  uint32_t ne0 = c->dst.ne[0];
  dim3 grid((ne0 + 255) / 256 < 32 ? (ne0 + 255) / 256 : 32, c->dst.ne[1]);
  get_rows_kernel<<<grid, 256, 0, c->stream>>>(c->dst, c->src[0], (const int32_t *)c->src[1].p, c->status);
  return cudaGetLastError();
}

__global__ void set_rows_kernel(sp_cu_tensor d, sp_cu_tensor x, const int32_t *idx, sp_cu_status *st) {
  SP_CU_GUARD(st);
  int32_t id = idx[blockIdx.y];
  if (id < 0 || (uint32_t)id >= d.ne[1]) return;
  const float *xr = (const float *)(x.p + (size_t)blockIdx.y * x.nb[0]);
  uint8_t *yr = d.p + (size_t)id * d.nb[0];
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < d.ne[0]; i += gridDim.x * blockDim.x) {
    float v = xr[i];
    if (d.dtype == SP_DTYPE_F32) ((float *)yr)[i] = v;
    else if (d.dtype == SP_DTYPE_F16) ((__half *)yr)[i] = __float2half_rn(v);
    else ((__nv_bfloat16 *)yr)[i] = __float2bfloat16_rn(v);
  }
}

cudaError_t sp_cu_set_rows(const sp_cu_cmd *c) {
  uint32_t ne0 = c->dst.ne[0];
  dim3 grid((ne0 + 255) / 256 < 32 ? (ne0 + 255) / 256 : 32, c->src[0].ne[1]);
  set_rows_kernel<<<grid, 256, 0, c->stream>>>(c->dst, c->src[0], (const int32_t *)c->src[1].p, c->status);
  return cudaGetLastError();
}
