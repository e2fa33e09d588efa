/*
 * samepage.h: the embedding API.
 *
 * samepage runs sandboxed WebAssembly guests whose linear memory is the
 * accelerator's memory: the guest writes tensors into its own memory, the
 * host validates command lists and runs kernels on those same bytes, and the
 * guest reads results through the same pointer.
 *
 * Objects:
 *  - sp_runtime_t: one Wasmtime engine and one compute backend, shared by
 *    every actor it creates. Thread-safe to create actors from.
 *  - sp_actor_t: one guest instance with its own memory region, bound to
 *    the runtime's backend. Use an actor from one thread at a time.
 *
 * Errors follow Wasmtime's convention: a fallible function returns an owned
 * sp_error_t * (NULL on success) and writes results to trailing out-params
 * only on success. Free errors with sp_error_free.
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samepage_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---- */

typedef struct sp_error sp_error_t;

/* The error's message; borrowed, valid until sp_error_free. NULL -> "no error". */
const char *sp_error_message(const sp_error_t *err);

/* What kind of failure an error is, for callers that act on it (the CLI
 * maps kinds to exit codes) instead of matching message text. */
typedef enum sp_error_kind_t {
  SP_ERROR_OTHER = 0,   /* none of the below (an internal or backend failure) */
  SP_ERROR_TRAP,        /* the guest trapped (unreachable, out-of-bounds access, ...) */
  SP_ERROR_TIMEOUT,     /* a wall-clock or CPU time limit ran out (timeout_ms, cpu_timeout_ms) */
  SP_ERROR_LIMIT,       /* over a limit: the memory budget, module limits, list caps */
  SP_ERROR_INVALID,     /* bad input: a malformed module, file, command list or argument */
  SP_ERROR_DEVICE_LOST, /* the accelerator, or the worker process running it, is gone */
  SP_ERROR_IO           /* a file could not be opened, read or written */
} sp_error_kind_t;

/* The error's kind; NULL -> SP_ERROR_OTHER. */
sp_error_kind_t sp_error_kind(const sp_error_t *err);
/* Frees an error (NULL is fine). */
void sp_error_free(sp_error_t *err);

/* ---- runtime ---- */

typedef struct sp_runtime sp_runtime_t;

/* The environment's settings (src/core/knobs.h, docs/KNOBS.md), parsed once by
 * the program with sp_knobs_from_env. */
struct sp_knobs;

typedef struct sp_runtime_options {
  const char *backend;      /* "cpu", "cuda", "vulkan" or "auto" (NULL =
                               "auto"). "cuda" loads libsamepage_cuda.so
                               (knobs->cuda_lib, else next to the
                               executable, else the install tree's
                               lib/samepage/), "vulkan" libsamepage_vulkan.so
                               the same way (knobs->vulkan_lib); "auto" tries
                               CUDA (never Vulkan) and falls back to the CPU
                               with one line on stderr */
  unsigned threads;         /* CPU backend workers, 0 = one per core */
  size_t region_alignment;  /* base alignment of regions, power of two >= page size;
                               0 = 16 KiB */
  uint32_t max_cmds;        /* longest command list accepted, 0 = 65536 */
  const char *residency;    /* "weights" (NULL): ranges a guest freezes get a
                               device copy on discrete GPUs; "none": pure
                               zero-copy, weights read from host memory */
  const char *isolation;    /* "none": every actor's kernels run in this
                               process; "process": each actor's backend runs
                               in a worker process of its own (samepage-worker),
                               on a shared-memory view of the same guest bytes,
                               so a GPU fault or a crash there ends that actor
                               alone. NULL = knobs->isolation, else "none" */
  const struct sp_knobs *knobs; /* borrowed, read during sp_runtime_new only
                               (its strings must outlive the runtime); NULL =
                               every knob at its default. The library reads
                               no environment variable itself: a program that
                               honours SP_* variables passes
                               sp_knobs_from_env's result here */
  uint32_t batch_window_us; /* cross-actor batching (docs/BATCHING.md): lists
                               that actors submit within this many
                               microseconds of each other run as one batch
                               where their shapes match, each with the bits
                               it would get alone. 0 = off. Only backends with
                               a batching layer (CPU and CUDA, isolation "none")
                               batch; elsewhere it is ignored */
} sp_runtime_options;

