/*
 * attention.cu: causal grouped-query attention over the KV cache in guest
 * memory (f16 or f32), one block per (query head, token).
 *
 * An f16 cache with an even head size (every model we load) takes
 * attention_f16_kernel below; the general kernel here serves the rest.
 *
 * Each warp walks 32 cache rows at a time, one row per lane, keeping a
 * running maximum, sum and output accumulator (online softmax); the warps
 * then merge their partial results. As llm_ops.c does for an f16 cache,
 * q is rounded to f16 before the dot products. The position of each query
 * was checked against the cache length before this kernel ran; it is
 * clamped again here, since guest data is never trusted twice.
 *
 * A sliding window of W keys (param[1], 0 = none) only moves where a
 * query's walk over the cache starts: row window_start(p, W) instead of 0.
 */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

#define SP_ATT_WARPS 16 /* decode has few (head, token) blocks: keys spread over warps */
#define SP_ATT_DMAX 256

/* The first cache row a query at p sees: p - W + 1, or 0 when the window
 * (W = 0: none) reaches back to the start. */
static __device__ __forceinline__ int32_t window_start(int32_t p, uint32_t window) {
  return window && (uint32_t)p >= window ? p - (int32_t)window + 1 : 0;
}

template <bool F16>
static __device__ float kv_at(const uint8_t *row, uint32_t i) {
  if (F16) return sp_cu_half(((const uint16_t *)row)[i]);
  return ((const float *)row)[i];
}

template <bool F16>
__global__ void __launch_bounds__(SP_ATT_WARPS * 32)
    attention_kernel(sp_cu_tensor q, sp_cu_tensor k, sp_cu_tensor v, const int32_t *pos, sp_cu_tensor d,
                     float scale, uint32_t window, bool vec, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float qs[SP_ATT_DMAX];
  __shared__ float wm[SP_ATT_WARPS], wl[SP_ATT_WARPS];
  __shared__ float wacc[SP_ATT_WARPS][SP_ATT_DMAX];
  uint32_t h = blockIdx.x, t = blockIdx.y, D = q.ne[0], Hq = q.ne[1];
  uint32_t hk = h / (Hq / k.ne[1]);
  int32_t p = pos[t];
  int32_t C = (int32_t)k.ne[2];
  p = p < 0 ? 0 : (p >= C ? C - 1 : p);
  const float *qr = (const float *)(q.p + (size_t)h * q.nb[0] + (size_t)t * q.nb[1]);
  for (uint32_t i = threadIdx.x; i < D; i += blockDim.x) qs[i] = F16 ? __half2float(__float2half_rn(qr[i])) : qr[i];
  __syncthreads();
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const uint8_t *kb = k.p + (size_t)hk * k.nb[0], *vb = v.p + (size_t)hk * v.nb[0];
  float m = -INFINITY, l = 0, acc[SP_ATT_DMAX / 32];
#pragma unroll
  for (int j = 0; j < SP_ATT_DMAX / 32; j++) acc[j] = 0;
  for (int32_t c0 = window_start(p, window) + warp * 32; c0 <= p; c0 += SP_ATT_WARPS * 32) {
    int32_t c = c0 + lane;
    float s = -INFINITY;
    if (c <= p) {
      const uint8_t *kr = kb + (size_t)c * k.nb[1];
      float dot = 0;
      if (F16 && vec) {
        /* 16-byte loads, all issued before the sums; same order of sums */
        for (uint32_t i0 = 0; i0 < D; i0 += 32) {
          uint4 u[4];
#pragma unroll
          for (int j = 0; j < 4; j++) u[j] = i0 + 8 * j < D ? *(const uint4 *)(kr + 2 * (i0 + 8 * j)) : make_uint4(0, 0, 0, 0);
#pragma unroll
          for (int j = 0; j < 4; j++) {
            const __half2 *h2 = (const __half2 *)&u[j];
#pragma unroll
            for (int e = 0; e < 4; e++) {
              uint32_t i = i0 + 8 * j + 2 * e;
              if (i >= D) break;
              float2 f = __half22float2(h2[e]);
              dot += qs[i] * f.x;
              dot += qs[i + 1] * f.y;
            }
          }
        }
      } else {
#pragma unroll 16
        for (uint32_t i = 0; i < D; i++) dot += qs[i] * kv_at<F16>(kr, i);
      }
      s = dot * scale;
    }
    float mn = fmaxf(m, sp_cu_warp_max(s));
    float pr = c <= p ? expf(s - mn) : 0.0f;
    float corr = expf(m - mn);
    l = l * corr + sp_cu_warp_sum(pr);
#pragma unroll
    for (int j = 0; j < SP_ATT_DMAX / 32; j++) acc[j] *= corr;
    /* Rows past p get probability 0 and read row p instead, so every load
     * is unconditional and the unrolled loop keeps many in flight (guest
     * memory may sit across PCIe: latency, not bandwidth, bounds this). */
#pragma unroll 8
    for (int32_t jj = 0; jj < 32; jj++) {
      float pj = __shfl_sync(0xffffffffu, pr, jj);
      int32_t row = c0 + jj <= p ? c0 + jj : p;
      const uint8_t *vr = vb + (size_t)row * v.nb[1];
#pragma unroll
      for (int j = 0; j < SP_ATT_DMAX / 32; j++) {
        uint32_t dd = lane + 32 * j;
        if (dd < D) acc[j] += pj * kv_at<F16>(vr, dd);
      }
    }
    m = mn;
  }
  if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
  for (int j = 0; j < SP_ATT_DMAX / 32; j++) {
    uint32_t dd = lane + 32 * j;
    if (dd < D) wacc[warp][dd] = acc[j];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < SP_ATT_WARPS; w++) M = fmaxf(M, wm[w]);
  float L = 0, f[SP_ATT_WARPS];
  for (int w = 0; w < SP_ATT_WARPS; w++) f[w] = wl[w] > 0 ? expf(wm[w] - M) : 0.0f, L += wl[w] * f[w];
  float *yr = (float *)(d.p + (size_t)h * d.nb[0] + (size_t)t * d.nb[1]);
  for (uint32_t i = threadIdx.x; i < D; i += blockDim.x) {
    float o = 0;
    for (int w = 0; w < SP_ATT_WARPS; w++) o += f[w] > 0 ? wacc[w][i] * f[w] : 0.0f;
    yr[i] = o / L;
  }
}

