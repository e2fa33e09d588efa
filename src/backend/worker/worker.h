/*
 * worker.h (private): process isolation. Each actor's backend binding runs
 * in a worker process of its own, so that a fault there (a GPU fault, which
 * on CUDA poisons every context of its process; a crash in a kernel) ends
 * that actor alone.
 *
 * The host keeps Wasmtime and every guest. The guest's linear memory is a
 * memfd (region.h, shared regions) that the worker maps too, at the same
 * address when it is free: kernels in the worker still compute on the
 * guest's own bytes, with no copy. The worker also maps the granted files
 * that the guest mapped, from the same page cache. Commands are validated
 * by the host before they are sent; the worker runs them on an ordinary
 * backend (cpu, cuda or vulkan) through the same interface.
 *
 * The one thing the worker cannot see is a page of a mapped file that the
 * guest wrote (copy-on-write gives the host a private page). Such pages
 * reach the worker when the guest freezes or flushes the range: the
 * coherence rule of frozen ranges (backend.h), which the proxy applies to
 * every file-backed range.
 */
#ifndef SP_WORKER_H
#define SP_WORKER_H

#include "backend/backend.h"

/* The worker executable's file name; found through the knob SP_WORKER_EXE
 * (sp_backend_options.knobs.worker_exe), next to the running executable, or
 * in the build tree. The worker's backend gets the host's knobs with the
 * handshake, never from its own environment. */
#define SP_WORKER_EXE_NAME "samepage-worker"

/* A backend whose bindings each run backend `inner` ("cpu", "cuda",
 * "vulkan", "auto") in a worker process. One worker is started at once, to learn the
 * inner backend's capabilities; it serves the first binding. Errors: the
 * worker executable is missing, or the inner backend cannot be created
 * there (its message). */
sp_error_t *sp_backend_worker_new(const char *inner, const sp_backend_options *opts, unsigned threads,
                                  sp_backend **out);

/* The process id of the worker serving binding, or -1 (tests). */
int sp_backend_worker_pid(const sp_backend *be, void *binding);

/* Serves one host on socket sock until it goes away, or until its HELLO
 * names another protocol version (wire.h); the exit status. */
int sp_worker_serve(int sock);

/* sp_worker_serve speaking protocol version `version` instead of
 * SP_WIRE_VERSION: for tests of the version check (a worker of another
 * build), never for a real worker. */
int sp_worker_serve_version(int sock, uint32_t version);

#endif
