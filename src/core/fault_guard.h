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
 * Bounds. Ranges are kept per owner (an actor's blob table, a worker, one
 * hash in progress): each owner has a set of its own of at most
 * SP_FAULT_GUARD_PER_OWNER ranges, out of SP_FAULT_GUARD_OWNERS sets per
 * process. One owner filling its set takes nothing from another's. A range
 * that cannot be guarded is refused (sp_fault_guard_replace says why),
 * and the caller must then not map it: a file mapping is never left
 * unguarded.
 *
 * The handler is async-signal-safe: it only reads fixed tables of atomics,
 * calls mmap and stores to an atomic flag.
 */
#ifndef SP_FAULT_GUARD_H
#define SP_FAULT_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "samepage.h"

/* File-backed ranges one owner may have guarded at once. */
#define SP_FAULT_GUARD_PER_OWNER 64
/* Owners that may hold guarded ranges at once, per process. */
#define SP_FAULT_GUARD_OWNERS 1024

/* Installs the SIGBUS handler once per process (later calls do nothing). */
void sp_fault_guard_install(void);

/* Guards [start, start + len) for `owner`: a SIGBUS inside it stores `value`
 * into *flag. First forgets owner's ranges that lie wholly inside the new
 * one (the mappings it replaces), in the same step. Returns NULL, or an
 * error (caller owns it; nothing changed) naming the bound that was hit:
 * owner already guards SP_FAULT_GUARD_PER_OWNER ranges, or
 * SP_FAULT_GUARD_OWNERS other owners hold sets. */
sp_error_t *sp_fault_guard_replace(const void *owner, void *start, size_t len, atomic_int *flag, int value);

/* sp_fault_guard_replace without the message: false when the range could
 * not be guarded (the caller must then not leave it mapped). */
bool sp_fault_guard_add(const void *owner, void *start, size_t len, atomic_int *flag, int value);

/* Forgets owner's ranges that lie wholly inside [start, start + len) (the
 * memory there became anonymous). A range reaching past it stays guarded:
 * its pages outside are still file-backed. */
void sp_fault_guard_remove_range(const void *owner, void *start, size_t len);

/* Forgets every range of owner and frees its set (before its memory goes
 * away). */
void sp_fault_guard_remove_owner(const void *owner);

/* Number of faults repaired so far (for tests). */
unsigned long sp_fault_guard_repaired(void);

#endif
