/*
 * topk.cu: SP_OP_TOPK on the GPU, in the order of core/topk_rank.h (the
 * CPU's order, so both backends pick the same indices from the same
 * logits).
 *
 * One block of 1024 threads per row. The fast path reads the row twice:
 *  a. every thread takes the largest key of its elements; the K-th largest
 *     of those 1024 maxima, T, is at most the row's K-th largest key (the
 *     K best maxima are K elements at or above T), so every element of the
 *     answer has a key >= T;
 *  b. the ranks of the elements with key >= T are gathered into shared
 *     memory (typically a few hundred) and sorted; the first K are the
 *     answer.
 * Where more than SP_TOPK_BUF elements reach T (many equal values), the
 * general path below runs instead, in three steps over the row:
 *  1. radix select: three histogram passes over the 32-bit value keys
 *     (11, 11 and 10 bits, each among the keys that share the digits found
 *     so far) find T, the K-th largest key, and how many of the K are
 *     equal to T;
 *  2. one gathering pass: every key above T takes a slot (any order), and
 *     keys equal to T take the remaining slots in increasing index order
 *     (a block-wide prefix count per chunk of 1024 elements);
 *  3. a bitonic sort of the K ranks in shared memory, best first.
 * The general path alone took 227 us on a 128k-token row (H100,
 * SP_CUDA_TIMING=2): four passes of 128 elements per thread, each with
 * shared-memory atomics on the few bins logits crowd into. The fast path
 * reads the row twice with a max and a compare per element.
 */
#include "backend/cuda/cuda_common.cuh"
#include "core/topk_rank.h"

#define SP_TOPK_T 1024
#define SP_TOPK_NO_BIN 0xffffffffu
/* Elements each thread loads before using any: one block walks the whole
 * row, so each pass waits on memory latency, not bandwidth; SP_TOPK_U loads
 * in flight per wait (H100, SP_CUDA_TIMING=2, 128k logits: 233 us with one). */
#define SP_TOPK_U 8
/* Candidates the fast path holds (32 KiB of ranks); more take the general path. */
#define SP_TOPK_BUF 4096

/* The keys of elements base + u * blockDim.x + threadIdx.x (u < SP_TOPK_U),
 * loaded together; 0 past the row (callers test the index). */
static __device__ __forceinline__ void load_keys(const float *xr, uint32_t n, uint32_t base, uint32_t *key) {
#pragma unroll
  for (int u = 0; u < SP_TOPK_U; u++) {
    uint32_t i = base + u * blockDim.x + threadIdx.x;
    key[u] = i < n ? sp_topk_key(xr[i]) : 0;
  }
}

/* The bin holding the want-th largest key: the one bin b with fewer than
 * `want` keys in the bins above it and at least `want` counting its own.
 * Every thread sums two bins, a suffix scan over the block gives each its
 * count above, and the thread whose bin it is returns true with b and that
 * count. In parallel: one thread walking 2,048 bins took most of the
 * kernel's 0.3 ms on a 128k vocabulary (H100, SP_CUDA_TIMING=2). */
static __device__ bool find_bin(const uint32_t *hist, uint32_t bins, uint32_t want, uint32_t *bin, uint32_t *above) {
  __shared__ uint32_t warp_total[SP_TOPK_T / 32];
  uint32_t t = threadIdx.x, lane = t % 32, warp = t / 32;
  uint32_t lo = 2 * t, hi = 2 * t + 1;
  uint32_t h_lo = lo < bins ? hist[lo] : 0, h_hi = hi < bins ? hist[hi] : 0, own = h_lo + h_hi;
  uint32_t suffix = own; /* this lane's and the lanes' above it in the warp */
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    uint32_t v = __shfl_down_sync(0xffffffffu, suffix, off);
    if (lane + off < 32) suffix += v;
  }
  if (lane == 0) warp_total[warp] = suffix;
  __syncthreads();
  uint32_t over = suffix - own; /* bins of higher threads in this warp */
  for (uint32_t w = warp + 1; w < blockDim.x / 32; w++) over += warp_total[w];
  __syncthreads(); /* warp_total is read before the next pass writes it */
  if (over < want && over + h_hi >= want) return *bin = hi, *above = over, true;
  if (over + h_hi < want && over + own >= want) return *bin = lo, *above = over + h_hi, true;
  return false;
}

