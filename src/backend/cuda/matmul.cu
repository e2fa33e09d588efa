/*
 * matmul.cu: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T.
 *
 * Three paths:
 *  - M <= SP_MMV_MAX_M, quantized weights (Q8_0, Q4_0, Q4_1): the
 *    activation rows are first quantized to int8 blocks (same formula and
 *    rounding as the CPU's sp_q8_act), then `wpr` warps per weight row (4
 *    by default: a 128-thread block per row, so even a 512-row matrix keeps
 *    enough loads in flight) run integer dot products (dp4a), four lanes per
 *    32-element block, and sum their parts through shared memory;
 *  - M <= SP_MMV_MAX_M, float weights (F32, F16, BF16): the same split,
 *    16-byte loads when rows are aligned;
 *  - larger M (prefill): 64 x 64 output tiles on tensor cores (WMMA, f16
 *    operands, f32 accumulation), weights dequantized into shared memory.
 */
#include <mma.h>

#include "backend/cuda/cuda_common.cuh"

#define SP_MMV_MAX_M 8
#define SP_MMV_ROWS 4 /* weight rows (warps) per block */

/* Warps per weight row in the matrix-vector kernels: 1, 2 or 4
 * (SP_CUDA_MMV_WPR, for measurement; default 4). */
static uint32_t mmv_wpr(void) {
  static uint32_t wpr;
  if (!wpr) {
    const char *env = getenv("SP_CUDA_MMV_WPR");
    uint32_t v = env ? (uint32_t)atoi(env) : 4;
    wpr = v == 1 || v == 2 || v == 4 ? v : 4;
  }
  return wpr;
}

/* Sums acc over the wpr warps of each row (warp w of a row is w % wpr); the
 * row's first lane gets the total. Every thread of the block must call it. */
static __device__ __forceinline__ float sum_row_parts(float acc, uint32_t wpr) {
  __shared__ float parts[SP_MMV_ROWS];
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  acc = sp_cu_warp_sum(acc);
  if (wpr == 1) return acc;
  if (lane == 0) parts[warp] = acc;
  __syncthreads();
  if (lane == 0 && warp % wpr == 0)
    for (uint32_t j = 1; j < wpr; j++) acc += parts[warp + j];
  return acc;
}

static bool is_quant(uint32_t dt) { return dt == SP_DTYPE_Q8_0 || dt == SP_DTYPE_Q4_0 || dt == SP_DTYPE_Q4_1; }

bool sp_cu_matmul_quantizes(uint32_t wdtype, uint32_t m) { return is_quant(wdtype) && m <= SP_MMV_MAX_M; }

/* ---- activation quantization ---- */

__global__ void quantize_kernel(const uint8_t *x, uint32_t x_stride, uint32_t K, int8_t *xq, float *xd, float *xs,
                                sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t nb = K / SP_CU_QK, m = blockIdx.y;
  uint32_t b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (b >= nb) return;
  float v = ((const float *)(x + (size_t)m * x_stride))[b * SP_CU_QK + lane];
  float amax = sp_cu_warp_max(fabsf(v));
  float id = amax > 0 ? 127.0f / amax : 0.0f;
  float r = rintf(__fmul_rn(v, id));
  r = fminf(fmaxf(r, -127.0f), 127.0f);
  int q = (int)r;
  int sum = q;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  xq[(size_t)m * K + b * SP_CU_QK + lane] = (int8_t)q;
  if (lane == 0) {
    float d = amax / 127.0f;
    float dh = __half2float(__float2half_rn(d));
    xd[(size_t)m * nb + b] = dh;
    xs[(size_t)m * nb + b] = __half2float(__float2half_rn(__fmul_rn(dh, (float)sum)));
  }
}

/* ---- quantized matrix-vector ---- */

static __device__ __forceinline__ int ld_i32_b2(const uint8_t *p) {
  const uint16_t *h = (const uint16_t *)p;
  return (int)((uint32_t)h[0] | ((uint32_t)h[1] << 16));
}

