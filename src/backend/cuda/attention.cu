/*
 * attention.cu: causal grouped-query attention over the KV cache in guest
 * memory (f16 or f32), for decode and short lists; attention_prefill.cu
 * takes prompts of 16 or more rows on tensor cores.
 *
 * Three kernels, chosen in sp_cu_attention by the rule written above
 * split_applies():
 *  - split-KV ("flash-decoding", below): a few query rows over a long
 *    cache. Each block takes one KV head, one token and one contiguous
 *    span of cache rows, and serves all the query heads of its group, so
 *    a K or V row is read once per group; the spans' partial results
 *    (max, sum, unnormalized output) go to scratch and the last span to
 *    finish merges them. The decode grid then grows with the cache
 *    instead of staying at one block per query head.
 *  - attention_f16_kernel: an f16 cache with an even head size, one block
 *    per (query head, token).
 *  - attention_kernel: the general one (f32 cache, odd head sizes).
 *
 * The general kernel: each warp walks 32 cache rows at a time, one row per
 * lane, keeping a running maximum, sum and output accumulator (online
 * softmax); the warps then merge their partial results. As llm_ops.c does
 * for an f16 cache, q is rounded to f16 before the dot products (in every
 * kernel). The position of each query was checked against the cache
 * length before these kernels ran; it is clamped again here, since guest
 * data is never trusted twice.
 *
 * A sliding window of W keys (param[1], 0 = none) only moves where a
 * query's walk over the cache starts: row window_start(p, W) instead of 0.
 */
#include <cuda_pipeline.h>
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

/* ---- split-KV decode (flash-decoding): f16 cache, head size 64/128/256 ----
 *
 * Grid (KV head hk, span s, token t), SP_FD_THREADS threads. The G <= 8
 * query heads hk * G .. hk * G + G - 1 share the block. A query at p with
 * window start lo walks L = p - lo + 1 rows; they are cut into spans of
 * R = fd_span_rows(L) rows counted from lo, each a whole number of tiles
 * of CH rows (the last one shorter), and span s is rows lo + s R .. up to
 * p. Per tile: K and V rows are copied to shared memory (cp.async, K first
 * so scoring starts while V lands; the next tile's K comes in while this
 * tile's values are summed), every (row, head) is scored, each head's
 * online softmax moves on by the tile, and the probabilities meet V (f32
 * throughout, on CUDA cores: tensor cores are left for later, see
 * attention_prefill.cu for the WMMA shapes). The merge is done by the
 * last block of a (KV head, token) to finish, not by a second kernel: the
 * host cannot see positions, so short walks over a big cache take this
 * path too, and there one launch per layer is what costs.
 *
 * Determinism: R depends only on L (the position and the window) and on
 * `spans`, the grid's span count, which depends only on the device's SM
 * count and the number of KV heads; the merge adds the spans in order. So
 * a query row's bits never depend on the other rows of its list, and a
 * CUDA graph captured at one position computes any other one correctly
 * (spans past a row's end return at once; the grid is fixed by shapes). */

#define SP_FD_THREADS 128
#define SP_FD_GMAX 8        /* query heads per KV head (GQA group) it serves */
#define SP_FD_MAX_T 4       /* query rows per command it takes (decode, a short turn) */
#define SP_FD_MIN_ROWS 512  /* caches whose walk cannot exceed this keep the one-block kernels */
#define SP_FD_FEW_BLOCKS 16 /* ... unless those kernels' grid (query heads x rows) is smaller than this */
#define SP_FD_FEW_MIN_ROWS 64 /* then walks over this many rows split (Gemma 3's 512-row windows, 4 heads) */
#define SP_FD_MAX_SPANS 64  /* spans per (KV head, token) at most */
#define SP_FD_SCRATCH_MAX ((size_t)16 << 20) /* larger partial results: the one-block kernels */

/* The tile shape for head size D: a tile is CH rows (16 KB of f16 keys);
 * scoring gives each row TPR threads of 64 elements each; the value sum
 * gives each thread one column pair (of D / 2) for NH of the heads (head
 * stride HS). Shared rows are padded by 16 bytes per row thread (STRIDE
 * halves), so the 8 threads of a 16-byte access phase hit distinct banks. */
