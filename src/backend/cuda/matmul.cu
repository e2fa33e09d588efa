/*
 * matmul.cu: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T.
 *
 * Three paths:
 *  - M <= SP_CU_MMV_MAX_M, quantized weights (Q8_0, Q4_0, Q4_1): the
 *    activation rows are first quantized to int8 blocks (same formula and
 *    rounding as the CPU's sp_q8_act), then `wpr` warps per weight row (4
 *    by default: a 128-thread block per row, so even a 512-row matrix keeps
 *    enough loads in flight) run integer dot products (dp4a), four lanes per
 *    32-element block, and sum their parts through shared memory;
 *    Q5_0, Q4_K and Q6_K (a Q4_K_M file's types) take the same kernel
 *    over units of 32, 64 or 128 values (quant_k.cuh); the other issue-15
 *    types (Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) are dequantized on the
 *    fly against the same int8 activations (mmv_deq_kernel);
 *  - M <= SP_CU_MMV_MAX_M, float weights (F32, F16, BF16): the same split,
 *    16-byte loads when rows are aligned;
 *  - larger M (prefill): cuBLAS where the machine has it (gemm.h), else
 *    64 x 64 output tiles on tensor cores (WMMA, f16 operands, f32
 *    accumulation), weights dequantized into shared memory.
 */
#include <mma.h>

#include "core/knobs.h"
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/gated.cuh"
#include "backend/cuda/gemm.h"
#include "backend/cuda/quant_k.cuh"

#define SP_MMV_ROWS 4 /* weight rows (warps) per block */
#define SP_MMV_BATCH 4 /* quantized blocks per thread whose loads go out together */
/* the same for units of the issue-15 types (quant_k.cuh), which carry more
 * bytes each: Q6_K's 128-value units take one step at a time */
#define SP_MMV_KQ_BATCH(DT) ((DT) == SP_DTYPE_Q6_K ? 1 : 2)

/* Warps per weight row in the matrix-vector kernels: 1, 2 or 4; the knob
 * SP_CUDA_MMV_WPR (for measurement) overrides `fallback`. */
static uint32_t mmv_wpr(uint32_t fallback = 4) {
  int64_t v = sp_cu_knobs()->cuda_mmv_wpr;
  return v == 1 || v == 2 || v == 4 ? (uint32_t)v : fallback;
}

/* Weight types whose decode products run on int8 activations, as the
 * CPU's do: GGUF's legacy quants and every issue-15 type. */
static bool is_quant(uint32_t dt) {
  return dt == SP_DTYPE_Q8_0 || dt == SP_DTYPE_Q4_0 || dt == SP_DTYPE_Q4_1 || sp_cu_is_kq(dt);
}

/* The issue-15 types read through the kernels of quant_k.cuh. */
template <int DT> struct is_kq_t {
  static const bool value = DT >= SP_DTYPE_Q5_0 && DT <= SP_DTYPE_IQ4_XS;
};

/* Those with integer dot products (dp4a) in mmvq_kernel: the legacy quants
 * and a Q4_K_M file's Q5_0, Q4_K, Q6_K; the other issue-15 types are
 * dequantized on the fly (mmv_deq_kernel). */
template <int DT> struct has_dp4a_t {
  static const bool value = !is_kq_t<DT>::value || DT == SP_DTYPE_Q5_0 || DT == SP_DTYPE_Q4_K || DT == SP_DTYPE_Q6_K;
};

bool sp_cu_matmul_quantizes(uint32_t wdtype, uint32_t m) { return is_quant(wdtype) && m <= SP_CU_MMV_MAX_M; }

/* ---- activation quantization ---- */

/* One warp per 32-element block of row blockIdx.y. With a GATE (SWIGLU or
 * GEGLU) the value is first the gate of x and u (as ew_kernel computes it),
 * stored to y, then quantized: the gate and the quantization of the next
 * matmul's input in one launch. */
template <int GATE>
__global__ void quantize_kernel(const uint8_t *x, uint32_t x_stride, const uint8_t *u, uint32_t u_stride, uint8_t *y,
                                uint32_t y_stride, uint32_t K, int8_t *xq, float *xd, float *xs, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t nb = K / SP_CU_QK, m = blockIdx.y;
  uint32_t b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (b >= nb) return;
  uint32_t i = b * SP_CU_QK + lane;
  float v = ((const float *)(x + (size_t)m * x_stride))[i];
  if (GATE != SP_OP_NOP) { /* NOP: quantize only */
    float g = ((const float *)(u + (size_t)m * u_stride))[i];
    v = GATE == SP_OP_GEGLU ? sp_cu_geglu(v, g) : sp_cu_swiglu(v, g);
    ((float *)(y + (size_t)m * y_stride))[i] = v;
  }
  sp_cu_quantize_block(v, xq + (size_t)m * K + b * SP_CU_QK, xd + (size_t)m * nb + b, xs + (size_t)m * nb + b);
}

