/*
 * backend.h (private): the interface every compute backend implements.
 *
 * A backend computes on an actor's linear memory in place. It first adopts
 * the actor's region (CPU: nothing to do; CUDA: register and map it), follows
 * it as it grows, and runs validated command lists on it. Callers never use
 * the slots directly: the sp_backend_* wrappers check handles and supply
 * defaults, so a backend may assume well-formed, validated input.
 *
 * The interface comes in three layers (docs/BACKENDS.md), each a table of
 * function pointers with a version of its own:
 *  1. struct sp_backend_i, the core: every backend fills it (capabilities,
 *     adopt, grow, supports, submit, wait, device_base, release, destroy).
 *     A backend that computes on guest memory where it lies, as the CPU
 *     does, needs nothing more.
 *  2. struct sp_backend_memory_i (optional): for a device with memory of
 *     its own: frozen copies, device-local mirrors, the file-backed ranges
 *     it must not pin, residency totals and device memory. NULL on the CPU.
 *  3. struct sp_backend_sharing_i (optional): device copies shared across
 *     processes, for a backend that runs in a worker process (process
 *     isolation, backend/worker/worker.h). Only CUDA has it.
 * Within layers 2 and 3 each slot is optional too; the wrapper's default
 * is stated on the slot.
 *
 * Guarantees given to backends by the wrappers:
 *  - every command passed to submit() has passed sp_validate_cmd (strides
 *    normalized, bounds inside the committed size the backend last saw);
 *  - submit() and wait() for one binding are never called concurrently;
 *  - grow() is called before the guest can touch newly committed bytes.
 */
#ifndef SP_BACKEND_H
#define SP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/knobs.h"
#include "core/region.h"
#include "samepage.h"
#include "samepage_abi.h"

/* Versions. Each table carries its own in its first field, and
 * sp_backend_check refuses a table whose version is not the one this
 * header describes: bump a table's version whenever its slots, their
 * order or their contracts change. SP_BACKEND_OPS_VERSION is the loading
 * contract: the layout of struct sp_backend and sp_backend_options and the
 * constructor's signature; a library built against another one refuses
 * the options it is given (8: one flat table, before the layers; 9: before
 * the knobs, struct sp_knobs in knobs.h, whose layout this version covers). */
#define SP_BACKEND_OPS_VERSION 12
#define SP_BACKEND_CORE_VERSION 2    /* struct sp_backend_i (2: submit says "same list") */
#define SP_BACKEND_MEMORY_VERSION 1  /* struct sp_backend_memory_i */
#define SP_BACKEND_SHARING_VERSION 1 /* struct sp_backend_sharing_i */
#define SP_BACKEND_BATCHING_VERSION 1 /* struct sp_backend_batching_i */

/* The memory a backend binding computes on: guest address a is base + a. */
typedef struct sp_memory_view {
  uint8_t *base;      /* start of linear memory (page aligned) */
  size_t committed;   /* bytes the guest may access */
  size_t reserved;    /* bytes of address space that will never move */
  bool shared;        /* the committed bytes are memfd `fd` at offset 0,
                         mapped shared (process isolation maps it again in
                         a worker); false for plain anonymous memory */
  int fd;
  size_t host_budget; /* most bytes of scratch (host memory, or device memory
                         on a GPU: quantized activations, staging) the
                         backend may hold for this binding beyond the
                         guest's memory; 0 = the backend's default. The
                         actor sets it from its memory budget
                         (memory_budget.h) on adopt and on every grow */
} sp_memory_view;

/* The view of a region as it stands (shared when it is a memfd). */
static inline sp_memory_view sp_region_view(const sp_region *r) {
  sp_memory_view v = {r->base, r->committed, r->reserved, r->fd >= 0, r->fd, 0}; /* C and C++ (.cu) alike */
  return v;
}

/* Capabilities, as named booleans so nobody probes for NULL slots. */
typedef struct sp_backend_caps {
  bool zero_copy;      /* kernels read and write guest memory itself */
  bool unified_memory; /* the device reads host memory at full speed */
  bool no_file_maps;   /* file-backed mappings must not enter an adopted
                          region (CUDA without residency: kernels would have
                          to read them in place, and registering file-backed
                          pages can hang), so blob_map answers
                          SP_E_UNSUPPORTED and guests fall back to blob_read
                          into anonymous memory */
  bool residency;      /* freeze() makes device-resident copies */
  bool device_local;   /* device_local() keeps mirrors on the device */
  bool shares_frozen;  /* freeze() with a content identity shares one device
                          copy among bindings: worth computing the identity */
} sp_backend_caps;

