/*
 * elementwise.cu: add, mul, scale, swiglu, geglu, softcap and copy on
 * strided f32/f16/bf16 rows. Row r of dst pairs with row r of each source
 * (or src1's only row when it is broadcast); each element is read before
 * it is written by the same thread, so in place is safe.
 *
 * GEGLU and SOFTCAP compute what the CPU's activations.c computes (ggml's
 * CPU numerics), in the same order and roundings: __fmul_rn / __fadd_rn
 * keep nvcc from fusing what the CPU rounds twice. Only tanhf differs (the
 * CUDA library's, within 2 ulps), which GEGLU's rounding to f16 hides but
 * where the two round to neighbouring f16 values.
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

/* gelu(x), tanh form, evaluated as activations.c's sp_cpu_gelu_tanh:
 * 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x x))), left to right. */
static __device__ float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
  float inner = __fadd_rn(1.0f, __fmul_rn(__fmul_rn(coef_a, x), x));
  float t = tanhf(__fmul_rn(__fmul_rn(sqrt_2_over_pi, x), inner));
  return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, t));
}

/* ggml-cpu's GEGLU for f32: 0 at x <= -10, x * g at x >= 10, otherwise
 * gelu of x rounded to f16, itself rounded to f16, times g (its table). */
static __device__ float geglu(float x, float g) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return __fmul_rn(x, g);
  float x16 = __half2float(__float2half_rn(x));
  return __fmul_rn(__half2float(__float2half_rn(gelu_tanh(x16))), g);
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
  case SP_OP_GEGLU: return geglu(x, br[i]);
  case SP_OP_SOFTCAP: return softcap(x, inv_s, s);
  default: return x / (1.0f + expf(-x)) * br[i]; /* swiglu */
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
