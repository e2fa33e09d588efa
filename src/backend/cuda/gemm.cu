/* gemm.cu: see gemm.h. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <library_types.h>

#include "core/knobs.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/quant_k.cuh"

/* ---- cuBLAS, loaded at run time: the few entry points we call ---- */

typedef struct cublasContext *cublas_handle;
typedef int cublas_status;
enum { CUBLAS_OP_N_ = 0, CUBLAS_OP_T_ = 1, CUBLAS_COMPUTE_32F_ = 68, CUBLAS_GEMM_DEFAULT_ = -1 };

static struct {
  cublas_status (*create)(cublas_handle *);
  cublas_status (*destroy)(cublas_handle);
  cublas_status (*set_stream)(cublas_handle, cudaStream_t);
  cublas_status (*set_workspace)(cublas_handle, void *, size_t);
  cublas_status (*gemm_ex)(cublas_handle, int, int, int, int, int, const void *, const void *, cudaDataType, int,
                           const void *, cudaDataType, int, const void *, void *, cudaDataType, int, int, int);
  bool ok;
} api;

static void load_cublas(void) {
  if (sp_cu_knobs()->cuda_no_cublas) return;
  const char *names[] = {"libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13", "libcublas.so.12",
                         "/usr/local/cuda/lib64/libcublas.so.12", "libcublas.so"};
  void *lib = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib) return;
  *(void **)&api.create = dlsym(lib, "cublasCreate_v2");
  *(void **)&api.destroy = dlsym(lib, "cublasDestroy_v2");
  *(void **)&api.set_stream = dlsym(lib, "cublasSetStream_v2");
  *(void **)&api.set_workspace = dlsym(lib, "cublasSetWorkspace_v2");
  *(void **)&api.gemm_ex = dlsym(lib, "cublasGemmEx");
  api.ok = api.create && api.destroy && api.set_stream && api.set_workspace && api.gemm_ex;
}

static bool cublas_ok(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, load_cublas);
  return api.ok;
}

/* ---- which products, and the scratch they need ---- */

#define SP_GEMM_W_BYTES ((size_t)32 << 20)    /* f16 weight rows expanded at a time */
#define SP_GEMM_WORKSPACE ((size_t)16 << 20)  /* cuBLAS's workspace, ours: it allocates none itself */

/* One per backend, shared by every actor's binding: a handle, a workspace
 * and scratch cost some 60 MB of device memory, too much to hold per
 * actor. Bindings enqueue on their own streams, so each product waits for
 * the previous user's (`done`) before touching the scratch, under `mu`.
 * cuBLAS writes a chunk's products into `out`, and our guarded copy moves
 * them to dst: after a failed index check (sp_cu_status) nothing of the
 * list may be written, and cuBLAS's kernels do not read the status word. */
struct sp_cu_gemm {
  pthread_mutex_t mu;
  cublas_handle handle;
  void *workspace;
  uint16_t *w16, *x16; /* expanded weights (row chunk), converted activations */
  float *out;          /* a chunk's products, [M][rows] */
  size_t w16_cap, x16_cap, out_cap; /* elements */
  cudaEvent_t done;    /* the last product's work, on whichever stream */
  bool used;
};

static pthread_mutex_t create_mu = PTHREAD_MUTEX_INITIALIZER;

static bool expands(uint32_t dt) {
  return dt == SP_DTYPE_Q8_0 || dt == SP_DTYPE_Q4_0 || dt == SP_DTYPE_Q4_1 || sp_cu_is_kq(dt);
}

static bool runs_here(const sp_cmd *c) {
  uint32_t dt = c->src[0].dtype, K = c->src[0].ne[0];
  if (c->op != SP_OP_MATMUL || c->src[1].ne[1] <= SP_CU_MMV_MAX_M || c->src[1].ne[2] != 1 || c->src[1].ne[3] != 1)
    return false;
  if (c->src[0].ne[2] != 1 || c->src[0].ne[3] != 1 || c->dst.ne[2] != 1 || c->dst.ne[3] != 1) return false;
  if (expands(dt)) return K % SP_CU_QK == 0;
  return (dt == SP_DTYPE_F16 || dt == SP_DTYPE_BF16) && c->src[0].nb[0] % 2 == 0;
}

