/*
 * repack.cu: repacked quantized weights (see repack.h).
 */
#include "core/knobs.h"
#include "backend/cuda/repack.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cuda/vmm.h"

typedef struct repack_entry {
  uint64_t offset;
  uint32_t dtype, K, N, stride;
  uint8_t *buf; /* quants of all rows, then scales */
  uint64_t bytes;
  bool exported;  /* handed to other processes (or made by one): not again */
  bool imported;  /* made by another process: not counted as held here */
} repack_entry;

typedef struct repack_set {
  repack_entry *e;
  size_t n, cap;
} repack_set;

static uint64_t held_bytes; /* atomic: entries come and go under different bindings */
static uint32_t unexported; /* atomic: layouts made here in exportable memory, not yet handed out; the
                               wait of every list asks, so the common answer (none) must cost nothing */

uint64_t sp_cu_repack_bytes(void) { return __atomic_load_n(&held_bytes, __ATOMIC_RELAXED); }

bool sp_cu_repack_enabled(void) { return !sp_cu_knobs()->cuda_no_repack; }

/* Q8_0 too, unless the knob SP_CUDA_REPACK_Q8 is off (its original layout,
 * and half the memory). */
static bool repack_q8(void) { return sp_cu_knobs()->cuda_repack_q8; }

static uint32_t block_bytes(uint32_t dt) { return dt == SP_DTYPE_Q8_0 ? 34 : dt == SP_DTYPE_Q4_0 ? 18 : 20; }
static uint32_t quant_bytes(uint32_t dt) { return dt == SP_DTYPE_Q8_0 ? 32 : 16; }
static uint32_t scale_bytes(uint32_t dt) { return dt == SP_DTYPE_Q4_1 ? 4 : 2; }

/* One thread per block: its scale (and min) to sc, its quants to qs. The
 * source is only 2-byte aligned (34-, 18- and 20-byte blocks), so it is
 * read in halves; the quants are written 16 bytes at a time, so a warp's
 * stores are contiguous. */
template <int QB, int SB>
__global__ void repack_kernel(const uint8_t *w, uint32_t stride, uint32_t nb, uint64_t blocks, uint8_t *qs,
                              uint8_t *sc) {
  uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= blocks) return;
  uint64_t n = i / nb, b = i % nb;
  const uint16_t *src = (const uint16_t *)(w + n * stride + b * (QB + SB));
  uint16_t *scd = (uint16_t *)(sc + i * SB);
#pragma unroll
  for (int j = 0; j < SB / 2; j++) scd[j] = src[j];
  __align__(16) uint16_t q[QB / 2];
#pragma unroll
  for (int j = 0; j < QB / 2; j++) q[j] = src[SB / 2 + j];
#pragma unroll
  for (int j = 0; j < QB / 16; j++) ((uint4 *)(qs + i * QB))[j] = ((const uint4 *)q)[j];
}

/* Layouts smaller than this are not shared across processes: exportable
 * memory comes in whole units of the allocation granularity (2 MiB on the
 * H100), which would waste most of a small layout and, measured on
 * SmolLM2's shape (every layout under 1 MiB), slowed decode. From 16 MiB
 * the waste is at most 1/8; on the 1B shape that shares 90% of the
 * repacked bytes (the feed-forward weights and the embeddings). */
#define SHARE_MIN_BYTES ((uint64_t)16 << 20)

/* A copy shared across processes gets large layouts other processes can map. */
static uint8_t *alloc_layout(const sp_resident_copy *copy, uint64_t bytes) {
  int device = 0;
  cudaGetDevice(&device);
  if (copy->cross_process && bytes >= SHARE_MIN_BYTES && sp_cu_vmm_available(device))
    return (uint8_t *)sp_cu_vmm_alloc(device, bytes);
  uint8_t *buf = NULL;
  if (cudaMalloc(&buf, bytes) == cudaSuccess) return buf;
  cudaGetLastError(); /* not sticky: this weight keeps its original layout */
  return NULL;
}

