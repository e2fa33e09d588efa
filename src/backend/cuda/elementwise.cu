/*
 * elementwise.cu: add, mul, scale, swiglu, geglu, softcap and copy on
 * strided f32/f16/bf16 rows. Row r of dst pairs with row r of each source
 * (or src1's only row when it is broadcast); each element is read before
 * it is written by the same thread, so in place is safe.
 *
 * GEGLU and SOFTCAP compute what the CPU's activations.c computes (ggml's
 * CPU numerics), in the same order and roundings: __fmul_rn / __fadd_rn
 * keep nvcc from fusing what the CPU rounds twice (the gated activations
 * are gated.cuh's, shared with the fused gate-and-quantize launch).
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/gated.cuh"

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

/* cap tanh(x / cap) as llama.cpp builds it: x * (1 / cap), tanh, * cap. */
static __device__ float softcap(float x, float inv_cap, float cap) {
  return __fmul_rn(tanhf(__fmul_rn(x, inv_cap)), cap);
}

/* What one element of op computes from x = src0 and b = src1's element
 * (b unused by scale and softcap). */
static __device__ float ew_one(uint32_t op, float x, const float *br, uint32_t i, float s, float inv_s) {
  switch (op) {
  case SP_OP_ADD: return x + br[i];
  case SP_OP_MUL: return x * br[i];
  case SP_OP_SCALE: return x * s;
  case SP_OP_GEGLU: return sp_cu_geglu(x, br[i]);
  case SP_OP_SOFTCAP: return softcap(x, inv_s, s);
  default: return sp_cu_swiglu(x, br[i]);
  }
}

__global__ void ew_kernel(uint32_t op, sp_cu_tensor d, sp_cu_tensor a, sp_cu_tensor b, bool bcast, float s,
                          float inv_s, int64_t rows, sp_cu_status *st) {
  SP_CU_GUARD(st);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    uint8_t *dr = sp_cu_row(d, r);
    const uint8_t *ar = sp_cu_row(a, r);
    bool unary = op == SP_OP_SCALE || op == SP_OP_SOFTCAP || op == SP_OP_COPY;
    const float *br = unary ? nullptr : (const float *)sp_cu_row(b, bcast ? 0 : r);
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < d.ne[0]; i += gridDim.x * blockDim.x) {
      if (op == SP_OP_COPY) {
        store_any(dr, d.dtype, i, load_any(ar, a.dtype, i));
        continue;
      }
      ((float *)dr)[i] = ew_one(op, ((const float *)ar)[i], br, i, s, inv_s);
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
  float s = sp_cu_f32(cmd->param[0]);
  float inv_s = cmd->op == SP_OP_SOFTCAP ? 1.0f / s : 0.0f; /* the validator made the cap a normal number > 0 */
  dim3 grid((ne0 + 255) / 256 < 64 ? (ne0 + 255) / 256 : 64, rows < 65535 ? (unsigned)rows : 65535);
  sp_cu_launch(ew_kernel, grid, 256, c->stream, cmd->op, c->dst, c->src[0], c->src[1], bcast, s, inv_s, rows,
               c->status);
  return cudaGetLastError();
}

/* ---- biases: up to three in-place adds of one broadcast row, one launch ---- */

/* Member blockIdx.z: rows of d += the one row b, each element as ew_kernel's
 * ADD computes it (x + br[i]). */
typedef struct bias_set {
  sp_cu_tensor d[SP_CU_MAX_BIAS], b[SP_CU_MAX_BIAS];
} bias_set;

__global__ void bias_rows_kernel(bias_set s, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t z = blockIdx.z; /* by value: a runtime index into the parameter would go to local memory */
  const sp_cu_tensor d = z == 0 ? s.d[0] : z == 1 ? s.d[1] : s.d[2];
  const float *br = (const float *)(z == 0 ? s.b[0].p : z == 1 ? s.b[1].p : s.b[2].p);
  for (int64_t r = blockIdx.y; r < sp_cu_rows(d); r += gridDim.y) {
    float *dr = (float *)sp_cu_row(d, r);
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < d.ne[0]; i += gridDim.x * blockDim.x)
      dr[i] = dr[i] + br[i];
  }
}

cudaError_t sp_cu_bias_rows(const sp_cu_cmd *const *cs, uint32_t n) {
  bias_set s = {};
  uint32_t widest = 0;
  int64_t rows = 0;
  for (uint32_t k = 0; k < n; k++) {
    s.d[k] = cs[k]->dst, s.b[k] = cs[k]->src[1];
    widest = cs[k]->dst.ne[0] > widest ? cs[k]->dst.ne[0] : widest;
    rows = sp_cu_rows(cs[k]->dst) > rows ? sp_cu_rows(cs[k]->dst) : rows;
  }
  dim3 grid((widest + 255) / 256 < 64 ? (widest + 255) / 256 : 64, rows < 65535 ? (unsigned)rows : 65535, n);
  sp_cu_launch(bias_rows_kernel, grid, 256, cs[0]->stream, s, cs[0]->status);
  return cudaGetLastError();
}