/* Weight rows per chunk (expanded, and multiplied into `out`). */
static uint32_t chunk_rows(uint32_t N, uint32_t K) {
  size_t rows = SP_GEMM_W_BYTES / 2 / K;
  return rows >= N ? N : rows < 64 ? 64 : (uint32_t)rows;
}

bool sp_cu_gemm_wanted(const sp_cmd *cmds, uint32_t count) {
  for (uint32_t i = 0; i < count; i++)
    if (runs_here(&cmds[i])) return true;
  return false;
}

/* A bigger buffer; other streams may still use the old one: wait for them. */
template <typename T>
static cudaError_t grow(T **buf, size_t *cap, size_t need) {
  if (need <= *cap) return cudaSuccess;
  cudaDeviceSynchronize();
  cudaFree(*buf);
  *buf = NULL, *cap = 0;
  cudaError_t e = cudaMalloc(buf, need * sizeof(T));
  if (e == cudaSuccess) *cap = need;
  return e;
}

static sp_cu_gemm *create(void) {
  sp_cu_gemm *g = (sp_cu_gemm *)calloc(1, sizeof *g);
  if (!g) return NULL;
  pthread_mutex_init(&g->mu, NULL);
  if (cudaMalloc(&g->workspace, SP_GEMM_WORKSPACE) != cudaSuccess || api.create(&g->handle) != 0 ||
      api.set_workspace(g->handle, g->workspace, SP_GEMM_WORKSPACE) != 0 ||
      cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming) != cudaSuccess) {
    sp_cu_gemm_free(g);
    return NULL;
  }
  return g;
}

cudaError_t sp_cu_gemm_reserve(sp_cu_gemm **gp, const sp_cmd *cmds, uint32_t count) {
  if (!cublas_ok()) return cudaSuccess;
  pthread_mutex_lock(&create_mu);
  if (!*gp) *gp = create();
  sp_cu_gemm *g = *gp;
  pthread_mutex_unlock(&create_mu);
  if (!g) return cudaErrorMemoryAllocation;
  size_t w = 0, x = 0, o = 0;
  for (uint32_t i = 0; i < count; i++) {
    const sp_cmd *c = &cmds[i];
    if (!runs_here(c)) continue;
    uint32_t N = c->src[0].ne[1], K = c->src[0].ne[0], M = c->src[1].ne[1], rows = chunk_rows(N, K);
    if (expands(c->src[0].dtype) && (size_t)rows * K > w) w = (size_t)rows * K;
    if ((size_t)M * K > x) x = (size_t)M * K;
    if ((size_t)M * rows > o) o = (size_t)M * rows;
  }
  pthread_mutex_lock(&g->mu);
  cudaError_t e = grow(&g->w16, &g->w16_cap, w);
  if (e == cudaSuccess) e = grow(&g->x16, &g->x16_cap, x);
  if (e == cudaSuccess) e = grow(&g->out, &g->out_cap, o);
  pthread_mutex_unlock(&g->mu);
  return e;
}

void sp_cu_gemm_free(sp_cu_gemm *g) {
  if (!g) return;
  if (g->done) cudaEventDestroy(g->done);
  pthread_mutex_destroy(&g->mu);
  if (g->handle) api.destroy(g->handle);
  cudaFree(g->workspace), cudaFree(g->w16), cudaFree(g->x16), cudaFree(g->out);
  free(g);
}

/* ---- warming up ---- */

static pthread_t prewarm_thread;
static bool prewarm_started;