template <int D>
struct fd_shape {
  static constexpr int CH = 8192 / D;
  static constexpr int TPR = SP_FD_THREADS / CH;
  static constexpr int SLICE = D / TPR;
  static constexpr int STRIDE = D + 8 * TPR;
  static constexpr int COLS = D / 2;
  static constexpr int HS = SP_FD_THREADS / COLS;
  static constexpr int NH = SP_FD_GMAX / HS;
};

/* Rows per span for a walk of L rows: whole tiles of ch rows, at most
 * `spans` spans. */
static __host__ __device__ __forceinline__ int32_t fd_span_rows(int32_t L, int32_t ch, int32_t spans) {
  int32_t tiles = (L + ch - 1) / ch;
  return ch * ((tiles + spans - 1) / spans);
}

/* Query t's clamped position, window start and walk length. */
static __device__ __forceinline__ void fd_walk(const int32_t *pos, uint32_t t, int32_t C, uint32_t window, int32_t &p,
                                               int32_t &lo, int32_t &L) {
  p = pos[t];
  p = p < 0 ? 0 : (p >= C ? C - 1 : p); /* checked before; never trust guest data twice */
  lo = window_start(p, window);
  L = p - lo + 1;
}

/* Copies rows [r0, r0 + n) of one head's cache (rows `nb` bytes apart) to
 * a padded shared tile, 16 bytes a thread at a time, as one cp.async group. */
template <int D>
static __device__ __forceinline__ void fd_fetch(__half *tile, const uint8_t *base, uint32_t nb, int32_t r0, int32_t n) {
  using S = fd_shape<D>;
  for (int32_t i = (int32_t)threadIdx.x; i < n * (D / 8); i += SP_FD_THREADS) {
    int32_t r = i / (D / 8), e = (i % (D / 8)) * 8;
    __pipeline_memcpy_async(tile + r * S::STRIDE + e, base + (size_t)(r0 + r) * nb + 2 * e, 16);
  }
  __pipeline_commit();
}

/* Scores of the tile's n rows for the G heads into ps[g][r] (scaled; rows
 * past n: -inf). Thread: row tid / TPR, 16-byte chunks j * TPR + part. */