/* A guest range that is a file-backed mapping (blob_map), page-rounded:
 * bytes [file_offset, file_offset + len) of the open file fd (-1 for a
 * range about to be mapped, in a call with done false). */
typedef struct sp_file_range {
  uint64_t addr, len;
  int fd;
  uint64_t file_offset;
} sp_file_range;

/* A device layout derived from a frozen copy shared across processes (a
 * weight's repacked layout, backend/cuda/repack.h), as one process made
 * it, for another that maps the same copy to map too. */
typedef struct sp_derived_desc {
  uint64_t identity;          /* of the frozen copy it derives from */
  uint64_t offset;            /* the weight's byte offset in that copy */
  uint32_t dtype, k, n, stride; /* the weight's dtype, shape and row stride */
  uint64_t bytes;             /* the layout's size */
} sp_derived_desc;

/* What residency (frozen device-resident copies and device-local mirrors)
 * costs, summed over the backend's bindings since it was created. */
typedef struct sp_residency_stats {
  uint64_t bytes;       /* device bytes held by frozen copies now */
  uint64_t copies;      /* freeze and flush copies of frozen ranges made */
  double ms;            /* wall time spent making them */
  uint64_t shared_hits; /* freezes (and restores) served by a copy already on
                           the device, under the same content identity */
  uint64_t shared_bytes; /* device bytes not held twice because of sharing,
                            now: (holders - 1) x length, summed over copies */
  uint64_t local_bytes; /* device bytes held by device-local mirrors now */
  uint64_t transfers;   /* device-local uploads (declare, flush) and syncs */
  uint64_t transfer_bytes; /* bytes those moved, both directions */
  double transfer_ms;   /* wall time spent moving them */
  uint64_t repacked_bytes; /* device bytes of weights re-laid for the GPU's loads (repack.h) */
} sp_residency_stats;

/* ---- layer 1: the core, which every backend implements ---- */

struct sp_backend_i {
  /* SP_BACKEND_CORE_VERSION; checked when the backend is registered. */
  uint32_t version;
  /* Short name used by --backend and in messages ("cpu", "cuda", "vulkan"). */
  const char *name;
  /* Capabilities of this backend instance. A capability that promises a
   * slot of another layer (residency, device_local, shares_frozen: the
   * memory layer) needs that layer (sp_backend_check).
   * (optional): default no capabilities. */
  sp_backend_caps (*caps)(void *ctx);
  /* Starts computing on a region; returns an opaque binding in *binding. */
  sp_error_t *(*adopt)(void *ctx, const sp_memory_view *view, void **binding);
  /* The region's committed prefix grew to view->committed (same base).
   * (optional): default does nothing, as for the CPU. */
  sp_error_t *(*grow)(void *ctx, void *binding, const sp_memory_view *view);
  /* Whether a validated command can run here (op, dtypes). */
  bool (*supports)(void *ctx, const sp_cmd *cmd);
  /* Runs (or enqueues) validated commands in order. cmds is host memory.
   * same: cmds are byte for byte the list of this binding's previous
   * submit, and that submit succeeded. The runtime decides it once per
   * submit (from its list cache, never by guessing), so a backend that
   * replays a recorded list (a CUDA graph, the worker's kept copy) needs no
   * comparison of its own; false is always a safe answer. */
  sp_error_t *(*submit)(void *ctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same);
  /* Blocks until everything submitted on binding has finished.
   * (optional): default does nothing, for backends whose submit is synchronous. */
  sp_error_t *(*wait)(void *ctx, void *binding);
  /* The address kernels use for guest address 0 of binding (CUDA: the
   * device pointer of the mapped region).
   * (optional): default, the base of the view given to adopt(). */
  void *(*device_base)(void *ctx, void *binding);
  /* Stops computing on a region; the binding is gone afterwards. */
  void (*release)(void *ctx, void *binding);
  /* Frees the backend instance. (optional): default nothing to free. */
  void (*destroy)(void *ctx);
};

/* ---- layer 2 (optional): memory of the device's own ----
 * A backend whose kernels read guest memory where it lies (the CPU) leaves
 * it NULL: every wrapper then does what such a backend would do. */