static void *prewarm(void *arg) {
  if (cudaSetDevice(*(int *)arg) != cudaSuccess || !cublas_ok()) return NULL;
  cublas_handle h = NULL;
  void *buf = NULL;
  const int n = 128;
  if (api.create(&h) == 0 && cudaMalloc(&buf, (size_t)n * n * 8) == cudaSuccess &&
      cudaMemset(buf, 0, (size_t)n * n * 8) == cudaSuccess) {
    const float one = 1.0f, zero = 0.0f;
    uint8_t *a = (uint8_t *)buf, *c = a + (size_t)n * n * 4;
    api.gemm_ex(h, CUBLAS_OP_T_, CUBLAS_OP_N_, n, n, n, &one, a, CUDA_R_16F, n, a, CUDA_R_16F, n, &zero, c, CUDA_R_32F, n,
                CUBLAS_COMPUTE_32F_, CUBLAS_GEMM_DEFAULT_);
    cudaDeviceSynchronize();
  }
  cudaFree(buf);
  if (h) api.destroy(h);
  cudaGetLastError(); /* whatever failed here, the real products will say it again */
  return NULL;
}

void sp_cu_gemm_prewarm_start(int device) {
  static int dev;
  if (prewarm_started || sp_cu_knobs()->cuda_no_cublas) return;
  dev = device;
  prewarm_started = pthread_create(&prewarm_thread, NULL, prewarm, &dev) == 0;
}

void sp_cu_gemm_prewarm_join(void) {
  if (prewarm_started) pthread_join(prewarm_thread, NULL);
  prewarm_started = false;
}

/* ---- expanding and converting ---- */

/* Weight rows [n0, n0 + rows) of a quantized matrix as f16 (the CPU's
 * dequantization formulas): a thread per 8 outputs, stored as one 16-byte
 * write, so a warp writes 512 contiguous bytes. */
template <int DT>
__global__ void expand_kernel(const uint8_t *w, uint32_t w_stride, uint32_t n0, uint32_t rows, uint32_t K, __half *out,
                              sp_cu_status *st) {
  SP_CU_GUARD(st);
  const uint32_t BYTES = DT == SP_DTYPE_Q8_0 ? 34 : DT == SP_DTYPE_Q4_0 ? 18 : 20;
  uint32_t nb = K / SP_CU_QK;
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * nb * 4) return;
  uint32_t part = (uint32_t)(t % 4);
  size_t b = t / 4;
  uint32_t r = (uint32_t)(b / nb), k = (uint32_t)(b % nb);
  const uint8_t *blk = w + (size_t)(n0 + r) * w_stride + (size_t)k * BYTES;
  float d = sp_cu_half(sp_cu_ld16(blk));
  __align__(16) __half o[8];
  if (DT == SP_DTYPE_Q8_0) {
    const int8_t *q = (const int8_t *)(blk + 2) + part * 8;
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = __float2half_rn(d * (float)q[j]);
  } else {
    float m = DT == SP_DTYPE_Q4_1 ? sp_cu_half(sp_cu_ld16(blk + 2)) : 0.0f;
    const uint8_t *q = blk + (DT == SP_DTYPE_Q4_1 ? 4 : 2);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      uint32_t e = part * 8 + j; /* elements 0..15: low nibbles, 16..31: high */
      int v = e < 16 ? q[e] & 0x0f : q[e - 16] >> 4;
      o[j] = __float2half_rn(DT == SP_DTYPE_Q4_1 ? d * (float)v + m : d * (float)(v - 8));
    }
  }
  *(uint4 *)(out + (size_t)r * K + (size_t)k * SP_CU_QK + part * 8) = *(const uint4 *)o;
}

/* The same for the issue-15 types: a thread per 8 outputs, dequantized
 * exactly (quant_k.cuh) then rounded to f16, one 16-byte store. */