/* ---- f16 cache, even head size: chunks of rows, one row per thread ---- */

#define SP_ATT_T 256 /* threads per block = cache rows scored per chunk */

static __device__ float att_block_reduce(float v, bool is_max, float *red) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 16; o > 0; o >>= 1) {
    float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, u) : v + u;
  }
  __syncthreads(); /* red is reused: everyone has read the last result */
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < SP_ATT_T / 32; w++) v = is_max ? fmaxf(v, red[w]) : v + red[w];
  return v;
}

/* q . K[row] for one row, q (f16-rounded) in shared memory. A head size
 * known at compile time (DT > 0) unrolls the row: all its loads issue
 * before the first multiply. */
template <bool VEC16, int DT>
static __device__ __forceinline__ float score_row(const float *qs, const uint8_t *kr, uint32_t D) {
  float dot = 0;
  if (DT) D = DT;
  if (VEC16) {
#pragma unroll
    for (uint32_t i0 = 0; i0 < D; i0 += 8) {
      uint4 u = *(const uint4 *)(kr + 2 * i0);
      const __half2 *h2 = (const __half2 *)&u;
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float2 f = __half22float2(h2[e]);
        dot += qs[i0 + 2 * e] * f.x;
        dot += qs[i0 + 2 * e + 1] * f.y;
      }
    }
  } else {
    for (uint32_t i = 0; i < D; i += 2) {
      float2 f = __half22float2(*(const __half2 *)(kr + 2 * i));
      dot += qs[i] * f.x;
      dot += qs[i + 1] * f.y;
    }
  }
  return dot;
}

/* Quantizes the 64 values a warp holds, two per lane (lane i: elements 2i,
 * 2i + 1): two 32-element blocks, lanes 0-15 and 16-31, with the numerics
 * of sp_cu_quantize_block. */