/* Step 1: the K-th largest key of the row and, of the K best, how many
 * equal it (returned through shared memory). */
static __device__ void select_threshold(const float *xr, uint32_t n, uint32_t k, uint32_t *hist, uint32_t &key_out,
                                        uint32_t &equal_out) {
  __shared__ uint32_t prefix, want;
  const uint32_t shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
  if (threadIdx.x == 0) prefix = 0, want = k;
  uint32_t mask = 0;
  for (int pass = 0; pass < 3; pass++) {
    uint32_t shift = shifts[pass], bins = 1u << widths[pass];
    for (uint32_t b = threadIdx.x; b < bins; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    uint32_t pre = prefix;
    /* whole warps every round (a lane past the row or off the prefix holds
     * bin "none"), so the match below always has all 32 lanes: lanes with
     * the same bin add once, as logits crowd a few exponents */
    for (uint32_t base = 0; base < n; base += blockDim.x * SP_TOPK_U) {
      uint32_t key[SP_TOPK_U];
      load_keys(xr, n, base, key);
#pragma unroll
      for (int u = 0; u < SP_TOPK_U; u++) {
        uint32_t i = base + u * blockDim.x + threadIdx.x, bin = SP_TOPK_NO_BIN;
        if (i < n && (key[u] & mask) == pre) bin = (key[u] >> shift) & (bins - 1);
        if (!__any_sync(0xffffffffu, bin != SP_TOPK_NO_BIN)) continue; /* later passes: most warps */
        uint32_t peers = __match_any_sync(0xffffffffu, bin);
        if (bin != SP_TOPK_NO_BIN && (threadIdx.x % 32) == (uint32_t)(__ffs(peers) - 1))
          atomicAdd(&hist[bin], (uint32_t)__popc(peers));
      }
    }
    __syncthreads();
    uint32_t b, above;
    if (find_bin(hist, bins, want, &b, &above)) prefix |= b << shift, want -= above; /* one thread */
    mask |= (bins - 1) << shift;
    __syncthreads();
  }
  key_out = prefix, equal_out = want;
}

/* Step 2: the ranks of the K best into cand[0..k): keys above T anywhere
 * in [0, k - equal), the first `equal` keys equal to T (by index) after. */
static __device__ void gather(const float *xr, uint32_t n, uint32_t k, uint32_t key_t, uint32_t equal,
                              uint64_t *cand) {
  __shared__ uint32_t n_above, n_equal, warp_equal[SP_TOPK_T / 32];
  if (threadIdx.x == 0) n_above = 0, n_equal = 0;
  __syncthreads();
  uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32, first_equal = k - equal;
  for (uint32_t base = 0; base < n; base += blockDim.x * SP_TOPK_U) {
    uint32_t keys[SP_TOPK_U];
    load_keys(xr, n, base, keys);
#pragma unroll
    for (int u = 0; u < SP_TOPK_U; u++) { /* chunks of blockDim.x elements, in index order */
      uint32_t i = base + u * blockDim.x + threadIdx.x, key = keys[u];
      bool above = i < n && key > key_t, eq = i < n && key == key_t;
      if (above) cand[atomicAdd(&n_above, 1u)] = sp_topk_rank(key, i);
      if (!__syncthreads_or(eq && n_equal < equal)) continue;
      /* the chunk's equal keys in index order: a count per warp, then a prefix */
      uint32_t ballot = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) warp_equal[warp] = __popc(ballot);
      __syncthreads();
      uint32_t before = n_equal + __popc(ballot & ((1u << lane) - 1));
      for (uint32_t w = 0; w < warp; w++) before += warp_equal[w];
      if (eq && before < equal) cand[first_equal + before] = sp_topk_rank(key, i);
      __syncthreads();
      if (threadIdx.x == 0)
        for (uint32_t w = 0; w < blockDim.x / 32; w++) n_equal += warp_equal[w];
      __syncthreads();
    }
  }
  __syncthreads();
}

/* v[0..k) sorted largest first (the padding up to a power of two is 0,
 * below every real rank and key). */
