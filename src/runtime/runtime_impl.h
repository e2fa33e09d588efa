/*
 * runtime_impl.h (private): the layouts behind sp_runtime_t and sp_actor_t.
 */
#ifndef SP_RUNTIME_IMPL_H
#define SP_RUNTIME_IMPL_H

#include <pthread.h>

#include <wasmtime.h>

#include "backend/backend.h"
#include "runtime/annotations.h"
#include "runtime/blob.h"
#include "core/memory_budget.h"
#include "runtime/memory_creator.h"
#include "samepage.h"
#include "runtime/actor_limits.h"
#include "runtime/batcher.h"
#include "core/list_cache.h"
#include "core/list_work.h"
#include "core/validate.h"
#include "runtime/wasi_poll.h"

#define SP_DEFAULT_MAX_CMDS 65536u
#define SP_LAST_ERROR_CAP 512
#define SP_MAX_FROZEN 16 /* frozen ranges per actor */
#define SP_MAX_DEVICE_LOCAL 16 /* device-local ranges per actor */

struct sp_runtime {
  sp_backend *backend;           /* shared by every actor */
  sp_region_registry regions;    /* regions handed to Wasmtime */
  wasm_engine_t *engine;
  wasmtime_linker_t *linker;     /* WASI (our poll_oneoff over its own) + the "samepage" imports */
  wasmtime_linker_t *wasi_linker; /* WASI alone: its poll_oneoff, for wasi_poll.c */
  wasmtime_module_t *poll_helper; /* calls WASI's poll_oneoff for a guest (wasi_poll.c), lazy */
  pthread_mutex_t poll_helper_lock; /* guards its creation */
  uint32_t max_cmds;
  bool no_file_maps;             /* knobs: SP_NO_FILE_MAPS (abi_blob.c) */
  sp_ticker *ticker;             /* epoch ticker for time limits (actor_limits.c), lazy */
  sp_batcher *batcher;           /* cross-actor batching (batcher.h); NULL: off */
  int pagemap_fd;                /* /proc/self/pagemap for batching's weight proofs; -1 none */
};

struct sp_actor {
  sp_runtime_t *rt;
  wasmtime_store_t *store;
  wasmtime_context_t *context;
  wasmtime_instance_t instance;
  wasmtime_memory_t memory;      /* the exported "memory" */
  bool has_memory;
  sp_region *region;             /* the region behind that memory */
  sp_memory_budget budget;       /* the shares of opts.memory_limit */
  void *binding;                 /* the backend's binding of region */
  sp_cmd *cmds;                  /* host copy of the list being validated */
  uint32_t cmds_cap;
  uint64_t *weight_keys;         /* batching: the list's weight identities (range_identity.h) */
  uint32_t weight_keys_cap;
  sp_blob_table blobs;           /* files granted to this actor */
  uint64_t module_hash;          /* sp_hash64 of the module's bytes */
  sp_annotation_table annotations; /* tensors the guest named (annotate) */
  sp_range frozen[SP_MAX_FROZEN]; /* guest ranges declared immutable (freeze) */
  uint32_t n_frozen;
  sp_range device_local[SP_MAX_DEVICE_LOCAL]; /* ranges whose authoritative copy may live on
                                               the device between submits (device_local) */
  uint32_t n_device_local;
  struct sp_actor_stats stats;   /* host time of its lists (sp_abi_run); size unused */
  sp_list_cache list_cache;      /* the last list validated (list_cache.h) */
  uint64_t submitted_generation; /* list_cache generation last submitted with success, 0 none */
  uint64_t max_list_flops;       /* caps on one command list's work (list_work.h) */
  uint64_t max_list_bytes;
  sp_actor_limits limits;        /* wall-clock and CPU-time limits per guest entry (actor_limits.c) */
  sp_wasi_poll poll;             /* poll_oneoff's clock origin and helper (wasi_poll.c) */
  char last_error[SP_LAST_ERROR_CAP];
};

/* Copies a statistics struct whose first field is the caller-set uint32_t
 * size (samepage.h): full (full_size bytes, the struct this library knows)
 * into out, at most out's size bytes, zeroing what lies past full_size.
 * Errors when out's size is below min_size, the first version's size; fn
 * names the caller in the message (runtime.c). */
sp_error_t *sp_stats_fill(void *out, const void *full, size_t full_size, size_t min_size, const char *fn);

/* Defines the "samepage" import module on a linker (abi.c). */
wasmtime_error_t *sp_abi_define(wasmtime_linker_t *linker);

/* Defines samepage.<name> with signature sig ("iiI:i": i = i32, I = i64). */
wasmtime_error_t *sp_abi_define_func(wasmtime_linker_t *linker, const char *name, const char *sig,
                                     wasmtime_func_unchecked_callback_t cb);

/* Defines the annotate import (abi_annotate.c). */
wasmtime_error_t *sp_abi_annotate_define(wasmtime_linker_t *linker);

/* Defines the device_local and sync imports (abi_device_local.c). */
wasmtime_error_t *sp_abi_device_local_define(wasmtime_linker_t *linker);

/* The index of the device-local range holding all of [addr, addr + len), or -1. */
int sp_abi_device_local_find(const sp_actor_t *actor, uint64_t addr, uint64_t len);

/* Declares [addr, addr + len) device-local as the guest's import does (a
 * restored snapshot's ranges); the error says why not. */
sp_error_t *sp_abi_device_local_declare(sp_actor_t *actor, uint64_t addr, uint64_t len);

/* Copies every device-local range back to guest memory (before a snapshot
 * reads the memory). */
sp_error_t *sp_abi_device_local_sync_all(sp_actor_t *actor);

/* The actor's file-backed ranges (blob maps not read), page-rounded, plus
 * n_extra more; *out is malloc'd (actor_file_maps.c). */
sp_error_t *sp_actor_file_ranges(const sp_actor_t *a, const sp_file_range *extra, uint32_t n_extra,
                                 sp_file_range **out, uint32_t *n);

/* Tells the backend the file ranges (the actor's, plus extra): before a
 * mapping change (done false) or after it (done true). */
sp_error_t *sp_actor_file_ranges_tell(sp_actor_t *a, const sp_file_range *extra, uint32_t n_extra, bool done);

/* blob_map for the guest, with the backend told before and after; an
 * sp_status, the message in a->last_error. */
int32_t sp_actor_blob_map(sp_actor_t *a, int32_t handle, uint64_t offset, uint64_t addr, uint64_t len);

/* Turns the file mappings overlapping [addr, addr + len) into anonymous
 * memory with the same bytes, read from the file (mapped mode, when the
 * device cannot hold a copy of a file-mapped range). */
sp_error_t *sp_actor_file_maps_to_reads(sp_actor_t *a, uint64_t addr, uint64_t len);

/* Defines the blob_* imports (abi_blob.c). */
wasmtime_error_t *sp_abi_blob_define(wasmtime_linker_t *linker);

/* The actor behind a host call. */
sp_actor_t *sp_abi_caller_actor(wasmtime_caller_t *caller);

/* Stores a formatted message in actor->last_error and returns st. */
sp_status sp_abi_fail(sp_actor_t *actor, sp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Validates and runs `count` commands already copied into host memory,
 * checked against the actor's committed memory; list_addr/list_bytes is the
 * list's guest range (0/0 for host-side submits). Stores a message in
 * actor->last_error on failure. */
sp_status sp_abi_run(sp_actor_t *actor, sp_cmd *cmds, uint32_t count, uint64_t list_addr,
                     uint64_t list_bytes, bool staged);

#endif
