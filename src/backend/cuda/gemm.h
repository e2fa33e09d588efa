/*
 * gemm.h: prefill's matrix products (M > 8 activation rows) through cuBLAS,
 * when the machine has it.
 *
 * A prompt of hundreds of tokens is a matrix-matrix product per weight, the
 * work tensor cores are for; our own 64 x 64 WMMA tiles reach a fraction of
 * what the vendor library does. cuBLAS is loaded at run time (dlopen of
 * libcublas, as libsamepage_cuda.so itself is), so the backend keeps
 * working where it is missing: the tiles run instead. Quantized weights are
 * expanded to f16 in device scratch (in row chunks, a few tens of MB at a
 * time) and activations converted to f16 (or bf16 for bf16 weights); the
 * sums are f32, as the tiles'. One handle and one set of scratch serve
 * every actor of the backend. SP_CUDA_NO_CUBLAS=1 keeps the tiles.
 */
#ifndef SP_CUDA_GEMM_H
#define SP_CUDA_GEMM_H

#include "backend/cuda/cuda_common.cuh"

typedef struct sp_cu_gemm sp_cu_gemm;

/* Whether the list has products that would run here. */
bool sp_cu_gemm_wanted(const sp_cmd *cmds, uint32_t count);

/* For a list sp_cu_gemm_wanted said yes to, makes *g (the backend's one)
 * ready for its products: handle,
 * workspace, scratch; before enqueueing, since it may allocate. NULL *g
 * with no error: cuBLAS is not available, and the tiles run. Lists with
 * such products are not captured as graphs (the scratch is shared across
 * streams through an event, which a capture cannot take part in). */
cudaError_t sp_cu_gemm_reserve(sp_cu_gemm **g, const sp_cmd *cmds, uint32_t count);

/* Runs c (M > 8 rows, weights of type dt) through cuBLAS on c->stream;
 * cudaErrorNotSupported when it cannot (then the caller's tiles run). */
cudaError_t sp_cu_gemm_run(sp_cu_gemm *g, const sp_cu_cmd *c);

void sp_cu_gemm_free(sp_cu_gemm *g);

/* Loads cuBLAS and runs one small product on a background thread, so that
 * a process's first prompt does not wait for the library (about 90 ms on
 * the H100, measured): started when the backend is created, while the
 * guest loads its model. join waits for it (before the backend goes). */
void sp_cu_gemm_prewarm_start(int device);
void sp_cu_gemm_prewarm_join(void);

#endif