static __device__ __forceinline__ void quantize_pairs(float a, float b, int8_t *q, float *d, float *s) {
  uint32_t lane = threadIdx.x % 32;
  float amax = fmaxf(fabsf(a), fabsf(b));
  for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o)); /* within a half */
  float id = amax > 0 ? 127.0f / amax : 0.0f;
  int qa = (int)fminf(fmaxf(rintf(__fmul_rn(a, id)), -127.0f), 127.0f);
  int qb = (int)fminf(fmaxf(rintf(__fmul_rn(b, id)), -127.0f), 127.0f);
  int sum = qa + qb;
  for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  q[2 * lane] = (int8_t)qa, q[2 * lane + 1] = (int8_t)qb;
  if (lane % 16) return;
  float dh = __half2float(__float2half_rn(amax / 127.0f));
  d[lane / 16] = dh;
  s[lane / 16] = __half2float(__float2half_rn(__fmul_rn(dh, (float)sum)));
}

/* One block per (query head, token). Per chunk of SP_ATT_T cache rows:
 * thread t scores row c0 + t; the chunk's probabilities go to shared
 * memory (online softmax across chunks); then the block, split into
 * SP_ATT_T / (D / 2) row groups of D / 2 threads (two dimensions each),
 * accumulates the values, and the groups are summed at the end. */
template <bool VEC16, int DT, bool QUANT>
__global__ void __launch_bounds__(SP_ATT_T)
    attention_f16_kernel(sp_cu_tensor q, sp_cu_tensor k, sp_cu_tensor v, const int32_t *pos, sp_cu_tensor d,
                         float scale, uint32_t window, sp_cu_qdst qd, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float qs[SP_ATT_DMAX], pr[SP_ATT_T], red[SP_ATT_T / 32];
  __shared__ float2 part[SP_ATT_T];
  uint32_t h = blockIdx.x, t = blockIdx.y, D = DT ? DT : q.ne[0], Hq = q.ne[1], tid = threadIdx.x;
  uint32_t hk = h / (Hq / k.ne[1]);
  int32_t p = pos[t], C = (int32_t)k.ne[2];
  p = p < 0 ? 0 : (p >= C ? C - 1 : p); /* checked before; never trust guest data twice */
  const float *qr = (const float *)(q.p + (size_t)h * q.nb[0] + (size_t)t * q.nb[1]);
  for (uint32_t i = tid; i < D; i += SP_ATT_T) qs[i] = __half2float(__float2half_rn(qr[i]));
  __syncthreads();
  const uint8_t *kb = k.p + (size_t)hk * k.nb[0], *vb = v.p + (size_t)hk * v.nb[0];
  uint32_t U = D / 2, R = SP_ATT_T / U, g = tid / U, u = tid % U;
  bool owner = g < R; /* threads past R * U only score */
  float m = -INFINITY, l = 0;
  float2 acc = make_float2(0, 0);
  for (int32_t c0 = window_start(p, window); c0 <= p; c0 += SP_ATT_T) {
    int32_t c = c0 + (int32_t)tid;
    float s = c <= p ? score_row<VEC16, DT>(qs, kb + (size_t)c * k.nb[1], D) * scale : -INFINITY;
    float mn = fmaxf(m, att_block_reduce(s, true, red));
    float e = c <= p ? expf(s - mn) : 0.0f;
    pr[tid] = e;
    float corr = expf(m - mn);
    l = l * corr + att_block_reduce(e, false, red); /* its barriers also publish pr */
    acc.x *= corr, acc.y *= corr;
    int32_t rows = p - c0 + 1 < SP_ATT_T ? p - c0 + 1 : SP_ATT_T;
    if (owner) {
#pragma unroll 8
      for (int32_t r = (int32_t)g; r < rows; r += (int32_t)R) {
        float2 f = __half22float2(*(const __half2 *)(vb + (size_t)(c0 + r) * v.nb[1] + 4 * u));
        float w = pr[r];
        acc.x += w * f.x, acc.y += w * f.y;
      }
    }
    m = mn;
    __syncthreads(); /* pr is rewritten by the next chunk */
  }
  part[tid] = acc;
  __syncthreads();
  if (g != 0) return;
  float2 o = part[u];
  for (uint32_t j = 1; j < R; j++) o.x += part[j * U + u].x, o.y += part[j * U + u].y;
  o.x /= l, o.y /= l;
  float *yr = (float *)(d.p + (size_t)h * d.nb[0] + (size_t)t * d.nb[1]);
  yr[2 * u] = o.x, yr[2 * u + 1] = o.y;
  if (QUANT) { /* the next matmul's input row t: Hq heads of D values */
    size_t e0 = (size_t)h * D + 64 * (u / 32), K = (size_t)Hq * D;
    quantize_pairs(o.x, o.y, qd.xq + t * K + e0, qd.xd + t * (K / 32) + e0 / 32, qd.xs + t * (K / 32) + e0 / 32);
  }
}

