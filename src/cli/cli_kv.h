/*
 * cli_kv.h: the KV cache of a saved conversation as safetensors, shared by
 * `samepage kv` (cli_kv.c) and the server's GET/POST
 * /v1/sessions/ID/kv.safetensors (src/server/sessions_api.c). The format is
 * described at the top of cli_kv.c.
 */
#ifndef SP_CLI_KV_H
#define SP_CLI_KV_H

#include <stddef.h>
#include <stdint.h>

#include "samepage.h"

/* Writes the KV cache of the snapshot at snap (borrowed path) as a new
 * safetensors file at out_path (created; never a FIFO or a device).
 * *n_layers, *n_past: what it holds. Returns NULL, or an owned error (a
 * snapshot without the LLM guest's annotations, a bad layout, I/O). */
sp_error_t *sp_kv_export_file(const char *snap, const char *out_path, uint32_t *n_layers, uint32_t *n_past);

/* Writes the safetensors file[0..len) (borrowed) into actor a, restored
 * from the snapshot at snap (whose annotations give the layout): every
 * layer's cache and kv.n_past. *old_n_past: the snapshot's position count,
 * *n_pos: the file's. Returns NULL, or an owned error naming what is wrong
 * with the file (truncated, another model, a shape this cache cannot hold);
 * after an error a's memory may be partly written: free it. */
sp_error_t *sp_kv_import_actor(sp_actor_t *a, const char *snap, const uint8_t *file, size_t len,
                               uint32_t *old_n_past, uint32_t *n_pos);

#endif