/* Creates a runtime. opts may be NULL for defaults. On success the caller
 * owns *out (free with sp_runtime_free).
 * Errors: unknown backend name, bad alignment, Wasmtime engine failure. */
sp_error_t *sp_runtime_new(const sp_runtime_options *opts, sp_runtime_t **out);
/* Frees a runtime. Every actor it created must be freed first. */
void sp_runtime_free(sp_runtime_t *rt);
/* "process" when actors' backends run in worker processes, else "none". */
const char *sp_runtime_isolation(const sp_runtime_t *rt);
/* Name of the backend in use ("cpu", "cuda", "vulkan"); borrowed. */
const char *sp_runtime_backend_name(const sp_runtime_t *rt);
/* What the runtime's backend holds and has moved, over all actors. The
 * struct only ever grows at its end: set `size` to sizeof(struct
 * sp_runtime_stats) before the call, and the call writes at most `size`
 * bytes (a caller built against a shorter, older struct gets the fields it
 * knows; fields an older library lacks read as zero). Every field but
 * size is zero on the CPU backend. (A struct tag without a typedef, as POSIX's
 * `struct stat` and stat(): the function has the name.) */
struct sp_runtime_stats {
  uint32_t size;             /* set by the caller: bytes of this struct it was built with */
  /* Device-resident copies of frozen ranges (residency "weights"): */
  uint64_t resident_bytes;   /* bytes of device memory the copies hold now */
  uint64_t resident_copies;  /* copies made (freezes and flushes), a count */
  double resident_ms;        /* wall-clock milliseconds spent making them */
  /* How those copies are shared: actors granted the same file that freeze
   * the same bytes of it hold one device copy. */
  uint64_t shared_hits;      /* freezes and restores served by a copy already
                                on the device, a count */
  uint64_t shared_bytes;     /* bytes of device memory not held twice now */
  uint64_t repacked_bytes;   /* bytes of device memory held now by weights
                                re-laid for the GPU's loads, derived from
                                resident copies (docs/CUDA.md, "Repacked weights") */
  /* Device mirrors of device-local ranges (activations, KV cache): */
  uint64_t local_bytes;      /* bytes of device memory the mirrors hold now */
  uint64_t local_transfers;  /* uploads and syncs made, a count */
  uint64_t local_transfer_bytes; /* bytes they moved, both directions */
  double local_transfer_ms;  /* wall-clock milliseconds spent moving them */
  /* The backend's device: */
  bool device_known;         /* false (the two below zero) when the backend has
                                no device memory (CPU) */
  uint64_t device_used_bytes;  /* bytes of device memory in use now, by every process */
  uint64_t device_total_bytes; /* bytes of device memory in all */
  /* Cross-actor batching (sp_runtime_options.batch_window_us): */
  bool batching;             /* a batcher is running (the rest are 0 if not) */
  uint64_t batch_rounds;     /* rounds its leaders ran */
  uint64_t batch_lists;      /* lists that went through it */
  uint64_t batches;          /* groups of two or more lists run as one */
  uint64_t batched_lists;    /* lists that ran in such a group */
  uint64_t batch_largest;    /* most lists one round took */
  double batch_wait_ms;      /* time leaders waited for company, in all */
};

/* Fills *out with the runtime's statistics (struct sp_runtime_stats). Both
 * arguments are borrowed. Errors (*out is not written): rt or out
 * NULL, out->size smaller than the first version of the struct. */
sp_error_t *sp_runtime_stats(const sp_runtime_t *rt, struct sp_runtime_stats *out);

/* ---- actors ---- */

typedef struct sp_actor sp_actor_t;

