/*
 * elementwise.cu: add, mul, scale, swiglu and copy on strided f32/f16/bf16
 * rows. Row r of dst pairs with row r of each source (or src1's only row
 * when it is broadcast); each element is read before it is written by the
 * same thread, so in place is safe.
 */
#include "backend/cuda/cuda_common.cuh"

static __device__ float load_any(const uint8_t *row, uint32_t dtype, uint32_t i) {
  if (dtype == SP_DTYPE_F32) return ((const float *)row)[i];
  uint16_t h = ((const uint16_t *)row)[i];
  return dtype == SP_DTYPE_F16 ? sp_cu_half(h) : sp_cu_bf16(h);
}

static __device__ void store_any(uint8_t *row, uint32_t dtype, uint32_t i, float v) {
  if (dtype == SP_DTYPE_F32) ((float *)row)[i] = v;
  else if (dtype == SP_DTYPE_F16) ((__half *)row)[i] = __float2half_rn(v);
  else ((__nv_bfloat16 *)row)[i] = __float2bfloat16_rn(v);
}

__global__ void ew_kernel(uint32_t op, sp_cu_tensor d, sp_cu_tensor a, sp_cu_tensor b, bool bcast, float s,
                          int64_t rows, sp_cu_status *st) {
  SP_CU_GUARD(st);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    uint8_t *dr = sp_cu_row(d, r);
    const uint8_t *ar = sp_cu_row(a, r);
    const float *br = op == SP_OP_SCALE || op == SP_OP_COPY ? nullptr : (const float *)sp_cu_row(b, bcast ? 0 : r);
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < d.ne[0]; i += gridDim.x * blockDim.x) {
      if (op == SP_OP_COPY) {
        store_any(dr, d.dtype, i, load_any(ar, a.dtype, i));
        continue;
      }
      float x = ((const float *)ar)[i], y;
      switch (op) {
      case SP_OP_ADD: y = x + br[i]; break;
      case SP_OP_MUL: y = x * br[i]; break;
      case SP_OP_SCALE: y = x * s; break;
      default: y = x / (1.0f + expf(-x)) * br[i]; break; /* swiglu */
      }
      ((float *)dr)[i] = y;
    }
  }
}

cudaError_t sp_cu_elementwise(const sp_cu_cmd *c) {
  const sp_cmd *cmd = c->cmd;
  int64_t rows = sp_cu_rows(c->dst);
  bool bcast = false;
  if (cmd->op == SP_OP_ADD || cmd->op == SP_OP_MUL)
    bcast = c->src[1].ne[1] == 1 && c->src[1].ne[2] == 1 && c->src[1].ne[3] == 1;
  uint32_t ne0 = c->dst.ne[0];
  dim3 grid((ne0 + 255) / 256 < 64 ? (ne0 + 255) / 256 : 64, rows < 65535 ? (unsigned)rows : 65535);
  sp_cu_launch(ew_kernel, grid, 256, c->stream, cmd->op, c->dst, c->src[0], c->src[1], bcast, sp_cu_f32(cmd->param[0]),
                                         rows, c->status);
  return cudaGetLastError();
}