struct sp_backend_memory_i {
  /* SP_BACKEND_MEMORY_VERSION; checked when the backend is registered. */
  uint32_t version;
  /* The guest declared guest bytes [addr, addr + len) immutable (weights).
   * A discrete GPU may copy them to device memory once, and kernels reading a
   * tensor wholly inside the range then read the copy. The caller guarantees
   * the range is committed and that no later command writes it (validator).
   * A backend that cannot afford the copy warns and keeps reading guest
   * memory. (optional): default does nothing (the range stays zero-copy).
   * identity: 0, or a nonzero name for exactly these bytes that the runtime
   * has proved (range_identity.h: bytes of one granted file): bindings
   * freezing the same identity may share one device copy.
   * Freezing a range equal to one the binding already holds re-declares it
   * (a restore rewrote the bytes): the copy is refreshed, or kept as it is
   * when it already holds the same nonzero identity. */
  sp_error_t *(*freeze)(void *ctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity);
  /* The guest rewrote bytes [addr, addr + len) of a frozen or device-local
   * range with plain stores; refresh any device copy (the coherence rule: no
   * flush, stale reads). A copy shared with other bindings is never written:
   * the flushing binding gets its own first (copy-on-flush). The caller
   * guarantees the bytes lie inside one declared range. (optional): default
   * does nothing. */
  sp_error_t *(*flush)(void *ctx, void *binding, uint64_t addr, uint64_t len);
  /* The guest declared [addr, addr + len) device-local (activations, KV
   * cache): its authoritative copy may live on the device between submits,
   * and commands read and write it there. A discrete GPU makes a mirror and
   * uploads the current bytes once. The caller guarantees the range is
   * committed, overlaps no frozen or device-local range, and that every
   * tensor of a later command lies wholly inside or wholly outside it
   * (validator). A backend that cannot afford the mirror warns and keeps
   * computing on guest memory. (optional): default does nothing (the host
   * memory is the device memory, as on the CPU). */
  sp_error_t *(*device_local)(void *ctx, void *binding, uint64_t addr, uint64_t len);
  /* Copies bytes [addr, addr + len) of one device-local range back to guest
   * memory, after everything submitted has finished (the guest is about to
   * read them, or a snapshot is taken). (optional): default does nothing. */
  sp_error_t *(*sync)(void *ctx, void *binding, uint64_t addr, uint64_t len);
  /* A restore: bytes [addr, addr + len), inside one device-local range,
   * become zeros. A backend holding a mirror for them zeroes the mirror
   * alone and sets *done: guest memory there is left as it was, not
   * authoritative until sync(). Otherwise *done stays false and the caller
   * zeroes guest memory. (optional): default not done. */
  sp_error_t *(*local_zero)(void *ctx, void *binding, uint64_t addr, uint64_t len, bool *done);
  /* The runtime is changing which guest ranges are file-backed mappings
   * (blob_map, a restore). files lists all of them as they will be after
   * the change. Called with done false before the first mapping changes
   * (a backend that pins guest pages unpins those a file range will cover:
   * the mapping replaces them) and with done true after (it pins what is
   * anonymous again). Kernels never read a file-backed range in place: a
   * list whose tensors touch one outside a resident copy is refused.
   * (optional): default does nothing, as for the CPU. */
  sp_error_t *(*file_ranges)(void *ctx, void *binding, const sp_file_range *files, uint32_t n, bool done);
  /* Residency totals. (optional): default all zero. */
  void (*residency)(void *ctx, sp_residency_stats *out);
  /* Device memory in use (by anyone) and the device's size, in bytes.
   * (optional): default false, a backend without device memory. */
  bool (*device_memory)(void *ctx, uint64_t *used, uint64_t *total);
};

/* ---- layer 3 (optional): device memory shared across processes ----
 * For a backend that runs inside a worker process (process isolation,
 * backend/worker/worker.h), so that workers of one host map one device
 * copy of a model instead of each making its own. Only worker_serve.c
 * calls these wrappers. */