/* A file granted to an actor: the guest opens it by `name` and never sees
 * `path`. */
typedef struct sp_blob_grant {
  const char *name; /* e.g. "model" */
  const char *path; /* host path, opened read-only when the actor is created */
} sp_blob_grant;

typedef struct sp_actor_options {
  const char *const *argv;  /* WASI argv, argv[0] is the program name; may be NULL */
  int argc;
  const char *const *dirs;  /* host directories to preopen, each under its own path */
  int n_dirs;
  uint64_t memory_limit;    /* cap on linear memory in bytes, 0 = 4 GiB (wasm32 max) */
  bool inherit_stdio;       /* give the guest this process's stdin/stdout/stderr */
  const sp_blob_grant *blobs; /* files the guest may read or map, by name */
  int n_blobs;
  uint32_t timeout_ms;      /* wall-clock limit on each guest entry (_start, each
                               sp_actor_call, instantiation with the module's
                               compilation) in ms, 0 = none; past it the call
                               fails with "guest exceeded its N ms time limit"
                               and the actor stays usable. Guest code stops
                               within ~2 ms, a WASI sleep at the deadline; other
                               host calls run to their end (see the next field) */
  uint32_t timeout_exit_grace_ms; /* with timeout_ms, for command-line tools: an
                               entry still running this many ms past its deadline
                               is inside a host call nothing can interrupt (a read
                               of stdin or a pipe, a write to a full pipe, a poll
                               on a descriptor, a submit's kernels); samepage then
                               writes "guest exceeded its N ms time limit ..." to
                               stderr and ends the whole process with _exit(124),
                               without flushing stdio. 0 = never: such a call
                               overruns the limit until it returns. `samepage
                               exec` sets 200 */
  uint32_t cpu_timeout_ms;  /* CPU-time limit on each guest entry in ms, measured
                               on the guest's own thread (wasm code and the host
                               imports it calls; not time spent waiting, nor
                               kernels on backend pool threads), 0 = none; past
                               it the call fails with "guest exceeded its N ms
                               CPU time limit" and the actor stays usable */
  uint64_t max_list_flops;  /* cap on the work one command list may ask for,
                               estimated from its shapes before anything runs
                               (matmul 2*K*N*M, attention 4*D*Hq*T*C, other
                               ops 8 per output element); 0 = 2^42 (4.4 TFLOP).
                               A list over it fails with SP_E_LIMIT naming
                               max_list_flops, and nothing of it runs */
  uint64_t max_list_bytes;  /* cap on the bytes of all tensors of one list
                               (every command's dst and sources), 0 = 2^40
                               (1 TiB); as max_list_flops otherwise */
} sp_actor_options;

/* Compiles and instantiates a guest module. `wasm` is borrowed.
 * On success the caller owns *out (free with sp_actor_free).
 * Compilation is bounded first: a module whose size, function or type count,
 * or total of declared locals passes a limit derived from memory_limit is
 * refused before Wasmtime sees it ("module has 200000 functions; the limit
 * is 4096 (--memory-limit 16M)"; SECURITY.md lists the limits), and the
 * compiler is waited for only until the deadline of timeout_ms (or 60 s
 * without one); past it the compilation is abandoned to finish in the
 * background and the call fails.
 * Errors: not a wasm module, a module over a limit, compile failure or
 * timeout, missing imports, a trap in the start function, a preopen
 * directory that cannot be opened. */
sp_error_t *sp_actor_new(sp_runtime_t *rt, const uint8_t *wasm, size_t wasm_len,
                         const sp_actor_options *opts, sp_actor_t **out);
/* Frees an actor and its memory region. */
void sp_actor_free(sp_actor_t *actor);

/* Runs the WASI command entry point `_start`.
 * On a normal return or proc_exit, stores the exit code and returns NULL.
 * On a trap, returns an error whose message has the trap and its wasm
 * backtrace. */
sp_error_t *sp_actor_run_main(sp_actor_t *actor, int *exit_code);

