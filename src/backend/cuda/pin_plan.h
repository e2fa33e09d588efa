/*
 * pin_plan.h: which guest bytes the CUDA backend registers (pins), as
 * plain interval arithmetic with no CUDA in it, so CPU tests cover it.
 *
 * The backend registers an actor's committed memory with the device so
 * kernels can read and write it in place, except the ranges that are
 * file-backed mappings (a granted model mapped by blob_map): registering
 * file-backed pages can hang for minutes (DESIGN.md), and kernels read such
 * ranges from their resident device copy anyway. So the pinned set is
 * always [0, committed) minus the file ranges, held as a list of
 * registrations (spans). When the file ranges or the committed size
 * change, sp_pin_plan says which registrations to drop (those a file range
 * now overlaps) and which spans to register (the gaps left uncovered),
 * keeping every registration that is still right as it is: a restore that
 * maps the same file at the same place changes nothing.
 */
#ifndef SP_CUDA_PIN_PLAN_H
#define SP_CUDA_PIN_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_pin_span {
  uint64_t start, len;
} sp_pin_span;

/* A growable list of spans. */
typedef struct sp_pin_set {
  sp_pin_span *spans;
  size_t n, cap;
} sp_pin_set;

/* Appends a span; false when out of memory. */
bool sp_pin_set_add(sp_pin_set *set, uint64_t start, uint64_t len);
/* Removes the span at index i (order is not kept). */
void sp_pin_set_remove(sp_pin_set *set, size_t i);
void sp_pin_set_free(sp_pin_set *set);

/* The changes that make `pinned` equal [0, committed) minus `holes`:
 * `drop` receives the registrations to undo (copies of entries of pinned),
 * `add` the spans to register. holes may overlap and be unsorted. Returns
 * false when out of memory (drop and add are then incomplete). */
bool sp_pin_plan(const sp_pin_set *pinned, uint64_t committed, const sp_pin_span *holes, size_t n_holes,
                 sp_pin_set *drop, sp_pin_set *add);

/* Whether [addr, addr + len) overlaps one of the holes. */
bool sp_pin_overlaps(const sp_pin_span *holes, size_t n_holes, uint64_t addr, uint64_t len);

/* Where a copy starting at guest address at must stop, at most end, so it
 * stays within one registration or within unregistered memory (a copy
 * through pinned memory may not span two registrations). */
uint64_t sp_pin_run_end(const sp_pin_set *pinned, uint64_t at, uint64_t end);

#ifdef __cplusplus
}
#endif

#endif
