/* grow.c (reactor): exposes memory.grow and raw loads to the host tests. */
#include <stdint.h>

/* Grows linear memory by `pages` 64 KiB pages; returns the old size in
 * pages, or -1 when growth is refused. */
int32_t grow(int32_t pages) { return (int32_t)__builtin_wasm_memory_grow(0, (uint32_t)pages); }

/* Current size in pages. */
int32_t pages(void) { return (int32_t)__builtin_wasm_memory_size(0); }

/* Loads the byte at guest address addr (traps when out of bounds). */
int32_t load(int32_t addr) { return *(volatile uint8_t *)(uintptr_t)(uint32_t)addr; }

/* Stores a byte at guest address addr. */
void store(int32_t addr, int32_t value) { *(volatile uint8_t *)(uintptr_t)(uint32_t)addr = (uint8_t)value; }
