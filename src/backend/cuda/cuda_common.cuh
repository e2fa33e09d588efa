/*
 * cuda_common.cuh: what the CUDA op families share.
 *
 * cuda_submit.cu decodes each validated command into an sp_cu_cmd: its
 * tensors with resolved device pointers (guest memory itself, or a frozen
 * range's device copy for sources wholly inside one), and hands it to the
 * launcher of its op family (matmul.cu, elementwise.cu, norm.cu, rope.cu,
 * rows.cu, softmax_argmax.cu, topk.cu, attention.cu). Launchers only enqueue on the binding's stream; they never
 * synchronize, so a whole list can be captured as one CUDA graph.
 *
 * Every kernel starts with SP_CU_GUARD: once an earlier command of the list
 * found a bad index (status word set in device memory), the rest of the
 * list does nothing, so "nothing after a failed check runs" holds inside a
 * replayed graph too.
 */
#ifndef SP_CUDA_COMMON_CUH
#define SP_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

#ifndef _Static_assert
#define _Static_assert static_assert /* samepage_abi.h is C11 */
#endif
extern "C" {
#include "samepage_abi.h"
}

#define SP_CU_QK 32 /* elements per quantized block */
#define SP_CU_MMV_MAX_M 8 /* activation rows up to which matmul is matrix-vector (decode); more: prefill */

/* The device status word of a binding: set by the first failed check. */
typedef struct sp_cu_status {
  int32_t code;  /* 0 = fine, else SP_E_BOUNDS */
  int32_t cmd;   /* index of the command whose check failed */
  int32_t at;    /* index position that failed */
  int32_t value; /* the bad value */
} sp_cu_status;

/* A validated tensor with its resolved device pointer. */
typedef struct sp_cu_tensor {
  uint8_t *p;
  uint32_t dtype;
  uint32_t ne[4];
  uint32_t nb[3]; /* byte strides of dims 1..3 (normalized) */
} sp_cu_tensor;

/* One command, ready to launch. */
typedef struct sp_cu_cmd {
  const sp_cmd *cmd;     /* the validated original (params) */
  uint32_t index;        /* position in the list, for messages */
  sp_cu_tensor dst, src[SP_MAX_SRC];
  cudaStream_t stream;
  sp_cu_status *status;  /* device status word */
  /* matmul: activations quantized to int8 blocks (scratch), when reused */
  int8_t *xq;            /* [M][K] */
  float *xd;             /* [M][K/32] block scales */
  float *xs;             /* [M][K/32] scale * sum of the block's ints */
  bool xq_ready;         /* xq already holds these activations */
  bool no_flash;         /* attention: never the tensor-core prefill kernel (SP_CUDA_NO_FLASH) */
  /* matmul: src[0] in the repacked layout (repack.h), NULL when it has none */
  const uint8_t *rq, *rs;
  /* argmax: per-row partial results and arrival counters (zero between lists) */
  uint8_t *reduce;
  size_t reduce_bytes;
  /* attention: the split path's partial results (zeroed counters first) */
  uint8_t *attn;
  size_t attn_bytes;
  /* matmul with M > 8: cuBLAS and its scratch (gemm.h), NULL: our tiles */
  struct sp_cu_gemm *gemm;
} sp_cu_cmd;

#define SP_CU_REDUCE_BYTES 65536   /* the binding's argmax scratch */
#define SP_CU_REDUCE_COUNTERS 1024 /* rows it can count arrivals for */

/* Every kernel launched with sp_cu_launch starts here: it first waits for
 * the previous kernel of the stream (Hopper's programmatic dependent launch
 * lets it be scheduled before that one ends; a no-op otherwise), then
 * stops if a check failed earlier in the list. */
#define SP_CU_GUARD(status)            \
  do {                                 \
    cudaGridDependencySynchronize();   \
    if ((status)->code) return;        \
  } while (0)

/* The knobs (knobs.h) of the process's first CUDA backend, for the code
 * that serves every backend of the process: launch helpers, kernel shapes,
 * fault hooks, the resident-copy allocator, cuBLAS loading. Set by
 * sp_backend_cuda_new before any of that runs. Per-backend knobs (fusion,
 * flash attention, staging, timing, device) live in the backend's context. */
struct sp_knobs;
const struct sp_knobs *sp_cu_knobs(void);
/* Whether the first backend was created in a worker process (process
 * isolation: sp_backend_options.worker_process). */
bool sp_cu_worker_process(void);

/* The knob SP_CUDA_NO_PDL launches without programmatic dependent launch. */
bool sp_cu_pdl_enabled(void);

