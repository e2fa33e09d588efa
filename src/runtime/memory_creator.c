/* memory_creator.c: Wasmtime's LinearMemory callbacks backed by sp_region. */
#include "runtime/memory_creator.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* The wasm32 address space: 65536 pages of 64 KiB. */
#define WASM32_MAX_BYTES ((size_t)1 << 32)

/* A linear memory's env: the region and the registry that lists it. */
typedef struct creator_memory {
  sp_region *region;
  sp_region_registry *registry;
} creator_memory;

void sp_region_registry_init(sp_region_registry *reg, size_t alignment) {
  memset(reg, 0, sizeof *reg);
  pthread_mutex_init(&reg->lock, NULL);
  reg->alignment = alignment;
}

void sp_region_registry_deinit(sp_region_registry *reg) {
  free(reg->regions);
  pthread_mutex_destroy(&reg->lock);
}

static bool registry_add(sp_region_registry *reg, sp_region *region) {
  pthread_mutex_lock(&reg->lock);
  bool ok = true;
  if (reg->count == reg->cap) {
    size_t cap = reg->cap ? reg->cap * 2 : 8;
    sp_region **grown = realloc(reg->regions, cap * sizeof *grown);
    if (grown) {
      reg->regions = grown;
      reg->cap = cap;
    } else {
      ok = false;
    }
  }
  if (ok) {
    reg->regions[reg->count++] = region;
    reg->created++;
  }
  pthread_mutex_unlock(&reg->lock);
  return ok;
}

static void registry_remove(sp_region_registry *reg, sp_region *region) {
  pthread_mutex_lock(&reg->lock);
  for (size_t i = 0; i < reg->count; i++) {
    if (reg->regions[i] == region) {
      reg->regions[i] = reg->regions[--reg->count];
      break;
    }
  }
  pthread_mutex_unlock(&reg->lock);
}

sp_region *sp_region_registry_find(sp_region_registry *reg, const uint8_t *base) {
  sp_region *found = NULL;
  pthread_mutex_lock(&reg->lock);
  for (size_t i = 0; i < reg->count && !found; i++)
    if (reg->regions[i]->base == base) found = reg->regions[i];
  pthread_mutex_unlock(&reg->lock);
  return found;
}

static wasmtime_error_t *to_wasmtime_error(sp_error_t *err) {
  wasmtime_error_t *werr = wasmtime_error_new(sp_error_message(err));
  sp_error_free(err);
  return werr;
}

static uint8_t *memory_get(void *env, size_t *byte_size, size_t *byte_capacity) {
  creator_memory *mem = env;
  *byte_size = mem->region->committed;
  *byte_capacity = mem->region->reserved;
  return mem->region->base;
}

static wasmtime_error_t *memory_grow(void *env, size_t new_size) {
  creator_memory *mem = env;
  sp_error_t *err = sp_region_grow(mem->region, new_size);
  return err ? to_wasmtime_error(err) : NULL;
}

static void memory_finalize(void *env) {
  creator_memory *mem = env;
  registry_remove(mem->registry, mem->region);
  sp_region_free(mem->region);
  free(mem);
}

/* Reserves what Wasmtime asked for; with no reservation requested, the whole
 * wasm32 space, so the base never moves and backends can keep it mapped. */
static wasmtime_error_t *new_memory(void *env, const wasm_memorytype_t *ty, size_t minimum,
                                    size_t maximum, size_t reserved, size_t guard,
                                    wasmtime_linear_memory_t *out) {
  sp_region_registry *reg = env;
  if (wasmtime_memorytype_is64(ty))
    return wasmtime_error_new("samepage: 64-bit linear memories are not supported");
  if (reserved < minimum) reserved = maximum < WASM32_MAX_BYTES ? WASM32_MAX_BYTES : maximum;
  if (reserved > WASM32_MAX_BYTES && maximum <= WASM32_MAX_BYTES) reserved = WASM32_MAX_BYTES;
  creator_memory *mem = calloc(1, sizeof *mem);
  if (!mem) return wasmtime_error_new("samepage: out of memory creating a linear memory");
  sp_error_t *err = reg->shared ? sp_region_new_shared(reg->alignment, minimum, reserved, guard, &mem->region)
                                : sp_region_new(reg->alignment, minimum, reserved, guard, &mem->region);
  if (err) {
    free(mem);
    return to_wasmtime_error(err);
  }
  mem->registry = reg;
  if (!registry_add(reg, mem->region)) {
    sp_region_free(mem->region);
    free(mem);
    return wasmtime_error_new("samepage: out of memory registering a linear memory");
  }
  out->env = mem;
  out->get_memory = memory_get;
  out->grow_memory = memory_grow;
  out->finalizer = memory_finalize;
  return NULL;
}

void sp_memory_creator_install(wasm_config_t *config, sp_region_registry *reg) {
  wasmtime_memory_creator_t creator = {.env = reg, .new_memory = new_memory, .finalizer = NULL};
  wasmtime_config_host_memory_creator_set(config, &creator);
}