template <int DT>
__global__ void __launch_bounds__(SP_MMV_ROWS * 32)
    mmvq_kernel(const uint8_t *w, uint32_t w_stride, uint32_t N, uint32_t K, const int8_t *xq, const float *xd,
                const float *xs, uint8_t *dst, uint32_t d_stride, uint32_t wpr, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = warp % wpr;
  uint32_t n = blockIdx.x * (SP_MMV_ROWS / wpr) + warp / wpr, m = blockIdx.y;
  bool live = n < N; /* no early return: the block meets at a barrier */
  if (!live) n = N - 1;
  const uint32_t BYTES = DT == SP_DTYPE_Q8_0 ? 34 : DT == SP_DTYPE_Q4_0 ? 18 : 20;
  uint32_t nb = K / SP_CU_QK, sub = lane % 4;
  const uint8_t *wr = w + (size_t)n * w_stride;
  const int8_t *xr = xq + (size_t)m * K;
  const float *xdr = xd + (size_t)m * nb, *xsr = xs + (size_t)m * nb;
  float acc = 0;
#pragma unroll 4
  for (uint32_t b = part * 8 + lane / 4; b < nb; b += 8 * wpr) {
    const uint8_t *blk = wr + (size_t)b * BYTES;
    float dw = sp_cu_half(sp_cu_ld16(blk));
    float dx = xdr[b];
    if (DT == SP_DTYPE_Q8_0) {
      int v0 = ld_i32_b2(blk + 2 + sub * 8), v1 = ld_i32_b2(blk + 2 + sub * 8 + 4);
      int2 xv = *(const int2 *)(xr + b * SP_CU_QK + sub * 8);
      int sumi = __dp4a(v0, xv.x, __dp4a(v1, xv.y, 0));
      acc += dw * dx * (float)sumi;
    } else {
      const uint8_t *qs = blk + (DT == SP_DTYPE_Q4_1 ? 4 : 2);
      int v = ld_i32_b2(qs + sub * 4);
      int lo = v & 0x0f0f0f0f, hi = (v >> 4) & 0x0f0f0f0f;
      int xl = *(const int *)(xr + b * SP_CU_QK + sub * 4), xh = *(const int *)(xr + b * SP_CU_QK + 16 + sub * 4);
      int sumi = __dp4a(lo, xl, __dp4a(hi, xh, 0));
      if (DT == SP_DTYPE_Q4_0) {
        int sumx = __dp4a(0x01010101, xl, __dp4a(0x01010101, xh, 0));
        acc += dw * dx * (float)(sumi - 8 * sumx);
      } else {
        acc += dw * dx * (float)sumi;
        if (sub == 0) acc += sp_cu_half(sp_cu_ld16(blk + 2)) * xsr[b];
      }
    }
  }
  acc = sum_row_parts(acc, wpr);
  if (live && lane == 0 && part == 0) ((float *)(dst + (size_t)m * d_stride))[n] = acc;
}

/* ---- float matrix-vector ---- */

template <int DT>
static __device__ __forceinline__ float w_scalar(const uint8_t *row, uint32_t i) {
  if (DT == SP_DTYPE_F32) return ((const float *)row)[i];
  if (DT == SP_DTYPE_F16) return sp_cu_half(((const uint16_t *)row)[i]);
  return sp_cu_bf16(((const uint16_t *)row)[i]);
}