static void launch_quantize(const sp_cu_cmd *c, const sp_cu_tensor &x, uint32_t K, uint32_t M) {
  dim3 grid((K / SP_CU_QK + 7) / 8, M);
  sp_cu_launch(quantize_kernel<SP_OP_NOP>, grid, 256, c->stream, x.p, x.nb[0], nullptr, 0, nullptr, 0, K, c->xq, c->xd,
               c->xs, c->status);
}

cudaError_t sp_cu_gate_quant(const sp_cu_cmd *c, sp_cu_qdst q) {
  uint32_t K = c->dst.ne[0], M = c->dst.ne[1];
  dim3 grid((K / SP_CU_QK + 7) / 8, M);
  auto kernel = c->cmd->op == SP_OP_GEGLU ? quantize_kernel<SP_OP_GEGLU> : quantize_kernel<SP_OP_SWIGLU>;
  sp_cu_launch(kernel, grid, 256, c->stream, c->src[0].p, c->src[0].nb[0], c->src[1].p, c->src[1].nb[0], c->dst.p,
               c->dst.nb[0], K, q.xq, q.xd, q.xs, c->status);
  return cudaGetLastError();
}

/* ---- quantized matrix-vector, alone or in groups over one input ---- */

static __device__ __forceinline__ int ld_i32_b2(const uint8_t *p) {
  const uint16_t *h = (const uint16_t *)p;
  return (int)((uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16));
}

/* The activation ints lane `sub` of a block needs (a, b). */
template <int DT>
static __device__ __forceinline__ int2 load_x(const int8_t *xb, uint32_t sub) {
  if (DT == SP_DTYPE_Q8_0) return *(const int2 *)(xb + sub * 8);
  return make_int2(*(const int *)(xb + sub * 4), *(const int *)(xb + 16 + sub * 4));
}

/* This lane's part of one weight block's dot product with the activations. */
template <int DT>
static __device__ __forceinline__ float block_dot(const uint8_t *blk, int2 x, float dx, float xsb, uint32_t sub) {
  float dw = sp_cu_half(__ldg((const unsigned short *)blk));
  if (DT == SP_DTYPE_Q8_0) {
    int sumi = __dp4a(ld_i32_b2(blk + 2 + sub * 8), x.x, __dp4a(ld_i32_b2(blk + 2 + sub * 8 + 4), x.y, 0));
    return dw * dx * (float)sumi;
  }
  int v = ld_i32_b2(blk + (DT == SP_DTYPE_Q4_1 ? 4 : 2) + sub * 4);
  int lo = v & 0x0f0f0f0f, hi = (v >> 4) & 0x0f0f0f0f;
  int sumi = __dp4a(lo, x.x, __dp4a(hi, x.y, 0));
  if (DT == SP_DTYPE_Q4_0) {
    int sumx = __dp4a(0x01010101, x.x, __dp4a(0x01010101, x.y, 0));
    return dw * dx * (float)(sumi - 8 * sumx);
  }
  float r = dw * dx * (float)sumi;
  return sub == 0 ? r + sp_cu_half(__ldg((const unsigned short *)(blk + 2))) * xsb : r;
}

/* ---- the same over repacked weights (repack.h): 16-byte loads ---- */

/* Lanes per block: two 16-byte halves of Q8_0's 32 quants, one lane for the
 * 16 bytes of a Q4 block. */
template <int DT> struct rp {
  static const uint32_t LPB = DT == SP_DTYPE_Q8_0 ? 2 : 1;
  static const uint32_t QB = DT == SP_DTYPE_Q8_0 ? 32 : 16; /* quant bytes per block */
  static const uint32_t SB = DT == SP_DTYPE_Q4_1 ? 4 : 2;   /* scale bytes per block */
};

/* The activations lane half s of block xb needs: Q8_0 its 16 values (a);
 * Q4 all 32 (a: 0..15, the low nibbles' partners; b: 16..31). */