struct sp_backend_sharing_i {
  /* SP_BACKEND_SHARING_VERSION; checked when the backend is registered. */
  uint32_t version;
  /* freeze(), with the device copy shared across processes. import_fd >= 0
   * is a copy of identity's bytes that another process exported: map it
   * rather than upload. *export_fd gets a new descriptor (the caller closes
   * it) for a copy made here under a nonzero identity, for the host to hand
   * to the next process; -1 when there is none. (optional): default the
   * memory layer's freeze(), with nothing shared. */
  sp_error_t *(*freeze_shared)(void *ctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                               int import_fd, int *export_fd);
  /* Derived layouts this binding made, since the last call, from frozen
   * copies shared across processes: up to max of them, each exported as a
   * new descriptor in fds (the caller closes them). (optional): none. */
  uint32_t (*derived_exports)(void *ctx, void *binding, sp_derived_desc *out, int *fds, uint32_t max);
  /* Maps a layout another process derived (fd) from the shared copy of
   * desc->identity that this binding holds, so it need not make its own.
   * Errors: no such copy held, or the mapping failed; the binding then
   * makes the layout itself when it needs it. (optional): ignored. */
  sp_error_t *(*derived_import)(void *ctx, void *binding, const sp_derived_desc *desc, int fd);
};

/* ---- layer 4 (optional): several actors' lists run as one ----
 *
 * The runtime's batcher (runtime/batcher.c) gathers lists that actors
 * submit at about the same time and hands them over together. */

/* The most lists one submit_batch call gets. */
#define SP_BATCH_MAX 64

/* One actor's validated list in a batch. */
typedef struct sp_batch_item {
  void *binding;       /* the actor's binding */
  const sp_cmd *cmds;  /* its validated commands (host memory) */
  uint32_t count;
  bool same;           /* as submit()'s `same` */
  const uint64_t *weight_keys; /* NULL, or one per command: nonzero for a
                          product whose weights the runtime proved to be the
                          same bytes as every other item's product with the
                          same key (range_identity.h); 0 unknown */
  sp_error_t *err;     /* out: this list's error, NULL when it all ran */
} sp_batch_item;

struct sp_backend_batching_i {
  /* SP_BACKEND_BATCHING_VERSION; checked when the backend is registered. */
  uint32_t version;
  /* Runs items[0..n) (n <= SP_BATCH_MAX, distinct bindings), each list in
   * its own order, and returns when all have finished (wait() is not
   * needed after it). Promises, whatever the lists hold:
   *  - isolation: a list reads and writes only its own binding's memory
   *    and scratch; an error in one list ends that list alone;
   *  - batch invariance: every byte a list writes is what submit() of that
   *    list alone would write, bit for bit, whatever the other lists and
   *    their data.
   * The saving comes from lists of the same shape (the batcher groups them
   * so): the same op at each index, products against the same weights.
   * Products of several items with one nonzero weight key may read the
   * weights of any one of them: the runtime proved the bytes equal. */
  void (*submit_batch)(void *ctx, sp_batch_item *items, uint32_t n);
};

/* A backend instance: its core by value, its optional layers (static
 * tables, NULL when absent) and its private context. */
typedef struct sp_backend {
  struct sp_backend_i iface;
  const struct sp_backend_memory_i *memory;   /* NULL: none (the CPU) */
  const struct sp_backend_sharing_i *sharing; /* NULL: none */
  void *ctx;
  const struct sp_backend_batching_i *batching; /* NULL: none (lists run one by one) */
} sp_backend;

/* ---- constructors ---- */

/* Creates the CPU backend with `threads` workers (0 = one per core) and
 * the best kernel table of this CPU. */
sp_error_t *sp_backend_cpu_new(unsigned threads, sp_backend **out);
/* sp_backend_cpu_new with the kernel table capped at simd ("generic",
 * "avx2", "avx512", "neon"; NULL or "auto" = the best: SP_CPU_SIMD). */
sp_error_t *sp_backend_cpu_new_simd(unsigned threads, const char *simd, sp_backend **out);

/* Whether a CPU backend would run cmd, without creating one. */
bool sp_cpu_supports(const sp_cmd *cmd);

/* Options of backends loaded from a shared library (CUDA, Vulkan). */
typedef struct sp_backend_options {
  uint32_t version;     /* SP_BACKEND_OPS_VERSION (the loading contract) */
  bool residency;       /* honour freeze() with device copies ("weights") */
  bool graphs;          /* replay repeated command lists as CUDA graphs */
  bool worker_process;  /* this process is a samepage-worker serving one actor
                           (process isolation): errors are worded for one
                           actor, and resident copies are made shareable
                           with the other workers */
  struct sp_knobs knobs; /* the environment's settings, parsed once by the
                            program (knobs.h); sp_knobs_defaults for none.
                            sp_backend_load reads cuda_lib, vulkan_lib,
                            verbose and cpu_simd; each device backend its
                            own cuda_* or vulkan_* fields */
} sp_backend_options;