template <int DT>
__global__ void expand_kq_kernel(const uint8_t *w, uint32_t w_stride, uint32_t n0, uint32_t rows, uint32_t K,
                                 __half *out, sp_cu_status *st) {
  SP_CU_GUARD(st);
  uint32_t groups = K / 8;
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * groups) return;
  uint32_t r = (uint32_t)(t / groups), i = (uint32_t)(t % groups) * 8;
  float v[8];
  sp_cu_row8<DT>(w + (size_t)(n0 + r) * w_stride, i, v);
  __align__(16) __half o[8];
#pragma unroll
  for (int j = 0; j < 8; j++) o[j] = __float2half_rn(v[j]);
  *(uint4 *)(out + (size_t)r * K + i) = *(const uint4 *)o;
}

template <int DT>
static void expand_kq(const sp_cu_cmd *c, uint32_t n0, uint32_t rows, uint32_t K, __half *out) {
  size_t blocks = ((size_t)rows * (K / 8) + 255) / 256;
  const sp_cu_tensor &w = c->src[0];
  sp_cu_launch(expand_kq_kernel<DT>, (unsigned)blocks, 256, c->stream, w.p, w.nb[0], n0, rows, K, out, c->status);
}

/* Activation rows (f32, strided) as dense f16 or bf16 rows. */
template <bool BF16>
__global__ void convert_kernel(const uint8_t *x, uint32_t x_stride, uint32_t M, uint32_t K, uint16_t *out,
                               sp_cu_status *st) {
  SP_CU_GUARD(st);
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)M * K) return;
  uint32_t m = (uint32_t)(i / K), k = (uint32_t)(i % K);
  float v = ((const float *)(x + (size_t)m * x_stride))[k];
  out[i] = BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
}

/* dst[m][n0 + r] = out[m][r]: the chunk's products, unless a check failed. */
__global__ void copy_out_kernel(const float *out, uint32_t rows, uint32_t M, uint8_t *dst, uint32_t d_stride, uint32_t n0,
                                sp_cu_status *st) {
  SP_CU_GUARD(st);
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)M * rows) return;
  uint32_t m = (uint32_t)(i / rows), r = (uint32_t)(i % rows);
  ((float *)(dst + (size_t)m * d_stride))[n0 + r] = out[i];
}

static void expand(const sp_cu_cmd *c, uint32_t dt, uint32_t n0, uint32_t rows, uint32_t K, __half *out) {
  switch (dt) {
  case SP_DTYPE_Q5_0: return expand_kq<SP_DTYPE_Q5_0>(c, n0, rows, K, out);
  case SP_DTYPE_Q5_1: return expand_kq<SP_DTYPE_Q5_1>(c, n0, rows, K, out);
  case SP_DTYPE_Q2_K: return expand_kq<SP_DTYPE_Q2_K>(c, n0, rows, K, out);
  case SP_DTYPE_Q3_K: return expand_kq<SP_DTYPE_Q3_K>(c, n0, rows, K, out);
  case SP_DTYPE_Q4_K: return expand_kq<SP_DTYPE_Q4_K>(c, n0, rows, K, out);
  case SP_DTYPE_Q5_K: return expand_kq<SP_DTYPE_Q5_K>(c, n0, rows, K, out);
  case SP_DTYPE_Q6_K: return expand_kq<SP_DTYPE_Q6_K>(c, n0, rows, K, out);
  case SP_DTYPE_IQ4_NL: return expand_kq<SP_DTYPE_IQ4_NL>(c, n0, rows, K, out);
  case SP_DTYPE_IQ4_XS: return expand_kq<SP_DTYPE_IQ4_XS>(c, n0, rows, K, out);
  default: break;
  }
  size_t blocks = ((size_t)rows * (K / SP_CU_QK) * 4 + 255) / 256;
  const sp_cu_tensor &w = c->src[0];
  if (dt == SP_DTYPE_Q8_0) sp_cu_launch(expand_kernel<SP_DTYPE_Q8_0>, (unsigned)blocks, 256, c->stream, w.p, w.nb[0], n0, rows, K, out, c->status);
  else if (dt == SP_DTYPE_Q4_0) sp_cu_launch(expand_kernel<SP_DTYPE_Q4_0>, (unsigned)blocks, 256, c->stream, w.p, w.nb[0], n0, rows, K, out, c->status);
  else sp_cu_launch(expand_kernel<SP_DTYPE_Q4_1>, (unsigned)blocks, 256, c->stream, w.p, w.nb[0], n0, rows, K, out, c->status);
}