template <int D>
static __device__ __forceinline__ void fd_scores(const __half *ks, const float *qs, float *ps, uint32_t G, int32_t n,
                                                 float scale) {
  using S = fd_shape<D>;
  uint32_t r = threadIdx.x / S::TPR, part = threadIdx.x % S::TPR;
  float dot[SP_FD_GMAX];
#pragma unroll
  for (int g = 0; g < SP_FD_GMAX; g++) dot[g] = 0.0f;
  if ((int32_t)r < n) {
    const __half *kr = ks + r * S::STRIDE;
#pragma unroll
    for (int j = 0; j < S::SLICE / 8; j++) {
      uint32_t e = (j * S::TPR + part) * 8;
      uint4 u = *(const uint4 *)(kr + e);
      const __half2 *h2 = (const __half2 *)&u;
      float2 k0 = __half22float2(h2[0]), k1 = __half22float2(h2[1]), k2 = __half22float2(h2[2]),
             k3 = __half22float2(h2[3]);
#pragma unroll
      for (int g = 0; g < SP_FD_GMAX; g++) {
        if (g >= (int)G) break;
        const float4 *qv = (const float4 *)(qs + g * D + e);
        float4 a = qv[0], b = qv[1];
        float d = dot[g];
        d = fmaf(a.x, k0.x, d), d = fmaf(a.y, k0.y, d), d = fmaf(a.z, k1.x, d), d = fmaf(a.w, k1.y, d);
        d = fmaf(b.x, k2.x, d), d = fmaf(b.y, k2.y, d), d = fmaf(b.z, k3.x, d), d = fmaf(b.w, k3.y, d);
        dot[g] = d;
      }
    }
  }
#pragma unroll
  for (int g = 0; g < SP_FD_GMAX; g++) {
    if (g >= (int)G) break; /* G is the same for the whole block */
    float d = dot[g];
#pragma unroll
    for (int o = 1; o < S::TPR; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    if (part == 0) ps[g * S::CH + r] = (int32_t)r < n ? d * scale : -INFINITY;
  }
}

/* One head's online softmax over the tile (a whole warp): the new maximum,
 * ps[r] = exp(s - max) in place, the running sum; returns the factor the
 * output so far is scaled by. */
template <int CH>
static __device__ __forceinline__ float fd_softmax(float *ps, int32_t n, float &m, float &l) {
  uint32_t lane = threadIdx.x % 32;
  float mx = -INFINITY;
#pragma unroll
  for (int r = lane; r < CH; r += 32) mx = fmaxf(mx, ps[r]);
  float mn = fmaxf(m, sp_cu_warp_max(mx)); /* finite: a tile has a row */
  float corr = expf(m - mn), sum = 0.0f;    /* m = -inf at first: 0 */
#pragma unroll
  for (int r = lane; r < CH; r += 32) {
    float e = r < n ? expf(ps[r] - mn) : 0.0f;
    ps[r] = e;
    sum += e;
  }
  l = l * corr + sp_cu_warp_sum(sum);
  m = mn;
  return corr;
}

/* Where the split path's scratch (fd_scratch_get) keeps what: first
 * arrival counters, one per (token, KV head), at fixed places whatever the
 * shape (each is back to zero when its kernel ends; zeroed at allocation),
 * then the spans' partial results. */
#define SP_FD_COUNTERS 1024

typedef struct fd_parts {
  uint32_t *arrived; /* [T][Hkv] spans done */
  float *acc;        /* [T][Hq][spans][D] unnormalized outputs */
  float2 *ml;        /* [T][Hq][spans] (max, sum) */
} fd_parts;

/* Query row t, head h: out = o / sum, written to dst and (QUANT) as the
 * next matmul's quantized input, by thread column pair c of a warp that
 * holds 64 consecutive values of the head (as attention_f16_kernel). */
template <bool QUANT>
static __device__ __forceinline__ void fd_write(const sp_cu_tensor &d, sp_cu_qdst qd, uint32_t h, uint32_t t,
                                                uint32_t c, float2 o, float sum) {
  uint32_t D = d.ne[0], Hq = d.ne[1];
  o.x /= sum, o.y /= sum;
  float *yr = (float *)(d.p + (size_t)h * d.nb[0] + (size_t)t * d.nb[1]);
  yr[2 * c] = o.x, yr[2 * c + 1] = o.y;
  if (QUANT) { /* the next matmul's input row t: Hq heads of D values */
    size_t e0 = (size_t)h * D + 64 * (c / 32), K = (size_t)Hq * D;
    quantize_pairs(o.x, o.y, qd.xq + t * K + e0, qd.xd + t * (K / 32) + e0 / 32, qd.xs + t * (K / 32) + e0 / 32);
  }
}

/* Column pair c of head row `row` (its spans at row .. row + ns - 1),
 * merged: the spans in order, each scaled by exp(its max - the max). The
 * other blocks' results are read from L2 (__ldcg), past L1. */
template <int D>
static __device__ __forceinline__ float2 fd_merge(const fd_parts &pt, size_t row, int32_t ns, uint32_t c, float &sum) {
  float M = -INFINITY;
  for (int32_t s = 0; s < ns; s++) M = fmaxf(M, __ldcg(&pt.ml[row + s]).x);
  float2 o = make_float2(0.0f, 0.0f);
  sum = 0.0f;
  for (int32_t s = 0; s < ns; s++) {
    float2 st = __ldcg(&pt.ml[row + s]), x = __ldcg((const float2 *)(pt.acc + (row + s) * D) + c);
    float w = expf(st.x - M);
    sum += st.y * w;
    o.x = fmaf(w, x.x, o.x), o.y = fmaf(w, x.y, o.y);
  }
  return o;
}

/* Block (KV head hk, span s, token t). A walk of one span is finished by
 * its block; otherwise each span leaves its partial results in scratch and
 * the last of the token's spans to arrive (counted in pt.arrived, which it
 * resets) merges them in span order, so no second kernel is launched. */
template <int D, bool QUANT>
__global__ void __launch_bounds__(SP_FD_THREADS)
    attention_split_kernel(sp_cu_tensor q, sp_cu_tensor k, sp_cu_tensor v, const int32_t *pos, sp_cu_tensor d,
                           fd_parts pt, float scale, uint32_t window, uint32_t spans, sp_cu_qdst qd,
                           sp_cu_status *st) {
  SP_CU_GUARD(st);
  using S = fd_shape<D>;
  __shared__ __align__(16) __half ks[S::CH * S::STRIDE], vs[S::CH * S::STRIDE];
  __shared__ __align__(16) float qs[SP_FD_GMAX * D];
  __shared__ float ps[SP_FD_GMAX * S::CH], cs[SP_FD_GMAX];
  __shared__ float2 mls[SP_FD_GMAX];
  __shared__ bool last;
  uint32_t hk = blockIdx.x, s = blockIdx.y, t = blockIdx.z, tid = threadIdx.x;
  uint32_t Hq = q.ne[1], Hkv = k.ne[1], G = Hq / Hkv;
  int32_t p, lo, L;
  fd_walk(pos, t, (int32_t)k.ne[2], window, p, lo, L);
  int32_t R = fd_span_rows(L, S::CH, (int32_t)spans), a = lo + (int32_t)s * R, ns = (L + R - 1) / R;
  if (a > p) return; /* past this query's walk (the grid is sized for the longest) */
  int32_t b = a + R <= p + 1 ? a + R : p + 1;
  const uint8_t *kb = k.p + (size_t)hk * k.nb[0], *vb = v.p + (size_t)hk * v.nb[0];
  fd_fetch<D>(ks, kb, k.nb[1], a, b - a < S::CH ? b - a : S::CH);
  fd_fetch<D>(vs, vb, v.nb[1], a, b - a < S::CH ? b - a : S::CH);
  for (uint32_t i = tid; i < G * D; i += SP_FD_THREADS) {
    const float *qr = (const float *)(q.p + (size_t)(hk * G + i / D) * q.nb[0] + (size_t)t * q.nb[1]);
    qs[i] = __half2float(__float2half_rn(qr[i % D]));
  }
  uint32_t warp = tid / 32, c = tid % S::COLS, g0 = tid / S::COLS;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; /* heads warp, warp + 4 */
  float2 acc[S::NH];
#pragma unroll
  for (int i = 0; i < S::NH; i++) acc[i] = make_float2(0.0f, 0.0f);
  for (int32_t r0 = a; r0 < b; r0 += S::CH) {
    int32_t n = b - r0 < S::CH ? b - r0 : S::CH;
    bool next = r0 + S::CH < b;
    __pipeline_wait_prior(1); /* this tile's K has landed (its V may not have) */
    __syncthreads();
    fd_scores<D>(ks, qs, ps, G, n, scale);
    __syncthreads();
    if (next) fd_fetch<D>(ks, kb, k.nb[1], r0 + S::CH, b - r0 - S::CH < S::CH ? b - r0 - S::CH : S::CH);
#pragma unroll
    for (int i = 0; i < 2; i++) {
      uint32_t g = warp + 4 * i;
      if (g < G) {
        float corr = fd_softmax<S::CH>(ps + g * S::CH, n, m[i], l[i]);
        if (tid % 32 == 0) cs[g] = corr;
      }
    }
    if (next) __pipeline_wait_prior(1); /* this tile's V (the next K may be in flight) */
    else __pipeline_wait_prior(0);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < S::NH; i++) { /* heads past G stay 0 */
      uint32_t g = g0 + S::HS * i;
      float corr = g < G ? cs[g] : 0.0f;
      acc[i].x *= corr, acc[i].y *= corr;
    }
#pragma unroll 4
    for (int32_t r = 0; r < n; r++) { /* acc += p[g][r] * V[r][2c, 2c + 1] */
      float2 x = __half22float2(*(const __half2 *)(vs + r * S::STRIDE + 2 * c));
#pragma unroll
      for (int i = 0; i < S::NH; i++) {
        uint32_t g = g0 + S::HS * i;
        if (g < G) {
          float w = ps[g * S::CH + r];
          acc[i].x = fmaf(w, x.x, acc[i].x), acc[i].y = fmaf(w, x.y, acc[i].y);
        }
      }
    }
    __syncthreads(); /* V and ps are rewritten by the next tile */
    if (next) fd_fetch<D>(vs, vb, v.nb[1], r0 + S::CH, b - r0 - S::CH < S::CH ? b - r0 - S::CH : S::CH);
  }
#pragma unroll
  for (int i = 0; i < 2; i++) { /* each head's (max, sum), for every thread */
    uint32_t g = warp + 4 * i;
    if (g < G && tid % 32 == 0) mls[g] = make_float2(m[i], l[i]);
  }
  __syncthreads();
  if (ns == 1) { /* the whole walk: no partial results */
#pragma unroll
    for (int i = 0; i < S::NH; i++) {
      uint32_t g = g0 + S::HS * i;
      if (g < G) fd_write<QUANT>(d, qd, hk * G + g, t, c, acc[i], mls[g].y);
    }
    return;
  }
  size_t row0 = ((size_t)t * Hq + hk * G) * spans; /* head hk * G + g, span s: row0 + g * spans + s */
#pragma unroll
  for (int i = 0; i < S::NH; i++) {
    uint32_t g = g0 + S::HS * i;
    if (g < G) ((float2 *)(pt.acc + (row0 + (size_t)g * spans + s) * D))[c] = acc[i];
  }
  if (tid < G) pt.ml[row0 + (size_t)tid * spans + s] = mls[tid];
  __threadfence(); /* this block's results are visible before it counts itself */
  __syncthreads();
  if (tid == 0) last = atomicAdd(&pt.arrived[t * Hkv + hk], 1u) == (uint32_t)ns - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
#pragma unroll
  for (int i = 0; i < S::NH; i++) {
    uint32_t g = g0 + S::HS * i;
    if (g < G) {
      float sum;
      float2 o = fd_merge<D>(pt, row0 + (size_t)g * spans, ns, c, sum);
      fd_write<QUANT>(d, qd, hk * G + g, t, c, o, sum);
    }
  }
  if (tid == 0) pt.arrived[t * Hkv + hk] = 0; /* for the next kernel */
}