/* The constructor a backend library exports (SP_BACKEND_CUDA_SYMBOL,
 * SP_BACKEND_VULKAN_SYMBOL).
 * Errors: no device, driver or runtime failure (the message says which). */
typedef sp_error_t *(*sp_backend_new_fn)(const sp_backend_options *opts, sp_backend **out);
#define SP_BACKEND_CUDA_SYMBOL "sp_backend_cuda_new"
#define SP_BACKEND_CUDA_LIBRARY "libsamepage_cuda.so"
#define SP_BACKEND_VULKAN_SYMBOL "sp_backend_vulkan_new"
#define SP_BACKEND_VULKAN_LIBRARY "libsamepage_vulkan.so"

/* The path of `file` in the running executable's directory, into path
 * (cap bytes); false when it cannot be formed. */
bool sp_path_beside_exe(const char *file, char *path, size_t cap);

/* Creates backend `name` ("cpu", "cuda", "vulkan", or "auto"/NULL: CUDA
 * when its library and a device are there, else the CPU; auto never picks
 * Vulkan) in this process; threads is the CPU backend's worker count
 * (0 = one per core). opts NULL: the
 * defaults (residency, graphs, every knob at its default).
 * Errors: unknown name, CUDA or Vulkan asked for and not available. */
sp_error_t *sp_backend_load(const char *name, const sp_backend_options *opts, unsigned threads, sp_backend **out);

/* Registers a backend a constructor made, before anyone uses it: every
 * table's version is the one this header describes, the core's required
 * slots (adopt, supports, submit, release) are there, and the
 * capabilities promise no layer the backend lacks. sp_backend_load and the
 * process-isolation proxy call it; a backend it refuses is not used.
 * Errors name the backend, the table and both versions. */
sp_error_t *sp_backend_check(const sp_backend *be);

/* ---- wrappers: the only way the rest of samepage calls a backend ---- */

const char *sp_backend_name(const sp_backend *be);
sp_backend_caps sp_backend_caps_of(const sp_backend *be);
sp_error_t *sp_backend_adopt(sp_backend *be, const sp_memory_view *view, void **binding);
sp_error_t *sp_backend_grow(sp_backend *be, void *binding, const sp_memory_view *view);
bool sp_backend_supports(sp_backend *be, const sp_cmd *cmd);
sp_error_t *sp_backend_submit(sp_backend *be, void *binding, const sp_cmd *cmds, uint32_t count, bool same);
sp_error_t *sp_backend_wait(sp_backend *be, void *binding);
/* Whether be runs several bindings' lists as one (layer 4). */
bool sp_backend_batches(const sp_backend *be);
/* Runs a batch (layer 4); without that layer each item is submitted and
 * waited for in turn. Each item's err is set. */
void sp_backend_submit_batch(sp_backend *be, sp_batch_item *items, uint32_t n);
void *sp_backend_device_base(sp_backend *be, void *binding, const sp_memory_view *adopted);
void sp_backend_release(sp_backend *be, void *binding);
void sp_backend_free(sp_backend *be);
/* the memory layer's (defaults when the backend has none) */
sp_error_t *sp_backend_freeze(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity);
sp_error_t *sp_backend_flush(sp_backend *be, void *binding, uint64_t addr, uint64_t len);
sp_error_t *sp_backend_device_local(sp_backend *be, void *binding, uint64_t addr, uint64_t len);
sp_error_t *sp_backend_sync(sp_backend *be, void *binding, uint64_t addr, uint64_t len);
sp_error_t *sp_backend_local_zero(sp_backend *be, void *binding, uint64_t addr, uint64_t len, bool *done);
sp_error_t *sp_backend_file_ranges(sp_backend *be, void *binding, const sp_file_range *files, uint32_t n, bool done);
sp_residency_stats sp_backend_residency(const sp_backend *be);
bool sp_backend_device_memory(const sp_backend *be, uint64_t *used, uint64_t *total);
/* the sharing layer's (defaults when the backend has none) */
sp_error_t *sp_backend_freeze_shared(sp_backend *be, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                                     int import_fd, int *export_fd);
uint32_t sp_backend_derived_exports(sp_backend *be, void *binding, sp_derived_desc *out, int *fds, uint32_t max);
sp_error_t *sp_backend_derived_import(sp_backend *be, void *binding, const sp_derived_desc *desc, int fd);

#endif
