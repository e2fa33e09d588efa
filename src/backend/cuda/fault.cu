/* fault.cu: see fault.h. */
#include <atomic>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/knobs.h"
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/fault.h"

bool sp_cu_fault_is_sticky(cudaError_t e) {
  switch (e) {
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorHardwareStackError:
  case cudaErrorAssert:
  case cudaErrorLaunchTimeout:
  case cudaErrorECCUncorrectable:
  case cudaErrorContextIsDestroyed:
  case cudaErrorDevicesUnavailable: return true;
  default: return false;
  }
}

#if SP_TEST_HOOKS_BUILT
/* Test builds only (knobs.h): a release library holds no kernel that
 * writes to an invalid address. */
static __global__ void write_invalid(int *p) { p[threadIdx.x] = 1; }

bool sp_cu_fault_inject(cudaStream_t stream) {
  static long target = -1;
  static std::atomic<long> lists{0};
  if (target < 0) target = (long)sp_cu_knobs()->cuda_inject_fault;
  if (target <= 0 || lists.fetch_add(1) + 1 != target) return false;
  write_invalid<<<1, 32, 0, stream>>>((int *)(uintptr_t)0x10);
  return true;
}

bool sp_cu_fault_sync_each(void) { return sp_cu_knobs()->cuda_sync_each; }
#else
bool sp_cu_fault_inject(cudaStream_t stream) { return false; }
bool sp_cu_fault_sync_each(void) { return false; }
#endif
