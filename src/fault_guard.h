/*
 * fault_guard.h: surviving a granted file that shrinks while it is mapped.
 *
 * A file mapped into an actor's memory (blob_map) stays a view of the file:
 * if someone truncates the file on disk, touching a page past the new end
 * raises SIGBUS, which would kill the whole process. The fault guard is a
 * process-wide SIGBUS handler that knows the file-backed ranges of live
 * actors. For a fault inside one it maps an anonymous zero page over the
 * faulting page (so the instruction continues, reading zeros) and raises the
 * range's flag; the owner turns that flag into a clear error at its next
 * host call. Any other SIGBUS goes to the handler installed before ours
 * (Wasmtime's, which chains in turn), so ours must be installed after the
 * first Wasmtime engine exists.
 *
 * The handler is async-signal-safe: it only reads a fixed table of atomics,
 * calls mmap and stores to an atomic flag.
 */
#ifndef SP_FAULT_GUARD_H
#define SP_FAULT_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Installs the SIGBUS handler once per process (later calls do nothing). */
void sp_fault_guard_install(void);

/* Registers [start, start + len) as file-backed for `owner`: a SIGBUS inside
 * it stores `value` into *flag. Returns false when the table is full (the
 * range then stays unguarded). */
bool sp_fault_guard_add(const void *owner, void *start, size_t len, atomic_int *flag, int value);

/* Forgets owner's ranges that overlap [start, start + len). */
void sp_fault_guard_remove_range(const void *owner, void *start, size_t len);

/* Forgets every range of owner (before its memory goes away). */
void sp_fault_guard_remove_owner(const void *owner);

/* Number of faults repaired so far (for tests). */
unsigned long sp_fault_guard_repaired(void);

#endif