static void free_layout(uint8_t *buf) {
  if (sp_cu_vmm_owns(buf)) sp_cu_vmm_free(buf);
  else cudaFree(buf);
}

/* Room for one more entry in copy's set; NULL when memory is short. */
static repack_set *set_with_room(sp_resident_copy *copy) {
  repack_set *s = (repack_set *)copy->derived;
  if (!s && !(s = (repack_set *)calloc(1, sizeof *s))) return NULL;
  copy->derived = s;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    repack_entry *grown = (repack_entry *)realloc(s->e, cap * sizeof *grown);
    if (!grown) return NULL;
    s->e = grown, s->cap = cap;
  }
  return s;
}

static const repack_entry *find(const repack_set *s, uint64_t offset, uint32_t dtype, uint32_t K, uint32_t N,
                                uint32_t stride) {
  for (size_t i = 0; s && i < s->n; i++) {
    const repack_entry *e = &s->e[i];
    if (e->offset == offset && e->dtype == dtype && e->K == K && e->N == N && e->stride == stride) return e;
  }
  return NULL;
}

static sp_cu_repacked layout_of(const repack_entry *e) {
  uint64_t nb = e->K / SP_CU_QK;
  sp_cu_repacked r = {e->buf, e->buf + (uint64_t)e->N * nb * quant_bytes(e->dtype)};
  return r;
}

/* Makes the entry (mu held). NULL when memory is short. */
static const repack_entry *make(sp_resident_copy *copy, uint64_t offset, uint32_t dtype, uint32_t K, uint32_t N,
                                uint32_t stride, cudaStream_t stream) {
  repack_set *s = set_with_room(copy);
  if (!s) return NULL;
  uint32_t nb = K / SP_CU_QK;
  uint64_t blocks = (uint64_t)N * nb, bytes = blocks * (quant_bytes(dtype) + scale_bytes(dtype));
  uint8_t *buf = alloc_layout(copy, bytes);
  if (!buf) return NULL;
  repack_entry *e = &s->e[s->n];
  bool exportable = sp_cu_vmm_owns(buf);
  *e = (repack_entry){offset, dtype, K, N, stride, buf, bytes, !exportable, false};
  sp_cu_repacked r = layout_of(e);
  const uint8_t *w = (const uint8_t *)copy->dev + offset;
  unsigned grid = (unsigned)((blocks + 255) / 256);
  uint8_t *qs = (uint8_t *)r.qs, *sc = (uint8_t *)r.sc;
  if (dtype == SP_DTYPE_Q8_0) repack_kernel<32, 2><<<grid, 256, 0, stream>>>(w, stride, nb, blocks, qs, sc);
  else if (dtype == SP_DTYPE_Q4_0) repack_kernel<16, 2><<<grid, 256, 0, stream>>>(w, stride, nb, blocks, qs, sc);
  else repack_kernel<16, 4><<<grid, 256, 0, stream>>>(w, stride, nb, blocks, qs, sc);
  if (cudaGetLastError() != cudaSuccess || cudaStreamSynchronize(stream) != cudaSuccess) {
    free_layout(buf); /* other streams may use it as soon as it is listed: wait for it */
    return NULL;
  }
  s->n++;
  __atomic_add_fetch(&held_bytes, bytes, __ATOMIC_RELAXED);
  if (exportable) __atomic_add_fetch(&unexported, 1, __ATOMIC_RELAXED);
  return e;
}

