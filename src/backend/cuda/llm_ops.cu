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
  sp_cu_launch(rmsnorm_kernel, (unsigned)rows, 256, c->stream, c->dst, c->src[0], (const float *)c->src[1].p,
                                                        sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

#define SP_NORM_VALS 8 /* values per thread in the fused norm: rows up to 8192 */

/* rmsnorm of row blockIdx.x of dense f32 rows, the row held in registers.
 * ADD: the row is first a + b, stored to x (the add command folded in).
 * QUANT: the output is also quantized for the next matmul (rows a multiple
 * of 32 long, so each warp pass covers exactly one block). */
template <bool ADD, bool QUANT>
__global__ void __launch_bounds__(1024)
    rmsnorm_fused_kernel(sp_cu_tensor d, sp_cu_tensor x, const float *w, float eps, sp_cu_tensor a, sp_cu_tensor b,
                         sp_cu_qdst q, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float red[32];
  uint32_t r = blockIdx.x, n = d.ne[0];
  float *xr = (float *)(x.p + (size_t)r * x.nb[0]), *yr = (float *)(d.p + (size_t)r * d.nb[0]);
  const float *ar = ADD ? (const float *)(a.p + (size_t)r * a.nb[0]) : nullptr;
  const float *br = ADD ? (const float *)(b.p + (size_t)r * b.nb[0]) : nullptr;
  float v[SP_NORM_VALS], wv[SP_NORM_VALS], sum = 0;
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) { /* the weights load while the sum reduces */
    uint32_t i = threadIdx.x + k * blockDim.x;
    v[k] = wv[k] = 0;
    if (i >= n) continue;
    wv[k] = w[i];
    v[k] = ADD ? ar[i] + br[i] : xr[i];
    if (ADD) xr[i] = v[k];
    sum += v[k] * v[k];
  }
  sum = block_sum(sum, red);
  float scale = 1.0f / sqrtf(sum / (float)n + eps);
#pragma unroll
  for (int k = 0; k < SP_NORM_VALS; k++) {
    uint32_t i = threadIdx.x + k * blockDim.x;
    if (i >= n) break; /* warp-uniform when QUANT: n % 32 == 0 */
    float y = v[k] * scale * wv[k];
    yr[i] = y;
    if (QUANT) {
      uint32_t blk = i / SP_CU_QK, nb = n / SP_CU_QK;
      sp_cu_quantize_block(y, q.xq + (size_t)r * n + blk * SP_CU_QK, q.xd + (size_t)r * nb + blk,
                           q.xs + (size_t)r * nb + blk);
    }
  }
}