template <int DT>
static __device__ __forceinline__ int4 load_xr(const int8_t *xb, uint32_t s, int4 *hi) {
  if (DT == SP_DTYPE_Q8_0) return *(const int4 *)(xb + 16 * s);
  *hi = *(const int4 *)(xb + 16);
  return *(const int4 *)xb;
}

static __device__ __forceinline__ int dot16(uint4 q, int4 x) {
  return __dp4a((int)q.x, x.x, __dp4a((int)q.y, x.y, __dp4a((int)q.z, x.z, __dp4a((int)q.w, x.w, 0))));
}

template <int DT>
static __device__ __forceinline__ float block_dot_r(const uint8_t *q, const uint8_t *sc, int4 xa, int4 xb,
                                                    float dx, float xsb, uint32_t s) {
  uint4 v = __ldg((const uint4 *)(q + 16 * s));
  float dw = sp_cu_half(__ldg((const unsigned short *)sc));
  if (DT == SP_DTYPE_Q8_0) return dw * dx * (float)dot16(v, xa);
  uint4 lo = make_uint4(v.x & 0x0f0f0f0fu, v.y & 0x0f0f0f0fu, v.z & 0x0f0f0f0fu, v.w & 0x0f0f0f0fu);
  uint4 hi = make_uint4((v.x >> 4) & 0x0f0f0f0fu, (v.y >> 4) & 0x0f0f0f0fu, (v.z >> 4) & 0x0f0f0f0fu,
                        (v.w >> 4) & 0x0f0f0f0fu);
  int sumi = dot16(lo, xa) + dot16(hi, xb);
  if (DT == SP_DTYPE_Q4_0) {
    const uint4 ones = make_uint4(0x01010101u, 0x01010101u, 0x01010101u, 0x01010101u);
    return dw * dx * (float)(sumi - 8 * (dot16(ones, xa) + dot16(ones, xb)));
  }
  return dw * dx * (float)sumi + sp_cu_half(__ldg((const unsigned short *)(sc + 2))) * xsb;
}

/* One product of a group: weight rows (and their repacked layout, rq and
 * rs, when every member has one), output rows, and its first block. */
typedef struct mmv_member {
  const uint8_t *w, *rq, *rs;
  uint8_t *dst;
  uint32_t w_stride, d_stride, N, first_block;
} mmv_member;

typedef struct mmv_group {
  mmv_member m[SP_CU_MAX_GROUP];
  uint32_t n, K;
} mmv_group;

/* Member i by value: indexing the parameter struct with a runtime index
 * would copy it to local memory. */
static __device__ __forceinline__ mmv_member member(const mmv_group &g, uint32_t i) {
  if (i == 0) return g.m[0];
  if (i == 1) return g.m[1];
  return g.m[2];
}

/* Sums acc[0..P) over the wpr warps of each row (warp w of a row is w % wpr);
 * the row's first lane gets the totals. Every thread of the block calls it. */
template <int P>
static __device__ __forceinline__ void sum_row_parts(float *acc, uint32_t wpr) {
  __shared__ float parts[P][SP_MMV_ROWS];
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int p = 0; p < P; p++) acc[p] = sp_cu_warp_sum(acc[p]);
  if (wpr == 1) return;
  if (lane == 0)
#pragma unroll
    for (int p = 0; p < P; p++) parts[p][warp] = acc[p];
  __syncthreads();
  if (lane == 0 && warp % wpr == 0)
#pragma unroll
    for (int p = 0; p < P; p++)
      for (uint32_t j = 1; j < wpr; j++) acc[p] += parts[p][warp + j];
}

/* `wpr` warps per weight row, four lanes per 32-element block. P == 1: each
 * block computes rows of one member (members' rows laid end to end over the
 * grid); P > 1: row n of each of the P members, loading the input once. */