/* ---- the product ---- */

/* dst[m][n] = sum_k x[m][k] w[n][k]: in cuBLAS's column-major terms, per
 * chunk of weight rows, out^T (rows x M) = W^T-op (W as K x rows) x X (K x M). */
static cudaError_t run_locked(sp_cu_gemm *g, const sp_cu_cmd *c) {
  uint32_t dt = c->src[0].dtype, K = c->src[0].ne[0], N = c->src[0].ne[1], M = c->src[1].ne[1];
  uint32_t step = chunk_rows(N, K);
  bool bf16 = dt == SP_DTYPE_BF16;
  if ((size_t)M * K > g->x16_cap || (size_t)M * step > g->out_cap || (expands(dt) && (size_t)step * K > g->w16_cap))
    return cudaErrorNotSupported; /* not reserved for this list: the tiles run */
  if (g->used && cudaStreamWaitEvent(c->stream, g->done, 0) != cudaSuccess) return cudaErrorUnknown;
  size_t total = (size_t)M * K;
  if (bf16) sp_cu_launch(convert_kernel<true>, (unsigned)((total + 255) / 256), 256, c->stream, c->src[1].p, c->src[1].nb[0], M, K, g->x16, c->status);
  else sp_cu_launch(convert_kernel<false>, (unsigned)((total + 255) / 256), 256, c->stream, c->src[1].p, c->src[1].nb[0], M, K, g->x16, c->status);
  if (api.set_stream(g->handle, c->stream) != 0) return cudaErrorUnknown;
  const float one = 1.0f, zero = 0.0f;
  cudaDataType ab = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  for (uint32_t n0 = 0; n0 < N; n0 += step) {
    uint32_t rows = N - n0 < step ? N - n0 : step;
    const void *a;
    int lda;
    if (expands(dt)) expand(c, dt, n0, rows, K, (__half *)g->w16), a = g->w16, lda = (int)K;
    else a = c->src[0].p + (size_t)n0 * c->src[0].nb[0], lda = (int)(c->src[0].nb[0] / 2);
    if (api.gemm_ex(g->handle, CUBLAS_OP_T_, CUBLAS_OP_N_, (int)rows, (int)M, (int)K, &one, a, ab, lda, g->x16, ab,
                    (int)K, &zero, g->out, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F_, CUBLAS_GEMM_DEFAULT_) != 0)
      return cudaErrorUnknown;
    size_t n = (size_t)M * rows;
    sp_cu_launch(copy_out_kernel, (unsigned)((n + 255) / 256), 256, c->stream, g->out, rows, M, c->dst.p, c->dst.nb[0],
                 n0, c->status);
  }
  cudaError_t e = cudaEventRecord(g->done, c->stream);
  g->used = g->used || e == cudaSuccess;
  return e != cudaSuccess ? e : cudaGetLastError();
}

/* dst[m][n] = sum_k x[m][k] w[n][k]: in cuBLAS's column-major terms, per
 * chunk of weight rows, out^T (rows x M) = W^T-op (W as K x rows) x X (K x M). */
cudaError_t sp_cu_gemm_run(sp_cu_gemm *g, const sp_cu_cmd *c) {
  if (!g || !runs_here(c->cmd)) return cudaErrorNotSupported;
  pthread_mutex_lock(&g->mu);
  cudaError_t e = run_locked(g, c);
  pthread_mutex_unlock(&g->mu);
  return e;
}