/* Calls an exported function whose parameters and result are integers
 * (i32 or i64). args[i] is converted to the parameter's type. A function
 * with no result stores 0 in *result. Errors: no such export, wrong
 * number of arguments, non-integer types, a trap. */
sp_error_t *sp_actor_call(sp_actor_t *actor, const char *name, const int64_t *args,
                          size_t nargs, int64_t *result);

/* The guest's linear memory as Wasmtime reports it right now (re-read after
 * anything that may grow memory). Both pointers are borrowed. */
void sp_actor_memory(sp_actor_t *actor, uint8_t **base, size_t *size);

/* The base address the backend's kernels use for this actor's memory: a
 * host pointer on the CPU, the mapped device pointer on CUDA. On zero-copy
 * backends it equals the base from sp_actor_memory. NULL without memory. */
void *sp_actor_backend_base(sp_actor_t *actor);

/* Where an actor's command lists (the guest's submits and sp_actor_submit)
 * spent their host time since the actor was created. Set `size` as for
 * struct sp_runtime_stats. A list is counted once it has passed validation
 * and run (successfully or not); one refused by validation is not. The
 * rest of a guest call's time is the guest's own work. */
struct sp_actor_stats {
  uint32_t size;       /* set by the caller: bytes of this struct it was built with */
  uint64_t lists;      /* command lists run, a count */
  uint64_t commands;   /* commands in them, a count */
  double validate_ms;  /* wall-clock milliseconds validating them (on the host) */
  double backend_ms;   /* wall-clock milliseconds in the backend: submit and wait */
};

/* Fills *out with the actor's statistics (struct sp_actor_stats). Both
 * arguments are borrowed. Errors (*out is not written): actor or
 * out NULL, out->size smaller than the first version of the struct. */
sp_error_t *sp_actor_stats(const sp_actor_t *actor, struct sp_actor_stats *out);

/* Validates and runs commands on the actor's memory from the host side,
 * exactly as the guest's `samepage.submit` would. `cmds` is host memory,
 * borrowed and not modified. Errors carry the validation message and its
 * status: a NULL argument, more than max_cmds commands, a command the
 * validator refuses, a granted file that changed, a backend failure. */
sp_error_t *sp_actor_submit(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count);

/* ---- snapshots (docs/SNAPSHOT.md) ---- */

typedef struct sp_snapshot_options {
  bool self_contained; /* embed granted-file ranges instead of referencing them */
} sp_snapshot_options;

typedef struct sp_snapshot_stats {
  uint64_t bytes;        /* size of the snapshot file */
  uint64_t memory_bytes; /* linear memory it describes */
  uint64_t pages_written;/* 64 KiB pages written by a restore */
  double verify_ms;      /* a restore: reading and checking the file (checksums, identities) */
  double apply_ms;       /* a restore: changing the actor (mappings, pages, device copies) */
} sp_snapshot_stats;

/* Saves the actor's whole state (linear memory, exported mutable globals,
 * granted-file mappings by reference, frozen ranges) to `path`, atomically:
 * the previous file stays intact until the new one is complete and synced.
 * Call it between guest calls (the actor is then quiescent). opts and stats
 * may be NULL. Errors: no memory, I/O (disk full names the cause). */
sp_error_t *sp_actor_snapshot(sp_actor_t *actor, const char *path, const sp_snapshot_options *opts,
                              sp_snapshot_stats *stats);

/* Restores a snapshot into `actor`, which must run the same module and
 * have the same files granted under the same names (checked by content
 * hash). The actor may be fresh (just created) or warm (already used):
 * afterwards its memory and globals equal the snapshot's, byte for byte
 * (bytes of device-local ranges that the backend keeps on the device are
 * restored there, and read back equal after sync).
 * Errors (nothing is changed): unreadable, truncated or corrupt file (the
 * chunk is named), another module, another model file, memory larger than
 * the snapshot's. */
sp_error_t *sp_actor_restore(sp_actor_t *actor, const char *path, sp_snapshot_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* SAMEPAGE_H */
