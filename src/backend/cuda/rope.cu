/*
 * rope.cu: rotary position embedding on the GPU, of one tensor or of a q/k
 * pair, optionally writing the rotated k and its v into the f16 KV cache
 * rows at their positions (the set_rows after it folded in, fuse.h). The
 * angle advances by repeated float multiplication from a host-computed
 * theta scale and f16 stores round to nearest even, as the CPU's llm_ops.c.
 */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

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
