/* resident_device.cu: device memory for shared resident copies. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#define _Static_assert static_assert /* samepage_abi.h is C11 (as in cuda_common.cuh) */
#include "backend/cuda/repack.h"
#include "backend/cuda/resident_device.h"

/* SP_CUDA_RESIDENT_MAX_MB=N (tests): act as if no resident copy larger
 * than N MiB fits on the device, to exercise the short-memory fallbacks. */
static uint64_t resident_max(void) {
  static long long mb = -2;
  if (mb == -2) {
    const char *env = getenv("SP_CUDA_RESIDENT_MAX_MB");
    mb = env && *env ? atoll(env) : -1;
  }
  return mb < 0 ? UINT64_MAX : (uint64_t)mb << 20;
}

static void *device_alloc(void *ctx, uint64_t len) {
  if (len > resident_max()) return NULL;
  void *dev = NULL;
  if (cudaMalloc(&dev, len) == cudaSuccess) return dev;
  cudaGetLastError(); /* not sticky: clear it, the caller stays zero-copy */
  return NULL;
}

static void device_release(void *ctx, void *dev) { cudaFree(dev); }

/* A device-to-device cudaMemcpy does not wait for the copy, and the
 * bindings' streams are non-blocking, so wait here: a kernel launched right
 * after must see the whole duplicate. */
static bool device_copy(void *ctx, void *dst, const void *src, uint64_t len) {
  return cudaMemcpy(dst, src, len, cudaMemcpyDeviceToDevice) == cudaSuccess &&
         cudaStreamSynchronize(cudaStreamLegacy) == cudaSuccess;
}

sp_resident_device sp_cu_resident_device(void) {
  sp_resident_device d = {};
  d.alloc = device_alloc;
  d.release = device_release;
  d.copy = device_copy;
  d.drop_derived = sp_cu_repack_drop;
  return d;
}

bool sp_cu_device_memory(uint64_t *used, uint64_t *total) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  *used = total_bytes - free_bytes, *total = total_bytes;
  return true;
}
