/*
 * cuda_backend.h: the CUDA backend's one public entry point.
 *
 * libsamepage_cuda.so exports only sp_backend_cuda_new (see backend.h's
 * sp_backend_new_fn); runtime.c finds it with dlopen/dlsym, so the main
 * binary runs on machines without CUDA. docs/CUDA.md has the design.
 */
#ifndef SP_CUDA_BACKEND_H
#define SP_CUDA_BACKEND_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the CUDA backend on device 0 (or $SP_CUDA_DEVICE). On success the
 * caller owns *out (free with sp_backend_free). Errors: no CUDA device, a
 * driver too old for this runtime, or any CUDA call failing at start. */
__attribute__((visibility("default"))) sp_error_t *sp_backend_cuda_new(const sp_backend_options *opts,
                                                                       sp_backend **out);

#ifdef __cplusplus
}
#endif

#endif
