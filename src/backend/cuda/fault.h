/*
 * fault.h: what a GPU fault does to a process, and what we do about it.
 *
 * A kernel that faults (an illegal address, a trap) poisons the CUDA
 * context, and on this driver every other context of the process with it:
 * measured on the H100 (driver 580): after a fault in one driver-API
 * context, a second context's launches and copies fail with the same error
 * and no new context can be created (scripts/device-fault-probe.cu). So
 * actors sharing a process cannot be isolated from one another's GPU
 * faults; separate processes can (each `samepage run` is one).
 *
 * What the backend guarantees instead: the actor whose list faulted gets an
 * error naming the fault (and the command, with SP_CUDA_SYNC_EACH=1, which
 * waits after every command); from then on every CUDA call of every actor
 * answers at once with an error saying the device is lost for this process
 * and why, instead of touching the dead context; the process and its
 * actors on other backends keep running.
 *
 * SP_CUDA_INJECT_FAULT=N makes the N-th list the backend enqueues (counted
 * from 1, across the process) launch a kernel that writes to an invalid
 * address, so tests can show all this on a real device. It and
 * SP_CUDA_SYNC_EACH are test hooks, compiled only into test builds
 * (knobs.h); elsewhere both functions below answer false.
 */
#ifndef SP_CUDA_FAULT_H
#define SP_CUDA_FAULT_H

#include <cuda_runtime.h>
#include <stdbool.h>

/* Whether e leaves the context unusable (the sticky errors). */
bool sp_cu_fault_is_sticky(cudaError_t e);

/* Enqueues the injected fault if this is the list SP_CUDA_INJECT_FAULT
 * names; true when it did. */
bool sp_cu_fault_inject(cudaStream_t stream);

/* SP_CUDA_SYNC_EACH=1: wait after every command, so a fault names it. */
bool sp_cu_fault_sync_each(void);

#endif