cudaError_t sp_cu_rmsnorm_fused(const sp_cu_cmd *add, const sp_cu_cmd *norm, sp_cu_qdst q) {
  uint32_t n = norm->dst.ne[0], rows = norm->dst.ne[1];
  uint32_t threads = n >= 1024 ? 1024 : (n + 31) / 32 * 32;
  const float *w = (const float *)norm->src[1].p;
  float eps = sp_cu_f32(norm->cmd->param[0]);
  sp_cu_tensor a = add ? add->src[0] : sp_cu_tensor{}, b = add ? add->src[1] : sp_cu_tensor{};
  const sp_cu_tensor &d = norm->dst, &x = norm->src[0];
  if (add && q.xq)
    sp_cu_launch(rmsnorm_fused_kernel<true, true>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else if (add)
    sp_cu_launch(rmsnorm_fused_kernel<true, false>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else if (q.xq)
    sp_cu_launch(rmsnorm_fused_kernel<false, true>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
  else
    sp_cu_launch(rmsnorm_fused_kernel<false, false>, rows, threads, norm->stream, d, x, w, eps, a, b, q, norm->status);
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
  sp_cu_launch(softmax_kernel, (unsigned)sp_cu_rows(c->dst), 256, c->stream, c->dst, c->src[0],
                                                                      sp_cu_f32(c->cmd->param[0]), c->status);
  return cudaGetLastError();
}

/* ---- rope ---- */

#define SP_ROPE_MAX_HALF 256 /* validated n_rot <= 512 */

/* The f16 KV cache rows that the set_rows after a rope pair write
 * (sp_cu_rope_cache): the second tensor's rotated rows go to kc, v's rows
 * to vc, both at row pos[t]. kc NULL: none. */
typedef struct rope_cache {
  uint8_t *kc, *vc;
  const uint8_t *v;
  uint32_t kc_row, vc_row, v_row; /* byte strides */
  uint32_t rows;                  /* rows of the smaller cache: pos[t] is checked against it */
} rope_cache;

static __device__ __forceinline__ void store_f16(uint8_t *row, uint32_t e, float v) {
  ((__half *)row)[e] = __float2half_rn(v);
}

/* Blocks over the (head, pair) slots of token blockIdx.y, of one or two
 * tensors: each block first computes the angles of position pos[t] into
 * shared memory (serially per pair index, as the CPU does), then each
 * thread rotates one pair (or copies two values past n_rot). With a cache,
 * the second tensor's values also go to its cache row, and more slots copy
 * v's row to its own. */
__global__ void rope_kernel(sp_cu_tensor d0, sp_cu_tensor x0, sp_cu_tensor d1, sp_cu_tensor x1, const int32_t *pos,
                            const float *factors, uint32_t n_rot, uint32_t mode, float theta_scale, float freq_scale,
                            rope_cache cache, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ float cs[SP_ROPE_MAX_HALF], sn[SP_ROPE_MAX_HALF];
  uint32_t t = blockIdx.y, half = n_rot / 2, H0 = d0.ne[1], H = H0 + (d1.p ? d1.ne[1] : 0);
  float p = (float)pos[t];
  for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
    float theta = p;
    for (uint32_t j = 0; j < i; j++) theta = __fmul_rn(theta, theta_scale);
    float angle = __fdiv_rn(__fmul_rn(freq_scale, theta), factors ? factors[i] : 1.0f);
    cs[i] = cosf(angle), sn[i] = sinf(angle);
  }
  __syncthreads();
  uint32_t ne0 = d0.ne[0], pairs = (ne0 + 1) / 2, H1 = H - H0;
  int32_t id = pos[t];
  bool caching = cache.kc && id >= 0 && (uint32_t)id < cache.rows; /* checked before; never trust twice */
  uint8_t *krow = caching ? cache.kc + (size_t)id * cache.kc_row : nullptr;
  uint32_t slots = H * pairs + (cache.kc ? H1 * pairs : 0);
  for (uint32_t idx = blockIdx.x * blockDim.x + threadIdx.x; idx < slots; idx += gridDim.x * blockDim.x) {
    if (idx >= H * pairs) { /* v's row to its cache row */
      uint32_t vv = idx - H * pairs, e = (vv / pairs) * ne0 + 2 * (vv % pairs);
      if (!caching) continue;
      const float *vr = (const float *)(cache.v + (size_t)t * cache.v_row);
      uint8_t *vrow = cache.vc + (size_t)id * cache.vc_row;
      store_f16(vrow, e, vr[e]);
      if (2 * (vv % pairs) + 1 < ne0) store_f16(vrow, e + 1, vr[e + 1]);
      continue;
    }
    uint32_t h = idx / pairs, i = idx % pairs;
    bool first = h < H0; /* fields picked one by one: no local copy of a parameter */
    uint32_t hh = first ? h : h - H0;
    const uint8_t *xp = first ? x0.p : x1.p;
    uint8_t *dp = first ? d0.p : d1.p;
    size_t xo = (size_t)hh * (first ? x0.nb[0] : x1.nb[0]) + (size_t)t * (first ? x0.nb[1] : x1.nb[1]);
    size_t yo = (size_t)hh * (first ? d0.nb[0] : d1.nb[0]) + (size_t)t * (first ? d0.nb[1] : d1.nb[1]);
    const float *xr = (const float *)(xp + xo);
    float *yr = (float *)(dp + yo);
    bool to_cache = caching && !first;
    if (i >= half) { /* past the rotated dimensions: a copy, two values per thread */
      uint32_t j = n_rot + 2 * (i - half);
      float a = xr[j], b = j + 1 < ne0 ? xr[j + 1] : 0.0f;
      if (yr != xr) {
        yr[j] = a;
        if (j + 1 < ne0) yr[j + 1] = b;
      }
      if (to_cache) {
        store_f16(krow, hh * ne0 + j, a);
        if (j + 1 < ne0) store_f16(krow, hh * ne0 + j + 1, b);
      }
      continue;
    }
    uint32_t i0 = mode == 2 ? i : 2 * i, i1 = mode == 2 ? i + half : 2 * i + 1;
    float v0 = xr[i0], v1 = xr[i1];
    float y0 = __fsub_rn(__fmul_rn(v0, cs[i]), __fmul_rn(v1, sn[i]));
    float y1 = __fadd_rn(__fmul_rn(v0, sn[i]), __fmul_rn(v1, cs[i]));
    yr[i0] = y0, yr[i1] = y1;
    if (to_cache) store_f16(krow, hh * ne0 + i0, y0), store_f16(krow, hh * ne0 + i1, y1);
  }
}

/* a alone, a and b, or a and b followed by the set_rows ks (b's rows to
 * its cache) and vs (v's rows to its cache). */
static cudaError_t launch_rope(const sp_cu_cmd *a, const sp_cu_cmd *b, const sp_cu_cmd *ks, const sp_cu_cmd *vs) {
  const sp_cmd *cmd = a->cmd;
  uint32_t n_rot = cmd->param[0];
  float theta_scale = powf(sp_cu_f32(cmd->param[1]), -2.0f / (float)n_rot); /* host powf, as the CPU */
  sp_cu_tensor none = {};
  uint32_t pairs = (a->dst.ne[0] + 1) / 2, hb = b ? b->dst.ne[1] : 0;
  uint32_t slots = (a->dst.ne[1] + hb) * pairs + (ks ? hb * pairs : 0);
  rope_cache cache = {};
  if (ks) {
    uint32_t rows = ks->dst.ne[1] < vs->dst.ne[1] ? ks->dst.ne[1] : vs->dst.ne[1];
    cache = {ks->dst.p, vs->dst.p, vs->src[0].p, ks->dst.nb[0], vs->dst.nb[0], vs->src[0].nb[0], rows};
  }
  dim3 grid((slots + 127) / 128, a->dst.ne[2]);
  sp_cu_launch(rope_kernel, grid, 128, a->stream, a->dst, a->src[0], b ? b->dst : none, b ? b->src[0] : none,
               (const int32_t *)a->src[1].p, a->src[2].p ? (const float *)a->src[2].p : nullptr, n_rot,
               cmd->param[2], theta_scale, sp_cu_f32(cmd->param[3]), cache, a->status);
  return cudaGetLastError();
}

cudaError_t sp_cu_rope(const sp_cu_cmd *c) { return launch_rope(c, nullptr, nullptr, nullptr); }
cudaError_t sp_cu_rope_pair(const sp_cu_cmd *a, const sp_cu_cmd *b) { return launch_rope(a, b, nullptr, nullptr); }
cudaError_t sp_cu_rope_cache(const sp_cu_cmd *a, const sp_cu_cmd *b, const sp_cu_cmd *ks, const sp_cu_cmd *vs) {
  return launch_rope(a, b, ks, vs);
}

/* ---- argmax ---- */

/* The better of two (value, index) candidates: larger value, then smaller
 * index; index -1 is no candidate (NaN is never one). */
static __device__ __forceinline__ void better_of(float &v, int32_t &i, float ov, int32_t oi) {
  if (oi < 0) return;
  if (i < 0 || ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

static __device__ __forceinline__ void consider(float &v, int32_t &i, float x, int32_t at) {
  if (!isnan(x) && (i < 0 || x > v)) v = x, i = at; /* increasing at: the first of equals stays */
}

#define SP_ARGMAX_PARTS 64 /* blocks per row for long rows */

/* The block's best of one candidate per thread: thread 0 gets it. */
static __device__ void block_best_of(float v, int32_t i, float &out_v, int32_t &out_i) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  for (int o = 16; o > 0; o >>= 1) better_of(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (threadIdx.x == 0)
    for (uint32_t w = 1; w < blockDim.x / 32; w++) better_of(v, i, sv[w], si[w]);
  out_v = v, out_i = i;
}

/* The best of one thread's elements [from, to), walked in increasing order
 * (four at a time with 16-byte loads when vec), then of the block: thread 0
 * gets it. */
static __device__ void block_best(const float *xr, uint32_t from, uint32_t to, bool vec, float &v, int32_t &best) {
  v = 0, best = -1;
  if (vec) { /* from and to are multiples of 4 here */
#pragma unroll 4
    for (uint32_t i = from + threadIdx.x * 4; i < to; i += blockDim.x * 4) {
      float4 q = *(const float4 *)(xr + i);
      consider(v, best, q.x, (int32_t)i), consider(v, best, q.y, (int32_t)i + 1);
      consider(v, best, q.z, (int32_t)i + 2), consider(v, best, q.w, (int32_t)i + 3);
    }
  } else {
    for (uint32_t i = from + threadIdx.x; i < to; i += blockDim.x) consider(v, best, xr[i], (int32_t)i);
  }
  block_best_of(v, best, v, best);
}

/* Block (part, row): the best of its part of the row. With one part it
 * writes the row's answer; with several each part leaves its best in
 * `partial` and the last to arrive (counted in `arrived`, which it resets
 * for the next list) picks among them. */
__global__ void __launch_bounds__(256)
    argmax_kernel(sp_cu_tensor d, sp_cu_tensor x, bool vec, float2 *partial, uint32_t *arrived, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t part = blockIdx.x, parts = gridDim.x, r = blockIdx.y, n = x.ne[0];
  uint32_t chunk = (n + parts - 1) / parts;
  chunk = (chunk + 3) / 4 * 4;
  uint32_t from = part * chunk < n ? part * chunk : n, to = from + chunk < n ? from + chunk : n;
  const float *xr = (const float *)(x.p + (size_t)r * x.nb[0]);
  float v;
  int32_t best;
  block_best(xr, from, to, vec && to % 4 == 0, v, best);
  if (parts > 1) {
    __shared__ bool last;
    if (threadIdx.x == 0) {
      partial[(size_t)r * parts + part] = make_float2(v, __int_as_float(best));
      __threadfence();
      last = atomicAdd(&arrived[r], 1) == parts - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    /* the whole block reads the parts' results at once (other blocks wrote
     * them: from L2, not L1), in part order, then reduces them */
    float2 o = threadIdx.x < parts ? __ldcg(&partial[(size_t)r * parts + threadIdx.x]) : make_float2(0, __int_as_float(-1));
    float v2 = o.x;
    int32_t i2 = __float_as_int(o.y);
    __syncthreads(); /* block_best's shared memory is reused */
    block_best_of(v2, i2, v, best);
    if (threadIdx.x == 0) arrived[r] = 0;
  }
  if (threadIdx.x == 0) ((int32_t *)d.p)[r] = best < 0 ? 0 : best;
}

cudaError_t sp_cu_argmax(const sp_cu_cmd *c) {
  const sp_cu_tensor &x = c->src[0];
  uint32_t rows = x.ne[1];
  bool vec = x.ne[0] % 4 == 0 && ((uintptr_t)x.p | x.nb[0]) % 16 == 0;
  /* Long rows: SP_ARGMAX_PARTS blocks each, when the scratch holds them.
   * The scratch starts with one arrival counter per row (at fixed places,
   * whatever the shape: each is back to zero after its row), then the
   * partial results. */
  uint32_t parts = x.ne[0] >= 16384 ? SP_ARGMAX_PARTS : 1;
  const size_t counters = SP_CU_REDUCE_COUNTERS * sizeof(uint32_t);
  size_t need = counters + (size_t)rows * parts * sizeof(float2);
  if (parts > 1 && (!c->reduce || rows > SP_CU_REDUCE_COUNTERS || need > c->reduce_bytes)) parts = 1;
  uint32_t *arrived = (uint32_t *)c->reduce;
  float2 *partial = c->reduce ? (float2 *)(c->reduce + counters) : nullptr;
  dim3 grid(parts, rows);
  sp_cu_launch(argmax_kernel, grid, 256, c->stream, c->dst, x, vec, partial, arrived, c->status);
  return cudaGetLastError();
}

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

cudaError_t sp_cu_get_rows(const sp_cu_cmd *c) {
  uint32_t ne0 = c->dst.ne[0];
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