template <int DT, int P, bool R>
__global__ void __launch_bounds__(SP_MMV_ROWS * 32)
    mmvq_kernel(mmv_group g, const int8_t *xq, const float *xd, const float *xs, uint32_t wpr, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = warp % wpr, rows = SP_MMV_ROWS / wpr;
  uint32_t mi = 0;
  if (P == 1)
    while (mi + 1 < g.n && blockIdx.x >= member(g, mi + 1).first_block) mi++;
  const mmv_member own = member(g, mi);
  uint32_t n = (blockIdx.x - own.first_block) * rows + warp / wpr, m = blockIdx.y;
  bool live = n < own.N; /* no early return: the block meets at a barrier */
  if (!live) n = own.N - 1;
  const uint32_t BYTES = DT == SP_DTYPE_Q8_0 ? 34 : DT == SP_DTYPE_Q4_0 ? 18 : 20;
  uint32_t K = g.K, nb = K / SP_CU_QK, sub = lane % 4;
  const int8_t *xr = xq + (size_t)m * K;
  const float *xdr = xd + (size_t)m * nb, *xsr = xs + (size_t)m * nb;
  const uint8_t *wr[P], *sr[P];
  float acc[P];
#pragma unroll
  for (int p = 0; p < P; p++) {
    const mmv_member mp = P == 1 ? own : member(g, p);
    wr[p] = R ? mp.rq + (size_t)n * nb * rp<DT>::QB : mp.w + (size_t)n * mp.w_stride, acc[p] = 0;
    sr[p] = R ? mp.rs + (size_t)n * nb * rp<DT>::SB : nullptr;
  }
  if constexpr (is_kq_t<DT>::value) {
    /* units of 32, 64 or 128 elements (quant_k.cuh), four lanes each */
    const uint32_t nu = K / kq_unit<DT>::ELEMS, stride = 8 * wpr;
    for (uint32_t u0 = part * 8 + lane / 4; u0 < nu; u0 += stride * SP_MMV_KQ_BATCH(DT)) {
#pragma unroll
      for (uint32_t t = 0; t < SP_MMV_KQ_BATCH(DT); t++) {
        uint32_t u = u0 + t * stride;
        if (u < nu) {
          kq_x<DT> xu = sp_cu_kq_load_x<DT>(xr, xdr, u, sub);
#pragma unroll
          for (int p = 0; p < P; p++) acc[p] += sp_cu_kq_dot<DT>(wr[p], u, xu, sub);
        }
      }
    }
  } else if constexpr (R) {
    const uint32_t lpb = rp<DT>::LPB, stride = 32 / lpb * wpr, s = lane % lpb;
    for (uint32_t b0 = part * (32 / lpb) + lane / lpb; b0 < nb; b0 += stride * SP_MMV_BATCH) {
#pragma unroll
      for (uint32_t u = 0; u < SP_MMV_BATCH; u++) {
        uint32_t b = b0 + u * stride;
        if (b < nb) {
          int4 xb = make_int4(0, 0, 0, 0), xa = load_xr<DT>(xr + b * SP_CU_QK, s, &xb);
          float dx = xdr[b], xsb = DT == SP_DTYPE_Q4_1 ? xsr[b] : 0.0f;
#pragma unroll
          for (int p = 0; p < P; p++)
            acc[p] += block_dot_r<DT>(wr[p] + (size_t)b * rp<DT>::QB, sr[p] + (size_t)b * rp<DT>::SB, xa, xb, dx,
                                      xsb, s);
        }
      }
    }
  } else {
  /* SP_MMV_BATCH blocks per step, each under its own guard: the loads of
   * the whole step issue before the first dot product, even when a row has
   * fewer blocks than that (K = 2048 gives each thread two). */
  const uint32_t stride = 8 * wpr;
  for (uint32_t b0 = part * 8 + lane / 4; b0 < nb; b0 += stride * SP_MMV_BATCH) {
#pragma unroll
    for (uint32_t u = 0; u < SP_MMV_BATCH; u++) {
      uint32_t b = b0 + u * stride;
      if (b < nb) { /* predicated, not a branch out: the loads stay together */
        int2 x = load_x<DT>(xr + b * SP_CU_QK, sub);
        float dx = xdr[b], xsb = DT == SP_DTYPE_Q4_1 ? xsr[b] : 0.0f;
#pragma unroll
        for (int p = 0; p < P; p++) acc[p] += block_dot<DT>(wr[p] + (size_t)b * BYTES, x, dx, xsb, sub);
      }
    }
  }
  }
  sum_row_parts<P>(acc, wpr);
  if (!live || lane != 0 || part != 0) return;
#pragma unroll
  for (int p = 0; p < P; p++) {
    const mmv_member mp = P == 1 ? own : member(g, p);
    ((float *)(mp.dst + (size_t)m * mp.d_stride))[n] = acc[p];
  }
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
  sum_row_parts<1>(&acc, wpr);
  if (live && lane == 0 && part == 0) ((float *)(dst + (size_t)m * d_stride))[n] = acc;
}

/* ---- issue-15 types without an int8 kernel: dequantized on the fly ---- */

/* As mmv_kernel, each lane taking 8 consecutive weights at a time,
 * dequantized exactly (quant_k.cuh), against the int8 activations the CPU
 * uses too (so results differ from its by summation order only): per
 * 32-element block, dx * sum(w * xq). Q5_1's min enters as Q4_1's does,
 * and as the CPU's: m * (the f16-rounded dx * sum(xq)), once per block. */