/* Launches the f16 kernel for this head size (and quantization); false when
 * the command does not fit it. */
template <bool QUANT>
static bool launch_f16(const sp_cu_cmd *c, dim3 grid, float scale, const int32_t *pos, sp_cu_qdst qd) {
  const sp_cu_tensor &q = c->src[0], &k = c->src[1], &v = c->src[2];
  uint32_t D = k.ne[0], W = c->cmd->param[1];
  if (!sp_cu_attention_fast(k.dtype, v.dtype, D, (uintptr_t)k.p | k.nb[0] | k.nb[1] | (uintptr_t)v.p | v.nb[0] | v.nb[1]))
    return false;
  bool vec = D % 8 == 0 && ((uintptr_t)k.p | k.nb[0] | k.nb[1]) % 16 == 0;
  if (vec && D == 64)
    sp_cu_launch(attention_f16_kernel<true, 64, QUANT>, grid, SP_ATT_T, c->stream, q, k, v, pos, c->dst, scale, W, qd,
                 c->status);
  else if (vec && D == 128)
    sp_cu_launch(attention_f16_kernel<true, 128, QUANT>, grid, SP_ATT_T, c->stream, q, k, v, pos, c->dst, scale, W, qd,
                 c->status);
  else if (vec)
    sp_cu_launch(attention_f16_kernel<true, 0, QUANT>, grid, SP_ATT_T, c->stream, q, k, v, pos, c->dst, scale, W, qd,
                 c->status);
  else
    sp_cu_launch(attention_f16_kernel<false, 0, QUANT>, grid, SP_ATT_T, c->stream, q, k, v, pos, c->dst, scale, W, qd,
                 c->status);
  return true;
}

bool sp_cu_attention_fast(uint32_t kdtype, uint32_t vdtype, uint32_t D, uintptr_t addr_bits) {
  return kdtype == SP_DTYPE_F16 && vdtype == SP_DTYPE_F16 && D % 2 == 0 && D <= SP_ATT_DMAX && addr_bits % 4 == 0;
}

cudaError_t sp_cu_attention_quant(const sp_cu_cmd *c, sp_cu_qdst qd) {
  dim3 grid(c->src[0].ne[1], c->src[0].ne[2]);
  if (!launch_f16<true>(c, grid, sp_cu_f32(c->cmd->param[0]), (const int32_t *)c->src[3].p, qd))
    return cudaErrorNotSupported; /* the planner checked: unreachable */
  return cudaGetLastError();
}

cudaError_t sp_cu_attention(const sp_cu_cmd *c) {
  dim3 grid(c->src[0].ne[1], c->src[0].ne[2]);
  const sp_cu_tensor &k = c->src[1], &v = c->src[2];
  float scale = sp_cu_f32(c->cmd->param[0]);
  const int32_t *pos = (const int32_t *)c->src[3].p;
  sp_cu_qdst none = {};
  if (sp_cu_attention_prefill(c)) return cudaGetLastError();
  if (launch_f16<false>(c, grid, scale, pos, none)) return cudaGetLastError();
  bool vec = k.ne[0] % 8 == 0 && ((uintptr_t)k.p | k.nb[0] | k.nb[1]) % 16 == 0;
  uint32_t W = c->cmd->param[1];
  if (k.dtype == SP_DTYPE_F16)
    sp_cu_launch(attention_kernel<true>, grid, SP_ATT_WARPS * 32, c->stream, c->src[0], k, v, pos, c->dst, scale, W,
                 vec, c->status);
  else
    sp_cu_launch(attention_kernel<false>, grid, SP_ATT_WARPS * 32, c->stream, c->src[0], k, v, pos, c->dst, scale, W,
                 false, c->status);
  return cudaGetLastError();
}
