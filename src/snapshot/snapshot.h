/*
 * snapshot.h (private): helpers shared by the snapshot writer and reader.
 */
#ifndef SP_SNAPSHOT_H
#define SP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/runtime_impl.h"
#include "core/written_pages.h"

/* Whether a 64 KiB page of memory is all zero. */
bool sp_snap_page_is_zero(const uint8_t *page);

/* ---- offline access to a snapshot file (tools) ---- */

typedef struct sp_snapshot_file sp_snapshot_file;

/* Opens and fully verifies a snapshot: a regular, non-empty file
 * (file_open.h), checksums, lengths, and every declaration (frozen and
 * device-local ranges, annotations) against its memory and each other, as
 * a live guest's are checked (snapshot_read.c check_view). */
sp_error_t *sp_snapshot_file_open(const char *path, sp_snapshot_file **out);
/* The same checks on a snapshot already in memory (`data` is borrowed and
 * must outlive the file): the fuzz target's entry, without file churn. */
sp_error_t *sp_snapshot_file_open_bytes(const uint8_t *data, size_t size, sp_snapshot_file **out);
void sp_snapshot_file_close(sp_snapshot_file *f);

/* The tensor the guest annotated as `name` (checked when the file was
 * opened: in its memory, strides normalized); false when absent. */
bool sp_snapshot_file_annotation(const sp_snapshot_file *f, const char *name, sp_tensor *out);

/* Copies guest bytes [addr, addr+len) out of the snapshot's memory image. */
sp_error_t *sp_snapshot_file_read(const sp_snapshot_file *f, uint64_t addr, uint64_t len, uint8_t *dst);

/* The content hash of the file referenced under `grant` (0 if none). */
uint64_t sp_snapshot_file_blob_hash(const sp_snapshot_file *f, const char *grant);

#endif