/* 8 consecutive weights at element i (16-byte aligned for 16-bit types). */
template <int DT>
static __device__ __forceinline__ void w_vec8(const uint8_t *row, uint32_t i, float *o) {
  if (DT == SP_DTYPE_F32) {
    float4 a = *(const float4 *)(row + (size_t)i * 4), b = *(const float4 *)(row + (size_t)i * 4 + 16);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    return;
  }
  uint4 u = *(const uint4 *)(row + (size_t)i * 2);
  uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (DT == SP_DTYPE_F16) {
      float2 f = __half22float2(*(const __half2 *)&words[j]);
      o[2 * j] = f.x, o[2 * j + 1] = f.y;
    } else {
      o[2 * j] = __uint_as_float(words[j] << 16), o[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
  }
}

template <int DT>
__global__ void __launch_bounds__(SP_MMV_ROWS * 32)
    mmv_kernel(const uint8_t *w, uint32_t w_stride, uint32_t N, uint32_t K, const uint8_t *x, uint32_t x_stride,
               uint8_t *dst, uint32_t d_stride, bool vec, uint32_t wpr, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = warp % wpr;
  uint32_t n = blockIdx.x * (SP_MMV_ROWS / wpr) + warp / wpr, m = blockIdx.y;
  bool live = n < N; /* no early return: the block meets at a barrier */
  if (!live) n = N - 1;
  const uint8_t *wr = w + (size_t)n * w_stride;
  const float *xr = (const float *)(x + (size_t)m * x_stride);
  float acc = 0;
  if (vec) {
#pragma unroll 2
    for (uint32_t i = (part * 32 + lane) * 8; i < K; i += 256 * wpr) {
      float wv[8];
      w_vec8<DT>(wr, i, wv);
      float4 a = *(const float4 *)(xr + i), b = *(const float4 *)(xr + i + 4);
      acc += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z +
             wv[7] * b.w;
    }
  } else {
    for (uint32_t i = part * 32 + lane; i < K; i += 32 * wpr) acc += w_scalar<DT>(wr, i) * xr[i];
  }
  acc = sum_row_parts(acc, wpr);
  if (live && lane == 0 && part == 0) ((float *)(dst + (size_t)m * d_stride))[n] = acc;
}

/* ---- tensor-core tiles for prefill ---- */

#define SP_MM_T 64  /* output tile: 64 weight rows x 64 activation rows */
#define SP_MM_K 32  /* k step: one quantized block */
#define SP_MM_LD (SP_MM_K + 8)

/* 16 weights of row `row` at k0 + h * 16 (k0 a multiple of 32), as floats. */
template <int DT>
static __device__ __forceinline__ void w_16(const uint8_t *row, uint32_t k0, uint32_t h, float *o) {
  if (DT == SP_DTYPE_F32 || DT == SP_DTYPE_F16 || DT == SP_DTYPE_BF16) {
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = w_scalar<DT>(row, k0 + h * 16 + i);
    return;
  }
  uint32_t b = k0 / SP_CU_QK;
  if (DT == SP_DTYPE_Q8_0) {
    const uint8_t *blk = row + (size_t)b * 34;
    float d = sp_cu_half(sp_cu_ld16(blk));
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = d * (float)(int8_t)blk[2 + h * 16 + i];
    return;
  }
  const uint8_t *blk = row + (size_t)b * (DT == SP_DTYPE_Q4_1 ? 20 : 18);
  float d = sp_cu_half(sp_cu_ld16(blk));
  float mn = DT == SP_DTYPE_Q4_1 ? sp_cu_half(sp_cu_ld16(blk + 2)) : -8.0f * d;
  const uint8_t *qs = blk + (DT == SP_DTYPE_Q4_1 ? 4 : 2);
#pragma unroll
  for (int i = 0; i < 16; i++) o[i] = d * (float)(h ? qs[i] >> 4 : qs[i] & 0x0f) + mn;
}

template <int DT>
__global__ void __launch_bounds__(128)
    mm_wmma_kernel(const uint8_t *w, uint32_t w_stride, uint32_t N, uint32_t K, const uint8_t *x, uint32_t x_stride,
                   uint32_t M, uint8_t *dst, uint32_t d_stride, sp_cu_status *st) {
  using namespace nvcuda;
  SP_CU_GUARD(st);
  __shared__ __align__(32) half ws[SP_MM_T][SP_MM_LD];
  __shared__ __align__(32) half xs[SP_MM_T][SP_MM_LD];
  __shared__ __align__(32) float cs[SP_MM_T][SP_MM_T + 4];
  uint32_t n0 = blockIdx.x * SP_MM_T, m0 = blockIdx.y * SP_MM_T, tid = threadIdx.x;
  uint32_t warp = tid / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
  uint32_t r = tid / 2, h = tid % 2;
  for (uint32_t k0 = 0; k0 < K; k0 += SP_MM_K) {
    float v[16];
    if (n0 + r < N) w_16<DT>(w + (size_t)(n0 + r) * w_stride, k0, h, v);
    else
#pragma unroll
      for (int i = 0; i < 16; i++) v[i] = 0;
#pragma unroll
    for (int i = 0; i < 16; i++) ws[r][h * 16 + i] = __float2half(v[i]);
    if (m0 + r < M) {
      const float *xr = (const float *)(x + (size_t)(m0 + r) * x_stride) + k0 + h * 16;
#pragma unroll
      for (int i = 0; i < 16; i++) v[i] = xr[i];
    } else {
#pragma unroll
      for (int i = 0; i < 16; i++) v[i] = 0;
    }
#pragma unroll
    for (int i = 0; i < 16; i++) xs[r][h * 16 + i] = __float2half(v[i]);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < SP_MM_K; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], &xs[wm * 32 + i * 16][kk], SP_MM_LD);
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], &ws[wn * 32 + j * 16][kk], SP_MM_LD);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync(&cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], SP_MM_T + 4, wmma::mem_row_major);
  __syncthreads();
  for (uint32_t idx = tid; idx < SP_MM_T * SP_MM_T; idx += 128) {
    uint32_t rr = idx / SP_MM_T, cc = idx % SP_MM_T;
    if (m0 + rr < M && n0 + cc < N) ((float *)(dst + (size_t)(m0 + rr) * d_stride))[n0 + cc] = cs[rr][cc];
  }
}

