/*
 * vmm.h: device memory that other processes can map (CUDA's virtual memory
 * management, with POSIX file descriptors as the shareable handles).
 *
 * Under process isolation (backend/worker/worker.h) every actor's CUDA
 * context lives in a worker process of its own, and a device copy of a
 * model's weights made by one worker is exported as a file descriptor; the
 * host keeps it and hands it to the next worker that freezes the same
 * identity, which maps the same physical memory instead of uploading its
 * own copy. The memory lives while any process maps it or holds its
 * descriptor, so a worker that faults and ends does not take it from the
 * others. The driver API is reached through dlopen (libcuda.so.1), as
 * cuBLAS is (gemm.h), so nothing new is linked.
 */
#ifndef SP_CUDA_VMM_H
#define SP_CUDA_VMM_H

#include <stdbool.h>
#include <stdint.h>

/* Whether exportable allocations work here (driver entry points found, the
 * device supports POSIX file descriptor handles). Checked once. */
bool sp_cu_vmm_available(int device);

/* len bytes (rounded up to the allocation granularity) of exportable device
 * memory on `device`, mapped for this process; NULL when short. */
void *sp_cu_vmm_alloc(int device, uint64_t len);

/* A new descriptor for allocation dev (the caller closes it), or -1. */
int sp_cu_vmm_export(void *dev);

/* Maps the allocation behind fd (len bytes, made by another process) into
 * this process; NULL on failure. fd stays the caller's. */
void *sp_cu_vmm_import(int device, int fd, uint64_t len);

/* Whether dev is an allocation of this file (sp_cu_vmm_alloc/import). */
bool sp_cu_vmm_owns(const void *dev);

/* Unmaps dev and drops this process's hold on its memory. */
void sp_cu_vmm_free(void *dev);

#endif
