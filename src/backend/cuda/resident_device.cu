/* resident_device.cu: device memory for shared resident copies. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#define _Static_assert static_assert /* samepage_abi.h is C11 (as in cuda_common.cuh) */
#include "core/knobs.h"
#include "backend/cuda/repack.h"
#include "backend/cuda/resident_device.h"
#include "backend/cuda/vmm.h"

/* The knob SP_CUDA_RESIDENT_MAX_MB=N (tests): act as if no resident copy
 * larger than N MiB fits on the device, to exercise the short-memory
 * fallbacks. */
static uint64_t resident_max(void) {
  int64_t mb = sp_cu_knobs()->cuda_resident_max_mb;
  return mb < 0 ? UINT64_MAX : (uint64_t)mb << 20;
}

/* In a worker process (process isolation), copies are made exportable so
 * that the next worker freezing the same model maps them (vmm.h). */
static bool shares_across_processes(int device) {
  static int on = -1;
  if (on < 0) on = sp_cu_worker_process() && !sp_cu_knobs()->cuda_no_vmm && sp_cu_vmm_available(device);
  return on == 1;
}

static int current_device(void) {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}

static void *device_alloc(void *ctx, uint64_t len) {
  if (len > resident_max()) return NULL;
  if (shares_across_processes(current_device())) return sp_cu_vmm_alloc(current_device(), len);
  void *dev = NULL;
  if (cudaMalloc(&dev, len) == cudaSuccess) return dev;
  cudaGetLastError(); /* not sticky: clear it, the caller stays zero-copy */
  return NULL;
}

static void device_release(void *ctx, void *dev) {
  if (sp_cu_vmm_owns(dev)) sp_cu_vmm_free(dev);
  else cudaFree(dev);
}

static int device_export(void *ctx, void *dev) { return sp_cu_vmm_owns(dev) ? sp_cu_vmm_export(dev) : -1; }

static void *device_import(void *ctx, int fd, uint64_t len) {
  int device = current_device();
  return shares_across_processes(device) ? sp_cu_vmm_import(device, fd, len) : NULL;
}

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
  d.export_fd = device_export;
  d.import_fd = device_import;
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
