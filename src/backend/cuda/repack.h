/*
 * repack.h: quantized weights in a layout made for the GPU's loads.
 *
 * GGUF blocks put a 2-byte scale in front of each block's quants (34 bytes
 * for Q8_0, 18 for Q4_0, 20 for Q4_1), so a kernel can read the quants only
 * 2 bytes at a time: five or more load instructions per lane per block,
 * which caps a matrix-vector product near 1.9 TB/s on an H100. The first
 * time a list multiplies by a quantized weight that lies in a resident
 * copy, the backend makes a second device copy of that tensor with the
 * quants of each row contiguous and 16-byte aligned, and the scales in an
 * array of their own; the matrix-vector kernels then read 16 bytes per
 * load. The copy is derived from the resident copy's bytes, belongs to it
 * (shared with it across actors), is dropped when those bytes change
 * (flush) and freed with it; its bytes are counted (sp_cu_repack_bytes).
 * Any list that multiplies by the weight makes it, a prompt's included, so
 * the first decode step finds it ready. SP_CUDA_NO_REPACK=1 keeps the
 * original layout.
 */
#ifndef SP_CUDA_REPACK_H
#define SP_CUDA_REPACK_H

#include <pthread.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/resident_cache.h"

/* A weight's repacked layout: row n's quants at qs + n * (K / 32) * QB, its
 * scales at sc + n * (K / 32) * SB (QB, SB: 32, 2 for Q8_0; 16, 2 for Q4_0;
 * 16, 4 (scale, min) for Q4_1). NULL qs: none. */
typedef struct sp_cu_repacked {
  const uint8_t *qs, *sc;
} sp_cu_repacked;

/* The repacked layout of the weight [K, N] (row stride `stride` bytes,
 * dtype Q4_0, Q4_1 or Q8_0 (not with SP_CUDA_REPACK_Q8=0)) at byte `offset` of copy, made on first use
 * (with `mu` held; the stream is waited for). {NULL} when the layout does
 * not apply or device memory is short. */
sp_cu_repacked sp_cu_repack_get(sp_resident_copy *copy, pthread_mutex_t *mu, uint64_t offset, uint32_t dtype,
                                uint32_t K, uint32_t N, uint32_t stride, cudaStream_t stream);

/* Process isolation (vmm.h): the layouts of a copy shared across processes
 * are made in exportable memory. sp_cu_repack_exports hands out, once
 * each, those made here and not yet handed out (at most max; a new
 * descriptor each in fds); sp_cu_repack_import maps one another process
 * made, for the same copy (false when it does not fit the copy or cannot
 * be mapped: the layout is then made here when needed). */
uint32_t sp_cu_repack_exports(sp_resident_copy *copy, pthread_mutex_t *mu, sp_derived_desc *out, int *fds,
                              uint32_t max);
bool sp_cu_repack_import(sp_resident_copy *copy, pthread_mutex_t *mu, const sp_derived_desc *desc, int fd);

/* Frees copy->derived (resident_cache's drop_derived). */
void sp_cu_repack_drop(void *ctx, sp_resident_copy *copy);

/* Device bytes held by repacked layouts in this process now. */
uint64_t sp_cu_repack_bytes(void);

/* Whether repacking is on (SP_CUDA_NO_REPACK unset). */
bool sp_cu_repack_enabled(void);

#endif
