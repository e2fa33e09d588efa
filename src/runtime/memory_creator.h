/*
 * memory_creator.h: hands samepage regions to Wasmtime as linear memories.
 *
 * Wasmtime asks its configured memory creator for every linear memory it
 * instantiates (wasmtime_config_host_memory_creator_set). Ours answers with
 * an sp_region of exactly the reservation and guard Wasmtime asked for, and
 * remembers it in a registry so that, after instantiation, the actor can find
 * the region behind the base pointer Wasmtime reports. The invariant tested
 * everywhere: Wasmtime's memory base == the region's base.
 */
#ifndef SP_MEMORY_CREATOR_H
#define SP_MEMORY_CREATOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <wasmtime.h>

#include "core/region.h"

typedef struct sp_region_registry {
  pthread_mutex_t lock;
  sp_region **regions; /* live regions created for Wasmtime */
  size_t count, cap;
  size_t alignment;    /* base alignment of every region */
  bool shared;         /* regions are memfd-backed (process isolation) */
  uint64_t created;    /* regions ever created (for tests) */
} sp_region_registry;

void sp_region_registry_init(sp_region_registry *reg, size_t alignment);
void sp_region_registry_deinit(sp_region_registry *reg);

/* Returns the live region whose base is `base`, or NULL. */
sp_region *sp_region_registry_find(sp_region_registry *reg, const uint8_t *base);

/* Installs the creator on `config`; `reg` must outlive every engine made from it. */
void sp_memory_creator_install(wasm_config_t *config, sp_region_registry *reg);

#endif
