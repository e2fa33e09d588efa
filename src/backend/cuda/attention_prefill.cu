/*
 * attention_prefill.cu: attention for a prompt's many query rows on tensor
 * cores (flash-attention style), f16 cache, head size 64 or 128.
 *
 * A block of four warps takes 64 query tokens of one head, each warp 16 of
 * them. Per tile of 64 cache rows (loaded once into shared memory for the
 * four warps): S = Q K^T on tensor cores (WMMA, f16 operands, f32 sums),
 * the causal mask by each query's own position, an online softmax per row,
 * then P V on tensor cores, added to the running output after rescaling.
 * As the other kernels, q is rounded to f16; the probabilities are too
 * (the tensor cores' operands), which the CPU keeps in f32: the parity
 * bound of the f16-cache attention covers the difference. Positions were
 * checked against the cache before this kernel ran; they are clamped again.
 * A sliding window of W keys (param[1]) masks the rows before each query's
 * window as the causal mask masks those after it, and the block's walk
 * over the cache starts at the earliest row any of its queries sees.
 *
 * Shared memory is laid out for the lanes, not only for the tensor cores:
 * the lane pair that owns a row takes alternate groups of 4 columns (not
 * its two halves), read and written 16 (P: 8) bytes at a time, and rows
 * are padded by 8 floats (halves), so no two lanes of a phase share a
 * bank. Unpadded, with halves and 4-byte accesses, all 32 lanes of a warp
 * hit one bank on every softmax and output access, and the kernel took
 * 217 us per layer for 512 tokens of the 1B shape (34% of the prompt);
 * with 4-byte accesses and no conflicts, shared-memory instructions still
 * throttled it (86 us). The query fragments are loaded once, and the next
 * cache tile is copied (cp.async) while the block computes on this one
 * (70 -> 65 us).
 */
#include <cuda_pipeline.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

using namespace nvcuda;

#define SP_FA_Q 16    /* query rows per warp */
#define SP_FA_WARPS 4 /* warps per block */
#define SP_FA_ROWS (SP_FA_Q * SP_FA_WARPS) /* query rows per block */
#define SP_FA_C 64    /* cache rows per tile */
#define SP_FA_SLD (SP_FA_C + 8) /* row stride of S (floats) */
#define SP_FA_PLD (SP_FA_C + 8) /* row stride of P (halves) */

/* Row stride of O and of P V (floats) for head size D. */
static __host__ __device__ constexpr uint32_t fa_old(uint32_t D) { return D + 8; }

/* Bytes of one warp's scratch: S then P V (f32), P (f16), O (f32). */
static __host__ __device__ size_t fa_warp_bytes(uint32_t D) {
  size_t s_or_pv = (size_t)SP_FA_Q * (SP_FA_SLD > fa_old(D) ? SP_FA_SLD : fa_old(D)) * 4;
  return s_or_pv + (size_t)SP_FA_Q * SP_FA_PLD * 2 + (size_t)SP_FA_Q * fa_old(D) * 4;
}

/* Shared memory of one block for head size D, in bytes. */
static __host__ __device__ size_t fa_smem(uint32_t D) {
  size_t tiles = ((size_t)SP_FA_ROWS + 4 * SP_FA_C) * D * 2; /* Q rows, two K and V tiles, f16 */
  return tiles + SP_FA_WARPS * fa_warp_bytes(D);
}