/* ---- the split path's scratch ----
 *
 * The partial results live in the binding's attention scratch
 * (sp_cu_cmd.attn), reserved before a list is enqueued or captured from
 * the sizes sp_cu_attention_scratch_bytes gives (cuda_submit.cu), and
 * freed with the binding. Too small (its reservation failed, or it was
 * over the actor's budget): the one-block kernels run. */

/* Spans per (KV head, token): about two blocks per SM over the KV heads,
 * from the device and the model's shape only (see the determinism note). */
static uint32_t fd_spans(uint32_t Hkv) {
  static int sms_of[16];
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  if (dev >= 0 && dev < 16) sms = __atomic_load_n(&sms_of[dev], __ATOMIC_RELAXED);
  if (!sms) {
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) sms = 1;
    cudaGetLastError();
    if (dev >= 0 && dev < 16) __atomic_store_n(&sms_of[dev], sms, __ATOMIC_RELAXED);
  }
  uint32_t n = (2 * (uint32_t)sms + Hkv - 1) / Hkv;
  return n < 1 ? 1 : n > SP_FD_MAX_SPANS ? SP_FD_MAX_SPANS : n;
}

/* The rule: the split path takes a command when
 *  - the knob SP_CUDA_NO_FLASH is off (with it: the one-block kernels);
 *  - the cache is f16, head size 64, 128 or 256, rows 16-byte aligned;
 *  - it has at most SP_FD_MAX_T query rows (a decode step, a short turn;
 *    prompts of 16+ rows went to the tensor-core kernel already);
 *  - GQA groups of at most SP_FD_GMAX heads;
 *  - the walk can exceed SP_FD_MIN_ROWS rows: the cache has more rows,
 *    and the window (if any) is wider. The host cannot see the positions
 *    (a replayed graph reads them from guest memory), so this is decided
 *    by the cache's size; a short walk over a big cache uses one span.
 * Conservative by design: below 512 rows the one-block kernels' 32-block
 * grid (1B shape) already covers the walk in two 256-row chunks. A grid of
 * fewer than 16 blocks does not (Gemma 3 270M: 4 query heads, one block
 * each, walking its local layers' 512-row windows took 166 us a layer at
 * depth 4,096 on an H100), so there walks over 64 rows split. */
