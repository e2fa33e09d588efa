/*
 * resident_device.h: the CUDA side of resident_cache.h (device memory for
 * shared resident copies) and the device-memory figure for benchmarks.
 */
#ifndef SP_CUDA_RESIDENT_DEVICE_H
#define SP_CUDA_RESIDENT_DEVICE_H

#include "backend/cuda/resident_cache.h"

/* cudaMalloc, cudaFree and device-to-device copies on the current device. */
sp_resident_device sp_cu_resident_device(void);

/* Device memory in use (by every process) and the device's size. */
bool sp_cu_device_memory(uint64_t *used, uint64_t *total);

#endif