template <int DT>
__global__ void __launch_bounds__(SP_MMV_ROWS * 32)
    mmv_deq_kernel(const uint8_t *w, uint32_t w_stride, uint32_t N, uint32_t K, const int8_t *xq, const float *xd,
                   const float *xs, uint8_t *dst, uint32_t d_stride, uint32_t wpr, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = warp % wpr;
  uint32_t n = blockIdx.x * (SP_MMV_ROWS / wpr) + warp / wpr, m = blockIdx.y;
  bool live = n < N; /* no early return: the block meets at a barrier */
  if (!live) n = N - 1;
  const uint8_t *wr = w + (size_t)n * w_stride;
  const int8_t *xr = xq + (size_t)m * K;
  const float *xdr = xd + (size_t)m * (K / SP_CU_QK);
  float acc = 0;
  for (uint32_t i = (part * 32 + lane) * 8; i < K; i += 256 * wpr) {
    float wv[8], s = 0;
    sp_cu_row8<DT == SP_DTYPE_Q5_1 ? SP_CU_Q5_1_NO_MIN : DT>(wr, i, wv);
    int2 x = *(const int2 *)(xr + i);
#pragma unroll
    for (int j = 0; j < 4; j++) s += wv[j] * (float)(int8_t)(x.x >> (8 * j)) + wv[j + 4] * (float)(int8_t)(x.y >> (8 * j));
    acc += xdr[i / SP_CU_QK] * s;
    if (DT == SP_DTYPE_Q5_1 && i % SP_CU_QK == 0) /* the block's first lane */
      acc += sp_cu_ldh(wr + (size_t)(i / SP_CU_QK) * 24 + 2) * xs[(size_t)m * (K / SP_CU_QK) + i / SP_CU_QK];
  }
  sum_row_parts<1>(&acc, wpr);
  if (live && lane == 0 && part == 0) ((float *)(dst + (size_t)m * d_stride))[n] = acc;
}

