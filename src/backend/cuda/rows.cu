/*
 * rows.cu: the indexed ops on the GPU and what guards them: get_rows
 * (dequantizing, as the CPU's llm_ops.c, with unfused multiply-add; the
 * issue-15 types through quant_k.cuh),
 * set_rows, the index check run before either reads an index, and the
 * staging of small index tensors from guest memory.
 */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/quant_k.cuh"

/* ---- staging ---- */

/* One block copies every span, a word per thread: the reads of guest
 * memory across PCIe all go out at once. */
__global__ void stage_kernel(sp_cu_spans spans) {
  for (uint32_t s = 0; s < SP_CU_MAX_STAGED && s < spans.n; s++)
    for (uint32_t i = threadIdx.x; i < spans.words[s]; i += blockDim.x) spans.dst[s][i] = spans.src[s][i];
}

cudaError_t sp_cu_stage(const sp_cu_spans *spans, cudaStream_t stream) {
  stage_kernel<<<1, 256, 0, stream>>>(*spans);
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
  sp_cu_launch(check_indices_kernel, 1, 256, stream, idx, n, limit, cmd_index, status);
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

/* The issue-15 types (quant_k.cuh): a thread per 8 consecutive values,
 * which share their block's scales; rows hold whole blocks, so ne0 is a
 * multiple of 32. */
__global__ void get_rows_kq_kernel(sp_cu_tensor d, sp_cu_tensor w, const int32_t *idx, sp_cu_status *st) {
  SP_CU_GUARD(st);
  int32_t id = idx[blockIdx.y];
  if (id < 0 || (uint32_t)id >= w.ne[1]) return; /* checked before; never trust guest data twice */
  const uint8_t *wr = w.p + (size_t)id * w.nb[0];
  float *yr = (float *)(d.p + (size_t)blockIdx.y * d.nb[0]);
  for (uint32_t g = blockIdx.x * blockDim.x + threadIdx.x; g < d.ne[0] / 8; g += gridDim.x * blockDim.x) {
    float v[8];
    sp_cu_row8_any(wr, w.dtype, g * 8, v);
#pragma unroll
    for (int j = 0; j < 8; j++) yr[g * 8 + j] = v[j];
  }
}

cudaError_t sp_cu_get_rows(const sp_cu_cmd *c) {
  uint32_t ne0 = c->dst.ne[0];
  if (sp_cu_is_kq(c->src[0].dtype)) {
    uint32_t groups = ne0 / 8;
    dim3 grid((groups + 127) / 128 < 32 ? (groups + 127) / 128 : 32, c->dst.ne[1]);
    sp_cu_launch(get_rows_kq_kernel, grid, 128, c->stream, c->dst, c->src[0], (const int32_t *)c->src[1].p, c->status);
    return cudaGetLastError();
  }
  dim3 grid((ne0 + 255) / 256 < 32 ? (ne0 + 255) / 256 : 32, c->dst.ne[1]);
  sp_cu_launch(get_rows_kernel, grid, 256, c->stream, c->dst, c->src[0], (const int32_t *)c->src[1].p, c->status);
  return cudaGetLastError();
}

/* Row i of x goes to row idx[i] of d; blockIdx.z picks the pair member. */
__global__ void set_rows_kernel(sp_cu_tensor d0, sp_cu_tensor x0, sp_cu_tensor d1, sp_cu_tensor x1, const int32_t *idx,
                                sp_cu_status *st) {
  SP_CU_GUARD(st);
  bool second = blockIdx.z; /* fields picked one by one: no local copy of a parameter */
  uint32_t rows = second ? d1.ne[1] : d0.ne[1], ne0 = second ? d1.ne[0] : d0.ne[0];
  uint32_t dtype = second ? d1.dtype : d0.dtype;
  int32_t id = idx[blockIdx.y];
  if (id < 0 || (uint32_t)id >= rows) return; /* checked before; never trust guest data twice */
  const float *xr = (const float *)((second ? x1.p : x0.p) + (size_t)blockIdx.y * (second ? x1.nb[0] : x0.nb[0]));
  uint8_t *yr = (second ? d1.p : d0.p) + (size_t)id * (second ? d1.nb[0] : d0.nb[0]);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < ne0; i += gridDim.x * blockDim.x) {
    float v = xr[i];
    if (dtype == SP_DTYPE_F32) ((float *)yr)[i] = v;
    else if (dtype == SP_DTYPE_F16) ((__half *)yr)[i] = __float2half_rn(v);
    else ((__nv_bfloat16 *)yr)[i] = __float2bfloat16_rn(v);
  }
}

static cudaError_t launch_set_rows(const sp_cu_cmd *a, const sp_cu_cmd *b) {
  uint32_t ne0 = a->dst.ne[0];
  if (b && b->dst.ne[0] > ne0) ne0 = b->dst.ne[0];
  dim3 grid((ne0 + 255) / 256 < 32 ? (ne0 + 255) / 256 : 32, a->src[0].ne[1], b ? 2 : 1);
  sp_cu_tensor none = {};
  sp_cu_launch(set_rows_kernel, grid, 256, a->stream, a->dst, a->src[0], b ? b->dst : none, b ? b->src[0] : none,
                                              (const int32_t *)a->src[1].p, a->status);
  return cudaGetLastError();
}

cudaError_t sp_cu_set_rows(const sp_cu_cmd *c) { return launch_set_rows(c, nullptr); }
cudaError_t sp_cu_set_rows_pair(const sp_cu_cmd *a, const sp_cu_cmd *b) { return launch_set_rows(a, b); }