static bool split_shape(const sp_cmd *cmd) {
  const sp_tensor &q = cmd->src[0], &k = cmd->src[1], &v = cmd->src[2];
  uint32_t D = k.ne[0], C = k.ne[2], W = cmd->param[1], Hkv = k.ne[1], T = q.ne[2];
  if (k.dtype != SP_DTYPE_F16 || v.dtype != SP_DTYPE_F16) return false;
  if ((D != 64 && D != 128 && D != 256) || T > SP_FD_MAX_T || q.ne[3] != 1) return false;
  if (Hkv == 0 || q.ne[1] / Hkv > SP_FD_GMAX) return false;
  uint32_t walk = W && W < C ? W : C;
  return walk > (q.ne[1] * T < SP_FD_FEW_BLOCKS ? SP_FD_FEW_MIN_ROWS : SP_FD_MIN_ROWS);
}

static bool split_applies(const sp_cu_cmd *c) {
  const sp_cu_tensor &k = c->src[1], &v = c->src[2];
  if (c->no_flash || !split_shape(c->cmd)) return false;
  return ((uintptr_t)k.p | k.nb[0] | k.nb[1] | (uintptr_t)v.p | v.nb[0] | v.nb[1]) % 16 == 0;
}

/* The split path's scratch for a command of this shape: arrival counters,
 * then per (token, query head, span) D partial outputs and (max, sum). */