template <typename T> static __device__ void sort_desc(T *v, uint32_t k) {
  uint32_t size = 1;
  while (size < k) size <<= 1;
  for (uint32_t i = k + threadIdx.x; i < size; i += blockDim.x) v[i] = 0;
  __syncthreads();
  for (uint32_t len = 2; len <= size; len <<= 1)
    for (uint32_t stride = len / 2; stride > 0; stride >>= 1) {
      for (uint32_t i = threadIdx.x; i < size; i += blockDim.x) {
        uint32_t j = i ^ stride;
        if (j <= i) continue;
        bool desc = (i & len) == 0; /* this half sorts largest first */
        T a = v[i], b = v[j];
        if (desc ? a < b : a > b) v[i] = b, v[j] = a;
      }
      __syncthreads();
    }
}

/* Fast path, step a: T, the K-th largest of the threads' largest keys
 * (key 0, below every value, for a thread without elements). */
static __device__ uint32_t threshold_of_maxima(const float *xr, uint32_t n, uint32_t k, uint32_t *maxima) {
  uint32_t best = 0;
  for (uint32_t base = 0; base < n; base += blockDim.x * SP_TOPK_U) {
    uint32_t key[SP_TOPK_U];
    load_keys(xr, n, base, key);
#pragma unroll
    for (int u = 0; u < SP_TOPK_U; u++) best = max(best, key[u]);
  }
  maxima[threadIdx.x] = best;
  sort_desc(maxima, blockDim.x);
  uint32_t t = maxima[k - 1];
  __syncthreads(); /* maxima is read before its memory is reused */
  return t;
}

/* Fast path, step b: the ranks of the keys >= t into buf, in any order;
 * returns how many there are (more than SP_TOPK_BUF: only the count). */
static __device__ uint32_t gather_at_least(const float *xr, uint32_t n, uint32_t t, uint64_t *buf) {
  __shared__ uint32_t count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  uint32_t lane = threadIdx.x % 32;
  for (uint32_t base = 0; base < n; base += blockDim.x * SP_TOPK_U) {
    uint32_t key[SP_TOPK_U];
    load_keys(xr, n, base, key);
#pragma unroll
    for (int u = 0; u < SP_TOPK_U; u++) {
      uint32_t i = base + u * blockDim.x + threadIdx.x;
      bool take = i < n && key[u] >= t;
      uint32_t ballot = __ballot_sync(0xffffffffu, take);
      if (!ballot) continue;
      uint32_t first = 0; /* one atomic per warp */
      if (lane == (uint32_t)(__ffs(ballot) - 1)) first = atomicAdd(&count, (uint32_t)__popc(ballot));
      first = __shfl_sync(0xffffffffu, first, __ffs(ballot) - 1);
      uint32_t slot = first + __popc(ballot & ((1u << lane) - 1));
      if (take && slot < SP_TOPK_BUF) buf[slot] = sp_topk_rank(key[u], i);
    }
  }
  __syncthreads();
  return count;
}

__global__ void __launch_bounds__(SP_TOPK_T) topk_kernel(sp_cu_tensor d, sp_cu_tensor x, sp_cu_status *st) {
  SP_CU_GUARD(st);
  __shared__ uint32_t hist[2048];
  __shared__ uint64_t cand[SP_TOPK_BUF];
  const float *xr = (const float *)sp_cu_row(x, blockIdx.x);
  int32_t *yr = (int32_t *)sp_cu_row(d, blockIdx.x);
  uint32_t n = x.ne[0], k = d.ne[0], key_t, equal;
  uint32_t found = gather_at_least(xr, n, threshold_of_maxima(xr, n, k, hist), cand);
  if (found <= SP_TOPK_BUF) {
    sort_desc(cand, found);
  } else {
    select_threshold(xr, n, k, hist, key_t, equal);
    gather(xr, n, k, key_t, equal, cand);
    sort_desc(cand, k);
  }
  for (uint32_t i = threadIdx.x; i < k; i += blockDim.x) yr[i] = (int32_t)sp_topk_index(cand[i]);
}

cudaError_t sp_cu_topk(const sp_cu_cmd *c) {
  sp_cu_launch(topk_kernel, (unsigned)c->src[0].ne[1], SP_TOPK_T, c->stream, c->dst, c->src[0], c->status);
  return cudaGetLastError();
}