sp_cu_repacked sp_cu_repack_get(sp_resident_copy *copy, pthread_mutex_t *mu, uint64_t offset, uint32_t dtype,
                                uint32_t K, uint32_t N, uint32_t stride, cudaStream_t stream) {
  sp_cu_repacked none = {NULL, NULL};
  /* Q8_0 too: every product of a decode step measured faster repacked on
   * the H100 (the gate/up pair 17.9 -> 15.5 us); its copy doubles the
   * weights' device memory (counted in repacked_bytes). */
  /* the issue-15 types (Q5_0, the K-quants, IQ4) keep their GGUF layout:
   * their kernels (quant_k.cuh) read it as it is */
  bool quant = dtype == SP_DTYPE_Q4_0 || dtype == SP_DTYPE_Q4_1 || (dtype == SP_DTYPE_Q8_0 && repack_q8());
  if (!copy || !quant || K % SP_CU_QK || !N || !sp_cu_repack_enabled()) return none;
  if (offset + (uint64_t)(N - 1) * stride + (uint64_t)(K / SP_CU_QK) * block_bytes(dtype) > copy->len) return none;
  pthread_mutex_lock(mu);
  const repack_entry *e = find((const repack_set *)copy->derived, offset, dtype, K, N, stride);
  if (!e) e = make(copy, offset, dtype, K, N, stride, stream);
  sp_cu_repacked r = e ? layout_of(e) : none;
  pthread_mutex_unlock(mu);
  return r;
}

void sp_cu_repack_drop(void *ctx, sp_resident_copy *copy) {
  repack_set *s = (repack_set *)copy->derived;
  if (!s) return;
  cudaDeviceSynchronize(); /* no kernel may still read them */
  for (size_t i = 0; i < s->n; i++) {
    free_layout(s->e[i].buf);
    if (!s->e[i].imported) __atomic_sub_fetch(&held_bytes, s->e[i].bytes, __ATOMIC_RELAXED);
    if (!s->e[i].exported) __atomic_sub_fetch(&unexported, 1, __ATOMIC_RELAXED);
  }
  free(s->e);
  free(s);
  copy->derived = NULL;
}

uint32_t sp_cu_repack_exports(sp_resident_copy *copy, pthread_mutex_t *mu, sp_derived_desc *out, int *fds,
                              uint32_t max) {
  uint32_t n = 0;
  if (!__atomic_load_n(&unexported, __ATOMIC_RELAXED)) return 0;
  pthread_mutex_lock(mu);
  repack_set *s = (repack_set *)copy->derived;
  for (size_t i = 0; s && i < s->n && n < max; i++) {
    repack_entry *e = &s->e[i];
    if (e->exported) continue;
    e->exported = true; /* tried once: a failed export is not retried */
    __atomic_sub_fetch(&unexported, 1, __ATOMIC_RELAXED);
    int fd = sp_cu_vmm_export(e->buf);
    if (fd < 0) continue;
    out[n] = sp_derived_desc{copy->identity, e->offset, e->dtype, e->K, e->N, e->stride, e->bytes};
    fds[n++] = fd;
  }
  pthread_mutex_unlock(mu);
  return n;
}

bool sp_cu_repack_import(sp_resident_copy *copy, pthread_mutex_t *mu, const sp_derived_desc *d, int fd) {
  uint32_t nb = d->k / SP_CU_QK;
  bool quant = d->dtype == SP_DTYPE_Q4_0 || d->dtype == SP_DTYPE_Q4_1 || d->dtype == SP_DTYPE_Q8_0;
  if (!quant || d->k % SP_CU_QK || !d->n ||
      d->bytes != (uint64_t)d->n * nb * (quant_bytes(d->dtype) + scale_bytes(d->dtype)) ||
      d->offset + (uint64_t)(d->n - 1) * d->stride + (uint64_t)nb * block_bytes(d->dtype) > copy->len)
    return false; /* not a layout of this copy */
  pthread_mutex_lock(mu);
  bool have = find((const repack_set *)copy->derived, d->offset, d->dtype, d->k, d->n, d->stride) != NULL;
  repack_set *s = have ? NULL : set_with_room(copy);
  int device = 0;
  cudaGetDevice(&device);
  uint8_t *buf = s ? (uint8_t *)sp_cu_vmm_import(device, fd, d->bytes) : NULL;
  if (buf) s->e[s->n++] = repack_entry{d->offset, d->dtype, d->k, d->n, d->stride, buf, d->bytes, true, true};
  pthread_mutex_unlock(mu);
  return have || buf;
}