static size_t split_bytes(const sp_cmd *cmd) {
  uint32_t D = cmd->src[1].ne[0], Hq = cmd->src[0].ne[1], T = cmd->src[0].ne[2], spans = fd_spans(cmd->src[1].ne[1]);
  size_t rows = (size_t)T * Hq * spans;
  return SP_FD_COUNTERS * sizeof(uint32_t) + rows * D * sizeof(float) + rows * sizeof(float2);
}

size_t sp_cu_attention_scratch_bytes(const sp_cmd *cmd, bool no_flash) {
  if (no_flash || cmd->op != SP_OP_ATTENTION || !split_shape(cmd)) return 0;
  if ((size_t)cmd->src[0].ne[2] * cmd->src[1].ne[1] > SP_FD_COUNTERS) return 0;
  size_t bytes = split_bytes(cmd);
  return bytes <= SP_FD_SCRATCH_MAX ? bytes : 0;
}

template <int D>
static void launch_split(const sp_cu_cmd *c, fd_parts pt, uint32_t spans, float scale, sp_cu_qdst qd) {
  dim3 grid(c->src[1].ne[1], spans, c->src[0].ne[2]);
  const int32_t *pos = (const int32_t *)c->src[3].p;
  if (qd.xq)
    sp_cu_launch(attention_split_kernel<D, true>, grid, SP_FD_THREADS, c->stream, c->src[0], c->src[1], c->src[2],
                 pos, c->dst, pt, scale, c->cmd->param[1], spans, qd, c->status);
  else
    sp_cu_launch(attention_split_kernel<D, false>, grid, SP_FD_THREADS, c->stream, c->src[0], c->src[1], c->src[2],
                 pos, c->dst, pt, scale, c->cmd->param[1], spans, qd, c->status);
}

/* Runs the command on the split path (quantizing its output when qd.xq);
 * false when the rule says no or there is no scratch. */
static bool attention_split(const sp_cu_cmd *c, sp_cu_qdst qd) {
  if (!split_applies(c)) return false;
  const sp_cu_tensor &q = c->src[0], &k = c->src[1];
  uint32_t D = k.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = k.ne[1], spans = fd_spans(Hkv);
  size_t rows = (size_t)T * Hq * spans, counters = SP_FD_COUNTERS * sizeof(uint32_t);
  size_t bytes = sp_cu_attention_scratch_bytes(c->cmd, false);
  if (!bytes || !c->attn || bytes > c->attn_bytes) return false;
  uint8_t *buf = c->attn;
  fd_parts pt;
  pt.arrived = (uint32_t *)buf;
  pt.acc = (float *)(buf + counters);
  pt.ml = (float2 *)(pt.acc + rows * D); /* D is a multiple of 64: aligned */
  float scale = sp_cu_f32(c->cmd->param[0]);
  if (D == 64) launch_split<64>(c, pt, spans, scale, qd);
  else if (D == 128) launch_split<128>(c, pt, spans, scale, qd);
  else launch_split<256>(c, pt, spans, scale, qd);
  return true;
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
  if (attention_split(c, qd)) return cudaGetLastError();
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
  if (attention_split(c, none)) return cudaGetLastError();
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