/* One product of a group over the quantized activations, M rows. */
template <int DT>
static void launch_deq(const sp_cu_cmd *c, const sp_cu_cmd *member, uint32_t K, uint32_t M) {
  const sp_cu_tensor &w = member->src[0], &d = member->dst;
  uint32_t wpr = mmv_wpr(), rows = SP_MMV_ROWS / wpr;
  dim3 grid((w.ne[1] + rows - 1) / rows, M);
  sp_cu_launch(mmv_deq_kernel<DT>, grid, SP_MMV_ROWS * 32, c->stream, w.p, w.nb[0], w.ne[1], K, c->xq, c->xd, c->xs,
               d.p, d.nb[0], wpr, c->status);
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
  if constexpr (is_kq_t<DT>::value) {
    sp_cu_row8<DT>(row, k0 + h * 16, o), sp_cu_row8<DT>(row, k0 + h * 16 + 8, o + 8);
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

bool sp_cu_matvec_vec(const sp_cu_cmd *c) {
  const sp_cu_tensor &w = c->src[0], &x = c->src[1];
  uint32_t K = w.ne[0], esz = w.dtype == SP_DTYPE_F32 ? 4 : 2;
  return K % 8 == 0 && (uintptr_t)w.p % 16 == 0 && w.nb[0] % 16 == 0 && (uintptr_t)x.p % 16 == 0 &&
         x.nb[0] % 16 == 0 && (K * esz) % 16 == 0;
}

/* M float matrix-vector products (mmv_kernel): row m is blockIdx.y. */
template <int DT>
static void launch_mmv_float(const sp_cu_cmd *c, uint32_t N, uint32_t K, uint32_t M) {
  const sp_cu_tensor &w = c->src[0], &x = c->src[1], &d = c->dst;
  uint32_t wpr = mmv_wpr(), rows = SP_MMV_ROWS / wpr;
  dim3 grid((N + rows - 1) / rows, M);
  sp_cu_launch(mmv_kernel<(DT < SP_DTYPE_Q8_0 ? DT : SP_DTYPE_F32)>, grid, SP_MMV_ROWS * 32, c->stream,
      w.p, w.nb[0], N, K, x.p, x.nb[0], d.p, d.nb[0], sp_cu_matvec_vec(c), wpr, c->status);
}

template <int DT>
static void launch_float(const sp_cu_cmd *c, uint32_t N, uint32_t K, uint32_t M) {
  const sp_cu_tensor &w = c->src[0], &x = c->src[1], &d = c->dst;
  /* f32 weights stay f32 (tensor-core tiles would round them to f16): M
   * matrix-vector products, up to the grid's 65535 rows */
  bool tiles = DT != SP_DTYPE_F32 || M > 65535;
  if (M > SP_CU_MMV_MAX_M && c->gemm) { /* gemm.h */
    if (sp_cu_gemm_run(c->gemm, c) == cudaSuccess) return;
    cudaGetLastError(); /* not sticky: cuBLAS could not take it, the tiles will */
  }
  if (M > SP_CU_MMV_MAX_M && K % SP_MM_K == 0 && tiles) {
    dim3 grid((N + SP_MM_T - 1) / SP_MM_T, (M + SP_MM_T - 1) / SP_MM_T);
    sp_cu_launch(mm_wmma_kernel<DT>, grid, 128, c->stream, w.p, w.nb[0], N, K, x.p, x.nb[0], M, d.p, d.nb[0], c->status);
    return;
  }
  if (is_quant(DT) || is_kq_t<DT>::value) return; /* unreachable: quantized goes through mmvq, deq or wmma */
  launch_mmv_float<DT>(c, N, K, M);
}

template <int DT, bool R>
static void launch_mmvq(const mmv_group &g, const sp_cu_cmd *c, dim3 grid, uint32_t p, uint32_t wpr) {
  dim3 block(SP_MMV_ROWS * 32);
  switch (p) {
  case 2: sp_cu_launch(mmvq_kernel<DT, 2, R>, grid, block, c->stream, g, c->xq, c->xd, c->xs, wpr, c->status); break;
  case 3: sp_cu_launch(mmvq_kernel<DT, 3, R>, grid, block, c->stream, g, c->xq, c->xd, c->xs, wpr, c->status); break;
  default: sp_cu_launch(mmvq_kernel<DT, 1, R>, grid, block, c->stream, g, c->xq, c->xd, c->xs, wpr, c->status); break;
  }
}

/* Warps per row over repacked weights: two, or one when the row has blocks
 * for one warp step only (a warp takes 16 Q8_0 or 32 Q4 blocks a step). */
template <int DT>
static uint32_t repacked_wpr(uint32_t K) {
  uint32_t per_warp = 32 / rp<DT>::LPB, nb = K / SP_CU_QK;
  return mmv_wpr(nb >= 2 * per_warp ? 2 : 1);
}

/* Warps per row for the original layouts: two; for a K-quant row with
 * units for one warp step only (8 units: 512 Q4_K or 1024 Q6_K values),
 * one, so that no warp idles. */
template <int DT>
static uint32_t kq_wpr(uint32_t K) {
  if (!is_kq_t<DT>::value) return 2;
  return K / kq_unit<DT>::ELEMS >= 16 ? 2 : 1;
}

/* The n products over quantized activations in one launch (mmvq_kernel). */
template <int DT>
static void launch_dp4a(const sp_cu_cmd *const *cs, uint32_t n, bool paired) {
  const sp_cu_cmd *c = cs[0];
  uint32_t K = c->src[0].ne[0], M = c->src[1].ne[1];
  bool repacked = !is_kq_t<DT>::value; /* repack.cu makes no layout for the issue-15 types */
  for (uint32_t i = 0; i < n; i++) repacked = repacked && cs[i]->rq;
  /* two warps per row measured best for the quantized products on the
   * 1B shape (BENCHMARKS.md); float weights keep four */
  uint32_t wpr = repacked ? repacked_wpr<DT>(K) : mmv_wpr(kq_wpr<DT>(K)), rows = SP_MMV_ROWS / wpr, blocks = 0;
  mmv_group g = {};
  g.n = n, g.K = K;
  for (uint32_t i = 0; i < n; i++) {
    const sp_cu_tensor &w = cs[i]->src[0], &d = cs[i]->dst;
    g.m[i] = {w.p, cs[i]->rq, cs[i]->rs, d.p, w.nb[0], d.nb[0], w.ne[1], paired ? 0 : blocks};
    if (!paired || i == 0) blocks += (w.ne[1] + rows - 1) / rows;
  }
  dim3 grid(blocks, M);
  if constexpr (is_kq_t<DT>::value) launch_mmvq<DT, false>(g, c, grid, paired ? n : 1, wpr);
  else if (repacked) launch_mmvq<DT, true>(g, c, grid, paired ? n : 1, wpr);
  else launch_mmvq<DT, false>(g, c, grid, paired ? n : 1, wpr);
}

/* Quantizes the shared input (unless a fused producer or an earlier matmul
 * did) and runs the n products: one launch where the type has integer dot
 * products, else one per member on the shared activations. */
template <int DT>
static void launch_quant(const sp_cu_cmd *const *cs, uint32_t n, bool paired) {
  const sp_cu_cmd *c = cs[0];
  uint32_t K = c->src[0].ne[0], M = c->src[1].ne[1];
  if (!c->xq_ready) launch_quantize(c, c->src[1], K, M);
  if constexpr (has_dp4a_t<DT>::value) launch_dp4a<DT>(cs, n, paired);
  else
    for (uint32_t i = 0; i < n; i++) launch_deq<DT>(c, cs[i], K, M);
}

cudaError_t sp_cu_matmul_group(const sp_cu_cmd *const *cs, uint32_t n, bool paired) {
  switch (cs[0]->src[0].dtype) {
  case SP_DTYPE_Q8_0: launch_quant<SP_DTYPE_Q8_0>(cs, n, paired); break;
  case SP_DTYPE_Q4_0: launch_quant<SP_DTYPE_Q4_0>(cs, n, paired); break;
  case SP_DTYPE_Q4_1: launch_quant<SP_DTYPE_Q4_1>(cs, n, paired); break;
  case SP_DTYPE_Q5_0: launch_quant<SP_DTYPE_Q5_0>(cs, n, paired); break;
  case SP_DTYPE_Q5_1: launch_quant<SP_DTYPE_Q5_1>(cs, n, paired); break;
  case SP_DTYPE_Q2_K: launch_quant<SP_DTYPE_Q2_K>(cs, n, paired); break;
  case SP_DTYPE_Q3_K: launch_quant<SP_DTYPE_Q3_K>(cs, n, paired); break;
  case SP_DTYPE_Q4_K: launch_quant<SP_DTYPE_Q4_K>(cs, n, paired); break;
  case SP_DTYPE_Q5_K: launch_quant<SP_DTYPE_Q5_K>(cs, n, paired); break;
  case SP_DTYPE_Q6_K: launch_quant<SP_DTYPE_Q6_K>(cs, n, paired); break;
  case SP_DTYPE_IQ4_NL: launch_quant<SP_DTYPE_IQ4_NL>(cs, n, paired); break;
  case SP_DTYPE_IQ4_XS: launch_quant<SP_DTYPE_IQ4_XS>(cs, n, paired); break;
  default: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}

/* An issue-15 type: decode on int8 activations (dp4a for Q5_0, Q4_K,
 * Q6_K; the rest dequantized on the fly); prompts through cuBLAS on f16
 * expansions (gemm.cu) or the tiles. */
template <int DT>
static cudaError_t launch_kq(const sp_cu_cmd *c, uint32_t N, uint32_t K, uint32_t M) {
  if (M <= SP_CU_MMV_MAX_M) return sp_cu_matmul_group(&c, 1, false);
  launch_float<DT>(c, N, K, M);
  return cudaGetLastError();
}

cudaError_t sp_cu_matmul(const sp_cu_cmd *c) {
  uint32_t K = c->src[0].ne[0], N = c->src[0].ne[1], M = c->src[1].ne[1];
  switch (c->src[0].dtype) {
  case SP_DTYPE_F32: launch_float<SP_DTYPE_F32>(c, N, K, M); break;
  case SP_DTYPE_F16: launch_float<SP_DTYPE_F16>(c, N, K, M); break;
  case SP_DTYPE_BF16: launch_float<SP_DTYPE_BF16>(c, N, K, M); break;
  case SP_DTYPE_Q8_0:
  case SP_DTYPE_Q4_0:
  case SP_DTYPE_Q4_1:
    if (M <= SP_CU_MMV_MAX_M) return sp_cu_matmul_group(&c, 1, false);
    c->src[0].dtype == SP_DTYPE_Q8_0   ? launch_float<SP_DTYPE_Q8_0>(c, N, K, M)
    : c->src[0].dtype == SP_DTYPE_Q4_0 ? launch_float<SP_DTYPE_Q4_0>(c, N, K, M)
                                       : launch_float<SP_DTYPE_Q4_1>(c, N, K, M);
    break;
  case SP_DTYPE_Q5_0: return launch_kq<SP_DTYPE_Q5_0>(c, N, K, M);
  case SP_DTYPE_Q5_1: return launch_kq<SP_DTYPE_Q5_1>(c, N, K, M);
  case SP_DTYPE_Q2_K: return launch_kq<SP_DTYPE_Q2_K>(c, N, K, M);
  case SP_DTYPE_Q3_K: return launch_kq<SP_DTYPE_Q3_K>(c, N, K, M);
  case SP_DTYPE_Q4_K: return launch_kq<SP_DTYPE_Q4_K>(c, N, K, M);
  case SP_DTYPE_Q5_K: return launch_kq<SP_DTYPE_Q5_K>(c, N, K, M);
  case SP_DTYPE_Q6_K: return launch_kq<SP_DTYPE_Q6_K>(c, N, K, M);
  case SP_DTYPE_IQ4_NL: return launch_kq<SP_DTYPE_IQ4_NL>(c, N, K, M);
  case SP_DTYPE_IQ4_XS: return launch_kq<SP_DTYPE_IQ4_XS>(c, N, K, M);
  default: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}

/* ---- several actors' decode products against one weight (cuda_batch.cu) ---- */

cudaError_t sp_cu_matmul_quantize_input(const sp_cu_cmd *c) {
  uint32_t K = c->src[0].ne[0], M = c->src[1].ne[1];
  if (sp_cu_matmul_quantizes(c->src[0].dtype, M) && !c->xq_ready) launch_quantize(c, c->src[1], K, M);
  return cudaGetLastError();
}

/* Every kernel below computes activation row m in the grid's row
 * blockIdx.y with the same arithmetic whatever the number of rows: the
 * rows of a batch are the rows each actor's list computes alone. */
template <int DT>
static void launch_rows(const sp_cu_cmd *const *cs, uint32_t n, bool paired) {
  const sp_cu_cmd *c = cs[0];
  uint32_t K = c->src[0].ne[0], M = c->src[1].ne[1];
  if constexpr (DT == SP_DTYPE_Q8_0 || DT == SP_DTYPE_Q4_0 || DT == SP_DTYPE_Q4_1 || is_kq_t<DT>::value) {
    if constexpr (has_dp4a_t<DT>::value) launch_dp4a<DT>(cs, n, paired);
    else
      for (uint32_t i = 0; i < n; i++) launch_deq<DT>(c, cs[i], K, M);
  } else {
    for (uint32_t i = 0; i < n; i++) launch_mmv_float<DT>(cs[i], cs[i]->src[0].ne[1], K, M);
  }
}

cudaError_t sp_cu_matvec_rows(const sp_cu_cmd *const *cs, uint32_t n, bool paired) {
  switch (cs[0]->src[0].dtype) {
  case SP_DTYPE_F32: launch_rows<SP_DTYPE_F32>(cs, n, paired); break;
  case SP_DTYPE_F16: launch_rows<SP_DTYPE_F16>(cs, n, paired); break;
  case SP_DTYPE_BF16: launch_rows<SP_DTYPE_BF16>(cs, n, paired); break;
  case SP_DTYPE_Q8_0: launch_rows<SP_DTYPE_Q8_0>(cs, n, paired); break;
  case SP_DTYPE_Q4_0: launch_rows<SP_DTYPE_Q4_0>(cs, n, paired); break;
  case SP_DTYPE_Q4_1: launch_rows<SP_DTYPE_Q4_1>(cs, n, paired); break;
  case SP_DTYPE_Q5_0: launch_rows<SP_DTYPE_Q5_0>(cs, n, paired); break;
  case SP_DTYPE_Q5_1: launch_rows<SP_DTYPE_Q5_1>(cs, n, paired); break;
  case SP_DTYPE_Q2_K: launch_rows<SP_DTYPE_Q2_K>(cs, n, paired); break;
  case SP_DTYPE_Q3_K: launch_rows<SP_DTYPE_Q3_K>(cs, n, paired); break;
  case SP_DTYPE_Q4_K: launch_rows<SP_DTYPE_Q4_K>(cs, n, paired); break;
  case SP_DTYPE_Q5_K: launch_rows<SP_DTYPE_Q5_K>(cs, n, paired); break;
  case SP_DTYPE_Q6_K: launch_rows<SP_DTYPE_Q6_K>(cs, n, paired); break;
  case SP_DTYPE_IQ4_NL: launch_rows<SP_DTYPE_IQ4_NL>(cs, n, paired); break;
  case SP_DTYPE_IQ4_XS: launch_rows<SP_DTYPE_IQ4_XS>(cs, n, paired); break;
  default: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}