template <int D>
__global__ void __launch_bounds__(SP_FA_WARPS * 32)
    attention_prefill_kernel(sp_cu_tensor q, sp_cu_tensor k, sp_cu_tensor v, const int32_t *pos, sp_cu_tensor d,
                             float scale, uint32_t window, sp_cu_status *st) {
  SP_CU_GUARD(st);
  extern __shared__ __align__(32) uint8_t smem[];
  __half *qs = (__half *)smem, *kv = qs + SP_FA_ROWS * D; /* tile b: K at kv + 2 b C D, V after it */
  uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, tid = threadIdx.x;
  constexpr uint32_t OLD = fa_old(D), SW = SP_FA_SLD > OLD ? SP_FA_SLD : OLD;
  uint8_t *mine = (uint8_t *)(kv + 4 * SP_FA_C * D) + (size_t)warp * fa_warp_bytes(D);
  float *sw = (float *)mine;                          /* S [16][SLD], then P V [16][OLD] */
  __half *pw = (__half *)(mine + SP_FA_Q * SW * 4);   /* P [16][PLD] */
  float *ow = (float *)(mine + SP_FA_Q * SW * 4 + SP_FA_Q * SP_FA_PLD * 2); /* O [16][OLD] */
  uint32_t h = blockIdx.x, Hq = q.ne[1], T = q.ne[2], hk = h / (Hq / k.ne[1]);
  int32_t C = (int32_t)k.ne[2];
  uint32_t t0 = blockIdx.y * SP_FA_ROWS;
  /* this block's queries (f16-rounded), their clamped positions and
   * first rows (the window), the first and last rows any needs */
  __shared__ int32_t qp[SP_FA_ROWS], qlo[SP_FA_ROWS];
  __shared__ int32_t first, last;
  if (tid == 0) first = C, last = -1;
  __syncthreads();
  for (uint32_t r = tid; r < SP_FA_ROWS; r += blockDim.x) {
    int32_t p = -1, lo = 0;
    if (t0 + r < T) {
      p = pos[t0 + r];
      p = p < 0 ? 0 : (p >= C ? C - 1 : p);
      lo = window && (uint32_t)p >= window ? p - (int32_t)window + 1 : 0;
      atomicMin(&first, lo);
    }
    qp[r] = p, qlo[r] = lo;
    atomicMax(&last, p);
  }
  for (uint32_t i = tid; i < SP_FA_ROWS * D; i += blockDim.x) {
    uint32_t r = i / D, e = i % D;
    float x = t0 + r < T ? ((const float *)(q.p + (size_t)h * q.nb[0] + (size_t)(t0 + r) * q.nb[1]))[e] : 0.0f;
    qs[i] = __float2half_rn(x);
  }
  for (uint32_t i = lane; i < SP_FA_Q * OLD; i += 32) ow[i] = 0.0f;
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qa[D / 16]; /* this warp's queries */
  for (int kk = 0; kk < D / 16; kk++) wmma::load_matrix_sync(qa[kk], qs + warp * SP_FA_Q * D + kk * 16, D);
  /* row stats: lane pair (2r, 2r + 1) owns row r: columns 8j + 4 half .. + 3 */
  uint32_t row = lane / 2, half = lane % 2;
  int32_t prow = qp[warp * SP_FA_Q + row], plo = qlo[warp * SP_FA_Q + row];
  float m = -INFINITY, l = 0.0f;
  const uint8_t *kb = k.p + (size_t)hk * k.nb[0], *vb = v.p + (size_t)hk * v.nb[0];
  /* Cache rows [c0, c0 + C) into tile buffer b, copied while the block
   * computes on the other buffer (cp.async); rows past the cache are zeros. */
  auto fetch = [&](int32_t c0, int b) {
    __half *kt = kv + 2 * b * SP_FA_C * D, *vt = kt + SP_FA_C * D;
    for (uint32_t i = tid; i < SP_FA_C * D / 8; i += blockDim.x) { /* 16 bytes a thread */
      uint32_t r = i / (D / 8), e = (i % (D / 8)) * 8;
      int32_t c = c0 + (int32_t)r;
      if (c < C) {
        __pipeline_memcpy_async(kt + r * D + e, kb + (size_t)c * k.nb[1] + 2 * e, 16);
        __pipeline_memcpy_async(vt + r * D + e, vb + (size_t)c * v.nb[1] + 2 * e, 16);
      } else {
        *(uint4 *)(kt + r * D + e) = make_uint4(0, 0, 0, 0);
        *(uint4 *)(vt + r * D + e) = make_uint4(0, 0, 0, 0);
      }
    }
    __pipeline_commit();
  };
  fetch(first, 0);
  for (int32_t c0 = first, b = 0; c0 <= last; c0 += SP_FA_C, b ^= 1) {
    __syncthreads(); /* every warp is done with the other buffer's tile */
    bool next = c0 + SP_FA_C <= last;
    if (next) fetch(c0 + SP_FA_C, b ^ 1);
    __pipeline_wait_prior(next ? 1 : 0); /* this tile's copies have landed */
    __syncthreads();
    const __half *ks = kv + 2 * b * SP_FA_C * D, *vs = ks + SP_FA_C * D;
    /* S = Q K^T: 16 x 64 */
    for (int n = 0; n < SP_FA_C / 16; n++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
      wmma::fill_fragment(s, 0.0f);
      for (int kk = 0; kk < D / 16; kk++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
        wmma::load_matrix_sync(b, ks + n * 16 * D + kk * 16, D);
        wmma::mma_sync(s, qa[kk], b, s);
      }
      wmma::store_matrix_sync(sw + n * 16, s, SP_FA_SLD, wmma::mem_row_major);
    }
    __syncwarp();
    /* the row's new maximum, its probabilities (f16), its sum */
    float4 *sr = (float4 *)(sw + row * SP_FA_SLD + 4 * half); /* sr[2 j]: 4 columns */
    float mx = -INFINITY;
    for (int j = 0; j < SP_FA_C / 8; j++) {
      int32_t c = c0 + 8 * j + 4 * (int32_t)half;
      float4 x = sr[2 * j];
      x.x = c >= plo && c <= prow ? x.x * scale : -INFINITY;
      x.y = c + 1 >= plo && c + 1 <= prow ? x.y * scale : -INFINITY;
      x.z = c + 2 >= plo && c + 2 <= prow ? x.z * scale : -INFINITY;
      x.w = c + 3 >= plo && c + 3 <= prow ? x.w * scale : -INFINITY;
      sr[2 * j] = x;
      mx = fmaxf(mx, fmaxf(fmaxf(x.x, x.y), fmaxf(x.z, x.w)));
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    float mn = fmaxf(m, mx), corr = mn == -INFINITY ? 1.0f : __expf(m - mn), sum = 0.0f;
    uint2 *pr = (uint2 *)(pw + row * SP_FA_PLD + 4 * half); /* pr[2 j]: 4 halves */
    for (int j = 0; j < SP_FA_C / 8; j++) {
      float4 x = sr[2 * j];
      __half2 e01 = __floats2half2_rn(x.x == -INFINITY ? 0.0f : __expf(x.x - mn), x.y == -INFINITY ? 0.0f : __expf(x.y - mn));
      __half2 e23 = __floats2half2_rn(x.z == -INFINITY ? 0.0f : __expf(x.z - mn), x.w == -INFINITY ? 0.0f : __expf(x.w - mn));
      float2 f01 = __half22float2(e01), f23 = __half22float2(e23);
      sum += (f01.x + f01.y) + (f23.x + f23.y); /* the weights the tensor cores will use */
      uint2 packed;
      memcpy(&packed.x, &e01, 4), memcpy(&packed.y, &e23, 4);
      pr[2 * j] = packed;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * corr + sum, m = mn;
    __syncwarp();
    /* P V: 16 x D, into sw (S is no longer needed) */
    for (int n = 0; n < D / 16; n++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::fill_fragment(o, 0.0f);
      for (int kk = 0; kk < SP_FA_C / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
        wmma::load_matrix_sync(a, pw + kk * 16, SP_FA_PLD);
        wmma::load_matrix_sync(b, vs + kk * 16 * D + n * 16, D);
        wmma::mma_sync(o, a, b, o);
      }
      wmma::store_matrix_sync(sw + n * 16, o, OLD, wmma::mem_row_major);
    }
    __syncwarp();
    float4 *orow = (float4 *)(ow + row * OLD + 4 * half), *trow = (float4 *)(sw + row * OLD + 4 * half);
    for (int j = 0; j < D / 8; j++) {
      float4 o = orow[2 * j], t = trow[2 * j];
      orow[2 * j] = make_float4(o.x * corr + t.x, o.y * corr + t.y, o.z * corr + t.z, o.w * corr + t.w);
    }
    __syncwarp();
  }
  /* out = O / l, for the rows that are queries */
  uint32_t t = t0 + warp * SP_FA_Q + row;
  if (t >= T || prow < 0) return;
  float *yr = (float *)(d.p + (size_t)h * d.nb[0] + (size_t)t * d.nb[1]) + 4 * half;
  const float *orow = ow + row * OLD + 4 * half;
  float inv = l > 0 ? 1.0f / l : 0.0f;
  for (int j = 0; j < D / 8; j++)
    for (int k = 0; k < 4; k++) yr[8 * j + k] = orow[8 * j + k] * inv;
}

/* The launch with `bytes` of dynamic shared memory (allowed once per kernel). */
template <int D>
static void launch(const sp_cu_cmd *c, float scale, uint32_t window) {
  static bool allowed;
  size_t bytes = fa_smem(D);
  if (!allowed) allowed = cudaFuncSetAttribute(attention_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)bytes) == cudaSuccess;
  dim3 grid(c->src[0].ne[1], (c->src[0].ne[2] + SP_FA_ROWS - 1) / SP_FA_ROWS);
  sp_cu_launch_smem(attention_prefill_kernel<D>, grid, SP_FA_WARPS * 32, bytes, c->stream, c->src[0], c->src[1],
                    c->src[2], (const int32_t *)c->src[3].p, c->dst, scale, window, c->status);
}

bool sp_cu_attention_prefill(const sp_cu_cmd *c) {
  const sp_cu_tensor &q = c->src[0], &k = c->src[1], &v = c->src[2];
  uint32_t D = k.ne[0];
  if (c->no_flash) return false; /* the knob SP_CUDA_NO_FLASH */
  if (k.dtype != SP_DTYPE_F16 || v.dtype != SP_DTYPE_F16 || (D != 64 && D != 128) || q.ne[2] < SP_FA_Q || q.ne[3] != 1)
    return false;
  /* Since its shared memory stopped conflicting, this kernel beats the
   * one-block-per-(head, token) one even where its grid leaves SMs idle:
   * SmolLM2's 9 heads (72 blocks at 512 tokens) prefill 3% faster at 512
   * tokens, 32% at 2,048. Below SP_FA_Q query rows it does not apply. */
  if (((uintptr_t)k.p | k.nb[0] | k.nb[1] | (uintptr_t)v.p | v.nb[0] | v.nb[1]) % 16) return false;
  float scale = sp_cu_f32(c->cmd->param[0]);
  if (D == 64) launch<64>(c, scale, c->cmd->param[1]);
  else launch<128>(c, scale, c->cmd->param[1]);
  return true;
}