/* ---- dispatch ---- */

template <int DT>
static void launch_float(const sp_cu_cmd *c, uint32_t N, uint32_t K, uint32_t M) {
  const sp_cu_tensor &w = c->src[0], &x = c->src[1], &d = c->dst;
  if (M > SP_MMV_MAX_M && K % SP_MM_K == 0) {
    dim3 grid((N + SP_MM_T - 1) / SP_MM_T, (M + SP_MM_T - 1) / SP_MM_T);
    mm_wmma_kernel<DT><<<grid, 128, 0, c->stream>>>(w.p, w.nb[0], N, K, x.p, x.nb[0], M, d.p, d.nb[0], c->status);
    return;
  }
  if (is_quant(DT)) return; /* unreachable: quantized goes through mmvq or wmma */
  const uint32_t esz = DT == SP_DTYPE_F32 ? 4 : 2;
  bool vec = K % 8 == 0 && (uintptr_t)w.p % 16 == 0 && w.nb[0] % 16 == 0 && (uintptr_t)x.p % 16 == 0 &&
             x.nb[0] % 16 == 0 && (K * esz) % 16 == 0;
  uint32_t wpr = mmv_wpr(), rows = SP_MMV_ROWS / wpr;
  dim3 grid((N + rows - 1) / rows, M);
  mmv_kernel<(DT < SP_DTYPE_Q8_0 ? DT : SP_DTYPE_F32)><<<grid, SP_MMV_ROWS * 32, 0, c->stream>>>(
      w.p, w.nb[0], N, K, x.p, x.nb[0], d.p, d.nb[0], vec, wpr, c->status);
}

template <int DT>
static void launch_quant(const sp_cu_cmd *c, uint32_t N, uint32_t K, uint32_t M) {
  const sp_cu_tensor &w = c->src[0], &x = c->src[1], &d = c->dst;
  if (!c->xq_ready) {
    uint32_t nb = K / SP_CU_QK;
    dim3 grid((nb + 7) / 8, M);
    quantize_kernel<<<grid, 256, 0, c->stream>>>(x.p, x.nb[0], K, c->xq, c->xd, c->xs, c->status);
  }
  uint32_t wpr = mmv_wpr(), rows = SP_MMV_ROWS / wpr;
  dim3 grid((N + rows - 1) / rows, M);
  mmvq_kernel<DT><<<grid, SP_MMV_ROWS * 32, 0, c->stream>>>(w.p, w.nb[0], N, K, c->xq, c->xd, c->xs, d.p, d.nb[0],
                                                            wpr, c->status);
}

cudaError_t sp_cu_matmul(const sp_cu_cmd *c) {
  uint32_t K = c->src[0].ne[0], N = c->src[0].ne[1], M = c->src[1].ne[1];
  switch (c->src[0].dtype) {
  case SP_DTYPE_F32: launch_float<SP_DTYPE_F32>(c, N, K, M); break;
  case SP_DTYPE_F16: launch_float<SP_DTYPE_F16>(c, N, K, M); break;
  case SP_DTYPE_BF16: launch_float<SP_DTYPE_BF16>(c, N, K, M); break;
  case SP_DTYPE_Q8_0: M <= SP_MMV_MAX_M ? launch_quant<SP_DTYPE_Q8_0>(c, N, K, M) : launch_float<SP_DTYPE_Q8_0>(c, N, K, M); break;
  case SP_DTYPE_Q4_0: M <= SP_MMV_MAX_M ? launch_quant<SP_DTYPE_Q4_0>(c, N, K, M) : launch_float<SP_DTYPE_Q4_0>(c, N, K, M); break;
  case SP_DTYPE_Q4_1: M <= SP_MMV_MAX_M ? launch_quant<SP_DTYPE_Q4_1>(c, N, K, M) : launch_float<SP_DTYPE_Q4_1>(c, N, K, M); break;
  default: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}