/* kernel<<<grid, block, 0, stream>>>(args...), allowed to be scheduled
 * while the stream's previous kernel finishes (it waits in SP_CU_GUARD):
 * a decode step is some 180 small kernels, and each launch gap is a
 * microsecond or two of an idle GPU. */
template <typename... Params, typename... Args>
static inline void sp_cu_launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                                Args &&...args) {
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = 0, cfg.stream = stream;
  cfg.attrs = &attr, cfg.numAttrs = sp_cu_pdl_enabled() ? 1 : 0;
  cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

/* sp_cu_launch with `smem` bytes of dynamic shared memory. */
template <typename... Params, typename... Args>
static inline void sp_cu_launch_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                     Args &&...args) {
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
  cfg.attrs = &attr, cfg.numAttrs = sp_cu_pdl_enabled() ? 1 : 0;
  cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

/* Rows of a tensor: ne1 * ne2 * ne3. */
static inline __host__ __device__ int64_t sp_cu_rows(const sp_cu_tensor &t) {
  return (int64_t)t.ne[1] * t.ne[2] * t.ne[3];
}

/* Address of row r (counted over dims 1..3). */
static inline __device__ uint8_t *sp_cu_row(const sp_cu_tensor &t, int64_t r) {
  int64_t i1 = r % t.ne[1], i2 = r / t.ne[1] % t.ne[2], i3 = r / t.ne[1] / t.ne[2];
  return t.p + (size_t)i1 * t.nb[0] + (size_t)i2 * t.nb[1] + (size_t)i3 * t.nb[2];
}

static inline __device__ float sp_cu_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

static inline __device__ float sp_cu_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

static inline __device__ float sp_cu_half(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

static inline __device__ float sp_cu_bf16(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

static inline __device__ uint16_t sp_cu_ld16(const uint8_t *p) { return *(const uint16_t *)p; }

static inline float sp_cu_f32(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Quantizes the 32 values a warp holds (lane i: element i of one block) as
 * the CPU's sp_q8_act does: int8 values, the block scale rounded to f16,
 * and scale * sum of the ints (rounded to f16) for Q4_1's offset term. */
static inline __device__ void sp_cu_quantize_block(float v, int8_t *q, float *d, float *s) {
  uint32_t lane = threadIdx.x % 32;
  float amax = sp_cu_warp_max(fabsf(v));
  float id = amax > 0 ? 127.0f / amax : 0.0f;
  float r = rintf(__fmul_rn(v, id));
  r = fminf(fmaxf(r, -127.0f), 127.0f);
  int qi = (int)r, sum = qi;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  q[lane] = (int8_t)qi;
  if (lane == 0) {
    float dh = __half2float(__float2half_rn(amax / 127.0f));
    *d = dh;
    *s = __half2float(__float2half_rn(__fmul_rn(dh, (float)sum)));
  }
}

/* Where fused producers put quantized activations for the next matmul. */
typedef struct sp_cu_qdst {
  int8_t *xq; /* [M][K]; NULL: do not quantize */
  float *xd, *xs; /* [M][K/32] */
} sp_cu_qdst;

/* Bytes copied from guest memory to device memory at the start of a list
 * (staged index tensors, cuda_submit.cu). */
#define SP_CU_MAX_STAGED 8
typedef struct sp_cu_spans {
  const uint32_t *src[SP_CU_MAX_STAGED];
  uint32_t *dst[SP_CU_MAX_STAGED];
  uint32_t words[SP_CU_MAX_STAGED];
  uint32_t n;
} sp_cu_spans;
cudaError_t sp_cu_stage(const sp_cu_spans *spans, cudaStream_t stream);

/* Launchers: enqueue one command; return the launch error (cudaSuccess). */
cudaError_t sp_cu_matmul(const sp_cu_cmd *c);
cudaError_t sp_cu_elementwise(const sp_cu_cmd *c); /* add, mul, scale, swiglu, copy */
#define SP_CU_MAX_BIAS 3 /* in-place adds of a broadcast row run as one launch (a layer's q, k, v biases) */
/* cs[0..n) are in-place adds of one broadcast f32 row each, independent of
 * one another (fuse.cu): run as one launch. */
cudaError_t sp_cu_bias_rows(const sp_cu_cmd *const *cs, uint32_t n);
cudaError_t sp_cu_rmsnorm(const sp_cu_cmd *c);
cudaError_t sp_cu_softmax(const sp_cu_cmd *c);
cudaError_t sp_cu_rope(const sp_cu_cmd *c);
cudaError_t sp_cu_get_rows(const sp_cu_cmd *c);
cudaError_t sp_cu_set_rows(const sp_cu_cmd *c);
cudaError_t sp_cu_attention(const sp_cu_cmd *c);
/* Whether attention over this cache takes the f16 kernel (which can also
 * quantize its output: sp_cu_attention_quant); addr_bits: the cache's
 * pointers and strides or'ed. */
bool sp_cu_attention_fast(uint32_t kdtype, uint32_t vdtype, uint32_t D, uintptr_t addr_bits);
/* Device bytes the split decode path needs for this attention command (0:
 * it never takes it), reserved per binding before the list is enqueued. */
size_t sp_cu_attention_scratch_bytes(const sp_cmd *cmd, bool no_flash);
cudaError_t sp_cu_argmax(const sp_cu_cmd *c);
cudaError_t sp_cu_topk(const sp_cu_cmd *c);
/* Checks n i32 indices at idx against [0, limit); on the first bad one sets
 * the status word (code SP_E_BOUNDS, cmd index, position, value). */
cudaError_t sp_cu_check_indices(const int32_t *idx, uint32_t n, uint32_t limit, uint32_t cmd_index,
                                sp_cu_status *status, cudaStream_t stream);
/* Whether the matmul launcher needs quantized activations for this weight dtype. */
bool sp_cu_matmul_quantizes(uint32_t wdtype, uint32_t m);

/* ---- fused launches (fuse.cu decides when they are equivalent) ---- */

/* Up to SP_CU_MAX_GROUP matrix-vector products over one input, one launch.
 * With `paired` (equal row counts) a block computes row n of every member,
 * reading the input once. */
#define SP_CU_MAX_GROUP 3
cudaError_t sp_cu_matmul_group(const sp_cu_cmd *const *members, uint32_t n, bool paired);

/* For several actors' decode products against one weight (cuda_batch.cu):
 *  - quantize_input: what a product does first, the input quantized into
 *    c->xq unless c->xq_ready (quantized weight types only);
 *  - matvec_rows: the matrix-vector kernels over the src[1].ne[1] rows of
 *    cs (members as sp_cu_matmul_group's), whatever that count: no cuBLAS,
 *    no tiles; quantized types read c->xq as ready;
 *  - matvec_vec: whether the float kernel takes its 16-byte path for c
 *    (alignment of weights and input), which decides its summation order. */
cudaError_t sp_cu_matmul_quantize_input(const sp_cu_cmd *c);
cudaError_t sp_cu_matvec_rows(const sp_cu_cmd *const *cs, uint32_t n, bool paired);
bool sp_cu_matvec_vec(const sp_cu_cmd *c);
/* [[norm of b then] add x = a + b then] rmsnorm [then quantize for the next
 * matmul]: `add` is the add command folded in front (NULL: none), `pre` the
 * in-place norm of the add's src[1] before it (NULL: none; needs add). */
cudaError_t sp_cu_rmsnorm_fused(const sp_cu_cmd *pre, const sp_cu_cmd *add, const sp_cu_cmd *norm, sp_cu_qdst q);
/* Two independent rmsnorms of rows of one width, one launch. */
cudaError_t sp_cu_rmsnorm_pair(const sp_cu_cmd *n0, const sp_cu_cmd *n1);
/* swiglu or geglu, then quantize its output for the next matmul. */
cudaError_t sp_cu_gate_quant(const sp_cu_cmd *c, sp_cu_qdst q);
/* Attention of 16 or more query rows on tensor cores (attention_prefill.cu);
 * false when the command does not fit it (the other kernels run). */
bool sp_cu_attention_prefill(const sp_cu_cmd *c);
/* attention, then quantize its output (heads of a multiple of 64 values,
 * f16 cache: sp_cu_attention_fast) for the next matmul. */
cudaError_t sp_cu_attention_quant(const sp_cu_cmd *c, sp_cu_qdst q);
/* Two independent ropes (same positions and parameters) in one launch. */
cudaError_t sp_cu_rope_pair(const sp_cu_cmd *a, const sp_cu_cmd *b);
/* A rope pair (q, k), then set_rows of k's rows and of v's rows into f16
 * caches at the same positions: one launch (fuse.cu says when). */
cudaError_t sp_cu_rope_cache(const sp_cu_cmd *a, const sp_cu_cmd *b, const sp_cu_cmd *ks, const sp_cu_cmd *vs);
/* Two independent set_rows with the same indices in one launch. */
cudaError_t sp_cu_set_rows_pair(const sp_cu_cmd *a, const sp_cu_cmd *b);

#endif
